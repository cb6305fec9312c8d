from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pyarrow as pa
import pytest

from transform.registry import get_transform

NY = ZoneInfo("America/New_York")
UTC_TS = pa.timestamp("us", tz="UTC")


def run(name, values, arrow_type=pa.string(), **params):
    return get_transform(name).fn(pa.array(values, arrow_type), **params)


def utc(text):
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def first_error(result):
    return result.errors.to_pylist()[0] if result.errors is not None else None


@pytest.mark.parametrize(
    ("raw", "expected", "note"),
    [
        pytest.param("2021-06-01 12:00:00", "2021-06-01 16:00:00", None, id="summer-edt"),
        pytest.param("2021-01-15 12:00:00", "2021-01-15 17:00:00", None, id="winter-est"),
        pytest.param(
            "2021-11-07 01:30:00",
            "2021-11-07 05:30:00",
            "New York time in the repeated fall-back hour, read as first (EDT)",
            id="fall-back-first-occurrence",
        ),
        pytest.param("2021-11-07 00:59:59", "2021-11-07 04:59:59", None, id="before-fall-back"),
        pytest.param("2021-11-07 02:00:00", "2021-11-07 07:00:00", None, id="after-fall-back"),
        pytest.param(
            "2021-03-14 02:30:00",
            "2021-03-14 07:30:00",
            "New York time in the spring-forward gap, shifted forward by the gap",
            id="spring-gap-shifted-like-php",
        ),
        pytest.param(
            "2021-03-14 02:00:00",
            "2021-03-14 07:00:00",
            "New York time in the spring-forward gap, shifted forward by the gap",
            id="spring-gap-start",
        ),
        pytest.param("2021-03-14 01:59:59", "2021-03-14 06:59:59", None, id="before-gap"),
        pytest.param("2021-03-14 03:00:00", "2021-03-14 07:00:00", None, id="after-gap"),
        pytest.param("2021-06-01", "2021-06-01 04:00:00", None, id="date-only-local-midnight"),
        pytest.param("2021-06-01 12:00:00.25", "2021-06-01 16:00:00.250000", None, id="fraction"),
        pytest.param("0000-00-00 00:00:00", None, "zero date -> null", id="zero-date"),
        pytest.param("0000-00-00", None, "zero date -> null", id="zero-date-only"),
        pytest.param(
            "2020-05-00 10:00:00",
            None,
            "partial zero date (day, month or year 00) -> null",
            id="partial-zero-day",
        ),
        pytest.param(None, None, None, id="null"),
    ],
)
def test_ny_local_to_utc(raw, expected, note):
    result = run("ny_local_to_utc", [raw])
    assert result.values.type == UTC_TS
    assert result.values.to_pylist() == [utc(expected) if expected else None]
    assert first_error(result) is None
    assert dict(result.notes) == ({note: 1} if note else {})


@pytest.mark.parametrize(
    "raw",
    [
        pytest.param("2021-02-30 00:00:00", id="feb-30"),
        pytest.param("2021-02-28 23:59:60", id="leap-second"),
        pytest.param("2021-13-01 00:00:00", id="month-13"),
        pytest.param("2021-06-01 24:00:00", id="hour-24"),
        pytest.param("2021-06-01T12:00:00", id="iso-t"),
        pytest.param("", id="empty"),
        pytest.param("yesterday", id="junk"),
    ],
)
def test_ny_local_to_utc_quarantines_invalid_text(raw):
    result = run("ny_local_to_utc", [raw, "2021-06-01 12:00:00"])
    assert result.values.to_pylist()[0] is None
    assert result.errors.to_pylist() == [f"'{raw}' is not a valid DATETIME", None]


def test_ny_local_meaning_is_in_note_key():
    result = run("ny_local_to_utc", ["0000-00-00 00:00:00"] * 2, meaning="never expires")
    assert dict(result.notes) == {"zero date -> null (never expires)": 2}


def _zoneinfo_rule(wall):
    # fold=0: first occurrence in the repeated hour, pre-gap offset in the gap (= PHP DateTime).
    return wall.replace(tzinfo=NY, fold=0).astimezone(UTC)


