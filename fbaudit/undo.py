"""Undo many changes at once: a source transaction, or an author's changes in a time range
(`fbaudit revert --transaction TX`, `fbaudit revert --author A --since T1 --until T2`, docs/versions.md).

The plan is read from the log database in one snapshot (history.selection). Per record the
selection touched, its selected versions are folded, oldest first:

- *before*: whether the record existed before its first selected change, and each field's value
  then (its old side at the first selected change of it; a delete's or a key change's old side is
  the whole row);
- *after*: whether it exists after the selection, and the values the selection left.

The compensating change follows: update back the fields the selection changed, re-insert a row it
deleted, delete a row it inserted; a key the selection changed is updated back (one UPDATE, so
rows that reference it and unique columns stay valid). A record that was changed after the
selection (a later version not selected), whose values were not recorded (a schema upgrade), or
whose row differs from what the log says the selection left, is a *conflict*: the revert refuses
with the list (exit 7, nothing changed) unless ``skip_conflicts`` leaves those records out.

Everything runs in ONE transaction on the source: each row read ``WITH LOCK`` without waiting (a
user editing one makes it a conflict, never a wait), re-inserts in foreign-key order (parents
first, checkpoint.restore_order), then updates, then deletes (children first), each table's rows
in the reverse of the order the selection made them. The author and comment go to the audit
trigger, so the revert is logged as one transaction by that author; a REVERT control event in
the same transaction names what was reverted (`fbaudit schema-log`).
"""
from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass, field
from datetime import datetime

from firebird.driver import Isolation

from .bulk import Inserter
from .catalog import read_table
from .checkpoint import foreign_keys, restore_order
from .config import Config
from .db import guard
from .errors import CheckpointError, DatabaseError, FbauditError, NotFound, RevertConflict
from .forms import decode_value, read_expr, value_kind
from .history import format_value, key_dict, selection
from .idents import quote_ident
from .logs import printable
from .objects import control_event
from .registry import Registry
from .sources import open_source
from .staging import Shipped
from .versions import GDS_LOCK_CONFLICT, GDS_REFUSED, always_identity, bind_value, param_sql

log = logging.getLogger("fbaudit.revert")

SHOWN = 20          # actions and conflicts listed in the text output (all of them in JSON)
READ_BATCH = 200    # rows of single-column keys read (and locked) in one statement


@dataclass
class Item:
    """One record the selection touched, and what putting it back takes."""

    num_table: int
    table: str
    record_key: str
    key: dict
    first_packet: int
    last_packet: int
    first_op: str
    versions: list[int] = field(default_factory=list)
    existed: bool = True             # before the selection
    exists: bool = True              # after it
    before: dict = field(default_factory=dict)
    whole_before: bool = False       # ``before`` holds the whole row (missing logged fields were NULL)
    after: dict = field(default_factory=dict)
    unknown: bool = False            # changed during a schema upgrade: values not recorded
    away: int | None = None          # packet id of its key change away (the row went on under a new key)
    action: str = "none"             # insert | update | delete | key_back | none
    target_key: dict | None = None   # key_back: the key the row has now
    fields: dict = field(default_factory=dict)   # name -> {"from": now, "to": back to}
    conflict: str | None = None
    now: dict | None = None          # the row as it is in the source (logged fields), None when missing
    target_record_key: str | None = None   # key_back: the record key the row has now


def _fold(packets: list[dict], item: Item) -> None:
    first = packets[0]["operation"]
    item.existed = first not in ("insert", "key_change", "insert_unrecorded")
    exists = item.existed
    for v in packets:
        op, ch = v["operation"], v["changes"]
        item.versions.append(v["version"])
        if op.endswith("_unrecorded"):
            item.unknown = True
            exists = op != "delete_unrecorded"
        elif op in ("insert", "key_change"):
            exists = True
            item.after = {k: c["new"] for k, c in ch.items()}
            if op == "key_change" and item.existed:      # arrived on a key it had had before
                for k, c in ch.items():
                    item.before.setdefault(k, c["old"])
        elif op == "delete":
            for k, c in ch.items():
                item.before.setdefault(k, c["old"])
            item.whole_before = item.whole_before or item.existed
            exists = False
        elif op == "key_change_away":
            pair = v.get("pair") or {}
            if not pair:
                item.unknown = True          # its arriving half was pruned: the row before is not known
            for k, c in pair.items():
                item.before.setdefault(k, c["old"])
            item.whole_before = True
            item.away = v["packet_id"]
            exists = False
        elif op == "baseline":
            for k, c in ch.items():
                item.after.setdefault(k, c["new"])
        else:                                 # update, restore
            for k, c in ch.items():
                item.before.setdefault(k, c["old"])
                item.after[k] = c["new"]
            exists = True
    item.exists = exists


