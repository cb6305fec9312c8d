"""Deterministic ids for target rows, and Shopify id parsing.

The new schema keys rows by UUID. Generating them randomly would make every rerun, every
catch-up replay and the reverse path disagree about which id a legacy row has; deriving them
with uuid5 from the entity name and the legacy key makes the id a pure function of the
source row, so all paths agree without a lookup table.
"""

from __future__ import annotations

import hashlib
import uuid

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from runeshift.errors import ConfigError
from transform.registry import TransformResult, transform
from transform.row_errors import as_array, count_true, errors_where, null_where

try:
    from transform import _sha1_batch
except ImportError:  # installed without a C compiler
    _sha1_batch = None  # type: ignore[assignment]

__all__ = ["RUNESHIFT_NAMESPACE", "shopify_id_to_int", "uuid_for", "uuid_from_key"]

# Fixed forever: uuid5(NAMESPACE_URL, "https://runeshift.tribot.org/ids"). Changing it
# changes every id in the target database.
RUNESHIFT_NAMESPACE = uuid.UUID("3c529661-6261-5feb-8111-f69588f025de")

_KEY_TYPES = (
    pa.int8(),
    pa.int16(),
    pa.int32(),
    pa.int64(),
    pa.uint8(),
    pa.uint16(),
    pa.uint32(),
    pa.uint64(),
    pa.string(),
    pa.large_string(),
)


def _key_name(entity: str, key: tuple[int | str, ...]) -> str:
    parts = [entity]
    for part in key:
        if isinstance(part, bool) or not isinstance(part, int | str):
            raise TypeError(f"uuid key parts must be int or str, got {part!r}")
        parts.append(str(part))
    return ":".join(parts)


def uuid_for(entity: str, *key: int | str) -> uuid.UUID:
    """The id of the ``entity`` row whose legacy key is ``key``.

    ``uuid5(RUNESHIFT_NAMESPACE, "entity:k1:k2...")`` with integers in decimal. Used by
    ``uuid_from_key`` and by code outside mappings (catch-up, reconciliation, tests).
    """
    if not entity or ":" in entity:
        raise ConfigError(f"uuid entity must be a non-empty name without ':', got {entity!r}")
    return uuid.uuid5(RUNESHIFT_NAMESPACE, _key_name(entity, key))


_HEX_DIGITS = np.frombuffer(b"0123456789abcdef", dtype=np.uint8)
# Where the 32 hex digits go in the 36-character text form (dashes at 8, 13, 18, 23).
_HEX_POSITIONS = np.array([i for i in range(36) if i not in (8, 13, 18, 23)])


def _sha1_heads(prefix: bytes, names: pa.Array) -> bytes:
    """The first 16 bytes of ``sha1(prefix + name)`` for each name, concatenated.

    In C over the column's buffers when the extension is built (``_sha1_batch.c``: about
    70 ns a name with the CPU's SHA extensions, 360 ns without, the GIL released), else one
    hashlib call per name (about 400 ns, holding the GIL). A null name hashes as empty; the
    caller nulls its id.
    """
    binary = names.cast(pa.large_binary())
    if _sha1_batch is None:
        sha1 = hashlib.sha1
        return b"".join([sha1(prefix + (n or b"")).digest()[:16] for n in binary.to_pylist()])
    _, offsets_buffer, data = binary.buffers()
    offsets = np.frombuffer(offsets_buffer, dtype=np.int64)
    offsets = offsets[binary.offset : binary.offset + len(binary) + 1]
    return _sha1_batch.sha1_heads(prefix, data if data is not None else b"", offsets)


