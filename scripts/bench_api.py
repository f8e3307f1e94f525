#!/usr/bin/env python3
"""Speed of the history API: the first page of one record's history in a big log database.

Issue 5's target: a record with --versions versions (10,000) in a log database
of --field-rows field rows (5M), first page of its history (20 versions,
newest first) with p95 under 50 ms (the article accepted 200 ms).

The log database is made directly (the log schema from `ddl/log_init.sql`,
then EXECUTE BLOCKs writing packets and field rows as the transfer would:
KEY_HASH = HASH(RECORD_KEY)), so building 5M field rows takes minutes, not
an afternoon of transfers: --packets packets over --records records of
table ITEM, 5 field rows each (so field rows = 5 x packets), plus one record
(ITEM 'HOT') with --versions versions.

Timed, each --requests times after 5 warm-up calls:
  library   fbaudit.history.history(config, 'ITEM', 'HOT', limit=20, newest_first=True)
  http      GET /api/records/ITEM/HOT/versions (uvicorn in this process, urllib client, token)
  search    GET /api/versions?table=ITEM&limit=20 (newest packets of the table)
  version_newest  GET /api/records/ITEM/HOT/versions/10000 (its changes and the record after it:
            no insert in its history, so the fold reads all 10,000 versions' field rows)
  transactions    GET /api/transactions?limit=20 (the newest transactions, PER_TX packets each)
  transactions_author  GET /api/transactions?author=user7&limit=20 (a filter: walks until 20 match)
  transaction     GET /api/transactions/bench/{tx} (one transaction whole: its changes and field rows)
  search_value    GET /api/versions?field=PRICE&value=new value N (one match, through LOG_NEW_VALUE)
  search_value_common  GET /api/versions?field=PRICE&value=0 (one packet in COMMON_EVERY: newest 20 of 2,000)
  search_prefix   GET /api/versions?field=NAME&value=new value N&prefix=true (about 11 matches)
  search_old_author    the old or new value of QTY, by one author

Usage:
  .venvs/fb5/bin/python scripts/bench_api.py                       # 5M field rows, ~5 min to build
  .venvs/fb5/bin/python scripts/bench_api.py --field-rows 500000 --json out.json
  .venvs/fb5/bin/python scripts/bench_api.py --dir /tmp/apibench --keep    # reuse the database next time
"""
from __future__ import annotations

import argparse
import json
import shutil
import socket
import statistics
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

from benchlib import machine_info, say, write_results

FIELDS = 5
PER_TX = 4              # packets per source transaction (consecutive packet ids)
TOKEN = "bench-token-0123456789"
COMMON_EVERY = 500      # PRICE = 0 in one packet of this many (2,000 of 1M: the search's common value)


def pct(values: list[float], p: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, int(round(p / 100 * (len(s) - 1))))]


