"""fbaudit's exceptions: one root, a few kinds, each mapped to an exit code."""
from __future__ import annotations


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
