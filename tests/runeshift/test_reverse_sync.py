"""Reverse replication against the sandbox: Rune writes flow back into legacy MySQL.

Each test generates its own legacy world (the reverse path writes into it), backfills it
into a fresh Rune database, opens the reverse stream (``prepare_reverse``) and then
writes to Rune the way the Rune service does. "Converged" means: a fresh forward backfill
of the legacy databases gives, table for table, the same Rune rows (legacy equals the
inverse mapping of Rune).
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pytest

from extract.logical_decoding_reader import LogicalDecodingReader
from load.legacy_writer import POSITION_TABLE, STATE_DATABASE
from load.target_schema import upgrade
from runeshift.backfill import run_backfill
from runeshift.connections import mysql_connect
from runeshift.reverse_sync import (
    LegacyBinlogMark,
    QuarantineRule,
    ReverseFollower,
    ReverseOptions,
    drain_reverse,
    prepare_reverse,
    reverse_status,
    reversible_targets,
    run_reverse,
    verify_reverse,
)
from runeshift.sample.legacy_world import generate_legacy_world
from runeshift.secrets import Secret
from runeshift.settings import Settings
from services.rune_service.rune_store import RuneStore
from services.rune_service.shop_api import LicenseGrant
from transform.identity_keys import uuid_for
from transform.mapping_loader import load_mappings


@pytest.fixture
def world(mysql_url: str, pg_url: str, pg_server_url: str, tmp_path: Path) -> Iterator[Settings]:
    """A small legacy world of its own, backfilled into a fresh Rune database, stream open."""
    tag = uuid.uuid4().hex[:6]
    forums, repo = f"rv_{tag}_forums", f"rv_{tag}_repo"
    generate_legacy_world(mysql_url, scale=0.2, seed=11, forums_db=forums, repo_db=repo)
    upgrade(pg_url)
    settings = Settings(
        forums_url=mysql_url + forums,
        repo_url=mysql_url + repo,
        postgres_url=pg_url,
        staging=str(tmp_path / "staging"),
        shopify_token=Secret(""),
    )
    run_backfill(settings)
    prepare_reverse(settings)
    yield settings
    with psycopg.connect(pg_url, autocommit=True) as conn:
        LogicalDecodingReader(conn, "runeshift_reverse", "runeshift_reverse").drop()
    conn2 = mysql_connect(mysql_url)
    try:
        with conn2.cursor() as cur:
            cur.execute(f"DROP DATABASE IF EXISTS {forums}")
            cur.execute(f"DROP DATABASE IF EXISTS {repo}")
            cur.execute(
                f"DELETE FROM {STATE_DATABASE}.{POSITION_TABLE} WHERE slot = 'runeshift_reverse'"
            )
    finally:
        conn2.close()


def _fingerprint(pg: str, tables: list[str]) -> dict[str, str]:
    out = {}
    mappings = load_mappings()
    with psycopg.connect(pg) as conn:
        for table in tables:
            target = mappings.target(table)
            cols = ["id", *dict.fromkeys(r.target for f in target.feeds for r in f.columns)]
            if table == "rune.accounts":
                # written by the Shopify feed too (one-way), and can_login by the dedup rule
                cols = [c for c in cols if c not in ("shopify_customer_id", "can_login")]
            col_list = ", ".join(f'"{c}"' for c in cols)
            where = "WHERE legacy_member_id IS NOT NULL" if table == "rune.accounts" else ""
            row = conn.execute(
                f"SELECT count(*), md5(coalesce(string_agg(t::text, '|' ORDER BY t.id), '')) "
                f"FROM (SELECT {col_list} FROM {table} {where}) t"
            ).fetchone()
            assert row is not None
            out[table] = f"{row[0]}:{row[1]}"
    return out


def _forward_of_legacy(settings: Settings, pg_server_url: str) -> str:
    """A fresh Rune database backfilled from the legacy databases as they are now."""
    name = f"t_{uuid.uuid4().hex[:12]}"
    admin = pg_server_url.rsplit("/", 1)[0] + "/postgres"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    url = pg_server_url.rsplit("/", 1)[0] + "/" + name
    upgrade(url)
    fresh = Settings(
        forums_url=settings.forums_url,
        repo_url=settings.repo_url,
        postgres_url=url,
        staging=settings.staging + "-check",
        shopify_token=Secret(""),
    )
    run_backfill(fresh)
    return url


def _drop(pg_server_url: str, url: str) -> None:
    admin = pg_server_url.rsplit("/", 1)[0] + "/postgres"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {url.rsplit('/', 1)[1]} WITH (FORCE)")


def _row_differences(fresh: str, rune: str, tables: list[str]) -> str:
    lines = []
    for table in tables:
        rows = []
        for url in (fresh, rune):
            with psycopg.connect(url) as conn:
                rows.append({r[0]: r for r in conn.execute(f"SELECT id, t.* FROM {table} t")})
        for key in sorted(set(rows[0]) | set(rows[1]), key=str):
            if rows[0].get(key) != rows[1].get(key):
                lines.append(
                    f"{table} {key}:\n  legacy->{rows[0].get(key)}\n  rune  ->{rows[1].get(key)}"
                )
    return "\n".join(lines[:10])


def _assert_converged(settings: Settings, pg_server_url: str) -> None:
    tables = [i.table for i in reversible_targets(load_mappings())]
    fresh = _forward_of_legacy(settings, pg_server_url)
    try:
        want, got = _fingerprint(fresh, tables), _fingerprint(settings.postgres_url, tables)
        differing = [t for t in tables if want[t] != got[t]]
        assert not differing, _row_differences(fresh, settings.postgres_url, differing)
    finally:
        _drop(pg_server_url, fresh)


class RuneWrites:
    """Writes to Rune the way the Rune service does during the soak.

    New rows carry their legacy key (decision 0005): the service allocates it above the
    legacy maximum, and the id is the usual uuid5 of it.
    """

    def __init__(self, pg: str, seed: int = 3) -> None:
        self.conn = psycopg.connect(pg, autocommit=True)
        self.rng = random.Random(seed)
        self.accounts = [
            r[0]
            for r in self.conn.execute(
                "SELECT legacy_member_id FROM rune.accounts WHERE legacy_member_id IS NOT NULL "
                "AND ban_state IS NOT NULL ORDER BY 1"
            ).fetchall()
        ]
        self.scripts = [
            r[0] for r in self.conn.execute("SELECT legacy_script_id FROM rune.scripts").fetchall()
        ]
        row = self.conn.execute("SELECT max(legacy_license_id) FROM rune.licenses").fetchone()
        self.next_license = int(row[0] or 0) + 1_000
        self.written = 0

    def one(self) -> None:
        kind = self.rng.choice(("name", "ban", "license", "license_update", "allowance_delete"))
        member = self.rng.choice(self.accounts)
        account = uuid_for("account", member)
        now = datetime.now(UTC).replace(microsecond=0)
        with self.conn.transaction():
            cur = self._write(kind, member, account, now)
        # a DELETE that finds nothing commits no change, so no transaction reaches the slot
        self.written += 1 if cur.rowcount else 0

    def _write(self, kind: str, member: int, account: uuid.UUID, now: datetime) -> psycopg.Cursor:
        if True:
            if kind == "name":
                return self.conn.execute(
                    "UPDATE rune.accounts SET display_name = %s, post_count = post_count + 1 "
                    "WHERE id = %s",
                    (f"Jos\u00e9 {self.rng.randint(0, 10**6)}", account),
                )
            elif kind == "ban":
                until = now + timedelta(days=self.rng.randint(1, 30))
                return self.conn.execute(
                    "UPDATE rune.accounts SET ban_state = 'temporary', banned_until = %s "
                    "WHERE id = %s",
                    (until, account),
                )
            elif kind == "license":
                lid = self.next_license
                self.next_license += 1
                script = self.rng.choice(self.scripts)
                return self.conn.execute(
                    "INSERT INTO rune.licenses (id, legacy_license_id, account_id, script_id, "
                    "kind, starts_at, expires_at, price_paid_minor, refunded, created_at, "
                    "updated_at) VALUES (%s, %s, %s, %s, 'monthly', %s, %s, 1999, false, %s, %s)",
                    (
                        uuid_for("license", lid),
                        lid,
                        account,
                        uuid_for("script", script),
                        now,
                        now + timedelta(days=30),
                        now,
                        now,
                    ),
                )
            elif kind == "license_update":
                return self.conn.execute(
                    "UPDATE rune.licenses SET expires_at = NULL, refunded = NOT refunded, "
                    "updated_at = %s WHERE id = (SELECT id FROM rune.licenses "
                    "ORDER BY legacy_license_id DESC LIMIT 1)",
                    (now,),
                )
            else:
                return self.conn.execute(
                    "DELETE FROM rune.instance_allowances WHERE id = (SELECT id FROM "
                    "rune.instance_allowances ORDER BY legacy_pack_id LIMIT 1)"
                )

    def run(self, n: int) -> None:
        for _ in range(n):
            self.one()

    def close(self) -> None:
        self.conn.close()


def test_rune_writes_flow_back_and_legacy_equals_the_inverse(world, pg_server_url):
    writes = RuneWrites(world.postgres_url)
    writes.run(150)
    writes.close()
    result = drain_reverse(world)
    assert result.caught_up
    assert result.transactions_applied == 150
    assert result.rows_quarantined == 0
    status = reverse_status(world)
    assert status.pending_transactions == 0 and status.lag_seconds == 0
    _assert_converged(world, pg_server_url)
    # A second drain applies nothing (exactly once).
    again = drain_reverse(world)
    assert again.transactions_applied == 0


def test_converges_under_load_while_the_follower_runs(world, pg_server_url):
    follower = ReverseFollower(world, ReverseOptions(poll_seconds=0.05))
    follower.start()
    writes = RuneWrites(world.postgres_url, seed=5)
    stop = threading.Event()

    def load() -> None:
        while not stop.is_set() and writes.written < 400:
            writes.one()

    worker = threading.Thread(target=load)
    worker.start()
    time.sleep(3)
    stop.set()
    worker.join()
    writes.close()
    follower.drain(timeout_seconds=60)
    result = follower.stop()
    assert result is not None and result.rows_quarantined == 0
    _assert_converged(world, pg_server_url)


def test_a_crash_between_legacy_commit_and_slot_advance_applies_nothing_twice(world, monkeypatch):
    writes = RuneWrites(world.postgres_url, seed=9)
    writes.run(40)
    writes.close()
    # The slot never advances: as if the follower died right after the legacy commit.
    monkeypatch.setattr(LogicalDecodingReader, "advance", lambda self, lsn: None)
    first = run_reverse(world, ReverseOptions(until_caught_up=True))
    assert first.transactions_applied == 40
    monkeypatch.undo()
    second = run_reverse(world, ReverseOptions(until_caught_up=True, max_changes=10))
    assert second.transactions_applied == 0
    status = reverse_status(world)
    assert status.transactions_applied == 40 and status.pending_transactions == 0


def _cli_env(settings: Settings, home: Path) -> dict[str, str]:
    return {
        **os.environ,
        "RUNESHIFT_FORUMS_URL": settings.forums_url,
        "RUNESHIFT_REPO_URL": settings.repo_url,
        "RUNESHIFT_POSTGRES_URL": settings.postgres_url,
        "RUNESHIFT_STAGING": settings.staging,
        "RUNESHIFT_HOME": str(home),
    }


def test_kill_and_restart_of_the_follower_under_load(world, pg_server_url, tmp_path):
    env = _cli_env(world, tmp_path)
    cmd = [sys.executable, "-m", "runeshift.cli", "reverse", "run", "--json"]
    writes = RuneWrites(world.postgres_url, seed=13)
    for _round in range(3):
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 2.5
        while time.monotonic() < deadline:
            writes.one()
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
    writes.close()
    done = subprocess.run(
        [*cmd[:-1], "--until-caught-up", "--json"], env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr[-2000:]
    status = reverse_status(world)
    assert status.transactions_applied == writes.written
    assert status.pending_transactions == 0
    _assert_converged(world, pg_server_url)


def test_forward_follower_transactions_are_not_echoed(world):
    with psycopg.connect(world.postgres_url, autocommit=True) as conn, conn.transaction():
        conn.execute(
            "UPDATE rune.accounts SET post_count = post_count + 100 WHERE legacy_member_id = "
            "(SELECT min(legacy_member_id) FROM rune.accounts)"
        )
        # what the forward follower's batch does: rows and its position, one transaction
        conn.execute(
            "UPDATE runeshift.source_positions SET updated_at = now() WHERE source = 'forums'"
        )
    result = drain_reverse(world)
    assert result.transactions_applied == 0
    assert result.echo_transactions_skipped == 1


def _legacy_license(settings: Settings, legacy_id: int) -> tuple | None:
    conn = mysql_connect(settings.repo_url)
    try:
        with conn.cursor() as cur:
            cur.execute(
                "SELECT member_id, script_id, kind, refunded, expires_at FROM licenses "
                "WHERE id = %s",
                (legacy_id,),
            )
            return cur.fetchone()
    finally:
        conn.close()


def _legacy_license_count(settings: Settings) -> int:
    conn = mysql_connect(settings.repo_url)
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT count(*) FROM licenses")
            row = cur.fetchone()
            return int(row[0])
    finally:
        conn.close()


def test_licenses_the_rune_service_creates_reach_legacy_and_their_updates_the_same_row(
    world, pg_server_url
):
    """Decision 0007: the Rune service keys new licenses from the soak's sequence."""
    before = _legacy_license_count(world)
    store = RuneStore(world.postgres_url, pool_size=2)
    with psycopg.connect(world.postgres_url, autocommit=True) as conn:
        pairs = conn.execute(
            "SELECT a.legacy_member_id, s.legacy_script_id FROM rune.accounts a, rune.scripts s "
            "WHERE a.legacy_member_id IS NOT NULL ORDER BY 1, 2 LIMIT 3"
        ).fetchall()
        top = conn.execute("SELECT max(legacy_license_id) FROM rune.licenses").fetchone()
    try:
        results = [
            store.apply_write(LicenseGrant(f"rv-{uuid.uuid4().hex}", m, s, kind))
            for (m, s), kind in zip(pairs, ("trial", "lifetime", "monthly"), strict=True)
        ]
        # a replay is answered from the ledger: same row, no second license
        again = store.apply_write(
            LicenseGrant(results[0].request_id, pairs[0][0], pairs[0][1], "trial")
        )
        assert again.license_id == results[0].license_id
        status = store.write_status(results[0].request_id)
        assert status.in_rune and status.legacy_license_id is not None
    finally:
        store.close()
    with psycopg.connect(world.postgres_url, autocommit=True) as conn:
        keys = {
            str(r[0]): r[1]
            for r in conn.execute(
                "SELECT id, legacy_license_id FROM rune.licenses WHERE id = ANY(%s::uuid[])",
                ([r.license_id for r in results],),
            ).fetchall()
        }
    assert len(keys) == 3 and all(k is not None for k in keys.values())
    assert min(keys.values()) > int(top[0])  # above every legacy id
    assert status.legacy_license_id == keys[results[0].license_id]
    for license_id, key in keys.items():
        assert license_id == str(uuid_for("license", key))  # a migrated row's id for the key

    first = drain_reverse(world)
    assert first.rows_quarantined == 0 and first.transactions_applied == 3
    assert _legacy_license_count(world) == before + 3
    trial_key = keys[results[0].license_id]
    row = _legacy_license(world, trial_key)
    assert row is not None and (row[0], row[1], row[2], row[3]) == (*pairs[0], "trial", 0)
    lifetime = _legacy_license(world, keys[results[1].license_id])
    assert lifetime is not None and str(lifetime[4]).startswith("0000")  # never expires

    # A later update of the Rune row reaches the same legacy row, and nothing else.
    with psycopg.connect(world.postgres_url, autocommit=True) as conn:
        conn.execute(
            "UPDATE rune.licenses SET refunded = true, updated_at = date_trunc('second', now()) "
            "WHERE id = %s",
            (results[0].license_id,),
        )
    second = drain_reverse(world)
    assert second.rows_quarantined == 0 and second.transactions_applied == 1
    row = _legacy_license(world, trial_key)
    assert row is not None and row[3] == 1
    assert _legacy_license_count(world) == before + 3
    verification = verify_reverse(world)
    assert verification.passed, verification.failures
    _assert_converged(world, pg_server_url)


