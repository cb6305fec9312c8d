"""Reads the source side of a reconciliation: legacy rows through the mapping.

The rows come from the snapshot reader exactly as the backfill reads them and
are mapped by ``map_batch`` with the same reference checks and dedup losers,
so the expected target row is what the backfill would have written. Each
chunk is rendered to canonical text and digested here; the rows the mapping
excludes or quarantines are accounted with their keys, not expected in the
target. Contributing feeds (``auth0_links`` filling an account's columns) are
mapped once per table and joined to the primary rows by id.
"""

from __future__ import annotations

import contextlib
import queue
import threading
from collections import Counter
from collections.abc import Callable, Generator, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from extract.snapshot_reader import SnapshotReader
from reconcile.canonical_text import Kind, canonical_array
from reconcile.row_digest import row_digests
from reconcile.target_side_reader import TargetTable
from runeshift.errors import ConfigError
from transform.mapping_dedup import plan_dedup
from transform.mapping_engine import map_batch
from transform.mapping_spec import Column, Feed, TargetMapping

KEY = "__key"
T = TypeVar("T")
References = Callable[[str, pa.Array], pa.Array]


@dataclass
class SourceChunk:
    """Expected target rows for source keys in (lower, upper]; upper None = open end."""

    lower: int | None
    upper: int | None
    keys: np.ndarray
    digests: np.ndarray
    rows: pa.Table  # __key + canonical text of every compared column
    read: int = 0
    excluded: Counter[str] = field(default_factory=Counter)
    excluded_keys: list[int] = field(default_factory=list)
    quarantined: dict[int, str] = field(default_factory=dict)

    def canonical_rows(self, keys: Sequence[int]) -> dict[int, list[str | None]]:
        if not keys:
            return {}
        mask = pc.is_in(self.rows.column(KEY), value_set=pa.array(list(keys), pa.int64()))
        picked = self.rows.filter(mask)
        names = [n for n in picked.column_names if n != KEY]
        columns = [picked.column(n).to_pylist() for n in names]
        out: dict[int, list[str | None]] = {}
        for i, key in enumerate(picked.column(KEY).to_pylist()):
            out[int(key)] = [col[i] for col in columns]
        return out


def key_column(target: TargetMapping, feed: Feed) -> str:
    """The target column holding the primary feed's source key (``legacy_license_id``)."""
    if len(feed.key) != 1:
        raise ConfigError(
            f"{feed.where}: reconciliation compares by a single integer source key; "
            f"{feed.qualified} has key {list(feed.key)}"
        )
    key = feed.key[0]
    rule = feed.id_rule or target.id_rule
    if isinstance(rule.expr, Column) and rule.expr.name == key:
        return "id"
    for r in feed.columns:
        if isinstance(r.expr, Column) and r.expr.name == key:
            return r.target
    raise ConfigError(
        f"{feed.where}: {target.table} has no column copied from {feed.qualified}.{key}; "
        "reconciliation needs one (e.g. 'legacy_id: id') to match rows by source key"
    )


def compared_columns(primary: Feed, contributing: Sequence[Feed]) -> list[str]:
    cols: dict[str, None] = {"id": None}
    for feed in (primary, *contributing):
        cols.update(dict.fromkeys(r.target for r in feed.columns))
    return list(cols)


def _read_ahead(chunks: Generator[T, None, None]) -> Iterator[T]:
    """``chunks``, the next one read by a thread while the caller works on this one.

    MariaDB finds and sends a chunk's rows while this process maps the previous chunk
    (the client library waits for the server without holding the GIL). At most one chunk
    waits; when the caller stops early, the thread stops after the chunk it is reading.
    """
    ready: queue.Queue[tuple[str, Any]] = queue.Queue(maxsize=1)
    stop = threading.Event()

    def read() -> None:
        try:
            for chunk in chunks:
                ready.put(("chunk", chunk))
                if stop.is_set():
                    return
            ready.put(("end", None))
        except BaseException as exc:
            ready.put(("error", exc))
        finally:
            chunks.close()  # its cursor, in the thread that used it

    thread = threading.Thread(target=read, name="reconcile read-ahead", daemon=True)
    thread.start()
    try:
        while True:
            kind, item = ready.get()
            if kind == "end":
                return
            if kind == "error":
                raise item
            yield item
    finally:
        stop.set()
        while thread.is_alive():  # let a blocked put finish so the thread sees the stop
            with contextlib.suppress(queue.Empty):
                ready.get(timeout=0.05)
        thread.join()


