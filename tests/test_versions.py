"""Versions rebuilt from the log, diffs, and reverts on the source (issue 5, first part)."""
from __future__ import annotations

import re

import pytest
from firebird.driver import Isolation

from fbaudit import capture, history, transfer, versions
from fbaudit.db import open_database
from fbaudit.errors import FbauditError

from helpers import run_sql, running_server


@pytest.fixture
def priced(project):
    """PRICE audited: a NUMERIC, a DATE, a BOOLEAN, UTF-8 text and a text BLOB; three versions of SKU A-1."""
    project.sql("CREATE TABLE PRICE (SKU VARCHAR(20) CHARACTER SET UTF8 NOT NULL PRIMARY KEY, "
                "TITLE VARCHAR(60) CHARACTER SET UTF8, AMOUNT NUMERIC(12,2), VALID_FROM DATE, ACTIVE BOOLEAN, "
                "NOTE BLOB SUB_TYPE TEXT CHARACTER SET UTF8)")
    capture.init(project.config)
    capture.enable(project.config, "PRICE")
    run_sql(project, ["INSERT INTO PRICE VALUES ('A-1', 'Гайка М8', 0.20, DATE '2026-01-01', TRUE, 'первая')",
                      "UPDATE PRICE SET AMOUNT = 0.25, TITLE = 'Гайка М8 оцинк.' WHERE SKU = 'A-1'",
                      "UPDATE PRICE SET AMOUNT = 9.99, ACTIVE = FALSE, NOTE = NULL, VALID_FROM = DATE '2026-06-30' "
                      "WHERE SKU = 'A-1'"])
    transfer.transfer(project.config)
    return project


def row(project, sku="A-1"):
    with project.connect() as db:
        rows = db.query("SELECT TITLE, AMOUNT, VALID_FROM, ACTIVE, NOTE FROM PRICE WHERE SKU = ?", (sku,))
        db.commit()
    return [tuple(str(v) if v is not None else None for v in r) for r in rows]


def test_state_at_each_version_and_diff(priced):
    s1 = versions.record_state(priced.config, "PRICE", "A-1", 1)
    assert s1["exists"] and s1["complete"]
    assert s1["fields"] == {"SKU": "A-1", "TITLE": "Гайка М8", "AMOUNT": "0.20", "VALID_FROM": "2026-01-01",
                            "ACTIVE": "TRUE", "NOTE": "первая"}
    s3 = versions.record_state(priced.config, "PRICE", "A-1")
    assert s3["version"] == 3 and s3["fields"]["AMOUNT"] == "9.99" and s3["fields"]["NOTE"] is None
    d = versions.record_diff(priced.config, "PRICE", "A-1", 1, 3)
    assert d["fields"] == {"TITLE": {"a": "Гайка М8", "b": "Гайка М8 оцинк."}, "AMOUNT": {"a": "0.20", "b": "9.99"},
                           "VALID_FROM": {"a": "2026-01-01", "b": "2026-06-30"}, "ACTIVE": {"a": "TRUE", "b": "FALSE"},
                           "NOTE": {"a": "первая", "b": None}}
    with pytest.raises(FbauditError, match="versions 1 to 3"):
        versions.record_state(priced.config, "PRICE", "A-1", 4)


def test_revert_sets_back_only_what_differs_and_is_captured_with_author_and_comment(priced):
    res = versions.revert(priced.config, "PRICE", "A-1", to_version=1, by="support.anna", comment="ticket 4711")
    assert res["action"] == "update" and set(res["fields"]) == {"TITLE", "AMOUNT", "VALID_FROM", "ACTIVE", "NOTE"}
    assert row(priced) == [("Гайка М8", "0.20", "2026-01-01", "True", "первая")]
    transfer.transfer(priced.config)
    h = history.history(priced.config, "PRICE", "A-1", limit=None)
    v4 = h["versions"][-1]
    assert h["total"] == 4 and (v4["author"], v4["comment"], v4["operation"]) == ("support.anna", "ticket 4711", "update")
    assert versions.record_state(priced.config, "PRICE", "A-1")["fields"] == \
        versions.record_state(priced.config, "PRICE", "A-1", 1)["fields"]
    again = versions.revert(priced.config, "PRICE", "A-1", to_version=1)
    assert again["action"] == "none"                        # already so: nothing written, nothing logged


