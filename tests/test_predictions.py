"""PredictionsResponse: MLflow's get_predictions rules, JSON in and out, and plain-dict behaviour."""

from __future__ import annotations

import copy
import json
import pickle

import numpy as np
import pandas as pd
import pandas.testing as pdt
import pytest

from deployflow.errors import DeploymentError, InvalidInputError
from deployflow.predictions import PredictionsResponse


def test_is_a_plain_dict_with_predictions():
    response = PredictionsResponse({"predictions": [1, 2], "model_version": "3"})
    assert isinstance(response, dict)
    assert response["predictions"] == [1, 2]
    assert response == {"predictions": [1, 2], "model_version": "3"}
    assert json.loads(json.dumps(response)) == {"predictions": [1, 2], "model_version": "3"}


def test_pickles_and_copies_as_the_same_type():
    response = PredictionsResponse({"predictions": [[0.1, 0.9]], "extra": {"a": 1}})
    for clone in (pickle.loads(pickle.dumps(response)), copy.deepcopy(response), copy.copy(response)):
        assert type(clone) is PredictionsResponse
        assert clone == response


# -- get_predictions("dataframe"): MLflow's rules ---------------------------------------------------


def test_string_prediction_becomes_one_row_frame():
    frame = PredictionsResponse({"predictions": "a cat"}).get_predictions()
    pdt.assert_frame_equal(frame, pd.DataFrame(data=["a cat"]))
    assert frame.shape == (1, 1)


def test_dict_of_scalars_becomes_one_row_frame():
    frame = PredictionsResponse({"predictions": {"label": "cat", "score": 0.9}}).get_predictions()
    pdt.assert_frame_equal(frame, pd.DataFrame({"label": ["cat"], "score": [0.9]}, index=[0]))


def test_dict_with_numpy_scalar_and_none_values_is_still_one_row():
    frame = PredictionsResponse({"predictions": {"a": np.float64(1.5), "b": None}}).get_predictions()
    assert frame.shape == (1, 2)
    assert frame.loc[0, "a"] == 1.5


def test_dict_of_lists_becomes_columns():
    frame = PredictionsResponse({"predictions": {"a": [1, 2], "b": [3, 4]}}).get_predictions()
    pdt.assert_frame_equal(frame, pd.DataFrame({"a": [1, 2], "b": [3, 4]}))


def test_dict_mixing_lists_and_scalars_goes_to_dataframe_constructor():
    # Not all scalars, so pandas broadcasts the scalar along the list as DataFrame(preds) does.
    frame = PredictionsResponse({"predictions": {"a": [1, 2], "b": 0}}).get_predictions()
    pdt.assert_frame_equal(frame, pd.DataFrame({"a": [1, 2], "b": [0, 0]}))


def test_dict_of_arrays_is_not_treated_as_scalars():
    frame = PredictionsResponse({"predictions": {"a": np.array([1, 2])}}).get_predictions()
    assert frame.shape == (2, 1)


def test_dict_of_dicts_goes_to_dataframe_constructor():
    preds = {"a": {"x": 1, "y": 2}}
    frame = PredictionsResponse({"predictions": preds}).get_predictions()
    pdt.assert_frame_equal(frame, pd.DataFrame(preds))
    assert list(frame.index) == ["x", "y"]


def test_list_of_numbers_becomes_one_column():
    frame = PredictionsResponse({"predictions": [0, 1, 1]}).get_predictions("dataframe")
    pdt.assert_frame_equal(frame, pd.DataFrame([0, 1, 1]))


def test_list_of_records_becomes_columns():
    preds = [{"label": "cat", "score": 0.9}, {"label": "dog", "score": 0.1}]
    frame = PredictionsResponse({"predictions": preds}).get_predictions()
    pdt.assert_frame_equal(frame, pd.DataFrame(preds))


def test_nested_lists_become_rows():
    frame = PredictionsResponse({"predictions": [[0.1, 0.9], [0.8, 0.2]]}).get_predictions()
    assert frame.shape == (2, 2)
    assert frame.iloc[1, 0] == 0.8


# -- get_predictions("ndarray") ----------------------------------------------------------------------


def test_ndarray_format():
    array = PredictionsResponse({"predictions": [[1, 2], [3, 4]]}).get_predictions("ndarray")
    assert isinstance(array, np.ndarray)
    np.testing.assert_array_equal(array, np.array([[1, 2], [3, 4]]))
    assert array.dtype.kind == "i"


def test_ndarray_format_with_dtype():
    array = PredictionsResponse({"predictions": [1, 2]}).get_predictions("ndarray", dtype="float32")
    assert array.dtype == np.float32
    array = PredictionsResponse({"predictions": ["1", "2"]}).get_predictions(
        predictions_format="ndarray", dtype=int
    )
    assert array.tolist() == [1, 2]


def test_unknown_format_names_the_format():
    with pytest.raises(InvalidInputError, match="'tensor'") as caught:
        PredictionsResponse({"predictions": [1]}).get_predictions("tensor")
    assert caught.value.error_code == "INVALID_PARAMETER_VALUE"
    assert "dataframe" in str(caught.value) and "ndarray" in str(caught.value)


