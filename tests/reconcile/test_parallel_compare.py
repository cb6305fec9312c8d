"""How a large table's key range is cut for the worker processes."""

from __future__ import annotations

import pytest

from reconcile.parallel_compare import split_key_range


@pytest.mark.parametrize(
    ("low", "high", "parts", "expected"),
    [
        pytest.param(1, 100, 2, [(None, 50), (50, None)], id="two-halves"),
        pytest.param(
            1,
            1_000_000,
            4,
            [(None, 250_000), (250_000, 500_000), (500_000, 750_000), (750_000, None)],
            id="four-quarters",
        ),
        pytest.param(-10, 9, 2, [(None, -1), (-1, None)], id="negative-keys"),
        pytest.param(5, 5, 3, [(None, None)], id="one-key-one-range"),
        pytest.param(1, 2, 4, [(None, 1), (1, None)], id="fewer-keys-than-parts"),
    ],
)
def test_ranges_cover_every_key_once_with_open_outer_ends(low, high, parts, expected) -> None:
    ranges = split_key_range(low, high, parts)
    assert ranges == expected
    for key in range(low - 3, high + 4):  # keys beyond the source's (target extras) too
        assert sum(1 for a, b in ranges if (a is None or key > a) and (b is None or key <= b)) == 1
