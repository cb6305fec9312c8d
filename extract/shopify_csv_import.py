"""Shopify admin CSV exports as a second, offline source, in the API's record shapes.

Merchants can download products, customers and orders as CSV from the Shopify
admin. These readers turn such files into the same ``ShopifyRecord`` shapes the
GraphQL path produces (``extract/shopify_streams.py``), so the same mappings
apply; fields a CSV does not have are absent (not null), and records carry no
``gid`` unless the file has an id column (``id`` is then ``csv:<handle>`` or
``csv:<order name>``).

Dialects: the product export was renamed in 2024 (``Handle``/``Body (HTML)``/
``Variant Price`` became ``URL handle``/``Description``/``Price``); the header
row decides which one a file is, and both give identical records. Rows of one
product (same handle) and of one order (same ``Name``; order-level cells only
on its first row) must be consecutive, as Shopify writes them.

Errors name ``file:line`` and the problem: a missing column is a
``ConfigError`` (wrong file), a bad cell a ``SourceDataError``.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from extract.shopify_streams import ShopifyRecord
from runeshift.errors import ConfigError, SourceDataError

ProductDialect = Literal["legacy", "current"]
_DECIMAL = re.compile(r"-?\d+(\.\d+)?")

# logical field -> (legacy header, current 2024+ header)
_PRODUCT_COLUMNS: dict[str, tuple[str, str]] = {
    "handle": ("Handle", "URL handle"),
    "title": ("Title", "Title"),
    "body": ("Body (HTML)", "Description"),
    "vendor": ("Vendor", "Vendor"),
    "type": ("Type", "Type"),
    "tags": ("Tags", "Tags"),
    "status": ("Status", "Status"),
    "sku": ("Variant SKU", "SKU"),
    "barcode": ("Variant Barcode", "Barcode"),
    "price": ("Variant Price", "Price"),
    "compare_at": ("Variant Compare At Price", "Compare-at price"),
    "inventory_qty": ("Variant Inventory Qty", "Inventory quantity"),
    "taxable": ("Variant Taxable", "Charge tax"),
    **{
        f"option{n}_{part}": (f"Option{n} {part.title()}", f"Option{n} {part}")
        for n in (1, 2, 3)
        for part in ("name", "value")
    },
}


@dataclass
class _Row:
    path: Path
    line: int
    cells: dict[str, str]

    def where(self) -> str:
        return f"{self.path}:{self.line}"

    def get(self, column: str) -> str:
        value = (self.cells.get(column) or "").strip()
        # Shopify prefixes ids and phone numbers with ' so spreadsheets keep them as text.
        return value[1:] if value.startswith("'") else value


def detect_product_dialect(path: Path, header: list[str]) -> ProductDialect:
    """Which product export a header row belongs to."""
    names = set(header)
    if {"Handle", "Variant Price"} <= names:
        return "legacy"
    if {"URL handle", "Price"} <= names:
        return "current"
    raise ConfigError(
        f"{path}:1: not a Shopify products export; expected a header with 'Handle' and "
        "'Variant Price' (legacy) or 'URL handle' and 'Price' (2024+)"
    )


def read_products_csv(path: Path | str) -> Iterator[ShopifyRecord]:
    """Products (with options and variants) from a products export in either dialect."""
    with _CsvFile(Path(path)) as source:
        yield from _read_products(source)


def _read_products(source: _CsvFile) -> Iterator[ShopifyRecord]:
    dialect = detect_product_dialect(source.path, source.header)
    column = {
        key: names[0 if dialect == "legacy" else 1] for key, names in _PRODUCT_COLUMNS.items()
    }
    product: dict[str, Any] | None = None
    seen: set[str] = set()
    for row in source.rows():
        handle = row.get(column["handle"])
        if not handle:
            raise SourceDataError(
                f"{row.where()}: {column['handle']} is empty", rule="csv_malformed"
            )
        if product is None or handle != product["handle"]:
            if product is not None:
                yield _product_record(product)
            if handle in seen:
                raise SourceDataError(
                    f"{row.where()}: rows of product {handle!r} are not consecutive; "
                    "re-export the file from Shopify",
                    rule="csv_malformed",
                )
            seen.add(handle)
            product = _product_fields(row, column)
        if _is_variant_row(row, column):
            _add_variant(product, row, column)
    if product is not None:
        yield _product_record(product)


def _product_fields(row: _Row, column: dict[str, str]) -> dict[str, Any]:
    product: dict[str, Any] = {"handle": row.get(column["handle"])}
    for key, api in (("title", "title"), ("body", "descriptionHtml"), ("vendor", "vendor")):
        if column[key] in row.cells:
            product[api] = row.get(column[key])
    if column["type"] in row.cells:
        product["productType"] = row.get(column["type"])
    if column["tags"] in row.cells:
        product["tags"] = _tags(row.get(column["tags"]))
    if row.get(column["status"]):
        product["status"] = row.get(column["status"]).upper()
    product["options"] = []
    product["variants"] = []
    return product


def _is_variant_row(row: _Row, column: dict[str, str]) -> bool:
    # Image-only rows carry a handle and an image but no option value, SKU or price.
    return any(row.get(column[k]) for k in ("option1_value", "sku", "price"))


def _add_variant(product: dict[str, Any], row: _Row, column: dict[str, str]) -> None:
    options: list[dict[str, Any]] = product["options"]
    selected: list[dict[str, str]] = []
    for n in (1, 2, 3):
        value = row.get(column[f"option{n}_value"])
        if not value:
            continue
        name = row.get(column[f"option{n}_name"])
        if len(options) < n:
            if not name:
                raise SourceDataError(
                    f"{row.where()}: {column[f'option{n}_value']} is {value!r} but the product's "
                    f"first variant row has no {column[f'option{n}_name']}",
                    rule="csv_malformed",
                )
            options.append({"name": name, "position": n, "values": []})
        option = options[n - 1]
        if value not in option["values"]:
            option["values"].append(value)
        selected.append({"name": option["name"], "value": value})
    variants: list[dict[str, Any]] = product["variants"]
    variant: dict[str, Any] = {
        "__typename": "ProductVariant",
        "title": " / ".join(o["value"] for o in selected) or "Default Title",
        "sku": row.get(column["sku"]) or None,
        "barcode": row.get(column["barcode"]) or None,
        "price": _decimal(row, column["price"], required=True),
        "compareAtPrice": _decimal(row, column["compare_at"]),
        "position": len(variants) + 1,
        "selectedOptions": selected,
    }
    if row.get(column["inventory_qty"]):
        variant["inventoryQuantity"] = _integer(row, column["inventory_qty"])
    if row.get(column["taxable"]):
        variant["taxable"] = _boolean(row, column["taxable"])
    variants.append(variant)


def _product_record(product: dict[str, Any]) -> ShopifyRecord:
    return ShopifyRecord(
        stream="products", id=f"csv:{product['handle']}", updated_at=None, data=product
    )


_CUSTOMER_ADDRESS: dict[str, tuple[str, str]] = {
    # API field -> (current export header, older export header)
    "company": ("Default Address Company", "Company"),
    "address1": ("Default Address Address1", "Address1"),
    "address2": ("Default Address Address2", "Address2"),
    "city": ("Default Address City", "City"),
    "provinceCode": ("Default Address Province Code", "Province Code"),
    "countryCodeV2": ("Default Address Country Code", "Country Code"),
    "zip": ("Default Address Zip", "Zip"),
    "phone": ("Default Address Phone", "Phone"),
}


def read_customers_csv(path: Path | str, *, shop_currency: str = "USD") -> Iterator[ShopifyRecord]:
    """Customers (with their default address) from a customers export."""
    with _CsvFile(Path(path)) as source:
        yield from _read_customers(source, shop_currency)


def _read_customers(source: _CsvFile, shop_currency: str) -> Iterator[ShopifyRecord]:
    header = source.header
    _require(source.path, header, ("First Name", "Last Name", "Email"))
    current = "Default Address Address1" in header
    for row in source.rows():
        customer: dict[str, Any] = {}
        customer_id = row.get("Customer ID")
        if customer_id:
            if not customer_id.isdigit():
                raise SourceDataError(
                    f"{row.where()}: Customer ID {customer_id!r} is not a number",
                    rule="csv_malformed",
                )
            customer["id"] = f"gid://shopify/Customer/{customer_id}"
            customer["legacyResourceId"] = customer_id
        customer["firstName"] = row.get("First Name") or None
        customer["lastName"] = row.get("Last Name") or None
        customer["email"] = row.get("Email") or None
        if "Phone" in header and current:
            customer["phone"] = row.get("Phone") or None
        if "Note" in header:
            customer["note"] = row.get("Note") or None
        if "Tags" in header:
            customer["tags"] = _tags(row.get("Tags"))
        if row.get("Tax Exempt"):
            customer["taxExempt"] = _boolean(row, "Tax Exempt")
        if row.get("Total Orders"):
            customer["numberOfOrders"] = str(_integer(row, "Total Orders"))
        if row.get("Total Spent"):
            amount = _decimal(row, "Total Spent", required=True)
            customer["amountSpent"] = {"amount": amount, "currencyCode": shop_currency}
        address = {
            api: row.get(names[0 if current else 1]) or None
            for api, names in _CUSTOMER_ADDRESS.items()
        }
        if any(address.values()):
            address["firstName"] = customer["firstName"]
            address["lastName"] = customer["lastName"]
            customer["addresses"] = [address]
        else:
            customer["addresses"] = []
        key = customer.get("id") or f"csv:{customer['email'] or row.line}"
        yield ShopifyRecord(stream="customers", id=str(key), updated_at=None, data=customer)


_FINANCIAL = {"partially_paid", "partially_refunded", "paid", "pending", "refunded", "voided"}
_FULFILLMENT = {
    "fulfilled": "FULFILLED",
    "unfulfilled": "UNFULFILLED",
    "partial": "PARTIALLY_FULFILLED",
}


def read_orders_csv(path: Path | str) -> Iterator[ShopifyRecord]:
    """Orders (line items, discount code, shipping line, tax lines) from an orders export.

    The export has one row per line item; order-level cells are only on an
    order's first row, so rows are grouped by ``Name``. Money is in the order's
    ``Currency`` and put under ``shopMoney``.
    """
    with _CsvFile(Path(path)) as source:
        yield from _read_orders(source)


def _read_orders(source: _CsvFile) -> Iterator[ShopifyRecord]:
    _require(source.path, source.header, ("Name", "Lineitem quantity", "Lineitem name"))
    _require(source.path, source.header, ("Lineitem price", "Currency"))
    order: dict[str, Any] | None = None
    seen: set[str] = set()
    for row in source.rows():
        name = row.get("Name")
        if not name:
            raise SourceDataError(f"{row.where()}: Name is empty", rule="csv_malformed")
        if order is None or name != order["name"]:
            if order is not None:
                yield _order_record(order)
            if name in seen:
                raise SourceDataError(
                    f"{row.where()}: rows of order {name!r} are not consecutive",
                    rule="csv_malformed",
                )
            seen.add(name)
            order = _order_fields(row)
        order["lineItems"].append(_line_item(row, order["currencyCode"]))
    if order is not None:
        yield _order_record(order)


def _order_fields(row: _Row) -> dict[str, Any]:
    currency = row.get("Currency")
    if not currency:
        raise SourceDataError(f"{row.where()}: Currency is empty on the order's first row")

    def money(column: str) -> dict[str, Any] | None:
        amount = _decimal(row, column)
        return (
            None if amount is None else {"shopMoney": {"amount": amount, "currencyCode": currency}}
        )

    order: dict[str, Any] = {"name": row.get("Name")}
    order_id = row.get("Id")
    if order_id:
        order["id"] = f"gid://shopify/Order/{order_id}"
        order["legacyResourceId"] = order_id
    order["email"] = row.get("Email") or None
    order["createdAt"] = _timestamp(row, "Created at")
    order["cancelledAt"] = _timestamp(row, "Cancelled at")
    order["currencyCode"] = currency
    financial = row.get("Financial Status").lower()
    if financial:
        if financial not in _FINANCIAL and financial != "authorized":
            raise SourceDataError(
                f"{row.where()}: Financial Status {financial!r} is not one of "
                f"{', '.join(sorted(_FINANCIAL | {'authorized'}))}",
                rule="csv_malformed",
            )
        order["displayFinancialStatus"] = financial.upper()
    fulfillment = row.get("Fulfillment Status").lower()
    if fulfillment:
        order["displayFulfillmentStatus"] = _FULFILLMENT.get(fulfillment, fulfillment.upper())
    order["note"] = row.get("Notes") or None
    order["tags"] = _tags(row.get("Tags"))
    order["subtotalPriceSet"] = money("Subtotal")
    order["totalShippingPriceSet"] = money("Shipping")
    order["totalTaxSet"] = money("Taxes")
    order["totalPriceSet"] = money("Total")
    order["totalDiscountsSet"] = money("Discount Amount")
    if row.get("Refunded Amount"):
        order["totalRefundedSet"] = money("Refunded Amount")
    code = row.get("Discount Code")
    order["discountCodes"] = [code] if code else []
    order["discountApplications"] = []
    if code:
        order["discountApplications"].append(
            {
                "__typename": "DiscountCodeApplication",
                "code": code,
                "value": {
                    "__typename": "MoneyV2",
                    "amount": _decimal(row, "Discount Amount") or "0.00",
                    "currencyCode": currency,
                },
            }
        )
    order["shippingLines"] = []
    if row.get("Shipping Method"):
        order["shippingLines"].append(
            {
                "__typename": "ShippingLine",
                "title": row.get("Shipping Method"),
                "originalPriceSet": money("Shipping"),
            }
        )
    order["taxLines"] = []
    for n in range(1, 6):
        title = row.get(f"Tax {n} Name")
        if title:
            order["taxLines"].append({"title": title, "priceSet": money(f"Tax {n} Value")})
    order["lineItems"] = []
    return order


def _line_item(row: _Row, currency: str) -> dict[str, Any]:
    item: dict[str, Any] = {
        "__typename": "LineItem",
        "name": row.get("Lineitem name"),
        "sku": row.get("Lineitem sku") or None,
        "quantity": _integer(row, "Lineitem quantity"),
        "originalUnitPriceSet": {
            "shopMoney": {
                "amount": _decimal(row, "Lineitem price", required=True),
                "currencyCode": currency,
            }
        },
    }
    discount = _decimal(row, "Lineitem discount")
    if discount is not None:
        item["totalDiscountSet"] = {"shopMoney": {"amount": discount, "currencyCode": currency}}
    if row.get("Lineitem taxable"):
        item["taxable"] = _boolean(row, "Lineitem taxable")
    if row.get("Lineitem requires shipping"):
        item["requiresShipping"] = _boolean(row, "Lineitem requires shipping")
    return item


def _order_record(order: dict[str, Any]) -> ShopifyRecord:
    key = order.get("id") or f"csv:{order['name']}"
    return ShopifyRecord(stream="orders", id=str(key), updated_at=None, data=order)


class _CsvFile:
    """An open export: its header row and its data rows with their starting line numbers."""

    def __init__(self, path: Path) -> None:
        if not path.is_file():
            raise ConfigError(f"{path}: no such CSV file")
        self.path = path
        self._handle = path.open(newline="", encoding="utf-8-sig")
        self._reader = csv.reader(self._handle)
        try:
            self.header = [h.strip() for h in next(self._reader)]
        except StopIteration:
            self._handle.close()
            raise ConfigError(f"{path}:1: the file is empty; expected a header row") from None
        except csv.Error as exc:
            self._handle.close()
            raise ConfigError(f"{path}:1: unreadable header ({exc})") from exc

    def __enter__(self) -> _CsvFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self._handle.close()

    def rows(self) -> Iterator[_Row]:
        start = self._reader.line_num + 1
        while True:
            try:
                cells = next(self._reader)
            except StopIteration:
                return
            except csv.Error as exc:
                raise SourceDataError(f"{self.path}:{start}: {exc}", rule="csv_malformed") from exc
            if any(c.strip() for c in cells):
                if len(cells) > len(self.header):
                    raise SourceDataError(
                        f"{self.path}:{start}: {len(cells)} cells but the header has "
                        f"{len(self.header)} columns",
                        rule="csv_malformed",
                    )
                yield _Row(self.path, start, dict(zip(self.header, cells, strict=False)))
            start = self._reader.line_num + 1


def _require(path: Path, header: list[str], columns: tuple[str, ...]) -> None:
    missing = [c for c in columns if c not in header]
    if missing:
        raise ConfigError(
            f"{path}:1: missing column(s) {', '.join(missing)}; is this the right export?"
        )


def _tags(text: str) -> list[str]:
    return [t.strip() for t in text.split(",") if t.strip()]


def _decimal(row: _Row, column: str, *, required: bool = False) -> str | None:
    text = row.get(column).replace(",", "")
    if not text:
        if required:
            raise SourceDataError(f"{row.where()}: {column} is empty", rule="csv_malformed")
        return None
    if not _DECIMAL.fullmatch(text):
        raise SourceDataError(
            f"{row.where()}: {column} {text!r} is not a decimal amount", rule="csv_malformed"
        )
    return text


def _integer(row: _Row, column: str) -> int:
    text = row.get(column)
    try:
        return int(text)
    except ValueError:
        raise SourceDataError(
            f"{row.where()}: {column} {text!r} is not a whole number", rule="csv_malformed"
        ) from None


def _boolean(row: _Row, column: str) -> bool:
    text = row.get(column).lower()
    if text in ("true", "yes", "1"):
        return True
    if text in ("false", "no", "0"):
        return False
    raise SourceDataError(
        f"{row.where()}: {column} {text!r} is not TRUE/FALSE or yes/no", rule="csv_malformed"
    )


def _timestamp(row: _Row, column: str) -> str | None:
    """Export timestamps (``2024-01-05 10:11:12 -0500``) as the API's UTC ``...Z`` form."""
    text = row.get(column)
    if not text:
        return None
    for fmt in ("%Y-%m-%d %H:%M:%S %z", "%Y-%m-%dT%H:%M:%S%z"):
        try:
            value = datetime.strptime(text, fmt)
        except ValueError:
            continue
        return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    raise SourceDataError(
        f"{row.where()}: {column} {text!r} is not a timestamp like 2024-01-05 10:11:12 -0500",
        rule="csv_malformed",
    )
