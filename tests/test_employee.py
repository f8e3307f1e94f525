"""Firebird's EMPLOYEE sample, end to end: the minimum real schema fbaudit must take as it is.

Built from Firebird's own employee.sql (tests/employee.py) in a database with no default character
set, on every target. All 10 tables are audited with a baseline; the sample's own procedures and
triggers change them; after a transfer every row rebuilt from its history equals the table, and
history shows the NONE text as text.
"""
from __future__ import annotations

import pytest

from fbaudit import capture, history, transfer, versions
from fbaudit.catalog import read_table
from fbaudit.forms import NoneText, decode_value, key_expr, read_expr, value_kind
from fbaudit.registry import Registry

import employee
from conftest import Project

@pytest.fixture
def emp(target, tmp_path) -> Project:
    from firebird.driver import connect, create_database
    from fbaudit.config import Config, SourceSpec
    from fbaudit.runtime import load_client
    load_client()
    assert employee.SCRIPT.exists(), f"{employee.SCRIPT} is missing: apt-get install firebird3.0-examples " \
                                     "(bash scripts/test installs it)"
    main, logdb = target.spec("main", tmp_path), target.spec("log", tmp_path)
    create_database(main.database, user=main.user, password=main.password()).close()   # no default charset
    if target.is_server:
        target.created.append(main)
        target.create(logdb).close()
    con = connect(main.database, user=main.user, password=main.password())
    try:
        employee.build(con)
    finally:
        con.close()
    src = SourceSpec(name="employee", database=main.database, user=main.user, password_env=main.password_env,
                     password_file=main.password_file, registry=tmp_path / "tables.yaml")
    cfg = Config(path=tmp_path / "fbaudit.yaml", log=logdb, sources=(src,), prefix="FBA_",
                 checkpoints_dir=tmp_path / "checkpoints")
    return Project(target, cfg, src, logdb, tmp_path)


def app(project, charset: str = "UTF8"):
    """The sample's application: its own connection, committing its own work."""
    from firebird.driver import connect
    return connect(project.main.database, user=project.main.user, password=project.main.password(),
                   charset=charset)


def rows_as_logged(project, table: str) -> dict[str, dict[str, str]]:
    """Every row of ``table`` as {key as typed: {column: canonical text}} (NULLs left out)."""
    entry = Registry.load(project.registry_path).tables[table]
    entry_fields = set(entry.fields)
    with project.connect() as db:
        info = read_table(db, table)
        cols = [c for c in info.columns if c.name in entry_fields]
        keys = [info.column(k) for k in entry.key]
        sql = (f"SELECT {key_expr(keys, 'T')}, {', '.join(read_expr(c, 'T', db.major) for c in cols)} "
               f"FROM {table} T")
        cur = db.con.cursor()
        cur.execute(sql)
        raw = [[v.read() if hasattr(v, "read") else v for v in r] for r in cur.fetchall()]
        cur.close()
        db.commit()
    ref = history.TableRef(0, "employee", entry.number, table, entry.key,
                           tuple(c.kind == "binary" for c in keys), NoneText())
    out = {}
    for record_key, *values in raw:
        typed = history.typed_key(record_key, ref)
        out[typed] = {c.name: decode_value(v, value_kind(c.kind, c.type), NoneText())
                      for c, v in zip(cols, values) if v is not None}
    assert len(out) == len(raw), f"{table}: two rows share a key"
    return out


