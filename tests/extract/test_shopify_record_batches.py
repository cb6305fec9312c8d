"""Flattening Shopify records into raw per-table batches, and the identity merge rules (pure)."""

from __future__ import annotations

import pytest

from extract.shopify_record_batches import SCHEMAS, flatten_records, numeric_id
from extract.shopify_streams import ShopifyRecord
from transform.mapping_identity_merge import (
    CustomerIdentity,
    MemberAccount,
    plan_identity_merge,
)

BIG = 2**53 + 7


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (f"gid://shopify/Order/{BIG}", str(BIG)),
        (str(BIG), str(BIG)),
        (BIG, str(BIG)),
        ("gid://shopify/InventoryLevel/5?inventory_item_id=9", "5"),
        ("csv:#1001", None),
        (None, None),
        (True, None),
    ],
    ids=["gid-above-2^53", "text", "int", "parameterised-gid", "csv-key", "none", "bool"],
)
def test_numeric_id_keeps_big_ids_exact(value: object, expected: str | None) -> None:
    assert numeric_id(value) == expected


def _money(amount: str, currency: str = "USD", presentment: str = "EUR") -> dict:
    return {
        "shopMoney": {"amount": amount, "currencyCode": currency},
        "presentmentMoney": {"amount": amount, "currencyCode": presentment},
    }


def test_an_order_becomes_rows_of_four_tables_with_parent_fields() -> None:
    order = ShopifyRecord(
        "orders",
        f"gid://shopify/Order/{BIG}",
        None,
        {
            "id": f"gid://shopify/Order/{BIG}",
            "legacyResourceId": str(BIG),
            "name": "#1001",
            "test": True,
            "currencyCode": "USD",
            "presentmentCurrencyCode": "EUR",
            "customer": None,
            "email": "guest@example.com",
            "totalPriceSet": _money("19.99"),
            "discountCodes": ["SPRING10"],
            "lineItems": [
                {"id": "gid://shopify/LineItem/12", "sku": "script-1-monthly", "quantity": 1},
                {"sku": "instances-5", "quantity": 2},
            ],
            "transactions": [{"id": "gid://shopify/OrderTransaction/3", "kind": "SALE"}],
            "refunds": [{"id": "gid://shopify/Refund/4", "totalRefundedSet": _money("5.00")}],
        },
    )
    flat = flatten_records("orders", [order])
    assert {t: flat.rows(t) for t in flat.batches} == {
        "orders": 1,
        "order_line_items": 2,
        "order_transactions": 1,
        "order_refunds": 1,
    }
    for table, batch in flat.batches.items():
        assert batch.schema == SCHEMAS[table], table
    row = flat.batches["orders"].to_pylist()[0]
    assert row["key"] == str(BIG) and row["customer_id"] is None
    assert row["total_price_shop_amount"] == "19.99"
    assert row["total_price_presentment_currency"] == "EUR"
    assert row["subtotal_price_shop_amount"] is None  # absent, not invented
    lines = flat.batches["order_line_items"].to_pylist()
    assert [li["key"] for li in lines] == ["12", f"{BIG}:2"]  # a line without id keys by position
    assert all(li["order_key"] == str(BIG) and li["order_test"] is True for li in lines)
    assert flat.batches["order_refunds"].to_pylist()[0]["total_refunded_shop_amount"] == "5.00"


def test_products_carry_their_variant_skus() -> None:
    product = ShopifyRecord(
        "products",
        "csv:fisher-10",
        None,
        {
            "handle": "fisher-10",
            "title": "Fisher",
            "variants": [
                {"sku": "script-10-monthly", "price": "4.99", "title": "Monthly"},
                {"sku": "script-10-lifetime", "price": "39.99", "title": "Lifetime"},
            ],
        },
    )
    flat = flatten_records("products", [product])
    assert flat.batches["products"].to_pylist()[0]["variant_skus"] == [
        "script-10-monthly",
        "script-10-lifetime",
    ]
    variants = flat.batches["product_variants"].to_pylist()
    assert [v["key"] for v in variants] == [
        "csv:fisher-10:script-10-monthly",
        "csv:fisher-10:script-10-lifetime",
    ]
    assert {v["product_key"] for v in variants} == {"csv:fisher-10"}


def _member(mid: int, email: str | None, can_login: bool = True) -> MemberAccount:
    return MemberAccount(f"acct-{mid}", mid, email, can_login)


@pytest.mark.parametrize(
    ("customers", "members", "merged", "no_login", "rules"),
    [
        pytest.param(
            [CustomerIdentity("1", 1, "a@x.org")], [_member(7, "a@x.org")],
            {"1": "acct-7"}, set(), set(), id="one-member-merges",
        ),
        pytest.param(
            [CustomerIdentity("1", 1, "b@x.org")], [_member(7, "a@x.org")],
            {}, set(), set(), id="no-member-own-account",
        ),
        pytest.param(
            [CustomerIdentity("1", 1, None)], [_member(7, None)],
            {}, set(), set(), id="no-email-own-account",
        ),
        pytest.param(
            [CustomerIdentity("1", 1, "a@x.org")],
            [_member(7, "a@x.org"), _member(8, "a@x.org", can_login=False)],
            {}, {"1"}, {"customer_matches_several_members"}, id="two-members-conflict",
        ),
        pytest.param(
            [CustomerIdentity("1", 1, "a@x.org")], [_member(7, "a@x.org", can_login=False)],
            {}, {"1"}, {"member_cannot_log_in"}, id="member-cannot-log-in",
        ),
        pytest.param(
            [CustomerIdentity("20", 20, "a@x.org"), CustomerIdentity("3", 3, "a@x.org")],
            [_member(7, "a@x.org")],
            {"3": "acct-7"}, {"20"}, {"customers_share_email"}, id="two-customers-lowest-id-holds",
        ),
    ],
)  # fmt: skip
def test_identity_merge_rules(customers, members, merged, no_login, rules) -> None:
    plan = plan_identity_merge(customers, members)
    assert plan.merged == merged
    assert plan.no_login == no_login
    assert {c.rule for c in plan.conflicts} == rules
    assert not (set(plan.merged) & plan.no_login)
