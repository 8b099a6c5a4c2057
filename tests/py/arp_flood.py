#!/usr/bin/env python3
"""Floods ARP replies for IP from COUNT random locally administered MACs,
as a hostile host spoofing an address would, for at most SECONDS. IP may
be a network (198.18.4.0/22): its host addresses are claimed in turn, as
a host answering for a whole range would. Bounded in count and time;
sends only on IFACE (a test namespace's veth), for 198.18.0.0/15 only.

Usage: arp_flood.py IFACE IP[/PREFIX] COUNT SECONDS
"""
import ipaddress
import os
import socket
import struct
import sys
import time

ETH_P_ARP = 0x0806


def main():
    iface, ip, count, seconds = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
    net = ipaddress.ip_network(ip, strict=False)
    assert net.subnet_of(ipaddress.ip_network("198.18.0.0/15")), net
    claimed = [a.packed for a in (net.hosts() if net.prefixlen < 32 else [net.network_address])]
    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ARP))
    s.bind((iface, ETH_P_ARP))
    print("ready", flush=True)
    end = time.monotonic() + seconds
    sent = 0
    while sent < count and time.monotonic() < end:
        mac = bytes([0x02]) + os.urandom(5)
        me = claimed[sent % len(claimed)]
        frame = (b"\xff" * 6 + mac + struct.pack("!H", ETH_P_ARP)
                 + struct.pack("!HHBBH", 1, 0x0800, 6, 4, 2)
                 + mac + me + b"\xff" * 6 + socket.inet_aton("198.18.0.1"))
        s.send(frame)
        sent += 1
    print(sent, flush=True)


if __name__ == "__main__":
    main()
