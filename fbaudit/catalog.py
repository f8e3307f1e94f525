"""What Firebird's system tables say about a table: columns, types, keys."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from .db import Database
from .errors import CatalogError

# RDB$FIELDS.RDB$FIELD_TYPE codes
_INT_TYPES = {7: "SMALLINT", 8: "INTEGER", 16: "BIGINT", 26: "INT128"}
_SIMPLE = {10: "FLOAT", 27: "DOUBLE PRECISION", 12: "DATE", 13: "TIME", 35: "TIMESTAMP",
           28: "TIME WITH TIME ZONE", 29: "TIMESTAMP WITH TIME ZONE", 23: "BOOLEAN",
           24: "DECFLOAT(16)", 25: "DECFLOAT(34)"}
_TEXT = {14: "CHAR", 37: "VARCHAR", 40: "CSTRING"}
_BLOB = 261


@dataclass(frozen=True)
class Column:
    """One column of a table as fbaudit sees it."""

    name: str
    type: str          # SQL type text, e.g. "VARCHAR(40) CHARACTER SET WIN1251"
    kind: str          # text | binary | float | number | temporal | boolean
    char_length: int | None
    charset: str | None
    is_blob: bool
    skip_reason: str | None = None   # ARRAY / COMPUTED BY: not audited
    collation: str | None = None     # text: its collation when not the character set's binary one

    @property
    def auditable(self) -> bool:
        return self.skip_reason is None

    @property
    def is_array(self) -> bool:
        return self.type.endswith(" ARRAY")

    def readable(self, ref: str) -> str:
        """``ref`` (this column in a SELECT) as the driver can return it. CHARACTER SET NONE text is
        read as bytes: its content may be in any encoding (or none), which the UTF-8 connection
        could not decode (UnicodeDecodeError on an 8-bit byte); bytes are what the trigger logs."""
        if self.charset != "NONE" or self.kind not in ("text", "binary"):
            return ref
        if self.is_blob:
            return f"CAST({ref} AS BLOB SUB_TYPE BINARY)"
        word = "CHAR" if self.type.startswith("CHAR(") else "VARCHAR"
        return f"CAST({ref} AS {word}({self.char_length}) CHARACTER SET OCTETS)"


@dataclass(frozen=True)
class TableInfo:
    name: str
    columns: tuple[Column, ...]
    primary_key: tuple[str, ...]
    # The database's default character set and every character set it knows, (id, name):
    # the audit trigger decodes context values with them (capture.plan_trigger).
    db_charset: tuple[int, str] = (0, "NONE")
    charsets: tuple[tuple[int, str], ...] = ()

    def charset_id(self, name: str | None) -> int:
        return next((i for i, n in self.charsets if n == name), 0)

    def column(self, name: str) -> Column | None:
        return next((c for c in self.columns if c.name == name), None)


def _type_of(ftype: int, sub: int | None, length: int, scale: int, prec: int | None,
             char_len: int | None, charset: str | None) -> tuple[str, str, bool]:
    """(type text, kind, is_blob) for one field definition."""
    cs = (charset or "NONE").strip()
    if ftype in _INT_TYPES:
        if sub in (1, 2) or scale < 0:
            word = "NUMERIC" if sub != 2 else "DECIMAL"
            p = prec or {7: 4, 8: 9, 16: 18, 26: 38}[ftype]
            return f"{word}({p},{-scale})", "number", False
        return _INT_TYPES[ftype], "number", False
    if ftype in _SIMPLE:
        t = _SIMPLE[ftype]
        kind = "float" if ftype in (10, 27) else "boolean" if ftype == 23 else \
            "number" if ftype in (24, 25) else "temporal"
        return t, kind, False
    if ftype in _TEXT:
        n = char_len or length
        if cs == "OCTETS":
            return f"{'BINARY' if ftype == 14 else 'VARBINARY'}({n})", "binary", False
        kind = "binary" if cs == "NONE" else "text"
        return f"{_TEXT[ftype]}({n}) CHARACTER SET {cs}", kind, False
    if ftype == _BLOB:
        if sub == 1:
            kind = "binary" if cs in ("NONE", "OCTETS") else "text"
            return f"BLOB SUB_TYPE TEXT CHARACTER SET {cs}", kind, True
        return f"BLOB SUB_TYPE {sub if sub not in (0, None) else 'BINARY'}", "binary", True
    return f"UNKNOWN({ftype})", "binary", False


_COLUMNS_SQL = """
SELECT TRIM(TRAILING FROM rf.RDB$FIELD_NAME), f.RDB$FIELD_TYPE, f.RDB$FIELD_SUB_TYPE, f.RDB$FIELD_LENGTH,
       COALESCE(f.RDB$FIELD_SCALE, 0), f.RDB$FIELD_PRECISION, f.RDB$CHARACTER_LENGTH,
       TRIM(cs.RDB$CHARACTER_SET_NAME), f.RDB$DIMENSIONS,
       IIF(f.RDB$COMPUTED_BLR IS NULL, 0, 1), TRIM(co.RDB$COLLATION_NAME)
