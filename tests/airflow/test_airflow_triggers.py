"""The triggers: JSON-only serialization, rebuilding, and one event per outcome against the real local target."""

from __future__ import annotations

import json
import time
from typing import Any, Iterator

import pytest

import airflow_support as support
from deployflow.integrations.airflow.triggers import DeploymentReadyTrigger, EndpointReadyTrigger

CONN = "deployflow_test"


def _triggers() -> list[Any]:
    common = {
        "deployflow_conn_id": CONN,
        "deadline": 1767225600.5,
        "not_found_deadline": 1767225030.0,
        "poll_interval": 0.5,
        "max_poll_interval": 4.0,
        "carry": {"deployment_name": "churn", "action": "created", "url": "http://127.0.0.1:5000"},
    }
    return [
        DeploymentReadyTrigger(deployment_name="churn", endpoint="front", **common),
        DeploymentReadyTrigger(deployment_name="churn", deadline=1767225600.0),
        EndpointReadyTrigger(endpoint="front", **common),
    ]


@pytest.mark.parametrize("trigger", _triggers(), ids=["deployment", "deployment-defaults", "endpoint"])
def test_trigger_serializes_to_json_and_rebuilds(trigger):
    from airflow.sdk.module_loading import import_string
    from airflow.sdk.serde import deserialize, serialize

    classpath, kwargs = trigger.serialize()
    assert classpath == f"{type(trigger).__module__}.{type(trigger).__name__}"
    assert json.loads(json.dumps(kwargs)) == kwargs  # plain JSON, nothing pickled
    assert support.TOKEN not in json.dumps(kwargs)
    assert kwargs["deployflow_conn_id"] == trigger.deployflow_conn_id and kwargs["deadline"] == trigger.deadline
    # The way Airflow stores and restores it (serde), then rebuilds it where it runs.
    restored = deserialize(serialize(kwargs))
    rebuilt = import_string(classpath)(**restored)
    assert type(rebuilt) is type(trigger)
    assert rebuilt.serialize() == (classpath, kwargs)


async def _events(trigger: Any) -> list[dict[str, Any]]:
    events = [event.payload async for event in trigger.run()]
    for payload in events:
        json.dumps(payload)  # small JSON for the metadata database
    return events


@pytest.fixture
def deployments(client) -> Iterator[list[str]]:
    """Names to delete after the test."""
    names: list[str] = []
    yield names
    for name in names:
        client.delete_deployment(name, config={"stop_timeout": 2})


async def test_ready_deployment_fires_ready_with_the_carried_result(client, deployments):
    deployments.append("trig-ready")
    client.create_deployment("trig-ready", support.ADD_ONE, config=support.NO_WAIT)
    trigger = DeploymentReadyTrigger(
        deployflow_conn_id=CONN, deployment_name="trig-ready", deadline=time.time() + 120, poll_interval=0.1,
        carry={"action": "created"},
    )
    [event] = await _events(trigger)
    assert event["status"] == "READY" and event["deployment_name"] == "trig-ready"
    assert event["carry"] == {"action": "created"}

    # A trigger resumed after its deadline (a triggerer restart) still looks once: READY wins.
    late = DeploymentReadyTrigger(deployflow_conn_id=CONN, deployment_name="trig-ready", deadline=time.time() - 60)
    [event] = await _events(late)
    assert event["status"] == "READY"


async def test_failed_start_fires_failed_with_the_reason(client, deployments):
    deployments.append("trig-broken")
    client.create_deployment("trig-broken", support.BROKEN, config=support.NO_WAIT)
    trigger = DeploymentReadyTrigger(
        deployflow_conn_id=CONN, deployment_name="trig-broken", deadline=time.time() + 120, poll_interval=0.1
    )
    [event] = await _events(trigger)
    assert event["status"] == "FAILED"
    assert "model weights missing: churn-v7.bin was never uploaded" in event["reason"]
    assert event["retryable"] is False


async def test_pending_past_the_deadline_fires_timeout_with_the_last_state(client, deployments):
    deployments.append("trig-slow")
    client.create_deployment("trig-slow", support.SLOW, config=support.NO_WAIT)
    trigger = DeploymentReadyTrigger(
        deployflow_conn_id=CONN, deployment_name="trig-slow", deadline=time.time() + 0.5, poll_interval=0.1
    )
    [event] = await _events(trigger)
    assert event["status"] == "TIMEOUT" and event["retryable"] is True
    assert event["reason"].startswith("PENDING")
    assert "was not ready by its deadline" in event["message"]


async def test_missing_past_the_grace_fires_not_found():
    trigger = DeploymentReadyTrigger(
        deployflow_conn_id=CONN, deployment_name="never-created", deadline=time.time() + 60,
        not_found_deadline=time.time(), poll_interval=0.1,
    )
    [event] = await _events(trigger)
    assert event["status"] == "NOT_FOUND"


async def test_missing_endpoint_fires_not_found():
    trigger = EndpointReadyTrigger(
        deployflow_conn_id=CONN, endpoint="no-such-endpoint", deadline=time.time() + 60,
        not_found_deadline=time.time(), poll_interval=0.1,
    )
    [event] = await _events(trigger)
    assert event["status"] == "NOT_FOUND" and event["kind"] == "endpoint"


async def test_unusable_connection_fires_a_non_retryable_error(monkeypatch):
    monkeypatch.setenv(
        "AIRFLOW_CONN_DEPLOYFLOW_NOWHERE", json.dumps({"conn_type": "deployflow", "host": "no-such-target"})
    )
    trigger = DeploymentReadyTrigger(
        deployflow_conn_id="deployflow_nowhere", deployment_name="x", deadline=time.time() + 60
    )
    [event] = await _events(trigger)
    assert event["status"] == "ERROR" and event["retryable"] is False
    assert "no-such-target" in event["message"]
