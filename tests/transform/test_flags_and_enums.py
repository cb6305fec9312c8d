import pyarrow as pa
import pytest

from runeshift.errors import ConfigError
from transform.registry import get_transform


def run(name, values, arrow_type=pa.int64(), **params):
    return get_transform(name).fn(pa.array(values, arrow_type), **params)


@pytest.mark.parametrize(
    ("flag", "expected", "notes"),
    [
        pytest.param(0, False, {}, id="zero"),
        pytest.param(1, True, {}, id="one"),
        pytest.param(2, True, {"flag value 2 read as true": 1}, id="two"),
        pytest.param(127, True, {"flag value 127 read as true": 1}, id="tinyint-max"),
        pytest.param(-1, True, {"flag value -1 read as true": 1}, id="minus-one"),
        pytest.param(None, None, {}, id="null"),
    ],
)
def test_flag_to_bool(flag, expected, notes):
    result = run("flag_to_bool", [flag])
    assert result.values.to_pylist() == [expected]
    assert dict(result.notes) == notes
    assert result.errors is None


def test_flag_to_bool_counts_by_value():
    result = run("flag_to_bool", [2, 2, 1, 0, 127, 2], pa.int8())
    assert dict(result.notes) == {"flag value 2 read as true": 3, "flag value 127 read as true": 1}


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        pytest.param(True, 1, id="true"),
        pytest.param(False, 0, id="false"),
        pytest.param(None, None, id="null"),
    ],
)
def test_bool_to_flag(value, expected):
    assert run("bool_to_flag", [value], pa.bool_()).values.to_pylist() == [expected]


@pytest.mark.parametrize(
    ("value", "params", "expected", "notes"),
    [
        pytest.param("combat", {}, "combat", {}, id="valid"),
        pytest.param("", {}, None, {"empty ENUM value (invalid in source) -> null": 1}, id="empty"),
        pytest.param(
            "",
            {"default": "other"},
            "other",
            {"empty ENUM value (invalid in source) -> 'other'": 1},
            id="empty-with-default",
        ),
        pytest.param(None, {"default": "other"}, None, {}, id="null-stays-null"),
    ],
)
def test_empty_enum_to_null(value, params, expected, notes):
    result = run("empty_enum_to_null", [value], pa.string(), **params)
    assert result.values.to_pylist() == [expected]
    assert dict(result.notes) == notes


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        pytest.param(0, None, id="zero"),
        pytest.param(12, 12, id="value"),
        pytest.param(None, None, id="null"),
    ],
)
def test_zero_to_null_and_back(value, expected):
    result = run("zero_to_null", [value], pa.int16())
    assert result.values.type == pa.int16()
    assert result.values.to_pylist() == [expected]
    back = get_transform("null_to_zero").fn(result.values)
    assert back.values.to_pylist() == [value if value is not None else 0]


@pytest.mark.parametrize(
    ("rating", "error"),
    [
        pytest.param(0, "rating 0 outside 1..5", id="zero"),
        pytest.param(1, None, id="min"),
        pytest.param(5, None, id="max"),
        pytest.param(6, "rating 6 outside 1..5", id="six"),
        pytest.param(None, None, id="null"),
    ],
)
def test_range_check(rating, error):
    result = run("range_check", [rating, 3], min=1, max=5, label="rating")
    assert result.values.to_pylist() == [None if error else rating, 3]
    assert (result.errors.to_pylist() if result.errors else [None, None]) == [error, None]


def test_range_check_open_bound_and_config_errors():
    result = run("range_check", [-5, 0], min=0)
    assert result.errors.to_pylist() == ["value -5 outside 0..", None]
    with pytest.raises(ConfigError):
        run("range_check", [1])
    with pytest.raises(ConfigError):
        run("range_check", [1], min=5, max=1)


@pytest.mark.parametrize(
    ("temp_ban", "state", "until", "error"),
    [
        pytest.param(0, "none", None, None, id="not-banned"),
        pytest.param(-1, "permanent", None, None, id="permanent"),
        pytest.param(1_600_000_000, "temporary", "2020-09-13T12:26:40+00:00", None, id="temp"),
        pytest.param(1, "temporary", "1970-01-01T00:00:01+00:00", None, id="expired-kept"),
        pytest.param(-7, None, None, "temp_ban -7 is negative but not -1", id="other-negative"),
        pytest.param(None, None, None, None, id="null"),
    ],
)
def test_temp_ban(temp_ban, state, until, error):
    state_result = run("temp_ban_state", [temp_ban])
    until_result = run("temp_ban_until", [temp_ban])
    assert state_result.values.to_pylist() == [state]
    got_until = until_result.values.to_pylist()[0]
    assert (got_until.isoformat() if got_until else None) == until
    for result in (state_result, until_result):
        got = result.errors.to_pylist()[0] if result.errors else None
        assert (got is not None and got.startswith(error)) if error else got is None


@pytest.mark.parametrize(
    ("state", "until", "expected", "error"),
    [
        pytest.param("none", None, 0, None, id="none"),
        pytest.param("permanent", None, -1, None, id="permanent"),
        pytest.param("temporary", 1_600_000_000_500_000, 1_600_000_000, None, id="temporary"),
        pytest.param("temporary", None, None, "temporary ban without", id="temporary-no-end"),
        pytest.param("temporary", 0, None, "temporary ban without", id="end-at-epoch"),
        pytest.param("banned", None, None, "unknown ban state 'banned'", id="unknown-state"),
        pytest.param(None, None, None, None, id="null"),
    ],
)
def test_ban_to_temp_ban(state, until, expected, error):
    result = get_transform("ban_to_temp_ban").fn(
        pa.array([state], pa.string()), pa.array([until], pa.timestamp("us", tz="UTC"))
    )
    assert result.values.to_pylist() == [expected]
    got = result.errors.to_pylist()[0] if result.errors is not None else None
    assert (got is not None and got.startswith(error)) if error else got is None


@pytest.mark.parametrize("temp_ban", [0, -1, 1_600_000_000])
def test_temp_ban_round_trip(temp_ban):
    raw = pa.array([temp_ban], pa.int64())
    state = get_transform("temp_ban_state").fn(raw).values
    until = get_transform("temp_ban_until").fn(raw).values
    assert get_transform("ban_to_temp_ban").fn(state, until).values.to_pylist() == [temp_ban]
