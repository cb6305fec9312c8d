"""Shopify records (API or CSV shapes) as raw Arrow batches, one source table per entity.

The mapping engine reads flat record batches; a Shopify record is a tree (an
order holds its line items, transactions and refunds). This module flattens
each stream's records into the source tables the store mappings name
(``mappings/store.yaml``): ``customers``; ``products`` and ``product_variants``;
``orders``, ``order_line_items``, ``order_transactions`` and ``order_refunds``;
and ``deletions`` (the catch-up's deletion events).

Values stay raw (decision 0001): money is the decimal text Shopify sent beside
its currency code, timestamps the ISO 8601 text with its offset, ids the
``gid://`` text. Nothing is parsed into a float: a numeric id above 2^53 only
ever exists here as text. Two columns are added so rows can be keyed and
joined without interpretation by the mapping:

* ``key``: the record's stable key, the numeric part of its Shopify id as
  decimal text (``legacyResourceId`` or the gid's number), or, for CSV rows
  that have no id, a key built from what the CSV does have (``csv:<handle>``,
  ``csv:#1001``, and ``csv:#1001:2`` for an order's second line item);
* on children, the parent's ``*_key`` and the parent fields the children's
  rules need (``order_test`` so a test order's children are excluded by the
  same rule, the order's currencies).

A field a CSV export lacks is null here (the CSV importer leaves it absent).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import pyarrow as pa

from extract.shopify_streams import ShopifyRecord
from runeshift.errors import ConfigError

STORE_SOURCE = "shopify"
_GID = re.compile(r"^gid://shopify/[A-Za-z]+/(?P<n>[0-9]+)(?:\?.*)?$")
_S = pa.string()
_TEXT_LIST = pa.list_(pa.string())
_MONEY_PARTS = (
    ("shop_amount", "shopMoney", "amount"),
    ("shop_currency", "shopMoney", "currencyCode"),
    ("presentment_amount", "presentmentMoney", "amount"),
    ("presentment_currency", "presentmentMoney", "currencyCode"),
)


def _money_fields(prefix: str) -> list[pa.Field]:
    return [pa.field(f"{prefix}_{suffix}", _S) for suffix, _, _ in _MONEY_PARTS]


def _schema(*fields: pa.Field | list[pa.Field]) -> pa.Schema:
    flat: list[pa.Field] = []
    for f in fields:
        flat.extend(f if isinstance(f, list) else [f])
    return pa.schema(flat)


_KEY = pa.field("key", _S, nullable=False)

SCHEMAS: dict[str, pa.Schema] = {
    "customers": _schema(
        _KEY,
        pa.field("id", _S),
        pa.field("email", _S),
        pa.field("first_name", _S),
        pa.field("last_name", _S),
        pa.field("phone", _S),
        pa.field("state", _S),
        pa.field("verified_email", pa.bool_()),
        pa.field("tax_exempt", pa.bool_()),
        pa.field("tags", _TEXT_LIST),
        pa.field("note", _S),
        pa.field("number_of_orders", _S),
        pa.field("amount_spent_amount", _S),
        pa.field("amount_spent_currency", _S),
        pa.field("address_count", pa.int64()),
        pa.field("created_at", _S),
        pa.field("updated_at", _S),
    ),
    "products": _schema(
        _KEY,
        pa.field("id", _S),
        pa.field("title", _S),
        pa.field("handle", _S),
        pa.field("description_html", _S),
        pa.field("vendor", _S),
        pa.field("product_type", _S),
        pa.field("status", _S),
        pa.field("tags", _TEXT_LIST),
        pa.field("variant_skus", _TEXT_LIST),
        pa.field("created_at", _S),
        pa.field("updated_at", _S),
        pa.field("published_at", _S),
    ),
    "product_variants": _schema(
        _KEY,
        pa.field("id", _S),
        pa.field("product_key", _S, nullable=False),
        pa.field("title", _S),
        pa.field("sku", _S),
        pa.field("barcode", _S),
        pa.field("price", _S),
        pa.field("compare_at_price", _S),
        pa.field("position", pa.int64()),
        pa.field("inventory_quantity", pa.int64()),
        pa.field("taxable", pa.bool_()),
        pa.field("created_at", _S),
        pa.field("updated_at", _S),
    ),
    "orders": _schema(
        _KEY,
        pa.field("id", _S),
        pa.field("name", _S),
        pa.field("number", pa.int64()),
        pa.field("email", _S),
        pa.field("customer_id", _S),
        pa.field("test", pa.bool_()),
        pa.field("currency_code", _S),
        pa.field("presentment_currency_code", _S),
        pa.field("display_financial_status", _S),
        pa.field("display_fulfillment_status", _S),
        pa.field("tags", _TEXT_LIST),
        pa.field("note", _S),
        pa.field("discount_codes", _TEXT_LIST),
        pa.field("cancel_reason", _S),
        pa.field("created_at", _S),
        pa.field("updated_at", _S),
        pa.field("processed_at", _S),
        pa.field("cancelled_at", _S),
        pa.field("closed_at", _S),
        _money_fields("subtotal_price"),
        _money_fields("total_discounts"),
        _money_fields("total_shipping_price"),
        _money_fields("total_tax"),
        _money_fields("total_price"),
        _money_fields("total_refunded"),
        _money_fields("current_total_price"),
    ),
    "order_line_items": _schema(
        _KEY,
        pa.field("id", _S),
        pa.field("order_key", _S, nullable=False),
        pa.field("order_test", pa.bool_()),
        pa.field("order_currency_code", _S),
        pa.field("order_presentment_currency_code", _S),
        pa.field("position", pa.int64()),
        pa.field("name", _S),
        pa.field("title", _S),
        pa.field("variant_title", _S),
        pa.field("sku", _S),
        pa.field("quantity", pa.int64()),
        pa.field("current_quantity", pa.int64()),
        pa.field("vendor", _S),
        pa.field("taxable", pa.bool_()),
        pa.field("requires_shipping", pa.bool_()),
        pa.field("variant_id", _S),
        pa.field("product_id", _S),
        _money_fields("original_unit_price"),
        _money_fields("total_discount"),
    ),
    "order_transactions": _schema(
        _KEY,
        pa.field("id", _S),
        pa.field("order_key", _S, nullable=False),
        pa.field("order_test", pa.bool_()),
        pa.field("kind", _S),
        pa.field("status", _S),
        pa.field("gateway", _S),
        pa.field("test", pa.bool_()),
        pa.field("error_code", _S),
        pa.field("created_at", _S),
        pa.field("processed_at", _S),
        _money_fields("amount"),
    ),
    "order_refunds": _schema(
        _KEY,
        pa.field("id", _S),
        pa.field("order_key", _S, nullable=False),
        pa.field("order_test", pa.bool_()),
        pa.field("note", _S),
        pa.field("created_at", _S),
        pa.field("updated_at", _S),
        _money_fields("total_refunded"),
    ),
    "deletions": _schema(
        _KEY,
        pa.field("subject_type", _S),
        pa.field("subject_id", _S),
        pa.field("occurred_at", _S),
    ),
}

# Which source tables each stream's records fill, parent first.
STREAM_TABLES: dict[str, tuple[str, ...]] = {
    "customers": ("customers",),
    "products": ("products", "product_variants"),
    "orders": ("orders", "order_line_items", "order_transactions", "order_refunds"),
    "deletions": ("deletions",),
}


def numeric_id(value: object) -> str | None:
    """The decimal text of a Shopify id (``'gid://shopify/Order/12'``, ``'12'``, ``12``).

    Text in and text out, so ids above 2^53 stay exact. ``None`` for anything else.
    """
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, int):
        return str(value) if value >= 0 else None
    text = str(value).strip()
    if text.isdigit():
        return text
    match = _GID.match(text)
    return match["n"] if match else None


def record_key(record: ShopifyRecord) -> str:
    """A record's stable key: its numeric Shopify id, else the CSV importer's key."""
    data = record.data
    return (
        numeric_id(data.get("legacyResourceId"))
        or numeric_id(data.get("id"))
        or numeric_id(record.id)
        or record.id
    )


def _text(value: object) -> str | None:
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _int(value: object) -> int | None:
    if value is None or isinstance(value, bool):
        return None
    try:
        return int(str(value))
    except ValueError:
        return None


def _bool(value: object) -> bool | None:
    return value if isinstance(value, bool) else None


def _texts(value: object) -> list[str] | None:
    if value is None:
        return None
    if isinstance(value, str):
        return [t.strip() for t in value.split(",") if t.strip()]
    if isinstance(value, list):
        out: list[str] = []
        for item in value:
            # discountCodes is a list of strings; REST-shaped records carry {code: ...}.
            code = item.get("code") if isinstance(item, dict) else item
            if code is not None:
                out.append(str(code))
        return out
    return None


def _ref_id(value: object) -> str | None:
    """``{"id": "gid://..."}`` (a nested object reference) or a bare id -> the id text."""
    if isinstance(value, dict):
        return _text(value.get("id"))
    return _text(value)


def _money(row: dict[str, Any], prefix: str, bag: object) -> None:
    for suffix, side, part in _MONEY_PARTS:
        money = bag.get(side) if isinstance(bag, dict) else None
        row[f"{prefix}_{suffix}"] = _text(money.get(part)) if isinstance(money, dict) else None


def _children(data: Mapping[str, Any], field: str) -> list[dict[str, Any]]:
    value = data.get(field)
    if isinstance(value, dict):  # a connection that was not assembled into a list
        value = [e.get("node", e) for e in value.get("edges", [])]
    return [c for c in value or [] if isinstance(c, dict)]


def _customer_rows(record: ShopifyRecord) -> dict[str, list[dict[str, Any]]]:
    d = record.data
    raw_spent = d.get("amountSpent")
    spent: dict[str, Any] = raw_spent if isinstance(raw_spent, dict) else {}
    row = {
        "key": record_key(record),
        "id": _text(d.get("id")),
        "email": _text(d.get("email")),
        "first_name": _text(d.get("firstName")),
        "last_name": _text(d.get("lastName")),
        "phone": _text(d.get("phone")),
        "state": _text(d.get("state")),
        "verified_email": _bool(d.get("verifiedEmail")),
        "tax_exempt": _bool(d.get("taxExempt")),
        "tags": _texts(d.get("tags")),
        "note": _text(d.get("note")),
        "number_of_orders": _text(d.get("numberOfOrders")),
        "amount_spent_amount": _text(spent.get("amount")),
        "amount_spent_currency": _text(spent.get("currencyCode")),
        "address_count": len(_children(d, "addresses")),
        "created_at": _text(d.get("createdAt")),
        "updated_at": _text(d.get("updatedAt")),
    }
    return {"customers": [row]}


def _product_rows(record: ShopifyRecord) -> dict[str, list[dict[str, Any]]]:
    d = record.data
    key = record_key(record)
    variants = _children(d, "variants")
    product = {
        "key": key,
        "id": _text(d.get("id")),
        "title": _text(d.get("title")),
        "handle": _text(d.get("handle")),
        "description_html": _text(d.get("descriptionHtml")),
        "vendor": _text(d.get("vendor")),
        "product_type": _text(d.get("productType")),
        "status": _text(d.get("status")),
        "tags": _texts(d.get("tags")),
        "variant_skus": [str(v["sku"]) for v in variants if v.get("sku")],
        "created_at": _text(d.get("createdAt")),
        "updated_at": _text(d.get("updatedAt")),
        "published_at": _text(d.get("publishedAt")),
    }
    rows = []
    for position, v in enumerate(variants, start=1):
        variant_key = (
            numeric_id(v.get("legacyResourceId"))
            or numeric_id(v.get("id"))
            or f"{key}:{v.get('sku') or position}"
        )
        rows.append(
            {
                "key": variant_key,
                "id": _text(v.get("id")),
                "product_key": key,
                "title": _text(v.get("title")),
                "sku": _text(v.get("sku")),
                "barcode": _text(v.get("barcode")),
                "price": _text(v.get("price")),
                "compare_at_price": _text(v.get("compareAtPrice")),
                "position": _int(v.get("position")) or position,
                "inventory_quantity": _int(v.get("inventoryQuantity")),
                "taxable": _bool(v.get("taxable")),
                "created_at": _text(v.get("createdAt")),
                "updated_at": _text(v.get("updatedAt")),
            }
        )
    return {"products": [product], "product_variants": rows}


_ORDER_MONEY = (
    ("subtotal_price", "subtotalPriceSet"),
    ("total_discounts", "totalDiscountsSet"),
    ("total_shipping_price", "totalShippingPriceSet"),
    ("total_tax", "totalTaxSet"),
    ("total_price", "totalPriceSet"),
    ("total_refunded", "totalRefundedSet"),
    ("current_total_price", "currentTotalPriceSet"),
)


def _order_rows(record: ShopifyRecord) -> dict[str, list[dict[str, Any]]]:
    d = record.data
    key = record_key(record)
    test = _bool(d.get("test"))
    currency = _text(d.get("currencyCode"))
    presentment = _text(d.get("presentmentCurrencyCode"))
    order: dict[str, Any] = {
        "key": key,
        "id": _text(d.get("id")),
        "name": _text(d.get("name")),
        "number": _int(d.get("number")),
        "email": _text(d.get("email")),
        "customer_id": _ref_id(d.get("customer")),
        "test": test,
        "currency_code": currency,
        "presentment_currency_code": presentment,
        "display_financial_status": _text(d.get("displayFinancialStatus")),
        "display_fulfillment_status": _text(d.get("displayFulfillmentStatus")),
        "tags": _texts(d.get("tags")),
        "note": _text(d.get("note")),
        "discount_codes": _texts(d.get("discountCodes")),
        "cancel_reason": _text(d.get("cancelReason")),
        "created_at": _text(d.get("createdAt")),
        "updated_at": _text(d.get("updatedAt")),
        "processed_at": _text(d.get("processedAt")),
        "cancelled_at": _text(d.get("cancelledAt")),
        "closed_at": _text(d.get("closedAt")),
    }
    for prefix, field in _ORDER_MONEY:
        _money(order, prefix, d.get(field))
    parent = {"order_key": key, "order_test": test}
    lines = []
    for position, li in enumerate(_children(d, "lineItems"), start=1):
        line = {
            "key": numeric_id(li.get("id")) or f"{key}:{position}",
            "id": _text(li.get("id")),
            **parent,
            "order_currency_code": currency,
            "order_presentment_currency_code": presentment,
            "position": position,
            "name": _text(li.get("name")),
            "title": _text(li.get("title")),
            "variant_title": _text(li.get("variantTitle")),
            "sku": _text(li.get("sku")),
            "quantity": _int(li.get("quantity")),
            "current_quantity": _int(li.get("currentQuantity")),
            "vendor": _text(li.get("vendor")),
            "taxable": _bool(li.get("taxable")),
            "requires_shipping": _bool(li.get("requiresShipping")),
            "variant_id": _ref_id(li.get("variant")),
            "product_id": _ref_id(li.get("product")),
        }
        _money(line, "original_unit_price", li.get("originalUnitPriceSet"))
        _money(line, "total_discount", li.get("totalDiscountSet"))
        lines.append(line)
    transactions = []
    for position, tx in enumerate(_children(d, "transactions"), start=1):
        row = {
            "key": numeric_id(tx.get("id")) or f"{key}:tx{position}",
            "id": _text(tx.get("id")),
            **parent,
            "kind": _text(tx.get("kind")),
            "status": _text(tx.get("status")),
            "gateway": _text(tx.get("gateway")),
            "test": _bool(tx.get("test")),
            "error_code": _text(tx.get("errorCode")),
            "created_at": _text(tx.get("createdAt")),
            "processed_at": _text(tx.get("processedAt")),
        }
        _money(row, "amount", tx.get("amountSet"))
        transactions.append(row)
    refunds = []
    for position, rf in enumerate(_children(d, "refunds"), start=1):
        row = {
            "key": numeric_id(rf.get("legacyResourceId"))
            or numeric_id(rf.get("id"))
            or f"{key}:refund{position}",
            "id": _text(rf.get("id")),
            **parent,
            "note": _text(rf.get("note")),
            "created_at": _text(rf.get("createdAt")),
            "updated_at": _text(rf.get("updatedAt")),
        }
        _money(row, "total_refunded", rf.get("totalRefundedSet"))
        refunds.append(row)
    return {
        "orders": [order],
        "order_line_items": lines,
        "order_transactions": transactions,
        "order_refunds": refunds,
    }


def _deletion_rows(record: ShopifyRecord) -> dict[str, list[dict[str, Any]]]:
    d = record.data
    subject = _text(d.get("subjectId"))
    return {
        "deletions": [
            {
                "key": f"{subject}@{d.get('occurredAt')}",
                "subject_type": _text(d.get("subjectType")),
                "subject_id": subject,
                "occurred_at": _text(d.get("occurredAt")),
            }
        ]
    }


_FLATTENERS: dict[str, Callable[[ShopifyRecord], dict[str, list[dict[str, Any]]]]] = {
    "customers": _customer_rows,
    "products": _product_rows,
    "orders": _order_rows,
    "deletions": _deletion_rows,
}


@dataclass(frozen=True)
class StreamBatches:
    """One stream's records as raw batches, one per source table (``STREAM_TABLES``)."""

    stream: str
    batches: dict[str, pa.RecordBatch]

    def rows(self, table: str) -> int:
        return int(self.batches[table].num_rows)


def flatten_records(stream: str, records: Iterable[ShopifyRecord]) -> StreamBatches:
    """Flatten ``records`` of ``stream`` into a raw batch per source table.

    Raises:
        ConfigError: ``stream`` is not one of customers, products, orders, deletions.
    """
    try:
        flatten = _FLATTENERS[stream]
    except KeyError:
        raise ConfigError(
            f"no record batches for Shopify stream {stream!r}; known: {', '.join(_FLATTENERS)}"
        ) from None
    rows: dict[str, list[dict[str, Any]]] = {t: [] for t in STREAM_TABLES[stream]}
    for record in records:
        for table, table_rows in flatten(record).items():
            rows[table].extend(table_rows)
    return StreamBatches(
        stream,
        {
            table: pa.RecordBatch.from_pylist(table_rows, schema=SCHEMAS[table])
            for table, table_rows in rows.items()
        },
    )