def _describe(sel: dict) -> str:
    """What was selected, for messages and the default comment: names and times shown with their control
    characters escaped (logs.printable), so an author name cannot start a line of the dry run's script."""
    return printable(_selection_text(sel))


def _selection_text(sel: dict) -> str:
    if sel.get("transaction_id") is not None:
        return f"transaction {sel['transaction_id']}"
    what = f"changes by {sel['author']}"
    if sel.get("table"):
        what += f" in {sel['table']}"
    if sel.get("since"):
        what += f" from {sel['since']}"
    if sel.get("until"):
        what += f" until {sel['until']}"
    return what


def _items(data: dict) -> list[Item]:
    per: dict[tuple[int, str], list[dict]] = {}
    for v in data["packets"]:
        per.setdefault((v["num_table"], v["record_key"]), []).append(v)
    items = []
    for (num, rk), packets in per.items():
        ref = data["tables"][num]
        it = Item(num, ref.name, rk, ref.key_dict(rk), packets[0]["packet_id"], packets[-1]["packet_id"],
                  packets[0]["operation"])
        _fold(packets, it)
        later = data["later"].get((num, rk))
        if it.unknown:
            it.conflict = ("changed during a schema upgrade (`fbaudit upgrade`), whose values were not recorded, "
                           "so how it was is not known")
        elif later:
            q = later[0]
            it.conflict = (f"changed after the selection: version {q['version']} ({q['operation']}) by "
                           f"{q['author'] or '?'} at {q['at']} in transaction {q['transaction_id']}"
                           + (f", and {len(later) - 1} more" if len(later) > 1 else ""))
        items.append(it)
    return items


def _key_text(key: dict) -> str:
    return ", ".join(f"{k}={v}" for k, v in key.items())


def _literal(col, value, none, key: bool = False) -> str:
    """A value as an SQL literal for the dry run's isql script (never executed by fbaudit). ``key``: a
    key part as the record key shows it (bytes as their text or x'...', history.key_dict)."""
    if value is None:
        return "NULL"
    if col.kind == "binary":
        raw = none.to_bytes(value) if key or value_kind(col.kind, col.type) == "none" else bytes.fromhex(value)
        return f"x'{raw.hex().upper()}'" if raw else "''"
    return "'" + str(value).replace("'", "''") + "'"


