"""Logging in the checkpoint guide's format, unbuffered, one tag per subsystem.

    2025-10-30 14:30:15 [INFO] fbaudit.capture: [CAPTURE] ...
"""
from __future__ import annotations

import logging
import sys

FORMAT = "%(asctime)s [%(levelname)s] %(name)s: %(message)s"
DATEFMT = "%Y-%m-%d %H:%M:%S"


class _Flushing(logging.StreamHandler):
    def emit(self, record: logging.LogRecord) -> None:
        super().emit(record)
        self.flush()


def setup(level: int = logging.INFO) -> None:
    root = logging.getLogger("fbaudit")
    mine = [h for h in root.handlers if isinstance(h, _Flushing)]
    if mine:
        for h in mine:
            if h.stream is not sys.stderr:      # a new sys.stderr (a second CLI run in one process)
                h.setStream(sys.stderr)
        root.setLevel(level)
        return
    handler = _Flushing(sys.stderr)
    handler.setFormatter(logging.Formatter(FORMAT, DATEFMT))
    root.addHandler(handler)
    root.setLevel(level)
    root.propagate = False
