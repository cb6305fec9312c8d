"""Chunk checksums and the narrowing from a differing chunk to the exact keys.

Both sides hand over, per key range, the sorted keys and the row digests. A
chunk is equal when its row count and its digest sum (mod 2**64) are equal on
both sides; only a chunk whose checksum differs is narrowed, and the per-row
digests narrow it in one step to the keys that are missing, extra or changed
(better than bisection: no further round trips).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class ChunkChecksum:
    rows: int
    digest_sum: int

    @classmethod
    def of(cls, digests: np.ndarray) -> ChunkChecksum:
        total = int(digests.astype(np.uint64).sum(dtype=np.uint64)) if len(digests) else 0
        return cls(len(digests), total)


@dataclass
class ChunkDiff:
    missing: list[int] = field(default_factory=list)
    extra: list[int] = field(default_factory=list)
    changed: list[int] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.missing or self.extra or self.changed)

    def extend(self, other: ChunkDiff) -> None:
        self.missing.extend(other.missing)
        self.extra.extend(other.extra)
        self.changed.extend(other.changed)


def narrow(
    source_keys: np.ndarray,
    source_digests: np.ndarray,
    target_keys: np.ndarray,
    target_digests: np.ndarray,
) -> ChunkDiff:
    """Keys only in the source (missing), only in the target (extra), or whose digests differ."""
    if chunks_equal(source_digests, target_digests):
        return ChunkDiff()
    s_order = np.argsort(source_keys, kind="stable")
    t_order = np.argsort(target_keys, kind="stable")
    sk, sd = source_keys[s_order], source_digests[s_order]
    tk, td = target_keys[t_order], target_digests[t_order]
    common, s_idx, t_idx = np.intersect1d(sk, tk, assume_unique=True, return_indices=True)
    changed = common[sd[s_idx] != td[t_idx]]
    missing = np.setdiff1d(sk, tk, assume_unique=True)
    extra = np.setdiff1d(tk, sk, assume_unique=True)
    return ChunkDiff([int(k) for k in missing], [int(k) for k in extra], [int(k) for k in changed])


def chunks_equal(source_digests: np.ndarray, target_digests: np.ndarray) -> bool:
    """Same row count and same digest sum: the chunk needs no narrowing."""
    return ChunkChecksum.of(source_digests) == ChunkChecksum.of(target_digests)
