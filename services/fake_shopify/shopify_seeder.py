"""Builds the fake store FROM the generated legacy MySQL world, so the three sources agree.

What comes from where:

* products: one per premium, non-retired script (``Monthly``/``Lifetime`` variants, SKUs
  ``script-<id>-monthly``/``script-<id>-lifetime``, USD prices from ``scripts.monthly_price``
  and ``shopify_linkage.lifetime_price_usd``), plus ``instances-<n>`` packs for the slot counts
  ``instance_packs`` holds;
* customers: most forum members with an email (one per email once trimmed and lower-cased, as
  Shopify keeps emails unique), written with case and whitespace variants; plus store-only
  customers no member matches;
* orders: every ``licenses.shopify_order_id`` with its ``shopify_line_id`` lines, priced at
  ``price_paid`` in the order's presentment currency (shop money in USD), refunded licenses as
  (partial) refunds, members without a customer as guest checkouts; plus store-only orders
  (``scale`` x 1,000) that carry the remaining quirks: cancelled, ``test: true``, discounts,
  partial refunds, unknown-script SKUs, instance packs.

Deterministic for a seed: the same legacy world and ``(scale, seed)`` give the same store.
"""

from __future__ import annotations

import random
import time
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from runeshift.connections import mysql_connect
from runeshift.sample.shopify_linkage import (
    ABOVE_2_53_SINCE,
    FX_FROM_USD,
    Currency,
    currency_for_order,
    lifetime_price_usd,
    price_in_currency,
)
from services.fake_shopify.store_db import StoreDB

NY = ZoneInfo("America/New_York")
CENT = Decimal("0.01")
STORE_OPENED = datetime(2016, 1, 1, tzinfo=UTC)
STORE_NOW = datetime(2026, 6, 1, tzinfo=UTC)
EXTRA_ORDER_BASE = 5_900_000_000_000
EXTRA_BIG_ORDER_BASE = 2**53 + 700_000_000
CUSTOMER_BASE = 6_100_000_000_000
BIG_CUSTOMER_BASE = 2**53 + 100_000
PRODUCT_BASE = 7_200_000_000_000
VARIANT_BASE = 41_000_000_000_000
EXTRA_LINE_BASE = 19_000_000_000_000
TX_BASE = 8_300_000_000_000
REFUND_BASE = 9_100_000_000_000
ADDRESS_BASE = 8_800_000_000_000
DEFAULT_SLOTS = (1, 5, 10, 25)
DISCOUNTS = (("SPRING10", "percentage", "10.0"), ("FIVEOFF", "fixed_amount", "5.00"))


@dataclass(frozen=True)
class LegacyMember:
    member_id: int
    name: str
    email: str


@dataclass(frozen=True)
class LegacyScript:
    script_id: int
    name: str
    slug: str
    status: str
    is_premium: int
    monthly_price: Decimal | None
    created_at: datetime | None


@dataclass(frozen=True)
class LegacyLicense:
    license_id: int
    member_id: int
    script_id: int
    kind: str
    created_at: datetime | None
    order_id: int
    line_id: int
    price_paid: Decimal
    refunded: int
    updated_at: datetime | None


@dataclass
class LegacyWorld:
    """The rows of the legacy databases the store is built from."""

    members: list[LegacyMember]
    scripts: list[LegacyScript]
    licenses: list[LegacyLicense]
    instance_slots: list[int] = field(default_factory=list)


@dataclass
class StoreContents:
    customers: list[dict[str, Any]]
    products: list[dict[str, Any]]
    orders: list[dict[str, Any]]


@dataclass(frozen=True)
class StoreSummary:
    """What ``seed_store`` wrote."""

    db_path: str
    customers: int
    products: int
    orders: int
    line_items: int
    license_orders: int
    store_only_orders: int
    guest_orders: int
    ids_above_2_53: int
    seconds: float

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _text(value: Any) -> str:
    """Latin1 columns hold UTF-8 bytes (``JosÃ©``); repair them where they decode."""
    text = value.decode("latin1") if isinstance(value, bytes) else str(value or "")
    try:
        return text.encode("latin1").decode("utf-8")
    except (UnicodeEncodeError, UnicodeDecodeError):
        return text


