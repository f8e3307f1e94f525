#!/usr/bin/env python3
"""Speed and memory of `fbaudit export TABLE --as-of` (history.export_as_of).

Issue 20's measure: export --as-of of 100,000 records, rows/s, peak memory flat
from 10k to 100k records. For each --records size, a log database is made
directly (the log schema from `ddl/log_init.sql`, then EXECUTE BLOCKs writing
packets and field rows as the transfer would): every record an insert of
--fields fields, then --updates updates of one field, the time stamps spread
so that --as-of falls after all of them. Each size is exported in a fresh
child process (so its peak RSS is its own), to a writer that discards the
rows, and timed.

Reported per size: seconds, records/s, packets/s, the child's peak RSS after
the timed export, and with --tracemalloc Python's peak allocation in a second,
untimed export.

Usage:
  .venvs/fb5/bin/python scripts/bench_export.py                       # 10k and 100k records
  .venvs/fb5/bin/python scripts/bench_export.py --records 10000,100000 --json out.json
"""
from __future__ import annotations

import argparse
import json
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchlib import machine_info, say, write_results


def build(log_path: Path, records: int, fields: int, updates: int) -> int:
    from firebird.driver import create_database
    from fbaudit import templates
    from fbaudit.config import DatabaseSpec
    from fbaudit.db import apply_plan, open_database
    con = create_database(str(log_path), user="SYSDBA", charset="UTF8")
    con.close()
    with open_database(DatabaseSpec("log", str(log_path))) as db:
        apply_plan(db, templates.render("log_init", P="FBA_"))
        db.execute("INSERT INTO FBA_SOURCES (ID, NAME, DATABASE_DSN, ADDED_AT) VALUES (1, 'bench', 'x', LOCALTIMESTAMP)")
        db.execute("INSERT INTO FBA_DICT_TABLES (SOURCE_ID, NUM_TABLE, TABLE_NAME, KEY_COLUMNS) "
                   "VALUES (1, 1, 'ITEM', '[\"ID\"]')")
        db.execute("INSERT INTO FBA_DICT_FIELDS (SOURCE_ID, NUM_TABLE, NUM_POLE, FIELD_NAME, FIELD_TYPE, FIELD_KIND) "
                   "VALUES (1, 1, 1, 'ID', 'INTEGER', 'number')")
        for n in range(2, fields + 1):
            db.execute("INSERT INTO FBA_DICT_FIELDS (SOURCE_ID, NUM_TABLE, NUM_POLE, FIELD_NAME, FIELD_TYPE, "
                       "FIELD_KIND) VALUES (1, 1, ?, ?, 'VARCHAR(40)', 'text')", (n, f"C{n}"))
        db.commit()
        per = 1 + updates
        chunk = 5000
        for first in range(0, records, chunk):
            last = min(records, first + chunk)
            # Packet ids: record r's versions are r * per + 1 .. r * per + per (version numbers 1..per).
            db.con.execute_immediate(
                f"EXECUTE BLOCK AS DECLARE r INTEGER = {first}; DECLARE v INTEGER; DECLARE f INTEGER; "
                "DECLARE k VARCHAR(20); DECLARE pid BIGINT; "
                f"BEGIN WHILE (r < {last}) DO BEGIN k = r; v = 0; "
                f"WHILE (v < {per}) DO BEGIN pid = r * {per} + v + 1; "
                "INSERT INTO FBA_LOG_PACKET (SOURCE_ID, PACKET_ID, CREATED_AT, OPERATION, NUM_TABLE, RECORD_KEY, "
                "KEY_HASH, AUTHOR, DB_USER, TRANSACTION_ID, TRANSFERRED_AT, LOAD_TX, VERSION_NO) VALUES (1, :pid, "
                "DATEADD(:pid MILLISECOND TO TIMESTAMP '2026-01-01 00:00:00'), IIF(:v = 0, 1, 2), 1, :k, HASH(:k), "
                "'bench', 'SYSDBA', :pid, LOCALTIMESTAMP, 1, :v + 1); "
                "IF (v = 0) THEN BEGIN "
                "INSERT INTO FBA_LOG (SOURCE_ID, PACKET_ID, NUM_POLE, BLOB_OLD, BLOB_NEW) VALUES (1, :pid, 1, NULL, :k); "
                f"f = 1; WHILE (f < {fields}) DO BEGIN f = f + 1; "
                "INSERT INTO FBA_LOG (SOURCE_ID, PACKET_ID, NUM_POLE, BLOB_OLD, BLOB_NEW) VALUES (1, :pid, :f, NULL, "
                "'value ' || :f || ' of ' || :k); END END "
                f"ELSE INSERT INTO FBA_LOG (SOURCE_ID, PACKET_ID, NUM_POLE, BLOB_OLD, BLOB_NEW) VALUES (1, :pid, "
                f"MOD(:v, {fields - 1}) + 2, 'before', 'update ' || :v || ' of ' || :k); "
                "v = v + 1; END r = r + 1; END END")
            db.con.commit()
        return records * per


