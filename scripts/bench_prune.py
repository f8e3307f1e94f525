#!/usr/bin/env python3
"""Speed of `fbaudit prune` on a big log database, with and without keeping each record's newest packet.

The log database is built as scripts/bench_api.py builds it (its `build`: --packets packets of
table ITEM over --records records, 5 field rows each, one record 'HOT' with --versions versions,
CREATED_AT 0.1 s apart from 2026-01-01), then numbered as `fbaudit init` numbers an older log.
The cut-off is at --fraction of the packets, so that share goes, the HOT record's old versions
among them (a hot row is where a per-packet "is there a later one?" check costs most).

Timed, each on a fresh copy of the built file:
  dry_keep      prune(..., dry_run=True)                      (the default --keep-newest)
  dry_all       prune(..., dry_run=True, keep_newest=False)
  prune_keep    prune(...)                                    (removes; reports kept packets)

Usage:
  .venvs/fb5/bin/python scripts/bench_prune.py                       # 200,000 packets, ~2 min
  .venvs/fb5/bin/python scripts/bench_prune.py --packets 1000000 --versions 100000 --json out.json
"""
from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from datetime import datetime, timedelta
from pathlib import Path

from bench_api import FIELDS, build
from benchlib import machine_info, say, write_results


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--packets", type=int, default=200_000, help="packets in the log [200000]")
    ap.add_argument("--records", type=int, default=20_000, help="records the other packets spread over [20000]")
    ap.add_argument("--versions", type=int, default=60_000, help="versions of the hot record [60000]")
    ap.add_argument("--fraction", type=float, default=0.8, help="share of the packets before the cut-off [0.8]")
    ap.add_argument("--dir", help="work folder (kept with --keep; an existing built.fdb there is reused)")
    ap.add_argument("--keep", action="store_true")
    ap.add_argument("--json", metavar="FILE")
    args = ap.parse_args()

    from fbaudit import prune
    from fbaudit.objects import number_versions
    from fbaudit.config import Config, DatabaseSpec, SourceSpec
    from fbaudit.db import open_database
    from fbaudit.runtime import load_client

    load_client()
    work = Path(args.dir) if args.dir else Path(tempfile.mkdtemp(prefix="fbaudit-bench-prune-"))
    work.mkdir(parents=True, exist_ok=True)
    built = work / "built.fdb"
    log_path = work / "log.fdb"
    try:
        if not built.exists():
            say(f"building {built}: {args.packets} packets x {FIELDS} field rows, HOT with {args.versions} versions")
            build(built, args.packets, args.records, args.versions)
            with open_database(DatabaseSpec("log", str(built))) as db:
                t0 = time.perf_counter()
                n = number_versions(db, "FBA_")
                say(f"numbered {n} packets in {time.perf_counter() - t0:.1f} s")
        cut = datetime(2026, 1, 1) + timedelta(seconds=args.fraction * args.packets / 10)
        config = Config(path=work / "x.yaml", log=DatabaseSpec("log", str(log_path)),
                        sources=(SourceSpec("bench", str(work / "none.fdb"), registry=work / "t.yaml"),))
        results: dict = {"machine": machine_info(), "packets": args.packets, "records": args.records,
                         "hot_versions": args.versions, "cut": cut.isoformat(), "runs": {}}
        for name, kw in (("dry_keep", {"dry_run": True}), ("dry_all", {"dry_run": True, "keep_newest": False}),
                         ("prune_keep", {})):
            shutil.copyfile(built, log_path)
            t0 = time.perf_counter()
            res = prune.prune(config, before=cut.isoformat(sep=" "), **kw)
            secs = time.perf_counter() - t0
            results["runs"][name] = {"seconds": round(secs, 2), "packets": res.data["packets"],
                                     "field_rows": res.data["field_rows"], "kept_newest": res.data["kept_newest"]}
            say(f"{name}: {secs:.2f} s, {res.data['packets']} packets, {res.data['field_rows']} field rows, "
                f"kept {res.data['kept_newest']}")
        write_results(results, args.json)
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
