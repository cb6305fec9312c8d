"""Catch-up against real servers: after catching up, the target equals a fresh backfill.

Each test builds its own small legacy world (traffic mutates it), backfills it while the
traffic generator writes, follows the binlog, stops the traffic, catches up, and compares a
digest of every target table with a fresh backfill of the source as it now stands.
"""

from __future__ import annotations

import threading
import uuid
from pathlib import Path

import psycopg
import pytest
from psycopg.types.json import Jsonb

from load.target_schema import upgrade
from runeshift.backfill import run_backfill
from runeshift.connections import mysql_connect
from runeshift.sample.legacy_traffic import LegacyTraffic
from runeshift.sample.legacy_world import generate_legacy_world
from runeshift.secrets import Secret
from runeshift.settings import Settings
from runeshift.sync import SyncOptions, run_sync
from transform.identity_keys import uuid_for
from transform.mapping_loader import load_mappings


def fresh_world(mysql_url: str, scale: float = 0.2, seed: int = 5) -> dict[str, str]:
    tag = uuid.uuid4().hex[:6]
    forums, repo = f"sy_forums_{tag}", f"sy_repo_{tag}"
    generate_legacy_world(mysql_url, scale=scale, seed=seed, forums_db=forums, repo_db=repo)
    return {"forums_url": mysql_url + forums, "repo_url": mysql_url + repo}


def fresh_target(pg_server_url: str, name: str = "sy") -> str:
    db = f"{name}_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(pg_server_url.rsplit("/", 1)[0] + "/postgres", autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {db}")
    url = pg_server_url.rsplit("/", 1)[0] + "/" + db
    upgrade(url)
    return url


def settings_for(world: dict[str, str], pg: str, staging: Path) -> Settings:
    return Settings(
        forums_url=world["forums_url"],
        repo_url=world["repo_url"],
        postgres_url=pg,
        staging=str(staging),
        shopify_token=Secret(""),
    )


def fingerprint(pg: str) -> dict[str, str]:
    out = {}
    with psycopg.connect(pg) as conn:
        for target in load_mappings().targets:
            cols = ["id", *dict.fromkeys(r.target for f in target.feeds for r in f.columns)]
            col_list = ", ".join(f'"{c}"' for c in cols)
            row = conn.execute(
                f"SELECT count(*), md5(coalesce(string_agg(t::text, '|' ORDER BY t.id), '')) "
                f"FROM (SELECT {col_list} FROM {target.table}) t"
            ).fetchone()
            out[target.table] = f"{row[0]}:{row[1]}"
    return out


def differences(pg_a: str, pg_b: str) -> dict[str, list]:
    """Per table, a few ids whose rows differ (for readable failures)."""
    found: dict[str, list] = {}
    for target in load_mappings().targets:
        cols = ["id", *dict.fromkeys(r.target for f in target.feeds for r in f.columns)]
        col_list = ", ".join(f'"{c}"' for c in cols)
        rows = []
        for pg in (pg_a, pg_b):
            with psycopg.connect(pg) as conn:
                rows.append(
                    {
                        r[0]: r
                        for r in conn.execute(f"SELECT {col_list} FROM {target.table}").fetchall()
                    }
                )
        a, b = rows
        diff = []
        for i in sorted(set(a) | set(b), key=str):
            ra, rb = a.get(i), b.get(i)
            if ra == rb:
                continue
            if ra is None or rb is None:
                diff.append((str(i), "only in " + ("reference" if ra is None else "target")))
            else:
                diff.append(
                    (str(i), {c: (x, y) for c, x, y in zip(cols, ra, rb, strict=True) if x != y})
                )
        if diff:
            found[target.table] = diff[:3]
    return found


def backfilled(
    mysql_url: str,
    pg_server_url: str,
    tmp_path: Path,
    *,
    seed: int,
    scale: float = 0.1,
    world: dict[str, str] | None = None,
) -> tuple[dict[str, str], str, Settings]:
    """A legacy world (fresh unless given), backfilled into a fresh target: (world, target URL, settings)."""
    world = world or fresh_world(mysql_url, scale=scale, seed=seed)
    target = fresh_target(pg_server_url)
    settings = settings_for(world, target, tmp_path / "staging")
    run_backfill(settings)
    return world, target, settings


