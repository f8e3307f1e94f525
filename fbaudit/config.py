"""The configuration file (``config/fbaudit.yaml``), validated once into typed objects."""
from __future__ import annotations

import os
import re
import stat
import sys
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from . import yamlio
from .errors import ConfigError

DEFAULT_CONFIG = Path("config/fbaudit.yaml")
DEFAULT_PREFIX = "FBA_"
DEFAULT_CHECKPOINT_DIR = Path("data/checkpoints")

# host[/port]:path, or inet://…, xnet://…; a one-letter "host" is a Windows drive.
_SERVER_DSN = re.compile(r"^(?:(?:inet[46]?|wnet|xnet)://|\[[0-9A-Fa-f:.]+\](?:/[\w-]+)?:|[^:/\\\s]{2,}(?:/[\w-]+)?:|[^:/\\\s]+/\d+:)")


@dataclass(frozen=True)
class DatabaseSpec:
    """How to reach one database: an embedded file path or a server DSN."""

    name: str
    database: str
    user: str = "SYSDBA"
    password_env: str | None = None
    password_file: Path | None = None
    role: str | None = None

    @property
    def is_server(self) -> bool:
        return bool(_SERVER_DSN.match(self.database))

    def password(self) -> str | None:
        """The password, from the environment or a protected file; never from YAML."""
        if self.password_env:
            value = os.environ.get(self.password_env)
            if value is None:
                raise ConfigError(
                    f"Database {self.name!r}: the environment variable {self.password_env} "
                    "(password_env) is not set."
                )
            return value
        if self.password_file:
            p = self.password_file
            try:
                if sys.platform != "win32" and p.stat().st_mode & (stat.S_IRWXG | stat.S_IRWXO):
                    raise ConfigError(
                        f"Database {self.name!r}: password file {p} is readable by other users; "
                        f"run: chmod 600 {p}"
                    )
                text = p.read_text(encoding="utf-8")
            except FileNotFoundError:
                raise ConfigError(f"Database {self.name!r}: password file {p} not found.") from None
            # Accept a bare password or Debian's SYSDBA.password format.
            m = re.search(r'^ISC_PASSWORD="?([^"\n]*)"?\s*$', text, re.M)
            return m.group(1) if m else text.strip()
        return None

    def describe(self) -> str:
        return f"{self.name} ({self.database})"


@dataclass(frozen=True)
class SourceSpec(DatabaseSpec):
    registry: Path = Path("tables.yaml")
    # The source as the LOG database's server reaches it (BLOB_INS pulls field
    # rows with EXECUTE STATEMENT ... ON EXTERNAL from there). Default: database.
    external_database: str | None = None
    # What this database's CHARACTER SET NONE text holds (docs/capture.md "Text in CHARACTER SET NONE"):
    # a key of NONE_CHARSETS; None: UTF-8 where the bytes are UTF-8 (ASCII included), else bytes.
    none_charset: str | None = None


# Character sets CHARACTER SET NONE text may hold (``none_charset``) -> the Python codec that reads them.
NONE_CHARSETS = {
    "ASCII": "ascii", "UTF8": "utf-8", "UNICODE_FSS": "utf-8", "ISO8859_1": "latin-1",
    **{f"ISO8859_{n}": f"iso8859_{n}" for n in (2, 3, 4, 5, 6, 7, 8, 9, 13)},
    **{f"WIN{n}": f"cp{n}" for n in range(1250, 1259)},
    **{f"DOS{n}": f"cp{n}" for n in (437, 737, 775, 850, 852, 857, 858, 860, 861, 862, 863, 864, 865, 866, 869)},
    "KOI8R": "koi8_r", "KOI8U": "koi8_u", "TIS620": "tis_620", "BIG_5": "big5", "GB_2312": "gb2312",
    "GBK": "gbk", "GB18030": "gb18030", "SJIS_0208": "shift_jis", "EUCJ_0208": "euc_jp", "KSC_5601": "euc_kr",
    "CP943C": "cp932",
}


@dataclass(frozen=True)
class Config:
    path: Path
    log: DatabaseSpec
    sources: tuple[SourceSpec, ...]
    prefix: str = DEFAULT_PREFIX
    client_library: str | None = None
    rotation: "Rotation" = field(default_factory=lambda: Rotation())
    checkpoints_dir: Path | None = None      # ``checkpoints: {dir: ...}``; None: data/checkpoints
    mass_change: int = 1000                  # ``status: {mass_change: N}``: warn when a transaction changed more
                                             # than N rows of a table (0: never)

    @property
    def checkpoint_dir(self) -> Path:
        """Where checkpoint files live: the configured folder, else ``data/checkpoints`` (the guide's)."""
        return self.checkpoints_dir or DEFAULT_CHECKPOINT_DIR

    def source(self, name: str | None) -> list[SourceSpec]:
        """The sources a command works on: one by name, or all."""
        if name is None:
            return list(self.sources)
        for s in self.sources:
            if s.name == name:
                return [s]
        known = ", ".join(s.name for s in self.sources) or "none"
        raise ConfigError(f"{self.path}: no source named {name!r} (configured: {known}).")


