"""Steps undone by a Prefect transaction: real transactions on the Prefect test server, whose last task
fails, against the real local target (server processes on 127.0.0.1)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any, ClassVar

import psutil
import pytest
from prefect import flow, task
from prefect.transactions import Transaction, transaction

from deployflow import get_deploy_client
from deployflow.integrations.prefect import (
    DeploymentTarget,
    create_deployment,
    create_endpoint,
    update_deployment,
    update_endpoint,
)
from deployflow.integrations.prefect.rollback import UNDO_KEY, undo_step
from prefect_support import (
    EXAMPLES,
    LostAnswerClient,
    flow_log_records,
    load_example,
    model_ref,
    read_events,
    registered_target,
    task_runs_of,
)

example = load_example(EXAMPLES / "release_in_transaction.py")
FAST = {"poll_interval": 0.2, "timeout": 120}


def server_processes(target_uri: str, name: str) -> list[psutil.Process]:
    """The live server processes of deployment ``name`` in the target's state directory (each runs with
    a spec file under ``<state dir>/deployments/<name>/``)."""
    marker = str(Path(target_uri.split("://", 1)[1]) / "deployments" / name) + "/"
    found = []
    for process in psutil.process_iter(["cmdline", "status"]):
        try:
            if process.info["status"] != psutil.STATUS_ZOMBIE and any(marker in part for part in process.info["cmdline"] or []):
                found.append(process)
        except psutil.Error:
            continue
    return found


def rolled_back(name: str) -> dict[str, Any]:
    """The payload of the one ``rolled-back`` event about deployment ``name``."""
    events = read_events("deployflow.deployment.rolled-back", resource_id=f"deployflow.deployment.{name}")
    assert len(events) == 1, events
    return events[0].payload


@task
def fail_last() -> None:
    raise ValueError("the last task of the transaction fails")


def test_a_failed_release_is_undone_by_the_transaction(target_uri, cleanup):
    """The example flow: the last check fails, so the batch deployment is deleted (no server left) and the
    serving deployment is back on the model it served before."""
    cleanup("rb-churn")
    cleanup("rb-churn-batch")
    with get_deploy_client(target_uri) as client:
        before = client.create_deployment("rb-churn", example.model_uri("current"))
    sample = example.sample_customers(20)

    state = example.release(target_uri, example.model_uri("alarmist"), name="rb-churn", return_state=True)

    assert state.is_failed()
    assert "predicts that 100% of the sample churns" in state.message
    with get_deploy_client(target_uri) as client:
        assert "rb-churn-batch" not in [d["name"] for d in client.list_deployments()]
        assert server_processes(target_uri, "rb-churn-batch") == []
        after = client.get_deployment("rb-churn")
        assert after["model_uri"] == before["model_uri"] == example.model_uri("current")
        assert after["state"] == "READY"
        # It answers as the current model does again (the alarmist one says 1.0 for everyone).
        answer = client.predict("rb-churn", sample)["predictions"]
    expected = example.current.predict(_frame(sample))["churn_probability"].tolist()
    assert [row["churn_probability"] for row in _rows(answer)] == pytest.approx(expected)
    # One server for rb-churn: the rolled-forward one was stopped when the old model came back.
    assert [p.pid for p in server_processes(target_uri, "rb-churn")] == [after["pid"]]

    assert rolled_back("rb-churn-batch") == {"action": "created", "undo": "deleted"}
    assert rolled_back("rb-churn") == {"action": "updated", "undo": "restored"}


def test_a_release_that_passes_is_kept(target_uri, cleanup):
    cleanup("rb-keep")
    cleanup("rb-keep-batch")
    with get_deploy_client(target_uri) as client:
        client.create_deployment("rb-keep", example.model_uri("current"))

    state = example.release(target_uri, example.model_uri("steady"), name="rb-keep", return_state=True)

    assert state.is_completed(), state.message
    with get_deploy_client(target_uri) as client:
        assert client.get_deployment("rb-keep")["model_uri"] == example.model_uri("steady")
        assert client.get_deployment("rb-keep-batch")["state"] == "READY"


@flow
def deploy_then_fail(target: Any, name: str, in_transaction: bool) -> None:
    if in_transaction:
        with transaction():
            create_deployment(target, name, model_ref("add_one"), **FAST)
            fail_last()
    else:
        create_deployment(target, name, model_ref("add_one"), **FAST)
        fail_last()


def test_outside_a_transaction_a_step_is_not_undone(target_uri, cleanup):
    cleanup("rb-plain")
    state = deploy_then_fail(target_uri, "rb-plain", False, return_state=True)
    assert state.is_failed()
    with get_deploy_client(target_uri) as client:
        assert client.get_deployment("rb-plain")["state"] == "READY"
    assert len(server_processes(target_uri, "rb-plain")) == 1


def test_a_failed_attempt_rolls_the_transaction_back_at_once_and_later_steps_say_so(target_uri, cleanup):
    """Prefect rolls a transaction back when any attempt of a task in it fails, even one it retries: the
    step before is undone then, and the retried step warns that its work will not be undone."""
    state_dir = target_uri.split("://", 1)[1]
    for name in ("rb-first", "rb-lost"):
        cleanup(name)
    LostAnswerClient.lose_first_answer = {"rb-lost"}
    LostAnswerClient.creates = {}
    retried = create_deployment.with_options(retries=1, retry_delay_seconds=0)

    @flow
    def lost_answer() -> None:
        with transaction():
            create_deployment(target_uri, "rb-first", model_ref("add_one"), **FAST)
            retried(f"lostanswer://{state_dir}", "rb-lost", model_ref("add_one"), **FAST)
            fail_last()

    with registered_target("lostanswer", LostAnswerClient):
        state = lost_answer(return_state=True)
    assert state.is_failed()
    assert LostAnswerClient.creates == {"rb-lost": 1}  # created once, adopted by the retry
    with get_deploy_client(target_uri) as client:
        names = [d["name"] for d in client.list_deployments()]
    assert "rb-first" not in names  # undone when the first attempt of the next step failed
    assert "rb-lost" in names  # the transaction was over: nothing undoes it
    retry_run = [run for run in task_runs_of(state.state_details.flow_run_id, "create_deployment")][-1]
    warnings = [m for level, m in flow_log_records(state.state_details.flow_run_id, retry_run.id) if level == 30]
    assert any("was rolled back already" in m and "will not be undone" in m for m in warnings), warnings


def test_endpoint_steps_are_undone_in_reverse_order(target_uri, cleanup):
    """An endpoint created in the block is deleted before the deployment it routes to; an endpoint whose
    routes the block changed gets its previous routes back."""
    for name in ("rb-blue", "rb-green", "rb-canary"):
        cleanup(name)
    blue_only = [{"deployment": "rb-blue", "traffic": 100}]
    with get_deploy_client(target_uri) as client:
        client.create_deployment("rb-blue", model_ref("add_one"))
        client.create_deployment("rb-green", model_ref("add_one"))
        client.create_endpoint("rb-front", {"routes": blue_only})
    target = DeploymentTarget(target_uri=target_uri)

    @flow
    def switch_then_fail() -> None:
        with transaction():
            update_endpoint(target, "rb-front", {"routes": [{"deployment": "rb-green", "traffic": 100}]}, **FAST)
            # A copy made with with_options keeps the undo (Prefect 3.7's with_options drops on_rollback hooks).
            create_deployment.with_options(retries=0)(target, "rb-canary", model_ref("add_one"), **FAST)
            create_endpoint(target, "rb-canary-front", {"routes": [{"deployment": "rb-canary", "traffic": 100}]},
                            **FAST)
            fail_last()

    try:
        state = switch_then_fail(return_state=True)
        assert state.is_failed()
        with get_deploy_client(target_uri) as client:
            endpoints = [e["name"] for e in client.list_endpoints()]
            assert "rb-front" in endpoints and "rb-canary-front" not in endpoints
            assert [(r["deployment"], r["traffic"]) for r in client.get_endpoint("rb-front")["routes"]] == [
                ("rb-blue", 100)
            ]
            assert "rb-canary" not in [d["name"] for d in client.list_deployments()]
    finally:
        with get_deploy_client(target_uri) as client:
            for endpoint in ("rb-canary-front", "rb-front"):
                client.delete_endpoint(endpoint)


class CountingGets(LostAnswerClient):
    """The local target, counting ``get_deployment`` calls (``countgets:///state/dir``)."""

    gets: ClassVar[int] = 0

    def get_deployment(self, name, endpoint=None):
        CountingGets.gets += 1
        return super().get_deployment(name, endpoint)


def test_only_a_step_in_a_transaction_looks_before_it_changes(target_uri, cleanup):
    state_dir = target_uri.split("://", 1)[1]
    target = f"countgets://{state_dir}"
    cleanup("rb-count-plain")
    cleanup("rb-count-txn")
    CountingGets.lose_first_answer = set()

    @flow
    def plain() -> None:
        create_deployment(target, "rb-count-plain", model_ref("add_one"), **FAST)

    @flow
    def in_block() -> None:
        with transaction():
            create_deployment(target, "rb-count-txn", model_ref("add_one"), **FAST)

    with registered_target("countgets", CountingGets):
        CountingGets.gets = 0
        plain()
        outside = CountingGets.gets
        CountingGets.gets = 0
        in_block()
        inside = CountingGets.gets
    assert inside == outside + 1  # the one look at what was there before


def test_an_update_in_a_failed_block_gets_its_model_and_config_back(target_uri, cleanup):
    cleanup("rb-config")
    with get_deploy_client(target_uri) as client:
        before = client.create_deployment("rb-config", model_ref("add_one"), config={"workers": 1})

    @flow
    def change_then_fail() -> None:
        with transaction():
            update_deployment(target_uri, "rb-config", model_ref("linear"), config={"workers": 2}, **FAST)
            fail_last()

    assert change_then_fail(return_state=True).is_failed()
    with get_deploy_client(target_uri) as client:
        after = client.get_deployment("rb-config")
        assert client.predict("rb-config", {"inputs": [[1.0]]})["predictions"] == [[2.0]]  # add_one again
    assert after["model_uri"] == before["model_uri"] and after["config"]["workers"] == 1
    assert [p.pid for p in server_processes(target_uri, "rb-config")] == [after["pid"]]


def test_a_create_that_adopted_is_left_alone_and_one_that_rolled_forward_goes_back(target_uri, cleanup):
    for name in ("rb-adopted", "rb-forward"):
        cleanup(name)
    with get_deploy_client(target_uri) as client:
        adopted = client.create_deployment("rb-adopted", model_ref("add_one"))
        forward = client.create_deployment("rb-forward", model_ref("add_one"))

    @flow
    def take_over_then_fail() -> dict[str, Any]:
        with transaction():
            first = create_deployment(target_uri, "rb-adopted", model_ref("add_one"), **FAST)
            second = create_deployment(target_uri, "rb-forward", model_ref("linear"), if_exists="update", **FAST)
            fail_last()
        return {"first": first, "second": second}

    assert take_over_then_fail(return_state=True).is_failed()
    with get_deploy_client(target_uri) as client:
        assert client.get_deployment("rb-adopted")["pid"] == adopted["pid"]  # untouched
        assert client.get_deployment("rb-forward")["model_uri"] == forward["model_uri"]
    assert rolled_back("rb-adopted") == {"action": "adopted", "undo": "nothing"}
    assert rolled_back("rb-forward") == {"action": "updated", "undo": "restored"}


@task
def hold_traffic_on(target_uri: str, deployment: str, endpoint: str) -> None:
    """Not a deployflow step: an endpoint made here is not undone, and it keeps ``deployment`` busy."""
    with get_deploy_client(target_uri) as client:
        client.create_endpoint(endpoint, {"routes": [{"deployment": deployment, "traffic": 100}]})


def test_an_undo_that_fails_is_reported_and_the_others_still_run(target_uri, cleanup):
    for name in ("rb-kept-a", "rb-held"):
        cleanup(name)

    @flow
    def held_then_fail() -> None:
        with transaction():
            create_deployment(target_uri, "rb-kept-a", model_ref("add_one"), **FAST)
            create_deployment(target_uri, "rb-held", model_ref("add_one"), **FAST)
            hold_traffic_on(target_uri, "rb-held", "rb-holder")
            fail_last()

    try:
        state = held_then_fail(return_state=True)
        assert state.is_failed()
        with get_deploy_client(target_uri) as client:
            names = [d["name"] for d in client.list_deployments()]
        assert "rb-held" in names  # an endpoint sends it traffic: the target refuses to delete it
        assert "rb-kept-a" not in names  # undone all the same
        failed = read_events("deployflow.deployment.rollback-failed", resource_id="deployflow.deployment.rb-held")
        assert failed and failed[0].payload["error_type"] == "ConflictError"
        errors = [m for level, m in flow_log_records(state.state_details.flow_run_id) if level == 40]
        assert any(m.startswith("Rolling back deployment 'rb-held'") and "failed" in m for m in errors), errors
    finally:
        with get_deploy_client(target_uri) as client:
            client.delete_endpoint("rb-holder")


def test_a_secret_that_no_record_shows_is_not_restored(target_uri, cleanup, caplog):
    cleanup("rb-secret")
    with get_deploy_client(target_uri) as client:
        created = client.create_deployment("rb-secret", model_ref("add_one"))
    note = Transaction()
    note.set(UNDO_KEY, {
        "kind": "deployment", "name": "rb-secret", "target": target_uri, "action": "updated", "keys": ["auth_token"],
        "before": {"exists": True, "record": {"model_uri": created["model_uri"], "config": {"auth_token": "***"}}},
        "timeout": 120,
    })
    with caplog.at_level("WARNING", logger="deployflow.integrations.prefect"):
        undo_step(note)
    assert any("held a secret, which no record shows; it is not restored" in r.getMessage() for r in caplog.records)
    with get_deploy_client(target_uri) as client:
        assert client.get_deployment("rb-secret")["pid"] == created["pid"]  # nothing was changed


class RecordingOptions(LostAnswerClient):
    """The local target, keeping the options each client was built with (``recordopts:///state/dir``)."""

    built: ClassVar[list[dict[str, Any]]] = []

    def __init__(self, target_uri: str, **options: Any) -> None:
        RecordingOptions.built.append(dict(options))
        super().__init__(target_uri, **options)


def test_an_undo_keeps_the_transport_retries_and_ends_by_the_steps_timeout(target_uri, cleanup):
    state_dir = target_uri.split("://", 1)[1]
    cleanup("rb-deadline")
    with get_deploy_client(target_uri) as client:
        first = client.create_deployment("rb-deadline", model_ref("add_one"))
        client.update_deployment("rb-deadline", model_ref("linear"))
    note = {
        "kind": "deployment", "name": "rb-deadline", "target": f"recordopts://{state_dir}", "action": "updated",
        "keys": [], "before": {"exists": True, "record": {"model_uri": first["model_uri"], "config": {}}},
        "timeout": 0,
    }
    txn = Transaction()
    txn.set(UNDO_KEY, note)
    RecordingOptions.built = []
    with registered_target("recordopts", RecordingOptions):
        undo_step(txn)  # no time at all: the restore cannot start a server
    assert RecordingOptions.built == [{}]  # not max_retries=0: a hook has no task retries to rely on
    failed = read_events("deployflow.deployment.rollback-failed", resource_id="deployflow.deployment.rb-deadline")
    assert failed and failed[0].payload["error_type"] == "WaitTimeoutError"
    assert "did not serve by the caller's deadline" in failed[0].payload["reason"]
    with get_deploy_client(target_uri) as client:
        assert client.get_deployment("rb-deadline")["model_uri"] == model_ref("linear")


def test_undoing_twice_or_after_the_deployment_is_gone_is_fine(target_uri, cleanup):
    cleanup("rb-twice")
    with get_deploy_client(target_uri) as client:
        client.create_deployment("rb-twice", model_ref("add_one"))
        first = client.get_deployment("rb-twice")
        client.update_deployment("rb-twice", model_ref("linear"))
    restore = Transaction()
    restore.set(UNDO_KEY, {
        "kind": "deployment", "name": "rb-twice", "target": target_uri, "action": "updated", "keys": [],
        "before": {"exists": True, "record": {"model_uri": first["model_uri"], "flavor": first["flavor"], "config": {}}},
        "timeout": 120,
    })
    undo_step(restore)
    with get_deploy_client(target_uri) as client:
        restored = client.get_deployment("rb-twice")
    assert restored["model_uri"] == first["model_uri"]
    undo_step(restore)  # already back on its previous model: nothing changes
    with get_deploy_client(target_uri) as client:
        assert client.get_deployment("rb-twice")["pid"] == restored["pid"]

    delete = Transaction()
    delete.set(UNDO_KEY, {
        "kind": "deployment", "name": "rb-twice", "target": target_uri, "action": "created", "keys": [],
        "before": {"exists": False, "record": None}, "timeout": 120,
    })
    undo_step(delete)
    undo_step(delete)  # gone already: fine
    with get_deploy_client(target_uri) as client:
        assert "rb-twice" not in [d["name"] for d in client.list_deployments()]
    undo_step(restore)  # restoring what is gone: nothing to do, no error
    assert server_processes(target_uri, "rb-twice") == []


def _frame(sample: dict[str, Any]) -> Any:
    import pandas as pd

    split = sample["dataframe_split"]
    return pd.DataFrame(split["data"], columns=split["columns"])


def _rows(predictions: Any) -> list[dict[str, Any]]:
    import pandas as pd

    return predictions if isinstance(predictions, list) else pd.DataFrame(predictions).to_dict("records")


def test_the_release_example_copied_alone_runs_as_its_docstring_says(prefect_server, tmp_path):
    alone = tmp_path / "somewhere" / "release_in_transaction.py"
    alone.parent.mkdir()
    shutil.copy(EXAMPLES / "release_in_transaction.py", alone)
    workdir = tmp_path / "workdir"
    workdir.mkdir()

    finished = subprocess.run(
        [sys.executable, str(alone), "--model", "alarmist"],
        cwd=workdir, env={**os.environ, "PREFECT_API_URL": prefect_server}, capture_output=True, text=True,
        timeout=300,
    )

    assert finished.returncode == 0, finished.stdout[-3000:] + finished.stderr[-3000:]
    lines = finished.stdout.splitlines()
    assert any(line.startswith("release: failed and rolled back") for line in lines), finished.stdout
    served = [line.strip() for line in lines if line.startswith("  ")]
    assert served == [f"churn: python:{alone.resolve()}:current (READY)"]  # back on the current model
    state = f"local://{workdir / 'prefect-release-output' / 'state'}"
    with get_deploy_client(state) as client:
        assert client.list_deployments() == []  # deleted at the end
    for name in ("churn", "churn-batch"):
        assert server_processes(state, name) == []
