"""Fixtures: real Firebird databases, embedded or on a server.

The target comes from the environment (scripts/test sets it per run):

- ``FBAUDIT_TEST_TARGET=embedded`` (default): database files in pytest's tmp
  folder, opened through the installed ``firebird-embedded`` runtime.
- ``FBAUDIT_TEST_TARGET=server``: databases on a Firebird server over TCP,
  ``FBAUDIT_TEST_SERVER`` (default ``localhost``), files created in
  ``FBAUDIT_TEST_SERVER_DIR`` (default ``/var/lib/firebird/3.0/data``), SYSDBA's
  password from ``FBAUDIT_TEST_PASSWORD_FILE`` (default Debian's
  ``/etc/firebird/3.0/SYSDBA.password``).
"""
from __future__ import annotations

import os
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from fbaudit.config import Config, DatabaseSpec, SourceSpec
from fbaudit.db import Database, open_database
from fbaudit.runtime import load_client

TARGET = os.environ.get("FBAUDIT_TEST_TARGET", "embedded")
# Tests run fbaudit processes (transfer --follow, SIGKILLed transfers) beside
# the test's own connections: embedded Firebird must share files between
# processes (SuperClassic copy of the runtime, fbaudit.runtime.shared_root).
if TARGET == "embedded":
    os.environ.setdefault("FBAUDIT_EMBEDDED_SHARED", "1")
SERVER = os.environ.get("FBAUDIT_TEST_SERVER", "localhost")
SERVER_DIR = os.environ.get("FBAUDIT_TEST_SERVER_DIR", "/var/lib/firebird/3.0/data")
PASSWORD_FILE = os.environ.get("FBAUDIT_TEST_PASSWORD_FILE", "/etc/firebird/3.0/SYSDBA.password")


@dataclass
class Target:
    """Where the tests run: embedded or server, and which Firebird."""

    is_server: bool
    major: int = 0
    version: str = ""
    created: list[DatabaseSpec] = field(default_factory=list)

    @property
    def healthy_after_rotation(self) -> str:
        """What `fbaudit status` calls a healthy source that rotates: "warning" on a server that can crash
        under rotation's DDL (db.crash_risk: the Debian 3.0.11 server), else "ok"."""
        from fbaudit.db import crash_risk
        return "warning" if crash_risk(self.version) else "ok"

    def spec(self, name: str, tmp_path: Path, *, user: str = "SYSDBA") -> DatabaseSpec:
        if self.is_server:
            path = f"{SERVER}:{SERVER_DIR}/fbaudit_test_{uuid.uuid4().hex[:10]}_{name}.fdb"
            return DatabaseSpec(name, path, user=user, password_file=Path(PASSWORD_FILE) if user == "SYSDBA" else None,
                                password_env=None if user == "SYSDBA" else "FBAUDIT_TEST_APP_PASSWORD")
        return DatabaseSpec(name, str(tmp_path / f"{name}.fdb"), user=user)

    def create(self, spec: DatabaseSpec) -> Database:
        from firebird.driver import create_database
        load_client()
        if self.is_server:
            con = create_database(spec.database, user=spec.user, password=spec.password(), charset="UTF8")
            con.close()
            self.created.append(spec)
        return open_database(spec, create=True)

    def drop_all(self) -> None:
        from firebird.driver import connect
        for spec in self.created:
            try:
                con = connect(spec.database, user=spec.user, password=spec.password())
                con.drop_database()
            except Exception:
                pass
        self.created.clear()


@pytest.fixture(scope="session")
def target(tmp_path_factory) -> Target:
    t = Target(is_server=(TARGET == "server"))
    spec = t.spec("probe", tmp_path_factory.mktemp("probe"))
    with t.create(spec) as db:
        t.major, t.version = db.major, db.version
    yield t
    t.drop_all()


def pytest_report_header(config):
    load_client()
    from fbaudit.runtime import _loaded
    where = f"server {SERVER} (TCP)" if TARGET == "server" else "embedded"
    emb = f", client firebird-embedded {_loaded.embedded_version}" if _loaded and _loaded.embedded_version else ""
    return [f"fbaudit target: Firebird {where}{emb} (the server's version is printed at the end)"]


