"""A text or binary column as the C kernels take it (``transform/_column_kernels.c``)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa


def binary_buffers(values: pa.Array) -> tuple[Any, np.ndarray]:
    """The data buffer of ``values`` as binary, and its int64 offsets for these rows.

    Value ``i`` is ``data[offsets[i]:offsets[i + 1]]``; a null's bytes are whatever Arrow
    left there (usually none), so callers mask nulls themselves. No copy of the data.
    """
    binary = values.cast(pa.large_binary())
    _, offsets_buffer, data = binary.buffers()
    if offsets_buffer is None:  # an empty column
        return b"", np.zeros(1, dtype=np.int64)
    offsets = np.frombuffer(offsets_buffer, dtype=np.int64)
    return (data if data is not None else b""), offsets[
        binary.offset : binary.offset + len(binary) + 1
    ]
