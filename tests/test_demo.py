"""The README's first command, `bash scripts/demo`, as a new user runs it."""
from __future__ import annotations

import os
import re
import subprocess
import time
from pathlib import Path

import pytest

from fbaudit import history
from fbaudit.config import load_config
from fbaudit.demo import change_text

from conftest import TARGET

ROOT = Path(__file__).resolve().parent.parent


def readme_first_command() -> str:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    block = re.search(r"```sh\n(.*?)```", text, re.S).group(1)
    return block.splitlines()[0].split("#")[0].strip()


@pytest.mark.slow
def test_readme_demo_prints_the_history_that_is_in_the_log_database(target, tmp_path):
    if TARGET != "embedded" or target.major != 5:
        pytest.skip("scripts/demo runs on its own embedded Firebird 5.0 venv: checked once, in the fb5 run")
    command = readme_first_command()
    assert command == "bash scripts/demo"
    t0 = time.monotonic()
    proc = subprocess.run([*command.split(), "--dir", str(tmp_path / "demo")], cwd=ROOT, capture_output=True,
                          text=True, encoding="utf-8", timeout=600, env={**os.environ, "PYTHONIOENCODING": "utf-8"})
    seconds = time.monotonic() - t0
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = proc.stdout
    assert re.search(r"\d+ transactions committed, 0 failed", out)        # auditing made no user's work fail
    assert "rotate   demo: done" in out and "LOG_1 emptied" in out
    m = re.search(r"^History of CUSTOMER (\d+), read from the log database:\n(.*?)\n\n", out, re.S | re.M)
    assert m, out
    key, table = m.group(1), m.group(2).splitlines()
    assert table[0].split() == ["ver", "time", "author", "op", "changes"]
    # What the demo printed is what the log database holds, version by version.
    config = load_config(tmp_path / "demo" / "fbaudit.yaml")
    versions = history.history(config, "CUSTOMER", key, limit=None)["versions"]
    assert len(table) - 1 == len(versions) == 5
    for line, v in zip(table[1:], versions):
        number, date, clock, author, op, changes = line.split(None, 5)
        assert int(number) == v["version"] and f"{date} {clock}" == v["at"][:19].replace("T", " ")
        assert (author, op) == (v["author"], v["operation"])
        assert changes == ", ".join(change_text(k, c, op) for k, c in v["changes"].items())
    assert [v["author"] for v in versions] == ["marta", "佐藤", "борис", "li.wei", "anna"]
    assert "Société Générale de Café" in table[1] and "新規契約" in table[2]
    assert re.search(r"^  demo +OK +on +4 +0 ", out, re.M)                 # the status table: healthy, nothing waiting
    assert "Next: try" in out and f"history CUSTOMER {key}" in out
    print(f"bash scripts/demo took {seconds:.1f} s (setup already done)")
