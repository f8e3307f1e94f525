"""Capture: what the generated triggers record, on a real database."""
from __future__ import annotations

import pytest

from fbaudit import objects
from fbaudit import capture
from fbaudit.forms import decode_key, encode_key
from fbaudit.db import apply_plan
from fbaudit.errors import CatalogError, FbauditError
from fbaudit.registry import Registry

from helpers import packets, run_sql


@pytest.fixture
def customer(project):
    project.sql(
        "CREATE TABLE CUSTOMER (ID INTEGER NOT NULL PRIMARY KEY, NAME VARCHAR(40) CHARACTER SET WIN1251, "
        "CITY VARCHAR(40) CHARACTER SET UTF8, LIMIT_ NUMERIC(15,2), NOTE BLOB SUB_TYPE TEXT CHARACTER SET WIN1251, "
        "EDITED_BY VARCHAR(31))")
    capture.init(project.config)
    capture.enable(project.config, "customer")
    return project


def test_init_is_idempotent_and_creates_the_staging_objects(project):
    first = capture.init(project.config)
    assert "LOG_PACKET" in first.data["sources"][0]["created"]
    second = capture.init(project.config)
    assert second.data["sources"][0]["created"] == []
    with project.connect() as db:
        assert objects.is_initialized(db, project.prefix)
        assert db.scalar(f"SELECT COUNT(*) FROM {project.prefix}LOG_INFO") == 1


def test_init_dry_run_changes_nothing(project):
    res = capture.init(project.config, dry_run=True)
    assert any(s.object == "LOG_PACKET" for s in res.statements)
    with project.connect() as db:
        assert not objects.is_initialized(db, project.prefix)


def test_insert_update_delete_are_captured_with_old_and_new(customer):
    run_sql(customer, [
        "INSERT INTO CUSTOMER (ID, NAME, CITY, LIMIT_, NOTE) VALUES (1, 'Иван', 'Москва', 100.50, 'первый')",
        "UPDATE CUSTOMER SET NAME = 'Пётр', LIMIT_ = 200 WHERE ID = 1",
        "DELETE FROM CUSTOMER WHERE ID = 1",
    ])
    ins, upd, dele = packets(customer, "CUSTOMER")
    assert (ins.operation, upd.operation, dele.operation) == ("insert", "update", "delete")
    assert ins.key == upd.key == dele.key == "1"
    assert ins.changes == {
        "ID": {"old": None, "new": "1"}, "NAME": {"old": None, "new": "Иван"},
        "CITY": {"old": None, "new": "Москва"}, "LIMIT_": {"old": None, "new": "100.50"},
        "NOTE": {"old": None, "new": "первый"}}
    assert upd.changes == {"NAME": {"old": "Иван", "new": "Пётр"}, "LIMIT_": {"old": "100.50", "new": "200.00"}}
    assert dele.changes["NAME"] == {"old": "Пётр", "new": None}
    assert set(dele.changes) == {"ID", "NAME", "CITY", "LIMIT_", "NOTE"}


def test_changes_to_and_from_null_are_captured(customer):
    """The article's `<>` misses these (docs/capture.md "What counts as changed")."""
    run_sql(customer, [
        "INSERT INTO CUSTOMER (ID, NAME) VALUES (2, 'a')",
        "UPDATE CUSTOMER SET NAME = NULL, CITY = 'x' WHERE ID = 2",
    ])
    upd = packets(customer)[-1]
    assert upd.changes == {"NAME": {"old": "a", "new": None}, "CITY": {"old": None, "new": "x"}}


def test_update_that_changes_nothing_logs_no_packet(customer):
    run_sql(customer, ["INSERT INTO CUSTOMER (ID, NAME) VALUES (3, 'a')",
                       "UPDATE CUSTOMER SET NAME = 'a' WHERE ID = 3",
                       "UPDATE CUSTOMER SET NAME = NAME, CITY = NULL WHERE ID = 3"])
    assert [p.operation for p in packets(customer)] == ["insert"]


def test_author_from_transaction_context_and_comment(customer):
    run_sql(customer, [
        "SELECT RDB$SET_CONTEXT('USER_TRANSACTION', 'FBAUDIT_AUTHOR', 'clerk-17'), "
        "RDB$SET_CONTEXT('USER_TRANSACTION', 'FBAUDIT_COMMENT', 'price review') FROM RDB$DATABASE",
        "INSERT INTO CUSTOMER (ID, NAME) VALUES (4, 'a')",
    ])
    p = packets(customer)[-1]
    assert (p.author, p.comment, p.user) == ("clerk-17", "price review", customer.main.user.upper())
    assert p.transaction_id > 0


def test_author_defaults_to_database_user(customer):
    run_sql(customer, ["INSERT INTO CUSTOMER (ID, NAME) VALUES (5, 'a')"])
    assert packets(customer)[-1].author == customer.main.user.upper()


