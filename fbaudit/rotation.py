"""Rotation: empty the data table that is out of use by DROP + CREATE, under live load.

The protocol (docs/rotation.md; the Firebird behaviour it is built on is
measured in tests/test_rotation.py), one step per transaction, each step recorded in
LOG_ROTATION so a postponed rotation resumes where it stopped:

1. switch   LOG_INFO.ID_TABLE to the other data table; remember the last
            transaction number started when the switch committed (SWITCH_TX).
2. wait     until no read-write transaction numbered <= SWITCH_TX is alive
            (MON$TRANSACTIONS): only those can still have read the old
            ID_TABLE (a SNAPSHOT keeps it for its whole life).
3. redirect V_LOG_<old> to LOG_3 and re-create every trigger that uses the
            view (same source): each attachment recompiles it on next use, so
            no compiled request references LOG_<old> any more.
4. verify   every packet of LOG_<old> is in the log database (staging.Shipped) and
            every row of LOG_<old> belongs to such a packet (else postpone:
            waiting for the transfer, or failed packets to retry).
5. drop     LOG_<old> and LOG_PACKET_<old> (the audit triggers' packets, all
            shipped: checked again in one SNAPSHOT view), create them again
            with their privileges, and delete the shipped packets of LOG_PACKET
            (baselines, events), in ONE transaction with a lock timeout;
            "object in use" -> back off, retry, postpone.
6. restore  V_LOG_<old> onto LOG_<old>, re-create the triggers again; rows that
            reached LOG_3 (none, unless the protocol was broken) move back.

Nothing here waits on an application lock without a timeout, and nothing an
application transaction does can fail because of it.
"""
from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta

import tenacity
from firebird.driver import DatabaseError as DriverDatabaseError
from firebird.driver import Isolation, tpb

from . import templates
from .catalog import table_exists
from .config import Config, SourceSpec
from .db import LOCK_TIMEOUT, Database, crash_risk, describe_writers, own_ddl, wait_for_old_writers, wrap
from .errors import DatabaseError, FbauditError, RotationBusy
from .idents import quote_ident
from .objects import grant_packet_tables, require_init, upgrades
from .sources import Result, open_source, worker_pool
from .staging import Shipped

log = logging.getLogger("fbaudit.rotate")

DROP_LOCK_TIMEOUT = 5        # seconds the DROP waits for an attachment to let go of the table
DROP_ATTEMPTS = 3            # tries per run before the drop is postponed
EARLY_MAX = timedelta(minutes=30)   # a run up to this much before the period is over counts as due
POLL = 0.5                   # longest pause between checks while waiting
POLL_FIRST = 0.05            # first pause; each next one doubles up to POLL
PHASES = ("switched", "redirected", "dropped", "done")
GDS_IN_USE = 335544453       # object ... is in use
GDS_LOCK_CONFLICT = (335544345, 335544336, 335544510)   # lock conflict / deadlock / lock time-out


@dataclass
class RotationReport:
    source: str
    outcome: str = "not_due"            # not_due, waiting (an upgrade), done, postponed, busy, failed
    rotation_id: int | None = None
    phase: str | None = None
    old_table: int | None = None
    new_table: int | None = None
    message: str = ""
    rows_dropped: int | None = None
    packets_deleted: int | None = None
    seconds: float = 0.0
    steps: list[dict] = field(default_factory=list)
    completed: list[int] = field(default_factory=list)   # postponed rotations this run completed before this one
    firebird: str | None = None         # the engine's version (db.crash_risk)

    def as_dict(self) -> dict:
        return asdict(self)


def _pauses():
    """Pauses between checks while waiting: POLL_FIRST, doubling up to POLL."""
    pause = POLL_FIRST
    while True:
        yield pause
        pause = min(pause * 2, POLL)


# RDB$USER_PRIVILEGES: grantee types and privileges a table's GRANT can name again.
GRANTEE_KINDS = {1: "VIEW", 2: "TRIGGER", 5: "PROCEDURE", 8: "USER", 13: "ROLE", 15: "FUNCTION", 18: "PACKAGE"}
PRIVILEGE_WORDS = {"S": "SELECT", "I": "INSERT", "U": "UPDATE", "D": "DELETE", "R": "REFERENCES"}


def privileges(cur, table: str) -> list[tuple]:
    """The privileges on a table, but the current user's own (who creates it again, so owns it):
    (grantee, grantee type, privilege, grant option, column or None)."""
    cur.execute("SELECT TRIM(TRAILING FROM RDB$USER), RDB$USER_TYPE, TRIM(RDB$PRIVILEGE), RDB$GRANT_OPTION, "
                "TRIM(TRAILING FROM RDB$FIELD_NAME) FROM RDB$USER_PRIVILEGES WHERE RDB$RELATION_NAME = ? "
                "AND NOT (RDB$USER = CURRENT_USER AND RDB$USER_TYPE = 8)", (table,))
    return cur.fetchall()


