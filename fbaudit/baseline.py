"""`fbaudit enable TABLE --baseline`: the rows that exist when auditing starts, logged as their first version.

Without a baseline a record's history starts with its first change after
``enable``: an update knows only the fields it changed, so the whole row of
before is unknown (a deleted row cannot be re-inserted, docs/capture.md). The
baseline logs every existing row once, as a packet of operation ``baseline``
holding all its non-NULL fields, exactly as an insert would log them (the
trigger's canonical forms, forms.value_expr).

Ordering, without locking a row (docs/capture.md "Baseline"):

1. *before* the trigger exists, reserve a block of packet ids (one GEN_ID call,
   not transactional): twice the row count plus a margin;
2. install the trigger (commit): every change captured from now on gets an
   id above the block;
3. wait until every read-write transaction that started before that commit
   has ended (up to ``max_wait`` seconds, else refuse): such a transaction
   may hold a change made before the trigger existed (so never captured)
   that it commits later; the snapshot must see it;
4. in ONE snapshot transaction started after that, one EXECUTE BLOCK reads
   the table and writes a baseline packet per row with ids from the block,
   its fields packed by the trigger's own PSQL (forms.pack_term): no row
   passes through Python, so a million rows take about a minute.

So in every record's history the baseline comes first. A change committed
before the snapshot is in the baseline already and its own packet (after
it) sets the same values again; a change committed later follows it. A
concurrent application write never waits and never fails: the snapshot
reads without locks (it holds back garbage collection while it runs, like a
backup), and the writes go to the staging tables only (new records, which no
other transaction updates: nothing to wait for or conflict with).

Version numbers: the log numbers a record's packets in packet order
(PACKETS_INS), so a baseline shipped after a later change of the same record
still becomes version 1 and that change moves up.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass

from firebird.driver import Isolation

from .catalog import TableInfo
from .config import Config, SourceSpec
from .db import Database, describe_writers, guard, wait_for_old_writers
from .errors import DatabaseError, FbauditError
from .forms import PACK_LIMIT, key_expr, pack_append_big, pack_term, packed_expr, value_expr
from .idents import quote_ident
from .registry import TableEntry
from .staging import Shipped, claim_ids_sql, release_ids_sql, reserve_ids, update_flag

log = logging.getLogger("fbaudit.capture")

OPERATION = 5            # forms.OPERATIONS[5] == "baseline"
BATCH = 1000             # rows between two progress reports
MARGIN = 10_000          # ids reserved beyond twice the row count (rows inserted while the baseline runs)
WRITE_LOCK_TIMEOUT = 10  # seconds a batch waits for a lock on the staging tables (LOG_PACKET_FLAG)
MAX_WAIT = 60.0          # seconds to wait for transactions older than the trigger (step 3)
COMMENT = "baseline: the row when auditing started"


def count_rows(db: Database, table: str) -> int:
    n = db.scalar(f"SELECT COUNT(*) FROM {quote_ident(table)}")
    db.commit()
    return n


def reserve(db: Database, prefix: str, rows: int) -> tuple[int, int, object]:
    """Step 1: ids first..last for the baseline packets, taken before the trigger goes live, and the
    time then: the baseline packets' CREATED_AT, earlier than every change captured after them, as
    their ids are (prune goes by packet order, but a time after later changes would mislead)."""
    size = 2 * rows + MARGIN
    # Recorded as reserved (LOG_PENDING), so the transfer waits for these ids until the baseline's
    # transaction has ended, however long it takes to start (take() releases them in it).
    first, last = reserve_ids(db, prefix, size)
    now = db.scalar("SELECT LOCALTIMESTAMP FROM RDB$DATABASE")
    db.commit()
    return first, last, now


def release(open_db, prefix: str, block: tuple) -> None:
    """End a reservation whose packets were not written (the baseline failed or never ran)."""
    try:
        with open_db() as db:
            db.execute(release_ids_sql(prefix), (block[0], block[1]))
            db.commit()
    except Exception as exc:            # the transfer then only keeps looking at those ids (tier 2)
        log.warning("[CAPTURE] could not release the packet ids %d..%d reserved for a baseline: %s",
                    block[0], block[1], exc)


def _before_snapshot() -> None:
    """Called after the wait for older writers, right before the baseline's snapshot (tests race it)."""


