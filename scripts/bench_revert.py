#!/usr/bin/env python3
"""Speed of `fbaudit revert --transaction TX` (fbaudit.undo.revert_selection) on a real database,
and what it does to the writers of other rows.

Issue 20's measure: revert of one transaction that changed 10,000 rows (rows/s, one
transaction, writers of other rows unaffected).

One source and one log database, created for the run and dropped after it. Table ITEM:
an INTEGER primary key and 10 more columns (6 VARCHAR(40), 4 NUMERIC), --rows rows
filled by EXECUTE BLOCK, then audited (`capture.init`, `capture.enable(config, 'ITEM')`).
For each size of --changes (in the same databases, one after the other):

  1. the mistake: ONE transaction (FBAUDIT_AUTHOR 'bench mistake') updates NAME and
     PRICE of rows 1..N (N = the size); its CURRENT_TRANSACTION is noted, it commits,
     `transfer(config)` ships it (timed)
  2. `revert_selection(config, transaction_id=TX, preview=True)`: the plan only (rows
     read without locks, nothing run), timed
  3. `revert_selection(..., dry_run=True)`: plans, locks the rows, runs every statement
     and rolls back, timed
  4. the revert itself, `revert_selection(config, transaction_id=TX, by=..., comment=...)`,
     timed while --writers writers (threads of this process by default, each its own
     connection, READ COMMITTED, lock timeout --lock-timeout s) commit one UPDATE of 2
     columns of a row above the largest size (rows the mistake never touched; each
     writer its own rows) per transaction, as fast as they can (--rate: so many per
     second each). Checked after it:
     counts["update"] == N, no conflicts, NAME and PRICE of rows 1..N equal to what
     they were before the mistake, and (after a transfer) the log holds N row changes
     of the revert's transaction.
  5. the same writers go on, with nothing else running, for as long as the revert took
     (after --settle s): the baseline, side by side. Per window: committed transactions,
     tx/s, latency p50/p95/p99/max of UPDATE + commit, errors (must be 0).

Where the revert's time goes: `fbaudit.undo.selection` (the plan read from the log
database) and `fbaudit.undo._apply` (the compensating statements) are wrapped at run
time and timed; the rest is reading and locking each row in the source, planning,
the REVERT event and the commit. --profile FILE also runs one more dry run of the
largest size under cProfile and writes its stats there (top functions to stderr).

Writers as threads share this process's GIL with the revert's Python work (embedded:
one engine, Super); --workers process runs them as processes (embedded: the
SuperClassic runtime, FBAUDIT_EMBEDDED_SHARED=1, set for the whole run).

Usage:
  .venvs/fb5/bin/python scripts/bench_revert.py                          # 20,000 rows, 10,000 changes
  .venvs/fb5/bin/python scripts/bench_revert.py --changes 1000,10000 --json revert-fb5.json
  .venvs/fb5/bin/python scripts/bench_revert.py --target server --writers 4
"""
from __future__ import annotations

import argparse
import os
import queue
import random
import re
import shutil
import sys
import threading
import time
from collections import Counter
from decimal import Decimal

import benchlib       # scripts/benchlib.py; like this script, it imports fbaudit only inside functions
from benchlib import PREFIX, latency_summary, say

TABLE = "ITEM"
ITEM_DDL = """CREATE TABLE ITEM (
  ID INTEGER NOT NULL PRIMARY KEY,
  NAME VARCHAR(40),
  CITY VARCHAR(40),
  STREET VARCHAR(40),
  EMAIL VARCHAR(40),
  PHONE VARCHAR(40),
  NOTE VARCHAR(40),
  PRICE NUMERIC(12,2),
  QTY NUMERIC(9,0),
  AMOUNT NUMERIC(18,4),
  RATE NUMERIC(9,3))"""
COLUMNS = 11
MISTAKE_AUTHOR = "bench mistake"
WRITER_SQL = "UPDATE ITEM SET NAME = ?, PRICE = ? WHERE ID = ?"


