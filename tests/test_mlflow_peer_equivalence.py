"""The local target answers as ``mlflow models serve`` does: the real MLflow, request by request.

MLflow 3.17.2 lives in a side venv (:mod:`support.peers`, built on first use; the tests skip only when
the package index is unreachable). In that venv a script fits five small models and saves them with
MLflow itself, each with a signature inferred from a DataFrame:

* ``sklearn_lr``: a scikit-learn LogisticRegression on three double columns (``mlflow.sklearn``);
* ``pipeline``: a Pipeline of a ColumnTransformer (scaled doubles, one-hot strings) and a
  LogisticRegression (``mlflow.sklearn``);
* ``xgboost`` and ``lightgbm``: regressors on three double columns (``mlflow.xgboost``,
  ``mlflow.lightgbm``);
* ``pyfunc``: a ``PythonModel`` defined in a module file (passed as ``code_paths``) answering a frame.

Each model is served twice, once per session: by ``mlflow models serve --env-manager local`` from the
side venv, and by deployflow's ``local`` target. The scikit-learn, xgboost and lightgbm deployments are
created from this test process (no MLflow installed here: the local target must read those model
directories itself); the custom pyfunc needs MLflow to load at all, so its deployment is created with
the side venv's Python (deployflow is installed there in editable mode), whose server then runs there.
``DEPLOYFLOW_PEER_LOCAL=peer`` creates every deployment that way, which compares the scoring servers
alone, with MLflow loading every model on both sides.

Every model gets the same requests (good frames in each input form, CSV, a missing column, an extra
column, an int or a string where a double is expected, NaN and null); each test sends one request to
both servers and requires the same HTTP status and, for a success, the same predictions (floats within
1e-5 relative, NaN equal to NaN). A mismatch prints both answers side by side.
"""

from __future__ import annotations

import json
import math
import os
import signal
import socket
import subprocess
import textwrap
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests

from deployflow import get_deploy_client
from support.peers import Peer, PeerUnavailable, mlflow_peer, progress_printer

# The first build of the side venv downloads MLflow and its dependencies; it happens in the set-up of
# the first test here, under this file's time limit.
pytestmark = pytest.mark.timeout(1800)

MODELS = ("sklearn_lr", "pipeline", "xgboost", "lightgbm", "pyfunc")
#: Models whose local deployment always starts from the side venv (loading them needs MLflow).
NEEDS_MLFLOW_TO_LOAD = frozenset({"pyfunc"})
START_TIMEOUT = 180.0

