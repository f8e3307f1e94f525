"""The history page in a real browser: Debian's headless Chromium driven through ChromeDriver (selenium).

What support does with it: sign in, read the newest changes across tables, narrow them, open a record's
history, its transaction, preview the undo of that transaction and confirm it; checked in the database.
Every wait is on a condition (WebDriverWait), never on time.
"""
from __future__ import annotations

import os
import shutil

import pytest

from conftest import TARGET
from helpers import run_sql, running_server
from test_api import TOKEN, server  # noqa: F401  (the fixture: a served project with PRODUCT A-1, 25 versions)
from test_undo import MISTAKE, _orders, _rows, _shipped, _tx

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
DRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
WIDTH, HEIGHT = 1280, 900

# The rows of a table as the browser shows them (innerText per cell), read in one script: a list being
# re-rendered is never half read.
ROWS = "return [...document.querySelectorAll(arguments[0])].map(tr => [...tr.cells].map(td => td.innerText));"


@pytest.fixture
def browser(target):
    if TARGET != "embedded" or target.major != 5:
        pytest.skip("the page is the same on every Firebird: checked once, in the fb5 run")
    if not (os.path.exists(CHROMIUM) and os.path.exists(DRIVER)):
        pytest.fail("Debian's chromium and chromium-driver are needed (scripts/test installs them)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-dev-shm-usage", f"--window-size={WIDTH},{HEIGHT}", "--lang=en",
                 "--hide-scrollbars", "--force-device-scale-factor=1"):
        opts.add_argument(flag)
    # The page never opens a dialog (no prompt, alert or confirm); one would fail the next command.
    opts.set_capability("unhandledPromptBehavior", "dismiss and notify")
    drv = webdriver.Chrome(service=Service(DRIVER), options=opts)
    drv.set_window_size(WIDTH, HEIGHT)
    inner = drv.execute_script("return [window.innerWidth, window.innerHeight]")
    drv.set_window_size(WIDTH + WIDTH - inner[0], HEIGHT + HEIGHT - inner[1])   # the page itself 1280x900
    yield drv
    drv.quit()


def waiting(browser):
    from selenium.common.exceptions import StaleElementReferenceException
    from selenium.webdriver.support.ui import WebDriverWait
    return WebDriverWait(browser, 30, ignored_exceptions=(StaleElementReferenceException,))


def rows(browser, css: str) -> list[list[str]]:
    return browser.execute_script(ROWS, css)


def text_of(browser, element_id: str) -> str:
    return browser.execute_script("const e = document.getElementById(arguments[0]); return e ? e.innerText : null",
                                  element_id)


def shown(browser, element_id: str) -> bool:
    from selenium.webdriver.common.by import By
    return browser.find_element(By.ID, element_id).is_displayed()


def idle(browser) -> bool:
    """No page load in progress (the page marks one on <body>)."""
    return browser.execute_script("return !document.body.dataset.loading")


def click(browser, css: str, *, within: str | None = None, text: str | None = None):
    """Click the first element matching ``css`` (inside the row whose text contains ``within``)."""
    from selenium.webdriver.common.by import By
    for el in browser.find_elements(By.CSS_SELECTOR, css):
        if text is not None and el.text != text:
            continue
        if within is not None:
            row = el.find_element(By.XPATH, "./ancestor::tr[1]")
            if within not in row.text:
                continue
        el.click()
        return
    raise AssertionError(f"nothing to click: {css} {within or ''} {text or ''}")


def fill(browser, element_id: str, value: str) -> None:
    from selenium.webdriver.common.by import By
    field = browser.find_element(By.ID, element_id)
    field.clear()
    if value:
        field.send_keys(value)


def sign_in(browser, base: str, token: str = TOKEN) -> None:
    from selenium.webdriver.common.by import By
    wait = waiting(browser)
    if not browser.current_url.startswith(base):
        browser.get(base + "/")
    wait.until(lambda d: shown(d, "signin"))
    fill(browser, "token", token)
    browser.find_element(By.ID, "signin-button").click()


