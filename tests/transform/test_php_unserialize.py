import json

import pyarrow as pa
import pytest

from runeshift.errors import ConfigError
from transform.registry import get_transform


def run(raw, **params):
    return get_transform("php_unserialize_to_json").fn(pa.array([raw], pa.binary()), **params)


def one(raw, **params):
    result = run(raw, **params)
    error = result.errors.to_pylist()[0] if result.errors is not None else None
    text = result.values.to_pylist()[0]
    return (json.loads(text) if text is not None else None), error, dict(result.notes)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        pytest.param(b"N;", None, id="null"),
        pytest.param(b"b:0;", False, id="false"),
        pytest.param(b"b:1;", True, id="true"),
        pytest.param(b"i:600;", 600, id="int"),
        pytest.param(b"i:-42;", -42, id="negative-int"),
        pytest.param(b"i:9223372036854775807;", 2**63 - 1, id="int64-max"),
        pytest.param(b"d:0.5;", 0.5, id="float"),
        pytest.param(b"d:1.0E+25;", 1e25, id="float-exponent"),
        pytest.param(b"d:-0.1;", -0.1, id="negative-float"),
        pytest.param(b's:0:"";', "", id="empty-string"),
        pytest.param(b's:5:"hello";', "hello", id="string"),
        pytest.param('s:5:"José";'.encode(), "José", id="multibyte-length-in-bytes"),
        pytest.param('s:4:"😀";'.encode(), "😀", id="4-byte-char"),
        pytest.param(b's:4:"a";b";', 'a";b', id="quote-inside-counted-string"),
        pytest.param(b's:4:"Caf\xe9";', "Café", id="latin1-string-fallback"),
        pytest.param(
            b'a:2:{s:3:"gui";b:1;s:5:"delay";i:600;}', {"gui": True, "delay": 600}, id="assoc"
        ),
        pytest.param(b'a:2:{i:0;s:1:"a";i:1;s:1:"b";}', ["a", "b"], id="list"),
        pytest.param(b"a:0:{}", [], id="empty-array"),
        pytest.param(b"a:2:{i:1;i:10;i:0;i:20;}", {"1": 10, "0": 20}, id="int-keys-out-of-order"),
        pytest.param(b"a:2:{i:0;i:1;i:2;i:3;}", {"0": 1, "2": 3}, id="int-keys-with-gap"),
        pytest.param(b'a:1:{s:1:"0";i:5;}', [5], id="numeric-string-key-is-int"),
        pytest.param(b'a:1:{s:2:"07";i:5;}', {"07": 5}, id="non-canonical-key-stays-text"),
        pytest.param(
            b'a:1:{s:4:"opts";a:2:{i:0;d:1.5;i:1;N;}}', {"opts": [1.5, None]}, id="nested"
        ),
        pytest.param(
            b'O:8:"stdClass":1:{s:1:"a";i:1;}', {"__class__": "stdClass", "a": 1}, id="object"
        ),
        pytest.param(
            b'O:3:"Foo":2:{s:4:"\x00*\x00p";i:1;s:6:"\x00Foo\x00q";i:2;}',
            {"__class__": "Foo", "p": 1, "q": 2},
            id="object-visibility-prefixes",
        ),
        pytest.param(
            b'C:3:"Bar":5:{x:i:1}',
            {"__class__": "Bar", "__serialized__": "x:i:1"},
            id="serializable-object",
        ),
        pytest.param(b'E:11:"Suit:Hearts";', {"__enum__": "Suit:Hearts"}, id="enum"),
        pytest.param(
            b"a:2:{i:0;a:1:{i:0;i:7;}i:1;R:2;}", [[7], [7]], id="reference-R-copies-value"
        ),
        pytest.param(b'a:3:{i:0;s:1:"x";i:1;r:2;i:2;R:3;}', ["x", "x", "x"], id="r-takes-a-slot"),
        pytest.param(b"i:1;junk", 1, id="trailing-bytes-ignored-like-php"),
    ],
)
def test_php_unserialize_to_json(raw, expected):
    value, error, _ = one(raw)
    assert error is None
    assert value == expected


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        pytest.param(
            b'a:2:{s:3:"gui";b:1;s:5:"del',
            "PHP serialize: string of 5 bytes runs past the end at byte 27, "
            "where the data ends (truncated?)",
            id="truncated-in-string",
        ),
        pytest.param(
            b'a:2:{s:3:"gui";b:1;',
            "PHP serialize: expected an array key (i: or s:) at byte 19, "
            "where the data ends (truncated?)",
            id="truncated-after-item",
        ),
        pytest.param(b"a:1:{i:0;i:1;", "expected '}' at byte 13", id="missing-close-brace"),
        pytest.param('s:6:"José";'.encode(), "expected '\";' at byte", id="char-count-not-bytes"),
        pytest.param(b"b:2;", "expected b:0; or b:1; at byte 0", id="bad-bool"),
        pytest.param(b"i:12", "expected an integer", id="int-without-semicolon"),
        pytest.param(b"d:abc;", "is not a float at byte 0", id="bad-float"),
        pytest.param(b"x:1;", "unknown type tag b'x' at byte 0", id="unknown-tag"),
        pytest.param(b"R:5;", "reference to value 5, which does not exist", id="dangling-ref"),
        pytest.param(b"a:1:{i:0;R:1;}", "recursive reference to value 1", id="recursive-ref"),
        pytest.param(b"d:INF;", "float INF has no JSON form", id="inf-quarantined"),
        pytest.param(b"d:1e999;", "overflows", id="float-overflow"),
        pytest.param(b"a:1:{i:0;" * 300 + b"N;" + b"}" * 300, "nesting deeper", id="too-deep"),
    ],
)
def test_php_unserialize_quarantines_with_offset(raw, reason):
    value, error, _ = one(raw)
    assert value is None
    assert error is not None and reason in error


