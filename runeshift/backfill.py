"""The backfill: snapshot both legacy databases and load them into Rune.

This module is the one place that wires the components together: the
snapshot readers (extract), the staging store, the mapping engine
(transform) and the COPY writer and control store (load). Per chunk the
order is: read -> stage as Parquet -> map -> one Postgres transaction holding
the chunk's rows, its quarantined rows, its exclusion counts (with the keys
they count, which the catch-up continues), the ids its ``on_missing: null``
references wanted and did not find (``runeshift.unresolved_references``, which
the rows' referenced tables resolve when written, see :func:`write_chunk`) and
its checkpoint. A crash loses at most the chunk in flight; the next run resumes
after the last committed checkpoint and ends identical to an uninterrupted
run, and a rerun of a finished backfill rewrites nothing (the writer only
touches rows whose values differ).
"""

from __future__ import annotations

import contextlib
import queue
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
import psycopg
import pyarrow as pa
import pyarrow.compute as pc
from psycopg import sql

from extract.snapshot_reader import BinlogPosition, SnapshotReader
from load import copy_writer
from load.index_builds import finish_bulk_load, prove_foreign_keys
from load.schema_revision import database_revision, shipped_head
from load.staging_store import open_staging, parquet_bytes, put_json
from runeshift import control_store
from runeshift.connections import parse_mysql_url, pg_connect
from runeshift.errors import ConfigError, FatalError
from runeshift.settings import Settings
from transform.id_set import IdSet
from transform.mapping_dedup import plan_dedup
from transform.mapping_engine import (
    MappedBatch,
    QuarantinedRow,
    excluded_rules,
    map_batch,
    source_key_array,
)
from transform.mapping_loader import load_mappings
from transform.mapping_spec import Feed, MappingSet, TargetMapping, unique_by_construction

if TYPE_CHECKING:
    from runeshift.store_backfill import StoreRecords

BACKFILL_LOCK = 0x52554E45_0001  # pg advisory lock key: one backfill at a time


class BackfillProgress(Protocol):
    def table_started(self, name: str, total_rows: int) -> None: ...
    def advanced(self, name: str, rows: int) -> None: ...
    def table_finished(self, name: str) -> None: ...


@dataclass
class TableSummary:
    source: str
    target: str
    read: int = 0
    migrated: int = 0
    excluded: int = 0
    quarantined: int = 0
    seconds: float = 0.0
    notes: Counter[str] = field(default_factory=Counter)
    dedup_decisions: list[tuple[str, str, str, str]] = field(default_factory=list)

    def absorb(self, mapped: MappedBatch, quarantined: int) -> None:
        """Count one committed chunk."""
        excluded = sum(mapped.excluded.values())
        self.read += mapped.read
        self.excluded += excluded
        self.quarantined += quarantined
        self.migrated += mapped.read - excluded - quarantined
        self.notes.update(mapped.notes)

    @property
    def rows_per_second(self) -> float:
        return self.read / self.seconds if self.seconds > 0 else 0.0

    @property
    def balanced(self) -> bool:
        return self.read == self.migrated + self.excluded + self.quarantined

    def as_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "target": self.target,
            "read": self.read,
            "migrated": self.migrated,
            "excluded": self.excluded,
            "quarantined": self.quarantined,
            "seconds": round(self.seconds, 3),
            "rows_per_second": round(self.rows_per_second, 1),
            "balanced": self.balanced,
            "notes": dict(self.notes),
            "dedup_decisions": [
                {"value_hash": _mask(v), "winner": w, "loser": lo, "action": a}
                for v, w, lo, a in self.dedup_decisions
            ],
        }


def _mask(value: str) -> str:
    """Contested values are emails: reports show a short hash, never the address."""
    import hashlib

    return hashlib.sha256(value.encode()).hexdigest()[:12]


