"""Heartbeats that measure catch-up lag end to end, with one clock.

Design note. Every 500 ms the writer bumps a sequence number in the one-row table
``runeshift_heartbeat`` of each legacy database and remembers, on *its own monotonic
clock*, when it wrote each number. The follower sees the row come through the binlog and
applies it in the same Postgres transaction as the changes before it; once that commits,
``lag = now - written_at(seq)`` on the same clock. Nothing compares the clocks of MySQL,
Postgres and the follower, so clock skew cannot make the lag look better (Debezium's
``MilliSecondsBehindSource`` "will incorporate any differences between the clocks").
Sequence numbers start from the wall-clock milliseconds at start-up, so numbers from an
earlier run are never mistaken for this run's (they have no write time and are ignored).

The table is runeshift's, not legacy schema: the drift guard knows its name
(``transform.mapping_drift``). It holds one row per writer id and never grows. Nothing is
kept across a crash: a restarted follower starts a new sequence.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections import OrderedDict
from collections.abc import Mapping
from typing import Any

from runeshift.connections import mysql_connect

HEARTBEAT_TABLE = "runeshift_heartbeat"
INTERVAL_SECONDS = 0.5
_KEEP = 20_000
CREATE_TABLE = (
    f"CREATE TABLE IF NOT EXISTS `{HEARTBEAT_TABLE}` ("
    " id TINYINT UNSIGNED NOT NULL PRIMARY KEY,"
    " seq BIGINT UNSIGNED NOT NULL,"
    " written_at TIMESTAMP(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6)"
    ") ENGINE=InnoDB COMMENT='runeshift catch-up heartbeat (not legacy schema)'"
)


class HeartbeatWriter:
    """Writes a heartbeat to each source every ``interval`` seconds on a daemon thread."""

    def __init__(self, urls: Mapping[str, str], *, interval: float = INTERVAL_SECONDS) -> None:
        self._urls = dict(urls)
        self._interval = interval
        self._written: OrderedDict[int, float] = OrderedDict()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._conns: dict[str, Any] = {}
        self.first_seq = int(time.time() * 1000)
        self._next = self.first_seq
        self.errors = 0

    def ensure_tables(self) -> None:
        """Create the heartbeat table in every source (idempotent)."""
        for url in self._urls.values():
            conn = mysql_connect(url)
            try:
                with conn.cursor() as cur:
                    cur.execute(CREATE_TABLE)
            finally:
                conn.close()

    def beat(self) -> int:
        """Write the next sequence number to every source now; returns it."""
        with self._lock:
            seq = self._next
            self._next += 1
            self._written[seq] = time.monotonic()
            while len(self._written) > _KEEP:
                self._written.popitem(last=False)
        for source, url in self._urls.items():
            try:
                conn = self._conns.get(source) or mysql_connect(url)
                self._conns[source] = conn
                with conn.cursor() as cur:
                    cur.execute(
                        f"INSERT INTO `{HEARTBEAT_TABLE}` (id, seq, written_at) VALUES (1, %s, NOW(6)) "
                        "ON DUPLICATE KEY UPDATE seq = VALUES(seq), written_at = VALUES(written_at)",
                        (seq,),
                    )
            except Exception:
                self.errors += 1
                self._drop(source)
        return seq

    def _drop(self, source: str) -> None:
        conn = self._conns.pop(source, None)
        if conn is not None:
            with contextlib.suppress(Exception):
                conn.close()

    def written_at(self, seq: int) -> float | None:
        """Monotonic time this writer wrote ``seq``, or None for another run's number."""
        with self._lock:
            return self._written.get(seq)

    def oldest_unseen_after(self, seq: int | None) -> float | None:
        """Write time of the first heartbeat after ``seq`` (the lag floor while it is unseen)."""
        with self._lock:
            if seq is None:
                item = next(iter(self._written.items()), None)
                return item[1] if item else None
            when = self._written.get(seq + 1)
            return when

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="heartbeat", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            started = time.monotonic()
            self.beat()
            self._stop.wait(max(0.0, self._interval - (time.monotonic() - started)))

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        for source in list(self._conns):
            self._drop(source)
