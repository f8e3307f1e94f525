"""Transfer: packets reach the log database exactly once, whatever happens.

Real databases only: the source and the log database are two embedded
databases, or two databases on the Firebird 3.0 server (server to server:
the log server pulls field rows from the main database over TCP).
"""
from __future__ import annotations

import json
import os
import random
import signal
import socket
import subprocess
import sys
import threading
import time
import warnings
from pathlib import Path

import pytest

from fbaudit import capture, history, objects, rotation, staging, transfer
from fbaudit.db import open_database
from fbaudit.errors import FbauditError, SourceBusy

from helpers import all_packets, as_fbaudit, fast_check, packet_states, run_sql, staged_fields

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def audited(project):
    project.sql("CREATE TABLE ITEM (ID INTEGER NOT NULL PRIMARY KEY, NAME VARCHAR(40) CHARACTER SET UTF8, "
                "QTY INTEGER, NOTE BLOB SUB_TYPE TEXT CHARACTER SET UTF8)")
    capture.init(project.config)
    capture.enable(project.config, "ITEM")
    return project


def log_rows(project, sql, params=()):
    with open_database(project.log) as db:
        rows = db.query(sql, params)
        db.commit()
        return rows


def main_rows(project, sql, params=()):
    with project.connect() as db:
        rows = db.query(sql, params)
        db.commit()
        return rows


def assert_exactly_once(project):
    """Every packet of the source is in the log once, with exactly its field rows; all recorded shipped."""
    with project.connect() as db:
        src = staged_fields(db)
    states = packet_states(project)
    assert states.keys() <= {1}, f"packets not recorded as shipped: {states}"
    logged = log_rows(project, "SELECT p.PACKET_ID, (SELECT COUNT(*) FROM FBA_LOG l WHERE l.SOURCE_ID = p.SOURCE_ID "
                               "AND l.PACKET_ID = p.PACKET_ID) FROM FBA_LOG_PACKET p")
    ids = [r[0] for r in logged]
    assert len(ids) == len(set(ids)), "a packet is in the log twice"
    assert dict(logged) == src
    return len(src)


def test_ships_packets_and_fields_then_fast_check_says_nothing_new(audited):
    run_sql(audited, ["INSERT INTO ITEM VALUES (1, 'Ёлка', 3, 'long text')",
                      "INSERT INTO ITEM VALUES (2, 'b', NULL, NULL)",
                      "UPDATE ITEM SET QTY = 4, NOTE = NULL WHERE ID = 1",
                      "DELETE FROM ITEM WHERE ID = 2"])
    res = transfer.transfer(audited.config)
    assert not res.errors
    assert res.data["packets"] == 4 and res.data["field_rows"] == 4 + 2 + 2 + 2
    assert assert_exactly_once(audited) == 4
    # Second run: nothing new, nothing copied, the fast check answered.
    res = transfer.transfer(audited.config)
    src = res.data["sources"][0]
    assert src["nothing_new"] and src["packets"] == 0
    assert res.lines == [f"main: nothing new (fast check {src['fast_check_ms']:.1f} ms)"]
    # The log holds the context and the dictionary (names survive in the log database).
    row = log_rows(audited, "SELECT OPERATION, RECORD_KEY, DB_USER, TRANSFERRED_AT FROM FBA_LOG_PACKET "
                            "WHERE PACKET_ID = 3")[0]
    assert row[:3] == (2, "1", "SYSDBA") and row[3] is not None
    names = log_rows(audited, "SELECT TABLE_NAME FROM FBA_DICT_TABLES")
    assert names == [("ITEM",)]
    assert log_rows(audited, "SELECT PACKETS, FIELD_ROWS, LAST_PACKET_ID FROM FBA_SOURCES") == [(4, 10, 4)]


def test_history_versions_and_show(audited):
    run_sql(audited, ["INSERT INTO ITEM VALUES (7, 'a', 1, NULL)"])
    run_sql(audited, ["EXECUTE BLOCK AS BEGIN RDB$SET_CONTEXT('USER_TRANSACTION', 'FBAUDIT_AUTHOR', 'анна'); "
                      "RDB$SET_CONTEXT('USER_TRANSACTION', 'FBAUDIT_COMMENT', 'price fix'); END",
                      "UPDATE ITEM SET NAME = NULL, QTY = 2 WHERE ID = 7"])
    run_sql(audited, ["DELETE FROM ITEM WHERE ID = 7"])
    transfer.transfer(audited.config)
    h = history.history(audited.config, "item", "7")
    assert h["total"] == 3 and h["key"] == {"ID": "7"}
    assert [v["version"] for v in h["versions"]] == [1, 2, 3]
    assert [v["operation"] for v in h["versions"]] == ["insert", "update", "delete"]
    v2 = h["versions"][1]
    assert v2["author"] == "анна" and v2["comment"] == "price fix" and v2["user"] == "SYSDBA"
    assert v2["changes"] == {"NAME": {"old": "a", "new": None}, "QTY": {"old": "1", "new": "2"}}
    assert h["versions"][2]["changes"] == {"ID": {"old": "7", "new": None}, "QTY": {"old": "2", "new": None}}
    page = history.history(audited.config, "ITEM", "7", limit=1, offset=1)
    assert [v["version"] for v in page["versions"]] == [2] and page["total"] == 3
    one = history.show(audited.config, v2["packet_id"])
    assert one["version"] == 2 and one["table"] == "ITEM" and one["key"] == {"ID": "7"}
    assert one["changes"] == v2["changes"]
    with pytest.raises(history.NotFound, match="tables with history: ITEM"):
        history.history(audited.config, "NOPE", "1")
    with pytest.raises(history.NotFound, match="not in the log database"):
        history.show(audited.config, 999)
    assert history.history(audited.config, "ITEM", "8")["total"] == 0


def test_history_composite_key_and_cli_json(project):
    project.sql("CREATE TABLE LINE (ORDER_ID INTEGER NOT NULL, CODE VARCHAR(20) CHARACTER SET UTF8 NOT NULL, "
                "QTY INTEGER, PRIMARY KEY (ORDER_ID, CODE))")
    capture.init(project.config)
    capture.enable(project.config, "LINE")
    run_sql(project, ["INSERT INTO LINE VALUES (5, 'a,b|c=d', 1)", "UPDATE LINE SET QTY = 9 WHERE ORDER_ID = 5"])
    cfg = project.write_config()
    assert cli(cfg, "transfer").returncode == 0
    out = cli(cfg, "history", "LINE", "CODE=a,b|c=d,ORDER_ID=5", "--json")
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    assert set(data) >= {"table", "key", "versions", "total"}
    assert data["key"] == {"ORDER_ID": "5", "CODE": "a,b|c=d"} and data["total"] == 2
    v = data["versions"][1]
    assert set(v) >= {"version", "packet_id", "operation", "at", "author", "user", "changes"}
    assert v["operation"] == "update" and v["changes"] == {"QTY": {"old": "1", "new": "9"}}
    assert v["at"][:4].isdigit() and "T" in v["at"]
    bad = cli(cfg, "history", "LINE", "5")
    assert bad.returncode == 1 and "ORDER_ID=VALUE,CODE=VALUE" in bad.stderr
    text = cli(cfg, "history", "LINE", "ORDER_ID=5,CODE=a,b|c=d")
    assert "v2" in text.stdout and "QTY: 1 -> 9" in text.stdout
    assert cli(cfg, "history", "MISSING", "1").returncode == 5
    shown = cli(cfg, "show", str(v["packet_id"]), "--json")
    assert json.loads(shown.stdout)["version"] == 2


