"""``fbaudit serve``: the admin API (JSON) and the history page.

FastAPI (with uvicorn as the server) is used rather than code of our own:
it validates parameters, publishes the OpenAPI description from the same
declarations (/openapi.json; no /docs page, which would load Swagger's
script from a public CDN into the origin that keeps the token), and is well
kept. Every answer uses the
checkpoint guide's envelope:

    {"success": true, "data": {..., "pagination": {"limit", "offset", "total"}}}
    {"success": false, "error": {"code": "...", "message": "..."}}   (4xx / 5xx)

A token is required on every /api request (``Authorization: Bearer TOKEN``
or ``X-Fbaudit-Token``), from $FBAUDIT_API_TOKEN or a protected file; only
``--no-auth`` on a loopback address runs without one. The page itself
(``/``) is static; it asks for the token in its own sign-in form and keeps
it for the tab (sessionStorage), never in the address.

Against other web pages (docs/operations.md "The admin API"): a call that
changes anything (POST) must carry a JSON body (``Content-Type:
application/json``, which no HTML form can send and no cross-site script can
send without the server's consent), with ``--no-auth`` too, and its options
travel in that body, never in the query string; a request whose ``Host`` is
not one the server answers to (DNS rebinding) is refused.
"""
from __future__ import annotations

import hmac
import re
import ipaddress
import logging
import threading
from datetime import datetime
from pathlib import Path
from typing import Literal

from fastapi import FastAPI, Query, Request
from fastapi import Path as FPath
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from firebird.driver import Isolation

from . import checkpoint as checkpoint_mod
from . import history as history_mod
from . import undo as undo_mod
from . import versions as versions_mod
from .config import Config
from .db import open_database
from .errors import CheckpointError, CheckpointNotFound, ConfigError, FbauditError, NotFound, RevertConflict
from .sources import is_connection_error

log = logging.getLogger("fbaudit.serve")

PAGE = Path(__file__).with_name("page.html")
MAX_LIMIT = history_mod.MAX_LIMIT


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str):
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


def _local(t: datetime | None) -> datetime | None:
    """A time from a query or body as the log's time stamps are: local, without an offset (a time given
    with one, 2026-12-07T10:00+05:00, is converted; it was dropped before: found by the review)."""
    return t.astimezone().replace(tzinfo=None) if t is not None and t.tzinfo is not None else t


_DB_PATH = re.compile(r"(on database [^ ]+) \([^)]*\)")


def _fail(status: int, code: str, message: str, **extra) -> JSONResponse:
    return JSONResponse({"success": False, "error": {"code": code, "message": message, **extra}},
                        status_code=status)


def _ok(data: dict, *, limit: int | None = None, offset: int | None = None, total: int | None = None,
        total_exact: bool | None = None) -> dict:
    if limit is not None:
        data["pagination"] = {"limit": limit, "offset": offset, "total": total}
        if total_exact is not None:     # False: there are more than `total` (counted up to a cap)
            data["pagination"]["total_exact"] = total_exact
    return {"success": True, "data": data}


def _status_of(exc: FbauditError) -> tuple[int, str]:
    """An fbaudit error as an HTTP status and a code."""
    if isinstance(exc, RevertConflict):
        return 409, "conflict"
    if isinstance(exc, NotFound):
        return 404, "not_found"
    if isinstance(exc, ConfigError):
        return 400, "bad_request"       # an unknown source name
    if is_connection_error(exc):
        return 503, "database_unavailable"
    return 400, "bad_request"


def load_token(token_file: str | None, env: dict[str, str]) -> str | None:
    """The API token: the file's first line (owner-only file), else $FBAUDIT_API_TOKEN."""
    if token_file:
        p = Path(token_file)
        try:
            import stat
            import sys
            if sys.platform != "win32" and p.stat().st_mode & (stat.S_IRWXG | stat.S_IRWXO):
                raise ConfigError(f"token file {p} is readable by other users; run: chmod 600 {p}")
            text = p.read_text(encoding="utf-8").strip()
        except FileNotFoundError:
            raise ConfigError(f"token file {p} not found") from None
        if not text:
            raise ConfigError(f"token file {p} is empty")
        return text.splitlines()[0].strip()
    return env.get("FBAUDIT_API_TOKEN") or None


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class RevertBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    to_version: int = Field(ge=1, le=2_000_000_000, description="the version to go back to (1 = oldest)")
    by: str | None = Field(default=None, max_length=255, description="author recorded for the revert")
    comment: str | None = Field(default=None, max_length=255, description="comment recorded with it")
    source: str | None = Field(default=None, max_length=255,
                               description="the source database (needed when several are configured)")


