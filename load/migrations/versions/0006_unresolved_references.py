"""runeshift.unresolved_references: the ids an ``on_missing: null`` reference wanted.

A reference by id with ``on_missing: null`` is stored NULL while the row it names is
missing (``rune.products.script_id`` of a product selling a script legacy does not have
yet). A fresh backfill run after that row appears would link it, but the value it would
link is not always in the row (``products.script_id`` comes from the product's variant
SKUs, which no column keeps). The writers record here, per target row and column, the
value they wanted; when a writer inserts rows into the referenced table, the entries
naming them are resolved (the column set, the entry deleted) in the same transaction. A
row written again with the reference resolved, or deleted, loses its entry.

Revision ID: 0006_unresolved_references
Revises: 0005_excluded_keys
Create Date: 2026-11-28
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006_unresolved_references"
down_revision: str | None = "0005_excluded_keys"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SCHEMA = "runeshift"
NOW = sa.text("now()")


def upgrade() -> None:
    op.create_table(
        "unresolved_references",
        sa.Column("target_table", sa.Text(), nullable=False),
        sa.Column("row_id", sa.Text(), nullable=False),
        sa.Column("column", sa.Text(), nullable=False),
        sa.Column("referenced_table", sa.Text(), nullable=False),
        sa.Column("wanted_value", sa.Text(), nullable=False),
        sa.Column("recorded_at", sa.TIMESTAMP(timezone=True), nullable=False, server_default=NOW),
        sa.PrimaryKeyConstraint(
            "target_table", "row_id", "column", name="pk_unresolved_references"
        ),
        schema=SCHEMA,
    )
    op.create_index(
        "ix_unresolved_references_wanted",
        "unresolved_references",
        ["referenced_table", "wanted_value"],
        schema=SCHEMA,
    )


def downgrade() -> None:
    op.drop_table("unresolved_references", schema=SCHEMA)