def revert_selection(config: Config, *, source: str | None = None, transaction_id: int | None = None,
                     author: str | None = None, since: datetime | None = None, until: datetime | None = None,
                     table: str | None = None, by: str | None = None, comment: str | None = None,
                     skip_conflicts: bool = False, dry_run: bool = False, expect: str | None = None,
                     preview: bool = False) -> dict:
    """Revert a transaction or an author's changes in [since, until) (see the module docstring).

    ``dry_run``: plan, read the rows (locked, then released), write nothing; the result carries the
    isql ``script``. ``preview``: as a dry run, but the rows are read without locks and conflicts are
    returned, not raised (the HTTP preview). ``expect``: the ``plan_id`` a preview returned; when the
    plan is no longer that one, nothing is changed.
    """
    if transaction_id is None and (author is None or since is None or until is None):
        raise FbauditError("choose what to revert: --transaction TX, or --author NAME with --since and --until")
    sel = {"transaction_id": transaction_id, "author": author, "table": table,
           "since": since.isoformat(sep=" ") if since else None, "until": until.isoformat(sep=" ") if until else None}
    data = selection(config, source=source, transaction_id=transaction_id, author=author, since=since,
                     until=until, table=table)
    sname = data["source"]
    what = _describe(sel)
    if not data["packets"]:
        raise NotFound(f"{what} of source {sname!r}: no row changes in the log database (not transferred yet, "
                       "pruned, or none). Nothing was changed.")
    whole = sorted({data["tables"][v["num_table"]].name for v in data["packets"] if v["record_key"] is None})
    if whole:
        raise FbauditError(f"{what} holds whole-table events (a checkpoint restore logged with --audit event) of "
                           f"{', '.join(whole)}, whose rows are not in the log one by one, so it cannot be reverted "
                           "record by record; nothing was changed. Restore a checkpoint instead (docs/checkpoints.md).")
    items = _items(data)
    spec = next(s for s in config.sources if s.name == sname)
    p = config.prefix
    author_name = by or "fbaudit revert"
    note = comment or f"revert of {what} (source {sname})"
    none = data["tables"][items[0].num_table].none
    reg = Registry.load(spec.registry)
    db = open_source(config, spec, isolation=Isolation.READ_COMMITTED, lock_timeout=0)
    script: list[str] = []
    revert_tx = None
    try:
        infos = {}
        for name in dict.fromkeys(it.table for it in items):
            entry = reg.tables.get(name)
            if entry is None or not entry.enabled:
                raise FbauditError(f"{name} is not audited in source {sname} now (registry {spec.registry}), so a "
                                   f"revert would not be logged; nothing was changed. `fbaudit enable {name}` first.")
            info = read_table(db, name, commit=False)
            cols = {c.name: c for c in info.columns}
            logged = [c for c in info.columns if c.name in entry.fields and c.auditable]
            infos[name] = (entry, cols, logged)
        # Changes not shipped yet: of this selection (it is not all in the log), or of a record it touched.
        waiting = [r[:5] for r in db.query(Shipped(db, p).unshipped(
            "p.NUM_TABLE, p.RECORD_KEY, p.TRANSACTION_ID, p.AUTHOR, p.CREATED_AT", "p.NUM_TABLE <> 0"))]
        numbers = {name: infos[name][0].number for name in infos}
        only = {it.num_table for it in items} if table else None     # --table: the selection is of that table

        def selected(w) -> bool:
            if transaction_id is not None:
                return w[2] == transaction_id
            return w[3] == author and since <= w[4] < until and (only is None or w[0] in only)
        if any(selected(w) for w in waiting):
            raise RevertConflict(f"{what} has changes not yet in the log database (waiting for `fbaudit transfer`, "
                                 "or failed); nothing was reverted. Transfer first.")
        pending = {(w[0], w[1]) for w in waiting}
        for it in items:
            if it.conflict is None and (numbers[it.table], it.record_key) in pending:
                it.conflict = "a change of it is not yet in the log database (waiting for `fbaudit transfer`)"
        # Read each row as it is now (locked, no wait, unless previewing).
        lock = "" if preview else " WITH LOCK"
        cursors: dict[str, object] = {}

        fast: dict[str, Inserter] = {}

        def run(sql: str, params) -> list:
            cur = cursors.get(sql)
            if cur is None:
                cur = cursors[sql] = db.con.cursor()
            select = sql.lstrip().upper().startswith("SELECT")
            with guard(spec):
                if not select and sql.count("?") == len(params):
                    # The compensating DML through bulk.Inserter, which packs the parameters itself: the
                    # driver rebuilt them on every execute (10,000 UPDATEs: 4.5 s, the engine's share 1.4).
                    # Split at "?" only when each "?" is a parameter (no name holds one).
                    ins = fast.get(sql)
                    if ins is None:
                        ins = fast[sql] = Inserter(cur, sql.split("?"))
                    ins.run(list(params))
                    return []
                cur.execute(sql, params)
                return [[v.read() if hasattr(v, "read") else v for v in r] for r in cur.fetchall()] if select else []

        def where_of(name: str, key: dict) -> tuple[str, list]:
            cols = infos[name][1]
            where = " AND ".join(f"{quote_ident(k)} IS NULL" if v is None else f"{quote_ident(k)} = {param_sql(cols[k])}"
                                 for k, v in key.items())
            params = [none.to_bytes(v) if cols[k].kind == "binary" else bind_value(cols[k], v, none)
                      for k, v in key.items() if v is not None]
            return where, params

        def current(it: Item, key: dict) -> dict | None:
            entry, cols, logged = infos[it.table]
            where, params = where_of(it.table, key)
            select = ", ".join(read_expr(c, "T", db.major) for c in logged) or "1"
            try:
                rows = run(f"SELECT {select} FROM {quote_ident(it.table)} T WHERE {where}{lock}", params)
            except DatabaseError as exc:
                if set(exc.gds_codes) & set(GDS_LOCK_CONFLICT):
                    it.conflict = "being changed by another transaction right now"
                    return None
                raise
            if len(rows) > 1:
                it.conflict = f"{len(rows)} rows have this key (the audit key is not unique)"
                return None
            if not rows:
                return None
            return {c.name: decode_value(v, value_kind(c.kind, c.type), none) for c, v in zip(logged, rows[0])}

        # The rows of single-column keys are read (and locked) a batch at a time: one statement per
        # READ_BATCH rows, not per row (10,000 rows: the reads took 3.9 s one by one). A batch with a
        # row locked by someone else, or whose keys do not come back as the log wrote them, is read
        # row by row instead, which names the row.
        cache: dict[tuple[str, str | None], list] = {}
        by_table: dict[str, list[Item]] = {}
        for it in items:
            if it.conflict is None and len(it.key) == 1 and next(iter(it.key.values())) is not None:
                by_table.setdefault(it.table, []).append(it)
        for name, group in by_table.items():
            entry, cols, logged = infos[name]
            [kname] = group[0].key
            kcol = cols.get(kname)
            if kcol is None or kcol.kind not in ("number", "text") or kcol.charset == "NONE":
                continue
            select = ", ".join(read_expr(c, "T", db.major) for c in logged) or "1"
            for i in range(0, len(group), READ_BATCH):
                part = group[i:i + READ_BATCH]
                keys = [it.key[kname] for it in part]
                try:
                    rows = run(f"SELECT {read_expr(kcol, 'T', db.major)}, {select} FROM {quote_ident(name)} T "
                               f"WHERE {quote_ident(kname)} IN ({', '.join([param_sql(kcol)] * len(keys))}){lock}",
                               [bind_value(kcol, k, none) for k in keys])
                except DatabaseError as exc:
                    if set(exc.gds_codes) & set(GDS_LOCK_CONFLICT):
                        continue
                    raise
                got: dict = {}
                for r in rows:
                    got.setdefault(decode_value(r[0], value_kind(kcol.kind, kcol.type), none), []).append(r[1:])
                if not set(got) <= set(keys):
                    continue
                for k in keys:
                    cache[(name, k)] = got.get(k, [])

        def cached(it: Item) -> dict | None:
            rows = cache[(it.table, next(iter(it.key.values())))]
            if len(rows) > 1:
                it.conflict = f"{len(rows)} rows have this key (the audit key is not unique)"
                return None
            if not rows:
                return None
            logged = infos[it.table][2]
            return {c.name: decode_value(v.read() if hasattr(v, "read") else v, value_kind(c.kind, c.type), none)
                    for c, v in zip(logged, rows[0])}

        for it in items:
            if it.conflict is not None:
                continue
            hit = len(it.key) == 1 and (it.table, next(iter(it.key.values()))) in cache
            now = it.now = cached(it) if hit else current(it, it.key)
            if it.conflict is not None:
                continue
            logged_names = {c.name for c in infos[it.table][2]}
            if it.exists and now is None:
                it.conflict = "deleted, but the log says it exists (changed with auditing paused?)"
                continue
            if not it.exists and now is not None:
                it.conflict = "a row with this key exists, but the log says it was deleted"
                continue
            if now is not None:
                differ = [n for n, v in it.after.items() if n in now and now[n] != v]
                if differ:
                    it.conflict = f"changed outside the log ({', '.join(differ)})"
                    continue
            logged = infos[it.table][2]           # in the table's column order
            back = {c.name: it.before.get(c.name) for c in logged if it.whole_before or c.name in it.before}
            if it.existed and it.exists:
                it.fields = {n: {"from": now.get(n), "to": v} for n, v in back.items()
                             if n in logged_names and now.get(n) != v}
                it.action = "update" if it.fields else "none"
            elif it.existed:
                it.action = "insert"
                it.fields = {n: {"from": None, "to": v} for n, v in back.items() if n in logged_names}
            elif it.exists:
                it.action = "delete"
        # A key the selection changed (K0 -> K1, or on through K2 ...): the halves of each change are linked
        # (the away packet's id + 1 is the arrival's) and decided together. The row that arrived last is
        # updated back to the first key (one UPDATE: rows referencing it and unique columns stay valid), not
        # deleted and re-inserted; when any record of the chain conflicts, all of them do, so a revert that
        # leaves conflicts out never re-inserts a row that lives on under a new key, nor deletes it.
        arrivals = {(it.table, it.first_packet): it for it in items if it.first_op == "key_change"}
        for origin in items:
            if origin.away is None or origin.first_op == "key_change":
                continue
            chain, nxt = [origin], arrivals.get((origin.table, origin.away + 1))
            while nxt is not None and nxt not in chain:
                chain.append(nxt)
                nxt = arrivals.get((nxt.table, nxt.away + 1)) if nxt.away is not None and not nxt.exists else None
            final = chain[-1]
            bad = next((c for c in chain if c.conflict is not None), None)
            if bad is not None:
                for c in chain:
                    if c.conflict is None:
                        c.conflict = (f"its key was changed with {bad.table} {_key_text(bad.key)}, which cannot be "
                                      f"put back ({bad.conflict})")
                    c.action, c.fields = "none", {}
                continue
            if len(chain) > 1 and origin.action == "insert" and final.action == "delete":
                now = final.now or {}
                origin.action, origin.target_key, origin.target_record_key = "key_back", final.key, final.record_key
                origin.fields = {n: {"from": now.get(n), "to": f["to"]} for n, f in origin.fields.items()
                                 if now.get(n) != f["to"]}
                for c in chain[1:]:
                    c.action, c.fields = "none", {}
        for it in items:
            if it.action == "insert" and not it.whole_before:
                it.conflict = "the row before the selection is not known whole (its history starts later)"
        conflicts = [it for it in items if it.conflict is not None]
        todo = [it for it in items if it.conflict is None and it.action != "none"]
        plan_id = hashlib.sha256(json.dumps(
            [[it.table, it.record_key, it.action, {n: f["to"] for n, f in it.fields.items()}] for it in todo]
            + [[it.table, it.record_key, "conflict"] for it in conflicts], ensure_ascii=False,
            sort_keys=True).encode()).hexdigest()[:16]
        if conflicts and not skip_conflicts and not preview:
            raise RevertConflict(_conflict_message(what, conflicts), conflicts=[_conflict(it) for it in conflicts])
        if expect is not None and expect != plan_id:
            raise RevertConflict(f"{what}: the changes to revert are no longer those the preview showed (rows "
                                 "changed since); nothing was reverted. Preview again.")
        # Order: re-inserts parents first, updates, deletes children first; each table's rows in the
        # reverse of the order the selection made them.
        names = list(dict.fromkeys(it.table for it in todo))
        try:
            order = restore_order(names, foreign_keys(db)).order if len(names) > 1 else names
        except CheckpointError:
            order = names
        rank = {n: i for i, n in enumerate(order)}
        phases = ([it for it in sorted((i for i in todo if i.action == "insert"),
                                       key=lambda i: (rank[i.table], -i.last_packet))]
                  + sorted((i for i in todo if i.action in ("update", "key_back")), key=lambda i: -i.last_packet)
                  + sorted((i for i in todo if i.action == "delete"), key=lambda i: (-rank[i.table], -i.first_packet)))
        statements = []
        for it in phases:
            entry, cols, logged = infos[it.table]
            values = {n: f["to"] for n, f in it.fields.items()}
            if entry.author and entry.author in cols and it.action in ("update", "insert", "key_back"):
                values[entry.author] = author_name     # the trigger takes the author from this column
            t = quote_ident(it.table)
            if it.action in ("update", "key_back"):
                where, wparams = where_of(it.table, it.target_key or it.key)
                sets = ", ".join(f"{quote_ident(n)} = {_param(cols[n], v)}" for n, v in values.items())
                sql, params = (f"UPDATE {t} SET {sets} WHERE {where}",
                               [*(bind_value(cols[n], v, none) for n, v in values.items()), *wparams])
                lit = lambda: (f"UPDATE {t} SET " + ", ".join(f"{quote_ident(n)} = {_literal(cols[n], v, none)}"
                                                             for n, v in values.items())
                               + " WHERE " + _key_literal(cols, it.target_key or it.key, none) + ";")
            elif it.action == "insert":
                override = " OVERRIDING SYSTEM VALUE" if always_identity(db, it.table, values) else ""
                sql = (f"INSERT INTO {t} ({', '.join(quote_ident(n) for n in values)}){override} VALUES "
                       f"({', '.join(_param(cols[n], v) for n, v in values.items())})")
                params = [bind_value(cols[n], v, none) for n, v in values.items()]
                lit = lambda: (f"INSERT INTO {t} ({', '.join(quote_ident(n) for n in values)}){override} VALUES ("
                               + ", ".join(_literal(cols[n], v, none) for n, v in values.items()) + ");")
            else:
                where, params = where_of(it.table, it.key)
                sql = f"DELETE FROM {t} WHERE {where}"
                lit = lambda: f"DELETE FROM {t} WHERE " + _key_literal(cols, it.key, none) + ";"
            statements.append((it, sql, params, lit() if dry_run or preview else None))
        if preview:
            script = _script(sname, what, author_name, note, statements, conflicts if skip_conflicts else [])
            db.rollback()
        elif statements:
            with guard(spec):
                cur = db.con.cursor()
                cur.execute("SELECT RDB$SET_CONTEXT('USER_TRANSACTION', 'FBAUDIT_AUTHOR', ?), "
                            "RDB$SET_CONTEXT('USER_TRANSACTION', 'FBAUDIT_COMMENT', ?), CURRENT_TRANSACTION "
                            "FROM RDB$DATABASE", (author_name[:255], note[:255]))
                revert_tx = cur.fetchone()[2]
                cur.close()
            statements = _apply(statements, run)
            _only_planned(db, p, statements, numbers, data["tables"], what, reg)
            if dry_run:             # run and rolled back: the script is in an order the database accepted
                script = _script(sname, what, author_name, note, statements, conflicts if skip_conflicts else [])
                revert_tx = None
                db.rollback()
            else:
                ev = control_event(p, "REVERT", "TRANSACTION" if transaction_id is not None else "CHANGES",
                                   str(transaction_id) if transaction_id is not None else (author or "")[:255],
                                   json.dumps({"reverted": {k: v for k, v in sel.items() if v is not None},
                                               "source": sname, "by": author_name, "comment": note,
                                               "records": len(statements), "left_out": len(conflicts)},
                                              ensure_ascii=False))
                run(ev.sql, ev.params)
                db.commit()
        else:
            script = _script(sname, what, author_name, note, [], conflicts if skip_conflicts else [])
            db.rollback()
    except DatabaseError as exc:
        _rollback(db)
        if set(exc.gds_codes) & set(GDS_REFUSED + GDS_LOCK_CONFLICT):
            raise RevertConflict(f"{what}: the database refused the revert, nothing was changed: "
                                 f"{str(exc).splitlines()[0]}") from None
        raise
    except BaseException:
        _rollback(db)
        raise
    finally:
        db.close()
    counts = {a: sum(1 for it in todo if it.action == a) for a in ("insert", "update", "key_back", "delete")}
    res = {"source": sname, "selection": sel, "what": what, "records": len(items), "changes": len(data["packets"]),
           "transactions": sorted({v["transaction_id"] for v in data["packets"] if v["transaction_id"] is not None}),
           "actions": [_action(st[0]) for st in statements], "counts": counts,
           "unchanged": sum(1 for it in items if it.conflict is None and it.action == "none"),
           "conflicts": [_conflict(it) for it in conflicts], "skipped_conflicts": bool(conflicts) and skip_conflicts,
           "author": author_name, "comment": note, "dry_run": dry_run or preview, "plan_id": plan_id,
           "revert_transaction_id": revert_tx}
    if dry_run or preview:
        res["script"] = "\n".join(script) + "\n"
    res["message"] = _summary(res)
    if not (dry_run or preview):
        log.info("[REVERT] %s by %s", res["message"], author_name)
    return res


