"""Privileges: an ordinary application user writes audited tables and is
logged, but can neither read nor alter the log, nor switch logging off.

On embedded Firebird any user name connects without a password (privileges
still apply); on a server the user is created for the test and dropped after.
"""
from __future__ import annotations

import dataclasses
from datetime import datetime, timedelta
import secrets
import uuid

import pytest

from fbaudit import capture, rotation, transfer
from fbaudit.config import DatabaseSpec
from fbaudit.errors import DatabaseError

from helpers import packet_states, packets, run_sql, staged_fields

PASSWORD_ENV = "FBAUDIT_TEST_APP_PASSWORD"


@pytest.fixture
def app(project, target, monkeypatch):
    """(project, spec of an application user granted only DML on CUSTOMER)."""
    user = "APPUSER" if not target.is_server else f"APPUSER_{uuid.uuid4().hex[:8].upper()}"
    if target.is_server:
        password = secrets.token_hex(8)
        monkeypatch.setenv(PASSWORD_ENV, password)
        project.sql(f"CREATE USER {user} PASSWORD '{password}'")
    project.sql("CREATE TABLE CUSTOMER (ID INTEGER NOT NULL PRIMARY KEY, NAME VARCHAR(40), CITY VARCHAR(40))",
                f"GRANT SELECT, INSERT, UPDATE, DELETE ON CUSTOMER TO USER {user}")
    capture.init(project.config)
    capture.enable(project.config, "CUSTOMER")
    spec = DatabaseSpec("app", project.main.database, user=user,
                        password_env=PASSWORD_ENV if target.is_server else None)
    yield project, spec
    if target.is_server:
        project.sql(f"DROP USER {user}")


def attempt(project, spec, sql: str, params: tuple = ()) -> str | None:
    """Run ``sql`` as the application user in its own transaction; the error text, or None if it worked."""
    with project.connect(spec) as db:
        try:
            db.query(sql, params) if sql.lstrip().upper().startswith("SELECT") else db.execute(sql, params)
            db.commit()
        except DatabaseError as exc:
            return str(exc).lower()
    return None


def not_refused(project, spec, statements) -> list[tuple[str, str | None]]:
    """The statements that did NOT fail with a permission error, with what happened instead."""
    out = []
    for item in statements:
        sql, params = item if isinstance(item, tuple) else (item, ())
        err = attempt(project, spec, sql.format(P=project.prefix), params)
        if err is None or "no permission" not in err:
            out.append((sql, err))
    return out


def test_application_user_changes_are_captured(app):
    project, spec = app
    run_sql(project, [
        "INSERT INTO CUSTOMER VALUES (1, 'Anna', 'Riga')",
        "UPDATE CUSTOMER SET CITY = 'Tallinn' WHERE ID = 1",
        "DELETE FROM CUSTOMER WHERE ID = 1",
    ], user_spec=spec)
    ins, upd, dele = packets(project, "CUSTOMER")
    assert [p.operation for p in (ins, upd, dele)] == ["insert", "update", "delete"]
    assert {p.user for p in (ins, upd, dele)} == {spec.user}
    assert {p.author for p in (ins, upd, dele)} == {spec.user}
    assert upd.changes == {"CITY": {"old": "Riga", "new": "Tallinn"}}


def test_application_user_sets_author_and_comment(app):
    project, spec = app
    run_sql(project, [
        "SELECT RDB$SET_CONTEXT('USER_TRANSACTION', 'FBAUDIT_AUTHOR', 'clerk-3'), "
        "RDB$SET_CONTEXT('USER_TRANSACTION', 'FBAUDIT_COMMENT', 'typo') FROM RDB$DATABASE",
        "INSERT INTO CUSTOMER VALUES (2, 'Bob', NULL)",
    ], user_spec=spec)
    (p,) = packets(project, "CUSTOMER")
    assert (p.author, p.comment, p.user) == ("clerk-3", "typo", spec.user)


