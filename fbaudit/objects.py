"""fbaudit's own objects in a database: their names, the plan that creates what is missing
(``fbaudit init``), whether a database is initialized, its audit triggers, and the version
numbering of an older log database. Features build on these; nothing here knows a command.
"""
from __future__ import annotations

import dataclasses
import json
import re
import time
from dataclasses import dataclass
from typing import Iterable

from firebird.driver import Isolation, tpb

from . import templates
from .catalog import table_exists
from .db import Database, apply_plan, guard
from .errors import DatabaseError, FbauditError
from .idents import check_length, ident_end, quote_ident
from .staging import Shipped
from .templates import Statement

# Object names init creates in the main database (without the prefix).
MAIN_OBJECTS = ("LOG_INFO", "LOG_PACKET", "LOG_1", "LOG_2", "LOG_3", "V_LOG_1", "V_LOG_2",
                "LOG_PACKET_FLAG", "LOG_PACKET_ID", "LOG_TABLES", "LOG_FIELDS", "LOG_PACKET_PK",
                "LOG_1_PACKET", "LOG_2_PACKET", "LOG_TABLES_PK", "LOG_FIELDS_PK", "NEW_PACKET",
                "LOG_PACKET_STATE", "DICT_VERSION", "LOG_TABLES_DV", "LOG_FIELDS_DV",
                "LOG_ROTATION", "LOG_ROTATION_PK", "LOG_QUIET", "LOG_QUIET_PK", "LOG_PARTS",
                "LOG_PARTS_PK", "LOG_PARTS_KEPT", "DDL_FOLLOW", "DDL_LOG", "DDL_REFUSED", "LOG_UPGRADE",
                "LOG_UPGRADE_PK", "LOG_TOUCHED", "LOG_TOUCHED_HASH", "LOG_PENDING", "LOG_PENDING_PK", "LOG_FAILED",
                "LOG_FAILED_PK", "LOG_PACKET_1", "LOG_PACKET_1_PK", "LOG_PACKET_2", "LOG_PACKET_2_PK", "DDL_GUARD")
LOG_OBJECTS = ("SOURCES", "SOURCES_NAME", "LOG_PACKET_KEY", "LOG_PACKET_TIME", "DICT_TABLES_PK", "DICT_FIELDS_PK",
               "BLOB_INS", "PACKETS_INS", "TRANSFER_RUNS", "TRANSFER_RUNS_PK", "LOG_PACKET_DESC",
               "LOG_PACKET_LAST", "LOG_PACKET_DDL", "LOG_PACKET_TX", "LOG_NEW_VALUE", "LOG_OLD_VALUE")


def trigger_name(prefix: str, number: int) -> str:
    return f"{prefix}AUDIT_{number}"


def existing_objects(db: Database, prefix: str, columns: Iterable[str] = ()) -> set[str]:
    """fbaudit's objects that exist, without the prefix; ``columns`` (TABLE.COLUMN, the templates'
    "-- object: COLUMN" upgrades) are included as TABLE.COLUMN when the column exists."""
    columns = sorted(set(columns))
    sql = ("SELECT TRIM(RDB$RELATION_NAME) FROM RDB$RELATIONS WHERE RDB$RELATION_NAME STARTING WITH ? "
           "UNION ALL SELECT TRIM(RDB$GENERATOR_NAME) FROM RDB$GENERATORS WHERE RDB$GENERATOR_NAME STARTING WITH ? "
           "UNION ALL SELECT TRIM(RDB$INDEX_NAME) FROM RDB$INDICES WHERE RDB$INDEX_NAME STARTING WITH ? "
           "UNION ALL SELECT TRIM(RDB$PROCEDURE_NAME) FROM RDB$PROCEDURES WHERE RDB$PROCEDURE_NAME STARTING WITH ? "
           "UNION ALL SELECT TRIM(RDB$TRIGGER_NAME) FROM RDB$TRIGGERS WHERE RDB$TRIGGER_NAME STARTING WITH ? "
           "UNION ALL SELECT TRIM(RDB$EXCEPTION_NAME) FROM RDB$EXCEPTIONS WHERE RDB$EXCEPTION_NAME STARTING WITH ?")
    params = [prefix] * 6
    for col in columns:
        table, field = col.split(".", 1)
        sql += (" UNION ALL SELECT TRIM(RDB$RELATION_NAME) || '.' || TRIM(RDB$FIELD_NAME) FROM RDB$RELATION_FIELDS "
                "WHERE RDB$RELATION_NAME = ? AND RDB$FIELD_NAME = ?")
        params += [prefix + table, field]
    rows = db.query(sql, tuple(params))
    db.commit()
    return {r[0][len(prefix):] for r in rows}


