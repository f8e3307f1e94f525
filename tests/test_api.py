"""The admin API through real HTTP: a uvicorn server on a free port, urllib as the client."""
from __future__ import annotations

import json
import socket
import threading
import time
import urllib.error
import urllib.parse
import urllib.request

import pytest

from fbaudit import api, capture, transfer
from fbaudit.errors import FbauditError

from helpers import run_sql

TOKEN = "s3cret-token-42"


@pytest.fixture
def server(project):
    """PRODUCT with Russian, Japanese and Chinese values, 25 versions of A-1, served with a token."""
    import uvicorn
    project.sql("CREATE TABLE PRODUCT (SKU VARCHAR(20) CHARACTER SET UTF8 NOT NULL PRIMARY KEY, "
                "TITLE VARCHAR(60) CHARACTER SET UTF8, PRICE NUMERIC(12,2))",
                "CREATE TABLE LINE (ORDER_ID INTEGER NOT NULL, LINE_NO INTEGER NOT NULL, QTY INTEGER, "
                "PRIMARY KEY (ORDER_ID, LINE_NO))")
    capture.init(project.config)
    capture.enable(project.config, "PRODUCT")
    capture.enable(project.config, "LINE")
    run_sql(project, ["INSERT INTO PRODUCT VALUES ('A-1', 'Гайка М8', 0.20)",
                      "INSERT INTO PRODUCT VALUES ('B-2', 'ネジ 5mm', 0.15)",
                      "INSERT INTO PRODUCT VALUES ('C-3', '螺丝刀', 7.90)",
                      "INSERT INTO LINE VALUES (7, 2, 1)"]
            + [f"UPDATE PRODUCT SET PRICE = PRICE + 0.01 WHERE SKU = 'A-1'" for _ in range(24)])
    transfer.transfer(project.config)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    app = api.create_app(project.config, token=TOKEN)
    srv = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    t0 = time.monotonic()
    while not srv.started:
        assert time.monotonic() - t0 < 20, "the server did not start"
        time.sleep(0.05)
    yield project, f"http://127.0.0.1:{port}"
    srv.should_exit = True
    thread.join(10)


