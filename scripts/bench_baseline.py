#!/usr/bin/env python3
"""Cost of `fbaudit enable TABLE --baseline` (fbaudit.baseline) on a real database.

Table BENCH: --rows rows, 11 columns of mixed types (INTEGER key, VARCHAR UTF8
with non-ASCII text, INTEGER, BIGINT, SMALLINT, NUMERIC(12,2), NUMERIC(18,6),
TIMESTAMP, a NULL VARCHAR on every 7th row, a ~250-character BLOB SUB_TYPE TEXT
on every 10th row), filled by EXECUTE BLOCK before auditing starts. Every part
uses fresh databases (a source and a log database, `capture.init`), created
for it and dropped after it.

Parts (--only):

  throughput  `capture.enable(config, 'BENCH', baseline=True)` with nothing
              else running: rows/s and field rows/s of the baseline (its own
              time, after the wait for older transactions) and the wall time of
              the whole enable; the packet and field row counts are checked
              against the table
  impact      --writers writers (each its own connection, READ COMMITTED, lock
              timeout --lock-timeout s) commit one UPDATE of 2 columns of a
              random row per transaction, --rate transactions/s each (0: as fast
              as they can); every writer has its own rows (id modulo writers),
              so writers never wait on each other. Run 1 (baseline): the
              writers start, after --warmup s `enable --baseline` runs; right
              after the trigger's commit each writer prepares its UPDATE again
              (a statement prepared before the trigger existed never fires it);
              latency of the transactions that started between the trigger's
              commit and the end of the baseline. Run 2 (idle, fresh databases): `enable`
              without baseline, the writers run --warmup s, then the same
              duration as run 1's window. Per run: latency p50/p95/p99/max,
              committed tx/s, errors, and the writers' record lock waits and
              update conflicts (MON$RECORD_STATS of their attachments)
  versions    (optional) `transfer(config)` of --version-packets update packets:
              each on its own record ("new": VERSION_NO 1 everywhere) vs
              --versions-per-record packets per record ("many": PACKETS_INS
              finds each record's previous packet)

Writers are processes by default (--workers process: multiprocessing, spawn;
embedded needs FBAUDIT_EMBEDDED_SHARED=1, the SuperClassic copy of the
runtime, which this script sets for the whole run, baseline included), so the
baseline's Python work does not share a GIL with them. --workers thread runs
them as threads of this process (embedded: Super, one page cache).

Usage (see docs/performance.md):
  .venvs/fb5/bin/python scripts/bench_baseline.py --snapshot HEAD            # 20,000 rows, ~1-2 min
  .venvs/fb5/bin/python scripts/bench_baseline.py --snapshot HEAD --rows 200000 --json baseline-fb5.json
  .venvs/fb3/bin/python scripts/bench_baseline.py --snapshot HEAD --only impact --workers thread
"""
from __future__ import annotations

import argparse
import os
import queue
import random
import re
import shutil
import threading
import time
from collections import Counter

import benchlib       # scripts/benchlib.py; like this script, it imports fbaudit only inside functions
from benchlib import latency_summary, say

TABLE = "BENCH"
PARTS = ("throughput", "impact", "versions")
COLUMNS = 11

BENCH_DDL = """CREATE TABLE BENCH (
  ID INTEGER NOT NULL PRIMARY KEY,
  CODE VARCHAR(20) CHARACTER SET UTF8 NOT NULL,
  NAME VARCHAR(80) CHARACTER SET UTF8,
  CITY VARCHAR(40) CHARACTER SET UTF8,
  QTY INTEGER,
  BIGQTY BIGINT,
  STATUS SMALLINT,
  PRICE NUMERIC(12,2),
  RATE NUMERIC(18,6),
  CREATED_AT TIMESTAMP,
  NOTE BLOB SUB_TYPE TEXT CHARACTER SET UTF8)"""

UPDATE_SQL = "UPDATE BENCH SET QTY = ?, NAME = ? WHERE ID = ?"

