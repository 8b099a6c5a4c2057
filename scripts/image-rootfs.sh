#!/usr/bin/env bash
# Assembles the release image's root filesystem around one static mdb
# binary: the binary, the scanner's copy with the file capability
# cap_net_raw, Debian's CA bundle, a non-root user (10001) and its home.
# Dockerfile and Containerfile.release both use it, so both images have
# the same layout.
# Usage: scripts/image-rootfs.sh BINARY OUT_DIR
set -euo pipefail
bin=${1:?static mdb binary}
out=${2:?output directory}
ca=/etc/ssl/certs/ca-certificates.crt
[ -r "$ca" ] || { echo "no CA bundle at $ca (apt-get install ca-certificates)" >&2; exit 1; }
command -v setcap >/dev/null || { echo "setcap missing (apt-get install libcap2-bin)" >&2; exit 1; }

rm -rf "$out"
install -D -m 0755 "$bin" "$out/usr/local/bin/mdb"
# The API replicas run `mdb` with no capabilities; only the scanner's copy
# carries cap_net_raw (raw ARP and ICMP sockets).
install -m 0755 "$bin" "$out/usr/local/bin/mdb-scanner"
setcap cap_net_raw+ep "$out/usr/local/bin/mdb-scanner"
install -D -m 0644 "$ca" "$out/etc/ssl/certs/ca-certificates.crt"
printf 'root:x:0:0:root:/root:/sbin/nologin\nmdb:x:10001:10001:mdb:/var/lib/mdb:/sbin/nologin\n' > "$out/etc/passwd"
printf 'root:x:0:\nmdb:x:10001:\n' > "$out/etc/group"
printf 'hosts: files dns\n' > "$out/etc/nsswitch.conf"
install -d -m 1777 "$out/tmp"
# COPY makes every file root-owned; the home (a volume in Kubernetes) is
# writable like /tmp instead.
install -d -m 1777 "$out/var/lib/mdb"
install -d -m 0755 "$out/etc/mdb"
