"""Capture in the main database: staging objects, generated audit triggers,
enable / disable / sync / pause / resume / status.

Every function here plans first (returns Statements) and applies the plan in
one transaction; ``dry_run`` returns the plan without touching the database.
"""
from __future__ import annotations

import dataclasses
import json
import re
import logging
import time
from dataclasses import dataclass, field
from typing import Callable, Iterable

from firebird.driver import Isolation, tpb

from . import templates
from .catalog import Column, TableInfo, read_table, table_exists
from .config import Config, SourceSpec
from .db import Database, apply_plan, database_exists, guard, open_database
from .errors import CatalogError, DatabaseError, FbauditError
from .idents import check_length, normalize_name, quote_ident
from .progress import Progress
from .registry import FieldEntry, Registry, TableEntry
from .templates import Statement

log = logging.getLogger("fbaudit.capture")

OPERATIONS = {1: "insert", 2: "update", 3: "delete", 4: "restore", 5: "baseline",
              6: "key_change", 7: "key_change_away"}
# Operations after which a version holds the whole record (with "key_change_away": it is gone
# from this key, like a delete; "key_change": it arrived with every field, like an insert).
ANCHORS = {1, 3, 5, 6, 7}
STATES = {0: "new", 1: "done", 2: "failed"}
# Object names init creates in the main database (without the prefix).
MAIN_OBJECTS = ("LOG_INFO", "LOG_PACKET", "LOG_1", "LOG_2", "LOG_3", "V_LOG_1", "V_LOG_2",
                "LOG_PACKET_FLAG", "LOG_PACKET_ID", "LOG_TABLES", "LOG_FIELDS", "LOG_PACKET_PK",
                "LOG_1_PACKET", "LOG_2_PACKET", "LOG_TABLES_PK", "LOG_FIELDS_PK", "NEW_PACKET",
                "LOG_PACKET_STATE", "DICT_VERSION", "LOG_TABLES_DV", "LOG_FIELDS_DV",
                "LOG_ROTATION", "LOG_ROTATION_PK", "LOG_QUIET", "LOG_QUIET_PK")
LOG_OBJECTS = ("SOURCES", "SOURCES_NAME", "LOG_PACKET_KEY", "LOG_PACKET_TIME", "DICT_TABLES_PK", "DICT_FIELDS_PK",
               "BLOB_INS", "PACKETS_INS", "TRANSFER_RUNS", "TRANSFER_RUNS_PK", "LOG_PACKET_DESC",
               "LOG_PACKET_LAST")


def trigger_name(prefix: str, number: int) -> str:
    return f"{prefix}AUDIT_{number}"


# --------------------------------------------------------------------------
# Canonical text forms (docs/capture.md): what the trigger stores per type.
# --------------------------------------------------------------------------
def value_expr(col: Column, ctx: str, major: int) -> str:
    """SQL expression giving the logged bytes of ``ctx.col`` (ctx is NEW or OLD)."""
    ref = f"{ctx}.{quote_ident(col.name)}"
    if col.kind == "binary":
        return ref                                   # raw bytes (OCTETS, NONE, binary BLOB)
    if col.kind == "text":
        if col.charset in ("UTF8",):
            return ref                               # already UTF-8
        # To a UTF-8 text BLOB, not a VARCHAR(n): no length in the trigger, so
        # widening the column later (ALTER ... TYPE VARCHAR(wider)) can never
        # make the trigger fail the application's write with a truncation error.
        return f"CAST({ref} AS BLOB SUB_TYPE TEXT CHARACTER SET UTF8)"
    if col.kind == "float":
        if major >= 4:                               # exact: 17 significant digits always round-trip
            return f"CAST(CAST({ref} AS DECFLOAT(34)) AS VARCHAR(64))"
        if col.type == "FLOAT":                      # FB3 prints FLOAT with 8 digits, too few to round-trip;
            return f"CAST(CAST({ref} AS DOUBLE PRECISION) AS VARCHAR(64))"   # 16 always do
        return f"CAST({ref} AS VARCHAR(64))"         # FB3: 16 significant digits (docs/capture.md)
    width = 80 if col.kind == "temporal" else 64
    return f"CAST({ref} AS VARCHAR({width}))"


def read_expr(col: Column, ctx: str, major: int) -> str:
    """value_expr in a SELECT read by Python (baseline, revert): the same logged form, but NONE text
    as bytes, which the trigger's BLOB parameter takes as they are and the driver could not decode."""
    return col.readable(f"{ctx}.{quote_ident(col.name)}") if col.charset == "NONE" else value_expr(col, ctx, major)


