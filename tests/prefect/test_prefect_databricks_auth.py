"""A ``DeploymentTarget`` block for a Databricks service principal: the client secret is a ``SecretStr``
field, the flow's tasks reach the fake workspace (tests/fakes/databricks.py, with its OAuth token
endpoint) with an OAuth token, and the secret is in no result, log, task state or stored block data.
"""

from __future__ import annotations

import json
import logging

import pytest
from prefect import flow, get_client

from deployflow import InvalidInputError
from deployflow.integrations.prefect import DeploymentTarget, predict, wait_for_endpoint_ready
from fakes.base import scrub_environment
from fakes.databricks import CLIENT_ID, CLIENT_SECRET, FakeDatabricks, scrub_sdk_environment
from prefect_support import flow_logs, task_runs_of

pytest.importorskip("databricks.sdk", reason="OAuth for the databricks target needs the 'databricks' extra")

ENTITY = {"name": "churn-1", "entity_name": "main.ml.churn", "entity_version": "5", "workload_size": "Small",
          "scale_to_zero_enabled": True}


@pytest.fixture(autouse=True)
def _no_ambient_credentials(monkeypatch, tmp_path):
    scrub_environment(monkeypatch, tmp_path)
    scrub_sdk_environment(monkeypatch)


@pytest.fixture
def workspace():
    with FakeDatabricks() as service:
        service.add_ready_endpoint("churn", [ENTITY])
        yield service


@flow
def score_with_a_service_principal(target: DeploymentTarget) -> dict:
    ready = wait_for_endpoint_ready(target, "churn", timeout=30, poll_interval=0.05)
    scored = predict(target, endpoint="churn", inputs={"inputs": [[1.0, 1.0], [2.0, 0.5]]})
    return {"ready": ready, "scored": scored}


def test_a_flow_with_a_service_principal_block_reaches_the_workspace(workspace, caplog):
    caplog.set_level(logging.DEBUG)
    DeploymentTarget(
        target_uri="databricks",
        client_options={"host": workspace.url, "client_id": CLIENT_ID},
        client_secret=CLIENT_SECRET,
    ).save("databricks-service-principal", overwrite=True)
    target = DeploymentTarget.load("databricks-service-principal")
    assert target.client_secret.get_secret_value() == CLIENT_SECRET and CLIENT_SECRET not in repr(target)

    state = score_with_a_service_principal(target, return_state=True)
    result = state.result()
    assert result["ready"]["state"] == "READY"
    assert result["scored"]["predictions"] == [10.0, 12.5]  # row sums times version 5

    issued = [token for token, _ in workspace.issued]
    assert issued and len(workspace.token_requests) == len(issued)
    rest = [r for r in workspace.requests if r.path.startswith(("/api/", "/serving-endpoints/"))]
    assert rest and all(r.header("Authorization").removeprefix("Bearer ") in issued for r in rest)

    flow_run_id = state.state_details.flow_run_id
    with get_client(sync_client=True) as client:
        stored = client.read_block_document_by_name("databricks-service-principal", "deployflow-deployment-target", include_secrets=False)
        parameters = client.read_flow_run(flow_run_id).parameters
    assert "client_secret" in stored.block_schema.fields["secret_fields"]
    places = {
        "flow result": json.dumps(result),
        "prefect logs": "\n".join(flow_logs(flow_run_id)),
        "captured logs": caplog.text,
        "task run states": "\n".join(f"{run.state.message} {run.state.data!r}" for run in task_runs_of(flow_run_id)),
        "flow parameters": json.dumps(parameters, default=str),
        "stored block": str(stored.data),
    }
    assert "churn" in places["prefect logs"]  # the tasks' own log lines were read back
    for place, text in places.items():
        assert CLIENT_SECRET not in text, f"the client secret shows in the {place}"
        for token in issued:
            assert token not in text, f"an access token shows in the {place}"


def test_the_block_passes_its_secrets_as_client_options():
    block = DeploymentTarget(
        target_uri="databricks",
        client_options={"host": "https://adb-1.azuredatabricks.net", "azure_client_id": "app-1", "azure_tenant_id": "t-1"},
        azure_client_secret="az-Secret-4Rt7Yu1Io9",
    )
    assert block.client_kwargs() == {
        "host": "https://adb-1.azuredatabricks.net", "azure_client_id": "app-1", "azure_tenant_id": "t-1",
        "azure_client_secret": "az-Secret-4Rt7Yu1Io9",
    }
    with block.get_client() as client:  # built without a request, as every databricks client
        assert "az-Secret-4Rt7Yu1Io9" not in repr(client.options)
    twice = DeploymentTarget(target_uri="databricks", client_secret="sp-Secret-1a2b3c", secret_options={"client_secret": "sp-Other-4d5e6f"})
    with pytest.raises(InvalidInputError, match="client_secret is given as a field of the block and in secret_options") as caught:
        twice.client_kwargs()
    assert "sp-Secret-1a2b3c" not in str(caught.value) and "sp-Other-4d5e6f" not in str(caught.value)
