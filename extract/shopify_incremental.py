"""Incremental catch-up of a Shopify stream: ``updated_at`` windows with a lookback.

Design note: the state is the stream's ``StreamPosition`` with
``phase='incremental'``: ``since`` is the ``updatedAt`` high-water mark of
what was handed over, ``window_end`` the upper bound of the window being read,
and (for deletions) ``cursor`` the last deletion event read.

A run reads one window: ``updated_at >= since - lookback AND updated_at <=
now``, sorted by UPDATED_AT, cursor-paginated with page sizes fitted to the
cost bucket. After each page is consumed ``since`` advances to the page's last
``updatedAt``; at the end it becomes the window end. Because pages are sorted
ascending, everything before ``since`` was handed over, so after ``kill -9``
the resumed window repeats at most one page (at-least-once; the loader
upserts). The lookback re-reads records whose update Shopify committed with an
earlier ``updatedAt`` than a record we already saw (updates racing the read,
clock skew between us and Shopify up to the lookback).

Deletions: Shopify exposes ``deletionEvents`` for products (and collections)
only; deleted customers and orders are not queryable and need the
``customers/delete``/``orders/delete`` webhooks or a reconciliation by id
listing (decision 0003).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta

from extract.shopify_checkpoints import CheckpointStore, StreamPosition
from extract.shopify_client import ShopifyClient
from extract.shopify_page_reader import PageSizer, read_pages
from extract.shopify_streams import ShopifyBatch, ShopifyRecord, stream_spec
from runeshift.errors import ConfigError, FatalError

DELETIONS_STREAM = "deletions"
DELETION_SUBJECT_TYPES = ("PRODUCT", "COLLECTION")
DELETIONS_QUERY = (
    "query Deletions($first: Int!, $after: String, $types: [DeletionEventSubjectType!]) { "
    "deletionEvents(first: $first, after: $after, subjectTypes: $types, sortKey: ID) { "
    "pageInfo { hasNextPage endCursor } edges { node { occurredAt subjectId subjectType } } } }"
)


def run_incremental(
    client: ShopifyClient,
    stream: str,
    since: datetime | None,
    lookback: timedelta = timedelta(minutes=5),
    *,
    checkpoints: CheckpointStore,
    until: datetime | None = None,
    now: Callable[[], datetime] = lambda: datetime.now(UTC),
) -> Iterator[ShopifyBatch]:
    """Hand over every record of ``stream`` updated since the checkpoint (or ``since``).

    The stored position wins over ``since`` (that is what makes a rerun
    resume); ``since`` is the start for a stream with no position. One batch
    per page; its position is saved when the consumer asks for the next batch.

    Raises:
        ConfigError: the stream's bulk export has not been handed over yet, or
            there is neither a checkpoint nor ``since``.
    """
    if stream == DELETIONS_STREAM:
        yield from _run_deletions(client, since, lookback, checkpoints)
        return
    spec = stream_spec(stream)
    stored = checkpoints.load(stream)
    if stored is not None and stored.phase == "bulk":
        raise ConfigError(
            f"the bulk export of {stream} (operation {stored.bulk_operation_id}) is not "
            "finished; run the export again to resume it before catching up"
        )
    start = _parse(stored.since) if stored is not None and stored.since else since
    if start is None:
        raise ConfigError(
            f"no checkpoint for shopify:{stream} and no 'since'; run the bulk export first "
            "or pass since="
        )
    window_start = start - lookback
    window_end = (until or now()).astimezone(UTC).replace(microsecond=0)
    search = f"updated_at:>='{_format(window_start)}' AND updated_at:<='{_format(window_end)}'"
    position = StreamPosition(
        phase="incremental", since=_format(start), window_end=_format(window_end)
    )
    sizer = PageSizer()
    for page in read_pages(client, spec, search, sizer=sizer):
        if page.records:
            last = page.records[-1].updated_at
            if last is not None and _parse(last) > start:
                position = position.advanced(since=last)
        yield ShopifyBatch(stream, page.records, position)
        checkpoints.save(stream, position)
    checkpoints.save(stream, position.advanced(since=_format(window_end)))


def _run_deletions(
    client: ShopifyClient,
    since: datetime | None,
    lookback: timedelta,
    checkpoints: CheckpointStore,
) -> Iterator[ShopifyBatch]:
    stored = checkpoints.load(DELETIONS_STREAM)
    cursor = stored.cursor if stored is not None else None
    # Without a cursor, events older than the export's start are not needed.
    floor = (since - lookback) if since is not None and cursor is None else None
    position = stored or StreamPosition(phase="incremental")
    while True:
        response = client.graphql(
            DELETIONS_QUERY, {"first": 250, "after": cursor, "types": list(DELETION_SUBJECT_TYPES)}
        )
        connection = response.data.get("deletionEvents")
        if not isinstance(connection, dict):
            raise FatalError("deletionEvents: response has no connection")
        records: list[ShopifyRecord] = []
        for edge in connection.get("edges") or ():
            node = edge["node"]
            occurred = str(node["occurredAt"])
            if floor is not None and _parse(occurred) < floor:
                continue
            records.append(
                ShopifyRecord(
                    stream=DELETIONS_STREAM,
                    id=str(node["subjectId"]),
                    updated_at=occurred,
                    data=node,
                )
            )
        info = connection.get("pageInfo") or {}
        cursor = info.get("endCursor") or cursor
        last = records[-1].updated_at if records else position.since
        position = position.advanced(cursor=cursor, since=last)
        yield ShopifyBatch(DELETIONS_STREAM, records, position)
        checkpoints.save(DELETIONS_STREAM, position)
        if not info.get("hasNextPage"):
            return


def _parse(text: str) -> datetime:
    value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _format(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
