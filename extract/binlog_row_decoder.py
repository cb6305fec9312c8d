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
"""

from __future__ import annotations

import datetime as dt
import decimal
from collections.abc import Mapping, Sequence
from typing import Any

import pyarrow as pa
from pymysqlreplication import row_event

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

    def key(self, raw: RawRow) -> tuple[bytes | None, ...]:
        return tuple(raw[i] for i in self.key_index)

    def batch(self, rows: Sequence[RawRow]) -> pa.RecordBatch:
        """The raw rows as one Arrow batch, converted exactly as the snapshot reader does."""
        transposed = list(zip(*rows, strict=True)) if rows else [() for _ in self.columns]
        arrays = [column_to_arrow(c, transposed[i]) for i, c in enumerate(self.columns)]
        return pa.RecordBatch.from_arrays(arrays, names=list(self.names))
