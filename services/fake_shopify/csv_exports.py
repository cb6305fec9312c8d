"""The store's admin CSV exports, as a merchant downloads them (research shopify.md section 5).

``products_legacy.csv`` and ``products_current.csv`` hold the same products in the two header
dialects Shopify has used (rows sharing a handle are one product; product-level cells only on
its first row); ``customers_export.csv`` prefixes ids and phones with an apostrophe and writes
``yes``/``no``; ``orders_export.csv`` has one row per line item, order-level cells only on the
order's first row. Times are written as the admin writes them: ``2024-03-10 01:30:00 -0500``.

Run ``python -m services.fake_shopify.csv_exports --db STORE --out DIR``.
"""

from __future__ import annotations

import argparse
import csv
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from services.fake_shopify.rest_api import rest_money
from services.fake_shopify.search_syntax import SHOP_TZ
from services.fake_shopify.store_db import StoreDB

_GOOGLE = [
    "Google Shopping / Google Product Category",
    "Google Shopping / Gender",
    "Google Shopping / Age Group",
    "Google Shopping / MPN",
    "Google Shopping / AdWords Grouping",
    "Google Shopping / AdWords Labels",
    "Google Shopping / Condition",
    "Google Shopping / Custom Product",
    *(f"Google Shopping / Custom Label {n}" for n in range(5)),
]
PRODUCTS_LEGACY_HEADER = [
    "Handle", "Title", "Body (HTML)", "Vendor", "Type", "Tags", "Published",
    "Option1 Name", "Option1 Value", "Option2 Name", "Option2 Value", "Option3 Name", "Option3 Value",
    "Variant SKU", "Variant Grams", "Variant Inventory Tracker", "Variant Inventory Qty",
    "Variant Inventory Policy", "Variant Fulfillment Service", "Variant Price",
    "Variant Compare At Price", "Variant Requires Shipping", "Variant Taxable", "Variant Barcode",
    "Image Src", "Image Position", "Image Alt Text", "Gift Card", "SEO Title", "SEO Description",
    *_GOOGLE,
    "Variant Image", "Variant Weight Unit", "Variant Tax Code", "Cost per item",
    "Price / International", "Compare At Price / International", "Status",
]  # fmt: skip
PRODUCTS_CURRENT_HEADER = [
    "Title", "URL handle", "Description", "Vendor", "Product category", "Type", "Tags",
    "Published on online store", "Status", "SKU", "Barcode",
    "Option1 name", "Option1 value", "Option1 Linked To",
    "Option2 name", "Option2 value", "Option2 Linked To",
    "Option3 name", "Option3 value", "Option3 Linked To",
    "Price", "Compare-at price", "Cost per item", "Charge tax", "Tax code",
    "Unit price total measure", "Unit price total measure unit", "Unit price base measure",
    "Unit price base measure unit", "Inventory tracker", "Inventory quantity",
    "Continue selling when out of stock", "Weight value (grams)", "Weight unit for display",
    "Requires shipping", "Fulfillment service", "Product image URL", "Image position",
    "Image alt text", "Variant image URL", "Gift card", "SEO title", "SEO description",
    "Color (product.metafields.shopify.color-pattern)", *_GOOGLE,
]  # fmt: skip
CUSTOMERS_HEADER = [
    "Customer ID", "First Name", "Last Name", "Email", "Accepts Email Marketing",
    "Default Address Company", "Default Address Address1", "Default Address Address2",
    "Default Address City", "Default Address Province Code", "Default Address Country Code",
    "Default Address Zip", "Default Address Phone", "Phone", "Accepts SMS Marketing",
    "Total Spent", "Total Orders", "Note", "Tax Exempt", "Tags",
]  # fmt: skip
ORDERS_HEADER = [
    "Name", "Email", "Financial Status", "Paid at", "Fulfillment Status", "Fulfilled at",
    "Accepts Marketing", "Currency", "Subtotal", "Shipping", "Taxes", "Total", "Discount Code",
    "Discount Amount", "Shipping Method", "Created at", "Lineitem quantity", "Lineitem name",
    "Lineitem price", "Lineitem compare at price", "Lineitem sku", "Lineitem requires shipping",
    "Lineitem taxable", "Lineitem fulfillment status", "Billing Name", "Billing Street",
    "Billing Address1", "Billing Address2", "Billing Company", "Billing City", "Billing Zip",
    "Billing Province", "Billing Country", "Billing Phone", "Shipping Name", "Shipping Street",
    "Shipping Address1", "Shipping Address2", "Shipping Company", "Shipping City", "Shipping Zip",
    "Shipping Province", "Shipping Country", "Shipping Phone", "Notes", "Note Attributes",
    "Cancelled at", "Payment Method", "Payment Reference", "Refunded Amount", "Vendor",
    "Outstanding Balance", "Employee", "Location", "Device ID", "Id", "Tags", "Risk Level",
    "Source", "Lineitem discount",
    *(f"Tax {n} {part}" for n in range(1, 6) for part in ("Name", "Value")),
    "Phone", "Receipt Number", "Duties", "Billing Province Name", "Shipping Province Name",
    "Payment ID", "Payment Terms Name", "Next Payment Due At", "Payment References",
]  # fmt: skip