@dataclass(frozen=True)
class Rotation:
    """``rotation:`` settings (docs/rotation.md)."""

    period: timedelta = timedelta(days=1)   # a data table is switched out this long after the last switch
    max_wait: float = 60.0                  # seconds one run waits for old transactions / the transfer
    clock: datetime | None = None           # fixed "now" for tests and benchmarks (FBAUDIT_NOW overrides)

    def now(self) -> datetime:
        """The rotation clock: $FBAUDIT_NOW, else the configured ``clock``, else the local time."""
        env = os.environ.get("FBAUDIT_NOW")
        if env:
            try:
                return datetime.fromisoformat(env.strip())
            except ValueError:
                raise ConfigError(f"FBAUDIT_NOW={env!r} is not a date and time like 2026-12-01T03:00:00") from None
        return self.clock or datetime.now()


_PERIOD = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhd])\s*$")
_PERIOD_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}
_ROTATION_KEYS = {"period", "max_wait", "clock"}


def parse_period(text: str) -> timedelta:
    """'1d', '12h', '30m', '90s' -> timedelta; ValueError otherwise."""
    m = _PERIOD.match(str(text))
    if not m or float(m.group(1)) <= 0:
        raise ValueError(text)
    return timedelta(**{_PERIOD_UNITS[m.group(2)]: float(m.group(1))})


def _rotation(path: Path, data: Any) -> Rotation:
    node = data.get("rotation")
    if node is None:
        return Rotation()
    if not isinstance(node, dict):
        raise ConfigError(f"{yamlio.where(path, data, 'rotation')}: 'rotation' must be a mapping "
                          "(period, max_wait, clock)")
    for key in node:
        if key not in _ROTATION_KEYS:
            raise ConfigError(f"{yamlio.where(path, node, key)}: unknown key {key!r} in 'rotation'; "
                              f"allowed: {', '.join(sorted(_ROTATION_KEYS))}")
    out = Rotation()
    if "period" in node:
        try:
            out = Rotation(parse_period(node["period"]), out.max_wait, out.clock)
        except ValueError:
            raise ConfigError(f"{yamlio.where(path, node, 'period')}: period {node['period']!r} must be a number "
                              "with a unit: 1d, 12h, 30m or 90s") from None
    if "max_wait" in node:
        v = node["max_wait"]
        if isinstance(v, bool) or not isinstance(v, (int, float)) or v < 0:
            raise ConfigError(f"{yamlio.where(path, node, 'max_wait')}: max_wait must be seconds (0 or more), "
                              f"not {v!r}")
        out = Rotation(out.period, float(v), out.clock)
    if "clock" in node:
        v = node["clock"]
        if isinstance(v, str):
            try:
                v = datetime.fromisoformat(v)
            except ValueError:
                v = None
        if not isinstance(v, datetime):
            raise ConfigError(f"{yamlio.where(path, node, 'clock')}: clock must be a date and time like "
                              "2026-12-01T03:00:00 (for tests; leave it out in production)")
        out = Rotation(out.period, out.max_wait, v.replace(tzinfo=None))
    return out


_DB_KEYS = {"database", "user", "password_env", "password_file", "role"}
_SOURCE_KEYS = _DB_KEYS | {"name", "registry", "external_database", "none_charset"}
_TOP_KEYS = {"prefix", "log", "sources", "client_library", "rotation", "checkpoints", "status"}


def _resolve_path(base: Path, value: str) -> str:
    """Embedded database paths and files are relative to the config file's folder."""
    if _SERVER_DSN.match(value):
        return value
    p = Path(os.path.expandvars(os.path.expanduser(value)))
    return str(p if p.is_absolute() else (base / p).resolve())


def _str(path: Path, node: Any, key: str, *, required: bool = False) -> str | None:
    if key not in node:
        if required:
            raise ConfigError(f"{yamlio.where(path, node)}: missing required key {key!r}")
        return None
    if node[key] is None:
        if required:
            raise ConfigError(f"{yamlio.where(path, node, key)}: {key!r} is empty; it needs a value")
        return None
    value = node[key]
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"{yamlio.where(path, node, key)}: {key!r} must be a non-empty text, not {value!r}")
    return value.strip()


