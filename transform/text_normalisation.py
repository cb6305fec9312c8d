"""Cleaning text values: trimming, case, blanks, emails, tokens, time-zone names.

Legacy forms stored what users typed (``'STORE '``, ``' Bob@Example.COM'``) and used ``''``
for "none"; the new schema wants trimmed, canonical values and NULL for "none".
"""

from __future__ import annotations

import zoneinfo
from functools import cache

import pyarrow as pa
import pyarrow.compute as pc

from transform.registry import TransformResult, transform
from transform.row_errors import as_array, count_true, errors_where, null_where
from transform.text_encoding import repair_mojibake

__all__ = [
    "blank_to_null",
    "iana_timezone",
    "lower",
    "normalise_email",
    "normalise_token",
    "trim",
]

_TEXT = (pa.string(), pa.large_string())
_TEXT_OR_BYTES = (pa.string(), pa.large_string(), pa.binary(), pa.large_binary())


def _text(values: pa.Array, notes: dict[str, int] | None = None) -> pa.Array:
    """``values`` as ``pa.string()``; bytes from latin1 columns go through ``repair_mojibake``."""
    arr = as_array(values)
    if pa.types.is_binary(arr.type) or pa.types.is_large_binary(arr.type):
        decoded = repair_mojibake(arr)
        if notes is not None:
            notes.update(decoded.notes)
        return decoded.values
    if pa.types.is_large_string(arr.type):
        return arr.cast(pa.string())
    return arr


@transform("trim", input_types=_TEXT, output_type=pa.string(), inverse="copy")
def trim(values: pa.Array) -> TransformResult:
    """Strip leading and trailing Unicode whitespace."""
    return TransformResult(pc.utf8_trim_whitespace(_text(values)))


@transform("lower", input_types=_TEXT, output_type=pa.string(), inverse="copy")
def lower(values: pa.Array) -> TransformResult:
    """Lowercase (Unicode-aware)."""
    return TransformResult(pc.utf8_lower(_text(values)))


@transform("blank_to_null", input_types=_TEXT, output_type=pa.string(), inverse="null_to_blank")
def blank_to_null(values: pa.Array) -> TransformResult:
    """Replace ``''`` and whitespace-only strings by null; other values are unchanged.

    Legacy NOT NULL columns used ``''`` for "none" (``email = ''``, ``timezone = ''``).
    """
    arr = _text(values)
    blank = pc.equal(pc.utf8_trim_whitespace(arr), "")
    n = count_true(blank)
    return TransformResult(null_where(arr, blank), notes={"blank -> null": n} if n else {})


@transform("null_to_blank", input_types=_TEXT, output_type=pa.string(), inverse="blank_to_null")
def null_to_blank(values: pa.Array) -> TransformResult:
    """Replace null by ``''`` (inverse of ``blank_to_null`` for NOT NULL DEFAULT '' columns)."""
    return TransformResult(pc.fill_null(_text(values), ""))


@transform(
    "normalise_email", input_types=_TEXT_OR_BYTES, output_type=pa.string(), inverse="null_to_blank"
)
def normalise_email(values: pa.Array) -> TransformResult:
    """Trim and lowercase an email address; blank becomes null.

    Emails match case-insensitively after trimming (that is how Shopify customers are matched
    to members), so the stored form is the trimmed, lowercased one. ``''`` and
    whitespace-only become null (the legacy "no email"). A value without ``'@'`` is kept
    (lowercased) and counted, not quarantined: a member with a broken email is still a member
    and can fix it after the migration; quarantining would drop the whole account. Bytes from
    latin1 columns are decoded with ``repair_mojibake`` first. Duplicates that appear after
    normalisation are a cross-row concern left to the mapping (unique-key handling).
    """
    notes: dict[str, int] = {}
    arr = pc.utf8_lower(pc.utf8_trim_whitespace(_text(values, notes)))
    blank = pc.equal(arr, "")
    n_blank = count_true(blank)
    if n_blank:
        notes["blank email -> null"] = n_blank
    no_at = pc.and_(pc.invert(blank), pc.invert(pc.match_substring(arr, "@")))
    n_no_at = count_true(no_at)
    if n_no_at:
        notes["email without '@' kept as is"] = n_no_at
    return TransformResult(null_where(arr, blank), notes=notes)


