"""The COPY writer: binary COPY from Arrow lands exactly the values CSV COPY lands."""

from __future__ import annotations

import datetime as dt
import uuid

import psycopg
import pyarrow as pa
import pytest

from load import copy_writer
from load.index_builds import finish_bulk_load

UTC = dt.UTC

DDL = """
CREATE TABLE {name} (
    id uuid PRIMARY KEY,
    ref uuid,
    big bigint,
    small smallint,
    num integer,
    flag boolean,
    label text,
    code char(3),
    doc jsonb,
    at timestamptz,
    small_list smallint[],
    text_list text[],
    CONSTRAINT {name}_label_unique UNIQUE (label)
)
"""

ODD_TEXT = [
    "plain",
    'tab\there, newline\nthere, quote " and comma ,',
    "back\\slash \\N and \\. and NULL",
    "é ß 漢字 🎉 \u200b zero-width, \u202e rtl, combining e\u0301",
    "",
    None,
]


def _rows() -> pa.Table:
    n = len(ODD_TEXT)
    ids = [str(uuid.uuid5(uuid.NAMESPACE_URL, f"row-{i}")) for i in range(n)]
    return pa.table(
        {
            "id": pa.array(ids, pa.string()),
            "ref": pa.array([ids[0].upper(), None, ids[2], None, ids[4], ids[5]], pa.string()),
            "big": pa.array([0, -1, 2**63 - 1, None, 2**40, 7], pa.int64()),
            "small": pa.array([0, -32768, 32767, None, 1, 2], pa.int64()),
            "num": pa.array([0, -(2**31), 2**31 - 1, None, 3, 4], pa.int64()),
            "flag": pa.array([True, False, None, True, False, True]),
            "label": pa.array(ODD_TEXT, pa.string()),
            "code": pa.array(["USD", "EU", None, "é€x", "abc", "xyz"], pa.string()),
            "doc": pa.array(
                ['{"a": 1}', '{"b": [1, 2.50, "é"], "a": null}', None, "[]", '"x"', "{}"],
                pa.string(),
            ),
            "at": pa.array(
                [
                    dt.datetime(2020, 1, 1, tzinfo=UTC),
                    dt.datetime(1970, 1, 1, 0, 0, 0, 1, tzinfo=UTC),
                    dt.datetime(1, 1, 1, tzinfo=UTC),
                    None,
                    dt.datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC),
                    dt.datetime(1999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC),
                ],
                pa.timestamp("us", tz="UTC"),
            ),
            "small_list": pa.array(
                [[1, 2], [], None, [None, 3], [32767], [-1]], pa.list_(pa.int64())
            ),
            "text_list": pa.array(
                [["a", 'b"c', "d,e", "{f}"], [], None, [None, "NULL"], ["é 🎉"], ["\\"]],
                pa.list_(pa.string()),
            ),
        }
    )


@pytest.fixture
def conn(pg_url: str):
    with psycopg.connect(pg_url) as c:
        for name in ("via_binary", "via_csv"):
            c.execute(DDL.format(name=name))
        c.commit()
        yield c


def _dump(conn: psycopg.Connection, table: str) -> list[tuple]:
    return conn.execute(f"SELECT t::text FROM {table} t ORDER BY id").fetchall()


def _encoder(conn: psycopg.Connection, table: str) -> copy_writer.BinaryCopyEncoder:
    return copy_writer.BinaryCopyEncoder.for_table(conn, f"public.{table}")


