import uuid

import pyarrow as pa
import pytest

from runeshift.errors import ConfigError
from transform.identity_keys import RUNESHIFT_NAMESPACE, uuid_for
from transform.registry import get_transform


def test_namespace_is_pinned():
    # Changing the namespace would change every id already written to the target.
    assert uuid.uuid5(uuid.NAMESPACE_URL, "https://runeshift.tribot.org/ids") == RUNESHIFT_NAMESPACE


@pytest.mark.parametrize(
    ("entity", "key", "name"),
    [
        pytest.param("member", (42,), "member:42", id="single-int"),
        pytest.param("review", (7, 42), "review:7:42", id="composite"),
        pytest.param("order", ("gid://x",), "order:gid://x", id="text-key"),
        pytest.param("license", (2**64 - 1,), f"license:{2**64 - 1}", id="uint64-max"),
    ],
)
def test_uuid_for_is_uuid5_of_entity_and_key(entity, key, name):
    assert uuid_for(entity, *key) == uuid.uuid5(RUNESHIFT_NAMESPACE, name)


def test_uuid_from_key_matches_uuid_for_and_handles_nulls():
    spec = get_transform("uuid_from_key")
    result = spec.fn(
        pa.array([7, 7, None, 3], pa.uint32()), pa.array([42, 43, 1, None]), entity="review"
    )
    assert result.values.to_pylist() == [
        str(uuid_for("review", 7, 42)),
        str(uuid_for("review", 7, 43)),
        None,
        None,
    ]
    assert (spec.min_arrays, spec.max_arrays, spec.required_params) == (1, None, {"entity"})


def test_uuid_from_key_is_deterministic_across_batches():
    fn = get_transform("uuid_from_key").fn
    first = fn(pa.array([1, 2, 3]), entity="member").values
    again = fn(pa.array([3, 2, 1]), entity="member").values
    assert first.to_pylist() == again.to_pylist()[::-1]


@pytest.mark.parametrize("entity", [pytest.param("", id="empty"), pytest.param("a:b", id="colon")])
def test_uuid_entity_must_be_a_plain_name(entity):
    with pytest.raises(ConfigError):
        get_transform("uuid_from_key").fn(pa.array([1]), entity=entity)


def test_uuid_for_rejects_bool():
    with pytest.raises(TypeError):
        uuid_for("member", True)


@pytest.mark.parametrize(
    ("raw", "expected", "error"),
    [
        pytest.param("123", 123, None, id="numeric-text"),
        pytest.param("gid://shopify/Order/4501", 4501, None, id="gid"),
        pytest.param("18446744073709551615", 2**64 - 1, None, id="uint64-max"),
        pytest.param("18446744073709551616", None, "is not a Shopify id", id="above-uint64"),
        pytest.param("gid://shopify/Order/", None, "is not a Shopify id", id="gid-without-id"),
        pytest.param("abc", None, "is not a Shopify id", id="junk"),
        pytest.param(None, None, None, id="null"),
    ],
)
def test_shopify_id_to_int(raw, expected, error):
    result = get_transform("shopify_id_to_int").fn(pa.array([raw, "1"], pa.string()))
    assert result.values.to_pylist() == [expected, 1]
    errors = [None, None] if result.errors is None else result.errors.to_pylist()
    assert (errors[0] is not None and error in errors[0]) if error else errors[0] is None


def test_uuid_from_key_matches_uuid_module_on_many_rows():
    keys = [*range(0, 5000, 7), 2**63 - 1, -3]
    result = get_transform("uuid_from_key").fn(pa.array(keys, pa.int64()), entity="script")
    assert result.values.to_pylist() == [str(uuid_for("script", k)) for k in keys]


def test_uuid_from_key_on_repeating_keys_hashes_each_once_and_matches():
    # A reference column (a license's member) repeats its keys: distinct keys are hashed
    # once and spread back; nulls stay null wherever they are.
    keys = [k % 50 if k % 13 else None for k in range(2000)]
    result = get_transform("uuid_from_key").fn(pa.array(keys, pa.int64()), entity="account")
    assert result.values.to_pylist() == [
        None if k is None else str(uuid_for("account", k)) for k in keys
    ]


