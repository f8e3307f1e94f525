"""Rotation under live load (issue 4, "Must show"): 8 writer connections that stay
connected for the whole test, as ERP clients do, a transfer loop, 30 rotations on a
simulated clock, and one SNAPSHOT transaction opened before a switch that stays open
across two rotation runs and writes both before and after that switch.

Outcomes asserted: zero writer errors; no writer statement or commit waits 1 s or
more; every committed change is in the log database exactly once (and nothing else
is); the stuck SNAPSHOT postpones its table's drop (phase "switched") instead of losing
rows, and that same rotation completes once it ends. A summary (latencies, rotation
step times) is printed at the end. Runs on every target of scripts/test.
"""
from __future__ import annotations

import random
import statistics
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import pytest
from firebird.driver import Isolation, tpb

from fbaudit import capture, rotation, transfer
from fbaudit.forms import OPERATIONS
from fbaudit.db import open_database
from fbaudit.forms import decode_value

WRITERS = 8
ROTATIONS = 30
SNAPSHOT_AT = 5               # the stuck SNAPSHOT opens before the switch of this rotation (1-based)
MAX_LATENCY = 1.0             # seconds, per statement and per commit
WRITER_LOCK_TIMEOUT = 10      # writers WAIT (as ERP clients do); a wait shows as latency, not as an error
PAUSE = 0.01                  # seconds between one writer's transactions
DEADLINE = 240                # seconds: the whole run must end well before this
DAY0 = datetime.now().replace(microsecond=0) + timedelta(days=1, hours=1)


@dataclass
class Writer:
    """One application connection, open for the whole test, one change per transaction."""

    number: int
    isolation: Isolation
    committed: list[tuple[str, str, str]] = field(default_factory=list)   # (operation, key, NAME marker)
    errors: list[str] = field(default_factory=list)
    latencies: list[float] = field(default_factory=list)
    slow: list[str] = field(default_factory=list)

    def timed(self, what: str, fn, *args):
        t0 = time.perf_counter()
        out = fn(*args)
        dt = time.perf_counter() - t0
        self.latencies.append(dt)
        if dt >= MAX_LATENCY:
            self.slow.append(f"{what} {dt:.2f} s at {time.strftime('%H:%M:%S')}")
        return out

    def run(self, project, ready: threading.Barrier, stop: threading.Event) -> None:
        rnd = random.Random(self.number)
        live: dict[int, str] = {}                      # own row id -> its current NAME
        nxt = 0
        try:
            db = project.connect()
        except Exception as exc:                       # noqa: BLE001 - reported by the test
            self.errors.append(f"connect: {exc}")
            ready.abort()
            return
        with db:
            tm = db.con.transaction_manager(default_tpb=tpb(self.isolation, lock_timeout=WRITER_LOCK_TIMEOUT))
            try:
                ready.wait()
            except threading.BrokenBarrierError:
                return
            i = 0
            while not stop.is_set():
                i += 1
                marker = f"w{self.number}-{i}"
                roll = rnd.random()
                try:
                    tm.begin()
                    cur = tm.cursor()
                    if live and roll < 0.2:
                        rid = min(live)
                        self.timed("delete", cur.execute, "DELETE FROM ITEM WHERE ID = ?", (rid,))
                        change = ("delete", rid, live[rid])
                    elif not live or roll < 0.5:
                        nxt += 1
                        rid = self.number * 1_000_000 + nxt
                        self.timed("insert", cur.execute, "INSERT INTO ITEM (ID, NAME, QTY) VALUES (?, ?, ?)",
                                   (rid, marker, i))
                        change = ("insert", rid, marker)
                    else:
                        rid = rnd.choice(list(live))
                        self.timed("update", cur.execute, "UPDATE ITEM SET NAME = ?, QTY = QTY + 1 WHERE ID = ?",
                                   (marker, rid))
                        change = ("update", rid, marker)
                    cur.close()
                    self.timed("commit", tm.commit)
                except Exception as exc:               # noqa: BLE001 - every error is a finding
                    self.errors.append(f"{type(exc).__name__}: {exc}")
                    if tm.is_active():
                        tm.rollback()
                    continue
                op, rid, name = change
                if op == "delete":
                    del live[rid]
                else:
                    live[rid] = name
                self.committed.append((op, str(rid), name))
                time.sleep(PAUSE)
            tm.close()


