"""fbaudit prune: old history leaves the log database, in batches, and nothing else does."""
from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from fbaudit import versions, capture, history, prune, transfer
from fbaudit.cli import cli
from fbaudit.db import open_database
from fbaudit.errors import FbauditError

from helpers import run_sql


@pytest.fixture
def shipped(project):
    """ITEM 1 with 6 versions in the log: 4 dated 2025-03-01, 2 of today."""
    project.sql("CREATE TABLE ITEM (ID INTEGER NOT NULL PRIMARY KEY, NAME VARCHAR(40), QTY INTEGER)")
    capture.init(project.config)
    capture.enable(project.config, "ITEM")
    run_sql(project, ["INSERT INTO ITEM VALUES (1, 'a', 0)"] + [f"UPDATE ITEM SET QTY = {i} WHERE ID = 1"
                                                              for i in range(1, 6)])
    transfer.transfer(project.config)
    with open_database(project.log) as db:
        db.execute("UPDATE FBA_LOG_PACKET SET CREATED_AT = TIMESTAMP '2025-03-01 10:00:00' WHERE PACKET_ID <= 4")
        db.commit()
    return project


def counts(project):
    with open_database(project.log) as db:
        out = db.query("SELECT (SELECT COUNT(*) FROM FBA_LOG_PACKET), (SELECT COUNT(*) FROM FBA_LOG) FROM RDB$DATABASE")
        db.commit()
    return out[0]


def test_prune_removes_old_packets_with_their_field_rows_in_batches(shipped):
    assert counts(shipped) == (6, 8)                       # the insert logged 3 fields, each update 1
    dry = prune.prune(shipped.config, before="2026-01-01", dry_run=True)
    assert (dry.data["packets"], dry.data["field_rows"]) == (4, 6) and counts(shipped) == (6, 8)
    res = prune.prune(shipped.config, before="2026-01-01", batch=3)
    assert (res.data["packets"], res.data["field_rows"]) == (4, 6)
    assert "main: removed 4 packets and 6 field rows created before 2026-01-01 00:00:00" in res.lines[0]
    assert counts(shipped) == (2, 2)
    h = history.history(shipped.config, "ITEM", "1", limit=None)
    # Version numbers are the log's, not positions: after the prune the record keeps versions 5 and 6.
    assert [v["version"] for v in h["versions"]] == [5, 6] and h["versions"][0]["changes"]["QTY"]["new"] == "4"
    assert (h["first_version"], h["total"]) == (5, 2)
    with pytest.raises(FbauditError, match="versions 5 to 6 \\(older ones were pruned\\)"):
        versions.record_state(shipped.config, "ITEM", "1", 4)
    assert versions.record_state(shipped.config, "ITEM", "1", 6)["complete"] is False
    again = prune.prune(shipped.config, before="2026-01-01")
    assert again.data["packets"] == 0


def test_prune_refuses_bad_input_and_changes_nothing(shipped):
    with pytest.raises(FbauditError, match="in the future"):
        prune.prune(shipped.config, before="2999-01-01")
    with pytest.raises(FbauditError, match="neither a date"):
        prune.prune(shipped.config, before="last spring")
    with pytest.raises(FbauditError, match="no source named 'nope'"):
        prune.prune(shipped.config, before="30d", source="nope")
    assert counts(shipped) == (6, 8)


def test_prune_command_by_age_json_and_progress(shipped):
    cfg = shipped.write_config()
    res = CliRunner().invoke(cli, ["--config", str(cfg), "prune", "--before", "200d", "--json"])
    assert res.exit_code == 0, res.output
    data = json.loads(res.stdout)
    assert data["sources"][0]["packets"] == 4 and data["success"] is True
    assert "[PRUNE] main: removed 4 packets" in res.stderr
    assert counts(shipped) == (2, 2)


def stamp(project, when, ids):
    with open_database(project.log) as db:
        db.execute(f"UPDATE FBA_LOG_PACKET SET CREATED_AT = TIMESTAMP '{when}' "
                   f"WHERE PACKET_ID IN ({', '.join(map(str, ids))})")
        db.commit()


def test_prune_never_leaves_a_hole_inside_a_history(shipped):
    """CREATED_AT is not in packet order after a DST fall-back or a clock step: here packet 2 says
    2026 while 3 and 4 say 2025. prune stops at the first packet at or after the cut-off, so the
    record keeps versions 2 to 6 with nothing missing between (by time alone, 3 and 4 went too)."""
    stamp(shipped, "2026-06-01 10:00:00", [2])
    dry = prune.prune(shipped.config, before="2026-01-01", dry_run=True)
    assert (dry.data["packets"], dry.data["field_rows"]) == (1, 3) and counts(shipped) == (6, 8)
    res = prune.prune(shipped.config, before="2026-01-01")
    assert res.data["packets"] == 1
    h = history.history(shipped.config, "ITEM", "1", limit=None)
    assert [v["version"] for v in h["versions"]] == [2, 3, 4, 5, 6]
    assert versions.record_state(shipped.config, "ITEM", "1", 4)["fields"]["QTY"] == "3"


def test_prune_keeps_a_records_newest_packet_so_its_numbers_go_on(shipped):
    run_sql(shipped, ["INSERT INTO ITEM VALUES (2, 'b', 0)", "UPDATE ITEM SET QTY = 1 WHERE ID = 2"])
    transfer.transfer(shipped.config)
    stamp(shipped, "2025-03-01 10:00:00", [7, 8])      # ITEM 2's whole history is old
    # ITEM 1's packets 5 and 6 are newer: the prefix before them goes; ITEM 2 comes after them.
    stamp(shipped, "2025-03-01 10:00:00", [5, 6])
    res = prune.prune(shipped.config, before="2026-01-01")
    assert (res.data["packets"], res.data["kept_newest"]) == (6, 2)
    assert "kept 2 older packets, each the newest of its record" in res.lines[0]
    assert [v["version"] for v in history.history(shipped.config, "ITEM", "2", limit=None)["versions"]] == [2]
    run_sql(shipped, ["UPDATE ITEM SET QTY = 2 WHERE ID = 2"])
    transfer.transfer(shipped.config)
    assert [v["version"] for v in history.history(shipped.config, "ITEM", "2", limit=None)["versions"]] == [2, 3]
    # Without keeping them, everything old goes, and a record's numbering starts again.
    stamp(shipped, "2025-03-01 10:00:00", [9])
    res = prune.prune(shipped.config, before="2026-01-01", keep_newest=False)
    assert res.data["packets"] == 3 and counts(shipped) == (0, 0)


def test_history_pages_do_not_overlap_where_a_version_is_missing(shipped):
    """A log pruned by time alone (as fbaudit did before it went by packet order) can miss a version in the middle;
    pages are ranges of version numbers, so none is shown twice."""
    with open_database(shipped.log) as db:
        db.execute("DELETE FROM FBA_LOG WHERE PACKET_ID = 3")
        db.execute("DELETE FROM FBA_LOG_PACKET WHERE PACKET_ID = 3")
        db.commit()

    def page(offset, newest_first=False):
        h = history.history(shipped.config, "ITEM", "1", limit=2, offset=offset, newest_first=newest_first)
        return [v["version"] for v in h["versions"]]
    assert [page(0), page(2), page(4)] == [[1, 2], [4], [5, 6]]
    assert [page(0, True), page(2, True), page(4, True)] == [[6, 5], [4], [2, 1]]
