"""runeshift sync state: per-source follower progress and heartbeat lag, paused tables.

``sync_state`` is written in the same transaction as the changes it describes (like
``source_positions``), so after a crash it tells the truth about what is applied.
``sync_paused_tables`` lists mapped tables whose DDL drifted from the mapping; the
follower skips them until the drift is fixed and the table re-snapshotted.

Revision ID: 0003_sync_state
Revises: 0002_rune_core
Create Date: 2026-11-28
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql as pg

revision: str = "0003_sync_state"
down_revision: str | None = "0002_rune_core"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SCHEMA = "runeshift"
NOW = sa.text("now()")


def upgrade() -> None:
    op.create_table(
        "sync_state",
        sa.Column("source", sa.Text(), nullable=False),
        sa.Column("heartbeat_seq", sa.BigInteger(), nullable=True),
        sa.Column("heartbeat_lag_ms", sa.Double(), nullable=True),
        sa.Column("heartbeat_applied_at", sa.TIMESTAMP(timezone=True), nullable=True),
        sa.Column("changes_applied", sa.BigInteger(), nullable=False, server_default="0"),
        sa.Column("transactions_applied", sa.BigInteger(), nullable=False, server_default="0"),
        sa.Column("follower", sa.Text(), nullable=True),
        sa.Column("updated_at", sa.TIMESTAMP(timezone=True), nullable=False, server_default=NOW),
        sa.PrimaryKeyConstraint("source", name="pk_sync_state"),
        sa.CheckConstraint(
            "changes_applied >= 0 AND transactions_applied >= 0", name="ck_sync_state_counts"
        ),
        schema=SCHEMA,
    )
    op.create_table(
        "sync_paused_tables",
        sa.Column("source", sa.Text(), nullable=False),
        sa.Column("source_table", sa.Text(), nullable=False),
        sa.Column("statement", sa.Text(), nullable=False),
        sa.Column("findings", pg.JSONB(), nullable=False),
        sa.Column("position", pg.JSONB(), nullable=False),
        sa.Column("paused_at", sa.TIMESTAMP(timezone=True), nullable=False, server_default=NOW),
        sa.PrimaryKeyConstraint("source", "source_table", name="pk_sync_paused_tables"),
        schema=SCHEMA,
    )


def downgrade() -> None:
    op.drop_table("sync_paused_tables", schema=SCHEMA)
    op.drop_table("sync_state", schema=SCHEMA)
