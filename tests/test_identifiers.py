"""Identifiers: quoted, mixed-case, non-ASCII and reserved-word names, names at
the version's length limit, and the prefix length check."""
from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from fbaudit import capture
from fbaudit.errors import CatalogError
from fbaudit.idents import check_length, normalize_name, quote_ident
from fbaudit.registry import Registry

from helpers import packets, run_sql


def audit(project, ddl: str, table: str) -> None:
    project.sql(ddl)
    capture.init(project.config)
    capture.enable(project.config, table)


# --------------------------------------------------------------------------
# quote_ident / normalize_name / check_length
# --------------------------------------------------------------------------
@pytest.mark.parametrize("name, sql", [
    ("CUSTOMER", "CUSTOMER"),
    ("ORDER_LINE$2", "ORDER_LINE$2"),
    ("Customer", '"Customer"'),
    ("customer", '"customer"'),
    ("ORDER", '"ORDER"'),
    ("SELECT", '"SELECT"'),
    ("USER", '"USER"'),
    ("LATERAL", '"LATERAL"'),
    ("1ST", '"1ST"'),
    ("_X", '"_X"'),
    ("MY TABLE", '"MY TABLE"'),
    ("A-B", '"A-B"'),
    ("Клиенты", '"Клиенты"'),
    ('A"B', '"A""B"'),
    ('"', '""""'),
])
def test_quote_ident_is_bare_only_when_safe(name, sql):
    assert quote_ident(name) == sql


def test_quote_ident_refuses_an_empty_name():
    with pytest.raises(CatalogError, match="empty name"):
        quote_ident("")


@pytest.mark.parametrize("typed, stored", [
    ("customer", "CUSTOMER"), ("Customer", "CUSTOMER"), ('"Customer"', "Customer"),
    ('"A""B"', 'A"B'), (" order_line ", "ORDER_LINE"), ("Клиенты", "Клиенты"), ('"Клиенты"', "Клиенты"),
])
def test_normalize_name_gives_the_stored_form(typed, stored):
    assert normalize_name(typed) == stored


def test_check_length_counts_bytes_on_3_and_characters_on_4():
    check_length("A" * 31, major_version=3, what="table")
    check_length("Ж" * 15 + "X", major_version=3, what="table")          # 31 bytes
    with pytest.raises(CatalogError, match="32 bytes long; Firebird 3.0 allows 31 bytes"):
        check_length("Ж" * 16, major_version=3, what="table")             # 16 characters, 32 bytes
    check_length("Ж" * 63, major_version=4, what="table")                 # 126 bytes, 63 characters
    with pytest.raises(CatalogError, match="64 characters long; Firebird 5 allows 63"):
        check_length("A" * 64, major_version=5, what="table")


def test_every_keyword_firebird_reserves_is_quoted(project, target):
    """Firebird 5.0 lists its own keywords; each reserved one must be quoted."""
    if target.major < 5:
        pytest.skip("RDB$KEYWORDS exists from Firebird 5.0")
    with project.connect() as db:
        reserved = [r[0] for r in db.query(
            "SELECT TRIM(RDB$KEYWORD_NAME) FROM RDB$KEYWORDS WHERE RDB$KEYWORD_RESERVED")]
    assert len(reserved) > 100
    assert [w for w in reserved if quote_ident(w) == w] == []


# --------------------------------------------------------------------------
# Audited tables with unusual names
# --------------------------------------------------------------------------
def test_quoted_mixed_case_names(project):
    audit(project, 'CREATE TABLE "Customer" ("Id" INTEGER NOT NULL PRIMARY KEY, "Name" VARCHAR(40), '
                   '"name" VARCHAR(40), "My Column" INTEGER, "Say ""hi""" VARCHAR(10))', '"Customer"')
    run_sql(project, [
        'INSERT INTO "Customer" VALUES (1, \'Upper\', \'lower\', 5, \'hi\')',
        'UPDATE "Customer" SET "name" = \'changed\', "Say ""hi""" = NULL WHERE "Id" = 1',
        'DELETE FROM "Customer"',
    ])
    ins, upd, dele = packets(project, "Customer")
    assert ins.table == "Customer" and ins.key == "1"
    assert ins.changes == {"Id": {"old": None, "new": "1"}, "Name": {"old": None, "new": "Upper"},
                           "name": {"old": None, "new": "lower"}, "My Column": {"old": None, "new": "5"},
                           'Say "hi"': {"old": None, "new": "hi"}}
    assert upd.changes == {"name": {"old": "lower", "new": "changed"}, 'Say "hi"': {"old": "hi", "new": None}}
    assert set(dele.changes) == {"Id", "Name", "name", "My Column"}
    assert list(Registry.load(project.registry_path).tables) == ["Customer"]


