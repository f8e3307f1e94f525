"""Checkpoints through the admin API, real HTTP to a uvicorn server on a free port, real
Firebird: list, show, restore with and without the auto-backup (the guide's
create_auto_backup), the error envelopes, the token, the [API] log lines, and a restore
that waits for a writer while the server keeps answering."""
from __future__ import annotations

import dataclasses
import logging
import threading
import time
from decimal import Decimal

import pytest

from fbaudit import api, capture
from fbaudit import checkpoint as cp
from fbaudit.db import open_database

from helpers import http_call, running_server, run_sql

TOKEN = "cp-token-0123456789"


def call(base, path, *, token=TOKEN, **kw):
    return http_call(base, path, token=token, **kw)


@pytest.fixture
def shop(project):
    """REGION <- CUSTOMER (a foreign key, non-Latin text, exact decimals, 150 rows: progress
    lines), both audited, served with a token."""
    project.sql("CREATE TABLE REGION (ID INTEGER NOT NULL PRIMARY KEY, NAME VARCHAR(40) CHARACTER SET UTF8)",
                "CREATE TABLE CUSTOMER (ID INTEGER NOT NULL PRIMARY KEY, "
                "REGION_ID INTEGER NOT NULL REFERENCES REGION (ID), NAME VARCHAR(60) CHARACTER SET UTF8, "
                "BALANCE NUMERIC(12,2))")
    capture.init(project.config)
    capture.enable(project.config, "REGION")
    capture.enable(project.config, "CUSTOMER")
    with project.connect() as db:
        cur = db.con.cursor()
        for i, name in ((1, "Север – Ελλάδα"), (2, "東京"), (3, "Praha")):
            cur.execute("INSERT INTO REGION VALUES (?, ?)", (i, name))
        for i in range(1, 151):
            cur.execute("INSERT INTO CUSTOMER VALUES (?, ?, ?, ?)",
                        (i, 1 + i % 3, f"Клиент {i} 株式会社", Decimal(f"{i}.{i % 100:02d}")))
        db.commit()
    with running_server(api.create_app(project.config, token=TOKEN)) as base:
        yield project, base


@pytest.fixture
def api_log(caplog):
    """The [API] and [CHECKPOINT] records, whether or not fbaudit's own handler (propagate
    off) was installed by an earlier test."""
    loggers = [logging.getLogger("fbaudit.serve"), logging.getLogger("fbaudit.checkpoint")]
    saved = [(lg.level, lg.propagate) for lg in loggers]
    for lg in loggers:
        lg.addHandler(caplog.handler)
        lg.propagate = False
        lg.setLevel(logging.INFO)
    yield caplog
    for lg, (level, propagate) in zip(loggers, saved):
        lg.removeHandler(caplog.handler)
        lg.setLevel(level)
        lg.propagate = propagate


def state(project) -> dict:
    with project.connect() as db:
        out = {"REGION": db.query("SELECT ID, NAME FROM REGION ORDER BY ID"),
               "CUSTOMER": db.query("SELECT ID, REGION_ID, NAME, BALANCE FROM CUSTOMER ORDER BY ID")}
        db.commit()
    return out


def scramble(project) -> None:
    run_sql(project, ["UPDATE CUSTOMER SET NAME = 'changed', BALANCE = 0 WHERE ID <= 50",
                      "DELETE FROM CUSTOMER WHERE ID > 140",
                      "INSERT INTO REGION VALUES (9, 'new region')",
                      "INSERT INTO CUSTOMER VALUES (500, 9, 'new customer', 1.00)"])


def ids(base, **params) -> list[str]:
    status, body = call(base, "/api/checkpoints", **params)
    assert status == 200, body
    return [c["id"] for c in body["data"]["checkpoints"]]


