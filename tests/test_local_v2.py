"""The local target's servers speaking V2, end to end: tritonclient (a real V2 client, from its own
venv) against a local-target server; MLServer's V2 answers and the local server's V2 answers for the
same model; deployflow's ``v2`` target against a local-target server.

The local server routes ``/v2/...`` to :mod:`deployflow.targets.local.openinference` (see
:mod:`deployflow.targets.local.app`).
"""

from __future__ import annotations

import json
import shutil
import textwrap
import urllib.error
import urllib.request
from pathlib import Path

import joblib
import numpy as np
import pandas as pd
import pytest
from deployflow import NotFoundError, State, get_deploy_client
from sklearn.linear_model import LogisticRegression
from support.peers import (
    PeerUnavailable,
    mlserver_peer,
    progress_printer,
    start_mlserver,
    tritonclient_peer,
)

BATCH_MODELS = Path(__file__).resolve().parent / "support" / "batch_models.py"
FEATURES = 4
FAST = {"max_retries": 1, "backoff_factor": 0.01, "backoff_max": 0.05}


TRITON_SCRIPT = textwrap.dedent(
    """
    import json, sys
    import numpy as np
    import tritonclient.http as httpclient
    from tritonclient.utils import InferenceServerException

    address, model, rows = sys.argv[1], sys.argv[2], np.array(json.loads(sys.argv[3]), dtype=np.float64)
    client = httpclient.InferenceServerClient(url=address)
    out = {
        "live": client.is_server_live(), "ready": client.is_server_ready(), "model_ready": client.is_model_ready(model),
        "server": client.get_server_metadata(), "model": client.get_model_metadata(model),
        "unknown_ready": client.is_model_ready("nope"),
    }
    for binary in (False, True):
        tensor = httpclient.InferInput("input-0", list(rows.shape), "FP64")
        tensor.set_data_from_numpy(rows, binary_data=binary)
        result = client.infer(model, [tensor], request_id="req-%s" % binary)
        out["binary_%s" % binary] = {"predict": result.as_numpy("predict").tolist(), "response": result.get_response()}
    asked = client.infer(model, [tensor], outputs=[httpclient.InferRequestedOutput("predict", binary_data=False)])
    out["asked"] = asked.as_numpy("predict").tolist()
    try:
        client.infer("nope", [tensor])
    except InferenceServerException as error:
        out["unknown"] = {"status": error.status(), "message": error.message()}
    print(json.dumps(out))
    """
)


@pytest.fixture(scope="module")
def model_file(tmp_path_factory):
    rng = np.random.default_rng(0)
    features = rng.normal(size=(300, FEATURES))
    labels = (features[:, 0] - features[:, 2] > 0).astype(int)
    model = LogisticRegression().fit(features, labels)
    directory = tmp_path_factory.mktemp("v2-model")
    joblib.dump(model, directory / "model.joblib")
    return model, directory / "model.joblib"


@pytest.fixture(scope="module")
def local_server(tmp_path_factory, model_file):
    _, path = model_file
    client = get_deploy_client(f"local://{tmp_path_factory.mktemp('v2-local-home')}")
    client.create_deployment("iris", str(path), flavor="joblib")
    yield client.get_deployment("iris")["url"]
    client.delete_deployment("iris")
    client.close()


@pytest.fixture(scope="module")
def mlserver(tmp_path_factory, pytestconfig, model_file):
    _, path = model_file
    try:
        peer = mlserver_peer(progress_printer(pytestconfig))
    except PeerUnavailable as exc:
        pytest.skip(str(exc))
    root = tmp_path_factory.mktemp("v2-mlserver")
    (root / "iris").mkdir()
    shutil.copy(path, root / "iris" / "model.joblib")
    (root / "iris" / "model-settings.json").write_text(json.dumps(
        {"name": "iris", "implementation": "mlserver_sklearn.SKLearnModel", "parameters": {"uri": "./model.joblib"}}))
    server = start_mlserver(peer, root, ready_models=["iris"])
    yield server.url
    server.stop()


def _rows(count, seed=1):
    return np.random.default_rng(seed).normal(size=(count, FEATURES))


def _post(url, body):
    request = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"}, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=30) as answer:
            return answer.status, json.loads(answer.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read() or b"null")


def _get_status(url):
    try:
        with urllib.request.urlopen(url, timeout=30) as answer:
            return answer.status
    except urllib.error.HTTPError as error:
        return error.code


def test_tritonclient_against_a_local_server(local_server, model_file, pytestconfig, tmp_path):
    model, _ = model_file
    try:
        peer = tritonclient_peer(progress_printer(pytestconfig))
    except PeerUnavailable as exc:
        pytest.skip(str(exc))
    script = tmp_path / "triton_client.py"
    script.write_text(TRITON_SCRIPT)
    rows = _rows(5)
    address = local_server.split("://", 1)[1]
    result = peer.run(["python", script, address, "iris", json.dumps(rows.tolist())], check=True, timeout=120)
    out = json.loads(result.stdout)
    assert out["live"] and out["ready"] and out["model_ready"] and not out["unknown_ready"]
    assert out["server"]["name"] == "deployflow" and out["server"]["extensions"] == []
    assert out["model"]["name"] == "iris" and out["model"]["platform"] == "deployflow/joblib"
    expected = model.predict(rows).reshape(5, 1).tolist()
    for binary in ("False", "True"):
        answer = out[f"binary_{binary}"]
        assert answer["predict"] == expected
        assert answer["response"]["model_name"] == "iris" and answer["response"]["id"] == f"req-{binary}"
    assert out["asked"] == expected
    assert out["unknown"] == {"status": "404", "message": "Model nope not found"}


