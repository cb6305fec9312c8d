"""``runeshift reconcile``: the one place that wires the reconciliation together.

Per mapped target table: the target's ``(source key, digest)`` pairs stream
from PostgreSQL on a second connection while the source is read in its
snapshot and mapped chunk by chunk; each chunk's checksum is compared and only
differing chunks are narrowed to keys. Missing rows the target rejected (in
``runeshift.quarantine``) are accounted, not reported. Differences then go
through the settle window (re-checked once the follower has passed a new
snapshot), the quality suites run over the target, and the run is recorded in
``runeshift.runs`` like every command. With ``ReconcileOptions.keys`` only the listed source
keys are compared (a rollback's verification under held writes, bounded by the rows that
changed rather than by the table), with ``keyed_losers`` also the dedup losers planned in the
same snapshot.
"""

from __future__ import annotations

import contextlib
import math
import socket
import time
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

import numpy as np
import psycopg

from extract.snapshot_reader import SnapshotReader
from reconcile import target_side_reader as target_side
from reconcile.checksum_differ import ChunkDiff, chunks_equal, narrow
from reconcile.parallel_compare import (
    PARALLEL_MIN_ROWS,
    RangeWorkers,
    default_workers,
    key_ranges,
)
from reconcile.quality_suites import run_quality_suites
from reconcile.report_model import (
    Provenance,
    ReconcileReport,
    RowDifference,
    TableResult,
    Thresholds,
)
from reconcile.row_comparator import differing_columns
from reconcile.settle_window import BinlogPoint, follower_position, wait_until_applied
from reconcile.source_side_reader import MappedSource, SourceChunk, compared_columns, key_column
from reconcile.target_side_reader import TargetTable
from runeshift import __version__, control_store
from runeshift.backfill import TargetReferences, database_from_url, select_feeds
from runeshift.connections import pg_connect
from runeshift.errors import ConfigError
from runeshift.settings import Settings
from transform.mapping_loader import load_mappings
from transform.mapping_spec import Feed, MappingSet, TargetMapping

MYSQL_SOURCES = {"forums": "forums_url", "repo": "repo_url"}
MAX_REPORTED_ROWS = 1000


class ReconcileProgress(Protocol):
    def table_started(self, name: str) -> None: ...
    def table_finished(self, name: str, result: TableResult) -> None: ...


@dataclass(frozen=True)
class ReconcileOptions:
    tables: tuple[str, ...] = ()
    sample: float | None = None
    thresholds: Thresholds = field(default_factory=Thresholds)
    settle_timeout: float = 30.0
    settle_rounds: int = 3
    chunk_rows: int | None = None
    quality: bool = True
    # Per target table, the only source keys to compare; a table without any compares nothing.
    keys: Mapping[str, Sequence[int]] | None = None
    # With keys: also compare every row this run's dedup plan makes a loser, in the same
    # snapshot (a loser's expected row changes when a rival's row does, not only its own).
    keyed_losers: bool = False
    # Processes for a full compare of a large table (reconcile/parallel_compare.py); 1: none.
    workers: int = field(default_factory=default_workers)
    parallel_min_rows: int = PARALLEL_MIN_ROWS


@dataclass
class _Plan:
    target: TargetMapping
    primary: Feed
    contributing: tuple[Feed, ...]
    table: TargetTable


def _plans(
    conn: psycopg.Connection[Any], mappings: MappingSet, tables: Sequence[str]
) -> list[_Plan]:
    chosen = select_feeds(mappings, tables or None)
    wanted_targets = dict.fromkeys(t.table for t, _ in chosen)
    plans = []
    for target in mappings.targets:
        if target.table not in wanted_targets:
            continue
        primaries = [f for f in target.feeds if f.primary and f.source in MYSQL_SOURCES]
        if not primaries:
            continue
        primary = primaries[0]
        contributing = tuple(f for f in target.feeds if not f.primary and f.source in MYSQL_SOURCES)
        kinds = target_side.column_kinds(conn, target.table)
        names = compared_columns(primary, contributing)
        missing = [n for n in names if n not in kinds]
        if missing:
            raise ConfigError(
                f"{primary.where}: {target.table} has no column(s) {', '.join(missing)}; "
                "run 'runeshift schema upgrade' or fix the mapping"
            )
        table = TargetTable(
            target.table, key_column(target, primary), tuple((n, kinds[n]) for n in names)
        )
        plans.append(_Plan(target, primary, contributing, table))
    return plans


