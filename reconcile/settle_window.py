"""The settle window: differences seen while the catch-up follower runs are re-checked.

Design note. A live comparison reads the source in a snapshot at binlog
position S while the target is wherever the follower has got to, so a row
written after S (or not yet applied) can differ for a moment. Every
difference of the full pass is therefore re-checked: a new snapshot at S2 reads
the differing source rows, we wait until the follower's position in
``runeshift.source_positions`` (advanced by the follower in the same
transaction as the rows it applies) has passed S2, then read the target rows.
The recheck maps those rows wholly in the new snapshot: dedup is planned again and
the target's reference ids are reloaded after the wait, because both depend on rows
other than the one compared (a visit moves who may log in; a review's member signed
up during the run). A difference that survives every round is real; one that
disappears was the follower lagging. Without a running follower (positions recorded by the
backfill only) nothing is waiting to be applied and the first answer stands.
The window holds no state beyond one call.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import psycopg

FOLLOWER = "sync"


@dataclass(frozen=True, order=True)
class BinlogPoint:
    """A comparable binlog coordinate: (file sequence number, byte position)."""

    file_number: int
    position: int

    @classmethod
    def parse(cls, position: dict[str, Any] | None) -> BinlogPoint | None:
        if not position or "file" not in position:
            return None
        match = re.search(r"(\d+)$", str(position["file"]))
        return cls(int(match.group(1)) if match else 0, int(position.get("position", 0)))


def follower_position(conn: psycopg.Connection[Any], source: str) -> tuple[BinlogPoint | None, str]:
    """The follower's applied position for ``source`` and who recorded it."""
    row = conn.execute(
        "SELECT position, recorded_by FROM runeshift.source_positions WHERE source = %s",
        (source,),
    ).fetchone()
    conn.rollback()
    if row is None:
        return None, ""
    return BinlogPoint.parse(dict(row[0])), str(row[1])


def follower_running(conn: psycopg.Connection[Any], source: str) -> bool:
    _, recorded_by = follower_position(conn, source)
    return recorded_by == FOLLOWER


@dataclass(frozen=True)
class SettleOutcome:
    passed: bool
    waited_seconds: float
    follower_at: BinlogPoint | None


def wait_until_applied(
    conn: psycopg.Connection[Any],
    source: str,
    point: BinlogPoint,
    *,
    timeout: float,
    poll: float = 0.1,
    clock: Callable[[], float] = time.monotonic,
) -> SettleOutcome:
    """Wait until the follower has applied ``source`` up to ``point`` (or ``timeout`` passes)."""
    started = clock()
    at: BinlogPoint | None = None
    while True:
        at, _ = follower_position(conn, source)
        if at is not None and at >= point:
            return SettleOutcome(True, clock() - started, at)
        if clock() - started >= timeout:
            return SettleOutcome(False, clock() - started, at)
        time.sleep(poll)
