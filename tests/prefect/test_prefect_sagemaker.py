"""The Prefect tasks with a ``sagemaker`` block: deploy -> wait -> predict -> delete in a real flow run,
against moto served on 127.0.0.1. Nothing in the integration is SageMaker-specific: the block holds the
region (in the URI), the access key id (a plain client option), the secret key (a secret option) and the
moto server's URL."""

from __future__ import annotations

import json

from prefect import flow

from deployflow.integrations.prefect import (
    DeploymentTarget,
    create_deployment,
    delete_deployment,
    get_deployment,
    predict,
    wait_for_deployment_ready,
)
from fakes import sagemaker as fakes
from prefect_support import flow_logs

NAME = "churn-prefect"


@flow
def deploy_score_tear_down(target: DeploymentTarget, model: str) -> dict:
    created = create_deployment(target, NAME, model, config=fakes.BASE_CONFIG, wait=False)
    ready = wait_for_deployment_ready(target, NAME, timeout=60, poll_interval=0.05)
    again = create_deployment(target, NAME, model, config=fakes.BASE_CONFIG)  # a retried step adopts
    shown = get_deployment(target, NAME)
    scored = predict(target, NAME, {"inputs": [[3.0, 1.0], [40.0, 0.0]]})
    deleted = delete_deployment(target, NAME)
    return {"created": created, "ready": ready, "again": again, "shown": shown, "scored": scored, "deleted": deleted}


def test_deploy_wait_predict_delete_on_sagemaker(tmp_path):
    model = str(fakes.write_model(tmp_path / "model"))
    with fakes.server() as fake:
        target = DeploymentTarget(
            target_uri="sagemaker:/us-east-1",
            secret_options={"aws_secret_access_key": fakes.SECRET_KEY},
            client_options={"aws_access_key_id": fakes.ACCESS_KEY, "endpoint_url": fake.url, "poll_interval": 0.05},
        )
        fake.script(NAME, "Creating", "Creating", "Creating", "InService")
        fake.queue_answers({"predictions": [0.1, 0.9]})

        state = deploy_score_tear_down(target, model, return_state=True)

        result = state.result()
        assert result["created"]["action"] == "created" and result["created"]["state"] == "PENDING"
        assert result["ready"]["state"] == "READY"
        assert result["ready"]["url"] == f"{fake.url}/endpoints/{NAME}/invocations"
        assert result["again"]["action"] == "adopted"
        assert result["shown"]["model_uri"] == model and result["shown"]["status"] == "InService"
        assert result["scored"] == {"predictions": [0.1, 0.9]}
        assert result["deleted"]["deleted"] is True
        assert not fake.backend().endpoints and not fake.backend()._models and not fake.backend().endpoint_configs
        assert [json.loads(item["body"]) for item in fake.invocations] == [{"inputs": [[3.0, 1.0], [40.0, 0.0]]}]
        logs = "\n".join(flow_logs(state.state_details.flow_run_id))
        assert fakes.SECRET_KEY not in logs + json.dumps(result) and fakes.ACCESS_KEY not in logs + json.dumps(result)