@dataclass
class BackfillResult:
    backfill_id: str
    run_id: str
    resumed: bool
    positions: dict[str, dict[str, Any]]
    staging: str
    excluded_tables: list[dict[str, str]]
    tables: list[TableSummary]
    mapping_checksum: str
    store: dict[str, Any] | None = None  # the store's identity merge and license links

    @property
    def balanced(self) -> bool:
        return all(t.balanced for t in self.tables)

    def as_dict(self) -> dict[str, Any]:
        extra = {"store": self.store} if self.store is not None else {}
        return {
            **extra,
            "backfill_id": self.backfill_id,
            "run_id": self.run_id,
            "resumed": self.resumed,
            "positions": self.positions,
            "staging": self.staging,
            "mapping_checksum": self.mapping_checksum,
            "excluded_tables": self.excluded_tables,
            "tables": [t.as_dict() for t in self.tables],
            "balanced": self.balanced,
        }


def database_from_url(url: str, setting: str) -> str:
    name = parse_mysql_url(url).database
    if not name:
        raise ConfigError(
            f"setting '{setting}' must name the database, e.g. mysql://user:pw@host:3306/{setting.split('_')[0]}"
        )
    return name


def select_feeds(
    mappings: MappingSet, tables: Iterable[str] | None
) -> list[tuple[TargetMapping, Feed]]:
    wanted = {t.strip() for t in tables or () if t.strip()}
    picked: list[tuple[TargetMapping, Feed]] = []
    matched: set[str] = set()
    for target in mappings.targets:
        for feed in target.feeds:
            names = {target.table, target.table.split(".")[-1], feed.qualified, feed.table}
            hit = names & wanted
            if not wanted or hit:
                picked.append((target, feed))
                matched |= hit
    unknown = wanted - matched
    if unknown:
        raise ConfigError(
            f"--tables names {', '.join(sorted(unknown))}, which no mapping covers; "
            f"use target tables ({', '.join(t.table for t in mappings.targets)}) or source tables (repo.licenses)"
        )
    return picked


def _uuid_texts(conn: psycopg.Connection[Any], table: str) -> pa.Array:
    """Every uuid id of ``table`` as text, sent as one string and cut up in place (a
    Python string per id cost 0.25 s per 100k)."""
    row = conn.execute(f"SELECT coalesce(string_agg(id::text, ''), '') FROM {table}").fetchone()
    joined = str(row[0]) if row else ""
    data = joined.encode("ascii")
    count = len(data) // 36
    offsets = np.arange(0, 36 * (count + 1), 36, dtype=np.int32)
    return pa.StringArray.from_buffers(count, pa.py_buffer(offsets.tobytes()), pa.py_buffer(data))


class TargetReferences:
    """Which ids exist in each referenced target table (loaded once per table per run)."""

    def __init__(self, conn: psycopg.Connection[Any]) -> None:
        self._conn = conn
        self._ids: dict[str, IdSet] = {}
        self._maps: dict[tuple[str, str, str], dict[str, str]] = {}

    def invalidate(self, table: str) -> None:
        self._ids.pop(table, None)
        for key in [k for k in self._maps if k[0] == table]:
            del self._maps[key]

    def lookup(self, table: str, match_on: str, take: str, values: pa.Array) -> pa.Array:
        """``take`` (as text) of the ``table`` row whose ``match_on`` equals each value; else null."""
        key = (table, match_on, take)
        if key not in self._maps:
            schema, _, name = table.partition(".")
            rows = self._conn.execute(
                sql.SQL("SELECT {}::text, {}::text FROM {} WHERE {} IS NOT NULL").format(
                    sql.Identifier(match_on),
                    sql.Identifier(take),
                    sql.Identifier(schema, name),
                    sql.Identifier(match_on),
                )
            ).fetchall()
            self._maps[key] = {str(r[0]): r[1] for r in rows}
        found = self._maps[key]
        texts = pc.cast(values, pa.string()).to_pylist()
        return pa.array([None if t is None else found.get(t) for t in texts], pa.string())

    def __call__(self, table: str, values: pa.Array) -> pa.Array:
        if table not in self._ids:
            schema, _, name = table.partition(".")
            kind = self._conn.execute(
                "SELECT data_type FROM information_schema.columns WHERE table_schema = %s AND table_name = %s "
                "AND column_name = 'id'",
                (schema, name),
            ).fetchone()
            if kind and kind[0] == "uuid":
                self._ids[table] = IdSet(_uuid_texts(self._conn, table))
            else:
                rows = self._conn.execute(f"SELECT id FROM {table}").fetchall()
                self._ids[table] = IdSet(pa.array([r[0] for r in rows]))
        ids = self._ids[table]
        if len(ids) == 0:
            return pa.array([False] * len(values))
        return ids.contains(values)