def wait_for_older_writers(open_db, table: str, max_wait: float, *, upgrade: bool = False) -> float:
    """Step 3: return once no read-write transaction started before now is alive; seconds waited.

    Called right after the trigger's commit. A transaction older than it may
    have written a row before the trigger existed; it commits later, after a
    snapshot started now, so neither the trigger nor the baseline would see
    that change. Waiting for it closes the gap (rotation waits the same way).
    ``upgrade``: for `upgrade end` (its caller says what to do), a shorter message.
    """
    t0 = time.monotonic()
    with open_db() as db:
        before = db.con.info.next_transaction       # the last transaction started (measured: not the next one)
        alive = wait_for_old_writers(
            db, before, t0 + max_wait,
            on_wait=lambda alive: log.info("[CAPTURE] %s: baseline waits for %d transaction(s) started before "
                                           "the trigger: %s", table, len(alive), describe_writers(alive)))
    if alive and upgrade:
        raise FbauditError(f"{len(alive)} transaction(s) that started before the whole trigger are still open "
                           f"after {max_wait:g} s: {describe_writers(alive)}")
    if alive:
        raise FbauditError(
            f"{table}: auditing is on, but the baseline was NOT taken: {len(alive)} transaction(s) that "
            f"started before the trigger are still open after {max_wait:g} s and may hold changes made "
            f"before auditing started, which the baseline could not see: {describe_writers(alive)}. "
            f"Changes from now on are captured. To take the baseline: when those transactions have "
            f"ended, `fbaudit disable {table}`, then `fbaudit enable {table} --baseline`.")
    return round(time.monotonic() - t0, 3)


@dataclass
class Touched:
    """Only the rows changed during an upgrade (fbaudit.upgrade): the keys of the table's packets of
    operations 10 and 11 with ids above ``from_id``, read in the snapshot; ``then`` runs in the
    snapshot's transaction after the packets are written (LOG_UPGRADE's row goes with them)."""

    from_id: int
    then: list
    comment: str