def _db(path: Path, node: Any, *, name: str, allowed: set[str], what: str, one: bool = True) -> dict[str, Any]:
    if not isinstance(node, dict):
        raise ConfigError(f"{yamlio.where(path, node)}: {what} must be a mapping of keys")
    for key in node:
        if key not in allowed:
            hint = ""
            if key == "password":
                hint = " (passwords never go in the YAML: use password_env or password_file)"
            raise ConfigError(
                f"{yamlio.where(path, node, key)}: unknown key {key!r} in {what}{hint}; "
                f"allowed: {', '.join(sorted(allowed))}"
            )
    if "password_env" in node and "password_file" in node:
        raise ConfigError(f"{yamlio.where(path, node, 'password_file')}: give password_env or password_file, not both")
    base = path.parent
    pf = _str(path, node, "password_file")
    return {
        "name": name,
        "database": _resolve_path(base, _str(path, node, "database", required=True)) if one else "",
        "user": _str(path, node, "user") or "SYSDBA",
        "password_env": _str(path, node, "password_env"),
        "password_file": Path(_resolve_path(base, pf)) if pf else None,
        "role": _str(path, node, "role"),
    }


def _source_name(path: Path, node: Any, key: Any, name: str) -> str:
    if len(name) > 63:     # SOURCES.NAME in the log database
        raise ConfigError(f"{yamlio.where(path, node, key)}: source name {name!r} is longer than 63 characters")
    return name


def _expand_source(path: Path, node: Any, log: DatabaseSpec) -> list[tuple[SourceSpec, Any]]:
    """One source entry -> its sources: ``database`` (one), ``pattern`` (one per matching
    file) or ``list`` (one per line of a list file). Returns (spec, key for error lines)."""
    for key in node:      # an unknown key first: `databse: x.fdb` is a typo, not a missing database
        if key not in _SOURCE_KEYS | {"pattern", "list"}:
            _db(path, node, name="", allowed=_SOURCE_KEYS | {"pattern", "list"}, what="a source", one=False)
    kinds = [k for k in ("database", "pattern", "list") if k in node]
    if len(kinds) > 1:
        raise ConfigError(f"{yamlio.where(path, node, kinds[1])}: a source gives one of database, pattern "
                          f"or list, not {' and '.join(kinds)}")
    if not kinds:
        raise ConfigError(f"{yamlio.where(path, node)}: missing required key 'database' "
                          "(or 'pattern' / 'list' for many databases)")
    kind = kinds[0]
    allowed = (_SOURCE_KEYS | {kind}) - ({"database"} if kind != "database" else set())
    reg = _str(path, node, "registry") or "tables.yaml"
    registry = Path(_resolve_path(path.parent, reg))
    external = _str(path, node, "external_database")
    none_charset = _str(path, node, "none_charset")
    if none_charset is not None:
        none_charset = none_charset.upper().replace("-", "_")
        none_charset = {"UTF_8": "UTF8", "WINDOWS_1251": "WIN1251", "CP1251": "WIN1251", "LATIN1": "ISO8859_1",
                        "KOI8_R": "KOI8R", "KOI8_U": "KOI8U"}.get(none_charset, none_charset)
        if none_charset not in NONE_CHARSETS:
            raise ConfigError(f"{yamlio.where(path, node, 'none_charset')}: none_charset {node['none_charset']!r} is "
                              f"not a character set fbaudit can read NONE text in; one of: "
                              f"{', '.join(sorted(NONE_CHARSETS))}")

    def make(name: str, database: str, fields: dict) -> SourceSpec:
        return SourceSpec(**{**fields, "name": name, "database": database}, registry=registry,
                          external_database=external, none_charset=none_charset)

    if kind == "database":
        name = _source_name(path, node, "name", _str(path, node, "name", required=True))
        fields = _db(path, node, name=name, allowed=allowed, what=f"source {name!r}")
        return [(make(name, fields["database"], fields), "name")]
    if external:
        raise ConfigError(f"{yamlio.where(path, node, 'external_database')}: external_database names one "
                          f"database; it cannot go with {kind!r}")
    fields = _db(path, node, name="", allowed=allowed, what=f"source {kind!r}", one=False)
    template = _str(path, node, "name") or "{stem}"
    if "{stem}" not in template:
        raise ConfigError(f"{yamlio.where(path, node, 'name')}: with {kind!r} the name is a template that must "
                          "contain {stem} (the file name without extension), e.g. name: 'shop_{stem}'")
    value = _str(path, node, kind, required=True)
    if kind == "pattern":
        found = _glob_databases(path, node, value, log)
    else:
        found = _list_databases(path, node, value, template)
    out = []
    for explicit, database in found:
        stem = _file_stem(_split_dsn(database)[1])
        name = _source_name(path, node, kind, explicit or template.replace("{stem}", stem))
        out.append((make(name, database, fields), kind))
    return out


