"""Dates and times: zero dates, New York wall times, UTC TIMESTAMPs, unix seconds, ISO 8601.

Readers hand DATETIME/DATE/TIMESTAMP columns over as text (decision 0001) because MySQL's
zero dates have no timestamp value; every interpretation happens here. The New York rule
for the hours DST repeats or skips is stated in ``ny_local_to_utc`` and in
``docs/decisions/0002-new-york-local-times.md``.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from runeshift.errors import ConfigError
from transform.column_buffers import binary_buffers
from transform.registry import TransformResult, transform
from transform.row_errors import as_array, count_true, errors_where, null_where

try:
    from transform import _column_kernels
except ImportError:  # installed without a C compiler
    _column_kernels = None  # type: ignore[assignment]

__all__ = [
    "LEGACY_ZONE",
    "iso8601_to_timestamptz",
    "ny_local_to_utc",
    "timestamptz_to_unix_seconds",
    "timestamptz_to_utc_text",
    "unix_seconds_to_timestamptz",
    "utc_timestamp_to_timestamptz",
    "utc_to_ny_local",
    "zero_date_to_null",
]

LEGACY_ZONE = "America/New_York"
UTC_TS = pa.timestamp("us", tz="UTC")
_TEXT = (pa.string(), pa.large_string())
_INTS = (pa.int8(), pa.int16(), pa.int32(), pa.int64(), pa.uint32(), pa.uint64())
_TIMESTAMPS = tuple(pa.timestamp(u, tz=tz) for u in ("s", "ms", "us") for tz in ("UTC", None))

_ZERO_DATE = r"^0000-00-00( 00:00:00(\.0+)?)?$"
# A day or month of 00 (MySQL accepts '2020-05-00' in non-strict mode), or year 0000.
_PARTIAL_ZERO_DATE = r"^(0000-\d\d-\d\d|\d{4}-00-\d\d|\d{4}-\d\d-00)"
_MYSQL_DATETIME = r"^(?P<base>\d{4}-\d\d-\d\d(?: \d\d:\d\d:\d\d)?)(?:\.(?P<frac>\d{1,6}))?$"
_DATETIME_FORMAT = "%Y-%m-%d %H:%M:%S"


@dataclass(frozen=True)
class _ParsedDatetimes:
    """MySQL DATETIME/DATE text split into what it means."""

    naive: pa.Array  # timestamp('us'), null where not a real date-time
    zero: pa.Array  # '0000-00-00 00:00:00' / '0000-00-00'
    partial_zero: pa.Array  # '2020-05-00 ...', '2020-00-10', '0000-05-01'
    invalid: pa.Array  # neither a date-time nor a zero date


def _text(values: pa.Array) -> pa.Array:
    arr = as_array(values)
    return arr.cast(pa.string()) if pa.types.is_large_string(arr.type) else arr


def _substring_int(text: pa.Array, start: int, stop: int) -> pa.Array:
    return pc.cast(pc.utf8_slice_codeunits(text, start, stop), pa.int64())


_PLAIN_DATETIME = r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d$"


def _settle_plain_in_c(text: pa.Array) -> tuple[pa.Array, pa.Array]:
    """The plain values of ``text`` parsed in C (``_column_kernels.c``), and which they are."""
    micros, settled = _column_kernels.plain_datetimes(*binary_buffers(text))
    ok = np.frombuffer(settled, dtype=np.bool_)
    if text.null_count:  # a null's bytes say nothing
        ok = ok & pc.is_valid(text).to_numpy(zero_copy_only=False)
    naive = pa.array(np.frombuffer(micros, dtype=np.int64), pa.timestamp("us"), mask=~ok)
    return naive, pa.array(ok)


def _settle_plain_in_arrow(text: pa.Array) -> tuple[pa.Array, pa.Array]:
    """The same with pyarrow alone (no C module): a regex, a strptime and field checks.

    strptime normalises instead of failing (an overflowing day lands on day 1-3 of the
    next month, a second of 60 on second 0), so rows with those results are left to the
    full parser, which compares the fields with the text.
    """
    shaped = pc.fill_null(pc.match_substring_regex(text, _PLAIN_DATETIME), False)
    naive = pc.strptime(text, format=_DATETIME_FORMAT, unit="us", error_is_null=True)
    settled = pc.fill_null(pc.and_(shaped, pc.not_equal(pc.year(naive), 0)), False)
    maybe_normalised = pc.or_(pc.less_equal(pc.day(naive), 3), pc.equal(pc.second(naive), 0))
    settled = pc.and_(settled, pc.invert(pc.fill_null(maybe_normalised, True)))
    return null_where(naive, pc.invert(settled)), settled


def _parse_mysql_datetimes(text: pa.Array) -> _ParsedDatetimes:
    """Parse ``'YYYY-MM-DD[ HH:MM:SS[.ffffff]]'`` vectorised; classify zero and bad values.

    Fast path for the common ``'YYYY-MM-DD HH:MM:SS'`` (in C where it is built); the rows
    it cannot settle (zero dates, DATE text, fractions, junk) go through the full parser.
    """
    if _column_kernels is not None:
        naive, settled = _settle_plain_in_c(text)
    else:
        naive, settled = _settle_plain_in_arrow(text)
    unsettled = pc.and_(pc.is_valid(text), pc.invert(settled))
    none = pc.and_(pc.is_null(text), pc.is_valid(text))  # all false, same length
    if count_true(unsettled) == 0:
        return _ParsedDatetimes(naive=naive, zero=none, partial_zero=none, invalid=none)
    rest = _parse_mysql_datetimes_fully(pc.filter(text, unsettled))
    return _ParsedDatetimes(
        naive=pc.replace_with_mask(naive, unsettled, rest.naive),
        zero=pc.replace_with_mask(none, unsettled, rest.zero),
        partial_zero=pc.replace_with_mask(none, unsettled, rest.partial_zero),
        invalid=pc.replace_with_mask(none, unsettled, rest.invalid),
    )


def _parse_mysql_datetimes_fully(text: pa.Array) -> _ParsedDatetimes:
    """The full parser: zero dates, DATE text, fractions; rejects normalised values."""
    zero = pc.fill_null(pc.match_substring_regex(text, _ZERO_DATE), False)
    partial = pc.and_(
        pc.fill_null(pc.match_substring_regex(text, _PARTIAL_ZERO_DATE), False), pc.invert(zero)
    )
    parts = pc.extract_regex(text, _MYSQL_DATETIME)
    base = null_where(pc.struct_field(parts, "base"), pc.or_(zero, partial))
    frac = pc.struct_field(parts, "frac")
    with_time = pc.strptime(base, format=_DATETIME_FORMAT, unit="us", error_is_null=True)
    date_only = pc.strptime(base, format="%Y-%m-%d", unit="us", error_is_null=True)
    naive = pc.coalesce(with_time, date_only)
    # strptime normalises instead of failing: '2021-02-30' -> March 2, '23:59:60' -> next day.
    # A value is real only if its fields read back unchanged.
    padded = pc.utf8_rpad(base, width=19, padding="0")  # date-only: '2021-02-03' + '0...'
    same = pc.and_(
        pc.equal(pc.month(naive), _substring_int(padded, 5, 7)),
        pc.equal(pc.day(naive), _substring_int(padded, 8, 10)),
    )
    has_time = pc.equal(pc.utf8_length(base), 19)
    same_time = pc.and_(
        pc.equal(pc.hour(naive), _substring_int(padded, 11, 13)),
        pc.and_(
            pc.equal(pc.minute(naive), _substring_int(padded, 14, 16)),
            pc.equal(pc.second(naive), _substring_int(padded, 17, 19)),
        ),
    )
    real = pc.fill_null(pc.and_(same, pc.or_(pc.invert(has_time), same_time)), False)
    micros = pc.cast(pc.utf8_rpad(pc.fill_null(frac, ""), width=6, padding="0"), pa.int64())
    naive = pc.add(naive, pc.cast(micros, pa.duration("us")))
    naive = null_where(naive, pc.invert(real))
    invalid = pc.and_(pc.and_(pc.is_valid(text), pc.invert(real)), pc.invert(pc.or_(zero, partial)))
    return _ParsedDatetimes(naive=naive, zero=zero, partial_zero=partial, invalid=invalid)


def _invalid_errors(text: pa.Array, invalid: pa.Array, what: str) -> pa.Array | None:
    if count_true(invalid) == 0:
        return None  # the common case: no reason texts built for a whole column
    reasons = pc.binary_join_element_wise("'", text, f"' is not a valid {what}", "")
    return errors_where(invalid, reasons)


def _zero_notes(zero: pa.Array, partial: pa.Array, meaning: str | None) -> dict[str, int]:
    suffix = f" ({meaning})" if meaning else ""
    notes = {}
    if n := count_true(zero):
        notes[f"zero date -> null{suffix}"] = n
    if n := count_true(partial):
        notes[f"partial zero date (day, month or year 00) -> null{suffix}"] = n
    return notes


@transform(
    "zero_date_to_null",
    input_types=_TEXT,
    output_type=pa.string(),
    params={"meaning": str},
    inverse="null_to_zero_date",
)
def zero_date_to_null(values: pa.Array, *, meaning: str | None = None) -> TransformResult:
    """Replace MySQL zero dates by null, keeping every other value as text.

    ``'0000-00-00 00:00:00'``, ``'0000-00-00'`` and partial zero dates that non-strict MySQL
    accepts (``'2020-05-00 12:00:00'``, ``'2020-00-10'``) become null; the counts go to the
    notes. ``meaning`` says what null stands for on this column and is part of the note key:
    on ``licenses.expires_at`` a zero date means "never expires", so
    ``zero_date_to_null(expires_at, meaning="never expires")`` reports
    ``"zero date -> null (never expires)": 42``. Use ``ny_local_to_utc`` to also convert.
    """
    text = _text(values)
    zero = pc.fill_null(pc.match_substring_regex(text, _ZERO_DATE), False)
    partial = pc.and_(
        pc.fill_null(pc.match_substring_regex(text, _PARTIAL_ZERO_DATE), False), pc.invert(zero)
    )
    return TransformResult(
        null_where(text, pc.or_(zero, partial)), notes=_zero_notes(zero, partial, meaning)
    )


@transform(
    "null_to_zero_date",
    input_types=_TEXT,
    output_type=pa.string(),
    params={"date_only": bool},
    inverse="zero_date_to_null",
)
def null_to_zero_date(values: pa.Array, *, date_only: bool = False) -> TransformResult:
    """Write null back as MySQL's zero date (``'0000-00-00 00:00:00'``, or ``'0000-00-00'``)."""
    zero = "0000-00-00" if date_only else "0000-00-00 00:00:00"
    return TransformResult(pc.fill_null(_text(values), zero))