def check_prefix(prefix: str, major: int) -> None:
    for obj in MAIN_OBJECTS + LOG_OBJECTS + ("AUDIT_2147483647",):
        check_length(prefix + obj, major_version=major, what="fbaudit object")


def plan_init(db: Database, prefix: str, template: str = "main_init") -> list[Statement]:
    """Statements creating what is missing of the staging objects (idempotent)."""
    check_prefix(prefix, db.major)
    statements = templates.render(template, upgrades=True, P=prefix)
    have = existing_objects(db, prefix, [st.object for st in statements if st.kind == "COLUMN"])
    plan = []
    for st in statements:
        if st.kind == "COLUMN" and any(p.kind == "TABLE" and p.object == st.object.split(".")[0] for p in plan):
            continue             # the table is created now, with the column
        if st.object not in have:
            plan.append(st)
        elif st.kind == "PROCEDURE" and procedure_source(db, prefix + st.object) != psql_body(st.sql):
            # fbaudit's procedures are CREATE OR ALTER: a newer version replaces an older one.
            plan.append(dataclasses.replace(st, object=f"{st.object} (updated)"))
        elif (st.kind == "TRIGGER" and st.sql.startswith("CREATE OR ALTER TRIGGER")
              and psql_body(trigger_source(db, prefix + st.object) or "") != psql_body(st.sql)):
            plan.append(dataclasses.replace(st, object=f"{st.object} (updated)"))
    return plan


NUMBER_LOCK_WAIT = 30.0     # seconds number_versions tries to take the transfers' lock


def unnumbered(db: Database, p: str, *, column: bool) -> int:
    """Packets number_versions would number (all of them when the VERSION_NO column is not there yet)."""
    null = " AND VERSION_NO IS NULL" if column else ""
    n = db.scalar(f"SELECT COUNT(*) FROM {p}LOG_PACKET WHERE RECORD_KEY IS NOT NULL{null}")
    db.commit()
    return n


def number_versions(db: Database, prefix: str) -> int:
    """Number the packets of a log database made before VERSION_NO (1, 2, 3 ... per record, in packet
    order); returns how many lacked a number. Runs only when some do (an upgraded log database, or an
    init interrupted before numbering); then every record is numbered from its oldest packet kept."""
    p = prefix
    missing = f"FROM {p}LOG_PACKET WHERE VERSION_NO IS NULL AND RECORD_KEY IS NOT NULL"
    if not db.scalar(f"SELECT 1 FROM RDB$DATABASE WHERE EXISTS (SELECT 1 {missing})"):
        db.commit()
        return 0
    db.commit()
    # Every source's lock first, in this transaction: the transfers' own lock (transfer.load). A transfer
    # committing while the walk runs would otherwise keep a wrong number for good (1, 2, 1); now it waits
    # (and, after its lock timeout, retries on its next pass) until the numbering is committed.
    # Tries of 1 s each until NUMBER_LOCK_WAIT: a record-lock time-out and "the transfer committed
    # while we waited" (Firebird 3 READ COMMITTED: update conflict) give the same error codes.
    deadline = time.monotonic() + NUMBER_LOCK_WAIT
    while True:
        try:
            db.con.begin(tpb(Isolation.READ_COMMITTED_RECORD_VERSION, lock_timeout=1))
            db.execute(f"UPDATE {p}SOURCES SET LAST_TRANSFER_AT = LAST_TRANSFER_AT")
            break
        except DatabaseError as exc:
            db.rollback()
            if time.monotonic() < deadline:
                continue
            raise FbauditError(f"The log database's packets need version numbers, but a transfer is running and "
                               f"has held its source's lock for {NUMBER_LOCK_WAIT:g} s: nothing was numbered. "
                               f"Run `fbaudit init` again when the transfer has ended.\n  {exc}") from exc
    todo = db.scalar(f"SELECT COUNT(*) {missing}")
    if todo:
        # ddl/number_versions.sql: in LOG_PACKET_KEY order, counting within a run of one key.
        db.execute(templates.render("number_versions", P=p)[0].sql)
    db.commit()
    return todo or 0


