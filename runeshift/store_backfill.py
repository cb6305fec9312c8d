"""The store's part of the backfill: Shopify records -> stage -> map -> load, per chunk.

Design note: ``run_backfill`` calls this after the legacy tables are loaded (the
merge needs the members' accounts, order items need the scripts). Per stream
(customers, products, orders) the records come from a ``StoreRecords`` source:
the Admin API's bulk export or the admin CSV exports, which give the same
record shapes. Each chunk of records is flattened into its source tables
(``extract/shopify_record_batches.py``), staged as Parquet, mapped by
``map_batch`` with ``mappings/store.yaml`` and loaded with its quarantined
rows, exclusion counts and one ``backfill_chunks`` row per source table in
ONE transaction, exactly like a legacy chunk, so ``read = migrated + excluded
+ quarantined`` holds per source table.

Customers are planned as a whole first (``transform/mapping_identity_merge.py``):
a customer merged into a member's account only sets that account's
``shopify_customer_id``; every other customer is an account of its own, and
each conflict is written to ``runeshift.dedup_decisions`` and the run report.
After the orders, licenses get the order line they came from
(``order_item_id``) and its presentment currency, matched by ``shopify_line_id``.

Resuming: the export is read again from the start (bulk results are ordered by
id, CSV files by line), chunks already recorded as loaded are skipped, and the
writers only touch rows whose values differ, so a rerun changes nothing. The
bulk export's own checkpoints are kept in memory; once a stream is loaded its
incremental starting point is stored in ``runeshift.source_positions``
(``shopify:<stream>``) for the catch-up.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path
from typing import Any, Protocol

import psycopg
import pyarrow as pa
import pyarrow.compute as pc

from extract.shopify_bulk_export import BulkOptions, run_bulk_export
from extract.shopify_checkpoints import InMemoryCheckpointStore, source_name
from extract.shopify_client import ShopifyClient
from extract.shopify_csv_import import read_customers_csv, read_orders_csv, read_products_csv
from extract.shopify_record_batches import STORE_SOURCE, STREAM_TABLES, flatten_records
from extract.shopify_streams import ShopifyRecord
from load import copy_writer
from load.staging_store import parquet_bytes
from runeshift import control_store
from runeshift.backfill import BackfillProgress, TableSummary, load_chunk
from runeshift.errors import ConfigError
from runeshift.settings import Settings
from transform.mapping_engine import MappedBatch, ReferenceCheck, ReferenceLookup, map_batch
from transform.mapping_identity_merge import (
    CustomerIdentity,
    IdentityPlan,
    MemberAccount,
    plan_identity_merge,
)
from transform.mapping_spec import Feed, TargetMapping

STREAM_ORDER = ("customers", "products", "orders")
DEFAULT_CHUNK_RECORDS = 500
CUSTOMER_CONFLICT_RULE = "customer_email_conflict"


class StoreRecords(Protocol):
    """Where the store's records come from (the Admin API or CSV exports)."""

    kind: str

    def batches(self, stream: str, size: int) -> Iterator[list[ShopifyRecord]]: ...

    def position(self, stream: str) -> dict[str, Any] | None: ...


class ApiStoreRecords:
    """Records from the Admin API's bulk export (decision 0003)."""

    kind = "api"

    def __init__(self, client: ShopifyClient, options: BulkOptions | None = None) -> None:
        self._client = client
        self._options = options or BulkOptions()
        self._checkpoints = InMemoryCheckpointStore()

    @classmethod
    def from_settings(cls, settings: Settings) -> ApiStoreRecords:
        return cls(ShopifyClient.from_settings(settings))

    def batches(self, stream: str, size: int) -> Iterator[list[ShopifyRecord]]:
        # Each backfill (or resumed backfill) exports afresh: chunks already loaded are
        # skipped by number, so the export's own checkpoints need not outlive the process.
        self._checkpoints.clear(stream)
        options = dataclasses.replace(self._options, batch_size=size)
        for batch in run_bulk_export(self._client, stream, self._checkpoints, options=options):
            yield batch.records

    def position(self, stream: str) -> dict[str, Any] | None:
        position = self._checkpoints.load(stream)
        return position.to_json() if position is not None else None


