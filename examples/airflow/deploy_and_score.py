"""Example DAG: deploy a model on the ``local`` target, wait (deferred) until it serves, score a file in
batch, and tear the deployment down whatever happened.

The file is self-contained: the model it deploys (:class:`ChurnModel`, a logistic regression with
fixed weights, in numpy) is defined below, and the deployment serves it from this file, wherever the
file lies. Copy it alone into a DAGs folder and run it (everything stays on 127.0.0.1)::

    pip install 'deployflow[airflow]'
    export AIRFLOW_CONN_DEPLOYFLOW_LOCAL='{"conn_type": "deployflow", "host": "local"}'
    cp examples/airflow/deploy_and_score.py "$AIRFLOW_HOME/dags/"
    airflow dags test deployflow_deploy_and_score

The DAG's params can be set per run: ``rows`` (how many customers to score, default 5000),
``deployment_name``, ``timeout`` (seconds to wait until the deployment serves, default 300) and
``output_dir``, for example ``airflow dags test deployflow_deploy_and_score -c '{"rows": 500}'``.

The connection's *Target URI* picks the target (``local`` keeps its state in ``~/.deployflow``;
``local:///abs/dir`` elsewhere). A token for targets that need one goes in the connection's password,
never in the DAG. Scores land in ``$DEPLOYFLOW_EXAMPLE_OUTPUT`` (default: a ``deployflow-airflow-example``
directory in the temporary directory), one folder per run.

The deployment's create returns at once (``config={"wait": False}``, a ``local`` setting) and the task
then defers: it waits in the triggerer, not in a worker slot, until the deployment is READY or the
``timeout`` runs out. With ``deferrable=False`` the task waits in its worker instead; the timeout
means the same in both modes. Retrying the create is safe: it adopts the deployment that an
earlier attempt created.
"""

from __future__ import annotations

import datetime
import os
import tempfile
from pathlib import Path
from typing import Any

from airflow.sdk import DAG, task

from deployflow.integrations.airflow.operators import (
    BatchPredictOperator,
    CreateDeploymentOperator,
    DeleteDeploymentOperator,
)


class ChurnModel:
    """Per customer row, the probability of leaving (``churn_probability``) and a yes/no label
    (``will_churn``, probability >= 0.5)."""

    features = ["tenure_months", "monthly_charges", "support_calls", "has_contract"]
    weights = [-0.06, 0.025, 0.45, -1.3]
    bias = -0.8

    def predict(self, data: Any) -> Any:
        # numpy and pandas load in the scoring server, not each time the DAG file is parsed.
        import numpy as np
        import pandas as pd

        missing = [column for column in self.features if column not in data.columns]
        if missing:
            raise ValueError(f"missing feature columns: {missing}")
        x = data[self.features].to_numpy(dtype="float64")
        probability = 1.0 / (1.0 + np.exp(-(x @ np.array(self.weights) + self.bias)))
        return pd.DataFrame({"churn_probability": probability.round(6), "will_churn": probability >= 0.5})


#: What the deployment serves: the model above, loaded by the scoring server from this very file.
model = ChurnModel()
MODEL_URI = f"python:{Path(__file__).resolve()}:model"

CONN_ID = "deployflow_local"
OUTPUT_DIR = os.environ.get(
    "DEPLOYFLOW_EXAMPLE_OUTPUT", os.path.join(tempfile.gettempdir(), "deployflow-airflow-example")
)
# One folder per run; run ids hold ':' and '+', which some filesystems dislike.
RUN_DIR = "{{ params.output_dir }}/{{ dag.dag_id }}/{{ run_id | replace(':', '') | replace('+', '') }}"


with DAG(
    "deployflow_deploy_and_score",
    schedule=None,
    start_date=datetime.datetime(2025, 1, 1),
    catchup=False,
    tags=["deployflow", "example"],
    params={
        "deployment_name": "churn",
        "rows": 5000,
        "timeout": 300,
        "output_dir": OUTPUT_DIR,
    },
    default_args={"retries": 2, "retry_delay": datetime.timedelta(seconds=10)},
) as dag:

    @task
    def make_customers(run_dir: str, rows: str) -> str:
        """A synthetic customer table to score; returns its path (a short string in XCom)."""
        import numpy as np
        import pandas as pd

        count = int(rows)
        rng = np.random.default_rng(7)
        os.makedirs(run_dir, exist_ok=True)
        path = os.path.join(run_dir, "customers.parquet")
        pd.DataFrame(
            {
                "customer_id": np.arange(1, count + 1),
                "tenure_months": rng.integers(1, 72, count),
                "monthly_charges": rng.normal(70, 20, count).round(2),
                "support_calls": rng.poisson(1.5, count),
                "has_contract": rng.integers(0, 2, count),
            }
        ).to_parquet(path, index=False)
        return path

    customers = make_customers(RUN_DIR, "{{ params.rows }}")

    deploy = CreateDeploymentOperator(
        task_id="deploy",
        deployflow_conn_id=CONN_ID,
        deployment_name="{{ params.deployment_name }}",
        model_uri=MODEL_URI,
        config={"wait": False},  # return at once; the wait below is deferred
        if_exists="adopt",
        deferrable=True,  # wait in the triggerer, not in a worker slot
        timeout="{{ params.timeout }}",
        poll_interval=1,
    )

    score = BatchPredictOperator(
        task_id="score",
        deployflow_conn_id=CONN_ID,
        deployment_name="{{ params.deployment_name }}",
        input_path=customers,
        output_path=RUN_DIR + "/scores.parquet",
        chunk_size=1000,
        keep_columns=["customer_id"],
    )

    teardown = DeleteDeploymentOperator(
        task_id="teardown",
        deployflow_conn_id=CONN_ID,
        deployment_name="{{ params.deployment_name }}",
        trigger_rule="all_done",  # tear down even when scoring failed
    )

    deploy >> score >> teardown