def psql_body(sql: str) -> str:
    """What Firebird stores as a PSQL module's source: the text after the line ``AS``."""
    return re.split(r"^AS\s*$", sql, maxsplit=1, flags=re.M)[-1].strip()


def procedure_source(db: Database, name: str) -> str | None:
    rows = db.query("SELECT RDB$PROCEDURE_SOURCE FROM RDB$PROCEDURES WHERE RDB$PROCEDURE_NAME = ?", (name,),
                    whole_blobs=True)
    db.commit()
    return rows[0][0].strip() if rows and rows[0][0] is not None else None


def trigger_source(db: Database, name: str) -> str | None:
    rows = db.query("SELECT RDB$TRIGGER_SOURCE FROM RDB$TRIGGERS WHERE RDB$TRIGGER_NAME = ?", (name,),
                    whole_blobs=True)
    db.commit()
    return rows[0][0].strip() if rows and rows[0][0] is not None else None


def relation_exists(db: Database, name: str) -> bool:
    """A table or view of that name (fbaudit's own: LOG_PARTS_KEPT is a view)."""
    return bool(db.query("SELECT 1 FROM RDB$RELATIONS WHERE RDB$RELATION_NAME = ?", (name,)))


def is_initialized(db: Database, prefix: str) -> bool:
    return table_exists(db, prefix + "LOG_INFO") and table_exists(db, prefix + "LOG_PACKET")


def require_init(db: Database, prefix: str) -> None:
    if not is_initialized(db, prefix):
        raise FbauditError(f"Database {db.spec.describe()} has no fbaudit staging objects "
                           f"(prefix {prefix!r}). Run `fbaudit init` first.")


def packed_staging(db: Database, prefix: str) -> bool:
    """The main database's staging has LOG_PACKET.PAYLOAD, which the packed trigger writes (capture 2.0)."""
    return "LOG_PACKET.PAYLOAD" in existing_objects(db, prefix, ["LOG_PACKET.PAYLOAD"])


def log_unpacks(db: Database, prefix: str, *, rotating: bool = False) -> bool:
    """The log database's PACKETS_INS unpacks packed changes (it returns FIELDS_); an older one would
    ship a packed change without its fields. ``rotating``: it also reads the packet tables
    LOG_PACKET_1 / LOG_PACKET_2 of the source (an older one would never see their packets)."""
    found = db.scalar("SELECT COUNT(*) FROM RDB$PROCEDURE_PARAMETERS WHERE RDB$PROCEDURE_NAME = ? "
                      "AND RDB$PARAMETER_NAME = 'FIELDS_'", (f"{prefix}PACKETS_INS",))
    db.commit()
    if found and rotating:
        return f"{prefix}LOG_PACKET_1" in (procedure_source(db, f"{prefix}PACKETS_INS") or "")
    return bool(found)


def require_current(db: Database, prefix: str) -> None:
    """Before installing triggers: the staging objects they use exist (an older init lacks some)."""
    require_init(db, prefix)
    for name, have in ((f"{prefix}LOG_QUIET", lambda: table_exists(db, prefix + "LOG_QUIET")),
                       (f"{prefix}LOG_PACKET.PAYLOAD", lambda: packed_staging(db, prefix)),
                       (f"{prefix}LOG_PARTS_KEPT", lambda: relation_exists(db, prefix + "LOG_PARTS_KEPT")),
                       (f"{prefix}LOG_UPGRADE", lambda: table_exists(db, prefix + "LOG_UPGRADE")),
                       (f"{prefix}LOG_PENDING", lambda: table_exists(db, prefix + "LOG_PENDING")),
                       (f"{prefix}LOG_PACKET_2", lambda: table_exists(db, prefix + "LOG_PACKET_1")
                        and table_exists(db, prefix + "LOG_PACKET_2"))):
        if not have():
            raise FbauditError(f"Database {db.spec.describe()} has the staging objects of an older fbaudit "
                               f"({name} is missing). Run `fbaudit init` (it adds what is missing), "
                               "then `fbaudit sync`.")


