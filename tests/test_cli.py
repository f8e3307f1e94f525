"""The command line, through click's CliRunner, on real databases."""
from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from click.testing import CliRunner

from fbaudit import objects
from fbaudit.cli import cli

from helpers import all_packets, packets, run_sql

ROOT = Path(__file__).resolve().parent.parent


def invoke(*args, config=None):
    base = ["--config", str(config)] if config else []
    return CliRunner().invoke(cli, [*base, *args], catch_exceptions=False)


@pytest.fixture
def cfg(project):
    project.sql("CREATE TABLE CUSTOMER (ID INTEGER NOT NULL PRIMARY KEY, NAME VARCHAR(40), "
                "TAGS INTEGER [1:3], TOTAL COMPUTED BY (ID * 2))")
    return project.write_config()


def test_every_command_has_help_with_an_example_and_is_documented():
    docs = (ROOT / "docs" / "cli.md").read_text(encoding="utf-8") if (ROOT / "docs" / "cli.md").exists() else ""
    names = [(name,) for name in cli.commands]
    names += [(name, sub) for name, cmd in cli.commands.items() for sub in getattr(cmd, "commands", {})]
    for words in names:
        res = invoke(*words, "--help")
        command = " ".join(words)
        assert res.exit_code == 0, command
        assert "Example" in res.output, f"`fbaudit {command} --help` has no example"
        assert f"fbaudit {command}" in docs, f"`fbaudit {command}` is not in docs/cli.md"
    assert "Exit codes" in invoke("--help").output


def test_init_enable_status_json(project, cfg):
    res = invoke("init", config=cfg)
    assert res.exit_code == 0 and "created" in res.output
    res = invoke("enable", "customer", config=cfg)
    assert res.exit_code == 0
    assert "TAGS" in res.stderr and "ARRAY" in res.stderr          # skipped with a warning
    assert "TOTAL" in res.stderr and "COMPUTED" in res.stderr
    run_sql(project, ["INSERT INTO CUSTOMER (ID, NAME) VALUES (1, 'x')"])
    res = invoke("--json", "status", config=cfg)
    data = json.loads(res.output)
    src = data["sources"][0]
    assert src["waiting"] == 1 and src["logging"] is True
    assert src["tables"][0]["table"] == "CUSTOMER"
    assert set(packets(project)[0].changes) == {"ID", "NAME"}


def test_second_enable_says_so_and_exits_zero(cfg):
    invoke("init", config=cfg)
    invoke("enable", "CUSTOMER", config=cfg)
    res = invoke("enable", "CUSTOMER", config=cfg)
    assert res.exit_code == 0 and "already audited" in res.output


def test_unknown_table_exit_code_and_nothing_changed(project, cfg):
    invoke("init", config=cfg)
    res = invoke("enable", "CUSTOMR", config=cfg)
    assert res.exit_code == 5
    assert "FAILED: Table 'CUSTOMR' does not exist" in res.stderr
    assert not project.registry_path.exists()


def test_bad_yaml_is_exit_3_with_file_and_line(tmp_path):
    bad = tmp_path / "fbaudit.yaml"
    bad.write_text("log:\n  database: x.fdb\nsources:\n  - name: a\n    databse: y.fdb\n")
    res = invoke("status", config=bad)
    assert res.exit_code == 3
    assert f"{bad}:5: unknown key 'databse'" in res.stderr


def test_json_errors_are_json(tmp_path):
    res = invoke("--json", "status", config=tmp_path / "missing.yaml")
    assert res.exit_code == 3
    err = json.loads(res.output)
    assert err["success"] is False and "file not found" in err["error"]["message"]


def test_enable_dry_run_prints_sql_and_changes_nothing(project, cfg):
    invoke("init", config=cfg)
    res = invoke("enable", "CUSTOMER", "--dry-run", config=cfg)
    assert res.exit_code == 0
    assert "CREATE OR ALTER TRIGGER FBA_AUDIT_1 FOR CUSTOMER" in res.output
    assert not project.registry_path.exists()
    with project.connect() as db:
        assert not objects.trigger_exists(db, project.prefix, 1)


def test_pause_resume(project, cfg):
    invoke("init", config=cfg)
    invoke("enable", "CUSTOMER", config=cfg)
    assert "paused" in invoke("pause", config=cfg).output
    run_sql(project, ["INSERT INTO CUSTOMER (ID) VALUES (1)"])
    assert "OFF" in invoke("status", config=cfg).output
    invoke("resume", config=cfg)
    run_sql(project, ["INSERT INTO CUSTOMER (ID) VALUES (2)"])
    assert [p.key for p in packets(project)] == ["2"]


