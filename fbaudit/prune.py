"""``fbaudit prune``: remove old history from the log database, in batches.

Only the log database is touched (the sources never hold more than the
staging tables). Each batch is one short transaction: up to ``batch``
packets created before the cut-off, oldest first (the CREATED_AT index), with
their field rows. A killed prune leaves whole packets only; the next run goes
on where it stopped.

Version numbers are positions in what the log holds: after a prune, a
record's first remaining packet is its version 1.
"""
from __future__ import annotations

import logging
import time
from datetime import datetime

from .capture import Result, _open
from .config import Config, parse_period
from .db import guard
from .errors import FbauditError

log = logging.getLogger("fbaudit.prune")

DEFAULT_BATCH = 5000


def parse_before(text: str, now: datetime) -> datetime:
    """'2026-01-01', '2026-01-01T12:00' or an age ('90d', '12h'): the cut-off time."""
    try:
        return now - parse_period(text)
    except ValueError:
        pass
    try:
        cut = datetime.fromisoformat(text.strip())
        # an explicit offset (2026-01-01T00:00Z): in local time, like the packets' CREATED_AT
        return cut.astimezone().replace(tzinfo=None) if cut.tzinfo else cut
    except ValueError:
        raise FbauditError(f"--before {text!r} is neither a date (2026-01-01, 2026-01-01T12:00) nor an age "
                           "(90d, 12h)") from None


def _block(p: str) -> str:
    return (f"EXECUTE BLOCK (b TIMESTAMP = ?, n INTEGER = ?, s INTEGER = ?) RETURNS (packets INTEGER, fields "
            f"INTEGER) AS DECLARE pid BIGINT; BEGIN packets = 0; fields = 0; "
            f"FOR SELECT FIRST (:n) PACKET_ID FROM {p}LOG_PACKET WHERE CREATED_AT < :b AND SOURCE_ID = :s "
            f"ORDER BY CREATED_AT INTO pid DO BEGIN "
            f"DELETE FROM {p}LOG WHERE SOURCE_ID = :s AND PACKET_ID = :pid; fields = fields + ROW_COUNT; "
            f"DELETE FROM {p}LOG_PACKET WHERE SOURCE_ID = :s AND PACKET_ID = :pid; packets = packets + 1; "
            f"END SUSPEND; END")


def prune(config: Config, *, before: str, source: str | None = None, batch: int = DEFAULT_BATCH,
          dry_run: bool = False, now: datetime | None = None) -> Result:
    """Delete the log's packets (and field rows) created before ``before``, per source, in batches."""
    if batch < 1:
        raise FbauditError(f"--batch must be at least 1, not {batch}")
    now = now or datetime.now()
    cut = parse_before(before, now)
    if cut > now:
        raise FbauditError(f"--before {cut:%Y-%m-%d %H:%M:%S} is in the future: that would remove the whole "
                           "history; nothing was removed.")
    names = [s.name for s in config.source(source)]
    p = config.prefix
    out = Result({"before": f"{cut:%Y-%m-%d %H:%M:%S}", "dry_run": dry_run, "sources": []})
    with _open(config, config.log) as db:
        ids = dict(db.query(f"SELECT NAME, ID FROM {p}SOURCES"))
        db.commit()
        missing = [n for n in names if n not in ids]
        if source and missing:
            raise FbauditError(f"Source {source!r} is not registered in the log database; nothing to prune.")
        for name in names:
            if name not in ids:
                continue
            sid = ids[name]
            t0 = time.perf_counter()
            if dry_run:
                packets = db.scalar(f"SELECT COUNT(*) FROM {p}LOG_PACKET WHERE SOURCE_ID = ? AND CREATED_AT < ?",
                                    (sid, cut))
                fields = db.scalar(f"SELECT COUNT(*) FROM {p}LOG L WHERE L.SOURCE_ID = ? AND EXISTS (SELECT 1 "
                                   f"FROM {p}LOG_PACKET P WHERE P.SOURCE_ID = L.SOURCE_ID AND P.PACKET_ID = "
                                   f"L.PACKET_ID AND P.CREATED_AT < ?)", (sid, cut)) if packets else 0
                db.commit()
            else:
                packets = fields = 0
                while True:
                    with guard(db.spec):
                        cur = db.con.cursor()
                        cur.execute(_block(p), (cut, batch, sid))
                        n, f = cur.fetchone()
                        cur.close()
                    db.commit()
                    packets, fields = packets + n, fields + f
                    if n:
                        log.info("[PRUNE] %s: removed %d packets so far (%d field rows)", name, packets, fields)
                    if n < batch:
                        break
            secs = time.perf_counter() - t0
            out.data["sources"].append({"source": name, "packets": packets, "field_rows": fields,
                                        "seconds": round(secs, 3)})
            verb = "would remove" if dry_run else "removed"
            out.lines.append(f"{name}: {verb} {packets} packets and {fields} field rows created before "
                             f"{cut:%Y-%m-%d %H:%M:%S}" + ("" if dry_run else f" ({secs:.1f} s)"))
            log.info("[PRUNE] %s", out.lines[-1])
    out.data["packets"] = sum(s["packets"] for s in out.data["sources"])
    out.data["field_rows"] = sum(s["field_rows"] for s in out.data["sources"])
    return out
