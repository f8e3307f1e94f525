"""Per-source plumbing shared by the commands: what a command did (:class:`Result`), opening a
configured database, running work for every source (one after the other, or in the one worker
pool), picking one source, and telling a lost connection from any other error.

One broken source never stops the others: its error is recorded in the Result and the command
goes on with the next source (docs/operations.md).
"""
from __future__ import annotations

import contextlib
import logging
import signal
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Callable, Iterator

from .config import Config, DatabaseSpec, SourceSpec
from .db import Database, open_database
from .errors import ConnectionLost, DatabaseError, FbauditError
from .templates import Statement


@dataclass
class Result:
    """What a command did, for people (``lines``) and for --json (``data``).

    ``errors`` holds (source name, error) for sources that failed: one broken
    source never stops the others; the CLI exits non-zero when there are any.
    """

    data: dict
    lines: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    statements: list[Statement] = field(default_factory=list)
    errors: list[tuple[str, FbauditError]] = field(default_factory=list)
    scripts: list[tuple[str, list[Statement]]] = field(default_factory=list)

    def add_plan(self, database: str, plan: list[Statement]) -> None:
        """Record the statements planned for one database (printed per database)."""
        if plan:
            self.statements += plan
            self.scripts.append((database, list(plan)))


def open_source(config: Config, spec: DatabaseSpec, create: bool = False, **transactions) -> Database:
    """Open a database of the config, a source's or the log's (``transactions``: see open_database)."""
    return open_database(spec, client_library=config.client_library, create=create, **transactions)


def for_each_source(config: Config, source: str | None, out: Result, work: Callable[[SourceSpec], None],
                    *, log: logging.Logger, tag: str) -> Result:
    """Run ``work`` per source, one after the other; a failing source is recorded and the others go on.

    With a single source the error is raised as it is (nothing else to go on with).
    """
    specs = config.source(source)
    for spec in specs:
        try:
            work(spec)
        except FbauditError as exc:
            if len(specs) == 1:
                raise
            log.info("[%s] %s: FAILED: %s", tag, spec.name, str(exc).splitlines()[0])
            out.errors.append((spec.name, exc))
            out.data.setdefault("sources", []).append({"source": spec.name, "error": str(exc)})
    return out


def one_source(config: Config, source: str | None, *, why: str = "",
               error: type[FbauditError] = FbauditError) -> SourceSpec:
    """The source a command for one database works on: ``source`` by name, or the only one configured.

    An unknown name lists the configured ones (Config.source); several sources and no name raise
    ``error``, starting with ``why`` when given ("Packet ids are per source").
    """
    specs = config.source(source)
    if len(specs) > 1:
        lead = f"{why}, and {len(specs)}" if why else f"{len(specs)}"
        raise error(f"{lead} sources are configured ({shown_names(specs)}): name one with --source NAME.")
    return specs[0]


def shown_names(specs: list[SourceSpec]) -> str:
    """The sources' names for a message, five at most: ``a, b, c, d, e, … (195 more)``."""
    names = [s.name for s in specs]
    return ", ".join(names[:5]) + (f", … ({len(names) - 5} more)" if len(names) > 5 else "")


def block_signals() -> None:
    """Worker threads leave Ctrl+C / SIGTERM to the main thread.

    Otherwise the OS may deliver the signal to a worker blocked in the
    Firebird client, whose socket call then fails with EINTR mid-batch.
    """
    if hasattr(signal, "pthread_sigmask"):
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})


@contextlib.contextmanager
def worker_pool(workers: int, name: str) -> Iterator[ThreadPoolExecutor]:
    """The threads that work on several sources at once (transfer, rotate, status).

    Signals stay with the main thread (:func:`block_signals`). When the caller fails or is
    interrupted, the sources not started yet are not started; those running are waited for.
    """
    pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix=name, initializer=block_signals)
    try:
        yield pool
    except BaseException:
        pool.shutdown(wait=True, cancel_futures=True)
        raise
    pool.shutdown()


# GDS codes of "the connection is gone / cannot be made": retried with backoff,
# never counted against a packet.
CONNECTION_GDS = {
    335544721,  # network_error: unable to complete network request
    335544726,  # net_read_err
    335544727,  # net_write_err
    335544741,  # lost_db_connection
    335544648,  # conn_lost
    335544856,  # att_shutdown
    335544528,  # shutdown
    335544344,  # io_error (embedded file missing or unreadable)
    335544734,  # random (I/O) error on the file
}

_NETWORK_WORDS = ("error reading data from the connection", "error writing data to the connection",
                  "unable to complete network request", "connection lost", "connection refused",
                  "connection shutdown", "connection reset", "broken pipe", "network error")


def is_connection_error(exc: BaseException) -> bool:
    """The connection is gone or cannot be made (also inside EXECUTE STATEMENT ... ON EXTERNAL,
    whose errors carry the inner network error only in their text)."""
    if isinstance(exc, ConnectionLost):
        return True
    if isinstance(exc, DatabaseError):
        if set(exc.gds_codes) & CONNECTION_GDS:
            return True
        low = str(exc).lower()
        return any(w in low for w in _NETWORK_WORDS)
    return False
