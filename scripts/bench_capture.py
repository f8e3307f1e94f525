#!/usr/bin/env python3
"""Cost of fbaudit's capture trigger: time with the trigger / time without.

Table BENCH: an INTEGER primary key and 20 VARCHAR(40) columns. Three variants,
each in its own fresh database (created for every run, dropped after it):

  none     no trigger
  fbaudit  `fbaudit init` + `fbaudit enable BENCH` (the generated trigger)
  no-ddl   the same, then fbaudit's DDL triggers (FBA_DDL_LOG, FBA_DDL_FOLLOW,
           docs/schema-changes.md) dropped: their cost on DML, side by side
           (--variants none,fbaudit,no-ddl)
  upgrade  the same, then `fbaudit upgrade begin`: the keys-only trigger of an
           open upgrade (docs/schema-changes.md "Renaming a column"): what
           the application pays during an upgrade window
           (--variants none,fbaudit,upgrade)
  article  the source article's design, written by hand below (article_ddl()):
           hot-row `UPDATE LOG_PACKET_FLAG SET ID = 1` in every trigger and
           `NEW.f <> OLD.f` for updates

Three workloads (each timed, per variant, --repeat times after one smaller
warm-up run; the median counts):

  (a) client: one row per statement from Python, commit every 100 rows:
      insert N rows (20 fields), update 2 of the 20 fields of each, delete each
  (b) server: one EXECUTE BLOCK loop of --block-rows rows per operation
  (c) concurrency: --writers connections (processes; see --workers), each
      committing one UPDATE at a time on its own rows for --seconds:
      throughput and failed transactions

CPU time is recorded beside wall time: this process's (embedded: the engine
runs in it) or the local server processes' (which includes any other client's
work on that server).

--explore times variants of the trigger (model_trigger(): each cost switched
off or replaced one at a time) instead, to see where the trigger's time goes.
--snapshot REV benchmarks fbaudit as committed at REV, not the working tree.

Usage (see docs/performance.md):
  python scripts/bench_capture.py --target embedded --json bench-fb5.json
  python scripts/bench_capture.py --target server --json bench-fb3-server.json
  python scripts/bench_capture.py --explore --explore-parts b --explore-block-rows 3000 --repeat 7
"""
from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import re
import shutil
import statistics
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import benchlib       # scripts/benchlib.py; like this script, it imports fbaudit only inside functions
from benchlib import PREFIX, fbaudit_revision, machine_info, say, server_pids

NCOLS = 20
COLS = [f"C{i}" for i in range(1, NCOLS + 1)]
VARIANTS = ("none", "fbaudit", "article", "no-ddl", "upgrade")
OPS = ("insert", "update", "delete")
VALUE_LEN = 32          # characters per VARCHAR(40) value written by the benchmark


# --------------------------------------------------------------------------
# SQL
# --------------------------------------------------------------------------
def bench_table_ddl(charset: str) -> str:
    cols = ", ".join(f"{c} VARCHAR(40) CHARACTER SET {charset}" for c in COLS)
    return f"CREATE TABLE BENCH (ID INTEGER NOT NULL PRIMARY KEY, {cols})"


INSERT_SQL = f"INSERT INTO BENCH (ID, {', '.join(COLS)}) VALUES (?{', ?' * NCOLS})"
UPDATE_SQL = "UPDATE BENCH SET C1 = ?, C2 = ? WHERE ID = ?"
DELETE_SQL = "DELETE FROM BENCH WHERE ID = ?"


def row_values(i: int) -> tuple:
    return tuple(f"{c} value {i:010d} abcdefghijklmnop"[:VALUE_LEN] for c in COLS)


def upd_values(i: int, gen: int = 1) -> tuple:
    return (f"C1 new {gen} {i:010d} qrstuvwxyz"[:VALUE_LEN], f"C2 new {gen} {i:010d} qrstuvwxyz"[:VALUE_LEN])


def block_sql(op: str, first: int, n: int) -> str:
    """One EXECUTE BLOCK running ``n`` single-row statements of ``op``."""
    if op == "insert":
        vals = ", ".join(f"'{c} value ' || LPAD(:i, 10, '0') || ' abcdefg'" for c in COLS)
        body = f"INSERT INTO BENCH (ID, {', '.join(COLS)}) VALUES (:i, {vals});"
    elif op == "update":
        body = "UPDATE BENCH SET C1 = 'C1 new ' || LPAD(:i, 10, '0'), C2 = 'C2 new ' || LPAD(:i, 10, '0') WHERE ID = :i;"
    else:
        body = "DELETE FROM BENCH WHERE ID = :i;"
    return (f"EXECUTE BLOCK AS DECLARE i INTEGER = {first - 1}; BEGIN "
            f"WHILE (i < {first - 1 + n}) DO BEGIN i = i + 1; {body} END END")