def test_author_column_wins(project):
    project.sql("CREATE TABLE PRICE (SKU VARCHAR(10) NOT NULL PRIMARY KEY, AMOUNT NUMERIC(10,2), CHANGED_BY VARCHAR(20))")
    capture.init(project.config)
    capture.enable(project.config, "PRICE", author="changed_by")
    run_sql(project, ["INSERT INTO PRICE VALUES ('A|1', 5, 'maria')",
                      "UPDATE PRICE SET AMOUNT = 6, CHANGED_BY = 'olga' WHERE SKU = 'A|1'"])
    ins, upd = packets(project)
    assert (ins.author, upd.author) == ("maria", "olga")
    assert ins.key == "A\\|1" and decode_key(ins.key) == ["A|1"]


def test_composite_and_non_integer_keys(project):
    project.sql("CREATE TABLE ORDER_LINE (ORDER_NO VARCHAR(12) NOT NULL, LINE_DATE DATE NOT NULL, "
                "QTY INTEGER, PRIMARY KEY (ORDER_NO, LINE_DATE))")
    capture.init(project.config)
    capture.enable(project.config, "ORDER_LINE")
    run_sql(project, ["INSERT INTO ORDER_LINE VALUES ('A\\B', '2024-02-29', 3)"])
    p = packets(project)[-1]
    assert decode_key(p.key) == ["A\\B", "2024-02-29"]
    assert p.key == encode_key(["A\\B", "2024-02-29"])


def test_key_option_for_table_without_primary_key(project):
    project.sql("CREATE TABLE NOPK (CODE VARCHAR(5), V INTEGER)")
    capture.init(project.config)
    with pytest.raises(CatalogError, match="no primary key"):
        capture.enable(project.config, "NOPK")
    with pytest.raises(CatalogError, match=r"key \(CODE\) is not backed by a unique constraint"):
        capture.enable(project.config, "NOPK", key=["code"])
    res = capture.enable(project.config, "NOPK", key=["code"], key_not_unique=True)
    assert any("not unique" in w for w in res.warnings) and any("may be NULL" in w for w in res.warnings)
    run_sql(project, ["INSERT INTO NOPK VALUES ('x', 1)"])
    assert packets(project)[-1].key == "x"


def test_key_option_accepts_a_unique_index_and_refuses_a_plain_one(project):
    project.sql("CREATE TABLE DEPT (DEPT_NO INTEGER NOT NULL PRIMARY KEY, CODE VARCHAR(5) NOT NULL, "
                "MNGR INTEGER, BUDGET INTEGER)",
                "CREATE UNIQUE INDEX DEPT_CODE ON DEPT (CODE)", "CREATE INDEX DEPT_MNGR ON DEPT (MNGR)")
    capture.init(project.config)
    with pytest.raises(CatalogError, match="MNGR.*not backed by a unique"):
        capture.enable(project.config, "DEPT", key=["MNGR"])
    res = capture.enable(project.config, "DEPT", key=["CODE"])
    assert res.warnings == []
    capture.disable(project.config, "DEPT")
    res = capture.enable(project.config, "DEPT", key=["CODE", "MNGR"])          # a superset of a unique key
    assert res.warnings and "MNGR may be NULL" in res.warnings[0]


def test_pause_and_resume(customer):
    capture.set_logging(customer.config, False)
    run_sql(customer, ["INSERT INTO CUSTOMER (ID) VALUES (10)"])
    capture.set_logging(customer.config, True)
    run_sql(customer, ["INSERT INTO CUSTOMER (ID) VALUES (11)"])
    assert [p.key for p in packets(customer)] == ["11"]


def test_second_enable_is_a_no_op_that_says_so(customer):
    res = capture.enable(customer.config, "CUSTOMER")
    assert res.data["sources"][0]["already"] is True
    assert "already audited" in res.lines[0]


def test_unknown_table_changes_nothing(project):
    capture.init(project.config)
    with pytest.raises(CatalogError, match="does not exist"):
        capture.enable(project.config, "NO_SUCH_TABLE")
    assert not project.registry_path.exists()


def test_enable_before_init_is_refused(project):
    project.sql("CREATE TABLE T1 (ID INTEGER NOT NULL PRIMARY KEY)")
    with pytest.raises(FbauditError, match="fbaudit init"):
        capture.enable(project.config, "T1")


