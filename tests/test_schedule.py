"""Scheduled jobs (fbaudit.schedule, `fbaudit schedule`) and the overlap lock (fbaudit.joblock).

Most tests need no database: they check what a scheduler is given (the Task
Scheduler XML, the systemd units with systemd-analyze, the crontab block
with the real `crontab`). One runs the generated cron command for real
against the `project` databases.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner

from fbaudit import capture, joblock, schedule
from fbaudit.cli import cli
from fbaudit.db import open_database

from helpers import run_sql

ROOT = Path(__file__).resolve().parent.parent
NS = {"t": schedule.TASK_NS}
SYSTEMD_ANALYZE = shutil.which("systemd-analyze")
CRONTAB = shutil.which("crontab")
WIN_PYTHON = r"C:\Program Files\Python 3.11\python.exe"


@pytest.fixture
def cfg(tmp_path) -> Path:
    """A configuration that loads (its databases need not exist), in a folder whose name has a
    space, non-ASCII letters and characters cmd.exe and the shell treat specially."""
    folder = tmp_path / "Prüfung & Co" / "fbaudit cfg"
    folder.mkdir(parents=True)
    path = folder / "fbaudit.yaml"
    path.write_text("log:\n  database: log.fdb\nsources:\n  - name: erp\n    database: erp.fdb\n", encoding="utf-8")
    return path


def invoke(*args, config=None):
    base = ["--config", str(config)] if config else []
    return CliRunner().invoke(cli, [*base, *args], catch_exceptions=False)


# --------------------------------------------------------------------------
# A Windows command line, split as the Microsoft C runtime and cmd.exe do
# --------------------------------------------------------------------------
def split_windows(cmdline: str) -> list[str]:
    """CommandLineToArgvW / MSVCRT rules: 2n backslashes + quote -> n backslashes and a quote
    toggle; 2n+1 -> n backslashes and a literal quote; other backslashes are literal."""
    args, cur, in_quote, have, i = [], [], False, False, 0
    while i < len(cmdline):
        c = cmdline[i]
        if c == "\\":
            j = i
            while j < len(cmdline) and cmdline[j] == "\\":
                j += 1
            n = j - i
            if j < len(cmdline) and cmdline[j] == '"':
                cur.append("\\" * (n // 2))
                if n % 2:
                    cur.append('"')
                    i = j + 1
                else:
                    i = j
                have = True
                continue
            cur.append("\\" * n)
            i, have = j, True
            continue
        if c == '"':
            if in_quote and cmdline[i + 1:i + 2] == '"':      # "" inside quotes: a literal quote
                cur.append('"')
                i += 2
                continue
            in_quote, have = not in_quote, True
        elif c in " \t" and not in_quote:
            if have:
                args.append("".join(cur))
                cur, have = [], False
        else:
            cur.append(c)
            have = True
        i += 1
    if have:
        args.append("".join(cur))
    return args


def cmd_s_c(arguments: str) -> tuple[list[str], str, str]:
    """cmd.exe /d /s /c "...": (argv of the program, the redirect target, the rest after it).

    /s strips the first and the last quote; then no character cmd treats
    specially may stand outside quotes before the redirect."""
    prefix = '/d /s /c "'
    assert arguments.startswith(prefix) and arguments.endswith('"')
    inner = arguments[len(prefix):-1]
    in_quote, redirect = False, None
    for i, c in enumerate(inner):
        if c == '"':
            in_quote = not in_quote
        elif not in_quote and c in "&|<>^%()":
            if c == ">" and inner[i:i + 3] == ">> ":
                redirect = i
                break
            raise AssertionError(f"cmd.exe would act on {c!r} at {i}: {inner}")
    assert redirect is not None, inner
    assert not in_quote
    tail = split_windows(inner[redirect + 3:])
    return split_windows(inner[:redirect]), tail[0], " ".join(tail[1:])


@pytest.mark.parametrize("arg", ["plain", "with space", "C:\\Program Files\\x\\", "tab\there", 'q"uote',
                                 'back\\\\"slash"', "trail\\\\", "", "Ä&é^%!()", "a\\b c\\\\d"])
def test_win_quote_round_trips_through_the_c_runtime_rules(arg):
    assert split_windows(schedule.win_quote(arg)) == [arg]
    # the splitter agrees with Python's own encoder (so it is a fair judge)
    assert split_windows(subprocess.list2cmdline([arg, "next"])) == [arg, "next"]


# --------------------------------------------------------------------------
# Windows Task Scheduler XML
# --------------------------------------------------------------------------
def _tasks(tmp_path, cfg, *extra, name="erp"):
    out = tmp_path / "xml"
    res = invoke("schedule", "install", "--windows", "--name", name, "--python", WIN_PYTHON,
                 "--xml-dir", str(out), *extra, config=cfg)
    assert res.exit_code == 0, res.stdout + res.stderr
    files = {p.name: p.read_bytes() for p in out.iterdir()}
    assert set(files) == {f"fbaudit-{name}-transfer.xml", f"fbaudit-{name}-rotate.xml"}
    for data in files.values():
        assert data.startswith(b"\xff\xfe")           # UTF-16 (little endian) with its byte order mark
        assert data.decode("utf-16").startswith('<?xml version="1.0" encoding="UTF-16"?>')
    return {n.split("-")[-1][:-4]: ET.fromstring(data) for n, data in files.items()}, out


TRIGGER_BASE_ORDER = ["Enabled", "StartBoundary", "EndBoundary", "Repetition", "ExecutionTimeLimit"]


def _local(el):
    return el.tag.split("}", 1)[1]


def test_windows_tasks_run_unattended_once_at_a_time_with_the_intended_command(tmp_path, cfg):
    tasks, _ = _tasks(tmp_path, cfg, "--every", "5", "--rotate-at", "02:30")
    plan = schedule.make_plan(cfg, target="windows", name="erp", every=5, rotate_at="02:30", python=WIN_PYTHON)
    for job, task in tasks.items():
        assert task.tag == f"{{{schedule.TASK_NS}}}Task" and task.get("version") in ("1.2", "1.4")
        assert {_local(c) for c in task} == {"RegistrationInfo", "Triggers", "Principals", "Settings", "Actions"}
        assert task.findtext("t:RegistrationInfo/t:URI", namespaces=NS) == f"\\fbaudit\\erp-{job}"
        # Runs whether anyone is logged on or not: SYSTEM, never an interactive token.
        principal = task.find("t:Principals/t:Principal", NS)
        assert principal.findtext("t:UserId", namespaces=NS) == "S-1-5-18"
        assert principal.findtext("t:LogonType", default="", namespaces=NS) in ("", "S4U", "Password")
        assert principal.findtext("t:RunLevel", namespaces=NS) == "HighestAvailable"
        assert task.find("t:Actions", NS).get("Context") == principal.get("id")
        s = task.find("t:Settings", NS)
        assert s.findtext("t:MultipleInstancesPolicy", namespaces=NS) == "IgnoreNew"
        assert s.findtext("t:StartWhenAvailable", namespaces=NS) == "true"
        assert s.findtext("t:DisallowStartIfOnBatteries", namespaces=NS) == "false"
        assert s.findtext("t:StopIfGoingOnBatteries", namespaces=NS) == "false"
        assert s.findtext("t:ExecutionTimeLimit", namespaces=NS) == "PT1H"
        assert s.findtext("t:RestartOnFailure/t:Interval", namespaces=NS) == "PT1M"
        assert int(s.findtext("t:RestartOnFailure/t:Count", namespaces=NS)) >= 1
        for trigger in task.find("t:Triggers", NS):     # triggerBaseType is a sequence: order matters
            base = [_local(c) for c in trigger if _local(c) in TRIGGER_BASE_ORDER]
            assert base == sorted(base, key=TRIGGER_BASE_ORDER.index), base
        # The action: cmd.exe appending to the log, running exactly the planned argv.
        ex = task.find("t:Actions/t:Exec", NS)
        assert ex.findtext("t:Command", namespaces=NS).lower().endswith("\\system32\\cmd.exe")
        argv, log_target, rest = cmd_s_c(ex.findtext("t:Arguments", namespaces=NS))
        assert argv == list(plan.job(job).argv)
        assert argv[:5] == [WIN_PYTHON, "-X", "utf8", "-m", "fbaudit"]
        assert argv[5:8] == ["--config", str(cfg), "-v"] and "Prüfung & Co" in argv[6]
        assert argv[8:] == [job, "--lock", str(cfg.parent / f"fbaudit-erp-{job}.lock")]
        assert log_target == str(cfg.parent / "fbaudit-erp.log") and rest == "2>&1"
        assert ex.findtext("t:WorkingDirectory", namespaces=NS) == str(cfg.parent)

    minute = tasks["transfer"].find("t:Triggers/t:TimeTrigger", NS)
    assert minute.findtext("t:Repetition/t:Interval", namespaces=NS) == "PT5M"
    assert minute.find("t:Repetition/t:Duration", NS) is None       # no duration: indefinitely
    assert minute.findtext("t:StartBoundary", namespaces=NS).endswith("T00:00:00")
    daily = tasks["rotate"].find("t:Triggers/t:CalendarTrigger", NS)
    assert daily.findtext("t:StartBoundary", namespaces=NS)[11:16] == "02:30"
    assert daily.findtext("t:ScheduleByDay/t:DaysInterval", namespaces=NS) == "1"
    assert tasks["rotate"].find("t:Triggers/t:TimeTrigger", NS) is None


def test_windows_follow_and_service_account(tmp_path, cfg):
    tasks, _ = _tasks(tmp_path, cfg, "--follow", "--user", "CORP\\svc-fbaudit")
    t = tasks["transfer"]
    assert t.find("t:Triggers/t:BootTrigger", NS) is not None
    assert t.findtext("t:Triggers/t:TimeTrigger/t:Repetition/t:Interval", namespaces=NS) == "PT1M"   # keep-alive
    assert t.findtext("t:Settings/t:ExecutionTimeLimit", namespaces=NS) == "PT0S"                    # unlimited
    assert t.findtext("t:Settings/t:MultipleInstancesPolicy", namespaces=NS) == "IgnoreNew"
    argv, _, _ = cmd_s_c(t.findtext("t:Actions/t:Exec/t:Arguments", namespaces=NS))
    assert argv[8:10] == ["transfer", "--follow"]
    for task in tasks.values():
        p = task.find("t:Principals/t:Principal", NS)
        assert p.findtext("t:UserId", namespaces=NS) == "CORP\\svc-fbaudit"
        assert p.findtext("t:LogonType", namespaces=NS) == "Password"
    assert tasks["rotate"].findtext("t:Settings/t:ExecutionTimeLimit", namespaces=NS) == "PT1H"


@pytest.mark.parametrize("folder_name", ["R&D", "a^b", "x(1)", "ü|x"])
def test_windows_quotes_cmd_characters_in_paths_without_spaces(tmp_path, folder_name):
    folder = tmp_path / folder_name
    folder.mkdir()
    (folder / "c.yaml").write_text("log:\n  database: l.fdb\nsources:\n  - name: a\n    database: a.fdb\n")
    plan = schedule.make_plan(folder / "c.yaml", target="windows", python=r"C:\Python311\python.exe")
    for job in plan.jobs:
        argv, log_target, _ = cmd_s_c(schedule.windows_arguments(job.argv, plan.log_file))
        assert argv == list(job.argv) and log_target == str(plan.log_file)


def test_windows_refuses_percent_in_paths(tmp_path):
    folder = tmp_path / "100% sure"
    folder.mkdir()
    (folder / "c.yaml").write_text("log:\n  database: l.fdb\nsources:\n  - name: a\n    database: a.fdb\n")
    with pytest.raises(schedule.ScheduleError, match="'%'"):
        schedule.make_plan(folder / "c.yaml", target="windows", python=WIN_PYTHON)
    assert schedule.make_plan(folder / "c.yaml", target="cron").target == "cron"   # cron escapes it


@pytest.mark.skipif(sys.platform == "win32", reason="checks the refusal on a machine without schtasks")
def test_install_windows_without_print_fails_clearly_and_writes_nothing(cfg):
    before = sorted(cfg.parent.iterdir())
    res = invoke("schedule", "install", "--windows", config=cfg)
    assert res.exit_code == 1
    assert "schtasks is only on Windows; --print shows the XML to import" in res.stderr
    assert sorted(cfg.parent.iterdir()) == before
    res = invoke("schedule", "install", "--windows", "--print", config=cfg)
    assert res.exit_code == 0 and "<MultipleInstancesPolicy>IgnoreNew</MultipleInstancesPolicy>" in res.stdout
    assert sorted(cfg.parent.iterdir()) == before


# --------------------------------------------------------------------------
# systemd
# --------------------------------------------------------------------------
def _units(unit_dir: Path) -> dict[str, str]:
    return {p.name: p.read_text(encoding="utf-8") for p in sorted(unit_dir.iterdir())}


def _setting(text: str, key: str) -> list[str]:
    return [line.split("=", 1)[1] for line in text.splitlines() if line.startswith(key + "=")]


def _verify(unit_dir: Path):
    if SYSTEMD_ANALYZE is None:
        pytest.skip("systemd-analyze is not installed (Debian: apt-get install systemd): units not verified")
    files = [str(p) for p in sorted(unit_dir.iterdir())]
    r = subprocess.run([SYSTEMD_ANALYZE, "verify", *files], capture_output=True, text=True, cwd=unit_dir, timeout=60)
    assert r.returncode == 0, r.stderr
    assert not re.search(r"ignoring|unknown|bad setting|refusing", r.stderr, re.I), r.stderr


def test_systemd_units_pass_systemd_analyze_verify(tmp_path, cfg):
    unit_dir = tmp_path / "units"
    res = invoke("schedule", "install", "--systemd", "--name", "erp", "--every", "5", "--rotate-at", "02:30",
                 "--unit-dir", str(unit_dir), config=cfg)
    assert res.exit_code == 0, res.stderr
    assert "systemctl daemon-reload && systemctl enable --now fbaudit-erp-transfer.timer fbaudit-erp-rotate.timer" \
        in res.stdout
    units = _units(unit_dir)
    assert set(units) == {"fbaudit-erp-transfer.service", "fbaudit-erp-transfer.timer",
                          "fbaudit-erp-rotate.service", "fbaudit-erp-rotate.timer"}
    svc = units["fbaudit-erp-transfer.service"]
    assert _setting(svc, "Type") == ["oneshot"]
    assert _setting(svc, "WorkingDirectory") == [str(cfg.parent)]
    assert _setting(svc, "StandardOutput") == [f"append:{cfg.parent / 'fbaudit-erp.log'}"]
    exec_start = _setting(svc, "ExecStart")[0]
    assert exec_start.startswith(sys.executable + " -m fbaudit --config ")
    assert f'"{cfg}"' in exec_start and exec_start.endswith(f'--lock "{cfg.parent / "fbaudit-erp-transfer.lock"}"')
    timer = units["fbaudit-erp-transfer.timer"]
    assert _setting(timer, "Unit") == ["fbaudit-erp-transfer.service"]
    assert _setting(timer, "AccuracySec") == ["1s"]
    rot = units["fbaudit-erp-rotate.timer"]
    assert _setting(rot, "OnCalendar") == ["*-*-* 02:30:00"] and _setting(rot, "Persistent") == ["true"]
    _verify(unit_dir)
    # A '%' and a '$' in a path are escaped for systemd, and the units still verify.
    odd = tmp_path / "odd 100% $HOME"
    odd.mkdir()
    shutil.copy(cfg, odd / "c.yaml")
    unit_dir2 = tmp_path / "units2"
    schedule.install(schedule.make_plan(odd / "c.yaml", target="systemd", unit_dir=unit_dir2))
    exec_start = _setting(_units(unit_dir2)["fbaudit-fbaudit-transfer.service"], "ExecStart")[0]
    assert "100%% $$HOME" in exec_start
    _verify(unit_dir2)


def test_systemd_follow_is_a_restarting_service_and_replaces_the_timer(tmp_path, cfg):
    unit_dir = tmp_path / "units"
    assert invoke("schedule", "install", "--systemd", "--unit-dir", str(unit_dir), config=cfg).exit_code == 0
    assert "fbaudit-fbaudit-transfer.timer" in _units(unit_dir)
    res = invoke("schedule", "install", "--systemd", "--follow", "--unit-dir", str(unit_dir), config=cfg)
    assert res.exit_code == 0, res.stderr
    units = _units(unit_dir)
    assert "fbaudit-fbaudit-transfer.timer" not in units          # the old minute timer is gone
    svc = units["fbaudit-fbaudit-transfer.service"]
    assert _setting(svc, "Type") == ["simple"] and _setting(svc, "Restart") == ["always"]
    assert _setting(svc, "RestartSec") == ["10"] and _setting(svc, "WantedBy") == ["multi-user.target"]
    assert " transfer --follow --lock " in _setting(svc, "ExecStart")[0]
    assert "fbaudit-fbaudit-rotate.timer" in units
    _verify(unit_dir)
    shown = invoke("--json", "schedule", "show", "--systemd", "--unit-dir", str(unit_dir))
    assert json.loads(shown.stdout)["installed"] is True
    gone = invoke("schedule", "remove", "--systemd", "--unit-dir", str(unit_dir))
    assert gone.exit_code == 0 and not list(unit_dir.iterdir())
    again = invoke("schedule", "remove", "--systemd", "--unit-dir", str(unit_dir))
    assert again.exit_code == 0 and "nothing to remove" in again.stdout


def _calendar_times(spec: str, n: int) -> list[datetime]:
    r = subprocess.run([SYSTEMD_ANALYZE, "calendar", f"--iterations={n}", spec], capture_output=True, text=True,
                       timeout=30)
    assert r.returncode == 0, r.stderr
    assert f"Normalized form: {spec}" in r.stdout
    stamps = re.findall(r"(?:Next elapse|Iter\. #\d+): \w+ (\d{4}-\d\d-\d\d \d\d:\d\d:\d\d)", r.stdout)
    return [datetime.strptime(s, "%Y-%m-%d %H:%M:%S") for s in stamps]


@pytest.mark.parametrize("every", schedule.EVERY_CHOICES)
def test_every_gives_even_intervals_in_systemd_and_cron(every):
    expected = timedelta(minutes=every)
    # cron: the minutes of a day the five fields match
    fields = schedule.cron_every(every).split()
    assert len(fields) == 5 and fields[2:] == ["*", "*", "*"]

    def matches(field: str, value: int) -> bool:
        if field == "*":
            return True
        if field.startswith("*/"):
            return value % int(field[2:]) == 0
        return value == int(field)
    minutes = [h * 60 + m for h in range(24) for m in range(60) if matches(fields[1], h) and matches(fields[0], m)]
    gaps = {b - a for a, b in zip(minutes, minutes[1:] + [minutes[0] + 1440])}
    assert gaps == {every}, (fields, gaps)
    if SYSTEMD_ANALYZE is None:
        pytest.skip("systemd-analyze is not installed: OnCalendar not checked")
    times = _calendar_times(schedule.systemd_calendar(every), 3 if every >= 720 else max(3, 1500 // every + 2))
    assert {b - a for a, b in zip(times, times[1:])} == {expected}
    assert all(t.second == 0 for t in times)


def test_rotate_at_calendar(tmp_path, cfg):
    if SYSTEMD_ANALYZE is None:
        pytest.skip("systemd-analyze is not installed: OnCalendar not checked")
    plan = schedule.make_plan(cfg, target="systemd", rotate_at="4:05")
    spec = _setting(schedule.systemd_units(plan)["fbaudit-fbaudit-rotate.timer"], "OnCalendar")[0]
    times = _calendar_times(spec, 3)
    assert {(t.hour, t.minute) for t in times} == {(4, 5)}
    assert {b - a for a, b in zip(times, times[1:])} == {timedelta(days=1)}


@pytest.mark.skipif(schedule.systemd_running(), reason="systemd runs here: the refusal is for machines without it")
def test_systemd_install_without_systemd_writes_nothing(cfg, monkeypatch, tmp_path):
    monkeypatch.setattr(schedule, "SYSTEMD_UNIT_DIR", tmp_path / "etc-systemd")
    res = invoke("schedule", "install", "--systemd", config=cfg)
    assert res.exit_code == 1
    assert "systemd is not running" in res.stderr and "--cron" in res.stderr and "--print" in res.stderr
    assert not (tmp_path / "etc-systemd").exists()


# --------------------------------------------------------------------------
# cron, against the real crontab command
# --------------------------------------------------------------------------
@pytest.fixture
def crontab():
    """The real crontab of this user, saved and put back afterwards."""
    if CRONTAB is None:
        pytest.skip("crontab is not installed (Debian: apt-get install cron)")
    r = subprocess.run([CRONTAB, "-l"], capture_output=True, text=True)
    saved = r.stdout if r.returncode == 0 else None
    if r.returncode != 0:
        assert "no crontab" in r.stderr, r.stderr
    other = "# not fbaudit's\n17 4 * * * /bin/true  # keep me\n"
    subprocess.run([CRONTAB, "-"], input=other, text=True, check=True)
    try:
        yield other
    finally:
        if saved is None:
            subprocess.run([CRONTAB, "-r"], capture_output=True)
        else:
            subprocess.run([CRONTAB, "-"], input=saved, text=True, check=True)


def _crontab_now() -> str:
    r = subprocess.run([CRONTAB, "-l"], capture_output=True, text=True)
    return r.stdout if r.returncode == 0 else ""


CRON_FIELD = re.compile(r"^(\*|\*/\d+|\d+)$")


def test_cron_install_is_idempotent_and_remove_keeps_other_lines(crontab, cfg):
    res = invoke("schedule", "install", "--cron", "--every", "15", "--rotate-at", "01:07", config=cfg)
    assert res.exit_code == 0, res.stderr
    assert "check: crontab -l" in res.stdout and "remove: fbaudit schedule remove --cron --name fbaudit" in res.stdout
    res = invoke("schedule", "install", "--cron", "--every", "15", "--rotate-at", "01:07", config=cfg)
    assert res.exit_code == 0 and "replaced block" in res.stdout
    text = _crontab_now()
    assert text.count("# BEGIN fbaudit fbaudit (") == 1 and text.count("# END fbaudit fbaudit") == 1
    assert text.startswith(crontab)                         # the other lines, untouched, in front
    jobs = [line for line in text.splitlines()[2:] if line and not line.startswith("#")]
    assert len(jobs) == 2
    for line in jobs:
        fields = line.split()[:5]
        assert all(CRON_FIELD.match(f) for f in fields), line
    assert jobs[0].split()[:5] == ["*/15", "*", "*", "*", "*"] and " transfer --lock " in jobs[0]
    assert jobs[1].split()[:5] == ["7", "1", "*", "*", "*"] and " rotate --lock " in jobs[1]
    for line in jobs:
        # the shell sees the config path (space, umlaut, '&') as one word, and output is appended to the log
        words = __import__("shlex").split(line.split(None, 5)[5].replace("\\%", "%"))
        assert words[:3] == ["cd", str(cfg.parent), "&&"]
        assert words[words.index("--config") + 1] == str(cfg)
        assert words[-3:] == [">>", str(cfg.parent / "fbaudit-fbaudit.log"), "2>&1"]
    # a second name is a second block; show finds each by its name
    assert invoke("schedule", "install", "--cron", "--name", "shop", config=cfg).exit_code == 0
    assert _crontab_now().count("# BEGIN fbaudit ") == 2
    shown = invoke("--json", "schedule", "show", "--cron", "--name", "shop")
    data = json.loads(shown.stdout)
    assert data["installed"] is True and data["crontab_block"].startswith("# BEGIN fbaudit shop (")
    # remove: the block is gone, everything else stays
    res = invoke("schedule", "remove", "--cron")
    assert res.exit_code == 0 and "removed block 'fbaudit'" in res.stdout
    assert invoke("schedule", "remove", "--cron", "--name", "shop").exit_code == 0
    assert _crontab_now() == crontab
    res = invoke("schedule", "remove", "--cron")
    assert res.exit_code == 0 and "nothing to remove" in res.stdout
    assert "no block 'fbaudit'" in invoke("schedule", "show", "--cron").stdout


def test_cron_without_a_crontab_yet(crontab, cfg):
    subprocess.run([CRONTAB, "-r"], check=True)
    assert schedule.read_crontab() == ""             # `crontab -l` exits 1 "no crontab for ..."
    assert invoke("schedule", "install", "--cron", config=cfg).exit_code == 0
    assert _crontab_now().startswith("# BEGIN fbaudit fbaudit (")


def test_cron_refuses_follow_and_a_broken_block(crontab, cfg):
    res = invoke("schedule", "install", "--cron", "--follow", config=cfg)
    assert res.exit_code == 1 and "cron cannot run a service" in res.stderr
    subprocess.run([CRONTAB, "-"], input=crontab + "# BEGIN fbaudit fbaudit (x)\n* * * * * /bin/true\n", text=True,
                   check=True)
    res = invoke("schedule", "install", "--cron", config=cfg)
    assert res.exit_code == 1 and "without '# END fbaudit fbaudit'" in res.stderr
    assert "/bin/true" in _crontab_now() and "fbaudit.yaml" not in _crontab_now()


# --------------------------------------------------------------------------
# The command line: --print, --json, bad combinations
# --------------------------------------------------------------------------
def test_print_and_json_install_nothing(crontab, cfg):
    res = invoke("schedule", "install", "--cron", "--print", config=cfg)
    assert res.exit_code == 0
    assert res.stdout.startswith("# would install in the crontab of ")
    assert f"# BEGIN fbaudit fbaudit ({cfg})" in res.stdout and "* * * * * cd " in res.stdout
    res = invoke("--json", "schedule", "install", "--cron", "--print", "--every", "10", config=cfg)
    data = json.loads(res.stdout)
    assert data["success"] and data["installed"] is False and data["target"] == "cron"
    transfer_job = next(j for j in data["jobs"] if j["job"] == "transfer")
    assert transfer_job["command"] == [sys.executable, "-m", "fbaudit", "--config", str(cfg), "-v", "transfer",
                                       "--lock", str(cfg.parent / "fbaudit-fbaudit-transfer.lock")]
    assert transfer_job["when"] == "every 10 minutes"
    assert data["crontab_block"].splitlines()[2].startswith("*/10 * * * * ")
    assert _crontab_now() == crontab
    assert sorted(p.name for p in cfg.parent.iterdir()) == ["fbaudit.yaml"]


@pytest.mark.parametrize("args, message", [
    (["--windows", "--cron"], "give one of --windows, --systemd, --cron"),
    (["--systemd", "--cron", "--print"], "give one of --windows, --systemd, --cron"),
    (["--every", "7"], "Invalid value for '--every'"),
    (["--rotate-at", "25:00"], "Invalid value for '--rotate-at'"),
    (["--name", "a b"], "Invalid value for '--name'"),
    (["--cron", "--unit-dir", "/tmp/x"], "--unit-dir is for --systemd"),
    (["--cron", "--xml-dir", "/tmp/x"], "--xml-dir is for --windows"),
])
def test_bad_combinations_are_usage_errors(cfg, args, message):
    res = invoke("schedule", "install", *args, config=cfg)
    assert res.exit_code == 2 and message in res.stderr


def test_missing_config_is_a_config_error(tmp_path):
    res = invoke("schedule", "install", "--cron", "--print", config=tmp_path / "nope.yaml")
    assert res.exit_code == 3


def test_password_env_warns(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("log:\n  database: l.fdb\nsources:\n  - name: a\n    database: a.fdb\n    password_env: PW_A\n")
    res = invoke("schedule", "install", "--cron", "--print", config=path)
    assert res.exit_code == 0 and "PW_A" in res.stderr and "password_file" in res.stderr


def test_python_m_fbaudit_works():
    r = subprocess.run([sys.executable, "-m", "fbaudit", "--version"], capture_output=True, text=True, timeout=60,
                       cwd="/")
    assert r.returncode == 0 and r.stdout.startswith("fbaudit, version")


# --------------------------------------------------------------------------
# The overlap lock, with real processes
# --------------------------------------------------------------------------
HOLDER = """
import sys, time
from pathlib import Path
from fbaudit import joblock
with joblock.hold(Path(sys.argv[1]), "transfer"):
    print("held", flush=True)
    time.sleep(300)
