"""The store is seeded from the generated legacy world and agrees with it."""

from __future__ import annotations

import uuid
from decimal import Decimal

import pytest

from runeshift.connections import mysql_connect
from runeshift.sample import generate_legacy_world
from services.fake_shopify.shopify_seeder import build_store, seed_store
from services.fake_shopify.store_db import StoreDB
from tests.services.conftest import tiny_world


@pytest.fixture
def legacy_world(mysql_url):
    suffix = uuid.uuid4().hex[:8]
    forums, repo = f"f_{suffix}", f"r_{suffix}"
    generate_legacy_world(mysql_url, scale=0.05, seed=11, forums_db=forums, repo_db=repo)
    yield forums, repo
    conn = mysql_connect(mysql_url, database="")
    with conn.cursor() as cur:
        cur.execute(f"DROP DATABASE IF EXISTS `{forums}`")
        cur.execute(f"DROP DATABASE IF EXISTS `{repo}`")
    conn.close()


def test_every_store_license_has_its_order_and_line(mysql_url, legacy_world, tmp_path):
    forums, repo = legacy_world
    summary = seed_store(
        tmp_path / "store.db", mysql_url, scale=0.05, seed=11, forums_db=forums, repo_db=repo
    )
    conn = mysql_connect(mysql_url, database="")
    with conn.cursor() as cur:
        cur.execute(
            f"SELECT shopify_order_id, shopify_line_id, price_paid, script_id, kind FROM `{repo}`.licenses "
            "WHERE shopify_order_id IS NOT NULL"
        )
        licenses = cur.fetchall()
    conn.close()
    assert licenses, "the generated world has store licenses"
    store = StoreDB(tmp_path / "store.db")
    for order_id, line_id, price_paid, script_id, kind in licenses:
        order = store.get("orders", int(order_id))
        assert order is not None, f"order {order_id} missing"
        line = next((li for li in order["line_items"] if li["id"] == int(line_id)), None)
        assert line is not None, f"line {line_id} missing from order {order_id}"
        assert Decimal(line["price"]["presentment"]) == Decimal(price_paid)
        assert (
            line["sku"] == f"script-{script_id}-{'lifetime' if kind == 'lifetime' else 'monthly'}"
        )
        assert order["currency"] == "USD"
    assert (
        summary.store_only_orders >= 6 and summary.guest_orders > 0 and summary.ids_above_2_53 > 0
    )


def test_seeding_is_deterministic_for_a_seed():
    first = build_store(tiny_world(), scale=0.05, seed=3)
    again = build_store(tiny_world(), scale=0.05, seed=3)
    other = build_store(tiny_world(), scale=0.05, seed=4)
    assert first == again
    assert first != other


def test_customers_match_members_by_email_only_after_trimming_and_case_folding():
    contents = build_store(tiny_world(), scale=0.05, seed=7)
    emails = [c["email"] for c in contents.customers]
    normalized = [e.strip().lower() for e in emails]
    assert len(normalized) == len(set(normalized))  # Shopify keeps emails unique
    assert "ann@example.com" in normalized and "bo@example.com" in normalized
    assert any(e != e.strip().lower() for e in emails)
    guest = next(o for o in contents.orders if o["id"] == 5_000_000_004_000)  # member 4: no email
    assert guest["customer_id"] is None


@pytest.mark.parametrize(
    ("order_id", "sku", "has_product"),
    [
        (5_000_000_002_000, "script-12-monthly", False),
        (2**53 + 1_005, "script-999-monthly", False),
        (5_000_000_001_000, "script-10-monthly", True),
    ],
    ids=["retired-script", "unknown-script", "sold-script"],
)
def test_line_items_naming_retired_or_unknown_scripts_have_no_product(order_id, sku, has_product):
    contents = build_store(tiny_world(), scale=0.05, seed=7)
    order = next(o for o in contents.orders if o["id"] == order_id)
    line = next(li for li in order["line_items"] if li["sku"] == sku)
    assert (line["product_id"] is not None) == has_product


def test_eur_order_has_usd_shop_money_and_eur_presentment():
    contents = build_store(tiny_world(), scale=0.05, seed=7)
    order = next(o for o in contents.orders if o["id"] == 2**53 + 1_000)  # 9.19 = 9.99 USD in EUR
    assert order["presentment_currency"] == "EUR"
    assert order["total"] == {"shop": "9.99", "presentment": "9.19"}
