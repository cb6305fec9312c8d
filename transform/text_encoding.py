"""Turning stored bytes into Unicode text: mojibake repair, UTF-8 decoding, NUL stripping.

The legacy PHP app talked to its latin1 tables over a latin1 connection while sending UTF-8,
so a latin1 column holds the UTF-8 bytes of non-ASCII text (``b'Jos\\xc3\\xa9'``, shown by
MySQL as ``JosÃ©``) beside older values that really are latin1 (``b'Caf\\xe9'``). The
readers hand these columns over as ``binary`` (decision 0001) so the bytes can be judged.
"""

from __future__ import annotations

import codecs

import pyarrow as pa
import pyarrow.compute as pc

from transform.registry import TransformResult, transform
from transform.row_errors import as_array, count_true

__all__ = [
    "MYSQL_LATIN1_TABLE",
    "copy",
    "decode_legacy_bytes",
    "decode_mysql_latin1",
    "decode_utf8",
    "encode_latin1_column",
    "encode_utf8",
    "repair_mojibake",
    "strip_nul",
]


def _mysql_latin1_table() -> str:
    """MySQL's latin1: cp1252, with the 5 bytes cp1252 leaves undefined mapped to C1 controls."""
    chars = []
    for byte in range(256):
        try:
            chars.append(bytes([byte]).decode("cp1252"))
        except UnicodeDecodeError:  # 0x81, 0x8D, 0x8F, 0x90, 0x9D
            chars.append(chr(byte))
    return "".join(chars)


MYSQL_LATIN1_TABLE = _mysql_latin1_table()
_MYSQL_LATIN1_ENCODING = codecs.charmap_build(MYSQL_LATIN1_TABLE)

_NUL_NOTE = "NUL bytes stripped (PostgreSQL text cannot hold 0x00)"


def decode_mysql_latin1(data: bytes) -> str:
    """Decode bytes the way MySQL reads a latin1 column (cp1252 plus 5 C1 controls)."""
    return codecs.charmap_decode(data, "strict", MYSQL_LATIN1_TABLE)[0]


