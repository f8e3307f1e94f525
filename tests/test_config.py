"""The configuration file: validated up front, errors name the file and line."""
from __future__ import annotations

import os
import stat

import pytest

from fbaudit.config import load_config
from fbaudit.errors import ConfigError

GOOD = """\
# comment
prefix: AUD_
log:
  database: log.fdb
sources:
  - name: erp
    database: erp.fdb
    password_env: ERP_PW
    registry: tables.yaml
  - name: remote
    database: dbhost/3051:/data/erp.fdb
    user: AUDITOR
    password_file: pw.txt
"""


def write(tmp_path, text):
    p = tmp_path / "fbaudit.yaml"
    p.write_text(text, encoding="utf-8")
    return p


def test_good_config_resolves_paths_relative_to_the_file(tmp_path):
    cfg = load_config(write(tmp_path, GOOD))
    erp, remote = cfg.sources
    assert cfg.prefix == "AUD_"
    assert erp.database == str(tmp_path / "erp.fdb") and not erp.is_server
    assert erp.registry == tmp_path / "tables.yaml"
    assert remote.database == "dbhost/3051:/data/erp.fdb" and remote.is_server
    assert remote.user == "AUDITOR" and remote.password_file == tmp_path / "pw.txt"
    assert cfg.log.database == str(tmp_path / "log.fdb")


def test_rotation_settings_and_clock_override(tmp_path, monkeypatch):
    from datetime import datetime, timedelta
    monkeypatch.delenv("FBAUDIT_NOW", raising=False)
    default = load_config(write(tmp_path, GOOD)).rotation
    assert default.period == timedelta(days=1) and default.max_wait == 60.0 and default.clock is None
    cfg = load_config(write(tmp_path, GOOD + "rotation:\n  period: 12h\n  max_wait: 5\n"
                                             "  clock: 2026-12-31T03:00:00\n")).rotation
    assert cfg.period == timedelta(hours=12) and cfg.max_wait == 5.0
    assert cfg.now() == datetime(2026, 12, 31, 3, 0)
    monkeypatch.setenv("FBAUDIT_NOW", "2027-01-05T10:30:00")
    assert cfg.now() == datetime(2027, 1, 5, 10, 30)


def test_config_from_environment_variable(tmp_path, monkeypatch):
    path = write(tmp_path, GOOD)
    monkeypatch.setenv("FBAUDIT_CONFIG", str(path))
    assert load_config().path == path


@pytest.mark.parametrize("dsn,server", [
    ("localhost:/var/lib/x.fdb", True), ("db1/3050:C:\\data\\x.fdb", True), ("C:\\data\\x.fdb", False),
    ("inet://host/x.fdb", True), ("/var/lib/x.fdb", False), ("data/x.fdb", False)])
def test_server_dsn_or_embedded_path(tmp_path, dsn, server):
    text = GOOD.replace("database: erp.fdb", f"database: '{dsn}'")
    assert load_config(write(tmp_path, text)).sources[0].is_server is server


@pytest.mark.parametrize("text,line,words", [
    (GOOD.replace("prefix: AUD_", "prefixx: AUD_"), 2, "unknown key 'prefixx'"),
    (GOOD.replace("    password_env: ERP_PW", "    password: secret"), 8, "passwords never go in the YAML"),
    (GOOD.replace("    registry: tables.yaml", "    registry: [a, b]"), 9, "must be a non-empty text"),
    (GOOD.replace("  - name: remote", "  - name: erp"), 10, "duplicate source name"),
    (GOOD.replace("prefix: AUD_", "prefix: aud-"), 2, "prefix"),
    (GOOD + "  - {name: x}\n", 14, "missing required key 'database'"),
    ("log: [\n", 2, "invalid YAML"),
    (GOOD + "rotation:\n  perod: 1d\n", 15, "unknown key 'perod' in 'rotation'"),
    (GOOD + "rotation:\n  period: daily\n", 15, "period 'daily' must be a number"),
    (GOOD + "rotation:\n  max_wait: -1\n", 15, "max_wait must be seconds"),
    (GOOD + "rotation:\n  clock: yesterday\n", 15, "clock must be a date and time"),
    (GOOD + "rotation: 1d\n", 14, "'rotation' must be a mapping"),
    (GOOD + "status:\n  mass_changes: 10\n", 15, "unknown key 'mass_changes' in 'status'"),
    (GOOD + "status:\n  mass_change: many\n", 15, "mass_change must be a number of rows"),
    (GOOD + "status:\n  mass_change: -5\n", 15, "mass_change must be a number of rows"),
])
def test_bad_config_names_file_and_line(tmp_path, text, line, words):
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert f"{path}:{line}" in str(err.value)
    assert words in str(err.value)


