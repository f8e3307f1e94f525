"""Capture in the main database: staging objects, generated audit triggers,
enable / disable / sync / pause / resume / status.

Every function here plans first (returns Statements) and applies the plan in
one transaction; ``dry_run`` returns the plan without touching the database.
"""
from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass, field
from typing import Iterable

from . import baseline as baseline_mod
from . import templates
from .catalog import Column, TableInfo, key_safety, read_table, table_exists
from .config import Config, SourceSpec
from .db import Database, apply_plan, database_exists
from .errors import CatalogError, ConfigError, FbauditError
from .forms import (PACK_LIMIT, changed_expr, key_expr, pack_append, pack_append_big, pack_term, packed_expr,
                    short_text,
                    value_expr)
from .idents import check_length, normalize_name, quote_ident
from .logs import printable
from .objects import trigger_body as objects_trigger_body
from .objects import (control_event, grant_packet_tables, installed_trigger_body, is_initialized, number_versions,
                      plan_init, require_current,
                      require_init, trigger_exists, trigger_inactive, trigger_name, unnumbered, upgrades)
from .progress import Progress
from .registry import FieldEntry, Registry, TableEntry
from .sources import Result, for_each_source, one_source, open_source
from .staging import PACKET_COLUMNS, convert_progress
from .status import status  # noqa: F401  (fbaudit.capture.status, as documented)
from .templates import Statement

log = logging.getLogger("fbaudit.capture")



# --------------------------------------------------------------------------
# Planning
# --------------------------------------------------------------------------
def logged_columns(info: TableInfo, exclude: Iterable[str]) -> tuple[list[Column], list[Column]]:
    """(logged, skipped) columns: ARRAY/COMPUTED are skipped, excluded are dropped silently."""
    excl = set(exclude)
    logged = [c for c in info.columns if c.auditable and c.name not in excl]
    skipped = [c for c in info.columns if not c.auditable and c.name not in excl]
    return logged, skipped


def plan_trigger(entry: TableEntry, info: TableInfo, prefix: str, major: int, *,
                 keys_only: bool = False) -> list[Statement]:
    """CREATE OR ALTER TRIGGER for one table plus its grants (and its parts, LOG_PARTS).

    ``keys_only``: the trigger of a table in an upgrade (fbaudit.upgrade): no column lines, so it
    reads only the key and author columns and logs who changed which row; its parts are not
    stored (the parts kept are those of the trigger `upgrade end` replaces)."""
    cols = {c.name: c for c in info.columns}
    logged = [(entry.fields[c.name].number, c) for c in info.columns
              if c.name in entry.fields and c.auditable and not keys_only]
    if not logged and not keys_only:
        raise CatalogError(f"Table {entry.name!r} has no column to log.")
    key_cols = []
    for k in entry.key:
        if k not in cols:
            raise CatalogError(f"Key column {k!r} of table {entry.name!r} does not exist.")
        key_cols.append(cols[k])
    author = ""
    if entry.author:
        if entry.author not in cols:
            raise CatalogError(f"Author column {entry.author!r} of table {entry.name!r} does not exist.")
        ac = cols[entry.author]
        if ac.is_blob or (ac.kind == "binary" and ac.charset != "NONE"):
            raise CatalogError(f"Author column {entry.author!r} is {ac.type}; use a text or number column.")
        if ac.charset == "UTF8":
            a_new, a_old = (short_text(f"{c}.{quote_ident(ac.name)}", ac, 255) for c in ("NEW", "OLD"))
        elif ac.kind in ("text", "binary"):          # any other character set, NONE included: TXT never fails
            a_new, a_old = (f"TXT(CAST(LEFT({c}.{quote_ident(ac.name)}, 255) AS VARCHAR(1020) CHARACTER SET OCTETS), "
                            f"{info.charset_id(ac.charset)})" for c in ("NEW", "OLD"))
        else:
            a_new, a_old = value_expr(ac, "NEW", major), value_expr(ac, "OLD", major)
        author = f"IIF(:op IN (3, 12), {a_old}, {a_new}), "
    slots: dict[str, list[tuple[str, str]]] = {slot: [] for slot in _SLOTS}
    for num, c in logged:
        q = quote_ident(c.name)
        # On a key change (kc = 1) every non-NULL field is logged: the new key's first version is whole.
        cond = f"(kc = 1 AND NEW.{q} IS NOT NULL) OR {changed_expr(c, major)}"
        o, n = packed_expr(c, "OLD", major), packed_expr(c, "NEW", major)
        slots["FIELDS"].append((c.name, f"      IF ({cond}) THEN " + pack_append(num, o, n)))
        # An insert logs the non-NULL new values, a delete the non-NULL old ones: one side, no
        # comparison, every field a term of one expression; the length tests before it.
        slots["INSERTED"].append((c.name, "        || " + pack_term(num, f"NEW.{q}", n, "new")))
        slots["DELETED"].append((c.name, "        || " + pack_term(num, f"OLD.{q}", o, "old")))
        if n[1] is not None:
            slots["INSERT_GUARDS"].append((c.name, "        OR " + n[1]))
        if o[1] is not None:
            slots["DELETE_GUARDS"].append((c.name, "        OR " + o[1]))
        slots["BIG_FIELDS"].append((c.name, f"    IF ({cond}) THEN\n    "
                                    + pack_append_big(num, value_expr(c, "OLD", major), value_expr(c, "NEW", major))))
    trig = trigger_name(prefix, entry.number)
    check_length(trig, major_version=major, what="trigger")
    rendered = templates.render(
        "audit_trigger", P=prefix, TRIGGER=trig, TABLE=quote_ident(entry.name), NUM_TABLE=str(entry.number),
        # The cheap test first: only when a key column changed are the key texts compared.
        KEY_COLUMNS_CHANGED=" OR ".join(f"NEW.{quote_ident(c.name)} IS DISTINCT FROM OLD.{quote_ident(c.name)}"
                                        for c in key_cols),
        NEW_KEY=key_expr(key_cols, "NEW"), OLD_KEY=key_expr(key_cols, "OLD"),
        AUTHOR=author, DB_CHARSET_ID=str(info.db_charset[0]), CHARSETS=charset_branches(info),
        KEYS_ONLY="1" if keys_only else "0", PACK_LIMIT=str(PACK_LIMIT), PACKET_INSERT=packet_insert(prefix),
        **{slot: _SENTINEL.format(slot) for slot in _SLOTS})
    parts = trigger_parts(rendered[0].sql, slots)
    if keys_only:
        return [Statement("".join(text for _, text in parts))] + rendered[1:]
    # The columns every version of the trigger reads (key, author): when one is gone or retyped,
    # DDL_FOLLOW leaves the trigger alone and Firebird refuses the DDL as it would without fbaudit.
    needs = list(dict.fromkeys([c.name for c in key_cols] + ([entry.author] if entry.author else [])))
    return ([Statement("".join(text for _, text in parts))] + rendered[1:]
            + plan_parts(entry.number, entry.name, parts, prefix, needs))


