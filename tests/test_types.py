"""Types: every type an ERP uses is logged in its canonical text form, and
that text turns back into the typed value (in Python and in Firebird's own
CAST), on Firebird 3.0, 4.0 and 5.0.

The forms asserted here are the reference for the table in docs/capture.md.
"""
from __future__ import annotations

import struct
import sys
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest

from fbaudit import capture

from helpers import packets, run_sql


@dataclass(frozen=True)
class Case:
    """One column type: two values as SQL literals and the text each is logged as."""

    col: str
    ddl: str
    v1: str
    t1: str | dict[int, str]      # {major: text} where the form depends on the version
    v2: str
    t2: str | dict[int, str]
    since: int = 3                # first Firebird major version with the type

    def text(self, which: int, major: int) -> str:
        t = self.t1 if which == 1 else self.t2
        if isinstance(t, dict):
            return t[max(k for k in t if k <= major)]
        return t


CASES = [
    Case("SI", "SMALLINT", "-32768", "-32768", "32767", "32767"),
    Case("I", "INTEGER", "2147483647", "2147483647", "0", "0"),
    Case("BI", "BIGINT", "-9223372036854775808", "-9223372036854775808", "9223372036854775807", "9223372036854775807"),
    Case("N", "NUMERIC(18,4)", "123456789012.3456", "123456789012.3456", "-0.0001", "-0.0001"),
    Case("N0", "NUMERIC(10,0)", "42", "42", "-9999999999", "-9999999999"),
    Case("NS", "NUMERIC(4,2)", "12.3", "12.30", "-0.5", "-0.50"),
    Case("D", "DECIMAL(9,2)", "-1234567.89", "-1234567.89", "1", "1.00"),
    # Floats: on 4.0+ 17 significant digits (exact round trip); on 3.0 16 digits.
    Case("F", "FLOAT", "0.1", {3: "0.1000000014901161", 4: "0.10000000149011612"},
         "1e0/3e0", {3: "0.3333333432674408", 4: "0.33333334326744080"}),
    Case("DP", "DOUBLE PRECISION", "0.1e0+0.2e0", {3: "0.3000000000000000", 4: "0.30000000000000004"},
         "1e0/3e0", {3: "0.3333333333333333", 4: "0.33333333333333331"}),
    Case("CU", "CHAR(5) CHARACTER SET UTF8", "'ab'", "ab   ", "'Ёж'", "Ёж   "),
    Case("VU", "VARCHAR(20) CHARACTER SET UTF8", "'Zürich ✓ 日本'", "Zürich ✓ 日本", "''", ""),
    Case("CW", "CHAR(6) CHARACTER SET WIN1251", "'Ёж'", "Ёж    ", "'Щи'", "Щи    "),
    Case("VW", "VARCHAR(20) CHARACTER SET WIN1251", "'Привет, мир'", "Привет, мир", "' ё '", " ё "),
    Case("VL", "VARCHAR(20) CHARACTER SET ISO8859_1", "'Ñandú façade'", "Ñandú façade", "'ÿ'", "ÿ"),
    # NONE has no known encoding: its bytes are logged and shown as hex.
    Case("VN", "VARCHAR(10) CHARACTER SET NONE", "'abc'", "616263", "'a b'", "612062"),
    Case("CO", "CHAR(4) CHARACTER SET OCTETS", "x'00FF0010'", "00ff0010", "x'41'", "41000000"),
    Case("VO", "VARCHAR(8) CHARACTER SET OCTETS", "x'000102'", "000102", "x''", ""),
    Case("TW", "BLOB SUB_TYPE TEXT CHARACTER SET WIN1251", "'Длинный текст\nвторая строка'",
         "Длинный текст\nвторая строка", "'x'", "x"),
    Case("TU", "BLOB SUB_TYPE TEXT CHARACTER SET UTF8", "'多言語 text ✓'", "多言語 text ✓", "'€'", "€"),
    Case("BB", "BLOB SUB_TYPE BINARY", "x'00010203FF00'", "00010203ff00", "x'00'", "00"),
    Case("DA", "DATE", "'2024-02-29'", "2024-02-29", "'0001-01-01'", "0001-01-01"),
    Case("TI", "TIME", "'23:59:59.1234'", "23:59:59.1234", "'08:00'", "08:00:00.0000"),
    Case("TS", "TIMESTAMP", "'2024-02-29 23:59:59.9999'", "2024-02-29 23:59:59.9999",
         "'1999-12-31 00:00:00'", "1999-12-31 00:00:00.0000"),
    Case("BO", "BOOLEAN", "TRUE", "TRUE", "FALSE", "FALSE"),
    # Firebird 4.0+
    Case("I128", "INT128", "-170141183460469231731687303715884105728", "-170141183460469231731687303715884105728",
         "170141183460469231731687303715884105727", "170141183460469231731687303715884105727", since=4),
    Case("N38", "NUMERIC(38,6)", "12345678901234567890123456789012.123456", "12345678901234567890123456789012.123456",
         "-0.000001", "-0.000001", since=4),
    Case("DF16", "DECFLOAT(16)", "1234567890123456", "1234567890123456", "1.1E-383", "1.1E-383", since=4),
    Case("DF34", "DECFLOAT(34)", "0.1", "0.1", "-1234567890123456789012345678901234E6111",
         "-1.234567890123456789012345678901234E+6144", since=4),
    Case("TTZ", "TIME WITH TIME ZONE", "'10:11:12.3456 Europe/Moscow'", "10:11:12.3456 Europe/Moscow",
         "'23:00 -03:00'", "23:00:00.0000 -03:00", since=4),
    Case("TSZ", "TIMESTAMP WITH TIME ZONE", "'2024-07-01 12:00:00.5 Europe/Berlin'",
         "2024-07-01 12:00:00.5000 Europe/Berlin", "'2024-01-01 12:00 +05:30'", "2024-01-01 12:00:00.0000 +05:30",
         since=4),
    Case("BIN", "BINARY(4)", "x'01020304'", "01020304", "x'FF'", "ff000000", since=4),
    Case("VB", "VARBINARY(8)", "x'00'", "00", "x'DEADBEEF'", "deadbeef", since=4),
]

