"""The Admin GraphQL endpoint: resolvers over the store, cost accounting and throttling.

Design note: the store's neutral documents are rendered lazily into Shopify's GraphQL shapes
(nested connections and references are callables graphql-core's default resolver calls).
``GraphQLApi.handle`` does what Shopify does per request, in order: parse, validate, compute
the requested cost, refuse over 1000 points (``MAX_COST_EXCEEDED``), take the cost from the
bucket or answer ``THROTTLED`` with HTTP 200, execute, compute the actual cost and refund the
difference. ``BulkPageReader`` runs a bulk query one page of root objects at a time; the bulk
runner (bulk_operations.py) drives it from its own thread.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass, field
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from graphql import (
    DocumentNode,
    ExecutionResult,
    GraphQLError,
    GraphQLResolveInfo,
    GraphQLSyntaxError,
    execute,
    parse,
    validate,
)

from services.fake_shopify.cost_throttle import CostBucket, ThrottleStatus
from services.fake_shopify.graphql_schema import admin_schema
from services.fake_shopify.query_cost import MAX_SINGLE_QUERY_COST, query_cost
from services.fake_shopify.search_syntax import parse_search
from services.fake_shopify.store_db import (
    PageKey,
    Resource,
    SortColumn,
    StoreDB,
    sort_value,
)

Info = GraphQLResolveInfo[dict[str, Any]]

if TYPE_CHECKING:
    from services.fake_shopify.bulk_operations import BulkOperations

MAX_PAGE_SIZE = 250
RATE_LIMIT_DOCS = "https://shopify.dev/api/usage/rate-limits"

_SORTS: dict[str, SortColumn] = {
    "ID": "id",
    "UPDATED_AT": "updated_at",
    "CREATED_AT": "created_at",
    "PROCESSED_AT": "processed_at",
}
_GID_TYPE: dict[Resource, str] = {"customers": "Customer", "products": "Product", "orders": "Order"}


def gid(kind: str, number: int | str) -> str:
    return f"gid://shopify/{kind}/{number}"


def parse_gid(value: str) -> tuple[str, int] | None:
    """``gid://shopify/Order/123`` -> ("Order", 123); None for anything else."""
    parts = value.split("/")
    if len(parts) != 5 or parts[:3] != ["gid:", "", "shopify"]:
        return None
    try:
        return parts[3], int(parts[4].split("?", 1)[0])
    except ValueError:
        return None


def gql_decimal(amount: str | Decimal | None) -> str | None:
    """GraphQL ``Decimal``: trailing zeros dropped, one decimal kept ("10.0", "19.99")."""
    if amount is None:
        return None
    text = format(Decimal(str(amount)).normalize(), "f")
    if "." not in text:
        text += ".0"
    return text


