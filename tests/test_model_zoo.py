"""Real models served by the local target answer exactly as they do in-process.

Each model of :mod:`support.model_zoo` (scikit-learn estimators and pipelines, xgboost, lightgbm) is
pickled, deployed on the local target (one server process each, started together) and scored through
the client with a DataFrame of the dtypes callers use. Two answers are compared with the server's:

* ``model.predict`` on the frame the server rebuilds from the JSON request (what the server promises
  for every input: :func:`deployflow.payloads.decode_request` of the client's body);
* ``model.predict`` on the caller's own frame (promised for numbers, NaN, nullable Int64 and boolean
  with missing values, strings; also true here for datetimes, which the pipeline parses itself).

The category dtype does not survive JSON: a model that needs it gets a 400 that says so.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from deployflow.errors import InvalidInputError
from deployflow.payloads import decode_request, encode_request
from deployflow.targets.local.models import load_model
from support import model_zoo
from support.local_models import local_client, local_home
from support.models import write_pickle

AVAILABLE = [
    name
    for name in model_zoo.ZOO
    if model_zoo.required_module(name) is None or importlib.util.find_spec(model_zoo.required_module(name))
]
CATEGORY_MODEL = "xgboost-categories"
HAS_XGBOOST = importlib.util.find_spec("xgboost") is not None
# The in-process predictions of the array-fitted model, given a frame, warn as sklearn always does.
pytestmark = pytest.mark.filterwarnings("ignore:X has feature names:UserWarning")
# Rows with a missing value in some column: scored one at a time, each such column holds only a null.
ROWS_WITH_GAPS = [2, 5, 7]


@pytest.fixture(scope="module")
def zoo(tmp_path_factory: pytest.TempPathFactory) -> Any:
    frame = model_zoo.zoo_frame()
    models = model_zoo.zoo_models(frame, AVAILABLE)
    if HAS_XGBOOST:
        extra = model_zoo.xgboost_with_categories(frame, model_zoo.zoo_target(frame))
        models[extra.name] = extra
    with local_home(tmp_path_factory.mktemp("zoo")) as home:
        paths = {name: write_pickle(entry.model, Path(home) / f"{name}.pkl") for name, entry in models.items()}
        with local_client(home) as client:
            # Start every server at once, then wait for all: the processes load in parallel.
            for name, path in paths.items():
                client.create_deployment(name, str(path), config={"wait": False, "startup_timeout": 90})
            for name in paths:
                client.wait_for_deployment(name, timeout=90, poll_interval=0.05, max_poll_interval=0.25)
            yield client, frame, models, paths


def rebuilt(inputs: pd.DataFrame) -> pd.DataFrame:
    """The frame the server hands the model for ``inputs`` sent by the client."""
    body, content_type = encode_request(inputs)
    return decode_request(body, content_type).data


def assert_same_answer(served: Any, expected: Any, entry: model_zoo.ZooModel) -> None:
    expected = np.asarray(expected)
    answer = np.asarray(served)
    assert answer.shape == expected.shape
    if entry.float32:
        # float32 outputs travel as their shortest decimal form: equal once read back as float32
        np.testing.assert_array_equal(answer.astype(np.float32), expected)
    else:
        np.testing.assert_array_equal(answer, expected)


@pytest.mark.parametrize("name", AVAILABLE)
def test_the_served_answer_is_the_in_process_answer(zoo, name):
    client, frame, models, _ = zoo
    entry = models[name]
    inputs = frame[entry.columns]
    served = client.predict(name, inputs)["predictions"]
    assert_same_answer(served, entry.model.predict(rebuilt(inputs)), entry)
    assert_same_answer(served, entry.model.predict(inputs), entry)


@pytest.mark.parametrize("name", AVAILABLE)
def test_one_row_requests_with_missing_values(zoo, name):
    # In a one-row request a missing value is the whole column: the server must still see a number.
    client, frame, models, _ = zoo
    entry = models[name]
    for row in ROWS_WITH_GAPS:
        inputs = frame[entry.columns].iloc[[row]]
        served = client.predict(name, inputs)["predictions"]
        assert_same_answer(served, entry.model.predict(inputs), entry)


def test_records_give_the_same_answers_as_split(zoo):
    client, frame, models, _ = zoo
    for name in AVAILABLE:
        entry = models[name]
        records = frame[entry.columns].astype(object).where(frame[entry.columns].notna(), None)
        served = client.predict(name, {"dataframe_records": records.to_dict(orient="records")})["predictions"]
        assert_same_answer(served, entry.model.predict(frame[entry.columns]), entry)


def takes_the_array_shortcut(path: Path) -> bool:
    loaded = load_model(str(path))
    return loaded.predict_function != loaded.raw.predict  # bound methods compare by function and object


def test_only_array_fitted_sklearn_models_take_the_array_shortcut(zoo):
    # The shortcut (DataFrame -> one numpy array) is taken only where sklearn would build that same
    # array itself: an estimator fitted without feature names, scored with plain numeric columns.
    _, frame, models, paths = zoo
    assert {name for name in AVAILABLE if takes_the_array_shortcut(paths[name])} == {"logistic-array"}
    loaded = load_model(str(paths["logistic-array"]))
    model = models["logistic-array"].model
    numbers = rebuilt(frame[models["logistic-array"].columns])
    assert numbers.dtypes.tolist() == [np.float64, np.float64]  # what the server scores as one array
    np.testing.assert_array_equal(loaded.predict(numbers), model.predict(numbers.to_numpy()))
    # a nullable column is left to sklearn, and still answers
    nullable = frame[["num_b", "small"]]
    np.testing.assert_array_equal(loaded.predict(nullable), model.predict(nullable))


@pytest.mark.skipif(not HAS_XGBOOST, reason="needs xgboost")
def test_a_model_that_needs_the_category_dtype_is_told_why(zoo):
    client, frame, models, _ = zoo
    entry = models[CATEGORY_MODEL]
    with pytest.raises(InvalidInputError) as caught:
        client.predict(CATEGORY_MODEL, frame[entry.columns])
    assert caught.value.status_code == 400 and caught.value.error_code == "BAD_REQUEST"
    message = str(caught.value)
    assert "color" in message  # xgboost's own words name the column
    assert "categorical columns arrive as their values" in message
    # what the server promises still holds: the model fails in-process on the rebuilt frame too
    with pytest.raises(ValueError):
        entry.model.predict(rebuilt(frame[entry.columns]))