def article_ddl() -> list[str]:
    """The source article's capture design (docs/performance.md), as
    its author describes it: control row LOG_INFO read by every trigger (and
    updated by the first record of a new day), LOG_PACKET row RETURNING ID,
    one row per field in V_LOG_1 / V_LOG_2 (all fields on insert/delete,
    fields with NEW.f <> OLD.f on update), and the "anything new?" flag
    LOG_PACKET_FLAG set to 1 by every trigger (the hot row).

    Each LOG_n row has its own id (the article lists a unique id) from a
    sequence, as primary key. One trigger per event (the article describes one trigger setting the type;
    with 20 fields x 2 views x 3 events the single trigger would approach the
    256-contexts limit, and the per-row work is the same either way)."""
    stmts = [
        "CREATE TABLE LOG_INFO (ZAPIS SMALLINT, DATA TIMESTAMP, ID_TABLE SMALLINT)",
        "CREATE SEQUENCE LOG_PACKET_ID",
        "CREATE SEQUENCE LOG_ID",
        """CREATE TABLE LOG_PACKET (ID BIGINT NOT NULL PRIMARY KEY, DATA_ TIMESTAMP, AUTHOR VARCHAR(63),
             CHECK_ SMALLINT DEFAULT 0, TIP SMALLINT, NUM_TABLE SMALLINT, NUM_DATA_TABLE SMALLINT,
             ID_RECORD INTEGER, ATTEMPTS SMALLINT DEFAULT 0, DATE_PROCESSED TIMESTAMP)""",
        """CREATE TABLE LOG_1 (ID BIGINT NOT NULL PRIMARY KEY, BLOB_OLD BLOB SUB_TYPE TEXT, BLOB_NEW BLOB SUB_TYPE TEXT,
             PACKET BIGINT, NUM_POLE SMALLINT)""",
        """CREATE TABLE LOG_2 (ID BIGINT NOT NULL PRIMARY KEY, BLOB_OLD BLOB SUB_TYPE TEXT, BLOB_NEW BLOB SUB_TYPE TEXT,
             PACKET BIGINT, NUM_POLE SMALLINT)""",
        "CREATE INDEX LOG_1_PACKET ON LOG_1 (PACKET)",
        "CREATE INDEX LOG_2_PACKET ON LOG_2 (PACKET)",
        "CREATE VIEW V_LOG_1 AS SELECT ID, BLOB_OLD, BLOB_NEW, PACKET, NUM_POLE FROM LOG_1",
        "CREATE VIEW V_LOG_2 AS SELECT ID, BLOB_OLD, BLOB_NEW, PACKET, NUM_POLE FROM LOG_2",
        "CREATE TABLE LOG_PACKET_FLAG (ID SMALLINT)",
        "COMMIT",
        "INSERT INTO LOG_INFO (ZAPIS, DATA, ID_TABLE) VALUES (1, CURRENT_DATE, 1)",
        "INSERT INTO LOG_PACKET_FLAG (ID) VALUES (0)",
        "COMMIT",
    ]
    for tip, event in ((1, "INSERT"), (2, "UPDATE"), (3, "DELETE")):
        rec = "OLD" if tip == 3 else "NEW"
        per_view = []
        for view in ("V_LOG_1", "V_LOG_2"):
            lines = []
            for n, c in enumerate(COLS, 1):
                if tip == 1:
                    lines.append(f"INSERT INTO {view} (ID, PACKET, NUM_POLE, BLOB_NEW) "
                                 f"VALUES (GEN_ID(LOG_ID, 1), :pid, {n}, NEW.{c});")
                elif tip == 2:
                    lines.append(f"IF (NEW.{c} <> OLD.{c}) THEN INSERT INTO {view} (ID, PACKET, NUM_POLE, BLOB_OLD, "
                                 f"BLOB_NEW) VALUES (GEN_ID(LOG_ID, 1), :pid, {n}, OLD.{c}, NEW.{c});")
                else:
                    lines.append(f"INSERT INTO {view} (ID, PACKET, NUM_POLE, BLOB_OLD) "
                                 f"VALUES (GEN_ID(LOG_ID, 1), :pid, {n}, OLD.{c});")
            per_view.append("\n      ".join(lines))
        stmts.append(f"""CREATE TRIGGER BENCH_LOG_{event[0]} FOR BENCH ACTIVE AFTER {event} POSITION 32000 AS
  DECLARE zapis SMALLINT;
  DECLARE data_ TIMESTAMP;
  DECLARE tab SMALLINT;
  DECLARE pid BIGINT;
BEGIN
  SELECT FIRST 1 ZAPIS, DATA, ID_TABLE FROM LOG_INFO INTO :zapis, :data_, :tab;
  IF (zapis = 0) THEN EXIT;
  IF (data_ IS DISTINCT FROM CURRENT_DATE) THEN
  BEGIN
    tab = IIF(tab = 1, 2, 1);
    UPDATE LOG_INFO SET DATA = CURRENT_DATE, ID_TABLE = :tab;
  END
  INSERT INTO LOG_PACKET (ID, DATA_, AUTHOR, CHECK_, TIP, NUM_TABLE, NUM_DATA_TABLE, ID_RECORD, ATTEMPTS)
  VALUES (GEN_ID(LOG_PACKET_ID, 1), CURRENT_TIMESTAMP, CURRENT_USER, 0, {tip}, 1, :tab, {rec}.ID, 0)
  RETURNING ID INTO :pid;
  IF (tab = 1) THEN
    BEGIN
      {per_view[0]}
    END
  ELSE
    BEGIN
      {per_view[1]}
    END
  UPDATE LOG_PACKET_FLAG SET ID = 1;
END""")
    return stmts


# --------------------------------------------------------------------------
# Where the databases live
# --------------------------------------------------------------------------
class Target(benchlib.Target):
    """benchlib.Target with --forced-writes for the databases it creates and a
    runtime several processes can share (shared_root())."""

    kind = "capture"

    def __init__(self, args: argparse.Namespace):
        super().__init__(args)
        self.private_root: Path | None = None

    def create(self, name: str) -> str:
        from firebird.driver import driver_config
        fw = self.args.forced_writes
        driver_config.db_defaults.forced_writes.value = None if fw == "default" else (fw == "on")
        return super().create(name)

    def shared_root(self) -> Path:
        """A private copy of the embedded runtime with ServerMode = SuperClassic,
        so that several processes can open one database file (the default
        Super mode locks the file for one process)."""
        if self.private_root is None:
            src = Path(self.runtime.embedded_root)
            dst = self.workdir / "fbroot-superclassic"
            if not dst.exists():
                shutil.copytree(src, dst, symlinks=True)
                with open(dst / "firebird.conf", "a", encoding="utf-8") as f:
                    f.write("\n# fbaudit bench: several processes share one database file\nServerMode = SuperClassic\n")
            self.private_root = dst
        return self.private_root


class CpuClock:
    """CPU seconds of whoever runs the engine: this process (embedded: the
    engine's threads are ours) or the local server's processes (which also
    count any other client's work on that server)."""

    def __init__(self, target: "Target"):
        self.pids = server_pids() if target.is_server and target.args.host in ("localhost", "127.0.0.1") else []
        self.available = not target.is_server or bool(self.pids)
        self.tick = os.sysconf("SC_CLK_TCK")

    def __call__(self) -> float:
        if not self.pids:
            return time.process_time()
        total = 0
        for pid in self.pids:
            try:
                f = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
                total += int(f[11]) + int(f[12])
            except (OSError, IndexError, ValueError):
                pass
        return total / self.tick


CPU: CpuClock | None = None


def engine_version(con) -> str:
    cur = con.cursor()
    cur.execute("SELECT RDB$GET_CONTEXT('SYSTEM', 'ENGINE_VERSION'), MON$PAGE_SIZE, MON$FORCED_WRITES, "
                "MON$PAGE_BUFFERS FROM MON$DATABASE")
    row = cur.fetchone()
    cur.close()
    con.commit()
    return row


def prepare_variant(target: Target, variant: str, tag: str, log_dsn: str, *, preload: int = 0,
                    charset: str = "UTF8") -> str:
    """A fresh database with BENCH (``preload`` rows inserted before any trigger
    exists) and the variant's trigger. Returns its DSN."""
    dsn = target.create(tag)
    con = target.connect(dsn)
    con.execute_immediate(bench_table_ddl(charset))
    con.commit()
    if preload:
        cur = con.cursor()
        st = cur.prepare(INSERT_SQL)
        for i in range(1, preload + 1):
            cur.execute(st, (i, *row_values(i)))
        con.commit()
    if variant == "article":
        for s in article_ddl():
            if s == "COMMIT":
                con.commit()
            else:
                con.execute_immediate(s)
        con.commit()
    con.close()
    if variant in ("fbaudit", "no-ddl", "upgrade"):
        from fbaudit import capture
        cfg = target.config(dsn, log_dsn, tag)
        capture.init(cfg)
        capture.enable(cfg, "BENCH")
        if variant == "upgrade":
            from fbaudit import upgrade
            upgrade.begin(cfg)
        if variant == "no-ddl":
            con = target.connect(dsn)
            for name in ("DDL_LOG", "DDL_FOLLOW"):
                con.execute_immediate(f"DROP TRIGGER {PREFIX}{name}")
            con.commit()
            con.close()
    return dsn


