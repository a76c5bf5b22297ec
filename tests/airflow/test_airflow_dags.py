"""Whole DAGs on a real Airflow (``dag.test()``) against the real local target."""

from __future__ import annotations

import json
import os
import shutil
import textwrap
from pathlib import Path
from typing import Any

import pytest

import airflow_support as support
from airflow_support import run_dag
from deployflow import NotFoundError, State, get_deploy_client, read_output


@pytest.fixture(scope="module")
def example_runs() -> dict[str, tuple[Any, str]]:
    """The example DAG run twice: as written (deferrable) and with the deploy step waiting in its worker."""
    dag = support.example_dag()
    deploy = dag.get_task("deploy")
    runs = {"deferrable": run_dag(dag)}
    deploy.deferrable = False
    try:
        runs["blocking"] = run_dag(dag)
    finally:
        deploy.deferrable = True
    return runs


@pytest.mark.parametrize("mode", ["deferrable", "blocking"])
def test_example_dag_deploys_waits_scores_and_tears_down(example_runs, mode):
    run, output = example_runs[mode]
    states = {task_id: ti.state for task_id, ti in support.task_instances(run).items()}
    assert run.state == "success", (states, output[-5000:])
    assert set(states.values()) == {"success"}
    # Deferred means the trigger ran (inline under dag.test); blocking means it did not.
    assert ("running trigger in line" in output) is (mode == "deferrable")

    deploy = support.return_value(run, "deploy")
    assert deploy["action"] == "created" and deploy["state"] == State.READY.value
    # The record as read once READY (the create returned before the server had a port): url and flavor.
    assert deploy["url"].startswith("http://127.0.0.1:") and deploy["flavor"]
    assert support.xcoms(run)[("deploy", "_link_DeploymentLink")] == deploy["url"]  # the UI's link
    assert deploy["deployment_name"] == "churn"
    # The example serves the model defined in the DAG file itself.
    assert deploy["model_uri"] == f"python:{support.EXAMPLE_DAG_FILE.resolve()}:model"

    summary = support.return_value(run, "score")
    assert summary["rows"] == 5000 and summary["failed_rows"] == 0 and summary["deployment_name"] == "churn"
    scores = read_output(summary["output_path"])
    assert len(scores) == 5000
    assert list(scores["customer_id"]) == list(range(1, 5001))  # row order kept
    assert scores["churn_probability"].between(0, 1).all()

    assert support.return_value(run, "teardown") == {
        "deployment_name": "churn", "endpoint": None, "action": "deleted"
    }
    with get_deploy_client(support.TARGET_URI) as client, pytest.raises(NotFoundError):
        client.get_deployment("churn")


def test_token_never_reaches_task_logs_xcom_or_rendered_fields(example_runs):
    for mode, (run, output) in example_runs.items():
        assert "Scored 5000 rows" in output, mode  # the logs were captured
        assert support.TOKEN not in output, mode
        values = support.xcoms(run)
        assert values, mode
        assert support.TOKEN not in json.dumps(list(values.items()), default=str), mode
        assert support.TOKEN not in json.dumps(support.rendered_fields(run), default=str), mode
    # The token was really there to leak: the connection carries it to the client.
    assert support.TOKEN in os.environ["AIRFLOW_CONN_DEPLOYFLOW_LOCAL"]


def test_a_retried_create_adopts_what_the_first_attempt_created():
    run, output = run_dag(support.suite_dag("deployflow_test_retry"))
    tis = support.task_instances(run)

    created = tis["create"]
    assert created.state == "success", output[-5000:]
    assert created.try_number == 2  # the first attempt failed after its create succeeded
    assert "worker lost after the create succeeded" in output
    result = support.return_value(run, "create")
    assert result["action"] == "adopted" and result["state"] == "READY"

    # A deployment of the same name serving another model is not adopted, and not retried either.
    clash = tis["create_other_model"]
    assert clash.state == "failed" and clash.try_number == 1, output[-5000:]
    assert "exists with a different spec" in output

    assert support.return_value(run, "predict")["predictions"] == [[2.0], [3.0]]
    assert tis["cleanup"].state == "success"


