"""Issue 12, items 8 and 9, through the Prefect tasks on the real local target.

* ``create_deployment(..., wait=False)`` returns as soon as the deployment is recorded and its server is
  starting, so a separate ``wait_for_deployment_ready`` task does the waiting (and reports a server that
  could not start as FAILED with its reason), as the example flow is written.
* ``timeout`` is one deadline for the whole task, the server's start included: a model slower than the
  task's timeout fails the task at its deadline, not at the target's ``startup_timeout``.
* Wait arguments that are not a number of seconds fail the task at once with InvalidInputError (a
  ``nan`` timeout used to wait forever).
"""

from __future__ import annotations

import time

import pytest
from prefect import flow

from deployflow import DeploymentFailedError, InvalidInputError, WaitTimeoutError, get_deploy_client
from deployflow.integrations.prefect import (
    create_deployment,
    create_endpoint,
    update_deployment,
    update_endpoint,
    wait_for_deployment_ready,
)
from prefect_support import BROKEN_MODEL, HERE, model_ref, task_runs_of

SLOW_MODEL = HERE / "prefect_slow_model.py"
LOAD_SECONDS = 8.0  # prefect_slow_model.LOAD_SECONDS
AT_ONCE = 4.0  # a task that does not wait returns well before the model has loaded


def _names(client) -> list[str]:
    return [deployment["name"] for deployment in client.list_deployments()]


def test_create_without_waiting_returns_at_once_and_the_wait_task_waits(target_uri, cleanup):
    cleanup("lazy-slow")

    @flow
    def deploy_then_wait():
        started = time.monotonic()
        created = create_deployment(target_uri, "lazy-slow", model_ref("model", SLOW_MODEL), wait=False, timeout=6)
        returned_after = time.monotonic() - started
        ready = wait_for_deployment_ready(target_uri, "lazy-slow", timeout=120, poll_interval=0.2)
        return created, returned_after, ready

    created, returned_after, ready = deploy_then_wait()

    assert returned_after < AT_ONCE, returned_after
    assert created["action"] == "created" and created["state"] == "PENDING"
    assert ready["state"] == "READY" and ready["url"].startswith("http://127.0.0.1:")


def test_create_without_waiting_leaves_a_failed_start_to_the_wait_task(target_uri, cleanup):
    cleanup("lazy-broken")

    @flow
    def deploy_then_wait():
        created = create_deployment(target_uri, "lazy-broken", model_ref("model", BROKEN_MODEL), wait=False)
        ready = wait_for_deployment_ready(target_uri, "lazy-broken", timeout=120, poll_interval=0.2)
        return created, ready

    state = deploy_then_wait(return_state=True)

    with pytest.raises(DeploymentFailedError, match="churn-v3.bin is corrupt"):
        state.result()
    runs = {run.name.rsplit("-", 1)[0]: run for run in task_runs_of(state.state_details.flow_run_id)}
    assert runs["create_deployment"].state.is_completed()
    assert runs["wait_for_deployment_ready"].state.is_failed()


def test_the_tasks_timeout_bounds_the_server_start(target_uri, cleanup):
    cleanup("hurried")

    @flow
    def deploy():
        started = time.monotonic()
        try:
            create_deployment.with_options(retry_delay_seconds=0)(
                target_uri, "hurried", model_ref("model", SLOW_MODEL), timeout=2
            )
        finally:
            elapsed = time.monotonic() - started
        return elapsed

    state = deploy(return_state=True)

    with pytest.raises(WaitTimeoutError, match="caller's deadline"):
        state.result()
    runs = task_runs_of(state.state_details.flow_run_id)
    assert runs[0].run_count == 1  # a timeout is the whole budget: not retried
    assert runs[0].total_run_time.total_seconds() < LOAD_SECONDS - 2, runs[0].total_run_time
    with get_deploy_client(target_uri) as client:
        assert "hurried" not in _names(client)  # a create that failed leaves nothing behind


