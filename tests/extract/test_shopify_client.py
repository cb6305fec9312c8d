"""ShopifyClient against the fake Shopify Admin API over real HTTP.

Also the home of the fake-server fixture and the store seed the other
``test_shopify_*`` modules import.
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import urllib3

from extract.shopify_client import RetryPolicy, ShopifyClient, parse_link_header
from runeshift.errors import ConfigError, TransientError
from services.fake_shopify.bulk_operations import BulkKnobs
from services.fake_shopify.http_server import FakeShopifyServer, ServerConfig
from services.fake_shopify.store_db import StoreDB

TOKEN = "shpat_test_token_0001"
SEED_START = datetime(2024, 1, 1, tzinfo=UTC)


def ts(hours: float) -> str:
    return (SEED_START + timedelta(hours=hours)).strftime("%Y-%m-%dT%H:%M:%SZ")


def _bag(shop: str, rate: float = 0.9) -> dict[str, str]:
    return {"shop": shop, "presentment": f"{float(shop) * rate:.2f}"}


def seed_store(db: Path, *, customers: int = 25, products: int = 12, orders: int = 40) -> None:
    """A small deterministic store: multi-address customers, a 120-variant product,
    orders with up to 25 line items, discounts, shipping, taxes, transactions, refunds."""
    rng = random.Random(42)
    store = StoreDB(db)
    store.put_many(
        "customers",
        [
            {
                "id": 1000 + i,
                "email": f"c{i}@example.com" if i % 7 else None,
                "first_name": f"First{i}",
                "last_name": "Müller" if i % 3 == 0 else f"Last{i}",
                "created_at": ts(i),
                "updated_at": ts(i + 0.5),
                "tags": ["vip"] if i % 4 == 0 else [],
                "orders_count": i % 5,
                "total_spent": f"{i * 10.5:.2f}",
                "addresses": [
                    {
                        "id": 10_000 + i * 10 + k,
                        "address1": f"{k + 1} Main St",
                        "city": "Albany",
                        "province_code": "NY",
                        "country_code": "US",
                        "zip": "12207",
                    }
                    for k in range(i % 4)
                ],
            }
            for i in range(customers)
        ],
    )
    product_docs = []
    for i in range(products):
        count = 120 if i == 0 else 1 + i % 3
        sizes = [f"S{k}" for k in range(count)]
        product_docs.append(
            {
                "id": 2000 + i,
                "title": f"Product {i}",
                "handle": f"product-{i}",
                "body_html": "<p>Runes &amp; more</p>",
                "vendor": "Tribot",
                "product_type": "Scripts",
                "status": "ACTIVE",
                "tags": ["a", "b"],
                "created_at": ts(i),
                "updated_at": ts(i + 0.25),
                "options": [{"id": 30_000 + i, "name": "Size", "position": 1, "values": sizes}],
                "variants": [
                    {
                        "id": 40_000 + i * 200 + k,
                        "product_id": 2000 + i,
                        "title": size,
                        "sku": f"SKU-{i}-{k}",
                        "price": f"{5 + k % 10}.99",
                        "position": k + 1,
                        "option1": size,
                        "inventory_quantity": k % 5,
                    }
                    for k, size in enumerate(sizes)
                ],
            }
        )
    store.put_many("products", product_docs)
    order_docs = []
    for i in range(orders):
        n_items = 25 if i % 10 == 0 else 1 + rng.randrange(4)
        items = [
            {
                "id": 60_000 + i * 100 + k,
                "title": f"Product {k % products}",
                "sku": f"SKU-{k % products}-0",
                "quantity": 1 + k % 3,
                "price": _bag("5.00"),
                "product_id": 2000 + k % products,
                "variant_id": 40_000 + (k % products) * 200,
                "tax_lines": [{"title": "NY State Tax", "rate": "0.04", "price": _bag("0.20")}],
            }
            for k in range(n_items)
        ]
        order_docs.append(
            {
                "id": 5000 + i,
                "name": f"#{1001 + i}",
                "order_number": 1001 + i,
                "email": f"c{i % customers}@example.com",
                "customer_id": 1000 + i % customers if i % 9 else None,
                "created_at": ts(i),
                "updated_at": ts(i + 0.75),
                "currency": "USD",
                "presentment_currency": "EUR" if i % 2 else "USD",
                "subtotal": _bag("10.00"),
                "total": _bag("14.00"),
                "total_tax": _bag("0.40"),
                "total_shipping": _bag("4.00"),
                "discount_codes": (
                    [{"code": "TENOFF", "amount": _bag("1.00"), "type": "fixed_amount"}]
                    if i % 3 == 0
                    else []
                ),
                "line_items": items,
                "shipping_lines": [{"id": 70_000 + i, "title": "Standard", "price": _bag("4.00")}],
                "tax_lines": [{"title": "NY State Tax", "rate": "0.04", "price": _bag("0.40")}],
                "transactions": [
                    {
                        "id": 80_000 + i,
                        "kind": "sale",
                        "status": "success",
                        "amount": _bag("14.00"),
                        "created_at": ts(i),
                    },
                ],
                "refunds": (
                    [
                        {
                            "id": 90_000 + i,
                            "created_at": ts(i + 0.5),
                            "total_refunded": _bag("5.00"),
                            "refund_line_items": [
                                {
                                    "id": 95_000 + i,
                                    "line_item_id": items[0]["id"],
                                    "quantity": 1,
                                    "subtotal": _bag("5.00"),
                                },
                            ],
                        }
                    ]
                    if i % 5 == 0
                    else []
                ),
                "total_refunded": _bag("5.00" if i % 5 == 0 else "0.00"),
                "financial_status": "partially_refunded" if i % 5 == 0 else "paid",
                "test": i == 3,
            }
        )
    store.put_many("orders", order_docs)
    store.close()


@dataclass
class FakeShop:
    """A running fake server and the handles tests need."""

    server: FakeShopifyServer
    db: Path

    @property
    def base_url(self) -> str:
        return self.server.base_url

    def control(self, method: str, name: str, payload: dict[str, Any] | None = None) -> Any:
        response = urllib3.request(
            method,
            f"{self.base_url}/__fake__/{name}",
            body=json.dumps(payload or {}).encode() if method == "POST" else None,
            headers={"Content-Type": "application/json"},
        )
        assert response.status == 200, response.data
        return json.loads(response.data)

    def requests(self, settle: float = 0.05) -> list[dict[str, Any]]:
        """The request log once it stops growing (the fake logs after it has answered)."""
        log = list(self.control("GET", "requests")["requests"])
        while True:
            time.sleep(settle)
            again = list(self.control("GET", "requests")["requests"])
            if len(again) == len(log):
                return again
            log = again

    def next_seq(self) -> int:
        log = self.requests()
        return (max(r["seq"] for r in log) if log else 0) + 1

    def fault(
        self, action: str, *, at: int | None = None, repeat: bool = False, **extra: Any
    ) -> None:
        rule = {"action": action, "at": at or self.next_seq(), "repeat": repeat, **extra}
        self.control("POST", "faults", {"rules": [rule]})

    def client(self, **kwargs: Any) -> ShopifyClient:
        kwargs.setdefault("retry", RetryPolicy(max_attempts=5, base_delay=0.05, max_delay=0.5))
        return ShopifyClient(self.base_url, lambda: TOKEN, **kwargs)


@pytest.fixture
def start_fake(tmp_path: Path) -> Iterator[Callable[..., FakeShop]]:
    """Start a seeded fake Shopify on a free loopback port (config fields as keywords)."""
    servers: list[FakeShopifyServer] = []

    def start(seed: bool = True, bulk: BulkKnobs | None = None, **config: Any) -> FakeShop:
        db = tmp_path / f"store{len(servers)}.db"
        if seed:
            seed_store(db)
        cfg = ServerConfig(
            db_path=db, token=TOKEN, bulk=bulk or BulkKnobs(start_delay=0.05), **config
        )
        server = FakeShopifyServer(cfg).start()
        servers.append(server)
        return FakeShop(server, db)

    yield start
    for server in servers:
        server.stop()


@pytest.fixture
def fake_shop(start_fake: Callable[..., FakeShop]) -> FakeShop:
    return start_fake()


SHOP_QUERY = "{ shop { name currencyCode } }"
CUSTOMERS_QUERY = "query($first: Int!) { customers(first: $first) { edges { node { id email } } } }"


def test_graphql_query_pins_the_version_and_notes_the_fall_forward(fake_shop: FakeShop) -> None:
    client = fake_shop.client()
    result = client.graphql(SHOP_QUERY)
    assert result.data["shop"]["currencyCode"] == "USD"
    assert result.cost.status is not None
    # 2025-07 is retired on the fake's calendar, so Shopify answers with the oldest supported.
    assert fake_shop.requests()[-1]["path"] == "/admin/api/2025-07/graphql.json"
    assert client.served_api_version == "2025-10"


def test_401_asks_the_token_provider_again_once(fake_shop: FakeShop) -> None:
    fresh = fake_shop.control("POST", "rotate-token", {"token": "shpat_rotated_0002"})["token"]
    tokens = iter([TOKEN, fresh])
    client = ShopifyClient(fake_shop.base_url, lambda: next(tokens))
    assert client.graphql(SHOP_QUERY).data["shop"]
    assert client.stats.token_refreshes == 1
    assert [r["status"] for r in fake_shop.requests()] == [401, 200]


def test_401_after_refresh_is_a_config_error_naming_the_setting(fake_shop: FakeShop) -> None:
    client = ShopifyClient(fake_shop.base_url, lambda: "shpat_wrong_0003")
    with pytest.raises(ConfigError, match="RUNESHIFT_SHOPIFY_TOKEN") as err:
        client.graphql(SHOP_QUERY)
    assert "shpat_wrong_0003" not in str(err.value)
    assert len(fake_shop.requests()) == 2


@pytest.mark.parametrize(
    "action", ["500", "502", "503", "429", "reset", "invalid-json"], ids=lambda a: f"fault-{a}"
)
def test_transient_faults_are_retried(fake_shop: FakeShop, action: str) -> None:
    client = fake_shop.client()
    fake_shop.fault(action, retry_after=0.2)
    result = client.graphql(CUSTOMERS_QUERY, {"first": 5})
    assert len(result.data["customers"]["edges"]) == 5
    log = fake_shop.requests()
    assert [r["fault"] for r in log] == [action, None]
    assert sum(client.stats.retries.values()) == 1


def test_429_waits_at_least_retry_after(fake_shop: FakeShop) -> None:
    slept: list[float] = []
    client = fake_shop.client(sleep=slept.append)
    fake_shop.fault("429", retry_after=1.5)
    client.graphql(SHOP_QUERY)
    assert slept and slept[0] >= 1.5


def test_persistent_5xx_gives_up_with_a_transient_error_naming_the_endpoint(
    fake_shop: FakeShop,
) -> None:
    client = fake_shop.client()
    fake_shop.fault("503", repeat=True, retry_after=None)
    with pytest.raises(
        TransientError, match=r"POST /admin/api/2025-07/graphql.json: failed 5 times"
    ):
        client.graphql(SHOP_QUERY)
    assert len(fake_shop.requests()) == 5


def test_steady_state_pacing_never_sees_throttled(start_fake: Callable[..., FakeShop]) -> None:
    bucket, restore = 200.0, 200.0
    shop = start_fake(bucket_size=bucket, restore_rate=restore)
    client = shop.client()
    query = (
        "query($first: Int!) { orders(first: $first) { edges { node { id "
        "lineItems(first: 5) { edges { node { id } } } } } } }"
    )
    for _ in range(10):
        client.graphql(query, {"first": 20})
    log = shop.requests()
    throttled = [r["seq"] for r in log if r["throttled"]]
    # The first query's cost is unknown until Shopify reports it; after that, none.
    assert len(throttled) <= 1 and all(seq == log[0]["seq"] for seq in throttled)
    assert log[-1]["requested_cost"] > bucket / 2  # every second query must wait
    assert client.stats.paced_seconds > 0
    spent = sum(r["actual_cost"] or 0 for r in log)
    elapsed = log[-1]["started_at"] - log[0]["started_at"]
    assert spent <= bucket + restore * elapsed


def test_a_bucket_drained_by_another_app_is_waited_out(fake_shop: FakeShop) -> None:
    client = fake_shop.client()
    client.graphql(CUSTOMERS_QUERY, {"first": 50})
    fake_shop.control("POST", "faults", {"drain_bucket": True})
    result = client.graphql(CUSTOMERS_QUERY, {"first": 50})
    assert len(result.data["customers"]["edges"]) == 25
    assert client.stats.throttled == 1


def test_rest_pages_follow_the_lowercase_link_header(fake_shop: FakeShop) -> None:
    client = fake_shop.client()
    pages = list(client.rest_pages("customers.json", {"limit": "10"}))
    assert [len(p.body["customers"]) for p in pages] == [10, 10, 5]
    queries = [r["query"] for r in fake_shop.requests()]
    assert queries[0] == "limit=10"
    assert all("page_info=" in q and "updated_at" not in q for q in queries[1:])


@pytest.mark.parametrize(
    "header",
    [
        '<https://s/a?page_info=p1>; rel="previous", <https://s/a?page_info=n1>; rel="next"',
        "<https://s/a?page_info=n1>;rel=next",
        '<https://s/a?page_info=n1>; rel="Next"',
    ],
    ids=["both-rels", "unquoted", "mixed-case-rel"],
)
def test_parse_link_header(header: str) -> None:
    assert parse_link_header(header)["next"] == "https://s/a?page_info=n1"


def test_without_throttle_status_throttled_answers_are_backed_off(
    start_fake: Callable[..., FakeShop],
) -> None:
    # Some plans omit extensions.cost.throttleStatus; then only backoff is left.
    shop = start_fake(bucket_size=200.0, restore_rate=200.0, report_throttle_status=False)
    client = shop.client(retry=RetryPolicy(max_attempts=8, base_delay=0.2, max_delay=2.0))
    query = (
        "query($first: Int!) { orders(first: $first) { edges { node { id "
        "lineItems(first: 5) { edges { node { id } } } } } } }"
    )
    for _ in range(4):
        assert len(client.graphql(query, {"first": 20}).data["orders"]["edges"]) == 20
    assert client.stats.throttled >= 1
    assert client.stats.retries["THROTTLED"] == client.stats.throttled


def test_rest_429_is_retried_after_retry_after(fake_shop: FakeShop) -> None:
    slept: list[float] = []
    client = fake_shop.client(sleep=slept.append)
    fake_shop.fault("429", retry_after=2.0)
    pages = list(client.rest_pages("products.json", {"limit": "50"}))
    assert sum(len(p.body["products"]) for p in pages) == 12
    assert max(slept) >= 2.0


def test_client_from_settings_reads_url_token_and_pinned_version(
    fake_shop: FakeShop, monkeypatch: pytest.MonkeyPatch
) -> None:
    from runeshift.settings import load_settings

    monkeypatch.setenv("RUNESHIFT_SHOPIFY_BASE_URL", fake_shop.base_url)
    monkeypatch.setenv("RUNESHIFT_SHOPIFY_TOKEN", TOKEN)
    settings = load_settings()
    client = ShopifyClient.from_settings(settings)
    assert client.api_version == "2025-07"
    assert client.graphql(SHOP_QUERY).data["shop"]["name"]
    assert TOKEN not in repr(settings) and TOKEN not in repr(client.__dict__.get("_token_provider"))


def test_expired_token_is_renewed_through_the_client_credentials_grant(fake_shop: FakeShop) -> None:
    from extract.shopify_token_provider import ClientCredentialsTokenProvider
    from runeshift.secrets import Secret

    provider = ClientCredentialsTokenProvider(fake_shop.base_url, "runeshift-app", Secret("s3cret"))
    client = ShopifyClient(fake_shop.base_url, provider)
    assert client.graphql(SHOP_QUERY).data["shop"]
    fake_shop.control("POST", "rotate-token", {"token": "shpat_next_day_0004"})  # 24 h later
    assert client.graphql(SHOP_QUERY).data["shop"]
    assert provider.grants == 2 and client.stats.token_refreshes == 1
    assert [r["status"] for r in fake_shop.requests()] == [200, 401, 200]
