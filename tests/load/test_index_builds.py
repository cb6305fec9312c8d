"""Deferred indexes built two sessions at once end exactly as they were, from any crash point."""

from __future__ import annotations

import uuid

import psycopg
import pytest

from load import copy_writer
from load.index_builds import finish_bulk_load, plan
from runeshift.errors import FatalError

ROWS = 20_000


def _shape(conn: psycopg.Connection, table: str) -> tuple[set, set]:
    indexes = conn.execute(
        "SELECT indexname, indexdef FROM pg_indexes WHERE tablename = %s", (table,)
    ).fetchall()
    constraints = conn.execute(
        "SELECT conname, pg_get_constraintdef(oid), contype FROM pg_constraint "
        "WHERE conrelid = %s::regclass",
        (table,),
    ).fetchall()
    return set(indexes), set(constraints)


@pytest.fixture
def loaded(pg_url: str):
    """``item``, loaded with its key constraints and plain indexes dropped as a backfill does."""
    with psycopg.connect(pg_url) as conn:
        conn.execute("CREATE TABLE owner (id uuid PRIMARY KEY)")
        conn.execute(
            "CREATE TABLE item (id uuid CONSTRAINT item_pk PRIMARY KEY, legacy bigint "
            "CONSTRAINT item_legacy_unique UNIQUE, owner_id uuid CONSTRAINT item_owner_fk "
            "REFERENCES owner (id), note text, CONSTRAINT item_note_check CHECK (note <> 'bad'))"
        )
        conn.execute("CREATE INDEX item_owner_idx ON item (owner_id)")
        conn.execute("CREATE INDEX item_note_idx ON item (lower(note)) WHERE note IS NOT NULL")
        before = _shape(conn, "item")
        found = copy_writer.deferrable_indexes(conn, "public.item", frozenset({"id", "legacy"}))
        assert len(found) == 4
        copy_writer.drop_indexes(conn, found)
        owners = [str(uuid.uuid4()) for _ in range(50)]
        conn.execute("INSERT INTO owner SELECT unnest(%s::uuid[])", (owners,))
        conn.execute(
            "INSERT INTO item SELECT gen_random_uuid(), g, (%s::uuid[])[1 + g %% 50], 'n' || g "
            "FROM generate_series(1, %s) g",
            (owners, ROWS),
        )
        conn.commit()
        yield conn, [(i.name, i.create) for i in found], before


def test_built_side_by_side_they_end_as_they_were(loaded, pg_url: str) -> None:
    conn, pending, before = loaded
    side_by_side, after = plan(conn, pending)
    assert (len(side_by_side), len(after)) == (4, 2)  # two keys: built, then attached
    finish_bulk_load(conn, pending, helper_url=pg_url, check_foreign_keys_of="public.item")
    assert _shape(conn, "item") == before
    finish_bulk_load(conn, pending, helper_url=pg_url)  # a rerun finds nothing to do
    assert plan(conn, pending) == ([], [])
    assert _shape(conn, "item") == before


def test_a_crash_between_building_a_key_and_attaching_it_resumes(loaded, pg_url: str) -> None:
    conn, pending, before = loaded
    conn.execute("CREATE UNIQUE INDEX item_pk ON item (id)")  # built, not yet attached
    conn.execute("CREATE INDEX item_owner_idx ON item (owner_id)")
    conn.commit()
    side_by_side, after = plan(conn, pending)
    assert (len(side_by_side), len(after)) == (2, 2)
    finish_bulk_load(conn, pending, helper_url=pg_url)
    assert _shape(conn, "item") == before


def test_without_a_helper_connection_the_callers_does_it_all(loaded) -> None:
    conn, pending, before = loaded
    unreachable = "postgresql://nobody@127.0.0.1:1/none"
    finish_bulk_load(conn, pending, helper_url=unreachable, check_foreign_keys_of="public.item")
    assert _shape(conn, "item") == before


def test_a_dangling_reference_fails_the_load_by_name(loaded, pg_url: str) -> None:
    conn, pending, _ = loaded
    conn.execute("SET session_replication_role = replica")  # as the backfill loads
    conn.execute("INSERT INTO item (id, owner_id) VALUES (gen_random_uuid(), gen_random_uuid())")
    conn.commit()
    with pytest.raises(FatalError, match="1 rows break foreign key item_owner_fk"):
        finish_bulk_load(conn, pending, helper_url=pg_url, check_foreign_keys_of="public.item")
