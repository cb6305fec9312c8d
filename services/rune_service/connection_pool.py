"""A small, thread-safe pool of database connections for the services' request threads.

Opening a Postgres or MySQL connection costs a few milliseconds, more than the queries the
API runs, so each service keeps up to ``size`` idle connections. A connection that raised a
driver error is closed instead of returned: after a failed statement or a dropped socket its
state is unknown, and the next request must not inherit it.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from typing import Generic, TypeVar

C = TypeVar("C")


class ConnectionPool(Generic[C]):
    """Hands out connections made by ``factory``; ``close`` disposes of one."""

    def __init__(
        self,
        factory: Callable[[], C],
        close: Callable[[C], None],
        *,
        size: int = 16,
        broken: tuple[type[BaseException], ...] = (Exception,),
    ) -> None:
        self._factory = factory
        self._close = close
        self._size = size
        self._broken = broken
        self._idle: list[C] = []
        self._lock = threading.Lock()
        self._closed = False

    @contextmanager
    def connection(self) -> Iterator[C]:
        with self._lock:
            conn = self._idle.pop() if self._idle else None
        if conn is None:
            conn = self._factory()
        try:
            yield conn
        except self._broken:
            self._dispose(conn)
            raise
        except BaseException:
            self._release(conn)
            raise
        else:
            self._release(conn)

    def warm(self, count: int) -> None:
        """Open ``count`` connections now, so the first burst of requests does not pay for them."""
        fresh = [self._factory() for _ in range(min(count, self._size))]
        for conn in fresh:
            self._release(conn)

    def _release(self, conn: C) -> None:
        with self._lock:
            if not self._closed and len(self._idle) < self._size:
                self._idle.append(conn)
                return
        self._dispose(conn)

    def _dispose(self, conn: C) -> None:
        with suppress(Exception):
            self._close(conn)

    def close(self) -> None:
        with self._lock:
            idle, self._idle, self._closed = self._idle, [], True
        for conn in idle:
            self._dispose(conn)
