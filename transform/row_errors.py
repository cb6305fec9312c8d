"""Building the per-row error arrays and masks that transforms return.

Transforms compute a boolean mask of the rows that failed a rule and a reason (one string,
or one per row); these helpers turn that into the ``pa.string()`` errors array of a
``TransformResult`` without per-row Python.
"""

from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc


def as_array(values: pa.Array | pa.ChunkedArray) -> pa.Array:
    """A contiguous array (readers may hand over a ``ChunkedArray`` column)."""
    if isinstance(values, pa.ChunkedArray):
        if values.num_chunks == 1:
            return values.chunk(0)
        return values.combine_chunks()
    return values


def count_true(mask: pa.Array) -> int:
    """Number of true values in a boolean mask (nulls count as false)."""
    total: int | None = pc.sum(mask).as_py()
    return total or 0


def errors_where(mask: pa.Array, reason: str | pa.Array) -> pa.Array | None:
    """A string array with ``reason`` where ``mask`` is true, null elsewhere.

    Returns ``None`` when no row is flagged, so the common case allocates nothing.
    """
    if count_true(mask) == 0:
        return None
    if isinstance(reason, str):
        reason_values: pa.Array | pa.Scalar = pa.scalar(reason, pa.string())
    else:
        reason_values = reason
    filled = pc.fill_null(mask, False)
    return pc.if_else(filled, reason_values, pa.scalar(None, pa.string()))


def merge_errors(*errors: pa.Array | None) -> pa.Array | None:
    """The first non-null reason per row across several error arrays."""
    present = [e for e in errors if e is not None]
    if not present:
        return None
    if len(present) == 1:
        return present[0]
    return pc.coalesce(*present)


def null_where(values: pa.Array, mask: pa.Array | None) -> pa.Array:
    """``values`` with the rows where ``mask`` is true set to null."""
    if mask is None or count_true(mask) == 0:
        return values
    return pc.if_else(pc.fill_null(mask, False), pa.scalar(None, values.type), values)


def mask_of(errors: pa.Array | None, length: int) -> pa.Array:
    """Boolean mask of the rows that have an error."""
    if errors is None:
        return pc.is_valid(pa.nulls(length, pa.string()))
    return pc.is_valid(errors)
