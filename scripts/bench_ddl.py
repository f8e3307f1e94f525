#!/usr/bin/env python3
"""Cost of an ALTER TABLE on an audited table (docs/schema-changes.md "Cost").

Two tables of the same shape (an INTEGER key and --columns VARCHAR(40) columns) in one fresh
embedded database with fbaudit's staging objects: AUD is audited, PLAIN is not. Each round adds a
column and drops it again, each statement committed; DDL_FOLLOW re-creates AUD's audit trigger at
each. Rounds alternate between the tables; the median of --repeat pairs per table is reported,
side by side.

    .venvs/fb5/bin/python scripts/bench_ddl.py [--columns 20] [--repeat 10]
"""
from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from fbaudit import capture  # noqa: E402
from fbaudit.config import Config, DatabaseSpec, SourceSpec  # noqa: E402
from fbaudit.db import open_database  # noqa: E402
from fbaudit.runtime import load_client  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--columns", type=int, default=20, help="VARCHAR(40) columns besides the key [20]")
    ap.add_argument("--repeat", type=int, default=10, help="ADD + DROP pairs per table and round [10]")
    args = ap.parse_args(argv)
    load_client()
    tmp = Path(tempfile.mkdtemp(prefix="fbaudit-bench-ddl-"))
    try:
        main_db = DatabaseSpec("main", str(tmp / "main.fdb"), user="SYSDBA")
        log_db = DatabaseSpec("log", str(tmp / "log.fdb"), user="SYSDBA")
        db = open_database(main_db, create=True)
        cols = ", ".join(f"F{i} VARCHAR(40)" for i in range(args.columns))
        for t in ("AUD", "PLAIN"):
            db.con.execute_immediate(f"CREATE TABLE {t} (ID INTEGER NOT NULL PRIMARY KEY, {cols})")
            db.commit()
        version = db.version
        db.close()
        src = SourceSpec(name="main", database=main_db.database, user="SYSDBA", registry=tmp / "tables.yaml")
        cfg = Config(path=tmp / "fbaudit.yaml", log=log_db, sources=(src,), prefix="FBA_", checkpoints_dir=tmp / "cp")
        capture.init(cfg)
        capture.enable(cfg, "AUD")
        times: dict[str, list[float]] = {"PLAIN": [], "AUD": []}
        db = open_database(main_db)
        for rnd in range(2):
            for t in ("PLAIN", "AUD") if rnd == 0 else ("AUD", "PLAIN"):
                for i in range(args.repeat):
                    t0 = time.perf_counter()
                    db.con.execute_immediate(f"ALTER TABLE {t} ADD X{i} INTEGER")
                    db.commit()
                    db.con.execute_immediate(f"ALTER TABLE {t} DROP X{i}")
                    db.commit()
                    times[t].append(time.perf_counter() - t0)
        db.close()
        plain, aud = statistics.median(times["PLAIN"]), statistics.median(times["AUD"])
        print(f"Firebird {version} embedded; table of {args.columns + 1} columns; "
              f"median of {2 * args.repeat} ADD + DROP pairs, each statement committed")
        print(f"  not audited: {plain * 1000:.1f} ms per pair")
        print(f"  audited:     {aud * 1000:.1f} ms per pair ({(aud - plain) * 500:.0f} ms more per statement)")
        return 0
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