class CsvStoreRecords:
    """Records from the admin's CSV exports (``extract/shopify_csv_import.py``)."""

    kind = "csv"

    def __init__(
        self,
        *,
        customers: Path | None = None,
        products: Path | None = None,
        orders: Path | None = None,
    ) -> None:
        self._paths = {"customers": customers, "products": products, "orders": orders}

    def batches(self, stream: str, size: int) -> Iterator[list[ShopifyRecord]]:
        path = self._paths.get(stream)
        if path is None:
            return
        readers = {
            "customers": read_customers_csv,
            "products": read_products_csv,
            "orders": read_orders_csv,
        }
        records = iter(readers[stream](path))
        while chunk := list(islice(records, size)):
            yield chunk

    def position(self, stream: str) -> dict[str, Any] | None:
        return None  # a CSV export has no cursor to catch up from


class StoreReferences(Protocol):
    """The orchestrator's reference checks and lookups over the target (``backfill.TargetReferences``)."""

    def __call__(self, table: str, values: pa.Array) -> pa.Array: ...

    def lookup(self, table: str, match_on: str, take: str, values: pa.Array) -> pa.Array: ...

    def invalidate(self, table: str) -> None: ...


@dataclass
class IdentitySummary:
    """What the customer -> account merge decided (the report lists every conflict)."""

    customers: int = 0
    merged: int = 0
    own_accounts: int = 0
    own_accounts_no_login: int = 0
    conflicts: list[dict[str, Any]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass
class StoreBackfillResult:
    source: str
    tables: list[TableSummary]
    positions: dict[str, dict[str, Any]]
    identity: IdentitySummary
    licenses_linked: int
    interrupted: bool

    def as_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "tables": [t.as_dict() for t in self.tables],
            "positions": self.positions,
            "identity": self.identity.as_dict(),
            "licenses_linked": self.licenses_linked,
            "interrupted": self.interrupted,
        }


@dataclass
class _Context:
    conn: psycopg.Connection[Any]
    staging: Any
    backfill_id: str
    run_id: str
    references: StoreReferences
    progress: BackfillProgress | None
    budget: list[int | None]


def run_store_backfill(
    conn: psycopg.Connection[Any],
    records: StoreRecords,
    staging: Any,
    feeds: Sequence[tuple[TargetMapping, Feed]],
    *,
    backfill_id: str,
    run_id: str,
    references: StoreReferences,
    progress: BackfillProgress | None = None,
    chunk_rows: int | None = None,
    budget: list[int | None] | None = None,
) -> StoreBackfillResult:
    """Load the store's streams for ``feeds`` (the selected ``shopify.*`` feeds).

    ``budget`` holds the number of chunks still allowed (``None``: no limit); the
    run stops, resumable, when it reaches 0.
    """
    ctx = _Context(conn, staging, backfill_id, run_id, references, progress, budget or [None])
    size = chunk_rows or DEFAULT_CHUNK_RECORDS
    by_table = {f.table: (t, f) for t, f in feeds if f.source == STORE_SOURCE}
    summaries: dict[str, TableSummary] = {}
    positions: dict[str, dict[str, Any]] = {}
    identity = IdentitySummary()
    linked = 0
    interrupted = False
    for stream in STREAM_ORDER:
        tables = [t for t in STREAM_TABLES[stream] if t in by_table]
        if not tables:
            continue
        for table in tables:
            target, feed = by_table[table]
            summaries[table] = _summary_so_far(ctx, target, feed)
        started = time.monotonic()
        if stream == "customers":
            target, feed = by_table["customers"]
            done = _load_customers(ctx, records, target, feed, size, summaries, identity)
        else:
            done = _load_stream(ctx, records, stream, tables, by_table, size, summaries)
        for table in tables:
            summaries[table].seconds += time.monotonic() - started
        if not done:
            interrupted = True
            break
        position = records.position(stream)
        if position is not None:
            control_store.set_position(
                conn, source_name(stream), "shopify_cursor", position, "backfill"
            )
            positions[source_name(stream)] = position
        conn.commit()
        if stream == "orders" and "order_line_items" in by_table:
            linked = _link_licenses(conn, summaries["order_line_items"])
    return StoreBackfillResult(
        records.kind, list(summaries.values()), positions, identity, linked, interrupted
    )