def fill_sql(first: int, last: int) -> str:
    return (f"EXECUTE BLOCK AS DECLARE i INTEGER = {first - 1}; BEGIN WHILE (i < {last}) DO BEGIN i = i + 1; "
            "INSERT INTO ITEM (ID, NAME, CITY, STREET, EMAIL, PHONE, NOTE, PRICE, QTY, AMOUNT, RATE) VALUES "
            "(:i, 'Item ' || LPAD(:i, 8, '0') || ' Müller', 'Zürich ' || MOD(:i, 97), "
            "'Bahnhofstrasse ' || MOD(:i, 311), 'item' || :i || '@example.org', '+41 44 ' || LPAD(:i, 7, '0'), "
            "IIF(MOD(:i, 7) = 0, NULL, 'note ' || :i), CAST(MOD(:i * 17, 100000) / 100.00 AS NUMERIC(12,2)), "
            "MOD(:i * 31, 1000), CAST(:i AS NUMERIC(18,4)) / 7, CAST(MOD(:i, 1000) AS NUMERIC(9,3)) / 13); "
            "END END")


# --------------------------------------------------------------------------
# Writers of other rows
# --------------------------------------------------------------------------
def writer(w: int, ids: list[int], dsn: str, user: str, password: str | None, lock_timeout: int, rate: float,
           ready, stop, results) -> None:
    """One writer: one UPDATE (NAME, PRICE) of a random row of ``ids`` + commit per transaction, until
    ``stop``, ``rate`` transactions per second (0: as fast as it can). Reports the start (time.monotonic)
    and duration of each committed transaction, and errors."""
    res = {"writer": w, "starts": [], "lat": [], "errors": [], "setup_error": None}
    con = None
    try:
        from fbaudit.runtime import load_client
        load_client()
        from firebird.driver import Isolation, connect, tpb
        con = connect(dsn, user=user, password=password, charset="UTF8")
        con.main_transaction.default_tpb = tpb(Isolation.READ_COMMITTED_RECORD_VERSION, lock_timeout=lock_timeout)
        cur = con.cursor()
        st = cur.prepare(WRITER_SQL)
        rnd = random.Random(4242 + w)
    except Exception as exc:
        res["setup_error"] = f"{type(exc).__name__}: {exc}"
        ready.wait()
        results.put(res)
        return
    ready.wait()
    interval = 1.0 / rate if rate > 0 else 0.0
    nxt = time.monotonic()
    k = 0
    while not stop.is_set():
        if interval:
            now = time.monotonic()
            if nxt > now:
                time.sleep(nxt - now)
            nxt = max(nxt + interval, time.monotonic() - interval)
        k += 1
        row = rnd.choice(ids)
        t0 = time.monotonic()
        try:
            con.begin()
            cur.execute(st, (f"writer {w} update {k}", Decimal(k % 100000) / 100, row))
            con.commit()
            res["lat"].append(time.monotonic() - t0)
            res["starts"].append(t0)
        except Exception as exc:
            res["errors"].append((t0, re.sub(r"\d+", "N", " ".join(str(exc).split()))[:160]))
            try:
                con.rollback()
            except Exception:
                pass
    try:
        st.free()
        cur.close()
        con.close()
    except Exception:
        pass
    results.put(res)


class Writers:
    """``n`` writers (threads or processes) on rows ``lo..hi``, each its own rows (id modulo n)."""

    def __init__(self, target: benchlib.Target, dsn: str, n: int, lo: int, hi: int, lock_timeout: int,
                 rate: float, workers: str):
        self.n = n
        if workers == "process":
            import multiprocessing as mp
            ctx = mp.get_context("spawn")
            self.ready, self.stop, self.results, make = ctx.Barrier(n + 1), ctx.Event(), ctx.Queue(), ctx.Process
        else:
            self.ready, self.stop, self.results = threading.Barrier(n + 1), threading.Event(), queue.Queue()
            make = threading.Thread
        self.workers = [make(target=writer, args=(w, [i for i in range(lo, hi + 1) if i % n == w], dsn, target.user,
                                                  target.password, lock_timeout, rate, self.ready, self.stop,
                                                  self.results))
                        for w in range(n)]

    def start(self) -> float:
        for p in self.workers:
            p.start()
        self.ready.wait(timeout=120)
        return time.monotonic()

    def finish(self) -> list[dict]:
        self.stop.set()
        out = [self.results.get(timeout=120) for _ in self.workers]
        for p in self.workers:
            p.join(timeout=60)
        setup = [r["setup_error"] for r in out if r["setup_error"]]
        if setup:
            raise RuntimeError(f"writer setup failed: {setup[0]}")
        return out


