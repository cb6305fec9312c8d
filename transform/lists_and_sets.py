"""Comma-separated text to Arrow lists and back: MySQL SET columns and IPB comma lists.

``scripts.tags`` is a MySQL SET (``'f2p,p2p'``, ``''`` for none); ``mgroup_others`` is an
Invision-style id list written with leading and trailing commas (``',7,12,'``) so the app
could search it with ``LIKE '%,7,%'``. Both become arrays in the new schema.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from transform.registry import TransformResult, transform
from transform.row_errors import as_array, count_true, errors_where
from transform.text_encoding import repair_mojibake

__all__ = ["array_to_set", "comma_list_to_int_array", "int_array_to_comma_list", "set_to_array"]

_TEXT = (pa.string(), pa.large_string())


def _text(values: pa.Array) -> pa.Array:
    arr = as_array(values)
    if pa.types.is_binary(arr.type) or pa.types.is_large_binary(arr.type):
        return repair_mojibake(arr).values
    return arr.cast(pa.string()) if pa.types.is_large_string(arr.type) else arr


def _split_dropping_empty(text: pa.Array) -> pa.ListArray:
    """Split on ``','`` and drop empty items, so ``''`` -> ``[]`` and ``',7,'`` -> ``['7']``.

    Vectorised: split, drop empty items from the flat values, and rebuild the list offsets
    from per-row counts of the items kept.
    """
    lists = pc.split_pattern(text, ",")
    items = lists.flatten()
    parents = pc.list_parent_indices(lists)
    keep = pc.not_equal(items, "")
    kept_items = pc.filter(items, keep)
    counts = np.bincount(
        pc.filter(parents, keep).to_numpy(zero_copy_only=False), minlength=len(text)
    )
    offsets = np.zeros(len(text) + 1, dtype=np.int32)
    np.cumsum(counts, out=offsets[1:])
    return pa.ListArray.from_arrays(
        pa.array(offsets, pa.int32()), kept_items, mask=pc.is_null(text)
    )


@transform(
    "set_to_array",
    input_types=_TEXT,
    output_type=pa.list_(pa.string()),
    inverse="array_to_set",
)
def set_to_array(values: pa.Array) -> TransformResult:
    """Read a MySQL SET value as an array of its members: ``'f2p,p2p'`` -> ``['f2p','p2p']``.

    ``''`` (no member set) becomes ``[]``, not null; null stays null. MySQL keeps members
    in definition order without duplicates, and so does the array.
    """
    return TransformResult(_split_dropping_empty(_text(values)))


@transform(
    "array_to_set",
    input_types=(pa.list_(pa.string()), pa.large_list(pa.string())),
    output_type=pa.string(),
    inverse="set_to_array",
)
def array_to_set(values: pa.Array) -> TransformResult:
    """Write an array back as MySQL SET text: ``['f2p','p2p']`` -> ``'f2p,p2p'``; ``[]`` -> ``''``.

    Members are written in array order; MySQL reorders them to definition order itself.
    """
    return TransformResult(pc.binary_join(as_array(values), ","))


_INTEGER = r"^\s*[+-]?[0-9]{1,18}\s*$"


@transform(
    "comma_list_to_int_array",
    input_types=(*_TEXT, pa.binary(), pa.large_binary()),
    output_type=pa.list_(pa.int64()),
    inverse="int_array_to_comma_list",
)
def comma_list_to_int_array(values: pa.Array) -> TransformResult:
    """Read a comma list of integers as an int64 array: ``',7,12,'`` -> ``[7, 12]``.

    Leading, trailing and doubled commas are ignored (``''`` -> ``[]``), spaces around items
    are allowed. A row with any item that is not an integer (``',7,abc,'``) is quarantined
    with a reason naming the item; a partial list would silently drop a group membership.
    Duplicates are kept.
    """
    text = _text(values)
    lists = _split_dropping_empty(text)
    items = lists.flatten()
    good_item = pc.match_substring_regex(items, _INTEGER)
    notes: dict[str, int] = {}
    errors = None
    numbers = pc.cast(pc.if_else(good_item, pc.utf8_trim_whitespace(items), "0"), pa.int64())
    if count_true(pc.invert(good_item)):
        parents = pc.list_parent_indices(lists)
        bad_parents = pc.filter(parents, pc.invert(good_item))
        bad_items = pc.filter(items, pc.invert(good_item))
        # One reason per bad row, naming its first bad item.
        first = pc.unique(bad_parents)
        first_item = pc.take(bad_items, pc.index_in(first, bad_parents))
        reasons = pc.binary_join_element_wise(
            "'", first_item, "' in comma list is not an integer", ""
        )
        per_row = pc.take(reasons, pc.index_in(pa.array(np.arange(len(text))), first))
        errors = errors_where(pc.is_valid(per_row), per_row)
    invalid_rows = pc.is_null(text)
    if errors is not None:
        invalid_rows = pc.or_(invalid_rows, pc.is_valid(errors))
    result = pa.ListArray.from_arrays(lists.offsets, numbers, mask=invalid_rows)
    return TransformResult(result, errors=errors, notes=notes)


@transform(
    "int_array_to_comma_list",
    input_types=(pa.list_(pa.int64()), pa.list_(pa.int32())),
    output_type=pa.string(),
    inverse="comma_list_to_int_array",
)
def int_array_to_comma_list(values: pa.Array) -> TransformResult:
    """Write an id array back in the legacy comma-list form: ``[7, 12]`` -> ``',7,12,'``.

    ``[]`` -> ``''`` (the legacy empty value, not ``','``).
    """
    as_text = as_array(values).cast(pa.list_(pa.string()))
    joined = pc.binary_join(as_text, ",")
    wrapped = pc.binary_join_element_wise(",", joined, ",", "")
    return TransformResult(pc.if_else(pc.equal(joined, ""), "", wrapped))
