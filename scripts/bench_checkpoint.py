#!/usr/bin/env python3
"""Checkpoints (fbaudit.checkpoint): create and restore of up to 1M rows across
8 tables; rows per second and peak memory by size (memory must stay flat as
the rows grow).

Eight ERP-like tables, foreign keys REGION <- CUSTOMER <- ORDERS <- ORDER_LINE
-> PRODUCT, and three independent tables PRICE_HISTORY, STOCK_MOVE, NOTE.
Column types: INTEGER/BIGINT/SMALLINT keys (ORDER_LINE: a two-column key;
NOTE: an identity column, so a sequence is stored and restored), VARCHAR and
CHAR with non-ASCII text (Latin, Greek, Cyrillic, an emoji), NUMERIC(18,2) and
others, DOUBLE PRECISION, DATE, TIMESTAMP, BOOLEAN, NULLs, and a short text
BLOB (NOTE.BODY, ~110 characters). The tables are not audited (no fbaudit
init): no audit triggers, checkpoint.create(config, tables=[all 8]).

A size is the total number of rows over the 8 tables, split as: ORDER_LINE
40%, STOCK_MOVE 16%, ORDERS 15%, PRICE_HISTORY 14%, CUSTOMER 6%, PRODUCT 3%,
REGION 0.05% (at least 8), NOTE the rest (~6%).

For each of --sizes, in a fresh database (created for it, dropped after it):

  fill     EXECUTE BLOCKs of --fill-chunk rows per transaction (not part of the
           measurement), then an aggregate fingerprint of every table (row count,
           sums of numbers, hashes of text, counts of NULLs)
  measure  in a FRESH process (forked from a small multiprocessing forkserver, so
           the peak memory is this size's alone: a process started with exec from
           this script's big process would inherit its ru_maxrss):
           one attachment to load the engine (baseline RSS), then
             create   checkpoint.create(config, tables=[...8], description=...)
             restore  checkpoint.restore(config, id, auto_backup=False, audit="rows")
                      (its time includes verify(), which reads and decodes the
                      whole file first; reported separately as well)
           then the row count of every table must equal the checkpoint's, and the
           fingerprints after the restore must equal the ones after the fill.
           Memory: resource.getrusage(RUSAGE_SELF).ru_maxrss (KB) of that process;
           embedded, it includes the Firebird engine and its page cache, which run
           in-process; with --target server only the client (the server's own
           memory is reported apart, VmRSS of its processes, when visible). The
           peaks of the first attachment, of create and of restore are told apart
           by resetting the process's peak RSS (/proc/self/clear_refs) after each;
           "peak RSS" is the largest of the three, which is what the whole
           process's ru_maxrss would be without the resets.
  heap     Python heap peak (tracemalloc), in one more fresh process at the
           smallest and the largest size only (tracemalloc slows Python down a
           lot, so these passes are not timed); with --tracemalloc instead in the
           measuring pass of every size (its times then include the overhead);
           --no-heap skips it.

The checkpoint log lines (logger fbaudit.checkpoint, INFO, one "Progress:" line
per 100 rows) are shown with --verbose only; otherwise WARNING and above (each
restore logs its 4-line "This will OVERWRITE" banner at WARNING).

Run time (2 cores, fbaudit f674547 era): the default sizes take ~18 minutes
embedded (fb5), ~15 of them the two untimed tracemalloc passes (--no-heap
skips them); restore ran ~12,000 rows/s embedded (docs/performance.md,
"Checkpoints").

Usage:
  .venvs/fb5/bin/python scripts/bench_checkpoint.py --snapshot HEAD --json checkpoint-fb5.json
  .venvs/fb3/bin/python scripts/bench_checkpoint.py --snapshot HEAD --target server --json checkpoint-fb3-server.json
  .venvs/fb5/bin/python scripts/bench_checkpoint.py --sizes 20000,40000          # smoke run
"""
from __future__ import annotations

import argparse
import datetime as _dt
import json
import multiprocessing as mp
import os
import resource
import shutil
import sys
import time
import traceback
from pathlib import Path

import benchlib       # scripts/benchlib.py; like this script, it imports fbaudit only inside functions
from benchlib import PREFIX, fbaudit_revision, machine_info, say

DEFAULT_SIZES = "125000,250000,500000,1000000"

# --------------------------------------------------------------------------
# The tables
# --------------------------------------------------------------------------
# Share of the total rows per table (NOTE takes the rest); REGION is at least MIN_REGIONS.
SHARES = {"PRODUCT": 0.03, "CUSTOMER": 0.06, "ORDERS": 0.15, "ORDER_LINE": 0.40, "PRICE_HISTORY": 0.14,
          "STOCK_MOVE": 0.16}
REGION_SHARE, MIN_REGIONS = 0.0005, 8
FILL_ORDER = ("REGION", "PRODUCT", "CUSTOMER", "ORDERS", "ORDER_LINE", "PRICE_HISTORY", "STOCK_MOVE", "NOTE")
# The order handed to checkpoint.create(): alphabetical (like --all), so the restore must work out
# the insert order from the foreign keys itself.
TABLES = tuple(sorted(FILL_ORDER))

