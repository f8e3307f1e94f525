"""Rotation: the data table out of use is emptied by DROP + CREATE, never losing a row.

Real databases: embedded 3.0/4.0/5.0 and the 3.0 server. The first test keeps
the Firebird behaviour (docs/rotation.md) as measured facts the protocol is built on.
"""
from __future__ import annotations

import dataclasses

import json
import os
import subprocess
import sys
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from firebird.driver import Isolation

from fbaudit import capture, history, rotation, templates, transfer
from fbaudit.db import open_database
from fbaudit.errors import FbauditError

from fbaudit.forms import unpack
from helpers import all_packets, as_fbaudit, run_sql

ROOT = Path(__file__).resolve().parent.parent
# A day after init (LOG_INFO.DATA = init time), so the first rotation is due.
DAY0 = datetime.now().replace(microsecond=0) + timedelta(days=1, hours=1)


@pytest.fixture
def audited(project):
    project.sql("CREATE TABLE ITEM (ID INTEGER NOT NULL PRIMARY KEY, NAME VARCHAR(40) CHARACTER SET UTF8, QTY INTEGER)")
    capture.init(project.config)
    capture.enable(project.config, "ITEM")
    return project


def main_scalar(project, sql, params=()):
    with project.connect() as db:
        v = db.scalar(sql, params)
        db.commit()
        return v


def main_rows_all(project, sql, params=()):
    with project.connect() as db:
        rows = db.query(sql, params)
        db.commit()
        return rows


def log_versions(project) -> dict[str, int]:
    """Packets in the log database per record key."""
    with open_database(project.log) as db:
        rows = db.query("SELECT RECORD_KEY, COUNT(*) FROM FBA_LOG_PACKET GROUP BY RECORD_KEY")
        db.commit()
    return dict(rows)


def rows_in(project, n: int) -> int:
    """Field rows staged in data table n: the packed fields of its packets (capture 2.0) and the rows
    of LOG_n (packets written by an older trigger; LOG_3: rows that reached the stand-in table)."""
    with project.connect() as db:
        packed = sum(len(unpack(r[0])) for r in db.query(
            f"SELECT PAYLOAD FROM {all_packets(project, db)} p WHERE DATA_TABLE = ? AND PAYLOAD IS NOT NULL", (n,),
            whole_blobs=True))
        rows = db.scalar(f"SELECT COUNT(*) FROM FBA_LOG_{n}")
        db.commit()
    return packed + rows


def old_style_trigger(db) -> None:
    """ITEM's trigger as fbaudit wrote it before capture 2.0 (still installed until `fbaudit sync`):
    the packet without PAYLOAD, then one row per field through the view V_LOG_1, which is what
    rotation's redirect of the view is for."""
    as_fbaudit(db)
    db.con.execute_immediate(
        "CREATE OR ALTER TRIGGER FBA_AUDIT_1 FOR ITEM ACTIVE AFTER INSERT OR UPDATE OR DELETE POSITION 32000 AS "
        "DECLARE pk BIGINT; "
        "BEGIN "
        "  pk = GEN_ID(FBA_LOG_PACKET_ID, 1); "
        "  INSERT INTO FBA_LOG_PACKET (ID, CREATED_AT, OPERATION, NUM_TABLE, DATA_TABLE, RECORD_KEY, TRANSACTION_ID) "
        "    VALUES (:pk, LOCALTIMESTAMP, IIF(INSERTING, 1, IIF(UPDATING, 2, 3)), 1, 1, "
        "            CAST(IIF(DELETING, OLD.ID, NEW.ID) AS VARCHAR(20)), CURRENT_TRANSACTION); "
        "  IF (NEW.ID IS DISTINCT FROM OLD.ID) THEN "
        "    INSERT INTO FBA_V_LOG_1 (PACKET, NUM_POLE, BLOB_OLD, BLOB_NEW) VALUES (:pk, 1, OLD.ID, NEW.ID); "
        "  IF (NEW.NAME IS DISTINCT FROM OLD.NAME) THEN "
        "    INSERT INTO FBA_V_LOG_1 (PACKET, NUM_POLE, BLOB_OLD, BLOB_NEW) VALUES (:pk, 2, OLD.NAME, NEW.NAME); "
        "  IF (NEW.QTY IS DISTINCT FROM OLD.QTY) THEN "
        "    INSERT INTO FBA_V_LOG_1 (PACKET, NUM_POLE, BLOB_OLD, BLOB_NEW) VALUES (:pk, 3, OLD.QTY, NEW.QTY); "
        "END")
    db.commit()


