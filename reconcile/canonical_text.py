"""One canonical text per value, so equal data compares equal on every side.

Reconciliation compares the source (read through the mapping, as Arrow) with
the target (PostgreSQL) and, for same-shape tables, MySQL with PostgreSQL. Each
side renders every compared value to the same text, the row digest is the md5
of those texts, and a chunk's checksum is the sum of its row digests; the SQL
renderings live in ``canonical_sql_postgres.py`` / ``canonical_sql_mysql.py``,
the Arrow rendering here. The rules (the *kind* of a column is decided by its
target type):

========== =========================================================
kind       canonical text
========== =========================================================
int        decimal digits (``-12``)
bool       ``1`` / ``0``
numeric    exact decimal without trailing fractional zeros (``19.9``)
timestamp  microseconds since the Unix epoch in UTC (``1615707000000000``)
date       ``YYYY-MM-DD``
text, uuid the text (uuids lowercase)
json       PostgreSQL's ``jsonb`` text (keys by length then bytes, ``", "``/``": "``)
array      ``array_to_json`` text (``[7,12]``, ``["f2p","p2p"]``)
bytea      lowercase hex
========== =========================================================

A field is ``<characters>:<text>`` and NULL is ``-``, so ``''`` and NULL differ
and no value can imitate a field boundary; a row is its fields joined by ``,``.
"""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any, Literal

import pyarrow as pa
import pyarrow.compute as pc

from runeshift.errors import ConfigError

Kind = Literal[
    "int", "bool", "numeric", "float", "timestamp", "date", "text", "uuid", "json", "array", "bytea"
]

NULL_FIELD = "-"
FIELD_SEPARATOR = ","
# Kinds whose canonical text never contains FIELD_SEPARATOR and is never NULL_FIELD alone:
# their fields are written bare. Every other kind's field carries its length in characters
# (``5:a,b:c``), so a comma inside a value cannot move a field boundary. Rendering a value
# once instead of twice (its length, then its text) took MariaDB's checksum of a million
# rows from about 4.6-5.1 s to 3.3-4.1 s.
BARE_KINDS: frozenset[str] = frozenset(
    {"int", "bool", "numeric", "float", "timestamp", "date", "uuid", "bytea"}
)

_PG_KINDS: dict[str, Kind] = {
    "smallint": "int",
    "integer": "int",
    "bigint": "int",
    "boolean": "bool",
    "numeric": "numeric",
    "real": "float",
    "double precision": "float",
    "timestamp with time zone": "timestamp",
    "timestamp without time zone": "timestamp",
    "date": "date",
    "text": "text",
    "character varying": "text",
    "character": "text",
    "uuid": "uuid",
    "jsonb": "json",
    "json": "json",
    "ARRAY": "array",
    "bytea": "bytea",
}


def kind_for_pg_type(data_type: str) -> Kind:
    """The canonical kind of a PostgreSQL column (``information_schema.columns.data_type``)."""
    kind = _PG_KINDS.get(data_type)
    if kind is None:
        raise ConfigError(
            f"reconciliation has no canonical form for PostgreSQL type '{data_type}'; "
            "add one to reconcile/canonical_text.py"
        )
    return kind


def _pg_json_string(text: str) -> str:
    """PostgreSQL's ``escape_json``: only quote, backslash and control characters are escaped."""
    out = ['"']
    for ch in text:
        if ch == '"':
            out.append('\\"')
        elif ch == "\\":
            out.append("\\\\")
        elif ch < " ":
            out.append(
                {"\b": "\\b", "\f": "\\f", "\n": "\\n", "\r": "\\r", "\t": "\\t"}.get(
                    ch, f"\\u{ord(ch):04x}"
                )
            )
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


def _pg_number(value: Decimal | int) -> str:
    if isinstance(value, int):
        return str(value)
    if value.is_zero():
        value = value.copy_abs()  # numeric has no negative zero: '-0.0' prints as '0.0'
    return format(value, "f")


def _jsonb_value(value: Any) -> str:
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, int | Decimal):
        return _pg_number(value)
    if isinstance(value, str):
        return _pg_json_string(value)
    if isinstance(value, list):
        return "[" + ", ".join(_jsonb_value(v) for v in value) + "]"
    assert isinstance(value, dict)
    # jsonb orders object keys by their length in bytes, then bytewise.
    keys = sorted(value, key=lambda k: (len(k.encode()), k.encode()))
    return "{" + ", ".join(f"{_pg_json_string(k)}: {_jsonb_value(value[k])}" for k in keys) + "}"


def jsonb_text(text: str) -> str:
    """The text PostgreSQL prints for ``text::jsonb`` (duplicate keys: the last wins)."""
    parsed = json.loads(text, parse_float=Decimal, object_pairs_hook=dict)
    return _jsonb_value(parsed)


