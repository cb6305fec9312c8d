"""End-to-end backfill of a generated legacy world into a fresh Rune database.

Everything runs against the sandbox servers: the legacy world is generated once
per session (scale 1) into its own databases; each test gets an empty Postgres
database upgraded to head.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import psycopg
import pyarrow.parquet as pq
import pytest

from load.target_schema import upgrade
from runeshift.backfill import run_backfill
from runeshift.connections import mysql_connect
from runeshift.errors import ConfigError
from runeshift.sample import SECRET_CANARY
from runeshift.sample.legacy_world import generate_legacy_world
from runeshift.secrets import Secret
from runeshift.settings import Settings
from runeshift.sync import SyncOptions, run_sync
from transform.identity_keys import uuid_for
from transform.mapping_loader import load_mappings

FORUMS, REPO = "bf_forums", "bf_repo"
NY = ZoneInfo("America/New_York")


@pytest.fixture(scope="session")
def legacy_world(mysql_url: str) -> dict[str, str]:
    generate_legacy_world(mysql_url, scale=1, seed=7, forums_db=FORUMS, repo_db=REPO)
    return {"forums_url": mysql_url + FORUMS, "repo_url": mysql_url + REPO}


@pytest.fixture
def target(pg_url: str) -> str:
    upgrade(pg_url)
    return pg_url


def _settings(world: dict[str, str], pg: str, staging: Path) -> Settings:
    return Settings(
        forums_url=world["forums_url"],
        repo_url=world["repo_url"],
        postgres_url=pg,
        staging=str(staging),
        shopify_token=Secret(""),
    )


def _env(world: dict[str, str], pg: str, staging: Path, home: Path) -> dict[str, str]:
    return {
        **os.environ,
        "RUNESHIFT_FORUMS_URL": world["forums_url"],
        "RUNESHIFT_REPO_URL": world["repo_url"],
        "RUNESHIFT_POSTGRES_URL": pg,
        "RUNESHIFT_STAGING": str(staging),
        "RUNESHIFT_HOME": str(home),
    }


def _fingerprint(pg: str) -> dict[str, str]:
    """A digest per target table over the id and every mapped column, in id order."""
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


def _source(world: dict[str, str], db: str, sql: str, args: tuple = ()) -> list[tuple]:
    conn = mysql_connect(world["forums_url" if db == FORUMS else "repo_url"])
    try:
        with conn.cursor() as cur:
            cur.execute(sql, args)
            return list(cur.fetchall())
    finally:
        conn.close()


def test_backfill_cli_accounts_for_every_row_and_lands_the_quirks(legacy_world, target, tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "runeshift.cli", "backfill", "--json"],
        env=_env(legacy_world, target, tmp_path / "staging", tmp_path),
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads(proc.stdout)
    assert summary["balanced"] is True
    by_source = {t["source"]: t for t in summary["tables"]}
    for qualified, t in by_source.items():
        source, table = qualified.split(".")
        db = FORUMS if source == "forums" else REPO
        (count,) = _source(legacy_world, db, f"SELECT COUNT(*) FROM {db}.{table}")[0]
        assert t["read"] == count, qualified
        assert t["read"] == t["migrated"] + t["excluded"] + t["quarantined"], qualified
    assert summary["excluded_tables"] == [
        {
            "table": "repo.api_sessions",
            "reason": pytest.approx(summary["excluded_tables"][0]["reason"]),
        }
    ]
    assert (
        by_source["repo.compile_jobs"]["excluded"]
        == _source(
            legacy_world, REPO, f"SELECT COUNT(*) FROM {REPO}.compile_jobs WHERE state = 'pending'"
        )[0][0]
        > 0
    )

    with psycopg.connect(target) as pg:
        # 1. mojibake repaired and real latin1 kept (the name column is latin1 holding bytes).
        names = _source(
            legacy_world,
            FORUMS,
            f"SELECT member_id, CAST(name AS BINARY) FROM {FORUMS}.core_members",
        )
        utf8 = [(m, n) for m, n in names if not n.isascii() and _is_utf8(n)]
        latin = [(m, n) for m, n in names if not _is_utf8(n)]
        assert utf8 and latin
        for member_id, raw in (utf8[0], latin[0]):
            (shown,) = pg.execute(
                "SELECT display_name FROM rune.accounts WHERE legacy_member_id = %s", (member_id,)
            ).fetchone()
            expected = raw.decode("utf-8") if _is_utf8(raw) else raw.decode("cp1252")
            assert shown == expected
            assert "Ã" not in shown

        # 2. a lifetime license with a zero expires_at never expires.
        lifetime = _source(
            legacy_world,
            REPO,
            f"SELECT l.id FROM {REPO}.licenses l JOIN {FORUMS}.core_members m "
            f"ON m.member_id = l.member_id JOIN {REPO}.scripts s ON s.id = l.script_id "
            f"WHERE l.kind = 'lifetime' AND l.expires_at = '0000-00-00 00:00:00' LIMIT 1",
        )
        (expires, kind) = pg.execute(
            "SELECT expires_at, kind FROM rune.licenses WHERE legacy_license_id = %s",
            (lifetime[0][0],),
        ).fetchone()
        assert expires is None and kind == "lifetime"

        # 3. a DST-ambiguous New York time follows the stated rule: first occurrence (EDT, UTC-4).
        ambiguous = _source(
            legacy_world,
            REPO,
            f"SELECT l.id, CAST(l.starts_at AS CHAR) FROM {REPO}.licenses l "
            f"JOIN {FORUMS}.core_members m ON m.member_id = l.member_id JOIN {REPO}.scripts s "
            f"ON s.id = l.script_id WHERE MONTH(l.starts_at) = 11 AND HOUR(l.starts_at) = 1 "
            f"AND DAYOFWEEK(l.starts_at) = 1 AND DAY(l.starts_at) <= 7",
        )
        assert ambiguous, "the generator plants fall-back-hour times"
        license_id, wall = ambiguous[0]
        (starts,) = pg.execute(
            "SELECT starts_at FROM rune.licenses WHERE legacy_license_id = %s", (license_id,)
        ).fetchone()
        local = datetime.fromisoformat(wall)
        assert starts == local.replace(tzinfo=UTC) + timedelta(hours=4)

        # 4. an orphan license (its member is gone) is quarantined with the reason.
        orphan = _source(
            legacy_world,
            REPO,
            f"SELECT l.id FROM {REPO}.licenses l LEFT JOIN {FORUMS}.core_members m "
            f"ON m.member_id = l.member_id WHERE m.member_id IS NULL LIMIT 1",
        )
        (reason,) = pg.execute(
            "SELECT reason FROM runeshift.quarantine WHERE source_table = 'licenses' AND source_key = %s",
            (str(orphan[0][0]),),
        ).fetchone()
        assert "orphan" in reason and "rune.accounts" in reason
        assert pg.execute(
            "SELECT count(*) FROM rune.licenses WHERE legacy_license_id = %s", (orphan[0][0],)
        ).fetchone() == (0,)

        # 5. a truncated PHP blob is quarantined, not guessed at.
        truncated = pg.execute(
            "SELECT count(*) FROM runeshift.quarantine WHERE source_table = 'scripts' AND reason LIKE 'settings:%'"
        ).fetchone()[0]
        assert truncated >= 1

        # 6. case-variant emails: one account per address can log in, by the stated rule.
        members = _source(
            legacy_world,
            FORUMS,
            f"SELECT member_id, LOWER(TRIM(CAST(email AS CHAR))), last_visit "
            f"FROM {FORUMS}.core_members WHERE TRIM(email) <> ''",
        )
        groups: dict[str, list[tuple[int, int]]] = {}
        for member_id, email, last_visit in members:
            groups.setdefault(email, []).append((member_id, last_visit))
        contested = {e: g for e, g in groups.items() if len(g) > 1}
        assert contested
        for email, group in contested.items():
            winner = sorted(group, key=lambda m: (-m[1], m[0]))[0][0]
            rows = dict(
                pg.execute(
                    "SELECT legacy_member_id, can_login FROM rune.accounts WHERE email = %s",
                    (email,),
                ).fetchall()
            )
            assert rows.get(winner) is True, email
            assert sum(rows.values()) == 1
        decisions = pg.execute(
            "SELECT count(*) FROM runeshift.dedup_decisions WHERE rule = 'case_variant_email'"
        ).fetchone()[0]
        assert decisions == sum(len(g) - 1 for g in contested.values())

        # Contributing feeds land on the same account: auth0 link and profile.
        member_id, sub = _source(
            legacy_world,
            REPO,
            f"SELECT a.member_id, CAST(a.auth0_sub AS CHAR) FROM "
            f"{REPO}.auth0_links a JOIN {FORUMS}.core_members m USING (member_id) LIMIT 1",
        )[0]
        got = pg.execute(
            "SELECT auth0_sub FROM rune.accounts WHERE id = %s", (uuid_for("account", member_id),)
        ).fetchone()
        assert got == (sub,)


def _is_utf8(raw: bytes) -> bool:
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def test_rerun_changes_nothing(legacy_world, target, tmp_path):
    settings = _settings(legacy_world, target, tmp_path / "staging")
    first = run_backfill(settings)
    before = _fingerprint(target)
    with psycopg.connect(target) as pg:
        xmins = pg.execute(
            "SELECT md5(string_agg(xmin::text, ',' ORDER BY id)) FROM rune.licenses"
        ).fetchone()
    counted = _excluded_keys(target)
    assert counted, "the sample world has abandoned compile jobs"
    second = run_backfill(settings)
    assert second.backfill_id != first.backfill_id and not second.resumed
    assert _fingerprint(target) == before
    assert _excluded_keys(target) == counted  # recorded afresh, for the new backfill
    with psycopg.connect(target) as pg:
        assert (
            pg.execute(
                "SELECT md5(string_agg(xmin::text, ',' ORDER BY id)) FROM rune.licenses"
            ).fetchone()
            == xmins
        )
    assert [(t.read, t.migrated, t.quarantined) for t in second.tables] == [
        (t.read, t.migrated, t.quarantined) for t in first.tables
    ]


def test_kill_and_resume_at_several_points_ends_identical(legacy_world, pg_server_url, tmp_path):
    reference_db = _fresh_db(pg_server_url, "ref")
    run_backfill(_settings(legacy_world, reference_db, tmp_path / "ref-staging"))
    expected = _fingerprint(reference_db)

    killed_db = _fresh_db(pg_server_url, "killed")
    env = _env(legacy_world, killed_db, tmp_path / "staging", tmp_path)
    head = _fresh_db(pg_server_url, "head")
    head_indexes = _indexes(head)
    assert _indexes(reference_db) == head_indexes
    assert _constraints(reference_db) == _constraints(head)
    deferred_seen: set[str] = set()
    # A real kill -9 at three different moments of one long run, then a clean resume.
    for kill_after_chunks in (3, 15, 40):
        proc = subprocess.Popen(
            [sys.executable, "-m", "runeshift.cli", "backfill", "--chunk-rows", "250"],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        _wait_for_chunks(killed_db, kill_after_chunks, proc)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        # the table being loaded had its plain indexes dropped, and the record says so
        pending = _deferred_indexes(killed_db)
        present = _indexes(killed_db)
        for table, names in pending.items():
            assert names and not any(n in {i for _, i, _ in present} for n in names), table
        deferred_seen |= set(pending)
    # And a stop between two chunks (a clean checkpoint boundary).
    partial = run_backfill(
        _settings(legacy_world, killed_db, tmp_path / "staging"),
        chunk_rows=250,
        stop_after_chunks=2,
    )
    assert partial.resumed
    deferred_seen |= set(_deferred_indexes(killed_db))
    final = run_backfill(_settings(legacy_world, killed_db, tmp_path / "staging"), chunk_rows=250)
    assert final.resumed and final.balanced
    assert _fingerprint(killed_db) == expected
    assert _excluded_keys(killed_db) == _excluded_keys(reference_db)
    # every index the head schema defines is back, exactly as defined, and none is pending
    assert deferred_seen, "no kill landed while indexes were deferred"
    assert _deferred_indexes(killed_db) == {}
    assert _indexes(killed_db) == head_indexes
    assert _constraints(killed_db) == _constraints(head)


def _excluded_keys(pg: str) -> dict[tuple[str, str, str], str]:
    """(source, source table, key) -> the rule a backfill counted it under; per rule as counted."""
    with psycopg.connect(pg) as conn:
        rows = conn.execute(
            "SELECT source, source_table, source_key, rule FROM runeshift.excluded_keys"
        ).fetchall()
        counts = conn.execute(
            "SELECT source, source_table, rule, row_count FROM runeshift.exclusions "
            "WHERE row_count > 0 AND source <> 'shopify'"
        ).fetchall()
    keys = {(s, t, k): rule for s, t, k, rule in rows}
    per_rule: dict[tuple[str, str, str], int] = {}
    for s, t, _k, rule in rows:
        per_rule[(s, t, rule)] = per_rule.get((s, t, rule), 0) + 1
    assert per_rule == {(s, t, rule): n for s, t, rule, n in counts}
    return keys


def _indexes(pg: str) -> set[tuple[str, str, str]]:
    """(table, index name, definition) of every index in the rune schema."""
    return _catalog(
        pg, "SELECT tablename, indexname, indexdef FROM pg_indexes WHERE schemaname = 'rune'"
    )


def _constraints(pg: str) -> set[tuple[str, str, str]]:
    """(table, constraint name, definition) of every constraint in the rune schema."""
    return _catalog(
        pg,
        "SELECT t.relname, c.conname, pg_get_constraintdef(c.oid) FROM pg_constraint c "
        "JOIN pg_class t ON t.oid = c.conrelid JOIN pg_namespace n ON n.oid = t.relnamespace "
        "WHERE n.nspname = 'rune'",
    )


def _catalog(pg: str, query: str) -> set[tuple[str, str, str]]:
    with psycopg.connect(pg) as conn:
        return {(t, n, d) for t, n, d in conn.execute(query).fetchall()}


def _deferred_indexes(pg: str) -> dict[str, list[str]]:
    """Indexes a backfill dropped and has not built yet, by table (from runeshift.runs)."""
    from runeshift.control_store import deferred_indexes

    with psycopg.connect(pg) as conn:
        return {
            table: [i.name.split(".")[-1] for i in indexes]
            for table, indexes in deferred_indexes(conn).items()
        }


def test_deferred_indexes_are_built_by_a_run_that_does_not_load_their_table(
    legacy_world, target, pg_server_url, tmp_path
):
    settings = _settings(legacy_world, target, tmp_path / "staging")
    run_backfill(settings, tables=["roles"])
    run_backfill(settings, tables=["accounts"], chunk_rows=250, stop_after_chunks=1)
    with psycopg.connect(target) as conn:
        loaded = conn.execute("SELECT count(*) FROM rune.accounts").fetchone()
    # exactly the one chunk the budget allows is committed (not skipped as the run stops)
    assert loaded is not None and 0 < loaded[0] <= 250
    pending = _deferred_indexes(target)
    assert list(pending) == ["rune.accounts"] and "ix_accounts_email" in pending["rune.accounts"]
    assert not any(name == "ix_accounts_email" for _, name, _ in _indexes(target))
    # the legacy member id is unique by construction, so its constraint waits too; the
    # primary key stays (other tables' foreign keys stand on it)
    assert "uq_accounts_legacy_member_id" in pending["rune.accounts"]
    assert "pk_accounts" not in pending["rune.accounts"]
    # until the backfill ends, nothing else may write the table: the catch-up refuses
    with pytest.raises(ConfigError, match=r"backfill of rune\.accounts is not finished"):
        run_sync(settings, options=SyncOptions(until_caught_up=True))
    # the next run loads another table only: it builds the pending indexes first
    run_backfill(settings, tables=["roles"])
    assert _deferred_indexes(target) == {}
    head = _fresh_db(pg_server_url, "head")
    assert _indexes(target) == _indexes(head)
    assert _constraints(target) == _constraints(head)


def _fresh_db(server_url: str, name: str) -> str:
    import uuid

    db = f"{name}_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(server_url.rsplit("/", 1)[0] + "/postgres", autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {db}")
    url = server_url.rsplit("/", 1)[0] + "/" + db
    upgrade(url)
    return url


def _wait_for_chunks(pg: str, at_least: int, proc: subprocess.Popen) -> None:
    deadline = time.monotonic() + 120
    with psycopg.connect(pg, autocommit=True) as conn:
        while time.monotonic() < deadline:
            (n,) = conn.execute("SELECT count(*) FROM runeshift.backfill_chunks").fetchone()
            if n >= at_least or proc.poll() is not None:
                return
            time.sleep(0.02)
    raise AssertionError("backfill made no progress")


def test_secrets_never_reach_target_staging_logs_or_reports(legacy_world, target, tmp_path):
    planted = _source(
        legacy_world,
        FORUMS,
        f"SELECT COUNT(*) FROM {FORUMS}.core_members WHERE members_pass_hash LIKE %s",
        (f"%{SECRET_CANARY}%",),
    )[0][0]
    assert planted > 0
    staging = tmp_path / "staging"
    proc = subprocess.run(
        [sys.executable, "-m", "runeshift.cli", "--debug", "backfill", "--json"],
        env=_env(legacy_world, target, staging, tmp_path),
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert SECRET_CANARY not in proc.stdout + proc.stderr
    dump = subprocess.run(
        ["pg_dump", "--data-only", "--schema=rune", "--schema=runeshift", target],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "core_members" in dump or "rune" in dump
    assert SECRET_CANARY not in dump
    files = list(staging.rglob("*"))
    assert any(f.suffix == ".parquet" for f in files)
    for f in files:
        if f.suffix == ".parquet":
            assert SECRET_CANARY not in json.dumps(pq.read_table(f).to_pylist(), default=repr)
        elif f.is_file():
            assert SECRET_CANARY.encode() not in f.read_bytes()


def test_backfill_stages_on_s3(legacy_world, target, s3_endpoint):
    import boto3

    settings = Settings(
        forums_url=legacy_world["forums_url"],
        repo_url=legacy_world["repo_url"],
        postgres_url=target,
        staging="s3://migration/runeshift",
        s3_endpoint_url=s3_endpoint,
        shopify_token=Secret(""),
    )
    result = run_backfill(settings, tables=["roles", "accounts", "scripts", "licenses"])
    assert result.balanced and result.staging == "s3://migration/runeshift"
    keys = [
        o["Key"]
        for page in boto3.client("s3", endpoint_url=s3_endpoint)
        .get_paginator("list_objects_v2")
        .paginate(Bucket="migration", Prefix=f"runeshift/{result.backfill_id}/")
        for o in page.get("Contents", [])
    ]
    assert f"runeshift/{result.backfill_id}/manifest.json" in keys
    licenses = [k for k in keys if "/repo/licenses/chunk-" in k]
    with psycopg.connect(target) as pg:
        (chunks,) = pg.execute(
            "SELECT count(*) FROM runeshift.backfill_chunks WHERE source_table = 'licenses'"
        ).fetchone()
    assert len(licenses) == chunks > 0
