"""Legacy databases: CHARACTER SET NONE keys and text, as an old ERP holds them.

A database created without a default character set keeps its text in CHARACTER SET NONE, often
WIN1251 bytes sent by a client connected with NONE. Such tables are audited: their keys are typed
as the application shows them, their text reads in the source's ``none_charset`` (or as UTF-8,
or shown as x'...' bytes), and revert writes back the very bytes (docs/capture.md "Text in
CHARACTER SET NONE").
"""
from __future__ import annotations

import dataclasses
import urllib.parse

import pytest

from fbaudit import capture, history, transfer, versions
from fbaudit.errors import FbauditError

from conftest import Project

MOSCOW, KIEV = "Москва", "Київ"       # KIEV has 'ї', which WIN1251 has (0xBF)


def _none_project(target, tmp_path, *, none_charset: str | None) -> Project:
    """A main database with no default character set (NONE), and a source reading NONE text as given."""
    from firebird.driver import create_database
    from fbaudit.config import Config
    from fbaudit.runtime import load_client
    load_client()
    main, logdb = target.spec("main", tmp_path), target.spec("log", tmp_path)
    create_database(main.database, user=main.user, password=main.password()).close()     # no charset: NONE
    if target.is_server:
        target.created.append(main)
        target.create(logdb).close()
    from fbaudit.config import SourceSpec
    src = SourceSpec(name="main", database=main.database, user=main.user, password_env=main.password_env,
                     password_file=main.password_file, registry=tmp_path / "tables.yaml", none_charset=none_charset)
    cfg = Config(path=tmp_path / "fbaudit.yaml", log=logdb, sources=(src,), prefix="FBA_",
                 checkpoints_dir=tmp_path / "checkpoints")
    project = Project(target, cfg, src, logdb, tmp_path)
    with project.connect() as db:
        assert db.scalar("SELECT TRIM(RDB$CHARACTER_SET_NAME) FROM RDB$DATABASE") == "NONE"
    return project


def _app(project):
    """The legacy application: a NONE connection sending WIN1251 bytes."""
    from firebird.driver import connect
    return connect(project.main.database, user=project.main.user, password=project.main.password(), charset="NONE")


def _run(project, statements):
    con = _app(project)
    try:
        cur = con.cursor()
        for sql, params in statements:
            cur.execute(sql, params)
        con.commit()
    finally:
        con.close()


def _raw(project, sql, params=()):
    con = _app(project)
    try:
        cur = con.cursor()
        cur.execute(sql, params)
        rows = cur.fetchall()
        con.commit()
        return rows
    finally:
        con.close()


def w(text: str) -> bytes:
    return text.encode("cp1251")


@pytest.fixture
def city(target, tmp_path):
    project = _none_project(target, tmp_path, none_charset="WIN1251")
    project.sql("CREATE TABLE CITY (NAME VARCHAR(20) NOT NULL PRIMARY KEY, POP INTEGER, NOTE VARCHAR(40), "
                "CODE CHAR(3))")
    capture.init(project.config)
    res = capture.enable(project.config, "CITY")
    assert res.data["sources"][0]["key"] == ["NAME"]
    return project