def _split_dsn(value: str) -> tuple[str, str]:
    """'host/3050:/data/x.fdb' -> ('host/3050:', '/data/x.fdb'); an embedded path -> ('', path)."""
    m = _SERVER_DSN.match(value)
    return (value[:m.end()], value[m.end():]) if m else ("", value)


def _file_stem(file_path: str) -> str:
    """The file name without extension, for Windows paths too (``D:\\db\\cust1.fdb`` -> cust1) on any OS."""
    from pathlib import PureWindowsPath
    return (PureWindowsPath if "\\" in file_path or re.match(r"^[A-Za-z]:", file_path) else Path)(file_path).stem


def database_key(database: str) -> str:
    """One database file however it is spelled: the path part of a DSN, resolved, case-folded
    on Windows (``localhost:/d/x.fdb``, ``127.0.0.1:/d/x.fdb`` and ``/d/x.fdb`` are the same file
    when fbaudit runs on the database server, as pattern sources require)."""
    part = _split_dsn(database)[1]
    if not re.match(r"^[A-Za-z]:", part) and "\\" not in part:
        try:
            part = os.path.realpath(part)
        except OSError:
            pass
    return os.path.normcase(part).lower() if re.match(r"^[A-Za-z]:", part) else os.path.normcase(part)


def _glob_databases(path: Path, node: Any, pattern: str, log: DatabaseSpec) -> list[tuple[None, str]]:
    """Files matching ``pattern`` (sorted), the log database excluded. For a server DSN the
    path part is matched on this machine's file system (fbaudit runs on the server)."""
    import glob
    server, local = _split_dsn(pattern)
    base = path.parent
    expanded = os.path.expandvars(os.path.expanduser(local))
    full = expanded if Path(expanded).is_absolute() else str(base.resolve() / expanded)
    matches = sorted(glob.glob(full, recursive=True))
    log_key = database_key(log.database)
    out = []
    for m in matches:
        database = server + m if server else str(Path(m).resolve())
        if database_key(m) == log_key or Path(m).is_dir():
            continue
        out.append((None, database))
    if not out:
        raise ConfigError(f"{yamlio.where(path, node, 'pattern')}: pattern {pattern!r} matches no database file "
                          f"(looked for {full})")
    return out


def _list_databases(path: Path, node: Any, value: str, template: str) -> list[tuple[str | None, str]]:
    """A list file: one database per line, ``DATABASE`` or ``NAME DATABASE``; # comments.
    Relative paths are relative to the list file's folder."""
    list_path = Path(_resolve_path(path.parent, value))
    try:
        lines = list_path.read_text(encoding="utf-8-sig").splitlines()
    except FileNotFoundError:
        raise ConfigError(f"{yamlio.where(path, node, 'list')}: list file {list_path} not found") from None
    except OSError as exc:
        raise ConfigError(f"{yamlio.where(path, node, 'list')}: cannot read list file {list_path} "
                          f"({exc.strerror})") from None
    out = []
    for n, line in enumerate(lines, 1):
        text = line.strip()
        if not text or text.startswith("#"):
            continue
        parts = text.split(None, 1)      # a path with spaces needs a name first: NAME C:\My Data\x.fdb
        name, database = (parts[0], parts[1]) if len(parts) == 2 else (None, parts[0])
        if name is not None and re.search(r"[:\\/]", name):
            raise ConfigError(f"{list_path}:{n}: {name!r} is not a source name (a path with spaces needs a name "
                              f"first: NAME {text}); write DATABASE or NAME DATABASE")
        if name is not None and template != "{stem}":
            name = template.replace("{stem}", name)
        out.append((name, _resolve_path(list_path.parent, database)))
    if not out:
        raise ConfigError(f"{yamlio.where(path, node, 'list')}: list file {list_path} names no database")
    return out


