#!/usr/bin/env python3
"""Speed of fbaudit's transfer (fbaudit.transfer) on a real database.

Table BENCH: an INTEGER primary key and 9 more columns (text, numeric,
integer, date, timestamp), audited with `fbaudit init` + `fbaudit enable
BENCH`: an insert logs 10 fields. Every part uses fresh databases (a source
and a log database), created for it and dropped after it.

Three parts (--only):

  throughput  a backlog of --packets inserts (10 field rows each) waits in the
              source; `transfer(config, batch=N)` runs once per batch size of
              --batches (the first on --packets, the others on --other-packets,
              each on its own fresh backlog): field rows/s, packets/s and where
              the time goes (read packets / PACKETS_INS / BLOB_INS / log commit
              / mark done ...)
  lag         `transfer(config, follow=True, stop=...)` runs in a thread; a
              writer commits one UPDATE at a time at --rate per second for
              --seconds; a poller on the log database sees each packet arrive
              (SOURCES.LAST_PACKET_ID). Lag = time from the writer's commit to
              the packet being visible in the log database: p50/p95/p99/max.
              The follower is stopped with its stop event at the end.
  fastcheck   --processed packets already transferred (up to SHIPPED_TO) in the
              source, nothing waiting: SourceTransfer.anything_new() timed
              --checks times in tier 1 (sequence = SEEN_ID) and tier 2 (index
              lookup: the sequence moved while a transaction is open on another
              connection, also with --stale packets shipped meanwhile), the
              whole in-process `transfer(config)` run, and the `fbaudit
              transfer` command with its process start

How the split of the time is measured: the script wraps SourceTransfer's
methods and Database.query/commit at run time (fbaudit's code is not
changed) and adds up each step's own wall time (nested steps excluded).

The --explore experiment that led to BLOB_INS fetching short values as
VARCHAR and to marking by id runs (docs/performance.md) is in this script as
of commit fc75533; both are fbaudit's own code now.

Usage (see docs/performance.md):
  python scripts/bench_transfer.py --json transfer-fb5.json
  python scripts/bench_transfer.py --target server --json transfer-fb3-server.json
  python scripts/bench_transfer.py --quick
"""
from __future__ import annotations

import argparse
import datetime as _dt
import functools
import json
import os
import shutil
import statistics
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import benchlib       # scripts/benchlib.py; like this script, it imports fbaudit only inside functions
from benchlib import PREFIX, fbaudit_revision, machine_info, say, server_pids

PARTS = ("throughput", "lag", "fastcheck")
BENCH_DDL = ("CREATE TABLE BENCH (ID INTEGER NOT NULL PRIMARY KEY, NAME VARCHAR(60), CITY VARCHAR(40), "
             "STREET VARCHAR(80), EMAIL VARCHAR(80), PHONE VARCHAR(20), AMOUNT NUMERIC(12,2), QTY INTEGER, "
             "CREATED DATE, UPDATED TIMESTAMP)")
LOGGED_FIELDS = 10      # an insert into BENCH logs every column


def packet_tables(con) -> list[str]:
    """The source's packet tables: LOG_PACKET, and LOG_PACKET_1 / LOG_PACKET_2 where they exist (the
    audit triggers write those since packets rotate; a --snapshot from before has none)."""
    cur = con.cursor()
    cur.execute("SELECT TRIM(RDB$RELATION_NAME) FROM RDB$RELATIONS WHERE RDB$RELATION_NAME IN (?, ?)",
                (f"{PREFIX}LOG_PACKET_1", f"{PREFIX}LOG_PACKET_2"))
    extra = sorted(r[0] for r in cur.fetchall())
    cur.close()
    return [f"{PREFIX}LOG_PACKET"] + extra


def all_packets(con) -> str:
    """Every packet of the source, as a table expression (ID, PAYLOAD)."""
    return "(" + " UNION ALL ".join(f"SELECT ID, PAYLOAD FROM {t}" for t in packet_tables(con)) + ")"


def count_waiting(con) -> int:
    """Packets above SHIPPED_TO (what the benchmark's backlog is)."""
    return scalar(con, f"SELECT COUNT(*) FROM {all_packets(con)} p WHERE ID > (SELECT COALESCE(SHIPPED_TO, -1) "
                       f"FROM {PREFIX}LOG_PACKET_FLAG)")


def staged_fields(con) -> int:
    """Field rows waiting in the source: the packed fields of its packets (capture 2.0) and the rows of
    LOG_1 (packets written by an older trigger, e.g. a --snapshot before capture 2.0)."""
    cur = con.cursor()
    cur.execute(f"SELECT RDB$FIELD_NAME FROM RDB$RELATION_FIELDS WHERE RDB$RELATION_NAME = '{PREFIX}LOG_PACKET' "
                "AND RDB$FIELD_NAME = 'PAYLOAD'")
    packed = 0
    if cur.fetchall():
        from fbaudit.forms import unpack
        cur.stream_blob_threshold = -1
        cur.execute(f"SELECT PAYLOAD FROM {all_packets(con)} p WHERE PAYLOAD IS NOT NULL")
        packed = sum(len(unpack(r[0])) for r in cur.fetchall())
    cur.close()
    return packed + scalar(con, f"SELECT COUNT(*) FROM {PREFIX}LOG_1")