def _only_planned(db, p: str, statements: list, numbers: dict, refs: dict, what: str, reg: Registry) -> None:
    """Refuse (RevertConflict) when the statements changed audited rows they were not planned to: an ON
    DELETE CASCADE or SET NULL reaching rows inserted later, or the application's triggers. Read from
    this transaction's own packets in staging; the caller rolls everything back."""
    planned = set()
    for it, *_ in statements:
        planned.add((numbers[it.table], it.record_key))
        if it.target_record_key is not None:
            planned.add((numbers[it.table], it.target_record_key))
    extra = [(num, rk) for num, rk in db.query(
        "SELECT NUM_TABLE, RECORD_KEY FROM (" + Shipped(db, p).unshipped(
            "p.NUM_TABLE, p.RECORD_KEY", "p.TRANSACTION_ID = CURRENT_TRANSACTION AND p.NUM_TABLE <> 0") + ")")
        if (num, rk) not in planned]
    if extra:
        entries = {e.number: e for e in reg.tables.values()}
        rows = []
        for num, rk in dict.fromkeys(extra):
            ref, entry = refs.get(num), entries.get(num)
            if ref is not None:
                rows.append((ref.name, ref.key_dict(rk)))
            elif entry is not None:               # a table the selection did not touch: keys as text
                rows.append((entry.name, key_dict(rk, entry.key)))
            else:
                rows.append((f"#{num}", {"key": rk}))
        shown = "; ".join(f"{t} {_key_text(k)}" for t, k in rows[:SHOWN])
        more = f" and {len(rows) - SHOWN} more" if len(rows) > SHOWN else ""
        raise RevertConflict(f"{what}: the revert would also change {len(rows)} row(s) it did not plan (a cascading "
                             f"foreign key, or a trigger of the application): {shown}{more}; nothing was reverted. "
                             "Revert those records' changes too, or revert the records one by one.",
                             conflicts=[{"table": t, "key": k, "reason": "the revert would change it too (not planned)"}
                                        for t, k in rows])