def packet_insert(prefix: str) -> str:
    """The audit trigger's EXECUTE STATEMENT text: the INSERT of a packet into the packet table of the
    current data table (``dt``), chosen inside the statement (ddl/audit_trigger.sql)."""
    def insert(n: int) -> str:
        return (f"'INSERT INTO {prefix}LOG_PACKET_{n} ({PACKET_COLUMNS}) VALUES ("
                + ", ".join("?" * len(PACKET_COLUMNS.split(","))) + ")'")
    return f"IIF(dt = 2, {insert(2)},\n                            {insert(1)})"


# The audit trigger in parts (ddl/main_init.sql, LOG_PARTS): the template's text around
# the six lists of per-column lines, and each column's line in each list. The trigger IS their
# concatenation, here and when DDL_FOLLOW re-creates it after an ALTER TABLE.
_SLOTS = ("INSERT_GUARDS", "INSERTED", "DELETE_GUARDS", "DELETED", "FIELDS", "BIG_FIELDS")
_SENTINEL = "\x00SLOT:{}\x00"         # no Firebird name holds a NUL, so no value can hold this


def trigger_parts(sql: str, slots: dict[str, list[tuple[str, str]]]) -> list[tuple[str | None, str]]:
    """[(column or None, text)]: the rendered trigger split at its slots. Each list line becomes
    "\n" + line and the text before a slot loses its own line end, so the concatenation is the
    trigger as the template reads, with any subset of the columns."""
    pieces = re.split("\x00SLOT:(" + "|".join(_SLOTS) + ")\x00", sql)
    parts: list[tuple[str | None, str]] = []
    for i in range(0, len(pieces), 2):
        text = pieces[i]
        if i + 1 < len(pieces):
            text = text[:-1] if text.endswith("\n") else text
        parts.append((None, text))
        if i + 1 < len(pieces):
            parts += [(name, "\n" + line) for name, line in slots[pieces[i + 1]]]
    return parts


def plan_parts(number: int, table: str, parts: list[tuple[str | None, str]], prefix: str,
               needs: list[str]) -> list[Statement]:
    """The statements storing a trigger's parts, each column's with its type as Firebird holds it now;
    ``needs``, the columns every version reads, as empty parts numbered below zero."""
    p = prefix
    out = [Statement(f"DELETE FROM {p}LOG_PARTS WHERE NUM_TABLE = ?", (number,))]
    for seq, (name, text) in [(-i, (c, "")) for i, c in enumerate(needs, 1)] + list(enumerate(parts, 1)):
        if name is None:
            out.append(Statement(f"INSERT INTO {p}LOG_PARTS (NUM_TABLE, SEQ, PART) VALUES (?, ?, ?)",
                                 (number, seq, text)))
        else:
            out.append(Statement(
                f"INSERT INTO {p}LOG_PARTS (NUM_TABLE, SEQ, FIELD_NAME, F_TYPE, F_SUB_TYPE, F_CHARSET, "
                f"F_SCALE, F_LENGTH, F_COLLATION, PART) SELECT CAST(? AS INTEGER), CAST(? AS INTEGER), "
                "TRIM(TRAILING FROM rf.RDB$FIELD_NAME), f.RDB$FIELD_TYPE, f.RDB$FIELD_SUB_TYPE, f.RDB$CHARACTER_SET_ID, "
                "f.RDB$FIELD_SCALE, f.RDB$FIELD_LENGTH, COALESCE(rf.RDB$COLLATION_ID, f.RDB$COLLATION_ID), "
                "CAST(? AS BLOB SUB_TYPE TEXT CHARACTER SET UTF8) FROM RDB$RELATION_FIELDS rf JOIN RDB$FIELDS f "
                "ON f.RDB$FIELD_NAME = rf.RDB$FIELD_SOURCE WHERE rf.RDB$RELATION_NAME = ? AND rf.RDB$FIELD_NAME = ?",
                (number, seq, text, table, name)))
    return out


# Decoded by TXT's own last line (UTF-8 is checked, ASCII a subset) or raw bytes (NONE, OCTETS).
_NOT_BRANCHED = {"NONE", "OCTETS", "UTF8", "UNICODE_FSS"}


