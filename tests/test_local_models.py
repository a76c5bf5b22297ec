"""Model loaders of the local target, and how the server process starts, fails and stops.

Loaders are called in-process (they are plain functions); the exit-status contract (2 bad spec, 3 model
that does not load, 4 port that cannot be bound, 0 after SIGTERM) is checked on real server processes.
"""

from __future__ import annotations

import json
import pickle
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import requests

from deployflow.errors import InvalidInputError
from deployflow.targets.local import models as loaders
from deployflow.targets.local.models import LoadedModel, detect_flavor, load_model, normalize_flavor
from deployflow.targets.local.server import ServerSpec, SpecError, parse_spec
from support import models as support
from support.models import SERVER_MODULE, ServerProcess, server_environment

DATA = np.array([[1.0, 2.0], [3.0, 4.0]])


# ---------------------------------------------------------------------------------------------------------
# pickle and joblib


def test_pickle_of_an_sklearn_model(tmp_path):
    model = support.fitted_logistic_regression(n_features=4)
    path = support.write_pickle(model, tmp_path / "model.pkl")
    loaded = load_model(str(path))
    assert loaded.flavor == "pickle"
    frame = pd.DataFrame(np.ones((3, 4)), columns=[f"f{i}" for i in range(4)])
    assert loaded.predict(frame).tolist() == model.predict(frame).tolist()
    assert loaded.accepts_params is False


def test_pickle_with_any_suffix_and_file_uri(tmp_path):
    path = support.write_pickle(support.AddOne(), tmp_path / "model.bin")
    for uri in (str(path), path.as_uri()):
        loaded = load_model(uri)
        assert loaded.flavor == "pickle"
        assert loaded.predict(DATA).tolist() == (DATA + 1).tolist()


@pytest.mark.parametrize("name, compress", [("model.joblib", 0), ("model.joblib", 3), ("model.z", 3)])
def test_joblib_is_detected_by_suffix(tmp_path, name, compress):
    path = support.write_joblib(support.Doubler(5.0), tmp_path / name, compress=compress)
    loaded = load_model(str(path))
    assert loaded.flavor == "joblib"
    assert loaded.accepts_params is True
    assert loaded.predict(DATA).tolist() == (DATA * 5).tolist()


def test_explicit_flavor_overrides_detection(tmp_path):
    path = support.write_joblib(support.AddOne(), tmp_path / "model.pkl")
    assert load_model(str(path), flavor="joblib").flavor == "joblib"
    pickled = support.write_pickle(support.AddOne(), tmp_path / "other.joblib")
    assert load_model(str(pickled), flavor="pickle").flavor == "pickle"


def test_params_are_passed_only_to_models_that_take_them(tmp_path):
    echo = load_model(str(support.write_pickle(support.ParamsEcho(), tmp_path / "echo.pkl")))
    assert echo.predict(DATA, {"k": 1}) == {"params": {"k": 1}}
    assert echo.predict(DATA) == {"params": None}
    plain = load_model(str(support.write_pickle(support.AddOne(), tmp_path / "plain.pkl")))
    # Ignored (with a warning in the log), as MLflow does, rather than a TypeError from the model.
    assert plain.predict(DATA, {"k": 1}).tolist() == (DATA + 1).tolist()


def test_missing_file(tmp_path):
    with pytest.raises(InvalidInputError, match="model file not found"):
        load_model(str(tmp_path / "absent.pkl"))
    with pytest.raises(InvalidInputError, match="model file not found"):
        load_model(str(tmp_path / "absent.pkl"), flavor="pickle")


def test_unloadable_pickle(tmp_path):
    garbage = tmp_path / "garbage.pkl"
    garbage.write_bytes(b"this is not a pickle")
    with pytest.raises(InvalidInputError, match="cannot load pickle file .*garbage.pkl"):
        load_model(str(garbage))


def test_pickle_of_a_class_from_a_missing_module(tmp_path):
    # A pickle that refers to code the server cannot import (the usual cause of "unloadable").
    path = tmp_path / "orphan.pkl"
    path.write_bytes(b"cno_such_module\nThing\n.")  # protocol 0: GLOBAL no_such_module.Thing, STOP
    with pytest.raises(InvalidInputError, match="No module named 'no_such_module'"):
        load_model(str(path))


