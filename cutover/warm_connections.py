"""MySQL connections kept open across the steps of the write switch, so held writes wait less.

Opening a MySQL connection costs tens of milliseconds on a busy box (the handshake, the
authentication, the session's ``init_command``), and the steps that run while writes are
held (``drain_catch_up``, ``verify_window``) each opened their own. With this cache, the
step before the hold (``pre_verify_window``) opens them and the held steps reuse them.

Only while kept open (:meth:`keep_open`, until :meth:`release`, which the runner calls when
it leaves the stage) are connections cached; otherwise each use opens one and closes it, as
before. A cached connection is pinged before reuse and replaced when it has gone away. The
statements are read-only and each runs in its own transaction (autocommit), so a reused
connection sees exactly what a new one would.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from typing import Any

import pymysql

from runeshift.connections import mysql_connect


class MySQLConnections:
    """One idle connection per URL, lent out one use at a time; see the module note."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._active = False
        self._idle: dict[str, pymysql.connections.Connection[Any]] = {}

    def keep_open(self) -> None:
        """Cache connections from now until :meth:`release`."""
        with self._lock:
            self._active = True

    def release(self) -> None:
        """Close every cached connection and stop caching."""
        with self._lock:
            self._active = False
            idle, self._idle = self._idle, {}
        for conn in idle.values():
            _close_quietly(conn)

    @contextmanager
    def connection(self, url: str) -> Iterator[pymysql.connections.Connection[Any]]:
        """A live autocommit connection to ``url``, returned to the cache after a clean use."""
        with self._lock:
            conn = self._idle.pop(url, None)
        if conn is not None:
            try:
                conn.ping(reconnect=False)
            except (pymysql.err.Error, OSError):
                _close_quietly(conn)
                conn = None
        if conn is None:
            conn = mysql_connect(url)
        reusable = False
        try:
            yield conn
            reusable = True
        finally:
            keep = False
            if reusable:
                with self._lock:
                    if self._active and url not in self._idle:
                        self._idle[url] = conn
                        keep = True
            if not keep:
                _close_quietly(conn)


def _close_quietly(conn: pymysql.connections.Connection[Any]) -> None:
    with suppress(pymysql.err.Error, OSError):
        conn.close()