# The span the transition table below covers (naive wall time, microseconds since 1970);
# anything outside it goes through pyarrow's assume_timezone.
_TABLE_SPAN = (
    int(np.datetime64("1900-01-01", "us").astype(np.int64)),
    int(np.datetime64("2100-01-01", "us").astype(np.int64)),
)
_DAY_US = 86_400_000_000


def _new_york_offsets(utc_micros: np.ndarray) -> np.ndarray:
    """New York's UTC offset (µs) at each UTC instant, from pyarrow's own time zone data."""
    instants = pa.array(utc_micros, pa.timestamp("us", tz=LEGACY_ZONE))
    local = pc.local_timestamp(instants).cast(pa.int64()).to_numpy()
    offsets: np.ndarray = local - utc_micros
    return offsets


@functools.lru_cache(maxsize=1)
def _new_york_transitions() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """New York's offset changes between 1899 and 2101, read from pyarrow once per process.

    Returns ``(thresholds, before, window_start, fall_back)``: transition ``i`` happens at
    wall time ``thresholds[i]`` by the stated rule (the later of the two wall times the
    instant has, so a repeated or skipped hour still reads with the old offset);
    ``before[i]`` is the offset in force before it (``before[-1]``, after the last);
    wall times in ``[window_start[i], thresholds[i])`` are the repeated hour
    (``fall_back[i]``) or the gap. Found on a daily grid, then each change narrowed to
    its second by bisection (New York never changed twice in a day).
    """
    low, high = _TABLE_SPAN
    grid = np.arange(low - 2 * _DAY_US, high + 2 * _DAY_US, _DAY_US, dtype=np.int64)
    offsets = _new_york_offsets(grid)
    changed = np.flatnonzero(offsets[1:] != offsets[:-1])
    old, new = offsets[changed], offsets[changed + 1]
    lo, hi = grid[changed], grid[changed + 1]  # offset(lo) == old, offset(hi) == new
    while (hi - lo > 1_000_000).any():
        mid = lo + (hi - lo) // 2_000_000 * 1_000_000
        now_new = _new_york_offsets(mid) == new
        hi = np.where(now_new, mid, hi)
        lo = np.where(now_new, lo, mid)
    thresholds = hi + np.maximum(old, new)
    window_start = hi + np.minimum(old, new)
    before = np.append(old, new[-1] if len(new) else offsets[0])
    return thresholds, before, window_start, new < old


