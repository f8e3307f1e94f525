"""Fast repeated execution of one prepared statement (a checkpoint restore's INSERT).

firebird-driver packs the parameters of every ``execute`` through a dozen
OO-API calls per parameter (about 45 µs each here: 4,500 rows/s for a row of
four columns, whatever the batching). The statement's input layout does not
change between rows, so ``Inserter`` reads it once and packs each row into
the message buffer itself (about 40,000 rows/s), then calls the same
``IStatement.execute`` the driver calls.

This uses the driver's statement internals (``_in_meta``, ``_istmt``,
``_transaction._tra``). Only plain types are packed here: integers (scaled or
not), CHAR/VARCHAR, DATE, TIME, TIMESTAMP, BOOLEAN, FLOAT, DOUBLE. A statement
with any other parameter type (BLOB, INT128, DECFLOAT, time zones), a driver
without those internals, or a value that does not fit (too long, out of
range, an unexpected Python type) goes through ``cursor.execute`` — the
driver's own path and its own error messages — so the result is always the
driver's.

On the driver's path a NULL is written as the literal ``NULL`` in a variant
of the statement (one per pattern of NULLs, prepared once): firebird-driver
2.x sends a Python ``None`` for a CHAR/VARCHAR parameter as the 4-character
text "None" with the NULL flag set, which the embedded engine refuses for a
column shorter than 4 characters ("string right truncation, expected length 1,
actual 4"), measured on 3.0, 4.0 and 5.0 embedded (tests/test_bulk.py; the
3.0 server over TCP accepts it).
"""
from __future__ import annotations

import datetime as dt
import logging
import struct
from ctypes import create_string_buffer, memset
from decimal import Decimal
from typing import Any, Sequence

from firebird.driver.types import SQLDataType

log = logging.getLogger("fbaudit.bulk")

_EPOCH = dt.date(1858, 11, 17).toordinal()        # Firebird's day 0
_INT = (SQLDataType.SHORT, SQLDataType.LONG, SQLDataType.INT64)
_PLAIN = {*_INT, SQLDataType.TEXT, SQLDataType.VARYING, SQLDataType.DATE, SQLDataType.TIME, SQLDataType.TIMESTAMP,
          SQLDataType.BOOLEAN, SQLDataType.FLOAT, SQLDataType.DOUBLE}


class _NoFit(Exception):
    """This value is for the driver to pack (and to report, if it is wrong)."""


def _time(v: dt.time) -> int:
    if v.tzinfo is not None:
        raise _NoFit
    return ((v.hour * 60 + v.minute) * 60 + v.second) * 10000 + v.microsecond // 100