def take(open_db, spec: SourceSpec, config: Config, entry: TableEntry, info: TableInfo, block: tuple,
         *, expected: int, author: str | None = None, progress=None, max_wait: float = MAX_WAIT,
         touched: Touched | None = None) -> dict:
    """Steps 3 and 4: wait for older writers, then, in ONE snapshot transaction, one EXECUTE BLOCK
    reads the table and writes a baseline packet per row, packed by the same PSQL as the trigger's
    (the rows never pass through Python: docs/performance.md "Baseline"). ``touched``: only the
    rows an upgrade changed."""
    p = config.prefix
    first, last, started = block
    db = flag = None
    try:
        waited = wait_for_older_writers(open_db, entry.name, max_wait, upgrade=touched is not None)
        _before_snapshot()
        db = open_db(isolation=Isolation.SNAPSHOT, lock_timeout=WRITE_LOCK_TIMEOUT)
        flag = open_db(isolation=Isolation.READ_COMMITTED, lock_timeout=WRITE_LOCK_TIMEOUT)
    except BaseException:               # Ctrl+C included: the reserved ids must not wait for ever
        for d in (db, flag):
            if d is not None:
                d.close()
        release(open_db, p, block)
        raise
    t0 = time.perf_counter()
    done = fields = 0
    try:
        sql = baseline_block(p, entry, info, db.major, touched=touched is not None)
        with guard(spec):
            db.con.begin()
            cur = db.con.cursor()
            cur.execute("SELECT CURRENT_TRANSACTION FROM RDB$DATABASE")      # the snapshot starts here
            tx = cur.fetchone()[0]
            # The reserved ids now wait for this transaction (committed at once, autonomously).
            cur.execute(claim_ids_sql(p), (first, last))
            if touched:
                cur.execute(f"INSERT INTO {p}LOG_TOUCHED (KEY_HASH, RECORD_KEY) SELECT HASH(RECORD_KEY), RECORD_KEY "
                            f"FROM (SELECT DISTINCT RECORD_KEY FROM {Shipped(db, p).packets} x "
                            f"WHERE ID > ? AND NUM_TABLE = ? AND OPERATION IN (10, 11) AND RECORD_KEY IS NOT NULL)",
                            (touched.from_id, entry.number))
            # The transfer's fast check may have settled on a sequence value above the reserved ids.
            # Reset it now that this transaction is alive, to a value no earlier read can hold (a check
            # that read the flag before would otherwise still set its value with its compare-and-set);
            # a check that reads it from now on sees this transaction alive and cannot settle until
            # it has committed, and then finds its packets waiting.
            update_flag(flag, f"UPDATE {p}LOG_PACKET_FLAG SET SEEN_ID = ?", (-1 - tx,))
            flag.commit()
            cur.execute(sql, (first, last, started, author, touched.comment if touched else COMMENT))
            for rows, nfields in cur:
                if rows < 0 and touched:
                    raise FbauditError(f"more rows than the ids reserved for them ({last - first + 1})")
                if rows < 0:
                    raise FbauditError(
                        f"{entry.name}: the table grew past the ids reserved for its baseline ({last - first + 1}) "
                        f"while it ran; no row got its baseline. Auditing is on. To take the baseline again: "
                        f"`fbaudit disable {entry.name}`, then `fbaudit enable {entry.name} --baseline` at a "
                        f"quieter time.")
                if progress and rows > done:
                    progress(rows - done)
                if rows // (BATCH * 50) > done // (BATCH * 50):
                    log.info("[CAPTURE] %s: baseline %d of about %d rows", entry.name, rows, expected)
                done, fields = rows, nfields
            for st in (touched.then if touched else ()):
                cur.execute(st.sql, st.params)
            cur.close()
        db.commit()
    except BaseException as exc:      # a database error (a lost connection, a lock), a value the driver cannot read
        try:
            db.rollback()
        except Exception:
            pass
        release(open_db, p, block)    # unless claimed: then the ids ended with the rolled-back transaction
        if not isinstance(exc, Exception):
            raise
        if isinstance(exc, FbauditError) and not isinstance(exc, DatabaseError):
            raise                         # ours, with its own message (the ids ran out)
        why = str(exc) if isinstance(exc, DatabaseError) else f"{type(exc).__name__}: {exc}"
        if touched:
            raise FbauditError(f"the snapshot stopped and was rolled back: {why}") from exc
        raise FbauditError(
            f"{entry.name}: auditing is on, but the baseline stopped after {done} of about {expected} rows and "
            f"was rolled back (one transaction): no row got its baseline. To take it again: "
            f"`fbaudit disable {entry.name}`, then `fbaudit enable {entry.name} --baseline`.\n  {why}") from exc
    finally:
        for d in (db, flag):
            try:
                d.close()
            except Exception:
                pass
    return {"rows": done, "field_rows": fields, "first_packet": first if done else None,
            "last_packet": first + done - 1 if done else None, "seconds": round(time.perf_counter() - t0, 3),
            "waited_seconds": waited}


