"""Transfer: ship captured packets from each source to the log database, exactly once.

One batch (docs/transfer.md):

1. read the ids of up to N packets not shipped yet, oldest first: those above
   ``LOG_PACKET_FLAG.SHIPPED_TO``, and first those that appeared in a
   ``LOG_PENDING`` range or failed before (docs/transfer.md "What has been
   shipped");
2. in ONE log-database transaction: lock the source's row in ``SOURCES``;
   ``PACKETS_INS`` pulls the packets of that id range from the source
   (EXECUTE STATEMENT ... ON EXTERNAL), inserts those not yet in the log (the
   primary key SOURCE_ID + PACKET_ID), with their fields unpacked from each
   packet's PAYLOAD into LOG rows, and returns every id it saw; for packets
   written before capture 2.0 (no PAYLOAD) ``BLOB_INS`` pulls their field rows
   from LOG_<n>, one call per data table; commit;
3. record in the source what was shipped, without touching a packet: SHIPPED_TO
   moves past the batch, the ids of its range that were not there yet are kept
   in LOG_PENDING, failures in LOG_FAILED; commit.

A kill between 2 and 3 leaves packets that are in the log but not recorded; the
next run reads them again, and the log's primary key absorbs them. Hence exactly once
without a two-phase commit (why not 2PC: docs/transfer.md).
"""
from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Callable

import tenacity

from .catalog import table_exists
from .config import Config, SourceSpec
from .db import Database, guard
from .errors import ConnectionLost, DatabaseError, FbauditError, SourceBusy
from .objects import log_unpacks, packed_staging, require_init
from .staging import (RESERVED, Shipped, convert_progress, cut, dead_ranges,
                      subtract, update_flag)
from .sources import Result, block_signals, is_connection_error, one_source, open_source, worker_pool

log = logging.getLogger("fbaudit.transfer")

DEFAULT_BATCH = 1000
MAX_ATTEMPTS = 5          # a packet that failed this many times is marked failed and skipped
DEFAULT_RETRIES = 4       # connection attempts before a source is given up for this run
DEFAULT_POLL = 5.0        # --follow: seconds between checks when no event arrives
LOG_LOCK_TIMEOUT = 3      # seconds a transfer waits for another transfer of the same source
SCHEMA_VERSION = 2
RECORD_EVERY = 60.0       # --follow: seconds between TRANSFER_RUNS updates


def _external_attach_error(exc: DatabaseError) -> bool:
    """The log database could not attach to the source (PACKETS_INS/BLOB_INS): a setup problem, not the packet's."""
    return "execute statement error at attach" in str(exc).lower()


GDS_TABLE_GONE = 335544395     # "table id N is not defined"


def _table_dropped(exc: BaseException) -> bool:
    """A packet table dropped by rotation while a statement of this run was being prepared or read it
    ("table id N is not defined", also from the log database's EXECUTE STATEMENT ... ON EXTERNAL,
    whose error carries it only in its text). Nothing of the run's work was lost: the run opens its
    connections again (which ends the log database's external attachment and its cached statements)
    and goes on; the packets' attempts are not counted."""
    if not isinstance(exc, DatabaseError):
        return False
    low = str(exc).lower()
    return GDS_TABLE_GONE in exc.gds_codes or ("table id" in low and "is not defined" in low)


def _is_conflict(exc: DatabaseError) -> bool:
    low = str(exc).lower()
    return "update conflicts" in low or "lock conflict" in low or "deadlock" in low or "lock time-out" in low


@dataclass
class PacketRow:
    """A waiting packet as the batch loop sees it (the log database reads the rest itself)."""

    id: int
    attempts: int = 0     # attempts that failed before
    failed: bool = False  # a row of LOG_FAILED (tried again)


@dataclass
class SourceReport:
    """What one source's transfer did (the per-source summary)."""

    source: str
    packets: int = 0
    field_rows: int = 0
    batches: int = 0
    already_in_log: int = 0
    failed: list[int] = field(default_factory=list)      # packets marked failed (attempts exhausted)
    retry_later: list[int] = field(default_factory=list)  # packets that failed and will be retried
    fast_check_ms: float | None = None
    nothing_new: bool = False
    seconds: float = 0.0
    passes: int = 0
    error: str | None = None
    exit_code: int = 0
    busy: bool = False
    stopped: bool = False         # a signal stopped this run after its current batch (nothing lost)

    def as_dict(self) -> dict:
        return {"source": self.source, "packets": self.packets, "field_rows": self.field_rows,
                "batches": self.batches, "already_in_log": self.already_in_log,
                "failed_packets": self.failed, "retry_later": self.retry_later,
                "fast_check_ms": self.fast_check_ms, "nothing_new": self.nothing_new,
                "seconds": round(self.seconds, 3), "passes": self.passes, "busy": self.busy,
                "stopped": self.stopped, "error": self.error}

    def line(self) -> str:
        if self.error:
            return f"{self.source}: FAILED: {self.error.splitlines()[0]}"
        if self.busy:
            return f"{self.source}: skipped, another transfer of this source is running"
        if self.stopped and self.fast_check_ms is None:
            return f"{self.source}: not started, stopped by a signal (its packets ship with the next run)"
        if self.nothing_new and not self.packets:
            return f"{self.source}: nothing new (fast check {self.fast_check_ms:.1f} ms)"
        text = (f"{self.source}: {self.packets} packets, {self.field_rows} field rows in {self.batches} "
                f"batch{'es' if self.batches != 1 else ''}")
        if self.already_in_log:
            text += f" ({self.already_in_log} were already in the log, only recorded)"
        if self.retry_later:
            text += f"; {len(self.retry_later)} failed, retried next run"
        if self.failed:
            text += f"; {len(self.failed)} marked failed after {MAX_ATTEMPTS} attempts (see `fbaudit retry`)"
        if self.stopped:
            text += "; stopped by a signal after its current batch (what is left ships with the next run)"
        return text + f" ({self.seconds:.2f} s)"