STAGING = ["LOG_PACKET", "LOG_PACKET_1", "LOG_PACKET_2", "LOG_1", "LOG_2", "LOG_3", "V_LOG_1", "V_LOG_2", "LOG_INFO", "LOG_PACKET_FLAG",
           "LOG_TABLES", "LOG_FIELDS", "LOG_PENDING", "LOG_FAILED"]

CHANGES = [
    "UPDATE {P}LOG_PACKET SET STATE = 1",
    "UPDATE {P}LOG_PACKET SET AUTHOR = 'someone else'",
    "DELETE FROM {P}LOG_PACKET",
    "UPDATE {P}LOG_PACKET_1 SET AUTHOR = 'someone else'",
    "DELETE FROM {P}LOG_PACKET_1",
    "DELETE FROM {P}LOG_PACKET_2",
    "UPDATE {P}LOG_1 SET BLOB_NEW = NULL",
    "DELETE FROM {P}LOG_1",
    "UPDATE {P}V_LOG_1 SET BLOB_OLD = NULL",
    "DELETE FROM {P}V_LOG_1",
    "DELETE FROM {P}LOG_INFO",
    "UPDATE {P}LOG_INFO SET ZAPIS = 0",          # the article's switch: logging off
    "UPDATE {P}LOG_INFO SET ID_TABLE = 3",
    "UPDATE {P}LOG_TABLES SET TABLE_NAME = 'X'",
    "DELETE FROM {P}LOG_FIELDS",
    "UPDATE {P}LOG_PACKET_FLAG SET SEEN_ID = 1000000",
    "UPDATE {P}LOG_PACKET_FLAG SET SHIPPED_TO = 1000000",          # "everything is shipped": the packet skipped
    "INSERT INTO {P}LOG_FAILED (ID, STATE) VALUES (1, 2)",          # or set aside as failed
    "DELETE FROM {P}LOG_PENDING",
]

FAKES = [
    "INSERT INTO {P}LOG_PACKET (ID, CREATED_AT, OPERATION, NUM_TABLE, DATA_TABLE, RECORD_KEY, AUTHOR, DB_USER) "
    "VALUES (999, LOCALTIMESTAMP, 3, 1, 1, '1', 'SYSDBA', 'SYSDBA')",
    "INSERT INTO {P}LOG_PACKET_1 (ID, CREATED_AT, OPERATION, NUM_TABLE, DATA_TABLE, RECORD_KEY, AUTHOR, DB_USER) "
    "VALUES (998, LOCALTIMESTAMP, 3, 1, 1, '1', 'SYSDBA', 'SYSDBA')",
    "INSERT INTO {P}LOG_PACKET_2 (ID, CREATED_AT, OPERATION, NUM_TABLE, DATA_TABLE, RECORD_KEY, AUTHOR, DB_USER) "
    "VALUES (997, LOCALTIMESTAMP, 3, 1, 2, '1', 'SYSDBA', 'SYSDBA')",
    ("INSERT INTO {P}LOG_1 (PACKET, NUM_POLE, BLOB_OLD, BLOB_NEW) VALUES (1, 2, NULL, ?)", (b"fake",)),
    ("INSERT INTO {P}V_LOG_1 (PACKET, NUM_POLE, BLOB_OLD, BLOB_NEW) VALUES (1, 2, NULL, ?)", (b"fake",)),
    ("INSERT INTO {P}V_LOG_2 (PACKET, NUM_POLE, BLOB_OLD, BLOB_NEW) VALUES (1, 2, NULL, ?)", (b"fake",)),
    "INSERT INTO {P}LOG_INFO (ZAPIS, ID_TABLE) VALUES (0, 1)",
    "SELECT GEN_ID({P}LOG_PACKET_ID, 1000) FROM RDB$DATABASE",
]


