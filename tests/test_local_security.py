"""Issue 15 item 2, secure by default: the router's control paths need its per-endpoint secret, kept in
the state dir with mode 0600 and handed over in the environment (never argv); a server or endpoint
beyond loopback needs an auth token unless its config says ``allow_unauthenticated: true``."""

from __future__ import annotations

import json
import logging
import stat
from pathlib import Path

import psutil
import pytest
import requests

from deployflow import InvalidInputError
from deployflow.targets.local.control import SECRET_FILE
from deployflow.targets.local.serving import SpecError, check_exposure, is_loopback
from support.local_models import ADD_ONE, local_client, local_home
from support.models import ServerProcess


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    with local_home(tmp_path_factory.mktemp("local-security")) as directory:
        yield directory


@pytest.fixture(scope="module")
def client(home):
    with local_client(home) as local:
        yield local


@pytest.fixture(scope="module")
def endpoint(client):
    client.create_deployment("guarded", ADD_ONE)
    client.create_endpoint("front", {"routes": [{"deployment": "guarded", "traffic": 100}]})
    record = client.store.read()["endpoints"]["front"]
    return client.get_endpoint("front")["url"], record["process"]


def test_the_control_secret_is_a_0600_file_and_not_on_the_command_line(endpoint):
    url, process = endpoint
    secret_file = Path(process["dir"]) / SECRET_FILE
    mode = stat.S_IMODE(secret_file.stat().st_mode)
    assert mode == 0o600
    secret = secret_file.read_text().strip()
    assert len(secret) >= 32
    router = psutil.Process(process["pid"])
    assert secret not in " ".join(router.cmdline())
    assert secret not in Path(process["spec_path"]).read_text()
    assert secret not in Path(process["log_path"]).read_text()


@pytest.mark.parametrize("method, path", [("GET", "/-/routes"), ("POST", "/-/reload"), ("GET", "/metrics")])
def test_control_paths_need_the_secret(endpoint, method, path):
    url, process = endpoint
    secret = (Path(process["dir"]) / SECRET_FILE).read_text().strip()
    refused = requests.request(method, url + path, timeout=10)
    assert refused.status_code == 401 and refused.json()["error_code"] == "UNAUTHENTICATED"
    assert refused.headers["www-authenticate"] == "Bearer"
    wrong = requests.request(method, url + path, headers={"Authorization": "Bearer not-it"}, timeout=10)
    assert wrong.status_code == 401
    allowed = requests.request(method, url + path, headers={"Authorization": f"Bearer {secret}"}, timeout=10)
    assert allowed.status_code == 200
    if path != "/metrics":
        assert allowed.json()["routes"][0]["deployment"] == "guarded"


@pytest.mark.parametrize("method, path, allowed", [("GET", "/-/reload", "POST"), ("DELETE", "/-/routes", "GET"),
                                                   ("POST", "/metrics", "GET")])
def test_a_control_path_asked_with_another_method_is_a_405_once_authenticated(endpoint, method, path, allowed):
    url, process = endpoint
    assert requests.request(method, url + path, timeout=10).status_code == 401  # nothing said before the secret
    secret = (Path(process["dir"]) / SECRET_FILE).read_text().strip()
    answer = requests.request(method, url + path, headers={"Authorization": f"Bearer {secret}"}, timeout=10)
    assert answer.status_code == 405 and answer.headers["allow"] == allowed
    assert answer.json() == {"error_code": "BAD_REQUEST", "message": f"{path} does not accept {method}; use {allowed}"}


def test_health_and_ping_reveal_nothing(endpoint):
    url, _ = endpoint
    for path in ("/ping", "/health"):
        answer = requests.get(url + path, timeout=10)
        assert answer.status_code == 200 and answer.content == b"\n"


def test_the_client_still_switches_routes_with_the_secret(client, endpoint):
    client.create_deployment("second", ADD_ONE)
    client.update_endpoint("front", {"routes": [{"deployment": "guarded", "traffic": 50},
                                                {"deployment": "second", "traffic": 50}]})
    url, _ = endpoint
    served = {requests.post(url + "/invocations", json={"inputs": [[1.0]]}, timeout=10)
              .headers["x-deployflow-deployment"] for _ in range(40)}
    assert served == {"guarded", "second"}
    client.update_endpoint("front", {"routes": [{"deployment": "guarded", "traffic": 100}]})
    client.delete_deployment("second")


def test_a_deployment_beyond_loopback_needs_a_token(client):
    with pytest.raises(InvalidInputError, match="allow_unauthenticated"):
        client.create_deployment("open", ADD_ONE, config={"host": "0.0.0.0"})
    with pytest.raises(InvalidInputError, match="allow_unauthenticated"):
        client.create_endpoint("open", {"routes": [{"deployment": "guarded", "traffic": 100}], "host": "0.0.0.0"})
    assert "open" not in client.store.read()["deployments"]


def test_the_server_process_refuses_a_wide_bind_without_a_token(tmp_path):
    with ServerProcess(tmp_path, {"model_uri": ADD_ONE, "host": "0.0.0.0"}) as server:
        assert server.wait_exit(timeout=60) == 2
        log = server.log_path.read_text()
    assert "without an auth token" in log and "allow_unauthenticated" in log


def test_the_router_process_refuses_a_wide_bind_without_the_opt_in(tmp_path):
    import subprocess
    import sys

    spec = tmp_path / "spec.json"
    spec.write_text(json.dumps({"version": 1, "name": "wide", "state_file": str(tmp_path / "state.json"),
                                "ready_file": str(tmp_path / "ready.json"), "host": "0.0.0.0"}))
    done = subprocess.run([sys.executable, "-m", "deployflow.targets.local.router", "--spec", str(spec)],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert "allow_unauthenticated" in done.stderr
    assert not (tmp_path / "ready.json").exists()


def test_the_opt_in_is_logged_at_warning(caplog):
    logger = logging.getLogger("deployflow.test.exposure")
    with caplog.at_level(logging.WARNING, logger="deployflow.test.exposure"):
        check_exposure("0.0.0.0", credential=False, allowed=True, what="Deployment 'x'", logger=logger)
    assert [record.levelno for record in caplog.records] == [logging.WARNING]
    assert "without an auth token" in caplog.records[0].getMessage()
    with pytest.raises(SpecError):
        check_exposure("10.1.2.3", credential=False, allowed=False, what="Deployment 'x'", logger=logger)
    check_exposure("10.1.2.3", credential=True, allowed=False, what="Deployment 'x'", logger=logger)


@pytest.mark.parametrize("host, loopback", [("127.0.0.1", True), ("127.8.0.1", True), ("::1", True),
                                            ("localhost", True), ("0.0.0.0", False), ("::", False),
                                            ("192.168.1.4", False), ("myhost", False)])
def test_what_counts_as_loopback(host, loopback):
    assert is_loopback(host) is loopback


def test_deploying_a_python_model_runs_its_code_as_the_server(client, tmp_path):
    # The trust boundary the operator and task docs state: a model URI is code to run, not data.
    marker = tmp_path / "ran.txt"
    (tmp_path / "model.py").write_text(
        "import os, pathlib\n"
        f"pathlib.Path({str(marker)!r}).write_text(str(os.getpid()))\n"
        "def score(data):\n"
        "    return [0] * len(data)\n"
    )
    client.create_deployment("trusted-code", f"python:{tmp_path / 'model.py'}:score")
    try:
        assert int(marker.read_text()) == client.get_deployment("trusted-code")["pid"]
    finally:
        client.delete_deployment("trusted-code")
