"""Text in any character set: the application's writes never fail, and the log keeps what was typed.

A legacy ERP connects with `SET NAMES WIN1251` (or NONE) to a database created
with WIN1251, NONE or UTF8 as its default character set, and names its clerk
with RDB$SET_CONTEXT. Context values hold the client's bytes in the
connection's character set: the audit trigger must decode them (docs/capture.md
"Text in any character set"), and never fail the application's statement.
"""
from __future__ import annotations

import shutil
import subprocess

import pytest

from fbaudit import capture, history, transfer
from fbaudit.config import Config, SourceSpec
from fbaudit.forms import NoneText
from fbaudit.runtime import load_client

from conftest import Project

AUTHOR = "Иван Петров"
COMMENT = "правка цены №5"
NAME, NAME2 = "Ёжик в тумане", "Чебурашка"
NOTE = "длинный текст " * 50

# What a legacy client sends on a NONE connection: bytes in the encoding its data is in.
NATIVE = {"NONE": "cp1251", "WIN1251": "cp1251", "UTF8": "utf-8"}
PY_CODEC = {"WIN1251": "cp1251", "UTF8": "utf-8"}


def _project(target, tmp_path, db_charset: str) -> Project:
    """A project whose main database was created with ``db_charset`` as its default character set."""
    from firebird.driver import create_database
    load_client()
    main, logdb = target.spec("main", tmp_path), target.spec("log", tmp_path)
    create_database(main.database, user=main.user, password=main.password(), charset=db_charset).close()
    if target.is_server:
        target.created.append(main)
        target.create(logdb).close()
    src = SourceSpec(name="main", database=main.database, user=main.user, password_env=main.password_env,
                     password_file=main.password_file, registry=tmp_path / "tables.yaml")
    cfg = Config(path=tmp_path / "fbaudit.yaml", log=logdb, sources=(src,), prefix="FBA_",
                 checkpoints_dir=tmp_path / "checkpoints")
    project = Project(target, cfg, src, logdb, tmp_path)
    with project.connect() as db:
        assert db.scalar("SELECT TRIM(RDB$CHARACTER_SET_NAME) FROM RDB$DATABASE") == db_charset
    return project


def _app(project, charset: str):
    """The application's own connection, in its own character set."""
    from firebird.driver import connect
    return connect(project.main.database, user=project.main.user, password=project.main.password(), charset=charset)


def _text(value: str, conn_charset: str, db_charset: str):
    """A text as the application sends it: str where the driver encodes it, else the client's bytes."""
    return value.encode(NATIVE[db_charset]) if conn_charset == "NONE" else value


def _expected_context(value: str, conn_charset: str, db_charset: str) -> str:
    """How the log shows a context value: as typed when its bytes decode, else x'hex'."""
    if conn_charset != "NONE" or db_charset != "NONE":
        return value
    return "x'" + value.encode(NATIVE[db_charset]).hex().upper() + "'"


@pytest.mark.parametrize("db_charset", ["NONE", "WIN1251", "UTF8"])
def test_writes_succeed_and_history_shows_what_was_typed(target, tmp_path, db_charset):
    project = _project(target, tmp_path, db_charset)
    project.sql("CREATE TABLE CLIENT (ID INTEGER NOT NULL PRIMARY KEY, NAME VARCHAR(40), NOTE BLOB SUB_TYPE TEXT)")
    capture.init(project.config)
    capture.enable(project.config, "CLIENT")
    conns = ["NONE", "WIN1251", "UTF8"]
    for n, cs in enumerate(conns, start=1):
        con = _app(project, cs)
        try:
            cur = con.cursor()
            t = lambda v: _text(v, cs, db_charset)        # noqa: E731
            cur.execute("SELECT RDB$SET_CONTEXT('USER_TRANSACTION', 'FBAUDIT_AUTHOR', ?), "
                        "RDB$SET_CONTEXT('USER_TRANSACTION', 'FBAUDIT_COMMENT', ?) FROM RDB$DATABASE",
                        (t(AUTHOR), t(COMMENT)))
            cur.fetchall()
            cur.execute("INSERT INTO CLIENT (ID, NAME, NOTE) VALUES (?, ?, ?)", (n, t(NAME), t(NOTE)))
            cur.execute("UPDATE CLIENT SET NAME = ? WHERE ID = ?", (t(NAME2), n))
            con.commit()
            cur.execute("SELECT RDB$SET_CONTEXT('USER_TRANSACTION', 'FBAUDIT_AUTHOR', ?) FROM RDB$DATABASE",
                        (t(AUTHOR),))
            cur.fetchall()
            cur.execute("DELETE FROM CLIENT WHERE ID = ?", (n,))
            con.commit()
        finally:
            con.close()
    assert not transfer.transfer(project.config).errors
    for n, cs in enumerate(conns, start=1):
        h = history.history(project.config, "CLIENT", str(n))
        ops = [v["operation"] for v in h["versions"]]
        assert ops == ["insert", "update", "delete"], (cs, ops)
        for v in h["versions"]:
            assert v["author"] == _expected_context(AUTHOR, cs, db_charset), (cs, v)
        ins, upd, dele = h["versions"]
        assert ins["comment"] == upd["comment"] == _expected_context(COMMENT, cs, db_charset), cs
        assert dele["comment"] is None
        name_in, name_up = ins["changes"]["NAME"]["new"], upd["changes"]["NAME"]["new"]
        if db_charset == "NONE":
            # CHARACTER SET NONE columns hold the client's bytes and are logged as them exactly:
            # shown as UTF-8 text where they are UTF-8 (no none_charset here), else as x'...'.
            sent = NAME.encode(NATIVE[db_charset] if cs == "NONE" else PY_CODEC[cs])
            assert NoneText().to_bytes(name_in) == sent, cs
            assert name_in == (NAME if cs == "UTF8" else "x'" + sent.hex().upper() + "'"), cs
        else:
            assert (name_in, name_up) == (NAME, NAME2), cs
            assert ins["changes"]["NOTE"]["new"] == NOTE, cs
            assert dele["changes"]["NAME"]["old"] == NAME2, cs