def test_crash_between_log_commit_and_record_is_not_duplicated(audited):
    """A kill after the log commit and before the source records it: the rerun only records."""
    run_sql(audited, [f"INSERT INTO ITEM VALUES ({i}, 'x', {i}, NULL)" for i in range(1, 6)])
    job = transfer.SourceTransfer(audited.config, audited.config.sources[0])
    job.open()
    job.open_log()
    try:
        job.sync_dictionary()
        rows = job.main.query("SELECT ID FROM FBA_LOG_PACKET_1 ORDER BY ID")
        job.main.commit()
        done, present, copied = job.load([(rows[0][0], rows[-1][0])])   # step 2 only: "killed" here
        assert done == [1, 2, 3, 4, 5] and present == set() and copied == 15
    finally:
        job.close()
    assert packet_states(audited) == {0: 5}
    res = transfer.transfer(audited.config)
    src = res.data["sources"][0]
    assert src["already_in_log"] == 5 and src["packets"] == 0
    assert "5 were already in the log, only recorded" in res.lines[0]
    assert assert_exactly_once(audited) == 5


def passed_by_a_transfer(audited):
    """A connection whose uncommitted insert holds packet 1, after a transfer shipped packet 2."""
    slow = audited.connect()
    cur = slow.con.cursor()
    cur.execute("INSERT INTO ITEM VALUES (100, 'slow', 1, NULL)")      # takes packet 1, not committed
    run_sql(audited, ["INSERT INTO ITEM VALUES (101, 'fast', 1, NULL)"])  # packet 2, committed
    assert transfer.transfer(audited.config).data["packets"] == 1
    return slow


def test_packet_committed_late_with_a_lower_id_is_not_missed(audited):
    """Packet ids come from a sequence, not in commit order: the fast check must not skip a late commit."""
    slow = passed_by_a_transfer(audited)
    try:
        slow.commit()                                                         # packet 1 appears now
    finally:
        slow.close()
    res = transfer.transfer(audited.config)
    assert res.data["packets"] == 1, res.lines
    assert assert_exactly_once(audited) == 2
    assert transfer.transfer(audited.config).data["sources"][0]["nothing_new"]


def test_an_id_rolled_back_behind_a_transfer_is_forgotten_once_its_writer_ended(audited):
    """A transfer passes an id whose writer has not committed: it keeps it as a LOG_PENDING range
    (status does not count it: no packet is visible there). The writer rolls back; the next fast
    check finds nothing there, sees no writer of that time alive, ends the range and settles on
    tier 1 again (never left on tier 2)."""
    slow = passed_by_a_transfer(audited)
    try:
        assert main_rows(audited, "SELECT ID_FROM, ID_TO FROM FBA_LOG_PENDING") == [(1, 1)]
        assert main_rows(audited, "SELECT SHIPPED_TO FROM FBA_LOG_PACKET_FLAG") == [(2,)]
        assert packet_states(audited) == {1: 1}
        again = transfer.transfer(audited.config)           # the writer is alive: the range stays
        assert again.data["sources"][0]["nothing_new"] and again.data["packets"] == 0
        assert main_rows(audited, "SELECT ID_FROM, ID_TO FROM FBA_LOG_PENDING") == [(1, 1)]
        slow.rollback()
    finally:
        slow.close()
    res = transfer.transfer(audited.config)
    assert res.data["sources"][0]["nothing_new"] and res.data["packets"] == 0
    assert main_rows(audited, "SELECT COUNT(*) FROM FBA_LOG_PENDING") == [(0,)]
    assert fast_check(audited) == (False, 1)
    assert assert_exactly_once(audited) == 1


def test_two_transfers_at_once_never_lose_a_packet_that_commits_late(audited):
    """Two transfers of one source at once (the review's case): B reads 1..8 while packet 4 is not
    committed; 4 commits; A starts its pass, and B records its range for 4 while A is between
    reading the ranges and ending those that are over. A must not end B's range (it never looked
    at it): packet 4 ships with the next run, once."""
    p = audited.prefix
    run_sql(audited, [f"INSERT INTO ITEM VALUES ({i}, 'a', 1, NULL)" for i in (1, 2, 3)])
    w = audited.connect()
    w.con.cursor().execute("INSERT INTO ITEM VALUES (4, 'late', 1, NULL)")                  # packet 4, open
    run_sql(audited, [f"INSERT INTO ITEM VALUES ({i}, 'a', 1, NULL)" for i in (5, 6, 7, 8)])
    b = transfer.SourceTransfer(audited.config, audited.config.sources[0], batch=1000)
    a = transfer.SourceTransfer(audited.config, audited.config.sources[0], batch=2)
    try:
        b.open()
        b.open_log()
        b.sync_dictionary()
        mark_b = b.main.con.info.next_transaction
        rows = [transfer.PacketRow(r[0]) for r in b.main.query(f"SELECT ID FROM {p}LOG_PACKET_1 ORDER BY ID")]
        b.main.commit()
        seen, _present, _n = b.load([(1, 8)])
        assert sorted(seen) == [1, 2, 3, 5, 6, 7, 8]
        w.commit()
        a.open()
        book, calls = a.book, []

        def b_records_first(work):
            if not calls:
                b.record(rows, set(seen), {}, (0, 8), mark_b)       # B: range (4, 4), SHIPPED_TO 8
            calls.append(1)
            return book(work)
        a.book = b_records_first
        assert a.anything_new()
        with pytest.raises(SourceBusy):
            a.run_pass(transfer.SourceReport("main"))
        assert main_rows(audited, f"SELECT ID_FROM, ID_TO FROM {p}LOG_PENDING") == [(4, 4)]
    finally:
        w.close()
        a.close()
        b.close()
    assert transfer.transfer(audited.config).data["packets"] == 1
    assert assert_exactly_once(audited) == 8


def test_ranges_that_cannot_be_alive_are_ended(audited):
    """A range whose mark is above the next transaction number (a database restored by gbak counts
    transactions from the start again), and a reservation never claimed for over a day (a baseline
    killed before it began): both are over, and the fast check settles on tier 1 again."""
    p = audited.prefix
    run_sql(audited, ["INSERT INTO ITEM VALUES (1, 'a', 1, NULL)"])
    transfer.transfer(audited.config)
    with audited.connect() as db:
        db.execute(f"INSERT INTO {p}LOG_PENDING (ID_FROM, ID_TO, TX_LIMIT) VALUES (1000, 1005, 999999999)")
        db.execute(f"INSERT INTO {p}LOG_PENDING (ID_FROM, ID_TO, TX_LIMIT, CREATED_AT) "
                   f"VALUES (2000, 2010, ?, DATEADD(-2 DAY TO LOCALTIMESTAMP))", (staging.RESERVED,))
        db.execute(f"INSERT INTO {p}LOG_PENDING (ID_FROM, ID_TO, TX_LIMIT) VALUES (3000, 3010, ?)", (staging.RESERVED,))
        db.execute(f"UPDATE {p}LOG_PACKET_FLAG SET SEEN_ID = -1")
        db.commit()
    transfer.transfer(audited.config)
    assert main_rows(audited, f"SELECT ID_FROM FROM {p}LOG_PENDING") == [(3000,)]   # a fresh reservation waits
    with audited.connect() as db:
        db.execute(f"DELETE FROM {p}LOG_PENDING")
        db.commit()
    transfer.transfer(audited.config)
    assert fast_check(audited) == (False, 1)


