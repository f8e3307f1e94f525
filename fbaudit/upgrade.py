"""`fbaudit upgrade begin|end`: a schema upgrade that renames columns of audited tables, with
auditing on and no change lost (docs/schema-changes.md "Renaming columns").

Firebird refuses to rename a column a trigger reads, and checks that in the DDL's own transaction
against dependencies that change only when a transaction commits (measured on 3.0, 4.0 and 5.0),
so no trigger fired by the ALTER itself can make a rename pass. Every other ALTER TABLE is
followed in its own transaction (DDL_FOLLOW). For renames, one command before the upgrade and
one after:

``begin`` (one transaction per source): each chosen audited table's trigger is replaced by one made
from the same template with no column lines (capture.plan_trigger ``keys_only``). It reads only
the key and author columns, so the upgrade may rename, drop or retype any other column. It logs
every change as who changed which row and how: operations 10-12, "values not recorded"
(forms.UNRECORDED). LOG_UPGRADE keeps, per table, each column's RDB$FIELD_ID at the start (a
rename keeps it, a drop and add gets a new one, never reused: measured) and the packet id then.
A control event "UPGRADE BEGIN" per table goes in the same transaction.

``end``:
1. per table: the columns renamed since ``begin`` keep their field numbers (matched by
   RDB$FIELD_ID); dropped ones are retired; added and retyped ones get new numbers (as sync); the
   whole trigger is made again; "UPGRADE END" is logged; LOG_UPGRADE.ENDED_AT is set. One
   transaction, after a block of packet ids was reserved (baseline.reserve).
2. per table with changes during the upgrade: the baseline's wait and ONE snapshot transaction,
   which logs each row changed during the upgrade that still exists whole (operation
   "baseline", comment COMMENT), with ids from the reserved block, and deletes the table's
   LOG_UPGRADE row. So in each record's history: the versions of the upgrade (values not
   recorded), then the row as it was after it, then the changes captured by the new trigger.
   An end that stops in step 2 (a writer older than the trigger kept open) is finished by
   running it again; meanwhile status says so.
"""
from __future__ import annotations

import json
import logging

from . import baseline as baseline_mod
from .capture import (column_kinds, dictionary_max, entry_from_dictionary, plan_dictionary, plan_trigger,
                      reconcile, retire_field)
from .catalog import read_table, table_exists
from .config import Config, SourceSpec
from .db import apply_plan
from .errors import CatalogError, FbauditError
from .idents import normalize_name
from .objects import Upgrade, control_event, keys_only_since, require_current, upgrades
from .rotation import last_rotation
from .progress import Progress
from .registry import Registry, TableEntry
from .sources import Result, for_each_source, open_source
from .staging import Shipped, claim_ids_sql, reserve_ids
from .templates import Statement

log = logging.getLogger("fbaudit.upgrade")

COMMENT = "upgrade end: the row after the upgrade"
ROUNDS = 3          # snapshots per table at most in one `upgrade end` (see end())


def _column_ids(db, table: str) -> dict[str, int]:
    return {name: fid for name, fid in db.query(
        "SELECT TRIM(TRAILING FROM RDB$FIELD_NAME), RDB$FIELD_ID FROM RDB$RELATION_FIELDS "
        "WHERE RDB$RELATION_NAME = ?", (table,))}


def _audited(db, prefix: str, registry: Registry) -> dict[str, TableEntry]:
    out = {}
    for (name,) in db.query(f"SELECT TRIM(TRAILING FROM TABLE_NAME) FROM {prefix}LOG_TABLES WHERE ENABLED = 1 "
                            "ORDER BY NUM_TABLE"):
        entry = registry.tables.get(name) or entry_from_dictionary(db, prefix, name)
        if entry is not None:
            out[name] = entry
    return out


