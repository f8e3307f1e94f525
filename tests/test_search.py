"""Search across the log (docs/versions.md "Search"): "who set PRICE to 0?" through the value
indexes, in the CLI (`fbaudit search`), the library and /api/versions, on every target."""
from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from fbaudit import capture, history, transfer
from fbaudit.cli import cli
from fbaudit.errors import FbauditError, NotFound


@pytest.fixture
def shop(project):
    project.sql("CREATE TABLE PRODUCT (SKU VARCHAR(20) CHARACTER SET UTF8 NOT NULL PRIMARY KEY, "
                "TITLE VARCHAR(200) CHARACTER SET WIN1251, PRICE NUMERIC(12,2), SOLD DATE, CODE VARCHAR(8) CHARACTER SET OCTETS)",
                "CREATE TABLE PRICE_LIST (ID INTEGER NOT NULL PRIMARY KEY, PRICE NUMERIC(9,3))")
    capture.init(project.config)
    capture.enable(project.config, "PRODUCT")
    capture.enable(project.config, "PRICE_LIST")
    long_title = "Ёлка " + "x" * 100
    with project.connect() as db:
        cur = db.con.cursor()

        def by(author: str, *statements: str) -> None:
            cur.execute("SELECT RDB$SET_CONTEXT('USER_TRANSACTION', 'FBAUDIT_AUTHOR', ?) FROM RDB$DATABASE", (author,))
            cur.fetchall()
            for s in statements:
                cur.execute(s)
            db.commit()
        by("anna", "INSERT INTO PRODUCT VALUES ('A-1', 'Ёлка', 10.50, '2026-01-05', x'0102')",
           "INSERT INTO PRODUCT VALUES ('A-2', 'Берёза', 3, NULL, NULL)",
           f"INSERT INTO PRODUCT VALUES ('A-3', '{long_title}', 7, NULL, NULL)",
           "INSERT INTO PRICE_LIST VALUES (1, 0)")
        by("boris", "UPDATE PRODUCT SET PRICE = 0 WHERE SKU = 'A-1'")
        by("carla", "UPDATE PRODUCT SET PRICE = 0, TITLE = 'Ёлка большая' WHERE SKU = 'A-2'")
        by("dora", "UPDATE PRODUCT SET PRICE = 1 WHERE SKU = 'A-1'")
    assert not transfer.transfer(project.config).errors
    return project, long_title


def _who(res) -> list[tuple]:
    return [(i["table"], i["key"], i["author"], i["operation"]) for i in res["items"]]


def test_who_set_price_to_zero(shop):
    project, long_title = shop
    cfg = project.config
    # "0" is the logged 0.00 of NUMERIC(12,2) and 0.000 of NUMERIC(9,3): newest first, both tables.
    res = history.search(cfg, field="price", value="0")
    assert _who(res) == [("PRODUCT", {"SKU": "A-2"}, "carla", "update"), ("PRODUCT", {"SKU": "A-1"}, "boris", "update"),
                         ("PRICE_LIST", {"ID": "1"}, "anna", "insert")]
    assert res["total"] == 3 and res["items"][0]["version"] == 2 and res["items"][0]["transaction_id"]
    assert _who(history.search(cfg, table="PRODUCT", field="PRICE", value="0.00", author="boris")) == \
        [("PRODUCT", {"SKU": "A-1"}, "boris", "update")]
    # Changed away from 0: the old side; either side.
    assert _who(history.search(cfg, table="PRODUCT", field="PRICE", value="0", side="old")) == \
        [("PRODUCT", {"SKU": "A-1"}, "dora", "update")]
    assert len(history.search(cfg, table="PRODUCT", field="PRICE", value="0", side="either")["items"]) == 3
    # Text in any character set, a prefix, a value longer than the index's 64 bytes, a date, bytes.
    assert _who(history.search(cfg, field="TITLE", value="Ёлка большая")) == [("PRODUCT", {"SKU": "A-2"}, "carla", "update")]
    assert [i["key"]["SKU"] for i in history.search(cfg, field="TITLE", value="Ёлка", prefix=True)["items"]] == \
        ["A-2", "A-3", "A-1"]
    assert [i["key"]["SKU"] for i in history.search(cfg, field="TITLE", value=long_title)["items"]] == ["A-3"]
    assert history.search(cfg, field="TITLE", value=long_title[:-1])["items"] == []
    assert [i["key"]["SKU"] for i in history.search(cfg, field="TITLE", value=long_title[:70], prefix=True)["items"]] == ["A-3"]
    assert [i["key"]["SKU"] for i in history.search(cfg, field="SOLD", value="2026-1-5")["items"]] == ["A-1"]
    assert [i["key"]["SKU"] for i in history.search(cfg, field="CODE", value="0102")["items"]] == ["A-1"]
    assert history.search(cfg, field="PRICE", value="abc")["items"] == []       # no number is "abc"
    assert history.search(cfg, field="PRICE", value="0.001")["items"] == []     # rounds to 0.00: not that value
    with pytest.raises(NotFound, match="No logged field 'NOPE'"):
        history.search(cfg, field="NOPE", value="1")
    with pytest.raises(FbauditError, match="go together"):
        history.search(cfg, field="PRICE")


