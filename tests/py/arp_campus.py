#!/usr/bin/env python3
"""A campus of devices behind one interface: answers ARP requests for COUNT
addresses from FIRST on, each with its own Raspberry Pi MAC
(dc:a6:32 + the index), as COUNT separate devices would. Nothing else is
answered: TCP to them goes unanswered, as with IoT devices that drop SYNs.
Ends after SECONDS (a bound, so it never outlives its test or bench).

Usage: arp_campus.py IFACE FIRST COUNT SECONDS
Prints "ready" once it listens.
"""
import ipaddress
import select
import socket
import struct
import sys
import time

ETH_P_ARP = 0x0806


def mac_of(index):
    return bytes([0xDC, 0xA6, 0x32, (index >> 16) & 0xFF, (index >> 8) & 0xFF, index & 0xFF])


def main():
    iface, first, count, seconds = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
    base = int(ipaddress.IPv4Address(first))
    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ARP))
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16 << 20)
    s.bind((iface, ETH_P_ARP))
    print("ready", flush=True)
    end = time.monotonic() + seconds
    arp_reply = struct.pack("!HHHBBH", ETH_P_ARP, 1, 0x0800, 6, 4, 2)
    while time.monotonic() < end:
        ready, _, _ = select.select([s], [], [], 0.2)
        if not ready:
            continue
        frame = s.recv(64)
        if len(frame) < 42 or frame[20:22] != b"\x00\x01":
            continue
        target = int.from_bytes(frame[38:42], "big")
        index = target - base
        if not 0 <= index < count:
            continue
        mac = mac_of(index)
        sender_mac, sender_ip = frame[22:28], frame[28:32]
        s.send(sender_mac + mac + arp_reply + mac + frame[38:42] + sender_mac + sender_ip)


if __name__ == "__main__":
    main()
