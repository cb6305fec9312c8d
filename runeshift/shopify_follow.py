"""The Shopify follower: the store's changes -> the store mapping -> Rune, checkpoint with the rows.

Design note. What it tracks: per stream (customers, products, orders, and products'
deletion events) a ``StreamPosition`` in ``runeshift.source_positions`` under
``shopify:<stream>``, the one ``run_store_backfill`` left when the stream's bulk export
was loaded. A poll reads each stream's window from that position
(``extract/shopify_incremental.py``: ``updated_at >= since - lookback``, sorted by
UPDATED_AT, page by page) and, per page, writes the page's rows AND the advanced position
in ONE Postgres transaction (:class:`_TransactionCheckpoints`), so a crash anywhere loses
at most the page in flight, and the restart re-reads it (the writers only touch rows whose
values differ). The lookback re-reads recent records on purpose; a record already applied
at the same ``updatedAt`` (by this poll, an earlier one or a webhook) is skipped, and two
versions of one record in a page are folded into the newest.

How records become rows: exactly as in the backfill. Records are flattened into the
store's source tables (``extract/shopify_record_batches.py``) and mapped by ``map_batch``
with ``mappings/store.yaml``; customers go through the same identity merge
(``transform/mapping_identity_merge.py``), planned over every customer the target knows
plus the changed ones, so the result is what a fresh store backfill would give. Beyond
upserting, :class:`StoreChangeApplier` makes the target forget what the store forgot: an
order's line items, transactions and refunds, and a product's variants, that are no longer
in the record are deleted (their dependants' references NULLed as the mapping's
``on_missing`` says); deleted products (``deletionEvents``) and deleted orders/customers
(webhooks only: Shopify has no deletion events for them) are removed. Cancelled and
refunded orders are ordinary updates: ``cancelled_at``, ``financial_status`` and the
refunds follow the mapping. Test orders stay excluded by the mapping's rule (a rune row
left from before an order became a test order is deleted), and ``runeshift.exclusions``
moves as a fresh backfill's counts would (:class:`ExclusionBook`, in the page's
transaction): a new test order and its lines, transactions and refunds add to the
``test_order`` counts, an order that stops being a test order or is deleted takes its rows
away again, and a record read again changes nothing. Whether a row was counted is kept
per key in ``runeshift.excluded_keys``; a row the follower never saw was counted when the
latest backfill read it (its key at most the highest that backfill loaded: Shopify ids grow
with creation) and left it neither in Rune nor in quarantine (a line, transaction or refund
only if its order was counted too). One thing the follower cannot
know: the children of a test order the backfill counted and the store then deleted before
the follower ever read it (the deletion names only the order); the order's own count moves,
its children's stay until the next backfill. Customers have no exclusion rules.

References that are NULL while the row they name is missing (``on_missing: null``, such as
an order line's ``price_id``, the variant with the line's SKU) are resolved again whenever
the referenced table changes (:class:`load.change_applier.NullLinkRelinker`, shared with the
binlog catch-up): after a products page or a product deletion, every line whose ``price_id``/``script_id`` is NULL, points at a row just written
or points at nothing is re-evaluated from its own ``sku`` column (the reference's source
input, kept as it is in the row) and set to what a fresh backfill would link. So a line
followed before its variant existed, or whose variant's SKU changed, converges too. A
reference by id stored NULL (``products.script_id`` while legacy has no such script) is
recorded with the id it wanted in ``runeshift.unresolved_references`` by the shared chunk
writer (``runeshift.backfill.write_chunk``), so whichever writer later inserts the named row
links it (and the lines matched on it); rows the follower deletes lose their entries.

Who calls it: ``runeshift.sync.run_sync`` runs one :class:`ShopifyFollower` thread beside
the binlog followers when a Shopify base URL is configured; the webhook receiver
(``runeshift/shopify_webhooks.py``) hands it verified deliveries, which it applies the same
way without moving the checkpoint (the poll remains the guarantee: webhooks can be
dropped). Tests call :meth:`ShopifyFollower.poll_once`.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import queue
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

import psycopg
import pyarrow as pa
from psycopg import sql

from extract.shopify_checkpoints import StreamPosition, source_name
from extract.shopify_client import ShopifyClient
from extract.shopify_incremental import DELETIONS_STREAM, run_incremental
from extract.shopify_page_reader import read_pages
from extract.shopify_record_batches import (
    STORE_SOURCE,
    STREAM_TABLES,
    flatten_records,
    numeric_id,
    record_key,
)
from extract.shopify_streams import ShopifyRecord, stream_spec
from load.change_applier import NullLinkRelinker, TargetLookups, relinked_columns
from runeshift import control_store
from runeshift.backfill import TableSummary, select_feeds, write_chunk
from runeshift.connections import pg_connect
from runeshift.errors import ConfigError, TransientError
from runeshift.settings import Settings
from runeshift.store_backfill import STREAM_ORDER, IdentitySummary, record_identity, write_merged
from transform.mapping_engine import (
    MappedBatch,
    _Evaluation,  # the one expression evaluator; change_applier uses it the same way
    _filter_mask,  # the one row filter: a row is excluded exactly as map_batch decides
    map_batch,
)
from transform.mapping_identity_merge import (
    CustomerIdentity,
    IdentityPlan,
    MemberAccount,
    plan_identity_merge,
)
from transform.mapping_loader import load_mappings
from transform.mapping_spec import Feed, MappingSet, TargetMapping

Stream = Literal["customers", "products", "orders"]
_PARENT_KEY = {"orders": "order_key", "products": "product_key"}  # a child row's record
RECORDED_BY = "sync"
SEEN_LIMIT = 200_000
# Per stream: (a child's source table, the column of its target rows naming the parent).
_CHILDREN: dict[str, tuple[tuple[str, str], ...]] = {
    "orders": (
        ("order_line_items", "order_id"),
        ("order_transactions", "order_id"),
        ("order_refunds", "order_id"),
    ),
    "products": (("product_variants", "product_id"),),
}


@dataclass
class FollowOptions:
    """How the follower polls."""

    poll_interval: float = 5.0
    lookback: timedelta = timedelta(minutes=5)
    streams: tuple[str, ...] = STREAM_ORDER
    error_backoff: float = 5.0


@dataclass
class StreamCounts:
    """What one stream's polls (and webhooks) did, cumulatively."""

    records: int = 0
    skipped_seen: int = 0
    rows_written: int = 0
    rows_deleted: int = 0
    rows_relinked: int = 0
    quarantined: int = 0
    excluded: int = 0

    def as_dict(self) -> dict[str, int]:
        return dict(self.__dict__)


