"""runeshift.excluded_keys: which source rows a follower counts under which exclusion rule.

The backfill counts the rows each rule drops per table (``runeshift.exclusions``); a
follower that applies a change must know whether the row was counted already (a test
order read again by the lookback) to move the count as a fresh backfill's would. It
records here, per source key, the rule it counts the row under (NULL: known and counted
under none, e.g. a test order that was deleted), tagged with the backfill whose counts it
continues; rows of an older backfill are ignored and removed.

Revision ID: 0005_excluded_keys
Revises: 0004_shopify_webhook_events
Create Date: 2026-11-28
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005_excluded_keys"
down_revision: str | None = "0004_shopify_webhook_events"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SCHEMA = "runeshift"
NOW = sa.text("now()")


def upgrade() -> None:
    op.create_table(
        "excluded_keys",
        sa.Column("source", sa.Text(), nullable=False),
        sa.Column("source_table", sa.Text(), nullable=False),
        sa.Column("target_table", sa.Text(), nullable=False),
        sa.Column("source_key", sa.Text(), nullable=False),
        sa.Column("record_key", sa.Text(), nullable=False),
        sa.Column("rule", sa.Text(), nullable=True),
        sa.Column("backfill_id", sa.Text(), nullable=False),
        sa.Column("updated_at", sa.TIMESTAMP(timezone=True), nullable=False, server_default=NOW),
        sa.PrimaryKeyConstraint(
            "source", "source_table", "target_table", "source_key", name="pk_excluded_keys"
        ),
        schema=SCHEMA,
    )
    op.create_index(
        "ix_excluded_keys_record",
        "excluded_keys",
        ["source", "source_table", "target_table", "record_key"],
        schema=SCHEMA,
    )


def downgrade() -> None:
    op.drop_table("excluded_keys", schema=SCHEMA)
