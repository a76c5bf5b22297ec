"""The local target's V2 routes as pure functions (deployflow.targets.local.openinference), in-process."""

from __future__ import annotations

import json
import struct

import numpy as np
import pandas as pd
import pytest
from deployflow import __version__
from deployflow import openinference as codec
from deployflow.jsoncodec import dumps
from deployflow.targets.local import openinference as v2
from deployflow.targets.local.enforcement import InputEnforcer
from deployflow.targets.local.models import LoadedModel
from deployflow.targets.local.signature import parse_signature

SIGNATURE = parse_signature({"inputs": json.dumps([
    {"type": "double", "name": "a", "required": True},
    {"type": "long", "name": "n", "required": True},
    {"type": "string", "name": "s", "required": True},
])})
TENSOR_SIGNATURE = parse_signature({"inputs": json.dumps([
    {"type": "tensor", "tensor-spec": {"dtype": "float32", "shape": [-1, 4]}},
])})


def model_of(function, flavor="python", accepts_params=False):
    return LoadedModel(function, flavor, "a test model", accepts_params=accepts_params)


def doubled(data):
    return np.asarray(data) * 2


@pytest.mark.parametrize(
    ("method", "path", "kind"),
    [("GET", "/v2/health/live", "live"), ("HEAD", "/v2/health/ready", "ready"), ("GET", "/v2", "server"),
     ("GET", "/v2/models/iris", "model"), ("GET", "/v2/models/iris/ready", "model_ready"),
     ("POST", "/v2/models/iris/infer", "infer"), ("POST", "/v2/models/iris/versions/3/infer", "infer"),
     ("GET", "/v2/models/iris/versions/3/ready", "model_ready")],
)
def test_routes(method, path, kind):
    route = v2.match(method, path, "iris", "3")
    assert route is not None and route.kind == kind and route.status == 200
    assert route.version == ("3" if "/versions/" in path else None)


@pytest.mark.parametrize(
    ("method", "path", "status", "message"),
    [("GET", "/v2/models/other", 404, "Model other not found"),
     ("POST", "/v2/models/other/infer", 404, "Model other not found"),
     ("GET", "/v2/models/iris/versions/9/ready", 404, "Model iris with version 9 not found"),
     ("GET", "/v2/models/iris/infer", 405, "use POST"),
     ("POST", "/v2/health/live", 405, "use GET, HEAD"),
     ("GET", "/v2/models/iris/explain", 404, "No V2 route"),
     ("GET", "/v2/repository/index", 404, "No V2 route")],
)
def test_route_errors_are_error_bodies(method, path, status, message):
    route = v2.match(method, path, "iris")
    assert route.kind == "error" and route.status == status
    assert message in json.loads(route.body)["error"]
    assert (route.allow is not None) == (status == 405)


def test_paths_outside_v2_are_not_matched():
    for path in ("/invocations", "/ping", "/v2x", "/v20/models/iris"):
        assert v2.match("GET", path, "iris") is None


def test_server_and_model_metadata():
    assert json.loads(v2.describe_server()) == {"name": "deployflow", "version": __version__, "extensions": []}
    columns = json.loads(v2.describe_model("iris", model_of(doubled, "mlflow"), SIGNATURE, "1"))
    assert columns == {
        "name": "iris", "versions": ["1"], "platform": "deployflow/mlflow", "outputs": [],
        "inputs": [{"name": "a", "datatype": "FP64", "shape": [-1, 1]}, {"name": "n", "datatype": "INT64", "shape": [-1, 1]},
                   {"name": "s", "datatype": "BYTES", "shape": [-1, 1]}],
        "parameters": {"content_type": "pd"},
    }
    tensor = json.loads(v2.describe_model("t", model_of(doubled), TENSOR_SIGNATURE))
    assert tensor["inputs"] == [{"name": "input-0", "datatype": "FP32", "shape": [-1, 4]}]
    assert tensor["versions"] == [] and "parameters" not in tensor
    assert json.loads(v2.describe_model("p", model_of(doubled)))["inputs"] == []


def test_signature_of_reads_an_mlflow_model_directory(tmp_path):
    (tmp_path / "MLmodel").write_text(
        "flavors:\n  python_function:\n    loader_module: x\nsignature:\n"
        f"  inputs: '{json.dumps([{'type': 'double', 'name': 'a'}])}'\n"
    )
    signature = v2.signature_of(str(tmp_path), "mlflow")
    assert signature is not None and [spec.name for spec in signature.inputs] == ["a"]
    assert v2.signature_of(f"file://{tmp_path}", None) == signature
    assert v2.signature_of(str(tmp_path), "pickle") is None
    assert v2.signature_of(str(tmp_path / "missing"), None) is None