def encode_cursor(payload: dict[str, Any]) -> str:
    raw = json.dumps(payload, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> dict[str, Any]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        payload = json.loads(raw)
    except (ValueError, json.JSONDecodeError) as exc:
        raise GraphQLError(f"Invalid cursor for current pagination sort: {cursor!r}.") from exc
    if not isinstance(payload, dict):
        raise GraphQLError(f"Invalid cursor for current pagination sort: {cursor!r}.")
    return payload


@dataclass
class BulkPage:
    after: PageKey | None
    limit: int
    last_key: PageKey | None = None
    has_next: bool = False


def _page_size(args: dict[str, Any], bulk: bool) -> tuple[int | None, bool]:
    """(size, backwards) from first/last; Shopify insists on one of them outside bulk."""
    first, last = args.get("first"), args.get("last")
    if bulk:
        return None, False
    if first is None and last is None:
        raise GraphQLError("you must provide one of first or last")
    if first is not None and last is not None:
        raise GraphQLError("you must provide one of first or last, not both")
    size = first if first is not None else last
    assert isinstance(size, int)
    if size < 0 or size > MAX_PAGE_SIZE:
        raise GraphQLError(
            f"The {'first' if first is not None else 'last'} argument must be between 0 and "
            f"{MAX_PAGE_SIZE}."
        )
    return size, last is not None


def list_connection(items: list[Any], args: dict[str, Any], info: Info) -> dict[str, Any]:
    """A connection over an in-memory list (line items, variants, ...) with index cursors."""
    bulk = bool(info.context.get("bulk"))
    size, backwards = _page_size(args, bulk)
    indexed = list(enumerate(items))
    if args.get("reverse"):
        indexed.reverse()
    if args.get("after"):
        pos = int(decode_cursor(args["after"]).get("last_id", -1))
        at = next((i for i, (idx, _) in enumerate(indexed) if idx == pos), -1)
        indexed = indexed[at + 1 :]
    if args.get("before"):
        pos = int(decode_cursor(args["before"]).get("last_id", -1))
        at = next((i for i, (idx, _) in enumerate(indexed) if idx == pos), len(indexed))
        indexed = indexed[:at]
    has_next = has_prev = False
    if size is not None and not backwards:
        has_next = len(indexed) > size
        has_prev = bool(args.get("after"))
        indexed = indexed[:size]
    elif size is not None:
        has_prev = len(indexed) > size
        has_next = bool(args.get("before"))
        indexed = indexed[-size:] if size else []
    return _connection(
        [(encode_cursor({"last_id": idx}), node) for idx, node in indexed], has_next, has_prev
    )


def _connection(pairs: list[tuple[str, Any]], has_next: bool, has_prev: bool) -> dict[str, Any]:
    return {
        "edges": [{"cursor": c, "node": n} for c, n in pairs],
        "nodes": [n for _, n in pairs],
        "pageInfo": {
            "hasNextPage": has_next,
            "hasPreviousPage": has_prev,
            "startCursor": pairs[0][0] if pairs else None,
            "endCursor": pairs[-1][0] if pairs else None,
        },
    }


@dataclass
class StoreRenderer:
    """Renders store documents as GraphQL objects (dicts; nested parts resolve lazily)."""

    store: StoreDB
    shop_currency: str = "USD"

    def money(self, amount: str | None, currency: str) -> dict[str, Any]:
        return {
            "__typename": "MoneyV2",
            "amount": gql_decimal(amount or "0"),
            "currencyCode": currency,
        }

    def bag(self, pair: dict[str, str] | None, doc: dict[str, Any]) -> dict[str, Any]:
        pair = pair or {"shop": "0", "presentment": "0"}
        return {
            "shopMoney": self.money(pair["shop"], doc.get("currency", self.shop_currency)),
            "presentmentMoney": self.money(
                pair["presentment"], doc.get("presentment_currency", self.shop_currency)
            ),
        }

    def customer(self, doc: dict[str, Any]) -> dict[str, Any]:
        first, last = doc.get("first_name"), doc.get("last_name")
        display = " ".join(p for p in (first, last) if p) or doc.get("email") or ""
        address = doc.get("default_address")
        return {
            "__typename": "Customer",
            "id": gid("Customer", doc["id"]),
            "legacyResourceId": str(doc["id"]),
            "email": doc.get("email"),
            "defaultEmailAddress": {"emailAddress": doc["email"]} if doc.get("email") else None,
            "firstName": first,
            "lastName": last,
            "displayName": display,
            "phone": doc.get("phone"),
            "state": doc.get("state", "ENABLED"),
            "tags": doc.get("tags", []),
            "note": doc.get("note"),
            "verifiedEmail": bool(doc.get("verified_email", True)),
            "taxExempt": bool(doc.get("tax_exempt", False)),
            "createdAt": doc["created_at"],
            "updatedAt": doc["updated_at"],
            "numberOfOrders": str(doc.get("orders_count", 0)),
            "amountSpent": self.money(doc.get("total_spent", "0.00"), self.shop_currency),
            "defaultAddress": self.address(address) if address else None,
            "addresses": lambda info, **a: [self.address(x) for x in doc.get("addresses", [])][
                : a.get("first") or None
            ],
        }

    def address(self, a: dict[str, Any]) -> dict[str, Any]:
        return {
            "__typename": "MailingAddress",
            "id": gid("MailingAddress", a["id"]),
            "address1": a.get("address1"),
            "address2": a.get("address2"),
            "city": a.get("city"),
            "company": a.get("company"),
            "country": a.get("country"),
            "countryCodeV2": a.get("country_code"),
            "firstName": a.get("first_name"),
            "lastName": a.get("last_name"),
            "name": " ".join(p for p in (a.get("first_name"), a.get("last_name")) if p) or None,
            "phone": a.get("phone"),
            "province": a.get("province"),
            "provinceCode": a.get("province_code"),
            "zip": a.get("zip"),
        }

    def product(self, doc: dict[str, Any]) -> dict[str, Any]:
        out: dict[str, Any] = {
            "__typename": "Product",
            "id": gid("Product", doc["id"]),
            "legacyResourceId": str(doc["id"]),
            "title": doc["title"],
            "handle": doc["handle"],
            "descriptionHtml": doc.get("body_html") or "",
            "vendor": doc.get("vendor", ""),
            "productType": doc.get("product_type", ""),
            "status": doc.get("status", "ACTIVE"),
            "tags": doc.get("tags", []),
            "createdAt": doc["created_at"],
            "updatedAt": doc["updated_at"],
            "publishedAt": doc.get("published_at"),
            "totalInventory": sum(int(v.get("inventory_quantity") or 0) for v in doc["variants"]),
            "options": lambda info, **a: [
                {
                    "__typename": "ProductOption",
                    "id": gid("ProductOption", o["id"]),
                    "name": o["name"],
                    "position": o["position"],
                    "values": o["values"],
                }
                for o in doc.get("options", [])
            ][: a.get("first") or None],
        }
        out["variants"] = lambda info, **a: list_connection(
            [self.variant(v, doc) for v in doc["variants"]], a, info
        )
        return out

    def variant(self, v: dict[str, Any], product: dict[str, Any] | None = None) -> dict[str, Any]:
        names = [o["name"] for o in (product or {}).get("options", [])] or ["Title"]
        selected = [
            {"name": n, "value": v.get(f"option{i + 1}")}
            for i, n in enumerate(names)
            if v.get(f"option{i + 1}") is not None
        ]
        return {
            "__typename": "ProductVariant",
            "id": gid("ProductVariant", v["id"]),
            "legacyResourceId": str(v["id"]),
            "title": v["title"],
            "sku": v.get("sku"),
            "price": gql_decimal(v["price"]),
            "compareAtPrice": gql_decimal(v.get("compare_at_price")),
            "position": v.get("position", 1),
            "inventoryQuantity": v.get("inventory_quantity"),
            "taxable": bool(v.get("taxable", True)),
            "barcode": v.get("barcode"),
            "createdAt": v.get("created_at") or (product or {}).get("created_at"),
            "updatedAt": v.get("updated_at") or (product or {}).get("updated_at"),
            "selectedOptions": selected,
            "product": lambda info, **a: self.product(
                product or self.store.get("products", int(v["product_id"])) or {}
            ),
        }

    def _find_variant(
        self, product_id: int | None, variant_id: int | None
    ) -> dict[str, Any] | None:
        if product_id is None or variant_id is None:
            return None
        product = self.store.get("products", int(product_id))
        if product is None:
            return None
        for v in product["variants"]:
            if int(v["id"]) == int(variant_id):
                return self.variant(v, product)
        return None

    def tax_line(self, t: dict[str, Any], doc: dict[str, Any]) -> dict[str, Any]:
        rate = float(t.get("rate") or 0)
        return {
            "title": t["title"],
            "rate": rate,
            "ratePercentage": round(rate * 100, 4),
            "priceSet": self.bag(t["price"], doc),
        }

    def line_item(self, li: dict[str, Any], doc: dict[str, Any]) -> dict[str, Any]:
        qty = int(li["quantity"])
        refunded = sum(
            int(r["quantity"])
            for refund in doc.get("refunds", [])
            for r in refund.get("refund_line_items", [])
            if int(r["line_item_id"]) == int(li["id"])
        )
        price, discount = li["price"], li.get("total_discount") or {"shop": "0", "presentment": "0"}

        def per_unit(side: str) -> str:
            unit = Decimal(price[side]) - Decimal(discount[side]) / max(qty, 1)
            return str(unit.quantize(Decimal("0.01")))

        def times(side: str) -> str:
            return str((Decimal(price[side]) * qty).quantize(Decimal("0.01")))

        product_id, variant_id = li.get("product_id"), li.get("variant_id")
        return {
            "__typename": "LineItem",
            "id": gid("LineItem", li["id"]),
            "name": li.get("name") or li["title"],
            "title": li["title"],
            "sku": li.get("sku"),
            "variantTitle": li.get("variant_title"),
            "vendor": li.get("vendor"),
            "quantity": qty,
            "currentQuantity": qty - refunded,
            "refundableQuantity": qty - refunded,
            "originalUnitPriceSet": self.bag(price, doc),
            "discountedUnitPriceSet": self.bag(
                {"shop": per_unit("shop"), "presentment": per_unit("presentment")}, doc
            ),
            "originalTotalSet": self.bag(
                {"shop": times("shop"), "presentment": times("presentment")}, doc
            ),
            "totalDiscountSet": self.bag(discount, doc),
            "taxable": bool(li.get("taxable", True)),
            "requiresShipping": bool(li.get("requires_shipping", False)),
            "product": lambda info, **a: (
                self.product(p)
                if product_id is not None and (p := self.store.get("products", int(product_id)))
                else None
            ),
            "variant": lambda info, **a: self._find_variant(product_id, variant_id),
            "taxLines": [self.tax_line(t, doc) for t in li.get("tax_lines", [])],
        }

    def transaction(self, t: dict[str, Any], doc: dict[str, Any]) -> dict[str, Any]:
        return {
            "__typename": "OrderTransaction",
            "id": gid("OrderTransaction", t["id"]),
            "kind": t["kind"].upper(),
            "status": t.get("status", "success").upper(),
            "gateway": t.get("gateway"),
            "amountSet": self.bag(t["amount"], doc),
            "createdAt": t["created_at"],
            "processedAt": t.get("processed_at") or t["created_at"],
            "test": bool(t.get("test", doc.get("test", False))),
            "errorCode": t.get("error_code"),
        }

    def refund(self, r: dict[str, Any], doc: dict[str, Any]) -> dict[str, Any]:
        items = {int(li["id"]): li for li in doc.get("line_items", [])}
        txs = {int(t["id"]): t for t in doc.get("transactions", [])}
        rlis = [
            {
                "id": gid("RefundLineItem", rli["id"]),
                "lineItem": self.line_item(items[int(rli["line_item_id"])], doc),
                "quantity": int(rli["quantity"]),
                "restockType": rli.get("restock_type", "NO_RESTOCK"),
                "priceSet": self.bag(items[int(rli["line_item_id"])]["price"], doc),
                "subtotalSet": self.bag(rli["subtotal"], doc),
                "totalTaxSet": self.bag(rli.get("total_tax"), doc),
            }
            for rli in r.get("refund_line_items", [])
            if int(rli["line_item_id"]) in items
        ]
        refund_txs = [
            self.transaction(txs[int(i)], doc)
            for i in r.get("transaction_ids", [])
            if int(i) in txs
        ]
        return {
            "__typename": "Refund",
            "id": gid("Refund", r["id"]),
            "legacyResourceId": str(r["id"]),
            "createdAt": r["created_at"],
            "updatedAt": r.get("updated_at") or r["created_at"],
            "note": r.get("note"),
            "totalRefundedSet": self.bag(r["total_refunded"], doc),
            "refundLineItems": lambda info, **a: list_connection(rlis, a, info),
            "transactions": lambda info, **a: list_connection(refund_txs, a, info),
        }

    def discount_application(
        self, index: int, d: dict[str, Any], doc: dict[str, Any]
    ) -> dict[str, Any]:
        if d.get("type") == "percentage":
            value: dict[str, Any] = {
                "__typename": "PricingPercentageValue",
                "percentage": float(d.get("value", "0")),
            }
        else:
            value = self.money(d["amount"]["presentment"], doc.get("presentment_currency", "USD"))
        return {
            "__typename": "DiscountCodeApplication",
            "allocationMethod": "ACROSS",
            "index": index,
            "targetSelection": "ALL",
            "targetType": "LINE_ITEM",
            "value": value,
            "code": d["code"],
        }

    def shipping_line(self, s: dict[str, Any], doc: dict[str, Any]) -> dict[str, Any]:
        return {
            "id": gid("ShippingLine", s["id"]),
            "title": s["title"],
            "code": s.get("code"),
            "originalPriceSet": self.bag(s["price"], doc),
            "discountedPriceSet": self.bag(s["price"], doc),
            "taxLines": [self.tax_line(t, doc) for t in s.get("tax_lines", [])],
        }

    def order(self, doc: dict[str, Any]) -> dict[str, Any]:
        codes = [d["code"] for d in doc.get("discount_codes", [])]
        customer_id = doc.get("customer_id")
        lines = doc.get("line_items", [])
        shipping = doc.get("shipping_lines", [])
        return {
            "__typename": "Order",
            "id": gid("Order", doc["id"]),
            "legacyResourceId": str(doc["id"]),
            "name": doc["name"],
            "number": int(doc.get("order_number", 0)) - 1000,
            "email": doc.get("email"),
            "createdAt": doc["created_at"],
            "updatedAt": doc["updated_at"],
            "processedAt": doc.get("processed_at") or doc["created_at"],
            "cancelledAt": doc.get("cancelled_at"),
            "cancelReason": (doc.get("cancel_reason") or "").upper() or None,
            "closedAt": doc.get("closed_at"),
            "test": bool(doc.get("test", False)),
            "note": doc.get("note"),
            "tags": doc.get("tags", []),
            "currencyCode": doc.get("currency", self.shop_currency),
            "presentmentCurrencyCode": doc.get("presentment_currency", self.shop_currency),
            "displayFinancialStatus": (doc.get("financial_status") or "paid").upper(),
            "displayFulfillmentStatus": (doc.get("fulfillment_status") or "unfulfilled").upper(),
            "subtotalPriceSet": self.bag(doc["subtotal"], doc),
            "totalPriceSet": self.bag(doc["total"], doc),
            "totalDiscountsSet": self.bag(doc.get("total_discounts"), doc),
            "totalShippingPriceSet": self.bag(doc.get("total_shipping"), doc),
            "totalTaxSet": self.bag(doc.get("total_tax"), doc),
            "totalRefundedSet": self.bag(doc.get("total_refunded"), doc),
            "currentTotalPriceSet": self.bag(doc.get("current_total") or doc["total"], doc),
            "discountCode": codes[0] if codes else None,
            "discountCodes": codes,
            "discountApplications": lambda info, **a: list_connection(
                [
                    self.discount_application(i, d, doc)
                    for i, d in enumerate(doc.get("discount_codes", []))
                ],
                a,
                info,
            ),
            "lineItems": lambda info, **a: list_connection(
                [self.line_item(li, doc) for li in lines], a, info
            ),
            "shippingLines": lambda info, **a: list_connection(
                [self.shipping_line(s, doc) for s in shipping], a, info
            ),
            "shippingLine": self.shipping_line(shipping[0], doc) if shipping else None,
            "taxLines": [self.tax_line(t, doc) for t in doc.get("tax_lines", [])],
            "transactions": lambda info, **a: [
                self.transaction(t, doc) for t in doc.get("transactions", [])
            ][: a.get("first") or None],
            "refunds": lambda info, **a: [self.refund(r, doc) for r in doc.get("refunds", [])][
                : a.get("first") or None
            ],
            "customer": lambda info, **a: (
                self.customer(c)
                if customer_id is not None and (c := self.store.get("customers", int(customer_id)))
                else None
            ),
        }

    def render(self, resource: Resource, doc: dict[str, Any]) -> dict[str, Any]:
        if resource == "orders":
            return self.order(doc)
        if resource == "customers":
            return self.customer(doc)
        return self.product(doc)


@dataclass
class AdminRoot:
    """The root value of every query: one callable per root field."""

    store: StoreDB
    renderer: StoreRenderer
    bulk: BulkOperations | None
    scopes: tuple[str, ...]
    shop_domain: str

    def value(self) -> dict[str, Any]:
        return {
            "shop": lambda info, **a: {
                "id": gid("Shop", 1),
                "name": "Tribot Store",
                "email": "store@tribot.example",
                "myshopifyDomain": self.shop_domain,
                "currencyCode": self.renderer.shop_currency,
                "ianaTimezone": "America/New_York",
            },
            "currentAppInstallation": lambda info, **a: {
                "id": gid("AppInstallation", 1),
                "accessScopes": [{"handle": s, "description": s} for s in self.scopes],
            },
            "customers": lambda info, **a: self.store_connection("customers", info, a),
            "products": lambda info, **a: self.store_connection("products", info, a),
            "orders": lambda info, **a: self.store_connection("orders", info, a),
            "customer": lambda info, **a: self.one("customers", a["id"]),
            "product": lambda info, **a: self.one("products", a["id"]),
            "order": lambda info, **a: self.one("orders", a["id"]),
            "deletionEvents": lambda info, **a: self.deletion_events(info, a),
            "node": lambda info, **a: self.node(a["id"]),
            "nodes": lambda info, **a: self.nodes(a["ids"]),
            "currentBulkOperation": lambda info, **a: (
                self.bulk.current_as_graphql(a.get("type", "QUERY")) if self.bulk else None
            ),
            "bulkOperationRunQuery": lambda info, **a: self.run_bulk(info, a),
            "bulkOperationCancel": lambda info, **a: self.cancel_bulk(a["id"]),
        }

    def one(self, resource: Resource, value: str) -> dict[str, Any] | None:
        parsed = parse_gid(value)
        if parsed is None or parsed[0] != _GID_TYPE[resource]:
            raise GraphQLError(f"Invalid global id '{value}'")
        doc = self.store.get(resource, parsed[1])
        return None if doc is None else self.renderer.render(resource, doc)

    def node(self, value: str) -> dict[str, Any] | None:
        parsed = parse_gid(value)
        if parsed is None:
            raise GraphQLError(f"Invalid global id '{value}'")
        kind, number = parsed
        for resource, name in _GID_TYPE.items():
            if name == kind:
                doc = self.store.get(resource, number)
                return None if doc is None else self.renderer.render(resource, doc)
        if kind == "BulkOperation" and self.bulk is not None:
            return self.bulk.as_graphql(number)
        return None

    def nodes(self, values: list[str]) -> list[dict[str, Any] | None]:
        if len(values) > MAX_PAGE_SIZE:
            raise GraphQLError(f"The ids argument accepts at most {MAX_PAGE_SIZE} ids.")
        return [self.node(v) for v in values]

    def store_connection(
        self, resource: Resource, info: Info, args: dict[str, Any]
    ) -> dict[str, Any]:
        bulk_page: BulkPage | None = info.context.get("bulk_page")
        size, backwards = _page_size(args, bulk_page is not None)
        where = parse_search(resource, args.get("query"))
        sort = _SORTS.get(str(args.get("sortKey", "ID")), "id")
        reverse = bool(args.get("reverse"))
        if bulk_page is not None:
            # Bulk exports read root objects by id, a page at a time, with no snapshot.
            docs = self.store.page(
                resource, where=where, after=bulk_page.after, limit=bulk_page.limit + 1
            )
            bulk_page.has_next = len(docs) > bulk_page.limit
            docs = docs[: bulk_page.limit]
            bulk_page.last_key = PageKey(docs[-1]["id"], docs[-1]["id"]) if docs else None
            pairs = [("", self.renderer.render(resource, d)) for d in docs]
            return _connection(pairs, bulk_page.has_next, bulk_page.after is not None)
        assert size is not None
        cursor_arg = args.get("before") if backwards else args.get("after")
        after: PageKey | None = None
        if cursor_arg:
            payload = decode_cursor(cursor_arg)
            if "last_id" not in payload:
                raise GraphQLError(f"Invalid cursor for current pagination sort: {cursor_arg!r}.")
            after = PageKey(payload.get("last_value", payload["last_id"]), int(payload["last_id"]))
        direction = reverse != backwards
        docs = self.store.page(
            resource, where=where, sort=sort, reverse=direction, after=after, limit=size + 1
        )
        more = len(docs) > size
        docs = docs[:size]
        if backwards:
            docs.reverse()
        pairs = [
            (
                encode_cursor({"last_id": int(d["id"]), "last_value": sort_value(d, sort)}),
                self.renderer.render(resource, d),
            )
            for d in docs
        ]
        has_next, has_prev = (bool(cursor_arg), more) if backwards else (more, bool(cursor_arg))
        return _connection(pairs, has_next, has_prev)

    def deletion_events(self, info: Info, args: dict[str, Any]) -> dict[str, Any]:
        size, _ = _page_size(args, bool(info.context.get("bulk_page")))
        subject_types = args.get("subjectTypes") or ["PRODUCT", "COLLECTION"]
        resources: list[Resource] = ["products"] if "PRODUCT" in subject_types else []
        after_seq = int(decode_cursor(args["after"]).get("last_id", 0)) if args.get("after") else 0
        limit = (size if size is not None else 10_000) + 1
        events = self.store.deletion_events(resources, after_seq=after_seq, limit=limit)
        more = len(events) > limit - 1
        events = events[: limit - 1]
        pairs = [
            (
                encode_cursor({"last_id": e.seq}),
                {
                    "occurredAt": e.occurred_at,
                    "subjectId": gid(_GID_TYPE[e.resource], e.subject_id),
                    "subjectType": "PRODUCT",
                },
            )
            for e in events
        ]
        return _connection(pairs, more, after_seq > 0)

    def run_bulk(self, info: Info, args: dict[str, Any]) -> dict[str, Any]:
        assert self.bulk is not None
        return self.bulk.run_query(
            args["query"], args.get("groupObjects"), info.context["api_version"]
        )

    def cancel_bulk(self, value: str) -> dict[str, Any]:
        assert self.bulk is not None
        parsed = parse_gid(value)
        if parsed is None or parsed[0] != "BulkOperation":
            return {
                "bulkOperation": None,
                "userErrors": [{"field": ["id"], "message": "Bulk operation does not exist"}],
            }
        return self.bulk.cancel(parsed[1])


@dataclass
class GraphQLOutcome:
    """One answered GraphQL request, with what the request log needs."""

    status: int
    body: dict[str, Any]
    requested_cost: int | None = None
    actual_cost: int | None = None
    throttle: ThrottleStatus | None = None
    throttled: bool = False


@dataclass
class GraphQLRequest:
    query: str
    variables: dict[str, Any] = field(default_factory=dict)
    operation_name: str | None = None


def decode_request(body: bytes, content_type: str) -> GraphQLRequest | None:
    """JSON ``{query, variables, operationName}`` or a raw ``application/graphql`` body."""
    if content_type.split(";")[0].strip().lower() == "application/graphql":
        text = body.decode("utf-8", "replace")
        return GraphQLRequest(text) if text.strip() else None
    try:
        payload = json.loads(body or b"null")
    except json.JSONDecodeError:
        return None
    if not isinstance(payload, dict) or not isinstance(payload.get("query"), str):
        return None
    variables = payload.get("variables") or {}
    return GraphQLRequest(
        payload["query"],
        variables if isinstance(variables, dict) else {},
        payload.get("operationName"),
    )


class GraphQLApi:
    """Answers ``POST /admin/api/{version}/graphql.json`` as Shopify does."""

    def __init__(
        self, root: AdminRoot, bucket: CostBucket, *, report_throttle_status: bool = True
    ) -> None:
        self.root = root
        self.bucket = bucket
        self.schema = admin_schema()
        self.report_throttle_status = report_throttle_status

    def _cost(self, requested: int | None, actual: int | None) -> dict[str, Any]:
        cost: dict[str, Any] = {"requestedQueryCost": requested, "actualQueryCost": actual}
        if self.report_throttle_status:
            cost["throttleStatus"] = self.bucket.status().as_json()
        return cost

    def handle(self, body: bytes, content_type: str, api_version: str) -> GraphQLOutcome:
        request = decode_request(body, content_type)
        if request is None:
            return GraphQLOutcome(
                400, {"errors": {"query": "Required parameter missing or invalid"}}
            )
        try:
            document = parse(request.query)
        except GraphQLSyntaxError as exc:
            return GraphQLOutcome(200, {"errors": [_error_json(exc)]})
        problems = validate(self.schema, document)
        if problems:
            return GraphQLOutcome(200, {"errors": [_error_json(e) for e in problems]})
        requested = query_cost(self.schema, document, request.variables, request.operation_name)
        if requested > MAX_SINGLE_QUERY_COST:
            message = (
                f"Query cost is {requested}, which exceeds the single query max cost limit "
                f"({MAX_SINGLE_QUERY_COST}).\n\nSee {RATE_LIMIT_DOCS} for more information on how "
                "the\ncost of a query is calculated.\n\nTo query larger amounts of data with fewer "
                "limits, bulk operations should be used instead.\nSee "
                "https://shopify.dev/tutorials/perform-bulk-operations-with-admin-api "
                "for usage details.\n"
            )
            err = {
                "message": message,
                "extensions": {
                    "code": "MAX_COST_EXCEEDED",
                    "cost": requested,
                    "maxCost": MAX_SINGLE_QUERY_COST,
                    "documentation": RATE_LIMIT_DOCS,
                },
            }
            return GraphQLOutcome(200, {"errors": [err]}, requested, None)
        if not self.bucket.try_take(requested):
            status = self.bucket.status()
            body_json = {
                "errors": [
                    {
                        "message": "Throttled",
                        "extensions": {"code": "THROTTLED", "documentation": RATE_LIMIT_DOCS},
                    }
                ],
                "extensions": {"cost": self._cost(requested, None)},
            }
            return GraphQLOutcome(200, body_json, requested, None, status, throttled=True)
        result = self.execute(document, request, {"bulk_page": None, "api_version": api_version})
        actual = query_cost(
            self.schema, document, request.variables, request.operation_name, result.data or {}
        )
        self.bucket.refund(requested - actual)
        out: dict[str, Any] = {}
        if result.errors:
            out["errors"] = [_error_json(e) for e in result.errors]
        out["data"] = result.data
        out["extensions"] = {"cost": self._cost(requested, actual)}
        return GraphQLOutcome(200, out, requested, actual, self.bucket.status())

    def execute(
        self, document: DocumentNode, request: GraphQLRequest, context: dict[str, Any]
    ) -> ExecutionResult:
        result = execute(
            self.schema,
            document,
            root_value=self.root.value(),
            context_value=context,
            variable_values=request.variables,
            operation_name=request.operation_name,
        )
        assert isinstance(result, ExecutionResult)
        return result


class BulkPageReader:
    """Executes a bulk query for one page of root objects (no cost, no ``first`` needed)."""

    def __init__(self, root: AdminRoot) -> None:
        self.root = root
        self.schema = admin_schema()

    def read(self, document: DocumentNode, page: BulkPage) -> ExecutionResult:
        result = execute(
            self.schema,
            document,
            root_value=self.root.value(),
            context_value={"bulk_page": page, "bulk": True, "api_version": ""},
        )
        assert isinstance(result, ExecutionResult)
        return result


def _error_json(error: GraphQLError) -> dict[str, Any]:
    out: dict[str, Any] = {"message": error.message}
    if error.locations:
        out["locations"] = [{"line": loc.line, "column": loc.column} for loc in error.locations]
    if error.path:
        out["path"] = list(error.path)
    if error.extensions:
        out["extensions"] = error.extensions
    return out
