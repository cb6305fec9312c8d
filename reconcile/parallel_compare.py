"""A full compare of a large table, split by source key across worker processes.

Design note. Mapping the source side is CPU work in Python (``map_batch``, canonical
text, digests: about 11 CPU s per million licenses), so one interpreter uses one core
while the databases wait. A full compare of a table the server estimates at
``PARALLEL_MIN_ROWS`` rows or more, with a single integer source key, is therefore cut
into key ranges ``(a, b]`` of equal width between the key's least and greatest value
(the outer ranges open, so target rows beyond the source's keys are still seen),
``RANGES_PER_PROCESS`` per process. The ranges wait in one queue; this process and each
worker process (:func:`compare_range`) take the next one whenever they finish one, and
compare it exactly as the one-process compare does: the source rows of the range in key
order, chunk by chunk, against the target's ``(key, digest)`` pairs of the same range. A
worker sets a table up once (connections, snapshot, reference ids, contributing feeds)
and reuses it for every range it takes.

What the parent decides once and hands over: the dedup losers (planned over the whole
table, as the backfill does) and the defaults of contributed columns; each worker maps the
contributing feeds itself (they are small) and loads the target's reference ids itself.
The parent merges the ranges' counts, differences and canonical rows; classification,
the settle window and the quality suites then run in the parent as for any table.

Consistency: each worker reads in its own consistent snapshot (one for all its ranges), opened after the parent's,
so what a worker reads is at least as new as the positions the report records; a row
changed between the snapshots shows as a difference that the settle window re-checks
once the follower has passed a newer snapshot, as any in-flight change. Processes are
started with ``spawn`` (no inherited connections or threads); each costs about a second
of start-up and its own memory (about 200 MB at a million licenses), which is why small
tables stay in one process.
"""

from __future__ import annotations

import collections
import contextlib
import multiprocessing
import os
import threading
from collections import Counter
from collections.abc import Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from extract.snapshot_reader import SnapshotReader
from reconcile.checksum_differ import ChunkDiff
from runeshift.settings import Settings
from transform.mapping_spec import Feed

if TYPE_CHECKING:
    from reconcile.reconcile_run import _TableCompare

PARALLEL_MIN_ROWS = 200_000
MAX_DEFAULT_WORKERS = 4
# Ranges per process, taken from one queue: a process that started late (a worker's
# start-up) or runs slower takes fewer, so all finish together. Two ranges per process
# left this process idle for about a second at a million licenses, waiting for the worker.
RANGES_PER_PROCESS = 4

KeyRange = tuple[int | None, int | None]


def default_workers() -> int:
    return max(1, min(os.cpu_count() or 1, MAX_DEFAULT_WORKERS))


def split_key_range(low: int, high: int, parts: int) -> list[KeyRange]:
    """``parts`` ranges ``(a, b]`` of equal width covering every key, the outer ones open."""
    parts = max(1, min(parts, high - low + 1))
    width = (high - low + 1) / parts
    cuts = sorted({low - 1 + round(width * i) for i in range(1, parts)})
    return list(zip([None, *cuts], [*cuts, None], strict=True))


def key_ranges(
    reader: SnapshotReader, feed: Feed, workers: int, min_rows: int = PARALLEL_MIN_ROWS
) -> list[KeyRange] | None:
    """The ranges to compare in parallel, or None when one process should do it."""
    table = reader.tables.get(feed.table)
    if workers < 2 or table is None or len(table.primary_key) != 1:
        return None
    if table.column(table.primary_key[0]).arrow_type not in (pa.int64(), pa.uint64()):
        return None
    if reader.estimated_rows(table.name) < min_rows:
        return None
    bounds = reader.key_bounds(table)
    if bounds is None:
        return None
    ranges = split_key_range(*bounds, workers * RANGES_PER_PROCESS)
    return ranges if len(ranges) > 1 else None


@dataclass(frozen=True)
class RangeJob:
    settings: Settings
    target: str
    lower: int | None
    upper: int | None
    losers: dict[str, frozenset[str]]
    contributed_defaults: dict[str, str]
    chunk_rows: int | None


@dataclass
class RangeOutcome:
    """What one range's compare found, in the parent's terms."""

    source_rows: int = 0
    expected_rows: int = 0
    target_rows: int = 0
    excluded: Counter[str] = field(default_factory=Counter)
    quarantined_by_mapping: int = 0
    chunks: int = 0
    chunks_differing: int = 0
    diff: ChunkDiff = field(default_factory=ChunkDiff)
    canonical_rows: dict[int, list[str | None]] = field(default_factory=dict)
    skipped_keys: dict[int, str] = field(default_factory=dict)


@dataclass
class _WorkerTable:
    """What a worker sets up once per table and reuses for every range it is given."""

    owned: contextlib.ExitStack
    plan: Any
    source: Any  # MappedSource
    conn: Any
    side_conn: Any


_worker_tables: dict[tuple[str, tuple[tuple[str, frozenset[str]], ...]], _WorkerTable] = {}


