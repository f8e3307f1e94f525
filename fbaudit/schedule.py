"""Scheduled jobs: `fbaudit transfer` every minute (or `transfer --follow` as a
service) and the daily `fbaudit rotate`, installed into the machine's scheduler.

Three targets, one plan:

- ``windows``: one Task Scheduler task per job (``\\fbaudit\\<name>-transfer``,
  ``\\fbaudit\\<name>-rotate``) from an XML document, registered with
  ``schtasks /Create /XML``;
- ``systemd``: ``fbaudit-<name>-transfer.service`` + ``.timer`` and
  ``fbaudit-<name>-rotate.service`` + ``.timer`` (with ``follow``: the transfer
  is a long-running service, no timer);
- ``cron``: a block between ``# BEGIN fbaudit <name> (...)`` and
  ``# END fbaudit <name>`` in the user's crontab.

Every job runs ``<python> -m fbaudit --config <config> -v <job> --lock <file>``
in the config file's folder and appends its output to one log file. The
lock (fbaudit.joblock) makes a run that finds the previous one still busy exit
0 at once, whoever started it. ``make_plan`` builds everything without touching
the machine; ``install``/``remove``/``show`` act on it and return a
``sources.Result``. docs/operations.md#scheduling explains the choices.
"""
from __future__ import annotations

import getpass
import logging
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path

from .errors import ScheduleError
from .sources import Result

log = logging.getLogger("fbaudit.schedule")

TARGETS = ("windows", "systemd", "cron")
JOBS = ("transfer", "rotate")
SYSTEMD_RUNNING = Path("/run/systemd/system")
SYSTEMD_UNIT_DIR = Path("/etc/systemd/system")
TASK_FOLDER = "\\fbaudit\\"
TASK_NS = "http://schemas.microsoft.com/windows/2004/02/mit/task"
WINDOWS_SHELL = r"%SystemRoot%\System32\cmd.exe"
# StartBoundary of the triggers: a fixed date in the past (the repetition and the
# daily trigger count from it; a fixed value keeps --print output stable).
START_DATE = "2025-01-01"
# --every must give the same wall-clock minutes on every target: divisors of an
# hour, or whole hours that divide a day (cron's */N restarts at every hour).
EVERY_CHOICES = (1, 2, 3, 4, 5, 6, 10, 12, 15, 20, 30, 60, 120, 180, 240, 360, 480, 720, 1440)
TRANSFER_TIME_LIMIT = "PT1H"     # a transfer run that takes an hour is stopped (safe: exactly once)
ROTATE_TIME_LIMIT = "PT1H"

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
_TIME = re.compile(r"([01]?\d|2[0-3]):([0-5]\d)")


# --------------------------------------------------------------------------
# Values
# --------------------------------------------------------------------------
def check_name(name: str) -> str:
    """A job set's name: letters, digits, '_', '.', '-' (it goes into unit, task and file names)."""
    if not _NAME.fullmatch(name or ""):
        raise ValueError(f"{name!r} is not a name of up to 64 letters, digits, '_', '.' or '-' "
                         "(starting with a letter or digit)")
    return name


def parse_time(text: str) -> tuple[int, int]:
    """'03:00' -> (3, 0); ValueError otherwise."""
    m = _TIME.fullmatch((text or "").strip())
    if not m:
        raise ValueError(f"{text!r} is not a time of day HH:MM (00:00 to 23:59)")
    return int(m.group(1)), int(m.group(2))


def check_every(minutes: int) -> int:
    if minutes not in EVERY_CHOICES:
        raise ValueError(f"--every {minutes}: give minutes that divide an hour or whole hours that divide "
                         f"a day, so every scheduler runs at the same times: {', '.join(map(str, EVERY_CHOICES))}")
    return minutes


def systemd_running() -> bool:
    return SYSTEMD_RUNNING.is_dir()


def detect_target() -> str:
    """windows on Windows; systemd when it runs this machine; else cron."""
    if sys.platform == "win32":
        return "windows"
    return "systemd" if systemd_running() else "cron"


# --------------------------------------------------------------------------
# The plan
# --------------------------------------------------------------------------
@dataclass(frozen=True)
class Job:
    job: str                 # transfer | rotate
    argv: tuple[str, ...]    # the command the scheduler runs (before any shell or redirect)
    lock: Path
    when: str                # for people: "every 1 minute", "daily at 03:00", ...


