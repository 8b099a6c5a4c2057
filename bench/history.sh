#!/usr/bin/env bash
# The history store side by side with SQLite (NetAlertX's store) on the same
# simulated sweeps: SQLite rewrites every host's row (records of mdb's mean
# size) in one durable transaction per sweep, as NetAlertX updates each
# device's last-seen; mdb appends and syncs what changed.
#   bash bench/history.sh [HOSTS] [SWEEPS]
set -euo pipefail
cd "$(dirname "$0")/.."
hosts=${1:-100}
sweeps=${2:-1000}
cargo build --release --quiet
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
mdb=$(./target/release/mdb history-bench "$dir/redb" --hosts "$hosts" --sweeps "$sweeps" --interval 5m)
echo "mdb (log):     $mdb"
bytes=$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["record_bytes_mean"])' "$mdb")
peer=$(python3 bench/history_sqlite.py "$dir/sqlite.db" "$hosts" "$sweeps" "$bytes")
echo "SQLite (WAL):  $peer"
python3 - "$mdb" "$peer" <<'PY'
import json, sys
m, p = json.loads(sys.argv[1]), json.loads(sys.argv[2])
for k in ("write_ms_p50", "write_ms_p99", "store_bytes"):
    print(f"{k:14} mdb {m[k]:>12.3f}  sqlite {p[k]:>12.3f}  sqlite/mdb {p[k] / m[k]:.2f}x")
PY