def test_unquoted_name_of_a_mixed_case_table_suggests_the_right_one(project):
    project.sql('CREATE TABLE "Customer" ("Id" INTEGER NOT NULL PRIMARY KEY)')
    capture.init(project.config)
    with pytest.raises(CatalogError, match="Did you mean 'Customer'"):
        capture.enable(project.config, "customer")


def test_non_ascii_names(project):
    audit(project, 'CREATE TABLE "Клиенты" ("Код" VARCHAR(10) NOT NULL PRIMARY KEY, '
                   '"Имя" VARCHAR(40) CHARACTER SET WIN1251, "Größe" NUMERIC(5,1), "名前" VARCHAR(10))', "Клиенты")
    run_sql(project, ["INSERT INTO \"Клиенты\" VALUES ('К-1', 'Иван', 1.5, '山田')",
                      "UPDATE \"Клиенты\" SET \"Имя\" = 'Пётр' WHERE \"Код\" = 'К-1'"])
    ins, upd = packets(project, "Клиенты")
    assert ins.table == "Клиенты" and ins.key == "К-1"
    assert ins.changes == {"Код": {"old": None, "new": "К-1"}, "Имя": {"old": None, "new": "Иван"},
                           "Größe": {"old": None, "new": "1.5"}, "名前": {"old": None, "new": "山田"}}
    assert upd.changes == {"Имя": {"old": "Иван", "new": "Пётр"}}


def test_reserved_words_as_names(project):
    project.sql('CREATE TABLE "USER" ("ORDER" INTEGER NOT NULL PRIMARY KEY, "SELECT" VARCHAR(10))')
    audit(project, 'CREATE TABLE "ORDER" ("SELECT" INTEGER NOT NULL, "USER" VARCHAR(20) NOT NULL, '
                   '"LATERAL" INTEGER, "DATE" DATE, "VALUE" NUMERIC(10,2), PRIMARY KEY ("SELECT", "USER"))', "order")
    capture.enable(project.config, "user")
    run_sql(project, [
        "INSERT INTO \"ORDER\" VALUES (7, 'anna', 1, '2024-05-01', 9.5)",
        "UPDATE \"ORDER\" SET \"LATERAL\" = 2, \"VALUE\" = NULL WHERE \"SELECT\" = 7",
        "INSERT INTO \"USER\" VALUES (1, 'x')",
        "DELETE FROM \"ORDER\"",
    ])
    ins, upd, user_ins, dele = packets(project)
    assert (ins.table, user_ins.table) == ("ORDER", "USER")
    assert ins.key == "7|anna" and dele.key == "7|anna"
    assert ins.changes["DATE"] == {"old": None, "new": "2024-05-01"}
    assert upd.changes == {"LATERAL": {"old": "1", "new": "2"}, "VALUE": {"old": "9.50", "new": None}}
    assert user_ins.changes == {"ORDER": {"old": None, "new": "1"}, "SELECT": {"old": None, "new": "x"}}
    assert dele.operation == "delete" and set(dele.changes) == {"SELECT", "USER", "LATERAL", "DATE"}


def test_names_at_the_version_length_limit(project, target):
    """31 bytes on 3.0 (non-ASCII letters count two), 63 characters on 4.0+."""
    if target.major < 4:
        table, key, col_ascii, col_cyr = "T" * 31, "K" * 31, "C" * 31, "Ж" * 15 + "X"
        assert len(col_cyr.encode()) == 31
    else:
        table, key, col_ascii, col_cyr = "T" * 63, "K" * 63, "C" * 63, "Ж" * 63
    audit(project, f'CREATE TABLE "{table}" ("{key}" INTEGER NOT NULL PRIMARY KEY, "{col_ascii}" VARCHAR(10), '
                   f'"{col_cyr}" VARCHAR(10))', table)
    run_sql(project, [f"INSERT INTO \"{table}\" VALUES (1, 'a', 'б')",
                      f"UPDATE \"{table}\" SET \"{col_cyr}\" = 'в'"])
    ins, upd = packets(project, table)
    assert ins.table == table
    assert ins.changes == {key: {"old": None, "new": "1"}, col_ascii: {"old": None, "new": "a"},
                           col_cyr: {"old": None, "new": "б"}}
    assert upd.changes == {col_cyr: {"old": "б", "new": "в"}}


