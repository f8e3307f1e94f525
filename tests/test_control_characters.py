"""Control characters in data reach no terminal and forge no log line: human output and log lines
show them escaped (fbaudit.logs.printable), JSON holds them exactly."""
from __future__ import annotations

import io
import json
import logging
import re
import sys

import pytest
from click.testing import CliRunner

from fbaudit import capture, logs, transfer
from fbaudit.cli import cli
from fbaudit.idents import quote_ident

from helpers import run_sql

# Raw control characters: C0 (line feed and tab too), DEL, C1, the Unicode line separators.
RAW = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")
LOG_LINE = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d \[(DEBUG|INFO|WARNING|ERROR|CRITICAL)\] fbaudit\.\w+: ")


def invoke(*args, config=None):
    base = ["--config", str(config)] if config else []
    return CliRunner().invoke(cli, [*base, *args], catch_exceptions=False)


def output_lines(text: str) -> list[str]:
    """The lines of a command's output; none may hold a raw control character."""
    lines = text.split("\n")
    assert not [line for line in lines if RAW.search(line)], text
    return lines


@pytest.mark.parametrize("text, line, exact", [
    ("plain ü 日本", "plain ü 日本", "plain ü 日本"),
    ("a\x1b[2Jb\rc\x07d", "a\\x1b[2Jb\\rc\\x07d", "a\\x1b[2Jb\\rc\\x07d"),
    ("line\nnext\ttab", "line\\nnext\\ttab", "line\\nnext\\ttab"),
    ("\x00\x7f\x85\x9f\xa0\u2028\u2029", "\\x00\\x7f\\x85\\x9f\xa0\\u2028\\u2029",
     "\\x00\\x7f\\x85\\x9f\xa0\\u2028\\u2029"),
    # Backslashes: left alone in a line (a repr() is not escaped twice); in a value (exact) doubled
    # where they would read as an escape, so a line feed and a backslash + n look different.
    ("C:\\Program Files\\fb", "C:\\Program Files\\fb", "C:\\Program Files\\fb"),
    ("a\\nb", "a\\nb", "a\\\\nb"),
    ("a\\\nb", "a\\\\nb", "a\\\\\\nb"),
    ("\\\\server\\share", "\\\\server\\share", "\\\\\\server\\share"),
    ("end\\", "end\\", "end\\"),
    (repr("x\x1bz"), repr("x\x1bz"), None),
])
def test_printable_escapes_controls_and_keeps_backslashes_distinguishable(text, line, exact):
    from fbaudit.logs import printable
    assert printable(text) == line and printable(line) == line      # idempotent: never escaped twice
    if exact is not None:
        assert printable(text, exact=True) == exact


SHOWN_VALUES = {                       # value logged -> as `fbaudit history` shows it
    "a\x1b[2Jb\rc\x07d": "a\\x1b[2Jb\\rc\\x07d",
    "line1\nline2": "line1\\nline2",
    "back\\nslash": "back\\\\nslash",
}


def test_history_shows_control_characters_escaped_and_json_keeps_them(project):
    project.sql("CREATE TABLE NOTE (ID INTEGER NOT NULL PRIMARY KEY, BODY VARCHAR(40))")
    capture.init(project.config)
    capture.enable(project.config, "NOTE")
    values = list(SHOWN_VALUES)
    run_sql(project, ["INSERT INTO NOTE VALUES (1, ?)", "UPDATE NOTE SET BODY = ? WHERE ID = 1",
                      "UPDATE NOTE SET BODY = ? WHERE ID = 1"], {i: (v,) for i, v in enumerate(values)})
    transfer.transfer(project.config)
    cfg = project.write_config()
    res = invoke("history", "NOTE", "1", config=cfg)
    assert res.exit_code == 0, res.output
    lines = output_lines(res.output)
    shown = list(SHOWN_VALUES.values())
    assert f"      BODY: {shown[0]}" in lines
    assert f"      BODY: {shown[0]} -> {shown[1]}" in lines
    assert f"      BODY: {shown[1]} -> {shown[2]}" in lines
    # JSON holds the exact text.
    data = json.loads(invoke("--json", "history", "NOTE", "1", config=cfg).output)
    assert [v["changes"]["BODY"]["new"] for v in data["versions"]] == values
    # The whole record (--at) and a diff: the same escapes.
    at = output_lines(invoke("history", "NOTE", "1", "--at", "1", config=cfg).output)
    assert any(line.endswith(f"BODY  {shown[0]}") for line in at)
    diff = output_lines(invoke("history", "NOTE", "1", "--diff", "1", "3", config=cfg).output)
    assert any(f"{shown[0]} | {shown[2]}" in line for line in diff)
    # An error naming what the user typed, and a line from another command (status lists tables).
    res = invoke("history", '"NO\x1b[2J\rTE"', "1", config=cfg)
    assert res.exit_code != 0 and "NO\\x1b[2J\\rTE" in res.stderr
    output_lines(res.stderr)