def transfer_loop(project, stop: threading.Event, errors: list[str], shipped: list[int]) -> None:
    spec = project.config.sources[0]
    while not stop.is_set():
        rep = transfer.transfer_source(project.config, spec)
        if rep.error:
            errors.append(rep.error)
        shipped.append(rep.packets)
        stop.wait(0.1)


def logged_changes(project) -> list[tuple[str, str, str]]:
    """(operation, key, NAME marker) of every packet in the log database: the new NAME
    for insert/update, the old one for delete. Plus the number of field rows per packet."""
    out = []
    with open_database(project.log) as db:
        num = db.scalar("SELECT NUM_POLE FROM FBA_DICT_FIELDS WHERE FIELD_NAME = 'NAME'")
        rows = db.query(
            "SELECT p.OPERATION, p.RECORD_KEY, l.BLOB_OLD, l.BLOB_NEW, "
            "(SELECT COUNT(*) FROM FBA_LOG x WHERE x.SOURCE_ID = p.SOURCE_ID AND x.PACKET_ID = p.PACKET_ID) "
            "FROM FBA_LOG_PACKET p LEFT JOIN FBA_LOG l ON l.SOURCE_ID = p.SOURCE_ID "
            "AND l.PACKET_ID = p.PACKET_ID AND l.NUM_POLE = ?", (num,))
        db.commit()
    for op, key, old, new, fields in rows:
        op = OPERATIONS[op]
        name = decode_value(old if op == "delete" else new, "text")
        out.append((op, key, name, fields))
    return out


