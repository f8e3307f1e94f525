"""Connections: open a database (embedded path or server DSN), wrap driver errors."""
from __future__ import annotations

import contextlib
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from firebird.driver import Connection, DbInfoCode, Isolation, TraAccessMode, connect, create_database, tpb
from firebird.driver import DatabaseError as DriverDatabaseError
from firebird.driver import InterfaceError as DriverInterfaceError

from .config import DatabaseSpec
from .errors import DatabaseError
from .runtime import load_client
from .templates import Statement

# fbaudit's own transactions never wait long on a lock held by the
# application: after this many seconds they fail (and change nothing).
LOCK_TIMEOUT = 10


@dataclass
class Database:
    """An open connection plus what we know about the server."""

    spec: DatabaseSpec
    con: Connection
    major: int
    version: str

    def close(self) -> None:
        with contextlib.suppress(Exception):
            if self.con.main_transaction.is_active():
                self.con.rollback()
        with contextlib.suppress(Exception):
            self.con.close()

    def __enter__(self) -> "Database":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def query(self, sql: str, params: tuple | list = (), *, whole_blobs: bool = False) -> list[tuple]:
        """All rows; ``whole_blobs``: every BLOB as its value, however long (else long ones as readers)."""
        with guard(self.spec, sql):
            cur = self.con.cursor()
            if whole_blobs:
                cur.stream_blob_threshold = -1
            cur.execute(sql, params)
            rows = cur.fetchall()
            cur.close()
            return rows

    def scalar(self, sql: str, params: tuple | list = ()):
        rows = self.query(sql, params)
        return rows[0][0] if rows else None

    def execute(self, sql: str, params: tuple | list = ()) -> None:
        with guard(self.spec, sql):
            cur = self.con.cursor()
            cur.execute(sql, params)
            cur.close()

    def commit(self) -> None:
        if self.con.main_transaction.is_active():
            with guard(self.spec, "COMMIT"):
                self.con.commit()

    def rollback(self) -> None:
        if self.con.main_transaction.is_active():
            self.con.rollback()


def wrap(exc: Exception, spec: DatabaseSpec, sql: str | None = None) -> DatabaseError:
    """A driver error as an fbaudit DatabaseError naming the database."""
    sqlcode = getattr(exc, "sqlcode", None)
    gds = tuple(getattr(exc, "gds_codes", ()) or ())
    text = str(exc).strip().replace("\n", " ")
    msg = f"Firebird error on database {spec.describe()}: {text}"
    if sqlcode is not None:
        msg += f" [SQLCODE {sqlcode}"
        if gds:
            msg += f", GDS {','.join(str(g) for g in gds)}"
        msg += "]"
    hint = _hint(text, gds, spec)
    if hint:
        msg += f"\n  hint: {hint}"
    return DatabaseError(msg, sqlcode=sqlcode, gds_codes=gds)


def _hint(text: str, gds: tuple[int, ...], spec: DatabaseSpec) -> str | None:
    low = text.lower()
    if "user name and password are not defined" in low or 335544472 in gds:
        src = spec.password_env and f"environment variable {spec.password_env}" or \
            spec.password_file and f"file {spec.password_file}" or "no password configured"
        return f"check the user {spec.user!r} and its password ({src})"
    if "unable to complete network request" in low or "connection refused" in low or 335544721 in gds:
        return "is the Firebird server running and reachable on that host and port?"
    if "incompatible with current" in low or "already opened with engine" in low:
        return ("the database file is open by another Firebird engine (a server, or an embedded process of "
                "another version); reach it through that server instead (host:path in the config)")
    if "no such file or directory" in low or "i/o error" in low:
        if spec.is_server:
            return "check the path on the server: it is a path on the server's machine, and the server must be able to read it"
        return "check the database path (relative paths are relative to the config file)"
    if "lock time-out" in low or "is in use" in low or "deadlock" in low:
        return (f"another transaction holds a lock fbaudit needs; it gave up after {LOCK_TIMEOUT} s "
                "and changed nothing. Run the command again when the load is lower.")
    if "no permission" in low:
        return f"the user {spec.user!r} lacks a privilege; run fbaudit as the audit owner (the user who ran init)"
    return None


@contextlib.contextmanager
def guard(spec: DatabaseSpec, sql: str | None = None) -> Iterator[None]:
    try:
        yield
    except (DriverDatabaseError, DriverInterfaceError) as exc:
        raise wrap(exc, spec, sql) from exc