def test_author_column_in_character_set_none(target, tmp_path):
    """An author column of CHARACTER SET NONE holds whatever bytes clients sent: UTF-8 from one,
    WIN1251 from another (the database's default set), unknown bytes from a third."""
    project = _project(target, tmp_path, "WIN1251")
    project.sql("CREATE TABLE PRICE (ID INTEGER NOT NULL PRIMARY KEY, AMOUNT INTEGER, "
                "CLERK VARCHAR(40) CHARACTER SET NONE)")
    capture.init(project.config)
    capture.enable(project.config, "PRICE", author="CLERK")
    values = {1: "Ольга".encode("utf-8"), 2: "Ольга".encode("cp1251"), 3: b"\x98\xff"}
    con = _app(project, "NONE")
    try:
        for i, clerk in values.items():
            con.cursor().execute("INSERT INTO PRICE VALUES (?, 1, ?)", (i, clerk))
        con.commit()
    finally:
        con.close()
    assert not transfer.transfer(project.config).errors
    authors = [history.history(project.config, "PRICE", str(i))["versions"][0]["author"] for i in values]
    # 0x98 is no WIN1251 character, so the third is kept as its bytes.
    assert authors == ["Ольга", "Ольга", "x'98FF'"]


def test_context_values_too_long_or_undecodable_never_fail_the_write(target, tmp_path):
    project = _project(target, tmp_path, "UTF8")
    project.sql("CREATE TABLE T (ID INTEGER NOT NULL PRIMARY KEY, V INTEGER)")
    capture.init(project.config)
    capture.enable(project.config, "T")
    con = _app(project, "NONE")
    try:
        cur = con.cursor()
        cur.execute("SELECT RDB$SET_CONTEXT('USER_TRANSACTION', 'FBAUDIT_AUTHOR', ?), "
                    "RDB$SET_CONTEXT('USER_TRANSACTION', 'FBAUDIT_COMMENT', ?) FROM RDB$DATABASE",
                    (b"\xc8\xe2\xe0\xed" * 60, "я".encode() * 127 + b"\xd1"))
        cur.fetchall()
        cur.execute("INSERT INTO T VALUES (1, 1)")
        con.commit()
    finally:
        con.close()
    assert not transfer.transfer(project.config).errors
    v = history.history(project.config, "T", "1")["versions"][0]
    # 240 bytes that are not UTF-8 in a UTF8 database: the first 126 as hex, cut at 255 characters.
    assert v["author"] == "x'" + ("C8E2E0ED" * 60)[:252] + "'"
    # A UTF-8 text cut in the middle of a character is no UTF-8 any more: kept as bytes too.
    assert v["comment"].startswith("x'D18FD18F") and len(v["comment"]) == 255


def test_isql_with_set_names_win1251(target, tmp_path):
    """The issue's own reproduction: isql with SET NAMES WIN1251 and a Cyrillic author."""
    isql = shutil.which("isql-fb") or shutil.which("isql")
    if not (target.is_server and isql):
        pytest.skip("isql runs against the server target (Debian's firebird3.0-utils)")
    project = _project(target, tmp_path, "WIN1251")
    project.sql("CREATE TABLE GOODS (ID INTEGER NOT NULL PRIMARY KEY, TITLE VARCHAR(40))")
    capture.init(project.config)
    capture.enable(project.config, "GOODS")
    script = (f"SET NAMES WIN1251;\nCONNECT '{project.main.database}' USER '{project.main.user}' "
              f"PASSWORD '{project.main.password()}';\n"
              f"SELECT RDB$SET_CONTEXT('USER_TRANSACTION', 'FBAUDIT_AUTHOR', '{AUTHOR}') FROM RDB$DATABASE;\n"
              f"INSERT INTO GOODS VALUES (1, '{NAME}');\nUPDATE GOODS SET TITLE = '{NAME2}' WHERE ID = 1;\n"
              "DELETE FROM GOODS WHERE ID = 1;\nCOMMIT;\n")
    # As a file (-i): Debian's isql-fb 3.0 drops 8-bit bytes of a script read from its standard input.
    path = tmp_path / "upgrade.sql"
    path.write_bytes(script.encode("cp1251"))
    path.chmod(0o600)
    out = subprocess.run([isql, "-q", "-i", str(path)], capture_output=True, timeout=120)
    assert out.returncode == 0 and not out.stderr.strip(), out.stderr.decode("cp1251", "replace")
    assert not transfer.transfer(project.config).errors
    h = history.history(project.config, "GOODS", "1")
    assert [(v["operation"], v["author"]) for v in h["versions"]] == \
        [("insert", AUTHOR), ("update", AUTHOR), ("delete", AUTHOR)]
    assert h["versions"][1]["changes"]["TITLE"] == {"old": NAME, "new": NAME2}