@transform(
    "normalise_token",
    input_types=_TEXT_OR_BYTES,
    output_type=pa.string(),
    params={"allowed": list},
    inverse="copy",
)
def normalise_token(values: pa.Array, *, allowed: list[str] | None = None) -> TransformResult:
    """Trim and lowercase a code-like token (``'STORE '`` -> ``'store'``).

    With ``allowed``, a normalised value outside the list is quarantined with a reason naming
    the value and the list (an unknown token needs a person to map it). Null stays null.
    Rows changed by normalisation are counted.
    """
    notes: dict[str, int] = {}
    raw = _text(values, notes)
    arr = pc.utf8_lower(pc.utf8_trim_whitespace(raw))
    changed = count_true(pc.not_equal(arr, raw))
    if changed:
        notes["token trimmed or lowercased"] = changed
    errors = None
    if allowed is not None:
        outside = pc.invert(pc.is_in(arr, value_set=pa.array(allowed, pa.string())))
        outside = pc.and_(outside, pc.is_valid(arr))
        listing = ", ".join(allowed)
        reasons = pc.binary_join_element_wise(
            "'", arr, f"' is not one of the allowed values ({listing})", ""
        )
        errors = errors_where(outside, reasons)
        if errors is not None:
            arr = null_where(arr, outside)
    return TransformResult(arr, errors=errors, notes=notes)


@cache
def _iana_names() -> tuple[pa.Array, pa.Array]:
    """(lowercased names, canonical names) of every IANA zone tzdata knows."""
    names = sorted(zoneinfo.available_timezones())
    return pa.array([n.lower() for n in names]), pa.array(names)


_MAX_LISTED_TIMEZONES = 10


@transform("iana_timezone", input_types=_TEXT, output_type=pa.string(), inverse="null_to_blank")
def iana_timezone(values: pa.Array) -> TransformResult:
    """Keep valid IANA time-zone names (canonical spelling); blank and garbage become null.

    Matching is case-insensitive after trimming (``' america/new_york'`` ->
    ``'America/New_York'``). ``''`` becomes null silently-but-counted; a non-IANA value such
    as ``'GMT+2'`` becomes null with a note naming it (up to 10 distinct values, the rest
    summed) -- not quarantined, because a member's display time zone is not worth losing the
    member for, and guessing (``GMT+2`` is ``Etc/GMT-2``, sign inverted) would be wrong
    for some. Validity is tzdata's list, so ``'UTC'`` and ``'US/Eastern'`` are kept.
    """
    arr = pc.utf8_trim_whitespace(_text(values))
    lowered, canonical = _iana_names()
    index = pc.index_in(pc.utf8_lower(arr), value_set=lowered)
    result = pc.take(canonical, index)
    notes: dict[str, int] = {}
    blank = pc.equal(arr, "")
    n_blank = count_true(blank)
    if n_blank:
        notes["blank timezone -> null"] = n_blank
    unknown = pc.and_(pc.and_(pc.is_null(index), pc.is_valid(arr)), pc.invert(blank))
    if count_true(unknown):
        counts = pc.value_counts(pc.filter(arr, unknown))
        pairs = sorted(
            zip(
                counts.field("values").to_pylist(), counts.field("counts").to_pylist(), strict=True
            ),
            key=lambda p: (-p[1], p[0]),
        )
        for name, n in pairs[:_MAX_LISTED_TIMEZONES]:
            notes[f"timezone {name!r} is not an IANA name -> null"] = n
        rest = sum(n for _, n in pairs[_MAX_LISTED_TIMEZONES:])
        if rest:
            notes["other non-IANA timezones -> null"] = rest
    return TransformResult(result, notes=notes)
