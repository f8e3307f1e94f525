"""fbaudit's exceptions: one root, a few kinds, each mapped to an exit code.

Every error fbaudit raises for a user is a :class:`FbauditError` defined here; ``exit_code`` is what
the command line exits with (the list is in ``fbaudit --help`` and docs/cli.md).
"""
from __future__ import annotations

from pathlib import Path


class FbauditError(Exception):
    """Root of every error fbaudit reports to a user."""

    exit_code = 1


class ConfigError(FbauditError):
    """Bad configuration or registry file (names the file and line)."""

    exit_code = 3


class RuntimeSetupError(FbauditError):
    """The Firebird client/embedded runtime cannot be loaded."""

    exit_code = 4


class DatabaseError(FbauditError):
    """A Firebird error, with the database and the driver's codes."""

    exit_code = 4

    def __init__(self, message: str, *, sqlcode: int | None = None, gds_codes: tuple[int, ...] = ()):
        super().__init__(message)
        self.sqlcode = sqlcode
        self.gds_codes = gds_codes


class CatalogError(FbauditError):
    """A table or column does not exist or cannot be audited as asked."""

    exit_code = 5


class NotFound(FbauditError):
    """Unknown source, table, record or packet."""

    exit_code = 5


class CheckpointError(FbauditError):
    """A checkpoint that cannot be used as asked: missing, damaged, not matching the database."""

    exit_code = 6


class CheckpointNotFound(CheckpointError):
    """No checkpoint has this id in the checkpoint folder (or the text is not an id at all)."""


class RevertConflict(FbauditError):
    """The row changed since its last logged version, or is being changed: nothing was done.
    ``conflicts``: the records in the way, each {"table", "key", "reason"} (a revert of many)."""

    exit_code = 7

    def __init__(self, message: str, conflicts: list[dict] | None = None):
        super().__init__(message)
        self.conflicts = conflicts or []


class ConnectionLost(FbauditError):
    """A database cannot be reached: retried with backoff, then the source fails."""

    exit_code = 4


class SourceBusy(FbauditError):
    """Another transfer holds this source's lock in the log database."""


class RotationBusy(FbauditError):
    """Another rotate of this source holds the rotation lock."""

    exit_code = 0


class ScheduleError(FbauditError):
    """The scheduler could not be asked, or refused; names the command and its message."""

    exit_code = 1


class JobRunning(FbauditError):
    """Another process holds the job's lock: this run did nothing.

    ``exit_code`` is 1 for library callers; the command line reports it as a
    normal outcome (a log line, exit code 0) so the scheduler records no failure.
    """

    def __init__(self, path: Path, what: str, pid: int | None):
        self.path, self.what, self.pid = path, what, pid
        holder = f"pid {pid}" if pid else "pid unknown"
        super().__init__(f"another `fbaudit {what}` run holds {path} ({holder}); "
                         "this run exits without doing anything")
