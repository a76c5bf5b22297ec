"""A token planted in the block never shows: not in logs, task results, artifacts, events, states or
anything else the Prefect server stored."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pandas as pd
import pytest
from prefect import flow, get_client
from prefect.settings import PREFECT_API_DATABASE_CONNECTION_URL

from deployflow import BaseDeploymentClient, RemoteError
from deployflow.integrations.prefect import (
    DeploymentTarget,
    batch_predict,
    create_deployment,
    delete_deployment,
    predict,
)
from prefect_support import flow_artifacts, flow_logs, model_ref, read_events, registered_target, task_runs_of

TOKEN = "tok-7c1e5b9a3f0d42e8b6"
NAME = "secured"
ROWS = {"dataframe_records": [{"a": 1, "b": 2}]}


class SloppyClient(BaseDeploymentClient):
    """A plugin whose errors are chained from a library exception that quotes the request headers."""

    def __init__(self, target_uri: str, auth_token: str | None = None, **options: object) -> None:
        super().__init__(target_uri, **options)
        self.auth_token = auth_token

    def predict(self, deployment_name=None, inputs=None, endpoint=None):
        try:
            raise ConnectionError(f"POST /invocations refused; headers={{'X-Api-Key': '{self.auth_token}'}}")
        except ConnectionError as exc:
            raise RemoteError("the service refused the request") from exc

    def create_deployment(self, *args, **kwargs):
        raise NotImplementedError

    update_deployment = delete_deployment = list_deployments = get_deployment = create_deployment


@pytest.fixture
def sloppy_target():
    with registered_target("sloppy", SloppyClient):
        yield


@flow
def secured_scoring(target: DeploymentTarget, sloppy: DeploymentTarget, data: str, output: str) -> dict:
    token = target.auth_token
    try:
        deployed = create_deployment(target, NAME, model_ref("linear"), config={"auth_token": token})
        scored = predict(target, NAME, ROWS)
        summary = batch_predict(target, data, output, deployment_name=NAME, chunk_size=2, progress_interval=0)
        # A service that quotes what it was sent in its error message.
        quoted = predict.with_options(retries=0)(
            target, NAME, {**ROWS, "params": {"raise": f"rejected credentials {token.get_secret_value()}"}},
            return_state=True,
        )
        refused = predict.with_options(retries=0)(sloppy, "anything", ROWS, return_state=True)
    finally:
        delete_deployment(target, NAME)
    return {"deployed": deployed, "scored": scored, "summary": summary,
            "quoted": quoted.message, "refused": refused.message}


def _database_bytes() -> bytes:
    path = Path(str(PREFECT_API_DATABASE_CONNECTION_URL.value()).split(":///", 1)[1])
    return b"".join(p.read_bytes() for p in path.parent.glob(path.name + "*"))


def test_a_token_in_the_block_never_appears_anywhere(target_uri, tmp_path, caplog, sloppy_target):
    caplog.set_level(logging.DEBUG)
    data = tmp_path / "rows.csv"
    pd.DataFrame({"a": range(6), "b": range(6)}).to_csv(data, index=False)
    target = DeploymentTarget(target_uri=target_uri, auth_token=TOKEN)
    sloppy = DeploymentTarget(target_uri="sloppy", auth_token=TOKEN)

    state = secured_scoring(target, sloppy, str(data), str(tmp_path / "scores.csv"), return_state=True)

    result = state.result()
    # The flow really used the token: the deployment requires it, and the failures quoted it.
    assert result["scored"]["predictions"] == [4]
    assert result["summary"]["rows"] == 6
    assert "rejected credentials ***" in result["quoted"]
    flow_run_id = state.state_details.flow_run_id
    logs = "\n".join(flow_logs(flow_run_id))
    assert "rejected credentials ***" in logs
    assert "X-Api-Key': '***'" in logs  # the chained library error, redacted

    with get_client(sync_client=True) as client:
        parameters = client.read_flow_run(flow_run_id).parameters
    runs = task_runs_of(flow_run_id)
    artifacts = flow_artifacts(flow_run_id)
    assert {a.key for a in artifacts} >= {"deployflow-deployment-secured", "deployflow-batch-secured"}
    events = read_events("deployflow.", resource_id=f"deployflow.deployment.{NAME}")
    assert events
    places = {
        "prefect logs": logs,
        "captured logs": caplog.text,
        "flow result": json.dumps(result),
        "flow parameters": json.dumps(parameters, default=str),
        "task run states": "\n".join(f"{run.state.message} {run.state.data!r}" for run in runs),
        "artifacts": "\n".join(f"{a.data} {a.description}" for a in artifacts),
        "events": "\n".join(e.model_dump_json() for e in events),
        "block repr": repr(target),
    }
    for place, text in places.items():
        assert TOKEN not in text, f"the token shows in the {place}"
    assert TOKEN.encode() not in _database_bytes(), "the token is stored in the Prefect database"
    with pytest.raises(AssertionError):  # the database check can see what it looks for
        assert b"deployflow-batch-secured" not in _database_bytes()