FROM RDB$RELATION_FIELDS rf
JOIN RDB$FIELDS f ON f.RDB$FIELD_NAME = rf.RDB$FIELD_SOURCE
LEFT JOIN RDB$CHARACTER_SETS cs ON cs.RDB$CHARACTER_SET_ID =
     f.RDB$CHARACTER_SET_ID
LEFT JOIN RDB$COLLATIONS co ON co.RDB$CHARACTER_SET_ID = f.RDB$CHARACTER_SET_ID
     AND co.RDB$COLLATION_ID = COALESCE(rf.RDB$COLLATION_ID, f.RDB$COLLATION_ID,
         (SELECT d.RDB$COLLATION_ID FROM RDB$COLLATIONS d WHERE d.RDB$CHARACTER_SET_ID = f.RDB$CHARACTER_SET_ID
          AND d.RDB$COLLATION_NAME = cs.RDB$DEFAULT_COLLATE_NAME), 0)
     AND co.RDB$COLLATION_ID <> 0
WHERE rf.RDB$RELATION_NAME = ?
ORDER BY rf.RDB$FIELD_POSITION
"""

_PK_SQL = """
SELECT TRIM(TRAILING FROM s.RDB$FIELD_NAME)
FROM RDB$RELATION_CONSTRAINTS rc
JOIN RDB$INDEX_SEGMENTS s ON s.RDB$INDEX_NAME = rc.RDB$INDEX_NAME
WHERE rc.RDB$RELATION_NAME = ? AND rc.RDB$CONSTRAINT_TYPE = 'PRIMARY KEY'
ORDER BY s.RDB$FIELD_POSITION
"""


_UNIQUE_SQL = """
SELECT TRIM(i.RDB$INDEX_NAME), TRIM(TRAILING FROM s.RDB$FIELD_NAME)
FROM RDB$INDICES i JOIN RDB$INDEX_SEGMENTS s ON s.RDB$INDEX_NAME = i.RDB$INDEX_NAME
WHERE i.RDB$RELATION_NAME = ? AND i.RDB$UNIQUE_FLAG = 1 AND COALESCE(i.RDB$INDEX_INACTIVE, 0) = 0
  AND i.RDB$EXPRESSION_BLR IS NULL