@pytest.mark.parametrize(
    ("policy", "expected", "note"),
    [
        pytest.param("null", [None, None], "PHP float NAN stored as JSON null", id="null"),
        pytest.param("string", ["-INF", "NAN"], "PHP float NAN stored as JSON string", id="str"),
    ],
)
def test_non_finite_policies(policy, expected, note):
    value, error, notes = one(b"a:2:{i:0;d:-INF;i:1;d:NAN;}", non_finite=policy)
    assert error is None and value == expected and notes[note] == 1


def test_non_finite_policy_is_checked():
    with pytest.raises(ConfigError):
        run(b"N;", non_finite="zero")


def test_nulls_empty_and_notes():
    result = get_transform("php_unserialize_to_json").fn(
        pa.array([None, b"", b'O:8:"stdClass":0:{}', b"i:1;"], pa.binary())
    )
    assert result.values.to_pylist() == [None, None, '{"__class__":"stdClass"}', "1"]
    assert result.errors is None
    assert dict(result.notes) == {
        "empty serialized value -> null": 1,
        "PHP object kept as JSON object with '__class__'": 1,
    }


def test_nul_characters_are_stripped_for_jsonb():
    value, error, notes = one(b's:3:"a\x00b";')
    assert (value, error) == ("ab", None)
    assert notes == {"NUL characters stripped from serialized string": 1}


def test_failed_row_does_not_add_notes():
    _, error, notes = one(b'a:2:{i:0;O:8:"stdClass":0:{}i:1;')
    assert error is not None and notes == {}


@pytest.mark.parametrize(
    ("value", "serialized"),
    [
        pytest.param(None, b"N;", id="null"),
        pytest.param(True, b"b:1;", id="true"),
        pytest.param(600, b"i:600;", id="int"),
        pytest.param(0.5, b"d:0.5;", id="float"),
        pytest.param("José", 's:5:"José";'.encode(), id="multibyte-string-byte-length"),
        pytest.param(["a", "b"], b'a:2:{i:0;s:1:"a";i:1;s:1:"b";}', id="list"),
        pytest.param(
            {"gui": True, "7": 1}, b'a:2:{s:3:"gui";b:1;i:7;i:1;}', id="assoc-with-int-key"
        ),
        pytest.param(
            {"__class__": "stdClass", "a": 1}, b'O:8:"stdClass":1:{s:1:"a";i:1;}', id="object"
        ),
        pytest.param({"__enum__": "Suit:Hearts"}, b'E:11:"Suit:Hearts";', id="enum"),
    ],
)
def test_json_to_php_serialize_round_trips(value, serialized):
    text = json.dumps(value, ensure_ascii=False)
    result = get_transform("json_to_php_serialize").fn(pa.array([text]))
    assert result.values.to_pylist() == [serialized]
    assert json.loads(run(serialized).values.to_pylist()[0]) == value


def test_json_to_php_serialize_quarantines_non_json():
    result = get_transform("json_to_php_serialize").fn(pa.array(["{oops", None]))
    assert result.values.to_pylist() == [None, None]
    assert result.errors.to_pylist()[0].startswith("not JSON that PHP can hold")
