#!/usr/bin/env python3
"""Rotation (fbaudit.rotation): main database size over days, and the time of one rotation.

Table ORDERS: an ERP-like order table, 12 columns (key, document number,
customer, city, street, e-mail, status, amount, quantity, dates, a note of
~110 characters), audited with `fbaudit init` + `fbaudit enable ORDERS`.
It is preloaded with --preload rows before auditing starts; a day of changes
keeps its size constant. The daily mix, per --changes changes (packets):
30% inserts (12 fields logged), 40% updates of 7 fields (7 logged), 30%
deletes of the oldest rows (12 logged): 10 field rows per packet on average,
100,000 a day at the default 10,000 changes, written by EXECUTE BLOCKs of
--per-tx changes per transaction (the real audit trigger fires for every row).

Two parts (--parts), each in fresh databases (a main/source and a log
database, created for it and dropped after it):

  days   --days simulated days per mode (--modes). Each day: write the day's
         changes, ship them with fbaudit.transfer.transfer(config), clean up,
         then read the main database's FILE size and its allocated pages
         (MON$DATABASE.MON$PAGES). Clean-up per mode:
           rotate   fbaudit.rotation.rotate_source(config, spec,
                    now=DAY0 + d days): switch, wait, redirect, verify,
                    DROP + CREATE the table out of use and its packet table
                    LOG_PACKET_n (and DELETE its shipped events from
                    LOG_PACKET), restore
           delete   no rotation: the triggers always write FBA_LOG_1; a naive
                    clean-up DELETEs the shipped rows from FBA_LOG_1 and the
                    shipped packets from FBA_LOG_PACKET_1 (one transaction)
           off      the baseline: auditing paused (fbaudit pause), the same
                    application changes, no staging rows at all
           rotate-reader, delete-reader, off-reader
                    the same, while one read-only SNAPSHOT transaction (a
                    report left open) stays open on the main database for the
                    whole run, so no record version can be garbage-collected
  time   for each of --sizes field rows: fill FBA_LOG_1 through the real
         trigger (the same daily mix, size/10 changes, --fill-tx changes per
         transaction), mark every packet shipped with one UPDATE of
         FBA_LOG_PACKET (SHIPPED_TO, instead of a real transfer), then time
         rotate_source(..., force=True) and each of its steps
         (RotationReport.steps); then one more rotation, of the empty
         FBA_LOG_2: the fixed cost. Contrast (unless --no-delete-contrast):
         fill FBA_LOG_1 (current again) with as many rows, mark them, and time
         the naive DELETE of the rows and packets, then the first full scan
         of the table after it (which garbage-collects the deleted versions).

Checks: every day's transfer must ship exactly the packets the day wrote (and
at the end the log database must hold every packet and field row); every
rotation must end `done` or `postponed` (completed by a later run; counted in the summary).

Usage (see docs/performance.md, "Rotation"):
  .venvs/fb5/bin/python scripts/bench_rotation.py --snapshot HEAD --json rotation-fb5.json
  .venvs/fb3/bin/python scripts/bench_rotation.py --snapshot HEAD --target server --json rotation-fb3-server.json
  .venvs/fb5/bin/python scripts/bench_rotation.py --days 3 --changes 1000 --sizes 10000   # smoke run
"""
from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import shutil
import sys
import time
from datetime import datetime, timedelta
from pathlib import Path

import benchlib       # scripts/benchlib.py; like this script, it imports fbaudit only inside functions
from benchlib import PREFIX, fbaudit_revision, machine_info, say

# Every packet of the main database: LOG_PACKET (events, baselines) and the packet tables the
# audit triggers write (LOG_PACKET_1 / LOG_PACKET_2, dropped by rotation with their data table).
PACKETS = ("(" + " UNION ALL ".join(f"SELECT ID, DATA_TABLE FROM {PREFIX}{t}"
                                    for t in ("LOG_PACKET", "LOG_PACKET_1", "LOG_PACKET_2")) + ")")