DDL = (
    "CREATE TABLE REGION (ID INTEGER NOT NULL PRIMARY KEY, CODE VARCHAR(8) NOT NULL, NAME VARCHAR(60) NOT NULL, "
    "COUNTRY CHAR(2), ACTIVE BOOLEAN NOT NULL)",
    "CREATE TABLE PRODUCT (ID INTEGER NOT NULL PRIMARY KEY, SKU VARCHAR(20) NOT NULL, NAME VARCHAR(120) NOT NULL, "
    "UNIT_PRICE NUMERIC(18,2) NOT NULL, WEIGHT_KG DOUBLE PRECISION, DISCONTINUED BOOLEAN, CREATED_AT TIMESTAMP)",
    "CREATE TABLE CUSTOMER (ID BIGINT NOT NULL PRIMARY KEY, REGION_ID INTEGER NOT NULL REFERENCES REGION (ID), "
    "NAME VARCHAR(100) NOT NULL, CITY VARCHAR(60), EMAIL VARCHAR(120), CREDIT_LIMIT NUMERIC(18,2), "
    "CREATED_ON DATE, IS_VIP BOOLEAN)",
    "CREATE TABLE ORDERS (ID BIGINT NOT NULL PRIMARY KEY, CUSTOMER_ID BIGINT NOT NULL REFERENCES CUSTOMER (ID), "
    "DOC_NO VARCHAR(20) NOT NULL, ORDER_DATE DATE NOT NULL, STATUS VARCHAR(12), TOTAL NUMERIC(18,2), "
    "CREATED_AT TIMESTAMP, PAID BOOLEAN)",
    "CREATE TABLE ORDER_LINE (ORDER_ID BIGINT NOT NULL REFERENCES ORDERS (ID), LINE_NO SMALLINT NOT NULL, "
    "PRODUCT_ID INTEGER NOT NULL REFERENCES PRODUCT (ID), DESCRIPTION VARCHAR(80), QTY NUMERIC(12,3), "
    "PRICE NUMERIC(18,2), DISCOUNT_PCT NUMERIC(5,2), PRIMARY KEY (ORDER_ID, LINE_NO))",
    "CREATE TABLE PRICE_HISTORY (ID BIGINT NOT NULL PRIMARY KEY, PRODUCT_SKU VARCHAR(20) NOT NULL, "
    "VALID_FROM DATE NOT NULL, VALID_TO DATE, PRICE NUMERIC(18,2), CURRENCY CHAR(3), CHANGED_AT TIMESTAMP, "
    "CHANGED_BY VARCHAR(40))",
    "CREATE TABLE STOCK_MOVE (ID BIGINT NOT NULL PRIMARY KEY, WAREHOUSE VARCHAR(30), PRODUCT_REF INTEGER, "
    "QTY NUMERIC(12,3), MOVED_AT TIMESTAMP, REASON VARCHAR(60), BOOKED BOOLEAN)",
    "CREATE TABLE NOTE (ID INTEGER GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY, SUBJECT VARCHAR(80), "
    "BODY BLOB SUB_TYPE TEXT, CREATED_AT TIMESTAMP, AUTHOR VARCHAR(40))",
)