def test_disable_drops_trigger_and_keeps_number(customer):
    capture.disable(customer.config, "CUSTOMER")
    run_sql(customer, ["INSERT INTO CUSTOMER (ID) VALUES (20)"])
    assert packets(customer) == []
    reg = Registry.load(customer.registry_path)
    assert reg.tables["CUSTOMER"].enabled is False and reg.tables["CUSTOMER"].number == 1
    customer.sql("CREATE TABLE OTHER (ID INTEGER NOT NULL PRIMARY KEY)")
    capture.enable(customer.config, "OTHER")
    assert Registry.load(customer.registry_path).tables["OTHER"].number == 2
    capture.enable(customer.config, "CUSTOMER")
    assert Registry.load(customer.registry_path).tables["CUSTOMER"].number == 1


def test_sync_detects_added_and_retyped_columns(customer):
    before = Registry.load(customer.registry_path).tables["CUSTOMER"]
    old_city = before.fields["CITY"].number
    customer.sql("ALTER TABLE CUSTOMER ADD PHONE VARCHAR(20)",
                 "ALTER TABLE CUSTOMER ALTER CITY TYPE VARCHAR(80) CHARACTER SET UTF8")
    dry = capture.sync(customer.config, dry_run=True)
    drift = dry.data["sources"][0]["drift"][0]
    assert drift["added"] == ["PHONE"]
    assert drift["retyped"] and drift["retyped"][0].startswith("CITY")
    assert Registry.load(customer.registry_path).tables["CUSTOMER"].fields == before.fields  # dry run
    capture.sync(customer.config)
    after = Registry.load(customer.registry_path).tables["CUSTOMER"]
    used = {f.number for f in before.fields.values()}
    assert after.fields["PHONE"].number not in used
    assert after.fields["CITY"].number not in used and after.retired["CITY"].number == old_city
    run_sql(customer, ["INSERT INTO CUSTOMER (ID, PHONE, CITY) VALUES (30, '+7 495', 'Тверь')"])
    assert packets(customer)[-1].changes["PHONE"]["new"] == "+7 495"
    assert capture.sync(customer.config).data["sources"][0]["drift"] == []


def test_dropping_an_audited_column_commits_and_sync_retires_its_number(customer):
    """Firebird refused to drop a column the audit trigger used ("there are 1 dependencies").
    DDL_FOLLOW re-creates the trigger without it in the DDL's transaction: the drop commits, the
    other columns stay logged, and sync retires the number, never to be used again."""
    note = Registry.load(customer.registry_path).tables["CUSTOMER"].fields["NOTE"].number
    customer.sql("ALTER TABLE CUSTOMER DROP NOTE")
    run_sql(customer, ["INSERT INTO CUSTOMER (ID, NAME) VALUES (77, 'after the drop')"])
    assert packets(customer)[-1].changes["NAME"]["new"] == "after the drop"
    event = packets(customer, schema=True)[-1]
    assert event.key == "CUSTOMER" and event.changes["event"]["new"] == "ALTER TABLE"
    assert event.changes["sql"]["new"] == "ALTER TABLE CUSTOMER DROP NOTE"
    assert event.changes["audit_trigger"]["new"] == "audit trigger followed"
    synced = capture.sync(customer.config)
    assert synced.data["sources"][0]["drift"][0]["dropped"] == ["NOTE"]
    entry = Registry.load(customer.registry_path).tables["CUSTOMER"]
    assert "NOTE" not in entry.fields and entry.retired["NOTE"].number == note
    assert note not in {f.number for f in entry.fields.values()}


def test_sync_recreates_a_dropped_trigger(customer):
    customer.sql(f"DROP TRIGGER {customer.prefix}AUDIT_1")
    res = capture.sync(customer.config)
    assert res.data["sources"][0]["drift"][0]["missing_trigger"] is True
    run_sql(customer, ["INSERT INTO CUSTOMER (ID) VALUES (40)"])
    assert packets(customer)[-1].key == "40"


def test_excluded_column_is_not_logged(project):
    project.sql("CREATE TABLE ACC (ID INTEGER NOT NULL PRIMARY KEY, LOGIN VARCHAR(20), PASSWORD_HASH VARCHAR(64))")
    capture.init(project.config)
    capture.enable(project.config, "ACC", exclude=["password_hash"])
    run_sql(project, ["INSERT INTO ACC VALUES (1, 'u', 'secret')",
                      "UPDATE ACC SET PASSWORD_HASH = 'other' WHERE ID = 1"])
    ps = packets(project)
    assert len(ps) == 1 and "PASSWORD_HASH" not in ps[0].changes


def test_status_reports_waiting_packets(customer):
    run_sql(customer, ["INSERT INTO CUSTOMER (ID) VALUES (50)"])
    st = capture.status(customer.config).data["sources"][0]
    assert st["logging"] is True and st["waiting"] == 1
    assert st["tables"] == [{"table": "CUSTOMER", "number": 1, "enabled": True, "trigger": True,
                             "trigger_inactive": False, "not_logged": [], "trigger_altered": False,
                             "schema_follow": True}]