PARTS = ("days", "time")
MODES = ("rotate", "delete", "off", "rotate-reader", "delete-reader", "off-reader")
STEPS = ("switch", "wait", "redirect", "verify", "drop", "restore")
ORDERS_DDL = ("CREATE TABLE ORDERS (ID INTEGER NOT NULL PRIMARY KEY, DOC_NO VARCHAR(20), CUSTOMER VARCHAR(80), "
              "CITY VARCHAR(40), STREET VARCHAR(100), EMAIL VARCHAR(80), STATUS VARCHAR(12), "
              "AMOUNT NUMERIC(15,2), QTY INTEGER, ORDER_DATE DATE, UPDATED_AT TIMESTAMP, NOTE VARCHAR(400))")
FIELDS_INSERT = 12          # an insert or a delete logs every (non-NULL) column
FIELDS_UPDATE = 7           # an update changes STATUS, AMOUNT, QTY, UPDATED_AT, NOTE, STREET, EMAIL
MIX = (0.3, 0.4, 0.3)       # inserts, updates, deletes


# --------------------------------------------------------------------------
# The ERP workload
# --------------------------------------------------------------------------
INSERT_VALUES = ("(:i, 'SO-' || LPAD(:i, 9, '0'), 'Customer GmbH & Co. KG no. ' || MOD(:i, 997), "
                 "'Frankfurt am Main ' || MOD(:i, 50), 'Hauptstrasse ' || MOD(:i, 300) || ', building B, floor ' "
                 "|| MOD(:i, 7), 'purchasing.dept' || :i || '@customer-domain.example', 'NEW', :i * 1.37, "
                 "MOD(:i, 1000) + 1, DATE '2026-01-01' + MOD(:i, 300), TIMESTAMP '2026-01-01 08:00:00' + :i / 86400.0, "
                 "'Delivery by pallet; call the warehouse one day ahead. Reference ' || :i || ', terms 30 days net, "
                 "2% discount within 10 days.')")
INSERT_SQL = ("INSERT INTO ORDERS (ID, DOC_NO, CUSTOMER, CITY, STREET, EMAIL, STATUS, AMOUNT, QTY, ORDER_DATE, "
              "UPDATED_AT, NOTE) VALUES " + INSERT_VALUES + ";")
UPDATE_SET = ("STATUS = 'CONF ' || MOD(:u, 10000000), AMOUNT = :u * 0.37 + 0.01, QTY = MOD(:u, 997) + 1001, "
              "UPDATED_AT = TIMESTAMP '2026-02-01 00:00:00' + :u / 86400.0, "
              "NOTE = 'Changed by order desk, revision ' || :u || ': quantity and delivery address confirmed by phone.', "
              "STREET = 'Bahnhofstrasse ' || MOD(:u, 500) || ', gate ' || MOD(:u, 9), "
              "EMAIL = 'orders' || :u || '@customer-domain.example'")