def log_counts(target: Target, dsn: str, variant: str) -> dict:
    """Rows the variant's trigger wrote (packets, field rows)."""
    if variant == "none":
        return {}
    con = target.connect(dsn)
    cur = con.cursor()
    p = PREFIX if variant in ("fbaudit", "no-ddl", "upgrade") else ""
    # fbaudit's triggers write their packets into LOG_PACKET_1 / _2 since packets rotate (a --snapshot
    # from before, and the article's, into LOG_PACKET).
    cur.execute("SELECT TRIM(RDB$RELATION_NAME) FROM RDB$RELATIONS WHERE RDB$RELATION_NAME IN (?, ?)",
                (f"{p}LOG_PACKET_1", f"{p}LOG_PACKET_2"))
    tables = [f"{p}LOG_PACKET"] + [r[0] for r in cur.fetchall()]
    packets = " + ".join(f"(SELECT COUNT(*) FROM {t})" for t in tables)
    cur.execute(f"SELECT {packets}, (SELECT COUNT(*) FROM {p}LOG_1) "
                f"+ (SELECT COUNT(*) FROM {p}LOG_2) FROM RDB$DATABASE")
    packets, fields = cur.fetchone()
    con.commit()
    con.close()
    return {"packets": packets, "field_rows": fields}


# --------------------------------------------------------------------------
# (a) client side and (b) server side
# --------------------------------------------------------------------------
def _commit(con) -> None:
    if con.main_transaction.is_active():
        con.commit()


def run_client(con, n: int, commit_every: int, first: int = 1) -> dict[str, float]:
    cur = con.cursor()
    out = {}
    ids = range(first, first + n)
    plans = {
        "insert": (INSERT_SQL, [(i, *row_values(i)) for i in ids]),
        "update": (UPDATE_SQL, [(*upd_values(i), i) for i in ids]),
        "delete": (DELETE_SQL, [(i,) for i in ids]),
    }
    for op in OPS:
        sql, rows = plans[op]
        st = cur.prepare(sql)
        c0, t0 = CPU(), time.perf_counter()
        for k, row in enumerate(rows, 1):
            cur.execute(st, row)
            if k % commit_every == 0:
                con.commit()
        _commit(con)
        out[op] = time.perf_counter() - t0
        out[op + "_cpu"] = CPU() - c0
        st.free()
    cur.close()
    return out


def run_block(con, n: int, first: int = 1) -> dict[str, float]:
    out = {}
    for op in OPS:
        sql = block_sql(op, first, n)
        c0, t0 = CPU(), time.perf_counter()
        con.execute_immediate(sql)
        con.commit()
        out[op] = time.perf_counter() - t0
        out[op + "_cpu"] = CPU() - c0
    return out


def measure_sequential(target: Target, kind: str, variants: list[str], log_dsn: str, *, n: int, warm_n: int,
                       repeat: int, commit_every: int) -> dict:
    """Phases (a) and (b): for every repetition and variant a fresh database."""
    times: dict[str, dict[str, list[float]]] = {v: {op: [] for op in OPS} for v in variants}
    cpu: dict[str, dict[str, list[float]]] = {v: {op: [] for op in OPS} for v in variants}
    counts: dict[str, dict] = {}
    for rep in range(repeat + 1):
        warm = rep == 0
        rows = warm_n if warm else n
        order = variants[rep % len(variants):] + variants[:rep % len(variants)]  # rotate the order
        for v in order:
            dsn = prepare_variant(target, v, f"{kind}_{v}_{rep}", log_dsn)
            con = target.connect(dsn)
            try:
                t = run_client(con, rows, commit_every) if kind == "client" else run_block(con, rows)
            finally:
                con.close()
            if not warm:
                for op in OPS:
                    times[v][op].append(t[op])
                    cpu[v][op].append(t[op + "_cpu"])
                if v not in counts:
                    counts[v] = log_counts(target, dsn, v)
            target.drop(dsn)
            label = "warm-up" if warm else f"rep {rep}/{repeat}"
            say(f"  ({'a' if kind == 'client' else 'b'}) {label:8} {v:8} {rows} rows: "
                + "  ".join(f"{op} {t[op]:.3f}s" for op in OPS))
    res = {"rows": n, "times": times, "median": {}, "ratio": {}, "cpu_times": cpu, "cpu_median": {},
           "cpu_ratio": {}, "cpu_clock": "server processes" if CPU.pids else "this process", "log_rows": counts}
    for v in variants:
        res["median"][v] = {op: statistics.median(times[v][op]) for op in OPS}
        res["cpu_median"][v] = {op: statistics.median(cpu[v][op]) for op in OPS}
    for v in variants:
        if v != "none" and "none" in variants:
            res["ratio"][v] = {op: res["median"][v][op] / res["median"]["none"][op] for op in OPS}
            res["cpu_ratio"][v] = {op: (res["cpu_median"][v][op] / res["cpu_median"]["none"][op])
                                   if res["cpu_median"]["none"][op] > 0 else None for op in OPS}
    return res


# --------------------------------------------------------------------------
# (c) concurrent writers
# --------------------------------------------------------------------------
def writer(w: int, writers: int, rows_per_writer: int, dsn: str, user: str, password: str | None,
           fb_root: str | None, isolation: str, barrier, seconds: float, results) -> None:
    """One writer: commit one UPDATE at a time on its own rows until time is up."""
    res = {"writer": w, "ok": 0, "failed": 0, "errors": Counter(), "elapsed": 0.0, "setup_error": None}
    con = None
    try:
        if fb_root:      # process mode, embedded: a SuperClassic copy of the runtime (fbaudit.runtime.shared_root),
            # chosen before the client library loads: load_client() initialises the engine at once, which
            # reads firebird.conf then (setting $FIREBIRD afterwards left each writer its own Super engine:
            # "Database already opened with engine instance, incompatible with current")
            os.environ["FBAUDIT_EMBEDDED_SHARED"] = "1"
        from fbaudit.runtime import load_client
        load_client()
        from firebird.driver import Isolation, connect, tpb
        con = connect(dsn, user=user, password=password, charset="UTF8")
        iso = Isolation.SNAPSHOT if isolation == "snapshot" else Isolation.READ_COMMITTED_RECORD_VERSION
        con.main_transaction.default_tpb = tpb(iso)
        cur = con.cursor()
        st = cur.prepare(UPDATE_SQL)
        my_rows = [w + 1 + k * writers for k in range(rows_per_writer)]
    except Exception as exc:
        res["setup_error"] = f"{type(exc).__name__}: {exc}"
        barrier.wait()
        results.put(_plain(res))
        return
    barrier.wait()
    t0 = time.perf_counter()
    deadline = t0 + seconds
    k = 0
    while time.perf_counter() < deadline:
        row = my_rows[k % len(my_rows)]
        k += 1
        try:
            con.begin()
            cur.execute(st, (*upd_values(row, k), row))
            con.commit()
            res["ok"] += 1
        except Exception as exc:
            res["failed"] += 1
            res["errors"][re.sub(r"\d+", "N", " ".join(str(exc).split()))[:160]] += 1
            try:
                con.rollback()
            except Exception:
                pass
    res["elapsed"] = time.perf_counter() - t0
    try:
        cur.close()
        con.close()
    except Exception:
        pass
    results.put(_plain(res))


