"""Reading what the triggers captured, still in the main database's staging tables."""
from __future__ import annotations

from dataclasses import dataclass, field

from .db import Database
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
    rows = db.query(
        f"SELECT {first}p.ID, p.CREATED_AT, p.OPERATION, TRIM(TRAILING FROM t.TABLE_NAME), p.NUM_TABLE, "
        f"p.DATA_TABLE, p.RECORD_KEY, p.AUTHOR, p.DB_USER, p.CLIENT_ADDRESS, p.TRANSACTION_ID, p.CHANGE_COMMENT, "
        f"p.STATE, p.PAYLOAD FROM {p}LOG_PACKET p LEFT JOIN {p}LOG_TABLES t ON t.NUM_TABLE = p.NUM_TABLE "
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
