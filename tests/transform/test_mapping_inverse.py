"""The inverse of the mappings: derived from the transforms, completed by 'reverse:'."""

from __future__ import annotations

from datetime import UTC, datetime

import pyarrow as pa
import pytest

from runeshift.errors import ConfigError
from transform.mapping_inverse import build_inverse, check_reversibility, invert_rows
from transform.mapping_loader import load_mapping_texts, load_mappings

SPEC = """
targets:
  rune.licenses:
    id: uuid_from_key(id, entity='license')
    from:
      - source: repo.licenses
        key: [id]
        columns:
          legacy_license_id: id
          expires_at: ny_local_to_utc(zero_date_to_null(expires_at, meaning='never expires'))
          price_paid_minor: money_to_minor(price_paid, currency='USD')
          refunded: flag_to_bool(refunded)
          label: slug_key(repair_mojibake(name))
"""


def test_shipped_mappings_have_an_inverse_for_every_table_rune_writes():
    findings = check_reversibility(load_mappings())
    assert [f for f in findings if f.severity == "error"] == []
    one_way = {f.table for f in findings if f.kind == "one_way"}
    assert one_way == {
        "rune.products", "rune.prices", "rune.orders", "rune.order_items",
        "rune.payments", "rune.refunds",
    }  # fmt: skip


def test_a_column_without_inverse_is_reported_with_the_fix():
    findings = check_reversibility(load_mapping_texts({"m.yaml": SPEC}))
    assert [(f.kind, f.table, f.column) for f in findings] == [
        ("no_inverse", "rune.licenses", "label")
    ]
    assert "reverse: skip:" in findings[0].fix and "m.yaml" in findings[0].fix


def test_a_declared_skip_or_reverse_rule_settles_it():
    skip = SPEC + "        reverse:\n          skip: {label: 'derived, shown only'}\n"
    assert check_reversibility(load_mapping_texts({"m.yaml": skip})) == []
    rule = SPEC + "        reverse:\n          columns: {name: 'encode_latin1_column(label)'}\n"
    assert check_reversibility(load_mapping_texts({"m.yaml": rule})) == []


def test_reverse_section_needs_reasons_and_known_keys():
    with pytest.raises(ConfigError, match="needs a reason"):
        load_mapping_texts({"m.yaml": SPEC + "        reverse:\n          skip: {label: ''}\n"})
    with pytest.raises(ConfigError, match="unknown key 'colums'"):
        load_mapping_texts({"m.yaml": SPEC + "        reverse:\n          colums: {}\n"})


def test_nested_transforms_are_inverted_outermost_first():
    target = load_mapping_texts({"m.yaml": SPEC}).target("rune.licenses")
    inv = build_inverse(target).primary
    exprs = {c.source_column: c.expr.render() for c in inv.columns}
    assert exprs["expires_at"] == "null_to_zero_date(utc_to_ny_local(expires_at))"
    assert exprs["price_paid"] == "minor_to_money(price_paid_minor, currency='USD')"
    rows = pa.table(
        {
            "legacy_license_id": pa.array([7, 8], pa.int64()),
            "expires_at": pa.array(
                [datetime(2024, 7, 1, 16, 0, tzinfo=UTC), None], pa.timestamp("us", tz="UTC")
            ),
            "price_paid_minor": pa.array([1999, 500], pa.int64()),
            "refunded": pa.array([True, False]),
            "label": pa.array(["x", "y"]),
        }
    )
    out = invert_rows(inv, rows, lambda table, ids: [None] * len(ids))
    assert out.rows == [
        {"id": 7, "expires_at": "2024-07-01 12:00:00", "price_paid": "19.99", "refunded": 1},
        {"id": 8, "expires_at": "0000-00-00 00:00:00", "price_paid": "5.00", "refunded": 0},
    ]


def test_a_row_without_its_legacy_key_is_refused_with_the_reason():
    inv = build_inverse(load_mapping_texts({"m.yaml": SPEC}).target("rune.licenses")).primary
    rows = pa.table(
        {
            "legacy_license_id": pa.array([None], pa.int64()),
            "expires_at": pa.array([None], pa.timestamp("us", tz="UTC")),
            "price_paid_minor": pa.array([1], pa.int64()),
            "refunded": pa.array([False]),
            "label": pa.array(["x"]),
        }
    )
    out = invert_rows(inv, rows, lambda table, ids: [None] * len(ids))
    assert out.rows == [None]
    assert "no legacy key" in (out.errors[0] or "")