def rotate(project, **kw):
    kw.setdefault("max_wait", 2)
    return rotation.rotate_source(project.config, project.config.sources[0], **kw)


def insert(db, i: int) -> None:
    db.con.cursor().execute("INSERT INTO ITEM (ID, NAME, QTY) VALUES (?, 'n', 1)", (i,))


def test_firebird_behaviour_rotation_relies_on(audited):
    """docs/rotation.md: a cached trigger writes through a redirected view into
    the old table until the trigger is re-created; a transaction that wrote to a table
    keeps it "in use" for DROP until it ends. Also: DROP + CREATE of the same table in
    one transaction works."""
    p = audited
    s = open_database(p.main, isolation=Isolation.SNAPSHOT)
    admin = open_database(p.main, lock_timeout=1)
    try:
        old_style_trigger(admin)                       # the trigger form that writes through the view
        s.con.begin()
        insert(s, 1)                                   # compiles the trigger; writes LOG_1
        as_fbaudit(admin)
        admin.con.execute_immediate("CREATE OR ALTER VIEW FBA_V_LOG_1 (PACKET, NUM_POLE, BLOB_OLD, BLOB_NEW) AS "
                                    "SELECT PACKET, NUM_POLE, BLOB_OLD, BLOB_NEW FROM FBA_LOG_3")
        admin.commit()
        insert(s, 2)                                   # cached: still LOG_1
        counts = s.query("SELECT (SELECT COUNT(*) FROM FBA_LOG_1), (SELECT COUNT(*) FROM FBA_LOG_3) FROM RDB$DATABASE")
        assert counts == [(6, 0)]
        with admin.con.cursor() as cur:
            cur.stream_blob_threshold = -1
            cur.execute("SELECT RDB$TRIGGER_SOURCE FROM RDB$TRIGGERS WHERE RDB$TRIGGER_NAME = 'FBA_AUDIT_1'")
            src = cur.fetchone()[0]
        as_fbaudit(admin)
        admin.con.execute_immediate("CREATE OR ALTER TRIGGER FBA_AUDIT_1 FOR ITEM ACTIVE AFTER INSERT OR UPDATE OR "
                                    "DELETE POSITION 32000 " + src)
        admin.commit()
        insert(s, 3)                                   # recompiled: now LOG_3, even inside the same SNAPSHOT
        counts = s.query("SELECT (SELECT COUNT(*) FROM FBA_LOG_1), (SELECT COUNT(*) FROM FBA_LOG_3) FROM RDB$DATABASE")
        assert counts == [(6, 3)]
        with pytest.raises(Exception, match="in use"):
            admin.con.execute_immediate("DROP TABLE FBA_LOG_1")
            admin.commit()
        admin.rollback()
        s.rollback()
        admin.con.execute_immediate("DROP TABLE FBA_LOG_1")
        admin.con.execute_immediate("CREATE TABLE FBA_LOG_1 (PACKET BIGINT NOT NULL, NUM_POLE INTEGER NOT NULL, "
                                    "BLOB_OLD BLOB SUB_TYPE BINARY, BLOB_NEW BLOB SUB_TYPE BINARY)")
        admin.commit()
    finally:
        s.close()
        admin.close()


