"""Shared parts of the benchmark scripts (bench_capture.py, bench_transfer.py, bench_rotation.py).

The scripts run as `python scripts/bench_x.py`, so this module is found in
their own folder (sys.path[0]). fbaudit is imported only inside functions:
use_snapshot() may put an exported older fbaudit first on sys.path, and that
must happen before the first import.
"""
from __future__ import annotations

import argparse
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

PREFIX = "FBA_"


def say(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------
# Where the databases live
# --------------------------------------------------------------------------
class Target:
    """Embedded files in a work folder, or databases on a server over TCP.

    Each script subclasses it: ``kind`` names its temporary folder and its
    files on the server, and the subclass adds what only that script needs."""

    kind = "bench"

    def __init__(self, args: argparse.Namespace):
        from fbaudit.runtime import load_client

        self.args = args
        self.is_server = args.target == "server"
        self.runtime = load_client()
        self.run_id = f"{os.getpid()}_{uuid.uuid4().hex[:6]}"
        self.workdir = Path(args.dir) if args.dir else Path(tempfile.mkdtemp(prefix=f"fbaudit-bench-{self.kind}-"))
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.user = "SYSDBA"
        self.password_file = Path(args.password_file) if self.is_server else None
        self.password = None
        if self.is_server:
            from fbaudit.config import DatabaseSpec
            self.password = DatabaseSpec("server", "x", password_file=self.password_file).password()
        self.created: list[str] = []

    def path(self, name: str) -> str:
        """The database file (on the server: as this machine sees it if the server is local)."""
        if self.is_server:
            return f"{self.args.server_dir}/bench_{self.kind}_{self.run_id}_{name}.fdb"
        return str(self.workdir / f"{name}.fdb")

    def dsn(self, name: str) -> str:
        return f"{self.args.host}:{self.path(name)}" if self.is_server else self.path(name)

    def create(self, name: str) -> str:
        from firebird.driver import create_database
        dsn = self.dsn(name)
        if not self.is_server and os.path.exists(dsn):
            os.remove(dsn)
        con = create_database(dsn, user=self.user, password=self.password, charset="UTF8")
        con.close()
        self.created.append(dsn)
        return dsn

    def connect(self, dsn: str):
        from firebird.driver import connect
        return connect(dsn, user=self.user, password=self.password, charset="UTF8")

    def drop(self, dsn: str) -> None:
        try:
            con = self.connect(dsn)
            con.drop_database()
        except Exception as exc:  # a leftover file is not worth failing the run
            say(f"warning: could not drop {dsn}: {str(exc).splitlines()[0]}")
        if dsn in self.created:
            self.created.remove(dsn)

    def config(self, dsn: str, log_dsn: str, tag: str):
        from fbaudit.config import Config, DatabaseSpec, SourceSpec
        pf = self.password_file
        return Config(path=self.workdir / f"fbaudit_{tag}.yaml", prefix=PREFIX,
                      log=DatabaseSpec("log", log_dsn, user=self.user, password_file=pf),
                      sources=(SourceSpec("main", dsn, user=self.user, password_file=pf,
                                          registry=self.workdir / f"tables_{tag}.yaml"),))

    def cleanup(self) -> None:
        """--keep: keep the databases and the folder; otherwise drop them (the folder unless it is --dir)."""
        if self.args.keep:
            say(f"kept: {', '.join(self.created)}")
            return
        for dsn in list(self.created):
            self.drop(dsn)
        if not self.args.dir:
            shutil.rmtree(self.workdir, ignore_errors=True)


def server_pids() -> list[int]:
    """PIDs of local Firebird server processes (for their CPU time), if visible."""
    pids = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                if (d / "comm").read_text().strip() in ("firebird", "fb_smp_server", "fbserver"):
                    pids.append(int(d.name))
            except OSError:
                pass
    return pids


# --------------------------------------------------------------------------
# Report
# --------------------------------------------------------------------------
def machine_info() -> dict:
    model = platform.processor() or ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"nproc": os.cpu_count(), "cpu": model, "kernel": platform.release(), "python": platform.python_version(),
            "loadavg_start": os.getloadavg()}


def add_common_args(ap: argparse.ArgumentParser, *, dir_help: str) -> None:
    """The options every benchmark takes: the target, where the server is, the work folder, --snapshot, --json."""
    ap.add_argument("--target", choices=("embedded", "server"), default="embedded",
                    help="embedded: database files opened by this venv's firebird-embedded; "
                         "server: databases on a local Firebird server over TCP")
    ap.add_argument("--host", default="localhost", help="server target: host [localhost]")
    ap.add_argument("--server-dir", default="/var/lib/firebird/3.0/data",
                    help="server target: folder of the server's database files")
    ap.add_argument("--password-file", default="/etc/firebird/3.0/SYSDBA.password",
                    help="server target: SYSDBA password file (bare or ISC_PASSWORD=...)")
    ap.add_argument("--dir", help=dir_help)
    ap.add_argument("--keep", action="store_true", help="keep the databases and the temporary folder")
    ap.add_argument("--snapshot", metavar="REV",
                    help="benchmark fbaudit as committed at git revision REV (e.g. HEAD), exported to a temporary "
                         "folder, instead of the working tree")
    ap.add_argument("--json", help="write all measurements to this file")


def snapshot_from_args(args: argparse.Namespace) -> Path | None:
    """--snapshot REV: export that revision and import fbaudit from it (before anything imports fbaudit);
    returns the temporary folder (the caller removes it), None without --snapshot."""
    if not args.snapshot:
        return None
    snapdir = Path(tempfile.mkdtemp(prefix="fbaudit-bench-src-"))
    rev, _ = use_snapshot(args.snapshot, snapdir)
    say(f"fbaudit from git revision {rev}, exported to {snapdir}")
    return snapdir