def test_employee_is_audited_whole_and_its_history_rebuilds_every_row(emp):
    project = emp
    capture.init(project.config)
    warnings = []
    for table in employee.TABLES:
        res = capture.enable(project.config, table, baseline=True)
        warnings += res.warnings
    assert any("JOB.LANGUAGE_REQ" in w and "ARRAY" in w for w in warnings), warnings
    assert any("PROJ_DEPT_BUDGET.QUART_HEAD_CNT" in w for w in warnings), warnings

    con = app(project)
    try:
        cur = con.cursor()
        # the sample's own procedures and triggers at work
        cur.execute("EXECUTE PROCEDURE ADD_EMP_PROJ(?, ?)", (141, "GUIDE"))
        cur.execute("UPDATE EMPLOYEE SET SALARY = SALARY * 1.05 WHERE DEPT_NO = '621'")   # SAVE_SALARY_CHANGE
        cur.execute("INSERT INTO CUSTOMER (CUSTOMER, CITY, COUNTRY) VALUES ('Bäckerei Müller', 'Zürich', "
                    "'Switzerland')")                                               # SET_CUST_NO
        cur.execute("SELECT FIRST 1 E.EMP_NO FROM EMPLOYEE E WHERE NOT EXISTS (SELECT 1 FROM SALES S WHERE "
                    "S.SALES_REP = E.EMP_NO) AND EXISTS (SELECT 1 FROM DEPARTMENT D WHERE D.MNGR_NO = E.EMP_NO) "
                    "AND EXISTS (SELECT 1 FROM EMPLOYEE_PROJECT P WHERE P.EMP_NO = E.EMP_NO) ORDER BY 1")
        gone = cur.fetchone()[0]
        cur.execute("EXECUTE PROCEDURE DELETE_EMPLOYEE(?)", (gone,))               # five tables, across the cycle
        cur.execute("UPDATE COUNTRY SET CURRENCY = 'Euro' WHERE COUNTRY = 'Switzerland'")
        cur.execute("UPDATE JOB SET JOB_TITLE = 'Chief Executive' WHERE JOB_CODE = 'CEO'")
        cur.execute("UPDATE PROJ_DEPT_BUDGET SET PROJECTED_BUDGET = PROJECTED_BUDGET + 1 WHERE PROJ_ID = 'VBASE'")
        con.commit()
        cur.execute("SELECT S.PO_NUMBER FROM SALES S JOIN CUSTOMER C ON C.CUST_NO = S.CUST_NO "
                    "WHERE S.ORDER_STATUS <> 'shipped' AND C.ON_HOLD IS NULL ORDER BY 1")
        shipped = None
        for (po,) in cur.fetchall():
            try:
                cur.execute("EXECUTE PROCEDURE SHIP_ORDER(?)", (po,))
                con.commit()
                shipped = po
                break
            except Exception:           # the sample's own rules (overdue balance, ...) refused this order
                con.rollback()
        assert shipped, "no order could be shipped"
    finally:
        con.close()
    transfer.transfer(project.config)

    rebuilt = 0
    for table in employee.TABLES:
        for key, values in rows_as_logged(project, table).items():
            state = versions.record_state(project.config, table, key)
            assert state["exists"] and state["complete"], (table, key)
            assert {k: v for k, v in state["fields"].items() if v is not None} == values, (table, key)
            rebuilt += 1
    with project.connect() as db:
        assert rebuilt == sum(db.scalar(f"SELECT COUNT(*) FROM {t}") for t in employee.TABLES) > 260
        db.commit()
    # history shows the NONE text as the application wrote it, and the deleted employee as deleted
    cust = history.search(project.config, table="CUSTOMER")["items"][0]
    h = history.history(project.config, "CUSTOMER", cust["key"]["CUST_NO"])
    assert h["versions"][-1]["changes"]["CITY"]["new"] == "Zürich"
    assert h["versions"][-1]["changes"]["CUSTOMER"]["new"] == "Bäckerei Müller"
    assert not versions.record_state(project.config, "EMPLOYEE", str(gone))["exists"]
    sales = history.history(project.config, "SALES", shipped)
    assert sales["versions"][-1]["changes"]["ORDER_STATUS"]["new"] == "shipped"
    country = history.history(project.config, "COUNTRY", "Switzerland")["versions"]
    assert [v["operation"] for v in country] == ["baseline", "update"]


def dump(project) -> dict[str, list]:
    """Every row of the 10 tables, exactly (NONE text as bytes, ARRAY columns as lists)."""
    out = {}
    with project.connect() as db:
        for t in employee.TABLES:
            info = read_table(db, t)
            cols = [c for c in info.columns if c.auditable or c.is_array]
            exprs = ", ".join(c.name if c.is_array else c.readable(c.name) for c in cols)
            cur = db.con.cursor()
            cur.execute(f"SELECT {exprs} FROM {t} ORDER BY {', '.join(info.primary_key)}")
            out[t] = [tuple(v.read() if hasattr(v, "read") else v for v in r) for r in cur.fetchall()]
            cur.close()
        db.commit()
    return out


def test_a_checkpoint_of_all_ten_tables_restores_exactly(emp):
    from fbaudit import checkpoint as cp
    project = emp
    con = app(project)
    try:
        cur = con.cursor()
        # an INTEGER array with values (the sample's arrays are all NULL; an ARRAY of text is copied only
        # where NULL: tests/test_checkpoint.py)
        cur.execute("UPDATE PROJ_DEPT_BUDGET SET QUART_HEAD_CNT = ? WHERE PROJ_ID = 'VBASE' AND DEPT_NO = '621'",
                    ([1, 2, 3, 4],))
        con.commit()
    finally:
        con.close()
    before = dump(project)
    made = cp.create(project.config, all_tables=True, description="EMPLOYEE, all of it")
    assert set(made["tables"]) == set(employee.TABLES) and made["sequences"] >= 2

    con = app(project)
    try:
        cur = con.cursor()
        # across the DEPARTMENT <-> EMPLOYEE cycle and the arrays, through the sample's own code
        cur.execute("UPDATE DEPARTMENT SET MNGR_NO = NULL")
        cur.execute("EXECUTE PROCEDURE DELETE_EMPLOYEE(?)", (4,))
        cur.execute("UPDATE EMPLOYEE SET DEPT_NO = '000', SALARY = SALARY + 1000 WHERE DEPT_NO = '621'")
        cur.execute("UPDATE PROJ_DEPT_BUDGET SET QUART_HEAD_CNT = ?", ([9, 9, 9, 9],))
        cur.execute("UPDATE CUSTOMER SET ON_HOLD = NULL")
        cur.execute("DELETE FROM SALES WHERE ORDER_STATUS <> 'shipped'")
        cur.execute("INSERT INTO COUNTRY VALUES ('Atlantis', 'Shell')")
        con.commit()
    finally:
        con.close()
    assert dump(project) != before
    res = cp.restore(project.config, made["id"])
    assert res["total_rows"] == made["total_rows"]
    assert dump(project) == before
