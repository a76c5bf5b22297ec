"""Real models served by the local target answer exactly as they do in-process.

Each model of :mod:`support.model_zoo` (scikit-learn estimators and pipelines, xgboost, lightgbm) is
written twice, as a pickle and as an MLflow model directory (read natively, its signature enforced),
deployed on the local target (one server process each, all started together) and scored through the
client with a DataFrame of the dtypes callers use. Two answers are compared with the server's:

* ``model.predict`` on the frame the server rebuilds from the JSON request (what the server promises
  for every input: :func:`deployflow.payloads.decode_request` of the client's body);
* ``model.predict`` on the caller's own frame (promised for numbers, NaN, nullable Int64 and boolean
  with missing values, strings; also true here for datetimes, which the pipeline parses itself).

The category dtype does not survive JSON: a model that needs it gets a 400 that says so.

scikit-learn models fitted on arrays, or on frames of numbers, are scored with the array sklearn would
build itself (:mod:`deployflow.targets.local.array_shortcut`); the answers above prove that shortcut on
both kinds of model file, and the tests after them check which models take it.

Batch scoring asks a local server for Arrow answers (:mod:`deployflow.arrow_chunks`): the last tests
score each model's rows once asking for them and once not, and the two outputs must be equal to the
last bit; the servers answer in Arrow where it carries the output exactly, in JSON otherwise
(xgboost's float32).
"""

from __future__ import annotations

import copy
import dataclasses
import importlib.util
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import requests
from deployflow import batch_predict
from deployflow.arrow_chunks import CONTENT_TYPE_ARROW, encode_frame
from deployflow.errors import InvalidInputError
from deployflow.payloads import decode_request, encode_request
from deployflow.targets.local import mlflow_model
from deployflow.targets.local.array_shortcut import takes_array_shortcut
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
#: Each zoo model is deployed from both kinds of file; the MLflow one is named "<model>-mlflow".
FORMATS = ("pickle", "mlflow")
CASES = [(name, kind) for name in AVAILABLE for kind in FORMATS]
#: The models that may take the array shortcut (sklearn's own parts, none selecting columns by name or
#: by dtype); each request still qualifies only with plain numeric columns in the fitted order.
SHORTCUT_MODELS = {"logistic-named", "logistic-array", "logistic-frame", "forest", "forest-frame", "scaled-pipeline"}
#: Of those, the ones whose zoo requests qualify, so the answers above went through the shortcut.
SHORTCUT_REQUESTS = {"logistic-array", "logistic-frame", "forest-frame", "scaled-pipeline"}


def deployment(name: str, kind: str) -> str:
    return name if kind == "pickle" else f"{name}-mlflow"


@pytest.fixture(scope="module")
def zoo(tmp_path_factory: pytest.TempPathFactory) -> Any:
    frame = model_zoo.zoo_frame()
    models = model_zoo.zoo_models(frame, AVAILABLE)
    if HAS_XGBOOST:
        extra = model_zoo.xgboost_with_categories(frame, model_zoo.zoo_target(frame))
        models[extra.name] = extra
    with local_home(tmp_path_factory.mktemp("zoo")) as home:
        paths = {}
        for name, entry in models.items():
            paths[deployment(name, "pickle")] = write_pickle(entry.model, Path(home) / f"{name}.pkl")
            paths[deployment(name, "mlflow")] = model_zoo.write_mlflow_dir(entry, frame, Path(home) / f"{name}-mlflow")
        with local_client(home) as client:
            # Start every server at once, then wait for all: the processes load in parallel.
            for name, path in paths.items():
                client.create_deployment(name, str(path), config={"wait": False, "startup_timeout": 120})
            for name in paths:
                client.wait_for_deployment(name, timeout=120, poll_interval=0.05, max_poll_interval=0.25)
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


@pytest.mark.parametrize(("name", "kind"), CASES)
def test_the_served_answer_is_the_in_process_answer(zoo, name, kind):
    client, frame, models, _ = zoo
    entry = models[name]
    inputs = frame[entry.columns]
    served = client.predict(deployment(name, kind), inputs)["predictions"]
    assert_same_answer(served, entry.model.predict(rebuilt(inputs)), entry)
    assert_same_answer(served, entry.model.predict(inputs), entry)


