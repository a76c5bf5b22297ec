"""Operators and sensors run directly (``execute``) against the real local target: retry-safety, the one
timeout model in blocking, deferrable and sensor modes, error classes, and what lands in XCom."""

from __future__ import annotations

import asyncio
import datetime
import json
import time
from typing import Any, Iterator

import pandas as pd
import pytest
from airflow.sdk.exceptions import AirflowException, AirflowFailException, AirflowSensorTimeout, TaskDeferred

import airflow_support as support
from deployflow import ConflictError, InvalidInputError, TransientError, WaitTimeoutError, read_output
from deployflow.integrations.airflow._common import raise_for
from deployflow.integrations.airflow.operators import (
    BatchPredictOperator,
    CreateDeploymentOperator,
    DeleteDeploymentOperator,
    PredictOperator,
    UpdateDeploymentOperator,
)
from deployflow.integrations.airflow.sensors import WaitForDeploymentReadySensor

CONN = "deployflow_test"
FAST = {"deployflow_conn_id": CONN, "poll_interval": 0.1, "max_poll_interval": 0.5}


def create(name: str, model_uri: str, **kwargs: Any) -> CreateDeploymentOperator:
    return CreateDeploymentOperator(
        task_id=f"create_{name}", deployment_name=name, model_uri=model_uri, **{**FAST, **kwargs}
    )


@pytest.fixture
def deployments(client) -> Iterator[list[str]]:
    names: list[str] = []
    yield names
    for name in names:
        client.delete_deployment(name, config={"stop_timeout": 2})


@pytest.fixture(scope="module")
def slow() -> Iterator[str]:
    """A deployment that stays PENDING for the whole module."""
    from deployflow import get_deploy_client

    with get_deploy_client(support.TARGET_URI) as client:
        client.create_deployment("ops-slow", support.SLOW, config=support.NO_WAIT)
        yield "ops-slow"
        client.delete_deployment("ops-slow", config={"stop_timeout": 2})


def test_create_is_retry_safe_and_if_exists_decides(client, deployments):
    deployments.append("ops-a")
    first = create("ops-a", support.ADD_ONE).execute({})
    assert first["action"] == "created" and first["state"] == "READY"
    assert json.loads(json.dumps(first)) == first  # JSON-safe XCom

    again = create("ops-a", support.ADD_ONE).execute({})  # what a retried task does
    assert again["action"] == "adopted" and again["url"] == first["url"]

    with pytest.raises(AirflowFailException, match="exists with a different spec"):
        create("ops-a", support.DOUBLER).execute({})
    with pytest.raises(AirflowFailException, match="if_exists='fail'"):
        create("ops-a", support.ADD_ONE, if_exists="fail").execute({})

    rolled = create("ops-a", support.DOUBLER, if_exists="update").execute({})
    assert rolled["action"] == "updated" and rolled["model_uri"] == support.DOUBLER
    assert client.predict("ops-a", [[2.0]])["predictions"] == [[4.0]]
    assert create("ops-a", support.DOUBLER, if_exists="update").execute({})["action"] == "adopted"

    for _ in range(2):  # delete is idempotent
        result = DeleteDeploymentOperator(task_id="d", deployment_name="ops-a", deployflow_conn_id=CONN).execute({})
        assert result["action"] == "deleted"
    assert "ops-a" not in {d["name"] for d in client.list_deployments()}


def test_update_of_a_missing_deployment_fails_without_retry():
    update = UpdateDeploymentOperator(
        task_id="u", deployment_name="never-created", model_uri=support.ADD_ONE, **FAST
    )
    with pytest.raises(AirflowFailException, match="never-created"):
        update.execute({})


def test_errors_map_to_retry_or_fail():
    with pytest.raises(AirflowException) as retried:
        raise_for(TransientError("503 from the service"), "Scoring")
    assert not isinstance(retried.value, AirflowFailException)
    assert isinstance(retried.value.__cause__, TransientError)
    # The timeout is the whole budget of a wait: a retry would wait longer than the user asked.
    with pytest.raises(AirflowFailException):
        raise_for(WaitTimeoutError("not ready"))
    for error in (InvalidInputError("bad config"), ConflictError("exists")):
        with pytest.raises(AirflowFailException):
            raise_for(error, "Creating")


