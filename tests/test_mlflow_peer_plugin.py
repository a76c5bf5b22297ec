"""deployflow's targets driven by the real MLflow: its CLI and ``mlflow.deployments.get_deploy_client``.

deployflow registers ``local`` and ``serving`` (``serving+http``, ``serving+https``) in MLflow's
``mlflow.deployments`` entry-point group through :mod:`deployflow.mlflow_plugin`. These tests run
MLflow 3.17.2's own CLI and API in the side venv (:mod:`support.peers`, where deployflow is installed in
editable mode, so the entry points are live), against a model MLflow saved itself. Everything the
commands leave behind is deleted from this process, which reads the same state directory.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import textwrap
import time
import tomllib
from pathlib import Path
from typing import Any

import pytest
import requests

from deployflow import get_deploy_client
from deployflow.registry import load_target
from support.peers import REPO, Peer, PeerUnavailable, mlflow_peer, progress_printer

pytestmark = pytest.mark.timeout(1800)  # the first test may build the side venv

ROWS = [
    {"a": 0.25, "b": 1.5, "c": -0.75},
    {"a": -1.25, "b": -0.5, "c": 0.5},
    {"a": 2.5, "b": -2.25, "c": 1.25},
]

SAVE_MODEL = textwrap.dedent(
    """
    import json, sys
    from pathlib import Path
    import mlflow, numpy as np, pandas as pd
    from mlflow.models import infer_signature
    from sklearn.linear_model import LogisticRegression

    out, rows = Path(sys.argv[1]), json.loads(sys.argv[2])
    rng = np.random.default_rng(3)
    frame = pd.DataFrame({"a": rng.normal(size=50), "b": rng.normal(size=50), "c": rng.normal(size=50)})
    model = LogisticRegression().fit(frame, (frame.a - frame.b > 0).astype(int))
    mlflow.sklearn.save_model(model, out / "model", signature=infer_signature(frame, model.predict(frame)))
    (out / "expected.json").write_text(json.dumps(model.predict(pd.DataFrame(rows)).tolist()))
    """
)


def _pyproject_entry_points() -> dict[str, str]:
    project = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    return project["entry-points"]["mlflow.deployments"]


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="module")
def peer(pytestconfig) -> Peer:
    try:
        return mlflow_peer(progress_printer(pytestconfig))
    except PeerUnavailable as exc:
        pytest.skip(f"MLflow side venv unavailable: {exc}")


@pytest.fixture(scope="module")
def saved(peer: Peer, tmp_path_factory) -> tuple[Path, list[int]]:
    """An MLflow model directory (scikit-learn LogisticRegression) and its predictions for ROWS."""
    directory = tmp_path_factory.mktemp("mlflow-plugin-model")
    peer.run(["python", "-c", SAVE_MODEL, directory, json.dumps(ROWS)], timeout=300, check=True)
    return directory / "model", json.loads((directory / "expected.json").read_text())


@pytest.fixture
def home(tmp_path: Path):
    """The local target's state directory for one test; whatever is left in it is deleted afterwards."""
    directory = tmp_path / "home"
    directory.mkdir()
    yield directory
    with get_deploy_client(f"local://{directory}") as client:
        for record in client.list_deployments():
            client.delete_deployment(record["name"], config={"stop_timeout": "10"})


def _mlflow(peer: Peer, home: Path, *args: Any, check: bool = True, timeout: float = 240) -> subprocess.CompletedProcess[str]:
    return peer.run(["mlflow", "deployments", *args], env=peer.environment(DEPLOYFLOW_HOME=str(home)),
                    timeout=timeout, check=check)


def _last_line(text: str) -> str:
    lines = [line for line in text.splitlines() if line.strip()]
    return lines[-1] if lines else ""


# --------------------------------------------------------------------------------------------------
# Names
# --------------------------------------------------------------------------------------------------


def test_deployflow_resolves_the_plugin_names_to_its_own_builtins() -> None:
    """deployflow's registry also reads the mlflow.deployments group: for every name deployflow puts
    there, its built-in wins, so deployflow never loads its own plugin (and nothing recurses)."""
    from deployflow import mlflow_plugin

    entries = _pyproject_entry_points()
    assert set(entries) == {"local", "serving", "serving+http", "serving+https", "deployflow-sagemaker",
                            "v2", "v2+http", "v2+https"}
    for name, value in entries.items():
        module, _, attribute = value.partition(":")
        assert module == "deployflow.mlflow_plugin" and attribute in mlflow_plugin.PLUGINS
        if name == "deployflow-sagemaker":  # MLflow's own name is taken; deployflow knows it as 'sagemaker'
            name = "sagemaker"
        uri = f"{name}://127.0.0.1:1" if "+" in name else name
        target = load_target(uri)
        assert target.source == "built in", (name, target.source)
        assert target.client_class.__module__.startswith(f"deployflow.targets.{attribute}")