def test_update_honours_wait_false_and_its_timeout(target_uri, cleanup):
    cleanup("moving")
    with get_deploy_client(target_uri) as client:
        client.create_deployment("moving", model_ref("add_one"))

    @flow
    def roll():
        started = time.monotonic()
        try:
            update_deployment.with_options(retry_delay_seconds=0)(
                target_uri, "moving", model_ref("model", SLOW_MODEL), timeout=2
            )
        except WaitTimeoutError as error:
            bounded = (str(error), time.monotonic() - started)
        started = time.monotonic()
        lazy = update_deployment(target_uri, "moving", model_ref("model", SLOW_MODEL), wait=False)
        returned_after = time.monotonic() - started
        ready = wait_for_deployment_ready(target_uri, "moving", timeout=120, poll_interval=0.2)
        return bounded, lazy, returned_after, ready

    bounded, lazy, returned_after, ready = roll()

    assert "caller's deadline" in bounded[0] and bounded[1] < LOAD_SECONDS - 2, bounded
    assert returned_after < AT_ONCE, returned_after
    assert lazy["action"] == "updated" and lazy["state"] == "PENDING"
    assert ready["state"] == "READY"
    with get_deploy_client(target_uri) as client:
        assert client.get_deployment("moving")["model_uri"].endswith("prefect_slow_model.py:model")


@pytest.mark.timeout(120)
@pytest.mark.parametrize("timeout", [float("nan"), "soon", -5, float("inf")])
def test_wait_arguments_that_are_not_seconds_fail_at_once(target_uri, timeout):
    @flow
    def wait_only():
        return wait_for_deployment_ready(target_uri, "nobody", timeout=timeout, poll_interval=0.2)

    @flow
    def create_only():
        return create_deployment(target_uri, "never-created", model_ref("add_one"), timeout=timeout)

    with pytest.raises(InvalidInputError, match="^timeout must be"):
        wait_only()
    with pytest.raises(InvalidInputError, match="^timeout must be"):
        create_only()
    with get_deploy_client(target_uri) as client:
        assert "never-created" not in _names(client)


def test_a_poll_interval_that_is_not_seconds_fails_at_once(target_uri):
    @flow
    def wait_only():
        return wait_for_deployment_ready(target_uri, "nobody", timeout=5, poll_interval="often")

    @flow
    def create_only():
        return create_deployment(target_uri, "never-polled", model_ref("add_one"), poll_interval=float("nan"))

    with pytest.raises(InvalidInputError, match="^poll_interval must be"):
        wait_only()
    with pytest.raises(InvalidInputError, match="^poll_interval must be"):
        create_only()
    with get_deploy_client(target_uri) as client:
        assert "never-polled" not in _names(client)  # refused before the create, not after it


@pytest.mark.timeout(120)
@pytest.mark.parametrize("timeout", [float("nan"), "soon"])
def test_endpoint_tasks_refuse_wait_arguments_that_are_not_seconds(target_uri, timeout):
    @flow
    def create_only():
        return create_endpoint(target_uri, "never-routed", {"routes": [{"deployment": "x", "traffic": 100}]}, timeout=timeout)

    @flow
    def update_only():
        return update_endpoint(target_uri, "never-routed", {"routes": [{"deployment": "x", "traffic": 100}]}, timeout=timeout)

    for step in (create_only, update_only):
        with pytest.raises(InvalidInputError, match="^timeout must be"):
            step()
    with get_deploy_client(target_uri) as client:
        assert "never-routed" not in [endpoint["name"] for endpoint in client.list_endpoints()]


def test_endpoint_steps_do_not_wait_when_told_not_to(target_uri, cleanup):
    cleanup("lazy-route-a")
    with get_deploy_client(target_uri) as client:
        client.create_deployment("lazy-route-a", model_ref("add_one"))

    @flow
    def route():
        created = create_endpoint(target_uri, "lazy-route", {"routes": [{"deployment": "lazy-route-a", "traffic": 100}]}, wait=False)
        updated = update_endpoint(target_uri, "lazy-route", {"routes": [{"deployment": "lazy-route-a", "traffic": 100}]}, wait=False)
        return created, updated

    try:
        created, updated = route()
        assert created["action"] == "created" and "seconds" not in created
        assert updated["action"] == "updated" and "seconds" not in updated
    finally:
        with get_deploy_client(target_uri) as client:
            client.delete_endpoint("lazy-route")
