"""The canonical text of ``reconcile/canonical_text.py``, rendered by MySQL/MariaDB.

Used for same-shape tables, where the whole checksum runs inside both databases.
The session has ``time_zone='+00:00'``, so TIMESTAMP columns come out in UTC and
DATETIME columns are read as UTC wall times. Text is converted to utf8mb4 before
hashing so MD5 sees the same bytes PostgreSQL hashes.
"""

from __future__ import annotations

from collections.abc import Sequence

from reconcile.canonical_text import BARE_KINDS, Kind


def _q(column: str) -> str:
    return "`" + column.replace("`", "``") + "`"


def canonical(column: str, kind: Kind, *, scale: int = 0) -> str:
    """SQL rendering one column's canonical text (NULL stays NULL)."""
    c = _q(column)
    if kind == "int":
        return f"CAST({c} AS CHAR)"
    if kind == "bool":
        return f"CAST(({c} <> 0) AS CHAR)"
    if kind == "numeric":
        text = f"CAST({c} AS CHAR)"
        if scale <= 0:
            return text
        return f"TRIM(TRAILING '.' FROM TRIM(TRAILING '0' FROM {text}))"
    if kind == "timestamp":
        return f"CAST(TIMESTAMPDIFF(MICROSECOND, '1970-01-01 00:00:00', {c}) AS CHAR)"
    if kind == "date":
        return f"DATE_FORMAT({c}, '%Y-%m-%d')"
    if kind in ("text", "uuid"):
        conv = f"CONVERT({c} USING utf8mb4)"
        return f"LOWER({conv})" if kind == "uuid" else conv
    if kind == "bytea":
        return f"LOWER(HEX({c}))"
    raise ValueError(f"no MySQL rendering for kind {kind}")


def row_text(columns: Sequence[tuple[str, Kind, int]]) -> str:
    fields = [
        f"COALESCE({e}, '-')"
        if k in BARE_KINDS
        else f"COALESCE(CONCAT(CHAR_LENGTH({e}), ':', {e}), '-')"
        for e, k in ((canonical(n, k, scale=s), k) for n, k, s in columns)
    ]
    return "CONVERT(CONCAT_WS(',', " + ", ".join(fields) + ") USING utf8mb4)"


def row_digest(columns: Sequence[tuple[str, Kind, int]]) -> str:
    """SQL for the row digest: the first 60 bits of MD5(row text) as an unsigned integer."""
    return f"CAST(CONV(SUBSTRING(MD5({row_text(columns)}), 1, 15), 16, 10) AS UNSIGNED)"