@dataclass
class FollowStats:
    """The follower's counters, read by ``sync`` for its summary."""

    polls: int = 0
    webhooks_applied: int = 0
    streams: dict[str, StreamCounts] = field(default_factory=dict)
    last_poll_finished: float | None = None
    last_error: str | None = None

    def stream(self, name: str) -> StreamCounts:
        return self.streams.setdefault(name, StreamCounts())

    def as_dict(self) -> dict[str, Any]:
        return {
            "polls": self.polls,
            "webhooks_applied": self.webhooks_applied,
            "streams": {k: v.as_dict() for k, v in sorted(self.streams.items())},
            "last_error": self.last_error,
        }


@dataclass(frozen=True)
class WebhookChange:
    """A verified webhook delivery, as the follower needs it: what changed, and how."""

    event_id: str
    stream: Stream
    record_id: str
    deleted: bool


class _TransactionCheckpoints:
    """``CheckpointStore`` writing into the caller's open transaction (committed with the rows)."""

    def __init__(self, conn: psycopg.Connection[Any]) -> None:
        self._conn = conn

    def load(self, stream: str) -> StreamPosition | None:
        data = control_store.get_position(self._conn, source_name(stream))
        return None if data is None else StreamPosition.from_json(source_name(stream), data)

    def save(self, stream: str, position: StreamPosition) -> None:
        control_store.set_position(
            self._conn, source_name(stream), position.kind, position.to_json(), RECORDED_BY
        )

    def clear(self, stream: str) -> None:
        self._conn.execute(
            "DELETE FROM runeshift.source_positions WHERE source = %s", (source_name(stream),)
        )


def excluded_by(feed: Feed, batch: pa.RecordBatch) -> dict[str, str | None]:
    """Per source key, the rule that excludes the row (the first that matches, as map_batch)."""
    keys = [str(k) for k in batch.column("key").to_pylist()]
    rules: list[str | None] = [None] * len(keys)
    for flt in feed.exclude_rows:
        for i, hit in enumerate(_filter_mask(batch, flt).to_pylist()):
            if hit and rules[i] is None:
                rules[i] = flt.rule
    return dict(zip(keys, rules, strict=True))


@dataclass
class CountedRows:
    """What one table's rows were counted under before a change (see :class:`ExclusionBook`)."""

    target: TargetMapping
    feed: Feed
    backfill_id: str
    recorded: dict[str, control_store.ExcludedKey]
    inferred: set[str]  # unrecorded keys the backfill counted (read by it, absent from Rune)
    record_of: dict[str, str]

    def was_counted(self, key: str) -> bool:
        known = self.recorded.get(key)
        return key in self.inferred if known is None else known.rule is not None

    def rule_before(self, key: str, now: str | None) -> str | None:
        if key in self.recorded:
            return self.recorded[key].rule
        if key in self.inferred:  # the backfill did not say under which rule: the likely one
            return now or self.feed.exclude_rows[0].rule
        return None