def test_failing_packet_counts_attempts_is_marked_failed_and_can_be_retried(audited):
    # A rule in the log database that refuses one record: a packet that cannot be stored.
    with open_database(audited.log) as db:
        db.con.execute_immediate("CREATE EXCEPTION POISON 'poison record refused'")
        db.con.commit()
        db.con.execute_immediate("CREATE TRIGGER POISON_BI FOR FBA_LOG_PACKET BEFORE INSERT AS BEGIN "
                                 "IF (NEW.RECORD_KEY = '13') THEN EXCEPTION POISON; END")
        db.con.commit()
    run_sql(audited, ["INSERT INTO ITEM VALUES (12, 'ok', 1, NULL)", "INSERT INTO ITEM VALUES (13, 'bad', 1, NULL)",
                      "INSERT INTO ITEM VALUES (14, 'ok', 1, NULL)"])
    res = transfer.transfer(audited.config)
    assert res.data["packets"] == 2 and not res.errors
    assert "1 failed, retried next run" in res.lines[0]
    for attempt in range(2, 6):
        res = transfer.transfer(audited.config)
    assert res.data["failed_packets"] == 1 and "marked failed after 5 attempts" in res.lines[0]
    state, attempts, error, at = main_rows(audited, "SELECT f.STATE, f.ATTEMPTS, f.LAST_ERROR, f.LAST_ATTEMPT "
                                                    "FROM FBA_LOG_FAILED f JOIN FBA_LOG_PACKET_1 p ON p.ID = f.ID "
                                                    "WHERE p.RECORD_KEY = '13'")[0]
    assert (state, attempts) == (2, 5) and "poison record refused" in error and at is not None
    # Skipped from now on: a new change still flows.
    run_sql(audited, ["UPDATE ITEM SET QTY = 2 WHERE ID = 12"])
    assert transfer.transfer(audited.config).data["packets"] == 1
    # status: CRITICAL, naming the packet and its error, and what to do.
    st = capture.status(audited.config)
    src = st.data["sources"][0]
    assert st.data["exit_code"] == 2 and src["failed"] == 1 and src["failed_first"][0]["packet"] == 2
    assert [p["message"] for p in src["problems"]] == [
        f"1 failed packet(s), changes not in the log database (packet 2: {src['failed_first'][0]['error']}); "
        "fix the cause, then `fbaudit retry --all-failed`"]
    assert "poison record refused" in src["failed_first"][0]["error"]
    assert src["last_transfer"]["outcome"] == "shipped"          # the last run shipped the UPDATE of 12
    with pytest.raises(FbauditError, match="not failed: already transferred"):
        transfer.retry(audited.config, packets=[1])
    with open_database(audited.log) as db:
        db.con.execute_immediate("DROP TRIGGER POISON_BI")
        db.con.commit()
    res = transfer.retry(audited.config, all_failed=True)
    assert res.data["sources"][0]["requeued"] == [2]
    assert transfer.transfer(audited.config).data["packets"] == 1
    assert assert_exactly_once(audited) == 4
    assert capture.status(audited.config).data["health"] == "ok"


def test_second_transfer_of_the_same_source_is_skipped_as_busy(audited, monkeypatch):
    run_sql(audited, ["INSERT INTO ITEM VALUES (1, 'x', 1, NULL)"])
    monkeypatch.setattr(transfer, "LOG_LOCK_TIMEOUT", 1)
    holder = open_database(audited.log)
    try:
        holder.execute("UPDATE FBA_SOURCES SET LAST_TRANSFER_AT = LOCALTIMESTAMP")   # the other transfer's lock
        res = transfer.transfer(audited.config)
        assert res.data["sources"][0]["busy"] and not res.errors
        assert "another transfer of this source is running" in res.lines[0]
    finally:
        holder.close()
    assert transfer.transfer(audited.config).data["packets"] == 1


# --------------------------------------------------------------------------
# Through the command line, with real processes
# --------------------------------------------------------------------------
def cli(cfg: Path, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "fbaudit.cli", "--config", str(cfg), *args],
                          capture_output=True, text=True, timeout=timeout, cwd=ROOT)


class Writer(threading.Thread):
    """An application user: steady inserts/updates/deletes, one transaction each; records any error."""

    def __init__(self, project, seed: int = 1):
        super().__init__(daemon=True)
        self.project, self.rng, self.stop = project, random.Random(seed), threading.Event()
        self.errors: list[str] = []
        self.commits = 0

    def run(self):
        db = self.project.connect()
        try:
            cur = db.con.cursor()
            while not self.stop.is_set():
                k = self.rng.randint(1, 200)
                try:
                    cur.execute("UPDATE OR INSERT INTO ITEM (ID, NAME, QTY) VALUES (?, ?, ?) MATCHING (ID)",
                                (k, f"n{self.rng.random():.6f}", self.rng.randint(0, 9)))
                    if self.rng.random() < 0.2:
                        cur.execute("DELETE FROM ITEM WHERE ID = ?", (self.rng.randint(1, 200),))
                    db.con.commit()
                    self.commits += 1
                except Exception as exc:   # noqa: BLE001 - the test asserts there are none
                    self.errors.append(str(exc))
                    db.rollback()
                time.sleep(0.002)
        finally:
            db.close()