BINARY_TYPES = ("CHARACTER SET OCTETS", "CHARACTER SET NONE", "BINARY", "BLOB SUB_TYPE BINARY")


def is_binary(ddl: str) -> bool:
    return any(ddl.endswith(b) or ddl.startswith(b) for b in BINARY_TYPES) or ddl.startswith("VARBINARY")


def _zone(name: str):
    if name[0] in "+-":
        sign = -1 if name[0] == "-" else 1
        hh, mm = name[1:].split(":")
        return timezone(sign * timedelta(hours=int(hh), minutes=int(mm)))
    return ZoneInfo(name)


def from_text(ddl: str, text: str | None):
    """The typed Python value a canonical text stands for (what a reader of the log does)."""
    if text is None:
        return None
    if is_binary(ddl):
        return bytes.fromhex(text)
    if ddl in ("SMALLINT", "INTEGER", "BIGINT", "INT128"):
        return int(text)
    if ddl.startswith(("NUMERIC", "DECIMAL", "DECFLOAT")):
        return Decimal(text)
    if ddl in ("FLOAT", "DOUBLE PRECISION"):
        return float(text)
    if ddl == "BOOLEAN":
        return {"TRUE": True, "FALSE": False}[text]
    if ddl == "DATE":
        return date.fromisoformat(text)
    if ddl == "TIME":
        return time.fromisoformat(text)
    if ddl == "TIMESTAMP":
        return datetime.fromisoformat(text)
    if ddl == "TIMESTAMP WITH TIME ZONE":
        local, zone = text.rsplit(" ", 1)
        return datetime.fromisoformat(local).replace(tzinfo=_zone(zone))
    if ddl == "TIME WITH TIME ZONE":
        local, zone = text.rsplit(" ", 1)
        return time.fromisoformat(local), zone
    return text