def _assume_new_york(naive: pa.Array) -> tuple[pa.Array, pa.Array, pa.Array]:
    """UTC instants for New York wall times by the stated rule, plus the ambiguous/gap masks.

    One binary search per value in New York's transition table (numpy), where every
    value lies in 1900-2099; else pyarrow's ``assume_timezone`` (three passes over the
    hours near a transition). Both read pyarrow's time zone data and are tested to agree.
    """
    micros = pc.fill_null(naive.cast(pa.int64()), _TABLE_SPAN[0]).to_numpy(zero_copy_only=False)
    if len(micros) and (micros.min() < _TABLE_SPAN[0] or micros.max() >= _TABLE_SPAN[1]):
        return _assume_new_york_in_arrow(naive)
    thresholds, before, window_start, fall_back = _new_york_transitions()
    at = np.searchsorted(thresholds, micros, side="right")
    utc = micros - before[at]
    nearest = np.minimum(at, len(thresholds) - 1)
    window = (at < len(thresholds)) & (micros >= window_start[nearest])
    valid = pc.is_valid(naive).to_numpy(zero_copy_only=False)
    ambiguous = window & fall_back[nearest] & valid
    in_gap = window & ~fall_back[nearest] & valid
    instants = pa.array(utc, UTC_TS, mask=~valid if naive.null_count else None)
    return instants, pa.array(ambiguous), pa.array(in_gap)


