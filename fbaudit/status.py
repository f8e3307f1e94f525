"""``fbaudit status``: every source's state and health on one screen, for people and monitors.

Per source: logging on/off, audited tables, backlog (waiting packets) and the
age of the oldest, failed packets, the last transfer (the log database's
TRANSFER_RUNS) and the last rotation (the source's LOG_ROTATION), and the rows
in the staging tables. Each source gets a health, the worst of its problems:

  critical  the source or the log database cannot be read; fbaudit is not
            initialized there; an audited table has lost its trigger (changes
            are NOT logged); failed packets (changes that will not reach the log
            until `fbaudit retry`); the last transfer run failed; the oldest
            waiting packet is older than ``crit_age``
  warning   logging paused; the oldest waiting packet is older than
            ``warn_age``; the last rotation failed or was postponed longer than
            two rotation periods, or no rotation for two periods while the
            staging tables hold rows; a transaction changed more than
            ``mass_change`` rows of one table in the last day (a mass change:
            the warning names the command that would revert it)

The command's exit code is the overall health as monitoring plugins report it
(Nagios, Icinga, Zabbix): 0 OK, 1 WARNING, 2 CRITICAL (3, UNKNOWN, is what a
configuration error already exits with).
"""
from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from .catalog import table_exists
from .config import Config, SourceSpec
from .db import crash_risk
from .errors import FbauditError
from .logs import printable
from .objects import (is_initialized, keys_only_since, relation_exists, trigger_exists, trigger_follow,
                      trigger_inactive, trigger_name, upgrades)
from .rotation import last_rotation
from .sources import Result, open_source, worker_pool
from .staging import Shipped

log = logging.getLogger("fbaudit.status")

OK, WARNING, CRITICAL = "ok", "warning", "critical"
UPGRADE_WATCH = 86_400      # seconds after `upgrade end` status still looks for changes through its keys-only trigger
LEVELS = {OK: 0, WARNING: 1, CRITICAL: 2}
DEFAULT_WARN_AGE = timedelta(minutes=10)
DEFAULT_CRIT_AGE = timedelta(hours=1)
MASS_WINDOW = timedelta(days=1)   # mass changes are looked for among the changes logged this long ago or later,
MASS_SCAN = 50_000                # ... in the newest this many packets of each source: about 1.4 us a packet
                                  # (scripts/bench_mass_change.py), so a status run stays well under 0.1 s


@dataclass
class Thresholds:
    warn_age: timedelta = DEFAULT_WARN_AGE     # oldest waiting packet older than this: warning
    crit_age: timedelta = DEFAULT_CRIT_AGE     # ... older than this: critical
    mass_change: int | None = None             # rows of a table one transaction may change; None: the config's


@dataclass
class SourceStatus:
    item: dict
    problems: list[tuple[str, str]] = field(default_factory=list)    # (level, text)

    def add(self, level: str, text: str) -> None:
        self.problems.append((level, text))

    @property
    def health(self) -> str:
        return max((lvl for lvl, _ in self.problems), key=LEVELS.get, default=OK)


def age_text(seconds: float | None) -> str:
    """12 s, 5m 03s, 2h 10m, 3d 4h."""
    if seconds is None:
        return "-"
    s = int(max(seconds, 0))
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60}m {s % 60:02d}s"
    if s < 86400:
        return f"{s // 3600}h {s % 3600 // 60:02d}m"
    return f"{s // 86400}d {s % 86400 // 3600}h"


