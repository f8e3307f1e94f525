"""Schema changes with auditing on (docs/schema-changes.md): ALTER TABLE of an audited table commits
and the audit trigger follows it in the same transaction (DDL_FOLLOW); every DDL statement is logged
(DDL_LOG) and shipped with the row changes; tampering with an audit trigger is on record and CRITICAL."""
from __future__ import annotations

import json
import os
import random
import shutil
import subprocess
import sys
import threading
import time

import pytest

from fbaudit import capture, history as history_mod, transfer
from fbaudit.db import open_database
from fbaudit.history import history

from helpers import packets, run_sql
from test_api import server  # noqa: F401  (the fixture: a served project with PRODUCT)


def _shelf(project):
    project.sql("CREATE TABLE SHELF (ID INTEGER NOT NULL PRIMARY KEY, NAME VARCHAR(10), QTY INTEGER, "
                "OLD_FLAG SMALLINT, PRICE NUMERIC(9, 2))")
    capture.init(project.config)
    capture.enable(project.config, "SHELF")


def _changes(project, key: str) -> list[dict]:
    return [v["changes"] for v in history(project.config, "SHELF", key)["versions"]]


def test_add_drop_widen_and_retype_commit_and_every_other_change_stays_logged(project):
    _shelf(project)
    run_sql(project, ["INSERT INTO SHELF VALUES (1, 'a', 1, 1, 1.50)"])
    project.sql("ALTER TABLE SHELF ADD COLOR VARCHAR(20)",          # new: logged after sync
                "ALTER TABLE SHELF DROP OLD_FLAG",                  # failed before ("1 dependencies")
                "ALTER TABLE SHELF ALTER NAME TYPE VARCHAR(60)",    # widened: its lines pack any length
                "ALTER TABLE SHELF ALTER PRICE TYPE NUMERIC(18, 2)")  # BIGINT now: logged after sync
    long_name = "ж" * 50
    run_sql(project, [f"UPDATE SHELF SET NAME = '{long_name}', QTY = 2, PRICE = 2.125, COLOR = 'red' WHERE ID = 1"])
    st = capture.status(project.config)
    table = st.data["sources"][0]["tables"][0]
    assert sorted(table["not_logged"]) == ["COLOR", "PRICE"] and st.data["exit_code"] == 2
    assert any("PRICE, COLOR added or retyped" in p["message"] for p in st.data["sources"][0]["problems"])
    synced = capture.sync(project.config)
    drift = synced.data["sources"][0]["drift"][0]
    assert drift["added"] == ["COLOR"] and drift["dropped"] == ["OLD_FLAG"] and len(drift["retyped"]) == 2
    run_sql(project, ["UPDATE SHELF SET PRICE = 3.5, COLOR = 'blue' WHERE ID = 1"])
    assert capture.status(project.config).data["exit_code"] == 0
    assert not transfer.transfer(project.config).errors
    assert _changes(project, "1") == [
        {"ID": {"old": None, "new": "1"}, "NAME": {"old": None, "new": "a"}, "QTY": {"old": None, "new": "1"},
         "OLD_FLAG": {"old": None, "new": "1"}, "PRICE": {"old": None, "new": "1.50"}},
        {"NAME": {"old": "a", "new": long_name}, "QTY": {"old": "1", "new": "2"}},
        {"PRICE": {"old": "2.13", "new": "3.50"}, "COLOR": {"old": "red", "new": "blue"}}]
    events = history_mod.schema_events(project.config)["events"]
    assert [e["sql"] for e in reversed(events)] == [
        "ALTER TABLE SHELF ADD COLOR VARCHAR(20)", "ALTER TABLE SHELF DROP OLD_FLAG",
        "ALTER TABLE SHELF ALTER NAME TYPE VARCHAR(60)", "ALTER TABLE SHELF ALTER PRICE TYPE NUMERIC(18, 2)"]
    assert {e["audit_trigger"] for e in events} == {"audit trigger followed"}
    assert {(e["event"], e["object_type"], e["object"], e["user"]) for e in events} == \
        {("ALTER TABLE", "TABLE", "SHELF", "SYSDBA")}


def test_dropping_an_audited_table_is_on_record_and_sync_marks_it(project):
    _shelf(project)
    project.sql("DROP TABLE SHELF")
    synced = capture.sync(project.config)
    assert synced.data["sources"][0]["drift"][0]["table_gone"] is True
    assert not transfer.transfer(project.config).errors
    [event] = history_mod.schema_events(project.config, object_name="shelf")["events"]
    assert (event["event"], event["sql"]) == ("DROP TABLE", "DROP TABLE SHELF")


def test_a_failed_ddl_leaves_no_event_and_the_old_trigger(project):
    """A DDL rolled back takes its event and the re-created trigger with it."""
    _shelf(project)
    with project.connect() as db:
        db.con.execute_immediate("ALTER TABLE SHELF DROP OLD_FLAG")
        db.rollback()
    run_sql(project, ["INSERT INTO SHELF (ID, OLD_FLAG) VALUES (5, 7)"])
    assert packets(project)[-1].changes["OLD_FLAG"]["new"] == "7"
    assert packets(project, schema=True) == []