def test_ddl_is_a_script_isql_accepts(project, cfg, target, tmp_path):
    """`fbaudit ddl` output, run by Firebird's own isql, creates working auditing."""
    init_sql = invoke("ddl", config=cfg)
    assert init_sql.exit_code == 0 and init_sql.output.startswith("-- fbaudit init")
    assert "SET TERM ^ ;" in init_sql.output
    isql = shutil.which("isql-fb") or shutil.which("isql")
    if not (target.is_server and isql):
        pytest.skip("isql runs against the server target (Debian's firebird3.0-utils)")
    password = project.main.password()
    def run_isql(script: str):
        return subprocess.run([isql, "-q", "-user", project.main.user, "-password", password, project.main.database],
                              input=script, capture_output=True, text=True, timeout=120)
    out = run_isql(init_sql.output)
    assert out.returncode == 0 and not out.stderr.strip(), out.stderr
    trig = invoke("ddl", "CUSTOMER", config=cfg)
    assert "CREATE OR ALTER TRIGGER FBA_AUDIT_1" in trig.output
    out = run_isql(trig.output)
    assert out.returncode == 0 and not out.stderr.strip(), out.stderr
    run_sql(project, ["INSERT INTO CUSTOMER (ID, NAME) VALUES (7, 'via isql')"])
    with project.connect() as db:
        # The change is in the packet table the trigger writes (LOG_PACKET_1), the event in LOG_PACKET.
        assert db.query(f"SELECT RECORD_KEY FROM {all_packets(project, db)} p WHERE NUM_TABLE <> 0") == [("7",)]
        assert db.query("SELECT RECORD_KEY FROM FBA_LOG_PACKET_1") == [("7",)]
        # The trigger installed by hand, outside fbaudit's own transactions, is a schema event.
        events = db.query("SELECT OPERATION, RECORD_KEY, DB_USER FROM FBA_LOG_PACKET WHERE NUM_TABLE = 0")
        assert events and set(events) == {(8, "FBA_AUDIT_1", "SYSDBA")}, events


def test_demo_runs_and_captures_without_errors(tmp_path):
    res = invoke("--json", "demo", "--dir", str(tmp_path / "demo"), "--seconds", "1", "--users", "3")
    assert res.exit_code == 0, res.output
    data = json.loads(res.output)
    assert data["success"] is True and data["failed_transactions"] == 0 and data["transactions"] > 0
    assert data["packets"] >= data["transactions"]
    hist = data["history"]
    assert hist["table"] == "CUSTOMER"
    assert [v["author"] for v in hist["versions"]] == ["marta", "佐藤", "борис", "li.wei", "anna"]
    assert data["rotation"]["outcome"] == "done" and data["health"] == "ok"
    assert [v["version"] for v in hist["versions"]] == list(range(1, hist["total"] + 1))
    assert data["transfer"]["packets"] == data["packets"] + 5   # everything shipped, and the 5 of the story
    text = invoke("demo", "--dir", str(tmp_path / "demo2"), "--seconds", "0.5", "--users", "2")
    assert text.exit_code == 0 and re.search(r"\d+ transactions committed, 0 failed", text.output)


def two_sources(project, tmp_path, second_database: str) -> Path:
    """project's config plus a second source (which may be broken)."""
    from ruamel.yaml import YAML
    path = project.write_config()
    data = YAML().load(path.read_text())
    second = dict(data["sources"][0])
    second.update(name="second", database=second_database, registry=str(tmp_path / "second.yaml"))
    data["sources"].append(second)
    with path.open("w") as fh:
        YAML().dump(data, fh)
    return path


def test_one_broken_source_does_not_stop_the_others(project, cfg, tmp_path):
    path = two_sources(project, tmp_path, str(tmp_path / "missing" / "nowhere.fdb"))
    invoke("init", "--source", "main", config=path)
    res = invoke("enable", "CUSTOMER", "--all-sources", config=path)
    assert res.exit_code == 4
    assert "main: CUSTOMER: audited as table 1" in res.output
    assert "FAILED: second:" in res.stderr
    run_sql(project, ["INSERT INTO CUSTOMER (ID) VALUES (1)"])
    assert len(packets(project)) == 1
    status = invoke("status", "--json", config=path)
    assert status.exit_code == 2                     # CRITICAL, as a monitoring plugin reads it
    data = json.loads(status.output)
    assert data["health"] == "critical" and data["counts"] == {"ok": 1, "warning": 0, "critical": 1}
    assert [s["source"] for s in data["sources"]] == ["main", "second"] and "error" in data["sources"][1]
    assert data["sources"][0]["waiting"] == 1 and data["sources"][0]["health"] == "ok"
    assert data["sources"][1]["problems"][0]["message"].startswith("cannot read the source")


def test_with_several_sources_changing_commands_need_source_or_all_sources(project, cfg, tmp_path):
    path = two_sources(project, tmp_path, str(tmp_path / "second.fdb"))
    for args in (["init"], ["enable", "CUSTOMER"], ["disable", "CUSTOMER"], ["sync"], ["pause"], ["resume"]):
        res = invoke(*args, config=path)
        assert res.exit_code == 2 and "2 sources are configured (main, second)" in res.stderr, (args, res.stderr)
        assert "--all-sources" in res.stderr
    assert not (tmp_path / "second.fdb").exists() and not project.registry_path.exists()    # nothing touched
    res = invoke("init", "--source", "main", "--all", config=path)
    assert res.exit_code == 2 and "not both" in res.stderr
    res = invoke("init", "--all", config=path)
    assert res.exit_code == 4 and "main: created" in res.output    # second.fdb does not exist: that one fails