def test_application_user_cannot_read_the_staging_tables(app):
    project, spec = app
    run_sql(project, ["INSERT INTO CUSTOMER VALUES (1, 'Anna', 'Riga')"], user_spec=spec)
    assert not_refused(project, spec, [f"SELECT COUNT(*) FROM {{P}}{obj}" for obj in STAGING]) == []


def test_application_user_cannot_alter_the_log_or_switch_logging_off(app):
    project, spec = app
    run_sql(project, ["INSERT INTO CUSTOMER VALUES (1, 'Anna', 'Riga')"], user_spec=spec)
    assert not_refused(project, spec, CHANGES) == []
    with project.connect() as db:   # the owner sees the log untouched and logging still on
        assert db.scalar(f"SELECT COUNT(*) FROM {project.prefix}LOG_PACKET_1") == 1
        assert db.scalar(f"SELECT ZAPIS FROM {project.prefix}LOG_INFO") == 1
        assert db.query(f"SELECT SEEN_ID, SHIPPED_TO FROM {project.prefix}LOG_PACKET_FLAG") == [(-1, 0)]  # as init left it
        assert db.scalar(f"SELECT COUNT(*) FROM {project.prefix}LOG_FAILED") == 0
    assert packet_states(project) == {0: 1}
    run_sql(project, ["UPDATE CUSTOMER SET NAME = 'Anya' WHERE ID = 1"], user_spec=spec)
    ins, upd = packets(project)
    assert ins.changes["NAME"] == {"old": None, "new": "Anna"}
    assert upd.changes == {"NAME": {"old": "Anna", "new": "Anya"}}


def test_application_user_cannot_insert_fake_packets(app):
    project, spec = app
    assert not_refused(project, spec, FAKES) == []
    assert packets(project) == []
    with project.connect() as db:
        assert db.scalar(f"SELECT GEN_ID({project.prefix}LOG_PACKET_ID, 0) FROM RDB$DATABASE") == 0


def test_application_user_cannot_disable_the_trigger_or_redirect_the_log(app):
    project, spec = app
    for sql in ("ALTER TRIGGER {P}AUDIT_1 INACTIVE", "DROP TRIGGER {P}AUDIT_1",
                "CREATE OR ALTER VIEW {P}V_LOG_1 (PACKET, NUM_POLE, BLOB_OLD, BLOB_NEW) AS "
                "SELECT PACKET, NUM_POLE, BLOB_OLD, BLOB_NEW FROM {P}LOG_3"):
        err = attempt(project, spec, sql.format(P=project.prefix))
        assert err is not None and "no permission" in err, (sql, err)
    run_sql(project, ["INSERT INTO CUSTOMER VALUES (1, 'Anna', 'Riga')"], user_spec=spec)
    assert len(packets(project)) == 1
    with project.connect() as db:
        assert list(staged_fields(db, project.prefix).values()) == [3]


def test_pause_as_application_user_fails_with_a_clear_error(app):
    project, spec = app
    src = dataclasses.replace(project.config.sources[0], user=spec.user, password_env=spec.password_env,
                              password_file=None)
    config = dataclasses.replace(project.config, sources=(src,))
    with pytest.raises(DatabaseError, match="no permission") as err:
        capture.set_logging(config, False)
    assert "hint" in str(err.value) and spec.user in str(err.value)
    run_sql(project, ["INSERT INTO CUSTOMER VALUES (1, 'Anna', 'Riga')"], user_spec=spec)
    assert len(packets(project)) == 1