def begin(config: Config, *, tables: list[str] | tuple = (), source: str | None = None,
          dry_run: bool = False) -> Result:
    """Switch the audit triggers of ``tables`` (default: every audited table) to keys only."""
    out = Result({"sources": [], "dry_run": dry_run})
    p = config.prefix

    def one(spec: SourceSpec) -> None:
        registry = Registry.load(spec.registry)
        data = {"source": spec.name, "started": [], "already": []}
        with open_source(config, spec) as db:
            require_current(db, p)
            audited = _audited(db, p, registry)
            wanted = list(dict.fromkeys(normalize_name(t) for t in tables)) or list(audited)
            unknown = [t for t in wanted if t not in audited]
            if unknown:
                raise CatalogError(f"{spec.name}: {', '.join(unknown)} {'is' if len(unknown) == 1 else 'are'} not "
                                   f"audited (audited: {', '.join(audited) or 'none'}); nothing was changed.")
            current = upgrades(db, p)
            rot = last_rotation(db, p)
            if rot and rot["phase"] != "done":
                # Its drop deletes shipped packets of the old data table, which `upgrade end` reads.
                raise FbauditError(f"{spec.name}: rotation #{rot['id']} has not finished (phase {rot['phase']}); "
                                   "run `fbaudit rotate` to finish it, then `fbaudit upgrade begin`. Nothing was "
                                   "changed.")
            plan: list[Statement] = [
                # The row rotation's switch updates too: a rotation starting now and this begin cannot
                # both commit (one gets an update conflict and changes nothing).
                Statement(f"UPDATE {p}LOG_INFO SET ZAPIS = ZAPIS")]
            for name in wanted:
                entry = audited[name]
                u = current.get(entry.number)
                if u is not None and u.open:
                    data["already"].append(name)
                    continue
                if u is not None and u.pending:
                    raise FbauditError(f"{spec.name}: the last upgrade of {name} has not finished: the rows changed "
                                       "during it are not logged whole yet. Run `fbaudit upgrade end` first; "
                                       "nothing was changed.")
                if not table_exists(db, name):
                    raise CatalogError(f"{spec.name}: table {name} no longer exists; `fbaudit sync` marks it "
                                       "disabled. Nothing was changed.")
                info = read_table(db, name)
                plan += plan_trigger(entry, info, p, db.major, keys_only=True)
                plan.append(Statement(f"DELETE FROM {p}LOG_UPGRADE WHERE NUM_TABLE = ?", (entry.number,)))
                plan.append(Statement(
                    f"INSERT INTO {p}LOG_UPGRADE (NUM_TABLE, STARTED_AT, STARTED_BY, FROM_ID, COLUMNS) "
                    f"SELECT ?, LOCALTIMESTAMP, CURRENT_USER, GEN_ID({p}LOG_PACKET_ID, 0), ? FROM RDB$DATABASE",
                    (entry.number, json.dumps(_column_ids(db, name), ensure_ascii=False))))
                plan.append(control_event(p, "UPGRADE BEGIN", "TABLE", name,
                                          f"fbaudit upgrade begin: the audit trigger of {name} logs keys only "
                                          "(who changed which row, values not recorded) until `fbaudit upgrade end`"))
                data["started"].append(name)
            if not data["started"]:
                plan = []
            if plan and not dry_run:
                apply_plan(db, plan)
            db.commit()
        out.add_plan(spec.describe(), plan)
        out.data["sources"].append(data)
        tail = " (dry run: nothing changed)" if dry_run else ""
        if data["started"]:
            out.lines.append(f"{spec.name}: upgrade {'would begin' if dry_run else 'begun'} for "
                             f"{', '.join(data['started'])}: their audit triggers log keys only, so columns may be "
                             f"renamed; run `fbaudit upgrade end` after the upgrade{tail}")
        if data["already"]:
            out.lines.append(f"{spec.name}: already in an upgrade: {', '.join(data['already'])}")
        log.info("[UPGRADE] %s", out.lines[-1] if out.lines else f"{spec.name}: nothing to do")
    return for_each_source(config, source, out, one, log=log, tag="UPGRADE")