class Workload:
    """Live ORDERS ids are lo..hi; every chunk deletes the oldest, inserts new ones and updates existing ones."""

    def __init__(self, preload: int):
        self.lo, self.hi, self.u = 1, preload, 0

    @staticmethod
    def preload_sql(first: int, n: int) -> str:
        """ORDERS rows first .. first+n-1 in one EXECUTE BLOCK."""
        return (f"EXECUTE BLOCK AS DECLARE i INTEGER = {first - 1}; BEGIN WHILE (i < {first - 1 + n}) DO BEGIN "
                f"i = i + 1; {INSERT_SQL} END END")

    def chunk_sql(self, changes: int) -> tuple[str, int, int]:
        """One EXECUTE BLOCK of ``changes`` changes; returns (sql, packets, field rows)."""
        ni = round(changes * MIX[0])
        nd = round(changes * MIX[2])
        nu = changes - ni - nd
        if nd >= self.hi - self.lo + 1:
            raise ValueError("--preload is too small for --per-tx / --fill-tx")
        lo, hi, u0 = self.lo, self.hi, self.u
        self.lo, self.hi, self.u = lo + nd, hi + ni, u0 + nu
        window_lo, window = self.lo, self.hi - self.lo + 1
        sql = (f"EXECUTE BLOCK AS DECLARE i INTEGER = {hi}; DECLARE u INTEGER = {u0}; BEGIN "
               f"DELETE FROM ORDERS WHERE ID BETWEEN {lo} AND {lo + nd - 1}; "
               f"WHILE (i < {hi + ni}) DO BEGIN i = i + 1; {INSERT_SQL} END "
               f"WHILE (u < {u0 + nu}) DO BEGIN u = u + 1; "
               f"UPDATE ORDERS SET {UPDATE_SET} WHERE ID = {window_lo} + MOD(:u * 7919, {window}); END "
               "END")
        return sql, changes, (ni + nd) * FIELDS_INSERT + nu * FIELDS_UPDATE

    def write(self, con, changes: int, per_tx: int) -> tuple[int, int]:
        """Write ``changes`` changes in transactions of ``per_tx``; returns (packets, expected field rows)."""
        packets = rows = 0
        while packets < changes:
            sql, p, r = self.chunk_sql(min(per_tx, changes - packets))
            con.execute_immediate(sql)
            con.commit()
            packets += p
            rows += r
        return packets, rows


# --------------------------------------------------------------------------
# Where the databases live
# --------------------------------------------------------------------------
class Target(benchlib.Target):
    """benchlib.Target that also reads a database's file size."""

    kind = "rotation"

    def file_size(self, name: str) -> int | None:
        """Size of the database file (on the server: read here, so the server must be local)."""
        try:
            return os.stat(self.path(name)).st_size
        except OSError:
            return None


def query(con, sql: str, params: tuple = ()) -> list[tuple]:
    cur = con.cursor()
    cur.execute(sql, params)
    rows = cur.fetchall()
    cur.close()
    con.commit()
    return rows


def scalar(con, sql: str, params: tuple = ()):
    rows = query(con, sql, params)
    return rows[0][0] if rows else None


def engine_info(con) -> tuple:
    return query(con, "SELECT RDB$GET_CONTEXT('SYSTEM', 'ENGINE_VERSION'), MON$PAGE_SIZE, MON$FORCED_WRITES, "
                      "MON$PAGE_BUFFERS FROM MON$DATABASE")[0]


def prepare(target: Target, tag: str, preload: int):
    """Fresh main database with ORDERS (``preload`` rows, written before auditing), a fresh log
    database, `fbaudit init` + `fbaudit enable ORDERS`. Returns (config, main dsn, log dsn)."""
    from fbaudit import capture
    dsn = target.create(f"{tag}_main")
    log_dsn = target.create(f"{tag}_log")
    con = target.connect(dsn)
    con.execute_immediate(ORDERS_DDL)
    con.commit()
    for first in range(1, preload + 1, 20000):
        con.execute_immediate(Workload.preload_sql(first, min(20000, preload - first + 1)))
        con.commit()
    con.close()
    cfg = target.config(dsn, log_dsn, tag)
    capture.init(cfg)
    capture.enable(cfg, "ORDERS")
    return cfg, dsn, log_dsn


def db_state(con) -> dict:
    """Allocated pages and the staging tables' row counts."""
    pages, page_size = query(con, "SELECT MON$PAGES, MON$PAGE_SIZE FROM MON$DATABASE")[0]
    log1, log2, log3, packets = query(
        con, f"SELECT (SELECT COUNT(*) FROM {PREFIX}LOG_1), (SELECT COUNT(*) FROM {PREFIX}LOG_2), "
             f"(SELECT COUNT(*) FROM {PREFIX}LOG_3), (SELECT COUNT(*) FROM {PACKETS} p) FROM RDB$DATABASE")[0]
    return {"pages": pages, "page_size": page_size, "log_1": log1, "log_2": log2, "log_3": log3,
            "log_packet": packets}