def test_verification_fails_on_a_quarantined_row_unless_a_named_rule_accepts_it(world):
    """A row the inverse cannot write is never dropped silently by verify_reverse."""
    with psycopg.connect(world.postgres_url, autocommit=True) as conn:
        # A license without a legacy key: what the service wrote before decision 0007.
        conn.execute(
            "INSERT INTO rune.licenses (id, account_id, script_id, kind, starts_at) "
            "SELECT %s, (SELECT id FROM rune.accounts WHERE legacy_member_id IS NOT NULL "
            "ORDER BY legacy_member_id LIMIT 1), (SELECT id FROM rune.scripts ORDER BY "
            "legacy_script_id LIMIT 1), 'trial', date_trunc('second', now())",
            (uuid.uuid4(),),
        )
    result = drain_reverse(world)
    assert result.rows_quarantined == 1
    verification = verify_reverse(world)
    assert verification.report.passed  # the plain reconcile cannot see the lost row
    assert not verification.passed
    assert len(verification.quarantined) == 1
    assert verification.rows_without_legacy_key == {"rune.licenses": 1}
    assert verification.as_dict()["passed"] is False
    rule = QuarantineRule(
        "test_grant", "a test grant nobody needs in legacy", "rune.licenses", "no legacy key"
    )
    accepted = verify_reverse(world, accept=[rule])
    assert accepted.quarantined == [] and accepted.excluded == {"test_grant": 1}
    # the Rune row itself still has no legacy key: still a failure, named as such
    assert [f for f in accepted.failures if "no legacy key" in f]