class SourceTransfer:
    """Transfer of one source: two connections (source and log), batches, the fast check."""

    def __init__(self, config: Config, spec: SourceSpec, *, batch: int = DEFAULT_BATCH,
                 stop: threading.Event | None = None):
        self.config = config
        self.spec = spec
        self.batch = batch
        self.p = config.prefix
        self.stop = stop or threading.Event()
        self.main: Database | None = None
        self.logdb: Database | None = None
        self.shipped: Shipped | None = None
        self.source_id: int | None = None
        self.fingerprint: str | None = None
        self.dict_version: int | None = None
        self.last_tier: int | None = None

    # -- connections ----------------------------------------------------
    def open(self) -> None:
        self.close()
        try:
            self.main = open_source(self.config, self.spec)
        except DatabaseError as exc:
            raise _as_connection(exc) from exc
        require_init(self.main, self.p)
        version = self.main.scalar(f"SELECT FIRST 1 SCHEMA_VERSION FROM {self.p}LOG_INFO")
        self.main.commit()
        if (version or 0) < SCHEMA_VERSION:
            raise FbauditError(f"{self.spec.describe()}: staging objects were made by an older development "
                               f"version of fbaudit (schema {version}, needs {SCHEMA_VERSION}); "
                               "disable the tables, drop the FBA_ objects and run `fbaudit init` again.")
        self.shipped = Shipped(self.main, self.p)       # once a connection: where the packets are
        self.main.commit()
        if self.shipped.missing:
            raise FbauditError(f"{self.spec.describe()}: {' and '.join(self.shipped.missing)} is missing (dropped "
                               "outside fbaudit): audited writes fail while the current packet table is missing. "
                               "Run `fbaudit init`, which creates it again, then `fbaudit sync`. Nothing was shipped.")
        if not self.shipped.upgraded:
            raise FbauditError(f"{self.spec.describe()}: staging objects were made by an older fbaudit (no "
                               f"{self.p}LOG_PENDING / {self.p}LOG_FAILED, where the transfer now keeps what it "
                               f"shipped, or no {self.p}LOG_PACKET_1 / {self.p}LOG_PACKET_2, the packet tables "
                               "rotation drops): run `fbaudit init` to upgrade them, then `fbaudit sync`; packets "
                               "already captured ship after that, exactly once. Nothing was shipped.")

    def open_log(self) -> None:
        """The log connection, opened when there is something to ship: with nothing new a run
        touches only the source (what makes a pass over hundreds of sources fast)."""
        if self.logdb is not None:
            return
        try:
            self.logdb = open_source(self.config, self.config.log, lock_timeout=LOG_LOCK_TIMEOUT)
        except DatabaseError as exc:
            raise _as_connection(exc) from exc
        row = self.logdb.query(f"SELECT ID, DICT_FINGERPRINT FROM {self.p}SOURCES WHERE NAME = ?", (self.spec.name,))
        self.logdb.commit()
        if not row:
            raise FbauditError(f"Source {self.spec.name!r} is not registered in the log database "
                               f"{self.config.log.describe()}; run `fbaudit init` first.")
        self.source_id, self.fingerprint = row[0]
        # Both databases in this fbaudit's form, checked once a connection, only when there is
        # something to ship (not on the fast check's path).
        if not packed_staging(self.main, self.p):
            raise FbauditError(f"{self.spec.describe()}: staging objects were made by an older fbaudit "
                               f"({self.p}LOG_PACKET.PAYLOAD is missing): run `fbaudit init`, then `fbaudit "
                               "sync`, to upgrade them; packets already captured ship after that, exactly once.")
        if not log_unpacks(self.logdb, self.p, rotating=True):
            raise FbauditError(f"The log database {self.config.log.describe()} was set up by an older fbaudit "
                               f"({self.p}PACKETS_INS cannot read the fields of newer packets); run `fbaudit "
                               "init` to upgrade it. Nothing was shipped.")

    def close(self) -> None:
        for db in (self.main, self.logdb):
            if db is not None:
                db.close()
        self.main = self.logdb = None

    # -- the fast check -------------------------------------------------
    def anything_new(self) -> bool:
        """A few milliseconds when nothing is new, whatever the number of processed packets.

        Tier 1: the packet sequence still equals SEEN_ID, a value up to which
        everything is settled: nothing new, one tiny query. Tier 2: three index
        lookups (a packet above SHIPPED_TO, one in a LOG_PENDING range, a failed
        packet to try again). When they find nothing and no transaction that
        could still commit a packet id <= the sequence value is alive (the
        oldest active transaction is newer than every transaction that existed
        when the value was read), the ranges are over and that value becomes
        the new SEEN_ID. Packet ids are not in commit order, so the second
        condition matters.
        """
        db, p = self.main, self.p
        row = db.query(f"SELECT GEN_ID({p}LOG_PACKET_ID, 0), SEEN_ID, SHIPPED_TO FROM {p}LOG_PACKET_FLAG")
        db.commit()
        gen, seen_id, shipped_to = row[0] if row else (1, -1, None)
        if shipped_to is None and row:
            convert_progress(db, p)         # first run after an upgrade: from the packets' STATE, once
            self.last_tier = 2
            return True
        if gen == seen_id:
            self.last_tier = 1
            return False
        self.last_tier = 2
        # isc_info_next_transaction is the number of the LAST transaction
        # started: every writer holding a packet id <= gen has a number <= it.
        last_tx = db.con.info.next_transaction
        with guard(db.spec):
            db.con.begin()
        oat = db.con.info.oat          # read before the lookups, inside their (read committed) transaction
        ranges = self.ranges()         # read before the lookups too: only these can be found over below
        pending = self.pending(shipped_to)
        if not pending and oat > last_tx:
            dead = dead_ranges(ranges, oat, db.con.info.next_transaction)
            try:   # compare-and-set: never overwrite what `fbaudit retry` or another transfer wrote meanwhile
                with guard(db.spec):
                    cur = db.con.cursor()
                    self.end_ranges(cur, dead)
                    cur.execute(f"SELECT COUNT(*) FROM {p}LOG_PENDING")
                    if not cur.fetchone()[0]:
                        cur.execute(f"UPDATE {p}LOG_PACKET_FLAG SET SEEN_ID = ? WHERE SEEN_ID = ?", (gen, seen_id))
                    cur.close()
            except DatabaseError as exc:
                if not _is_conflict(exc):
                    raise
                db.rollback()
                return True
        db.commit()
        return pending

    def ranges(self) -> list[tuple[int, int, int, float]]:
        """LOG_PENDING now: (ID_FROM, ID_TO, TX_LIMIT, age in seconds)."""
        return self.main.query(f"SELECT ID_FROM, ID_TO, TX_LIMIT, DATEDIFF(SECOND FROM CREATED_AT TO LOCALTIMESTAMP) "
                               f"FROM {self.p}LOG_PENDING")

    def end_ranges(self, cur, dead: list[tuple[int, int, int]]) -> None:
        """Delete ranges found over, and the pieces of them a transfer split off meanwhile (same
        mark, inside them). Never a range read after the packets were looked for: a concurrent
        transfer may just have recorded it, with a packet in it that this one did not look at."""
        for a, b, m in dead:
            cur.execute(f"DELETE FROM {self.p}LOG_PENDING WHERE ID_FROM >= ? AND ID_TO <= ? AND TX_LIMIT = ?", (a, b, m))
        for a, b, m in dead:
            if m == RESERVED:
                log.warning("[TRANSFER] %s: packet ids %d..%d were reserved more than a day ago by a writer that "
                            "never started (a baseline killed before it began); no longer waited for",
                            self.spec.name, a, b)

    def pending(self, shipped_to: int) -> bool:
        """Any packet to ship: above SHIPPED_TO, in a LOG_PENDING range, or failed and requeued."""
        db, p, tables = self.main, self.p, self.shipped.tables
        not_failed = f"NOT EXISTS (SELECT 1 FROM {p}LOG_FAILED f WHERE f.ID = x.ID)"
        tests = ([f"EXISTS (SELECT 1 FROM {t} x WHERE x.ID > ? AND {not_failed})" for t in tables]
                 + [f"EXISTS (SELECT 1 FROM {p}LOG_PENDING g JOIN {t} x ON x.ID BETWEEN g.ID_FROM AND g.ID_TO "
                    f"WHERE x.ID <= ? AND {not_failed})" for t in tables]
                 + [f"EXISTS (SELECT 1 FROM {p}LOG_FAILED f WHERE f.STATE = 0)"])
        return bool(db.query(f"SELECT FIRST 1 1 FROM RDB$DATABASE WHERE {' OR '.join(tests)}",
                             (shipped_to,) * (2 * len(tables))))

    # -- one pass -------------------------------------------------------
    def run_pass(self, report: SourceReport) -> None:
        """All packets new at the start of the pass, in batches; each packet tried at most once.

        First the exceptions (packets that appeared in a LOG_PENDING range, failed
        packets requeued), then the packets above SHIPPED_TO up to the sequence
        value read at the start (bounded: a pass under steady load ends and frees
        its worker slot). After each batch SHIPPED_TO moves past it in the source,
        and the ids of the batch's range that were not there are kept in
        LOG_PENDING, unless no transaction that could still write them is alive.
        """
        db, p = self.main, self.p
        t0 = time.perf_counter()
        report.passes += 1
        self.open_log()
        self.sync_dictionary()
        upto = db.scalar(f"SELECT GEN_ID({p}LOG_PACKET_ID, 0) FROM RDB$DATABASE")
        db.commit()
        mark = db.con.info.next_transaction      # every writer of an id <= upto has a number <= mark
        with guard(db.spec):
            db.con.begin()
        oat = db.con.info.oat
        shipped_to = db.scalar(f"SELECT SHIPPED_TO FROM {p}LOG_PACKET_FLAG")
        if shipped_to is None:
            db.commit()
            convert_progress(db, p)
            shipped_to = db.scalar(f"SELECT SHIPPED_TO FROM {p}LOG_PACKET_FLAG")
        ranges = self.ranges()        # before the packets in them are read: only these may end below
        shipped = self.shipped
        again = [PacketRow(i, n, bool(f)) for i, n, f in db.query(
            shipped.each(
                f"SELECT x.ID, 0, 0 FROM {p}LOG_PENDING g JOIN {{packets}} x ON x.ID BETWEEN g.ID_FROM AND g.ID_TO "
                f"WHERE x.ID <= ? AND NOT EXISTS (SELECT 1 FROM {p}LOG_FAILED f WHERE f.ID = x.ID) "
                f"UNION ALL SELECT f.ID, f.ATTEMPTS, 1 FROM {p}LOG_FAILED f JOIN {{packets}} x ON x.ID = f.ID "
                f"WHERE f.STATE = 0") + " ORDER BY 1", (shipped_to,) * len(shipped.tables))]
        db.commit()
        for k in range(0, len(again), self.batch):
            if self.stop.is_set():
                break
            chunk = again[k:k + self.batch]
            self.ship(chunk, id_runs([pk.id for pk in chunk]), report, covered=None, mark=mark)
        if not self.stop.is_set():
            # Every packet a range read above could hold, once its writers have all ended, was read
            # above: such a range is over.
            dead = dead_ranges(ranges, oat, db.con.info.next_transaction)
            if dead:
                self.book(lambda cur: (self.lock(cur, shipped_to=None), self.end_ranges(cur, dead)))
        done_again = {pk.id for pk in again}      # shipped (or failed) above: not read again below
        settled = oat > mark
        after = shipped_to
        while not self.stop.is_set() and after < upto:
            # The first batch of ids of each packet table (one index walk each), merged: every id up
            # to the batch's last is among them.
            rows = sorted(db.query(shipped.each(
                f"SELECT ID FROM (SELECT FIRST {int(self.batch)} x.ID FROM {{packets}} x WHERE x.ID > ? AND x.ID <= ? "
                f"AND NOT EXISTS (SELECT 1 FROM {p}LOG_FAILED f WHERE f.ID = x.ID) ORDER BY x.ID)"),
                (after, upto) * len(shipped.tables)))[:self.batch]
            skip = [r[0] for r in db.query(f"SELECT ID FROM {p}LOG_FAILED WHERE ID > ? AND ID <= ?", (after, upto))]
            db.commit()
            last = rows[-1][0] if len(rows) == self.batch else upto
            packets = [PacketRow(r[0], 0) for r in rows if r[0] not in done_again]
            skip += [r[0] for r in rows if r[0] in done_again]
            # PACKETS_INS reads whole id ranges: the failed packets (skipped) are cut out of them.
            runs = cut([(packets[0].id, packets[-1].id)], [(i, i) for i in skip]) if packets else []
            self.ship(packets, runs, report, covered=(after, last), mark=None if settled else mark,
                      known=done_again)
            after = last
        self.sync_dictionary()      # a table enabled during the pass: its names arrive with its packets
        report.seconds += time.perf_counter() - t0

    def ship(self, packets: list[PacketRow], runs: list[tuple[int, int]], report: SourceReport, *,
             covered: tuple[int, int] | None, mark: int | None, known: set[int] = frozenset()) -> None:
        """One batch; on a packet's own error, its packets one by one (failures recorded, the rest shipped).
        Then the source's record of what was shipped, in one transaction (``book``); ``known``: ids
        of the covered range this pass already shipped (or recorded failed) before."""
        t0 = time.perf_counter()
        seen: set[int] = set()
        failures: dict[int, tuple[int, str]] = {}
        present = rows = 0
        try:
            if runs:
                done, was, rows = self.load(runs)
                seen.update(done)
                present = len(was)
        except DatabaseError as exc:
            if is_connection_error(exc):
                raise _as_connection(exc) from exc
            if _is_conflict(exc):
                raise SourceBusy(str(exc)) from exc
            if _table_dropped(exc):
                raise
            if _external_attach_error(exc):
                raise FbauditError(
                    f"The log database {self.config.log.describe()} could not attach to source "
                    f"{self.spec.name!r} at {self.spec.external_database or self.spec.database!r} to pull packets "
                    f"(EXECUTE STATEMENT ... ON EXTERNAL). Check `external_database` in the source's config: it is "
                    f"the source as the LOG server reaches it, and the user/password must be valid there.\n"
                    f"  Firebird said: {_first_line(exc)}") from exc
            if len(packets) == 1:
                failures[packets[0].id] = (packets[0].attempts + 1, _first_line(exc)[:1000])
            else:
                log.info("[TRANSFER] %s: batch of %d failed (%s); shipping its packets one by one",
                         self.spec.name, len(packets), _first_line(exc))
                for pk in packets:
                    try:
                        done, was, n = self.load([(pk.id, pk.id)])
                    except DatabaseError as one:
                        if is_connection_error(one):
                            raise _as_connection(one) from one
                        if _is_conflict(one):
                            raise SourceBusy(str(one)) from one
                        if _table_dropped(one):
                            raise
                        failures[pk.id] = (pk.attempts + 1, _first_line(one)[:1000])
                        continue
                    seen.update(done)
                    present += len(was)
                    rows += n
        self.record(packets, seen, failures, covered, mark, known)
        shipped = len(seen) - present
        report.packets += shipped
        report.already_in_log += present
        report.field_rows += rows
        if seen:
            report.batches += 1
        for pid, (attempts, message) in failures.items():
            if attempts >= MAX_ATTEMPTS:
                report.failed.append(pid)
                log.warning("[TRANSFER] %s: packet %d marked failed after %d attempts: %s",
                            self.spec.name, pid, attempts, message)
            else:
                report.retry_later.append(pid)
                log.warning("[TRANSFER] %s: packet %d failed (attempt %d of %d): %s",
                            self.spec.name, pid, attempts, MAX_ATTEMPTS, message)
        if seen:
            log.info("[TRANSFER] %s: batch %d: %d packets (%d..%d), %d field rows%s, %.3f s",
                     self.spec.name, report.batches, shipped, min(seen), max(seen), rows,
                     f", {present} already in the log" if present else "", time.perf_counter() - t0)

    def load(self, runs: list[tuple[int, int]]) -> tuple[list[int], set[int], int]:
        """Step 2: one log transaction.

        Returns (packets now in the log, those already there before, field
        rows copied). The log database pulls the packets of each id run and
        their field rows itself (PACKETS_INS, BLOB_INS): no row passes through
        Python, only packet ids come back.
        """
        ldb = self.logdb
        p, sid = self.p, self.source_id
        spec = self.spec
        creds = (spec.external_database or spec.database, spec.user, spec.password() or "", spec.role)
        try:
            # Lock this source's row: a second transfer of the same source waits here.
            ldb.execute(f"UPDATE {p}SOURCES SET LAST_TRANSFER_AT = LOCALTIMESTAMP WHERE ID = ?", (sid,))
            seen = []
            for lo, hi in runs:
                seen += ldb.query(f"SELECT PACKET_ID, DATA_TABLE, NEW_, FIELDS_ FROM {p}PACKETS_INS(?, ?, ?, ?, ?, ?, ?)",
                                  (sid, lo, hi, *creds))
            reused = [pid for pid, _dt, new, _f in seen if new == 2]
            if reused:
                top = ldb.scalar(f"SELECT MAX(PACKET_ID) FROM {p}LOG_PACKET WHERE SOURCE_ID = ?", (sid,))
                raise FbauditError(
                    f"Source {spec.name!r}: packet {reused[0]} is already in the log database "
                    f"{self.config.log.describe()} as a DIFFERENT change: the source's packet ids restarted "
                    f"(its staging objects were re-initialised, or it was restored from an older backup). "
                    f"Nothing was shipped. Continue the numbering above what the log holds, in the source: "
                    f"SET GENERATOR {p}LOG_PACKET_ID TO {top}; (packets already captured with lower "
                    f"ids then need their ids moved up too, or a new source name in the config).")
            present = {pid for pid, _dt, new, _f in seen if new == 0}
            # Packed packets got their field rows from PACKETS_INS; only packets written before the
            # packed change (FIELDS_ NULL) have rows in LOG_<DATA_TABLE>, which BLOB_INS copies.
            rows = sum(f or 0 for _pid, _dt, new, f in seen if new == 1)
            by_table: dict[int, list[int]] = {}
            for pid, dt, new, f in seen:
                if new == 1 and f is None:
                    by_table.setdefault(dt, []).append(pid)
            for dt, ids in sorted(by_table.items()):
                rows += ldb.scalar(f"SELECT ROWS_ FROM {p}BLOB_INS(?, ?, ?, ?, ?, ?, ?, ?)",
                                   (sid, dt, min(ids), max(ids), *creds)) or 0
            shipped = len(seen) - len(present)
            if shipped:
                ldb.execute(f"UPDATE {p}SOURCES SET PACKETS = PACKETS + ?, FIELD_ROWS = FIELD_ROWS + ?, "
                            f"LAST_PACKET_ID = MAXVALUE(COALESCE(LAST_PACKET_ID, 0), ?) WHERE ID = ?",
                            (shipped, rows, max(r[0] for r in seen), sid))
            ldb.commit()
            return [r[0] for r in seen], present, rows
        except BaseException:
            ldb.rollback()
            raise

    def record(self, packets: list[PacketRow], seen: set[int], failures: dict[int, tuple[int, str]],
               covered: tuple[int, int] | None, mark: int | None, known: set[int] = frozenset()) -> None:
        """Step 3, in the source, one transaction and no packet touched: what the batch shipped.

        Shipped and failed ids leave every LOG_PENDING range; failed ones go to
        LOG_FAILED, shipped ones leave it. A batch of new packets moves
        SHIPPED_TO from ``covered[0]`` to ``covered[1]`` (compare-and-set) and,
        unless ``mark`` is None (no writer of these ids can still be alive),
        keeps the ids of that range it did not see as a LOG_PENDING range.
        A kill before this commits leaves the batch to be read again: the log
        database's key absorbs it.
        """
        p = self.p
        gone = seen | set(failures)
        retried = [pk.id for pk in packets if pk.failed and pk.id in seen]

        def work(cur) -> None:
            # First the flag row: a transfer or a reservation of ids (staging.reserve_ids) holding it
            # has committed before the ranges are read below, so no range is recorded over theirs.
            self.lock(cur, shipped_to=covered[0] if covered else None, to=covered[1] if covered else None)
            lo = min([*gone, covered[0] + 1] if covered else gone, default=None)
            hi = max([*gone, covered[1]] if covered else gone, default=None)
            ranges = []
            if lo is not None:
                cur.execute(f"SELECT ID_FROM, ID_TO, TX_LIMIT FROM {p}LOG_PENDING WHERE ID_TO >= ? AND ID_FROM <= ? "
                            f"ORDER BY ID_FROM", (lo, hi))
                ranges = cur.fetchall()
            for a, b, m in ranges:
                rest = subtract([(a, b)], gone)
                if rest != [(a, b)]:
                    cur.execute(f"DELETE FROM {p}LOG_PENDING WHERE ID_FROM = ?", (a,))
                    for x, y in rest:
                        cur.execute(f"INSERT INTO {p}LOG_PENDING (ID_FROM, ID_TO, TX_LIMIT) VALUES (?, ?, ?)", (x, y, m))
            for pid, (attempts, message) in failures.items():
                cur.execute(f"UPDATE OR INSERT INTO {p}LOG_FAILED (ID, STATE, ATTEMPTS, LAST_ATTEMPT, LAST_ERROR) "
                            f"VALUES (?, ?, ?, LOCALTIMESTAMP, ?) MATCHING (ID)",
                            (pid, 2 if attempts >= MAX_ATTEMPTS else 0, attempts, message))
            for k in range(0, len(retried), 1000):
                ids = ", ".join(str(int(i)) for i in retried[k:k + 1000])
                cur.execute(f"DELETE FROM {p}LOG_FAILED WHERE ID IN ({ids})")
            if covered:
                a, b = covered
                if mark is not None:
                    cur.execute(f"SELECT ID FROM {p}LOG_FAILED WHERE ID > ? AND ID <= ?", (a, b))
                    failed = [r[0] for r in cur.fetchall()]
                    kept = [(x, y) for x, y, _m in ranges]
                    for x, y in cut(subtract([(a + 1, b)], gone | set(failed) | set(known)), kept):
                        cur.execute(f"INSERT INTO {p}LOG_PENDING (ID_FROM, ID_TO, TX_LIMIT) VALUES (?, ?, ?)",
                                    (x, y, mark))
        self.book(work)

    def lock(self, cur, *, shipped_to: int | None, to: int | None = None) -> None:
        """Take the flag row for this transaction: move SHIPPED_TO from ``shipped_to`` to ``to``
        (compare-and-set), or only lock it when ``shipped_to`` is None. Another transfer that moved
        it meanwhile: SourceBusy (this pass ends; the next one reads again)."""
        if shipped_to is None:
            cur.execute(f"UPDATE {self.p}LOG_PACKET_FLAG SET SHIPPED_TO = SHIPPED_TO")
            return
        cur.execute(f"UPDATE {self.p}LOG_PACKET_FLAG SET SHIPPED_TO = ? WHERE SHIPPED_TO = ?", (to, shipped_to))
        if cur.affected_rows != 1:
            raise SourceBusy("another transfer of this source moved its progress meanwhile")

    def book(self, work) -> None:
        """Run ``work(cursor)`` in one transaction of the source and commit it."""
        db = self.main
        try:
            with guard(db.spec):
                cur = db.con.cursor()
                work(cur)
                cur.close()
            db.commit()
        except DatabaseError as exc:
            db.rollback()
            if _is_conflict(exc):   # another transfer records the same packets: they are in the log already
                raise SourceBusy(str(exc)) from exc
            raise _as_connection(exc) if is_connection_error(exc) else exc
        except BaseException:
            db.rollback()
            raise

    # -- name dictionary --------------------------------------------------
    def sync_dictionary(self) -> None:
        """Copy the source's table/field dictionary into the log when it changed.

        Rows are upserted, never deleted, so history of dropped tables and
        retired fields keeps its names.
        """
        db, ldb, p = self.main, self.logdb, self.p
        # O(1) on the hot path: the DICT_VERSION sequence moves with every
        # dictionary change. Reading the dictionary each pass cost ~0.2 s with
        # 4,000 fields; the fingerprint (once per connection or change) ~20 ms.
        version = db.scalar(f"SELECT GEN_ID({p}DICT_VERSION, 0) FROM RDB$DATABASE")
        if version == self.dict_version:
            db.commit()
            return
        fingerprint = "/".join(str(v) for v in db.query(
            f"SELECT (SELECT COUNT(*) FROM {p}LOG_TABLES), (SELECT COALESCE(SUM(MOD(HASH(NUM_TABLE || '|' || "
            f"TABLE_NAME || '|' || COALESCE(KEY_COLUMNS, '') || '|' || COALESCE(AUTHOR_COLUMN, '') || '|' || "
            f"ENABLED), 1000000007)), 0) FROM {p}LOG_TABLES), (SELECT COUNT(*) FROM {p}LOG_FIELDS), "
            f"(SELECT COALESCE(SUM(MOD(HASH(NUM_TABLE || '|' || NUM_POLE || '|' || FIELD_NAME || '|' || FIELD_TYPE "
            f"|| '|' || FIELD_KIND || '|' || RETIRED), 1000000007)), 0) FROM {p}LOG_FIELDS) FROM RDB$DATABASE")[0])
        if fingerprint == self.fingerprint:
            db.commit()
            self.dict_version = version
            return
        tables = db.query(f"SELECT NUM_TABLE, TABLE_NAME, KEY_COLUMNS, AUTHOR_COLUMN, ENABLED FROM {p}LOG_TABLES")
        fields = db.query(f"SELECT NUM_TABLE, NUM_POLE, FIELD_NAME, FIELD_TYPE, FIELD_KIND, RETIRED FROM {p}LOG_FIELDS")
        db.commit()
        try:
            # The source's row first, as a batch takes it: a second transfer of this source copying the
            # same new names waits here (then finds them, or is busy), instead of failing on their key.
            ldb.execute(f"UPDATE {p}SOURCES SET DICT_FINGERPRINT = DICT_FINGERPRINT WHERE ID = ?", (self.source_id,))
            cur = ldb.con.cursor()
            with guard(ldb.spec):
                if tables:
                    cur.executemany(f"UPDATE OR INSERT INTO {p}DICT_TABLES (SOURCE_ID, NUM_TABLE, TABLE_NAME, "
                                    f"KEY_COLUMNS, AUTHOR_COLUMN, ENABLED) VALUES (?, ?, ?, ?, ?, ?) "
                                    f"MATCHING (SOURCE_ID, NUM_TABLE)",
                                    [(self.source_id, *r) for r in tables])
                if fields:
                    cur.executemany(f"UPDATE OR INSERT INTO {p}DICT_FIELDS (SOURCE_ID, NUM_TABLE, NUM_POLE, "
                                    f"FIELD_NAME, FIELD_TYPE, FIELD_KIND, RETIRED) VALUES (?, ?, ?, ?, ?, ?, ?) "
                                    f"MATCHING (SOURCE_ID, NUM_TABLE, NUM_POLE)",
                                    [(self.source_id, *r) for r in fields])
                cur.close()
            ldb.execute(f"UPDATE {p}SOURCES SET DICT_FINGERPRINT = ? WHERE ID = ?", (fingerprint, self.source_id))
            ldb.commit()
        except DatabaseError as exc:
            ldb.rollback()
            if _is_conflict(exc):
                raise SourceBusy(str(exc)) from exc
            raise _as_connection(exc) from exc
        except BaseException:
            ldb.rollback()
            raise
        self.fingerprint, self.dict_version = fingerprint, version
        log.info("[TRANSFER] %s: name dictionary copied to the log database (%d tables, %d fields)",
                 self.spec.name, len(tables), len(fields))


