"""`fbaudit enable TABLE --baseline`: existing rows logged as their first version (issue 5)."""
from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from fbaudit import objects
from fbaudit import baseline, capture, history, staging, transfer, versions
from fbaudit.cli import cli
from fbaudit.errors import FbauditError

from helpers import fast_check, packet_states, packets, run_sql

LONG = "ё" * 3000          # 6000 bytes: longer than a VARCHAR row of the transfer, a real BLOB


@pytest.fixture
def stock(project):
    """STOCK with three rows written BEFORE auditing starts (one mostly NULL)."""
    project.sql("CREATE TABLE STOCK (ID INTEGER NOT NULL PRIMARY KEY, NAME VARCHAR(40) CHARACTER SET UTF8, "
                "LEGACY VARCHAR(20) CHARACTER SET WIN1251, QTY NUMERIC(12,3), PRICE DOUBLE PRECISION, "
                "SEEN TIMESTAMP, OK BOOLEAN, NOTE BLOB SUB_TYPE TEXT CHARACTER SET UTF8)")
    run_sql(project, [
        "INSERT INTO STOCK VALUES (1, 'Болт М6 日本', 'Гайка', 12.500, 0.1, TIMESTAMP '2026-11-30 08:15:00.1234', "
        "TRUE, 'склад А')",
        "INSERT INTO STOCK (ID, NAME) VALUES (2, 'only a name')",
        "INSERT INTO STOCK VALUES (3, '螺丝', NULL, -0.001, 1e300, NULL, FALSE, ?)"], {2: (LONG,)})
    capture.init(project.config)
    return project


def table_rows(project):
    with project.connect() as db:
        cur = db.con.cursor()
        cur.execute("SELECT ID, NAME, LEGACY, QTY, PRICE, SEEN, OK, NOTE FROM STOCK ORDER BY ID")
        rows = [tuple(v.read() if hasattr(v, "read") else v for v in r) for r in cur.fetchall()]
        db.commit()
    return rows


def test_baseline_logs_existing_rows_as_the_trigger_would_and_makes_a_deleted_row_revertible(stock):
    before = table_rows(stock)
    res = capture.enable(stock.config, "STOCK", baseline=True, by="go-live")
    b = res.data["sources"][0]["baseline"]
    assert (b["rows"], b["field_rows"]) == (3, 8 + 2 + 6)
    assert "baseline: 3 existing rows logged as their first version" in res.lines[-1]
    transfer.transfer(stock.config)
    for key in ("1", "2", "3"):
        h = history.history(stock.config, "STOCK", key, limit=None)
        assert [(v["version"], v["operation"], v["author"]) for v in h["versions"]] == [(1, "baseline", "go-live")]
    # The trigger's own record of the same rows: delete them, it logs every non-NULL old value.
    run_sql(stock, ["DELETE FROM STOCK"])
    transfer.transfer(stock.config)
    for key in ("1", "2", "3"):
        v1, v2 = history.history(stock.config, "STOCK", key, limit=None)["versions"]
        assert v2["operation"] == "delete"
        assert {k: c["new"] for k, c in v1["changes"].items()} == {k: c["old"] for k, c in v2["changes"].items()}
    assert history.history(stock.config, "STOCK", "3", limit=None)["versions"][0]["changes"]["NOTE"]["new"] == LONG
    # History is complete from day one: the deleted rows can be put back exactly.
    for key in ("1", "2", "3"):
        assert versions.revert(stock.config, "STOCK", key, to_version=1)["action"] == "insert"
    assert table_rows(stock) == before


