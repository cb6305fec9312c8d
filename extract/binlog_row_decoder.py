"""Turn python-mysql-replication row images back into the snapshot reader's raw form.

Decision 0001 says every reader hands the mapping engine the same raw Arrow values.
The snapshot reader gets the server's text-protocol bytes and converts them per column
with :func:`extract.mysql_source_schema.column_to_arrow`. This module converts each
binlog value back into exactly those bytes (``19.99`` for a DECIMAL, ``2021-03-14
02:30:00`` for a DATETIME, the stored bytes of a latin1 VARCHAR, ``a,b`` for a SET) and
then calls the same ``column_to_arrow``, so backfill and catch-up cannot disagree about a
value: the last step is literally shared.

What python-mysql-replication loses, and how it is recovered:

- Strings are decoded with the column charset, and pymysql maps ``latin1`` to Python's
  ``cp1252``, which *fails* on bytes like 0x81 that mojibake is full of. The library keeps
  the raw bytes when the codec lookup raises ``LookupError``; :func:`install_raw_strings`
  makes it decode every string as ISO-8859-1 (a lossless byte <-> code point map), and
  :func:`_text_bytes` encodes it back, giving the stored bytes for every charset.
- Zero dates (``0000-00-00 00:00:00``) come back as ``None``, like NULL; the event's
  ``none_sources`` tells them apart (``out of datetime2 range`` vs ``null``).
- A SET comes back as a Python ``set`` (unordered, and ``None`` when empty); it is rebuilt
  in definition order, ``''`` when empty, as MySQL prints it.
- TIMESTAMP comes back as a naive UTC ``datetime`` (the snapshot reads it with
  ``time_zone='+00:00'``, so the text is the same); the zero TIMESTAMP is epoch 0.

That path builds a dict of Python objects per row image and then turns every value back into
bytes: most of the catch-up's CPU. :class:`RowImageCodec` is the fast path for the column
types the legacy tables use (integers, strings and blobs, DECIMAL, DATE, DATETIME,
TIMESTAMP, ENUM, SET): it reads the event body once and cuts the text bytes straight out of
it, with the same results as the slow path above (the decoder test compares both with the
snapshot). A table with any other type (FLOAT, TIME, JSON, BIT, ...) or a row image that is
not FULL keeps the library's path.
"""

from __future__ import annotations

import datetime as dt
import decimal
import operator
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import pyarrow as pa
from pymysqlreplication import row_event
from pymysqlreplication.constants import FIELD_TYPE

from extract.mysql_source_schema import SourceColumn, SourceTable, column_to_arrow

ZERO_DATETIME = b"0000-00-00 00:00:00"
ZERO_DATE = b"0000-00-00"
_ZERO_SOURCES = ("out of datetime2 range", "out of datetime range", "out of date range")
_EMPTY_SET = "empty set"

RawRow = tuple[bytes | None, ...]


def _latin1(_name: str) -> str:
    return "latin-1"


def install_raw_strings() -> None:
    """Make python-mysql-replication decode every string column losslessly (see module doc).

    Idempotent; the binlog reader calls it before opening a stream.
    """
    row_event.RowsEvent.charset_to_encoding = staticmethod(_latin1)


def _text_bytes(value: str | bytes) -> bytes:
    return value if isinstance(value, bytes) else value.encode("latin-1")


def raw_value(column: SourceColumn, value: Any, none_source: str | None) -> bytes | None:
    """One binlog value as the text-protocol bytes the snapshot reader would have read."""
    if value is None:
        if none_source in _ZERO_SOURCES:
            return ZERO_DATE if column.data_type == "date" else ZERO_DATETIME
        if none_source == _EMPTY_SET:
            return b""
        return None
    if isinstance(value, bool):  # before int: bool is an int
        return b"1" if value else b"0"
    if isinstance(value, int):
        return str(value).encode()
    if isinstance(value, str | bytes):
        return _text_bytes(value)
    if isinstance(value, decimal.Decimal):
        return format(value, "f").encode()
    if isinstance(value, dt.datetime):
        if column.data_type == "timestamp" and value == dt.datetime(1970, 1, 1):
            return ZERO_DATETIME
        text = value.strftime("%Y-%m-%d %H:%M:%S")
        if value.microsecond:
            text += f".{value.microsecond:06d}"
        return text.encode()
    if isinstance(value, dt.date):
        return value.isoformat().encode()
    if isinstance(value, set):
        return b""  # replaced by the caller, which knows the SET's definition order
    if isinstance(value, float):
        return repr(value).encode()
    if isinstance(value, dt.timedelta):
        return _time_text(value).encode()
    return str(value).encode()