def id_runs(ids: list[int]) -> list[tuple[int, int]]:
    """Sorted runs of consecutive integers: [1, 2, 3, 7, 9, 10] -> [(1, 3), (7, 7), (9, 10)]."""
    runs: list[tuple[int, int]] = []
    for i in sorted(set(ids)):
        if runs and i == runs[-1][1] + 1:
            runs[-1] = (runs[-1][0], i)
        else:
            runs.append((i, i))
    return runs


def _first_line(exc: BaseException) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__


def _as_connection(exc: DatabaseError) -> FbauditError:
    if is_connection_error(exc):
        return ConnectionLost(str(exc))
    return exc


# --------------------------------------------------------------------------
# Running over sources
# --------------------------------------------------------------------------
def _retrying(retries: int, name: str, stop: threading.Event) -> tenacity.Retrying:
    def before_sleep(state: tenacity.RetryCallState) -> None:
        log.warning("[TRANSFER] %s: %s; retrying in %.1f s (attempt %d of %d)", name,
                    _first_line(state.outcome.exception()), state.next_action.sleep,
                    state.attempt_number + 1, retries)
    return tenacity.Retrying(
        retry=tenacity.retry_if_exception(lambda e: is_connection_error(e) or _table_dropped(e)),
        stop=(tenacity.stop_after_attempt(max(1, retries)) | tenacity.stop_before_delay(3600)
              | tenacity.stop_when_event_set(stop)),
        wait=tenacity.wait_exponential(multiplier=0.5, max=8),
        sleep=lambda s: stop.wait(s),
        before_sleep=before_sleep,
        reraise=True,
    )