def _assume_new_york_in_arrow(naive: pa.Array) -> tuple[pa.Array, pa.Array, pa.Array]:
    """``_assume_new_york`` with pyarrow's ``assume_timezone``, for any wall time."""

    def assume(values: pa.Array, ambiguous: str, nonexistent: str) -> pa.Array:
        return pc.assume_timezone(
            values, timezone=LEGACY_ZONE, ambiguous=ambiguous, nonexistent=nonexistent
        )

    first = assume(naive, "earliest", "earliest")
    no_rows = pc.and_(pc.is_null(naive), pc.is_valid(naive))  # all false
    # Since 1883 every New York transition in tzdata happens at 02:00 local, so only wall
    # times in hours 1 and 2 can be repeated or missing; hours 0-3 are checked to keep a
    # margin, and everything before 1900 (the LMT -> EST switch at noon, 1883-11-18).
    # The exhaustive test in tests/transform/test_temporal.py pins this.
    near = pc.fill_null(
        pc.or_(pc.less_equal(pc.hour(naive), 3), pc.less(pc.year(naive), 1900)), False
    )
    if count_true(near) == 0:
        return first.cast(UTC_TS), no_rows, no_rows
    candidates = pc.filter(naive, near)
    candidate_first = pc.filter(first, near)
    # For a wall time in the spring-forward gap, 'earliest' gives the last instant before
    # the gap (01:59:59.999999 EST), 'latest' the first after (03:00 EDT); neither is the
    # stated rule, so gap rows are recomputed below. Outside the gap and the repeated hour
    # all variants agree, which is how the two masks are found without per-row Python.
    ambiguous = pc.fill_null(
        pc.not_equal(candidate_first, assume(candidates, "latest", "earliest")), False
    )
    in_gap = pc.fill_null(
        pc.not_equal(candidate_first, assume(candidates, "earliest", "latest")), False
    )
    ambiguous = pc.replace_with_mask(no_rows, near, ambiguous)
    in_gap = pc.replace_with_mask(no_rows, near, in_gap)
    if count_true(in_gap):
        # Offset in force before the gap: wall time = first's local time + (naive - that).
        shifted = pc.add(first, pc.subtract(naive, pc.local_timestamp(first)))
        first = pc.if_else(in_gap, shifted, first)
    return first.cast(UTC_TS), ambiguous, in_gap