SAVE_MODELS = textwrap.dedent(
    '''
    """Fit and save the comparison's models with MLflow (run with the side venv's Python)."""
    import json
    import sys
    from pathlib import Path

    import lightgbm
    import mlflow
    import numpy as np
    import pandas as pd
    import xgboost
    from mlflow.models import infer_signature
    from sklearn.compose import ColumnTransformer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    out = Path(sys.argv[1])
    rng = np.random.default_rng(7)
    rows = 80
    numbers = pd.DataFrame(
        {"a": rng.normal(size=rows), "b": rng.normal(size=rows), "c": rng.uniform(-2, 2, size=rows)}
    )
    people = pd.DataFrame(
        {
            "age": rng.uniform(18, 80, size=rows).round(1),
            "income": rng.normal(50.0, 15.0, size=rows).round(2),
            "city": rng.choice(["paris", "lima", "oslo"], size=rows),
        }
    )
    label = (numbers.a + numbers.b > 0).astype(int)
    people_label = ((people.age > 45) ^ (people.city == "lima")).astype(int)
    target = numbers.a * 3 - numbers.b + numbers.c ** 2

    def sample(frame):
        return frame.head(6).to_dict(orient="split", index=False)

    info = {}

    lr = LogisticRegression().fit(numbers, label)
    mlflow.sklearn.save_model(lr, out / "sklearn_lr", signature=infer_signature(numbers, lr.predict(numbers)))
    info["sklearn_lr"] = {"sample": sample(numbers), "doubles": ["a", "b", "c"]}

    pipeline = Pipeline(
        [
            ("prepare", ColumnTransformer(
                [("scale", StandardScaler(), ["age", "income"]),
                 ("encode", OneHotEncoder(handle_unknown="ignore"), ["city"])]
            )),
            ("classify", LogisticRegression()),
        ]
    ).fit(people, people_label)
    mlflow.sklearn.save_model(
        pipeline, out / "pipeline", signature=infer_signature(people, pipeline.predict(people))
    )
    info["pipeline"] = {"sample": sample(people), "doubles": ["age", "income"]}

    booster = xgboost.XGBRegressor(n_estimators=12, max_depth=3, random_state=0).fit(numbers, target)
    mlflow.xgboost.save_model(
        booster, out / "xgboost", signature=infer_signature(numbers, booster.predict(numbers))
    )
    info["xgboost"] = {"sample": sample(numbers), "doubles": ["a", "b", "c"]}

    gbm = lightgbm.LGBMRegressor(n_estimators=12, num_leaves=7, min_child_samples=5, verbose=-1).fit(numbers, target)
    mlflow.lightgbm.save_model(gbm, out / "lightgbm", signature=infer_signature(numbers, gbm.predict(numbers)))
    info["lightgbm"] = {"sample": sample(numbers), "doubles": ["a", "b", "c"]}

    code = out / "pyfunc_code"
    code.mkdir()
    (code / "peer_scoring.py").write_text(
        "import pandas as pd\\n"
        "from mlflow.pyfunc import PythonModel\\n"
        "\\n"
        "class WeightedSum(PythonModel):\\n"
        "    def predict(self, context, model_input, params=None):\\n"
        "        score = model_input['a'] * 2.0 + model_input['b']\\n"
        "        return pd.DataFrame({'score': score, 'positive': (score > 0).astype('int64')})\\n"
    )
    sys.path.insert(0, str(code))
    from peer_scoring import WeightedSum

    two = numbers[["a", "b"]]
    answer = WeightedSum().predict(None, two)
    mlflow.pyfunc.save_model(
        out / "pyfunc", python_model=WeightedSum(), code_paths=[str(code / "peer_scoring.py")],
        signature=infer_signature(two, answer),
    )
    info["pyfunc"] = {"sample": sample(two), "doubles": ["a", "b"]}

    (out / "models.json").write_text(json.dumps(info))
    '''
)

CREATE_IN_PEER = textwrap.dedent(
    """
    import json, sys
    from deployflow import get_deploy_client

    client = get_deploy_client(sys.argv[1])
    for name, model_dir in json.loads(sys.argv[2]).items():
        try:
            client.create_deployment(name, model_dir, config={"startup_timeout": sys.argv[3]})
        except Exception as exc:
            print(json.dumps({"name": name, "error": f"{type(exc).__name__}: {exc}"}))
        else:
            print(json.dumps({"name": name, "error": None}))
    """
)


# --------------------------------------------------------------------------------------------------
# The requests
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Request:
    body: bytes
    content_type: str = "application/json"

    def describe(self, limit: int = 300) -> str:
        text = self.body.decode("utf-8", "replace")
        return f"POST /invocations ({self.content_type}) {text[:limit]}{'...' if len(text) > limit else ''}"


def _json(payload: Any) -> Request:
    return Request(json.dumps(payload).encode())  # json.dumps writes NaN as MLflow's parser reads it


def _split(columns: list[str], data: list[list[Any]]) -> Request:
    return _json({"dataframe_split": {"columns": columns, "data": data}})


def _records(columns: list[str], data: list[list[Any]]) -> list[dict[str, Any]]:
    return [dict(zip(columns, row)) for row in data]


def _with_column(columns: list[str], data: list[list[Any]], column: str, change: Callable[[Any, int], Any]) -> list[list[Any]]:
    where = columns.index(column)
    return [[change(value, i) if j == where else value for j, value in enumerate(row)] for i, row in enumerate(data)]


def _csv(columns: list[str], data: list[list[Any]]) -> Request:
    lines = [",".join(columns)] + [",".join(str(value) for value in row) for row in data]
    return Request(("\n".join(lines) + "\n").encode(), "text/csv")


def _good(columns, data, double):
    return _split(columns, data)


def _records_form(columns, data, double):
    return _json({"dataframe_records": _records(columns, data)})


def _instances(columns, data, double):
    return _json({"instances": _records(columns, data)})


def _inputs_columns(columns, data, double):
    return _json({"inputs": {column: [row[i] for row in data] for i, column in enumerate(columns)}})


def _inputs_rows(columns, data, double):
    return _json({"inputs": data})


def _csv_form(columns, data, double):
    return _csv(columns, data)


