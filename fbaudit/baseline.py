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
4. read the table in ONE read-only snapshot started after that, and
   write a baseline packet per row with ids from the block, in batches, each
   batch its own short write transaction.

So in every record's history the baseline comes first. A change committed
before the snapshot is in the baseline already and its own packet (after
it) sets the same values again; a change committed later follows it. A
concurrent application write never waits and never fails: the snapshot
reads without locks (it holds back garbage collection while it runs, like a
backup), and the writes go to the staging tables only.

Version numbers: the log numbers a record's packets in packet order
(PACKETS_INS), so a baseline shipped after a later change of the same record
still becomes version 1 and that change moves up.
"""
from __future__ import annotations

import logging
import time

from firebird.driver import Isolation

from .catalog import TableInfo
from .config import Config, SourceSpec
from .db import Database, describe_writers, guard, wait_for_old_writers
from .errors import DatabaseError, FbauditError
from .forms import key_expr, pack, read_expr
from .idents import quote_ident
from .registry import TableEntry

log = logging.getLogger("fbaudit.capture")

OPERATION = 5            # forms.OPERATIONS[5] == "baseline"
BATCH = 1000             # rows per write transaction
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
    last, now = db.query(f"SELECT GEN_ID({prefix}LOG_PACKET_ID, {size}), LOCALTIMESTAMP FROM RDB$DATABASE")[0]
    db.commit()
    return last - size + 1, last, now


def _before_snapshot() -> None:
    """Called after the wait for older writers, right before the baseline's snapshot (tests race it)."""


def wait_for_older_writers(open_db, table: str, max_wait: float) -> float:
    """Step 3: return once no read-write transaction started before now is alive; seconds waited.

    Called right after the trigger's commit. A transaction older than it may
    have written a row before the trigger existed; it commits later, after a
    snapshot started now, so neither the trigger nor the baseline would see
    that change. Waiting for it closes the gap (rotation waits the same way).
    """
    t0 = time.monotonic()
    with open_db() as db:
        before = db.con.info.next_transaction       # the last transaction started (measured: not the next one)
        alive = wait_for_old_writers(
            db, before, t0 + max_wait,
            on_wait=lambda alive: log.info("[CAPTURE] %s: baseline waits for %d transaction(s) started before "
                                           "the trigger: %s", table, len(alive), describe_writers(alive)))
    if alive:
        raise FbauditError(
            f"{table}: auditing is on, but the baseline was NOT taken: {len(alive)} transaction(s) that "
            f"started before the trigger are still open after {max_wait:g} s and may hold changes made "
            f"before auditing started, which the baseline could not see: {describe_writers(alive)}. "
            f"Changes from now on are captured. To take the baseline: when those transactions have "
            f"ended, `fbaudit disable {table}`, then `fbaudit enable {table} --baseline`.")
    return round(time.monotonic() - t0, 3)