def _read_source(config: Config, spec: SourceSpec) -> dict:
    """What the source database says (one read-only look, committed at once)."""
    p = config.prefix
    item: dict = {"source": spec.name, "database": spec.database}
    with open_source(config, spec) as db:
        item["firebird"] = db.version
        if not is_initialized(db, p):
            item.update(initialized=False)
            db.commit()
            return item
        info = db.query(f"SELECT FIRST 1 ZAPIS, ID_TABLE FROM {p}LOG_INFO")
        zapis, id_table = info[0] if info else (1, 1)
        # Packets not shipped yet, from the transfer's own record (staging.Shipped): the packets
        # themselves are never updated. Ages on the source's own clock (CREATED_AT is its
        # LOCALTIMESTAMP): a server in another time zone than fbaudit, or a test clock, must not
        # make a backlog look young.
        shipped = Shipped(db, p)
        unshipped = shipped.unshipped("p.CREATED_AT")
        age_sql = "DATEDIFF(MILLISECOND FROM MIN(CREATED_AT) TO LOCALTIMESTAMP) / 1000.0"
        by_state = {state: rest for state, *rest in db.query(
            f"SELECT STATE_, COUNT(*), MIN(CREATED_AT), {age_sql} FROM ({unshipped}) GROUP BY STATE_")}
        counts = {state: rest[0] for state, rest in by_state.items()}
        _n, oldest, oldest_age = by_state.get(0, (0, None, None))
        counts[1] = db.scalar(f"SELECT COUNT(*) FROM {shipped.packets} p") - counts.get(0, 0) - counts.get(2, 0)
        first, first_age = db.query(f"SELECT MIN(CREATED_AT), {age_sql} FROM {shipped.packets} p")[0]
        tables = []
        parts = relation_exists(db, p + "LOG_PARTS_KEPT")
        in_upgrade = upgrades(db, p)
        for num, n, en, excluded in db.query(f"SELECT NUM_TABLE, TRIM(TRAILING FROM TABLE_NAME), ENABLED, "
                                             f"EXCLUDED_COLUMNS FROM {p}LOG_TABLES ORDER BY 1"):
            t = {"table": n, "number": num, "enabled": bool(en), "trigger": trigger_exists(db, p, num),
                 "trigger_inactive": trigger_inactive(db, p, num), "not_logged": [], "trigger_altered": False,
                 "schema_follow": False}
            u = in_upgrade.get(num)
            if u is not None and u.logged_at is not None:
                # A finished upgrade matters for a day: a connection may still run its keys-only trigger.
                age = db.scalar("SELECT DATEDIFF(SECOND FROM CAST(? AS TIMESTAMP) TO LOCALTIMESTAMP) "
                                "FROM RDB$DATABASE", (u.logged_at,))
                late = keys_only_since(db, p, num, u.from_id) if age < UPGRADE_WATCH else 0
                if late:
                    t["upgrade"] = {"since": u.started_at.isoformat(sep=" ", timespec="seconds"),
                                    "by": u.started_by, "ended": True, "logged": True, "keys_only_after": late}
            elif u is not None:
                t["upgrade"] = {"since": u.started_at.isoformat(sep=" ", timespec="seconds"), "by": u.started_by,
                                "ended": u.ended_at is not None, "logged": False}
            if en and t["trigger"] and parts and (u is None or u.ended_at is not None):
                f = trigger_follow(db, p, num, n, json.loads(excluded or "[]"))
                t.update(not_logged=f.not_logged, trigger_altered=f.altered, schema_follow=f.parts)
            tables.append(t)
        there = " OR ".join(f"EXISTS (SELECT 1 FROM {t} x WHERE x.ID = f.ID)" for t in shipped.tables)
        failed_sql = (f"SELECT FIRST 5 f.ID, f.ATTEMPTS, f.LAST_ATTEMPT, f.LAST_ERROR FROM {p}LOG_FAILED f "
                      f"WHERE f.STATE = 2 AND ({there}) ORDER BY f.ID") if shipped.current \
            else f"SELECT FIRST 5 ID, ATTEMPTS, LAST_ATTEMPT, LAST_ERROR FROM {p}LOG_PACKET WHERE STATE = 2 ORDER BY ID"
        failed_sample = [{"packet": pid, "attempts": att, "last_attempt": f"{at:%Y-%m-%d %H:%M:%S}" if at else None,
                          "error": (err or "").splitlines()[0] if err else None}
                         for pid, att, at, err in (db.query(failed_sql) if counts.get(2) else [])]
        item.update(initialized=True, logging=bool(zapis), data_table=id_table, failed_first=failed_sample,
                    waiting=counts.get(0, 0), done=counts.get(1, 0), failed=counts.get(2, 0),
                    oldest_waiting=oldest.isoformat(sep=" ", timespec="seconds") if oldest else None,
                    oldest_waiting_age_s=round(float(oldest_age), 1) if oldest else None,
                    oldest_packet=first.isoformat(sep=" ", timespec="seconds") if first else None,
                    oldest_packet_age_s=round(float(first_age), 1) if first else None,
                    tables=tables, schema_support=parts, missing_packet_tables=shipped.missing,
                    # Packets stay in the main database until rotation deletes them (shipped ones too);
                    # their fields are packed inside them, or rows of LOG_n (packets of an older fbaudit).
                    staged_packets=sum(counts.values()),
                    data_table_rows={f"LOG_{n}": db.scalar(f"SELECT COUNT(*) FROM {p}LOG_{n}") for n in (1, 2, 3)},
                    last_rotation=last_rotation(db, p))
        db.commit()
    return item