def charset_branches(info: TableInfo) -> str:
    """TXT's one line per character set: the bytes read in that set (PSQL has no cast to a set
    named at run time). Every set of the database, so any connection's bytes are decoded."""
    lines = []
    for i, n in info.charsets:
        if n in _NOT_BRANCHED:
            continue
        cs = f"VARCHAR(1020) CHARACTER SET {quote_ident(n)}"
        lines.append(f"      IF (cs = {i}) THEN BEGIN u = CAST(v AS {cs}); "
                     f"IF (CAST(CAST(u AS {cs}) AS VARCHAR(1020) CHARACTER SET OCTETS) = b "
                     f"AND OCTET_LENGTH(CAST(u AS {cs})) = OCTET_LENGTH(b)) THEN RETURN LEFT(u, 255); END")
    return "\n".join(lines)


def plan_dictionary(entry: TableEntry, prefix: str, kinds: dict[str, str]) -> list[Statement]:
    """Upserts of the name dictionaries (table and field numbers -> names, types)."""
    p = prefix
    out = [Statement(f"UPDATE OR INSERT INTO {p}LOG_TABLES (NUM_TABLE, TABLE_NAME, KEY_COLUMNS, AUTHOR_COLUMN, "
                     f"EXCLUDED_COLUMNS, ENABLED) VALUES (?, ?, ?, ?, ?, ?) MATCHING (NUM_TABLE)",
                     (entry.number, entry.name, json.dumps(entry.key, ensure_ascii=False), entry.author,
                      json.dumps(entry.exclude, ensure_ascii=False), 1 if entry.enabled else 0))]
    for retired, fields in ((0, entry.fields), (1, entry.retired)):
        for name, f in fields.items():
            out.append(Statement(
                f"UPDATE OR INSERT INTO {p}LOG_FIELDS (NUM_TABLE, NUM_POLE, FIELD_NAME, FIELD_TYPE, FIELD_KIND, RETIRED) "
                f"VALUES (?, ?, ?, ?, ?, ?) MATCHING (NUM_TABLE, NUM_POLE)",
                (entry.number, f.number, name, f.type, kinds.get(f"{name}:{f.type}", "text"), retired)))
    return out


def dictionary_max(db: Database, prefix: str, num_table: int | None = None) -> int:
    if num_table is None:
        return db.scalar(f"SELECT MAX(NUM_TABLE) FROM {prefix}LOG_TABLES") or 0
    return db.scalar(f"SELECT MAX(NUM_POLE) FROM {prefix}LOG_FIELDS WHERE NUM_TABLE = ?", (num_table,)) or 0


@dataclass
class Drift:
    """What changed between the registry and the database for one table."""

    table: str
    added: list[str] = field(default_factory=list)
    dropped: list[str] = field(default_factory=list)
    retyped: list[str] = field(default_factory=list)
    missing_trigger: bool = False
    trigger_inactive: bool = False
    trigger_outdated: bool = False
    parts_missing: bool = False
    table_gone: bool = False
    regenerated: bool = False
    recovered: bool = False

    @property
    def any(self) -> bool:
        return bool(self.added or self.dropped or self.retyped or self.missing_trigger or self.trigger_inactive
                    or self.trigger_outdated or self.parts_missing or self.table_gone or self.recovered)

    def as_dict(self) -> dict:
        return {"table": self.table, "added": self.added, "dropped": self.dropped, "retyped": self.retyped,
                "missing_trigger": self.missing_trigger, "trigger_inactive": self.trigger_inactive,
                "trigger_outdated": self.trigger_outdated, "parts_missing": self.parts_missing,
                "table_gone": self.table_gone, "recovered": self.recovered}

    def describe(self) -> str:
        bits = []
        if self.recovered:
            bits.append("was missing from the registry: restored from the database's dictionary")
        if self.table_gone:
            bits.append("table no longer exists (marked disabled)")
        if self.added:
            bits.append("added " + ", ".join(self.added))
        if self.dropped:
            bits.append("dropped " + ", ".join(self.dropped))
        if self.retyped:
            bits.append("retyped " + "; ".join(self.retyped))
        if self.trigger_inactive:
            bits.append("trigger was INACTIVE (switched off outside fbaudit): re-created active")
        if self.missing_trigger:
            bits.append("trigger was missing: re-created")
        if self.trigger_outdated:
            bits.append("trigger differs from the registry (key/author/exclude edited, or a newer fbaudit): regenerated")
        if self.parts_missing and not bits:
            bits.append("trigger made by an fbaudit without schema-change support: regenerated, so ALTER TABLE "
                        "can follow it")
        if self.regenerated and not bits:
            bits.append("trigger regenerated (--regenerate)")
        return "; ".join(bits)


def reconcile(entry: TableEntry, info: TableInfo, *, first_free: int) -> Drift:
    """Bring ``entry.fields`` in line with the table; numbers are never reused."""
    drift = Drift(entry.name)
    logged, _ = logged_columns(info, entry.exclude)
    current = {c.name: c for c in logged}
    nxt = max(entry.max_field_number(), first_free - 1) + 1
    for name in list(entry.fields):
        f = entry.fields[name]
        col = current.get(name)
        if col is None:
            entry.retired[_retired_name(entry, name, f.number)] = entry.fields.pop(name)
            if name not in entry.exclude:
                drift.dropped.append(name)
        elif f.type and f.type != col.type:
            entry.retired[_retired_name(entry, name, f.number)] = entry.fields.pop(name)
            entry.fields[name] = FieldEntry(nxt, col.type)
            drift.retyped.append(f"{name}: {f.type} -> {col.type}")
            nxt += 1
        elif not f.type:
            f.type = col.type
    for c in logged:
        if c.name not in entry.fields:
            entry.fields[c.name] = FieldEntry(nxt, c.type)
            drift.added.append(c.name)
            nxt += 1
    return drift


