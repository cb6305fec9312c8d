"""A small, thread-safe, bounded pool of database connections for the services' request threads.

Opening a connection costs far more than the queries the API runs (a PyMySQL connect builds
a default TLS context, loading the system CA store: about 50 ms of CPU on the drill box,
against well under 1 ms for a lookup), so each service keeps its connections open and never
holds more than ``size``. When all are lent out, a request waits for one to come back
(``wait_s`` at most, then :class:`TransientError`). The pool used to open an extra
connection instead and close it on return: under a burst more requests overlapped, each
paid for a connect, the service fell further behind and more overlapped, until at 500
requests/s the legacy stand-in spent most of its CPU opening MySQL connections and HAProxy's
health checks timed out.

A connection that raised a driver error is closed instead of returned: after a failed
statement or a dropped socket its state is unknown, and the next request must not inherit it.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from typing import Generic, TypeVar

from runeshift.errors import TransientError

C = TypeVar("C")


class ConnectionPool(Generic[C]):
    """Lends out at most ``size`` connections made by ``factory``; ``close`` disposes of one."""

    def __init__(
        self,
        factory: Callable[[], C],
        close: Callable[[C], None],
        *,
        size: int = 16,
        broken: tuple[type[BaseException], ...] = (Exception,),
        wait_s: float = 10.0,
    ) -> None:
        self._factory = factory
        self._close = close
        self._size = size
        self._broken = broken
        self._wait_s = wait_s
        self._idle: list[C] = []
        self._open = 0  # idle + lent out + being opened
        self._cond = threading.Condition()
        self._closed = False

    @contextmanager
    def connection(self) -> Iterator[C]:
        conn = self._take()
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

    def _take(self) -> C:
        deadline = time.monotonic() + self._wait_s
        with self._cond:
            while not self._idle and self._open >= self._size:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TransientError(
                        f"all {self._size} database connections stayed busy for "
                        f"{self._wait_s:.0f} s; retry the request"
                    )
                self._cond.wait(left)
            if self._idle:
                return self._idle.pop()
            self._open += 1
        try:
            return self._factory()
        except BaseException:
            with self._cond:
                self._open -= 1
                self._cond.notify()
            raise

    def warm(self, count: int) -> None:
        """Open ``count`` connections now, so the first burst of requests does not pay for them."""
        fresh: list[C] = []
        try:
            for _ in range(min(count, self._size)):
                fresh.append(self._take())
        finally:
            for conn in fresh:
                self._release(conn)

    def _release(self, conn: C) -> None:
        with self._cond:
            if not self._closed:
                self._idle.append(conn)
                self._cond.notify()
                return
        self._dispose(conn)

    def _dispose(self, conn: C) -> None:
        with self._cond:
            self._open -= 1
            self._cond.notify()
        with suppress(Exception):
            self._close(conn)

    def close(self) -> None:
        with self._cond:
            idle, self._idle, self._closed = self._idle, [], True
        for conn in idle:
            self._dispose(conn)
