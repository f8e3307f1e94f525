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