@pytest.mark.parametrize("charset", ["WIN1252", "UTF8"])
def test_widening_an_audited_column_never_breaks_the_application(project, charset):
    """ALTER ... TYPE VARCHAR(wider) works while audited; the trigger must not
    fail the application's next write with a truncation error (before sync)."""
    project.sql(f"CREATE TABLE SUPPLIER (ID INTEGER NOT NULL PRIMARY KEY, NAME VARCHAR(10) CHARACTER SET {charset}, "
                f"CODE VARCHAR(5) CHARACTER SET {charset} NOT NULL)")
    capture.init(project.config)
    capture.enable(project.config, "SUPPLIER", key=["CODE"], author="NAME", key_not_unique=True)
    project.sql(f"ALTER TABLE SUPPLIER ALTER NAME TYPE VARCHAR(40) CHARACTER SET {charset}",
                f"ALTER TABLE SUPPLIER ALTER CODE TYPE VARCHAR(30) CHARACTER SET {charset}")
    long_name = "Fournisseur général très long"
    run_sql(project, [f"INSERT INTO SUPPLIER VALUES (1, '{long_name}', 'CODE-WIDER-THAN-FIVE')"])
    p = packets(project)[-1]
    assert p.changes["NAME"]["new"] == long_name and p.author == long_name
    assert p.key == "CODE-WIDER-THAN-FIVE"


def test_hand_edited_exclude_is_applied_by_plain_sync(customer):
    text = customer.registry_path.read_text(encoding="utf-8").replace("exclude: []", "exclude: [NOTE]")
    customer.registry_path.write_text(text, encoding="utf-8")
    res = capture.sync(customer.config)
    assert res.data["sources"][0]["drift"][0]["trigger_outdated"] is True
    run_sql(customer, ["INSERT INTO CUSTOMER (ID, NAME, NOTE) VALUES (60, 'a', 'secret note')"])
    assert "NOTE" not in packets(customer)[-1].changes
    assert capture.sync(customer.config).data["sources"][0]["drift"] == []


@pytest.fixture
def supplier(project):
    project.sql("CREATE TABLE SUPPLIER (CODE VARCHAR(8) NOT NULL PRIMARY KEY, NAME VARCHAR(40), MEMO VARCHAR(100), "
                "CHANGED_BY VARCHAR(20))")
    capture.init(project.config)
    capture.enable(project.config, "SUPPLIER", exclude=["MEMO"], author="CHANGED_BY")
    return project


def _numbers(entry):
    return {n: f.number for n, f in entry.fields.items()}


def test_lost_registry_keeps_numbers_and_settings_on_enable(supplier):
    before = Registry.load(supplier.registry_path).tables["SUPPLIER"]
    supplier.registry_path.unlink()
    res = capture.enable(supplier.config, "SUPPLIER")
    assert any("dictionary" in w for w in res.warnings)
    after = Registry.load(supplier.registry_path).tables["SUPPLIER"]
    assert (after.number, after.author, after.exclude, after.key) == (before.number, "CHANGED_BY", ["MEMO"], ["CODE"])
    assert _numbers(after) == _numbers(before)
    run_sql(supplier, ["INSERT INTO SUPPLIER VALUES ('S1', 'n', 'memo', 'olga')"])
    p = packets(supplier)[-1]
    assert p.author == "olga" and "MEMO" not in p.changes


def test_lost_registry_is_restored_by_sync(supplier):
    before = Registry.load(supplier.registry_path).tables["SUPPLIER"]
    supplier.registry_path.unlink()
    res = capture.sync(supplier.config)
    assert res.data["sources"][0]["drift"][0]["recovered"] is True
    after = Registry.load(supplier.registry_path).tables["SUPPLIER"]
    assert _numbers(after) == _numbers(before) and after.exclude == ["MEMO"]


def test_sync_names_added_columns_not_a_hand_edit(supplier):
    supplier.sql("ALTER TABLE SUPPLIER ADD EMAIL VARCHAR(60)")
    drift = capture.sync(supplier.config).data["sources"][0]["drift"][0]
    assert drift["added"] == ["EMAIL"] and drift["trigger_outdated"] is False


def test_trigger_installed_from_ddl_output_keeps_its_numbers_on_enable(project):
    """`fbaudit ddl T | isql` installs trigger and dictionary rows, not the registry;
    a later `enable` must reuse those numbers."""
    project.sql("CREATE TABLE T (ID INTEGER NOT NULL PRIMARY KEY, A VARCHAR(5))")
    capture.init(project.config)
    with project.connect() as db:
        _, plan, _ = capture._plan_enable(db, project.config, Registry.load(project.registry_path), "T",
                                          key=None, author=None, exclude=[])
        apply_plan(db, plan)                           # what running the ddl script does
    capture.enable(project.config, "T")
    entry = Registry.load(project.registry_path).tables["T"]
    assert (entry.number, entry.fields["ID"].number, entry.fields["A"].number) == (1, 1, 2)


