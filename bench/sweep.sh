#!/usr/bin/env bash
# Sweep benchmark, side by side: builds a /24 test LAN of network
# namespaces in 198.18.0.0/24 (the benchmarking range) with N live hosts,
# some of which drop ICMP, then times `mdb scan` against arp-scan,
# nmap -sn and fping -g on the same network, RUNS times each, and prints
# each peer's median time as a ratio to mdb's, with how many hosts each
# found. Packets go only to the namespaces this script creates.
#
# Usage (root): bash bench/sweep.sh [HOSTS=100] [RUNS=5]
set -euo pipefail
cd "$(dirname "$0")/.."
HOSTS=${1:-100}
RUNS=${2:-5}
SILENT_EVERY=5          # every 5th host drops ICMP echo
[ "$HOSTS" -le 250 ] || { echo "at most 250 hosts fit the /24" >&2; exit 64; }

for tool in arp-scan nmap fping nft; do
  command -v "$tool" >/dev/null || { echo "== installing peers"; DEBIAN_FRONTEND=noninteractive apt-get install -y -qq arp-scan nmap fping nftables >/dev/null; break; }
done
cargo build --release --quiet
MDB="$PWD/target/release/mdb"

TAG="mdbb$$"
S="${TAG}s"
cleanup() {
  for ns in $(ip netns list | awk '{print $1}' | grep "^${TAG}" || true); do ip netns del "$ns" 2>/dev/null || true; done
}
trap cleanup EXIT

ip netns add "$S"
ip -n "$S" link set lo up
ip -n "$S" link add br0 type bridge
ip -n "$S" addr add 198.18.0.1/24 dev br0
ip -n "$S" link set br0 up
nft_rules=$'table inet b {\n chain input {\n  type filter hook input priority 0;\n  icmp type echo-request drop\n }\n}'
for i in $(seq 1 "$HOSTS"); do
  ns="${TAG}h$i"; addr="198.18.0.$((i + 1))"
  ip netns add "$ns"
  ip link add eth0 netns "$ns" type veth peer name "p$i" netns "$S"
  ip -n "$ns" link set eth0 address "$(printf '02:42:c6:12:00:%02x' $((i + 1)))"
  ip -n "$ns" addr add "$addr/24" dev eth0
  ip -n "$ns" link set eth0 up
  ip -n "$S" link set "p$i" master br0 up
  if [ $((i % SILENT_EVERY)) -eq 0 ]; then echo "$nft_rules" | ip netns exec "$ns" nft -f -; fi
done
echo "LAN: $HOSTS live hosts in 198.18.0.0/24, every ${SILENT_EVERY}th drops ICMP; $RUNS runs each"

in_ns() { ip netns exec "$S" "$@"; }
# Each prints the number of live hosts it found, not counting the scanner itself.
run_mdb()     { in_ns "$MDB" scan 198.18.0.0/24 --no-ports --no-rdns --json 2>/dev/null | grep -c '"ip": "198.18.0.\([2-9]\|[1-9][0-9]\+\)"' ; }
run_arpscan() { in_ns arp-scan -I br0 -q -x 198.18.0.0/24 2>/dev/null | grep -c '^198\.18\.0\.' ; }
run_nmap()    { in_ns nmap -sn -n -oG - 198.18.0.0/24 2>/dev/null | grep 'Status: Up' | grep -vc 'Host: 198.18.0.1 ' ; }
run_fping()   { in_ns fping -a -q -g 198.18.0.0/24 2>/dev/null | grep -vxc '198.18.0.1' ; }

declare -A MEDIAN FOUND
for tool in mdb arpscan nmap fping; do
  times=()
  for _ in $(seq 1 "$RUNS"); do
    in_ns ip neigh flush dev br0 2>/dev/null || true   # every run starts cold
    t0=$(date +%s%N)
    n=$("run_$tool" || true)
    t1=$(date +%s%N)
    times+=($(( (t1 - t0) / 1000000 )))
    FOUND[$tool]=$n
  done
  MEDIAN[$tool]=$(printf '%s\n' "${times[@]}" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}')
done

printf '\n%-10s %10s %8s %14s\n' tool "median ms" found "time vs mdb"
for tool in mdb arpscan nmap fping; do
  name=$tool; [ "$tool" = arpscan ] && name=arp-scan
  [ "$tool" = nmap ] && name="nmap -sn"
  [ "$tool" = fping ] && name="fping -g"
  ratio=$(awk -v a="${MEDIAN[$tool]}" -v b="${MEDIAN[mdb]}" 'BEGIN { printf "%.2fx", a / b }')
  printf '%-10s %10s %8s %14s\n' "$name" "${MEDIAN[$tool]}" "${FOUND[$tool]}/$HOSTS" "$ratio"
done