def test_list_pages_newest_first_and_show_verifies(shop):
    project, base = shop
    a = cp.create(project.config, description="before the price update")
    run_sql(project, ["DELETE FROM CUSTOMER WHERE ID > 100"])
    b = cp.create(project.config, tables=["REGION"])
    status, body = call(base, "/api/checkpoints")
    assert status == 200 and body["success"] is True
    data = body["data"]
    assert data["pagination"] == {"limit": 20, "offset": 0, "total": 2}
    assert [c["id"] for c in data["checkpoints"]] == [b["id"], a["id"]]                  # newest first
    older = data["checkpoints"][1]
    assert older["description"] == "before the price update" and older["kind"] == "checkpoint"
    assert older["tables"] == 2 and older["total_rows"] == 153 and older["source"] == "main"
    assert ids(base, limit=1, offset=1) == [a["id"]]
    assert ids(base, order="asc") == [a["id"], b["id"]]
    assert ids(base, source="main") == [b["id"], a["id"]]
    status, body = call(base, "/api/checkpoints", limit=1)
    assert body["data"]["pagination"] == {"limit": 1, "offset": 0, "total": 2}
    status, body = call(base, f"/api/checkpoints/{a['id']}")
    assert status == 200 and body["success"] is True
    shown = body["data"]
    assert shown["id"] == a["id"] and shown["valid"] is True and shown["description"] == "before the price update"
    assert shown["tables"] == {"REGION": {"rows": 3, "columns": 2}, "CUSTOMER": {"rows": 150, "columns": 4}}
    assert shown["total_rows"] == 153


def test_restore_with_auto_backup_brings_the_rows_back_and_keeps_the_overwritten_ones(shop, api_log):
    project, base = shop
    before = state(project)
    made = cp.create(project.config, description="known good")
    scramble(project)
    scrambled = state(project)
    assert scrambled != before
    status, body = call(base, f"/api/checkpoints/{made['id']}/restore", method="POST",
                        body={"create_auto_backup": True})
    assert status == 200 and body["success"] is True, body
    res = body["data"]
    backup = f"auto_backup_before_restore_{made['id']}"
    assert res["id"] == made["id"] and res["auto_backup"] == backup and res["audit"] == "rows"
    assert res["tables"] == {"REGION": 3, "CUSTOMER": 150} and res["total_rows"] == 153
    assert res["order"] == ["REGION", "CUSTOMER"]                                 # parent first
    assert state(project) == before                       # every row and value as at the checkpoint
    # The auto-backup is listed and holds exactly what the restore overwrote.
    status, body = call(base, "/api/checkpoints")
    listed = {c["id"]: c for c in body["data"]["checkpoints"]}         # (same second: either order)
    assert set(listed) == {backup, made["id"]} and body["data"]["pagination"]["total"] == 2
    assert listed[backup]["kind"] == "auto_backup" and listed[backup]["restore_of"] == made["id"]
    assert listed[backup]["total_rows"] == len(scrambled["REGION"]) + len(scrambled["CUSTOMER"])
    status, body = call(base, f"/api/checkpoints/{backup}/restore", method="POST",
                        body={"create_auto_backup": False})
    assert status == 200 and body["data"]["auto_backup"] is None
    assert state(project) == scrambled
    # The guide's [API] lines around the [CHECKPOINT] ones, in order; never the token.
    messages = [r.getMessage() for r in api_log.records]
    first = messages.index(f"[API] Received checkpoint restore request: {made['id']}")
    expected = ["[API] Request parameters: {'create_auto_backup': True}", "[API] Auto-backup enabled: True",
                "[API] Starting restore operation...", "=" * 80,
                f"[CHECKPOINT] WARNING: Starting restore operation: {made['id']}"]
    assert messages[first - 1] == "=" * 80 and messages[first + 1:first + 6] == expected
    done = messages.index(f"[CHECKPOINT] RESTORE COMPLETED SUCCESSFULLY: {made['id']}")
    tail = messages[done:done + 10]
    assert tail[tail.index("[API] Restore completed successfully"):][:4] == [
        "[API] Restore completed successfully", "[API] Tables restored: 2", "[API] Total rows restored: 153",
        f"[API] Auto-backup available: {backup}"]
    assert not any(TOKEN in m for m in messages)