def test_tampering_with_an_audit_trigger_is_logged_critical_and_repaired(project):
    _shelf(project)
    with project.connect() as db:
        src = db.query("SELECT RDB$TRIGGER_SOURCE FROM RDB$TRIGGERS WHERE RDB$TRIGGER_NAME = 'FBA_AUDIT_1'",
                       whole_blobs=True)[0][0]
        db.commit()
    altered = src.replace("IF (on_ = 0) THEN EXIT;", "IF (on_ = 0 OR CURRENT_USER = 'MALLORY') THEN EXIT;")
    assert altered != src
    project.sql("CREATE OR ALTER TRIGGER FBA_AUDIT_1 FOR SHELF ACTIVE AFTER INSERT OR UPDATE OR DELETE "
                "POSITION 32000 " + altered)
    st = capture.status(project.config)
    assert st.data["exit_code"] == 2
    assert any("not the one fbaudit made" in p["message"] for p in st.data["sources"][0]["problems"])
    assert capture.sync(project.config).data["sources"][0]["drift"][0]["trigger_outdated"]
    assert capture.status(project.config).data["exit_code"] == 0
    project.sql("ALTER TRIGGER FBA_AUDIT_1 INACTIVE")
    assert capture.status(project.config).data["exit_code"] == 2
    capture.sync(project.config)
    capture.set_logging(project.config, False)
    capture.set_logging(project.config, True)
    assert not transfer.transfer(project.config).errors
    events = list(reversed(history_mod.schema_events(project.config)["events"]))
    assert [(e["kind"], e["event"], e["object"]) for e in events][-3:] == [
        ("ddl", "ALTER TRIGGER", "FBA_AUDIT_1"), ("control", "PAUSE LOGGING", "main"),
        ("control", "RESUME LOGGING", "main")]
    assert "MALLORY" in events[0]["sql"]          # the altered body, whole, with who ran it
    # fbaudit's own re-creation of the trigger (sync) is not a schema event: only the two by SYSDBA above
    assert [e["object"] for e in events if e["kind"] == "ddl"] == ["FBA_AUDIT_1"] * len(
        [e for e in events if e["kind"] == "ddl"])


