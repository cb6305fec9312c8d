"""Failure behaviour of the follower, against real servers (issue 5, part 4).

kill -9 and restart converge; SIGTERM drains and commits; a standby takes over when the
active follower dies; a MariaDB restart mid-stream reconnects and resumes; a purged binlog
is refused with the remedy; DDL on a mapped table pauses only that table; a row the mapping
rejects is quarantined and the stream goes on.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import psycopg
import pytest

from runeshift.backfill import run_backfill
from runeshift.connections import mysql_connect
from runeshift.errors import FatalError
from runeshift.sample.legacy_traffic import LegacyTraffic
from runeshift.sandbox import Sandbox
from runeshift.sync import SyncOptions, run_sync
from tests.runeshift.test_sync import (
    assert_equals_fresh_backfill,
    catch_up,
    fresh_target,
    fresh_world,
    settings_for,
)


def _env(world: dict[str, str], pg: str, home: Path) -> dict[str, str]:
    return {
        **os.environ,
        "RUNESHIFT_FORUMS_URL": world["forums_url"],
        "RUNESHIFT_REPO_URL": world["repo_url"],
        "RUNESHIFT_POSTGRES_URL": pg,
        "RUNESHIFT_STAGING": str(home / "staging"),
        "RUNESHIFT_HOME": str(home),
    }


def _spawn(env: dict[str, str], *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "runeshift.cli", "sync", "--json", *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _state(pg: str) -> dict[str, tuple]:
    with psycopg.connect(pg) as conn:
        try:
            rows = conn.execute(
                "SELECT source, follower, transactions_applied FROM runeshift.sync_state"
            ).fetchall()
        except psycopg.errors.UndefinedTable:
            return {}
    return {r[0]: (r[1], r[2]) for r in rows}


def _wait(check, timeout: float = 60.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture
def world_and_target(mysql_url, pg_server_url, tmp_path):
    world = fresh_world(mysql_url, scale=0.1, seed=13)
    target = fresh_target(pg_server_url)
    settings = settings_for(world, target, tmp_path / "staging")
    run_backfill(settings)
    return world, target, settings


def _traffic(world, rate: float, seed: int):
    gen = LegacyTraffic(world["forums_url"], world["repo_url"], seed=seed)
    stop = threading.Event()
    thread = threading.Thread(target=gen.run, args=(rate,), kwargs={"stop": stop})
    thread.start()
    return gen, stop, thread


def test_kill_9_and_sigterm_then_restart_converge(world_and_target, pg_server_url, tmp_path):
    world, target, settings = world_and_target
    env = _env(world, target, tmp_path)
    gen, stop, thread = _traffic(world, 200, seed=21)
    try:
        for _ in range(3):
            before = sum(t for _, t in _state(target).values())
            proc = _spawn(env)
            _wait(
                lambda b=before: sum(t for _, t in _state(target).values()) > b + 20,
                what="the follower to apply transactions",
            )
            proc.send_signal(signal.SIGKILL)
            proc.communicate()
        proc = _spawn(env)
        me = f"{os.uname().nodename}:{proc.pid}"
        _wait(
            lambda: {f for f, _ in _state(target).values()} == {me},
            what="the new follower to apply",
        )
        proc.send_signal(signal.SIGTERM)
        try:
            out, errs = proc.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            dump = subprocess.run(
                ["uvx", "py-spy", "dump", "--pid", str(proc.pid)], capture_output=True, text=True
            )
            proc.kill()
            proc.communicate()
            raise AssertionError("SIGTERM did not drain within 60 s:\n" + dump.stdout) from None
        assert proc.returncode == 0, errs[-2000:]
        drained = json.loads(out)
        assert drained["status"] == "stopped" and drained["transactions_applied"] > 0
        with psycopg.connect(target) as conn:
            stored = dict(
                conn.execute("SELECT source, position FROM runeshift.source_positions").fetchall()
            )
        assert stored == drained["positions"]  # what it reported is what it committed
    finally:
        stop.set()
        thread.join()
        gen.close()
    catch_up(settings)
    assert_equals_fresh_backfill(world, target, pg_server_url, tmp_path)


def test_standby_takes_over_when_the_active_follower_dies(world_and_target, tmp_path):
    world, target, _settings = world_and_target
    env = _env(world, target, tmp_path)
    first = _spawn(env)
    _wait(lambda: len(_state(target)) == 2, what="the first follower to apply")
    second = _spawn(env)
    time.sleep(2)
    followers = {f for f, _ in _state(target).values()}
    assert followers == {f"{os.uname().nodename}:{first.pid}"}  # the standby applies nothing
    status = subprocess.run(
        [sys.executable, "-m", "runeshift.cli", "sync", "status", "--json"],
        env=env,
        capture_output=True,
        text=True,
    )
    assert json.loads(status.stdout)["active_follower"] is True
    first.send_signal(signal.SIGKILL)
    first.communicate()
    conn = mysql_connect(world["repo_url"])
    with conn.cursor() as cur:
        cur.execute("UPDATE licenses SET refunded = 1 - refunded WHERE id = 1")
    conn.close()
    _wait(
        lambda: {f for f, _ in _state(target).values()} == {f"{os.uname().nodename}:{second.pid}"},
        what="the standby to take over",
    )
    second.send_signal(signal.SIGTERM)
    second.communicate(timeout=30)
    assert second.returncode == 0


def test_mariadb_restart_mid_stream_reconnects_and_resumes(
    world_and_target, sandbox_home, pg_server_url, tmp_path
):
    world, target, settings = world_and_target
    stop = threading.Event()
    results = []
    follower = threading.Thread(
        target=lambda: results.append(run_sync(settings, stop=stop)), name="follower"
    )
    follower.start()
    _wait(lambda: len(_state(target)) == 2, what="following")
    mariadb, _ = Sandbox(sandbox_home).servers()
    mariadb.stop()
    time.sleep(1)
    mariadb.start()
    conn = mysql_connect(world["forums_url"])
    with conn.cursor() as cur:
        cur.execute("UPDATE core_members SET temp_ban = -1 ORDER BY member_id LIMIT 5")
    conn.close()
    time.sleep(3)
    stop.set()
    follower.join(60)
    assert results and results[0].status == "stopped"
    catch_up(settings)
    assert_equals_fresh_backfill(world, target, pg_server_url, tmp_path)


def test_purged_binlog_is_refused_with_the_remedy(world_and_target, mysql_url):
    _world, target, settings = world_and_target
    with psycopg.connect(target) as pg:
        (position,) = pg.execute(
            "SELECT position->>'file' FROM runeshift.source_positions WHERE source = 'repo'"
        ).fetchone()
    conn = mysql_connect(mysql_url)
    with conn.cursor() as cur:
        cur.execute("FLUSH BINARY LOGS")
        cur.execute("SHOW MASTER STATUS")
        newest = cur.fetchone()[0]

        def purged() -> bool:
            # MariaDB skips files a binlog client still reads (a dump thread that lingers
            # after an earlier test's follower went away), so purge until it is gone.
            cur.execute(f"PURGE BINARY LOGS TO '{newest}'")
            cur.execute("SHOW BINARY LOGS")
            return position not in {r[0] for r in cur.fetchall()}

        _wait(purged, timeout=30, what="the binlog to be purged")
    conn.close()
    with pytest.raises(FatalError, match=r"purged.*backfill --tables"):
        run_sync(settings, options=SyncOptions(until_caught_up=True, timeout_seconds=30))


def test_ddl_pauses_only_that_table_and_rejected_rows_do_not_stall(
    world_and_target, pg_server_url, tmp_path
):
    world, target, settings = world_and_target
    stop = threading.Event()
    follower = threading.Thread(target=run_sync, args=(settings,), kwargs={"stop": stop})
    follower.start()
    _wait(lambda: len(_state(target)) == 2, what="following")
    with psycopg.connect(target) as pg:
        (license_id,) = pg.execute(
            "SELECT min(legacy_license_id) FROM rune.licenses WHERE NOT refunded"
        ).fetchone()
    repo = mysql_connect(world["repo_url"])
    with repo.cursor() as cur:
        cur.execute("ALTER TABLE script_reviews ADD COLUMN helpful INT NOT NULL DEFAULT 0")
        cur.execute(
            "INSERT INTO script_reviews (script_id, member_id, rating, created_at, helpful) "
            "SELECT MIN(id), 1, 5, NOW(), 3 FROM scripts"
        )
        cur.execute(
            "INSERT INTO script_versions (script_id, version, source_path, compile_status, uploaded_at) "
            "VALUES (999999999, '9.9', '/x', 'queued', 1)"
        )  # an orphan: quarantined
        cur.execute("UPDATE licenses SET refunded = 1 WHERE id = %s", (license_id,))
    repo.close()
    time.sleep(3)
    stop.set()
    follower.join(60)
    with psycopg.connect(target) as pg:
        paused = pg.execute(
            "SELECT source, source_table, findings FROM runeshift.sync_paused_tables"
        ).fetchall()
        assert [(s, t) for s, t, _ in paused] == [("repo", "script_reviews")]
        assert (
            paused[0][2][0]["kind"] == "unmapped_column" and paused[0][2][0]["column"] == "helpful"
        )
        assert pg.execute(
            "SELECT refunded FROM rune.licenses WHERE legacy_license_id = %s", (license_id,)
        ).fetchone() == (True,)
        assert (
            pg.execute(
                "SELECT count(*) FROM runeshift.quarantine WHERE source_table = 'script_versions' "
                "AND resolved_at IS NULL AND reason LIKE 'orphan%'"
            ).fetchone()[0]
            >= 1
        )
    status = subprocess.run(
        [sys.executable, "-m", "runeshift.cli", "sync", "status"],
        env=_env(world, target, tmp_path),
        capture_output=True,
        text=True,
    )
    assert "paused" in status.stdout and "helpful" in status.stdout, status.stdout + status.stderr
