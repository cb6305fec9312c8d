"""The forward follower skips what the reverse writer wrote (no echo of Rune's own changes)."""

from __future__ import annotations

import psycopg

from load.legacy_writer import _DDL as STATE_DDL
from runeshift.connections import mysql_connect
from tests.runeshift.test_sync import backfilled, catch_up


def test_transactions_of_the_reverse_writer_are_not_applied_forward(
    mysql_url, pg_server_url, tmp_path
):
    world, target, settings = backfilled(mysql_url, pg_server_url, tmp_path, seed=12)
    conn = mysql_connect(world["forums_url"], autocommit=False)
    with conn.cursor() as cur:
        cur.execute("SELECT member_id FROM core_members ORDER BY member_id LIMIT 2")
        (echoed,), (plain,) = cur.fetchall()
        for statement in STATE_DDL:  # the reverse writer's own bookkeeping tables
            cur.execute(statement)
        conn.commit()
        # What the reverse writer does: legacy rows and its position, one transaction.
        cur.execute(
            "UPDATE core_members SET name = 'Written By Reverse' WHERE member_id = %s", (echoed,)
        )
        cur.execute(
            "REPLACE INTO runeshift_state.runeshift_reverse_position (slot, state_version, lsn, "
            "updated_at) VALUES ('echo_test', 1, 1, NOW(6))"
        )
        conn.commit()
        cur.execute(
            "UPDATE core_members SET name = 'Written By Legacy' WHERE member_id = %s", (plain,)
        )
        conn.commit()
    conn.close()

    catch_up(settings)

    with psycopg.connect(target) as pg:
        names = dict(
            pg.execute(
                "SELECT legacy_member_id, display_name FROM rune.accounts WHERE legacy_member_id = ANY(%s)",
                ([echoed, plain],),
            ).fetchall()
        )
    assert names[plain] == "Written By Legacy"
    assert names[echoed] != "Written By Reverse"
