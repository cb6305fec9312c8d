import pyarrow as pa
import pytest

from transform.registry import get_transform


def run(name, values, arrow_type=pa.string(), **params):
    return get_transform(name).fn(pa.array(values, arrow_type), **params)


@pytest.mark.parametrize(
    ("name", "value", "expected"),
    [
        pytest.param("trim", "  a b \t", "a b", id="trim"),
        pytest.param("trim", "\u00a0x\u00a0", "x", id="trim-nbsp"),
        pytest.param("lower", "ÉCOLE", "école", id="lower-unicode"),
        pytest.param("blank_to_null", "", None, id="blank-empty"),
        pytest.param("blank_to_null", "  ", None, id="blank-spaces"),
        pytest.param("blank_to_null", " a ", " a ", id="blank-keeps-value-untrimmed"),
        pytest.param("null_to_blank", None, "", id="null-to-blank"),
    ],
)
def test_simple_text(name, value, expected):
    assert run(name, [value]).values.to_pylist() == [expected]


@pytest.mark.parametrize(
    ("raw", "expected", "note"),
    [
        pytest.param(" Bob@Example.COM ", "bob@example.com", None, id="trim-lower"),
        pytest.param("", None, "blank email -> null", id="empty"),
        pytest.param("   ", None, "blank email -> null", id="whitespace"),
        pytest.param("Not-An-Email", "not-an-email", "email without '@' kept as is", id="no-at"),
        pytest.param(None, None, None, id="null"),
    ],
)
def test_normalise_email(raw, expected, note):
    result = run("normalise_email", [raw])
    assert result.values.to_pylist() == [expected]
    assert result.errors is None
    assert dict(result.notes) == ({note: 1} if note else {})


def test_normalise_email_from_latin1_bytes():
    result = run("normalise_email", [b" Jos\xc3\xa9@X.org", b"caf\xe9@x.org"], pa.binary())
    assert result.values.to_pylist() == ["josé@x.org", "café@x.org"]


@pytest.mark.parametrize(
    ("raw", "params", "expected", "error"),
    [
        pytest.param("STORE ", {}, "store", None, id="trim-lower"),
        pytest.param("promo", {"allowed": ["store", "promo"]}, "promo", None, id="allowed"),
        pytest.param(" Staff", {"allowed": ["store", "staff"]}, "staff", None, id="allowed-after"),
        pytest.param(
            "gift", {"allowed": ["store"]}, None, "'gift' is not one of the allowed", id="outside"
        ),
        pytest.param(None, {"allowed": ["store"]}, None, None, id="null"),
    ],
)
def test_normalise_token(raw, params, expected, error):
    result = run("normalise_token", [raw], **params)
    assert result.values.to_pylist() == [expected]
    got = result.errors.to_pylist()[0] if result.errors else None
    assert (got is not None and got.startswith(error)) if error else got is None


@pytest.mark.parametrize(
    ("raw", "expected", "note"),
    [
        pytest.param("America/New_York", "America/New_York", None, id="valid"),
        pytest.param(" europe/london ", "Europe/London", None, id="case-and-space"),
        pytest.param("UTC", "UTC", None, id="utc"),
        pytest.param("", None, "blank timezone -> null", id="blank"),
        pytest.param("GMT+2", None, "timezone 'GMT+2' is not an IANA name -> null", id="garbage"),
        pytest.param(None, None, None, id="null"),
    ],
)
def test_iana_timezone(raw, expected, note):
    result = run("iana_timezone", [raw])
    assert result.values.to_pylist() == [expected]
    assert dict(result.notes) == ({note: 1} if note else {})


def test_iana_timezone_caps_listed_garbage():
    garbage = [f"junk{i}" for i in range(12)]
    notes = run("iana_timezone", garbage).notes
    assert len(notes) == 11 and notes["other non-IANA timezones -> null"] == 2