def fill_sql(first: int, n: int) -> str:
    """One EXECUTE BLOCK inserting rows first .. first+n-1 into BENCH (each a packet of 10 fields)."""
    return (f"EXECUTE BLOCK AS DECLARE i INTEGER = {first - 1}; BEGIN WHILE (i < {first - 1 + n}) DO BEGIN "
            "i = i + 1; INSERT INTO BENCH (ID, NAME, CITY, STREET, EMAIL, PHONE, AMOUNT, QTY, CREATED, UPDATED) "
            "VALUES (:i, 'Customer name ' || :i, 'City ' || MOD(:i, 100), 'Street ' || :i || ' building B, floor 3', "
            "'customer' || :i || '@example.com', '+49 30 ' || :i, :i * 1.25, MOD(:i, 1000), "
            "DATE '2026-01-01' + MOD(:i, 300), TIMESTAMP '2026-01-01 10:00:00' + :i / 1000.0); END END")


def processed_sql(n: int) -> str:
    """One EXECUTE BLOCK inserting ``n`` packets, ids from the packet sequence, straight into
    LOG_PACKET (``SHIPPED_SQL`` then records them as transferred)."""
    p = PREFIX
    return (f"EXECUTE BLOCK AS DECLARE i INTEGER = 0; BEGIN WHILE (i < {n}) DO BEGIN i = i + 1; "
            f"INSERT INTO {p}LOG_PACKET (ID, CREATED_AT, OPERATION, NUM_TABLE, DATA_TABLE, RECORD_KEY, AUTHOR, "
            f"DB_USER, TRANSACTION_ID) VALUES (GEN_ID({p}LOG_PACKET_ID, 1), "
            f"LOCALTIMESTAMP, 2, 1, 1, :i, 'bench', CURRENT_USER, CURRENT_TRANSACTION); "
            "END END")


# Every packet so far recorded as in the log database (what a transfer records).
SHIPPED_SQL = f"UPDATE {PREFIX}LOG_PACKET_FLAG SET SHIPPED_TO = GEN_ID({PREFIX}LOG_PACKET_ID, 0)"


# --------------------------------------------------------------------------
# Where the databases live
# --------------------------------------------------------------------------
class Target(benchlib.Target):
    """benchlib.Target that also writes a Config as a file for the `fbaudit` command."""

    kind = "transfer"

    def write_config(self, cfg) -> Path:
        """The same Config as a file for the `fbaudit` command (JSON is YAML)."""
        def db(spec) -> dict:
            d = {"database": spec.database, "user": spec.user}
            if spec.password_file:
                d["password_file"] = str(spec.password_file)
            return d
        src = cfg.sources[0]
        data = {"prefix": cfg.prefix, "log": db(cfg.log),
                "sources": [{"name": src.name, **db(src), "registry": str(src.registry)}]}
        cfg.path.write_text(json.dumps(data, indent=2), encoding="utf-8")
        return cfg.path


class CpuClock:
    """CPU seconds of this process (embedded: the engine runs in it) and, for a
    local server, of the server's processes (which also count any other
    client's work on that server)."""

    def __init__(self, target: Target):
        self.pids = server_pids() if target.is_server and target.args.host in ("localhost", "127.0.0.1") else []
        self.tick = os.sysconf("SC_CLK_TCK")

    def server(self) -> float | None:
        if not self.pids:
            return None
        total = 0
        for pid in self.pids:
            try:
                f = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
                total += int(f[11]) + int(f[12])
            except (OSError, IndexError, ValueError):
                pass
        return total / self.tick

    def sample(self) -> tuple[float, float | None]:
        return time.process_time(), self.server()

    @staticmethod
    def since(start: tuple[float, float | None], end: tuple[float, float | None]) -> dict:
        return {"cpu_self": round(end[0] - start[0], 3),
                "cpu_server": round(end[1] - start[1], 3) if start[1] is not None else None}


CPU: CpuClock | None = None


def engine_version(con) -> tuple:
    cur = con.cursor()
    cur.execute("SELECT RDB$GET_CONTEXT('SYSTEM', 'ENGINE_VERSION'), MON$PAGE_SIZE, MON$FORCED_WRITES, "
                "MON$PAGE_BUFFERS FROM MON$DATABASE")
    row = cur.fetchone()
    cur.close()
    con.commit()
    return row


def scalar(con, sql: str, params: tuple = ()):
    cur = con.cursor()
    cur.execute(sql, params)
    row = cur.fetchone()
    cur.close()
    con.commit()
    return row[0] if row else None


def prepare_pair(target: Target, tag: str, *, preload: int = 0):
    """A fresh source (BENCH with ``preload`` rows inserted before the trigger
    exists) and a fresh log database, `fbaudit init` + `fbaudit enable BENCH`.
    Returns (config, source dsn, log dsn)."""
    from fbaudit import capture
    dsn = target.create(f"{tag}_src")
    log_dsn = target.create(f"{tag}_log")
    con = target.connect(dsn)
    con.execute_immediate(BENCH_DDL)
    con.commit()
    if preload:
        con.execute_immediate(fill_sql(1, preload))
        con.commit()
    con.close()
    cfg = target.config(dsn, log_dsn, tag)
    capture.init(cfg)
    capture.enable(cfg, "BENCH")
    return cfg, dsn, log_dsn


