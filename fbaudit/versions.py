"""Record versions rebuilt from the log, diffs between them, and reverts.

A record's history (fbaudit.history) is a list of packets, oldest first,
each with the fields it changed (old -> new). The state of the record at
version N is the fold of versions 1..N: an insert sets every logged field,
an update changes some, a delete removes the row. When the history starts
with an update (auditing began after the row existed), the state knows only
the fields changed since: it is *partial*, and a revert that needs the whole
row (re-inserting a deleted one) says so.

``revert`` works on the source database in ONE transaction:

1. lock the row (``SELECT ... WITH LOCK``, no wait): a user editing it now
   makes the revert refuse with a conflict, never wait or block them;
2. refuse when a change of the record is still waiting for the transfer
   (the log does not know the row's present state yet);
3. compare the row as it is with the last logged version, field by field,
   in the trigger's canonical text: any difference is a change the log
   does not have, and the revert refuses naming the fields;
4. update only the fields that differ from version N (or re-insert a
   deleted row, or delete a row whose version N is its deletion), with the
   author and comment in the transaction context, so the audit trigger
   logs the revert like any change, by that author with that comment.
"""
from __future__ import annotations

import logging

from firebird.driver import Isolation

from .catalog import read_table
from .config import Config
from .db import guard
from .errors import DatabaseError, FbauditError, NotFound, RevertConflict
from .forms import NoneText, decode_value, read_expr, value_kind
from .history import none_text, version_at, version_detail
from .idents import quote_ident
from .registry import Registry
from .sources import open_source
from .staging import Shipped

log = logging.getLogger("fbaudit.revert")

GDS_LOCK_CONFLICT = (335544345, 335544336, 335544510, 335544878)   # lock conflict, deadlock, timeout, concurrent update
GDS_REFUSED = (335544665, 335544466, 335544349, 335544558)   # unique / foreign key / duplicate / check constraint


def param_sql(col) -> str:
    """A parameter carrying the canonical text of a value of ``col``: Firebird converts the text to
    the column's type on assignment or comparison (the driver itself refuses text for numbers)."""
    if col.kind == "binary":
        # Bytes (bind_value), typed as bytes: a plain ? for a NONE column takes the connection's UTF-8
        # and refuses an 8-bit byte ("Malformed string").
        if col.is_blob:
            return "CAST(? AS BLOB SUB_TYPE BINARY)"
        return f"CAST(? AS VARCHAR({max(col.char_length or 1, 1)}) CHARACTER SET OCTETS)"   # VARBINARY: 4.0+
    if col.is_blob:
        return "CAST(? AS BLOB SUB_TYPE TEXT CHARACTER SET UTF8)"
    if col.kind == "float":
        return "?"          # bound as a Python float (bind_value): Firebird's text -> DOUBLE is not always exact
    return "CAST(? AS VARCHAR(8191) CHARACTER SET UTF8)"


def bind_value(col, value: str | None, none: NoneText):
    """The parameter value for :func:`param_sql`: a float's logged text (17 or 34 significant digits)
    parsed by Python, which rounds correctly (1e300 stays 1e300, not 9.999999999999999e+299); NONE
    text the bytes it was shown for (``none``, forms.decode_value), other binary values their hex."""
    if value is not None and col.kind == "float":
        return float(value)
    if value is not None and col.kind == "binary":
        return none.to_bytes(value) if value_kind(col.kind, col.type) == "none" else bytes.fromhex(value)
    return value


def state_at(versions: list[dict], number: int) -> dict:
    """The record after version ``number``: {"exists", "fields", "complete", "version"}.

    ``versions`` is the record's history oldest first, as fbaudit.history gives it (numbered
    by the log; after a prune it starts above 1, and the state of what was pruned is unknown).
    """
    if not versions:
        raise NotFound("The record has no versions in the log database.")
    first, last = versions[0]["version"], versions[-1]["version"]
    if not first <= number <= last:
        raise NotFound(f"No version {number}: the record has versions {first} to {last}"
                       + (" (older ones were pruned)." if first > 1 else "."))
    fields: dict[str, str | None] = {}
    exists, complete, unrecorded = True, False, False
    for v in versions:
        if v["version"] > number:
            break
        op = v["operation"]
        if op in ("insert", "baseline", "key_change"):   # the whole row (its non-NULL fields)
            fields = {k: c["new"] for k, c in v["changes"].items() if c["new"] is not None}
            exists, complete, unrecorded = True, True, False
        elif op == "key_change_away":            # gone from this key (it lives on under the new one)
            fields, exists, complete, unrecorded = {}, False, True, False
        elif op == "delete":
            fields = {k: c["old"] for k, c in v["changes"].items()}
            exists, complete, unrecorded = False, True, False
        elif op == "delete_unrecorded":          # deleted during an upgrade: gone, as after a delete
            fields, exists, complete, unrecorded = {}, False, True, False
        elif op.endswith("_unrecorded"):         # changed during an upgrade: values unknown from here
            fields, exists, complete, unrecorded = {}, True, False, True
        else:                                    # update (or a restore event: the row as logged)
            if not exists:
                exists = True
            for k, c in v["changes"].items():
                fields[k] = c["new"]
    return {"version": number, "exists": exists, "fields": fields, "complete": complete, "unrecorded": unrecorded}