def follow_renames(entry: TableEntry, began: dict[str, int], now: dict[str, int],
                   types: dict[str, str]) -> tuple[dict[str, str], list[str], list[str]]:
    """Match the columns of ``entry`` as at `begin` (``began``: name -> RDB$FIELD_ID) with the table
    now (``now``; ``types``: name -> type as the registry writes it), in place:

    - renamed (same id, another name, same type): the field keeps its number under the new name;
    - renamed and retyped: the number is retired under the old name (the new name gets a new one
      from reconcile, as any retyped column);
    - dropped (the id is gone, even if a column of that name was added again: a new column): the
      number is retired, and the name leaves ``exclude``.

    Returns ({old: new} renamed, [old -> new renamed and retyped], [dropped])."""
    by_id = {fid: name for name, fid in now.items()}
    gone = [old for old, fid in began.items() if fid not in by_id]
    dropped = [old for old in gone if old in entry.fields]
    for old in dropped:
        retire_field(entry, old)
    entry.exclude = [name for name in entry.exclude if name not in gone]
    moves = {old: by_id[fid] for old, fid in began.items() if fid in by_id and by_id[fid] != old}
    retyped = []
    for old, new in list(moves.items()):
        f = entry.fields.get(old)
        if f is not None and f.type and types.get(new) and f.type != types[new]:
            retire_field(entry, old)
            retyped.append(f"{old} -> {new}")
            del moves[old]
    if moves:
        entry.fields = {moves.get(name, name): f for name, f in entry.fields.items()}
        entry.exclude = sorted({moves.get(name, name) for name in entry.exclude})
        entry.key = [moves.get(name, name) for name in entry.key]
        if entry.author:
            entry.author = moves.get(entry.author, entry.author)
    return dict(sorted(moves.items())), retyped, dropped


