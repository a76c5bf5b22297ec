"""Assets, extra links, ``default_deferrable`` and wait timeouts on a real Airflow (``dag.test()`` on
SQLite, the execution API in process) against the real local target.

``dag.test()`` runs one DAG; it does not create the runs of DAGs scheduled on an asset (the scheduler
does). So the asset test runs the producer with ``dag.test()``, then asks the scheduler's own asset
machinery (``DagModel.dags_needing_dagruns``, what the scheduler calls to decide which asset-scheduled
DAGs are due) whether the consumers are due, then runs them with ``dag.test()``; they read the event's
extra through ``inlet_events``.
"""

from __future__ import annotations

import importlib.util
import json
from typing import Any

import pytest

import airflow_support as support
from airflow_support import run_dag
from deployflow import read_output
from deployflow.integrations.airflow.assets import batch_output_asset, deployment_asset, endpoint_asset

DAGS = support.REACTING_DAG_FILE


def reacting(dag_id: str) -> Any:
    return support.suite_dag(dag_id, DAGS)


def asset_events(uri: str) -> list[Any]:
    from airflow.models.asset import AssetEvent, AssetModel
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        rows = session.scalars(
            select(AssetEvent).join(AssetModel, AssetEvent.asset_id == AssetModel.id).where(AssetModel.uri == uri)
            .order_by(AssetEvent.timestamp)
        ).all()
        return [{"extra": dict(row.extra or {}), "source_task_id": row.source_task_id, "source_dag_id": row.source_dag_id}
                for row in rows]


def due_asset_dags() -> set[str]:
    from airflow.models.dag import DagModel
    from airflow.utils.session import create_session

    with create_session() as session:
        _, triggered = DagModel.dags_needing_dagruns(session)
        due = set(triggered)
        session.rollback()  # decide only: the scheduler would create the runs in this transaction
    return due


def test_the_assets_modules_examples_hold():
    import doctest

    from deployflow.integrations.airflow import assets

    assert doctest.testmod(assets).failed == 0


def test_every_asset_among_a_tasks_outlets_gets_the_extra(client):
    import collections
    import types

    from airflow.sdk import Asset

    from deployflow.integrations.airflow.operators import CreateDeploymentOperator

    mine = deployment_asset("asset-outlets", conn_id="deployflow_test")
    other = Asset(uri="s3://bucket/features")
    operator = CreateDeploymentOperator(
        task_id="t", deployflow_conn_id="deployflow_test", deployment_name="asset-outlets",
        model_uri=support.ADD_ONE, outlets=[other], emit_asset=True, poll_interval=0.1,
    )
    assert operator.outlets == [other, mine]
    events: Any = collections.defaultdict(lambda: types.SimpleNamespace(extra={}))
    try:
        result = operator.execute({"outlet_events": events})
    finally:
        client.delete_deployment("asset-outlets", config={"stop_timeout": 2})
    assert events[mine].extra == events[other].extra
    assert events[mine].extra["url"] == result["url"] and events[mine].extra["action"] == "created"


def test_asset_uris_name_the_target_and_what_changed():
    assert deployment_asset("churn", conn_id="deployflow_local").uri == "deployflow://deployflow_local/deployment/churn"
    assert endpoint_asset("front v2", conn_id="c").uri == "deployflow://c/endpoint/front%20v2"
    assert batch_output_asset("/data/scores.parquet").uri == "file:///data/scores.parquet"
    assert batch_output_asset("s3://bucket/scores").uri == "s3://bucket/scores"
    from deployflow.integrations.airflow.operators import CreateDeploymentOperator

    with pytest.raises(ValueError, match="emit_asset needs a literal deployment_name"):
        CreateDeploymentOperator(task_id="t", deployment_name="{{ params.name }}", model_uri="m", emit_asset=True)