def drop_pair(target: Target, *dsns: str) -> None:
    for d in dsns:
        target.drop(d)


# --------------------------------------------------------------------------
# Time per step of the transfer (fbaudit's code wrapped at run time)
# --------------------------------------------------------------------------
class Phases:
    """Exclusive wall time per step: a step's time excludes the steps nested in it."""

    STEPS = ("connect", "fast check", "dictionary", "read packets", "PACKETS_INS", "BLOB_INS", "load (rest)",
             "log commit", "mark done", "mark done commit", "other")

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.local = threading.local()
        self.loaded: list[tuple[int, float]] = []      # (highest packet id of a batch, time its log commit returned)
        self.reset()

    def reset(self) -> None:
        with self.lock:
            self.totals: Counter = Counter()
            self.counts: Counter = Counter()
            self.loaded = []

    def _stack(self) -> list:
        st = getattr(self.local, "stack", None)
        if st is None:
            st = self.local.stack = []
        return st

    def current(self) -> str | None:
        st = self._stack()
        return st[-1][0] if st else None

    def push(self, name: str) -> None:
        st, now = self._stack(), time.perf_counter()
        if st:
            with self.lock:
                self.totals[st[-1][0]] += now - st[-1][1]
        st.append([name, now])

    def pop(self) -> None:
        st, now = self._stack(), time.perf_counter()
        name, t = st.pop()
        with self.lock:
            self.totals[name] += now - t
            self.counts[name] += 1
        if st:
            st[-1][1] = now

    def snapshot(self) -> dict:
        with self.lock:
            return {"seconds": {k: round(v, 4) for k, v in self.totals.items()}, "calls": dict(self.counts)}

    def install(self, cls=None) -> None:
        """Wrap fbaudit's transfer steps (once per class): SourceTransfer by default."""
        from fbaudit import db as dbmod
        from fbaudit import transfer as tr
        cls = cls or tr.SourceTransfer
        if cls.__dict__.get("_bench_wrapped"):
            return
        phases = self

        def wrap(owner, meth: str, name) -> None:
            orig = owner.__dict__.get(meth)
            if orig is None:
                if owner is tr.SourceTransfer or owner is dbmod.Database:
                    say(f"warning: {owner.__name__}.{meth} not found; its time is counted in its caller")
                return

            @functools.wraps(orig)
            def wrapper(obj, *a, **kw):
                step = name(obj, a) if callable(name) else name
                if step is None:
                    return orig(obj, *a, **kw)
                phases.push(step)
                try:
                    out = orig(obj, *a, **kw)
                finally:
                    phases.pop()
                if meth == "load":      # the log transaction of this batch has committed
                    with phases.lock:
                        phases.loaded.append((a[0][-1][1], time.perf_counter()))
                return out
            setattr(owner, meth, wrapper)

        def query_step(_db, a):
            sql = a[0] if a else ""
            if "x.ID > ? AND x.ID <= ?" in sql:
                return "read packets"
            if "PACKETS_INS" in sql:
                return "PACKETS_INS"
            if "BLOB_INS" in sql:
                return "BLOB_INS"
            if "FROM RDB$DATABASE WHERE EXISTS" in sql:
                return "tier 2 lookup"
            return None

        def commit_step(_db, _a):
            cur = phases.current()
            return {"load (rest)": "log commit", "record shipped": "record shipped commit"}.get(cur)

        wrap(cls, "open", "connect")
        wrap(cls, "close", "connect")
        wrap(cls, "anything_new", "fast check")
        wrap(cls, "run_pass", "other")
        wrap(cls, "sync_dictionary", "dictionary")
        wrap(cls, "load", "load (rest)")
        wrap(cls, "record", "record shipped")
        if not dbmod.Database.__dict__.get("_bench_wrapped"):
            wrap(dbmod.Database, "query", query_step)
            wrap(dbmod.Database, "commit", commit_step)
            dbmod.Database._bench_wrapped = True
        cls._bench_wrapped = True


PHASES = Phases()


def pct(xs: list[float], q: float) -> float:
    """Percentile (nearest rank) of a non-empty list."""
    s = sorted(xs)
    k = max(0, min(len(s) - 1, int(round(q / 100 * len(s) + 0.5)) - 1))
    return s[k]


def dist(xs: list[float], scale: float = 1000.0) -> dict:
    """p50/p95/p99/max/mean in milliseconds (``scale``) of times in seconds."""
    if not xs:
        return {"n": 0}
    return {"n": len(xs), "p50": pct(xs, 50) * scale, "p95": pct(xs, 95) * scale, "p99": pct(xs, 99) * scale,
            "max": max(xs) * scale, "mean": statistics.fmean(xs) * scale, "min": min(xs) * scale}


# --------------------------------------------------------------------------
# 1. Throughput
# --------------------------------------------------------------------------
def log_counts(target: Target, log_dsn: str) -> tuple[int, int]:
    con = target.connect(log_dsn)
    out = (scalar(con, f"SELECT COUNT(*) FROM {PREFIX}LOG_PACKET"), scalar(con, f"SELECT COUNT(*) FROM {PREFIX}LOG"))
    con.close()
    return out


