"""PHP ``serialize()`` BLOBs to JSON text for a jsonb column.

``scripts.settings`` holds what PHP's ``serialize()`` made of an array
(``a:2:{s:3:"gui";b:1;s:5:"delay";i:600;}``). The parser below reads the whole format
without PHP and without ``eval``-like tricks; it never instantiates classes, it only
records their names. Per-row Python is unavoidable (it is a parser), so it works on
``bytes`` with compiled regexes and indices, no copying of the input.
"""

from __future__ import annotations

import json
import math
import re
from collections import Counter
from typing import Final

import pyarrow as pa

from runeshift.errors import ConfigError
from transform.registry import TransformResult, transform
from transform.row_errors import as_array
from transform.text_encoding import decode_mysql_latin1

__all__ = [
    "PhpUnserializeError",
    "json_to_php_serialize",
    "php_serialize",
    "php_unserialize",
    "php_unserialize_to_json",
]

_INT = re.compile(rb"i:([+-]?[0-9]+);")
_FLOAT = re.compile(rb"d:([^;]*);")
_FLOAT_TEXT = re.compile(rb"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
_BOOL = re.compile(rb"b:([01]);")
_STRING_HEAD = re.compile(rb"s:([0-9]+):\"")
_ARRAY_HEAD = re.compile(rb"a:([0-9]+):\{")
_OBJECT_HEAD = re.compile(rb"O:([0-9]+):\"")
_CUSTOM_HEAD = re.compile(rb"C:([0-9]+):\"")
_ENUM_HEAD = re.compile(rb"E:([0-9]+):\"")
_REFERENCE = re.compile(rb"([rR]):([0-9]+);")
_COUNT_BRACE = re.compile(rb":([0-9]+):\{")
_LENGTH_BRACE = re.compile(rb"([0-9]+):\{")
_CANONICAL_INT = re.compile(r"-?(?:0|[1-9][0-9]*)")
# The common tokens in one match: group 1 int, 2 bool, 3 string length; 'N;' has none.
_SCALAR = re.compile(rb"i:([+-]?[0-9]+);|b:([01]);|s:([0-9]+):\"|N;")
_KEY = re.compile(rb"i:([+-]?[0-9]+);|s:([0-9]+):\"")

_MAX_DEPTH: Final = 256
_IN_PROGRESS: Final = object()  # slot of a container whose parsing has not finished
_NON_FINITE_POLICIES = ("quarantine", "null", "string")


class PhpUnserializeError(ValueError):
    """The bytes are not (complete) PHP serialize() output; ``offset`` is where it broke."""

    def __init__(self, message: str, offset: int, *, at_end: bool = False) -> None:
        where = f"at byte {offset}" + (", where the data ends (truncated?)" if at_end else "")
        super().__init__(f"{message} {where}")
        self.offset = offset


class _Parser:
    """One pass over one serialized value; ``slots`` numbers values as PHP does for r:/R:."""

    def __init__(self, data: bytes, non_finite: str, notes: Counter[str]) -> None:
        self.data = data
        self.pos = 0
        self.slots: list[object] = []
        self.non_finite = non_finite
        self.notes = notes

    def fail(self, message: str, offset: int | None = None) -> PhpUnserializeError:
        at = self.pos if offset is None else offset
        return PhpUnserializeError(message, at, at_end=at >= len(self.data))

    def expect(self, token: bytes) -> None:
        if self.data[self.pos : self.pos + len(token)] != token:
            raise self.fail(f"expected {token.decode()!r}")
        self.pos += len(token)

    def text(self, raw: bytes) -> str:
        try:
            decoded = raw.decode("utf-8")
        except UnicodeDecodeError:
            decoded = decode_mysql_latin1(raw)
            self.notes["non-UTF-8 string in serialized data decoded as latin1"] += 1
        if "\x00" in decoded:
            # jsonb rejects \u0000; object property names carry them as visibility markers
            # and are handled before this.
            self.notes["NUL characters stripped from serialized string"] += 1
            decoded = decoded.replace("\x00", "")
        return decoded

    def counted_bytes(self, length: int, closing: bytes) -> bytes:
        """``length`` raw bytes (PHP counts BYTES, not characters), then ``closing``."""
        end = self.pos + length
        if end > len(self.data):
            raise self.fail(f"string of {length} bytes runs past the end", len(self.data))
        raw = self.data[self.pos : end]
        self.pos = end
        self.expect(closing)
        return raw

    def value(self, depth: int) -> object:
        m = _SCALAR.match(self.data, self.pos)
        if m is not None:  # fast path: one regex match settles the common tokens
            self.pos = m.end()
            kind = m.lastindex
            result: object
            if kind == 1:
                result = int(m.group(1))
            elif kind == 2:
                result = m.group(2) == b"1"
            elif kind == 3:
                result = self.text(self.counted_bytes(int(m.group(3)), b'";'))
            else:
                result = None
            self.slots.append(result)
            return result
        if depth > _MAX_DEPTH:
            raise self.fail(f"nesting deeper than {_MAX_DEPTH}")
        if self.pos >= len(self.data):
            raise self.fail("expected a value")
        tag = self.data[self.pos : self.pos + 1]
        if tag == b"R" or tag == b"r":
            return self.reference(tag)
        slot = len(self.slots)
        self.slots.append(_IN_PROGRESS)
        result = self.plain_value(tag, depth)
        self.slots[slot] = result
        return result

    def plain_value(self, tag: bytes, depth: int) -> object:
        data, pos = self.data, self.pos
        if tag == b"N":
            self.expect(b"N;")
            return None
        if tag == b"b":
            if m := _BOOL.match(data, pos):
                self.pos = m.end()
                return m.group(1) == b"1"
            raise self.fail("expected b:0; or b:1;")
        if tag == b"i":
            if m := _INT.match(data, pos):
                self.pos = m.end()
                return int(m.group(1))
            raise self.fail("expected an integer i:<digits>;")
        if tag == b"d":
            return self.float_value()
        if tag == b"s":
            if m := _STRING_HEAD.match(data, pos):
                self.pos = m.end()
                return self.text(self.counted_bytes(int(m.group(1)), b'";'))
            raise self.fail('expected a string s:<length>:"')
        if tag == b"a":
            if m := _ARRAY_HEAD.match(data, pos):
                self.pos = m.end()
                return self.array_body(int(m.group(1)), depth)
            raise self.fail("expected an array a:<count>:{")
        if tag == b"O":
            return self.object_value(depth)
        if tag == b"C":
            return self.custom_object()
        if tag == b"E":
            if m := _ENUM_HEAD.match(data, pos):
                self.pos = m.end()
                case = self.text(self.counted_bytes(int(m.group(1)), b'";'))
                self.notes["PHP enum case kept as {'__enum__': 'Class:Case'}"] += 1
                return {"__enum__": case}
            raise self.fail('expected an enum E:<length>:"')
        raise self.fail(f"unknown type tag {tag!r}")

    def float_value(self) -> object:
        m = _FLOAT.match(self.data, self.pos)
        if m is None:
            raise self.fail("expected a float d:<number>;")
        raw = m.group(1)
        if raw in (b"INF", b"-INF", b"NAN"):
            if self.non_finite == "quarantine":
                raise self.fail(f"float {raw.decode()} has no JSON form")
            self.pos = m.end()
            self.notes[f"PHP float {raw.decode()} stored as JSON {self.non_finite}"] += 1
            return None if self.non_finite == "null" else raw.decode()
        if _FLOAT_TEXT.fullmatch(raw) is None:
            raise self.fail(f"{raw[:20]!r} is not a float")
        number = float(raw)
        if not math.isfinite(number):  # '1e999' overflows to inf
            raise self.fail(f"float {raw[:20].decode()} overflows")
        self.pos = m.end()
        return number

    def key(self) -> int | str:
        m = _KEY.match(self.data, self.pos)
        if m is None:
            raise self.fail("expected an array key (i: or s:)")
        self.pos = m.end()
        if m.lastindex == 1:
            return int(m.group(1))
        key = self.text(self.counted_bytes(int(m.group(2)), b'";'))
        # PHP stores numeric-string keys ("7") as integer keys when it unserializes.
        return int(key) if _CANONICAL_INT.fullmatch(key) else key

    def array_body(self, count: int, depth: int) -> object:
        items: dict[int | str, object] = {}
        for _ in range(count):
            key = self.key()
            items[key] = self.value(depth + 1)
        self.expect(b"}")
        if list(items) == list(range(len(items))):
            return list(items.values())
        return {str(k): v for k, v in items.items()}

    def object_value(self, depth: int) -> object:
        m = _OBJECT_HEAD.match(self.data, self.pos)
        if m is None:
            raise self.fail('expected an object O:<length>:"')
        self.pos = m.end()
        class_name = self.text(self.counted_bytes(int(m.group(1)), b'"'))
        count = _COUNT_BRACE.match(self.data, self.pos)
        if count is None:
            raise self.fail("expected :<count>:{ after the class name")
        self.pos = count.end()
        obj: dict[str, object] = {"__class__": class_name}
        for _ in range(int(count.group(1))):
            name = self.property_name()
            obj[name] = self.value(depth + 1)
        self.expect(b"}")
        self.notes["PHP object kept as JSON object with '__class__'"] += 1
        return obj

    def property_name(self) -> str:
        """A property name without PHP's visibility prefix (``\\0*\\0x``, ``\\0Class\\0x``)."""
        m = _STRING_HEAD.match(self.data, self.pos)
        if m is None:
            raise self.fail("expected a property name s:<length>:")
        self.pos = m.end()
        raw = self.counted_bytes(int(m.group(1)), b'";')
        if raw.startswith(b"\x00"):
            raw = raw[raw.index(b"\x00", 1) + 1 :] if b"\x00" in raw[1:] else raw[1:]
        return self.text(raw)

    def custom_object(self) -> object:
        """``C:`` (Serializable): the payload is the class's own format; kept as text."""
        m = _CUSTOM_HEAD.match(self.data, self.pos)
        if m is None:
            raise self.fail('expected a custom object C:<length>:"')
        self.pos = m.end()
        class_name = self.text(self.counted_bytes(int(m.group(1)), b'"'))
        self.expect(b":")
        length = _LENGTH_BRACE.match(self.data, self.pos)
        if length is None:
            raise self.fail("expected <length>:{ after the class name")
        self.pos = length.end()
        payload = self.text(self.counted_bytes(int(length.group(1)), b"}"))
        self.notes["PHP Serializable object kept as raw payload text"] += 1
        return {"__class__": class_name, "__serialized__": payload}

    def reference(self, tag: bytes) -> object:
        """``r:n;``/``R:n;`` point at the n-th value parsed (1-based); JSON gets a copy."""
        m = _REFERENCE.match(self.data, self.pos)
        if m is None:
            raise self.fail(f"expected a reference {tag.decode()}:<number>;")
        target = int(m.group(2))
        if not 1 <= target <= len(self.slots):
            raise self.fail(f"reference to value {target}, which does not exist")
        referenced = self.slots[target - 1]
        if referenced is _IN_PROGRESS:
            raise self.fail(f"recursive reference to value {target} has no JSON form")
        if tag == b"r":  # r: (object handle) takes a value slot of its own; R: does not
            self.slots.append(referenced)
        self.pos = m.end()
        self.notes["PHP reference resolved by copying the value"] += 1
        return referenced


def php_unserialize(
    data: bytes, *, non_finite: str = "quarantine", notes: Counter[str] | None = None
) -> object:
    """Parse one PHP ``serialize()`` value into JSON-ready Python values.

    Raises:
        PhpUnserializeError: the bytes are truncated or malformed; the message names the
            byte offset.
    """
    parser = _Parser(data, non_finite, notes if notes is not None else Counter())
    result = parser.value(0)
    if parser.pos != len(data):
        parser.notes["trailing bytes after serialized value ignored (as PHP does)"] += 1
    return result


@transform(
    "php_unserialize_to_json",
    input_types=(pa.binary(), pa.large_binary(), pa.string(), pa.large_string()),
    output_type=pa.string(),
    params={"non_finite": str},
    inverse="json_to_php_serialize",
)
def php_unserialize_to_json(values: pa.Array, *, non_finite: str = "quarantine") -> TransformResult:
    """Turn PHP ``serialize()`` output into JSON text (for a jsonb column).

    Mapping of the format:

    * ``N;`` -> ``null``; ``b:0;``/``b:1;`` -> ``false``/``true``; ``i:5;`` -> ``5``;
      ``d:0.5;`` -> ``0.5``.
    * ``d:INF;``, ``d:-INF;``, ``d:NAN;`` have no JSON form: by default the row is
      quarantined; ``non_finite="null"`` stores null, ``"string"`` stores ``"INF"``
      (both counted).
    * ``s:LEN:"...";`` -- LEN counts BYTES, so multibyte UTF-8 strings are read by byte
      length, then decoded as UTF-8 (non-UTF-8 falls back to MySQL latin1, counted). NUL
      characters are stripped (jsonb rejects ``\\u0000``), counted.
    * ``a:N:{...}`` -> a JSON list when the keys are exactly 0..N-1 in order, otherwise
      an object with string keys. Numeric string keys count as integers, as in PHP.
    * ``O:...`` -> an object with ``"__class__"`` and the properties, visibility prefixes
      (``\\0*\\0``, ``\\0Class\\0``) removed; ``C:`` (Serializable) -> ``__class__`` plus the
      raw payload as ``"__serialized__"``; ``E:`` (enum) -> ``{"__enum__": "Class:Case"}``.
    * References ``R:n;``/``r:n;`` are resolved by copying the n-th value (numbered as PHP
      does); a reference to a container that is still open (recursion) is quarantined.

    Truncated or malformed data is quarantined with the byte offset where parsing stopped.
    Bytes after a complete value are ignored, as PHP ignores them, and counted. Null stays
    null; an empty BLOB becomes null (counted).
    """
    if non_finite not in _NON_FINITE_POLICIES:
        raise ConfigError(
            f"php_unserialize_to_json: non_finite must be one of {_NON_FINITE_POLICIES}, "
            f"got {non_finite!r}"
        )
    arr = as_array(values)
    notes: Counter[str] = Counter()
    out: list[str | None] = []
    reasons: list[str | None] = []
    any_error = False
    for raw in arr.to_pylist():
        if raw is None:
            out.append(None)
            reasons.append(None)
            continue
        data = raw.encode("utf-8") if isinstance(raw, str) else raw
        if not data:
            notes["empty serialized value -> null"] += 1
            out.append(None)
            reasons.append(None)
            continue
        row_notes: Counter[str] = Counter()
        try:
            parsed = php_unserialize(data, non_finite=non_finite, notes=row_notes)
        except PhpUnserializeError as exc:
            out.append(None)
            reasons.append(f"PHP serialize: {exc}")
            any_error = True
            continue
        notes.update(row_notes)
        out.append(json.dumps(parsed, ensure_ascii=False, separators=(",", ":"), allow_nan=False))
        reasons.append(None)
    errors = pa.array(reasons, pa.string()) if any_error else None
    return TransformResult(pa.array(out, pa.string()), errors=errors, notes=dict(notes))


def _php_key(key: str) -> bytes:
    if _CANONICAL_INT.fullmatch(key):
        return b"i:%s;" % key.encode()
    raw = key.encode("utf-8")
    return b's:%d:"%s";' % (len(raw), raw)


def php_serialize(value: object) -> bytes:
    """PHP ``serialize()`` bytes for a JSON value (the inverse of ``php_unserialize``).

    Lists become ``a:`` with keys 0..n-1, objects ``a:`` with their keys (canonical integer
    strings as integer keys, as PHP would hold them); ``{"__class__": ...}`` becomes ``O:``
    (public properties), ``__serialized__`` ``C:`` and ``{"__enum__": ...}`` ``E:``. Floats
    are written in Python's shortest round-trip form, which PHP's ``unserialize`` reads.
    """
    if value is None:
        return b"N;"
    if isinstance(value, bool):
        return b"b:1;" if value else b"b:0;"
    if isinstance(value, int):
        return b"i:%d;" % value
    if isinstance(value, float):
        text = "INF" if value == math.inf else "-INF" if value == -math.inf else repr(value)
        return b"d:%s;" % (b"NAN" if math.isnan(value) else text.encode())
    if isinstance(value, str):
        raw = value.encode("utf-8")
        return b's:%d:"%s";' % (len(raw), raw)
    if isinstance(value, list):
        body = b"".join(b"i:%d;%s" % (i, php_serialize(v)) for i, v in enumerate(value))
        return b"a:%d:{%s}" % (len(value), body)
    if isinstance(value, dict):
        if set(value) == {"__enum__"} and isinstance(value["__enum__"], str):
            raw = value["__enum__"].encode("utf-8")
            return b'E:%d:"%s";' % (len(raw), raw)
        class_name = value.get("__class__")
        if isinstance(class_name, str):
            name = class_name.encode("utf-8")
            payload = value.get("__serialized__")
            if isinstance(payload, str) and len(value) == 2:
                data = payload.encode("utf-8")
                return b'C:%d:"%s":%d:{%s}' % (len(name), name, len(data), data)
            props = {k: v for k, v in value.items() if k != "__class__"}
            body = b"".join(_php_key_text(k) + php_serialize(v) for k, v in props.items())
            return b'O:%d:"%s":%d:{%s}' % (len(name), name, len(props), body)
        body = b"".join(_php_key(str(k)) + php_serialize(v) for k, v in value.items())
        return b"a:%d:{%s}" % (len(value), body)
    raise TypeError(f"no PHP serialize() form for {type(value).__name__}")


def _php_key_text(key: str) -> bytes:
    """Object property names are always strings in serialize() output."""
    raw = key.encode("utf-8")
    return b's:%d:"%s";' % (len(raw), raw)


@transform(
    "json_to_php_serialize",
    input_types=(pa.string(), pa.large_string()),
    output_type=pa.binary(),
    inverse="php_unserialize_to_json",
)
def json_to_php_serialize(values: pa.Array) -> TransformResult:
    """Write JSON text back as PHP ``serialize()`` bytes (reverse replication of settings).

    Semantically the inverse of ``php_unserialize_to_json``: PHP unserializes the result to
    the value that was read, though bytes may differ from the original (float spelling,
    references written as copies, visibility prefixes of object properties not restored).
    Text that is not JSON is quarantined.
    """
    out: list[bytes | None] = []
    reasons: list[str | None] = []
    for text in as_array(values).to_pylist():
        if text is None:
            out.append(None)
            reasons.append(None)
            continue
        try:
            out.append(php_serialize(json.loads(text)))
            reasons.append(None)
        except (ValueError, TypeError) as exc:
            out.append(None)
            reasons.append(f"not JSON that PHP can hold: {exc}")
    errors = pa.array(reasons, pa.string()) if any(r is not None for r in reasons) else None
    return TransformResult(pa.array(out, pa.binary()), errors=errors)
