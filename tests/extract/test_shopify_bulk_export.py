"""Bulk export against the fake Shopify: reassembly, failures, resume after kill -9."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import psycopg
import pytest

from extract.shopify_bulk_export import BulkExportReport, BulkOptions, read_all, run_bulk_export
from extract.shopify_checkpoints import (
    InMemoryCheckpointStore,
    ShopifyCheckpointStore,
    StreamPosition,
)
from extract.shopify_streams import STREAMS, ShopifyRecord
from load.target_schema import upgrade
from runeshift.errors import ConfigError, FatalError
from services.fake_shopify.bulk_operations import BulkKnobs
from services.fake_shopify.store_db import StoreDB
from tests.extract import test_shopify_client as fake
from tests.extract.test_shopify_client import TOKEN, FakeShop

# The fake-server fixtures live with the client tests.
start_fake = fake.start_fake
fake_shop = fake.fake_shop

FAST = BulkOptions(batch_size=7, poll_initial=0.02, poll_max=0.2, max_wait=60)
ROOT = Path(__file__).resolve().parents[2]
# Paginated reads pay the real per-node cost (an order is ~100 points); a Plus-sized
# bucket keeps those tests at seconds instead of minutes.
PLUS_BUCKET = {"bucket_size": 2000.0, "restore_rate": 1000.0}


def export(
    shop: FakeShop, stream: str, checkpoints=None, **options
) -> tuple[list[ShopifyRecord], BulkExportReport]:
    store = checkpoints if checkpoints is not None else InMemoryCheckpointStore()
    report = BulkExportReport(stream=stream)
    opts = BulkOptions(**{**FAST.__dict__, **options})
    batches = run_bulk_export(shop.client(), stream, store, options=opts, report=report)
    return [r for batch in batches for r in batch.records], report


def seeded(shop: FakeShop, resource: str) -> dict[str, dict]:
    store = StoreDB(shop.db)
    kind = {"customers": "Customer", "products": "Product", "orders": "Order"}[resource]
    docs = {f"gid://shopify/{kind}/{d['id']}": d for d in store.iterate(resource)}
    store.close()
    return docs


@pytest.mark.parametrize("grouped", [True, False], ids=["grouped", "children-not-adjacent"])
def test_full_export_reassembles_every_record(
    start_fake: Callable[..., FakeShop], grouped: bool
) -> None:
    shop = start_fake(bulk=BulkKnobs(start_delay=0.05, page_size=7, group_objects=grouped))
    for stream in ("customers", "products", "orders"):
        records, report = export(shop, stream)
        docs = seeded(shop, stream)
        assert sorted(r.id for r in records) == sorted(docs), stream
        assert report.final_status == "COMPLETED"
        for record in records:
            doc = docs[record.id]
            if stream == "customers":
                assert len(record.data["addresses"]) == len(doc["addresses"])
            elif stream == "products":
                assert [v["sku"] for v in record.data["variants"]] == [
                    v["sku"] for v in doc["variants"]
                ]
                assert record.data["options"][0]["values"] == doc["options"][0]["values"]
            else:
                assert [li["id"].rsplit("/", 1)[1] for li in record.data["lineItems"]] == [
                    str(li["id"]) for li in doc["line_items"]
                ]
                assert len(record.data["discountApplications"]) == len(doc["discount_codes"])
                assert len(record.data["shippingLines"]) == len(doc["shipping_lines"])
                assert len(record.data["refunds"]) == len(doc.get("refunds", []))
                assert len(record.data["transactions"]) == len(doc["transactions"])
                assert record.data["taxLines"][0]["title"] == "NY State Tax"


def test_ungrouped_file_really_separates_children_from_parents(
    start_fake: Callable[..., FakeShop],
) -> None:
    shop = start_fake(bulk=BulkKnobs(start_delay=0.05, page_size=7, group_objects=False))
    client = shop.client()
    export(shop, "orders")
    status = client.graphql("{ currentBulkOperation { url } }").data["currentBulkOperation"]
    lines = [json.loads(line) for line in client.download_lines(status["url"]) if line]
    first_child = next(i for i, line in enumerate(lines) if "__parentId" in line)
    assert (
        "__parentId" not in lines[first_child - 1]
        or lines[first_child - 1]["__parentId"] != lines[first_child]["__parentId"]
    )
    assert any("__parentId" not in line for line in lines[first_child:])  # roots after children


def test_bulk_and_paginated_reads_give_identical_records(
    start_fake: Callable[..., FakeShop],
) -> None:
    fake_shop = start_fake(**PLUS_BUCKET)
    for stream in ("customers", "products", "orders"):
        bulk, _ = export(fake_shop, stream)
        paged = list(read_all(fake_shop.client(), STREAMS[stream]))
        assert sorted(bulk, key=lambda r: r.id) == sorted(paged, key=lambda r: r.id), stream


@pytest.mark.parametrize("error", ["INTERNAL_SERVER_ERROR", "TIMEOUT"])
def test_failed_operation_uses_partial_data_then_completes(
    start_fake: Callable[..., FakeShop], error: str
) -> None:
    fake_shop = start_fake(**PLUS_BUCKET)
    fake_shop.control(
        "POST", "faults", {"bulk_fail": error, "fail_after_pages": 2, "bulk": {"page_size": 5}}
    )
    records, report = export(fake_shop, "orders")
    assert report.final_status == "FAILED" and report.error_code == error
    assert report.partial_records > 0
    assert report.fallback_records > 0
    assert sorted({r.id for r in records}) == sorted(seeded(fake_shop, "orders"))
    assert len(records) == report.partial_records + report.fallback_records


def test_access_denied_is_a_config_error(fake_shop: FakeShop) -> None:
    fake_shop.control("POST", "faults", {"bulk_fail": "ACCESS_DENIED"})
    with pytest.raises(ConfigError, match="read scope"):
        export(fake_shop, "orders")


def test_running_operation_of_a_crashed_run_is_adopted(fake_shop: FakeShop) -> None:
    fake_shop.control("POST", "faults", {"bulk": {"page_delay": 0.2, "page_size": 5}})
    client = fake_shop.client()
    started = client.graphql(
        "mutation($q: String!) { bulkOperationRunQuery(query: $q) { bulkOperation { id } userErrors { message } } }",
        {"q": STREAMS["customers"].bulk_query()},
    ).data["bulkOperationRunQuery"]["bulkOperation"]["id"]
    records, report = export(fake_shop, "customers")
    assert report.adopted and report.operation_ids == [started]
    assert len(records) == len(seeded(fake_shop, "customers"))


def test_checkpoint_store_round_trip_and_newer_format_refused(pg_url: str) -> None:
    upgrade(pg_url)
    store = ShopifyCheckpointStore(pg_url)
    assert store.load("orders") is None
    position = StreamPosition(
        phase="bulk", bulk_operation_id="gid://shopify/BulkOperation/1", handed_over=3
    )
    store.save("orders", position)
    assert store.load("orders") == position
    with psycopg.connect(pg_url, autocommit=True) as conn:
        row = conn.execute(
            "SELECT kind, recorded_by, position->>'phase' FROM runeshift.source_positions WHERE source = 'shopify:orders'"
        ).fetchone()
        assert row == ("shopify_cursor", "backfill", "bulk")
        conn.execute(
            "UPDATE runeshift.source_positions SET position = jsonb_set(position, '{format}', '99')"
        )
    with pytest.raises(FatalError, match="format 99"):
        store.load("orders")


CHILD = """
import sys, time
from extract.shopify_bulk_export import BulkOptions, run_bulk_export
from extract.shopify_checkpoints import ShopifyCheckpointStore
from extract.shopify_client import ShopifyClient
base_url, token, pg_url, stream = sys.argv[1:5]
client = ShopifyClient(base_url, lambda: token)
opts = BulkOptions(batch_size=5, poll_initial=0.02, poll_max=0.2)
for batch in run_bulk_export(client, stream, ShopifyCheckpointStore(pg_url), options=opts):
    print("batch", len(batch.records), flush=True)
    time.sleep(0.3)  # a slow consumer, so the test can kill it mid-hand-over
