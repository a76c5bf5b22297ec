"""DAGs for the tests of assets, extra links, ``default_deferrable`` and wait timeouts
(tests/airflow/test_airflow_assets_and_links.py). Linked into the session's DAGs folder beside the other
test DAGs; every deployment lives in the session's local-target state directory (``deployflow_test``)."""

from __future__ import annotations

import datetime
import os
import tempfile
from pathlib import Path
from typing import Any

from airflow.sdk import DAG, task

from deployflow.integrations.airflow.assets import batch_output_asset, deployment_asset
from deployflow.integrations.airflow.hooks import DeploymentHook
from deployflow.integrations.airflow.operators import (
    BatchPredictOperator,
    CreateDeploymentOperator,
    DeleteDeploymentOperator,
)
from deployflow.integrations.airflow.sensors import WaitForDeploymentReadySensor

MODELS = Path(__file__).resolve().parents[1] / "models"
ADD_ONE = f"python:{MODELS / 'add_one.py'}:model"
SLOW = f"python:{MODELS / 'slow.py'}:model"
CONN_ID = "deployflow_test"
START = datetime.datetime(2025, 1, 1)
NO_DELAY = datetime.timedelta(0)
#: Where the producer's batch job writes (a literal path: the asset is named when the DAG is parsed).
OUTPUT_DIR = Path(os.environ.get("DEPLOYFLOW_EXAMPLE_OUTPUT", tempfile.gettempdir())) / "assets"
SCORES = str(OUTPUT_DIR / "asset-scores.csv")

DAGS: dict[str, DAG] = {}

#: The assets the producer's tasks emit and the consumers are scheduled on.
CHURN = deployment_asset("asset-churn", conn_id=CONN_ID)
SCORED = batch_output_asset(SCORES)


# Deploy (emitting the deployment's asset), then score a file in batch (emitting the output's asset).
# The deployment stays: the consumers use it.
with DAG("deployflow_test_assets_producer", schedule=None, start_date=START, catchup=False) as dag:

    @task
    def make_rows() -> str:
        OUTPUT_DIR.mkdir(parents=True, exist_ok=True)
        path = OUTPUT_DIR / "asset-rows.csv"
        path.write_text("x\n" + "\n".join(str(i) for i in range(6)) + "\n")
        return str(path)

    deploy = CreateDeploymentOperator(
        task_id="deploy", deployflow_conn_id=CONN_ID, deployment_name="asset-churn", model_uri=ADD_ONE,
        config={"wait": False}, poll_interval=0.2, emit_asset=True,
    )
    score = BatchPredictOperator(
        task_id="score", deployflow_conn_id=CONN_ID, deployment_name="asset-churn", input_path=make_rows(),
        output_path=SCORES, chunk_size=2, overwrite=True, emit_asset=True,
    )
    deploy >> score
DAGS[dag.dag_id] = dag


# Scheduled on the deployment's asset: reads where it serves from the asset event, then scores there.
with DAG("deployflow_test_assets_scoring", schedule=[CHURN], start_date=START, catchup=False) as dag:

    @task(inlets=[CHURN])
    def score_latest(*, inlet_events: Any) -> dict[str, Any]:
        extra = dict(inlet_events[CHURN][-1].extra)
        hook = DeploymentHook(CONN_ID)
        try:
            answer = hook.get_conn().predict(extra["deployment_name"], {"inputs": [[1.0], [2.0]]})
            served_at = hook.get_conn().get_deployment(extra["deployment_name"])["url"]
        finally:
            hook.close()
        return {"extra": extra, "served_at": served_at, "predictions": answer["predictions"]}

    score_latest()
DAGS[dag.dag_id] = dag


# Scheduled on the batch output's asset.
with DAG("deployflow_test_assets_report", schedule=[SCORED], start_date=START, catchup=False) as dag:

    @task(inlets=[SCORED])
    def report(*, inlet_events: Any) -> dict[str, Any]:
        return dict(inlet_events[SCORED][-1].extra)

    report()
DAGS[dag.dag_id] = dag


# A wait that runs out of time is not retried, whatever the task's retries say, in every mode.
with DAG("deployflow_test_wait_timeouts", schedule=None, start_date=START, catchup=False) as dag:
    retried = {"retries": 2, "retry_delay": NO_DELAY}
    slow = {"deployflow_conn_id": CONN_ID, "deployment_name": "timeout-slow", "model_uri": SLOW,
            "config": {"wait": False, "stop_timeout": 2}, "poll_interval": 0.2}
    in_worker = CreateDeploymentOperator(task_id="in_worker", deferrable=False, timeout=1, **slow, **retried)
    deferred = CreateDeploymentOperator(task_id="deferred", deferrable=True, timeout=2, **slow, **retried)
    sensor = WaitForDeploymentReadySensor(
        task_id="sensor", deployflow_conn_id=CONN_ID, deployment_name="timeout-slow", poke_interval=0.2,
        timeout=1, **retried,
    )
    cleanup = DeleteDeploymentOperator(
        task_id="cleanup", deployflow_conn_id=CONN_ID, deployment_name="timeout-slow",
        config={"stop_timeout": 2}, trigger_rule="all_done",
    )
    in_worker >> deferred >> sensor >> cleanup
    deferred.trigger_rule = sensor.trigger_rule = "all_done"
DAGS[dag.dag_id] = dag


def default_deferrable_dag() -> DAG:
    """A deploy whose ``deferrable`` is left to Airflow's ``[operators] default_deferrable``; built
    again by the test under each setting (operators read it when they are built)."""
    with DAG("deployflow_test_default_deferrable", schedule=None, start_date=START, catchup=False) as built:
        create = CreateDeploymentOperator(
            task_id="create", deployflow_conn_id=CONN_ID, deployment_name="default-deferrable",
            model_uri=ADD_ONE, config={"wait": False}, poll_interval=0.2,
        )
        drop = DeleteDeploymentOperator(
            task_id="cleanup", deployflow_conn_id=CONN_ID, deployment_name="default-deferrable",
            trigger_rule="all_done",
        )
        create >> drop
    return built


DAGS["deployflow_test_default_deferrable"] = default_deferrable_dag()
