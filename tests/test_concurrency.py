"""Concurrency: auditing adds no hot spot (docs/capture.md "No hot spots").

Writers that change the same audited table at the same time never wait for
each other and never fail because of the audit trigger, and every committed
change is captured with its values.
"""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from decimal import Decimal

import pytest
from firebird.driver import Isolation, tpb

from fbaudit import capture

from helpers import packets

WRITERS = 8
SECONDS = 3.0
ROWS = 5                      # rows each writer owns from the start
NO_WAIT = 0                   # lock_timeout 0: any lock conflict fails at once


def row_id(writer: int, n: int) -> int:
    return writer * 100_000 + n


@pytest.fixture
def accounts(project):
    project.sql("CREATE TABLE ACCOUNT (ID INTEGER NOT NULL PRIMARY KEY, BALANCE NUMERIC(15,2) NOT NULL, "
                "NOTE VARCHAR(40))")
    with project.connect() as db:
        for w in range(WRITERS):
            for n in range(ROWS):
                db.execute("INSERT INTO ACCOUNT VALUES (?, 0, NULL)", (row_id(w, n),))
        db.commit()
    capture.init(project.config)
    capture.enable(project.config, "ACCOUNT")
    return project


@dataclass
class Writer:
    """One application connection committing one change per transaction."""

    number: int
    committed: list[tuple] = field(default_factory=list)    # (op, id, changes) in commit order
    errors: list[str] = field(default_factory=list)

    def run(self, project, start: threading.Barrier, isolation: Isolation) -> None:
        try:
            db = project.connect()
        except Exception as exc:           # noqa: BLE001 - reported by the test
            self.errors.append(f"connect: {exc}")
            start.abort()
            return
        with db:
            tm = db.con.transaction_manager(default_tpb=tpb(isolation, lock_timeout=NO_WAIT))
            balances = {row_id(self.number, n): Decimal(0) for n in range(ROWS)}
            try:
                start.wait()
            except threading.BrokenBarrierError:
                self.errors.append("another writer could not connect")
                return
            stop_at = time.monotonic() + SECONDS
            i = 0
            while time.monotonic() < stop_at:
                i += 1
                note = f"w{self.number}-{i}"
                try:
                    tm.begin()
                    cur = tm.cursor()
                    if i % 4 == 0:                               # every fourth change: a new row
                        rid = row_id(self.number, 1000 + i)
                        cur.execute("INSERT INTO ACCOUNT VALUES (?, ?, ?)", (rid, Decimal("1.50"), note))
                        change = ("insert", rid, {"ID": (None, str(rid)), "BALANCE": (None, "1.50"),
                                                  "NOTE": (None, note)})
                    else:
                        rid = row_id(self.number, i % ROWS)
                        old_note = self._last_note(rid)
                        cur.execute("UPDATE ACCOUNT SET BALANCE = BALANCE + 1, NOTE = ? WHERE ID = ?", (note, rid))
                        old = balances[rid]
                        change = ("update", rid, {"BALANCE": (f"{old:.2f}", f"{old + 1:.2f}"),
                                                  "NOTE": (old_note, note)})
                    cur.close()
                    tm.commit()
                except Exception as exc:   # noqa: BLE001 - every error is a finding
                    self.errors.append(f"{type(exc).__name__}: {exc}")
                    if tm.is_active():
                        tm.rollback()
                    continue
                if change[0] == "update":
                    balances[rid] += 1
                self.committed.append(change)
            tm.close()

    def _last_note(self, rid: int) -> str | None:
        for op, r, ch in reversed(self.committed):
            if r == rid and op == "update":
                return ch["NOTE"][1]
        return None


@pytest.mark.slow
@pytest.mark.parametrize("isolation", [Isolation.SNAPSHOT, Isolation.READ_COMMITTED_RECORD_VERSION],
                         ids=["snapshot", "read_committed"])