def numpy_typed(inputs: pd.DataFrame) -> pd.DataFrame:
    """``inputs`` with the dtypes a batch job read from Parquet or CSV often has: nullable integers as
    int64 (float64 with NaN when some are missing), booleans filled, categories as their text."""
    columns = {}
    for name, column in inputs.items():
        if isinstance(column.dtype, pd.Int64Dtype):
            column = column.astype("float64") if column.isna().any() else column.astype("int64")
        elif isinstance(column.dtype, pd.BooleanDtype):
            column = column.fillna(False).astype(bool)
        elif isinstance(column.dtype, pd.CategoricalDtype):
            column = column.astype(object)
        columns[name] = column
    return pd.DataFrame(columns)


@pytest.mark.parametrize(("name", "kind"), CASES)
def test_batch_scoring_in_arrow_gets_the_answers_json_gets(zoo, name, kind):
    # batch_predict sends a local server Arrow bodies where the chunk allows it
    # (deployflow.arrow_chunks); the model must answer as it does to the same rows sent as JSON.

    client, frame, models, _ = zoo
    entry = models[name]
    inputs = numpy_typed(frame[entry.columns])
    # Every column but a datetime goes in Arrow
    assert (encode_frame(inputs.iloc[:16].reset_index(drop=True)) is not None) == ("when" not in entry.columns)
    scored = batch_predict(client, inputs, deployment_name=deployment(name, kind), chunk_size=16)
    answered = client.predict(deployment(name, kind), inputs)["predictions"]
    # batch scoring reads an Arrow answer (JSON for float32 outputs), predict a JSON one: equal to the
    # last bit (the Arrow answer tests below compare the two answers model by model)
    np.testing.assert_array_equal(scored.iloc[:, len(inputs.columns):].to_numpy().squeeze(), np.asarray(answered))
    assert_same_answer(answered, entry.model.predict(rebuilt(inputs)), entry)


def test_most_zoo_models_are_scored_through_arrow(zoo):
    _, _, models, _ = zoo
    through_arrow = [name for name in AVAILABLE if "when" not in models[name].columns]
    assert len(through_arrow) >= len(AVAILABLE) // 2, through_arrow


@pytest.mark.parametrize(("name", "kind"), CASES)
def test_one_row_requests_with_missing_values(zoo, name, kind):
    # In a one-row request a missing value is the whole column: the server must still see a number.
    client, frame, models, _ = zoo
    entry = models[name]
    for row in ROWS_WITH_GAPS:
        inputs = frame[entry.columns].iloc[[row]]
        served = client.predict(deployment(name, kind), inputs)["predictions"]
        assert_same_answer(served, entry.model.predict(inputs), entry)


@pytest.mark.parametrize("kind", FORMATS)
def test_records_give_the_same_answers_as_split(zoo, kind):
    client, frame, models, _ = zoo
    for name in AVAILABLE:
        entry = models[name]
        records = frame[entry.columns].astype(object).where(frame[entry.columns].notna(), None)
        body = {"dataframe_records": records.to_dict(orient="records")}
        served = client.predict(deployment(name, kind), body)["predictions"]
        assert_same_answer(served, entry.model.predict(frame[entry.columns]), entry)


def test_a_frame_whose_columns_are_in_another_order(zoo):
    # sklearn refuses names in another order than the fit; an MLflow model's signature puts them back.
    client, frame, models, _ = zoo
    entry = models["logistic-frame"]
    shuffled = frame[entry.columns[::-1]]
    with pytest.raises(ValueError, match="same order"):
        entry.model.predict(shuffled)
    with pytest.raises(InvalidInputError, match="same order") as caught:
        client.predict("logistic-frame", shuffled)
    assert caught.value.status_code == 400
    served = client.predict("logistic-frame-mlflow", shuffled)["predictions"]
    assert_same_answer(served, entry.model.predict(frame[entry.columns]), entry)


def takes_the_shortcut(path: Path) -> bool:
    if path.is_dir():
        native, _ = mlflow_model.load_native(mlflow_model.read_model_dir(path))
        return takes_array_shortcut(native.scorer)
    return takes_array_shortcut(load_model(str(path)).predict_function)