# One INSERT per table, row number :i (BIGINT); {n_region} etc. are the table sizes.
INSERTS = {
    "REGION": (
        "INSERT INTO REGION (ID, CODE, NAME, COUNTRY, ACTIVE) VALUES (:i, 'R' || LPAD(:i, 5, '0'), "
        "DECODE(MOD(:i, 6), 0, 'Bayern Süd', 1, 'Île-de-France', 2, 'Śląsk', 3, 'Κεντρική Μακεδονία', "
        "4, 'Kraków–Małopolska', 'Østlandet') || ' ' || :i, "
        "DECODE(MOD(:i, 6), 0, 'DE', 1, 'FR', 2, 'PL', 3, 'GR', 4, 'PL', 'NO'), IIF(MOD(:i, 7) = 0, FALSE, TRUE))"),
    "PRODUCT": (
        "INSERT INTO PRODUCT (ID, SKU, NAME, UNIT_PRICE, WEIGHT_KG, DISCONTINUED, CREATED_AT) VALUES (:i, "
        "'SKU-' || LPAD(:i, 8, '0'), DECODE(MOD(:i, 4), 0, 'Schraube M8 × 40 verzinkt', "
        "1, 'Kabel 3 × 1,5 mm² (50 m)', 2, 'Œillet inox Ø 12 mm', 'Подшипник 6204-2RS') || ' v' || MOD(:i, 10), "
        "(MOD(:i * 31, 99999) + 1) * 0.01, IIF(MOD(:i, 10) = 0, NULL, CAST(MOD(:i, 5000) + 1 AS DOUBLE PRECISION) "
        "/ 1000), IIF(MOD(:i, 13) = 0, TRUE, FALSE), "
        "DATEADD(MOD(:i, 1000) MILLISECOND TO DATEADD(:i * 37 SECOND TO TIMESTAMP '2020-01-01 00:00:00')))"),
    "CUSTOMER": (
        "INSERT INTO CUSTOMER (ID, REGION_ID, NAME, CITY, EMAIL, CREDIT_LIMIT, CREATED_ON, IS_VIP) VALUES (:i, "
        "MOD(:i, {n_region}) + 1, DECODE(MOD(:i, 5), 0, 'Müller & Söhne GmbH', 1, 'Łukasz Wójcik Sp. z o.o.', "
        "2, 'Ærøskøbing Handel ApS', 3, 'Café Zürich AG', 'Δημήτρης Παπαδόπουλος ΑΕ') || ' #' || :i, "
        "DECODE(MOD(:i, 4), 0, 'München', 1, 'Łódź', 2, 'Göteborg', 'Θεσσαλονίκη'), "
        "IIF(MOD(:i, 11) = 0, NULL, 'einkauf.' || :i || '@kunde-beispiel.de'), MOD(:i * 7919, 100000000) * 0.01, "
        "DATE '2015-01-01' + MOD(:i, 3650), IIF(MOD(:i, 17) = 0, TRUE, FALSE))"),
    "ORDERS": (
        "INSERT INTO ORDERS (ID, CUSTOMER_ID, DOC_NO, ORDER_DATE, STATUS, TOTAL, CREATED_AT, PAID) VALUES (:i, "
        "MOD(:i * 7, {n_customer}) + 1, 'AB-' || LPAD(:i, 10, '0'), DATE '2024-01-01' + MOD(:i, 730), "
        "DECODE(MOD(:i, 4), 0, 'offen', 1, 'geliefert', 2, 'storniert', 'bezahlt'), "
        "MOD(:i * 7919, 50000000) * 0.01, DATEADD(:i * 13 SECOND TO TIMESTAMP '2024-01-01 08:00:00'), "
        "IIF(MOD(:i, 3) = 0, TRUE, FALSE))"),
    "ORDER_LINE": (
        "INSERT INTO ORDER_LINE (ORDER_ID, LINE_NO, PRODUCT_ID, DESCRIPTION, QTY, PRICE, DISCOUNT_PCT) VALUES ("
        "MOD(:i - 1, {n_orders}) + 1, (:i - 1) / {n_orders} + 1, MOD(:i * 13, {n_product}) + 1, "
        "'Pos. ' || ((:i - 1) / {n_orders} + 1) || ' – Menge in Stück, Lieferung frei Haus', "
        "(MOD(:i, 50000) + 1) * 0.001, (MOD(:i * 31, 99999) + 1) * 0.01, IIF(MOD(:i, 9) = 0, 5.5, NULL))"),
    "PRICE_HISTORY": (
        "INSERT INTO PRICE_HISTORY (ID, PRODUCT_SKU, VALID_FROM, VALID_TO, PRICE, CURRENCY, CHANGED_AT, CHANGED_BY) "
        "VALUES (:i, 'SKU-' || LPAD(MOD(:i, {n_product}) + 1, 8, '0'), DATE '2020-01-01' + MOD(:i, 2000), "
        "IIF(MOD(:i, 4) = 0, NULL, DATE '2020-01-31' + MOD(:i, 2000)), (MOD(:i * 17, 99999) + 1) * 0.01, "
        "DECODE(MOD(:i, 3), 0, 'EUR', 1, 'PLN', 'SEK'), DATEADD(:i * 11 SECOND TO TIMESTAMP '2020-01-01 06:00:00'), "
        "DECODE(MOD(:i, 3), 0, 'jürgen.weiß', 1, 'zoë.łaska', 'søren.ærø'))"),
    "STOCK_MOVE": (
        "INSERT INTO STOCK_MOVE (ID, WAREHOUSE, PRODUCT_REF, QTY, MOVED_AT, REASON, BOOKED) VALUES (:i, "
        "DECODE(MOD(:i, 3), 0, 'Lager Nord', 1, 'Zentrallager Süd', 'Außenlager Łódź'), MOD(:i, {n_product}) + 1, "
        "(MOD(:i, 2001) - 1000) * 0.5, DATEADD(:i * 7 SECOND TO TIMESTAMP '2023-01-01 00:00:00'), "
        "DECODE(MOD(:i, 4), 0, 'Wareneingang', 1, 'Umlagerung Lager Nord → Süd', 2, 'Inventurdifferenz', "
        "'Retoure – beschädigt'), IIF(MOD(:i, 5) = 0, FALSE, TRUE))"),
    "NOTE": (   # ID from the identity column
        "INSERT INTO NOTE (SUBJECT, BODY, CREATED_AT, AUTHOR) VALUES ('Rückruf Kunde ' || :i, "
        "'Rückruf des Kunden bzgl. Lieferung ' || :i || ': Ware wurde beschädigt geliefert – bitte Gutschrift "
        "prüfen. 🚚 Ελέγξτε το απόθεμα.', DATEADD(:i * 3 SECOND TO TIMESTAMP '2025-01-01 09:00:00'), "
        "DECODE(MOD(:i, 3), 0, 'Jürgen', 1, 'Zoë', 'Søren'))"),
}

