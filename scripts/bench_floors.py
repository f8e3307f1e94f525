"""Floors of capture 2.0's remaining targets, measured on plain Firebird tables (no fbaudit code runs).

Two parts (--only):

  log     the log database's side of the transfer: --rows rows inserted by
          one EXECUTE BLOCK into a table shaped like the log's LOG (source,
          packet, field, two BLOB values, primary key), with the indexes
          fbaudit's search adds (expression indexes on the first 64 bytes of
          each value) and alternatives (plain indexes on stored 64-byte head
          columns). The bare row is the floor of the transfer's "field rows
          per second", whatever the rest of it does.
  packet  what a packet table that rotation can DROP would cost: a trigger
          that inserts one row directly (Firebird records the dependency and
          then refuses DROP TABLE) against one that inserts it through
          EXECUTE STATEMENT ... WITH CALLER PRIVILEGES (no dependency); --rows
          rows per run, wall time per row. Then the behaviour that design
          relies on: after an attachment ran the EXECUTE STATEMENT and went
          idle, another attachment may DROP the table at once.

Every variant runs in a fresh database, --repeat times; the table shows the
median of the runs. Usage (docs/performance.md "Packets written once"):

  python scripts/bench_floors.py --json floors-fb5.json
  python scripts/bench_floors.py --target server --only log
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time

import benchlib
from benchlib import say

LOG_TABLE = ("CREATE TABLE L (S INTEGER NOT NULL, P BIGINT NOT NULL, F INTEGER NOT NULL, BO BLOB SUB_TYPE BINARY, "
             "BN BLOB SUB_TYPE BINARY, HO VARCHAR(64) CHARACTER SET OCTETS, HN VARCHAR(64) CHARACTER SET OCTETS, "
             "PRIMARY KEY (S, P, F))")
HEAD = "CAST(SUBSTRING({c} FROM 1 FOR 64) AS VARCHAR(64) CHARACTER SET OCTETS)"
LOG_VARIANTS = [
    ("bare", "LOG row: two BLOBs (the old one NULL, as for an insert), primary key", [], False),
    ("value_indexes", "+ the two expression indexes of fbaudit's search (LOG_NEW_VALUE, LOG_OLD_VALUE)",
     [f"CREATE INDEX L_NV ON L COMPUTED BY ({HEAD.format(c='BN')})",
      f"CREATE INDEX L_OV ON L COMPUTED BY ({HEAD.format(c='BO')})"], False),
    ("new_value_index", "+ only the new-value expression index", [f"CREATE INDEX L_NV ON L COMPUTED BY ({HEAD.format(c='BN')})"],
     False),
    ("head_columns", "+ 64-byte head columns filled by the insert, plain indexes on both",
     ["CREATE INDEX L_NV ON L (HN)", "CREATE INDEX L_OV ON L (HO)"], True),
    ("head_new_only", "+ a head column for the new value only, plain index", ["CREATE INDEX L_NV ON L (HN)"], True),
]


def log_block(rows: int, heads: bool) -> str:
    h = ", NULL, SUBSTRING(:v FROM 10 FOR 18)" if heads else ", NULL, NULL"
    return (f"EXECUTE BLOCK AS DECLARE i INTEGER = 0; DECLARE v VARCHAR(8000) CHARACTER SET OCTETS; "
            f"BEGIN v = '1,-1,18;customer name 1234'; WHILE (i < {rows}) DO BEGIN i = i + 1; "
            f"INSERT INTO L VALUES (1, :i / 10, MOD(:i, 10), NULL, SUBSTRING(:v FROM 10 FOR 18){h}); END END")


PACKET_VARIANTS = [
    ("no_trigger", "no trigger", None),
    ("direct", "trigger: INSERT INTO P1 (the table cannot be dropped while the trigger exists)",
     "CREATE TRIGGER TT FOR T AFTER INSERT AS BEGIN INSERT INTO P1 (ID, V) VALUES (NEW.ID, NEW.V); END"),
    ("execute_statement", "trigger: EXECUTE STATEMENT ('INSERT INTO P1 ...') WITH CALLER PRIVILEGES",
     "CREATE TRIGGER TT FOR T AFTER INSERT AS BEGIN EXECUTE STATEMENT ('INSERT INTO P1 (ID, V) VALUES (?, ?)') "
     "(NEW.ID, NEW.V) WITH CALLER PRIVILEGES; END"),
]


def timed(target, name: str, ddl: list[str], block: str) -> float:
    dsn = target.create(name)
    con = target.connect(dsn)
    try:
        for sql in ddl:
            con.execute_immediate(sql)
            con.commit()
        t0 = time.perf_counter()
        con.execute_immediate(block)
        con.commit()
        return time.perf_counter() - t0
    finally:
        con.close()
        target.drop(dsn)


def drop_probe(target) -> dict:
    """An attachment runs the EXECUTE STATEMENT trigger and stays idle; another drops the table."""
    from firebird.driver import Isolation, tpb
    dsn = target.create("probe")
    con = target.connect(dsn)
    out: dict = {}
    try:
        for sql in ["CREATE TABLE P1 (ID INTEGER, V VARCHAR(100))", "CREATE TABLE T (ID INTEGER, V VARCHAR(100))",
                    PACKET_VARIANTS[2][2]]:
            con.execute_immediate(sql)
            con.commit()
        idle = target.connect(dsn)
        idle.execute_immediate("INSERT INTO T VALUES (1, 'x')")
        idle.commit()
        dropper = target.connect(dsn)
        dropper.main_transaction.default_tpb = tpb(Isolation.READ_COMMITTED_RECORD_VERSION, lock_timeout=3)
        try:
            dropper.execute_immediate("DROP TABLE P1")
            dropper.execute_immediate("CREATE TABLE P1 (ID INTEGER, V VARCHAR(100))")
            dropper.commit()
            out["drop_while_idle"] = "dropped and created again"
        except Exception as exc:
            dropper.rollback()
            out["drop_while_idle"] = "refused: " + " | ".join(str(exc).splitlines()[:3])
        try:
            idle.execute_immediate("INSERT INTO T VALUES (2, 'y')")
            idle.commit()
            cur = dropper.cursor()
            cur.execute("SELECT COUNT(*) FROM P1")
            out["idle_attachment_next_write"] = f"ok, {cur.fetchone()[0]} row(s) in the new P1"
            cur.close()
            dropper.commit()
        except Exception as exc:
            idle.rollback()
            out["idle_attachment_next_write"] = "failed: " + " | ".join(str(exc).splitlines()[:3])
        idle.close()
        dropper.close()
    finally:
        con.close()
        target.drop(dsn)
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", default="log,packet", help="parts: log, packet [both]")
    ap.add_argument("--rows", type=int, default=200000, help="rows per run [200000]")
    ap.add_argument("--repeat", type=int, default=3, help="runs per variant [3]")
    benchlib.add_common_args(ap, dir_help="folder for database files (embedded) [a temporary folder]")
    args = ap.parse_args(argv)
    parts = {x.strip() for x in args.only.split(",") if x.strip()}
    if parts - {"log", "packet"}:
        ap.error(f"unknown part(s): {', '.join(sorted(parts - {'log', 'packet'}))}")
    snapdir = benchlib.snapshot_from_args(args)
    target = benchlib.Target(args)
    results: dict = {"rows": args.rows, "repeat": args.repeat}
    lines = []
    try:
        probe = target.create("version")
        con = target.connect(probe)
        engine = benchlib.engine_info(con)
        con.close()
        target.drop(probe)
        results["meta"] = benchlib.run_meta(target, args, engine)
        lines += benchlib.report_header(results["meta"], "floors of capture 2.0's targets")
        if "log" in parts:
            runs = {name: [] for name, *_ in LOG_VARIANTS}
            for rep in range(args.repeat):          # variants interleaved: drift hits them alike
                for name, _desc, idx, heads in LOG_VARIANTS:
                    s = timed(target, f"log_{name}_{rep}", [LOG_TABLE, *idx], log_block(args.rows, heads))
                    runs[name].append(s)
                    say(f"  log {name}: {args.rows / s:,.0f} rows/s")
            results["log"] = {}
            lines += ["", f"log side: {args.rows:,} LOG-shaped rows in one EXECUTE BLOCK, median of {args.repeat}",
                      f"{'variant':18} {'rows/s':>9} {'us/row':>7}"]
            for name, desc, *_ in LOG_VARIANTS:
                s = statistics.median(runs[name])
                results["log"][name] = {"seconds": runs[name], "rows_per_s": args.rows / s}
                lines.append(f"{name:18} {args.rows / s:9,.0f} {s / args.rows * 1e6:7.1f}   {desc}")
        if "packet" in parts:
            n = max(1000, args.rows // 10)
            block = (f"EXECUTE BLOCK AS DECLARE i INTEGER = 0; BEGIN WHILE (i < {n}) DO BEGIN i = i + 1; "
                     "INSERT INTO T VALUES (:i, 'value ' || :i); END END")
            runs = {name: [] for name, *_ in PACKET_VARIANTS}
            for rep in range(args.repeat):
                for name, _desc, trig in PACKET_VARIANTS:
                    ddl = ["CREATE TABLE P1 (ID INTEGER, V VARCHAR(100))", "CREATE TABLE T (ID INTEGER, V VARCHAR(100))"]
                    s = timed(target, f"pk_{name}_{rep}", ddl + ([trig] if trig else []), block)
                    runs[name].append(s)
                    say(f"  packet {name}: {s / n * 1e6:.1f} us/row")
            results["packet"] = {name: {"seconds": v, "us_per_row": statistics.median(v) / n * 1e6}
                                 for name, v in runs.items()}
            results["packet"]["probe"] = drop_probe(target)
            lines += ["", f"packet table: {n:,} inserts into T in one EXECUTE BLOCK, its trigger writes one row; "
                          f"median of {args.repeat}", f"{'variant':18} {'us/row':>7}"]
            for name, desc, _ in PACKET_VARIANTS:
                lines.append(f"{name:18} {results['packet'][name]['us_per_row']:7.1f}   {desc}")
            for k, v in results["packet"]["probe"].items():
                lines.append(f"{k}: {v}")
    finally:
        target.cleanup()
        if snapdir:
            import shutil
            shutil.rmtree(snapdir, ignore_errors=True)
    print("\n".join(lines))
    benchlib.write_results(results, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
