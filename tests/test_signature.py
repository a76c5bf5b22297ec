"""MLflow model signatures enforced as MLflow's pyfunc enforces them (deployflow.targets.local.enforcement).

Requests are decoded exactly as the scoring server decodes them (``decode_request`` of a JSON body), then
checked against a signature written as it appears in an ``MLmodel`` file. Each rule has a test; the
messages and codes are what the server answers (HTTP 400, ``INVALID_PARAMETER_VALUE``, or ``BAD_REQUEST``
for text that cannot be read as its type).
"""

from __future__ import annotations

import datetime
import json
from typing import Any

import numpy as np
import pandas as pd
import pytest
from deployflow.payloads import decode_request
from deployflow.targets.local.enforcement import (
    InputEnforcer,
    ParamsEnforcer,
    SignatureError,
)
from deployflow.targets.local.signature import (
    ColumnSpec,
    ParamSpec,
    TensorSpec,
    UnsupportedSignatureError,
    parse_signature,
)


def signature(inputs: list[dict[str, Any]] | None = None, params: list[dict[str, Any]] | None = None) -> Any:
    # As MLflow writes it: JSON text inside the YAML mapping.
    raw = {"inputs": json.dumps(inputs) if inputs else None, "outputs": None,
           "params": json.dumps(params) if params else None}
    return parse_signature(raw)


def col(kind: str, name: str | None = None, required: bool = True) -> dict[str, Any]:
    spec: dict[str, Any] = {"type": kind, "required": required}
    if name is not None:
        spec["name"] = name
    return spec


def tensor(dtype: str, shape: list[int], name: str | None = None) -> dict[str, Any]:
    spec: dict[str, Any] = {"type": "tensor", "tensor-spec": {"dtype": dtype, "shape": shape}}
    if name is not None:
        spec["name"] = name
    return spec


def enforce(inputs: list[dict[str, Any]], body: dict[str, Any]) -> Any:
    data, _, _ = decode_request(json.dumps(body).encode(), "application/json")
    return InputEnforcer(signature(inputs))(data)


def split(columns: list[str], rows: list[list[Any]]) -> dict[str, Any]:
    return {"dataframe_split": {"columns": columns, "data": rows}}


def refused(inputs: list[dict[str, Any]], body: dict[str, Any], code: str = "INVALID_PARAMETER_VALUE") -> str:
    with pytest.raises(SignatureError) as caught:
        enforce(inputs, body)
    assert caught.value.status_code == 400 and caught.value.error_code == code
    return caught.value.message


AB = [col("double", "a"), col("long", "b"), col("double", "c", required=False)]


# -- parsing ------------------------------------------------------------------------------------------------


def test_signature_parts_are_read_from_mlmodel_json_text():
    parsed = signature([col("double", "a"), col("long", "b", required=False)],
                       [{"name": "k", "type": "long", "default": 3, "shape": None}])
    assert parsed.inputs == (ColumnSpec("double", "a"), ColumnSpec("long", "b", required=False))
    assert parsed.params == (ParamSpec("k", "long", 3, None),)
    assert parsed.has_names and not parsed.is_tensor
    tensors = signature([tensor("float32", [-1, 2], "x")])
    assert tensors.inputs == (TensorSpec("float32", (-1, 2), "x"),) and tensors.is_tensor
    assert parse_signature(None) is None and parse_signature({"inputs": None, "params": None}) is None


def test_nested_types_are_left_to_mlflow():
    with pytest.raises(UnsupportedSignatureError, match="'array'"):
        signature([{"type": "array", "items": {"type": "double"}, "name": "a"}])
    with pytest.raises(UnsupportedSignatureError, match="param 'o'"):
        signature([col("double", "a")], [{"name": "o", "type": "object", "default": {}, "shape": None}])


# -- named columns: required, optional, extra, order ----------------------------------------------------------


def test_a_missing_required_column_is_named():
    message = refused(AB, split(["a", "z"], [[1.5, 2]]))
    assert "missing the required input column(s) ['b']" in message
    assert "['z']" in message  # the columns it has instead
    assert "'a': double (required)" in message  # the signature, for the caller