def end(config: Config, *, source: str | None = None, dry_run: bool = False, by: str | None = None,
        max_wait: float | None = None) -> Result:
    """End the upgrade: whole triggers again, renamed columns keep their numbers, and each row
    changed during the upgrade is logged whole (see the module docstring). Run again, it finishes
    an end that stopped, rewrites a registry file it could not write, and logs whole the rows a
    connection still changed through the keys-only trigger after a finished end."""
    out = Result({"sources": [], "dry_run": dry_run})
    p = config.prefix
    wait = baseline_mod.MAX_WAIT if max_wait is None else max_wait

    def one(spec: SourceSpec) -> None:
        registry = Registry.load(spec.registry)
        data: dict = {"source": spec.name, "tables": []}
        todo: list[tuple[TableEntry, object, Upgrade, int, dict]] = []
        plan: list[Statement] = []
        events: list[tuple[int, int]] = []          # ids reserved for the UPGRADE END events
        with open_source(config, spec) as db:
            require_current(db, p)
            names = dict(db.query(f"SELECT NUM_TABLE, TRIM(TRAILING FROM TABLE_NAME) FROM {p}LOG_TABLES"))
            # Done upgrades come back only when a connection changed their table through the
            # keys-only trigger after them (step 4 of the module docstring).
            ups = [u for u in upgrades(db, p).values()
                   if u.pending or keys_only_since(db, p, u.number, u.from_id)]
            changed: list[TableEntry] = []
            for u in ups:
                name = names.get(u.number, f"#{u.number}")
                # After the whole trigger was made (an end run before), the database's dictionary is
                # the truth: it was written in that transaction, the registry file only after it.
                entry = (entry_from_dictionary(db, p, name) if not u.open else
                         registry.tables.get(name) or entry_from_dictionary(db, p, name))
                item = {"table": name, "renamed": {}, "renamed_retyped": [], "added": [], "dropped": [],
                        "retyped": [], "changes": 0, "rows": 0}
                data["tables"].append(item)
                gone = entry is None or not table_exists(db, name)
                if gone or not entry.enabled:
                    # Dropped during the upgrade (or disabled): nothing to make again, no row to log.
                    if entry is not None and gone and entry.enabled:
                        entry.enabled = False
                        changed.append(entry)
                        plan += [Statement(f"UPDATE {p}LOG_TABLES SET ENABLED = 0 WHERE NUM_TABLE = ?", (u.number,)),
                                 Statement(f"DELETE FROM {p}LOG_PARTS WHERE NUM_TABLE = ?", (u.number,))]
                    plan.append(Statement(f"DELETE FROM {p}LOG_UPGRADE WHERE NUM_TABLE = ?", (u.number,)))
                    item["table_gone"] = gone
                    continue
                info = read_table(db, name)
                item["ended_before"] = not u.open
                if u.open:
                    renamed, renamed_retyped, dropped = follow_renames(
                        entry, u.columns, _column_ids(db, name), {c.name: c.type for c in info.columns})
                    d = reconcile(entry, info, first_free=dictionary_max(db, p, entry.number) + 1)
                    item.update(renamed=renamed, renamed_retyped=renamed_retyped, added=d.added,
                                dropped=dropped + d.dropped, retyped=d.retyped)
                    plan += plan_trigger(entry, info, p, db.major) + plan_dictionary(entry, p, column_kinds(info))
                    plan.append(Statement(f"UPDATE {p}LOG_UPGRADE SET ENDED_AT = LOCALTIMESTAMP WHERE NUM_TABLE = ?",
                                          (u.number,)))
                    # Its id now, before the ids of the rows logged whole are reserved: it comes first.
                    event_id = None if dry_run else reserve_ids(db, p, 1)[0]
                    plan.append(control_event(p, "UPGRADE END", "TABLE", name, _end_text(name, item),
                                              packet_id=event_id))
                    if event_id is not None:
                        events.append((event_id, event_id))
                        plan.append(Statement(claim_ids_sql(p), (event_id, event_id)))
                changed.append(entry)
                item["changes"] = keys_only_since(db, p, u.number, u.from_id)
                todo.append((entry, info, u, item["changes"], item))
            db.commit()
            blocks: dict[int, tuple] = {}
            if ups and not dry_run:
                # Ids for the rows logged whole, taken before the whole trigger goes live (and for every
                # table, whatever was counted: a change still uncommitted now is not in the count): every
                # change the whole trigger captures sorts after them (the baseline's order).
                try:
                    blocks = {entry.number: baseline_mod.reserve(db, p, n) for entry, _, _, n, _ in todo}
                    apply_plan(db, plan)
                except BaseException:        # no id reserved here may wait for ever
                    for block in [*events, *blocks.values()]:
                        baseline_mod.release(lambda **kw: open_source(config, spec, **kw), p, block)
                    raise
                for entry in changed:
                    registry.put(entry)
                try:
                    registry.save()
                except OSError as exc:
                    raise FbauditError(f"{spec.name}: the audit triggers log every column again, but the registry "
                                       f"file {spec.registry} could not be written ({exc}); run `fbaudit upgrade "
                                       "end` again: it rewrites it from the database's dictionary and logs the "
                                       "rows changed during the upgrade.") from None
        out.add_plan(spec.describe(), plan)
        out.data["sources"].append(data)
        if not ups:
            out.lines.append(f"{spec.name}: no upgrade in progress; nothing to do")
            return
        for item in data["tables"]:
            out.lines.append(f"{spec.name}: {item['table']}: " + _end_text(item["table"], item, short=True)
                             + (" (dry run: nothing changed)" if dry_run else ""))
        if dry_run:
            return
        open_db = lambda **kw: open_source(config, spec, **kw)  # noqa: E731
        waiting = dict(blocks)          # blocks of the tables not reached yet (take() releases its own)
        try:
            for entry, info, u, n, item in todo:
                block, from_id, rows, seconds = waiting.pop(entry.number), u.from_id, 0, 0.0
                who: list = []
                for round_ in range(ROUNDS):
                    # The snapshot moves FROM_ID past the changes it covered: a later `upgrade end` starts there.
                    then = [Statement(f"UPDATE {p}LOG_UPGRADE SET FROM_ID = ? WHERE NUM_TABLE = ?",
                                      (block[0] - 1, u.number))]
                    try:
                        with Progress(n) as bar:
                            taken = baseline_mod.take(open_db, spec, config, entry, info, block, expected=n, author=by,
                                                      progress=bar.advance, max_wait=wait,
                                                      touched=baseline_mod.Touched(from_id, then, COMMENT))
                        rows, seconds = rows + taken["rows"], seconds + taken["seconds"]
                        from_id = block[0] - 1
                        # A change under the keys-only trigger with an id above the block sorts after the rows
                        # just logged: those rows again, with ids reserved now. It comes from a statement that
                        # began under the keys-only trigger, or a connection still running it (Firebird 5.0,
                        # measured: docs/schema-changes.md). Wait for the transactions alive now first: one of
                        # them may hold such a change not committed yet.
                        baseline_mod.wait_for_older_writers(open_db, entry.name, wait, upgrade=True)
                    except FbauditError as exc:
                        raise FbauditError(
                            f"{spec.name}: {entry.name}: its audit trigger logs every column again, but the rows "
                            f"changed during the upgrade are NOT all logged whole yet ({rows} so far), so their "
                            f"values after it stay unknown in history. Run `fbaudit upgrade end` again to log them: "
                            f"{exc}") from None
                    with open_source(config, spec) as db:
                        n = keys_only_since(db, p, u.number, from_id)
                        if not n:
                            apply_plan(db, [Statement(f"UPDATE {p}LOG_UPGRADE SET LOGGED_AT = LOCALTIMESTAMP "
                                                      "WHERE NUM_TABLE = ?", (u.number,))])
                            break
                        if round_ == ROUNDS - 1:
                            who = db.query(f"SELECT DISTINCT TRIM(DB_USER), CLIENT_ADDRESS FROM "
                                           f"{Shipped(db, p).packets} x "
                                           "WHERE ID > ? AND NUM_TABLE = ? AND OPERATION IN (10, 11)",
                                           (from_id, u.number))
                            db.commit()
                            break
                        block = baseline_mod.reserve(db, p, n)
                    log.info("[UPGRADE] %s: %s: %d change(s) under the keys-only trigger sort after the rows logged "
                             "whole: those rows again", spec.name, entry.name, n)
                item["rows"] = rows
                changes = item["changes"]
                out.lines.append(f"{spec.name}: {entry.name}: {rows} row{'s' if rows != 1 else ''} changed during "
                                 f"the upgrade logged whole ({changes} change{'s' if changes != 1 else ''}, "
                                 f"{seconds:.1f} s)")
                if n:
                    item["still_keys_only"] = n
                    users = ", ".join(f"{user}" + (f" from {addr}" if addr else "") for user, addr in who[:5])
                    out.warnings.append(
                        f"{spec.name}: {entry.name}: after {ROUNDS} snapshots, {n} more change(s) came through the "
                        f"keys-only trigger (values not recorded), by {users}: statements that began before the "
                        "whole trigger, or connections that still run the keys-only one (Firebird 5.0 can keep a "
                        "statement it cached with the trigger it was compiled with). Reconnect those applications, "
                        "then run `fbaudit upgrade end` again; `fbaudit status` warns until then.")
        except BaseException:
            for block in waiting.values():      # no id reserved here may wait for ever
                baseline_mod.release(open_db, p, block)
            raise
        log.info("[UPGRADE] %s: upgrade ended for %s", spec.name, ", ".join(i["table"] for i in data["tables"]))
    return for_each_source(config, source, out, one, log=log, tag="UPGRADE")


def _end_text(name: str, item: dict, *, short: bool = False) -> str:
    if item.get("table_gone"):
        return "dropped during the upgrade: no longer audited"
    if item.get("ended_before"):
        return "its whole audit trigger was made by an earlier `upgrade end`; rows to log whole follow"
    bits = []
    if item["renamed"]:
        bits.append("renamed " + ", ".join(f"{a} -> {b}" for a, b in item["renamed"].items())
                    + " (same field numbers)")
    if item.get("renamed_retyped"):
        bits.append("renamed and retyped " + ", ".join(item["renamed_retyped"]) + " (new field numbers)")
    if item["added"]:
        bits.append("added " + ", ".join(item["added"]))
    if item["dropped"]:
        bits.append("dropped " + ", ".join(item["dropped"]))
    if item["retyped"]:
        bits.append("retyped " + "; ".join(item["retyped"]))
    what = "; ".join(bits) or "no column changed"
    if short:
        return f"audit trigger logs every column again; {what}"
    return f"fbaudit upgrade end: the audit trigger of {name} logs every column again; {what}"