def _server_version(con: Connection) -> tuple[int, str]:
    cur = con.cursor()
    cur.execute("SELECT RDB$GET_CONTEXT('SYSTEM', 'ENGINE_VERSION') FROM RDB$DATABASE")
    version = cur.fetchone()[0]
    cur.close()
    con.commit()
    return int(version.split(".")[0]), version


def open_database(spec: DatabaseSpec, *, client_library: str | None = None, create: bool = False,
                  isolation: Isolation = Isolation.READ_COMMITTED_RECORD_VERSION, lock_timeout: int = LOCK_TIMEOUT,
                  read_only: bool = False) -> Database:
    """Connect to ``spec`` (creating the file when ``create`` and it does not exist).

    Its transactions: ``isolation``, waiting at most ``lock_timeout`` seconds
    for a lock, read-only if asked. (The parameter block is built here, after
    the client library is loaded: building it first would load the driver's
    default client instead.)
    """
    load_client(client_library)
    password = spec.password()
    kwargs = dict(user=spec.user, password=password, charset="UTF8")
    if spec.role:
        kwargs["role"] = spec.role
    try:
        if create and not spec.is_server and not Path(spec.database).exists():
            Path(spec.database).parent.mkdir(parents=True, exist_ok=True)
            con = create_database(spec.database, user=spec.user, password=password, charset="UTF8")
        else:
            try:
                con = connect(spec.database, **kwargs)
            except DriverDatabaseError as exc:
                if not (create and spec.is_server and is_missing_file(exc)):
                    raise
                con = create_database(spec.database, user=spec.user, password=password, charset="UTF8")
    except (DriverDatabaseError, DriverInterfaceError) as exc:
        raise wrap(exc, spec) from exc
    con.main_transaction.default_tpb = tpb(isolation, lock_timeout=lock_timeout,
                                           access_mode=TraAccessMode.READ if read_only else TraAccessMode.WRITE)
    major, version = _server_version(con)
    return Database(spec, con, major, version)


# Firebird releases that carry the fix of upstream issue 8817 ("Fatal lock manager error: invalid lock id":
# a DDL commit that alters a relation races its rescan lock and the server process dies), per major.minor;
# found in Firebird's repository: the fix (pull request 8818) is in the tags v3.0.14, v4.0.7 and v5.0.4.
LOCK_BUG_FIXED_IN = {(3, 0): (3, 0, 14), (4, 0): (4, 0, 7), (5, 0): (5, 0, 4)}


def crash_risk(version: str) -> str | None:
    """What to tell an admin whose Firebird ``version`` ("3.0.11") can crash under fbaudit's rotation DDL
    while the application writes (upstream issue 8817); None for a version with the fix."""
    try:
        parts = tuple(int(x) for x in version.split(".")[:3])
    except ValueError:
        return None
    fixed = LOCK_BUG_FIXED_IN.get(parts[:2])
    if fixed is None or parts >= fixed:
        return None
    return (f"Firebird {version} can crash the whole server (\"Fatal lock manager error: invalid lock id\", "
            f"upstream issue 8817) when DDL such as rotation's commits while other connections write; the fix "
            f"is in {'.'.join(map(str, fixed))}. Upgrade the server (docs/rotation.md, \"Firebird versions\").")

def timestamp_text(value) -> str:
    """A datetime as Firebird's TIMESTAMP text, for ``CAST(? AS TIMESTAMP)``: firebird-driver 2.1 cannot
    bind a date before 1858-11-17 ("can't convert negative int to unsigned"), Firebird's range starts
    at 0001-01-01."""
    return (f"{value.year:04d}-{value.month:02d}-{value.day:02d} {value.hour:02d}:{value.minute:02d}:"
            f"{value.second:02d}.{value.microsecond // 100:04d}")

# Marks a transaction's DDL on fbaudit's own objects as fbaudit's: the DDL log (DDL_LOG,
# ddl/main_init.sql) leaves it out. Rotation's daily DROP / CREATE is no schema event.
OWN_DDL = "SELECT RDB$SET_CONTEXT('USER_TRANSACTION', 'FBAUDIT_OWN_DDL', 1) FROM RDB$DATABASE"


def own_ddl(cur) -> None:
    """Run OWN_DDL on a cursor (in its transaction)."""
    cur.execute(OWN_DDL)
    cur.fetchall()


