"""runeshift.shopify_webhook_events: the webhook event ids the receiver accepted.

Shopify delivers a webhook at least once and retries with the same ``X-Shopify-Event-Id``;
the receiver records each accepted id here so a duplicate is dropped after a restart too.
Rows older than the receiver's retention (7 days; Shopify retries a failed delivery 8 times
over 4 hours) are deleted by the receiver itself.

Revision ID: 0004_shopify_webhook_events
Revises: 0003_sync_state
Create Date: 2026-11-28
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004_shopify_webhook_events"
down_revision: str | None = "0003_sync_state"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SCHEMA = "runeshift"
NOW = sa.text("now()")


def upgrade() -> None:
    op.create_table(
        "shopify_webhook_events",
        sa.Column("event_id", sa.Text(), nullable=False),
        sa.Column("topic", sa.Text(), nullable=False),
        sa.Column("received_at", sa.TIMESTAMP(timezone=True), nullable=False, server_default=NOW),
        sa.PrimaryKeyConstraint("event_id", name="pk_shopify_webhook_events"),
        schema=SCHEMA,
    )
    op.create_index(
        "ix_shopify_webhook_events_received_at",
        "shopify_webhook_events",
        ["received_at"],
        schema=SCHEMA,
    )


def downgrade() -> None:
    op.drop_table("shopify_webhook_events", schema=SCHEMA)