def test_extra_columns_are_dropped_and_the_order_is_the_signatures():
    frame = enforce(AB, split(["z", "b", "a"], [["x", 2, 1.5], ["y", 3, 2.5]]))
    assert frame.columns.tolist() == ["a", "b"]
    assert frame.dtypes.tolist() == [np.float64, np.int64]
    assert frame["a"].tolist() == [1.5, 2.5] and frame["b"].tolist() == [2, 3]


def test_optional_columns_may_be_absent_and_are_converted_when_present():
    assert enforce(AB, split(["a", "b"], [[1.5, 2]])).columns.tolist() == ["a", "b"]
    frame = enforce(AB, split(["a", "b", "c"], [[1.5, 2, 1], [2.5, 3, None]]))
    assert frame["c"].dtype == np.float64 and frame["c"].tolist()[0] == 1.0 and np.isnan(frame["c"][1])


def test_the_common_request_is_passed_through_untouched():
    data, _, _ = decode_request(json.dumps(split(["a", "b"], [[1.5, 2]])).encode(), "application/json")
    frame = data.astype({"b": "int64"})
    assert InputEnforcer(signature(AB))(frame) is frame


def test_records_and_named_inputs_become_the_same_frame():
    expected = enforce(AB, split(["a", "b"], [[1.5, 2], [2.5, 3]]))
    for body in ({"dataframe_records": [{"a": 1.5, "b": 2}, {"a": 2.5, "b": 3}]},
                 {"instances": [{"a": 1.5, "b": 2}, {"a": 2.5, "b": 3}]},
                 {"inputs": {"a": [1.5, 2.5], "b": [2, 3]}}):
        pd.testing.assert_frame_equal(enforce(AB, body), expected)


def test_unnamed_columns_are_matched_by_position_and_counted():
    unnamed = [col("double"), col("double")]
    frame = enforce(unnamed, split(["x", "y", "z"], [[1, 2.5, 3.5]]))
    assert frame.columns.tolist() == ["x", "y"] and frame.dtypes.tolist() == [np.float64, np.float64]
    assert enforce(unnamed, {"inputs": [[1.5, 2.5]]}).shape == (1, 2)
    assert "declares 2 unnamed input columns but the input has 1" in refused(unnamed, split(["x"], [[1.5]]))


# -- column types ---------------------------------------------------------------------------------------------


def test_integers_become_doubles():
    frame = enforce([col("double", "a")], split(["a"], [[1], [2]]))
    assert frame["a"].dtype == np.float64 and frame["a"].tolist() == [1.0, 2.0]


def test_narrower_numbers_widen_in_process():
    enforcer = InputEnforcer(signature([col("double", "a"), col("long", "b")]))
    frame = enforcer(pd.DataFrame({"a": np.array([0.5], dtype="float32"), "b": np.array([7], dtype="int32")}))
    assert frame.dtypes.tolist() == [np.float64, np.int64] and frame["b"].tolist() == [7]
    nullable = enforcer(pd.DataFrame({"a": pd.array([1, None], dtype="Int64"), "b": pd.array([1, 2], dtype="Int64")}))
    assert nullable.dtypes.tolist() == [np.float64, np.int64] and np.isnan(nullable["a"][1])


def test_whole_floats_become_integers_but_fractions_and_gaps_do_not():
    assert enforce([col("long", "b")], split(["b"], [[2.0], [3.0]]))["b"].tolist() == [2, 3]
    assert "cannot be converted to long" in refused([col("long", "b")], split(["b"], [[2.5]]))
    with_gap = refused([col("long", "b")], split(["b"], [[2], [None]]))
    assert "missing values" in with_gap and "declare such a column as double" in with_gap


def test_integer_columns_keep_their_range():
    assert enforce([col("integer", "i")], split(["i"], [[7]]))["i"].dtype == np.int32
    assert "outside the range of integer" in refused([col("integer", "i")], split(["i"], [[3_000_000_000]]))


