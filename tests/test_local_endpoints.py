"""Endpoints of the ``local`` target: a router process splitting traffic over real server processes.

Traffic split, attaching deployments, route changes seen from the state file alone, status, deletion,
and the zero-downtime promise: a client scoring in a loop through an endpoint while deployments are
updated and routes change sees no failed request.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections import Counter

import psutil
import pytest

import deployflow
from deployflow import ConflictError, InvalidInputError, NotFoundError, State
from deployflow.targets.local.state import StateStore
from support.local_models import ADD_ONE, DOUBLER, local_client, local_home

# add_one answers x + 1, doubler 2 * x: with x = 10 the answer tells which deployment served.
PLUS_ONE, DOUBLED = [[11.0]], [[20.0]]


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    with local_home(tmp_path_factory.mktemp("local-endpoints")) as directory:
        yield directory


@pytest.fixture(scope="module")
def client(home):
    with local_client(home) as local:
        yield local


@pytest.fixture(scope="module")
def pair(client):
    """Two deployments shared by the tests of this module: ``plus`` (x + 1) and ``double`` (2x)."""
    client.create_deployment("plus", ADD_ONE, config={"wait": False})
    client.create_deployment("double", DOUBLER)
    client.wait_for_deployment("plus", timeout=60, poll_interval=0.05)
    return "plus", "double"


def answers(client, endpoint: str, count: int) -> Counter:
    seen: Counter = Counter()
    for _ in range(count):
        predictions = client.predict(endpoint=endpoint, inputs=[[10.0]])["predictions"]
        seen["plus" if predictions == PLUS_ONE else "double" if predictions == DOUBLED else "other"] += 1
    return seen


def alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def test_traffic_split_and_route_changes(client, pair):
    created = client.create_endpoint(
        "split", config={"routes": [{"deployment": "plus", "traffic": 50}, {"deployment": "double", "traffic": 50}]}
    )
    assert created["state"] == "READY" and created["url"].startswith("http://127.0.0.1:")
    assert client.endpoint_status("split").state is State.READY
    seen = answers(client, "split", 60)
    assert seen["plus"] > 5 and seen["double"] > 5 and seen["other"] == 0

    updated = client.update_endpoint("split", config={"routes": "plus:0,double:100"})
    assert [r["traffic"] for r in updated["routes"]] == [0.0, 100.0]
    assert answers(client, "split", 20) == Counter(double=20)
    assert sorted(d["name"] for d in client.list_deployments(endpoint="split")) == ["double", "plus"]
    assert [e["name"] for e in client.list_endpoints()] == ["split"]

    router_pid = created["pid"]
    client.delete_endpoint("split")
    assert not alive(router_pid)
    client.delete_endpoint("split")  # idempotent
    with pytest.raises(NotFoundError):
        client.get_endpoint("split")
    assert client.endpoint_status("split").state is State.NOT_FOUND
    # The deployments outlive their endpoint.
    assert client.predict("plus", [[1.0]])["predictions"] == [[2.0]]


def test_router_follows_the_state_file_without_being_told(client, pair, home):
    client.create_endpoint("quiet", config={"routes": [{"deployment": "plus", "traffic": 100}]})
    assert answers(client, "quiet", 3) == Counter(plus=3)
    # Another process could write the state; no reload call is made here.
    with StateStore(home).transaction() as state:
        state["endpoints"]["quiet"]["config"]["routes"] = [{"deployment": "double", "traffic": 100.0}]
    assert answers(client, "quiet", 5) == Counter(double=5)
    client.delete_endpoint("quiet")


def test_deployments_join_endpoints(client):
    first = client.create_deployment("joiner-a", ADD_ONE, endpoint="joined")
    assert first["endpoints"] == ["joined"]
    endpoint = client.get_endpoint("joined")
    assert endpoint["routes"] == [{"deployment": "joiner-a", "traffic": 100.0}]

    client.create_deployment("joiner-b", DOUBLER, endpoint="joined")
    routes = client.get_endpoint("joined")["routes"]
    assert routes == [{"deployment": "joiner-a", "traffic": 100.0}, {"deployment": "joiner-b", "traffic": 0.0}]
    assert answers(client, "joined", 5) == Counter(plus=5)
    assert client.get_deployment("joiner-b", endpoint="joined")["name"] == "joiner-b"
    with pytest.raises(NotFoundError):
        client.get_deployment("joiner-b", endpoint="nowhere")
    with pytest.raises(NotFoundError):
        client.list_deployments(endpoint="nowhere")

    # A deployment that takes traffic cannot be deleted; a 0% route goes with its deployment.
    with pytest.raises(ConflictError, match="joined"):
        client.delete_deployment("joiner-a")
    client.delete_deployment("joiner-b")
    assert client.get_endpoint("joined")["routes"] == [{"deployment": "joiner-a", "traffic": 100.0}]
    client.delete_endpoint("joined")
    client.delete_deployment("joiner-a")


def test_endpoint_status_follows_router_and_deployments(client):
    created = client.create_deployment("fragile", ADD_ONE, endpoint="watched")
    router_pid = client.get_endpoint("watched")["pid"]
    assert client.endpoint_status("watched").state is State.READY

    os.kill(created["pid"], signal.SIGKILL)
    status = _settled(lambda: client.endpoint_status("watched"))
    assert status.state is State.FAILED and "fragile" in status.reason
    client.update_deployment("fragile", ADD_ONE)  # brings it back
    assert client.endpoint_status("watched").state is State.READY

    os.kill(router_pid, signal.SIGKILL)
    status = _settled(lambda: client.endpoint_status("watched"))
    assert status.state is State.FAILED and f"router process {router_pid} exited" in status.reason
    assert client.get_endpoint("watched")["state"] == "FAILED"
    with pytest.raises(deployflow.DeploymentFailedError):
        client.predict(endpoint="watched", inputs=[[1.0]])
    client.delete_endpoint("watched")
    client.delete_deployment("fragile")


def _settled(read, timeout: float = 10.0):
    deadline = time.monotonic() + timeout
    status = read()
    while status.state is not State.FAILED and time.monotonic() < deadline:
        time.sleep(0.05)
        status = read()
    return status


def test_endpoint_input_errors(client, pair):
    with pytest.raises(InvalidInputError, match="ghost"):
        client.create_endpoint("bad", config={"routes": [{"deployment": "ghost", "traffic": 100}]})
    with pytest.raises(InvalidInputError, match="add up to 100"):
        client.create_endpoint("bad", config={"routes": [{"deployment": "plus", "traffic": 60}]})
    with pytest.raises(InvalidInputError, match="routes"):
        client.create_endpoint("bad", config={})
    with pytest.raises(InvalidInputError, match="twice"):
        client.create_endpoint("bad", config={"routes": "plus:50,plus:50"})
    with pytest.raises(InvalidInputError, match="colour"):
        client.create_endpoint("bad", config={"routes": "plus:100", "colour": "blue"})
    with pytest.raises(InvalidInputError):
        client.create_endpoint("bad/name", config={"routes": "plus:100"})
    assert client.list_endpoints() == []

    client.create_endpoint("fixed", config={"routes": "plus:100", "wait": "false"})
    with pytest.raises(ConflictError):
        client.create_endpoint("fixed", config={"routes": "plus:100"})
    with pytest.raises(InvalidInputError, match="port"):
        client.update_endpoint("fixed", config={"port": 8080})
    with pytest.raises(NotFoundError):
        client.update_endpoint("missing", config={"routes": "plus:100"})
    with pytest.raises(InvalidInputError, match="exactly one"):
        client.predict("plus", [[1.0]], endpoint="fixed")
    client.delete_endpoint("fixed")


def test_no_request_fails_while_deployments_update_and_routes_change(client, pair):
    client.create_endpoint("live", config={"routes": [{"deployment": "plus", "traffic": 100}]})
    outcomes: Counter = Counter()
    errors: list[str] = []
    stop = threading.Event()

    def score(target: dict) -> None:
        # No retries of its own: a request that fails is counted, not hidden.
        with deployflow.get_deploy_client(client.target_uri, max_retries=0) as caller:
            while not stop.is_set():
                try:
                    predictions = caller.predict(inputs=[[10.0]], **target)["predictions"]
                    outcomes["ok" if predictions in (PLUS_ONE, DOUBLED) else "wrong"] += 1
                except Exception as error:  # noqa: BLE001 - every failure counts
                    outcomes["failed"] += 1
                    errors.append(repr(error))

    # Two callers through the endpoint, one straight to deployment "plus" (found by name in the state).
    targets = [{"endpoint": "live"}, {"endpoint": "live"}, {"deployment_name": "plus"}]
    callers = [threading.Thread(target=score, args=(target,)) for target in targets]
    for thread in callers:
        thread.start()
    try:
        time.sleep(0.3)
        client.update_deployment("plus", ADD_ONE, config={"log_level": "warning"})  # blue/green switch
        client.update_endpoint("live", config={"routes": "plus:50,double:50"})  # canary
        client.update_deployment("double", DOUBLER, config={"log_level": "warning"})
        client.update_endpoint("live", config={"routes": "plus:0,double:100"})
        client.update_deployment("plus", ADD_ONE)
        client.update_endpoint("live", config={"routes": "plus:100,double:0"})
        time.sleep(0.3)
    finally:
        stop.set()
        for thread in callers:
            thread.join(timeout=30)
    assert errors == [] and outcomes["failed"] == 0 and outcomes["wrong"] == 0
    assert outcomes["ok"] > 50, outcomes
    client.delete_endpoint("live")


def test_router_passes_the_callers_token_to_the_deployment(client, home):
    token = "endpoint-secret-token-7"
    client.create_deployment("locked", ADD_ONE, config={"auth_token": token}, endpoint="gate")
    assert client.endpoint_status("gate").state is State.READY  # /ping needs no token
    # This client was given the token at create time; another one must bring its own.
    assert client.predict(endpoint="gate", inputs=[[1.0]])["predictions"] == [[2.0]]
    with deployflow.get_deploy_client(client.target_uri) as stranger:
        with pytest.raises(deployflow.AuthenticationError):
            stranger.predict(endpoint="gate", inputs=[[1.0]])
    with deployflow.get_deploy_client(client.target_uri, auth_token=token) as friend:
        assert friend.predict(endpoint="gate", inputs=[[1.0]])["predictions"] == [[2.0]]
    assert token not in (home / "state.json").read_text()
    client.delete_endpoint("gate")
    client.delete_deployment("locked")
