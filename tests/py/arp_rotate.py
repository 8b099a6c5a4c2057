#!/usr/bin/env python3
"""Answers ARP requests for COUNT addresses from FIRST_IP on, each time
with a fresh globally administered MAC, as a hostile box trying to get
mdb to file issues, open pull requests and reserve addresses without end.
Bounded: it answers at most MAX_REPLIES requests and stops after SECONDS.
Sends only on IFACE (a test namespace's veth), only replies, and only to
requests for its own range.

Usage: arp_rotate.py IFACE FIRST_IP COUNT SECONDS MAX_REPLIES
Prints "ready" once listening, then the number of replies sent at the end.
"""
import select
import socket
import struct
import sys
import time

ETH_P_ARP = 0x0806


def main():
    iface, first, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
    seconds, max_replies = float(sys.argv[4]), int(sys.argv[5])
    lo = struct.unpack("!I", socket.inet_aton(first))[0]
    hi = lo + count - 1
    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ARP))
    s.bind((iface, ETH_P_ARP))
    print("ready", flush=True)
    end = time.monotonic() + seconds
    sent = 0
    serial = 0
    while sent < max_replies:
        left = end - time.monotonic()
        if left <= 0:
            break
        r, _, _ = select.select([s], [], [], min(left, 0.5))
        if not r:
            continue
        frame = s.recv(2048)
        if len(frame) < 42:
            continue
        op = struct.unpack("!H", frame[20:22])[0]
        sender_mac, sender_ip = frame[22:28], frame[28:32]
        target_ip = frame[38:42]
        wanted = struct.unpack("!I", target_ip)[0]
        if op != 1 or not lo <= wanted <= hi:
            continue
        serial += 1
        # 0x00 first octet: globally administered, unicast; a new one each time.
        mac = bytes([0x00, 0x50]) + struct.pack("!I", serial)
        reply = (sender_mac + mac + struct.pack("!H", ETH_P_ARP)
                 + struct.pack("!HHBBH", 1, 0x0800, 6, 4, 2)
                 + mac + target_ip + sender_mac + sender_ip)
        s.send(reply)
        sent += 1
    print(sent, flush=True)


if __name__ == "__main__":
    main()