def throughput_run(target: Target, batch: int, packets: int, tag: str) -> dict:
    """A fresh backlog of ``packets`` inserts, then one timed transfer(config, batch=batch)."""
    from fbaudit import transfer as tr
    cfg, dsn, log_dsn = prepare_pair(target, tag)
    con = target.connect(dsn)
    t0 = time.perf_counter()
    step = 20000
    for first in range(1, packets + 1, step):
        con.execute_immediate(fill_sql(first, min(step, packets - first + 1)))
        con.commit()
    fill = time.perf_counter() - t0
    waiting = count_waiting(con)
    fields = staged_fields(con)
    con.close()
    say(f"  batch {batch}: backlog of {waiting} packets, {fields} field rows (filled in {fill:.1f} s)")
    PHASES.reset()
    c0, t0 = CPU.sample(), time.perf_counter()
    res = tr.transfer(cfg, batch=batch)
    wall = time.perf_counter() - t0
    cpu = CpuClock.since(c0, CPU.sample())
    ph = PHASES.snapshot()
    src = res.data["sources"][0]
    if src.get("error"):
        raise RuntimeError(f"transfer failed: {src['error']}")
    lp, lf = log_counts(target, log_dsn)
    con = target.connect(dsn)
    left = count_waiting(con)
    con.close()
    ok = lp == waiting and lf == fields and left == 0 and res.data["field_rows"] == fields
    run = {"batch": batch, "packets": res.data["packets"], "field_rows": res.data["field_rows"],
           "batches": src["batches"], "seconds": wall, "fill_seconds": fill,
           "packets_per_s": res.data["packets"] / wall, "field_rows_per_s": res.data["field_rows"] / wall,
           "phases": ph, **cpu, "log_packets": lp, "log_field_rows": lf, "left_in_source": left, "checked": ok}
    say(f"  batch {batch}: {run['packets']} packets, {run['field_rows']} field rows in {wall:.2f} s = "
        f"{run['field_rows_per_s']:.0f} field rows/s, {run['packets_per_s']:.0f} packets/s"
        + ("" if ok else f"  CHECK FAILED: log {lp} packets / {lf} rows, {left} left in the source"))
    say("    " + ", ".join(f"{s} {ph['seconds'].get(s, 0):.2f}s" for s in Phases.STEPS if ph["seconds"].get(s)))
    drop_pair(target, dsn, log_dsn)
    return run


def run_throughput(target: Target, args: argparse.Namespace) -> dict:
    batches = [int(b) for b in args.batches.split(",") if b.strip()]
    runs = [throughput_run(target, batch, args.packets if k == 0 else args.other_packets, f"tp{k}_{batch}")
            for k, batch in enumerate(batches)]
    return {"packets": args.packets, "other_packets": args.other_packets, "fields_per_packet": LOGGED_FIELDS,
            "runs": runs}