class ExclusionBook:
    """Moves ``runeshift.exclusions`` as a fresh backfill's counts would move.

    A fresh backfill counts the source rows each rule excludes now. So a row the follower
    sees excluded that was not counted (a new test order) adds one, a counted row that is
    no longer excluded (it stopped being a test order, or the store deleted it) takes one
    away, and a row read again (the lookback, a webhook) changes nothing. Whether a row
    was counted: ``runeshift.excluded_keys`` once the follower has seen it; before that,
    the backfill counted it when it read it and left no row for it in Rune or quarantine
    (read: its numeric key is at most the highest key the latest backfill loaded of that
    table, Shopify ids growing with creation). Recorded rows name the backfill whose counts
    they continue; a new backfill starts the book afresh.
    """

    def __init__(self, conn: psycopg.Connection[Any], run_id: str | None) -> None:
        self.conn = conn
        self.run_id = run_id
        self._reach: dict[str, control_store.BackfillReach | None] = {}

    def counted(
        self,
        stream: str,
        target: TargetMapping,
        feed: Feed,
        batch: pa.RecordBatch,
        parent: CountedRows | None = None,
    ) -> CountedRows | None:
        """How the rows of ``batch`` (and recorded rows of its records) were counted.

        A child row (a line) not recorded yet is taken as counted by the backfill only if
        its record (``parent``, the order's own rows) was too: the store's rules exclude
        whole test orders, and a new line of a counted order has a new, higher id.
        """
        keys = [str(k) for k in batch.column("key").to_pylist()]
        records = [str(r) for r in batch.column(_record_column(stream, feed)).to_pylist()]
        record_of = dict(zip(keys, records, strict=True))
        counted = self._counted(target, feed, keys, sorted(set(records)), record_of)
        if counted is not None and parent is not None:
            counted.inferred = {k for k in counted.inferred if parent.was_counted(record_of[k])}
        return counted

    def counted_of_deleted(
        self, stream: str, target: TargetMapping, feed: Feed, record_keys: Sequence[str]
    ) -> CountedRows | None:
        """How the rows of deleted records were counted (their children only if recorded)."""
        keys = list(record_keys) if _record_column(stream, feed) == "key" else []
        return self._counted(target, feed, keys, record_keys, {k: k for k in keys})

    def _counted(
        self,
        target: TargetMapping,
        feed: Feed,
        keys: Sequence[str],
        record_keys: Sequence[str],
        record_of: dict[str, str],
    ) -> CountedRows | None:
        if not feed.exclude_rows:
            return None
        reach = self._backfill_reach(feed)
        if reach is None:
            return None
        recorded = self._recorded(target, feed, reach, keys, record_keys)
        unknown = [k for k in keys if k not in recorded]
        inferred = self._counted_by_backfill(target, feed, reach, unknown)
        record_of = {**{k: r.record_key for k, r in recorded.items()}, **record_of}
        return CountedRows(target, feed, reach.backfill_id, recorded, inferred, record_of)

    def settle(self, before: CountedRows | None, now: dict[str, str | None]) -> None:
        """Move the counts from ``before`` to ``now`` (key -> rule; a key absent: gone)."""
        if before is None:
            return
        deltas: dict[str, int] = {}
        rows: list[control_store.ExcludedKey] = []
        for key in sorted(set(now) | set(before.recorded) | before.inferred):
            after = now.get(key)
            was = before.rule_before(key, after)
            if was != after:
                if was is not None:
                    deltas[was] = deltas.get(was, 0) - 1
                if after is not None:
                    deltas[after] = deltas.get(after, 0) + 1
            known = before.recorded.get(key)
            if (after is not None or was is not None) and (known is None or known.rule != after):
                rows.append(control_store.ExcludedKey(key, before.record_of[key], after))
        common = {
            "source": before.feed.source,
            "source_table": before.feed.table,
            "target_table": before.target.table,
        }
        control_store.record_excluded_keys(
            self.conn, rows, backfill_id=before.backfill_id, **common
        )
        reasons = {f.rule: f.reason for f in before.feed.exclude_rows}
        control_store.move_exclusions(self.conn, deltas, reasons, run_id=self.run_id, **common)

    def _backfill_reach(self, feed: Feed) -> control_store.BackfillReach | None:
        if feed.table not in self._reach:
            reach = control_store.backfill_reach(self.conn, feed.source, feed.table)
            if reach is not None:
                control_store.forget_excluded_keys_before(self.conn, feed.source, reach.backfill_id)
            self._reach[feed.table] = reach
        return self._reach[feed.table]

    def _recorded(
        self,
        target: TargetMapping,
        feed: Feed,
        reach: control_store.BackfillReach,
        keys: Sequence[str],
        record_keys: Sequence[str],
    ) -> dict[str, control_store.ExcludedKey]:
        return control_store.excluded_keys(
            self.conn,
            source=feed.source,
            source_table=feed.table,
            target_table=target.table,
            backfill_id=reach.backfill_id,
            keys=keys,
            record_keys=record_keys,
        )

    def _counted_by_backfill(
        self,
        target: TargetMapping,
        feed: Feed,
        reach: control_store.BackfillReach,
        keys: Sequence[str],
    ) -> set[str]:
        """Unrecorded keys the backfill read and left neither in Rune nor in quarantine."""
        high = reach.high_key
        read = [k for k in keys if high is not None and k.isdigit() and int(k) <= high]
        if not read:
            return set()
        ids = dict(zip(target_ids(target, feed, read), read, strict=True))
        schema, _, name = target.table.partition(".")
        present = {
            ids[str(r[0])]
            for r in self.conn.execute(
                sql.SQL("SELECT id::text FROM {} WHERE id = ANY(%s::uuid[])").format(
                    sql.Identifier(schema, name)
                ),
                (list(ids),),
            ).fetchall()
        }
        held = control_store.unresolved_quarantine_keys(
            self.conn,
            source=feed.source,
            source_table=feed.table,
            target_table=target.table,
            keys=read,
        )
        return set(read) - present - held


def _record_column(stream: str, feed: Feed) -> str:
    """The source column naming a row's record: its own key, or its parent's."""
    return "key" if feed.table == STREAM_TABLES[stream][0] else _PARENT_KEY[stream]


@dataclass
class ApplyCounts:
    written: int = 0
    deleted: int = 0
    quarantined: int = 0
    excluded: int = 0
    relinked: int = 0
    clean_keys: set[str] = field(default_factory=set)  # keys whose rows all mapped cleanly


