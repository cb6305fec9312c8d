"""Sample data: the legacy MySQL world (and, later, the Shopify store and live traffic).

``generate_legacy_world`` builds ``tribot_forums`` and ``tribot_repo`` from the shipped DDL and
fills them deterministically for a ``(scale, seed)``, with every quirk of
``shared/legacy/README.md`` present at every scale; ``legacy_quirks`` says where each quirk is.
"""

from __future__ import annotations

from runeshift.sample.legacy_checksum import legacy_checksum
from runeshift.sample.legacy_world import LegacyWorldSummary, generate_legacy_world
from runeshift.sample.secret_canary import SECRET_CANARY
from runeshift.sample.shopify_linkage import currency_for_order

__all__ = [
    "SECRET_CANARY",
    "LegacyWorldSummary",
    "currency_for_order",
    "generate_legacy_world",
    "legacy_checksum",
]
