"""The services' connection pool: bounded, reuses connections, never opens one per request."""

from __future__ import annotations

import itertools
import threading
import time

import pytest

from runeshift.errors import TransientError
from services.rune_service.connection_pool import ConnectionPool


class Factory:
    def __init__(self, fail: bool = False) -> None:
        self.opened: list[int] = []
        self.closed: list[int] = []
        self.fail = fail
        self._ids = itertools.count(1)

    def open(self) -> int:
        if self.fail:
            raise OSError("connection refused")
        conn = next(self._ids)
        self.opened.append(conn)
        return conn

    def close(self, conn: int) -> None:
        self.closed.append(conn)


def pool(factory: Factory, size: int = 2, wait_s: float = 5.0) -> ConnectionPool[int]:
    return ConnectionPool(
        factory.open, factory.close, size=size, broken=(ValueError,), wait_s=wait_s
    )


def test_sequential_requests_reuse_one_connection() -> None:
    f = Factory()
    p = pool(f)
    for _ in range(50):
        with p.connection():
            pass
    assert f.opened == [1]
    assert f.closed == []


def test_a_request_past_the_size_waits_for_a_connection_instead_of_opening_one() -> None:
    f = Factory()
    p = pool(f, size=2)
    got: list[int] = []
    with p.connection() as a, p.connection():
        waiter = threading.Thread(target=lambda: got.append(_use(p)))
        waiter.start()
        time.sleep(0.1)
        assert got == []  # still waiting: both connections are lent out
        assert len(f.opened) == 2
        held_a = a
    waiter.join(timeout=5)
    assert got and got[0] in (held_a, 2)
    assert len(f.opened) == 2
    assert f.closed == []


def _use(p: ConnectionPool[int]) -> int:
    with p.connection() as conn:
        return conn


def test_waiting_longer_than_wait_s_is_a_transient_error() -> None:
    f = Factory()
    p = pool(f, size=1, wait_s=0.1)
    with p.connection(), pytest.raises(TransientError, match="all 1 database connections"):
        _use(p)


def test_a_broken_connection_is_closed_and_its_slot_freed() -> None:
    f = Factory()
    p = pool(f, size=1, wait_s=0.5)
    with pytest.raises(ValueError), p.connection():
        raise ValueError("driver error")
    assert f.closed == [1]
    assert _use(p) == 2  # a new one, not a wait for the closed one


def test_a_failed_open_frees_its_slot() -> None:
    f = Factory(fail=True)
    p = pool(f, size=1, wait_s=0.5)
    with pytest.raises(OSError):
        _use(p)
    f.fail = False
    assert _use(p) == 1


def test_warm_opens_at_most_size_and_close_disposes_the_idle_ones() -> None:
    f = Factory()
    p = pool(f, size=3)
    p.warm(5)
    assert f.opened == [1, 2, 3]
    for _ in range(10):
        _use(p)
    assert len(f.opened) == 3
    p.close()
    assert sorted(f.closed) == [1, 2, 3]