# --------------------------------------------------------------------------
# 2. Lag in --follow mode
# --------------------------------------------------------------------------
def run_lag(target: Target, args: argparse.Namespace) -> dict:
    from fbaudit.transfer import transfer
    rows = 100
    cfg, dsn, log_dsn = prepare_pair(target, "lag", preload=rows)
    stop = threading.Event()
    started = threading.Event()
    result: dict = {}

    def follower() -> None:
        try:
            result["res"] = transfer(cfg, follow=True, stop=stop, poll=args.follow_poll, on_start=started.set)
        except Exception as exc:   # reported, the benchmark goes on
            result["exc"] = f"{type(exc).__name__}: {exc}"
            started.set()

    # The poller: a separate connection to the log database.
    seen: list[tuple[float, int]] = []       # (time, LAST_PACKET_ID) whenever it changed
    poll_stop = threading.Event()
    poll_count = [0]

    def poller() -> None:
        con = target.connect(log_dsn)
        cur = con.cursor()
        st = cur.prepare(f"SELECT LAST_PACKET_ID FROM {PREFIX}SOURCES WHERE NAME = 'main'")
        last = None
        while not poll_stop.is_set():
            cur.execute(st)
            v = cur.fetchone()[0]
            con.commit()
            poll_count[0] += 1
            if v != last:
                seen.append((time.perf_counter(), v))
                last = v
            time.sleep(args.poll_ms / 1000)
        st.free()
        cur.close()
        con.close()

    PHASES.reset()
    th = threading.Thread(target=follower, name="bench-follower", daemon=True)
    th.start()
    started.wait(60)
    time.sleep(1.0)                            # first pass (dictionary) done, follower waiting for events
    pt = threading.Thread(target=poller, name="bench-poller", daemon=True)
    pt.start()
    time.sleep(0.2)
    # The writer: one UPDATE (2 fields) per transaction at a steady rate.
    con = target.connect(dsn)
    cur = con.cursor()
    upd = cur.prepare("UPDATE BENCH SET QTY = QTY + 1, UPDATED = LOCALTIMESTAMP WHERE ID = ?")
    gen = cur.prepare(f"SELECT GEN_ID({PREFIX}LOG_PACKET_ID, 0) FROM RDB$DATABASE")
    n = int(args.rate * args.seconds)
    commits: list[tuple[int, float]] = []
    late = 0
    c0 = CPU.sample()
    t0 = time.perf_counter()
    for k in range(n):
        due = t0 + k / args.rate
        delay = due - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        elif delay < -0.05:
            late += 1
        cur.execute(upd, (k % rows + 1,))
        cur.execute(gen)
        pid = cur.fetchone()[0]              # one writer: the id its trigger just took
        con.commit()
        commits.append((pid, time.perf_counter()))
    writer_seconds = time.perf_counter() - t0
    upd.free()
    gen.free()
    cur.close()
    con.close()
    last_pid = commits[-1][0] if commits else 0
    deadline = time.perf_counter() + args.lag_timeout
    while time.perf_counter() < deadline and not (seen and (seen[-1][1] or 0) >= last_pid):
        time.sleep(0.01)
    all_seen = bool(seen) and (seen[-1][1] or 0) >= last_pid
    cpu = CpuClock.since(c0, CPU.sample())
    t_stop = time.perf_counter()
    stop.set()
    th.join(60)
    stop_seconds = time.perf_counter() - t_stop
    poll_stop.set()
    pt.join(10)
    ph = PHASES.snapshot()
    loaded = list(PHASES.loaded)

    def first_at(events: list[tuple[float, int]], pid: int) -> float | None:
        for t, v in events:
            if v is not None and v >= pid:
                return t
        return None

    lags, lags_commit, missing = [], [], []
    for pid, tc in commits:
        tv = first_at(seen, pid)
        if tv is None:
            missing.append(pid)
            continue
        lags.append(tv - tc)
        tl = first_at([(t, v) for v, t in loaded], pid)
        if tl is not None:
            lags_commit.append(tl - tc)
    res = result.get("res")
    src = res.data["sources"][0] if res else {}
    out = {"rate": args.rate, "seconds": args.seconds, "changes": n, "writer_seconds": writer_seconds,
           "writer_late": late, "poll_ms": args.poll_ms, "polls": poll_count[0], "follow_poll": args.follow_poll,
           "lag_ms": dist(lags), "lag_to_log_commit_ms": dist(lags_commit), "missing": missing,
           "all_visible": all_seen, "stopped_cleanly": not th.is_alive() and "exc" not in result
           and not src.get("error"), "stop_seconds": stop_seconds, "follower_error": result.get("exc") or
           src.get("error"), "follower_packets": src.get("packets"), "follower_passes": src.get("passes"),
           "follower_batches": src.get("batches"), "phases": ph, **cpu,
           "lags_ms": [round(x * 1000, 2) for x in lags]}
    d = out["lag_ms"]
    say(f"  {n} changes at {args.rate:g}/s: lag p50 {d.get('p50', 0):.0f} ms, p95 {d.get('p95', 0):.0f} ms, "
        f"p99 {d.get('p99', 0):.0f} ms, max {d.get('max', 0):.0f} ms"
        + (f"; {len(missing)} NOT in the log {args.lag_timeout:g} s after the writer stopped (ids "
           f"{', '.join(map(str, missing[:10]))})" if missing else "")
        + f"; follower stopped in {stop_seconds:.2f} s" + ("" if out["stopped_cleanly"] else " NOT CLEANLY"))
    drop_pair(target, dsn, log_dsn)
    return out


# --------------------------------------------------------------------------
# 3. The fast check
# --------------------------------------------------------------------------
def time_checks(job, n: int) -> tuple[list[float], Counter, set]:
    """Time anything_new() n times. Returns the times, the tiers that answered
    (SourceTransfer.last_tier, else: tier 2 = the index lookup ran) and the results."""
    times, results, tiers = [], set(), Counter()
    for _ in range(n):
        before = PHASES.snapshot()["calls"].get("tier 2 lookup", 0)
        t0 = time.perf_counter()
        results.add(job.anything_new())
        times.append(time.perf_counter() - t0)
        tier = getattr(job, "last_tier", None)
        if tier is None:
            tier = 2 if PHASES.snapshot()["calls"].get("tier 2 lookup", 0) > before else 1
        tiers[tier] += 1
    return times, tiers, results


def time_runs(cfg, n: int) -> tuple[list[float], list[dict], dict]:
    """Time n whole in-process runs of transfer(config): connect both databases,
    fast check, close. Also returns the time per step over all runs."""
    from fbaudit.transfer import transfer
    times, srcs = [], []
    PHASES.reset()
    for _ in range(n):
        t0 = time.perf_counter()
        res = transfer(cfg)
        times.append(time.perf_counter() - t0)
        srcs.append(res.data["sources"][0])
    return times, srcs, PHASES.snapshot()


