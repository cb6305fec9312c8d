"""runeshift control schema: runs, backfill chunks, source positions, quarantine, exclusions,
dedup decisions and the cutover journal.

Revision ID: 0001_control
Revises:
Create Date: 2026-11-27
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql as pg

revision: str = "0001_control"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SCHEMA = "runeshift"
NOW = sa.text("now()")


def _in(column: str, values: Sequence[str]) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


def upgrade() -> None:
    # The schema itself is created by env.py, because the alembic version table lives in it.
    op.create_table(
        "runs",
        sa.Column("id", pg.UUID(as_uuid=True), server_default=sa.text("gen_random_uuid()")),
        sa.Column("command", sa.Text(), nullable=False),
        sa.Column("status", sa.Text(), nullable=False, server_default="running"),
        sa.Column("started_at", sa.TIMESTAMP(timezone=True), nullable=False, server_default=NOW),
        sa.Column("finished_at", sa.TIMESTAMP(timezone=True), nullable=True),
        sa.Column("tool_version", sa.Text(), nullable=False),
        sa.Column("mapping_checksum", sa.Text(), nullable=True),
        sa.Column("host", sa.Text(), nullable=True),
        sa.Column("invoked_by", sa.Text(), nullable=True),
        sa.Column("args", pg.JSONB(), nullable=False, server_default=sa.text("'{}'::jsonb")),
        sa.Column("summary", pg.JSONB(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_runs"),
        sa.CheckConstraint(
            _in("status", ("running", "succeeded", "failed", "interrupted")), name="ck_runs_status"
        ),
        sa.CheckConstraint(
            "finished_at IS NULL OR finished_at >= started_at", name="ck_runs_finished_after_start"
        ),
        schema=SCHEMA,
    )
    op.create_index("ix_runs_started_at", "runs", ["started_at"], schema=SCHEMA)

    op.create_table(
        "backfill_chunks",
        sa.Column("backfill_id", sa.Text(), nullable=False),
        sa.Column("source", sa.Text(), nullable=False),
        sa.Column("source_table", sa.Text(), nullable=False),
        sa.Column("chunk_no", sa.Integer(), nullable=False),
        # NULL bounds are open ends: the first chunk has no lower key, the last no upper key.
        sa.Column("lower_key", pg.JSONB(), nullable=True),
        sa.Column("upper_key", pg.JSONB(), nullable=True),
        sa.Column("status", sa.Text(), nullable=False, server_default="pending"),
        sa.Column("rows_read", sa.BigInteger(), nullable=False, server_default="0"),
        sa.Column("rows_migrated", sa.BigInteger(), nullable=False, server_default="0"),
        sa.Column("rows_excluded", sa.BigInteger(), nullable=False, server_default="0"),
        sa.Column("rows_quarantined", sa.BigInteger(), nullable=False, server_default="0"),
        sa.Column("checksum", sa.Text(), nullable=True),
        sa.Column("staged_path", sa.Text(), nullable=True),
        sa.Column("loaded_at", sa.TIMESTAMP(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint(
            "backfill_id", "source", "source_table", "chunk_no", name="pk_backfill_chunks"
        ),
        sa.CheckConstraint(_in("status", ("pending", "loaded")), name="ck_backfill_chunks_status"),
        sa.CheckConstraint("chunk_no >= 0", name="ck_backfill_chunks_chunk_no"),
        sa.CheckConstraint(
            "rows_read >= 0 AND rows_migrated >= 0"
            " AND rows_excluded >= 0 AND rows_quarantined >= 0",
            name="ck_backfill_chunks_counts",
        ),
        sa.CheckConstraint(
            "(status = 'loaded') = (loaded_at IS NOT NULL)", name="ck_backfill_chunks_loaded_at"
        ),
        schema=SCHEMA,
    )

    op.create_table(
        "source_positions",
        sa.Column("source", sa.Text(), nullable=False),
        sa.Column("kind", sa.Text(), nullable=False),
        sa.Column("position", pg.JSONB(), nullable=False),
        sa.Column("recorded_by", sa.Text(), nullable=False),
        sa.Column("updated_at", sa.TIMESTAMP(timezone=True), nullable=False, server_default=NOW),
        sa.PrimaryKeyConstraint("source", name="pk_source_positions"),
        sa.CheckConstraint(
            _in("kind", ("binlog", "shopify_cursor", "lsn")), name="ck_source_positions_kind"
        ),
        sa.CheckConstraint(
            _in("recorded_by", ("backfill", "sync")), name="ck_source_positions_recorded_by"
        ),
        sa.CheckConstraint(
            "jsonb_typeof(position) = 'object'", name="ck_source_positions_position_object"
        ),
        schema=SCHEMA,
    )

    op.create_table(
        "quarantine",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False)),
        sa.Column("run_id", pg.UUID(as_uuid=True), nullable=True),
        sa.Column("source", sa.Text(), nullable=False),
        sa.Column("source_table", sa.Text(), nullable=False),
        sa.Column("source_key", sa.Text(), nullable=False),
        sa.Column("target_table", sa.Text(), nullable=False),
        sa.Column("rule", sa.Text(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("raw_row", pg.JSONB(), nullable=False),
        sa.Column("first_seen", sa.TIMESTAMP(timezone=True), nullable=False, server_default=NOW),
        sa.Column("last_seen", sa.TIMESTAMP(timezone=True), nullable=False, server_default=NOW),
        sa.Column("resolved_at", sa.TIMESTAMP(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_quarantine"),
        sa.ForeignKeyConstraint(
            ["run_id"], [f"{SCHEMA}.runs.id"], name="fk_quarantine_run", ondelete="SET NULL"
        ),
        sa.UniqueConstraint(
            "source", "source_table", "source_key", "target_table", name="uq_quarantine_source_row"
        ),
        sa.CheckConstraint("last_seen >= first_seen", name="ck_quarantine_seen_order"),
        schema=SCHEMA,
    )
    op.create_index(
        "ix_quarantine_unresolved",
        "quarantine",
        ["source", "source_table", "rule"],
        schema=SCHEMA,
        postgresql_where=sa.text("resolved_at IS NULL"),
    )

    op.create_table(
        "exclusions",
        sa.Column("source", sa.Text(), nullable=False),
        sa.Column("source_table", sa.Text(), nullable=False),
        sa.Column("target_table", sa.Text(), nullable=False),
        sa.Column("rule", sa.Text(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("row_count", sa.BigInteger(), nullable=False, server_default="0"),
        sa.Column("last_run_id", pg.UUID(as_uuid=True), nullable=True),
        sa.Column("updated_at", sa.TIMESTAMP(timezone=True), nullable=False, server_default=NOW),
        sa.PrimaryKeyConstraint(
            "source", "source_table", "target_table", "rule", name="pk_exclusions"
        ),
        sa.ForeignKeyConstraint(
            ["last_run_id"], [f"{SCHEMA}.runs.id"], name="fk_exclusions_run", ondelete="SET NULL"
        ),
        sa.CheckConstraint("row_count >= 0", name="ck_exclusions_row_count"),
        schema=SCHEMA,
    )

    op.create_table(
        "dedup_decisions",
        sa.Column("source_table", sa.Text(), nullable=False),
        sa.Column("key", sa.Text(), nullable=False),
        sa.Column("winner_source_key", sa.Text(), nullable=False),
        sa.Column("loser_source_key", sa.Text(), nullable=False),
        sa.Column("rule", sa.Text(), nullable=False),
        sa.Column("action", sa.Text(), nullable=False),
        sa.Column("decided_at", sa.TIMESTAMP(timezone=True), nullable=False, server_default=NOW),
        sa.PrimaryKeyConstraint(
            "source_table", "loser_source_key", "rule", name="pk_dedup_decisions"
        ),
        sa.CheckConstraint(
            "winner_source_key <> loser_source_key", name="ck_dedup_decisions_distinct_rows"
        ),
        schema=SCHEMA,
    )
    op.create_index(
        "ix_dedup_decisions_key", "dedup_decisions", ["source_table", "key"], schema=SCHEMA
    )

    op.create_table(
        "cutover_journal",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False)),
        sa.Column("plan_id", sa.Text(), nullable=False),
        sa.Column("stage", sa.Text(), nullable=False),
        sa.Column("step", sa.Text(), nullable=False),
        sa.Column("action", sa.Text(), nullable=False),
        sa.Column("status", sa.Text(), nullable=False),
        sa.Column("detail", pg.JSONB(), nullable=False, server_default=sa.text("'{}'::jsonb")),
        sa.Column("at", sa.TIMESTAMP(timezone=True), nullable=False, server_default=NOW),
        sa.PrimaryKeyConstraint("id", name="pk_cutover_journal"),
        sa.CheckConstraint(_in("action", ("apply", "reverse")), name="ck_cutover_journal_action"),
        sa.CheckConstraint(
            _in("status", ("started", "done", "failed")), name="ck_cutover_journal_status"
        ),
        schema=SCHEMA,
    )
    op.create_index("ix_cutover_journal_plan", "cutover_journal", ["plan_id", "id"], schema=SCHEMA)

    op.create_table(
        "cutover_state",
        sa.Column("plan_id", sa.Text(), nullable=False),
        sa.Column("stage", sa.Text(), nullable=False),
        sa.Column("updated_at", sa.TIMESTAMP(timezone=True), nullable=False, server_default=NOW),
        sa.PrimaryKeyConstraint("plan_id", name="pk_cutover_state"),
        schema=SCHEMA,
    )


def downgrade() -> None:
    # The schema stays: it still holds the (now empty) alembic version table.
    for table in (
        "cutover_state",
        "cutover_journal",
        "dedup_decisions",
        "exclusions",
        "quarantine",
        "source_positions",
        "backfill_chunks",
        "runs",
    ):
        op.drop_table(table, schema=SCHEMA)