def test_float_columns_read_json_numbers_as_float32():
    frame = enforce([col("float", "f")], split(["f"], [[0.1], [2]]))
    assert frame["f"].dtype == np.float32 and frame["f"].tolist() == [np.float32(0.1), 2.0]
    assert "too large for float" in refused([col("float", "f")], split(["f"], [[1e300]]))


@pytest.mark.parametrize(
    ("declared", "value"),
    [("double", True), ("long", True), ("long", "2.5"), ("string", 1), ("boolean", 1), ("boolean", "true")],
)
def test_conversions_mlflow_refuses(declared, value):
    # Numbers to text, booleans to numbers and back, fractions to integers: refused, as by MLflow's pyfunc.
    assert f"cannot be converted to {declared}" in refused([col(declared, "v")], split(["v"], [[value]]))


def test_numbers_written_as_text_are_read_as_mlflows_parser_reads_them():
    frame = enforce([col("double", "a"), col("long", "b")], split(["a", "b"], [["1.5", "2"], ["-3e2", "4"]]))
    assert frame.dtypes.tolist() == [np.float64, np.int64] and frame["a"].tolist() == [1.5, -300.0]
    message = refused([col("double", "a")], split(["a"], [["high"]]), code="BAD_REQUEST")
    assert "column 'a' holds text that is not a number" in message


def test_booleans_without_gaps():
    assert enforce([col("boolean", "flag")], split(["flag"], [[True], [False]]))["flag"].dtype == bool
    message = refused([col("boolean", "flag")], split(["flag"], [[True], [None]]))
    assert "missing values, which a boolean column cannot hold" in message


def test_strings_pass_unchanged():
    frame = enforce([col("string", "s")], split(["s"], [["x"], [None]]))
    assert frame["s"].tolist()[0] == "x"


def test_datetimes_from_iso_text():
    frame = enforce([col("datetime", "t")], split(["t"], [["2024-03-01T10:00:00"], [None]]))
    assert frame["t"].dtype == "datetime64[ns]" and frame["t"][0] == pd.Timestamp("2024-03-01 10:00")
    assert "timezone-aware" in refused([col("datetime", "t")], split(["t"], [["2024-03-01T10:00:00+02:00"]]))
    assert "not a datetime" in refused([col("datetime", "t")], split(["t"], [["soon"]]), code="BAD_REQUEST")


def test_binary_columns_are_base64_text():
    frame = enforce([col("binary", "b")], split(["b"], [["aGVsbG8="], [None]]))
    assert frame["b"].tolist() == [b"hello", None]
    assert "not base64" in refused([col("binary", "b")], split(["b"], [["not base64!"]]), code="BAD_REQUEST")


# -- tensors -------------------------------------------------------------------------------------------------


def test_an_unnamed_tensor_checks_shape_and_converts_exactly():
    spec = [tensor("float64", [-1, 2])]
    array = enforce(spec, {"inputs": [[1, 2], [3, 4]]})
    assert array.dtype == np.float64 and array.tolist() == [[1.0, 2.0], [3.0, 4.0]]
    assert np.isnan(enforce(spec, {"inputs": [[1.5, None]]})[0, 1])
    assert "shape (1, 3), but the signature declares (-1, 2)" in refused(spec, {"inputs": [[1.5, 2.5, 3.5]]})
    assert "shape (2,)" in refused(spec, {"inputs": [1.5, 2.5]})
    assert "holds text" in refused(spec, {"inputs": [["a", "b"]]})
    assert "named ones" in refused(spec, {"inputs": {"x": [[1.5, 2.5]]}})
    assert enforce(spec, split(["x", "y"], [[1.5, 2]])).tolist() == [[1.5, 2.0]]
    assert "(-1, 3)" in refused(spec, split(["x", "y", "z"], [[1.5, 2, 3]]))