def retire_field(entry: TableEntry, name: str) -> None:
    """Retire a field's number (its column is gone): it stays in the dictionary, never given again."""
    f = entry.fields.pop(name)
    entry.retired[_retired_name(entry, name, f.number)] = f


def _retired_name(entry: TableEntry, name: str, number: int) -> str:
    return name if name not in entry.retired else f"{name}#{number}"


def column_kinds(info: TableInfo) -> dict[str, str]:
    return {f"{c.name}:{c.type}": c.kind for c in info.columns}


def trigger_body(plan: list[Statement]) -> str:
    """The body (from ``AS`` on) of the CREATE TRIGGER statement in ``plan``."""
    return objects_trigger_body(next(s.sql for s in plan if s.sql.startswith("CREATE OR ALTER TRIGGER")))


def check_numbers(db: Database, prefix: str, registry: Registry) -> None:
    """Refuse a registry whose numbers disagree with the database's dictionary (LOG_TABLES /
    LOG_FIELDS), which history reads names from: a table or field given another number, a number
    that belongs to another name, a retired number given to a column again. Names the file and
    line and the number the dictionary holds; ConfigError, so nothing is changed."""
    tables = {name: num for num, name in db.query(
        f"SELECT NUM_TABLE, TRIM(TRAILING FROM TABLE_NAME) FROM {prefix}LOG_TABLES")}
    by_number = {num: name for name, num in tables.items()}
    fields: dict[int, dict[int, tuple[str, bool]]] = {}
    for num_table, num, name, retired in db.query(
            f"SELECT NUM_TABLE, NUM_POLE, TRIM(TRAILING FROM FIELD_NAME), RETIRED FROM {prefix}LOG_FIELDS"):
        fields.setdefault(num_table, {})[num] = (_unretired(name) if retired else name, bool(retired))
    db.commit()
    for entry in registry.tables.values():
        held = tables.get(entry.name)
        if held is not None and held != entry.number:
            raise ConfigError(f"{registry.where(entry.name, name='number')}: table {entry.name} has number "
                              f"{entry.number} here, but the database's dictionary holds {held} for it; history "
                              f"would name the wrong table. Put back number: {held}. Nothing was changed.")
        if held is None and entry.number in by_number:
            raise ConfigError(f"{registry.where(entry.name, name='number')}: table number {entry.number} belongs to "
                              f"{by_number[entry.number]} in the database's dictionary; numbers are never reused. "
                              f"Nothing was changed.")
        known = fields.get(entry.number, {})
        for section, items, retired in (("fields", entry.fields, False), ("retired", entry.retired, True)):
            for name, f in items.items():
                if f.number not in known:
                    continue
                dname, dretired = known[f.number]
                plain = _unretired(name) if retired else name
                if dname != plain:
                    raise ConfigError(f"{registry.where(entry.name, section, name)}: {entry.name}.{plain} has field "
                                      f"number {f.number} here, but the database's dictionary holds {f.number} for "
                                      f"{dname}" + _dictionary_number_of(known, plain) + "; history would name the "
                                      "wrong column. Nothing was changed.")
                if dretired and not retired:
                    raise ConfigError(f"{registry.where(entry.name, section, name)}: field number {f.number} of "
                                      f"{entry.name}.{plain} was retired (the column was dropped or retyped); a "
                                      f"number is never used again. Remove it from fields and run `fbaudit sync` "
                                      f"to give the column a new one. Nothing was changed.")


def _unretired(name: str) -> str:
    """A retired field's name without the ``#number`` a second retirement of that name adds
    (_retired_name); a column's own ``#`` stays."""
    return re.sub(r"#\d+$", "", name)


def _dictionary_number_of(known: dict[int, tuple[str, bool]], name: str) -> str:
    nums = [n for n, (dname, retired) in known.items() if dname == name and not retired]
    return f" (and {nums[0]} for {name})" if nums else ""


def entry_from_dictionary(db: Database, prefix: str, name: str) -> TableEntry | None:
    """Rebuild a registry entry from the database's name dictionaries.

    Used when the table is not in the registry file (a lost or foreign
    registry, or a trigger installed from `fbaudit ddl` output) so that its
    table and field numbers are kept, never reassigned.
    """
    rows = db.query(f"SELECT NUM_TABLE, KEY_COLUMNS, AUTHOR_COLUMN, EXCLUDED_COLUMNS, ENABLED "
                    f"FROM {prefix}LOG_TABLES WHERE TABLE_NAME = ?", (name,))
    if not rows:
        return None
    number, keys, author, excluded, enabled = rows[0]
    entry = TableEntry(name=name, number=number, enabled=bool(enabled), key=json.loads(keys or "[]"),
                       author=author, exclude=json.loads(excluded or "[]"))
    for num, fname, ftype, retired in db.query(
            f"SELECT NUM_POLE, TRIM(TRAILING FROM FIELD_NAME), TRIM(FIELD_TYPE), RETIRED FROM {prefix}LOG_FIELDS "
            f"WHERE NUM_TABLE = ? ORDER BY NUM_POLE", (number,)):
        target = entry.retired if retired else entry.fields
        target[_retired_name(entry, fname, num) if retired else fname] = FieldEntry(num, ftype)
    return entry


# --------------------------------------------------------------------------
# Commands (library API; the CLI calls these)
# --------------------------------------------------------------------------
def planned_objects(plan: list[Statement]) -> list[str]:
    """The objects a plan of init creates or updates, each once (its grants go with their object)."""
    return list(dict.fromkeys(st.object for st in plan if st.kind != "GRANT"))


