"""Membership in a large, fixed set of ids, for the reference checks of every chunk.

``pc.is_in(values, value_set=ids)`` builds a hash table of ``ids`` on every call: with
the 100k accounts a chunk of licenses references, that rebuild cost more than the
chunk's own lookups (about 1 CPU s per million licenses, once per referencing column).
Here the ids are sorted once, as numpy integers or, for text of one length (uuids),
by a 64-bit hash of their bytes, and each chunk is a binary search: ``O(m log n)`` for
``m`` values against ``n`` ids. Text ids of mixed lengths, and every other type, fall
back to ``pc.is_in``, which is still right, only slower.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc


def _fixed_width_text(values: pa.Array) -> np.ndarray | None:
    """Non-null text values all of one byte length, as a ``(rows, width)`` uint8 matrix
    (a view of the Arrow buffer); else None."""
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
    return chars.reshape(len(values), width)


_MIX = np.uint64(0x9E3779B97F4A7C15)


def _hash64(rows: np.ndarray) -> np.ndarray:
    """A 64-bit hash of each row of a uint8 matrix, eight bytes at a time.

    Searching sorted hashes is a binary search over integers; searching the texts
    themselves compared up to 36 bytes per step (a uuid), several times slower. A hash
    shared by two ids is found when the set is built (it then searches the texts), and
    a probe is only ever reported present after its bytes equal the id's."""
    n, width = rows.shape
    words = -(-width // 8)
    padded = np.zeros((n, words * 8), np.uint8)
    padded[:, :width] = rows
    columns = padded.view("<u8")
    h = np.zeros(n, np.uint64)
    for i in range(words):
        h ^= columns[:, i]
        h *= _MIX
        h ^= h >> np.uint64(29)
    return h


class SortedIdSet:
    """The ids of one target table, answering "which of these values is one of them"."""

    def __init__(self, ids: pa.Array) -> None:
        self._ids = ids
        self._sorted: np.ndarray | None = None  # the search keys, sorted
        self._rows: np.ndarray | None = None  # text ids: their bytes, in search-key order
        if not len(ids):
            return
        if pa.types.is_integer(ids.type) and not ids.null_count:
            ints = ids.to_numpy(zero_copy_only=False).astype(np.int64, copy=False)
            self._sorted = np.sort(ints)
            return
        rows = _fixed_width_text(ids)
        if rows is None:
            return
        hashes = _hash64(rows)
        order = np.argsort(hashes, kind="stable")
        hashes = hashes[order]
        if len(hashes) > 1 and not np.all(hashes[1:] != hashes[:-1]):
            return  # two ids share a hash (or an id repeats): pc.is_in answers instead
        self._sorted = hashes
        self._rows = rows[order]

    def __len__(self) -> int:
        return len(self._ids)

    @property
    def type(self) -> pa.DataType:
        return self._ids.type

    def _found(self, present: pa.Array) -> np.ndarray | None:
        """Per non-null value, whether it is an id; None where only ``pc.is_in`` can say."""
        assert self._sorted is not None
        if self._rows is None:
            probe = present.to_numpy(zero_copy_only=False).astype(np.int64, copy=False)
            at = np.searchsorted(self._sorted, probe)
            at[at == len(self._sorted)] = 0
            found: np.ndarray = self._sorted[at] == probe
            return found
        rows = _fixed_width_text(present)
        if rows is None:  # text values of mixed lengths (none is a uuid, say): rare
            return None
        if rows.shape[1] != self._rows.shape[1]:  # every id has another length
            return np.zeros(len(present), dtype=bool)
        hashes = _hash64(rows)
        at = np.searchsorted(self._sorted, hashes)
        at[at == len(self._sorted)] = 0
        found = (self._sorted[at] == hashes) & (self._rows[at] == rows).all(axis=1)
        return found

    def contains(self, values: pa.Array) -> pa.Array:
        """Per value, whether it is one of the ids (False for a null)."""
        if isinstance(values, pa.ChunkedArray):
            values = values.combine_chunks()
        if not values.type.equals(self._ids.type):
            values = pc.cast(values, self._ids.type)
        if len(values) == values.null_count:  # a null is never one of the ids
            return pa.array(np.zeros(len(values), dtype=bool), pa.bool_())
        present = pc.drop_null(values)
        found = None if self._sorted is None else self._found(present)
        if found is None:
            return pc.fill_null(pc.is_in(values, value_set=self._ids), False)
        if len(present) == len(values):
            return pa.array(found, pa.bool_())
        out = np.zeros(len(values), dtype=bool)
        out[pc.is_valid(values).to_numpy(zero_copy_only=False)] = found
        return pa.array(out, pa.bool_())
