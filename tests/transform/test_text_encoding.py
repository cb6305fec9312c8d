import pyarrow as pa
import pytest

from transform.registry import get_transform


def run(name, values, arrow_type, **params):
    return get_transform(name).fn(pa.array(values, arrow_type), **params)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        pytest.param(b"plain", "plain", id="ascii"),
        pytest.param(b"Jos\xc3\xa9", "José", id="utf8-bytes-in-latin1-column"),
        pytest.param(b"Caf\xe9", "Café", id="real-latin1"),
        pytest.param(b"\x80", "€", id="cp1252-euro"),
        pytest.param(b"\x81\x8d\x8f\x90\x9d", "\x81\x8d\x8f\x90\x9d", id="cp1252-holes-are-c1"),
        pytest.param(b"\x93quoted\x94", "\u201cquoted\u201d", id="cp1252-smart-quotes"),
        pytest.param("😀 ok".encode(), "😀 ok", id="utf8-4-byte"),
        pytest.param(b"a\x00b", "ab", id="nul-stripped"),
        pytest.param(b"", "", id="empty"),
        pytest.param(None, None, id="null"),
    ],
)
def test_repair_mojibake(raw, expected):
    result = run("repair_mojibake", [raw], pa.binary())
    assert result.values.to_pylist() == [expected]
    assert result.errors is None


def test_repair_mojibake_notes_and_large_binary():
    raw = [b"Jos\xc3\xa9", b"Caf\xe9", b"a\x00", "JosÃ©".encode(), b"x"]
    result = run("repair_mojibake", raw, pa.large_binary())
    assert result.values.type == pa.string()
    assert result.values.to_pylist() == ["José", "Café", "a", "JosÃ©", "x"]
    assert result.notes == {
        "NUL bytes stripped (PostgreSQL text cannot hold 0x00)": 1,
        "non-ASCII value decoded as UTF-8": 2,
        "non-ASCII value decoded as latin1 (cp1252)": 1,
        "value still looks double-encoded after UTF-8 decoding (kept as decoded)": 1,
    }


@pytest.mark.parametrize(
    ("text", "stored"),
    [
        pytest.param("plain", b"plain", id="ascii"),
        pytest.param("José", b"Jos\xc3\xa9", id="non-ascii-as-utf8"),
        pytest.param(None, None, id="null"),
    ],
)
def test_encode_latin1_column_round_trips(text, stored):
    encoded = run("encode_latin1_column", [text], pa.string())
    assert encoded.values.to_pylist() == [stored]
    assert get_transform("repair_mojibake").fn(encoded.values).values.to_pylist() == [text]


@pytest.mark.parametrize(
    ("raw", "expected", "error"),
    [
        pytest.param(b"ok", "ok", None, id="ascii"),
        pytest.param("é😀".encode(), "é😀", None, id="utf8"),
        pytest.param(b"ab\xffcd", None, "invalid UTF-8 at byte 2", id="invalid-byte"),
        pytest.param(b"\xc3", None, "invalid UTF-8 at byte 0", id="truncated-sequence"),
        pytest.param(b"a\x00", "a", None, id="nul-stripped"),
        pytest.param(None, None, None, id="null"),
    ],
)
def test_decode_utf8(raw, expected, error):
    result = run("decode_utf8", [raw, b"fine"], pa.binary())
    assert result.values.to_pylist() == [expected, "fine"]
    reasons = [None, None] if result.errors is None else result.errors.to_pylist()
    if error is None:
        assert reasons == [None, None]
    else:
        assert reasons[0].startswith(error) and reasons[1] is None


def test_strip_nul_and_copy():
    assert run("strip_nul", ["a\x00b", None, "c"], pa.string()).values.to_pylist() == [
        "ab",
        None,
        "c",
    ]
    copied = run("copy", [1, None], pa.uint64())
    assert copied.values.type == pa.uint64() and copied.values.to_pylist() == [1, None]