def _wall(value: Any) -> datetime | None:
    """A DATETIME read back (New York wall time); zero dates arrive as strings -> None."""
    return value if isinstance(value, datetime) else None


def read_legacy_world(
    url: str, *, forums_db: str = "tribot_forums", repo_db: str = "tribot_repo"
) -> LegacyWorld:
    """Read members, scripts, store licenses and instance-pack sizes from the legacy server."""
    conn = mysql_connect(url, database="")
    try:
        with conn.cursor() as cur:
            cur.execute(
                f"SELECT member_id, name, email FROM `{forums_db}`.core_members ORDER BY member_id"
            )
            members = [LegacyMember(int(r[0]), _text(r[1]), _text(r[2])) for r in cur.fetchall()]
            cur.execute(
                "SELECT id, name, slug, status, is_premium, monthly_price, created_at "
                f"FROM `{repo_db}`.scripts ORDER BY id"
            )
            scripts = [
                LegacyScript(
                    int(r[0]),
                    _text(r[1]),
                    _text(r[2]),
                    str(r[3] or ""),
                    int(r[4]),
                    None if r[5] is None else Decimal(str(r[5])),
                    _wall(r[6]),
                )
                for r in cur.fetchall()
            ]
            cur.execute(
                "SELECT id, member_id, script_id, kind, created_at, shopify_order_id, "
                "shopify_line_id, "
                f"price_paid, refunded, updated_at FROM `{repo_db}`.licenses "
                "WHERE shopify_order_id IS NOT NULL ORDER BY id"
            )
            licenses = [
                LegacyLicense(
                    int(r[0]),
                    int(r[1]),
                    int(r[2]),
                    str(r[3] or ""),
                    _wall(r[4]),
                    int(r[5]),
                    int(r[6] or 0),
                    Decimal(str(r[7])),
                    int(r[8]),
                    r[9].replace(tzinfo=UTC) if isinstance(r[9], datetime) else None,
                )
                for r in cur.fetchall()
            ]
            cur.execute(
                f"SELECT DISTINCT slots FROM `{repo_db}`.instance_packs "
                "WHERE slots > 0 ORDER BY slots"
            )
            slots = [int(r[0]) for r in cur.fetchall()]
    finally:
        conn.close()
    return LegacyWorld(members, scripts, licenses, slots)