class StoreChangeApplier:
    """Writes the current state of changed store records into Rune, in the caller's transaction.

    ``fetch`` reads records by id from the store; the customer merge uses it when a
    change moves another customer (the holder of a shared email changed its email, so
    the next customer now holds it).
    """

    def __init__(
        self,
        conn: psycopg.Connection[Any],
        feeds: Sequence[tuple[TargetMapping, Feed]],
        *,
        run_id: str | None,
        fetch: Callable[[str, list[str]], list[ShopifyRecord]],
    ) -> None:
        self.conn = conn
        self.by_table = {f.table: (t, f) for t, f in feeds if f.source == STORE_SOURCE}
        self.run_id = run_id
        self.fetch = fetch
        self.references = TargetLookups(conn)
        self.relinker = NullLinkRelinker(
            conn, relinked_columns(list(self.by_table.values())), self.references
        )
        self.exclusions = ExclusionBook(conn, run_id)

    def streams(self) -> list[str]:
        return [s for s in STREAM_ORDER if any(t in self.by_table for t in STREAM_TABLES[s])]

    def apply(self, stream: str, records: Iterable[ShopifyRecord]) -> ApplyCounts:
        """Make the target rows of ``records`` (current store state) what a backfill would write."""
        latest: dict[str, ShopifyRecord] = {}
        for record in records:
            key = record_key(record)
            held = latest.get(key)
            if held is None or (record.updated_at or "") >= (held.updated_at or ""):
                latest[key] = record
        counts = ApplyCounts()
        if not latest:
            return counts
        if stream == "customers":
            self._apply_customers(list(latest.values()), counts)
            return counts
        flat = flatten_records(stream, list(latest.values()))
        tables = [t for t in STREAM_TABLES[stream] if t in self.by_table]
        # Before anything is written or forgotten: whether each row was counted as excluded.
        counted: dict[str, CountedRows | None] = {}
        for table in tables:
            parent = counted.get(tables[0]) if table != tables[0] else None
            batch = flat.batches[table]
            counted[table] = self.exclusions.counted(stream, *self.by_table[table], batch, parent)
        bad: set[str] = set()
        written: dict[str, pa.Table | None] = {}
        linked: set[str] = set()  # tables whose NULL references were set (a named row appeared)
        for table in tables:
            target, feed = self.by_table[table]
            mapped = map_batch(
                target,
                feed,
                flat.batches[table],
                references=self.references,
                lookups=self.references.lookup,
            )
            bad |= self._write(target, feed, mapped, counts, linked)
            self.exclusions.settle(counted[table], excluded_by(feed, flat.batches[table]))
            written[target.table] = mapped.rows
            if table == tables[0]:
                counts.deleted += self._forget_excluded(stream, target, mapped, set(latest))
        counts.deleted += self._forget_children(stream, flat.batches, set(latest))
        for table in linked:
            written.setdefault(table, None)
        counts.relinked += self.relinker.relink(written)
        if stream == "orders" and "order_line_items" in self.by_table:
            self._link_licenses(sorted(latest))
        counts.clean_keys = set(latest) - bad
        return counts

    def delete(self, stream: str, keys: Sequence[str]) -> int:
        """Remove what the target holds of deleted store records (and what hangs off them)."""
        keys = [k for k in keys if k]
        if not keys:
            return 0
        if stream == "customers":
            return self._delete_customers(keys)
        for table in STREAM_TABLES[stream]:
            if table in self.by_table:
                gone = self.exclusions.counted_of_deleted(stream, *self.by_table[table], keys)
                self.exclusions.settle(gone, {})
        target, feed = self.by_table[STREAM_TABLES[stream][0]]
        ids = target_ids(target, feed, keys)
        deleted = self._forget_children(stream, {}, set(keys), everything=True)
        self._unlink(target.table, ids)
        deleted += self._delete_ids(target.table, ids)
        self.relinker.relink(
            {self.by_table[t][0].table: None for t in STREAM_TABLES[stream] if t in self.by_table}
        )
        return deleted

    # -- writing -----------------------------------------------------------------

    def _write(
        self,
        target: TargetMapping,
        feed: Feed,
        mapped: MappedBatch,
        counts: ApplyCounts,
        linked: set[str] | None = None,
    ) -> set[str]:
        """Rows, quarantine and its resolution; returns the keys that did not map cleanly.

        Tables whose NULL references the rows linked (they name a row just written) are
        added to ``linked``, for relinking what is matched on them.
        """
        written = write_chunk(self.conn, target, feed, mapped)
        quarantined = written.quarantined
        if linked is not None:
            linked.update(table for table, _ in written.resolved)
        common = {
            "source": feed.source,
            "source_table": feed.table,
            "target_table": target.table,
        }
        control_store.quarantine_rows(self.conn, quarantined, run_id=self.run_id, **common)
        bad = {q.source_key for q in quarantined}
        clean = [k for k in mapped.source_keys.to_pylist() if k is not None and k not in bad]
        if clean:
            control_store.resolve_quarantine(self.conn, keys=clean, **common)
        counts.written += mapped.rows.num_rows - len(quarantined)
        counts.quarantined += len(quarantined)
        counts.excluded += sum(mapped.excluded.values())
        return bad

    def _delete_ids(self, table: str, ids: Sequence[str]) -> int:
        if not ids:
            return 0
        control_store.forget_unresolved(self.conn, table, ids)
        schema, _, name = table.partition(".")
        return self.conn.execute(
            sql.SQL("DELETE FROM {} WHERE id = ANY(%s::uuid[])").format(
                sql.Identifier(schema, name)
            ),
            (list(ids),),
        ).rowcount

    def _forget_excluded(
        self, stream: str, target: TargetMapping, mapped: MappedBatch, keys: set[str]
    ) -> int:
        """A record now excluded by a rule (it became a test order) leaves the target."""
        if not mapped.excluded:
            return 0
        kept = {k for k in mapped.source_keys.to_pylist() if k is not None}
        quarantined = {q.source_key for q in mapped.quarantined}
        gone = sorted(keys - kept - quarantined)
        if not gone:
            return 0
        ids = target_ids(target, self.by_table[STREAM_TABLES[stream][0]][1], gone)
        return self._forget_children(stream, {}, set(gone), everything=True) + self._delete_ids(
            target.table, ids
        )

    def _forget_children(
        self,
        stream: str,
        batches: dict[str, pa.RecordBatch],
        parents: set[str],
        *,
        everything: bool = False,
    ) -> int:
        """Children of ``parents`` the store no longer has (all of them when ``everything``)."""
        deleted = 0
        parent_target, parent_feed = self.by_table[STREAM_TABLES[stream][0]]
        parent_ids = target_ids(parent_target, parent_feed, sorted(parents))
        for table, parent_column in _CHILDREN.get(stream, ()):
            if table not in self.by_table:
                continue
            target, feed = self.by_table[table]
            keep: list[str] = []
            if not everything and table in batches:
                keys = [str(k) for k in batches[table].column("key").to_pylist() if k is not None]
                keep = target_ids(target, feed, keys)
            schema, _, name = target.table.partition(".")
            rows = self.conn.execute(
                sql.SQL(
                    "SELECT id::text FROM {} WHERE {} = ANY(%s::uuid[]) AND NOT (id = ANY(%s::uuid[]))"
                ).format(sql.Identifier(schema, name), sql.Identifier(parent_column)),
                (parent_ids, keep),
            ).fetchall()
            gone = [r[0] for r in rows]
            if not gone:
                continue
            if target.table == "rune.order_items":
                # A fresh backfill links licenses by the line's id; a line that is gone links none.
                self.conn.execute(
                    "UPDATE rune.licenses SET order_item_id = NULL WHERE order_item_id = ANY(%s::uuid[])",
                    (gone,),
                )
            self._unlink(target.table, gone)
            deleted += self._delete_ids(target.table, gone)
        return deleted

    # -- references set NULL while their row was missing -------------------------

    def _unlink(self, table: str, ids: Sequence[str]) -> None:
        """NULL the ``on_missing: null`` references to rows about to be deleted (foreign keys)."""
        for link in self.relinker.links:
            if link.reference.table != table or link.reference.take != "id" or not ids:
                continue
            schema, _, name = link.table.partition(".")
            self.conn.execute(
                sql.SQL("UPDATE {} SET {c} = NULL WHERE {c} = ANY(%s::uuid[])").format(
                    sql.Identifier(schema, name), c=sql.Identifier(link.column)
                ),
                (list(ids),),
            )

    def _link_licenses(self, order_keys: list[str]) -> None:
        """What ``store_backfill._link_licenses`` does, for the changed orders' lines."""
        target, feed = self.by_table["orders"]
        ids = target_ids(target, feed, order_keys)
        self.conn.execute(
            "UPDATE rune.licenses l SET order_item_id = oi.id, price_currency = o.presentment_currency "
            "FROM rune.order_items oi JOIN rune.orders o ON o.id = oi.order_id "
            "WHERE oi.shopify_line_id = l.shopify_line_id AND o.id = ANY(%s::uuid[]) "
            "AND (l.order_item_id, l.price_currency) IS DISTINCT FROM (oi.id, o.presentment_currency)",
            (ids,),
        )

    # -- customers ---------------------------------------------------------------

    def _placements(
        self,
    ) -> tuple[dict[str, CustomerIdentity], dict[str, str], list[MemberAccount]]:
        """Every customer the target knows, where each is now, and the members."""
        customers: dict[str, CustomerIdentity] = {}
        now: dict[str, str] = {}
        for cid, email, member, can_login in self.conn.execute(
            "SELECT shopify_customer_id::text, email, legacy_member_id, can_login FROM rune.accounts "
            "WHERE shopify_customer_id IS NOT NULL"
        ).fetchall():
            customers[cid] = CustomerIdentity(cid, int(cid), email)
            now[cid] = (
                "merged"
                if member is not None
                else "own_account"
                if can_login
                else "own_account_no_login"
            )
        members = [
            MemberAccount(r[0], int(r[1]), r[2], bool(r[3]))
            for r in self.conn.execute(
                "SELECT id::text, legacy_member_id, email, can_login FROM rune.accounts "
                "WHERE legacy_member_id IS NOT NULL"
            ).fetchall()
        ]
        return customers, now, members

    def _identities(
        self, target: TargetMapping, feed: Feed, batch: pa.RecordBatch
    ) -> list[CustomerIdentity]:
        mapped = map_batch(target, feed, batch, lookups=self.references.lookup)
        return [
            CustomerIdentity(str(key), cid, email)
            for key, cid, email in zip(
                mapped.source_keys.to_pylist(),
                mapped.rows.column("shopify_customer_id").to_pylist(),
                mapped.rows.column("email").to_pylist(),
                strict=True,
            )
        ]

    def _apply_customers(self, records: list[ShopifyRecord], counts: ApplyCounts) -> None:
        target, feed = self.by_table["customers"]
        known, now, members = self._placements()
        changed = self._identities(
            target, feed, flatten_records("customers", records).batches["customers"]
        )
        everyone = {**known, **{c.key: c for c in changed}}
        plan = plan_identity_merge(everyone.values(), members)
        # Customers the change moved without changing themselves: read them again.
        moved = sorted(
            k
            for k in everyone
            if k not in {c.key for c in changed} and plan.outcome(k) != now.get(k)
        )
        if moved:
            records = records + self.fetch("customers", moved)
        batch = flatten_records("customers", records).batches["customers"]
        keys = [str(k) for k in batch.column("key").to_pylist()]
        own_ids = dict(zip(keys, target_ids(target, feed, keys), strict=True))
        follow_later = self._move_out(plan, keys, now, own_ids)
        record_identity(
            self.conn, plan, batch, IdentitySummary(), TableSummary(feed.qualified, target.table)
        )
        losers = {rule.rule: frozenset(plan.no_login) for rule in feed.dedup}
        mapped = map_batch(
            target,
            feed,
            batch,
            references=self.references,
            dedup_losers=losers,
            lookups=self.references.lookup,
        )
        merged_rows = len(set(keys) & set(plan.merged))
        mapped = write_merged(self.conn, mapped, plan, TableSummary(feed.qualified, target.table))
        bad = self._write(target, feed, mapped, counts)
        for member_id, own_id in follow_later:
            self.conn.execute(
                "UPDATE rune.orders SET account_id = %s WHERE account_id = %s", (own_id, member_id)
            )
        counts.written += merged_rows
        counts.clean_keys = set(keys) - bad

    def _move_out(
        self, plan: IdentityPlan, keys: list[str], now: dict[str, str], own_ids: dict[str, str]
    ) -> list[tuple[str, str]]:
        """A customer changing between merged and own account leaves its old place first.

        Its orders follow it (a fresh backfill points them at its new account), and the
        unique ``shopify_customer_id`` is free before the new place takes it. Returns the
        (member account, own account) pairs whose orders move once the own account exists.
        """
        later: list[tuple[str, str]] = []
        for key in keys:
            before, after = now.get(key), plan.outcome(key)
            if before is None or (before == "merged") == (after == "merged"):
                continue
            own_id = own_ids[key]
            if after == "merged":
                self.conn.execute(
                    "UPDATE rune.orders SET account_id = %s WHERE account_id = %s",
                    (plan.merged[key], own_id),
                )
                self._delete_ids("rune.accounts", [own_id])
                continue
            row = self.conn.execute(
                "UPDATE rune.accounts SET shopify_customer_id = NULL WHERE shopify_customer_id = %s "
                "AND legacy_member_id IS NOT NULL RETURNING id::text",
                (int(key),),
            ).fetchone()
            if row is not None:
                later.append((str(row[0]), own_id))
        return later

    def _delete_customers(self, keys: Sequence[str]) -> int:
        """Shopify deletes only customers without orders: the own account goes, a merge is undone."""
        target, feed = self.by_table["customers"]
        ids = target_ids(target, feed, keys)
        numbers = [int(k) for k in keys if k.isdigit()]
        self.conn.execute(
            "UPDATE rune.accounts SET shopify_customer_id = NULL WHERE shopify_customer_id = ANY(%s) "
            "AND legacy_member_id IS NOT NULL",
            (numbers,),
        )
        return self._delete_ids("rune.accounts", ids)