# --------------------------------------------------------------------------
# The configured prefix starts every fbaudit object name
# --------------------------------------------------------------------------
def _objects_with_prefix(project, spec, prefix: str) -> list[str]:
    if not spec.is_server and not Path(spec.database).exists():
        return []
    with project.connect(spec) as db:
        return [r[0] for r in db.query(
            "SELECT TRIM(RDB$RELATION_NAME) FROM RDB$RELATIONS WHERE RDB$RELATION_NAME STARTING WITH ? "
            "UNION ALL SELECT TRIM(RDB$GENERATOR_NAME) FROM RDB$GENERATORS WHERE RDB$GENERATOR_NAME STARTING WITH ?",
            (prefix, prefix))]


def test_a_prefix_too_long_for_the_version_is_refused_and_nothing_is_created(project, target):
    # 16 characters pass the config file's rule, but PREFIX + "AUDIT_2147483647" is 32 bytes: too long on 3.0.
    # On 4.0+ every prefix the config file accepts fits, so the check is shown with a longer one.
    prefix = "ABCDEFGHIJKLMNOP" if target.major < 4 else "P" * 48
    limit = "Firebird 3.0 allows 31 bytes" if target.major < 4 else f"Firebird {target.major} allows 63"
    config = dataclasses.replace(project.config, prefix=prefix)
    with pytest.raises(CatalogError, match=limit) as err:
        capture.init(config)
    assert "prefix" in str(err.value)
    assert _objects_with_prefix(project, project.main, prefix) == []
    assert _objects_with_prefix(project, project.log, prefix) == []


def test_the_longest_prefix_that_fits_works(project, target):
    prefix = "ABCDEFGHIJKLMNO_" if target.major >= 4 else "ABCDEFGHIJKLMN_"   # 16 / 15 characters
    project.config = dataclasses.replace(project.config, prefix=prefix)
    audit(project, "CREATE TABLE ITEM (ID INTEGER NOT NULL PRIMARY KEY, NAME VARCHAR(10))", "ITEM")
    run_sql(project, ["INSERT INTO ITEM VALUES (1, 'x')"])
    (p,) = packets(project, "ITEM")
    assert p.changes["NAME"] == {"old": None, "new": "x"}
    assert f"{prefix}LOG_PACKET_FLAG" in _objects_with_prefix(project, project.main, prefix)


# --------------------------------------------------------------------------
# Names are data: nothing in a name is read as a placeholder, a format field,
# a statement separator, a comment or a bind parameter (docs/capture.md)
# --------------------------------------------------------------------------
# Firebird 3.0, 4.0 and 5.0 accept every one of these as a quoted identifier (measured).
# A leading blank is kept (trailing blanks are not significant in Firebird names).
HOSTILE_COLUMNS = ["{view}", "{c}", "{{TABLE}}", "A\n^\nB", "A\n-- x", "x?y", "%s%d"]
HOSTILE_TABLE = "{c} {{P}}\n^\nAS\n-- x?"          # 21 bytes: fits Firebird 3.0's 31


def test_the_renderer_inserts_values_after_splitting_and_stripping_comments():
    """A value holding a line of only ^ or a line starting with -- stays inside its statement, whole."""
    from fbaudit import templates
    name = '"A\n^\n-- x {{P}} ?"'
    values = dict(P="FBA_", TRIGGER="FBA_AUDIT_1", TABLE=name, NUM_TABLE="1",
                  KEY_COLUMNS_CHANGED="FALSE", NEW_KEY="'k'", OLD_KEY="'k'", AUTHOR="", DB_CHARSET_ID="0",
                  CHARSETS="", FIELDS=f"  -- {name}\n^\n", INSERTED=f"    NEW.{name} IS NULL", DELETED="",
                  INSERT_GUARDS="", DELETE_GUARDS="", PACK_LIMIT="32000", PACKET_INSERT="'x'",
                  BIG_FIELDS="", KEYS_ONLY="0")
    stmts = templates.render("audit_trigger", **values)
    assert len(stmts) == 6 and stmts[0].sql.startswith(f"CREATE OR ALTER TRIGGER FBA_AUDIT_1 FOR {name}\n")
    assert stmts[0].sql.count(name) == 3 and f"  -- {name}\n^\n" in stmts[0].sql
    assert stmts[1].sql == "GRANT SELECT ON FBA_LOG_INFO TO TRIGGER FBA_AUDIT_1"


def test_a_script_shows_each_parameter_once_whatever_it_holds():
    from fbaudit.templates import Statement
    st = Statement("UPDATE T SET A = ?, B = '?', \"?\" = ? WHERE C = ?", ("a?b", "it's ?", None))
    assert st.as_script() == "UPDATE T SET A = 'a?b', B = '?', \"?\" = 'it''s ?' WHERE C = NULL"