def test_traceback_keeps_the_exit_code(project, cfg):
    invoke("init", config=cfg)
    res = CliRunner().invoke(cli, ["--config", str(cfg), "--traceback", "enable", "NOPE"])
    assert res.exit_code == 5 and "Traceback" in res.stderr


def test_checkpoint_commands(project, tmp_path):
    project.sql("CREATE TABLE REGION (ID INTEGER NOT NULL PRIMARY KEY, NAME VARCHAR(40))",
                "CREATE TABLE CUSTOMER (ID INTEGER NOT NULL PRIMARY KEY, REGION_ID INTEGER REFERENCES REGION (ID), "
                "NAME VARCHAR(40))",
                "INSERT INTO REGION VALUES (1, 'Nord')", "INSERT INTO CUSTOMER VALUES (1, 1, 'Acme')")
    cfg = project.write_config()
    res = invoke("checkpoint", "create", "--tables", "customer,region", "-d", "before", "--json", config=cfg)
    assert res.exit_code == 0, res.output
    made = json.loads(res.stdout)
    assert made["success"] and made["total_rows"] == 2 and list(made["tables"]) == ["CUSTOMER", "REGION"]
    # The guide's log lines on stderr, one per step, in its format.
    assert re.search(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d \[INFO\] fbaudit\.checkpoint: \[CHECKPOINT\] "
                     r"Checkpoint creation COMPLETED: checkpoint_\d{8}_\d{6}$", res.stderr, re.M)
    listed = json.loads(invoke("checkpoint", "list", "--json", config=cfg).stdout)
    assert [c["id"] for c in listed["checkpoints"]] == [made["id"]]
    assert made["id"] in invoke("checkpoint", "list", config=cfg).stdout
    shown = invoke("checkpoint", "show", made["id"], config=cfg)
    assert shown.exit_code == 0 and "checksum OK" in shown.stdout and "CUSTOMER: 1 rows" in shown.stdout
    run_sql(project, ["UPDATE CUSTOMER SET NAME = 'changed'"])
    # Not from a terminal and no --yes: refused, nothing changed.
    res = invoke("checkpoint", "restore", made["id"], config=cfg)
    assert res.exit_code == 2 and "--yes" in res.stderr
    with project.connect() as db:
        assert db.scalar("SELECT NAME FROM CUSTOMER") == "changed"
        db.commit()
    res = invoke("checkpoint", "restore", made["id"], "--yes", config=cfg)
    assert res.exit_code == 0, res.stderr
    assert "[WARNING] fbaudit.checkpoint: [CHECKPOINT] WARNING: Starting restore operation" in res.stderr
    assert f"[CHECKPOINT] RESTORE COMPLETED SUCCESSFULLY: {made['id']}" in res.stderr
    assert f"auto-backup auto_backup_before_restore_{made['id']}" in res.stdout
    with project.connect() as db:
        assert db.scalar("SELECT NAME FROM CUSTOMER") == "Acme"
        db.commit()
    # A damaged file: exit 6, the reason, nothing changed.
    path = Path(made["file"])
    path.write_bytes(path.read_bytes().replace(b"Acme", b"Acne"))
    res = invoke("checkpoint", "restore", made["id"], "--yes", config=cfg)
    assert res.exit_code == 6 and "is damaged: its checksum does not match" in res.stderr
    res = invoke("--json", "checkpoint", "show", made["id"], config=cfg)
    assert res.exit_code == 6 and json.loads(res.stdout)["success"] is False
    res = invoke("checkpoint", "delete", made["id"], config=cfg)
    assert res.exit_code == 0 and not path.exists()
    res = invoke("checkpoint", "restore", "checkpoint_19990101_000000", "--yes", config=cfg)
    assert res.exit_code == 6 and "No checkpoint 'checkpoint_19990101_000000'" in res.stderr
    res = invoke("checkpoint", "create", "--tables", "NOPE", config=cfg)
    assert res.exit_code == 5 and "Table 'NOPE' does not exist" in res.stderr


def test_hostile_input_gets_a_message_not_a_traceback(project, cfg, tmp_path):
    """A 10,000-character checkpoint id, a table number over INTEGER, a date before 1858 (which the
    driver cannot bind): each a clear message and an exit code, never a Python traceback."""
    res = invoke("checkpoint", "show", "c" * 10_000, config=cfg)
    assert res.exit_code == 6 and "at most 200 characters" in res.stderr, res.output
    reg = tmp_path / "tables.yaml"
    reg.write_text("tables:\n  CUSTOMER:\n    number: 3000000000\n", encoding="utf-8")
    res = invoke("sync", config=cfg)
    assert res.exit_code == 3 and "1 to 2147483647" in res.stderr, res.output
    reg.unlink()
    invoke("init", config=cfg)
    res = invoke("prune", "--before", "0001-01-01", "--dry-run", config=cfg)
    assert res.exit_code == 0, res.output
