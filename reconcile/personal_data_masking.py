"""What a report may show of a value: personal data masked, secrets never.

Reports leave the migration team (pull requests, chat, auditors), so every
value of a personal column is masked (``jane@example.com`` -> ``j***@e***.com``,
``Jane Doe`` -> ``J*** D***``) and anything that looks like a password hash or
token is replaced whole, whatever column it is in.
"""

from __future__ import annotations

import re

PERSONAL_COLUMNS = frozenset(
    {"email", "display_name", "name", "auth0_sub", "profile", "body", "note", "title"}
)
PERSONAL_TABLE_COLUMNS = frozenset({("rune.orders", "name")})
SECRET_PATTERNS = (
    re.compile(r"\$2[abxy]?\$\d{2}\$[./A-Za-z0-9]{20,}"),  # bcrypt
    re.compile(r"\$(argon2|scrypt|pbkdf2|[156])\$"),  # crypt(3) style hashes
    re.compile(r"(?<![0-9a-fA-F])[0-9a-fA-F]{32,}(?![0-9a-fA-F])"),  # md5/sha hex, hex tokens
    re.compile(r"eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}"),  # JWT
)
SECRET_SHOWN = "[secret removed]"


def looks_secret(value: str) -> bool:
    return any(p.search(value) for p in SECRET_PATTERNS)


def _mask_word(word: str) -> str:
    return word[:1] + "***" if word else word


def mask_email(value: str) -> str:
    local, at, domain = value.partition("@")
    if not at:
        return _mask_word(local)
    host, dot, tld = domain.rpartition(".")
    masked_domain = f"{_mask_word(host)}.{tld}" if dot else _mask_word(domain)
    return f"{_mask_word(local)}@{masked_domain}"


def mask_value(table: str, column: str, value: str | None) -> str | None:
    """The value as a report may show it."""
    if value is None:
        return None
    if looks_secret(value):
        return SECRET_SHOWN
    if column == "email" or ("@" in value and column in PERSONAL_COLUMNS):
        return mask_email(value)
    if column in PERSONAL_COLUMNS or (table, column) in PERSONAL_TABLE_COLUMNS:
        return " ".join(_mask_word(w) for w in value.split()) or "***"
    return value