def decode_legacy_bytes(data: bytes) -> str:
    """Decode one latin1-column value: UTF-8 if the bytes are valid UTF-8, else MySQL latin1."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return decode_mysql_latin1(data)


def _looks_double_encoded(text: str) -> bool:
    """True if ``text`` is itself UTF-8 read as latin1 (``'JosÃ©'``), i.e. encoded twice."""
    try:
        raw = codecs.charmap_encode(text, "strict", _MYSQL_LATIN1_ENCODING)[0]
        return raw.decode("utf-8") != text
    except (UnicodeEncodeError, UnicodeDecodeError):
        return False


def _to_binary(values: pa.Array) -> pa.Array:
    arr = as_array(values)
    if pa.types.is_large_binary(arr.type):
        return arr.cast(pa.binary())
    return arr


def _strip_nul_bytes(arr: pa.Array, notes: dict[str, int]) -> pa.Array:
    """``arr`` (binary or string) without 0x00 bytes; counts the rows that had them."""
    pattern: bytes | str = b"\x00" if pa.types.is_binary(arr.type) else "\x00"
    has_nul = pc.match_substring(arr, pattern)
    n = count_true(has_nul)
    if n == 0:
        return arr
    notes[_NUL_NOTE] = n
    return pc.replace_substring(arr, pattern, pattern[:0])


def _non_ascii_mask(as_text: pa.Array) -> pa.Array:
    return pc.invert(pc.fill_null(pc.string_is_ascii(as_text), True))


@transform(
    "repair_mojibake",
    input_types=(pa.binary(), pa.large_binary()),
    output_type=pa.string(),
    inverse="encode_latin1_column",
)
def repair_mojibake(values: pa.Array) -> TransformResult:
    """Decode a latin1 column's stored bytes into the text the user meant.

    Rules, per value:

    * pure ASCII: kept as is (the fast path: no per-row Python);
    * valid UTF-8 (and not ASCII): decoded as UTF-8, ``b'Jos\\xc3\\xa9'`` -> ``'José'``;
    * anything else: decoded as MySQL's latin1, which is cp1252 with the five bytes cp1252
      leaves undefined (0x81 0x8D 0x8F 0x90 0x9D) mapped to the C1 control code points:
      ``b'Caf\\xe9'`` -> ``'Café'``, ``b'\\x80'`` -> ``'€'``.

    NUL bytes are removed first (PostgreSQL ``text`` rejects 0x00) and counted in the notes.
    A genuine latin1 value that happens to be valid UTF-8 (``'Ã©'`` typed on a latin1
    keyboard) is read as UTF-8; such text is implausible, so the heuristic accepts it.
    Values that still look like UTF-8 read as latin1 after decoding (encoded twice) are
    counted, not changed. Never quarantines: every byte string decodes under latin1.
    """
    notes: dict[str, int] = {}
    arr = _strip_nul_bytes(_to_binary(values), notes)
    as_text = arr.view(pa.string())  # zero-copy; only ASCII rows are kept from this view
    non_ascii = _non_ascii_mask(as_text)
    positions = pc.indices_nonzero(non_ascii)
    if len(positions) == 0:
        return TransformResult(as_text, notes=notes)

    decoded: list[str] = []
    as_utf8 = as_latin1 = double = 0
    for raw in pc.take(arr, positions).to_pylist():
        try:
            text = raw.decode("utf-8")
            as_utf8 += 1
            if _looks_double_encoded(text):
                double += 1
        except UnicodeDecodeError:
            text = decode_mysql_latin1(raw)
            as_latin1 += 1
        decoded.append(text)
    repaired = pc.replace_with_mask(as_text, non_ascii, pa.array(decoded, pa.string()))
    for key, n in (
        ("non-ASCII value decoded as UTF-8", as_utf8),
        ("non-ASCII value decoded as latin1 (cp1252)", as_latin1),
        ("value still looks double-encoded after UTF-8 decoding (kept as decoded)", double),
    ):
        if n:
            notes[key] = n
    return TransformResult(repaired, notes=notes)


@transform(
    "encode_latin1_column",
    input_types=(pa.string(), pa.large_string()),
    output_type=pa.binary(),
    inverse="repair_mojibake",
)
def encode_latin1_column(values: pa.Array) -> TransformResult:
    """Encode text as the legacy app stored it in a latin1 column (reverse replication).

    The legacy app wrote UTF-8 bytes through a latin1 connection, so the bytes to write back
    are the UTF-8 encoding of the text: ASCII is unchanged and ``'José'`` becomes
    ``b'Jos\\xc3\\xa9'``, which ``repair_mojibake`` reads back as ``'José'``. A value that
    was originally real latin1 (``b'Caf\\xe9'``) comes back as UTF-8 (``b'Caf\\xc3\\xa9'``):
    same text, different bytes, which is what the app itself would have written. Stripped
    NUL bytes are not restored.
    """
    arr = as_array(values)
    if pa.types.is_large_string(arr.type):
        arr = arr.cast(pa.string())
    notes: dict[str, int] = {}
    n = count_true(_non_ascii_mask(arr))
    if n:
        notes["non-ASCII value written as UTF-8 bytes"] = n
    return TransformResult(arr.cast(pa.binary()), notes=notes)


@transform(
    "decode_utf8",
    input_types=(pa.binary(), pa.large_binary()),
    output_type=pa.string(),
    inverse="encode_utf8",
)
def decode_utf8(values: pa.Array) -> TransformResult:
    """Decode bytes that must be UTF-8 (utf8mb4 BLOB-like columns); invalid rows quarantine.

    Unlike ``repair_mojibake`` there is no latin1 fallback: a utf8mb4 column cannot hold
    invalid UTF-8 unless it was written as binary, so an undecodable value is a data error
    whose reason names the first bad byte offset. NUL bytes are stripped and counted.
    """
    notes: dict[str, int] = {}
    arr = _strip_nul_bytes(_to_binary(values), notes)
    try:
        return TransformResult(arr.cast(pa.string()), notes=notes)
    except pa.ArrowInvalid:
        pass  # at least one row is not UTF-8: judge the non-ASCII rows one by one

    as_text = arr.view(pa.string())
    non_ascii = _non_ascii_mask(as_text)
    positions = pc.indices_nonzero(non_ascii)
    decoded: list[str | None] = []
    reasons: list[str | None] = []
    for raw in pc.take(arr, positions).to_pylist():
        try:
            decoded.append(raw.decode("utf-8"))
            reasons.append(None)
        except UnicodeDecodeError as exc:
            decoded.append(None)
            bad = raw[exc.start : exc.start + 4]
            reasons.append(f"invalid UTF-8 at byte {exc.start} ({bad!r}): {exc.reason}")
    result = pc.replace_with_mask(as_text, non_ascii, pa.array(decoded, pa.string()))
    errors = pc.replace_with_mask(
        pa.nulls(len(arr), pa.string()), non_ascii, pa.array(reasons, pa.string())
    )
    return TransformResult(result, errors=errors, notes=notes)


@transform(
    "encode_utf8",
    input_types=(pa.string(), pa.large_string()),
    output_type=pa.binary(),
    inverse="decode_utf8",
)
def encode_utf8(values: pa.Array) -> TransformResult:
    """Encode text as UTF-8 bytes (the inverse of ``decode_utf8`` for reverse replication)."""
    arr = as_array(values)
    if pa.types.is_large_string(arr.type):
        arr = arr.cast(pa.string())
    return TransformResult(arr.cast(pa.binary()))


@transform(
    "strip_nul",
    input_types=(pa.string(), pa.large_string()),
    output_type=pa.string(),
    inverse="copy",
)
def strip_nul(values: pa.Array) -> TransformResult:
    """Remove NUL characters from text (PostgreSQL ``text`` rejects 0x00); count them.

    For utf8mb4 columns, which readers already hand over as ``string``.
    """
    notes: dict[str, int] = {}
    arr = as_array(values)
    if pa.types.is_large_string(arr.type):
        arr = arr.cast(pa.string())
    return TransformResult(_strip_nul_bytes(arr, notes), notes=notes)


@transform("copy", input_types=None, output_type=None, inverse="copy")
def copy(values: pa.Array) -> TransformResult:
    """Pass the value through unchanged (any type); the output type is the input type."""
    return TransformResult(as_array(values))