def _mass_changes(ldb, p: str, sid: int, sname: str, rows: int, since: datetime) -> list[dict]:
    """Transactions of source ``sid`` that changed more than ``rows`` rows (distinct records) of one table,
    among its newest MASS_SCAN packets logged since ``since``: a walk down LOG_PACKET_LAST that stops,
    whatever the log's size. fbaudit's own work is left out: baselines, restores (events, and the rows a
    checkpoint restore logs under its comment), reverts (they carry a REVERT event) and the transactions
    a revert has undone since; a key change counts once (its arrival, not its away packet)."""
    found: dict[int, dict] = {}
    names = dict(ldb.query(f"SELECT NUM_TABLE, TABLE_NAME FROM {p}DICT_TABLES WHERE SOURCE_ID = ?", (sid,)))
    newest = (f"(SELECT FIRST {MASS_SCAN} TRANSACTION_ID, NUM_TABLE, RECORD_KEY, CREATED_AT, AUTHOR, OPERATION, "
              f"CHANGE_COMMENT FROM {p}LOG_PACKET WHERE SOURCE_ID = ? ORDER BY SOURCE_ID DESC, PACKET_ID DESC) W "
              f"WHERE W.CREATED_AT >= ?")
    own: set[int] = set()
    for tx, key in ldb.query(f"SELECT W.TRANSACTION_ID, W.RECORD_KEY FROM {newest} AND W.NUM_TABLE = 0 "
                             f"AND W.OPERATION = 9", (sid, since)):
        own.add(tx)                                   # a control event's transaction: fbaudit's own
        if key and key.isdigit():
            own.add(int(key))                         # a REVERT event names the transaction it undid
    for tx, num, n, first, author in ldb.query(
            f"SELECT W.TRANSACTION_ID, W.NUM_TABLE, COUNT(DISTINCT W.RECORD_KEY), MIN(W.CREATED_AT), MAX(W.AUTHOR) "
            f"FROM {newest} AND W.NUM_TABLE <> 0 AND W.TRANSACTION_ID IS NOT NULL AND W.OPERATION NOT IN (4, 5, 7) "
            f"AND COALESCE(W.CHANGE_COMMENT, '') NOT STARTING WITH 'restore of checkpoint ' "
            f"GROUP BY 1, 2 HAVING COUNT(DISTINCT W.RECORD_KEY) > ? ORDER BY 1 DESC, 3 DESC", (sid, since, rows)):
        if tx in own:
            continue
        t = found.setdefault(tx, {"source": sname, "transaction_id": tx, "at": f"{first:%Y-%m-%d %H:%M:%S}",
                                  "author": author, "tables": {}})
        t["tables"][names.get(num, f"#{num}")] = n
    return list(found.values())