def test_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="file not found"):
        load_config(tmp_path / "nope.yaml")


def test_password_from_environment_never_from_yaml(tmp_path, monkeypatch):
    cfg = load_config(write(tmp_path, GOOD))
    with pytest.raises(ConfigError, match="ERP_PW"):
        cfg.sources[0].password()
    monkeypatch.setenv("ERP_PW", "s3cret")
    assert cfg.sources[0].password() == "s3cret"


@pytest.mark.skipif(os.name == "nt", reason="POSIX permissions")
def test_password_file_must_be_private(tmp_path):
    cfg = load_config(write(tmp_path, GOOD))
    pw = tmp_path / "pw.txt"
    pw.write_text('ISC_USER=sysdba\nISC_PASSWORD="abc123"\n')
    pw.chmod(0o644)
    with pytest.raises(ConfigError, match="chmod 600"):
        cfg.sources[1].password()
    pw.chmod(stat.S_IRUSR | stat.S_IWUSR)
    assert cfg.sources[1].password() == "abc123"
    pw.write_text("plain-secret\n")
    assert cfg.sources[1].password() == "plain-secret"


def test_unknown_source_name(tmp_path):
    cfg = load_config(write(tmp_path, GOOD))
    with pytest.raises(ConfigError, match="no source named 'x'.*erp, remote"):
        cfg.source("x")


# -- many sources: a folder pattern or a list file (hosted setups: one database per customer) --
MANY = """\
log:
  database: data/log.fdb
sources:
  - name: erp
    database: erp.fdb
  - pattern: data/customers/*.fdb
    name: shop_{stem}
    user: AUDITOR
    password_env: SHOP_PW
    registry: shops.yaml
  - list: more.txt
"""


def many_setup(tmp_path, names=("acme", "zeta", "bolt")):
    (tmp_path / "data" / "customers").mkdir(parents=True)
    for n in names:
        (tmp_path / "data" / "customers" / f"{n}.fdb").write_bytes(b"")
    (tmp_path / "data" / "customers" / "notes.txt").write_text("not a database")
    (tmp_path / "more.txt").write_text("# hosted on db2\n\nberlin  db2/3050:/srv/fb/berlin.fdb\n"
                                       "local/extra.fdb\nmy_copy  C:\\Kunden Daten\\copy.fdb\n", encoding="utf-8")


def test_pattern_and_list_sources_expand_sorted_with_shared_settings(tmp_path):
    many_setup(tmp_path)
    cfg = load_config(write(tmp_path, MANY))
    names = [s.name for s in cfg.sources]
    assert names == ["erp", "shop_acme", "shop_bolt", "shop_zeta", "berlin", "extra", "my_copy"]
    acme = cfg.sources[1]
    assert acme.database == str(tmp_path / "data" / "customers" / "acme.fdb") and not acme.is_server
    assert acme.user == "AUDITOR" and acme.password_env == "SHOP_PW" and acme.registry == tmp_path / "shops.yaml"
    berlin = cfg.sources[4]
    assert berlin.database == "db2/3050:/srv/fb/berlin.fdb" and berlin.is_server
    assert cfg.sources[5].database == str(tmp_path / "local" / "extra.fdb")
    assert cfg.sources[6].database.endswith("copy.fdb") and "Kunden Daten" in cfg.sources[6].database


