"""Settings given as Jinja templates (``"{{ params.timeout }}"``) parse, render when the task runs, and are
then checked as literal values are when the DAG is parsed: same error type, same message, no retry.

The DAGs are in ``dags/deployflow_templated_dags.py``; they run with ``dag.test()`` and, once, with
``airflow dags test`` in a subprocess, as a user would run them.
"""

from __future__ import annotations

import datetime
import json
import os
import re
import subprocess
import sys
from types import SimpleNamespace
from typing import Any

import pandas as pd
import pytest

import airflow_support as support
from airflow_support import run_dag
from deployflow import read_output
from deployflow.integrations.airflow.operators import (
    BatchPredictOperator,
    CreateDeploymentOperator,
    CreateEndpointOperator,
    PredictOperator,
)
from deployflow.integrations.airflow.sensors import WaitForDeploymentReadySensor


def templated(dag_id: str) -> Any:
    return support.suite_dag(dag_id, support.TEMPLATED_DAG_FILE)


def rows_file(tmp_path: Any, rows: int = 6) -> str:
    path = tmp_path / "rows.csv"
    pd.DataFrame({"x": [float(i) for i in range(rows)]}).to_csv(path, index=False)
    return str(path)


def failure_lines(output: str) -> list[str]:
    return [line for line in output.splitlines() if "AirflowFailException" in line or "InvalidArgument" in line]


def test_settings_from_params_reach_every_task(tmp_path):
    dag = templated("deployflow_test_templated")
    output_path = tmp_path / "scores.csv"
    with support.captured_output() as output:
        run = dag.test(run_conf={"input_path": rows_file(tmp_path), "output_path": str(output_path)})
    output = output[0]
    states = {task_id: ti.state for task_id, ti in support.task_instances(run).items()}
    assert set(states.values()) == {"success"}, (states, output[-5000:])
    assert "running trigger in line" in output  # the create deferred, with the rendered polling settings

    assert support.return_value(run, "create")["state"] == "READY"
    assert support.return_value(run, "ready")["state"] == "READY"
    # return_predictions rendered to the text "True", read as true.
    assert support.return_value(run, "predict")["predictions"] == [[2.0], [3.0]]
    summary = support.return_value(run, "batch")
    assert (summary["rows"], summary["chunks"]) == (6, 3)  # chunk_size "2"
    assert read_output(output_path)["score_0"].tolist() == [float(i) + 1 for i in range(6)]

    rendered = support.rendered_fields(run)
    assert rendered["create"]["timeout"] == "120" and rendered["create"]["if_exists"] == "adopt"
    assert rendered["batch"]["chunk_size"] == "2" and rendered["batch"]["resume"] == "False"


def test_wrong_rendered_values_fail_at_once_with_the_parse_time_message():
    run, output = run_dag(templated("deployflow_test_templated_refusals"))
    tis = support.task_instances(run)
    failures = "\n".join(failure_lines(output))
    expected = {
        "bad_timeout": "timeout must be a number of seconds >= 0, got 'soon'",
        "bad_if_exists": "if_exists must be one of adopt, update, fail; got 'replace'",
        "bad_flag": "return_predictions must be true or false, got 'maybe'",
    }
    for task_id, message in expected.items():
        assert tis[task_id].state == "failed", (task_id, output[-5000:])
        assert tis[task_id].try_number == 1, task_id  # retries=2, yet not retried
        assert message in failures, (task_id, failures)

    # The rendered timeout (1 s) is the one the wait used: the slow model is not ready in time.
    assert tis["short_wait"].state == "failed"
    assert re.search(r"Deployment 'templated-slow' was not ready after (1|0\.\d+) s", failures), failures
    # The rendered if_exists ("fail") refuses the deployment that the task before created.
    assert tis["refuse_existing"].state == "failed" and tis["refuse_existing"].try_number == 1
    assert "Deployment 'templated-slow' exists already (if_exists='fail')" in failures
    assert tis["cleanup"].state == "success"