def _plain(res: dict) -> dict:
    r = dict(res)
    r["errors"] = dict(res["errors"])
    return r


def run_writers(target: Target, dsn: str, *, writers: int, rows_per_writer: int, seconds: float, mode: str,
                isolation: str) -> dict:
    if mode == "process":
        import multiprocessing as mp
        ctx = mp.get_context("spawn")
        barrier = ctx.Barrier(writers + 1)
        results = ctx.Queue()
        root = str(target.shared_root()) if not target.is_server else None
        workers = [ctx.Process(target=writer, args=(w, writers, rows_per_writer, dsn, target.user, target.password,
                                                    root, isolation, barrier, seconds, results))
                   for w in range(writers)]
    else:
        import queue
        barrier = threading.Barrier(writers + 1)
        results = queue.Queue()
        workers = [threading.Thread(target=writer, args=(w, writers, rows_per_writer, dsn, target.user,
                                                         target.password, None, isolation, barrier, seconds, results))
                   for w in range(writers)]
    for p in workers:
        p.start()
    barrier.wait(timeout=120)
    out = [results.get(timeout=seconds + 300) for _ in workers]
    for p in workers:
        p.join()
    setup = [r["setup_error"] for r in out if r["setup_error"]]
    if setup:
        raise RuntimeError(f"writer setup failed: {setup[0]}")
    ok = sum(r["ok"] for r in out)
    failed = sum(r["failed"] for r in out)
    elapsed = max(r["elapsed"] for r in out)
    errors: Counter = Counter()
    for r in out:
        errors.update(r["errors"])
    return {"committed": ok, "failed": failed, "elapsed": elapsed, "tps": ok / elapsed,
            "failed_pct": 100.0 * failed / max(1, ok + failed), "errors": dict(errors.most_common(5))}


def measure_concurrency(target: Target, variants: list[str], log_dsn: str, *, writers: int, seconds: float,
                        repeat: int, mode: str, isolation: str, rows_per_writer: int = 50) -> dict:
    runs: dict[str, list[dict]] = {v: [] for v in variants}
    preload = writers * rows_per_writer
    for rep in range(repeat + 1):
        warm = rep == 0
        secs = min(1.0, seconds) if warm else seconds
        order = variants[rep % len(variants):] + variants[:rep % len(variants)]
        for v in order:
            tag = f"conc_{v}_{rep}"
            dsn = prepare_variant(target, v, tag, log_dsn, preload=preload)
            r = run_writers(target, dsn, writers=writers, rows_per_writer=rows_per_writer, seconds=secs,
                            mode=mode, isolation=isolation)
            r.update(log_counts(target, dsn, v))
            target.drop(dsn)
            label = "warm-up" if warm else f"rep {rep}/{repeat}"
            say(f"  (c) {label:8} {v:8} {writers} writers {secs:g}s: {r['committed']} committed "
                f"({r['tps']:.0f}/s), {r['failed']} failed ({r['failed_pct']:.0f}%)"
                + (f"; {r['packets']} packets logged" if "packets" in r else ""))
            if r["errors"]:
                say(f"      first error: {next(iter(r['errors']))}")
            if not warm:
                runs[v].append(r)
    res = {"writers": writers, "seconds": seconds, "mode": mode, "isolation": isolation, "runs": runs,
           "median_tps": {}, "failed": {}, "failed_pct": {}, "slowdown": {}}
    for v in variants:
        res["median_tps"][v] = statistics.median(r["tps"] for r in runs[v])
        res["failed"][v] = sum(r["failed"] for r in runs[v])
        tot = sum(r["failed"] + r["committed"] for r in runs[v])
        res["failed_pct"][v] = 100.0 * res["failed"][v] / max(1, tot)
    for v in variants:
        if v != "none" and "none" in variants:
            res["slowdown"][v] = res["median_tps"]["none"] / res["median_tps"][v]
    return res


# --------------------------------------------------------------------------
# Report
# --------------------------------------------------------------------------
TARGETS = {("client", "update"): 1.2, ("client", "insert"): 1.5, ("client", "delete"): 1.5}


def render(result: dict) -> str:
    m = result["meta"]
    lines = [
        *benchlib.report_header(m, "capture"),
        "",
    ]
    variants = [v for v in m["variants"] if v != "none"]
    w = 30
    for kind, title in (("client", "(a) client, 1 row/statement, commit/{ce}"), ("block", "(b) server, EXECUTE BLOCK")):
        if kind not in result:
            continue
        r = result[kind]
        lines.append(title.format(ce=m["commit_every"]) + f", {r['rows']} rows (median of {m['repeat']}); "
                     f"time, ratio, (CPU-time ratio, CPU of {r['cpu_clock']})")
        lines.append(f"{'workload':26} {'no trigger':>10} " + " ".join(f"{v:>{w}}" for v in variants))
        for op in OPS:
            what = {"insert": "insert (20 fields)", "update": "update 2 of 20 fields", "delete": "delete"}[op]
            base = r["median"]["none"][op]
            cells = []
            for v in variants:
                t, ratio = r["median"][v][op], r["ratio"][v][op]
                cr = r["cpu_ratio"][v][op]
                flag = ""
                if v == "fbaudit" and (kind, op) in TARGETS:
                    flag = "ok" if ratio <= TARGETS[(kind, op)] else "!!"
                cells.append(f"{t:7.3f}s {ratio:5.2f}x {'(' + format(cr, '.2f') + 'x)' if cr else '':>8} {flag:2}")
            lines.append(f"  {what:24} {base:9.3f}s " + " ".join(f"{c:>{w}}" for c in cells))
        lines.append("")
    if "concurrent" in result:
        r = result["concurrent"]
        lines.append(f"(c) {r['writers']} concurrent writers ({'processes' if r['mode'] == 'process' else 'threads'}), 1 update per transaction, "
                     f"{r['seconds']:g} s, {r['isolation']} (median of {m['repeat']})")
        lines.append(f"{'':26} {'no trigger':>10} " + " ".join(f"{v:>{w}}" for v in variants))
        lines.append(f"  {'committed transactions/s':24} {r['median_tps']['none']:10.0f} "
                     + " ".join(f"{format(r['median_tps'][v], '.0f') + ' ' + format(r['slowdown'][v], '5.2f') + 'x':>{w}}"
                                for v in variants))
        lines.append(f"  {'failed transactions':24} {str(r['failed']['none']) + ' (' + format(r['failed_pct']['none'], '.0f') + '%)':>10} "
                     + " ".join(f"{str(r['failed'][v]) + ' (' + format(r['failed_pct'][v], '.0f') + '%)':>{w}}"
                                for v in variants))
        for v in variants:
            errs = Counter()
            for run in r["runs"][v]:
                errs.update(run["errors"])
            if errs:
                lines.append(f"  {v} errors: " + "; ".join(f"{n} x {e}" for e, n in errs.most_common(2)))
        lines.append("")
    lines.append("ratio = median time with the trigger / median time without (for (c): throughput without / with); "
                 "targets for fbaudit: client update <= 1.2x, insert/delete <= 1.5x, 0 failed (ok / !!)")
    return "\n".join(lines)


