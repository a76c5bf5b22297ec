"""The V2 tensor codec (deployflow.openinference), shared by the v2 target and the local server's V2 routes."""

from __future__ import annotations

import json
import struct

import numpy as np
import pandas as pd
import pytest
from deployflow import InvalidInputError
from deployflow import openinference as codec
from deployflow.jsoncodec import dumps


def wire(value):
    """What a peer reads: the value through the JSON codec and back."""
    return json.loads(dumps(value))


@pytest.mark.parametrize(
    ("dtype", "datatype"),
    [("bool", "BOOL"), ("uint8", "UINT8"), ("uint16", "UINT16"), ("uint32", "UINT32"), ("uint64", "UINT64"),
     ("int8", "INT8"), ("int16", "INT16"), ("int32", "INT32"), ("int64", "INT64"), ("float32", "FP32"),
     ("float64", "FP64")],
)
def test_every_json_datatype_round_trips_with_its_shape(dtype, datatype):
    array = np.arange(6).reshape(2, 3).astype(dtype)
    tensor = wire(codec.encode_tensor("x", array))
    assert tensor["datatype"] == datatype and tensor["shape"] == [2, 3] and len(tensor["data"]) == 6
    back = codec.decode_tensor(tensor)
    assert back.dtype == np.dtype(dtype) and back.shape == (2, 3) and np.array_equal(back, array)


def test_text_travels_as_bytes_and_fp16_has_no_json_form():
    tensor = wire(codec.encode_tensor("t", np.array([["a", "é"], ["c", "d"]])))
    assert tensor["datatype"] == "BYTES" and tensor["data"] == ["a", "é", "c", "d"]
    assert codec.decode_tensor(tensor).tolist() == [["a", "é"], ["c", "d"]]
    assert wire(codec.encode_tensor("b", np.array([b"raw"], dtype=object)))["data"] == ["raw"]
    with pytest.raises(InvalidInputError, match="UTF-8"):
        codec.encode_tensor("b", np.array([b"\xff"], dtype=object))
    with pytest.raises(InvalidInputError, match="FP16"):
        codec.encode_tensor("h", np.ones(2, dtype=np.float16))
    with pytest.raises(InvalidInputError, match="FP16"):
        codec.decode_tensor({"name": "h", "datatype": "FP16", "shape": [1], "data": [1.0]})
    with pytest.raises(InvalidInputError, match="no V2 datatype"):
        codec.encode_tensor("d", np.array(["2024-01-01"], dtype="datetime64[D]"))


@pytest.mark.parametrize(
    ("tensor", "message"),
    [
        ({"name": "x", "datatype": "FP64", "shape": [2, 2], "data": [1, 2, 3]}, "needs 4 values"),
        ({"name": "x", "datatype": "INT64", "shape": [2], "data": [1.5, 2]}, "holds integers"),
        ({"name": "x", "datatype": "BOOL", "shape": [1], "data": [1]}, "true/false"),
        ({"name": "x", "datatype": "UINT8", "shape": [1], "data": [300]}, "does not fit"),
        ({"name": "x", "datatype": "FP32", "shape": [1], "data": ["a"]}, "holds numbers"),
        ({"name": "x", "datatype": "BYTES", "shape": [1], "data": [3]}, "holds strings"),
        ({"name": "x", "datatype": "COMPLEX", "shape": [1], "data": [1]}, "unknown datatype"),
        ({"name": "x", "datatype": "FP64", "shape": [-1], "data": [1]}, "non-negative"),
        ({"name": "", "datatype": "FP64", "shape": [1], "data": [1]}, "needs a 'name'"),
        ({"name": "x", "datatype": "FP64", "shape": [1]}, "no 'data'"),
        ({"name": "x", "datatype": "FP64", "shape": [2, 2], "data": [[1, 2], [3]]}, "regular array|needs 4"),
    ],
)
def test_tensors_that_break_the_rules_are_invalid_input(tensor, message):
    with pytest.raises(InvalidInputError, match=message):
        codec.decode_tensor(tensor)


def test_nested_data_and_null_for_nan_are_read():
    assert codec.decode_tensor({"name": "x", "datatype": "FP32", "shape": [2, 2], "data": [[1, 2], [3, 4]]}).tolist() == [[1, 2], [3, 4]]
    decoded = codec.decode_tensor({"name": "x", "datatype": "FP64", "shape": [2], "data": [1.0, None]})
    assert decoded[0] == 1.0 and np.isnan(decoded[1])
    assert wire(codec.encode_tensor("x", np.array([np.nan, 1.0])))["data"] == [None, 1.0]


def test_a_dataframe_is_one_input_per_column_with_the_pd_content_type():
    frame = pd.DataFrame({"a": [1.0, 2.0], "n": [1, 2], "s": ["x", "y"], "f": [True, False]})
    request = wire(codec.encode_request(frame))
    assert request["parameters"] == {"content_type": "pd"}
    assert [(t["name"], t["datatype"], t["shape"]) for t in request["inputs"]] == [
        ("a", "FP64", [2, 1]), ("n", "INT64", [2, 1]), ("s", "BYTES", [2, 1]), ("f", "BOOL", [2, 1])]
    assert request["inputs"][2]["parameters"] == {"content_type": "str"}
    decoded, parameters = codec.decode_request(request)
    assert parameters == {}
    pd.testing.assert_frame_equal(decoded, frame, check_dtype=False)
    assert list(decoded.dtypes) == list(frame.dtypes)  # text as pandas makes it from str values
    with pytest.raises(InvalidInputError, match="distinct column names"):
        codec.encode_request(pd.DataFrame([[1, 2]], columns=["a", "a"]))


