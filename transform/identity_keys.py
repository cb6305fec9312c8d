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
from transform.column_buffers import binary_buffers
from transform.registry import TransformResult, transform
from transform.row_errors import as_array, count_true, errors_where, null_where

try:
    from transform import _column_kernels
except ImportError:  # installed without a C compiler
    _column_kernels = None  # type: ignore[assignment]

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


def _uuid5_text_bytes(name_array: pa.Array) -> bytes:
    """``str(uuid.uuid5(RUNESHIFT_NAMESPACE, name))`` for each name, 36 ASCII bytes each.

    In C over the column's buffers when the extension is built (``_column_kernels.c``: about
    80 ns a name with the CPU's SHA extensions, 370 ns without, the GIL released), else
    with hashlib and ``uuid`` per name (about 1.5 us, holding the GIL). A null name is
    hashed as empty; the caller nulls its id.
    """
    namespace = RUNESHIFT_NAMESPACE.bytes
    if _column_kernels is None:
        sha1 = hashlib.sha1
        names = name_array.cast(pa.binary()).to_pylist()
        heads = [sha1(namespace + (n or b"")).digest()[:16] for n in names]
        return "".join([str(uuid.UUID(bytes=h, version=5)) for h in heads]).encode()
    return _column_kernels.uuid5_texts(namespace, *binary_buffers(name_array))


def _id_array(text: bytes, sources: pa.Array) -> pa.Array:
    """36-byte uuid texts, one per value of ``sources``, as a string array (null where it is)."""
    count = len(sources)
    offsets = np.arange(0, 36 * (count + 1), 36, dtype=np.int32)
    ids = pa.StringArray.from_buffers(count, pa.py_buffer(offsets), pa.py_buffer(text))
    return null_where(ids, pc.is_null(sources)) if sources.null_count else ids


def _uuid5_texts(name_array: pa.Array) -> pa.Array:
    """uuid5 text of each name (null for None), the same as ``str(uuid.uuid5(...))``."""
    return _id_array(_uuid5_text_bytes(name_array), name_array)


def _fits_int64(kind: pa.DataType) -> bool:
    return pa.types.is_signed_integer(kind) or kind in (pa.uint8(), pa.uint16(), pa.uint32())


def _uuid5_int_texts(entity: str, keys: pa.Array) -> pa.Array:
    """``_uuid5_texts`` of ``entity:key`` for integer keys, the names written in C."""
    assert _column_kernels is not None
    values = pc.fill_null(keys, 0).cast(pa.int64()).to_numpy(zero_copy_only=False)
    text = _column_kernels.uuid5_int_texts(
        RUNESHIFT_NAMESPACE.bytes, f"{entity}:".encode(), np.ascontiguousarray(values)
    )
    return _id_array(text, keys)


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
    name is built vectorised (integers cast to decimal text, joined with ``':'``) and the
    ids of the whole column come from one call (:func:`_uuid5_text_bytes`); hashing every
    name costs less than finding the distinct ones first. A null in any key part gives a
    null id. Empty text parts are allowed but counted, because ``''`` usually means a
    missing key.
    """
    keys = [as_array(k) for k in (key, *more_keys)]
    uuid_for(entity)  # validates the entity name
    if len(keys) == 1 and _column_kernels is not None and _fits_int64(keys[0].type):
        return TransformResult(_uuid5_int_texts(entity, keys[0]))
    parts = [pc.cast(k, pa.string()) for k in keys]
    ids = _uuid5_texts(pc.binary_join_element_wise(entity, *parts, ":"))
    notes: dict[str, int] = {}
    texts = [p for k, p in zip(keys, parts, strict=True) if not pa.types.is_integer(k.type)]
    empty_parts = sum(count_true(pc.equal(p, "")) for p in texts)
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