@dataclass
class Plan:
    target: str
    name: str
    config: Path
    workdir: Path
    python: str
    log_file: Path
    every: int
    rotate_at: tuple[int, int]
    follow: bool
    user: str | None
    unit_dir: Path | None
    xml_dir: Path | None
    jobs: list[Job] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def job(self, name: str) -> Job:
        return next(j for j in self.jobs if j.job == name)

    def describe(self) -> list[dict]:
        return [{"job": j.job, "command": list(j.argv), "lock": str(j.lock), "when": j.when} for j in self.jobs]


def _every_text(every: int) -> str:
    if every % 60 == 0:
        h = every // 60
        return "every hour" if h == 1 else ("daily at 00:00" if h == 24 else f"every {h} hours")
    return "every minute" if every == 1 else f"every {every} minutes"


def make_plan(config_path: str | Path, *, target: str, name: str = "fbaudit", every: int = 1,
              rotate_at: str = "03:00", follow: bool = False, log_file: str | Path | None = None,
              lock_dir: str | Path | None = None, user: str | None = None, python: str | None = None,
              unit_dir: str | Path | None = None, xml_dir: str | Path | None = None) -> Plan:
    """Everything the jobs need, checked; touches nothing.

    The configuration is loaded (a config that does not load would fail every
    run); its folder is the jobs' working directory and holds the lock files
    (``fbaudit-<name>-transfer.lock``, ``-rotate.lock``; ``lock_dir`` elsewhere)
    and the log (``fbaudit-<name>.log``; ``log_file`` elsewhere).
    """
    from .config import load_config
    if target not in TARGETS:
        raise ScheduleError(f"unknown scheduler {target!r}; one of {', '.join(TARGETS)}")
    try:
        check_name(name)
        hh_mm = parse_time(rotate_at)
        check_every(every)
    except ValueError as exc:
        raise ScheduleError(str(exc)) from None
    if follow and target == "cron":
        raise ScheduleError("cron cannot run a service; use --systemd, or run `fbaudit transfer --follow` "
                            "under a supervisor (without --follow, cron runs the transfer every minute)")
    config = load_config(config_path)
    cfg = Path(config.path).absolute()
    workdir = cfg.parent
    python = python or sys.executable
    if not python:
        raise ScheduleError("cannot tell which Python runs fbaudit (sys.executable is empty): give --python PATH")
    if target != "windows" or sys.platform == "win32":
        python = os.path.abspath(python)
    locks = Path(lock_dir).absolute() if lock_dir else workdir
    logf = Path(log_file).absolute() if log_file else workdir / f"fbaudit-{name}.log"
    plan = Plan(target, name, cfg, workdir, python, logf, every, hh_mm, follow, user,
                Path(unit_dir).absolute() if unit_dir else None, Path(xml_dir).absolute() if xml_dir else None)
    head = [python] + (["-X", "utf8"] if target == "windows" else []) + ["-m", "fbaudit", "--config", str(cfg), "-v"]
    for job in JOBS:
        lock = locks / f"fbaudit-{name}-{job}.lock"
        if job == "transfer" and follow:
            argv, when = head + ["transfer", "--follow", "--lock", str(lock)], "service (transfer --follow)"
        elif job == "transfer":
            argv, when = head + ["transfer", "--lock", str(lock)], _every_text(every)
        else:
            argv, when = head + ["rotate", "--lock", str(lock)], f"daily at {hh_mm[0]:02d}:{hh_mm[1]:02d}"
        plan.jobs.append(Job(job, tuple(argv), lock, when))
    paths = [python, str(cfg), str(workdir), str(logf), *(str(j.lock) for j in plan.jobs)]
    if any(c in p for p in paths for c in "\r\n\0"):
        raise ScheduleError("a path contains a line break: no scheduler can run that")
    if target == "windows":
        bad = [p for p in paths if "%" in p or '"' in p]
        if bad:
            raise ScheduleError(f"{bad[0]}: '%' or '\"' in a path cannot be passed through Task Scheduler and "
                                "cmd.exe (both expand %VARIABLES%); move or rename it")
        if len(str(workdir)) > 248:
            raise ScheduleError(f"{workdir}: Task Scheduler takes working directories of up to 248 characters")
    for spec in (config.log, *config.sources):
        if spec.password_env:
            plan.warnings.append(
                f"{spec.name} reads its password from the environment variable {spec.password_env}: scheduled "
                "jobs do not see variables set in your shell (on Windows `setx /M` stores one for every account); "
                "password_file always works (docs/configuration.md)")
    return plan


# --------------------------------------------------------------------------
# Quoting
# --------------------------------------------------------------------------
_CMD_SPECIAL = set(' \t&|<>^()%!,;=[]{}\'+`~"')


