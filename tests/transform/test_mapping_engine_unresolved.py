"""map_batch names, per on_missing-null reference by id, the rows it nulled and the id each wanted."""

from __future__ import annotations

import pyarrow as pa
import pytest

from tests.transform.engine_specs import children_mapping
from transform.mapping_engine import map_batch, null_id_references

FEED = """
        columns:
          parent_id: {expr: parent_id, references: rune.parents, on_missing: "null"}
          owner_id: {expr: owner_id, references: rune.parents, on_missing: quarantine}
          name: name
"""


def _children(existing: set[int]):
    mappings = children_mapping(FEED)
    target = mappings.target("rune.children")
    feed = target.feeds[0]
    batch = pa.record_batch(
        {
            "id": pa.array([1, 2, 3, 4], pa.int64()),
            "parent_id": pa.array([10, 11, None, 12], pa.int64()),
            "owner_id": pa.array([10, 10, 10, 99], pa.int64()),
            "name": pa.array(["a", "b", "c", "d"]),
        }
    )

    def references(table: str, ids: pa.Array) -> pa.Array:
        return pa.array([None if v is None else v in existing for v in ids.to_pylist()])

    return feed, map_batch(target, feed, batch, references=references)


def test_the_feed_names_its_null_references_by_id():
    feed, _ = _children({10})
    assert null_id_references(feed) == {"parent_id": "rune.parents"}


@pytest.mark.parametrize(
    ("existing", "wanted"),
    [
        pytest.param({10, 11, 12, 99}, None, id="all-found-nothing-recorded"),
        # row 4 is quarantined (owner 99 missing): its wanted value goes with it
        pytest.param({10}, [None, "11", None], id="nulled-row-wants-its-id"),
    ],
)
def test_nulled_rows_and_their_wanted_ids_are_aligned_with_the_rows(existing, wanted):
    _, mapped = _children(existing)
    if wanted is None:
        assert mapped.unresolved == {}
        return
    assert mapped.rows.column("id").to_pylist() == [1, 2, 3]
    assert mapped.rows.column("parent_id").to_pylist() == [10, None, None]
    assert set(mapped.unresolved) == {"parent_id"}
    column = mapped.unresolved["parent_id"]
    assert column.referenced_table == "rune.parents"
    assert column.wanted.to_pylist() == wanted