# Fingerprint of a table: its row count, then one aggregate per column by kind, each of
# which must come back unchanged after the restore.
COLUMNS = {
    "REGION": [("ID", "num"), ("CODE", "text"), ("NAME", "text"), ("COUNTRY", "text"), ("ACTIVE", "bool")],
    "PRODUCT": [("ID", "num"), ("SKU", "text"), ("NAME", "text"), ("UNIT_PRICE", "num"), ("WEIGHT_KG", "double"),
                ("DISCONTINUED", "bool"), ("CREATED_AT", "ts")],
    "CUSTOMER": [("ID", "num"), ("REGION_ID", "num"), ("NAME", "text"), ("CITY", "text"), ("EMAIL", "text"),
                 ("CREDIT_LIMIT", "num"), ("CREATED_ON", "date"), ("IS_VIP", "bool")],
    "ORDERS": [("ID", "num"), ("CUSTOMER_ID", "num"), ("DOC_NO", "text"), ("ORDER_DATE", "date"),
               ("STATUS", "text"), ("TOTAL", "num"), ("CREATED_AT", "ts"), ("PAID", "bool")],
    "ORDER_LINE": [("ORDER_ID", "num"), ("LINE_NO", "num"), ("PRODUCT_ID", "num"), ("DESCRIPTION", "text"),
                   ("QTY", "num"), ("PRICE", "num"), ("DISCOUNT_PCT", "num")],
    "PRICE_HISTORY": [("ID", "num"), ("PRODUCT_SKU", "text"), ("VALID_FROM", "date"), ("VALID_TO", "date"),
                      ("PRICE", "num"), ("CURRENCY", "text"), ("CHANGED_AT", "ts"), ("CHANGED_BY", "text")],
    "STOCK_MOVE": [("ID", "num"), ("WAREHOUSE", "text"), ("PRODUCT_REF", "num"), ("QTY", "num"),
                   ("MOVED_AT", "ts"), ("REASON", "text"), ("BOOKED", "bool")],
    "NOTE": [("ID", "num"), ("SUBJECT", "text"), ("BODY", "text"), ("CREATED_AT", "ts"), ("AUTHOR", "text")],
}
_AGG = {
    "num": "SUM({c})",
    "double": "SUM(CAST({c} * 1000 AS BIGINT))",
    "bool": "SUM(IIF({c}, 1, 0))",
    "date": "SUM(DATEDIFF(DAY FROM DATE '2000-01-01' TO {c}))",
    "ts": "SUM(DATEDIFF(SECOND FROM TIMESTAMP '2000-01-01 00:00:00' TO {c})) + SUM(EXTRACT(MILLISECOND FROM {c}))",
    "text": "SUM(MOD(HASH({c}), 1000003)) + SUM(CHAR_LENGTH({c}))",
}


def fingerprint_sql(table: str) -> str:
    parts = ["COUNT(*)"]
    for col, kind in COLUMNS[table]:
        parts += [f"COUNT({col})", _AGG[kind].format(c=col)]
    return f"SELECT {', '.join(parts)} FROM {table}"


def table_sizes(total: int) -> dict[str, int]:
    """Rows per table for a total of ``total`` rows (the sum is exactly ``total``)."""
    n = {"REGION": max(MIN_REGIONS, round(total * REGION_SHARE))}
    for t, share in SHARES.items():
        n[t] = max(1, round(total * share))
    n["NOTE"] = total - sum(n.values())
    if n["NOTE"] < 1:
        raise ValueError(f"a size of {total} rows is too small for 8 tables")
    return {t: n[t] for t in FILL_ORDER}


def fill_sql(table: str, first: int, last: int, sizes: dict[str, int]) -> str:
    """Rows first..last of ``table`` in one EXECUTE BLOCK."""
    ins = INSERTS[table].format(**{f"n_{t.lower()}": v for t, v in sizes.items()})
    return (f"EXECUTE BLOCK AS DECLARE i BIGINT = {first - 1}; BEGIN WHILE (i < {last}) DO BEGIN "
            f"i = i + 1; {ins}; END END")


# --------------------------------------------------------------------------
# Where the databases live
# --------------------------------------------------------------------------
class Target(benchlib.Target):
    """benchlib.Target with a database's file size and the plain settings a measuring process needs."""

    kind = "checkpoint"

    def file_size(self, name: str) -> int | None:
        """Size of the database file (on the server: read here, so the server must be local)."""
        try:
            return os.stat(self.path(name)).st_size
        except OSError:
            return None

    def settings(self, dsn: str, tag: str) -> dict:
        """What make_config() needs, as plain data (it goes to another process)."""
        return {"dsn": dsn, "user": self.user, "password_file": str(self.password_file) if self.password_file else None,
                "config_path": str(self.workdir / f"fbaudit_{tag}.yaml"),
                "registry": str(self.workdir / f"tables_{tag}.yaml"),
                "checkpoint_dir": str(self.workdir / f"checkpoints_{tag}")}