def _read_log(config: Config, mass_change: int = 0, now: datetime | None = None) -> dict[str, dict]:
    """The last transfer run of every source, from the log database, by source name; with
    ``mass_change``, the transactions of the last day that changed more rows of a table (``mass``)."""
    p = config.prefix
    with open_source(config, config.log) as ldb:
        runs: dict[str, dict] = {}
        if table_exists(ldb, f"{p}TRANSFER_RUNS"):
            for name, at, age, outcome, packets, failed, secs, msg, ok_at in ldb.query(
                    f"SELECT SOURCE_NAME, RUN_AT, DATEDIFF(SECOND FROM RUN_AT TO LOCALTIMESTAMP), OUTCOME, PACKETS, "
                    f"FAILED_PACKETS, SECONDS, MESSAGE, LAST_OK_AT FROM {p}TRANSFER_RUNS"):
                runs[name] = {"at": f"{at:%Y-%m-%d %H:%M:%S}", "age_s": age, "outcome": outcome, "packets": packets,
                              "failed_packets": failed, "seconds": secs, "message": msg,
                              "last_ok_at": f"{ok_at:%Y-%m-%d %H:%M:%S}" if ok_at else None}
        registered = {r[0]: r[1] for r in ldb.query(f"SELECT NAME, LAST_TRANSFER_AT FROM {p}SOURCES")} \
            if table_exists(ldb, f"{p}SOURCES") else None
        mass: dict[str, list[dict]] = {}
        if registered is not None and mass_change:
            since = (now or datetime.now()) - MASS_WINDOW
            wanted = {s.name for s in config.sources}
            for sid, sname in ldb.query(f"SELECT ID, NAME FROM {p}SOURCES"):
                if sname in wanted:
                    mass[sname] = _mass_changes(ldb, p, sid, sname, mass_change, since)
        ldb.commit()
    if registered is None:
        raise FbauditError(f"The log database {config.log.describe()} is not initialized: run `fbaudit init`.")
    for name, shipped_at in registered.items():
        runs.setdefault(name, {})["registered"] = True
        runs[name]["last_shipped_at"] = f"{shipped_at:%Y-%m-%d %H:%M:%S}" if shipped_at else None
        runs[name]["mass"] = mass.get(name, [])
    return runs


