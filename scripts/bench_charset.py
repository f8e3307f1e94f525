#!/usr/bin/env python3
"""Cost of decoding the author and comment in the audit trigger, side by side in one run.

The trigger turns the FBAUDIT_AUTHOR / FBAUDIT_COMMENT context values (the
client's bytes, in the connection's character set) into UTF-8 with its local
function TXT (docs/capture.md "Text in any character set"). This measures what
that costs an application, in one WIN1251 database, table BENCH (INTEGER key
and 5 VARCHAR(40)), one EXECUTE BLOCK loop of --rows inserts per run:

  none            no trigger
  no_context      the audit trigger, no author or comment set
  utf8_ascii      author + comment set, ASCII, UTF8 connection
  win1251         author + comment set, Cyrillic, WIN1251 connection
  none_bytes      author + comment set, Cyrillic WIN1251 bytes, NONE connection
                  (not UTF-8: TXT tries UTF-8, then the database's set)

and the first write of a new connection (TXT reads the connection's character
set from MON$ATTACHMENTS once per connection), with --idle other connections
open: median of --connects fresh connections, with and without an author.

Usage:
  python scripts/bench_charset.py --target embedded --json bench-charset-fb5.json
  python scripts/bench_charset.py --target server --rows 20000
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time

import benchlib
from benchlib import say

AUTHOR, COMMENT = "Иван Петров", "правка цены"


class Target(benchlib.Target):
    kind = "charset"

    def create(self, name: str) -> str:
        from firebird.driver import create_database
        dsn = self.dsn(name)
        create_database(dsn, user=self.user, password=self.password, charset="WIN1251").close()
        self.created.append(dsn)
        return dsn

    def connect(self, dsn: str, charset: str = "UTF8"):
        from firebird.driver import connect
        return connect(dsn, user=self.user, password=self.password, charset=charset)


def block(rows: int, start: int) -> str:
    return (f"EXECUTE BLOCK AS DECLARE i INTEGER = {start}; BEGIN WHILE (i < {start + rows}) DO BEGIN "
            "INSERT INTO BENCH VALUES (:i, 'aaaaaaaaaaaaaaaaaaaa', 'bbbbbbbbbbbbbbbb', 'cccccccccccc', 'dddd', 'e'); "
            "i = i + 1; END END")


def set_context(cur, author, comment) -> None:
    cur.execute("SELECT RDB$SET_CONTEXT('USER_TRANSACTION', 'FBAUDIT_AUTHOR', ?), "
                "RDB$SET_CONTEXT('USER_TRANSACTION', 'FBAUDIT_COMMENT', ?) FROM RDB$DATABASE", (author, comment))
    cur.fetchall()


VARIANTS = {
    "no_context": ("UTF8", None, None),
    "utf8_ascii": ("UTF8", "ivan.petrov", "price review"),
    "win1251": ("WIN1251", AUTHOR, COMMENT),
    "none_bytes": ("NONE", AUTHOR.encode("cp1251"), COMMENT.encode("cp1251")),
}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    benchlib.add_common_args(ap, dir_help="work folder for the embedded database files")
    ap.add_argument("--rows", type=int, default=10000, help="rows per EXECUTE BLOCK insert [10000]")
    ap.add_argument("--repeat", type=int, default=5, help="runs per variant; the median counts [5]")
    ap.add_argument("--idle", type=int, default=20, help="other connections open during the first-write test [20]")
    ap.add_argument("--connects", type=int, default=15, help="fresh connections per first-write case [15]")
    args = ap.parse_args()
    snapdir = benchlib.snapshot_from_args(args)
    from fbaudit import capture

    t = Target(args)
    try:
        plain, audited, log = t.create("plain"), t.create("audited"), t.create("log")
        for dsn in (plain, audited):
            con = t.connect(dsn)
            con.execute_immediate("CREATE TABLE BENCH (ID INTEGER NOT NULL PRIMARY KEY, A VARCHAR(40), "
                                  "B VARCHAR(40), C VARCHAR(40), D VARCHAR(40), E VARCHAR(40))")
            con.commit()
            engine = benchlib.engine_info(con)
            con.close()
        cfg = t.config(audited, log, "charset")
        capture.init(cfg)
        capture.enable(cfg, "BENCH")
        times: dict[str, list[float]] = {"none": []}
        times.update({v: [] for v in VARIANTS})
        start = 0
        failed: dict[str, str] = {}
        for r in range(args.repeat + 1):                  # the first round warms up and is not counted
            for name in ["none", *VARIANTS]:
                charset, author, comment = VARIANTS.get(name, ("UTF8", None, None))
                con = t.connect(plain if name == "none" else audited, charset)
                cur = con.cursor()
                if author:
                    set_context(cur, author, comment)
                t0 = time.perf_counter()
                try:
                    cur.execute(block(args.rows, start))
                    con.commit()
                except Exception as exc:       # an older trigger (--snapshot) fails the writes here
                    failed[name] = str(exc).splitlines()[0]
                    con.rollback()
                    times[name].append(float("nan"))
                    con.close()
                    continue
                if r:
                    times[name].append(time.perf_counter() - t0)
                start += args.rows
                con.close()
            if r:
                say(f"round {r}: " + ", ".join(f"{k} {v[-1]:.3f}s" for k, v in times.items()))
        med = {k: statistics.median(v) if k not in failed else float("nan") for k, v in times.items()}
        # First write of a fresh connection, beside --idle open ones.
        idle = [t.connect(audited) for _ in range(args.idle)]
        first: dict[str, list[float]] = {"no_author": [], "author_win1251": []}
        for i in range(args.connects):
            for case in first:
                con = t.connect(audited, "WIN1251")
                cur = con.cursor()
                if case == "author_win1251":
                    set_context(cur, AUTHOR, None)
                    if "win1251" in failed:
                        con.close()
                        continue
                start += 1
                t0 = time.perf_counter()
                cur.execute("INSERT INTO BENCH (ID, A) VALUES (?, 'x')", (start,))
                first[case].append(time.perf_counter() - t0)
                con.commit()
                con.close()
        for c in idle:
            c.close()
        first_med = {k: statistics.median(v) * 1000 if v else None for k, v in first.items()}
        results = {"meta": benchlib.run_meta(t, args, engine, rows=args.rows, repeat=args.repeat, idle=args.idle),
                   "seconds": med, "ratio_to_none": {k: v / med["none"] for k, v in med.items()},
                   "us_per_row_over_no_context": {k: (v - med["no_context"]) / args.rows * 1e6
                                                  for k, v in med.items() if k in VARIANTS},
                   "first_write_ms": first_med, "failed": failed}
        lines = benchlib.report_header(results["meta"], "decoding author and comment in the trigger")
        for k, v in med.items():
            lines.append(f"  {k:12} FAILED: {failed[k]}" if k in failed else f"  {k:12} {v:7.3f} s  {v / med['none']:5.2f}x")
        lines.append(f"  first write of a new connection ({args.idle} others open): "
                     + ", ".join(f"{k} {v:.2f} ms" if v is not None else f"{k} failed" for k, v in first_med.items()))
        print("\n".join(lines), file=sys.stderr)
        benchlib.write_results(results, args.json)
    finally:
        t.cleanup()
        if snapdir:
            import shutil
            shutil.rmtree(snapdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