@pytest.mark.slow
def test_fifty_sigkills_during_load_lose_and_duplicate_nothing(audited):
    """Server: `fbaudit transfer` processes are SIGKILLed while a writer keeps committing.

    Embedded: several processes on one file need SuperClassic, and there a
    SIGKILLed process can leave the others waiting forever on its locks
    (measured on 3.0.14 and 4.0.7: the writer hung in start_transaction /
    execute). So the embedded variant kills the whole process holding the
    engine, the writer and a transfer loop: a crash of the database engine
    itself, 50 times.
    """
    if not audited.target.is_server:
        return kill_whole_engine_process(audited)
    cfg = audited.write_config()
    writer = Writer(audited)
    writer.start()
    rng = random.Random(7)
    kills = 0
    try:
        while kills < 50:
            proc = subprocess.Popen([sys.executable, "-m", "fbaudit.cli", "--config", str(cfg), "transfer",
                                     "--batch", str(rng.choice([1, 5, 20, 50]))],
                                    cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            time.sleep(rng.uniform(0.05, 1.2))
            if proc.poll() is None:
                proc.send_signal(signal.SIGKILL)
                kills += 1
            proc.wait()
    finally:
        writer.stop.set()
        writer.join()
    assert not writer.errors, writer.errors[:3]
    assert writer.commits > 100
    out = cli(cfg, "transfer", "--json")
    assert out.returncode == 0, out.stderr
    total = assert_exactly_once(audited)
    assert total >= writer.commits


CHILD = r"""
import random, sys, threading, time
from fbaudit.config import load_config
from fbaudit import transfer
from fbaudit.db import open_database
cfg = load_config(sys.argv[1]); rng = random.Random(int(sys.argv[2]))
def write():
    db = open_database(cfg.sources[0]); cur = db.con.cursor()
    while True:
        try:
            cur.execute("UPDATE OR INSERT INTO ITEM (ID, NAME, QTY) VALUES (?, ?, ?) MATCHING (ID)",
                        (rng.randint(1, 200), f"n{rng.random():.6f}", rng.randint(0, 9)))
            if rng.random() < 0.2:
                cur.execute("DELETE FROM ITEM WHERE ID = ?", (rng.randint(1, 200),))
            db.con.commit()
        except Exception as exc:
            print("WRITER ERROR", exc, file=sys.stderr, flush=True); db.rollback()
        time.sleep(0.002)
threading.Thread(target=write, daemon=True).start()
while True:
    res = transfer.transfer(cfg, batch=rng.choice([1, 5, 20, 50]))
    for _, err in res.errors:
        print("TRANSFER ERROR", err, file=sys.stderr, flush=True)
"""


def kill_whole_engine_process(project):
    cfg = project.write_config()
    env = {**os.environ, "FBAUDIT_EMBEDDED_SHARED": "0"}     # one process at a time: the default Super mode
    rng = random.Random(7)
    errors = []
    for kill in range(50):
        proc = subprocess.Popen([sys.executable, "-c", CHILD, str(cfg), str(kill)], cwd=ROOT, env=env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        time.sleep(rng.uniform(0.6, 1.6))
        assert proc.poll() is None, proc.stderr.read()
        proc.send_signal(signal.SIGKILL)
        errors += [line for line in proc.communicate()[1].splitlines() if "ERROR" in line]
    assert not errors, errors[:3]
    res = transfer.transfer(project.config)
    assert not res.errors, res.lines
    total = assert_exactly_once(project)
    assert total > 200      # changes were written and shipped between the kills
    # Measured once in about 5 runs on 5.0.4: a SIGKILL during the engine's 8 KiB pwrite of a data page
    # can leave only its first 4 KiB written (Linux checks for a fatal signal between page-cache pages).
    # A killed, uncommitted insert then remains as a record of zero bytes: transaction 0 (always
    # committed), format 0, every column NULL or its default, in no index. It is no packet (the checks
    # above read by ID); it must be exactly that shell and nothing else, and it goes at the next rotation.
    # Since packets rotate the triggers write LOG_PACKET_1/2 (no STATE column there); LOG_PACKET keeps
    # its STATE, whose DEFAULT 0 every row has: nothing updates a packet.
    shells = main_rows(project, "SELECT RDB$RECORD_VERSION, STATE, CREATED_AT FROM FBA_LOG_PACKET WHERE ID + 0 IS NULL")
    assert all(s == (0, 0, None) for s in shells), shells
    for t in ("FBA_LOG_PACKET_1", "FBA_LOG_PACKET_2"):
        found = main_rows(project, f"SELECT RDB$RECORD_VERSION, 0, CREATED_AT FROM {t} WHERE ID + 0 IS NULL")
        assert all(s == (0, 0, None) for s in found), found
        shells += found
    if shells:
        warnings.warn(f"{len(shells)} torn-page shell record(s) in the staging after 50 engine kills "
                      "(docs/troubleshooting.md)")


def start_fbaudit(project, *args: str):
    """`fbaudit ARGS` in a process of its own: (process, its stderr lines as they come, their reader)."""
    proc = subprocess.Popen([sys.executable, "-m", "fbaudit.cli", "--config", str(project.write_config()), *args],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    err_lines: list[str] = []
    reader = threading.Thread(target=lambda: err_lines.extend(proc.stderr), daemon=True)
    reader.start()
    return proc, err_lines, reader


def stop_fbaudit(proc, err_lines: list[str], reader, sig) -> tuple[str, str]:
    """Send ``sig`` and wait for the process to end: (its stdout, its stderr)."""
    proc.send_signal(sig)
    out = proc.stdout.read()
    proc.wait(timeout=60)
    reader.join(10)
    return out, "".join(err_lines)


def test_follow_ships_on_event_and_stops_cleanly_on_sigterm(audited):
    proc, err_lines, reader = start_fbaudit(audited, "-v", "transfer", "--follow", "--poll", "30")
    try:
        # Started (the process start alone took 3-6 s on a loaded 2-core CI machine) and waiting:
        # the poll interval is long, so only the event can wake it.
        t_start = time.monotonic()
        while not any("[TRANSFER] following" in line for line in err_lines):
            assert proc.poll() is None and time.monotonic() - t_start < 60, "".join(err_lines)
            time.sleep(0.05)
        time.sleep(1.0)     # its first pass and the event registration
        lags = []
        for i in range(5):
            run_sql(audited, [f"INSERT INTO ITEM VALUES ({i}, 'e', 1, NULL)"])
            t0 = time.monotonic()
            while not log_rows(audited, "SELECT 1 FROM FBA_LOG_PACKET WHERE PACKET_ID = ?", (i + 1,)):
                assert time.monotonic() - t0 < 10, "the event did not wake the transfer"
                time.sleep(0.02)
            lags.append(time.monotonic() - t0)
        assert max(lags) < 10 and sorted(lags)[2] < 2, lags    # the poll (30 s) never had to
        _, err = stop_fbaudit(proc, err_lines, reader, signal.SIGTERM)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    assert "[TRANSFER] stopped" in err and "[TRANSFER] main: batch" in err
    assert assert_exactly_once(audited) == 5, err



@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_a_one_shot_transfer_stops_cleanly_on_a_signal(audited, sig):
    """Ctrl+C or SIGTERM on `fbaudit transfer` (one run): the current batch ends, the run says it was
    stopped and exits 0; nothing is lost or shipped twice, and the next run ships the rest. (Before:
    it retried against the client the signal had shut down, "gave up after retrying", exit 4.)"""
    with audited.connect() as db:
        db.execute("EXECUTE BLOCK AS DECLARE i INTEGER = 0; BEGIN WHILE (i < 3000) DO BEGIN "
                   "INSERT INTO ITEM VALUES (:i, 'x', :i, NULL); i = i + 1; END END")
        db.commit()
    proc, err_lines, reader = start_fbaudit(audited, "-v", "--json", "transfer", "--batch", "1")
    try:
        t0 = time.monotonic()
        while sum("[TRANSFER] main: batch" in line for line in err_lines) < 3:
            assert proc.poll() is None and time.monotonic() - t0 < 60, "".join(err_lines)
            time.sleep(0.02)
        out, err = stop_fbaudit(proc, err_lines, reader, sig)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    assert "stopping after the current batch" in err and "gave up" not in err and "FAILED" not in err, err
    report = json.loads(out)["sources"][0]
    assert report["stopped"] and 0 < report["packets"] < 3000, report
    shipped = log_rows(audited, "SELECT COUNT(*) FROM FBA_LOG_PACKET")[0][0]
    assert shipped == report["packets"]
    transfer.transfer(audited.config)
    assert assert_exactly_once(audited) == 3000

# --------------------------------------------------------------------------
# The log database is down
# --------------------------------------------------------------------------
class Proxy:
    """A TCP relay to the Firebird server that can be switched off: the log server 'goes down'."""

    def __init__(self, target=("127.0.0.1", 3050)):
        self.target = target
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.conns: list[socket.socket] = []
        self.closed = False
        self.sock.listen(50)
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                client, _ = self.sock.accept()
            except OSError:
                return
            if self.closed:
                client.close()
                return
            upstream = socket.create_connection(self.target)
            self.conns += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(a, b):
        try:
            while data := a.recv(65536):
                b.sendall(data)
        except OSError:
            pass
        finally:
            for s in (a, b):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                    s.close()
                except OSError:
                    pass

    def close(self):
        self.closed = True
        try:
            self.sock.shutdown(socket.SHUT_RDWR)   # wakes the accept() thread; close() alone may not
        except OSError:
            pass
        self.sock.close()
        for c in self.conns:
            try:
                c.shutdown(socket.SHUT_RDWR)
                c.close()
            except OSError:
                pass


def test_log_database_down_writers_unaffected_job_fails_clearly_then_drains(audited, monkeypatch):
    from dataclasses import replace
    monkeypatch.setattr(transfer.tenacity, "wait_exponential", lambda **kw: transfer.tenacity.wait_fixed(0.2))
    run_sql(audited, ["INSERT INTO ITEM VALUES (1, 'before', 1, NULL)"])
    assert transfer.transfer(audited.config).data["packets"] == 1
    cfg = audited.config
    moved = None
    if audited.target.is_server:
        proxy = Proxy()
        host, path = audited.log.database.split(":", 1)
        down_cfg = replace(cfg, log=replace(cfg.log, database=f"127.0.0.1/{proxy.port}:{path}"))
        assert transfer.transfer(down_cfg).data["sources"][0]["nothing_new"]   # the relay works
        proxy.close()
    else:
        moved = Path(audited.log.database + ".away")
        os.rename(audited.log.database, moved)
        down_cfg = cfg
    try:
        writer = Writer(audited, seed=3)
        writer.start()
        time.sleep(1.0)
        res = transfer.transfer(down_cfg, retries=2)
        writer.stop.set()
        writer.join()
        assert not writer.errors, writer.errors[:3]      # the application never noticed
        assert writer.commits > 10
        assert res.errors and isinstance(res.errors[0][1], transfer.ConnectionLost)
        msg = str(res.errors[0][1])
        assert "gave up after retrying" in msg and "nothing was lost" in msg and "log" in msg
        waiting = packet_states(audited).get(0, 0)
        assert waiting >= writer.commits
    finally:
        if moved:
            os.rename(moved, audited.log.database)
    res = transfer.transfer(cfg)
    assert not res.errors and res.data["packets"] == waiting
    assert assert_exactly_once(audited) == waiting + 1


def test_log_down_through_the_cli_exits_4_and_names_the_database(audited, tmp_path):
    run_sql(audited, ["INSERT INTO ITEM VALUES (1, 'x', 1, NULL)"])
    cfg = audited.write_config()
    text = cfg.read_text()
    bad_log = "127.0.0.1/1:/nowhere/log.fdb" if audited.target.is_server else str(tmp_path / "gone" / "log.fdb")
    cfg.write_text(text.replace(audited.log.database, bad_log))
    out = cli(cfg, "transfer", "--retries", "1")
    assert out.returncode == 4
    assert "FAILED: main:" in out.stderr and bad_log in out.stderr and "nothing was lost" in out.stderr
    pw = audited.log.password()
    if pw:
        assert pw not in out.stderr + out.stdout


def test_id_runs():
    assert transfer.id_runs([9, 1, 2, 3, 7, 10, 2]) == [(1, 3), (7, 7), (9, 10)]
    assert transfer.id_runs([]) == []


@pytest.mark.parametrize("value", ["", "x" * 1000, "y" * 1001, "é" * 500, "é" * 501, "z" * 70000])
def test_values_around_the_short_value_limit_arrive_intact(audited, value):
    """BLOB_INS fetches values up to 1000 bytes as VARCHAR, longer ones as BLOBs: both arrive byte for byte."""
    run_sql(audited, ["INSERT INTO ITEM (ID, NOTE) VALUES (1, ?)", "UPDATE ITEM SET NOTE = ? WHERE ID = 1"],
            {0: (value,), 1: (value + "!",)})
    assert transfer.transfer(audited.config).data["packets"] == 2
    versions = history.history(audited.config, "ITEM", "1")["versions"]
    assert versions[0]["changes"]["NOTE"] == {"old": None, "new": value}
    assert versions[1]["changes"]["NOTE"] == {"old": value, "new": value + "!"}


def test_restarted_packet_ids_stop_the_transfer_instead_of_dropping_changes(audited):
    """A source re-initialised or restored from a backup hands out old packet ids again:
    they must not be taken for packets already shipped."""
    run_sql(audited, ["INSERT INTO ITEM VALUES (1, 'first', 1, NULL)"])
    assert transfer.transfer(audited.config).data["packets"] == 1
    # What dropping the staging objects and `fbaudit init` again does: a new sequence and flag row.
    with audited.connect() as db:          # as fbaudit's own DDL: no schema event takes an id first
        as_fbaudit(db)
        for sql in ("DELETE FROM FBA_LOG_PACKET", "DELETE FROM FBA_LOG_PACKET_1", "DELETE FROM FBA_LOG_1",
                    "SET GENERATOR FBA_LOG_PACKET_ID TO 0",
                    "UPDATE FBA_LOG_PACKET_FLAG SET SEEN_ID = 0, SHIPPED_TO = 0", "DELETE FROM FBA_LOG_PENDING"):
            db.con.execute_immediate(sql)
        db.commit()
    run_sql(audited, ["INSERT INTO ITEM VALUES (2, 'second', 1, NULL)"])     # gets packet id 1 again
    res = transfer.transfer(audited.config)
    assert res.errors, res.lines
    msg = str(res.errors[0][1])
    assert "as a DIFFERENT change" in msg and "Nothing was shipped" in msg and "SET GENERATOR FBA_LOG_PACKET_ID TO 1" in msg
    assert log_rows(audited, "SELECT RECORD_KEY FROM FBA_LOG_PACKET") == [("1",)]       # nothing shipped
    assert packet_states(audited, "p.RECORD_KEY = '2'") == {0: 1}   # still waiting


def test_init_replaces_an_older_version_of_the_log_procedures(audited):
    with open_database(audited.log) as db:
        db.con.execute_immediate(
            "CREATE OR ALTER PROCEDURE FBA_BLOB_INS (SOURCE_ID INTEGER, DATA_TABLE SMALLINT, LO BIGINT, HI BIGINT, "
            "BASE_ VARCHAR(1000) CHARACTER SET UTF8, USER_ VARCHAR(63) CHARACTER SET UTF8, "
            "PASS_ VARCHAR(255) CHARACTER SET UTF8, ROLE_ VARCHAR(63) CHARACTER SET UTF8) RETURNS (ROWS_ INTEGER) "
            "AS BEGIN ROWS_ = 0; SUSPEND; END")     # an "old release" that copies nothing
        db.con.commit()
    res = capture.init(audited.config)
    assert "BLOB_INS (updated)" in res.lines[0]
    assert "already initialized" in capture.init(audited.config).lines[0]
    run_sql(audited, ["INSERT INTO ITEM VALUES (1, 'x', 1, NULL)"])
    assert transfer.transfer(audited.config).data["field_rows"] == 3


def test_upgrade_from_field_rows_ships_waiting_packets_exactly_once(audited):
    """A database audited before capture 2.0 (no PAYLOAD column, one LOG_1 row per field, the log's
    PACKETS_INS without unpacking): the transfer refuses until `fbaudit init`, which adds the column
    and replaces the procedure; `fbaudit sync` re-creates the trigger; then the packets waiting in
    the old form and the new packed ones all ship, exactly once, and history rebuilds both."""
    p = audited.prefix
    with audited.connect() as db:     # the old staging: no PAYLOAD, no DDL triggers, the old trigger gone
        for name in ("DDL_LOG", "DDL_FOLLOW", "DDL_GUARD", "AUDIT_1"):
            db.con.execute_immediate(f"DROP TRIGGER {p}{name}")
        db.con.execute_immediate(f"DROP VIEW {p}LOG_PARTS_KEPT")
        as_fbaudit(db)
        for name in ("LOG_PARTS", "LOG_PACKET_1", "LOG_PACKET_2"):
            db.con.execute_immediate(f"DROP TABLE {p}{name}")
        db.commit()
        db.execute(f"DELETE FROM {p}LOG_PACKET")             # the events of that DDL: not of the old staging
        db.commit()
        db.con.execute_immediate(f"ALTER TABLE {p}LOG_PACKET DROP PAYLOAD")
        db.commit()
        db.execute("INSERT INTO ITEM (ID, NAME, QTY) VALUES (1, 'Жук', 6)")     # what the old packets record
        db.commit()
    with open_database(audited.log) as db:
        db.con.execute_immediate(
            f"CREATE OR ALTER PROCEDURE {p}PACKETS_INS (SOURCE_ID INTEGER, LO BIGINT, HI BIGINT, "
            "BASE_ VARCHAR(1000) CHARACTER SET UTF8, USER_ VARCHAR(63) CHARACTER SET UTF8, "
            "PASS_ VARCHAR(255) CHARACTER SET UTF8, ROLE_ VARCHAR(63) CHARACTER SET UTF8) "
            "RETURNS (PACKET_ID BIGINT, DATA_TABLE SMALLINT, NEW_ SMALLINT) AS BEGIN EXIT; END")
        db.commit()
    # Two packets as the old trigger wrote them: the packet row, then a row per field in V_LOG_1.
    old = [(1, 1, "1", [(1, None, b"1"), (2, None, "Жук".encode()), (3, None, b"5")]),
           (2, 2, "1", [(3, b"5", b"6")])]
    with audited.connect() as db:
        for pid, op, key, fields in old:
            db.execute(f"INSERT INTO {p}LOG_PACKET (ID, CREATED_AT, OPERATION, NUM_TABLE, DATA_TABLE, RECORD_KEY, "
                       f"TRANSACTION_ID) VALUES (?, LOCALTIMESTAMP, ?, 1, 1, ?, CURRENT_TRANSACTION)", (pid, op, key))
            for num, o, n in fields:
                db.execute(f"INSERT INTO {p}V_LOG_1 (PACKET, NUM_POLE, BLOB_OLD, BLOB_NEW) VALUES (?, ?, ?, ?)",
                           (pid, num, o, n))
        db.execute(f"SET GENERATOR {p}LOG_PACKET_ID TO 2")
        db.commit()
    before = transfer.transfer(audited.config)
    assert before.errors and "fbaudit init" in str(before.errors[0][1]) and before.data["packets"] == 0
    with pytest.raises(FbauditError, match=r"LOG_PACKET\.PAYLOAD is missing.*fbaudit init"):
        capture.sync(audited.config)          # the new trigger needs the column: init first, nothing changed
    res = capture.init(audited.config)
    assert any("PAYLOAD" in line for line in res.lines) and any("PACKETS_INS" in line for line in res.lines), res.lines
    capture.sync(audited.config)
    run_sql(audited, ["UPDATE ITEM SET NAME = 'Жук 2', QTY = NULL WHERE ID = 1",
                      "INSERT INTO ITEM (ID, NAME, NOTE) VALUES (2, 'new', ?)"], {1: ["ж" * 50_000]})
    with audited.connect() as db:
        payloads = [r[0] for r in db.query(f"SELECT PAYLOAD IS NULL FROM {all_packets(audited, db)} p ORDER BY ID")]
        db.commit()
    assert payloads == [True, True, False, False]
    res = transfer.transfer(audited.config)
    assert not res.errors and res.data["packets"] == 4 and res.data["field_rows"] == 4 + 2 + 3, res.lines
    assert_exactly_once(audited)
    again = transfer.transfer(audited.config)
    assert again.data["packets"] == 0
    h = history.history(audited.config, "ITEM", "1")
    assert [v["operation"] for v in h["versions"]] == ["insert", "update", "update"]
    assert [v["changes"] for v in h["versions"]] == [
        {"ID": {"old": None, "new": "1"}, "NAME": {"old": None, "new": "Жук"}, "QTY": {"old": None, "new": "5"}},
        {"QTY": {"old": "5", "new": "6"}},
        {"NAME": {"old": "Жук", "new": "Жук 2"}, "QTY": {"old": "6", "new": None}}]
    new = history.history(audited.config, "ITEM", "2")["versions"][0]["changes"]
    assert new["NOTE"] == {"old": None, "new": "ж" * 50_000} and new["NAME"]["new"] == "new"


def test_upgrade_from_progress_kept_in_each_packet(audited):
    """A staging of an earlier release (the transfer set each packet's STATE; every packet in
    LOG_PACKET; no SHIPPED_TO, LOG_PENDING, LOG_FAILED, LOG_PACKET_1/2): status still answers, the
    transfer refuses until `fbaudit init`, which sets SHIPPED_TO from the packets' STATE once and
    moves failed packets (and waiting ones with attempts) to LOG_FAILED. Then waiting packets ship
    exactly once, the failed one stays failed until `fbaudit retry`, and nothing is shipped twice."""
    p = audited.prefix
    run_sql(audited, [f"INSERT INTO ITEM VALUES ({i}, 'shipped', {i}, NULL)" for i in (1, 2, 3)])
    assert transfer.transfer(audited.config).data["packets"] == 3
    shipped = main_rows(audited, f"SELECT GEN_ID({p}LOG_PACKET_ID, 0) FROM RDB$DATABASE")[0][0]
    run_sql(audited, [f"INSERT INTO ITEM VALUES ({i}, 'waiting', {i}, NULL)" for i in (4, 5, 6, 7)])
    cols = ("ID, CREATED_AT, OPERATION, NUM_TABLE, DATA_TABLE, RECORD_KEY, AUTHOR, DB_USER, CLIENT_ADDRESS, "
            "TRANSACTION_ID, CHANGE_COMMENT, PAYLOAD")
    with audited.connect() as db:       # what that release left: its packets in LOG_PACKET, shipped ones STATE 1
        as_fbaudit(db)
        db.execute(f"INSERT INTO {p}LOG_PACKET ({cols}) SELECT {cols} FROM {p}LOG_PACKET_1")
        db.execute(f"UPDATE {p}LOG_PACKET SET STATE = 1, ATTEMPTS = 1 WHERE ID <= ?", (shipped,))
        db.commit()
        as_fbaudit(db)
        for sql in (f"DROP TABLE {p}LOG_PENDING", f"DROP TABLE {p}LOG_FAILED",
                    f"ALTER TABLE {p}LOG_PACKET_FLAG DROP SHIPPED_TO", f"DROP TABLE {p}LOG_PACKET_1",
                    f"DROP TABLE {p}LOG_PACKET_2"):
            db.con.execute_immediate(sql)
        db.commit()
    with audited.connect() as db:       # packet 4 failed for good, packet 5 failed twice so far
        db.execute(f"UPDATE {p}LOG_PACKET SET STATE = 2, ATTEMPTS = 5, LAST_ERROR = 'old failure' "
                   f"WHERE RECORD_KEY = '4'")
        db.execute(f"UPDATE {p}LOG_PACKET SET ATTEMPTS = 2, LAST_ERROR = 'twice' WHERE RECORD_KEY = '5'")
        db.commit()
    src = capture.status(audited.config).data["sources"][0]
    assert (src["waiting"], src["failed"], src["done"]) == (3, 1, 3)
    refused = transfer.transfer(audited.config)
    assert refused.errors and "fbaudit init" in str(refused.errors[0][1]) and refused.data["packets"] == 0
    capture.init(audited.config)
    assert packet_states(audited) == {0: 3, 1: 3, 2: 1}
    assert main_rows(audited, f"SELECT p.RECORD_KEY, f.STATE, f.ATTEMPTS FROM {p}LOG_FAILED f "
                              f"JOIN {p}LOG_PACKET p ON p.ID = f.ID ORDER BY 1") == [("4", 2, 5), ("5", 0, 2)]
    res = transfer.transfer(audited.config)
    assert not res.errors and res.data["packets"] == 3, res.lines
    assert res.data["sources"][0]["already_in_log"] == 0, res.lines      # packet 5 (requeued) read once
    assert packet_states(audited) == {1: 6, 2: 1}
    assert transfer.retry(audited.config, all_failed=True).data["sources"][0]["requeued"] == [
        main_rows(audited, f"SELECT ID FROM {p}LOG_PACKET WHERE RECORD_KEY = '4'")[0][0]]
    assert transfer.transfer(audited.config).data["packets"] == 1
    assert assert_exactly_once(audited) == 7
    assert transfer.transfer(audited.config).data["sources"][0]["nothing_new"]


def test_upgrade_from_packets_deleted_by_rotation(audited):
    """A staging of the release before (the audit trigger inserted its packets into LOG_PACKET, which
    rotation emptied by DELETE; no LOG_PACKET_1/2; the log's PACKETS_INS read LOG_PACKET only), with
    packets shipped and packets waiting: the transfer refuses until `fbaudit init`, and so does
    `fbaudit sync`; after `init` the waiting packets ship exactly once while the old trigger still
    writes LOG_PACKET; after `sync` the trigger writes LOG_PACKET_1, and the next rotation deletes
    the old packets and drops the new ones. Every change is in the log once."""
    import re
    p = audited.prefix
    cols = ("ID, CREATED_AT, OPERATION, NUM_TABLE, DATA_TABLE, RECORD_KEY, AUTHOR, DB_USER, CLIENT_ADDRESS, "
            "TRANSACTION_ID, CHANGE_COMMENT, PAYLOAD")
    run_sql(audited, [f"INSERT INTO ITEM VALUES ({i}, 'shipped', {i}, NULL)" for i in (1, 2, 3)])
    assert transfer.transfer(audited.config).data["packets"] == 3
    with audited.connect() as db:     # the release before: its trigger, its tables, its log procedure
        body = objects.installed_trigger_body(db, p, 1)
        old = re.sub(r"EXECUTE STATEMENT \(IIF\(dt = 2, '[^']*',\s*'[^']*'\)\)\s*\(", f"INSERT INTO {p}LOG_PACKET ({cols}) VALUES (", body)
        old = re.sub(r"\)\s*WITH CALLER PRIVILEGES;", ");", old)
        assert old.count(f"INSERT INTO {p}LOG_PACKET (") == 2 and "EXECUTE STATEMENT" not in old
        as_fbaudit(db)
        db.execute(f"INSERT INTO {p}LOG_PACKET ({cols}) SELECT {cols} FROM {p}LOG_PACKET_1")
        db.commit()
        as_fbaudit(db)
        db.con.execute_immediate(f"CREATE OR ALTER TRIGGER {p}AUDIT_1 FOR ITEM ACTIVE AFTER INSERT OR UPDATE "
                                 f"OR DELETE POSITION 32000 {old}")
        db.con.execute_immediate(f"GRANT INSERT ON {p}LOG_PACKET TO TRIGGER {p}AUDIT_1")
        for t in ("LOG_PACKET_1", "LOG_PACKET_2"):
            db.con.execute_immediate(f"DROP TABLE {p}{t}")
        db.con.execute_immediate(f"DROP TRIGGER {p}DDL_GUARD")
        db.con.execute_immediate(f"ALTER TABLE {p}LOG_PENDING ALTER COLUMN TX_LIMIT TO TX_MARK")
        db.commit()
    with open_database(audited.log) as db:
        src = db.query("SELECT RDB$PROCEDURE_SOURCE FROM RDB$PROCEDURES WHERE RDB$PROCEDURE_NAME = ?",
                       (f"{p}PACKETS_INS",), whole_blobs=True)[0][0]
        db.commit()
        params = db.query("SELECT TRIM(RDB$PARAMETER_NAME), RDB$PARAMETER_TYPE FROM RDB$PROCEDURE_PARAMETERS "
                          "WHERE RDB$PROCEDURE_NAME = ? ORDER BY RDB$PARAMETER_TYPE, RDB$PARAMETER_NUMBER",
                          (f"{p}PACKETS_INS",))
        db.commit()
        start = src.index("|| 'FROM (SELECT")
        end = src.index("P2')", start) + len("P2')")
        src = src[:start] + f"|| 'FROM {p}LOG_PACKET WHERE ID BETWEEN :lo AND :hi ORDER BY ID')" + src[end:]
        header = (f"CREATE OR ALTER PROCEDURE {p}PACKETS_INS (SOURCE_ID INTEGER, LO BIGINT, HI BIGINT, "
                  "BASE_ VARCHAR(1000) CHARACTER SET UTF8, USER_ VARCHAR(63) CHARACTER SET UTF8, "
                  "PASS_ VARCHAR(255) CHARACTER SET UTF8, ROLE_ VARCHAR(63) CHARACTER SET UTF8) "
                  "RETURNS (PACKET_ID BIGINT, DATA_TABLE SMALLINT, NEW_ SMALLINT, FIELDS_ INTEGER) ")
        assert [n for n, _ in params] == ["SOURCE_ID", "LO", "HI", "BASE_", "USER_", "PASS_", "ROLE_",
                                          "PACKET_ID", "DATA_TABLE", "NEW_", "FIELDS_"]
        db.con.execute_immediate(header + ("" if src.lstrip().upper().startswith("AS") else "AS\n") + src)
        db.commit()
    run_sql(audited, [f"INSERT INTO ITEM VALUES ({i}, 'waiting', {i}, NULL)" for i in (4, 5, 6)])
    refused = transfer.transfer(audited.config)
    assert refused.errors and "fbaudit init" in str(refused.errors[0][1]) and refused.data["packets"] == 0
    with pytest.raises(FbauditError, match=r"LOG_PACKET_2 is missing.*fbaudit init"):
        capture.sync(audited.config)
    res = capture.init(audited.config)
    assert any("LOG_PACKET_1" in line for line in res.lines) and any("PACKETS_INS" in line for line in res.lines)
    assert main_rows(audited, "SELECT COUNT(*) FROM RDB$RELATION_FIELDS WHERE RDB$RELATION_NAME = ? "
                              "AND RDB$FIELD_NAME = 'TX_LIMIT'", (f"{p}LOG_PENDING",)) == [(1,)]
    res = transfer.transfer(audited.config)
    assert not res.errors and res.data["packets"] == 3, res.lines
    run_sql(audited, ["UPDATE ITEM SET NAME = 'old trigger' WHERE ID = 1"])      # still the old trigger
    capture.sync(audited.config)
    run_sql(audited, ["UPDATE ITEM SET NAME = 'new trigger' WHERE ID = 1"])
    assert main_rows(audited, f"SELECT COUNT(*) FROM {p}LOG_PACKET_1") == [(1,)]
    assert transfer.transfer(audited.config).data["packets"] == 2
    assert assert_exactly_once(audited) >= 8
    rep = rotation.rotate(audited.config, force=True, max_wait=10)
    assert not rep.errors, rep.lines
    assert main_rows(audited, f"SELECT (SELECT COUNT(*) FROM {p}LOG_PACKET) + (SELECT COUNT(*) FROM "
                              f"{p}LOG_PACKET_1) FROM RDB$DATABASE") == [(0,)]
    names = [v["changes"].get("NAME", {}).get("new") for v in history.history(audited.config, "ITEM", "1")["versions"]]
    assert names == ["shipped", "old trigger", "new trigger"]
    assert len(log_rows(audited, "SELECT 1 FROM FBA_LOG_PACKET WHERE NUM_TABLE <> 0")) == 8


def test_a_change_is_one_record_version_in_the_main_database(audited):
    """A packet's whole life in the main database: 10,000 changes in 10 transactions, transfers
    running while they commit, a rotation. Counted by Firebird itself, with triggers on the three
    packet tables that move sequences (not transactional: a rolled-back write counts too): 10,000
    inserts (all into LOG_PACKET_1, the packet table of the current data table), not one update
    (the transfer keeps what it shipped in LOG_PACKET_FLAG / LOG_PENDING, a few rows per batch),
    and not one delete: rotation drops LOG_PACKET_1 with its packets and creates it empty. One
    record version per change; it was three, then two."""
    p = audited.prefix
    with audited.connect() as db:
        as_fbaudit(db)                   # the test's own DDL, not a schema change to log
        for op in ("INSERT", "UPDATE", "DELETE"):
            db.con.execute_immediate(f"CREATE SEQUENCE T_{op}")
            for n, table in enumerate(("LOG_PACKET", "LOG_PACKET_1", "LOG_PACKET_2")):
                db.con.execute_immediate(f"CREATE TRIGGER T_{op}_{n} FOR {p}{table} AFTER {op} AS "
                                         f"DECLARE n BIGINT; BEGIN n = GEN_ID(T_{op}, 1); END")
        db.con.execute_immediate("CREATE SEQUENCE T_FLAG")
        db.con.execute_immediate(f"CREATE TRIGGER T_FLAG FOR {p}LOG_PACKET_FLAG AFTER UPDATE AS "
                                 "DECLARE n BIGINT; BEGIN n = GEN_ID(T_FLAG, 1); END")
        db.commit()

    def counts() -> tuple:
        return main_rows(audited, "SELECT GEN_ID(T_INSERT, 0), GEN_ID(T_UPDATE, 0), GEN_ID(T_DELETE, 0), "
                                  "GEN_ID(T_FLAG, 0) FROM RDB$DATABASE")[0]
    first = main_rows(audited, f"SELECT COUNT(*) FROM {p}LOG_PACKET")[0][0]    # the events of the setup
    assert main_rows(audited, f"SELECT COUNT(*) FROM {p}LOG_PACKET_1")[0][0] == 0
    relation = main_rows(audited, "SELECT RDB$RELATION_ID FROM RDB$RELATIONS WHERE RDB$RELATION_NAME = ?",
                         (f"{p}LOG_PACKET_1",))[0][0]
    base = counts()
    stop = threading.Event()

    def ship() -> None:
        while not stop.is_set():
            transfer.transfer(audited.config, batch=500)
    shipper = threading.Thread(target=ship)
    shipper.start()
    try:
        with audited.connect() as db:
            for k in range(10):          # 10 transactions of 1,000 changes each
                db.con.execute_immediate(
                    f"EXECUTE BLOCK AS DECLARE i INTEGER = {k * 400}; BEGIN WHILE (i < {k * 400 + 400}) DO "
                    "BEGIN i = i + 1; INSERT INTO ITEM VALUES (:i, 'n' || :i, :i, NULL); END "
                    f"UPDATE ITEM SET QTY = QTY + 1 WHERE ID > {k * 400} AND ID <= {k * 400 + 400}; "
                    f"DELETE FROM ITEM WHERE ID > {k * 400} AND ID <= {k * 400 + 200}; END")
                db.commit()
    finally:
        stop.set()
        shipper.join()
    transfer.transfer(audited.config)
    assert assert_exactly_once(audited) == first + 10000
    inserts, updates, deletes, flag = (a - b for a, b in zip(counts(), base))
    assert (inserts, updates, deletes) == (10000, 0, 0)
    assert main_rows(audited, f"SELECT COUNT(*) FROM {p}LOG_PACKET_1")[0][0] == 10000
    assert flag <= 2 * (10000 // 500) + 20, flag        # the transfer's record: about one update per batch
    rep = rotation.rotate(audited.config, force=True, max_wait=10)
    assert not rep.errors, rep.lines
    assert rep.data["sources"][0]["packets_deleted"] == 10000 + first
    # Only the setup's events, in LOG_PACKET, were deleted; LOG_PACKET_1 was dropped and made anew.
    assert tuple(a - b for a, b in zip(counts(), base))[:3] == (10000, 0, first)
    assert main_rows(audited, f"SELECT COUNT(*) FROM {p}LOG_PACKET_1")[0][0] == 0
    assert main_rows(audited, "SELECT RDB$RELATION_ID FROM RDB$RELATIONS WHERE RDB$RELATION_NAME = ?",
                     (f"{p}LOG_PACKET_1",))[0][0] != relation
    assert main_rows(audited, f"SELECT COUNT(*) FROM {p}LOG_PACKET") == [(0,)]


def test_writers_with_rollbacks_two_transfers_a_baseline_and_a_rotation_lose_nothing(audited):
    """The transfer's own record under everything at once: 3 writers (one transaction in five rolled
    back, some held open for a while), two transfer loops of the same source with different batch
    sizes, a baseline of another table taken meanwhile (ids reserved long before they are written)
    and a forced rotation. Afterwards every committed change is in the log exactly once, nothing is
    waiting, no range is left, and the fast check is back on tier 1."""
    audited.sql("CREATE TABLE OTHER (ID INTEGER NOT NULL PRIMARY KEY, V VARCHAR(20))")
    run_sql(audited, [f"INSERT INTO OTHER VALUES ({i}, 'before')" for i in range(1, 201)])
    stop = threading.Event()
    committed = [0, 0, 0]
    errors: list[str] = []

    def write(n: int) -> None:
        rnd = random.Random(n)
        try:
            with audited.connect() as db:
                k = 0
                while not stop.is_set():
                    k += 1
                    cur = db.con.cursor()
                    cur.execute("INSERT INTO ITEM VALUES (?, 'w', ?, NULL)", (n * 1_000_000 + k, k))
                    cur.execute("UPDATE ITEM SET QTY = QTY + 1 WHERE ID = ?", (n * 1_000_000 + k,))
                    cur.close()
                    if rnd.random() < 0.1:
                        time.sleep(rnd.uniform(0.1, 0.4))          # held open while transfers pass
                    if rnd.random() < 0.2:
                        db.rollback()
                    else:
                        db.commit()
                        committed[n] += 2
        except Exception as exc:                                    # noqa: BLE001 - reported below
            errors.append(f"writer {n}: {exc}")

    def ship(batch: int) -> None:
        while not stop.is_set():
            res = transfer.transfer(audited.config, batch=batch)
            errors.extend(f"transfer: {e}" for _s, e in res.errors)

    threads = [threading.Thread(target=write, args=(n,)) for n in range(3)]
    threads += [threading.Thread(target=ship, args=(b,)) for b in (7, 500)]
    for t in threads:
        t.start()
    try:
        time.sleep(1.0)
        base = capture.enable(audited.config, "OTHER", baseline=True)
        time.sleep(1.0)
        rot = rotation.rotate(audited.config, force=True, max_wait=20)
        time.sleep(1.0)
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert not errors, errors[:3]
    assert base.data["sources"][0]["baseline"]["rows"] == 200
    assert not rot.errors, rot.lines
    transfer.transfer(audited.config)
    assert fast_check(audited)[0] is False          # this one may end the last ranges (tier 2)
    assert fast_check(audited) == (False, 1)
    assert main_rows(audited, "SELECT COUNT(*) FROM FBA_LOG_PENDING") == [(0,)]
    assert packet_states(audited).keys() <= {1}
    logged = dict(log_rows(audited, "SELECT t.TABLE_NAME, COUNT(*) FROM FBA_LOG_PACKET p JOIN FBA_DICT_TABLES t "
                                    "ON t.SOURCE_ID = p.SOURCE_ID AND t.NUM_TABLE = p.NUM_TABLE GROUP BY 1"))
    assert logged == {"ITEM": sum(committed), "OTHER": 200}, (logged, committed)
    ids = log_rows(audited, "SELECT COUNT(*), COUNT(DISTINCT PACKET_ID) FROM FBA_LOG_PACKET")[0]
    assert ids[0] == ids[1]
