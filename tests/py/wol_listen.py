"""A sleeping machine's network card: waits for Wake-on-LAN magic packets
for its MAC (a broadcast frame of type 0x0842 holding six 0xff, then the
MAC sixteen times) and appends a line to the file it was given for each;
with --once it exits after the first.

usage: wol_listen.py IFACE MAC WOKEN_FILE [--once]
"""

import socket
import sys


def main() -> None:
    iface, mac, woken = sys.argv[1:4]
    once = "--once" in sys.argv[4:]
    magic = b"\xff" * 6 + bytes.fromhex(mac.replace(":", "")) * 16
    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x0842))
    s.bind((iface, 0))
    with open(woken + ".ready", "w") as f:
        f.write("listening\n")
    while True:
        frame = s.recv(65535)
        if frame[0:6] == b"\xff" * 6 and frame[12:14] == b"\x08\x42" and frame[14:116] == magic:
            with open(woken, "a") as f:
                f.write("woken\n")
            if once:
                return


if __name__ == "__main__":
    main()