def build(log_path: Path, packets: int, records: int, versions: int) -> None:
    from firebird.driver import create_database
    from fbaudit import templates
    from fbaudit.db import apply_plan, open_database
    from fbaudit.config import DatabaseSpec
    con = create_database(str(log_path), user="SYSDBA", charset="UTF8")
    con.close()
    spec = DatabaseSpec("log", str(log_path))
    with open_database(spec) as db:
        apply_plan(db, templates.render("log_init", P="FBA_"))
        db.execute("INSERT INTO FBA_SOURCES (ID, NAME, DATABASE_DSN, ADDED_AT) VALUES (1, 'bench', 'x', LOCALTIMESTAMP)")
        db.execute("INSERT INTO FBA_DICT_TABLES (SOURCE_ID, NUM_TABLE, TABLE_NAME, KEY_COLUMNS) "
                   "VALUES (1, 1, 'ITEM', '[\"ID\"]')")
        for n, name in enumerate(("ID", "NAME", "QTY", "PRICE", "NOTE"), 1):
            db.execute("INSERT INTO FBA_DICT_FIELDS (SOURCE_ID, NUM_TABLE, NUM_POLE, FIELD_NAME, FIELD_TYPE, "
                       "FIELD_KIND) VALUES (1, 1, ?, ?, 'VARCHAR(40)', 'text')", (n, name))
        db.commit()
        chunk = 20000
        hot_every = max(1, packets // versions)
        t0 = time.perf_counter()
        for first in range(1, packets + 1, chunk):
            last = min(packets, first + chunk - 1)
            db.con.execute_immediate(
                f"EXECUTE BLOCK AS DECLARE i BIGINT = {first - 1}; DECLARE k VARCHAR(20); DECLARE f INTEGER; "
                f"BEGIN WHILE (i < {last}) DO BEGIN i = i + 1; "
                f"k = IIF(MOD(i, {hot_every}) = 0, 'HOT', CAST(MOD(i * 7919, {records}) AS VARCHAR(20))); "
                "INSERT INTO FBA_LOG_PACKET (SOURCE_ID, PACKET_ID, CREATED_AT, OPERATION, NUM_TABLE, RECORD_KEY, "
                "KEY_HASH, AUTHOR, DB_USER, TRANSACTION_ID, TRANSFERRED_AT, LOAD_TX) VALUES (1, :i, "
                "DATEADD(:i / 10 SECOND TO TIMESTAMP '2026-01-01 00:00:00'), 2, 1, :k, HASH(:k), "
                f"'user' || MOD(:i, 50), 'SYSDBA', :i / {PER_TX}, LOCALTIMESTAMP, 1); "
                f"f = 0; WHILE (f < {FIELDS}) DO BEGIN f = f + 1; "
                "INSERT INTO FBA_LOG (SOURCE_ID, PACKET_ID, NUM_POLE, BLOB_OLD, BLOB_NEW) VALUES (1, :i, :f, "
                "'old value ' || :i, 'new value ' || :i); END END END")
            db.con.commit()
            if (last // chunk) % 10 == 0 or last == packets:
                say(f"  {last} packets, {last * FIELDS} field rows ({time.perf_counter() - t0:.0f} s)")
        hot = db.scalar("SELECT COUNT(*) FROM FBA_LOG_PACKET WHERE SOURCE_ID = 1 AND NUM_TABLE = 1 "
                        "AND KEY_HASH = HASH('HOT') AND RECORD_KEY = 'HOT'")
        # A common value for the search: PRICE set to 0 in one packet of every COMMON_EVERY.
        db.execute(f"UPDATE FBA_LOG SET BLOB_NEW = '0' WHERE NUM_POLE = 4 AND MOD(PACKET_ID, {COMMON_EVERY}) = 0")
        db.commit()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--field-rows", type=int, default=5_000_000, help="field rows in the log [5000000]")
    ap.add_argument("--versions", type=int, default=10_000, help="versions of the record timed [10000]")
    ap.add_argument("--records", type=int, default=100_000, help="other records the packets spread over [100000]")
    ap.add_argument("--requests", type=int, default=200, help="timed calls per kind [200]")
    ap.add_argument("--dir", help="work folder (kept with --keep; an existing log.fdb there is reused)")
    ap.add_argument("--keep", action="store_true")
    ap.add_argument("--json", metavar="FILE")
    args = ap.parse_args()

    from fbaudit import history
    from fbaudit import api
    from fbaudit.config import Config, DatabaseSpec, SourceSpec
    from fbaudit.runtime import load_client
    import uvicorn

    load_client()
    work = Path(args.dir) if args.dir else Path(tempfile.mkdtemp(prefix="fbaudit-bench-api-"))
    work.mkdir(parents=True, exist_ok=True)
    log_path = work / "log.fdb"
    packets = args.field_rows // FIELDS
    try:
        if not log_path.exists():
            say(f"building {log_path}: {packets} packets x {FIELDS} field rows")
            build(log_path, packets, args.records, args.versions)
        # The packets were written without version numbers, like a log database of an older
        # fbaudit: number them as `fbaudit init` does (timed: the one-off cost of that upgrade).
        from fbaudit.objects import number_versions
        from fbaudit.config import DatabaseSpec as _Spec
        from fbaudit.db import open_database as _open_db
        with _open_db(_Spec("log", str(log_path))) as db:
            t1 = time.perf_counter()
            numbered = number_versions(db, "FBA_")
            built = {"numbered": numbered, "number_seconds": round(time.perf_counter() - t1, 1)}
        if numbered:
            say(f"numbered {numbered} packets (init's upgrade of an older log) in {built['number_seconds']} s")
        config = Config(path=work / "x.yaml", log=DatabaseSpec("log", str(log_path)),
                        sources=(SourceSpec("bench", str(work / "none.fdb"), registry=work / "t.yaml"),))
        results: dict = {"machine": machine_info(), "field_rows": args.field_rows, "packets": packets,
                         "requests": args.requests, "timings_ms": {}, "upgrade": built}

        def timed(name: str, fn) -> None:
            for _ in range(5):
                fn()
            ms = []
            for _ in range(args.requests):
                t0 = time.perf_counter()
                fn()
                ms.append((time.perf_counter() - t0) * 1000)
            results["timings_ms"][name] = {"p50": round(statistics.median(ms), 2), "p95": round(pct(ms, 95), 2),
                                           "p99": round(pct(ms, 99), 2), "max": round(max(ms), 2)}
            say(f"{name}: p50 {statistics.median(ms):.1f} ms, p95 {pct(ms, 95):.1f} ms, max {max(ms):.1f} ms")

        first = history.history(config, "ITEM", "HOT", limit=20, newest_first=True)
        results["hot_versions"] = first["total"]
        assert len(first["versions"]) == 20 and first["versions"][0]["version"] == first["total"]
        timed("library", lambda: history.history(config, "ITEM", "HOT", limit=20, newest_first=True))
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        srv = uvicorn.Server(uvicorn.Config(api.create_app(config, token=TOKEN), host="127.0.0.1", port=port,
                                            log_level="warning"))
        threading.Thread(target=srv.run, daemon=True).start()
        while not srv.started:
            time.sleep(0.05)

        def get(path: str) -> dict:
            req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", headers={"Authorization": f"Bearer {TOKEN}"})
            with urllib.request.urlopen(req, timeout=30) as res:
                return json.loads(res.read())
        body = get("/api/records/ITEM/HOT/versions")
        assert body["success"] and body["data"]["pagination"]["total"] == results["hot_versions"]
        timed("http", lambda: get("/api/records/ITEM/HOT/versions"))
        timed("search", lambda: get("/api/versions?table=ITEM&limit=20"))
        newest = results["hot_versions"]
        timed("version_newest", lambda: get(f"/api/records/ITEM/HOT/versions/{newest}"))
        page = get("/api/transactions?limit=20")["data"]
        assert len(page["transactions"]) == 20 and page["transactions"][0]["changes"] >= 1
        timed("transactions", lambda: get("/api/transactions?limit=20"))
        timed("transactions_author", lambda: get("/api/transactions?author=user7&limit=20"))
        tx = page["transactions"][5]["transaction_id"]
        timed("transaction", lambda: get(f"/api/transactions/bench/{tx}"))
        # Search by value (`fbaudit search --field --value`, the value indexes): one match, a common
        # value (a sort of its matches for the newest page), a prefix, the old side with an author.
        one = packets // 2 + 1
        found = get(f"/api/versions?field=PRICE&value=new%20value%20{one}")["data"]
        assert [i["packet_id"] for i in found["items"]] == [one], found
        timed("search_value", lambda: get(f"/api/versions?field=PRICE&value=new%20value%20{one}"))
        common = get("/api/versions?field=PRICE&value=0&limit=20")["data"]
        assert len(common["items"]) == 20 and common["pagination"]["total"] == packets // COMMON_EVERY, common
        results["common_matches"] = common["pagination"]["total"]
        timed("search_value_common", lambda: get("/api/versions?field=PRICE&value=0&limit=20"))
        stem = str(packets // 100)
        assert get(f"/api/versions?field=NAME&value=new%20value%20{stem}&prefix=true")["data"]["items"]
        timed("search_prefix", lambda: get(f"/api/versions?field=NAME&value=new%20value%20{stem}&prefix=true"))
        timed("search_old_author", lambda: get(f"/api/versions?field=QTY&value=old%20value%20{one}&side=either"
                                               f"&author=user{one % 50}"))
        srv.should_exit = True
        from fbaudit.db import open_database
        with open_database(config.log) as db:
            results["field_rows_in_log"] = db.scalar("SELECT COUNT(*) FROM FBA_LOG")
            results["firebird"] = db.version
            db.commit()
        write_results(results, args.json)
        return 0
    finally:
        if not args.keep and not args.dir:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
