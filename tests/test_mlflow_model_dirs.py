"""MLflow model directories read without MLflow (deployflow.targets.local.mlflow_model).

tests/fixtures/mlflow_models holds directories saved by a real MLflow 3.17.2 (its generate.py rebuilds
them) with ``expected.json``: a request and the answer MLflow's own scoring code gave it. Each is loaded
here without MLflow and must give that answer: the sklearn flavor in its three formats (skops, pickle,
cloudpickle) and with ``predict_fn: predict_proba``, a tensor signature, xgboost (a scikit-learn wrapper
and a Booster) and lightgbm (both kinds). Flavors deployflow does not read name themselves and the
``mlflow`` extra; a served model answers signature errors as MLflow does.
"""

from __future__ import annotations

import importlib.util
import json
import shutil
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from deployflow.errors import InvalidInputError
from deployflow.payloads import decode_request, encode_response
from deployflow.targets.local import mlflow_model
from deployflow.targets.local.models import load_model
from support.models import ServerProcess

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "mlflow_models"
DIRECTORIES = sorted(path.name for path in FIXTURES.iterdir() if (path / "MLmodel").is_file())
HAS_MLFLOW = importlib.util.find_spec("mlflow") is not None
needs_no_mlflow = pytest.mark.skipif(HAS_MLFLOW, reason="checks what happens without MLflow installed")


def answer(loaded: Any, body: bytes) -> dict[str, Any]:
    """What the scoring server answers: decode, predict, encode (server.ScoringApp._score)."""
    data, params, _ = decode_request(body, "application/json")
    return json.loads(encode_response(loaded.predict(data, params)))


def test_the_fixtures_are_there():
    assert {"sklearn_logistic_skops", "sklearn_logistic_pickle", "sklearn_logistic_cloudpickle",
            "sklearn_pipeline_proba", "sklearn_tensor", "xgboost_regressor", "xgboost_booster",
            "lightgbm_classifier", "lightgbm_booster"} <= set(DIRECTORIES)


@pytest.mark.parametrize("name", DIRECTORIES)
def test_each_directory_answers_as_mlflow_does(name):
    expected = json.loads((FIXTURES / name / "expected.json").read_text(encoding="utf-8"))
    loaded = load_model(str(FIXTURES / name))
    assert loaded.flavor == "mlflow" and "MLflow model" in loaded.source
    got = answer(loaded, json.dumps(expected["request"]).encode())["predictions"]
    want = expected["answer"]["predictions"]
    if name.startswith("xgboost"):
        # xgboost answers float32; MLflow writes each as the double it widens to, deployflow as the
        # shortest float32 text: the same float32 values
        np.testing.assert_array_equal(np.float32(got), np.float32(want))
    else:
        assert got == want
    assert "mlflow" not in sys.modules or HAS_MLFLOW  # read without importing MLflow


def test_the_sklearn_model_is_the_fitted_estimator_and_takes_the_shortcut():
    from deployflow.targets.local.array_shortcut import takes_array_shortcut

    native, reason = mlflow_model.load_native(mlflow_model.read_model_dir(FIXTURES / "sklearn_logistic_skops"))
    assert reason == "" and type(native.raw).__name__ == "LogisticRegression"
    assert takes_array_shortcut(native.scorer)
    assert "skops file" in native.description


def copy_fixture(tmp_path: Path, name: str = "sklearn_logistic_skops") -> Path:
    target = tmp_path / name
    shutil.copytree(FIXTURES / name, target)
    return target


def edit_mlmodel(path: Path, change: Any) -> None:
    document = yaml.safe_load((path / "MLmodel").read_text(encoding="utf-8"))
    change(document)
    (path / "MLmodel").write_text(yaml.safe_dump(document), encoding="utf-8")


@needs_no_mlflow
def test_another_flavor_names_itself_and_the_mlflow_extra(tmp_path):
    path = copy_fixture(tmp_path)

    def to_pytorch(document: dict[str, Any]) -> None:
        document["flavors"] = {"python_function": {"loader_module": "mlflow.pytorch", "data": "data"},
                               "pytorch": {"pytorch_version": "2.0"}}

    edit_mlmodel(path, to_pytorch)
    with pytest.raises(InvalidInputError) as caught:
        load_model(str(path))
    message = caught.value.message
    assert "'pytorch'" in message and "mlflow.pytorch" in message
    assert "pip install 'deployflow[mlflow]'" in message


@needs_no_mlflow
def test_custom_pyfunc_models_and_nested_signatures_need_mlflow(tmp_path):
    custom = copy_fixture(tmp_path)
    edit_mlmodel(custom, lambda document: document["flavors"].update(
        python_function={"loader_module": "mlflow.pyfunc.model", "python_model": "python_model.pkl"}))
    with pytest.raises(InvalidInputError, match=r"mlflow\.pyfunc\.model.*deployflow\[mlflow\]"):
        load_model(str(custom))
    nested = copy_fixture(tmp_path, "sklearn_logistic_pickle")
    array_input = json.dumps([{"type": "array", "items": {"type": "double"}, "name": "f0", "required": True}])
    edit_mlmodel(nested, lambda document: document["signature"].update(inputs=array_input))
    with pytest.raises(InvalidInputError, match=r"type 'array'.*deployflow\[mlflow\]"):
        load_model(str(nested))