# --------------------------------------------------------------------------
# --explore: variants of the generated trigger, to see where its time goes
# --------------------------------------------------------------------------
def model_trigger(*, info: str = "read", event: str = "each", context: bool = True, gen: str = "gen",
                  fields: str = "inline", cast: bool = False, buf: str = "VARCHAR(32000) CHARACTER SET OCTETS",
                  payload: str = "PAYLOAD") -> str:
    """The audit trigger of BENCH, written from a model of fbaudit's design so
    that each cost can be switched off or replaced one at a time.

    info    read: SELECT FIRST 1 ... FROM LOG_INFO | const: on, table 1
    event   each: POST_EVENT per change | once: per transaction (context flag) | none
    context RDB$GET_CONTEXT calls in the packet row (author, address, comment)
    gen     gen: packet id from GEN_ID | tx: CURRENT_TRANSACTION * 1000000 + ID (benchmark only)
    fields  inline: IF dt=2 INSERT INTO V_LOG_2 ELSE V_LOG_1 per field (fbaudit <= 100 fields before capture 2.0)
            lf: EXECUTE PROCEDURE LF per field (sub-procedure, BLOB params; fbaudit > 100 fields before 2.0)
            table: INSERT INTO LOG_1 directly per field
            packed_lf: changed fields packed into one value, one LF call (V_LOG_n row, NUM_POLE 0)
            packed_packet: packed value stored in a PAYLOAD column of LOG_PACKET (fbaudit's form since 2.0)
            none: no field rows
    cast    wrap each text value in CAST(... AS VARCHAR(40) CHARACTER SET UTF8), as fbaudit does for
            text columns in other character sets (here a no-op conversion: the cost of the CAST node)
    """
    p = PREFIX
    logged = ["ID"] + COLS                        # fbaudit logs the key column too (field 1)

    def val(ctx: str, c: str) -> str:
        if c == "ID":
            return f"CAST({ctx}.ID AS VARCHAR(64))"
        return f"CAST({ctx}.{c} AS VARCHAR(40) CHARACTER SET UTF8)" if cast else f"{ctx}.{c}"

    def packed_part(num: int, o: str, n: str) -> str:
        enc = lambda e: f"COALESCE(CAST({e} AS VARCHAR(400) CHARACTER SET OCTETS), '')"  # noqa: E731
        return (f"buf = buf || '{num},' || COALESCE(OCTET_LENGTH({o}), -1) || ',' || "
                f"COALESCE(OCTET_LENGTH({n}), -1) || ';' || {enc(o)} || {enc(n)};")

    cols = "PACKET, NUM_POLE, BLOB_OLD, BLOB_NEW"
    out = ["AS", "  DECLARE pk BIGINT;", "  DECLARE dt SMALLINT;", "  DECLARE on_ SMALLINT;", "  DECLARE op SMALLINT;"]
    if fields.startswith("packed"):
        out.append(f"  DECLARE buf {buf} = '';")
    if fields in ("lf", "packed_lf"):
        out += ["  DECLARE PROCEDURE LF (pk BIGINT, dt SMALLINT, f INTEGER, o BLOB SUB_TYPE BINARY, "
                "n BLOB SUB_TYPE BINARY)", "  AS", "  BEGIN",
                f"    IF (dt = 2) THEN INSERT INTO {p}V_LOG_2 ({cols}) VALUES (:pk, :f, :o, :n);",
                f"    ELSE INSERT INTO {p}V_LOG_1 ({cols}) VALUES (:pk, :f, :o, :n);", "  END"]
    out.append("BEGIN")
    out.append(f"  SELECT FIRST 1 ZAPIS, ID_TABLE FROM {p}LOG_INFO INTO on_, dt;" if info == "read"
               else "  on_ = 1; dt = 1;")
    out += ["  IF (on_ = 0) THEN EXIT;", "  IF (dt IS DISTINCT FROM 2) THEN dt = 1;",
            "  IF (INSERTING) THEN op = 1; ELSE IF (UPDATING) THEN op = 2; ELSE op = 3;",
            "  IF (op = 2 AND NOT (" + " OR ".join(f"NEW.{c} IS DISTINCT FROM OLD.{c}" for c in logged) + ")) THEN EXIT;"]
    out.append(f"  pk = GEN_ID({p}LOG_PACKET_ID, 1);" if gen == "gen"
               else "  pk = CURRENT_TRANSACTION * 1000000 + IIF(op = 3, OLD.ID, NEW.ID);")
    author, address, comment = ("RDB$GET_CONTEXT('USER_TRANSACTION', 'FBAUDIT_AUTHOR')",
                                "RDB$GET_CONTEXT('SYSTEM', 'CLIENT_ADDRESS')",
                                "RDB$GET_CONTEXT('USER_TRANSACTION', 'FBAUDIT_COMMENT')") if context else ("NULL",) * 3
    pcols = ("ID, CREATED_AT, OPERATION, NUM_TABLE, DATA_TABLE, RECORD_KEY, AUTHOR, DB_USER, CLIENT_ADDRESS, "
             "TRANSACTION_ID, CHANGE_COMMENT")
    pvals = (r":pk, LOCALTIMESTAMP, :op, 1, :dt, LEFT(IIF(:op = 3, COALESCE(CAST(OLD.ID AS VARCHAR(80)), '\N'), "
             r"COALESCE(CAST(NEW.ID AS VARCHAR(80)), '\N')), 1000), "
             f"LEFT(COALESCE({author}, CURRENT_USER), 255), CURRENT_USER, {address}, CURRENT_TRANSACTION, {comment}")
    if fields != "packed_packet":
        out.append(f"  INSERT INTO {p}LOG_PACKET ({pcols}) VALUES ({pvals});")
    for num, col in enumerate(logged, 1):
        cond, o, n = f"NEW.{col} IS DISTINCT FROM OLD.{col}", val("OLD", col), val("NEW", col)
        if fields == "inline":
            out.append(f"  IF ({cond}) THEN IF (dt = 2) THEN INSERT INTO {p}V_LOG_2 ({cols}) VALUES (:pk, {num}, {o}, {n}); "
                       f"ELSE INSERT INTO {p}V_LOG_1 ({cols}) VALUES (:pk, {num}, {o}, {n});")
        elif fields == "lf":
            out.append(f"  IF ({cond}) THEN EXECUTE PROCEDURE LF(:pk, :dt, {num}, {o}, {n});")
        elif fields == "table":
            out.append(f"  IF ({cond}) THEN INSERT INTO {p}LOG_1 ({cols}) VALUES (:pk, {num}, {o}, {n});")
        elif fields.startswith("packed"):
            out.append(f"  IF ({cond}) THEN {packed_part(num, o, n)}")
    if fields == "packed_lf":
        out.append("  EXECUTE PROCEDURE LF(:pk, :dt, 0, NULL, :buf);")
    if fields == "packed_packet":
        out.append(f"  INSERT INTO {p}LOG_PACKET ({pcols}, {payload}) VALUES ({pvals}, :buf);")
    if event == "each":
        out.append(f"  POST_EVENT '{p}NEW_PACKET';")
    elif event == "once":
        out.append(f"  IF (RDB$GET_CONTEXT('USER_TRANSACTION', 'FBA_EV') IS NULL) THEN BEGIN "
                   f"POST_EVENT '{p}NEW_PACKET'; RDB$SET_CONTEXT('USER_TRANSACTION', 'FBA_EV', 1); END")
    out.append("END")
    return "\n".join(out)