def test_mlflow_keeps_its_own_targets_and_loads_ours(peer: Peer) -> None:
    script = textwrap.dedent(
        """
        import json
        from importlib import metadata
        from mlflow.deployments import interface

        registry = interface.plugin_store.registry
        theirs = sorted({ep.name for d in metadata.distributions() if (d.metadata["Name"] or "").lower().startswith("mlflow")
                         for ep in d.entry_points if ep.group == "mlflow.deployments"} | {"sagemaker"})
        found = {}
        for name in ("local", "serving", "serving+http", "serving+https", "v2+http"):
            plugin = interface.plugin_store[name]  # MLflow's own check: run_local, target_help, one client
            found[name] = [n for n in dir(plugin) if not n.startswith("_")]
        print(json.dumps({
            "theirs": theirs,
            "values": {name: getattr(registry[name], "value", None) for name in theirs},
            "found": found,
        }))
        """
    )
    result = json.loads(_last_line(peer.run(["python", "-c", script], check=True).stdout))
    ours = set(_pyproject_entry_points())
    assert ours.isdisjoint(result["theirs"]), "deployflow must not take a name MLflow uses"
    assert {"databricks", "http", "https", "openai", "sagemaker"} <= set(result["theirs"])
    assert all(value is None or value.startswith("mlflow.") for value in result["values"].values()), result["values"]
    assert result["found"]["local"] == ["LocalMlflowDeploymentClient", "run_local", "target_help"]
    assert result["found"]["serving+https"] == ["ServingMlflowDeploymentClient", "run_local", "target_help"]
    assert result["found"]["v2+http"] == ["V2MlflowDeploymentClient", "run_local", "target_help"]


def test_importing_the_plugin_imports_no_mlflow_and_deployflow_keeps_its_builtins(peer: Peer, tmp_path: Path) -> None:
    script = textwrap.dedent(
        """
        import json, sys
        import deployflow, deployflow.mlflow_plugin
        from deployflow.registry import load_target

        after_import = "mlflow" in sys.modules
        targets = deployflow.list_targets()
        local = load_target("local")
        serving = load_target("serving+http://127.0.0.1:1")
        client = deployflow.get_deploy_client("local")
        client.list_deployments()
        print(json.dumps({
            "after_import": after_import,
            "after_use": "mlflow" in sys.modules,
            "targets": targets,
            "local": [local.source, local.client_class.__module__],
            "serving": [serving.source, serving.client_class.__module__],
            "client": type(client).__module__,
        }))
        """
    )
    env = peer.environment(DEPLOYFLOW_HOME=str(tmp_path))
    result = json.loads(_last_line(peer.run(["python", "-c", script], env=env, check=True).stdout))
    assert result["after_import"] is False and result["after_use"] is False
    assert result["targets"].count("local") == 1 and result["targets"].count("serving") == 1
    assert result["local"] == ["built in", "deployflow.targets.local.client"]
    assert result["serving"] == ["built in", "deployflow.targets.serving"]
    assert result["client"] == "deployflow.targets.local.client"


# --------------------------------------------------------------------------------------------------
# MLflow's CLI
# --------------------------------------------------------------------------------------------------