@dataclass(frozen=True)
class CsvExportSummary:
    directory: str
    products: int
    customers: int
    orders: int
    order_rows: int


def admin_time(utc_text: str | None) -> str:
    """``2024-03-10T06:30:00Z`` -> ``2024-03-10 01:30:00 -0500`` (the admin export format)."""
    if not utc_text:
        return ""
    moment = datetime.fromisoformat(utc_text.replace("Z", "+00:00")).astimezone(SHOP_TZ)
    return moment.strftime("%Y-%m-%d %H:%M:%S %z")


def _yes(flag: Any) -> str:
    return "yes" if flag else "no"


def _write(path: Path, header: list[str], rows: Iterable[dict[str, Any]]) -> int:
    count = 0
    with path.open("w", newline="", encoding="utf-8") as out:
        writer = csv.DictWriter(out, fieldnames=header, restval="", extrasaction="raise")
        writer.writeheader()
        for row in rows:
            writer.writerow(row)
            count += 1
    return count


def _product_rows(doc: dict[str, Any], current: bool) -> Iterable[dict[str, Any]]:
    options = doc.get("options", [])
    published = doc.get("published_at") is not None
    for position, v in enumerate(doc["variants"]):
        first = position == 0
        if current:
            row: dict[str, Any] = {
                "URL handle": doc["handle"],
                "SKU": v.get("sku") or "",
                "Price": v["price"],
                "Charge tax": "TRUE" if v.get("taxable", True) else "FALSE",
                "Inventory quantity": v.get("inventory_quantity", 0),
                "Continue selling when out of stock": "DENY",
                "Requires shipping": "FALSE",
                "Fulfillment service": "manual",
                "Weight value (grams)": 0,
                "Weight unit for display": "kg",
            }
            if first:
                row.update(
                    {
                        "Title": doc["title"],
                        "Description": doc.get("body_html") or "",
                        "Vendor": doc.get("vendor", ""),
                        "Type": doc.get("product_type", ""),
                        "Tags": ", ".join(doc.get("tags", [])),
                        "Published on online store": "TRUE" if published else "FALSE",
                        "Status": str(doc.get("status", "ACTIVE")).lower(),
                        "Gift card": "FALSE",
                    }
                )
            for n, option in enumerate(options[:3], start=1):
                if first:
                    row[f"Option{n} name"] = option["name"]
                row[f"Option{n} value"] = v.get(f"option{n}") or ""
        else:
            row = {
                "Handle": doc["handle"],
                "Variant SKU": v.get("sku") or "",
                "Variant Grams": 0,
                "Variant Inventory Qty": v.get("inventory_quantity", 0),
                "Variant Inventory Policy": "deny",
                "Variant Fulfillment Service": "manual",
                "Variant Price": v["price"],
                "Variant Requires Shipping": "FALSE",
                "Variant Taxable": "TRUE" if v.get("taxable", True) else "FALSE",
                "Variant Weight Unit": "kg",
            }
            if first:
                row.update(
                    {
                        "Title": doc["title"],
                        "Body (HTML)": doc.get("body_html") or "",
                        "Vendor": doc.get("vendor", ""),
                        "Type": doc.get("product_type", ""),
                        "Tags": ", ".join(doc.get("tags", [])),
                        "Published": "TRUE" if published else "FALSE",
                        "Gift Card": "FALSE",
                        "Status": str(doc.get("status", "ACTIVE")).lower(),
                    }
                )
            for n, option in enumerate(options[:3], start=1):
                if first:
                    row[f"Option{n} Name"] = option["name"]
                row[f"Option{n} Value"] = v.get(f"option{n}") or ""
        yield row


def _customer_row(doc: dict[str, Any]) -> dict[str, Any]:
    a = doc.get("default_address") or {}
    return {
        "Customer ID": f"'{doc['id']}",
        "First Name": doc.get("first_name") or "",
        "Last Name": doc.get("last_name") or "",
        "Email": doc.get("email") or "",
        "Accepts Email Marketing": _yes(doc.get("accepts_marketing")),
        "Default Address Company": a.get("company") or "",
        "Default Address Address1": a.get("address1") or "",
        "Default Address Address2": a.get("address2") or "",
        "Default Address City": a.get("city") or "",
        "Default Address Province Code": a.get("province_code") or "",
        "Default Address Country Code": a.get("country_code") or "",
        "Default Address Zip": f"'{a['zip']}" if a.get("zip") else "",
        "Default Address Phone": f"'{a['phone']}" if a.get("phone") else "",
        "Phone": f"'{doc['phone']}" if doc.get("phone") else "",
        "Accepts SMS Marketing": "no",
        "Total Spent": rest_money(doc.get("total_spent")),
        "Total Orders": doc.get("orders_count", 0),
        "Note": doc.get("note") or "",
        "Tax Exempt": _yes(doc.get("tax_exempt")),
        "Tags": ", ".join(doc.get("tags", [])),
    }


