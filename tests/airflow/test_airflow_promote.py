"""``PromoteOperator`` under ``dag.test()``: the example DAG with its ``ApprovalOperator`` gate (answered
as the Core API's HITL route does: the response written to the database, then the parked task resumed
with ``handle_event_submit``), deferred promotions run inline by ``dag.test()``, against the real local
target; a rejected challenger fails its task with the traffic left on the champion."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

import airflow_support as support
from test_promotion_support import golden_frame, who_answers, write_models

EXAMPLE = support.REPO / "examples" / "airflow" / "promote_with_approval.py"


@pytest.fixture(scope="module")
def example(tmp_path_factory):
    """The example DAG, in the session's DAGs folder (``dag.test()`` runs only DAGs found there), and
    the champion and two challengers on the session's local target."""
    from deployflow import get_deploy_client

    link = support.DAGS_FOLDER / EXAMPLE.name
    if not link.exists():
        link.symlink_to(EXAMPLE)
    directory = tmp_path_factory.mktemp("airflow-promote")
    uris = write_models(directory)
    golden = directory / "golden.csv"
    golden_frame().to_csv(golden, index=False)
    with get_deploy_client(support.TARGET_URI) as client:
        for name, model in (("af-champion", "champion"), ("af-better", "better"), ("af-worse", "worse")):
            client.create_deployment(name, uris[model])
    return support.load_module(EXAMPLE).dag, str(golden)


def conf(endpoint: str, challenger: str, golden: str) -> dict:
    return {"endpoint": endpoint, "challenger": challenger, "golden": golden, "steps": [30, 100], "bake_seconds": 0.3,
            "min_samples": 5, "checks": ["accuracy>=champion-0.01", "error_rate<=0"], "conn_id": "deployflow_local"}


def answer_approvals(dag_id: str, stop: threading.Event, chosen: str) -> None:
    """Answer every Human-in-the-loop request of ``dag_id`` with ``chosen``, as the Core API does."""
    from airflow.models.hitl import HITLDetail
    from airflow.models.taskinstance import TaskInstance
    from airflow.models.trigger import handle_event_submit
    from airflow.triggers.base import TriggerEvent
    from airflow.sdk import timezone
    from airflow.utils.session import create_session
    from airflow.utils.state import TaskInstanceState

    while not stop.is_set():
        with create_session() as session:
            waiting = (
                session.query(HITLDetail, TaskInstance)
                .join(TaskInstance, TaskInstance.id == HITLDetail.ti_id)
                .filter(TaskInstance.dag_id == dag_id, TaskInstance.state == TaskInstanceState.AWAITING_INPUT,
                        HITLDetail.responded_at.is_(None))
                .all()
            )
            for detail, ti in waiting:
                detail.responded_at = timezone.utcnow()
                detail.responded_by = {"id": "reviewer", "name": "reviewer"}
                detail.chosen_options = [chosen]
                detail.params_input = {}
                session.add(detail)
                handle_event_submit(TriggerEvent(detail.as_resume_event_payload()), task_instance=ti, session=session)
        stop.wait(0.2)


def run_example(dag, run_conf: dict, chosen: str = "Approve"):
    # Every model imported and mapped here first: importing or mapping Airflow's models in two threads
    # at once fails (circular imports) or deadlocks (SQLAlchemy's mapper lock).
    from sqlalchemy.orm import configure_mappers

    from airflow.models import import_all_models

    import_all_models()
    configure_mappers()

    stop = threading.Event()
    answering = threading.Thread(target=answer_approvals, args=(dag.dag_id, stop, chosen), daemon=True)
    answering.start()
    try:
        with support.captured_output() as output:
            run = dag.test(run_conf=run_conf)
    finally:
        stop.set()
        answering.join(10)
    return run, output[0]


