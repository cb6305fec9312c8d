"""Reference checks by binary search, hash table and the C uuid set agree with ``pc.is_in``
on every kind of input."""

from __future__ import annotations

import uuid

import pyarrow as pa
import pyarrow.compute as pc
import pytest

from transform import id_set
from transform.id_set import IdSet

UUIDS = [str(uuid.uuid5(uuid.NAMESPACE_URL, str(i))) for i in range(50)]


@pytest.fixture(params=["c-kernels", "numpy"])
def kernels(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Each test runs with the C uuid set (where the ids are uuids) and without it."""
    if request.param == "numpy":
        monkeypatch.setattr(id_set, "_column_kernels", None)
    else:
        assert id_set._column_kernels is not None, "the C kernels are not built"
    return str(request.param)


def _is_in(values: pa.Array, ids: pa.Array) -> list[bool]:
    return pc.fill_null(pc.is_in(values, value_set=ids), False).to_pylist()


@pytest.mark.parametrize(
    ("ids", "values"),
    [
        pytest.param(
            pa.array([5, 1, 9, 3]), pa.array([1, 2, 9, None, 10, 0, -4]), id="ints-with-null"
        ),
        pytest.param(
            pa.array([5, 1, 9], pa.int32()), pa.array([9, 5, 4], pa.int64()), id="ints-other-width"
        ),
        pytest.param(pa.array(UUIDS[::2]), pa.array([*UUIDS[:10], None]), id="uuid-text"),
        pytest.param(
            pa.array(UUIDS[::2]), pa.array(["zzz", UUIDS[0], "", None]), id="text-mixed-lengths"
        ),
        pytest.param(
            pa.array(UUIDS[::2]), pa.array([UUIDS[0][:-1] + "g"]), id="uuid-length-not-an-id"
        ),
        pytest.param(
            pa.array(["b", "ccc", "a"]),
            pa.array(["a", "cc", "ccc", None]),
            id="variable-length-ids",
        ),
        pytest.param(pa.array(UUIDS[:3]), pa.array([None, None], pa.string()), id="only-nulls"),
        pytest.param(pa.array(UUIDS[:5]), pa.array(["abc", "xyz"]), id="text-of-another-length"),
        pytest.param(
            pa.array([UUIDS[1], UUIDS[0], UUIDS[1]]),
            pa.array([UUIDS[1], UUIDS[2], UUIDS[0]]),
            id="an-id-repeats",
        ),
        pytest.param(
            pa.array(["a" * 8 + "b", "a" * 9]),
            pa.array(["a" * 9, "a" * 8 + "\x00", "b" + "a" * 8]),
            id="past-the-first-eight-bytes",
        ),
        pytest.param(pa.array(UUIDS[:3]), pa.array([], pa.string()), id="empty"),
        pytest.param(
            pa.array([UUIDS[-1]]),
            pa.array([UUIDS[-1], "ffffffff-ffff-ffff-ffff-ffffffffffff"]),
            id="beyond-the-last-id",
        ),
        pytest.param(pa.array(UUIDS[:4]), pa.chunked_array([UUIDS[:2], [UUIDS[9]]]), id="chunked"),
    ],
)
def test_contains_agrees_with_is_in(ids: pa.Array, values: pa.Array, kernels: str) -> None:
    expected = _is_in(values, ids)
    assert IdSet(ids).contains(values).to_pylist() == expected


def test_a_sliced_array_is_read_from_its_offset(kernels: str) -> None:
    ids = pa.array(UUIDS).slice(10, 20)
    values = pa.array(UUIDS).slice(5, 10)
    assert IdSet(ids).contains(values).to_pylist() == [False] * 5 + [True] * 5


def test_many_ids_through_the_hash_table_agree_with_is_in(kernels: str) -> None:
    """Thousands of ids fill the table's probe sequences; values present, absent, null,
    and absent ones that differ from an id in one character only."""
    ids = pa.array([str(uuid.uuid5(uuid.NAMESPACE_DNS, f"id-{i}")) for i in range(5000)])
    texts = ids.to_pylist()
    near = [t[:-1] + ("0" if t[-1] != "0" else "1") for t in texts[:500]]
    values = pa.array([*texts[::3], *near, *(str(uuid.uuid4()) for _ in range(2000)), None])
    got = IdSet(ids).contains(values).to_pylist()
    assert got == _is_in(values, ids)
    assert sum(got) == len(texts[::3])


def test_the_c_uuid_set_compares_uuids_not_their_text() -> None:
    """Postgres reads upper-case uuid text as the same uuid, so the reference is there."""
    ids = pa.array(UUIDS[:5])
    values = pa.array([UUIDS[0].upper(), UUIDS[1], UUIDS[7].upper(), "{" + UUIDS[2][1:]])
    assert IdSet(ids).contains(values).to_pylist() == [True, True, False, False]


def test_the_nil_uuid_is_a_member_only_when_it_is_an_id() -> None:
    nil = "00000000-0000-0000-0000-000000000000"
    values = pa.array([nil, UUIDS[0]])
    assert IdSet(pa.array([UUIDS[0]])).contains(values).to_pylist() == [False, True]
    assert IdSet(pa.array([nil, UUIDS[1]])).contains(values).to_pylist() == [True, False]


def test_a_null_whose_slot_holds_uuid_bytes_is_not_found(kernels: str) -> None:
    """A null's bytes are whatever Arrow left there: here a real id's text."""
    present = pa.array(UUIDS[:3])
    offsets, data = present.buffers()[1], present.buffers()[2]
    validity = pa.array([True, False, True]).buffers()[1]
    values = pa.StringArray.from_buffers(3, offsets, data, validity, 1)
    assert values.to_pylist() == [UUIDS[0], None, UUIDS[2]]
    assert IdSet(present).contains(values).to_pylist() == [True, False, True]


def test_ids_that_are_not_all_uuids_use_the_text_table() -> None:
    ids = pa.array([*UUIDS[:3], "x" * 36])
    values = pa.array(["x" * 36, UUIDS[1], UUIDS[1].upper()])
    assert IdSet(ids).contains(values).to_pylist() == [True, True, False]


def test_ids_in_chunks_are_one_set(kernels: str) -> None:
    ids = pa.chunked_array([UUIDS[:3], UUIDS[3:6]])
    values = pa.array([UUIDS[4], UUIDS[9], UUIDS[0]])
    assert IdSet(ids).contains(values).to_pylist() == [True, False, True]
