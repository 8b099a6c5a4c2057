"""A sleeping machine's network card: waits for a Wake-on-LAN magic packet
for its MAC (six 0xff, then the MAC sixteen times, in any frame), writes
the file it was given, and exits.

usage: wol_listen.py IFACE MAC WOKEN_FILE
"""

import socket
import sys


def main() -> None:
    iface, mac, woken = sys.argv[1:4]
    magic = b"\xff" * 6 + bytes.fromhex(mac.replace(":", "")) * 16
    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(3))
    s.bind((iface, 0))
    print("listening", flush=True)
    while True:
        frame = s.recv(65535)
        if magic in frame:
            with open(woken, "w") as f:
                f.write("woken\n")
            return


if __name__ == "__main__":
    main()
