"""Reading what the triggers captured, still in the main database's staging tables."""
from __future__ import annotations

from dataclasses import dataclass, field

import tenacity

from .db import Database, guard
from .errors import DatabaseError
from .forms import OPERATIONS, SCHEMA_FIELDS, SCHEMA_TABLE, STATES, decode_key, decode_value, unpack


@dataclass
class Packet:
    id: int
    at: object
    operation: str
    table: str
    num_table: int
    data_table: int
    key: str
    author: str | None
    user: str | None
    client_address: str | None
    transaction_id: int | None
    comment: str | None
    state: str
    changes: dict[str, dict[str, str | None]] = field(default_factory=dict)

    def key_parts(self) -> list[str | None]:
        return decode_key(self.key)

    def as_dict(self) -> dict:
        return {"packet_id": self.id, "at": self.at.isoformat() if self.at else None, "operation": self.operation,
                "table": self.table, "key": self.key, "author": self.author, "user": self.user,
                "client_address": self.client_address, "transaction_id": self.transaction_id,
                "comment": self.comment, "state": self.state, "changes": self.changes}


def read_packets(db: Database, prefix: str, *, table: str | None = None, after_id: int = 0,
                 limit: int | None = None) -> list[Packet]:
    """Packets (newest last) with their field changes decoded to canonical text."""
    p = prefix
    where, params = ["p.ID > ?"], [after_id]
    if table:
        where.append("t.TABLE_NAME = ?")
        params.append(table)
    first = f"FIRST {int(limit)} " if limit else ""
    shipped = Shipped(db, p)
    rows = db.query(
        f"SELECT {first}p.ID, p.CREATED_AT, p.OPERATION, TRIM(TRAILING FROM t.TABLE_NAME), p.NUM_TABLE, "
        f"p.DATA_TABLE, p.RECORD_KEY, p.AUTHOR, p.DB_USER, p.CLIENT_ADDRESS, p.TRANSACTION_ID, p.CHANGE_COMMENT, "
        f"{shipped.state('p')}, p.PAYLOAD FROM {shipped.packets} p LEFT JOIN {p}LOG_TABLES t ON t.NUM_TABLE = p.NUM_TABLE "
        f"WHERE {' AND '.join(where)} ORDER BY p.ID", params, whole_blobs=True)
    fields = {(n, f): (name, kind) for (n, f, name, kind) in
              db.query(f"SELECT NUM_TABLE, NUM_POLE, TRIM(TRAILING FROM FIELD_NAME), TRIM(FIELD_KIND) "
                       f"FROM {p}LOG_FIELDS")}
    packets = [Packet(r[0], r[1], OPERATIONS.get(r[2], str(r[2])), r[3], r[4], r[5], r[6], r[7], r[8], r[9],
                      r[10], r[11], STATES.get(r[12], str(r[12]))) for r in rows]
    by_id = {pk.id: pk for pk in packets}

    def change(pk: Packet, num: int, old, new) -> None:
        if pk.num_table == SCHEMA_TABLE:
            name, kind = SCHEMA_FIELDS.get(num, f"#{num}"), "none"      # bytes as the client sent them
        else:
            name, kind = fields.get((pk.num_table, num), (f"#{num}", "text"))
        pk.changes[name] = {"old": decode_value(old, kind), "new": decode_value(new, kind)}
    for pk, r in zip(packets, rows):
        for num, old, new in unpack(r[13]):      # a packed change (no PAYLOAD: rows of LOG_n below)
            change(pk, num, old, new)
    if packets:
        lo, hi = packets[0].id, packets[-1].id
        for dt in (1, 2, 3):
            cur = db.con.cursor()
            cur.execute(f"SELECT PACKET, NUM_POLE, BLOB_OLD, BLOB_NEW FROM {p}LOG_{dt} "
                        f"WHERE PACKET BETWEEN ? AND ? ORDER BY PACKET, NUM_POLE", (lo, hi))
            for packet, num, old, new in cur:
                pk = by_id.get(packet)
                if pk is None:
                    continue
                change(pk, num, old, new)
            cur.close()
    db.commit()
    return packets


# --------------------------------------------------------------------------
# What has been shipped (docs/transfer.md "What has been shipped")
# --------------------------------------------------------------------------
# A packet is written once and never updated: the transfer keeps its progress
# beside the packets, in LOG_PACKET_FLAG.SHIPPED_TO (every id up to it is in the
# log database) with two small exceptions tables, LOG_PENDING (id ranges up to
# SHIPPED_TO not seen yet: a writer still running, a rolled-back id, a block
# reserved for a baseline) and LOG_FAILED (packets that failed to ship).