def test_restore_without_auto_backup_writes_no_backup(shop):
    project, base = shop
    before = state(project)
    made = cp.create(project.config)
    scramble(project)
    status, body = call(base, f"/api/checkpoints/{made['id']}/restore", method="POST",
                        body={"create_auto_backup": False})
    assert status == 200 and body["data"]["auto_backup"] is None
    assert state(project) == before
    assert ids(base) == [made["id"]]                                   # no new checkpoint
    assert not list(project.config.checkpoint_dir.glob("auto_backup*"))
    # The guide's form, the option in the query string, is refused (a link could carry it): body only.
    scramble(project)
    scrambled = state(project)
    status, body = call(base, f"/api/checkpoints/{made['id']}/restore", method="POST", body={},
                        create_auto_backup="false")
    assert status == 400 and "not in the query string" in body["error"]["message"], body
    assert state(project) == scrambled and ids(base) == [made["id"]]


def test_restore_audited_as_one_event_per_table(shop):
    project, base = shop
    made = cp.create(project.config)
    with project.connect() as db:
        last = db.scalar("SELECT COALESCE(MAX(ID), 0) FROM FBA_LOG_PACKET")
        db.commit()
    status, body = call(base, f"/api/checkpoints/{made['id']}/restore", method="POST",
                        body={"audit": "event", "create_auto_backup": False})
    assert status == 200 and body["data"]["audit"] == "event"
    with project.connect() as db:
        rows = db.query("SELECT OPERATION, CHANGE_COMMENT FROM FBA_LOG_PACKET WHERE ID > ? ORDER BY ID", (last,))
        db.commit()
    assert rows == [(cp.OP_RESTORE, f"restore of checkpoint {made['id']}: 3 rows"),
                    (cp.OP_RESTORE, f"restore of checkpoint {made['id']}: 150 rows")]


def test_unknown_checkpoint_is_404_and_changes_nothing(shop, api_log):
    project, base = shop
    before = state(project)
    for method, path in (("GET", "/api/checkpoints/checkpoint_19990101_000000"),
                         ("POST", "/api/checkpoints/checkpoint_19990101_000000/restore"),
                         ("GET", "/api/checkpoints/no%20such%20thing")):
        status, body = call(base, path, method=method, body={} if method == "POST" else None)
        assert status == 404 and body["success"] is False and body["error"]["code"] == "not_found", body
    status, body = call(base, "/api/checkpoints/checkpoint_19990101_000000")
    assert "No checkpoint 'checkpoint_19990101_000000'" in body["error"]["message"]
    assert any(m.startswith("[API] Restore FAILED: No checkpoint 'checkpoint_19990101_000000'")
               for m in api_log.messages)
    assert state(project) == before and not project.config.checkpoint_dir.exists()


BAD_RESTORE_REQUESTS = [
    ({"audit": "x"}, {}, "audit"),
    ({"create_auto_backup": "maybe"}, {}, "create_auto_backup"),
    ({"create_autobackup": False}, {}, "create_autobackup"),           # misspelt: refused, not ignored
    ({"create_auto_backup": True}, {"create_auto_backup": "false"}, "not in the query string"),
    ({}, {"audit": "x"}, "not in the query string"),
    (b"{not json", {}, "JSON"),
    (["rows"], {}, "dictionary"),
    ({"source": "elsewhere"}, {}, "no source named 'elsewhere'"),
]


def test_bad_restore_request_is_400_and_restores_nothing(shop):
    project, base = shop
    made = cp.create(project.config)
    scramble(project)
    scrambled = state(project)
    for body, params, words in BAD_RESTORE_REQUESTS:
        status, answer = call(base, f"/api/checkpoints/{made['id']}/restore", method="POST", body=body, **params)
        assert status == 400 and answer["success"] is False and answer["error"]["code"] == "bad_request", \
            (body, params, answer)
        assert words in answer["error"]["message"], (body, params, answer)
    assert state(project) == scrambled and ids(base) == [made["id"]]


def test_bad_list_parameters_are_400(shop):
    _, base = shop
    for params, words in (({"limit": 0}, "limit"), ({"limit": 201}, "limit"), ({"offset": -1}, "offset"),
                          ({"source": "elsewhere"}, "no source named 'elsewhere'"), ({"order": "up"}, "order")):
        status, body = call(base, "/api/checkpoints", **params)
        assert status == 400 and body["error"]["code"] == "bad_request" and words in body["error"]["message"], body


