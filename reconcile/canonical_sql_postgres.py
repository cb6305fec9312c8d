"""The canonical text of ``reconcile/canonical_text.py``, rendered by PostgreSQL.

The session runs with ``TimeZone=UTC`` (``runeshift.connections.pg_connect``), so
``extract(epoch ...)`` of a ``timestamp without time zone`` reads it as UTC.
"""

from __future__ import annotations

from collections.abc import Sequence

from psycopg import sql

from reconcile.canonical_text import BARE_KINDS, Kind


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


def _field(expr: sql.Composable, kind: Kind) -> sql.Composable:
    if kind in BARE_KINDS:
        return sql.SQL("coalesce({e}, '-')").format(e=expr)
    return sql.SQL("coalesce(char_length({e})::text || ':' || {e}, '-')").format(e=expr)


def _row_text_of(rendered: Sequence[sql.Composable], kinds: Sequence[Kind]) -> sql.Composable:
    # concat_ws builds the text once; a chain of || copies the growing prefix per field.
    return sql.SQL("concat_ws(',', {})").format(
        sql.SQL(", ").join(_field(e, k) for e, k in zip(rendered, kinds, strict=True))
    )


def _digest_of(text: sql.Composable) -> sql.Composable:
    return sql.SQL("('x' || substr(md5({}), 1, 15))::bit(60)::bigint").format(text)


def row_text(columns: Sequence[tuple[str, Kind]]) -> sql.Composable:
    """SQL for the canonical row text: every field joined by ','."""
    return _row_text_of(
        [canonical(name, kind) for name, kind in columns], [kind for _, kind in columns]
    )


def row_digest(columns: Sequence[tuple[str, Kind]]) -> sql.Composable:
    """SQL for the row digest: the first 60 bits of md5(row text), as a bigint."""
    return _digest_of(row_text(columns))


def digest_rows(
    key: str,
    columns: Sequence[tuple[str, Kind]],
    table: sql.Composable,
    where: sql.Composable = sql.SQL("TRUE"),
    *,
    ordered: bool = True,
) -> sql.Composed:
    """``SELECT key, digest FROM table WHERE where`` (in key order if ``ordered``).

    Each column's canonical text is rendered once, in a subquery the planner may not
    flatten (``OFFSET 0``); written inline, as in :func:`row_digest`, every expression is
    evaluated twice (its length, then its text). 963,890 licenses: 4.2 -> 3.1 s.
    """
    k = sql.Identifier(key)
    names = [sql.Identifier(f"rendered {i}") for i in range(len(columns))]
    rendered = sql.SQL(", ").join(
        sql.SQL("{} AS {}").format(canonical(name, kind), alias)
        for (name, kind), alias in zip(columns, names, strict=True)
    )
    order = sql.SQL(" ORDER BY {}").format(k) if ordered else sql.SQL("")
    return sql.SQL(
        "SELECT {k}, {d} FROM (SELECT {k}, {rendered} FROM {t} WHERE {w}{order} OFFSET 0) AS r{order}"
    ).format(
        k=k,
        d=_digest_of(_row_text_of(names, [kind for _, kind in columns])),
        rendered=rendered,
        t=table,
        w=where,
        order=order,
    )