def explore_variants() -> list[tuple[str, str, list[str]]]:
    """(name, description, statements run after `fbaudit enable BENCH`). Except
    for "generated" (fbaudit's own trigger, untouched), each drops fbaudit's
    trigger, changes the staging schema if needed and installs model_trigger()."""
    p = PREFIX
    head = f"CREATE OR ALTER TRIGGER {p}AUDIT_1 FOR BENCH ACTIVE AFTER INSERT OR UPDATE OR DELETE POSITION 32000\n"

    def v(schema: list[str] | None = None, **kw) -> list[str]:
        return [f"DROP TRIGGER {p}AUDIT_1", "COMMIT", *(schema or []), "COMMIT", head + model_trigger(**kw)]

    def log1(coltype: str) -> list[str]:
        return [f"DROP VIEW {p}V_LOG_1", f"DROP TABLE {p}LOG_1", "COMMIT",
                f"CREATE TABLE {p}LOG_1 (PACKET BIGINT NOT NULL, NUM_POLE INTEGER NOT NULL, "
                f"BLOB_OLD {coltype}, BLOB_NEW {coltype})",
                f"CREATE INDEX {p}LOG_1_PACKET ON {p}LOG_1 (PACKET)",
                f"CREATE VIEW {p}V_LOG_1 (PACKET, NUM_POLE, BLOB_OLD, BLOB_NEW) AS "
                f"SELECT PACKET, NUM_POLE, BLOB_OLD, BLOB_NEW FROM {p}LOG_1"]

    no_idx = [f"DROP INDEX {p}LOG_1_PACKET"]
    no_pk = [f"ALTER TABLE {p}LOG_PACKET DROP CONSTRAINT {p}LOG_PACKET_PK"]     # model variants write LOG_PACKET
    return [
        ("generated", "the trigger as fbaudit generates it (untouched)", []),
        ("model", "model_trigger() of the same design: should cost what 'generated' costs", v()),
        ("empty", "trigger body is just EXIT (the cost of having any trigger)",
         [f"CREATE OR ALTER TRIGGER {p}AUDIT_1 FOR BENCH ACTIVE AFTER INSERT OR UPDATE OR DELETE POSITION 32000 "
          "AS BEGIN EXIT; END"]),
        ("packet_only", "LOG_INFO read, LOG_PACKET row, POST_EVENT; no field rows", v(fields="none")),
        ("no_handler", "fbaudit's trigger without the WHEN ANY handler of its packing block (no savepoint)",
         ["@EDIT WHEN ANY DO big = 1;"]),
        ("no_tx_columns", "fbaudit's trigger without the per-transaction values in its packet row (user, address, "
                          "transaction, comment: NULL), as if they went to one row per transaction",
         ["@EDIT CURRENT_USER, RDB$GET_CONTEXT('SYSTEM', 'CLIENT_ADDRESS'), CURRENT_TRANSACTION, :note, :pay)"
          "=>NULL, NULL, NULL, NULL, :pay)"]),
        ("packet_static", "the packet row inserted directly into LOG_PACKET_1 (a static INSERT, as before packets "
                          "rotated; the table could then never be dropped) instead of through EXECUTE STATEMENT",
         [r"@RE (?s)  EXECUTE STATEMENT \(IIF\(dt = 2, '[^']*',\s*'[^']*'\)\)\n    \(=>  INSERT INTO " + p + "LOG_PACKET_1 (ID, CREATED_AT, OPERATION, NUM_TABLE, DATA_TABLE, RECORD_KEY, AUTHOR, DB_USER, CLIENT_ADDRESS, TRANSACTION_ID, CHANGE_COMMENT, PAYLOAD) VALUES (",
          "@EDIT :note, :pay)\n    WITH CALLER PRIVILEGES;=>:note, :pay);"]),
        ("no_event", "without POST_EVENT", v(event="none")),
        ("event_once", "POST_EVENT only at the first change of a transaction (USER_TRANSACTION flag)",
         v(event="once")),
        ("no_log_info", "without the LOG_INFO read (constants)", v(info="const")),
        ("no_context", "without the 3 RDB$GET_CONTEXT calls in the packet row", v(context=False)),
        ("no_gen", "packet id without GEN_ID (CURRENT_TRANSACTION * 1000000 + ID; benchmark only)", v(gen="tx")),
        ("cast", "each text value wrapped in CAST(... AS VARCHAR(40) CHARACTER SET UTF8)", v(cast=True)),
        ("lf", "EXECUTE PROCEDURE LF per field (sub-procedure, BLOB params; fbaudit's form above 100 fields)",
         v(fields="lf")),
        ("log_table", "INSERT INTO LOG_1 directly instead of through V_LOG_1 (and no dt branch)", v(fields="table")),
        ("no_packet_index", "without the index on LOG_1.PACKET", v(no_idx)),
        ("no_packet_pk", "without the primary key of LOG_PACKET", v(no_pk)),
        ("varchar400", "LOG_1 values VARCHAR(400) OCTETS instead of BLOB (short values only)",
         v(log1("VARCHAR(400) CHARACTER SET OCTETS"))),
        ("varchar8000", "LOG_1 values VARCHAR(8000) OCTETS instead of BLOB", v(log1("VARCHAR(8000) CHARACTER SET OCTETS"))),
        ("floor", "no LOG_INFO, no POST_EVENT, no GEN_ID, LOG_1 directly, no index on LOG_1.PACKET, no LOG_PACKET PK",
         v(no_idx + no_pk, info="const", event="none", gen="tx", fields="table")),
        ("packed_lf", "changed fields packed into ONE value (VARCHAR(32000) OCTETS variable), one LF call: one "
                      "V_LOG_n row per change with NUM_POLE 0 (schema unchanged)", v(fields="packed_lf")),
        ("packed_lf_noidx", "packed_lf without the index on LOG_1.PACKET", v(no_idx, fields="packed_lf")),
        ("packed_packet", "packed value in a VARCHAR(32000) OCTETS column of LOG_PACKET (one INSERT per change)",
         v([f"ALTER TABLE {p}LOG_PACKET ADD PAYLOAD_V VARCHAR(32000) CHARACTER SET OCTETS"], fields="packed_packet",
           payload="PAYLOAD_V")),
        ("packed_blob", "packed value in a BLOB column of LOG_PACKET (one INSERT per change; fbaudit's PAYLOAD)",
         v(fields="packed_packet")),
        ("packed_blob_var", "packed_blob, but the value built in a BLOB variable (no 32,000-byte limit)",
         v(fields="packed_packet", buf="BLOB SUB_TYPE BINARY")),
    ]