def _summary_so_far(ctx: _Context, target: TargetMapping, feed: Feed) -> TableSummary:
    done = control_store.chunk_progress(ctx.conn, ctx.backfill_id, feed.source, feed.table)
    if done.chunks == 0:
        control_store.reset_exclusions(ctx.conn, feed.source, feed.table, target.table)
    summary = TableSummary(feed.qualified, target.table)
    summary.read, summary.migrated = done.read, done.migrated
    summary.excluded, summary.quarantined = done.excluded, done.quarantined
    ctx.conn.commit()
    return summary


def _out_of_budget(ctx: _Context) -> bool:
    return ctx.budget[0] is not None and ctx.budget[0] <= 0


def _spend(ctx: _Context) -> None:
    if ctx.budget[0] is not None:
        ctx.budget[0] -= 1


def _load_stream(
    ctx: _Context,
    records: StoreRecords,
    stream: str,
    tables: list[str],
    by_table: dict[str, tuple[TargetMapping, Feed]],
    size: int,
    summaries: dict[str, TableSummary],
) -> bool:
    """Products or orders: each chunk of records loads all its tables in one transaction."""
    first = by_table[tables[0]][1]
    skip = control_store.chunk_progress(ctx.conn, ctx.backfill_id, first.source, first.table).chunks
    ctx.conn.commit()
    name = f"shopify.{stream}"
    if ctx.progress:
        ctx.progress.table_started(name, 0)
    chunk_no = 0
    for chunk in records.batches(stream, size):
        chunk_no += 1
        if chunk_no <= skip:
            continue
        if _out_of_budget(ctx):
            return False
        flat = flatten_records(stream, chunk)
        for table in tables:
            target, feed = by_table[table]
            _load_chunk_of(ctx, target, feed, flat.batches[table], chunk_no, summaries[table])
        ctx.conn.commit()
        _spend(ctx)
        if ctx.progress:
            ctx.progress.advanced(name, len(chunk))
    if ctx.progress:
        ctx.progress.table_finished(name)
    return True


def _load_chunk_of(
    ctx: _Context,
    target: TargetMapping,
    feed: Feed,
    batch: pa.RecordBatch,
    chunk_no: int,
    summary: TableSummary,
    *,
    dedup_losers: dict[str, frozenset[str]] | None = None,
    plan: IdentityPlan | None = None,
) -> None:
    """Stage, map and write one chunk of one source table (inside the caller's transaction)."""
    path = f"{ctx.backfill_id}/{feed.source}/{feed.table}/chunk-{chunk_no:06d}.parquet"
    data, checksum = parquet_bytes(batch)
    ctx.staging.put(path, data)
    mapped = map_batch(
        target,
        feed,
        batch,
        references=_as_check(ctx.references),
        dedup_losers=dedup_losers,
        lookups=_as_lookup(ctx.references),
    )
    if plan is not None:
        mapped = write_merged(ctx.conn, mapped, plan, summary)
    quarantined = load_chunk(ctx.conn, target, feed, mapped)
    ctx.references.invalidate(target.table)
    reasons = {f.rule: f.reason for f in feed.exclude_rows}
    common = {
        "run_id": ctx.run_id,
        "source": feed.source,
        "source_table": feed.table,
        "target_table": target.table,
    }
    control_store.quarantine_rows(ctx.conn, quarantined, **common)
    control_store.add_exclusions(ctx.conn, mapped.excluded, reasons, **common)
    excluded = sum(mapped.excluded.values())
    migrated = mapped.read - excluded - len(quarantined)
    keys = batch.column("key").to_pylist()
    control_store.record_chunk(
        ctx.conn,
        backfill_id=ctx.backfill_id,
        source=feed.source,
        table=feed.table,
        chunk_no=chunk_no,
        lower_key=None,
        upper_key=[keys[-1] if keys else None],
        read=mapped.read,
        migrated=migrated,
        excluded=excluded,
        quarantined=len(quarantined),
        checksum=checksum,
        staged_path=path,
    )
    summary.read += mapped.read
    summary.migrated += migrated
    summary.excluded += excluded
    summary.quarantined += len(quarantined)
    summary.notes.update(mapped.notes)