def test_the_example_dag_promotes_after_the_approval(example, client):
    dag, golden = example
    client.create_endpoint("af-promote", config={"routes": [{"deployment": "af-champion", "traffic": 100}]})
    run, log = run_example(dag, conf("af-promote", "af-better", golden))
    states = {task_id: ti.state for task_id, ti in support.task_instances(run).items()}
    assert states == {"canary": "success", "approve_full_traffic": "success", "full_traffic": "success"}, log[-3000:]
    canary = support.return_value(run, "canary")
    assert canary["outcome"] == "paused" and canary["approval_pending"] is True
    full = support.return_value(run, "full_traffic")
    assert full["outcome"] == "promoted" and full["report_path"] == canary["report_path"]
    assert set(full) == {"outcome", "reason", "report_path", "approval_pending", "endpoint", "challenger"}
    from deployflow.promotion import load_record

    report = load_record(full["report_path"])
    assert [(s["weight"], s["verdict"]) for s in report.steps] == [(30, "pass"), (100, "pass")]
    assert report["resumed"] == 1  # full_traffic continued canary's ramp
    assert client.get_traffic_split("af-promote") == {"af-champion": 0.0, "af-better": 100.0}
    assert who_answers(client, "af-promote") == {"challenger"}
    assert support.TOKEN not in log
    # Both promotions ran deferred: dag.test() ran their triggers in line.
    assert log.count("running trigger in line") >= 2


def test_a_rejected_challenger_fails_the_canary_and_keeps_the_champion(example, client):
    dag, golden = example
    client.create_endpoint("af-reject", config={"routes": [{"deployment": "af-champion", "traffic": 100}]})
    run, log = run_example(dag, conf("af-reject", "af-worse", golden))
    states = {task_id: ti.state for task_id, ti in support.task_instances(run).items()}
    assert states["canary"] == "failed" and states["full_traffic"] != "success", log[-3000:]
    assert support.return_value(run, "canary")["outcome"] == "rejected"
    assert client.get_traffic_split("af-reject") == {"af-champion": 100.0}
    assert Path(support.return_value(run, "canary")["report_path"]).exists()


def test_without_deferring_the_operator_promotes_in_its_worker(example, client):
    from deployflow.integrations.airflow.operators.promotion import PromoteOperator

    _, golden = example
    client.create_endpoint("af-sync", config={"routes": [{"deployment": "af-champion", "traffic": 100}]})
    operator = PromoteOperator(
        task_id="promote", endpoint="af-sync", challenger="af-better", golden=golden, checks=["accuracy>=champion"],
        steps="50,100", bake_seconds="0.3", min_samples="5", max_rate="100", deferrable=False,
        deployflow_conn_id="deployflow_local",
    )
    result = operator.execute(context={})
    assert result["outcome"] == "promoted" and result["approval_pending"] is False
    assert client.get_traffic_split("af-sync") == {"af-champion": 0.0, "af-better": 100.0}


class _RecordingTaskInstance:
    """Stands in for the task instance in ``context``: keeps what the operator pushes to XCom."""

    def __init__(self) -> None:
        self.pushed: dict = {}

    def xcom_push(self, key: str, value: object) -> None:
        self.pushed[key] = value


def test_too_few_answers_skips_the_task_and_keeps_the_champion(example, client):
    from airflow.sdk.exceptions import AirflowSkipException

    from deployflow.integrations.airflow.operators.promotion import PromoteOperator

    _, golden = example
    client.create_endpoint("af-few", config={"routes": [{"deployment": "af-champion", "traffic": 100}]})
    operator = PromoteOperator(
        task_id="promote", endpoint="af-few", challenger="af-better", golden=golden, checks=["accuracy>=champion"],
        steps=[50, 100], bake_seconds=0.2, min_samples=1000, max_rate=50, deferrable=False,
        deployflow_conn_id="deployflow_local",
    )
    ti = _RecordingTaskInstance()
    with pytest.raises(AirflowSkipException, match="min_samples=1000"):
        operator.execute(context={"ti": ti})
    assert ti.pushed["return_value"]["outcome"] == "paused"
    assert client.get_traffic_split("af-few") == {"af-champion": 100.0}


