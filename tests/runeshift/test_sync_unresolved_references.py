"""References stored NULL while the row they name is missing (``on_missing: null`` by id) on
the pure binlog path: ``rune.scripts.author_account_id`` of a script whose author is not a
member yet. The writers record the id they wanted in ``runeshift.unresolved_references``;
when the member appears the script is linked and the entry goes, as a fresh backfill."""

from __future__ import annotations

import psycopg

from runeshift.connections import mysql_connect
from tests.runeshift.test_sync import assert_equals_fresh_backfill, backfilled, catch_up
from transform.identity_keys import uuid_for


def _author_and_entries(target: str, script: int) -> tuple[object, list[tuple[str, str]]]:
    with psycopg.connect(target) as pg:
        (author,) = pg.execute(
            "SELECT author_account_id::text FROM rune.scripts WHERE id = %s",
            (uuid_for("script", str(script)),),
        ).fetchone()
        entries = pg.execute(
            'SELECT "column", wanted_value FROM runeshift.unresolved_references '
            "WHERE target_table = 'rune.scripts' AND row_id = %s",
            (str(uuid_for("script", str(script))),),
        ).fetchall()
    return author, entries


def test_a_script_whose_author_appears_later_is_linked_by_the_catch_up(
    mysql_url, pg_server_url, tmp_path
):
    world, target, settings = backfilled(mysql_url, pg_server_url, tmp_path, seed=31)
    forums = mysql_connect(world["forums_url"])
    repo = mysql_connect(world["repo_url"])
    with forums.cursor() as f, repo.cursor() as r:
        f.execute("SELECT MAX(member_id) + 1000 FROM core_members")
        (member,) = f.fetchone()
        r.execute("SELECT MAX(id) + 1000 FROM scripts")
        (script,) = r.fetchone()
        r.execute(
            "INSERT INTO scripts (id, author_id, name, slug, status) "
            "VALUES (%s, %s, 'Early Script', %s, 'approved')",
            (script, member, f"early-script-{script}"),
        )
    repo.commit()
    account = str(uuid_for("account", str(member)))
    try:
        catch_up(settings)
        assert _author_and_entries(target, script) == (None, [("author_account_id", account)])

        with forums.cursor() as f:
            f.execute(
                "INSERT INTO core_members (member_id, name, email, joined, last_visit, "
                "mgroup_others, timezone) VALUES (%s, 'Late Author', '', 0, 0, '', '')",
                (member,),
            )
        forums.commit()
        catch_up(settings)
        assert _author_and_entries(target, script) == (account, [])
        assert_equals_fresh_backfill(world, target, pg_server_url, tmp_path / "linked")

        # The author goes again: NULL, and wanted again.
        with forums.cursor() as f:
            f.execute("DELETE FROM core_members WHERE member_id = %s", (member,))
        forums.commit()
        catch_up(settings)
        assert _author_and_entries(target, script) == (None, [("author_account_id", account)])
        assert_equals_fresh_backfill(world, target, pg_server_url, tmp_path / "unlinked")
    finally:
        forums.close()
        repo.close()
