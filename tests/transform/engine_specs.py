"""The mapping the map_batch tests share: ``rune.children`` rows (source ``repo.children``,
key ``id``) that reference ``rune.parents``; each test gives the children's columns."""

from __future__ import annotations

from transform.mapping_loader import load_mapping_texts
from transform.mapping_spec import MappingSet

SPEC = """
targets:
  rune.parents:
    id: id
    from:
      - source: repo.parents
        key: [id]
        columns:
          name: name
  rune.children:
    id: id
    from:
      - source: repo.children
        key: [id]
"""


def children_mapping(feed: str) -> MappingSet:
    """The mapping set with ``feed`` (YAML indented 8 spaces: ``columns:`` and the rest of
    the children's feed) completing ``rune.children``."""
    return load_mapping_texts({"spec.yaml": SPEC + feed})
