"""A progress bar for long work (restore, baseline): on a terminal only, below the log lines."""
from __future__ import annotations

import logging
import sys
import time


class Progress:
    """A progress bar on the last line of a terminal, below the log lines (only on a TTY)."""

    def __init__(self, total: int, stream=None, logger: logging.Logger | None = None):
        """``logger``: show the bar only when it logs INFO (a restore's, which the CLI sets so); None: always."""
        self.stream = stream or sys.stderr
        self.total = max(total, 1)
        self.done = 0
        self.on = self.stream.isatty() and (logger is None or logger.isEnabledFor(logging.INFO))
        self.handlers = [h for h in logging.getLogger("fbaudit").handlers
                         if getattr(h, "stream", None) is self.stream]
        self._last = 0.0

    def __enter__(self):
        if self.on:
            for h in self.handlers:
                h.addFilter(self._clear)
        return self

    def _clear(self, record) -> bool:
        self.stream.write("\r\033[K")
        return True

    def advance(self, n: int = 1) -> None:
        self.done += n
        now = time.monotonic()
        if self.on and (now - self._last > 0.1 or self.done >= self.total):
            self._last = now
            width = 40
            filled = int(width * self.done / self.total)
            self.stream.write(f"\r\033[K[{'#' * filled}{'.' * (width - filled)}] "
                              f"{self.done}/{self.total} rows ({100 * self.done // self.total}%)")
            self.stream.flush()

    def __exit__(self, *exc):
        if self.on:
            self.stream.write("\r\033[K")
            self.stream.flush()
            for h in self.handlers:
                h.removeFilter(self._clear)
