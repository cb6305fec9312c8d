"""Membership in a large, fixed set of ids, for the reference checks of every chunk.

``pc.is_in(values, value_set=ids)`` builds a hash table of ``ids`` on every call: with
the 100k accounts a chunk of licenses references, that rebuild cost more than the
chunk's own lookups (about 1 CPU s per million licenses, once per referencing column).
Here integer ids are sorted once and each chunk is a binary search (``O(m log n)`` for
``m`` values against ``n`` ids); text ids of one length (uuids) go into a hash table of
a 64-bit hash of their bytes, built once, and each chunk is a few vectorised probe
rounds, a found id's bytes compared with the value's (20k uuids against 200k ids:
binary search over the texts 10.7 ms, over their hashes 5.0 ms, the table 1.3 ms). Text ids of mixed lengths, and every other type, fall
back to ``pc.is_in``, which is still right, only slower.

Ids that are all uuid text (the uuid keys of Rune's tables) go, where the C kernels are
built (``transform/_column_kernels.c``), into a set of their 16 bytes instead: one pass
per chunk with the GIL released, comparing uuids rather than their text (a value in
upper case is the same uuid). 15k values against 100k account ids, best of 20 on an
idle core: 1.1 -> 0.4 ms; in a backfill of a million licenses the numpy path had
taken 1.2 s of the mapping thread's 4.9 busy seconds (py-spy, 2026-11-29).
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from transform.column_buffers import binary_buffers

try:
    from transform import _column_kernels
except ImportError:  # installed without a C compiler
    _column_kernels = None  # type: ignore[assignment]


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

    A hash shared by two ids is found when the set is built (``pc.is_in`` then answers),
    and a value is only ever reported present after its bytes equal the id's."""
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


def _hash_table(hashes: np.ndarray) -> tuple[np.ndarray, int]:
    """An open-addressing table (linear probing, at most half full) of row numbers by hash.

    Filled a round at a time for every row still unplaced: each tries its next slot, and
    of the rows that try the same free slot the first takes it. A row thus sits at the
    first slot of its probe sequence that was free when it tried, so every slot between
    its home and its place is taken, which is what a lookup relies on.
    """
    size = 1
    while size < 2 * len(hashes):
        size *= 2
    mask = size - 1
    table = np.full(size, -1, np.int64)
    slot = (hashes & np.uint64(mask)).astype(np.int64)
    unplaced = np.arange(len(hashes))
    while unplaced.size:
        tried = slot[unplaced]
        free = np.flatnonzero(table[tried] == -1)
        taken_slots, first = np.unique(tried[free], return_index=True)
        table[taken_slots] = unplaced[free[first]]
        placed = np.zeros(len(unplaced), dtype=bool)
        placed[free[first]] = True
        unplaced = unplaced[~placed]
        slot[unplaced] = (slot[unplaced] + 1) & mask
    return table, mask


class IdSet:
    """The ids of one target table, answering "which of these values is one of them"."""

    def __init__(self, ids: pa.Array) -> None:
        if isinstance(ids, pa.ChunkedArray):
            ids = ids.combine_chunks()
        self._ids = ids
        self._sorted: np.ndarray | None = None  # integer ids, sorted
        self._rows: np.ndarray | None = None  # text ids: their bytes, one row each
        self._hashes = np.empty(0, np.uint64)  # and their hashes, by row
        self._table = np.empty(0, np.int64)  # row numbers by hash slot
        self._mask = 0
        self._uuids: bytes | None = None  # uuid ids: their set, from the C kernels
        if not len(ids):
            return
        if _column_kernels is not None and pa.types.is_string(ids.type) and not ids.null_count:
            try:
                self._uuids = _column_kernels.uuid_set(*binary_buffers(ids))
                return
            except ValueError:  # not every id is uuid text
                pass
        if pa.types.is_integer(ids.type) and not ids.null_count:
            ints = ids.to_numpy(zero_copy_only=False).astype(np.int64, copy=False)
            self._sorted = np.sort(ints)
            return
        rows = _fixed_width_text(ids)
        if rows is None:
            return
        hashes = _hash64(rows)
        if len(np.unique(hashes)) != len(hashes):
            return  # two ids share a hash (or an id repeats): pc.is_in answers instead
        self._rows, self._hashes = rows, hashes
        self._table, self._mask = _hash_table(hashes)

    def __len__(self) -> int:
        return len(self._ids)

    @property
    def type(self) -> pa.DataType:
        return self._ids.type

    def _row_of(self, hashes: np.ndarray) -> np.ndarray:
        """The row number of the id with each hash, -1 for none: a round per probe step."""
        slot = (hashes & np.uint64(self._mask)).astype(np.int64)
        row = np.full(len(hashes), -1, np.int64)
        pending = np.arange(len(hashes))
        while pending.size:
            at = self._table[slot[pending]]
            occupied = at != -1
            hit = occupied.copy()
            hit[occupied] = self._hashes[at[occupied]] == hashes[pending[occupied]]
            row[pending[hit]] = at[hit]
            pending = pending[occupied & ~hit]  # an empty slot ends the search
            slot[pending] = (slot[pending] + 1) & self._mask
        return row

    def _found(self, present: pa.Array) -> np.ndarray | None:
        """Per non-null value, whether it is an id; None where only ``pc.is_in`` can say."""
        if self._sorted is not None:
            probe = present.to_numpy(zero_copy_only=False).astype(np.int64, copy=False)
            at = np.searchsorted(self._sorted, probe)
            at[at == len(self._sorted)] = 0
            found: np.ndarray = self._sorted[at] == probe
            return found
        assert self._rows is not None
        rows = _fixed_width_text(present)
        if rows is None:  # text values of mixed lengths (none is a uuid, say): rare
            return None
        if rows.shape[1] != self._rows.shape[1]:  # every id has another length
            return np.zeros(len(present), dtype=bool)
        row = self._row_of(_hash64(rows))
        found = row >= 0
        candidates = np.flatnonzero(found)  # same hash: the same bytes too?
        found[candidates] = (self._rows[row[candidates]] == rows[candidates]).all(axis=1)
        return found

    def contains(self, values: pa.Array) -> pa.Array:
        """Per value, whether it is one of the ids (False for a null)."""
        if isinstance(values, pa.ChunkedArray):
            values = values.combine_chunks()
        if not values.type.equals(self._ids.type):
            values = pc.cast(values, self._ids.type)
        if len(values) == values.null_count:  # a null is never one of the ids
            return pa.array(np.zeros(len(values), dtype=bool), pa.bool_())
        if self._uuids is not None and _column_kernels is not None:
            hits = _column_kernels.uuid_set_contains(self._uuids, *binary_buffers(values))
            hit = np.frombuffer(hits, dtype=np.bool_)
            if values.null_count:  # a null's bytes are whatever Arrow left there
                hit = hit & pc.is_valid(values).to_numpy(zero_copy_only=False)
            return pa.array(hit, pa.bool_())
        present = pc.drop_null(values)
        searchable = self._sorted is not None or self._rows is not None
        found = self._found(present) if searchable else None
        if found is None:
            return pc.fill_null(pc.is_in(values, value_set=self._ids), False)
        if len(present) == len(values):
            return pa.array(found, pa.bool_())
        out = np.zeros(len(values), dtype=bool)
        out[pc.is_valid(values).to_numpy(zero_copy_only=False)] = found
        return pa.array(out, pa.bool_())