def make_config(s: dict):
    """A fbaudit Config with the benchmark database as its one source (and, never opened, as its log)."""
    from fbaudit.config import Config, DatabaseSpec, SourceSpec
    pf = Path(s["password_file"]) if s["password_file"] else None
    return Config(path=Path(s["config_path"]), prefix=PREFIX,
                  log=DatabaseSpec("log", s["dsn"], user=s["user"], password_file=pf),
                  sources=(SourceSpec("main", s["dsn"], user=s["user"], password_file=pf,
                                      registry=Path(s["registry"])),),
                  checkpoints_dir=Path(s["checkpoint_dir"]))


def query(con, sql: str, params: tuple = ()) -> list[tuple]:
    cur = con.cursor()
    cur.execute(sql, params)
    rows = cur.fetchall()
    cur.close()
    con.commit()
    return rows


def engine_info(con) -> tuple:
    return query(con, "SELECT RDB$GET_CONTEXT('SYSTEM', 'ENGINE_VERSION'), MON$PAGE_SIZE, MON$FORCED_WRITES, "
                      "MON$PAGE_BUFFERS FROM MON$DATABASE")[0]


def fill(target: Target, tag: str, size: int, chunk: int) -> tuple[str, dict, dict, float, tuple]:
    """A fresh database with the 8 tables holding ``size`` rows in all.
    Returns (dsn, rows per table, fingerprints, seconds, engine info)."""
    dsn = target.create(tag)
    sizes = table_sizes(size)
    con = target.connect(dsn)
    for ddl in DDL:
        con.execute_immediate(ddl)
    con.commit()
    t0 = time.perf_counter()
    for t in FILL_ORDER:
        for first in range(1, sizes[t] + 1, chunk):
            con.execute_immediate(fill_sql(t, first, min(sizes[t], first + chunk - 1), sizes))
            con.commit()
    seconds = time.perf_counter() - t0
    prints = {t: list(query(con, fingerprint_sql(t))[0]) for t in TABLES}
    info = engine_info(con)
    con.close()
    for t in TABLES:
        if prints[t][0] != sizes[t]:
            raise RuntimeError(f"fill: {t} holds {prints[t][0]} rows, expected {sizes[t]}")
    return dsn, sizes, prints, seconds, info


# --------------------------------------------------------------------------
# One measuring pass, in its own process
# --------------------------------------------------------------------------
def _status_kb(field: str, pid: str = "self") -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return None