def _worker_table(job: RangeJob) -> _WorkerTable:
    """The job's table set up in this worker: connections, snapshot readers (one snapshot
    for every range this process compares), reference ids, the contributing feeds."""
    from reconcile.reconcile_run import _close, _mapped_source, _open_readers, _plans
    from runeshift.backfill import TargetReferences
    from runeshift.connections import pg_connect
    from transform.mapping_loader import load_mappings

    cache_key = (job.target, tuple(sorted(job.losers.items())))
    if cache_key in _worker_tables:
        return _worker_tables[cache_key]
    mappings = load_mappings()
    pg_url = job.settings.require("postgres_url")
    owned = contextlib.ExitStack()
    conn = owned.enter_context(contextlib.closing(pg_connect(pg_url)))
    side_conn = owned.enter_context(contextlib.closing(pg_connect(pg_url)))
    (plan,) = [p for p in _plans(conn, mappings, [job.target]) if p.target.table == job.target]
    conn.rollback()
    feeds = (plan.primary, *plan.contributing)
    readers = _open_readers(job.settings, {f.source for f in feeds})
    owned.callback(_close, readers)
    source = _mapped_source(readers, plan, TargetReferences(conn), job.chunk_rows)
    source.losers = dict(job.losers)
    source.contributed_defaults = dict(job.contributed_defaults)
    source.map_contributing()
    table = _WorkerTable(owned, plan, source, conn, side_conn)
    _worker_tables[cache_key] = table
    return table


def _close_worker_tables() -> None:
    while _worker_tables:
        _, table = _worker_tables.popitem()
        table.owned.close()


def compare_range(job: RangeJob) -> RangeOutcome:
    """Compare the keys in ``(job.lower, job.upper]`` of one target table (in a worker)."""
    from reconcile.reconcile_run import _TableCompare

    try:
        table = _worker_table(job)
        compare = _TableCompare(table.plan, table.source, table.conn, table.side_conn)
        compare.full(job.lower, job.upper)
    except BaseException:
        _close_worker_tables()  # a later job starts afresh
        raise
    r = compare.result
    return RangeOutcome(
        source_rows=r.source_rows,
        expected_rows=r.expected_rows,
        target_rows=r.target_rows,
        excluded=r.excluded,
        quarantined_by_mapping=r.quarantined_by_mapping,
        chunks=r.chunks,
        chunks_differing=r.chunks_differing,
        diff=compare.diff,
        canonical_rows=compare.source_rows,
        skipped_keys=compare.skipped_keys,
    )


class RangeWorkers:
    """Worker processes for :func:`compare_range`, started on first use and kept for the run."""

    def __init__(self, workers: int) -> None:
        self.workers = workers
        self._pool: ProcessPoolExecutor | None = None

    def close(self) -> None:
        """Stop the workers (their connections and snapshots end with them)."""
        if self._pool is not None:
            self._pool.shutdown(cancel_futures=True)
            self._pool = None

    def compare(
        self,
        compare: _TableCompare,
        settings: Settings,
        ranges: Sequence[KeyRange],
        *,
        chunk_rows: int | None,
    ) -> None:
        """Compare ``ranges`` here and in the workers, each range once; merge into ``compare``.

        The ranges wait in one queue, in key order. Each worker is handed the next one
        whenever it finishes one, and this process takes them too, in between: it is
        already started, so its ranges hide the workers' start-up.
        """
        if self._pool is None and len(ranges) > 1:
            context = multiprocessing.get_context("spawn")
            self._pool = ProcessPoolExecutor(max(1, self.workers - 1), mp_context=context)
        source = compare.source
        waiting = collections.deque(ranges)
        state = threading.Condition()
        running = 0  # ranges handed to workers and not yet back
        outcomes: list[RangeOutcome] = []
        failures: list[BaseException] = []

        def next_range() -> KeyRange | None:
            with state:
                return waiting.popleft() if waiting and not failures else None

        def hand_out(finished: Future[RangeOutcome] | None = None) -> None:
            nonlocal running
            with state:
                if finished is not None:
                    running -= 1
                    if finished.cancelled():
                        failures.append(RuntimeError("a range compare was cancelled"))
                    elif (error := finished.exception()) is not None:
                        failures.append(error)
                    else:
                        outcomes.append(finished.result())
                    state.notify_all()
                if not waiting or failures or self._pool is None:
                    return
                lower, upper = waiting.popleft()
                running += 1
            job = RangeJob(
                settings,
                compare.plan.target.table,
                lower,
                upper,
                dict(source.losers),
                dict(source.contributed_defaults),
                chunk_rows,
            )
            try:
                future = self._pool.submit(compare_range, job)
            except BaseException as exc:  # a broken pool: nothing will call back
                with state:
                    running -= 1
                    failures.append(exc)
                    state.notify_all()
                return
            future.add_done_callback(hand_out)

        for _ in range(self.workers - 1 if self._pool is not None else 0):
            hand_out()
        source.map_contributing()
        while (taken := next_range()) is not None:
            compare.full(*taken)
        with state:
            state.wait_for(lambda: running == 0)
        if failures:
            raise failures[0]
        for outcome in outcomes:
            merge(compare, outcome)


def merge(compare: _TableCompare, outcome: RangeOutcome) -> None:
    r = compare.result
    r.source_rows += outcome.source_rows
    r.expected_rows += outcome.expected_rows
    r.target_rows += outcome.target_rows
    r.excluded.update(outcome.excluded)
    r.quarantined_by_mapping += outcome.quarantined_by_mapping
    r.chunks += outcome.chunks
    r.chunks_differing += outcome.chunks_differing
    compare.diff.extend(outcome.diff)
    compare.source_rows.update(outcome.canonical_rows)
    compare.skipped_keys.update(outcome.skipped_keys)
