"""A DAG that deploys an MLflow model to SageMaker, waits until it serves, scores and tears down, through a
``deployflow`` connection whose target is ``sagemaker:/us-east-1`` (no SageMaker-specific code: the same
operators as for every target). tests/airflow/test_airflow_sagemaker.py links this file into the session's
DAGs folder, points the connection at moto and names the model directory in the environment."""

from __future__ import annotations

import datetime
import os

from airflow.sdk import DAG

from deployflow.integrations.airflow.operators import CreateDeploymentOperator, DeleteDeploymentOperator, PredictOperator
from deployflow.integrations.airflow.sensors import WaitForDeploymentReadySensor

CONN_ID = "deployflow_sagemaker"
NAME = "churn-airflow"
MODEL = os.environ.get("DEPLOYFLOW_SAGEMAKER_TEST_MODEL", "/no/model/directory/set")
CONFIG = {
    "execution_role_arn": "arn:aws:iam::123456789012:role/sagemaker-execution",
    "image_url": "123456789012.dkr.ecr.us-east-1.amazonaws.com/mlflow-pyfunc:2.19.0",
    "instance_type": "ml.m5.large",
    "wait": False,  # the create returns at once; the sensor below waits (deferred, in the triggerer)
}

DAGS: dict[str, DAG] = {}

with DAG("deployflow_test_sagemaker", schedule=None, start_date=datetime.datetime(2025, 1, 1), catchup=False) as dag:
    create = CreateDeploymentOperator(
        task_id="create",
        deployflow_conn_id=CONN_ID,
        deployment_name=NAME,
        model_uri=MODEL,
        config=CONFIG,
        wait_for_completion=False,
    )
    wait = WaitForDeploymentReadySensor(
        task_id="wait",
        deployflow_conn_id=CONN_ID,
        deployment_name=NAME,
        deferrable=True,
        poke_interval=0.2,
        timeout=120,
    )
    score = PredictOperator(
        task_id="predict",
        deployflow_conn_id=CONN_ID,
        deployment_name=NAME,
        inputs={"dataframe_split": {"columns": ["tenure", "plan"], "data": [[3, "basic"], [40, "pro"]]}},
        return_predictions=True,
    )
    delete = DeleteDeploymentOperator(
        task_id="delete", deployflow_conn_id=CONN_ID, deployment_name=NAME, trigger_rule="all_done"
    )
    create >> wait >> score >> delete
DAGS[dag.dag_id] = dag
