"""Transforms that build target values out of several source columns or names.

Kept beside the mapping engine because they exist for the specs' structure
(a JSONB profile assembled from three profile fields, a role key derived from
a title) rather than to repair a legacy data quirk.
"""

from __future__ import annotations

import json
import re
import unicodedata

import pyarrow as pa
import pyarrow.compute as pc

from runeshift.errors import ConfigError
from transform.registry import TransformResult, transform

_TEXT = (pa.string(), pa.large_string())
_NON_WORD = re.compile(r"[^a-z0-9]+")


@transform("json_object", input_types=None, output_type=pa.string(), params={"keys": str})
def json_object(*arrays: pa.Array, keys: str) -> TransformResult:
    """Build a JSON object text from several columns: ``keys`` names them in order.

    Null and blank values are left out, so ``{}`` means "nothing filled in" (the
    profile of a member who never edited it), which is what Rune's jsonb default is.
    """
    names = [k.strip() for k in keys.split(",")]
    if len(names) != len(arrays):
        raise ConfigError(f"json_object: {len(arrays)} columns but {len(names)} keys ({keys!r})")
    columns = [
        (pc.cast(a, pa.string(), safe=False) if not pa.types.is_string(a.type) else a).to_pylist()
        for a in arrays
    ]
    out = []
    for values in zip(*columns, strict=True):
        obj = {
            n: v.strip() for n, v in zip(names, values, strict=True) if v is not None and v.strip()
        }
        out.append(json.dumps(obj, ensure_ascii=False, sort_keys=True))
    return TransformResult(pa.array(out, pa.string()))


@transform("slug_key", input_types=_TEXT, output_type=pa.string())
def slug_key(values: pa.Array) -> TransformResult:
    """``'Premium Scripters'`` -> ``'premium_scripters'``: ASCII, lower case, underscores."""
    out: list[str | None] = []
    for text in values.to_pylist():
        if text is None:
            out.append(None)
            continue
        ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
        key = _NON_WORD.sub("_", ascii_text.lower()).strip("_")
        # Keys are identifiers (^[a-z][a-z0-9_]*$): a title like '2nd Tier' becomes 'r_2nd_tier'.
        out.append(None if not key else key if key[0].isalpha() else f"r_{key}")
    return TransformResult(pa.array(out, pa.string()))