@transform(
    "ny_local_to_utc",
    input_types=_TEXT,
    output_type=UTC_TS,
    params={"meaning": str},
    inverse="utc_to_ny_local",
)
def ny_local_to_utc(values: pa.Array, *, meaning: str | None = None) -> TransformResult:
    """Read a DATETIME written as New York wall time as a UTC instant (timestamptz).

    The legacy server ran in America/New_York and PHP wrote ``date('Y-m-d H:i:s')``, so the
    stored text is local wall time without an offset. The DST rule (decision 0002):

    * **Fall-back hour (repeated)**: a wall time in 01:00-01:59:59 on the first Sunday of
      November is read as the FIRST occurrence, EDT (UTC-4), PEP 495 ``fold=0``:
      ``'2021-11-07 01:30:00'`` -> ``05:30Z``. That is what PHP's ``DateTime`` and MySQL's
      ``CONVERT_TZ``/``UNIX_TIMESTAMP`` return for the same text, so values the legacy app
      itself converted (Shopify sync, cron comparisons) agree with ours; the text carries no
      fold bit, so any choice is wrong for the second hour's events, and the first hour is
      the one choice shared with every tool that has read this data before.
    * **Spring-forward gap (never existed)**: a wall time in 02:00-02:59:59 on the second
      Sunday of March is read with the offset in force BEFORE the gap, EST (UTC-5), so it
      moves forward by the gap's length: ``'2021-03-14 02:30:00'`` -> ``07:30Z`` (= 03:30
      EDT). PHP's ``DateTime`` does exactly this, as does Python's ``zoneinfo`` with
      ``fold=0``; such values only arise from PHP adding intervals to wall times.

    Zero and partial zero dates become null (counted, keyed with ``meaning`` if given);
    text that is not a valid date-time is quarantined. Ambiguous and gap values are counted
    in the notes. DATE text (``'2021-03-14'``) is read as local midnight. Vectorised: a
    binary search in New York's transitions as pyarrow's time zone data has them (or
    ``assume_timezone`` itself, outside 1900-2099); no per-row Python.
    """
    text = _text(values)
    parsed = _parse_mysql_datetimes(text)
    utc, ambiguous, in_gap = _assume_new_york(parsed.naive)
    notes = _zero_notes(parsed.zero, parsed.partial_zero, meaning)
    if n := count_true(ambiguous):
        notes["New York time in the repeated fall-back hour, read as first (EDT)"] = n
    if n := count_true(in_gap):
        notes["New York time in the spring-forward gap, shifted forward by the gap"] = n
    errors = _invalid_errors(text, parsed.invalid, "DATETIME")
    return TransformResult(utc, errors=errors, notes=notes)


def _to_utc_timestamps(values: pa.Array) -> pa.Array:
    arr = as_array(values)
    if arr.type.tz is None:  # naive input is taken as UTC
        arr = arr.cast(pa.timestamp(arr.type.unit, tz="UTC"))
    return arr.cast(pa.timestamp("us", tz="UTC"))


def _format_whole_seconds(
    instants: pa.Array, zone: str, notes: dict[str, int]
) -> tuple[pa.Array, pa.Array]:
    """(``'YYYY-MM-DD HH:MM:SS'`` text in ``zone``, the floored instants); counts dropped µs."""
    floored = pc.floor_temporal(instants, unit="second")
    if n := count_true(pc.not_equal(floored, instants)):
        notes["sub-second precision dropped (DATETIME holds whole seconds)"] = n
    local = floored.cast(pa.timestamp("s", tz=zone))
    return pc.strftime(local, format=_DATETIME_FORMAT), floored


