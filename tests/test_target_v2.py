"""The v2 target (v2+http://host:port) against a real MLServer 1.7.1 on 127.0.0.1.

MLServer and its sklearn runtime live in a side venv (:func:`support.peers.mlserver_peer`, built on
first use; skipped only when the package index cannot be reached). The models are trained here with
this environment's scikit-learn and saved with joblib; the peer pins the same scikit-learn.

Models served:
* ``iris``: a LogisticRegression on 4 features, version ``v1``, with declared input/output metadata;
* ``spare``: the same model, for the load/unload (create/delete) round trip;
* ``gated``: a custom runtime whose ``load`` waits until a file exists, so "still loading" lasts as
  long as the test wants (no timing involved).
"""

from __future__ import annotations

import json
import textwrap

import joblib
import numpy as np
import pandas as pd
import pytest
from deployflow import (
    ConflictError,
    InvalidInputError,
    NotFoundError,
    PredictionsResponse,
    State,
    TargetError,
    TransientError,
    batch_predict,
    get_deploy_client,
)
from deployflow.registry import BUILTIN_TARGETS
from sklearn.linear_model import LogisticRegression
from support.peers import (
    PeerUnavailable,
    mlserver_peer,
    progress_printer,
    start_mlserver,
)

FAST = {"max_retries": 1, "backoff_factor": 0.01, "backoff_max": 0.05}
FEATURES = 4

GATED_RUNTIME = textwrap.dedent(
    """
    import asyncio
    import os

    from mlserver import MLModel
    from mlserver.codecs import NumpyCodec
    from mlserver.types import InferenceResponse


    class GatedModel(MLModel):
        async def load(self) -> bool:
            gate = self.settings.parameters.extra["gate"]
            while not os.path.exists(gate):
                await asyncio.sleep(0.05)
            return True

        async def predict(self, payload):
            values = NumpyCodec.decode_input(payload.inputs[0])
            return InferenceResponse(model_name=self.name, outputs=[NumpyCodec.encode_output("echo", values * 2)])
    """
)


def _train(seed: int = 0):
    rng = np.random.default_rng(seed)
    features = rng.normal(size=(300, FEATURES))
    labels = (features[:, 0] + 0.5 * features[:, 1] - features[:, 3] > 0).astype(int)
    return LogisticRegression().fit(features, labels)


def _model_settings(name: str, **extra):
    return {
        "name": name,
        "implementation": "mlserver_sklearn.SKLearnModel",
        "parameters": {"uri": "./model.joblib", "version": "v1"},
        "inputs": [{"name": "features", "datatype": "FP64", "shape": [-1, FEATURES]}],
        "outputs": [{"name": "predict", "datatype": "INT64", "shape": [-1, 1]}],
        **extra,
    }


@pytest.fixture(scope="module")
def model():
    return _train()


@pytest.fixture(scope="module")
def mlserver(tmp_path_factory, pytestconfig, model):
    try:
        peer = mlserver_peer(progress_printer(pytestconfig))
    except PeerUnavailable as exc:
        pytest.skip(str(exc))
    root = tmp_path_factory.mktemp("mlserver")
    for name in ("iris", "spare"):
        (root / name).mkdir()
        joblib.dump(model, root / name / "model.joblib")
        (root / name / "model-settings.json").write_text(json.dumps(_model_settings(name)))
    gate = root / "gate-open"
    (root / "gated").mkdir()
    (root / "gated" / "gated_runtime.py").write_text(GATED_RUNTIME)
    (root / "gated" / "model-settings.json").write_text(json.dumps({
        "name": "gated", "implementation": "gated_runtime.GatedModel", "parameters": {"extra": {"gate": str(gate)}},
    }))
    server = start_mlserver(peer, root, ready_models=["iris", "spare"])
    server.gate = gate
    yield server
    gate.write_text("open")  # a model still loading holds MLServer's shutdown up
    server.stop()


@pytest.fixture()
def client(mlserver):
    with get_deploy_client(f"v2+{mlserver.url}", **FAST) as remote:
        yield remote


def _rows(count: int, seed: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(count, FEATURES))


def test_the_registry_knows_the_v2_target_and_rejects_other_uris():
    assert BUILTIN_TARGETS["v2"] == ("deployflow.targets.v2", None)
    for bad in ("v2+ftp://host", "v2://host:8080", "v2+http://"):
        with pytest.raises(TargetError):
            get_deploy_client(bad)
    with pytest.raises(InvalidInputError, match="Unknown option"):
        get_deploy_client("v2+http://127.0.0.1:9", tokn="x")


def test_predict_numpy_dataframe_dict_and_raw_requests(client, model):
    rows = _rows(7)
    expected = model.predict(rows).tolist()
    from_array = client.predict("iris", rows)
    assert isinstance(from_array, PredictionsResponse)
    assert from_array["predictions"] == expected
    assert from_array["model_name"] == "iris" and from_array["model_version"] == "v1"
    assert from_array["outputs"] == [
        {"name": "predict", "datatype": "INT64", "shape": [7, 1], "parameters": {"content_type": "np"}}
    ]
    assert from_array.get_predictions("ndarray").tolist() == expected

    frame = pd.DataFrame(rows, columns=["a", "b", "c", "d"])
    assert client.predict("iris", frame)["predictions"] == expected
    assert client.predict("iris", {"features": rows})["predictions"] == expected

    raw = {
        "inputs": [{"name": "features", "shape": [7, FEATURES], "datatype": "FP64", "data": rows.ravel().tolist()}],
        "outputs": [{"name": "predict_proba"}],
    }
    probabilities = client.predict("iris", raw)
    assert probabilities["outputs"][0]["shape"] == [7, 2]
    assert np.allclose(probabilities.get_predictions("ndarray"), model.predict_proba(rows))
    # A version in the name goes to /v2/models/iris/versions/v1/infer.
    assert client.predict("iris@v1", rows)["predictions"] == expected


