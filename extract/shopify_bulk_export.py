"""Full export of a Shopify stream with a Bulk Operation, resumable across kill -9.

Design note: the export is a small state machine whose state is the stream's
``StreamPosition`` (``extract/shopify_checkpoints.py``):

1. start ``bulkOperationRunQuery`` and save ``phase='bulk'`` with the operation
   id and its ``createdAt`` *before* anything else, so a restarted process
   polls the same operation (Shopify allows one bulk query per shop at a time,
   so starting a second one would fail anyway). If the process died between
   starting and saving, Shopify answers OPERATION_IN_PROGRESS and the running
   operation is adopted when its query is ours;
2. poll ``node(id:)`` with growing intervals until a terminal status;
3. stream the JSONL to an on-disk spool (``JsonlAssembler``), reassemble
   children into parents, and hand records over in batches; after each batch
   is consumed ``handed_over`` is saved, so a resumed run skips what was
   already handed over (result files are immutable for 7 days);
4. on FAILED/CANCELED with ``partialDataUrl``: hand over the partial data, then
   read the whole stream with paginated queries and hand over every record
   that the partial data lacked or had differently (a partial file can cut a
   parent's children short). Without partial data the operation is restarted
   (``max_restarts``), then the paginated read does the whole stream. EXPIRED
   restarts. Nothing is dropped silently;
5. save ``phase='incremental', since=<operation createdAt>``: the catch-up
   starts where the export's snapshot began (minus its lookback).
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from extract.shopify_checkpoints import CheckpointStore, StreamPosition
from extract.shopify_client import ShopifyClient
from extract.shopify_jsonl_assembler import JsonlAssembler
from extract.shopify_page_reader import read_pages
from extract.shopify_streams import ShopifyBatch, ShopifyRecord, StreamSpec, stream_spec
from runeshift.errors import ConfigError, FatalError, TransientError

RUN_MUTATION = (
    "mutation Run($query: String!) { bulkOperationRunQuery(query: $query) { "
    "bulkOperation { id status createdAt } userErrors { field message code } } }"
)
RUN_MUTATION_GROUPED = (
    "mutation Run($query: String!, $groupObjects: Boolean) { "
    "bulkOperationRunQuery(query: $query, groupObjects: $groupObjects) { "
    "bulkOperation { id status createdAt } userErrors { field message code } } }"
)
STATUS_QUERY = (
    "query Status($id: ID!) { node(id: $id) { ... on BulkOperation { id status errorCode "
    "createdAt completedAt objectCount rootObjectCount fileSize url partialDataUrl query } } }"
)
CURRENT_QUERY = "{ currentBulkOperation(type: QUERY) { id status createdAt query } }"
TERMINAL = frozenset({"COMPLETED", "FAILED", "CANCELED", "EXPIRED"})


@dataclass(frozen=True)
class BulkOptions:
    """Knobs of a bulk export; the defaults suit a real shop."""

    batch_size: int = 500
    poll_initial: float = 0.5
    poll_max: float = 15.0
    max_wait: float = 6 * 3600.0
    group_objects: bool | None = None
    max_restarts: int = 1
    spool_dir: Path | None = None


@dataclass
class BulkExportReport:
    """What one export did (filled in while it runs)."""

    stream: str
    operation_ids: list[str] = field(default_factory=list)
    resumed: bool = False
    adopted: bool = False
    final_status: str = ""
    error_code: str | None = None
    object_count: int = 0
    records: int = 0
    partial_records: int = 0
    fallback_records: int = 0
    skipped_on_resume: int = 0
    polls: int = 0


@dataclass(frozen=True)
class _Operation:
    id: str
    status: str
    created_at: str
    error_code: str | None = None
    url: str | None = None
    partial_data_url: str | None = None
    object_count: int = 0

    @classmethod
    def from_node(cls, node: dict[str, Any]) -> _Operation:
        return cls(
            id=str(node["id"]),
            status=str(node["status"]),
            created_at=str(node.get("createdAt") or ""),
            error_code=node.get("errorCode"),
            url=node.get("url"),
            partial_data_url=node.get("partialDataUrl"),
            object_count=int(node.get("objectCount") or 0),
        )


def run_bulk_export(
    client: ShopifyClient,
    stream: str,
    checkpoints: CheckpointStore,
    *,
    options: BulkOptions | None = None,
    report: BulkExportReport | None = None,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> Iterator[ShopifyBatch]:
    """Export every record of ``stream`` through a bulk operation, in batches.

    Resumes the operation named by the stream's checkpoint if there is one.
    The consumer must make each batch durable before asking for the next: that
    is when its position is saved.

    Raises:
        ConfigError: unknown stream, or the token lacks the read scope.
        TransientError: the operation did not finish within ``max_wait``
            (rerun: the id is checkpointed), or the network gave up.
        FatalError: the result file is inconsistent.
    """
    opts = options or BulkOptions()
    spec = stream_spec(stream)
    rep = report if report is not None else BulkExportReport(stream=stream)
    position = checkpoints.load(stream)
    if position is not None and position.phase == "bulk" and position.bulk_operation_id:
        rep.resumed = True
    else:
        position = _start(client, spec, opts, rep, sleep, clock)
        checkpoints.save(stream, position)
    assert position.bulk_operation_id is not None
    rep.operation_ids.append(position.bulk_operation_id)
    restarts = 0
    while True:
        op = _wait(client, position.bulk_operation_id, opts, rep, sleep, clock)
        rep.final_status, rep.error_code, rep.object_count = (
            op.status,
            op.error_code,
            op.object_count,
        )
        if op.status == "COMPLETED":
            if op.url:
                yield from _hand_over_file(client, spec, op.url, position, checkpoints, opts, rep)
            break
        if op.error_code == "ACCESS_DENIED":
            raise ConfigError(
                f"bulk export of {stream} failed with ACCESS_DENIED; grant the token in "
                "RUNESHIFT_SHOPIFY_TOKEN the read scope for it (orders also need read_all_orders)"
            )
        if op.partial_data_url and op.status != "EXPIRED":
            yield from _recover_from_partial(client, spec, op, position, checkpoints, opts, rep)
            break
        if op.status == "EXPIRED" or restarts < opts.max_restarts:
            restarts += 1
            position = _start(client, spec, opts, rep, sleep, clock)
            checkpoints.save(stream, position)
            assert position.bulk_operation_id is not None
            rep.operation_ids.append(position.bulk_operation_id)
            continue
        yield from _batches(spec, _count(read_all(client, spec), rep, "fallback"), position, opts)
        break
    checkpoints.save(stream, StreamPosition(phase="incremental", since=position.bulk_created_at))


def read_all(client: ShopifyClient, spec: StreamSpec) -> Iterator[ShopifyRecord]:
    """Every record of the stream through paginated queries (the bulk fallback)."""
    for page in read_pages(client, spec, None):
        yield from page.records


def _start(
    client: ShopifyClient,
    spec: StreamSpec,
    opts: BulkOptions,
    rep: BulkExportReport,
    sleep: Callable[[float], None],
    clock: Callable[[], float],
) -> StreamPosition:
    query = spec.bulk_query()
    deadline = clock() + opts.max_wait
    delay = opts.poll_initial
    while True:
        if opts.group_objects is None:
            response = client.graphql(RUN_MUTATION, {"query": query})
        else:
            response = client.graphql(
                RUN_MUTATION_GROUPED, {"query": query, "groupObjects": opts.group_objects}
            )
        payload = response.data.get("bulkOperationRunQuery") or {}
        errors = payload.get("userErrors") or []
        operation = payload.get("bulkOperation")
        if not errors and isinstance(operation, dict):
            return StreamPosition(
                phase="bulk",
                bulk_operation_id=str(operation["id"]),
                bulk_created_at=str(operation.get("createdAt") or ""),
            )
        if not any(e.get("code") == "OPERATION_IN_PROGRESS" for e in errors):
            messages = "; ".join(str(e.get("message")) for e in errors) or "no operation returned"
            raise FatalError(f"bulkOperationRunQuery for {spec.name} refused: {messages}")
        current = client.graphql(CURRENT_QUERY).data.get("currentBulkOperation")
        if isinstance(current, dict) and _same_query(str(current.get("query", "")), query):
            # Our own operation, started by a run that died before checkpointing it.
            rep.adopted = True
            return StreamPosition(
                phase="bulk",
                bulk_operation_id=str(current["id"]),
                bulk_created_at=str(current.get("createdAt") or ""),
            )
        if clock() >= deadline:
            raise TransientError(
                f"another bulk query ({(current or {}).get('id')}) has been running on this shop "
                f"for over {opts.max_wait:.0f}s; Shopify allows one at a time, retry later"
            )
        sleep(delay)
        delay = min(opts.poll_max, delay * 2)


def _wait(
    client: ShopifyClient,
    operation_id: str,
    opts: BulkOptions,
    rep: BulkExportReport,
    sleep: Callable[[float], None],
    clock: Callable[[], float],
) -> _Operation:
    deadline = clock() + opts.max_wait
    delay = opts.poll_initial
    while True:
        node = client.graphql(STATUS_QUERY, {"id": operation_id}).data.get("node")
        rep.polls += 1
        if not isinstance(node, dict):
            raise FatalError(
                f"bulk operation {operation_id} is unknown to Shopify; delete the checkpoint "
                "row in runeshift.source_positions to start the export over"
            )
        op = _Operation.from_node(node)
        if op.status in TERMINAL:
            return op
        if clock() >= deadline:
            raise TransientError(
                f"bulk operation {operation_id} still {op.status} after {opts.max_wait:.0f}s; "
                "rerun to keep polling it (its id is checkpointed)"
            )
        sleep(delay)
        delay = min(opts.poll_max, delay * 2)


def _hand_over_file(
    client: ShopifyClient,
    spec: StreamSpec,
    url: str,
    position: StreamPosition,
    checkpoints: CheckpointStore,
    opts: BulkOptions,
    rep: BulkExportReport,
) -> Iterator[ShopifyBatch]:
    with JsonlAssembler(spec, spool_dir=opts.spool_dir) as assembler:
        assembler.feed(
            client.download_lines(url), source=f"bulk result {position.bulk_operation_id}"
        )
        rep.skipped_on_resume = position.handed_over
        records = _count(assembler.records(skip=position.handed_over), rep, "records")
        yield from _batches(spec, records, position, opts, checkpoints)


def _recover_from_partial(
    client: ShopifyClient,
    spec: StreamSpec,
    op: _Operation,
    position: StreamPosition,
    checkpoints: CheckpointStore,
    opts: BulkOptions,
    rep: BulkExportReport,
) -> Iterator[ShopifyBatch]:
    # Digests of what the partial file held: ~60 bytes per record, so 1M records ~ 60 MB.
    seen: dict[str, bytes] = {}
    assert op.partial_data_url is not None
    with JsonlAssembler(spec, spool_dir=opts.spool_dir) as assembler:
        assembler.feed(client.download_lines(op.partial_data_url), source=f"partial {op.id}")

        def partial() -> Iterator[ShopifyRecord]:
            for index, record in enumerate(assembler.records(allow_orphans=True)):
                seen[record.id] = _digest(record)
                if index >= position.handed_over:
                    yield record

        rep.skipped_on_resume = position.handed_over
        records = _count(partial(), rep, "partial_records")
        yield from _batches(spec, records, position, opts, checkpoints)

    def rest() -> Iterator[ShopifyRecord]:
        for record in read_all(client, spec):
            if seen.get(record.id) != _digest(record):
                yield record

    final = position.advanced(handed_over=position.handed_over + rep.partial_records)
    yield from _batches(spec, _count(rest(), rep, "fallback_records"), final, opts)


def _batches(
    spec: StreamSpec,
    records: Iterable[ShopifyRecord],
    position: StreamPosition,
    opts: BulkOptions,
    checkpoints: CheckpointStore | None = None,
) -> Iterator[ShopifyBatch]:
    """Batches of records; with ``checkpoints``, ``handed_over`` is saved after each one."""
    batch: list[ShopifyRecord] = []
    for record in records:
        batch.append(record)
        if len(batch) >= opts.batch_size:
            position = position.advanced(handed_over=position.handed_over + len(batch))
            yield ShopifyBatch(spec.name, batch, position)
            if checkpoints is not None:
                checkpoints.save(spec.name, position)
            batch = []
    if batch:
        position = position.advanced(handed_over=position.handed_over + len(batch))
        yield ShopifyBatch(spec.name, batch, position)
        if checkpoints is not None:
            checkpoints.save(spec.name, position)


def _count(
    records: Iterable[ShopifyRecord], rep: BulkExportReport, counter: str
) -> Iterator[ShopifyRecord]:
    for record in records:
        setattr(rep, counter, getattr(rep, counter) + 1)
        if counter != "records":
            rep.records += 1
        yield record


def _digest(record: ShopifyRecord) -> bytes:
    return hashlib.sha1(json.dumps(record.data, sort_keys=True).encode()).digest()


def _same_query(a: str, b: str) -> bool:
    return " ".join(a.split()) == " ".join(b.split())
