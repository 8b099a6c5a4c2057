#!/usr/bin/env bash
# Sweep benchmark, side by side: builds a test LAN of network namespaces in
# 198.18.0.0/16 (the benchmarking range) and times `mdb scan` at its
# defaults (and with each follow-up turned off, and with none) next to
# arp-scan (defaults and tuned), nmap -sn (defaults and -T5 --min-rate
# 5000) and fping, one run per tool in turn (interleaved),
# the scanner's neighbour table flushed before each. Prints each tool's
# median time, its ratio to mdb's and the hosts it found with the right
# MAC (or at all, for the ICMP-only tools). Packets go only to the
# namespaces this script creates.
#
# Modes:
#   lan24  100 live hosts in a /24, every 5th drops ICMP
#   lan16  200 live hosts spread over a /16 (fping is left out: it pings
#          every address one by one)
#   late   lan24 plus one host whose ARP answer comes 300 ms late
#          (tests/py/arp_late.py; the host's kernel ignores ARP)
#   loss   lan24 with 20 % of every host's incoming frames dropped
#          (nft numgen random: this kernel has no netem)
#   campus DEVICES (default 5000) in a /19, each with its own Raspberry Pi
#          MAC, answered by one namespace (tests/py/arp_campus.py) that
#          drops all TCP; after the scans, `mdb serve` sweeps it 10 times
#          (interval 5 s) and the time of each sweep and its peak RSS are
#          printed
#
# Usage (root): bash bench/sweep.sh [MODE=lan24] [RUNS=3] [DEVICES=5000]
#   MDB_BIN=path/to/mdb uses that binary instead of building one.
#   BACKLOG=N sets net.core.netdev_max_backlog for the run (default
#   20000, restored on exit; 0 keeps the machine's).
set -euo pipefail
cd "$(dirname "$0")/.."
MODE=${1:-lan24}
RUNS=${2:-3}
SILENT_EVERY=5
case "$MODE" in
  lan24|late|loss) HOSTS=100; PREFIX=24 ;;
  lan16) HOSTS=200; PREFIX=16 ;;
  campus) HOSTS=${3:-5000}; PREFIX=19 ;;
  *) echo "mode: lan24, lan16, late, loss or campus" >&2; exit 64 ;;
esac
NET="198.18.0.0/$PREFIX"

for tool in arp-scan nmap fping nft; do
  command -v "$tool" >/dev/null || { echo "== installing peers"; DEBIAN_FRONTEND=noninteractive apt-get install -y -qq arp-scan nmap fping nftables >/dev/null; break; }
done
# MDB_BIN: a release binary built already (the static one CI builds).
if [ -z "${MDB_BIN:-}" ]; then cargo build --release --quiet; fi
MDB="${MDB_BIN:-$PWD/target/release/mdb}"
PY=${MDB_PYTHON:-python3}

TAG="mdbb$$"
S="${TAG}s"
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  for ns in $(ip netns list | awk '{print $1}' | grep "^${TAG}" || true); do ip netns del "$ns" 2>/dev/null || true; done
  rm -rf "/etc/netns/$S"
  [ -n "${BACKLOG_WAS:-}" ] && sysctl -qw net.core.netdev_max_backlog="$BACKLOG_WAS" || true
}
trap cleanup EXIT
# Every namespace of the test LAN shares this kernel's per-CPU backlog: a
# multicast each host sends (an IPv6 solicitation of the scanner) is 100
# copies, and 100 hosts' are 10,000 frames against a backlog of 1,000,
# which drops most of them. Real hosts each have their own kernel, so the
# run raises it (restored on exit); BACKLOG=0 keeps the machine's.
BACKLOG=${BACKLOG:-20000}
if [ "$BACKLOG" != 0 ]; then
  BACKLOG_WAS=$(sysctl -n net.core.netdev_max_backlog)
  sysctl -qw net.core.netdev_max_backlog="$BACKLOG"
fi

# Host i's address: consecutive in a /24, spread evenly over a /16.
addr_of() {
  local i=$1
  if [ "$PREFIX" = 24 ]; then echo "198.18.0.$((i + 1))"
  else local n=$(( i * 65000 / HOSTS + 300 )); echo "198.18.$((n / 256)).$((n % 256 == 0 ? 1 : n % 256))"; fi
}
mac_of() { printf '02:42:c6:12:%02x:%02x' $(( $1 / 256 )) $(( $1 % 256 )); }

