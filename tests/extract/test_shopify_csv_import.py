"""CSV exports from the Shopify admin become the same records as the API path gives."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from extract.shopify_csv_import import read_customers_csv, read_orders_csv, read_products_csv
from runeshift.errors import ConfigError, SourceDataError

LEGACY_HEADER = [
    "Handle", "Title", "Body (HTML)", "Vendor", "Type", "Tags", "Published",
    "Option1 Name", "Option1 Value", "Option2 Name", "Option2 Value", "Option3 Name",
    "Option3 Value", "Variant SKU", "Variant Grams", "Variant Inventory Tracker",
    "Variant Inventory Qty", "Variant Inventory Policy", "Variant Fulfillment Service",
    "Variant Price", "Variant Compare At Price", "Variant Requires Shipping", "Variant Taxable",
    "Variant Barcode", "Image Src", "Image Position", "Image Alt Text", "Gift Card", "Status",
]  # fmt: skip
CURRENT_HEADER = [
    "Title", "URL handle", "Description", "Vendor", "Product category", "Type", "Tags",
    "Published on online store", "Status", "SKU", "Barcode", "Option1 name", "Option1 value",
    "Option1 Linked To", "Option2 name", "Option2 value", "Option2 Linked To", "Option3 name",
    "Option3 value", "Option3 Linked To", "Price", "Compare-at price", "Cost per item",
    "Charge tax", "Tax code", "Inventory tracker", "Inventory quantity",
    "Continue selling when out of stock", "Weight value (grams)", "Weight unit for display",
    "Requires shipping", "Fulfillment service", "Product image URL", "Image position",
    "Image alt text", "Variant image URL", "Gift card", "SEO title", "SEO description",
]  # fmt: skip

# One logical catalogue: a 3-variant T-shirt (2 options, with an image-only row), a
# single-variant mug, in both dialects.
PRODUCTS = [
    {"handle": "tee", "title": "Rune Tee", "body": "<p>Soft &amp; warm</p>", "vendor": "Tribot",
     "type": "Shirts", "tags": "cotton, summer", "status": "active",
     "o1n": "Size", "o1v": "S", "o2n": "Color", "o2v": "Red", "sku": "TEE-S-R", "qty": "4",
     "price": "19.99", "compare": "24.99", "taxable": "TRUE", "barcode": "123"},
    {"handle": "tee", "o1v": "M", "o2v": "Red", "sku": "TEE-M-R", "qty": "0", "price": "19.99",
     "taxable": "TRUE"},
    {"handle": "tee", "image": "https://cdn.example/tee-back.png"},
    {"handle": "tee", "o1v": "M", "o2v": "Blue", "sku": "TEE-M-B", "qty": "7", "price": "21.00",
     "taxable": "FALSE"},
    {"handle": "mug", "title": "Mug", "body": "", "vendor": "Tribot", "type": "Kitchen",
     "tags": "", "status": "draft", "o1n": "Title", "o1v": "Default Title", "sku": "MUG",
     "qty": "12", "price": "8.50", "taxable": "TRUE"},
]  # fmt: skip

LEGACY_COLUMNS = {
    "handle": "Handle", "title": "Title", "body": "Body (HTML)", "vendor": "Vendor",
    "type": "Type", "tags": "Tags", "status": "Status", "o1n": "Option1 Name",
    "o1v": "Option1 Value", "o2n": "Option2 Name", "o2v": "Option2 Value", "sku": "Variant SKU",
    "qty": "Variant Inventory Qty", "price": "Variant Price",
    "compare": "Variant Compare At Price", "taxable": "Variant Taxable",
    "barcode": "Variant Barcode", "image": "Image Src",
}  # fmt: skip
CURRENT_COLUMNS = {
    "handle": "URL handle", "title": "Title", "body": "Description", "vendor": "Vendor",
    "type": "Type", "tags": "Tags", "status": "Status", "o1n": "Option1 name",
    "o1v": "Option1 value", "o2n": "Option2 name", "o2v": "Option2 value", "sku": "SKU",
    "qty": "Inventory quantity", "price": "Price", "compare": "Compare-at price",
    "taxable": "Charge tax", "barcode": "Barcode", "image": "Product image URL",
}  # fmt: skip


def write_csv(path: Path, header: list[str], rows: list[dict[str, str]]) -> Path:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=header)
        writer.writeheader()
        writer.writerows(rows)
    return path


def products_file(tmp_path: Path, dialect: str) -> Path:
    header, columns = (
        (LEGACY_HEADER, LEGACY_COLUMNS)
        if dialect == "legacy"
        else (CURRENT_HEADER, CURRENT_COLUMNS)
    )
    rows = [{columns[k]: v for k, v in row.items()} for row in PRODUCTS]
    return write_csv(tmp_path / f"products_{dialect}.csv", header, rows)


def test_both_product_dialects_give_identical_records(tmp_path: Path) -> None:
    legacy = list(read_products_csv(products_file(tmp_path, "legacy")))
    current = list(read_products_csv(products_file(tmp_path, "current")))
    assert legacy == current
    assert [r.id for r in legacy] == ["csv:tee", "csv:mug"]


def test_rows_of_one_handle_become_one_product_with_variants_and_options(tmp_path: Path) -> None:
    tee, mug = read_products_csv(products_file(tmp_path, "current"))
    assert tee.data["title"] == "Rune Tee"
    assert tee.data["descriptionHtml"] == "<p>Soft &amp; warm</p>"
    assert tee.data["tags"] == ["cotton", "summer"]
    assert tee.data["status"] == "ACTIVE"
    assert tee.data["options"] == [
        {"name": "Size", "position": 1, "values": ["S", "M"]},
        {"name": "Color", "position": 2, "values": ["Red", "Blue"]},
    ]
    assert [
        (v["sku"], v["title"], v["price"], v["inventoryQuantity"]) for v in tee.data["variants"]
    ] == [
        ("TEE-S-R", "S / Red", "19.99", 4),
        ("TEE-M-R", "M / Red", "19.99", 0),
        ("TEE-M-B", "M / Blue", "21.00", 7),
    ]
    assert tee.data["variants"][2]["taxable"] is False
    assert tee.data["variants"][0]["selectedOptions"] == [
        {"name": "Size", "value": "S"},
        {"name": "Color", "value": "Red"},
    ]
    assert mug.data["variants"][0]["title"] == "Default Title"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        pytest.param(
            {"price": "12,5x"}, "Variant Price '125x' is not a decimal amount", id="bad-price"
        ),
        pytest.param(
            {"qty": "lots"}, "Variant Inventory Qty 'lots' is not a whole number", id="bad-qty"
        ),
        pytest.param(
            {"taxable": "maybe"}, "Variant Taxable 'maybe' is not TRUE/FALSE", id="bad-bool"
        ),
        pytest.param({"handle": ""}, "Handle is empty", id="no-handle"),
    ],
)
def test_malformed_product_row_names_file_and_line(
    tmp_path: Path, change: dict[str, str], message: str
) -> None:
    rows = [dict(r) for r in PRODUCTS]
    rows[3].update(change)  # data line 4 = file line 5
    path = write_csv(
        tmp_path / "bad.csv",
        LEGACY_HEADER,
        [{LEGACY_COLUMNS[k]: v for k, v in r.items()} for r in rows],
    )
    with pytest.raises(SourceDataError) as err:
        list(read_products_csv(path))
    assert str(err.value).startswith(f"{path}:5: ")
    assert message in str(err.value)


def test_line_numbers_count_multiline_cells(tmp_path: Path) -> None:
    rows = [dict(r) for r in PRODUCTS]
    rows[0]["body"] = "<p>one</p>\n<p>two</p>\n<p>three</p>"
    rows[1]["price"] = "oops"
    path = write_csv(
        tmp_path / "multi.csv",
        LEGACY_HEADER,
        [{LEGACY_COLUMNS[k]: v for k, v in r.items()} for r in rows],
    )
    with pytest.raises(SourceDataError, match=rf"^{path}:5: Variant Price 'oops'"):
        list(read_products_csv(path))


def test_product_rows_not_consecutive_are_refused(tmp_path: Path) -> None:
    rows = [PRODUCTS[0], PRODUCTS[4], PRODUCTS[1]]
    path = write_csv(
        tmp_path / "split.csv",
        LEGACY_HEADER,
        [{LEGACY_COLUMNS[k]: v for k, v in r.items()} for r in rows],
    )
    with pytest.raises(SourceDataError, match=r":4: rows of product 'tee' are not consecutive"):
        list(read_products_csv(path))


def test_unknown_header_is_a_config_error_naming_line_1(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "x.csv", ["Name", "Price"], [{"Name": "a", "Price": "1"}])
    with pytest.raises(ConfigError, match=rf"^{path}:1: not a Shopify products export"):
        list(read_products_csv(path))


CUSTOMER_HEADER = [
    "Customer ID", "First Name", "Last Name", "Email", "Accepts Email Marketing",
    "Default Address Company", "Default Address Address1", "Default Address Address2",
    "Default Address City", "Default Address Province Code", "Default Address Country Code",
    "Default Address Zip", "Default Address Phone", "Phone", "Accepts SMS Marketing",
    "Total Spent", "Total Orders", "Note", "Tax Exempt", "Tags",
]  # fmt: skip


def test_customers_export_gives_api_shaped_customers(tmp_path: Path) -> None:
    path = write_csv(
        tmp_path / "customers_export.csv",
        CUSTOMER_HEADER,
        [
            {"Customer ID": "'8779761975521", "First Name": "Ada", "Last Name": "Lovelace",
             "Email": "ada@example.com", "Default Address Address1": "1 Main St",
             "Default Address City": "Albany", "Default Address Province Code": "NY",
             "Default Address Country Code": "US", "Default Address Zip": "'01234",
             "Phone": "'+15550001", "Total Spent": "120.50", "Total Orders": "3",
             "Tax Exempt": "no", "Tags": "vip, early"},
            {"First Name": "Guest", "Email": "guest@example.com", "Total Spent": "0.00",
             "Total Orders": "0", "Tax Exempt": "yes"},
        ],
    )  # fmt: skip
    ada, guest = read_customers_csv(path)
    assert ada.id == "gid://shopify/Customer/8779761975521"
    assert ada.data["legacyResourceId"] == "8779761975521"
    assert ada.data["phone"] == "+15550001"
    assert ada.data["amountSpent"] == {"amount": "120.50", "currencyCode": "USD"}
    assert ada.data["numberOfOrders"] == "3"
    assert ada.data["tags"] == ["vip", "early"]
    assert ada.data["taxExempt"] is False
    assert ada.data["addresses"][0]["zip"] == "01234"
    assert ada.data["addresses"][0]["countryCodeV2"] == "US"
    assert guest.id == "csv:guest@example.com"
    assert guest.data["addresses"] == []
    assert guest.data["taxExempt"] is True


ORDER_HEADER = [
    "Name", "Email", "Financial Status", "Paid at", "Fulfillment Status", "Fulfilled at",
    "Accepts Marketing", "Currency", "Subtotal", "Shipping", "Taxes", "Total", "Discount Code",
    "Discount Amount", "Shipping Method", "Created at", "Lineitem quantity", "Lineitem name",
    "Lineitem price", "Lineitem compare at price", "Lineitem sku", "Lineitem requires shipping",
    "Lineitem taxable", "Lineitem fulfillment status", "Notes", "Cancelled at",
    "Refunded Amount", "Id", "Tags", "Lineitem discount", "Tax 1 Name", "Tax 1 Value",
]  # fmt: skip

ORDERS = [
    {"Name": "#1001", "Email": "ada@example.com", "Financial Status": "partially_refunded",
     "Fulfillment Status": "fulfilled", "Currency": "EUR", "Subtotal": "40.00",
     "Shipping": "5.00", "Taxes": "3.60", "Total": "44.60", "Discount Code": "TENOFF",
     "Discount Amount": "4.00", "Shipping Method": "Standard",
     "Created at": "2024-03-10 01:30:00 -0500", "Lineitem quantity": "2",
     "Lineitem name": "Rune Tee - S / Red", "Lineitem price": "19.99", "Lineitem sku": "TEE-S-R",
     "Lineitem requires shipping": "true", "Lineitem taxable": "true", "Refunded Amount": "10.00",
     "Id": "5501", "Tags": "gift", "Lineitem discount": "4.00", "Tax 1 Name": "VAT 9%",
     "Tax 1 Value": "3.60"},
    {"Name": "#1001", "Lineitem quantity": "1", "Lineitem name": "Mug", "Lineitem price": "0.02",
     "Lineitem sku": "MUG", "Lineitem requires shipping": "true", "Lineitem taxable": "false"},
    {"Name": "#1002", "Financial Status": "paid", "Currency": "USD", "Subtotal": "8.50",
     "Shipping": "0.00", "Taxes": "0.00", "Total": "8.50",
     "Created at": "2024-07-04 12:00:00 -0400", "Lineitem quantity": "1", "Lineitem name": "Mug",
     "Lineitem price": "8.50", "Id": "5502"},
]  # fmt: skip


def test_orders_export_groups_line_items_under_their_order(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "orders_export.csv", ORDER_HEADER, ORDERS)
    first, second = read_orders_csv(path)
    assert first.id == "gid://shopify/Order/5501"
    assert first.data["createdAt"] == "2024-03-10T06:30:00Z"
    assert first.data["displayFinancialStatus"] == "PARTIALLY_REFUNDED"
    assert first.data["displayFulfillmentStatus"] == "FULFILLED"
    assert first.data["totalPriceSet"] == {"shopMoney": {"amount": "44.60", "currencyCode": "EUR"}}
    assert first.data["discountCodes"] == ["TENOFF"]
    assert first.data["discountApplications"][0]["code"] == "TENOFF"
    assert first.data["shippingLines"][0]["title"] == "Standard"
    assert first.data["taxLines"][0]["title"] == "VAT 9%"
    assert [(li["name"], li["quantity"]) for li in first.data["lineItems"]] == [
        ("Rune Tee - S / Red", 2),
        ("Mug", 1),
    ]
    assert first.data["lineItems"][1]["originalUnitPriceSet"]["shopMoney"]["currencyCode"] == "EUR"
    assert second.data["lineItems"][0]["sku"] is None
    assert second.data["discountCodes"] == []


@pytest.mark.parametrize(
    ("row", "change", "message"),
    [
        pytest.param(1, {"Lineitem quantity": "two"}, "Lineitem quantity 'two' is not a whole number",
                     id="bad-quantity"),
        pytest.param(2, {"Created at": "yesterday"}, "Created at 'yesterday' is not a timestamp",
                     id="bad-timestamp"),
        pytest.param(2, {"Financial Status": "lost"}, "Financial Status 'lost' is not one of",
                     id="bad-status"),
    ],
)  # fmt: skip
def test_malformed_order_row_names_file_and_line(
    tmp_path: Path, row: int, change: dict[str, str], message: str
) -> None:
    rows = [dict(r) for r in ORDERS]
    rows[row].update(change)
    path = write_csv(tmp_path / "orders_export.csv", ORDER_HEADER, rows)
    with pytest.raises(SourceDataError) as err:
        list(read_orders_csv(path))
    assert str(err.value).startswith(f"{path}:{row + 2}: ")
    assert message in str(err.value)


def test_orders_file_without_line_item_columns_is_refused(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "orders.csv", ["Name", "Total"], [{"Name": "#1", "Total": "1"}])
    with pytest.raises(ConfigError, match=r":1: missing column\(s\) Lineitem quantity"):
        list(read_orders_csv(path))