def init(config: Config, *, source: str | None = None, dry_run: bool = False) -> Result:
    """Create the log database's objects, then the staging objects in each source.

    Idempotent. The log database comes first: when it cannot be reached or
    created, no source is touched.
    """
    res = Result({"log": {}, "sources": [], "dry_run": dry_run})
    would = "would create" if dry_run else "created"
    p = config.prefix
    names = [s.name for s in config.source(source)]
    exists = database_exists(config.log, client_library=config.client_library)
    if dry_run and not exists:
        plan = templates.render("log_init", P=p)
        res.add_plan(f"log database {config.log.describe()}", plan)
        res.data["log"] = {"create_database": True, "created": planned_objects(plan), "registered_sources": names}
        res.lines.append(f"log: would create database {config.log.database} and {', '.join(planned_objects(plan))}; "
                         f"would register {', '.join(names)}")
    else:
        with open_source(config, config.log, create=not dry_run) as db:
            plan = plan_init(db, p, template="log_init")
            res.add_plan(f"log database {config.log.describe()}", plan)
            registered: list[str] = []
            numbered = 0
            if dry_run:   # what would be registered: all when SOURCES does not exist yet
                registered = [n for n in names if plan or
                              not db.scalar(f"SELECT 1 FROM {p}SOURCES WHERE NAME = ?", (n,))]
                if not any(st.kind == "TABLE" and st.object == "LOG_PACKET" for st in plan):
                    numbered = unnumbered(db, p, column="LOG_PACKET.VERSION_NO" not in
                                           {st.object for st in plan})
            else:
                if plan:
                    apply_plan(db, plan)
                numbered = number_versions(db, p)
                for spec in config.source(source):
                    if not db.scalar(f"SELECT 1 FROM {p}SOURCES WHERE NAME = ?", (spec.name,)):
                        nid = (db.scalar(f"SELECT MAX(ID) FROM {p}SOURCES") or 0) + 1
                        db.execute(f"INSERT INTO {p}SOURCES (ID, NAME, DATABASE_DSN, ADDED_AT) "
                                   "VALUES (?, ?, ?, LOCALTIMESTAMP)", (nid, spec.name, spec.database))
                        registered.append(spec.name)
                db.commit()
            res.data["log"] = {"create_database": not exists, "created": planned_objects(plan),
                               "registered_sources": registered, "numbered_packets": numbered}
            res.lines.append("log: " + (f"{would} {', '.join(planned_objects(plan))}" if plan else "already initialized")
                             + (f"; {'would register' if dry_run else 'registered'} {', '.join(registered)}"
                                if registered else "")
                             + (f"; {'would number' if dry_run else 'numbered'} {numbered} packets (record "
                                f"versions, docs/versions.md)" if numbered else ""))
    log.info("[CAPTURE] log database %s: %s", config.log.database, res.lines[-1])

    def one(spec: SourceSpec) -> None:
        with open_source(config, spec) as db:
            plan = plan_init(db, p)
            res.add_plan(spec.describe(), plan)
            created = planned_objects(plan)
            if not dry_run:
                if plan:
                    apply_plan(db, plan)
                apply_plan(db, templates.render("main_seed", P=p))
                convert_progress(db, p)       # SHIPPED_TO, once (an older staging: from the packets' STATE)
            # A packet table made again (dropped outside fbaudit): the audit triggers may write it again.
            granted = grant_packet_tables(db, p) if not dry_run else []
            res.data["sources"].append({"source": spec.name, "created": created, "firebird": db.version,
                                        "granted": granted})
            line = f"{spec.name}: " + (f"{would} {', '.join(created)}" if created else "already initialized")
            if granted:
                line += f"; granted INSERT on {', '.join(granted)}"
            res.lines.append(line)
            log.info("[CAPTURE] %s", line)
    return for_each_source(config, source, res, one, log=log, tag="CAPTURE")


def _plan_enable(db: Database, config: Config, registry: Registry, table: str, *,
                 key: list[str] | None, author: str | None, exclude: list[str],
                 key_not_unique: bool = False) -> tuple[TableEntry | None, list[Statement], Result]:
    name = normalize_name(table)
    info = read_table(db, name)
    res = Result({"table": name})
    existing = registry.tables.get(name)
    if existing is None:
        existing = entry_from_dictionary(db, config.prefix, name)
        if existing is not None:
            res.warnings.append(f"{name} was not in the registry {registry.path}; its numbers were taken "
                                f"from the database's dictionary (table {existing.number}).")
    cols = {c.name for c in info.columns}
    key_cols = [normalize_name(k) for k in key] if key else None
    excl = [normalize_name(c) for c in exclude]
    for c in (key_cols or []) + excl + ([normalize_name(author)] if author else []):
        if c not in cols:
            raise CatalogError(f"Column {c!r} does not exist in table {name!r} "
                               f"(columns: {', '.join(sorted(cols))}).")
    if existing is not None and name in registry.tables and existing.enabled \
            and trigger_exists(db, config.prefix, existing.number) and not key and not author and not exclude:
        res.lines.append(f"{name}: already audited (table {existing.number}); nothing changed. "
                         "Use `fbaudit sync` to pick up column changes.")
        res.data.update(already=True, number=existing.number)
        return None, [], res
    if existing is not None:
        entry = existing
        entry.enabled = True
        if key_cols:
            entry.key = key_cols
        if author:
            entry.author = normalize_name(author)
        if excl:
            entry.exclude = sorted(set(entry.exclude) | set(excl))
    else:
        number = registry.next_table_number(dictionary_max(db, config.prefix))
        entry = TableEntry(name=name, number=number, key=key_cols or list(info.primary_key),
                           author=normalize_name(author) if author else None, exclude=excl)
    if not entry.key:
        raise CatalogError(f"Table {name!r} has no primary key. Name the columns that identify a row: "
                           f"fbaudit enable {table} --key COL [--key COL2]")
    unique, nullable = key_safety(db, name, entry.key)
    key_text = ", ".join(entry.key)
    if not unique:
        if not key_not_unique:
            raise CatalogError(f"{name}: the key ({key_text}) is not backed by a unique constraint or index, so two "
                               f"rows could share it and their histories would mix (revert could not tell them "
                               f"apart). Add a unique constraint, choose other --key columns, or give "
                               f"--key-not-unique to audit with it anyway. Nothing was changed.")
        res.warnings.append(f"{name}: the key ({key_text}) is not unique (--key-not-unique): rows that share a key "
                            f"share one history, and revert refuses such a key.")
    if nullable:
        res.warnings.append(f"{name}: key column{'s' if len(nullable) > 1 else ''} {', '.join(nullable)} may be "
                            f"NULL; rows whose key is NULL share one history.")
    logged, skipped = logged_columns(info, entry.exclude)
    for c in skipped:
        res.warnings.append(f"{name}.{c.name} ({c.type}) is not audited: {c.skip_reason}.")
    reconcile(entry, info, first_free=dictionary_max(db, config.prefix, entry.number) + 1)
    plan = plan_trigger(entry, info, config.prefix, db.major) + plan_dictionary(entry, config.prefix, column_kinds(info))
    res.data.update(number=entry.number, key=entry.key, author=entry.author, exclude=entry.exclude,
                    fields={n: f.number for n, f in entry.fields.items()},
                    skipped=[c.name for c in skipped], trigger=trigger_name(config.prefix, entry.number))
    res.lines.append(f"{name}: audited as table {entry.number}, {len(entry.fields)} fields logged, "
                     f"key ({', '.join(entry.key)}), trigger {trigger_name(config.prefix, entry.number)}")
    return entry, plan, res