def window(out: list[dict], lo: float, hi: float) -> dict:
    """The writers' transactions that started in [lo, hi): latency of UPDATE + commit, tx/s, errors."""
    pairs = [(t, d) for r in out for t, d in zip(r["starts"], r["lat"]) if lo <= t < hi]
    lat = [d for _, d in pairs]
    errs = Counter(msg for r in out for t, msg in r["errors"] if lo <= t < hi)
    span = hi - lo
    slowest = max(pairs, key=lambda x: x[1]) if pairs else None
    return {"seconds": round(span, 3), "committed": len(lat), "tps": round(len(lat) / span, 1) if span > 0 else None,
            "errors": sum(errs.values()), "error_kinds": dict(errs.most_common(5)),
            "latency_ms": latency_summary(lat), "over_1s": sum(1 for d in lat if d >= 1.0),
            # when the slowest transaction started, in seconds from the window's start
            "slowest_at_s": round(slowest[0] - lo, 3) if slowest else None}


# --------------------------------------------------------------------------
# The run
# --------------------------------------------------------------------------
class Target(benchlib.Target):
    kind = "revert"

    def rows(self, dsn: str, sql: str, params=()) -> list[tuple]:
        con = self.connect(dsn)
        try:
            cur = con.cursor()
            cur.execute(sql, params)
            rows = [tuple(r) for r in cur.fetchall()]
            cur.close()
            con.commit()
            return rows
        finally:
            con.close()


class Phases:
    """Wraps fbaudit.undo.selection and fbaudit.undo._apply (module globals) to time them per call."""

    def __init__(self):
        import fbaudit.undo as undo
        self.undo = undo
        self.orig = {"selection": undo.selection, "_apply": undo._apply}
        self.spent: Counter = Counter()

        def timed(name):
            fn = self.orig[name]

            def run(*a, **kw):
                t0 = time.perf_counter()
                try:
                    return fn(*a, **kw)
                finally:
                    self.spent[name] += time.perf_counter() - t0
            return run
        undo.selection = timed("selection")
        undo._apply = timed("_apply")

    def take(self) -> dict:
        out = {"plan_from_log_s": round(self.spent["selection"], 3),
               "statements_s": round(self.spent["_apply"], 3)}
        self.spent.clear()
        return out

    def restore(self) -> None:
        self.undo.selection = self.orig["selection"]
        self.undo._apply = self.orig["_apply"]


def timed_call(fn, *a, **kw):
    t0 = time.perf_counter()
    cpu0 = time.process_time()
    res = fn(*a, **kw)
    return res, time.perf_counter() - t0, time.process_time() - cpu0