def _open_readers(settings: Settings, sources: Iterable[str]) -> dict[str, SnapshotReader]:
    readers: dict[str, SnapshotReader] = {}
    try:
        for source in sorted(set(sources)):
            setting = MYSQL_SOURCES[source]
            url = settings.require(setting)
            reader = SnapshotReader(url, database_from_url(url, setting))
            reader.open()
            readers[source] = reader
    except Exception:
        for reader in readers.values():
            reader.close()
        raise
    return readers


def _close(readers: dict[str, SnapshotReader]) -> None:
    for reader in readers.values():
        reader.close()


def _slice(keys: np.ndarray, lower: int | None, upper: int | None) -> slice:
    start = 0 if lower is None else int(np.searchsorted(keys, lower, side="right"))
    stop = len(keys) if upper is None else int(np.searchsorted(keys, upper, side="right"))
    return slice(start, stop)


class _TableCompare:
    """Compares one target table: full pass or sampled windows, then narrowing."""

    def __init__(
        self,
        plan: _Plan,
        source: MappedSource,
        conn: psycopg.Connection[Any],
        side_conn: psycopg.Connection[Any],
    ) -> None:
        self.plan = plan
        self.source = source
        self.conn = conn
        self.side_conn = side_conn
        self.result = TableResult(
            plan.target.table,
            plan.primary.qualified,
            plan.table.key,
            [n for n, _ in plan.table.columns],
        )
        self.diff = ChunkDiff()
        self.source_rows: dict[int, list[str | None]] = {}
        self.skipped_keys: dict[int, str] = {}

    def _account(self, chunk: SourceChunk, tk: np.ndarray, td: np.ndarray) -> None:
        r = self.result
        r.chunks += 1
        r.source_rows += chunk.read
        r.expected_rows += len(chunk.keys)
        r.target_rows += len(tk)
        r.excluded.update(chunk.excluded)
        r.quarantined_by_mapping += len(chunk.quarantined)
        for k in chunk.excluded_keys:
            self.skipped_keys[k] = "excluded by a mapping rule"
        for k, reason in chunk.quarantined.items():
            self.skipped_keys[k] = f"quarantined by the mapping: {reason}"
        if chunks_equal(chunk.digests, td):
            return
        found = narrow(chunk.keys, chunk.digests, tk, td)
        if found:
            r.chunks_differing += 1
            self.diff.extend(found)
            self.source_rows.update(chunk.canonical_rows(found.missing + found.changed))

    def full(self, lower: int | None = None, upper: int | None = None) -> None:
        """Every source key in (lower, upper] against the target's (None: open end)."""
        with ThreadPoolExecutor(1) as pool:
            future = pool.submit(
                target_side.key_digests, self.side_conn, self.plan.table, lower=lower, upper=upper
            )
            chunks = self.source.chunks(lower, upper)
            first = next(chunks)
            keys, digests = future.result()
            for chunk in _chain(first, chunks):
                window = _slice(keys, chunk.lower, chunk.upper)
                self._account(chunk, keys[window], digests[window])

    def sampled(self, fraction: float, chunk_rows: int) -> None:
        self.result.sampled = True
        bounds = target_side.key_bounds(self.conn, self.plan.table)
        lo, hi = bounds if bounds else (0, 0)
        total = max(1, hi - lo + 1)
        windows = max(1, math.ceil(fraction * total / chunk_rows))
        step = total / windows
        for i in range(windows):
            after = lo - 1 + int(i * step)
            chunk = self.source.window(after, chunk_rows)
            if chunk is None:
                continue
            tk, td = target_side.key_digests(
                self.conn, self.plan.table, lower=chunk.lower, upper=chunk.upper
            )
            self._account(chunk, tk, td)

    def keyed(self, keys: Sequence[int]) -> None:
        """Only these source keys, read as the settle window's recheck reads them."""
        if not keys:
            return
        chunk = self.source.rows_for_keys(keys)
        tk, td = target_side.digests_for_keys(self.conn, self.plan.table, keys)
        self._account(chunk, tk, td)

    def classify(self) -> None:
        """Turn key lists into reported differences; target rejects are accounted."""
        table = self.plan.table
        rejected = _target_quarantined(self.conn, self.plan, self.diff.missing)
        self.result.quarantined_by_target = len(rejected)
        diffs: list[RowDifference] = []
        for k in self.diff.missing:
            if k not in rejected:
                diffs.append(RowDifference(table.table, k, "missing", note="not in the target"))
        # A source delete the target could not carry out (Shopify orders still reference
        # the account) keeps the row, quarantined as delete_blocked: accounted, not extra.
        kept = _target_quarantined(self.conn, self.plan, self.diff.extra, rule="delete_blocked")
        self.result.kept_after_source_delete = len(kept)
        for k in self.diff.extra:
            if k in kept:
                continue
            note = self.skipped_keys.get(k, "no such source row")
            diffs.append(RowDifference(table.table, k, "extra", note=note))
        target_rows = target_side.canonical_rows(self.conn, table, self.diff.changed)
        for k in self.diff.changed:
            columns = differing_columns(
                table.table, table.columns, self.source_rows[k], target_rows[k]
            )
            diffs.append(RowDifference(table.table, k, "changed", columns))
        diffs.sort(key=lambda d: d.source_key)
        self.result.differences = diffs
        self.result.matched = (
            self.result.expected_rows - len(self.diff.missing) - len(self.diff.changed)
        )
        self.result.target_rows_without_source_key = target_side.rows_without_key(self.conn, table)


