"""Lifecycle of the ``local`` target with real server processes on 127.0.0.1.

create / get / list / predict / update / delete, states after a crash, pid checks, auth, the state file
and a second Python process that works on what the first created.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import psutil
import pytest
import requests

import deployflow
from deployflow import (
    AuthenticationError,
    ConflictError,
    DeploymentError,
    DeploymentFailedError,
    InvalidInputError,
    NotFoundError,
    State,
)
from deployflow.targets.local.state import StateStore
from support.local_models import ADD_ONE, DOUBLER, free_port, local_client, local_home, our_processes, pythonpath_with_tests

TOKEN = "lifecycle-secret-token-42"


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    with local_home(tmp_path_factory.mktemp("local-lifecycle")) as directory:
        yield directory


@pytest.fixture(scope="module")
def client(home):
    with local_client(home) as local:
        yield local


def alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def test_create_get_list_predict_delete(client, home):
    created = client.create_deployment("life", ADD_ONE)
    assert created["name"] == "life"
    assert created["state"] == "READY"
    assert created["url"].startswith("http://127.0.0.1:")
    pid = created["pid"]
    assert alive(pid)
    assert str(home) in " ".join(psutil.Process(pid).cmdline())

    record = client.get_deployment("life")
    assert record["model_uri"] == ADD_ONE
    assert record["flavor"] == "python"
    assert record["config"]["port"] == 0 and "auth_token" not in record["config"]
    assert "life" in [d["name"] for d in client.list_deployments()]
    assert client.deployment_status("life").state is State.READY
    assert requests.get(record["url"] + "/ping", timeout=5).status_code == 200

    assert client.predict("life", {"inputs": [[1, 2]]}) == {"predictions": [[2.0, 3.0]]}
    with pytest.raises(ConflictError):
        client.create_deployment("life", ADD_ONE)

    client.delete_deployment("life")
    assert not alive(pid)
    with pytest.raises(NotFoundError):
        client.get_deployment("life")
    assert client.deployment_status("life").state is State.NOT_FOUND
    client.delete_deployment("life")  # idempotent
    assert not (home / "deployments" / "life").exists()


def test_update_rolls_forward_and_stops_the_old_server(client):
    first = client.create_deployment("roll", ADD_ONE)
    assert client.predict("roll", [[1.0]])["predictions"] == [[2.0]]
    updated = client.update_deployment("roll", DOUBLER, config={"request_timeout": "30"})
    assert updated["pid"] != first["pid"] and updated["url"] != first["url"]
    assert updated["model_uri"] == DOUBLER
    assert updated["config"]["request_timeout"] == 30.0
    assert client.predict("roll", [[1.0]])["predictions"] == [[2.0]]  # doubled now, not plus one
    assert client.predict("roll", {"inputs": [[5.0]], "params": {"factor": 3}})["predictions"] == [[15.0]]
    assert not alive(first["pid"])

    # A config-only update keeps the model.
    again = client.update_deployment("roll", config={"log_level": "warning"})
    assert again["model_uri"] == DOUBLER and again["config"]["request_timeout"] == 30.0
    assert not alive(updated["pid"])
    client.delete_deployment("roll")
    assert not alive(again["pid"])

    with pytest.raises(NotFoundError):
        client.update_deployment("roll", ADD_ONE)


def test_failed_update_keeps_the_old_server(client, tmp_path):
    first = client.create_deployment("steady", ADD_ONE)
    with pytest.raises(InvalidInputError, match="no_such_model"):
        client.update_deployment("steady", "python:support.models:no_such_model")
    record = client.get_deployment("steady")
    # The old server serves on; the state says the change that was asked for did not happen.
    assert record["pid"] == first["pid"] and record["state"] == "FAILED"
    assert "its last update failed" in record["reason"] and "no_such_model" in record["reason"]
    assert "no_such_model" in record["last_error"]
    assert client.predict("steady", [[1.0]])["predictions"] == [[2.0]]
    client.update_deployment("steady", ADD_ONE)  # an update that works clears it
    assert client.get_deployment("steady")["state"] == "READY"
    client.delete_deployment("steady")


def test_killed_server_shows_failed_with_a_reason(client):
    created = client.create_deployment("victim", ADD_ONE)
    pid = created["pid"]
    os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and client.deployment_status("victim").state is not State.FAILED:
        time.sleep(0.05)
    status = client.deployment_status("victim")
    assert status.state is State.FAILED
    assert f"server process {pid} exited" in status.reason
    record = client.get_deployment("victim")
    assert record["state"] == "FAILED" and str(pid) in record["reason"]
    assert [d["state"] for d in client.list_deployments() if d["name"] == "victim"] == ["FAILED"]
    with pytest.raises(DeploymentFailedError, match=str(pid)):
        client.wait_for_deployment("victim", timeout=5)
    with pytest.raises(DeploymentFailedError):
        client.predict("victim", [[1.0]])
    # A failed deployment can be brought back by an update, then deleted.
    revived = client.update_deployment("victim", ADD_ONE)
    assert revived["state"] == "READY"
    client.delete_deployment("victim")
    assert not alive(revived["pid"])


def test_a_reused_pid_is_not_trusted(client, home):
    created = client.create_deployment("reused", ADD_ONE)
    store = StateStore(home)
    with store.transaction() as state:
        # Pretend the server died and its pid now belongs to another program (this test process).
        state["deployments"]["reused"]["process"]["pid"] = os.getpid()
        state["deployments"]["reused"]["process"]["create_time"] = psutil.Process().create_time()
    status = client.deployment_status("reused")
    assert status.state is State.FAILED and f"{os.getpid()} exited" in status.reason
    client.delete_deployment("reused")  # must not signal this very process
    assert alive(os.getpid())
    with store.transaction() as state:
        assert "reused" not in state["deployments"]
    os.kill(created["pid"], signal.SIGKILL)  # the real server, orphaned by the tampering above
    psutil.Process(created["pid"]).wait(5)


def test_wait_false_returns_pending_then_becomes_ready(client):
    created = client.create_deployment("lazy", ADD_ONE, config={"wait": "false"})
    assert created["state"] == "PENDING"
    assert "starting" in created["reason"]
    status = client.wait_for_deployment("lazy", timeout=30, poll_interval=0.05)
    assert status.state is State.READY
    assert client.get_deployment("lazy")["url"].startswith("http://127.0.0.1:")
    assert client.predict("lazy", [[0.0]])["predictions"] == [[1.0]]
    client.delete_deployment("lazy")


def test_auth_token_is_required_and_never_stored(client, home):
    created = client.create_deployment("guarded", ADD_ONE, config={"auth_token": TOKEN})
    assert created["config"]["auth_token"] == "***"
    # The creating client remembers the token it was given.
    assert client.predict("guarded", [[1.0]])["predictions"] == [[2.0]]
    for path in home.rglob("*"):
        if path.is_file():
            assert TOKEN not in path.read_text(errors="replace"), path
    assert TOKEN not in " ".join(psutil.Process(created["pid"]).cmdline())
    with deployflow.get_deploy_client(f"local://{home}") as stranger:
        with pytest.raises(AuthenticationError):
            stranger.predict("guarded", [[1.0]])
        assert stranger.deployment_status("guarded").state is State.READY  # /ping needs no token
        # Without the token, an update cannot start a server that keeps auth on.
        with pytest.raises(InvalidInputError, match="auth token"):
            stranger.update_deployment("guarded", config={"log_level": "warning"})
    with deployflow.get_deploy_client(f"local://{home}", auth_token=TOKEN) as friend:
        assert friend.predict("guarded", [[2.0]])["predictions"] == [[3.0]]
        assert TOKEN not in repr(friend) and TOKEN not in str(friend.get_deployment("guarded"))
    client.delete_deployment("guarded")


def test_a_second_process_lists_predicts_and_deletes(client, home):
    created = client.create_deployment("shared", ADD_ONE)
    script = (
        "import json, sys, deployflow\n"
        "c = deployflow.get_deploy_client(sys.argv[1])\n"
        "names = [d['name'] for d in c.list_deployments()]\n"
        "state = c.get_deployment('shared')['state']\n"
        "preds = c.predict('shared', [[10.0]])['predictions']\n"
        "c.delete_deployment('shared')\n"
        "print(json.dumps({'names': names, 'state': state, 'preds': preds}))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", script, f"local://{home}"], capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    seen = json.loads(out.stdout)
    assert "shared" in seen["names"] and seen["state"] == "READY" and seen["preds"] == [[11.0]]
    with pytest.raises(NotFoundError):
        client.get_deployment("shared")
    assert not alive(created["pid"])


def test_state_file_is_versioned_json(client, home):
    client.create_deployment("versioned", ADD_ONE, config={"wait": False})
    state = json.loads((home / "state.json").read_text())
    assert state["version"] == 1 and "versioned" in state["deployments"]
    client.delete_deployment("versioned")

    other = home.parent / (home.name + "-future")
    other.mkdir()
    (other / "state.json").write_text(json.dumps({"version": 99, "deployments": {}}))
    with deployflow.get_deploy_client(f"local://{other}") as future:
        with pytest.raises(DeploymentError, match="format version 99"):
            future.list_deployments()


def test_uris_and_options(tmp_path, monkeypatch):
    monkeypatch.setenv("DEPLOYFLOW_HOME", str(tmp_path / "from-env"))
    assert deployflow.get_deploy_client("local").home == tmp_path / "from-env"
    assert deployflow.get_deploy_client(f"local://{tmp_path}/x").home == tmp_path / "x"
    assert deployflow.get_deploy_client("local", home=str(tmp_path / "opt")).home == tmp_path / "opt"
    client = deployflow.get_deploy_client("local", timeout="5", max_retries=1)
    assert client.http_settings.timeout == 5.0 and client.http_settings.retry.max_retries == 1
    with pytest.raises(InvalidInputError, match="tiemout"):
        deployflow.get_deploy_client("local", tiemout=5)
    with pytest.raises(InvalidInputError):
        deployflow.get_deploy_client("local://somehost/dir")
    with pytest.raises(InvalidInputError):
        deployflow.get_deploy_client("local:relative/dir")
    with pytest.raises(InvalidInputError, match="one of them"):
        deployflow.get_deploy_client(f"local://{tmp_path}/a", home=str(tmp_path / "b"))
    with pytest.raises(InvalidInputError):
        deployflow.get_deploy_client("local", timeout="soon")


def test_target_help_documents_every_key():
    from deployflow.targets.local.config import DEPLOYMENT_KEYS, ENDPOINT_KEYS

    text = deployflow.target_help("local")
    for key in [*DEPLOYMENT_KEYS, *ENDPOINT_KEYS, "home", "auth_token", "local:///"]:
        assert key in text, key


def test_run_local_serves_in_the_foreground_until_terminated(tmp_path):
    port = free_port()
    script = (
        "import sys\n"
        "from deployflow.targets.local import run_local\n"
        "run_local('fg', sys.argv[1], config={'port': sys.argv[2]})\n"
    )
    with pythonpath_with_tests():
        process = subprocess.Popen([sys.executable, "-c", script, ADD_ONE, str(port)],
                                   stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while True:
            try:
                if requests.get(url + "/ping", timeout=1).status_code == 200:
                    break
            except requests.ConnectionError:
                pass
            assert process.poll() is None, process.stdout.read().decode()
            assert time.monotonic() < deadline, "run_local never served"
            time.sleep(0.05)
        answer = requests.post(url + "/invocations", json={"inputs": [[1.0]]}, timeout=5)
        assert answer.json() == {"predictions": [[2.0]]}
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=20) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def test_delete_stops_the_workers_of_a_killed_multi_worker_server(client, home):
    created = client.create_deployment("crowd", ADD_ONE, config={"workers": "2"})
    leader = psutil.Process(created["pid"])
    workers = [p for p in our_processes(home) if p.pid != leader.pid and os.getpgid(p.pid) == leader.pid]
    assert len(workers) >= 2
    assert client.predict("crowd", [[1.0]])["predictions"] == [[2.0]]
    leader.kill()
    leader.wait(10)
    status = client.deployment_status("crowd")
    assert status.state is State.FAILED and str(leader.pid) in status.reason
    client.delete_deployment("crowd", config={"stop_timeout": "5"})
    _gone, alive_workers = psutil.wait_procs(workers, timeout=10)
    assert alive_workers == []
