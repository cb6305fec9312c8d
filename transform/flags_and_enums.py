"""TINYINT(1) flags, ENUM blanks, ban states, zero sentinels and range checks.

MySQL has no boolean, no "invalid enum" and no NULL-by-default habit, so the legacy schema
encodes these with integers and empty strings; the transforms here turn the encodings into
the types the new schema uses, and count every value that was not one of the expected ones.
"""

from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc

from runeshift.errors import ConfigError
from transform.registry import TransformResult, transform
from transform.row_errors import as_array, count_true, errors_where, null_where

__all__ = [
    "ban_to_temp_ban",
    "bool_to_flag",
    "empty_enum_to_null",
    "flag_to_bool",
    "null_to_zero",
    "range_check",
    "temp_ban_state",
    "temp_ban_until",
    "zero_to_null",
]

_INTS = (pa.int8(), pa.int16(), pa.int32(), pa.int64())


def _value_counts(values: pa.Array) -> dict[int, int]:
    """Counts per distinct non-null value."""
    counts = pc.value_counts(values.drop_null())
    return {
        int(v): int(c)
        for v, c in zip(
            counts.field("values").to_pylist(), counts.field("counts").to_pylist(), strict=True
        )
    }


@transform("flag_to_bool", input_types=_INTS, output_type=pa.bool_(), inverse="bool_to_flag")
def flag_to_bool(values: pa.Array) -> TransformResult:
    """Read a TINYINT(1) flag as a boolean: 0 is false, any other value is true.

    The column is a signed TINYINT, so the legacy data holds 2, 127 and -1 beside 0/1 (PHP
    wrote whatever truthy integer it had). PHP's and MySQL's own reading of those is "true",
    so they become true, and each such value is counted by value in the notes
    (``"flag value 2": 3``) so the run report shows them. Null stays null.
    """
    arr = as_array(values)
    odd = pc.and_(pc.not_equal(arr, 0), pc.not_equal(arr, 1))
    notes: dict[str, int] = {}
    if count_true(odd):
        for value, n in sorted(_value_counts(pc.filter(arr, odd)).items()):
            notes[f"flag value {value} read as true"] = n
    return TransformResult(pc.not_equal(arr, 0), notes=notes)


@transform(
    "bool_to_flag", input_types=(pa.bool_(),), output_type=pa.int64(), inverse="flag_to_bool"
)
def bool_to_flag(values: pa.Array) -> TransformResult:
    """Write a boolean back as a TINYINT(1) flag: true -> 1, false -> 0, null -> null.

    Lossy against the source: a legacy 2/127/-1 comes back as 1.
    """
    return TransformResult(pc.cast(as_array(values), pa.int64()))


@transform(
    "empty_enum_to_null",
    input_types=(pa.string(), pa.large_string()),
    output_type=pa.string(),
    params={"default": str},
    inverse="copy",
)
def empty_enum_to_null(values: pa.Array, *, default: str | None = None) -> TransformResult:
    """Replace an ENUM's ``''`` by null (or by ``default``), counting the rows.

    MySQL in non-strict mode (the legacy ``sql_mode=''``) stores ``''`` when the app writes a
    value that is not in the ENUM list, so ``''`` means "the app wrote something invalid",
    not a real choice. Example: ``scripts.category`` ``''`` -> ``'other'`` with
    ``default: other``. The inverse (``copy``) writes the null/default back as is, not ``''``.
    """
    arr = as_array(values)
    if pa.types.is_large_string(arr.type):
        arr = arr.cast(pa.string())
    empty = pc.equal(arr, "")
    n = count_true(empty)
    if n == 0:
        return TransformResult(arr)
    replacement = pa.scalar(default, pa.string())
    target = "null" if default is None else repr(default)
    result = pc.if_else(pc.fill_null(empty, False), replacement, arr)
    return TransformResult(result, notes={f"empty ENUM value (invalid in source) -> {target}": n})


@transform("zero_to_null", input_types=_INTS, output_type=None, inverse="null_to_zero")
def zero_to_null(values: pa.Array) -> TransformResult:
    """Replace 0 by null, e.g. partial birthdays (``bday_day = 0`` means "not given")."""
    arr = as_array(values)
    zero = pc.equal(arr, 0)
    n = count_true(zero)
    notes = {"zero -> null": n} if n else {}
    return TransformResult(null_where(arr, zero), notes=notes)


@transform("null_to_zero", input_types=_INTS, output_type=None, inverse="zero_to_null")
def null_to_zero(values: pa.Array) -> TransformResult:
    """Replace null by 0 (inverse of ``zero_to_null`` for NOT NULL DEFAULT 0 columns)."""
    arr = as_array(values)
    return TransformResult(pc.fill_null(arr, pa.scalar(0, arr.type)))


@transform(
    "range_check",
    input_types=_INTS,
    output_type=None,
    params={"min": int, "max": int, "label": str},
    inverse="copy",
)
def range_check(
    values: pa.Array, *, min: int | None = None, max: int | None = None, label: str = "value"
) -> TransformResult:
    """Pass integers through unchanged; quarantine those outside ``min..max`` (inclusive).

    For values the new schema constrains but the legacy one did not, e.g. review ratings
    0 and 6 from an old bug: ``range_check(min=1, max=5, label="rating")`` quarantines
    them with ``"rating 6 outside 1..5"``. Either bound may be omitted. Null passes.
    """
    if min is None and max is None:
        raise ConfigError("transform 'range_check' needs 'min', 'max' or both")
    if min is not None and max is not None and min > max:
        raise ConfigError(f"transform 'range_check': min {min} is greater than max {max}")
    arr = as_array(values)
    low = pc.less(arr, min) if min is not None else None
    high = pc.greater(arr, max) if max is not None else None
    outside = low if high is None else high if low is None else pc.or_(low, high)
    bounds = f"{'' if min is None else min}..{'' if max is None else max}"
    reasons = pc.binary_join_element_wise(
        f"{label} ", pc.cast(arr, pa.string()), f" outside {bounds}", ""
    )
    errors = errors_where(outside, reasons)
    return TransformResult(null_where(arr, outside) if errors is not None else arr, errors=errors)