def prepared_on(db: Database, table: str) -> dict[int, tuple]:
    """Statements other connections hold prepared that name ``table``: {statement id: (attachment,
    user, address, process)} from MON$STATEMENTS (a user who is not SYSDBA or the owner sees only
    their own connections there).

    Firebird keeps running a statement prepared before a trigger was created WITHOUT that trigger,
    until its connection prepares another statement on the table (measured on 3.0 and 5.0, tests/
    test_capture.py): changes through it are not audited. enable lists them before its commit and
    warns about those still prepared after it.
    """
    pattern = (re.compile(r'"' + re.escape(table) + r'"') if quote_ident(table) != table else
               re.compile(r'(?<![\w$"])' + re.escape(table) + r'(?![\w$"])', re.I))
    sql = ("SELECT s.MON$STATEMENT_ID, s.MON$SQL_TEXT, a.MON$ATTACHMENT_ID, TRIM(a.MON$USER), "
           "a.MON$REMOTE_ADDRESS, a.MON$REMOTE_PROCESS FROM MON$STATEMENTS s "
           "JOIN MON$ATTACHMENTS a ON a.MON$ATTACHMENT_ID = s.MON$ATTACHMENT_ID "
           "WHERE s.MON$ATTACHMENT_ID <> CURRENT_CONNECTION AND s.MON$SQL_TEXT CONTAINING ?")
    rows = db.query(sql, (table,), whole_blobs=True)
    db.commit()
    out = {}
    for sid, text, att, user, addr, proc in rows:
        if text and pattern.search(text):
            out[sid] = (att, user, addr, proc)
    return out


def _stale_warning(table: str, stale: dict[int, tuple]) -> str:
    atts = {}
    for att, user, addr, proc in stale.values():
        atts.setdefault(att, [att, user, addr, proc, 0])[4] += 1
    who = "; ".join(f"attachment {att} (user {user}" + (f", from {addr}" if addr else "")
                    + (f", {proc}" if proc else "") + f": {n} statement{'s' if n != 1 else ''})"
                    for att, user, addr, proc, n in list(atts.values())[:5])
    more = f" and {len(atts) - 5} more" if len(atts) > 5 else ""
    return (f"{table}: {len(atts)} connection(s) hold statements on {table} prepared before auditing started: "
            f"{who}{more}. Firebird runs those without the new trigger until that connection prepares another "
            f"statement on {table}, so changes through them are NOT audited until then (nor in a baseline). "
            f"Reconnect those applications (or restart their connection pools).")


