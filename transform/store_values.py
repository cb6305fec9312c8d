"""Transforms for the Shopify store's records: SKU conventions, plan titles, names.

The store encodes what a product is in its SKUs (``script-<id>-monthly``,
``script-<id>-lifetime``, ``instances-<n>``); Rune stores it as columns
(``products.kind``, ``products.script_id``, ``prices.billing_interval``,
``prices.instance_slots``). A SKU that follows none of the conventions is not an
error: it is an ``other`` product (kind) with NULL script and slots, counted.
"""

from __future__ import annotations

import re

import pyarrow as pa
import pyarrow.compute as pc

from transform.registry import TransformResult, transform
from transform.row_errors import as_array

_TEXT = (pa.string(), pa.large_string())
_TEXT_OR_LIST = (*_TEXT, pa.list_(pa.string()), pa.large_list(pa.string()))
_SCRIPT_SKU = re.compile(r"^script-(?P<id>[0-9]{1,18})-(?P<plan>[a-z]+)$")
_INSTANCES_SKU = re.compile(r"^instances-(?P<n>[0-9]{1,9})$")
_INTERVALS = {"monthly": "month", "lifetime": "lifetime"}


def _sku_lists(values: pa.Array) -> list[list[str]]:
    """Each row's SKUs (one for a text column, several for a list of variant SKUs)."""
    arr = as_array(values)
    rows: list[list[str]] = []
    for value in arr.to_pylist():
        items = value if isinstance(value, list) else [value]
        rows.append([str(v).strip().lower() for v in items if v is not None and str(v).strip()])
    return rows


@transform("sku_script_id", input_types=_TEXT_OR_LIST, output_type=pa.int64())
def sku_script_id(values: pa.Array) -> TransformResult:
    """The legacy script id a SKU names: ``'script-42-monthly'`` -> ``42``; else null.

    Given a list (a product's variant SKUs) the first script SKU decides. Whether the
    script still exists (retired, unknown) is for the mapping's reference to decide.
    """
    out: list[int | None] = []
    for skus in _sku_lists(values):
        match = next((m for m in map(_SCRIPT_SKU.match, skus) if m), None)
        out.append(int(match["id"]) if match else None)
    return TransformResult(pa.array(out, pa.int64()))


@transform("sku_product_kind", input_types=_TEXT_OR_LIST, output_type=pa.string())
def sku_product_kind(values: pa.Array) -> TransformResult:
    """``script`` (a ``script-…`` SKU), ``instances`` (``instances-<n>``) or ``other``."""
    out: list[str] = []
    others = 0
    for skus in _sku_lists(values):
        if any(_SCRIPT_SKU.match(s) for s in skus):
            out.append("script")
        elif any(_INSTANCES_SKU.match(s) for s in skus):
            out.append("instances")
        else:
            out.append("other")
            others += 1
    notes = {"SKU follows no store convention -> kind 'other'": others} if others else {}
    return TransformResult(pa.array(out, pa.string()), notes=notes)


@transform("sku_instance_slots", input_types=_TEXT, output_type=pa.int64())
def sku_instance_slots(values: pa.Array) -> TransformResult:
    """``'instances-5'`` -> ``5``; null for every other SKU (and for ``instances-0``)."""
    out: list[int | None] = []
    for skus in _sku_lists(values):
        match = _INSTANCES_SKU.match(skus[0]) if skus else None
        slots = int(match["n"]) if match else None
        out.append(slots if slots else None)
    return TransformResult(pa.array(out, pa.int64()))


@transform("billing_interval", input_types=_TEXT, output_type=pa.string())
def billing_interval(values: pa.Array) -> TransformResult:
    """A plan variant's title as an interval: ``'Monthly'`` -> ``month``, ``'Lifetime'`` -> ``lifetime``.

    Any other title (``'Default Title'`` of an instance pack) has no interval: null.
    """
    lowered = pc.utf8_lower(pc.utf8_trim_whitespace(as_array(values)))
    out = [_INTERVALS.get(v) if v is not None else None for v in lowered.to_pylist()]
    return TransformResult(pa.array(out, pa.string()))


@transform("first_present", input_types=None, output_type=None)
def first_present(first: pa.Array, *rest: pa.Array) -> TransformResult:
    """The first non-null, non-blank value per row: ``first_present(processed_at, created_at)``.

    Blank text counts as missing (a CSV cell left empty), so a fallback applies.
    """
    arrays = [as_array(first), *(as_array(a) for a in rest)]
    cleaned = []
    for arr in arrays:
        if pa.types.is_string(arr.type) or pa.types.is_large_string(arr.type):
            blank = pc.equal(pc.utf8_trim_whitespace(arr), "")
            arr = pc.if_else(pc.fill_null(blank, False), pa.scalar(None, arr.type), arr)
        cleaned.append(arr.cast(arrays[0].type) if arr.type != arrays[0].type else arr)
    result = pc.coalesce(*cleaned) if len(cleaned) > 1 else cleaned[0]
    return TransformResult(result)


@transform("join_words", input_types=_TEXT, output_type=pa.string())
def join_words(first: pa.Array, *rest: pa.Array) -> TransformResult:
    """Non-blank parts joined with one space (``'Ann' + 'Lee'`` -> ``'Ann Lee'``); null if none."""
    columns = [as_array(first).to_pylist(), *(as_array(a).to_pylist() for a in rest)]
    out: list[str | None] = []
    for parts in zip(*columns, strict=True):
        words = [p.strip() for p in parts if p is not None and p.strip()]
        out.append(" ".join(words) if words else None)
    return TransformResult(pa.array(out, pa.string()))