"""


def position_in(pg_url: str, stream: str) -> dict | None:
    with psycopg.connect(pg_url) as conn:
        row = conn.execute(
            "SELECT position FROM runeshift.source_positions WHERE source = %s",
            (f"shopify:{stream}",),
        ).fetchone()
    return None if row is None else row[0]


def wait_for(predicate: Callable[[], bool], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def start_child(shop: FakeShop, pg_url: str, stream: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-c", CHILD, shop.base_url, TOKEN, pg_url, stream],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=subprocess.DEVNULL,
    )


@pytest.mark.parametrize("kill_at", ["while-polling", "mid-hand-over"])
def test_kill_9_then_resume_polls_the_stored_operation(
    fake_shop: FakeShop, pg_url: str, kill_at: str
) -> None:
    upgrade(pg_url)
    stream = "customers"
    delay = 0.4 if kill_at == "while-polling" else 0.0
    fake_shop.control("POST", "faults", {"bulk": {"page_delay": delay, "page_size": 5}})
    child = start_child(fake_shop, pg_url, stream)
    try:
        if kill_at == "while-polling":
            wait_for(
                lambda: (position_in(pg_url, stream) or {}).get("bulk_operation_id") is not None
            )
        else:
            wait_for(lambda: (position_in(pg_url, stream) or {}).get("handed_over", 0) >= 10)
        child.send_signal(signal.SIGKILL)
    finally:
        child.wait(timeout=10)
    stored = position_in(pg_url, stream)
    assert stored is not None and stored["phase"] == "bulk"
    records, report = export(fake_shop, stream, ShopifyCheckpointStore(pg_url))
    assert report.resumed and report.operation_ids == [stored["bulk_operation_id"]]
    runs = [
        r for r in fake_shop.requests() if "bulkOperationRunQuery" in (r["graphql_query"] or "")
    ]
    assert len(runs) == 1
    total = len(seeded(fake_shop, stream))
    assert report.skipped_on_resume == stored["handed_over"]
    assert len(records) == total - stored["handed_over"]
    final = position_in(pg_url, stream)
    assert final is not None and final["phase"] == "incremental" and final["since"]
