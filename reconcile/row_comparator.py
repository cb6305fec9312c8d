"""From two canonical rows to the columns that differ, with both values shown.

Values are compared in canonical text (so ``2021-03-14 07:30:00+00`` and the
same instant read as New York time are equal) and shown in a readable form,
masked for personal columns.
"""

from __future__ import annotations

from collections.abc import Sequence

from reconcile.canonical_text import Kind, display_value
from reconcile.personal_data_masking import mask_value
from reconcile.report_model import ColumnDifference


def shown(table: str, column: str, kind: Kind, canonical: str | None) -> str | None:
    return mask_value(table, column, display_value(canonical, kind))


def differing_columns(
    table: str,
    columns: Sequence[tuple[str, Kind]],
    source: Sequence[str | None],
    target: Sequence[str | None],
) -> list[ColumnDifference]:
    """Every column whose canonical values differ (NULL differs from '')."""
    out = []
    for (name, kind), s, t in zip(columns, source, target, strict=True):
        if s != t:
            out.append(
                ColumnDifference(name, shown(table, name, kind, s), shown(table, name, kind, t))
            )
    return out