def test_arrays_dicts_raw_requests_and_options():
    request = wire(codec.encode_request(np.ones((3, 2), dtype=np.float32), parameters={"k": 1}, outputs=["p"], request_id="r1"))
    assert request == {
        "inputs": [{"name": "input-0", "shape": [3, 2], "datatype": "FP32", "data": [1.0] * 6}],
        "parameters": {"content_type": "np", "k": 1}, "outputs": [{"name": "p"}], "id": "r1",
    }
    named = wire(codec.encode_request({"a": [1, 2], "b": np.array([[0.5]])}))
    assert [(t["name"], t["datatype"], t["shape"]) for t in named["inputs"]] == [("a", "INT64", [2]), ("b", "FP64", [1, 1])]
    decoded, _ = codec.decode_request(named)
    assert set(decoded) == {"a", "b"} and decoded["a"].tolist() == [1, 2]
    raw = {"inputs": [{"name": "x", "shape": [1], "datatype": "INT32", "data": [7]}], "id": "mine"}
    assert codec.encode_request(raw) == raw
    assert codec.decode_request(raw)[0].tolist() == [7]
    for bad in (None, "text", b"bytes", {}):
        with pytest.raises(InvalidInputError):
            codec.encode_request(bad)
    with pytest.raises(InvalidInputError, match="content_type"):
        codec.decode_request({"inputs": raw["inputs"], "parameters": {"content_type": "xml"}})
    with pytest.raises(InvalidInputError, match="non-empty list"):
        codec.decode_request({"inputs": []})


def test_binary_tensor_data_is_read():
    values = np.array([[1.5, -2.0]], dtype=np.float32)
    text = [b"ab", "é".encode()]
    strings = b"".join(struct.pack("<I", len(item)) + item for item in text)
    header = {"inputs": [
        {"name": "x", "datatype": "FP32", "shape": [1, 2], "parameters": {"binary_data_size": 8}},
        {"name": "s", "datatype": "BYTES", "shape": [2], "parameters": {"binary_data_size": len(strings)}},
        {"name": "h", "datatype": "FP16", "shape": [1], "parameters": {"binary_data_size": 2}},
    ]}
    binary = values.tobytes() + strings + np.array([0.5], dtype="<f2").tobytes()
    decoded, _ = codec.decode_request(header, binary)
    assert decoded["x"].tolist() == [[1.5, -2.0]] and decoded["s"].tolist() == ["ab", "é"]
    assert decoded["h"].dtype == np.float16 and decoded["h"].tolist() == [0.5]
    with pytest.raises(InvalidInputError, match="no input claims"):
        codec.decode_request(header, binary + b"\0")
    with pytest.raises(InvalidInputError, match="does not fit"):
        codec.decode_request(header, binary[:4])


def test_answers_become_predictions_by_name_reshaped():
    answer = wire(codec.encode_response(np.array([1, 0, 1]), model_name="m", model_version="2", request_id="r"))
    assert answer["outputs"] == [{"name": "predict", "shape": [3, 1], "datatype": "INT64", "data": [1, 0, 1]}]
    fields = codec.predictions_from_response(answer)
    assert fields["predictions"] == [1, 0, 1]
    assert fields["model_name"] == "m" and fields["model_version"] == "2" and fields["id"] == "r"
    several = wire(codec.encode_response({"p": np.ones((2, 3)), "label": ["a", "b"]}, model_name="m"))
    fields = codec.predictions_from_response(several)
    assert fields["predictions"] == {"p": [[1.0] * 3] * 2, "label": ["a", "b"]}
    assert [o["shape"] for o in fields["outputs"]] == [[2, 3], [2, 1]]
    cube = {"outputs": [{"name": "c", "datatype": "INT8", "shape": [2, 1, 2], "data": [1, 2, 3, 4]}]}
    assert codec.predictions_from_response(cube)["predictions"] == [[[1, 2]], [[3, 4]]]
    frame = wire(codec.encode_response(pd.DataFrame({"a": [1.0], "b": ["x"]}), model_name="m", outputs=["b"]))
    assert [o["name"] for o in frame["outputs"]] == ["b"]
    assert wire(codec.encode_response(3.5, model_name="m"))["outputs"][0]["shape"] == [1]
    with pytest.raises(InvalidInputError, match="has no output 'q'"):
        codec.encode_response(np.ones(2), model_name="m", outputs=["q"])
    for bad in ({"outputs": [{"name": "c", "shape": [2], "data": [1]}]}, {"nothing": 1},
                {"outputs": [{"name": "c", "shape": [1]}]}):
        with pytest.raises(InvalidInputError):
            codec.predictions_from_response(bad)