class MappedSource:
    """Expected rows of one target table, chunk by chunk in source-key order."""

    def __init__(
        self,
        readers: dict[str, SnapshotReader],
        target: TargetMapping,
        primary: Feed,
        contributing: Sequence[Feed],
        table: TargetTable,
        references: References,
        *,
        chunk_rows: int | None = None,
    ) -> None:
        self.readers = readers
        self.target = target
        self.primary = primary
        self.contributing = tuple(contributing)
        self.table = table
        self.references = references
        self.chunk_rows = chunk_rows
        self.kinds: dict[str, Kind] = dict(table.columns)
        self.losers: dict[str, frozenset[str]] = {}
        self.dedup_decisions = 0
        self._extra_columns: pa.Table | None = None
        self.contributed_defaults: dict[str, str] = {}

    def _source(self, feed: Feed) -> tuple[SnapshotReader, list[object]]:
        reader = self.readers[feed.source]
        table = reader.tables.get(feed.table)
        if table is None:
            raise ConfigError(
                f"{feed.where}: source table {feed.qualified} does not exist; run 'runeshift mappings check'"
            )
        return reader, [table.column(c) for c in feed.used_columns()]

    def prepare(self) -> None:
        """Dedup losers over the whole table and the contributing feeds' columns (as the backfill)."""
        self.plan_dedup()
        self.map_contributing()

    def plan_dedup(self) -> None:
        """The losers of each dedup rule, decided over the whole table as the backfill does."""
        reader, columns = self._source(self.primary)
        table = reader.tables[self.primary.table]
        self.losers, self.dedup_decisions = {}, 0  # planned again on a settle-window recheck
        for rule in self.primary.dedup:
            whole = pa.Table.from_batches(
                [c.batch for c in reader.chunks(table, columns, chunk_rows=self.chunk_rows)]  # type: ignore[arg-type]
            )
            outcome = plan_dedup(self.target, self.primary, rule, whole)
            self.losers[rule.rule] = outcome.losers
            self.dedup_decisions += len(outcome.decisions)

    def loser_keys(self) -> frozenset[int]:
        """The source keys any dedup rule made a loser in the last plan (``losers`` as ints)."""
        return frozenset(int(k) for losers in self.losers.values() for k in losers)

    def map_contributing(self) -> None:
        """Map the contributing feeds once; their columns are joined to each chunk by id."""
        joined: pa.Table | None = None
        for feed in self.contributing:
            parts = []
            f_reader, f_columns = self._source(feed)
            f_table = f_reader.tables[feed.table]
            for chunk in f_reader.chunks(f_table, f_columns, chunk_rows=self.chunk_rows):  # type: ignore[arg-type]
                mapped = map_batch(
                    self.target, feed, chunk.batch, references=self.references, raw_rows=False
                )
                cols = {"id": canonical_array(mapped.rows.column("id"), self.kinds["id"])}
                for r in feed.columns:
                    cols[r.target] = canonical_array(
                        mapped.rows.column(r.target), self.kinds[r.target]
                    )
                parts.append(pa.table(cols))
            if not parts:
                continue
            feed_table = pa.concat_tables(parts)
            joined = (
                feed_table
                if joined is None
                else joined.join(feed_table, keys="id", join_type="full outer")
            )
        self._extra_columns = joined

    def _expected(self, batch: pa.RecordBatch) -> tuple[pa.Table, SourceChunk]:
        mapped = map_batch(
            self.target,
            self.primary,
            batch,
            references=self.references,
            dedup_losers=self.losers,
            raw_rows=False,
        )
        all_keys = pc.cast(batch.column(self.primary.key[0]), pa.int64())
        mapped_keys = pc.cast(mapped.source_keys, pa.int64())
        quarantined = {int(q.source_key): q.reason for q in mapped.quarantined}
        gone = pc.invert(pc.is_in(all_keys, value_set=mapped_keys))
        excluded_keys = [
            int(k) for k in pc.filter(all_keys, gone).to_pylist() if int(k) not in quarantined
        ]
        cols: dict[str, pa.Array] = {KEY: mapped_keys}
        for name in self.primary_columns:
            cols[name] = canonical_array(mapped.rows.column(name), self.kinds[name])
        rows = pa.table(cols)
        if self._extra_columns is not None:
            rows = rows.join(self._extra_columns, keys="id", join_type="left outer")
            for name, default in self.contributed_defaults.items():
                i = rows.column_names.index(name)
                rows = rows.set_column(i, name, pc.fill_null(rows.column(name), default))
        for name in self.column_names:
            if name not in rows.column_names:
                rows = rows.append_column(name, pa.nulls(rows.num_rows, pa.string()))
        rows = rows.select([KEY, *self.column_names])
        info = SourceChunk(
            None,
            None,
            np.empty(0, np.int64),
            np.empty(0, np.int64),
            rows,
            read=mapped.read,
            excluded=Counter(mapped.excluded),
            excluded_keys=excluded_keys,
            quarantined=quarantined,
        )
        return rows, info

    @property
    def column_names(self) -> list[str]:
        return [name for name, _ in self.table.columns]

    @property
    def primary_columns(self) -> list[str]:
        return ["id", *(r.target for r in self.primary.columns)]

    def _finish(self, batch: pa.RecordBatch, lower: int | None, upper: int | None) -> SourceChunk:
        rows, info = self._expected(batch)
        combined = rows.combine_chunks()
        info.lower, info.upper = lower, upper
        info.keys = combined.column(KEY).to_numpy()
        info.digests = row_digests(
            [combined.column(n) for n in self.column_names],
            [self.kinds[n] for n in self.column_names],
        )
        info.rows = combined
        return info

    def chunks(self, after: int | None = None, until: int | None = None) -> Iterator[SourceChunk]:
        """The source rows with keys in (``after``, ``until``] in key order, chunk by chunk;
        the first chunk's range starts at ``after``, the last one's ends at ``until``
        (``None``: open)."""
        reader, columns = self._source(self.primary)
        table = reader.tables[self.primary.table]
        lower = after
        pending: tuple[pa.RecordBatch, int] | None = None
        raw = reader.chunks(
            table,
            columns,  # type: ignore[arg-type]
            after=None if after is None else (after,),
            until=None if until is None else (until,),
            chunk_rows=self.chunk_rows,
        )
        for chunk in _read_ahead(raw):
            if pending is not None:
                yield self._finish(pending[0], lower, pending[1])
                lower = pending[1]
            pending = (chunk.batch, int(chunk.last_key[0]))
        if pending is None:
            empty = pa.RecordBatch.from_pylist([], schema=self._empty_schema(columns))
            yield self._finish(empty, after, until)
            return
        yield self._finish(pending[0], lower, until)

    def _empty_schema(self, columns: Sequence[object]) -> pa.Schema:
        return pa.schema([(c.name, c.arrow_type) for c in columns])  # type: ignore[attr-defined]

    def window(self, after: int, rows: int) -> SourceChunk | None:
        """One chunk of up to ``rows`` rows with keys above ``after`` (for --sample)."""
        reader, columns = self._source(self.primary)
        table = reader.tables[self.primary.table]
        it = reader.chunks(table, columns, after=(after,), chunk_rows=rows)  # type: ignore[arg-type]
        try:
            chunk = next(it)
        except StopIteration:
            return None
        finally:
            it.close()
        return self._finish(chunk.batch, after, int(chunk.last_key[0]))

    def rows_for_keys(self, keys: Sequence[int]) -> SourceChunk:
        """The expected rows for exactly these source keys (a settle-window recheck)."""
        reader, columns = self._source(self.primary)
        table = reader.tables[self.primary.table]
        batch = reader.rows_with_keys(table, columns, keys)  # type: ignore[arg-type]
        if batch is None:
            batch = pa.RecordBatch.from_pylist([], schema=self._empty_schema(columns))
        return self._finish(batch, None, None)
