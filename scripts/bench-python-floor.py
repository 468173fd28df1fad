#!/usr/bin/env python3
"""Issue 17's reference for the 500-customer ingest check: a bare Python
`sqlite3` `executemany` of event rows (id, customer, type, time, a JSON
payload of ~130 bytes) into a table with one primary key, in a temp file.

    python3 scripts/bench-python-floor.py [--events 200000] [--customers 500]

Prints rows/s for one transaction, a commit per 1,000 rows, and a commit
per 1,000 in WAL mode with synchronous = NORMAL (Perly's writer's pragmas).
Compare with `perly bench ingest --customers 500 --events 200000` run in
the same minutes (BENCHMARKS.md, "Sixteenth session").
"""
import argparse
import json
import os
import sqlite3
import tempfile
import time


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--events", type=int, default=200_000)
    ap.add_argument("--customers", type=int, default=500)
    a = ap.parse_args()
    rows = []
    for i in range(a.events):
        customer, event = f"cust-{i % a.customers}", f"evt-{i}"
        payload = json.dumps({"id": event, "customer_id": customer, "type": "feature_used",
                              "occurred_at": "2026-12-01T10:00:00Z", "feature": f"f{i % 7}"})
        rows.append((event, customer, "feature_used", "2026-12-01T10:00:00Z", payload))
    for mode in ("one transaction", "commit per 1,000", "commit per 1,000, WAL"):
        with tempfile.TemporaryDirectory() as d:
            con = sqlite3.connect(os.path.join(d, "floor.db"))
            if mode.endswith("WAL"):
                con.execute("PRAGMA journal_mode = WAL")
                con.execute("PRAGMA synchronous = NORMAL")
            con.execute("CREATE TABLE events (event_id TEXT PRIMARY KEY, customer_id TEXT, type TEXT, "
                        "occurred_at TEXT, payload TEXT)")
            con.commit()
            insert = "INSERT INTO events VALUES (?, ?, ?, ?, ?)"
            start = time.perf_counter()
            if mode == "one transaction":
                con.executemany(insert, rows)
                con.commit()
            else:
                for k in range(0, len(rows), 1000):
                    con.executemany(insert, rows[k:k + 1000])
                    con.commit()
            secs = time.perf_counter() - start
            con.close()
            print(f"{mode}: {len(rows) / secs:,.0f} rows/s")


if __name__ == "__main__":
    main()