def test_a_change_is_one_packed_row_however_wide_or_long(project):
    """Capture 2.0: the trigger writes one LOG_PACKET row per change, its fields packed in PAYLOAD;
    nothing goes to LOG_1 / LOG_2. A change too long for the trigger's 32,000-byte VARCHAR (300
    columns of 50 characters here: over 32,000 bytes with their headers) is packed into a BLOB instead, and still
    decodes to exactly its values."""
    n = 300
    project.sql("CREATE TABLE NARROW (ID INTEGER NOT NULL PRIMARY KEY, A VARCHAR(10), B INTEGER)",
                f"CREATE TABLE WIDE (ID INTEGER NOT NULL PRIMARY KEY, "
                f"{', '.join(f'C{i} VARCHAR(50) CHARACTER SET UTF8' for i in range(n))})")
    capture.init(project.config)
    capture.enable(project.config, "NARROW")
    capture.enable(project.config, "WIDE")
    with project.connect() as db:
        body = objects.installed_trigger_body(db, project.prefix, 2)
    assert "V_LOG" not in body and body.count("EXECUTE STATEMENT (IIF(dt = 2, ") == 2
    assert "INSERT INTO FBA_LOG_PACKET_1" in body and "INSERT INTO FBA_LOG_PACKET_2" in body
    long = {f"C{i}": f"{i:03d}" + "€" * 47 for i in range(n)}             # 50 characters, 144 bytes each
    run_sql(project, ["INSERT INTO NARROW VALUES (1, 'x', 2)", "INSERT INTO WIDE (ID, C7) VALUES (1, 'short')"])
    run_sql(project, ["UPDATE WIDE SET " + ", ".join(f"C{i} = ?" for i in range(n)) + " WHERE ID = 1"],
            {0: list(long.values())})
    got = packets(project)
    assert [p.changes for p in got[:2]] == [
        {"ID": {"old": None, "new": "1"}, "A": {"old": None, "new": "x"}, "B": {"old": None, "new": "2"}},
        {"ID": {"old": None, "new": "1"}, "C7": {"old": None, "new": "short"}}]
    assert got[2].changes == {c: {"old": "short" if c == "C7" else None, "new": v} for c, v in long.items()}
    with project.connect() as db:
        sizes = [r[0] for r in db.query("SELECT OCTET_LENGTH(PAYLOAD) FROM FBA_LOG_PACKET_1 ORDER BY ID")]
        field_rows = db.scalar("SELECT (SELECT COUNT(*) FROM FBA_LOG_1) + (SELECT COUNT(*) FROM FBA_LOG_2) "
                               "+ (SELECT COUNT(*) FROM FBA_LOG_3) FROM RDB$DATABASE")
        db.commit()
    assert sizes[2] > 32000 and field_rows == 0


def test_a_change_that_fills_the_packing_variable_exactly_keeps_its_trailing_zero_bytes(project):
    """Firebird cuts a string assigned to a VARCHAR variable that is too long without an error when
    the excess is trailing pad bytes (zero bytes for OCTETS; measured on 3.0 and 5.0). A change
    whose packed form is a few bytes over the trigger's 32,000 and ends in zero bytes would have lost
    them and left a packet that cannot be unpacked: it goes through the BLOB path instead, exact, for
    the trigger (insert, update, delete) and the baseline alike."""
    project.sql("CREATE TABLE BINS (ID INTEGER NOT NULL PRIMARY KEY, "
                + ", ".join(f"B{i} VARCHAR(7000) CHARACTER SET OCTETS" for i in range(1, 6)) + ")")
    # Packed: "1,-1,1;1" (8 bytes) + 4 x ("k,-1,7000;" + 7000 bytes) + "6,-1,3945;" + 3945 = 32,003 bytes.
    full = [bytes([65 + i]) * 7000 for i in range(4)]
    last = b"x" * 3940 + b"\0" * 5
    row = full + [last]
    run_sql(project, ["INSERT INTO BINS VALUES (1, ?, ?, ?, ?, ?)"], {0: row})
    capture.init(project.config)
    capture.enable(project.config, "BINS", baseline=True)
    run_sql(project, ["INSERT INTO BINS VALUES (2, ?, ?, ?, ?, ?)", "UPDATE BINS SET B5 = ? WHERE ID = 2",
                      "DELETE FROM BINS WHERE ID = 1"],
            {0: row, 1: [last[:-1] + b"\0\0"]})
    got = packets(project, "BINS")
    assert [p.operation for p in got] == ["baseline", "insert", "update", "delete"]
    whole = {f"B{i}": v.hex().upper() for i, v in enumerate(row, 1)}
    assert {c: v["new"] for c, v in got[0].changes.items() if c != "ID"} == whole        # the baseline
    assert {c: v["new"] for c, v in got[1].changes.items() if c != "ID"} == whole        # the insert
    assert {c: v["old"] for c, v in got[3].changes.items() if c != "ID"} == whole        # the delete
    assert got[2].changes == {"B5": {"old": last.hex().upper(), "new": (last[:-1] + b"\0\0").hex().upper()}}