def run_backfill(
    settings: Settings,
    *,
    tables: Iterable[str] | None = None,
    progress: BackfillProgress | None = None,
    chunk_rows: int | None = None,
    stop_after_chunks: int | None = None,
    mappings: MappingSet | None = None,
    store_records: StoreRecords | None = None,
) -> BackfillResult:
    """Backfill the mapped tables (all, or those named in ``tables``); resumes an unfinished run.

    ``stop_after_chunks`` ends the run early after that many committed chunks (for
    tests and operators who want to backfill in slices); the run stays resumable.
    The store's tables (``shopify.*`` feeds) are loaded after the legacy ones when
    ``store_records`` is given (e.g. CSV exports) or ``shopify_base_url`` is set
    (the Admin API); otherwise they are left out of the run.
    """
    # Arrow's default pool (mimalloc) keeps freed chunk buffers; the system allocator
    # returns them, which keeps peak RSS flat (about 60 MB less at 250k rows, same speed).
    pa.set_memory_pool(pa.system_memory_pool())
    mappings = mappings or load_mappings()
    pg_url = settings.require("postgres_url")
    conn = _open_target(pg_url)
    deferred_fk = copy_writer.defer_foreign_key_checks(conn)
    conn.autocommit = False
    selected = select_feeds(mappings, tables)
    backfill_id = control_store.unfinished_backfill(conn)
    resumed = backfill_id is not None
    conn.commit()
    backfill_id = backfill_id or time.strftime("bf-%Y%m%dT%H%M%S-") + uuid.uuid4().hex[:6]
    run_id = control_store.start_run(
        conn,
        "backfill",
        {"backfill_id": backfill_id, "tables": sorted(tables or [])},
        mappings.checksum,
    )
    staging = open_staging(settings.staging, endpoint_url=settings.s3_endpoint_url)
    store_report: dict[str, Any] | None = None
    readers: dict[str, SnapshotReader] = {}
    positions: dict[str, dict[str, Any]] = {}
    summaries: list[TableSummary] = []
    status = "failed"
    try:
        store_feeds = [(t, f) for t, f in selected if f.source == "shopify"]
        selected = [(t, f) for t, f in selected if f.source != "shopify"]
        for source, setting in (("forums", "forums_url"), ("repo", "repo_url")):
            if not any(f.source == source for _, f in selected):
                continue
            url = settings.require(setting)
            reader = SnapshotReader(url, database_from_url(url, setting))
            position = reader.open()
            readers[source] = reader
            positions[source] = _keep_first_position(conn, source, position, resumed=resumed)
        loading = {t.table for t, f in selected if f.primary}
        for table in control_store.deferred_indexes(conn):
            if table not in loading:
                _build_deferred_indexes(conn, table, helper_url=pg_url)
        references = TargetReferences(conn)
        budget = [stop_after_chunks]
        for target, feed in selected:
            summary = _backfill_feed(
                conn,
                readers[feed.source],
                staging,
                target,
                feed,
                backfill_id=backfill_id,
                run_id=run_id,
                resumed=resumed,
                references=references,
                progress=progress,
                chunk_rows=chunk_rows,
                budget=budget,
                pg_url=pg_url,
                check_foreign_keys=deferred_fk,
            )
            summaries.append(summary)
            references.invalidate(target.table)
            if budget[0] is not None and budget[0] <= 0:
                status = "interrupted"
                break
        else:
            status = "succeeded"
        if status == "succeeded" and store_feeds:
            if store_records is None and settings.shopify_base_url:
                from runeshift.store_backfill import ApiStoreRecords

                store_records = ApiStoreRecords.from_settings(settings)
            if store_records is not None:
                from runeshift.store_backfill import run_store_backfill

                store = run_store_backfill(
                    conn,
                    store_records,
                    staging,
                    store_feeds,
                    backfill_id=backfill_id,
                    run_id=run_id,
                    references=references,
                    progress=progress,
                    chunk_rows=chunk_rows,
                    budget=budget,
                )
                summaries.extend(store.tables)
                positions.update(store.positions)
                store_report = store.as_dict()
                del store_report["tables"]
                if store.interrupted:
                    status = "interrupted"
        manifest = {
            "backfill_id": backfill_id,
            "mapping_checksum": mappings.checksum,
            "positions": positions,
            "tables": [s.as_dict() for s in summaries],
        }
        put_json(staging, f"{backfill_id}/manifest.json", manifest)
    finally:
        for reader in readers.values():
            reader.close()
        conn.rollback()
        result = BackfillResult(
            backfill_id,
            run_id,
            resumed,
            positions,
            staging.location,
            [
                {"table": f"{e.source}.{e.table}", "reason": e.reason}
                for e in mappings.excluded_tables
            ],
            summaries,
            mappings.checksum,
            store_report,
        )
        control_store.finish_run(conn, run_id, status, result.as_dict())
        conn.close()
    return result