def test_airflow_dags_test_runs_the_templated_dag_with_a_conf(tmp_path):
    output_path = tmp_path / "cli-scores.csv"
    conf = {
        "input_path": rows_file(tmp_path),
        "output_path": str(output_path),
        "chunk_size": "3",
        "prediction_column": "cli_score",
        "return_predictions": "false",
    }
    finished = subprocess.run(
        [sys.executable, "-m", "airflow", "dags", "test", "deployflow_test_templated", "-c", json.dumps(conf)],
        env=dict(os.environ), capture_output=True, text=True, timeout=600,
    )
    shown = finished.stdout[-4000:] + finished.stderr[-4000:]
    assert finished.returncode == 0, shown
    assert support.TOKEN not in finished.stdout + finished.stderr

    run = _latest_run("deployflow_test_templated")
    assert run.states == {"success"}, (run.states, shown)
    values = support.xcoms(run)
    assert values[("batch", "return_value")]["chunks"] == 2  # chunk_size "3" from the conf
    assert "predictions" not in values[("predict", "return_value")]  # return_predictions "false"
    assert read_output(output_path)["cli_score_0"].tolist() == [float(i) + 1 for i in range(6)]


def _latest_run(dag_id: str) -> SimpleNamespace:
    """The newest run of ``dag_id`` in the database: its ids and the set of its tasks' states."""
    from airflow.models.dagrun import DagRun
    from airflow.utils.session import create_session

    with create_session() as session:
        run = session.query(DagRun).filter(DagRun.dag_id == dag_id).order_by(DagRun.id.desc()).first()
        assert run is not None
        states = {ti.state for ti in run.get_task_instances(session=session)}
        return SimpleNamespace(dag_id=run.dag_id, run_id=run.run_id, states=states)


# -- parse time ---------------------------------------------------------------------------------------

CONN = {"deployflow_conn_id": "deployflow_test"}


def test_literal_values_are_still_checked_when_the_dag_is_parsed():
    with pytest.raises(ValueError, match=r"^timeout must be a number of seconds >= 0, got 'soon'$"):
        CreateDeploymentOperator(task_id="c", deployment_name="d", model_uri="m", timeout="soon", **CONN)
    with pytest.raises(ValueError, match=r"^if_exists must be one of adopt, update, fail; got 'replace'$"):
        CreateEndpointOperator(task_id="e", endpoint="e", if_exists="replace", **CONN)
    with pytest.raises(ValueError, match="not_found_grace must be a number of seconds >= 0"):
        WaitForDeploymentReadySensor(task_id="s", deployment_name="d", not_found_grace=-1, **CONN)
    with pytest.raises(ValueError, match="resume must be true or false"):
        BatchPredictOperator(task_id="b", deployment_name="d", input_path="i", output_path="o", resume="maybe", **CONN)
    # Literal values are converted at once, as before.
    operator = CreateDeploymentOperator(
        task_id="c", deployment_name="d", model_uri="m", timeout=datetime.timedelta(minutes=2), poll_interval="3",
        wait_for_completion="no", **CONN,
    )
    assert (operator.timeout, operator.poll_interval, operator.wait_for_completion) == (120.0, 3.0, False)


def test_templates_and_xcom_references_wait_for_the_run():
    from airflow.sdk import DAG, task

    with DAG("parse_only", schedule=None, start_date=datetime.datetime(2025, 1, 1)):

        @task
        def chosen() -> int:
            return 30

        reference = chosen()
        operator = CreateDeploymentOperator(
            task_id="c", deployment_name="d", model_uri="m", timeout=reference, poll_interval="{{ params.p }}",
            if_exists="{% if params.roll %}update{% else %}adopt{% endif %}", **CONN,
        )
        predict = PredictOperator(
            task_id="p", deployment_name="d", inputs=[[1]], max_xcom_bytes="{{ params.limit }}", **CONN
        )
    assert operator.timeout is reference and operator.poll_interval == "{{ params.p }}"
    assert predict.max_xcom_bytes == "{{ params.limit }}"
    settings = ("timeout", "poll_interval", "max_poll_interval", "not_found_grace", "wait_for_completion", "if_exists")
    assert set(settings) <= set(operator.template_fields)
