#!/usr/bin/env python3
"""Cost of `fbaudit status`'s mass-change check (status._mass_changes) on a large log database.

The check walks the newest MASS_SCAN packets of each source down the LOG_PACKET_LAST index and
groups them by transaction and table. This builds a log database of --packets packets (the
export benchmark's builder: bench_export.build, one table, packets 1 ms apart, every packet
its own transaction; --mass-rows of the newest packets put in one transaction, so the check
finds one mass change), then times the check --repeat times, side by side with the same
status query without the check (SELECT of the source list), in one run.

Usage:
  .venvs/fb5/bin/python scripts/bench_mass_change.py                   # 1,000,000 packets
  .venvs/fb5/bin/python scripts/bench_mass_change.py --packets 250000 --json out.json
"""
from __future__ import annotations

import argparse
import tempfile
import time
from datetime import datetime
from pathlib import Path

from benchlib import latency_summary, machine_info, say, write_results
from bench_export import build


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--packets", type=int, default=1_000_000)
    ap.add_argument("--mass-rows", type=int, default=5_000)
    ap.add_argument("--repeat", type=int, default=20)
    ap.add_argument("--json", metavar="FILE")
    args = ap.parse_args()
    from fbaudit import status
    from fbaudit.config import DatabaseSpec
    from fbaudit.db import open_database
    from fbaudit.runtime import load_client
    load_client()
    work = Path(tempfile.mkdtemp(prefix="fba_mass_"))
    log_path = work / "log.fdb"
    t0 = time.perf_counter()
    records = args.packets // 4
    n = build(log_path, records, 3, 3)
    say(f"built {n:,} packets in {time.perf_counter() - t0:.1f} s")
    with open_database(DatabaseSpec("log", str(log_path))) as db:
        top = db.scalar("SELECT MAX(PACKET_ID) FROM FBA_LOG_PACKET")
        # The newest --mass-rows packets: one transaction, logged now.
        db.execute("UPDATE FBA_LOG_PACKET SET TRANSACTION_ID = -1, CREATED_AT = LOCALTIMESTAMP "
                   "WHERE SOURCE_ID = 1 AND PACKET_ID > ?", (top - args.mass_rows,))
        db.commit()
        since = datetime.now().replace(hour=0, minute=0)
        with_check, without = [], []
        found = None
        for _ in range(args.repeat):
            t = time.perf_counter()
            db.query("SELECT ID, NAME FROM FBA_SOURCES")
            db.commit()
            without.append(time.perf_counter() - t)
            t = time.perf_counter()
            found = status._mass_changes(db, "FBA_", 1, "bench", 1000, since)
            db.commit()
            with_check.append(time.perf_counter() - t)
    res = {"machine": machine_info(), "packets": n, "mass_rows": args.mass_rows, "scan": status.MASS_SCAN,
           "found": found, "check_ms": latency_summary(with_check), "baseline_ms": latency_summary(without)}
    print(f"\n## status mass-change check, {n:,} packets in the log, newest {status.MASS_SCAN:,} walked\n")
    print("| query | p50 ms | p95 ms | max ms |\n| --- | --- | --- | --- |")
    for name, key in (("without the check (source list)", "baseline_ms"), ("mass-change check", "check_ms")):
        s = res[key]
        print(f"| {name} | {s['p50']:.1f} | {s['p95']:.1f} | {s['max']:.1f} |")
    print(f"\nfound: {found}")
    write_results(res, args.json)


if __name__ == "__main__":
    main()
