"""The ``fbaudit`` command: thin click wrappers over the library.

Exit codes: 0 success; 1 fbaudit error; 2 bad usage (unknown option,
missing argument); 3 configuration or registry file error; 4 Firebird or
runtime error (connection, SQL, missing system library); 5 catalog error
(unknown table or column, table cannot be audited as asked); 6 checkpoint
missing, damaged or not matching the database; 7 revert refused (conflict).
"""
from __future__ import annotations

import json
import logging
import sys
from typing import Any, Callable

import click

from . import capture, logs
from . import upgrade as upgrade_mod
from .config import load_config
from .history import DEFAULT_LIMIT
from .sources import Result, shown_names
from .transfer import DEFAULT_BATCH, DEFAULT_POLL, DEFAULT_RETRIES
from .errors import FbauditError

EXIT_CODES = """\b
Exit codes:
  0  success
  1  other fbaudit error
  2  bad usage (unknown option, missing argument)
  3  configuration or registry file error (file and line are named)
  4  Firebird error: connection, SQL, missing runtime library
  5  unknown table or column, or a table that cannot be audited as asked
  6  checkpoint missing, damaged or not matching the database (nothing changed)
  7  revert refused: the record is being edited or changed since it was logged
"""


class Ctx:
    def __init__(self, config_path: str | None, as_json: bool, traceback: bool):
        self.config_path = config_path
        self.as_json = as_json
        self.traceback = traceback
        self._config = None

    @property
    def config(self):
        if self._config is None:
            self._config = load_config(self.config_path)
        return self._config


def _run(ctx: Ctx, fn: Callable[[], Any]) -> Any:
    """Run a library call; FbauditError -> message and its exit code."""
    try:
        return fn()
    except FbauditError as exc:
        if ctx.traceback:
            import traceback
            traceback.print_exc()
            sys.exit(exc.exit_code)
        if ctx.as_json:
            err = {"type": type(exc).__name__, "message": str(exc), "exit_code": exc.exit_code}
            if getattr(exc, "conflicts", None):
                err["conflicts"] = exc.conflicts          # a revert of many: every record in the way
            click.echo(json.dumps({"success": False, "error": err}, ensure_ascii=False), err=False)
        else:
            _echo_error(f"FAILED: {exc}")
        sys.exit(exc.exit_code)


def _echo(line: str, *, err: bool = False) -> None:
    """Print one human line: control characters in it (from a name or a logged value) are shown
    escaped (logs.printable), so data can neither start a line nor drive the terminal. Every human
    line goes through here; JSON and `fbaudit ddl`'s script are printed exact."""
    click.echo(logs.printable(line), err=err)


def _echo_error(text: str) -> None:
    """An error message on stderr: its own lines kept ("\\n  hint: ..."), each one escaped as by
    _echo, every line after the first indented so none can pass for a line of its own."""
    first, *rest = text.split("\n")
    _echo(first, err=True)
    for line in rest:
        _echo(line if not line or line[0] in " \t" else "  " + line, err=True)


def _report(ctx: Ctx, res: Result, *, sql: bool = False) -> None:
    """Print a Result (text or JSON); with ``sql``, also the statements as an isql script.

    Exits with the highest exit code of the per-source errors, if any.
    """
    for w in res.warnings:
        _echo(f"warning: {w}", err=True)
    if ctx.as_json:
        data = {"success": not res.errors, **res.data}
        if res.warnings:
            data["warnings"] = res.warnings
        if res.errors:
            data["errors"] = [{"source": s, "message": str(e), "exit_code": e.exit_code} for s, e in res.errors]
        click.echo(json.dumps(data, ensure_ascii=False, indent=2, default=str))
    else:
        for line in res.lines:
            _echo(line)
        if sql:
            from .templates import as_isql_script
            for database, plan in res.scripts:     # a preview: its lines kept, their control characters shown
                for line in as_isql_script(plan, header=f"--dry-run: what would run on {database}").split("\n"):
                    _echo(line)
        for source, err in res.errors:
            if ctx.traceback:
                import traceback
                traceback.print_exception(err)
            _echo_error(f"FAILED: {source}: {err}")
    if res.errors:
        sys.exit(max(e.exit_code for _, e in res.errors))


def _json_flag(ctx: click.Context, _param: click.Parameter, value: bool) -> None:
    if value:
        ctx.find_object(Ctx).as_json = True


def _json_option(f):
    """`--json` after the command too (`fbaudit status --json`), same as before it."""
    return click.option("--json", "as_json", is_flag=True, expose_value=False, callback=_json_flag,
                        help="Print the result as JSON.")(f)


pass_ctx = click.make_pass_decorator(Ctx)


@click.group(epilog=EXIT_CODES, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--config", "config_path", envvar="FBAUDIT_CONFIG", metavar="FILE",
              help="Configuration file [default: config/fbaudit.yaml, or $FBAUDIT_CONFIG].")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@click.option("--traceback", is_flag=True, help="On error, show the full Python traceback.")
@click.option("-v", "--verbose", is_flag=True, help="Log each step (INFO) to stderr.")
@click.version_option(package_name="fbaudit")
@click.pass_context
def cli(click_ctx: click.Context, config_path: str | None, as_json: bool, traceback: bool, verbose: bool) -> None:
    """fbaudit: audit every INSERT/UPDATE/DELETE in a Firebird database and
    ship the log to a separate database.

    \b
    First steps:
      fbaudit demo                       # everything on embedded Firebird, no setup
      fbaudit init                       # staging objects in each source + log database
      fbaudit enable CUSTOMER            # start auditing a table
      fbaudit status                     # what is audited, what is waiting
    """
    logs.setup(logging.INFO if verbose else logging.WARNING)
    click_ctx.obj = Ctx(config_path, as_json, traceback)


def _source_option(f):
    f = click.option("--all-sources", is_flag=True, expose_value=False,
                     help="Every source (the default here; accepted as in init/enable).")(f)
    return click.option("--source", metavar="NAME", help="Only this source (default: every source in the config).")(f)


def _sources_option(f):
    """--source NAME or --all-sources, for the commands that change the databases (DDL, the logging switch)."""
    f = click.option("--all-sources", "--all", "all_sources", is_flag=True,
                     help="Every configured source (required when several are configured and --source is not given).")(f)
    return click.option("--source", metavar="NAME", help="Only this source.")(f)


def _pick_sources(ctx: Ctx, source: str | None, all_sources: bool) -> str | None:
    """With several sources a changing command names one or says --all-sources: a command meant
    for one database never runs DDL on two hundred by accident."""
    if source and all_sources:
        raise click.UsageError("give --source NAME or --all-sources, not both")
    config = _run(ctx, lambda: ctx.config)
    if source is None and not all_sources and len(config.sources) > 1:
        raise click.UsageError(f"{len(config.sources)} sources are configured ({shown_names(config.sources)}): "
                               "name one with --source NAME, or give --all-sources for every one")
    return source


def _one_source_option(f):
    return click.option("--source", metavar="NAME", help="Source database (needed when several are configured).")(f)


def _dry_run_option(f):
    return click.option("--dry-run", is_flag=True, help="Show what would be done; change nothing.")(f)


@cli.command()
@_sources_option
@_dry_run_option
@_json_option
@pass_ctx
def init(ctx: Ctx, source: str | None, all_sources: bool, dry_run: bool) -> None:
    """Create fbaudit's staging objects in each source and the log database.

    Idempotent: what exists is left alone. All DDL of one database runs in one
    transaction.

    \b
    Example:
      fbaudit init --dry-run
      fbaudit init --source erp
      fbaudit init --all                 # every source (a folder pattern: one per customer)
    """
    source = _pick_sources(ctx, source, all_sources)
    _report(ctx, _run(ctx, lambda: capture.init(ctx.config, source=source, dry_run=dry_run)), sql=dry_run)