def target_ids(target: TargetMapping, feed: Feed, keys: Sequence[str]) -> list[str]:
    """The target ids of source keys, by the mapping's own id rule (``uuid_from_key(key, ...)``)."""
    if not keys:
        return []
    rule = feed.id_rule or target.id_rule
    batch = pa.record_batch({"key": pa.array(list(keys), pa.string())})
    values, _errors = _Evaluation(batch).run(rule.expr, f"{target.table}.id")
    return [str(v) for v in values.to_pylist() if v is not None]


class ShopifyFollower:
    """Polls the store's streams into Rune and applies webhook changes in between.

    One instance per target (``run_sync`` holds the follower lock while it runs). Not
    thread-safe: :meth:`run` (or the caller of :meth:`poll_once`) is the only thread that
    applies; :meth:`submit` may be called from any thread (the webhook receiver's).
    """

    def __init__(
        self,
        client: ShopifyClient,
        postgres_url: str,
        mappings: MappingSet,
        *,
        options: FollowOptions | None = None,
        run_id: str | None = None,
    ) -> None:
        self.client = client
        self.postgres_url = postgres_url
        self.options = options or FollowOptions()
        self.feeds = [(t, f) for t, f in select_feeds(mappings, None) if f.source == STORE_SOURCE]
        self.run_id = run_id
        self.stats = FollowStats()
        self.error: BaseException | None = None
        self.polled = threading.Event()  # set after the first complete poll
        self._changes: queue.Queue[WebhookChange] = queue.Queue()
        self._seen: dict[tuple[str, str], str] = {}
        self._conn: psycopg.Connection[Any] | None = None
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None

    @classmethod
    def from_settings(
        cls,
        settings: Settings,
        mappings: MappingSet | None = None,
        *,
        options: FollowOptions | None = None,
    ) -> ShopifyFollower:
        return cls(
            ShopifyClient.from_settings(settings),
            settings.require("postgres_url"),
            mappings or load_mappings(),
            options=options,
        )

    # -- one pass ----------------------------------------------------------------

    def streams(self) -> list[str]:
        tables = {f.table for _, f in self.feeds}
        return [
            s
            for s in self.options.streams
            if s in STREAM_TABLES and any(t in tables for t in STREAM_TABLES[s])
        ]

    def check(self) -> None:
        """Every followed stream has a checkpoint to start from (the store backfill left it).

        Raises:
            ConfigError: a stream was never backfilled from the Admin API, or its bulk
                export is unfinished.
        """
        conn = self._connection()
        try:
            for stream in self.streams():
                position = _TransactionCheckpoints(conn).load(stream)
                if position is None or position.phase != "incremental" or not position.since:
                    raise ConfigError(
                        f"no catch-up checkpoint for {source_name(stream)}: the store was not "
                        "backfilled from the Admin API (a CSV backfill has no cursor); run "
                        "'runeshift backfill' with shopify_base_url set, or sync with --no-shopify"
                    )
        finally:
            conn.rollback()

    def poll_once(self) -> FollowStats:
        """Read every stream's window and apply it, each page committed with its checkpoint."""
        conn = self._connection()
        try:
            applier = self._applier(conn)
            for stream in self.streams():
                self._poll_stream(conn, applier, stream)
            if "products" in self.streams():
                self._poll_deletions(conn, applier)
        except BaseException:
            conn.rollback()
            raise
        self.stats.polls += 1
        self.stats.last_poll_finished = time.monotonic()
        self.polled.set()
        return self.stats

    def submit(self, change: WebhookChange) -> None:
        """Queue a verified webhook change; the follower's thread applies it promptly."""
        self._changes.put(change)
        self._wake.set()

    def apply_webhooks(self) -> int:
        """Apply every queued webhook change (current state fetched by id); returns how many."""
        pending: list[WebhookChange] = []
        with contextlib.suppress(queue.Empty):
            while True:
                pending.append(self._changes.get_nowait())
        if not pending:
            return 0
        conn = self._connection()
        try:
            applier = self._applier(conn)
            for stream in self.streams():
                mine = [c for c in pending if c.stream == stream]
                gone = sorted({c.record_id for c in mine if c.deleted})
                present = sorted({c.record_id for c in mine if not c.deleted} - set(gone))
                if gone:
                    self.stats.stream(stream).rows_deleted += applier.delete(stream, gone)
                if present:
                    self._apply_records(applier, stream, self._fetch(stream, present))
            conn.commit()
        except BaseException:
            conn.rollback()
            raise
        self.stats.webhooks_applied += len(pending)
        return len(pending)

    def _poll_stream(
        self, conn: psycopg.Connection[Any], applier: StoreChangeApplier, stream: str
    ) -> None:
        checkpoints = _TransactionCheckpoints(conn)
        for batch in run_incremental(
            self.client, stream, None, self.options.lookback, checkpoints=checkpoints
        ):
            self._apply_records(applier, stream, batch.records)
            checkpoints.save(stream, batch.position)
            conn.commit()
        conn.commit()  # the window's end, saved by run_incremental after its last page

    def _poll_deletions(self, conn: psycopg.Connection[Any], applier: StoreChangeApplier) -> None:
        checkpoints = _TransactionCheckpoints(conn)
        since = None
        if checkpoints.load(DELETIONS_STREAM) is None:
            products = checkpoints.load("products")
            since = _parse(products.since) if products is not None and products.since else None
        for batch in run_incremental(
            self.client, DELETIONS_STREAM, since, self.options.lookback, checkpoints=checkpoints
        ):
            keys = [
                key
                for r in batch.records
                if r.data.get("subjectType") == "PRODUCT"
                and (key := numeric_id(r.data.get("subjectId"))) is not None
            ]
            if keys:
                self.stats.stream("products").rows_deleted += applier.delete("products", keys)
                for key in keys:
                    self._seen.pop(("products", key), None)
            checkpoints.save(DELETIONS_STREAM, batch.position)
            conn.commit()
        conn.commit()

    def _apply_records(
        self, applier: StoreChangeApplier, stream: str, records: Sequence[ShopifyRecord]
    ) -> None:
        counts = self.stats.stream(stream)
        counts.records += len(records)
        fresh = [r for r in records if self._seen.get((stream, record_key(r))) != _version(r)]
        counts.skipped_seen += len(records) - len(fresh)
        if not fresh:
            return
        result = applier.apply(stream, fresh)
        counts.rows_written += result.written
        counts.rows_deleted += result.deleted
        counts.rows_relinked += result.relinked
        counts.quarantined += result.quarantined
        counts.excluded += result.excluded
        if len(self._seen) > SEEN_LIMIT:
            self._seen.clear()
        # Only what mapped cleanly is remembered: a quarantined order (its customer not
        # there yet) is tried again when the lookback reads it next time.
        for record in fresh:
            key = record_key(record)
            if key in result.clean_keys:
                self._seen[(stream, key)] = _version(record)

    def _fetch(self, stream: str, ids: list[str]) -> list[ShopifyRecord]:
        """The current records with these numeric ids (``id:1 OR id:2``, 50 at a time)."""
        spec = stream_spec(stream)
        found: list[ShopifyRecord] = []
        for start in range(0, len(ids), 50):
            search = " OR ".join(f"id:{i}" for i in ids[start : start + 50])
            for page in read_pages(self.client, spec, search):
                found.extend(page.records)
        return found

    def _applier(self, conn: psycopg.Connection[Any]) -> StoreChangeApplier:
        return StoreChangeApplier(conn, self.feeds, run_id=self.run_id, fetch=self._fetch)

    def _connection(self) -> psycopg.Connection[Any]:
        if self._conn is None or self._conn.closed:
            self._conn = pg_connect(self.postgres_url)
        return self._conn

    # -- as a thread -------------------------------------------------------------

    def run(self, stop: threading.Event) -> None:
        """Poll every ``poll_interval`` and apply webhooks as they come, until ``stop``.

        Transient failures (Shopify or Postgres unreachable, throttled for too long) are
        recorded in ``stats.last_error`` and retried after ``error_backoff``; a
        configuration or fatal error ends the loop and is kept in ``error``.
        """
        next_poll = 0.0
        while not stop.is_set():
            try:
                self.apply_webhooks()
                if time.monotonic() >= next_poll:
                    self.poll_once()
                    next_poll = time.monotonic() + self.options.poll_interval
                self.stats.last_error = None
            except (TransientError, psycopg.OperationalError, OSError) as exc:
                self.stats.last_error = f"{type(exc).__name__}: {exc}"
                self._drop_connection()
                stop.wait(self.options.error_backoff)
                continue
            except BaseException as exc:
                self.error = exc
                self.stats.last_error = f"{type(exc).__name__}: {exc}"
                return
            self._wake.wait(max(0.0, min(next_poll - time.monotonic(), 1.0)))
            self._wake.clear()

    def start(self, stop: threading.Event) -> None:
        self._thread = threading.Thread(
            target=self.run, args=(stop,), name="shopify-follower", daemon=True
        )
        self._thread.start()

    def wake(self) -> None:
        """Cut the wait between polls short (to stop, or to apply a webhook now)."""
        self._wake.set()

    def join(self, timeout: float | None = None) -> None:
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
        self.close()

    def close(self) -> None:
        self._drop_connection()
        self.client.close()

    def _drop_connection(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(psycopg.Error):
                self._conn.close()
        self._conn = None


def _version(record: ShopifyRecord) -> str:
    """A record version: ``updatedAt`` plus a digest of the data (two edits in one second)."""
    digest = hashlib.sha1(
        json.dumps(record.data, sort_keys=True, default=str).encode(), usedforsecurity=False
    ).hexdigest()
    return f"{record.updated_at}|{digest}"


def _parse(text: str) -> datetime:
    value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def follow_lag_seconds(position: Any, now: datetime | None = None) -> float | None:
    """How far a stream's checkpoint is behind now (its ``since``: applied up to there)."""
    since = position.get("since") if isinstance(position, dict) else None
    if not since:
        return None
    return round(max(0.0, ((now or datetime.now(UTC)) - _parse(str(since))).total_seconds()), 3)


class ShopifyFollowRun:
    """The follower (and, when asked, the webhook receiver) running beside ``run_sync``."""

    def __init__(
        self,
        follower: ShopifyFollower,
        receiver: Any | None,
        on_failure: Callable[[], None] | None = None,
    ) -> None:
        self.follower = follower
        self.receiver = receiver
        self.on_failure = on_failure
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> ShopifyFollowRun:
        if self.receiver is not None:
            self.receiver.start()
        self._thread = threading.Thread(target=self._run, name="shopify-follower", daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        self.follower.run(self._stop)
        if self.follower.error is not None and self.on_failure is not None:
            self.on_failure()  # a follower that stopped for good stops the sync with it

    def finish(self, *, wait: bool, timeout: float) -> dict[str, Any]:
        """Stop (after one complete poll when ``wait``); returns the summary for the run."""
        caught_up = self.follower.polled.wait(timeout) if wait else self.follower.polled.is_set()
        self.stop()
        summary = self.follower.stats.as_dict()
        summary["caught_up"] = caught_up and self.follower.error is None
        summary["error"] = None if self.follower.error is None else str(self.follower.error)
        if self.receiver is not None:
            summary["webhooks"] = {"url": self.receiver.url, **self.receiver.stats.as_dict()}
        return summary

    def stop(self) -> None:
        self._stop.set()
        if self.receiver is not None:
            with contextlib.suppress(OSError):
                self.receiver.stop()
        self.follower.wake()
        if self._thread is not None:
            self._thread.join(timeout=30)
        self.follower.close()


def start_shopify_follow(
    settings: Settings,
    mappings: MappingSet,
    *,
    enabled: bool | None,
    poll_interval: float = FollowOptions.poll_interval,
    webhook_port: int | None = None,
    on_failure: Callable[[], None] | None = None,
) -> ShopifyFollowRun | None:
    """The Shopify part of ``runeshift sync``: None when it is off.

    ``enabled=None`` follows the store when ``shopify_base_url`` is set. The webhook
    receiver listens on ``webhook_port`` (0: any free port) when it is given.
    ``on_failure`` is called (from the follower's thread) when the follower stops for good.

    Raises:
        ConfigError: the store has no checkpoint to follow from, or webhooks are asked
            for without ``shopify_webhook_secret``.
    """
    if enabled is False or (enabled is None and not settings.shopify_base_url):
        return None
    follower = ShopifyFollower.from_settings(
        settings, mappings, options=FollowOptions(poll_interval=poll_interval)
    )
    try:
        follower.check()
        receiver = None
        if webhook_port is not None:
            from runeshift.shopify_webhooks import PersistedEvents, WebhookReceiver

            receiver = WebhookReceiver(
                settings.shopify_webhook_secret,
                follower.submit,
                port=webhook_port,
                seen=PersistedEvents(settings.require("postgres_url")),
            )
    except BaseException:
        follower.close()
        raise
    return ShopifyFollowRun(follower, receiver, on_failure).start()
