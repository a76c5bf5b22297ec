"""Issue 12, item 9 on the ``local`` target: "one deadline" and "do not wait" for every create and update.

* Do not wait: ``config={"wait": False}`` (and ``ensure_deployment(..., wait=False)``, which the pipeline
  steps use) returns as soon as the deployment is recorded and its server is starting; a later
  ``wait_for_deployment`` waits, and reports FAILED with the server's own reason when it cannot start.
* One deadline: a step's ``timeout`` (``ensure_deployment(..., timeout=...)``) bounds the whole create,
  server start included, whatever the target's own ``startup_timeout`` says.

Real server processes on 127.0.0.1, with models that take a few seconds to load or fail while loading.
"""

from __future__ import annotations

import time

import pytest

from deployflow import (
    DeploymentFailedError,
    InvalidInputError,
    State,
    WaitTimeoutError,
    ensure_deployment,
    ensure_endpoint,
)
from support.local_models import ADD_ONE, DOUBLER, local_client, local_home, our_processes, write_module

#: How long the slow model takes to load. Every "returned at once" and "ended by the step's deadline"
#: bound below is well under it, with room for a loaded machine.
LOAD_SECONDS = 8.0
AT_ONCE = 4.0
BEFORE_LOADED = LOAD_SECONDS - 2.0
WAIT = {"poll_interval": 0.05, "max_poll_interval": 0.2}

SLOW_SOURCE = f"""
import time

time.sleep({LOAD_SECONDS})


def model(data):
    return [[value * 10 for value in row] for row in data]
"""

FAILING_SOURCE = """
import time

time.sleep(1.5)
raise RuntimeError("feature store unreachable: table churn_features_v9 is missing")
"""


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    with local_home(tmp_path_factory.mktemp("local-no-wait")) as directory:
        yield directory


@pytest.fixture(scope="module")
def client(home):
    with local_client(home) as local:
        yield local


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    directory = tmp_path_factory.mktemp("no-wait-models")
    return {
        "slow": f"python:{write_module(directory, 'slow_loading.py', SLOW_SOURCE)}:model",
        "failing": f"python:{write_module(directory, 'failing_start.py', FAILING_SOURCE)}:model",
    }


def _timed(call):
    started = time.monotonic()
    result = call()
    return result, time.monotonic() - started


# --------------------------------------------------------------------------------------------------
# Do not wait
# --------------------------------------------------------------------------------------------------


def test_update_without_waiting_returns_at_once_and_switches_over_later(client, models):
    client.create_deployment("rolling", ADD_ONE)
    assert client.predict("rolling", [[1.0]])["predictions"] == [[2.0]]

    record, seconds = _timed(lambda: client.update_deployment("rolling", models["slow"], config={"wait": False}))

    assert seconds < AT_ONCE, seconds
    assert record["state"] == "PENDING" and "update" in record["reason"]
    assert client.deployment_status("rolling").state is State.PENDING
    # The old server keeps serving while the new one loads.
    assert client.predict("rolling", [[1.0]])["predictions"] == [[2.0]]

    status = client.wait_for_deployment("rolling", timeout=60, **WAIT)
    assert status.state is State.READY
    updated = client.get_deployment("rolling")
    assert updated["model_uri"] == models["slow"] and updated["pid"] != record["pid"]
    assert "pending" not in updated
    assert client.predict("rolling", [[1.0]])["predictions"] == [[10.0]]
    client.delete_deployment("rolling")


def test_a_failed_update_without_waiting_is_reported_by_the_later_wait(client, models):
    first = client.create_deployment("steadfast", ADD_ONE)

    _, seconds = _timed(lambda: client.update_deployment("steadfast", models["failing"], config={"wait": False}))

    assert seconds < AT_ONCE, seconds
    with pytest.raises(DeploymentFailedError) as caught:
        client.wait_for_deployment("steadfast", timeout=60, **WAIT)
    assert "RuntimeError: feature store unreachable: table churn_features_v9 is missing" in caught.value.reason
    assert "previous server keeps serving" in caught.value.reason
    # Nothing was switched: the old server serves on, and the state says why it is FAILED.
    shown = client.get_deployment("steadfast")
    assert shown["pid"] == first["pid"] and shown["model_uri"] == ADD_ONE
    assert shown["state"] == "FAILED" and "churn_features_v9" in shown["last_error"]
    assert client.predict("steadfast", [[1.0]])["predictions"] == [[2.0]]
    # A later update that works clears the failure.
    client.update_deployment("steadfast", DOUBLER)
    assert client.deployment_status("steadfast").state is State.READY
    client.delete_deployment("steadfast")


def test_create_without_waiting_joins_an_endpoint_without_waiting_for_its_router(client, models):
    record, seconds = _timed(
        lambda: client.create_deployment("joiner", models["slow"], config={"wait": False}, endpoint="lobby")
    )

    assert seconds < AT_ONCE, seconds
    assert record["state"] == "PENDING"
    lobby = client.get_endpoint("lobby")
    assert lobby["state"] == "PENDING" and "router" in lobby["reason"]  # its router was not waited for
    assert client.wait_for_endpoint("lobby", timeout=60, **WAIT).state is State.READY
    assert client.predict(endpoint="lobby", inputs=[[2.0]])["predictions"] == [[20.0]]
    client.delete_endpoint("lobby")
    client.delete_deployment("joiner")


