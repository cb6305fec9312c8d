import pyarrow as pa
import pytest

import transform
from runeshift.errors import ConfigError
from transform.registry import TransformResult, all_transforms, get_transform


def test_import_registers_every_module():
    names = set(all_transforms())
    assert {"repair_mojibake", "flag_to_bool", "normalise_email"} <= names
    assert transform.get_transform is get_transform


def test_unknown_name_lists_close_matches():
    with pytest.raises(ConfigError, match=r"unknown transform 'repair_mojibak'.*repair_mojibake"):
        get_transform("repair_mojibak")


def test_every_inverse_is_registered():
    specs = all_transforms()
    dangling = {n: s.inverse for n, s in specs.items() if s.inverse and s.inverse not in specs}
    assert dangling == {}


def test_every_transform_has_a_doc():
    assert [n for n, s in all_transforms().items() if not s.doc] == []


def test_spec_shape_comes_from_signature():
    spec = get_transform("range_check")
    assert dict(spec.params) == {"min": int, "max": int, "label": str}
    assert spec.required_params == frozenset()
    assert (spec.min_arrays, spec.max_arrays) == (1, 1)
    assert spec.result_type(pa.int16()) == pa.int16()
    assert get_transform("repair_mojibake").result_type(pa.binary()) == pa.string()


@pytest.mark.parametrize(
    ("params", "message"),
    [
        pytest.param({"maxx": 5}, "has no parameter 'maxx'", id="unknown-param"),
        pytest.param({"max": "5"}, "must be int", id="wrong-type"),
        pytest.param({"max": True}, "must be int", id="bool-is-not-int"),
    ],
)
def test_validate_params_rejects(params, message):
    with pytest.raises(ConfigError, match=message):
        get_transform("range_check").validate_params(params, where="m.yaml:3")


def test_validate_params_accepts_and_names_missing():
    get_transform("range_check").validate_params({"min": 1, "max": 5})
    with pytest.raises(ConfigError, match="needs parameter"):
        get_transform("uuid_from_key").validate_params({})


@pytest.mark.parametrize(
    ("arrow_type", "accepted"),
    [
        pytest.param(pa.binary(), True, id="binary"),
        pytest.param(pa.large_binary(), True, id="large-binary"),
        pytest.param(pa.string(), False, id="string"),
    ],
)
def test_accepts_checks_input_types(arrow_type, accepted):
    assert get_transform("repair_mojibake").accepts(arrow_type) is accepted


def test_result_error_count():
    assert TransformResult(pa.array([1])).error_count() == 0
    assert TransformResult(pa.array([1, 2]), errors=pa.array([None, "x"])).error_count() == 1