def test_a_table_name_cannot_forge_a_log_line(project, target):
    # 31 bytes: as long as Firebird 3.0 allows a name.
    forged = "\n[CHECKPOINT] Restore COMPLETED"
    project.sql(f"CREATE TABLE {quote_ident(forged)} (ID INTEGER NOT NULL PRIMARY KEY)",
                f"INSERT INTO {quote_ident(forged)} VALUES (1)")
    cfg = project.write_config()
    invoke("init", config=cfg)
    res = invoke("-v", "enable", quote_ident(forged), config=cfg)
    assert res.exit_code == 0, res.output
    res2 = invoke("checkpoint", "create", "--tables", quote_ident(forged), config=cfg)
    assert res2.exit_code == 0, res2.output
    for stderr in (res.stderr, res2.stderr):
        lines = [line for line in output_lines(stderr) if line]
        assert lines and all(LOG_LINE.match(line) for line in lines), stderr
        assert "\\n[CHECKPOINT] Restore COMPLETED" in stderr
    assert "[CAPTURE] main: \\n[CHECKPOINT] Restore COMPLETED: audited as table 1" in res.stderr
    assert "[CHECKPOINT] Backing up table: \\n[CHECKPOINT] Restore COMPLETED" in res2.stderr
    # stdout too: enable's report line names the table.
    assert "\\n[CHECKPOINT] Restore COMPLETED: audited as table 1" in output_lines(res.stdout)[0]
    # JSON: the exact name.
    data = json.loads(invoke("--json", "status", config=cfg).output)
    assert data["sources"][0]["tables"][0]["table"] == forged


def test_log_records_are_one_line_and_a_traceback_cannot_start_one(monkeypatch):
    stream = io.StringIO()
    monkeypatch.setattr(sys, "stderr", stream)
    logs.setup(logging.INFO)
    try:
        log = logging.getLogger("fbaudit.capture")
        log.warning("[CAPTURE] %s: done", "T\r\x1b[2K2025-10-30 14:30:15 [INFO] fbaudit.x: forged\x07")
        try:
            raise ValueError("bad\n2025-10-30 14:30:15 [INFO] fbaudit.checkpoint: [CHECKPOINT] Restore COMPLETED")
        except ValueError:
            log.exception("[CAPTURE] failed")
    finally:
        logs.setup(logging.WARNING)
    lines = output_lines(stream.getvalue())
    assert lines[0].endswith("[CAPTURE] T\\r\\x1b[2K2025-10-30 14:30:15 [INFO] fbaudit.x: forged\\x07: done")
    assert LOG_LINE.match(lines[1]) and lines[1].endswith("[CAPTURE] failed")
    assert [line for line in lines if LOG_LINE.match(line)] == lines[:2]      # the traceback: indented
    assert "    ValueError: bad" in lines and "    2025-10-30 14:30:15 [INFO] fbaudit.checkpoint: " \
        "[CHECKPOINT] Restore COMPLETED" in lines


def test_a_long_value_is_cut_as_shown_never_inside_an_escape():
    from fbaudit.history import format_value
    assert format_value("\x1b" * 40) == "\\x1b" * 9 + "…"      # 36 + 1 characters: one more escape would not fit
    assert format_value("a\nb") == "a\\nb" and format_value("a\\nb") == "a\\\\nb" and format_value(None) == "NULL"
    assert len(format_value("x" * 100)) == 40