def run_size(target: Target, cfg, dsn: str, log_dsn: str, n: int, args: argparse.Namespace,
             phases: Phases) -> dict:
    from fbaudit import transfer as tr
    from fbaudit.undo import revert_selection

    before = dict((r[0], (r[1], r[2])) for r in target.rows(dsn, "SELECT ID, NAME, PRICE FROM ITEM WHERE ID <= ?",
                                                             (n,)))
    # 1. the mistake: one transaction
    con = target.connect(dsn)
    cur = con.cursor()
    cur.execute("SELECT RDB$SET_CONTEXT('USER_TRANSACTION', 'FBAUDIT_AUTHOR', ?), CURRENT_TRANSACTION "
                "FROM RDB$DATABASE", (MISTAKE_AUTHOR,))
    tx = cur.fetchone()[1]
    t0 = time.perf_counter()
    cur.execute("UPDATE ITEM SET NAME = 'mistake ' || ID, PRICE = PRICE * 10 + 1 WHERE ID BETWEEN 1 AND ?", (n,))
    changed = cur.rowcount
    cur.close()
    con.commit()
    mistake_s = time.perf_counter() - t0
    con.close()
    t0 = time.perf_counter()
    tres = tr.transfer(cfg, workers=1)
    transfer_s = time.perf_counter() - t0
    if tres.errors:
        raise RuntimeError(f"transfer failed: {tres.errors[0][1]}")
    logged = target.rows(log_dsn, f"SELECT COUNT(*) FROM {PREFIX}LOG_PACKET WHERE TRANSACTION_ID = ? "
                                  "AND NUM_TABLE <> 0", (tx,))[0][0]
    say(f"  mistake: transaction {tx} updated {changed} rows in {mistake_s:.2f} s; transfer {transfer_s:.2f} s, "
        f"{logged} row changes of it in the log")
    out = {"changes": n, "mistake_tx": tx, "mistake_rows": changed, "mistake_s": round(mistake_s, 3),
           "transfer_s": round(transfer_s, 3), "logged_changes": logged}

    # 2. preview (the plan only) and 3. dry run (runs, rolls back), nothing else running
    phases.take()
    res, wall, cpu = timed_call(revert_selection, cfg, transaction_id=tx, preview=True)
    out["preview"] = {"seconds": round(wall, 3), "cpu_s": round(cpu, 3), "rows_per_s": round(n / wall),
                      "counts": res["counts"], "conflicts": len(res["conflicts"]), **phases.take()}
    say(f"  preview: {wall:.2f} s ({n / wall:,.0f} rows/s), counts {res['counts']}, "
        f"{len(res['conflicts'])} conflicts")
    res, wall, cpu = timed_call(revert_selection, cfg, transaction_id=tx, dry_run=True)
    out["dry_run"] = {"seconds": round(wall, 3), "cpu_s": round(cpu, 3), "rows_per_s": round(n / wall),
                      "counts": res["counts"], "conflicts": len(res["conflicts"]),
                      "script_lines": res["script"].count("\n"), **phases.take()}
    say(f"  dry run: {wall:.2f} s ({n / wall:,.0f} rows/s), counts {res['counts']}")
    still = target.rows(dsn, "SELECT COUNT(*) FROM ITEM WHERE ID <= ? AND NAME STARTING WITH 'mistake '", (n,))[0][0]
    out["dry_run"]["rows_still_mistaken"] = still     # the dry run rolled back: all n

    # 4. the revert, with writers of other rows
    tres = tr.transfer(cfg, workers=1)          # nothing waiting in the source before the timed parts
    ws = None
    if args.writers:
        ws = Writers(target, dsn, args.writers, args.max_changes + 1, args.rows, args.lock_timeout, args.rate,
                     args.workers)
        t_start = ws.start()
        time.sleep(args.warmup)
    try:
        t_rev = time.monotonic()
        res, wall, cpu = timed_call(revert_selection, cfg, transaction_id=tx, by="bench revert",
                                    comment=f"bench: revert of transaction {tx}")
        t_end = time.monotonic()
        split = phases.take()
        if ws:
            time.sleep(args.settle)
            t_idle = time.monotonic()
            time.sleep(t_end - t_rev)
            t_idle_end = time.monotonic()
    finally:
        wout = ws.finish() if ws else []
    out["revert"] = {"seconds": round(wall, 3), "cpu_s": round(cpu, 3), "rows_per_s": round(n / wall),
                     "counts": res["counts"], "conflicts": len(res["conflicts"]), "records": res["records"],
                     "revert_tx": res["revert_transaction_id"], "message": res["message"], **split,
                     "rest_s": round(wall - split["plan_from_log_s"] - split["statements_s"], 3)}
    say(f"  revert: {wall:.2f} s ({n / wall:,.0f} rows/s; plan from log {split['plan_from_log_s']:.2f} s, "
        f"statements {split['statements_s']:.2f} s), {res['message']}")
    if ws:
        during, idle = window(wout, t_rev, t_end), window(wout, t_idle, t_idle_end)
        out["writers"] = {"warmup": window(wout, t_start, t_rev), "during_revert": during, "no_revert": idle}
        for label, w in (("during revert", during), ("no revert", idle)):
            lat = w["latency_ms"]
            say(f"  writers {label}: {w['committed']} tx in {w['seconds']:.1f} s ({w['tps']} tx/s), p50 {lat['p50']} "
                f"p99 {lat['p99']} max {lat['max']} ms (started {w['slowest_at_s']} s into the window), "
                f"errors {w['errors']}")

    # checks
    after = dict((r[0], (r[1], r[2])) for r in target.rows(dsn, "SELECT ID, NAME, PRICE FROM ITEM WHERE ID <= ?",
                                                            (n,)))
    wrong = [i for i in before if after.get(i) != before[i]]
    tr.transfer(cfg, workers=1)
    revert_logged = target.rows(log_dsn, f"SELECT COUNT(*) FROM {PREFIX}LOG_PACKET WHERE TRANSACTION_ID = ? "
                                         "AND NUM_TABLE <> 0", (res["revert_transaction_id"],))[0][0] \
        if res["revert_transaction_id"] is not None else 0
    checks = {"counts_update": res["counts"]["update"] == n and sum(res["counts"].values()) == n,
              "no_conflicts": not res["conflicts"],
              "rows_back": not wrong and len(before) == n, "rows_not_back": len(wrong),
              "dry_run_rolled_back": still == n,
              "revert_logged": revert_logged == n, "revert_logged_changes": revert_logged,
              "mistake_logged": logged == n,
              "writer_errors": sum(w["errors"] for w in out.get("writers", {}).values())}
    checks["ok"] = all(checks[k] for k in ("counts_update", "no_conflicts", "rows_back", "dry_run_rolled_back",
                                            "revert_logged", "mistake_logged")) and checks["writer_errors"] == 0
    out["checks"] = checks
    say(f"  checks: {'ok' if checks['ok'] else '!! FAILED ' + str(checks)}")
    return out


