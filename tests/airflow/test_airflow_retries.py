"""Retries through the Airflow provider: one level (Airflow's task retries), the same budget as the Prefect
tasks (the numbers come from ``tests/support/retry_budget.py``), counted at a real HTTP server.

The rule under test is "Retries in pipeline steps" in :mod:`deployflow.orchestration`.

How retries run here: ``dag.test()`` (Airflow 3.3) runs a failed task's retries itself. A task that fails
with a retryable error goes to ``up_for_retry``; with ``retry_delay=timedelta(0)`` it is due at once,
and ``dag.test()`` keeps scheduling the run until every task is finished, so each try runs in this
process and ``try_number`` ends at ``1 + retries`` (the same mechanism
``test_a_retried_create_adopts_what_the_first_attempt_created`` relies on). No task instance is run by
hand. The DAG lives in ``dags/deployflow_test_dags.py`` because ``dag.test()`` in 3.3 only runs a DAG
its DAG bundle holds (it refuses one defined in a test: "the dag is not serialized"); the test sets the
task's ``retries`` from the shared budget before running it.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pandas as pd
import pytest
from airflow.sdk.exceptions import AirflowFailException

import airflow_support
from airflow_support import captured_output, run_dag
from deployflow import TransientError, get_deploy_client
from deployflow.integrations.airflow.hooks import DeploymentHook
from deployflow.integrations.airflow.operators import BatchPredictOperator
from support.retry_budget import (
    CLIENT_MAX_RETRIES_IN_OPTIONS,
    SECRET_TOKEN,
    STEP_RETRIES,
    AlwaysUnavailable,
    expected_attempts,
)

ONE_ROW = {"inputs": [[1.0, 2.0]]}
#: Words of the hook's WARNING about a ``max_retries`` in the connection's extra.
IGNORED = f"max_retries={CLIENT_MAX_RETRIES_IN_OPTIONS} set in the extra of connection"


@pytest.fixture
def server() -> Iterator[AlwaysUnavailable]:
    with AlwaysUnavailable() as unavailable:
        yield unavailable


def connect(monkeypatch: pytest.MonkeyPatch, conn_id: str, host: str, **extra: Any) -> str:
    """Define connection ``conn_id`` (in the environment, as the session's other connections) holding
    :data:`SECRET_TOKEN` as its token; returns its id."""
    monkeypatch.setenv(
        f"AIRFLOW_CONN_{conn_id.upper()}",
        json.dumps({"conn_type": "deployflow", "host": host, "password": SECRET_TOKEN, "extra": extra}),
    )
    return conn_id


@pytest.fixture(scope="module")
def budget_run() -> Iterator[tuple[AlwaysUnavailable, Any, str]]:
    """The predict DAG run once under ``dag.test()`` against an always-503 server, through a connection
    whose extra sets ``max_retries`` and whose token is :data:`SECRET_TOKEN`; its task has
    ``retries=STEP_RETRIES``. Yields the server, the run and everything the run logged."""
    dag = airflow_support.suite_dag("deployflow_test_retry_budget")
    dag.get_task("predict").retries = STEP_RETRIES
    with AlwaysUnavailable() as unavailable, pytest.MonkeyPatch.context() as patch:
        connect(patch, "deployflow_unavailable", unavailable.target_uri, max_retries=CLIENT_MAX_RETRIES_IN_OPTIONS)
        run, output = run_dag(dag)
        yield unavailable, run, output


def test_airflow_retries_do_not_multiply_transport_retries(budget_run, server):
    # Control: the same kind of server makes a client's transport retry on its own, outside a step.
    with (
        get_deploy_client(server.target_uri, max_retries=CLIENT_MAX_RETRIES_IN_OPTIONS) as client,
        pytest.raises(TransientError),
    ):
        client.predict("model", ONE_ROW)
    assert server.posts == 1 + CLIENT_MAX_RETRIES_IN_OPTIONS

    unavailable, run, output = budget_run
    ti = airflow_support.task_instances(run)["predict"]
    assert ti.state == "failed", output[-5000:]
    assert ti.try_number == expected_attempts(STEP_RETRIES), output[-5000:]  # Airflow did retry
    # One request per try: 1 + retries, not (1 + retries) x (1 + max_retries).
    assert unavailable.posts == expected_attempts(STEP_RETRIES), output[-5000:]
    assert unavailable.gets == 0


def test_the_ignored_max_retries_is_logged_once_per_try_without_the_token(budget_run):
    _, _, output = budget_run
    warnings = [line for line in output.splitlines() if IGNORED in line]
    # Each try has its own log, and each says why the option is not used.
    assert len(warnings) == expected_attempts(STEP_RETRIES), output[-5000:]
    for line in warnings:
        assert "WARNING" in line.upper()
        assert "deployflow.orchestration" in line and "1 + retries" in line
    assert SECRET_TOKEN not in output  # the token sat beside max_retries in the same connection
    assert "503" in output  # the tries' logs were captured (each failed with the server's answer)


def test_the_hooks_client_sends_each_request_once_even_outside_a_task(server, monkeypatch):
    conn_id = connect(monkeypatch, "deployflow_direct", server.target_uri, max_retries=CLIENT_MAX_RETRIES_IN_OPTIONS)
    hook = DeploymentHook(conn_id)
    with captured_output() as output:
        try:
            with pytest.raises(TransientError):
                hook.get_conn().predict("model", ONE_ROW)
        finally:
            hook.close()
    assert server.posts == 1
    warnings = [line for line in output[0].splitlines() if IGNORED in line]
    assert len(warnings) == 1 and "WARNING" in warnings[0].upper(), output[0][-3000:]
    assert SECRET_TOKEN not in output[0]


def test_no_warning_when_the_extra_sets_no_max_retries(server, monkeypatch):
    conn_id = connect(monkeypatch, "deployflow_plain", server.target_uri, timeout=5)
    hook = DeploymentHook(conn_id)
    with captured_output() as output:
        try:
            with pytest.raises(TransientError):
                hook.get_conn().predict("model", ONE_ROW)
        finally:
            hook.close()
    assert server.posts == 1
    assert "is not used inside deployflow steps" not in output[0]


def test_a_plugin_without_a_max_retries_option_keeps_its_own_policy(monkeypatch):
    # The test plugin's client takes ``timeout`` and ``token`` only: it is built without max_retries.
    conn_id = "deployflow_plugin"
    monkeypatch.setenv(
        "AIRFLOW_CONN_DEPLOYFLOW_PLUGIN",
        json.dumps({"conn_type": "deployflow", "host": "optionstarget", "extra": {"timeout": 3}}),
    )
    hook = DeploymentHook(conn_id)
    with captured_output() as output:
        client = hook.get_conn()
    try:
        assert type(client).__name__ == "OptionsClient" and client.timeout == 3
    finally:
        hook.close()
    assert "takes no 'max_retries' option" in output[0]


def test_batch_predict_is_not_retried_by_airflow_each_chunk_has_its_budget(server, monkeypatch, tmp_path):
    conn_id = connect(monkeypatch, "deployflow_batch", server.target_uri, max_retries=CLIENT_MAX_RETRIES_IN_OPTIONS)
    source = tmp_path / "input.csv"
    pd.DataFrame({"x": [1.0, 2.0]}).to_csv(source, index=False)
    operator = BatchPredictOperator(
        task_id="batch",
        deployflow_conn_id=conn_id,
        deployment_name="model",
        input_path=str(source),
        output_path=str(tmp_path / "out.parquet"),
        max_chunk_retries=1,
        retries=STEP_RETRIES,  # not used on a deployflow error: the chunk spent its own budget
    )
    with pytest.raises(AirflowFailException, match="not retried: each chunk had up to max_chunk_retries=1"):
        operator.execute({})
    assert server.posts == 1 + 1  # one chunk: one request, then its one retry