def test_integer_tensors_take_whole_numbers_in_range():
    spec = [tensor("int32", [-1, 3])]
    assert enforce(spec, {"inputs": [[1.0, 2.0, 3.0]]}).dtype == np.int32
    assert "fractional" in refused(spec, {"inputs": [[1.5, 2.0, 3.0]]})
    assert "outside the range" in refused(spec, {"inputs": [[3_000_000_000, 2, 3]]})


def test_named_tensors():
    spec = [tensor("float32", [-1], "x"), tensor("int64", [-1, 2], "y")]
    both = enforce(spec, {"inputs": {"x": [1.5, 2.5], "y": [[1, 2], [3, 4]], "extra": [0]}})
    assert set(both) == {"x", "y"} and both["x"].dtype == np.float32 and both["y"].shape == (2, 2)
    from_rows = enforce(spec, {"instances": [{"x": 1.5, "y": [1, 2]}, {"x": 2.5, "y": [3, 4]}]})
    assert from_rows["y"].tolist() == [[1, 2], [3, 4]]
    assert "missing the required input(s) ['y']" in refused(spec, {"inputs": {"x": [1.5]}})
    assert "shape (1, 3)" in refused(spec, {"inputs": {"x": [1.5], "y": [[1, 2, 3]]}})
    framed = enforce(spec, split(["x", "y"], [[1.5, [1, 2]]]))
    assert framed["y"].tolist() == [[1, 2]]
    single = enforce([tensor("float64", [-1, 2], "only")], {"inputs": [[1.0, 2.0]]})
    assert list(single) == ["only"]


# -- params --------------------------------------------------------------------------------------------------

PARAMS = [
    {"name": "k", "type": "long", "default": 3, "shape": None},
    {"name": "t", "type": "double", "default": 0.5, "shape": None},
    {"name": "s", "type": "string", "default": "x", "shape": None},
    {"name": "arr", "type": "long", "default": [1, 2], "shape": [-1]},
    {"name": "flag", "type": "boolean", "default": False, "shape": None},
    {"name": "when", "type": "datetime", "default": "2024-01-01T00:00:00", "shape": None},
]


def params(given: dict[str, Any] | None) -> dict[str, Any] | None:
    return ParamsEnforcer(signature([col("double", "a")], PARAMS).params)(given)


def test_absent_params_take_their_defaults():
    assert params(None) == {"k": 3, "t": 0.5, "s": "x", "arr": [1, 2], "flag": False,
                            "when": datetime.datetime(2024, 1, 1)}


def test_params_are_converted_where_mlflow_allows():
    result = params({"k": 5, "t": 1, "arr": [7], "when": "2024-05-01", "s": None, "unknown": 1})
    assert result["k"] == 5 and result["t"] == 1.0 and isinstance(result["t"], float)
    assert result["arr"] == [7] and result["when"] == datetime.date(2024, 5, 1) and result["s"] is None
    assert "unknown" not in result


@pytest.mark.parametrize(
    ("name", "value", "why"),
    [("k", 5.5, "is not a long"), ("k", 5.0, "is not a long"), ("k", "5", "is not a long"),
     ("t", True, "is not a double"), ("s", 1, "is not a string"), ("flag", "true", "is not a boolean"),
     ("flag", 1, "is not a boolean"), ("arr", 3, "expected a flat list"), ("arr", [[1]], "expected a flat list"),
     ("arr", [1.5], "is not a long"), ("k", [1], "expected a single value"), ("when", "soon", "not a date")],
)
def test_wrong_params_are_refused(name, value, why):
    with pytest.raises(SignatureError) as caught:
        params({name: value})
    assert caught.value.status_code == 400 and caught.value.error_code == "INVALID_PARAMETER_VALUE"
    assert f"'{name}'" in caught.value.message and why in caught.value.message


def test_every_wrong_param_is_reported_at_once():
    with pytest.raises(SignatureError) as caught:
        params({"k": 5.5, "s": 2})
    assert "'k'" in caught.value.message and "'s'" in caught.value.message


def test_without_a_params_schema_params_are_ignored():
    assert ParamsEnforcer(None)({"anything": 1}) is None