def win_quote(arg: str) -> str:
    """One argument for a Windows command line that cmd.exe passes on untouched and the
    program's C runtime splits back into exactly ``arg`` (backslashes before a quote doubled)."""
    if arg and not any(c in _CMD_SPECIAL for c in arg):
        return arg
    out, slashes = [], 0
    for c in arg:
        if c == "\\":
            slashes += 1
            continue
        if c == '"':
            out.append("\\" * (2 * slashes + 1) + '"')
        else:
            out.append("\\" * slashes + c)
        slashes = 0
    out.append("\\" * (2 * slashes))
    return '"' + "".join(out) + '"'


def windows_arguments(argv: tuple[str, ...] | list[str], log_file: str | Path) -> str:
    """The Arguments of the task's Exec action: ``cmd.exe /d /s /c "<command> >> <log> 2>&1"``.

    Task Scheduler does not redirect output, so cmd.exe appends both streams to
    the log. ``/s`` makes cmd strip exactly the outer quotes and keep the rest as
    it is; every argument with a character cmd treats specially is quoted.
    """
    command = " ".join(win_quote(a) for a in argv)
    return f'/d /s /c "{command} >> {win_quote(str(log_file))} 2>&1"'


def cron_quote(arg: str) -> str:
    """shlex quoting for /bin/sh, and '%' escaped (cron turns a bare '%' into a newline)."""
    return shlex.quote(arg).replace("%", "\\%")


def systemd_quote(arg: str) -> str:
    """One word of an ExecStart= line: double quotes with C escapes; '%' and '$' doubled
    (systemd expands %specifiers and $VARIABLES there)."""
    if arg and re.fullmatch(r"[A-Za-z0-9_@+=:,./-]+", arg):
        return arg
    return '"' + arg.replace("\\", "\\\\").replace('"', '\\"').replace("%", "%%").replace("$", "$$") + '"'


def _sd(value: str | Path) -> str:
    """A path or text in a unit setting that expands %specifiers but does not unquote."""
    return str(value).replace("%", "%%")


# --------------------------------------------------------------------------
# cron
# --------------------------------------------------------------------------
def cron_every(every: int) -> str:
    if every < 60:
        return "* * * * *" if every == 1 else f"*/{every} * * * *"
    hours = every // 60
    return "0 * * * *" if hours == 1 else ("0 0 * * *" if hours == 24 else f"0 */{hours} * * *")


def cron_command(plan: Plan, job: Job) -> str:
    """The shell command of one cron line (after the five schedule fields)."""
    cmd = " ".join(cron_quote(a) for a in job.argv)
    return f"cd {cron_quote(str(plan.workdir))} && {cmd} >> {cron_quote(str(plan.log_file))} 2>&1"


def _begin(name: str) -> str:
    return f"# BEGIN fbaudit {name}"


def _end(name: str) -> str:
    return f"# END fbaudit {name}"


def cron_block(plan: Plan) -> str:
    h, m = plan.rotate_at
    return "\n".join([
        f"{_begin(plan.name)} ({plan.config})",
        f"# written by `fbaudit schedule install --cron`; remove with `fbaudit schedule remove --cron "
        f"--name {plan.name}`",
        f"{cron_every(plan.every)} {cron_command(plan, plan.job('transfer'))}",
        f"{m} {h} * * * {cron_command(plan, plan.job('rotate'))}",
        _end(plan.name),
    ]) + "\n"


def split_crontab(text: str, name: str) -> tuple[list[str], list[str], int | None]:
    """(lines without the named blocks, the first block's lines, where it stood) of a crontab."""
    lines = text.splitlines()
    out: list[str] = []
    block: list[str] = []
    at = None
    i = 0
    while i < len(lines):
        line = lines[i]
        if line == _begin(name) or line.startswith(_begin(name) + " ("):
            try:
                j = lines.index(_end(name), i + 1)
            except ValueError:
                raise ScheduleError(f"the crontab has '{line}' without '{_end(name)}': fix it with "
                                    "`crontab -e` first") from None
            if at is None:
                at, block = len(out), lines[i:j + 1]
            i = j + 1
            continue
        out.append(line)
        i += 1
    return out, block, at


def _crontab(user: str | None) -> list[str]:
    return ["crontab"] + (["-u", user] if user else [])


def read_crontab(user: str | None = None) -> str:
    """The user's crontab; '' when there is none (`crontab -l` exits 1 with 'no crontab for ...')."""
    r = _exec(_crontab(user) + ["-l"], what="crontab")
    if r.returncode == 0:
        return r.stdout
    if "no crontab for" in r.stderr:
        return ""
    raise ScheduleError(f"`{' '.join(_crontab(user))} -l` failed (exit {r.returncode}): {r.stderr.strip()}")


