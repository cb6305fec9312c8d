"""The generated legacy world on a real MariaDB: schema, quirks, determinism, consistency."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from runeshift.connections import mysql_connect
from runeshift.sample import SECRET_CANARY, generate_legacy_world, legacy_checksum
from runeshift.sample.legacy_ddl import rename_database, shipped_ddl, split_statements
from runeshift.sample.legacy_quirks import QUIRKS, find_quirk_rows
from runeshift.sample.shopify_linkage import currency_for_order, price_in_currency

SHARED_LEGACY = Path(__file__).resolve().parents[3].parent / "shared" / "legacy"
SEED = 11


@dataclass(frozen=True)
class World:
    url: str
    forums: str
    repo: str
    seed: int


def _names(tag: str) -> tuple[str, str]:
    suffix = uuid.uuid4().hex[:8]
    return f"t_{tag}_forums_{suffix}", f"t_{tag}_repo_{suffix}"


def _drop(url: str, *databases: str) -> None:
    conn = mysql_connect(url, database="")
    try:
        with conn.cursor() as cur:
            for db in databases:
                cur.execute(f"DROP DATABASE IF EXISTS {db}")
    finally:
        conn.close()


def _query(url: str, sql: str, args: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    conn = mysql_connect(url, database="")
    try:
        with conn.cursor() as cur:
            cur.execute(sql, args)
            return list(cur.fetchall())
    finally:
        conn.close()


@pytest.fixture(scope="module")
def world(mysql_url: str) -> Iterator[World]:
    forums, repo = _names("world")
    generate_legacy_world(mysql_url, scale=0.1, seed=SEED, forums_db=forums, repo_db=repo)
    yield World(mysql_url, forums, repo, SEED)
    _drop(mysql_url, forums, repo)


def _reference_ddl(database: str) -> str:
    shared = SHARED_LEGACY / f"{database}.sql"
    return shared.read_text() if shared.is_file() else shipped_ddl(database)  # type: ignore[arg-type]


SCHEMA_QUERIES = {
    "columns": "SELECT TABLE_NAME, COLUMN_NAME, ORDINAL_POSITION, DATA_TYPE, COLUMN_TYPE, "
    "IS_NULLABLE, COLUMN_DEFAULT, CHARACTER_SET_NAME, COLLATION_NAME, EXTRA "
    "FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = %s ORDER BY 1, 3",
    "keys": "SELECT TABLE_NAME, INDEX_NAME, NON_UNIQUE, SEQ_IN_INDEX, COLUMN_NAME, INDEX_TYPE "
    "FROM information_schema.STATISTICS WHERE TABLE_SCHEMA = %s ORDER BY 1, 2, 4",
    "tables": "SELECT TABLE_NAME, ENGINE, TABLE_COLLATION FROM information_schema.TABLES "
    "WHERE TABLE_SCHEMA = %s ORDER BY 1",
    "database": "SELECT DEFAULT_CHARACTER_SET_NAME, DEFAULT_COLLATION_NAME "
    "FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = %s",
}


@pytest.mark.parametrize("what", list(SCHEMA_QUERIES))
def test_generated_schema_equals_shared_ddl(world: World, what: str) -> None:
    ref_forums, ref_repo = _names("ref")
    conn = mysql_connect(world.url, database="")
    try:
        with conn.cursor() as cur:
            for original, target in (("tribot_forums", ref_forums), ("tribot_repo", ref_repo)):
                for statement in split_statements(
                    rename_database(_reference_ddl(original), original, target)  # type: ignore[arg-type]
                ):
                    cur.execute(statement)
        for generated, reference in ((world.forums, ref_forums), (world.repo, ref_repo)):
            got = _query(world.url, SCHEMA_QUERIES[what], (generated,))
            want = _query(world.url, SCHEMA_QUERIES[what], (reference,))
            assert got and got == want
    finally:
        conn.close()
        _drop(world.url, ref_forums, ref_repo)


@pytest.mark.parametrize("quirk", QUIRKS, ids=[q.key for q in QUIRKS])
def test_every_quirk_is_present_at_scale_0_1(world: World, quirk: Any) -> None:
    rows = find_quirk_rows(world.url, quirk.key, forums_db=world.forums, repo_db=world.repo)
    assert rows, f"quirk {quirk.number} ({quirk.description}) has no rows"


def test_same_seed_same_bytes_other_seed_other_data(world: World) -> None:
    same_f, same_r = _names("same")
    other_f, other_r = _names("other")
    try:
        generate_legacy_world(
            world.url, scale=0.1, seed=world.seed, forums_db=same_f, repo_db=same_r
        )
        generate_legacy_world(
            world.url, scale=0.1, seed=world.seed + 1, forums_db=other_f, repo_db=other_r
        )
        original = legacy_checksum(world.url, world.forums, world.repo)
        assert legacy_checksum(world.url, same_f, same_r) == original
        assert legacy_checksum(world.url, other_f, other_r) != original
    finally:
        _drop(world.url, same_f, same_r, other_f, other_r)


def test_regenerating_replaces_the_databases(mysql_url: str) -> None:
    forums, repo = _names("again")
    try:
        generate_legacy_world(mysql_url, scale=0.1, seed=1, forums_db=forums, repo_db=repo)
        _query(mysql_url, f"INSERT INTO {repo}.api_sessions VALUES ('x', 1, NOW(), NOW())")
        summary = generate_legacy_world(
            mysql_url, scale=0.1, seed=1, forums_db=forums, repo_db=repo
        )
        count = _query(mysql_url, f"SELECT COUNT(*) FROM {repo}.api_sessions")[0][0]
        assert count == summary.rows[f"{repo}.api_sessions"] == 20
    finally:
        _drop(mysql_url, forums, repo)


def test_volumes_at_scale_0_1(world: World) -> None:
    count = {
        t: _query(world.url, f"SELECT COUNT(*) FROM {db}.{t}")[0][0]
        for db, t in [
            (world.forums, "core_members"),
            (world.forums, "core_pfields_content"),
            (world.repo, "licenses"),
            (world.repo, "scripts"),
            (world.repo, "auth0_links"),
            (world.repo, "script_versions"),
            (world.repo, "api_sessions"),
        ]
    }
    assert 180 <= count["core_members"] <= 200
    assert 1000 <= count["licenses"] <= 1050
    assert 0.6 < count["auth0_links"] / count["core_members"] < 0.8
    assert count["core_pfields_content"] / count["core_members"] > 0.75
    assert count["script_versions"] >= 2 * count["scripts"]
    groups = {g for (g,) in _query(world.url, f"SELECT g_id FROM {world.forums}.core_groups")}
    assert {2, 3, 4, 7, 12, 13} <= groups and len(groups) > 6


@pytest.mark.parametrize(
    ("quirk", "expected_hex"),
    [
        pytest.param("mojibake-member-with-licenses", "4A6F73C3A9", id="mojibake-jose"),
        pytest.param("latin1-member-name", "436166E9", id="latin1-cafe"),
    ],
)
def test_name_bytes_are_stored_as_generated(world: World, quirk: str, expected_hex: str) -> None:
    rows = find_quirk_rows(world.url, quirk, forums_db=world.forums, repo_db=world.repo)
    assert expected_hex in {hex_name for _, hex_name in rows}


def test_every_secret_carries_the_canary(world: World) -> None:
    hashes = _query(
        world.url, f"SELECT members_pass_hash, members_pass_salt FROM {world.forums}.core_members"
    )
    assert hashes and all(
        h.startswith("$2y$10$" + SECRET_CANARY) and len(h) == 60 and s.startswith(SECRET_CANARY)
        for h, s in hashes
    )
    tokens = _query(world.url, f"SELECT token FROM {world.repo}.api_sessions")
    assert tokens and all(t.startswith(SECRET_CANARY) and len(t) == 64 for (t,) in tokens)


def test_license_kinds_expiry_and_orders_are_consistent(world: World) -> None:
    rows = _query(
        world.url,
        "SELECT l.kind, CAST(l.starts_at AS CHAR), CAST(l.expires_at AS CHAR), l.shopify_order_id, "
        "l.shopify_line_id, l.price_paid, s.monthly_price, DATEDIFF(l.expires_at, l.starts_at) "
        f"FROM {world.repo}.licenses l LEFT JOIN {world.repo}.scripts s ON s.id = l.script_id",
    )
    by_kind: dict[str, int] = {}
    for kind, starts, expires, order, line, paid, monthly, days in rows:
        by_kind[kind] = by_kind.get(kind, 0) + 1
        if kind == "lifetime":
            assert expires == "0000-00-00 00:00:00"
        if kind == "trial":
            assert days == 7 and order is None and paid == Decimal("0.00")
        if kind == "staff":
            assert order is None and paid == Decimal("0.00")
        if kind == "monthly":
            # '+1 month' on the wall clock, anchored to the subscription's first day.
            assert 28 <= days <= 31 and starts[11:] == expires[11:]
            if order is not None and monthly is not None:
                currency = currency_for_order(order, world.seed)
                assert paid == price_in_currency(monthly, currency)
        assert (order is None) == (line is None)
    assert by_kind["monthly"] > by_kind["lifetime"] > by_kind["trial"] > 0 and by_kind["staff"] > 0
    orders = [r[3] for r in rows if r[3] is not None]
    assert min(orders) >= 5_000_000_000_000 and max(orders) > 2**53
    lines = [r[4] for r in rows if r[4] is not None]
    assert len(lines) == len(set(lines))