def session_token(browser):
    return browser.execute_script("return sessionStorage.getItem('fbaudit-token')")


def save_screenshot(browser, tmp_path) -> None:
    """The page as it is now, 1280x900; FBAUDIT_SCREENSHOT=docs/history-page.png refreshes the docs' picture."""
    shot = tmp_path / "history-page.png"
    browser.save_screenshot(str(shot))
    assert shot.stat().st_size > 10_000
    with shot.open("rb") as fh:
        head = fh.read(24)
    assert (int.from_bytes(head[16:20], "big"), int.from_bytes(head[20:24], "big")) == (WIDTH, HEIGHT)
    if os.environ.get("FBAUDIT_SCREENSHOT"):
        shutil.copyfile(shot, os.environ["FBAUDIT_SCREENSHOT"])


def test_sign_in_newest_changes_filters_and_a_records_history(browser, server):  # noqa: F811
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select
    project, base = server
    wait = waiting(browser)
    browser.get(base + "/")
    # The page's own sign-in form (no browser prompt); a wrong token: the reason, and the form again.
    wait.until(lambda d: shown(d, "signin"))
    assert not shown(browser, "app")
    sign_in(browser, base, "not-the-token-1")
    wait.until(lambda d: text_of(d, "signin-error") == "the token is wrong")
    assert shown(browser, "signin") and not shown(browser, "app") and session_token(browser) is None
    # The right token: kept for the tab (sessionStorage, never localStorage nor the URL); the newest changes.
    sign_in(browser, base)
    wait.until(lambda d: idle(d) and len(rows(d, "#newest tbody tr")) == 20)
    assert session_token(browser) == TOKEN
    assert browser.execute_script("return localStorage.length") == 0 and TOKEN not in browser.current_url
    assert not shown(browser, "signin")
    listed = rows(browser, "#newest tbody tr")
    # Newest first, across tables: A-1's 24 price updates came after the four inserts.
    assert [r[1:7] for r in listed[:2]] == [["PRODUCT", "SKU=A-1", "25", "update", "PRICE", "SYSDBA"],
                                            ["PRODUCT", "SKU=A-1", "24", "update", "PRICE", "SYSDBA"]]
    assert text_of(browser, "changes-info") == "1–20 of 28"
    browser.find_element(By.ID, "changes-older").click()
    wait.until(lambda d: text_of(d, "changes-info") == "21–28 of 28")
    assert [r[1:5] for r in rows(browser, "#newest tbody tr")[-4:]] == [
        ["LINE", "ORDER_ID=7, LINE_NO=2", "1", "insert"], ["PRODUCT", "SKU=C-3", "1", "insert"],
        ["PRODUCT", "SKU=B-2", "1", "insert"], ["PRODUCT", "SKU=A-1", "1", "insert"]]
    # A filter narrows the list: a table ...
    fill(browser, "f-table", "LINE")
    browser.find_element(By.ID, "apply").click()
    wait.until(lambda d: idle(d) and text_of(d, "changes-info") == "1–1 of 1")
    [line] = rows(browser, "#newest tbody tr")
    assert line[1:6] == ["LINE", "ORDER_ID=7, LINE_NO=2", "1", "insert", "ORDER_ID, LINE_NO, QTY"]
    # ... an author, none of whose changes are there ...
    fill(browser, "f-table", "")
    fill(browser, "f-author", "nobody")
    browser.find_element(By.ID, "apply").click()
    wait.until(lambda d: idle(d) and rows(d, "#newest tbody tr") == [["No changes match."]])
    # ... and a time range (datetime-local inputs).
    fill(browser, "f-author", "SYSDBA")
    browser.execute_script("document.getElementById('f-until').value = '2999-01-01T00:00:00'")
    browser.find_element(By.ID, "apply").click()
    wait.until(lambda d: idle(d) and text_of(d, "changes-info") == "1–20 of 28")
    browser.execute_script("document.getElementById('f-since').value = '2999-01-01T00:00:00'")
    browser.find_element(By.ID, "apply").click()
    wait.until(lambda d: idle(d) and rows(d, "#newest tbody tr") == [["No changes match."]])
    # Who set a field to a value (sent only when filled in); the API's refusal is shown as it says it.
    browser.find_element(By.ID, "clear").click()
    wait.until(lambda d: idle(d) and text_of(d, "changes-info") == "1–20 of 28")
    fill(browser, "f-field", "PRICE")
    browser.find_element(By.ID, "apply").click()
    wait.until(lambda d: idle(d) and "go together" in text_of(d, "message"))
    assert rows(browser, "#newest tbody tr") == [] and text_of(browser, "changes-info") == ""
    fill(browser, "f-value", "0.44")
    browser.find_element(By.ID, "apply").click()
    wait.until(lambda d: idle(d) and text_of(d, "changes-info") == "1–1 of 1")
    assert [r[1:5] for r in rows(browser, "#newest tbody tr")] == [["PRODUCT", "SKU=A-1", "25", "update"]]
    assert not text_of(browser, "message")
    fill(browser, "f-value", "0.20")
    Select(browser.find_element(By.ID, "f-side")).select_by_value("old")
    browser.find_element(By.ID, "apply").click()
    wait.until(lambda d: idle(d) and "side=old" in d.current_url and text_of(d, "changes-info") == "1–1 of 1")
    assert [r[1:5] for r in rows(browser, "#newest tbody tr")] == [["PRODUCT", "SKU=A-1", "2", "update"]]
    Select(browser.find_element(By.ID, "f-side")).select_by_value("new")
    fill(browser, "f-field", "TITLE")
    fill(browser, "f-value", "ネジ")
    browser.find_element(By.ID, "f-prefix").click()
    browser.find_element(By.ID, "apply").click()
    wait.until(lambda d: idle(d) and "prefix=true" in d.current_url and text_of(d, "changes-info") == "1–1 of 1")
    assert [r[1:5] for r in rows(browser, "#newest tbody tr")] == [["PRODUCT", "SKU=B-2", "1", "insert"]]
    browser.find_element(By.ID, "clear").click()
    wait.until(lambda d: idle(d) and text_of(d, "changes-info") == "1–20 of 28" and not text_of(d, "message"))

    # One click from a change to its record's history (the key typed as `fbaudit history` takes it).
    click(browser, "#newest a.record", within="SKU=A-1")
    wait.until(lambda d: idle(d) and text_of(d, "list-title") == "PRODUCT SKU=A-1 — 25 version(s)")
    assert text_of(browser, "page-info") == "1–20 of 25"
    first = rows(browser, "#versions tbody tr")[0]
    assert first[0] == "25" and first[2] == "SYSDBA" and first[3] == "update" and first[4] == "PRICE 0.43 → 0.44"
    browser.find_element(By.ID, "older").click()                     # the last page holds version 1
    wait.until(lambda d: text_of(d, "page-info") == "21–25 of 25")
    browser.find_elements(By.CSS_SELECTOR, "#versions tbody tr td:first-child")[-1].click()   # version 1: the insert
    wait.until(lambda d: shown(d, "detail") and text_of(d, "detail-title").startswith("Version 1 of 25: insert by "))
    sides = {r[0]: r[1:] for r in rows(browser, "#changes tbody tr")}
    assert sides == {"SKU": ["NULL", "A-1"], "TITLE": ["NULL", "Гайка М8"], "PRICE": ["NULL", "0.20"]}
    # Putting the record back to a version: what changes is shown first; only the button under it writes.
    browser.find_element(By.ID, "revert").click()
    wait.until(lambda d: shown(d, "record-revert-panel"))
    assert rows(browser, "#record-revert-fields tbody tr") == [["PRICE", "0.44", "0.20"]]
    with project.connect() as db:
        assert str(db.scalar("SELECT PRICE FROM PRODUCT WHERE SKU = 'A-1'")) == "0.44"     # the preview wrote nothing
        db.commit()
    fill(browser, "record-revert-by", "support.li")
    browser.find_element(By.ID, "record-revert-confirm").click()
    wait.until(lambda d: "set back to version 1 (PRICE)" in text_of(d, "revert-result"))
    with project.connect() as db:
        assert [(str(p), t) for p, t in db.query("SELECT PRICE, TITLE FROM PRODUCT WHERE SKU = 'A-1'")] == [
            ("0.20", "Гайка М8")]
        db.commit()
    # One click from a version to its transaction: every change it made, across tables, in order.
    click(browser, "#versions a.tx", within="insert")
    wait.until(lambda d: idle(d) and shown(d, "tx-view") and len(rows(d, "#tx-changes tbody tr")) == 28)
    summary = {dt: dd for dt, dd in browser.execute_script(
        "return [...document.querySelectorAll('#tx-summary dt')].map(e => [e.innerText, e.nextSibling.innerText])")}
    assert summary["Author"] == "SYSDBA" and summary["Changes"] == "28 changes"
    assert sorted(summary["Tables"].split(", ")) == ["LINE 1", "PRODUCT 27"]
    tx_rows = rows(browser, "#tx-changes tbody tr")
    assert [r[0] for r in tx_rows] == [str(i) for i in range(1, 29)]
    assert [r[2:6] for r in tx_rows[:4]] == [["PRODUCT", "SKU=A-1", "1", "insert"], ["PRODUCT", "SKU=B-2", "1", "insert"],
                                             ["PRODUCT", "SKU=C-3", "1", "insert"],
                                             ["LINE", "ORDER_ID=7, LINE_NO=2", "1", "insert"]]
    assert tx_rows[4][2:7] == ["PRODUCT", "SKU=A-1", "2", "update", "PRICE 0.20 → 0.21"]
    # ... and from there to any record (a composite key).
    click(browser, "#tx-changes a.record", text="ORDER_ID=7, LINE_NO=2")
    wait.until(lambda d: idle(d) and text_of(d, "list-title") == "LINE ORDER_ID=7, LINE_NO=2 — 1 version(s)")

    # Find one record with the key filter; a CJK record: the text arrives as it is stored.
    browser.find_element(By.ID, "to-changes").click()
    wait.until(lambda d: idle(d) and shown(d, "changes-view"))
    fill(browser, "f-table", "PRODUCT")
    fill(browser, "f-key", "C-3")
    browser.find_element(By.ID, "apply").click()
    wait.until(lambda d: idle(d) and text_of(d, "changes-info") == "1–1 of 1")
    click(browser, "#newest a.record", within="SKU=C-3")
    wait.until(lambda d: idle(d) and text_of(d, "list-title") == "PRODUCT SKU=C-3 — 1 version(s)")
    browser.find_elements(By.CSS_SELECTOR, "#versions tbody tr td:first-child")[0].click()
    wait.until(lambda d: "螺丝刀" in text_of(d, "changes"))
    # The table's DDL shows between the versions it came between (docs/schema-changes.md). A reload keeps
    # the tab signed in and on the same record.
    project.sql("ALTER TABLE PRODUCT ADD STOCK INTEGER")
    from fbaudit import capture, transfer
    capture.sync(project.config)
    run_sql(project, ["UPDATE PRODUCT SET STOCK = 5 WHERE SKU = 'C-3'"])
    transfer.transfer(project.config)
    browser.refresh()
    wait.until(lambda d: idle(d) and text_of(d, "list-title") == "PRODUCT SKU=C-3 — 2 version(s)")
    assert not shown(browser, "signin")
    got = browser.execute_script("return [...document.querySelectorAll('#versions tbody tr')].map("
                                 "tr => [tr.className, ...[...tr.cells].map(td => td.innerText)])")
    assert [(r[0], r[1], r[4]) for r in got] == [
        ("version", "2", "update"), ("schema", "", "ALTER TABLE"), ("version", "1", "insert")], got
    assert got[1][5] == "ALTER TABLE PRODUCT ADD STOCK INTEGER"
    assert got[0][5] == "STOCK NULL → 5"
    # Sign out: the token is gone from the tab, the form is back.
    browser.find_element(By.ID, "signout").click()
    wait.until(lambda d: shown(d, "signin") and not shown(d, "app"))
    assert session_token(browser) is None and text_of(browser, "signin-error") == ""


