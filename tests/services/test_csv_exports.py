"""The store's admin CSV exports have Shopify's headers and row layout."""

from __future__ import annotations

import csv

import pytest

from services.fake_shopify.csv_exports import (
    CUSTOMERS_HEADER,
    ORDERS_HEADER,
    PRODUCTS_CURRENT_HEADER,
    PRODUCTS_LEGACY_HEADER,
    admin_time,
    write_csv_exports,
)
from services.fake_shopify.store_db import StoreDB


@pytest.mark.parametrize(
    ("name", "header", "starts_with"),
    [
        ("products_legacy.csv", PRODUCTS_LEGACY_HEADER, "Handle,Title,Body (HTML),Vendor"),
        ("products_current.csv", PRODUCTS_CURRENT_HEADER, "Title,URL handle,Description,Vendor"),
        ("customers_export.csv", CUSTOMERS_HEADER, "Customer ID,First Name,Last Name,Email"),
        ("orders_export.csv", ORDERS_HEADER, "Name,Email,Financial Status,Paid at"),
    ],
    ids=["products-legacy", "products-current", "customers", "orders"],
)
def test_exports_have_shopify_headers(store_path, tmp_path, name, header, starts_with):
    write_csv_exports(store_path, tmp_path / "csv")
    first_line = (tmp_path / "csv" / name).read_text(encoding="utf-8").splitlines()[0]
    assert first_line.startswith(starts_with)
    assert first_line.split(",")[: len(header)] == [h for h in ",".join(header).split(",")]


def test_orders_export_has_one_row_per_line_item_with_order_cells_on_the_first(
    store_path, tmp_path
):
    summary = write_csv_exports(store_path, tmp_path / "csv")
    store = StoreDB(store_path)
    orders = list(store.iterate("orders"))
    with (tmp_path / "csv" / "orders_export.csv").open(encoding="utf-8", newline="") as f:
        rows = list(csv.DictReader(f))
    assert summary.order_rows == len(rows) == sum(len(o["line_items"]) for o in orders)
    multi = next(o for o in orders if len(o["line_items"]) > 1)
    mine = [r for r in rows if r["Name"] == multi["name"]]
    assert mine[0]["Id"] == str(multi["id"]) and mine[0]["Total"]
    assert all(r["Id"] == "" and r["Total"] == "" for r in mine[1:])


def test_products_dialects_describe_the_same_variants(store_path, tmp_path):
    write_csv_exports(store_path, tmp_path / "csv")
    with (tmp_path / "csv" / "products_legacy.csv").open(encoding="utf-8", newline="") as f:
        legacy = {(r["Handle"], r["Variant SKU"], r["Variant Price"]) for r in csv.DictReader(f)}
    with (tmp_path / "csv" / "products_current.csv").open(encoding="utf-8", newline="") as f:
        current = {(r["URL handle"], r["SKU"], r["Price"]) for r in csv.DictReader(f)}
    assert legacy == current
    assert ("fisher-10", "script-10-monthly", "4.99") in legacy


def test_customer_ids_carry_the_apostrophe_prefix(store_path, tmp_path):
    write_csv_exports(store_path, tmp_path / "csv")
    with (tmp_path / "csv" / "customers_export.csv").open(encoding="utf-8", newline="") as f:
        rows = list(csv.DictReader(f))
    assert rows and all(r["Customer ID"].startswith("'") for r in rows)
    assert {r["Accepts Email Marketing"] for r in rows} <= {"yes", "no"}


@pytest.mark.parametrize(
    ("utc", "shown"),
    [
        ("2024-03-10T06:30:00Z", "2024-03-10 01:30:00 -0500"),
        ("2024-07-01T16:00:00Z", "2024-07-01 12:00:00 -0400"),
    ],
    ids=["winter", "summer"],
)
def test_admin_times_are_shop_local_with_offset(utc, shown):
    assert admin_time(utc) == shown