def same_value(ddl: str, text: str | None, value, major: int) -> bool:
    """Does the logged ``text`` stand for the stored ``value`` exactly?"""
    typed = from_text(ddl, text)
    if value is None or typed is None:
        return value is None and typed is None
    if ddl == "FLOAT":
        # a single-precision value: the text read as float32 gives it back
        return struct.unpack("f", struct.pack("f", typed))[0] == value
    if ddl == "DOUBLE PRECISION" and major < 4:
        return abs(typed - value) <= abs(value) * 1e-15      # 16 significant digits on 3.0
    if ddl == "TIME WITH TIME ZONE":
        local, zone = typed
        tz = _zone(zone)
        same_zone = value.utcoffset() == tz.utcoffset(None) if isinstance(tz, timezone) \
            else zone in repr(value.tzinfo)                   # the driver's region zone names its file
        return local == value.replace(tzinfo=None) and same_zone
    if isinstance(value, str) and is_binary(ddl):             # NONE: the driver decodes it as UTF-8
        return typed == value.encode("utf-8")
    return typed == value


def cases_for(major: int) -> list[Case]:
    return [c for c in CASES if c.since <= major]


@pytest.fixture
def typed_table(project, target):
    cases = cases_for(target.major)
    project.sql("CREATE TABLE T (ID INTEGER NOT NULL PRIMARY KEY, "
                + ", ".join(f"{c.col} {c.ddl}" for c in cases) + ")")
    capture.init(project.config)
    capture.enable(project.config, "T")
    return project, cases


def _row(project, cases) -> dict:
    with project.connect() as db:
        row = db.query(f"SELECT {', '.join(c.col for c in cases)} FROM T WHERE ID = 1")[0]
        out = {}
        for c, v in zip(cases, row):
            out[c.col] = v.read() if hasattr(v, "read") else v
        db.commit()
    return out


def test_every_type_is_logged_in_canonical_form_and_round_trips(typed_table, target):
    project, cases = typed_table
    major = target.major
    run_sql(project, [f"INSERT INTO T (ID, {', '.join(c.col for c in cases)}) "
                      f"VALUES (1, {', '.join(c.v1 for c in cases)})"])
    stored1 = _row(project, cases)
    run_sql(project, ["UPDATE T SET " + ", ".join(f"{c.col} = {c.v2}" for c in cases) + " WHERE ID = 1"])
    stored2 = _row(project, cases)
    run_sql(project, ["DELETE FROM T WHERE ID = 1"])

    ins, upd, dele = packets(project, "T")
    assert (ins.operation, upd.operation, dele.operation) == ("insert", "update", "delete")
    for c in cases:
        t1, t2 = c.text(1, major), c.text(2, major)
        assert ins.changes[c.col] == {"old": None, "new": t1}, c.ddl
        assert upd.changes[c.col] == {"old": t1, "new": t2}, c.ddl
        assert dele.changes[c.col] == {"old": t2, "new": None}, c.ddl
        assert same_value(c.ddl, t1, stored1[c.col], major), (c.ddl, t1, stored1[c.col])
        assert same_value(c.ddl, t2, stored2[c.col], major), (c.ddl, t2, stored2[c.col])


def test_canonical_text_casts_back_in_firebird(typed_table, target):
    """What a revert does: CAST(text AS <type>) gives the stored value back."""
    project, cases = typed_table
    run_sql(project, [f"INSERT INTO T (ID, {', '.join(c.col for c in cases)}) "
                      f"VALUES (1, {', '.join(c.v1 for c in cases)})"])
    ins = packets(project, "T")[0]
    with project.connect() as db:
        for c in cases:
            if c.ddl.startswith("BLOB") or (c.ddl in ("FLOAT", "DOUBLE PRECISION") and target.major < 4):
                continue   # BLOBs compare in Python above; 3.0 floats carry 16 digits only
            text = ins.changes[c.col]["new"]
            if is_binary(c.ddl):
                sql, param = f"SELECT COUNT(*) FROM T WHERE ID = 1 AND {c.col} = ?", bytes.fromhex(text)
            else:
                sql = (f"SELECT COUNT(*) FROM T WHERE ID = 1 AND "
                       f"{c.col} = CAST(CAST(? AS VARCHAR(100) CHARACTER SET UTF8) AS {c.ddl})")
                param = text
            assert db.scalar(sql, (param,)) == 1, (c.ddl, text)


