"""Cursor-paginated GraphQL reads of a stream, with page sizes fitted to the cost bucket.

Used by the incremental catch-up and by the bulk exporter's fallback. A page of
records is complete: when a nested connection (an order's line items, a
product's variants) has more nodes than the page asked for, the rest are
fetched with ``node(id:)`` queries before the page is handed over, so records
have the same shape as the bulk path gives.

Page size: Shopify charges a connection ``2 + first x (cost of one node)`` up
front, so ``first`` is chosen as the largest value whose requested cost fits
``budget_fraction`` of the bucket (and Shopify's 1,000-point single-query cap),
learnt from the ``requestedQueryCost`` of the previous page.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from extract.shopify_client import ShopifyClient
from extract.shopify_jsonl_assembler import to_record
from extract.shopify_streams import ChildConnection, ShopifyRecord, StreamSpec
from runeshift.errors import ConfigError, FatalError, TransientError

MAX_PAGE_SIZE = 250
MAX_SINGLE_QUERY_COST = 1000.0


@dataclass(frozen=True)
class RecordPage:
    """One page of complete records and the cursor after it."""

    records: list[ShopifyRecord]
    end_cursor: str | None
    has_next: bool


class PageSizer:
    """Chooses ``first`` so a page's requested cost fits the bucket budget."""

    def __init__(self, initial: int = 1, budget_fraction: float = 0.5) -> None:
        # The first page is a one-node probe: its requestedQueryCost sizes the rest
        # (a guess could exceed Shopify's 1,000-point single-query cap).
        self.first = initial
        self._fraction = budget_fraction

    def update(self, first: int, requested_cost: float | None, maximum: float | None) -> None:
        """Learn the per-node cost from the last page and size the next one."""
        if requested_cost is None or first <= 0:
            return
        per_node = max(1.0, (requested_cost - 2.0) / first)
        ceiling = min(MAX_SINGLE_QUERY_COST, maximum or MAX_SINGLE_QUERY_COST)
        if 2.0 + per_node > ceiling:
            raise ConfigError(
                f"one node of this stream costs {per_node:.0f} points but the shop's bucket "
                f"holds {ceiling:.0f}; lower the nested page sizes in extract/shopify_streams.py"
            )
        budget = ceiling * self._fraction
        self.first = max(1, min(MAX_PAGE_SIZE, math.floor((budget - 2.0) / per_node)))


def read_pages(
    client: ShopifyClient,
    spec: StreamSpec,
    search: str | None,
    *,
    after: str | None = None,
    sizer: PageSizer | None = None,
) -> Iterator[RecordPage]:
    """Every page of ``spec``'s connection matching ``search``, sorted by UPDATED_AT."""
    sizer = sizer or PageSizer()
    query = spec.page_query()
    cursor = after
    while True:
        first = sizer.first
        response = client.graphql(query, {"first": first, "after": cursor, "query": search})
        status = response.cost.status
        sizer.update(first, response.cost.requested, status.maximum_available if status else None)
        connection = response.data.get(spec.root_field)
        if not isinstance(connection, dict):
            raise FatalError(f"{spec.root_field}: response has no connection")
        records = [_complete(client, spec, edge["node"]) for edge in connection.get("edges") or ()]
        page_info = connection.get("pageInfo") or {}
        cursor = page_info.get("endCursor") or cursor
        has_next = bool(page_info.get("hasNextPage"))
        yield RecordPage(records=records, end_cursor=cursor, has_next=has_next)
        if not has_next:
            return


def _complete(client: ShopifyClient, spec: StreamSpec, node: dict[str, Any]) -> ShopifyRecord:
    for child in spec.children:
        connection = node.get(child.field) or {}
        nodes = [edge["node"] for edge in connection.get("edges") or ()]
        page_info = connection.get("pageInfo") or {}
        if page_info.get("hasNextPage"):
            nodes.extend(_rest_of_children(client, spec, child, str(node["id"]), page_info))
        node[child.field] = nodes
    return to_record(spec, node)


def _rest_of_children(
    client: ShopifyClient,
    spec: StreamSpec,
    child: ChildConnection,
    parent_id: str,
    page_info: dict[str, Any],
) -> Iterator[dict[str, Any]]:
    query = spec.child_page_query(child)
    cursor = page_info.get("endCursor")
    while True:
        first = min(MAX_PAGE_SIZE, child.page_size * 4)
        response = client.graphql(query, {"id": parent_id, "first": first, "after": cursor})
        owner = response.data.get("node")
        if not isinstance(owner, dict):
            raise TransientError(
                f"{spec.name} {parent_id} vanished while its {child.field} were read; "
                "rerun the window (the deletion will arrive with the deletions stream)"
            )
        connection = owner.get(child.field) or {}
        for edge in connection.get("edges") or ():
            yield edge["node"]
        info = connection.get("pageInfo") or {}
        if not info.get("hasNextPage"):
            return
        cursor = info.get("endCursor")
