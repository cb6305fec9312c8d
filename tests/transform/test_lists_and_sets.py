import pyarrow as pa
import pytest

from transform.registry import get_transform


def run(name, values, arrow_type=pa.string()):
    return get_transform(name).fn(pa.array(values, arrow_type))


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        pytest.param("f2p,p2p", ["f2p", "p2p"], id="two"),
        pytest.param("aio", ["aio"], id="one"),
        pytest.param("", [], id="empty-set"),
        pytest.param(None, None, id="null"),
    ],
)
def test_set_to_array_and_back(raw, expected):
    result = run("set_to_array", [raw])
    assert result.values.type == pa.list_(pa.string())
    assert result.values.to_pylist() == [expected]
    assert get_transform("array_to_set").fn(result.values).values.to_pylist() == [raw]


@pytest.mark.parametrize(
    ("raw", "expected", "error"),
    [
        pytest.param(",7,12,", [7, 12], None, id="leading-trailing-commas"),
        pytest.param("7,12", [7, 12], None, id="bare"),
        pytest.param("", [], None, id="empty"),
        pytest.param(",", [], None, id="only-comma"),
        pytest.param(",7,,12,", [7, 12], None, id="double-comma"),
        pytest.param(" 3 , 4", [3, 4], None, id="spaces"),
        pytest.param(",7,7,", [7, 7], None, id="duplicates-kept"),
        pytest.param(",-1,", [-1], None, id="negative"),
        pytest.param(
            ",7,abc,x,", None, "'abc' in comma list is not an integer", id="junk-names-first"
        ),
        pytest.param(",1.5,", None, "'1.5' in comma list is not an integer", id="decimal"),
        pytest.param(
            ",99999999999999999999,",
            None,
            "'99999999999999999999' in comma list is not an integer",
            id="too-large",
        ),
        pytest.param(None, None, None, id="null"),
    ],
)
def test_comma_list_to_int_array(raw, expected, error):
    result = run("comma_list_to_int_array", [raw, ",1,"])
    assert result.values.type == pa.list_(pa.int64())
    assert result.values.to_pylist() == [expected, [1]]
    errors = result.errors.to_pylist() if result.errors is not None else [None, None]
    assert errors == [error, None]


def test_comma_list_from_latin1_bytes():
    result = run("comma_list_to_int_array", [b",7,12,", b""], pa.binary())
    assert result.values.to_pylist() == [[7, 12], []]


@pytest.mark.parametrize(
    ("ids", "expected"),
    [
        pytest.param([7, 12], ",7,12,", id="two"),
        pytest.param([], "", id="empty"),
        pytest.param(None, None, id="null"),
    ],
)
def test_int_array_to_comma_list(ids, expected):
    result = run("int_array_to_comma_list", [ids], pa.list_(pa.int64()))
    assert result.values.to_pylist() == [expected]
