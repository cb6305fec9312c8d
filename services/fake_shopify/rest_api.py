"""The legacy REST Admin API: list, count and show endpoints with cursor pagination.

Shapes follow Shopify's REST payloads (the same ones webhooks carry): numeric ids beside
``admin_graphql_api_id``, money as strings ("19.99") with ``*_set`` MoneyBags, timestamps in
the shop's zone with offsets ("2024-03-10T01:30:00-05:00"), single root keys
(``{"orders": [...]}``). Pagination is Shopify's: an opaque ``page_info`` in a ``link``
header with absolute URLs, separators exactly ``", "`` and ``"; "``, and any filter passed
beside ``page_info`` refused with 400, because the cursor already carries the filters.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any
from urllib.parse import urlencode

from services.fake_shopify.search_syntax import SHOP_TZ, to_utc_text
from services.fake_shopify.store_db import (
    Condition,
    Filter,
    PageKey,
    Resource,
    SortColumn,
    StoreDB,
    sort_value,
)

DEFAULT_LIMIT = 50
MAX_LIMIT = 250
MAX_REST_VARIANTS = 100
_PAGE_INFO_COMPANIONS = {"limit", "fields", "page_info"}
_GID = {"customers": "Customer", "products": "Product", "orders": "Order"}
_ROOT_SINGULAR = {"customers": "customer", "products": "product", "orders": "order"}
_EVENT_SUBJECTS: dict[str, Resource] = {
    "Order": "orders",
    "Customer": "customers",
    "Product": "products",
}


@dataclass
class RestOutcome:
    status: int
    body: dict[str, Any]
    headers: dict[str, str] = field(default_factory=dict)


def shop_time(utc_text: str | None) -> str | None:
    """A stored UTC timestamp as Shopify REST writes it: shop-local with its offset."""
    if utc_text is None:
        return None
    moment = datetime.fromisoformat(utc_text.replace("Z", "+00:00"))
    return moment.astimezone(SHOP_TZ).isoformat()


def rest_money(amount: str | None) -> str:
    return str(Decimal(amount or "0").quantize(Decimal("0.01")))


class RestRenderer:
    """Store documents in REST shapes."""

    def __init__(self, shop_currency: str = "USD") -> None:
        self.shop_currency = shop_currency

    def money_set(self, pair: dict[str, str] | None, doc: dict[str, Any]) -> dict[str, Any]:
        pair = pair or {"shop": "0", "presentment": "0"}
        return {
            "shop_money": {
                "amount": rest_money(pair["shop"]),
                "currency_code": doc.get("currency", self.shop_currency),
            },
            "presentment_money": {
                "amount": rest_money(pair["presentment"]),
                "currency_code": doc.get("presentment_currency", self.shop_currency),
            },
        }

    def address(self, a: dict[str, Any], customer_id: int) -> dict[str, Any]:
        return {
            "id": a["id"],
            "customer_id": customer_id,
            "first_name": a.get("first_name"),
            "last_name": a.get("last_name"),
            "company": a.get("company"),
            "address1": a.get("address1"),
            "address2": a.get("address2"),
            "city": a.get("city"),
            "province": a.get("province"),
            "country": a.get("country"),
            "zip": a.get("zip"),
            "phone": a.get("phone"),
            "name": " ".join(p for p in (a.get("first_name"), a.get("last_name")) if p),
            "province_code": a.get("province_code"),
            "country_code": a.get("country_code"),
            "country_name": a.get("country"),
            "default": bool(a.get("default", False)),
        }

    def customer(self, doc: dict[str, Any]) -> dict[str, Any]:
        cid = int(doc["id"])
        default = doc.get("default_address")
        return {
            "id": cid,
            "email": doc.get("email"),
            "created_at": shop_time(doc["created_at"]),
            "updated_at": shop_time(doc["updated_at"]),
            "first_name": doc.get("first_name"),
            "last_name": doc.get("last_name"),
            "orders_count": int(doc.get("orders_count", 0)),
            "state": str(doc.get("state", "ENABLED")).lower(),
            "total_spent": rest_money(doc.get("total_spent")),
            "last_order_id": doc.get("last_order_id"),
            "note": doc.get("note"),
            "verified_email": bool(doc.get("verified_email", True)),
            "multipass_identifier": None,
            "tax_exempt": bool(doc.get("tax_exempt", False)),
            "tags": ", ".join(doc.get("tags", [])),
            "last_order_name": doc.get("last_order_name"),
            "currency": self.shop_currency,
            "phone": doc.get("phone"),
            "addresses": [self.address(a, cid) for a in doc.get("addresses", [])],
            "email_marketing_consent": {
                "state": "subscribed" if doc.get("accepts_marketing") else "not_subscribed",
                "opt_in_level": "single_opt_in",
                "consent_updated_at": None,
            },
            "admin_graphql_api_id": f"gid://shopify/Customer/{cid}",
            "default_address": self.address(default, cid) if default else None,
        }

    def variant(self, v: dict[str, Any], product: dict[str, Any]) -> dict[str, Any]:
        return {
            "id": int(v["id"]),
            "product_id": int(product["id"]),
            "title": v["title"],
            "price": rest_money(v["price"]),
            "sku": v.get("sku"),
            "position": v.get("position", 1),
            "inventory_policy": "deny",
            "compare_at_price": rest_money(v["compare_at_price"])
            if v.get("compare_at_price")
            else None,
            "fulfillment_service": "manual",
            "inventory_management": None,
            "option1": v.get("option1"),
            "option2": v.get("option2"),
            "option3": v.get("option3"),
            "created_at": shop_time(v.get("created_at") or product["created_at"]),
            "updated_at": shop_time(v.get("updated_at") or product["updated_at"]),
            "taxable": bool(v.get("taxable", True)),
            "barcode": v.get("barcode"),
            "grams": 0,
            "weight": 0.0,
            "weight_unit": "kg",
            "inventory_item_id": v.get("inventory_item_id"),
            "inventory_quantity": v.get("inventory_quantity", 0),
            "requires_shipping": False,
            "admin_graphql_api_id": f"gid://shopify/ProductVariant/{v['id']}",
        }

    def product(self, doc: dict[str, Any]) -> dict[str, Any]:
        pid = int(doc["id"])
        return {
            "id": pid,
            "title": doc["title"],
            "body_html": doc.get("body_html"),
            "vendor": doc.get("vendor"),
            "product_type": doc.get("product_type"),
            "created_at": shop_time(doc["created_at"]),
            "handle": doc["handle"],
            "updated_at": shop_time(doc["updated_at"]),
            "published_at": shop_time(doc.get("published_at")),
            "template_suffix": None,
            "published_scope": "web",
            "tags": ", ".join(doc.get("tags", [])),
            "status": str(doc.get("status", "ACTIVE")).lower(),
            "admin_graphql_api_id": f"gid://shopify/Product/{pid}",
            # REST stops at 100 variants per product; GraphQL has them all.
            "variants": [self.variant(v, doc) for v in doc["variants"][:MAX_REST_VARIANTS]],
            "options": [
                {
                    "id": o["id"],
                    "product_id": pid,
                    "name": o["name"],
                    "position": o["position"],
                    "values": o["values"],
                }
                for o in doc.get("options", [])
            ],
            "images": [],
            "image": None,
        }

    def line_item(self, li: dict[str, Any], doc: dict[str, Any]) -> dict[str, Any]:
        return {
            "id": int(li["id"]),
            "admin_graphql_api_id": f"gid://shopify/LineItem/{li['id']}",
            "product_id": li.get("product_id"),
            "variant_id": li.get("variant_id"),
            "sku": li.get("sku"),
            "title": li["title"],
            "variant_title": li.get("variant_title"),
            "name": li.get("name") or li["title"],
            "vendor": li.get("vendor"),
            "quantity": int(li["quantity"]),
            "current_quantity": int(li["quantity"]),
            "fulfillable_quantity": 0,
            "price": rest_money(li["price"]["shop"]),
            "price_set": self.money_set(li["price"], doc),
            "total_discount": rest_money((li.get("total_discount") or {}).get("shop")),
            "total_discount_set": self.money_set(li.get("total_discount"), doc),
            "taxable": bool(li.get("taxable", True)),
            "requires_shipping": bool(li.get("requires_shipping", False)),
            "gift_card": False,
            "grams": 0,
            "product_exists": li.get("product_id") is not None,
            "fulfillment_status": None,
            "properties": [],
            "tax_lines": [self.tax_line(t, doc) for t in li.get("tax_lines", [])],
            "discount_allocations": [],
            "duties": [],
        }

    def tax_line(self, t: dict[str, Any], doc: dict[str, Any]) -> dict[str, Any]:
        return {
            "title": t["title"],
            "rate": float(t.get("rate") or 0),
            "price": rest_money(t["price"]["shop"]),
            "price_set": self.money_set(t["price"], doc),
        }

    def transaction(self, t: dict[str, Any], doc: dict[str, Any]) -> dict[str, Any]:
        return {
            "id": int(t["id"]),
            "admin_graphql_api_id": f"gid://shopify/OrderTransaction/{t['id']}",
            "order_id": int(doc["id"]),
            "kind": t["kind"].lower(),
            "status": t.get("status", "success").lower(),
            "amount": rest_money(t["amount"]["presentment"]),
            "currency": doc.get("presentment_currency", self.shop_currency),
            "gateway": t.get("gateway"),
            "parent_id": t.get("parent_id"),
            "created_at": shop_time(t["created_at"]),
            "processed_at": shop_time(t.get("processed_at") or t["created_at"]),
            "test": bool(t.get("test", doc.get("test", False))),
            "error_code": t.get("error_code"),
            "source_name": "web",
        }

    def refund(self, r: dict[str, Any], doc: dict[str, Any]) -> dict[str, Any]:
        items = {int(li["id"]): li for li in doc.get("line_items", [])}
        txs = {int(t["id"]): t for t in doc.get("transactions", [])}
        return {
            "id": int(r["id"]),
            "admin_graphql_api_id": f"gid://shopify/Refund/{r['id']}",
            "order_id": int(doc["id"]),
            "created_at": shop_time(r["created_at"]),
            "processed_at": shop_time(r["created_at"]),
            "note": r.get("note"),
            "restock": False,
            "refund_line_items": [
                {
                    "id": int(x["id"]),
                    "line_item_id": int(x["line_item_id"]),
                    "quantity": int(x["quantity"]),
                    "restock_type": "no_restock",
                    "subtotal": rest_money(x["subtotal"]["shop"]),
                    "subtotal_set": self.money_set(x["subtotal"], doc),
                    "total_tax": "0.00",
                    "line_item": self.line_item(items[int(x["line_item_id"])], doc),
                }
                for x in r.get("refund_line_items", [])
                if int(x["line_item_id"]) in items
            ],
            "transactions": [
                self.transaction(txs[int(i)], doc)
                for i in r.get("transaction_ids", [])
                if int(i) in txs
            ],
            "order_adjustments": [],
        }

    def order(self, doc: dict[str, Any], customer: dict[str, Any] | None) -> dict[str, Any]:
        oid = int(doc["id"])

        def amount(key: str) -> str:
            return rest_money((doc.get(key) or {}).get("shop"))

        return {
            "id": oid,
            "admin_graphql_api_id": f"gid://shopify/Order/{oid}",
            "name": doc["name"],
            "order_number": doc.get("order_number"),
            "number": int(doc.get("order_number", 1000)) - 1000,
            "email": doc.get("email"),
            "contact_email": doc.get("email"),
            "created_at": shop_time(doc["created_at"]),
            "updated_at": shop_time(doc["updated_at"]),
            "processed_at": shop_time(doc.get("processed_at") or doc["created_at"]),
            "cancelled_at": shop_time(doc.get("cancelled_at")),
            "cancel_reason": doc.get("cancel_reason"),
            "closed_at": shop_time(doc.get("closed_at")),
            "test": bool(doc.get("test", False)),
            "confirmed": True,
            "currency": doc.get("currency", self.shop_currency),
            "presentment_currency": doc.get("presentment_currency", self.shop_currency),
            "financial_status": doc.get("financial_status"),
            "fulfillment_status": doc.get("fulfillment_status"),
            "tags": ", ".join(doc.get("tags", [])),
            "note": doc.get("note"),
            "taxes_included": False,
            "subtotal_price": amount("subtotal"),
            "subtotal_price_set": self.money_set(doc.get("subtotal"), doc),
            "total_price": amount("total"),
            "total_price_set": self.money_set(doc.get("total"), doc),
            "total_discounts": amount("total_discounts"),
            "total_discounts_set": self.money_set(doc.get("total_discounts"), doc),
            "total_tax": amount("total_tax"),
            "total_tax_set": self.money_set(doc.get("total_tax"), doc),
            "total_shipping_price_set": self.money_set(doc.get("total_shipping"), doc),
            "current_total_price": rest_money((doc.get("current_total") or doc["total"])["shop"]),
            "current_total_price_set": self.money_set(
                doc.get("current_total") or doc["total"], doc
            ),
            "discount_codes": [
                {
                    "code": d["code"],
                    "amount": rest_money(d["amount"]["shop"]),
                    "type": d.get("type", "fixed_amount"),
                }
                for d in doc.get("discount_codes", [])
            ],
            "line_items": [self.line_item(li, doc) for li in doc.get("line_items", [])],
            "shipping_lines": [
                {
                    "id": int(s["id"]),
                    "title": s["title"],
                    "code": s.get("code"),
                    "price": rest_money(s["price"]["shop"]),
                    "price_set": self.money_set(s["price"], doc),
                    "tax_lines": [],
                }
                for s in doc.get("shipping_lines", [])
            ],
            "tax_lines": [self.tax_line(t, doc) for t in doc.get("tax_lines", [])],
            "refunds": [self.refund(r, doc) for r in doc.get("refunds", [])],
            "customer": self.customer(customer) if customer else None,
        }


def _encode_page_info(payload: dict[str, Any]) -> str:
    return (
        base64.urlsafe_b64encode(json.dumps(payload, separators=(",", ":")).encode())
        .decode()
        .rstrip("=")
    )


def _decode_page_info(text: str) -> dict[str, Any] | None:
    try:
        payload = json.loads(base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)))
    except (ValueError, json.JSONDecodeError):
        return None
    return payload if isinstance(payload, dict) else None


def _filters(resource: Resource, params: dict[str, str]) -> Filter | str:
    """The store filter for REST list params, or the error message for a bad value."""
    conds: list[Condition] = []
    for name, column, op in (
        ("created_at_min", "created_at", ">="),
        ("created_at_max", "created_at", "<="),
        ("updated_at_min", "updated_at", ">="),
        ("updated_at_max", "updated_at", "<="),
        ("processed_at_min", "processed_at", ">="),
        ("processed_at_max", "processed_at", "<="),
    ):
        if name in params:
            try:
                conds.append(Condition(column, op, to_utc_text(params[name])))  # type: ignore[arg-type]
            except ValueError:
                return f"{name} is invalid"
    if "since_id" in params:
        try:
            conds.append(Condition("id", ">", int(params["since_id"])))
        except ValueError:
            return "since_id is invalid"
    status = params.get("status")
    if resource == "orders":
        status = status or "open"
        if status == "open":
            conds.append(Condition("json_extract(doc, '$.cancelled_at')", "IS", None))
            conds.append(Condition("json_extract(doc, '$.closed_at')", "IS", None))
        elif status == "closed":
            conds.append(Condition("json_extract(doc, '$.closed_at')", "IS NOT", None))
        elif status == "cancelled":
            conds.append(Condition("json_extract(doc, '$.cancelled_at')", "IS NOT", None))
        elif status != "any":
            return f"status {status!r} is invalid"
    elif resource == "products" and status:
        conds.append(Condition("json_extract(doc, '$.status')", "=", status.upper()))
    return Filter((tuple(conds),))


def _order(params: dict[str, str]) -> tuple[SortColumn, bool]:
    text = params.get("order", "id asc").strip().lower()
    parts = text.split()
    column = parts[0] if parts else "id"
    if "since_id" in params or column not in ("id", "created_at", "updated_at", "processed_at"):
        column = "id"
    return column, len(parts) > 1 and parts[1] == "desc"  # type: ignore[return-value]


class RestApi:
    """Answers ``GET /admin/api/{version}/{resource}.json`` and friends."""

    def __init__(self, store: StoreDB, renderer: RestRenderer | None = None) -> None:
        self.store = store
        self.renderer = renderer or RestRenderer()

    def render(self, resource: Resource, doc: dict[str, Any]) -> dict[str, Any]:
        if resource == "orders":
            cid = doc.get("customer_id")
            customer = self.store.get("customers", int(cid)) if cid is not None else None
            return self.renderer.order(doc, customer)
        if resource == "customers":
            return self.renderer.customer(doc)
        return self.renderer.product(doc)

    def handle(self, path: str, params: dict[str, str], base: str) -> RestOutcome:
        """``path`` is what follows ``/admin/api/{version}/``, e.g. ``orders.json``."""
        if not path.endswith(".json"):
            return RestOutcome(404, {"errors": "Not Found"})
        parts = path[: -len(".json")].split("/")
        if parts == ["shop"]:
            return RestOutcome(
                200,
                {
                    "shop": {
                        "id": 1,
                        "name": "Tribot Store",
                        "currency": "USD",
                        "iana_timezone": "America/New_York",
                        "myshopify_domain": "tribot-store.myshopify.com",
                    }
                },
            )
        if parts == ["events"]:
            return self.events(params)
        if not parts or parts[0] not in _GID:
            return RestOutcome(404, {"errors": "Not Found"})
        resource: Resource = parts[0]  # type: ignore[assignment]
        if len(parts) == 1:
            return self.list(resource, params, base)
        if len(parts) == 2 and parts[1] == "count":
            where = _filters(resource, params)
            if isinstance(where, str):
                return RestOutcome(400, {"errors": where})
            return RestOutcome(200, {"count": self.store.count(resource, where)})
        try:
            record_id = int(parts[1])
        except ValueError:
            return RestOutcome(404, {"errors": "Not Found"})
        doc = self.store.get(resource, record_id)
        if doc is None:
            return RestOutcome(404, {"errors": "Not Found"})
        if len(parts) == 2:
            return RestOutcome(200, {_ROOT_SINGULAR[resource]: self.render(resource, doc)})
        if resource == "orders" and parts[2:] == ["transactions"]:
            return RestOutcome(
                200,
                {
                    "transactions": [
                        self.renderer.transaction(t, doc) for t in doc.get("transactions", [])
                    ]
                },
            )
        if resource == "orders" and parts[2:] == ["refunds"]:
            return RestOutcome(
                200, {"refunds": [self.renderer.refund(r, doc) for r in doc.get("refunds", [])]}
            )
        return RestOutcome(404, {"errors": "Not Found"})

    def list(self, resource: Resource, params: dict[str, str], base: str) -> RestOutcome:
        try:
            limit = min(int(params.get("limit", DEFAULT_LIMIT)), MAX_LIMIT)
        except ValueError:
            return RestOutcome(400, {"errors": {"limit": "Invalid value."}})
        if limit < 1:
            return RestOutcome(400, {"errors": {"limit": "Invalid value."}})
        direction = "next"
        after: PageKey | None = None
        if "page_info" in params:
            extra = sorted(set(params) - _PAGE_INFO_COMPANIONS)
            if extra:
                return RestOutcome(
                    400, {"errors": f"{extra[0]} cannot be passed when page_info is present"}
                )
            info = _decode_page_info(params["page_info"])
            if info is None or "filters" not in info:
                return RestOutcome(400, {"errors": {"page_info": "Invalid value."}})
            filters: dict[str, str] = dict(info["filters"])
            direction = str(info.get("direction", "next"))
            after = PageKey(info["last_value"], int(info["last_id"]))
        else:
            filters = {k: v for k, v in params.items() if k not in ("limit", "fields")}
        where = _filters(resource, filters)
        if isinstance(where, str):
            return RestOutcome(400, {"errors": where})
        sort, desc = _order(filters)
        backwards = direction == "prev"
        docs = self.store.page(
            resource,
            where=where,
            sort=sort,
            reverse=desc != backwards,
            after=after,
            limit=limit + 1,
        )
        more = len(docs) > limit
        docs = docs[:limit]
        if backwards:
            docs.reverse()
        has_next = more if not backwards else True
        has_prev = after is not None if not backwards else more
        body = [self.render(resource, d) for d in docs]
        if "fields" in params:
            wanted = {f.strip() for f in params["fields"].split(",")}
            body = [{k: v for k, v in item.items() if k in wanted} for item in body]
        links: list[str] = []
        url = f"{base}/{resource}.json"

        def link(doc: dict[str, Any], to: str, rel: str) -> str:
            token = _encode_page_info(
                {
                    "filters": filters,
                    "direction": to,
                    "last_id": int(doc["id"]),
                    "last_value": sort_value(doc, sort),
                }
            )
            query: dict[str, str] = {"limit": str(limit), "page_info": token}
            if "fields" in params:
                query["fields"] = params["fields"]
            return f'<{url}?{urlencode(query)}>; rel="{rel}"'

        if docs and has_prev:
            links.append(link(docs[0], "prev", "previous"))
        if docs and has_next:
            links.append(link(docs[-1], "next", "next"))
        headers = {"link": ", ".join(links)} if links else {}
        return RestOutcome(200, {resource: body}, headers)

    def events(self, params: dict[str, str]) -> RestOutcome:
        subjects = [s.strip() for s in params.get("filter", "Order,Customer,Product").split(",")]
        resources = [_EVENT_SUBJECTS[s] for s in subjects if s in _EVENT_SUBJECTS]
        verb = params.get("verb", "destroy")
        limit = min(int(params.get("limit", DEFAULT_LIMIT)), MAX_LIMIT)
        since = int(params.get("since_id", 0))
        events = (
            self.store.deletion_events(resources, after_seq=since, limit=limit)
            if verb == "destroy"
            else []
        )
        kinds = {v: k for k, v in _EVENT_SUBJECTS.items()}
        return RestOutcome(
            200,
            {
                "events": [
                    {
                        "id": e.seq,
                        "subject_id": e.subject_id,
                        "created_at": shop_time(e.occurred_at),
                        "subject_type": kinds[e.resource],
                        "verb": "destroy",
                        "arguments": [],
                        "body": None,
                        "message": f"{kinds[e.resource]} was deleted.",
                        "author": "Shopify",
                        "description": f"{kinds[e.resource]} was deleted.",
                        "path": f"/admin/{e.resource}/{e.subject_id}",
                    }
                    for e in events
                ]
            },
        )