@pytest.mark.parametrize("mode", ["poke", "deferrable"])
def test_a_deployment_that_fails_to_start_fails_the_sensor_with_the_reason(mode):
    run, output = run_dag(support.suite_dag(f"deployflow_test_failing_start_{mode}"))
    tis = support.task_instances(run)
    assert tis["create"].state == "success"
    assert support.return_value(run, "create")["action"] == "created"

    wait = tis["wait"]
    assert wait.state == "failed", output[-5000:]
    assert wait.try_number == 1  # retries=3, yet not retried: waiting longer cannot fix it
    assert ("running trigger in line" in output) is (mode == "deferrable")
    failure = [line for line in output.splitlines() if "AirflowFailException" in line]
    assert failure, output[-5000:]
    assert f"Deployment 'broken-{mode}' failed" in failure[-1]
    assert "model weights missing: churn-v7.bin was never uploaded" in failure[-1]

    assert tis["cleanup"].state == "success"  # all_done: the broken deployment is cleaned up


#: A DAG file written into the session's DAGs folder by the test below: the failing-start DAGs again, for
#: a model file that lives more than 200 characters deep (``MODEL`` is filled in).
_DEEP_DAGS = """
import datetime

from airflow.sdk import DAG

from deployflow.integrations.airflow.operators import CreateDeploymentOperator, DeleteDeploymentOperator
from deployflow.integrations.airflow.sensors import WaitForDeploymentReadySensor

MODEL = {model!r}
DAGS = {{}}
for mode in ("poke", "deferrable"):
    with DAG(f"deployflow_test_deep_failing_start_{{mode}}", schedule=None, start_date=datetime.datetime(2025, 1, 1),
             catchup=False) as dag:
        start = CreateDeploymentOperator(
            task_id="create", deployflow_conn_id="deployflow_test", deployment_name=f"deep-broken-{{mode}}",
            model_uri=MODEL, config={{"wait": False}}, wait_for_completion=False,
        )
        wait = WaitForDeploymentReadySensor(
            task_id="wait", deployflow_conn_id="deployflow_test", deployment_name=f"deep-broken-{{mode}}",
            deferrable=mode == "deferrable", poke_interval=0.2, timeout=120,
        )
        cleanup = DeleteDeploymentOperator(
            task_id="cleanup", deployflow_conn_id="deployflow_test", deployment_name=f"deep-broken-{{mode}}",
            trigger_rule="all_done",
        )
        start >> wait >> cleanup
    DAGS[dag.dag_id] = dag
"""


@pytest.fixture(scope="module")
def deep_dags(tmp_path_factory) -> Path:
    """The DAG file above, for a copy of models/broken.py more than 200 characters deep (as in a
    checkout under a long directory)."""
    directory = tmp_path_factory.mktemp("long-checkout")
    while len(str(directory)) <= 220:
        directory = directory / "a-rather-long-directory-name-of-a-checkout"
    model = directory / "tests" / "airflow" / "models" / "broken.py"
    model.parent.mkdir(parents=True)
    shutil.copy(support.MODELS / "broken.py", model)
    dag_file = support.DAGS_FOLDER / "deployflow_deep_path_dags.py"
    dag_file.write_text(textwrap.dedent(_DEEP_DAGS.format(model=f"python:{model}:model")), encoding="utf-8")
    yield dag_file
    dag_file.unlink()


@pytest.mark.parametrize("mode", ["poke", "deferrable"])
def test_the_reason_keeps_the_models_exception_when_the_model_lives_deep(deep_dags, mode):
    run, output = run_dag(support.suite_dag(f"deployflow_test_deep_failing_start_{mode}", deep_dags))
    tis = support.task_instances(run)
    assert tis["wait"].state == "failed", output[-5000:]
    assert ("running trigger in line" in output) is (mode == "deferrable")
    failure = [line for line in output.splitlines() if "AirflowFailException" in line]
    assert failure, output[-5000:]
    assert f"Deployment 'deep-broken-{mode}' failed" in failure[-1]
    assert "RuntimeError: model weights missing: churn-v7.bin was never uploaded" in failure[-1], failure[-1]
    assert tis["cleanup"].state == "success"


def test_endpoint_operators_and_sensors_route_traffic():
    run, output = run_dag(support.suite_dag("deployflow_test_endpoints"))
    states = {task_id: ti.state for task_id, ti in support.task_instances(run).items()}
    assert run.state == "success", (states, output[-5000:])
    assert support.return_value(run, "create_endpoint")["action"] == "created"
    assert support.return_value(run, "endpoint_ready")["state"] == "READY"
    switched = support.return_value(run, "switch_to_green")
    assert switched["action"] == "updated" and switched["routes"] == [{"deployment": "green", "traffic": 100.0}]
    # Through the endpoint, now routed to the doubling model.
    assert support.return_value(run, "score")["predictions"] == [[6.0]]
    with get_deploy_client(support.TARGET_URI) as client:
        assert client.list_endpoints() == []
        assert not {"blue", "green"} & {d["name"] for d in client.list_deployments()}