def _touch_legacy_license(settings: Settings, legacy_id: int) -> None:
    """A binlogged write to legacy behind the services (a cron job, an admin)."""
    conn = mysql_connect(settings.repo_url)
    try:
        with conn.cursor() as cur:
            cur.execute("UPDATE licenses SET refunded = 1 - refunded WHERE id = %s", (legacy_id,))
            assert cur.rowcount == 1
        conn.commit()
    finally:
        conn.close()


def test_the_binlog_mark_reads_ahead_and_the_held_read_adds_what_came_after(world):
    first, second = (int(r[0]) for r in _legacy_ids(world, 2))
    mark = LegacyBinlogMark.take(world)
    marked = {s: p.as_dict() for s, p in mark.positions.items()}
    _touch_legacy_license(world, first)
    mark.read_ahead()  # before the hold: finds the first write, moves on to the binlogs' end
    ahead = {s: p.as_dict() for s, p in mark.positions.items()}
    assert ahead != marked
    _touch_legacy_license(world, second)
    held = mark.writes_since()
    assert {first, second} <= held.keys["rune.licenses"]
    assert held.start == marked and held.end != ahead
    assert held.transactions >= 2
    # a read with nothing new adds nothing and repeats nothing
    again = mark.writes_since()
    assert again.keys == held.keys and again.transactions == held.transactions


def _legacy_ids(settings: Settings, count: int) -> list[tuple]:
    conn = mysql_connect(settings.repo_url)
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT id FROM licenses ORDER BY id LIMIT %s", (count,))
            return list(cur.fetchall())
    finally:
        conn.close()