def _apply(statements: list, run) -> list:
    """Run the statements in their planned order. One the database refuses for a constraint (a unique
    value another row of the selection frees later, a parent it puts back later) is retried after the
    others, pass after pass, while passes make progress; Firebird undoes a failed statement alone (its
    savepoint, audit trigger included). Returns them in the order they ran."""
    done, pending = [], statements
    while pending:
        refused = []
        for st in pending:
            try:
                run(st[1], st[2])
                done.append(st)
            except DatabaseError as exc:
                if not set(exc.gds_codes) & set(GDS_REFUSED):
                    raise
                refused.append((st, exc))
        if len(refused) == len(pending):
            raise refused[0][1]
        pending = [st for st, _ in refused]
    return done


def _param(col, value) -> str:
    """versions.param_sql, but text longer than its VARCHAR(8191) goes as a text BLOB (a VARCHAR(30000) of
    a single-byte character set holds more than 8191 UTF-8 characters: found by the review)."""
    if col.kind == "text" and not col.is_blob and isinstance(value, str) and len(value) > 8000:
        return "CAST(? AS BLOB SUB_TYPE TEXT CHARACTER SET UTF8)"
    return param_sql(col)


def _rollback(db) -> None:
    try:
        db.rollback()
    except FbauditError:
        pass