def _mapped_source(
    readers: dict[str, SnapshotReader],
    plan: _Plan,
    references: TargetReferences,
    chunk_rows: int | None,
) -> MappedSource:
    """The plan's source side: its feeds read from ``readers`` through the mapping."""
    return MappedSource(
        readers,
        plan.target,
        plan.primary,
        plan.contributing,
        plan.table,
        references,
        chunk_rows=chunk_rows,
    )


def _chain(first: SourceChunk, rest: Iterable[SourceChunk]) -> Iterable[SourceChunk]:
    yield first
    yield from rest


def _target_quarantined(
    conn: psycopg.Connection[Any], plan: _Plan, keys: Sequence[int], *, rule: str | None = None
) -> set[int]:
    """Those of ``keys`` with an open quarantine entry for this target (of ``rule``, if given)."""
    if not keys:
        return set()
    rows = conn.execute(
        "SELECT source_key FROM runeshift.quarantine WHERE source = %s AND source_table = %s "
        "AND target_table = %s AND resolved_at IS NULL AND source_key = ANY(%s) "
        "AND (%s::text IS NULL OR rule = %s::text)",
        (
            plan.primary.source,
            plan.primary.table,
            plan.target.table,
            [str(k) for k in keys],
            rule,
            rule,
        ),
    ).fetchall()
    conn.rollback()
    return {int(r[0]) for r in rows}


