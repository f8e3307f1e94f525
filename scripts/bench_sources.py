#!/usr/bin/env python3
"""fbaudit over many sources: one log database, --sources embedded source databases.

The hosted setup of issue 7: one database per customer, all of the same
schema, found by a folder pattern in the config (``sources: - pattern:
sources/*.fdb``). Steps, each timed as one pass over every source:

  init      `fbaudit init --all-sources` (log database + staging objects in each source)
  enable    `fbaudit enable ITEM --all-sources` (one shared registry)
  idle      transfer with nothing new (the fast check at scale), --repeat times: median and max
  changes   --changes committed changes per source (single-row UPDATE transactions spread
            over the sources), then one transfer pass that ships them all
  idle2     transfer with nothing new again (after real shipping: tier 2 then tier 1)
  rotate    rotation of every source (--force, so it runs now)
  status    `fbaudit status` (reads every source and the log database)

Each step runs the library call the command runs (in this process: embedded
Firebird runs in it) and, for idle and status, also the `fbaudit` command
itself with its process start. Every database is created from one template
file by copying (a closed embedded database file is a plain file), so making
200 sources costs seconds, not minutes.

Usage:
  .venvs/fb5/bin/python scripts/bench_sources.py                  # 200 sources, 100 changes each
  .venvs/fb5/bin/python scripts/bench_sources.py --sources 20 --changes 10 --json out.json
"""
from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from benchlib import machine_info, say, write_results

SCHEMA = ("CREATE TABLE ITEM (ID INTEGER NOT NULL PRIMARY KEY, NAME VARCHAR(60) CHARACTER SET UTF8, "
          "QTY INTEGER, PRICE NUMERIC(12,2))")


def timed(fn):
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sources", type=int, default=200, help="source databases [200]")
    ap.add_argument("--changes", type=int, default=100, help="changes per source for the 'changes' step [100]")
    ap.add_argument("--rows", type=int, default=100, help="rows of ITEM in each source [100]")
    ap.add_argument("--workers", type=int, default=4, help="sources processed at the same time [4]")
    ap.add_argument("--repeat", type=int, default=5, help="idle transfer passes to time [5]")
    ap.add_argument("--dir", help="work folder [a temporary folder, removed afterwards]")
    ap.add_argument("--keep", action="store_true", help="keep the work folder")
    ap.add_argument("--json", metavar="FILE", help="write the results as JSON")
    args = ap.parse_args()

    from firebird.driver import connect, create_database
    from fbaudit import capture, rotation, transfer
    from fbaudit.config import load_config
    from fbaudit.runtime import load_client

    runtime = load_client()
    work = Path(args.dir) if args.dir else Path(tempfile.mkdtemp(prefix="fbaudit-bench-sources-"))
    work.mkdir(parents=True, exist_ok=True)
    (work / "sources").mkdir(exist_ok=True)
    results: dict = {"machine": machine_info(), "firebird": None, "sources": args.sources,
                     "changes_per_source": args.changes, "workers": args.workers, "steps": {}}
    try:
        template = work / "template.fdb"
        if template.exists():
            template.unlink()
        con = create_database(str(template), user="SYSDBA", charset="UTF8")
        con.execute_immediate(SCHEMA)
        con.commit()
        cur = con.cursor()
        cur.execute(f"EXECUTE BLOCK AS DECLARE i INTEGER = 0; BEGIN WHILE (i < {args.rows}) DO BEGIN i = i + 1; "
                    "INSERT INTO ITEM VALUES (:i, 'Артикул ' || :i, :i, :i * 1.5); END END")
        con.commit()
        results["firebird"] = con.info.server_version
        con.close()
        t0 = time.perf_counter()
        for i in range(1, args.sources + 1):
            shutil.copyfile(template, work / "sources" / f"shop{i:04d}.fdb")
        say(f"{args.sources} source databases copied in {time.perf_counter() - t0:.1f} s "
            f"({runtime.version if hasattr(runtime, 'version') else ''})")
        cfg_path = work / "fbaudit.yaml"
        cfg_path.write_text("log:\n  database: log.fdb\nsources:\n  - pattern: sources/*.fdb\n"
                            "    registry: tables.yaml\n", encoding="utf-8")
        config = load_config(cfg_path)
        steps = results["steps"]

        def step(name: str, seconds: float, **extra) -> None:
            steps[name] = {"seconds": round(seconds, 3), **extra}
            say(f"{name}: {seconds:.2f} s" + "".join(f", {k} {v}" for k, v in extra.items()))

        s, res = timed(lambda: capture.init(config))
        step("init", s, errors=len(res.errors))
        s, res = timed(lambda: capture.enable(config, "ITEM"))
        step("enable", s, errors=len(res.errors))

        def idle(name: str) -> None:
            times = []
            for _ in range(args.repeat):
                s, res = timed(lambda: transfer.transfer(config, workers=args.workers))
                assert not res.errors, res.errors
                assert res.data["packets"] == 0, res.data["packets"]
                times.append(s)
            step(name, statistics.median(times), max=round(max(times), 3),
                 per_source_ms=round(statistics.median(times) / args.sources * 1000, 2))

        idle("idle")
        # The changes: single-row UPDATE transactions, as an ERP makes them.
        def edit(spec) -> None:
            c = connect(spec.database, user="SYSDBA", charset="UTF8")
            cur = c.cursor()
            for k in range(args.changes):
                cur.execute("UPDATE ITEM SET QTY = QTY + 1 WHERE ID = ?", (k % args.rows + 1,))
                c.commit()
            c.close()
        s, _ = timed(lambda: list(ThreadPoolExecutor(args.workers).map(edit, config.sources)))
        step("edits", s, transactions=args.sources * args.changes)
        s, res = timed(lambda: transfer.transfer(config, workers=args.workers))
        assert not res.errors, res.errors
        step("changes", s, packets=res.data["packets"], field_rows=res.data["field_rows"],
             packets_per_s=round(res.data["packets"] / s))
        assert res.data["packets"] == args.sources * args.changes, res.data["packets"]
        idle("idle2")
        s, res = timed(lambda: rotation.rotate(config, force=True, workers=args.workers))
        outcomes: dict = {}
        for item in res.data["sources"]:
            outcomes[item.get("outcome")] = outcomes.get(item.get("outcome"), 0) + 1
        step("rotate", s, outcomes=outcomes, errors=len(res.errors))
        s, res = timed(lambda: capture.status(config, workers=args.workers))
        step("status", s, errors=len(res.errors))
        # The commands themselves, with the process start (what a scheduler pays each minute).
        exe = Path(sys.executable).with_name("fbaudit")
        for name, argv in (("cli_idle", ["transfer"]), ("cli_status", ["status"])):
            times = []
            for _ in range(3):
                s, proc = timed(lambda: subprocess.run([str(exe), "--config", str(cfg_path), *argv],
                                                       capture_output=True, text=True))
                times.append(s)
            step(name, statistics.median(times), exit_code=proc.returncode)
        write_results(results, args.json)
        return 0
    finally:
        if not args.keep and not args.dir:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