def test_revert_refuses_while_someone_edits_the_row_and_changes_nothing(priced):
    editor = open_database(priced.main, isolation=Isolation.READ_COMMITTED)
    try:
        editor.execute("UPDATE PRICE SET AMOUNT = 1.00 WHERE SKU = 'A-1'")          # not committed
        with pytest.raises(versions.RevertConflict, match="being changed by another transaction"):
            versions.revert(priced.config, "PRICE", "A-1", to_version=1)
        editor.commit()                                      # the user's save is not hurt by the attempt
    finally:
        editor.close()
    assert row(priced)[0][1] == "1.00"
    # ... and afterwards: a change the log does not have yet
    with pytest.raises(versions.RevertConflict, match="1 change\\(s\\) not yet in the log database"):
        versions.revert(priced.config, "PRICE", "A-1", to_version=1)
    assert row(priced)[0][1] == "1.00"


def test_revert_refuses_a_row_changed_behind_the_log(priced):
    with priced.connect() as db:                # logging paused for this change: the log never sees it
        db.execute("UPDATE FBA_LOG_INFO SET ZAPIS = 0")
        db.commit()
        db.execute("UPDATE PRICE SET TITLE = 'by hand' WHERE SKU = 'A-1'")
        db.commit()
        db.execute("UPDATE FBA_LOG_INFO SET ZAPIS = 1")
        db.commit()
    with pytest.raises(versions.RevertConflict, match=r"changed since its last logged version 3 \(TITLE\)"):
        versions.revert(priced.config, "PRICE", "A-1", to_version=1)
    assert row(priced)[0][0] == "by hand"


def test_revert_of_a_deleted_row_inserts_it_again(priced):
    run_sql(priced, ["DELETE FROM PRICE WHERE SKU = 'A-1'"])
    transfer.transfer(priced.config)
    assert row(priced) == []
    res = versions.revert(priced.config, "PRICE", "A-1", to_version=2, by="support")
    assert res["action"] == "insert"
    assert row(priced) == [("Гайка М8 оцинк.", "0.25", "2026-01-01", "True", "первая")]
    transfer.transfer(priced.config)
    v = history.history(priced.config, "PRICE", "A-1", limit=None)["versions"]
    assert [x["operation"] for x in v] == ["insert", "update", "update", "delete", "insert"]
    assert v[-1]["author"] == "support" and v[-1]["comment"] == "revert to version 2"
    back = versions.revert(priced.config, "PRICE", "A-1", to_version=4)     # version 4 is the deletion
    assert back["action"] == "delete" and row(priced) == []


def test_dry_run_and_unknown_records(priced):
    res = versions.revert(priced.config, "PRICE", "A-1", to_version=1, dry_run=True)
    assert res["action"] == "update" and "dry run" in res["message"]
    assert row(priced)[0][1] == "9.99"
    with pytest.raises(FbauditError, match="No history for table 'NOPE'"):
        versions.revert(priced.config, "NOPE", "1", to_version=1)
    with pytest.raises(FbauditError, match="no versions"):
        versions.revert(priced.config, "PRICE", "Z-9", to_version=1)


def test_cli_history_at_diff_and_revert(priced):
    import json
    from click.testing import CliRunner
    from fbaudit.cli import cli
    cfg = priced.write_config()

    def invoke(*args):
        return CliRunner().invoke(cli, ["--config", str(cfg), *args], catch_exceptions=False)
    res = invoke("history", "PRICE", "A-1", "--at", "1")
    assert res.exit_code == 0 and "PRICE SKU=A-1 after version 1 of 3" in res.stdout
    assert "  AMOUNT      0.20" in res.stdout and "Гайка М8" in res.stdout
    res = invoke("history", "PRICE", "A-1", "--diff", "2", "3")
    assert res.exit_code == 0 and "AMOUNT      0.25 | 9.99" in res.stdout and "TITLE" not in res.stdout
    assert invoke("history", "PRICE", "A-1", "--at", "9").exit_code == 5
    res = invoke("revert", "PRICE", "A-1", "--to-version", "1", "--by", "anna", "--comment", "ticket 1", "--json")
    data = json.loads(res.stdout)
    assert res.exit_code == 0 and data["action"] == "update" and data["author"] == "anna"
    assert row(priced)[0][1] == "0.20"
    res = invoke("revert", "PRICE", "A-1", "--to-version", "3")        # the revert is not transferred yet
    assert res.exit_code == 7 and "not yet in the log database" in res.stderr
    assert invoke("revert", "PRICE", "A-1", "--to-version", "0").exit_code == 2


