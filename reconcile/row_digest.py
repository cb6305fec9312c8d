"""Row digests computed in Python, identical to the SQL ones.

A digest is the first 60 bits of md5 of the canonical row text (see
``canonical_text.py``); PostgreSQL and MySQL compute the same number in SQL, so
a chunk's checksum (count, sum of digests) can be compared across engines.
"""

from __future__ import annotations

from hashlib import md5

import numpy as np
import pyarrow as pa

from reconcile.canonical_text import Kind, row_texts


def digests_of_texts(texts: pa.Array) -> np.ndarray:
    """int64 digest per row text (the md5 is the only per-row Python step)."""
    raw: list[bytes] = texts.cast(pa.binary()).to_pylist()
    joined = b"".join([md5(t).digest() for t in raw])  # no per-row slice: numpy takes half
    top = np.frombuffer(joined, dtype=">u8")[::2].astype(np.uint64)
    return (top >> np.uint64(4)).astype(np.int64)


def row_digests(canonical_columns: list[pa.Array], kinds: list[Kind]) -> np.ndarray:
    return digests_of_texts(row_texts(canonical_columns, kinds))
