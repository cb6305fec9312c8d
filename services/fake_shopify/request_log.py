"""What every request to the fake did, so tests can assert a client's manners.

Design note: an in-memory, thread-safe list of ``LoggedRequest`` (method, path, query,
GraphQL cost requested/actual, throttle status after the request, response status, time,
and the fault applied, if any). ``GET /__fake__/requests`` returns it; tests assert things
like "the client never went over the bucket" or "never sent filters with page_info". The
control endpoints themselves are not logged.
"""

from __future__ import annotations

import threading
import time
from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass
class LoggedRequest:
    seq: int
    method: str
    path: str
    query: str
    status: int
    started_at: float
    duration_ms: float
    api: str
    requested_cost: int | None = None
    actual_cost: int | None = None
    throttle_available: float | None = None
    throttle_maximum: float | None = None
    throttled: bool = False
    rest_call_limit: str | None = None
    fault: str | None = None
    graphql_query: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


class RequestLog:
    def __init__(self) -> None:
        self._items: list[LoggedRequest] = []
        self._lock = threading.Lock()
        self._seq = 0

    def next_seq(self) -> int:
        """Number the next API request (faults are counted on it)."""
        with self._lock:
            self._seq += 1
            return self._seq

    def add(self, item: LoggedRequest) -> None:
        with self._lock:
            self._items.append(item)

    def items(self) -> list[LoggedRequest]:
        with self._lock:
            return list(self._items)

    def as_json(self) -> list[dict[str, Any]]:
        return [asdict(i) for i in self.items()]

    def clear(self) -> None:
        with self._lock:
            self._items.clear()


def now() -> float:
    return time.time()