def _judge(st: SourceStatus, config: Config, now: datetime, limits: Thresholds, run: dict | None,
           log_error: str | None) -> None:
    item = st.item
    name = item["source"]
    if item.get("error"):
        st.add(CRITICAL, f"cannot read the source: {item['error'].splitlines()[0]}")
        return
    if not item.get("initialized"):
        st.add(CRITICAL, "not initialized: run `fbaudit init --source " + name + "`")
        return
    for table in item.get("missing_packet_tables") or []:
        st.add(CRITICAL, f"{table} is missing (dropped outside fbaudit): the audit triggers write their packets "
                         "there, so audited writes fail while it is the current one; run `fbaudit init` (it "
                         "creates it again), then `fbaudit sync`")
    for t in item["tables"]:
        up = t.get("upgrade") if t["enabled"] else None
        upgrading = bool(up and not up["ended"])       # its trigger logs keys only, on purpose
        if upgrading:
            st.add(WARNING, f"{t['table']}: upgrade in progress since {up['since']} (by {up['by']}): its audit "
                            "trigger logs who changed which row, not the values, until `fbaudit upgrade end`")
        elif up and up.get("keys_only_after"):
            st.add(WARNING, f"{t['table']}: {up['keys_only_after']} change(s) came through the keys-only trigger of "
                            "the upgrade after `fbaudit upgrade end` (values not recorded): connections still run "
                            "it; reconnect the applications, then run `fbaudit upgrade end` again")
        elif up:
            st.add(WARNING, f"{t['table']}: `fbaudit upgrade end` stopped before the rows changed during the "
                            "upgrade were logged whole (their values after it are unknown in history): run it again")
        if t["enabled"] and not t["trigger"]:
            st.add(CRITICAL, f"{t['table']} is enabled but its trigger is missing: changes are NOT logged; "
                             "run `fbaudit sync`")
        elif t["enabled"] and t.get("trigger_inactive"):
            st.add(CRITICAL, f"{t['table']}: its audit trigger {trigger_name(config.prefix, t['number'])} is "
                             "INACTIVE (switched off outside fbaudit): changes are NOT logged; `fbaudit sync` "
                             "switches it on again")
        elif t["enabled"] and t.get("trigger_altered") and not upgrading:
            st.add(CRITICAL, f"{t['table']}: its audit trigger {trigger_name(config.prefix, t['number'])} is not "
                             "the one fbaudit made (altered outside fbaudit): changes may not be logged as they "
                             "should; `fbaudit sync` re-creates it")
        if t["enabled"] and t["trigger"] and t.get("not_logged"):
            st.add(CRITICAL, f"{t['table']}: column{'s' if len(t['not_logged']) > 1 else ''} "
                             f"{', '.join(printable(c) for c in t['not_logged'])} added or retyped after the audit "
                             "trigger was made: changes to "
                             f"{'them' if len(t['not_logged']) > 1 else 'it'} are NOT logged until `fbaudit sync`")
        elif t["enabled"] and t["trigger"] and not t.get("schema_follow") and item.get("schema_support") \
                and not upgrading:
            st.add(WARNING, f"{t['table']}: its audit trigger was made by an fbaudit before schema-change "
                            "support, so ALTER TABLE ... DROP of its columns fails; `fbaudit sync` updates it")
    if not item.get("schema_support"):
        st.add(WARNING, "the staging objects predate schema-change support (DDL log, audit triggers that follow "
                        "ALTER TABLE): run `fbaudit init`, then `fbaudit sync`")
    if item["failed"]:
        first = item["failed_first"][0] if item.get("failed_first") else None
        st.add(CRITICAL, f"{item['failed']} failed packet(s), changes not in the log database"
                         + (f" (packet {first['packet']}: {first['error']})" if first else "")
                         + "; fix the cause, then `fbaudit retry --all-failed`")
    age = item.get("oldest_waiting_age_s")
    if age is not None and age > limits.crit_age.total_seconds():
        st.add(CRITICAL, f"oldest waiting packet is {age_text(age)} old (critical after "
                         f"{age_text(limits.crit_age.total_seconds())}): is `fbaudit transfer` scheduled?")
    elif age is not None and age > limits.warn_age.total_seconds():
        st.add(WARNING, f"oldest waiting packet is {age_text(age)} old (warning after "
                        f"{age_text(limits.warn_age.total_seconds())})")
    if not item["logging"]:
        st.add(WARNING, "logging is paused (`fbaudit resume` switches it on)")
    risk = crash_risk(item.get("firebird") or "")
    if risk and item.get("last_rotation"):          # where the rotation's DDL runs (docs/rotation.md)
        st.add(WARNING, risk)
    if log_error is None:
        if not run or not run.get("registered"):
            st.add(CRITICAL, "not registered in the log database: run `fbaudit init --source " + name + "`")
        elif run.get("outcome") == "failed":
            st.add(CRITICAL, f"last transfer failed at {run['at']}: {(run.get('message') or '').splitlines()[0]}")
        elif run.get("age_s") is not None and run["age_s"] > limits.warn_age.total_seconds():
            st.add(WARNING, f"no transfer run for {age_text(run['age_s'])} (last {run['at']}): is the scheduled "
                            "`fbaudit transfer` still running? (`fbaudit schedule show`)")
    rot = item.get("last_rotation")
    two_periods = 2 * config.rotation.period
    if rot and rot["outcome"] == "failed":
        st.add(WARNING, f"rotation #{rot['id']} failed: {rot['message']}")
    elif rot and rot["outcome"] == "postponed" and rot["started_at"] and \
            now - datetime.fromisoformat(rot["started_at"]) > two_periods:
        st.add(WARNING, f"rotation #{rot['id']} postponed since {rot['started_at']}: {rot['message']}")
    rows = sum(item["data_table_rows"].values())
    staged = item.get("staged_packets") or 0
    last = datetime.fromisoformat(rot["started_at"]) if rot and rot["started_at"] else None
    if last is not None:      # started_at is on the rotation clock, like ``now``
        overdue, since = now - last > two_periods, f"{last:%Y-%m-%d %H:%M}"
    else:                     # never rotated: the oldest packet's age, on the source's clock
        age = item.get("oldest_packet_age_s")
        overdue, since = age is not None and age > two_periods.total_seconds(), (item.get('oldest_packet') or '')[:16]
    if (rows or staged) and overdue and not (rot and rot["outcome"] in ("failed", "postponed")):
        st.add(WARNING, f"no rotation since {since}" + ("" if last else " (never rotated)")
               + f": {staged} packets" + (f" and {rows} field rows" if rows else "")
               + " in the staging tables; is `fbaudit rotate` scheduled daily?")


