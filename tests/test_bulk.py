"""fbaudit.bulk.Inserter packs rows itself: it must store exactly what the driver stores."""
from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest

from fbaudit.bulk import Inserter

COLS = ("ID INTEGER NOT NULL PRIMARY KEY, SI SMALLINT, BI BIGINT, N NUMERIC(18,4), N9 NUMERIC(9,2), D4 DECIMAL(4,1), "
        "F FLOAT, DP DOUBLE PRECISION, C CHAR(5), CU CHAR(3) CHARACTER SET UTF8, CN CHAR(4) CHARACTER SET NONE, "
        "CO CHAR(4) CHARACTER SET OCTETS, V VARCHAR(10) CHARACTER SET WIN1251, VU VARCHAR(6) CHARACTER SET UTF8, "
        "VO VARCHAR(4) CHARACTER SET OCTETS, DT DATE, TM TIME, TS TIMESTAMP, B BOOLEAN")
ROWS = [
    (1, 1, 9223372036854775807, Decimal("12345678901234.5678"), Decimal("-1.50"), Decimal("-999.9"), 1.1, 0.1,
     "ab", "日本", "x", b"\x00\xff", "Привет", "ÄÖÜ€", b"\x01", dt.date(2026, 12, 2), dt.time(12, 34, 56, 123400),
     dt.datetime(2026, 12, 2, 10, 11, 12, 345600), True),
    (2, -32768, -9223372036854775808, Decimal("-0.0001"), Decimal("0"), Decimal("0.0"), -3.4e38, 1.7976931348623157e308,
     "", "", "", b"", "", "", b"", dt.date(1, 1, 1), dt.time(0, 0), dt.datetime(9999, 12, 31, 23, 59, 59, 999900), False),
    (3,) + (None,) * 18,
    (4, 7, 7, 7, 7, 7, 7, 7, "12345", "abc", "abcd", b"abcd", "0123456789", "123456", b"abcd", dt.date(2000, 2, 29),
     dt.time(23, 59, 59, 999900), dt.datetime(1858, 11, 17), True),
    # A value the fast path leaves to the driver: text for a number column (Firebird converts it).
    (5, "42", None, None, None, None, None, None, None, None, None, None, None, None, None, None, None, None, None),
]


def test_inserter_stores_what_the_driver_stores(project):
    project.sql(f"CREATE TABLE A ({COLS})", f"CREATE TABLE B ({COLS})")
    with project.connect() as db:
        cur = db.con.cursor()
        n = len(ROWS[0])
        ins = Inserter(cur, ["INSERT INTO A VALUES ("] + [", "] * (n - 1) + [")"])
        for row in ROWS:
            ins.run(row)
        assert (ins.fast, ins.slow) == (4, 1)
        ins.close()
        for row in ROWS:        # the driver itself, NULLs as literals (see fbaudit.bulk)
            cols = [i for i, v in enumerate(row) if v is not None]
            cur.execute(f"INSERT INTO B ({', '.join(COLS.split(', ')[i].split()[0] for i in cols)}) "
                        f"VALUES ({', '.join('?' * len(cols))})", [row[i] for i in cols])
        db.commit()
        a = db.query("SELECT * FROM A ORDER BY ID")
        b = db.query("SELECT * FROM B ORDER BY ID")
        db.commit()
    assert [tuple(map(repr, r)) for r in a] == [tuple(map(repr, r)) for r in b]
    assert a[0][8] == "ab   " and a[0][11] == b"\x00\xff\x00\x00"          # padding as the driver's


def test_inserter_leaves_bad_values_to_the_driver_and_its_error(project):
    project.sql("CREATE TABLE A (ID INTEGER NOT NULL PRIMARY KEY, V VARCHAR(3), S SMALLINT)")
    with project.connect() as db:
        cur = db.con.cursor()
        ins = Inserter(cur, ["INSERT INTO A VALUES (", ", ", ", ", ")"])
        with pytest.raises(Exception, match="too long|truncat|overflow"):
            ins.run((1, "abcd", 1))
        with pytest.raises(Exception, match="overflow|out of range|range"):
            ins.run((2, "ab", 70000))                    # out of SMALLINT's range
        ins.run((3, "ab", 1))
        assert ins.fast == 1
        ins.close()
        db.rollback()