def test_firebird_behaviour_packet_tables_rely_on(audited):
    """docs/rotation.md "Packets dropped with their table": a trigger that inserts into a table stops
    its DROP (the dependency); the audit trigger's EXECUTE STATEMENT leaves none. An attachment that
    wrote through it, kept its transaction open until the rotation waited, then idled, holds nothing:
    another drops the table, creates it again, and that attachment's next write lands in the new
    table. The DROP takes the table's privileges along (an application user's write through the
    trigger then fails: tests/test_privileges.py), so rotation gives them back."""
    p = audited
    with open_database(p.main) as admin:
        as_fbaudit(admin)
        admin.con.execute_immediate("CREATE TABLE P1 (ID INTEGER)")
        admin.con.execute_immediate("CREATE TABLE P2 (ID INTEGER)")
        admin.commit()
        admin.con.execute_immediate("CREATE TRIGGER P2_WRITER FOR P1 AFTER INSERT AS BEGIN "
                                    "INSERT INTO P2 (ID) VALUES (NEW.ID); END")
        admin.commit()
        as_fbaudit(admin)
        with pytest.raises(Exception, match="(?i)cannot delete|in use|depend"):
            admin.con.execute_immediate("DROP TABLE P2")
            admin.commit()
        admin.rollback()
    writer = open_database(p.main)
    try:
        insert(writer, 1)                              # the audit trigger writes LOG_PACKET_1 (ES)
        writer.commit()
        with open_database(p.main, lock_timeout=1) as admin:
            as_fbaudit(admin)
            admin.con.execute_immediate("DROP TABLE FBA_LOG_PACKET_1")     # no dependency, not in use
            create = [st.sql for st in templates.render("main_init", P="FBA_") if st.object == "LOG_PACKET_1"]
            admin.con.execute_immediate(create[0])
            admin.commit()
            granted = ("SELECT COUNT(*) FROM RDB$USER_PRIVILEGES WHERE RDB$RELATION_NAME = 'FBA_LOG_PACKET_1' "
                       "AND RDB$USER = 'FBA_AUDIT_1'")
            assert admin.scalar(granted) == 0          # the privilege went with the table
            admin.con.execute_immediate("GRANT INSERT ON FBA_LOG_PACKET_1 TO TRIGGER FBA_AUDIT_1")
            admin.commit()
        insert(writer, 3)
        writer.commit()
        assert main_scalar(p, "SELECT LIST(RECORD_KEY) FROM FBA_LOG_PACKET_1") == "3"
        assert main_scalar(p, granted) == 1
    finally:
        writer.close()


def test_nobody_but_fbaudit_drops_a_packet_table_and_a_missing_one_stops_everything_clearly(audited):
    """Dropping FBA_LOG_PACKET_2 would make every audited write fail once rotation switches to it: the
    DDL guard refuses anyone's DROP but fbaudit's own. If it is gone anyway (dropped with the guard
    off), status is CRITICAL, rotation refuses to switch and the transfer to run, each saying to run
    `fbaudit init`, which makes it again and gives the audit triggers their INSERT on it; writes to
    the current table go on all along."""
    with open_database(audited.main) as admin:
        with pytest.raises(Exception, match="holds the audit triggers' packets"):
            admin.con.execute_immediate("DROP TABLE FBA_LOG_PACKET_2")
            admin.commit()
        admin.rollback()
        as_fbaudit(admin)                              # the guard lets fbaudit's own DDL through
        admin.con.execute_immediate("DROP TABLE FBA_LOG_PACKET_2")
        admin.commit()
    run_sql(audited, ["INSERT INTO ITEM VALUES (1, 'a', 1)"])          # LOG_PACKET_1 is still current
    st = capture.status(audited.config).data["sources"][0]
    assert st["missing_packet_tables"] == ["FBA_LOG_PACKET_2"]
    with pytest.raises(FbauditError, match=r"FBA_LOG_PACKET_2 is missing.*fbaudit init.*Nothing changed"):
        rotate(audited, now=DAY0)
    assert main_scalar(audited, "SELECT ID_TABLE FROM FBA_LOG_INFO") == 1             # not switched
    res = transfer.transfer(audited.config)
    assert res.errors and "FBA_LOG_PACKET_2 is missing" in str(res.errors[0][1])
    res = capture.init(audited.config)
    assert any("LOG_PACKET_2" in line for line in res.lines), res.lines
    assert transfer.transfer(audited.config).data["packets"] == 1
    assert rotate(audited, now=DAY0).outcome == "done"
    run_sql(audited, ["INSERT INTO ITEM VALUES (2, 'b', 2)"])          # into the new LOG_PACKET_2
    assert transfer.transfer(audited.config).data["packets"] == 1


