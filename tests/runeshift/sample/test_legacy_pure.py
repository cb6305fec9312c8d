"""Server-free pieces of the legacy generator: clock, PHP serializer, DDL text, Shopify linkage."""

from __future__ import annotations

import random
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from runeshift.errors import ConfigError
from runeshift.sample.legacy_clock import (
    DatetimeFormatter,
    add_months,
    utc_to_wall,
    wall_seconds,
    wall_to_utc,
)
from runeshift.sample.legacy_ddl import rename_database, shipped_ddl, split_statements
from runeshift.sample.legacy_generator import LegacyWorldGenerator
from runeshift.sample.php_serializer import php_serialize
from runeshift.sample.shopify_linkage import (
    currency_for_order,
    lifetime_price_usd,
    price_in_currency,
)

SHARED_LEGACY = Path(__file__).resolve().parents[3].parent / "shared" / "legacy"
NEW_YORK = ZoneInfo("America/New_York")


@pytest.mark.parametrize("database", ["tribot_forums", "tribot_repo"])
def test_shipped_ddl_is_byte_identical_to_shared(database: str) -> None:
    shared = SHARED_LEGACY / f"{database}.sql"
    if not shared.is_file():
        pytest.skip(f"{SHARED_LEGACY} is absent (no shared/ folder beside the clone)")
    assert shipped_ddl(database).encode() == shared.read_bytes()


def test_clock_matches_zoneinfo_for_new_york() -> None:
    rng = random.Random(5)
    start = int(datetime(2012, 1, 1, tzinfo=UTC).timestamp())
    end = int(datetime(2025, 1, 1, tzinfo=UTC).timestamp())
    fmt = DatetimeFormatter()
    samples = [rng.randint(start, end) for _ in range(5000)]
    # Include the instants right around every transition of 2021.
    samples += [int(datetime(2021, 3, 14, 6, 59, 59, tzinfo=UTC).timestamp()) + d for d in (0, 1)]
    samples += [int(datetime(2021, 11, 7, 5, 59, 59, tzinfo=UTC).timestamp()) + d for d in (0, 1)]
    for utc in samples:
        expected = datetime.fromtimestamp(utc, NEW_YORK).strftime("%Y-%m-%d %H:%M:%S")
        assert fmt(utc_to_wall(utc)) == expected, utc
        assert wall_to_utc(utc_to_wall(utc)) == utc or _is_second_fall_back_hour(utc)


def _is_second_fall_back_hour(utc: int) -> bool:
    return datetime.fromtimestamp(utc, NEW_YORK).fold == 1


@pytest.mark.parametrize(
    ("wall", "expected_utc"),
    [
        pytest.param((2021, 11, 7, 1, 30), "2021-11-07 05:30:00", id="fall-back-first-occurrence"),
        pytest.param((2021, 3, 14, 2, 30), "2021-03-14 07:30:00", id="spring-gap-read-as-standard"),
        pytest.param((2021, 7, 1, 12, 0), "2021-07-01 16:00:00", id="summer"),
    ],
)
def test_wall_to_utc_follows_fold_zero(wall: tuple[int, ...], expected_utc: str) -> None:
    fmt = DatetimeFormatter()
    assert fmt(wall_to_utc(wall_seconds(*wall))) == expected_utc


@pytest.mark.parametrize(
    ("start", "months", "expected"),
    [
        pytest.param((2024, 1, 31), 1, "2024-02-29 02:30:00", id="clamps-to-leap-day"),
        pytest.param((2021, 2, 14), 1, "2021-03-14 02:30:00", id="lands-in-dst-gap"),
        pytest.param((2023, 11, 30), 3, "2024-02-29 02:30:00", id="crosses-year"),
    ],
)
def test_add_months_is_wall_clock_arithmetic(
    start: tuple[int, int, int], months: int, expected: str
) -> None:
    assert DatetimeFormatter()(add_months(wall_seconds(*start, 2, 30), months)) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        pytest.param(True, b"b:1;", id="bool"),
        pytest.param(600, b"i:600;", id="int"),
        pytest.param(0.5, b"d:0.5;", id="float"),
        pytest.param(1.0, b"d:1;", id="float-integral"),
        pytest.param("café", b's:5:"caf\xc3\xa9";', id="multibyte-counts-bytes"),
        pytest.param("🔥", b's:4:"\xf0\x9f\x94\xa5";', id="four-byte"),
        pytest.param(None, b"N;", id="null"),
        pytest.param(["a", 2], b'a:2:{i:0;s:1:"a";i:1;i:2;}', id="list"),
        pytest.param({"gui": {"x": False}}, b'a:1:{s:3:"gui";a:1:{s:1:"x";b:0;}}', id="nested"),
    ],
)
def test_php_serialize(value: object, expected: bytes) -> None:
    assert php_serialize(value) == expected  # type: ignore[arg-type]