class Inserter:
    """``Inserter(cursor, parts)``: ``run(row)`` executes the statement
    ``parts[0] ? parts[1] ? ... parts[n]`` with the n values of ``row``.

    The statement is given in parts, not as one text with ``?``, because a
    quoted identifier may itself hold a ``?``.
    """

    def __init__(self, cursor, parts: Sequence[str], *, encoding: str = "utf-8"):
        self.cur = cursor
        self.parts = list(parts)
        self.stmt = cursor.prepare(self._sql(()))
        self.encoding = encoding
        self.fast = 0
        self.slow = 0
        self._meta = None
        self._variants: dict[tuple[int, ...], Any] = {}
        try:
            self._setup()
        except Exception as exc:          # a driver without these internals: its own path
            log.debug("bulk: driver path for %s (%s)", self._sql(())[:60], exc)
            self._release()

    def _setup(self) -> None:
        meta = self.stmt._in_meta
        n = meta.get_count() if meta is not None else 0
        types = [meta.get_type(i) for i in range(n)]
        if not n or any(t not in _PLAIN for t in types):
            return
        # CHAR parameters as VARCHAR of the same length: Firebird pads as for any CHAR value.
        with meta.get_builder() as b:
            for i, t in enumerate(types):
                if t == SQLDataType.TEXT:
                    b.set_type(i, SQLDataType.VARYING)
            m = b.get_metadata()
        self._meta = m
        self._fields = [(m.get_type(i), m.get_length(i), m.get_offset(i), m.get_null_offset(i), m.get_scale(i))
                        for i in range(n)]
        self._buf = create_string_buffer(m.get_message_length())
        self._istmt = self.stmt._istmt
        self._out = (self.stmt._out_meta, self.stmt._out_buffer)

    def _pack(self, row: Sequence[Any]) -> None:
        buf = self._buf
        memset(buf, 0, len(buf))
        if len(row) != len(self._fields):
            raise _NoFit
        for (t, ln, off, noff, scale), v in zip(self._fields, row):
            if v is None:
                buf[noff] = 1
                continue
            if t == SQLDataType.VARYING:
                if isinstance(v, str):
                    v = v.encode(self.encoding)
                elif not isinstance(v, bytes):
                    raise _NoFit
                if len(v) > ln:
                    raise _NoFit
                buf[off:off + 2 + len(v)] = len(v).to_bytes(2, "little") + v
            elif t in _INT:
                if isinstance(v, bool):
                    raise _NoFit
                if scale:
                    if not isinstance(v, (Decimal, int)):
                        raise _NoFit
                    scaled = Decimal(v).scaleb(-scale)
                    if scaled != scaled.to_integral_value():
                        raise _NoFit              # more decimals than the column: the driver rounds
                    v = int(scaled)
                elif not isinstance(v, int):
                    raise _NoFit
                try:
                    buf[off:off + ln] = v.to_bytes(ln, "little", signed=True)
                except OverflowError:
                    raise _NoFit from None
            elif t == SQLDataType.DATE:
                if type(v) is not dt.date:
                    raise _NoFit
                buf[off:off + 4] = struct.pack("<i", v.toordinal() - _EPOCH)
            elif t == SQLDataType.TIME:
                if not isinstance(v, dt.time):
                    raise _NoFit
                buf[off:off + 4] = struct.pack("<I", _time(v))
            elif t == SQLDataType.TIMESTAMP:
                if not isinstance(v, dt.datetime) or v.tzinfo is not None:
                    raise _NoFit
                buf[off:off + 8] = struct.pack("<iI", v.toordinal() - _EPOCH, _time(v.time()))
            elif t == SQLDataType.BOOLEAN:
                if not isinstance(v, bool):
                    raise _NoFit
                buf[off] = 1 if v else 0
            elif t == SQLDataType.FLOAT:
                if not isinstance(v, (float, int)) or isinstance(v, bool):
                    raise _NoFit
                buf[off:off + 4] = struct.pack("<f", v)
            elif t == SQLDataType.DOUBLE:
                if not isinstance(v, (float, int)) or isinstance(v, bool):
                    raise _NoFit
                buf[off:off + 8] = struct.pack("<d", v)
            else:
                raise _NoFit

    def _sql(self, nulls: tuple[int, ...]) -> str:
        out = [self.parts[0]]
        for i, part in enumerate(self.parts[1:]):
            out += ["NULL" if i in nulls else "?", part]
        return "".join(out)

    def run(self, row: Sequence[Any]) -> None:
        if self._meta is not None:
            try:
                self._pack(row)
            except (_NoFit, struct.error, OverflowError, ValueError):
                pass
            else:
                tra = self.cur._transaction
                if not tra.is_active():
                    tra.begin()
                self._istmt.execute(tra._tra, self._meta, self._buf, *self._out)
                self.fast += 1
                return
        nulls = tuple(i for i, v in enumerate(row) if v is None)
        if not nulls:
            self.cur.execute(self.stmt, row)
        else:
            stmt = self._variants.get(nulls)
            if stmt is None:
                stmt = self._variants[nulls] = self.cur.prepare(self._sql(nulls))
            values = [v for v in row if v is not None]
            if values:
                self.cur.execute(stmt, values)
            else:
                self.cur.execute(stmt)
        self.slow += 1

    def _release(self) -> None:
        if self._meta is not None:
            self._meta.release()
            self._meta = None

    def close(self) -> None:
        self._release()
        for stmt in (self.stmt, *self._variants.values()):
            stmt.free()
        self._variants.clear()
