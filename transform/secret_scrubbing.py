"""Masking secrets in raw rows before they are written anywhere outside the source.

Quarantine stores the raw source row so a person can fix it, and run reports quote values;
neither may carry ``members_pass_hash``, ``members_pass_salt``, session tokens or anything
else that grants access (legacy quirk 13). ``scrub_secrets`` is the one function every
writer of raw rows calls.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from functools import lru_cache
from typing import Any

__all__ = [
    "MASK",
    "SECRET_VALUE_PATTERN",
    "is_secret_column",
    "looks_like_secret_value",
    "scrub_secrets",
]

MASK = "[redacted]"

# Matched against the column name in lowercase; `pass` alone would hit `bypass_count`.
_SECRET_NAME = re.compile(
    r"(pass_?(hash|salt|word)|passwd|password|salt$|^salt|token|secret|api_?key|"
    r"private_?key|credential|auth_?key|session_?key|access_?key)"
)
# bcrypt ($2$/$2a$/$2b$/$2x$/$2y$), and the crypt(3) families PHP also produced. ASCII
# and anchored, so it means the same on text and on bytes (pyarrow's regex kernels).
SECRET_VALUE_PATTERN = r"^\$(2[abxy]?|5|6|argon2(id|i|d))\$"
_SECRET_VALUE = re.compile(SECRET_VALUE_PATTERN)


@lru_cache(maxsize=4096)
def is_secret_column(name: str) -> bool:
    """Whether a column name looks like it holds a secret (``members_pass_hash``, ``token``)."""
    return _SECRET_NAME.search(name.lower()) is not None


def looks_like_secret_value(value: object) -> bool:
    """Whether a value looks like a password hash (``'$2y$10$...'``), text or bytes."""
    if isinstance(value, bytes):
        value = value[:16].decode("ascii", errors="replace")
    return isinstance(value, str) and _SECRET_VALUE.match(value) is not None


def scrub_secrets(row: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of ``row`` with secret-looking columns and hash-looking values masked.

    Columns are kept (masked as ``"[redacted]"``) rather than removed, so a reader of the
    quarantine can see the column existed; a null secret stays null (its absence is not a
    secret). Nested dicts (e.g. a decoded JSON column) are scrubbed too.
    """
    scrubbed: dict[str, Any] = {}
    for name, value in row.items():
        if value is None:
            scrubbed[name] = None
        elif is_secret_column(name) or looks_like_secret_value(value):
            scrubbed[name] = MASK
        elif isinstance(value, Mapping):
            scrubbed[name] = scrub_secrets(value)
        else:
            scrubbed[name] = value
    return scrubbed