ip netns add "$S"
ip -n "$S" link set lo up
ip -n "$S" link add br0 type bridge
ip -n "$S" addr add "198.18.0.1/$PREFIX" dev br0
ip -n "$S" link set br0 up
# Names from files only: reverse DNS is measured, an unreachable resolver is not.
mkdir -p "/etc/netns/$S"
printf '127.0.0.1 localhost\n' > "/etc/netns/$S/hosts"
: > "/etc/netns/$S/resolv.conf"
drop_icmp=$'table inet b {\n chain input {\n  type filter hook input priority 0;\n  icmp type echo-request drop\n }\n}'
lossy=$'table netdev loss {\n chain ingress {\n  type filter hook ingress device eth0 priority 0;\n  numgen random mod 100 < 20 drop\n }\n}'
EXPECT=$(mktemp)
# add_host I ADDR: host I's namespace on the bridge, its MAC recorded.
add_host() {
  local i=$1 a=$2 ns="${TAG}h$1" m; m=$(mac_of "$1")
  ip netns add "$ns"
  ip link add eth0 netns "$ns" type veth peer name "p$i" netns "$S"
  ip -n "$ns" link set eth0 address "$m"
  ip -n "$ns" addr add "$a/$PREFIX" dev eth0
  ip -n "$ns" link set eth0 up
  ip -n "$S" link set "p$i" master br0 up
  echo "$a $m" >> "$EXPECT"
}
CAMPUS_FIRST=198.18.0.10
campus_hosts() {
  # One namespace on the bridge answers ARP for every device; its kernel
  # owns none of their addresses, so their TCP goes unanswered.
  local ns="${TAG}c"
  ip netns add "$ns"
  ip link add eth0 netns "$ns" type veth peer name pc netns "$S"
  ip -n "$ns" link set eth0 up
  ip -n "$S" link set pc master br0 up
  ip netns exec "$ns" "$PY" tests/py/arp_campus.py eth0 "$CAMPUS_FIRST" "$HOSTS" 1800 > "$EXPECT.ready" &
  PIDS+=($!)
  for _ in $(seq 1 100); do grep -q ready "$EXPECT.ready" 2>/dev/null && break; sleep 0.1; done
  "$PY" - "$CAMPUS_FIRST" "$HOSTS" >> "$EXPECT" <<'PY'
import ipaddress, sys
base, n = int(ipaddress.IPv4Address(sys.argv[1])), int(sys.argv[2])
for i in range(n):
    print(ipaddress.IPv4Address(base + i), "dc:a6:32:%02x:%02x:%02x" % (i >> 16 & 255, i >> 8 & 255, i & 255))
PY
}
[ "$MODE" = campus ] && campus_hosts
[ "$MODE" = campus ] || for i in $(seq 1 "$HOSTS"); do
  add_host "$i" "$(addr_of "$i")"
  ns="${TAG}h$i"
  if [ $((i % SILENT_EVERY)) -eq 0 ]; then echo "$drop_icmp" | ip netns exec "$ns" nft -f -; fi
  if [ "$MODE" = loss ]; then echo "$lossy" | ip netns exec "$ns" nft -f -; fi
done
if [ "$MODE" = late ]; then
  i=$((HOSTS + 1)); ns="${TAG}h$i"; a="198.18.0.250"
  add_host "$i" "$a"
  ip netns exec "$ns" sysctl -qw net.ipv4.conf.eth0.arp_ignore=8
  ip netns exec "$ns" "$PY" tests/py/arp_late.py eth0 "$a" 300 > /dev/null &
  PIDS+=($!)
  HOSTS=$((HOSTS + 1))
  sleep 0.5
fi
if [ "$MODE" = campus ]; then
  echo "LAN (campus): $HOSTS devices in $NET answering ARP with their own MACs, no TCP; $RUNS interleaved runs per tool"
else
  echo "LAN ($MODE): $HOSTS live hosts in $NET, every ${SILENT_EVERY}th drops ICMP; $RUNS interleaved runs per tool"
fi

