"""Canonical forms: what the audit trigger logs for each type, the record-key codec, the codes of
operations and packet states.

The trigger (capture), the baseline, revert and history all speak these forms, so they live here,
below every feature (docs/architecture.md). docs/capture.md describes each form.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Iterable

from .catalog import Column
from .config import NONE_CHARSETS
from .errors import CatalogError, FbauditError
from .idents import quote_ident

OPERATIONS = {1: "insert", 2: "update", 3: "delete", 4: "restore", 5: "baseline",
              6: "key_change", 7: "key_change_away", 8: "ddl", 9: "control",
              10: "insert_unrecorded", 11: "update_unrecorded", 12: "delete_unrecorded"}
# A change during an upgrade (`fbaudit upgrade begin` .. `end`, docs/schema-changes.md): who changed
# which row and how, without its values. After an insert or update of them the record's values are
# unknown until a version that holds the whole row (`upgrade end` logs one for each such row that
# still exists); after a delete the record is known: gone (its values before, the version before's).
UNRECORDED = {10, 11, 12}
UNKNOWN_AFTER = {10, 11}
# Schema events (DDL_LOG, ddl/main_init.sql) and control events (pause, resume) are packets of
# table number 0 whose RECORD_KEY is the object's name; their fields, all text (docs/schema-changes.md):
SCHEMA_TABLE = 0
SCHEMA_OPERATIONS = {8, 9}
SCHEMA_FIELDS = {1: "event", 2: "object_type", 3: "object", 4: "sql", 5: "process", 6: "audit_trigger"}
# Operations after which a version holds the whole record (with "key_change_away": it is gone
# from this key, like a delete; "key_change": it arrived with every field, like an insert).
# An unrecorded change ends a record's state too: what came before it is no longer known to hold.
ANCHORS = {1, 3, 5, 6, 7} | UNRECORDED
STATES = {0: "new", 1: "done", 2: "failed"}


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


# The packed form of a change (docs/capture.md "The packed change"): for each logged field,
# "<field number>,<old length>,<new length>;" then the old bytes and the new bytes, a length of -1
# meaning NULL (no bytes follow). The trigger builds it in a VARCHAR of PACK_LIMIT bytes; a change
# that does not fit (or a value wider than its column was when the trigger was made) is built again
# as a BLOB, any size. The bytes of each value are exactly what value_expr logs.
PACK_LIMIT = 32000
PACK_BLOB_FAST = 8000        # a BLOB value up to this many bytes is packed in the VARCHAR
_UTF8_MAX_CHARS = 8191       # the widest VARCHAR ... CHARACTER SET UTF8


def packed_expr(col: Column, ctx: str, major: int) -> tuple[str, str | None]:
    """value_expr as a ``VARCHAR(n) CHARACTER SET OCTETS`` for the trigger's fast path, ``n`` the
    widest value the column holds today, and the condition under which the value does not fit
    (None: it always does). A cast to a shorter string drops trailing pad characters without an
    error (0x00 for OCTETS, blanks for text), so the length is tested, not left to the cast: a
    wider value (a column widened later, a long BLOB) sets ``big``, and the trigger packs that
    change through the BLOB path, with value_expr itself (docs/capture.md "The packed change")."""
    ref = f"{ctx}.{quote_ident(col.name)}"

    def octets(expr: str, n: int) -> str:
        return f"CAST({expr} AS VARCHAR({n}) CHARACTER SET OCTETS)"
    if col.kind == "binary":
        n = PACK_BLOB_FAST if col.is_blob else max(1, min(col.char_length or 1, 32765))
        return octets(ref, n), f"OCTET_LENGTH({ref}) > {n}"
    if col.kind == "text":
        chars = PACK_BLOB_FAST // 4 if col.is_blob else max(1, min(col.char_length or 1, _UTF8_MAX_CHARS))
        if col.charset in ("UTF8",):
            return octets(ref, chars * 4), f"OCTET_LENGTH({ref}) > {chars * 4}"
        # Bytes first for a BLOB (its header, no reading): at most one byte a character, never too few.
        too_long = f"OCTET_LENGTH({ref}) > {chars}" if col.is_blob else f"CHAR_LENGTH({ref}) > {chars}"
        return octets(f"CAST({ref} AS VARCHAR({chars}) CHARACTER SET UTF8)", chars * 4), too_long
    return octets(value_expr(col, ctx, major), 80), None


# The BLOB path keeps appending to its VARCHAR while a field fits in this many bytes (with the
# VARCHAR's bytes and the field's header): only long values become BLOB concatenations, each of
# which costs about 20 us (scripts/bench_capture.py --explore, packed_blob_var).
BIG_FLUSH = PACK_LIMIT - 100


def pack_append(num: int, old: tuple[str, str | None], new: tuple[str, str | None]) -> str:
    """The PSQL statement appending field ``num`` of an update to the packed change in ``buf`` (fast
    path), or setting ``big`` when a side does not fit. ``old`` / ``new``: packed_expr of each side.
    (An insert, a delete and a baseline row are packed by one expression: pack_term.) Plain
    concatenation: the expressions hold column names, which no format() may read."""
    append = (f"buf = buf || '{num},' || COALESCE(OCTET_LENGTH(" + old[0] + "), -1) || ',' || "
              "COALESCE(OCTET_LENGTH(" + new[0] + "), -1) || ';' || COALESCE(" + old[0] + ", '') || COALESCE("
              + new[0] + ", '');")
    guards = [side[1] for side in (old, new) if side[1] is not None]
    if not guards:
        return append
    return "BEGIN IF (" + " OR ".join(guards) + ") THEN big = 1; ELSE " + append + " END"


def pack_term(num: int, ref: str, packed: tuple[str, str | None], side: str) -> str:
    """Field ``num`` of an insert (``side`` "new") or a delete ("old") as one term of the single
    expression that packs the change (capture: ``buf = '' || term || term ...``): '' when ``ref``,
    the column, is NULL. One assignment for the whole change, not one per field: Firebird clears a
    VARCHAR variable's whole declared size at each assignment (docs/performance.md, "An assignment
    costs the variable's declared size"). ``packed``: packed_expr of that side; its length test
    goes into the guard before the expression (capture's INSERT_GUARDS / DELETE_GUARDS)."""
    value = packed[0]
    head = (f"'{num},-1,' || OCTET_LENGTH(" + value + ") || ';'" if side == "new"
            else f"'{num},' || OCTET_LENGTH(" + value + ") || ',-1;'")
    return "IIF(" + ref + " IS NULL, '', " + head + " || " + value + ")"


def pack_append_big(num: int, old: str | None, new: str | None, indent: str = "    ") -> str:
    """The same for the BLOB path (``old`` / ``new``: value_expr, or None): a BEGIN ... END block that
    appends short values to ``buf`` and moves ``buf`` and long values to the BLOB ``pay``."""
    lines = ["BEGIN",
             "  bo = " + (old or "NULL") + ";",
             "  bn = " + (new or "NULL") + ";",
             f"  hd = '{num},' || COALESCE(OCTET_LENGTH(bo), -1) || ',' || COALESCE(OCTET_LENGTH(bn), -1) || ';';",
             f"  IF (OCTET_LENGTH(buf) + COALESCE(OCTET_LENGTH(bo), 0) + COALESCE(OCTET_LENGTH(bn), 0) <= {BIG_FLUSH}) "
             "THEN",
             f"    buf = buf || hd || COALESCE(CAST(bo AS VARCHAR({BIG_FLUSH}) CHARACTER SET OCTETS), '') "
             f"|| COALESCE(CAST(bn AS VARCHAR({BIG_FLUSH}) CHARACTER SET OCTETS), '');",
             "  ELSE",
             "  BEGIN",
             "    pay = pay || buf || hd || COALESCE(bo, '') || COALESCE(bn, '');",
             "    buf = '';",
             "  END",
             "END"]
    return ("\n" + indent).join(lines)


def unpack(raw: bytes | None) -> list[tuple[int, bytes | None, bytes | None]]:
    """A packed change (docs/capture.md "The packed change") -> [(field number, old bytes or None for
    NULL, new bytes or None)]."""
    if raw is None:
        return []
    if hasattr(raw, "read"):
        raw = raw.read()
    out, pos, end = [], 0, len(raw)
    while pos < end:
        semi = raw.index(b";", pos)
        num, lo, ln = (int(x) for x in raw[pos:semi].split(b","))
        pos = semi + 1
        old = None if lo < 0 else raw[pos:pos + lo]
        pos += max(lo, 0)
        new = None if ln < 0 else raw[pos:pos + ln]
        pos += max(ln, 0)
        if pos > end:
            raise ValueError("a packed change is cut short")
        out.append((num, old, new))
    return out


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
    """The record key as text: parts joined by '|', '\\' and '|' escaped, NULL as '\\N'.

    A CHARACTER SET NONE or OCTETS part is its bytes, each read as the ISO8859_1 character of
    that number: a cast that never fails and loses nothing, whatever the bytes (NoneText.key_part
    reverses it); ASCII stays as it is.
    """
    parts = []
    for col in cols:
        ref = f"{ctx}.{quote_ident(col.name)}"
        if col.kind in ("number", "temporal", "boolean"):
            text = f"CAST({ref} AS VARCHAR(80))"
        else:
            if col.kind == "text":
                text = short_text(ref, col, KEY_PART_LENGTH)
            elif col.kind == "binary" and not col.is_blob:
                latin = f"CAST(SUBSTRING({ref} FROM 1 FOR {KEY_PART_LENGTH}) AS VARCHAR({KEY_PART_LENGTH}) " \
                        "CHARACTER SET ISO8859_1)"
                text = f"CAST({latin} AS VARCHAR({KEY_PART_LENGTH}) CHARACTER SET UTF8)"
            else:
                raise CatalogError(f"Key column {col.name!r} has type {col.type}, which cannot identify a record "
                                   "in the log; choose other key columns with `key:` in the registry or --key.")
            text = f"REPLACE(REPLACE({text}, '\\', '\\\\'), '|', '\\|')"
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


def decode_value(raw: bytes | None, kind: str, none: NoneText | None = None) -> str | None:
    """Canonical text of a logged value: UTF-8 text, hex for binary kinds, and for ``kind`` "none"
    (CHARACTER SET NONE text, :func:`value_kind`) the text ``none`` reads in the bytes."""
    if raw is None:
        return None
    if hasattr(raw, "read"):
        raw = raw.read()
    if isinstance(raw, str):
        raw = raw.encode("utf-8")
    if kind == "none":
        return (none or NoneText()).show(raw)
    if kind == "binary":
        return raw.hex()
    return raw.decode("utf-8")


def value_kind(kind: str, type_: str) -> str:
    """The kind a logged value is shown as: a column's (or a dictionary's) kind, with CHARACTER SET
    NONE text, which is logged as its bytes like binary data, told apart as "none"."""
    return "none" if kind == "binary" and type_.endswith("CHARACTER SET NONE") else kind


def is_bytes_key(type_: str) -> bool:
    """A key column whose part of the record key is its bytes through ISO8859_1 (key_expr)."""
    return not type_.startswith("BLOB") and (type_.endswith("CHARACTER SET NONE")
                                             or type_.startswith(("BINARY(", "VARBINARY(")))


_BYTES_FORM = re.compile(r"x'((?:[0-9A-Fa-f]{2})*)'")


@dataclass(frozen=True)
class NoneText:
    """How one source's CHARACTER SET NONE text is shown and typed (docs/capture.md "Text in
    CHARACTER SET NONE").

    Bytes are shown as the text they are in ``charset`` (the source's ``none_charset``; without
    one, UTF-8, which ASCII is part of) when they decode and encode back to the same bytes;
    otherwise, and for a text that itself looks like one, as ``x'C8E2'``, Firebird's notation
    for a byte string. :meth:`to_bytes` is the exact inverse, so what is shown is what revert
    writes back and what a user types finds the record.
    """

    charset: str | None = None       # a Firebird character set name, a key of config.NONE_CHARSETS

    @property
    def codec(self) -> str:
        return NONE_CHARSETS[self.charset] if self.charset else "utf-8"

    def show(self, raw: bytes) -> str:
        try:
            text = raw.decode(self.codec)
            if text.encode(self.codec) == raw and not _BYTES_FORM.fullmatch(text):
                return text
        except UnicodeError:
            pass
        return "x'" + raw.hex().upper() + "'"

    def to_bytes(self, text: str) -> bytes:
        m = _BYTES_FORM.fullmatch(text)
        if m:
            return bytes.fromhex(m.group(1))
        try:
            return text.encode(self.codec)
        except UnicodeError:
            raise FbauditError(f"{text!r} cannot be written in {self.charset or 'UTF8'}, the character set this "
                               "source's NONE text is read in (none_charset); give its bytes as x'C8E2...'.") from None

    def key_part(self, typed: str) -> str:
        """A bytes key part as the record key holds it (key_expr), from the text a user typed."""
        return self.to_bytes(typed).decode("latin-1")

    def shown_key_part(self, part: str) -> str:
        """A bytes key part of a record key, shown as :meth:`show` shows its bytes."""
        return self.show(part.encode("latin-1"))
