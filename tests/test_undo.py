"""Undo a transaction or an author's changes (docs/versions.md "Revert a transaction"): the
compensating changes in foreign-key order, in one transaction, refused with the list of conflicts
(nothing changed) unless --skip-conflicts, a dry run that prints an isql script, on every target."""
from __future__ import annotations

import json
import shutil
import subprocess
from datetime import datetime, timedelta

import pytest
from click.testing import CliRunner

from fbaudit import capture, history, transfer, undo
from fbaudit.cli import cli
from fbaudit.errors import RevertConflict

TABLES = ("ORDERS", "LINES")


def _setup(project) -> None:
    """ORDERS and LINES (LINES.ORDER_ID references ORDERS, no cascade), a unique customer code, audited."""
    project.sql("CREATE TABLE ORDERS (ID INTEGER NOT NULL PRIMARY KEY, CODE VARCHAR(10) NOT NULL UNIQUE, "
                "CUSTOMER VARCHAR(40) CHARACTER SET UTF8, TOTAL NUMERIC(12,2), NOTE BLOB SUB_TYPE TEXT)",
                "CREATE TABLE LINES (ID INTEGER NOT NULL PRIMARY KEY, ORDER_ID INTEGER NOT NULL REFERENCES ORDERS (ID), "
                "QTY INTEGER, ITEM VARCHAR(20))")
    capture.init(project.config)
    for t in TABLES:
        capture.enable(project.config, t)


def _tx(project, author: str | None, statements: list[str]) -> int:
    """Run statements as one transaction by ``author``; its number."""
    with project.connect() as db:
        cur = db.con.cursor()
        if author:
            cur.execute("SELECT RDB$SET_CONTEXT('USER_TRANSACTION', 'FBAUDIT_AUTHOR', ?) FROM RDB$DATABASE", (author,))
            cur.fetchall()
        for s in statements:
            cur.execute(s)
        number = db.scalar("SELECT CURRENT_TRANSACTION FROM RDB$DATABASE")
        db.commit()
    return number


def _rows(project) -> dict[str, list[tuple]]:
    with project.connect() as db:
        out = {t: [tuple(v.read() if hasattr(v, "read") else v for v in r)
                   for r in db.query(f"SELECT * FROM {t} ORDER BY ID")] for t in TABLES}
        db.commit()
    return out


def _shipped(project) -> None:
    assert not transfer.transfer(project.config).errors


def _orders(project) -> dict[str, int]:
    _setup(project)
    txs = {"setup": _tx(project, "anna", [
        "INSERT INTO ORDERS VALUES (1, 'A1', 'Ёлка', 10.50, 'first')",
        "INSERT INTO ORDERS VALUES (2, 'A2', 'Берёза', 20.00, NULL)",
        "INSERT INTO LINES VALUES (10, 1, 1, 'pen')", "INSERT INTO LINES VALUES (11, 1, 2, 'ink')",
        "INSERT INTO LINES VALUES (20, 2, 5, 'cup')"])}
    return txs


MISTAKE = [
    "UPDATE ORDERS SET CUSTOMER = 'Дуб', TOTAL = 0 WHERE ID = 2",
    "UPDATE LINES SET QTY = 0 WHERE ID = 20",
    "DELETE FROM LINES WHERE ORDER_ID = 1",          # the parent deleted with its children
    "DELETE FROM ORDERS WHERE ID = 1",
    "INSERT INTO ORDERS VALUES (3, 'A1', 'new', 1, 'takes the freed code')",
    "INSERT INTO LINES VALUES (30, 3, 9, 'new line')",
    "UPDATE LINES SET ID = 21 WHERE ID = 20",         # a key change
]