def test_token_is_required(shop):
    project, base = shop
    made = cp.create(project.config)
    scramble(project)
    scrambled = state(project)
    for token in (None, "wrong-token-123"):
        for method, path in (("GET", "/api/checkpoints"), ("GET", f"/api/checkpoints/{made['id']}"),
                             ("POST", f"/api/checkpoints/{made['id']}/restore")):
            status, body = call(base, path, token=token, method=method, body={} if method == "POST" else None)
            assert status == 401 and body["success"] is False and body["error"]["code"] == "unauthorized"
    assert state(project) == scrambled and not list(project.config.checkpoint_dir.glob("auto_backup*"))


def test_damaged_checkpoint_is_409_and_changes_nothing(shop):
    project, base = shop
    made = cp.create(project.config)
    path = project.config.checkpoint_dir / f"{made['id']}.json"
    path.write_bytes(path.read_bytes().replace("Клиент 7 ".encode(), "Клиент 8 ".encode()))
    scramble(project)
    scrambled = state(project)
    status, body = call(base, f"/api/checkpoints/{made['id']}")
    assert status == 409 and body["error"]["code"] == "conflict" and "is damaged" in body["error"]["message"]
    status, body = call(base, f"/api/checkpoints/{made['id']}/restore", method="POST", body={})
    assert status == 409 and body["error"]["code"] == "conflict" and "checksum" in body["error"]["message"]
    assert state(project) == scrambled and ids(base) == [made["id"]]


def test_a_restore_waiting_for_a_writer_does_not_hold_up_the_server(shop, api_log):
    project, base = shop
    before = state(project)
    made = cp.create(project.config)
    holder = open_database(project.main)
    holder.execute("UPDATE REGION SET NAME = 'held' WHERE ID = 1")            # uncommitted: the restore waits
    outcome = {}
    worker = threading.Thread(target=lambda: outcome.update(
        answer=call(base, f"/api/checkpoints/{made['id']}/restore", method="POST", body={})))
    try:
        worker.start()
        t0 = time.monotonic()
        while "[CHECKPOINT] Acquiring exclusive locks on all tables..." not in api_log.messages:
            assert time.monotonic() - t0 < 30 and worker.is_alive(), outcome
            time.sleep(0.05)
        time.sleep(0.3)
        assert worker.is_alive()                                          # still waiting for the reservation
        for path in ("/api/checkpoints", f"/api/checkpoints/{made['id']}", "/api/sources"):
            t1 = time.monotonic()
            status, body = call(base, path, timeout=5)
            assert status == 200 and time.monotonic() - t1 < 2, (path, body)
        holder.commit()                                                   # the writer ends: the restore goes on
    finally:
        holder.close()
        worker.join(60)
    status, body = outcome["answer"]
    assert status == 200 and body["data"]["total_rows"] == 153, body
    assert state(project) == before                                   # the writer's change is overwritten too


def test_several_sources_need_one_named(shop):
    project, _ = shop
    made = cp.create(project.config)
    before = state(project)
    other = dataclasses.replace(project.config.sources[0], name="branch")
    config = dataclasses.replace(project.config, sources=(project.config.sources[0], other))
    scramble(project)
    with running_server(api.create_app(config, token=TOKEN)) as base:
        status, body = call(base, f"/api/checkpoints/{made['id']}/restore", method="POST", body={})
        assert status == 400 and body["error"]["code"] == "bad_request"
        assert "several sources are configured: name one with source (main, branch)" in body["error"]["message"]
        assert ids(base, source="branch") == [] and ids(base, source="main") == [made["id"]]
        status, body = call(base, f"/api/checkpoints/{made['id']}/restore", method="POST", body={"source": "branch"})
        assert status == 409 and "was taken from source 'main', not 'branch'" in body["error"]["message"]
        status, body = call(base, f"/api/checkpoints/{made['id']}/restore", method="POST", body={"source": "main"})
        assert status == 200, body
    assert state(project) == before