def take(open_db, spec: SourceSpec, config: Config, entry: TableEntry, info: TableInfo, block: tuple,
         *, expected: int, author: str | None = None, progress=None, max_wait: float = MAX_WAIT) -> dict:
    """Steps 3 and 4: wait for older writers, then read the table in one snapshot and write a
    baseline packet per row (batches of BATCH)."""
    p = config.prefix
    cols = {c.name: c for c in info.columns}
    logged = [(entry.fields[c.name].number, c) for c in info.columns if c.name in entry.fields and c.auditable]
    key_cols = [cols[k] for k in entry.key]
    first, last, started = block
    waited = wait_for_older_writers(open_db, entry.name, max_wait)
    _before_snapshot()
    reader = open_db(isolation=Isolation.SNAPSHOT, read_only=True)
    writer = open_db(isolation=Isolation.READ_COMMITTED, lock_timeout=WRITE_LOCK_TIMEOUT)
    t0 = time.perf_counter()
    done = fields = 0
    next_id = first
    try:
        select = ", ".join([f"LEFT({key_expr(key_cols, 'T')}, 1000)"]
                           + [read_expr(c, "T", reader.major) for _, c in logged])
        with guard(spec):
            cur = reader.con.cursor()
            cur.execute(f"SELECT {select} FROM {quote_ident(entry.name)} T")
            while True:
                rows = cur.fetchmany(BATCH)
                if not rows:
                    break
                if next_id + len(rows) - 1 > last:
                    raise FbauditError(
                        f"{entry.name}: the table grew past the ids reserved for its baseline ({last - first + 1}) "
                        f"while it ran; {done} rows got their baseline, the others not. Auditing is on. To take "
                        f"the baseline again: `fbaudit disable {entry.name}`, then `fbaudit enable {entry.name} "
                        f"--baseline` at a quieter time (rows done so far get a second baseline version).")
                packets = []
                for r in rows:
                    pid = next_id
                    next_id += 1
                    values = []
                    for (num, _c), v in zip(logged, r[1:]):
                        if v is None:
                            continue
                        if hasattr(v, "read"):           # a long BLOB comes as a reader
                            v = v.read()
                        values.append((num, None, v.encode("utf-8") if isinstance(v, str) else v))
                    packets.append((pid, entry.number, r[0], pack(values)))
                    fields += len(values)
                _write(writer, p, packets, author, started)
                done += len(rows)
                if progress:
                    progress(len(rows))
                if done % (BATCH * 50) == 0:
                    log.info("[CAPTURE] %s: baseline %d of about %d rows", entry.name, done, expected)
            cur.close()
        reader.commit()
    except Exception as exc:          # a database error (a lost connection, a lock), a value the driver cannot read
        if isinstance(exc, FbauditError) and not isinstance(exc, DatabaseError):
            raise                         # ours, with its own message (the ids ran out)
        why = str(exc) if isinstance(exc, DatabaseError) else f"{type(exc).__name__}: {exc}"
        raise FbauditError(
            f"{entry.name}: auditing is on, but the baseline stopped after {done} of about {expected} rows; "
            f"rows done keep their baseline. To take it again: `fbaudit disable {entry.name}`, then "
            f"`fbaudit enable {entry.name} --baseline`.\n  {why}") from exc
    finally:
        for db in (writer, reader):
            try:
                db.close()
            except Exception:
                pass
    return {"rows": done, "field_rows": fields, "first_packet": first if done else None,
            "last_packet": next_id - 1 if done else None, "seconds": round(time.perf_counter() - t0, 3),
            "waited_seconds": waited}


def _write(db: Database, p: str, packets: list[tuple], author: str | None, at) -> None:
    """One batch in one transaction: the packets, each with its fields packed as the trigger packs
    them (docs/capture.md "The packed change"), and the transfer's fast check reset (baseline ids are
    below the sequence value it may have settled on)."""
    with guard(db.spec):
        cur = db.con.cursor()
        cur.execute(f"SELECT FIRST 1 ID_TABLE FROM {p}LOG_INFO")
        dt = 2 if cur.fetchone()[0] == 2 else 1
        cur.executemany(
            f"INSERT INTO {p}LOG_PACKET (ID, CREATED_AT, OPERATION, NUM_TABLE, DATA_TABLE, RECORD_KEY, AUTHOR, "
            f"DB_USER, CLIENT_ADDRESS, TRANSACTION_ID, CHANGE_COMMENT, PAYLOAD) VALUES (?, ?, {OPERATION}, ?, "
            f"{dt}, ?, LEFT(COALESCE(CAST(? AS VARCHAR(255) CHARACTER SET UTF8), CURRENT_USER), 255), CURRENT_USER, "
            f"RDB$GET_CONTEXT('SYSTEM', 'CLIENT_ADDRESS'), CURRENT_TRANSACTION, ?, ?)",
            [(pid, at, num, key, author, COMMENT, payload) for pid, num, key, payload in packets])
        cur.execute(f"UPDATE {p}LOG_PACKET_FLAG SET SEEN_ID = -1 WHERE SEEN_ID <> -1")
        cur.execute(f"EXECUTE BLOCK AS BEGIN POST_EVENT '{p}NEW_PACKET'; END")   # wakes `transfer --follow`
        cur.close()
    db.commit()
