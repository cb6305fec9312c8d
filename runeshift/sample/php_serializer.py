"""PHP ``serialize()`` as the legacy repo wrote it into ``scripts.settings`` BLOBs.

String lengths count UTF-8 *bytes*, not characters (``s:5:"café";`` is wrong, ``s:5:"caf\xc3\xa9"``
is what PHP writes), which is the detail a parser of these blobs most often gets wrong.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

PhpValue = (
    bool
    | int
    | float
    | str
    | Sequence["PhpValue"]
    | Mapping[str, "PhpValue"]
    | Mapping[int, "PhpValue"]
    | None
)


def _float(value: float) -> bytes:
    # PHP >= 7.1 (serialize_precision=-1) writes the shortest round-trip form, '1' for 1.0.
    text = repr(value)
    if text.endswith(".0"):
        text = text[:-2]
    return text.replace("e+", "E+").replace("e-", "E-").encode()


def php_serialize(value: PhpValue) -> bytes:
    """The bytes PHP's ``serialize()`` produces for ``value`` (lists become 0-indexed arrays)."""
    if value is None:
        return b"N;"
    if isinstance(value, bool):
        return b"b:1;" if value else b"b:0;"
    if isinstance(value, int):
        return b"i:%d;" % value
    if isinstance(value, float):
        return b"d:" + _float(value) + b";"
    if isinstance(value, str):
        raw = value.encode("utf-8")
        return b's:%d:"' % len(raw) + raw + b'";'
    items: list[tuple[int | str, PhpValue]] = (
        list(value.items()) if isinstance(value, Mapping) else list(enumerate(value))
    )
    body = b"".join(php_serialize(k) + php_serialize(v) for k, v in items)
    return b"a:%d:{" % len(items) + body + b"}"