def report_header(m: dict, what: str) -> list[str]:
    """The first lines of every benchmark's report: what ran, on which Firebird, machine and revision."""
    mach = m["machine"]
    return [
        f"fbaudit {what} benchmark — {m['date']}",
        f"Firebird {m['engine_version']} {m['target_desc']}; client library firebird-embedded {m['client_version']}; "
        f"page size {m['page_size']}, forced writes {'on' if m['forced_writes'] else 'off'}, "
        f"page buffers {m['page_buffers']}",
        f"machine: {mach['nproc']} x {mach['cpu']}, load average at start "
        f"{' '.join(f'{x:.2f}' for x in mach['loadavg_start'])}, at end "
        f"{' '.join(f'{x:.2f}' for x in mach.get('loadavg_end', ()))}",
        f"fbaudit revision {m['fbaudit_revision']}",
    ]


SNAPSHOT: tuple[str, Path] | None = None      # (short revision, folder it was exported to), set by use_snapshot()


def use_snapshot(rev: str, workdir: Path) -> tuple[str, Path]:
    """Export fbaudit and ddl/ at git revision ``rev`` (of this repository) to
    ``workdir`` and import fbaudit from there, so edits in progress in the
    working tree cannot change the code under test during a run. Sets and
    returns SNAPSHOT = (short revision, folder)."""
    global SNAPSHOT
    repo = Path(__file__).resolve().parent.parent
    short = subprocess.run(["git", "-C", str(repo), "rev-parse", "--short", rev], capture_output=True, text=True,
                           check=True).stdout.strip()
    dst = workdir / f"fbaudit-{short}"
    if not dst.exists():
        dst.mkdir(parents=True)
        archive = subprocess.run(["git", "-C", str(repo), "archive", short, "fbaudit", "ddl"], capture_output=True,
                                 check=True).stdout
        subprocess.run(["tar", "-x", "-C", str(dst)], input=archive, check=True)
    sys.path.insert(0, str(dst))          # spawned writer processes inherit sys.path
    SNAPSHOT = (short, dst)
    return SNAPSHOT


def fbaudit_revision() -> str | None:
    import fbaudit
    if SNAPSHOT:
        return f"{SNAPSHOT[0]} (snapshot)"
    try:
        here = Path(fbaudit.__file__).resolve().parent.parent
        rev = subprocess.run(["git", "-C", str(here), "rev-parse", "--short", "HEAD"], capture_output=True,
                             text=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(here), "status", "--porcelain", "--", "fbaudit", "ddl"],
                               capture_output=True, text=True, timeout=10).stdout.strip()
        return (rev or "?") + (" + uncommitted changes in fbaudit/ or ddl/" if dirty else "")
    except Exception:
        return None


def write_results(results: dict, path: str | None) -> None:
    """The benchmark's results as JSON: to ``path`` (--json) when given, and always to stdout."""
    import json
    text = json.dumps(results, indent=2, default=str)
    if path:
        Path(path).write_text(text)
    print(text)


# --------------------------------------------------------------------------
# Shared by bench_baseline.py (and free for the others): the engine's settings,
# the meta block report_header() reads, latency percentiles
# --------------------------------------------------------------------------
def engine_info(con) -> dict:
    """Firebird version and the database's page size, forced writes and page buffers (MON$DATABASE)."""
    cur = con.cursor()
    cur.execute("SELECT RDB$GET_CONTEXT('SYSTEM', 'ENGINE_VERSION'), MON$PAGE_SIZE, MON$FORCED_WRITES, "
                "MON$PAGE_BUFFERS FROM MON$DATABASE")
    version, page_size, fw, buffers = cur.fetchone()
    cur.close()
    con.commit()
    return {"engine_version": version, "page_size": page_size, "forced_writes": bool(fw), "page_buffers": buffers}


def run_meta(target: Target, args: argparse.Namespace, engine: dict, **extra) -> dict:
    """The "meta" block of a result (the keys report_header() reads): date, target, engine, machine, revision."""
    import datetime as _dt
    meta = {
        "date": _dt.datetime.now().astimezone().isoformat(timespec="seconds"),
        "target": args.target,
        "target_desc": f"server {args.host} over TCP" if target.is_server else "embedded",
        **engine,
        "client_version": target.runtime.embedded_version, "machine": machine_info(),
        "fbaudit_revision": fbaudit_revision(),
        "fbaudit_path": str(Path(sys.modules["fbaudit"].__file__).parent),
        "embedded_shared": os.environ.get("FBAUDIT_EMBEDDED_SHARED"),
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
    }
    meta.update(extra)
    return meta


def percentile(values, q: float) -> float | None:
    """The q-th percentile (0-100) of ``values``, nearest rank; None when empty."""
    s = sorted(values)
    if not s:
        return None
    return s[min(len(s) - 1, max(0, int(round(q / 100 * (len(s) - 1)))))]


def latency_summary(seconds, scale: float = 1000.0) -> dict:
    """n, p50/p95/p99/max and mean of durations given in seconds, in ms (``scale``)."""
    xs = [x * scale for x in seconds]
    if not xs:
        return {"n": 0, "p50": None, "p95": None, "p99": None, "max": None, "mean": None}
    return {"n": len(xs), "p50": round(percentile(xs, 50), 3), "p95": round(percentile(xs, 95), 3),
            "p99": round(percentile(xs, 99), 3), "max": round(max(xs), 3), "mean": round(sum(xs) / len(xs), 3)}