def status(config: Config, *, source: str | None = None, workers: int = 4,
           thresholds: Thresholds | None = None) -> Result:
    """Read every (or one) source and the log database; judge each source's health.

    ``data``: {"health", "exit_code", "counts": {ok, warning, critical}, "log": {...},
    "sources": [{..., "health", "problems"}]}. A source that cannot be read is
    not an error of the command: it is reported as critical.
    """
    limits = thresholds or Thresholds()
    if limits.crit_age < limits.warn_age:
        raise FbauditError(f"the critical age ({age_text(limits.crit_age.total_seconds())}) must not be shorter "
                           f"than the warning age ({age_text(limits.warn_age.total_seconds())})")
    if workers < 1:
        raise FbauditError(f"--workers must be at least 1, not {workers}")
    specs = config.source(source)
    now = config.rotation.now()

    def one(spec: SourceSpec) -> dict:
        try:
            return _read_source(config, spec)
        except Exception as exc:      # any failure is this source's CRITICAL row, never a crash of the check
            text = str(exc) if isinstance(exc, FbauditError) else f"{type(exc).__name__}: {exc}"
            return {"source": spec.name, "database": spec.database, "error": text}

    with worker_pool(min(workers, len(specs)) + 1, "status") as pool:
        mass_change = config.mass_change if limits.mass_change is None else limits.mass_change
        if mass_change < 0:
            raise FbauditError(f"--mass-change must be 0 (off) or more rows, not {mass_change}")
        log_future = pool.submit(_read_log, config, mass_change, now)
        items = list(pool.map(one, specs))
        log_error = None
        try:
            runs = log_future.result()
        except Exception as exc:
            runs, log_error = {}, str(exc) if isinstance(exc, FbauditError) else f"{type(exc).__name__}: {exc}"
    statuses = []
    for item in items:
        st = SourceStatus(item)
        run = runs.get(item["source"])
        run_info = {k: v for k, v in (run or {}).items() if k not in ("registered", "last_shipped_at", "mass")}
        item["mass_changes"] = (run or {}).get("mass", [])
        for m in item["mass_changes"]:
            tables = ", ".join(f"{n} rows of {t}" for t, n in m["tables"].items())
            st.add(WARNING, f"mass change: transaction {m['transaction_id']} by {m['author'] or '?'} at {m['at']} "
                            f"changed {tables} (more than {mass_change}); to undo it: `fbaudit revert --transaction "
                            f"{m['transaction_id']} --source {item['source']} --dry-run`, then without --dry-run")
        item["last_transfer"] = run_info if run_info.get("at") else None
        item["last_shipped_at"] = (run or {}).get("last_shipped_at")
        _judge(st, config, now, limits, run, log_error)
        if log_error:
            st.add(CRITICAL, "the log database cannot be read")
        item["health"] = st.health
        item["problems"] = [{"level": lvl, "message": text} for lvl, text in st.problems]
        statuses.append(st)
    counts = {lvl: sum(1 for s in statuses if s.health == lvl) for lvl in (OK, WARNING, CRITICAL)}
    overall = max((s.health for s in statuses), key=LEVELS.get, default=OK)
    if log_error:
        overall = CRITICAL
    out = Result({"health": overall, "exit_code": LEVELS[overall], "checked_at": f"{now:%Y-%m-%d %H:%M:%S}",
                  "counts": counts,
                  "log": {"database": config.log.database, "error": log_error},
                  "thresholds": {"warn_age_s": limits.warn_age.total_seconds(),
                                 "crit_age_s": limits.crit_age.total_seconds(), "mass_change": mass_change},
                  "sources": [s.item for s in statuses]})
    out.lines = screen(out.data, detail=len(statuses) <= 3)
    log.info("[STATUS] %d source(s): %s", len(statuses), ", ".join(f"{v} {k}" for k, v in counts.items()))
    return out


# --------------------------------------------------------------------------
# The screen
# --------------------------------------------------------------------------
def _short_time(text: str | None, today: str) -> str:
    if not text:
        return "never"
    return text[11:16] if text.startswith(today) else text[5:16]