def test_ny_local_to_utc_lmt_switch_of_1883():
    # The one New York transition not at 02:00: clocks went back 3m58s at noon.
    walls = [datetime(1883, 11, 18, 12, 0) + timedelta(seconds=s) for s in range(0, 300, 7)]
    texts = [w.strftime("%Y-%m-%d %H:%M:%S") for w in walls]
    assert run("ny_local_to_utc", texts).values.to_pylist() == [_zoneinfo_rule(w) for w in walls]


def test_ny_local_to_utc_equals_stated_rule_around_every_transition():
    walls = []
    for year in (1999, 2006, 2007, 2021, 2024, 2037):
        for month, days in (
            (3, range(7, 16)),
            (4, range(1, 8)),
            (10, range(25, 32)),
            (11, range(1, 9)),
        ):
            for day in days:
                start = datetime(year, month, day)
                walls += [start + timedelta(minutes=m) for m in range(0, 24 * 60, 15)]
    texts = [w.strftime("%Y-%m-%d %H:%M:%S") for w in walls]
    result = run("ny_local_to_utc", texts)
    assert result.values.to_pylist() == [_zoneinfo_rule(w) for w in walls]
    # 2006 switched in April/October, 2007 on: the rule follows tzdata, not fixed dates.
    assert (
        result.notes["New York time in the spring-forward gap, shifted forward by the gap"] == 6 * 4
    )


@pytest.mark.parametrize(
    ("instant", "expected", "note"),
    [
        pytest.param("2021-06-01 16:00:00", "2021-06-01 12:00:00", None, id="summer"),
        pytest.param("2021-03-14 07:30:00", "2021-03-14 03:30:00", None, id="after-gap"),
        pytest.param("2021-11-07 05:30:00", "2021-11-07 01:30:00", None, id="first-fall-back"),
        pytest.param(
            "2021-11-07 06:30:00",
            "2021-11-07 01:30:00",
            "second fall-back hour written as local time; reads back an hour earlier",
            id="second-fall-back-lossy",
        ),
        pytest.param(
            "2021-06-01 16:00:00.900000",
            "2021-06-01 12:00:00",
            "sub-second precision dropped (DATETIME holds whole seconds)",
            id="sub-second-floored",
        ),
    ],
)
def test_utc_to_ny_local(instant, expected, note):
    result = run("utc_to_ny_local", [utc(instant)], UTC_TS)
    assert result.values.to_pylist() == [expected]
    assert dict(result.notes) == ({note: 1} if note else {})


def test_utc_to_ny_local_null_as_zero_date():
    result = run("utc_to_ny_local", [None], UTC_TS, null_as="0000-00-00 00:00:00")
    assert result.values.to_pylist() == ["0000-00-00 00:00:00"]


@pytest.mark.parametrize(
    ("raw", "expected", "note"),
    [
        pytest.param("2021-05-01 10:00:00", "2021-05-01 10:00:00", None, id="valid-kept"),
        pytest.param("0000-00-00 00:00:00", None, "zero date -> null (never expires)", id="zero"),
        pytest.param("0000-00-00", None, "zero date -> null (never expires)", id="zero-date"),
        pytest.param(
            "2020-00-10",
            None,
            "partial zero date (day, month or year 00) -> null (never expires)",
            id="partial-month",
        ),
        pytest.param(None, None, None, id="null"),
    ],
)
def test_zero_date_to_null(raw, expected, note):
    result = run("zero_date_to_null", [raw], meaning="never expires")
    assert result.values.to_pylist() == [expected]
    assert dict(result.notes) == ({note: 1} if note else {})


def test_null_to_zero_date():
    assert run("null_to_zero_date", [None, "2021-01-01"]).values.to_pylist() == [
        "0000-00-00 00:00:00",
        "2021-01-01",
    ]
    assert run("null_to_zero_date", [None], date_only=True).values.to_pylist() == ["0000-00-00"]