def catch_up(settings: Settings, **kw) -> dict:
    result = run_sync(
        settings, options=SyncOptions(until_caught_up=True, timeout_seconds=120, **kw)
    )
    assert result.caught_up, result.as_dict()
    return result.as_dict()


def exclusion_counts(pg: str) -> dict[tuple[str, str, str, str], int]:
    """(source, source table, target table, rule) -> rows counted as excluded.

    A rule that counts no row may have a row of 0 or none (a backfill into an empty
    database inserts only the rules that dropped something), so zeros are left out.
    """
    with psycopg.connect(pg) as conn:
        rows = conn.execute(
            "SELECT source, source_table, target_table, rule, row_count FROM runeshift.exclusions"
        ).fetchall()
    return {(s, st, t, rule): n for s, st, t, rule, n in rows if n}


def assert_equals_fresh_backfill(world, target, pg_server_url, tmp_path):
    reference = fresh_target(pg_server_url, "ref")
    run_backfill(settings_for(world, reference, tmp_path / "ref-staging"))
    found = differences(target, reference)
    if found:
        with psycopg.connect(target) as conn:  # what the follower left open, for the failure
            open_rows = conn.execute(
                "SELECT rule, source_table, source_key, left(reason, 160) FROM runeshift.quarantine "
                "WHERE resolved_at IS NULL AND rule <> 'orphan' ORDER BY 2, 3"
            ).fetchall()
        raise AssertionError(
            f"target differs from a fresh backfill: {found}; open quarantine: {open_rows}"
        )
    assert fingerprint(target) == fingerprint(reference)
    assert exclusion_counts(target) == exclusion_counts(reference)


def test_catch_up_under_traffic_equals_fresh_backfill(mysql_url, pg_server_url, tmp_path):
    world = fresh_world(mysql_url)
    target = fresh_target(pg_server_url)
    settings = settings_for(world, target, tmp_path / "staging")
    traffic = LegacyTraffic(world["forums_url"], world["repo_url"], seed=3)
    stop_traffic = threading.Event()
    writer = threading.Thread(target=traffic.run, args=(150,), kwargs={"stop": stop_traffic})
    # A long transaction that spans the snapshot point: begun before, committed after.
    long_txn = mysql_connect(world["repo_url"], autocommit=False)
    with long_txn.cursor() as cur:
        cur.execute("UPDATE licenses SET price_paid = price_paid + 1 WHERE id <= 50")
    writer.start()
    try:
        run_backfill(settings)
        long_txn.commit()
        long_txn.close()
        stop_follow = threading.Event()
        follower = threading.Thread(target=run_sync, args=(settings,), kwargs={"stop": stop_follow})
        follower.start()
        stop_traffic.wait(4)
        stop_follow.set()
        follower.join(60)
        assert not follower.is_alive()
        stop_traffic.wait(1)
    finally:
        stop_traffic.set()
        writer.join()
        traffic.close()
    summary = traffic.summary
    assert summary.actions["delete_member"] + summary.actions["renumber_license"] > 0
    result = catch_up(settings)
    assert result["changes_applied"] > 0
    assert_equals_fresh_backfill(world, target, pg_server_url, tmp_path)


