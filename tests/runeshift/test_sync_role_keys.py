"""Forum group titles that make the same role key: the oldest group keeps the key, the others
are kept with '_<legacy id>' appended (dedup rule ``colliding_role_key``), in the backfill and
through the catch-up when a rename frees the key or takes it."""

from __future__ import annotations

import psycopg

from runeshift.connections import mysql_connect
from tests.runeshift.test_sync import (
    assert_equals_fresh_backfill,
    backfilled,
    catch_up,
    fresh_world,
)


def _keys(target: str, *groups: int) -> dict[int, str]:
    with psycopg.connect(target) as pg:
        return dict(
            pg.execute(
                "SELECT id, key FROM rune.roles WHERE id = ANY(%s)", (list(groups),)
            ).fetchall()
        )


def test_groups_whose_titles_make_the_same_key_are_all_kept(mysql_url, pg_server_url, tmp_path):
    # The collision is in the legacy data before the backfill, as the forum's admins made it.
    world = fresh_world(mysql_url, scale=0.1, seed=23)
    conn = mysql_connect(world["forums_url"])
    with conn.cursor() as cur:
        cur.execute("SELECT COALESCE(MAX(g_id), 0) FROM core_groups")
        top = int(cur.fetchone()[0])
        older, newer = top + 1, top + 2
        cur.execute(
            "INSERT INTO core_groups (g_id, g_title) VALUES (%s, 'Quokka Keepers'), (%s, 'quokka-keepers')",
            (older, newer),
        )
    world, target, settings = backfilled(mysql_url, pg_server_url, tmp_path, seed=23, world=world)
    assert _keys(target, older, newer) == {
        older: "quokka_keepers",
        newer: f"quokka_keepers_{newer}",
    }
    with psycopg.connect(target) as pg:
        (decisions,) = pg.execute(
            "SELECT count(*) FROM runeshift.dedup_decisions WHERE rule = 'colliding_role_key'"
        ).fetchone()
    assert decisions >= 1

    # The older group is renamed: its key goes, and the newer group takes 'quokka_keepers'.
    with conn.cursor() as cur:
        cur.execute("UPDATE core_groups SET g_title = 'Wombat Keepers' WHERE g_id = %s", (older,))
    catch_up(settings)
    assert _keys(target, older, newer) == {older: "wombat_keepers", newer: "quokka_keepers"}
    # and back: the older group wins the key again
    with conn.cursor() as cur:
        cur.execute("UPDATE core_groups SET g_title = 'QUOKKA keepers' WHERE g_id = %s", (older,))
    conn.close()
    catch_up(settings)
    assert _keys(target, older, newer) == {
        older: "quokka_keepers",
        newer: f"quokka_keepers_{newer}",
    }
    assert_equals_fresh_backfill(world, target, pg_server_url, tmp_path)