def test_split_statements_ignores_semicolons_and_quotes_in_comments() -> None:
    sql = "SET a = 1; -- it's; a comment\nCREATE TABLE t (x VARCHAR(3) DEFAULT 'a;b'); # no;\nUSE x"
    assert split_statements(sql) == [
        "SET a = 1",
        "CREATE TABLE t (x VARCHAR(3) DEFAULT 'a;b')",
        "USE x",
    ]


def test_shipped_repo_ddl_splits_into_its_tables() -> None:
    statements = split_statements(shipped_ddl("tribot_repo"))
    creates = [s.split()[2] for s in statements if s.startswith("CREATE TABLE")]
    assert creates == [
        "auth0_links",
        "scripts",
        "script_versions",
        "licenses",
        "instance_packs",
        "script_reviews",
        "compile_jobs",
        "api_sessions",
    ]


def test_rename_database_touches_only_create_and_use() -> None:
    renamed = rename_database(shipped_ddl("tribot_repo"), "tribot_repo", "copy_repo")
    assert "CREATE DATABASE IF NOT EXISTS copy_repo DEFAULT" in renamed
    assert "\nUSE copy_repo;" in renamed
    assert "tribot_forums.core_members.member_id" in renamed  # the comment is left alone
    with pytest.raises(ConfigError, match="not a plain identifier"):
        rename_database(shipped_ddl("tribot_repo"), "tribot_repo", "x; DROP DATABASE y")


def test_currency_for_order_is_a_fixed_mix_per_seed() -> None:
    orders = range(5_000_000_000_000, 5_000_000_002_000)
    first = [currency_for_order(o, 1) for o in orders]
    assert first == [currency_for_order(o, 1) for o in orders]
    assert first != [currency_for_order(o, 2) for o in orders]
    share = {c: first.count(c) / len(first) for c in ("USD", "EUR", "GBP")}
    assert 0.78 < share["USD"] < 0.92 and share["EUR"] > 0.05 and share["GBP"] > 0.02


@pytest.mark.parametrize(
    ("usd", "currency", "expected"),
    [
        pytest.param("9.99", "USD", "9.99", id="usd"),
        pytest.param("9.99", "EUR", "9.19", id="eur"),
        pytest.param("19.99", "GBP", "15.79", id="gbp"),
    ],
)
def test_price_in_currency(usd: str, currency: str, expected: str) -> None:
    assert price_in_currency(Decimal(usd), currency) == Decimal(expected)  # type: ignore[arg-type]


def test_lifetime_price_ends_in_99() -> None:
    assert lifetime_price_usd(Decimal("9.99")) == Decimal("79.99")
    assert lifetime_price_usd(Decimal("0.00")) == Decimal("0.00")


def test_generator_plans_are_deterministic_and_scale() -> None:
    small = LegacyWorldGenerator(scale=0.1, seed=3)
    again = LegacyWorldGenerator(scale=0.1, seed=3)
    assert list(small.core_members()) == list(again.core_members())
    assert list(small.core_members()) != list(
        LegacyWorldGenerator(scale=0.1, seed=4).core_members()
    )
    assert (small.n_members, small.n_licenses) == (200, 1000)
    big = LegacyWorldGenerator(scale=1, seed=3)
    assert (big.n_members, big.n_licenses, big.n_scripts) == (2000, 10000, 120)