def screen(data: dict, *, detail: bool) -> list[str]:
    """The status as an admin reads it: a summary line, one row per source (worst first), the problems."""
    counts = data["counts"]
    today = data["checked_at"][:10]
    lines = [f"{data['health'].upper()}: {len(data['sources'])} source(s) - {counts[OK]} ok, "
             f"{counts[WARNING]} warning, {counts[CRITICAL]} critical - log database {data['log']['database']}"
             + (" CANNOT BE READ" if data["log"]["error"] else "") + f" - {data['checked_at']}"]
    if data["log"]["error"]:
        lines.append(f"  log database: {data['log']['error'].splitlines()[0]}")
    head = ("SOURCE", "HEALTH", "LOGGING", "TABLES", "BACKLOG", "OLDEST", "FAILED", "LAST TRANSFER",
            "LAST ROTATION", "STAGING")
    rows = []
    order = sorted(data["sources"], key=lambda i: -LEVELS[i["health"]])
    for i in order:
        if i.get("error") or not i.get("initialized"):
            rows.append((i["source"], i["health"].upper(), "-", "-", "-", "-", "-", "-", "-",
                         "unreachable" if i.get("error") else "not initialized"))
            continue
        audited = sum(1 for t in i["tables"] if t["enabled"] and t["trigger"])
        run = i.get("last_transfer") or {}
        rot = i.get("last_rotation")
        staging = i["data_table_rows"]
        rows.append((
            i["source"], i["health"].upper(), "on" if i["logging"] else "OFF", str(audited), str(i["waiting"]),
            age_text(i.get("oldest_waiting_age_s")) if i["waiting"] else "-", str(i["failed"]),
            f"{_short_time(run.get('at'), today)} {run.get('outcome', '')}".strip() if run.get("at") else "never",
            f"{_short_time(rot['started_at'], today)} {rot['outcome']}" if rot else "never",
            f"{i.get('staged_packets', 0)} packets, rows " + "/".join(str(staging[f"LOG_{n}"]) for n in (1, 2, 3))
            + f" (in use: LOG_{i['data_table']})"))
    widths = [max(len(r[c]) for r in rows + [head]) for c in range(len(head))]
    fmt = lambda r: "  ".join(v.ljust(w) if c < len(head) - 1 else v for c, (v, w) in enumerate(zip(r, widths)))
    lines.append("")
    lines.append(fmt(head))
    lines += [fmt(r) for r in rows]
    problems = [(i["source"], p) for i in order for p in i["problems"]]
    if problems:
        lines.append("")
        lines += [f"{p['level'].upper()}: {src}: {p['message']}" for src, p in problems]
    if detail:
        lines.append("")
        for i in data["sources"]:
            lines += _detail(i)
    return lines


def _detail(item: dict) -> list[str]:
    """The long lines for a few sources: table names, packet counts, the rotation's message."""
    name = item["source"]
    if item.get("error") or not item.get("initialized"):
        return []
    audited = [t["table"] for t in item["tables"] if t["enabled"] and t["trigger"]]
    out = [f"{name}: Firebird {item['firebird']}, logging {'ON' if item['logging'] else 'OFF (paused)'}, "
           f"{len(audited)} audited table(s){': ' + ', '.join(audited) if audited else ''}; "
           f"packets waiting {item['waiting']}, failed {item['failed']}, done {item['done']}"
           + (f"; oldest waiting since {item['oldest_waiting']}" if item["oldest_waiting"] else "")]
    for f in item.get("failed_first", []):
        out.append(f"{name}: failed packet {f['packet']} ({f['attempts']} attempts, last {f['last_attempt']}): "
                   f"{f['error']}")
    run = item.get("last_transfer") or {}
    if run.get("at"):
        out.append(f"{name}: last transfer {run['at']}: {run['outcome']}"
                   + (f", {run['packets']} packets in {run['seconds']:.2f} s" if run["outcome"] == "shipped" else "")
                   + (f"; last good run {run['last_ok_at']}" if run["outcome"] == "failed" else ""))
    rows = item["data_table_rows"]
    rot = item["last_rotation"]
    out.append(
        f"{name}: staging: {item.get('staged_packets', 0)} packets; triggers write to LOG_{item['data_table']}; rows "
        + ", ".join(f"{k} {v}" for k, v in rows.items()) + "; last rotation: "
        + (f"#{rot['id']} of LOG_{rot['table']} started {rot['started_at']}, {rot['outcome']}"
           + (f" at phase {rot['phase']}" if rot["outcome"] != "done" else
              f" ({rot['packets_deleted'] or 0} shipped packets deleted, {rot['rows_dropped']} field rows dropped "
              f"in {rot['seconds']:.1f} s)")
           + (f": {rot['message']}" if rot["message"] else "") if rot else "never"))
    return out