@cli.command()
@click.argument("table")
@click.option("--key", "key", multiple=True, metavar="COL",
              help="Key column (repeat for a composite key); default: the primary key.")
@click.option("--author", metavar="COL", help="Column that names who changed the row (the article's AVTOR).")
@click.option("--exclude", multiple=True, metavar="COL", help="Column never logged (repeatable).")
@click.option("--baseline", is_flag=True,
              help="Also log the rows that exist now as their first version (in batches, no row locks).")
@click.option("--by", metavar="USER", help="Author recorded for the baseline versions (default: the database user).")
@click.option("--max-wait", type=click.FloatRange(min=0), metavar="SECONDS",
              help="With --baseline: how long to wait for transactions that started before the trigger "
                   "[default: 60].")
@click.option("--key-not-unique", is_flag=True,
              help="Audit with --key columns that no unique constraint or index backs (rows that share a "
                   "key then share one history; refused without this).")
@_sources_option
@_dry_run_option
@_json_option
@pass_ctx
def enable(ctx: Ctx, table: str, key: tuple[str, ...], author: str | None, exclude: tuple[str, ...],
           baseline: bool, by: str | None, max_wait: float | None, key_not_unique: bool, source: str | None,
           all_sources: bool, dry_run: bool) -> None:
    """Start auditing TABLE: number its columns, write the registry, install the trigger.

    TABLE is case-insensitive unless quoted ('"MixedCase"'). ARRAY and
    COMPUTED BY columns are skipped with a warning. A second enable of the
    same table changes nothing and says so. --baseline logs every existing
    row as version 1, so its history is complete from today (a revert can
    re-insert it after a delete). It first waits for transactions that
    started before the trigger to end (they may hold changes it could not
    see; --max-wait), then reads one snapshot and never locks a row. A
    --key that no unique constraint or index backs is refused unless
    --key-not-unique is given; key columns that may be NULL are warned about.

    \b
    Examples:
      fbaudit enable CUSTOMER
      fbaudit enable CUSTOMER --baseline --by "go-live 2026-12"
      fbaudit enable ORDER_LINE --key ORDER_ID --key LINE_NO --exclude NOTE
      fbaudit enable PRICE --author CHANGED_BY --dry-run
      fbaudit enable ORDERS --all-sources  # in every configured source
    """
    source = _pick_sources(ctx, source, all_sources)
    res = _run(ctx, lambda: capture.enable(ctx.config, table, source=source, key=list(key) or None,
                                           author=author, exclude=list(exclude), dry_run=dry_run,
                                           baseline=baseline, by=by, max_wait=max_wait,
                                           key_not_unique=key_not_unique))
    _report(ctx, res, sql=dry_run)


@cli.command()
@click.argument("table")
@_sources_option
@_dry_run_option
@_json_option
@pass_ctx
def disable(ctx: Ctx, table: str, source: str | None, all_sources: bool, dry_run: bool) -> None:
    """Stop auditing TABLE (drops its trigger; its numbers stay reserved).

    \b
    Example:
      fbaudit disable CUSTOMER
    """
    source = _pick_sources(ctx, source, all_sources)
    _report(ctx, _run(ctx, lambda: capture.disable(ctx.config, table, source=source, dry_run=dry_run)), sql=dry_run)


@cli.command()
@_sources_option
@_dry_run_option
@click.option("--regenerate", is_flag=True, help="Re-create every audited table's trigger even without drift.")
@_json_option
@pass_ctx
def sync(ctx: Ctx, source: str | None, all_sources: bool, dry_run: bool, regenerate: bool) -> None:
    """Find drift between the registry and the database and fix it.

    Added columns get new field numbers, dropped columns' numbers are retired,
    a retyped column retires its number and gets a new one; the affected
    triggers are regenerated. Exit code 0 whether or not there was drift.

    \b
    Example:
      fbaudit sync --dry-run
    """
    source = _pick_sources(ctx, source, all_sources)
    _report(ctx, _run(ctx, lambda: capture.sync(ctx.config, source=source, dry_run=dry_run, regenerate=regenerate)),
            sql=dry_run)


@cli.group()
def upgrade() -> None:
    """Run a schema upgrade that renames columns of audited tables, with auditing on.

    Firebird refuses to rename a column a trigger reads. Every other ALTER
    TABLE needs nothing (the audit trigger follows it in the same
    transaction); for renames, one command before the upgrade and one after.
    Between them the audit triggers log who changed which row and how, but
    not the values; `upgrade end` then logs each of those rows whole.
    docs/schema-changes.md has a whole session.

    \b
    Example:
      fbaudit upgrade begin
      isql-fb -i vendor_upgrade.sql erp.fdb
      fbaudit upgrade end
    """


@upgrade.command("begin")
@click.argument("tables", nargs=-1, metavar="[TABLE]...")
@_sources_option
@_dry_run_option
@_json_option
@pass_ctx
def upgrade_begin(ctx: Ctx, tables: tuple[str, ...], source: str | None, all_sources: bool, dry_run: bool) -> None:
    """Before the upgrade: audit triggers of TABLEs (default: all) log keys only.

    Columns of those tables other than the audit key and the author column
    may then be renamed, dropped and retyped. Changes go on being logged:
    who changed which row, when, and how (insert, update, delete), without
    the values.

    \b
    Examples:
      fbaudit upgrade begin
      fbaudit upgrade begin CUSTOMER ORDERS --dry-run
    """
    source = _pick_sources(ctx, source, all_sources)
    _report(ctx, _run(ctx, lambda: upgrade_mod.begin(ctx.config, tables=list(tables), source=source,
                                                     dry_run=dry_run)), sql=dry_run)


@upgrade.command("end")
@click.option("--by", metavar="USER", help="Author recorded for the rows logged whole (default: the database user).")
@click.option("--max-wait", type=click.FloatRange(min=0), metavar="SECONDS",
              help="How long to wait for transactions that started before the whole trigger [default: 60].")
@_sources_option
@_dry_run_option
@_json_option
@pass_ctx
def upgrade_end(ctx: Ctx, by: str | None, max_wait: float | None, source: str | None, all_sources: bool,
                dry_run: bool) -> None:
    """After the upgrade: log every column again; renamed columns keep their numbers.

    A renamed column keeps its field number (Firebird keeps the column's
    id on a rename), so its history goes on under the new name; dropped
    columns' numbers are retired, added and retyped columns get new ones.
    Then each row changed during the upgrade is logged whole. If that step
    stops, run the command again.

    \b
    Example:
      fbaudit upgrade end --by "vendor upgrade 7.2"
    """
    source = _pick_sources(ctx, source, all_sources)
    _report(ctx, _run(ctx, lambda: upgrade_mod.end(ctx.config, source=source, dry_run=dry_run, by=by,
                                                   max_wait=max_wait)), sql=dry_run)


@cli.command()
@click.argument("table", required=False)
@_one_source_option
@_json_option
@pass_ctx
def ddl(ctx: Ctx, table: str | None, source: str | None) -> None:
    """Print the SQL fbaudit would run, as a script isql accepts.

    Without TABLE: the staging objects of `init`. With TABLE: its audit trigger.

    \b
    Examples:
      fbaudit ddl > init.sql
      fbaudit ddl CUSTOMER | isql-fb -user SYSDBA erp.fdb
    """
    script = _run(ctx, lambda: capture.ddl(ctx.config, table, source=source))
    if ctx.as_json:
        click.echo(json.dumps({"success": True, "table": table, "sql": script}, ensure_ascii=False, indent=2))
    else:
        click.echo(script, nl=False)