def test_deletes_key_changes_orphans_and_dedup_converge(mysql_url, pg_server_url, tmp_path):
    world = fresh_world(mysql_url, seed=9)
    target = fresh_target(pg_server_url)
    settings = settings_for(world, target, tmp_path / "staging")
    run_backfill(settings)
    forums = mysql_connect(world["forums_url"])
    repo = mysql_connect(world["repo_url"])
    with forums.cursor() as f, repo.cursor() as r:
        # A member with licenses is deleted: its licenses become orphans (quarantined).
        r.execute("SELECT member_id FROM licenses GROUP BY member_id HAVING COUNT(*) > 1 LIMIT 1")
        (victim,) = r.fetchone()
        f.execute("DELETE FROM core_members WHERE member_id = %s", (victim,))
        # ...and comes back under the same id later: the orphans become licenses again.
        # A member id changes (key change): licenses keep pointing at the old id -> orphans.
        f.execute("SELECT MAX(member_id) FROM core_members")
        (top,) = f.fetchone()
        r.execute(
            "SELECT l.member_id FROM licenses l WHERE l.member_id <> %s GROUP BY l.member_id "
            "ORDER BY l.member_id LIMIT 1",
            (victim,),
        )
        (moved,) = r.fetchone()
        f.execute(
            "UPDATE core_members SET member_id = %s WHERE member_id = %s", (top + 1000, moved)
        )
        # A license whose member is missing gets a member that exists: it leaves quarantine.
        r.execute(
            "UPDATE licenses SET member_id = %s WHERE member_id NOT IN (SELECT member_id FROM "
            f"{world['forums_url'].rsplit('/', 1)[1]}.core_members) LIMIT 3",
            (top,),
        )
        # Dedup: a member takes an email that differs from another's only by case.
        f.execute(
            "SELECT email FROM core_members WHERE email LIKE '%@%' ORDER BY member_id LIMIT 1"
        )
        (email,) = f.fetchone()
        f.execute(
            "UPDATE core_members SET email = %s, last_visit = 2000000000 WHERE member_id = %s",
            (email.upper(), top),
        )
        # An auth0 link (contributing feed) is deleted and another added.
        r.execute("DELETE FROM auth0_links ORDER BY member_id LIMIT 1")
        # A script slug becomes a case variant of an older script's slug.
        r.execute(
            "UPDATE scripts s JOIN (SELECT slug FROM scripts ORDER BY id LIMIT 1) o "
            "SET s.slug = UPPER(o.slug) WHERE s.id = (SELECT MAX(id) FROM (SELECT id FROM scripts) x)"
        )
    forums.commit()
    repo.commit()
    catch_up(settings)
    with psycopg.connect(target) as pg:
        assert pg.execute(
            "SELECT count(*) FROM rune.accounts WHERE id = %s", (uuid_for("account", victim),)
        ).fetchone() == (0,)
        (winner,) = pg.execute(
            "SELECT legacy_member_id FROM rune.accounts WHERE email = lower(btrim(%s)) AND can_login",
            (email,),
        ).fetchone()
        assert winner == top  # most recent visitor wins
    with forums.cursor() as f:
        f.execute(
            "INSERT INTO core_members (member_id, name, email, joined, last_visit, mgroup_others, timezone) "
            "VALUES (%s, 'Back', '', 0, 0, '', '')",
            (victim,),
        )
    forums.commit()
    forums.close()
    repo.close()
    catch_up(settings)
    with psycopg.connect(target) as pg:
        assert (
            pg.execute(
                "SELECT count(*) FROM rune.licenses WHERE account_id = %s",
                (uuid_for("account", victim),),
            ).fetchone()[0]
            > 1
        )
    assert_equals_fresh_backfill(world, target, pg_server_url, tmp_path)


@pytest.fixture(autouse=True)
def _no_leftover_threads():
    yield
    assert not [t for t in threading.enumerate() if t.name.startswith("binlog-")]


def test_a_follower_starts_at_the_checkpoint_not_at_the_oldest_binlog(
    mysql_url, pg_server_url, tmp_path
):
    """A database dropped and created again (same names, other rows) leaves the first
    incarnation's row events in older binlogs. Resuming from the backfill's position must not
    replay them: on MariaDB the replication client ignores file/offset unless asked by GTID,
    and replaying from the oldest binlog brought those rows back as extras."""
    tag = uuid.uuid4().hex[:6]
    forums, repo = f"sy_forums_{tag}", f"sy_repo_{tag}"
    generate_legacy_world(mysql_url, scale=0.1, seed=3, forums_db=forums, repo_db=repo)
    world = {"forums_url": mysql_url + forums, "repo_url": mysql_url + repo}
    generate_legacy_world(mysql_url, scale=0.05, seed=4, forums_db=forums, repo_db=repo)
    target = fresh_target(pg_server_url)
    settings = settings_for(world, target, tmp_path / "staging")
    run_backfill(settings)
    result = catch_up(settings)
    # nothing but heartbeats (and their table's creation) follows the backfill's position
    assert result["changes_applied"] < 200, result
    assert_equals_fresh_backfill(world, target, pg_server_url, tmp_path)