def test_a_deploy_emits_asset_events_and_the_dags_scheduled_on_them_run(client):
    run, output = run_dag(reacting("deployflow_test_assets_producer"))
    try:
        tis = support.task_instances(run)
        assert run.state == "success", ({t: ti.state for t, ti in tis.items()}, output[-5000:])
        deployed = support.return_value(run, "deploy")
        record = client.get_deployment("asset-churn")

        events = asset_events(deployment_asset("asset-churn", conn_id="deployflow_test").uri)
        assert [e["source_task_id"] for e in events][-1:] == ["deploy"]
        extra = events[-1]["extra"]
        assert extra["target"] == support.TARGET_URI and extra["deployment_name"] == "asset-churn"
        assert extra["state"] == "READY" and extra["action"] == deployed["action"]
        assert extra["model_uri"] == record["model_uri"] and extra["url"] == record["url"]
        assert extra["url"].startswith("http://127.0.0.1:") and extra["time"].endswith("+00:00")

        scored = asset_events(batch_output_asset(support.load_module(DAGS).SCORES).uri)[-1]["extra"]
        assert (scored["rows"], scored["failed_rows"], scored["chunks"]) == (6, 0, 3)
        assert scored["deployment_name"] == "asset-churn" and scored["target"] == support.TARGET_URI
        assert len(read_output(scored["output_path"])) == 6
        assert support.TOKEN not in json.dumps([extra, scored])

        # What the scheduler would start now: the two DAGs scheduled on those assets.
        assert {"deployflow_test_assets_scoring", "deployflow_test_assets_report"} <= due_asset_dags()

        consumer, output = run_dag(reacting("deployflow_test_assets_scoring"))
        assert consumer.state == "success", output[-5000:]
        seen = support.return_value(consumer, "score_latest")
        assert seen["extra"] == extra and seen["served_at"] == record["url"]
        assert seen["predictions"] == [[2.0], [3.0]]
        report, output = run_dag(reacting("deployflow_test_assets_report"))
        assert report.state == "success", output[-5000:]
        assert support.return_value(report, "report") == scored

        # The "Deployment" link: worked out when the task finished and stored for the UI.
        assert support.xcoms(run)[("deploy", "_link_DeploymentLink")] == record["url"]
    finally:
        client.delete_deployment("asset-churn", config={"stop_timeout": 2})


def test_a_wait_that_runs_out_of_time_is_never_retried():
    run, output = run_dag(reacting("deployflow_test_wait_timeouts"))
    tis = support.task_instances(run)
    for task_id in ("in_worker", "deferred", "sensor"):
        assert tis[task_id].state == "failed", (task_id, output[-5000:])
        assert tis[task_id].try_number == 1, task_id  # retries=2, yet not retried
    assert "running trigger in line" in output  # the deferred one waited in the trigger
    assert tis["cleanup"].state == "success"


@pytest.mark.parametrize("setting", ["true", "false"])
def test_default_deferrable_decides_how_an_operator_waits(monkeypatch, setting):
    monkeypatch.setenv("AIRFLOW__OPERATORS__DEFAULT_DEFERRABLE", setting)
    dag = _fresh_dag_module().default_deferrable_dag()
    assert dag.get_task("create").deferrable is (setting == "true")
    run, output = run_dag(dag)
    assert run.state == "success", output[-5000:]
    assert ("running trigger in line" in output) is (setting == "true")
    result = support.return_value(run, "create")
    assert result["state"] == "READY" and result["url"].startswith("http://127.0.0.1:")


def _fresh_dag_module() -> Any:
    """The test DAG file imported again, so its operators are built under the current settings."""
    spec = importlib.util.spec_from_file_location("deployflow_reacting_dags_fresh", DAGS)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_databricks_operators_link_to_the_endpoint_page(monkeypatch, tmp_path):
    pytest.importorskip("databricks.sdk", reason="the databricks target needs the 'databricks' extra")
    from fakes.base import scrub_environment
    from fakes.databricks import DEFAULT_TOKEN, FakeDatabricks, scrub_sdk_environment

    from deployflow.integrations.airflow.links import link_of
    from deployflow.integrations.airflow.operators import CreateEndpointOperator

    scrub_environment(monkeypatch, tmp_path)
    scrub_sdk_environment(monkeypatch)
    entity = {"name": "churn-1", "entity_name": "main.ml.churn", "entity_version": "3", "workload_size": "Small",
              "scale_to_zero_enabled": True}
    with FakeDatabricks() as workspace:
        workspace_url = workspace.url
        workspace.add_ready_endpoint("churn", [entity])
        monkeypatch.setenv("AIRFLOW_CONN_DBX_LINKS", json.dumps({
            "conn_type": "deployflow", "host": "databricks", "password": DEFAULT_TOKEN,
            "extra": {"host": workspace.url, "token_option": "token"},
        }))
        result = CreateEndpointOperator(
            task_id="adopt", deployflow_conn_id="dbx_links", endpoint="churn", poll_interval=0.1, timeout=30,
        ).execute({})
    assert result["action"] == "adopted" and result["state"] == "READY"
    assert result["console_url"] == f"{workspace_url}/ml/endpoints/churn"
    assert link_of(result) == result["console_url"]
    assert DEFAULT_TOKEN not in json.dumps(result)