def _age(_ctx, param, value):
    from .config import parse_period
    try:
        return parse_period(value)
    except ValueError:
        raise click.BadParameter(f"{value!r} is not an age like 90s, 10m, 1h or 2d") from None


@cli.command()
@_source_option
@click.option("--warn-age", default="10m", show_default=True, callback=_age, metavar="AGE",
              help="Warning when the oldest waiting packet is older than this (90s, 10m, 1h, 2d).")
@click.option("--crit-age", default="1h", show_default=True, callback=_age, metavar="AGE",
              help="Critical when the oldest waiting packet is older than this.")
@click.option("--mass-change", type=click.IntRange(min=0), metavar="N",
              help="Warning when one transaction changed more than N rows of a table in the last day "
                   "[default: the config's status: mass_change, else 1000; 0: off].")
@click.option("--workers", default=4, show_default=True, metavar="N", help="Sources read at the same time.")
@_json_option
@pass_ctx
def status(ctx: Ctx, source: str | None, warn_age, crit_age, mass_change: int | None, workers: int) -> None:
    """Every source at a glance, worst first: health, logging, audited tables,
    backlog and its oldest packet's age, failed packets, last transfer, last
    rotation, staging table rows; then each problem and what to do about it.

    The exit code is the health, as monitoring plugins (Nagios, Icinga,
    Zabbix) read it: 0 OK, 1 WARNING, 2 CRITICAL; 3 for a configuration
    error. Critical: a source or the log database cannot be read, an audited
    table lost its trigger, failed packets, the last transfer failed, the
    backlog is older than --crit-age. Warning: logging paused, backlog older
    than --warn-age, rotation failed or overdue, a mass change (one
    transaction changed more than --mass-change rows of a table).

    \b
    Examples:
      fbaudit status
      fbaudit status --json
      fbaudit status --warn-age 5m --crit-age 30m    # as a Nagios/Zabbix check
    """
    from . import status as status_mod
    try:
        res = _run(ctx, lambda: status_mod.status(ctx.config, source=source, workers=workers,
                                                  thresholds=status_mod.Thresholds(warn_age, crit_age,
                                                                                   mass_change)))
    except SystemExit as exc:      # the check itself could not run: UNKNOWN (3) to a monitoring plugin
        sys.exit(3 if exc.code else 0)
    except Exception as exc:
        _echo_error(f"UNKNOWN: fbaudit status failed: {type(exc).__name__}: {exc}")
        sys.exit(3)
    _report(ctx, res)
    sys.exit(res.data["exit_code"])


@cli.command()
@_sources_option
@_json_option
@pass_ctx
def pause(ctx: Ctx, source: str | None, all_sources: bool) -> None:
    """Switch logging off (the article's ZAPIS = 0); triggers stay installed.

    \b
    Example:
      fbaudit pause --source erp
    """
    source = _pick_sources(ctx, source, all_sources)
    _report(ctx, _run(ctx, lambda: capture.set_logging(ctx.config, False, source=source)))


@cli.command()
@_sources_option
@_json_option
@pass_ctx
def resume(ctx: Ctx, source: str | None, all_sources: bool) -> None:
    """Switch logging back on.

    \b
    Example:
      fbaudit resume
    """
    source = _pick_sources(ctx, source, all_sources)
    _report(ctx, _run(ctx, lambda: capture.set_logging(ctx.config, True, source=source)))


def _lock_option(what: str):
    """`--lock FILE` for the commands a scheduler starts (fbaudit.joblock): the command runs
    only while it holds FILE; when another run holds it, this run logs that and exits 0."""
    from functools import wraps

    def decorate(f):
        @wraps(f)
        def run(*args, lock: str | None = None, **kwargs):
            if lock is None:
                return f(*args, **kwargs)
            return _locked(lock, what, lambda: f(*args, **kwargs))
        return click.option("--lock", metavar="FILE",
                            help="Run only while holding this lock file; when another run holds it, exit 0 at "
                                 "once without doing anything (scheduled jobs: fbaudit schedule).")(run)
    return decorate


def _locked(path: str, what: str, fn: Callable[[], Any]) -> Any:
    from contextlib import ExitStack
    from pathlib import Path
    from . import joblock
    ctx = click.get_current_context().find_object(Ctx)
    with ExitStack() as stack:
        def take():
            try:
                stack.enter_context(joblock.hold(Path(path), what))
            except joblock.JobRunning as exc:
                return exc
            return None
        busy = _run(ctx, take)
        if busy is not None:        # the normal answer while a long run goes on: not a failure
            logging.getLogger("fbaudit.schedule").warning("[SCHEDULE] %s", busy)
            if ctx.as_json:
                click.echo(json.dumps({"success": True, "skipped": True, "message": str(busy),
                                       "lock": str(busy.path), "holder_pid": busy.pid}, ensure_ascii=False))
            sys.exit(0)
        return fn()


@cli.command()
@_lock_option("transfer")
@_source_option
@click.option("--batch", default=DEFAULT_BATCH, show_default=True, metavar="N", help="Packets per batch (one log transaction).")
@click.option("--follow", is_flag=True,
              help="Keep running: wake on the triggers' event (or poll), stop cleanly on Ctrl+C / SIGTERM.")
@click.option("--poll", default=DEFAULT_POLL, show_default=True, metavar="SECONDS",
              help="With --follow: check at least this often when no event arrives.")
@click.option("--workers", default=4, show_default=True, metavar="N", help="Sources processed at the same time.")
@click.option("--retries", default=DEFAULT_RETRIES, show_default=True, metavar="N",
              help="Connection attempts (with backoff) before a source is given up for this run.")
@_json_option
@pass_ctx
def transfer(ctx: Ctx, source: str | None, batch: int, follow: bool, poll: float, workers: int, retries: int) -> None:
    """Ship new packets to the log database, exactly once.

    Each source: the fast check (milliseconds when nothing is new), then
    batches of packets; the log database pulls their field rows and BLOBs
    itself (EXECUTE STATEMENT ... ON EXTERNAL). Safe to kill at any moment:
    the next run neither loses nor repeats a change. Ctrl+C or SIGTERM stops
    after the current batch (exit 0, "stopped" in --json); a second signal
    aborts (exit 1) once the batches running end.

    \b
    Examples:
      fbaudit transfer                   # one run, e.g. every minute from the scheduler
      fbaudit -v transfer --follow       # near real time, logs each batch
      fbaudit transfer --source erp --json
    """
    from . import transfer as transfer_mod
    stop = _stop_on_signals(ctx)     # one run or --follow: a signal ends the current batches, then exits 0
    _report(ctx, _run(ctx, lambda: transfer_mod.transfer(ctx.config, source=source, batch=batch, follow=follow,
                                                         poll=poll, workers=workers, retries=retries, stop=stop)))


def _stop_on_signals(ctx: Ctx):
    """A stop event set by Ctrl+C, SIGTERM (and Ctrl+Break on Windows); a second signal stops at once."""
    import signal
    import threading
    from .runtime import install_client_signal_handlers
    _run(ctx, lambda: install_client_signal_handlers(ctx.config.client_library))   # before ours, so ours stay
    stop = threading.Event()

    def handler(signum, _frame):
        if stop.is_set():
            raise KeyboardInterrupt
        click.echo("stopping after the current batch (signal again to stop at once) …", err=True)
        stop.set()
    for name in ("SIGINT", "SIGTERM", "SIGBREAK"):
        if hasattr(signal, name):
            signal.signal(getattr(signal, name), handler)
    return stop