def test_pickle_without_predict(tmp_path):
    path = support.write_pickle({"weights": [1, 2]}, tmp_path / "dict.pkl")
    with pytest.raises(InvalidInputError, match="has no predict method"):
        load_model(str(path))


def test_directory_that_is_not_an_mlflow_model(tmp_path):
    with pytest.raises(InvalidInputError, match="no MLmodel file"):
        load_model(str(tmp_path))
    with pytest.raises(InvalidInputError, match="is a directory"):
        load_model(str(tmp_path), flavor="pickle")


def test_python_reference_with_a_pickle_flavor_is_refused():
    with pytest.raises(InvalidInputError, match="use flavor 'python'"):
        load_model("python:support.models:add_one", flavor="pickle")


# ---------------------------------------------------------------------------------------------------------
# python: references


@pytest.mark.parametrize(
    "reference, params_accepted, expected",
    [
        ("python:support.models:add_one", False, DATA + 1),
        ("python:support.models:doubler", True, DATA * 2),
        ("python:support.models:AddOne", False, DATA + 1),
        ("python:support.models:Doubler", True, DATA * 2),
        ("python:support.models:doubler_instance", True, DATA * 3),
        ("python:support.models:doubler_instance.predict", True, DATA * 3),
    ],
    ids=["function", "function-params", "class", "class-params", "instance", "dotted-attribute"],
)
def test_python_module_references(reference, params_accepted, expected):
    loaded = load_model(reference)
    assert loaded.flavor == "python"
    assert loaded.accepts_params is params_accepted
    assert np.asarray(loaded.predict(DATA)).tolist() == expected.tolist()


def test_python_params_reach_the_model():
    loaded = load_model("python:support.models:doubler")
    assert loaded.predict(DATA, {"factor": 10}).tolist() == (DATA * 10).tolist()


def test_class_is_instantiated_once():
    loaded = load_model("python:support.models:Doubler")
    assert isinstance(loaded.raw, support.Doubler)
    assert loaded.predict_function.__self__ is loaded.raw


def test_python_file_reference(tmp_path):
    path = support.write_model_file(tmp_path)
    by_instance = load_model(f"python:{path}:model")
    assert by_instance.predict(DATA, {"p": 1}) == {"kind": "file-class", "params": {"p": 1}}
    by_function = load_model(f"python:{path}:predict")
    assert by_function.predict(DATA, {"p": 1}) == {"kind": "file-function"}
    assert by_function.accepts_params is False
    assert load_model(f"python:{path}:Model").predict(DATA)["kind"] == "file-class"


def test_python_flavor_accepts_a_reference_without_prefix():
    assert load_model("support.models:add_one", flavor="python").flavor == "python"


@pytest.mark.parametrize(
    "reference, message",
    [
        ("python:support.models:no_such_thing", "has no attribute 'no_such_thing'"),
        ("python:support.models:doubler_instance.nothing", "looked for 'nothing'"),
        ("python:support.no_such_module:model", "cannot import module 'support.no_such_module'"),
        ("python:support.models:no_predict", "neither callable nor has a predict method"),
        ("python:support.models:not_callable", "neither callable nor has a predict method"),
        ("python:support.models:NoPredict", "has no predict method"),
        ("python:support.models:NeedsArguments", "cannot instantiate class 'NeedsArguments'"),
        ("python:support.models", "must look like python:package.module:attr"),
        ("python:/no/such/dir/model.py:model", "model file not found"),
    ],
)
def test_bad_python_references(reference, message):
    with pytest.raises(InvalidInputError, match=message.replace("(", r"\(")):
        load_model(reference)


def test_python_file_that_raises_while_importing(tmp_path):
    path = tmp_path / "broken.py"
    path.write_text("raise RuntimeError('cannot start')\n", encoding="utf-8")
    with pytest.raises(InvalidInputError, match="RuntimeError: cannot start"):
        load_model(f"python:{path}:model")


# ---------------------------------------------------------------------------------------------------------
# MLflow and flavors