def _as_check(references: StoreReferences) -> ReferenceCheck:
    return references


def _as_lookup(references: StoreReferences) -> ReferenceLookup:
    return references.lookup


def _load_customers(
    ctx: _Context,
    records: StoreRecords,
    target: TargetMapping,
    feed: Feed,
    size: int,
    summaries: dict[str, TableSummary],
    identity: IdentitySummary,
) -> bool:
    """Plan the merge over every customer, record its conflicts, then load in chunks."""
    every = [r for chunk in records.batches("customers", size) for r in chunk]
    batch = flatten_records("customers", every).batches["customers"]
    plan = _plan(ctx, target, feed, batch)
    summary = summaries["customers"]
    record_identity(ctx.conn, plan, batch, identity, summary)
    ctx.conn.commit()
    skip = control_store.chunk_progress(ctx.conn, ctx.backfill_id, feed.source, feed.table).chunks
    ctx.conn.commit()
    losers = {rule.rule: frozenset(plan.no_login) for rule in feed.dedup}
    if ctx.progress:
        ctx.progress.table_started("shopify.customers", batch.num_rows)
    for chunk_no, start in enumerate(range(0, batch.num_rows, size), start=1):
        if chunk_no <= skip:
            continue
        if _out_of_budget(ctx):
            return False
        part = batch.slice(start, size)
        _load_chunk_of(ctx, target, feed, part, chunk_no, summary, dedup_losers=losers, plan=plan)
        ctx.conn.commit()
        _spend(ctx)
        if ctx.progress:
            ctx.progress.advanced("shopify.customers", part.num_rows)
    if ctx.progress:
        ctx.progress.table_finished("shopify.customers")
    return True


def _plan(ctx: _Context, target: TargetMapping, feed: Feed, batch: pa.RecordBatch) -> IdentityPlan:
    """The merge plan, from the emails and ids exactly as the mapping computes them."""
    if not any(r.target == "email" for r in feed.columns) or not any(
        r.target == "shopify_customer_id" for r in feed.columns
    ):
        raise ConfigError(
            f"{feed.where}: the customers feed must map 'email' and 'shopify_customer_id'; "
            "the identity merge matches on them"
        )
    mapped = map_batch(target, feed, batch, lookups=_as_lookup(ctx.references))
    customers = [
        CustomerIdentity(str(key), cid, email)
        for key, cid, email in zip(
            mapped.source_keys.to_pylist(),
            mapped.rows.column("shopify_customer_id").to_pylist(),
            mapped.rows.column("email").to_pylist(),
            strict=True,
        )
    ]
    rows = ctx.conn.execute(
        "SELECT id::text, legacy_member_id, email, can_login FROM rune.accounts "
        "WHERE legacy_member_id IS NOT NULL"
    ).fetchall()
    members = [MemberAccount(r[0], int(r[1]), r[2], bool(r[3])) for r in rows]
    return plan_identity_merge(customers, members)