class UndoBody(BaseModel):
    """POST .../revert: run the revert a preview showed (its ``plan_id``)."""

    model_config = ConfigDict(extra="forbid")

    plan_id: str = Field(min_length=1, max_length=64, description="the plan_id of the preview (GET): when the "
                                                                  "changes to revert are no longer those, 409")
    by: str | None = Field(default=None, max_length=255, description="author recorded for the revert")
    comment: str | None = Field(default=None, max_length=255, description="comment recorded with it")
    skip_conflicts: bool = Field(default=False, description="revert the others, leave conflicting records out")


class SelectionBody(UndoBody):
    """POST /api/revert: an author's changes in a time range."""

    author: str = Field(min_length=1, max_length=255)
    since: datetime
    until: datetime
    table: str | None = Field(default=None, max_length=255)
    source: str | None = Field(default=None, max_length=255)


class RestoreBody(BaseModel):
    """POST /api/checkpoints/{id}/restore: the guide's ``create_auto_backup`` and the CLI's options."""

    model_config = ConfigDict(extra="forbid")      # a misspelt option is an error, not silently the default

    create_auto_backup: bool = Field(default=True, description="write auto_backup_before_restore_<ID> first "
                                                               "(fbaudit checkpoint restore --no-auto-backup: false)")
    audit: Literal["rows", "event"] = Field(default="rows", description="audited tables: a packet per restored "
                                                                        "row, or one restore event per table")
    source: str | None = Field(default=None, max_length=255,
                               description="the source database (needed when several are configured)")


LOOPBACK_NAMES = ("127.0.0.1", "localhost", "::1")
EXPORT_STALL = 60.0      # seconds an export waits for a client that stopped reading, then ends


def _host_of(header: str) -> str:
    """The host name of a Host header ("[::1]:8765" -> "::1", "erp.example:80" -> "erp.example")."""
    h = header.strip().lower()
    if h.startswith("["):
        return h[1:h.find("]")] if "]" in h else h
    return h.rsplit(":", 1)[0] if h.count(":") == 1 else h