@pytest.fixture
def erp_owner(project, target, monkeypatch):
    """(project, spec of a non-admin user who owns ORDERS, as an ERP's schema owner does)."""
    user = "ERPOWNER" if not target.is_server else f"ERPOWNER_{uuid.uuid4().hex[:8].upper()}"
    if target.is_server:
        password = secrets.token_hex(8)
        monkeypatch.setenv(PASSWORD_ENV, password)
        project.sql(f"CREATE USER {user} PASSWORD '{password}'")
    spec = DatabaseSpec("erp", project.main.database, user=user,
                        password_env=PASSWORD_ENV if target.is_server else None)
    project.sql(f"GRANT CREATE TABLE TO USER {user}")
    with project.connect(spec) as db:
        db.con.execute_immediate("CREATE TABLE ORDERS (ID INTEGER NOT NULL PRIMARY KEY, QTY INTEGER, OLD_CODE CHAR(3))")
        db.commit()
    capture.init(project.config)
    capture.enable(project.config, "ORDERS")
    yield project, spec
    if target.is_server:
        project.sql(f"DROP USER {user}")


def test_the_tables_owner_alters_it_and_auditing_follows(erp_owner):
    """The ERP's own user (no admin rights, owner of the table) runs its upgrade DDL: the audit trigger
    is re-created under that user's name, keeps its grants, and the DDL is logged with who ran it."""
    project, spec = erp_owner
    with project.connect(spec) as db:
        for sql in ("ALTER TABLE ORDERS DROP OLD_CODE", "ALTER TABLE ORDERS ADD NOTE VARCHAR(20)"):
            db.con.execute_immediate(sql)
            db.commit()
        db.execute("INSERT INTO ORDERS (ID, QTY, NOTE) VALUES (1, 5, 'x')")
        db.commit()
    row, = packets(project)
    assert row.changes == {"ID": {"old": None, "new": "1"}, "QTY": {"old": None, "new": "5"}}
    events = packets(project, schema=True)
    assert [(e.user, e.changes["sql"]["new"], e.changes["audit_trigger"]["new"]) for e in events] == [
        (spec.user, "ALTER TABLE ORDERS DROP OLD_CODE", "audit trigger followed"),
        (spec.user, "ALTER TABLE ORDERS ADD NOTE VARCHAR(20)", "audit trigger followed")]
    capture.sync(project.config)
    with project.connect(spec) as db:
        db.execute("UPDATE ORDERS SET NOTE = 'y' WHERE ID = 1")
        db.commit()
    assert packets(project)[-1].changes == {"NOTE": {"old": "x", "new": "y"}}


def test_application_user_writes_are_captured_across_rotations(app):
    """The audit triggers write packets into LOG_PACKET_1 / LOG_PACKET_2 with their own INSERT
    privilege (EXECUTE STATEMENT ... WITH CALLER PRIVILEGES); rotation drops the table out of use
    and creates it again, so it must give that privilege back: the application user's writes, from
    one connection kept open throughout, are captured after rotations that dropped each table (that
    connection never stops a DROP), and the user still cannot read or write either table."""
    project, spec = app
    day = datetime(2026, 12, 1, 9, 0)
    with project.connect(spec) as pooled:     # an application's connection, open across the rotations
        for i in range(1, 4):
            pooled.execute(f"INSERT INTO CUSTOMER VALUES ({i}, 'Anna', 'Riga')")
            pooled.commit()
            transfer.transfer(project.config)
            rep = rotation.rotate_source(project.config, project.config.sources[0], now=day, force=True)
            assert (rep.outcome, rep.packets_deleted) == ("done", 1), rep.message      # it held nothing
            day += timedelta(days=1)
    with project.connect() as db:
        assert db.scalar(f"SELECT COUNT(*) FROM {project.prefix}LOG_PACKET_1") == 0
        assert db.scalar(f"SELECT COUNT(*) FROM {project.prefix}LOG_PACKET_2") == 0
    with project.connect(project.log) as ldb:
        keys = [r[0] for r in ldb.query(f"SELECT RECORD_KEY FROM {project.prefix}LOG_PACKET ORDER BY PACKET_ID")]
    assert keys == ["1", "2", "3"]
    assert not_refused(project, spec, [f"SELECT COUNT(*) FROM {{P}}LOG_PACKET_{n}" for n in (1, 2)]
                       + [f"DELETE FROM {{P}}LOG_PACKET_{n}" for n in (1, 2)]) == []