def _open_target(pg_url: str) -> psycopg.Connection[Any]:
    """The backfill's connection, its schema at the shipped head and the backfill lock held."""
    conn = pg_connect(pg_url)
    try:
        conn.autocommit = True
        at = database_revision(conn)
        if at != shipped_head():
            raise ConfigError(
                f"the target schema is at {at or 'nothing'}, not {shipped_head()}; "
                "run 'runeshift schema upgrade'"
            )
        got = conn.execute("SELECT pg_try_advisory_lock(%s)", (BACKFILL_LOCK,)).fetchone()
        if not got or not got[0]:
            raise FatalError(
                "another backfill holds the backfill lock on this target; wait for it or stop it"
            )
    except BaseException:
        conn.close()
        raise
    return conn


def _keep_first_position(
    conn: psycopg.Connection[Any], source: str, position: BinlogPosition, *, resumed: bool
) -> dict[str, Any]:
    """A resumed backfill keeps the position of its first snapshot (see snapshot_reader)."""
    existing = control_store.get_position(conn, source) if resumed else None
    if existing is not None:
        conn.commit()
        return existing
    control_store.set_position(conn, source, "binlog", position.as_dict(), "backfill")
    conn.commit()
    return position.as_dict()


def _backfill_feed(
    conn: psycopg.Connection[Any],
    reader: SnapshotReader,
    staging: Any,
    target: TargetMapping,
    feed: Feed,
    *,
    backfill_id: str,
    run_id: str,
    resumed: bool,
    references: TargetReferences,
    progress: BackfillProgress | None,
    chunk_rows: int | None,
    budget: list[int | None],
    pg_url: str,
    check_foreign_keys: bool,
) -> TableSummary:
    """Load one feed; then build the table's deferred indexes (when every chunk is in) and
    prove its foreign keys (``check_foreign_keys``: they were not checked row by row)."""
    started = time.monotonic()
    table = reader.tables.get(feed.table)
    if table is None:
        raise ConfigError(
            f"{feed.where}: source table {feed.qualified} does not exist; run 'runeshift mappings check'"
        )
    try:
        columns = [table.column(c) for c in feed.used_columns()]
    except KeyError as exc:
        raise ConfigError(
            f"{feed.where}: {feed.qualified} has no column {exc}; run 'runeshift mappings check'"
        ) from None
    name = f"{feed.qualified} -> {target.table}"
    summary = TableSummary(feed.qualified, target.table)
    done = control_store.chunk_progress(conn, backfill_id, feed.source, feed.table)
    if done.chunks == 0:
        control_store.reset_exclusions(conn, feed.source, feed.table, target.table)
        control_store.forget_excluded_keys(
            conn, source=feed.source, source_table=feed.table, target_table=target.table
        )
    summary.read, summary.migrated = done.read, done.migrated
    summary.excluded, summary.quarantined = done.excluded, done.quarantined
    losers: dict[str, frozenset[str]] = {}
    for rule in feed.dedup:
        needed = [table.column(c) for c in feed.used_columns()]
        whole = pa.Table.from_batches(
            [c.batch for c in reader.chunks(table, needed, chunk_rows=chunk_rows)]
        )
        outcome = plan_dedup(target, feed, rule, whole)
        losers[rule.rule] = outcome.losers
        summary.dedup_decisions.extend(outcome.decisions)
        control_store.replace_dedup_decisions(conn, feed.qualified, rule.rule, outcome.decisions)
    conn.commit()
    if progress:
        progress.table_started(name, reader.count(feed.table))
        progress.advanced(name, done.read)
    reasons = {f.rule: f.reason for f in feed.exclude_rows}
    # Load every id set and lookup map now: the writer thread owns the connection once
    # the threads start, so nothing may query it lazily from the mapping thread.
    for column_rule in feed.columns:
        ref = column_rule.reference
        if ref is not None and ref.match_on is None:
            references(ref.table, pa.array([], pa.string()))
        elif ref is not None and ref.match_on is not None:
            references.lookup(ref.table, ref.match_on, ref.take, pa.array([], pa.string()))
    encoder = copy_writer.BinaryCopyEncoder.for_table(conn, target.table) if feed.primary else None
    if feed.primary and done.chunks == 0:
        _defer_indexes_if_empty(
            conn, target.table, backfill_id, unique_by_construction(target, feed)
        )
    # Rows of a load whose key constraints are deferred cannot exist yet (decision 0008).
    fresh = feed.primary and target.table in control_store.tables_missing_keys(conn)
    conn.commit()
    chunk_no = done.chunks
    after = tuple(done.last_key) if done.last_key is not None else None

    # Three stages overlap: a reader thread fetches chunk n+1 while this thread stages
    # and maps chunk n and a writer thread COPYs and commits chunk n-1. The queues are
    # small, so memory stays bounded by a handful of chunks. Commit order is chunk order.
    raw_chunks: queue.Queue[Any] = queue.Queue(maxsize=1)
    to_write: queue.Queue[Any] = queue.Queue(maxsize=1)
    stop = threading.Event()  # read no further (the chunk budget is spent, or a failure)
    abort = threading.Event()  # and write nothing more either (a failure)
    failures: list[BaseException] = []

    def read() -> None:
        try:
            number = chunk_no
            for chunk in reader.chunks(table, columns, after=after, chunk_rows=chunk_rows):
                if stop.is_set():
                    break
                number += 1
                path = f"{backfill_id}/{feed.source}/{feed.table}/chunk-{number:06d}.parquet"
                data, checksum = parquet_bytes(chunk.batch)
                staging.put(path, data)
                del data
                raw_chunks.put((chunk, path, checksum))
                del chunk  # while waiting for the next rows, hold no chunk
        except BaseException as exc:
            failures.append(exc)
        finally:
            raw_chunks.put(None)

    def write() -> None:
        try:
            while (item := to_write.get()) is not None:
                if abort.is_set():
                    continue
                number, lower, upper, mapped, encoded, excluded, checksum, path = item
                item = None
                _commit_chunk(
                    conn,
                    target,
                    feed,
                    mapped,
                    encoded,
                    reasons,
                    excluded,
                    backfill_id=backfill_id,
                    run_id=run_id,
                    chunk_no=number,
                    lower_key=lower,
                    upper_key=upper,
                    checksum=checksum,
                    staged_path=path,
                    fresh=fresh,
                )
                summary.absorb(mapped, len(mapped.quarantined))
                if progress:
                    progress.advanced(name, mapped.read)
                del mapped, encoded  # a committed chunk is garbage before the next arrives
        except BaseException as exc:
            failures.append(exc)
            abort.set()
            stop.set()

    reader_thread = threading.Thread(target=read, name=f"read {feed.qualified}", daemon=True)
    writer_thread = threading.Thread(target=write, name=f"write {target.table}", daemon=True)
    reader_thread.start()
    writer_thread.start()
    try:
        while (item := raw_chunks.get()) is not None:
            if stop.is_set() or (budget[0] is not None and budget[0] <= 0):
                stop.set()
                continue
            chunk, path, checksum = item
            chunk_no += 1
            mapped = map_batch(
                target, feed, chunk.batch, references=references, dedup_losers=losers
            )
            encoded = encoder.encode(mapped.rows) if encoder is not None else None
            excluded = _excluded_keys(feed, chunk.batch) if mapped.excluded else None
            # Only what the writer needs travels (not the raw batch), and this thread
            # drops its references before waiting, so at most one chunk per stage lives.
            item = None
            to_write.put(
                (
                    chunk_no,
                    list(after) if after else None,
                    chunk.last_key,
                    mapped,
                    encoded,
                    excluded,
                    checksum,
                    path,
                )
            )
            after = chunk.last_key
            del chunk, mapped, encoded, excluded
            if budget[0] is not None:
                budget[0] -= 1
    except BaseException:
        abort.set()
        stop.set()
        raise
    finally:
        while reader_thread.is_alive():
            with contextlib.suppress(queue.Empty):
                raw_chunks.get(timeout=0.1)
        to_write.put(None)
        writer_thread.join()
    if failures:
        raise failures[0]
    if not stop.is_set():  # every chunk is in: build what was deferred
        _build_deferred_indexes(
            conn, target.table, helper_url=pg_url, check_foreign_keys=check_foreign_keys
        )
    elif check_foreign_keys:
        prove_foreign_keys(conn, target.table)
    if progress:
        progress.table_finished(name)
    summary.seconds = time.monotonic() - started
    return summary