def record_identity(
    conn: psycopg.Connection[Any],
    plan: IdentityPlan,
    batch: pa.RecordBatch,
    identity: IdentitySummary,
    summary: TableSummary,
) -> None:
    """Conflicts into ``runeshift.dedup_decisions`` (one rule each) and the run report."""
    identity.customers = batch.num_rows
    identity.merged = len(plan.merged)
    identity.own_accounts_no_login = len(plan.no_login)
    identity.own_accounts = batch.num_rows - len(plan.merged) - len(plan.no_login)
    by_rule: dict[str, list[tuple[str, str, str, str]]] = {
        "customers_share_email": [],
        "customer_matches_several_members": [],
        "member_cannot_log_in": [],
    }
    for c in plan.conflicts:
        winner = (
            ",".join(c.competing)
            if c.rule == "customers_share_email"
            else "member:" + ",".join(c.competing)
        )
        decision = (c.email, winner, c.customer_key, "own account, can_login = false")
        by_rule[c.rule].append(decision)
        summary.dedup_decisions.append(decision)
        identity.conflicts.append(
            {
                "customer_key": c.customer_key,
                "rule": c.rule,
                "outcome": c.outcome,
                "competing": list(c.competing),
                "detail": c.detail,
            }
        )
    for rule, decisions in by_rule.items():
        control_store.replace_dedup_decisions(conn, "shopify.customers", rule, decisions)
    summary.notes["rune.accounts: customer merged into its member's account"] = len(plan.merged)


def write_merged(
    conn: psycopg.Connection[Any], mapped: MappedBatch, plan: IdentityPlan, summary: TableSummary
) -> MappedBatch:
    """Set ``shopify_customer_id`` on the members' accounts; return the rows left to insert."""
    keys = mapped.source_keys
    merged_keys = pa.array(sorted(plan.merged), pa.string())
    is_merged = pc.fill_null(pc.is_in(keys, value_set=merged_keys), False)
    if not pc.any(is_merged).as_py():
        return mapped
    merged_rows = mapped.rows.filter(is_merged)
    member_ids = [plan.merged[k] for k in pc.filter(keys, is_merged).to_pylist()]
    copy_writer.update_columns(
        conn,
        "rune.accounts",
        pa.table(
            {
                "id": pa.array(member_ids, pa.string()),
                "shopify_customer_id": merged_rows.column("shopify_customer_id"),
            }
        ),
    )
    keep = pc.invert(is_merged)
    return dataclasses.replace(
        mapped,
        rows=mapped.rows.filter(keep),
        source_keys=pc.filter(keys, keep),
        unresolved={
            column: dataclasses.replace(u, wanted=pc.filter(u.wanted, keep))
            for column, u in mapped.unresolved.items()
        },
    )


def _link_licenses(conn: psycopg.Connection[Any], summary: TableSummary) -> int:
    """Licenses bought in the store get their order line and the order's presentment currency.

    Matched by ``shopify_line_id``; only rows whose values differ are written (a rerun
    changes nothing). Licenses whose line is not in the target (a test order's line, a
    line Shopify no longer has) keep ``order_item_id`` NULL. Returns how many are linked.
    """
    with conn.transaction():
        updated = conn.execute(
            "UPDATE rune.licenses l SET order_item_id = oi.id, "
            "price_currency = o.presentment_currency "
            "FROM rune.order_items oi JOIN rune.orders o ON o.id = oi.order_id "
            "WHERE oi.shopify_line_id = l.shopify_line_id "
            "AND (l.order_item_id, l.price_currency) IS DISTINCT FROM (oi.id, o.presentment_currency)"
        ).rowcount
        row = conn.execute(
            "SELECT count(*) FROM rune.licenses WHERE order_item_id IS NOT NULL"
        ).fetchone()
    conn.commit()
    linked = int(row[0]) if row else 0
    summary.notes["rune.licenses: linked to their order line (order_item_id)"] = linked
    if updated:
        summary.notes["rune.licenses: order_item_id set by this run"] = updated
    return linked