def _uuid5_texts(name_array: pa.Array) -> pa.Array:
    """uuid5 text of each name (null for None), the same as ``str(uuid.uuid5(...))``.

    The sha1 runs over the whole column (:func:`_sha1_heads`); setting the version/variant
    bits and formatting the hex text happen on a numpy byte matrix.
    """
    digests = _sha1_heads(RUNESHIFT_NAMESPACE.bytes, name_array)
    raw = np.frombuffer(digests, dtype=np.uint8).reshape(-1, 16).copy()
    raw[:, 6] = (raw[:, 6] & 0x0F) | 0x50  # version 5
    raw[:, 8] = (raw[:, 8] & 0x3F) | 0x80  # RFC 4122 variant
    hex_digits = np.empty((len(name_array), 32), dtype=np.uint8)
    hex_digits[:, 0::2] = _HEX_DIGITS[raw >> 4]
    hex_digits[:, 1::2] = _HEX_DIGITS[raw & 0x0F]
    text = np.full((len(name_array), 36), ord("-"), dtype=np.uint8)
    text[:, _HEX_POSITIONS] = hex_digits
    offsets = np.arange(0, 36 * (len(name_array) + 1), 36, dtype=np.int32)
    ids = pa.StringArray.from_buffers(
        len(name_array), pa.py_buffer(offsets.tobytes()), pa.py_buffer(text.tobytes())
    )
    return null_where(ids, pc.is_null(name_array))


@transform(
    "uuid_from_key",
    input_types=_KEY_TYPES,
    output_type=pa.string(),
    params={"entity": str},
)
def uuid_from_key(key: pa.Array, *more_keys: pa.Array, entity: str) -> TransformResult:
    """Deterministic UUID (text) for a legacy row from its key columns.

    ``uuid_from_key(member_id, entity="member")`` equals ``str(uuid_for("member", id))``.
    Several key arrays make a composite key (``script_id, member_id`` for reviews). The
    name is built vectorised (integers cast to decimal text, joined with ``':'``); only the
    sha1 runs per row, once per distinct key when keys repeat. A null in any key part gives a null id. Empty text parts are allowed
    but counted, because ``''`` usually means a missing key.
    """
    keys = (key, *more_keys)
    uuid_for(entity)  # validates the entity name
    parts = [pc.cast(as_array(k), pa.string()) for k in keys]
    names = pc.binary_join_element_wise(entity, *parts, ":")
    distinct = pc.unique(names)
    if len(distinct) * 4 < len(names) * 3:
        # A reference (a license's member, its script) repeats its keys: hash each once.
        ids = pc.take(_uuid5_texts(distinct), pc.index_in(names, value_set=distinct))
    else:
        ids = _uuid5_texts(names)
    notes: dict[str, int] = {}
    empty_parts = sum(count_true(pc.equal(p, "")) for p in parts)
    if empty_parts:
        notes["empty text key part"] = empty_parts
    return TransformResult(ids, notes=notes)


@transform(
    "shopify_id_to_int",
    input_types=(pa.string(), pa.large_string(), pa.int64(), pa.uint64()),
    output_type=pa.uint64(),
)
def shopify_id_to_int(values: pa.Array) -> TransformResult:
    """Shopify's numeric id from ``'123'``, ``123`` or ``'gid://shopify/Order/123'``.

    Shopify hands out numeric REST ids and ``gid://`` GraphQL ids for the same objects; the
    legacy ``licenses.shopify_order_id`` is the number. Anything else is quarantined.
    """
    arr = as_array(values)
    if pa.types.is_integer(arr.type):
        return TransformResult(pc.cast(arr, pa.uint64()))
    text = pc.cast(arr, pa.string())
    digits = pc.extract_regex(text, r"^(?:gid://shopify/[A-Za-z]+/)?(?P<id>[0-9]{1,20})$")
    number = pc.struct_field(digits, "id")
    bad = pc.and_(pc.is_valid(text), pc.is_null(digits))
    reasons = pc.binary_join_element_wise("'", text, "' is not a Shopify id", "")
    errors = errors_where(bad, reasons)
    try:
        result = pc.cast(number, pa.uint64())
    except pa.ArrowInvalid:  # 20 digits above 2^64-1; equal-length text compares like numbers
        trimmed = pc.utf8_ltrim(number, "0")
        too_big = pc.and_(
            pc.equal(pc.utf8_length(trimmed), 20), pc.greater(trimmed, str(2**64 - 1))
        )
        result = pc.cast(null_where(number, too_big), pa.uint64())
        errors = errors_where(pc.or_(pc.fill_null(bad, False), too_big), reasons)
    return TransformResult(result, errors=errors)