def _settle(
    settings: Settings,
    conn: psycopg.Connection[Any],
    compares: list[_TableCompare],
    options: ReconcileOptions,
) -> None:
    """Re-check every difference once the follower has passed a fresh snapshot."""
    live = {
        c.plan.primary.source
        for c in compares
        if c.result.differences and follower_position(conn, c.plan.primary.source)[1] == "sync"
    }
    for round_no in range(1, options.settle_rounds + 1):
        pending = [c for c in compares if c.result.differences and c.plan.primary.source in live]
        if not pending:
            return
        # Every feed's source: a contributing feed (repo.auth0_links filling accounts) is
        # re-read too, or the recheck would fail on a source it never opened.
        readers = _open_readers(
            settings, {f.source for c in pending for f in (c.plan.primary, *c.plan.contributing)}
        )
        try:
            for source, reader in readers.items():
                point = BinlogPoint.parse(reader.position.as_dict() if reader.position else None)
                if point is None:
                    continue
                wait_until_applied(conn, source, point, timeout=options.settle_timeout)
            # Loaded after the wait, so the reference checks see what the follower has
            # applied: with the first pass's ids, a review of a member who signed up during
            # the run was "quarantined (orphan)" on every round while the target had it.
            references = TargetReferences(conn)
            for compare in pending:
                _recheck(compare, readers, references, round_no)
        finally:
            _close(readers)


def _recheck(
    compare: _TableCompare,
    readers: dict[str, SnapshotReader],
    references: TargetReferences,
    round_no: int,
) -> None:
    old = compare.result.differences
    keys = [d.source_key for d in old]
    compare.source.readers = readers
    compare.source.references = references
    # Dedup is decided over the whole table, so it is planned again in the new snapshot:
    # a visit during the run changes which case-variant email may log in, and the first
    # pass's losers made both accounts of the pair differ on every round.
    compare.source.prepare()
    compare.result.dedup_losers |= compare.source.loser_keys()
    chunk = compare.source.rows_for_keys(keys)
    tk, td = target_side.digests_for_keys(compare.conn, compare.plan.table, keys)
    found = narrow(chunk.keys, chunk.digests, tk, td)
    still = set(found.missing) | set(found.extra) | set(found.changed)
    compare.result.settled += sum(1 for d in old if d.source_key not in still)
    compare.diff = found
    compare.source_rows.update(chunk.canonical_rows(found.missing + found.changed))
    for k in keys:
        compare.skipped_keys.pop(k, None)
    for k in chunk.excluded_keys:
        compare.skipped_keys[k] = "excluded by a mapping rule"
    for k, reason in chunk.quarantined.items():
        compare.skipped_keys[k] = f"quarantined by the mapping: {reason}"
    compare.classify()
    for d in compare.result.differences:
        d.rechecks = round_no


def run_reconcile(
    settings: Settings,
    options: ReconcileOptions | None = None,
    *,
    mappings: MappingSet | None = None,
    progress: ReconcileProgress | None = None,
) -> ReconcileReport:
    """Compare every mapped table (or those named) with the source read through the mapping.

    With ``options.keys`` each table compares only its listed source keys (dedup is still
    planned over the whole table); ``expected_rows`` then counts the listed keys the source has.
    With ``options.keyed_losers`` too, the keys of that plan's dedup losers are compared as
    well. Each table's ``dedup_losers`` holds the losers its plans found (a table with no
    listed key is not planned and has none).
    """
    options = options or ReconcileOptions()
    if options.sample is not None and not 0 < options.sample <= 1:
        raise ConfigError(f"--sample must be a fraction in (0, 1], got {options.sample}")
    mappings = mappings or load_mappings()
    pg_url = settings.require("postgres_url")
    started = datetime.now(UTC)
    # The connections are closed on every path, errors before the compare included
    # (a leaked connection is a ResourceWarning, and an error in the suite).
    with contextlib.ExitStack() as owned:
        conn = owned.enter_context(contextlib.closing(pg_connect(pg_url)))
        side_conn = owned.enter_context(contextlib.closing(pg_connect(pg_url)))
        return _run(settings, options, mappings, progress, conn, side_conn, started)