def changed_expr(col: Column, major: int) -> str:
    """SQL condition: ``NEW.col`` is logged differently from ``OLD.col`` (or one of them is NULL)."""
    terms = changed_terms(col, major)
    return terms[0] if len(terms) == 1 else "(" + " OR ".join(terms) + ")"


def changed_terms(col: Column, major: int) -> list[str]:
    """The terms of :func:`changed_expr`, to be joined with OR: ``IS DISTINCT FROM``, then the exact tests.

    ``IS DISTINCT FROM`` alone calls some values equal whose logged forms
    differ: trailing blanks (PAD SPACE) and trailing zero bytes (OCTETS,
    BLOBs), a case- or accent-insensitive collation, and on 4.0+ -0.0, DECFLOAT
    1.0 / 1.00 and one instant in two time zones. Such an update must still be
    logged, or history cannot rebuild the value. The extra terms run only when
    the plain comparison says "equal" (OR is short-circuited), and they use
    IS DISTINCT FROM too, so NULL and NULL stay "unchanged" (never NULL).
    """
    q = quote_ident(col.name)
    new, old = f"NEW.{q}", f"OLD.{q}"
    terms = [f"{new} IS DISTINCT FROM {old}"]
    if col.kind in ("text", "binary"):
        fixed = not col.is_blob and col.type.startswith(("CHAR(", "BINARY("))
        if not fixed:                               # CHAR / BINARY store the padding: same length when equal
            terms.append(f"OCTET_LENGTH({new}) IS DISTINCT FROM OCTET_LENGTH({old})")
        if col.kind == "text" and col.collation and col.charset:
            binary = quote_ident(col.charset)       # collation id 0: the character set's binary one
            terms.append(f"{new} COLLATE {binary} IS DISTINCT FROM {old} COLLATE {binary}")
    elif major >= 4 and (col.kind == "float" or col.type.startswith("DECFLOAT") or "TIME ZONE" in col.type):
        terms.append(f"{value_expr(col, 'NEW', major)} IS DISTINCT FROM {value_expr(col, 'OLD', major)}")
    return terms


KEY_PART_LENGTH = 1000   # RECORD_KEY is VARCHAR(1000); longer keys are cut, never an error


def short_text(ref: str, col: Column, length: int) -> str:
    """At most ``length`` characters of a text column as UTF-8, whatever its declared width.

    No declared length of the column appears here, so widening the column
    later can never make the trigger fail (UTF8 columns included).
    """
    return f"CAST(SUBSTRING({ref} FROM 1 FOR {length}) AS VARCHAR({length}) CHARACTER SET UTF8)"


def key_expr(cols: list[Column], ctx: str) -> str:
    """The record key as text: parts joined by '|', '\\' and '|' escaped, NULL as '\\N'."""
    parts = []
    for col in cols:
        ref = f"{ctx}.{quote_ident(col.name)}"
        if col.kind == "text":
            text = short_text(ref, col, KEY_PART_LENGTH)
            text = f"REPLACE(REPLACE({text}, '\\', '\\\\'), '|', '\\|')"
        elif col.kind in ("number", "temporal", "boolean"):
            text = f"CAST({ref} AS VARCHAR(80))"
        else:
            raise CatalogError(f"Key column {col.name!r} has type {col.type}, which cannot identify a record "
                               "in the log; choose other key columns with `key:` in the registry or --key.")
        parts.append(f"COALESCE({text}, '\\N')")
    return " || '|' || ".join(parts)


def encode_key(values: Iterable[str | None]) -> str:
    """Python twin of key_expr for canonical text values."""
    out = []
    for v in values:
        out.append("\\N" if v is None else v.replace("\\", "\\\\").replace("|", "\\|"))
    return "|".join(out)


def decode_key(text: str) -> list[str | None]:
    parts: list[str | None] = []
    cur, i, null = [], 0, False
    while i < len(text):
        ch = text[i]
        if ch == "\\" and i + 1 < len(text):
            nxt = text[i + 1]
            if nxt == "N":
                null = True
            else:
                cur.append(nxt)
            i += 2
            continue
        if ch == "|":
            parts.append(None if null else "".join(cur))
            cur, null = [], False
        else:
            cur.append(ch)
        i += 1
    parts.append(None if null else "".join(cur))
    return parts