MON_SQL = ("SELECT r.MON$RECORD_LOCKS, r.MON$RECORD_WAITS, r.MON$RECORD_CONFLICTS FROM MON$ATTACHMENTS a "
           "JOIN MON$RECORD_STATS r ON r.MON$STAT_ID = a.MON$STAT_ID WHERE a.MON$ATTACHMENT_ID = CURRENT_CONNECTION")


def fill_sql(first: int, last: int) -> str:
    return (f"EXECUTE BLOCK AS DECLARE i INTEGER = {first - 1}; BEGIN WHILE (i < {last}) DO BEGIN i = i + 1; "
            "INSERT INTO BENCH (ID, CODE, NAME, CITY, QTY, BIGQTY, STATUS, PRICE, RATE, CREATED_AT, NOTE) VALUES "
            "(:i, 'C' || LPAD(:i, 9, '0'), 'Kunde Müller-Lüdenscheidt Nr. ' || :i, "
            "IIF(MOD(:i, 7) = 0, NULL, 'Zürich-Örlikon'), MOD(:i * 31, 1000), :i * CAST(1000003 AS BIGINT), "
            "MOD(:i, 5), CAST(MOD(:i * 17, 100000) / 100.00 AS NUMERIC(12,2)), CAST(:i AS NUMERIC(18,6)) / 7, "
            "DATEADD(:i SECOND TO TIMESTAMP '2026-01-01 00:00:00'), "
            "IIF(MOD(:i, 10) = 0, 'Notiz ' || :i || ': ' || LPAD('', 240, 'äöü ß'), NULL)); END END")