def transfer_source(config: Config, spec: SourceSpec, *, batch: int = DEFAULT_BATCH,
                    retries: int = DEFAULT_RETRIES, stop: threading.Event | None = None) -> SourceReport:
    """One run for one source: fast check, then a pass when anything may be new."""
    stop = stop or threading.Event()
    report = SourceReport(spec.name)
    if stop.is_set():               # stopped before this source's turn: it waits for the next run
        report.stopped = True
        return report
    job = SourceTransfer(config, spec, batch=batch, stop=stop)
    try:
        for attempt in _retrying(retries, spec.name, stop):
            with attempt:
                job.open()
                t0 = time.perf_counter()
                new = job.anything_new()
                report.fast_check_ms = (time.perf_counter() - t0) * 1000
                if not new:
                    report.nothing_new = True
                    log.info("[TRANSFER] %s: nothing new (fast check %.1f ms)", spec.name, report.fast_check_ms)
                    break
                job.run_pass(report)
    except SourceBusy:
        report.busy = True
        log.info("[TRANSFER] %s: another transfer of this source is running; skipped", spec.name)
    except FbauditError as exc:
        _failed(report, exc, config, spec)
    finally:
        job.close()
    report.stopped = stop.is_set()
    return report


def _failed(report: SourceReport, exc: FbauditError, config: Config, spec: SourceSpec) -> None:
    """Record a source's failure in its report: the message for the admin and the exit code."""
    if is_connection_error(exc):
        report.error = (f"gave up after retrying: {exc}\n  nothing was lost: the packets wait in the source and "
                        f"the next run ships them. Check that both databases are reachable: source "
                        f"{spec.describe()}, log {config.log.describe()}.")
        report.exit_code = ConnectionLost.exit_code
    else:
        report.error, report.exit_code = str(exc), exc.exit_code
    log.error("[TRANSFER] %s: FAILED: %s", spec.name, _first_line(exc))