def enable(config: Config, table: str, *, source: str | None = None, key: list[str] | None = None,
           author: str | None = None, exclude: Iterable[str] = (), dry_run: bool = False,
           baseline: bool = False, by: str | None = None, max_wait: float | None = None,
           key_not_unique: bool = False) -> Result:
    """Start auditing ``table``: assign numbers, write the registry, install the trigger.

    Per source, the trigger and dictionary rows go in one transaction; the
    registry file is written after that transaction commits. With
    ``baseline``, the rows that exist are then logged as their first version
    (fbaudit.baseline: ids reserved before the trigger, a wait of up to
    ``max_wait`` seconds for transactions older than it, one snapshot, batches).
    """
    out = Result({"sources": [], "dry_run": dry_run})

    def one(spec: SourceSpec) -> None:
        registry = Registry.load(spec.registry)
        taken = None
        with open_source(config, spec) as db:
            require_current(db, config.prefix)
            check_numbers(db, config.prefix, registry)       # a number the dictionary holds for another table
            entry, plan, res = _plan_enable(db, config, registry, table, key=key, author=author,
                                            exclude=list(exclude), key_not_unique=key_not_unique)
            if baseline and (entry is None or trigger_exists(db, config.prefix, entry.number)):
                raise FbauditError(
                    f"{normalize_name(table)} is audited already in {spec.name}, so a baseline now could be "
                    f"ordered before changes that are being captured at this moment; nothing was changed. A "
                    f"baseline is taken when auditing starts: `fbaudit disable {normalize_name(table)}`, then "
                    f"`fbaudit enable {normalize_name(table)} --baseline`.")
            if baseline:
                rows = baseline_mod.count_rows(db, entry.name)
                res.data["baseline"] = {"rows": rows}
                res.lines.append(f"{entry.name}: {'would log' if dry_run else 'logging'} {rows} existing row"
                                 f"{'s' if rows != 1 else ''} as {'their' if rows != 1 else 'its'} first version (baseline)")
            if entry and not dry_run:
                block = baseline_mod.reserve(db, config.prefix, rows) if baseline else None
                try:
                    info = read_table(db, entry.name) if baseline else None
                    held = prepared_on(db, entry.name)
                    apply_plan(db, plan)
                    registry.put(entry)
                    registry.save()
                    db.commit()                      # none of ours among the transactions the baseline waits for
                except BaseException:
                    if block:
                        baseline_mod.release(lambda **kw: open_source(config, spec, **kw), config.prefix, block)
                    raise
                stale = {k: v for k, v in prepared_on(db, entry.name).items() if k in held}
                res.data["stale_statements"] = len(stale)
                if stale:
                    res.warnings.append(_stale_warning(entry.name, stale))
                if block:
                    with Progress(rows) as bar:
                        taken = baseline_mod.take(
                            lambda **kw: open_source(config, spec, **kw), spec, config, entry, info, block,
                            expected=rows, author=by, progress=bar.advance,
                            max_wait=baseline_mod.MAX_WAIT if max_wait is None else max_wait)
        if taken:
            res.data["baseline"] = taken
            res.lines[-1] = (f"{entry.name}: baseline: {taken['rows']} existing row{'s' if taken['rows'] != 1 else ''} "
                             f"logged as {'their' if taken['rows'] != 1 else 'its'} first version "
                             f"({taken['field_rows']} field rows, "
                             f"{taken['seconds']:.1f} s); `fbaudit transfer` ships them")
        res.data["source"] = spec.name
        out.data["sources"].append(res.data)
        suffix = " (dry run: nothing changed)" if dry_run and entry else ""
        out.lines += [f"{spec.name}: {line}{suffix}" for line in res.lines]
        out.warnings += res.warnings
        out.add_plan(spec.describe(), plan)
        log.info("[CAPTURE] %s: %s%s", spec.name, res.lines[-1], suffix)
    return for_each_source(config, source, out, one, log=log, tag="CAPTURE")


def disable(config: Config, table: str, *, source: str | None = None, dry_run: bool = False) -> Result:
    """Stop auditing ``table``: drop its trigger; its numbers stay reserved."""
    name = normalize_name(table)
    out = Result({"sources": [], "dry_run": dry_run})

    def one(spec: SourceSpec) -> None:
        registry = Registry.load(spec.registry)
        entry = registry.tables.get(name)
        with open_source(config, spec) as db:
            require_init(db, config.prefix)
            check_numbers(db, config.prefix, registry)
            if entry is None:
                entry = entry_from_dictionary(db, config.prefix, name)
            if entry is None:
                raise CatalogError(f"Table {name!r} is not audited in {spec.describe()} "
                                   f"(not in the registry {spec.registry}); nothing to disable.")
            plan = []
            if trigger_exists(db, config.prefix, entry.number):
                plan.append(Statement(f"DROP TRIGGER {trigger_name(config.prefix, entry.number)}"))
            plan.append(Statement(f"UPDATE {config.prefix}LOG_TABLES SET ENABLED = 0 WHERE NUM_TABLE = ?",
                                  (entry.number,)))
            if table_exists(db, config.prefix + "LOG_PARTS"):
                plan.append(Statement(f"DELETE FROM {config.prefix}LOG_PARTS WHERE NUM_TABLE = ?",
                                      (entry.number,)))
            if entry.number in upgrades(db, config.prefix):
                plan.append(Statement(f"DELETE FROM {config.prefix}LOG_UPGRADE WHERE NUM_TABLE = ?",
                                      (entry.number,)))
            if not dry_run:
                apply_plan(db, plan)
                entry.enabled = False
                registry.put(entry)
                registry.save()
        out.add_plan(spec.describe(), plan)
        out.data["sources"].append({"source": spec.name, "table": name, "number": entry.number})
        line = (f"{spec.name}: {name} no longer audited (table number {entry.number} stays reserved)"
                + (" (dry run: nothing changed)" if dry_run else ""))
        out.lines.append(line)
        log.info("[CAPTURE] %s", line)
    return for_each_source(config, source, out, one, log=log, tag="CAPTURE")