def expected_field_rows(n: int) -> int:
    """Non-NULL values of the first n rows (the baseline logs each as a field row): 9 columns always,
    CITY except every 7th row, NOTE on every 10th."""
    return 9 * n + (n - n // 7) + n // 10


class Target(benchlib.Target):
    kind = "baseline"

    def fresh(self, tag: str, rows: int):
        """A source with BENCH of ``rows`` rows (no trigger) and a log database, `capture.init` done.
        Returns (config, source dsn, log dsn)."""
        from fbaudit import capture
        dsn = self.create(f"{tag}_src")
        log_dsn = self.create(f"{tag}_log")
        con = self.connect(dsn)
        con.execute_immediate(BENCH_DDL)
        con.commit()
        t0 = time.perf_counter()
        for first in range(1, rows + 1, 50000):
            con.execute_immediate(fill_sql(first, min(rows, first + 49999)))
            con.commit()
        con.close()
        say(f"  {tag}: {rows} rows filled in {time.perf_counter() - t0:.1f} s")
        cfg = self.config(dsn, log_dsn, tag)
        capture.init(cfg)
        return cfg, dsn, log_dsn

    def scalar(self, dsn: str, sql: str):
        con = self.connect(dsn)
        try:
            cur = con.cursor()
            cur.execute(sql)
            row = cur.fetchone()
            cur.close()
            con.commit()
            return row
        finally:
            con.close()


# --------------------------------------------------------------------------
# Writers
# --------------------------------------------------------------------------
def writer(w: int, writers: int, rows: int, dsn: str, user: str, password: str | None, rate: float,
           lock_timeout: int, barrier, stop, reprepare, results) -> None:
    """One writer: one UPDATE of a random row of its own per transaction until ``stop`` is set.
    Reports the start (time.monotonic, comparable across processes) and duration of each transaction
    and its record stats (locks, waits, conflicts) over the whole run.

    When ``reprepare`` is set (right after the trigger's commit) the writer prepares its UPDATE again,
    once: a statement prepared before the trigger existed keeps running without it (measured on
    Firebird 3.0 and 5.0, Super and SuperClassic), so its changes would not be captured and its
    latency would not include the trigger."""
    res = {"writer": w, "starts": [], "lat": [], "errors": [], "mon": None, "setup_error": None,
           "reprepared_at": None}
    con = None
    try:
        from fbaudit.runtime import load_client
        load_client()
        from firebird.driver import Isolation, connect, tpb
        con = connect(dsn, user=user, password=password, charset="UTF8")
        con.main_transaction.default_tpb = tpb(Isolation.READ_COMMITTED_RECORD_VERSION, lock_timeout=lock_timeout)
        cur = con.cursor()

        def mon() -> tuple:
            cur.execute(MON_SQL)
            row = tuple(cur.fetchone())
            con.commit()
            return row

        mon0 = mon()
        st = cur.prepare(UPDATE_SQL)
        mine = list(range(w + 1, rows + 1, writers))
        rnd = random.Random(1000 + w)
    except Exception as exc:
        res["setup_error"] = f"{type(exc).__name__}: {exc}"
        barrier.wait()
        results.put(res)
        return
    barrier.wait()
    interval = 1.0 / rate if rate > 0 else 0.0
    nxt = time.monotonic()
    k = 0
    while not stop.is_set():
        if res["reprepared_at"] is None and reprepare.is_set():
            st = cur.prepare(UPDATE_SQL)
            res["reprepared_at"] = time.monotonic()
        if interval:
            now = time.monotonic()
            if nxt > now:
                time.sleep(nxt - now)
            nxt = max(nxt + interval, time.monotonic() - interval)
        row = rnd.choice(mine)
        k += 1
        t0 = time.monotonic()
        try:
            con.begin()
            cur.execute(st, (k % 100000, f"Writer {w} Änderung {k}", row))
            con.commit()
            res["starts"].append(t0)
            res["lat"].append(time.monotonic() - t0)
        except Exception as exc:
            res["errors"].append((t0, re.sub(r"\d+", "N", " ".join(str(exc).split()))[:160]))
            try:
                con.rollback()
            except Exception:
                pass
    try:
        mon1 = mon()
        res["mon"] = {"record_locks": mon1[0] - mon0[0], "record_waits": mon1[1] - mon0[1],
                      "record_conflicts": mon1[2] - mon0[2]}
        cur.close()
        con.close()
    except Exception as exc:
        res["mon"] = {"error": str(exc)}
    results.put(res)


class Writers:
    """--writers writers as processes or threads; start() returns once all are connected and ready."""

    def __init__(self, target: Target, dsn: str, args: argparse.Namespace):
        self.n = args.writers
        if args.workers == "process":
            import multiprocessing as mp
            ctx = mp.get_context("spawn")
            self.barrier, self.stop, self.results = ctx.Barrier(self.n + 1), ctx.Event(), ctx.Queue()
            self.reprepare = ctx.Event()
            make = ctx.Process
        else:
            self.barrier, self.stop, self.results = threading.Barrier(self.n + 1), threading.Event(), queue.Queue()
            self.reprepare = threading.Event()
            make = threading.Thread
        self.workers = [make(target=writer, args=(w, self.n, args.rows, dsn, target.user, target.password,
                                                  args.rate, args.lock_timeout, self.barrier, self.stop,
                                                  self.reprepare, self.results))
                        for w in range(self.n)]

    def start(self) -> float:
        for p in self.workers:
            p.start()
        self.barrier.wait(timeout=120)
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
    """The writers' transactions that started in [lo, hi): latency, tx/s, errors."""
    lat = [d for r in out for t, d in zip(r["starts"], r["lat"]) if lo <= t < hi]
    errs = Counter(msg for r in out for t, msg in r["errors"] if lo <= t < hi)
    span = hi - lo
    return {"seconds": round(span, 3), "committed": len(lat), "tps": round(len(lat) / span, 1) if span > 0 else None,
            "errors": sum(errs.values()), "error_kinds": dict(errs.most_common(5)),
            "latency_ms": latency_summary(lat), "over_1s": sum(1 for d in lat if d >= 1.0)}


def mon_total(out: list[dict]) -> dict:
    tot: Counter = Counter()
    for r in out:
        if r["mon"] and "error" not in r["mon"]:
            tot.update(r["mon"])
        elif r["mon"]:
            tot["mon_errors"] += 1
    return dict(tot)


# --------------------------------------------------------------------------
# Parts
# --------------------------------------------------------------------------
def check_counts(target: Target, dsn: str, rows: int, taken: dict) -> dict:
    p = benchlib.PREFIX
    packets = target.scalar(dsn, f"SELECT COUNT(*) FROM {p}LOG_PACKET WHERE OPERATION = 5")[0]
    field_rows = (target.scalar(dsn, f"SELECT COUNT(*) FROM {p}V_LOG_1")[0]
                  + target.scalar(dsn, f"SELECT COUNT(*) FROM {p}V_LOG_2")[0])
    want = expected_field_rows(rows)
    ok = packets == rows and taken["field_rows"] == want
    if not ok:
        say(f"  !! counts: {packets} baseline packets (expected {rows}), {taken['field_rows']} field rows "
            f"(expected {want})")
    return {"baseline_packets": packets, "staged_field_rows": field_rows, "expected_field_rows": want, "ok": ok}


def captured(target: Target, dsn: str) -> int:
    """Update packets the trigger wrote (the writers' changes it saw)."""
    return target.scalar(dsn, f"SELECT COUNT(*) FROM {benchlib.PREFIX}LOG_PACKET WHERE OPERATION = 2")[0]


def run_enable(cfg, baseline: bool) -> tuple[float, dict | None]:
    from fbaudit import capture
    t0 = time.perf_counter()
    res = capture.enable(cfg, TABLE, baseline=baseline)
    wall = time.perf_counter() - t0
    return wall, res.data["sources"][0].get("baseline") if baseline else None


def rates(taken: dict) -> dict:
    s = taken["seconds"]
    return {"rows_per_s": round(taken["rows"] / s) if s else None,
            "field_rows_per_s": round(taken["field_rows"] / s) if s else None}


def run_throughput(target: Target, args: argparse.Namespace) -> dict:
    cfg, dsn, log_dsn = target.fresh("tput", args.rows)
    cpu0 = time.process_time()
    wall, taken = run_enable(cfg, True)
    cpu = time.process_time() - cpu0
    out = {"rows": args.rows, "enable_wall_s": round(wall, 3), "baseline": taken, **rates(taken),
           "cpu_self_s": round(cpu, 3), "counts": check_counts(target, dsn, args.rows, taken)}
    say(f"  baseline {taken['rows']} rows, {taken['field_rows']} field rows in {taken['seconds']:.1f} s: "
        f"{out['rows_per_s']} rows/s, {out['field_rows_per_s']} field rows/s (enable {wall:.1f} s)")
    for d in (dsn, log_dsn):
        target.drop(d)
    return out


def run_impact(target: Target, args: argparse.Namespace) -> dict:
    import fbaudit.baseline as bl
    # run 1: the writers run while `enable --baseline` installs the trigger and takes the baseline
    cfg, dsn, log_dsn = target.fresh("impact", args.rows)
    marks: dict = {}
    orig = bl.wait_for_older_writers

    def hook(*a, **kw):          # take() calls it right after the trigger's commit
        marks["trigger"] = time.monotonic()
        ws.reprepare.set()
        return orig(*a, **kw)

    ws = Writers(target, dsn, args)
    t_start = ws.start()
    time.sleep(args.warmup)
    bl.wait_for_older_writers = hook
    try:
        t_enable = time.monotonic()
        wall, taken = run_enable(cfg, True)
        t_end = time.monotonic()
    finally:
        bl.wait_for_older_writers = orig
        out = ws.finish()
    d = t_end - marks["trigger"]
    run1 = {"enable_wall_s": round(wall, 3), "baseline": taken, **rates(taken),
            "window_s": round(d, 3),
            "no_trigger": window(out, t_start, t_enable),
            "enable_before_trigger": window(out, t_enable, marks["trigger"]),
            "during_baseline": window(out, marks["trigger"], t_end),
            "reprepared_after_trigger_ms": round(1000 * (max(r["reprepared_at"] for r in out) - marks["trigger"]), 1),
            "committed_after_reprepare": sum(1 for r in out for t in r["starts"] if t >= r["reprepared_at"]),
            "mon": mon_total(out), "counts": check_counts(target, dsn, args.rows, taken),
            "captured_updates": captured(target, dsn)}
    for x in (dsn, log_dsn):
        target.drop(x)
    b = run1["during_baseline"]
    say(f"  with baseline: {taken['rows']} rows in {taken['seconds']:.1f} s ({run1['rows_per_s']} rows/s, "
        f"waited {taken['waited_seconds']} s); writers {b['committed']} tx in {d:.1f} s, p50 "
        f"{b['latency_ms']['p50']} p99 {b['latency_ms']['p99']} max {b['latency_ms']['max']} ms, "
        f"errors {b['errors']}, record waits {run1['mon'].get('record_waits')}")
    # run 2: the same writers for the same time, trigger installed, no baseline
    cfg, dsn, log_dsn = target.fresh("idle", args.rows)
    run_enable(cfg, False)
    ws = Writers(target, dsn, args)
    t_start = ws.start()
    time.sleep(args.warmup + d)
    out = ws.finish()
    run2 = {"window_s": round(d, 3), "warmup": window(out, t_start, t_start + args.warmup),
            "idle": window(out, t_start + args.warmup, t_start + args.warmup + d), "mon": mon_total(out),
            "committed_total": sum(len(r["lat"]) for r in out), "captured_updates": captured(target, dsn)}
    for x in (dsn, log_dsn):
        target.drop(x)
    i = run2["idle"]
    say(f"  trigger idle: writers {i['committed']} tx in {d:.1f} s, p50 {i['latency_ms']['p50']} p99 "
        f"{i['latency_ms']['p99']} max {i['latency_ms']['max']} ms, errors {i['errors']}, record waits "
        f"{run2['mon'].get('record_waits')}")
    return {"writers": args.writers, "workers": args.workers, "rate_per_writer": args.rate,
            "lock_timeout": args.lock_timeout, "warmup_s": args.warmup, "rows": args.rows,
            "with_baseline": run1, "trigger_idle": run2}


def run_versions(target: Target, args: argparse.Namespace) -> dict:
    from fbaudit import capture
    from fbaudit.transfer import transfer
    n, per = args.version_packets, args.versions_per_record
    res = {"packets": n, "versions_per_record": per}
    for case, records in (("new", n), ("many", max(1, n // per))):
        cfg, dsn, log_dsn = target.fresh(f"ver_{case}", records)
        capture.enable(cfg, TABLE)
        con = target.connect(dsn)
        con.execute_immediate(
            f"EXECUTE BLOCK AS DECLARE i INTEGER = 0; BEGIN WHILE (i < {n}) DO BEGIN i = i + 1; "
            f"UPDATE BENCH SET QTY = :i, NAME = 'v' || :i WHERE ID = MOD(:i - 1, {records}) + 1; END END")
        con.commit()
        con.close()
        t0 = time.perf_counter()
        transfer(cfg, workers=1)
        secs = time.perf_counter() - t0
        got, vmax = target.scalar(log_dsn, f"SELECT COUNT(*), MAX(VERSION_NO) FROM {benchlib.PREFIX}LOG_PACKET")
        res[case] = {"records": records, "transfer_s": round(secs, 3), "packets_per_s": round(n / secs),
                     "log_packets": got, "max_version_no": vmax}
        say(f"  {case}: {n} packets over {records} records: transfer {secs:.2f} s ({round(n / secs)} packets/s), "
            f"max VERSION_NO {vmax}")
        for x in (dsn, log_dsn):
            target.drop(x)
    return res


# --------------------------------------------------------------------------
def render(result: dict) -> str:
    m = result["meta"]
    lines = [*benchlib.report_header(m, "baseline"), ""]
    if "throughput" in result:
        t = result["throughput"]
        b = t["baseline"]
        lines += [f"1. throughput, nothing else running: {t['rows']:,} rows x {COLUMNS} columns",
                  f"   baseline {b['seconds']:.2f} s: {t['rows_per_s']:,} rows/s, {t['field_rows_per_s']:,} field rows/s "
                  f"({b['field_rows']:,} field rows); whole enable {t['enable_wall_s']:.2f} s, waited "
                  f"{b['waited_seconds']} s; CPU of this process {t['cpu_self_s']:.1f} s",
                  f"   counts {'ok' if t['counts']['ok'] else '!! WRONG'}: {t['counts']['baseline_packets']:,} "
                  f"baseline packets, {t['counts']['staged_field_rows']:,} staged field rows", ""]
    if "impact" in result:
        im = result["impact"]
        r1, r2 = im["with_baseline"], im["trigger_idle"]
        rate = f"{im['rate_per_writer']:g} tx/s each" if im["rate_per_writer"] else "as fast as they can"
        lines += [f"2. application impact: {im['writers']} writer {im['workers']}es, READ COMMITTED, lock timeout "
                  f"{im['lock_timeout']} s, 1 UPDATE (2 columns) per transaction, {rate}; {im['rows']:,} rows",
                  f"   with writers the baseline took {r1['baseline']['seconds']:.2f} s: {r1['rows_per_s']:,} rows/s, "
                  f"{r1['field_rows_per_s']:,} field rows/s (waited {r1['baseline']['waited_seconds']} s for older "
                  f"transactions; whole enable {r1['enable_wall_s']:.2f} s); counts "
                  f"{'ok' if r1['counts']['ok'] else '!! WRONG'}",
                  f"   {'window':<34} {'s':>6} {'tx':>7} {'tx/s':>7} {'p50':>7} {'p95':>7} {'p99':>7} {'max':>8}"
                  f" {'>=1s':>5} {'err':>4}"]

        def row(label: str, w: dict) -> str:
            lat = w["latency_ms"]
            f = (lambda x: f"{x:7.2f}" if x is not None else "      -")
            return (f"   {label:<34} {w['seconds']:6.1f} {w['committed']:7d} {w['tps'] or 0:7.1f} {f(lat['p50'])} "
                    f"{f(lat['p95'])} {f(lat['p99'])} {f(lat['max']):>8} {w['over_1s']:5d} {w['errors']:4d}")
        lines += [row("no trigger (before enable)", r1["no_trigger"]),
                  row("enable, before the trigger commit", r1["enable_before_trigger"]),
                  row("baseline running", r1["during_baseline"]),
                  row("trigger idle (fresh db, same time)", r2["idle"]),
                  "   latency in ms; record lock waits / update conflicts of the writers' attachments (whole run): "
                  f"with baseline {r1['mon'].get('record_waits')} / {r1['mon'].get('record_conflicts')}, "
                  f"idle {r2['mon'].get('record_waits')} / {r2['mon'].get('record_conflicts')}",
                  f"   captured: with baseline {r1['captured_updates']:,} update packets for "
                  f"{r1['committed_after_reprepare']:,} commits after the writers re-prepared (all within "
                  f"{r1['reprepared_after_trigger_ms']} ms of the trigger's commit); idle {r2['captured_updates']:,} "
                  f"for {r2['committed_total']:,} commits"]
        for label, w in (("baseline", r1["during_baseline"]), ("idle", r2["idle"])):
            if w["error_kinds"]:
                lines.append(f"   errors ({label}): {w['error_kinds']}")
        lines.append("")
    if "versions" in result:
        v = result["versions"]
        lines.append(f"3. transfer of {v['packets']:,} update packets (2 fields each), VERSION_NO numbering")
        for case, label in (("new", "each packet a new record"),
                            ("many", f"{v['versions_per_record']} versions per record")):
            c = v[case]
            lines.append(f"   {label:<28} {c['records']:>7,} records: {c['transfer_s']:.2f} s, "
                         f"{c['packets_per_s']:,} packets/s, max VERSION_NO {c['max_version_no']}")
        lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", default="throughput,impact", help=f"parts: comma list of {','.join(PARTS)} "
                    "[throughput,impact]")
    ap.add_argument("--rows", type=int, default=20000, help="rows in BENCH [20000]")
    ap.add_argument("--writers", type=int, default=4, help="impact: writer connections [4]")
    ap.add_argument("--workers", choices=("process", "thread"), default="process",
                    help="impact: writers as processes (embedded: SuperClassic) or threads of this process [process]")
    ap.add_argument("--rate", type=float, default=50.0,
                    help="impact: transactions per second per writer, 0 = as fast as possible [50]")
    ap.add_argument("--lock-timeout", type=int, default=5, help="impact: writers' lock timeout in seconds [5]")
    ap.add_argument("--warmup", type=float, default=3.0,
                    help="impact: seconds the writers run before the measured window [3]")
    ap.add_argument("--version-packets", type=int, default=20000, help="versions: packets transferred [20000]")
    ap.add_argument("--versions-per-record", type=int, default=100, help="versions: packets per record [100]")
    benchlib.add_common_args(ap, dir_help="folder for database files (embedded) and configs [a temporary folder]")
    ap.add_argument("--out", dest="json", help="same as --json")
    args = ap.parse_args(argv)
    only = [x.strip() for x in args.only.split(",") if x.strip()]
    for x in only:
        if x not in PARTS:
            ap.error(f"unknown part {x!r} (choose from {', '.join(PARTS)})")
    if args.writers < 1:
        ap.error("--writers must be at least 1")
    if args.workers == "process" and args.target == "embedded" and "impact" in only:
        # several processes open the same files: the SuperClassic copy of the runtime, in every process
        # (throughput alone runs in Super, the embedded default)
        os.environ["FBAUDIT_EMBEDDED_SHARED"] = "1"

    started = time.perf_counter()
    snapdir = benchlib.snapshot_from_args(args)
    target = Target(args)
    result: dict = {}
    try:
        probe = target.create("probe")
        con = target.connect(probe)
        engine = benchlib.engine_info(con)
        con.close()
        target.drop(probe)
        meta = benchlib.run_meta(target, args, engine, rows=args.rows, parts=only)
        result["meta"] = meta
        say(f"Firebird {engine['engine_version']} ({meta['target_desc']}), load {os.getloadavg()[0]:.2f}; "
            f"fbaudit {meta['fbaudit_revision']} from {meta['fbaudit_path']}")
        if "throughput" in only:
            say(f"1. throughput: baseline of {args.rows} rows, nothing else running")
            result["throughput"] = run_throughput(target, args)
        if "impact" in only:
            say(f"2. impact: {args.writers} writer {args.workers}es, "
                + (f"{args.rate:g} tx/s each" if args.rate else "as fast as possible"))
            result["impact"] = run_impact(target, args)
        if "versions" in only:
            say(f"3. versions: transfer of {args.version_packets} packets")
            result["versions"] = run_versions(target, args)
        meta["machine"]["loadavg_end"] = os.getloadavg()
        meta["runtime_seconds"] = round(time.perf_counter() - started, 1)
    finally:
        target.cleanup()
        if snapdir and not args.keep:
            shutil.rmtree(snapdir, ignore_errors=True)
    benchlib.write_results(result, args.json)
    print()
    print(render(result))
    print(f"total runtime {result['meta']['runtime_seconds']:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