def test_revert_a_transaction_across_two_tables_brings_both_back_exactly(project):
    txs = _orders(project)
    before = _rows(project)
    txs["mistake"] = _tx(project, "boris", MISTAKE)
    _shipped(project)
    assert _rows(project) != before
    # The dry run: an isql script in foreign-key order, nothing changed.
    plan = undo.revert_selection(project.config, transaction_id=txs["mistake"], dry_run=True)
    assert _rows(project)["ORDERS"] != before["ORDERS"]
    assert plan["counts"] == {"insert": 3, "update": 1, "key_back": 1, "delete": 2} and not plan["conflicts"]
    script = plan["script"]
    order = [line.split(" WHERE ")[0].split(" VALUES ")[0] for line in script.splitlines()
             if line.startswith(("INSERT", "UPDATE", "DELETE"))]
    # Parents re-inserted before their children, children deleted before their parents; order 1 goes
    # back with code A1 only after order 3, which took that code, is gone (a unique constraint).
    assert order == [
        "UPDATE LINES SET ID = '20', QTY = '5'",                        # the key change, back
        "UPDATE ORDERS SET CUSTOMER = 'Берёза', TOTAL = '20.00'",
        "DELETE FROM LINES", "DELETE FROM ORDERS",
        "INSERT INTO ORDERS (ID, CODE, CUSTOMER, TOTAL, NOTE)",
        "INSERT INTO LINES (ID, ORDER_ID, QTY, ITEM)", "INSERT INTO LINES (ID, ORDER_ID, QTY, ITEM)"], order
    # The revert itself: one transaction, logged as one revert by its author.
    res = undo.revert_selection(project.config, transaction_id=txs["mistake"], by="support.anna",
                                comment="ticket 4711")
    assert _rows(project) == before
    assert res["revert_transaction_id"] and res["plan_id"] == plan["plan_id"]
    _shipped(project)
    t = history.transaction(project.config, res["revert_transaction_id"])
    assert t["author"] == "support.anna" and t["comment"] == "ticket 4711"
    assert t["changes"] == 8 and set(t["tables"]) == {"ORDERS", "LINES"}   # a key change is two packets
    [event] = t["schema_events"]
    assert event["event"] == "REVERT" and event["object"] == str(txs["mistake"])
    # Reverting the revert redoes the mistake; and back again: still exact.
    undo.revert_selection(project.config, transaction_id=res["revert_transaction_id"])
    _shipped(project)
    assert _rows(project)["LINES"] != before["LINES"]
    again = history.transactions(project.config, limit=1)["transactions"][0]["transaction_id"]
    undo.revert_selection(project.config, transaction_id=again)
    assert _rows(project) == before


def test_a_conflicting_revert_changes_nothing_and_skip_conflicts_leaves_those_out(project):
    txs = _orders(project)
    txs["mistake"] = _tx(project, "boris", ["UPDATE ORDERS SET TOTAL = 0", "UPDATE LINES SET QTY = 0"])
    _tx(project, "carla", ["UPDATE LINES SET QTY = 7 WHERE ID = 11"])       # a later change of one record
    _shipped(project)
    now = _rows(project)
    with pytest.raises(RevertConflict) as exc:
        undo.revert_selection(project.config, transaction_id=txs["mistake"])
    assert _rows(project) == now
    assert [(c["table"], c["key"]) for c in exc.value.conflicts] == [("LINES", {"ID": "11"})]
    assert "by carla" in str(exc.value) and "nothing was reverted" in str(exc.value)
    # A row being edited right now is a conflict too, found without waiting.
    with project.connect() as other:
        other.con.cursor().execute("UPDATE ORDERS SET NOTE = 'editing' WHERE ID = 1")
        with pytest.raises(RevertConflict) as exc:
            undo.revert_selection(project.config, transaction_id=txs["mistake"])
        other.rollback()
    assert {c["reason"] for c in exc.value.conflicts} >= {"being changed by another transaction right now"}
    assert _rows(project) == now
    res = undo.revert_selection(project.config, transaction_id=txs["mistake"], skip_conflicts=True)
    assert res["skipped_conflicts"] and len(res["conflicts"]) == 1
    rows = _rows(project)
    assert [r[3] for r in rows["ORDERS"]] == [pytest.approx(10.5), 20]          # set back
    assert {r[0]: r[2] for r in rows["LINES"]} == {10: 1, 11: 7, 20: 5}        # 11 left as carla set it


def test_revert_an_authors_changes_in_a_time_range(project):
    _orders(project)
    start = datetime.now() - timedelta(seconds=1)
    before = _rows(project)
    _tx(project, "batch", ["UPDATE ORDERS SET TOTAL = TOTAL * 100"])
    _tx(project, "batch", ["DELETE FROM LINES WHERE ID = 20"])
    _tx(project, "dora", ["UPDATE LINES SET ITEM = 'pencil' WHERE ID = 10"])    # someone else: kept
    _shipped(project)
    res = undo.revert_selection(project.config, author="batch", since=start, until=datetime.now() + timedelta(1))
    assert res["counts"]["update"] == 2 and res["counts"]["insert"] == 1 and len(res["transactions"]) == 2
    rows = _rows(project)
    assert rows["ORDERS"] == before["ORDERS"]
    assert {r[0]: r[3] for r in rows["LINES"]} == {10: "pencil", 11: "ink", 20: "cup"}


