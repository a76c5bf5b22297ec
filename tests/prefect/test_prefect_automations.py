"""deployflow's ready and failed events drive Prefect automations and deployment triggers: the test
server's trigger and action services (they run in the test harness's server) start a run of a Prefect
deployment when a deployflow step sends the event, with parameters taken from the event's payload."""

from __future__ import annotations

import time
from typing import Any
from uuid import UUID

from prefect import flow, get_client
from prefect.automations import Automation
from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterId
from prefect.events import DeploymentEventTrigger
from prefect.events.actions import RunDeployment
from prefect.events.schemas.automations import EventTrigger, Posture

from deployflow import get_deploy_client
from deployflow.integrations.prefect import create_deployment, wait_for_deployment_ready
from prefect_support import BROKEN_MODEL, model_ref


def prefect_deployment(flow_name: str, name: str) -> UUID:
    """A Prefect deployment (no worker runs it: the runs the automations start are only recorded)."""
    with get_client(sync_client=True) as client:
        flow_id = client.create_flow_from_name(flow_name)
        return client.create_deployment(flow_id=flow_id, name=name, entrypoint="scoring.py:score",
                                        enforce_parameter_schema=False)


def runs_of(deployment_id: UUID, *, timeout: float = 60.0) -> list[Any]:
    """The flow runs of a Prefect deployment, polled until there is one: the trigger service acts on an
    event in the background."""
    deadline = time.monotonic() + timeout
    while True:
        with get_client(sync_client=True) as client:
            runs = client.read_flow_runs(deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[deployment_id])))
        if runs or time.monotonic() > deadline:
            return runs
        time.sleep(0.25)


@flow
def deploy_churn(target: str, name: str) -> dict[str, Any]:
    return create_deployment(target, name, model_ref("add_one"), poll_interval=0.2, timeout=120)


@flow
def deploy_broken(target: str, name: str) -> None:
    create_deployment(target, name, model_ref("broken", BROKEN_MODEL), wait=False)
    wait_for_deployment_ready(target, name, timeout=120, poll_interval=0.2)


def test_a_ready_event_runs_the_scoring_deployment_with_the_url_it_carries(target_uri, cleanup):
    cleanup("ev-churn")
    scoring = prefect_deployment("score-churn", "when-churn-serves")
    # The automation as the events module's docs write it.
    Automation(
        name="score churn once it serves",
        trigger=EventTrigger(
            expect={"deployflow.deployment.ready"},
            match={"prefect.resource.id": "deployflow.deployment.ev-churn"},
            posture=Posture.Reactive,
            threshold=1,
        ),
        actions=[RunDeployment(source="selected", deployment_id=scoring,
                               parameters={"url": "{{ event.payload.url }}",
                                           "name": "{{ event.resource['prefect.resource.name'] }}",
                                           "target": "{{ event.resource['deployflow.target'] }}"})],
    ).create()
    assert runs_of(scoring, timeout=0) == []

    deployed = deploy_churn(target_uri, "ev-churn")

    runs = runs_of(scoring)
    assert len(runs) == 1
    with get_deploy_client(target_uri) as client:
        url = client.get_deployment("ev-churn")["url"]
    assert runs[0].parameters == {"url": url, "name": "ev-churn", "target": target_uri}
    assert deployed["url"] == url


def test_a_failed_event_drives_a_deployment_trigger_with_the_reason(target_uri, cleanup):
    cleanup("ev-broken")
    on_failure = prefect_deployment("page-on-call", "when-a-deployment-fails")
    # What flow.serve(triggers=[...]) / flow.deploy(triggers=[...]) do with a deployment trigger.
    trigger = DeploymentEventTrigger(
        expect={"deployflow.deployment.failed"},
        match={"prefect.resource.id": "deployflow.deployment.ev-broken"},
        parameters={"reason": "{{ event.payload.reason }}", "error": "{{ event.payload.error_type }}"},
    )
    trigger.set_deployment_id(on_failure)
    with get_client(sync_client=True) as client:
        client.create_automation(trigger.as_automation())

    state = deploy_broken(target_uri, "ev-broken", return_state=True)

    assert state.is_failed()
    runs = runs_of(on_failure)
    assert len(runs) == 1
    assert runs[0].parameters["error"] == "DeploymentFailedError"
    assert "checksum mismatch" in runs[0].parameters["reason"]