def test_privileges_on_the_tables_rotation_drops_are_given_back(audited):
    """A DROP takes a table's privileges with it. An admin's read-only transfer user (docs/transfer.md)
    keeps SELECT on the data and packet tables, and the audit trigger its INSERT, through rotations
    that drop and create each table again."""
    audited.sql("CREATE ROLE R1", "GRANT SELECT ON FBA_LOG_PACKET_1 TO USER LOGREADER",
                "GRANT SELECT ON FBA_LOG_PACKET_2 TO USER LOGREADER WITH GRANT OPTION",
                "GRANT SELECT ON FBA_LOG_1 TO USER LOGREADER", "GRANT UPDATE (PAYLOAD) ON FBA_LOG_PACKET_1 TO ROLE R1")

    def grants() -> set:
        return set(main_rows_all(audited, "SELECT TRIM(TRAILING FROM RDB$RELATION_NAME), TRIM(TRAILING FROM RDB$USER), "
                                 "RDB$USER_TYPE, TRIM(RDB$PRIVILEGE), RDB$GRANT_OPTION, TRIM(TRAILING FROM RDB$FIELD_NAME) "
                                 "FROM RDB$USER_PRIVILEGES WHERE RDB$RELATION_NAME IN ('FBA_LOG_PACKET_1', "
                                 "'FBA_LOG_PACKET_2', 'FBA_LOG_1', 'FBA_LOG_2') AND RDB$USER <> CURRENT_USER"))
    before = grants()
    assert ("FBA_LOG_PACKET_1", "FBA_AUDIT_1", 2, "I", 0, None) in before
    assert ("FBA_LOG_PACKET_1", "R1", 13, "U", 0, "PAYLOAD") in before
    for day in range(3):                               # LOG_1 dropped twice, LOG_2 once
        run_sql(audited, [f"INSERT INTO ITEM VALUES ({day + 1}, 'a', 1)"])
        transfer.transfer(audited.config)
        rep = rotate(audited, now=DAY0 + timedelta(days=day))
        assert rep.outcome == "done" and rep.packets_deleted >= 1, rep.message
    assert grants() == before


def test_rotation_empties_the_old_table_and_loses_nothing(audited):
    run_sql(audited, [f"INSERT INTO ITEM VALUES ({i}, 'a', {i})" for i in range(1, 11)])
    assert transfer.transfer(audited.config).data["packets"] == 10
    assert rows_in(audited, 1) == 30
    rep = rotate(audited, now=DAY0)
    assert (rep.outcome, rep.phase, rep.old_table, rep.new_table) == ("done", "done", 1, 2)
    # The fields were packed in the packets (capture 2.0): LOG_1 itself held no rows.
    assert rep.rows_dropped == 0 and rep.packets_deleted == 10
    assert [s["step"] for s in rep.steps] == ["switch", "wait", "redirect", "verify", "drop", "restore"]
    assert rows_in(audited, 1) == 0 and rows_in(audited, 3) == 0
    assert main_scalar(audited, f"SELECT COUNT(*) FROM {all_packets(audited)} p") == 0
    # New changes go to LOG_2 through the same, re-created triggers.
    run_sql(audited, ["UPDATE ITEM SET QTY = QTY + 1 WHERE ID <= 5"])
    assert rows_in(audited, 2) == 5
    transfer.transfer(audited.config)
    versions = log_versions(audited)
    assert len(versions) == 10 and sum(versions.values()) == 15
    # Not due again within the period; due a day later, back to LOG_1.
    assert rotate(audited, now=DAY0 + timedelta(hours=23)).outcome == "not_due"
    # A daily job at the same clock time starts a moment before the day is over: due.
    rep = rotate(audited, now=DAY0 + timedelta(days=1) - timedelta(seconds=2))
    # ... and the next period counts from when it was due, not from the early start.
    assert main_scalar(audited, "SELECT DATA FROM FBA_LOG_INFO") == DAY0 + timedelta(days=1)
    assert (rep.outcome, rep.old_table, rep.packets_deleted) == ("done", 2, 5)
    run_sql(audited, ["DELETE FROM ITEM WHERE ID = 1"])
    assert rows_in(audited, 1) == 3 and rows_in(audited, 2) == 0
    transfer.transfer(audited.config)
    assert sum(log_versions(audited).values()) == 16


