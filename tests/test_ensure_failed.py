"""Issue 12, item 10: a retried create step does not take over a FAILED deployment or endpoint.

``ensure_deployment`` / ``ensure_endpoint`` (what the CLI, Prefect and Airflow create steps call) used to
adopt whatever existed with the same spec, FAILED included, so every retry of the step failed the same
way. A FAILED one with the same spec is rolled forward now (``update_*`` with the requested spec), so it
starts again. Against the real local target: servers and routers killed with SIGKILL.
"""

from __future__ import annotations

import os
import signal
import time

import psutil
import pytest

from deployflow import State, ensure_deployment, ensure_endpoint
from support.local_models import ADD_ONE, local_client, local_home


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    with local_home(tmp_path_factory.mktemp("ensure-failed")) as directory:
        yield directory


@pytest.fixture(scope="module")
def client(home):
    with local_client(home) as local:
        yield local


def _kill(pid: int) -> None:
    os.kill(pid, signal.SIGKILL)
    psutil.Process(pid).wait(10)


def _settled(read, state: State, seconds: float = 10.0):
    deadline = time.monotonic() + seconds
    status = read()
    while status.state is not state and time.monotonic() < deadline:
        time.sleep(0.05)
        status = read()
    return status


@pytest.mark.parametrize("if_exists", ["adopt", "update"])
def test_a_failed_deployment_with_the_same_spec_is_rolled_forward(client, if_exists):
    name = f"crashed-{if_exists}"
    first = ensure_deployment(client, name, ADD_ONE)
    assert first.action == "created"
    _kill(first.record["pid"])
    assert _settled(lambda: client.deployment_status(name), State.FAILED).state is State.FAILED

    again = ensure_deployment(client, name, ADD_ONE, if_exists=if_exists)  # the step, retried

    assert again.action == "updated"
    assert again.record["state"] == "READY" and again.record["pid"] != first.record["pid"]
    assert client.predict(name, [[1.0]])["predictions"] == [[2.0]]
    # Healthy now: the next retry adopts it as it is.
    assert ensure_deployment(client, name, ADD_ONE).action == "adopted"
    client.delete_deployment(name)


def test_a_deployment_whose_update_failed_is_rolled_forward_not_adopted(client):
    ensure_deployment(client, "half-updated", ADD_ONE)
    with pytest.raises(Exception, match="no_such_model"):
        client.update_deployment("half-updated", "python:support.models:no_such_model")
    assert client.deployment_status("half-updated").state is State.FAILED

    again = ensure_deployment(client, "half-updated", ADD_ONE)

    assert again.action == "updated" and again.record["state"] == "READY"
    assert "last_error" not in again.record
    client.delete_deployment("half-updated")


def test_a_failed_endpoint_with_the_same_config_is_rolled_forward(client):
    ensure_deployment(client, "behind-router", ADD_ONE)
    config = {"routes": [{"deployment": "behind-router", "traffic": 100}]}
    first = ensure_endpoint(client, "doorway", config=config)
    assert first.action == "created"
    _kill(first.record["pid"])
    assert _settled(lambda: client.endpoint_status("doorway"), State.FAILED).state is State.FAILED

    again = ensure_endpoint(client, "doorway", config=config)

    assert again.action == "updated"
    assert again.record["state"] == "READY" and again.record["pid"] != first.record["pid"]
    assert client.predict(endpoint="doorway", inputs=[[1.0]])["predictions"] == [[2.0]]
    assert ensure_endpoint(client, "doorway", config=config).action == "adopted"
    client.delete_endpoint("doorway")
    client.delete_deployment("behind-router")


def test_update_endpoint_starts_a_router_that_died_again(client):
    ensure_deployment(client, "routed-a", ADD_ONE)
    ensure_deployment(client, "routed-b", ADD_ONE)
    created = client.create_endpoint("revived", {"routes": [{"deployment": "routed-a", "traffic": 100}]})
    _kill(created["pid"])
    assert _settled(lambda: client.endpoint_status("revived"), State.FAILED).state is State.FAILED

    # New routes and the settings it has (a step repeating its whole create config) are accepted.
    updated = client.update_endpoint(
        "revived", {"routes": [{"deployment": "routed-b", "traffic": 100}], "host": "127.0.0.1"}
    )

    assert updated["state"] == "READY" and updated["pid"] != created["pid"]
    assert updated["routes"] == [{"deployment": "routed-b", "traffic": 100.0}]
    assert client.predict(endpoint="revived", inputs=[[3.0]])["predictions"] == [[4.0]]
    with pytest.raises(Exception, match="cannot change port"):
        client.update_endpoint("revived", {"port": 1})
    client.delete_endpoint("revived")
    client.delete_deployment("routed-a")
    client.delete_deployment("routed-b")