@transform(
    "utc_to_ny_local",
    input_types=_TIMESTAMPS,
    output_type=pa.string(),
    params={"null_as": str},
    inverse="ny_local_to_utc",
)
def utc_to_ny_local(values: pa.Array, *, null_as: str | None = None) -> TransformResult:
    """Write an instant back as New York wall-time DATETIME text (reverse replication).

    Sub-second parts are dropped (floored, counted). An instant in the SECOND occurrence of
    the fall-back hour (EST) writes the same text as one an hour earlier, and
    ``ny_local_to_utc`` reads it back as the first (decision 0002); such rows are counted.
    Null stays null unless ``null_as`` gives the text for it (``'0000-00-00 00:00:00'`` for
    ``licenses.expires_at``).
    """
    notes: dict[str, int] = {}
    text, floored = _format_whole_seconds(_to_utc_timestamps(values), LEGACY_ZONE, notes)
    back, _, _ = _assume_new_york(
        pc.strptime(text, format=_DATETIME_FORMAT, unit="us", error_is_null=True)
    )
    if n := count_true(pc.not_equal(back, floored)):
        notes["second fall-back hour written as local time; reads back an hour earlier"] = n
    if null_as is not None:
        text = pc.fill_null(text, null_as)
    return TransformResult(text, notes=notes)


@transform(
    "utc_timestamp_to_timestamptz",
    input_types=_TEXT,
    output_type=UTC_TS,
    params={"meaning": str},
    inverse="timestamptz_to_utc_text",
)
def utc_timestamp_to_timestamptz(
    values: pa.Array, *, meaning: str | None = None
) -> TransformResult:
    """Read TIMESTAMP text (read with session ``time_zone='+00:00'``, so UTC) as timestamptz.

    Zero dates become null (counted); invalid text is quarantined. No DST questions: UTC.
    """
    text = _text(values)
    parsed = _parse_mysql_datetimes(text)
    errors = _invalid_errors(text, parsed.invalid, "TIMESTAMP")
    return TransformResult(
        parsed.naive.cast(UTC_TS),
        errors=errors,
        notes=_zero_notes(parsed.zero, parsed.partial_zero, meaning),
    )


@transform(
    "timestamptz_to_utc_text",
    input_types=_TIMESTAMPS,
    output_type=pa.string(),
    inverse="utc_timestamp_to_timestamptz",
)
def timestamptz_to_utc_text(values: pa.Array) -> TransformResult:
    """Write an instant as UTC TIMESTAMP text, whole seconds (reverse replication)."""
    notes: dict[str, int] = {}
    text, _ = _format_whole_seconds(_to_utc_timestamps(values), "UTC", notes)
    return TransformResult(text, notes=notes)


_ON_NEGATIVE = ("quarantine", "null")


@transform(
    "unix_seconds_to_timestamptz",
    input_types=_INTS,
    output_type=UTC_TS,
    params={"on_negative": str, "meaning": str},
    inverse="timestamptz_to_unix_seconds",
)
def unix_seconds_to_timestamptz(
    values: pa.Array, *, on_negative: str = "quarantine", meaning: str | None = None
) -> TransformResult:
    """Read an INT unix-seconds column as timestamptz; ``0`` (unknown/never) becomes null.

    Negative values are quarantined by default: the legacy app only ever wrote ``time()``
    or 0, so a negative is a bug whose meaning nobody knows (the one meaningful negative,
    ``temp_ban = -1``, has its own transforms). ``on_negative="null"`` turns them into null
    with a note instead, for columns where losing the row would be worse than losing the
    time (``last_visit``). ``meaning`` names what 0 means in the note key.
    """
    if on_negative not in _ON_NEGATIVE:
        raise ConfigError(
            f"unix_seconds_to_timestamptz: on_negative must be one of {_ON_NEGATIVE}, "
            f"got {on_negative!r}"
        )
    arr = pc.cast(as_array(values), pa.int64())
    zero = pc.equal(arr, 0)
    negative = pc.less(arr, 0)
    notes: dict[str, int] = {}
    if n := count_true(zero):
        notes[f"unix time 0 -> null ({meaning or 'unknown'})"] = n
    errors = None
    n_negative = count_true(negative)
    if n_negative and on_negative == "null":
        notes["negative unix time -> null"] = n_negative
    elif n_negative:
        reasons = pc.binary_join_element_wise(
            "unix time ", pc.cast(arr, pa.string()), " is negative", ""
        )
        errors = errors_where(negative, reasons)
    micros = pc.multiply_checked(null_where(arr, pc.or_(zero, negative)), 1_000_000)
    return TransformResult(micros.cast(UTC_TS), errors=errors, notes=notes)