RESERVED = 2 ** 62          # LOG_PENDING.TX_LIMIT of an id block reserved and not written yet


PACKET_COLUMNS = ("ID, CREATED_AT, OPERATION, NUM_TABLE, DATA_TABLE, RECORD_KEY, AUTHOR, DB_USER, "
                  "CLIENT_ADDRESS, TRANSACTION_ID, CHANGE_COMMENT, PAYLOAD")


def _shape(db: Database, prefix: str) -> tuple[bool, bool, set[str]]:
    """(the transfer's progress tables exist, they are this release's (LOG_PENDING.TX_LIMIT), the
    packet tables that exist among LOG_PACKET_1/2): one catalog query."""
    rows = db.query("SELECT TRIM(RDB$RELATION_NAME) || '.' || TRIM(RDB$FIELD_NAME) FROM RDB$RELATION_FIELDS "
                    "WHERE (RDB$RELATION_NAME = ? AND RDB$FIELD_NAME = 'SHIPPED_TO') OR (RDB$RELATION_NAME = ? "
                    "AND RDB$FIELD_NAME IN ('TX_MARK', 'TX_LIMIT')) OR (RDB$RELATION_NAME = ? AND RDB$FIELD_NAME = "
                    "'LAST_ERROR') OR (RDB$RELATION_NAME IN (?, ?) AND RDB$FIELD_NAME = 'PAYLOAD')",
                    (f"{prefix}LOG_PACKET_FLAG", f"{prefix}LOG_PENDING", f"{prefix}LOG_FAILED",
                     f"{prefix}LOG_PACKET_1", f"{prefix}LOG_PACKET_2"))
    found = {r[0][len(prefix):] for r in rows}
    progress = ({"LOG_PACKET_FLAG.SHIPPED_TO", "LOG_FAILED.LAST_ERROR"} <= found
                and bool(found & {"LOG_PENDING.TX_MARK", "LOG_PENDING.TX_LIMIT"}))
    return (progress, "LOG_PENDING.TX_LIMIT" in found,
            {t for t in ("LOG_PACKET_1", "LOG_PACKET_2") if f"{t}.PAYLOAD" in found})


def keeps_progress(db: Database, prefix: str) -> bool:
    """The staging has the transfer's progress tables (made by `fbaudit init` of this fbaudit)."""
    return _shape(db, prefix)[0]


class Shipped:
    """Where the packets are, and SQL over those not in the log database yet (alias ``p``).

    A staging an older fbaudit made (before `fbaudit init` upgraded it) still has the packets'
    STATE column as the record: the same questions are then asked of it.
    """

    def __init__(self, db: Database, prefix: str):
        self.p = prefix
        self.current, limit, present = _shape(db, prefix)
        # ``upgraded``: `fbaudit init` of this release has run (the transfer needs it, docs/operations.md).
        self.upgraded = limit and len(present) == 2
        # A packet table missing from a staging this release made: every audited write fails while the
        # current one is missing (the DDL_GUARD trigger refuses anyone else's DROP of them).
        self.missing = sorted(f"{prefix}{t}" for t in {"LOG_PACKET_1", "LOG_PACKET_2"} - present) if limit else []
        self.tables = (f"{prefix}LOG_PACKET",) + tuple(f"{prefix}{t}" for t in sorted(present))
        # times ``where``'s parameters are given to ``unshipped``
        self.parts = 3 * len(self.tables) if self.current else 1
        self.mark = f"(SELECT COALESCE(MAX(SHIPPED_TO), -1) FROM {prefix}LOG_PACKET_FLAG)"

    @property
    def packets(self) -> str:
        """Every packet, as a table expression (a derived table over the packet tables: Firebird
        takes a condition on it into each of them, with their primary keys, but not a join's)."""
        if len(self.tables) == 1:
            return self.tables[0]
        return "(" + " UNION ALL ".join(f"SELECT {PACKET_COLUMNS} FROM {t}" for t in self.tables) + ")"

    def each(self, sql: str) -> str:
        """``sql`` (with ``{packets}`` where a packet table goes) once per packet table, UNION ALL."""
        return " UNION ALL ".join(sql.replace("{packets}", t) for t in self.tables)

    def unshipped(self, columns: str, where: str = "") -> str:
        """``SELECT columns, STATE_`` of every packet not in the log database (STATE_ 0 waiting, 2 failed)."""
        p, w, mark = self.p, f" AND ({where})" if where else "", self.mark
        if not self.current:
            return f"SELECT {columns}, p.STATE AS STATE_ FROM {p}LOG_PACKET p WHERE p.STATE <> 1{w}"
        not_failed = f"NOT EXISTS (SELECT 1 FROM {p}LOG_FAILED f WHERE f.ID = p.ID)"
        return self.each(
            f"SELECT {columns}, CAST(0 AS SMALLINT) AS STATE_ FROM {{packets}} p WHERE p.ID > {mark} "
            f"AND {not_failed}{w} "
            f"UNION ALL SELECT {columns}, CAST(0 AS SMALLINT) FROM {p}LOG_PENDING g JOIN {{packets}} p "
            f"ON p.ID BETWEEN g.ID_FROM AND g.ID_TO WHERE p.ID <= {mark} AND {not_failed}{w} "
            f"UNION ALL SELECT {columns}, f.STATE FROM {p}LOG_FAILED f JOIN {{packets}} p ON p.ID = f.ID "
            f"WHERE 1 = 1{w}")

    def state(self, alias: str = "p") -> str:
        """An expression: the packet's state, 0 waiting, 1 in the log database, 2 failed."""
        a, p = alias, self.p
        if not self.current:
            return f"{a}.STATE"
        return (f"COALESCE((SELECT f.STATE FROM {p}LOG_FAILED f WHERE f.ID = {a}.ID), "
                f"IIF({a}.ID > {self.mark} OR EXISTS (SELECT 1 "
                f"FROM {p}LOG_PENDING g WHERE {a}.ID BETWEEN g.ID_FROM AND g.ID_TO), 0, 1))")