def profile_dry_run(cfg, tx: int, path: str) -> None:
    import cProfile
    import pstats
    from fbaudit.undo import revert_selection
    prof = cProfile.Profile()
    prof.enable()
    revert_selection(cfg, transaction_id=tx, dry_run=True)
    prof.disable()
    prof.dump_stats(path)
    say(f"profile of a dry run written to {path}; top functions by own time:")
    st = pstats.Stats(prof, stream=sys.stderr)
    st.sort_stats("tottime").print_stats(20)


# --------------------------------------------------------------------------
# Report
# --------------------------------------------------------------------------
def render(result: dict) -> str:
    m = result["meta"]
    lines = [*benchlib.report_header(m, "revert"), "",
             f"ITEM: {m['rows']:,} rows, {COLUMNS} columns (INTEGER key, 6 VARCHAR(40), 4 NUMERIC), audited. "
             "The mistake: one transaction updating NAME and PRICE of rows 1..N, transferred; then "
             "revert_selection(config, transaction_id=TX).", ""]
    lines += ["| changes | mistake s | transfer s | preview s | dry run s | revert s | revert rows/s "
              "| plan from log s | statements s | rest s | CPU s | checks |",
              "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|:---|"]
    for r in result["runs"]:
        v = r["revert"]
        lines.append(f"| {r['changes']:,} | {r['mistake_s']:.2f} | {r['transfer_s']:.2f} | "
                     f"{r['preview']['seconds']:.2f} | {r['dry_run']['seconds']:.2f} | {v['seconds']:.2f} | "
                     f"{v['rows_per_s']:,} | {v['plan_from_log_s']:.2f} | {v['statements_s']:.2f} | "
                     f"{v['rest_s']:.2f} | {v['cpu_s']:.2f} | {'ok' if r['checks']['ok'] else '!! FAILED'} |")
    lines += ["", "plan from log: history.selection (the log database); statements: the compensating UPDATEs; "
              "rest: reading and locking each row in the source, planning, the REVERT event, commit. "
              "CPU: this process's (embedded: the engine's too). preview and dry run ran with nothing else running.",
              ""]
    for r in result["runs"]:
        c = r["checks"]
        lines.append(f"checks, {r['changes']:,} changes: counts {r['revert']['counts']} "
                     f"({'ok' if c['counts_update'] else 'WRONG'}), conflicts {r['revert']['conflicts']}, "
                     f"rows back {r['changes'] - c['rows_not_back']:,}/{r['changes']:,}, "
                     f"dry run left {r['dry_run']['rows_still_mistaken']:,} rows as they were, "
                     f"revert transaction {r['revert']['revert_tx']} logged {c['revert_logged_changes']:,} row "
                     f"changes, writer errors {c['writer_errors']}")
    if any("writers" in r for r in result["runs"]):
        w0 = m["writers"]
        pace = f"{m['rate']:g} per second each" if m.get("rate") else "as fast as they can"
        lines += ["", f"Writers of other rows: {w0} writer {m['workers']}{'es' if m['workers'] == 'process' else 's'}, "
                  f"READ COMMITTED, lock timeout {m['lock_timeout']} s, one UPDATE (NAME, PRICE) of a random row "
                  f"above {m['max_changes']:,} + commit per transaction, "
                  f"{pace}; latency of "
                  f"UPDATE + commit in ms. 'no revert': the same writers afterwards, for as long as the revert "
                  f"took, nothing else running.", "",
                  "| changes | window | s | tx | tx/s | p50 | p95 | p99 | max | >=1 s | errors |",
                  "|---:|:---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]

        def f(x):
            return f"{x:.2f}" if x is not None else "-"
        for r in result["runs"]:
            for label, key in (("during revert", "during_revert"), ("no revert", "no_revert")):
                w = r["writers"][key]
                lat = w["latency_ms"]
                lines.append(f"| {r['changes']:,} | {label} | {w['seconds']:.2f} | {w['committed']:,} | "
                             f"{w['tps'] or 0:.1f} | {f(lat['p50'])} | {f(lat['p95'])} | {f(lat['p99'])} | "
                             f"{f(lat['max'])} | {w['over_1s']} | {w['errors']} |")
        for r in result["runs"]:
            for key in ("during_revert", "no_revert"):
                if r["writers"][key]["error_kinds"]:
                    lines.append(f"errors ({r['changes']:,}, {key}): {r['writers'][key]['error_kinds']}")
    lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=20000, help="rows in ITEM [20000]")
    ap.add_argument("--changes", default="10000",
                    help="comma list of sizes: rows the mistake transaction changes, each reverted [10000]")
    ap.add_argument("--writers", type=int, default=2, help="writers of other rows during the revert, 0: none [2]")
    ap.add_argument("--workers", choices=("thread", "process"), default="thread",
                    help="writers as threads of this process or as processes (embedded: SuperClassic) [thread]")
    ap.add_argument("--rate", type=float, default=0.0,
                    help="transactions per second per writer, 0 = as fast as they can [0]")
    ap.add_argument("--lock-timeout", type=int, default=5, help="writers' lock timeout in seconds [5]")
    ap.add_argument("--warmup", type=float, default=1.0, help="seconds the writers run before the revert [1]")
    ap.add_argument("--settle", type=float, default=1.0,
                    help="seconds between the revert's end and the writers' no-revert window [1]")
    ap.add_argument("--profile", metavar="FILE",
                    help="also profile one more dry run of the largest size with cProfile, stats to FILE")
    benchlib.add_common_args(ap, dir_help="folder for database files (embedded) and configs [a temporary folder]")
    args = ap.parse_args(argv)
    try:
        sizes = [int(x) for x in args.changes.split(",") if x.strip()]
    except ValueError:
        ap.error(f"--changes: a comma list of numbers, not {args.changes!r}")
    if not sizes or min(sizes) < 1:
        ap.error("--changes: sizes of at least 1")
    args.max_changes = max(sizes)
    if args.writers < 0:
        ap.error("--writers must be 0 or more")
    if args.rows < args.max_changes + max(args.writers, 1):
        ap.error(f"--rows must leave rows above the largest change size for the writers "
                 f"(at least {args.max_changes + max(args.writers, 1)})")
    if args.workers == "process" and args.target == "embedded" and args.writers:
        os.environ["FBAUDIT_EMBEDDED_SHARED"] = "1"     # several processes open the same files

    started = time.perf_counter()
    snapdir = benchlib.snapshot_from_args(args)
    target = Target(args)
    result: dict = {}
    phases = None
    try:
        from fbaudit import capture
        from fbaudit import transfer as tr
        dsn = target.create("src")
        log_dsn = target.create("log")
        con = target.connect(dsn)
        engine = benchlib.engine_info(con)
        con.execute_immediate(ITEM_DDL)
        con.commit()
        t0 = time.perf_counter()
        for first in range(1, args.rows + 1, 50000):
            con.execute_immediate(fill_sql(first, min(args.rows, first + 49999)))
            con.commit()
        con.close()
        meta = benchlib.run_meta(target, args, engine, rows=args.rows, changes=sizes, writers=args.writers,
                                 workers=args.workers, rate=args.rate, lock_timeout=args.lock_timeout,
                                 max_changes=args.max_changes,
                                 warmup_s=args.warmup, settle_s=args.settle)
        result["meta"] = meta
        say(f"Firebird {engine['engine_version']} ({meta['target_desc']}), load {os.getloadavg()[0]:.2f}; "
            f"fbaudit {meta['fbaudit_revision']} from {meta['fbaudit_path']}")
        say(f"ITEM: {args.rows} rows filled in {time.perf_counter() - t0:.1f} s")
        cfg = target.config(dsn, log_dsn, "revert")
        capture.init(cfg)
        capture.enable(cfg, TABLE)
        tr.transfer(cfg, workers=1)
        phases = Phases()
        result["runs"] = []
        for n in sizes:
            say(f"revert of one transaction that changed {n} rows; {args.writers} writer "
                f"{args.workers}{'es' if args.workers == 'process' else 's'} of other rows, "
                + (f"{args.rate:g} tx/s each" if args.rate else "as fast as they can"))
            result["runs"].append(run_size(target, cfg, dsn, log_dsn, n, args, phases))
        if args.profile:
            # one more mistake of the largest size, transferred, then a profiled dry run
            con = target.connect(dsn)
            cur = con.cursor()
            cur.execute("SELECT CURRENT_TRANSACTION FROM RDB$DATABASE")
            tx = cur.fetchone()[0]
            cur.execute("UPDATE ITEM SET NAME = 'again ' || ID WHERE ID BETWEEN 1 AND ?", (args.max_changes,))
            cur.close()
            con.commit()
            con.close()
            tr.transfer(cfg, workers=1)
            phases.restore()
            phases = None
            profile_dry_run(cfg, tx, args.profile)
        meta["machine"]["loadavg_end"] = os.getloadavg()
        meta["runtime_seconds"] = round(time.perf_counter() - started, 1)
    finally:
        if phases:
            phases.restore()
        target.cleanup()
        if snapdir and not args.keep:
            shutil.rmtree(snapdir, ignore_errors=True)
    benchlib.write_results(result, args.json)
    print()
    print(render(result))
    print(f"total runtime {result['meta']['runtime_seconds']:.0f} s")
    return 0 if all(r["checks"]["ok"] for r in result["runs"]) else 1


if __name__ == "__main__":
    raise SystemExit(main())