def test_baseline_is_ordered_before_changes_that_race_it(stock, monkeypatch):
    """A change committed before the baseline's snapshot (and even shipped before it), and one still
    uncommitted while the baseline reads: both come after the baseline in history, and the final
    state is the table's. The baseline never waits for the uncommitted writer."""
    writer = stock.connect()

    def race():
        run_sql(stock, ["UPDATE STOCK SET QTY = 99 WHERE ID = 1"])        # committed, seen by the snapshot
        transfer.transfer(stock.config)                                   # shipped before the baseline exists
        # The transfer moved past the ids reserved for the baseline, with no writer alive: they wait
        # as a reserved range (else nothing would tell it that packets will appear below SHIPPED_TO).
        with stock.connect() as db:
            assert db.query("SELECT TX_LIMIT FROM FBA_LOG_PENDING") == [(staging.RESERVED,)]
            assert db.scalar("SELECT SHIPPED_TO FROM FBA_LOG_PACKET_FLAG") > db.scalar("SELECT ID_TO FROM FBA_LOG_PENDING")
            db.commit()
        cur = writer.con.cursor()
        cur.execute("UPDATE STOCK SET NAME = 'renamed' WHERE ID = 2")      # not committed during the baseline
        cur.close()
    monkeypatch.setattr(baseline, "_before_snapshot", race)
    res = capture.enable(stock.config, "STOCK", baseline=True)
    assert res.data["sources"][0]["baseline"]["rows"] == 3
    writer.con.commit()
    writer.close()
    transfer.transfer(stock.config)
    assert packet_states(stock).keys() == {1}
    assert transfer.transfer(stock.config).data["sources"][0]["nothing_new"]
    with stock.connect() as db:             # the range ended with the baseline's transaction
        assert db.scalar("SELECT COUNT(*) FROM FBA_LOG_PENDING") == 0
        db.commit()
    h1 = history.history(stock.config, "STOCK", "1", limit=None)
    assert [(v["version"], v["operation"]) for v in h1["versions"]] == [(1, "baseline"), (2, "update")]
    assert h1["versions"][0]["changes"]["QTY"]["new"] == "99.000"        # the snapshot saw it
    h2 = history.history(stock.config, "STOCK", "2", limit=None)
    assert [(v["version"], v["operation"]) for v in h2["versions"]] == [(1, "baseline"), (2, "update")]
    assert h2["versions"][0]["changes"]["NAME"]["new"] == "only a name"  # it did not
    assert versions.record_state(stock.config, "STOCK", "1")["fields"]["QTY"] == "99.000"
    assert versions.record_state(stock.config, "STOCK", "2")["fields"]["NAME"] == "renamed"
    # Packet order = version order: the baseline's ids are below every captured change's, and so is
    # its time (when auditing started, not when the baseline was written).
    assert h2["versions"][0]["packet_id"] < h2["versions"][1]["packet_id"]
    assert h1["versions"][0]["at"] <= h1["versions"][1]["at"] and h2["versions"][0]["at"] <= h2["versions"][1]["at"]


def test_a_baseline_stopped_by_ctrl_c_leaves_no_ids_waiting(stock, monkeypatch):
    """Ctrl+C while the baseline writes: its transaction rolls back, and the ids reserved for it
    (claimed by that transaction) end with it; one fast check later the transfer is back on tier 1.
    Ctrl+C before the baseline's transaction began releases them too."""
    from fbaudit.progress import Progress

    class CtrlC(Progress):
        def advance(self, n=1):
            raise KeyboardInterrupt
    monkeypatch.setattr(capture, "Progress", CtrlC)
    with pytest.raises(KeyboardInterrupt):
        capture.enable(stock.config, "STOCK", baseline=True)
    monkeypatch.undo()
    with stock.connect() as db:
        (mark,) = db.query("SELECT TX_LIMIT FROM FBA_LOG_PENDING")[0]
        db.commit()
    assert mark != staging.RESERVED                  # the rolled-back transaction's own number

    def before(*_a, **_k):
        raise KeyboardInterrupt
    capture.disable(stock.config, "STOCK")
    monkeypatch.setattr(baseline, "_before_snapshot", before)
    with pytest.raises(KeyboardInterrupt):
        capture.enable(stock.config, "STOCK", baseline=True)
    monkeypatch.undo()
    with stock.connect() as db:                      # released: over at once
        assert staging.RESERVED not in [r[0] for r in db.query("SELECT TX_LIMIT FROM FBA_LOG_PENDING")]
        db.commit()
    run_sql(stock, ["UPDATE STOCK SET QTY = 1 WHERE ID = 1"])
    assert transfer.transfer(stock.config).data["packets"] >= 1
    tiers = [fast_check(stock) for _ in range(3)]
    assert tiers[-2:] == [(False, 1), (False, 1)], tiers
    with stock.connect() as db:
        assert db.scalar("SELECT COUNT(*) FROM FBA_LOG_PENDING") == 0
        db.commit()