def _action(it: Item) -> dict:
    out = {"table": it.table, "key": it.key, "action": it.action, "versions": [it.versions[0], it.versions[-1]],
           "fields": it.fields}
    if it.target_key is not None:
        out["key_now"] = it.target_key
    return out


def _conflict(it: Item) -> dict:
    return {"table": it.table, "key": it.key, "reason": it.conflict}


def _conflict_message(what: str, conflicts: list[Item]) -> str:
    lines = [f"{what}: {len(conflicts)} record(s) cannot be put back safely; nothing was reverted "
             "(--skip-conflicts reverts the others and leaves these out):"]
    lines += [f"  {it.table} {_key_text(it.key)}: {it.conflict}" for it in conflicts[:SHOWN]]
    if len(conflicts) > SHOWN:
        lines.append(f"  ... and {len(conflicts) - SHOWN} more (--json lists them all)")
    return "\n".join(lines)


def _summary(res: dict) -> str:
    c = res["counts"]
    parts = [f"{n} {label}" for n, label in ((c["insert"], "re-inserted"), (c["update"], "updated back"),
                                              (c["key_back"], "key changed back"), (c["delete"], "deleted"))
             if n]
    done = ", ".join(parts) or "nothing to change"
    text = f"{res['what']} of source {res['source']}: {res['records']} record(s): {done}"
    if res["unchanged"]:
        text += f"; {res['unchanged']} already as before"
    if res["conflicts"]:
        text += f"; {len(res['conflicts'])} conflicting record(s) left out"
    if res["dry_run"]:
        text += " (dry run: nothing changed)"
    elif res["revert_transaction_id"] is not None:
        text += f"; in transaction {res['revert_transaction_id']}"
    return text