def _utc_text(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _from_wall(wall: datetime | None, fallback: datetime) -> datetime:
    """New York wall time -> aware UTC (a spring-forward gap hour shifts, as PHP's did)."""
    if wall is None:
        return fallback
    return wall.replace(tzinfo=NY).astimezone(UTC)


def _money(value: Decimal) -> str:
    return str(value.quantize(CENT, rounding=ROUND_HALF_UP))


def _pair(shop: Decimal, presentment: Decimal) -> dict[str, str]:
    return {"shop": _money(shop), "presentment": _money(presentment)}


class StoreBuilder:
    """Turns a ``LegacyWorld`` into store documents; pure apart from its seeded RNG."""

    def __init__(self, world: LegacyWorld, *, scale: float, seed: int) -> None:
        self.world = world
        self.scale = scale
        self.seed = seed
        self.rng = random.Random(f"shopify-store:{seed}")
        self.scripts = {s.script_id: s for s in world.scripts}
        self.products_by_script: dict[int, dict[str, Any]] = {}
        self.instance_products: list[dict[str, Any]] = []
        self.customers_by_email: dict[str, dict[str, Any]] = {}
        self._line_seq = EXTRA_LINE_BASE
        self._tx_seq = TX_BASE
        self._refund_seq = REFUND_BASE

    def build(self) -> StoreContents:
        products = self._products()
        customers = self._customers()
        license_orders = self._license_orders()
        extra = self._extra_orders(customers, {int(o["id"]) for o in license_orders})
        orders = license_orders + extra
        orders.sort(key=lambda o: (o["created_at"], o["id"]))
        for number, order in enumerate(orders, start=1001):
            order["name"] = f"#{number}"
            order["order_number"] = number
        self._customer_totals(customers, orders)
        return StoreContents(customers, products, orders)

    def _products(self) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        for s in self.world.scripts:
            if not s.is_premium or s.status == "retired":
                continue
            monthly = s.monthly_price if s.monthly_price is not None else Decimal("0.00")
            created = _from_wall(s.created_at, STORE_OPENED)
            created = max(created, STORE_OPENED)
            pid = PRODUCT_BASE + s.script_id * 11
            stamp = _utc_text(created)
            variants = [
                {
                    "id": VARIANT_BASE + s.script_id * 2 + i,
                    "product_id": pid,
                    "title": title,
                    "option1": title,
                    "sku": f"script-{s.script_id}-{title.lower()}",
                    "price": _money(price),
                    "position": i + 1,
                    "inventory_quantity": 0,
                    "taxable": True,
                    "created_at": stamp,
                    "updated_at": stamp,
                }
                for i, (title, price) in enumerate(
                    (("Monthly", monthly), ("Lifetime", lifetime_price_usd(monthly)))
                )
            ]
            doc = {
                "id": pid,
                "title": s.name or f"Script {s.script_id}",
                "handle": f"{(s.slug or 'script').strip().lower()}-{s.script_id}",
                "body_html": f"<p>{s.name}</p>",
                "vendor": "Tribot",
                "product_type": "Script",
                "status": {"approved": "ACTIVE", "pending": "DRAFT"}.get(s.status, "ARCHIVED"),
                "tags": ["script"],
                "created_at": stamp,
                "updated_at": stamp,
                "published_at": stamp if s.status == "approved" else None,
                "options": [
                    {
                        "id": pid + 1,
                        "name": "Plan",
                        "position": 1,
                        "values": ["Monthly", "Lifetime"],
                    }
                ],
                "variants": variants,
            }
            self.products_by_script[s.script_id] = doc
            out.append(doc)
        stamp = _utc_text(STORE_OPENED)
        for n in sorted(set(self.world.instance_slots or DEFAULT_SLOTS))[:6]:
            pid = PRODUCT_BASE - 1000 + n
            doc = {
                "id": pid,
                "title": f"{n} Bot Instance{'s' if n != 1 else ''} (monthly)",
                "handle": f"instances-{n}",
                "body_html": f"<p>Run {n} clients at once.</p>",
                "vendor": "Tribot",
                "product_type": "Instances",
                "status": "ACTIVE",
                "tags": ["instances"],
                "created_at": stamp,
                "updated_at": stamp,
                "published_at": stamp,
                "options": [
                    {"id": pid + 500, "name": "Title", "position": 1, "values": ["Default Title"]}
                ],
                "variants": [
                    {
                        "id": VARIANT_BASE - 10_000 + n,
                        "product_id": pid,
                        "title": "Default Title",
                        "option1": "Default Title",
                        "sku": f"instances-{n}",
                        "price": _money(Decimal(n) * Decimal("2.00")),
                        "position": 1,
                        "inventory_quantity": 0,
                        "taxable": True,
                        "created_at": stamp,
                        "updated_at": stamp,
                    }
                ],
            }
            self.instance_products.append(doc)
            out.append(doc)
        return out

    def _customers(self) -> list[dict[str, Any]]:
        rng = random.Random(f"customers:{self.seed}")
        buyers = {lic.member_id for lic in self.world.licenses}
        out: list[dict[str, Any]] = []
        big_from = int(len(self.world.members) * 0.9)
        for index, m in enumerate(self.world.members):
            key = m.email.strip().lower()
            if not key or key in self.customers_by_email:
                continue
            if rng.random() > (0.85 if m.member_id in buyers else 0.5):
                continue  # a member with no customer
            roll = rng.random()
            email = m.email.strip()
            if roll < 0.15:
                email = email.upper()
            elif roll < 0.3:
                email = email[:1].upper() + email[1:]
            elif roll < 0.38:
                email = f" {email} "
            first, _, last = m.name.partition(" ")
            base = BIG_CUSTOMER_BASE if index >= big_from else CUSTOMER_BASE
            doc = self._customer_doc(
                base + m.member_id * 13, email, first or m.name, last or None, rng
            )
            self.customers_by_email[key] = doc
            out.append(doc)
        for n in range(max(5, int(len(self.world.members) * 0.1))):
            email = f"storeonly{n}@buyers.example"
            doc = self._customer_doc(
                CUSTOMER_BASE - 1_000_000 + n * 7, email, f"Buyer{n}", "Store", rng
            )
            self.customers_by_email[email] = doc
            out.append(doc)
        return out

    def _customer_doc(
        self, cid: int, email: str, first: str, last: str | None, rng: random.Random
    ) -> dict[str, Any]:
        created = STORE_OPENED + timedelta(
            seconds=rng.randint(0, int((STORE_NOW - STORE_OPENED).total_seconds()))
        )
        address = {
            "id": ADDRESS_BASE + cid % 10**9,
            "first_name": first,
            "last_name": last,
            "address1": f"{rng.randint(1, 999)} Main St",
            "city": rng.choice(("Springfield", "Berlin", "London", "Toronto")),
            "country": "United States",
            "country_code": "US",
            "province": "New York",
            "province_code": "NY",
            "zip": f"{rng.randint(10000, 99999)}",
            "default": True,
        }
        return {
            "id": cid,
            "email": email,
            "first_name": first,
            "last_name": last,
            "state": "ENABLED",
            "verified_email": True,
            "accepts_marketing": rng.random() < 0.4,
            "tags": [],
            "note": None,
            "phone": None,
            "created_at": _utc_text(created),
            "updated_at": _utc_text(created),
            "default_address": address,
            "addresses": [address],
            "orders_count": 0,
            "total_spent": "0.00",
        }

    def _currency(
        self, order_id: int, lines: list[tuple[LegacyLicense, Decimal | None]]
    ) -> Currency:
        """The seeded currency, unless the legacy prices say otherwise (another seed made them)."""
        seeded = currency_for_order(order_id, self.seed)
        candidates: list[Currency] = [seeded, "USD", "EUR", "GBP"]
        for cur in candidates:
            if all(
                usd is None or price_in_currency(usd, cur) == lic.price_paid for lic, usd in lines
            ):
                return cur
        return seeded

    def _list_usd(self, lic: LegacyLicense) -> Decimal | None:
        script = self.scripts.get(lic.script_id)
        if script is None or script.monthly_price is None:
            return None
        return (
            lifetime_price_usd(script.monthly_price)
            if lic.kind == "lifetime"
            else script.monthly_price
        )

    def _license_orders(self) -> list[dict[str, Any]]:
        by_order: dict[int, list[LegacyLicense]] = defaultdict(list)
        for lic in self.world.licenses:
            by_order[lic.order_id].append(lic)
        members = {m.member_id: m for m in self.world.members}
        out: list[dict[str, Any]] = []
        for order_id in sorted(by_order):
            lics = sorted(by_order[order_id], key=lambda x: x.line_id)
            priced = [(lic, self._list_usd(lic)) for lic in lics]
            currency = self._currency(order_id, priced)
            created = min(_from_wall(lic.created_at, STORE_OPENED) for lic in lics)
            lines = []
            for lic, usd in priced:
                if currency == "USD":
                    shop = lic.price_paid
                elif usd is not None and price_in_currency(usd, currency) == lic.price_paid:
                    shop = usd
                else:
                    shop = (lic.price_paid / FX_FROM_USD[currency]).quantize(
                        CENT, rounding=ROUND_HALF_UP
                    )
                variant = "Lifetime" if lic.kind == "lifetime" else "Monthly"
                lines.append(self._line(lic.line_id, lic.script_id, variant, shop, lic.price_paid))
            member = members.get(lics[0].member_id)
            email = member.email.strip() if member else ""
            customer = self.customers_by_email.get(email.lower())
            refunded = [lic.line_id for lic in lics if lic.refunded]
            refund_at = max(
                (lic.updated_at for lic in lics if lic.refunded and lic.updated_at), default=None
            ) or created + timedelta(days=3)
            out.append(
                self._order(
                    order_id,
                    created,
                    currency,
                    lines,
                    customer,
                    email or None,
                    refunded,
                    max(refund_at, created + timedelta(minutes=5)),
                )
            )
        return out

    def _line(
        self, line_id: int, script_id: int, variant: str, shop: Decimal, presentment: Decimal
    ) -> dict[str, Any]:
        product = self.products_by_script.get(script_id)
        sku = f"script-{script_id}-{variant.lower()}"
        match = next((v for v in product["variants"] if v["sku"] == sku), None) if product else None
        script = self.scripts.get(script_id)
        title = product["title"] if product else (script.name if script else f"Script #{script_id}")
        return {
            "id": line_id,
            "product_id": product["id"] if product else None,
            "variant_id": match["id"] if match else None,
            "sku": sku,
            "title": title,
            "variant_title": variant,
            "name": f"{title} - {variant}",
            "vendor": "Tribot",
            "quantity": 1,
            "price": _pair(shop, presentment),
            "total_discount": _pair(Decimal(0), Decimal(0)),
            "taxable": True,
            "requires_shipping": False,
            "tax_lines": [],
        }

    def _next(self, attr: str) -> int:
        value: int = getattr(self, attr) + self.rng.randint(1, 97)
        setattr(self, attr, value)
        return value

    def _order(
        self,
        order_id: int,
        created: datetime,
        currency: Currency,
        lines: list[dict[str, Any]],
        customer: dict[str, Any] | None,
        email: str | None,
        refunded_line_ids: list[int],
        refund_at: datetime,
        *,
        discount: tuple[str, str, str] | None = None,
        cancelled: bool = False,
        test: bool = False,
    ) -> dict[str, Any]:
        sub_shop = sum((Decimal(li["price"]["shop"]) * li["quantity"] for li in lines), Decimal(0))
        sub_pres = sum(
            (Decimal(li["price"]["presentment"]) * li["quantity"] for li in lines), Decimal(0)
        )
        codes: list[dict[str, Any]] = []
        disc_shop = disc_pres = Decimal(0)
        if discount is not None:
            code, kind, value = discount
            if kind == "percentage":
                disc_shop, disc_pres = (
                    sub_shop * Decimal(value) / 100,
                    sub_pres * Decimal(value) / 100,
                )
            else:
                disc_pres = min(Decimal(value), sub_pres)
                disc_shop = min((disc_pres / FX_FROM_USD[currency]), sub_shop)
            disc_shop, disc_pres = disc_shop.quantize(CENT), disc_pres.quantize(CENT)
            codes.append(
                {"code": code, "type": kind, "value": value, "amount": _pair(disc_shop, disc_pres)}
            )
        total_shop, total_pres = sub_shop - disc_shop, sub_pres - disc_pres
        stamp = _utc_text(created)
        sale_id = self._next("_tx_seq")
        transactions = [
            {
                "id": sale_id,
                "kind": "sale",
                "status": "success",
                "gateway": "shopify_payments",
                "amount": _pair(total_shop, total_pres),
                "created_at": stamp,
                "test": test,
            }
        ]
        refunds: list[dict[str, Any]] = []
        ref_shop = ref_pres = Decimal(0)
        updated = created + timedelta(seconds=self.rng.randint(0, 600))
        if refunded_line_ids:
            items = {li["id"]: li for li in lines}
            rlis = []
            for lid in refunded_line_ids:
                li = items[lid]
                ref_shop += Decimal(li["price"]["shop"])
                ref_pres += Decimal(li["price"]["presentment"])
                rlis.append(
                    {
                        "id": self._next("_refund_seq"),
                        "line_item_id": lid,
                        "quantity": 1,
                        "subtotal": li["price"],
                        "total_tax": _pair(Decimal(0), Decimal(0)),
                    }
                )
            ref_shop, ref_pres = min(ref_shop, total_shop), min(ref_pres, total_pres)
            tx_id = self._next("_tx_seq")
            transactions.append(
                {
                    "id": tx_id,
                    "kind": "refund",
                    "status": "success",
                    "gateway": "shopify_payments",
                    "parent_id": sale_id,
                    "amount": _pair(ref_shop, ref_pres),
                    "created_at": _utc_text(refund_at),
                    "test": test,
                }
            )
            refunds.append(
                {
                    "id": self._next("_refund_seq"),
                    "created_at": _utc_text(refund_at),
                    "note": "License refunded",
                    "refund_line_items": rlis,
                    "transaction_ids": [tx_id],
                    "total_refunded": _pair(ref_shop, ref_pres),
                }
            )
            updated = max(updated, refund_at)
        if cancelled:
            status = "voided" if not refunded_line_ids else "refunded"
        elif refunded_line_ids:
            status = "refunded" if ref_pres >= total_pres else "partially_refunded"
        else:
            status = "paid"
        cancelled_at = _utc_text(created + timedelta(hours=1)) if cancelled else None
        if cancelled:
            updated = max(updated, created + timedelta(hours=1))
        return {
            "id": order_id,
            "name": "",
            "order_number": 0,
            "email": (customer["email"].strip() if customer and customer.get("email") else email),
            "customer_id": customer["id"] if customer else None,
            "created_at": stamp,
            "processed_at": stamp,
            "updated_at": _utc_text(updated),
            "cancelled_at": cancelled_at,
            "cancel_reason": "customer" if cancelled else None,
            "closed_at": stamp if not cancelled else None,
            "test": test,
            "currency": "USD",
            "presentment_currency": currency,
            "financial_status": status,
            "fulfillment_status": "fulfilled",
            "tags": [],
            "note": None,
            "subtotal": _pair(sub_shop, sub_pres),
            "total_discounts": _pair(disc_shop, disc_pres),
            "total_shipping": _pair(Decimal(0), Decimal(0)),
            "total_tax": _pair(Decimal(0), Decimal(0)),
            "total": _pair(total_shop, total_pres),
            "total_refunded": _pair(ref_shop, ref_pres),
            "current_total": _pair(total_shop - ref_shop, total_pres - ref_pres),
            "discount_codes": codes,
            "line_items": lines,
            "shipping_lines": [],
            "tax_lines": [],
            "transactions": transactions,
            "refunds": refunds,
        }

    def _extra_orders(
        self, customers: list[dict[str, Any]], taken: set[int]
    ) -> list[dict[str, Any]]:
        rng = random.Random(f"extra-orders:{self.seed}")
        count = max(6, int(self.scale * 1000))
        # Every quirk at every scale: these orders carry one each whatever the dice say.
        cast = dict(
            zip(
                rng.sample(range(count), 6),
                ("test", "cancelled", "discount", "partial", "unknown-sku", "retired-sku"),
                strict=True,
            )
        )
        span = int((STORE_NOW - STORE_OPENED).total_seconds())
        times = sorted(STORE_OPENED + timedelta(seconds=rng.randint(0, span)) for _ in range(count))
        sellable = [p for p in self.products_by_script.values()] or self.instance_products
        retired = [
            s.script_id for s in self.world.scripts if s.status == "retired" and s.is_premium
        ]
        out: list[dict[str, Any]] = []
        small, big = EXTRA_ORDER_BASE, EXTRA_BIG_ORDER_BASE
        for i, created in enumerate(times):
            if created.timestamp() >= ABOVE_2_53_SINCE:
                big += rng.randint(1, 5000)
                order_id = big
            else:
                small += rng.randint(1, 5000)
                order_id = small
            while order_id in taken:
                order_id += 1
            taken.add(order_id)
            currency = currency_for_order(order_id, self.seed)
            lines = []
            role = cast.get(i)
            n_lines = 2 if role == "partial" else rng.choice((1, 1, 1, 2, 3))
            for n in range(n_lines):
                roll = rng.random()
                if n == 0 and role == "unknown-sku":
                    roll = 0.03
                elif n == 0 and role == "retired-sku":
                    roll = 0.01
                elif role in ("unknown-sku", "retired-sku", "partial") and roll < 0.04:
                    roll = 0.5
                if roll < 0.04 or not sellable:
                    # A SKU that names a retired or unknown script: no product behind it.
                    sid = (
                        rng.choice(retired)
                        if retired and roll < 0.02
                        else 990_000 + rng.randint(0, 999)
                    )
                    usd = Decimal(rng.choice(("4.99", "9.99")))
                    lines.append(
                        self._line(
                            self._next("_line_seq"),
                            sid,
                            "Monthly",
                            usd,
                            price_in_currency(usd, currency),
                        )
                    )
                    continue
                product = (
                    rng.choice(self.instance_products)
                    if roll < 0.12 and self.instance_products
                    else rng.choice(sellable)
                )
                variant = rng.choice(product["variants"])
                usd = Decimal(variant["price"])
                li = self._line(
                    self._next("_line_seq"),
                    -1,
                    variant["title"],
                    usd,
                    price_in_currency(usd, currency),
                )
                li.update(
                    product_id=product["id"],
                    variant_id=variant["id"],
                    sku=variant["sku"],
                    title=product["title"],
                    name=f"{product['title']} - {variant['title']}",
                )
                lines.append(li)
            roll = rng.random()
            customer = rng.choice(customers) if customers and roll < 0.8 else None
            email = None if customer else f"guest{i}@checkout.example"
            refunded = [lines[0]["id"]] if len(lines) > 1 and rng.random() < 0.25 else []
            if not refunded and rng.random() < 0.03:
                refunded = [lines[0]["id"]]
            if role == "partial":
                refunded = [lines[0]["id"]]
            elif role in ("test", "cancelled", "discount"):
                refunded = []
            out.append(
                self._order(
                    order_id,
                    created,
                    currency,
                    lines,
                    customer,
                    email,
                    refunded,
                    created + timedelta(days=rng.randint(1, 20)),
                    discount=rng.choice(DISCOUNTS)
                    if rng.random() < 0.1 or role == "discount"
                    else None,
                    cancelled=rng.random() < 0.03 or role == "cancelled",
                    test=rng.random() < 0.02 or role == "test",
                )
            )
        return out

    def _customer_totals(
        self, customers: list[dict[str, Any]], orders: list[dict[str, Any]]
    ) -> None:
        by_id = {c["id"]: c for c in customers}
        spent: dict[int, Decimal] = defaultdict(Decimal)
        for order in orders:
            cid = order.get("customer_id")
            if cid is None or cid not in by_id:
                continue
            customer = by_id[cid]
            customer["orders_count"] += 1
            customer["last_order_id"] = order["id"]
            customer["last_order_name"] = order["name"]
            if not order["test"] and not order["cancelled_at"]:
                spent[cid] += Decimal(order["current_total"]["shop"])
            customer["updated_at"] = max(customer["updated_at"], order["created_at"])
        for cid, amount in spent.items():
            by_id[cid]["total_spent"] = _money(amount)


def build_store(world: LegacyWorld, *, scale: float, seed: int) -> StoreContents:
    """The store documents for a legacy world (pure; see the module doc)."""
    return StoreBuilder(world, scale=scale, seed=seed).build()


def write_store(db_path: Path | str, contents: StoreContents) -> None:
    """Replace the store file's contents."""
    store = StoreDB(db_path)
    try:
        store.clear()
        store.put_many("products", contents.products)
        store.put_many("customers", contents.customers)
        for start in range(0, len(contents.orders), 5000):
            store.put_many("orders", contents.orders[start : start + 5000])
    finally:
        store.close()


def seed_store(
    db_path: Path | str,
    legacy_mysql_url: str,
    *,
    scale: float,
    seed: int,
    forums_db: str = "tribot_forums",
    repo_db: str = "tribot_repo",
) -> StoreSummary:
    """Build the store file at ``db_path`` from the legacy world on ``legacy_mysql_url``."""
    started = time.perf_counter()
    world = read_legacy_world(legacy_mysql_url, forums_db=forums_db, repo_db=repo_db)
    contents = build_store(world, scale=scale, seed=seed)
    write_store(db_path, contents)
    license_orders = len({lic.order_id for lic in world.licenses})
    ids = [o["id"] for o in contents.orders] + [c["id"] for c in contents.customers]
    return StoreSummary(
        db_path=str(db_path),
        customers=len(contents.customers),
        products=len(contents.products),
        orders=len(contents.orders),
        line_items=sum(len(o["line_items"]) for o in contents.orders),
        license_orders=license_orders,
        store_only_orders=len(contents.orders) - license_orders,
        guest_orders=sum(1 for o in contents.orders if o["customer_id"] is None),
        ids_above_2_53=sum(1 for i in ids if i > 2**53),
        seconds=round(time.perf_counter() - started, 2),
    )