def grant_back(tr, table: str, rows: list[tuple], source: str) -> None:
    """Give the privileges ``rows`` (from ``privileges``) on ``table``, made anew, back. A grantee gone
    meanwhile (an audit trigger a `disable` dropped) is skipped: Firebird refuses only that GRANT."""
    for user, kind, priv, option, column in sorted(set(rows), key=str):
        if kind not in GRANTEE_KINDS or priv not in PRIVILEGE_WORDS:
            continue
        col = f" ({quote_ident(column)})" if column and priv in ("U", "R") else ""
        sql = (f"GRANT {PRIVILEGE_WORDS[priv]}{col} ON TABLE {table} TO {GRANTEE_KINDS[kind]} {quote_ident(user)}"
               + (" WITH GRANT OPTION" if option == 1 else ""))
        try:
            tr.execute_immediate(sql)
        except DriverDatabaseError as exc:
            text = str(exc).lower()
            if "does not exist" not in text and "not found" not in text:
                raise          # the whole drop is undone: no trigger loses the table it writes
            log.warning("[ROTATE] %s: %s on the new %s not given back to %s %s, which is gone", source,
                        PRIVILEGE_WORDS[priv], table, GRANTEE_KINDS[kind].lower(), user)


class _Postpone(Exception):
    """Stop this run here; the rotation resumes next time (not an error)."""