def _raw(base: str, method: str, path: str, *, body: bytes = b"", headers: dict | None = None):
    """One HTTP request exactly as given (content type, Host), as another web page's could be."""
    import http.client
    import json
    host, port = base.split("//")[1].split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=30)
    conn.putrequest(method, path, skip_host=True, skip_accept_encoding=True)
    for k, v in {"Host": f"{host}:{port}", **(headers or {})}.items():
        conn.putheader(k, v)
    conn.putheader("Content-Length", str(len(body)))
    conn.endheaders(body)
    res = conn.getresponse()
    data = res.read()
    conn.close()
    return res.status, (json.loads(data) if data.startswith(b"{") else data.decode("utf-8", "replace"))


def test_another_web_page_cannot_restore_even_without_a_token(shop):
    """`serve --no-auth`: a cross-site form POST (url-encoded, multipart or text/plain, empty body)
    restored a checkpoint before; now every state-changing call needs a JSON body, its options in it."""
    project, _ = shop
    made = cp.create(project.config)
    scramble(project)
    scrambled = state(project)
    with running_server(api.create_app(project.config, token=None)) as base:
        path = f"/api/checkpoints/{made['id']}/restore"
        for kind, body in (("application/x-www-form-urlencoded", b""), ("application/x-www-form-urlencoded",
                           b"create_auto_backup=false"), ("multipart/form-data; boundary=x", b"--x--\r\n"),
                           ("text/plain", b'{"create_auto_backup": false}')):
            status, answer = _raw(base, "POST", path, body=body, headers={"Content-Type": kind})
            assert status == 415 and answer["error"]["code"] == "unsupported_media_type", (kind, answer)
        status, answer = _raw(base, "POST", path + "?create_auto_backup=false", body=b"{}",
                              headers={"Content-Type": "application/json"})
        assert status == 400 and "not in the query string" in answer["error"]["message"]
        assert state(project) == scrambled and ids(base) == [made["id"]]
        # A page that rebinds its own name to this address: refused whatever it asks.
        for method, p in (("GET", "/api/checkpoints"), ("GET", "/api/sources"), ("POST", path)):
            status, answer = _raw(base, method, p, body=b"{}", headers={"Host": "evil.example:8765",
                                                                          "Content-Type": "application/json"})
            assert status == 400 and answer["error"]["code"] == "bad_host", (p, answer)
        assert state(project) == scrambled
        # The page itself and the API by name (localhost) still answer; the JSON call restores.
        assert _raw(base, "GET", "/api/sources", headers={"Host": "localhost"})[0] == 200
        status, answer = _raw(base, "POST", path, body=b'{"create_auto_backup": false}',
                              headers={"Content-Type": "application/json; charset=utf-8"})
        assert status == 200, answer
    # a name the admin allowed
    with running_server(api.create_app(project.config, token=None, hosts=("audit.example",))) as base:
        assert _raw(base, "GET", "/api/sources", headers={"Host": "audit.example"})[0] == 200
        assert _raw(base, "GET", "/api/sources")[0] == 400           # 127.0.0.1 was not given


def test_no_third_party_script_and_no_500s(shop):
    project, base = shop
    made = cp.create(project.config)
    # /docs loaded Swagger's JavaScript from a public CDN: gone; the description stays.
    assert _raw(base, "GET", "/docs")[0] == 404 and _raw(base, "GET", "/redoc")[0] == 404
    status, page = _raw(base, "GET", "/")
    assert status == 200 and "<script src" not in page.replace(" ", "") and "cdn" not in page.lower()
    assert call(base, "/openapi.json", token=TOKEN)[0] == 200
    # a 10,000-character checkpoint id: 404 with a message, never the server's path in a 500
    long_id = "c" * 10_000
    status, body = call(base, f"/api/checkpoints/{long_id}")
    assert status == 404 and "at most 200 characters" in body["error"]["message"], body
    assert str(project.config.checkpoint_dir) not in body["error"]["message"]
    status, body = call(base, f"/api/checkpoints/{long_id}/restore", method="POST", body={})
    assert status == 404, body
    assert call(base, f"/api/checkpoints/{made['id']}")[0] == 200