def create_app(config: Config, *, token: str | None, hosts: tuple[str, ...] = LOOPBACK_NAMES) -> FastAPI:
    """The application: JSON endpoints under /api, the page at /.

    ``hosts``: the names a request's Host header may carry (the bound address and the names the admin
    gave); any other is refused, so a page on another site that rebinds its name to this address
    cannot read the API.

    Each worker thread keeps one read-only connection to the log database
    (attaching costs more than a page of history); every request is one
    snapshot on it. A connection that failed is dropped and made again.
    """
    local = threading.local()

    def reading(fn):
        db = getattr(local, "db", None)
        if db is None:
            db = local.db = open_database(config.log, client_library=config.client_library,
                                          isolation=Isolation.SNAPSHOT, read_only=True)
        try:
            return fn(db)
        except Exception as exc:
            if not isinstance(exc, FbauditError) or is_connection_error(exc):   # a fresh connection next time
                local.db = None
                try:
                    db.close()
                except Exception:
                    pass
            raise
    app = FastAPI(title="fbaudit admin API", version="1", docs_url=None, redoc_url=None,
                  description="Record versions, changes and reverts from the fbaudit log database. "
                              "Every /api call needs the token: `Authorization: Bearer TOKEN`. A call that "
                              "changes anything (POST) takes its options as a JSON body.")
    allowed = {h.lower() for h in hosts}

    @app.middleware("http")
    async def require_token(request: Request, call_next):
        if _host_of(request.headers.get("host", "")) not in allowed:
            return _fail(400, "bad_host", "this server does not answer to that host name (Host header); start it "
                                          "with --allow-host NAME to add one")
        if request.method not in ("GET", "HEAD", "OPTIONS") and request.url.path.startswith("/api/"):
            kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
            if kind != "application/json":
                return _fail(415, "unsupported_media_type", "a call that changes something takes a JSON body: "
                                                            "Content-Type: application/json")
            if request.url.query:
                return _fail(400, "bad_request", "a call that changes something takes its options in the JSON "
                                                 "body, not in the query string")
        if token is not None and request.url.path.startswith("/api/"):
            given = request.headers.get("x-fbaudit-token") or ""
            auth = request.headers.get("authorization") or ""
            if auth.lower().startswith("bearer "):
                given = auth[7:].strip()
            if not given:
                return _fail(401, "unauthorized", "a token is required: Authorization: Bearer TOKEN")
            if not hmac.compare_digest(given.encode("latin-1", "replace"), token.encode("ascii")):
                return _fail(401, "unauthorized", "the token is wrong")
        return await call_next(request)

    @app.exception_handler(RequestValidationError)
    async def bad_parameters(_request: Request, exc: RequestValidationError):
        parts = []
        for e in exc.errors():
            where = ".".join(str(x) for x in e.get("loc", ()) if x not in ("query", "path", "body"))
            parts.append(f"{where}: {e.get('msg')}" if where else str(e.get("msg")))
        return _fail(400, "bad_request", "; ".join(parts) or "bad parameters")

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_request: Request, exc: StarletteHTTPException):
        return _fail(exc.status_code, "not_found" if exc.status_code == 404 else "error", str(exc.detail))

    @app.exception_handler(FbauditError)
    async def fbaudit_error(_request: Request, exc: FbauditError):
        status, code = _status_of(exc)
        extra = {"conflicts": exc.conflicts} if getattr(exc, "conflicts", None) else {}
        return _fail(status, code, _DB_PATH.sub(r"\1", str(exc)), **extra)   # no file path to the client

    @app.exception_handler(Exception)
    async def unexpected(_request: Request, exc: Exception):
        log.exception("[SERVE] unexpected error")       # the details (paths, SQL) go to the server's log only
        return _fail(500, "internal_error", "unexpected error; the server's log has the details")

    limit_q = Query(20, ge=1, le=MAX_LIMIT, description=f"items per page, 1 to {MAX_LIMIT}")
    offset_q = Query(0, ge=0, le=2_000_000_000, description="items to skip")

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    def page() -> HTMLResponse:
        return HTMLResponse(PAGE.read_text(encoding="utf-8"))

    @app.get("/api/sources", summary="The configured sources")
    def sources() -> dict:
        return _ok({"sources": [{"name": s.name} for s in config.sources]})

    @app.get("/api/versions", summary="Versions (packets) of any record, newest first, filtered")
    def list_versions(source: str | None = None, table: str | None = None, key: str | None = None,
                      author: str | None = None, since: datetime | None = None, until: datetime | None = None,
                      field: str | None = Query(None, max_length=63, description="with value: changes of this field"),
                      value: str | None = Query(None, max_length=32_000,
                                                description="with field: the value it was set to (or from: side)"),
                      side: Literal["new", "old", "either"] = Query("new", description="which value to match"),
                      prefix: bool = Query(False, description="values that start with `value`"),
                      limit: int = limit_q, offset: int = offset_q) -> dict:
        since, until = _local(since), _local(until)
        res = reading(lambda db: history_mod.search(config, source=source, table=table, key=key, author=author,
                                                    since=since, until=until, field=field, value=value, side=side,
                                                    prefix=prefix, limit=limit, offset=offset, db=db))
        return _ok({"source": res["source"], "items": res["items"]}, limit=limit, offset=offset, total=res["total"],
                   total_exact=res["total_exact"])

    @app.get("/api/schema-log", summary="DDL statements of a source, newest first (docs/schema-changes.md)")
    def schema_log(source: str | None = None, object: str | None = None, since: datetime | None = None,
                   until: datetime | None = None, limit: int = limit_q, offset: int = offset_q) -> dict:
        since, until = _local(since), _local(until)
        res = reading(lambda db: history_mod.schema_events(config, source=source, object_name=object, since=since,
                                                   until=until, limit=limit, offset=offset, db=db))
        return _ok({"source": res["source"], "events": res["events"]}, limit=limit, offset=offset,
                   total=res["total"], total_exact=res["total_exact"])

    @app.get("/api/transactions", summary="Source transactions with row changes, newest first, filtered")
    def list_transactions(source: str | None = None, table: str | None = None, author: str | None = None,
                          since: datetime | None = None, until: datetime | None = None, limit: int = limit_q,
                          offset: int = offset_q) -> dict:
        since, until = _local(since), _local(until)
        res = reading(lambda db: history_mod.transactions(config, source=source, table=table, author=author,
                                                          since=since, until=until, limit=limit, offset=offset,
                                                          db=db))
        return _ok({"source": res["source"], "transactions": res["transactions"]}, limit=limit, offset=offset,
                   total=res["total"], total_exact=res["total_exact"])

    @app.get("/api/transactions/{source}/{transaction_id}",
             summary="Every change of one source transaction, across tables, in order")
    def one_transaction(source: str, transaction_id: int = FPath(ge=0, le=2**63 - 1),
                        limit: int = Query(200, ge=1, le=1000),
                        offset: int = offset_q) -> dict:
        res = reading(lambda db: history_mod.transaction(config, transaction_id, source=source, limit=limit,
                                                         offset=offset, db=db))
        total = res.pop("total")
        for k in ("limit", "offset"):
            res.pop(k)
        return _ok(res, limit=limit, offset=offset, total=total)

    @app.get("/api/records/{table}/{key:path}/versions", summary="One record's versions, with their changes")
    def record_versions(table: str, key: str, source: str | None = None, limit: int = limit_q,
                        offset: int = offset_q, order: str = Query("desc", pattern="^(asc|desc)$")) -> dict:
        h = reading(lambda db: history_mod.history(config, table, key, source=source, limit=limit, offset=offset,
                                                   newest_first=order == "desc", db=db))
        if not h["total"]:
            raise NotFound(f"{h['table']} {key}: no versions in the log database")
        return _ok({"source": h["source"], "table": h["table"], "key": h["key"], "items": h["versions"],
                    "schema_events": h["schema_events"]}, limit=limit, offset=offset, total=h["total"])

    @app.get("/api/records/{table}/{key:path}/versions/{version}",
             summary="One version: its changes (old | new) and the whole record after it")
    def record_version(table: str, key: str, version: int = FPath(ge=1, le=2_000_000_000),
                       source: str | None = None) -> dict:
        d = reading(lambda db: versions_mod.version_detail(config, table, key, version, source=source, db=db))
        return _ok({k: d[k] for k in ("source", "table", "key", "total", "first_version", "newest", "version",
                                      "state")})

    @app.get("/api/records/{table}/{key:path}/as-of",
             summary="The whole record as it was at a time (the state after its newest version made by then)")
    def record_as_of(table: str, key: str, at: datetime, source: str | None = None) -> dict:
        at = _local(at)
        return _ok(reading(lambda db: versions_mod.record_as_of(config, table, key, at, source=source, db=db)))

    @app.get("/api/tables/{table}/as-of", summary="A whole table as it was at a time, rebuilt from the log (streamed)",
             response_class=StreamingResponse)
    def table_as_of(table: str, at: datetime, format: Literal["csv", "json"] = "csv",
                    source: str | None = None) -> StreamingResponse:
        # fbaudit.history.export_as_of pushes rows; a worker thread runs it into a short queue that the
        # response pulls from, so memory stays flat. A client that stops reading makes the worker's put
        # time out, which ends the export and closes its connection.
        import queue
        at = _local(at)
        rows: queue.Queue = queue.Queue(maxsize=256)
        done = object()

        def work() -> None:
            try:
                text = history_mod.ExportFormat(format, lambda t: rows.put(t, timeout=EXPORT_STALL))
                history_mod.export_as_of(config, table, at, text.row, source=source, header=text.header)
                text.end()
                rows.put(done, timeout=EXPORT_STALL)
            except queue.Full:
                log.warning("[SERVE] export of %s stopped: the client stopped reading", table)
            except BaseException as exc:       # handed to the response: an error before the first row is a 4xx
                try:
                    rows.put(exc, timeout=EXPORT_STALL)
                except queue.Full:
                    pass
        threading.Thread(target=work, name="fbaudit-export", daemon=True).start()
        first = rows.get()
        if isinstance(first, BaseException):
            raise first

        def stream():
            item = first
            while item is not done:
                if isinstance(item, BaseException):       # after the first row: the status is sent already,
                    log.error("[SERVE] export of %s failed midway: %s", table, item)
                    raise item                            # so the connection is cut: never a short file that looks whole
                yield item
                item = rows.get()
        name = "".join(c if c.isascii() and (c.isalnum() or c in "_-") else "_" for c in table) or "table"
        return StreamingResponse(stream(), media_type="text/csv; charset=utf-8" if format == "csv" else
                                 "application/json", headers={"Content-Disposition":
                                                              f'attachment; filename="{name}-as-of.{format}"'})

    @app.post("/api/records/{table}/{key:path}/revert", summary="Put the record back to a version (one transaction)")
    def revert(table: str, key: str, body: RevertBody) -> dict:
        res = versions_mod.revert(config, table, key, to_version=body.to_version, by=body.by,
                                  comment=body.comment, source=body.source)
        return _ok(res)

    # ------------------------------------------------------------ undo many records (docs/versions.md)
    # A preview (GET: the plan, conflicts, nothing locked or written) and a confirm (POST with the
    # preview's plan_id: the revert runs only if its plan is still that one). fbaudit.undo does both.
    actions_q = Query(200, ge=0, le=10_000, description="actions listed (the counts are always complete)")

    def previewed(res: dict, actions: int) -> dict:
        res.pop("script", None)
        res["actions_total"] = len(res["actions"])
        res["actions"] = res["actions"][:actions]
        return _ok(res)

    @app.get("/api/transactions/{source}/{transaction_id}/revert",
             summary="Preview the revert of a transaction: what would change, and the conflicts")
    def preview_transaction(source: str, transaction_id: int = FPath(ge=0, le=2**63 - 1),
                            skip_conflicts: bool = False, actions: int = actions_q) -> dict:
        return previewed(undo_mod.revert_selection(config, source=source, transaction_id=transaction_id,
                                                   skip_conflicts=skip_conflicts, preview=True), actions)

    @app.post("/api/transactions/{source}/{transaction_id}/revert",
              summary="Revert a transaction as its preview showed (one transaction)")
    def revert_transaction(body: UndoBody, source: str, transaction_id: int = FPath(ge=0, le=2**63 - 1)) -> dict:
        return previewed(undo_mod.revert_selection(config, source=source, transaction_id=transaction_id, by=body.by,
                                                   comment=body.comment, skip_conflicts=body.skip_conflicts,
                                                   expect=body.plan_id), 10_000)

    @app.get("/api/revert", summary="Preview the revert of an author's changes in a time range")
    def preview_selection(author: str, since: datetime, until: datetime, table: str | None = None,
                          source: str | None = None, skip_conflicts: bool = False, actions: int = actions_q) -> dict:
        return previewed(undo_mod.revert_selection(config, source=source, author=author, since=_local(since),
                                                   until=_local(until), table=table, skip_conflicts=skip_conflicts,
                                                   preview=True), actions)

    @app.post("/api/revert", summary="Revert an author's changes in a time range as the preview showed")
    def revert_selection(body: SelectionBody) -> dict:
        return previewed(undo_mod.revert_selection(config, source=body.source, author=body.author,
                                                   since=_local(body.since), until=_local(body.until),
                                                   table=body.table, by=body.by,
                                                   comment=body.comment, skip_conflicts=body.skip_conflicts,
                                                   expect=body.plan_id), 10_000)

    # ------------------------------------------------------------ checkpoints (docs/checkpoints.md)
    # The CLI's `fbaudit checkpoint list|show|restore`, through fbaudit.checkpoint's own functions.
    # Unknown id: 404; a file or database that refuses the checkpoint (damaged, schema changed, tables
    # held by a writer, a failure rolled back): 409. The endpoints are plain functions, so FastAPI runs
    # each in its thread pool: a restore in progress does not hold up the other requests.
    @app.exception_handler(CheckpointError)
    async def checkpoint_error(_request: Request, exc: CheckpointError):
        if isinstance(exc, CheckpointNotFound):
            return _fail(404, "not_found", str(exc))
        return _fail(409, "conflict", str(exc))

    @app.get("/api/checkpoints", summary="The checkpoints in the checkpoint folder, newest first")
    def checkpoints(source: str | None = Query(None, description="only those taken from this source"),
                    limit: int = limit_q, offset: int = offset_q,
                    order: str = Query("desc", pattern="^(asc|desc)$")) -> dict:
        if source is not None:
            config.source(source)                      # an unknown name: 400
        items = checkpoint_mod.list_checkpoints(config)      # oldest first, like the CLI
        if source is not None:
            items = [it for it in items if it.get("source") == source]
        if order == "desc":
            items.reverse()
        return _ok({"directory": str(config.checkpoint_dir), "checkpoints": items[offset:offset + limit]},
                   limit=limit, offset=offset, total=len(items))

    @app.get("/api/checkpoints/{checkpoint_id}", summary="One checkpoint, its file verified (checksum, structure)")
    def checkpoint_show(checkpoint_id: str) -> dict:
        return _ok(checkpoint_mod.show(config, checkpoint_id))

    @app.post("/api/checkpoints/{checkpoint_id}/restore",
              summary="Overwrite the checkpoint's tables with its rows and sequences, in one transaction")
    def checkpoint_restore(checkpoint_id: str, body: RestoreBody):
        given = body.model_dump(exclude_unset=True)
        refused = None
        auto_backup = given.get("create_auto_backup", True)
        log.info(checkpoint_mod.SEPARATOR)
        log.info("[API] Received checkpoint restore request: %s",
                 checkpoint_id if checkpoint_id.isprintable() else repr(checkpoint_id))
        log.info("[API] Request parameters: %s", given)         # the JSON body; the token is in a header
        log.info("[API] Auto-backup enabled: %s", auto_backup)
        try:
            specs = config.source(given.get("source"))
        except ConfigError as exc:                       # an unknown source name: 400
            refused = str(exc)
            specs = []
        if not refused and len(specs) > 1:
            refused = f"several sources are configured: name one with source ({', '.join(s.name for s in specs)})"
        if refused:
            log.warning("[API] Restore request refused: %s", refused)
            return _fail(400, "bad_request", refused)
        log.info("[API] Starting restore operation...")     # restore() opens with the separator line
        try:
            res = checkpoint_mod.restore(config, checkpoint_id, source=specs[0].name, auto_backup=auto_backup,
                                         audit=given.get("audit", "rows"))
        except BaseException as exc:
            text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            log.error("[API] Restore FAILED: %s", text)
            raise
        log.info("[API] Restore completed successfully")
        log.info("[API] Tables restored: %d", len(res["tables"]))
        log.info("[API] Total rows restored: %d", res["total_rows"])
        if res["auto_backup"]:
            log.info("[API] Auto-backup available: %s", res["auto_backup"])
        return _ok(res)

    return app