class _Rotation:
    """One run of the protocol for one source."""

    def __init__(self, config: Config, spec: SourceSpec, *, force: bool, now: datetime, max_wait: float,
                 drop_attempts: int, drop_lock_timeout: int):
        self.config, self.spec, self.p = config, spec, config.prefix
        self.force, self.now, self.max_wait = force, now, max_wait
        self.drop_attempts, self.drop_lock_timeout = drop_attempts, drop_lock_timeout
        self.report = RotationReport(spec.name)
        self.db: Database | None = None
        self.lock_tx: int | None = None
        self.switch_tx: int | None = None
        self.attempts = 0
        self.resumed = False
        self.t0 = time.monotonic()
        self.deadline = self.t0 + max_wait

    # -- small helpers --------------------------------------------------
    def step(self, name: str, text: str, started: float, level: int = logging.INFO) -> None:
        ms = (time.monotonic() - started) * 1000
        self.report.steps.append({"step": name, "ms": round(ms, 1), "text": text})
        log.log(level, "[ROTATE] %s: rotation %s %s: %s (%.0f ms)", self.spec.name, self.report.rotation_id,
                name, text, ms)

    def table(self, n: int) -> str:
        return f"{self.p}LOG_{n}"

    def record(self, **cols) -> None:
        """Update this rotation's LOG_ROTATION row (in the current transaction)."""
        cols.setdefault("UPDATED_AT", self.now)
        names = list(cols)
        self.db.execute(f"UPDATE {self.p}LOG_ROTATION SET {', '.join(f'{c} = ?' for c in names)} WHERE ID = ?",
                        [cols[c] for c in names] + [self.report.rotation_id])

    # -- the run ---------------------------------------------------------
    def run(self) -> RotationReport:
        lock = open_source(self.config, self.spec, lock_timeout=0)
        self.report.firebird = lock.version
        try:
            self.take_lock(lock)
            with open_source(self.config, self.spec) as db:
                self.db = db
                row = self.pending()
                self.resumed = row is not None
                if row is None and not self.start():
                    return self.report
                try:
                    self.advance()
                except _Postpone as why:
                    self.report.outcome = "postponed"
                    self.report.message = str(why)
                    db.rollback()
                    self.record(OUTCOME="postponed", MESSAGE=str(why)[:2000], ATTEMPTS=self.attempts + 1)
                    db.commit()
                    log.info("[ROTATE] %s: rotation %s postponed at phase %s: %s", self.spec.name,
                                self.report.rotation_id, self.report.phase, why)
                except FbauditError as exc:
                    db.rollback()
                    self.report.outcome, self.report.message = "failed", str(exc)
                    self.record(OUTCOME="failed", MESSAGE=str(exc)[:2000], ATTEMPTS=self.attempts + 1)
                    db.commit()
                    raise
        finally:
            lock.close()
            self.report.seconds = round(time.monotonic() - self.t0, 3)
        return self.report

    def take_lock(self, lock: Database) -> None:
        """Hold row 0 of LOG_ROTATION (NO WAIT) for the whole run: one rotate per source at a time."""
        require_init(lock, self.p)
        try:
            if not table_exists(lock, f"{self.p}LOG_ROTATION"):
                raise FbauditError(f"{self.spec.name}: the staging schema predates rotation (no {self.p}LOG_ROTATION):"
                                   " run `fbaudit init` to add it.")
            cur = lock.con.cursor()
            cur.execute(f"UPDATE {self.p}LOG_ROTATION SET UPDATED_AT = UPDATED_AT WHERE ID = 0")
            if cur.affected_rows != 1:
                raise FbauditError(f"{self.spec.name}: the rotation lock row is missing: run `fbaudit init`.")
            cur.close()
            self.lock_tx = lock.scalar("SELECT CURRENT_TRANSACTION FROM RDB$DATABASE")
        except DriverDatabaseError as exc:
            codes = tuple(getattr(exc, "gds_codes", ()) or ())
            if any(c in GDS_LOCK_CONFLICT for c in codes) or "conflict" in str(exc).lower():
                self.report.outcome = "busy"
                self.report.message = "another rotate of this source is running; nothing done"
                raise RotationBusy(f"{self.spec.name}: {self.report.message}") from None
            raise wrap(exc, self.spec) from exc
        except DatabaseError as exc:
            if any(c in GDS_LOCK_CONFLICT for c in exc.gds_codes):
                self.report.outcome = "busy"
                self.report.message = "another rotate of this source is running; nothing done"
                raise RotationBusy(f"{self.spec.name}: {self.report.message}") from None
            raise

    def pending(self) -> tuple | None:
        row = self.db.query(
            f"SELECT FIRST 1 ID, PHASE, OLD_TABLE, NEW_TABLE, SWITCH_TX, ATTEMPTS FROM {self.p}LOG_ROTATION "
            f"WHERE ID > 0 ORDER BY ID DESC")
        self.db.commit()
        if not row or row[0][1] == "done":
            return None
        rid, phase, old, new, switch_tx, attempts = row[0]
        r = self.report
        r.rotation_id, r.phase, r.old_table, r.new_table = rid, phase, old, new
        self.switch_tx, self.attempts = switch_tx, attempts
        log.info("[ROTATE] %s: resuming rotation %s (LOG_%s) at phase %s, attempt %s", self.spec.name, rid, old,
                 phase, attempts + 1)
        return row[0]

    def start(self) -> bool:
        """Step 1, switch (when due): False when there is nothing to do."""
        p, db, r = self.p, self.db, self.report
        started = time.monotonic()
        current, since = db.query(f"SELECT FIRST 1 ID_TABLE, DATA FROM {p}LOG_INFO")[0]
        old = 2 if current == 2 else 1
        new = 3 - old
        period = self.config.rotation.period
        # A daily job started at 03:00 finds the last switch at 03:00:00.4 of the day before:
        # a run a little early (5% of the period, at most 30 min) counts as due, or it would
        # rotate every other day.
        early = min(period * 0.05, EARLY_MAX)
        if not self.force and since is not None and self.now < since + period - early:
            r.outcome = "not_due"
            r.message = (f"not due: LOG_{old} is in use since {since:%Y-%m-%d %H:%M:%S}, the next rotation is due "
                         f"at {since + period:%Y-%m-%d %H:%M:%S} (a run from {since + period - early:%H:%M:%S} "
                         "counts; --force rotates now)")
            db.commit()
            log.info("[ROTATE] %s: %s", self.spec.name, r.message)
            return False
        ups = {n: u for n, u in upgrades(db, p).items() if u.pending}
        if ups:
            # `upgrade end` reads the keys of the changes made during the upgrade from LOG_PACKET:
            # rotation, which deletes shipped packets, waits for it (docs/schema-changes.md).
            u = min(ups.values(), key=lambda u: u.started_at)
            r.outcome = "waiting"
            r.message = (f"waits for the upgrade begun {u.started_at:%Y-%m-%d %H:%M:%S} by {u.started_by}: "
                         "`fbaudit upgrade end` first (it reads the changes made during the upgrade from the "
                         "staged packets, which rotation deletes)")
            db.commit()
            log.info("[ROTATE] %s: %s", self.spec.name, r.message)
            return False
        shipped = Shipped(db, p)
        if shipped.missing:
            raise FbauditError(f"{self.spec.name}: {' and '.join(shipped.missing)} is missing (dropped outside "
                               "fbaudit): the audit triggers cannot write their packets while the current one is "
                               "missing. Run `fbaudit init`, which creates it again, then `fbaudit sync`. Nothing changed.")
        if f"{p}LOG_PACKET_{new}" in shipped.tables:
            # Every audit trigger may insert into the table it writes after the switch (a table made
            # again by `fbaudit init` has no grants yet): else every audited write would fail.
            db.commit()
            granted = grant_packet_tables(db, p)
            if granted:
                log.warning("[ROTATE] %s: INSERT was missing and is now granted on %s", self.spec.name,
                            ", ".join(granted))
        if db.query(f"SELECT FIRST 1 1 FROM {self.table(new)}"):
            raise FbauditError(f"{self.spec.name}: {self.table(new)} still holds rows, so triggers cannot be switched "
                               "to it; a rotation was interrupted outside fbaudit. Nothing changed.")
        rid = (db.scalar(f"SELECT MAX(ID) FROM {p}LOG_ROTATION") or 0) + 1
        # An early run (within ``early``) keeps the schedule: the period counts from when it was due,
        # so a job every 10 minutes does not move the rotation 30 minutes earlier each day.
        anchor = self.now if self.force or since is None else max(self.now, since + period)
        db.execute(f"UPDATE {p}LOG_INFO SET ID_TABLE = ?, DATA = ?", (new, anchor))
        db.execute(f"INSERT INTO {p}LOG_ROTATION (ID, STARTED_AT, OLD_TABLE, NEW_TABLE, PHASE, OUTCOME, UPDATED_AT) "
                   "VALUES (?, ?, ?, ?, 'switched', 'running', ?)", (rid, self.now, old, new, self.now))
        db.commit()
        # The last transaction started by now: every transaction that may still
        # have read ID_TABLE = old is numbered <= this.
        self.switch_tx = db.con.info.next_transaction
        self.attempts = 0
        r.rotation_id, r.phase, r.old_table, r.new_table = rid, "switched", old, new
        self.record(SWITCH_TX=self.switch_tx)
        db.commit()
        self.step("switch", f"triggers now write to LOG_{new}; LOG_{old} is out of use "
                            f"(transactions up to {self.switch_tx} may still write to it)", started)
        return True

    def advance(self) -> None:
        r = self.report
        if r.phase == "switched":
            self.wait_for_writers()
            self.redirect()
        if r.phase == "redirected":
            count = self.verify()
            self.drop(count)
        if r.phase == "dropped":
            self.restore()

    # -- step 2 ----------------------------------------------------------
    def wait_for_writers(self) -> None:
        started = time.monotonic()
        if self.switch_tx is None:        # interrupted between switch and its record: be conservative
            self.switch_tx = self.db.con.info.next_transaction
            self.record(SWITCH_TX=self.switch_tx)
            self.db.commit()
        alive = wait_for_old_writers(self.db, self.switch_tx, self.deadline, exclude=(self.lock_tx,))
        if alive:
            raise _Postpone(f"LOG_{self.report.old_table} may still be written by {len(alive)} transaction(s) "
                            f"started before the switch: {describe_writers(alive)}. Its rows are kept; rotate "
                            "again later (or end that transaction).")
        self.step("wait", "no transaction started before the switch is alive", started)

    # -- steps 3 and 6 ---------------------------------------------------
    def triggers_using(self, view: str) -> list[tuple[str, str, int, int, str]]:
        """Triggers whose compiled form references ``view``: (name, table, inactive, position, source)."""
        sql = ("SELECT TRIM(t.RDB$TRIGGER_NAME), TRIM(TRAILING FROM t.RDB$RELATION_NAME), COALESCE(t.RDB$TRIGGER_INACTIVE, 0), "
               "t.RDB$TRIGGER_SEQUENCE, t.RDB$TRIGGER_SOURCE, t.RDB$TRIGGER_TYPE FROM RDB$TRIGGERS t "
               "WHERE t.RDB$TRIGGER_NAME IN (SELECT d.RDB$DEPENDENT_NAME FROM RDB$DEPENDENCIES d "
               "WHERE d.RDB$DEPENDED_ON_NAME = ? AND d.RDB$DEPENDENT_TYPE = 2) ORDER BY 1")
        out = []
        for name, rel, inactive, pos, src, ttype in self.db.query(sql, (view,), whole_blobs=True):
            if ttype != 114 or not src:     # fbaudit's triggers: AFTER INSERT OR UPDATE OR DELETE
                raise FbauditError(f"{self.spec.name}: trigger {name} uses {view} but is not an fbaudit audit "
                                   "trigger; rotation cannot re-create it. Remove that dependency first.")
            out.append((name, rel, inactive, pos, src))
        return out

    def point_view(self, n: int, target: int) -> int:
        """V_LOG_<n> -> LOG_<target> (committed), then re-create its triggers (caller commits).

        Two transactions on purpose: measured by tests/test_rotation_stress.py, a
        writer that recompiled the trigger while one transaction changed both could
        keep the view's previous target in its new compiled trigger (rows of the
        current table landed in LOG_3 a rotation later). Re-creating the triggers
        after the view change has committed leaves no such window.
        """
        view = f"{self.p}V_LOG_{n}"
        trig = self.triggers_using(view)
        with self.db.con.cursor() as cur:
            own_ddl(cur)
        self.db.con.execute_immediate(
            f"CREATE OR ALTER VIEW {view} (PACKET, NUM_POLE, BLOB_OLD, BLOB_NEW) AS "
            f"SELECT PACKET, NUM_POLE, BLOB_OLD, BLOB_NEW FROM {self.table(target)}")
        self.db.commit()
        if trig:
            with self.db.con.cursor() as cur:
                own_ddl(cur)
        for name, rel, inactive, pos, src in trig:
            self.db.con.execute_immediate(
                f"CREATE OR ALTER TRIGGER {quote_ident(name)} FOR {quote_ident(rel)} "
                f"{'INACTIVE' if inactive else 'ACTIVE'} AFTER INSERT OR UPDATE OR DELETE POSITION {int(pos)}\n{src}")
        return len(trig)

    def ddl(self, what: str, fn) -> object:
        """Run one DDL step; a lock time-out or "in use" postpones the rotation (rolled back)."""
        try:
            return fn()
        except (DriverDatabaseError, DatabaseError) as exc:
            self.db.rollback()
            err = exc if isinstance(exc, DatabaseError) else wrap(exc, self.spec)
            if set(err.gds_codes) & set(GDS_LOCK_CONFLICT + (GDS_IN_USE,)):
                raise _Postpone(f"{what} waited {LOCK_TIMEOUT} s for other attachments and gave up "
                                f"({str(err).splitlines()[0]}); nothing changed, rotate again later") from None
            raise err from exc

    def redirect(self) -> None:
        started = time.monotonic()
        old = self.report.old_table

        def go() -> int:
            n = self.point_view(old, 3)
            self.record(PHASE="redirected")
            self.db.commit()
            return n
        n = self.ddl(f"Redirecting V_LOG_{old}", go)
        self.report.phase = "redirected"
        self.step("redirect", f"V_LOG_{old} now points at LOG_3; {n} trigger(s) re-created so every attachment "
                              f"recompiles them", started)

    # -- step 4 ----------------------------------------------------------
    def verify(self) -> int:
        """Wait (up to the deadline) until LOG_<old> holds only shipped rows; return its row count."""
        started = time.monotonic()
        p, old = self.p, self.report.old_table
        pauses = _pauses()
        while True:
            shipped = Shipped(self.db, p)
            states = dict(self.db.query(f"SELECT STATE_, COUNT(*) FROM ({shipped.unshipped('p.ID', 'p.DATA_TABLE = ?')}) "
                                        f"GROUP BY STATE_", (old,) * shipped.parts))
            stray = 0
            if not states:
                total, stray = self.db.query(
                    f"SELECT COUNT(*), COUNT(*) - COUNT(p.ID) FROM {self.table(old)} l "
                    f"LEFT JOIN {p}LOG_PACKET p ON p.ID = l.PACKET AND p.DATA_TABLE = ?", (old,))[0]
            self.db.commit()
            if not states and not stray:
                break
            if states.get(2):
                raise _Postpone(f"{states[2]} packet(s) of LOG_{old} failed to transfer: see "
                                "`fbaudit status`, fix the cause and run `fbaudit retry --all-failed`; "
                                f"LOG_{old} is kept until they are in the log database")
            if time.monotonic() >= self.deadline:
                if states.get(0):
                    raise _Postpone(f"{states[0]} packet(s) of LOG_{old} are not in the log database yet; run "
                                    "`fbaudit transfer` (rotation waits for it, never drops them)")
                raise _Postpone(f"{stray} row(s) of LOG_{old} belong to no shipped packet; LOG_{old} is kept. "
                                "Run `fbaudit transfer`; if this persists, inspect them (docs/rotation.md)")
            time.sleep(next(pauses))
        self.step("verify", f"all {total} row(s) of LOG_{old} belong to packets in the log database", started)
        return total

    # -- step 5 ----------------------------------------------------------
    def drop(self, rows: int) -> None:
        started = time.monotonic()
        p, old = self.p, self.report.old_table
        create = [s.sql for s in templates.render("main_init", P=p)
                  if s.object in (f"LOG_{old}", f"LOG_{old}_PACKET")]
        if len(create) != 2:
            raise FbauditError(f"template main_init.sql: LOG_{old} or its index is missing")
        shipped = Shipped(self.db, p)
        unshipped = shipped.unshipped("p.ID")
        # The packet table of the old data table (the audit triggers' packets: all shipped, verified)
        # goes with it: dropped, created empty, and its privileges given back.
        packets = f"{p}LOG_PACKET_{old}"
        rotating = packets in shipped.tables
        create_packets = [s.sql for s in templates.render("main_init", P=p) if s.object == f"LOG_PACKET_{old}"]
        if rotating and (len(create_packets) != 1 or not shipped.current):
            raise FbauditError(f"{self.spec.name}: template main_init.sql has no LOG_PACKET_{old}, or the staging "
                               "keeps no transfer progress; run `fbaudit init`. Nothing dropped.")
        mark = shipped.mark
        # Every packet of the table not in the log database: above SHIPPED_TO, in a range, failed.
        left_sql = (f"SELECT (SELECT COUNT(*) FROM {packets} p WHERE p.ID > {mark}) + (SELECT COUNT(*) FROM "
                    f"{p}LOG_PENDING g JOIN {packets} p ON p.ID BETWEEN g.ID_FROM AND g.ID_TO WHERE p.ID <= {mark}) "
                    f"+ (SELECT COUNT(*) FROM {p}LOG_FAILED f JOIN {packets} p ON p.ID = f.ID) FROM RDB$DATABASE")
        self.db.commit()

        def packets_left() -> int:
            """In one SNAPSHOT view: the transfer's record changes in steps of one transaction each, and
            a READ COMMITTED statement of Firebird 3 could read one range before and its split after
            such a step. Once none is left, none can appear: nothing writes the table any more."""
            tr = self.db.con.transaction_manager(default_tpb=tpb(Isolation.SNAPSHOT))
            try:
                tr.begin()
                cur = tr.cursor()
                cur.execute(left_sql)
                n = cur.fetchone()[0]
                cur.close()
                tr.commit()
                return n
            finally:
                tr.close()

        def once() -> int:
            con = self.db.con
            tr = con.transaction_manager(
                default_tpb=tpb(Isolation.READ_COMMITTED_RECORD_VERSION, lock_timeout=self.drop_lock_timeout))
            try:
                if rotating and packets_left():
                    # Verified before; checked again: a packet not in the log database is never dropped.
                    raise _Postpone(f"packets of LOG_PACKET_{old} are not in the log database yet; "
                                    "nothing dropped, the next run tries again")
                tr.begin()
                cur = tr.cursor()
                # Every packet of the table is in the log database (verified; no writer uses the table
                # any more): the condition only guards against one that is not.
                cur.execute(f"DELETE FROM {p}LOG_PACKET x WHERE x.DATA_TABLE = ? AND x.ID NOT IN "
                            f"(SELECT ID FROM ({unshipped}))", (old,))
                deleted = cur.affected_rows
                if rotating:
                    cur.execute(f"SELECT COUNT(*) FROM {packets}")
                    deleted += cur.fetchone()[0]
                own_ddl(cur)
                # A DROP takes the table's privileges with it: those on the tables as they are now go
                # back to the tables made anew (a transfer user's SELECT, the triggers' INSERT).
                kept = privileges(cur, self.table(old))
                tr.execute_immediate(f"DROP TABLE {self.table(old)}")
                for sql in create:
                    tr.execute_immediate(sql)
                grant_back(tr, self.table(old), kept, self.spec.name)
                if rotating:
                    kept = privileges(cur, packets)
                    tr.execute_immediate(f"DROP TABLE {packets}")
                    tr.execute_immediate(create_packets[0])
                    # An audit trigger enabled meanwhile (committed just before the DROP) has INSERT on
                    # the other packet table: read after the DROP, it gets it here too.
                    kept += [(t, 2, "I", 0, None) for t in self.packet_writers(cur, f"{p}LOG_PACKET_{3 - old}")]
                    grant_back(tr, packets, kept, self.spec.name)
                cur.execute(f"UPDATE {p}LOG_ROTATION SET PHASE = 'dropped', ROWS_DROPPED = ?, PACKETS_DELETED = ?, "
                            "UPDATED_AT = ? WHERE ID = ?", (rows, deleted, self.now, self.report.rotation_id))
                cur.close()
                tr.commit()
                return deleted
            except BaseException:
                if tr.is_active():
                    tr.rollback()
                raise
            finally:
                tr.close()

        def in_use(exc: BaseException) -> bool:
            if not isinstance(exc, DriverDatabaseError):
                return False
            codes = set(getattr(exc, "gds_codes", ()) or ())
            return bool(codes & set(GDS_LOCK_CONFLICT + (GDS_IN_USE,))) or "in use" in str(exc)

        attempt = 0
        retrying = tenacity.Retrying(
            stop=tenacity.stop_after_attempt(self.drop_attempts),
            wait=tenacity.wait_exponential(multiplier=1, max=8),
            retry=tenacity.retry_if_exception(in_use), reraise=True,
            before_sleep=lambda rs: log.info("[ROTATE] %s: LOG_%s is still in use (attempt %s of %s); backing off %.0f s",
                                             self.spec.name, old, rs.attempt_number, self.drop_attempts,
                                             rs.next_action.sleep if rs.next_action else 0))
        try:
            for att in retrying:
                with att:
                    attempt = att.retry_state.attempt_number
                    deleted = once()
        except DriverDatabaseError as exc:
            if in_use(exc):
                raise _Postpone(f"LOG_{old} is still in use by another attachment after {attempt} attempt(s) "
                                f"with a {self.drop_lock_timeout} s lock timeout: an attachment holds a compiled statement "
                                "on it (on Firebird 3 also any idle attachment that wrote audited changes before "
                                "the switch, until it next uses that table or disconnects); nothing was dropped, "
                                "the next run tries again") from None
            raise wrap(exc, self.spec) from exc
        self.report.phase, self.report.rows_dropped, self.report.packets_deleted = "dropped", rows, deleted
        self.step("drop", f"LOG_{old} dropped and created empty ({rows} row(s), {deleted} shipped packet(s) "
                          f"removed, attempt {attempt})", started)

    @staticmethod
    def packet_writers(cur, table: str) -> set[str]:
        """The triggers that may insert into a packet table (the audit triggers; granted by `enable`)."""
        cur.execute("SELECT DISTINCT TRIM(TRAILING FROM p.RDB$USER) FROM RDB$USER_PRIVILEGES p JOIN RDB$TRIGGERS t "
                    "ON t.RDB$TRIGGER_NAME = p.RDB$USER WHERE p.RDB$RELATION_NAME = ? AND p.RDB$PRIVILEGE = 'I' "
                    "AND p.RDB$USER_TYPE = 2", (table,))
        return {r[0] for r in cur.fetchall()}

    # -- step 6 ----------------------------------------------------------
    def restore(self) -> None:
        started = time.monotonic()
        p, old = self.p, self.report.old_table

        def go() -> int:
            n = self.point_view(old, old)
            self.db.commit()
            return n
        n = self.ddl(f"Pointing V_LOG_{old} back", go)
        # LOG_3 should stay empty. Rows a writer put there anyway (a trigger compiled
        # with an outdated view) are shipped by the transfer, which reads LOG_3 too;
        # here only rows of packets already shipped (or deleted with their table) go.
        waiting = f"SELECT ID FROM ({Shipped(self.db, p).unshipped('p.ID')})"
        stray, cleaned = self.db.query(
            f"SELECT COUNT(*), COUNT(*) - COUNT(w.ID) FROM {p}LOG_3 l LEFT JOIN ({waiting}) w ON w.ID = l.PACKET")[0]
        if cleaned:
            self.db.execute(f"DELETE FROM {p}LOG_3 l WHERE l.PACKET NOT IN ({waiting})")
        seconds = round(time.monotonic() - self.t0, 3)
        self.record(PHASE="done", OUTCOME="done", MESSAGE=None, FINISHED_AT=self.now, SECONDS=seconds)
        self.db.commit()
        r = self.report
        r.phase, r.outcome = "done", "done"
        r.message = f"LOG_{old} emptied; triggers write to LOG_{r.new_table}"
        if stray:
            log.warning("[ROTATE] %s: %s row(s) had reached LOG_3 (a trigger compiled with an outdated view); "
                        "%s of them shipped and removed, the rest ship with the next transfer",
                        self.spec.name, stray, cleaned)
        self.step("restore", f"V_LOG_{old} points at LOG_{old} again; {n} trigger(s) re-created; "
                             + (f"LOG_3 held {stray} row(s), {cleaned} shipped ones removed" if stray
                                else "LOG_3 clean"), started)


