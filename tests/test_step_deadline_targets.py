"""Issue 12, item 9 on a remote target: a step's one deadline and "do not wait" reach the databricks
target's own create, against the fake Databricks workspace on 127.0.0.1 (tests/fakes/databricks.py).

The target's create waits for the endpoint with its own ``wait_timeout`` (here 600 s); the step's
``timeout`` ends that wait, and ``wait=False`` skips it.
"""

from __future__ import annotations

import time

import pytest

from deployflow import State, WaitTimeoutError, ensure_deployment, get_deploy_client
from fakes.base import scrub_environment
from fakes.databricks import DEFAULT_TOKEN, FakeDatabricks

SLOW = {"poll_interval": 0.05, "max_poll_interval": 0.1, "wait_timeout": 600, "max_retries": 0}
MODEL = "models:/main.default.churn/1"


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch, tmp_path):
    scrub_environment(monkeypatch, tmp_path)


@pytest.fixture
def client():
    with FakeDatabricks(polls_to_ready=10_000) as fake, get_deploy_client(
        "databricks", host=fake.url, token=DEFAULT_TOKEN, **SLOW
    ) as made:
        yield made


def test_the_steps_timeout_ends_the_targets_own_wait(client):
    started = time.monotonic()
    with pytest.raises(WaitTimeoutError) as caught:
        ensure_deployment(client, "churn", MODEL, timeout=3)
    assert 2.5 <= time.monotonic() - started < 8.0  # the step's 3 s, not the target's 600
    assert "caller's deadline" in str(caught.value)
    assert caught.value.last_status.state is State.PENDING


def test_a_step_that_does_not_wait_returns_once_the_change_is_accepted(client):
    started = time.monotonic()
    result = ensure_deployment(client, "churn", MODEL, wait=False)
    assert time.monotonic() - started < 3.0  # a few requests; the target would wait up to 600 s
    assert result.action == "created"
    assert client.deployment_status("churn", "churn").state is State.PENDING