@pytest.fixture
def mistake(project):
    """ORDERS and LINES (test_undo.py), boris's transaction that changed both, served with a token."""
    from fbaudit import api
    txs = _orders(project)
    before = _rows(project)
    txs["mistake"] = _tx(project, "boris", MISTAKE)
    _shipped(project)
    with running_server(api.create_app(project.config, token=TOKEN)) as base:
        yield project, base, txs, before


def summary_of(browser) -> dict[str, str]:
    return dict(browser.execute_script(
        "return [...document.querySelectorAll('#tx-summary dt')].map(e => [e.innerText, e.nextSibling.innerText])"))


def test_from_a_change_to_its_transaction_undo_preview_and_confirm_puts_the_rows_back(browser, mistake, tmp_path):
    from selenium.webdriver.common.by import By
    from fbaudit import history
    project, base, txs, before = mistake
    wait = waiting(browser)
    sign_in(browser, base)
    wait.until(lambda d: idle(d) and text_of(d, "changes-info") == "1–14 of 14")
    assert {r[6] for r in rows(browser, "#newest tbody tr")[:9]} == {"boris (db user SYSDBA)"}
    fill(browser, "f-author", "anna")                                 # the setup: anna's five inserts
    browser.find_element(By.ID, "apply").click()
    wait.until(lambda d: idle(d) and text_of(d, "changes-info") == "1–5 of 5")
    assert {(r[4], r[6]) for r in rows(browser, "#newest tbody tr")} == {("insert", "anna (db user SYSDBA)")}
    fill(browser, "f-author", "boris")
    browser.find_element(By.ID, "apply").click()
    wait.until(lambda d: idle(d) and text_of(d, "changes-info") == "1–9 of 9")
    # One click from a change to its transaction.
    click(browser, "#newest a.tx")
    wait.until(lambda d: idle(d) and shown(d, "tx-view") and len(rows(d, "#tx-changes tbody tr")) == 9)
    tx = txs["mistake"]
    assert text_of(browser, "tx-title") == f"Transaction {tx} — source main"
    summary = summary_of(browser)
    assert summary["Author"] == "boris" and summary["Changes"] == "9 changes"
    assert sorted(summary["Tables"].split(", ")) == ["LINES 6", "ORDERS 3"]
    assert [r[2:6] for r in rows(browser, "#tx-changes tbody tr")] == [
        ["ORDERS", "ID=2", "2", "update"], ["LINES", "ID=20", "2", "update"], ["LINES", "ID=10", "2", "delete"],
        ["LINES", "ID=11", "2", "delete"], ["ORDERS", "ID=1", "2", "delete"], ["ORDERS", "ID=3", "1", "insert"],
        ["LINES", "ID=30", "1", "insert"], ["LINES", "ID=20", "3", "key_change_away"],
        ["LINES", "ID=21", "1", "key_change"]]
    # To a record's history and back to the transaction from its version, one click each.
    click(browser, "#tx-changes a.record", text="ID=2")
    wait.until(lambda d: idle(d) and text_of(d, "list-title") == "ORDERS ID=2 — 2 version(s)")
    assert rows(browser, "#versions tbody tr")[0][4].splitlines() == ["CUSTOMER Берёза → Дуб", "TOTAL 20.00 → 0.00"]
    click(browser, "#versions a.tx", text=str(tx))
    wait.until(lambda d: idle(d) and shown(d, "tx-view") and len(rows(d, "#tx-changes tbody tr")) == 9)

    # Undo: the preview first. It lists the records and fields and changes nothing.
    browser.find_element(By.ID, "undo").click()
    wait.until(lambda d: shown(d, "undo-panel"))
    assert text_of(browser, "undo-message").startswith(f"transaction {tx} of source main: 8 record(s): 3 re-inserted, "
                                                       "1 updated back, 1 key changed back, 2 deleted")
    actions = {(r[0], r[1]): r[2:] for r in rows(browser, "#undo-actions tbody tr")}
    assert actions[("ORDERS", "ID=2")] == ["updated back", "CUSTOMER Дуб → Берёза\nTOTAL 0.00 → 20.00"]
    assert actions[("LINES", "ID=21 → ID=20")] == ["key changed back", "ID 21 → 20\nQTY 0 → 5"]
    assert actions[("ORDERS", "ID=3")] == ["deleted", "the row is deleted"]
    assert actions[("ORDERS", "ID=1")][0] == "re-inserted" and "CUSTOMER Ёлка" in actions[("ORDERS", "ID=1")][1]
    assert set(actions) == {("ORDERS", "ID=2"), ("LINES", "ID=21 → ID=20"), ("ORDERS", "ID=3"), ("LINES", "ID=30"),
                            ("ORDERS", "ID=1"), ("LINES", "ID=10"), ("LINES", "ID=11")}
    assert not shown(browser, "undo-conflicts") and browser.find_element(By.ID, "undo-confirm").is_enabled()
    assert _rows(project) != before                                   # the preview wrote nothing
    fill(browser, "undo-by", "support.anna")
    fill(browser, "undo-comment", "ticket 4711")
    save_screenshot(browser, tmp_path)
    # Confirm: the rows are back, in the database.
    browser.find_element(By.ID, "undo-confirm").click()
    wait.until(lambda d: text_of(d, "undo-done") is not None)
    assert " in transaction " in text_of(browser, "undo-done") and not shown(browser, "undo-panel")
    assert _rows(project) == before
    revert_tx = int(text_of(browser, "undo-tx"))
    _shipped(project)
    t = history.transaction(project.config, revert_tx)
    assert t["author"] == "support.anna" and t["comment"] == "ticket 4711"
    browser.find_element(By.ID, "undo-tx").click()                    # the undo is a transaction of its own
    wait.until(lambda d: idle(d) and text_of(d, "tx-title") == f"Transaction {revert_tx} — source main")
    assert summary_of(browser)["Author"] == "support.anna"