def diff(versions: list[dict], a: int, b: int) -> dict:
    """Fields whose value differs between the states after versions ``a`` and ``b``."""
    return _diff_states(state_at(versions, a), state_at(versions, b))


def record_state(config: Config, table: str, key: str, version: int | None = None, *,
                 source: str | None = None) -> dict:
    """The record at ``version`` (default: the last one), from the log database (one snapshot)."""
    d = version_detail(config, table, key, version, source=source)
    return {"source": d["source"], "table": d["table"], "key": d["key"], "total": d["total"],
            "newest": d["newest"], **d["state"]}


def record_as_of(config: Config, table: str, key: str, at, *, source: str | None = None, db=None) -> dict:
    """The record as it was at time ``at``: the state after its newest version made at or before it
    (history.version_at), with that version's number and time; ``version`` None when every version
    kept is later (the record is not known then: not audited yet, not created yet, or pruned).
    ``db``: a log connection the caller keeps (the API's)."""
    from contextlib import nullcontext
    with (nullcontext(db) if db is not None else
          open_source(config, config.log, isolation=Isolation.SNAPSHOT, read_only=True)) as db:
        found = version_at(config, table, key, at, source=source, db=db)
        base = {"source": found["source"], "table": found["table"], "key": found["key"],
                "as_of": at.isoformat(sep=" ")}
        if found["version"] is None:
            return {**base, "version": None, "at": None, "exists": None, "fields": {}, "complete": False,
                    "unrecorded": False, "first_version": found["first"][0], "first_at": found["first"][1]}
        d = version_detail(config, table, key, found["version"], source=source, db=db)
    return {**base, "at": d["version"]["at"], "total": d["total"], "newest": d["newest"], **d["state"]}


def _diff_states(sa: dict, sb: dict) -> dict:
    names = list(dict.fromkeys([*sa["fields"], *sb["fields"]]))
    changed = {n: {"a": sa["fields"].get(n), "b": sb["fields"].get(n)}
               for n in names if sa["fields"].get(n) != sb["fields"].get(n) or sa["exists"] != sb["exists"]}
    return {"a": sa["version"], "b": sb["version"], "a_exists": sa["exists"], "b_exists": sb["exists"],
            "fields": changed}


def record_diff(config: Config, table: str, key: str, a: int, b: int, *, source: str | None = None) -> dict:
    """Fields that differ between the record after version ``a`` and after ``b``: two server-side
    folds (version_detail) on one connection, not the whole history."""
    with open_source(config, config.log, isolation=Isolation.SNAPSHOT, read_only=True) as db:
        da = version_detail(config, table, key, a, source=source, db=db)
        db_ = version_detail(config, table, key, b, source=source, db=db)
    return {"source": da["source"], "table": da["table"], "key": da["key"], "total": da["total"],
            **_diff_states(da["state"], db_["state"])}