def _maxrss_kb() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def _reset_peak_rss() -> bool:
    """Reset this process's peak RSS (VmHWM, and with it ru_maxrss) to its current RSS (Linux 4.0+)."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def server_rss_kb() -> int | None:
    """VmRSS of the local Firebird server processes (server target), if visible."""
    vals = [_status_kb("VmRSS", str(p)) for p in benchlib.server_pids()]
    vals = [v for v in vals if v is not None]
    return sum(vals) if vals else None


def measure(settings: dict, opts: dict, results) -> None:
    """multiprocessing target: run one pass, put its result (or the error) on ``results``."""
    try:
        results.put(_measure(settings, opts))
    except BaseException:
        results.put({"error": traceback.format_exc()})


def _measure(settings: dict, opts: dict) -> dict:
    import logging
    import tracemalloc
    logging.basicConfig(stream=sys.stderr, format="%(asctime)s [%(levelname)s] %(name)s: %(message)s",
                        datefmt="%H:%M:%S")
    logging.getLogger("fbaudit").setLevel(logging.INFO if opts["verbose"] else logging.WARNING)

    from fbaudit import checkpoint
    from fbaudit.db import open_database

    config = make_config(settings)
    spec = config.sources[0]
    trace = opts["tracemalloc"]
    out: dict = {"pid": os.getpid(), "tracemalloc": trace, "rss_start_kb": _status_kb("VmRSS"),
                 "fbaudit_checkpoint_file": checkpoint.__file__}
    # Load the client library / engine and attach once, outside the measurement.
    with open_database(spec, client_library=config.client_library) as db:
        db.scalar("SELECT COUNT(*) FROM RDB$RELATIONS")
    out["rss_baseline_kb"] = _status_kb("VmRSS")
    out["maxrss_baseline_kb"] = _maxrss_kb()
    out["peak_reset"] = _reset_peak_rss()      # from here: the peak of create alone

    # Time the parts of restore() (the module's own functions, looked up at call time).
    parts = {"verify_s": 0.0, "apply_s": 0.0}
    orig_verify, orig_apply = checkpoint.verify, checkpoint._apply

    def timed(fn, key):
        def wrapper(*a, **kw):
            t0 = time.perf_counter()
            try:
                return fn(*a, **kw)
            finally:
                parts[key] += time.perf_counter() - t0
        return wrapper

    checkpoint.verify = timed(orig_verify, "verify_s")
    checkpoint._apply = timed(orig_apply, "apply_s")

    if trace:
        tracemalloc.start()
    srv0 = server_rss_kb() if opts["server"] else None
    t0 = time.perf_counter()
    made = checkpoint.create(config, tables=list(TABLES), description=opts["description"])
    out["create_s"] = time.perf_counter() - t0
    out["maxrss_create_kb"] = _maxrss_kb()
    out["hwm_create_kb"] = _status_kb("VmHWM")
    if trace:
        out["heap_create_peak_b"] = tracemalloc.get_traced_memory()[1]
        tracemalloc.reset_peak()
    srv1 = server_rss_kb() if opts["server"] else None
    out["peak_reset"] = _reset_peak_rss() and out["peak_reset"]      # from here: the peak of restore alone
    t0 = time.perf_counter()
    restored = checkpoint.restore(config, made["id"], auto_backup=False, audit="rows")
    out["restore_s"] = time.perf_counter() - t0
    out["maxrss_restore_kb"] = _maxrss_kb()
    out["hwm_restore_kb"] = _status_kb("VmHWM")
    if trace:
        out["heap_restore_peak_b"] = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    srv2 = server_rss_kb() if opts["server"] else None
    checkpoint.verify, checkpoint._apply = orig_verify, orig_apply
    # ru_maxrss of the whole process: the largest of the three peaks the resets separated.
    out["maxrss_kb"] = max(out["maxrss_baseline_kb"], out["maxrss_create_kb"], out["maxrss_restore_kb"])
    out.update(parts)
    if opts["server"]:
        out["server_rss_kb"] = {"before": srv0, "after_create": srv1, "after_restore": srv2}
    out["id"] = made["id"]
    out["bytes"] = made["bytes"]
    out["total_rows"] = made["total_rows"]
    out["checkpoint_rows"] = {t: v["rows"] for t, v in made["tables"].items()}
    out["restored_rows"] = dict(restored["tables"])
    out["restore_order"] = restored.get("order")
    out["sequences"] = restored.get("sequences")
    out["create_reported_s"] = made["seconds"]
    out["restore_reported_s"] = restored["seconds"]
    # The check, after the measurement.
    with open_database(spec, client_library=config.client_library) as db:
        out["fingerprints"] = {t: list(db.query(fingerprint_sql(t))[0]) for t in TABLES}
        db.commit()
    return out


def run_pass(ctx, settings: dict, opts: dict, timeout: float) -> dict:
    results = ctx.Queue()
    p = ctx.Process(target=measure, args=(settings, opts, results), name="bench-checkpoint-pass")
    p.start()
    try:
        res = results.get(timeout=timeout)
    finally:
        p.join(timeout=60)
        if p.is_alive():
            p.terminate()
            p.join()
    if "error" in res:
        raise RuntimeError(f"measuring process failed:\n{res['error']}")
    return res


def check(res: dict, sizes: dict, prints: dict) -> list[str]:
    problems = []
    for t in TABLES:
        cp = res["checkpoint_rows"].get(t)
        if cp != sizes[t]:
            problems.append(f"{t}: checkpoint holds {cp} rows, the table {sizes[t]}")
        if res["restored_rows"].get(t) != cp:
            problems.append(f"{t}: restore() reports {res['restored_rows'].get(t)} rows, the checkpoint {cp}")
        after = res["fingerprints"][t]
        if after[0] != cp:
            problems.append(f"{t}: {after[0]} rows after the restore, the checkpoint holds {cp}")
        if after != prints[t]:
            diff = [c for (c, _), a, b in zip(COLUMNS[t], after[1::2], prints[t][1::2]) if a != b] + \
                   [c for (c, _), a, b in zip(COLUMNS[t], after[2::2], prints[t][2::2]) if a != b]
            problems.append(f"{t}: content differs after the restore (fingerprint of {', '.join(sorted(set(diff))) or 'rows'})")
    return problems


def run_size(target: Target, args: argparse.Namespace, ctx, size: int, heap_pass: bool) -> dict:
    tag = f"cp_{size}"
    say(f"[{size}] filling 8 tables ...")
    dsn, sizes, prints, fill_s, info = fill(target, tag, size, args.fill_chunk)
    db_bytes = target.file_size(tag)
    say(f"[{size}] filled in {fill_s:.1f} s ({size / fill_s:,.0f} rows/s); database file "
        + (f"{db_bytes / 1e6:.1f} MB" if db_bytes else "size unknown") + "; "
        + ", ".join(f"{t} {n}" for t, n in sizes.items()))
    settings = target.settings(dsn, tag)
    cpdir = Path(settings["checkpoint_dir"])
    opts = {"verbose": args.verbose, "tracemalloc": args.tracemalloc, "server": target.is_server,
            "description": f"bench_checkpoint {size} rows"}
    out = {"size": size, "tables": sizes, "fill_s": round(fill_s, 2), "db_bytes": db_bytes,
           "engine": info, "problems": []}
    res = run_pass(ctx, settings, opts, args.timeout)
    out["problems"] += check(res, sizes, prints)
    res.pop("fingerprints")
    out["run"] = res
    say(f"[{size}] create {res['create_s']:.2f} s ({size / res['create_s']:,.0f} rows/s), restore "
        f"{res['restore_s']:.2f} s ({size / res['restore_s']:,.0f} rows/s; verify {res['verify_s']:.2f} s, "
        f"delete + insert {res['apply_s']:.2f} s); file {res['bytes'] / 1e6:.1f} MB; peak RSS "
        f"{res['maxrss_kb'] / 1024:.1f} MB (baseline {res['rss_baseline_kb'] / 1024:.1f} MB; create "
        f"{res['maxrss_create_kb'] / 1024:.1f}, restore {res['maxrss_restore_kb'] / 1024:.1f})"
        + (f"; Python heap peak {max(res['heap_create_peak_b'], res['heap_restore_peak_b']) / 1e6:.1f} MB"
           if args.tracemalloc else ""))
    if res.get("server_rss_kb"):
        s = res["server_rss_kb"]
        say(f"[{size}] server processes' RSS: " + ", ".join(
            f"{k} {v / 1024:.0f} MB" for k, v in s.items() if v is not None))
    if not args.keep:
        shutil.rmtree(cpdir, ignore_errors=True)
    if heap_pass:
        say(f"[{size}] extra pass with tracemalloc (not timed) ...")
        hres = run_pass(ctx, settings, {**opts, "tracemalloc": True}, args.timeout * 10)
        out["problems"] += [f"tracemalloc pass: {p}" for p in check(hres, sizes, prints)]
        hres.pop("fingerprints")
        out["heap"] = hres
        say(f"[{size}] Python heap peak: create {hres['heap_create_peak_b'] / 1e6:.1f} MB, restore "
            f"{hres['heap_restore_peak_b'] / 1e6:.1f} MB (create {hres['create_s']:.1f} s and restore "
            f"{hres['restore_s']:.1f} s under tracemalloc)")
        if not args.keep:
            shutil.rmtree(cpdir, ignore_errors=True)
    for p in out["problems"]:
        say(f"[{size}] PROBLEM: {p}")
    if not args.keep:
        target.drop(dsn)
    return out


# --------------------------------------------------------------------------
# Report
# --------------------------------------------------------------------------
def heap_peak_mb(s: dict) -> float | None:
    r = s.get("heap") or (s["run"] if s["run"].get("tracemalloc") else None)
    if not r:
        return None
    return max(r["heap_create_peak_b"], r["heap_restore_peak_b"]) / 1e6


def render(result: dict) -> str:
    m = result["meta"]
    lines = [
        *benchlib.report_header(m, "checkpoint"),
        "",
        "Create and restore (auto_backup=False, audit=\"rows\") of 8 tables, each size in a fresh database and "
        "measured in a fresh process; peak RSS = ru_maxrss of that process"
        + (" (includes the embedded engine and its page cache)" if m["target"] == "embedded"
           else " (the client only; the server's memory is not in it)")
        + "; Python heap peak = tracemalloc" + (" (in the timed pass)" if m["tracemalloc_in_timed_pass"] else
                                               " (separate untimed pass)"),
        "| rows | create s | create rows/s | restore s | restore rows/s | file MB | peak RSS MB | Python heap peak MB |",
        "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for s in result["sizes"]:
        r = s["run"]
        hp = heap_peak_mb(s)
        lines.append(f"| {s['size']:,} | {r['create_s']:.2f} | {s['size'] / r['create_s']:,.0f} | {r['restore_s']:.2f} | "
                     f"{s['size'] / r['restore_s']:,.0f} | {r['bytes'] / 1e6:.1f} | {r['maxrss_kb'] / 1024:.1f} | "
                     + (f"{hp:.1f}" if hp is not None else "—") + " |")
    lines.append("")
    for s in result["sizes"]:
        r = s["run"]
        line = (f"   {s['size']:,} rows: restore = verify {r['verify_s']:.2f} s + delete/insert {r['apply_s']:.2f} s + "
                f"rest {r['restore_s'] - r['verify_s'] - r['apply_s']:.2f} s; RSS after one attach + detach (engine "
                f"loaded) {r['rss_baseline_kb'] / 1024:.1f} MB (peak so far {r['maxrss_baseline_kb'] / 1024:.1f}), peak in create {r['maxrss_create_kb'] / 1024:.1f} MB, in "
                f"restore {r['maxrss_restore_kb'] / 1024:.1f} MB")
        h = s.get("heap")
        if h:
            line += (f"; heap peak create {h['heap_create_peak_b'] / 1e6:.1f} MB, restore "
                     f"{h['heap_restore_peak_b'] / 1e6:.1f} MB")
        srv = r.get("server_rss_kb") or {}
        if srv.get("after_restore"):
            line += "; server RSS " + " / ".join(f"{v / 1024:.0f}" for v in srv.values() if v) + " MB (before / " \
                    "after create / after restore)"
        line += f"; fill {s['fill_s']:.1f} s" + (f"; PROBLEMS: {s['problems']}" if s["problems"] else "; checks ok")
        lines.append(line)
    sz = result["sizes"]
    if len(sz) >= 2:
        a, b = sz[0], sz[-1]
        ra, rb = a["run"]["maxrss_kb"], b["run"]["maxrss_kb"]
        lines.append(f"   peak RSS at {b['size']:,} rows / at {a['size']:,} rows = {rb / ra:.2f} "
                     f"({b['size'] / a['size']:.0f}x the rows)")
        ha, hb = heap_peak_mb(a), heap_peak_mb(b)
        if ha and hb:
            lines.append(f"   Python heap peak at {b['size']:,} rows / at {a['size']:,} rows = {hb / ha:.2f}")
    lines.append("")
    return "\n".join(lines)


# --------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default=DEFAULT_SIZES,
                    help=f"comma list of total rows over the 8 tables, one fresh database each [{DEFAULT_SIZES}]")
    ap.add_argument("--rows", type=int, help="one size only (the same as --sizes N)")
    ap.add_argument("--fill-chunk", type=int, default=50000, help="rows per EXECUTE BLOCK and transaction while "
                    "filling [50000]")
    ap.add_argument("--tracemalloc", action="store_true",
                    help="trace the Python heap in the timed pass of every size (its times include the overhead) "
                         "instead of a separate pass at the smallest and largest size")
    ap.add_argument("--no-heap", action="store_true", help="no tracemalloc pass at all")
    ap.add_argument("--timeout", type=float, default=3600.0, help="seconds one measuring pass may take [3600]")
    ap.add_argument("--verbose", action="store_true", help="show the checkpoint's INFO log lines (every 100 rows)")
    benchlib.add_common_args(ap, dir_help="folder for database files (embedded), configs and checkpoint files "
                                          "[a temporary folder]")
    args = ap.parse_args(argv)
    sizes = [args.rows] if args.rows else [int(s) for s in args.sizes.split(",") if s.strip()]
    for s in sizes:
        try:
            table_sizes(s)
        except ValueError as exc:
            ap.error(str(exc))
    heap_sizes = set() if (args.no_heap or args.tracemalloc) else {min(sizes), max(sizes)}

    started = time.perf_counter()
    snapdir = benchlib.snapshot_from_args(args)
    # Measuring processes are forked from a small fork server (it imports nothing of fbaudit and
    # never loads the engine), not spawned from this process: a process started with exec
    # inherits its parent's ru_maxrss (Linux keeps the old peak across exec), and this process
    # grows with the engine's page cache while it fills the databases. A forked child's
    # ru_maxrss starts at the fork server's ~13 MB (measured: 12.7 MB after this process grew
    # to 420 MB, against 420 MB for a subprocess or a "spawn" child).
    ctx = mp.get_context("forkserver")
    ctx.set_forkserver_preload([])
    target = Target(args)
    result: dict = {}
    try:
        meta = {
            "date": _dt.datetime.now().astimezone().isoformat(timespec="seconds"),
            "target": args.target,
            "target_desc": (f"server {args.host} over TCP" if target.is_server else "embedded"),
            "client_version": target.runtime.embedded_version, "machine": machine_info(),
            "fbaudit_revision": fbaudit_revision(),
            "fbaudit_path": str(Path(sys.modules["fbaudit"].__file__).parent),
            "command": " ".join([Path(sys.executable).name, *sys.argv]),
            "tracemalloc_in_timed_pass": args.tracemalloc,
            "shares": {**SHARES, "REGION": REGION_SHARE, "NOTE": "rest"},
        }
        result["meta"] = meta
        say(f"{meta['target_desc']}, {meta['machine']['nproc']} x {meta['machine']['cpu']}, load "
            f"{os.getloadavg()[0]:.2f}; fbaudit {meta['fbaudit_revision']} from {meta['fbaudit_path']}")
        result["sizes"] = []
        for size in sizes:
            out = run_size(target, args, ctx, size, size in heap_sizes)
            if "engine_version" not in meta:
                meta["engine_version"], meta["page_size"], fw, meta["page_buffers"] = out["engine"]
                meta["forced_writes"] = bool(fw)
            result["sizes"].append(out)
        meta["machine"]["loadavg_end"] = os.getloadavg()
        meta["runtime_seconds"] = round(time.perf_counter() - started, 1)
    finally:
        target.cleanup()
        if snapdir and not args.keep:
            shutil.rmtree(snapdir, ignore_errors=True)
        if args.json and result:
            Path(args.json).write_text(json.dumps(result, indent=2, default=str), encoding="utf-8")
            say(f"wrote {args.json}")
    print()
    print(render(result))
    print(f"total runtime {result['meta']['runtime_seconds']:.0f} s")
    return 1 if any(s["problems"] for s in result["sizes"]) else 0


if __name__ == "__main__":
    sys.exit(main())