def pytest_terminal_summary(terminalreporter):
    import fbaudit.runtime as rt
    if _CRASHES:
        # Counted and named apart from the skips (scripts/test reads this line): a server that dies
        # under fbaudit's DDL is a finding about that server version, never a silent skip.
        terminalreporter.write_line(f"Firebird server crashes: {len(_CRASHES)} ({'; '.join(_CRASHES)})")
    if rt._loaded is None:
        return
    version = _SEEN.get("version")
    where = f"server {SERVER} over TCP" if TARGET == "server" else "embedded"
    if version:
        terminalreporter.write_line(f"fbaudit tests ran on Firebird {version} ({where})")


_SEEN: dict[str, str] = {}
_CRASHES: list[str] = []          # "test id: the server log's line" of every test the server crashed in


@pytest.fixture(autouse=True)
def _remember_version(request):
    if "target" in request.fixturenames:
        t = request.getfixturevalue("target")
        _SEEN["version"] = t.version
    yield


@dataclass
class Project:
    """A main database, a log database, a registry and a Config over them."""

    target: Target
    config: Config
    main: DatabaseSpec
    log: DatabaseSpec
    tmp: Path

    def connect(self, spec: DatabaseSpec | None = None) -> Database:
        return open_database(spec or self.main)

    def sql(self, *statements: str) -> None:
        """Run statements on the main database, one transaction each (schema setup)."""
        with self.connect() as db:
            for s in statements:
                db.con.execute_immediate(s)
                db.con.commit()

    @property
    def prefix(self) -> str:
        return self.config.prefix

    @property
    def registry_path(self) -> Path:
        return self.config.sources[0].registry

    def write_config(self) -> Path:
        """The same setup as a YAML file, for CLI tests."""
        from ruamel.yaml import YAML

        def db(spec: DatabaseSpec) -> dict:
            d = {"database": spec.database, "user": spec.user}
            if spec.password_file:
                d["password_file"] = str(spec.password_file)
            return d

        data = {"prefix": self.prefix, "log": db(self.log),
                "sources": [{"name": "main", **db(self.main), "registry": str(self.registry_path)}],
                "checkpoints": {"dir": str(self.config.checkpoint_dir)}}
        path = self.tmp / "fbaudit.yaml"
        with path.open("w", encoding="utf-8") as fh:
            YAML().dump(data, fh)
        return path


@pytest.fixture
def project(target: Target, tmp_path: Path) -> Project:
    main = target.spec("main", tmp_path)
    logdb = target.spec("log", tmp_path)
    target.create(main).close()
    if target.is_server:
        target.create(logdb).close()
    src = SourceSpec(name="main", database=main.database, user=main.user, password_env=main.password_env,
                     password_file=main.password_file, registry=tmp_path / "tables.yaml")
    cfg = Config(path=tmp_path / "fbaudit.yaml", log=logdb, sources=(src,), prefix="FBA_",
                 checkpoints_dir=tmp_path / "checkpoints")
    return Project(target, cfg, src, logdb, tmp_path)


# A crash of the Firebird server itself ("Fatal lock manager error: invalid lock id" during the
# rotation stress test on the Debian 3.0.11 server, upstream issue 8817, fixed in 3.0.14, 4.0.7 and
# 5.0.4: docs/rotation.md) breaks every connection of the test that is running. Such a test proves
# nothing about fbaudit either way: it is reported as skipped, naming the server's log line, AND
# counted and named in the summary's own line "Firebird server crashes: N (...)", which scripts/test
# shows in its own column, apart from the skips.
SERVER_LOG = Path(os.environ.get("FBAUDIT_TEST_SERVER_LOG", "/var/log/firebird/firebird3.0.log"))


def _server_log_size() -> int:
    try:
        return SERVER_LOG.stat().st_size
    except OSError:
        return -1


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    if TARGET == "server" and call.when == "setup":
        item._fbaudit_log_size = _server_log_size()
    outcome = yield
    report = outcome.get_result()
    start = getattr(item, "_fbaudit_log_size", -1)
    if TARGET != "server" or call.when != "call" or not report.failed or start < 0:
        return
    try:
        with SERVER_LOG.open("rb") as fh:
            fh.seek(start)
            new = fh.read().decode("utf-8", "replace")
    except OSError:
        return
    if "terminated abnormally" in new:
        why = next((line.strip() for line in new.splitlines() if "Fatal" in line or "abnormally" in line), "")
        report.outcome = "skipped"
        report.longrepr = (str(item.path), item.location[1] or 0,
                           f"Skipped: the Firebird server crashed during this test ({why}); see {SERVER_LOG}")
        _CRASHES.append(f"{item.nodeid}: {why}")