def mlflow_installed() -> bool:
    try:
        import mlflow  # noqa: F401
    except ImportError:
        return False
    return True


@pytest.mark.skipif(mlflow_installed(), reason="checks the message shown when MLflow is missing")
@pytest.mark.parametrize("uri", ["models:/iris/1", "runs:/0123abcd/model", "MLMODEL_DIR"])
def test_mlflow_uri_without_mlflow_names_the_extra(tmp_path, uri):
    if uri == "MLMODEL_DIR":
        (tmp_path / "MLmodel").write_text("flavors: {}\n", encoding="utf-8")
        uri = str(tmp_path)
    with pytest.raises(InvalidInputError, match=r"pip install 'deployflow\[mlflow\]'"):
        load_model(uri)


@pytest.mark.parametrize("alias", ["mlflow", "python_function", "pyfunc", "PyFunc"])
def test_mlflow_flavor_aliases(alias):
    assert normalize_flavor(alias) == "mlflow"


def test_unknown_flavor():
    with pytest.raises(InvalidInputError, match="unknown model flavor 'onnx'"):
        normalize_flavor("onnx")


def test_detection_rules(tmp_path):
    (tmp_path / "m.pkl").write_bytes(b"x")
    (tmp_path / "m.joblib").write_bytes(b"x")
    assert detect_flavor("python:a.b:c") == "python"
    assert detect_flavor("models:/m/1") == "mlflow"
    assert detect_flavor("runs:/r/model") == "mlflow"
    assert detect_flavor(str(tmp_path / "m.pkl")) == "pickle"
    assert detect_flavor(str(tmp_path / "m.joblib")) == "joblib"
    (tmp_path / "MLmodel").write_text("flavors: {}\n", encoding="utf-8")
    assert detect_flavor(str(tmp_path)) == "mlflow"


def test_loaded_model_calls_plain_callables():
    loaded = LoadedModel(lambda data: data * 2, "python", "lambda")
    assert loaded.predict(3) == 6
    assert loaded.predict(3, {"ignored": True}) == 6
    assert loaders._takes_params(len) is False  # a builtin without a Python signature


# ---------------------------------------------------------------------------------------------------------
# Spec validation (in-process) and the server process's exit statuses


def test_spec_defaults():
    spec = parse_spec({"version": 1, "name": "a", "model_uri": "m.pkl"})
    assert spec == ServerSpec(name="a", model_uri="m.pkl")
    assert (spec.host, spec.port, spec.workers, spec.request_timeout) == ("127.0.0.1", 0, 1, 60.0)
    assert spec.max_request_bytes == 104857600
    assert parse_spec({"version": 1, "name": "a", "model_uri": "m", "flavor": "pyfunc"}).flavor == "mlflow"
    assert parse_spec({"version": 1, "name": "a", "model_uri": "m", "request_timeout": None}).request_timeout is None


@pytest.mark.parametrize(
    "change, message",
    [
        ({"version": 2}, "version 2 is not supported"),
        ({"name": ""}, "'name' must be a non-empty string"),
        ({"model_uri": None}, "'model_uri' must be a non-empty string"),
        ({"port": 70000}, "'port' must be an integer from 0 to 65535"),
        ({"port": "eighty"}, "'port'"),
        ({"max_queued_bytes": 10, "max_request_bytes": 11}, "max_queued_bytes .* is smaller than max_request_bytes"),
        ({"header_timeout": 0}, "'header_timeout'"),
        ({"workers": 0}, "'workers'"),
        ({"max_request_bytes": True}, "'max_request_bytes'"),
        ({"request_timeout": -1}, "'request_timeout'"),
        ({"ready_file": "relative/ready.json"}, "'ready_file' must be an absolute path"),
        ({"ready_file": "/no/such/directory/ready.json"}, "'ready_file' must be a path in an existing directory"),
        ({"log_level": "loud"}, "'log_level'"),
        ({"flavor": "onnx"}, "unknown model flavor"),
    ],
)
def test_invalid_specs(change, message):
    with pytest.raises(SpecError, match=message):
        parse_spec({"version": 1, "name": "a", "model_uri": "m", **change})