in_ns() { ip netns exec "$S" "$@"; }
# Each tool's own run (timed), then its output turned into "ip mac" lines
# ("ip -" where the tool gives no MAC), untimed.
RSS=$(mktemp)
raw_mdb()       { in_ns "$MDB" scan "$NET" --json 2>/dev/null; }
raw_mdbwait()   { in_ns "$MDB" scan "$NET" --json --timeout 500ms 2>/dev/null; }
parse_mdbwait() { parse_mdb; }
raw_mdbnomdns() { in_ns "$MDB" scan "$NET" --json --no-mdns 2>/dev/null; }
parse_mdbnomdns() { parse_mdb; }
raw_mdbnoports() { in_ns "$MDB" scan "$NET" --json --no-ports 2>/dev/null; }
parse_mdbnoports() { parse_mdb; }
raw_mdbnordns() { in_ns "$MDB" scan "$NET" --json --no-rdns 2>/dev/null; }
parse_mdbnordns() { parse_mdb; }
raw_mdbonce()   { in_ns "$MDB" scan "$NET" --json --tries 1 2>/dev/null; }
parse_mdbonce() { parse_mdb; }
raw_mdbnoipv6() { in_ns "$MDB" scan "$NET" --json --no-ipv6 2>/dev/null; }
parse_mdbnoipv6() { parse_mdb; }
raw_mdbbare()   { in_ns "$MDB" scan "$NET" --json --no-ports --no-mdns --no-rdns --no-ipv6 2>/dev/null; }
parse_mdbbare() { parse_mdb; }
raw_arpscan()   { in_ns arp-scan -I br0 -q -x "$NET" 2>/dev/null; }
raw_arptuned()  { in_ns arp-scan -I br0 -q -x -B 100M -t 100 -r 1 "$NET" 2>/dev/null; }
raw_nmap()      { in_ns nmap -sn -n -oX - "$NET" 2>/dev/null; }
raw_nmapfast()  { in_ns nmap -sn -n -T5 --min-rate 5000 -oX - "$NET" 2>/dev/null; }
raw_fping()     { in_ns fping -a -q -g "$NET" 2>/dev/null; }
parse_mdb()     { "$PY" -c 'import json,sys; [print(h["ip"], h["mac"] or "-") for h in json.load(sys.stdin)]'; }
parse_arpscan() { awk '{print $1, $2}'; }
parse_arptuned() { parse_arpscan; }
parse_nmap()    { "$PY" -c '
import sys, xml.etree.ElementTree as ET
for h in ET.parse(sys.stdin).getroot().iter("host"):
    a = {x.get("addrtype"): x.get("addr") for x in h.iter("address")}
    print(a.get("ipv4"), (a.get("mac") or "-").lower())'; }
parse_nmapfast() { parse_nmap; }
parse_fping()   { awk '{print $1, "-"}'; }

TOOLS=(mdb mdbnoipv6 mdbnomdns mdbnoports mdbnordns mdbonce mdbbare arpscan arptuned nmap nmapfast fping)
# At their defaults arp-scan (256 kbit/s) and nmap take minutes on a /16.
[ "$MODE" = lan16 ] && TOOLS=(mdb arptuned nmapfast)
# The late host: mdb's defaults trade it for speed; a timeout finds it.
[ "$MODE" = late ] && TOOLS+=(mdbwait)
[ "$MODE" = campus ] && TOOLS=(mdb arptuned arpscan)
# SERVE_ONLY=1: only the `mdb serve` sweeps of the campus.
[ -n "${SERVE_ONLY:-}" ] && TOOLS=()
declare -A TIMES FOUND DUPS
for _ in $(seq 1 "$RUNS"); do
  for tool in "${TOOLS[@]}"; do
    in_ns ip neigh flush dev br0 2>/dev/null || true   # every run starts cold
    raw=$(mktemp); out=$(mktemp)
    t0=$(date +%s%N)
    "raw_$tool" > "$raw" || true
    t1=$(date +%s%N)
    "parse_$tool" < "$raw" > "$out" 2>/dev/null || true
    TIMES[$tool]="${TIMES[$tool]:-} $(( (t1 - t0) / 1000000 ))"
    # Found: expected hosts with the right MAC ("-": the tool saw no MAC).
    n=$(awk 'NR==FNR {m[$1]=$2; next} ($1 in m) && ($2 == m[$1] || $2 == "-") && !seen[$1]++' "$EXPECT" "$out" | wc -l)
    FOUND[$tool]="${FOUND[$tool]:-} $n"
    rm -f "$raw" "$out"
  done
done

median() { tr ' ' '\n' | grep -v '^$' | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
sum() { tr ' ' '\n' | grep -v '^$' | awk '{s+=$1} END {print s}'; }
name_of() { case $1 in
  mdb) echo "mdb scan (defaults)";; mdbwait) echo "mdb scan --timeout 500ms";; arpscan) echo "arp-scan (defaults)";;
  mdbnomdns) echo "mdb scan --no-mdns";; mdbnoports) echo "mdb scan --no-ports";; mdbnordns) echo "mdb scan --no-rdns";;
  mdbonce) echo "mdb scan --tries 1";; mdbnoipv6) echo "mdb scan --no-ipv6";;
  mdbbare) echo "mdb scan, no follow-ups";;
  arptuned) echo "arp-scan -B100M -t100 -r1";; nmap) echo "nmap -sn (defaults)";;
  nmapfast) echo "nmap -sn -T5 --min-rate 5000";; fping) echo "fping -g";; esac; }