def _defer_indexes_if_empty(
    conn: psycopg.Connection[Any], table: str, backfill_id: str, unique_columns: frozenset[str]
) -> None:
    """Drop ``table``'s plain indexes when the load starts into an empty table; build them at the end.

    Maintaining random-uuid B-trees row by row cost the server about 3 CPU s per 250k
    licenses; one sorted build after the load costs a fraction. The drop and the record
    of what to rebuild commit together, so a crash leaves the definitions in
    ``runeshift.runs`` and the next backfill builds them when that table is complete.
    Unique indexes stay (the writer relies on them to reject duplicates as it loads),
    except key and unique constraints on ``unique_columns``, which the feed makes unique
    by construction (the primary key of ``rune.licenses``: another 3.6 CPU s per million).
    """
    if table in control_store.deferred_indexes(conn):
        return  # dropped by an earlier, interrupted run: still pending
    schema, _, name = table.partition(".")
    if conn.execute(
        sql.SQL("SELECT 1 FROM {} LIMIT 1").format(sql.Identifier(schema, name))
    ).fetchone():
        return
    indexes = copy_writer.deferrable_indexes(conn, table, unique_columns)
    if not indexes:
        return
    copy_writer.drop_indexes(conn, indexes)
    control_store.defer_indexes(
        conn, table, [control_store.DeferredIndex(i.name, i.create) for i in indexes], backfill_id
    )
    conn.commit()


