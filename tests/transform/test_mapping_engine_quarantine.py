"""What map_batch hands the quarantine: the key, the rule, the reason and the source row as
JSON would hold it, secrets masked."""

from __future__ import annotations

import datetime as dt
import json
from decimal import Decimal

import pyarrow as pa

from tests.transform.engine_specs import children_mapping
from transform.mapping_engine import map_batch
from transform.secret_scrubbing import MASK

FEED = """
        columns: {owner_id: {expr: owner_id, references: rune.parents, on_missing: quarantine},
                  name: name}
        exclude_columns: {pass_hash: a password hash never leaves the source,
                          price: unused, at: unused, blob: unused, note: unused}
"""


def _mapped(*, raw_rows: bool = True):
    mappings = children_mapping(FEED)
    target = mappings.target("rune.children")
    feed = target.feeds[0]
    batch = pa.record_batch(
        {
            "id": pa.array([1, 2, 3], pa.int64()),
            "owner_id": pa.array([10, 99, 98], pa.int64()),
            "name": pa.array(["a", "b\u00e9", None]),
            "pass_hash": pa.array(["x", "y", None]),
            "price": pa.array([Decimal("1.50"), Decimal("-2.25"), None], pa.decimal128(12, 2)),
            "at": pa.array([None, dt.datetime(2021, 11, 7, 1, 30), None], pa.timestamp("us")),
            "blob": pa.array([b"", "caf\u00e9".encode("latin-1"), b"$2y$10$abcdefghijkl"]),
            "note": pa.array([None, "$2y$10$0123456789abcdef", "plain"]),
        }
    )

    def references(table: str, ids: pa.Array) -> pa.Array:
        return pa.array([v == 10 for v in ids.to_pylist()])

    return map_batch(target, feed, batch, references=references, raw_rows=raw_rows)


def test_quarantined_rows_carry_their_key_reason_and_source_values_as_json_holds_them():
    mapped = _mapped()
    assert mapped.rows.column("id").to_pylist() == [1]
    assert [(q.source_key, q.rule, q.reason) for q in mapped.quarantined] == [
        ("2", "orphan", "orphan: no row in rune.parents for owner_id"),
        ("3", "orphan", "orphan: no row in rune.parents for owner_id"),
    ]
    second, third = (q.raw_row for q in mapped.quarantined)
    assert second == {
        "id": 2,
        "owner_id": 99,
        "name": "b\u00e9",
        "pass_hash": MASK,  # by its name
        "price": "-2.25",
        "at": "2021-11-07 01:30:00",
        "blob": "caf\ufffd",  # latin-1 bytes that are not UTF-8, replaced
        "note": MASK,  # by its value: a bcrypt hash
    }
    assert third["pass_hash"] is None  # a null secret stays null
    assert third["blob"] == MASK and third["note"] == "plain" and third["name"] is None
    assert json.loads(json.dumps(second)) == second


def test_a_caller_that_only_counts_gets_no_source_values():
    mapped = _mapped(raw_rows=False)
    assert [q.raw_row for q in mapped.quarantined] == [{}, {}]
    assert [q.source_key for q in mapped.quarantined] == ["2", "3"]


def test_raw_rows_column_by_column_equal_scrubbing_each_row():
    """The per-column masking decides what ``scrub_secrets`` decides for every value."""
    import random

    from transform.mapping_engine import _json_plain, _raw_rows
    from transform.secret_scrubbing import scrub_secrets

    rng = random.Random(5)
    words = ["", "plain", "$2y$10$abc", "$6$salt$x", "$argon2id$v", "$1$md5", "caf\u00e9", None]
    n = 400
    batch = pa.record_batch(
        {
            "id": pa.array(range(n), pa.int64()),
            "note": pa.array([rng.choice(words) for _ in range(n)]),
            "wide": pa.array([rng.choice(words) for _ in range(n)], pa.large_string()),
            "blob": pa.array(
                [
                    None if (w := rng.choice(words)) is None else w.encode("latin-1")
                    for _ in range(n)
                ]
            ),
            "api_token": pa.array([rng.choice([None, 7, 8]) for _ in range(n)], pa.int64()),
            "ratio": pa.array([rng.choice([None, 0.5, -1.0]) for _ in range(n)]),
            "flag": pa.array([rng.choice([None, True, False]) for _ in range(n)]),
            "price": pa.array(
                [rng.choice([None, Decimal("1.10")]) for _ in range(n)], pa.decimal128(6, 2)
            ),
            "tags": pa.array([rng.choice([None, ["$2y$x"], ["a"]]) for _ in range(n)]),
            "coded": pa.array([rng.choice(words) for _ in range(n)]).dictionary_encode(),
        }
    )
    indices = pa.array(sorted(rng.sample(range(n), 150)), pa.int64())
    expected = [
        scrub_secrets({k: _json_plain(v) for k, v in row.items()})
        for row in batch.take(indices).to_pylist()
    ]
    assert _raw_rows(batch, indices) == expected