@cli.command()
@_lock_option("rotate")
@_source_option
@click.option("--force", is_flag=True, help="Rotate now even if the period since the last switch has not passed "
              "(never skips a safety check).")
@click.option("--max-wait", type=click.FloatRange(min=0), metavar="SECONDS",
              help="How long this run waits for old transactions and the transfer before postponing "
                   "[default: rotation.max_wait, 60].")
@click.option("--workers", default=4, show_default=True, metavar="N", help="Sources rotated at the same time.")
@_json_option
@pass_ctx
def rotate(ctx: Ctx, source: str | None, force: bool, max_wait: float | None, workers: int) -> None:
    """Empty the data table out of use by DROP + CREATE (run daily).

    Switches the triggers to the other data table, waits until no transaction
    that could still write to the old one is alive, checks that every row of
    it is in the log database, then drops and re-creates it, never blocking an
    application transaction. Whatever is not possible yet is postponed with
    the reason, and the next run resumes there. Each step is logged with
    [ROTATE]; `fbaudit status` shows the last rotation.

    \b
    Examples:
      fbaudit rotate                     # daily, from the scheduler
      fbaudit -v rotate --force          # now, logging each step
      FBAUDIT_NOW=2026-12-31T03:00 fbaudit rotate   # simulated clock (tests)
    """
    from . import rotation
    _report(ctx, _run(ctx, lambda: rotation.rotate(ctx.config, source=source, force=force, max_wait=max_wait,
                                                        workers=workers)))


@cli.command()
@click.argument("packets", nargs=-1, type=int, metavar="[PACKET]...")
@click.option("--all-failed", is_flag=True, help="Requeue every failed packet.")
@_source_option
@_json_option
@pass_ctx
def retry(ctx: Ctx, packets: tuple[int, ...], all_failed: bool, source: str | None) -> None:
    """Requeue packets marked failed (after 5 attempts) so the next transfer tries them again.

    \b
    Examples:
      fbaudit retry --all-failed
      fbaudit retry --source erp 1041 1042
    """
    from . import transfer as transfer_mod
    _report(ctx, _run(ctx, lambda: transfer_mod.retry(ctx.config, source=source, packets=list(packets),
                                                      all_failed=all_failed)))


def _print(ctx: Ctx, data: dict, lines: list[str]) -> None:
    if ctx.as_json:
        click.echo(json.dumps(data, ensure_ascii=False, indent=2, default=str))
    else:
        for line in lines:
            _echo(line)


@cli.command()
@click.argument("table")
@click.argument("key")
@click.option("--limit", default=DEFAULT_LIMIT, show_default=True, metavar="N", help="Versions to show.")
@click.option("--offset", default=0, show_default=True, metavar="N", help="Versions to skip (oldest first).")
@click.option("--source", metavar="NAME", help="Source database (needed when several are configured).")
@click.option("--at", "at_version", type=click.IntRange(min=1), metavar="N",
              help="The whole record as it was after version N (rebuilt from the log).")
@click.option("--diff", "diff_versions", type=click.IntRange(min=1), nargs=2, metavar="A B",
              help="The fields that differ between versions A and B.")
@click.option("--as-of", "as_of", metavar="TIME",
              help="The whole record as it was at a time: a date (2026-12-01, 2026-12-01T17:30) or an age (2h, 7d).")
@_json_option
@pass_ctx
def history(ctx: Ctx, table: str, key: str, limit: int, offset: int, source: str | None,
            at_version: int | None, diff_versions: tuple[int, int] | None, as_of: str | None) -> None:
    """A record's versions (1 = oldest) from the log database: who, when, old -> new.

    KEY is the key value, or COL=VALUE,COL=VALUE for a composite key.

    \b
    Examples:
      fbaudit history CUSTOMER 42
      fbaudit history ORDER_LINE ORDER_ID=7,LINE_NO=2 --json
      fbaudit history CUSTOMER 42 --at 3          # the record after version 3
      fbaudit history CUSTOMER 42 --diff 1 5      # what differs between versions 1 and 5
      fbaudit history CUSTOMER 42 --as-of 2026-12-01T17:30 --json
    """
    from . import history as h
    from . import versions
    if sum(1 for o in (at_version, diff_versions, as_of) if o) > 1:
        raise click.UsageError("give one of --at, --diff and --as-of")
    if as_of:
        when = _when("--as-of", as_of)
        st = _run(ctx, lambda: versions.record_as_of(ctx.config, table, key, when, source=source))
        _print(ctx, {"success": True, **st}, h.state_lines(st))
        return
    if at_version or diff_versions:
        if at_version:
            st = _run(ctx, lambda: versions.record_state(ctx.config, table, key, at_version, source=source))
            _print(ctx, {"success": True, **st}, h.state_lines(st))
        else:
            a, b = diff_versions
            d = _run(ctx, lambda: versions.record_diff(ctx.config, table, key, a, b, source=source))
            _print(ctx, {"success": True, **d}, h.diff_lines(d))
        return
    data = _run(ctx, lambda: h.history(ctx.config, table, key, source=source, limit=limit, offset=offset))
    out = {k: data[k] for k in ("table", "key", "versions", "total")}
    out.update(source=data["source"], limit=limit, offset=offset)
    _print(ctx, out, h.history_lines(data))


@cli.command()
@click.argument("table", required=False)
@click.argument("key", required=False)
@click.option("--to-version", "to_version", type=click.IntRange(min=1), metavar="N",
              help="One record: the version to go back to (1 = oldest; `fbaudit history TABLE KEY` lists them).")
@click.option("--transaction", "transaction_id", type=click.IntRange(min=0), metavar="TX",
              help="Revert every change of this source transaction (`fbaudit transactions` lists them).")
@click.option("--author", metavar="NAME", help="Revert this author's changes from --since until --until.")
@click.option("--since", metavar="TIME", help="With --author: from this time (a date, or an age: 2h, 7d).")
@click.option("--until", metavar="TIME", help="With --author: until this time (not included).")
@click.option("--table", "only_table", metavar="TABLE", help="With --author: only this table's changes.")
@click.option("--skip-conflicts", is_flag=True,
              help="Revert the other records and leave out those changed since (they are listed).")
@click.option("--by", "by", metavar="USER", help="Author recorded for the revert [default: fbaudit revert].")
@click.option("--comment", metavar="TEXT", help="Comment recorded with it [default: what was reverted].")
@click.option("--source", metavar="NAME", help="Source database (needed when several are configured).")
@click.option("--dry-run", is_flag=True,
              help="Change nothing; with --transaction/--author print the compensating SQL as an isql script.")