def test_mlflow_cli_creates_lists_gets_predicts_updates_and_deletes(peer: Peer, saved, home: Path, tmp_path: Path) -> None:
    model_dir, expected = saved
    port = _free_port()
    created = _mlflow(peer, home, "create", "-t", "local", "--name", "m", "-m", model_dir,
                      "-C", f"port={port}", "-C", "workers=1", "-C", "request_timeout=30", "-C", "wait=true")
    assert _last_line(created.stdout) == "mlflow deployment m is created"

    # The -C values arrived as text and were converted by the target: numbers, not strings.
    record = get_deploy_client(f"local://{home}").get_deployment("m")
    assert record["state"] == "READY"
    assert record["url"] == f"http://127.0.0.1:{port}"
    assert (record["config"]["port"], record["config"]["workers"], record["config"]["request_timeout"]) == (port, 1, 30.0)

    listed = _mlflow(peer, home, "list", "-t", "local").stdout
    assert listed.startswith("List of all deployments:\n[{'name': 'm'")

    shown = _mlflow(peer, home, "get", "-t", "local", "--name", "m").stdout.splitlines()
    assert shown[:2] == ["name: m", "state: READY"]
    assert f"url: http://127.0.0.1:{port}" in shown

    inputs = tmp_path / "in.json"
    inputs.write_text(json.dumps(ROWS))
    output = tmp_path / "out.json"
    _mlflow(peer, home, "predict", "-t", "local", "--name", "m", "--input-path", inputs, "--output-path", output)
    assert json.loads(output.read_text()) == {"predictions": expected}
    printed = _mlflow(peer, home, "predict", "-t", "local", "--name", "m", "--input-path", inputs).stdout
    assert json.loads(_last_line(printed)) == {"predictions": expected}

    updated = _mlflow(peer, home, "update", "-t", "local", "--name", "m", "-C", "request_timeout=20")
    assert _last_line(updated.stdout) == "Deployment m is updated (with flavor mlflow)"
    assert get_deploy_client(f"local://{home}").get_deployment("m")["config"]["request_timeout"] == 20.0

    deleted = _mlflow(peer, home, "delete", "-t", "local", "--name", "m")
    assert _last_line(deleted.stdout) == "Deployment m is deleted"
    assert _mlflow(peer, home, "list", "-t", "local").stdout.strip() == "List of all deployments:\n[]"
    again = _mlflow(peer, home, "delete", "-t", "local", "--name", "m")  # idempotent
    assert _last_line(again.stdout) == "Deployment m is deleted"


def test_mlflow_cli_reports_deployflow_errors_as_mlflow_exceptions(peer: Peer, saved, home: Path) -> None:
    model_dir, _ = saved
    missing = _mlflow(peer, home, "get", "-t", "local", "--name", "nope", check=False)
    assert missing.returncode == 1
    assert _last_line(missing.stderr) == f"mlflow.exceptions.MlflowException: Deployment 'nope' does not exist in {home}"

    bad = _mlflow(peer, home, "create", "-t", "local", "--name", "bad", "-m", model_dir, "-C", "port=eighty", check=False)
    assert bad.returncode == 1
    assert _last_line(bad.stderr) == "mlflow.exceptions.MlflowException: Config key 'port' must be an integer from 0 to 65535, got 'eighty'"

    unknown = _mlflow(peer, home, "create", "-t", "local", "--name", "bad", "-m", model_dir, "-C", "colour=blue", check=False)
    assert unknown.returncode == 1
    assert _last_line(unknown.stderr).startswith("mlflow.exceptions.MlflowException: Unknown deployment config key(s): colour.")

    refused = _mlflow(peer, home, "create", "-t", "serving+http://127.0.0.1:1", "--name", "x", "-m", model_dir, check=False)
    assert refused.returncode == 1
    assert _last_line(refused.stderr).startswith(
        "mlflow.exceptions.MlflowException: create_deployment is not supported by the serving target"
    )
    assert get_deploy_client(f"local://{home}").list_deployments() == []


def test_mlflow_cli_help_shows_the_target_help(peer: Peer, home: Path) -> None:
    local = _mlflow(peer, home, "help", "-t", "local").stdout
    assert local.startswith("deployflow's 'local' target, driven by MLflow")
    assert "Deployment config keys" in local and "request_timeout" in local
    serving = _mlflow(peer, home, "help", "-t", "serving+https").stdout
    assert "Target 'serving': a remote server speaking MLflow's scoring protocol" in serving
    # deployflow's sagemaker target under a name MLflow does not use (MLflow has its own 'sagemaker').
    sagemaker = _mlflow(peer, home, "help", "-t", "deployflow-sagemaker").stdout
    assert sagemaker.startswith("deployflow's 'sagemaker' target, driven by MLflow") and "sagemaker:/REGION" in sagemaker