def follow_source(config: Config, spec: SourceSpec, *, batch: int, retries: int, poll: float,
                  stop: threading.Event, gate: threading.Semaphore, report: SourceReport) -> None:
    """--follow for one source: wake on the triggers' event, else every ``poll`` seconds."""
    block_signals()
    event = f"{config.prefix}NEW_PACKET"
    while not stop.is_set():
        job = SourceTransfer(config, spec, batch=batch, stop=stop)
        try:
            for attempt in _retrying(retries, spec.name, stop):
                with attempt:
                    job.open()
                    collector = job.main.con.event_collector([event])
                    collector.begin()
                    try:
                        while not stop.is_set():
                            collector.flush()
                            with gate:
                                if job.anything_new():
                                    job.run_pass(report)
                            report.error, report.busy = None, False     # this check worked: the source is fine
                            waited = 0.0
                            while not stop.is_set() and waited < poll:
                                if collector.wait(min(0.5, poll - waited)).get(event):
                                    break
                                waited += 0.5
                    finally:
                        collector.close()
        except SourceBusy:
            report.busy = True
            log.info("[TRANSFER] %s: another transfer of this source is running; trying again", spec.name)
            stop.wait(poll)
        except FbauditError as exc:
            _failed(report, exc, config, spec)
            stop.wait(poll)
        finally:
            job.close()
        if report.error and stop.is_set():
            break


