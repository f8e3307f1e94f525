"""Logging in the checkpoint guide's format, unbuffered, one tag per subsystem.

    2025-10-30 14:30:15 [INFO] fbaudit.capture: [CAPTURE] ...

Also the one place that makes text safe for a terminal or a log file (:func:`printable`): the log
formatter here and every human line the command line prints (fbaudit.cli) go through it, so a
table name or a logged value can neither start a line of its own nor move the cursor, clear the
screen or ring the bell. JSON output is never escaped: it holds the exact text.
"""
from __future__ import annotations

import logging
import re
import sys

FORMAT = "%(asctime)s [%(levelname)s] %(name)s: %(message)s"
DATEFMT = "%Y-%m-%d %H:%M:%S"

# What printable escapes: C0 controls (line feed and tab included), DEL, C1 controls (U+0085, the
# "next line", among them), and the Unicode line and paragraph separators.
_CONTROL = "\x00-\x1f\x7f-\x9f\u2028\u2029"
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}
_UNSAFE = re.compile(f"[{_CONTROL}]")
# exact=True: also a backslash that would read as the start of an escape: one followed by another
# backslash, by n r t x u, or by a control character (itself escaped).
_UNSAFE_EXACT = re.compile(f"[{_CONTROL}]|\\\\(?=[\\\\nrtxu{_CONTROL}])")


def _escape(m: re.Match) -> str:
    ch = m.group(0)
    if ch == "\\":
        return "\\\\"
    if ch in _NAMED:
        return _NAMED[ch]
    return f"\\x{ord(ch):02x}" if ord(ch) <= 0xFF else f"\\u{ord(ch):04x}"


def printable(text: str, *, exact: bool = False) -> str:
    """``text`` on one line, every control character shown as an escape, as Python's repr() shows
    it: a line feed as ``\\n``, carriage return ``\\r``, tab ``\\t``, others as ``\\x1b`` or
    ``\\u2028``. Text without control characters is returned unchanged, so text escaped already
    (a name in an error message, shown with repr()) is never escaped twice.

    Backslashes are left as they are, so in a name a backslash followed by n looks like an escaped
    line feed; ``exact`` (for logged values: history.format_value) tells them apart: a backslash
    that would read as an escape (before ``n r t x u``, another backslash or a control character)
    is doubled, so a line feed shows as ``\\n``, a backslash and n as ``\\\\n``, ``C:\\Program
    Files`` is unchanged, and the value can always be read back.
    """
    return (_UNSAFE_EXACT if exact else _UNSAFE).sub(_escape, text)


class LineFormatter(logging.Formatter):
    """The guide's format with the message made :func:`printable`: whatever a message's arguments
    hold (a table name with a line feed in it), one record is one line. A traceback, which has
    lines of its own, follows indented, so none of its lines can look like a record."""

    def format(self, record: logging.LogRecord) -> str:
        record.message = printable(record.getMessage())
        if self.usesTime():
            record.asctime = self.formatTime(record, self.datefmt)
        line = self.formatMessage(record)
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        extra = [record.exc_text] if record.exc_text else []
        if record.stack_info:
            extra.append(self.formatStack(record.stack_info))
        for text in extra:
            line += "".join("\n    " + printable(part) for part in text.split("\n"))
        return line


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
    handler.setFormatter(LineFormatter(FORMAT, DATEFMT))
    root.addHandler(handler)
    root.setLevel(level)
    root.propagate = False
