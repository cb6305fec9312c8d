"""Properties every registered transform keeps: same length out, declared type, errors shape."""

import pyarrow as pa
import pytest

from transform.registry import all_transforms

# Parameters a transform cannot run without (the mapping would give them).
PARAMS = {
    "uuid_from_key": {"entity": "member"},
    "money_to_minor": {"currency": "USD"},
    "minor_to_money": {"currency": "USD"},
    "range_check": {"min": 1, "max": 5},
}
# The transforms library (the mapping engine registers a few of its own elsewhere).
OWNED_HERE = {
    name
    for name, spec in all_transforms().items()
    if spec.fn.__module__.split(".")[-1]
    in {
        "text_encoding",
        "temporal",
        "flags_and_enums",
        "php_unserialize",
        "lists_and_sets",
        "identity_keys",
        "money",
        "text_normalisation",
    }
}


def _input_type(spec):
    return spec.input_types[0] if spec.input_types else pa.int64()


@pytest.mark.parametrize("name", sorted(OWNED_HERE))
@pytest.mark.parametrize("length", [pytest.param(0, id="empty"), pytest.param(3, id="all-null")])
def test_transform_keeps_length_and_type_on_empty_and_null_input(name, length):
    spec = all_transforms()[name]
    arrow_type = _input_type(spec)
    arrays = [pa.nulls(length, arrow_type)] * max(spec.min_arrays, 1)
    result = spec.fn(*arrays, **PARAMS.get(name, {}))
    assert len(result.values) == length
    assert result.values.type == spec.result_type(arrow_type)
    assert result.values.null_count == length or name in {
        "null_to_zero",
        "null_to_blank",
        "null_to_zero_date",
        "timestamptz_to_unix_seconds",
    }
    if result.errors is not None:
        assert result.errors.type == pa.string() and len(result.errors) == length
    assert all(isinstance(k, str) and isinstance(v, int) for k, v in result.notes.items())


@pytest.mark.parametrize("name", sorted(OWNED_HERE))
def test_transform_accepts_chunked_arrays(name):
    spec = all_transforms()[name]
    arrow_type = _input_type(spec)
    chunked = pa.chunked_array([pa.nulls(2, arrow_type), pa.nulls(1, arrow_type)])
    result = spec.fn(*([chunked] * max(spec.min_arrays, 1)), **PARAMS.get(name, {}))
    assert len(result.values) == 3


SAMPLES = {
    "repair_mojibake": pa.array([b"x", b"Jos\xc3\xa9", b"Caf\xe9", b"a\x00"], pa.binary()),
    "decode_utf8": pa.array([b"x", b"\xff", "é".encode(), b"a\x00"], pa.binary()),
    "normalise_email": pa.array([b"x", b" A@B.c", b"", b"Caf\xe9@x"], pa.binary()),
    "comma_list_to_int_array": pa.array([",1,", ",2,3,", "", ",x,"]),
    "set_to_array": pa.array(["a", "a,b", "", None]),
    "ny_local_to_utc": pa.array(
        ["2021-03-14 02:30:00", "0000-00-00 00:00:00", "2021-02-30 00:00:00", "2021-06-01"]
    ),
    "money_to_minor": pa.array(["1.00", " 2.5 ", "x", "3"]),
    "php_unserialize_to_json": pa.array([b"i:1;", b"a:0:{}", b"x", b""], pa.binary()),
    "uuid_from_key": pa.array([1, 2, None, 4]),
    "range_check": pa.array([0, 3, 6, None]),
    "iana_timezone": pa.array(["UTC", "", "GMT+2", "europe/paris"]),
    "flag_to_bool": pa.array([0, 1, 2, -1]),
}


@pytest.mark.parametrize("name", sorted(SAMPLES))
def test_transform_on_a_slice_equals_slice_of_result(name):
    # Readers hand over slices of larger buffers; offsets must be respected.
    spec = all_transforms()[name]
    sample = SAMPLES[name]
    whole = spec.fn(sample, **PARAMS.get(name, {}))
    part = spec.fn(sample.slice(1), **PARAMS.get(name, {}))
    assert part.values.to_pylist() == whole.values.to_pylist()[1:]
    whole_errors = whole.errors.to_pylist()[1:] if whole.errors is not None else [None] * 3
    part_errors = part.errors.to_pylist() if part.errors is not None else [None] * 3
    assert part_errors == whole_errors