def grant_packet_tables(db: Database, prefix: str) -> list[str]:
    """Give every audit trigger INSERT on LOG_PACKET_1 and LOG_PACKET_2 where it lacks it (a table made
    again by `fbaudit init` after it was dropped outside fbaudit; `enable` and rotation grant it
    otherwise), in one transaction; returns "TABLE to TRIGGER" of each grant made."""
    tables = (f"{prefix}LOG_PACKET_1", f"{prefix}LOG_PACKET_2")
    rows = db.query("SELECT TRIM(TRAILING FROM t.RDB$TRIGGER_NAME), TRIM(TRAILING FROM r.RDB$RELATION_NAME) "
                    "FROM RDB$TRIGGERS t CROSS JOIN RDB$RELATIONS r WHERE t.RDB$TRIGGER_NAME STARTING WITH ? "
                    "AND t.RDB$RELATION_NAME IS NOT NULL AND r.RDB$RELATION_NAME IN (?, ?) AND NOT EXISTS "
                    "(SELECT 1 FROM RDB$USER_PRIVILEGES u WHERE u.RDB$RELATION_NAME = r.RDB$RELATION_NAME "
                    "AND u.RDB$USER = t.RDB$TRIGGER_NAME AND u.RDB$USER_TYPE = 2 AND u.RDB$PRIVILEGE = 'I')",
                    (f"{prefix}AUDIT_",) + tables)
    db.commit()
    audit = re.compile(re.escape(prefix) + r"AUDIT_\d+")
    todo = sorted((table, trig) for trig, table in rows if audit.fullmatch(trig))
    if todo:
        apply_plan(db, [Statement(f"GRANT INSERT ON {table} TO TRIGGER {quote_ident(trig)}")
                        for table, trig in todo])
    return [f"{table} to {trig}" for table, trig in todo]


def trigger_exists(db: Database, prefix: str, number: int) -> bool:
    return bool(db.query("SELECT 1 FROM RDB$TRIGGERS WHERE RDB$TRIGGER_NAME = ?", (trigger_name(prefix, number),)))


def trigger_inactive(db: Database, prefix: str, number: int) -> bool:
    """The table's audit trigger exists but is switched off (ALTER TRIGGER ... INACTIVE by someone:
    nothing is logged while the application writes)."""
    return bool(db.query("SELECT 1 FROM RDB$TRIGGERS WHERE RDB$TRIGGER_NAME = ? AND RDB$TRIGGER_INACTIVE = 1",
                         (trigger_name(prefix, number),)))


def installed_trigger_body(db: Database, prefix: str, number: int) -> str | None:
    """The source of a table's installed audit trigger (from ``AS`` on), or None."""
    sql = "SELECT RDB$TRIGGER_SOURCE FROM RDB$TRIGGERS WHERE RDB$TRIGGER_NAME = ?"
    with guard(db.spec, sql):
        cur = db.con.cursor()
        cur.stream_blob_threshold = -1      # a wide table's source is over the driver's 64 KB: read it whole
        cur.execute(sql, (trigger_name(prefix, number),))
        row = cur.fetchone()
        cur.close()
    src = row[0] if row else None
    return src.strip() if src is not None else None


def trigger_body(sql: str) -> str:
    """The body (from ``AS`` on) of a CREATE TRIGGER statement: the first line ``AS`` after the
    table's name (a quoted name may itself hold a line "AS")."""
    table_end = ident_end(sql, sql.index(" FOR ") + len(" FOR "))
    return sql[sql.index("\nAS\n", table_end) + 1:].strip()


@dataclasses.dataclass
class Follow:
    """How an audited table's trigger stands after schema changes (status): ``parts`` False when
    the trigger predates LOG_PARTS; ``not_logged``: columns the trigger does not log that
    sync would (added, or retyped, since it was made); ``altered``: its source is not what fbaudit
    made for the table as it is (edited outside fbaudit)."""

    parts: bool
    not_logged: list[str]
    altered: bool