def test_schema_log_cli_json_shape(project):
    _shelf(project)
    project.sql("CREATE INDEX SHELF_NAME ON SHELF (NAME)")
    transfer.transfer(project.config)
    cfg = project.write_config()
    out = subprocess.run([sys.executable, "-m", "fbaudit.cli", "--config", str(cfg), "schema-log", "--json"],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    assert data["pagination"]["total"] == 1
    [e] = data["events"]
    assert {"at", "user", "event", "object_type", "object", "sql"} <= e.keys()
    assert (e["event"], e["object_type"], e["object"]) == ("CREATE INDEX", "INDEX", "SHELF_NAME")


# --------------------------------------------------------------------------------------------------
# A vendor's upgrade script while the application keeps writing
# --------------------------------------------------------------------------------------------------
UPGRADE = [
    "ALTER TABLE ORDERS ADD DISCOUNT NUMERIC(9, 2) DEFAULT 0",
    "ALTER TABLE ORDERS DROP LEGACY_CODE",
    "ALTER TABLE ORDERS ALTER NOTE TYPE VARCHAR(200)",
    "ALTER TABLE LINES ALTER PRICE TYPE NUMERIC(18, 4)",
    "CREATE TABLE MIGRATION_TMP (ID INTEGER, V VARCHAR(10))",
    "CREATE OR ALTER PROCEDURE ORDER_TOTAL (OID INTEGER) RETURNS (TOTAL NUMERIC(18, 4)) AS\n"
    "BEGIN\n  SELECT SUM(PRICE) FROM LINES WHERE ORDER_ID = :OID INTO :TOTAL;\n  SUSPEND;\nEND",
    "CREATE OR ALTER TRIGGER ORDERS_BU FOR ORDERS ACTIVE BEFORE UPDATE POSITION 5 AS\n"
    "BEGIN\n  IF (NEW.DISCOUNT IS NULL) THEN NEW.DISCOUNT = 0;\nEND",
    "ALTER TABLE LINES ADD WAREHOUSE SMALLINT",
    "CREATE INDEX LINES_WAREHOUSE ON LINES (WAREHOUSE)",
    "DROP TABLE MIGRATION_TMP",
    "ALTER TABLE ORDERS DROP OBSOLETE",
]


def _erp(project):
    project.sql("CREATE TABLE ORDERS (ID INTEGER NOT NULL PRIMARY KEY, CUSTOMER VARCHAR(40), QTY INTEGER, "
                "NOTE VARCHAR(20), LEGACY_CODE CHAR(3), OBSOLETE INTEGER)",
                "CREATE TABLE LINES (ID INTEGER NOT NULL PRIMARY KEY, ORDER_ID INTEGER, PRICE NUMERIC(9, 2), "
                "AMOUNT INTEGER)")
    capture.init(project.config)
    capture.enable(project.config, "ORDERS")
    capture.enable(project.config, "LINES")


class Writer(threading.Thread):
    """The application: updates its own rows of ORDERS and LINES, one commit each, and remembers
    every value it committed, in order."""

    def __init__(self, project, n: int):
        super().__init__(daemon=True)
        self.project, self.n, self.stop, self.errors = project, n, threading.Event(), []
        self.ready = threading.Event()         # its rows are inserted (with the columns' first names)
        self.done: dict[tuple[str, int], list[str]] = {}

    def run(self) -> None:
        rng = random.Random(self.n)
        db = open_database(self.project.main)
        try:
            keys = range(self.n * 100 + 1, self.n * 100 + 6)
            for k in keys:
                db.execute("INSERT INTO ORDERS (ID, CUSTOMER, QTY) VALUES (?, ?, 0)", (k, f"c{k}"))
                db.execute("INSERT INTO LINES (ID, ORDER_ID, AMOUNT) VALUES (?, ?, 0)", (k, k))
                db.commit()
                self.done[("ORDERS", k)] = []
                self.done[("LINES", k)] = []
            self.ready.set()
            i = 0
            while not self.stop.is_set() or i < 40:
                i += 1
                k = rng.choice(keys)
                table, col = rng.choice([("ORDERS", "QTY"), ("LINES", "AMOUNT")])
                try:
                    db.execute(f"UPDATE {table} SET {col} = ? WHERE ID = ?", (i, k))
                    db.commit()
                    self.done[(table, k)].append(str(i))
                except Exception as exc:          # the application's write failed: the finding we look for
                    self.errors.append(f"{table} {k}: {exc}")
                    db.rollback()
                time.sleep(0.003)
        finally:
            db.close()


def _run_upgrade(project, run_script, process: str | None = None) -> None:
    _erp(project)
    writers = [Writer(project, n) for n in range(4)]
    for w in writers:
        w.start()
    time.sleep(0.5)
    run_script()
    time.sleep(0.5)
    for w in writers:
        w.stop.set()
    for w in writers:
        w.join(timeout=120)
    assert not any(w.is_alive() for w in writers)
    assert [e for w in writers for e in w.errors] == []
    res = transfer.transfer(project.config)
    assert not res.errors, res.lines
    # Every committed value is in the log exactly once, in order, under its own column's name.
    for w in writers:
        for (table, key), values in w.done.items():
            col = "QTY" if table == "ORDERS" else "AMOUNT"
            versions = history(project.config, table, str(key), limit=None)["versions"]
            assert versions[0]["operation"] == "insert"
            logged = [v["changes"][col]["new"] for v in versions[1:]]
            assert logged == values, (table, key)
            assert all(set(v["changes"]) == {col} for v in versions[1:]), (table, key)
    assert sum(len(v) for w in writers for v in w.done.values()) > 100
    events = history_mod.schema_events(project.config, limit=200)["events"]
    logged_sql = {e["sql"] for e in events}
    assert set(UPGRADE) <= logged_sql, set(UPGRADE) - logged_sql
    if process:                   # the client program, as the client library sent it
        assert {e["process"] for e in events if e["sql"] in UPGRADE} == {process}
    follows = [e["audit_trigger"] for e in events if e["event"] == "ALTER TABLE"]
    assert follows and set(follows) == {"audit trigger followed"}
    # After the upgrade, sync picks up the new and retyped columns, and they are logged.
    synced = capture.sync(project.config)
    assert not synced.errors
    run_sql(project, ["UPDATE ORDERS SET DISCOUNT = 1.25 WHERE ID = 1",
                      "UPDATE LINES SET PRICE = 9.5, WAREHOUSE = 3 WHERE ID = 1"])
    assert not transfer.transfer(project.config).errors
    assert history(project.config, "ORDERS", "1", limit=None)["versions"][-1]["changes"]["DISCOUNT"]["new"] == "1.25"
    assert history(project.config, "LINES", "1", limit=None)["versions"][-1]["changes"] == {
        "PRICE": {"old": None, "new": "9.5000"}, "WAREHOUSE": {"old": None, "new": "3"}}
    assert capture.status(project.config).data["exit_code"] == 0


def test_an_upgrade_script_through_the_driver_while_four_writers_write(project):
    """Statement by statement through firebird-driver, each committed (isql's autocommit DDL)."""
    def script():
        with project.connect() as db:
            for s in UPGRADE:
                db.con.execute_immediate(s)
                db.commit()
                time.sleep(0.05)
    _run_upgrade(project, script)


def test_an_upgrade_script_through_isql_while_four_writers_write(project):
    isql = shutil.which("isql-fb") or shutil.which("isql")
    if not (project.target.is_server and isql):
        pytest.skip("isql runs against the server target (Debian's firebird3.0-utils)")

    def script():
        text = (f"CONNECT '{project.main.database}' USER '{project.main.user}' PASSWORD '{project.main.password()}';\n"
                "SET AUTODDL ON;\nSET TERM ^ ;\n" + "".join(s + "^\n" for s in UPGRADE) + "SET TERM ; ^\nCOMMIT;\n")
        path = project.tmp / "upgrade.sql"
        path.write_text(text, encoding="utf-8")
        path.chmod(0o600)
        out = subprocess.run([isql, "-q", "-b", "-i", str(path)], capture_output=True, text=True, timeout=300)
        assert out.returncode == 0 and not out.stderr.strip(), out.stderr
    _run_upgrade(project, script, process=os.path.realpath(isql))


def test_dropping_the_audit_key_is_refused_at_once_and_nothing_changes(project):
    """The audit trigger needs its key: it cannot follow, so the DDL fails at once with a message that
    says what to do (Firebird alone refuses at COMMIT). Measured before: with another ALTER TABLE
    earlier in the same transaction (whose re-created trigger passes Firebird's dependency check at
    COMMIT) the drop committed and left a trigger that failed every write of the table."""
    from firebird.driver import DatabaseError as DriverError
    project.sql("CREATE TABLE K (CODE INTEGER NOT NULL, V INTEGER, CONSTRAINT K_U UNIQUE (CODE))")
    capture.init(project.config)
    capture.enable(project.config, "K", key=["CODE"])
    with project.connect() as db:
        db.con.execute_immediate("ALTER TABLE K DROP CONSTRAINT K_U")
        with pytest.raises(DriverError, match="fbaudit disable K"):
            db.con.execute_immediate("ALTER TABLE K DROP CODE")
        db.rollback()
    run_sql(project, ["INSERT INTO K VALUES (1, 2)"])
    assert packets(project)[-1].changes == {"CODE": {"old": None, "new": "1"}, "V": {"old": None, "new": "2"}}
    assert capture.status(project.config).data["exit_code"] == 0


def test_the_api_and_a_records_history_show_the_tables_ddl(server):  # noqa: F811
    """/api/schema-log lists the DDL; a record's versions carry its table's DDL between them, in
    the API, the CLI's text and the page (test_page); /api/versions without a table leaves it out."""
    from test_api import call
    project, base = server
    project.sql("ALTER TABLE PRODUCT ADD STOCK INTEGER")
    capture.sync(project.config)
    run_sql(project, ["UPDATE PRODUCT SET STOCK = 5 WHERE SKU = 'C-3'"])
    assert not transfer.transfer(project.config).errors
    status, body = call(base, "/api/schema-log", object="PRODUCT")
    assert status == 200 and body["data"]["pagination"]["total"] == 1
    assert body["data"]["events"][0]["sql"] == "ALTER TABLE PRODUCT ADD STOCK INTEGER"
    status, body = call(base, "/api/records/PRODUCT/C-3/versions")
    assert [e["event"] for e in body["data"]["schema_events"]] == ["ALTER TABLE"]
    ddl_id = body["data"]["schema_events"][0]["packet_id"]
    assert body["data"]["items"][1]["packet_id"] < ddl_id < body["data"]["items"][0]["packet_id"]
    status, body = call(base, "/api/versions", limit=200)
    assert status == 200 and all(i["table"] != "#0" for i in body["data"]["items"])
    status, body = call(base, "/api/schema-log", limit=0)
    assert status == 400 and body["success"] is False and "limit" in body["error"]["message"]
    status, body = call(base, "/api/schema-log", since="not a time")
    assert status == 400 and body["success"] is False and "since" in body["error"]["message"]
    from fbaudit.history import history_lines
    lines = history_lines(history(project.config, "PRODUCT", "C-3"))
    assert [line.split()[0] for line in lines if line.startswith(("  v", "  --"))] == ["v1", "--", "v2"], lines


def test_alter_domain_is_followed_in_every_table_that_uses_it(project):
    project.sql("CREATE DOMAIN D_NAME AS VARCHAR(10)", "CREATE DOMAIN D_QTY AS INTEGER",
                "CREATE TABLE A1 (ID INTEGER NOT NULL PRIMARY KEY, N D_NAME, Q D_QTY)",
                "CREATE TABLE A2 (ID INTEGER NOT NULL PRIMARY KEY, N D_NAME)")
    capture.init(project.config)
    capture.enable(project.config, "A1")
    capture.enable(project.config, "A2")
    project.sql("ALTER DOMAIN D_NAME TYPE VARCHAR(40)", "ALTER DOMAIN D_QTY TYPE BIGINT")
    run_sql(project, ["INSERT INTO A1 VALUES (1, 'a name longer than ten', 5000000000)",
                      "INSERT INTO A2 VALUES (1, 'also longer than ten')"])
    a1, a2 = packets(project)
    assert a1.changes == {"ID": {"old": None, "new": "1"}, "N": {"old": None, "new": "a name longer than ten"}}
    assert a2.changes["N"]["new"] == "also longer than ten"
    tables = {t["table"]: t for t in capture.status(project.config).data["sources"][0]["tables"]}
    assert tables["A1"]["not_logged"] == ["Q"] and not tables["A1"]["trigger_altered"]
    assert tables["A2"]["not_logged"] == [] and not tables["A2"]["trigger_altered"]
    capture.sync(project.config)
    run_sql(project, ["UPDATE A1 SET Q = 6000000000 WHERE ID = 1"])
    assert packets(project)[-1].changes == {"Q": {"old": "5000000000", "new": "6000000000"}}
    assert capture.status(project.config).data["exit_code"] == 0


def test_a_retyped_key_keeps_the_old_trigger_until_sync(project):
    # A key backed by a unique index (Firebird refuses to retype a column of a PRIMARY KEY constraint).
    project.sql("CREATE TABLE RK (ID INTEGER NOT NULL, V INTEGER)", "CREATE UNIQUE INDEX RK_ID ON RK (ID)")
    capture.init(project.config)
    capture.enable(project.config, "RK", key=["ID"])
    project.sql("ALTER TABLE RK ALTER ID TYPE BIGINT")
    run_sql(project, ["INSERT INTO RK VALUES (7, 1)"])
    assert packets(project)[-1].key == "7"
    st = capture.status(project.config).data
    assert st["exit_code"] == 2 and st["sources"][0]["tables"][0]["not_logged"] == ["ID"]
    capture.sync(project.config)
    assert capture.status(project.config).data["exit_code"] == 0


def test_renaming_an_audited_column_is_refused_and_the_documented_path_works(project):
    """Firebird checks a rename against committed dependencies before any trigger can act (measured
    on 3.0, 4.0 and 5.0): refused, nothing changed, logging goes on. disable -> rename -> enable
    --baseline retires the old name's number and records the rows as they are after it."""
    from firebird.driver import DatabaseError as DriverError
    _shelf(project)
    run_sql(project, ["INSERT INTO SHELF VALUES (1, 'a', 1, 0, 1.50)"])
    with pytest.raises(DriverError, match="Column NAME from table SHELF is referenced in FBA_AUDIT_1"):
        project.sql("ALTER TABLE SHELF ALTER NAME TO TITLE")
    run_sql(project, ["UPDATE SHELF SET NAME = 'b' WHERE ID = 1"])
    assert packets(project)[-1].changes == {"NAME": {"old": "a", "new": "b"}}
    capture.disable(project.config, "SHELF")
    project.sql("ALTER TABLE SHELF ALTER NAME TO TITLE")
    capture.enable(project.config, "SHELF", baseline=True)
    from fbaudit.registry import Registry
    entry = Registry.load(project.registry_path).tables["SHELF"]
    assert "NAME" in entry.retired and entry.fields["TITLE"].number > entry.retired["NAME"].number
    assert packets(project)[-1].operation == "baseline" and packets(project)[-1].changes["TITLE"]["new"] == "b"
    assert not transfer.transfer(project.config).errors
    assert [e["event"] for e in history_mod.schema_events(project.config, object_name="SHELF")["events"]] == \
        ["ALTER TABLE"]          # the rename by SYSDBA; the refused one left no event


# --------------------------------------------------------------------------------------------------
# Renames: `fbaudit upgrade begin` .. `upgrade end`
# --------------------------------------------------------------------------------------------------
def test_upgrade_begin_end_lets_a_rename_pass_and_the_renamed_column_keeps_its_number(project):
    """Between begin and end the audit trigger reads only the key: the rename passes, every change
    is on record (who, which row, how; values not recorded), and end logs the changed rows whole,
    gives the renamed column its old number and logs it under the new name from then on."""
    from fbaudit import upgrade, versions
    from fbaudit.errors import FbauditError
    from fbaudit.registry import Registry
    _shelf(project)
    run_sql(project, ["INSERT INTO SHELF VALUES (1, 'a', 1, 0, 1.50)", "INSERT INTO SHELF VALUES (3, 'c', 3, 0, 3)"])
    number = Registry.load(project.registry_path).tables["SHELF"].fields["NAME"].number
    res = upgrade.begin(project.config)
    assert res.data["sources"][0]["started"] == ["SHELF"]
    st = capture.status(project.config)
    assert st.data["exit_code"] == 1
    assert any("upgrade in progress" in p["message"] for p in st.data["sources"][0]["problems"])
    project.sql("ALTER TABLE SHELF ALTER NAME TO TITLE", "ALTER TABLE SHELF DROP OLD_FLAG",
                "ALTER TABLE SHELF ADD COLOR VARCHAR(10)")
    run_sql(project, ["UPDATE SHELF SET TITLE = 'b', QTY = 2, COLOR = 'red' WHERE ID = 1",
                      "INSERT INTO SHELF (ID, TITLE) VALUES (2, 'new')", "DELETE FROM SHELF WHERE ID = 3"])
    assert [p.operation for p in packets(project)][-3:] == ["update_unrecorded", "insert_unrecorded",
                                                            "delete_unrecorded"]
    assert all(p.changes == {} for p in packets(project)[-3:])
    # Sync would end the upgrade without logging the rows: refused.
    with pytest.raises(FbauditError, match="upgrade is in progress"):
        capture.sync(project.config)
    ended = upgrade.end(project.config, by="vendor 7.2")
    [item] = ended.data["sources"][0]["tables"]
    assert item["renamed"] == {"NAME": "TITLE"} and item["dropped"] == ["OLD_FLAG"] and item["added"] == ["COLOR"]
    assert item["rows"] == 2                                   # 1 and 2; 3 is gone
    entry = Registry.load(project.registry_path).tables["SHELF"]
    assert entry.fields["TITLE"].number == number and "NAME" not in entry.fields and "OLD_FLAG" in entry.retired
    run_sql(project, ["UPDATE SHELF SET TITLE = 'z', COLOR = 'blue' WHERE ID = 1"])
    assert capture.status(project.config).data["exit_code"] == 0
    assert not transfer.transfer(project.config).errors
    h = history(project.config, "SHELF", "1")
    ops = [v["operation"] for v in h["versions"]]
    assert ops == ["insert", "update_unrecorded", "baseline", "update"]
    assert h["versions"][0]["changes"]["TITLE"] == {"old": None, "new": "a"}     # the number's name now
    assert h["versions"][2]["author"] == "vendor 7.2" and h["versions"][2]["comment"] == upgrade.COMMENT
    assert h["versions"][2]["changes"]["TITLE"]["new"] == "b" and h["versions"][2]["changes"]["COLOR"]["new"] == "red"
    assert h["versions"][3]["changes"] == {"TITLE": {"old": "b", "new": "z"}, "COLOR": {"old": "red", "new": "blue"}}
    assert [v["operation"] for v in history(project.config, "SHELF", "3")["versions"]] == ["insert", "delete_unrecorded"]
    assert [v["operation"] for v in history(project.config, "SHELF", "2")["versions"]] == ["insert_unrecorded",
                                                                                        "baseline"]
    # The values after an unrecorded change are unknown: revert there is refused; before it, it works.
    assert versions.record_state(project.config, "SHELF", "1", 2)["unrecorded"] is True
    with pytest.raises(FbauditError, match="not recorded"):
        versions.revert(project.config, "SHELF", "1", to_version=2)
    done = versions.revert(project.config, "SHELF", "1", to_version=3)
    assert done["action"] == "update" and done["fields"] == {"TITLE": "b", "COLOR": "red"}
    controls = [(e["event"], e["object"]) for e in history_mod.schema_events(project.config, object_name="SHELF")["events"]]
    assert ("UPGRADE BEGIN", "SHELF") in controls and ("UPGRADE END", "SHELF") in controls
    assert sum(1 for e, _ in controls if e == "ALTER TABLE") == 3


UPGRADE_WITH_RENAMES = [
    "ALTER TABLE ORDERS ALTER CUSTOMER TO CUSTOMER_NAME",
    "ALTER TABLE LINES ALTER ORDER_ID TO ORDER_NO",
] + [s.replace("WHERE ORDER_ID", "WHERE ORDER_NO") for s in UPGRADE] + ["ALTER TABLE ORDERS ALTER COLUMN NOTE TO REMARK"]


def _run_upgrade_with_renames(project, run_script, process: str | None = None) -> None:
    """begin, the vendor's script (renames, drops, retypes, procedures, triggers, a table made and
    dropped), end, while four writers update the audited tables: 0 writer errors, every committed
    change on record exactly once, the values before begin and after end exactly, the renamed
    columns under their new names with their old numbers."""
    from fbaudit import upgrade
    from fbaudit.registry import Registry
    _erp(project)
    numbers = {t: {n: f.number for n, f in e.fields.items()}
               for t, e in Registry.load(project.registry_path).tables.items()}
    writers = [Writer(project, n) for n in range(4)]
    for w in writers:
        w.start()
    for w in writers:
        assert w.ready.wait(60)
    time.sleep(0.3)
    assert upgrade.begin(project.config).data["sources"][0]["started"] == ["ORDERS", "LINES"]
    time.sleep(0.2)
    run_script()
    time.sleep(0.2)
    ended = upgrade.end(project.config, by="vendor 7.2")
    time.sleep(0.5)
    for w in writers:
        w.stop.set()
    for w in writers:
        w.join(timeout=120)
    assert not any(w.is_alive() for w in writers)
    assert [e for w in writers for e in w.errors] == []
    if ended.warnings:
        # A writer's connection still ran the keys-only trigger after three snapshots (Firebird 5.0's
        # statement cache, docs/schema-changes.md): what an admin then does, run end again.
        assert all("came through the keys-only trigger" in w for w in ended.warnings)
        assert capture.status(project.config).data["exit_code"] == 1
        again = upgrade.end(project.config, by="vendor 7.2")
        assert not again.warnings and all(i.get("still_keys_only", 0) == 0
                                          for i in again.data["sources"][0]["tables"])
    renamed = {i["table"]: i["renamed"] for i in ended.data["sources"][0]["tables"]}
    assert renamed == {"ORDERS": {"CUSTOMER": "CUSTOMER_NAME"}, "LINES": {"ORDER_ID": "ORDER_NO"}}
    assert ended.data["sources"][0]["tables"][0]["renamed_retyped"] == ["NOTE -> REMARK"]     # widened too
    after = Registry.load(project.registry_path).tables
    assert after["ORDERS"].fields["CUSTOMER_NAME"].number == numbers["ORDERS"]["CUSTOMER"]
    # NOTE was widened too: a retyped column gets a new number (as with sync), the old one retired
    # under the old name.
    assert after["ORDERS"].retired["NOTE"].number == numbers["ORDERS"]["NOTE"]
    assert after["ORDERS"].fields["REMARK"].number > max(numbers["ORDERS"].values())
    assert after["LINES"].fields["ORDER_NO"].number == numbers["LINES"]["ORDER_ID"]
    res = transfer.transfer(project.config)
    assert not res.errors, res.lines
    unrecorded = whole = 0
    for w in writers:
        for (table, key), values in w.done.items():
            col = "QTY" if table == "ORDERS" else "AMOUNT"
            versions = history(project.config, table, str(key), limit=None)["versions"]
            assert versions[0]["operation"] == "insert"
            named = "CUSTOMER_NAME" if table == "ORDERS" else "ORDER_NO"     # the number's name now
            assert versions[0]["changes"][named]["new"] == (f"c{key}" if table == "ORDERS" else str(key))
            i = 0                      # committed values consumed, each by exactly one version
            for v in versions[1:]:
                if v["operation"] == "update":
                    changes = dict(v["changes"])
                    # A row no writer updated between the script's ORDERS_BU trigger and `upgrade end`
                    # still has DISCOUNT NULL (added after it was written); its next update gets
                    # DISCOUNT 0 from that application trigger: a real change, logged with it.
                    if table == "ORDERS" and changes.get("DISCOUNT") == {"old": None, "new": "0.00"}:
                        del changes["DISCOUNT"]
                    assert set(changes) == {col} and changes[col]["new"] == values[i], (table, key, i, changes)
                    i += 1
                elif v["operation"] == "update_unrecorded":
                    assert v["changes"] == {}
                    i += 1
                    unrecorded += 1
                else:                  # upgrade end: the row as it was then, whole
                    assert v["operation"] == "baseline" and v["comment"] == upgrade.COMMENT, v
                    assert v["changes"][col]["new"] in (["0"] + values)[i:], (table, key, i)
                    assert v["changes"][named]["new"] == versions[0]["changes"][named]["new"]
                    whole += 1
            assert i == len(values), (table, key)
    assert unrecorded > 10 and whole > 0
    events = history_mod.schema_events(project.config, limit=200)["events"]
    logged_sql = {e["sql"] for e in events}
    assert set(UPGRADE_WITH_RENAMES) <= logged_sql, set(UPGRADE_WITH_RENAMES) - logged_sql
    if process:
        assert {e["process"] for e in events if e["sql"] in UPGRADE_WITH_RENAMES} == {process}
    assert sorted((e["event"], e["object"]) for e in events if e["kind"] == "control") == [
        ("UPGRADE BEGIN", "LINES"), ("UPGRADE BEGIN", "ORDERS"), ("UPGRADE END", "LINES"), ("UPGRADE END", "ORDERS")]
    # end numbered the new and retyped columns: logged at once, no sync needed.
    assert capture.status(project.config).data["exit_code"] == 0
    run_sql(project, ["UPDATE ORDERS SET DISCOUNT = 1.25, REMARK = 'x' WHERE ID = 1",
                      "UPDATE LINES SET PRICE = 9.5, WAREHOUSE = 3, ORDER_NO = 7 WHERE ID = 1"])
    assert not transfer.transfer(project.config).errors
    assert history(project.config, "ORDERS", "1", limit=None)["versions"][-1]["changes"] == {
        "DISCOUNT": {"old": "0.00", "new": "1.25"}, "REMARK": {"old": None, "new": "x"}}
    assert history(project.config, "LINES", "1", limit=None)["versions"][-1]["changes"] == {
        "PRICE": {"old": None, "new": "9.5000"}, "WAREHOUSE": {"old": None, "new": "3"},
        "ORDER_NO": {"old": "1", "new": "7"}}


def test_an_upgrade_with_renames_through_the_driver_while_four_writers_write(project):
    def script():
        with project.connect() as db:
            for s in UPGRADE_WITH_RENAMES:
                db.con.execute_immediate(s)
                db.commit()
                time.sleep(0.05)
    _run_upgrade_with_renames(project, script)


def test_an_upgrade_with_renames_through_isql_while_four_writers_write(project):
    isql = shutil.which("isql-fb") or shutil.which("isql")
    if not (project.target.is_server and isql):
        pytest.skip("isql runs against the server target (Debian's firebird3.0-utils)")

    def script():
        text = (f"CONNECT '{project.main.database}' USER '{project.main.user}' PASSWORD '{project.main.password()}';\n"
                "SET AUTODDL ON;\nSET TERM ^ ;\n" + "".join(s + "^\n" for s in UPGRADE_WITH_RENAMES)
                + "SET TERM ; ^\nCOMMIT;\n")
        path = project.tmp / "upgrade.sql"
        path.write_text(text, encoding="utf-8")
        path.chmod(0o600)
        out = subprocess.run([isql, "-q", "-b", "-i", str(path)], capture_output=True, text=True, timeout=300)
        assert out.returncode == 0 and not out.stderr.strip(), out.stderr
    _run_upgrade_with_renames(project, script, process=os.path.realpath(isql))


def test_rotation_waits_for_an_upgrade_and_runs_after_its_end(project):
    """upgrade end reads the keys of the changes made during the upgrade from the staged packets,
    which rotation deletes: rotation waits (nothing changed), then runs after end."""
    from fbaudit import rotation, upgrade
    _shelf(project)
    run_sql(project, ["INSERT INTO SHELF VALUES (1, 'a', 1, 0, 1.50)"])
    upgrade.begin(project.config)
    run_sql(project, ["UPDATE SHELF SET QTY = 2 WHERE ID = 1"])
    assert not transfer.transfer(project.config).errors
    res = rotation.rotate(project.config, force=True)
    assert res.data["sources"][0]["outcome"] == "waiting" and "upgrade end" in res.lines[0]
    assert [p.operation for p in packets(project)][-1] == "update_unrecorded"      # still there
    ended = upgrade.end(project.config)
    assert ended.data["sources"][0]["tables"][0]["rows"] == 1
    assert not transfer.transfer(project.config).errors
    assert rotation.rotate(project.config, force=True).data["sources"][0]["outcome"] == "done"
    assert [v["operation"] for v in history(project.config, "SHELF", "1")["versions"]] == [
        "insert", "update_unrecorded", "baseline"]


def test_upgrade_cli_json_bad_input_and_dry_run(project):
    """An unknown table: exit 5, nothing changed. --dry-run shows the SQL and changes nothing. --json
    gives what began and, at the end, per table what was renamed, added, dropped and logged whole."""
    _shelf(project)
    cfg = project.write_config()
    cmd = [sys.executable, "-m", "fbaudit.cli", "--config", str(cfg)]
    run = lambda *a: subprocess.run(cmd + list(a), capture_output=True, text=True, timeout=120)  # noqa: E731
    r = run("upgrade", "begin", "NOPE", "--json")
    assert r.returncode == 5 and json.loads(r.stdout)["error"]["message"] == \
        "main: NOPE is not audited (audited: SHELF); nothing was changed."
    r = run("upgrade", "begin", "NOPE")
    assert r.returncode == 5 and "NOPE is not audited" in r.stderr and "Traceback" not in r.stderr
    r = run("upgrade", "begin", "--dry-run")
    assert r.returncode == 0 and "would begin" in r.stdout and "CREATE OR ALTER TRIGGER FBA_AUDIT_1" in r.stdout
    assert capture.status(project.config).data["exit_code"] == 0          # nothing began
    r = run("upgrade", "begin", "shelf", "--json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["sources"][0] == {"source": "main", "started": ["SHELF"], "already": []}
    assert "already in an upgrade: SHELF" in run("upgrade", "begin").stdout
    project.sql("ALTER TABLE SHELF ALTER QTY TO QUANTITY")
    run_sql(project, ["INSERT INTO SHELF (ID, QUANTITY) VALUES (5, 1)"])
    r = run("upgrade", "end", "--json", "--by", "it")
    assert r.returncode == 0, r.stderr
    [t] = json.loads(r.stdout)["sources"][0]["tables"]
    assert (t["table"], t["renamed"], t["rows"], t["changes"]) == ("SHELF", {"QTY": "QUANTITY"}, 1, 1)
    assert "no upgrade in progress" in run("upgrade", "end").stdout
    r = run("upgrade", "--help")
    assert r.returncode == 0 and "fbaudit upgrade begin" in r.stdout and "fbaudit upgrade end" in r.stdout


def test_init_brings_an_older_staging_up_to_upgrade_support(project):
    """A source initialized before `upgrade` existed (no LOG_UPGRADE, DDL_FOLLOW without it): upgrade
    begin refuses with "run fbaudit init"; init adds the tables, updates DDL_FOLLOW and its grant."""
    from fbaudit import templates, upgrade
    from fbaudit.errors import FbauditError
    _shelf(project)
    p = project.prefix
    follow = next(st for st in templates.render("main_init", P=p) if st.object == "DDL_FOLLOW")
    old = "\n".join(line for line in follow.sql.splitlines() if "LOG_UPGRADE" not in line)
    with project.connect() as db:
        db.con.execute_immediate(old)
        db.commit()
        for name in ("LOG_TOUCHED", "LOG_UPGRADE"):
            db.con.execute_immediate(f"DROP TABLE {p}{name}")
            db.commit()
    with pytest.raises(FbauditError, match="LOG_UPGRADE is missing.*fbaudit init"):
        upgrade.begin(project.config)
    res = capture.init(project.config)
    assert "LOG_UPGRADE" in res.lines[-1] and "LOG_TOUCHED" in res.lines[-1] and "DDL_FOLLOW (updated)" in res.lines[-1]
    upgrade.begin(project.config)
    project.sql("ALTER TABLE SHELF ALTER NAME TO TITLE")
    assert upgrade.end(project.config).data["sources"][0]["tables"][0]["renamed"] == {"NAME": "TITLE"}
    assert capture.status(project.config).data["exit_code"] == 0


def test_a_change_still_uncommitted_when_end_runs_is_logged_whole_after_it_commits(project):
    """A writer changed a row under the keys-only trigger and has not committed when `upgrade end`
    runs: end waits for it (its count could not see it), then logs the row whole; nothing is left
    unrecorded, status is OK."""
    from fbaudit import upgrade
    _shelf(project)
    run_sql(project, ["INSERT INTO SHELF VALUES (1, 'a', 1, 0, 1.50)"])
    upgrade.begin(project.config)
    writer = project.connect()
    writer.execute("UPDATE SHELF SET QTY = 7 WHERE ID = 1")          # keys-only packet, not committed
    threading.Timer(1.0, writer.commit).start()
    try:
        ended = upgrade.end(project.config)
    finally:
        time.sleep(1.2)
        writer.close()
    assert ended.data["sources"][0]["tables"][0]["rows"] == 1 and not ended.warnings
    assert not transfer.transfer(project.config).errors
    versions = history(project.config, "SHELF", "1")["versions"]
    assert [v["operation"] for v in versions] == ["insert", "update_unrecorded", "baseline"]
    assert versions[-1]["changes"]["QTY"]["new"] == "7"
    assert capture.status(project.config).data["exit_code"] == 0


def test_a_row_deleted_during_the_upgrade_can_be_reverted(project):
    from fbaudit import upgrade, versions
    _shelf(project)
    run_sql(project, ["INSERT INTO SHELF VALUES (3, 'c', 3, 0, 3)"])
    upgrade.begin(project.config)
    run_sql(project, ["DELETE FROM SHELF WHERE ID = 3"])
    upgrade.end(project.config)
    assert not transfer.transfer(project.config).errors
    state = versions.record_state(project.config, "SHELF", "3")
    assert (state["exists"], state["complete"], state["unrecorded"]) == (False, True, False)
    done = versions.revert(project.config, "SHELF", "3", to_version=1)
    assert done["action"] == "insert"
    with project.connect() as db:
        assert db.query("SELECT NAME, QTY FROM SHELF WHERE ID = 3") == [("c", 3)]


def test_a_column_renamed_onto_a_dropped_excluded_columns_name_is_logged(project):
    from fbaudit import upgrade
    from fbaudit.registry import Registry
    project.sql("CREATE TABLE SHELF (ID INTEGER NOT NULL PRIMARY KEY, NAME VARCHAR(10), OLD_FLAG SMALLINT)")
    capture.init(project.config)
    capture.enable(project.config, "SHELF", exclude=["OLD_FLAG"])
    upgrade.begin(project.config)
    project.sql("ALTER TABLE SHELF DROP OLD_FLAG", "ALTER TABLE SHELF ALTER NAME TO OLD_FLAG")
    [item] = upgrade.end(project.config).data["sources"][0]["tables"]
    assert item["renamed"] == {"NAME": "OLD_FLAG"}
    entry = Registry.load(project.registry_path).tables["SHELF"]
    assert entry.exclude == [] and "OLD_FLAG" in entry.fields
    run_sql(project, ["INSERT INTO SHELF VALUES (1, 'x')"])
    assert packets(project)[-1].changes["OLD_FLAG"] == {"old": None, "new": "x"}
    assert capture.status(project.config).data["exit_code"] == 0


def test_an_end_whose_registry_could_not_be_written_is_repaired_by_running_it_again(project, monkeypatch):
    from fbaudit import upgrade
    from fbaudit.errors import FbauditError
    from fbaudit.registry import Registry
    _shelf(project)
    run_sql(project, ["INSERT INTO SHELF VALUES (1, 'a', 1, 0, 1.50)"])
    upgrade.begin(project.config)
    project.sql("ALTER TABLE SHELF ALTER NAME TO TITLE")
    run_sql(project, ["UPDATE SHELF SET TITLE = 'b' WHERE ID = 1"])

    def refuse(self):
        raise PermissionError(13, "Permission denied", str(self.path))
    with monkeypatch.context() as m:
        m.setattr(Registry, "save", refuse)
        with pytest.raises(FbauditError, match="registry file .* could not be written.*upgrade end` again"):
            upgrade.end(project.config)
    assert "NAME" in Registry.load(project.registry_path).tables["SHELF"].fields       # the file as it was
    again = upgrade.end(project.config)
    assert again.data["sources"][0]["tables"][0]["rows"] == 1
    assert "TITLE" in Registry.load(project.registry_path).tables["SHELF"].fields
    assert capture.sync(project.config).lines == ["main: registry and database agree"]
    assert not transfer.transfer(project.config).errors
    last = history(project.config, "SHELF", "1")["versions"][-1]
    assert last["operation"] == "baseline" and last["changes"]["TITLE"]["new"] == "b"


def test_begin_waits_for_an_unfinished_rotation(project):
    from fbaudit import upgrade
    from fbaudit.errors import FbauditError
    _shelf(project)
    with project.connect() as db:                  # a rotation that stopped after its switch
        db.execute("INSERT INTO FBA_LOG_ROTATION (ID, STARTED_AT, OLD_TABLE, NEW_TABLE, PHASE, OUTCOME, UPDATED_AT) "
                   "VALUES (1, LOCALTIMESTAMP, 1, 2, 'switched', 'postponed', LOCALTIMESTAMP)")
        db.commit()
    with pytest.raises(FbauditError, match="rotation #1 has not finished .*fbaudit rotate"):
        upgrade.begin(project.config)
    from fbaudit.objects import upgrades
    with project.connect() as db:
        assert upgrades(db, "FBA_") == {}                       # nothing changed
        db.execute("UPDATE FBA_LOG_ROTATION SET PHASE = 'done', OUTCOME = 'done' WHERE ID = 1")
        db.commit()
    assert upgrade.begin(project.config).data["sources"][0]["started"] == ["SHELF"]


def test_status_and_end_catch_a_change_through_the_keys_only_trigger_after_the_end(project):
    """A connection that still runs the keys-only trigger after `upgrade end` (Firebird 5.0's statement
    cache, docs/schema-changes.md) writes a keys-only packet: status warns, end logs the row whole."""
    from fbaudit import upgrade
    _shelf(project)
    run_sql(project, ["INSERT INTO SHELF VALUES (1, 'a', 1, 0, 1.50)"])
    upgrade.begin(project.config)
    upgrade.end(project.config)
    run_sql(project, ["UPDATE SHELF SET QTY = 9 WHERE ID = 1"])
    with project.connect() as db:                  # what the stale trigger writes, as it writes it
        db.execute("INSERT INTO FBA_LOG_PACKET (ID, CREATED_AT, OPERATION, NUM_TABLE, DATA_TABLE, RECORD_KEY, AUTHOR, "
                   "DB_USER, TRANSACTION_ID, PAYLOAD) VALUES (GEN_ID(FBA_LOG_PACKET_ID, 1), LOCALTIMESTAMP, 11, 1, 1, "
                   "'1', 'erp', 'ERP', CURRENT_TRANSACTION, '')")
        db.commit()
    st = capture.status(project.config)
    assert st.data["exit_code"] == 1
    assert any("came through the keys-only trigger of the upgrade after" in p["message"]
               for p in st.data["sources"][0]["problems"])
    again = upgrade.end(project.config)
    assert again.data["sources"][0]["tables"][0]["rows"] == 1
    assert capture.status(project.config).data["exit_code"] == 0
    assert not transfer.transfer(project.config).errors
    assert [v["operation"] for v in history(project.config, "SHELF", "1")["versions"]][-2:] == [
        "update_unrecorded", "baseline"]