def test_cli_dry_run_script_runs_in_isql_and_json_lists_conflicts(project):
    txs = _orders(project)
    before = _rows(project)
    txs["mistake"] = _tx(project, "boris", MISTAKE)
    _shipped(project)
    cfg = project.write_config()
    run = lambda *a: CliRunner().invoke(cli, ["--config", str(cfg), *a], catch_exceptions=False)
    out = run("revert", "--transaction", str(txs["mistake"]), "--dry-run")
    assert out.exit_code == 0 and out.stdout.startswith("-- fbaudit revert: transaction") and "COMMIT;" in out.stdout
    assert _rows(project) != before
    isql = shutil.which("isql-fb") or shutil.which("isql")
    if project.target.is_server and isql:       # the script is valid SQL that puts the rows back
        path = project.tmp / "undo.sql"
        path.write_text(out.stdout.replace("SET NAMES UTF8;\n", f"SET NAMES UTF8;\nCONNECT '{project.main.database}' "
                                           f"USER '{project.main.user}' PASSWORD '{project.main.password()}';\n"),
                        encoding="utf-8")
        done = subprocess.run([isql, "-q", "-b", "-i", str(path)], capture_output=True, text=True, timeout=60)
        assert done.returncode == 0 and not done.stderr.strip(), done.stderr
        assert _rows(project) == before
        return
    _tx(project, "carla", ["UPDATE ORDERS SET TOTAL = 2 WHERE ID = 3"])
    _shipped(project)
    out = run("revert", "--transaction", str(txs["mistake"]), "--json")
    assert out.exit_code == 7
    err = json.loads(out.stdout)["error"]
    assert err["conflicts"] == [{"table": "ORDERS", "key": {"ID": "3"}, "reason": err["conflicts"][0]["reason"]}]
    assert "carla" in err["conflicts"][0]["reason"]
    bad = run("revert", "--author", "boris")
    assert bad.exit_code == 2 and "--since and --until" in bad.output
    bad = run("revert", "ORDERS", "1", "--transaction", "5")
    assert bad.exit_code == 2 and "one or the other" in bad.output


def test_http_preview_then_confirm_and_a_stale_preview_changes_nothing(project):
    from fbaudit import api
    from helpers import running_server
    from test_api import TOKEN, call
    txs = _orders(project)
    before = _rows(project)
    txs["mistake"] = _tx(project, "boris", MISTAKE)
    _shipped(project)
    with running_server(api.create_app(project.config, token=TOKEN)) as base:
        path = f"/api/transactions/main/{txs['mistake']}/revert"
        status, body = call(base, path, actions=2)
        assert status == 200, body
        pre = body["data"]
        assert pre["dry_run"] and pre["actions_total"] == 7 and len(pre["actions"]) == 2 and not pre["conflicts"]
        assert pre["counts"] == {"insert": 3, "update": 1, "key_back": 1, "delete": 2}
        assert _rows(project) != before                                   # a preview writes nothing
        # A GET cannot revert; a POST needs JSON and the preview's plan.
        assert call(base, path, method="POST", body={"by": "x"})[0] == 400
        # The rows change after the preview: its plan no longer holds, nothing is reverted.
        _tx(project, "carla", ["UPDATE ORDERS SET CUSTOMER = 'Липа' WHERE ID = 2"])
        _shipped(project)
        status, body = call(base, path, method="POST", body={"plan_id": pre["plan_id"]})
        assert status == 409 and body["error"]["conflicts"][0]["key"] == {"ID": "2"}, body
        status, body = call(base, path, method="POST", body={"plan_id": pre["plan_id"], "skip_conflicts": True})
        assert status == 409 and "no longer those the preview showed" in body["error"]["message"]
        _tx(project, "carla", ["UPDATE ORDERS SET CUSTOMER = 'Дуб' WHERE ID = 2"])   # carla undoes her edit
        _shipped(project)
        status, body = call(base, path)                                   # preview again
        assert status == 200 and body["data"]["conflicts"][0]["key"] == {"ID": "2"}   # still changed after
        status, body = call(base, path, method="POST", body={"plan_id": body["data"]["plan_id"], "by": "support",
                                                            "skip_conflicts": True})
        assert status == 200 and body["data"]["revert_transaction_id"], body
    rows = _rows(project)
    assert rows["LINES"] == before["LINES"]
    assert [r[:2] for r in rows["ORDERS"]] == [r[:2] for r in before["ORDERS"]]
    assert rows["ORDERS"][1][2] == "Дуб"                                  # left out: changed after the mistake