def rotate_source(config: Config, spec: SourceSpec, *, force: bool = False, now: datetime | None = None,
                  max_wait: float | None = None, drop_attempts: int = DROP_ATTEMPTS,
                  drop_lock_timeout: int = DROP_LOCK_TIMEOUT) -> RotationReport:
    """Run (or resume) the rotation of one source; see the module docstring."""
    job = _Rotation(config, spec, force=force, now=now or config.rotation.now(),
                    max_wait=config.rotation.max_wait if max_wait is None else max_wait,
                    drop_attempts=drop_attempts, drop_lock_timeout=drop_lock_timeout)
    try:
        rep = job.run()
    except RotationBusy:
        log.info("[ROTATE] %s: another rotate of this source is running; nothing done", spec.name)
        return job.report
    if rep.outcome != "done" or not job.resumed or force:
        return rep
    # This run completed a rotation postponed earlier: when the next one is due
    # already, start it now rather than a schedule period later. On Firebird 3 a
    # drop typically waits a run (an idle attachment keeps the old table in use
    # until it next touches the audited table), and without this the staging
    # tables would hold a period's rows more.
    left = max(0.0, job.deadline - time.monotonic())
    nxt = _Rotation(config, spec, force=False, now=job.now, max_wait=left,
                    drop_attempts=drop_attempts, drop_lock_timeout=drop_lock_timeout)
    try:
        rep2 = nxt.run()
    except RotationBusy:
        return rep
    if rep2.outcome in ("not_due", "waiting"):
        return rep
    rep2.completed = [rep.rotation_id] + rep2.completed
    rep2.steps = rep.steps + rep2.steps
    rep2.seconds = round(rep.seconds + rep2.seconds, 3)
    rep2.rows_dropped = (rep.rows_dropped or 0) + (rep2.rows_dropped or 0)
    rep2.packets_deleted = (rep.packets_deleted or 0) + (rep2.packets_deleted or 0)
    rep2.message = f"rotation {rep.rotation_id} (LOG_{rep.old_table}) completed first; then {rep2.message}"
    return rep2