def outcome(report: SourceReport, packets: int | None = None, failing: int | None = None) -> str:
    """A run's outcome as TRANSFER_RUNS and `fbaudit status` name it (``packets``/``failing``:
    what happened since the last record, for --follow)."""
    packets = report.packets if packets is None else packets
    failing = len(report.failed) + len(report.retry_later) if failing is None else failing
    if report.error:
        return "failed"
    if report.busy:
        return "busy"
    if failing:
        return "some_failed"          # packets that failed this run (the others shipped)
    return "shipped" if packets else "nothing_new"


def record_runs(config: Config, reports: list[SourceReport],
                previous: dict[str, tuple[int, int]] | None = None) -> None:
    """Each source's run into the log database's TRANSFER_RUNS, in one transaction.

    What `fbaudit status` shows as the last transfer. Never fails the run: when
    the log database is down (the run failed for that reason) or was made by
    an older fbaudit without the table, it is logged and skipped.
    """
    if not reports:
        return
    p = config.prefix
    rows = []
    for r in reports:         # --follow: what happened since the last record (``previous``, updated here)
        if r.stopped and r.fast_check_ms is None and not r.error:
            continue          # stopped before its turn: no run to record (its last one stays what status shows)
        packets, failing = r.packets, len(r.failed) + len(r.retry_later)
        if previous is not None:
            before = previous.get(r.source, (0, 0))
            previous[r.source] = (packets, failing)
            packets, failing = packets - before[0], failing - before[1]
        rows.append((r, packets, failing))
    try:
        with open_source(config, config.log, lock_timeout=LOG_LOCK_TIMEOUT) as ldb:
            if not table_exists(ldb, f"{p}TRANSFER_RUNS"):
                log.info("[TRANSFER] the log database has no %sTRANSFER_RUNS table yet: run `fbaudit init` "
                         "so that `fbaudit status` can show the last transfer", p)
                return
            with guard(ldb.spec):
                cur = ldb.con.cursor()
                for r, packets, failing in rows:
                    failed = r.error is not None
                    cur.execute(
                        f"UPDATE OR INSERT INTO {p}TRANSFER_RUNS (SOURCE_NAME, RUN_AT, OUTCOME, PACKETS, "
                        f"FAILED_PACKETS, SECONDS, MESSAGE, LAST_OK_AT) VALUES (?, LOCALTIMESTAMP, ?, ?, ?, ?, ?, "
                        + (f"(SELECT LAST_OK_AT FROM {p}TRANSFER_RUNS WHERE SOURCE_NAME = ?)" if failed
                           else "LOCALTIMESTAMP") + ") MATCHING (SOURCE_NAME)",
                        (r.source, outcome(r, packets, failing), packets, failing, round(r.seconds, 3),
                         (r.error or "")[:1000] or None) + ((r.source,) if failed else ()))
                cur.close()
            ldb.commit()
    except FbauditError as exc:
        log.warning("[TRANSFER] could not record the run in the log database (status will show the previous "
                    "one): %s", _first_line(exc))