def test_binary_copy_lands_exactly_what_csv_lands(conn):
    rows = _rows()
    encoded = _encoder(conn, "via_binary").encode(rows)
    assert encoded.format == "binary"
    assert copy_writer.upsert_rows(conn, "public.via_binary", rows, encoded=encoded) == []
    assert copy_writer.upsert_rows(conn, "public.via_csv", rows) == []
    conn.commit()
    assert _dump(conn, "via_binary") == _dump(conn, "via_csv")
    got = conn.execute(
        "SELECT label, code, doc, at, small_list, text_list, ref FROM via_binary ORDER BY id"
    ).fetchall()
    by_label = {r[0]: r for r in got}
    assert set(by_label) == set(ODD_TEXT)
    odd = by_label[ODD_TEXT[3]]
    assert odd[1] == "é€x"
    assert odd[4] == [None, 3] and odd[5] == [None, "NULL"]
    assert by_label[""][3] == dt.datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC)
    assert by_label["plain"][6] == uuid.UUID(rows.column("id")[0].as_py())


def test_rerun_through_the_merge_changes_nothing_and_rejects_are_isolated(conn):
    rows = _rows()
    encoder = _encoder(conn, "via_binary")
    copy_writer.upsert_rows(conn, "public.via_binary", rows, encoded=encoder.encode(rows))
    conn.commit()
    before = _dump(conn, "via_binary")
    xmin = conn.execute("SELECT sum(xmin::text::bigint) FROM via_binary").fetchone()
    assert (
        copy_writer.upsert_rows(conn, "public.via_binary", rows, encoded=encoder.encode(rows)) == []
    )
    conn.commit()
    assert _dump(conn, "via_binary") == before
    assert conn.execute("SELECT sum(xmin::text::bigint) FROM via_binary").fetchone() == xmin
    # a new row whose label another row holds breaks the unique constraint: only it is rejected
    clash = rows.slice(0, 2).set_column(
        0, "id", pa.array([str(uuid.uuid4()), rows.column("id")[1].as_py()], pa.string())
    )
    rejected = copy_writer.upsert_rows(
        conn, "public.via_binary", clash, encoded=encoder.encode(clash)
    )
    assert [r.index for r in rejected] == [0]
    assert "via_binary_label_unique" in rejected[0].reason


def test_rejects_in_a_large_batch_are_found_by_halving_and_the_rest_lands(conn):
    taken = [f"taken-{i}" for i in range(3)]
    held = pa.table(
        {
            "id": pa.array([str(uuid.uuid4()) for _ in taken], pa.string()),
            "label": pa.array(taken, pa.string()),
        }
    )
    assert copy_writer.upsert_rows(conn, "public.via_csv", held) == []
    n = 5000
    ids = [str(uuid.uuid4()) for _ in range(n)]
    labels = [f"new-{i}" for i in range(n)]
    for index, label in zip((10, 2500, 4999), taken, strict=True):
        labels[index] = label  # another row holds it: rejected by the unique constraint
    ids[3001] = ids[3000]  # one id twice: the later row wins, as row by row
    labels[3001] = "new-3000-again"
    batch = pa.table({"id": pa.array(ids, pa.string()), "label": pa.array(labels, pa.string())})
    rejected = copy_writer.upsert_rows(conn, "public.via_csv", batch)
    assert [r.index for r in rejected] == [10, 2500, 4999]
    assert all("via_csv_label_unique" in r.reason for r in rejected)
    landed = dict(conn.execute("SELECT id::text, label FROM via_csv").fetchall())
    assert len(landed) == 3 + n - 3 - 1
    assert landed[ids[3000]] == "new-3000-again"
    assert landed[ids[0]] == "new-0" and ids[10] not in landed


@pytest.mark.parametrize(
    ("column", "values"),
    [
        ("at", pa.array([dt.datetime(2020, 1, 1)] * 6, pa.timestamp("us"))),  # naive
        ("id", pa.array([f"{{{uuid.uuid4()}}}" for _ in range(6)], pa.string())),  # braces
        ("id", pa.array([uuid.uuid4().hex for _ in range(6)], pa.string())),  # no dashes
        ("small", pa.array([1, 2, 3, 4, 5, 70000], pa.int64())),  # overflows smallint
        ("label", pa.array([1, 2, 3, 4, 5, 6], pa.int64())),  # number into text
    ],
    ids=["naive-timestamp", "uuid-braces", "uuid-no-dashes", "smallint-overflow", "int-to-text"],
)
def test_columns_without_an_exact_binary_form_go_as_csv(conn, column, values):
    rows = _rows()
    rows = rows.set_column(rows.column_names.index(column), column, values)
    assert _encoder(conn, "via_binary").encode(rows).format == "csv"