def test_status_warns_of_a_mass_change_and_names_the_revert(project):
    from fbaudit import status
    _setup(project)
    filled = _tx(project, "anna", [f"INSERT INTO ORDERS VALUES ({i}, 'C{i}', 'x', {i}, NULL)" for i in range(1, 31)])
    big = _tx(project, "batch", ["UPDATE ORDERS SET TOTAL = 0"])                 # 30 rows of one table
    _tx(project, "dora", ["UPDATE ORDERS SET TOTAL = 1 WHERE ID <= 5"])          # 5: below the threshold
    _shipped(project)
    res = status.status(project.config, thresholds=status.Thresholds(mass_change=10))
    [src] = res.data["sources"]
    # The insert of 30 rows is a mass change too; the 5-row update is not.
    assert [m["transaction_id"] for m in src["mass_changes"]] == [big, filled]          # newest first
    m = next(m for m in src["mass_changes"] if m["transaction_id"] == big)
    assert m["author"] == "batch" and m["tables"] == {"ORDERS": 30}
    warning = next(p["message"] for p in src["problems"] if f"transaction {big} " in p["message"])
    assert f"fbaudit revert --transaction {big} --source main --dry-run" in warning and res.data["exit_code"] == 1
    # The default threshold (1000 rows) and 0 (off): no warning.
    assert status.status(project.config).data["sources"][0]["mass_changes"] == []
    assert status.status(project.config, thresholds=status.Thresholds(mass_change=0)).data["exit_code"] == 0
    # Rows, not packets: 8 updates of one row are one row; a key change of 12 rows is 12 rows, not 24.
    _tx(project, "erik", [f"UPDATE ORDERS SET TOTAL = {i} WHERE ID = 1" for i in range(100, 112)])
    keys = _tx(project, "fred", ["UPDATE ORDERS SET ID = ID + 1000 WHERE ID > 18"])
    _shipped(project)
    seen = {m["transaction_id"]: m for m in status.status(
        project.config, thresholds=status.Thresholds(mass_change=10)).data["sources"][0]["mass_changes"]}
    assert set(seen) == {big, filled, keys} and seen[keys]["tables"] == {"ORDERS": 12}
    # A revert is fbaudit's own, and the transaction it undid is no longer a warning.
    from fbaudit import undo
    undo.revert_selection(project.config, transaction_id=keys)
    _shipped(project)
    seen = {m["transaction_id"] for m in status.status(
        project.config, thresholds=status.Thresholds(mass_change=10)).data["sources"][0]["mass_changes"]}
    assert seen == {big, filled}
    # A baseline is fbaudit's own: never a mass change.
    capture.disable(project.config, "ORDERS")
    capture.enable(project.config, "ORDERS", baseline=True)
    _shipped(project)
    after = status.status(project.config, thresholds=status.Thresholds(mass_change=10)).data["sources"][0]
    assert {m["transaction_id"] for m in after["mass_changes"]} == {big, filled}


def _table(project, name: str, order: str = "1") -> list[tuple]:
    with project.connect() as db:
        out = [tuple(v.read() if hasattr(v, "read") else v for v in r) for r in db.query(
            f"SELECT * FROM {name} ORDER BY {order}")]
        db.commit()
    return out


def test_key_changes_are_put_back_whole_and_never_half(project):
    """Found by the review: with --skip-conflicts a key change whose new key was edited later re-inserted
    the old row beside it; one whose old key was reused later deleted the original; a key changed twice
    lost its columns that are not audited."""
    project.sql("CREATE TABLE L (ID INTEGER NOT NULL PRIMARY KEY, QTY INTEGER, SECRET VARCHAR(20))")
    capture.init(project.config)
    capture.enable(project.config, "L", exclude=["SECRET"])
    _tx(project, "anna", ["INSERT INTO L VALUES (20, 5, 'keep me')", "INSERT INTO L VALUES (30, 1, 'x')",
                          "INSERT INTO L VALUES (40, 1, 'y')"])
    twice = _tx(project, "boris", ["UPDATE L SET ID = 21 WHERE ID = 20", "UPDATE L SET ID = 22 WHERE ID = 21"])
    edited = _tx(project, "boris", ["UPDATE L SET ID = 31 WHERE ID = 30"])
    _tx(project, "carla", ["UPDATE L SET QTY = 9 WHERE ID = 31"])
    reused = _tx(project, "boris", ["UPDATE L SET ID = 41 WHERE ID = 40"])
    _tx(project, "carla", ["INSERT INTO L VALUES (40, 7, 'carla')"])
    _shipped(project)
    res = undo.revert_selection(project.config, transaction_id=twice)
    assert res["counts"]["key_back"] == 1 and (20, 5, "keep me") in _table(project, "L")
    before = _table(project, "L")
    for tx in (edited, reused):
        with pytest.raises(RevertConflict):
            undo.revert_selection(project.config, transaction_id=tx)
        res = undo.revert_selection(project.config, transaction_id=tx, skip_conflicts=True)
        assert res["counts"] == {"insert": 0, "update": 0, "key_back": 0, "delete": 0} and len(res["conflicts"]) == 2
        assert _table(project, "L") == before