def test_deferrable_and_blocking_waits_share_one_deadline(slow):
    operator = create(slow, support.SLOW, config=support.NO_WAIT, deferrable=True, timeout=30)
    before = time.time()
    with pytest.raises(TaskDeferred) as deferred:
        operator.execute({})
    after = time.time()
    trigger = deferred.value.trigger
    assert deferred.value.method_name == "execute_complete"
    assert before + 30 <= trigger.deadline <= after + 30  # computed once, when the wait started
    assert trigger.carry["action"] == "adopted" and trigger.carry["deployment_name"] == slow
    # Airflow's own deferral timeout is only a backstop: it ends after our deadline.
    assert after + deferred.value.timeout.total_seconds() > trigger.deadline

    carry = trigger.carry
    done = operator.execute_complete({}, event={"status": "READY", "reason": None, "carry": carry})
    # The record is read again on resuming; state and reason are the trigger's.
    with support_client() as client:
        record = client.get_deployment(slow)
    assert done == {**carry, "model_uri": record["model_uri"], "state": "READY", "reason": None}
    # The same rule as the blocking path: the deadline is the whole budget, so no retry.
    with pytest.raises(AirflowFailException, match="not ready in time"):
        operator.execute_complete({}, event={"status": "TIMEOUT", "message": "not ready in time", "carry": carry})
    with pytest.raises(AirflowFailException, match="crashed"):
        operator.execute_complete({}, event={"status": "FAILED", "reason": "crashed", "message": "crashed"})
    with pytest.raises(AirflowFailException):
        operator.execute_complete({}, event={"status": "NOT_FOUND", "message": "gone"})

    # The same timeout in the worker: the same outcome, a failure without retry.
    blocking = create(slow, support.SLOW, config=support.NO_WAIT, deferrable=False, timeout=0.5)
    with pytest.raises(AirflowFailException, match="not ready after"):
        blocking.execute({})


def support_client() -> Any:
    from deployflow import get_deploy_client

    return get_deploy_client(support.TARGET_URI)


@pytest.mark.parametrize("mode", ["worker", "deferred"])
def test_xcom_after_a_wait_is_the_record_read_once_ready(client, deployments, mode):
    """The create returns before the server is up (no URL yet); the XCom is the record read after READY."""
    name = f"ops-record-{mode}"
    deployments.append(name)
    operator = create(name, support.ADD_ONE, config=support.NO_WAIT, deferrable=mode == "deferred", timeout=120)
    if mode == "worker":
        result = operator.execute({})
    else:
        with pytest.raises(TaskDeferred) as deferred:
            operator.execute({})
        event = asyncio.run(_first_event(deferred.value.trigger))
        result = operator.execute_complete({}, event=event)
    record = client.get_deployment(name)
    # What a create that returned before the server had a port carries: no url, no flavor.
    resumed = operator.execute_complete(
        {}, event={"status": "READY", "reason": None, "carry": {"deployment_name": name, "action": "created"}}
    )
    assert (resumed["url"], resumed["flavor"]) == (record["url"], record["flavor"])
    assert result["state"] == "READY" and result["action"] == "created"
    assert result["url"] == record["url"] and result["url"].startswith("http://127.0.0.1:")
    assert result["flavor"] == record["flavor"] and result["flavor"]
    assert result["model_uri"] == record["model_uri"]
    assert json.loads(json.dumps(result)) == result


async def _first_event(trigger: Any) -> dict[str, Any]:
    async for event in trigger.run():
        return event.payload
    raise AssertionError("the trigger fired no event")


def test_deferrable_defaults_to_airflows_setting(monkeypatch):
    assert create("x", support.ADD_ONE).deferrable is False
    monkeypatch.setenv("AIRFLOW__OPERATORS__DEFAULT_DEFERRABLE", "true")
    assert create("x", support.ADD_ONE).deferrable is True
    assert WaitForDeploymentReadySensor(task_id="s", deployment_name="x").deferrable is True
    assert create("x", support.ADD_ONE, deferrable=False).deferrable is False


def test_sensor_timeout_is_the_same_in_poke_and_deferrable_mode(slow):
    poking = WaitForDeploymentReadySensor(
        task_id="poke", deployment_name=slow, deployflow_conn_id=CONN, poke_interval=0.1, timeout=0.5
    )
    with pytest.raises(AirflowSensorTimeout):
        poking.execute({})

    deferring = WaitForDeploymentReadySensor(
        task_id="defer", deployment_name=slow, deployflow_conn_id=CONN, poke_interval=0.1, timeout=0.5,
        deferrable=True,
    )
    before = time.time()
    with pytest.raises(TaskDeferred) as deferred:
        deferring.execute({})
    trigger = deferred.value.trigger
    assert before + 0.5 <= trigger.deadline <= time.time() + 0.5

    async def first_event() -> dict[str, Any]:
        async for event in trigger.run():
            return event.payload
        raise AssertionError("the trigger fired no event")

    event = asyncio.run(first_event())
    assert event["status"] == "TIMEOUT"
    with pytest.raises(AirflowSensorTimeout, match="not ready by its deadline"):
        deferring.execute_complete({}, event=event)


