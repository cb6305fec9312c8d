"""The Arrow rendering of canonical text equals PostgreSQL's, value by value."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import psycopg
import pyarrow as pa
import pytest

from reconcile import canonical_sql_postgres as pg_canon
from reconcile.canonical_text import BARE_KINDS, canonical_array, jsonb_text, row_texts
from reconcile.personal_data_masking import mask_email, mask_value
from reconcile.row_digest import row_digests

JSON_CASES = [
    '{"b": 1, "a": 2, "aa": [1, 2.50, -0.0, 1e3]}',
    '{"é": "caf\\u00e9 ☕ 😀", "tab": "a\\tb\\u0001", "q": "say \\"hi\\" \\\\"}',
    '{"dup": 1, "dup": 2}',
    '[true, false, null, {"z": {}, "y": []}]',
    '"just a string"',
    "12.3400",
]


@pytest.mark.parametrize("text", JSON_CASES, ids=range(len(JSON_CASES)))
def test_jsonb_text_is_what_postgres_prints(pg_url, text):
    with psycopg.connect(pg_url) as conn:
        (expected,) = conn.execute("SELECT %s::jsonb::text", (text,)).fetchone()
    assert jsonb_text(text) == expected


CASES = [
    ("int", "bigint", pa.array([1, -5, None, 2**62], pa.int64())),
    ("bool", "boolean", pa.array([True, False, None])),
    ("numeric", "numeric(10,3)", pa.array(["19.990", "20.000", "0.500", None, "-3.100"])),
    (
        "timestamp",
        "timestamptz",
        pa.array(
            [
                datetime(2021, 3, 14, 7, 30, tzinfo=UTC),
                datetime(1969, 12, 31, 23, 59, 59, 1, tzinfo=UTC),
                None,
            ],
            pa.timestamp("us", tz="UTC"),
        ),
    ),
    ("text", "text", pa.array(["", None, "José", "Jose\u0301", "😀", "a,b:c"])),
    ("uuid", "uuid", pa.array(["0B6F3E4A-6A43-5D3B-9A8E-1B2C3D4E5F60", None])),
    ("array", "smallint[]", pa.array([[7, 12], [], None, [3]], pa.list_(pa.int64()))),
    (
        "array",
        "text[]",
        pa.array([["f2p", "p2p"], [], None, ['we"ird', "a b"]], pa.list_(pa.string())),
    ),
    ("json", "jsonb", pa.array(['{"b":1,"a":[1.50]}', None])),
    ("date", "date", pa.array(["2024-02-29", None]).cast(pa.date32())),
]


@pytest.mark.parametrize("kind,pg_type,values", CASES, ids=[f"{c[0]}-{c[1]}" for c in CASES])
def test_arrow_and_postgres_render_the_same_text_and_digest(pg_url, kind, pg_type, values):
    py = values.to_pylist()
    with psycopg.connect(pg_url, options="-c TimeZone=UTC") as conn:
        conn.execute(f"CREATE TEMP TABLE t (n int, v {pg_type})")
        with conn.cursor() as cur:
            for i, v in enumerate(py):
                if isinstance(v, Decimal | str) and pg_type.startswith("numeric"):
                    v = Decimal(v)
                cur.execute("INSERT INTO t VALUES (%s, %s)", (i, v))
        expr = pg_canon.canonical("v", kind)
        got = [
            r[0] for r in conn.execute(psycopg.sql.SQL("SELECT {} FROM t ORDER BY n").format(expr))
        ]
        digests = [
            r[0]
            for r in conn.execute(
                psycopg.sql.SQL("SELECT {} FROM t ORDER BY n").format(
                    pg_canon.row_digest([("v", kind)])
                )
            )
        ]
        # and as the compare reads them: each text rendered once, in key order
        keyed = conn.execute(
            pg_canon.digest_rows("n", [("v", kind), ("v", kind)], psycopg.sql.SQL("t"))
        ).fetchall()
    arrow = canonical_array(values, kind).to_pylist()
    assert arrow == got
    assert list(row_digests([canonical_array(values, kind)], [kind])) == digests
    twice = canonical_array(values, kind)
    assert keyed == [(i, int(d)) for i, d in enumerate(row_digests([twice, twice], [kind, kind]))]
    if kind in BARE_KINDS:  # written without a length: no text may hold a field boundary
        assert not any(t is not None and ("," in t or t == "-") for t in arrow)


def test_null_and_empty_string_and_field_boundaries_differ():
    a = row_texts(
        [pa.array(["", None, "a,1:b"]), pa.array([None, "", "c"])], ["text", "text"]
    ).to_pylist()
    assert len(set(a)) == 3
    assert a[0] != a[1]
    # bare fields (numbers) beside length-prefixed ones (text): a comma cannot move a boundary
    b = row_texts(
        [pa.array(["x,1", "x", None]), pa.array(["2", "1", "-1"])], ["text", "int"]
    ).to_pylist()
    assert b == ["3:x,1,2", "1:x,1", "-,-1"]


def test_masking_hides_personal_data_and_secrets():
    assert mask_email("jane.doe@example.com") == "j***@e***.com"
    assert mask_value("rune.accounts", "display_name", "Jane Doe") == "J*** D***"
    assert (
        mask_value("rune.accounts", "timezone", "$2y$10$abcdefghijklmnopqrstuv1234")
        == "[secret removed]"
    )
    assert mask_value("rune.licenses", "kind", "lifetime") == "lifetime"