def revert(config: Config, table: str, key: str, *, to_version: int, by: str | None = None,
           comment: str | None = None, source: str | None = None, dry_run: bool = False) -> dict:
    """Put the record back to its state after ``to_version`` (see the module docstring)."""
    # Two folds in SQL, not the whole history: the version to go back to and the newest one.
    target = version_detail(config, table, key, to_version, source=source)["state"]
    h = version_detail(config, table, key, None, source=source)
    newest, latest = h["newest"], h["state"]
    if h["version"]["operation"] == "key_change_away":
        moved = h["version"].get("key_to")
        raise FbauditError(f"{h['table']} {', '.join(f'{k}={v}' for k, v in h['key'].items())}: its key was changed "
                           f"(version {newest})" + (f" to {moved}" if moved else "") + "; the record goes on under "
                           "that key, so revert it there (`fbaudit history` with the new key shows its versions). "
                           "Nothing was changed.")
    spec = next(s for s in config.sources if s.name == h["source"])
    p = config.prefix
    author = by or "fbaudit revert"
    note = comment or f"revert to version {to_version}"
    what = f"{h['table']} {', '.join(f'{k}={v}' for k, v in h['key'].items())}"
    for state, which in ((target, f"version {to_version}"), (latest, f"its newest version, {newest},")):
        if state.get("unrecorded"):
            raise FbauditError(f"{what}: {which} comes after a change made during a schema upgrade, whose values "
                               "were not recorded, so the record's values there are not known; nothing was "
                               "changed. `fbaudit upgrade end` logs each such row whole; revert to a version "
                               "before the upgrade or after that (docs/schema-changes.md).")
    db = open_source(config, spec, isolation=Isolation.READ_COMMITTED, lock_timeout=0)
    try:
        info = read_table(db, h["table"], commit=False)
        cols = {c.name: c for c in info.columns}
        entry = Registry.load(spec.registry).tables.get(h["table"])
        if entry is None or not entry.enabled:
            db.rollback()
            raise FbauditError(f"{what}: {h['table']} is not audited in source {spec.name} now (registry "
                               f"{spec.registry}), so a revert would not be logged; nothing was changed. "
                               f"`fbaudit enable {h['table']}` first.")
        key_cols = list(h["key"])
        logged = [c for c in info.columns if c.name in entry.fields and c.auditable]
        logged_names = {c.name for c in logged}
        # Insert and delete log only the non-NULL values: in a whole-row state a logged column
        # that is missing was NULL.
        def whole(state: dict) -> dict:
            if not state["complete"]:
                return dict(state["fields"])
            return {**{c.name: None for c in logged}, **state["fields"]}
        target_fields, latest_fields = whole(target), whole(latest)
        skipped = sorted(n for n in target_fields if n not in logged_names)
        none = none_text(config, h["source"])
        where = " AND ".join(f"{quote_ident(k)} = {param_sql(cols[k])}" for k in key_cols)
        # A NONE or OCTETS key part is typed as its text (``none``) or as x'...' (history.parse_key).
        params = [none.to_bytes(h["key"][k]) if cols[k].kind == "binary" and h["key"][k] is not None
                  else bind_value(cols[k], h["key"][k], none) for k in key_cols]
        select = ", ".join(read_expr(c, "T", db.major) for c in logged) or "1"
        try:
            with guard(spec):
                cur = db.con.cursor()
                cur.execute(f"SELECT {select} FROM {quote_ident(h['table'])} T WHERE {where} WITH LOCK", params)
                rows = [[v.read() if hasattr(v, "read") else v for v in r] for r in cur.fetchall()]   # BLOB readers
                cur.close()
        except DatabaseError as exc:
            db.rollback()
            if set(exc.gds_codes) & set(GDS_LOCK_CONFLICT):
                raise RevertConflict(f"{what} is being changed by another transaction right now; nothing was "
                                     "reverted. Try again when that user has saved.") from None
            raise
        if len(rows) > 1:
            db.rollback()
            raise FbauditError(f"{what}: {len(rows)} rows have this key (the audit key is not unique), so the "
                               "revert cannot tell which to change; nothing was changed.")
        shipped = Shipped(db, p)
        waiting = db.scalar(f"SELECT COUNT(*) FROM ({shipped.unshipped('p.ID', 'p.NUM_TABLE = ? AND p.RECORD_KEY = ?')})",
                            (entry.number, h["record_key"]) * shipped.parts)
        if waiting:
            db.rollback()
            raise RevertConflict(f"{what} has {waiting} change(s) not yet in the log database (waiting for "
                                 "`fbaudit transfer`, or failed); nothing was reverted. Transfer first, then "
                                 "check the history again.")
        current = None
        if rows:
            current = {c.name: decode_value(v, value_kind(c.kind, c.type), none) for c, v in zip(logged, rows[0])}
        # 3. the row as it is must be the last logged version
        if (current is not None) != latest["exists"]:
            db.rollback()
            raise RevertConflict(f"{what} {'exists' if current is not None else 'is deleted'} but its last logged "
                                 f"version {newest} says {'deleted' if current is not None else 'it exists'}; "
                                 "nothing was reverted.")
        if current is not None:
            differ = [n for n, v in latest_fields.items() if n in current and current[n] != v]
            if differ:
                db.rollback()
                raise RevertConflict(f"{what} changed since its last logged version {newest} "
                                     f"({', '.join(differ)}); nothing was reverted.")
        # 4. what to do
        if not target["exists"]:
            action, fields = ("delete", {}) if current is not None else ("none", {})
        elif current is None:
            if not target["complete"]:
                db.rollback()
                raise FbauditError(f"{what}: version {to_version} does not hold the whole row (its history starts "
                                   "with an update), so the deleted row cannot be re-inserted; nothing was changed.")
            action, fields = "insert", {n: v for n, v in target_fields.items() if n in logged_names}
        else:
            fields = {n: v for n, v in target_fields.items() if n in logged_names and current.get(n) != v}
            action = "update" if fields else "none"
        if by and entry.author and entry.author in cols and action in ("update", "insert"):
            fields[entry.author] = by     # the trigger takes the author from this column: the revert is by `by`
        if action != "none" and not dry_run:
            with guard(spec):
                cur = db.con.cursor()
                cur.execute("SELECT RDB$SET_CONTEXT('USER_TRANSACTION', 'FBAUDIT_AUTHOR', ?), "
                            "RDB$SET_CONTEXT('USER_TRANSACTION', 'FBAUDIT_COMMENT', ?) FROM RDB$DATABASE",
                            (author[:255], note[:255]))
                cur.fetchall()
                if action == "update":
                    sets = ", ".join(f"{quote_ident(n)} = {param_sql(cols[n])}" for n in fields)
                    cur.execute(f"UPDATE {quote_ident(h['table'])} SET {sets} WHERE {where}",
                                [*(bind_value(cols[n], v, none) for n, v in fields.items()), *params])
                elif action == "insert":
                    names = ", ".join(quote_ident(n) for n in fields)
                    override = " OVERRIDING SYSTEM VALUE" if always_identity(db, h["table"], fields) else ""
                    cur.execute(f"INSERT INTO {quote_ident(h['table'])} ({names}){override} VALUES "
                                f"({', '.join(param_sql(cols[n]) for n in fields)})", [bind_value(cols[n], v, none) for n, v in fields.items()])
                else:
                    cur.execute(f"DELETE FROM {quote_ident(h['table'])} WHERE {where}", params)
                cur.close()
            db.commit()
        else:
            db.rollback()
    except DatabaseError as exc:
        try:
            db.rollback()
        except FbauditError:
            pass
        if set(exc.gds_codes) & set(GDS_REFUSED + GDS_LOCK_CONFLICT):
            raise RevertConflict(f"{what}: the database refused the revert, nothing was changed: "
                                 f"{str(exc).splitlines()[0]}") from None
        raise
    finally:
        db.close()
    line = {"update": f"{what}: {len(fields)} field(s) set back to version {to_version} ({', '.join(fields)})",
            "insert": f"{what}: deleted row re-inserted as of version {to_version}",
            "delete": f"{what}: deleted again, as in version {to_version}",
            "none": f"{what}: already as in version {to_version}; nothing to do"}[action]
    if skipped:
        line += f"; not set back, no longer audited: {', '.join(skipped)}"
    if dry_run and action != "none":
        line += " (dry run: nothing changed)"
    log.info("[REVERT] %s by %s", line, author)
    return {"source": h["source"], "table": h["table"], "key": h["key"], "to_version": to_version,
            "action": action, "fields": fields, "skipped": skipped, "author": author, "comment": note,
            "dry_run": dry_run, "message": line}


def always_identity(db, table: str, fields: dict) -> bool:
    """Firebird 4+: is one of ``fields`` a GENERATED ALWAYS identity column (needs OVERRIDING SYSTEM VALUE)?"""
    if db.major < 4:
        return False
    rows = db.query("SELECT TRIM(TRAILING FROM RDB$FIELD_NAME) FROM RDB$RELATION_FIELDS WHERE RDB$RELATION_NAME = ? "
                    "AND RDB$IDENTITY_TYPE = 0", (table,))
    return any(r[0] in fields for r in rows)


__all__ = ["state_at", "diff", "record_state", "record_as_of", "version_detail", "record_diff", "revert",
           "param_sql", "bind_value", "always_identity",
           "RevertConflict"]