"""



def not_null_columns(db: Database) -> set[tuple[str, str]]:
    """(table, column) of every NOT NULL column of the database (its own or its domain's constraint)."""
    return {(t, c) for t, c in db.query(
        "SELECT TRIM(TRAILING FROM rf.RDB$RELATION_NAME), TRIM(TRAILING FROM rf.RDB$FIELD_NAME) "
        "FROM RDB$RELATION_FIELDS rf JOIN RDB$FIELDS f ON f.RDB$FIELD_NAME = rf.RDB$FIELD_SOURCE "
        "WHERE COALESCE(rf.RDB$NULL_FLAG, f.RDB$NULL_FLAG, 0) = 1")}


def key_safety(db: Database, table: str, columns: list[str]) -> tuple[bool, list[str]]:
    """(are ``columns`` unique: some active unique index or constraint of the table is on a subset
    of them; which of them may hold NULL). A primary key is both unique and NOT NULL."""
    unique: dict[str, set[str]] = {}
    # A partial unique index (5.0+: WHERE ...) is unique only for the rows it covers.
    sql = _UNIQUE_SQL + ("  AND i.RDB$CONDITION_BLR IS NULL\n" if db.major >= 5 else "")
    for index, field in db.query(sql, (table,)):
        unique.setdefault(index, set()).add(field)
    not_null = not_null_columns(db)
    return (any(cols <= set(columns) for cols in unique.values()),
            [c for c in columns if (table, c) not in not_null])


def table_exists(db: Database, name: str) -> bool:
    return bool(db.query(
        "SELECT 1 FROM RDB$RELATIONS WHERE RDB$RELATION_NAME = ? AND RDB$VIEW_BLR IS NULL "
        "AND COALESCE(RDB$SYSTEM_FLAG, 0) = 0", (name,)))


def read_table(db: Database, name: str, *, commit: bool = True) -> TableInfo:
    """Describe table ``name`` (exact stored name); CatalogError if it is not a user table.

    Commits the connection's transaction at the end unless ``commit=False`` (a
    caller reading inside a transaction of its own, e.g. a checkpoint restore).
    """
    rows = db.query(
        "SELECT RDB$VIEW_BLR IS NULL, COALESCE(RDB$SYSTEM_FLAG, 0), RDB$RELATION_TYPE "
        "FROM RDB$RELATIONS WHERE RDB$RELATION_NAME = ?", (name,))
    if not rows:
        similar = db.query(
            "SELECT FIRST 5 TRIM(TRAILING FROM RDB$RELATION_NAME) FROM RDB$RELATIONS WHERE COALESCE(RDB$SYSTEM_FLAG,0)=0 "
            "AND UPPER(RDB$RELATION_NAME) = UPPER(?)", (name,))
        hint = f" Did you mean {similar[0][0]!r}?" if similar else ""
        raise CatalogError(f"Table {name!r} does not exist in database {db.spec.describe()}.{hint}")
    is_table, system, rtype = rows[0]
    if not is_table:
        raise CatalogError(f"{name!r} is a view; fbaudit audits tables (audit the view's base tables).")
    if system:
        raise CatalogError(f"{name!r} is a system table and cannot be audited.")
    if rtype in (4, 5):
        raise CatalogError(f"{name!r} is a global temporary table; its rows are private to one "
                           "connection and are not audited.")
    cols: list[Column] = []
    for (fname, ftype, sub, length, scale, prec, clen, cs, dims, computed, coll) in db.query(_COLUMNS_SQL, (name,)):
        type_text, kind, is_blob = _type_of(ftype, sub, length, scale, prec, clen, cs)
        skip = None
        if dims:
            skip, type_text = "ARRAY columns cannot be compared or logged", f"{type_text} ARRAY"
        elif computed:
            skip = "COMPUTED BY columns hold no data of their own"
        # Collation id 0 is the character set's own binary collation (named like it).
        cols.append(Column(fname, type_text, kind, clen, cs, is_blob, skip, coll if kind == "text" else None))
    pk = tuple(r[0] for r in db.query(_PK_SQL, (name,)))
    charsets = tuple((int(i), n) for i, n in db.query(
        "SELECT RDB$CHARACTER_SET_ID, TRIM(RDB$CHARACTER_SET_NAME) FROM RDB$CHARACTER_SETS ORDER BY 1"))
    default = (db.scalar("SELECT TRIM(RDB$CHARACTER_SET_NAME) FROM RDB$DATABASE") or "NONE").strip()
    if commit:
        db.commit()
    info = TableInfo(name, tuple(cols), pk, charsets=charsets)
    return dataclasses.replace(info, db_charset=(info.charset_id(default), default))