def test_null_transitions_of_every_type_are_logged(typed_table, target):
    project, cases = typed_table
    major = target.major
    cols = ", ".join(c.col for c in cases)
    run_sql(project, [
        f"INSERT INTO T (ID, {cols}) VALUES (1, {', '.join(c.v1 for c in cases)})",
        "UPDATE T SET " + ", ".join(f"{c.col} = NULL" for c in cases) + " WHERE ID = 1",
        "UPDATE T SET " + ", ".join(f"{c.col} = {c.v2}" for c in cases) + " WHERE ID = 1",
        "INSERT INTO T (ID) VALUES (2)",
        "DELETE FROM T WHERE ID = 2",
    ])
    ins, to_null, from_null, ins_nulls, del_nulls = packets(project, "T")
    assert to_null.changes == {c.col: {"old": c.text(1, major), "new": None} for c in cases}
    assert from_null.changes == {c.col: {"old": None, "new": c.text(2, major)} for c in cases}
    # NULL fields are not written on insert or delete: only the key is there
    assert ins_nulls.changes == {"ID": {"old": None, "new": "2"}}
    assert del_nulls.changes == {"ID": {"old": "2", "new": None}}


FLOATS = [0.1, 1 / 3, 2 / 3, 1e-5, 123.456, 1.1308594558395307e-26, 3.4028234663852886e38, -16777217.0,
          1.401298464324817e-45]
DOUBLES = [0.1 + 0.2, 1 / 3, 1e300, 5e-324, 1.7976931348623157e308, 2.2250738585072014e-308, 297949.10627384833,
           -61861.904435672564, 9007199254740993.0, 1e22, -0.0]


@pytest.fixture
def float_table(project):
    project.sql("CREATE TABLE FL (ID INTEGER NOT NULL PRIMARY KEY, F FLOAT, D DOUBLE PRECISION)")
    capture.init(project.config)
    capture.enable(project.config, "FL")
    return project


def test_float_single_precision_round_trips_exactly(float_table, target):
    """Including values whose 8-digit form (Firebird 3.0's own CAST) would not round-trip."""
    f32s = [struct.unpack("f", struct.pack("f", v))[0] for v in FLOATS]
    with float_table.connect() as db:
        cur = db.con.cursor()
        for i, v in enumerate(f32s):
            cur.execute("INSERT INTO FL (ID, F) VALUES (?, ?)", (i, v))
        db.con.commit()
        stored = dict(db.query("SELECT ID, F FROM FL"))
    for p in packets(float_table):
        i = int(p.key)
        text = p.changes["F"]["new"]
        assert stored[i] == f32s[i]
        assert struct.unpack("f", struct.pack("f", float(text)))[0] == f32s[i], text
        if target.major >= 4:
            assert float(text) == f32s[i], text


def test_double_precision_is_exact_on_4_and_16_digits_on_3(float_table, target):
    with float_table.connect() as db:
        cur = db.con.cursor()
        for i, v in enumerate(DOUBLES):
            cur.execute("INSERT INTO FL (ID, D) VALUES (?, ?)", (i, v))
        db.con.commit()
    ps = packets(float_table)
    assert len(ps) == len(DOUBLES)
    for p in ps:
        value, text = DOUBLES[int(p.key)], p.changes["D"]["new"]
        if target.major >= 4:
            assert float(text) == value and str(float(text)) == str(value), text   # -0.0 keeps its sign
        elif value == sys.float_info.max:
            # 16 digits round the largest double up to 1.797693134862316e+308, which overflows
            assert text == "1.797693134862316e+308"
        else:
            digits = text.lower().split("e")[0].replace("-", "").replace(".", "").lstrip("0")
            assert len(digits) <= 16, text
            assert float(text) == pytest.approx(value, rel=1e-15, abs=1e-320), text


