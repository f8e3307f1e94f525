"""Transactions as first-class (docs/versions.md "Transactions"): every change carries its source
transaction; `fbaudit transactions` lists them newest first, `fbaudit transaction TX` shows one
whole, across tables, in order; the same over HTTP; /api/versions items name their transaction and
version."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

from fbaudit import api, capture, history, transfer
from fbaudit.errors import NotFound

from helpers import running_server
from test_api import TOKEN, call


def _shop(project) -> dict[str, int]:
    """ORDERS and LINES (a foreign key), three transactions by two authors, one with DDL in it.
    Returns {name: source transaction number}."""
    project.sql("CREATE TABLE ORDERS (ID INTEGER NOT NULL PRIMARY KEY, CUSTOMER VARCHAR(40) CHARACTER SET UTF8)",
                "CREATE TABLE LINES (ID INTEGER NOT NULL PRIMARY KEY, ORDER_ID INTEGER REFERENCES ORDERS (ID), "
                "QTY INTEGER)")
    capture.init(project.config)
    capture.enable(project.config, "ORDERS")
    capture.enable(project.config, "LINES")
    txs = {}
    with project.connect() as db:
        cur = db.con.cursor()

        def tx(name: str, author: str | None, statements: list[str]) -> None:
            if author:
                cur.execute("SELECT RDB$SET_CONTEXT('USER_TRANSACTION', 'FBAUDIT_AUTHOR', ?) FROM RDB$DATABASE",
                            (author,))
                cur.fetchall()
            for s in statements:
                if s.startswith("CREATE"):
                    db.con.execute_immediate(s)
                else:
                    cur.execute(s)
            txs[name] = db.scalar("SELECT CURRENT_TRANSACTION FROM RDB$DATABASE")
            db.commit()
        tx("new order", "anna", ["INSERT INTO ORDERS VALUES (1, 'Ёлка')", "INSERT INTO LINES VALUES (10, 1, 2)",
                                 "INSERT INTO LINES VALUES (11, 1, 3)"])
        tx("edit", "boris", ["UPDATE ORDERS SET CUSTOMER = 'Ёлки' WHERE ID = 1", "DELETE FROM LINES WHERE ID = 11",
                             "UPDATE LINES SET QTY = 5 WHERE ID = 10"])
        tx("with ddl", None, ["CREATE INDEX LINES_QTY ON LINES (QTY)", "UPDATE LINES SET QTY = 6 WHERE ID = 10"])
    assert not transfer.transfer(project.config).errors
    return txs


def test_transactions_newest_first_with_their_tables_operations_and_filters(project):
    txs = _shop(project)
    res = history.transactions(project.config)
    assert [t["transaction_id"] for t in res["transactions"]] == [txs["with ddl"], txs["edit"], txs["new order"]]
    assert res["total"] == 3 and res["total_exact"]
    by = {t["transaction_id"]: t for t in res["transactions"]}
    first = by[txs["new order"]]
    assert (first["author"], first["user"], first["changes"]) == ("anna", "SYSDBA", 3)
    assert first["tables"] == {"ORDERS": 1, "LINES": 2} and first["operations"] == {"insert": 3}
    edit = by[txs["edit"]]
    assert edit["tables"] == {"ORDERS": 1, "LINES": 2} and edit["operations"] == {"update": 2, "delete": 1}
    assert by[txs["with ddl"]]["author"] == "SYSDBA"              # no author set: the database user
    # Filters pick transactions; the counts stay the whole transaction's.
    only = history.transactions(project.config, author="boris")["transactions"]
    assert [t["transaction_id"] for t in only] == [txs["edit"]] and only[0]["changes"] == 3
    assert [t["transaction_id"] for t in history.transactions(project.config, table="orders")["transactions"]] == \
        [txs["edit"], txs["new order"]]
    page = history.transactions(project.config, limit=1, offset=1)
    assert [t["transaction_id"] for t in page["transactions"]] == [txs["edit"]] and page["total"] == 3
    from datetime import datetime, timedelta
    assert history.transactions(project.config, since=datetime.now() + timedelta(hours=1))["transactions"] == []
    with pytest.raises(NotFound, match="No history for table 'NOPE'"):
        history.transactions(project.config, table="NOPE")


def test_one_transaction_whole_across_tables_in_order_with_its_ddl(project):
    txs = _shop(project)
    t = history.transaction(project.config, txs["edit"])
    assert (t["transaction_id"], t["author"], t["changes"], t["total"]) == (txs["edit"], "boris", 3, 3)
    assert [(i["table"], i["key"], i["operation"], i["version"]) for i in t["items"]] == [
        ("ORDERS", {"ID": "1"}, "update", 2), ("LINES", {"ID": "11"}, "delete", 2), ("LINES", {"ID": "10"}, "update", 2)]
    assert t["items"][0]["changes"] == {"CUSTOMER": {"old": "Ёлка", "new": "Ёлки"}}
    assert t["items"][1]["changes"]["QTY"] == {"old": "3", "new": None}
    assert all(i["transaction_id"] == txs["edit"] for i in t["items"])
    assert t["schema_events"] == []
    d = history.transaction(project.config, txs["with ddl"])
    assert [e["sql"] for e in d["schema_events"]] == ["CREATE INDEX LINES_QTY ON LINES (QTY)"]
    assert [i["changes"] for i in d["items"]] == [{"QTY": {"old": "5", "new": "6"}}]
    page = history.transaction(project.config, txs["new order"], limit=2, offset=1)
    assert [i["key"]["ID"] for i in page["items"]] == ["10", "11"] and page["total"] == 3
    lines = history.transaction_lines(page)
    assert lines[0].startswith(f"main: transaction {txs['new order']}, ") and "by anna" in lines[0]
    with pytest.raises(NotFound, match="Transaction 999999 of source 'main' has no changes"):
        history.transaction(project.config, 999999)
    # /api/versions and history --json items name their transaction and version.
    items = history.search(project.config, table="LINES", key="10")["items"]
    assert [(i["version"], i["transaction_id"]) for i in items] == [
        (3, txs["with ddl"]), (2, txs["edit"]), (1, txs["new order"])]


def test_transactions_cli_json_text_and_bad_input(project):
    txs = _shop(project)
    cfg = project.write_config()
    cmd = [sys.executable, "-m", "fbaudit.cli", "--config", str(cfg)]
    run = lambda *a: subprocess.run(cmd + list(a), capture_output=True, text=True, timeout=120)  # noqa: E731
    r = run("transactions", "--json")
    assert r.returncode == 0, r.stderr
    data = json.loads(r.stdout)
    assert data["pagination"] == {"limit": 20, "offset": 0, "total": 3, "total_exact": True}
    t = data["transactions"][-1]
    assert {"transaction_id", "source", "at", "author", "user", "changes", "tables"} <= t.keys()
    r = run("transactions", "--table", "LINES", "--author", "anna")
    assert r.returncode == 0 and f"tx {txs['new order']}" in r.stdout and "by anna" in r.stdout
    assert "Ёлка" not in r.stdout                                 # a list of transactions, not their values
    r = run("transaction", str(txs["edit"]))
    assert r.returncode == 0 and "ORDERS ID=1" in r.stdout and "CUSTOMER: Ёлка -> Ёлки" in r.stdout
    r = run("transaction", str(txs["edit"]), "--json", "--limit", "1")
    body = json.loads(r.stdout)
    assert body["pagination"] == {"limit": 1, "offset": 0, "total": 3} and len(body["items"]) == 1
    r = run("transaction", "abc")
    assert r.returncode == 2 and "Traceback" not in r.stderr
    r = run("transaction", "999999")
    assert r.returncode != 0 and "has no changes in the log database" in r.stderr and "Traceback" not in r.stderr
    r = run("transactions", "--since", "yesterday-ish")
    assert r.returncode == 2 and "--since" in r.stderr


@pytest.fixture
def shop_server(project):
    txs = _shop(project)
    with running_server(api.create_app(project.config, token=TOKEN)) as base:
        yield txs, base


def test_transactions_over_http(shop_server):
    txs, base = shop_server
    status, body = call(base, "/api/transactions", author="boris")
    assert status == 200 and [t["transaction_id"] for t in body["data"]["transactions"]] == [txs["edit"]]
    assert body["data"]["pagination"] == {"limit": 20, "offset": 0, "total": 1, "total_exact": True}
    status, body = call(base, f"/api/transactions/main/{txs['edit']}", limit=2)
    assert status == 200 and [i["operation"] for i in body["data"]["items"]] == ["update", "delete"]
    assert body["data"]["pagination"] == {"limit": 2, "offset": 0, "total": 3}
    status, body = call(base, "/api/versions", table="ORDERS")
    assert {(i["version"], i["transaction_id"]) for i in body["data"]["items"]} == {(1, txs["new order"]),
                                                                                   (2, txs["edit"])}
    assert call(base, "/api/transactions/main/999999")[0] == 404
    for bad in ("/api/transactions/main/-1", "/api/transactions/main/x", "/api/transactions/main/99999999999999999999"):
        status, body = call(base, bad)
        assert status in (400, 422) and body["success"] is False, bad
    status, body = call(base, "/api/transactions/nope%27%22%7B/1")
    assert status in (400, 404) and body["success"] is False and "nope" in body["error"]["message"]
    assert call(base, "/api/transactions", token=None)[0] == 401