def apply_plan(db: Database, plan: list[Statement]) -> None:
    """Run a plan in ONE transaction, DDL and parameterised DML alike: all or nothing.

    On a Firebird error everything is rolled back and the error names the
    statement that failed.
    """
    con = db.con
    st = None
    cursors: dict[str, object] = {}        # one prepared statement per text (a trigger's parts: hundreds)
    try:
        # fbaudit's own DDL on its own objects (audit triggers) stays out of the DDL log (DDL_LOG).
        with con.cursor() as own:
            own_ddl(own)
        for st in plan:
            if st.params:
                cur = cursors.get(st.sql)
                if cur is None:
                    cur = cursors[st.sql] = con.cursor()
                cur.execute(st.sql, st.params)
            else:
                con.execute_immediate(st.sql)
        for cur in cursors.values():
            cur.close()
        db.commit()
    except (DriverDatabaseError, DriverInterfaceError) as exc:
        db.rollback()
        err = wrap(exc, db.spec)
        first = st.sql.strip().splitlines()[0][:160] if st else ""
        raise DatabaseError(f"{err}\n  statement: {first}\n  nothing was changed (rolled back)",
                            sqlcode=err.sqlcode, gds_codes=err.gds_codes) from exc
    except BaseException:
        db.rollback()
        raise


def old_writers(db: Database, before: int, *, exclude: tuple[int, ...] = ()) -> list[tuple]:
    """Alive read-write transactions numbered ``before`` or lower (limbo ones too), except ``exclude``.

    Rows (id, started, user, address, process, attachment). The list of active
    transactions comes from the database itself (no privilege needed, every
    attachment); MON$ only names them and drops read-only ones (a user who
    cannot see an attachment in MON$ simply waits for it too). Rotation waits
    for these before it empties a table; a baseline before its snapshot.
    """
    info = db.con.info
    ids = [t for t in info.get_active_transaction_ids() if t <= before and t not in exclude]
    limbo = [t for t in (info.get_info(DbInfoCode.LIMBO) or []) if t <= before]
    rows: list[tuple] = []
    if ids:
        seen = {r[0]: r for r in db.query(
            "SELECT t.MON$TRANSACTION_ID, t.MON$TIMESTAMP, TRIM(a.MON$USER), a.MON$REMOTE_ADDRESS, "
            "a.MON$REMOTE_PROCESS, a.MON$ATTACHMENT_ID, t.MON$READ_ONLY "
            "FROM MON$TRANSACTIONS t JOIN MON$ATTACHMENTS a ON a.MON$ATTACHMENT_ID = t.MON$ATTACHMENT_ID "
            "WHERE t.MON$TRANSACTION_ID <= ?", (before,))}
        for t in ids:
            r = seen.get(t)
            if r is None:
                rows.append((t, None, None, None, None, None))
            elif not r[6]:
                rows.append(r[:6])
    db.commit()
    return rows + [(t, None, None, None, "in limbo: resolve it with gfix -list / -commit / -rollback", None)
                   for t in limbo if t not in ids]


def wait_for_old_writers(db: Database, before: int, deadline: float, *, exclude: tuple[int, ...] = (),
                         on_wait=None) -> list[tuple]:
    """Wait until no transaction of :func:`old_writers` is alive, or ``deadline`` (time.monotonic)
    passes; return those still alive then ([]: none). ``on_wait(alive)`` runs once, when the first
    check finds some. Pauses between checks: 0.05 s, doubling up to 0.5 s."""
    pause, said = 0.05, False
    while True:
        alive = old_writers(db, before, exclude=exclude)
        if not alive or time.monotonic() >= deadline:
            return alive
        if on_wait and not said:
            on_wait(alive)
            said = True
        time.sleep(pause)
        pause = min(pause * 2, 0.5)


def describe_writers(alive: list[tuple], most: int = 5) -> str:
    """'transaction 12 (attachment 3, user SYSDBA, from 10.0.0.5, erp.exe, started ...); ...'"""
    who = "; ".join(
        f"transaction {t}" + (f" (attachment {att}, user {u}" if att else " (")
        + (f", from {addr}" if addr else "") + (f", {proc}" if proc else "")
        + (f", started {ts:%Y-%m-%d %H:%M:%S}" if ts else "") + ")"
        for (t, ts, u, addr, proc, att) in alive[:most])
    return who + (f" and {len(alive) - most} more" if len(alive) > most else "")


def is_missing_file(exc: Exception) -> bool:
    """A connect error saying the database file does not exist."""
    text = str(exc).lower()
    return "no such file or directory" in text or "the system cannot find the file" in text


def database_exists(spec: DatabaseSpec, *, client_library: str | None = None) -> bool:
    """Whether the database exists (for a server DSN: try to connect)."""
    if not spec.is_server:
        return os.path.exists(spec.database)
    load_client(client_library)
    try:
        connect(spec.database, user=spec.user, password=spec.password(), charset="UTF8").close()
        return True
    except DriverDatabaseError as exc:
        if is_missing_file(exc):
            return False
        raise wrap(exc, spec) from exc