def naive_delete(con, table: int) -> tuple[int, int]:
    """The naive clean-up: delete the shipped field rows, then the shipped packets; one transaction."""
    cur = con.cursor()
    shipped = f"(SELECT COALESCE(SHIPPED_TO, -1) FROM {PREFIX}LOG_PACKET_FLAG)"
    cur.execute(f"DELETE FROM {PREFIX}LOG_{table} l WHERE EXISTS (SELECT 1 FROM {PREFIX}LOG_PACKET p "
                f"WHERE p.ID = l.PACKET AND p.ID <= {shipped})")
    rows = cur.affected_rows
    packets = 0
    for name in ("LOG_PACKET", f"LOG_PACKET_{table}"):       # events, and the triggers' packets
        cur.execute(f"DELETE FROM {PREFIX}{name} WHERE ID <= {shipped} AND DATA_TABLE = ?", (table,))
        packets += cur.affected_rows
    cur.close()
    con.commit()
    return rows, packets


# --------------------------------------------------------------------------
# Part 1: size per day
# --------------------------------------------------------------------------
def run_days(target: Target, args: argparse.Namespace, mode: str) -> dict:
    from firebird.driver import Isolation, TraAccessMode, tpb
    from fbaudit import capture, rotation, transfer

    tag = f"days_{mode.replace('-', '_')}"
    cfg, dsn, log_dsn = prepare(target, tag, args.preload)
    spec = cfg.sources[0]
    audit = not mode.startswith("off")
    if not audit:
        capture.set_logging(cfg, False)
        transfer.transfer(cfg)      # ships the pause's control event, which is no change of a day
    # init set LOG_INFO.DATA to now: the first rotation is due a period later.
    day0 = datetime.now().replace(microsecond=0) + cfg.rotation.period + timedelta(hours=1)
    name = f"{tag}_main"
    con = target.connect(dsn)
    base = {"size": target.file_size(name), **db_state(con)}
    say(f"[{mode}] start: file {base['size'] / 1e6:.1f} MB, {base['pages']} pages "
        f"(ORDERS preloaded with {args.preload} rows, auditing {'on' if audit else 'paused'})")
    reader = None
    if mode.endswith("-reader"):
        reader = target.connect(dsn)
        reader.main_transaction.default_tpb = tpb(Isolation.SNAPSHOT, access_mode=TraAccessMode.READ)
        reader.begin()
        cur = reader.cursor()
        cur.execute("SELECT COUNT(*) FROM ORDERS")
        cur.fetchall()
        cur.close()
        say(f"[{mode}] a read-only SNAPSHOT transaction stays open on the main database for the whole run")
    work = Workload(args.preload)
    days: list[dict] = []
    total_packets = total_rows = 0
    problems: list[str] = []
    try:
        for d in range(args.days):
            t0 = time.perf_counter()
            packets, rows = work.write(con, args.changes, args.per_tx)
            t_write = time.perf_counter() - t0
            if not audit:
                packets = rows = 0
            total_packets += packets
            t0 = time.perf_counter()
            res = transfer.transfer(cfg)
            t_transfer = time.perf_counter() - t0
            src = res.data["sources"][0]
            if src.get("error") or res.data["packets"] != packets:
                problems.append(f"day {d + 1}: transfer shipped {res.data['packets']} of {packets} packets "
                                f"({src.get('error')})")
            total_rows += res.data["field_rows"]
            day = {"day": d + 1, "packets": packets, "field_rows": res.data["field_rows"],
                   "expected_field_rows": rows, "write_s": round(t_write, 2), "transfer_s": round(t_transfer, 2)}
            t0 = time.perf_counter()
            if not audit:
                pass
            elif mode.startswith("rotate"):
                rep = rotation.rotate_source(cfg, spec, now=day0 + timedelta(days=d), max_wait=args.max_wait)
                day.update(outcome=rep.outcome, old_table=rep.old_table, rows_dropped=rep.rows_dropped,
                           packets_deleted=rep.packets_deleted, steps={s["step"]: s["ms"] for s in rep.steps})
                day.update(completed=rep.completed, message=rep.message)
                if rep.outcome not in ("done", "postponed"):
                    problems.append(f"day {d + 1}: rotation {rep.outcome} at {rep.phase}: {rep.message}")
                elif rep.outcome == "postponed":
                    say(f"[{mode}] day {d + 1}: rotation {rep.rotation_id} postponed at {rep.phase}: "
                        f"{rep.message[:160]}")
            else:
                deleted, pk = naive_delete(con, 1)
                day.update(rows_deleted=deleted, packets_deleted=pk)
                if deleted != res.data["field_rows"] or pk != packets:
                    problems.append(f"day {d + 1}: DELETE removed {deleted} rows / {pk} packets, shipped "
                                    f"{res.data['field_rows']} / {packets}")
            day["cleanup_s"] = round(time.perf_counter() - t0, 3)
            state = db_state(con)
            day.update(size=target.file_size(name), **state)
            days.append(day)
            say(f"[{mode}] day {d + 1:2}: {packets} packets, {res.data['field_rows']} field rows; write "
                f"{t_write:.1f} s, transfer {t_transfer:.1f} s, clean-up {day['cleanup_s']:.2f} s; file "
                f"{day['size'] / 1e6:.1f} MB, {state['pages']} pages; rows left LOG_1 {state['log_1']}, "
                f"LOG_2 {state['log_2']}, LOG_PACKET {state['log_packet']}")
    finally:
        if reader is not None:
            reader.rollback()
            reader.close()
        con.close()
    lcon = target.connect(log_dsn)
    log_packets, log_rows = query(lcon, f"SELECT (SELECT COUNT(*) FROM {PREFIX}LOG_PACKET WHERE NUM_TABLE <> 0), "
                                        f"(SELECT COUNT(*) FROM {PREFIX}LOG l JOIN {PREFIX}LOG_PACKET p ON "
                                        f"p.SOURCE_ID = l.SOURCE_ID AND p.PACKET_ID = l.PACKET_ID "
                                        f"WHERE p.NUM_TABLE <> 0) FROM RDB$DATABASE")[0]
    lcon.close()
    if log_packets != total_packets or log_rows != total_rows:
        problems.append(f"log database holds {log_packets} packets / {log_rows} field rows, "
                        f"expected {total_packets} / {total_rows}")
    for p in problems:
        say(f"[{mode}] PROBLEM: {p}")
    target.drop(dsn)
    target.drop(log_dsn)
    return {"mode": mode, "changes": args.changes, "per_tx": args.per_tx, "preload": args.preload,
            "start": base, "days": days, "log_packets": log_packets, "log_field_rows": log_rows,
            "problems": problems}


