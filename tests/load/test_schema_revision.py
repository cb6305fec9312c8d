"""The Alembic-free revision check agrees with Alembic."""

from __future__ import annotations

import psycopg

from load import schema_revision, target_schema


def test_the_shipped_head_is_alembics_head() -> None:
    assert schema_revision.shipped_head() == target_schema.head_revision()


def test_the_database_revision_is_alembics_current(pg_url: str) -> None:
    with psycopg.connect(pg_url, autocommit=True) as conn:
        assert schema_revision.database_revision(conn) is None  # a fresh database
        target_schema.upgrade(pg_url, "0002_rune_core")
        assert schema_revision.database_revision(conn) == "0002_rune_core"
        assert target_schema.current(pg_url) == "0002_rune_core"


def test_a_backfill_refuses_a_target_below_the_head(pg_url: str, tmp_path) -> None:
    import pytest

    from runeshift.backfill import run_backfill
    from runeshift.errors import ConfigError
    from runeshift.settings import Settings

    target_schema.upgrade(pg_url, "0002_rune_core")
    settings = Settings(postgres_url=pg_url, staging=str(tmp_path), home=tmp_path)
    with pytest.raises(ConfigError, match=r"at 0002_rune_core, not .*runeshift schema upgrade"):
        run_backfill(settings)