def _build_deferred_indexes(
    conn: psycopg.Connection[Any],
    table: str,
    *,
    helper_url: str | None,
    check_foreign_keys: bool = False,
) -> None:
    """Build ``table``'s deferred indexes (and prove its foreign keys), two sessions at
    once (``load/index_builds.py``); then mark the indexes built. Each build commits on
    its own, so a crash keeps what was built and the next run builds the rest."""
    pending = control_store.deferred_indexes(conn).get(table, [])
    finish_bulk_load(
        conn,
        [(i.name, i.definition) for i in pending],
        helper_url=helper_url,
        check_foreign_keys_of=table if check_foreign_keys else None,
    )
    if pending:
        control_store.indexes_rebuilt(conn, table)
    conn.commit()


def _commit_chunk(
    conn: psycopg.Connection[Any],
    target: TargetMapping,
    feed: Feed,
    mapped: MappedBatch,
    encoded: copy_writer.EncodedRows | None,
    reasons: dict[str, str],
    excluded_keys: tuple[list[str], list[str]] | None,
    *,
    backfill_id: str,
    run_id: str,
    chunk_no: int,
    lower_key: list[Any] | None,
    upper_key: tuple[Any, ...],
    checksum: str,
    staged_path: str,
    fresh: bool = False,
) -> None:
    """One transaction: the chunk's rows, quarantined rows, exclusion counts and checkpoint.

    With the counts go the keys they count (``runeshift.excluded_keys``), so the catch-up
    knows which rows were counted and moves the counts as a fresh backfill's would.
    ``fresh``: see :func:`load.copy_writer.upsert_rows`.
    """
    quarantined = load_chunk(conn, target, feed, mapped, encoded, fresh=fresh)
    mapped.quarantined = quarantined
    control_store.quarantine_rows(
        conn,
        quarantined,
        run_id=run_id,
        source=feed.source,
        source_table=feed.table,
        target_table=target.table,
    )
    control_store.add_exclusions(
        conn,
        mapped.excluded,
        reasons,
        run_id=run_id,
        source=feed.source,
        source_table=feed.table,
        target_table=target.table,
    )
    if excluded_keys is not None:
        control_store.copy_excluded_keys(
            conn,
            *excluded_keys,
            source=feed.source,
            source_table=feed.table,
            target_table=target.table,
            backfill_id=backfill_id,
        )
    excluded = sum(mapped.excluded.values())
    control_store.record_chunk(
        conn,
        backfill_id=backfill_id,
        source=feed.source,
        table=feed.table,
        chunk_no=chunk_no,
        lower_key=lower_key,
        upper_key=list(upper_key),
        read=mapped.read,
        migrated=mapped.read - excluded - len(quarantined),
        excluded=excluded,
        quarantined=len(quarantined),
        checksum=checksum,
        staged_path=staged_path,
    )
    conn.commit()