def test_revert_restores_a_field_that_was_null_and_records_by_in_the_author_column(project):
    project.sql("CREATE TABLE NOTE_T (ID INTEGER NOT NULL PRIMARY KEY, A VARCHAR(10), NOTE VARCHAR(20), "
                "EDITED_BY VARCHAR(20))")
    capture.init(project.config)
    capture.enable(project.config, "NOTE_T", author="EDITED_BY")
    run_sql(project, ["INSERT INTO NOTE_T VALUES (1, 'a', NULL, 'bob')",          # NOTE NULL: not logged
                      "UPDATE NOTE_T SET NOTE = 'x', EDITED_BY = 'carl' WHERE ID = 1"])
    transfer.transfer(project.config)
    res = versions.revert(project.config, "NOTE_T", "1", to_version=1, by="anna")
    assert res["action"] == "update" and res["fields"] == {"NOTE": None, "EDITED_BY": "anna"}
    with project.connect() as db:
        assert db.query("SELECT A, NOTE, EDITED_BY FROM NOTE_T") == [("a", None, "anna")]
        db.commit()
    transfer.transfer(project.config)
    last = history.history(project.config, "NOTE_T", "1", limit=None)["versions"][-1]
    assert last["author"] == "anna" and last["changes"]["NOTE"] == {"old": "x", "new": None}


def test_revert_refuses_a_table_no_longer_audited(priced):
    capture.disable(priced.config, "PRICE")
    with pytest.raises(FbauditError, match="not audited in source main now"):
        versions.revert(priced.config, "PRICE", "A-1", to_version=1)
    assert row(priced)[0][1] == "9.99"


def test_version_detail_folds_in_sql_what_state_at_folds_in_python(priced):
    """The API's one-version view (state folded in SQL, one snapshot) agrees with the full fold at every
    version, across a delete, a re-insert, NULLs and a BLOB longer than the inline limit."""
    long_note = "長い" * 2500                     # 15,000 bytes: comes back as a BLOB, not inline
    run_sql(priced, ["DELETE FROM PRICE WHERE SKU = 'A-1'",
                     "INSERT INTO PRICE (SKU, TITLE, AMOUNT) VALUES ('A-1', 'again', 1.00)",
                     "UPDATE PRICE SET NOTE = ?, TITLE = NULL WHERE SKU = 'A-1'",
                     "UPDATE PRICE SET AMOUNT = 2.00 WHERE SKU = 'A-1'"], {2: (long_note,)})
    transfer.transfer(priced.config)
    full = history.history(priced.config, "PRICE", "A-1", limit=None)["versions"]
    assert [v["operation"] for v in full] == ["insert", "update", "update", "delete", "insert", "update", "update"]
    for n in range(1, 8):
        d = versions.version_detail(priced.config, "PRICE", "A-1", n)
        expect = versions.state_at(full, n)
        assert d["version"] == full[n - 1] and d["state"] == expect, n
    assert versions.version_detail(priced.config, "PRICE", "A-1", 7)["state"]["fields"]["NOTE"] == long_note
    with pytest.raises(FbauditError, match="no version 8; the record has versions 1 to 7"):
        versions.version_detail(priced.config, "PRICE", "A-1", 8)


@pytest.mark.parametrize("key_type, old, new", [("INTEGER", "2", "10"), ("VARCHAR(20)", "A|1", "B-1")])
def test_a_key_change_keeps_one_history(project, key_type, old, new):
    """UPDATE ... SET ID = 10 WHERE ID = 2: the old key's history ends with "key_change_away", the
    new key's starts with "key_change" holding the whole row, each names the other key, and revert
    works under the new key and refuses under the old one, naming the new."""
    project.sql(f"CREATE TABLE ITEM (ID {key_type} NOT NULL PRIMARY KEY, NAME VARCHAR(40), QTY INTEGER, NOTE VARCHAR(20))")
    capture.init(project.config)
    capture.enable(project.config, "ITEM")
    lit = (lambda v: v) if key_type == "INTEGER" else (lambda v: f"'{v}'")
    run_sql(project, [f"INSERT INTO ITEM VALUES ({lit(old)}, 'bolt', 5, 'x')",
                      f"UPDATE ITEM SET QTY = 6 WHERE ID = {lit(old)}"])
    run_sql(project, [f"UPDATE ITEM SET ID = {lit(new)}, NOTE = NULL WHERE ID = {lit(old)}"])
    run_sql(project, [f"UPDATE ITEM SET NAME = 'nut' WHERE ID = {lit(new)}"])
    assert not transfer.transfer(project.config).errors
    old_key, new_key = old, new          # one-column keys are typed as the value itself
    h_old = history.history(project.config, "ITEM", old_key)
    assert [v["operation"] for v in h_old["versions"]] == ["insert", "update", "key_change_away"]
    assert h_old["versions"][-1]["key_to"] == new_key
    h_new = history.history(project.config, "ITEM", new_key)
    assert [v["operation"] for v in h_new["versions"]] == ["key_change", "update"]
    moved = h_new["versions"][0]
    assert moved["key_from"] == old_key
    assert moved["changes"] == {"ID": {"old": old, "new": new}, "NAME": {"old": "bolt", "new": "bolt"},
                                "QTY": {"old": "6", "new": "6"}, "NOTE": {"old": "x", "new": None}}
    # The old key: gone (not "still existing"); the new key's first version is the whole row.
    assert history.version_detail(project.config, "ITEM", old_key, None)["state"]["exists"] is False
    first = history.version_detail(project.config, "ITEM", new_key, 1)["state"]
    assert first["complete"] is True and first["exists"] is True
    assert {k: v for k, v in first["fields"].items() if v is not None} == {"ID": new, "NAME": "bolt", "QTY": "6"}
    assert versions.state_at(h_new["versions"], 1)["fields"] == {"ID": new, "NAME": "bolt", "QTY": "6"}
    lines = "\n".join(history.history_lines(h_old))
    assert f"key changed to {new_key}" in lines
    with pytest.raises(FbauditError, match=f"key was changed .* to {re.escape(new_key)}"):
        versions.revert(project.config, "ITEM", old_key, to_version=2)
    versions.revert(project.config, "ITEM", new_key, to_version=1)
    with project.connect() as db:
        assert db.query("SELECT CAST(ID AS VARCHAR(20)), NAME, QTY, NOTE FROM ITEM") == [(new, "bolt", 6, None)]