def _hostile_rows(project, table: str, cols: list[str]) -> None:
    q = quote_ident(table)
    names = ", ".join(quote_ident(c) for c in cols)
    run_sql(project, [f"INSERT INTO {q} ({names}) VALUES ({', '.join('?' * len(cols))})",
                      f"UPDATE {q} SET " + ", ".join(f"{quote_ident(c)} = ?" for c in cols[1:]),
                      f"DELETE FROM {q}"],
            {0: tuple([1] + [f"v{i}" if i % 2 else i for i in range(1, len(cols))]),
             1: tuple(f"w{i}" if i % 2 else i + 10 for i in range(1, len(cols)))})


def test_columns_named_like_placeholders_separators_and_comments_are_logged_exactly(project, target):
    cols = [" LEADING"] + HOSTILE_COLUMNS
    types = ["INTEGER NOT NULL PRIMARY KEY"] + ["VARCHAR(10)" if i % 2 else "INTEGER" for i in range(1, len(cols))]
    audit(project, "CREATE TABLE HOSTILE (" + ", ".join(f"{quote_ident(c)} {t}" for c, t in zip(cols, types)) + ")",
          "HOSTILE")
    entry = Registry.load(project.registry_path).tables["HOSTILE"]
    assert list(entry.fields) == cols and entry.key == [" LEADING"]
    _hostile_rows(project, "HOSTILE", cols)
    ins, upd, dele = packets(project, "HOSTILE")
    new = {c: ("1" if i == 0 else f"v{i}" if i % 2 else str(i)) for i, c in enumerate(cols)}
    newer = {c: (f"w{i}" if i % 2 else str(i + 10)) for i, c in enumerate(cols) if i}
    assert ins.key == "1" and ins.changes == {c: {"old": None, "new": v} for c, v in new.items()}
    assert upd.changes == {c: {"old": new[c], "new": v} for c, v in newer.items()}
    assert dele.changes == {c: {"old": {**new, **newer}[c], "new": None} for c in cols}
    # The trigger Firebird holds is the one fbaudit generates: sync finds nothing to do.
    assert capture.sync(project.config).data["sources"][0]["drift"] == []
    # In the log database, under the same names.
    from fbaudit import history, transfer
    transfer.transfer(project.config)
    h = history.history(project.config, "HOSTILE", "1", limit=None)
    assert [list(v["changes"]) for v in h["versions"]] == [cols, cols[1:], cols]
    # `fbaudit ddl` is a script isql runs (isql: the server target, Debian's firebird3.0-utils).
    script = capture.ddl(project.config, "HOSTILE")
    for c in cols[1:]:
        assert f"NEW.{quote_ident(c)}" in script
    _run_isql_if_possible(project, target, script)
    assert capture.sync(project.config).data["sources"][0]["drift"] == []


def test_a_table_named_like_placeholders_separators_and_comments_is_audited(project, target):
    audit(project, f'CREATE TABLE {quote_ident(HOSTILE_TABLE)} (ID INTEGER NOT NULL PRIMARY KEY, "{{c}}" VARCHAR(10))',
          quote_ident(HOSTILE_TABLE))
    assert list(Registry.load(project.registry_path).tables) == [HOSTILE_TABLE]
    _hostile_rows(project, HOSTILE_TABLE, ["ID", "{c}"])
    ins, upd, dele = packets(project, HOSTILE_TABLE)
    assert ins.table == HOSTILE_TABLE
    assert ins.changes == {"ID": {"old": None, "new": "1"}, "{c}": {"old": None, "new": "v1"}}
    assert upd.changes == {"{c}": {"old": "v1", "new": "w1"}} and dele.operation == "delete"
    # The trigger body is read from AS on, after the table's name (which holds a line "AS").
    assert capture.sync(project.config).data["sources"][0]["drift"] == []
    script = capture.ddl(project.config, quote_ident(HOSTILE_TABLE))
    assert f"FOR {quote_ident(HOSTILE_TABLE)}\n" in script
    assert f"VALUES (1, '{HOSTILE_TABLE}', " in script          # the dictionary row: the name as a literal
    header = script.split("SET TERM")[0]
    assert header.count("\n") == 2 and "\\n^\\nAS\\n-- x?" in header   # the comment shows the name on one line
    _run_isql_if_possible(project, target, script)
    assert capture.sync(project.config).data["sources"][0]["drift"] == []


def _run_isql_if_possible(project, target, script: str) -> None:
    import shutil
    import subprocess
    isql = shutil.which("isql-fb") or shutil.which("isql")
    if not (target.is_server and isql):
        return
    out = subprocess.run([isql, "-q", "-user", project.main.user, "-password", project.main.password(),
                          project.main.database], input=script, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and not out.stderr.strip(), out.stderr
