"""Codecs for the MLflow scoring protocol: exact request JSON, server-side validation, content types,
DataFrame dtype round trips, response encoding and decoding."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import orjson
import pandas as pd
import pandas.testing as pdt
import pytest

from deployflow import jsoncodec, payloads
from deployflow.errors import InvalidInputError, RemoteError
from deployflow.payloads import (
    CONTENT_TYPE_CSV,
    CONTENT_TYPE_JSON,
    DecodedRequest,
    UnsupportedMediaTypeError,
    check_content_type,
    dataframe_to_split,
    decode_request,
    decode_response,
    encode_request,
    encode_response,
    split_to_dataframe,
)
from deployflow.predictions import PredictionsResponse


@pytest.fixture(params=[True, False], ids=["block-manager", "public-api"])
def column_route(request, monkeypatch):
    """Run a test through both ways of reading columns: they must give the same bytes."""
    monkeypatch.setattr(jsoncodec, "_USE_BLOCK_MANAGER", request.param)
    return request.param


def body_of(inputs, params=None):
    body, content_type = encode_request(inputs, params)
    assert content_type == CONTENT_TYPE_JSON
    return body


def test_importing_the_codecs_loads_neither_pandas_nor_numpy():
    code = (
        "import sys, deployflow.predictions, deployflow.payloads;"
        "assert 'pandas' not in sys.modules, 'pandas imported';"
        "assert 'numpy' not in sys.modules, 'numpy imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_encoding_plain_python_inputs_does_not_import_pandas():
    code = (
        "import sys; from deployflow.payloads import encode_request, decode_response;"
        "encode_request({'inputs': [[1, 2]]}, params={'k': 1}); encode_request([1, 2]);"
        "encode_request({'a': [1]}); decode_response(b'{\"predictions\": [1]}');"
        "assert 'pandas' not in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


# -- encode_request: every input form and its exact JSON ---------------------------------------------


def test_numeric_frame_is_dataframe_split_without_default_index(column_route):
    frame = pd.DataFrame({"a": [1, 2], "b": [3, 4]})
    assert body_of(frame) == b'{"dataframe_split":{"columns":["a","b"],"data":[[1,3],[2,4]]}}'


def test_float_frame_keeps_whole_numbers_as_floats(column_route):
    frame = pd.DataFrame({"x": [1.0, 2.5], "y": [np.nan, np.inf]})
    assert body_of(frame) == b'{"dataframe_split":{"columns":["x","y"],"data":[[1.0,null],[2.5,null]]}}'


def test_mixed_int_and_float_columns_keep_their_own_types(column_route):
    frame = pd.DataFrame({"i": [1, 2], "f": [1.0, 2.0]})
    assert body_of(frame) == b'{"dataframe_split":{"columns":["i","f"],"data":[[1,1.0],[2,2.0]]}}'


def test_float32_and_uint8_frames(column_route):
    assert body_of(pd.DataFrame({"a": np.array([0.1, 2], dtype=np.float32)})) == (
        b'{"dataframe_split":{"columns":["a"],"data":[[0.1],[2.0]]}}'
    )
    assert body_of(pd.DataFrame({"a": np.array([255, 0], dtype=np.uint8)})) == (
        b'{"dataframe_split":{"columns":["a"],"data":[[255],[0]]}}'
    )


def test_mixed_frame_exact_json(column_route):
    frame = pd.DataFrame(
        {
            "n": [1, 2],
            "x": [0.5, np.nan],
            "s": ["red", None],
            "t": pd.to_datetime(["2024-01-01 10:00", None], format="ISO8601"),
            "c": pd.Categorical(["low", None]),
            "b": [True, False],
            "ni": pd.array([7, None], dtype="Int64"),
            "tz": pd.to_datetime(["2024-06-01 12:00", "2024-01-01"], format="ISO8601").tz_localize(
                "Europe/Paris"
            ),
            "o": [np.int64(3), pd.Timestamp("2024-02-03")],
        }
    )
    assert body_of(frame) == (
        b'{"dataframe_split":{"columns":["n","x","s","t","c","b","ni","tz","o"],"data":['
        b'[1,0.5,"red","2024-01-01T10:00:00","low",true,7,"2024-06-01T12:00:00+02:00",3],'
        b'[2,null,null,null,null,false,null,"2024-01-01T00:00:00+01:00","2024-02-03T00:00:00"]]}}'
    )


def test_datetimes_keep_sub_second_precision(column_route):
    frame = pd.DataFrame(
        {
            "ms": pd.to_datetime(["2024-01-01 00:00:00.250", "2024-01-01"], format="ISO8601"),
            "ns": pd.to_datetime(["2024-01-01 00:00:00.000000001"], format="ISO8601")
            .astype("datetime64[ns]")
            .repeat(2),
        }
    )
    assert body_of(frame) == (
        b'{"dataframe_split":{"columns":["ms","ns"],"data":['
        b'["2024-01-01T00:00:00.250000","2024-01-01T00:00:00.000000001"],'
        b'["2024-01-01T00:00:00","2024-01-01T00:00:00.000000001"]]}}'
    )


def test_datetimes_outside_python_range_and_coarse_units(column_route):
    frame = pd.DataFrame(
        {
            "far": np.array(["12000-01-01T00:00:00", "NaT"], dtype="datetime64[s]"),
            "day": np.array(["2024-02-29", "1970-01-01"], dtype="datetime64[D]"),
            "ns_whole": np.array(["2024-01-01T00:00:01.5", "NaT"], dtype="datetime64[ns]"),
        }
    )
    assert body_of(frame) == (
        b'{"dataframe_split":{"columns":["far","day","ns_whole"],"data":['
        b'["12000-01-01T00:00:00","2024-02-29T00:00:00","2024-01-01T00:00:01.500000"],'
        b'[null,"1970-01-01T00:00:00",null]]}}'
    )


def test_timedelta_bytes_and_decimal_values(column_route):
    import decimal

    frame = pd.DataFrame(
        {
            "d": pd.to_timedelta([90, None], unit="s"),
            "raw": [b"\x00\x01", None],
            "m": [decimal.Decimal("1.5"), 2],
        }
    )
    assert json.loads(body_of(frame)) == {
        "dataframe_split": {
            "columns": ["d", "raw", "m"],
            "data": [["P0DT0H1M30S", "AAE=", 1.5], [None, None, 2]],
        }
    }


def test_meaningful_index_is_sent(column_route):
    frame = pd.DataFrame({"a": [1, 2]}, index=["x", "y"])
    assert body_of(frame) == b'{"dataframe_split":{"columns":["a"],"data":[[1],[2]],"index":["x","y"]}}'
    sliced = pd.DataFrame({"a": [1, 2, 3]}).iloc[1:]
    assert body_of(sliced) == b'{"dataframe_split":{"columns":["a"],"data":[[2],[3]],"index":[1,2]}}'
    dated = pd.DataFrame({"a": [1]}, index=pd.to_datetime(["2024-03-01"]))
    assert (
        body_of(dated)
        == b'{"dataframe_split":{"columns":["a"],"data":[[1]],"index":["2024-03-01T00:00:00"]}}'
    )


def test_empty_frames(column_route):
    assert body_of(pd.DataFrame({"a": []})) == b'{"dataframe_split":{"columns":["a"],"data":[]}}'
    assert body_of(pd.DataFrame(index=range(2))) == b'{"dataframe_split":{"columns":[],"data":[[],[]]}}'


def test_frame_with_integer_column_names(column_route):
    assert body_of(pd.DataFrame([[1.5, 2.5]])) == b'{"dataframe_split":{"columns":[0,1],"data":[[1.5,2.5]]}}'


def test_series_is_sent_as_a_one_column_frame(column_route):
    assert body_of(pd.Series([1, 2], name="age")) == (
        b'{"dataframe_split":{"columns":["age"],"data":[[1],[2]]}}'
    )
    assert body_of(pd.Series([1.5, None])) == b'{"dataframe_split":{"columns":[0],"data":[[1.5],[null]]}}'


def test_ndarray_is_sent_as_inputs():
    assert body_of(np.array([[1, 2], [3, 4]])) == b'{"inputs":[[1,2],[3,4]]}'
    assert body_of(np.array([0.5, np.nan])) == b'{"inputs":[0.5,null]}'
    assert body_of(np.array([True, False])) == b'{"inputs":[true,false]}'


def test_non_contiguous_and_unusual_arrays():
    assert body_of(np.array([[1, 2], [3, 4]]).T) == b'{"inputs":[[1,3],[2,4]]}'
    assert body_of(np.arange(6).reshape(2, 3)[:, ::2]) == b'{"inputs":[[0,2],[3,5]]}'
    assert body_of(np.array([1, 2], dtype=np.float16)) == b'{"inputs":[1.0,2.0]}'
    assert body_of(np.array(["a", "b"])) == b'{"inputs":["a","b"]}'
    assert body_of(np.array([1, "a", None], dtype=object)) == b'{"inputs":[1,"a",null]}'
    # orjson would write NaT as a date in 1677; it must be null
    assert body_of(np.array(["2024-01-01", "NaT"], dtype="datetime64[ns]")) == (
        b'{"inputs":["2024-01-01T00:00:00",null]}'
    )


def test_dict_of_named_tensors_is_sent_as_inputs():
    body = body_of({"image": np.array([[1, 2]]), "caption": ["a cat"], "k": np.int32(3)})
    assert body == b'{"inputs":{"image":[[1,2]],"caption":["a cat"],"k":3}}'


@pytest.mark.parametrize("key", payloads.INPUT_KEYS)
def test_dict_holding_one_input_key_is_sent_as_is(key):
    value = {"data": [[1]]} if key == "dataframe_split" else [1, 2]
    assert json.loads(body_of({key: value})) == {key: value}


def test_params_are_merged_into_a_prebuilt_payload():
    body = body_of({"inputs": [1], "params": {"a": 1, "b": 2}}, params={"b": 3, "c": np.float64(0.5)})
    assert body == b'{"inputs":[1],"params":{"a":1,"b":3,"c":0.5}}'


def test_params_are_added_for_every_input_form():
    assert (
        body_of([[1, 2]], params={"temperature": 0.1}) == b'{"inputs":[[1,2]],"params":{"temperature":0.1}}'
    )
    frame_body = body_of(pd.DataFrame({"a": [1]}), params={"k": "v"})
    assert frame_body == b'{"dataframe_split":{"columns":["a"],"data":[[1]]},"params":{"k":"v"}}'


def test_dict_with_two_input_keys_is_refused():
    with pytest.raises(InvalidInputError, match="several"):
        encode_request({"inputs": [1], "instances": [1]})


def test_prebuilt_payload_with_non_dict_params_is_refused():
    with pytest.raises(InvalidInputError, match="params must be a dict"):
        encode_request({"inputs": [1], "params": [1, 2]})


def test_lists_and_tuples_are_sent_as_inputs():
    assert body_of([1, 2, 3]) == b'{"inputs":[1,2,3]}'
    assert body_of((1, 2)) == b'{"inputs":[1,2]}'
    assert body_of([np.int64(1), np.float32(0.5), "x", None]) == b'{"inputs":[1,0.5,"x",null]}'
    assert body_of([]) == b'{"inputs":[]}'


def test_json_object_string_is_sent_untouched():
    text = '{"dataframe_records": [{"a": 1}]}'
    assert encode_request(text) == (text.encode(), CONTENT_TYPE_JSON)
    assert encode_request(text.encode()) == (text.encode(), CONTENT_TYPE_JSON)


def test_json_object_string_gets_params_merged():
    body, content_type = encode_request('{"inputs": [1], "params": {"a": 1}}', params={"b": 2})
    assert (body, content_type) == (b'{"inputs":[1],"params":{"a":1,"b":2}}', CONTENT_TYPE_JSON)


def test_other_strings_are_csv():
    csv_text = "a,b\n1,2\n"
    assert encode_request(csv_text) == (b"a,b\n1,2\n", CONTENT_TYPE_CSV)
    assert encode_request(b"a\n1\n") == (b"a\n1\n", CONTENT_TYPE_CSV)
    # a one-column CSV whose header is a number is valid JSON too, but not an object: still CSV
    assert encode_request("5\n6\n") == (b"5\n6\n", CONTENT_TYPE_CSV)


def test_csv_with_params_is_refused():
    with pytest.raises(InvalidInputError, match="CSV"):
        encode_request("a\n1\n", params={"k": 1})


def test_json_list_string_is_refused():
    with pytest.raises(InvalidInputError, match="object"):
        encode_request("[[1, 2]]")


def test_broken_json_object_string_is_refused_not_sent_as_csv():
    with pytest.raises(InvalidInputError, match="do not parse"):
        encode_request('{"inputs": [1,')


@pytest.mark.parametrize("inputs", [42, 1.5, None, object(), {1, 2}])
def test_unsupported_input_types_are_refused(inputs):
    with pytest.raises(InvalidInputError, match="Cannot send inputs of type"):
        encode_request(inputs)


def test_unserialisable_values_are_an_invalid_input_error():
    with pytest.raises(InvalidInputError, match="cannot be written as JSON"):
        encode_request([object()])


def test_params_must_be_a_dict():
    with pytest.raises(InvalidInputError, match="params must be a dict"):
        encode_request([1], params=[("a", 1)])


# -- decode_request: validation as MLflow's scoring server ------------------------------------------


def assert_bad_request(body, match, content_type="application/json"):
    with pytest.raises(InvalidInputError, match=match) as caught:
        decode_request(body, content_type)
    assert not isinstance(caught.value, UnsupportedMediaTypeError)
    assert caught.value.error_code == "BAD_REQUEST"
    assert caught.value.status_code == 400
    return caught.value


def test_malformed_json_is_bad_request():
    error = assert_bad_request(b'{"inputs": [1, 2', "not valid JSON")
    assert error.body and error.body.startswith('{"inputs"')


def test_invalid_utf8_is_bad_request():
    assert_bad_request(b'{"inputs": ["\xff"]}', "not valid JSON")


def test_list_body_is_bad_request():
    assert_bad_request(b"[[1, 2]]", "exactly one of the keys.*Received a list")


@pytest.mark.parametrize("body", [b"42", b'"text"', b"null", b"true"])
def test_scalar_body_is_bad_request(body):
    assert_bad_request(body, "exactly one of the keys")


def test_zero_input_keys_is_bad_request():
    assert_bad_request(b"{}", r"exactly one of the keys.*keys \[\]")
    assert_bad_request(b'{"data": [1], "params": {}}', "exactly one of the keys.*'data', 'params'")


def test_two_input_keys_is_bad_request():
    assert_bad_request(b'{"inputs": [1], "instances": [1]}', "exactly one of the keys.*'inputs', 'instances'")


@pytest.mark.parametrize("value", [b"[[1, 2]]", b'"a"', b"3"])
def test_dataframe_split_not_an_object_is_bad_request(value):
    assert_bad_request(b'{"dataframe_split": ' + value + b"}", "'dataframe_split' must be a JSON object")


def test_dataframe_split_fields_are_checked():
    assert_bad_request(b'{"dataframe_split": {"columns": ["a"]}}', "must have a 'data' field")
    assert_bad_request(
        b'{"dataframe_split": {"data": [[1]], "dtype": "x"}}', "must have a 'data' field.*'dtype'"
    )


def test_dataframe_split_with_wrong_shape_is_bad_request():
    assert_bad_request(b'{"dataframe_split": {"columns": ["a", "b"], "data": [[1, 2, 3]]}}', "split orient")
    assert_bad_request(b'{"dataframe_split": {"data": [[1]], "index": [1, 2]}}', "split orient")


@pytest.mark.parametrize("value", [b'{"a": [1]}', b'"a"', b"1"])
def test_dataframe_records_not_a_list_is_bad_request(value):
    assert_bad_request(b'{"dataframe_records": ' + value + b"}", "'dataframe_records' must be a list")


@pytest.mark.parametrize("params", [b"[1, 2]", b'"fast"', b"3", b"true"])
def test_params_not_an_object_is_bad_request(params):
    assert_bad_request(b'{"inputs": [1], "params": ' + params + b"}", "'params' must be a JSON object")


def test_instances_with_columns_of_different_lengths_is_bad_request():
    assert_bad_request(b'{"instances": {"a": [1, 2], "b": [1]}}', "same number of values")
    assert_bad_request(b'{"instances": [{"a": 1, "b": 2}, {"a": 3}]}', "same number of values")


def test_instances_mixing_objects_and_values_is_bad_request():
    assert_bad_request(b'{"instances": [{"a": 1}, 2]}', "mixes objects")


# -- decode_request: what comes out --------------------------------------------------------------------


def test_split_decodes_to_a_frame_with_inferred_dtypes():
    request = decode_request(
        b'{"dataframe_split": {"columns": ["i", "f", "s", "b"], '
        b'"data": [[1, 1.5, "x", true], [2, 2.0, "y", false]]}}',
        "application/json",
    )
    assert isinstance(request, DecodedRequest)
    assert request.input_key == "dataframe_split" and request.params is None
    expected = pd.DataFrame({"i": [1, 2], "f": [1.5, 2.0], "s": ["x", "y"], "b": [True, False]})
    pdt.assert_frame_equal(request.data, expected)


def test_split_with_index_and_without_columns():
    frame = decode_request(
        b'{"dataframe_split": {"index": ["r1"], "data": [[1, 2]]}}', "application/json"
    ).data
    pdt.assert_frame_equal(frame, pd.DataFrame([[1, 2]], index=["r1"]))


@pytest.mark.parametrize(
    "rows",
    [
        [[1, 2], [3, 4]],  # all ints: the fast path
        [[1.5, 2.0], [3.0, 4.25]],  # all floats: the fast path
        [[True, False], [False, False]],  # all booleans: the fast path
        [[1, 2.5], [3, 4.5]],  # int column beside float column: pandas infers per column
        [[1, True], [2, False]],  # int beside bool
        [[1.5, None], [2.5, 1.0]],  # nulls
        [[1, 2], [3]],  # ragged rows
        [[2**63 + 1, 1], [1, 1]],  # beyond int64
        [[[1, 2], 3], [[4], 5]],  # nested values
    ],
)
@pytest.mark.filterwarnings("ignore:Constructing a DataFrame from a list of sequences with mismatched")
def test_split_fast_path_matches_pandas(rows):
    columns = ["a", "b"]
    body = orjson.dumps({"dataframe_split": {"columns": columns, "data": rows}})
    decoded = decode_request(body, "application/json").data
    pdt.assert_frame_equal(decoded, pd.DataFrame(rows, columns=columns))


def test_numeric_split_frames_are_writable_and_independent():
    body = b'{"dataframe_split": {"columns": ["a", "b"], "data": [[1.0, 2.0]]}}'
    first = decode_request(body, "application/json").data
    second = decode_request(body, "application/json").data
    first.loc[0, "a"] = 9.0
    assert second.loc[0, "a"] == 1.0
    assert first.columns.equals(second.columns)


def test_records_decode_to_a_frame():
    request = decode_request(
        b'{"dataframe_records": [{"a": 1, "b": "x"}, {"a": 2, "b": null}]}', "application/json"
    )
    assert request.input_key == "dataframe_records"
    pdt.assert_frame_equal(request.data, pd.DataFrame([{"a": 1, "b": "x"}, {"a": 2, "b": None}]))


def test_inputs_of_numbers_become_numpy():
    data = decode_request(b'{"inputs": [[1, 2], [3, 4]]}', "application/json").data
    assert isinstance(data, np.ndarray) and data.dtype == np.int64 and data.shape == (2, 2)
    data = decode_request(b'{"inputs": [0.5, 1]}', "application/json").data
    assert isinstance(data, np.ndarray) and data.dtype == np.float64


def test_inputs_of_strings_or_objects_stay_lists():
    assert decode_request(b'{"inputs": ["a", "b"]}', "application/json").data == ["a", "b"]
    assert decode_request(b'{"inputs": [1, "a"]}', "application/json").data == [1, "a"]
    assert decode_request(b'{"inputs": [1, null]}', "application/json").data == [1, None]
    assert decode_request(b'{"inputs": [[1, 2], [3]]}', "application/json").data == [[1, 2], [3]]
    chat = {"messages": [{"role": "user", "content": "hi"}]}
    assert decode_request(orjson.dumps({"inputs": chat}), "application/json").data == chat
    assert decode_request(b'{"inputs": "hello"}', "application/json").data == "hello"


def test_inputs_dict_becomes_dict_of_tensors():
    request = decode_request(
        b'{"inputs": {"x": [1.5, 2.5], "name": ["a", "b"], "k": 3}, "params": {"t": 1}}', "application/json"
    )
    assert request.input_key == "inputs" and request.params == {"t": 1}
    np.testing.assert_array_equal(request.data["x"], np.array([1.5, 2.5]))
    assert request.data["name"] == ["a", "b"] and request.data["k"] == 3


def test_instances_records_become_columns():
    request = decode_request(b'{"instances": [{"a": 1, "b": "x"}, {"a": 2, "b": "y"}]}', "application/json")
    assert request.input_key == "instances"
    np.testing.assert_array_equal(request.data["a"], np.array([1, 2]))
    assert request.data["b"] == ["x", "y"]


def test_instances_tensor():
    data = decode_request(b'{"instances": [[1, 2]]}', "application/json").data
    np.testing.assert_array_equal(data, np.array([[1, 2]]))


def test_null_params_and_unknown_keys_are_accepted():
    request = decode_request(b'{"inputs": [1], "params": null, "signature_name": "x"}', "application/json")
    assert request.params is None
    np.testing.assert_array_equal(request.data, np.array([1]))


def test_str_body_is_accepted():
    assert decode_request('{"inputs": ["é"]}', "application/json").data == ["é"]


# -- content types --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("content_type", "expected"),
    [
        ("application/json", CONTENT_TYPE_JSON),
        ("application/json; charset=utf-8", CONTENT_TYPE_JSON),
        ("application/json;charset=UTF-8", CONTENT_TYPE_JSON),
        ('Application/JSON; Charset="utf-8"', CONTENT_TYPE_JSON),
        ("text/csv", CONTENT_TYPE_CSV),
        ("TEXT/CSV; charset=utf-8", CONTENT_TYPE_CSV),
        ("application/json;", CONTENT_TYPE_JSON),
    ],
)
def test_accepted_content_types(content_type, expected):
    assert check_content_type(content_type) == expected


@pytest.mark.parametrize(
    ("content_type", "match"),
    [
        ("application/json; charset=latin-1", "only accepts UTF-8"),
        ("text/csv; charset=ISO-8859-1", "only accepts UTF-8"),
        ("application/json; format=pandas-split", "Unrecognised Content-Type parameters: format"),
        ("application/json; charset=utf-8; boundary=x", "parameters: boundary"),
        ("text/plain", "Unsupported Content-Type 'text/plain'"),
        ("application/x-www-form-urlencoded", "Unsupported Content-Type"),
        ("application/jsonl", "Unsupported Content-Type"),
        ("", "no Content-Type"),
        (None, "no Content-Type"),
        # MLflow checks the charset first, then parameters, then the type
        ("text/plain; charset=latin-1", "only accepts UTF-8"),
    ],
)
def test_rejected_content_types_are_415(content_type, match):
    with pytest.raises(UnsupportedMediaTypeError, match=match) as caught:
        decode_request(b'{"inputs": [1]}', content_type)
    assert caught.value.status_code == 415
    assert caught.value.error_code != "BAD_REQUEST"
    assert isinstance(caught.value, InvalidInputError)


# -- CSV ----------------------------------------------------------------------------------------------


def test_csv_decodes_to_a_frame():
    request = decode_request(b"a,b,c\n1,2.5,x\n3,,y\n", "text/csv; charset=utf-8")
    assert request.input_key == "csv" and request.params is None
    pdt.assert_frame_equal(request.data, pd.DataFrame({"a": [1, 3], "b": [2.5, np.nan], "c": ["x", "y"]}))


def test_csv_written_by_pandas_round_trips():
    frame = pd.DataFrame({"a": [1, 2], "b": ["p", "q"]})
    body, content_type = encode_request(frame.to_csv(index=False))
    assert content_type == CONTENT_TYPE_CSV
    pdt.assert_frame_equal(decode_request(body, content_type).data, frame)


@pytest.mark.parametrize("body", [b"", b'a,b\n1,"2\n'])
def test_bad_csv_is_bad_request(body):
    assert_bad_request(body, "not a valid CSV", content_type="text/csv")


# -- DataFrame dtype round trip -------------------------------------------------------------------------


def typed_frame() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "int": np.array([1, -2, 2**53 + 1], dtype=np.int64),
            "float": [1.0, 2.0, 3.0],  # whole numbers must stay floats
            "float_nan": [0.1, np.nan, -1e300],
            "bool": [True, False, True],
            "str": ["a", None, "é"],
            "object": pd.Series(["x", 1, None], dtype=object),
            "when": pd.to_datetime(["2024-01-01", None, "1999-12-31 23:59:59.123456"], format="ISO8601"),
            "when_ns": pd.to_datetime(
                ["2024-01-01T00:00:00.000000001", "2024-01-02", None], format="ISO8601"
            ).astype("datetime64[ns]"),
            "when_tz": pd.to_datetime(["2024-07-01 08:00", "2024-01-01", None], format="ISO8601").tz_localize(
                "America/New_York"
            ),
            "category": pd.Categorical(["lo", "hi", None], categories=["lo", "hi"]),
            "nullable_int": pd.array([1, None, 3], dtype="Int64"),
            "nullable_bool": pd.array([True, None, False], dtype="boolean"),
            "small": np.array([1, 2, 3], dtype=np.int16),
            "f32": np.array([0.5, 1.25, -2], dtype=np.float32),
            "delta": pd.to_timedelta([1.5, None, 3600], unit="s"),
        }
    )


def test_dtype_round_trip_through_split(column_route):
    frame = typed_frame()
    split = dataframe_to_split(frame)
    # plain JSON values only: the standard library can write it
    assert json.loads(json.dumps(split)) == split
    pdt.assert_frame_equal(split_to_dataframe(split, frame.dtypes), frame)


@pytest.mark.parametrize(
    "content_type, body",
    [
        (CONTENT_TYPE_JSON, b'{"dataframe_split": {"columns": ["flag", "gap", "n"], "data": [[true, null, 1], [null, null, 2]]}}'),
        (CONTENT_TYPE_JSON, b'{"dataframe_records": [{"flag": true, "gap": null, "n": 1}, {"flag": null, "n": 2}]}'),
        (CONTENT_TYPE_CSV, b"flag,gap,n\nTrue,,1\n,,2\n"),
    ],
    ids=["split", "records", "csv"],
)
def test_booleans_with_nulls_and_columns_of_nulls_are_rebuilt(content_type, body):
    # pandas alone would make both object columns of None; the server gives what a model can score:
    # the nullable boolean dtype, and a float column of NaN.
    frame = decode_request(body, content_type).data
    assert str(frame["flag"].dtype) == "boolean"
    assert frame["flag"].tolist() == [True, pd.NA]
    assert frame["gap"].dtype == np.float64 and frame["gap"].isna().all()
    assert frame["n"].dtype == np.int64


def test_what_a_callers_frame_becomes_on_the_server(column_route):
    # The table in the payloads module docstring, row by row.
    frame = pd.DataFrame(
        {
            "int": [1, 2, 3],
            "float": [0.5, np.nan, 1.0],
            "bool": [True, False, True],
            "nullable_int": pd.array([1, 2, 3], dtype="Int64"),
            "nullable_int_gap": pd.array([1, None, 3], dtype="Int64"),
            "nullable_bool": pd.array([True, False, True], dtype="boolean"),
            "nullable_bool_gap": pd.array([True, None, False], dtype="boolean"),
            "text": ["a", "b", None],
            "category": pd.Categorical(["lo", "hi", "lo"]),
            "when": pd.to_datetime(["2024-01-01", "2024-01-02", "2024-01-03"]),
        }
    )
    rebuilt = decode_request(body_of(frame), CONTENT_TYPE_JSON).data
    dtypes = {name: str(dtype) for name, dtype in rebuilt.dtypes.items()}
    assert dtypes["int"] == "int64" and dtypes["float"] == "float64" and dtypes["bool"] == "bool"
    assert dtypes["nullable_int"] == "int64" and dtypes["nullable_int_gap"] == "float64"
    assert dtypes["nullable_bool"] == "bool" and dtypes["nullable_bool_gap"] == "boolean"
    assert rebuilt["nullable_int_gap"].isna().tolist() == [False, True, False]
    for name in ("text", "category", "when"):
        assert not isinstance(rebuilt[name].dtype, (pd.CategoricalDtype, pd.DatetimeTZDtype))
        assert rebuilt[name].dtype.kind == "O", name  # pandas' string dtype, or object on pandas 2
    assert rebuilt["category"].tolist() == ["lo", "hi", "lo"]
    assert rebuilt["when"].tolist() == ["2024-01-01T00:00:00", "2024-01-02T00:00:00", "2024-01-03T00:00:00"]


def test_other_object_columns_are_left_as_pandas_reads_them():
    body = b'{"dataframe_split": {"columns": ["mixed", "text"], "data": [[1, "a"], ["x", null], [null, "c"]]}}'
    frame = decode_request(body, CONTENT_TYPE_JSON).data
    assert frame["mixed"].dtype == object and frame["mixed"].tolist() == [1, "x", None]
    assert frame["text"].tolist()[::2] == ["a", "c"] and pd.isna(frame["text"].iloc[1])


def test_dtype_round_trip_through_the_wire(column_route):
    frame = typed_frame()
    body = body_of(frame)
    decoded = decode_request(body, CONTENT_TYPE_JSON).data
    pdt.assert_frame_equal(split_to_dataframe(orjson.loads(body)["dataframe_split"], frame.dtypes), frame)
    # without dtypes, what JSON can say survives: ints, floats (1.0 stays float), bools, strings
    for name in ("int", "float", "float_nan", "bool"):
        assert decoded[name].dtype == frame[name].dtype, name
    assert decoded["when"].iloc[0] == "2024-01-01T00:00:00" and pd.isna(decoded["when"].iloc[1])


def test_round_trip_with_meaningful_index(column_route):
    frame = pd.DataFrame({"a": [1.5, 2.5]}, index=["r1", "r2"])
    pdt.assert_frame_equal(split_to_dataframe(dataframe_to_split(frame)), frame)


def test_dtypes_given_as_a_dict_and_for_some_columns_only():
    frame = split_to_dataframe(
        {"columns": ["t", "n"], "data": [["2024-01-01T00:00:00", 1]]},
        {"t": "datetime64[ns]", "missing": "int64"},
    )
    assert frame["t"].dtype == "datetime64[ns]" and frame["n"].dtype == np.int64


def test_uncastable_column_is_bad_request():
    with pytest.raises(InvalidInputError, match="Column 'a' cannot be converted") as caught:
        split_to_dataframe({"columns": ["a"], "data": [["x"]]}, {"a": "int64"})
    assert caught.value.error_code == "BAD_REQUEST"


def test_nulls_are_not_silently_cast_to_false():
    with pytest.raises(InvalidInputError, match="nulls"):
        split_to_dataframe({"columns": ["a"], "data": [[True], [None]]}, {"a": "bool"})


def test_dataframe_to_split_refuses_other_types():
    with pytest.raises(InvalidInputError, match="expects a pandas DataFrame"):
        dataframe_to_split({"a": [1]})


def test_split_to_dataframe_validates_like_the_server():
    with pytest.raises(InvalidInputError, match="must have a 'data' field"):
        split_to_dataframe({"columns": ["a"]})


# -- responses -------------------------------------------------------------------------------------------


def test_encode_response_forms():
    assert encode_response(np.array([0, 1])) == b'{"predictions":[0,1]}'
    # non-finite numbers as MLflow's server writes them (Python's json): bare NaN and Infinity tokens
    assert encode_response(np.array([[0.5, np.nan]])) == b'{"predictions":[[0.5,NaN]]}'
    assert encode_response([np.inf, -np.inf, None]) == b'{"predictions":[Infinity,-Infinity,null]}'
    assert encode_response(np.arange(4).reshape(2, 2)[:, 0]) == b'{"predictions":[0,2]}'
    assert encode_response([1, "a", None]) == b'{"predictions":[1,"a",null]}'
    assert encode_response("text") == b'{"predictions":"text"}'
    assert encode_response(np.float32(0.25)) == b'{"predictions":0.25}'
    assert encode_response(3) == b'{"predictions":3}'
    assert encode_response({"label": np.array(["a", "b"]), "score": np.array([0.5, 0.25])}) == (
        b'{"predictions":{"label":["a","b"],"score":[0.5,0.25]}}'
    )
    assert encode_response(np.array(["2024-01-01", "NaT"], dtype="datetime64[s]")) == (
        b'{"predictions":["2024-01-01T00:00:00",null]}'
    )


def test_encode_response_frame_and_series_are_records(column_route):
    frame = pd.DataFrame(
        {"label": ["a", "b"], "score": [0.5, np.nan], "t": pd.to_datetime(["2024-01-01", None])}
    )
    assert encode_response(frame) == (
        b'{"predictions":[{"label":"a","score":0.5,"t":"2024-01-01T00:00:00"},'
        b'{"label":"b","score":NaN,"t":null}]}'
    )
    # as MLflow's server does: a Series becomes records of a one-column frame
    assert encode_response(pd.Series([1, 2], name="y")) == b'{"predictions":[{"y":1},{"y":2}]}'
    assert encode_response(pd.Series([1, 2])) == b'{"predictions":[{"0":1},{"0":2}]}'


def test_response_round_trip():
    response = decode_response(encode_response(np.array([[0.1, 0.9]])))
    assert isinstance(response, PredictionsResponse)
    assert response == {"predictions": [[0.1, 0.9]]}
    np.testing.assert_array_equal(response.get_predictions("ndarray"), np.array([[0.1, 0.9]]))


def test_decode_response_forms():
    assert decode_response(b'{"predictions": [1], "id": "x"}') == {"predictions": [1], "id": "x"}
    assert decode_response(b"[1, 2]") == {"predictions": [1, 2]}
    assert decode_response("0.5") == {"predictions": 0.5}
    other = decode_response(b'{"choices": [{"text": "hi"}]}')
    assert type(other) is PredictionsResponse and other == {"choices": [{"text": "hi"}]}


def test_decode_response_invalid_json_is_a_remote_error_with_an_excerpt():
    body = b"<html><body>Bad gateway</body></html>" + b" " * 1000 + b"tail"
    with pytest.raises(RemoteError, match="not JSON") as caught:
        decode_response(body)
    assert "Bad gateway" in str(caught.value)
    assert "tail" not in str(caught.value)
    assert caught.value.body is not None and caught.value.body.startswith("<html>")


def test_unsupported_media_type_error_shape():
    error = UnsupportedMediaTypeError("nope")
    assert error.status_code == 415 and error.error_code == "UNSUPPORTED_MEDIA_TYPE"
    assert isinstance(error, InvalidInputError)