HOSTILE_AUTHOR = "<script>window.pwned = 1</script>\"'\x1b"
HOSTILE_VALUE = "<img src=x onerror=\"window.pwned=2\">\x1b'"


def test_a_refused_undo_shows_the_conflicts_and_hostile_values_stay_text(browser, project):
    """A preview made stale by a later change: 409, its conflicts listed, nothing changed; a new preview
    offers to leave the conflicting record out. Values with markup, quotes and control characters are text."""
    from selenium.webdriver.common.by import By
    from fbaudit import api
    _orders(project)
    tx = _tx(project, HOSTILE_AUTHOR, [
        "UPDATE ORDERS SET TOTAL = 0, CUSTOMER = '<img src=x onerror=\"window.pwned=2\">' || ASCII_CHAR(27) || '''' "
        "WHERE ID = 1", "UPDATE ORDERS SET TOTAL = 0 WHERE ID = 2", "UPDATE LINES SET QTY = 0"])
    _shipped(project)
    wait = waiting(browser)
    with running_server(api.create_app(project.config, token=TOKEN)) as base:
        sign_in(browser, base)
        wait.until(lambda d: idle(d) and text_of(d, "changes-info") == "1–10 of 10")
        authors = browser.execute_script("return [...document.querySelectorAll('#newest tbody tr')].map("
                                         "tr => tr.cells[6].firstChild.textContent)")
        assert authors[:5] == [HOSTILE_AUTHOR] * 5
        click(browser, "#newest a.record", text="ID=1", within="ORDERS")
        wait.until(lambda d: idle(d) and text_of(d, "list-title") == "ORDERS ID=1 — 2 version(s)")
        values = browser.execute_script("return [...document.querySelectorAll('#versions tbody tr:first-child "
                                        "span.new')].map(e => e.textContent)")
        assert HOSTILE_VALUE in values
        click(browser, "#versions a.tx", text=str(tx))
        wait.until(lambda d: idle(d) and shown(d, "tx-view") and len(rows(d, "#tx-changes tbody tr")) == 5)
        assert browser.execute_script("return document.querySelector('#tx-summary dd').textContent") == HOSTILE_AUTHOR
        browser.find_element(By.ID, "undo").click()
        wait.until(lambda d: shown(d, "undo-panel"))
        shown_values = browser.execute_script("return [...document.querySelectorAll('#undo-actions span.old')]"
                                              ".map(e => e.textContent)")
        assert HOSTILE_VALUE in shown_values and not shown(browser, "undo-conflicts")
        # Nothing ran: no element, no handler, no script came from the values.
        assert browser.execute_script("return [window.pwned, document.querySelectorAll('img').length, "
                                      "document.scripts.length]") == [None, 0, 1]
        # Someone changes a line after the preview: the confirm is refused with the conflict, nothing changed.
        _tx(project, "carla", ["UPDATE LINES SET QTY = 7 WHERE ID = 11"])
        _shipped(project)
        now = _rows(project)
        browser.find_element(By.ID, "undo-confirm").click()
        wait.until(lambda d: shown(d, "undo-refused"))
        assert "nothing was reverted" in text_of(browser, "undo-result")
        [refused] = rows(browser, "#undo-refused-list tbody tr")
        assert refused[:2] == ["LINES", "ID=11"] and "by carla" in refused[2]
        assert _rows(project) == now
        # Preview again: the conflict is in the preview; confirm needs "leave conflicting records out".
        browser.find_element(By.ID, "undo-again").click()
        wait.until(lambda d: shown(d, "undo-panel") and shown(d, "undo-conflicts"))
        assert [r[:2] for r in rows(browser, "#undo-conflict-list tbody tr")] == [["LINES", "ID=11"]]
        confirm = browser.find_element(By.ID, "undo-confirm")
        assert not confirm.is_enabled()
        browser.find_element(By.ID, "undo-skip").click()
        wait.until(lambda d: d.find_element(By.ID, "undo-confirm").is_enabled())
        browser.find_element(By.ID, "undo-confirm").click()
        wait.until(lambda d: text_of(d, "undo-done") is not None)
        assert "1 conflicting record(s) left out" in text_of(browser, "undo-done")
    got = _rows(project)
    assert [(r[0], r[2], float(r[3])) for r in got["ORDERS"]] == [(1, "Ёлка", 10.5), (2, "Берёза", 20.0)]
    assert {r[0]: r[2] for r in got["LINES"]} == {10: 1, 11: 7, 20: 5}          # 11 left as carla set it


def test_without_a_token_the_page_opens_on_the_newest_changes(browser, project):
    """`fbaudit serve --no-auth` (loopback only): no sign-in form, no sign-out link, the list at once."""
    from fbaudit import api
    _orders(project)
    _shipped(project)
    wait = waiting(browser)
    with running_server(api.create_app(project.config, token=None)) as base:
        browser.get(base + "/")
        wait.until(lambda d: idle(d) and text_of(d, "changes-info") == "1–5 of 5")
        assert not shown(browser, "signin") and not shown(browser, "signout") and session_token(browser) is None
        assert {r[4] for r in rows(browser, "#newest tbody tr")} == {"insert"}