def test_spec_missing_keys():
    with pytest.raises(SpecError, match="missing key"):
        parse_spec({"version": 1, "name": "a"})


def run_server(spec_path: Path, timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", SERVER_MODULE, "--spec", str(spec_path)],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=server_environment(),
    )


@pytest.mark.parametrize(
    "content",
    ["{not json", json.dumps({"version": 1, "name": "a"}), json.dumps({"version": 1, "name": "a", "model_uri": "m",
                                                                         "port": -5})],
    ids=["not-json", "missing-key", "bad-port"],
)
def test_invalid_spec_exits_2(tmp_path, content):
    spec_path = tmp_path / "spec.json"
    spec_path.write_text(content, encoding="utf-8")
    result = run_server(spec_path)
    assert result.returncode == 2, result.stderr
    assert "spec" in result.stderr
    assert "Traceback" not in result.stderr


def test_missing_spec_file_exits_2(tmp_path):
    result = run_server(tmp_path / "nowhere.json")
    assert result.returncode == 2
    assert "cannot read server spec" in result.stderr


def test_model_that_does_not_load_exits_3_with_its_message(tmp_path):
    ready = tmp_path / "ready.json"
    spec_path = tmp_path / "spec.json"
    spec_path.write_text(json.dumps({"version": 1, "name": "broken", "model_uri": str(tmp_path / "absent.pkl"),
                                     "ready_file": str(ready)}), encoding="utf-8")
    result = run_server(spec_path)
    assert result.returncode == 3, result.stderr
    assert "cannot load the model of deployment 'broken'" in result.stderr
    assert "model file not found" in result.stderr
    assert "Traceback" not in result.stderr
    assert not ready.exists()


def test_model_load_failure_shows_a_traceback_at_debug_level(tmp_path):
    spec_path = tmp_path / "spec.json"
    spec_path.write_text(json.dumps({"version": 1, "name": "b", "model_uri": "python:support.models:NeedsArguments",
                                     "log_level": "debug"}), encoding="utf-8")
    result = run_server(spec_path)
    assert result.returncode == 3
    assert "cannot instantiate class 'NeedsArguments'" in result.stderr
    assert "Traceback" in result.stderr