def test_waits_for_the_transfer_and_postpones_without_dropping(audited):
    run_sql(audited, ["INSERT INTO ITEM VALUES (1, 'a', 1)", "INSERT INTO ITEM VALUES (2, 'b', 2)"])
    rep = rotate(audited, now=DAY0, max_wait=0)
    assert (rep.outcome, rep.phase) == ("postponed", "redirected")
    assert "2 packet(s) of LOG_1 are not in the log database yet" in rep.message
    assert rows_in(audited, 1) == 6
    # Writers are unaffected meanwhile (they write to LOG_2).
    run_sql(audited, ["INSERT INTO ITEM VALUES (3, 'c', 3)"])
    transfer.transfer(audited.config)
    rep = rotate(audited, now=DAY0)          # resumes, whatever the period says
    assert (rep.outcome, rep.rotation_id, rep.packets_deleted) == ("done", 1, 2)
    assert [s["step"] for s in rep.steps] == ["verify", "drop", "restore"]
    assert rows_in(audited, 2) == 3
    assert sum(log_versions(audited).values()) == 3


def test_failed_packets_keep_the_table_until_retried(audited):
    run_sql(audited, ["INSERT INTO ITEM VALUES (1, 'a', 1)"])
    transfer.transfer(audited.config)
    audited.sql("INSERT INTO FBA_LOG_FAILED (ID, STATE, ATTEMPTS) SELECT ID, 2, 5 FROM FBA_LOG_PACKET_1")
    rep = rotate(audited, now=DAY0, max_wait=0)
    assert rep.outcome == "postponed" and "failed to transfer" in rep.message and "retry" in rep.message
    assert rows_in(audited, 1) == 3


def test_stuck_snapshot_delays_the_drop_and_its_rows_are_kept(audited):
    """A SNAPSHOT transaction opened before the switch keeps writing to the old table."""
    s = open_database(audited.main, isolation=Isolation.SNAPSHOT)
    try:
        s.con.begin()
        insert(s, 100)
        rep = rotate(audited, now=DAY0, max_wait=1)
        assert (rep.outcome, rep.phase) == ("postponed", "switched")
        assert "1 transaction(s) started before the switch" in rep.message and "transaction " in rep.message
        insert(s, 101)                       # still sees ID_TABLE = 1: writes LOG_1
        run_sql(audited, ["INSERT INTO ITEM VALUES (1, 'a', 1)"])       # a new transaction writes LOG_2
        assert rotate(audited, now=DAY0, max_wait=0.5).outcome == "postponed"
        s.commit()
    finally:
        s.close()
    assert rows_in(audited, 1) == 6 and rows_in(audited, 2) == 3
    transfer.transfer(audited.config)
    rep = rotate(audited, now=DAY0)
    assert rep.outcome == "done" and rep.packets_deleted == 2
    assert log_versions(audited) == {"100": 1, "101": 1, "1": 1}


def test_second_rotate_refuses_while_one_runs(audited):
    holder = open_database(audited.main)
    try:
        holder.execute("UPDATE FBA_LOG_ROTATION SET UPDATED_AT = UPDATED_AT WHERE ID = 0")
        rep = rotate(audited, now=DAY0)
        assert rep.outcome == "busy" and "already" not in rep.message and "running" in rep.message
    finally:
        holder.close()
    assert main_scalar(audited, "SELECT ID_TABLE FROM FBA_LOG_INFO") == 1
    assert rotate(audited, now=DAY0).outcome == "done"


def test_table_in_use_backs_off_then_postpones(audited):
    """An attachment with an open cursor on LOG_1 keeps it "in use": the drop is retried, then postponed."""
    run_sql(audited, ["INSERT INTO ITEM VALUES (1, 'a', 1)"])
    transfer.transfer(audited.config)
    reader = open_database(audited.main, read_only=True)     # a reader never delays the switch
    try:
        cur = reader.con.cursor()
        cur.execute("SELECT PACKET FROM FBA_LOG_1")
        cur.fetchone()
        rep = rotate(audited, now=DAY0, drop_attempts=2, drop_lock_timeout=1)
        assert (rep.outcome, rep.phase) == ("postponed", "redirected")
        assert "still in use" in rep.message and "2 attempt(s)" in rep.message
        assert rows_in(audited, 1) == 3
    finally:
        reader.close()
    rep = rotate(audited, now=DAY0)
    assert rep.outcome == "done" and rows_in(audited, 1) == 0


