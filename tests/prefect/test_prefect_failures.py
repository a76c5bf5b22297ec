"""A deployment that cannot serve fails its task at once with the server's reason, not at the timeout,
and sends a failed event."""

from __future__ import annotations

import os
import signal
import time

import pytest
from prefect import flow

from deployflow import DeploymentFailedError, InvalidInputError, get_deploy_client
from deployflow.integrations.prefect import create_deployment, wait_for_deployment_ready
from prefect_support import BROKEN_MODEL, flow_logs, model_ref, read_events, task_runs_of

TIMEOUT = 600.0  # what the tasks are given; failing "at once" means far sooner
SANITY = 90.0


@flow
def deploy_and_wait(target: str, name: str, model_uri: str, config: dict | None = None, wait: bool = False):
    created = create_deployment.with_options(retry_delay_seconds=0)(
        target, name, model_uri, config=config, wait=wait, timeout=TIMEOUT
    )
    ready = wait_for_deployment_ready(target, name, timeout=TIMEOUT, poll_interval=0.2)
    return created, ready


def test_a_model_that_cannot_load_fails_create_at_once_with_the_reason(target_uri, cleanup):
    name = "broken-create"
    cleanup(name)
    started = time.monotonic()

    # Waiting in the create step: the step itself fails with the model's error (not retried).
    state = deploy_and_wait(target_uri, name, model_ref("model", BROKEN_MODEL), wait=True, return_state=True)

    assert time.monotonic() - started < SANITY
    with pytest.raises(InvalidInputError, match="churn-v3.bin is corrupt"):
        state.result()
    runs = task_runs_of(state.state_details.flow_run_id)
    assert [run.name.rsplit("-", 1)[0] for run in runs] == ["create_deployment"]
    assert runs[0].run_count == 1  # retries=3, but a model that cannot load is not retried
    failed = read_events("deployflow.deployment.failed", resource_id=f"deployflow.deployment.{name}")
    assert failed and "churn-v3.bin is corrupt" in failed[0].payload["reason"]
    assert failed[0].payload["error_type"] == "InvalidInputError"


def test_wait_fails_at_once_when_the_server_dies_while_starting(target_uri, cleanup):
    name = "broken-wait"
    cleanup(name)
    started = time.monotonic()

    # The local target's config wait=false returns before the server has loaded the model: the wait
    # task sees it fail.
    state = deploy_and_wait(
        target_uri, name, model_ref("model", BROKEN_MODEL), config={"wait": False}, return_state=True
    )

    assert time.monotonic() - started < SANITY
    with pytest.raises(DeploymentFailedError, match="churn-v3.bin is corrupt"):
        state.result()
    runs = {run.name.rsplit("-", 1)[0]: run for run in task_runs_of(state.state_details.flow_run_id)}
    assert runs["create_deployment"].state.is_completed()
    assert runs["wait_for_deployment_ready"].state.is_failed()
    assert runs["wait_for_deployment_ready"].run_count == 1
    # A log line per state change, not per poll (it polled every 0.2 s while the server started).
    waited = flow_logs(state.state_details.flow_run_id, runs["wait_for_deployment_ready"].id)
    changes = [line.split(": ", 1)[1].split(" ")[0] for line in waited if line.startswith(f"Deployment {name!r}: ")]
    assert changes == ["PENDING", "FAILED"]
    failed = read_events("deployflow.deployment.failed", resource_id=f"deployflow.deployment.{name}")
    assert failed and failed[0].payload["error_type"] == "DeploymentFailedError"


def test_wait_reports_a_killed_server_as_failed_at_once(target_uri, cleanup):
    name = "killed"
    cleanup(name)
    with get_deploy_client(target_uri) as client:
        pid = client.create_deployment(name, model_ref("add_one"))["pid"]
    os.kill(pid, signal.SIGKILL)
    started = time.monotonic()

    @flow
    def wait_only():
        return wait_for_deployment_ready(target_uri, name, timeout=TIMEOUT, poll_interval=0.2)

    state = wait_only(return_state=True)

    assert time.monotonic() - started < SANITY
    with pytest.raises(DeploymentFailedError, match="signal 9"):
        state.result()