def test_mlserver_and_the_local_server_answer_alike(local_server, mlserver):
    rows = _rows(8)
    bodies = {
        "np": json.dumps({"inputs": [{"name": "x", "shape": [8, FEATURES], "datatype": "FP64", "data": rows.ravel().tolist()}]}),
        "pd": json.dumps({"parameters": {"content_type": "pd"}, "inputs": [
            {"name": name, "shape": [8, 1], "datatype": "FP64", "data": rows[:, i].tolist()} for i, name in enumerate("abcd")]}),
    }
    for kind, body in bodies.items():
        theirs = _post(f"{mlserver}/v2/models/iris/infer", body.encode())
        ours = _post(f"{local_server}/v2/models/iris/infer", body.encode())
        assert theirs[0] == ours[0] == 200, kind

        def outputs(answer):
            return [(o["name"], o["datatype"], o["shape"], o["data"]) for o in answer["outputs"]]

        assert outputs(ours[1]) == outputs(theirs[1]), kind
        assert ours[1]["model_name"] == theirs[1]["model_name"] == "iris"
    for path in ("/v2/health/live", "/v2/health/ready", "/v2/models/iris/ready", "/v2/models/nope/ready"):
        assert _get_status(mlserver + path) == _get_status(local_server + path), path
    theirs = _post(f"{mlserver}/v2/models/nope/infer", bodies["np"].encode())
    ours = _post(f"{local_server}/v2/models/nope/infer", bodies["np"].encode())
    assert ours == theirs == (404, {"error": "Model nope not found"})


def test_the_v2_target_scores_a_local_server_as_it_scores_mlserver(local_server, mlserver, model_file):
    model, _ = model_file
    rows = _rows(6)
    frame = pd.DataFrame(rows, columns=list("abcd"))
    with get_deploy_client(f"v2+{local_server}", **FAST) as ours, get_deploy_client(f"v2+{mlserver}", **FAST) as theirs:
        for inputs in (rows, frame):
            assert ours.predict("iris", inputs)["predictions"] == theirs.predict("iris", inputs)["predictions"] == model.predict(rows).tolist()
        assert ours.deployment_status("iris").state is State.READY
        assert ours.deployment_status("nope").state is State.NOT_FOUND
        with pytest.raises(NotFoundError, match="Model nope not found"):
            ours.predict("nope", rows)
        assert ours.get_deployment("iris")["platform"] == "deployflow/joblib"


def test_v2_on_a_local_server_keeps_its_token_limits_and_time_limit(tmp_path):
    (tmp_path / "model.py").write_text(
        "import time\n"
        "def score(data):\n"
        "    if float(data['x'].iloc[0]) < 0:\n"
        "        time.sleep(3)\n"
        "    return data['x'].to_numpy() * 2\n"
    )
    infer = {"inputs": [{"name": "x", "datatype": "FP64", "shape": [2], "data": [1.5, 2.0]}],
             "parameters": {"content_type": "pd"}}
    with get_deploy_client(f"local://{tmp_path / 'state'}") as client:
        client.create_deployment("guarded", f"python:{tmp_path / 'model.py'}:score", config={
            "auth_token": "v2-secret-token", "max_request_bytes": 4096, "request_timeout": 0.5})
        try:
            url = client.get_deployment("guarded")["url"]

            def call(method, path, body=None, token=None):
                request = urllib.request.Request(url + path, method=method, data=body,
                                                 headers={"Content-Type": "application/json"})
                if token:
                    request.add_header("Authorization", f"Bearer {token}")
                try:
                    with urllib.request.urlopen(request, timeout=10) as answer:
                        return answer.status, answer.read()
                except urllib.error.HTTPError as error:
                    return error.code, error.read()

            assert call("GET", "/v2/health/ready")[0] == 200  # probes need no token
            assert call("GET", "/v2/models/guarded")[0] == 401
            status, body = call("GET", "/v2/models/guarded", token="v2-secret-token")
            assert status == 200 and json.loads(body)["name"] == "guarded"
            assert call("POST", "/v2/models/guarded/infer", json.dumps(infer).encode())[0] == 401
            status, body = call("POST", "/v2/models/guarded/infer", json.dumps(infer).encode(), "v2-secret-token")
            assert status == 200 and json.loads(body)["outputs"][0]["data"] == [3.0, 4.0]
            big = json.dumps({**infer, "padding": "x" * 5000}).encode()
            assert call("POST", "/v2/models/guarded/infer", big, "v2-secret-token")[0] == 413
            slow = json.dumps({**infer, "inputs": [{**infer["inputs"][0], "data": [-1.0, 0.0]}]}).encode()
            status, body = call("POST", "/v2/models/guarded/infer", slow, "v2-secret-token")
            assert status == 504 and "request_timeout" in json.loads(body)["error"]
            assert call("GET", "/v2x")[0] == 404
        finally:
            client.delete_deployment("guarded")
