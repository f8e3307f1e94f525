"""The schema log: every DDL statement of a source (and fbaudit's control events), read from the
log database (docs/schema-changes.md).

In the main database the DDL_LOG trigger (ddl/main_init.sql) stages each DDL statement as a packet
of table number 0 whose RECORD_KEY is the object's name; the transfer ships it exactly once with
the row changes, so an object's events are that "record's" versions, found by the same index.
"""
from __future__ import annotations

from datetime import datetime

from .config import Config
from .db import Database, timestamp_text
from .errors import FbauditError
from .forms import OPERATIONS, SCHEMA_FIELDS, SCHEMA_OPERATIONS, SCHEMA_TABLE, decode_value
from .history import COUNT_CAP, MAX_LIMIT, _reader, _source_id, none_text
from .idents import normalize_name
from .logs import printable

DEFAULT_LIMIT = 50


def events(config: Config, *, source: str | None = None, object_name: str | None = None,
           since: datetime | None = None, until: datetime | None = None, limit: int = DEFAULT_LIMIT,
           offset: int = 0, db: Database | None = None) -> dict:
    """A source's schema events, newest first: {"source", "events": [{"at", "user", "event",
    "object_type", "object", "sql", ...}], "total", "total_exact", "limit", "offset"}."""
    if not 1 <= limit <= MAX_LIMIT:
        raise FbauditError(f"limit must be 1 to {MAX_LIMIT}, not {limit}")
    if offset < 0:
        raise FbauditError(f"offset cannot be negative ({offset})")
    p = config.prefix
    with _reader(config, db) as db:
        sid, sname = _source_id(db, config, source)
        where = ["P.SOURCE_ID = ?", "P.NUM_TABLE = ?", f"P.OPERATION IN ({', '.join(map(str, sorted(SCHEMA_OPERATIONS)))})"]
        params: list = [sid, SCHEMA_TABLE]
        if object_name is not None:
            names = sorted({object_name, normalize_name(object_name)})
            where.append("(" + " OR ".join("(P.KEY_HASH = HASH(CAST(? AS VARCHAR(1000) CHARACTER SET UTF8)) "
                                            "AND P.RECORD_KEY = ?)" for _ in names) + ")")
            for n in names:
                params += [n, n]
        if since is not None:
            where.append("P.CREATED_AT >= CAST(? AS TIMESTAMP)")
            params.append(timestamp_text(since))
        if until is not None:
            where.append("P.CREATED_AT < CAST(? AS TIMESTAMP)")
            params.append(timestamp_text(until))
        cond = " AND ".join(where)
        order = "P.SOURCE_ID DESC, P.PACKET_ID DESC"
        cap = max(COUNT_CAP, offset + limit)
        total = db.scalar(f"SELECT COUNT(*) FROM (SELECT FIRST {cap + 1} 1 X FROM {p}LOG_PACKET P "
                          f"WHERE {cond} ORDER BY {order})", params)
        exact = total <= cap
        total = min(total, cap)
        rows = db.query(f"SELECT P.PACKET_ID, P.CREATED_AT, P.OPERATION, P.DB_USER, P.CLIENT_ADDRESS, "
                        f"P.TRANSACTION_ID, P.RECORD_KEY FROM {p}LOG_PACKET P WHERE {cond} ORDER BY {order} "
                        f"ROWS {offset + 1} TO {offset + limit}", params)
        fields: dict[int, dict[str, str | None]] = {r[0]: {} for r in rows}
        none = none_text(config, sname)
        if rows:
            for pid, num, raw in db.query(
                    f"SELECT PACKET_ID, NUM_POLE, BLOB_NEW FROM {p}LOG WHERE SOURCE_ID = ? AND PACKET_ID IN "
                    f"({', '.join('?' * len(rows))})", (sid, *[r[0] for r in rows]), whole_blobs=True):
                fields[pid][SCHEMA_FIELDS.get(num, f"#{num}")] = decode_value(raw, "none", none)
        out = []
        for pid, at, op, user, address, tx, name in rows:
            f = fields[pid]
            out.append({"packet_id": pid, "at": at.isoformat() if at else None, "user": user,
                        "client_address": address, "process": f.get("process"), "transaction_id": tx,
                        "kind": OPERATIONS.get(op, str(op)), "event": f.get("event"),
                        "object_type": f.get("object_type"), "object": f.get("object") or name,
                        "sql": f.get("sql"), "audit_trigger": f.get("audit_trigger")})
        db.commit()
    return {"source": sname, "events": out, "total": total, "total_exact": exact, "limit": limit,
            "offset": offset}


def event_lines(res: dict) -> list[str]:
    """The text `fbaudit schema-log` prints: one event a paragraph, its statement indented."""
    if not res["events"]:
        return [f"{res['source']}: no schema events" + (" in this range" if res["offset"] else "")]
    more = "" if res["total_exact"] else "+"
    lines = [f"{res['source']}: {len(res['events'])} of {res['total']}{more} schema events, newest first"]
    for e in res["events"]:
        who = e["user"] or "?"
        if e["client_address"]:
            who += f" from {e['client_address']}"
        if e["process"]:
            who += f" ({e['process']})"
        lines.append(f"  {e['at']}  {e['event']}  {printable(e['object'] or '')}  by {printable(who)}"
                     f"  [tx {e['transaction_id']}]")
        for line in (e["sql"] or "").splitlines()[:20]:
            lines.append("      " + printable(line))
        if e["sql"] and len(e["sql"].splitlines()) > 20:
            lines.append(f"      ... ({len(e['sql'].splitlines()) - 20} more lines; --json shows all)")
        if e["audit_trigger"]:
            lines.append(f"      fbaudit: {e['audit_trigger']}")
    return lines
