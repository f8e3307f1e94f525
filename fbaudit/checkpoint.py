"""Checkpoints of the main database: a consistent copy of a set of tables in
one JSON file, and a restore of it in one transaction (docs/checkpoints.md).

Behaviour and log lines follow the checkpoint guide fbaudit adopts (docs/checkpoints.md):

    2025-10-30 14:30:15 [INFO] fbaudit.checkpoint: [CHECKPOINT] Starting checkpoint creation: checkpoint_...

The file is one JSON array, one element per line, written as a stream and
renamed into place when complete, so a large table never sits in memory and
a half-written file is never mistaken for a checkpoint::

    [
    {"fbaudit_checkpoint":1,"id":"checkpoint_20261202_013000",...}    header
    {"table":"CUSTOMER","columns":[...],...}                           a table's section
    [1,"Acme",{"d":"12.50"},null]                                      one row per line
    {"end_table":"CUSTOMER","rows":1}
    {"sequences":[{"name":"GEN_CUSTOMER","value":1,...}]}
    {"summary":{...}}
    {"checksum":"sha256:..."}                                          of every byte above
    ]

Values that JSON has no exact type for are tagged objects: ``{"d": "12.50"}``
(NUMERIC, DECIMAL, INT128, DECFLOAT), ``{"b": base64}`` (binary), ``{"date":
...}``, ``{"time": ..., "tz": ...}``, ``{"ts": ..., "tz": ...}``, ``{"f":
"nan"}`` (non-finite floats), ``{"a": [...]}`` (an ARRAY column: its elements,
nested per dimension, each tagged the same way).
"""
from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
import logging
import math
import os
import re
import stat
import sys
import time
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any, Callable, Iterator

from filelock import FileLock, Timeout
from firebird.driver import TPB, Isolation, TableAccessMode, TableShareMode, TraAccessMode
from firebird.driver import DatabaseError as DriverDatabaseError
from firebird.driver import InterfaceError as DriverInterfaceError
from firebird.driver.types import get_timezone

from .bulk import Inserter
from .catalog import not_null_columns, read_table, table_exists
from .config import Config, SourceSpec
from .db import LOCK_TIMEOUT, Database, wrap
from .errors import CatalogError, CheckpointError, CheckpointNotFound, FbauditError
from .idents import normalize_name, quote_ident
from .objects import installed_trigger_body
from .progress import Progress
from .sources import one_source, open_source

log = logging.getLogger("fbaudit.checkpoint")

FORMAT_VERSION = 1
SEPARATOR = "=" * 80
PROGRESS_EVERY = 100          # rows between "Progress:" lines (the guide's)
AUDIT_MODES = ("rows", "event")
OP_RESTORE = 4                # LOG_PACKET.OPERATION of a restore event (audit="event")
_ID = re.compile(r"^[A-Za-z0-9_.-]+$")
MAX_ID_LENGTH = 200