def baseline_block(p: str, entry: TableEntry, info: TableInfo, major: int, *, touched: bool = False) -> str:
    """The EXECUTE BLOCK of a baseline: every row of the table as a packet of operation "baseline",
    its non-NULL fields packed as the trigger packs an insert (forms.pack_term; the BLOB path for
    a row that does not fit). Returns (rows, field rows) every BATCH rows and at the end; rows -1:
    the reserved ids ran out (the caller rolls back). ``touched``: only the rows whose key is in
    LOG_TOUCHED (its key text made by the trigger's own expression, so the two match exactly)."""
    cols = {c.name: c for c in info.columns}
    logged = [(entry.fields[c.name].number, c) for c in info.columns if c.name in entry.fields and c.auditable]
    key_cols = [cols[k] for k in entry.key]
    names = list(dict.fromkeys([c.name for c in key_cols] + [c.name for _, c in logged]))
    touched_key = key_expr(key_cols, "T_")
    terms, counts, guards, big = [], [], [], []
    for num, c in logged:
        ref = f"C.{quote_ident(c.name)}"
        packed = packed_expr(c, "C", major)
        # One assignment for the whole row, as the trigger packs an insert (forms.pack_term).
        terms.append("\n        || " + pack_term(num, ref, packed, "new"))
        counts.append(f"\n        + IIF({ref} IS NULL, 0, 1)")
        if packed[1] is not None:
            guards.append("\n        OR " + packed[1])
        big.append(f"      IF ({ref} IS NOT NULL) THEN BEGIN n_ = n_ + 1;\n      "
                   + pack_append_big(num, None, value_expr(c, "C", major), indent="      ") + " END")
    # Plain concatenation: the expressions hold column names, which no format() may read.
    return ("EXECUTE BLOCK (first_ BIGINT = ?, last_ BIGINT = ?, at_ TIMESTAMP = ?, "
            "author_ VARCHAR(255) CHARACTER SET UTF8 = ?, note_ VARCHAR(255) CHARACTER SET UTF8 = ?)\n"
            "RETURNS (rows_ INTEGER, fields_ BIGINT)\nAS\n"
            "  DECLARE id_ BIGINT;\n  DECLARE dt SMALLINT;\n  DECLARE n_ INTEGER;\n  DECLARE big SMALLINT;\n"
            f"  DECLARE buf VARCHAR({PACK_LIMIT}) CHARACTER SET OCTETS;\n  DECLARE pay BLOB SUB_TYPE BINARY;\n"
            "  DECLARE bo BLOB SUB_TYPE BINARY;\n  DECLARE bn BLOB SUB_TYPE BINARY;\n"
            "  DECLARE hd VARCHAR(40) CHARACTER SET OCTETS;\n"
            "BEGIN\n"
            "  rows_ = 0;\n  fields_ = 0;\n  id_ = first_;\n"
            f"  SELECT FIRST 1 ID_TABLE FROM {p}LOG_INFO INTO dt;\n"
            "  IF (dt IS DISTINCT FROM 2) THEN dt = 1;\n"
            f"  FOR SELECT {', '.join(quote_ident(n) for n in names)} FROM {quote_ident(entry.name)} T_"
            + (f" WHERE EXISTS (SELECT 1 FROM {p}LOG_TOUCHED G WHERE G.KEY_HASH = HASH(LEFT(" + touched_key
               + ", 1000)) AND G.RECORD_KEY = LEFT(" + touched_key + ", 1000))" if touched else "")
            + " AS CURSOR C DO\n"
            "  BEGIN\n"
            "    IF (id_ > last_) THEN\n    BEGIN\n      rows_ = -1;\n      SUSPEND;\n      EXIT;\n    END\n"
            "    big = 0;\n    n_ = 0;\n"
            "    BEGIN\n      IF (FALSE" + "".join(guards) + ") THEN big = 1;\n      ELSE\n      BEGIN\n"
            "        buf = ''" + "".join(terms) + ";\n        n_ = 0" + "".join(counts) + ";\n      END\n"
            f"      IF (OCTET_LENGTH(buf) >= {PACK_LIMIT}) THEN big = 1;\n      WHEN ANY DO big = 1;\n    END\n"
            "    IF (big = 1) THEN\n    BEGIN\n      buf = '';\n      pay = '';\n      n_ = 0;\n"
            + "\n".join(big) + "\n      pay = pay || buf;\n    END\n    ELSE\n      pay = buf;\n"
            f"    INSERT INTO {p}LOG_PACKET (ID, CREATED_AT, OPERATION, NUM_TABLE, DATA_TABLE, RECORD_KEY, AUTHOR, "
            "DB_USER, CLIENT_ADDRESS, TRANSACTION_ID, CHANGE_COMMENT, PAYLOAD)\n"
            f"      VALUES (:id_, :at_, {OPERATION}, {int(entry.number)}, :dt, LEFT(" + key_expr(key_cols, "C")
            + ", 1000), LEFT(COALESCE(:author_, CURRENT_USER), 255), CURRENT_USER, "
            "RDB$GET_CONTEXT('SYSTEM', 'CLIENT_ADDRESS'), CURRENT_TRANSACTION, :note_, :pay);\n"
            "    id_ = id_ + 1;\n    rows_ = rows_ + 1;\n    fields_ = fields_ + n_;\n"
            f"    IF (MOD(rows_, {BATCH}) = 0) THEN SUSPEND;\n"
            "  END\n"
            f"  POST_EVENT '{p}NEW_PACKET';\n"      # wakes `transfer --follow` when this commits
            "  SUSPEND;\n"
            "END")
