#!/usr/bin/env python3
"""A Linux bridge's forwarding table as Q-BRIDGE-MIB and BRIDGE-MIB, for
Debian's snmpd (`pass_persist .1.3.6.1.2.1.17 python3 bridge_fdb.py br0`).

Served, read from `bridge -j fdb show` and `ip -j link` at each request
(cached for a second):
  dot1dBasePortIfIndex .1.3.6.1.2.1.17.1.4.1.2.PORT = ifIndex
  dot1qTpFdbPort       .1.3.6.1.2.1.17.7.1.2.2.1.2.VLAN.MAC = PORT
  dot1qTpFdbStatus     .1.3.6.1.2.1.17.7.1.2.2.1.3.VLAN.MAC = learned(3),
                       self(4) or mgmt(5, a static entry)
Bridge ports are numbered 1..N by ifIndex order, as switches number
them, so they differ from the ifIndex by which lldpd numbers LLDP ports.
"""
import json
import subprocess
import sys
import time

BRIDGE = sys.argv[1] if len(sys.argv) > 1 else "br0"
BASE_PORT = (1, 3, 6, 1, 2, 1, 17, 1, 4, 1, 2)
FDB_PORT = (1, 3, 6, 1, 2, 1, 17, 7, 1, 2, 2, 1, 2)
FDB_STATUS = (1, 3, 6, 1, 2, 1, 17, 7, 1, 2, 2, 1, 3)
STATUS = {"": 3, "permanent": 4, "static": 5}

_cache = (0.0, [])


def rows():
    """Every (oid, value) served, sorted by OID."""
    global _cache
    if time.monotonic() - _cache[0] < 1.0:
        return _cache[1]
    links = json.loads(subprocess.check_output(["ip", "-j", "link", "show", "master", BRIDGE]))
    ordered = sorted(links, key=lambda l: l["ifindex"])
    port = {l["ifname"]: n for n, l in enumerate(ordered, start=1)}
    out = [(BASE_PORT + (port[l["ifname"]],), l["ifindex"]) for l in ordered]
    fdb = json.loads(subprocess.check_output(["bridge", "-j", "fdb", "show", "br", BRIDGE]))
    for e in fdb:
        number = port.get(e.get("ifname"))
        if number is None or e.get("master") != BRIDGE:
            continue
        mac = tuple(int(x, 16) for x in e["mac"].split(":"))
        vlan = int(e.get("vlan", 1))
        status = STATUS.get(e.get("state", ""), 1)
        out.append((FDB_PORT + (vlan,) + mac, number))
        out.append((FDB_STATUS + (vlan,) + mac, status))
    out.sort()
    _cache = (time.monotonic(), out)
    return out


def parse(text):
    return tuple(int(x) for x in text.strip().strip(".").split(".") if x)


def answer(oid, value):
    sys.stdout.write("." + ".".join(map(str, oid)) + "\ninteger\n" + str(value) + "\n")


def main():
    while True:
        line = sys.stdin.readline()
        if not line:
            return
        cmd = line.strip()
        if cmd == "PING":
            sys.stdout.write("PONG\n")
        elif cmd in ("get", "getnext"):
            oid = parse(sys.stdin.readline())
            found = None
            for o, v in rows():
                if (cmd == "get" and o == oid) or (cmd == "getnext" and o > oid):
                    found = (o, v)
                    break
            if found:
                answer(*found)
            else:
                sys.stdout.write("NONE\n")
        elif cmd == "set":
            sys.stdin.readline()
            sys.stdin.readline()
            sys.stdout.write("not-writable\n")
        sys.stdout.flush()


if __name__ == "__main__":
    main()
