"""Membership in a large, fixed set of ids, for the reference checks of every chunk.

``pc.is_in(values, value_set=ids)`` builds a hash table of ``ids`` on every call: with
the 100k accounts a chunk of licenses references, that rebuild cost more than the
chunk's own lookups (about 1 CPU s per million licenses, once per referencing column).
Here the ids are sorted once, as numpy integers or, for text of one length (uuids),
as fixed-width byte strings, and each chunk is a binary search: ``O(m log n)`` for
``m`` values against ``n`` ids. Text ids of mixed lengths, and every other type, fall
back to ``pc.is_in``, which is still right, only slower.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc


def _fixed_width_text(values: pa.Array) -> np.ndarray | None:
    """Non-null text values all of one byte length, as a numpy ``S<n>`` array; else None."""
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks()
    if not pa.types.is_string(values.type) or values.null_count or len(values) == 0:
        return None
    offsets = np.frombuffer(values.buffers()[1], dtype=np.int32)[
        values.offset : values.offset + len(values) + 1
    ]
    lengths = np.diff(offsets)
    width = int(lengths[0])
    if width == 0 or not (lengths == width).all():
        return None
    chars = np.frombuffer(values.buffers()[2], dtype=np.uint8)[offsets[0] : offsets[-1]]
    fixed: np.ndarray = chars.reshape(len(values), width).view(f"S{width}").ravel()
    return fixed


def _as_numpy(values: pa.Array, kind: str) -> np.ndarray | None:
    if kind == "int":
        ints: np.ndarray = values.to_numpy(zero_copy_only=False).astype(np.int64, copy=False)
        return ints
    return _fixed_width_text(values)


class SortedIdSet:
    """The ids of one target table, answering "which of these values is one of them"."""

    def __init__(self, ids: pa.Array) -> None:
        self._ids = ids
        self._kind = "int" if pa.types.is_integer(ids.type) and not ids.null_count else "text"
        keys = _as_numpy(ids, self._kind) if len(ids) else None
        self._sorted = None if keys is None else np.sort(keys)

    def __len__(self) -> int:
        return len(self._ids)

    @property
    def type(self) -> pa.DataType:
        return self._ids.type

    def contains(self, values: pa.Array) -> pa.Array:
        """Per value, whether it is one of the ids (False for a null)."""
        if isinstance(values, pa.ChunkedArray):
            values = values.combine_chunks()
        if not values.type.equals(self._ids.type):
            values = pc.cast(values, self._ids.type)
        if self._sorted is None or len(values) == 0 or len(values) == values.null_count:
            return pc.fill_null(pc.is_in(values, value_set=self._ids), False)
        valid = pc.is_valid(values)
        present = pc.drop_null(values)
        probe = _as_numpy(present, self._kind)
        if probe is None:  # text values of mixed lengths (none is a uuid, say): rare
            return pc.fill_null(pc.is_in(values, value_set=self._ids), False)
        at = np.searchsorted(self._sorted, probe)
        at[at == len(self._sorted)] = 0
        found = self._sorted[at] == probe
        if len(present) == len(values):
            return pa.array(found, pa.bool_())
        out = np.zeros(len(values), dtype=bool)
        out[valid.to_numpy(zero_copy_only=False)] = found
        return pa.array(out, pa.bool_())