def test_busy_port_exits_4(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        spec_path = tmp_path / "spec.json"
        spec_path.write_text(json.dumps({"version": 1, "name": "a", "model_uri": "python:support.models:add_one",
                                         "port": port, "ready_file": str(tmp_path / "ready.json")}), encoding="utf-8")
        result = run_server(spec_path)
    assert result.returncode == 4, result.stderr
    assert f"cannot bind 127.0.0.1:{port}: " in result.stderr
    assert "in use" in result.stderr


def wait_for_file(path: Path, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.01)


def test_ready_file_and_graceful_stop(tmp_path):
    with ServerProcess(tmp_path, {"model_uri": "python:support.models:describe"}) as server:
        started = time.time()
        ready = server.wait_ready()
        assert set(ready) == {"pid", "host", "port", "url", "flavor", "started_at"}
        assert ready["pid"] == server.process.pid
        assert ready["host"] == "127.0.0.1" and ready["port"] > 0
        assert ready["url"] == f"http://127.0.0.1:{ready['port']}"
        assert ready["flavor"] == "python"
        assert abs(ready["started_at"] - started) < 60
        assert not list(tmp_path.glob("*.tmp"))

        # A request in flight when SIGTERM arrives is answered before the process exits with 0.
        result: dict[str, Any] = {}
        started = tmp_path / "call-started"
        slow = {"inputs": [1], "params": {"touch": str(started), "sleep": 0.8}}
        worker = threading.Thread(
            target=lambda: result.update(r=requests.post(server.url + "/invocations", json=slow, timeout=10))
        )
        worker.start()
        wait_for_file(started)
        server.process.send_signal(signal.SIGTERM)
        worker.join()
        assert result["r"].status_code == 200
        assert server.process.wait(10) == 0
    with pytest.raises(requests.ConnectionError):
        requests.get(ready["url"] + "/ping", timeout=2)


def test_sigint_also_stops_with_status_0(tmp_path):
    with ServerProcess(tmp_path, {"model_uri": "python:support.models:add_one"}) as server:
        server.wait_ready()
        server.process.send_signal(signal.SIGINT)
        assert server.process.wait(10) == 0


def test_token_never_reaches_files_or_argv(tmp_path):
    token = "secret-token-abcdef-123456"
    with ServerProcess(tmp_path, {"model_uri": "python:support.models:add_one", "log_level": "debug"},
                       token=token) as server:
        ready = server.wait_ready()
        assert requests.post(ready["url"] + "/invocations", json={"inputs": [1]}, timeout=5).status_code == 401
        import psutil

        assert token not in " ".join(psutil.Process(server.process.pid).cmdline())
    for path in tmp_path.iterdir():
        assert token not in path.read_text(encoding="utf-8", errors="replace"), path.name


def test_two_workers_share_one_port(tmp_path):
    with ServerProcess(tmp_path, {"model_uri": "python:support.models:describe", "workers": 2}) as server:
        ready = server.wait_ready(timeout=60)
        assert ready["pid"] == server.process.pid  # the supervisor; it owns the socket
        with requests.Session() as http:
            for _ in range(6):
                response = http.post(ready["url"] + "/invocations", json={"inputs": [[1, 2]]}, timeout=5)
                assert response.status_code == 200
        import psutil

        children = psutil.Process(server.process.pid).children()
        # The workers are fresh interpreters running the workers module (never forks of the supervisor).
        workers = [child for child in children if "deployflow.targets.local.workers" in child.cmdline()]
        assert len(workers) == 2
        assert server.stop() == 0


def test_two_workers_with_a_broken_model_exit_3(tmp_path):
    result_spec = tmp_path / "spec.json"
    result_spec.write_text(json.dumps({"version": 1, "name": "w", "model_uri": "python:support.models:nothing",
                                       "workers": 2}), encoding="utf-8")
    result = run_server(result_spec)
    assert result.returncode == 3
    assert "has no attribute 'nothing'" in result.stderr


def test_worker_that_cannot_load_the_model_exits_3(tmp_path):
    # Loads in the supervisor (which checks the model first) but not in the spawned workers.
    model_file = tmp_path / "parent_only.py"
    model_file.write_text(
        "import os\n"
        "if 'DEPLOYFLOW_SERVER_WORKER_SPEC' in os.environ:\n"
        "    raise RuntimeError('workers cannot load this model')\n"
        "def predict(data):\n"
        "    return data\n",
        encoding="utf-8",
    )
    ready = tmp_path / "ready.json"
    spec_path = tmp_path / "spec.json"
    spec_path.write_text(json.dumps({"version": 1, "name": "w", "model_uri": f"python:{model_file}:predict",
                                     "workers": 2, "ready_file": str(ready)}), encoding="utf-8")
    result = run_server(spec_path)
    assert result.returncode == 3, result.stderr
    assert "did not start" in result.stderr
    assert "workers cannot load this model" in result.stderr  # the worker's own error, in the same log
    assert not ready.exists()


def test_pickle_written_here_loads_in_the_server(tmp_path):
    # Pickles of test classes refer to "support.models"; the server finds it through PYTHONPATH.
    path = support.write_pickle(support.Doubler(4.0), tmp_path / "doubler.pkl")
    assert pickle.loads(path.read_bytes()).factor == 4.0
    with ServerProcess(tmp_path / "server", {"model_uri": str(path)}) as server:
        ready = server.wait_ready()
        response = requests.post(ready["url"] + "/invocations", json={"inputs": [1, 2], "params": {"factor": 0.5}},
                                 timeout=5)
        assert response.json() == {"predictions": [0.5, 1.0]}
        assert ready["flavor"] == "pickle"


def takes_the_array_path(loaded: LoadedModel) -> bool:
    return loaded.predict_function != loaded.raw.predict  # bound methods compare by function and object


def test_sklearn_models_with_feature_names_take_the_array_only_when_sklearn_would_build_it(tmp_path):
    """A plain estimator fitted on a DataFrame takes the array shortcut for frames whose columns are its
    feature names in order (sklearn itself would build that array; another order is still refused); a
    pipeline that selects columns by name gets the frame as it is, nullable dtypes included."""
    from sklearn.compose import ColumnTransformer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    named = support.fitted_logistic_regression(n_features=4)
    loaded = load_model(str(support.write_pickle(named, tmp_path / "named.pkl")))
    assert takes_the_array_path(loaded)
    frame = pd.DataFrame(np.random.default_rng(1).normal(size=(30, 4)), columns=[f"f{i}" for i in range(4)])
    np.testing.assert_array_equal(loaded.predict(frame), named.predict(frame))
    with pytest.raises(ValueError, match="feature names"):
        loaded.predict(frame[["f1", "f0", "f2", "f3"]])

    by_name = ColumnTransformer([("scaled", StandardScaler(), ["f2", "f0"])], remainder="drop")
    pipeline = make_pipeline(by_name, LogisticRegression()).fit(frame, (frame["f0"] > 0).astype(int))
    loaded_pipeline = load_model(str(support.write_pickle(pipeline, tmp_path / "pipeline.pkl")))
    assert not takes_the_array_path(loaded_pipeline)
    np.testing.assert_array_equal(loaded_pipeline.predict(frame), pipeline.predict(frame))
    nullable = frame.assign(f1=pd.array(range(30), dtype="Int64"))
    np.testing.assert_array_equal(loaded_pipeline.predict(nullable), pipeline.predict(nullable))


def test_sklearn_models_fitted_on_arrays_score_numeric_frames_as_arrays(tmp_path):
    """Without feature names, sklearn turns a frame whose columns share one numpy number dtype into the
    array the shortcut builds; any other frame (mixed, nullable, text) goes to sklearn unchanged."""
    import warnings

    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(2)
    features = rng.normal(size=(40, 3))
    plain = LogisticRegression().fit(features, (features[:, 0] > 0).astype(int))
    loaded = load_model(str(support.write_pickle(plain, tmp_path / "plain.pkl")))
    assert takes_the_array_path(loaded)
    frame = pd.DataFrame(features, columns=["a", "b", "c"])
    expected = plain.predict(features)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no "X has feature names" warning per request
        np.testing.assert_array_equal(loaded.predict(frame), expected)
        np.testing.assert_array_equal(loaded.predict(frame.astype("float32")), plain.predict(features.astype("float32")))
        whole = (frame * 10).round().astype("int64")
        np.testing.assert_array_equal(loaded.predict(whole), plain.predict(whole.to_numpy()))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # sklearn's own path warns about the names, as it does in-process
        mixed = frame.assign(c=(frame["c"] * 1000).round().astype("int64"))
        np.testing.assert_array_equal(loaded.predict(mixed), plain.predict(mixed))
        nullable = frame.assign(c=pd.array((frame["c"] * 10).round().astype(int), dtype="Int64"))
        np.testing.assert_array_equal(loaded.predict(nullable), plain.predict(nullable))
        with pytest.raises(ValueError) as ours:
            loaded.predict(frame.assign(c="text"))
        with pytest.raises(ValueError) as theirs:
            plain.predict(frame.assign(c="text"))
    assert str(ours.value) == str(theirs.value)


def test_array_fitted_pipelines_with_user_code_keep_the_frame(tmp_path):
    # A FunctionTransformer's function, or a class from outside sklearn, sees the input as given: a
    # frame and an array may differ to it.
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import FunctionTransformer

    from support.model_zoo import Doubling

    features = np.random.default_rng(3).normal(size=(20, 2))
    pipeline = make_pipeline(FunctionTransformer(np.abs), LogisticRegression()).fit(features, features[:, 0] > 0)
    assert not takes_the_array_path(load_model(str(support.write_pickle(pipeline, tmp_path / "f.pkl"))))
    checked = make_pipeline(FunctionTransformer(np.abs, validate=True), LogisticRegression()).fit(features, features[:, 0] > 0)
    assert takes_the_array_path(load_model(str(support.write_pickle(checked, tmp_path / "checked.pkl"))))
    outside = make_pipeline(Doubling(), LogisticRegression()).fit(features, features[:, 0] > 0)
    assert not takes_the_array_path(load_model(str(support.write_pickle(outside, tmp_path / "outside.pkl"))))