def _run(
    settings: Settings,
    options: ReconcileOptions,
    mappings: MappingSet,
    progress: ReconcileProgress | None,
    conn: psycopg.Connection[Any],
    side_conn: psycopg.Connection[Any],
    started: datetime,
) -> ReconcileReport:
    args = {
        "tables": list(options.tables),
        "sample": options.sample,
        "fail_on": options.thresholds.as_dict(),
        "settle_timeout": options.settle_timeout,
    }
    if options.keys is not None:
        args["keys"] = {t: len(k) for t, k in options.keys.items()}
        if options.keyed_losers:
            args["keyed_losers"] = True
    run_id = control_store.start_run(conn, "reconcile", args, mappings.checksum)
    conn.commit()
    lsn_start = target_side.server_lsn(conn)
    plans = _plans(conn, mappings, options.tables)
    conn.rollback()
    follower = {
        s: control_store.get_position(conn, s) or {} for s in {p.primary.source for p in plans}
    }
    conn.rollback()
    status = "failed"
    results: list[TableResult] = []
    readers: dict[str, SnapshotReader] = {}
    workers = RangeWorkers(options.workers)
    try:
        sources = {f.source for p in plans for f in (p.primary, *p.contributing)}
        readers = _open_readers(settings, sources)
        positions = {s: r.position.as_dict() if r.position else {} for s, r in readers.items()}
        references = TargetReferences(conn)
        compares = []
        for plan in plans:
            began = time.monotonic()
            if progress:
                progress.table_started(plan.target.table)
            source = _mapped_source(readers, plan, references, options.chunk_rows)
            keys = None if options.keys is None else options.keys.get(plan.target.table, ())
            ranges = None
            if keys is None and options.sample is None:
                ranges = key_ranges(
                    readers[plan.primary.source],
                    plan.primary,
                    options.workers,
                    options.parallel_min_rows,
                )
            # A table with no key to compare is not planned: the dedup plan reads it whole.
            if keys is None or keys:
                contributed = [
                    (n, k) for n, k in plan.table.columns if n not in source.primary_columns
                ]
                source.contributed_defaults = target_side.canonical_defaults(
                    conn, plan.target.table, contributed
                )
                conn.rollback()
                source.plan_dedup()
                if ranges is None:  # else once the workers are started (RangeWorkers.compare)
                    source.map_contributing()
            compare = _TableCompare(plan, source, conn, side_conn)
            compare.result.dedup_losers = source.loser_keys()
            if keys is not None:
                if options.keyed_losers:
                    keys = sorted({*keys, *compare.result.dedup_losers})
                compare.keyed(keys)
            elif options.sample is not None:
                compare.sampled(options.sample, options.chunk_rows or 2000)
            elif ranges is not None:
                workers.compare(compare, settings, ranges, chunk_rows=options.chunk_rows)
            else:
                compare.full()
            compare.classify()
            conn.rollback()
            compare.result.seconds = time.monotonic() - began
            compares.append(compare)
            results.append(compare.result)
            if progress:
                progress.table_finished(plan.target.table, compare.result)
        workers.close()
        _close(readers)
        readers = {}
        _settle(settings, conn, compares, options)
        for r in results:
            if len(r.differences) > MAX_REPORTED_ROWS:
                r.differences = r.differences[:MAX_REPORTED_ROWS]
        quality = run_quality_suites(settings.require("postgres_url")) if options.quality else []
        conn.rollback()
        finished = datetime.now(UTC)
        report = ReconcileReport(
            Provenance(
                run_id=run_id,
                tool_version=__version__,
                mapping_checksum=mappings.checksum,
                source_positions=positions,
                follower_positions=follower,
                target_lsn_start=lsn_start,
                target_lsn_end=target_side.server_lsn(conn),
                started_at=started.isoformat(),
                finished_at=finished.isoformat(),
                invoked_by=control_store._who(),
                host=socket.gethostname(),
                arguments=args,
            ),
            options.thresholds,
            results,
            quality,
            options.sample,
        )
        conn.rollback()
        status = "succeeded"
    finally:
        workers.close()
        _close(readers)
        conn.rollback()
        summary = {"tables": [r.as_dict() for r in results]} if status == "succeeded" else {}
        if status == "succeeded":
            summary = {k: v for k, v in report.as_dict().items() if k != "tables"}
            summary["tables"] = [
                {k: v for k, v in t.as_dict().items() if k != "differences"} for t in results
            ]
        control_store.finish_run(conn, run_id, status, summary)
        conn.close()
        side_conn.close()
    return report