def trigger_follow(db: Database, prefix: str, number: int, table: str, excluded: Iterable[str]) -> Follow:
    p = prefix
    # LOG_PARTS_KEPT (ddl/main_init.sql): the parts DDL_FOLLOW would build the trigger from now.
    rows = db.query(f"SELECT k.FIELD_NAME, k.PART, k.KEPT, k.SEQ FROM {p}LOG_PARTS_KEPT k WHERE k.NUM_TABLE = ? "
                    f"ORDER BY k.SEQ", (number,), whole_blobs=True)
    if not rows:
        return Follow(False, [], False)
    held = [name for name, _, kept, seq in rows if seq < 0 and not kept]
    if held:      # a key or author column retyped: DDL_FOLLOW kept the old trigger, sync makes the new one
        return Follow(True, held, False)
    rows = [r[:3] for r in rows if r[3] > 0]
    logged = {name for name, _, kept in rows if name is not None and kept}
    columns = [name for (name,) in db.query(
        "SELECT TRIM(TRAILING FROM rf.RDB$FIELD_NAME) FROM RDB$RELATION_FIELDS rf JOIN RDB$FIELDS f "
        "ON f.RDB$FIELD_NAME = rf.RDB$FIELD_SOURCE WHERE rf.RDB$RELATION_NAME = ? AND f.RDB$COMPUTED_BLR IS NULL "
        "AND f.RDB$DIMENSIONS IS NULL ORDER BY rf.RDB$FIELD_POSITION", (table,))]
    skip = set(excluded)
    not_logged = [c for c in columns if c not in logged and c not in skip]
    expected = trigger_body("".join(part for _, part, kept in rows if kept))
    installed = installed_trigger_body(db, prefix, number)
    return Follow(True, not_logged, installed is not None and installed != expected)


@dataclass
class Upgrade:
    """A table in an upgrade (LOG_UPGRADE, fbaudit.upgrade): its audit trigger logs keys only until
    ``ended``; the row stays until the rows changed meanwhile are logged whole."""

    number: int
    started_at: object
    started_by: str | None
    from_id: int
    columns: dict[str, int]
    ended_at: object          # the whole trigger made again
    logged_at: object         # the rows changed during the upgrade logged whole: done

    @property
    def open(self) -> bool:
        """Between begin and end: the trigger logs keys only."""
        return self.ended_at is None

    @property
    def pending(self) -> bool:
        """Not done: open, or ended before its rows were logged whole (rotation waits, status warns)."""
        return self.logged_at is None


def upgrades(db: Database, prefix: str) -> dict[int, Upgrade]:
    """Each table's last upgrade (done ones too), by table number ({} before LOG_UPGRADE exists)."""
    if not table_exists(db, prefix + "LOG_UPGRADE"):
        return {}
    rows = db.query(f"SELECT NUM_TABLE, STARTED_AT, TRIM(TRAILING FROM STARTED_BY), FROM_ID, COLUMNS, ENDED_AT, "
                    f"LOGGED_AT FROM {prefix}LOG_UPGRADE ORDER BY NUM_TABLE", whole_blobs=True)
    return {r[0]: Upgrade(r[0], r[1], r[2], r[3], json.loads(r[4] or "{}"), r[5], r[6]) for r in rows}


def keys_only_since(db: Database, prefix: str, number: int, after: int) -> int:
    """Changes of a table through a keys-only trigger (operations 10, 11) with ids above ``after``."""
    return db.scalar(f"SELECT COUNT(*) FROM {Shipped(db, prefix).packets} x WHERE ID > ? AND NUM_TABLE = ? "
                     "AND OPERATION IN (10, 11)", (after, number))


def control_event(prefix: str, event: str, object_type: str, obj: str, text: str,
                  packet_id: int | None = None) -> Statement:
    """A control event (operation 9, table 0, docs/schema-changes.md) written in the statement's
    transaction: pause, resume, upgrade begin and end are on record beside the DDL. ``packet_id``:
    an id taken before (the event sorts before packets whose ids were reserved after it)."""
    payload = b"".join(f"{num},-1,{len(v)};".encode() + v for num, v in
                       ((1, event.encode()), (2, object_type.encode()), (3, obj.encode()), (4, text.encode()),
                        (5, b"fbaudit")))
    return Statement(f"INSERT INTO {prefix}LOG_PACKET (ID, CREATED_AT, OPERATION, NUM_TABLE, DATA_TABLE, "
                     f"RECORD_KEY, AUTHOR, DB_USER, CLIENT_ADDRESS, TRANSACTION_ID, PAYLOAD) "
                     f"SELECT COALESCE(CAST(? AS BIGINT), GEN_ID({prefix}LOG_PACKET_ID, 1)), LOCALTIMESTAMP, 9, 0, "
                     f"IIF(ID_TABLE = 2, 2, 1), ?, CURRENT_USER, CURRENT_USER, "
                     f"RDB$GET_CONTEXT('SYSTEM', 'CLIENT_ADDRESS'), CURRENT_TRANSACTION, ? "
                     f"FROM (SELECT FIRST 1 ID_TABLE FROM {prefix}LOG_INFO)", (packet_id, obj, payload))
