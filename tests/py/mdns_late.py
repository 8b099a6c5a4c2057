"""An mDNS responder that answers late: for every legacy unicast query on
UDP 5353 it waits DELAY_MS, then answers from port 5353 with the query's id:
the PTR of the reverse name it was asked (NAME.local) and one service type.
Prints "ready" once it listens.

usage: mdns_late.py NAME DELAY_MS
"""
import socket
import struct
import sys
import threading
import time

name, delay = sys.argv[1], int(sys.argv[2]) / 1000.0


def encode(n):
    out = b""
    for label in n.split("."):
        out += bytes([len(label)]) + label.encode()
    return out + b"\0"


def first_question(msg):
    """The first question's name, read label by label (no compression in a query)."""
    at, labels = 12, []
    while at < len(msg) and msg[at] != 0 and len(labels) < 64:
        n = msg[at]
        labels.append(msg[at + 1:at + 1 + n].decode("ascii", "replace"))
        at += 1 + n
    return ".".join(labels)


def record(owner, target):
    data = encode(target)
    return encode(owner) + struct.pack(">HHIH", 12, 1, 120, len(data)) + data


sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
sock.bind(("0.0.0.0", 5353))
print("ready", flush=True)


def answer(msg, peer):
    time.sleep(delay)
    reverse = first_question(msg)
    head = msg[:2] + struct.pack(">HHHHH", 0x8400, 0, 2, 0, 0)
    body = record(reverse, name + ".local") + record(
        "_services._dns-sd._udp.local", "_http._tcp.local")
    sock.sendto(head + body, peer)


while True:
    msg, peer = sock.recvfrom(9000)
    if len(msg) >= 12 and not msg[2] & 0x80:
        threading.Thread(target=answer, args=(msg, peer), daemon=True).start()
