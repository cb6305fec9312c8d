"""Incremental catch-up against the fake Shopify: lookback, checkpoints, pacing, deletions."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest

from extract.shopify_bulk_export import BulkOptions, run_bulk_export
from extract.shopify_checkpoints import InMemoryCheckpointStore, StreamPosition
from extract.shopify_incremental import run_incremental
from runeshift.errors import ConfigError
from tests.extract import test_shopify_client as fake
from tests.extract.test_shopify_client import FakeShop

start_fake = fake.start_fake
fake_shop = fake.fake_shop

FAST = BulkOptions(batch_size=50, poll_initial=0.02, poll_max=0.2, max_wait=60)
PLUS_BUCKET = {"bucket_size": 2000.0, "restore_rate": 1000.0}


def stamp(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def mutate(shop: FakeShop, resource: str, record_id: int, **changes: object) -> None:
    shop.control("POST", "mutate", {"resource": resource, "id": record_id, "changes": changes})


def exported(shop: FakeShop, stream: str, checkpoints: InMemoryCheckpointStore) -> datetime:
    """Run the bulk export to its end; returns where the catch-up will start."""
    for _ in run_bulk_export(shop.client(), stream, checkpoints, options=FAST):
        pass
    position = checkpoints.load(stream)
    assert position is not None and position.phase == "incremental" and position.since
    return parse(position.since)


def test_catch_up_picks_up_records_changed_after_the_export_within_the_lookback(
    fake_shop: FakeShop,
) -> None:
    checkpoints = InMemoryCheckpointStore()
    since = exported(fake_shop, "customers", checkpoints)
    mutate(fake_shop, "customers", 1003, note="changed after the export")
    # Committed with a timestamp just before the export began (a late write): lookback.
    mutate(
        fake_shop, "customers", 1004, note="late", updated_at=stamp(since - timedelta(minutes=2))
    )
    # Older than the lookback: the export itself had to see this one.
    mutate(
        fake_shop, "customers", 1005, note="old", updated_at=stamp(since - timedelta(minutes=10))
    )
    batches = list(
        run_incremental(
            fake_shop.client(), "customers", None, timedelta(minutes=5), checkpoints=checkpoints
        )
    )
    records = {r.id: r for b in batches for r in b.records}
    assert set(records) == {"gid://shopify/Customer/1003", "gid://shopify/Customer/1004"}
    assert records["gid://shopify/Customer/1003"].data["note"] == "changed after the export"
    final = checkpoints.load("customers")
    assert final is not None and final.since == final.window_end
    query = [
        r["graphql_query"]
        for r in fake_shop.requests()
        if "updated_at" in (r["graphql_query"] or "")
    ]
    assert stamp(since - timedelta(minutes=5)) in query[0]


def test_position_is_saved_only_when_the_next_batch_is_asked_for(
    start_fake: Callable[..., FakeShop],
) -> None:
    shop = start_fake(bucket_size=60.0, restore_rate=1000.0)  # small pages
    checkpoints = InMemoryCheckpointStore()
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)
    for k, customer in enumerate(range(1000, 1020)):
        mutate(shop, "customers", customer, updated_at=stamp(start + timedelta(minutes=k + 1)))
    batches = run_incremental(
        shop.client(), "customers", start, timedelta(0), checkpoints=checkpoints
    )
    first = next(batches)
    assert first.records and len(first.records) < 20
    assert checkpoints.load("customers") is None  # not consumed yet
    second = next(batches)
    assert checkpoints.load("customers") == first.position
    assert first.position.since == first.records[-1].updated_at
    batches.close()  # the consumer dies before finishing the second batch
    assert checkpoints.load("customers") == first.position
    resumed = list(
        run_incremental(shop.client(), "customers", None, timedelta(0), checkpoints=checkpoints)
    )
    seen = {r.id for r in first.records} | {r.id for b in resumed for r in b.records}
    assert len(seen) == 20
    assert second.records[0].id in {r.id for b in resumed for r in b.records}


def test_pages_fit_a_small_bucket_without_throttled(start_fake: Callable[..., FakeShop]) -> None:
    shop = start_fake(bucket_size=400.0, restore_rate=2000.0)
    since = datetime.now(UTC) - timedelta(hours=1)
    for order in range(5000, 5040):
        mutate(shop, "orders", order, note="touched")
    records = [
        r
        for b in run_incremental(
            shop.client(), "orders", since, checkpoints=InMemoryCheckpointStore()
        )
        for r in b.records
    ]
    assert len(records) == 40
    big = [r for r in records if int(r.id.rsplit("/", 1)[1]) % 10 == 0]
    assert big and all(len(r.data["lineItems"]) == 25 for r in big)  # beyond first: 5
    log = shop.requests()
    assert not any(r["throttled"] for r in log[1:])
    assert max(r["requested_cost"] or 0 for r in log) <= 400


def test_nested_connections_longer_than_a_page_are_completed(
    start_fake: Callable[..., FakeShop],
) -> None:
    shop = start_fake(**PLUS_BUCKET)
    mutate(shop, "products", 2000, title="Big product")
    batches = run_incremental(
        shop.client(),
        "products",
        datetime.now(UTC) - timedelta(hours=1),
        checkpoints=InMemoryCheckpointStore(),
    )
    (product,) = [r for b in batches for r in b.records]
    assert len(product.data["variants"]) == 120
    assert [v["position"] for v in product.data["variants"]] == list(range(1, 121))


def test_deleted_products_arrive_as_deletion_records(fake_shop: FakeShop) -> None:
    since = datetime.now(UTC) - timedelta(minutes=1)
    fake_shop.control("POST", "mutate", {"resource": "products", "id": 2003, "delete": True})
    fake_shop.control("POST", "mutate", {"resource": "customers", "id": 1001, "delete": True})
    checkpoints = InMemoryCheckpointStore()
    records = [
        r
        for b in run_incremental(fake_shop.client(), "deletions", since, checkpoints=checkpoints)
        for r in b.records
    ]
    # Shopify's deletionEvents cover products and collections only (decision 0003).
    assert [(r.id, r.data["subjectType"]) for r in records] == [
        ("gid://shopify/Product/2003", "PRODUCT")
    ]
    again = [
        r
        for b in run_incremental(fake_shop.client(), "deletions", None, checkpoints=checkpoints)
        for r in b.records
    ]
    assert again == []


def test_catch_up_refuses_to_start_while_the_bulk_export_is_unfinished(fake_shop: FakeShop) -> None:
    checkpoints = InMemoryCheckpointStore()
    checkpoints.save(
        "orders", StreamPosition(phase="bulk", bulk_operation_id="gid://shopify/BulkOperation/9")
    )
    with pytest.raises(ConfigError, match="not finished"):
        list(run_incremental(fake_shop.client(), "orders", None, checkpoints=checkpoints))


CHILD = """
import sys, time
from datetime import datetime, timedelta
from extract.shopify_checkpoints import ShopifyCheckpointStore
from extract.shopify_client import ShopifyClient
from extract.shopify_incremental import run_incremental
base_url, token, pg_url, since = sys.argv[1:5]
client = ShopifyClient(base_url, lambda: token)
start = datetime.fromisoformat(since)
store = ShopifyCheckpointStore(pg_url)
for batch in run_incremental(client, "customers", start, timedelta(0), checkpoints=store):
    time.sleep(0.3)  # a slow consumer