def test_a_none_key_is_audited_and_typed_as_the_application_shows_it(city):
    project = city
    _run(project, [("INSERT INTO CITY (NAME, POP, NOTE, CODE) VALUES (?, ?, ?, ?)", (w(MOSCOW), 13, w("столица"), b"MOW")),
                   ("INSERT INTO CITY (NAME, POP, NOTE) VALUES (?, ?, ?)", (w(KIEV), 3, b"\x98 not a letter")),
                   ("INSERT INTO CITY (NAME, POP) VALUES (?, ?)", (b"USA|x\\y", 1))])
    _run(project, [("UPDATE CITY SET POP = 12, NOTE = ? WHERE NAME = ?", (w("столица России"), w(MOSCOW)))])
    transfer.transfer(project.config)

    h = history.history(project.config, "CITY", MOSCOW)
    assert h["key"] == {"NAME": MOSCOW} and h["total"] == 2
    ins, upd = h["versions"]
    assert ins["changes"]["NAME"] == {"old": None, "new": MOSCOW}
    assert ins["changes"]["NOTE"] == {"old": None, "new": "столица"}
    assert ins["changes"]["CODE"] == {"old": None, "new": "MOW"}
    assert upd["changes"]["NOTE"] == {"old": "столица", "new": "столица России"}
    # The key's bytes typed as bytes find the same record; bytes that are no WIN1251 text show as bytes.
    assert history.history(project.config, "CITY", "x'" + w(MOSCOW).hex().upper() + "'")["total"] == 2
    kiev = history.history(project.config, "CITY", KIEV)["versions"][0]["changes"]
    assert kiev["NOTE"]["new"] == "x'98206E6F742061206C6574746572'"
    # A key with the codec's own escapes in it.
    assert history.history(project.config, "CITY", "USA|x\\y")["total"] == 1
    # search and show name the key as the application shows it
    found = history.search(project.config, table="CITY", key=MOSCOW)
    assert [i["key"] for i in found["items"]] == [{"NAME": MOSCOW}] * 2
    assert history.show(project.config, ins["packet_id"])["key"] == {"NAME": MOSCOW}


def test_revert_writes_back_the_original_bytes(city):
    project = city
    _run(project, [("INSERT INTO CITY (NAME, POP, NOTE) VALUES (?, ?, ?)", (w(KIEV), 3, b"\x98\x00old"))])
    _run(project, [("UPDATE CITY SET NOTE = ?, POP = 4 WHERE NAME = ?", (w("новое"), w(KIEV)))])
    transfer.transfer(project.config)
    res = versions.revert(project.config, "CITY", KIEV, to_version=1, by="support")
    assert res["action"] == "update" and set(res["fields"]) == {"NOTE", "POP"}
    assert _raw(project, "SELECT CAST(NOTE AS VARCHAR(40) CHARACTER SET OCTETS), POP FROM CITY WHERE NAME = ?",
                (w(KIEV),)) == [(b"\x98\x00old", 3)]
    transfer.transfer(project.config)
    h = history.history(project.config, "CITY", KIEV)
    assert h["versions"][-1]["author"] == "support"
    assert h["versions"][-1]["changes"]["NOTE"] == {"old": "новое", "new": "x'98006F6C64'"}


def test_a_none_key_change_keeps_one_history(city):
    project = city
    _run(project, [("INSERT INTO CITY (NAME, POP) VALUES (?, ?)", (w("Киев"), 3))])
    _run(project, [("UPDATE CITY SET NAME = ? WHERE NAME = ?", (w(KIEV), w("Киев")))])
    transfer.transfer(project.config)
    old = history.history(project.config, "CITY", "Киев")["versions"]
    assert [v["operation"] for v in old] == ["insert", "key_change_away"] and old[-1]["key_to"] == KIEV
    new = history.history(project.config, "CITY", KIEV)["versions"]
    assert new[0]["operation"] == "key_change" and new[0]["key_from"] == "Киев"


def test_without_none_charset_ascii_and_utf8_read_as_text_and_other_bytes_as_bytes(target, tmp_path):
    project = _none_project(target, tmp_path, none_charset=None)
    project.sql("CREATE TABLE COUNTRY (COUNTRY VARCHAR(15) NOT NULL PRIMARY KEY, CURRENCY VARCHAR(10))")
    capture.init(project.config)
    capture.enable(project.config, "COUNTRY")        # refused before: a NONE key could not identify a record
    _run(project, [("INSERT INTO COUNTRY VALUES (?, ?)", (b"USA", b"Dollar")),
                   ("INSERT INTO COUNTRY VALUES (?, ?)", ("Österreich".encode(), w("евро")))])
    transfer.transfer(project.config)
    assert history.history(project.config, "COUNTRY", "USA")["versions"][0]["changes"]["CURRENCY"]["new"] == "Dollar"
    at = history.history(project.config, "COUNTRY", "Österreich")["versions"][0]["changes"]
    assert at["CURRENCY"]["new"] == "x'" + w("евро").hex().upper() + "'"
    # the same bytes, read with none_charset: WIN1251 from then on
    spec = dataclasses.replace(project.config.sources[0], none_charset="WIN1251")
    cfg = dataclasses.replace(project.config, sources=(spec,))
    assert history.history(cfg, "COUNTRY", "USA")["total"] == 1
    with pytest.raises(FbauditError, match="cannot be written in WIN1251"):
        history.history(cfg, "COUNTRY", "日本")