def write_crontab(text: str, user: str | None = None) -> None:
    r = _exec(_crontab(user) + ["-"], input=text, what="crontab")
    if r.returncode != 0:
        raise ScheduleError(f"`{' '.join(_crontab(user))} -` failed (exit {r.returncode}): {r.stderr.strip()}; "
                            "the crontab is unchanged")


def _cron_daemon_running() -> bool | None:
    """True/False on Linux (a process named cron or crond); None where that cannot be told."""
    proc = Path("/proc")
    if not sys.platform.startswith("linux") or not proc.is_dir():
        return None
    for comm in proc.glob("[0-9]*/comm"):
        try:
            if comm.read_text().strip() in ("cron", "crond", "busybox-crond"):
                return True
        except OSError:
            continue
    return False


def _cron_owner(user: str | None) -> str:
    return user or getpass.getuser()


# --------------------------------------------------------------------------
# systemd
# --------------------------------------------------------------------------
def systemd_calendar(every: int) -> str:
    if every < 60:
        return "*-*-* *:*:00" if every == 1 else f"*-*-* *:00/{every}:00"
    hours = every // 60
    return "*-*-* *:00:00" if hours == 1 else ("*-*-* 00:00:00" if hours == 24 else f"*-*-* 00/{hours}:00:00")


def unit_names(name: str) -> dict[str, str]:
    return {f"{job}.{kind}": f"fbaudit-{name}-{job}.{kind}" for job in JOBS for kind in ("service", "timer")}


def systemd_units(plan: Plan) -> dict[str, str]:
    """File name -> contents of the units to install."""
    names = unit_names(plan.name)
    head = (f"# Written by `fbaudit schedule install --systemd` for {_sd(plan.config)}.\n"
            f"# Remove with: fbaudit schedule remove --systemd --name {plan.name}\n")

    def service(job: Job, follow: bool) -> str:
        lines = [head + "[Unit]",
                 f"Description=fbaudit {job.job} ({_sd(plan.config)})",
                 "Wants=network-online.target",
                 "After=network-online.target",
                 "",
                 "[Service]",
                 f"Type={'simple' if follow else 'oneshot'}",
                 f"WorkingDirectory={_sd(plan.workdir)}",
                 "ExecStart=" + " ".join(systemd_quote(a) for a in job.argv),
                 f"StandardOutput=append:{_sd(plan.log_file)}",
                 f"StandardError=append:{_sd(plan.log_file)}"]
        if plan.user:
            lines.append(f"User={plan.user}")
        if follow:
            lines += ["Restart=always", "RestartSec=10", "", "[Install]", "WantedBy=multi-user.target"]
        else:
            lines.append("TimeoutStartSec=1h")
        return "\n".join(lines) + "\n"

    def timer(job: Job, calendar: str, persistent: bool) -> str:
        return "\n".join([head + "[Unit]",
                          f"Description=fbaudit {job.job}, {job.when} ({_sd(plan.config)})",
                          "",
                          "[Timer]",
                          f"OnCalendar={calendar}",
                          "AccuracySec=1s",
                          f"Persistent={'true' if persistent else 'false'}",
                          f"Unit={names[job.job + '.service']}",
                          "",
                          "[Install]",
                          "WantedBy=timers.target"]) + "\n"

    h, m = plan.rotate_at
    units = {names["transfer.service"]: service(plan.job("transfer"), plan.follow)}
    if not plan.follow:
        units[names["transfer.timer"]] = timer(plan.job("transfer"), systemd_calendar(plan.every), False)
    units[names["rotate.service"]] = service(plan.job("rotate"), False)
    units[names["rotate.timer"]] = timer(plan.job("rotate"), f"*-*-* {h:02d}:{m:02d}:00", True)
    return units


def _to_enable(plan: Plan) -> list[str]:
    names = unit_names(plan.name)
    first = names["transfer.service"] if plan.follow else names["transfer.timer"]
    return [first, names["rotate.timer"]]