def _script(source: str, what: str, author: str, note: str, statements: list, skipped: list[Item]) -> list[str]:
    """The compensating changes as an isql script: what fbaudit would run, for an admin to review."""
    lines = [printable(f"-- fbaudit revert: {what} of source {source}"),
             f"-- {len(statements)} statement(s), in the order fbaudit runs them. fbaudit itself also locks each",
             "-- row without waiting and checks it against the log first; this script does not.",
             "-- Run it with: isql -ch UTF8 -user ... -i THIS_FILE DATABASE",
             "SET NAMES UTF8;",
             "COMMIT; -- ends isql's own transaction; the revert runs in the next one, never waiting for a lock",
             "SET TRANSACTION READ COMMITTED NO WAIT;",
             "SELECT RDB$SET_CONTEXT('USER_TRANSACTION', 'FBAUDIT_AUTHOR', " + _quote(printable(author[:255])) + "), "
             "RDB$SET_CONTEXT('USER_TRANSACTION', 'FBAUDIT_COMMENT', " + _quote(printable(note[:255])) + ") "
             "FROM RDB$DATABASE;"]
    for it in skipped:
        lines.append(printable(f"-- left out: {it.table} {_key_text(it.key)}: {it.conflict}"))
    for it, _, _, lit in statements:
        lines.append(printable(f"-- {it.table} {_key_text(it.key)}: {it.action} (versions {it.versions[0]}-"
                               f"{it.versions[-1]})"))
        lines.append(lit)
    lines.append("COMMIT;")
    return lines


