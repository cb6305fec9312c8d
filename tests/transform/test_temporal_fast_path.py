"""The fast paths decide exactly what the full ones decide: plain DATETIME text (C, or
pyarrow without it) against the full parser, on every edge value and a large random
sample of real moments; New York's transition table against ``assume_timezone``."""

from __future__ import annotations

import random
from datetime import datetime, timedelta

import numpy as np
import pyarrow as pa
import pytest

from transform import temporal

EDGES = [
    "2020-02-29 12:00:00",  # leap day
    "2021-02-29 12:00:00",  # no such day
    "1900-02-29 00:00:00",  # not a leap year (divisible by 100)
    "2000-02-29 23:59:59",  # a leap year (divisible by 400)
    "2021-04-31 10:00:00",  # April has 30 days
    "2021-12-31 23:59:59",
    "2021-01-01 00:00:00",
    "1969-12-31 23:59:59",  # before the epoch
    "1883-11-18 12:00:00",  # New York's switch from LMT
    "0001-01-01 00:00:00",
    "9999-12-31 23:59:59",
    "0000-00-00 00:00:00",  # zero date
    "2020-00-10 00:00:00",  # partial zero dates
    "2020-05-00 08:00:00",
    "0000-05-01 08:00:00",
    "2021-13-01 00:00:00",
    "2021-01-01 24:00:00",
    "2021-01-01 23:60:00",
    "2021-01-01 23:59:60",
    "2021-01-01 00:00:00.5",  # fractions
    "2021-01-01 00:00:00.000001",
    "2021-03-14",  # DATE text
    "2021-1-01 00:00:00",
    "2021-01-01T00:00:00",
    " 2021-01-01 00:00:0",
    "2021-01-01 00:00:001",
    "abcd-ef-gh ij:kl:mn",
    "\uff12\uff10\uff12\uff11-01-01 00:00:00",  # full-width digits
    "",
    None,
]


def _parsed(monkeypatch: pytest.MonkeyPatch, text: pa.Array, *, native: bool) -> dict:
    if not native:
        monkeypatch.setattr(temporal, "_column_kernels", None)
    parsed = temporal._parse_mysql_datetimes(text)
    monkeypatch.undo()
    return {
        "naive": parsed.naive.to_pylist(),
        "zero": parsed.zero.to_pylist(),
        "partial_zero": parsed.partial_zero.to_pylist(),
        "invalid": parsed.invalid.to_pylist(),
    }


def _full(text: pa.Array) -> dict:
    """The full parser on every non-null row: the reference the fast paths must match."""
    parsed = temporal._parse_mysql_datetimes_fully(text)
    valid = text.is_valid().to_pylist()
    return {
        "naive": parsed.naive.to_pylist(),
        "zero": [bool(z) and v for z, v in zip(parsed.zero.to_pylist(), valid, strict=True)],
        "partial_zero": [
            bool(p) and v for p, v in zip(parsed.partial_zero.to_pylist(), valid, strict=True)
        ],
        "invalid": parsed.invalid.to_pylist(),
    }


def test_the_c_datetime_module_is_built():
    assert temporal._column_kernels is not None


@pytest.mark.parametrize("native", [True, False], ids=["c-module", "pyarrow"])
def test_every_edge_value_is_parsed_as_the_full_parser_does(monkeypatch, native):
    text = pa.array(["skipped", *EDGES])[1:]  # a slice: offset 1
    assert _parsed(monkeypatch, text, native=native) == _full(text)


@pytest.mark.parametrize("native", [True, False], ids=["c-module", "pyarrow"])
def test_random_real_moments_read_as_their_wall_time(monkeypatch, native):
    rng = random.Random(20261129)
    start = datetime(1, 1, 1)
    span = int((datetime(9999, 12, 31, 23, 59, 59) - start).total_seconds())
    moments = [start + timedelta(seconds=rng.randrange(span)) for _ in range(20_000)]
    text = pa.array([m.strftime("%Y-%m-%d %H:%M:%S").rjust(19, "0") for m in moments])
    parsed = _parsed(monkeypatch, text, native=native)
    assert parsed["naive"] == moments
    assert not any(parsed["invalid"])


def test_the_c_module_settles_exactly_the_plain_values_of_real_moments():
    # Settling less would only be slower (the full parser takes the rest), so the tests
    # above cannot see it; this one pins what the C module itself settles.
    import re

    import numpy as np

    from transform.column_buffers import binary_buffers

    text = pa.array(EDGES)
    micros, settled = temporal._column_kernels.plain_datetimes(*binary_buffers(text))
    got = [
        int(m) if ok else None
        for m, ok in zip(
            np.frombuffer(micros, np.int64), np.frombuffer(settled, np.bool_), strict=True
        )
    ]

    def expected(value: str | None) -> int | None:
        plain = r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d"
        if value is None or not re.fullmatch(plain, value, flags=re.ASCII):
            return None
        try:
            moment = datetime.strptime(value, "%Y-%m-%d %H:%M:%S")
        except ValueError:
            return None
        return (moment - datetime(1970, 1, 1)) // timedelta(microseconds=1)

    assert got == [expected(v) for v in EDGES]
    assert sum(v is not None for v in got) == 8


def _both_ways(micros: np.ndarray, nulls: np.ndarray | None = None) -> None:
    naive = pa.array(micros, pa.timestamp("us"), mask=nulls)
    table = temporal._assume_new_york(naive)
    arrow = temporal._assume_new_york_in_arrow(naive)
    for got, expected, what in zip(table, arrow, ("instants", "ambiguous", "in gap"), strict=True):
        assert got.equals(expected), what


def test_the_transition_table_agrees_with_assume_timezone_every_hour_1900_2099():
    low, high = temporal._TABLE_SPAN
    _both_ways(np.arange(low, high, 3_600_000_000, dtype=np.int64))


def test_the_transition_table_agrees_minute_by_minute_around_every_transition():
    thresholds = temporal._new_york_transitions()[0]
    assert len(thresholds) > 200  # DST since 1918, war time, 2007's new dates
    minutes = np.arange(-3 * 60, 3 * 60 + 1, dtype=np.int64) * 60_000_000
    _both_ways((thresholds[:, None] + minutes[None, :]).ravel())
    seconds = np.arange(-2, 3, dtype=np.int64) * 1_000_000  # the edges, to the second
    window_start = temporal._new_york_transitions()[2]
    edges = np.concatenate([thresholds, window_start])
    _both_ways((edges[:, None] + seconds[None, :]).ravel())


def test_the_transition_table_agrees_on_random_moments_with_nulls():
    rng = np.random.default_rng(29)
    low, high = temporal._TABLE_SPAN
    micros = rng.integers(low, high, 200_000, dtype=np.int64)
    _both_ways(micros, nulls=rng.random(200_000) < 0.05)


def test_a_batch_reaching_outside_the_table_goes_through_assume_timezone(monkeypatch):
    calls = []
    real = temporal._assume_new_york_in_arrow
    monkeypatch.setattr(
        temporal, "_assume_new_york_in_arrow", lambda naive: calls.append(1) or real(naive)
    )
    inside = int(np.datetime64("2021-11-07T01:30", "us").astype(np.int64))
    outside = int(np.datetime64("1883-11-18T12:01", "us").astype(np.int64))
    temporal._assume_new_york(pa.array([inside], pa.timestamp("us")))
    assert calls == []
    temporal._assume_new_york(pa.array([inside, outside], pa.timestamp("us")))
    assert calls == [1]