# --------------------------------------------------------------------------
# Part 2: time of one rotation by table size
# --------------------------------------------------------------------------
def fill_and_mark(con, work: Workload, size: int, fill_tx: int) -> tuple[float, float, int, int]:
    """Fill the current data table with ``size`` field rows through the trigger, mark all packets shipped."""
    changes = max(1, size // 10)
    t0 = time.perf_counter()
    packets, rows = work.write(con, changes, fill_tx)
    fill = time.perf_counter() - t0
    t0 = time.perf_counter()
    cur = con.cursor()
    # What a transfer records: every packet so far is in the log database (the packets are not touched).
    marked = scalar(con, f"SELECT COUNT(*) FROM {PACKETS} p WHERE ID > (SELECT COALESCE(SHIPPED_TO, -1) "
                         f"FROM {PREFIX}LOG_PACKET_FLAG)")
    cur.execute(f"UPDATE {PREFIX}LOG_PACKET_FLAG SET SHIPPED_TO = GEN_ID({PREFIX}LOG_PACKET_ID, 0)")
    cur.close()
    con.commit()
    scalar(con, f"SELECT COUNT(*) FROM {PACKETS} p")
    mark = time.perf_counter() - t0
    return fill, mark, marked, rows


def run_time(target: Target, args: argparse.Namespace, size: int) -> dict:
    from fbaudit import rotation
    tag = f"time_{size}"
    cfg, dsn, log_dsn = prepare(target, tag, args.preload)
    name = f"{tag}_main"
    con = target.connect(dsn)
    work = Workload(args.preload)
    fill, mark, marked, rows = fill_and_mark(con, work, size, args.fill_tx)
    before = {"size": target.file_size(name), **db_state(con)}
    say(f"[time {size}] LOG_1: {before['log_1']} field rows, {marked} packets marked shipped "
        f"(filled in {fill:.1f} s, marked in {mark:.1f} s); file {before['size'] / 1e6:.1f} MB")
    con.close()   # rotation must not find this attachment holding statements on LOG_1
    rep = rotation.rotate_source(cfg, cfg.sources[0], force=True, max_wait=args.max_wait)
    con = target.connect(dsn)
    after = {"size": target.file_size(name), **db_state(con)}
    out = {"size": size, "field_rows": before["log_1"], "packets": marked, "fill_s": round(fill, 2),
           "mark_s": round(mark, 2), "outcome": rep.outcome, "rows_dropped": rep.rows_dropped,
           "packets_deleted": rep.packets_deleted, "seconds": rep.seconds,
           "steps": {s["step"]: s["ms"] for s in rep.steps}, "before": before, "after": after, "problems": []}
    if rep.outcome != "done" or rep.rows_dropped != before["log_1"] or after["log_1"] or after["log_packet"]:
        out["problems"].append(f"rotation {rep.outcome} at {rep.phase}: rows_dropped {rep.rows_dropped} of "
                               f"{before['log_1']}, left LOG_1 {after['log_1']}, LOG_PACKET {after['log_packet']}: "
                               f"{rep.message}")
    say(f"[time {size}] rotation {rep.outcome} in {rep.seconds:.2f} s: "
        + ", ".join(f"{k} {v:.0f} ms" for k, v in out["steps"].items()))
    # A second, empty rotation (LOG_2 holds nothing): the fixed cost.
    con.close()
    rep0 = rotation.rotate_source(cfg, cfg.sources[0], force=True, max_wait=args.max_wait)
    out["empty"] = {"outcome": rep0.outcome, "seconds": rep0.seconds, "steps": {s["step"]: s["ms"] for s in rep0.steps}}
    say(f"[time {size}] rotation of the empty LOG_2 right after: {rep0.seconds:.2f} s")
    con = target.connect(dsn)
    if not args.no_delete_contrast:
        # The triggers write LOG_1 again (LOG_2 was the last rotated): fill it, mark, DELETE.
        current = scalar(con, f"SELECT ID_TABLE FROM {PREFIX}LOG_INFO")
        fill2, mark2, marked2, _ = fill_and_mark(con, work, size, args.fill_tx)
        n = scalar(con, f"SELECT COUNT(*) FROM {PREFIX}LOG_{current}")
        size_before = target.file_size(name)
        t0 = time.perf_counter()
        deleted, pk = naive_delete(con, current)
        t_delete = time.perf_counter() - t0
        t0 = time.perf_counter()
        left = scalar(con, f"SELECT COUNT(*) FROM {PREFIX}LOG_{current}")
        t_scan = time.perf_counter() - t0
        t0 = time.perf_counter()
        scalar(con, f"SELECT COUNT(*) FROM {PREFIX}LOG_{current}")
        t_scan2 = time.perf_counter() - t0
        out["delete"] = {"table": current, "field_rows": n, "rows_deleted": deleted, "packets_deleted": pk,
                         "delete_ms": round(t_delete * 1000, 1), "first_scan_ms": round(t_scan * 1000, 1),
                         "second_scan_ms": round(t_scan2 * 1000, 1), "left": left,
                         "size_before": size_before, "size_after": target.file_size(name)}
        say(f"[time {size}] naive DELETE of {deleted} rows + {pk} packets from LOG_{current}: "
            f"{t_delete * 1000:.0f} ms; first scan after it {t_scan * 1000:.0f} ms, second {t_scan2 * 1000:.0f} ms")
    con.close()
    target.drop(dsn)
    target.drop(log_dsn)
    for p in out["problems"]:
        say(f"[time {size}] PROBLEM: {p}")
    return out


# --------------------------------------------------------------------------
# Report
# --------------------------------------------------------------------------
def mb(n: int | None) -> str:
    return "?" if n is None else f"{n / 1e6:.1f}"


def render(result: dict) -> str:
    m = result["meta"]
    lines = [
        *benchlib.report_header(m, "rotation"),
        "",
    ]
    runs = result.get("days") or []
    if runs:
        r0 = runs[0]
        lines.append(f"1. Main database file size after each day: {r0['changes']} changes a day "
                     f"(~{r0['days'][0]['field_rows'] if r0['days'] else '?'} field rows), ORDERS preloaded with "
                     f"{r0['preload']} rows; MB (allocated pages)")
        lines.append("| day | " + " | ".join(r["mode"] for r in runs) + " |")
        lines.append("| ---: |" + " ---: |" * len(runs))
        lines.append("| start | " + " | ".join(f"{mb(r['start']['size'])} ({r['start']['pages']})" for r in runs) + " |")
        for i in range(max(len(r["days"]) for r in runs)):
            cells = []
            for r in runs:
                d = r["days"][i] if i < len(r["days"]) else None
                cells.append(f"{mb(d['size'])} ({d['pages']})" if d else "")
            lines.append(f"| {i + 1} | " + " | ".join(cells) + " |")
        for r in runs:
            ds = r["days"]
            if len(ds) >= 3:
                d3, dn = ds[2]["size"], ds[-1]["size"]
                lines.append(f"   {r['mode']}: day {len(ds)} / day 3 = {dn / d3:.3f} "
                             f"({'within' if dn <= d3 * 1.1 else 'NOT within'} 10%)")
            outs = [d.get("outcome") for d in ds if d.get("outcome")]
            if outs:
                done = sum(o == "done" for o in outs) + sum(len(d.get("completed") or []) for d in ds)
                lines.append(f"   {r['mode']}: rotations completed {done}, runs postponed "
                             f"{sum(o == 'postponed' for o in outs)} (a postponed rotation completes on a later run)")
            cl = [d["cleanup_s"] for d in ds]
            if cl:
                lines.append(f"   {r['mode']}: clean-up per day min {min(cl):.2f} s, median {sorted(cl)[len(cl) // 2]:.2f} s, "
                             f"max {max(cl):.2f} s; write median "
                             f"{sorted(d['write_s'] for d in ds)[len(ds) // 2]:.1f} s, transfer median "
                             f"{sorted(d['transfer_s'] for d in ds)[len(ds) // 2]:.1f} s; log database: "
                             f"{r['log_packets']} packets, {r['log_field_rows']} field rows"
                             + (f"; PROBLEMS: {r['problems']}" if r["problems"] else "; checks ok"))
        lines.append("")
    times = result.get("time") or []
    if times:
        lines.append("2. One rotation (force=True) of a full FBA_LOG_1 (packets recorded shipped directly), ms")
        lines.append("| field rows | total | " + " | ".join(STEPS) + " | empty rotation | naive DELETE | first scan after it |")
        lines.append("| ---: |" + " ---: |" * (len(STEPS) + 4))
        for t in times:
            dl = t.get("delete") or {}
            lines.append(f"| {t['field_rows']:,} | {t['seconds'] * 1000:.0f} | "
                         + " | ".join(f"{t['steps'].get(s, 0):.0f}" for s in STEPS)
                         + f" | {t['empty']['seconds'] * 1000:.0f} | {dl.get('delete_ms', 0):.0f} | "
                         f"{dl.get('first_scan_ms', 0):.0f} |")
        for t in times:
            lines.append(f"   {t['field_rows']:,} rows: file {mb(t['before']['size'])} MB before, "
                         f"{mb(t['after']['size'])} MB after; pages {t['before']['pages']} -> {t['after']['pages']}"
                         + (f"; PROBLEMS: {t['problems']}" if t["problems"] else ""))
        lines.append("")
    return "\n".join(lines)


# --------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--parts", default=",".join(PARTS), help="comma list of days,time [days,time]")
    ap.add_argument("--modes", default="rotate,delete",
                    help=f"days: comma list of {','.join(MODES)} [rotate,delete]")
    ap.add_argument("--days", type=int, default=30, help="days: simulated days per mode [30]")
    ap.add_argument("--changes", type=int, default=10000, help="days: changes (packets) per day [10000]")
    ap.add_argument("--per-tx", type=int, default=100, help="days: changes per application transaction [100]")
    ap.add_argument("--preload", type=int, default=20000, help="ORDERS rows before auditing starts [20000]")
    ap.add_argument("--sizes", default="10000,100000,1000000", help="time: field rows in the full table "
                    "[10000,100000,1000000]")
    ap.add_argument("--fill-tx", type=int, default=5000, help="time: changes per transaction while filling [5000]")
    ap.add_argument("--no-delete-contrast", action="store_true", help="time: skip the naive DELETE contrast")
    ap.add_argument("--max-wait", type=float, default=30.0, help="rotate_source(max_wait=...) [30]")
    benchlib.add_common_args(ap, dir_help="folder for database files (embedded) and configs [a temporary folder]")
    args = ap.parse_args(argv)
    parts = [x.strip() for x in args.parts.split(",") if x.strip()]
    modes = [x.strip() for x in args.modes.split(",") if x.strip()]
    for x in parts:
        if x not in PARTS:
            ap.error(f"unknown part {x!r} (choose from {', '.join(PARTS)})")
    for x in modes:
        if x not in MODES:
            ap.error(f"unknown mode {x!r} (choose from {', '.join(MODES)})")
    sizes = [int(s) for s in args.sizes.split(",") if s.strip()]

    started = time.perf_counter()
    snapdir = benchlib.snapshot_from_args(args)
    target = Target(args)
    result: dict = {}
    try:
        probe = target.create("probe")
        con = target.connect(probe)
        version, page_size, fw, buffers = engine_info(con)
        con.close()
        target.drop(probe)
        meta = {
            "date": _dt.datetime.now().astimezone().isoformat(timespec="seconds"),
            "target": args.target,
            "target_desc": (f"server {args.host} over TCP" if target.is_server else "embedded"),
            "engine_version": version, "page_size": page_size, "forced_writes": bool(fw), "page_buffers": buffers,
            "client_version": target.runtime.embedded_version, "machine": machine_info(),
            "fbaudit_revision": fbaudit_revision(),
            "fbaudit_path": str(Path(sys.modules["fbaudit"].__file__).parent),
            "command": " ".join([Path(sys.executable).name, *sys.argv]),
        }
        result["meta"] = meta
        say(f"Firebird {version} ({meta['target_desc']}), {meta['machine']['nproc']} x {meta['machine']['cpu']}, "
            f"load {os.getloadavg()[0]:.2f}; fbaudit {meta['fbaudit_revision']} from {meta['fbaudit_path']}")
        if "days" in parts:
            result["days"] = []
            for mode in modes:
                say(f"1. days [{mode}]: {args.days} days x {args.changes} changes")
                result["days"].append(run_days(target, args, mode))
        if "time" in parts:
            result["time"] = []
            for size in sizes:
                say(f"2. time: rotation of a table of {size} field rows")
                result["time"].append(run_time(target, args, size))
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
    problems = [p for r in result.get("days", []) for p in r["problems"]] + \
               [p for t in result.get("time", []) for p in t["problems"]]
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
