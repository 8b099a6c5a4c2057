#!/usr/bin/env python3
"""A userspace ARP responder that answers late: for a host whose kernel
ignores ARP (arp_ignore=8), it answers requests for IP on IFACE after
DELAY_MS, with the interface's own MAC. Runs until killed; handles at most
one request per 10 ms (a bound, not a flood source).

Usage: arp_late.py IFACE IP DELAY_MS
"""
import socket
import struct
import sys
import threading
import time

ETH_P_ARP = 0x0806


def main():
    iface, ip, delay_ms = sys.argv[1], sys.argv[2], int(sys.argv[3])
    me = socket.inet_aton(ip)
    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ARP))
    s.bind((iface, ETH_P_ARP))
    mac = s.getsockname()[4][:6]
    print("ready", flush=True)
    last = 0.0

    def answer(frame):
        time.sleep(delay_ms / 1000)
        sender_mac, sender_ip = frame[22:28], frame[28:32]
        reply = (sender_mac + mac + struct.pack("!H", ETH_P_ARP)
                 + struct.pack("!HHBBH", 1, 0x0800, 6, 4, 2)
                 + mac + me + sender_mac + sender_ip)
        s.send(reply)

    while True:
        frame = s.recv(1514)
        if len(frame) < 42 or frame[20:22] != b"\x00\x01" or frame[38:42] != me:
            continue
        now = time.monotonic()
        if now - last < 0.01:
            continue
        last = now
        threading.Thread(target=answer, args=(frame,), daemon=True).start()


if __name__ == "__main__":
    main()
