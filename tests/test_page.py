"""The history page in a real browser: Debian's headless Chromium driven through ChromeDriver (selenium)."""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from conftest import TARGET
from helpers import run_sql
from test_api import TOKEN, server  # noqa: F401  (the fixture: a served project with PRODUCT A-1, 25 versions)

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
DRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"


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
                 "--disable-dev-shm-usage", "--window-size=1280,900", "--lang=en"):
        opts.add_argument(flag)
    opts.set_capability("unhandledPromptBehavior", "ignore")      # the token prompt is answered by the test
    drv = webdriver.Chrome(service=Service(DRIVER), options=opts)
    yield drv
    drv.quit()


def wait_for_prompt(browser, seconds: float = 20.0):
    """The page's token prompt (polled: selenium's alert_is_present did not see it here, a plain
    switch_to.alert does)."""
    import time
    from selenium.common.exceptions import NoAlertPresentException
    end = time.monotonic() + seconds
    while True:
        try:
            alert = browser.switch_to.alert
            alert.text                                       # raises while there is none
            return alert
        except NoAlertPresentException:
            if time.monotonic() > end:
                raise AssertionError("the page did not ask for the token") from None
            time.sleep(0.1)


def test_find_a_record_open_a_version_and_read_it_side_by_side(server, browser, tmp_path):  # noqa: F811
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as EC
    from selenium.webdriver.support.ui import Select, WebDriverWait
    project, base = server
    wait = WebDriverWait(browser, 20)
    browser.get(base + "/")
    prompt = wait_for_prompt(browser)                                # the page asks for the API token
    prompt.send_keys(TOKEN)
    prompt.accept()
    wait.until(lambda d: Select(d.find_element(By.ID, "source")).options)
    browser.find_element(By.ID, "table").send_keys("PRODUCT")
    browser.find_element(By.ID, "key").send_keys("A-1")
    browser.find_element(By.ID, "find").click()
    wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#versions tbody tr")) == 20)
    title = browser.find_element(By.ID, "list-title").text
    assert title == "PRODUCT SKU=A-1 — 25 version(s)"
    assert browser.find_element(By.ID, "page-info").text == "1–20 of 25"
    first = browser.find_elements(By.CSS_SELECTOR, "#versions tbody tr")[0]
    cells = [td.text for td in first.find_elements(By.TAG_NAME, "td")]
    assert cells[0] == "25" and cells[3] == "update" and cells[4] == "PRICE"
    browser.find_element(By.ID, "older").click()                     # the last page holds version 1
    wait.until(lambda d: d.find_element(By.ID, "page-info").text == "21–25 of 25")
    rows = browser.find_elements(By.CSS_SELECTOR, "#versions tbody tr")
    rows[-1].click()                                                  # version 1: the insert
    wait.until(EC.visibility_of_element_located((By.ID, "detail")))
    assert browser.find_element(By.ID, "detail-title").text.startswith("Version 1 of 25: insert by ")
    shown = {tr.find_elements(By.TAG_NAME, "td")[0].text: [td.text for td in tr.find_elements(By.TAG_NAME, "td")[1:]]
             for tr in browser.find_elements(By.CSS_SELECTOR, "#changes tbody tr")}
    assert shown == {"SKU": ["NULL", "A-1"], "TITLE": ["NULL", "Гайка М8"], "PRICE": ["NULL", "0.20"]}
    shot = tmp_path / "history-page.png"
    browser.save_screenshot(str(shot))
    assert shot.stat().st_size > 10_000
    if os.environ.get("FBAUDIT_SCREENSHOT"):                         # refresh docs/history-page.png
        shutil.copyfile(shot, os.environ["FBAUDIT_SCREENSHOT"])
    # A CJK record too: the text arrives as it is stored.
    browser.find_element(By.ID, "key").clear()
    browser.find_element(By.ID, "key").send_keys("C-3")
    browser.find_element(By.ID, "find").click()
    wait.until(lambda d: d.find_element(By.ID, "list-title").text == "PRODUCT SKU=C-3 — 1 version(s)")
    browser.find_elements(By.CSS_SELECTOR, "#versions tbody tr")[0].click()
    wait.until(lambda d: "螺丝刀" in d.find_element(By.ID, "changes").text)
    # The table's DDL shows between the versions it came between (docs/schema-changes.md).
    project.sql("ALTER TABLE PRODUCT ADD STOCK INTEGER")
    from fbaudit import capture, transfer
    capture.sync(project.config)
    run_sql(project, ["UPDATE PRODUCT SET STOCK = 5 WHERE SKU = 'C-3'"])
    transfer.transfer(project.config)
    browser.find_element(By.ID, "find").click()
    wait.until(lambda d: d.find_element(By.ID, "list-title").text == "PRODUCT SKU=C-3 — 2 version(s)")
    rows = [(tr.get_attribute("class"), [td.text for td in tr.find_elements(By.TAG_NAME, "td")])
            for tr in browser.find_elements(By.CSS_SELECTOR, "#versions tbody tr")]
    assert [(cls, cells[0], cells[3]) for cls, cells in rows] == [
        ("version", "2", "update"), ("schema", "", "ALTER TABLE"), ("version", "1", "insert")], rows
    assert rows[1][1][4] == "ALTER TABLE PRODUCT ADD STOCK INTEGER"