# --------------------------------------------------------------------------
# Planning
# --------------------------------------------------------------------------
def _existing_objects(db: Database, prefix: str, columns: Iterable[str] = ()) -> set[str]:
    """fbaudit's objects that exist, without the prefix; ``columns`` (TABLE.COLUMN, the templates'
    "-- object: COLUMN" upgrades) are included as TABLE.COLUMN when the column exists."""
    columns = sorted(set(columns))
    sql = ("SELECT TRIM(RDB$RELATION_NAME) FROM RDB$RELATIONS WHERE RDB$RELATION_NAME STARTING WITH ? "
           "UNION ALL SELECT TRIM(RDB$GENERATOR_NAME) FROM RDB$GENERATORS WHERE RDB$GENERATOR_NAME STARTING WITH ? "
           "UNION ALL SELECT TRIM(RDB$INDEX_NAME) FROM RDB$INDICES WHERE RDB$INDEX_NAME STARTING WITH ? "
           "UNION ALL SELECT TRIM(RDB$PROCEDURE_NAME) FROM RDB$PROCEDURES WHERE RDB$PROCEDURE_NAME STARTING WITH ? "
           "UNION ALL SELECT TRIM(RDB$TRIGGER_NAME) FROM RDB$TRIGGERS WHERE RDB$TRIGGER_NAME STARTING WITH ?")
    params = [prefix] * 5
    for col in columns:
        table, field = col.split(".", 1)
        sql += (" UNION ALL SELECT TRIM(RDB$RELATION_NAME) || '.' || TRIM(RDB$FIELD_NAME) FROM RDB$RELATION_FIELDS "
                "WHERE RDB$RELATION_NAME = ? AND RDB$FIELD_NAME = ?")
        params += [prefix + table, field]
    rows = db.query(sql, tuple(params))
    db.commit()
    return {r[0][len(prefix):] for r in rows}


def check_prefix(prefix: str, major: int) -> None:
    for obj in MAIN_OBJECTS + LOG_OBJECTS + ("AUDIT_2147483647",):
        check_length(prefix + obj, major_version=major, what="fbaudit object")


def plan_init(db: Database, prefix: str, template: str = "main_init") -> list[Statement]:
    """Statements creating what is missing of the staging objects (idempotent)."""
    check_prefix(prefix, db.major)
    statements = templates.render(template, upgrades=True, P=prefix)
    have = _existing_objects(db, prefix, [st.object for st in statements if st.kind == "COLUMN"])
    plan = []
    for st in statements:
        if st.kind == "COLUMN" and any(p.kind == "TABLE" and p.object == st.object.split(".")[0] for p in plan):
            continue             # the table is created now, with the column
        if st.object not in have:
            plan.append(st)
        elif st.kind == "PROCEDURE" and _procedure_source(db, prefix + st.object) != _body(st.sql):
            # fbaudit's procedures are CREATE OR ALTER: a newer version replaces an older one.
            plan.append(dataclasses.replace(st, object=f"{st.object} (updated)"))
    return plan


NUMBER_LOCK_WAIT = 30.0     # seconds number_versions tries to take the transfers' lock


def _unnumbered(db: Database, p: str, *, column: bool) -> int:
    """Packets number_versions would number (all of them when the VERSION_NO column is not there yet)."""
    null = " AND VERSION_NO IS NULL" if column else ""
    n = db.scalar(f"SELECT COUNT(*) FROM {p}LOG_PACKET WHERE RECORD_KEY IS NOT NULL{null}")
    db.commit()
    return n


