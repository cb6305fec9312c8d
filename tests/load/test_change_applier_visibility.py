"""The follower can hold a binlog event before InnoDB shows its rows to other sessions.

MariaDB writes a transaction to the binlog, then commits it in InnoDB; a re-read in that
window still returns the row as it was. The change applier re-plans a dedup group from
such re-reads, so it must trust the batch's own row images over them: otherwise a member
leaving a contested email for another contested one, re-read still holding the first, beats the member who should now log
in, and no later event ever corrects the target.

The window is reproduced exactly: the event is built from the row images the binlog would
carry while the legacy transaction that made it stays open (invisible to the re-read).
"""

from __future__ import annotations

import psycopg

from extract.binlog_row_decoder import RowDecoder
from extract.binlog_source_lookup import SourceLookup
from load.change_applier import ChangeApplier, FeedChanges
from runeshift.connections import mysql_connect
from tests.runeshift.test_sync import backfilled, catch_up
from transform.mapping_loader import load_mappings


def _logins(target: str, *members: int) -> dict[int, tuple[str, bool]]:
    with psycopg.connect(target) as pg:
        rows = pg.execute(
            "SELECT legacy_member_id, email, can_login FROM rune.accounts "
            "WHERE legacy_member_id = ANY(%s)",
            (list(members),),
        ).fetchall()
    return {m: (e, c) for m, e, c in rows}


def test_a_member_leaving_a_contested_email_in_an_uncommitted_transaction(
    mysql_url, pg_server_url, tmp_path
):
    world, target, settings = backfilled(mysql_url, pg_server_url, tmp_path, seed=17)
    forums = mysql_connect(world["forums_url"])
    with forums.cursor() as cur:
        cur.execute("SELECT member_id FROM core_members ORDER BY member_id LIMIT 3")
        (stays,), (leaves,), (other,) = cur.fetchall()
        # ``leaves`` visited last, so it holds the login of the shared address
        cur.execute(
            "UPDATE core_members SET email = 'race@example.com', last_visit = 1600000000 "
            "WHERE member_id = %s",
            (stays,),
        )
        cur.execute(
            "UPDATE core_members SET email = 'Race@Example.com', last_visit = 1700000000 "
            "WHERE member_id = %s",
            (leaves,),
        )
        cur.execute(
            "UPDATE core_members SET email = 'other@example.com', last_visit = 1800000000 "
            "WHERE member_id = %s",
            (other,),
        )
    catch_up(settings)
    assert _logins(target, stays, leaves) == {
        stays: ("race@example.com", False),
        leaves: ("race@example.com", True),
    }

    database = world["forums_url"].rsplit("/", 1)[1]
    lookup = SourceLookup(world["forums_url"], database)
    table = lookup.schema()["core_members"]
    decoder = RowDecoder(table, [c.name for c in table.columns])
    (before,) = lookup.rows_where("core_members", decoder.names, "member_id", [leaves])
    email = decoder.names.index("email")
    after = (*before[:email], b"OTHER@example.com", *before[email + 1 :])

    forums.begin()  # in the binlog (we hold its images); not yet visible to a re-read
    with forums.cursor() as cur:
        cur.execute(
            "UPDATE core_members SET email = 'OTHER@example.com' WHERE member_id = %s", (leaves,)
        )
    conn = psycopg.connect(target)
    try:
        applier = ChangeApplier(
            conn,
            load_mappings(),
            {("forums", "core_members"): decoder},
            {"forums": lookup},
            run_id=None,
        )
        applier.prepare()
        changes = FeedChanges()
        changes.upsert(decoder.key(after), after, before)
        applier.apply({("forums", "core_members"): changes})
        conn.commit()
    finally:
        conn.close()
        forums.commit()
        forums.close()
        lookup.close()

    # ``leaves`` joined the address of ``other`` (who visited later and keeps its login)
    assert _logins(target, stays, leaves, other) == {
        stays: ("race@example.com", True),
        leaves: ("other@example.com", False),
        other: ("other@example.com", True),
    }
