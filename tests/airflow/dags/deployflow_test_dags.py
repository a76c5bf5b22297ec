"""DAGs the Airflow tests run with ``dag.test()``. The test session links this file, beside the example
DAG, into its temporary DAGs folder; every deployment lives in the session's local-target state directory
(the ``deployflow_test`` connection)."""

from __future__ import annotations

import datetime
from pathlib import Path
from typing import Any

from airflow.sdk import DAG

from deployflow.integrations.airflow.operators import (
    CreateDeploymentOperator,
    CreateEndpointOperator,
    DeleteDeploymentOperator,
    DeleteEndpointOperator,
    PredictOperator,
    UpdateEndpointOperator,
)
from deployflow.integrations.airflow.sensors import WaitForDeploymentReadySensor, WaitForEndpointReadySensor

MODELS = Path(__file__).resolve().parents[1] / "models"
ADD_ONE = f"python:{MODELS / 'add_one.py'}:model"
DOUBLER = f"python:{MODELS / 'other.py'}:model"
BROKEN = f"python:{MODELS / 'broken.py'}:model"
TEXT_REPLY = f"python:{MODELS / 'text_reply.py'}:model"
CONN_ID = "deployflow_test"
START = datetime.datetime(2025, 1, 1)
NO_DELAY = datetime.timedelta(0)

DAGS: dict[str, DAG] = {}


class CreateThenLoseWorker(CreateDeploymentOperator):
    """A create whose first attempt dies right after the deployment was created, as when a worker is
    lost: Airflow retries the task, and the retry must take over what the first attempt made."""

    def execute(self, context: Any) -> dict[str, Any]:
        result = super().execute(context)
        if context["ti"].try_number == 1:
            raise RuntimeError("worker lost after the create succeeded")
        return result


with DAG("deployflow_test_retry", schedule=None, start_date=START, catchup=False) as dag:
    created = CreateThenLoseWorker(
        task_id="create",
        deployflow_conn_id=CONN_ID,
        deployment_name="retried",
        model_uri=ADD_ONE,
        deferrable=False,
        poll_interval=0.2,
        retries=1,
        retry_delay=NO_DELAY,
    )
    # The same name with another model: adopting it would be wrong, retrying cannot help.
    clash = CreateDeploymentOperator(
        task_id="create_other_model",
        deployflow_conn_id=CONN_ID,
        deployment_name="retried",
        model_uri=DOUBLER,
        retries=2,
        retry_delay=NO_DELAY,
    )
    predict = PredictOperator(
        task_id="predict",
        deployflow_conn_id=CONN_ID,
        deployment_name="retried",
        inputs={"inputs": [[1.0], [2.0]]},
        return_predictions=True,
    )
    cleanup = DeleteDeploymentOperator(
        task_id="cleanup", deployflow_conn_id=CONN_ID, deployment_name="retried", trigger_rule="all_done"
    )
    created >> [clash, predict] >> cleanup
DAGS[dag.dag_id] = dag


for mode in ("poke", "deferrable"):
    with DAG(f"deployflow_test_failing_start_{mode}", schedule=None, start_date=START, catchup=False) as dag:
        start = CreateDeploymentOperator(
            task_id="create",
            deployflow_conn_id=CONN_ID,
            deployment_name=f"broken-{mode}",
            model_uri=BROKEN,
            config={"wait": False},
            wait_for_completion=False,
        )
        wait = WaitForDeploymentReadySensor(
            task_id="wait",
            deployflow_conn_id=CONN_ID,
            deployment_name=f"broken-{mode}",
            deferrable=mode == "deferrable",
            poke_interval=0.2,
            timeout=120,
            retries=3,  # a failed start must fail at once, not be retried
            retry_delay=NO_DELAY,
        )
        cleanup = DeleteDeploymentOperator(
            task_id="cleanup", deployflow_conn_id=CONN_ID, deployment_name=f"broken-{mode}", trigger_rule="all_done"
        )
        start >> wait >> cleanup
    DAGS[dag.dag_id] = dag