def test_pattern_never_picks_the_log_database(tmp_path):
    (tmp_path / "data").mkdir()
    for n in ("a", "b", "log"):
        (tmp_path / "data" / f"{n}.fdb").write_bytes(b"")
    cfg = load_config(write(tmp_path, "log:\n  database: data/log.fdb\nsources:\n  - pattern: data/*.fdb\n"))
    assert [s.name for s in cfg.sources] == ["a", "b"]


@pytest.mark.parametrize("edit,line,words", [
    (lambda t: t.replace("data/customers/*.fdb", "data/nothing/*.fdb"), 6, "matches no database file"),
    (lambda t: t.replace("name: shop_{stem}", "name: shop"), 7, "must contain {stem}"),
    (lambda t: t.replace("list: more.txt", "list: missing.txt"), 11, "list file"),
    (lambda t: t.replace("  - list: more.txt", "  - list: more.txt\n    database: x.fdb"), 11,
     "one of database, pattern or list"),
    (lambda t: t.replace("    user: AUDITOR", "    usr: AUDITOR"), 8, "unknown key 'usr'"),
    (lambda t: t.replace("name: shop_{stem}", "name: '{stem}'").replace("  - name: erp", "  - name: acme"), 6,
     "duplicate source name 'acme'"),
])
def test_bad_many_sources_entries_name_the_line(tmp_path, edit, line, words):
    many_setup(tmp_path)
    path = write(tmp_path, edit(MANY))
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert f"{path}:{line}" in str(err.value) and words in str(err.value)


def test_the_log_database_and_a_file_named_twice_are_never_sources_however_spelled(tmp_path):
    (tmp_path / "d").mkdir()
    for n in ("a", "log"):
        (tmp_path / "d" / f"{n}.fdb").write_bytes(b"")
    d = tmp_path / "d"
    for log, pattern in ((f"localhost:{d}/log.fdb", "d/*.fdb"), (f"{d}/log.fdb", f"localhost:{d}/*.fdb"),
                         (f"127.0.0.1/3050:{d}/log.fdb", f"localhost:{d}/*.fdb")):
        cfg = load_config(write(tmp_path, f"log:\n  database: '{log}'\nsources:\n  - pattern: '{pattern}'\n"))
        assert [s.name for s in cfg.sources] == ["a"], (log, pattern)
    path = write(tmp_path, f"log:\n  database: x.fdb\nsources:\n  - name: main\n    database: d/a.fdb\n"
                           f"  - pattern: 'localhost:{d}/*.fdb'\n")
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert f"{path}:6: source 'a' (localhost:{d}/a.fdb) is the same database as source 'main'" in str(err.value)


def test_list_file_lines_name_their_line_and_windows_stems(tmp_path):
    (tmp_path / "more.txt").write_text("# customers\nsrv/3050:D:\\db\\cust1.fdb\nC:\\My Data\\x.fdb\n", encoding="utf-8")
    path = write(tmp_path, "log:\n  database: log.fdb\nsources:\n  - list: more.txt\n")
    with pytest.raises(ConfigError, match=r"more.txt:3: 'C:\\\\My' is not a source name"):
        load_config(path)
    (tmp_path / "more.txt").write_text("srv/3050:D:\\db\\cust1.fdb\n", encoding="utf-8")
    assert [s.name for s in load_config(path).sources] == ["cust1"]


def test_status_mass_change_from_the_config(tmp_path):
    assert load_config(write(tmp_path, GOOD)).mass_change == 1000
    assert load_config(write(tmp_path, GOOD + "status:\n  mass_change: 0\n")).mass_change == 0