def test_infer_round_trip_with_the_client_codec():
    """The v2 target's encoder, this server's job, the v2 target's decoder: one mechanism."""
    model = model_of(doubled)
    request = dumps(codec.encode_request(np.array([[1.0, 2.0], [3.0, 4.0]]), request_id="r-1"))
    status, body = v2.infer(model, request, "iris", "3")
    assert status == 200
    answer = json.loads(body)
    assert answer["model_name"] == "iris" and answer["model_version"] == "3" and answer["id"] == "r-1"
    assert codec.predictions_from_response(answer)["predictions"] == [[2.0, 4.0], [6.0, 8.0]]

    frame = pd.DataFrame({"a": [1.0, 2.0], "b": [10.0, 20.0]})
    status, body = v2.infer(model_of(lambda data: (data["a"] + data["b"]).to_numpy()), dumps(codec.encode_request(frame)), "m")
    assert status == 200 and json.loads(body)["outputs"] == [{"name": "predict", "shape": [2, 1], "datatype": "FP64", "data": [11.0, 22.0]}]


def test_params_outputs_and_the_model_input_forms():
    seen = {}

    def recorder(data, params=None):
        seen["data"], seen["params"] = data, params
        return {"first": np.array([1, 2]), "second": np.array([3.0, 4.0])}

    model = model_of(recorder, accepts_params=True)
    request = {
        "inputs": [{"name": "x", "shape": [2], "datatype": "INT32", "data": [5, 6]},
                   {"name": "y", "shape": [2], "datatype": "BOOL", "data": [True, False]}],
        "parameters": {"k": 3, "binary_data_output": True}, "outputs": [{"name": "second"}],
    }
    status, body = v2.infer(model, dumps(request), "m")
    assert status == 200
    assert [o["name"] for o in json.loads(body)["outputs"]] == ["second"]
    assert set(seen["data"]) == {"x", "y"} and seen["data"]["x"].dtype == np.int32
    assert seen["params"] == {"k": 3}
    request["outputs"] = [{"name": "third"}]
    status, body = v2.infer(model, dumps(request), "m")
    assert status == 400 and "has no output 'third'" in json.loads(body)["error"]


def test_binary_tensor_data_requests_are_read():
    header = json.dumps({"inputs": [{"name": "x", "datatype": "FP64", "shape": [1, 2], "parameters": {"binary_data_size": 16}}]}).encode()
    body = header + struct.pack("<2d", 1.5, 2.5)
    status, answer = v2.infer(model_of(doubled), body, "m", header_length=str(len(header)))
    assert status == 200 and json.loads(answer)["outputs"][0]["data"] == [3.0, 5.0]
    for length in ("x", "-1", str(len(body) + 1)):
        status, answer = v2.infer(model_of(doubled), body, "m", header_length=length)
        assert status == 400 and "Inference-Header-Content-Length" in json.loads(answer)["error"]


@pytest.mark.parametrize(
    ("body", "message"),
    [(b"not json", "not valid JSON"), (b"[1]", "JSON object"), (b'{"inputs": []}', "non-empty list"),
     (b'{"inputs": [{"name": "x", "shape": [2], "datatype": "FP64", "data": [1]}]}', "needs 2 values"),
     (b'{"inputs": [{"name": "x", "shape": [1], "datatype": "FP64", "data": [1]}], "outputs": "all"}', "'outputs'")],
)
def test_bad_requests_are_400_with_an_error_body(body, message):
    status, answer = v2.infer(model_of(doubled), body, "m")
    assert status == 400 and message in json.loads(answer)["error"]


def test_model_failures_signature_refusals_and_unwritable_answers():
    def broken(data):
        raise ValueError("X has 3 features")

    status, answer = v2.infer(model_of(broken), dumps(codec.encode_request(np.ones((1, 3)))), "m")
    assert (status, json.loads(answer)) == (400, {"error": "ValueError: X has 3 features"})

    enforcer = InputEnforcer(SIGNATURE)
    checked = model_of(lambda data: enforcer(data)["a"].to_numpy())
    status, answer = v2.infer(checked, dumps(codec.encode_request(pd.DataFrame({"a": [1.0]}))), "m")
    assert status == 400 and "n" in json.loads(answer)["error"]

    status, answer = v2.infer(model_of(lambda data: np.array([object()])), dumps(codec.encode_request(np.ones(1))), "m")
    assert status == 500 and "no V2 form" in json.loads(answer)["error"]