def test_baseline_refused_on_an_audited_table_and_dry_run_changes_nothing(stock):
    dry = capture.enable(stock.config, "STOCK", baseline=True, dry_run=True)
    assert any("would log 3 existing rows as their first version" in line for line in dry.lines)
    with stock.connect() as db:
        assert not objects.trigger_exists(db, stock.prefix, 1) and packets(stock) == []
    capture.enable(stock.config, "STOCK")
    run_sql(stock, ["UPDATE STOCK SET QTY = 1 WHERE ID = 2"])
    n = len(packets(stock))
    with pytest.raises(FbauditError, match="audited already .* nothing was changed.*fbaudit disable STOCK"):
        capture.enable(stock.config, "STOCK", baseline=True)
    assert len(packets(stock)) == n
    # The way it says: disable, then enable with the baseline (after the earlier history).
    capture.disable(stock.config, "STOCK")
    capture.enable(stock.config, "STOCK", baseline=True)
    transfer.transfer(stock.config)
    h = history.history(stock.config, "STOCK", "2", limit=None)
    assert [v["operation"] for v in h["versions"]] == ["update", "baseline"]


def test_cli_enable_baseline_json(stock):
    cfg = stock.write_config()
    res = CliRunner().invoke(cli, ["--config", str(cfg), "enable", "STOCK", "--baseline", "--by", "ops", "--json"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.output)
    assert out["sources"][0]["baseline"]["rows"] == 3
    assert len(packets(stock)) == 3


def make_log_old(project):
    """The log database as an fbaudit before version numbers made it: no column, the old procedure."""
    p = project.prefix
    with project.connect(project.log) as db:
        db.con.execute_immediate(f"CREATE OR ALTER PROCEDURE {p}PACKETS_INS (SOURCE_ID INTEGER, LO BIGINT, "
                                 "HI BIGINT, BASE_ VARCHAR(1000), USER_ VARCHAR(63), PASS_ VARCHAR(255), "
                                 "ROLE_ VARCHAR(63)) RETURNS (PACKET_ID BIGINT, DATA_TABLE SMALLINT, NEW_ SMALLINT) "
                                 "AS BEGIN END")
        db.con.commit()
        db.con.execute_immediate(f"ALTER TABLE {p}LOG_PACKET DROP VERSION_NO")
        db.con.commit()


def test_version_numbers_keep_two_keys_with_the_same_hash_apart(project):
    """HASH('A0') = HASH('@@') = 1088 in Firebird (a 4-bit shift per byte): their packets share index
    entries, interleaved. The transfer's numbering and init's renumbering both keep them apart."""
    project.sql("CREATE TABLE TAG (CODE VARCHAR(10) NOT NULL PRIMARY KEY, N INTEGER)")
    capture.init(project.config)
    capture.enable(project.config, "TAG")
    with project.connect() as db:
        assert db.query("SELECT HASH('A0'), HASH('@@') FROM RDB$DATABASE")[0] == (1088, 1088)
        db.commit()
    run_sql(project, ["INSERT INTO TAG VALUES ('A0', 1)", "INSERT INTO TAG VALUES ('@@', 1)",
                      "UPDATE TAG SET N = 2 WHERE CODE = 'A0'", "UPDATE TAG SET N = 2 WHERE CODE = '@@'",
                      "UPDATE TAG SET N = 3 WHERE CODE = 'A0'"])
    transfer.transfer(project.config)

    def numbers(key):
        h = history.history(project.config, "TAG", key, limit=None)
        return [(v["version"], v["changes"]["N"]["new"]) for v in h["versions"]], h["total"]
    assert numbers("A0") == ([(1, "1"), (2, "2"), (3, "3")], 3)
    assert numbers("@@") == ([(1, "1"), (2, "2")], 2)
    make_log_old(project)
    capture.init(project.config)
    assert numbers("A0") == ([(1, "1"), (2, "2"), (3, "3")], 3)
    assert numbers("@@") == ([(1, "1"), (2, "2")], 2)


def test_an_older_log_database_gets_version_numbers_from_init(stock):
    """A log made before VERSION_NO: init adds the column, numbers the packets, and transfers go on."""
    capture.enable(stock.config, "STOCK")
    run_sql(stock, ["UPDATE STOCK SET QTY = 1 WHERE ID = 1", "UPDATE STOCK SET QTY = 2 WHERE ID = 1",
                    "UPDATE STOCK SET QTY = 3 WHERE ID = 2"])
    transfer.transfer(stock.config)
    make_log_old(stock)
    dry = capture.init(stock.config, dry_run=True)
    assert "would create LOG_PACKET.VERSION_NO" in dry.lines[0] and "would number 3 packets" in dry.lines[0]
    res = capture.init(stock.config)
    assert "LOG_PACKET.VERSION_NO" in res.data["log"]["created"] and res.data["log"]["numbered_packets"] == 3
    run_sql(stock, ["UPDATE STOCK SET QTY = 4 WHERE ID = 1"])
    transfer.transfer(stock.config)
    h = history.history(stock.config, "STOCK", "1", limit=None)
    assert [v["version"] for v in h["versions"]] == [1, 2, 3] and h["total"] == 3
    assert [v["version"] for v in history.history(stock.config, "STOCK", "2", limit=None)["versions"]] == [1]


def test_baseline_waits_for_a_transaction_that_wrote_before_the_trigger(stock):
    """A transaction that changed a row BEFORE the trigger existed (so the trigger never sees that
    change) and commits while enable runs: the baseline waits for it, so its snapshot holds the
    change. Without the wait, the change was in neither the baseline nor the log."""
    import logging
    import threading
    import time
    early = stock.connect()
    cur = early.con.cursor()
    cur.execute("UPDATE STOCK SET QTY = 7 WHERE ID = 3")            # before the trigger, not committed
    cur.close()
    out = {}
    waiting = threading.Event()            # set when the baseline says it waits (its on_wait log line)

    class Seen(logging.Handler):
        def emit(self, record):
            if "baseline waits for" in record.getMessage():
                waiting.set()
    logger = logging.getLogger("fbaudit.capture")
    seen, level = Seen(), logger.level
    logger.addHandler(seen)
    logger.setLevel(logging.INFO)

    def run():
        out["res"] = capture.enable(stock.config, "STOCK", baseline=True, max_wait=30)
    t = threading.Thread(target=run)
    t.start()
    try:
        # However long enable's setup takes (a loaded CI machine: well over a second), the
        # transaction ends only once the baseline is waiting for it, and a second after that.
        assert waiting.wait(60), "the baseline never waited for the open transaction"
        time.sleep(1.0)
        assert t.is_alive()                                          # held by the open transaction
    finally:
        logger.removeHandler(seen)
        logger.setLevel(level)
    early.con.commit()
    early.close()
    t.join(30)
    b = out["res"].data["sources"][0]["baseline"]
    assert b["rows"] == 3 and b["waited_seconds"] >= 1
    transfer.transfer(stock.config)
    h = history.history(stock.config, "STOCK", "3", limit=None)
    assert [v["operation"] for v in h["versions"]] == ["baseline"]
    assert h["versions"][0]["changes"]["QTY"]["new"] == "7.000"
    assert versions.record_state(stock.config, "STOCK", "3")["fields"]["QTY"] == "7.000"


def test_baseline_refuses_clearly_when_an_older_transaction_stays_open(stock):
    early = stock.connect()
    cur = early.con.cursor()
    cur.execute("UPDATE STOCK SET QTY = 7 WHERE ID = 3")
    cur.close()
    try:
        with pytest.raises(FbauditError, match=r"auditing is on, but the baseline was NOT taken: 1 transaction.*"
                                               r"still open after 0.5 s.*fbaudit disable STOCK"):
            capture.enable(stock.config, "STOCK", baseline=True, max_wait=0.5)
        with stock.connect() as db:
            assert objects.trigger_exists(db, stock.prefix, 1)      # auditing is on, as it says
        assert packets(stock) == []                                  # no baseline packet written
    finally:
        early.con.rollback()
        early.close()


def test_init_numbering_waits_for_a_transfer_in_flight(stock):
    """init numbers a log whose packets lack VERSION_NO while a transfer is committing packets: it
    takes the transfers' lock first, so the transfer's packet is numbered after the others (4) and
    does not keep the wrong number it came with (1)."""
    import threading
    import time
    capture.enable(stock.config, "STOCK")
    run_sql(stock, ["UPDATE STOCK SET QTY = 1 WHERE ID = 1", "UPDATE STOCK SET QTY = 2 WHERE ID = 1",
                    "UPDATE STOCK SET QTY = 3 WHERE ID = 1"])
    transfer.transfer(stock.config)
    p = stock.prefix
    run_sql(stock, [f"UPDATE {p}LOG_PACKET SET VERSION_NO = NULL"], user_spec=stock.log)   # an init interrupted
    late = stock.connect(stock.log)                       # a transfer in flight: its lock, one more packet
    cur = late.con.cursor()
    cur.execute(f"UPDATE {p}SOURCES SET LAST_TRANSFER_AT = LOCALTIMESTAMP WHERE ID = 1")
    cur.execute(f"INSERT INTO {p}LOG_PACKET (SOURCE_ID, PACKET_ID, CREATED_AT, OPERATION, NUM_TABLE, RECORD_KEY, "
                f"KEY_HASH, AUTHOR, DB_USER, CLIENT_ADDRESS, TRANSACTION_ID, CHANGE_COMMENT, TRANSFERRED_AT, "
                f"LOAD_TX, VERSION_NO) SELECT SOURCE_ID, PACKET_ID + 1000, CREATED_AT, OPERATION, NUM_TABLE, "
                f"RECORD_KEY, KEY_HASH, AUTHOR, DB_USER, CLIENT_ADDRESS, TRANSACTION_ID, CHANGE_COMMENT, "
                f"TRANSFERRED_AT, CURRENT_TRANSACTION, 1 FROM {p}LOG_PACKET WHERE RECORD_KEY = '1' "
                f"ORDER BY PACKET_ID DESC ROWS 1")
    cur.close()
    t = threading.Thread(target=capture.init, args=(stock.config,))
    t.start()
    time.sleep(1.0)
    late.con.commit()
    late.close()
    t.join(30)
    h = history.history(stock.config, "STOCK", "1", limit=None)
    assert [v["version"] for v in h["versions"]] == [1, 2, 3, 4] and h["total"] == 4


def test_init_numbering_refuses_when_a_transfer_holds_the_lock(stock, monkeypatch):
    capture.enable(stock.config, "STOCK")
    run_sql(stock, ["UPDATE STOCK SET QTY = 1 WHERE ID = 1"])
    transfer.transfer(stock.config)
    p = stock.prefix
    run_sql(stock, [f"UPDATE {p}LOG_PACKET SET VERSION_NO = NULL"], user_spec=stock.log)
    holder = stock.connect(stock.log)
    holder.execute(f"UPDATE {p}SOURCES SET LAST_TRANSFER_AT = LOCALTIMESTAMP WHERE ID = 1")
    monkeypatch.setattr(objects, "NUMBER_LOCK_WAIT", 2)
    import time
    t0 = time.monotonic()
    try:
        with pytest.raises(FbauditError, match="a transfer is running and has held its source's lock for 2 s: "
                                               "nothing was numbered"):
            capture.init(stock.config)
        assert time.monotonic() - t0 < 6
    finally:
        holder.rollback()
        holder.close()
    with stock.connect(stock.log) as db:
        assert db.scalar(f"SELECT COUNT(*) FROM {p}LOG_PACKET WHERE VERSION_NO IS NULL") == 1
        db.commit()


def test_baseline_and_revert_read_character_set_none_text_as_the_trigger_logs_it(project):
    """8-bit bytes in CHARACTER SET NONE columns (a legacy Windows-1252 ERP): the UTF-8 connection
    cannot decode them; the baseline logs the bytes as the trigger does, and revert reads the row."""
    project.sql("CREATE TABLE LEGACY (ID INTEGER NOT NULL PRIMARY KEY, CODE VARCHAR(10) CHARACTER SET NONE, "
                "FIXED CHAR(4) CHARACTER SET NONE, MEMO BLOB SUB_TYPE TEXT CHARACTER SET NONE, "
                "NAME VARCHAR(20) CHARACTER SET UTF8, RAW VARCHAR(3) CHARACTER SET OCTETS, BIN BLOB SUB_TYPE BINARY)")
    run_sql(project, ["INSERT INTO LEGACY VALUES (1, x'E974E9', x'C4D6', x'FC6265', 'one', x'00FF', x'0001FE')"])
    capture.init(project.config)
    res = capture.enable(project.config, "LEGACY", baseline=True)
    assert res.data["sources"][0]["baseline"]["rows"] == 1
    run_sql(project, ["UPDATE LEGACY SET CODE = x'E9', FIXED = x'41', MEMO = x'FF', NAME = 'two', RAW = x'01', "
                      "BIN = x'02' WHERE ID = 1"])
    transfer.transfer(project.config)
    v1, v2 = history.history(project.config, "LEGACY", "1", limit=None)["versions"]
    assert v1["operation"] == "baseline"
    # The baseline's values are what the trigger logged as the old ones in the update after it.
    assert {k: c["new"] for k, c in v1["changes"].items() if k != "ID"} == \
        {k: c["old"] for k, c in v2["changes"].items()}
    # NONE text that is no UTF-8 (no none_charset here) is shown as its bytes, x'...'; OCTETS as hex.
    assert v1["changes"]["CODE"]["new"] == "x'E974E9'" and v1["changes"]["FIXED"]["new"] == "x'C4D62020'"
    assert v1["changes"]["RAW"]["new"] == "00ff"
    # Revert reads the row (it used to fail decoding it) and writes the bytes back.
    assert versions.revert(project.config, "LEGACY", "1", to_version=1)["action"] == "update"
    with project.connect() as db:
        cur = db.con.cursor()
        cur.execute("SELECT CAST(CODE AS VARCHAR(10) CHARACTER SET OCTETS), CAST(FIXED AS CHAR(4) CHARACTER SET "
                    "OCTETS), CAST(MEMO AS BLOB SUB_TYPE BINARY), NAME, RAW, BIN FROM LEGACY")
        row = [v.read() if hasattr(v, "read") else v for v in cur.fetchone()]
        db.commit()
    assert row == [b"\xe9t\xe9", b"\xc4\xd6  ", b"\xfcbe", "one", b"\x00\xff", b"\x00\x01\xfe"]
    transfer.transfer(project.config)
    assert versions.record_state(project.config, "LEGACY", "1")["fields"]["CODE"] == "x'E974E9'"


def test_baseline_batches_wake_a_following_transfer(stock):
    """`transfer --follow` sleeps until the NEW_PACKET event: each baseline batch posts it, as the
    trigger does for a change."""
    with stock.connect() as db:
        collector = db.con.event_collector([f"{stock.prefix}NEW_PACKET"])
        collector.begin()
        try:
            collector.flush()
            capture.enable(stock.config, "STOCK", baseline=True)
            got = collector.wait(5)
        finally:
            collector.close()
    assert got.get(f"{stock.prefix}NEW_PACKET", 0) >= 1


def test_a_database_error_in_the_middle_says_auditing_is_on_and_what_was_done(stock, monkeypatch):
    """The batch's write waits for a lock another transaction holds (here: the transfer's fast-check
    row, uncommitted) and times out: the message says auditing is on, how many rows got their
    baseline, and how to take it again."""
    holder = stock.connect()
    monkeypatch.setattr(baseline, "WRITE_LOCK_TIMEOUT", 1)
    def hold_the_flag_row():
        holder.execute(f"UPDATE {stock.prefix}LOG_PACKET_FLAG SET SEEN_ID = SEEN_ID")
    monkeypatch.setattr(baseline, "_before_snapshot", hold_the_flag_row)
    try:
        with pytest.raises(FbauditError, match=r"(?s)STOCK: auditing is on, but the baseline stopped after 0 "
                                               r"of about 3 rows.*fbaudit disable STOCK.*holds a lock"):
            capture.enable(stock.config, "STOCK", baseline=True)
    finally:
        holder.rollback()
        holder.close()
    with stock.connect() as db:
        assert objects.trigger_exists(db, stock.prefix, 1)
    assert packets(stock) == []


def test_one_row_baseline_says_its_first_version(project):
    project.sql("CREATE TABLE ONE (ID INTEGER NOT NULL PRIMARY KEY)", "INSERT INTO ONE VALUES (1)")
    capture.init(project.config)
    res = capture.enable(project.config, "ONE", baseline=True)
    assert "baseline: 1 existing row logged as its first version" in res.lines[-1]
