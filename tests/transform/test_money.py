import pyarrow as pa
import pytest

from runeshift.errors import ConfigError
from transform.registry import get_transform


def to_minor(amounts, currencies=None, **params):
    args = [pa.array(amounts, pa.string())]
    if currencies is not None:
        args.append(pa.array(currencies, pa.string()))
    return get_transform("money_to_minor").fn(*args, **params)


@pytest.mark.parametrize(
    ("amount", "currency", "expected", "error"),
    [
        pytest.param("19.99", "USD", 1999, None, id="usd"),
        pytest.param("0.00", "USD", 0, None, id="zero"),
        pytest.param("-1.50", "USD", -150, None, id="negative"),
        pytest.param("5", "USD", 500, None, id="integer"),
        pytest.param("5.", "USD", 500, None, id="trailing-dot"),
        pytest.param(".5", "USD", 50, None, id="leading-dot"),
        pytest.param("+2.5", "EUR", 250, None, id="plus-sign"),
        pytest.param(" 7.10 ", "GBP", 710, None, id="whitespace"),
        pytest.param("19.990", "USD", 1999, None, id="extra-zero-digit-is-exact"),
        pytest.param("-0.00", "USD", 0, None, id="negative-zero"),
        pytest.param("0.1", "USD", 10, None, id="no-float-error"),
        pytest.param("1500", "JPY", 1500, None, id="jpy-exponent-0"),
        pytest.param("1500.00", "JPY", 1500, None, id="jpy-with-zero-fraction"),
        pytest.param("1.234", "KWD", 1234, None, id="kwd-exponent-3"),
        pytest.param(
            "19.995",
            "USD",
            None,
            "amount '19.995' has more fractional digits than the currency's 2; not rounding",
            id="would-round",
        ),
        pytest.param("1.5", "JPY", None, "more fractional digits", id="jpy-fraction"),
        pytest.param("1e3", "USD", None, "amount '1e3' is not a decimal number", id="exponent"),
        pytest.param("$5", "USD", None, "is not a decimal number", id="dollar-sign"),
        pytest.param("", "USD", None, "amount '' is not a decimal number", id="empty"),
        pytest.param("1,000.00", "USD", None, "is not a decimal number", id="thousands-sep"),
        pytest.param("92233720368547758.07", "USD", 2**63 - 1, None, id="int64-max"),
        pytest.param("92233720368547758.08", "USD", None, "is too large", id="too-large"),
        pytest.param("-92233720368547758.08", "USD", None, "is too large", id="int64-min-refused"),
        pytest.param(None, "USD", None, None, id="null"),
    ],
)
def test_money_to_minor(amount, currency, expected, error):
    result = to_minor([amount], currency=currency)
    assert result.values.to_pylist() == [expected]
    got = result.errors.to_pylist()[0] if result.errors is not None else None
    assert (got is not None and error in got) if error else got is None


def test_money_to_minor_per_row_currency():
    result = to_minor(["19.99", "1500", "1.234", "1", "1"], ["usd", "JPY", "KWD", "XXX", None])
    assert result.values.to_pylist() == [1999, 1500, 1234, None, None]
    assert result.errors.to_pylist() == [
        None,
        None,
        None,
        "unknown currency 'XXX'",
        "currency is null",
    ]


@pytest.mark.parametrize(
    ("args", "params"),
    [
        pytest.param((), {}, id="no-currency"),
        pytest.param((["USD"],), {"currency": "USD"}, id="both"),
        pytest.param((), {"currency": "ZZZ"}, id="unknown-param-currency"),
    ],
)
def test_money_to_minor_config_errors(args, params):
    with pytest.raises(ConfigError):
        to_minor(["1"], *args, **params)


@pytest.mark.parametrize(
    ("minor", "currency", "expected"),
    [
        pytest.param(1999, "USD", "19.99", id="usd"),
        pytest.param(-150, "USD", "-1.50", id="negative"),
        pytest.param(5, "USD", "0.05", id="cents-only"),
        pytest.param(-5, "USD", "-0.05", id="negative-cents"),
        pytest.param(0, "USD", "0.00", id="zero"),
        pytest.param(1500, "JPY", "1500", id="jpy"),
        pytest.param(1234, "KWD", "1.234", id="kwd"),
        pytest.param(-(2**63), "USD", "-92233720368547758.08", id="int64-min"),
        pytest.param(None, "USD", None, id="null"),
    ],
)
def test_minor_to_money(minor, currency, expected):
    result = get_transform("minor_to_money").fn(pa.array([minor], pa.int64()), currency=currency)
    assert result.values.to_pylist() == [expected]
    if expected is not None and minor != -(2**63):
        assert to_minor([expected], currency=currency).values.to_pylist() == [minor]


def test_minor_to_money_per_row_currency():
    result = get_transform("minor_to_money").fn(pa.array([1999, 1500]), pa.array(["EUR", "JPY"]))
    assert result.values.to_pylist() == ["19.99", "1500"]


def test_money_fast_and_exact_paths_agree_in_one_batch():
    # Plain text takes the vectorised fast path, the rest the full parser; rows must land
    # back in their own positions.
    amounts = ["19.99", " 7.10 ", "5", "19.990", "x", "-1.5", None, "+2", ".5", "1.999"]
    expected = [1999, 710, 500, 1999, None, -150, None, 200, 50, None]
    result = to_minor(amounts, currency="USD")
    assert result.values.to_pylist() == expected
    assert [e is not None for e in result.errors.to_pylist()] == [
        v is None and a is not None for a, v in zip(amounts, expected, strict=True)
    ]
