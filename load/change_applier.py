"""Apply net source changes to the Rune target so it equals what a fresh backfill would give.

Design note. The applier is handed, per source table, the *net* state of each changed key
over a batch of source transactions (its last row image, or "deleted") and writes, inside
the caller's open transaction, whatever makes the target rows of those keys equal to what
:func:`transform.mapping_engine.map_batch` gives for the current source, the same function
the backfill uses. The caller stores the binlog positions in that same transaction, so
state and data commit or vanish together; replaying a batch after a crash is harmless
because every write is idempotent (upsert by deterministic id, delete by id, set columns).

A source row can matter to target rows other than its own, and a fresh backfill would see
all of them. The applier re-derives those from the live source (:mod:`extract.binlog_source_lookup`):

- a primary row that appears (insert, or it stops being quarantined) pulls in its
  contributing rows (``auth0_links`` -> ``accounts.auth0_sub``) and its dependants: rows of
  other targets whose reference to it was an orphan (quarantined) or was set to NULL;
- a primary row that goes (delete, newly quarantined or excluded) first re-derives its
  dependants (they become orphans: removed and quarantined, or their reference is NULLed),
  then is deleted; its contributing rows become orphans in quarantine; if rows the source
  does not feed (a Shopify order) still reference it, it is kept, quarantined as
  ``delete_blocked``, and given its dedup rules' loser values so it contends for nothing;
- a key change (UPDATE of the primary key) is a delete of the old key and an upsert of the new;
- rows whose ``on_missing: null`` reference the re-derivation cannot reach (a row the
  store feeds, such as ``rune.products.script_id``, or a reference matched on a column,
  such as ``order_items.script_id`` on ``products.script_id``) are unlinked when the row
  they name goes, level by level, as a fresh backfill would store them, instead of the
  foreign key blocking the delete (an id link unlinked so is recorded as below). The
  other way round: every writer records in ``runeshift.unresolved_references`` the id
  a reference by id stored NULL (``on_missing: null``) wanted, since the row may not
  keep the source values it came from (``products.script_id`` comes from the product's
  variant SKUs). Rows written into the referenced table (a legacy script created after
  the product that sells it) link the rows that wanted them, in the same transaction,
  and the references matched on the linked column (``order_items.script_id`` on
  ``products.script_id``) are resolved again (:class:`NullLinkRelinker`);
- a contributing row that goes resets its columns to the column default, as if never set;
- a change that touches a contested dedup value (old or new) recomputes the winner of
  each touched group from the source and rewrites the group, losers first so the target's
  unique index never sees two winners;
- a row the target rejects (unique/check violation, often a transient state of the replay)
  is quarantined and retried from the current source row after 1, 2, 4 .. 64 batches.

Exclusion counts (``runeshift.exclusions``) move with the rows, in the same transaction: a
row an ``exclude_rows`` rule newly drops adds one to its rule, a counted row that stops
being excluded or is deleted takes one away, and a row applied again in the same state
(a replayed batch, a re-read) moves nothing. Which keys are counted is kept in
``runeshift.excluded_keys``: the backfill records every key it excluded with the counts,
and the applier keeps the record as it moves them. A table backfilled by a version that
recorded no keys while its rules dropped rows has its counts left alone (noted in the
stats) until it is backfilled again.

Re-reads can be newer than the stream position; later events for the same rows are still
in the stream, so the target converges (see :mod:`extract.binlog_source_lookup`).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import psycopg
import pyarrow as pa
import pyarrow.compute as pc
from psycopg import sql

from extract.binlog_row_decoder import RawRow, RowDecoder
from extract.binlog_source_lookup import SourceLookup
from load import copy_writer
from runeshift import control_store
from runeshift.errors import ConfigError
from transform.mapping_dedup import plan_dedup
from transform.mapping_engine import (
    MappedBatch,
    QuarantinedRow,
    _Evaluation,  # the one expression evaluator; mapping_dedup uses it the same way
    excluded_rules,
    map_batch,
    source_key_array,
)
from transform.mapping_spec import (
    Column,
    ColumnRule,
    Dedup,
    Feed,
    MappingSet,
    Reference,
    TargetMapping,
)

Key = tuple[bytes | None, ...]
_UNIQUE_VIOLATION = "duplicate key value violates unique constraint"
FeedId = tuple[str, str, str]  # (target table, source, source table)


@dataclass
class FeedChanges:
    """Net changes of one source table: the last row image per key, or its deletion."""

    upserts: dict[Key, RawRow] = field(default_factory=dict)
    deletes: dict[Key, RawRow] = field(default_factory=dict)  # key -> last known row image
    # key -> the row image an update started from (the first in the batch): its contested
    # values may name a dedup group the index no longer links to the key (see _dedup_groups)
    befores: dict[Key, RawRow] = field(default_factory=dict)

    def upsert(self, key: Key, row: RawRow, before: RawRow | None = None) -> None:
        self.deletes.pop(key, None)
        self.upserts[key] = row
        if before is not None:
            self.befores.setdefault(key, before)

    def delete(self, key: Key, row: RawRow) -> None:
        self.upserts.pop(key, None)
        self.deletes[key] = row

    def __len__(self) -> int:
        return len(self.upserts) + len(self.deletes)


@dataclass
class ApplyStats:
    upserted: int = 0
    deleted: int = 0
    quarantined: int = 0
    rederived: int = 0
    dedup_groups: int = 0
    notes: Counter[str] = field(default_factory=Counter)


def _id_rule(target: TargetMapping, feed: Feed) -> ColumnRule:
    return getattr(feed, "id_rule", None) or target.id_rule


def _key_text(key: Key) -> str:
    return "|".join("" if v is None else v.decode("utf-8", "surrogateescape") for v in key)


def _sql_value(raw: bytes | None) -> Any:
    if raw is None:
        return None
    text = raw.decode("utf-8", "surrogateescape")
    return int(text) if text.lstrip("-").isdigit() else raw


class _LiveReferences:
    """map_batch's reference check against the target as it stands inside this transaction.

    Ids scheduled for deletion in this batch count as missing, so dependants re-derived
    before their parent's delete see the parent as gone.
    """

    def __init__(self, conn: psycopg.Connection[Any], id_kinds: Mapping[str, str]) -> None:
        self._conn = conn
        self._kinds = id_kinds
        self.leaving: dict[str, set[str]] = {}

    def __call__(self, table: str, values: pa.Array) -> pa.Array:
        py = values.to_pylist()
        wanted = {str(v) for v in py if v is not None}
        present = existing_ids(self._conn, table, self._kinds[table], wanted)
        present -= self.leaving.get(table, set())
        return pa.array([None if v is None else str(v) in present for v in py], pa.bool_())


def _params(kind: str, ids: Iterable[str]) -> str:
    """Ids as one comma-separated text parameter for :func:`_id_array`.

    One text value instead of a Python list of ``UUID`` objects: building and dumping 20,000
    ``UUID``s cost more than the query that used them.
    """
    del kind  # the cast is in the SQL (_id_array)
    return ",".join(ids)


def _id_array(kind: str) -> sql.Composable:
    """The SQL array a :func:`_params` value stands for (``= ANY(...)``)."""
    return sql.SQL("string_to_array(%s, ',')::{}[]").format(
        sql.SQL("uuid" if kind == "uuid" else "bigint")
    )


def existing_ids(
    conn: psycopg.Connection[Any], table: str, kind: str, ids: Iterable[str]
) -> set[str]:
    """Which of ``ids`` (as text) are in ``table``."""
    wanted = list(ids)
    if not wanted:
        return set()
    rows = conn.execute(
        sql.SQL("SELECT id::text FROM {} WHERE id = ANY({})").format(
            _ident(table), _id_array(kind)
        ),
        (_params(kind, wanted),),
    ).fetchall()
    return {r[0] for r in rows}


def _ident(qualified: str) -> sql.Composable:
    schema, _, name = qualified.partition(".")
    return sql.Identifier(schema, name)


@dataclass(frozen=True)
class _Dependant:
    """A feed whose rows reference ``parent`` through ``column`` (a single source column)."""

    target: TargetMapping
    feed: Feed
    column: str
    target_column: str
    on_missing: str


@dataclass(frozen=True)
class _NullLink:
    """An ``on_missing: null`` reference that re-deriving dependants does not cover.

    Its rows come from a feed the binlog does not follow (``rune.products.script_id``,
    fed by the store) or are matched on a column (``order_items.script_id``, matched on
    ``products.script_id``), so they cannot be re-read from the legacy source by key.
    """

    table: str
    column: str
    reference: Reference


class TargetLookups:
    """Reference checks and lookups answered by the target for just the values asked (no cache).

    The backfill loads whole id sets once per run; a follower applies a few rows at a
    time for hours, so it asks for the values it has, inside its own transaction (it
    sees the rows it wrote a moment ago).
    """

    def __init__(self, conn: psycopg.Connection[Any]) -> None:
        self._conn = conn
        self._types: dict[tuple[str, str], str] = {}

    def column_type(self, table: str, column: str) -> str:
        """``format_type`` of a target column (for casts of values passed as text)."""
        if (table, column) not in self._types:
            schema, _, name = table.partition(".")
            row = self._conn.execute(
                "SELECT format_type(a.atttypid, a.atttypmod) FROM pg_attribute a "
                "WHERE a.attrelid = %s::regclass AND a.attname = %s",
                (f"{schema}.{name}", column),
            ).fetchone()
            if row is None:
                raise ConfigError(f"{table} has no column {column}; run 'runeshift schema upgrade'")
            self._types[(table, column)] = str(row[0])
        return self._types[(table, column)]

    def _fetch(self, table: str, match_on: str, take: str, texts: list[str]) -> dict[str, str]:
        if not texts:
            return {}
        schema, _, name = table.partition(".")
        query = sql.SQL(
            "SELECT {m}::text, {t}::text FROM {tbl} WHERE {m} = ANY(%s::{typ}[])"
        ).format(
            m=sql.Identifier(match_on),
            t=sql.Identifier(take),
            tbl=sql.Identifier(schema, name),
            typ=sql.SQL(self.column_type(table, match_on)),
        )
        return {str(r[0]): r[1] for r in self._conn.execute(query, (texts,)).fetchall()}

    def __call__(self, table: str, values: pa.Array) -> pa.Array:
        texts = [None if v is None else str(v) for v in values.to_pylist()]
        found = self._fetch(table, "id", "id", sorted({t for t in texts if t is not None}))
        return pa.array([t is not None and t in found for t in texts], pa.bool_())

    def lookup(self, table: str, match_on: str, take: str, values: pa.Array) -> pa.Array:
        texts = [None if v is None else str(v) for v in values.to_pylist()]
        wanted = sorted({t for t in texts if t is not None})
        found = self._fetch(table, match_on, take, wanted)
        return pa.array([None if t is None else found.get(t) for t in texts], pa.string())

    def invalidate(self, table: str) -> None:
        return None  # nothing cached


@dataclass(frozen=True)
class RelinkedColumn:
    """A store row's reference that is NULL while the row it names is missing.

    ``order_items.price_id`` is the price whose SKU is the line's (``on_missing: null``):
    a line that arrives before its variant is stored with NULL, and a fresh backfill run
    after the variant appeared would link it. The follower resolves such references again
    whenever the referenced table changes, from the row's own target columns that carry
    the reference's source inputs (``inputs``: source column -> target column, here
    ``sku`` -> ``sku``), so it needs neither the store nor the line's order.
    """

    table: str
    rule: ColumnRule
    reference: Reference
    inputs: tuple[tuple[str, str], ...]

    @property
    def column(self) -> str:
        return self.rule.target

    @property
    def matched_on(self) -> str:
        return self.reference.match_on or "id"


def relinked_columns(
    feeds: Sequence[tuple[TargetMapping, Feed]], *, matched_only: bool = False
) -> list[RelinkedColumn]:
    """The ``on_missing: null`` references between the targets of ``feeds``.

    ``matched_only`` keeps those matched on a column (``match_on``): the catch-up relinks
    them when a column they match on is set (:class:`NullLinkRelinker`).

    Raises:
        ConfigError: such a reference's source input is not kept as it is in a column of
            its row, so the follower could not resolve it again.
    """
    written = {target.table for target, _ in feeds}
    links: list[RelinkedColumn] = []
    for target, feed in feeds:
        for rule in feed.columns:
            ref = rule.reference
            if ref is None or ref.on_missing != "null" or ref.table not in written:
                continue
            if matched_only and ref.match_on is None:
                continue
            inputs = tuple(
                (name, _carrier(target, feed, rule, name))
                for name in dict.fromkeys(rule.expr.source_columns())
            )
            links.append(RelinkedColumn(target.table, rule, ref, inputs))
    return links


def _carrier(target: TargetMapping, feed: Feed, rule: ColumnRule, source_column: str) -> str:
    """The target column that holds ``source_column`` as it is (``sku: sku``)."""
    for other in feed.columns:
        if (
            isinstance(other.expr, Column)
            and other.expr.name == source_column
            and other.reference is None
            and other.if_null is None
        ):
            return other.target
    assert rule.reference is not None
    raise ConfigError(
        f"{rule.where}: {target.table}.{rule.target} references {rule.reference.table} with "
        f"on_missing null, but no column of {target.table} keeps its source column "
        f"{source_column} as it is; the Shopify follower resolves the reference again from the "
        f"row when {rule.reference.table} changes: map '{source_column}: {source_column}' to a "
        "column, or make the reference on_missing quarantine"
    )


class NullLinkRelinker:
    """Resolves again the ``on_missing: null`` references (:class:`RelinkedColumn`) to tables just changed.

    The store follower calls it after writing products (an order line's ``price_id``,
    matched on the variant's SKU), the catch-up after a legacy script appeared set
    ``products.script_id`` (the lines' ``script_id`` is matched on it). Works inside the
    caller's transaction.
    """

    def __init__(
        self,
        conn: psycopg.Connection[Any],
        links: Sequence[RelinkedColumn],
        references: TargetLookups,
    ) -> None:
        self.conn = conn
        self.links = list(links)
        self.references = references

    def relink(self, written: Mapping[str, pa.Table | None]) -> int:
        """Resolve again the references to tables just written (their rows) or deleted from (None).

        What a fresh backfill would link now: a line NULLed because its variant was
        missing gets the variant that appeared; a line pointing at a variant whose SKU
        changed, or at nothing any more, gets whatever its SKU names now (or NULL).
        """
        moved = 0
        for link in self.links:
            if link.reference.table not in written:
                continue
            rows = written[link.reference.table]
            take = link.reference.take
            touched = (
                [str(v) for v in rows.column(take).to_pylist() if v is not None]
                if rows is not None and take in rows.column_names
                else []
            )
            moved += self._relink_column(link, touched)
        return moved

    def _relink_column(self, link: RelinkedColumn, touched: list[str]) -> int:
        """One reference column: its unsure rows' inputs, evaluated and resolved, then set."""
        stale = self._unsure_condition(link, touched)
        inputs = self._distinct_inputs(link, stale)
        if not inputs:
            return 0
        batch = pa.record_batch(
            {
                source: pa.array([row[i] for row in inputs], pa.string())
                for i, (source, _) in enumerate(link.inputs)
            }
        )
        values, _errors = _Evaluation(batch).run(link.rule.expr, f"{link.table}.{link.column}")
        if link.rule.if_null is not None:
            values = pc.fill_null(values, pa.scalar(link.rule.if_null).cast(values.type))
        resolved = self._resolve(link.reference, values)
        return self._set_links(link, stale, inputs, resolved.to_pylist())

    def _unsure_condition(self, link: RelinkedColumn, touched: list[str]) -> sql.Composable:
        """Rows of ``link.table`` (alias ``d``) whose reference a change may have moved.

        NULL (its row may have appeared), pointing at a row just written (its match value
        may have changed), or pointing at nothing (the row it named is gone).
        """
        schema, _, name = link.reference.table.partition(".")
        return sql.SQL(
            "(d.{c} IS NULL OR d.{c}::text = ANY({touched}::text[]) OR NOT EXISTS "
            "(SELECT 1 FROM {parent} p WHERE p.{take} = d.{c}))"
        ).format(
            c=sql.Identifier(link.column),
            touched=sql.Literal(touched),
            parent=sql.Identifier(schema, name),
            take=sql.Identifier(link.reference.take),
        )

    def _distinct_inputs(
        self, link: RelinkedColumn, unsure: sql.Composable
    ) -> list[tuple[str | None, ...]]:
        schema, _, name = link.table.partition(".")
        query = sql.SQL("SELECT DISTINCT {cols} FROM {tbl} d WHERE {unsure}").format(
            cols=sql.SQL(", ").join(
                sql.SQL("d.{}::text").format(sql.Identifier(carrier)) for _, carrier in link.inputs
            ),
            tbl=sql.Identifier(schema, name),
            unsure=unsure,
        )
        return [tuple(row) for row in self.conn.execute(query).fetchall()]

    def _resolve(self, reference: Reference, values: pa.Array) -> pa.Array:
        """What ``map_batch`` stores for these values: the matched row's ``take``, else NULL."""
        if reference.match_on is not None:
            return self.references.lookup(
                reference.table, reference.match_on, reference.take, values
            )
        texts = pc.cast(values, pa.string())
        exists = pc.fill_null(self.references(reference.table, texts), False)
        return pc.if_else(exists, texts, pa.scalar(None, pa.string()))

    def _set_links(
        self,
        link: RelinkedColumn,
        unsure: sql.Composable,
        inputs: list[tuple[str | None, ...]],
        resolved: list[str | None],
    ) -> int:
        schema, _, name = link.table.partition(".")
        names = [f"i{i}" for i in range(len(link.inputs))]
        typ = sql.SQL(self.references.column_type(link.table, link.column))
        query = sql.SQL(
            "UPDATE {tbl} d SET {c} = v.resolved::{typ} "
            "FROM unnest({arrays}, %s::text[]) AS v({names}, resolved) "
            "WHERE {matches} AND {unsure} AND d.{c} IS DISTINCT FROM v.resolved::{typ}"
        ).format(
            tbl=sql.Identifier(schema, name),
            c=sql.Identifier(link.column),
            typ=typ,
            arrays=sql.SQL(", ").join(sql.SQL("%s::text[]") for _ in names),
            names=sql.SQL(", ").join(sql.Identifier(n) for n in names),
            matches=sql.SQL(" AND ").join(
                sql.SQL("d.{}::text IS NOT DISTINCT FROM v.{}").format(
                    sql.Identifier(carrier), sql.Identifier(n)
                )
                for (_, carrier), n in zip(link.inputs, names, strict=True)
            ),
            unsure=unsure,
        )
        columns = [[row[i] for row in inputs] for i in range(len(names))]
        return self.conn.execute(query, (*columns, resolved)).rowcount


class _DedupIndex:
    """Contested-value index of one dedup rule: key -> value, value -> keys, current losers."""

    def __init__(self) -> None:
        self.value_of: dict[str, str | None] = {}
        self.members: dict[str, set[str]] = {}
        self.losers: set[str] = set()

    def set(self, key: str, value: str | None) -> tuple[str | None, str | None]:
        old = self.value_of.get(key)
        if old is not None:
            self.members.get(old, set()).discard(key)
        if value is None:
            self.value_of.pop(key, None)
        else:
            self.value_of[key] = value
            self.members.setdefault(value, set()).add(key)
        return old, value


class ChangeApplier:
    """Applies :class:`FeedChanges` of mapped source tables to the target (see module doc)."""

    def __init__(
        self,
        conn: psycopg.Connection[Any],
        mappings: MappingSet,
        decoders: Mapping[tuple[str, str], RowDecoder],
        lookups: Mapping[str, SourceLookup],
        *,
        run_id: str | None,
    ) -> None:
        self.conn = conn
        self.mappings = mappings
        self.decoders = dict(decoders)
        self.lookups = dict(lookups)
        self.run_id = run_id
        self._order = {t.table: i for i, t in enumerate(mappings.targets)}
        self._id_kinds: dict[str, str] = {}
        self._defaults: dict[str, dict[str, str | None]] = {}
        self._dependants: dict[str, list[_Dependant]] = {}
        self._dedup: dict[tuple[FeedId, str], _DedupIndex] = {}
        self._before_values: dict[tuple[FeedId, str], set[str]] = {}
        self.refs = _LiveReferences(conn, self._id_kinds)
        # Rows a unique index rejected: retried with backoff (key -> (attempts, due batch)).
        self._retry: dict[FeedId, dict[Key, tuple[int, int]]] = {}
        self._batch_no = 0
        self._retry_attempts: dict[Key, int] = {}
        self.paused: set[tuple[str, str]] = set()
        self._counted: dict[FeedId, str | None] = {}  # the backfill whose counts a feed continues
        self._null_links: list[_NullLink] = []
        # References matched on a column (order_items.script_id on products.script_id):
        # relinked when that column is set because the row it names appeared.
        self._relinker = NullLinkRelinker(
            conn,
            relinked_columns(
                [(t, f) for t in mappings.targets for f in t.feeds], matched_only=True
            ),
            TargetLookups(conn),
        )
        for target in mappings.targets:
            for feed in target.feeds:
                for rule in feed.columns:
                    ref = rule.reference
                    cols = rule.expr.source_columns()
                    followed = (feed.source, feed.table) in self.decoders
                    if ref is None:
                        continue
                    if ref.on_missing == "null" and (
                        not followed or ref.match_on or len(cols) != 1
                    ):
                        self._null_links.append(_NullLink(target.table, rule.target, ref))
                    if len(cols) != 1 or ref.match_on or not followed:
                        continue  # not re-derivable from a binlog source (Shopify has its own follower)
                    self._dependants.setdefault(ref.table, []).append(
                        _Dependant(target, feed, cols[0], rule.target, ref.on_missing)
                    )

    # -- setup -----------------------------------------------------------------------------

    def prepare(self) -> None:
        """Read target column facts and build the dedup indexes from the live source."""
        tables = {t.table for t in self.mappings.targets}
        rows = self.conn.execute(
            "SELECT table_schema || '.' || table_name, column_name, data_type, column_default "
            "FROM information_schema.columns WHERE table_schema || '.' || table_name = ANY(%s)",
            (sorted(tables),),
        ).fetchall()
        for table, column, kind, default in rows:
            self._defaults.setdefault(table, {})[column] = default
            if column == "id":
                self._id_kinds[table] = "uuid" if kind == "uuid" else "int"
        for target in self.mappings.targets:
            for feed in target.feeds:
                if (feed.source, feed.table) not in self.decoders:
                    continue
                for rule in feed.dedup:
                    self._build_dedup(target, feed, rule)
        # Rows the target rejected earlier (maybe by an earlier follower) are retried too.
        for table, source, source_table, key in self.conn.execute(
            "SELECT target_table, source, source_table, source_key FROM runeshift.quarantine "
            "WHERE rule = 'rejected_by_target' AND resolved_at IS NULL AND reason LIKE %s",
            (f"%{_UNIQUE_VIOLATION}%",),
        ).fetchall():
            if (source, source_table) in self.decoders:
                self._retry.setdefault((table, source, source_table), {})[
                    tuple(part.encode() for part in key.split("|"))
                ] = (0, 0)

    def _feed_id(self, target: TargetMapping, feed: Feed) -> FeedId:
        return (target.table, feed.source, feed.table)

    def _decoder(self, feed: Feed) -> RowDecoder:
        return self.decoders[(feed.source, feed.table)]

    def _build_dedup(self, target: TargetMapping, feed: Feed, rule: Dedup) -> None:
        decoder = self._decoder(feed)
        rows = self.lookups[feed.source].all_rows(feed.table, decoder.names)
        index = _DedupIndex()
        batch = decoder.batch(rows)
        for key, value in zip(
            source_key_array(batch, feed.key).to_pylist(),
            _dedup_values(target, feed, rule, batch).to_pylist(),
            strict=True,
        ):
            index.set(key, value)
        index.losers = set(plan_dedup(target, feed, rule, pa.Table.from_batches([batch])).losers)
        self._dedup[(self._feed_id(target, feed), rule.rule)] = index

    # -- entry point -----------------------------------------------------------------------

    def apply(self, changes: Mapping[tuple[str, str], FeedChanges]) -> ApplyStats:
        """Apply net changes per (source, source table) inside the caller's transaction."""
        stats = ApplyStats()
        work: list[tuple[TargetMapping, Feed, FeedChanges]] = []
        for (source, table), net in changes.items():
            if not net or (source, table) in self.paused:
                continue
            for target, feed in self.mappings.feeds_from(source, table):
                work.append((target, feed, net))
        work.sort(key=lambda w: (self._order[w[0].table], not w[1].primary))
        self._before_values = {}
        for target, feed, net in work:
            if feed.primary and feed.dedup and (net.befores or net.deletes):
                images = [*net.befores.values(), *net.deletes.values()]
                batch = self._decoder(feed).batch(images)
                for rule in feed.dedup:
                    values = _dedup_values(target, feed, rule, batch).to_pylist()
                    self._before_values[(self._feed_id(target, feed), rule.rule)] = {
                        v for v in values if v is not None
                    }
        for target, feed, net in work:
            self._apply_feed(target, feed, dict(net.upserts), dict(net.deletes), stats, depth=0)
        self._before_values = {}
        self._retry_rejected(stats)
        self.refs.leaving.clear()
        return stats

    def unsettled_retries(self, attempts: int = 3) -> int:
        """Rejected rows not yet retried ``attempts`` times (caught-up waits for them)."""
        return sum(1 for e in self._retry.values() for n, _ in e.values() if n < attempts)

    def _retry_rejected(self, stats: ApplyStats) -> None:
        """Re-apply rejected rows from the current source after everything else in the batch.

        A unique-index rejection is usually a stale row elsewhere in the target whose fix is
        still ahead in the stream; so rejected rows stay on the list (and in quarantine) and
        are tried again after every batch until they land or their source row is gone.
        """
        self._batch_no += 1
        due: dict[FeedId, list[Key]] = {}
        for fid, entries in self._retry.items():
            for key, (_attempts, when) in entries.items():
                if when <= self._batch_no:
                    due.setdefault(fid, []).append(key)
        for (table, source, source_table), keys in due.items():
            target = self.mappings.target(table)
            feed = next(f for f in target.feeds if f.source == source and f.table == source_table)
            entries = self._retry[(table, source, source_table)]
            attempts = {k: entries.pop(k)[0] for k in keys}
            self._retry_attempts = attempts
            rows = self._reread(feed, keys)
            gone = [_key_text(k) for k in keys if k not in rows]
            if gone:
                control_store.resolve_quarantine(
                    self.conn,
                    source=source,
                    source_table=source_table,
                    target_table=table,
                    keys=gone,
                )
            self._apply_feed(target, feed, rows, {}, stats, depth=0, retrying=True)

    def _reread(self, feed: Feed, keys: Iterable[Key]) -> dict[Key, RawRow]:
        decoder = self._decoder(feed)
        if len(decoder.key_index) != 1:
            return {}
        column = decoder.names[decoder.key_index[0]]
        rows = self.lookups[feed.source].rows_where(
            feed.table, decoder.names, column, [_sql_value(k[0]) for k in keys]
        )
        return {decoder.key(r): r for r in rows}

    # -- one feed --------------------------------------------------------------------------

    def _apply_feed(
        self,
        target: TargetMapping,
        feed: Feed,
        upserts: dict[Key, RawRow],
        deletes: dict[Key, RawRow],
        stats: ApplyStats,
        *,
        depth: int,
        retrying: bool = False,
    ) -> None:
        if not upserts and not deletes:
            return
        if (feed.source, feed.table) in self.paused:
            return
        if depth > 8:
            raise RecursionError(f"dependants of {target.table} nest deeper than 8 levels")
        if feed.exclude_rows:
            self._move_exclusions(target, feed, upserts, deletes, stats)
        if feed.primary:
            self._apply_primary(target, feed, upserts, deletes, stats, depth, retrying)
        else:
            self._apply_contributing(target, feed, upserts, deletes, stats)

    # -- exclusion counts ------------------------------------------------------------------

    def _move_exclusions(
        self,
        target: TargetMapping,
        feed: Feed,
        upserts: Mapping[Key, RawRow],
        deletes: Mapping[Key, RawRow],
        stats: ApplyStats,
    ) -> None:
        """Move ``runeshift.exclusions`` from what the keys were counted under to what they are now.

        A fresh backfill counts the source rows each rule excludes now: a row newly
        excluded adds one, a counted row no longer excluded (or deleted) takes one away, a
        row seen again in the same state (a replayed batch, a re-read) changes nothing.
        ``runeshift.excluded_keys`` says which keys are counted: the backfill records every
        key it excluded, and this keeps the record with the counts.
        """
        backfill_id = self._counted_backfill(target, feed, stats)
        if backfill_id is None:
            return
        now: dict[str, str | None] = {_key_text(k): None for k in deletes}
        if upserts:
            batch = self._decoder(feed).batch(list(upserts.values()))
            now.update(
                zip(
                    source_key_array(batch, feed.key).to_pylist(),
                    excluded_rules(feed, batch).to_pylist(),
                    strict=True,
                )
            )
        common = {"source": feed.source, "source_table": feed.table, "target_table": target.table}
        recorded = control_store.excluded_keys(
            self.conn, backfill_id=backfill_id, keys=list(now), **common
        )
        deltas: Counter[str] = Counter()
        counted: list[control_store.ExcludedKey] = []
        forgotten: list[str] = []
        for key, rule in now.items():
            known = recorded.get(key)
            was = known.rule if known is not None else None
            if was == rule:
                continue
            if was is not None:
                deltas[was] -= 1
            if rule is None:
                forgotten.append(key)
            else:
                deltas[rule] += 1
                counted.append(control_store.ExcludedKey(key, key, rule))
        if not counted and not forgotten:
            return
        control_store.record_excluded_keys(self.conn, counted, backfill_id=backfill_id, **common)
        control_store.forget_excluded_keys(self.conn, keys=forgotten, **common)
        reasons = {f.rule: f.reason for f in feed.exclude_rows}
        control_store.move_exclusions(self.conn, deltas, reasons, run_id=self.run_id, **common)

    def _counted_backfill(self, target: TargetMapping, feed: Feed, stats: ApplyStats) -> str | None:
        """The backfill whose counts of this feed are continued (None: counts left alone)."""
        fid = self._feed_id(target, feed)
        if fid not in self._counted:
            table = control_store.counted_table(self.conn, feed.source, feed.table, target.table)
            if table is not None and table.counted and not table.recorded:
                # A backfill made before keys were recorded: which rows it counted is
                # unknown, and guessing would count a re-read pending row twice.
                stats.notes[
                    f"{feed.qualified}: exclusion counts not followed (backfill again)"
                ] += 1
                table = None
            self._counted[fid] = table.backfill_id if table is not None else None
        return self._counted[fid]

    def _ids(self, target: TargetMapping, feed: Feed, rows: Sequence[RawRow]) -> list[str | None]:
        if not rows:
            return []
        batch = self._decoder(feed).batch(rows)
        values, _errors = _Evaluation(batch).run(_id_rule(target, feed).expr, f"{target.table}.id")
        return [None if v is None else str(v) for v in values.to_pylist()]

    def _map(
        self, target: TargetMapping, feed: Feed, rows: Sequence[RawRow]
    ) -> tuple[MappedBatch, list[str]]:
        decoder = self._decoder(feed)
        batch = decoder.batch(rows)
        losers = {
            rule.rule: frozenset(self._dedup[(self._feed_id(target, feed), rule.rule)].losers)
            for rule in feed.dedup
        }
        mapped = map_batch(target, feed, batch, references=self.refs, dedup_losers=losers)
        return mapped, source_key_array(batch, feed.key).to_pylist()

    def _delete_rows(self, table: str, kind: str, ids: list[str]) -> dict[str, str]:
        """Delete ``ids``; rows other tables still reference are kept: {id: reason}.

        A legacy delete can meet rows the legacy world does not know about (a Shopify
        order of the deleted member, a row Rune created). Deleting them would break a
        foreign key, and cascading would destroy data, so the target row stays and the
        delete goes to quarantine with the constraint named; the stream goes on.
        """
        statement = sql.SQL("DELETE FROM {} WHERE id = ANY({})").format(
            _ident(table), _id_array(kind)
        )
        copy_writer.open_transaction(self.conn)  # the deletes commit with the batch's position
        try:
            with self.conn.transaction():
                self.conn.execute(statement, (_params(kind, ids),))
            control_store.forget_unresolved(self.conn, table, ids)
            return {}
        except psycopg.errors.ForeignKeyViolation:
            pass
        kept: dict[str, str] = {}
        for row_id in ids:
            try:
                with self.conn.transaction():
                    self.conn.execute(statement, (_params(kind, [row_id]),))
            except psycopg.errors.ForeignKeyViolation as exc:
                kept[row_id] = (
                    f"source row deleted, but {table} row is still referenced "
                    f"({exc.diag.constraint_name}); kept"
                )
        control_store.forget_unresolved(self.conn, table, [i for i in ids if i not in kept])
        return kept

    def _relink_resolved(self, resolved: control_store.Resolved, stats: ApplyStats) -> None:
        """After NULL references were set to a row that appeared, relink what is matched on them."""
        for (table, column), ids in resolved.items():
            stats.notes[f"{table}.{column}: linked, the row it names appeared"] += len(ids)
        if resolved:
            moved = self._relinker.relink({table: None for table, _ in resolved})
            if moved:
                stats.notes["references matched on a linked column: relinked"] += moved

    def _retire(self, target: TargetMapping, feed: Feed, images: Sequence[RawRow]) -> None:
        """Give rows kept after a blocked delete every dedup rule's loser values.

        The source row is gone, so the kept row no longer contends for a contested value:
        an account kept only for its Shopify orders must not hold the login for an email
        a living member now has (that member's row would be rejected by the unique index
        on every retry).
        """
        batch = self._decoder(feed).batch(images)
        keys = frozenset(source_key_array(batch, feed.key).to_pylist())
        mapped = map_batch(
            target,
            feed,
            batch,
            references=self.refs,
            dedup_losers={rule.rule: keys for rule in feed.dedup},
        )
        columns = ["id", *dict.fromkeys(c for rule in feed.dedup for c, _ in rule.loser_set)]
        copy_writer.update_columns(self.conn, target.table, mapped.rows.select(columns))

    def _apply_primary(
        self,
        target: TargetMapping,
        feed: Feed,
        upserts: dict[Key, RawRow],
        deletes: dict[Key, RawRow],
        stats: ApplyStats,
        depth: int,
        retrying: bool,
    ) -> None:
        fid = self._feed_id(target, feed)
        for rule in feed.dedup:
            self._dedup_groups(target, feed, rule, upserts, deletes, stats)
        kind = self._id_kinds[target.table]
        keys_of = {_key_text(k): k for k in upserts}
        rows = list(upserts.values())
        mapped, all_keys = self._map(target, feed, rows)
        good = set(mapped.source_keys.to_pylist())
        quarantined = list(mapped.quarantined)
        leaving_rows = [upserts[keys_of[k]] for k in all_keys if k not in good]
        leaving_keys = [k for k in all_keys if k not in good]
        for key, row in deletes.items():
            if row:
                leaving_rows.append(row)
                leaving_keys.append(_key_text(key))
        leaving = [
            (k, i)
            for k, i in zip(leaving_keys, self._ids(target, feed, leaving_rows), strict=True)
            if i is not None
        ]
        good_ids = [str(v) for v in mapped.rows.column("id").to_pylist()]
        before = existing_ids(self.conn, target.table, kind, [*good_ids, *(i for _, i in leaving)])
        gone = [i for _, i in leaving if i in before]
        gone_keys = [k for k, i in leaving if i in before]
        blocked_keys: set[str] = set()
        if gone:
            self.refs.leaving.setdefault(target.table, set()).update(gone)
            self._rederive_dependants(target, feed, gone_keys, stats, depth)
            self._purge_stale_dependants(target.table, gone, stats)
            self._unlink(target.table, "id", gone, stats)
            kept = self._delete_rows(target.table, kind, gone)
            stats.deleted += len(gone) - len(kept)
            if kept and feed.dedup:
                images = dict(zip(leaving_keys, leaving_rows, strict=True))
                self._retire(target, feed, [images[gone_keys[gone.index(i)]] for i in kept])
            for row_id, reason in kept.items():
                blocked = gone_keys[gone.index(row_id)]
                blocked_keys.add(blocked)
                quarantined.append(
                    QuarantinedRow(
                        blocked, "delete_blocked", reason, {"source_key": blocked, "deleted": True}
                    )
                )
        rejected_keys: list[str] = []
        transient: list[str] = []
        if mapped.rows.num_rows:
            rejected = self._upsert(target, feed, mapped, quarantined)
            rejected_keys = [k for k, _ in rejected]
            transient = [k for k, reason in rejected if _UNIQUE_VIOLATION in reason]
            stats.upserted += mapped.rows.num_rows - len(rejected_keys)
            landed_mask = (
                pc.invert(
                    pc.fill_null(
                        pc.is_in(
                            mapped.source_keys, value_set=pa.array(rejected_keys, pa.string())
                        ),
                        False,
                    )
                )
                if rejected_keys
                else None
            )
            resolved = control_store.record_unresolved_of(
                self.conn, mapped, landed_mask, self.refs.leaving
            )
            for link, ids in control_store.resolve_unresolved_by(
                self.conn, mapped, landed_mask
            ).items():
                resolved.setdefault(link, []).extend(ids)
            self._relink_resolved(resolved, stats)
        if transient:
            # Usually a stale row elsewhere whose fix is still ahead in the stream: try again
            # after 1, 2, 4 .. 64 batches.
            entries = self._retry.setdefault(fid, {})
            previous = self._retry_attempts if retrying else {}
            for k in transient:
                key = keys_of[k]
                n = previous.get(key, 0) + 1
                entries[key] = (n, self._batch_no + min(64, 2 ** (n - 1)))
        if quarantined:
            stats.quarantined += control_store.quarantine_rows(
                self.conn,
                quarantined,
                run_id=self.run_id,
                source=feed.source,
                source_table=feed.table,
                target_table=target.table,
            )
        landed = sorted(good - set(rejected_keys))
        waiting = self._retry.get(fid)
        if waiting:  # landed since it was rejected: a retry would only write it again
            for k in landed:
                waiting.pop(keys_of[k], None)
        settled = landed + [_key_text(k) for k in deletes if _key_text(k) not in blocked_keys]
        if settled:
            control_store.resolve_quarantine(
                self.conn,
                source=feed.source,
                source_table=feed.table,
                target_table=target.table,
                keys=settled,
            )
        new_keys = [
            k
            for k, i in zip(mapped.source_keys.to_pylist(), good_ids, strict=True)
            if i not in before and k not in rejected_keys
        ]
        if new_keys:
            self._rederive_contributors(target, feed, new_keys, stats)
            self._rederive_dependants(target, feed, new_keys, stats, depth)
        if gone:
            self._rederive_contributors(target, feed, gone_keys, stats)

    def _upsert(
        self,
        target: TargetMapping,
        feed: Feed,
        mapped: MappedBatch,
        quarantined: list[QuarantinedRow],
    ) -> list[tuple[str, str]]:
        """Upsert mapped rows, dedup losers first; return (source key, reason) of rejected rows."""
        keys = mapped.source_keys
        parts = [(mapped.rows, keys)]
        loser_keys: set[str] = set()
        for rule in feed.dedup:
            loser_keys |= self._dedup[(self._feed_id(target, feed), rule.rule)].losers
        if loser_keys:
            mask = pc.fill_null(pc.is_in(keys, value_set=pa.array(sorted(loser_keys))), False)
            parts = [
                (mapped.rows.filter(mask), keys.filter(mask)),
                (mapped.rows.filter(pc.invert(mask)), keys.filter(pc.invert(mask))),
            ]
        rejected: list[tuple[str, str]] = []
        for rows, part_keys in parts:
            if rows.num_rows == 0:
                continue
            for r in copy_writer.upsert_rows(self.conn, target.table, rows):
                key = part_keys[r.index].as_py()
                rejected.append((key, r.reason))
                quarantined.append(
                    QuarantinedRow(key, "rejected_by_target", r.reason, {"source_key": key})
                )
        return rejected

    def _apply_contributing(
        self,
        target: TargetMapping,
        feed: Feed,
        upserts: dict[Key, RawRow],
        deletes: dict[Key, RawRow],
        stats: ApplyStats,
    ) -> None:
        kind = self._id_kinds[target.table]
        rows = list(upserts.values())
        mapped, all_keys = self._map(target, feed, rows)
        quarantined = list(mapped.quarantined)
        good = mapped.source_keys.to_pylist()
        landed: list[str] = []
        if mapped.rows.num_rows:
            present_mask = copy_writer.update_columns(self.conn, target.table, mapped.rows)
            self._relink_resolved(
                control_store.record_unresolved_of(
                    self.conn, mapped, present_mask, self.refs.leaving
                ),
                stats,
            )
            present = present_mask.to_pylist()
            for key, here in zip(good, present, strict=True):
                if here:
                    landed.append(key)
                else:
                    quarantined.append(
                        QuarantinedRow(
                            key,
                            "orphan",
                            f"orphan: no row in {target.table} for {feed.qualified} key {key}",
                            {"source_key": key},
                        )
                    )
            stats.upserted += len(landed)
        keys_of = {_key_text(k): k for k in upserts}
        reset_rows = [upserts[keys_of[k]] for k in all_keys if k not in set(landed)]
        reset_rows += [r for r in deletes.values() if r]
        reset_ids = [i for i in self._ids(target, feed, reset_rows) if i is not None]
        if reset_ids:
            defaults = self._defaults[target.table]
            assignments = sql.SQL(", ").join(
                sql.SQL("{} = DEFAULT").format(sql.Identifier(r.target))
                if defaults.get(r.target) is not None
                else sql.SQL("{} = NULL").format(sql.Identifier(r.target))
                for r in feed.columns
            )
            self.conn.execute(
                sql.SQL("UPDATE {} SET {} WHERE id = ANY({})").format(
                    _ident(target.table), assignments, _id_array(kind)
                ),
                (_params(kind, reset_ids),),
            )
        if quarantined:
            stats.quarantined += control_store.quarantine_rows(
                self.conn,
                quarantined,
                run_id=self.run_id,
                source=feed.source,
                source_table=feed.table,
                target_table=target.table,
            )
        settled = landed + [_key_text(k) for k in deletes]
        if settled:
            control_store.resolve_quarantine(
                self.conn,
                source=feed.source,
                source_table=feed.table,
                target_table=target.table,
                keys=settled,
            )

    # -- re-derivation ---------------------------------------------------------------------

    def _rederive_contributors(
        self, target: TargetMapping, feed: Feed, keys: Sequence[str], stats: ApplyStats
    ) -> None:
        """Contributing rows of these primary keys, re-read and applied (see module doc)."""
        for other in target.feeds:
            if other.primary or other is feed or (other.source, other.table) not in self.decoders:
                continue
            decoder = self._decoder(other)
            if len(other.key) != 1 or len(feed.key) != 1:
                continue
            rows = self.lookups[other.source].rows_where(
                other.table, decoder.names, other.key[0], [_plain(k) for k in keys]
            )
            if rows:
                stats.rederived += len(rows)
                self._apply_contributing(
                    target, other, {decoder.key(r): r for r in rows}, {}, stats
                )

    def _rederive_dependants(
        self, target: TargetMapping, feed: Feed, keys: Sequence[str], stats: ApplyStats, depth: int
    ) -> None:
        """Rows of other targets that reference these rows, re-read and applied."""
        if len(feed.key) != 1:
            return
        values = [_plain(k) for k in keys]
        for dep in self._dependants.get(target.table, []):
            if (dep.feed.source, dep.feed.table) in self.paused:
                continue
            decoder = self._decoder(dep.feed)
            rows = self.lookups[dep.feed.source].rows_where(
                dep.feed.table, decoder.names, dep.column, values
            )
            if not rows:
                continue
            stats.rederived += len(rows)
            self._apply_feed(
                dep.target,
                dep.feed,
                {decoder.key(r): r for r in rows},
                {},
                stats,
                depth=depth + 1,
            )

    def _purge_stale_dependants(self, table: str, ids: Sequence[str], stats: ApplyStats) -> None:
        """Target rows still pointing at ``ids`` after re-derivation are stale.

        Their source rows no longer reference these parents (renumbered, moved or deleted
        after the stream position), and the events that say so are still ahead in the
        stream and will re-create them as they should be. Until then they are removed
        (quarantine references) or unlinked (NULL references), children first, so the
        parent's delete cannot violate a foreign key.
        """
        kind = self._id_kinds[table]
        for dep in self._dependants.get(table, []):
            child = dep.target.table
            column = sql.Identifier(dep.target_column)
            if dep.on_missing == "null":
                self.conn.execute(
                    sql.SQL("UPDATE {} SET {} = NULL WHERE {} = ANY({})").format(
                        _ident(child), column, column, _id_array(kind)
                    ),
                    (_params(kind, ids),),
                )
                continue
            stale = [
                r[0]
                for r in self.conn.execute(
                    sql.SQL("SELECT id::text FROM {} WHERE {} = ANY({})").format(
                        _ident(child), column, _id_array(kind)
                    ),
                    (_params(kind, ids),),
                ).fetchall()
            ]
            if not stale:
                continue
            self._purge_stale_dependants(child, stale, stats)
            self.conn.execute(
                sql.SQL("DELETE FROM {} WHERE id = ANY({})").format(
                    _ident(child), _id_array(self._id_kinds[child])
                ),
                (_params(self._id_kinds[child], stale),),
            )
            stats.deleted += len(stale)

    def _unlink(self, table: str, column: str, values: Sequence[str], stats: ApplyStats) -> None:
        """NULL the ``on_missing: null`` links to values of ``table.column`` that are going.

        ``values`` are leaving ``column`` (the ids of rows about to be deleted, or a
        column just unlinked). A fresh backfill, not finding the row, would store NULL: a
        product whose script is deleted from legacy loses its ``script_id`` (rather than
        blocking the delete with its foreign key), and then the order lines matched on
        that ``products.script_id`` lose theirs, unless another row still holds the value.
        """
        if not values:
            return
        leaving = sorted(self.refs.leaving.get(table, set()))
        for link in self._null_links:
            if link.reference.table != table or link.reference.take != column:
                continue
            cond = sql.SQL(
                "d.{c}::text = ANY(%s::text[]) AND NOT EXISTS (SELECT 1 FROM {parent} p "
                "WHERE p.{take} = d.{c} AND p.id::text <> ALL(%s::text[]))"
            ).format(
                c=sql.Identifier(link.column),
                parent=_ident(table),
                take=sql.Identifier(column),
            )
            args = (list(values), leaving)
            old = [
                r[0]
                for r in self.conn.execute(
                    sql.SQL("SELECT DISTINCT d.{}::text FROM {} d WHERE ").format(
                        sql.Identifier(link.column), _ident(link.table)
                    )
                    + cond,
                    args,
                ).fetchall()
            ]
            if not old:
                continue
            if link.reference.match_on is None:
                # What a backfill run once the row is back would link again (it may return
                # with the same id): recorded as a reference stored NULL while it is missing.
                self.conn.execute(
                    sql.SQL(
                        "INSERT INTO runeshift.unresolved_references (target_table, row_id, "
                        '"column", referenced_table, wanted_value) '
                        "SELECT %s, d.id::text, %s, %s, d.{}::text FROM {} d WHERE "
                    ).format(sql.Identifier(link.column), _ident(link.table))
                    + cond
                    + sql.SQL(
                        ' ON CONFLICT (target_table, row_id, "column") DO UPDATE SET '
                        "referenced_table = EXCLUDED.referenced_table, "
                        "wanted_value = EXCLUDED.wanted_value"
                    ),
                    (link.table, link.column, table, *args),
                )
            unlinked = self.conn.execute(
                sql.SQL("UPDATE {} d SET {} = NULL WHERE ").format(
                    _ident(link.table), sql.Identifier(link.column)
                )
                + cond,
                args,
            ).rowcount
            stats.notes[f"{link.table}.{link.column}: unlinked, its {table} row is gone"] += (
                unlinked
            )
            self._unlink(link.table, link.column, old, stats)

    def _dedup_groups(
        self,
        target: TargetMapping,
        feed: Feed,
        rule: Dedup,
        upserts: dict[Key, RawRow],
        deletes: dict[Key, RawRow],
        stats: ApplyStats,
    ) -> None:
        """Update the contested-value index; rewrite every group the changes touch."""
        index = self._dedup[(self._feed_id(target, feed), rule.rule)]
        touched: set[str] = set()
        sizes_before: dict[str, int] = {}

        def note(value: str | None) -> None:
            if value is not None and value not in sizes_before:
                sizes_before[value] = len(index.members.get(value, ()))

        # The values updated or deleted rows held before: after a restart the index is built from the
        # source as it is *now*, so a key whose update is replayed may already sit in its
        # new group, and the group it left (still planned with it in the target) would be
        # missed. Those groups are re-planned whatever their size.
        left = self._before_values.get((self._feed_id(target, feed), rule.rule), set())
        for value in left:
            note(value)
        touched |= left

        for key in deletes:
            text = _key_text(key)
            note(index.value_of.get(text))
            old, _ = index.set(text, None)
            index.losers.discard(text)
            if old is not None:
                touched.add(old)
        if upserts:
            decoder = self._decoder(feed)
            batch = decoder.batch(list(upserts.values()))
            for key, value in zip(
                source_key_array(batch, feed.key).to_pylist(),
                _dedup_values(target, feed, rule, batch).to_pylist(),
                strict=True,
            ):
                note(index.value_of.get(key))
                note(value)
                index.losers.discard(key)
                old, new = index.set(key, value)
                touched.update(v for v in (old, new) if v is not None)
        groups = [
            v
            for v in touched
            if sizes_before.get(v, 0) > 1
            or len(index.members.get(v, ())) > 1
            or (v in left and index.members.get(v))
        ]
        if not groups:
            return
        members = {k for v in groups for k in index.members.get(v, ())}
        current = self._reread(feed, [tuple(k.encode() for k in m.split("|")) for m in members])
        # The batch's own images win over the re-read: MariaDB writes a transaction to the
        # binlog before InnoDB shows it to other sessions, so the re-read can still hold a
        # row as it was before this very batch (a member leaving the group, seen still in
        # it, beat the member who should now win, and no later event came to correct it).
        current.update((k, row) for k, row in upserts.items() if _key_text(k) in members)
        for k in deletes:
            current.pop(k, None)
        if current:
            decoder = self._decoder(feed)
            table = pa.Table.from_batches([decoder.batch(list(current.values()))])
            outcome = plan_dedup(target, feed, rule, table)
            index.losers -= members
            index.losers |= set(outcome.losers) & members
        else:
            index.losers -= members
        for key, row in current.items():
            if key not in upserts and key not in deletes:
                upserts[key] = row
        stats.dedup_groups += len(groups)


def _plain(key_text: str) -> Any:
    return int(key_text) if key_text.lstrip("-").isdigit() else key_text


def _dedup_values(
    target: TargetMapping, feed: Feed, rule: Dedup, batch: pa.RecordBatch
) -> pa.Array:
    """The contested form of ``rule.column`` per row, exactly as ``plan_dedup`` compares it."""
    column_rule = next(r for r in feed.columns if r.target == rule.column)
    values, _errors = _Evaluation(batch).run(column_rule.expr, f"{target.table}.{rule.column}")
    return pc.utf8_lower(pc.utf8_trim_whitespace(pc.cast(values, pa.string())))