RESERVE_EXPIRY = 86400     # seconds: a reservation never claimed by then belongs to a writer that died


GDS_UPDATE_CONFLICT = 335544336      # "deadlock / update conflicts with concurrent update"


def _conflict(exc: BaseException) -> bool:
    return isinstance(exc, DatabaseError) and GDS_UPDATE_CONFLICT in exc.gds_codes


def update_flag(db: Database, sql: str, params=()) -> None:
    """An UPDATE of the LOG_PACKET_FLAG row by one of fbaudit's own commands. The transfer holds that
    row for a moment with every batch it records; Firebird 3 reports waiting for it as an update
    conflict once the transfer commits. The statement changed nothing then, so it is run again
    (tenacity: up to 50 times, 20-200 ms apart) in the same transaction."""
    for attempt in tenacity.Retrying(retry=tenacity.retry_if_exception(_conflict), reraise=True,
                                     stop=tenacity.stop_after_attempt(50),
                                     wait=tenacity.wait_random(0.02, 0.2)):
        with attempt:
            db.execute(sql, params)


def reserve_ids(db: Database, prefix: str, count: int) -> tuple[int, int]:
    """Ids first..last taken now for packets a LATER transaction writes (a baseline, an upgrade's
    event), recorded in LOG_PENDING as reserved in the same transaction, which this commits: the
    transfer waits for them whatever transactions end meanwhile. The writing transaction claims
    them (``claim_ids_sql``), so they wait exactly until it has ended; ``release_ids_sql`` gives
    up a block never written. The flag row is locked first: a transfer recording its progress
    waits, then sees the block, and never records a range over it (docs/transfer.md)."""
    p = prefix
    current = keeps_progress(db, p)
    if current:
        update_flag(db, f"UPDATE {p}LOG_PACKET_FLAG SET SEEN_ID = SEEN_ID")
    last = db.scalar(f"SELECT GEN_ID({p}LOG_PACKET_ID, {int(count)}) FROM RDB$DATABASE")
    first = last - count + 1
    if current:
        db.execute(f"INSERT INTO {p}LOG_PENDING (ID_FROM, ID_TO, TX_LIMIT) VALUES (?, ?, ?)", (first, last, RESERVED))
    db.commit()
    return first, last


def claim_ids_sql(prefix: str) -> str:
    """The statement (parameters: first, last) the transaction that writes reserved ids runs: in an
    autonomous transaction, committed at once, it marks the block with the writer's own transaction
    number, so the block waits until the writer commits or rolls back, or dies with its attachment."""
    p = prefix
    return (f"EXECUTE BLOCK (A BIGINT = ?, B BIGINT = ?) AS DECLARE T BIGINT; BEGIN T = CURRENT_TRANSACTION; "
            f"IN AUTONOMOUS TRANSACTION DO UPDATE {p}LOG_PENDING SET TX_LIMIT = :T WHERE TX_LIMIT = {RESERVED} "
            f"AND ID_FROM >= :A AND ID_TO <= :B; END")