# --------------------------------------------------------------------------
# Values <-> JSON
# --------------------------------------------------------------------------
def _tz(value: dt.datetime | dt.time) -> str:
    name = getattr(value.tzinfo, "_timezone_", None)
    if not name:                                   # a tzinfo not made by the driver
        off = value.utcoffset() if isinstance(value, dt.datetime) else value.tzinfo.utcoffset(None)
        minutes = int(off.total_seconds() // 60)
        name = f"{'+' if minutes >= 0 else '-'}{abs(minutes) // 60:02d}:{abs(minutes) % 60:02d}"
    return name


def _float(v: float):
    return v if math.isfinite(v) else {"f": repr(v)}


_ENCODE: dict[type, Callable[[Any], Any]] = {
    bool: lambda v: v,
    int: lambda v: v,
    str: lambda v: v,
    float: _float,
    Decimal: lambda v: {"d": str(v)},
    bytes: lambda v: {"b": base64.b64encode(v).decode("ascii")},
    dt.date: lambda v: {"date": v.isoformat()},
    dt.datetime: lambda v: {"ts": v.replace(tzinfo=None).isoformat(), "tz": _tz(v)} if v.tzinfo
    else {"ts": v.isoformat()},
    dt.time: lambda v: {"time": v.replace(tzinfo=None).isoformat(), "tz": _tz(v)} if v.tzinfo
    else {"time": v.isoformat()},
    # An ARRAY column's value: its elements (nested lists for more dimensions), each encoded as above.
    list: lambda v: {"a": [encode_value(x) for x in v]},
}


def encode_value(v: Any) -> Any:
    """One column value as JSON data, exactly (see the module docstring)."""
    if v is None:
        return None
    try:
        return _ENCODE[type(v)](v)
    except KeyError:
        raise CheckpointError(f"cannot store a value of Python type {type(v).__name__} ({v!r:.60})") from None


def _decode_object(o: dict) -> Any:
    if "a" in o:
        return o["a"]                      # its elements were decoded first (object_hook works inside out)
    if "d" in o:
        return Decimal(o["d"])
    if "b" in o:
        return base64.b64decode(o["b"])
    if "ts" in o:
        v = dt.datetime.fromisoformat(o["ts"])
        return v.replace(tzinfo=get_timezone(o["tz"])) if "tz" in o else v
    if "time" in o:
        v = dt.time.fromisoformat(o["time"])
        return v.replace(tzinfo=get_timezone(o["tz"])) if "tz" in o else v
    if "date" in o:
        return dt.date.fromisoformat(o["date"])
    if "f" in o:
        return float(o["f"])
    return o


def decode_row(line: bytes) -> list:
    return json.loads(line, object_hook=_decode_object)


def _line(obj: Any) -> bytes:
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode("utf-8") + b",\n"


# --------------------------------------------------------------------------
# Where checkpoints live
# --------------------------------------------------------------------------
TMP_SUFFIX = ".json.tmp"        # a checkpoint being written (or left by a create that was killed)
LOCK_SUFFIX = ".lock"           # beside it, <id>.json.tmp.lock: held by the process writing it


def _name(checkpoint_id: str) -> str:
    """The id in ``checkpoint_id`` (a file name is accepted too); CheckpointNotFound if it is none."""
    name = Path(checkpoint_id).name
    for suffix in (TMP_SUFFIX, ".json"):
        if name.endswith(suffix):
            name = name[:-len(suffix)]
            break
    if len(name) > MAX_ID_LENGTH:            # a file name that long is an OSError, not "no such checkpoint"
        raise CheckpointNotFound(f"{checkpoint_id[:40]!r}… is not a checkpoint id: an id has at most "
                                 f"{MAX_ID_LENGTH} characters, this has {len(name)}.")
    if not _ID.match(name):
        raise CheckpointNotFound(f"{checkpoint_id!r} is not a checkpoint id (like checkpoint_20261202_013000).")
    return name


def _path(config: Config, checkpoint_id: str) -> Path:
    name = _name(checkpoint_id)
    path = config.checkpoint_dir / f"{name}.json"
    if not path.exists() and (config.checkpoint_dir / f"{name}{TMP_SUFFIX}").exists():
        raise CheckpointNotFound(f"{name} is not a checkpoint: {config.checkpoint_dir / (name + TMP_SUFFIX)} is the "
                                 "file of a create that did not finish (or is still running). `fbaudit checkpoint "
                                 f"list` shows which; `fbaudit checkpoint delete {name}` removes a left-over one.")
    if not path.exists():
        known = ", ".join(p.stem for p in sorted(config.checkpoint_dir.glob("*.json"))[-5:]) or "none"
        raise CheckpointNotFound(f"No checkpoint {name!r} in {config.checkpoint_dir} (newest: {known}). "
                                 "`fbaudit checkpoint list` shows them all.")
    return path


def _unsafe(path: Path, *, folder: bool) -> str | None:
    """Why other accounts could change ``path`` (POSIX: its mode and owner), or None when only this
    account (or root) can. A checkpoint is only as trustworthy as the folder it is in: whoever can
    write the folder can put a forged file there, checksum included (docs/checkpoints.md)."""
    if sys.platform == "win32":           # ACLs: docs/checkpoints.md says to keep the folder admin-only
        return None
    try:
        st = path.stat()
    except OSError:                       # missing or not a folder: said where it is used
        return None
    what = "checkpoint folder" if folder else "checkpoint file"
    if st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        return (f"The {what} {path} is writable by other users (mode {stat.S_IMODE(st.st_mode):o}): anyone who "
                "can write it can replace a checkpoint with a forged one, checksum included, and a restore would "
                f"write it into the database; run: chmod {'700' if folder else '600'} {path}")
    if st.st_uid not in (os.geteuid(), 0):
        return (f"The {what} {path} belongs to another user (uid {st.st_uid}), who can change what is in it "
                "(a forged checkpoint, checksum included, that a restore would write into the database); make "
                f"it this user's: chown {os.geteuid()} {path}")
    return None


def _refuse_unsafe_folder(config: Config) -> None:
    why = _unsafe(config.checkpoint_dir, folder=True)
    if why:
        raise CheckpointError(f"{why}. Nothing was changed.")


def _try_lock(path: Path) -> FileLock | None:
    """The lock file ``path``, taken without waiting; None when another process (or writer) holds it.

    The lock is the operating system's (filelock: flock() on POSIX, LockFileEx on Windows): a process
    killed with -9 loses it, so a free lock beside a .json.tmp means nobody is writing that file."""
    lock = FileLock(str(path), timeout=0, mode=0o600)
    try:
        lock.acquire(timeout=0)
    except Timeout:
        return None
    # POSIX: the holder removes the lock file before it releases the lock, so a process that opened it
    # just before can be granted the lock of a file that is gone (a lock nobody else sees; filelock 3.x
    # does not check this, 4.x does). Such a lock is not the one this path stands for.
    fd = getattr(getattr(lock, "_context", None), "lock_file_fd", None)
    if sys.platform != "win32" and isinstance(fd, int):
        try:
            current = os.path.samestat(os.fstat(fd), os.stat(path))
        except OSError:
            current = False
        if not current:
            lock.release()
            return None
    return lock


def _unlock(lock: FileLock, path: Path) -> None:
    """Release a lock taken by _try_lock and remove its file (on POSIX while it is still held, so
    nobody can take it in between and hold a lock on a file that is gone unnoticed)."""
    if sys.platform != "win32":
        try:
            path.unlink(missing_ok=True)
        finally:
            lock.release()
    else:                                 # an open file cannot be removed on Windows
        lock.release()
        try:
            path.unlink(missing_ok=True)
        except OSError:
            pass


def _lock_path(tmp: Path) -> Path:
    return tmp.with_name(tmp.name + LOCK_SUFFIX)


def _modified(st: os.stat_result) -> str:
    return dt.datetime.fromtimestamp(st.st_mtime).isoformat(timespec="seconds")


def _incomplete(tmp: Path) -> dict | None:
    """A .json.tmp for list: a create that did not finish, or one still writing (its lock is held)."""
    try:
        st = tmp.stat()
    except OSError:                       # finished or removed meanwhile
        return None
    try:
        lock = _try_lock(_lock_path(tmp))
        writing = lock is None
        if lock is not None:
            _unlock(lock, _lock_path(tmp))
    except OSError:                       # a folder this user may read but not write: cannot tell
        writing = False
    return {"id": tmp.name[:-len(TMP_SUFFIX)], "file": str(tmp), "bytes": st.st_size, "incomplete": True,
            "in_progress": writing, "modified_at": _modified(st)}


def _remove_leftovers(directory: Path) -> list[str]:
    """Remove the .json.tmp files of creates that did not finish (killed, power lost): those whose lock
    no running create holds. A file another process is writing is never touched. Returns their paths."""
    removed = []
    for tmp in sorted(directory.glob("*" + TMP_SUFFIX)):
        try:
            lock = _try_lock(_lock_path(tmp))
        except OSError as exc:
            log.warning("[CHECKPOINT] Could not check %s, left by a create that did not finish: %s", tmp, exc)
            continue
        if lock is None:                  # a create that is running
            continue
        try:
            st = tmp.stat()
            tmp.unlink()
        except FileNotFoundError:         # it finished (renamed) or was removed meanwhile
            continue
        except OSError as exc:
            log.warning("[CHECKPOINT] Could not remove %s, left by a create that did not finish: %s", tmp, exc)
            continue
        finally:
            _unlock(lock, _lock_path(tmp))
        log.info("[CHECKPOINT] Removed an incomplete checkpoint file (a create that did not finish): %s "
                 "(%d bytes, last written %s)", tmp, st.st_size, _modified(st).replace("T", " "))
        removed.append(str(tmp))
    # A lock file whose writer died before its .json.tmp was made (or after it was renamed).
    for lk in directory.glob("*" + TMP_SUFFIX + LOCK_SUFFIX):
        if not lk.with_name(lk.name[:-len(LOCK_SUFFIX)]).exists():
            try:
                lock = _try_lock(lk)
            except OSError:
                continue
            if lock is not None:
                _unlock(lock, lk)
    return removed


# --------------------------------------------------------------------------
# What a checkpoint covers: tables, their columns, sequences
# --------------------------------------------------------------------------
@dataclass
class TableDef:
    name: str
    columns: list[dict]              # {"name", "type"} of every stored column, in table order
    primary_key: list[str]
    always_identity: list[str] = field(default_factory=list)   # GENERATED ALWAYS (4.0+): OVERRIDING on insert
    select: list[str] = field(default_factory=list)            # how each column is read (see _select_expr)
    text_arrays: list[int] = field(default_factory=list)       # positions of ARRAY-of-text columns (NULL only)
    arrays: list[int] = field(default_factory=list)            # positions of the other ARRAY columns

    def header(self) -> dict:
        return {"table": self.name, "columns": self.columns, "primary_key": self.primary_key}


def _select_expr(col) -> str:
    """A column as create reads it (CHARACTER SET NONE text as bytes, restored exactly: Column.readable;
    an ARRAY as the driver reads it, a list of its elements; an ARRAY of text only as NULL or not, see
    _is_text_array)."""
    if _is_text_array(col):
        return f"IIF({quote_ident(col.name)} IS NULL, NULL, 1)"
    return quote_ident(col.name) if col.is_array else col.readable(quote_ident(col.name))


def _is_text_array(col) -> bool:
    """An ARRAY of CHAR/VARCHAR. firebird-driver 2.1 reads and writes its elements with the length of the
    column's own character set over fbaudit's UTF8 connection, which Firebird refuses ("string right
    truncation, expected length 1, actual 6" for CHAR(6)), measured on 3.0, 4.0 and 5.0: such a column
    is copied only where it is NULL (tests/test_checkpoint.py)."""
    return col.is_array and col.kind in ("text", "binary") and not col.is_blob


def _table_def(db: Database, name: str, *, commit: bool = True) -> TableDef:
    info = read_table(db, name, commit=commit)
    stored = [c for c in info.columns if c.auditable or c.is_array]     # COMPUTED BY columns hold no data
    cols = [{"name": c.name, "type": c.type} for c in stored]
    always = []
    if db.major >= 4:
        always = [r[0] for r in db.query(
            "SELECT TRIM(TRAILING FROM RDB$FIELD_NAME) FROM RDB$RELATION_FIELDS WHERE RDB$RELATION_NAME = ? "
            "AND RDB$IDENTITY_TYPE = 0", (name,))]
    return TableDef(name, cols, list(info.primary_key), always, [_select_expr(c) for c in stored],
                    [i for i, c in enumerate(stored) if _is_text_array(c)],
                    [i for i, c in enumerate(stored) if c.is_array and not _is_text_array(c)])


_DATE_EPOCH = dt.date(1858, 11, 17)      # firebird-driver 2.1 cannot write an ARRAY element before it


def _array_unwritable(value: Any) -> Any:
    """An element of an ARRAY value that firebird-driver would fail to write back (a date or timestamp
    before 1858-11-17: "can't convert negative int to unsigned"), else None."""
    for v in value:
        if isinstance(v, list):
            bad = _array_unwritable(v)
            if bad is not None:
                return bad
        elif isinstance(v, (dt.date, dt.datetime)) and (v.date() if isinstance(v, dt.datetime) else v) < _DATE_EPOCH:
            return v
    return None


def _user_tables(db: Database, prefix: str) -> list[str]:
    rows = db.query("SELECT TRIM(TRAILING FROM RDB$RELATION_NAME) FROM RDB$RELATIONS WHERE RDB$VIEW_BLR IS NULL "
                    "AND COALESCE(RDB$SYSTEM_FLAG, 0) = 0 AND COALESCE(RDB$RELATION_TYPE, 0) = 0 "
                    "ORDER BY RDB$RELATION_NAME")
    return [r[0] for r in rows if not r[0].startswith(prefix)]


def _audited_tables(db: Database, prefix: str) -> list[str]:
    if not table_exists(db, f"{prefix}LOG_TABLES"):
        return []
    return [r[0] for r in db.query(f"SELECT TRIM(TRAILING FROM TABLE_NAME) FROM {prefix}LOG_TABLES WHERE ENABLED = 1 "
                                   "ORDER BY NUM_TABLE") if table_exists(db, r[0])]


def _choose_tables(db: Database, config: Config, tables: list[str] | None, all_tables: bool) -> list[str]:
    if tables:
        names = []
        for t in tables:
            name = normalize_name(t)
            if not table_exists(db, name):
                read_table(db, name)          # raises the catalog's message ("did you mean ...")
            if name.startswith(config.prefix):
                raise CatalogError(f"{name!r} is one of fbaudit's own tables; checkpoints hold application data.")
            if name not in names:
                names.append(name)
        return names
    if all_tables:
        return _user_tables(db, config.prefix)
    names = _audited_tables(db, config.prefix)
    if not names:
        raise CheckpointError(f"No audited table in {db.spec.describe()}: name the tables (--tables A B) "
                              "or take every table (--all).")
    return names


def _sequences(db: Database, prefix: str, tables: list[str], all_sequences: bool) -> list[dict]:
    """The sequences a checkpoint restores: identity columns of its tables, the
    sequences their triggers use, and with --all every user sequence; never
    fbaudit's own (restoring those would re-use audit packet numbers)."""
    found: dict[str, dict] = {}
    for t in tables:
        for col, gen in db.query("SELECT TRIM(TRAILING FROM RDB$FIELD_NAME), TRIM(TRAILING FROM RDB$GENERATOR_NAME) FROM RDB$RELATION_FIELDS "
                                 "WHERE RDB$RELATION_NAME = ? AND RDB$GENERATOR_NAME IS NOT NULL", (t,)):
            found[gen] = {"name": gen, "identity": [t, col]}
        for (gen,) in db.query(
                "SELECT DISTINCT TRIM(TRAILING FROM d.RDB$DEPENDED_ON_NAME) FROM RDB$DEPENDENCIES d "
                "JOIN RDB$TRIGGERS tr ON tr.RDB$TRIGGER_NAME = d.RDB$DEPENDENT_NAME "
                "WHERE d.RDB$DEPENDENT_TYPE = 2 AND d.RDB$DEPENDED_ON_TYPE = 14 AND tr.RDB$RELATION_NAME = ?", (t,)):
            found.setdefault(gen, {"name": gen, "identity": None})
    if all_sequences:
        for (gen,) in db.query("SELECT TRIM(TRAILING FROM RDB$GENERATOR_NAME) FROM RDB$GENERATORS "
                               "WHERE COALESCE(RDB$SYSTEM_FLAG, 0) = 0 ORDER BY RDB$GENERATOR_NAME"):
            found.setdefault(gen, {"name": gen, "identity": None})
    return [s for name, s in sorted(found.items()) if not name.startswith(prefix)]


# --------------------------------------------------------------------------
# Writing
# --------------------------------------------------------------------------
class _Writer:
    """The checkpoint file being written: hashed as it goes, renamed into place at the end.

    ``<id>.json.tmp`` is created exclusively and ``<id>.json`` must not exist
    once it is: two fbaudit processes can never write, or publish, the same id.
    While it writes, the writer holds the lock ``<id>.json.tmp.lock`` (taken
    before the file is created, released after it is renamed or removed): a
    .json.tmp whose lock is free was left by a create that did not finish
    (kill -9, power lost), and the next create removes it (_remove_leftovers).
    """

    def __init__(self, path: Path):
        self.path = path
        self.tmp = path.with_name(path.name + ".tmp")
        self.lock_path = _lock_path(self.tmp)
        self.lock = _try_lock(self.lock_path)
        if self.lock is None:                  # another process is writing this id
            raise FileExistsError(self.tmp)
        try:
            # The rows are the application's data: readable by the owner only (like a password file).
            fd = os.open(self.tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o600)
        except BaseException:
            self.lock.release()                # (a leftover .json.tmp of this id: its lock file stays with it)
            raise
        self.fh = os.fdopen(fd, "wb")
        if path.exists():                      # published by another process meanwhile
            self.abort()
            raise FileExistsError(path)
        self.hash = hashlib.sha256()
        self.write_raw(b"[\n")

    @classmethod
    def new(cls, directory: Path, base: str) -> "_Writer":
        """A writer for the first free id ``base``, ``base_2``, ``base_3`` ..."""
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        if not directory.is_dir():
            raise NotADirectoryError(f"{directory} is not a folder")
        while True:
            try:
                return cls(directory / f"{_free_id(directory, base)}.json")
            except FileExistsError:     # taken by another process between the look and the create
                pass

    @property
    def id(self) -> str:
        return self.path.stem

    def write_raw(self, data: bytes) -> None:
        self.fh.write(data)
        self.hash.update(data)

    def write(self, obj: Any) -> None:
        self.write_raw(_line(obj))

    def finish(self) -> None:
        self.fh.write(json.dumps({"checksum": "sha256:" + self.hash.hexdigest()}).encode() + b"\n]\n")
        self.fh.flush()
        os.fsync(self.fh.fileno())
        self.fh.close()
        if self.path.exists():
            raise CheckpointError(f"{self.path} appeared while it was written; the new file is kept as {self.tmp}")
        os.replace(self.tmp, self.path)
        self._unlock()

    def abort(self) -> None:
        self.fh.close()
        try:
            self.tmp.unlink(missing_ok=True)
        finally:
            self._unlock()

    def _unlock(self) -> None:
        if self.lock is not None:
            lock, self.lock = self.lock, None
            _unlock(lock, self.lock_path)


def _write_checkpoint(db: Database, config: Config, spec: SourceSpec, *, base: str, kind: str,
                      description: str | None, defs: list[TableDef], sequences: list[dict],
                      restore_of: str | None = None) -> dict:
    """Write a checkpoint (id ``base``, or with a suffix when taken) from the transaction
    that is active on ``db`` (one consistent read).

    ``defs`` were read before that transaction: reading the catalog commits.
    """
    tables = [d.name for d in defs]
    try:
        writer = _Writer.new(config.checkpoint_dir, base)
    except OSError as exc:
        raise CheckpointError(f"Cannot write a checkpoint file in {config.checkpoint_dir}: {exc}. Nothing was "
                              "changed; check the folder (checkpoints.dir) and its free space.") from None
    cid, path = writer.id, writer.path
    started = time.monotonic()
    log.info(SEPARATOR)
    log.info("[CHECKPOINT] Starting checkpoint creation: %s", cid)
    if description:
        log.info("[CHECKPOINT] Description: %s", description)
    log.info(SEPARATOR)
    log.info("[CHECKPOINT] Found %d tables to backup: %s", len(tables), ", ".join(tables))
    summary: dict[str, dict] = {}
    total = 0
    try:
        _remove_leftovers(config.checkpoint_dir)      # after the writer is made: its own file is locked, kept
        writer.write({"fbaudit_checkpoint": FORMAT_VERSION, "id": cid, "kind": kind, "description": description,
                      "created_at": dt.datetime.now().isoformat(timespec="seconds"), "source": spec.name,
                      "database": spec.database, "firebird": db.version, "tables": tables,
                      "restore_of": restore_of})
        n = len(defs)
        for i, tdef in enumerate(defs, 1):
            log.info("[CHECKPOINT] [%d/%d] Processing table: %s", i, n, tdef.name)
            log.info("[CHECKPOINT] Backing up table: %s", tdef.name)
            writer.write(tdef.header())
            rows = 0
            cols = ", ".join(tdef.select)
            cur = db.con.cursor()
            cur.stream_blob_threshold = -1            # BLOBs whole, one row at a time
            try:
                cur.execute(f"SELECT {cols} FROM {quote_ident(tdef.name)}")
                enc = encode_value
                for row in cur:
                    for i in tdef.text_arrays:
                        if row[i] is not None:
                            column = tdef.columns[i]["name"]
                            raise CheckpointError(
                                f"Table {tdef.name}, row {rows + 1}: {column} is an ARRAY of text with a value; "
                                f"fbaudit's driver (firebird-driver) cannot read or write text ARRAY elements "
                                f"exactly over its UTF8 connection, so this checkpoint could not be restored. "
                                f"Only NULL values of such a column are copied; leave {tdef.name} out (--tables) "
                                f"or set {column} to NULL. Nothing was written.")
                    for i in tdef.arrays:
                        bad = _array_unwritable(row[i]) if row[i] is not None else None
                        if bad is not None:
                            raise CheckpointError(
                                f"Table {tdef.name}, row {rows + 1}: {tdef.columns[i]['name']} holds {bad}, an ARRAY "
                                f"element before 1858-11-17, which fbaudit's driver (firebird-driver) cannot write "
                                f"back, so this checkpoint could not be restored. Leave {tdef.name} out (--tables). "
                                f"Nothing was written.")
                    writer.write([enc(v) for v in row])
                    rows += 1
            except (DriverDatabaseError, DriverInterfaceError) as exc:
                raise wrap(exc, spec) from exc
            except UnicodeDecodeError as exc:
                raise CheckpointError(f"Table {tdef.name}, row {rows + 1}: text that is not valid in its character "
                                      f"set ({exc}); nothing was written.") from None
            except OSError as exc:
                raise CheckpointError(f"Cannot write {writer.tmp}: {exc}. Nothing was changed; check the free "
                                      "space of the checkpoint folder.") from None
            finally:
                cur.close()
            writer.write({"end_table": tdef.name, "rows": rows})
            summary[tdef.name] = {"rows": rows, "columns": len(tdef.columns)}
            total += rows
            log.info("[CHECKPOINT] Backup complete: %s - %d rows, %d columns", tdef.name, rows, len(tdef.columns))
            log.info("[CHECKPOINT] [%d/%d] Table %s backed up: %d rows", i, n, tdef.name, rows)
        # Sequences last: they only grow, so values read now are >= any the copied rows used.
        for s in sequences:
            s["value"] = db.scalar(f"SELECT GEN_ID({quote_ident(s['name'])}, 0) FROM RDB$DATABASE")
        writer.write({"sequences": sequences})
        writer.write({"summary": {"tables": summary, "total_rows": total,
                                  "finished_at": dt.datetime.now().isoformat(timespec="seconds")}})
        if kind != "auto_backup":          # an auto-backup reads inside the restore's transaction
            log.info("[CHECKPOINT] All tables backed up successfully, committing transaction...")
            db.commit()
            log.info("[CHECKPOINT] Transaction committed")
        log.info("[CHECKPOINT] Saving checkpoint file: %s", path)
        try:
            writer.finish()
        except OSError as exc:
            raise CheckpointError(f"Cannot write {path}: {exc}. Nothing was changed; check the free space of the "
                                  "checkpoint folder.") from None
    except BaseException:
        writer.abort()
        raise
    log.info(SEPARATOR)
    log.info("[CHECKPOINT] Checkpoint creation COMPLETED: %s", cid)
    log.info("[CHECKPOINT] Total rows backed up: %d", total)
    log.info("[CHECKPOINT] File: %s", path)
    log.info(SEPARATOR)
    return {"id": cid, "file": str(path), "kind": kind, "description": description, "source": spec.name,
            "tables": summary, "total_rows": total, "sequences": len(sequences),
            "bytes": path.stat().st_size, "seconds": round(time.monotonic() - started, 3)}


def create(config: Config, *, source: str | None = None, description: str | None = None,
           tables: list[str] | None = None, all_tables: bool = False) -> dict:
    """Write a checkpoint of ``tables`` (default: the audited tables; ``all_tables``: every user
    table and sequence) from one read-only SNAPSHOT transaction. Returns what was written."""
    spec = one_source(config, source, error=CheckpointError)
    _refuse_unsafe_folder(config)
    base = dt.datetime.now().strftime("checkpoint_%Y%m%d_%H%M%S")
    with open_source(config, spec, isolation=Isolation.SNAPSHOT, read_only=True) as db:
        names = _choose_tables(db, config, tables, all_tables)
        defs = [_table_def(db, t) for t in names]
        unrestorable = _restore_problems(db, config.prefix, defs)
        db.commit()
        # One consistent view of every table from here to the end (read-only: blocks nobody).
        seqs = _sequences(db, config.prefix, names, all_tables)
        made = _write_checkpoint(db, config, spec, base=base, kind="checkpoint", description=description,
                                 defs=defs, sequences=seqs)
    made["warnings"] = [unrestorable] if unrestorable else []
    return made


# --------------------------------------------------------------------------
# Reading
# --------------------------------------------------------------------------
@dataclass
class TableSection:
    header: dict
    offset: int                # byte offset of its first row line
    rows: int

    @property
    def name(self) -> str:
        return self.header["table"]


@dataclass
class Checkpoint:
    """A checkpoint file that passed verification."""

    path: Path
    header: dict
    tables: list[TableSection]
    sequences: list[dict]
    summary: dict

    @property
    def id(self) -> str:
        return self.header["id"]

    def table(self, name: str) -> TableSection:
        return next(t for t in self.tables if t.name == name)

    def rows(self, name: str) -> Iterator[list]:
        """The rows of one table, streamed from the file."""
        sec = self.table(name)
        with open(self.path, "rb") as fh:
            fh.seek(sec.offset)
            for _ in range(sec.rows):
                yield decode_row(fh.readline()[:-2])

    def describe(self) -> dict:
        return {"id": self.id, "file": str(self.path), "kind": self.header.get("kind"),
                "description": self.header.get("description"), "created_at": self.header.get("created_at"),
                "source": self.header.get("source"), "firebird": self.header.get("firebird"),
                "tables": {t.name: {"rows": t.rows, "columns": len(t.header["columns"])} for t in self.tables},
                "total_rows": self.summary.get("total_rows"), "sequences": len(self.sequences),
                "bytes": self.path.stat().st_size, "restore_of": self.header.get("restore_of")}


def _damaged(path: Path, why: str) -> CheckpointError:
    return CheckpointError(f"Checkpoint file {path} is damaged: {why}. Nothing was changed; "
                           "restore another checkpoint (`fbaudit checkpoint list`).")


def verify(path: Path) -> Checkpoint:
    """Read the whole file once (streaming): checksum, structure, row counts. CheckpointError if damaged."""
    h = hashlib.sha256()
    tables: list[TableSection] = []
    header = summary = None
    sequences: list[dict] | None = None
    current: TableSection | None = None
    width = 0
    offset = 0
    checksum = None
    lineno = 0
    try:
        with open(path, "rb") as fh:
            first = fh.readline()
            if first != b"[\n":
                raise _damaged(path, "it does not start like an fbaudit checkpoint")
            h.update(first)
            offset = len(first)
            lineno = 1
            for line in fh:
                lineno += 1
                if checksum is not None:
                    if line != b"]\n":
                        raise _damaged(path, f"unexpected data after the checksum (line {lineno})")
                    checksum = checksum + "/closed"
                    continue
                if line.startswith(b'{"checksum"'):
                    try:
                        checksum = json.loads(line)["checksum"]
                    except (ValueError, KeyError):
                        raise _damaged(path, f"unreadable checksum line {lineno}") from None
                    if checksum != "sha256:" + h.hexdigest():
                        raise _damaged(path, "its checksum does not match its content (changed or cut after it "
                                             "was written)")
                    continue
                h.update(line)
                if not line.endswith(b",\n"):
                    raise _damaged(path, f"line {lineno} is cut short")
                body = line[:-2]
                if body.startswith(b"["):
                    if current is None:
                        raise _damaged(path, f"row outside a table section at line {lineno}")
                    try:
                        row = json.loads(body)          # structure only: values are decoded when restored
                    except ValueError as exc:
                        raise _damaged(path, f"line {lineno} is not valid JSON ({exc})") from None
                    if not isinstance(row, list) or len(row) != width:
                        raise _damaged(path, f"line {lineno}: a row of {current.name} with "
                                             f"{len(row) if isinstance(row, list) else '?'} values, expected {width}")
                    current.rows += 1
                else:
                    try:
                        obj = json.loads(body)
                    except ValueError as exc:
                        raise _damaged(path, f"line {lineno} is not valid JSON ({exc})") from None
                    if header is None:
                        if obj.get("fbaudit_checkpoint") != FORMAT_VERSION:
                            raise _damaged(path, f"format {obj.get('fbaudit_checkpoint')!r} is not "
                                                 f"fbaudit checkpoint format {FORMAT_VERSION}")
                        header = obj
                    elif "table" in obj:
                        current = TableSection(obj, offset + len(line), 0)
                        width = len(obj["columns"])
                        tables.append(current)
                    elif "end_table" in obj:
                        if current is None or obj["end_table"] != current.name or obj["rows"] != current.rows:
                            raise _damaged(path, f"line {lineno}: table {obj.get('end_table')} ends with "
                                                 f"{obj.get('rows')} rows, {current.rows if current else 0} were read")
                        current = None
                    elif "sequences" in obj:
                        sequences = obj["sequences"]
                    elif "summary" in obj:
                        summary = obj["summary"]
                offset += len(line)
    except (KeyError, TypeError, AttributeError, IndexError) as exc:
        raise _damaged(path, f"line {lineno} has an unexpected structure ({type(exc).__name__}: {exc})") from None
    if checksum is None or not checksum.endswith("/closed"):
        raise _damaged(path, "it ends before its checksum (cut short)")
    if header is None or summary is None or sequences is None or current is not None:
        raise _damaged(path, "a part is missing (header, table end, sequences or summary)")
    if [t.name for t in tables] != header.get("tables"):
        raise _damaged(path, "its tables do not match its header")
    return Checkpoint(path, header, tables, sequences, summary)


def _peek(path: Path) -> dict:
    """Header and summary of a checkpoint file without reading it whole (for list)."""
    out: dict[str, Any] = {"id": path.stem, "file": str(path), "bytes": path.stat().st_size}
    try:
        with open(path, "rb") as fh:
            fh.readline()
            header = json.loads(fh.readline()[:-2])
            summary = None
            tail = 65536
            while summary is None:          # the summary is the line before the checksum
                fh.seek(max(0, out["bytes"] - tail))
                lines = fh.read().split(b"\n")
                summary = next((json.loads(x[:-1])["summary"] for x in reversed(lines[1:] if tail < out["bytes"]
                                                                                 else lines)
                                if x.startswith(b'{"summary"')), None)
                if summary is None and tail >= out["bytes"]:
                    raise ValueError("no summary")
                tail *= 16
        out.update(kind=header.get("kind"), description=header.get("description"),
                   created_at=header.get("created_at"), source=header.get("source"),
                   tables=len(header.get("tables") or []), total_rows=summary.get("total_rows"),
                   restore_of=header.get("restore_of"))
    except (ValueError, StopIteration, OSError, KeyError, TypeError, AttributeError):
        out["damaged"] = True
    failed = path.with_name(path.stem + FAILED_SUFFIX)
    if failed.is_file():
        try:
            out["failed_restore"] = json.loads(failed.read_text(encoding="utf-8"))
        except (ValueError, OSError):
            out["failed_restore"] = {}
    return out


def list_checkpoints(config: Config) -> list[dict]:
    """Every checkpoint in the folder, oldest first (header and summary only, checksums not verified),
    and every file of a create that did not finish (``"incomplete": true``; ``"in_progress": true``
    while a running create is still writing it)."""
    d = config.checkpoint_dir
    if not d.is_dir():
        return []
    why = _unsafe(d, folder=True)
    if why:
        log.warning("[CHECKPOINT] %s. `fbaudit checkpoint create` and `restore` refuse this folder until then.", why)
    items = [_peek(p) for p in d.glob("*.json")]
    items += [it for it in map(_incomplete, d.glob("*" + TMP_SUFFIX)) if it]
    return sorted(items, key=lambda x: (x.get("created_at") or x.get("modified_at") or "", x["id"]))


def show(config: Config, checkpoint_id: str) -> dict:
    """One checkpoint, verified: its tables, rows, sequences."""
    cp = verify(_path(config, checkpoint_id))
    out = cp.describe()
    out["valid"] = True
    out["sequence_values"] = {s["name"]: s["value"] for s in cp.sequences}
    return out


def delete(config: Config, checkpoint_id: str) -> dict:
    """Delete a checkpoint (and the note of a failed restore beside it), or the file of a create that
    did not finish; never one that a running create is still writing."""
    name = _name(checkpoint_id)
    tmp = config.checkpoint_dir / f"{name}{TMP_SUFFIX}"
    if tmp.exists() and not (config.checkpoint_dir / f"{name}.json").exists():
        try:
            lock = _try_lock(_lock_path(tmp))
        except OSError as exc:
            raise CheckpointError(f"Cannot delete {tmp}: {exc}. Nothing was deleted.") from None
        if lock is None:
            raise CheckpointError(f"{tmp} is not finished: a create that is still running is writing it. "
                                  "Nothing was deleted; it becomes a checkpoint when that create ends (or, if it "
                                  "fails, is removed by it).")
        try:
            tmp.unlink()
        except OSError as exc:
            raise CheckpointError(f"Cannot delete {tmp}: {exc}. Nothing was deleted.") from None
        finally:
            _unlock(lock, _lock_path(tmp))
        log.info("[CHECKPOINT] Deleted incomplete checkpoint file (a create that did not finish): %s (%s)", name, tmp)
        return {"id": name, "file": str(tmp), "deleted": True, "incomplete": True}
    path = _path(config, checkpoint_id)
    path.unlink()
    path.with_name(path.stem + FAILED_SUFFIX).unlink(missing_ok=True)
    log.info("[CHECKPOINT] Deleted checkpoint: %s (%s)", path.stem, path)
    return {"id": path.stem, "file": str(path), "deleted": True}


# --------------------------------------------------------------------------
# Restore order: foreign keys, cycles
# --------------------------------------------------------------------------
@dataclass
class ForeignKey:
    name: str
    child: str
    parent: str
    columns: list[str]
    parent_columns: list[str]
    nullable: bool
    delete_rule: str


def foreign_keys(db: Database) -> list[ForeignKey]:
    """Every foreign key of the database (user tables)."""
    rows = db.query(
        "SELECT TRIM(TRAILING FROM rc.RDB$CONSTRAINT_NAME), TRIM(TRAILING FROM rc.RDB$RELATION_NAME), TRIM(TRAILING FROM uq.RDB$RELATION_NAME), "
        "TRIM(TRAILING FROM rc.RDB$INDEX_NAME), TRIM(TRAILING FROM uq.RDB$INDEX_NAME), TRIM(ref.RDB$DELETE_RULE) "
        "FROM RDB$RELATION_CONSTRAINTS rc "
        "JOIN RDB$REF_CONSTRAINTS ref ON ref.RDB$CONSTRAINT_NAME = rc.RDB$CONSTRAINT_NAME "
        "JOIN RDB$RELATION_CONSTRAINTS uq ON uq.RDB$CONSTRAINT_NAME = ref.RDB$CONST_NAME_UQ "
        "WHERE rc.RDB$CONSTRAINT_TYPE = 'FOREIGN KEY' ORDER BY 2, 1")
    segs: dict[str, list[str]] = {}
    for idx, col in db.query("SELECT TRIM(TRAILING FROM RDB$INDEX_NAME), TRIM(TRAILING FROM RDB$FIELD_NAME) FROM RDB$INDEX_SEGMENTS "
                             "ORDER BY RDB$INDEX_NAME, RDB$FIELD_POSITION"):
        segs.setdefault(idx, []).append(col)
    notnull = not_null_columns(db)
    out = []
    for name, child, parent, idx, uq_idx, rule in rows:
        cols = segs.get(idx, [])
        out.append(ForeignKey(name, child, parent, cols, segs.get(uq_idx, []),
                              not any((child, c) in notnull for c in cols), rule or "RESTRICT"))
    return out


def check_reads(db: Database, tables: list[str]) -> list[ForeignKey]:
    """CHECK constraints of ``tables`` that read columns of other tables among them (EMPLOYEE's SALES
    INTEG_80 reads CUSTOMER.ON_HOLD). Firebird checks a row only when it is written, so stored rows can
    hold although their CHECK would refuse them now; inserted again, parents first, they fail. The
    columns such a CHECK reads are therefore inserted NULL and set after every table (as a cycle's
    foreign keys are): each is returned as a ForeignKey from the read table (``child``) to the checking
    one (``parent``), for the read columns that may be NULL and are no part of the primary key."""
    inside = set(tables)
    rows = db.query(
        "SELECT DISTINCT TRIM(TRAILING FROM rc.RDB$CONSTRAINT_NAME), TRIM(TRAILING FROM rc.RDB$RELATION_NAME), TRIM(TRAILING FROM d.RDB$DEPENDED_ON_NAME), "
        "TRIM(TRAILING FROM d.RDB$FIELD_NAME) FROM RDB$RELATION_CONSTRAINTS rc "
        "JOIN RDB$CHECK_CONSTRAINTS cc ON cc.RDB$CONSTRAINT_NAME = rc.RDB$CONSTRAINT_NAME "
        "JOIN RDB$DEPENDENCIES d ON d.RDB$DEPENDENT_NAME = cc.RDB$TRIGGER_NAME AND d.RDB$DEPENDED_ON_TYPE = 0 "
        "WHERE rc.RDB$CONSTRAINT_TYPE = 'CHECK' AND d.RDB$DEPENDED_ON_NAME <> rc.RDB$RELATION_NAME "
        "AND d.RDB$FIELD_NAME IS NOT NULL")
    notnull = not_null_columns(db)
    keys: dict[str, set[str]] = {}
    for t, c in db.query("SELECT TRIM(TRAILING FROM rc.RDB$RELATION_NAME), TRIM(TRAILING FROM s.RDB$FIELD_NAME) FROM RDB$RELATION_CONSTRAINTS rc "
                         "JOIN RDB$INDEX_SEGMENTS s ON s.RDB$INDEX_NAME = rc.RDB$INDEX_NAME "
                         "WHERE rc.RDB$CONSTRAINT_TYPE IN ('PRIMARY KEY', 'UNIQUE')"):
        keys.setdefault(t, set()).add(c)
    found: dict[tuple[str, str, str], list[str]] = {}
    for name, checking, read, column in rows:
        if checking in inside and read in inside and (read, column) not in notnull \
                and column not in keys.get(read, set()):
            found.setdefault((name, checking, read), []).append(column)
    return [ForeignKey(f"{name} (CHECK of {checking})", read, checking, sorted(cols), [], True, "RESTRICT")
            for (name, checking, read), cols in sorted(found.items())]


@dataclass
class Plan:
    order: list[str]                      # insert order (parents first); deletes run in reverse
    deferred: list[ForeignKey]            # set NULL before the delete, filled in after every insert
    dependencies: list[ForeignKey]        # foreign keys between restored tables
    outside: list[ForeignKey]             # foreign keys into restored tables from other tables


def restore_order(tables: list[str], fks: list[ForeignKey]) -> Plan:
    """Parents before children. Self-references and cycles are broken at nullable
    foreign keys: those columns are inserted NULL and filled in after every table is
    loaded. A cycle through NOT NULL foreign keys only cannot be ordered."""
    inside = set(tables)
    deps = [fk for fk in fks if fk.child in inside and fk.parent in inside]
    outside = [fk for fk in fks if fk.parent in inside and fk.child not in inside]
    edges = {t: set() for t in tables}              # child -> parents
    for fk in deps:
        edges[fk.child].add(fk.parent)
    sccs = _strongly_connected(tables, edges)
    comp = {t: i for i, c in enumerate(sccs) for t in c}
    deferred = [fk for fk in deps if comp[fk.child] == comp[fk.parent] and fk.nullable]
    selfish = [fk for fk in deps if fk.child == fk.parent and not fk.nullable]
    if selfish:
        raise CheckpointError("; ".join(f"{fk.child} references itself through the NOT NULL column(s) "
                                        f"{', '.join(fk.columns)} ({fk.name})" for fk in selfish)
                              + ": its rows cannot be deleted and inserted again in any order. Nothing was changed.")
    hard = {t: {fk.parent for fk in deps if fk.child == t and fk not in deferred and fk.parent != t}
            for t in tables}
    # Kahn's algorithm over the remaining edges, ties broken by the checkpoint's order.
    order: list[str] = []
    done: set[str] = set()
    pending = list(tables)
    while pending:
        ready = next((t for t in pending if hard[t] <= done), None)
        if ready is None:
            cycle = ", ".join(pending)
            raise CheckpointError(f"Tables {cycle} reference each other through NOT NULL foreign keys only; "
                                  "no insert order exists. Make one of those foreign key columns nullable.")
        order.append(ready)
        done.add(ready)
        pending.remove(ready)
    return Plan(order, deferred, deps, outside)


def _strongly_connected(nodes: list[str], edges: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's algorithm, iterative (no recursion limit on long FK chains)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []
    counter = 0
    for root in nodes:
        if root in index:
            continue
        work = [(root, iter(sorted(edges[root])))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on.add(root)
        while work:
            v, it = work[-1]
            nxt = next(it, None)
            if nxt is not None:
                if nxt not in index:
                    index[nxt] = low[nxt] = counter
                    counter += 1
                    stack.append(nxt)
                    on.add(nxt)
                    work.append((nxt, iter(sorted(edges[nxt]))))
                elif nxt in on:
                    low[v] = min(low[v], index[nxt])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[v])
            if low[v] == index[v]:
                comp = []
                while True:
                    w = stack.pop()
                    on.discard(w)
                    comp.append(w)
                    if w == v:
                        break
                out.append(comp)
    return out


# --------------------------------------------------------------------------
# Restore
# --------------------------------------------------------------------------
def schema_differences(db: Database, cp: Checkpoint, *, commit: bool = True) -> list[str]:
    """What differs between the checkpoint's tables and the database's (empty: they match)."""
    diffs = []
    for sec in cp.tables:
        name = sec.name
        if not table_exists(db, name):
            diffs.append(f"table {name} no longer exists")
            continue
        now = {c["name"]: c["type"] for c in _table_def(db, name, commit=commit).columns}
        then = {c["name"]: c["type"] for c in sec.header["columns"]}
        for c, t in then.items():
            if c not in now:
                diffs.append(f"{name}.{c} ({t}) no longer exists")
            elif now[c] != t:
                diffs.append(f"{name}.{c} was {t}, is now {now[c]}")
        for c, t in now.items():
            if c not in then:
                diffs.append(f"{name}.{c} ({t}) was added after the checkpoint")
    return diffs


def _restore_tpb(tables: list[str], lock_timeout: int) -> bytes:
    t = TPB(isolation=Isolation.SNAPSHOT, lock_timeout=lock_timeout, access_mode=TraAccessMode.WRITE)
    for name in tables:
        t.reserve_table(name, TableShareMode.PROTECTED, TableAccessMode.LOCK_WRITE)
    return t.get_buffer()


def _audit_numbers(db: Database, prefix: str, tables: list[str]) -> dict[str, int]:
    if not table_exists(db, f"{prefix}LOG_TABLES"):
        return {}
    return {name: num for num, name in db.query(f"SELECT NUM_TABLE, TRIM(TRAILING FROM TABLE_NAME) FROM {prefix}LOG_TABLES "
                                                "WHERE ENABLED = 1")
            if name in tables}


def _check_event_mode(db: Database, prefix: str, audited: dict[str, int]) -> None:
    """audit="event" needs triggers that honour the restore's quiet marker (fbaudit init + sync)."""
    if not audited:
        return
    if not table_exists(db, f"{prefix}LOG_QUIET"):
        raise CheckpointError(f"--audit event needs the table {prefix}LOG_QUIET: run `fbaudit init`, then "
                              "`fbaudit sync` (nothing was changed).")
    old = [t for t, num in audited.items() if "FBAUDIT_QUIET" not in (installed_trigger_body(db, prefix, num) or "")]
    if old:
        raise CheckpointError(f"--audit event: the audit trigger of {', '.join(old)} is older than this fbaudit; "
                              "run `fbaudit sync` first (nothing was changed).")


def restore(config: Config, checkpoint_id: str, *, source: str | None = None, auto_backup: bool = True,
            audit: str = "rows", lock_timeout: int = LOCK_TIMEOUT, progress_stream=None) -> dict:
    """Restore a checkpoint in ONE transaction: verify the file and the schema, reserve the
    tables for protected write, auto-backup them from inside that transaction, delete the
    rows children first, insert them parents first, fill in deferred foreign keys, set the
    sequences, commit. On any failure: rollback, and the log says how to recover."""
    if audit not in AUDIT_MODES:
        raise CheckpointError(f"audit must be one of {', '.join(AUDIT_MODES)}, not {audit!r}")
    spec = one_source(config, source, error=CheckpointError)
    started = time.monotonic()
    where = {"at": "before the restore"}       # what the restore is doing, for the error message
    backup_id = None
    cid = checkpoint_id
    db = None
    try:
        _refuse_unsafe_folder(config)
        path = _path(config, checkpoint_id)
        why = _unsafe(path, folder=False)
        if why:
            raise CheckpointError(f"{why}. Nothing was changed.")
        cp = verify(path)
        cid = cp.id
        _refuse_own_objects(cp, config)
        if cp.header.get("source") not in (None, spec.name):
            raise CheckpointError(f"Checkpoint {cp.id} was taken from source {cp.header['source']!r}, not "
                                  f"{spec.name!r}; name that source with --source.")
        tables = [t.name for t in cp.tables]
        backup_base = f"auto_backup_before_restore_{cp.id}"
        log.warning(SEPARATOR)
        log.warning("[CHECKPOINT] WARNING: Starting restore operation: %s", cp.id)
        log.warning("[CHECKPOINT] This will OVERWRITE all existing data in the database!")
        log.warning(SEPARATOR)
        db = open_source(config, spec, isolation=Isolation.SNAPSHOT, lock_timeout=lock_timeout)
        _refuse_schema_differences(db, cp, spec)
        log.info("[CHECKPOINT] Checkpoint details:")
        log.info("[CHECKPOINT] ID: %s", cp.id)
        log.info("[CHECKPOINT] Tables: %d", len(tables))
        log.info("[CHECKPOINT] Total rows: %d", cp.summary.get("total_rows", 0))
        log.info("[CHECKPOINT] Auto-backup: %s",
                 f"Yes ({_free_id(config.checkpoint_dir, backup_base)})" if auto_backup else "No")
        log.info(SEPARATOR)
        log.info("[CHECKPOINT] Building table dependency graph...")
        plan = _plan(db, cp, tables)
        log.info("[CHECKPOINT] Found %d table dependencies", len(plan.dependencies))
        _refuse_outside_references(db, plan)
        log.info("[CHECKPOINT] Calculating restore order...")
        log.info("[CHECKPOINT] Restore order: %s", " -> ".join(plan.order))
        cycles = [fk for fk in plan.deferred if fk.parent_columns]
        if cycles:
            log.info("[CHECKPOINT] Cycles broken at: %s (inserted NULL, filled in after all tables)",
                     ", ".join(f"{fk.child}.{'+'.join(fk.columns)} -> {fk.parent}" for fk in cycles))
        checked = [fk for fk in plan.deferred if not fk.parent_columns]
        if checked:
            log.info("[CHECKPOINT] Read by CHECK constraints of other tables: %s (inserted NULL, set after all "
                     "tables, as when the rows were first written)",
                     ", ".join(f"{fk.child}.{'+'.join(fk.columns)} by {fk.name}" for fk in checked))
        keyless = sorted({fk.child for fk in plan.deferred if not cp.table(fk.child).header.get("primary_key")})
        if keyless:
            raise CheckpointError(f"{', '.join(keyless)}: a self-reference or cycle is broken by filling the "
                                  "foreign key in after the insert, which needs a primary key to find the rows; "
                                  "nothing was changed.")
        audited = _audit_numbers(db, config.prefix, tables)
        if audit == "event":
            _check_event_mode(db, config.prefix, audited)
        db.commit()
        log.info("[CHECKPOINT] Acquiring exclusive locks on all tables...")
        try:
            db.con.begin(_restore_tpb(tables, lock_timeout))
        except (DriverDatabaseError, DriverInterfaceError) as exc:
            raise CheckpointError(f"Could not reserve the tables for the restore within {lock_timeout} s: another "
                                  "transaction is writing one of them. Nothing was changed; try again when it "
                                  f"has ended.\n  {wrap(exc, spec)}") from exc
        log.info("[CHECKPOINT] All tables locked exclusively")
        # Everything checked above, again inside the reserved transaction (without a commit): a
        # column added or a foreign key changed since then would otherwise go unnoticed.
        _refuse_schema_differences(db, cp, spec, commit=False)
        plan = _plan(db, cp, tables)
        _refuse_outside_references(db, plan)
        defs = {t: _table_def(db, t, commit=False) for t in tables}
        seq_names = _sequence_targets(db, cp)
        triggers = _user_triggers(db, config.prefix, tables)
        if triggers:
            log.warning("[CHECKPOINT] These triggers run for every restored row and may change the values "
                        "it writes: %s", ", ".join(triggers))
        if auto_backup:
            where["at"] = "writing the auto-backup"
            log.info("[CHECKPOINT] Creating auto-backup before restore...")
            backup = _write_checkpoint(db, config, spec, base=backup_base, kind="auto_backup",
                                       description=f"automatic backup before restoring {cp.id}",
                                       defs=[defs[t] for t in tables],
                                       sequences=[{"name": name, "identity": s.get("identity")}
                                                  for (name, _), s in zip(seq_names, cp.sequences)],
                                       restore_of=cp.id)
            backup_id = backup["id"]
            log.info("[CHECKPOINT] Auto-backup created: %s", backup_id)
            log.info("[CHECKPOINT] Auto-backup contains %d rows", backup["total_rows"])
            log.info(SEPARATOR)
        where["at"] = "starting the restore"
        result = _apply(db, config, cp, plan, defs, audit=audit, audited=audited, seq_names=seq_names,
                        progress_stream=progress_stream, where=where)
        log.info(SEPARATOR)
        log.info("[CHECKPOINT] All tables restored successfully, committing transaction...")
        where["at"] = "committing"
        db.commit()
        log.info("[CHECKPOINT] Transaction committed successfully")
        log.info(SEPARATOR)
    except BaseException as exc:
        err = _restore_failed(exc, db, cid, where["at"], started, backup_id, spec)
        if backup_id:
            _mark_failed_restore(config, backup_id, cid, err)
        raise err from None
    db.close()
    log.info(SEPARATOR)
    log.info("[CHECKPOINT] RESTORE COMPLETED SUCCESSFULLY: %s", cp.id)
    log.info("[CHECKPOINT] Tables restored: %d/%d", len(result["tables"]), len(tables))
    log.info("[CHECKPOINT] Total rows restored: %d", result["total_rows"])
    if backup_id:
        log.info("[CHECKPOINT] Auto-backup available: %s", backup_id)
    log.info(SEPARATOR)
    result.update(id=cp.id, auto_backup=backup_id, audit=audit, order=plan.order,
                  seconds=round(time.monotonic() - started, 3), trigger_warnings=triggers)
    return result


FAILED_SUFFIX = ".restore-failed"
GDS_CHECK = 335544558          # check_constraint: "Operation violates CHECK constraint ..."


def _mark_failed_restore(config: Config, backup_id: str, cid: str, err: BaseException) -> None:
    """Beside an auto-backup whose restore failed and was rolled back: a note saying so (list shows it)."""
    note = {"restore_of": cid, "failed_at": dt.datetime.now().astimezone().isoformat(timespec="seconds"),
            "error": (str(err).splitlines() or [type(err).__name__])[0]}
    try:
        path = config.checkpoint_dir / f"{backup_id}{FAILED_SUFFIX}"
        path.write_text(json.dumps(note, ensure_ascii=False), encoding="utf-8")
        path.chmod(0o600)
    except OSError as exc:            # the restore's own error matters more than this note
        log.warning("[CHECKPOINT] Could not mark %s as the backup of a failed restore: %s", backup_id, exc)


def _restore_failed(exc: BaseException, db: Database | None, cid: str, at: str, started: float,
                    backup_id: str | None, spec: SourceSpec) -> BaseException:
    """Roll back, log the guide's failure lines; return the error to raise for the user."""
    failed_at = time.monotonic()
    refused = at == "before the restore"        # a refusal: nothing was started
    if isinstance(exc, (DriverDatabaseError, DriverInterfaceError)):
        err = wrap(exc, spec)
        why = ("; a CHECK constraint refused the row as the checkpoint holds it. Firebird checks a row only when "
               "it is written, so a row stored before the constraint was added, or one whose CHECK reads other "
               "rows that changed since, can fail when written again: correct that row (or the constraint) and "
               "restore again") if GDS_CHECK in err.gds_codes else ""
        exc = CheckpointError(f"Restore of {cid} failed {at} and was rolled back (nothing was changed): {err}{why}")
    elif not refused and isinstance(exc, FbauditError) and not isinstance(exc, CheckpointError):
        wrapped = CheckpointError(f"Restore of {cid} failed {at} and was rolled back (nothing was changed): {exc}")
        wrapped.exit_code = exc.exit_code          # a lost connection stays exit 4
        exc = wrapped
    rolled_back = True
    if db is not None:
        try:
            db.rollback()
        except Exception:          # the connection itself is gone: the server rolls back
            rolled_back = False
    first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    if refused:
        log.error("[CHECKPOINT] ERROR: %s", first)
    else:
        log.error(SEPARATOR)
        log.error("[CHECKPOINT] ERROR: %s", first)
        log.error("[CHECKPOINT] Restore FAILED: %s (after %.1f s, %s)", cid, failed_at - started, at)
        log.error("[CHECKPOINT] Transaction rolled back" if rolled_back else
                  "[CHECKPOINT] Transaction rolled back by the server (connection lost)")
        log.error("[CHECKPOINT] Recovery suggestion: the database was left as it was before the restore. "
                  + (f"If it is not what you expect, restore the auto-backup: fbaudit checkpoint restore {backup_id}"
                     if backup_id else "Fix the cause above and run the restore again."))
        log.error(SEPARATOR)
    if db is not None:
        db.close()
    return exc


def _free_id(directory: Path, base: str) -> str:
    """The id a new checkpoint named ``base`` would get now."""
    cid, n = base, 1
    while any((directory / f"{cid}{suffix}").exists() for suffix in (".json", TMP_SUFFIX, TMP_SUFFIX + LOCK_SUFFIX)):
        n += 1
        cid = f"{base}_{n}"
    return cid


def _refuse_own_objects(cp: Checkpoint, config: Config) -> None:
    """fbaudit never writes its own tables or sequences (the configured prefix) into a checkpoint
    (_choose_tables, _sequences): a file that names them was changed or forged, and restoring it would
    overwrite fbaudit's audit data (packets waiting for transfer, packet numbers)."""
    prefix = config.prefix
    own = [f"table {t.name}" for t in cp.tables if t.name.startswith(prefix)]
    for s in cp.sequences:
        name = s.get("name") if isinstance(s, dict) else None
        ident = s.get("identity") if isinstance(s, dict) else None
        if isinstance(name, str) and name.startswith(prefix):
            own.append(f"sequence {name}")
        elif isinstance(ident, list) and ident and isinstance(ident[0], str) and ident[0].startswith(prefix):
            own.append(f"the sequence of {'.'.join(map(str, ident))}")
    if own:
        raise CheckpointError(
            f"Checkpoint {cp.id} names fbaudit's own objects ({', '.join(own)}), which fbaudit never writes into "
            f"a checkpoint: the file {cp.path} was changed or made by someone else, with a checksum to match. "
            f"Restoring it would overwrite fbaudit's audit data. Nothing was changed; delete the file and check who "
            f"can write {config.checkpoint_dir}.")


def _refuse_schema_differences(db: Database, cp: Checkpoint, spec: SourceSpec, *, commit: bool = True) -> None:
    diffs = schema_differences(db, cp, commit=commit)
    if diffs:
        raise CheckpointError(f"Checkpoint {cp.id} does not match the database {spec.describe()} any more; "
                              "nothing was changed:\n  " + "\n  ".join(diffs))


def _restore_problems(db: Database, prefix: str, defs: list[TableDef]) -> str | None:
    """At create: what restore would refuse for this set of tables as the database is now, said up
    front with the set that would restore (the tables plus every table whose rows can reference them);
    None when a restore would go through."""
    tables = [d.name for d in defs]
    fks = foreign_keys(db)
    problems = []
    try:
        plan = restore_order(tables, fks)
        keyed = {d.name for d in defs if d.primary_key}
        keyless = sorted({fk.child for fk in plan.deferred if fk.child not in keyed})
        if keyless:
            problems.append(f"{', '.join(keyless)} would be restored through a cycle or self-reference, which "
                            "needs a primary key")
        cascading = _cascading(plan)
        if cascading:
            problems.append("its restore would change tables outside it through ON DELETE " + ", ".join(
                f"{fk.delete_rule} ({fk.child} -> {fk.parent})" for fk in cascading))
        blocking = _outside_references(db, plan.outside)
        if blocking:
            problems.append("rows of other tables reference its tables, so their rows could not be deleted: "
                            + "; ".join(blocking))
    except CheckpointError as exc:        # no insert order at all
        problems.append(str(exc).split(". Nothing was changed")[0])
    if not problems:
        return None
    closure = list(tables)
    while True:
        more = sorted({fk.child for fk in fks if fk.parent in closure and fk.child not in closure
                       and not fk.child.startswith(prefix)})
        if not more:
            break
        closure += more
    hint = (f" A checkpoint that would restore: --tables {','.join(closure)}" if len(closure) > len(tables)
            else "")
    return ("This checkpoint could not be restored as the database is now: " + "; ".join(problems)
            + f".{hint}")


def _plan(db: Database, cp: Checkpoint, tables: list[str]) -> Plan:
    """restore_order over the database's foreign keys, plus the columns read by CHECKs of other tables
    (check_reads) of the tables that have a primary key (the second pass finds rows by it)."""
    plan = restore_order(tables, foreign_keys(db))
    plan.deferred += [fk for fk in check_reads(db, tables) if cp.table(fk.child).header.get("primary_key")]
    return plan


def _cascading(plan: Plan) -> list[ForeignKey]:
    """Foreign keys from tables outside the checkpoint whose ON DELETE rule would change them."""
    return [fk for fk in plan.outside if fk.delete_rule not in ("RESTRICT", "NO ACTION")]


def _refuse_outside_references(db: Database, plan: Plan) -> None:
    cascading = _cascading(plan)
    if cascading:
        raise CheckpointError("Restoring would change tables outside the checkpoint through ON DELETE "
                              + ", ".join(f"{fk.delete_rule} ({fk.child} -> {fk.parent}, {fk.name})"
                                          for fk in cascading)
                              + "; take a checkpoint that includes them. Nothing was changed.")
    blocking = _outside_references(db, plan.outside)
    if blocking:
        raise CheckpointError("Rows of tables outside the checkpoint reference its tables, so their rows cannot "
                              "be deleted: " + "; ".join(blocking) + ". Take a checkpoint that includes those "
                              "tables. Nothing was changed.")


def _outside_references(db: Database, fks: list[ForeignKey]) -> list[str]:
    """Foreign keys from tables outside the checkpoint that have rows referencing it."""
    out = []
    for fk in fks:
        cond = " OR ".join(f"{quote_ident(c)} IS NOT NULL" for c in fk.columns)
        if db.query(f"SELECT FIRST 1 1 FROM {quote_ident(fk.child)} WHERE {cond}"):
            out.append(f"{fk.child}.{'+'.join(fk.columns)} -> {fk.parent} ({fk.name})")
    return out


def _sequence_targets(db: Database, cp: Checkpoint) -> list[tuple[str, int]]:
    """(current generator name, value) per stored sequence; identity generators found again by column."""
    out = []
    for s in cp.sequences:
        name = s["name"]
        if s.get("identity"):
            t, c = s["identity"]
            found = db.scalar("SELECT TRIM(TRAILING FROM RDB$GENERATOR_NAME) FROM RDB$RELATION_FIELDS "
                              "WHERE RDB$RELATION_NAME = ? AND RDB$FIELD_NAME = ?", (t, c))
            if not found:
                raise CheckpointError(f"Checkpoint {cp.id}: {t}.{c} is no longer an identity column; "
                                      "nothing was changed.")
            name = found
        elif not db.query("SELECT 1 FROM RDB$GENERATORS WHERE RDB$GENERATOR_NAME = ?", (name,)):
            raise CheckpointError(f"Checkpoint {cp.id}: sequence {name} no longer exists; nothing was changed.")
        out.append((name, int(s["value"])))
    return out


def _user_triggers(db: Database, prefix: str, tables: list[str]) -> list[str]:
    """Active DML triggers on the tables other than fbaudit's own."""
    out = []
    for t in tables:
        out += [f"{n} ({t})" for (n,) in db.query(
            "SELECT TRIM(TRAILING FROM RDB$TRIGGER_NAME) FROM RDB$TRIGGERS WHERE RDB$RELATION_NAME = ? "
            "AND COALESCE(RDB$TRIGGER_INACTIVE, 0) = 0 AND COALESCE(RDB$SYSTEM_FLAG, 0) = 0 "
            "AND RDB$TRIGGER_TYPE < 8192 ORDER BY 1", (t,)) if not n.startswith(f"{prefix}AUDIT_")]
    return out


def _apply(db: Database, config: Config, cp: Checkpoint, plan: Plan, defs: dict[str, TableDef], *,
           audit: str, audited: dict[str, int],
           seq_names: list[tuple[str, int]], progress_stream=None, where: dict | None = None) -> dict:
    """The restore's DML, inside the reserved transaction (the caller commits or rolls back)."""
    con, p = db.con, config.prefix
    cur = con.cursor()
    comment = f"restore of checkpoint {cp.id}"
    cur.execute("SELECT RDB$SET_CONTEXT('USER_TRANSACTION', 'FBAUDIT_COMMENT', ?) FROM RDB$DATABASE", (comment,))
    cur.fetchall()
    if audit == "event" and audited:
        # Only fbaudit's owner can write LOG_QUIET; the row is never committed (deleted below),
        # so only this transaction's triggers ever see it.
        cur.execute(f"INSERT INTO {p}LOG_QUIET (TX) VALUES (CURRENT_TRANSACTION)")
        cur.execute("SELECT RDB$SET_CONTEXT('USER_TRANSACTION', 'FBAUDIT_QUIET', '1') FROM RDB$DATABASE")
        cur.fetchall()
    log.info(SEPARATOR)
    log.info("[CHECKPOINT] Starting restore process...")
    log.info(SEPARATOR)
    where = where if where is not None else {}
    deferred: dict[str, list[ForeignKey]] = {}
    for fk in plan.deferred:
        deferred.setdefault(fk.child, []).append(fk)
    # Children first: clear the cycle-breaking references, then empty every table.
    for t, fks in deferred.items():
        cols = sorted({c for fk in fks for c in fk.columns})
        where["at"] = f"clearing {', '.join(cols)} of {t}"
        cur.execute(f"UPDATE {quote_ident(t)} SET " + ", ".join(f"{quote_ident(c)} = NULL" for c in cols)
                    + " WHERE " + " OR ".join(f"{quote_ident(c)} IS NOT NULL" for c in cols))
    for t in reversed(plan.order):
        log.info("[CHECKPOINT] Truncating table: %s", t)
        where["at"] = f"deleting the rows of {t}"
        cur.execute(f"DELETE FROM {quote_ident(t)}")
    n = len(plan.order)
    total = 0
    tables_out: dict[str, int] = {}
    with Progress(cp.summary.get("total_rows", 0), progress_stream, logger=log) as bar:
        for i, t in enumerate(plan.order, 1):
            sec = cp.table(t)
            names = [c["name"] for c in sec.header["columns"]]
            log.info("[CHECKPOINT] [%d/%d] Preparing to restore table: %s", i, n, t)
            log.info("[CHECKPOINT] Restoring %d rows into %s (columns: %s)", sec.rows, t, ", ".join(names))
            nulled = {c for fk in deferred.get(t, []) for c in fk.columns}
            always = defs[t].always_identity
            keep = [j for j, c in enumerate(names) if c not in nulled]
            values = ", ".join("NULL" for _ in nulled)
            head = (f"INSERT INTO {quote_ident(t)} ({', '.join(quote_ident(names[j]) for j in keep)}"
                    + "".join(f", {quote_ident(c)}" for c in names if c in nulled)
                    + f") {'OVERRIDING SYSTEM VALUE ' if always else ''}VALUES (")
            insert = Inserter(cur, [head] + [", "] * (len(keep) - 1) + [(", " + values if values else "") + ")"],
                              types=[sec.header["columns"][j]["type"] for j in keep])
            done = 0
            key = [(k, names.index(k)) for k in sec.header.get("primary_key") or [] if k in names]
            for row in cp.rows(t):
                where["at"] = (f"inserting row {done + 1} of {sec.rows} into {t}"
                               + (f" ({', '.join(f'{k}={row[j]}' for k, j in key)})" if key else ""))
                insert.run([row[j] for j in keep] if nulled else row)
                done += 1
                bar.advance()
                if done % PROGRESS_EVERY == 0 or done == sec.rows:
                    log.info("[CHECKPOINT] Progress: %s - %d/%d rows inserted", t, done, sec.rows)
            insert.close()
            log.info("[CHECKPOINT] Restore complete: %s - %d rows successfully inserted", t, done)
            log.info("[CHECKPOINT] [%d/%d] Table %s restored: %d rows", i, n, t, done)
            tables_out[t] = done
            total += done
    for t, fks in deferred.items():
        where["at"] = f"filling in the references of {t}"
        _fill_deferred(cur, cp, t, fks)
    where["at"] = "setting the sequences"
    for name, value in seq_names:
        con.execute_immediate(f"SET GENERATOR {quote_ident(name)} TO {int(value)}")
    if seq_names:
        log.info("[CHECKPOINT] Sequences restored: %s",
                 ", ".join(f"{name} = {value}" for name, value in seq_names))
    if audit == "event" and audited:
        cur.execute(f"DELETE FROM {p}LOG_QUIET WHERE TX = CURRENT_TRANSACTION")
        cur.execute("SELECT RDB$SET_CONTEXT('USER_TRANSACTION', 'FBAUDIT_QUIET', NULL) FROM RDB$DATABASE")
        cur.fetchall()
        data_table = db.scalar(f"SELECT FIRST 1 ID_TABLE FROM {p}LOG_INFO")
        for t in plan.order:
            if t in audited:
                cur.execute(f"INSERT INTO {p}LOG_PACKET (ID, CREATED_AT, OPERATION, NUM_TABLE, DATA_TABLE, "
                            "RECORD_KEY, AUTHOR, DB_USER, CLIENT_ADDRESS, TRANSACTION_ID, CHANGE_COMMENT, PAYLOAD) "
                            f"VALUES (GEN_ID({p}LOG_PACKET_ID, 1), LOCALTIMESTAMP, ?, ?, ?, NULL, "
                            "LEFT(COALESCE(RDB$GET_CONTEXT('USER_TRANSACTION', 'FBAUDIT_AUTHOR'), CURRENT_USER), 255), "
                            "CURRENT_USER, RDB$GET_CONTEXT('SYSTEM', 'CLIENT_ADDRESS'), CURRENT_TRANSACTION, ?, '')",
                            (OP_RESTORE, audited[t], data_table if data_table == 2 else 1,
                             f"{comment}: {tables_out[t]} rows"[:255]))
        con.execute_immediate(f"EXECUTE BLOCK AS BEGIN POST_EVENT '{p}NEW_PACKET'; END")
    cur.close()
    return {"tables": tables_out, "total_rows": total, "sequences": dict(seq_names)}


def _fill_deferred(cur, cp: Checkpoint, table: str, fks: list[ForeignKey]) -> None:
    """Second pass over a table's rows: set the cycle-breaking foreign key columns."""
    sec = cp.table(table)
    names = [c["name"] for c in sec.header["columns"]]
    cols = sorted({c for fk in fks for c in fk.columns}, key=names.index)
    key = sec.header["primary_key"]          # checked before the restore started
    ci = [names.index(c) for c in cols]
    ki = [names.index(k) for k in key]
    parts = [f"UPDATE {quote_ident(table)} SET {quote_ident(cols[0])} = "]
    parts += [f", {quote_ident(c)} = " for c in cols[1:]]
    parts += [f" WHERE {quote_ident(key[0])} = "] + [f" AND {quote_ident(k)} = " for k in key[1:]] + [""]
    types = {c["name"]: c["type"] for c in sec.header["columns"]}
    update = Inserter(cur, parts, types=[types[c] for c in cols] + [types[k] for k in key])
    filled = 0
    for row in cp.rows(table):
        vals = [row[j] for j in ci]
        if any(v is not None for v in vals):
            update.run(vals + [row[j] for j in ki])
            filled += 1
    update.close()
    log.info("[CHECKPOINT] References filled in: %s - %d rows (%s)", table, filled, ", ".join(cols))


def list_lines(items: list[dict], directory: Path) -> list[str]:
    """``checkpoint list`` for people: a line per checkpoint (list_checkpoints), oldest first."""
    if not items:
        return [f"no checkpoints in {directory}"]
    w = max([len(it["id"]) for it in items] + [2])
    lines = [f"{'id':<{w}} {'created':<19} {'tables':>6} {'rows':>10}  description"]
    for it in items:
        if it.get("incomplete"):
            lines.append(f"{it['id']:<{w}} {it.get('modified_at') or '':<19} " + (
                f"BEING WRITTEN (a create that is still running, {it['bytes']} bytes so far)" if it.get("in_progress")
                else f"INCOMPLETE (a create that did not finish: `fbaudit checkpoint delete {it['id']}` removes it)"))
            continue
        if it.get("damaged"):
            lines.append(f"{it['id']:<{w}} DAMAGED (unreadable header or summary)")
            continue
        lines.append(f"{it['id']:<{w}} {it.get('created_at') or '':<19} {it.get('tables', 0):>6} "
                     f"{it.get('total_rows') or 0:>10}  {it.get('description') or ''}"
                     + (" (that restore FAILED and was rolled back: nothing was changed, this backup is "
                        "the data as it still is)" if "failed_restore" in it else ""))
    return lines


def show_lines(res: dict) -> list[str]:
    """``checkpoint show`` for people: the verified file (show), its tables and sequences."""
    lines = [f"{res['id']} ({res['kind']}) from source {res['source']}, Firebird {res['firebird']}, "
             f"created {res['created_at']}", f"description: {res['description'] or '-'}",
             f"file: {res['file']} ({res['bytes']} bytes, checksum OK)"]
    lines += [f"  {t}: {v['rows']} rows, {v['columns']} columns" for t, v in res["tables"].items()]
    lines += [f"  sequence {n} = {v}" for n, v in res["sequence_values"].items()]
    return lines