def number_versions(db: Database, prefix: str) -> int:
    """Number the packets of a log database made before VERSION_NO (1, 2, 3 ... per record, in packet
    order); returns how many lacked a number. Runs only when some do (an upgraded log database, or an
    init interrupted before numbering); then every record is numbered from its oldest packet kept."""
    p = prefix
    missing = f"FROM {p}LOG_PACKET WHERE VERSION_NO IS NULL AND RECORD_KEY IS NOT NULL"
    if not db.scalar(f"SELECT 1 FROM RDB$DATABASE WHERE EXISTS (SELECT 1 {missing})"):
        db.commit()
        return 0
    db.commit()
    # Every source's lock first, in this transaction: the transfers' own lock (transfer.load). A transfer
    # committing while the walk runs would otherwise keep a wrong number for good (1, 2, 1); now it waits
    # (and, after its lock timeout, retries on its next pass) until the numbering is committed.
    # Tries of 1 s each until NUMBER_LOCK_WAIT: a record-lock time-out and "the transfer committed
    # while we waited" (Firebird 3 READ COMMITTED: update conflict) give the same error codes.
    deadline = time.monotonic() + NUMBER_LOCK_WAIT
    while True:
        try:
            db.con.begin(tpb(Isolation.READ_COMMITTED_RECORD_VERSION, lock_timeout=1))
            db.execute(f"UPDATE {p}SOURCES SET LAST_TRANSFER_AT = LAST_TRANSFER_AT")
            break
        except DatabaseError as exc:
            db.rollback()
            if time.monotonic() < deadline:
                continue
            raise FbauditError(f"The log database's packets need version numbers, but a transfer is running and "
                               f"has held its source's lock for {NUMBER_LOCK_WAIT:g} s: nothing was numbered. "
                               f"Run `fbaudit init` again when the transfer has ended.\n  {exc}") from exc
    todo = db.scalar(f"SELECT COUNT(*) {missing}")
    if todo:
        # In index order (LOG_PACKET_KEY: no sort of the keys, which are up to 4,000 bytes each), counting
        # within a run of one key; where another key has the same KEY_HASH (a collision), the number
        # comes from that key's previous packet, already numbered in this transaction.
        db.execute(f"""EXECUTE BLOCK AS
  DECLARE s INTEGER; DECLARE t INTEGER; DECLARE h BIGINT; DECLARE k VARCHAR(1000) CHARACTER SET UTF8;
  DECLARE id BIGINT; DECLARE v BIGINT; DECLARE ps INTEGER; DECLARE pt INTEGER; DECLARE ph BIGINT;
  DECLARE pk VARCHAR(1000) CHARACTER SET UTF8; DECLARE n BIGINT = 0; DECLARE started BOOLEAN = FALSE;
BEGIN
  FOR SELECT SOURCE_ID, NUM_TABLE, KEY_HASH, RECORD_KEY, PACKET_ID, VERSION_NO FROM {p}LOG_PACKET
      WHERE RECORD_KEY IS NOT NULL ORDER BY SOURCE_ID, NUM_TABLE, KEY_HASH, PACKET_ID
      INTO :s, :t, :h, :k, :id, :v DO
  BEGIN
    IF (started AND s = ps AND t = pt AND h = ph AND k = pk) THEN
      n = n + 1;
    ELSE IF (started AND s = ps AND t = pt AND h = ph) THEN
    BEGIN
      n = NULL;
      SELECT FIRST 1 VERSION_NO FROM {p}LOG_PACKET
        WHERE SOURCE_ID = :s AND NUM_TABLE = :t AND KEY_HASH = :h AND PACKET_ID < :id AND RECORD_KEY = :k
        ORDER BY SOURCE_ID DESC, NUM_TABLE DESC, KEY_HASH DESC, PACKET_ID DESC INTO :n;
      n = COALESCE(n, 0) + 1;
    END
    ELSE
      n = 1;
    started = TRUE; ps = s; pt = t; ph = h; pk = k;
    IF (v IS DISTINCT FROM n) THEN UPDATE {p}LOG_PACKET SET VERSION_NO = :n WHERE SOURCE_ID = :s AND PACKET_ID = :id;
  END
END""")
    db.commit()
    return todo or 0


def _body(sql: str) -> str:
    """What Firebird stores as a PSQL module's source: the text after the line ``AS``."""
    return re.split(r"^AS\s*$", sql, maxsplit=1, flags=re.M)[-1].strip()


def _procedure_source(db: Database, name: str) -> str | None:
    rows = db.query("SELECT RDB$PROCEDURE_SOURCE FROM RDB$PROCEDURES WHERE RDB$PROCEDURE_NAME = ?", (name,),
                    whole_blobs=True)
    db.commit()
    return rows[0][0].strip() if rows and rows[0][0] is not None else None


def is_initialized(db: Database, prefix: str) -> bool:
    return table_exists(db, prefix + "LOG_INFO") and table_exists(db, prefix + "LOG_PACKET")


def _require_init(db: Database, prefix: str) -> None:
    if not is_initialized(db, prefix):
        raise FbauditError(f"Database {db.spec.describe()} has no fbaudit staging objects "
                           f"(prefix {prefix!r}). Run `fbaudit init` first.")


