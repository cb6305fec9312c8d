"""Named transforms: small pure functions over Arrow arrays that mappings refer to by name.

Importing this package registers every transform; look them up with
``transform.registry.get_transform`` or list them with ``all_transforms``.
"""

from __future__ import annotations

from transform import (
    flags_and_enums,
    identity_keys,
    lists_and_sets,
    money,
    php_unserialize,
    temporal,
    text_encoding,
    text_normalisation,
)
from transform.registry import (
    TransformResult,
    TransformSpec,
    all_transforms,
    get_transform,
    transform,
)

__all__ = [
    "TransformResult",
    "TransformSpec",
    "all_transforms",
    "flags_and_enums",
    "get_transform",
    "identity_keys",
    "lists_and_sets",
    "money",
    "php_unserialize",
    "temporal",
    "text_encoding",
    "text_normalisation",
    "transform",
]