def run_fastcheck(target: Target, args: argparse.Namespace) -> dict:
    from fbaudit.transfer import SourceTransfer, transfer
    cfg, dsn, log_dsn = prepare_pair(target, "fast")
    p = PREFIX
    con = target.connect(dsn)
    t0 = time.perf_counter()
    step = 250000
    for first in range(0, args.processed, step):
        con.execute_immediate(processed_sql(min(step, args.processed - first)))
        con.commit()
    con.execute_immediate(SHIPPED_SQL)
    con.commit()
    fill = time.perf_counter() - t0
    total = scalar(con, f"SELECT COUNT(*) FROM {all_packets(con)} p") - count_waiting(con)
    con.close()
    say(f"  {total} processed packets in the source (inserted in {fill:.1f} s)")
    # One real run settles SEEN_ID (the sequence moved: tier 2 finds nothing and stores it).
    first = transfer(cfg).data["sources"][0]
    con = target.connect(dsn)
    gen = scalar(con, f"SELECT GEN_ID({p}LOG_PACKET_ID, 0) FROM RDB$DATABASE")
    seen_id = scalar(con, f"SELECT SEEN_ID FROM {p}LOG_PACKET_FLAG")
    con.close()
    say(f"  first run: {first['packets']} packets, passes {first['passes']}; sequence {gen}, SEEN_ID {seen_id}")
    out: dict = {"processed": total, "fill_seconds": fill, "checks": args.checks, "runs": args.runs,
                 "sequence": gen, "seen_id": seen_id}

    def measure(label: str) -> dict:
        job = SourceTransfer(cfg, cfg.sources[0])
        job.open()
        try:
            time_checks(job, 5)                       # warm-up
            times, tiers, results = time_checks(job, args.checks)
        finally:
            job.close()
        tier = next(iter(tiers)) if len(tiers) == 1 else 0
        runs, srcs, ph = time_runs(cfg, args.runs)
        r = {"check_ms": dist(times), "tier": tier, "tiers": dict(tiers), "results": sorted(results),
             "run_ms": dist(runs), "run_nothing_new": all(s.get("nothing_new") for s in srcs),
             "run_fast_check_ms": dist([s["fast_check_ms"] / 1000 for s in srcs if s.get("fast_check_ms")]),
             "run_phases_ms": {k: round(v / len(runs) * 1000, 2) for k, v in ph["seconds"].items()}}
        say(f"  {label}: anything_new() p50 {r['check_ms']['p50']:.2f} ms, p99 {r['check_ms']['p99']:.2f} ms "
            f"(tier {tier if tier else dict(tiers)}, returned {sorted(results)}); whole transfer() run p50 "
            f"{r['run_ms']['p50']:.1f} ms, p99 {r['run_ms']['p99']:.1f} ms; per run: "
            + ", ".join(f"{k} {v:.1f} ms" for k, v in r["run_phases_ms"].items())
            + ("" if r["run_nothing_new"] else " (a run did NOT report nothing new)"))
        return r

    out["tier1"] = measure("tier 1")
    # The `fbaudit transfer` command, process start included (this process holds no connection now).
    exe = Path(sys.executable).parent / "fbaudit"
    if exe.exists() and args.cli_runs:
        path = target.write_config(cfg)
        times, lines = [], []
        for _ in range(args.cli_runs):
            t0 = time.perf_counter()
            env = dict(os.environ)
            if benchlib.SNAPSHOT:      # the command imports the same fbaudit as this process
                env["PYTHONPATH"] = os.pathsep.join(x for x in (str(benchlib.SNAPSHOT[1]), env.get("PYTHONPATH")) if x)
            proc = subprocess.run([str(exe), "--config", str(path), "--json", "transfer"], capture_output=True,
                                  text=True, timeout=120, env=env)
            times.append(time.perf_counter() - t0)
            lines.append(proc.stdout.strip()[-300:] if proc.returncode == 0 else
                         f"exit {proc.returncode}: {proc.stderr.strip()[-300:]}")
        nothing = all('"nothing_new": true' in s for s in lines)
        out["cli_ms"] = dist(times)
        out["cli_nothing_new"] = nothing
        out["cli_output"] = lines[-1]
        say(f"  `fbaudit transfer` with process start: p50 {out['cli_ms']['p50']:.0f} ms, max "
            f"{out['cli_ms']['max']:.0f} ms" + ("" if nothing else f" (unexpected output: {lines[-1]})"))
    # Tier 2: the sequence moved (here: SEEN_ID reset, as `fbaudit retry` does)
    # while an application transaction is open on another connection, so
    # tier 2 cannot settle SEEN_ID and every check does the index lookup.
    holder = target.connect(dsn)
    holder.begin()
    hcur = holder.cursor()
    hcur.execute("SELECT COUNT(*) FROM BENCH")
    hcur.fetchall()
    con = target.connect(dsn)
    con.execute_immediate(f"UPDATE {p}LOG_PACKET_FLAG SET SEEN_ID = -1")
    con.commit()
    con.close()
    out["tier2"] = measure("tier 2 (a transaction open on another connection)")
    # Tier 2 after --stale packets arrived and were shipped by a real transfer while that
    # transaction stays open. (Before the transfer kept its own record, it marked each packet
    # done, and the (STATE, ID) index kept their STATE = 0 entries until garbage collection,
    # which every check walked: 30-70 ms after 20,000. Now nothing in the packets changes.)
    if args.stale:
        con = target.connect(dsn)
        con.execute_immediate(processed_sql(args.stale))
        con.commit()
        con.close()
        transfer(cfg)
        out["stale"] = args.stale
        out["tier2_stale"] = measure(f"tier 2 with {args.stale} packets shipped while it is open")
    hcur.close()
    holder.commit()
    holder.close()
    # After that transaction ends: the first checks (garbage collection of the
    # stale entries, SEEN_ID settled), then tier 1 again.
    job = SourceTransfer(cfg, cfg.sources[0])
    job.open()
    try:
        times, tiers, _ = time_checks(job, 3)
    finally:
        job.close()
    out["after_close_ms"] = [round(t * 1000, 2) for t in times]
    out["after_close_tiers"] = dict(tiers)
    say(f"  after that transaction ended: first checks {', '.join(f'{t * 1000:.1f}' for t in times)} ms "
        f"(tiers {dict(tiers)})")
    drop_pair(target, dsn, log_dsn)
    return out