def _require_current(db: Database, prefix: str) -> None:
    """Before installing triggers: the staging objects they use exist (an older init lacks some)."""
    _require_init(db, prefix)
    if not table_exists(db, prefix + "LOG_QUIET"):
        raise FbauditError(f"Database {db.spec.describe()} has the staging objects of an older fbaudit "
                           f"({prefix}LOG_QUIET is missing). Run `fbaudit init` (it adds what is missing), "
                           "then `fbaudit sync`.")


def logged_columns(info: TableInfo, exclude: Iterable[str]) -> tuple[list[Column], list[Column]]:
    """(logged, skipped) columns: ARRAY/COMPUTED are skipped, excluded are dropped silently."""
    excl = set(exclude)
    logged = [c for c in info.columns if c.auditable and c.name not in excl]
    skipped = [c for c in info.columns if not c.auditable and c.name not in excl]
    return logged, skipped


# Up to this many logged fields the trigger inserts field rows inline; wider
# tables go through the local sub-procedure LF. Inline costs 2 contexts per
# field (the V_LOG_1 / V_LOG_2 branches) and compiles up to ~125 fields; LF is
# slower per call (measured: scripts/bench_capture.py --explore, docs/performance.md).
INLINE_MAX = 100


def plan_trigger(entry: TableEntry, info: TableInfo, prefix: str, major: int) -> list[Statement]:
    """CREATE OR ALTER TRIGGER for one table plus its grants."""
    cols = {c.name: c for c in info.columns}
    logged = [(entry.fields[c.name].number, c) for c in info.columns
              if c.name in entry.fields and c.auditable]
    if not logged:
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
        author = f"IIF(:op = 3, {a_old}, {a_new}), "
    inline = len(logged) <= INLINE_MAX
    fields, plain, exact = [], [], []
    for num, c in logged:
        new, old = value_expr(c, "NEW", major), value_expr(c, "OLD", major)
        if inline:
            ins = "INSERT INTO {view} (PACKET, NUM_POLE, BLOB_OLD, BLOB_NEW) VALUES (:pk, %d, %s, %s);" % (num, old, new)
            store = (f"IF (dt = 2) THEN {ins.format(view=prefix + 'V_LOG_2')} "
                     f"ELSE {ins.format(view=prefix + 'V_LOG_1')}")
        else:
            store = f"EXECUTE PROCEDURE LF(:pk, :dt, {num}, {old}, {new});"
        terms = changed_terms(c, major)
        # On a key change (kc = 1) every non-NULL field is logged: the new key's first version is whole.
        fields.append(f"  IF ((kc = 1 AND NEW.{quote_ident(c.name)} IS NOT NULL) OR {changed_expr(c, major)}) "
                      f"THEN {store}")
        plain.append(f"    {terms[0]}")
        exact += [f"    {t}" for t in terms[1:]]
    trig = trigger_name(prefix, entry.number)
    check_length(trig, major_version=major, what="trigger")
    return templates.render(
        "audit_trigger", P=prefix, TRIGGER=trig, TABLE=quote_ident(entry.name), NUM_TABLE=str(entry.number),
        # Every plain test first: an update that changes any field ends the check there.
        CHANGED=" OR\n".join(plain + exact),
        # The cheap test first: only when a key column changed are the key texts compared.
        KEY_COLUMNS_CHANGED=" OR ".join(f"NEW.{quote_ident(c.name)} IS DISTINCT FROM OLD.{quote_ident(c.name)}"
                                        for c in key_cols),
        NEW_KEY=key_expr(key_cols, "NEW"), OLD_KEY=key_expr(key_cols, "OLD"),
        AUTHOR=author, FIELDS="\n".join(fields), DB_CHARSET_ID=str(info.db_charset[0]),
        CHARSETS=charset_branches(info),
    )


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


def _dictionary_max(db: Database, prefix: str, num_table: int | None = None) -> int:
    if num_table is None:
        return db.scalar(f"SELECT MAX(NUM_TABLE) FROM {prefix}LOG_TABLES") or 0
    return db.scalar(f"SELECT MAX(NUM_POLE) FROM {prefix}LOG_FIELDS WHERE NUM_TABLE = ?", (num_table,)) or 0


def _dictionary_number(db: Database, prefix: str, name: str) -> int | None:
    return db.scalar(f"SELECT NUM_TABLE FROM {prefix}LOG_TABLES WHERE TABLE_NAME = ?", (name,))