def test_statements_with_other_types_use_the_driver(project):
    project.sql("CREATE TABLE A (ID INTEGER NOT NULL PRIMARY KEY, T BLOB SUB_TYPE TEXT, F CHAR(1))")
    with project.connect() as db:
        cur = db.con.cursor()
        ins = Inserter(cur, ["INSERT INTO A VALUES (", ", ", ", ", ")"])
        ins.run((1, "x" * 100_000, "Y"))
        ins.run((2, None, None))            # NULL into CHAR(1) on the driver's path
        assert (ins.fast, ins.slow) == (0, 2)
        ins.close()
        db.commit()
        cur.stream_blob_threshold = -1
        cur.execute("SELECT T FROM A")
        assert cur.fetchone()[0] == "x" * 100_000
        db.commit()


def test_driver_sends_none_as_text_for_short_char_columns(project):
    """The firebird-driver behaviour fbaudit.bulk works around, seen with the embedded
    engine (over TCP the server accepts it): if this starts to pass (a fixed driver),
    the NULL-literal variants are no longer needed."""
    if project.target.is_server:
        pytest.skip("over TCP the server does not check the length of a NULL parameter")
    project.sql("CREATE TABLE A (ID INTEGER, F CHAR(1))")
    with project.connect() as db:
        cur = db.con.cursor()
        with pytest.raises(Exception, match="expected length 1, actual 4"):
            cur.execute("INSERT INTO A (ID, F) VALUES (?, ?)", (1, None))
        db.rollback()


def test_without_the_driver_internals_everything_goes_the_drivers_way(project):
    """A driver whose statement internals differ: Inserter must still store every row."""
    class Changed(Inserter):
        def _setup_fast(self, batch):
            raise AttributeError("_in_meta")
    project.sql("CREATE TABLE A (ID INTEGER NOT NULL PRIMARY KEY, F CHAR(1), N NUMERIC(9,2))")
    with project.connect() as db:
        cur = db.con.cursor()
        ins = Changed(cur, ["INSERT INTO A VALUES (", ", ", ", ", ")"])
        for row in ((1, "Y", Decimal("1.50")), (2, None, None)):
            ins.run(row)
        assert (ins.fast, ins.slow) == (0, 2)
        ins.close()
        db.commit()
        assert db.query("SELECT * FROM A ORDER BY ID") == [(1, "Y", Decimal("1.50")), (2, None, None)]
        db.commit()


def test_batches_store_what_single_rows_store(project):
    """With types, rows go as EXECUTE BLOCKs of many statements: same result, and a row the
    fast path cannot pack sends its batch row by row."""
    project.sql(f"CREATE TABLE A ({COLS})", f"CREATE TABLE B ({COLS})")
    types = ["INTEGER", "SMALLINT", "BIGINT", "NUMERIC(18,4)", "NUMERIC(9,2)", "DECIMAL(4,1)", "FLOAT",
             "DOUBLE PRECISION", "CHAR(5)", "CHAR(3) CHARACTER SET UTF8", "CHAR(4) CHARACTER SET NONE",
             "BINARY(4)", "VARCHAR(10) CHARACTER SET WIN1251", "VARCHAR(6) CHARACTER SET UTF8", "VARBINARY(4)",
             "DATE", "TIME", "TIMESTAMP", "BOOLEAN"]
    rows = [(i * 10 + r[0],) + tuple(r[1:]) for i in range(30) for r in ROWS[:4]]   # 120 rows ...
    rows.insert(50, (999,) + tuple(ROWS[4][1:]))                                     # ... and one for the driver
    n = len(COLS.split(", "))
    with project.connect() as db:
        cur = db.con.cursor()
        batched = Inserter(cur, ["INSERT INTO A VALUES ("] + [", "] * (n - 1) + [")"], types=types, batch=40)
        single = Inserter(cur, ["INSERT INTO B VALUES ("] + [", "] * (n - 1) + [")"])
        for row in rows:
            batched.run(row)
            single.run(row)
        batched.close()
        single.close()
        assert batched.batches > 0 and batched.fast + batched.slow == len(rows)
        db.commit()
        a = db.query("SELECT * FROM A ORDER BY ID")
        b = db.query("SELECT * FROM B ORDER BY ID")
        db.commit()
    assert len(a) == len(rows)
    assert [tuple(map(repr, r)) for r in a] == [tuple(map(repr, r)) for r in b]


def test_an_error_in_a_batch_is_raised(project):
    project.sql("CREATE TABLE A (ID INTEGER NOT NULL PRIMARY KEY, X INTEGER CHECK (X < 10))")
    with project.connect() as db:
        cur = db.con.cursor()
        ins = Inserter(cur, ["INSERT INTO A VALUES (", ", ", ")"], types=["INTEGER", "INTEGER"], batch=50)
        for i in range(5):
            ins.run((i, i * 3))                           # 4 * 3 = 12 violates the CHECK
        with pytest.raises(Exception, match="CHECK"):
            ins.close()
        db.rollback()