def _time_text(value: dt.timedelta) -> str:
    seconds = int(value.total_seconds())
    sign = "-" if seconds < 0 else ""
    seconds = abs(seconds)
    return f"{sign}{seconds // 3600:02d}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


def set_members(column_type: str) -> tuple[str, ...]:
    """``set('f2p','p2p')`` -> ('f2p', 'p2p'), in definition order."""
    inner = column_type[column_type.index("(") + 1 : column_type.rindex(")")]
    return tuple(part.strip().strip("'").replace("''", "'") for part in inner.split("','"))


class RowDecoder:
    """Decodes row images of one source table into raw tuples and Arrow batches.

    ``columns`` fixes the order of values in every raw tuple (the table's key first, then
    whatever the mappings read), so a batch built from binlog rows has the same schema as
    the snapshot reader's chunk of the same columns.
    """

    def __init__(self, table: SourceTable, columns: Sequence[str]) -> None:
        self.table = table
        self.columns = tuple(table.column(c) for c in columns)
        self.names = tuple(c.name for c in self.columns)
        self.key_index = tuple(self.names.index(k) for k in table.primary_key)
        self._sets = {
            c.name: set_members(c.column_type) for c in self.columns if c.data_type == "set"
        }
        self._codecs: dict[int, tuple[list[Any], RowImageCodec | None]] = {}
        # key() runs twice per row change in the follower: a C itemgetter, not a generator
        self._key: Callable[[RawRow], tuple[bytes | None, ...]]
        if len(self.key_index) == 1:
            only = self.key_index[0]
            self._key = lambda raw: (raw[only],)
        elif self.key_index:
            self._key = operator.itemgetter(*self.key_index)
        else:
            self._key = lambda _raw: ()

    def raw(self, values: Mapping[str, Any], none_sources: Mapping[str, str]) -> RawRow:
        out: list[bytes | None] = []
        for column in self.columns:
            value = values[column.name]
            if isinstance(value, set):
                order = self._sets[column.name]
                out.append(",".join(m for m in order if m in value).encode())
                continue
            out.append(raw_value(column, value, none_sources.get(column.name)))
        return tuple(out)

    def codec(self, event: Any) -> RowImageCodec | None:
        """The fast codec for this event's table map, or None when the library must decode."""
        columns = event.columns  # one list per table map, replaced when the map changes
        cached = self._codecs.get(event.table_id)
        if cached is not None and cached[0] is columns:
            return cached[1]
        codec = RowImageCodec.build(self, columns)
        self._codecs[event.table_id] = (columns, codec)
        return codec

    def key(self, raw: RawRow) -> tuple[bytes | None, ...]:
        return self._key(raw)

    def batch(self, rows: Sequence[RawRow]) -> pa.RecordBatch:
        """The raw rows as one Arrow batch, converted exactly as the snapshot reader does."""
        transposed = list(zip(*rows, strict=True)) if rows else [() for _ in self.columns]
        arrays = [column_to_arrow(c, transposed[i]) for i, c in enumerate(self.columns)]
        return pa.RecordBatch.from_arrays(arrays, names=list(self.names))


# Column kinds of the fast codec (see RowImageCodec).
_INT, _STR, _DECIMAL, _DATETIME2, _TIMESTAMP2, _DATE, _ENUM, _SET = range(8)
_INT_SIZES = {
    FIELD_TYPE.TINY: 1,
    FIELD_TYPE.SHORT: 2,
    FIELD_TYPE.INT24: 3,
    FIELD_TYPE.LONG: 4,
    FIELD_TYPE.LONGLONG: 8,
}
_SetMembers = tuple[tuple[str, ...], tuple[str, ...], dict[int, bytes]]
_DECIMAL_BYTES = (0, 1, 1, 2, 2, 3, 3, 4, 4, 4)
_MONTH_DAYS = (0, 31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)


