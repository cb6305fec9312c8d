"""Shopify's two leaky buckets: GraphQL query-cost points and REST request counts.

Design note: a bucket holds ``available`` points that refill at ``restore_rate`` per second
up to ``capacity``; the clock is injectable so tests can step time. GraphQL charges the
*requested* cost up front and refunds the difference to the *actual* cost after execution
(Shopify's documented behaviour); REST charges one request and answers 429 when the bucket
is full. State is in memory: a restarted server starts with full buckets, like a new minute.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

Clock = Callable[[], float]


@dataclass(frozen=True)
class ThrottleStatus:
    """``extensions.cost.throttleStatus`` as Shopify reports it (floats, like the real API)."""

    maximum_available: float
    currently_available: float
    restore_rate: float

    def as_json(self) -> dict[str, float]:
        return {
            "maximumAvailable": self.maximum_available,
            "currentlyAvailable": self.currently_available,
            "restoreRate": self.restore_rate,
        }


class CostBucket:
    """The GraphQL calculated-query-cost bucket (default standard plan 1000 / 50 per second)."""

    def __init__(
        self, capacity: float = 1000.0, restore_rate: float = 50.0, clock: Clock = time.monotonic
    ) -> None:
        self.capacity = float(capacity)
        self.restore_rate = float(restore_rate)
        self._clock = clock
        self._available = self.capacity
        self._at = clock()
        self._lock = threading.Lock()

    def _refill(self) -> None:
        now = self._clock()
        self._available = min(self.capacity, self._available + (now - self._at) * self.restore_rate)
        self._at = now

    def try_take(self, cost: float) -> bool:
        """Take ``cost`` points if the bucket holds them; Shopify throttles otherwise."""
        with self._lock:
            self._refill()
            if cost > self._available:
                return False
            self._available -= cost
            return True

    def refund(self, points: float) -> None:
        with self._lock:
            self._refill()
            self._available = min(self.capacity, self._available + max(0.0, points))

    def drain(self) -> None:
        """Empty the bucket now (fault injection: another app on the shop spent it)."""
        with self._lock:
            self._refill()
            self._available = 0.0

    def status(self) -> ThrottleStatus:
        with self._lock:
            self._refill()
            return ThrottleStatus(self.capacity, round(self._available, 1), self.restore_rate)


class RequestBucket:
    """The REST bucket: ``capacity`` requests leaking at ``leak_rate`` per second (40 / 2)."""

    def __init__(
        self, capacity: int = 40, leak_rate: float = 2.0, clock: Clock = time.monotonic
    ) -> None:
        self.capacity = capacity
        self.leak_rate = float(leak_rate)
        self._clock = clock
        self._used = 0.0
        self._at = clock()
        self._lock = threading.Lock()

    def _leak(self) -> None:
        now = self._clock()
        self._used = max(0.0, self._used - (now - self._at) * self.leak_rate)
        self._at = now

    def try_take(self) -> tuple[bool, int]:
        """Count one request; (allowed, used after) for ``x-shopify-shop-api-call-limit``."""
        with self._lock:
            self._leak()
            if self._used + 1 > self.capacity:
                return False, self.capacity
            self._used += 1
            return True, int(-(-self._used // 1))

    def retry_after(self) -> float:
        """Seconds until one request fits again (Shopify sends ``retry-after: 2.0``)."""
        return round(1.0 / self.leak_rate, 1) if self.leak_rate else 2.0
