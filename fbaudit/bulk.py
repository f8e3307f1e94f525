"""Fast repeated execution of one prepared statement (a checkpoint restore's INSERT).

firebird-driver packs the parameters of every ``execute`` through a dozen
OO-API calls per parameter (about 45 µs each here: 4,500 rows/s for a row of
four columns, whatever the batching). The statement's input layout does not
change between rows, so ``Inserter`` reads it once and packs each row into
the message buffer itself (about 40,000 rows/s), then calls the same
``IStatement.execute`` the driver calls.

Over TCP each execute is also a network round trip, so with ``types`` given
rows are sent ``batch`` at a time, as one EXECUTE BLOCK holding one statement
per row (its parameters declared with those types).

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
import re
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


class _Fast:
    """One prepared statement whose input message fbaudit packs itself."""

    def __init__(self, cursor, sql: str):
        self.cur = cursor
        self.stmt = cursor.prepare(sql)
        self.meta = None
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
        self.fields = [(m.get_type(i), m.get_length(i), m.get_offset(i), m.get_null_offset(i), m.get_scale(i))
                       for i in range(n)]
        self.buf = create_string_buffer(m.get_message_length())
        self.istmt = self.stmt._istmt
        self.out = (self.stmt._out_meta, self.stmt._out_buffer)
        self.meta = m

    def pack(self, values: Sequence[Any], encoding: str) -> None:
        buf = self.buf
        memset(buf, 0, len(buf))
        if len(values) != len(self.fields):
            raise _NoFit
        for (t, ln, off, noff, scale), v in zip(self.fields, values):
            if v is None:
                buf[noff] = 1
                continue
            if t == SQLDataType.VARYING:
                if isinstance(v, str):
                    v = v.encode(encoding)
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
                buf[off:off + ln] = v.to_bytes(ln, "little", signed=True)
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

    def try_run(self, values: Sequence[Any], encoding: str) -> bool:
        """Pack and execute; False (nothing executed) when a value is for the driver."""
        try:
            self.pack(values, encoding)
        except (_NoFit, struct.error, OverflowError, ValueError):
            return False
        tra = self.cur._transaction
        if not tra.is_active():
            tra.begin()
        self.istmt.execute(tra._tra, self.meta, self.buf, *self.out)
        return True

    def close(self) -> None:
        if self.meta is not None:
            self.meta.release()
            self.meta = None
        self.stmt.free()


def _block_type(sql_type: str) -> str:
    """A column type as an EXECUTE BLOCK parameter type (BINARY/VARBINARY are 4.0+ words)."""
    m = re.fullmatch(r"(VAR)?BINARY\((\d+)\)", sql_type)
    if m:
        return f"{'VARCHAR' if m.group(1) else 'CHAR'}({m.group(2)}) CHARACTER SET OCTETS"
    return sql_type


class Inserter:
    """``Inserter(cursor, parts)``: ``run(row)`` executes the statement
    ``parts[0] ? parts[1] ? ... parts[n]`` with the n values of ``row``.

    The statement is given in parts, not as one text with ``?``, because a
    quoted identifier may itself hold a ``?``. With ``types`` (the SQL type of
    each value) rows are sent up to ``batch`` at a time; ``flush()`` sends the
    rest (``close()`` does too). An error of a batch is raised by the ``run``
    or ``flush`` that sent it.
    """

    MAX_MESSAGE = 60_000        # bytes of parameters per EXECUTE BLOCK (Firebird's limit is 64 KB)
    MAX_ROWS = 200              # statements per EXECUTE BLOCK (a PSQL module has at most 256 contexts)

    def __init__(self, cursor, parts: Sequence[str], *, types: Sequence[str] | None = None, batch: int = 100,
                 encoding: str = "utf-8"):
        self.cur = cursor
        self.parts = list(parts)
        self.encoding = encoding
        self.fast = 0
        self.slow = 0
        self.batches = 0
        self._variants: dict[tuple[int, ...], Any] = {}
        self._blocks: dict[int, _Fast] = {}
        self._pending: list[Sequence[Any]] = []
        self.stmt = cursor.prepare(self._sql(()))
        self._single: _Fast | None = None
        self._types = list(types) if types else None
        self._batch = 1
        try:
            self._setup_fast(batch)
        except Exception as exc:          # a driver without these internals: its own path
            log.debug("bulk: driver path for %s (%s)", self._sql(())[:60], exc)
            self._single = None
            self._batch = 1

    def _setup_fast(self, batch: int) -> None:
        single = _Fast(self.cur, self._sql(()))
        if single.meta is None:
            single.close()
            return
        self._single = single
        if self._types and batch > 1:
            n = len(self.parts) - 1
            per_row = max(1, len(single.buf))
            self._batch = max(1, min(batch, self.MAX_ROWS, self.MAX_MESSAGE // per_row, 1000 // max(n, 1)))

    def _sql(self, nulls: tuple[int, ...]) -> str:
        out = [self.parts[0]]
        for i, part in enumerate(self.parts[1:]):
            out += ["NULL" if i in nulls else "?", part]
        return "".join(out)

    def _block_sql(self, k: int) -> str:
        n = len(self.parts) - 1
        decl = ", ".join(f"P{r}_{i} {_block_type(self._types[i])} = ?" for r in range(k) for i in range(n))
        body = []
        for r in range(k):
            text = [self.parts[0]]
            for i, part in enumerate(self.parts[1:]):
                text += [f":P{r}_{i}", part]
            body.append("  " + "".join(text) + ";")
        return f"EXECUTE BLOCK ({decl})\nAS\nBEGIN\n" + "\n".join(body) + "\nEND"

    def run(self, row: Sequence[Any]) -> None:
        if self._batch > 1:
            self._pending.append(row)
            if len(self._pending) >= self._batch:
                self.flush()
            return
        self._run_one(row)

    def flush(self) -> None:
        """Send the rows waiting for a full batch."""
        rows, self._pending = self._pending, []
        if not rows:
            return
        if len(rows) > 1:
            block = self._blocks.get(len(rows))
            if block is None:
                block = self._blocks[len(rows)] = _Fast(self.cur, self._block_sql(len(rows)))
            if block.meta is not None and block.try_run([v for r in rows for v in r], self.encoding):
                self.fast += len(rows)
                self.batches += 1
                return
        for row in rows:                 # a value for the driver: these rows one by one
            self._run_one(row)

    def _run_one(self, row: Sequence[Any]) -> None:
        if self._single is not None and self._single.try_run(row, self.encoding):
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

    def close(self) -> None:
        """Send what is waiting, then free the statements."""
        try:
            self.flush()
        finally:
            for f in (self._single, *self._blocks.values()):
                if f is not None:
                    f.close()
            for stmt in (self.stmt, *self._variants.values()):
                stmt.free()
            self._single = None
            self._blocks.clear()
            self._variants.clear()
