"""``fbaudit prune``: remove old history from the log database, in batches.

Only the log database is touched (the sources never hold more than the
staging tables). Each batch is one short transaction: up to ``batch``
packets, oldest first, with their field rows. A killed prune leaves whole
packets only; the next run goes on where it stopped.

What goes, per source: the packets *before the first one created at or after
the cut-off*, in packet order (the primary key), not every packet whose
CREATED_AT is older. Packet order is version order, so a record always keeps
a contiguous run of its newest versions and never gets a hole inside its
history (a baseline is stamped when auditing started, but a DST fall-back or
a clock step can still make CREATED_AT go back). A packet older than the
cut-off that comes after a newer one stays until a later prune.

Version numbers are stored (LOG_PACKET.VERSION_NO, docs/versions.md): a
record whose versions 1 to 4 were pruned keeps 5, 6 ... To keep them stable
for good, prune keeps each record's newest packet even when it is older than
the cut-off (the next change is numbered from it), unless ``keep_newest`` is
off; then a record whose whole history went starts again at version 1.
"""
from __future__ import annotations

import logging
import time
from datetime import datetime

from .config import Config, parse_period
from .db import guard, timestamp_text
from .errors import FbauditError
from .sources import Result, open_source

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
    """One batch: up to n packets of source s with ids in (after, bound), in packet order. ``dry`` only
    counts. Returns what it removed (or would), how many it kept as their record's newest, the last id."""
    return f"""EXECUTE BLOCK (bound BIGINT = ?, after BIGINT = ?, n INTEGER = ?, s INTEGER = ?, keep SMALLINT = ?,
    dry SMALLINT = ?)
RETURNS (packets INTEGER, fields INTEGER, kept INTEGER, last_id BIGINT) AS
  DECLARE pid BIGINT; DECLARE t INTEGER; DECLARE h BIGINT; DECLARE k VARCHAR(1000) CHARACTER SET UTF8;
  DECLARE c INTEGER; DECLARE later BIGINT;
BEGIN
  packets = 0; fields = 0; kept = 0; last_id = after;
  FOR SELECT FIRST (:n) PACKET_ID, NUM_TABLE, KEY_HASH, RECORD_KEY FROM {p}LOG_PACKET
      WHERE SOURCE_ID = :s AND PACKET_ID > :after AND PACKET_ID < :bound ORDER BY SOURCE_ID, PACKET_ID
      INTO :pid, :t, :h, :k DO
  BEGIN
    last_id = pid;
    later = NULL;
    -- The record's next packet, walking LOG_PACKET_KEY from this one (FIRST 1 with its ORDER BY:
    -- a NOT EXISTS built a bitmap of all later packets first: 28.5 s instead of 2.3 s, scripts/bench_prune.py).
    -- Schema events (table 0, docs/schema-changes.md) are no record: none is kept as "the newest".
    IF (keep = 1 AND k IS NOT NULL AND t <> 0) THEN
      SELECT FIRST 1 PACKET_ID FROM {p}LOG_PACKET WHERE SOURCE_ID = :s AND NUM_TABLE = :t AND KEY_HASH = :h
        AND PACKET_ID > :pid AND RECORD_KEY = :k ORDER BY SOURCE_ID, NUM_TABLE, KEY_HASH, PACKET_ID INTO :later;
    IF (keep = 1 AND k IS NOT NULL AND t <> 0 AND later IS NULL) THEN
      kept = kept + 1;
    ELSE IF (dry = 1) THEN
    BEGIN
      SELECT COUNT(*) FROM {p}LOG WHERE SOURCE_ID = :s AND PACKET_ID = :pid INTO :c;
      fields = fields + c; packets = packets + 1;
    END
    ELSE
    BEGIN
      DELETE FROM {p}LOG WHERE SOURCE_ID = :s AND PACKET_ID = :pid; fields = fields + ROW_COUNT;
      DELETE FROM {p}LOG_PACKET WHERE SOURCE_ID = :s AND PACKET_ID = :pid; packets = packets + 1;
    END
  END
  SUSPEND;
END"""


def _bound(db, p: str, sid: int, cut: datetime) -> int:
    """The first packet of the source created at or after the cut-off (everything before it may go)."""
    first = db.scalar(f"SELECT MIN(PACKET_ID) FROM {p}LOG_PACKET WHERE SOURCE_ID = ? "
                      f"AND CREATED_AT >= CAST(? AS TIMESTAMP)", (sid, timestamp_text(cut)))
    if first is None:
        first = (db.scalar(f"SELECT MAX(PACKET_ID) FROM {p}LOG_PACKET WHERE SOURCE_ID = ?", (sid,)) or 0) + 1
    db.commit()
    return first


def prune(config: Config, *, before: str, source: str | None = None, batch: int = DEFAULT_BATCH,
          dry_run: bool = False, now: datetime | None = None, keep_newest: bool = True) -> Result:
    """Delete the log's packets (and field rows) from before ``before``, per source, in batches
    (see the module docstring for which ones exactly)."""
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
    with open_source(config, config.log) as db:
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
            bound = _bound(db, p, sid, cut)
            packets = fields = kept = 0
            after = -(2 ** 63)
            while True:
                with guard(db.spec):
                    cur = db.con.cursor()
                    cur.execute(_block(p), (bound, after, batch, sid, int(keep_newest), int(dry_run)))
                    n, f, k, after = cur.fetchone()
                    cur.close()
                if dry_run:
                    db.rollback()
                else:
                    db.commit()
                packets, fields, kept = packets + n, fields + f, kept + k
                if n and not dry_run:
                    log.info("[PRUNE] %s: removed %d packets so far (%d field rows)", name, packets, fields)
                if n + k < batch:
                    break
            secs = time.perf_counter() - t0
            out.data["sources"].append({"source": name, "packets": packets, "field_rows": fields,
                                        "kept_newest": kept, "seconds": round(secs, 3)})
            verb = "would remove" if dry_run else "removed"
            out.lines.append(f"{name}: {verb} {packets} packets and {fields} field rows created before "
                             f"{cut:%Y-%m-%d %H:%M:%S}" + ("" if dry_run else f" ({secs:.1f} s)")
                             + (f"; kept {kept} older packet{'s' if kept != 1 else ''}, each the newest of "
                                f"its record (its version number goes on from it)" if kept else ""))
            log.info("[PRUNE] %s", out.lines[-1])
    out.data["packets"] = sum(s["packets"] for s in out.data["sources"])
    out.data["field_rows"] = sum(s["field_rows"] for s in out.data["sources"])
    out.data["kept_newest"] = sum(s["kept_newest"] for s in out.data["sources"])
    return out
