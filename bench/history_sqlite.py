"""The peer side of bench/history.sh: per simulated sweep one transaction
replacing HOSTS records of RECORD_BYTES each (mdb's mean record size) plus
one sweep summary row, into SQLite as NetAlertX keeps its presence
history, with WAL and synchronous=FULL so that a commit is as durable as
mdb's synced frame. Prints the same JSON figures."""

import json
import os
import sqlite3
import sys
import time

path, hosts, sweeps, record_bytes = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
if os.path.exists(path):
    os.remove(path)
db = sqlite3.connect(path, isolation_level=None)
db.execute("PRAGMA journal_mode=WAL")
db.execute("PRAGMA synchronous=FULL")
db.execute("CREATE TABLE hosts (key TEXT PRIMARY KEY, value BLOB)")
db.execute("CREATE TABLE sweeps (at INTEGER PRIMARY KEY, value BLOB)")
times = []
for k in range(sweeps):
    blob = os.urandom(record_bytes)
    start = time.perf_counter()
    db.execute("BEGIN")
    db.executemany(
        "INSERT OR REPLACE INTO hosts VALUES (?, ?)",
        ((f"mac:00:16:3e:00:00:{i:02x}", blob) for i in range(hosts)),
    )
    db.execute("INSERT INTO sweeps VALUES (?, ?)", (k, b"x" * 40))
    db.execute("COMMIT")
    times.append((time.perf_counter() - start) * 1000)
db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
db.close()
start = time.perf_counter()
db = sqlite3.connect(path)
rows = db.execute("SELECT count(*) FROM hosts").fetchone()[0]
open_ms = (time.perf_counter() - start) * 1000
times.sort()
pick = lambda q: times[int((len(times) - 1) * q)]
print(json.dumps({
    "write_ms_p50": pick(0.5), "write_ms_p99": pick(0.99), "write_ms_max": pick(1.0),
    "store_bytes": os.path.getsize(path), "open_and_count_ms": open_ms, "records": rows,
}))