def test_mlflow_cli_run_local_serves_in_the_foreground(peer: Peer, saved, home: Path, tmp_path: Path) -> None:
    model_dir, expected = saved
    port = _free_port()
    log = (tmp_path / "run-local.log").open("wb")
    process = subprocess.Popen(
        [str(peer.bin("mlflow")), "deployments", "run-local", "-t", "local", "--name", "r", "-m", str(model_dir),
         "-C", f"port={port}"],
        env=peer.environment(DEPLOYFLOW_HOME=str(home)), stdout=log, stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL, start_new_session=True,
    )
    log.close()
    try:
        deadline = time.monotonic() + 120
        while True:
            assert process.poll() is None, (tmp_path / "run-local.log").read_text()
            try:
                if requests.get(f"http://127.0.0.1:{port}/ping", timeout=2).status_code == 200:
                    break
            except requests.RequestException:
                pass
            assert time.monotonic() < deadline, (tmp_path / "run-local.log").read_text()
            time.sleep(0.25)
        answer = requests.post(f"http://127.0.0.1:{port}/invocations", json={"dataframe_records": ROWS}, timeout=30)
        assert answer.json() == {"predictions": expected}
        assert get_deploy_client(f"local://{home}").list_deployments() == []  # run_local records nothing
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
        try:
            assert process.wait(timeout=30) == 0
        finally:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)


# --------------------------------------------------------------------------------------------------
# mlflow.deployments.get_deploy_client
# --------------------------------------------------------------------------------------------------

CLIENT_SCRIPT = textwrap.dedent(
    """
    import json, sys
    import pandas as pd
    from mlflow.deployments import BaseDeploymentClient, PredictionsResponse, get_deploy_client
    from mlflow.exceptions import MlflowException

    model_dir, rows = sys.argv[1], json.loads(sys.argv[2])
    out = {}
    client = get_deploy_client("local")
    out["class"] = type(client).__name__
    out["is_mlflow_client"] = isinstance(client, BaseDeploymentClient)
    created = client.create_deployment("s", model_dir, config={"workers": "1", "request_timeout": "15"})
    out["created"] = [created["name"], created["flavor"], created["state"], created["config"]["request_timeout"]]
    answer = client.predict("s", pd.DataFrame(rows))
    out["answer_is_mlflow_response"] = type(answer) is PredictionsResponse
    out["predictions"] = answer.get_predictions("ndarray").tolist()
    out["listed"] = [record["name"] for record in client.list_deployments()]
    out["status"] = client.deployflow_client.deployment_status("s").state.value

    serving = get_deploy_client("serving+" + client.get_deployment("s")["url"])
    out["serving_class"] = type(serving).__name__
    out["serving_predictions"] = serving.predict("anything", {"dataframe_records": rows})["predictions"]
    out["serving_state"] = serving.get_deployment("anything")["state"]

    def error_of(call):
        try:
            call()
        except MlflowException as exc:
            return [exc.error_code, type(exc.__cause__).__name__]
        return None

    out["missing"] = error_of(lambda: client.get_deployment("nope"))
    out["bad_config"] = error_of(lambda: client.create_deployment("t", model_dir, config={"port": "eighty"}))
    out["exists"] = error_of(lambda: client.create_deployment("s", model_dir))
    out["serving_create"] = error_of(lambda: serving.create_deployment("x", model_dir))
    out["bad_uri"] = error_of(lambda: get_deploy_client("serving").list_deployments())  # no server URL
    client.delete_deployment("s")
    out["after_delete"] = client.list_deployments()
    print(json.dumps(out))
    """
)


def test_mlflow_get_deploy_client_drives_the_local_and_serving_targets(peer: Peer, saved, home: Path) -> None:
    model_dir, expected = saved
    env = peer.environment(DEPLOYFLOW_HOME=str(home))
    result = json.loads(_last_line(peer.run(["python", "-c", CLIENT_SCRIPT, model_dir, json.dumps(ROWS)], env=env,
                                            timeout=240, check=True).stdout))
    assert result == {
        "class": "LocalMlflowDeploymentClient",
        "is_mlflow_client": True,
        "created": ["s", "mlflow", "READY", 15.0],
        "answer_is_mlflow_response": True,
        "predictions": expected,
        "listed": ["s"],
        "status": "READY",
        "serving_class": "ServingMlflowDeploymentClient",
        "serving_predictions": expected,
        "serving_state": "READY",
        "missing": ["RESOURCE_DOES_NOT_EXIST", "NotFoundError"],
        "bad_config": ["INVALID_PARAMETER_VALUE", "InvalidInputError"],
        "exists": ["RESOURCE_ALREADY_EXISTS", "ConflictError"],
        "serving_create": ["NOT_IMPLEMENTED", "NotSupportedError"],
        "bad_uri": ["INVALID_PARAMETER_VALUE", "TargetError"],
        "after_delete": [],
    }