_PERMANENT = -1


@transform("temp_ban_state", input_types=_INTS, output_type=pa.string(), inverse="ban_to_temp_ban")
def temp_ban_state(values: pa.Array) -> TransformResult:
    """Read ``core_members.temp_ban`` as a ban state: ``'none'``, ``'permanent'``, ``'temporary'``.

    ``0`` -> ``'none'``, ``-1`` -> ``'permanent'``, ``> 0`` (unix seconds until) ->
    ``'temporary'``; any other negative is quarantined (no meaning in the legacy app).

    A temporary ban whose end has passed stays ``'temporary'`` (with its past
    ``banned_until`` from ``temp_ban_until``): the new app must compare ``banned_until`` with
    now anyway, the history is kept, and the result does not depend on when the migration
    runs, so a rerun or catch-up gives the same row. Inverse: ``ban_to_temp_ban`` (takes
    both target columns).
    """
    arr = as_array(values)
    state = pc.case_when(
        pc.make_struct(pc.equal(arr, 0), pc.equal(arr, _PERMANENT), pc.greater(arr, 0)),
        pa.scalar("none"),
        pa.scalar("permanent"),
        pa.scalar("temporary"),
    )
    bad = pc.less(arr, _PERMANENT)
    errors = errors_where(
        bad,
        pc.binary_join_element_wise(
            "temp_ban ", pc.cast(arr, pa.string()), " is negative but not -1 (permanent)", ""
        ),
    )
    notes = {f"ban state {k}": v for k, v in _state_counts(state).items()}
    return TransformResult(state, errors=errors, notes=notes)


def _state_counts(state: pa.Array) -> dict[str, int]:
    counts = pc.value_counts(state.drop_null())
    return dict(
        zip(counts.field("values").to_pylist(), counts.field("counts").to_pylist(), strict=True)
    )


@transform(
    "temp_ban_until",
    input_types=_INTS,
    output_type=pa.timestamp("us", tz="UTC"),
    inverse="ban_to_temp_ban",
)
def temp_ban_until(values: pa.Array) -> TransformResult:
    """Read ``core_members.temp_ban`` as the end of a temporary ban (timestamptz, UTC).

    Only positive values (unix seconds) give a time; ``0`` (not banned) and ``-1``
    (permanent) give null. Other negatives are quarantined, as in ``temp_ban_state``.
    Expired bans keep their past end time (see ``temp_ban_state``).
    """
    arr = pc.cast(as_array(values), pa.int64())
    positive = pc.greater(arr, 0)
    micros = pc.multiply_checked(pc.if_else(positive, arr, None), 1_000_000)
    until = micros.cast(pa.timestamp("us", tz="UTC"))
    bad = pc.less(arr, _PERMANENT)
    errors = errors_where(
        bad,
        pc.binary_join_element_wise(
            "temp_ban ", pc.cast(arr, pa.string()), " is negative but not -1 (permanent)", ""
        ),
    )
    return TransformResult(until, errors=errors)


@transform(
    "ban_to_temp_ban",
    input_types=(pa.string(), pa.timestamp("us", tz="UTC")),
    output_type=pa.int64(),
    inverse="temp_ban_state",
)
def ban_to_temp_ban(state: pa.Array, until: pa.Array) -> TransformResult:
    """Write ``ban_state`` and ``banned_until`` back as the legacy ``temp_ban`` integer.

    ``'none'`` -> 0, ``'permanent'`` -> -1, ``'temporary'`` -> ``banned_until`` in unix
    seconds (floored). A temporary ban without an end, an end before 1970-01-01 00:00:01
    (which would read back as 0 or -1), or an unknown state is quarantined.
    """
    states = as_array(state)
    ends = as_array(until).cast(pa.timestamp("us", tz="UTC"))
    seconds = pc.cast(
        pc.floor_temporal(ends, unit="second").cast(pa.timestamp("s", tz="UTC")), pa.int64()
    )
    temporary = pc.equal(states, "temporary")
    value = pc.case_when(
        pc.make_struct(pc.equal(states, "none"), pc.equal(states, "permanent"), temporary),
        pa.scalar(0, pa.int64()),
        pa.scalar(_PERMANENT, pa.int64()),
        seconds,
    )
    bad_state = pc.and_(
        pc.is_valid(states),
        pc.invert(pc.is_in(states, value_set=pa.array(["none", "permanent", "temporary"]))),
    )
    bad_end = pc.and_(temporary, pc.fill_null(pc.less(seconds, 1), True))
    reasons = pc.coalesce(
        pc.if_else(
            bad_state,
            pc.binary_join_element_wise("unknown ban state '", states, "'", ""),
            pa.scalar(None, pa.string()),
        ),
        pa.scalar("temporary ban without a positive end time", pa.string()),
    )
    bad = pc.or_(bad_state, bad_end)
    errors = errors_where(bad, reasons)
    return TransformResult(null_where(value, bad), errors=errors)