@pytest.mark.slow
def test_thirty_rotations_under_live_load_lose_nothing_and_never_block_writers(project, capsys):
    project.sql("CREATE TABLE ITEM (ID INTEGER NOT NULL PRIMARY KEY, NAME VARCHAR(40) CHARACTER SET UTF8, "
                "QTY INTEGER)")
    capture.init(project.config)
    capture.enable(project.config, "ITEM")
    spec = project.config.sources[0]

    stop_writers, stop_transfer = threading.Event(), threading.Event()
    writers = [Writer(w, Isolation.SNAPSHOT if w % 2 else Isolation.READ_COMMITTED_RECORD_VERSION)
               for w in range(WRITERS)]
    ready = threading.Barrier(WRITERS + 1)
    threads = [threading.Thread(target=w.run, args=(project, ready, stop_writers), daemon=True) for w in writers]
    transfer_errors: list[str] = []
    shipped: list[int] = []
    mover = threading.Thread(target=transfer_loop, args=(project, stop_transfer, transfer_errors, shipped),
                             daemon=True)
    for t in threads:
        t.start()
    ready.wait(timeout=60)
    mover.start()

    reports: list[rotation.RotationReport] = []
    snap_db = None
    snap_changes: list[tuple[str, str, str]] = []
    snap_rotation = None
    snap_postponed: list[rotation.RotationReport] = []
    began = time.monotonic()
    day = 0
    try:
        while sum(r.outcome == "done" for r in reports) < ROTATIONS:
            assert time.monotonic() - began < DEADLINE, f"not done after {DEADLINE} s: {Counter(r.outcome for r in reports)}"
            day += 1
            done = sum(r.outcome == "done" for r in reports)
            if snap_db is None and snap_rotation is None and done == SNAPSHOT_AT - 1:
                # A client's SNAPSHOT transaction, opened before the switch, that writes.
                snap_db = open_database(project.main, isolation=Isolation.SNAPSHOT)
                snap_db.con.begin()
                snap_db.execute("INSERT INTO ITEM (ID, NAME, QTY) VALUES (?, ?, 0)", (9_000_001, "snap-1"))
                snap_changes.append(("insert", "9000001", "snap-1"))
            rep = rotation.rotate_source(project.config, spec, now=DAY0 + timedelta(days=day),
                                         max_wait=1.0 if snap_db is not None else 20.0)
            reports.append(rep)
            assert rep.outcome in ("done", "postponed"), (rep.outcome, rep.message)
            if snap_db is not None:
                # The stuck SNAPSHOT keeps this table's drop waiting at phase "switched".
                assert (rep.outcome, rep.phase) == ("postponed", "switched"), rep
                assert "started before the switch" in rep.message
                snap_rotation = snap_rotation or rep.rotation_id
                assert rep.rotation_id == snap_rotation
                snap_postponed.append(rep)
                # Still writing after the switch: it still sees the old ID_TABLE, so the old table.
                n = len(snap_postponed) + 1
                snap_db.execute("UPDATE ITEM SET NAME = ?, QTY = QTY + 1 WHERE ID = 9000001", (f"snap-{n}",))
                snap_changes.append(("update", "9000001", f"snap-{n}"))
                if len(snap_postponed) == 2:
                    snap_db.commit()
                    snap_db.close()
                    snap_db = None
            elif snap_rotation is not None and rep.rotation_id == snap_rotation:
                assert rep.outcome == "done", rep
    finally:
        if snap_db is not None:
            snap_db.rollback()
            snap_db.close()
        stop_writers.set()
        for t in threads:
            t.join(timeout=60)
        stop_transfer.set()
        mover.join(timeout=120)
    rotate_seconds = time.monotonic() - began

    assert not any(t.is_alive() for t in threads + [mover]), "a writer or the transfer loop hung"
    assert {w.number: w.errors[:3] for w in writers if w.errors} == {}
    assert transfer_errors == []
    slow = {w.number: w.slow[:3] for w in writers if w.slow}
    assert slow == {}, f"writer statements waited {MAX_LATENCY} s or more: {slow}"
    assert len(snap_postponed) == 2 and snap_rotation is not None

    # Ship what is left, then compare the log database with what was committed.
    final = transfer.transfer_source(project.config, spec)
    assert final.error is None
    committed = [c for w in writers for c in w.committed] + snap_changes
    logged = logged_changes(project)
    expected_fields = {"insert": 3, "update": 2, "delete": 3}
    assert [x for x in logged if x[3] != expected_fields[x[0]]][:5] == []
    got = Counter((op, key, name) for op, key, name, _ in logged)
    want = Counter(committed)
    assert len(want) == len(committed), "test bug: a change marker repeats"
    assert [c for c, n in got.items() if n > 1][:5] == [], "changes in the log more than once"
    assert [c for c in want if c not in got][:5] == [], "committed changes missing from the log"
    assert [c for c in got if c not in want][:5] == [], "changes in the log nobody committed"
    with project.connect() as db:
        assert db.scalar("SELECT COUNT(*) FROM FBA_LOG_3") == 0
        db.commit()

    lat = sorted(x for w in writers for x in w.latencies)
    done = [r for r in reports if r.outcome == "done"]
    steps: dict[str, list[float]] = {}
    for r in reports:
        for s in r.steps:
            steps.setdefault(s["step"], []).append(s["ms"])
    with capsys.disabled():
        where = (f"Firebird {project.target.version} " + ("server over TCP" if project.target.is_server else "embedded"))
        print(f"\n[rotation stress] {where}: {len(done)} rotations done, "
              f"{sum(r.outcome == 'postponed' for r in reports)} postponed runs "
              f"({len(snap_postponed)} by the stuck SNAPSHOT) in {rotate_seconds:.1f} s; "
              f"{len(committed)} committed changes by {WRITERS} writers, "
              f"{sum(r.rows_dropped or 0 for r in done)} field rows dropped, all {len(logged)} packets in the log "
              f"exactly once")
        print(f"[rotation stress] writer statement+commit latency: {len(lat)} timings, median "
              f"{statistics.median(lat) * 1000:.1f} ms, p99 {lat[int(len(lat) * 0.99)] * 1000:.1f} ms, "
              f"max {lat[-1] * 1000:.1f} ms")
        strays = [r.steps[-1]["text"] for r in done if "LOG_3 held" in r.steps[-1]["text"]]
        print(f"[rotation stress] rotations that found rows in LOG_3 (shipped by the transfer's LOG_3 read): "
              f"{len(strays)}" + (f" ({strays[0]})" if strays else ""))
        print("[rotation stress] rotation step ms (median/max): " + ", ".join(
            f"{k} {statistics.median(v):.0f}/{max(v):.0f}" for k, v in steps.items()))