def test_metadata_status_and_listing(client):
    record = client.get_deployment("iris")
    assert record["name"] == "iris" and record["state"] == "READY"
    assert [(spec["name"], spec["datatype"], spec["shape"]) for spec in record["inputs"]] == [("features", "FP64", [-1, FEATURES])]
    assert [(spec["name"], spec["datatype"], spec["shape"]) for spec in record["outputs"]] == [("predict", "INT64", [-1, 1])]
    assert record["url"].endswith("/v2/models/iris")
    with pytest.raises(NotFoundError, match="Model nope not found"):
        client.get_deployment("nope")

    assert client.deployment_status("iris").state is State.READY
    assert client.deployment_status("iris@v1").state is State.READY
    assert client.deployment_status("iris@v9").state is State.NOT_FOUND
    assert client.deployment_status("nope").state is State.NOT_FOUND

    listed = {entry["name"]: entry for entry in client.list_deployments()}
    assert listed["iris"]["state"] == "READY" and listed["iris"]["version"] == "v1"
    assert listed["iris"]["repository_state"] == "READY"


def test_errors_map_into_the_error_tree(client):
    with pytest.raises(NotFoundError, match="Model nope not found"):
        client.predict("nope", _rows(2))
    # The model raises on 3 features: MLServer answers 500, which is not retried (it would say "after").
    with pytest.raises(TransientError) as caught:
        client.predict("iris", np.ones((2, 3)))
    assert caught.value.status_code == 500 and caught.value.retryable is False
    assert "attempts" not in str(caught.value)
    for bad in ("text", None, {}, np.array([1.5], dtype=np.float16)):
        with pytest.raises(InvalidInputError):
            client.predict("iris", bad)
    with pytest.raises(InvalidInputError, match="model name"):
        client.predict(None, _rows(1))
    with pytest.raises(InvalidInputError, match="no endpoints"):
        client.predict("iris", _rows(1), endpoint="e")


def test_a_loading_model_is_pending_and_its_not_ready_answer_is_retryable(client, mlserver):
    assert not mlserver.gate.exists()
    assert client.deployment_status("gated").state is State.PENDING
    with pytest.raises(TransientError, match="is not ready yet") as caught:
        client.predict("gated", np.array([1.0, 2.0]))
    assert caught.value.retryable and caught.value.status_code == 400
    mlserver.gate.write_text("open")
    assert client.wait_for_deployment("gated", timeout=60, poll_interval=0.1).state is State.READY
    assert client.predict("gated", np.array([1.0, 2.0]))["predictions"] == [2.0, 4.0]


def test_create_and_delete_load_and_unload_through_the_repository(client, model):
    rows = _rows(3)
    client.delete_deployment("spare")
    assert client.deployment_status("spare").state is State.NOT_FOUND
    client.delete_deployment("spare")  # idempotent
    with pytest.raises(NotFoundError):
        client.predict("spare", rows)

    created = client.create_deployment("spare", "spare")
    assert created == {"name": "spare", "state": "READY", "reason": None}
    assert client.predict("spare", rows)["predictions"] == model.predict(rows).tolist()
    with pytest.raises(ConflictError, match="loaded already"):
        client.create_deployment("spare", None)
    assert client.update_deployment("spare")["state"] == "READY"
    with pytest.raises(NotFoundError):
        client.create_deployment("not-in-the-repository", None)
    with pytest.raises(InvalidInputError, match="model_uri"):
        client.create_deployment("other", "/some/path/model.joblib")
    with pytest.raises(InvalidInputError, match="Unknown config"):
        client.update_deployment("spare", config={"replicas": 2})


def test_batch_predict_through_the_v2_target(client, model):
    rows = _rows(2500, seed=3)
    frame = pd.DataFrame(rows, columns=["a", "b", "c", "d"])
    scored = batch_predict(client, frame, deployment_name="iris", chunk_size=400)
    assert scored["prediction"].tolist() == model.predict(rows).tolist()
    assert scored[["a", "b", "c", "d"]].equals(frame)


def _route_carries_codecs() -> bool:
    import dataclasses

    from deployflow.scoring_route import HttpRoute

    return {"encode", "decode"} <= {field.name for field in dataclasses.fields(HttpRoute)}


@pytest.mark.skipif(not _route_carries_codecs(), reason="deployflow.scoring_route.HttpRoute has no encode/decode hooks yet")
def test_batch_predict_takes_the_event_loop_path(client, model):
    route = client.batch_http_route("iris")
    assert route is not None and route.url.endswith("/v2/models/iris/infer")
    body, content_type = route.encode(pd.DataFrame(_rows(2), columns=list("abcd")), None)
    assert content_type == "application/json" and json.loads(body)["parameters"] == {"content_type": "pd"}
    rows = _rows(1200, seed=4)
    scored = batch_predict(client, pd.DataFrame(rows, columns=list("abcd")), deployment_name="iris", chunk_size=300)
    assert scored["prediction"].tolist() == model.predict(rows).tolist()