def load_config(path: str | Path | None = None) -> Config:
    """Read and validate the configuration file.

    The path is ``path``, else ``$FBAUDIT_CONFIG``, else ``config/fbaudit.yaml``.
    """
    path = Path(path or os.environ.get("FBAUDIT_CONFIG") or DEFAULT_CONFIG)
    data = yamlio.load(path)
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the file must be a mapping with 'log' and 'sources'")
    for key in data:
        if key not in _TOP_KEYS:
            raise ConfigError(
                f"{yamlio.where(path, data, key)}: unknown key {key!r}; allowed: {', '.join(sorted(_TOP_KEYS))}"
            )
    prefix = _str(path, data, "prefix") or DEFAULT_PREFIX
    if not re.fullmatch(r"[A-Z][A-Z0-9_$]{0,15}", prefix):
        raise ConfigError(
            f"{yamlio.where(path, data, 'prefix')}: prefix {prefix!r} must be 1-16 characters "
            "of A-Z, 0-9, _ or $, starting with a letter (it starts every fbaudit object name)"
        )
    if "log" not in data:
        raise ConfigError(f"{path}: missing required key 'log'")
    sources_node = data.get("sources")
    if not isinstance(sources_node, list) or not sources_node:
        raise ConfigError(f"{yamlio.where(path, data, 'sources') if 'sources' in data else path}: "
                          "'sources' must be a list with at least one source")
    log = DatabaseSpec(**_db(path, data["log"], name="log", allowed=_DB_KEYS, what="'log'"))
    sources: list[SourceSpec] = []
    seen: dict[str, str] = {}
    files: dict[str, tuple[str, str]] = {}
    for i, node in enumerate(sources_node):
        if not isinstance(node, dict):
            raise ConfigError(f"{yamlio.where(path, sources_node, i)}: each source must be a mapping")
        for spec, key in _expand_source(path, node, log):
            if spec.name in seen:
                raise ConfigError(f"{yamlio.where(path, node, key)}: duplicate source name {spec.name!r} "
                                  f"({spec.database}; also {seen[spec.name]})")
            same = files.get(database_key(spec.database))
            if same:       # two registrations, two rotations, and the same packets shipped under two names
                raise ConfigError(f"{yamlio.where(path, node, key)}: source {spec.name!r} ({spec.database}) is the "
                                  f"same database as source {same[0]!r} ({same[1]}); audit each database once")
            seen[spec.name] = spec.database
            files[database_key(spec.database)] = (spec.name, spec.database)
            sources.append(spec)
    client = _str(path, data, "client_library")
    checkpoints = data.get("checkpoints")
    cp_dir = None
    if checkpoints is not None:
        if not isinstance(checkpoints, dict):
            raise ConfigError(f"{yamlio.where(path, data, 'checkpoints')}: 'checkpoints' must be a mapping (dir)")
        for key in checkpoints:
            if key != "dir":
                raise ConfigError(f"{yamlio.where(path, checkpoints, key)}: unknown key {key!r} in 'checkpoints'; "
                                  "allowed: dir")
        d = _str(path, checkpoints, "dir")
        cp_dir = Path(_resolve_path(path.parent, d)) if d else None
    return Config(
        path=path,
        log=log,
        sources=tuple(sources),
        prefix=prefix,
        client_library=_resolve_path(path.parent, client) if client else None,
        rotation=_rotation(path, data),
        checkpoints_dir=cp_dir,
        mass_change=_mass_change(path, data),
    )


def _mass_change(path: Path, data: Any) -> int:
    """``status: {mass_change: N}`` (docs/configuration.md): rows of one table one transaction may change
    before `fbaudit status` warns; 0 switches the warning off."""
    node = data.get("status")
    if node is None:
        return Config.mass_change
    if not isinstance(node, dict):
        raise ConfigError(f"{yamlio.where(path, data, 'status')}: 'status' must be a mapping (mass_change)")
    for key in node:
        if key != "mass_change":
            raise ConfigError(f"{yamlio.where(path, node, key)}: unknown key {key!r} in 'status'; allowed: mass_change")
    v = node.get("mass_change", Config.mass_change)
    if isinstance(v, bool) or not isinstance(v, int) or v < 0:
        raise ConfigError(f"{yamlio.where(path, node, 'mass_change')}: mass_change must be a number of rows "
                          f"(0 switches the warning off), not {v!r}")
    return v


def single_source_config(database: str, *, registry: str | Path, log_database: str,
                         prefix: str = DEFAULT_PREFIX, user: str = "SYSDBA",
                         password_env: str | None = None) -> Config:
    """A Config built in code (demo, tests, library users)."""
    return Config(
        path=Path("<memory>"),
        log=DatabaseSpec("log", log_database, user=user, password_env=password_env),
        sources=(SourceSpec("main", database, user=user, password_env=password_env, registry=Path(registry)),),
        prefix=prefix,
    )

