"""An overlap lock for unattended runs (`fbaudit transfer --lock FILE`, `rotate --lock FILE`).

A scheduler that starts `fbaudit transfer` every minute must not start a
second one while the first is still busy (a large backlog, a slow log
server), and a run started by hand must not overlap a scheduled one either.
``hold(path, what)`` takes an exclusive lock on ``path`` without waiting and
raises ``JobRunning`` when another process holds it.

The lock is the operating system's, through the ``filelock`` library:
``flock()`` on POSIX, ``LockFileEx`` on Windows. The kernel drops it when the
holding process ends in any way, ``kill -9`` and power loss included, so a
crashed run never leaves a stale lock behind; the lock file itself may stay
and means nothing by itself. The holder writes its pid into a sidecar file
``<path>.pid`` (the lock file cannot carry it: Windows locks its first byte
against reading, and filelock 3.x truncates it on every attempt), so the
message can name the process.
"""
from __future__ import annotations

import logging
import os
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Iterator

from filelock import FileLock, Timeout

from .errors import FbauditError, JobRunning

log = logging.getLogger("fbaudit.schedule")


def pid_file(path: Path) -> Path:
    """The sidecar that names the holder: ``<lock file>.pid``."""
    return path.with_name(path.name + ".pid")


def holder_pid(path: Path) -> int | None:
    """The pid the current holder wrote, if it is readable (None: unknown)."""
    try:
        text = pid_file(Path(path)).read_text(encoding="ascii", errors="replace")
        return int(text.split()[0])
    except (OSError, ValueError, IndexError):
        return None


def _write_pid(path: Path, what: str) -> None:
    side = pid_file(path)
    tmp = side.with_name(f"{side.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text(f"{os.getpid()} {what} {datetime.now():%Y-%m-%dT%H:%M:%S}\n", encoding="ascii")
        os.replace(tmp, side)
    except OSError as exc:        # informational only: the lock itself is what counts
        log.debug("[SCHEDULE] could not write %s: %s", side, exc)
        try:
            tmp.unlink()
        except OSError:
            pass


def _clear_pid(path: Path) -> None:
    if holder_pid(path) == os.getpid():
        try:
            pid_file(path).unlink()
        except OSError:
            pass


@contextmanager
def hold(path: Path, what: str) -> Iterator[Path]:
    """Hold the lock ``path`` for the block; raise ``JobRunning`` at once if another process has it.

    ``what`` names the job in messages (``transfer``, ``rotate``). The lock is
    released when the block ends, also by an exception or ``sys.exit``, and by
    the operating system when the process dies.
    """
    path = Path(path).absolute()
    lock = FileLock(str(path), timeout=0)
    try:
        lock.acquire(timeout=0)
    except Timeout:
        raise JobRunning(path, what, holder_pid(path)) from None
    except OSError as exc:
        raise FbauditError(f"cannot take the lock {path}: {exc.strerror or exc} "
                           "(does the folder exist and may this user write to it?)") from None
    try:
        _write_pid(path, what)
        yield path
    finally:
        _clear_pid(path)
        lock.release()