def test_missing_predictions_key_is_a_clear_error():
    response = PredictionsResponse({"choices": [{"text": "hi"}]})
    with pytest.raises(InvalidInputError, match=r"no 'predictions' key.*choices"):
        response.get_predictions()


# -- to_json / from_json ------------------------------------------------------------------------------


def test_to_json_returns_a_string():
    response = PredictionsResponse({"predictions": [1, 2.5, "x", None]})
    text = response.to_json()
    assert isinstance(text, str)
    assert json.loads(text) == {"predictions": [1, 2.5, "x", None]}


def test_to_json_converts_numpy_and_pandas_values():
    response = PredictionsResponse(
        {"predictions": np.array([[1.5, np.nan]]), "when": pd.Timestamp("2024-05-01 12:00"), "n": np.int64(3)}
    )
    assert response.to_json() == '{"predictions": [[1.5, NaN]], "when": "2024-05-01T12:00:00", "n": 3}'


# What mlflow.deployments.PredictionsResponse.to_json writes (json.dumps of the dict) for the same answers.
MLFLOW_TEXTS = [
    ({"predictions": [1, 2, 3]}, '{"predictions": [1, 2, 3]}'),
    ({"predictions": [0.1, 2.5e-08, 1e+300, -0.0]}, '{"predictions": [0.1, 2.5e-08, 1e+300, -0.0]}'),
    (
        {"predictions": [float("nan"), float("inf"), float("-inf"), None]},
        '{"predictions": [NaN, Infinity, -Infinity, null]}',
    ),
    (
        {"predictions": [{"label": "caf\u00e9", "ok": True}], "model_version": "2"},
        '{"predictions": [{"label": "caf\\u00e9", "ok": true}], "model_version": "2"}',
    ),
    ({"predictions": {"a": [1], "b": {"c": "x\ny\""}}}, '{"predictions": {"a": [1], "b": {"c": "x\\ny\\""}}}'),
    ({"predictions": "text"}, '{"predictions": "text"}'),
    ({"predictions": []}, '{"predictions": []}'),
]


@pytest.mark.parametrize("answer, text", MLFLOW_TEXTS)
def test_to_json_writes_what_mlflow_writes(answer, text):
    assert json.dumps(answer) == text  # the literal is MLflow's own output
    assert PredictionsResponse(answer).to_json() == text


@pytest.mark.parametrize("answer, text", MLFLOW_TEXTS)
def test_to_json_with_a_path_writes_the_same_text(tmp_path, answer, text):
    target = tmp_path / "out.json"
    assert PredictionsResponse(answer).to_json(target) is None
    assert target.read_bytes() == text.encode("ascii")


def test_to_json_writes_a_file_and_returns_none(tmp_path):
    response = PredictionsResponse({"predictions": [[0.1, 0.9]], "id": "r1"})
    target = tmp_path / "out.json"
    assert response.to_json(target) is None
    assert json.loads(target.read_text()) == {"predictions": [[0.1, 0.9]], "id": "r1"}
    assert PredictionsResponse.from_json(target.read_text()) == response
    # str paths work too
    assert response.to_json(str(tmp_path / "again.json")) is None
    assert (tmp_path / "again.json").read_bytes() == target.read_bytes()


def test_from_json_reads_non_finite_numbers():
    response = PredictionsResponse.from_json('{"predictions": [NaN, Infinity, -Infinity]}')
    values = response["predictions"]
    assert np.isnan(values[0]) and values[1:] == [np.inf, -np.inf]
    assert response.to_json() == '{"predictions": [NaN, Infinity, -Infinity]}'


def test_from_json_round_trip_from_str_and_bytes():
    response = PredictionsResponse({"predictions": {"a": [1, 2]}, "meta": {"x": True}})
    for text in (response.to_json(), response.to_json().encode()):
        parsed = PredictionsResponse.from_json(text)
        assert type(parsed) is PredictionsResponse
        assert parsed == response


@pytest.mark.parametrize("text", ["{not json", "", "{'predictions': 1}", "[1, 2"])
def test_from_json_rejects_invalid_json(text):
    with pytest.raises(InvalidInputError, match="not valid JSON"):
        PredictionsResponse.from_json(text)


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("[1, 2, 3]", "[1, 2, 3]"),
        ('"just text"', "just text"),
        ("42", "42"),
        ('{"result": [1]}', "result"),
    ],
)
def test_from_json_rejects_non_objects_and_objects_without_predictions(text, shown):
    with pytest.raises(InvalidInputError, match="'predictions' key") as caught:
        PredictionsResponse.from_json(text)
    assert shown in str(caught.value)


def test_from_json_message_is_truncated():
    text = json.dumps({"result": ["x" * 50] * 100})
    with pytest.raises(InvalidInputError) as caught:
        PredictionsResponse.from_json(text)
    message = str(caught.value)
    assert len(message) < 500
    assert "characters in all" in message
    bad = "{" + "a" * 5000
    with pytest.raises(InvalidInputError) as caught:
        PredictionsResponse.from_json(bad)
    assert len(str(caught.value)) < 600


def test_errors_belong_to_the_deployflow_tree():
    with pytest.raises(DeploymentError):
        PredictionsResponse.from_json("nope")