# --------------------------------------------------------------------------
# Report
# --------------------------------------------------------------------------
TARGETS = {"field_rows_per_s": 20000, "lag_p99_ms": 1000, "fast_check_ms": 5}


def render(result: dict) -> str:
    m = result["meta"]
    ok = lambda good: "ok" if good else "!!"  # noqa: E731
    lines = [
        *benchlib.report_header(m, "transfer"),
        "",
    ]
    if "throughput" in result:
        r = result["throughput"]
        lines.append(f"1. Throughput: a backlog of packets x {r['fields_per_packet']} fields, one "
                     "transfer(config, batch=N); share of the time per step (own wall time)")
        steps = [s for s in Phases.STEPS if any(run["phases"]["seconds"].get(s) for run in r["runs"])]
        lines.append(f"{'batch':>6} {'packets':>7} {'seconds':>8} {'rows/s':>8} {'pkts/s':>7}  "
                     + " ".join(f"{s:>{max(7, len(s))}}" for s in steps) + "  cpu")
        for run in r["runs"]:
            sec = run["phases"]["seconds"]
            cpu = f"self {run['cpu_self']:.1f}s" + (f", server {run['cpu_server']:.1f}s"
                                                    if run.get("cpu_server") is not None else "")
            lines.append(f"{run['batch']:>6} {run['packets']:>7} {run['seconds']:8.2f} {run['field_rows_per_s']:8.0f} "
                         f"{run['packets_per_s']:7.0f}  "
                         + " ".join(f"{sec.get(s, 0) / run['seconds'] * 100:>{max(7, len(s)) - 1}.0f}%"
                                    for s in steps)
                         + f"  {cpu} {ok(run['field_rows_per_s'] >= TARGETS['field_rows_per_s'])}"
                         + ("" if run["checked"] else " CHECK FAILED"))
        lines.append("")
    if "lag" in result:
        r = result["lag"]
        d, c = r["lag_ms"], r["lag_to_log_commit_ms"]
        lines.append(f"2. Lag, --follow: {r['changes']} single-row changes at {r['rate']:g}/s; commit -> visible in "
                     f"the log database (poller every {r['poll_ms']:g} ms)")
        if d.get("n"):
            lines.append(f"   p50 {d['p50']:.0f} ms, p95 {d['p95']:.0f} ms, p99 {d['p99']:.0f} ms, max {d['max']:.0f} ms "
                         f"{ok(d['p99'] < TARGETS['lag_p99_ms'] and not r['missing'])}")
        if c.get("n"):
            lines.append(f"   (commit -> the transfer's log commit returned: p50 {c['p50']:.0f} ms, p99 {c['p99']:.0f} ms)")
        lines.append(f"   follower: {r['follower_passes']} passes, {r['follower_batches']} batches; stopped "
                     f"{'cleanly' if r['stopped_cleanly'] else 'NOT cleanly'} in {r['stop_seconds']:.2f} s"
                     + (f"; {len(r['missing'])} packet(s) NOT in the log after the writer stopped: "
                        f"{r['missing'][:10]}" if r["missing"] else ""))
        lines.append("")
    if "fastcheck" in result:
        r = result["fastcheck"]
        lines.append(f"3. Fast check, nothing new, {r['processed']} processed packets in the source "
                     f"(anything_new() x {r['checks']}, transfer() x {r['runs']})")
        for key, label in (("tier1", "tier 1 (sequence = SEEN_ID)"),
                           ("tier2", "tier 2 (index lookup; a transaction open elsewhere)"),
                           ("tier2_stale", f"tier 2, {r.get('stale')} packets shipped while it is open")):
            if key not in r:
                continue
            t = r[key]
            lines.append(f"   {label:58} anything_new p50 {t['check_ms']['p50']:6.2f} ms, p99 "
                         f"{t['check_ms']['p99']:6.2f} ms {ok(t['check_ms']['p99'] < TARGETS['fast_check_ms'])}"
                         f" (tier seen: {t['tier'] or t['tiers']}); whole transfer() p50 {t['run_ms']['p50']:.1f} ms, "
                         f"p99 {t['run_ms']['p99']:.1f} ms")
        if "tier1" in r:
            ph = r["tier1"]["run_phases_ms"]
            lines.append("   whole transfer() run, tier 1, per run: " + ", ".join(f"{k} {v:.1f} ms" for k, v in ph.items()))
        if "cli_ms" in r:
            lines.append(f"   `fbaudit transfer` incl. process start: p50 {r['cli_ms']['p50']:.0f} ms, max "
                         f"{r['cli_ms']['max']:.0f} ms")
        if "after_close_ms" in r:
            lines.append(f"   after the open transaction ended: first checks {r['after_close_ms']} ms")
        lines.append("")
    lines.append(f"targets: >= {TARGETS['field_rows_per_s']} field rows/s, lag p99 < {TARGETS['lag_p99_ms']} ms, "
                 f"fast check < {TARGETS['fast_check_ms']} ms (ok / !!)")
    return "\n".join(lines)