def test_sensor_succeeds_on_ready_and_fails_on_missing(client, deployments):
    deployments.append("ops-b")
    client.create_deployment("ops-b", support.ADD_ONE)
    ready = WaitForDeploymentReadySensor(
        task_id="s", deployment_name="ops-b", deployflow_conn_id=CONN, poke_interval=0.1
    )
    assert ready.execute({}) == {"deployment_name": "ops-b", "endpoint": None, "state": "READY", "reason": None}
    missing = WaitForDeploymentReadySensor(
        task_id="m", deployment_name="nobody", deployflow_conn_id=CONN, poke_interval=0.1, not_found_grace=0
    )
    with pytest.raises(AirflowFailException, match="does not exist"):
        missing.execute({})


def test_predict_writes_predictions_to_a_file_and_keeps_xcom_small(client, deployments, tmp_path):
    deployments.append("ops-p")
    client.create_deployment("ops-p", support.ADD_ONE)
    rows = {"inputs": [[float(i)] for i in range(3000)]}
    out = tmp_path / "nested" / "predictions.json"
    result = PredictOperator(
        task_id="p", deployment_name="ops-p", inputs=rows, output_path=str(out), deployflow_conn_id=CONN
    ).execute({})
    assert result["num_predictions"] == 3000 and result["output_path"] == str(out)
    assert "predictions" not in result and len(json.dumps(result)) < 500
    assert json.loads(out.read_text())["predictions"][2999] == [3000.0]

    with pytest.raises(AirflowFailException, match="max_xcom_bytes"):
        PredictOperator(
            task_id="p", deployment_name="ops-p", inputs=rows, return_predictions=True, max_xcom_bytes=10_000,
            deployflow_conn_id=CONN,
        ).execute({})

    csv = tmp_path / "few.csv"
    pd.DataFrame({"x": [1.0, 2.0]}).to_csv(csv, index=False)
    small = PredictOperator(
        task_id="p", deployment_name="ops-p", input_path=str(csv), return_predictions=True, deployflow_conn_id=CONN
    ).execute({})
    assert small["predictions"] == [[2.0], [3.0]]


def test_batch_predict_retried_resumes_without_duplicates(client, deployments, tmp_path):
    deployments.append("ops-batch")
    client.create_deployment("ops-batch", support.ADD_ONE)
    source = tmp_path / "input.parquet"
    pd.DataFrame({"id": range(1000), "x": [float(i) for i in range(1000)]}).to_parquet(source, index=False)
    operator = BatchPredictOperator(
        task_id="b", deployment_name="ops-batch", input_path=str(source), output_path=str(tmp_path / "out.parquet"),
        chunk_size=100, feature_columns=["x"], keep_columns=["id"], deployflow_conn_id=CONN,
    )
    first = operator.execute({})
    assert first["rows"] == 1000 and first["chunks"] == 10 and first["resumed_chunks"] == 0
    second = operator.execute({})  # a retry after the job finished: nothing is scored twice
    assert second["resumed_chunks"] == 10 and second["rows"] == 1000
    scored = read_output(tmp_path / "out.parquet")
    assert list(scored["id"]) == list(range(1000))
    assert list(scored["prediction_0"]) == [float(i) + 1 for i in range(1000)]  # one output column
    assert json.loads(json.dumps(second)) == second


def test_operator_arguments_are_checked_when_the_dag_is_built():
    with pytest.raises(ValueError, match="if_exists"):
        create("x", support.ADD_ONE, if_exists="replace")
    with pytest.raises(ValueError, match="exactly one of deployment_name and endpoint"):
        PredictOperator(task_id="p", inputs=[[1]])
    with pytest.raises(ValueError, match="timeout"):
        create("x", support.ADD_ONE, timeout=-1)
    assert create("x", support.ADD_ONE, timeout=datetime.timedelta(minutes=2)).timeout == 120.0


def test_the_tasks_timeout_bounds_the_whole_create_server_start_included(client, deployments):
    deployments.append("ops-hurried")
    operator = create("ops-hurried", support.SLOW, timeout=2)  # no config wait=false: the target would wait
    started = time.monotonic()
    with pytest.raises(AirflowFailException):
        operator.execute({})
    assert time.monotonic() - started < 15  # the model takes 60 s to load; startup_timeout is 30 s


@pytest.mark.parametrize("mode", ["no-wait", "deferrable"])
def test_a_task_that_does_not_wait_in_its_worker_returns_while_the_server_starts(client, deployments, mode):
    name = f"ops-lazy-{mode}"
    deployments.append(name)
    kwargs = {"wait_for_completion": False} if mode == "no-wait" else {"deferrable": True, "timeout": 120}
    operator = create(name, support.SLOW, **kwargs)
    started = time.monotonic()
    if mode == "no-wait":
        result = operator.execute({})
        assert result["state"] == "PENDING"
    else:
        with pytest.raises(TaskDeferred):
            operator.execute({})
    assert time.monotonic() - started < 10  # not the 60 s the model takes to load
    assert client.deployment_status(name).state.value == "PENDING"