@dataclass
class Drift:
    """What changed between the registry and the database for one table."""

    table: str
    added: list[str] = field(default_factory=list)
    dropped: list[str] = field(default_factory=list)
    retyped: list[str] = field(default_factory=list)
    missing_trigger: bool = False
    trigger_outdated: bool = False
    table_gone: bool = False
    regenerated: bool = False
    recovered: bool = False

    @property
    def any(self) -> bool:
        return bool(self.added or self.dropped or self.retyped or self.missing_trigger
                    or self.trigger_outdated or self.table_gone or self.recovered)

    def as_dict(self) -> dict:
        return {"table": self.table, "added": self.added, "dropped": self.dropped, "retyped": self.retyped,
                "missing_trigger": self.missing_trigger, "trigger_outdated": self.trigger_outdated,
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
        if self.missing_trigger:
            bits.append("trigger was missing: re-created")
        if self.trigger_outdated:
            bits.append("trigger differs from the registry (key/author/exclude edited, or a newer fbaudit): regenerated")
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


def _retired_name(entry: TableEntry, name: str, number: int) -> str:
    return name if name not in entry.retired else f"{name}#{number}"


def _kinds(info: TableInfo) -> dict[str, str]:
    return {f"{c.name}:{c.type}": c.kind for c in info.columns}


def trigger_exists(db: Database, prefix: str, number: int) -> bool:
    return bool(db.query("SELECT 1 FROM RDB$TRIGGERS WHERE RDB$TRIGGER_NAME = ?", (trigger_name(prefix, number),)))


def installed_trigger_body(db: Database, prefix: str, number: int) -> str | None:
    """The source of a table's installed audit trigger (from ``AS`` on), or None."""
    sql = "SELECT RDB$TRIGGER_SOURCE FROM RDB$TRIGGERS WHERE RDB$TRIGGER_NAME = ?"
    with guard(db.spec, sql):
        cur = db.con.cursor()
        cur.stream_blob_threshold = -1      # a wide table's source is over the driver's 64 KB: read it whole
        cur.execute(sql, (trigger_name(prefix, number),))
        row = cur.fetchone()
        cur.close()
    src = row[0] if row else None
    return src.strip() if src is not None else None


def trigger_body(plan: list[Statement]) -> str:
    """The body (from ``AS`` on) of the CREATE TRIGGER statement in ``plan``."""
    sql = next(s.sql for s in plan if s.sql.startswith("CREATE OR ALTER TRIGGER"))
    return sql[sql.index("\nAS\n") + 1:].strip()


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
            f"SELECT NUM_POLE, TRIM(FIELD_NAME), TRIM(FIELD_TYPE), RETIRED FROM {prefix}LOG_FIELDS "
            f"WHERE NUM_TABLE = ? ORDER BY NUM_POLE", (number,)):
        target = entry.retired if retired else entry.fields
        target[_retired_name(entry, fname, num) if retired else fname] = FieldEntry(num, ftype)
    return entry


# --------------------------------------------------------------------------
# Commands (library API; the CLI calls these)
# --------------------------------------------------------------------------
@dataclass
class Result:
    """What a command did, for people (``lines``) and for --json (``data``).

    ``errors`` holds (source name, error) for sources that failed: one broken
    source never stops the others; the CLI exits non-zero when there are any.
    """

    data: dict
    lines: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    statements: list[Statement] = field(default_factory=list)
    errors: list[tuple[str, FbauditError]] = field(default_factory=list)
    scripts: list[tuple[str, list[Statement]]] = field(default_factory=list)

    def add_plan(self, database: str, plan: list[Statement]) -> None:
        """Record the statements planned for one database (printed per database)."""
        if plan:
            self.statements += plan
            self.scripts.append((database, list(plan)))


def _open(config: Config, spec, create: bool = False, **transactions) -> Database:
    """Open a database of the config (``transactions``: see open_database)."""
    return open_database(spec, client_library=config.client_library, create=create, **transactions)