@needs_no_mlflow
@pytest.mark.parametrize("uri", ["models:/iris/1", "runs:/0123abcd/model"])
def test_tracking_uris_still_need_mlflow(uri):
    with pytest.raises(InvalidInputError, match=r"pip install 'deployflow\[mlflow\]'"):
        load_model(uri)


def test_skops_types_the_model_does_not_trust_are_refused(tmp_path):
    path = copy_fixture(tmp_path, "lightgbm_classifier")  # needs lightgbm types MLmodel lists as trusted
    edit_mlmodel(path, lambda document: document["flavors"]["lightgbm"].update(skops_trusted_types=None))
    with pytest.raises(InvalidInputError, match="UntrustedTypesFoundException"):
        load_model(str(path))


def test_broken_directories_say_what_is_wrong(tmp_path):
    path = copy_fixture(tmp_path, "sklearn_logistic_pickle")
    (path / "model.pkl").unlink()
    with pytest.raises(InvalidInputError, match="model.pkl.*does not exist"):
        load_model(str(path))
    (path / "MLmodel").write_text("flavors: [not, a, mapping\n", encoding="utf-8")
    with pytest.raises(InvalidInputError, match="not valid YAML"):
        load_model(str(path))
    xgb = copy_fixture(tmp_path, "xgboost_regressor")
    edit_mlmodel(xgb, lambda document: document["flavors"]["xgboost"].update(model_class="os.system"))
    with pytest.raises(InvalidInputError, match="not a xgboost class"):
        load_model(str(xgb))


def test_a_bad_input_example_is_only_a_warning(tmp_path, caplog):
    path = copy_fixture(tmp_path)
    (path / "serving_input_example.json").write_text('{"dataframe_split": {"columns": ["f0"], "data": [[1]]}}')
    loaded = load_model(str(path))
    assert "saved input example does not score" in caplog.text
    body = json.dumps({"dataframe_split": {"columns": ["f0", "f1", "f2", "f3"], "data": [[0.1, 0.2, 0.3, 0.4]]}})
    assert answer(loaded, body.encode())["predictions"] in ([0], [1])


def test_code_saved_with_the_model_is_importable(tmp_path):
    path = copy_fixture(tmp_path, "sklearn_logistic_pickle")
    (path / "code").mkdir()
    (path / "code" / "zoo_helper_module_for_test.py").write_text("VALUE = 7\n", encoding="utf-8")
    edit_mlmodel(path, lambda document: document["flavors"]["python_function"].update(code="code"))
    load_model(str(path))
    import zoo_helper_module_for_test

    assert zoo_helper_module_for_test.VALUE == 7


# -- served: status codes and messages --------------------------------------------------------------------


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Any:
    directory = tmp_path_factory.mktemp("mlflow-served")
    server = ServerProcess(directory, {"model_uri": str(FIXTURES / "sklearn_logistic_skops")})
    try:
        server.wait_ready(60)
        yield server
    finally:
        server.stop()


def post(server: ServerProcess, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    request = urllib.request.Request(server.url + "/invocations", data=json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def test_served_answers_equal_mlflows(served):
    expected = json.loads((FIXTURES / "sklearn_logistic_skops" / "expected.json").read_text(encoding="utf-8"))
    assert post(served, expected["request"]) == (200, expected["answer"])
    assert served.ready["flavor"] == "mlflow"


@pytest.mark.parametrize(
    ("body", "code", "words"),
    [
        ({"dataframe_split": {"columns": ["f0", "f1"], "data": [[1.0, 2.0]]}}, "INVALID_PARAMETER_VALUE",
         "missing the required input column(s) ['f2', 'f3']"),
        ({"dataframe_split": {"columns": ["f0", "f1", "f2", "f3"], "data": [["x", 1.0, 2.0, 3.0]]}},
         "BAD_REQUEST", "column 'f0' holds text that is not a number"),
        ({"dataframe_split": {"columns": ["f0", "f1", "f2", "f3"], "data": [[True, 1.0, 2.0, 3.0]]}},
         "INVALID_PARAMETER_VALUE", "column 'f0' holds bool values"),
        ({"inputs": [[1.0, 2.0, 3.0, 4.0]]}, "INVALID_PARAMETER_VALUE", "missing the required input column(s)"),
    ],
)
def test_served_signature_errors(served, body, code, words):
    status, error = post(served, body)
    assert status == 400 and error["error_code"] == code
    assert words in error["message"] and "The input does not match the model signature" in error["message"]