@pytest.mark.parametrize("deferrable", [False, True])
def test_the_operators_own_deadline_reaches_the_promotion(example, client, deferrable):
    # promotion_timeout is the promotion's timeout: a step that would bake past it is not started.
    from airflow.sdk.exceptions import AirflowSkipException

    from deployflow.integrations.airflow.operators.promotion import PromoteOperator
    from deployflow.integrations.airflow.triggers.promotion import PromotionTrigger

    _, golden = example
    name = f"af-deadline-{int(deferrable)}"
    client.create_endpoint(name, config={"routes": [{"deployment": "af-champion", "traffic": 100}]})
    operator = PromoteOperator(
        task_id="promote", endpoint=name, challenger="af-better", golden=golden, checks=["accuracy>=champion"],
        steps=[50, 100], bake_seconds=30, min_samples=5, promotion_timeout="5", deferrable=deferrable,
        deployflow_conn_id="deployflow_local",
    )
    ti = _RecordingTaskInstance()
    if deferrable:
        from airflow.sdk.exceptions import TaskDeferred

        with pytest.raises(TaskDeferred) as deferred:
            operator.execute(context={"ti": ti})
        trigger = deferred.value.trigger
        assert isinstance(trigger, PromotionTrigger) and trigger.deadline is not None
        import asyncio

        async def first_event():
            async for event in trigger.run():
                return event.payload

        event = asyncio.run(first_event())
        with pytest.raises(AirflowSkipException, match="no time left"):
            getattr(operator, deferred.value.method_name)(context={"ti": ti}, event=event)
    else:
        with pytest.raises(AirflowSkipException, match="no time left"):
            operator.execute(context={"ti": ti})
    assert client.get_traffic_split(name) == {"af-champion": 100.0}


def test_a_cancelled_trigger_stops_the_promotion_and_a_rerun_resumes_it(example, client):
    # A triggerer that restarts cancels the trigger: the promotion stops at its next request, keeps its
    # record, and the task run again continues the ramp where it was (no second ramp).
    import asyncio
    import json
    import time

    from airflow.sdk.exceptions import TaskDeferred

    from deployflow.integrations.airflow.operators.promotion import PromoteOperator

    _, golden = example
    client.create_endpoint("af-cancel", config={"routes": [{"deployment": "af-champion", "traffic": 100}]})
    arguments = dict(task_id="promote", endpoint="af-cancel", challenger="af-better", golden=golden,
                     checks=["accuracy>=champion"], steps=[50, 100], min_samples=5, max_rate=100,
                     deployflow_conn_id="deployflow_local")
    operator = PromoteOperator(**arguments, bake_seconds=60, deferrable=True)
    with pytest.raises(TaskDeferred) as deferred:
        operator.execute(context={"ti": _RecordingTaskInstance()})
    trigger = deferred.value.trigger

    async def cancel_while_baking() -> None:
        running = asyncio.ensure_future(trigger.run().__anext__())
        deadline = time.monotonic() + 60
        while client.get_traffic_split("af-cancel").get("af-better", 0.0) != 50.0:
            assert time.monotonic() < deadline and not running.done()
            await asyncio.sleep(0.1)
        running.cancel()
        with pytest.raises(asyncio.CancelledError):
            await running

    # asyncio.run returns once its executor's threads have ended: the promotion's thread stopped
    asyncio.run(cancel_while_baking())
    assert client.get_traffic_split("af-cancel") == {"af-champion": 50.0, "af-better": 50.0}  # left as it was
    again = PromoteOperator(**arguments, bake_seconds=0.3, deferrable=False)
    result = again.execute(context={"ti": _RecordingTaskInstance()})
    assert result["outcome"] == "promoted"
    report = json.loads(Path(result["report_path"]).read_text())
    assert [step["weight"] for step in report["steps"]] == [50, 100]  # the 50% step was not ramped twice
    assert client.get_traffic_split("af-cancel") == {"af-champion": 0.0, "af-better": 100.0}