@_json_option
@pass_ctx
def revert(ctx: Ctx, table: str | None, key: str | None, to_version: int | None, transaction_id: int | None,
           author: str | None, since: str | None, until: str | None, only_table: str | None, skip_conflicts: bool,
           by: str | None, comment: str | None, source: str | None, dry_run: bool) -> None:
    """Put one record back to a version, or undo a whole transaction or an
    author's changes over a time, in one transaction.

    One record (TABLE KEY --to-version N): locks the row without waiting;
    refuses (exit 7, nothing changed) when someone is editing it, when a
    change of it still waits for the transfer, or when the row differs from
    its last logged version. Sets back only the fields that differ,
    re-inserts a deleted row, or deletes it again.

    Many records (--transaction TX, or --author A --since T1 --until T2):
    updates back the changed fields, re-inserts deleted rows (parents first)
    and deletes inserted ones (children first). When any record was changed
    after the selection it refuses with the list (exit 7, nothing changed);
    --skip-conflicts leaves those out. --dry-run prints the isql script.

    The audit trigger logs the revert with --by as author and --comment.

    \b
    Examples:
      fbaudit revert PRODUCT A-200 --to-version 3 --by support.anna --comment "ticket 4711"
      fbaudit revert --transaction 48121 --dry-run > undo.sql
      fbaudit revert --transaction 48121 --by support.anna --comment "ticket 4711"
      fbaudit revert --author batch.job --since "2026-12-07 02:00" --until "2026-12-07 03:00" --skip-conflicts
    """
    from . import undo, versions
    many = transaction_id is not None or author is not None
    if many:
        if table or key or to_version:
            raise click.UsageError("TABLE KEY --to-version revert one record; --transaction / --author revert "
                                   "many: use one or the other")
        if transaction_id is None and (since is None or until is None):
            raise click.UsageError("--author needs --since and --until (the time range of the changes to revert)")
        t1, t2 = _when("--since", since), _when("--until", until)
        res = _run(ctx, lambda: undo.revert_selection(
            ctx.config, source=source, transaction_id=transaction_id, author=author, since=t1, until=t2,
            table=only_table, by=by, comment=comment, skip_conflicts=skip_conflicts, dry_run=dry_run))
        if dry_run and not ctx.as_json:
            click.echo(res["script"], nl=False)          # exact: the script is SQL
            _echo_error("-- " + res["message"])
            return
        _print(ctx, {"success": True, **res}, undo.revert_lines(res))
        return
    if not (table and key and to_version):
        raise click.UsageError("give TABLE KEY --to-version N (one record), or --transaction TX, or --author NAME "
                               "--since T1 --until T2")
    if since or until or only_table or skip_conflicts:
        raise click.UsageError("--since, --until, --table and --skip-conflicts go with --transaction / --author")
    res = _run(ctx, lambda: versions.revert(ctx.config, table, key, to_version=to_version, by=by, comment=comment,
                                            source=source, dry_run=dry_run))
    _print(ctx, {"success": True, **res}, [res["message"]])


def _when(option: str, text: str | None):
    """--since / --until: a date or an age (7d, 12h), as prune's --before reads it."""
    from datetime import datetime as _dt

    from .prune import parse_before
    if text is None:
        return None
    try:
        return parse_before(text, _dt.now())
    except FbauditError as exc:
        raise click.BadParameter(str(exc).replace("--before ", ""), param_hint=option) from None


@cli.command()
@click.argument("table")
@click.option("--as-of", "as_of", required=True, metavar="TIME",
              help="The time: a date (2026-12-01, 2026-12-01T17:30) or an age (2h, 7d).")
@click.option("--format", "fmt", type=click.Choice(["csv", "json"]), default="csv", show_default=True,
              help="CSV (a header, then a row per record) or a JSON array of records.")
@click.option("--output", "-o", metavar="FILE", help="Write to FILE [default: standard output].")
@_one_source_option
@pass_ctx
def export(ctx: Ctx, table: str, as_of: str, fmt: str, output: str | None, source: str | None) -> None:
    """Every record of TABLE as it was at a time, rebuilt from the log.

    Streamed: memory does not grow with the table. A record that existed
    then is one row (CSV) or object (JSON); its values are those of its
    newest version made by then. `_complete` is false when its history
    does not hold the whole row then (it starts with an update, or an
    upgrade left its values unrecorded): the missing fields are unknown,
    not NULL. A summary goes to standard error.

    \b
    Examples:
      fbaudit export PRODUCT --as-of 2026-12-01T17:30 -o product-1730.csv
      fbaudit export CUSTOMER --as-of 7d --format json > customer-week-ago.json
    """
    from . import history
    from .progress import Progress
    when = _when("--as-of", as_of)
    try:
        stream = open(output, "w", encoding="utf-8", newline="") if output else sys.stdout
    except OSError as exc:
        raise click.BadParameter(f"cannot write {output}: {exc.strerror}", param_hint="--output") from None
    text = history.ExportFormat(fmt, stream.write)
    try:
        with Progress(0) as bar:
            res = _run(ctx, lambda: history.export_as_of(ctx.config, table, when, text.row, source=source,
                                                          progress=bar.advance, header=text.header))
        text.end()
    finally:
        if output:
            stream.close()
    click.echo(f"{res['source']}: {res['table']} as of {res['as_of']}: {res['records']} record(s) from "
               f"{res['packets']} packet(s)" + (f" -> {output}" if output else ""), err=True)


@cli.command()
@click.option("--table", metavar="TABLE", help="Only transactions that changed this table.")
@click.option("--author", metavar="NAME", help="Only transactions with a change by this author.")
@click.option("--since", metavar="DATE|AGE", help="Only changes from this time: a date (2026-01-01, 2026-01-01T12:00) "
                                                  "or an age (7d, 12h).")
@click.option("--until", metavar="DATE|AGE", help="Only changes before this time (same forms).")
@click.option("--limit", default=20, show_default=True, type=click.IntRange(1, 200), metavar="N",
              help="Transactions to show.")
@click.option("--offset", default=0, show_default=True, type=click.IntRange(min=0), metavar="N",
              help="Transactions to skip (newest first).")
@_one_source_option
@_json_option
@pass_ctx
def transactions(ctx: Ctx, table: str | None, author: str | None, since: str | None, until: str | None,
                 limit: int, offset: int, source: str | None) -> None:
    """Source transactions with row changes in the log, newest first.

    Each with the time and author of its first change, how many changes it
    made and in which tables. `fbaudit transaction TX` shows one whole.
    JSON: {"transactions": [{"transaction_id", "source", "at", "author",
    "user", "changes", "tables": {"NAME": count}, ...}], "pagination": ...}.

    \b
    Examples:
      fbaudit transactions --since 1d
      fbaudit transactions --table PRODUCT --author support.anna --json
    """
    from . import history
    res = _run(ctx, lambda: history.transactions(
        ctx.config, source=source, table=table, author=author, since=_when("--since", since),
        until=_when("--until", until), limit=limit, offset=offset))
    data = {"success": True, "source": res["source"], "transactions": res["transactions"],
            "pagination": {"limit": limit, "offset": offset, "total": res["total"], "total_exact": res["total_exact"]}}
    _print(ctx, data, history.transactions_lines(res))


@cli.command()
@click.option("--table", metavar="TABLE", help="Only changes of this table.")
@click.option("--field", metavar="NAME", help="With --value: the field (of --table, or of any table).")
@click.option("--value", metavar="TEXT", help="With --field: the value it was set to (typed as shown in history; "
                                              "numbers and dates in any form: 0 finds 0.00).")
@click.option("--new", "side", flag_value="new", default=True, help="Changes that set the field to it [default].")
@click.option("--old", "side", flag_value="old", help="Changes that changed the field away from it.")
@click.option("--either", "side", flag_value="either", help="Either.")
@click.option("--prefix", is_flag=True, help="Values that start with --value.")
@click.option("--author", metavar="NAME", help="Only changes by this author.")
@click.option("--since", metavar="DATE|AGE", help="Only changes from this time: a date or an age (7d, 12h).")
@click.option("--until", metavar="DATE|AGE", help="Only changes before this time (same forms).")
@click.option("--limit", default=20, show_default=True, type=click.IntRange(1, 200), metavar="N",
              help="Changes to show.")
@click.option("--offset", default=0, show_default=True, type=click.IntRange(min=0), metavar="N",
              help="Changes to skip (newest first).")
