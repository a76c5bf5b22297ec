"""Example DAG: promote a challenger on an endpoint step by step, with a person's approval before it
gets all the traffic.

``canary`` validates the challenger offline on the golden set, then gives it each step's share of the
endpoint's traffic below 100%, judging every step with golden traffic sent through the endpoint; it
ends once they all passed. ``approve_full_traffic`` (Airflow's ``ApprovalOperator``, Airflow 3.1+)
waits for someone to answer in the UI's Required Actions or through the REST API. ``full_traffic``
then continues the same promotion (same endpoint, challenger and steps: it picks up from the
promotion's record) with the last step. A rejection skips it: the challenger keeps the share it had.
A failed check in either task puts the traffic back on the champion and fails the task.

The endpoint and both deployments must exist (the champion serving the endpoint). Params per run:
``endpoint``, ``challenger``, ``golden`` (a CSV, Parquet or JSON-lines file with a ``label`` column),
``checks``, ``steps``, ``bake_seconds``, ``min_samples``, ``conn_id``::

    airflow dags test deployflow_promote_with_approval -c '{"endpoint": "churn", "challenger": "churn-v2"}'
"""

from __future__ import annotations

import datetime

from airflow.providers.standard.operators.hitl import ApprovalOperator
from airflow.sdk import DAG

from deployflow.integrations.airflow.operators.promotion import PromoteOperator

PROMOTION = dict(
    endpoint="{{ params.endpoint }}",
    challenger="{{ params.challenger }}",
    golden="{{ params.golden }}",
    checks="{{ params.checks }}",
    steps="{{ params.steps }}",
    bake_seconds="{{ params.bake_seconds }}",
    min_samples="{{ params.min_samples }}",
    deployflow_conn_id="{{ params.conn_id }}",
)

with DAG(
    dag_id="deployflow_promote_with_approval",
    schedule=None,
    start_date=datetime.datetime(2026, 1, 1),
    catchup=False,
    render_template_as_native_obj=True,
    params={
        "endpoint": "churn",
        "challenger": "churn-v2",
        "golden": "/data/golden.csv",
        "checks": ["accuracy>=champion-0.01", "error_rate<=0"],
        "steps": [10, 50, 100],
        "bake_seconds": 60,
        "min_samples": 20,
        "conn_id": "deployflow_default",
    },
    tags=["deployflow", "example"],
) as dag:
    canary = PromoteOperator(task_id="canary", stop_before_full_traffic=True, deferrable=True, **PROMOTION)
    approve = ApprovalOperator(
        task_id="approve_full_traffic",
        subject="Give {{ params.challenger }} all of {{ params.endpoint }}'s traffic?",
        body="Every step so far passed: {{ ti.xcom_pull(task_ids='canary')['report_path'] }}",
    )
    full_traffic = PromoteOperator(task_id="full_traffic", deferrable=True, **PROMOTION)
    canary >> approve >> full_traffic