def check_token(token: str) -> str:
    """Tokens travel in an HTTP header: printable ASCII, long enough not to be guessed."""
    if not token.isascii() or not token.isprintable() or " " in token:
        raise ConfigError("the API token must be printable ASCII without spaces (e.g. `openssl rand -hex 16`)")
    if len(token) < 8:
        raise ConfigError("the API token is too short: use 8 characters or more (e.g. `openssl rand -hex 16`)")
    return token


def served_hosts(host: str, extra: tuple[str, ...] = ()) -> tuple[str, ...]:
    """The Host names the server answers to: the bound address (on a loopback address its loopback names,
    on every address 0.0.0.0 / :: this machine's names) and the names the admin gave."""
    import socket
    names = [host]
    if is_loopback(host):
        names += list(LOOPBACK_NAMES)
    elif host in ("0.0.0.0", "::", ""):
        names += [socket.gethostname(), socket.getfqdn(), *LOOPBACK_NAMES]
    return tuple(dict.fromkeys(n.lower() for n in [*names, *extra] if n))


def serve(config: Config, *, host: str, port: int, token: str | None, no_auth: bool,
          allow_hosts: tuple[str, ...] = ()) -> None:
    """Run the server (blocks)."""
    import uvicorn
    if token is not None:
        check_token(token)
    if token is None and not no_auth:
        raise FbauditError("fbaudit serve needs a token: set FBAUDIT_API_TOKEN or give --token-file FILE "
                           "(--no-auth is allowed on a loopback address only)")
    if no_auth and not is_loopback(host):
        raise FbauditError(f"--no-auth is allowed on a loopback address only (127.0.0.1, ::1, localhost), "
                           f"not {host}")
    hosts = served_hosts(host, allow_hosts)
    app = create_app(config, token=None if no_auth else token, hosts=hosts)
    log.warning("[SERVE] fbaudit admin API on http://%s:%d/ (OpenAPI: /openapi.json)%s; answers to the host "
                "names %s", host, port, " WITHOUT a token (loopback only)" if no_auth else "", ", ".join(hosts))
    uvicorn.run(app, host=host, port=port, log_level="warning")
