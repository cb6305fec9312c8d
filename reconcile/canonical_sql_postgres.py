"""The canonical text of ``reconcile/canonical_text.py``, rendered by PostgreSQL.

The session runs with ``TimeZone=UTC`` (``runeshift.connections.pg_connect``), so
``extract(epoch ...)`` of a ``timestamp without time zone`` reads it as UTC.
"""

from __future__ import annotations

from collections.abc import Sequence

from psycopg import sql

from reconcile.canonical_text import Kind


def canonical(column: str, kind: Kind) -> sql.Composable:
    """SQL rendering one column's canonical text (NULL stays NULL)."""
    col = sql.Identifier(column)
    templates: dict[Kind, str] = {
        "int": "{}::text",
        "bool": "({}::int)::text",
        "numeric": "trim_scale({})::text",
        "float": "{}::text",
        "timestamp": "(extract(epoch FROM {}) * 1000000)::bigint::text",
        "date": "to_char({}, 'YYYY-MM-DD')",
        "text": "{}::text",
        "uuid": "{}::text",
        "json": "{}::jsonb::text",
        "array": "array_to_json({})::text",
        "bytea": "encode({}, 'hex')",
    }
    return sql.SQL(templates[kind]).format(col)


def _field(expr: sql.Composable) -> sql.Composable:
    return sql.SQL("coalesce(char_length({e})::text || ':' || {e}, '-')").format(e=expr)


def row_text(columns: Sequence[tuple[str, Kind]]) -> sql.Composable:
    """SQL for the canonical row text: every field joined by ','."""
    fields = [_field(canonical(name, kind)) for name, kind in columns]
    return sql.SQL(" || ',' || ").join(fields)


def row_digest(columns: Sequence[tuple[str, Kind]]) -> sql.Composable:
    """SQL for the row digest: the first 60 bits of md5(row text), as a bigint."""
    return sql.SQL("('x' || substr(md5({}), 1, 15))::bit(60)::bigint").format(row_text(columns))