@pytest.mark.parametrize("native", [True, False], ids=["c-kernels", "numpy"])
def test_uuid_text_to_bytes_matches_python(native, monkeypatch):
    if not native:
        monkeypatch.setattr(copy_writer, "_column_kernels", None)
    texts = [str(uuid.uuid4()) for _ in range(50)] + [None, str(uuid.uuid4()).upper()]
    out = copy_writer.uuid_text_to_bytes(pa.array(texts, pa.string()).slice(1))
    assert out.to_pylist() == [None if t is None else uuid.UUID(t).bytes for t in texts[1:]]
    with pytest.raises(copy_writer._NotExact):
        copy_writer.uuid_text_to_bytes(pa.array(["zzzzzzzz-0000-0000-0000-000000000000"]))
    with pytest.raises(copy_writer._NotExact):  # Postgres takes it; the chunk goes as CSV
        copy_writer.uuid_text_to_bytes(pa.array([texts[0].replace("-", "")]))
    assert copy_writer.uuid_text_to_bytes(pa.array([], pa.string())).to_pylist() == []
    assert copy_writer.uuid_text_to_bytes(pa.array([None], pa.string())).to_pylist() == [None]


def test_an_empty_chunk_encodes_as_binary(conn):
    encoded = _encoder(conn, "via_binary").encode(_rows().slice(0, 0))
    assert encoded.format == "binary"


def test_rows_null_in_a_not_null_column_are_rejected_at_once_as_postgres_would(conn):
    conn.execute(
        "CREATE TABLE IF NOT EXISTS required_kind "
        "(id uuid PRIMARY KEY, kind text NOT NULL, label text UNIQUE)"
    )
    conn.execute("INSERT INTO required_kind VALUES (gen_random_uuid(), 'x', 'taken')")
    n = 2000
    ids = [str(uuid.uuid4()) for _ in range(n)]
    kinds = [None if i % 7 == 3 else "monthly" for i in range(n)]
    labels = [f"l-{i}" for i in range(n)]
    labels[1000] = "taken"  # and one unique violation beside them
    batch = pa.table(
        {
            "id": pa.array(ids, pa.string()),
            "kind": pa.array(kinds, pa.string()),
            "label": pa.array(labels, pa.string()),
        }
    )
    rejected = copy_writer.upsert_rows(conn, "public.required_kind", batch)
    nulls = [i for i, k in enumerate(kinds) if k is None]
    assert [r.index for r in rejected] == sorted([*nulls, 1000])
    with pytest.raises(psycopg.errors.NotNullViolation) as told, conn.transaction():
        conn.execute("INSERT INTO required_kind VALUES (gen_random_uuid(), NULL, 'z')")
    said = f"rejected by public.required_kind: {told.value.diag.message_primary}"
    assert {r.reason for r in rejected if r.index != 1000} == {said}
    assert "required_kind_label_key" in next(r.reason for r in rejected if r.index == 1000)
    (landed,) = conn.execute("SELECT count(*) FROM required_kind").fetchone()
    assert landed == 1 + n - len(nulls) - 1


def _shape(conn: psycopg.Connection, table: str) -> tuple[set, set]:
    indexes = conn.execute(
        "SELECT indexname, indexdef FROM pg_indexes WHERE tablename = %s", (table,)
    ).fetchall()
    constraints = conn.execute(
        "SELECT conname, pg_get_constraintdef(oid) FROM pg_constraint WHERE conrelid = %s::regclass",
        (table,),
    ).fetchall()
    return set(indexes), set(constraints)