def transfer(config: Config, *, source: str | None = None, batch: int = DEFAULT_BATCH,
             retries: int = DEFAULT_RETRIES, workers: int = 4, follow: bool = False,
             poll: float = DEFAULT_POLL, stop: threading.Event | None = None,
             on_start: Callable[[], None] | None = None) -> Result:
    """Ship new packets of every (or one) source; one broken source never stops the others."""
    if batch < 1:
        raise FbauditError(f"--batch must be at least 1, not {batch}")
    if workers < 1:
        raise FbauditError(f"--workers must be at least 1, not {workers}")
    specs = config.source(source)
    stop = stop or threading.Event()
    res = Result({"sources": [], "follow": follow})
    reports: list[SourceReport]
    if follow:
        gate = threading.Semaphore(workers)
        reports = [SourceReport(s.name) for s in specs]
        threads = [threading.Thread(target=follow_source, name=f"transfer-{s.name}", daemon=True,
                                    kwargs=dict(config=config, spec=s, batch=batch, retries=retries, poll=poll,
                                                stop=stop, gate=gate, report=r))
                   for s, r in zip(specs, reports)]
        log.info("[TRANSFER] following %d source(s); stop with Ctrl+C or SIGTERM", len(specs))
        for t in threads:
            t.start()
        if on_start:
            on_start()
        recorded, previous = time.monotonic(), {}
        while any(t.is_alive() for t in threads):
            for t in threads:
                t.join(0.2)
            if time.monotonic() - recorded >= RECORD_EVERY:     # status shows a follower as alive
                record_runs(config, reports, previous)
                recorded = time.monotonic()
        record_runs(config, reports, previous)
        log.info("[TRANSFER] stopped")
    else:
        with worker_pool(min(workers, len(specs)), "transfer") as pool:
            reports = list(pool.map(lambda s: transfer_source(config, s, batch=batch, retries=retries, stop=stop),
                                    specs))
    record_runs(config, reports)
    for r in reports:
        res.data["sources"].append(r.as_dict())
        res.lines.append(r.line())
        if r.error:
            err = ConnectionLost(r.error) if r.exit_code == 4 else FbauditError(r.error)
            err.exit_code = r.exit_code or 1
            res.errors.append((r.source, err))
    res.data["packets"] = sum(r.packets for r in reports)
    res.data["field_rows"] = sum(r.field_rows for r in reports)
    res.data["failed_packets"] = sum(len(r.failed) for r in reports)
    return res