def test_search_reads_field_rows_through_the_value_index(shop, monkeypatch):
    """The search's own statements start from LOG through LOG_NEW_VALUE / LOG_OLD_VALUE and reach each
    packet by its primary key, on every Firebird (5.0 reorders a plain join to start from the packets:
    0.7 s instead of 7 ms on 1M packets, scripts/bench_api.py): the 5M-row benchmark's premise."""
    project, _ = shop
    from fbaudit import db as dbmod
    plans = []
    query = dbmod.Database.query

    def planned(self, sql, params=()):
        if "FROM 1 FOR 64" in sql:
            cur = self.con.cursor()
            cur.execute(sql, params)
            cur.fetchall()
            plans.append(cur._stmt.plan)
            cur.close()
        return query(self, sql, params)
    monkeypatch.setattr(dbmod.Database, "query", planned)
    history.search(project.config, field="PRICE", value="0", author="boris")
    history.search(project.config, table="PRODUCT", field="TITLE", value="Ёлка", prefix=True, side="either")
    assert len(plans) == 4, plans          # each search: its count and its page
    # PRICE has two logged forms of 0 (0.00 and 0.000 in PRICE_LIST): one index scan each.
    # The derived table sorts its matches newest first (its FIRST keeps the newest), then joins the packets.
    assert all("JOIN (SORT (V L INDEX (FBA_LOG_NEW_VALUE, FBA_LOG_NEW_VALUE)), P INDEX (FBA_LOG_PACKET_PK))" in plan
               for plan in plans[:2]), plans
    assert all("JOIN (SORT (V L INDEX (FBA_LOG_NEW_VALUE, FBA_LOG_OLD_VALUE)), P INDEX (FBA_LOG_PACKET_PK))" in plan
               for plan in plans[2:]), plans


def test_cli_search_json_in_the_shape_of_api_versions(shop):
    project, _ = shop
    cfg = project.write_config()
    out = CliRunner().invoke(cli, ["--config", str(cfg), "search", "--field", "PRICE", "--value", "0", "--json"])
    assert out.exit_code == 0, out.output
    data = json.loads(out.stdout)
    assert [v["author"] for v in data["versions"]] == ["carla", "boris", "anna"]
    assert set(data["versions"][0]) >= {"packet_id", "at", "operation", "author", "table", "key", "version",
                                        "transaction_id", "fields_changed"}
    assert data["pagination"]["total"] == 3
    out = CliRunner().invoke(cli, ["--config", str(cfg), "search", "--table", "PRODUCT", "--field", "PRICE",
                                   "--value", "0", "--old"])
    assert out.exit_code == 0 and "dora" in out.stdout and "PRODUCT SKU=A-1" in out.stdout, out.output
    bad = CliRunner().invoke(cli, ["--config", str(cfg), "search", "--value", "0"])
    assert bad.exit_code != 0 and "go together" in bad.output


def test_api_versions_filters_by_field_and_value(shop):
    from fbaudit import api
    from helpers import running_server
    from test_api import TOKEN, call
    project, _ = shop
    with running_server(api.create_app(project.config, token=TOKEN)) as base:
        status, body = call(base, "/api/versions", field="PRICE", value="0")
        assert status == 200 and [i["author"] for i in body["data"]["items"]] == ["carla", "boris", "anna"], body
        assert body["data"]["pagination"]["total"] == 3
        status, body = call(base, "/api/versions", table="PRODUCT", field="PRICE", value="0", side="old")
        assert status == 200 and [i["author"] for i in body["data"]["items"]] == ["dora"]
        status, body = call(base, "/api/versions", field="TITLE", value="Ёлка", prefix="true", limit=1)
        assert status == 200 and body["data"]["items"][0]["key"] == {"SKU": "A-2"}
        assert call(base, "/api/versions", field="PRICE")[0] == 400                   # value missing
        assert call(base, "/api/versions", field="PRICE", value="0", side="both")[0] == 400
        assert call(base, "/api/versions", field="NOPE", value="0")[0] == 404


def test_values_in_the_form_their_type_logs(project):
    """CHAR is logged padded, floats in their exact text, a retyped column's old values in its old type:
    a value typed plainly finds them all (found by the review of this feature)."""
    project.sql("CREATE TABLE S (ID INTEGER NOT NULL PRIMARY KEY, ST CHAR(8), DBL DOUBLE PRECISION, V INTEGER)")
    capture.init(project.config)
    capture.enable(project.config, "S")
    run = lambda *sql: _exec(project, *sql)
    run("INSERT INTO S VALUES (1, 'OPEN', 0.1, 5)")
    project.sql("ALTER TABLE S ALTER COLUMN V TYPE NUMERIC(18,2)")
    capture.sync(project.config)
    run("INSERT INTO S VALUES (2, 'SHUT', 100, 5)")
    assert not transfer.transfer(project.config).errors
    keys = lambda **kw: [i["key"]["ID"] for i in history.search(project.config, **kw)["items"]]
    assert keys(field="ST", value="OPEN") == ["1"]
    assert keys(field="DBL", value="0.1") == ["1"] and keys(field="DBL", value="1e2") == ["2"]
    assert keys(field="V", value="5") == ["2", "1"]              # 5.00 now, 5 before the retype


def _exec(project, *statements):
    with project.connect() as db:
        for s in statements:
            db.execute(s)
        db.commit()