def rotate(config: Config, *, source: str | None = None, force: bool = False, now: datetime | None = None,
           max_wait: float | None = None, workers: int = 4) -> Result:
    """``fbaudit rotate``: every configured source (or one), each independently,
    ``workers`` at the same time (a source waiting for old transactions does not hold up the others)."""
    if workers < 1:
        raise FbauditError(f"--workers must be at least 1, not {workers}")
    specs = config.source(source)
    out = Result({"sources": []})

    def one(spec: SourceSpec) -> RotationReport | FbauditError:
        try:
            return rotate_source(config, spec, force=force, now=now, max_wait=max_wait)
        except FbauditError as exc:
            if len(specs) == 1:
                raise
            log.error("[ROTATE] %s: FAILED: %s", spec.name, str(exc).splitlines()[0])
            return exc

    with worker_pool(min(workers, len(specs)), "rotate") as pool:
        results = list(pool.map(one, specs))
    for spec, rep in zip(specs, results):
        risk = crash_risk(rep.firebird) if not isinstance(rep, FbauditError) and rep.firebird else None
        if risk:
            out.warnings.append(f"{spec.name}: {risk}")
            log.warning("[ROTATE] %s: %s", spec.name, risk)
        if isinstance(rep, FbauditError):
            out.errors.append((spec.name, rep))
            out.data["sources"].append({"source": spec.name, "outcome": "failed", "message": str(rep)})
            continue
        out.data["sources"].append(rep.as_dict())
        line = f"{spec.name}: {rep.outcome}"
        if rep.outcome == "not_due":
            out.lines.append(f"{spec.name}: {rep.message}")
            continue
        if rep.rotation_id:
            line += f" (rotation {rep.rotation_id}, LOG_{rep.old_table}, phase {rep.phase}, {rep.seconds:.1f} s)"
        if rep.message:
            line += f": {rep.message}"
        (out.warnings if rep.outcome == "postponed" else out.lines).append(line)
    return out


def last_rotation(db: Database, prefix: str) -> dict | None:
    """The newest LOG_ROTATION row as a dict (for status), or None."""
    if not table_exists(db, f"{prefix}LOG_ROTATION"):
        return None
    rows = db.query(f"SELECT FIRST 1 ID, STARTED_AT, OLD_TABLE, PHASE, OUTCOME, MESSAGE, FINISHED_AT, ROWS_DROPPED, "
                    f"SECONDS, ATTEMPTS, PACKETS_DELETED FROM {prefix}LOG_ROTATION WHERE ID > 0 ORDER BY ID DESC")
    if not rows:
        return None
    rid, at, old, phase, outcome, msg, fin, rows_dropped, secs, attempts, packets = rows[0]
    return {"id": rid, "started_at": f"{at:%Y-%m-%d %H:%M:%S}" if at else None, "table": old, "phase": phase,
            "outcome": outcome, "message": msg, "finished_at": f"{fin:%Y-%m-%d %H:%M:%S}" if fin else None,
            "rows_dropped": rows_dropped, "packets_deleted": packets, "seconds": secs, "postponed_runs": attempts}