def _missing_column(columns, data, double):
    keep = [i for i, column in enumerate(columns) if column != double]
    return _split([columns[i] for i in keep], [[row[i] for i in keep] for row in data])


def _extra_column(columns, data, double):
    return _split([*columns, "unused"], [[*row, float(i)] for i, row in enumerate(data)])


def _int_for_double(columns, data, double):
    return _split(columns, _with_column(columns, data, double, lambda value, i: round(value)))


def _string_for_double(columns, data, double):
    return _split(columns, _with_column(columns, data, double, lambda value, i: str(value)))


def _word_for_double(columns, data, double):
    return _split(columns, _with_column(columns, data, double, lambda value, i: "high" if i == 1 else value))


def _nan(columns, data, double):
    return _split(columns, _with_column(columns, data, double, lambda value, i: math.nan if i == 2 else value))


def _null(columns, data, double):
    return _json({"dataframe_records": _records(columns, _with_column(columns, data, double, lambda v, i: None if i == 0 else v))})


#: Case name -> how its request is made from a model's sample (columns, rows, the double column to vary).
CASES: dict[str, Callable[[list[str], list[list[Any]], str], Request]] = {
    "split": _good,
    "records": _records_form,
    "instances": _instances,
    "inputs_columns": _inputs_columns,
    "inputs_rows": _inputs_rows,
    "csv": _csv_form,
    "missing_column": _missing_column,
    "extra_column": _extra_column,
    "int_for_double": _int_for_double,
    "string_for_double": _string_for_double,
    "word_for_double": _word_for_double,
    "nan": _nan,
    "null": _null,
}


# --------------------------------------------------------------------------------------------------
# Servers
# --------------------------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@dataclass
class MlflowServer:
    model: str
    url: str
    process: subprocess.Popen
    log_path: Path

    def log_tail(self, lines: int = 25) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def stop(self) -> None:
        # `mlflow models serve` runs uvicorn as a child: stop the whole session it was started in.
        if self.process.poll() is None:
            try:
                os.killpg(self.process.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=5)
        else:
            try:
                os.killpg(self.process.pid, signal.SIGKILL)  # a uvicorn left behind by a dead parent
            except (ProcessLookupError, PermissionError):
                pass


def _start_mlflow_server(peer: Peer, model: str, model_dir: Path, logs: Path) -> MlflowServer:
    port = _free_port()
    log_path = logs / f"mlflow-{model}.log"
    log = log_path.open("wb")
    process = subprocess.Popen(
        [str(peer.bin("mlflow")), "models", "serve", "-m", str(model_dir), "--env-manager", "local",
         "-h", "127.0.0.1", "-p", str(port), "-w", "1"],
        env=peer.environment(), stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        start_new_session=True,
    )
    log.close()
    return MlflowServer(model, f"http://127.0.0.1:{port}", process, log_path)


def _wait_for_ping(server: MlflowServer, deadline: float) -> None:
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise AssertionError(
                f"`mlflow models serve` for {server.model} exited with {server.process.returncode}:\n{server.log_tail()}"
            )
        try:
            if requests.get(server.url + "/ping", timeout=2).status_code == 200:
                return
        except requests.RequestException:
            pass
        time.sleep(0.25)
    raise AssertionError(f"`mlflow models serve` for {server.model} did not answer /ping in time:\n{server.log_tail()}")


def _outcomes(stdout: str) -> dict[str, str | None]:
    """The create script's lines: deployment name -> its error, or None when it serves."""
    found = {}
    for line in stdout.splitlines():
        try:
            outcome = json.loads(line)
        except ValueError:
            continue  # something a library printed
        if isinstance(outcome, dict) and "name" in outcome:
            found[outcome["name"]] = outcome["error"]
    return found


@dataclass
class Fleet:
    """Both servers of every model; a model whose local deployment failed holds its error instead."""

    mlflow: dict[str, MlflowServer]
    local: dict[str, str]
    local_errors: dict[str, str]
    samples: dict[str, dict[str, Any]]

    def __repr__(self) -> str:  # pytest prints fixtures of a failing test: keep it to one line
        return f"Fleet(local={sorted(self.local)}, failed={sorted(self.local_errors)})"


@pytest.fixture(scope="session")
def peer(pytestconfig) -> Peer:
    try:
        return mlflow_peer(progress_printer(pytestconfig))
    except PeerUnavailable as exc:
        pytest.skip(f"MLflow side venv unavailable: {exc}")