# Values SQL's comparison calls equal although they are logged differently:
# an update to one of them must log a field row (or history cannot rebuild the
# value), while an update to the very same value must still log nothing.
# (column, type, first value, second value, logged first, logged second, since)
SQL_EQUAL = [
    ("VU", "VARCHAR(20) CHARACTER SET UTF8", "'ab'", "'ab  '", "ab", "ab  ", 3),
    ("VW", "VARCHAR(20) CHARACTER SET WIN1251", "'Ёж'", "'Ёж '", "Ёж", "Ёж ", 3),
    ("VCI", "VARCHAR(20) CHARACTER SET UTF8 COLLATE UNICODE_CI", "'Abc'", "'aBC'", "Abc", "aBC", 3),
    ("CAI", "CHAR(3) CHARACTER SET UTF8 COLLATE UNICODE_CI_AI", "'Éa'", "'ea'", "Éa ", "ea ", 3),
    ("WCI", "VARCHAR(20) CHARACTER SET WIN1251 COLLATE WIN1251_UA", "'Ёж'", "'ёЖ'", "Ёж", "ёЖ", 3),
    ("VN", "VARCHAR(10) CHARACTER SET NONE", "'a'", "'a '", "61", "6120", 3),
    ("VO", "VARCHAR(8) CHARACTER SET OCTETS", "x'41'", "x'4100'", "41", "4100", 3),
    ("TU", "BLOB SUB_TYPE TEXT CHARACTER SET UTF8", "'ab'", "'ab '", "ab", "ab ", 3),
    ("TCI", "BLOB SUB_TYPE TEXT CHARACTER SET UTF8 COLLATE UNICODE_CI", "'Abc'", "'aBC'", "Abc", "aBC", 3),
    ("TW", "BLOB SUB_TYPE TEXT CHARACTER SET WIN1251", "'ж'", "'ж  '", "ж", "ж  ", 3),
    ("BB", "BLOB SUB_TYPE BINARY", "x'41'", "x'4100'", "41", "4100", 3),
    ("DP", "DOUBLE PRECISION", "0e0", "-0e0", "0E-16", "-0E-16", 4),
    ("FL", "FLOAT", "0e0", "-0e0", "0E-16", "-0E-16", 4),
    ("DF", "DECFLOAT(16)", "1.0", "1.00", "1.0", "1.00", 4),
    ("DF34", "DECFLOAT(34)", "0", "-0", "0", "-0", 4),
    ("TSZ", "TIMESTAMP WITH TIME ZONE", "'2024-01-01 12:00 +01:00'", "'2024-01-01 11:00 UTC'",
     "2024-01-01 12:00:00.0000 +01:00", "2024-01-01 11:00:00.0000 UTC", 4),
    ("TTZ", "TIME WITH TIME ZONE", "'12:00 +01:00'", "'11:00 +00:00'", "12:00:00.0000 +01:00", "11:00:00.0000 +00:00", 4),
    ("VB", "VARBINARY(8)", "x'41'", "x'4100'", "41", "4100", 4),
]


@pytest.fixture
def sql_equal(project):
    cases = [c for c in SQL_EQUAL if c[6] <= project.target.major]
    project.sql("CREATE TABLE EQ (ID INTEGER NOT NULL PRIMARY KEY, "
                + ", ".join(f"{c} {d}" for c, d, *_ in cases) + ", OTHER INTEGER)")
    capture.init(project.config)
    capture.enable(project.config, "EQ")
    return project, cases


def test_update_to_a_value_sql_calls_equal_but_logged_differently_is_logged(sql_equal):
    project, cases = sql_equal
    statements = []
    for i, (col, _, v1, v2, *_) in enumerate(cases, start=1):      # one record per case
        statements += [f"INSERT INTO EQ (ID, {col}) VALUES ({i}, {v1})",
                       f"UPDATE EQ SET {col} = {v2} WHERE ID = {i}"]
    run_sql(project, statements)
    ps = packets(project, "EQ")
    assert [p.operation for p in ps] == ["insert", "update"] * len(cases)
    for i, (col, _, _, _, t1, t2, _) in enumerate(cases):
        ins, upd = ps[2 * i], ps[2 * i + 1]
        assert ins.changes[col] == {"old": None, "new": t1}, col
        assert upd.changes == {col: {"old": t1, "new": t2}}, col