def _excluded_keys(feed: Feed, batch: pa.RecordBatch) -> tuple[list[str], list[str]]:
    """The keys of the rows ``map_batch`` excluded from ``batch``, and the rule of each."""
    rules = excluded_rules(feed, batch)
    hit = pc.is_valid(rules)
    return (
        source_key_array(batch, feed.key).filter(hit).to_pylist(),
        rules.filter(hit).to_pylist(),
    )


def load_chunk(
    conn: psycopg.Connection[Any],
    target: TargetMapping,
    feed: Feed,
    mapped: MappedBatch,
    encoded: copy_writer.EncodedRows | None = None,
    *,
    fresh: bool = False,
) -> list[QuarantinedRow]:
    """Write the mapped rows; return every quarantined row (mapping's and target's rejects)."""
    return write_chunk(conn, target, feed, mapped, encoded, fresh=fresh).quarantined


@dataclass
class WrittenChunk:
    """What :func:`write_chunk` did beyond the rows: quarantine, and references it linked."""

    quarantined: list[QuarantinedRow]
    # (target table, column) -> rows whose NULL reference now names a row this chunk wrote
    resolved: control_store.Resolved = field(default_factory=dict)


def write_chunk(
    conn: psycopg.Connection[Any],
    target: TargetMapping,
    feed: Feed,
    mapped: MappedBatch,
    encoded: copy_writer.EncodedRows | None = None,
    *,
    fresh: bool = False,
) -> WrittenChunk:
    """Write the mapped rows, record the references stored NULL, link those naming these rows.

    ``runeshift.unresolved_references`` keeps what each row nulled by ``on_missing: null``
    wanted (see :func:`runeshift.control_store.record_unresolved`), and rows inserted into
    a table such a reference names link the rows that wanted them, as a fresh backfill
    would. The caller relinks what is matched on the columns set (``resolved``).
    """
    quarantined = list(mapped.quarantined)
    if mapped.rows.num_rows == 0:
        return WrittenChunk(quarantined)
    if feed.primary:
        rejected = copy_writer.upsert_rows(
            conn, target.table, mapped.rows, encoded=encoded, fresh=fresh
        )
        for r in rejected:
            key = mapped.source_keys[r.index].as_py()
            quarantined.append(
                QuarantinedRow(key, "rejected_by_target", r.reason, {"source_key": key})
            )
        landed = None
        if rejected:
            flags = [True] * mapped.rows.num_rows
            for r in rejected:
                flags[r.index] = False
            landed = pa.array(flags, pa.bool_())
        resolved = control_store.record_unresolved_of(conn, mapped, landed)
        for link, ids in control_store.resolve_unresolved_by(conn, mapped, landed).items():
            resolved.setdefault(link, []).extend(ids)
        return WrittenChunk(quarantined, resolved)
    present = copy_writer.update_columns(conn, target.table, mapped.rows)
    missing = pc.invert(present)
    for i, flag in enumerate(missing.to_pylist()):
        if flag:
            key = mapped.source_keys[i].as_py()
            quarantined.append(
                QuarantinedRow(
                    key,
                    "orphan",
                    f"orphan: no row in {target.table} for {feed.qualified} key {key}",
                    {"source_key": key},
                )
            )
    return WrittenChunk(quarantined, control_store.record_unresolved_of(conn, mapped, present))
