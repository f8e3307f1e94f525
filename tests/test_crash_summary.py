"""A Firebird server that crashes during a test is counted and named, not folded into the skips.

tests/conftest.py reads the server's log after a failed test on the server target: a crash there
("terminated abnormally", as Debian's 3.0.11 does under upstream issue 8817) marks the test skipped
AND prints "Firebird server crashes: N (test: log line)", which scripts/test shows in its own column.
This runs a small test file that fails while "the server" (a log file standing in for it) crashes.
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

TESTS = Path(__file__).resolve().parent

CRASHING = '''
import os

def test_the_server_dies_under_me():
    with open(os.environ["FBAUDIT_TEST_SERVER_LOG"], "a") as log:
        log.write("fbserver (Server) Sun Dec  6 12:00:00 2026\\n"
                  "\\tFatal lock manager error: invalid lock id (12345)\\n"
                  "\\t/usr/sbin/firebird: guardian: terminated abnormally (-1)\\n")
    raise ConnectionError("Error reading data from the connection")

def test_a_plain_failure():
    assert 1 == 2

def test_a_plain_skip():
    import pytest
    pytest.skip("nothing to do")
'''


def test_a_server_crash_is_counted_and_named(tmp_path):
    (tmp_path / "test_crashing.py").write_text(CRASHING, encoding="utf-8")
    log = tmp_path / "firebird.log"
    log.write_text("old lines, terminated abnormally long ago\n", encoding="utf-8")
    env = {**os.environ, "FBAUDIT_TEST_TARGET": "server", "FBAUDIT_TEST_SERVER_LOG": str(log),
           "PYTHONPATH": str(TESTS)}
    res = subprocess.run([sys.executable, "-m", "pytest", "-p", "conftest", "-p", "no:cacheprovider", "-q",
                          "--rootdir", str(tmp_path), str(tmp_path / "test_crashing.py")],
                         cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    out = res.stdout
    assert "1 failed, 2 skipped" in out, out              # the crash is not a failure of fbaudit's ...
    crash = next(line for line in out.splitlines() if line.startswith("Firebird server crashes:"))
    assert crash.startswith("Firebird server crashes: 1 (") and "test_the_server_dies_under_me" in crash
    assert "Fatal lock manager error: invalid lock id" in crash and "test_a_plain" not in crash   # ... and named