@transform(
    "timestamptz_to_unix_seconds",
    input_types=_TIMESTAMPS,
    output_type=pa.int64(),
    inverse="unix_seconds_to_timestamptz",
)
def timestamptz_to_unix_seconds(values: pa.Array) -> TransformResult:
    """Write an instant back as unix seconds (floored); null becomes 0 ("unknown/never").

    Instants past 2038-01-19 do not fit the legacy signed INT(10) columns; they are
    quarantined rather than wrapped.
    """
    arr = _to_utc_timestamps(values)
    whole = pc.floor_temporal(arr, unit="second").cast(pa.timestamp("s", tz="UTC"))
    seconds = pc.cast(whole, pa.int64())
    too_big = pc.greater(seconds, 2**31 - 1)
    reasons = pc.binary_join_element_wise(
        "unix time ", pc.cast(seconds, pa.string()), " does not fit INT(10)", ""
    )
    errors = errors_where(too_big, reasons)
    result = pc.fill_null(seconds, 0)
    return TransformResult(null_where(result, too_big), errors=errors)


_ISO8601 = (
    r"^(?P<base>\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(?P<frac>\d{1,9}))?"
    r"(?P<offset>Z|[+-]\d\d:?\d\d)$"
)


@transform(
    "iso8601_to_timestamptz",
    input_types=_TEXT,
    output_type=UTC_TS,
)
def iso8601_to_timestamptz(values: pa.Array) -> TransformResult:
    """Read ISO 8601 text with an offset (Shopify's ``'2021-03-14T02:30:00-05:00'``) as UTC.

    The offset in the text decides the instant, so no DST rule is needed; ``'Z'`` is UTC.
    Fractions beyond microseconds are truncated (counted). Text without an offset is
    quarantined: it would need a zone guess. Empty text becomes null.
    """
    text = _text(values)
    parts = pc.extract_regex(text, _ISO8601)
    base = pc.struct_field(parts, "base")
    offset = pc.struct_field(parts, "offset")
    frac = pc.fill_null(pc.struct_field(parts, "frac"), "")
    stamp = pc.binary_join_element_wise(base, pc.replace_substring(offset, "Z", "+0000"), "")
    parsed = pc.strptime(stamp, format="%Y-%m-%dT%H:%M:%S%z", unit="us", error_is_null=True)
    micros = pc.cast(
        pc.utf8_rpad(pc.utf8_slice_codeunits(frac, 0, 6), width=6, padding="0"), pa.int64()
    )
    notes: dict[str, int] = {}
    if n := count_true(pc.greater(pc.utf8_length(frac), 6)):
        notes["fraction beyond microseconds truncated"] = n
    result = pc.add(parsed, pc.cast(micros, pa.duration("us"))).cast(UTC_TS)
    empty = pc.equal(text, "")
    if n := count_true(empty):
        notes["empty timestamp -> null"] = n
    invalid = pc.and_(
        pc.and_(pc.is_valid(text), pc.is_null(result)), pc.invert(pc.fill_null(empty, False))
    )
    reasons = pc.binary_join_element_wise(
        "'", text, "' is not an ISO 8601 timestamp with an offset", ""
    )
    return TransformResult(result, errors=errors_where(invalid, reasons), notes=notes)