def sync(config: Config, *, source: str | None = None, dry_run: bool = False, regenerate: bool = False) -> Result:
    """Find drift between registry and database; renumber and regenerate triggers.

    Drift: columns added, dropped or retyped; a missing trigger; a trigger
    whose SQL differs from what the registry now asks for (hand-edited
    ``key`` / ``author`` / ``exclude``, or a newer fbaudit).
    """
    out = Result({"sources": [], "dry_run": dry_run})

    def one(spec: SourceSpec) -> None:
        registry = Registry.load(spec.registry)
        drifts: list[Drift] = []
        plan: list[Statement] = []
        with open_source(config, spec) as db:
            require_current(db, config.prefix)
            check_numbers(db, config.prefix, registry)
            in_upgrade = [u for u in upgrades(db, config.prefix).values() if u.open]
            if in_upgrade:
                names = {e.number: e.name for e in registry.tables.values()}
                raise FbauditError(
                    f"{spec.name}: an upgrade is in progress (begun {in_upgrade[0].started_at:%Y-%m-%d %H:%M:%S} "
                    f"by {in_upgrade[0].started_by}; tables "
                    f"{', '.join(names.get(u.number, f'#{u.number}') for u in in_upgrade)}): their audit "
                    "triggers log keys only. `fbaudit upgrade end` ends it, gives renamed columns their "
                    "numbers and logs the changed rows whole; sync now would end it without that. Nothing "
                    "was changed.")
            changed_entries = []
            recovered = set()
            for (name,) in db.query(f"SELECT TRIM(TRAILING FROM TABLE_NAME) FROM {config.prefix}LOG_TABLES "
                                    "WHERE ENABLED = 1"):
                if name not in registry.tables:
                    registry.tables[name] = entry_from_dictionary(db, config.prefix, name)
                    recovered.add(name)
            for entry in list(registry.tables.values()):
                if not entry.enabled:
                    continue
                if not table_exists(db, entry.name):
                    entry.enabled = False
                    plan.append(Statement(f"UPDATE {config.prefix}LOG_TABLES SET ENABLED = 0 WHERE NUM_TABLE = ?",
                                          (entry.number,)))
                    drifts.append(Drift(entry.name, table_gone=True))
                    changed_entries.append(entry)
                    continue
                info = read_table(db, entry.name)
                d = reconcile(entry, info, first_free=dictionary_max(db, config.prefix, entry.number) + 1)
                trig = plan_trigger(entry, info, config.prefix, db.major)
                installed = installed_trigger_body(db, config.prefix, entry.number)
                d.missing_trigger = installed is None
                d.trigger_inactive = installed is not None and trigger_inactive(db, config.prefix, entry.number)
                d.trigger_outdated = (installed is not None and installed != trigger_body(trig)
                                      and not (d.added or d.dropped or d.retyped))
                d.recovered = entry.name in recovered
                d.parts_missing = not db.scalar(f"SELECT COUNT(*) FROM {config.prefix}LOG_PARTS "
                                                "WHERE NUM_TABLE = ?", (entry.number,))
                if d.any or regenerate:
                    plan += trig + plan_dictionary(entry, config.prefix, column_kinds(info))
                    changed_entries.append(entry)
                if d.any:
                    drifts.append(d)
                elif regenerate:
                    d.regenerated = True
                    drifts.append(d)
            if plan and not dry_run:
                apply_plan(db, plan)
                for e in changed_entries:
                    registry.put(e)
                registry.save()
        out.add_plan(spec.describe(), plan)
        out.data["sources"].append({"source": spec.name, "drift": [d.as_dict() for d in drifts if d.any]})
        if not drifts:
            out.lines.append(f"{spec.name}: registry and database agree")
        for d in drifts:
            out.lines.append(f"{spec.name}: {d.table}: {d.describe()}" + (" (dry run: nothing changed)" if dry_run else ""))
        for line in out.lines:
            log.info("[CAPTURE] %s", line)
    return for_each_source(config, source, out, one, log=log, tag="CAPTURE")


def ddl(config: Config, table: str | None = None, *, source: str | None = None) -> str:
    """The SQL `init` (no table) or `enable TABLE` would run, as an isql script."""
    spec = one_source(config, source, why="The SQL is per database")
    then: list[Statement] = []
    with open_source(config, spec) as db:
        if table is None:
            stmts = plan_init(db, config.prefix) or templates.render("main_init", P=config.prefix)
            then = templates.render("main_seed", P=config.prefix)
            header = f"fbaudit init: staging objects for {spec.describe()} (Firebird {db.version})"
        else:
            if not is_initialized(db, config.prefix):
                raise FbauditError("Run `fbaudit init` first (or `fbaudit ddl` without a table to see its SQL).")
            require_current(db, config.prefix)
            registry = Registry.load(spec.registry)
            name = normalize_name(table)
            entry = registry.tables.get(name) or entry_from_dictionary(db, config.prefix, name)
            if entry is not None:
                info = read_table(db, name)
                reconcile(entry, info, first_free=dictionary_max(db, config.prefix, entry.number) + 1)
                stmts = plan_trigger(entry, info, config.prefix, db.major) + \
                    plan_dictionary(entry, config.prefix, column_kinds(info))
            else:
                _, stmts, _ = _plan_enable(db, config, registry, table, key=None, author=None, exclude=[])
            header = (f"fbaudit: audit trigger for {printable(name)} on {spec.describe()} (Firebird {db.version})\n"
                      "The dictionary rows keep its numbers; `fbaudit enable` later reuses them.")
    return templates.as_isql_script(stmts, header=header, then=then)


def set_logging(config: Config, on: bool, *, source: str | None = None) -> Result:
    """pause / resume: the article's ZAPIS switch (owner only)."""
    out = Result({"sources": []})

    def one(spec: SourceSpec) -> None:
        with open_source(config, spec) as db:
            require_init(db, config.prefix)
            db.execute(f"UPDATE {config.prefix}LOG_INFO SET ZAPIS = ?", (1 if on else 0,))
            # The switch itself is on record: a control event beside the DDL (docs/schema-changes.md).
            st = control_event(config.prefix, "RESUME LOGGING" if on else "PAUSE LOGGING", "SOURCE", spec.name,
                               f"fbaudit {'resume' if on else 'pause'}: logging of row changes switched "
                               f"{'on' if on else 'off'} in {spec.name}")
            db.execute(st.sql, st.params)
            db.commit()
        out.data["sources"].append({"source": spec.name, "logging": on})
        out.lines.append(f"{spec.name}: logging {'resumed' if on else 'paused'}")
        log.info("[CAPTURE] %s", out.lines[-1])
    return for_each_source(config, source, out, one, log=log, tag="CAPTURE")