def _array_json(values: list[Any] | None) -> str | None:
    """``array_to_json`` text of a one-dimensional array."""
    if values is None:
        return None
    parts = []
    for v in values:
        if v is None:
            parts.append("null")
        elif isinstance(v, bool):
            parts.append("true" if v else "false")
        elif isinstance(v, int):
            parts.append(str(v))
        else:
            parts.append(_pg_json_string(str(v)))
    return "[" + ",".join(parts) + "]"


def _plain(values: pa.Array) -> pa.Array:
    return values.combine_chunks() if isinstance(values, pa.ChunkedArray) else values


def canonical_array(values: pa.Array, kind: Kind) -> pa.Array:
    """Render an Arrow column to canonical text (nulls stay null)."""
    values = _plain(values)
    t = values.type
    if pa.types.is_null(t):
        return pa.nulls(len(values), pa.string())
    if kind == "timestamp":
        if pa.types.is_timestamp(t):
            micros = pc.cast(pc.cast(values, pa.timestamp("us", tz=t.tz)), pa.int64())
            return pc.cast(micros, pa.string())
        raise ConfigError(f"a timestamp column arrived as Arrow {t}; expected a timestamp")
    if kind == "bool":
        if pa.types.is_boolean(t):
            return pc.cast(pc.cast(values, pa.int8()), pa.string())
        return pc.cast(pc.cast(pc.not_equal(values, 0), pa.int8()), pa.string())
    if kind == "numeric":
        text = pc.cast(values, pa.string())
        stripped = pc.replace_substring_regex(text, r"(\.\d*?)0+$", r"\1")
        return pc.replace_substring_regex(stripped, r"\.$", "")
    if kind == "uuid":
        return pc.utf8_lower(pc.cast(values, pa.string()))
    if kind == "date":
        return pc.cast(values, pa.string())
    if kind == "json":
        texts = pc.cast(values, pa.string()).to_pylist()
        return pa.array([None if s is None else jsonb_text(s) for s in texts], pa.string())
    if kind == "array":
        if pa.types.is_list(t) or pa.types.is_large_list(t):
            if pa.types.is_integer(t.value_type):
                items = pc.fill_null(pc.cast(values.flatten(), pa.string()), "null")
                rebuilt = pa.ListArray.from_arrays(
                    pc.subtract(values.offsets, values.offsets[0]), items, mask=values.is_null()
                )
                joined = pc.binary_join(rebuilt, ",")
                return pc.binary_join_element_wise("[", joined, "]", "")
            return pa.array([_array_json(v) for v in values.to_pylist()], pa.string())
        raise ConfigError(f"an array column arrived as Arrow {t}; expected a list")
    if kind == "bytea":
        raw = pc.cast(values, pa.binary()).to_pylist()
        return pa.array([None if b is None else b.hex() for b in raw], pa.string())
    if kind == "float":
        return pa.array(
            [None if v is None else _pg_float(float(v)) for v in values.to_pylist()], pa.string()
        )
    if pa.types.is_binary(t) or pa.types.is_large_binary(t):
        return pc.cast(values, pa.string())
    return pc.cast(values, pa.string())


def _pg_float(value: float) -> str:
    """float8 output (shortest round trip, as PostgreSQL 12+ prints it)."""
    if value != value:
        return "NaN"
    if value in (float("inf"), float("-inf")):
        return "Infinity" if value > 0 else "-Infinity"
    text = repr(value)
    return text[:-2] if text.endswith(".0") else text


def encode_fields(canonical: pa.Array, kind: Kind) -> pa.Array:
    """``<characters>:<text>`` per value (the text alone for :data:`BARE_KINDS`), ``-`` for NULL."""
    if kind in BARE_KINDS:
        return pc.fill_null(canonical, NULL_FIELD)
    length = pc.cast(pc.utf8_length(canonical), pa.string())
    field = pc.binary_join_element_wise(length, canonical, ":")
    return pc.fill_null(field, NULL_FIELD)


def row_texts(canonical_columns: list[pa.Array], kinds: list[Kind]) -> pa.Array:
    """The canonical row text: every field, joined by ``,``."""
    fields = [encode_fields(c, k) for c, k in zip(canonical_columns, kinds, strict=True)]
    if len(fields) == 1:
        return fields[0]
    return pc.binary_join_element_wise(*fields, FIELD_SEPARATOR)


def display_value(canonical: str | None, kind: Kind) -> str | None:
    """A readable form of a canonical value for reports (timestamps back to ISO UTC)."""
    if canonical is None:
        return None
    if kind == "timestamp":
        from datetime import UTC, datetime, timedelta

        try:
            moment = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=int(canonical))
        except (ValueError, OverflowError):
            return canonical
        return moment.isoformat().replace("+00:00", "Z")
    if kind == "bool":
        return {"1": "true", "0": "false"}.get(canonical, canonical)
    return canonical