def _key_literal(cols: dict, key: dict, none) -> str:
    return " AND ".join(f"{quote_ident(k)} IS NULL" if v is None else f"{quote_ident(k)} = {_literal(cols[k], v, none, key=True)}"
                        for k, v in key.items())


def _quote(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def revert_lines(res: dict) -> list[str]:
    """The text `fbaudit revert --transaction|--author` prints: the summary, then each record in the
    order the statements ran (or would run), then the records left out."""
    lines = [res["message"]]
    for a in res["actions"][:SHOWN]:
        key = _key_text(a["key_now"] if a.get("key_now") else a["key"])
        head = {"insert": "re-inserted", "update": "updated back", "key_back": "key changed back",
                "delete": "deleted"}[a["action"]]
        if a["action"] == "key_back":
            head += f" to {_key_text(a['key'])}"
        lines.append(f"  {a['table']} {key}: {head}")
        if a["action"] == "insert":
            lines.append("      " + ", ".join(f"{n}={format_value(f['to'], 24)}" for n, f in a["fields"].items()))
        else:
            lines += [f"      {n}: {format_value(f['from'])} -> {format_value(f['to'])}" for n, f in a["fields"].items()]
    if len(res["actions"]) > SHOWN:
        lines.append(f"  ... and {len(res['actions']) - SHOWN} more (--json lists them all)")
    for c in res["conflicts"][:SHOWN]:
        lines.append(f"  left out: {c['table']} {_key_text(c['key'])}: {c['reason']}")
    if len(res["conflicts"]) > SHOWN:
        lines.append(f"  ... and {len(res['conflicts']) - SHOWN} more left out (--json lists them all)")
    return lines


__all__ = ["revert_selection", "revert_lines"]