if [ ${#TOOLS[@]} -gt 0 ]; then
m_mdb=$(echo "${TIMES[mdb]}" | median)
m_arp=$(echo "${TIMES[arptuned]:-}" | median)
printf '\n%-30s %10s %16s %10s %14s\n' tool "median ms" "found (all runs)" "time/mdb" "time/arp-scan"
for tool in "${TOOLS[@]}"; do
  med=$(echo "${TIMES[$tool]}" | median)
  found=$(echo "${FOUND[$tool]}" | sum)
  ratio=$(awk -v a="$med" -v b="$m_mdb" 'BEGIN { printf "%.2fx", a / b }')
  to_arp=$(awk -v a="$med" -v b="${m_arp:-0}" 'BEGIN { if (b > 0) printf "%.2fx", a / b; else print "-" }')
  printf '%-30s %10s %16s %10s %14s\n' "$(name_of "$tool")" "$med" "$found/$((HOSTS * RUNS))" "$ratio" "$to_arp"
done
# Peak RSS from runs of their own: under /usr/bin/time a run took ~10 ms
# longer in interleaved runs here, which the timed runs should not pay.
for _ in 1 2 3; do
  in_ns ip neigh flush dev br0 2>/dev/null || true
  in_ns /usr/bin/time -f %M -a -o "$RSS" "$MDB" scan "$NET" --json > /dev/null 2>&1 || true
done
echo "mdb peak RSS: $(sort -n "$RSS" | tail -1) KiB (largest of 3 runs after the timed ones)"
fi
rm -f "$EXPECT" "$RSS"

[ "$MODE" = campus ] || exit 0
# mdb serve sweeping the campus: 10 sweeps, each one's time from its log.
SERVE=$(mktemp -d)
git init -q -b main "$SERVE/db"
mkdir -p "$SERVE/db/machines"
printf 'subnets:\n  - name: campus\n    cidr: %s\n' "$NET" > "$SERVE/db/mdb.yaml"
printf 'machines:\n  - name: scanner\n    ip: 198.18.0.1\n    use: discover\n' > "$SERVE/db/machines/lab.yaml"
git -C "$SERVE/db" add -A && git -C "$SERVE/db" -c user.name=b -c user.email=b@b commit -qm campus
cat > "$SERVE/mdb.toml" <<TOML
[db]
url = "$SERVE/db"
checkout = "$SERVE/checkout"
[server]
grpc_listen = "127.0.0.1:50051"
metrics_listen = "127.0.0.1:9090"
[scan]
subnets = ["$NET"]
interval = "5s"
reverse_dns = false
state_dir = "$SERVE/state"
TOML
in_ns env MDB_LOG=info "$MDB" serve --config "$SERVE/mdb.toml" 2> "$SERVE/log" &
SERVE_PID=$!
PIDS+=($SERVE_PID)
for _ in $(seq 1 600); do [ "$(grep -c 'sweep done' "$SERVE/log")" -ge 10 ] && break; sleep 0.5; done
pid=$(pgrep -P "$SERVE_PID" -x "$(basename "$MDB" | cut -c1-15)" || echo "$SERVE_PID")
rss=$(awk '/VmHWM/ {print $2}' "/proc/$pid/status" 2>/dev/null || echo "?")
now_rss=$(awk '/VmRSS/ {print $2}' "/proc/$pid/status" 2>/dev/null || echo "?")
kill "$pid" "$SERVE_PID" 2>/dev/null || true
echo
echo "mdb serve, $(grep -c 'sweep done' "$SERVE/log") sweeps of the campus (interval 5 s):"
grep 'sweep done' "$SERVE/log" | grep -oE 'took_ms=[0-9]+|hosts=[0-9]+' | paste -sd' \n' | nl -w2 -s'. '
echo "mdb serve peak RSS: $rss KiB (after 10 sweeps: $now_rss KiB); history store: $(du -k "$SERVE/state" | tail -1 | cut -f1) KiB"
rm -rf "$SERVE"