def test_an_octets_key(project, target):
    project.sql("CREATE TABLE TOKEN (ID CHAR(4) CHARACTER SET OCTETS NOT NULL PRIMARY KEY, V INTEGER)")
    capture.init(project.config)
    capture.enable(project.config, "TOKEN")
    with project.connect() as db:
        db.execute("INSERT INTO TOKEN VALUES (?, ?)", (b"\x00\xff|\\", 1))
        db.execute("INSERT INTO TOKEN VALUES (?, ?)", (b"ABCD", 2))
        db.commit()
    transfer.transfer(project.config)
    h = history.history(project.config, "TOKEN", "x'00FF7C5C'")
    assert h["total"] == 1 and h["versions"][0]["changes"]["V"]["new"] == "1"
    assert history.history(project.config, "TOKEN", "ABCD")["total"] == 1


def test_the_api_shows_and_finds_none_keys_and_text(city):
    """What the history page reads: /api/versions and a record's versions, keyed and shown in WIN1251."""
    from fbaudit import api
    from helpers import http_call, running_server
    project = city
    _run(project, [("INSERT INTO CITY (NAME, POP, NOTE) VALUES (?, ?, ?)", (w(MOSCOW), 13, w("столица")))])
    transfer.transfer(project.config)
    with running_server(api.create_app(project.config, token="t0k3n")) as base:
        status, body = http_call(base, "/api/versions", token="t0k3n", table="CITY", key=MOSCOW)
        assert status == 200 and [i["key"] for i in body["data"]["items"]] == [{"NAME": MOSCOW}]
        status, body = http_call(base, f"/api/records/CITY/{urllib.parse.quote(MOSCOW)}/versions", token="t0k3n")
        assert status == 200, body
        assert body["data"]["key"] == {"NAME": MOSCOW}
        assert body["data"]["items"][0]["changes"]["NOTE"] == {"old": None, "new": "столица"}


def test_a_null_key_part_is_typed_as_backslash_n(project):
    """A nullable key column (warned about at enable): its NULL part is typed as the record key writes it."""
    project.sql("CREATE TABLE SLOT (ROOM VARCHAR(10) NOT NULL, SEAT INTEGER, V INTEGER)",
                "CREATE UNIQUE INDEX SLOT_KEY ON SLOT (ROOM, SEAT)")
    capture.init(project.config)
    res = capture.enable(project.config, "SLOT", key=["ROOM", "SEAT"])
    assert any("SEAT may be NULL" in w for w in res.warnings)
    with project.connect() as db:
        db.execute("INSERT INTO SLOT VALUES ('A', NULL, 1)")
        db.execute("INSERT INTO SLOT VALUES ('A', 1, 2)")
        db.execute("UPDATE SLOT SET ROOM = 'B' WHERE SEAT IS NULL")
        db.commit()
    transfer.transfer(project.config)
    moved = history.history(project.config, "SLOT", "ROOM=A,SEAT=\\N")["versions"]
    assert [v["operation"] for v in moved] == ["insert", "key_change_away"]
    assert moved[-1]["key_to"] == "ROOM=B,SEAT=\\N"                  # typed as it is typed back
    assert history.history(project.config, "SLOT", moved[-1]["key_to"])["total"] == 1
    assert history.history(project.config, "SLOT", "ROOM=A,SEAT=1")["versions"][0]["changes"]["V"]["new"] == "2"