def test_key_constraints_unique_by_construction_are_deferred_unless_referenced(conn):
    conn.execute(
        "CREATE TABLE parent (id uuid PRIMARY KEY, legacy bigint CONSTRAINT parent_legacy_unique "
        "UNIQUE, label text CONSTRAINT parent_label_unique UNIQUE, note text "
        "CONSTRAINT parent_note_check CHECK (note <> 'bad'))"
    )
    conn.execute("CREATE INDEX parent_note_idx ON parent (note)")
    conn.execute("CREATE TABLE owner (id uuid PRIMARY KEY, legacy bigint UNIQUE)")
    conn.execute("CREATE TABLE owned (owner_id uuid REFERENCES owner (id))")
    before = _shape(conn, "parent")
    # without columns unique by construction only the plain index qualifies
    assert [i.name for i in copy_writer.deferrable_indexes(conn, "public.parent")] == [
        "public.parent_note_idx"
    ]
    found = copy_writer.deferrable_indexes(conn, "public.parent", frozenset({"id", "legacy"}))
    assert sorted(i.name for i in found) == [
        "public.parent_legacy_unique",
        "public.parent_note_idx",
        "public.parent_pkey",
    ]
    # a primary key another table's foreign key stands on is never dropped
    owner = copy_writer.deferrable_indexes(conn, "public.owner", frozenset({"id", "legacy"}))
    assert [i.name for i in owner] == ["public.owner_legacy_key"]

    copy_writer.drop_indexes(conn, found)
    assert _shape(conn, "parent")[1] == {
        ("parent_label_unique", "UNIQUE (label)"),
        ("parent_note_check", "CHECK ((note <> 'bad'::text))"),
    }
    # fresh rows into the table without its key: a refused row is isolated, the rest land
    n = 3000
    rows = pa.table(
        {
            "id": pa.array([str(uuid.uuid4()) for _ in range(n)], pa.string()),
            "legacy": pa.array(range(n), pa.int64()),
            "label": pa.array([f"l{i}" for i in range(n)], pa.string()),
            "note": pa.array(["bad" if i in (7, 2999) else "ok" for i in range(n)], pa.string()),
        }
    )
    rejected = copy_writer.upsert_rows(conn, "public.parent", rows, fresh=True)
    assert [r.index for r in rejected] == [7, 2999]
    assert all("parent_note_check" in r.reason for r in rejected)
    assert conn.execute("SELECT count(*) FROM parent").fetchone() == (n - 2,)
    # built again (twice: a resumed run repeats the build), exactly as it was
    pairs = [(i.name, i.create) for i in found]
    finish_bulk_load(conn, pairs, helper_url=None)
    finish_bulk_load(conn, pairs, helper_url=None)
    assert _shape(conn, "parent") == before
    conn.rollback()


@pytest.mark.parametrize("refused", [False, True], ids=["copy", "isolating-rejects"])
def test_rows_commit_only_with_the_callers_transaction(conn, refused):
    """The caller's checkpoint commits with the rows: a rollback after the write leaves nothing.

    psycopg's ``transaction()`` on an idle connection is a transaction of its own; a write
    that started the caller's transaction that way would commit before the checkpoint.
    """
    conn.commit()
    rows = _rows()
    if refused:  # two rows share a label: the COPY fails and the rows go one range at a time
        labels = rows.column("label").to_pylist()
        rows = rows.set_column(
            rows.column_names.index("label"), "label", pa.array([labels[1], *labels[1:]])
        )
    assert conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
    rejected = copy_writer.upsert_rows(conn, "public.via_csv", rows)
    assert len(rejected) == (1 if refused else 0)
    assert conn.execute("SELECT count(*) FROM via_csv").fetchone() == (
        rows.num_rows - len(rejected),
    )
    conn.rollback()
    assert conn.execute("SELECT count(*) FROM via_csv").fetchone() == (0,)