def test_update_to_the_same_value_still_logs_nothing(sql_equal):
    """The extra comparisons never call an unchanged value (NULL included) changed."""
    project, cases = sql_equal
    cols = [c[0] for c in cases]
    run_sql(project, [
        f"INSERT INTO EQ (ID, {', '.join(cols)}) VALUES (1, {', '.join(c[3] for c in cases)})",
        "INSERT INTO EQ (ID) VALUES (2)",                                   # every field NULL
        f"UPDATE EQ SET {', '.join(f'{c} = {c}' for c in cols)}",          # both records, to themselves
        f"UPDATE EQ SET {', '.join(f'{c} = {v2}' for c, _, _, v2, *_ in cases)} WHERE ID = 1",
        f"UPDATE EQ SET {', '.join(f'{c} = NULL' for c in cols)} WHERE ID = 2",
        "UPDATE EQ SET OTHER = 7 WHERE ID = 1",
    ])
    ps = packets(project, "EQ")
    assert [p.operation for p in ps] == ["insert", "insert", "update"]
    assert ps[2].changes == {"OTHER": {"old": None, "new": "7"}}
    assert capture.sync(project.config).data["sources"][0]["drift"] == []   # installed body == planned body


def test_a_statement_prepared_before_enable_is_not_audited_and_enable_says_so(project):
    """Measured Firebird behaviour (3.0, 4.0, 5.0): a statement prepared before the trigger existed
    runs without it until its connection prepares another statement on the table. enable cannot
    make another connection recompile, so it names the connections that hold such statements."""
    project.sql("CREATE TABLE PS (ID INTEGER NOT NULL PRIMARY KEY, V INTEGER)")
    run_sql(project, ["INSERT INTO PS VALUES (1, 1)"])
    capture.init(project.config)
    app = project.connect()
    try:
        cur = app.con.cursor()
        stmt = cur.prepare("update ps set V = ? where ID = 1")       # an application's cached statement
        res = capture.enable(project.config, "PS")
        assert res.data["sources"][0]["stale_statements"] == 1
        assert any("1 connection(s) hold statements on PS prepared before auditing started" in w
                   and "NOT audited" in w for w in res.warnings)
        cur.execute(stmt, (2,))
        app.con.commit()
        assert packets(project) == []                                 # the change went unaudited
        other = app.con.cursor()                                      # the connection prepares anew:
        other.execute("SELECT COUNT(*) FROM PS")
        other.fetchall()
        app.con.commit()
        cur.execute(stmt, (3,))                                       # now the same statement is audited
        app.con.commit()
        assert len(packets(project)) == 1
    finally:
        app.close()
    # Nothing prepared elsewhere: no warning.
    project.sql("CREATE TABLE PS2 (ID INTEGER NOT NULL PRIMARY KEY)")
    res = capture.enable(project.config, "PS2")
    assert res.data["sources"][0]["stale_statements"] == 0 and not res.warnings


def test_an_audit_trigger_switched_off_behind_fbaudits_back_is_critical_and_sync_repairs_it(project):
    """The table's owner runs ALTER TRIGGER ... INACTIVE: nothing is logged from then on. `status`
    said OK (exit 0) and `sync` saw nothing; now it is CRITICAL (exit 2) and sync switches it on."""
    project.sql("CREATE TABLE T (ID INTEGER NOT NULL PRIMARY KEY, V INTEGER)")
    capture.init(project.config)
    capture.enable(project.config, "T")
    project.sql("ALTER TRIGGER FBA_AUDIT_1 INACTIVE")
    run_sql(project, ["INSERT INTO T VALUES (1, 1)"])
    assert packets(project) == []                                    # the gap the admin must hear about
    [event] = packets(project, schema=True)                          # and who made it, in the log
    assert (event.key, event.user, event.changes["sql"]["new"]) == ("FBA_AUDIT_1", "SYSDBA",
                                                                   "ALTER TRIGGER FBA_AUDIT_1 INACTIVE")
    res = capture.status(project.config)
    assert res.data["health"] == "critical" and res.data["exit_code"] == 2
    assert any("FBA_AUDIT_1 is INACTIVE" in p["message"] and p["level"] == "critical"
               for p in res.data["sources"][0]["problems"])
    synced = capture.sync(project.config)
    assert synced.data["sources"][0]["drift"][0]["trigger_inactive"] and "INACTIVE" in synced.lines[0]
    run_sql(project, ["INSERT INTO T VALUES (2, 2)"])
    assert [p.key for p in packets(project)] == ["2"]
    res = capture.status(project.config)
    assert not any("INACTIVE" in p["message"] for p in res.data["sources"][0]["problems"])
    assert "agree" in capture.sync(project.config).lines[0]