def test_large_blobs_are_logged_whole(project):
    """1 MB text BLOBs (WIN1251 and UTF8) and a 1 MB binary BLOB with zero bytes."""
    project.sql("CREATE TABLE DOC (ID INTEGER NOT NULL PRIMARY KEY, "
                "BODY_W BLOB SUB_TYPE TEXT CHARACTER SET WIN1251, BODY_U BLOB SUB_TYPE TEXT CHARACTER SET UTF8, "
                "RAW BLOB SUB_TYPE BINARY)")
    capture.init(project.config)
    capture.enable(project.config, "DOC")
    text_w = ("Строка счёта №42; " * 60000)[:1024 * 1024]
    text_u = ("Grüße ✓ 日本 " * 80000)[:1024 * 1024 // 3]
    raw = bytes(range(256)) * 4096                      # 1 MB, every byte value, zeros included
    raw2 = raw[:-1] + b"\x00"
    assert len(text_w.encode("cp1251")) == 1024 * 1024 and len(raw) == 1024 * 1024
    run_sql(project, ["INSERT INTO DOC VALUES (1, ?, ?, ?)",
                      "UPDATE DOC SET RAW = ? WHERE ID = 1",
                      "DELETE FROM DOC WHERE ID = 1"],
            {0: (text_w, text_u, raw), 1: (raw2,)})
    ins, upd, dele = packets(project)
    assert ins.changes["BODY_W"]["new"] == text_w
    assert ins.changes["BODY_U"]["new"] == text_u
    assert bytes.fromhex(ins.changes["RAW"]["new"]) == raw
    assert set(upd.changes) == {"RAW"}
    assert bytes.fromhex(upd.changes["RAW"]["old"]) == raw and bytes.fromhex(upd.changes["RAW"]["new"]) == raw2
    assert dele.changes["BODY_W"]["old"] == text_w and bytes.fromhex(dele.changes["RAW"]["old"]) == raw2


def test_wide_non_utf8_text_columns_are_logged(project):
    """VARCHAR/CHAR over 8191 characters in a one-byte charset (more than a UTF8 VARCHAR can hold)."""
    project.sql("CREATE TABLE MEMO (ID INTEGER NOT NULL PRIMARY KEY, W VARCHAR(10000) CHARACTER SET WIN1251, "
                "C CHAR(20000) CHARACTER SET ISO8859_1)")
    capture.init(project.config)
    capture.enable(project.config, "MEMO")
    # built in SQL: a UTF8 client's parameter holds at most 8191 characters
    run_sql(project, ["INSERT INTO MEMO VALUES (1, LPAD(CAST('' AS VARCHAR(1) CHARACTER SET WIN1251), 10000, "
                      "CAST('Ж' AS VARCHAR(1) CHARACTER SET WIN1251)), 'é')"])
    long_w = "Ж" * 10000
    new = packets(project)[0].changes
    assert new["W"]["new"] == long_w
    assert new["C"]["new"] == "é" + " " * 19999     # CHAR padding kept


def test_array_and_computed_columns_are_skipped_with_a_warning(project):
    project.sql("CREATE TABLE MIXED (ID INTEGER NOT NULL PRIMARY KEY, QTY INTEGER, PRICE NUMERIC(10,2), "
                "SIZES INTEGER[1:3], TOTAL COMPUTED BY (QTY * PRICE))")
    capture.init(project.config)
    res = capture.enable(project.config, "MIXED")
    assert len(res.warnings) == 2
    assert any("SIZES" in w and "ARRAY" in w for w in res.warnings)
    assert any("TOTAL" in w and "COMPUTED BY" in w for w in res.warnings)
    assert res.data["sources"][0]["skipped"] == ["SIZES", "TOTAL"]
    run_sql(project, ["INSERT INTO MIXED (ID, QTY, PRICE) VALUES (1, 3, 9.99)",
                      "UPDATE MIXED SET QTY = 4 WHERE ID = 1"])
    ins, upd = packets(project)
    assert ins.changes == {"ID": {"old": None, "new": "1"}, "QTY": {"old": None, "new": "3"},
                           "PRICE": {"old": None, "new": "9.99"}}
    assert upd.changes == {"QTY": {"old": "3", "new": "4"}}   # TOTAL changed too, but is not logged


# A 300-column table: more fields than the 256 contexts one PSQL module may use.
WIDE_TYPES = [
    ("INTEGER", lambda i: i * 7, lambda v: str(v)),
    ("VARCHAR(20) CHARACTER SET WIN1251", lambda i: f"Знач {i}", lambda v: v),
    ("NUMERIC(15,2)", lambda i: Decimal(i) / 4, lambda v: f"{v:.2f}"),
    ("DATE", lambda i: date(2024, 1, 1) + timedelta(days=i), lambda v: v.isoformat()),
    ("TIMESTAMP", lambda i: datetime(2024, 1, 1, 8, 30) + timedelta(minutes=i),
     lambda v: v.strftime("%Y-%m-%d %H:%M:%S.0000")),
    ("BOOLEAN", lambda i: i % 2 == 0, lambda v: "TRUE" if v else "FALSE"),
    ("BLOB SUB_TYPE TEXT CHARACTER SET UTF8", lambda i: f"note {i} ✓", lambda v: v),
    ("CHAR(3) CHARACTER SET UTF8", lambda i: f"{i % 1000:03d}", lambda v: v),
    ("BIGINT", lambda i: -i * 10 ** 12, lambda v: str(v)),
    ("SMALLINT", lambda i: i, lambda v: str(v)),
]
WIDE = 300


def _wide_columns():
    return [(f"C{i:03d}", *WIDE_TYPES[i % len(WIDE_TYPES)]) for i in range(1, WIDE + 1)]


def test_a_300_column_table_is_audited(project):
    cols = _wide_columns()
    project.sql("CREATE TABLE WIDE (ID INTEGER NOT NULL PRIMARY KEY, "
                + ", ".join(f"{name} {ddl}" for name, ddl, _, _ in cols) + ")")
    capture.init(project.config)
    res = capture.enable(project.config, "WIDE")
    assert len(res.data["sources"][0]["fields"]) == WIDE + 1
    v1 = [make(i) for i, (_, _, make, _) in enumerate(cols, start=1)]
    v2 = [make(i + 1001) for i, (_, _, make, _) in enumerate(cols, start=1)]
    names = [c[0] for c in cols]
    run_sql(project, [
        f"INSERT INTO WIDE (ID, {', '.join(names)}) VALUES (1, {', '.join('?' * WIDE)})",
        "UPDATE WIDE SET C151 = 'одно поле' WHERE ID = 1",
        f"UPDATE WIDE SET {', '.join(f'{n} = ?' for n in names)} WHERE ID = 1",
        "DELETE FROM WIDE WHERE ID = 1",
    ], {0: tuple(v1), 2: tuple(v2)})
    ins, one, every, dele = packets(project, "WIDE")
    assert [p.operation for p in (ins, one, every, dele)] == ["insert", "update", "update", "delete"]
    assert len(ins.changes) == WIDE + 1
    assert one.changes == {"C151": {"old": "Знач 151", "new": "одно поле"}}
    assert set(every.changes) == set(names)          # every column but the key changed
    assert len(dele.changes) == WIDE + 1
    for i in (1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 151, 256, 257, 299, 300):
        name, _, _, fmt = cols[i - 1]
        assert ins.changes[name]["new"] == fmt(v1[i - 1]), name
        assert every.changes[name] == {"old": fmt(v1[i - 1]) if i != 151 else "одно поле",
                                       "new": fmt(v2[i - 1])}, name
        assert dele.changes[name]["old"] == fmt(v2[i - 1]), name