def test_a_record_as_of_a_time_cli_json_and_http(project):
    """history --as-of: the state after the newest version made at or before the time; before the
    first version: none yet; after the delete: deleted. The same over HTTP."""
    import json
    import subprocess
    import sys
    import time
    from datetime import datetime
    project.sql("CREATE TABLE ITEM (ID INTEGER NOT NULL PRIMARY KEY, NAME VARCHAR(20) CHARACTER SET UTF8, QTY INTEGER)")
    capture.init(project.config)
    capture.enable(project.config, "ITEM")
    stamps = [datetime.now()]
    for sql in ("INSERT INTO ITEM VALUES (1, 'Ёж', 1)", "UPDATE ITEM SET QTY = 2 WHERE ID = 1",
                "DELETE FROM ITEM WHERE ID = 1"):
        time.sleep(1.1)
        run_sql(project, [sql])
        time.sleep(1.1)
        stamps.append(datetime.now())
    transfer.transfer(project.config)
    states = [versions.record_as_of(project.config, "ITEM", "1", t) for t in stamps]
    assert [s["version"] for s in states] == [None, 1, 2, 3]
    assert states[0]["first_version"] == 1 and states[0]["fields"] == {}
    assert states[1]["fields"] == {"ID": "1", "NAME": "Ёж", "QTY": "1"} and states[1]["exists"] is True
    assert states[2]["fields"]["QTY"] == "2" and states[2]["complete"] is True
    assert states[3]["exists"] is False
    cfg = project.write_config()
    cmd = [sys.executable, "-m", "fbaudit.cli", "--config", str(cfg), "history", "ITEM", "1"]
    r = subprocess.run(cmd + ["--as-of", stamps[2].isoformat(timespec="seconds"), "--json"], capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    data = json.loads(r.stdout)
    assert (data["version"], data["fields"]["QTY"]) == (2, "2") and data["at"] and data["as_of"]
    r = subprocess.run(cmd + ["--as-of", stamps[0].isoformat(timespec="seconds")], capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0 and "no version yet (its first kept version, 1, is from" in r.stdout
    r = subprocess.run(cmd + ["--as-of", "soon"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and "--as-of" in r.stderr and "Traceback" not in r.stderr
    r = subprocess.run(cmd + ["--as-of", "1d", "--at", "1"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and "one of --at, --diff and --as-of" in r.stderr
    from fbaudit import api
    from test_api import TOKEN, call
    with running_server(api.create_app(project.config, token=TOKEN)) as base:
        status, body = call(base, "/api/records/ITEM/1/as-of", at=stamps[1].isoformat())
        assert status == 200 and body["data"]["version"] == 1 and body["data"]["fields"]["NAME"] == "Ёж"
        status, body = call(base, "/api/records/ITEM/1/as-of", at="not a time")
        assert status in (400, 422) and body["success"] is False


def test_export_a_whole_table_as_of_a_time(project):
    """fbaudit export --as-of: each record that existed then, with its values then (NULLs set by an
    update, a deleted record left out, a record whose history starts with an update marked
    incomplete); CSV and JSON; the summary on stderr."""
    import csv
    import io
    import json
    import subprocess
    import sys
    import time
    from datetime import datetime
    project.sql("CREATE TABLE ITEM (ID INTEGER NOT NULL PRIMARY KEY, NAME VARCHAR(20) CHARACTER SET UTF8, QTY INTEGER)")
    run_sql(project, ["INSERT INTO ITEM VALUES (9, 'old', 9)"])            # before auditing: no baseline
    capture.init(project.config)
    capture.enable(project.config, "ITEM")
    run_sql(project, ["INSERT INTO ITEM VALUES (1, 'Ёж', 1)", "INSERT INTO ITEM VALUES (2, 'Уж', 2)",
                      "UPDATE ITEM SET QTY = 10 WHERE ID = 9"])
    time.sleep(1.1)
    then = datetime.now()
    time.sleep(1.1)
    run_sql(project, ["UPDATE ITEM SET NAME = NULL, QTY = 3 WHERE ID = 1", "DELETE FROM ITEM WHERE ID = 2",
                      "INSERT INTO ITEM VALUES (4, 'new', 4)"])
    transfer.transfer(project.config)
    rows = []
    res = history.export_as_of(project.config, "ITEM", then, rows.append)
    assert (res["records"], res["columns"]) == (3, ["ID", "NAME", "QTY"])
    by_key = {r["key"]["ID"]: r for r in rows}
    assert by_key["1"]["fields"] == {"ID": "1", "NAME": "Ёж", "QTY": "1"} and by_key["1"]["complete"]
    assert by_key["2"]["fields"]["NAME"] == "Уж"
    assert by_key["9"]["fields"] == {"ID": "9", "QTY": "10"} and by_key["9"]["complete"] is False
    now = []
    history.export_as_of(project.config, "ITEM", datetime.now(), now.append)
    assert sorted(r["key"]["ID"] for r in now) == ["1", "4", "9"]
    assert next(r for r in now if r["key"]["ID"] == "1")["fields"] == {"ID": "1", "NAME": None, "QTY": "3"}
    cfg = project.write_config()
    cmd = [sys.executable, "-m", "fbaudit.cli", "--config", str(cfg), "export", "ITEM", "--as-of",
           then.isoformat(timespec="seconds")]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    table = list(csv.reader(io.StringIO(r.stdout)))
    assert table[0] == ["ID", "NAME", "QTY", "_version", "_complete"]
    assert sorted(table[1:]) == [["1", "Ёж", "1", "1", "true"], ["2", "Уж", "2", "1", "true"],
                                 ["9", "", "10", "1", "false"]]     # NAME unknown, not NULL: _complete false
    assert "3 record(s)" in r.stderr
    out = project.tmp / "items.json"
    r = subprocess.run(cmd + ["--format", "json", "-o", str(out)], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and len(json.loads(out.read_text(encoding="utf-8"))) == 3
    r = subprocess.run(cmd + ["-o", str(project.tmp / "no" / "such" / "dir.csv")], capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 2 and "cannot write" in r.stderr and "Traceback" not in r.stderr
    r = subprocess.run(cmd[:-4] + ["export", "NOPE", "--as-of", "1d"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 5 and "No history for table 'NOPE'" in r.stderr and "Traceback" not in r.stderr
    # Over HTTP: the same rows, streamed; an unknown table is a 404 before any row.
    import urllib.parse
    import urllib.request
    from fbaudit import api
    from test_api import TOKEN, call
    with running_server(api.create_app(project.config, token=TOKEN)) as base:
        url = f"{base}/api/tables/ITEM/as-of?" + urllib.parse.urlencode({"at": then.isoformat(timespec="seconds")})
        req = urllib.request.Request(url, headers={"Authorization": f"Bearer {TOKEN}"})
        with urllib.request.urlopen(req, timeout=60) as got:
            assert got.headers["Content-Type"].startswith("text/csv")
            assert sorted(list(csv.reader(io.StringIO(got.read().decode("utf-8"))))[1:]) == sorted(table[1:])
        with urllib.request.urlopen(urllib.request.Request(url + "&format=json", headers={
                "Authorization": f"Bearer {TOKEN}"}), timeout=60) as got:
            assert len(json.loads(got.read())) == 3
        status, body = call(base, "/api/tables/NOPE/as-of", at="2026-01-01T00:00:00")
        assert status == 404 and "No history for table 'NOPE'" in body["error"]["message"]
        assert call(base, "/api/tables/ITEM/as-of", at="2026-01-01T00:00:00", format="xml")[0] == 400
        assert call(base, "/api/tables/ITEM/as-of", token=None, at="2026-01-01T00:00:00")[0] == 401
