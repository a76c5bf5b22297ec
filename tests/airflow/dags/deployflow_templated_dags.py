"""DAGs whose settings come from ``params`` through Jinja: waits, ``if_exists``, scoring options
(tests/airflow/test_airflow_templated_settings.py). Every number, flag and choice below is text until the
task runs; the DAG file must parse, and each task must use what its templates rendered to.

The test session links this file into its DAGs folder; the deployments live in the session's local
target (the ``deployflow_test`` connection).
"""

from __future__ import annotations

import datetime
from pathlib import Path

from airflow.sdk import DAG

from deployflow.integrations.airflow.operators import (
    BatchPredictOperator,
    CreateDeploymentOperator,
    CreateEndpointOperator,
    DeleteDeploymentOperator,
    PredictOperator,
)
from deployflow.integrations.airflow.sensors import WaitForDeploymentReadySensor

MODELS = Path(__file__).resolve().parents[1] / "models"
ADD_ONE = f"python:{MODELS / 'add_one.py'}:model"
SLOW = f"python:{MODELS / 'slow.py'}:model"
CONN_ID = "deployflow_test"
START = datetime.datetime(2025, 1, 1)
NO_DELAY = datetime.timedelta(0)

DAGS: dict[str, DAG] = {}

#: The settings a run may override (``dag.test(run_conf=...)``, ``airflow dags test -c``).
SETTINGS = {
    "timeout": 120,
    "poll_interval": 0.2,
    "max_poll_interval": 1,
    "not_found_grace": 30,
    "wait": True,
    "if_exists": "adopt",
    "return_predictions": True,
    "max_xcom_bytes": 10000,
    "input_path": "",
    "output_path": "",
    "input_format": "csv",
    "output_format": "csv",
    "chunk_size": 2,
    "concurrency": 2,
    "max_chunk_retries": 1,
    "prediction_column": "score",
    "on_bad_rows": "raise",
    "resume": False,
    "overwrite": True,
}

with DAG("deployflow_test_templated", schedule=None, start_date=START, catchup=False, params=SETTINGS) as dag:
    create = CreateDeploymentOperator(
        task_id="create",
        deployflow_conn_id=CONN_ID,
        deployment_name="templated",
        model_uri=ADD_ONE,
        config={"wait": False},
        deferrable=True,  # the trigger gets the rendered polling settings
        wait_for_completion="{{ params.wait }}",
        timeout="{{ params.timeout }}",
        poll_interval="{{ params.poll_interval }}",
        max_poll_interval="{{ params.max_poll_interval }}",
        not_found_grace="{{ params.not_found_grace }}",
        if_exists="{{ params.if_exists }}",
    )
    ready = WaitForDeploymentReadySensor(
        task_id="ready",
        deployflow_conn_id=CONN_ID,
        deployment_name="templated",
        not_found_grace="{{ params.not_found_grace }}",
        poke_interval=0.2,
        timeout=60,
    )
    predict = PredictOperator(
        task_id="predict",
        deployflow_conn_id=CONN_ID,
        deployment_name="templated",
        inputs={"inputs": [[1.0], [2.0]]},
        return_predictions="{{ params.return_predictions }}",
        max_xcom_bytes="{{ params.max_xcom_bytes }}",
    )
    batch = BatchPredictOperator(
        task_id="batch",
        deployflow_conn_id=CONN_ID,
        deployment_name="templated",
        input_path="{{ params.input_path }}",
        output_path="{{ params.output_path }}",
        input_format="{{ params.input_format }}",
        output_format="{{ params.output_format }}",
        feature_columns=["x"],
        chunk_size="{{ params.chunk_size }}",
        concurrency="{{ params.concurrency }}",
        max_chunk_retries="{{ params.max_chunk_retries }}",
        prediction_column="{{ params.prediction_column }}",
        on_bad_rows="{{ params.on_bad_rows }}",
        resume="{{ params.resume }}",
        overwrite="{{ params.overwrite }}",
    )
    cleanup = DeleteDeploymentOperator(
        task_id="cleanup", deployflow_conn_id=CONN_ID, deployment_name="templated", trigger_rule="all_done"
    )
    create >> ready >> [predict, batch] >> cleanup
DAGS[dag.dag_id] = dag


#: Values that render to something wrong, or that must change what a task does.
REFUSALS = {
    "timeout": "soon",
    "if_exists": "replace",
    "flag": "maybe",
    "short_timeout": 1,
    "again": "fail",
}

with DAG(
    "deployflow_test_templated_refusals", schedule=None, start_date=START, catchup=False, params=REFUSALS
) as dag:
    # retries=2: an error a retry could fix would be retried, but a wrong argument must fail at once.
    retried = {"retries": 2, "retry_delay": NO_DELAY}
    bad_timeout = CreateDeploymentOperator(
        task_id="bad_timeout", deployflow_conn_id=CONN_ID, deployment_name="never-made", model_uri=ADD_ONE,
        timeout="{{ params.timeout }}", **retried,
    )
    bad_if_exists = CreateEndpointOperator(
        task_id="bad_if_exists", deployflow_conn_id=CONN_ID, endpoint="never-made",
        if_exists="{{ params.if_exists }}", **retried,
    )
    bad_flag = PredictOperator(
        task_id="bad_flag", deployflow_conn_id=CONN_ID, deployment_name="never-made", inputs={"inputs": [[1.0]]},
        return_predictions="{{ params.flag }}", **retried,
    )
    # A wait of the rendered length: a slow model is not ready within 1 s (the default would be 900 s).
    short_wait = CreateDeploymentOperator(
        task_id="short_wait", deployflow_conn_id=CONN_ID, deployment_name="templated-slow", model_uri=SLOW,
        config={"wait": False, "stop_timeout": 2}, deferrable=False, poll_interval=0.2,
        timeout="{{ params.short_timeout }}",
    )
    # The deployment exists now, and the rendered if_exists says to refuse it.
    refuse_existing = CreateDeploymentOperator(
        task_id="refuse_existing", deployflow_conn_id=CONN_ID, deployment_name="templated-slow", model_uri=SLOW,
        config={"wait": False, "stop_timeout": 2}, wait_for_completion=False, if_exists="{{ params.again }}",
        trigger_rule="all_done", **retried,
    )
    drop_slow = DeleteDeploymentOperator(
        task_id="cleanup", deployflow_conn_id=CONN_ID, deployment_name="templated-slow",
        config={"stop_timeout": 2}, trigger_rule="all_done",
    )
    short_wait >> refuse_existing >> drop_slow
DAGS[dag.dag_id] = dag