@_one_source_option
@_json_option
@pass_ctx
def search(ctx: Ctx, table: str | None, field: str | None, value: str | None, side: str, prefix: bool,
           author: str | None, since: str | None, until: str | None, limit: int, offset: int,
           source: str | None) -> None:
    """Find changes across the log, newest first: who set a field to a value.

    Each change is a version of its record (table, key, version, operation,
    author, time, transaction, the fields it changed); `fbaudit history
    TABLE KEY` shows the record, `fbaudit transaction TX` what else its
    transaction did. JSON: {"versions": [...], "pagination": ...}, the items
    of /api/versions.

    \b
    Examples:
      fbaudit search --field PRICE --value 0                  # who set PRICE to 0?
      fbaudit search --table PRODUCT --field TITLE --value Ёлка --prefix --since 7d
      fbaudit search --field STATUS --value CLOSED --old --author batch.job --json
    """
    from . import history
    res = _run(ctx, lambda: history.search(
        ctx.config, source=source, table=table, author=author, since=_when("--since", since),
        until=_when("--until", until), field=field, value=value, side=side, prefix=prefix, limit=limit,
        offset=offset))
    data = {"success": True, "source": res["source"], "versions": res["items"],
            "pagination": {"limit": limit, "offset": offset, "total": res["total"], "total_exact": res["total_exact"]}}
    _print(ctx, data, history.search_lines(res))


@cli.command()
@click.argument("transaction_id", metavar="TX", type=click.IntRange(min=0))
@click.option("--limit", default=200, show_default=True, type=click.IntRange(1, 1000), metavar="N",
              help="Changes to show.")
@click.option("--offset", default=0, show_default=True, type=click.IntRange(min=0), metavar="N",
              help="Changes to skip (in the order they were made).")
@_one_source_option
@_json_option
@pass_ctx
def transaction(ctx: Ctx, transaction_id: int, limit: int, offset: int, source: str | None) -> None:
    """Every change source transaction TX made, across tables, in order.

    Each change is shown as the version of its record it is (table, key,
    version number, operation, fields old -> new), with any DDL the
    transaction ran. TX is the number `fbaudit transactions` and
    `history --json` ("transaction_id") give.

    \b
    Example:
      fbaudit transaction 48211 --source erp
    """
    from . import history
    res = _run(ctx, lambda: history.transaction(ctx.config, transaction_id, source=source, limit=limit,
                                                offset=offset))
    data = {"success": True, **{k: v for k, v in res.items() if k not in ("total", "limit", "offset")},
            "pagination": {"limit": limit, "offset": offset, "total": res["total"]}}
    _print(ctx, data, history.transaction_lines(res))


@cli.command("schema-log")
@click.option("--object", "object_name", metavar="NAME", help="Only the events of this object (table, trigger, ...).")
@click.option("--since", metavar="DATE|AGE", help="From this time: a date (2026-01-01, 2026-01-01T12:00) or an age (7d, 12h).")
@click.option("--until", metavar="DATE|AGE", help="Before this time (same forms).")
@click.option("--limit", default=50, show_default=True, type=click.IntRange(1, 200), metavar="N", help="Events to show.")
@click.option("--offset", default=0, show_default=True, type=click.IntRange(min=0), metavar="N",
              help="Events to skip (newest first).")
@_one_source_option
@_json_option
@pass_ctx
def schema_log(ctx: Ctx, object_name: str | None, since: str | None, until: str | None, limit: int, offset: int,
               source: str | None) -> None:
    """DDL statements run in a source database, newest first: who, when, from where, the statement.

    Every CREATE / ALTER / DROP (tables, procedures, triggers, views, ...)
    is captured by fbaudit's DDL trigger and shipped with the row changes
    by `fbaudit transfer`, so it is listed here once transferred. An ALTER
    TABLE of an audited table also says what happened to its audit trigger.
    JSON: {"events": [{"at", "user", "event", "object_type", "object", "sql", ...}], "pagination": ...}.

    \b
    Examples:
      fbaudit schema-log --since 7d
      fbaudit schema-log --object CUSTOMER --json
    """
    from . import history
    res = _run(ctx, lambda: history.schema_events(
        ctx.config, source=source, object_name=object_name, since=_when("--since", since),
        until=_when("--until", until), limit=limit, offset=offset))
    data = {"success": True, "source": res["source"], "events": res["events"],
            "pagination": {"limit": limit, "offset": offset, "total": res["total"], "total_exact": res["total_exact"]}}
    _print(ctx, data, history.schema_event_lines(res))


@cli.command()
@click.option("--before", required=True, metavar="DATE|AGE",
              help="Remove history created before this: a date (2026-01-01, 2026-01-01T12:00) or an age (90d, 12h).")
@_source_option
@click.option("--batch", default=5000, show_default=True, metavar="N", help="Packets per transaction.")
@click.option("--keep-newest/--no-keep-newest", default=True, show_default=True,
              help="Keep each record's newest packet even when it is older than --before, so its version "
                   "numbers go on from it (without: a record whose whole history went starts again at 1).")
@_dry_run_option
@_json_option
@pass_ctx
def prune(ctx: Ctx, before: str, source: str | None, batch: int, keep_newest: bool, dry_run: bool) -> None:
    """Remove old history from the log database, in batches of short transactions.

    Only the log database is touched. Per source it removes the packets
    before the first one created at --before or later (in packet order, so
    no record gets a hole in its history). Version numbers stay as they
    were: a record whose versions 1 to 4 were pruned starts at version 5.

    \b
    Examples:
      fbaudit prune --before 2025-01-01 --dry-run
      fbaudit prune --before 400d --source erp
    """
    from . import prune as prune_mod
    logging.getLogger("fbaudit.prune").setLevel(logging.INFO)
    _report(ctx, _run(ctx, lambda: prune_mod.prune(ctx.config, before=before, source=source, batch=batch,
                                                   dry_run=dry_run, keep_newest=keep_newest)))


@cli.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=8765, show_default=True, type=click.IntRange(1, 65535), help="Port.")
@click.option("--token-file", metavar="FILE",
              help="File whose first line is the API token (owner-only); default: $FBAUDIT_API_TOKEN.")
@click.option("--no-auth", is_flag=True, help="No token (allowed on a loopback address only).")
@click.option("--allow-host", "allow_hosts", multiple=True, metavar="NAME",
              help="Another host name the server answers to (repeatable): the name clients use in their "
                   "URLs. Requests for other names are refused.")
@pass_ctx
def serve(ctx: Ctx, host: str, port: int, token_file: str | None, no_auth: bool,
          allow_hosts: tuple[str, ...]) -> None:
    """The admin API (JSON, OpenAPI at /openapi.json) and the history page at /.

    Every /api request needs the token (Authorization: Bearer TOKEN). A
    call that changes something takes a JSON body, also with --no-auth. The
    server answers only to the address it listens on (on 0.0.0.0: this
    machine's names) and the --allow-host names. Stop with Ctrl+C.

    \b
    Examples:
      FBAUDIT_API_TOKEN=$(openssl rand -hex 16) fbaudit serve --port 8765
      fbaudit serve --host 0.0.0.0 --token-file /etc/fbaudit/api.token --allow-host audit.example.com
      fbaudit serve --no-auth            # 127.0.0.1 only, for a quick look
    """
    import os
    from . import api
    logging.getLogger("fbaudit.serve").setLevel(logging.INFO)
    logging.getLogger("fbaudit.checkpoint").setLevel(logging.INFO)     # a restore's [CHECKPOINT] lines
    token = _run(ctx, lambda: api.load_token(token_file, dict(os.environ)))
    _run(ctx, lambda: api.serve(ctx.config, host=host, port=port, token=token, no_auth=no_auth,
                                allow_hosts=allow_hosts))