def _fsp_bytes(fsp: int) -> int:
    return (fsp + 1) // 2


def _fraction(data: bytes, fsp: int) -> int:
    """Microseconds of a DATETIME2/TIMESTAMP2 fractional part, as the library computes them."""
    value = int.from_bytes(data, "big", signed=True)
    if fsp % 2:
        value = int(value / 10)
    return int(value * 10 ** (6 - fsp))


def _datetime2_text(data: bytes, fsp: int) -> bytes:
    packed = int.from_bytes(data[:5], "big")
    year_month = (packed >> 22) & 0x1FFFF
    year, month = divmod(year_month, 13)
    day = (packed >> 17) & 31
    hour = (packed >> 12) & 31
    minute = (packed >> 6) & 63
    second = packed & 63
    if not (
        year >= 1
        and month >= 1
        and 1 <= day <= _MONTH_DAYS[month]
        and (month != 2 or day < 29 or _leap(year))
        and hour < 24
        and minute < 60
        and second < 60
    ):
        return ZERO_DATETIME  # the library's "out of datetime2 range" (zero or invalid date)
    text = b"%04d-%02d-%02d %02d:%02d:%02d" % (year, month, day, hour, minute, second)
    if fsp:
        micro = _fraction(data[5:], fsp)
        if micro:
            text += b".%06d" % micro
    return text


def _leap(year: int) -> bool:
    return year % 4 == 0 and (year % 100 != 0 or year % 400 == 0)


def _timestamp2_text(data: bytes, fsp: int) -> bytes:
    seconds = int.from_bytes(data[:4], "big", signed=True)
    micro = _fraction(data[4:], fsp) if fsp else 0
    if seconds == 0 and micro == 0:
        return ZERO_DATETIME
    text = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(seconds)).encode()
    return text + b".%06d" % micro if micro else text


def _date_text(data: bytes) -> bytes:
    packed = int.from_bytes(data, "little")
    year, month, day = (packed >> 9) & 0x7FFF, (packed >> 5) & 15, packed & 31
    if not (year and month and day):
        return ZERO_DATE
    return b"%04d-%02d-%02d" % (year, month, day)


def _decimal_text(data: bytes, precision: int, decimals: int) -> bytes:
    """MySQL's packed DECIMAL as ``format(Decimal, 'f')`` of the library's value."""
    integral = precision - decimals
    whole_int, part_int = divmod(integral, 9)
    whole_frac, part_frac = divmod(decimals, 9)
    negative = not data[0] & 0x80
    mask = -1 if negative else 0
    buf = bytes([data[0] ^ 0x80]) + data[1:]
    pos = 0
    int_value = 0
    size = _DECIMAL_BYTES[part_int]
    if size:
        int_value = int.from_bytes(buf[:size], "big", signed=True) ^ mask
        pos = size
    for _ in range(whole_int):
        int_value = int_value * 1_000_000_000 + (
            int.from_bytes(buf[pos : pos + 4], "big", signed=True) ^ mask
        )
        pos += 4
    frac_value = 0
    for _ in range(whole_frac):
        frac_value = frac_value * 1_000_000_000 + (
            int.from_bytes(buf[pos : pos + 4], "big", signed=True) ^ mask
        )
        pos += 4
    size = _DECIMAL_BYTES[part_frac]
    if size:
        frac_value = frac_value * 10**part_frac + (
            int.from_bytes(buf[pos : pos + size], "big", signed=True) ^ mask
        )
    text = b"-%d" % int_value if negative else b"%d" % int_value
    return text + b".%0*d" % (decimals, frac_value) if decimals else text


def _decimal_size(precision: int, decimals: int) -> int:
    whole_int, part_int = divmod(precision - decimals, 9)
    whole_frac, part_frac = divmod(decimals, 9)
    return _DECIMAL_BYTES[part_int] + 4 * (whole_int + whole_frac) + _DECIMAL_BYTES[part_frac]