with DAG("deployflow_test_endpoints", schedule=None, start_date=START, catchup=False) as dag:
    blue = CreateDeploymentOperator(
        task_id="create_blue", deployflow_conn_id=CONN_ID, deployment_name="blue", model_uri=ADD_ONE,
        poll_interval=0.2,
    )
    green = CreateDeploymentOperator(
        task_id="create_green", deployflow_conn_id=CONN_ID, deployment_name="green", model_uri=DOUBLER,
        config={"wait": False}, deferrable=True, poll_interval=0.2,
    )
    endpoint = CreateEndpointOperator(
        task_id="create_endpoint",
        deployflow_conn_id=CONN_ID,
        endpoint="front",
        config={"routes": [{"deployment": "blue", "traffic": 100}], "wait": False},
        deferrable=True,
        poll_interval=0.2,
    )
    ready = WaitForEndpointReadySensor(
        task_id="endpoint_ready", deployflow_conn_id=CONN_ID, endpoint="front", poke_interval=0.2, timeout=60
    )
    switch = UpdateEndpointOperator(
        task_id="switch_to_green",
        deployflow_conn_id=CONN_ID,
        endpoint="front",
        config={"routes": [{"deployment": "green", "traffic": 100}]},
        poll_interval=0.2,
    )
    green_ready = WaitForDeploymentReadySensor(
        task_id="green_ready", deployflow_conn_id=CONN_ID, deployment_name="green", poke_interval=0.2, timeout=60,
        deferrable=True,
    )
    score = PredictOperator(
        task_id="score",
        deployflow_conn_id=CONN_ID,
        endpoint="front",
        inputs={"inputs": [[3.0]]},
        return_predictions=True,
    )
    drop_endpoint = DeleteEndpointOperator(
        task_id="delete_endpoint", deployflow_conn_id=CONN_ID, endpoint="front", trigger_rule="all_done"
    )
    drop_blue = DeleteDeploymentOperator(
        task_id="delete_blue", deployflow_conn_id=CONN_ID, deployment_name="blue", trigger_rule="all_done"
    )
    drop_green = DeleteDeploymentOperator(
        task_id="delete_green", deployflow_conn_id=CONN_ID, deployment_name="green", trigger_rule="all_done"
    )
    blue >> endpoint >> ready >> green >> green_ready >> switch >> score >> drop_endpoint >> [drop_blue, drop_green]
DAGS[dag.dag_id] = dag


# The retry budget (tests/airflow/test_airflow_retries.py): one request, against a server that always
# answers 503, through the connection ``deployflow_unavailable`` the test defines (with max_retries in its
# extra). The test sets this task's ``retries`` from tests/support/retry_budget.py before running it.
with DAG("deployflow_test_retry_budget", schedule=None, start_date=START, catchup=False) as dag:
    PredictOperator(
        task_id="predict",
        deployflow_conn_id="deployflow_unavailable",
        deployment_name="model",
        inputs={"inputs": [[1.0, 2.0]]},
        retry_delay=NO_DELAY,
    )
DAGS[dag.dag_id] = dag


# What a model returns reaches XCom as the model returned it (tests/airflow/test_airflow_payloads.py):
# its answer reads like a credential, which deployflow masks in messages but must not change in data.
with DAG("deployflow_test_payloads", schedule=None, start_date=START, catchup=False) as dag:
    text = CreateDeploymentOperator(
        task_id="create", deployflow_conn_id=CONN_ID, deployment_name="text-reply", model_uri=TEXT_REPLY,
        poll_interval=0.2,
    )
    answer = PredictOperator(
        task_id="predict", deployflow_conn_id=CONN_ID, deployment_name="text-reply",
        inputs={"inputs": [[1.0], [2.0]]}, return_predictions=True,
    )
    drop = DeleteDeploymentOperator(
        task_id="cleanup", deployflow_conn_id=CONN_ID, deployment_name="text-reply", trigger_rule="all_done"
    )
    text >> answer >> drop
DAGS[dag.dag_id] = dag