def test_exclusion_counts_move_as_a_fresh_backfills_would(mysql_url, pg_server_url, tmp_path):
    world, target, settings = backfilled(mysql_url, pg_server_url, tmp_path, seed=11)
    rule = ("repo", "compile_jobs", "rune.compile_jobs", "abandoned_compile_job")
    backfilled_count = exclusion_counts(target)[rule]
    with psycopg.connect(target) as pg:
        recorded = pg.execute(
            "SELECT count(*) FROM runeshift.excluded_keys WHERE source = 'repo' "
            "AND source_table = 'compile_jobs' AND rule = 'abandoned_compile_job'"
        ).fetchone()[0]
        start = pg.execute("SELECT source, position FROM runeshift.source_positions").fetchall()
    assert recorded == backfilled_count  # the backfill records the keys it counts
    repo = mysql_connect(world["repo_url"])
    with repo.cursor() as r:
        r.execute("SELECT id FROM compile_jobs WHERE state = 'pending' ORDER BY id LIMIT 3")
        pending = [row[0] for row in r.fetchall()]
        r.execute(
            "SELECT id, version_id FROM compile_jobs WHERE state = 'done' ORDER BY id LIMIT 1"
        )
        done, version = r.fetchone()
        assert len(pending) == 3, "the sample world has abandoned jobs"
        # new pending (+1), pending -> done (-1), done -> pending (+1), pending deleted (-1),
        # a pending job touched but still pending, then its key changed (0)
        r.execute("INSERT INTO compile_jobs (version_id, state) VALUES (%s, 'pending')", (version,))
        r.execute("UPDATE compile_jobs SET state = 'done' WHERE id = %s", (pending[0],))
        r.execute("UPDATE compile_jobs SET state = 'pending' WHERE id = %s", (done,))
        r.execute("DELETE FROM compile_jobs WHERE id = %s", (pending[1],))
        r.execute("UPDATE compile_jobs SET error = 'still nobody' WHERE id = %s", (pending[2],))
        r.execute("SELECT MAX(id) FROM compile_jobs")
        (top,) = r.fetchone()
        r.execute("UPDATE compile_jobs SET id = %s WHERE id = %s", (top + 100, pending[2]))
    repo.commit()

    def assert_counted_are_pending() -> None:
        with repo.cursor() as r:
            r.execute("SELECT id FROM compile_jobs WHERE state = 'pending'")
            now_pending = {str(row[0]) for row in r.fetchall()}
        repo.commit()
        with psycopg.connect(target) as pg:
            keys = pg.execute(
                "SELECT source_key FROM runeshift.excluded_keys WHERE source = 'repo' "
                "AND source_table = 'compile_jobs' AND rule IS NOT NULL"
            ).fetchall()
        assert {k for (k,) in keys} == now_pending
        assert exclusion_counts(target)[rule] == len(now_pending)

    catch_up(settings)
    assert_counted_are_pending()
    assert exclusion_counts(target)[rule] == backfilled_count  # +1 -1 +1 -1 +0
    # Replayed from the backfill's position again: every row is seen in the state it is
    # recorded in, so nothing moves twice.
    with psycopg.connect(target) as pg:
        for source, position in start:
            pg.execute(
                "UPDATE runeshift.source_positions SET position = %s WHERE source = %s",
                (Jsonb(position), source),
            )
    catch_up(settings)
    assert_counted_are_pending()
    with repo.cursor() as r:  # the job that became pending is deleted
        r.execute("DELETE FROM compile_jobs WHERE id = %s", (done,))
    repo.commit()
    catch_up(settings)
    assert_counted_are_pending()
    assert exclusion_counts(target)[rule] == backfilled_count - 1
    repo.close()
    assert_equals_fresh_backfill(world, target, pg_server_url, tmp_path)
