"""Reconciliation of a live world: the follower applies while the reconcile runs.

The first pass compares the source in a snapshot with a target that is wherever the
follower has got to, so rows written during the run differ for a moment; the settle window
re-checks them once the follower has passed a fresh snapshot. These tests show that a run
under steady traffic reports no false difference (and that the window had work to do),
that a difference planted in the target while everything runs is still found, exactly,
and, deterministically, that a recheck maps the source as it stands in its own snapshot.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import psycopg
import pytest

from load.target_schema import upgrade
from reconcile.reconcile_run import ReconcileOptions, run_reconcile
from reconcile.report_model import TableResult
from reconcile.settle_window import BinlogPoint, follower_running, wait_until_applied
from runeshift.backfill import run_backfill
from runeshift.connections import mysql_connect
from runeshift.sample.legacy_traffic import LegacyTraffic, TrafficSummary
from runeshift.sample.legacy_world import generate_legacy_world
from runeshift.settings import Settings
from runeshift.sync import run_sync
from transform.mapping_loader import load_mappings

RATE = 150  # source row writes per second, for the whole run
SCALE = 0.5  # ~1,000 members and ~5,000 licenses: a run long enough for rows to change in it


@pytest.fixture
def world(mysql_url: str, pg_server_url: str, tmp_path: Path) -> Iterator[Settings]:
    """A generated legacy world in its own databases, backfilled into a fresh target."""
    tag = uuid.uuid4().hex[:6]
    forums, repo, name = f"rl_forums_{tag}", f"rl_repo_{tag}", f"rl_{tag}"
    generate_legacy_world(mysql_url, scale=SCALE, seed=17, forums_db=forums, repo_db=repo)
    admin = pg_server_url.rsplit("/", 1)[0] + "/postgres"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    target = pg_server_url.rsplit("/", 1)[0] + "/" + name
    upgrade(target)
    settings = Settings(
        forums_url=mysql_url + forums,
        repo_url=mysql_url + repo,
        postgres_url=target,
        staging=str(tmp_path / "staging"),
        home=tmp_path,
    )
    try:
        run_backfill(settings)
        yield settings
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        server = mysql_connect(mysql_url)
        with server.cursor() as cur:
            cur.execute(f"DROP DATABASE IF EXISTS {forums}")
            cur.execute(f"DROP DATABASE IF EXISTS {repo}")
        server.close()


class _Thread(threading.Thread):
    """Runs ``fn``; an exception is kept for the test to raise, not lost in the thread."""

    def __init__(self, fn: Callable[..., object], *args: object, **kwargs: object) -> None:
        super().__init__(daemon=True)
        self.fn, self.args_, self.kwargs_ = fn, args, kwargs
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            self.fn(*self.args_, **self.kwargs_)
        except BaseException as exc:
            self.error = exc


def _master_position(url: str) -> dict[str, object]:
    conn = mysql_connect(url)
    try:
        with conn.cursor() as cur:
            cur.execute("SHOW MASTER STATUS")
            file, position = cur.fetchone()[:2]
    finally:
        conn.close()
    return {"file": file, "position": int(position)}


@contextlib.contextmanager
def following(
    settings: Settings, rate: float | None = None, *, spare_scripts: Sequence[int] = ()
) -> Iterator[TrafficSummary]:
    """The follower running (its positions recorded), and traffic at ``rate`` rows/s if given
    (never choosing the ``spare_scripts``)."""
    stop_follow, stop_traffic = threading.Event(), threading.Event()
    follower = _Thread(run_sync, settings, stop=stop_follow)
    traffic = LegacyTraffic(settings.forums_url, settings.repo_url, seed=23)
    traffic.scripts = [s for s in traffic.scripts if s not in spare_scripts]
    writer = _Thread(traffic.run, rate, stop=stop_traffic)
    follower.start()
    try:
        with psycopg.connect(settings.postgres_url) as conn:
            deadline = time.monotonic() + 30
            while not all(follower_running(conn, s) for s in ("forums", "repo")):
                assert time.monotonic() < deadline and follower.error is None, follower.error
                time.sleep(0.1)
            # Caught up before anything else happens: its first batch re-applies rows of the
            # backfilled world (all of rune.compile_jobs, with no such change in the binlog),
            # which would mend a row planted before it.
            point = BinlogPoint.parse(_master_position(settings.repo_url))
            assert point is not None
            for source in ("forums", "repo"):
                assert wait_until_applied(conn, source, point, timeout=30).passed
        if rate is not None:
            writer.start()
            time.sleep(1)  # the follower has something to apply when the reconcile starts
        yield traffic.summary
        for thread in (writer, follower):
            if thread.error is not None:
                raise thread.error
        assert follower.is_alive() and (rate is None or writer.is_alive())
    finally:
        stop_traffic.set()
        if writer.is_alive():
            writer.join(30)
        stop_follow.set()
        follower.join(60)
        traffic.close()
    assert not follower.is_alive() and follower.error is None, follower.error


def mapped_tables() -> set[str]:
    return {
        t.table
        for t in load_mappings().targets
        if any(f.primary and f.source in ("forums", "repo") for f in t.feeds)
    }


def test_a_run_under_steady_traffic_reports_no_false_difference(world):
    with following(world, RATE) as traffic:
        writes_before, began = traffic.writes, time.monotonic()
        report = run_reconcile(world, ReconcileOptions(chunk_rows=500, quality=False))
        seconds, writes_during = time.monotonic() - began, traffic.writes - writes_before
    found = [
        (d.table, d.source_key, d.kind, d.columns) for t in report.tables for d in t.differences
    ]
    assert found == []
    assert report.status == "clean" and report.passed
    assert {t.target for t in report.tables} == mapped_tables()
    assert writes_during >= 0.5 * RATE * seconds  # the traffic wrote for the whole run
    # The window had work: rows written during the run differed in the first pass and
    # settled on a recheck (without the window they would be reported as differences).
    settled = {t.target: t.settled for t in report.tables}
    assert sum(settled.values()) >= 5, settled


def test_a_difference_planted_while_traffic_runs_is_found_exactly(world, tmp_path):
    target = world.postgres_url
    env = {
        **os.environ,
        "RUNESHIFT_FORUMS_URL": world.forums_url,
        "RUNESHIFT_REPO_URL": world.repo_url,
        "RUNESHIFT_POSTGRES_URL": target,
        "RUNESHIFT_HOME": str(tmp_path),
    }
    cmd = [sys.executable, "-m", "runeshift.cli", "reconcile", "--no-quality", "--output", "json"]
    # Rows nothing writes during the run: an old version and its compile job (traffic only
    # updates the versions it uploads and only inserts jobs) of a script the traffic is told
    # to spare and whose slug no other script shares in any case, so no write reaches them
    # through their script either (the follower re-derives a script's versions and jobs
    # from the source when the script leaves or re-enters the target).
    repo = mysql_connect(world.repo_url)
    with repo.cursor() as cur:
        cur.execute("SELECT MIN(id) FROM scripts GROUP BY LOWER(TRIM(slug)) HAVING COUNT(*) = 1")
        lonely = [int(r[0]) for r in cur.fetchall()]
    repo.close()
    with psycopg.connect(target) as pg:
        version, job, script = pg.execute(
            "SELECT v.legacy_version_id, j.legacy_job_id, s.legacy_script_id "
            "FROM rune.compile_jobs j JOIN rune.script_versions v ON v.id = j.script_version_id "
            "JOIN rune.scripts s ON s.id = v.script_id WHERE s.legacy_script_id = ANY(%s) "
            "ORDER BY j.legacy_job_id LIMIT 1",
            (lonely,),
        ).fetchone()
    planted = (
        "SELECT (SELECT changelog LIKE '%%(planted)' FROM rune.script_versions "
        "WHERE legacy_version_id = %s), (SELECT count(*) FROM rune.compile_jobs "
        "WHERE legacy_job_id = %s)"
    )
    with (
        following(world, RATE, spare_scripts=[script]) as traffic,
        psycopg.connect(target, autocommit=True) as pg,
    ):
        pg.execute(
            "UPDATE rune.script_versions SET changelog = coalesce(changelog, '') || ' (planted)' "
            "WHERE legacy_version_id = %s",
            (version,),
        )
        pg.execute("DELETE FROM rune.compile_jobs WHERE legacy_job_id = %s", (job,))
        writes_before = traffic.writes
        run = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
        writes_during = traffic.writes - writes_before
        assert pg.execute(planted, (version, job)).fetchone() == (True, 0)  # still planted
    assert run.returncode == 1, run.stderr[-2000:]
    doc = json.loads(run.stdout)
    found = {
        (t["target"], d["source_key"], d["kind"]): [c["column"] for c in d["columns"]]
        for t in doc["tables"]
        for d in t["differences"]
    }
    assert found == {
        ("rune.script_versions", version, "changed"): ["changelog"],
        ("rune.compile_jobs", job, "missing"): [],
    }
    assert doc["status"] == "failed" and doc["passed"] is False
    assert {t["target"] for t in doc["tables"]} == mapped_tables()
    # Live, not a quiet database: the source was written during the run, other rows settled
    # on a recheck, and the planted ones survived every round of the settle window.
    assert writes_during > RATE
    assert doc["totals"]["settled_on_recheck"] > 0
    assert {d["rechecks"] for t in doc["tables"] for d in t["differences"]} == {3}


class _ChangeSourceMidRun:
    """Progress hook: when a table's compare starts (the run's snapshot already taken),
    write to the source and wait until the follower has applied it to the target."""

    def __init__(self, settings: Settings, changes: dict[str, Callable[[], None]]) -> None:
        self.settings, self.changes = settings, changes

    def table_started(self, name: str) -> None:
        change = self.changes.get(name)
        if change is not None:
            change()

    def table_finished(self, name: str, result: TableResult) -> None:
        pass


def _until(pg_url: str, sql: str, args: tuple, expected: object) -> None:
    deadline = time.monotonic() + 30
    with psycopg.connect(pg_url, autocommit=True) as pg:
        while pg.execute(sql, args).fetchone() != expected:
            assert time.monotonic() < deadline, f"the follower never applied: {sql} {args}"
            time.sleep(0.05)


def test_a_recheck_maps_the_source_as_it_stands_in_its_own_snapshot(world):
    """Changes made after the first pass's snapshot and applied by the follower settle.

    A visit makes a case-variant email's loser the account that may log in (dedup must be
    planned again in the recheck's snapshot), and a member who signs up and reviews a script
    during the run (reference checks must see the accounts the follower has applied since).
    Before the fix the first pass's losers and reference ids were reused, and both were
    reported on every round.
    """
    target = world.postgres_url
    with psycopg.connect(target) as pg:
        loser, email = pg.execute(
            "SELECT a.legacy_member_id, a.email FROM rune.accounts a WHERE NOT a.can_login "
            "AND EXISTS (SELECT 1 FROM rune.accounts w WHERE w.email = a.email AND w.can_login) "
            "ORDER BY 1 LIMIT 1"
        ).fetchone()
        (winner,) = pg.execute(
            "SELECT legacy_member_id FROM rune.accounts WHERE email = %s AND can_login", (email,)
        ).fetchone()
        (script,) = pg.execute("SELECT min(legacy_script_id) FROM rune.scripts").fetchone()
        (newcomer,) = pg.execute(
            "SELECT max(legacy_member_id) + 1000 FROM rune.accounts"
        ).fetchone()
    forums, repo = mysql_connect(world.forums_url), mysql_connect(world.repo_url)

    def visit() -> None:
        with forums.cursor() as cur:
            cur.execute(
                "UPDATE core_members SET last_visit = 2000000000 WHERE member_id = %s", (loser,)
            )
        forums.commit()
        _until(
            target,
            "SELECT can_login FROM rune.accounts WHERE legacy_member_id = %s",
            (loser,),
            (True,),
        )

    def signup_and_review() -> None:
        with forums.cursor() as cur:
            cur.execute(
                "INSERT INTO core_members (member_id, name, email, joined, last_visit, "
                "mgroup_others, timezone) VALUES (%s, 'Newcomer', '', 0, 0, '', '')",
                (newcomer,),
            )
        forums.commit()
        with repo.cursor() as cur:
            cur.execute(
                "INSERT INTO script_reviews (script_id, member_id, rating, body, created_at) "
                "VALUES (%s, %s, 5, 'first!', NOW())",
                (script, newcomer),
            )
        repo.commit()
        _until(
            target,
            "SELECT count(*) FROM rune.reviews r JOIN rune.accounts a ON a.id = r.account_id "
            "WHERE a.legacy_member_id = %s",
            (newcomer,),
            (1,),
        )

    hook = _ChangeSourceMidRun(world, {"rune.accounts": visit, "rune.reviews": signup_and_review})
    try:
        with following(world):
            report = run_reconcile(world, ReconcileOptions(quality=False), progress=hook)
    finally:
        forums.close()
        repo.close()
    found = [
        (d.table, d.source_key, d.kind, d.note, d.columns)
        for t in report.tables
        for d in t.differences
    ]
    assert found == []
    settled = {t.target: t.settled for t in report.tables if t.settled}
    # Both accounts of the email changed who may log in; the review was new.
    assert settled == {"rune.accounts": 2, "rune.reviews": 1}, (settled, winner)
