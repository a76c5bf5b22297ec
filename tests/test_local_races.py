"""Issue 15 item 6: a create_endpoint that loses a race to delete_endpoint says so (ConflictError,
"deleted ... by another caller"), as deployments do, instead of "router exited (signal 15)"; and
item 5's last point: a transport of the client's pool is closed only when no call uses it."""

from __future__ import annotations

import threading
import time

import pytest
import requests

from deployflow import ConflictError
from support.local_models import ADD_ONE, local_client, local_home


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    with local_home(tmp_path_factory.mktemp("local-races")) as directory:
        yield directory


@pytest.fixture(scope="module")
def client(home):
    with local_client(home) as local:
        local.create_deployment("target", ADD_ONE)
        yield local


def test_create_endpoint_racing_delete_endpoint_is_a_conflict(client):
    outcome: dict[str, BaseException | None] = {}

    def create() -> None:
        try:
            client.create_endpoint("contested", {"routes": [{"deployment": "target", "traffic": 100}]})
            outcome["error"] = None
        except BaseException as exc:  # noqa: BLE001 - the test looks at it
            outcome["error"] = exc

    creator = threading.Thread(target=create)
    creator.start()
    # Delete as soon as the endpoint is recorded, while its router is still starting.
    deadline = time.monotonic() + 30
    while "contested" not in client.store.read()["endpoints"]:
        assert time.monotonic() < deadline and creator.is_alive(), outcome
        time.sleep(0.002)
    client.delete_endpoint("contested")
    creator.join(timeout=60)
    error = outcome["error"]
    if error is None:  # the router was ready before the delete began: nothing raced
        pytest.skip("the router started before the delete; no race happened")
    assert isinstance(error, ConflictError), repr(error)
    assert "deleted or replaced by another caller" in str(error)
    assert "signal" not in str(error)
    assert "contested" not in client.store.read()["endpoints"]


def test_a_transport_evicted_while_in_use_keeps_serving_that_call(client):
    from deployflow.targets.local import client as client_module

    url = client.get_deployment("target")["url"]
    pooled = client._lease(url)  # a call in progress on another thread holds this transport
    try:
        for index in range(client_module._MAX_TRANSPORTS + 2):  # push it out of the pool
            client._give_back(client._lease(f"http://127.0.0.1:{9 + index}"))
        assert url not in client._transports and pooled.retired
        answer = pooled.transport.request("POST", "/invocations", json={"inputs": [[1.0]]}, kind="predict")
        assert answer.status_code == 200
    finally:
        client._give_back(pooled)
    # The last user gave it back: now it is closed, and a new call gets a fresh transport that works.
    assert client.predict("target", [[1.0]])["predictions"] == [[2.0]]


def test_closing_the_client_spares_calls_in_flight(home):
    import deployflow

    with deployflow.get_deploy_client(f"local://{home}") as other:
        url = other.get_deployment("target")["url"]
        pooled = other._lease(url)
        other.close()
        answer = pooled.transport.request("POST", "/invocations", json={"inputs": [[1.0]]}, kind="predict")
        assert answer.status_code == 200
        other._give_back(pooled)
    assert requests.get(url + "/ping", timeout=10).status_code == 200