def call(base, path, *, token=TOKEN, method="GET", body=None, **params):
    url = base + path + ("?" + urllib.parse.urlencode(params) if params else "")
    headers = {"Content-Type": "application/json"}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    req = urllib.request.Request(url, method=method, headers={k: v.encode("utf-8").decode("latin-1")
                                                              for k, v in headers.items()},
                                 data=json.dumps(body).encode() if body is not None else None)
    try:
        with urllib.request.urlopen(req, timeout=30) as res:
            return res.status, json.loads(res.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


def test_record_versions_pages_and_one_version_side_by_side(server):
    project, base = server
    status, body = call(base, "/api/records/PRODUCT/A-1/versions")
    assert status == 200 and body["success"] is True
    data = body["data"]
    assert data["pagination"] == {"limit": 20, "offset": 0, "total": 25}
    assert [v["version"] for v in data["items"]] == list(range(25, 5, -1))            # newest first
    status, body = call(base, "/api/records/PRODUCT/A-1/versions", limit=10, offset=20, order="asc")
    assert [v["version"] for v in body["data"]["items"]] == [21, 22, 23, 24, 25]
    status, body = call(base, "/api/records/PRODUCT/A-1/versions/1")
    v = body["data"]["version"]
    assert status == 200 and v["operation"] == "insert" and v["changes"]["TITLE"] == {"old": None, "new": "Гайка М8"}
    assert body["data"]["state"]["fields"]["PRICE"] == "0.20"
    status, body = call(base, "/api/records/LINE/ORDER_ID=7,LINE_NO=2/versions")
    assert status == 200 and body["data"]["key"] == {"ORDER_ID": "7", "LINE_NO": "2"}


def test_search_with_filters_and_non_latin_text(server):
    project, base = server
    status, body = call(base, "/api/versions", table="PRODUCT", limit=200)
    assert status == 200 and body["data"]["pagination"]["total"] == 27
    titles = {i["key"]["SKU"]: i for i in body["data"]["items"] if i["operation"] == "insert"}
    assert set(titles) == {"A-1", "B-2", "C-3"} and titles["B-2"]["fields_changed"] == ["SKU", "TITLE", "PRICE"]
    status, body = call(base, "/api/versions", table="PRODUCT", key="C-3")
    assert body["data"]["pagination"]["total"] == 1
    status, body = call(base, "/api/versions", author="nobody")
    assert body["data"]["pagination"]["total"] == 0 and body["data"]["items"] == []
    status, body = call(base, "/api/records/PRODUCT/B-2/versions/1")
    assert body["data"]["version"]["changes"]["TITLE"]["new"] == "ネジ 5mm"


def test_search_counts_up_to_a_cap_and_says_so(server, monkeypatch):
    """A list over many packets counts the matches only up to a cap (10,000; here 10): the total
    says how far it counted and `total_exact` whether that is all; paging past the cap still works."""
    from fbaudit import history
    monkeypatch.setattr(history, "COUNT_CAP", 10)
    project, base = server
    page = lambda **kw: call(base, "/api/versions", table="PRODUCT", **kw)[1]["data"]
    first = page(limit=5)
    assert first["pagination"] == {"limit": 5, "offset": 0, "total": 10, "total_exact": False}
    assert page(limit=5, offset=20)["pagination"]["total"] == 25         # counts as far as the page
    last = page(limit=5, offset=25)
    assert last["pagination"]["total"] == 27 and last["pagination"]["total_exact"] is True
    assert len(last["items"]) == 2
    ids = [i["packet_id"] for i in page(limit=200)["items"]]
    assert ids == sorted(ids, reverse=True) and len(ids) == 27            # newest first, all of them
    # One record's versions are numbered, so their total is exact whatever the cap.
    assert page(key="B-2")["pagination"]["total_exact"] is True


@pytest.mark.parametrize("path,params,status,code,words", [
    ("/api/versions", {"limit": 0}, 400, "bad_request", "limit"),
    ("/api/versions", {"limit": 201}, 400, "bad_request", "limit"),
    ("/api/versions", {"offset": -1}, 400, "bad_request", "offset"),
    ("/api/versions", {"table": "NOPE"}, 404, "not_found", "No history for table 'NOPE'"),
    ("/api/versions", {"key": "1"}, 400, "bad_request", "a record key needs its table"),
    ("/api/versions", {"source": "elsewhere"}, 400, "bad_request", "no source named 'elsewhere'"),
    ("/api/versions", {"since": "yesterday"}, 400, "bad_request", "since"),
    ("/api/records/LINE/7/versions", {}, 400, "bad_request", "ORDER_ID=VALUE,LINE_NO=VALUE"),
    ("/api/records/PRODUCT/ZZZ/versions", {}, 404, "not_found", "no versions"),
    ("/api/records/PRODUCT/A-1/versions/99", {}, 404, "not_found", "no version 99"),
    ("/api/nothing-here", {}, 404, "not_found", "Not Found"),
    ("/api/versions", {"offset": 10 ** 20}, 400, "bad_request", "offset"),
    ("/api/records/PRODUCT/A-1/versions/0", {}, 400, "bad_request", "version"),
    # a key longer than the log keeps (1000 characters): cut as the trigger cuts it, never Firebird's error
    ("/api/records/PRODUCT/" + "K" * 1500 + "/versions", {}, 404, "not_found", "no versions"),
    ("/api/versions", {"table": "PRODUCT", "key": "K" * 1500}, 200, None, ""),
])
def test_bad_parameters_get_4xx_with_the_error_envelope(server, path, params, status, code, words):
    _, base = server
    got, body = call(base, path, **params)
    assert got == status, body
    if code is None:
        assert body["success"] is True
        return
    assert body["success"] is False
    assert body["error"]["code"] == code and words in body["error"]["message"], body


def test_any_time_firebird_can_hold_filters_versions(server):
    """since=0001-01-01 gave a 500: firebird-driver cannot bind a date before 1858-11-17."""
    _, base = server
    for since in ("0001-01-01", "1858-11-16T23:59:59", "2000-01-01"):
        status, body = call(base, "/api/versions", since=since, table="PRODUCT")
        assert status == 200 and len(body["data"]["items"]) == 20, (since, body)
    status, body = call(base, "/api/versions", until="0001-01-02", table="PRODUCT")
    assert status == 200 and body["data"]["items"] == []


def test_token_is_required_and_checked(server):
    _, base = server
    for token, words in ((None, "a token is required"), ("wrong", "the token is wrong")):
        status, body = call(base, "/api/versions", token=token)
        assert status == 401 and body["success"] is False and body["error"]["code"] == "unauthorized"
        assert words in body["error"]["message"]
    req = urllib.request.Request(base + "/api/sources", headers={"X-Fbaudit-Token": TOKEN.encode().decode("latin-1")})
    with urllib.request.urlopen(req, timeout=10) as res:
        assert json.loads(res.read())["data"]["sources"] == [{"name": "main"}]
    with urllib.request.urlopen(base + "/openapi.json", timeout=10) as res:      # the description is public
        spec = json.loads(res.read())
    assert "/api/records/{table}/{key}/revert" in spec["paths"] and spec["info"]["title"] == "fbaudit admin API"
    with urllib.request.urlopen(base + "/", timeout=10) as res:
        assert "fbaudit — record history" in res.read().decode("utf-8")


def test_revert_through_the_api_and_its_conflict(server):
    project, base = server
    status, body = call(base, "/api/records/PRODUCT/A-1/revert", method="POST",
                        body={"to_version": 1, "by": "web.anna", "comment": "ticket 9"})
    assert status == 200 and body["data"]["action"] == "update" and body["data"]["fields"] == {"PRICE": "0.20"}
    status, body = call(base, "/api/records/PRODUCT/A-1/revert", method="POST", body={"to_version": 1})
    assert status == 409 and body["error"]["code"] == "conflict" and "not yet in the log" in body["error"]["message"]
    status, body = call(base, "/api/records/PRODUCT/A-1/revert", method="POST", body={"to_version": 0})
    assert status == 400 and "to_version" in body["error"]["message"]
    # its options in the body only: a misspelt one is refused, the query string too
    status, body = call(base, "/api/records/PRODUCT/A-1/revert", method="POST", body={"to_version": 1, "bye": "x"})
    assert status == 400 and "bye" in body["error"]["message"]
    status, body = call(base, "/api/records/PRODUCT/A-1/revert", method="POST", body={"to_version": 1}, source="main")
    assert status == 400 and "not in the query string" in body["error"]["message"]


def test_serve_refuses_to_start_without_a_token_or_no_auth_off_loopback(project, tmp_path):
    with pytest.raises(FbauditError, match="needs a token"):
        api.serve(project.config, host="127.0.0.1", port=1, token=None, no_auth=False)
    with pytest.raises(FbauditError, match="loopback address only"):
        api.serve(project.config, host="0.0.0.0", port=1, token=None, no_auth=True)
    f = tmp_path / "api.token"
    f.write_text("abc\n")
    f.chmod(0o644)
    with pytest.raises(FbauditError, match="chmod 600"):
        api.load_token(str(f), {})
    f.chmod(0o600)
    assert api.load_token(str(f), {}) == "abc" and api.load_token(None, {"FBAUDIT_API_TOKEN": "x"}) == "x"
    for bad, words in (("abc", "too short"), ("schlüssel-1234", "printable ASCII"), ("two words here", "ASCII")):
        with pytest.raises(FbauditError, match=words):
            api.serve(project.config, host="127.0.0.1", port=1, token=bad, no_auth=False)


def test_a_key_with_a_slash_percent_or_hash_is_reachable(server):
    project, base = server
    run_sql(project, ["INSERT INTO PRODUCT VALUES ('X/1 %#', 'Шуруп', 1.00)"])
    transfer.transfer(project.config)
    status, body = call(base, "/api/records/PRODUCT/" + urllib.parse.quote("X/1 %#", safe="") + "/versions")
    assert status == 200 and body["data"]["key"] == {"SKU": "X/1 %#"} and body["data"]["pagination"]["total"] == 1