def test_create_endpoint_without_waiting_returns_before_its_router_serves(client):
    client.create_deployment("behind", ADD_ONE)

    record, seconds = _timed(
        lambda: client.create_endpoint("hall", {"routes": [{"deployment": "behind", "traffic": 100}], "wait": False})
    )

    assert seconds < AT_ONCE, seconds
    assert record["state"] == "PENDING" and "router" in record["reason"]
    assert client.wait_for_endpoint("hall", timeout=60, **WAIT).state is State.READY
    client.delete_endpoint("hall")
    client.delete_deployment("behind")


def test_the_step_path_does_not_wait_either(client, models):
    """ensure_deployment(wait=False), as the Prefect and Airflow steps call it, with no wait key in the
    config: it returns as soon as the server is starting, and the failure shows in the later wait."""
    result, seconds = _timed(lambda: ensure_deployment(client, "step-slow", models["slow"], wait=False))
    assert seconds < AT_ONCE, seconds
    assert result.action == "created" and result.record["state"] == "PENDING"
    assert client.wait_for_deployment("step-slow", timeout=60, **WAIT).state is State.READY

    result, seconds = _timed(lambda: ensure_deployment(client, "step-broken", models["failing"], wait=False))
    assert seconds < AT_ONCE, seconds
    assert result.action == "created"
    with pytest.raises(DeploymentFailedError, match="churn_features_v9 is missing"):
        client.wait_for_deployment("step-broken", timeout=60, **WAIT)

    # The roll forward of a step that does not wait does not wait either.
    result, seconds = _timed(
        lambda: ensure_deployment(client, "step-slow", ADD_ONE, wait=False, if_exists="update")
    )
    assert seconds < AT_ONCE, seconds
    assert result.action == "updated"
    assert client.wait_for_deployment("step-slow", timeout=60, **WAIT).state is State.READY
    assert client.get_deployment("step-slow")["model_uri"] == ADD_ONE
    client.delete_deployment("step-slow")
    client.delete_deployment("step-broken")


# --------------------------------------------------------------------------------------------------
# One deadline
# --------------------------------------------------------------------------------------------------


def test_a_steps_timeout_bounds_the_server_start(client, home, models):
    started = time.monotonic()
    with pytest.raises(WaitTimeoutError) as caught:
        # The target would give the server 120 s; the step has 2.
        ensure_deployment(client, "hurried", models["slow"], config={"startup_timeout": 120}, timeout=2)
    elapsed = time.monotonic() - started
    assert 1.5 <= elapsed < BEFORE_LOADED, elapsed
    assert "caller's deadline" in str(caught.value)
    # A create that failed leaves nothing behind.
    assert "hurried" not in [d["name"] for d in client.list_deployments()]
    assert not [p for p in our_processes(home) if "hurried" in " ".join(p.cmdline())]


def test_a_steps_timeout_bounds_an_update_and_an_endpoint_create(client, models):
    client.create_deployment("bounded", ADD_ONE)
    started = time.monotonic()
    with pytest.raises(WaitTimeoutError):
        ensure_deployment(client, "bounded", models["slow"], if_exists="update", timeout=2)
    assert time.monotonic() - started < BEFORE_LOADED
    assert client.get_deployment("bounded")["model_uri"] == ADD_ONE  # the old server still serves

    client.update_deployment("bounded", models["slow"], config={"wait": False})
    started = time.monotonic()
    with pytest.raises(WaitTimeoutError):
        # The endpoint is READY only once the deployment it routes to is: the step's 1.5 s end it.
        ensure_endpoint(client, "gate", config={"routes": [{"deployment": "bounded", "traffic": 100}]}, timeout=1.5)
    assert time.monotonic() - started < BEFORE_LOADED
    client.wait_for_deployment("bounded", timeout=60, **WAIT)
    client.delete_endpoint("gate")
    client.delete_deployment("bounded")


@pytest.mark.parametrize("timeout", [float("nan"), "soon", -1, True])
def test_a_bad_step_timeout_is_refused_before_anything_starts(client, timeout):
    with pytest.raises(InvalidInputError, match="timeout must be"):
        ensure_deployment(client, "never", ADD_ONE, timeout=timeout)
    assert "never" not in [d["name"] for d in client.list_deployments()]


# --------------------------------------------------------------------------------------------------
# The CLI passes both through its -C options
# --------------------------------------------------------------------------------------------------


def test_the_cli_update_with_wait_false_returns_at_once(client, home, models):
    from click.testing import CliRunner

    from deployflow.cli import cli

    client.create_deployment("by-cli", ADD_ONE)
    runner = CliRunner()
    started = time.monotonic()
    result = runner.invoke(
        cli, ["update", "-t", f"local://{home}", "--name", "by-cli", "-m", models["slow"], "-C", "wait=false"]
    )
    seconds = time.monotonic() - started
    assert result.exit_code == 0, result.output
    assert seconds < AT_ONCE, seconds
    assert client.deployment_status("by-cli").state is State.PENDING
    assert client.wait_for_deployment("by-cli", timeout=60, **WAIT).state is State.READY
    assert client.get_deployment("by-cli")["model_uri"] == models["slow"]
    client.delete_deployment("by-cli")
