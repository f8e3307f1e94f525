"""Many sources (one database per customer) found by a folder pattern, into one log database."""
from __future__ import annotations

import json
import shutil

import pytest
from click.testing import CliRunner

from fbaudit.cli import cli
from fbaudit.config import load_config
from fbaudit.db import open_database

from conftest import TARGET

pytestmark = pytest.mark.skipif(TARGET == "server", reason="a folder pattern of embedded database files; "
                                                            "the server path is the same code with a DSN prefix")
SHOPS = ["berlin", "köln", "osaka", "paris", "wien"]


def invoke(config, *args):
    return CliRunner().invoke(cli, ["--config", str(config), *args], catch_exceptions=False)


@pytest.fixture
def hosted(target, tmp_path):
    """Five customer databases of one schema in shops/, a config with `pattern: shops/*.fdb`."""
    from fbaudit.config import DatabaseSpec
    tpl = DatabaseSpec("tpl", str(tmp_path / "template.fdb"))
    with target.create(tpl) as db:
        db.con.execute_immediate("CREATE TABLE ITEM (ID INTEGER NOT NULL PRIMARY KEY, NAME VARCHAR(40) "
                                 "CHARACTER SET UTF8, QTY INTEGER)")
        db.con.commit()
        db.execute("INSERT INTO ITEM VALUES (1, 'Ware', 0)")
        db.commit()
    (tmp_path / "shops").mkdir()
    for name in SHOPS:
        shutil.copyfile(tmp_path / "template.fdb", tmp_path / "shops" / f"{name}.fdb")
    cfg = tmp_path / "fbaudit.yaml"
    cfg.write_text("log:\n  database: shops/log.fdb\nsources:\n  - pattern: shops/*.fdb\n"
                   "    name: 'shop_{stem}'\n    registry: shops.yaml\n", encoding="utf-8")
    return cfg


def edit(config, name: str, n: int) -> None:
    spec = next(s for s in load_config(config).sources if s.name == name)
    with open_database(spec) as db:
        for i in range(n):
            db.execute("UPDATE ITEM SET QTY = ? WHERE ID = 1", (i + 1,))
            db.commit()


def test_pattern_sources_end_to_end_with_per_source_summary(hosted):
    names = [f"shop_{s}" for s in SHOPS]
    res = invoke(hosted, "init")
    assert res.exit_code == 2 and "5 sources are configured" in res.stderr      # says which, changes nothing
    res = invoke(hosted, "init", "--all")
    assert res.exit_code == 0, res.output
    assert [line.split(":")[0] for line in res.output.splitlines()[1:]] == names
    assert "registered " + ", ".join(names) in res.output                         # the log database (not a source)
    res = invoke(hosted, "enable", "ITEM", "--all-sources", "--json")
    assert res.exit_code == 0, res.output
    assert {s["number"] for s in json.loads(res.stdout)["sources"]} == {1}        # one shared registry: same numbers
    for k, name in enumerate(names):
        edit(hosted, name, k + 1)                                                 # 1..5 changes
    res = invoke(hosted, "transfer", "--workers", "3", "--json")
    assert res.exit_code == 0, res.output
    shipped = {s["source"]: s["packets"] for s in json.loads(res.stdout)["sources"]}
    assert shipped == {name: k + 1 for k, name in enumerate(names)}
    config = load_config(hosted)
    with open_database(config.log) as ldb:
        in_log = dict(ldb.query("SELECT S.NAME, COUNT(*) FROM FBA_LOG_PACKET P JOIN FBA_SOURCES S "
                                "ON S.ID = P.SOURCE_ID GROUP BY S.NAME"))
    assert in_log == shipped
    text = invoke(hosted, "transfer").output.splitlines()
    assert len(text) == 5 and all("nothing new" in line for line in text)
    res = invoke(hosted, "status", "--json")
    data = json.loads(res.stdout)
    assert res.exit_code == 0 and data["health"] == "ok" and data["counts"]["ok"] == 5
    assert {s["source"]: s["last_transfer"]["outcome"] for s in data["sources"]} == dict.fromkeys(names, "nothing_new")
    # A transfer that stopped running (the scheduler is gone) shows although nothing is waiting.
    with open_database(config.log) as ldb:
        ldb.execute("UPDATE FBA_TRANSFER_RUNS SET RUN_AT = DATEADD(-20 MINUTE TO RUN_AT) WHERE SOURCE_NAME = ?",
                    ("shop_wien",))
        ldb.commit()
    res = invoke(hosted, "status")
    assert res.exit_code == 1 and "WARNING: shop_wien: no transfer run for 20m" in res.output
    res = invoke(hosted, "rotate", "--force", "--workers", "2", "--json")
    assert res.exit_code == 0 and [s["outcome"] for s in json.loads(res.stdout)["sources"]] == ["done"] * 5


def test_one_broken_customer_database_does_not_stop_the_others(hosted, tmp_path):
    invoke(hosted, "init", "--all")
    invoke(hosted, "enable", "ITEM", "--all-sources")
    for name in SHOPS:
        edit(hosted, f"shop_{name}", 2)
    (tmp_path / "shops" / "osaka.fdb").write_bytes(b"\0" * 8192)           # damaged beyond reading
    res = invoke(hosted, "transfer", "--retries", "1", "--json")
    assert res.exit_code == 4
    by = {s["source"]: s for s in json.loads(res.stdout)["sources"]}
    assert by["shop_osaka"]["error"] and all(by[f"shop_{n}"]["packets"] == 2 for n in SHOPS if n != "osaka")
    res = invoke(hosted, "status")
    assert res.exit_code == 2
    assert res.output.startswith("CRITICAL: 5 source(s) - 4 ok, 0 warning, 1 critical")
    rows = res.output.split("\n\n")[1].splitlines()
    assert rows[1].split()[:2] == ["shop_osaka", "CRITICAL"]                 # worst first
    assert "CRITICAL: shop_osaka: cannot read the source" in res.output