@pytest.fixture(scope="session")
def saved_models(peer: Peer, tmp_path_factory) -> Path:
    directory = tmp_path_factory.mktemp("mlflow-models")
    script = directory / "save_models.py"
    script.write_text(SAVE_MODELS, encoding="utf-8")
    peer.run(["python", script, directory], timeout=600, check=True)
    return directory


@pytest.fixture(scope="session")
def fleet(peer: Peer, saved_models: Path, tmp_path_factory, pytestconfig) -> Any:
    report = progress_printer(pytestconfig)
    logs = tmp_path_factory.mktemp("mlflow-serve-logs")
    state = tmp_path_factory.mktemp("local-state")
    target = f"local://{state}"
    samples = json.loads((saved_models / "models.json").read_text())
    started = time.monotonic()
    mlflow_servers: dict[str, MlflowServer] = {}
    client = get_deploy_client(target)
    errors: dict[str, str] = {}
    in_peer = {m for m in MODELS if m in NEEDS_MLFLOW_TO_LOAD or os.environ.get("DEPLOYFLOW_PEER_LOCAL") == "peer"}
    try:
        for model in MODELS:  # they load while the local deployments start
            mlflow_servers[model] = _start_mlflow_server(peer, model, saved_models / model, logs)
        here = [m for m in MODELS if m not in in_peer]
        for model in here:
            try:
                client.create_deployment(model, str(saved_models / model), config={"wait": "false"})
            except Exception as exc:  # reported by every test of the model
                errors[model] = f"create_deployment failed: {type(exc).__name__}: {exc}"
        peer_run = peer.run(
            ["python", "-c", CREATE_IN_PEER, target, json.dumps({m: str(saved_models / m) for m in sorted(in_peer)}),
             str(START_TIMEOUT)],
            timeout=START_TIMEOUT + 60,
        )
        outcomes = _outcomes(peer_run.stdout)
        for model in sorted(in_peer):
            if model not in outcomes:
                errors[model] = f"the side venv's create script failed:\n{peer_run.stderr[-3000:]}"
            elif outcomes[model]:
                errors[model] = f"create_deployment in the side venv failed: {outcomes[model]}"
        for model in here:
            if model in errors:
                continue
            try:
                client.wait_for_deployment(model, timeout=START_TIMEOUT)
            except Exception as exc:
                errors[model] = f"the deployment did not start: {type(exc).__name__}: {exc}"
        local = {m: client.get_deployment(m)["url"] for m in MODELS if m not in errors}
        deadline = time.monotonic() + START_TIMEOUT
        for server in mlflow_servers.values():
            _wait_for_ping(server, deadline)
        report(
            f"equivalence: {len(MODELS)} `mlflow models serve` and {len(local)} local servers up in "
            f"{time.monotonic() - started:.0f} s" + (f"; local failures: {', '.join(sorted(errors))}" if errors else "")
        )
        yield Fleet(mlflow_servers, local, errors, samples)
    finally:
        for server in mlflow_servers.values():
            server.stop()
        for record in client.list_deployments():
            client.delete_deployment(record["name"], config={"stop_timeout": "10"})
        client.close()


# --------------------------------------------------------------------------------------------------
# Comparing answers
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Answer:
    status: int
    text: str

    @property
    def document(self) -> Any:
        try:
            return json.loads(self.text)  # reads NaN and Infinity, as MLflow writes them
        except ValueError:
            return None

    def describe(self, limit: int = 600) -> str:
        text = self.text.strip()
        document = self.document
        if isinstance(document, dict) and "message" in document:
            short = {key: document[key] for key in ("error_code", "message") if key in document}
            text = json.dumps(short)  # MLflow adds a stack trace; the code and message are what matter
        return f"{self.status} {text[:limit]}{'...' if len(text) > limit else ''}"


def _send(url: str, request: Request) -> Answer:
    response = requests.post(
        url + "/invocations", data=request.body, headers={"Content-Type": request.content_type}, timeout=60
    )
    return Answer(response.status_code, response.text)