"""


def _fbaudit(cfg: Path, *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "fbaudit", "--config", str(cfg), *args], capture_output=True,
                          text=True, timeout=timeout, cwd="/")


def test_a_second_run_exits_0_at_once_and_the_next_one_after_kill_9_gets_the_lock(cfg, tmp_path):
    lock = tmp_path / "locks" / "transfer.lock"
    lock.parent.mkdir()
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(lock)], stdout=subprocess.PIPE, text=True,
                              cwd=ROOT)
    try:
        assert holder.stdout.readline().strip() == "held"
        assert joblock.holder_pid(lock) == holder.pid
        t0 = time.monotonic()
        r = _fbaudit(cfg, "transfer", "--lock", str(lock))
        took = time.monotonic() - t0
        # Exit 0, the message naming the holder, and nothing done: the databases of this config do
        # not exist, so a run that went on would fail with exit code 4.
        assert r.returncode == 0, r.stderr
        assert (f"[WARNING] fbaudit.schedule: [SCHEDULE] another `fbaudit transfer` run holds {lock} "
                f"(pid {holder.pid}); this run exits without doing anything") in r.stderr
        assert r.stdout == "" and "FAILED" not in r.stderr and took < 20
        r = _fbaudit(cfg, "--json", "rotate", "--lock", str(lock))
        assert r.returncode == 0 and json.loads(r.stdout)["skipped"] is True
        assert not list(cfg.parent.glob("*.fdb"))
        holder.send_signal(signal.SIGKILL)
        holder.wait(timeout=30)
    finally:
        if holder.poll() is None:
            holder.kill()
            holder.wait()
    # The kernel dropped the dead process's lock: the next run goes on (and fails on the missing database).
    r = _fbaudit(cfg, "transfer", "--retries", "1", "--lock", str(lock))
    assert r.returncode == 4, r.stderr
    assert "another `fbaudit" not in r.stderr and "FAILED" in r.stderr
    assert not joblock.pid_file(lock).exists()        # the run that held it cleaned its pid file up


def test_hold_in_process(tmp_path):
    lock = tmp_path / "a" / "x.lock"
    with joblock.hold(lock, "rotate"):
        assert joblock.holder_pid(lock) == os.getpid()
        with pytest.raises(joblock.JobRunning, match=r"another `fbaudit rotate` run holds .*x\.lock \(pid \d+\)"):
            with joblock.hold(lock, "rotate"):
                pass
    with joblock.hold(lock, "rotate"):           # released: free again
        pass
    assert not joblock.pid_file(lock).exists()
    with pytest.raises(SystemExit):
        with joblock.hold(lock, "rotate"):
            sys.exit(3)
    with joblock.hold(lock, "rotate"):           # released by sys.exit too
        pass


# --------------------------------------------------------------------------
# The generated job, run for real against a database
# --------------------------------------------------------------------------
def test_the_cron_job_really_ships_and_logs_and_a_running_follow_holds_its_lock(project):
    project.sql("CREATE TABLE ITEM (ID INTEGER NOT NULL PRIMARY KEY, NAME VARCHAR(40))")
    capture.init(project.config)
    capture.enable(project.config, "ITEM")
    run_sql(project, ["INSERT INTO ITEM VALUES (1, 'a')", "UPDATE ITEM SET NAME = 'b' WHERE ID = 1"])
    cfg = project.write_config()
    plan = schedule.make_plan(cfg, target="cron", name="t")
    # As cron runs it: /bin/sh, a bare environment, another working directory.
    env = {"PATH": "/usr/bin:/bin", "SHELL": "/bin/sh", "HOME": os.environ.get("HOME", "/root"),
           "LOGNAME": os.environ.get("LOGNAME", "root")}
    if "FBAUDIT_EMBEDDED_SHARED" in os.environ:
        env["FBAUDIT_EMBEDDED_SHARED"] = os.environ["FBAUDIT_EMBEDDED_SHARED"]
    line = schedule.cron_block(plan).splitlines()[2]
    command = line.split(None, 5)[5].replace("\\%", "%")
    r = subprocess.run(["/bin/sh", "-c", command], env=env, cwd="/", capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and r.stdout == "" and r.stderr == ""         # everything went to the log
    with open_database(project.log) as db:
        assert db.query("SELECT COUNT(*) FROM FBA_LOG_PACKET")[0][0] == 2
        db.commit()
    log = plan.log_file.read_text(encoding="utf-8")
    assert re.search(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d \[INFO\] fbaudit\.transfer: \[TRANSFER\] main: batch 1: "
                     r"2 packets", log, re.M), log
    assert "main: 2 packets" in log
    # The rotation line runs too (not due yet on a fresh database: that is its answer).
    rot = schedule.cron_block(plan).splitlines()[3].split(None, 5)[5]
    r = subprocess.run(["/bin/sh", "-c", rot], env=env, cwd="/", capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and "main: " in plan.log_file.read_text(encoding="utf-8")[len(log):]

    # `transfer --follow` as the systemd service would run it holds the same lock: the minute job skips.
    follow = schedule.make_plan(cfg, target="systemd", name="t", follow=True).job("transfer").argv
    assert "--follow" in follow and plan.job("transfer").lock == \
        schedule.make_plan(cfg, target="systemd", name="t", follow=True).job("transfer").lock
    err = (project.tmp / "follow.err").open("w")
    proc = subprocess.Popen(list(follow), stdout=subprocess.DEVNULL, stderr=err, cwd=str(plan.workdir))
    try:
        t0 = time.monotonic()
        while "[TRANSFER] following" not in (project.tmp / "follow.err").read_text():
            assert proc.poll() is None and time.monotonic() - t0 < 60, (project.tmp / "follow.err").read_text()
            time.sleep(0.1)
        size = plan.log_file.stat().st_size
        r = subprocess.run(["/bin/sh", "-c", command], env=env, cwd="/", capture_output=True, text=True, timeout=60)
        assert r.returncode == 0
        tail = plan.log_file.read_text(encoding="utf-8")[size:]
        assert f"another `fbaudit transfer` run holds {plan.job('transfer').lock} (pid {proc.pid})" in tail, tail
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
    finally:
        err.close()
        if proc.poll() is None:
            proc.kill()
            proc.wait()
