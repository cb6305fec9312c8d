"""Fixtures for the fake Shopify server: a small legacy world, a seeded store, a live server."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from services.fake_shopify.http_server import FakeShopifyServer, ServerConfig
from services.fake_shopify.shopify_seeder import (
    LegacyLicense,
    LegacyMember,
    LegacyScript,
    LegacyWorld,
    build_store,
    write_store,
)

TOKEN = "shpat_test_token"


def tiny_world() -> LegacyWorld:
    """A hand-made legacy world: 6 members, 4 scripts (one retired), 7 store licenses."""
    members = [
        LegacyMember(1, "Ann Lee", "ann@example.com"),
        LegacyMember(2, "Bo Kim", " BO@example.com "),
        LegacyMember(3, "José Ruiz", "jose@example.com"),
        LegacyMember(4, "No Mail", ""),
        LegacyMember(5, "Dup Case", "Ann@Example.com"),
        LegacyMember(6, "Eve Ng", "eve@example.com"),
    ]
    scripts = [
        LegacyScript(
            10, "Fisher", "fisher", "approved", 1, Decimal("4.99"), datetime(2017, 1, 2, 3, 4)
        ),
        LegacyScript(
            11, "Miner", "miner", "approved", 1, Decimal("9.99"), datetime(2018, 5, 6, 7, 8)
        ),
        LegacyScript(12, "Old Bot", "old-bot", "retired", 1, Decimal("2.99"), None),
        LegacyScript(13, "Free Bot", "free", "approved", 0, None, None),
    ]
    big = 2**53 + 1_000
    licenses = [
        LegacyLicense(
            1,
            1,
            10,
            "monthly",
            datetime(2019, 3, 10, 1, 30),
            5_000_000_001_000,
            12_000_000_000_001,
            Decimal("4.99"),
            0,
            None,
        ),
        LegacyLicense(
            2,
            1,
            11,
            "lifetime",
            datetime(2019, 3, 10, 1, 30),
            5_000_000_001_000,
            12_000_000_000_002,
            Decimal("79.99"),
            1,
            None,
        ),
        LegacyLicense(
            3,
            2,
            12,
            "monthly",
            datetime(2020, 11, 1, 1, 30),
            5_000_000_002_000,
            12_000_000_000_003,
            Decimal("2.99"),
            0,
            None,
        ),
        LegacyLicense(
            4,
            3,
            10,
            "lifetime",
            datetime(2021, 6, 1, 12, 0),
            5_000_000_003_000,
            12_000_000_000_004,
            Decimal("39.99"),
            0,
            None,
        ),
        LegacyLicense(
            5,
            4,
            11,
            "monthly",
            datetime(2022, 1, 1, 12, 0),
            5_000_000_004_000,
            12_000_000_000_005,
            Decimal("9.99"),
            0,
            None,
        ),
        LegacyLicense(
            6,
            6,
            11,
            "monthly",
            datetime(2024, 7, 1, 12, 0),
            big,
            12_000_000_000_006,
            Decimal("9.19"),
            0,
            None,
        ),
        LegacyLicense(
            7,
            99,
            999,
            "monthly",
            datetime(2024, 8, 1, 12, 0),
            big + 5,
            12_000_000_000_007,
            Decimal("3.00"),
            1,
            None,
        ),
    ]
    return LegacyWorld(members, scripts, licenses, [1, 5])


@pytest.fixture
def store_path(tmp_path: Path) -> Path:
    path = tmp_path / "store.db"
    write_store(path, build_store(tiny_world(), scale=0.06, seed=7))
    return path


@pytest.fixture
def server(store_path: Path):
    config = ServerConfig(db_path=store_path, token=TOKEN)
    with FakeShopifyServer(config) as running:
        yield running


def call(
    url: str,
    *,
    body: Any = None,
    token: str | None = TOKEN,
    raw: bytes | None = None,
    content_type: str = "application/json",
    method: str | None = None,
) -> tuple[int, dict[str, str], Any]:
    """One HTTP request; returns (status, lowercase-named headers as sent, decoded JSON body)."""
    data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
    headers = {"Content-Type": content_type}
    if token is not None:
        headers["X-Shopify-Access-Token"] = token
    request = urllib.request.Request(url, data=data, headers=headers, method=method)
    try:
        with urllib.request.urlopen(request, timeout=30) as resp:
            status, hdrs, payload = resp.status, resp.headers, resp.read()
    except urllib.error.HTTPError as exc:
        status, hdrs, payload = exc.code, exc.headers, exc.read()
    names = {k: v for k, v in hdrs.items()}
    return status, names, json.loads(payload) if payload else None


def gql(
    server: FakeShopifyServer,
    query: str,
    variables: dict[str, Any] | None = None,
    version: str = "2026-01",
    token: str | None = TOKEN,
) -> tuple[int, dict[str, str], Any]:
    return call(
        f"{server.admin_url(version)}/graphql.json",
        body={"query": query, "variables": variables or {}},
        token=token,
    )


def control(server: FakeShopifyServer, name: str, payload: dict[str, Any] | None = None) -> Any:
    method = "GET" if payload is None else "POST"
    status, _, body = call(
        f"{server.base_url}/__fake__/{name}", body=payload, token=None, method=method
    )
    assert status == 200, body
    return body