def retry(config: Config, *, source: str | None = None, packets: list[int] | None = None,
          all_failed: bool = False) -> Result:
    """Requeue failed packets (LOG_FAILED STATE 2 -> 0, attempts reset)."""
    if not packets and not all_failed:
        raise FbauditError("Say which packets to requeue: packet ids, or --all-failed.")
    if packets and all_failed:
        raise FbauditError("Give packet ids or --all-failed, not both.")
    specs = [one_source(config, source, why="Packet ids are per source")] if packets else config.source(source)
    res = Result({"sources": []})
    p = config.prefix
    for spec in specs:
        with open_source(config, spec) as db:
            require_init(db, p)
            shipped = Shipped(db, p)
            if not shipped.current:
                db.rollback()
                raise FbauditError(f"{spec.name}: staging objects were made by an older fbaudit; run `fbaudit init` "
                                   "(then `fbaudit transfer`, which moves the failed packets over), then retry.")
            if all_failed:
                ids = [r[0] for r in db.query(f"SELECT ID FROM {p}LOG_FAILED WHERE STATE = 2 ORDER BY ID")]
            else:
                marks = ", ".join("?" * len(packets))
                found = dict(db.query(f"SELECT ID, STATE_ FROM ({shipped.unshipped('p.ID', f'p.ID IN ({marks})')})",
                                      list(packets) * shipped.parts))
                exist = {r[0] for r in db.query(shipped.each(f"SELECT ID FROM {{packets}} WHERE ID IN ({marks})"),
                                                list(packets) * len(shipped.tables))}
                problems = [f"{i} (no such packet)" if i not in exist else f"{i} (not failed: "
                            f"{'waiting' if i in found else 'already transferred'})"
                            for i in packets if found.get(i) != 2]
                if problems:
                    db.rollback()
                    raise FbauditError(f"{spec.name}: nothing requeued; these packets cannot be retried: "
                                       + ", ".join(problems))
                ids = list(packets)
            if ids:
                cur = db.con.cursor()
                with guard(db.spec):
                    cur.executemany(f"UPDATE {p}LOG_FAILED SET STATE = 0, ATTEMPTS = 0, LAST_ERROR = NULL "
                                    f"WHERE ID = ? AND STATE = 2", [(i,) for i in ids])
                    cur.close()
                # Make the next fast check look at LOG_FAILED.
                update_flag(db, f"UPDATE {p}LOG_PACKET_FLAG SET SEEN_ID = -1")
            db.commit()
            res.data["sources"].append({"source": spec.name, "requeued": ids})
            res.lines.append(f"{spec.name}: requeued {len(ids)} failed packet{'s' if len(ids) != 1 else ''}"
                             + (f" ({', '.join(map(str, ids[:20]))}{' …' if len(ids) > 20 else ''})" if ids else "")
                             + ("; run `fbaudit transfer` to ship them" if ids else ""))
            log.info("[TRANSFER] %s", res.lines[-1])
    return res