def _for_each_source(config: Config, source: str | None, out: Result,
                     work: Callable[[SourceSpec], None]) -> Result:
    """Run ``work`` per source; a failing source is recorded and the others go on.

    With a single source the error is raised as it is (nothing else to go on with).
    """
    specs = config.source(source)
    for spec in specs:
        try:
            work(spec)
        except FbauditError as exc:
            if len(specs) == 1:
                raise
            log.info("[CAPTURE] %s: FAILED: %s", spec.name, str(exc).splitlines()[0])
            out.errors.append((spec.name, exc))
            out.data.setdefault("sources", []).append({"source": spec.name, "error": str(exc)})
    return out


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
        res.data["log"] = {"create_database": True, "created": [s.object for s in plan], "registered_sources": names}
        res.lines.append(f"log: would create database {config.log.database} and {', '.join(s.object for s in plan)}; "
                         f"would register {', '.join(names)}")
    else:
        with _open(config, config.log, create=not dry_run) as db:
            plan = plan_init(db, p, template="log_init")
            res.add_plan(f"log database {config.log.describe()}", plan)
            registered: list[str] = []
            numbered = 0
            if dry_run:   # what would be registered: all when SOURCES does not exist yet
                registered = [n for n in names if plan or
                              not db.scalar(f"SELECT 1 FROM {p}SOURCES WHERE NAME = ?", (n,))]
                if not any(st.kind == "TABLE" and st.object == "LOG_PACKET" for st in plan):
                    numbered = _unnumbered(db, p, column="LOG_PACKET.VERSION_NO" not in
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
            res.data["log"] = {"create_database": not exists, "created": [s.object for s in plan],
                               "registered_sources": registered, "numbered_packets": numbered}
            res.lines.append("log: " + (f"{would} {', '.join(s.object for s in plan)}" if plan else "already initialized")
                             + (f"; {'would register' if dry_run else 'registered'} {', '.join(registered)}"
                                if registered else "")
                             + (f"; {'would number' if dry_run else 'numbered'} {numbered} packets (record "
                                f"versions, docs/versions.md)" if numbered else ""))
    log.info("[CAPTURE] log database %s: %s", config.log.database, res.lines[-1])

    def one(spec: SourceSpec) -> None:
        with _open(config, spec) as db:
            plan = plan_init(db, p)
            res.add_plan(spec.describe(), plan)
            created = [s.object for s in plan]
            if not dry_run:
                if plan:
                    apply_plan(db, plan)
                apply_plan(db, templates.render("main_seed", P=p))
            res.data["sources"].append({"source": spec.name, "created": created, "firebird": db.version})
            line = f"{spec.name}: " + (f"{would} {', '.join(created)}" if created else "already initialized")
            res.lines.append(line)
            log.info("[CAPTURE] %s", line)
    return _for_each_source(config, source, res, one)


def _plan_enable(db: Database, config: Config, registry: Registry, table: str, *,
                 key: list[str] | None, author: str | None, exclude: list[str]) -> tuple[TableEntry | None, list[Statement], Result]:
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
        number = registry.next_table_number(_dictionary_max(db, config.prefix))
        entry = TableEntry(name=name, number=number, key=key_cols or list(info.primary_key),
                           author=normalize_name(author) if author else None, exclude=excl)
    if not entry.key:
        raise CatalogError(f"Table {name!r} has no primary key. Name the columns that identify a row: "
                           f"fbaudit enable {table} --key COL [--key COL2]")
    logged, skipped = logged_columns(info, entry.exclude)
    for c in skipped:
        res.warnings.append(f"{name}.{c.name} ({c.type}) is not audited: {c.skip_reason}.")
    reconcile(entry, info, first_free=_dictionary_max(db, config.prefix, entry.number) + 1)
    plan = plan_trigger(entry, info, config.prefix, db.major) + plan_dictionary(entry, config.prefix, _kinds(info))
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
           baseline: bool = False, by: str | None = None, max_wait: float | None = None) -> Result:
    """Start auditing ``table``: assign numbers, write the registry, install the trigger.

    Per source, the trigger and dictionary rows go in one transaction; the
    registry file is written after that transaction commits. With
    ``baseline``, the rows that exist are then logged as their first version
    (fbaudit.baseline: ids reserved before the trigger, a wait of up to
    ``max_wait`` seconds for transactions older than it, one snapshot, batches).
    """
    from . import baseline as baseline_mod
    out = Result({"sources": [], "dry_run": dry_run})

    def one(spec: SourceSpec) -> None:
        registry = Registry.load(spec.registry)
        taken = None
        with _open(config, spec) as db:
            _require_current(db, config.prefix)
            entry, plan, res = _plan_enable(db, config, registry, table, key=key, author=author,
                                            exclude=list(exclude))
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
                info = read_table(db, entry.name) if baseline else None
                held = prepared_on(db, entry.name)
                apply_plan(db, plan)
                registry.put(entry)
                registry.save()
                db.commit()                      # none of ours among the transactions the baseline waits for
                stale = {k: v for k, v in prepared_on(db, entry.name).items() if k in held}
                res.data["stale_statements"] = len(stale)
                if stale:
                    res.warnings.append(_stale_warning(entry.name, stale))
                if block:
                    with Progress(rows) as bar:
                        taken = baseline_mod.take(
                            lambda **kw: _open(config, spec, **kw), spec, config, entry, info, block,
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
    return _for_each_source(config, source, out, one)


def disable(config: Config, table: str, *, source: str | None = None, dry_run: bool = False) -> Result:
    """Stop auditing ``table``: drop its trigger; its numbers stay reserved."""
    name = normalize_name(table)
    out = Result({"sources": [], "dry_run": dry_run})

    def one(spec: SourceSpec) -> None:
        registry = Registry.load(spec.registry)
        entry = registry.tables.get(name)
        with _open(config, spec) as db:
            _require_init(db, config.prefix)
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
    return _for_each_source(config, source, out, one)


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
        with _open(config, spec) as db:
            _require_current(db, config.prefix)
            changed_entries = []
            recovered = set()
            for (name,) in db.query(f"SELECT TRIM(TABLE_NAME) FROM {config.prefix}LOG_TABLES WHERE ENABLED = 1"):
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
                d = reconcile(entry, info, first_free=_dictionary_max(db, config.prefix, entry.number) + 1)
                trig = plan_trigger(entry, info, config.prefix, db.major)
                installed = installed_trigger_body(db, config.prefix, entry.number)
                d.missing_trigger = installed is None
                d.trigger_outdated = (installed is not None and installed != trigger_body(trig)
                                      and not (d.added or d.dropped or d.retyped))
                d.recovered = entry.name in recovered
                if d.any or regenerate:
                    plan += trig + plan_dictionary(entry, config.prefix, _kinds(info))
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
    return _for_each_source(config, source, out, one)


def ddl(config: Config, table: str | None = None, *, source: str | None = None) -> str:
    """The SQL `init` (no table) or `enable TABLE` would run, as an isql script."""
    if source is None and len(config.sources) > 1:
        raise FbauditError(f"{len(config.sources)} sources are configured: say whose SQL with --source NAME "
                           f"({', '.join(s.name for s in config.sources[:5])}{', …' if len(config.sources) > 5 else ''})")
    spec = config.source(source)[0]
    then: list[Statement] = []
    with _open(config, spec) as db:
        if table is None:
            stmts = plan_init(db, config.prefix) or templates.render("main_init", P=config.prefix)
            then = templates.render("main_seed", P=config.prefix)
            header = f"fbaudit init: staging objects for {spec.describe()} (Firebird {db.version})"
        else:
            if not is_initialized(db, config.prefix):
                raise FbauditError("Run `fbaudit init` first (or `fbaudit ddl` without a table to see its SQL).")
            _require_current(db, config.prefix)
            registry = Registry.load(spec.registry)
            name = normalize_name(table)
            entry = registry.tables.get(name) or entry_from_dictionary(db, config.prefix, name)
            if entry is not None:
                info = read_table(db, name)
                reconcile(entry, info, first_free=_dictionary_max(db, config.prefix, entry.number) + 1)
                stmts = plan_trigger(entry, info, config.prefix, db.major) + \
                    plan_dictionary(entry, config.prefix, _kinds(info))
            else:
                _, stmts, _ = _plan_enable(db, config, registry, table, key=None, author=None, exclude=[])
            header = (f"fbaudit: audit trigger for {name} on {spec.describe()} (Firebird {db.version})\n"
                      "The dictionary rows keep its numbers; `fbaudit enable` later reuses them.")
    return templates.as_isql_script(stmts, header=header, then=then)


def set_logging(config: Config, on: bool, *, source: str | None = None) -> Result:
    """pause / resume: the article's ZAPIS switch (owner only)."""
    out = Result({"sources": []})

    def one(spec: SourceSpec) -> None:
        with _open(config, spec) as db:
            _require_init(db, config.prefix)
            db.execute(f"UPDATE {config.prefix}LOG_INFO SET ZAPIS = ?", (1 if on else 0,))
            db.commit()
        out.data["sources"].append({"source": spec.name, "logging": on})
        out.lines.append(f"{spec.name}: logging {'resumed' if on else 'paused'}")
        log.info("[CAPTURE] %s", out.lines[-1])
    return _for_each_source(config, source, out, one)


def status(config: Config, **kwargs) -> Result:
    """``fbaudit status`` (fbaudit.status.status): state and health of every source."""
    from .status import status as _status
    return _status(config, **kwargs)