"""


def test_kill_9_mid_window_resumes_from_the_stored_high_water_mark(
    start_fake: Callable[..., FakeShop], pg_url: str
) -> None:
    import os
    import subprocess
    import sys
    import time
    from pathlib import Path

    from extract.shopify_checkpoints import ShopifyCheckpointStore
    from load.target_schema import upgrade
    from tests.extract.test_shopify_client import TOKEN

    upgrade(pg_url)
    shop = start_fake(bucket_size=60.0, restore_rate=1000.0)  # pages of a few records
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)
    for k, customer in enumerate(range(1000, 1025)):
        mutate(shop, "customers", customer, updated_at=stamp(start + timedelta(minutes=k + 1)))
    store = ShopifyCheckpointStore(pg_url)
    root = Path(__file__).resolve().parents[2]
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, shop.base_url, TOKEN, pg_url, start.isoformat()],
        cwd=root,
        env={**os.environ, "PYTHONPATH": str(root)},
        stdout=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 30
        while parse(
            (store.load("customers") or StreamPosition(phase="incremental")).since or stamp(start)
        ) < start + timedelta(minutes=5):
            assert time.monotonic() < deadline
            time.sleep(0.05)
        child.kill()
    finally:
        child.wait(timeout=10)
    stored = store.load("customers")
    assert stored is not None and stored.since is not None
    resumed = [
        r
        for b in run_incremental(shop.client(), "customers", None, timedelta(0), checkpoints=store)
        for r in b.records
    ]
    # Everything at or after the high-water mark is read again; nothing before it is lost.
    expected = {
        f"gid://shopify/Customer/{1000 + k}"
        for k in range(25)
        if start + timedelta(minutes=k + 1) >= parse(stored.since)
    }
    assert {r.id for r in resumed} == expected
    assert len(expected) < 25
    final = store.load("customers")
    assert final is not None and final.since == final.window_end