def _order_rows(doc: dict[str, Any], customer: dict[str, Any] | None) -> Iterable[dict[str, Any]]:
    codes = doc.get("discount_codes", [])
    address = (customer or {}).get("default_address") or {}
    billing_name = " ".join(p for p in (address.get("first_name"), address.get("last_name")) if p)
    for position, li in enumerate(doc.get("line_items", [])):
        row: dict[str, Any] = {
            "Name": doc["name"],
            "Email": doc.get("email") or "",
            "Created at": admin_time(doc["created_at"]),
            "Lineitem quantity": li["quantity"],
            "Lineitem name": li.get("name") or li["title"],
            "Lineitem price": rest_money(li["price"]["presentment"]),
            "Lineitem sku": li.get("sku") or "",
            "Lineitem requires shipping": "false",
            "Lineitem taxable": "true" if li.get("taxable", True) else "false",
            "Lineitem fulfillment status": "fulfilled",
            "Lineitem discount": rest_money((li.get("total_discount") or {}).get("presentment")),
            "Vendor": li.get("vendor") or "",
        }
        if position == 0:
            row.update(
                {
                    "Financial Status": doc.get("financial_status") or "",
                    "Paid at": admin_time(doc["created_at"]) if not doc.get("test") else "",
                    "Fulfillment Status": doc.get("fulfillment_status") or "unfulfilled",
                    "Fulfilled at": admin_time(doc.get("closed_at")),
                    "Accepts Marketing": _yes((customer or {}).get("accepts_marketing")),
                    "Currency": doc.get("presentment_currency", "USD"),
                    "Subtotal": rest_money(doc["subtotal"]["presentment"]),
                    "Shipping": rest_money((doc.get("total_shipping") or {}).get("presentment")),
                    "Taxes": rest_money((doc.get("total_tax") or {}).get("presentment")),
                    "Total": rest_money(doc["total"]["presentment"]),
                    "Discount Code": codes[0]["code"] if codes else "",
                    "Discount Amount": rest_money(codes[0]["amount"]["presentment"])
                    if codes
                    else "0.00",
                    "Billing Name": billing_name,
                    "Billing Address1": address.get("address1") or "",
                    "Billing City": address.get("city") or "",
                    "Billing Zip": address.get("zip") or "",
                    "Billing Province": address.get("province_code") or "",
                    "Billing Country": address.get("country_code") or "",
                    "Cancelled at": admin_time(doc.get("cancelled_at")),
                    "Payment Method": "Shopify Payments",
                    "Refunded Amount": rest_money(
                        (doc.get("total_refunded") or {}).get("presentment")
                    ),
                    "Outstanding Balance": "0.00",
                    "Id": doc["id"],
                    "Tags": ", ".join(doc.get("tags", [])),
                    "Risk Level": "Low",
                    "Source": "web",
                }
            )
        yield row


def write_csv_exports(db_path: Path | str, out_dir: Path | str) -> CsvExportSummary:
    """Write the four admin CSV exports of the store at ``db_path`` into ``out_dir``."""
    store = StoreDB(db_path)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    try:
        products = list(store.iterate("products"))
        _write(
            out / "products_legacy.csv",
            PRODUCTS_LEGACY_HEADER,
            (r for p in products for r in _product_rows(p, current=False)),
        )
        _write(
            out / "products_current.csv",
            PRODUCTS_CURRENT_HEADER,
            (r for p in products for r in _product_rows(p, current=True)),
        )
        customers = {c["id"]: c for c in store.iterate("customers")}
        _write(
            out / "customers_export.csv",
            CUSTOMERS_HEADER,
            (_customer_row(c) for c in customers.values()),
        )
        orders = 0

        def order_rows() -> Iterable[dict[str, Any]]:
            nonlocal orders
            for doc in store.iterate("orders"):
                orders += 1
                yield from _order_rows(doc, customers.get(doc.get("customer_id") or -1))

        order_row_count = _write(out / "orders_export.csv", ORDERS_HEADER, order_rows())
    finally:
        store.close()
    return CsvExportSummary(str(out), len(products), len(customers), orders, order_row_count)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m services.fake_shopify.csv_exports")
    parser.add_argument("--db", required=True, type=Path)
    parser.add_argument("--out", required=True, type=Path)
    args = parser.parse_args(argv)
    summary = write_csv_exports(args.db, args.out)
    sys.stdout.write(f"{summary}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