@pytest.mark.parametrize(
    ("raw", "expected", "error"),
    [
        pytest.param("2021-03-14 02:30:00", "2021-03-14 02:30:00", None, id="utc-no-dst"),
        pytest.param("0000-00-00 00:00:00", None, None, id="zero"),
        pytest.param("2021-02-30 00:00:00", None, "is not a valid TIMESTAMP", id="invalid"),
    ],
)
def test_utc_timestamp_to_timestamptz(raw, expected, error):
    result = run("utc_timestamp_to_timestamptz", [raw])
    assert result.values.to_pylist() == [utc(expected) if expected else None]
    got = first_error(result)
    assert (error in got) if error else got is None


def test_timestamptz_to_utc_text():
    result = run("timestamptz_to_utc_text", [utc("2021-03-14 02:30:00"), None], UTC_TS)
    assert result.values.to_pylist() == ["2021-03-14 02:30:00", None]


@pytest.mark.parametrize(
    ("seconds", "params", "expected", "error"),
    [
        pytest.param(1_600_000_000, {}, "2020-09-13 12:26:40", None, id="value"),
        pytest.param(0, {}, None, None, id="zero-unknown"),
        pytest.param(-5, {}, None, "unix time -5 is negative", id="negative-quarantined"),
        pytest.param(-5, {"on_negative": "null"}, None, None, id="negative-to-null"),
        pytest.param(None, {}, None, None, id="null"),
    ],
)
def test_unix_seconds_to_timestamptz(seconds, params, expected, error):
    result = run("unix_seconds_to_timestamptz", [seconds], pa.int64(), **params)
    assert result.values.to_pylist() == [utc(expected) if expected else None]
    assert first_error(result) == error


@pytest.mark.parametrize(
    ("instant", "expected", "error"),
    [
        pytest.param(utc("2020-09-13 12:26:40.999999"), 1_600_000_000, None, id="floored"),
        pytest.param(None, 0, None, id="null-is-zero"),
        pytest.param(utc("1969-12-31 23:59:59.5"), -1, None, id="floor-before-epoch"),
        pytest.param(utc("2038-01-19 03:14:08"), None, "does not fit INT(10)", id="y2038"),
    ],
)
def test_timestamptz_to_unix_seconds(instant, expected, error):
    result = run("timestamptz_to_unix_seconds", [instant], UTC_TS)
    assert result.values.to_pylist() == [expected]
    got = first_error(result)
    assert (error in got) if error else got is None


@pytest.mark.parametrize(
    ("raw", "expected", "error"),
    [
        pytest.param("2021-03-14T02:30:00-05:00", "2021-03-14 07:30:00", None, id="est-offset"),
        pytest.param("2021-07-04T12:00:00-04:00", "2021-07-04 16:00:00", None, id="edt-offset"),
        pytest.param("2021-07-04T12:00:00Z", "2021-07-04 12:00:00", None, id="zulu"),
        pytest.param("2021-07-04T12:00:00.5+0100", "2021-07-04 11:00:00.5", None, id="fraction"),
        pytest.param("2021-07-04T12:00:00", None, "with an offset", id="no-offset"),
        pytest.param("", None, None, id="empty"),
        pytest.param(None, None, None, id="null"),
    ],
)
def test_iso8601_to_timestamptz(raw, expected, error):
    result = run("iso8601_to_timestamptz", [raw])
    assert result.values.to_pylist() == [utc(expected) if expected else None]
    got = first_error(result)
    assert (error in got) if error else got is None


def test_ny_local_fast_and_full_paths_agree_in_one_batch():
    texts = [
        "2021-06-01 12:00:00",
        "0000-00-00 00:00:00",
        "2021-06-01",
        "2021-02-30 10:00:00",
        "2021-03-01 10:00:00",  # day 1: re-checked by the full parser
        None,
        "2021-06-01 12:00:00.5",
        "2021-11-07 01:30:00",
    ]
    result = run("ny_local_to_utc", texts)
    assert result.values.to_pylist() == [
        utc("2021-06-01 16:00:00"),
        None,
        utc("2021-06-01 04:00:00"),
        None,
        utc("2021-03-01 15:00:00"),
        None,
        utc("2021-06-01 16:00:00.5"),
        utc("2021-11-07 05:30:00"),
    ]
    assert [e is not None for e in result.errors.to_pylist()] == [
        False,
        False,
        False,
        True,
        False,
        False,
        False,
        False,
    ]
