"""Shopify's search syntax (the ``query:`` argument), the subset extractors send.

``updated_at:>='2024-01-01T00:00:00Z' AND updated_at:<'2024-02-01'``, ``id:>123``,
``email:x@y.z``, ``test:true``, joined by ``AND`` (also implicit) and ``OR`` (AND binds
tighter). A date without a time means midnight in the shop's time zone, as on Shopify.
Unknown fields and free-text terms are ignored, as Shopify ignores filters it does not
support (it only warns in newer versions), which is exactly how a typo in a client's
filter silently becomes a full scan.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, time
from typing import Literal, cast
from zoneinfo import ZoneInfo

from services.fake_shopify.store_db import Condition, Filter, Resource

SHOP_TZ = ZoneInfo("America/New_York")

_TERM = re.compile(r"""(?P<field>[a-z_]+):(?P<op>>=|<=|>|<|=)?(?P<value>'[^']*'|"[^"]*"|\S+)""")
_TOKEN = re.compile(r"""[a-z_]+:(?:>=|<=|>|<|=)?(?:'[^']*'|"[^"]*"|\S+)|\S+""")

_DATE_FIELDS = {"updated_at", "created_at", "processed_at"}
_FIELDS: dict[Resource, set[str]] = {
    "orders": {"id", "email", "test", *_DATE_FIELDS},
    "customers": {"id", "email", "updated_at", "created_at"},
    "products": {"id", "updated_at", "created_at"},
}


def to_utc_text(value: str) -> str:
    """A search value (date, datetime with or without offset) as the store's UTC text."""
    text = value.strip()
    if re.fullmatch(r"\d{4}-\d{2}-\d{2}", text):
        local = datetime.combine(datetime.fromisoformat(text).date(), time(0), SHOP_TZ)
        return local.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=SHOP_TZ)
    return parsed.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _condition(resource: Resource, field: str, op: str, raw: str) -> Condition | None:
    if field not in _FIELDS[resource]:
        return None
    value = raw[1:-1] if raw[:1] in "'\"" and raw[-1:] == raw[:1] and len(raw) > 1 else raw
    cmp = cast(Literal["=", ">", ">=", "<", "<="], op or "=")
    if field in _DATE_FIELDS:
        try:
            return Condition(field, cmp, to_utc_text(value))
        except ValueError:
            return None
    if field == "id":
        try:
            return Condition("id", cmp, int(value.rsplit("/", 1)[-1]))
        except ValueError:
            return None
    if field == "email":
        return Condition("lower(trim(email))", "=", value.strip().lower())
    if field == "test":
        return Condition("json_extract(doc, '$.test')", "=", 1 if value.lower() == "true" else 0)
    return None


def parse_search(resource: Resource, query: str | None) -> Filter:
    """The ``Filter`` a ``query:`` string selects."""
    if not query or not query.strip():
        return Filter()
    groups: list[list[Condition]] = [[]]
    for token in _TOKEN.findall(query):
        if token == "OR":
            groups.append([])
            continue
        if token == "AND":
            continue
        match = _TERM.fullmatch(token)
        if match is None:
            continue
        cond = _condition(resource, match["field"], match["op"] or "", match["value"])
        if cond is not None:
            groups[-1].append(cond)
    return Filter(tuple(tuple(g) for g in groups))