def test_status_shows_the_last_rotation_and_table_sizes(audited):
    run_sql(audited, ["INSERT INTO ITEM VALUES (1, 'a', 1)"])
    item = capture.status(audited.config).data["sources"][0]
    assert item["last_rotation"] is None and item["data_table_rows"] == {"LOG_1": 0, "LOG_2": 0, "LOG_3": 0}
    assert item["waiting"] == 1
    rotate(audited, now=DAY0, max_wait=0)
    res = capture.status(audited.config)
    rot = res.data["sources"][0]["last_rotation"]
    assert rot["outcome"] == "postponed" and rot["phase"] == "redirected" and "transfer" in rot["message"]
    assert "postponed at phase redirected" in "\n".join(res.lines)
    assert res.data["sources"][0]["health"] == audited.target.healthy_after_rotation   # postponed once is normal
    stuck = capture.status(dataclasses.replace(audited.config, rotation=dataclasses.replace(
        audited.config.rotation, clock=DAY0 + timedelta(days=3))))
    problems = [(p["level"], p["message"]) for p in stuck.data["sources"][0]["problems"]]
    assert [lvl for lvl, text in problems if text.startswith(f"rotation #1 postponed since {DAY0:%Y-%m-%d %H:%M}")] \
        == ["warning"]
    assert stuck.data["health"] == "warning" and stuck.data["exit_code"] == 1
    # The backlog's age is on the source's clock, not the (test) rotation clock: 3 packets, seconds old.
    assert stuck.data["sources"][0]["oldest_waiting_age_s"] < 120
    transfer.transfer(audited.config)
    rotate(audited, now=DAY0)
    res = capture.status(audited.config)
    rot = res.data["sources"][0]["last_rotation"]
    assert rot["outcome"] == "done" and rot["packets_deleted"] == 1 and rot["rows_dropped"] == 0
    assert "last rotation: #1 of LOG_1" in "\n".join(res.lines)