def _systemctl(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    r = _exec(["systemctl", *args], what="systemctl")
    if check and r.returncode != 0:
        raise ScheduleError(f"`systemctl {' '.join(args)}` failed (exit {r.returncode}): "
                            f"{(r.stderr or r.stdout).strip()}")
    return r


# --------------------------------------------------------------------------
# Windows Task Scheduler
# --------------------------------------------------------------------------
def task_names(name: str) -> dict[str, str]:
    return {job: f"{TASK_FOLDER}{name}-{job}" for job in JOBS}


def _sub(parent: ET.Element, tag: str, text: str | None = None, **attrs) -> ET.Element:
    el = ET.SubElement(parent, f"{{{TASK_NS}}}{tag}", attrs)
    if text is not None:
        el.text = text
    return el


def _task_xml(plan: Plan, job: Job, uri: str) -> str:
    ET.register_namespace("", TASK_NS)
    task = ET.Element(f"{{{TASK_NS}}}Task", {"version": "1.2"})
    reg = _sub(task, "RegistrationInfo")
    _sub(reg, "Author", "fbaudit schedule install")
    _sub(reg, "Description", f"fbaudit {job.job}, {job.when}, for {plan.config}; output appended to "
                             f"{plan.log_file}. Remove with: fbaudit schedule remove --windows --name {plan.name}")
    _sub(reg, "URI", uri)

    triggers = _sub(task, "Triggers")
    if job.job == "rotate":
        h, m = plan.rotate_at
        cal = _sub(triggers, "CalendarTrigger")
        _sub(cal, "Enabled", "true")
        _sub(cal, "StartBoundary", f"{START_DATE}T{h:02d}:{m:02d}:00")
        _sub(_sub(cal, "ScheduleByDay"), "DaysInterval", "1")
    else:
        if plan.follow:
            boot = _sub(triggers, "BootTrigger")
            _sub(boot, "Enabled", "true")
            _sub(boot, "Delay", "PT30S")
        # The minute job; with --follow a keep-alive: IgnoreNew skips it while the service runs,
        # and starts it again within --every minutes after it ended for any reason.
        tt = _sub(triggers, "TimeTrigger")
        _sub(tt, "Enabled", "true")
        _sub(tt, "StartBoundary", f"{START_DATE}T00:00:00")
        rep = _sub(tt, "Repetition")           # no Duration: repeated indefinitely
        _sub(rep, "Interval", f"PT{plan.every}M")
        _sub(rep, "StopAtDurationEnd", "false")

    principals = _sub(task, "Principals")
    principal = _sub(principals, "Principal", id="Author")
    if plan.user:
        _sub(principal, "UserId", plan.user)
        _sub(principal, "LogonType", "Password")          # runs whether the user is logged on or not
    else:
        _sub(principal, "UserId", "S-1-5-18")             # SYSTEM: no password, runs without a logon
    _sub(principal, "RunLevel", "HighestAvailable")

    settings = _sub(task, "Settings")
    _sub(settings, "MultipleInstancesPolicy", "IgnoreNew")
    _sub(settings, "DisallowStartIfOnBatteries", "false")
    _sub(settings, "StopIfGoingOnBatteries", "false")
    _sub(settings, "AllowHardTerminate", "true")
    _sub(settings, "StartWhenAvailable", "true")
    _sub(settings, "RunOnlyIfNetworkAvailable", "false")
    _sub(settings, "AllowStartOnDemand", "true")
    _sub(settings, "Enabled", "true")
    _sub(settings, "Hidden", "false")
    _sub(settings, "RunOnlyIfIdle", "false")
    _sub(settings, "WakeToRun", "false")
    limit = "PT0S" if (plan.follow and job.job == "transfer") else (
        TRANSFER_TIME_LIMIT if job.job == "transfer" else ROTATE_TIME_LIMIT)
    _sub(settings, "ExecutionTimeLimit", limit)
    restart = _sub(settings, "RestartOnFailure")
    _sub(restart, "Interval", "PT1M")
    _sub(restart, "Count", "3")

    actions = _sub(task, "Actions", Context="Author")
    ex = _sub(actions, "Exec")
    _sub(ex, "Command", WINDOWS_SHELL)
    _sub(ex, "Arguments", windows_arguments(job.argv, plan.log_file))
    _sub(ex, "WorkingDirectory", str(plan.workdir))

    ET.indent(task, space="  ")
    return '<?xml version="1.0" encoding="UTF-16"?>\n' + ET.tostring(task, encoding="unicode") + "\n"


def windows_tasks(plan: Plan) -> dict[str, str]:
    """Task name (\\fbaudit\\<name>-<job>) -> its XML document (as text; written as UTF-16)."""
    names = task_names(plan.name)
    return {names[j.job]: _task_xml(plan, j, names[j.job]) for j in plan.jobs}


def task_xml_bytes(xml: str) -> bytes:
    """What schtasks /XML reads: UTF-16 with a byte order mark."""
    return xml.encode("utf-16")


def _xml_file_name(task: str) -> str:
    return "fbaudit-" + task.rsplit("\\", 1)[-1] + ".xml"


def _schtasks(*args: str, interactive: bool = False) -> subprocess.CompletedProcess:
    return _exec(["schtasks", *args], what="schtasks", interactive=interactive)


def _need_windows(what: str) -> None:
    if sys.platform != "win32":
        raise ScheduleError(f"schtasks is only on Windows; {what}")


# --------------------------------------------------------------------------
# Running the schedulers' commands
# --------------------------------------------------------------------------
def _exec(argv: list[str], *, what: str, input: str | None = None,
          interactive: bool = False) -> subprocess.CompletedProcess:
    """Run a scheduler command; a missing command is a clear error."""
    if shutil.which(argv[0]) is None:
        hint = {"crontab": " (Debian: apt-get install cron)",
                "systemctl": " (is this a systemd machine? --cron or --print)",
                "schtasks": " (it is part of Windows)"}.get(what, "")
        raise ScheduleError(f"`{argv[0]}` not found{hint}")
    log.info("[SCHEDULE] running: %s", " ".join(shlex.quote(a) for a in argv))
    if interactive:       # schtasks /RP * asks for the password on the console
        return subprocess.run(argv, text=True)
    return subprocess.run(argv, input=input, capture_output=True, text=True, errors="replace")


# --------------------------------------------------------------------------
# install / remove / show
# --------------------------------------------------------------------------
def _result(plan: Plan, *, installed: bool) -> Result:
    return Result({"target": plan.target, "name": plan.name, "config": str(plan.config),
                   "installed": installed, "follow": plan.follow, "log_file": str(plan.log_file),
                   "jobs": plan.describe()}, warnings=list(plan.warnings))


def install(plan: Plan, *, dry_run: bool = False) -> Result:
    """Install the plan's jobs (``dry_run``: return what would be installed, touch nothing)."""
    return {"cron": _install_cron, "systemd": _install_systemd, "windows": _install_windows}[plan.target](
        plan, dry_run)


def _install_cron(plan: Plan, dry_run: bool) -> Result:
    block = cron_block(plan)
    owner = _cron_owner(plan.user)
    res = _result(plan, installed=not dry_run)
    res.data["crontab_block"] = block
    res.data["crontab_user"] = owner
    check = "crontab -l" + (f" -u {plan.user}" if plan.user else "")
    remove = f"fbaudit schedule remove --cron --name {plan.name}" + (f" --user {plan.user}" if plan.user else "")
    res.data.update(check=check, remove=remove)
    if dry_run:
        res.lines += [f"# would install in the crontab of {owner}:", *block.rstrip("\n").split("\n")]
        return res
    current = read_crontab(plan.user)
    lines, old, at = split_crontab(current, plan.name)
    where = len(lines) if at is None else at          # replaced in place, else appended
    lines[where:where] = block.rstrip("\n").split("\n")
    write_crontab("\n".join(lines) + "\n", plan.user)
    verb = "replaced" if old else "added"
    log.info("[SCHEDULE] cron: %s block %s in the crontab of %s", verb, plan.name, owner)
    res.data["replaced"] = bool(old)
    res.lines += [f"cron: {verb} block '{plan.name}' in the crontab of {owner}:", *block.rstrip("\n").split("\n"),
                  f"output goes to {plan.log_file}",
                  f"check: {check}", f"remove: {remove}"]
    if _cron_daemon_running() is False:
        res.warnings.append("no cron daemon is running on this machine: the jobs run once it is "
                            "(Debian: service cron start)")
    return res


def _install_systemd(plan: Plan, dry_run: bool) -> Result:
    units = systemd_units(plan)
    directory = plan.unit_dir or SYSTEMD_UNIT_DIR
    res = _result(plan, installed=False)
    res.data["unit_dir"] = str(directory)
    res.data["units"] = {str(directory / n): text for n, text in units.items()}
    enable = _to_enable(plan)
    names = list(unit_names(plan.name).values())
    res.data.update(check="systemctl list-timers 'fbaudit-*'" + (
        f"; systemctl status {enable[0]}" if plan.follow else ""),
        remove=f"fbaudit schedule remove --systemd --name {plan.name}")
    if dry_run:
        for path, text in res.data["units"].items():
            res.lines += [f"# would write {path}:", *text.rstrip("\n").split("\n"), ""]
        if not plan.unit_dir:
            res.lines.append(f"# then: systemctl daemon-reload && systemctl enable --now {' '.join(enable)}")
        return res
    if plan.unit_dir is None and not systemd_running():
        raise ScheduleError(f"systemd is not running on this machine (no {SYSTEMD_RUNNING}): nothing written; "
                            "use --cron, or --print / --unit-dir DIR to get the unit files")
    stale = [n for n in names if n not in units and (directory / n).exists()]
    if plan.unit_dir is None:
        present = [n for n in names if (directory / n).exists()]
        if present:                      # a previous install (maybe the other mode): stop it first
            _systemctl("disable", "--now", *present, check=False)
    try:
        directory.mkdir(parents=True, exist_ok=True)
        for n in stale:
            (directory / n).unlink()
        for n, text in units.items():
            (directory / n).write_text(text, encoding="utf-8")
    except OSError as exc:
        raise ScheduleError(f"cannot write the units to {directory}: {exc.strerror or exc}") from None
    log.info("[SCHEDULE] systemd: wrote %s in %s", ", ".join(units), directory)
    res.lines.append(f"systemd: wrote {', '.join(units)} in {directory}")
    if plan.unit_dir is not None:
        res.lines.append(f"not activated (--unit-dir): copy them to {SYSTEMD_UNIT_DIR}, then "
                         f"systemctl daemon-reload && systemctl enable --now {' '.join(enable)}")
        return res
    _systemctl("daemon-reload")
    _systemctl("enable", "--now", *enable)
    res.data["installed"] = True
    log.info("[SCHEDULE] systemd: enabled and started %s", ", ".join(enable))
    res.lines += [f"enabled and started: {', '.join(enable)}", f"output goes to {plan.log_file}",
                  f"check: {res.data['check']}", f"remove: {res.data['remove']}"]
    return res


def _install_windows(plan: Plan, dry_run: bool) -> Result:
    tasks = windows_tasks(plan)
    res = _result(plan, installed=False)
    res.data["tasks"] = tasks
    first = next(iter(tasks))
    res.data.update(check=f'schtasks /Query /TN "{first}" /V /FO LIST',
                    remove=f"fbaudit schedule remove --windows --name {plan.name}")
    user = ["/RU", plan.user, "/RP", "*"] if plan.user else []
    if dry_run:
        for task, xml in tasks.items():
            res.lines += [f"# would register {task} (schtasks /Create /TN \"{task}\" /XML <this, as UTF-16> /F):",
                          *xml.rstrip("\n").split("\n"), ""]
        return res
    if plan.xml_dir is not None:
        try:
            plan.xml_dir.mkdir(parents=True, exist_ok=True)
            for task, xml in tasks.items():
                path = plan.xml_dir / _xml_file_name(task)
                path.write_bytes(task_xml_bytes(xml))
                res.lines.append(f"wrote {path}; import it with: schtasks /Create /TN \"{task}\" /XML "
                                 f"\"{path}\" /F" + (f" /RU {plan.user} /RP *" if plan.user else ""))
        except OSError as exc:
            raise ScheduleError(f"cannot write the task files to {plan.xml_dir}: {exc.strerror or exc}") from None
        res.data["xml_dir"] = str(plan.xml_dir)
        return res
    _need_windows("--print shows the XML to import (--xml-dir DIR writes the files)")
    created = []
    for task, xml in tasks.items():
        fd, tmp = tempfile.mkstemp(prefix="fbaudit-task-", suffix=".xml")
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(task_xml_bytes(xml))
            r = _schtasks("/Create", "/TN", task, "/XML", tmp, "/F", *user, interactive=bool(plan.user))
        finally:
            os.unlink(tmp)
        if r.returncode != 0:
            done = f" ({', '.join(created)} was registered)" if created else ""
            raise ScheduleError(f"schtasks /Create /TN {task} failed (exit {r.returncode}): "
                                f"{(r.stderr or r.stdout or '').strip()}{done}")
        created.append(task)
        log.info("[SCHEDULE] windows: registered %s", task)
    if plan.follow:
        _schtasks("/Run", "/TN", task_names(plan.name)["transfer"])
    res.data["installed"] = True
    who = plan.user or "SYSTEM"
    res.lines += [f"windows: registered {', '.join(created)} (runs as {who}, whether or not anyone is logged on)",
                  f"output goes to {plan.log_file}",
                  f"check: {res.data['check']}  (or taskschd.msc, folder fbaudit)",
                  f"remove: {res.data['remove']}"]
    return res


def remove(target: str, *, name: str = "fbaudit", user: str | None = None, unit_dir: str | Path | None = None,
           dry_run: bool = False) -> Result:
    """Remove the named jobs from the scheduler; nothing installed is not an error."""
    try:
        check_name(name)
    except ValueError as exc:
        raise ScheduleError(str(exc)) from None
    res = Result({"target": target, "name": name, "removed": [], "dry_run": dry_run})
    would = "would remove" if dry_run else "removed"
    if target == "cron":
        owner = _cron_owner(user)
        current = read_crontab(user)
        lines, block, _ = split_crontab(current, name)
        if not block:
            res.lines.append(f"cron: no block '{name}' in the crontab of {owner}; nothing to remove")
            return res
        if not dry_run:
            write_crontab("\n".join(lines) + "\n" if lines else "", user)
            log.info("[SCHEDULE] cron: removed block %s from the crontab of %s", name, owner)
        res.data["removed"] = block
        res.lines += [f"cron: {would} block '{name}' from the crontab of {owner}:", *block]
        return res
    if target == "systemd":
        directory = Path(unit_dir) if unit_dir else SYSTEMD_UNIT_DIR
        present = [n for n in unit_names(name).values() if (directory / n).exists()]
        if not present:
            res.lines.append(f"systemd: no fbaudit-{name}-* units in {directory}; nothing to remove")
            return res
        res.data["removed"] = [str(directory / n) for n in present]
        if dry_run:
            res.lines.append(f"systemd: would disable and delete {', '.join(present)} in {directory}")
            return res
        active = unit_dir is None and systemd_running()
        if active:
            _systemctl("disable", "--now", *present, check=False)
        for n in present:
            (directory / n).unlink()
        if active:
            _systemctl("daemon-reload")
        log.info("[SCHEDULE] systemd: removed %s", ", ".join(present))
        res.lines.append(f"systemd: {'disabled and ' if active else ''}deleted {', '.join(present)} in {directory}")
        return res
    if target == "windows":
        tasks = list(task_names(name).values())
        if dry_run:
            res.data["removed"] = tasks
            res.lines += [f'windows: would run schtasks /Delete /TN "{t}" /F' for t in tasks]
            return res
        _need_windows("remove the tasks in taskschd.msc (folder fbaudit) on the Windows machine")
        for t in tasks:
            r = _schtasks("/Delete", "/TN", t, "/F")
            if r.returncode == 0:
                res.data["removed"].append(t)
                res.lines.append(f"windows: deleted task {t}")
            else:
                res.lines.append(f"windows: task {t} not deleted: {(r.stderr or r.stdout).strip()}")
        return res
    raise ScheduleError(f"unknown scheduler {target!r}; one of {', '.join(TARGETS)}")


def show(target: str, *, name: str = "fbaudit", user: str | None = None,
         unit_dir: str | Path | None = None) -> Result:
    """What is installed under ``name``: the crontab block, the unit files (and the timers), the tasks."""
    try:
        check_name(name)
    except ValueError as exc:
        raise ScheduleError(str(exc)) from None
    res = Result({"target": target, "name": name, "installed": False})
    if target == "cron":
        owner = _cron_owner(user)
        _, block, _ = split_crontab(read_crontab(user), name)
        res.data.update(installed=bool(block), crontab_block="\n".join(block) + "\n" if block else None,
                        crontab_user=owner)
        res.lines += block if block else [f"cron: no block '{name}' in the crontab of {owner}"]
        if block and _cron_daemon_running() is False:
            res.warnings.append("no cron daemon is running on this machine: these jobs do not run")
        return res
    if target == "systemd":
        directory = Path(unit_dir) if unit_dir else SYSTEMD_UNIT_DIR
        present = [n for n in unit_names(name).values() if (directory / n).exists()]
        res.data["units"] = {str(directory / n): (directory / n).read_text(encoding="utf-8") for n in present}
        res.data["installed"] = bool(present)
        if not present:
            res.lines.append(f"systemd: no fbaudit-{name}-* units in {directory}")
            return res
        for path, text in res.data["units"].items():
            res.lines += [f"# {path}", *text.rstrip("\n").split("\n"), ""]
        if unit_dir is None and systemd_running():
            r = _systemctl("list-timers", "--all", "--no-pager", f"fbaudit-{name}-*", check=False)
            res.data["list_timers"] = r.stdout
            res.lines += r.stdout.rstrip("\n").splitlines()
            service = unit_names(name)["transfer.service"]
            r = _systemctl("is-active", service, check=False)
            res.lines.append(f"{service}: {r.stdout.strip()}")
        return res
    if target == "windows":
        _need_windows("on the Windows machine: schtasks /Query /TN \\fbaudit\\" + name + "-transfer /XML")
        res.data["tasks"] = {}
        for t in task_names(name).values():
            r = _schtasks("/Query", "/TN", t, "/XML")
            if r.returncode == 0:
                res.data["tasks"][t] = r.stdout
                res.lines += [f"# {t}", *r.stdout.rstrip("\n").split("\n"), ""]
            else:
                res.lines.append(f"windows: no task {t}")
        res.data["installed"] = bool(res.data["tasks"])
        return res
    raise ScheduleError(f"unknown scheduler {target!r}; one of {', '.join(TARGETS)}")
