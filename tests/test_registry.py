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
