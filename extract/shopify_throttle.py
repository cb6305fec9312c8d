"""Client-side pacing for Shopify's two rate limits.

Design note: ``CostThrottle`` tracks the GraphQL cost bucket as Shopify last
reported it (``extensions.cost.throttleStatus``) plus the time it was seen, and
projects it forward with ``restoreRate``. ``ShopifyClient`` asks it how long to
wait before each query and feeds every response back. Because the bucket is
server state, nothing here needs to survive a crash: a restarted client knows
nothing, sends its first query unpaced, and is paced from the first answer on.

The rule is the one Shopify's leaky bucket applies: a query is refused
(HTTP 200 + ``THROTTLED``) when its *requested* cost exceeds what is currently
available, so before sending we wait ``(requested - available) / restoreRate``.
The requested cost of a query shape is learnt from the previous response for
the same shape (Shopify reports ``requestedQueryCost`` on every answer,
including a THROTTLED one), so in steady state no query is ever refused.

``RestCallBucket`` does the same for the legacy REST leaky bucket from the
``x-shopify-shop-api-call-limit: used/cap`` header.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

# Shopify publishes neither the clock skew nor the exact instant a response's
# status was taken; a small margin keeps rounding from turning into THROTTLED.
SAFETY_MARGIN_POINTS = 1.0


@dataclass(frozen=True)
class ThrottleStatus:
    """The cost bucket as one response reported it."""

    maximum_available: float
    currently_available: float
    restore_rate: float

    @classmethod
    def from_extensions(cls, extensions: Mapping[str, Any] | None) -> ThrottleStatus | None:
        """Read ``extensions.cost.throttleStatus``; None when Shopify omitted it."""
        cost = (extensions or {}).get("cost") or {}
        status = cost.get("throttleStatus")
        if not isinstance(status, Mapping):
            return None
        try:
            return cls(
                maximum_available=float(status["maximumAvailable"]),
                currently_available=float(status["currentlyAvailable"]),
                restore_rate=float(status["restoreRate"]),
            )
        except (KeyError, TypeError, ValueError):
            return None


@dataclass(frozen=True)
class QueryCost:
    """``extensions.cost`` of one response (actual is None when THROTTLED)."""

    requested: float | None
    actual: float | None
    status: ThrottleStatus | None

    @classmethod
    def from_extensions(cls, extensions: Mapping[str, Any] | None) -> QueryCost:
        cost = (extensions or {}).get("cost") or {}
        requested = cost.get("requestedQueryCost")
        actual = cost.get("actualQueryCost")
        return cls(
            requested=float(requested) if requested is not None else None,
            actual=float(actual) if actual is not None else None,
            status=ThrottleStatus.from_extensions(extensions),
        )


class CostThrottle:
    """Predicts the GraphQL cost bucket and says how long to wait before a query."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._status: ThrottleStatus | None = None
        self._seen_at = 0.0
        self._costs: dict[str, float] = {}

    @property
    def status(self) -> ThrottleStatus | None:
        return self._status

    def available_now(self) -> float | None:
        """Projected points available now, or None before the first response."""
        if self._status is None:
            return None
        elapsed = max(0.0, self._clock() - self._seen_at)
        restored = self._status.currently_available + elapsed * self._status.restore_rate
        return min(self._status.maximum_available, restored)

    def expected_cost(self, query_key: str) -> float | None:
        """The requested cost last reported for this query shape."""
        return self._costs.get(query_key)

    def wait_before(self, query_key: str, requested_cost: float | None = None) -> float:
        """Seconds to wait so that a query of this shape will be paid, not refused."""
        cost = requested_cost if requested_cost is not None else self._costs.get(query_key)
        available = self.available_now()
        if cost is None or available is None or self._status is None:
            return 0.0
        if self._status.restore_rate <= 0:
            return 0.0
        # A query dearer than the whole bucket can never be paid; waiting for a
        # full bucket is the best we can do and the server will say MAX_COST.
        need = min(cost, self._status.maximum_available) + SAFETY_MARGIN_POINTS - available
        return max(0.0, need / self._status.restore_rate)

    def observe(self, query_key: str, cost: QueryCost) -> None:
        """Record a response's cost report (throttled or not)."""
        if cost.requested is not None:
            self._costs[query_key] = cost.requested
        if cost.status is not None:
            self._status = cost.status
            self._seen_at = self._clock()

    def wait_after_throttled(self, query_key: str) -> float:
        """Seconds until a refused query of this shape can be paid."""
        return self.wait_before(query_key)


class RestCallBucket:
    """The REST leaky bucket, from ``x-shopify-shop-api-call-limit: used/cap``."""

    def __init__(
        self, leak_per_second: float = 2.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._leak = leak_per_second
        self._clock = clock
        self._used = 0.0
        self._cap = 0.0
        self._seen_at = 0.0

    def observe(self, header: str | None) -> None:
        """Record the call-limit header of a REST response."""
        if not header or "/" not in header:
            return
        used, _, cap = header.partition("/")
        try:
            self._used, self._cap = float(used), float(cap)
        except ValueError:
            return
        self._seen_at = self._clock()

    def wait_before(self) -> float:
        """Seconds to wait so the next request fits in the bucket."""
        if self._cap <= 0:
            return 0.0
        used_now = max(0.0, self._used - (self._clock() - self._seen_at) * self._leak)
        overflow = used_now + 1.0 - (self._cap - 1.0)
        return max(0.0, overflow / self._leak)