def run_explore(target: Target, args: argparse.Namespace, log_dsn: str, result: dict) -> None:
    from fbaudit import capture  # noqa: F401  (import errors early)
    variants = explore_variants()
    if args.explore_only:
        keep = set(args.explore_only.split(","))
        variants = [v for v in variants if v[0] in keep or v[0] == "generated"]
    n, nc = args.explore_block_rows, args.explore_rows
    parts = {x.strip() for x in args.explore_parts.split(",")}
    kinds = ("block", "block_cpu", "client")
    raw = {name: {**{k: {op: [] for op in OPS} for k in kinds}, "tps": [], "failed": []}
           for name in ["none"] + [v[0] for v in variants]}
    out = {"block_rows": n, "client_rows": nc, "repeat": args.repeat,
           "writers": args.writers if "c" in parts else None, "parts": sorted(parts), "seconds": args.seconds, "cpu_clock":
           "server processes" if CPU.pids else "this process", "variants": {}}
    for rep in range(args.repeat + 1):
        warm = rep == 0
        for name, desc, stmts in [("none", "no trigger", None)] + variants:
            variant = "none" if stmts is None else "fbaudit"
            preload = args.writers * 50 if "c" in parts else 0
            dsn = prepare_variant(target, variant, f"x_{name}_{rep}", log_dsn, preload=preload)
            if stmts:
                con = target.connect(dsn)
                for s in stmts:
                    if s == "COMMIT":
                        _commit(con)
                    elif s.startswith(("@EDIT ", "@RE ")):
                        # fbaudit's own trigger, texts replaced ("old=>new") or removed, or regular
                        # expressions substituted ("@RE pattern=>replacement"); the variant's edits are
                        # applied together, in order, then the trigger is made once
                        if s is not next(x for x in stmts if x.startswith(("@EDIT ", "@RE "))):
                            continue
                        cur = con.cursor()
                        cur.execute(f"SELECT RDB$TRIGGER_SOURCE FROM RDB$TRIGGERS WHERE RDB$TRIGGER_NAME = '{PREFIX}AUDIT_1'")
                        body = cur.fetchone()[0]
                        body = body.read() if hasattr(body, "read") else body
                        cur.close()
                        for x in stmts:
                            if not x.startswith(("@EDIT ", "@RE ")):
                                continue
                            regex = x.startswith("@RE ")
                            old, new = (x.split(" ", 1)[1].split("=>") + [""])[:2]
                            if not (re.search(old, body) if regex else old in body):
                                raise SystemExit(f"--explore variant {name}: the text it edits is not in the trigger "
                                                 f"any more: {old!r}")
                            body = re.sub(old, new, body) if regex else body.replace(old, new)
                        con.execute_immediate(f"CREATE OR ALTER TRIGGER {PREFIX}AUDIT_1 FOR BENCH ACTIVE AFTER INSERT "
                                              "OR UPDATE OR DELETE POSITION 32000\n" + body)
                    else:
                        con.execute_immediate(s)
                con.commit()
                con.close()
            tw = None
            if preload:
                tw = run_writers(target, dsn, writers=args.writers, rows_per_writer=50,
                                 seconds=min(1.0, args.seconds) if warm else args.seconds,
                                 mode=args.workers if args.workers != "auto" else "process", isolation=args.isolation)
            tb = {}
            if "b" in parts:
                con = target.connect(dsn)
                tb = run_block(con, 1000 if warm else n, first=preload + 1)
                con.close()
            tc = {}
            if "a" in parts:
                con = target.connect(dsn)
                tc = run_client(con, 300 if warm else nc, args.commit_every, first=preload + 1)
                con.close()
            target.drop(dsn)
            say(f"  explore {'warm-up' if warm else f'rep {rep}/{args.repeat}'} {name:15}"
                + ("" if not tb else " block " + " ".join(f"{op} {tb[op]:.3f}s" for op in OPS))
                + ("" if not tc else "  client " + " ".join(f"{op} {tc[op]:.3f}s" for op in OPS))
                + ("" if not tw else f"  writers {tw['tps']:.0f} tx/s, {tw['failed']} failed"))
            if warm:
                continue
            for op in OPS:
                if tb:
                    raw[name]["block"][op].append(tb[op])
                    raw[name]["block_cpu"][op].append(tb[op + "_cpu"])
                if tc:
                    raw[name]["client"][op].append(tc[op])
            if tw:
                raw[name]["tps"].append(tw["tps"])
                raw[name]["failed"].append(tw["failed"])
    med = lambda xs: statistics.median(xs) if xs else None  # noqa: E731
    for name, desc, _ in [("none", "no trigger", None)] + variants:
        item = {"description": desc, "raw": raw[name]}
        for k in kinds:
            item[k] = {op: med(raw[name][k][op]) for op in OPS}
            if k == "block_cpu":
                # CPU time only grows with interference from other work: the minimum is the better estimate
                item[k] = {op: min(raw[name][k][op]) if raw[name][k][op] else None for op in OPS}
            if name != "none":
                base = out["none"][k]
                item[k + "_ratio"] = {op: (item[k][op] / base[op]) if item[k][op] and base[op] else None
                                      for op in OPS}
        item["tps"] = med(raw[name]["tps"])
        item["failed"] = sum(raw[name]["failed"])
        if name != "none" and item["tps"]:
            item["tps_slowdown"] = out["none"]["tps"] / item["tps"]
        if name == "none":
            out["none"] = item
        else:
            out["variants"][name] = item
    result["explore"] = out