@cli.command()
@click.argument("packet", type=int)
@click.option("--source", metavar="NAME", help="Source database (needed when several are configured).")
@_json_option
@pass_ctx
def show(ctx: Ctx, packet: int, source: str | None) -> None:
    """One packet (one version of one record) from the log database.

    \b
    Example:
      fbaudit show 1041
    """
    from . import history as h
    data = _run(ctx, lambda: h.show(ctx.config, packet, source=source))
    key = ", ".join(f"{k}={v}" for k, v in data["key"].items()) or "(whole table)"
    _print(ctx, data, [f"{data['table']} {key} (source {data['source']})"] + h.version_lines(data))


@cli.command()
@click.option("--dir", "directory", default="data/demo", show_default=True, metavar="DIR",
              help="Folder for the demo databases, config and registry (re-created).")
@click.option("--seconds", default=3.0, show_default=True, help="How long the simulated users work.")
@click.option("--users", default=4, show_default=True, help="Simulated users, one connection each.")
@_json_option
@pass_ctx
def demo(ctx: Ctx, directory: str, seconds: float, users: int) -> None:
    """Run fbaudit end to end on embedded Firebird: no server, no setup.

    Creates a small ERP-like database and a log database under DIR, enables
    auditing, lets simulated users edit for a few seconds, and prints what was
    captured and one record's history.

    \b
    Example:
      fbaudit demo --seconds 5
    """
    from . import demo as demo_mod
    res = _run(ctx, lambda: demo_mod.run(directory, seconds=seconds, users=users,
                                         echo=None if ctx.as_json else _echo))
    if ctx.as_json:
        click.echo(json.dumps({"success": True, **res}, ensure_ascii=False, indent=2, default=str))


@cli.group()
def checkpoint() -> None:
    """Consistent copies of tables (JSON files) and dependency-ordered restores.

    Every step is logged with [CHECKPOINT] lines on stderr (the checkpoint
    guide's format); files live in data/checkpoints/ (config: checkpoints.dir).

    \b
    Examples:
      fbaudit checkpoint create --description "before the price update"
      fbaudit checkpoint list
      fbaudit checkpoint restore checkpoint_20261202_013000
    """
    logging.getLogger("fbaudit.checkpoint").setLevel(logging.INFO)


@checkpoint.command("create")
@click.option("--description", "-d", metavar="TEXT", help="What this checkpoint is for.")
@click.option("--tables", "-t", multiple=True, metavar="TABLE",
              help="A table to include (repeatable; also comma-separated). Default: the audited tables.")
@click.option("--all", "all_tables", is_flag=True, help="Every user table and every user sequence.")
@_one_source_option
@_json_option
@pass_ctx
def checkpoint_create(ctx: Ctx, description: str | None, tables: tuple[str, ...], all_tables: bool,
                      source: str | None) -> None:
    """Write a checkpoint: the tables' rows and sequences, read in one consistent
    read-only transaction (writers are not blocked).

    \b
    Examples:
      fbaudit checkpoint create -d "before month end"
      fbaudit checkpoint create --tables CUSTOMER,ORDERS --json
      fbaudit checkpoint create --all
    """
    from . import checkpoint as cp
    if tables and all_tables:
        raise click.UsageError("give --tables or --all, not both")
    names = [t for item in tables for t in item.split(",") if t.strip()]
    res = _run(ctx, lambda: cp.create(ctx.config, source=source, description=description, tables=names or None,
                                      all_tables=all_tables))
    for w in res["warnings"]:
        _echo(f"warning: {w}", err=True)
    _print(ctx, {"success": True, **res},
           [f"{res['id']}: {len(res['tables'])} tables, {res['total_rows']} rows, {res['sequences']} sequences "
            f"-> {res['file']} ({res['bytes']} bytes, {res['seconds']} s)"])


@checkpoint.command("list")
@_json_option
@pass_ctx
def checkpoint_list(ctx: Ctx) -> None:
    """The checkpoints in the checkpoint folder, oldest first, and the files of
    creates that did not finish (INCOMPLETE: `checkpoint delete ID` removes one).

    \b
    Example:
      fbaudit checkpoint list --json
    """
    from . import checkpoint as cp
    items = _run(ctx, lambda: cp.list_checkpoints(ctx.config))
    _print(ctx, {"success": True, "directory": str(ctx.config.checkpoint_dir), "checkpoints": items},
           cp.list_lines(items, ctx.config.checkpoint_dir))


@checkpoint.command("show")
@click.argument("checkpoint_id", metavar="ID")
@_json_option
@pass_ctx
def checkpoint_show(ctx: Ctx, checkpoint_id: str) -> None:
    """One checkpoint, its file verified (checksum, structure): tables, rows, sequences.

    \b
    Example:
      fbaudit checkpoint show checkpoint_20261202_013000
    """
    from . import checkpoint as cp
    res = _run(ctx, lambda: cp.show(ctx.config, checkpoint_id))
    _print(ctx, {"success": True, **res}, cp.show_lines(res))


@checkpoint.command("restore")
@click.argument("checkpoint_id", metavar="ID")
@click.option("--no-auto-backup", is_flag=True,
              help="Do not write auto_backup_before_restore_<ID> first (it is written by default).")
@click.option("--audit", type=click.Choice(["rows", "event"]), default="rows", show_default=True,
              help="rows: the audit triggers log every deleted and inserted row; event: one restore "
                   "event per audited table instead (needs current triggers: fbaudit sync).")
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
@_one_source_option
@_json_option
@pass_ctx
def checkpoint_restore(ctx: Ctx, checkpoint_id: str, no_auto_backup: bool, audit: str, yes: bool,
                       source: str | None) -> None:
    """Overwrite the checkpoint's tables with its rows and sequences, in ONE transaction.

    The file and the tables' columns are checked before anything is touched.
    The tables are reserved (other writers wait or time out; readers see the
    old rows until the commit), an auto-backup is written from inside that
    transaction, rows are deleted children first and inserted parents first
    (foreign keys; self-references and cycles are filled in afterwards). Any
    failure rolls everything back and the log says how to recover.

    \b
    Examples:
      fbaudit checkpoint restore checkpoint_20261202_013000
      fbaudit checkpoint restore checkpoint_20261202_013000 --yes --audit event
    """
    from . import checkpoint as cp
    if not yes:
        if not sys.stdin.isatty():
            raise click.UsageError("restore overwrites tables: confirm with --yes when not run from a terminal")
        click.confirm(f"Restore {checkpoint_id}? This OVERWRITES the data of its tables", abort=True, err=True)
    res = _run(ctx, lambda: cp.restore(ctx.config, checkpoint_id, source=source, auto_backup=not no_auto_backup,
                                       audit=audit))
    _print(ctx, {"success": True, **res},
           [f"{res['id']} restored: {len(res['tables'])} tables, {res['total_rows']} rows in {res['seconds']} s"
            + (f"; auto-backup {res['auto_backup']}" if res["auto_backup"] else "")])


@checkpoint.command("delete")
@click.argument("checkpoint_id", metavar="ID")
@_json_option
@pass_ctx
def checkpoint_delete(ctx: Ctx, checkpoint_id: str) -> None:
    """Delete a checkpoint file, or the file of a create that did not finish
    (INCOMPLETE in `checkpoint list`; one a running create is writing is refused).

    \b
    Example:
      fbaudit checkpoint delete auto_backup_before_restore_checkpoint_20261202_013000
    """
    from . import checkpoint as cp
    res = _run(ctx, lambda: cp.delete(ctx.config, checkpoint_id))
    _print(ctx, {"success": True, **res}, [f"deleted {res['id']} ({res['file']})"])


