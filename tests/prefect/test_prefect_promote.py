"""The Prefect ``promote`` task on the Prefect test server and the real local target: a promotion that a
later failure in its transaction undoes, a markdown artifact of every check, and a human gate answered
through the Prefect API."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
from prefect import flow, task
from prefect.transactions import transaction

from deployflow import get_deploy_client
from deployflow.integrations.prefect import create_deployment
from deployflow.integrations.prefect.promotion import promote
from prefect_support import flow_artifacts
from test_promotion_support import golden_frame, who_answers, write_models

FAST = dict(steps=[50, 100], bake_seconds=0.3, max_rate=100, min_samples=5)
CHECKS = ["accuracy>=champion-0.01", "error_rate<=0"]


@pytest.fixture(scope="module")
def setup(target_uri, tmp_path_factory):
    directory = tmp_path_factory.mktemp("promote-models")
    uris = write_models(directory)
    golden = directory / "golden.csv"
    golden_frame().to_csv(golden, index=False)
    with get_deploy_client(target_uri) as client:
        client.create_deployment("pf-champion", uris["champion"])
    return uris, str(golden)


def fresh_endpoint(target_uri: str, name: str) -> None:
    with get_deploy_client(target_uri) as client:
        client.create_endpoint(name, config={"routes": [{"deployment": "pf-champion", "traffic": 100}]})


@task
def fail_last() -> None:
    raise ValueError("publishing the release failed")


@flow
def release(target: str, endpoint: str, challenger: str, model_uri: str, golden: str, fail: bool) -> dict:
    with transaction():
        create_deployment(target, challenger, model_uri)
        result = promote(target, endpoint, challenger, golden=golden, checks=CHECKS, **FAST)
        if fail:
            fail_last()
    return result


def test_a_later_failure_in_the_transaction_puts_the_champion_back(target_uri, setup):
    uris, golden = setup
    fresh_endpoint(target_uri, "pf-undo")
    state = release(target_uri, "pf-undo", "pf-undone", uris["better"], golden, True, return_state=True)
    assert state.is_failed()
    with get_deploy_client(target_uri) as client:
        assert client.get_traffic_split("pf-undo") == {"pf-champion": 100.0}
        assert who_answers(client, "pf-undo") == {"champion"}
        # create_deployment's own rollback, after the traffic was off it, deleted the challenger.
        assert "pf-undone" not in {d["name"] for d in client.list_deployments()}
        # The record is gone too: the next run promotes afresh instead of finding "promoted".
        from deployflow.promotion import default_record_path

        assert not default_record_path(client, "pf-undo", "pf-undone").exists()


def test_a_promotion_that_stands_returns_a_small_result_and_an_artifact(target_uri, setup):
    uris, golden = setup
    fresh_endpoint(target_uri, "pf-keep")
    state = release(target_uri, "pf-keep", "pf-kept", uris["better"], golden, False, return_state=True)
    assert state.is_completed()
    result = state.result()
    assert result["outcome"] == "promoted" and result["champion"] == "pf-champion"
    assert [(s["weight"], s["verdict"]) for s in result["steps"]] == [(50, "pass"), (100, "pass")]
    assert result["split"] == {"pf-champion": 0.0, "pf-kept": 100.0} and Path(result["record_path"]).exists()
    [artifact] = [a for a in flow_artifacts(state.state_details.flow_run_id) if (a.key or "").startswith("deployflow-promotion")]
    assert "**pf-kept** on **pf-keep**: promoted" in artifact.data
    assert "| offline | pass | 20 | accuracy>=champion-0.01 |" in artifact.data
    assert "| 50% | pass |" in artifact.data and "| 100% | pass |" in artifact.data
    with get_deploy_client(target_uri) as client:
        assert who_answers(client, "pf-keep") == {"challenger"}


@flow
def gated(target: str, endpoint: str, challenger: str, golden: str) -> dict:
    return promote(target, endpoint, challenger, golden=golden, checks=CHECKS, approval=True, approval_timeout=60, **FAST)


def paused_run_of(flow_name: str, seconds: float = 60.0):
    from prefect import get_client
    from prefect.client.schemas.filters import FlowFilter, FlowFilterName, FlowRunFilter, FlowRunFilterStateType
    from prefect.client.schemas.objects import StateType

    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        with get_client(sync_client=True) as client:
            runs = client.read_flow_runs(
                flow_filter=FlowFilter(name=FlowFilterName(any_=[flow_name])),
                flow_run_filter=FlowRunFilter(state=dict(type=FlowRunFilterStateType(any_=[StateType.PAUSED]))),
            )
        if runs:
            return runs[0]
        time.sleep(0.2)
    raise AssertionError("the flow run never paused")


def test_the_human_gate_before_full_traffic(target_uri, setup):
    from prefect.flow_runs import resume_flow_run

    uris, golden = setup
    with get_deploy_client(target_uri) as client:
        client.create_deployment("pf-gated", uris["better"])
    fresh_endpoint(target_uri, "pf-gate")
    outcome: dict = {}
    runner = threading.Thread(target=lambda: outcome.update(state=gated(target_uri, "pf-gate", "pf-gated", golden, return_state=True)))
    runner.start()
    try:
        run = paused_run_of("gated")
        with get_deploy_client(target_uri) as client:
            # Paused before the last step: the challenger has the first step's share, no more.
            assert client.get_traffic_split("pf-gate") == {"pf-champion": 50.0, "pf-gated": 50.0}
        resume_flow_run(run.id, run_input={"approve": True})
    finally:
        runner.join(120)
    state = outcome["state"]
    assert state.is_completed() and state.result()["outcome"] == "promoted"
    with get_deploy_client(target_uri) as client:
        assert client.get_traffic_split("pf-gate") == {"pf-champion": 0.0, "pf-gated": 100.0}
