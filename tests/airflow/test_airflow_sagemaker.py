"""The Airflow provider with a ``sagemaker`` connection: deploy -> wait (deferred) -> predict -> delete in a
real ``dag.test()``, against moto served on 127.0.0.1. The provider has no SageMaker-specific code: region
and credentials come through the connection (the password is the secret key, given to the client as
``aws_secret_access_key`` by the extra's ``token_option``)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

import airflow_support as support
from airflow_support import run_dag
from fakes import sagemaker as fakes

DAG_FILE = Path(__file__).resolve().parent / "dags" / "deployflow_sagemaker_dags.py"


@pytest.fixture(scope="module")
def sagemaker_run(tmp_path_factory):
    """One run of the DAG against a moto server, with what the fake saw."""
    model = fakes.write_model(tmp_path_factory.mktemp("sagemaker-model") / "model")
    link = support.DAGS_FOLDER / DAG_FILE.name
    if not link.exists():
        link.symlink_to(DAG_FILE)
    saved = {name: os.environ.get(name) for name in ("AIRFLOW_CONN_DEPLOYFLOW_SAGEMAKER", "DEPLOYFLOW_SAGEMAKER_TEST_MODEL")}
    try:
        with fakes.server() as fake:
            os.environ["AIRFLOW_CONN_DEPLOYFLOW_SAGEMAKER"] = json.dumps(
                {
                    "conn_type": "deployflow",
                    "host": "sagemaker:/us-east-1",
                    "password": fakes.SECRET_KEY,
                    "extra": {
                        "token_option": "aws_secret_access_key",
                        "aws_access_key_id": fakes.ACCESS_KEY,
                        "endpoint_url": fake.url,
                        "poll_interval": 0.05,
                    },
                }
            )
            os.environ["DEPLOYFLOW_SAGEMAKER_TEST_MODEL"] = str(model)
            fake.script("churn-airflow", "Creating", "Creating", "Creating", "InService")
            fake.queue_answers({"predictions": [0.12, 0.87]})
            run, output = run_dag(support.suite_dag("deployflow_test_sagemaker", DAG_FILE))
            seen = {
                "endpoints": sorted(fake.backend().endpoints),
                "models": sorted(fake.backend()._models),
                "configs": sorted(fake.backend().endpoint_configs),
                "keys": [key for bucket in fake.buckets() for key in fake.s3_keys(bucket)],
                "invocations": [json.loads(item["body"]) for item in fake.invocations],
            }
            yield run, output, seen
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        link.unlink(missing_ok=True)


def test_deploy_wait_predict_delete_on_sagemaker(sagemaker_run):
    run, output, seen = sagemaker_run
    states = {task_id: ti.state for task_id, ti in support.task_instances(run).items()}
    assert states == {"create": "success", "wait": "success", "predict": "success", "delete": "success"}, output[-5000:]
    assert "running trigger in line" in output  # the sensor waited deferred, through the async status
    created = support.return_value(run, "create")
    assert created["action"] == "created" and created["state"] == "PENDING"
    predicted = support.return_value(run, "predict")
    assert predicted["predictions"] == [0.12, 0.87] and predicted["num_predictions"] == 2
    assert seen["invocations"] == [{"dataframe_split": {"columns": ["tenure", "plan"], "data": [[3, "basic"], [40, "pro"]]}}]
    assert seen == {**seen, "endpoints": [], "models": [], "configs": [], "keys": []}  # the delete cleaned up


def test_the_credentials_never_reach_logs_or_xcom(sagemaker_run):
    run, output, _ = sagemaker_run
    everything = output + json.dumps(list(support.xcoms(run).values()), default=str)
    assert fakes.SECRET_KEY not in everything
    assert fakes.ACCESS_KEY not in everything