def test_the_trigger_writes_one_record_per_change(project):
    """10,000 changes (MON$RECORD_STATS of the writing attachment): the trigger inserts exactly one
    record per change, into the packet table of the current data table (LOG_PACKET_1), never
    updates or deletes, and writes nothing else: no LOG_PACKET row, no field rows (LOG_1/2/3)."""
    cols = ", ".join(f"F{i} VARCHAR(40) CHARACTER SET UTF8" for i in range(20))
    project.sql(f"CREATE TABLE BULK (ID INTEGER NOT NULL PRIMARY KEY, {cols})")
    capture.init(project.config)
    capture.enable(project.config, "BULK")
    values = ", ".join(f"'value {i} of the row ' || :i" for i in range(20))
    with project.connect() as db:
        db.con.execute_immediate(
            "EXECUTE BLOCK AS DECLARE i INTEGER = 0; BEGIN WHILE (i < 4000) DO BEGIN i = i + 1; "
            f"INSERT INTO BULK VALUES (:i, {values}); END "
            "UPDATE BULK SET F3 = 'changed', F9 = NULL WHERE ID <= 3000; "
            "DELETE FROM BULK WHERE ID > 1000; END")
        db.commit()
        stats = {name: (ins, upd, dele) for name, ins, upd, dele in db.query(
            "SELECT TRIM(t.MON$TABLE_NAME), r.MON$RECORD_INSERTS, r.MON$RECORD_UPDATES, r.MON$RECORD_DELETES "
            "FROM MON$TABLE_STATS t JOIN MON$RECORD_STATS r ON r.MON$STAT_ID = t.MON$RECORD_STAT_ID "
            "WHERE t.MON$STAT_ID = (SELECT MON$STAT_ID FROM MON$ATTACHMENTS WHERE MON$ATTACHMENT_ID = CURRENT_CONNECTION)")}
        db.commit()
    assert stats["BULK"] == (4000, 3000, 3000)
    assert stats[f"{project.prefix}LOG_PACKET_1"] == (10000, 0, 0)
    assert not any(name in stats for name in [f"{project.prefix}LOG_{n}" for n in (1, 2, 3)]
                   + [f"{project.prefix}LOG_PACKET", f"{project.prefix}LOG_PACKET_2"])


def test_values_the_fast_path_cannot_hold_are_logged_whole(project):
    """A cast to a shorter string drops trailing pad characters without an error, so the trigger
    tests each value's length: a binary BLOB over 8,000 bytes ending in zero bytes, a WIN1251 text
    BLOB over 2,000 characters ending in blanks, and CHAR / BINARY columns widened after the
    trigger was made (always padded) are logged whole, through the BLOB path."""
    octets = "BINARY" if project.target.major >= 4 else "CHAR"
    project.sql("CREATE TABLE PADS (ID INTEGER NOT NULL PRIMARY KEY, B BLOB SUB_TYPE BINARY, "
                "T BLOB SUB_TYPE TEXT CHARACTER SET WIN1251, C CHAR(5) CHARACTER SET WIN1251, "
                f"O {octets}(4){' CHARACTER SET OCTETS' if octets == 'CHAR' else ''}, U CHAR(3) CHARACTER SET UTF8)")
    capture.init(project.config)
    capture.enable(project.config, "PADS")
    project.sql("ALTER TABLE PADS ALTER C TYPE CHAR(10) CHARACTER SET WIN1251",
                f"ALTER TABLE PADS ALTER O TYPE {octets}(8){' CHARACTER SET OCTETS' if octets == 'CHAR' else ''}",
                "ALTER TABLE PADS ALTER U TYPE CHAR(30) CHARACTER SET UTF8")
    blob = b"\x01\x02" + b"\x00" * 9998
    text = "Жук" + " " * 2500
    run_sql(project, ["INSERT INTO PADS VALUES (1, ?, ?, ?, ?, ?)"],
            {0: (blob, text, "Жук", b"\x07", "€" * 10)})
    run_sql(project, ["UPDATE PADS SET C = 'abc' WHERE ID = 1"])
    run_sql(project, ["DELETE FROM PADS"])
    ins, upd, dele = packets(project)
    assert ins.changes["B"]["new"] == blob.hex() and ins.changes["T"]["new"] == text
    assert ins.changes["C"]["new"] == "Жук" + " " * 7                  # CHAR(10): padded to its new width
    assert ins.changes["O"]["new"] == "07" + "00" * 7
    assert ins.changes["U"]["new"] == "€" * 10 + " " * 20
    assert upd.changes == {"C": {"old": "Жук" + " " * 7, "new": "abc" + " " * 7}}
    assert dele.changes["B"]["old"] == blob.hex() and dele.changes["C"]["old"] == "abc" + " " * 7