def _differences(expected: Any, actual: Any, path: str = "predictions") -> list[str]:
    """Where ``actual`` differs from ``expected``: floats within 1e-5 relative, NaN equal to NaN."""
    if isinstance(expected, bool) or isinstance(actual, bool):
        return [] if expected == actual and type(expected) is type(actual) else [f"{path}: {expected!r} != {actual!r}"]
    if isinstance(expected, (int, float)) and isinstance(actual, (int, float)):
        if type(expected) is not type(actual):  # 1 and 1.0 read back as different dtypes
            return [f"{path}: {expected!r} ({type(expected).__name__}) != {actual!r} ({type(actual).__name__})"]
        if isinstance(expected, float) and isinstance(actual, float) and math.isnan(expected) and math.isnan(actual):
            return []
        if math.isclose(expected, actual, rel_tol=1e-5, abs_tol=1e-9):
            return []
        return [f"{path}: {expected!r} != {actual!r}"]
    if isinstance(expected, dict) and isinstance(actual, dict):
        if set(expected) != set(actual):
            return [f"{path}: keys {sorted(expected)} != {sorted(actual)}"]
        return [d for key in expected for d in _differences(expected[key], actual[key], f"{path}.{key}")]
    if isinstance(expected, list) and isinstance(actual, list):
        if len(expected) != len(actual):
            return [f"{path}: {len(expected)} items != {len(actual)} items"]
        return [d for i, (e, a) in enumerate(zip(expected, actual)) for d in _differences(e, a, f"{path}[{i}]")]
    return [] if expected == actual else [f"{path}: {expected!r} != {actual!r}"]


def compare(expected: Answer, actual: Answer) -> list[str]:
    """The differences that matter between MLflow's answer and ours: the status, then the predictions."""
    if expected.status != actual.status:
        return [f"HTTP status {expected.status} != {actual.status}"]
    if expected.status != 200:
        return []
    want, got = expected.document, actual.document
    if not isinstance(got, dict) or "predictions" not in got:
        return [f"the local answer has no 'predictions': {actual.text[:200]!r}"]
    return _differences(want.get("predictions"), got.get("predictions"))


# --------------------------------------------------------------------------------------------------
# The tests
# --------------------------------------------------------------------------------------------------


def _request_for(fleet: Fleet, model: str, case: str) -> Request:
    sample = fleet.samples[model]
    columns, data = sample["sample"]["columns"], sample["sample"]["data"]
    return CASES[case](columns, data, sample["doubles"][0])


@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("model", MODELS)
def test_local_server_answers_as_mlflow_models_serve(fleet: Fleet, model: str, case: str) -> None:
    if model in fleet.local_errors:
        pytest.fail(f"deployflow's local target cannot serve the MLflow-saved {model} model: {fleet.local_errors[model]}")
    request = _request_for(fleet, model, case)
    expected = _send(fleet.mlflow[model].url, request)
    actual = _send(fleet.local[model], request)
    differences = compare(expected, actual)
    assert not differences, (
        f"{model} / {case}: the local server answers differently from `mlflow models serve`\n"
        f"  request:             {request.describe()}\n"
        f"  mlflow models serve: {expected.describe()}\n"
        f"  deployflow local:    {actual.describe()}\n"
        f"  differences:         {'; '.join(differences[:8])}{' ...' if len(differences) > 8 else ''}"
    )


def test_the_comparison_sees_what_it_must() -> None:
    """The comparison itself: equal answers pass; a status, a value, a missing NaN or a shape fail."""
    ok = Answer(200, '{"predictions": [1.0, NaN, {"x": 2}]}')
    assert compare(ok, Answer(200, '{"predictions": [1.000001, NaN, {"x": 2}]}')) == []
    assert compare(ok, Answer(400, '{"error_code": "BAD_REQUEST"}')) == ["HTTP status 200 != 400"]
    assert compare(ok, Answer(200, '{"predictions": [1.1, NaN, {"x": 2}]}'))
    assert compare(ok, Answer(200, '{"predictions": [1.0, 0.0, {"x": 2}]}'))
    assert compare(ok, Answer(200, '{"predictions": [1.0, NaN]}'))
    assert compare(ok, Answer(200, '{"predictions": [1.0, NaN, {"y": 2}]}'))
    assert compare(Answer(200, '{"predictions": [1]}'), Answer(200, '{"predictions": [true]}'))
    assert compare(Answer(200, '{"predictions": [1]}'), Answer(200, '{"predictions": [1.0]}'))
    assert compare(Answer(400, "{}"), Answer(400, '{"error_code": "X"}')) == []