@pytest.mark.parametrize("kind", FORMATS)
def test_which_models_take_the_array_shortcut(zoo, kind):
    # The shortcut (DataFrame -> one numpy array) is taken only where sklearn would build that same
    # array itself: sklearn's own parts, none selecting by name or seeing the frame, fitted on numbers
    # (with or without feature names); requests of plain numeric columns only (checked per request).
    _, frame, models, paths = zoo
    taken = {name for name in AVAILABLE if takes_the_shortcut(paths[deployment(name, kind)])}
    assert taken == SHORTCUT_MODELS & set(AVAILABLE)
    for name in SHORTCUT_MODELS:
        entry = models[name]
        numbers = rebuilt(frame[entry.columns])
        uniform = set(numbers.dtypes.tolist()) == {np.dtype("float64")}
        assert uniform == (name in SHORTCUT_REQUESTS), name  # what the server scores as one array
        if uniform:
            loaded = load_model(str(paths[deployment(name, kind)]))
            np.testing.assert_array_equal(loaded.predict(numbers), entry.model.predict(numbers))


@pytest.mark.skipif(not HAS_XGBOOST, reason="needs xgboost")
@pytest.mark.parametrize("kind", FORMATS)
def test_a_model_that_needs_the_category_dtype_is_told_why(zoo, kind):
    client, frame, models, _ = zoo
    entry = models[CATEGORY_MODEL]
    with pytest.raises(InvalidInputError) as caught:
        client.predict(deployment(CATEGORY_MODEL, kind), frame[entry.columns])
    assert caught.value.status_code == 400 and caught.value.error_code == "BAD_REQUEST"
    message = str(caught.value)
    assert "color" in message  # xgboost's own words name the column
    assert "categorical columns arrive as their values" in message
    # what the server promises still holds: the model fails in-process on the rebuilt frame too
    with pytest.raises(ValueError):
        entry.model.predict(rebuilt(frame[entry.columns]))


# ---------------------------------------------------------------------------------------------------------
# Arrow answers


def json_answers(client: Any) -> Any:
    """``client`` as batch scoring sees a server that does not read Arrow: JSON bodies, no Accept."""
    twin = copy.copy(client)
    route_of = client.batch_http_route
    twin.batch_http_route = lambda **target: dataclasses.replace(route_of(**target), arrow=False)
    return twin


@pytest.mark.parametrize(("name", "kind"), CASES)
def test_batch_scoring_reads_the_same_rows_from_arrow_and_json_answers(zoo, name, kind):
    client, frame, models, _ = zoo
    inputs = numpy_typed(frame[models[name].columns])
    target = deployment(name, kind)
    with_arrow = batch_predict(client, inputs, deployment_name=target, chunk_size=16, concurrency=2)
    with_json = batch_predict(json_answers(client), inputs, deployment_name=target, chunk_size=16, concurrency=2)
    pd.testing.assert_frame_equal(with_arrow, with_json, check_dtype=True, check_column_type=True, check_exact=True)


def answer_type(client: Any, name: str, inputs: pd.DataFrame) -> str:
    body = encode_frame(inputs.reset_index(drop=True))
    headers = {"Content-Type": CONTENT_TYPE_ARROW, "Accept": f"{CONTENT_TYPE_ARROW}, application/json"}
    answer = requests.post(f"{client.get_deployment(name)['url']}/invocations", data=body, headers=headers, timeout=30)
    answer.raise_for_status()
    return answer.headers["Content-Type"]


def test_the_zoo_answers_in_arrow_but_for_float32_outputs(zoo):
    client, frame, models, _ = zoo
    arrow = set()
    for name in AVAILABLE:
        inputs = numpy_typed(frame[models[name].columns])
        if encode_frame(inputs.reset_index(drop=True)) is None:
            continue  # a datetime column goes as JSON; its answer is checked above
        if answer_type(client, name, inputs) == CONTENT_TYPE_ARROW:
            arrow.add(name)
        out = np.asarray(models[name].model.predict(inputs))
        assert (name in arrow) == (out.dtype != np.float32), (name, out.dtype)
    assert len(arrow) >= 3, arrow