def test_eight_concurrent_writers_see_no_errors_and_every_change_is_captured(accounts, isolation):
    writers = [Writer(w) for w in range(WRITERS)]
    start = threading.Barrier(WRITERS)
    threads = [threading.Thread(target=w.run, args=(accounts, start, isolation)) for w in writers]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=SECONDS + 60)
    assert not any(t.is_alive() for t in threads), "a writer hung"
    assert {w.number: w.errors[:3] for w in writers if w.errors} == {}
    assert all(len(w.committed) >= 10 for w in writers), [len(w.committed) for w in writers]
    # every writer ran NO WAIT: a lock conflict with another writer would have been an error above
    logged = packets(accounts, "ACCOUNT")
    for w in writers:
        mine = [p for p in logged if int(p.key) // 100_000 == w.number]
        assert len(mine) == len(w.committed), f"writer {w.number}: {len(mine)} packets, {len(w.committed)} commits"
        got = [(p.operation, int(p.key), {k: (v["old"], v["new"]) for k, v in p.changes.items()}) for p in mine]
        assert got == w.committed, f"writer {w.number}"
        assert len({p.transaction_id for p in mine}) == len(mine)     # one change per transaction
    with accounts.connect() as db:
        total = sum(1 for w in writers for c in w.committed if c[0] == "update")
        assert db.scalar("SELECT SUM(BALANCE) FROM ACCOUNT WHERE MOD(ID, 100000) < ?", (ROWS,)) == total


def _begin(db, isolation: Isolation, lock_timeout: int):
    tm = db.con.transaction_manager(default_tpb=tpb(isolation, lock_timeout=lock_timeout))
    tm.begin()
    return tm


@pytest.mark.parametrize("isolation", [Isolation.SNAPSHOT, Isolation.READ_COMMITTED_RECORD_VERSION],
                         ids=["snapshot", "read_committed"])
def test_an_open_writer_does_not_block_another(accounts, isolation):
    """T1 changes rows and stays open; T2 (lock timeout 1 s) changes other rows and commits at once."""
    with accounts.connect() as db1, accounts.connect() as db2:
        t1 = _begin(db1, Isolation.SNAPSHOT, -1)
        cur1 = t1.cursor()
        cur1.execute("UPDATE ACCOUNT SET BALANCE = 10 WHERE ID = ?", (row_id(0, 1),))
        cur1.execute("INSERT INTO ACCOUNT VALUES (?, 1, 't1')", (row_id(0, 900),))
        cur1.execute("DELETE FROM ACCOUNT WHERE ID = ?", (row_id(0, 2),))

        began = time.monotonic()
        t2 = _begin(db2, isolation, 1)
        cur2 = t2.cursor()
        cur2.execute("UPDATE ACCOUNT SET BALANCE = 20 WHERE ID = ?", (row_id(1, 1),))
        cur2.execute("INSERT INTO ACCOUNT VALUES (?, 2, 't2')", (row_id(1, 900),))
        cur2.execute("DELETE FROM ACCOUNT WHERE ID = ?", (row_id(1, 2),))
        t2.commit()
        elapsed = time.monotonic() - began
        assert elapsed < 0.9, f"T2 waited {elapsed:.2f} s for T1"

        t1.commit()
        t1.close()
        t2.close()
    logged = [(p.operation, int(p.key)) for p in packets(accounts, "ACCOUNT")]
    assert sorted(logged) == sorted([
        ("update", row_id(0, 1)), ("insert", row_id(0, 900)), ("delete", row_id(0, 2)),
        ("update", row_id(1, 1)), ("insert", row_id(1, 900)), ("delete", row_id(1, 2))])


def test_pending_admin_changes_to_the_control_rows_do_not_block_writers(accounts):
    """pause/rotate/transfer update LOG_INFO and LOG_PACKET_FLAG; triggers only read them."""
    p = accounts.prefix
    with accounts.connect() as admin, accounts.connect() as app:
        ta = _begin(admin, Isolation.SNAPSHOT, -1)
        cur = ta.cursor()
        cur.execute(f"UPDATE {p}LOG_INFO SET DATA = LOCALTIMESTAMP")
        cur.execute(f"UPDATE {p}LOG_PACKET_FLAG SET SEEN_ID = SEEN_ID + 0")

        began = time.monotonic()
        tw = _begin(app, Isolation.SNAPSHOT, NO_WAIT)
        curw = tw.cursor()
        curw.execute("UPDATE ACCOUNT SET NOTE = 'during admin work' WHERE ID = ?", (row_id(3, 0),))
        curw.execute("INSERT INTO ACCOUNT VALUES (?, 5, 'new')", (row_id(3, 901),))
        tw.commit()
        assert time.monotonic() - began < 0.9
        ta.rollback()
        ta.close()
        tw.close()
    assert [(x.operation, int(x.key)) for x in packets(accounts, "ACCOUNT")] == [
        ("update", row_id(3, 0)), ("insert", row_id(3, 901))]
