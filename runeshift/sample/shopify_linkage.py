"""How generated licenses point at Shopify orders, so the Shopify seeder can rebuild the store.

The legacy tables keep only ``shopify_order_id``, ``shopify_line_id`` and ``price_paid`` (in the
order's currency). Everything else the store needs is a pure function of those and the seed:
the currency of an order is :func:`currency_for_order`, the USD list price of a product is
``scripts.monthly_price`` (variant ``Monthly``) or :func:`lifetime_price_usd` (variant
``Lifetime``), and a presentment price is :func:`price_in_currency`.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from decimal import ROUND_HALF_UP, Decimal
from typing import Literal

Currency = Literal["USD", "EUR", "GBP"]

FIRST_ORDER_ID = 5_000_000_000_000
"""Numeric Shopify order ids of the store start here and grow with time."""

FIRST_LINE_ID = 12_000_000_000_000

ABOVE_2_53_ORDER_ID = 2**53 + 1_000
"""Orders created from :data:`ABOVE_2_53_SINCE` on got ids above 2^53 (unsafe as JS numbers)."""

ABOVE_2_53_SINCE = int(datetime(2024, 5, 10, tzinfo=UTC).timestamp())

STORE_OPENED = int(datetime(2016, 1, 1, tzinfo=UTC).timestamp())
"""Licenses before this were granted by the old PayPal flow: no Shopify order."""

FX_FROM_USD: dict[Currency, Decimal] = {
    "USD": Decimal("1"),
    "EUR": Decimal("0.92"),
    "GBP": Decimal("0.79"),
}

CENT = Decimal("0.01")


def currency_for_order(order_id: int, seed: int) -> Currency:
    """The presentment currency of an order: about 85% USD, 10% EUR, 5% GBP, fixed per seed."""
    digest = hashlib.sha256(f"{seed}:{order_id}".encode()).digest()
    bucket = digest[0]
    if bucket < 218:
        return "USD"
    if bucket < 243:
        return "EUR"
    return "GBP"


def price_in_currency(usd: Decimal, currency: Currency) -> Decimal:
    """A USD list price presented in ``currency``, rounded half-up to the cent."""
    return (usd * FX_FROM_USD[currency]).quantize(CENT, rounding=ROUND_HALF_UP)


def lifetime_price_usd(monthly: Decimal) -> Decimal:
    """The ``Lifetime`` variant price: eight months, ending in .99 (0.00 stays 0.00)."""
    if monthly <= 0:
        return Decimal("0.00")
    return Decimal(int(monthly * 8)) + Decimal("0.99")