def render_explore(ex: dict) -> str:
    nb, nc = ex["none"]["block"], ex["none"]["client"]
    ncpu = ex["none"]["block_cpu"]
    rows = ex["block_rows"]
    lines = [f"--explore: variants of the generated trigger, medians of {ex['repeat']}.",
             f"(b) EXECUTE BLOCK loop of {rows} rows: wall-time ratio to no trigger, and the trigger's CPU cost per "
             f"row in microseconds = (min CPU with - min CPU without) / rows, CPU of {ex['cpu_clock']};",
             f"(a) client loop of {ex['client_rows']} rows: wall-time ratio.",
             f"(c) {ex['writers']} concurrent writers, {ex['seconds']:g} s: committed tx/s and slowdown "
             f"(tx/s without / with)." if ex.get("writers") else "",
             f"{'':16} {'(b) insert':>14} {'(b) update':>14} {'(b) delete':>14}   {'(a) ins':>7} {'upd':>6} {'del':>6}"
             + (f"  {'(c) tx/s':>14}" if ex.get("writers") else ""),
             ]
    fmt = lambda x: f"{x:5.2f}x" if x else "    - "  # noqa: E731
    for name, it in ex["variants"].items():
        b, c = it["block_ratio"], it.get("client_ratio") or {op: None for op in OPS}
        us = {op: (it["block_cpu"][op] - ncpu[op]) / rows * 1e6 if it["block_cpu"][op] is not None else 0
              for op in OPS}
        lines.append(f"{name:16} " + " ".join(f"{fmt(b[op])} {us[op]:5.0f}us" for op in OPS) + "   "
                     + " ".join(f"{fmt(c[op]):>6}" for op in OPS)
                     + (f"  {it['tps']:6.0f} {fmt(it.get('tps_slowdown'))}" if it.get("tps") else "")
                     + f"  {it['description']}")
    lines.append(f"{'no trigger':16} " + (" ".join(f"{nb[op]:6.3f}s {ncpu[op] / rows * 1e6:4.0f}us" for op in OPS)
                                          if nb["insert"] else " " * 44)
                 + "   " + (" ".join(f"{nc[op]:5.2f}s" for op in OPS) if nc["insert"] else "")
                 + (f"  {ex['none']['tps']:6.0f}" if ex["none"].get("tps") else ""))
    lines.append("(no trigger row: wall time and CPU per row)")
    return "\n".join(lines)


# --------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=3000, help="(a) rows per operation from the client [3000]")
    ap.add_argument("--commit-every", type=int, default=100, help="(a) rows per transaction [100]")
    ap.add_argument("--block-rows", type=int, default=10000, help="(b) rows per EXECUTE BLOCK loop [10000]")
    ap.add_argument("--writers", type=int, default=8, help="(c) concurrent writers [8]")
    ap.add_argument("--seconds", type=float, default=3.0, help="(c) seconds each writer runs [3]")
    ap.add_argument("--workers", choices=("auto", "process", "thread"), default="auto",
                    help="(c) writers as processes or threads; auto = processes (embedded: with a private "
                         "copy of the runtime set to ServerMode=SuperClassic)")
    ap.add_argument("--isolation", choices=("snapshot", "read-committed"), default="snapshot",
                    help="(c) isolation of the writers' transactions (WAIT) [snapshot, the driver's default]")
    ap.add_argument("--forced-writes", choices=("default", "on", "off"), default="default",
                    help="forced writes of the created databases [default: the engine's, on]")
    ap.add_argument("--repeat", type=int, default=3, help="timed repetitions (median) after one warm-up [3]")
    ap.add_argument("--variants", default="none,fbaudit,article",
                    help="comma list of none,fbaudit,article,no-ddl [none,fbaudit,article]")
    ap.add_argument("--only", default="a,b,c", help="workloads to run: comma list of a,b,c [a,b,c]")
    ap.add_argument("--explore", action="store_true",
                    help="instead of a/b/c: time variants of the generated trigger to see where its cost is")
    ap.add_argument("--explore-only", help="comma list of --explore variant names")
    ap.add_argument("--explore-rows", type=int, default=1000, help="--explore: (a) rows [1000]")
    ap.add_argument("--explore-block-rows", type=int, default=5000, help="--explore: (b) rows [5000]")
    ap.add_argument("--explore-parts", default="b,a",
                    help="--explore: workloads per variant, comma list of a,b,c [b,a]")
    benchlib.add_common_args(ap, dir_help="embedded target: folder for database files [a temporary folder]")
    args = ap.parse_args(argv)

    variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    for v in variants:
        if v not in VARIANTS:
            ap.error(f"unknown variant {v!r}")
    if "none" not in variants:
        variants.insert(0, "none")
    only = {x.strip() for x in args.only.split(",")}
    mode = args.workers if args.workers != "auto" else "process"

    started = time.perf_counter()
    snapdir = benchlib.snapshot_from_args(args)
    target = Target(args)
    global CPU
    CPU = CpuClock(target)
    result: dict = {}
    try:
        log_dsn = target.create("log")
        con = target.connect(log_dsn)
        version, page_size, fw, buffers = engine_version(con)
        con.close()
        meta = {
            "date": _dt.datetime.now().astimezone().isoformat(timespec="seconds"),
            "target": args.target,
            "target_desc": (f"server {args.host} over TCP" if target.is_server else "embedded"),
            "engine_version": version, "page_size": page_size, "forced_writes": bool(fw), "page_buffers": buffers,
            "client_version": target.runtime.embedded_version, "machine": machine_info(),
            "fbaudit_revision": fbaudit_revision(), "variants": variants, "repeat": args.repeat,
            "commit_every": args.commit_every, "value_length": VALUE_LEN,
            "command": " ".join([Path(sys.executable).name, *sys.argv]),
        }
        result["meta"] = meta
        say(f"Firebird {version} ({meta['target_desc']}), {meta['machine']['nproc']} x {meta['machine']['cpu']}, "
            f"load {os.getloadavg()[0]:.2f}; databases in "
            f"{args.server_dir if target.is_server else target.workdir}")
        if args.explore:
            run_explore(target, args, log_dsn, result)
        else:
            if "a" in only:
                say(f"(a) client side: {args.rows} rows, one per statement, commit every {args.commit_every}")
                result["client"] = measure_sequential(target, "client", variants, log_dsn, n=args.rows,
                                                      warm_n=min(args.rows, 300), repeat=args.repeat,
                                                      commit_every=args.commit_every)
            if "b" in only:
                say(f"(b) server side: EXECUTE BLOCK loops of {args.block_rows} rows")
                result["block"] = measure_sequential(target, "block", variants, log_dsn, n=args.block_rows,
                                                     warm_n=min(args.block_rows, 1000), repeat=args.repeat,
                                                     commit_every=args.commit_every)
            if "c" in only:
                say(f"(c) {args.writers} concurrent writers ({'processes' if mode == 'process' else 'threads'}), "
                    f"{args.seconds:g} s each run")
                result["concurrent"] = measure_concurrency(target, variants, log_dsn, writers=args.writers,
                                                           seconds=args.seconds, repeat=args.repeat, mode=mode,
                                                           isolation=args.isolation)
        meta["machine"]["loadavg_end"] = os.getloadavg()
        meta["runtime_seconds"] = round(time.perf_counter() - started, 1)
    finally:
        target.cleanup()
        if snapdir and not args.keep:
            shutil.rmtree(snapdir, ignore_errors=True)
    print()
    if args.explore:
        m = result["meta"]
        print(f"fbaudit capture benchmark --explore — {m['date']}; Firebird {m['engine_version']} {m['target_desc']}; "
              f"{m['machine']['nproc']} x {m['machine']['cpu']}; load "
              f"{' '.join(f'{x:.2f}' for x in m['machine']['loadavg_start'])} -> "
              f"{' '.join(f'{x:.2f}' for x in m['machine']['loadavg_end'])}")
        print(render_explore(result["explore"]))
    else:
        print(render(result))
    print(f"total runtime {result['meta']['runtime_seconds']:.0f} s")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2, default=str), encoding="utf-8")
        say(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
