"""Reading history from the log database: a record's versions, one packet.

Everything here reads only the log database (the source may be down): names
come from the per-source dictionaries the transfer copied there.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import datetime

from firebird.driver import Isolation

from .config import Config
from .db import Database, guard, timestamp_text
from .errors import FbauditError, NotFound
from .forms import (ANCHORS, KEY_PART_LENGTH, OPERATIONS, UNKNOWN_AFTER, SCHEMA_FIELDS, SCHEMA_OPERATIONS, SCHEMA_TABLE, NoneText, decode_key, decode_value,
                    encode_key, is_bytes_key, value_kind)
from .idents import normalize_name
from .logs import printable
from .sources import one_source, open_source

DEFAULT_LIMIT = 50
# One record's packets: through the LOG_PACKET_KEY index (KEY_HASH), then the exact key.
_RECORD = ("SOURCE_ID = ? AND NUM_TABLE = ? AND KEY_HASH = HASH(CAST(? AS VARCHAR(1000) CHARACTER SET UTF8)) "
           "AND RECORD_KEY = ?")


@dataclass
class TableRef:
    source_id: int
    source: str
    num_table: int
    name: str
    key_columns: list[str]
    key_bytes: tuple[bool, ...] = ()         # per key column: its part of the record key is bytes (forms.key_expr)
    none: NoneText = NoneText()              # how the source's CHARACTER SET NONE text reads

    def parse_key(self, text: str) -> tuple[str, dict[str, str | None]]:
        return parse_key(text, self.key_columns, self.key_bytes, self.none)

    def key_dict(self, record_key: str) -> dict[str, str | None]:
        return key_dict(record_key, self.key_columns, self.key_bytes, self.none)


def _reader(config: Config, db: Database | None = None):
    """The log database in one read-only SNAPSHOT transaction: a page of versions and its total agree.

    With ``db`` (a connection the caller keeps, e.g. the API's per-thread one) that connection is
    used and only its transaction ends here; otherwise one is opened and closed.
    """
    from contextlib import contextmanager

    @contextmanager
    def shared():
        try:
            yield db
        finally:
            db.rollback()          # read-only: ends the snapshot, the next call sees new packets
    return shared() if db is not None else open_source(config, config.log, isolation=Isolation.SNAPSHOT, read_only=True)


def _source_id(db: Database, config: Config, source: str | None) -> tuple[int, str]:
    p = config.prefix
    source = one_source(config, source).name
    sid = db.scalar(f"SELECT ID FROM {p}SOURCES WHERE NAME = ?", (source,))
    if sid is None:
        raise NotFound(f"Source {source!r} is not registered in the log database {config.log.describe()} "
                       "(run `fbaudit init`).")
    return sid, source


def resolve_table(db: Database, config: Config, table: str, source: str | None) -> TableRef:
    sid, sname = _source_id(db, config, source)
    p = config.prefix
    rows = db.query(f"SELECT NUM_TABLE, TABLE_NAME, KEY_COLUMNS FROM {p}DICT_TABLES WHERE SOURCE_ID = ?", (sid,))
    wanted = {table, normalize_name(table)}
    match = [r for r in rows if r[1] in wanted] or [r for r in rows if r[1].upper() == table.upper()]
    if len(match) != 1:
        known = ", ".join(sorted(r[1] for r in rows)) or "none yet (nothing transferred)"
        raise NotFound(f"No history for table {table!r} in source {sname!r}; tables with history: {known}.")
    num, name, keys = match[0]
    key_columns = json.loads(keys) if keys else []
    return TableRef(sid, sname, num, name, key_columns, _key_bytes(db, p, sid, num, key_columns),
                    none_text(config, sname))


def none_text(config: Config, source: str) -> NoneText:
    """How source ``source`` reads its CHARACTER SET NONE text (its ``none_charset``)."""
    spec = next((s for s in config.sources if s.name == source), None)
    return NoneText(spec.none_charset if spec else None)


def _key_bytes(db: Database, prefix: str, sid: int, num_table: int, key_columns: list[str]) -> tuple[bool, ...]:
    types = dict(db.query(f"SELECT TRIM(TRAILING FROM FIELD_NAME), TRIM(FIELD_TYPE) FROM {prefix}DICT_FIELDS "
                          f"WHERE SOURCE_ID = ? AND NUM_TABLE = ? AND RETIRED = 0", (sid, num_table)))
    return tuple(is_bytes_key(types.get(c, "")) for c in key_columns)


NULL_KEY = "\\N"      # a key part typed as this (the record key's own notation) is NULL
_NULLISH = re.compile(r"\\+N")   # NULL_KEY and the texts that look like it: typed with one backslash more


def typed_part(value: str | None) -> str:
    """One key part as a user types it: NULL as ``\\N``; a text made of backslashes and an N (``\\N``
    itself, ``\\\\N``, ...) with one backslash more, so that it is not read as NULL. Other texts as they are."""
    if value is None:
        return NULL_KEY
    return "\\" + value if _NULLISH.fullmatch(value) else value


def _part_of(typed: str) -> str | None:
    """typed_part's inverse."""
    if typed == NULL_KEY:
        return None
    return typed[1:] if _NULLISH.fullmatch(typed) else typed


def parse_key(text: str, key_columns: list[str], key_bytes: tuple[bool, ...] = (),
              none: NoneText = NoneText()) -> tuple[str, dict[str, str | None]]:
    """KEY as typed by a user -> (the stored RECORD_KEY, {column: value}).

    One-column key: the value itself. Composite: ``COL=VALUE,COL=VALUE`` in any
    order; a value may contain commas (a comma splits only before ``KNOWNCOL=``).
    A CHARACTER SET NONE or OCTETS key column is typed as its text shows (``none``), or as
    its bytes ``x'C8E2'``; a NULL part (a nullable key column) as ``\\N``.
    """
    def stored(values: list[str]) -> str:
        # typed_part's spelling of NULL; cut as the trigger cuts RECORD_KEY (forms.KEY_PART_LENGTH characters)
        parts = [_part_of(v) for v in values]
        return encode_key([none.key_part(v) if v is not None and i < len(key_bytes) and key_bytes[i] else v
                           for i, v in enumerate(parts)])[:KEY_PART_LENGTH]

    if len(key_columns) <= 1:
        col = key_columns[0] if key_columns else "KEY"
        if "=" in text and text.split("=", 1)[0].strip().upper() == col.upper():
            text = text.split("=", 1)[1]
        return stored([text]), {col: _part_of(text)}
    names = "|".join(re.escape(c) for c in sorted(key_columns, key=len, reverse=True))
    parts = re.split(rf",\s*(?=(?:{names})\s*=)", text, flags=re.I)
    values: dict[str, str] = {}
    for part in parts:
        if "=" not in part:
            raise FbauditError(f"Key {text!r}: the table's key has {len(key_columns)} columns "
                               f"({', '.join(key_columns)}); write it as "
                               + ",".join(f"{c}=VALUE" for c in key_columns))
        name, value = part.split("=", 1)
        col = next((c for c in key_columns if c.upper() == name.strip().upper()), None)
        if col is None:
            raise FbauditError(f"Key {text!r}: {name.strip()!r} is not a key column (key: {', '.join(key_columns)})")
        values[col] = value
    missing = [c for c in key_columns if c not in values]
    if missing:
        raise FbauditError(f"Key {text!r}: missing {', '.join(missing)} (key: {', '.join(key_columns)})")
    return stored([values[c] for c in key_columns]), {c: _part_of(values[c]) for c in key_columns}


def key_dict(record_key: str | None, key_columns: list[str], key_bytes: tuple[bool, ...] = (),
             none: NoneText = NoneText()) -> dict[str, str | None]:
    """A RECORD_KEY as {column: value shown}; {"key": record_key} when it does not match the columns."""
    if record_key is None:          # a whole-table event (checkpoint restore with --audit event)
        return {}
    parts = decode_key(record_key)
    if len(parts) != len(key_columns):
        return {"key": record_key}
    return {c: none.shown_key_part(v) if v is not None and i < len(key_bytes) and key_bytes[i] else v
            for i, (c, v) in enumerate(zip(key_columns, parts))}


def _fields(db: Database, prefix: str, sid: int, num_table: int) -> dict[int, tuple[str, str]]:
    """{field number: (name, kind as shown: forms.value_kind)} of one table."""
    return {num: (name, value_kind(kind, ftype)) for num, name, kind, ftype in db.query(
        f"SELECT NUM_POLE, FIELD_NAME, TRIM(FIELD_KIND), TRIM(FIELD_TYPE) FROM {prefix}DICT_FIELDS "
        f"WHERE SOURCE_ID = ? AND NUM_TABLE = ?", (sid, num_table))}


def _changes(db: Database, prefix: str, sid: int, packet_id: int, fields: dict[int, tuple[str, str]],
             none: NoneText) -> dict[str, dict[str, str | None]]:
    return _changes_of(db, prefix, sid, [packet_id], fields, none)[packet_id]


# Values up to this many bytes come back inline (one fetch); longer ones as BLOBs.
_INLINE = 4000


def _changes_of(db: Database, prefix: str, sid: int, packet_ids: list[int], fields: dict[int, tuple[str, str]],
                none: NoneText) -> dict[int, dict[str, dict[str, str | None]]]:
    """The field rows of several packets in one query (a page of history: one round trip, not 20)."""
    out: dict[int, dict[str, dict[str, str | None]]] = {pid: {} for pid in packet_ids}
    if not packet_ids:
        return out
    short = lambda c: (f"IIF(OCTET_LENGTH({c}) <= {_INLINE}, CAST({c} AS VARCHAR({_INLINE}) CHARACTER SET OCTETS), "
                       f"NULL), IIF(OCTET_LENGTH({c}) > {_INLINE}, {c}, NULL)")
    cur = db.con.cursor()
    with guard(db.spec):
        for i in range(0, len(packet_ids), 200):
            part = packet_ids[i:i + 200]
            cur.execute(f"SELECT PACKET_ID, NUM_POLE, {short('BLOB_OLD')}, {short('BLOB_NEW')}, "
                        f"BLOB_OLD IS NULL, BLOB_NEW IS NULL FROM {prefix}LOG "
                        f"WHERE SOURCE_ID = ? AND PACKET_ID IN ({', '.join('?' * len(part))}) "
                        f"ORDER BY PACKET_ID, NUM_POLE", (sid, *part))
            for pid, num, old_s, old_l, new_s, new_l, old_null, new_null in cur.fetchall():
                name, kind = fields.get(num, (f"#{num}", "text"))
                old = None if old_null else (old_s if old_s is not None else old_l)
                new = None if new_null else (new_s if new_s is not None else new_l)
                out[pid][name] = {"old": decode_value(old, kind, none), "new": decode_value(new, kind, none)}
    cur.close()
    return out


# A record's packets newest first: the order of the descending index LOG_PACKET_DESC, which a FIRST n
# or a walk reads without sorting (the same order is written out in PSQL in ddl/log_init.sql
# PACKETS_INS and objects.number_versions).
NEWEST_FIRST = "SOURCE_ID DESC, NUM_TABLE DESC, KEY_HASH DESC, PACKET_ID DESC"


def newest_order(alias: str = "") -> str:
    """NEWEST_FIRST with a table alias ("P.")."""
    return ", ".join(alias + c for c in NEWEST_FIRST.split(", "))


_PACKET_COLS = "PACKET_ID, CREATED_AT, OPERATION, AUTHOR, DB_USER, CLIENT_ADDRESS, TRANSACTION_ID, CHANGE_COMMENT"


def _version(row: tuple, number: int, changes: dict) -> dict:
    pid, at, op, author, user, address, txn, comment = row
    return {"version": number, "packet_id": pid, "operation": OPERATIONS.get(op, str(op)),
            "at": at.isoformat() if at else None, "author": author, "user": user,
            "client_address": address, "transaction_id": txn, "comment": comment, "changes": changes}


# After these a record does not exist under its key.
GONE = ("delete", "key_change_away", "delete_unrecorded")


def typed_key(record_key: str, ref: TableRef) -> str:
    """A RECORD_KEY as a user types it for `fbaudit history` (parse_key's inverse; a NULL part is NULL_KEY)."""
    values = ref.key_dict(record_key)
    if "key" in values and "key" not in ref.key_columns:
        return record_key
    shown = {c: typed_part(v) for c, v in values.items()}
    if len(shown) == 1:
        return next(iter(shown.values()))
    return ",".join(f"{c}={v}" for c, v in shown.items())


def _link_keys(db: Database, prefix: str, ref: TableRef, versions: list[dict]) -> None:
    """A key change is two packets with adjacent ids (the trigger reserves both): the old key's
    "key_change_away" and the new key's "key_change". Each version of either kind gets the other
    key as a user types it (``key_to`` / ``key_from``; None when that packet was pruned)."""
    other = {v["packet_id"] + (1 if v["operation"] == "key_change_away" else -1): v for v in versions
             if v["operation"] in ("key_change", "key_change_away")}
    if not other:
        return
    marks = ", ".join("?" * len(other))
    found = dict(db.query(f"SELECT PACKET_ID, RECORD_KEY FROM {prefix}LOG_PACKET WHERE SOURCE_ID = ? "
                          f"AND PACKET_ID IN ({marks})", (ref.source_id, *other)))
    for pid, v in other.items():
        name = "key_to" if v["operation"] == "key_change_away" else "key_from"
        v[name] = typed_key(found[pid], ref) if pid in found else None


def _bounds(db: Database, prefix: str, params: tuple) -> tuple[int, int] | None:
    """A record's oldest and newest version numbers kept (two probes of the key indexes), or None."""
    p = prefix
    one = f"SELECT FIRST 1 VERSION_NO FROM {p}LOG_PACKET WHERE {_RECORD} ORDER BY SOURCE_ID{{d}}, NUM_TABLE{{d}}, " \
          f"KEY_HASH{{d}}, PACKET_ID{{d}}"
    lo = db.scalar(one.format(d=""), params)
    if lo is None:
        return None
    return lo, db.scalar(one.format(d=" DESC"), params)


def _record(db: Database, config: Config, table: str, key: str, source: str | None):
    """One record: (table ref, its RECORD_KEY, the key as a dict, the _RECORD parameters, _bounds)."""
    ref = resolve_table(db, config, table, source)
    record_key, typed = ref.parse_key(key)
    params = (ref.source_id, ref.num_table, record_key, record_key)
    return ref, record_key, typed, params, _bounds(db, config.prefix, params)


def history(config: Config, table: str, key: str, *, source: str | None = None,
            limit: int | None = DEFAULT_LIMIT, offset: int = 0, newest_first: bool = False,
            db: Database | None = None) -> dict:
    """A record's versions (oldest first, or newest first), with the fields each changed.

    Versions carry the number the log gave them (LOG_PACKET.VERSION_NO): 1, 2, 3 ... from
    the record's first logged change, unchanged by a prune (which removes the oldest ones:
    the list then starts at ``first_version``). ``total`` is the number of versions from
    ``first_version`` to the newest, found with two index probes, not a count.
    """
    if limit is not None and limit < 1:
        raise FbauditError(f"--limit must be at least 1, not {limit}")
    if offset < 0:
        raise FbauditError(f"--offset cannot be negative ({offset})")
    p = config.prefix
    with _reader(config, db) as db:
        ref, record_key, key_dict, params, bounds = _record(db, config, table, key, source)
        first, last = bounds or (0, 0)
        total = last - first + 1 if bounds else 0
        rows = []
        if bounds:
            # A page is a range of version NUMBERS at both ends, so pages never overlap or skip,
            # even where numbers are missing (a log pruned by an older fbaudit by time alone).
            span = limit if limit else total
            lo, hi = (last - offset - span + 1, last - offset) if newest_first else \
                (first + offset, first + offset + span - 1)
            rows_clause = f" ROWS 1 TO {limit}" if limit else ""
            desc = " DESC" if newest_first else ""
            rows = db.query(f"SELECT {_PACKET_COLS}, VERSION_NO FROM {p}LOG_PACKET WHERE {_RECORD} "
                            f"AND VERSION_NO BETWEEN ? AND ? ORDER BY SOURCE_ID{desc}, NUM_TABLE{desc}, "
                            f"KEY_HASH{desc}, PACKET_ID{desc}{rows_clause}", (*params, lo, hi))
        fields = _fields(db, p, ref.source_id, ref.num_table)
        changes = _changes_of(db, p, ref.source_id, [r[0] for r in rows], fields, ref.none)
        versions = [_version(r[:8], r[8], changes[r[0]]) for r in rows]
        _link_keys(db, p, ref, versions)
        # The DDL of the table from the first version shown on (to the newest, when it is shown):
        # "who altered this table, when" beside "who changed this row" (docs/schema-changes.md).
        schema = []
        if versions:
            ids = [v["packet_id"] for v in versions]
            newest_shown = max(v["version"] for v in versions) == last
            schema = table_events(db, p, ref.source_id, ref.name, min(ids), None if newest_shown else max(ids),
                                  ref.none)
        db.commit()
    return {"source": ref.source, "table": ref.name, "key": key_dict, "record_key": record_key,
            "versions": versions, "total": total, "first_version": first if bounds else None,
            "limit": limit, "offset": offset,
            "schema_events": [{k: e[k] for k in ("packet_id", "at", "user", "event", "sql", "audit_trigger")}
                              for e in schema]}


def version_detail(config: Config, table: str, key: str, number: int | None, *, source: str | None = None,
                   db=None) -> dict:
    """Version ``number`` (None: the newest) of a record, its changes, and the whole record after it,
    in ONE snapshot.

    The state is folded on the server (_FOLD): one walk down the descending index from the version
    to the last insert/baseline/delete at or before it, keeping the first packet seen per field;
    only those values are read. 10,000 versions, no anchor: 0.13 s (a sort of their field rows
    with their BLOBs took 2 s, docs/performance.md).
    """
    p = config.prefix
    with _reader(config, db) as db:
        ref, record_key, key_dict, params, bounds = _record(db, config, table, key, source)
        what = f"{ref.name} {', '.join(f'{k}={v}' for k, v in key_dict.items())}"
        if bounds is None:
            raise NotFound(f"{what}: no versions in the log database")
        first, last = bounds
        number = last if number is None else number
        if not first <= number <= last:
            raise NotFound(f"{what}: no version {number}; the record has versions {first} to {last}"
                           + (" (older ones were pruned)" if first > 1 else ""))
        rows = db.query(f"SELECT FIRST 1 {_PACKET_COLS}, VERSION_NO FROM {p}LOG_PACKET WHERE {_RECORD} "
                        f"AND VERSION_NO <= ? ORDER BY {NEWEST_FIRST}", (*params, number))
        if not rows or rows[0][8] != number:
            raise NotFound(f"{what}: version {number} is not in the log database (pruned)")
        fields = _fields(db, p, ref.source_id, ref.num_table)
        version = _version(rows[0][:8], number, _changes(db, p, ref.source_id, rows[0][0], fields, ref.none))
        # Which packet last set each field: one walk down the descending index from the version,
        # on the server, ending after the anchor (the last insert/baseline/delete); only the
        # (field, packet) pairs come back, then those values.
        last_set: dict[int, tuple[int, int]] = {}
        anchor = None
        with guard(db.spec):
            cur = db.con.cursor()
            cur.execute(_FOLD.format(p=p, order=newest_order("P."), anchors=", ".join(map(str, sorted(ANCHORS)))),
                        (ref.source_id, ref.num_table, record_key, number))
            anchor_op = None
            for num, pid, op in cur.fetchall():
                if num is None:
                    anchor, anchor_op = pid, op
                else:
                    last_set[num] = (pid, op)
            state_fields: dict[str, str | None] = {}
            if last_set:
                wanted = sorted({pid for pid, _op in last_set.values()})
                values = _changes_of(db, p, ref.source_id, wanted, fields, ref.none)
                by_num = {num: fields.get(num, (f"#{num}", "text"))[0] for num in last_set}
                for num in sorted(last_set):
                    pid, op = last_set[num]
                    change = values[pid].get(by_num[num], {"old": None, "new": None})
                    state_fields[by_num[num]] = change["old"] if op in (3, 7) else change["new"]
            cur.close()
        _link_keys(db, p, ref, [version])
        db.commit()
    # After a change made during an upgrade the values are not known (UNRECORDED): the fold ends
    # there, and only the fields changed since are.
    unrecorded = anchor_op in UNKNOWN_AFTER
    state = {"version": number, "exists": version["operation"] not in GONE, "fields": state_fields,
             "complete": anchor is not None and not unrecorded, "unrecorded": unrecorded}
    return {"source": ref.source, "table": ref.name, "key": key_dict, "record_key": record_key,
            "total": last - first + 1, "first_version": first, "newest": last, "version": version, "state": state}


def version_at(config: Config, table: str, key: str, at: datetime, *, source: str | None = None,
               db=None) -> dict:
    """The record's newest version made at or before ``at`` (the change's time, CREATED_AT on the
    source's clock; a baseline's is when it was taken): {"version": N or None, "first": (its first
    version, its time)} — None when every version kept is later. One walk down the record's
    descending index."""
    p = config.prefix
    with _reader(config, db) as db:
        ref, record_key, key_dict, params, bounds = _record(db, config, table, key, source)
        if bounds is None:
            raise NotFound(f"{ref.name} {', '.join(f'{k}={v}' for k, v in key_dict.items())}: no versions in the "
                           "log database")
        number = db.scalar(f"SELECT FIRST 1 VERSION_NO FROM {p}LOG_PACKET WHERE {_RECORD} "
                           f"AND CREATED_AT <= CAST(? AS TIMESTAMP) ORDER BY {NEWEST_FIRST}",
                           (*params, timestamp_text(at)))
        first_at = db.scalar(f"SELECT FIRST 1 CREATED_AT FROM {p}LOG_PACKET WHERE {_RECORD} "
                             f"ORDER BY SOURCE_ID, NUM_TABLE, KEY_HASH, PACKET_ID", params)
        db.commit()
    return {"source": ref.source, "table": ref.name, "key": key_dict, "version": number,
            "first": (bounds[0], first_at.isoformat() if first_at else None)}


# The fold's walk (version_detail): newest first from the version down the descending
# index, each packet's field numbers (LEFT JOIN: nested loops; an inner join is hashed over all of
# LOG on Firebird 5, 2 s for 10,000 versions), the first packet seen per field, until the packet
# after the anchor; the anchor is returned last with NUM_POLE NULL. "seen" holds ",n," per field.
_FOLD = """EXECUTE BLOCK (SID INTEGER = ?, NT INTEGER = ?, K VARCHAR(1000) CHARACTER SET UTF8 = ?, HI BIGINT = ?)
RETURNS (NUM_POLE INTEGER, PACKET_ID BIGINT, OP SMALLINT) AS
  DECLARE seen VARCHAR(32000) CHARACTER SET ASCII = ',';
  DECLARE pole INTEGER; DECLARE pid BIGINT; DECLARE o SMALLINT; DECLARE anchor BIGINT; DECLARE anchor_op SMALLINT;
BEGIN
  FOR SELECT P.PACKET_ID, P.OPERATION, L.NUM_POLE FROM {p}LOG_PACKET P
      LEFT JOIN {p}LOG L ON L.SOURCE_ID = P.SOURCE_ID AND L.PACKET_ID = P.PACKET_ID
      WHERE P.SOURCE_ID = :SID AND P.NUM_TABLE = :NT AND P.KEY_HASH = HASH(:K) AND P.RECORD_KEY = :K
        AND P.VERSION_NO <= :HI
      ORDER BY {order}
      INTO :pid, :o, :pole DO
  BEGIN
    IF (anchor IS NOT NULL AND pid <> anchor) THEN LEAVE;
    IF (o IN ({anchors})) THEN BEGIN anchor = pid; anchor_op = o; END
    IF (pole IS NOT NULL AND POSITION(',' || pole || ',' IN seen) = 0) THEN
    BEGIN
      seen = seen || pole || ',';
      NUM_POLE = pole; PACKET_ID = pid; OP = o;
      SUSPEND;
    END
  END
  IF (anchor IS NOT NULL) THEN
  BEGIN
    NUM_POLE = NULL; PACKET_ID = anchor; OP = anchor_op;
    SUSPEND;
  END
END"""


def show(config: Config, packet_id: int, *, source: str | None = None) -> dict:
    """One packet (one version of one record) with its changes."""
    p = config.prefix
    with _reader(config) as db:
        sid, sname = _source_id(db, config, source)
        rows = db.query(f"SELECT {_PACKET_COLS}, NUM_TABLE, RECORD_KEY, TRANSFERRED_AT FROM {p}LOG_PACKET "
                        f"WHERE SOURCE_ID = ? AND PACKET_ID = ?", (sid, packet_id))
        if not rows:
            raise NotFound(f"Packet {packet_id} of source {sname!r} is not in the log database "
                           "(not transferred yet, pruned, or no such packet).")
        row = rows[0]
        num_table, record_key, transferred = row[8], row[9], row[10]
        trow = db.query(f"SELECT TABLE_NAME, KEY_COLUMNS FROM {p}DICT_TABLES WHERE SOURCE_ID = ? AND NUM_TABLE = ?",
                        (sid, num_table))
        tname, keys = (trow[0][0], json.loads(trow[0][1]) if trow[0][1] else []) if trow else (f"#{num_table}", [])
        number = db.scalar(f"SELECT VERSION_NO FROM {p}LOG_PACKET WHERE SOURCE_ID = ? AND PACKET_ID = ?",
                           (sid, packet_id))
        none = none_text(config, sname)
        fields = _fields(db, p, sid, num_table)
        if num_table == SCHEMA_TABLE:        # a DDL or control event: its fields are text as the client sent it
            tname, fields = "(schema)", {n: (name, "none") for n, name in SCHEMA_FIELDS.items()}
        version = _version(row[:8], number, _changes(db, p, sid, packet_id, fields, none))
        key = key_dict(record_key, keys, _key_bytes(db, p, sid, num_table, keys), none)
        db.commit()
    return {"source": sname, "table": tname, "key": key, "record_key": record_key,
            "transferred_at": transferred.isoformat() if transferred else None, **version}


def format_value(v: str | None, width: int = 40) -> str:
    """A value for a human line, its control characters escaped (a line feed as \\n) and a backslash
    doubled where it would read as an escape (a backslash and n as \\\\n): logs.printable(exact=True),
    so every value can be read back. Cut to ``width`` characters as shown, never inside an escape."""
    if v is None:
        return "NULL"
    text = printable(v, exact=True)
    if len(text) <= width:
        return text
    cut = v[: width - 1]
    while len(printable(cut, exact=True)) > width - 1:
        cut = cut[:-1]
    return printable(cut, exact=True) + "…"


def history_lines(h: dict) -> list[str]:
    key = ", ".join(f"{k}={v}" for k, v in h["key"].items())
    if not h["total"]:
        return [f"{h['table']} {key}: no versions in the log database. The key is compared as logged "
                f"(canonical text: NUMERIC(10,2) 42 is 42.00, CHAR keeps its blanks); changes not yet "
                f"transferred are not here (`fbaudit transfer`)."]
    lines = [f"{h['table']} {key}: {h['total']} version{'s' if h['total'] != 1 else ''}"
             + (f" (showing {len(h['versions'])} from {h['offset'] + 1})" if len(h["versions"]) < h["total"] else "")]
    # The table's DDL between the versions, in the versions' own order (packet ids order both).
    desc = len(h["versions"]) > 1 and h["versions"][0]["packet_id"] > h["versions"][-1]["packet_id"]
    items = [(v["packet_id"], version_lines(v)) for v in h["versions"]]
    items += [(e["packet_id"], [_schema_line(e)]) for e in h.get("schema_events", [])]
    for _, block in sorted(items, key=lambda item: item[0], reverse=desc):
        lines += block
    return lines


def _schema_line(e: dict) -> str:
    sql = printable(" ".join((e["sql"] or "").split()))
    return f"  --  {e['at']}  {e['event']} by {e['user']}: {sql[:200]}{'...' if len(sql) > 200 else ''}"


def version_lines(v: dict) -> list[str]:
    head = (f"  v{v['version']}  {v['at']}  {v['operation']:<6}  by {v['author']}"
            + (f" (db user {v['user']})" if v["user"] and v["user"] != v["author"] else "")
            + f"  packet {v['packet_id']}" + (f"  comment: {v['comment']}" if v.get("comment") else ""))
    out = [head]
    if v["operation"] == "key_change_away":
        out.append(f"      key changed to {v.get('key_to') or '(pruned)'}: the record goes on under that key")
    elif v["operation"] == "key_change":
        out.append(f"      key changed from {v.get('key_from') or '(pruned)'}")
    elif v["operation"] == "delete_unrecorded":
        out.append("      deleted during a schema upgrade: its values were those of the version before")
    elif v["operation"].endswith("_unrecorded"):
        out.append("      changed during a schema upgrade: values not recorded (`fbaudit upgrade end` logs the "
                   "row whole)")
    for name, ch in v["changes"].items():
        if v["operation"] == "insert":
            out.append(f"      {name}: {format_value(ch['new'])}")
        elif v["operation"] == "delete":
            out.append(f"      {name}: {format_value(ch['old'])} (deleted)")
        else:
            out.append(f"      {name}: {format_value(ch['old'])} -> {format_value(ch['new'])}")
    return out


def state_lines(st: dict) -> list[str]:
    """``history --at N`` / ``--as-of T``: the whole record after a version (versions.record_state,
    record_as_of), a field a line."""
    what = f"{st['table']} {', '.join(f'{k}={v}' for k, v in st['key'].items())}"
    if "as_of" in st and st["version"] is None:
        return [f"{what} as of {st['as_of']}: no version yet (its first kept version, {st['first_version']}, is "
                f"from {st['first_at']})"]
    head = (what + (f" as of {st['as_of']}: version {st['version']} ({st['at']})" if "as_of" in st else
                    f" after version {st['version']}") + f" of {st['newest']}: " + ("" if st["exists"] else "DELETED")
            + ("" if st["complete"] else " (partial: values not recorded during a schema upgrade)"
               if st.get("unrecorded") else " (partial: the history starts with an update, or its start was pruned)"))
    w = max([len(n) for n in st["fields"]] + [1])
    return [head] + [f"  {n:<{w}}  {format_value(v, 80)}" for n, v in st["fields"].items()]


def diff_lines(d: dict) -> list[str]:
    """``history --diff A B``: the fields that differ between two versions (versions.record_diff)."""
    a, b = d["a"], d["b"]
    w = max([len(n) for n in d["fields"]] + [5])
    lines = [f"{d['table']} {', '.join(f'{k}={v}' for k, v in d['key'].items())}: version {a} | version {b}"]
    if d["a_exists"] != d["b_exists"]:
        lines.append(f"  {'(row)':<{w}}  {'exists' if d['a_exists'] else 'deleted'} | "
                     f"{'exists' if d['b_exists'] else 'deleted'}")
    lines += [f"  {n:<{w}}  {format_value(c['a'])} | {format_value(c['b'])}" for n, c in d["fields"].items()]
    if len(lines) == 1:
        lines.append("  no difference")
    return lines


MAX_LIMIT = 200
COUNT_CAP = 10_000      # search(): matching packets counted up to this (or to offset + limit)
TX_COUNT_CAP = 1_000    # transactions(): counted up to this (1M packets: 10,000 took 44 ms, 1,000 take 4)


# `--field F --value V`: a logged value is found by its first VALUE_PREFIX bytes through the expression
# indexes LOG_NEW_VALUE / LOG_OLD_VALUE (ddl/log_init.sql; the SQL text below must stay the index's),
# then compared whole.
VALUE_PREFIX = 64
VALUE_MATCH_CAP = 1_000_000   # field rows one value search considers at most (the derived table's FIRST)
SIDES = ("new", "old", "either")
_SIDE_COLUMN = {"new": "BLOB_NEW", "old": "BLOB_OLD"}
# The source's types whose logged form is CAST(value AS VARCHAR) (forms.value_expr): a value typed for
# them is put in that form by the log database (12 -> 12.00 for NUMERIC(9,2), 2026-1-5 -> 2026-01-05).
_CANONICAL_TYPE = re.compile(r"(SMALLINT|INTEGER|BIGINT|INT128|(NUMERIC|DECIMAL)\(\d{1,2}, ?\d{1,2}\)|DATE|TIME|"
                             r"TIMESTAMP|TIME WITH TIME ZONE|TIMESTAMP WITH TIME ZONE|BOOLEAN)")
_FLOAT_TYPE = re.compile(r"FLOAT|DOUBLE PRECISION|DECFLOAT\((16|34)\)")
_CHAR_TYPE = re.compile(r"CHAR\((\d{1,5})\)( CHARACTER SET \w+)?")


def value_index_expr(column: str) -> str:
    return f"CAST(SUBSTRING(L.{column} FROM 1 FOR {VALUE_PREFIX}) AS VARCHAR({VALUE_PREFIX}) CHARACTER SET OCTETS)"


def _logged_forms(db: Database, value: str, kind: str, ftype: str, none: NoneText, prefix: bool) -> list[bytes]:
    """The bytes the trigger may have logged for ``value`` typed for a field of this kind and type (none:
    no value of this type is that text: 'abc' or 1.6 for an INTEGER, 10.499 for a NUMERIC(9,2))."""
    from decimal import Decimal, InvalidOperation
    try:
        if kind == "binary":
            if value_kind(kind, ftype) == "none":
                return [none.to_bytes(value)]
            text = value[2:-1] if value[:2].lower() == "x'" and value.endswith("'") else value
            return [bytes.fromhex(text)]
    except (ValueError, FbauditError):      # not hex; not writable in the source's none_charset
        return []
    if prefix:
        return [value.encode("utf-8")]
    char = _CHAR_TYPE.fullmatch(ftype)
    if kind == "text" and char:              # CHAR(n) is logged padded with blanks to n characters
        return [value.ljust(int(char.group(1))).encode("utf-8")]
    casts = []
    # By the type, not the kind: a retired field's dictionary row may say "text" for an INTEGER.
    numeric = re.match(r"(SMALLINT|INTEGER|BIGINT|INT128|NUMERIC|DECIMAL)\b", ftype) is not None
    if _CANONICAL_TYPE.fullmatch(ftype):
        casts = [f"CAST(CAST(CAST(? AS VARCHAR(100)) AS {ftype}) AS VARCHAR(80))"]
    elif _FLOAT_TYPE.fullmatch(ftype):
        # forms.value_expr: 3.0 logs the double's own text, 4.0 and later its exact DECFLOAT(34) text;
        # the log database makes the forms its version has (a 3.0 source's FLOAT: through DOUBLE).
        typed = f"CAST(CAST(? AS VARCHAR(100)) AS {ftype})"
        casts = [f"CAST({typed} AS VARCHAR(64))", f"CAST(CAST({typed} AS DOUBLE PRECISION) AS VARCHAR(64))"]
        if db.major >= 4:
            casts.append(f"CAST(CAST({typed} AS DECFLOAT(34)) AS VARCHAR(64))")
    if not casts:
        return [value.encode("utf-8")]
    forms = []
    for cast in casts:          # the type text is checked above: only these fixed forms reach the SQL
        try:
            form = db.scalar(f"SELECT {cast} FROM RDB$DATABASE", (value,))
        except FbauditError:
            return []
        if form is None:
            continue
        if numeric:             # a cast that rounded is another value: 10.499 is not 10.50
            try:
                if Decimal(form) != Decimal(value.strip()):
                    return []
            except InvalidOperation:
                return []
        forms.append(form.strip().encode("utf-8") if _FLOAT_TYPE.fullmatch(ftype) else form.encode("utf-8"))
    return list(dict.fromkeys(forms))


def _value_filter(db: Database, p: str, sid: int, sname: str, config: Config, table_num: int | None, field: str,
                  value: str, side: str, prefix: bool) -> tuple[str, list, str, list]:
    """Conditions matching field rows of ``field`` whose value on ``side`` is ``value`` (or starts with
    it): one over LOG L alone (the value index's), one over the packet P and the row's field V.NUM_POLE."""
    if side not in SIDES:
        raise FbauditError(f"side must be one of {', '.join(SIDES)}, not {side!r}")
    if value == "":
        raise FbauditError("--value cannot be empty (to find NULLs, look at the record's history)")
    name = normalize_name(field)
    # Retired fields too (named NAME#n once retired): their old values are in their old type's form.
    wanted = {field, name}
    rows = [r[1:] for r in db.query(
        f"SELECT FIELD_NAME, NUM_TABLE, NUM_POLE, TRIM(FIELD_KIND), TRIM(FIELD_TYPE) FROM {p}DICT_FIELDS "
        f"WHERE SOURCE_ID = ?" + (" AND NUM_TABLE = ?" if table_num is not None else ""),
        (sid, *([table_num] if table_num is not None else [])))
        if r[0] in wanted or (r[0].rpartition("#")[0] in wanted and r[0].rpartition("#")[2].isdigit())]
    if not rows:
        raise NotFound(f"No logged field {field!r} in source {sname!r}" + (" in that table" if table_num else "")
                       + ": `fbaudit history TABLE KEY` shows a record's field names.")
    none = none_text(config, sname)
    by_form: dict[bytes, list[tuple[int, int]]] = {}
    for num, pole, kind, ftype in rows:
        for form in _logged_forms(db, value, kind, ftype, none, prefix):
            by_form.setdefault(form, []).append((num, pole))
    if not by_form:
        return "1 = 0", [], "1 = 0", []
    parts, params = [], []
    for form, fields in by_form.items():
        head = form[:VALUE_PREFIX]
        sides = ("new", "old") if side == "either" else (side,)
        matches = []
        for sd in sides:
            col = f"L.{_SIDE_COLUMN[sd]}"
            if prefix:
                m = f"{value_index_expr(_SIDE_COLUMN[sd])} STARTING WITH CAST(? AS VARCHAR({VALUE_PREFIX}) CHARACTER SET OCTETS)"
                params.append(head)
                if len(form) > VALUE_PREFIX:
                    m += f" AND SUBSTRING({col} FROM 1 FOR {len(form)}) = CAST(? AS BLOB SUB_TYPE BINARY)"
                    params.append(form)
            else:
                m = (f"{value_index_expr(_SIDE_COLUMN[sd])} = CAST(? AS VARCHAR({VALUE_PREFIX}) CHARACTER SET OCTETS) "
                     f"AND OCTET_LENGTH({col}) = {len(form)}")
                params.append(head)
                if len(form) > VALUE_PREFIX:
                    m += f" AND {col} = CAST(? AS BLOB SUB_TYPE BINARY)"
                    params.append(form)
            matches.append(f"({m})")
        poles = sorted({pole for _, pole in fields})
        parts.append(f"(({' OR '.join(matches)}) AND L.NUM_POLE IN ({', '.join('?' * len(poles))}))")
        params += poles
    pairs = sorted({pair for fields in by_form.values() for pair in fields})
    outer = " OR ".join("(P.NUM_TABLE = ? AND V.NUM_POLE = ?)" for _ in pairs)
    return "(" + " OR ".join(parts) + ")", params, f"({outer})", [x for pair in pairs for x in pair]


def search(config: Config, *, source: str | None = None, table: str | None = None, key: str | None = None,
           author: str | None = None, since: datetime | None = None, until: datetime | None = None,
           field: str | None = None, value: str | None = None, side: str = "new", prefix: bool = False,
           limit: int = 20, offset: int = 0, db: Database | None = None) -> dict:
    """Packets (versions of any record), newest first, filtered; with the names of the fields each changed.

    ``key`` needs ``table``. ``field`` and ``value``: only changes that set ``field`` to ``value``
    (``side`` "new"), changed it from ``value`` ("old"), or either; ``prefix``: values that start
    with it. Reads the log database only, in one snapshot. ``total`` is exact for
    one record's versions; otherwise matching packets are counted up to COUNT_CAP (or offset +
    limit, if more): when there are more, ``total`` is that cap and ``total_exact`` is False.
    """
    if (field is None) != (value is None):
        raise FbauditError("--field and --value go together: the field, and the value it was set to")
    if not 1 <= limit <= MAX_LIMIT:
        raise FbauditError(f"limit must be 1 to {MAX_LIMIT}, not {limit}")
    if offset < 0:
        raise FbauditError(f"offset cannot be negative ({offset})")
    if key is not None and table is None:
        raise FbauditError("a record key needs its table")
    p = config.prefix
    with _reader(config, db) as db:
        sid, sname = _source_id(db, config, source)
        where, params = ["P.SOURCE_ID = ?"], [sid]
        ref = None
        if table is None:
            where.append("P.NUM_TABLE <> 0")         # schema events (table 0): `fbaudit schema-log`
        if table is not None:
            ref = resolve_table(db, config, table, sname)
            where.append("P.NUM_TABLE = ?")
            params.append(ref.num_table)
            if key is not None:
                record_key, _ = ref.parse_key(key)
                where.append("P.KEY_HASH = HASH(CAST(? AS VARCHAR(1000) CHARACTER SET UTF8)) AND P.RECORD_KEY = ?")
                params += [record_key, record_key]
        extra, extra_params = _row_filters(config, db, sname, None, author, since, until)
        where += extra
        params += extra_params
        source_rows = f"{p}LOG_PACKET P"
        if field is not None:
            # Driven by the value index: the field rows first (a derived table with FIRST, which Firebird
            # evaluates as it is: 5.0 otherwise starts from the packets, 1M packets: 0.7 s, not 7 ms),
            # then their packets by primary key. "+ 0": not LOG's primary key (SOURCE_ID, ...) instead.
            lcond, lparams, pcond, pparams = _value_filter(db, p, sid, sname, config,
                                                           ref.num_table if ref else None, field, value, side, prefix)
            source_rows = (f"(SELECT FIRST {VALUE_MATCH_CAP} L.SOURCE_ID, L.PACKET_ID, L.NUM_POLE FROM {p}LOG L "
                           f"WHERE L.SOURCE_ID + 0 = ? AND {lcond} ORDER BY L.PACKET_ID + 0 DESC) V "
                           f"JOIN {p}LOG_PACKET P ON P.SOURCE_ID = V.SOURCE_ID AND P.PACKET_ID = V.PACKET_ID")
            where = [pcond] + where
            params = [sid, *lparams, *pparams, *params]
        cond = " AND ".join(where)
        # Newest first along a descending index (LOG_PACKET_DESC for one record, LOG_PACKET_LAST
        # otherwise), so a page reads its rows and no sort of all matching packets happens. With a
        # value, the matching rows come from the value index and are sorted ("+ 0": not along
        # LOG_PACKET_LAST, which would walk every packet of the source).
        order = newest_order("P.") if key is not None else "P.SOURCE_ID DESC, P.PACKET_ID DESC"
        if field is not None:
            order = "P.PACKET_ID + 0 DESC"
        exact = True
        if key is not None and author is None and since is None and until is None and field is None:
            bounds = _bounds(db, p, tuple(params))           # the record's version numbers: exact, 2 probes
            total = bounds[1] - bounds[0] + 1 if bounds else 0
        else:
            # Counted along the same index up to a cap: a count of 1M packets took 0.6 s, 10,001 take 10 ms.
            cap = max(COUNT_CAP, offset + limit)
            total = db.scalar(f"SELECT COUNT(*) FROM (SELECT FIRST {cap + 1} 1 X FROM {source_rows} "
                              f"WHERE {cond}" + (f" ORDER BY {order})" if field is None else ")"), params)
            if total > cap:
                total, exact = cap, False
        rows = db.query(f"SELECT {', '.join('P.' + c for c in _PACKET_COLS.split(', '))}, P.NUM_TABLE, P.RECORD_KEY, "
                        f"P.VERSION_NO FROM {source_rows} WHERE {cond} ORDER BY {order} "
                        f"ROWS {offset + 1} TO {offset + limit}", params)
        tables = {num: (name, json.loads(keys) if keys else []) for num, name, keys in db.query(
            f"SELECT NUM_TABLE, TABLE_NAME, KEY_COLUMNS FROM {p}DICT_TABLES WHERE SOURCE_ID = ?", (sid,))}
        names, types = {}, {}
        for t, n, f, ftype, retired in db.query(f"SELECT NUM_TABLE, NUM_POLE, FIELD_NAME, TRIM(FIELD_TYPE), RETIRED "
                                                f"FROM {p}DICT_FIELDS WHERE SOURCE_ID = ?", (sid,)):
            names[(t, n)] = f
            if not retired:
                types[(t, f)] = ftype
        none = none_text(config, sname)
        items = []
        poles: dict[int, list[int]] = {r[0]: [] for r in rows}
        if rows:
            for pid, n in db.query(f"SELECT PACKET_ID, NUM_POLE FROM {p}LOG WHERE SOURCE_ID = ? AND PACKET_ID IN "
                                   f"({', '.join('?' * len(rows))}) ORDER BY PACKET_ID, NUM_POLE",
                                   (sid, *[r[0] for r in rows])):
                poles[pid].append(n)
        for r in rows:
            num_table, record_key = r[8], r[9]
            fields = [names.get((num_table, n), f"#{n}") for n in poles[r[0]]]
            tname, kcols = tables.get(num_table, (f"#{num_table}", []))
            key = key_dict(record_key, kcols, tuple(is_bytes_key(types.get((num_table, c), "")) for c in kcols), none)
            items.append({"packet_id": r[0], "at": r[1].isoformat() if r[1] else None,
                          "operation": OPERATIONS.get(r[2], str(r[2])), "author": r[3], "user": r[4],
                          "comment": r[7], "table": tname,
                          "key": key, "version": r[10], "transaction_id": r[6],
                          "fields_changed": fields})
        db.commit()
    return {"source": sname, "items": items, "total": total, "total_exact": exact, "limit": limit,
            "offset": offset}


# --------------------------------------------------------------------------
# The schema log: every DDL statement of a source, and fbaudit's control events
# (docs/schema-changes.md). DDL_LOG (ddl/main_init.sql) stages each as a packet of
# table number 0 whose RECORD_KEY is the object's name; the transfer ships it
# exactly once with the row changes.
# --------------------------------------------------------------------------
def schema_events(config: Config, *, source: str | None = None, object_name: str | None = None,
                  since: datetime | None = None, until: datetime | None = None, limit: int = DEFAULT_LIMIT,
                  offset: int = 0, db: Database | None = None) -> dict:
    """A source's schema events, newest first: {"source", "events": [{"at", "user", "event",
    "object_type", "object", "sql", ...}], "total", "total_exact", "limit", "offset"}."""
    if not 1 <= limit <= MAX_LIMIT:
        raise FbauditError(f"limit must be 1 to {MAX_LIMIT}, not {limit}")
    if offset < 0:
        raise FbauditError(f"offset cannot be negative ({offset})")
    p = config.prefix
    with _reader(config, db) as db:
        sid, sname = _source_id(db, config, source)
        where = ["P.SOURCE_ID = ?", "P.NUM_TABLE = ?", f"P.OPERATION IN ({', '.join(map(str, sorted(SCHEMA_OPERATIONS)))})"]
        params: list = [sid, SCHEMA_TABLE]
        if object_name is not None:
            names = sorted({object_name, normalize_name(object_name)})
            where.append("(" + " OR ".join("(P.KEY_HASH = HASH(CAST(? AS VARCHAR(1000) CHARACTER SET UTF8)) "
                                            "AND P.RECORD_KEY = ?)" for _ in names) + ")")
            for n in names:
                params += [n, n]
        if since is not None:
            where.append("P.CREATED_AT >= CAST(? AS TIMESTAMP)")
            params.append(timestamp_text(since))
        if until is not None:
            where.append("P.CREATED_AT < CAST(? AS TIMESTAMP)")
            params.append(timestamp_text(until))
        cond = " AND ".join(where)
        order = "P.SOURCE_ID DESC, P.NUM_TABLE DESC, P.PACKET_ID DESC"       # LOG_PACKET_DDL
        cap = max(COUNT_CAP, offset + limit)
        total = db.scalar(f"SELECT COUNT(*) FROM (SELECT FIRST {cap + 1} 1 X FROM {p}LOG_PACKET P "
                          f"WHERE {cond} ORDER BY {order})", params)
        exact = total <= cap
        total = min(total, cap)
        out = read_events(db, p, sid, f"{cond} ORDER BY {order} ROWS {offset + 1} TO {offset + limit}", params,
                          none_text(config, sname))
        db.commit()
    return {"source": sname, "events": out, "total": total, "total_exact": exact, "limit": limit,
            "offset": offset}


def read_events(db: Database, p: str, sid: int, where: str, params, none) -> list[dict]:
    """The schema events ``WHERE`` picks (alias P, with its ORDER BY / ROWS), with their fields."""
    rows = db.query(f"SELECT P.PACKET_ID, P.CREATED_AT, P.OPERATION, P.DB_USER, P.CLIENT_ADDRESS, "
                    f"P.TRANSACTION_ID, P.RECORD_KEY FROM {p}LOG_PACKET P WHERE {where}", params)
    fields: dict[int, dict[str, str | None]] = {r[0]: {} for r in rows}
    if rows:
        for pid, num, raw in db.query(
                f"SELECT PACKET_ID, NUM_POLE, BLOB_NEW FROM {p}LOG WHERE SOURCE_ID = ? AND PACKET_ID IN "
                f"({', '.join('?' * len(rows))})", (sid, *[r[0] for r in rows]), whole_blobs=True):
            fields[pid][SCHEMA_FIELDS.get(num, f"#{num}")] = decode_value(raw, "none", none)
    out = []
    for pid, at, op, user, address, tx, name in rows:
        f = fields[pid]
        out.append({"packet_id": pid, "at": at.isoformat() if at else None, "user": user,
                    "client_address": address, "process": f.get("process"), "transaction_id": tx,
                    "kind": OPERATIONS.get(op, str(op)), "event": f.get("event"),
                    "object_type": f.get("object_type"), "object": f.get("object") or name,
                    "sql": f.get("sql"), "audit_trigger": f.get("audit_trigger")})
    return out


def table_events(db: Database, p: str, sid: int, table: str, after: int, upto: int | None, none) -> list[dict]:
    """The DDL of one table (its name as the event's object) and its control events (`upgrade begin`
    / `end`) with packet ids in (after, upto], oldest first: what a record's history marks between
    its versions."""
    where = ("P.SOURCE_ID = ? AND P.NUM_TABLE = ? AND P.KEY_HASH = HASH(CAST(? AS VARCHAR(1000) CHARACTER SET UTF8)) "
             "AND P.RECORD_KEY = ? AND P.OPERATION IN (8, 9) AND P.PACKET_ID > ?")
    params: list = [sid, SCHEMA_TABLE, table, table, after]
    if upto is not None:
        where += " AND P.PACKET_ID <= ?"
        params.append(upto)
    return read_events(db, p, sid, where + " ORDER BY P.SOURCE_ID, P.NUM_TABLE, P.KEY_HASH, P.PACKET_ID ROWS 1 TO 200",
                       params, none)


def schema_event_lines(res: dict) -> list[str]:
    """The text `fbaudit schema-log` prints: one event a paragraph, its statement indented."""
    if not res["events"]:
        return [f"{res['source']}: no schema events" + (" in this range" if res["offset"] else "")]
    more = "" if res["total_exact"] else "+"
    lines = [f"{res['source']}: {len(res['events'])} of {res['total']}{more} schema events, newest first"]
    for e in res["events"]:
        who = e["user"] or "?"
        if e["client_address"]:
            who += f" from {e['client_address']}"
        if e["process"]:
            who += f" ({e['process']})"
        lines.append(f"  {e['at']}  {e['event']}  {printable(e['object'] or '')}  by {printable(who)}"
                     f"  [tx {e['transaction_id']}]")
        for line in (e["sql"] or "").splitlines()[:20]:
            lines.append("      " + printable(line))
        if e["sql"] and len(e["sql"].splitlines()) > 20:
            lines.append(f"      ... ({len(e['sql'].splitlines()) - 20} more lines; --json shows all)")
        if e["audit_trigger"]:
            lines.append(f"      fbaudit: {e['audit_trigger']}")
    return lines


# --------------------------------------------------------------------------
# Transactions: every packet carries the source transaction that made the change
# (TRANSACTION_ID, the trigger's CURRENT_TRANSACTION); the log database indexes it
# (LOG_PACKET_TX, descending), so a page of transactions, newest first, walks the
# index and stops (1M packets: 2-3 ms, docs/versions.md "Transactions").
# A restore of a source database (gbak) starts its transaction numbers again, so
# after one, a number can name two transactions; their packets are listed together.
# --------------------------------------------------------------------------
def _row_filters(config: Config, db: Database, sname: str, table: str | None, author: str | None,
                 since: datetime | None, until: datetime | None) -> tuple[list[str], list]:
    where, params = [], []
    if table is not None:
        where.append("P.NUM_TABLE = ?")
        params.append(resolve_table(db, config, table, sname).num_table)
    if author is not None:
        where.append("P.AUTHOR = ?")
        params.append(author)
    if since is not None:
        where.append("P.CREATED_AT >= CAST(? AS TIMESTAMP)")
        params.append(timestamp_text(since))
    if until is not None:
        where.append("P.CREATED_AT < CAST(? AS TIMESTAMP)")
        params.append(timestamp_text(until))
    return where, params


def transactions(config: Config, *, source: str | None = None, table: str | None = None,
                 author: str | None = None, since: datetime | None = None, until: datetime | None = None,
                 limit: int = 20, offset: int = 0, db: Database | None = None) -> dict:
    """The source transactions with row changes in the log, newest (highest number) first: those that
    changed ``table``, had a change by ``author``, or a change in [since, until). Each with its first
    change's time, author and user, its number of changes and their tables and operations (all of the
    transaction's changes, not only the matching ones). ``total`` as in :func:`search`."""
    if not 1 <= limit <= MAX_LIMIT:
        raise FbauditError(f"limit must be 1 to {MAX_LIMIT}, not {limit}")
    if offset < 0:
        raise FbauditError(f"offset cannot be negative ({offset})")
    p = config.prefix
    with _reader(config, db) as db:
        sid, sname = _source_id(db, config, source)
        extra, extra_params = _row_filters(config, db, sname, table, author, since, until)
        cond = " AND ".join(["P.SOURCE_ID = ?", "P.TRANSACTION_ID IS NOT NULL", "P.NUM_TABLE <> 0"] + extra)
        params = [sid, *extra_params]
        grouped = (f"SELECT P.TRANSACTION_ID FROM {p}LOG_PACKET P WHERE {cond} GROUP BY P.TRANSACTION_ID "
                   "ORDER BY P.TRANSACTION_ID DESC")                    # LOG_PACKET_TX, walked and stopped
        cap = max(TX_COUNT_CAP, offset + limit)
        total = db.scalar(f"SELECT COUNT(*) FROM ({grouped} ROWS {cap + 1})", params)
        exact = total <= cap
        total = min(total, cap)
        ids = [r[0] for r in db.query(f"{grouped} ROWS {offset + 1} TO {offset + limit}", params)]
        items = _transaction_summaries(db, p, sid, sname, ids)
        db.commit()
    return {"source": sname, "transactions": items, "total": total, "total_exact": exact, "limit": limit,
            "offset": offset}


def _transaction_summaries(db: Database, p: str, sid: int, sname: str, ids: list[int]) -> list[dict]:
    if not ids:
        return []
    marks = ", ".join("?" * len(ids))
    names = {num: name for num, name in db.query(
        f"SELECT NUM_TABLE, TABLE_NAME FROM {p}DICT_TABLES WHERE SOURCE_ID = ?", (sid,))}
    per: dict[int, dict] = {tx: {"transaction_id": tx, "source": sname, "changes": 0, "tables": {},
                                 "operations": {}} for tx in ids}
    first: dict[int, int] = {}
    for tx, num, op, n, pid, at, last in db.query(
            f"SELECT P.TRANSACTION_ID, P.NUM_TABLE, P.OPERATION, COUNT(*), MIN(P.PACKET_ID), MIN(P.CREATED_AT), "
            f"MAX(P.CREATED_AT) FROM {p}LOG_PACKET P WHERE P.SOURCE_ID = ? AND P.TRANSACTION_ID IN ({marks}) "
            f"AND P.NUM_TABLE <> 0 GROUP BY 1, 2, 3", (sid, *ids)):
        t = per[tx]
        t["changes"] += n
        name = names.get(num, f"#{num}")
        t["tables"][name] = t["tables"].get(name, 0) + n
        opname = OPERATIONS.get(op, str(op))
        t["operations"][opname] = t["operations"].get(opname, 0) + n
        first[tx] = min(first.get(tx, pid), pid)
        t["until"] = max(t.get("until") or last, last)
    heads = {r[0]: r[1:] for r in db.query(
        f"SELECT P.PACKET_ID, P.CREATED_AT, P.AUTHOR, P.DB_USER, P.CLIENT_ADDRESS, P.CHANGE_COMMENT FROM "
        f"{p}LOG_PACKET P WHERE P.SOURCE_ID = ? AND P.PACKET_ID IN ({', '.join('?' * len(first))})",
        (sid, *first.values()))} if first else {}
    out = []
    for tx in ids:
        t = per[tx]
        at, author, user, address, comment = heads.get(first.get(tx), (None,) * 5)
        t.update(at=at.isoformat() if at else None, author=author, user=user, client_address=address,
                 comment=comment, until=t["until"].isoformat() if t.get("until") else None)
        out.append({k: t[k] for k in ("transaction_id", "source", "at", "until", "author", "user", "client_address",
                                      "comment", "changes", "tables", "operations")})
    return out


def transaction(config: Config, transaction_id: int, *, source: str | None = None, limit: int = MAX_LIMIT,
                offset: int = 0, db: Database | None = None) -> dict:
    """Every change one source transaction made, across tables, in the order it made them (packet
    order), with its fields old -> new, each as the version of its record it is; and the DDL it ran."""
    if not 1 <= limit <= 1000:
        raise FbauditError(f"limit must be 1 to 1000, not {limit}")
    if offset < 0:
        raise FbauditError(f"offset cannot be negative ({offset})")
    p = config.prefix
    with _reader(config, db) as db:
        sid, sname = _source_id(db, config, source)
        [summary] = _transaction_summaries(db, p, sid, sname, [transaction_id])
        events = read_events(db, p, sid, "P.SOURCE_ID = ? AND P.TRANSACTION_ID = ? AND P.NUM_TABLE = 0 "
                             "ORDER BY P.PACKET_ID", (sid, transaction_id), none_text(config, sname))
        if not summary["changes"] and not events:
            raise NotFound(f"Transaction {transaction_id} of source {sname!r} has no changes in the log database "
                           "(not transferred yet, pruned, or no such transaction).")
        # "+ 0": the transaction's packets through LOG_PACKET_TX, then sorted; ordered by PACKET_ID itself,
        # Firebird walks the primary key over every packet of the source (1M packets: 200 ms, not 1).
        rows = db.query(f"SELECT {_PACKET_COLS}, NUM_TABLE, RECORD_KEY, VERSION_NO FROM {p}LOG_PACKET "
                        f"WHERE SOURCE_ID = ? AND TRANSACTION_ID = ? AND NUM_TABLE <> 0 ORDER BY PACKET_ID + 0 "
                        f"ROWS {offset + 1} TO {offset + limit}", (sid, transaction_id))
        none = none_text(config, sname)
        tables = {num: (name, json.loads(keys) if keys else []) for num, name, keys in db.query(
            f"SELECT NUM_TABLE, TABLE_NAME, KEY_COLUMNS FROM {p}DICT_TABLES WHERE SOURCE_ID = ?", (sid,))}
        by_table: dict[int, list[int]] = {}
        for r in rows:
            by_table.setdefault(r[8], []).append(r[0])
        changes: dict[int, dict] = {}
        key_bytes: dict[int, tuple[bool, ...]] = {}
        for num, pids in by_table.items():
            changes.update(_changes_of(db, p, sid, pids, _fields(db, p, sid, num), none))
            key_bytes[num] = _key_bytes(db, p, sid, num, tables.get(num, ("", []))[1])
        items = []
        for r in rows:
            num, record_key, number = r[8], r[9], r[10]
            name, kcols = tables.get(num, (f"#{num}", []))
            items.append({"table": name, "key": key_dict(record_key, kcols, key_bytes[num], none),
                          **_version(r[:8], number, changes.get(r[0], {}))})
        db.commit()
    summary.update(items=items, schema_events=events, total=summary["changes"], limit=limit, offset=offset)
    return summary


def search_lines(res: dict) -> list[str]:
    """The text `fbaudit search` prints: a change a line, newest first."""
    if not res["items"]:
        return [f"{res['source']}: no changes found" + (" in this range" if res["offset"] else "")]
    more = "" if res["total_exact"] else "+"
    lines = [f"{res['source']}: {len(res['items'])} of {res['total']}{more} changes, newest first"]
    for v in res["items"]:
        key = ", ".join(f"{k}={x}" for k, x in v["key"].items())
        lines.append(f"  {v['at']}  {printable(v['table'])} {printable(key)}  version {v['version']} "
                     f"{v['operation']} by {printable(v['author'] or '?')}  tx {v['transaction_id']}: "
                     + printable(", ".join(v["fields_changed"])))
    shown = res["offset"] + len(res["items"])
    if shown < res["total"]:
        lines.append(f"  ... more: --offset {shown}")
    return lines


def transactions_lines(res: dict) -> list[str]:
    """The text `fbaudit transactions` prints: a transaction a line."""
    if not res["transactions"]:
        return [f"{res['source']}: no transactions" + (" in this range" if res["offset"] else "")]
    more = "" if res["total_exact"] else "+"
    lines = [f"{res['source']}: {len(res['transactions'])} of {res['total']}{more} transactions, newest first"]
    for t in res["transactions"]:
        who = t["author"] or "?"
        if t["user"] and t["user"] != t["author"]:
            who += f" (db user {t['user']})"
        tables = ", ".join(f"{printable(n)} {c}" for n, c in t["tables"].items())
        lines.append(f"  tx {t['transaction_id']}  {t['at']}  by {printable(who)}  {t['changes']} change"
                     f"{'s' if t['changes'] != 1 else ''}: {tables}")
    return lines


def transaction_lines(res: dict) -> list[str]:
    """The text `fbaudit transaction TX` prints: the summary, then each change as a version of its record."""
    who = res["author"] or "?"
    if res["user"] and res["user"] != res["author"]:
        who += f" (db user {res['user']})"
    tables = ", ".join(f"{printable(n)} ({c})" for n, c in res["tables"].items())
    lines = [f"{res['source']}: transaction {res['transaction_id']}, {res['at']}, by {printable(who)}: "
             f"{res['changes']} change{'s' if res['changes'] != 1 else ''}" + (f" in {tables}" if tables else "")]
    for e in res["schema_events"]:
        lines.append(_schema_line(e))
    for v in res["items"]:
        key = ", ".join(f"{k}={v_}" for k, v_ in v["key"].items())
        lines.append(f"  {printable(v['table'])} {printable(key)}")
        lines += ["  " + line for line in version_lines(v)]
    shown = res["offset"] + len(res["items"])
    if shown < res["total"]:
        lines.append(f"  ... {res['total'] - shown} more: --offset {shown}")
    return lines


# --------------------------------------------------------------------------
# A whole table as of a time, rebuilt from the log (`fbaudit export TABLE --as-of`)
# --------------------------------------------------------------------------
_WHOLE = {1, 5, 6}            # insert, baseline, key change: the version holds the whole row
_GONE_OPS = {3, 7, 12}        # delete, key changed away, deleted during an upgrade
_UNKNOWN_OPS = {10, 11}       # changed during an upgrade: values not recorded


class ExportFormat:
    """The text of an export (`fbaudit export`, GET /api/tables/{table}/as-of), written through ``out``
    (a function taking text): CSV with the table's columns then ``_version`` and ``_complete``, or a JSON
    array of the rows export_as_of gives. ``header`` and ``row`` are export_as_of's callbacks; ``end``
    closes the JSON array."""

    def __init__(self, fmt: str, out):
        import csv
        import io
        if fmt not in ("csv", "json"):
            raise FbauditError(f"format must be csv or json, not {fmt!r}")
        self.fmt, self.out, self.first, self.columns = fmt, out, True, []
        self._buf = io.StringIO()
        self._csv = csv.writer(self._buf)

    def _line(self, values: list) -> None:
        self._csv.writerow(values)
        self.out(self._buf.getvalue())
        self._buf.seek(0)
        self._buf.truncate()

    def header(self, names: list[str]) -> None:
        self.columns.extend(names)
        if self.fmt == "csv":
            self._line(self.columns + ["_version", "_complete"])

    def row(self, row: dict) -> None:
        if self.fmt == "json":
            self.out(("[\n" if self.first else ",\n") + json.dumps(row, ensure_ascii=False))
        else:
            self._line([row["fields"].get(c) if row["fields"].get(c) is not None else "" for c in self.columns]
                       + [row["version"], "true" if row["complete"] else "false"])
        self.first = False

    def end(self) -> None:
        if self.fmt == "json":
            self.out("[]\n" if self.first else "\n]\n")


def export_as_of(config: Config, table: str, at: datetime, write, *, source: str | None = None,
                 progress=None, header=None) -> dict:
    """Every record of ``table`` that existed at ``at``, as the log rebuilds it, streamed: one walk of
    the table's packets (LOG_PACKET_KEY: a record's packets together, in order) with their field rows,
    folded a record at a time, so memory does not grow with the table. ``write(row)`` gets
    {"key": {...}, "fields": {name: value}, "version": N, "complete": bool} per record; ``progress(n)``
    the packets read; ``header(columns)`` the field names (by number) first. Returns {"source", "table",
    "as_of", "columns", "records", "packets"}."""
    p = config.prefix
    with open_source(config, config.log, isolation=Isolation.SNAPSHOT, read_only=True) as db:
        ref = resolve_table(db, config, table, source)
        fields = _fields(db, p, ref.source_id, ref.num_table)
        columns = [fields[n][0] for n in sorted(fields)]
        if header:
            header(columns)
        records = packets = 0
        cur = db.con.cursor()
        cur.stream_blob_threshold = -1                 # a long value as bytes, whatever its length
        with guard(db.spec):
            # Only the new side: the state after each packet. Values up to _INLINE bytes come inline
            # (a BLOB fetched per row cost 3x the time); "+ 0" keeps the time test off LOG_PACKET_TIME
            # (a bitmap of every packet before the time, for nothing: the walk is by the key index).
            cur.execute(f"SELECT P.KEY_HASH, P.RECORD_KEY, P.PACKET_ID, P.OPERATION, P.VERSION_NO, L.NUM_POLE, "
                        f"IIF(OCTET_LENGTH(L.BLOB_NEW) <= {_INLINE}, CAST(L.BLOB_NEW AS VARCHAR({_INLINE}) "
                        f"CHARACTER SET OCTETS), NULL), IIF(OCTET_LENGTH(L.BLOB_NEW) > {_INLINE}, L.BLOB_NEW, NULL) "
                        f"FROM {p}LOG_PACKET P LEFT JOIN {p}LOG L ON L.SOURCE_ID = P.SOURCE_ID "
                        f"AND L.PACKET_ID = P.PACKET_ID WHERE P.SOURCE_ID = ? AND P.NUM_TABLE = ? AND P.RECORD_KEY IS NOT NULL "
                        f"AND P.CREATED_AT + 0 <= CAST(? AS TIMESTAMP) "
                        f"ORDER BY P.SOURCE_ID, P.NUM_TABLE, P.KEY_HASH, P.PACKET_ID",
                        (ref.source_id, ref.num_table, timestamp_text(at)))
            # One hash group at a time: records whose keys share a hash interleave in it.
            group_hash, states, last_pid = object(), {}, None

            def flush() -> None:
                nonlocal records
                for record_key, st in states.items():
                    if st["exists"]:
                        records += 1
                        key = ref.key_dict(record_key)
                        values = {fields.get(n, (f"#{n}", "text"))[0]:
                                  decode_value(v, fields.get(n, ("", "text"))[1], ref.none)
                                  for n, v in sorted(st["values"].items())}
                        for c, v in key.items():           # the key is known even when no version logged it
                            if c in columns and c not in values:
                                values[c] = v
                        write({"key": key, "version": st["version"], "complete": st["complete"],
                               "fields": {c: values[c] for c in columns if c in values}})
                states.clear()
            for khash, record_key, pid, op, version, num, short, long_ in cur:
                new = short if short is not None else long_
                if khash != group_hash:
                    flush()
                    group_hash = khash
                st = states.setdefault(record_key, {"exists": False, "complete": False, "values": {},
                                                    "version": None})
                if pid != last_pid:                    # a packet's first row: apply its operation
                    last_pid = pid
                    packets += 1
                    if progress and packets % 1000 == 0:
                        progress(1000)
                    st["version"] = version
                    if op in _WHOLE:
                        st.update(exists=True, complete=True, values={})
                    elif op in _GONE_OPS:
                        st.update(exists=False, complete=True, values={})
                    elif op in _UNKNOWN_OPS:
                        st.update(exists=True, complete=False, values={})
                    else:                              # update, restore event: the fields it set
                        st["exists"] = True
                if num is not None:
                    if op in _GONE_OPS:
                        continue
                    value = new
                    if value is None and op not in _WHOLE:
                        st["values"][num] = None       # set to NULL
                    elif value is not None:
                        st["values"][num] = value
            flush()
            cur.close()
        db.commit()
    if progress and packets % 1000:
        progress(packets % 1000)
    return {"source": ref.source, "table": ref.name, "as_of": at.isoformat(sep=" "), "columns": columns,
            "records": records, "packets": packets}


# --------------------------------------------------------------------------
# A selection of changes to undo (`fbaudit revert --transaction` / `--author`,
# fbaudit.undo): the selected packets with their fields, and every later packet
# of the records they touched, read in one snapshot of the log database.
# --------------------------------------------------------------------------
SELECTION_CAP = 200_000       # packets one selection revert reads at most (its plan is held in memory)


def selection(config: Config, *, source: str | None = None, transaction_id: int | None = None,
              author: str | None = None, since: datetime | None = None, until: datetime | None = None,
              table: str | None = None, db: Database | None = None) -> dict:
    """The row changes of one source transaction, or those by ``author`` in [since, until) (of ``table``),
    oldest first, each with its record and fields old -> new; and per record touched, the packets that
    came after its first selected one and are not selected (``later``: what would be overwritten)."""
    if transaction_id is None and author is None:
        raise FbauditError("choose what to revert: a transaction (--transaction TX) or an author's changes "
                           "(--author NAME with --since and --until)")
    p = config.prefix
    with _reader(config, db) as db:
        sid, sname = _source_id(db, config, source)
        where, params = ["P.SOURCE_ID = ?", "P.NUM_TABLE <> 0"], [sid]
        if transaction_id is not None:
            where.append("P.TRANSACTION_ID = ?")
            params.append(transaction_id)
        extra, extra_params = _row_filters(config, db, sname, table, author, since, until)
        where += extra
        params += extra_params
        cond = " AND ".join(where)
        count = db.scalar(f"SELECT COUNT(*) FROM (SELECT FIRST {SELECTION_CAP + 1} 1 X FROM {p}LOG_PACKET P "
                          f"WHERE {cond})", params)
        if count > SELECTION_CAP:
            raise FbauditError(f"the selection holds more than {SELECTION_CAP:,} changes; narrow it (--table, "
                               "--since, --until) and revert it in parts. Nothing was changed.")
        rows = db.query(f"SELECT P.PACKET_ID, P.CREATED_AT, P.OPERATION, P.AUTHOR, P.TRANSACTION_ID, P.NUM_TABLE, "
                        f"P.RECORD_KEY, P.VERSION_NO FROM {p}LOG_PACKET P WHERE {cond} ORDER BY P.PACKET_ID + 0",
                        params)
        none = none_text(config, sname)
        tables = {num: (name, json.loads(keys) if keys else []) for num, name, keys in db.query(
            f"SELECT NUM_TABLE, TABLE_NAME, KEY_COLUMNS FROM {p}DICT_TABLES WHERE SOURCE_ID = ?", (sid,))}
        by_table: dict[int, list[int]] = {}
        for r in rows:
            by_table.setdefault(r[5], []).append(r[0])
        changes: dict[int, dict] = {}
        refs: dict[int, TableRef] = {}
        for num, pids in by_table.items():
            name, kcols = tables.get(num, (f"#{num}", []))
            refs[num] = TableRef(sid, sname, num, name, kcols, _key_bytes(db, p, sid, num, kcols), none)
            changes.update(_changes_of(db, p, sid, pids, _fields(db, p, sid, num), none))
        # A key change's away packet (old key) is followed by the arriving one (new key), whose old side
        # is the whole row before: the pair is read even when only one half is selected.
        pairs: dict[int, dict] = {}
        for num in by_table:
            pair_ids = [r[0] + 1 for r in rows if r[2] == 7 and r[5] == num]
            if pair_ids:
                pairs.update(_changes_of(db, p, sid, pair_ids, _fields(db, p, sid, num), none))
        selected = {r[0] for r in rows}
        later: dict[tuple[int, str], list[dict]] = {}
        if rows:
            # Per record, every packet after its first selected one (LOG_PACKET_KEY, one probe each).
            for num, rk, pid, ver, op, at, who, txn in db.query(
                    f"SELECT S.NUM_TABLE, S.RECORD_KEY, Q.PACKET_ID, Q.VERSION_NO, Q.OPERATION, Q.CREATED_AT, "
                    f"Q.AUTHOR, Q.TRANSACTION_ID FROM (SELECT P.NUM_TABLE, P.KEY_HASH, P.RECORD_KEY, "
                    f"MIN(P.PACKET_ID) FIRST_ID FROM {p}LOG_PACKET P WHERE {cond} GROUP BY 1, 2, 3) S "
                    f"JOIN {p}LOG_PACKET Q ON Q.SOURCE_ID = ? AND Q.NUM_TABLE = S.NUM_TABLE AND Q.KEY_HASH = "
                    f"S.KEY_HASH AND Q.RECORD_KEY = S.RECORD_KEY AND Q.PACKET_ID > S.FIRST_ID", (*params, sid)):
                if pid not in selected:
                    later.setdefault((num, rk), []).append(
                        {"packet_id": pid, "version": ver, "operation": OPERATIONS.get(op, str(op)),
                         "at": at.isoformat() if at else None, "author": who, "transaction_id": txn})
        packets = [{"packet_id": r[0], "at": r[1].isoformat() if r[1] else None,
                    "operation": OPERATIONS.get(r[2], str(r[2])), "author": r[3], "transaction_id": r[4],
                    "num_table": r[5], "record_key": r[6], "version": r[7], "changes": changes.get(r[0], {}),
                    **({"pair": pairs.get(r[0] + 1, {})} if r[2] == 7 else {})} for r in rows]
        db.commit()
    return {"source": sname, "source_id": sid, "tables": refs, "packets": packets, "later": later}
