"""The registry file: stable numbers, comments kept, errors with file and line."""
from __future__ import annotations

import pytest

from fbaudit import objects
from fbaudit import capture
from fbaudit.errors import ConfigError
from fbaudit.registry import Registry

from helpers import packets, run_sql

HAND_WRITTEN = """\
# Registry of ERP tables -- reviewed by Olga, keep this comment
tables:
  # the customers
  CUSTOMER:
    number: 7   # fixed by hand
    key: [ID]
    exclude: [SECRET]
    fields:
      ID: {number: 1, type: INTEGER}
"""


def test_comments_and_hand_numbers_survive_a_rewrite(project):
    project.registry_path.write_text(HAND_WRITTEN, encoding="utf-8")
    project.sql("CREATE TABLE CUSTOMER (ID INTEGER NOT NULL PRIMARY KEY, NAME VARCHAR(20), SECRET VARCHAR(20))")
    capture.init(project.config)
    capture.enable(project.config, "CUSTOMER")
    text = project.registry_path.read_text(encoding="utf-8")
    assert "# Registry of ERP tables -- reviewed by Olga, keep this comment" in text
    assert "# the customers" in text and "# fixed by hand" in text
    entry = Registry.load(project.registry_path).tables["CUSTOMER"]
    assert entry.number == 7 and entry.fields["ID"].number == 1 and entry.fields["NAME"].number == 2
    assert "SECRET" not in entry.fields
    run_sql(project, ["INSERT INTO CUSTOMER VALUES (1, 'n', 's')"])
    p = packets(project)[0]
    assert p.num_table == 7 and set(p.changes) == {"ID", "NAME"}


def test_numbers_are_never_reused_even_if_the_entry_is_deleted_by_hand(project):
    project.sql("CREATE TABLE A (ID INTEGER NOT NULL PRIMARY KEY)", "CREATE TABLE B (ID INTEGER NOT NULL PRIMARY KEY)")
    capture.init(project.config)
    capture.enable(project.config, "A")
    capture.enable(project.config, "B")
    capture.disable(project.config, "B")
    # someone deletes B from the YAML; its number 2 is still known to the database's dictionary
    project.registry_path.write_text(project.registry_path.read_text().split("  B:")[0], encoding="utf-8")
    project.sql("CREATE TABLE C (ID INTEGER NOT NULL PRIMARY KEY)")
    capture.enable(project.config, "C")
    assert Registry.load(project.registry_path).tables["C"].number == 3
    capture.enable(project.config, "B")
    assert Registry.load(project.registry_path).tables["B"].number == 2


@pytest.mark.parametrize("text,line,words", [
    ("tables:\n  T:\n    number: one\n", 2, "positive integer 'number'"),
    ("tables:\n  T:\n    number: 1\n    colour: red\n", 4, "unknown key 'colour'"),
    ("tables:\n  T: {number: 1}\n  U: {number: 1}\n", 3, "table number 1 is used by both"),
    ("tables:\n  T:\n    number: 1\n    fields:\n      A: {number: 1}\n      B: {number: 1}\n", 4, "field number 1"),
    ("tables:\n  T:\n    number: 1\n    key: {a: 1}\n", 4, "list of column names"),
    ("tables:\n  T:\n   number: 1\n  bad indent\n", 4, "invalid YAML"),
    ("tabels: {}\n", 1, "unknown key 'tabels'"),
    ("tables:\n  T:\n    number: 1\n    fields:\n      A: {number: 0}\n", 5, "positive integer 'number'"),
    ("tables:\n  T:\n    number: -3\n", 2, "positive integer 'number'"),
    ("tables:\n  T:\n    number: 3000000000\n", 2, "1 to 2147483647"),
    ("tables:\n  T:\n    number: 1\n    fields:\n      A: {number: 3000000000}\n", 5, "1 to 2147483647"),
])
def test_bad_registry_names_file_and_line(tmp_path, text, line, words):
    path = tmp_path / "tables.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError) as err:
        Registry.load(path)
    assert f"{path}:{line}" in str(err.value), str(err.value)
    assert words in str(err.value)


def test_bad_registry_changes_nothing_in_the_database(project):
    project.sql("CREATE TABLE T (ID INTEGER NOT NULL PRIMARY KEY)")
    capture.init(project.config)
    project.registry_path.write_text("tables:\n  X: {number: zero}\n", encoding="utf-8")
    with pytest.raises(ConfigError):
        capture.enable(project.config, "T")
    with project.connect() as db:
        assert not objects.trigger_exists(db, project.prefix, 1)