def test_a_cascade_to_rows_the_revert_did_not_plan_refuses_it(project):
    """Found by the review: deleting a row the transaction inserted cascaded to a child another user added
    later, silently."""
    project.sql("CREATE TABLE P (ID INTEGER NOT NULL PRIMARY KEY, N VARCHAR(10))",
                "CREATE TABLE C (ID INTEGER NOT NULL PRIMARY KEY, PID INTEGER REFERENCES P (ID) ON DELETE CASCADE)")
    capture.init(project.config)
    capture.enable(project.config, "P")
    capture.enable(project.config, "C")
    mistake = _tx(project, "boris", ["INSERT INTO P VALUES (1, 'parent')"])
    _tx(project, "carla", ["INSERT INTO C VALUES (100, 1)"])
    _shipped(project)
    with pytest.raises(RevertConflict) as exc:
        undo.revert_selection(project.config, transaction_id=mistake)
    assert [(c["table"], c["key"]) for c in exc.value.conflicts] == [("C", {"ID": "100"})]
    assert "would also change 1 row(s) it did not plan" in str(exc.value)
    assert _table(project, "C") == [(100, 1)] and _table(project, "P") == [(1, "parent")]


def test_null_key_parts_octets_keys_and_an_authors_untransferred_changes(project):
    project.sql("CREATE TABLE T (A INTEGER NOT NULL, B VARCHAR(10), V INTEGER, CONSTRAINT U UNIQUE (A, B))",
                "CREATE TABLE O (K VARCHAR(4) CHARACTER SET OCTETS NOT NULL PRIMARY KEY, V INTEGER)")
    capture.init(project.config)
    capture.enable(project.config, "T", key=["A", "B"])
    capture.enable(project.config, "O")
    _tx(project, "anna", ["INSERT INTO T VALUES (1, NULL, 5)", "INSERT INTO T VALUES (2, 'x', 5)",
                          "INSERT INTO O VALUES (x'01FF', 5)"])
    start = datetime.now() - timedelta(seconds=1)
    mistake = _tx(project, "boris", ["UPDATE T SET V = 0", "UPDATE O SET V = 0"])
    _shipped(project)
    plan = undo.revert_selection(project.config, transaction_id=mistake, dry_run=True)
    assert "WHERE K = x'01FF';" in plan["script"] and "WHERE A = '1' AND B IS NULL;" in plan["script"]
    undo.revert_selection(project.config, transaction_id=mistake)
    assert _table(project, "T") == [(1, None, 5), (2, "x", 5)] and _table(project, "O") == [(b"\x01\xff", 5)]
    _tx(project, "boris", ["UPDATE T SET V = 9 WHERE A = 2"])           # not transferred yet
    with pytest.raises(RevertConflict, match="not yet in the log database"):
        undo.revert_selection(project.config, author="boris", since=start, until=datetime.now() + timedelta(1))


def test_http_times_with_an_offset_and_no_file_paths_in_errors(project):
    """Found by the review: a time with an offset was read as local time; a database error named the
    database file."""
    from fbaudit import api
    from helpers import running_server
    from test_api import TOKEN, call
    _orders(project)
    start = datetime.now().astimezone() - timedelta(seconds=2)
    _tx(project, "batch", ["UPDATE ORDERS SET TOTAL = 0 WHERE ID = 1"])
    _shipped(project)
    shifted = start.astimezone(__import__("datetime").timezone(timedelta(hours=5)))   # the same instant, +05:00
    until = datetime.now().astimezone() + timedelta(hours=1)
    with running_server(api.create_app(project.config, token=TOKEN)) as base:
        status, body = call(base, "/api/revert", author="batch", since=shifted.isoformat(), until=until.isoformat())
        assert status == 200 and body["data"]["counts"]["update"] == 1, body
        status, body = call(base, "/api/versions", author="batch", since=shifted.isoformat())
        assert status == 200 and len(body["data"]["items"]) == 1
        status, body = call(base, "/api/revert", author="x" * 300, since=shifted.isoformat(), until=until.isoformat())
        assert status in (400, 404) and project.main.database not in body["error"]["message"], body