# --------------------------------------------------------------------------
# fbaudit schedule install|remove|show (library: fbaudit.schedule)
# --------------------------------------------------------------------------
def _schedule_value(check: str):
    """A click callback running fbaudit.schedule.<check> on the value: ValueError -> usage error (exit 2)."""
    def callback(_ctx, _param, value):
        from . import schedule as sch
        try:
            getattr(sch, check)(value)
        except ValueError as exc:
            raise click.BadParameter(str(exc)) from None
        return value
    return callback


def _schedule_options(f):
    options = [
        click.option("--windows", is_flag=True, help="Windows Task Scheduler (the default on Windows)."),
        click.option("--systemd", is_flag=True, help="systemd timers (the default where systemd runs)."),
        click.option("--cron", is_flag=True, help="The user's crontab (the default elsewhere)."),
        click.option("--name", default="fbaudit", show_default=True, metavar="NAME",
                     callback=_schedule_value("check_name"),
                     help="Name of this set of jobs: one per config when several run on one machine."),
        click.option("--user", metavar="ACCOUNT",
                     help="Run as ACCOUNT: Windows: that account, its password asked by schtasks (default SYSTEM); "
                          "systemd: User=; cron: its crontab (crontab -u)."),
        click.option("--unit-dir", metavar="DIR",
                     help="systemd: write or delete the unit files in DIR and run no systemctl "
                          "[default: /etc/systemd/system, activated with systemctl]."),
    ]
    for option in reversed(options):
        f = option(f)
    return f


def _schedule_target(windows: bool, systemd: bool, cron: bool, unit_dir: str | None,
                     xml_dir: str | None = None) -> str:
    from . import schedule as sch
    given = [t for t, on in (("windows", windows), ("systemd", systemd), ("cron", cron)) if on]
    if len(given) > 1:
        raise click.UsageError(f"give one of --windows, --systemd, --cron, not {' and '.join('--' + t for t in given)}")
    target = given[0] if given else sch.detect_target()
    if unit_dir and target != "systemd":
        raise click.UsageError(f"--unit-dir is for --systemd (the target here is {target})")
    if xml_dir and target != "windows":
        raise click.UsageError(f"--xml-dir is for --windows (the target here is {target})")
    return target


@cli.group()
def schedule() -> None:
    """Install the scheduled jobs: the transfer every minute (or `transfer
    --follow` as a service) and the daily rotation, in Windows Task Scheduler,
    systemd or cron.

    Each job runs `python -m fbaudit --config <config> -v transfer --lock <file>`
    (or rotate) in the config file's folder and appends its output to
    fbaudit-<name>.log there. The lock makes a run that finds the previous
    one still busy exit 0 at once.

    \b
    Examples:
      fbaudit schedule install --print          # what would be installed
      fbaudit --config /etc/fbaudit/erp.yaml schedule install --name erp
      fbaudit schedule show
      fbaudit schedule remove
    """


@schedule.command("install")
@_schedule_options
@click.option("--print", "print_only", is_flag=True, help="Show exactly what would be installed; install nothing.")
@click.option("--follow", is_flag=True,
              help="The transfer as a long-running service (`transfer --follow`) instead of every --every minutes.")
@click.option("--every", default=1, show_default=True, type=int, metavar="MINUTES",
              callback=_schedule_value("check_every"),
              help="Transfer every MINUTES: a divisor of 60, or whole hours dividing a day (60, 120, ... 1440). "
                   "With --follow on Windows: how soon a stopped service is started again.")
@click.option("--rotate-at", default="03:00", show_default=True, metavar="HH:MM",
              callback=_schedule_value("parse_time"),
              help="Local time of the daily rotation.")
@click.option("--log-file", metavar="FILE", help="Where the jobs append their output [default: fbaudit-NAME.log "
              "in the config file's folder].")
@click.option("--lock-dir", metavar="DIR", help="Folder of the lock files [default: the config file's folder].")
@click.option("--xml-dir", metavar="DIR", help="Windows: write the task XML files (UTF-16, for schtasks /XML) to "
              "DIR and register nothing; works on any system.")
@click.option("--python", "python", metavar="PATH", help="The Python that runs the jobs [default: this one].")
@_json_option
@pass_ctx
def schedule_install(ctx: Ctx, windows: bool, systemd: bool, cron: bool, name: str, user: str | None,
                     unit_dir: str | None, print_only: bool, follow: bool, every: int, rotate_at: str,
                     log_file: str | None, lock_dir: str | None, xml_dir: str | None, python: str | None) -> None:
    """Install the transfer and rotation jobs for the configuration (--config).

    Installing again with the same --name replaces the jobs. Prints what it
    installed, how to check it and how to remove it.

    \b
    Examples:
      fbaudit schedule install --print
      fbaudit schedule install --systemd --follow
      fbaudit schedule install --cron --every 5 --rotate-at 02:30
      fbaudit --config C:\\fbaudit\\erp.yaml schedule install --windows --name erp
      fbaudit schedule install --windows --xml-dir tasks/   # XML files to import elsewhere
    """
    from . import schedule as sch
    target = _schedule_target(windows, systemd, cron, unit_dir, xml_dir)
    plan = _run(ctx, lambda: sch.make_plan(ctx.config_path, target=target, name=name, every=every,
                                           rotate_at=rotate_at, follow=follow, log_file=log_file,
                                           lock_dir=lock_dir, user=user, python=python, unit_dir=unit_dir,
                                           xml_dir=xml_dir))
    _report(ctx, _run(ctx, lambda: sch.install(plan, dry_run=print_only)))


@schedule.command("remove")
@_schedule_options
@click.option("--print", "print_only", is_flag=True, help="Show what would be removed; remove nothing.")
@_json_option
@pass_ctx
def schedule_remove(ctx: Ctx, windows: bool, systemd: bool, cron: bool, name: str, user: str | None,
                    unit_dir: str | None, print_only: bool) -> None:
    """Remove the jobs installed under --name (nothing installed: says so, exit 0).

    \b
    Examples:
      fbaudit schedule remove
      fbaudit schedule remove --cron --name erp
    """
    from . import schedule as sch
    target = _schedule_target(windows, systemd, cron, unit_dir)
    _report(ctx, _run(ctx, lambda: sch.remove(target, name=name, user=user, unit_dir=unit_dir,
                                              dry_run=print_only)))


@schedule.command("show")
@_schedule_options
@_json_option
@pass_ctx
def schedule_show(ctx: Ctx, windows: bool, systemd: bool, cron: bool, name: str, user: str | None,
                  unit_dir: str | None) -> None:
    """What is installed under --name: the crontab block, the units and their timers, or the tasks' XML.

    \b
    Examples:
      fbaudit schedule show
      fbaudit schedule show --systemd --name erp --json
    """
    from . import schedule as sch
    target = _schedule_target(windows, systemd, cron, unit_dir)
    _report(ctx, _run(ctx, lambda: sch.show(target, name=name, user=user, unit_dir=unit_dir)))


def _safe_streams() -> None:
    """Never die on output encoding: a pipe on Windows (a monitoring agent, a scheduled task's
    log) is in the ANSI code page, which has no Cyrillic or CJK letters for a source name or a
    value. Characters it cannot encode are written as \\uXXXX, which inside JSON strings is
    still valid JSON."""
    for stream in (sys.stdout, sys.stderr):
        enc = (getattr(stream, "encoding", None) or "").lower().replace("-", "")
        if enc not in ("utf8", "utf_8") and hasattr(stream, "reconfigure"):
            stream.reconfigure(errors="backslashreplace")


def main() -> None:
    _safe_streams()
    cli(prog_name="fbaudit")


if __name__ == "__main__":
    main()