def _swap(text: str, a: str, b: str) -> str:
    """Swap the lines of fields ``a`` and ``b`` numbers in a registry's text."""
    lines = text.splitlines(keepends=True)
    ia = next(i for i, ln in enumerate(lines) if ln.strip().startswith(f"{a}:"))
    ib = next(i for i, ln in enumerate(lines) if ln.strip().startswith(f"{b}:"))
    na, nb = lines[ia].split("number: ")[1].split(",")[0], lines[ib].split("number: ")[1].split(",")[0]
    lines[ia] = lines[ia].replace(f"number: {na},", f"number: {nb},")
    lines[ib] = lines[ib].replace(f"number: {nb},", f"number: {na},")
    return "".join(lines), ia + 1


def test_sync_refuses_numbers_the_dictionary_holds_for_other_columns(project):
    project.sql("CREATE TABLE T (ID INTEGER NOT NULL PRIMARY KEY, PRICE INTEGER, QTY INTEGER)")
    capture.init(project.config)
    capture.enable(project.config, "T")
    good = project.registry_path.read_text(encoding="utf-8")
    swapped, line = _swap(good, "PRICE", "QTY")
    project.registry_path.write_text(swapped, encoding="utf-8")
    with project.connect() as db:
        before = objects.installed_trigger_body(db, project.prefix, 1)
    with pytest.raises(ConfigError) as err:
        capture.sync(project.config)
    msg = str(err.value)
    assert f"{project.registry_path}:{line}" in msg and "dictionary holds" in msg and "QTY" in msg, msg
    assert project.registry_path.read_text(encoding="utf-8") == swapped          # nothing changed
    with project.connect() as db:
        assert objects.installed_trigger_body(db, project.prefix, 1) == before
    # another table number than the dictionary's
    project.registry_path.write_text(good.replace("number: 1\n", "number: 5\n", 1), encoding="utf-8")
    with pytest.raises(ConfigError, match="has number 5 here, but the database's dictionary holds 1"):
        capture.sync(project.config)
    project.registry_path.write_text(good, encoding="utf-8")
    assert "agree" in capture.sync(project.config).lines[0]


def test_sync_refuses_a_retired_number_given_back(project):
    project.sql("CREATE TABLE T (ID INTEGER NOT NULL PRIMARY KEY, PRICE INTEGER)")
    capture.init(project.config)
    capture.enable(project.config, "T")
    project.sql("ALTER TABLE T ALTER PRICE TYPE BIGINT")
    capture.sync(project.config)                  # PRICE retyped: number 2 retired, 3 given
    reg = Registry.load(project.registry_path).tables["T"]
    assert reg.fields["PRICE"].number == 3 and reg.retired["PRICE"].number == 2
    text = project.registry_path.read_text(encoding="utf-8")
    text = text.replace("PRICE: {number: 3,", "PRICE: {number: 2,", 1)
    text = text.split("    retired:")[0]
    project.registry_path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError, match="field number 2 of T.PRICE was retired"):
        capture.sync(project.config)


def test_a_hash_in_a_column_name_is_no_retired_suffix(project):
    """Retired names may carry '#number' (a name retired twice); a column's own '#' is no such suffix."""
    project.sql('CREATE TABLE T (ID INTEGER NOT NULL PRIMARY KEY, "E#MAIL" VARCHAR(40), "N#2" INTEGER)')
    capture.init(project.config)
    capture.enable(project.config, "T")
    assert "agree" in capture.sync(project.config).lines[0]


def test_enable_refuses_a_number_the_dictionary_holds_for_another_table(project):
    """A's block deleted by hand, B given A's number: enable would rename A's dictionary row, and A's
    history would read as B's."""
    project.sql("CREATE TABLE A (ID INTEGER NOT NULL PRIMARY KEY)", "CREATE TABLE B (ID INTEGER NOT NULL PRIMARY KEY)")
    capture.init(project.config)
    capture.enable(project.config, "A")
    capture.disable(project.config, "A")
    project.registry_path.write_text("tables:\n  B:\n    number: 1\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="table number 1 belongs to A"):
        capture.enable(project.config, "B")
    with project.connect() as db:
        assert not objects.trigger_exists(db, project.prefix, 1)
        assert db.query("SELECT TRIM(TABLE_NAME) FROM FBA_LOG_TABLES") == [("A",)]
        db.commit()
