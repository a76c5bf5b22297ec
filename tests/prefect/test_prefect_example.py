"""The example flow runs end to end on the local target: deploy, wait, batch-score, tear down."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys

import pandas as pd
import pytest

from deployflow import get_deploy_client, read_output
from prefect_support import EXAMPLES, flow_artifacts, flow_logs, load_example, read_events, task_runs_of

example = load_example(EXAMPLES / "deploy_and_score.py")


def test_example_flow_deploys_scores_and_tears_down(target_uri, tmp_path):
    customers = example.make_customers(tmp_path / "customers.parquet", 2500)
    output = tmp_path / "scores.parquet"

    state = example.deploy_and_score(
        target_uri, str(customers), str(output), name="churn-example", chunk_size=1000, return_state=True
    )

    assert state.is_completed(), state.message
    result = state.result()
    summary = result["summary"]
    assert (summary["rows"], summary["chunks"], summary["failed_rows"]) == (2500, 3, 0)
    assert summary["output_path"] == str(output)
    assert result["deployment"]["state"] == "READY"
    assert result["deployment"]["url"].startswith("http://127.0.0.1:")
    scores = read_output(output)
    assert scores["customer_id"].tolist() == list(range(1, 2501))
    assert scores["churn_probability"].between(0, 1).all()
    pd.testing.assert_series_equal(
        scores["will_churn"], scores["churn_probability"] >= 0.5, check_names=False
    )
    # Torn down: nothing left running on the target.
    with get_deploy_client(target_uri) as client:
        assert "churn-example" not in [d["name"] for d in client.list_deployments()]

    flow_run_id = state.state_details.flow_run_id
    names = [run.name for run in task_runs_of(flow_run_id)]
    assert [n.rsplit("-", 1)[0] for n in names] == [
        "create_deployment", "wait_for_deployment_ready", "batch_predict", "delete_deployment"
    ]
    artifacts = {artifact.key: artifact for artifact in flow_artifacts(flow_run_id)}
    link = artifacts["deployflow-deployment-churn-example"]
    assert link.type == "markdown" and result["deployment"]["url"] in str(link.data)
    table = artifacts["deployflow-batch-churn-example"]
    assert table.type == "table" and "2500" in str(table.data)
    progress = artifacts["deployflow-batch-progress-churn-example"]
    assert progress.type == "progress" and float(progress.data) == 100.0
    # The progress was reported while the batch ran (after its first chunk), not only at the end.
    assert any(line.startswith("Scored 1000 rows (40%)") for line in flow_logs(flow_run_id))

    ready = read_events("deployflow.deployment.ready", resource_id="deployflow.deployment.churn-example")
    assert ready and ready[0].payload["state"] == "READY"
    assert ready[0].resource["deployflow.target"] == target_uri


def test_example_flow_tears_down_when_scoring_fails(target_uri, tmp_path):
    state = example.deploy_and_score(
        target_uri, str(tmp_path / "missing.parquet"), str(tmp_path / "out.parquet"), name="churn-broken-input",
        return_state=True,
    )

    assert state.is_failed()
    with pytest.raises(Exception, match="missing.parquet"):
        state.result()
    with get_deploy_client(target_uri) as client:
        assert "churn-broken-input" not in [d["name"] for d in client.list_deployments()]
    runs = {run.name.rsplit("-", 1)[0]: run for run in task_runs_of(state.state_details.flow_run_id)}
    assert runs["delete_deployment"].state.is_completed()
    assert runs["batch_predict"].state.is_failed()


def test_example_file_copied_alone_runs_as_its_docstring_says(prefect_server, tmp_path):
    # The docstring: the file is self-contained, a copy runs on its own with `python <file>`, and the
    # state and the output go under ./prefect-demo-output/.
    alone = tmp_path / "somewhere" / "deploy_and_score.py"
    alone.parent.mkdir()
    shutil.copy(EXAMPLES / "deploy_and_score.py", alone)
    workdir = tmp_path / "workdir"
    workdir.mkdir()

    finished = subprocess.run(
        [sys.executable, str(alone), "--rows", "300"],
        cwd=workdir, env={**os.environ, "PREFECT_API_URL": prefect_server}, capture_output=True, text=True,
        timeout=300,
    )

    assert finished.returncode == 0, finished.stdout[-3000:] + finished.stderr[-3000:]
    printed = re.search(r"^\{$", finished.stdout, re.MULTILINE)  # the result, printed last as indented JSON
    assert printed, finished.stdout[-3000:]
    result = json.loads(finished.stdout[printed.start():])
    assert result["deployment"]["model_uri"] == f"python:{alone.resolve()}:model"
    assert result["deployment"]["state"] == "READY"
    assert result["summary"]["rows"] == 300 and result["summary"]["failed_rows"] == 0
    out = workdir / "prefect-demo-output"
    scores = read_output(out / "scores.parquet")
    assert scores["customer_id"].tolist() == list(range(1, 301))
    with get_deploy_client(f"local://{out / 'state'}") as client:
        assert client.list_deployments() == []  # torn down