def test_cli_rotate_with_clock_override_json_and_logs(audited):
    cfg = audited.write_config()
    env = {**os.environ, "FBAUDIT_NOW": DAY0.isoformat()}
    run_sql(audited, ["INSERT INTO ITEM VALUES (1, 'a', 1)"])
    transfer.transfer(audited.config)
    cmd = [sys.executable, "-m", "fbaudit.cli", "--config", str(cfg)]
    r = subprocess.run(cmd + ["-v", "rotate", "--json"], capture_output=True, text=True, env=env, cwd=ROOT, timeout=120)
    assert r.returncode == 0, r.stderr
    data = json.loads(r.stdout)["sources"][0]
    assert data["outcome"] == "done" and data["old_table"] == 1
    assert "[ROTATE]" in r.stderr and "rotation 1 drop" in r.stderr
    r = subprocess.run(cmd + ["rotate"], capture_output=True, text=True, env=env, cwd=ROOT, timeout=120)
    assert r.returncode == 0 and "not due" in r.stdout and f"{DAY0 + timedelta(days=1):%Y-%m-%d %H:%M:%S}" in r.stdout
    r = subprocess.run(cmd + ["rotate", "--help"], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert "Example" in r.stdout and "--force" in r.stdout
    bad = {**env, "FBAUDIT_NOW": "tomorrow"}
    r = subprocess.run(cmd + ["rotate"], capture_output=True, text=True, env=bad, cwd=ROOT, timeout=120)
    assert r.returncode == 3 and "FBAUDIT_NOW" in r.stderr


def test_rows_that_reach_log3_are_shipped_and_then_cleaned(audited):
    """Safety net: a trigger compiled while V_LOG_n pointed at LOG_3 puts a current
    packet's rows there. The transfer ships them from LOG_3 (never a packet without
    its fields) and the next rotation removes them once shipped. (Only a trigger of the form before
    capture 2.0 writes through the view: packed triggers write nothing there.)"""
    with audited.connect() as admin:
        old_style_trigger(admin)
        with admin.con.cursor() as cur:
            cur.stream_blob_threshold = -1
            cur.execute("SELECT RDB$TRIGGER_SOURCE FROM RDB$TRIGGERS WHERE RDB$TRIGGER_NAME = 'FBA_AUDIT_1'")
            src = cur.fetchone()[0]
        retrigger = ("CREATE OR ALTER TRIGGER FBA_AUDIT_1 FOR ITEM ACTIVE AFTER INSERT OR UPDATE OR DELETE "
                     "POSITION 32000 " + src)
        as_fbaudit(admin)
        admin.con.execute_immediate("CREATE OR ALTER VIEW FBA_V_LOG_1 (PACKET, NUM_POLE, BLOB_OLD, BLOB_NEW) AS "
                                    "SELECT PACKET, NUM_POLE, BLOB_OLD, BLOB_NEW FROM FBA_LOG_3")
        admin.commit()
        as_fbaudit(admin)
        admin.con.execute_immediate(retrigger)
        admin.commit()
        run_sql(audited, ["INSERT INTO ITEM VALUES (7, 'stray', 70)", "INSERT INTO ITEM VALUES (8, 'b', 80)"])
        as_fbaudit(admin)
        admin.con.execute_immediate("CREATE OR ALTER VIEW FBA_V_LOG_1 (PACKET, NUM_POLE, BLOB_OLD, BLOB_NEW) AS "
                                    "SELECT PACKET, NUM_POLE, BLOB_OLD, BLOB_NEW FROM FBA_LOG_1")
        admin.commit()
        as_fbaudit(admin)
        admin.con.execute_immediate(retrigger)
        admin.commit()
    run_sql(audited, ["UPDATE ITEM SET QTY = 71 WHERE ID = 7"])
    assert rows_in(audited, 3) == 6 and rows_in(audited, 1) == 1
    assert transfer.transfer(audited.config).data["field_rows"] == 7
    h = history.history(audited.config, "ITEM", "7")
    assert [v["changes"] for v in h["versions"]] == [
        {"ID": {"old": None, "new": "7"}, "NAME": {"old": None, "new": "stray"}, "QTY": {"old": None, "new": "70"}},
        {"QTY": {"old": "70", "new": "71"}}]
    rep = rotate(audited, now=DAY0)
    assert rep.outcome == "done" and "LOG_3 held 6 row(s), 6 shipped ones removed" in rep.steps[-1]["text"]
    assert rows_in(audited, 3) == 0


def write_ship_and_rotate(audited):
    """An attachment fires the audit trigger once and stays open, idle; the change is shipped and a
    rotation runs (one drop attempt). Returns the idle attachment (the caller closes it) and the report."""
    idle = open_database(audited.main)
    try:
        idle.execute("INSERT INTO ITEM VALUES (1, 'a', 1)")
        idle.commit()
        transfer.transfer(audited.config)
        return idle, rotate(audited, now=DAY0, drop_attempts=1, drop_lock_timeout=1)
    except BaseException:
        idle.close()
        raise


def test_idle_attachment_holds_the_old_table_on_firebird3_and_the_next_run_catches_up(audited):
    """Measured: an attachment that fired the audit trigger before the redirect and then
    stays idle keeps the old table "in use" on Firebird 3 until it next touches the
    audited table (any statement on it; another attachment's does not help); Firebird
    4 and 5 release it when the triggers are re-created. The postponed rotation
    completes on a later run, which then starts the next rotation when it is due.
    That is a trigger of the form before capture 2.0, writing through the view; a packed
    trigger never touches LOG_n (next test)."""
    with audited.connect() as admin:
        old_style_trigger(admin)
    idle, rep = write_ship_and_rotate(audited)
    try:
        if audited.target.major == 3:
            assert (rep.outcome, rep.phase) == ("postponed", "redirected") and "still in use" in rep.message
            run_sql(audited, ["SELECT COUNT(*) FROM ITEM"])                # another attachment: no help
            assert rotate(audited, now=DAY0, drop_attempts=1, drop_lock_timeout=1).outcome == "postponed"
            idle.scalar("SELECT COUNT(*) FROM ITEM")                       # the idle one touches the table
            idle.commit()
            run_sql(audited, ["INSERT INTO ITEM VALUES (2, 'b', 2)"])     # a day's work in LOG_2
            transfer.transfer(audited.config)
            rep = rotate(audited, now=DAY0 + timedelta(days=1), drop_attempts=1, drop_lock_timeout=1)
            # Rotation 1 completes, and rotation 2 (LOG_2, due a day after the switch) starts in the same run.
            assert rep.completed == [1] and rep.rotation_id == 2 and rep.old_table == 2
            assert rep.message.startswith("rotation 1 (LOG_1) completed first; then ")
            assert rows_in(audited, 1) == 0
        else:
            assert (rep.outcome, rep.rotation_id, rep.completed) == ("done", 1, [])
    finally:
        idle.close()


def test_an_idle_attachment_of_a_packed_trigger_never_holds_the_old_table(audited):
    """Capture 2.0: the packed trigger writes only its packet, through EXECUTE STATEMENT into
    LOG_PACKET_1 (then LOG_PACKET_2), so an idle attachment that fired it holds nothing rotation
    drops, not even the packet table it wrote, on Firebird 3 too; rotation re-creates no trigger."""
    idle, rep = write_ship_and_rotate(audited)
    try:
        assert (rep.outcome, rep.rotation_id, rep.completed, rep.packets_deleted) == ("done", 1, [], 1)
        assert "0 trigger(s) re-created" in rep.steps[2]["text"], rep.steps
        idle.execute("INSERT INTO ITEM VALUES (2, 'b', 2)")           # the idle writer goes on, unhindered
        idle.commit()
    finally:
        idle.close()
    assert transfer.transfer(audited.config).data["packets"] == 1


def test_rotate_and_status_warn_on_a_server_that_can_crash(audited):
    """Firebird before 3.0.14 / 4.0.7 / 5.0.4 can die under rotation's DDL with writers attached
    (upstream issue 8817): `rotate` and `status` say so on such a server (the Debian 3.0.11 server
    target), and stay quiet on a fixed one (the embedded targets)."""
    from fbaudit.db import crash_risk
    assert crash_risk("3.0.11") and crash_risk("4.0.6") and crash_risk("5.0.3")
    assert not crash_risk("3.0.14") and not crash_risk("4.0.7") and not crash_risk("5.0.4") and not crash_risk("6.0.0")
    at_risk = bool(crash_risk(audited.target.version))
    problems = capture.status(audited.config).data["sources"][0]["problems"]
    assert not any("issue 8817" in p["message"] for p in problems)      # no rotation on record: not said
    res = rotation.rotate(audited.config, force=True, max_wait=1)
    assert any("issue 8817" in w and "3.0.14" in w for w in res.warnings) == at_risk, res.warnings
    problems = capture.status(audited.config).data["sources"][0]["problems"]
    assert any("issue 8817" in p["message"] for p in problems) == at_risk, problems


def test_status_warns_when_packets_pile_up_without_rotation(audited):
    """Packed packets leave LOG_n empty: the "no rotation" warning counts the packets in the main
    database (shipped ones stay until rotation deletes them)."""
    rotate(audited, now=DAY0)                                           # a rotation on record, done
    run_sql(audited, ["INSERT INTO ITEM VALUES (1, 'a', 1)", "INSERT INTO ITEM VALUES (2, 'b', 2)"])
    transfer.transfer(audited.config)
    late = dataclasses.replace(audited.config, rotation=dataclasses.replace(
        audited.config.rotation, clock=DAY0 + timedelta(days=3)))
    res = capture.status(late)
    item = res.data["sources"][0]
    assert item["staged_packets"] == 2 and item["data_table_rows"] == {"LOG_1": 0, "LOG_2": 0, "LOG_3": 0}
    assert [p["message"] for p in item["problems"] if p["message"].startswith("no rotation since")] == [
        f"no rotation since {DAY0:%Y-%m-%d %H:%M}: 2 packets in the staging tables; is `fbaudit rotate` "
        "scheduled daily?"]
    assert "2 packets, rows 0/0/0" in "\n".join(res.lines) or "staging: 2 packets" in "\n".join(res.lines)