def child(log_path: str, at: str, tracing: bool) -> None:
    """One export in this process: prints its measures as JSON."""
    import tracemalloc
    from datetime import datetime
    from fbaudit import history
    from fbaudit.config import Config, DatabaseSpec, SourceSpec
    from fbaudit.runtime import load_client
    load_client()
    work = Path(log_path).parent
    config = Config(path=work / "x.yaml", log=DatabaseSpec("log", log_path),
                    sources=(SourceSpec("bench", str(work / "none.fdb"), registry=work / "t.yaml"),))
    seen = {"n": 0}

    def write(row: dict) -> None:
        seen["n"] += 1
    t0 = time.perf_counter()
    res = history.export_as_of(config, "ITEM", datetime.fromisoformat(at), write)
    seconds = time.perf_counter() - t0
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    peak = None
    if tracing:     # Python's own peak, in a second run under tracemalloc (several times slower: not timed)
        tracemalloc.start()
        history.export_as_of(config, "ITEM", datetime.fromisoformat(at), write)
        peak = tracemalloc.get_traced_memory()[1]
    print(json.dumps({"records": res["records"], "packets": res["packets"], "seconds": round(seconds, 2),
                      "records_per_s": round(res["records"] / seconds), "packets_per_s": round(res["packets"] / seconds),
                      "python_peak_mb": round(peak / 2**20, 1) if peak is not None else None,
                      "max_rss_mb": round(rss / 1024, 1)}))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--records", default="10000,100000", help="comma list of table sizes [10000,100000]")
    ap.add_argument("--fields", type=int, default=10, help="fields per record [10]")
    ap.add_argument("--updates", type=int, default=3, help="updates per record after its insert [3]")
    ap.add_argument("--json", metavar="FILE")
    ap.add_argument("--tracemalloc", action="store_true", help="also Python's peak allocation (an untimed second run)")
    ap.add_argument("--child", nargs=3, metavar=("LOG", "AT", "TRACE"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(args.child[0], args.child[1], args.child[2] == "1")
        return 0
    from fbaudit.runtime import load_client
    load_client()               # the firebird-embedded wheel of this venv, as the child's export uses
    results: dict = {"machine": machine_info(), "fields": args.fields, "updates": args.updates, "runs": []}
    for size in [int(x) for x in args.records.split(",")]:
        work = Path(tempfile.mkdtemp(prefix="fbaudit-bench-export-"))
        try:
            log_path = work / "log.fdb"
            t0 = time.perf_counter()
            packets = build(log_path, size, args.fields, args.updates)
            say(f"{size} records, {packets} packets built in {time.perf_counter() - t0:.0f} s")
            out = subprocess.run([sys.executable, __file__, "--child", str(log_path), "2027-01-01T00:00:00",
                                  "1" if args.tracemalloc else "0"],
                                 capture_output=True, text=True)
            if out.returncode:
                raise SystemExit(f"the export failed:\n{out.stderr}")
            run = json.loads(out.stdout.strip().splitlines()[-1])
            say(f"  export: {run['records']} records in {run['seconds']} s ({run['records_per_s']} records/s, "
                f"{run['packets_per_s']} packets/s); Python peak {run['python_peak_mb']} MB, "
                f"peak RSS {run['max_rss_mb']} MB")
            results["runs"].append(run)
        finally:
            shutil.rmtree(work, ignore_errors=True)
    write_results(results, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
