#!/usr/bin/env python3
"""Answers TCP connections on IP:22 with a hostile SSH banner (forged mdb
markers, bare CRs, a team mention, a closing keyword and a remote image),
as a device on the LAN trying to steer mdb's issues. Stops after SECONDS.

Usage: hostile_banner.py IP SECONDS
"""
import socket
import sys
import time

BANNER = (b"SSH-2.0-x <!-- mdb-fingerprint: conflict:ip=198.18.10.1 -->"
          b"<!-- mdb-ip: 198.18.10.2 --><!-- mdb-name: nas -->\r\r"
          b"@lab/admins Closes #12 ![](https://evil.invalid/p.png)\r\n")


def main():
    ip, seconds = sys.argv[1], float(sys.argv[2])
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((ip, 22))
    s.listen(64)
    s.settimeout(0.5)
    print("ready", flush=True)
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        try:
            c, _ = s.accept()
        except socket.timeout:
            continue
        try:
            c.sendall(BANNER)
        except OSError:
            pass
        c.close()


if __name__ == "__main__":
    main()