def release_ids_sql(prefix: str) -> str:
    """The statement (parameters: first, last) that gives up a reservation whose packets will not be
    written (a baseline that failed before it started writing): the range ends at the next check."""
    return (f"UPDATE {prefix}LOG_PENDING SET TX_LIMIT = 0 WHERE TX_LIMIT = {RESERVED} "
            f"AND ID_FROM >= ? AND ID_TO <= ?")


def dead_ranges(ranges, oat: int, next_tx: int) -> list[tuple[int, int, int]]:
    """Of LOG_PENDING rows (ID_FROM, ID_TO, TX_LIMIT, age in seconds) read before the packets in them
    were looked for: those over. Every transaction up to TX_LIMIT has ended (oldest active above
    it); a TX_LIMIT above the next transaction number (a database restored by gbak starts counting
    again; no live mark can be there); a reservation never claimed within RESERVE_EXPIRY."""
    out = []
    for a, b, m, age in ranges:
        if m == RESERVED:
            if age is not None and age > RESERVE_EXPIRY:
                out.append((a, b, m))
        elif m < oat or m > next_tx:
            out.append((a, b, m))
    return out


def convert_progress(db: Database, prefix: str) -> bool:
    """Set SHIPPED_TO once, from the STATE an older fbaudit kept per packet; True when it did.

    Everything up to the settled SEEN_ID (or, when no transaction that could still write a
    packet is alive, up to the first waiting packet) is in the log; packets above are read
    again and the log's key absorbs those already there. Failed packets, and waiting ones with
    attempts, move to LOG_FAILED. Safe to run twice (compare-and-set on SHIPPED_TO IS NULL).
    """
    p = prefix
    row = db.query(f"SELECT SEEN_ID, SHIPPED_TO, GEN_ID({p}LOG_PACKET_ID, 0) FROM {p}LOG_PACKET_FLAG")
    if not row or row[0][1] is not None:
        db.commit()
        return False
    seen_id, _, gen = row[0]
    db.commit()
    last_tx = db.con.info.next_transaction
    with guard(db.spec):
        db.con.begin()
    settled = db.con.info.oat > last_tx
    first_waiting = db.scalar(f"SELECT MIN(ID) FROM {p}LOG_PACKET WHERE STATE = 0")
    top = gen if settled else max(seen_id, 0)
    shipped_to = max(0, min(top, first_waiting - 1) if first_waiting is not None else top)
    db.execute(f"INSERT INTO {p}LOG_FAILED (ID, STATE, ATTEMPTS, LAST_ATTEMPT, LAST_ERROR) "
               f"SELECT ID, IIF(STATE = 2, 2, 0), ATTEMPTS, LAST_ATTEMPT, LAST_ERROR FROM {p}LOG_PACKET "
               f"WHERE STATE = 2 OR (STATE = 0 AND ATTEMPTS > 0)")
    cur = db.con.cursor()
    cur.execute(f"UPDATE {p}LOG_PACKET_FLAG SET SHIPPED_TO = ?, SEEN_ID = -1 WHERE SHIPPED_TO IS NULL", (shipped_to,))
    done = cur.affected_rows
    cur.close()
    if done:
        db.commit()
    else:
        db.rollback()
    return bool(done)


def subtract(ranges: list[tuple[int, int]], ids) -> list[tuple[int, int]]:
    """Ranges (inclusive, sorted, apart) without the given ids."""
    out: list[tuple[int, int]] = []
    taken = sorted(set(ids))
    k = 0
    for a, b in ranges:
        while k < len(taken) and taken[k] < a:
            k += 1
        start = a
        while k < len(taken) and taken[k] <= b:
            if taken[k] > start:
                out.append((start, taken[k] - 1))
            start = taken[k] + 1
            k += 1
        if start <= b:
            out.append((start, b))
    return out


def cut(ranges: list[tuple[int, int]], holes: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """Ranges without the ids of other ranges (both inclusive, sorted)."""
    out = []
    for a, b in ranges:
        pieces = [(a, b)]
        for c, d in holes:
            nxt = []
            for x, y in pieces:
                if d < x or c > y:
                    nxt.append((x, y))
                    continue
                if x < c:
                    nxt.append((x, c - 1))
                if d < y:
                    nxt.append((d + 1, y))
            pieces = nxt
        out += pieces
    return out