# --------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", default=",".join(PARTS), help="parts to run: comma list of throughput,lag,fastcheck")
    ap.add_argument("--quick", action="store_true", help="small sizes for a smoke run (under a minute)")
    ap.add_argument("--packets", type=int, default=20000, help="throughput: packets in the backlog [20000]")
    ap.add_argument("--batches", default="1000,200,5000",
                    help="throughput: batch sizes; the first gets --packets, the others --other-packets [1000,200,5000]")
    ap.add_argument("--other-packets", type=int, default=5000,
                    help="throughput: packets in the backlog for the other batch sizes [5000]")
    ap.add_argument("--rate", type=float, default=20.0, help="lag: committed changes per second [20]")
    ap.add_argument("--seconds", type=float, default=30.0, help="lag: seconds the writer runs [30]")
    ap.add_argument("--poll-ms", type=float, default=5.0, help="lag: poller interval on the log database [5]")
    ap.add_argument("--follow-poll", type=float, default=5.0,
                    help="lag: the follower's --poll (seconds between checks without an event) [5, the CLI's]")
    ap.add_argument("--lag-timeout", type=float, default=15.0,
                    help="lag: seconds to wait for the last packet after the writer stops [15]")
    ap.add_argument("--processed", type=int, default=1000000,
                    help="fastcheck: processed packets in the source [1000000]")
    ap.add_argument("--stale", type=int, default=20000,
                    help="fastcheck: packets marked done while a transaction is open (0: skip) [20000]")
    ap.add_argument("--checks", type=int, default=1000, help="fastcheck: anything_new() calls per tier [1000]")
    ap.add_argument("--runs", type=int, default=30, help="fastcheck: in-process transfer() runs per tier [30]")
    ap.add_argument("--cli-runs", type=int, default=5, help="fastcheck: `fbaudit transfer` processes [5]")
    benchlib.add_common_args(ap, dir_help="folder for database files (embedded) and configs [a temporary folder]")
    args = ap.parse_args(argv)
    only = [x.strip() for x in args.only.split(",") if x.strip()]
    for x in only:
        if x not in PARTS:
            ap.error(f"unknown part {x!r} (choose from {', '.join(PARTS)})")
    if args.quick:
        args.packets = min(args.packets, 2000)
        args.other_packets = min(args.other_packets, 1000)
        args.seconds = min(args.seconds, 5.0)
        args.processed = min(args.processed, 50000)
        args.stale = min(args.stale, 2000)
        args.checks = min(args.checks, 200)
        args.runs = min(args.runs, 5)
        args.cli_runs = min(args.cli_runs, 1)

    started = time.perf_counter()
    snapdir = benchlib.snapshot_from_args(args)
    target = Target(args)
    global CPU
    CPU = CpuClock(target)
    PHASES.install()
    result: dict = {}
    try:
        probe = target.create("probe")
        con = target.connect(probe)
        version, page_size, fw, buffers = engine_version(con)
        con.close()
        target.drop(probe)
        meta = {
            "date": _dt.datetime.now().astimezone().isoformat(timespec="seconds"),
            "target": args.target,
            "target_desc": (f"server {args.host} over TCP" if target.is_server else "embedded"),
            "engine_version": version, "page_size": page_size, "forced_writes": bool(fw), "page_buffers": buffers,
            "client_version": target.runtime.embedded_version, "machine": machine_info(),
            "fbaudit_revision": fbaudit_revision(), "quick": args.quick,
            "embedded_shared": os.environ.get("FBAUDIT_EMBEDDED_SHARED"),
            "fbaudit_path": str(Path(sys.modules["fbaudit"].__file__).parent),
            "command": " ".join([Path(sys.executable).name, *sys.argv]),
        }
        result["meta"] = meta
        say(f"Firebird {version} ({meta['target_desc']}), {meta['machine']['nproc']} x {meta['machine']['cpu']}, "
            f"load {os.getloadavg()[0]:.2f}; databases in "
            f"{args.server_dir if target.is_server else target.workdir}")
        if "throughput" in only:
            say(f"1. throughput: {args.packets} packets x {LOGGED_FIELDS} fields (batch sizes after the first: "
                f"{args.other_packets}), batch sizes {args.batches}")
            result["throughput"] = run_throughput(target, args)
        if "lag" in only:
            say(f"2. lag: --follow, {args.rate:g} changes/s for {args.seconds:g} s")
            result["lag"] = run_lag(target, args)
        if "fastcheck" in only:
            say(f"3. fast check: {args.processed} processed packets, nothing new")
            result["fastcheck"] = run_fastcheck(target, args)
        meta["machine"]["loadavg_end"] = os.getloadavg()
        meta["runtime_seconds"] = round(time.perf_counter() - started, 1)
    finally:
        target.cleanup()
        if snapdir and not args.keep:
            shutil.rmtree(snapdir, ignore_errors=True)
    print()
    print(render(result))
    print(f"total runtime {result['meta']['runtime_seconds']:.0f} s")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2, default=str), encoding="utf-8")
        say(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