# Message lengths around SHA-1's block edges: the namespace is 16 bytes, one block holds a
# message of up to 55 bytes with its padding, so names of 39/40 bytes and 103/104 bytes
# are the edges of one and two blocks; 48 fills the first block exactly.
EDGE_NAMES = ["", "a", "é", "x" * 39, "x" * 40, "x" * 47, "x" * 48, "x" * 103, "x" * 104, "ü" * 300]


def test_the_c_uuid5_module_is_built():
    # Without it uuid5 ids fall back to hashlib and uuid per row (about 20x the CPU, all
    # of it holding the GIL); the install must have built it.
    from transform import identity_keys

    assert identity_keys._column_kernels is not None


@pytest.mark.parametrize("native", [True, False], ids=["c-module", "python-fallback"])
def test_uuid5_texts_are_uuid5_at_sha1_block_edges_in_a_sliced_column(native, monkeypatch):
    from transform import identity_keys

    if not native:
        monkeypatch.setattr(identity_keys, "_column_kernels", None)
    column = pa.array(["skipped", *EDGE_NAMES, None, "after"])[1:]  # a slice: offset 1
    got = identity_keys._uuid5_texts(column).to_pylist()
    expected = [
        None if name is None else str(uuid.uuid5(RUNESHIFT_NAMESPACE, name))
        for name in column.to_pylist()
    ]
    assert got == expected


def test_uuid_ids_from_the_c_module_are_uuid_for():
    spec = get_transform("uuid_from_key")
    column = pa.array(EDGE_NAMES)
    got = spec.fn(column, entity="page").values.to_pylist()
    assert got == [str(uuid_for("page", name)) for name in EDGE_NAMES]


def test_the_portable_c_sha1_agrees_where_the_cpu_would_use_its_sha_extensions():
    # The module picks the x86 SHA extensions when the CPU has them; the portable C path
    # (every other CPU) is forced here in a fresh interpreter and checked the same way.
    import json
    import os
    import subprocess
    import sys

    script = (
        "import json, sys, uuid, pyarrow as pa\n"
        "from transform import _column_kernels, identity_keys\n"
        "names = json.loads(sys.argv[1])\n"
        "got = identity_keys._uuid5_texts(pa.array(names)).to_pylist()\n"
        "want = [str(uuid.uuid5(identity_keys.RUNESHIFT_NAMESPACE, n)) for n in names]\n"
        "print(_column_kernels.ENGINE, got == want)\n"
    )
    env = {**os.environ, "RUNESHIFT_SHA1_PORTABLE": "1"}
    out = subprocess.run(
        [sys.executable, "-c", script, json.dumps(EDGE_NAMES)],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    assert out.stdout.split() == ["portable", "True"]


INT_KEYS = [0, 1, -1, 9, 10, 99, 100, 2**31 - 1, -(2**31), 2**63 - 1, -(2**63), None, 42]


@pytest.mark.parametrize(
    "kind",
    [pa.int64(), pa.int32(), pa.int8(), pa.uint32(), pa.uint64()],
    ids=lambda kind: str(kind),
)
@pytest.mark.parametrize("native", [True, False], ids=["c-module", "python-fallback"])
def test_integer_keys_named_in_c_are_uuid_for(kind, native, monkeypatch):
    """One integer key column: the names are written in C (decimal, sign, the extremes of
    each width), a null key gives a null id, and a sliced column reads from its offset;
    uint64 beyond int64 and the fallback build the names with pyarrow."""
    from transform import identity_keys

    if not native:
        monkeypatch.setattr(identity_keys, "_column_kernels", None)
    info = (
        (0, 2**64 - 1)
        if kind == pa.uint64()
        else (0, 2 ** (kind.bit_width) - 1)
        if pa.types.is_unsigned_integer(kind)
        else (-(2 ** (kind.bit_width - 1)), 2 ** (kind.bit_width - 1) - 1)
    )
    keys = [k for k in INT_KEYS if k is None or info[0] <= k <= info[1]]
    if kind == pa.uint64():
        keys.append(2**64 - 1)
    column = pa.array([5, *keys], kind).slice(1)
    got = get_transform("uuid_from_key").fn(column, entity="license").values
    assert got.to_pylist() == [None if k is None else str(uuid_for("license", k)) for k in keys]