class RowImageCodec:
    """Row images of one table map cut straight into raw tuples (see module doc).

    Built once per table map from the library's column metadata: per binlog column its
    kind, its size or length prefix, and where its value goes in the raw tuple (-1 when
    no mapping reads it, so it is skipped without being converted).
    """

    def __init__(self, plan: list[tuple[int, int, int, Any]], width: int) -> None:
        self.plan = plan
        self.width = width
        self.null_bytes = (len(plan) + 7) // 8

    @classmethod
    def build(cls, decoder: RowDecoder, columns: Sequence[Any]) -> RowImageCodec | None:
        slot = {name: i for i, name in enumerate(decoder.names)}
        plan: list[tuple[int, int, int, Any]] = []
        for column in columns:
            name = column.name
            if name is None:
                return None  # no column names in the table map (binlog_row_metadata != FULL)
            out = slot.pop(name, -1)
            kind_type = column.type
            if kind_type in _INT_SIZES:
                plan.append((_INT, _INT_SIZES[kind_type], out, not column.unsigned))
            elif kind_type in (FIELD_TYPE.VARCHAR, FIELD_TYPE.STRING):
                plan.append((_STR, 2 if column.max_length > 255 else 1, out, None))
            elif kind_type == FIELD_TYPE.BLOB:
                plan.append((_STR, column.length_size, out, None))
            elif kind_type == FIELD_TYPE.NEWDECIMAL:
                size = _decimal_size(column.precision, column.decimals)
                plan.append((_DECIMAL, size, out, (column.precision, column.decimals)))
            elif kind_type == FIELD_TYPE.DATETIME2:
                plan.append((_DATETIME2, 5 + _fsp_bytes(column.fsp), out, column.fsp))
            elif kind_type == FIELD_TYPE.TIMESTAMP2:
                plan.append((_TIMESTAMP2, 4 + _fsp_bytes(column.fsp), out, column.fsp))
            elif kind_type == FIELD_TYPE.DATE:
                plan.append((_DATE, 3, out, None))
            elif kind_type == FIELD_TYPE.ENUM and column.enum_values:
                names = [_text_bytes(v) for v in column.enum_values]
                plan.append((_ENUM, column.size, out, names))
            elif kind_type == FIELD_TYPE.SET and column.set_values:
                order = decoder._sets.get(name, ())
                members: _SetMembers = (tuple(column.set_values), order, {})
                plan.append((_SET, column.size, out, members))
            else:
                return None
        if slot:
            return None  # a column the decoder wants is not in the table map
        return cls(plan, len(decoder.names))

    def images(self, body: bytes, per_row: int) -> list[RawRow]:
        """Every row image in ``body`` (FULL images, ``per_row`` of them per row change)."""
        out: list[RawRow] = []
        plan = self.plan
        null_bytes = self.null_bytes
        width = self.width
        end = len(body)
        pos = 0
        from_bytes = int.from_bytes
        while pos < end:
            nulls = from_bytes(body[pos : pos + null_bytes], "little")
            pos += null_bytes
            row: list[bytes | None] = [None] * width
            bit = 1
            for kind, size, slot, extra in plan:
                if nulls & bit:
                    bit <<= 1
                    continue
                bit <<= 1
                if kind == _STR:
                    length = from_bytes(body[pos : pos + size], "little")
                    pos += size
                    if slot >= 0:
                        row[slot] = body[pos : pos + length]
                    pos += length
                    continue
                if slot >= 0:
                    data = body[pos : pos + size]
                    if kind == _INT:
                        row[slot] = b"%d" % from_bytes(data, "little", signed=extra)
                    elif kind == _DATETIME2:
                        row[slot] = _datetime2_text(data, extra)
                    elif kind == _DECIMAL:
                        row[slot] = _decimal_text(data, *extra)
                    elif kind == _TIMESTAMP2:
                        row[slot] = _timestamp2_text(data, extra)
                    elif kind == _DATE:
                        row[slot] = _date_text(data)
                    elif kind == _ENUM:
                        row[slot] = extra[from_bytes(data, "little")]
                    else:
                        row[slot] = _set_text(extra, from_bytes(data, "little"))
                pos += size
            out.append(tuple(row))
        if pos != end or len(out) % per_row:
            raise ValueError(f"row images do not fill the event body ({pos} of {end} bytes)")
        return out


def _set_text(members: _SetMembers, mask: int) -> bytes:
    values, order, cache = members
    text = cache.get(mask)
    if text is None:
        chosen = {v for i, v in enumerate(values) if mask & (1 << i)}
        text = ",".join(m for m in order if m in chosen).encode()
        cache[mask] = text
    return text
