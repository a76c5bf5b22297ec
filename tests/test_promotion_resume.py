"""A promotion killed mid-ramp (SIGKILL) resumes from the endpoint's split and its record: the steps
that passed are not run again and no second ramp starts."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

import deployflow
from deployflow.promotion import default_record_path, load_record
from support.local_models import local_client, local_home
from test_promotion_support import golden_frame, who_answers, write_models

CHECKS = ["accuracy>=champion-0.01", "error_rate<=0"]

SCRIPT = """
import sys
import deployflow
deployflow.promote(
    deployflow.get_deploy_client(sys.argv[1]), "ramp", "better", golden=sys.argv[2],
    checks={checks!r}, steps=[20, 60, 100], bake_seconds=30, max_rate=50, min_samples=5,
)
"""


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    with local_home(tmp_path_factory.mktemp("promotion-resume")) as directory:
        yield directory


@pytest.fixture(scope="module")
def client(home):
    with local_client(home) as local:
        yield local


def wait_for(predicate, what: str, seconds: float = 60.0):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


def test_a_killed_promotion_resumes_without_a_second_ramp(client, home, tmp_path):
    uris = write_models(home)
    client.create_deployment("champion", uris["champion"])
    client.create_deployment("better", uris["better"])
    client.create_endpoint("ramp", config={"routes": [{"deployment": "champion", "traffic": 100}]})
    golden = tmp_path / "golden.csv"
    golden_frame().to_csv(golden, index=False)
    record = default_record_path(client, "ramp", "better")

    # The first run bakes each step for 30 s: it is killed while baking the first step.
    process = subprocess.Popen(
        [sys.executable, "-c", SCRIPT.format(checks=CHECKS), client.target_uri, str(golden)],
        env={**os.environ, "DEPLOYFLOW_HOME": os.environ["DEPLOYFLOW_HOME"]},
    )
    try:
        wait_for(lambda: client.get_traffic_split("ramp") == {"champion": 80.0, "better": 20.0}, "the first step's split")
        before = wait_for(lambda: (found := load_record(record)) and found["pending"] and found, "the record of step 20")
        process.send_signal(signal.SIGKILL)
        process.wait(10)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(10)
    assert before["outcome"] == "running" and before["pending"]["weight"] == 20 and before["steps"] == []
    assert before["offline"]["verdict"] == "pass"

    # The rerun finds the first step's split in force: it bakes it without setting it again, then goes on.
    splits_seen = []
    report = deployflow.promote(
        client, "ramp", "better", golden=str(golden), checks=CHECKS, steps=[20, 60, 100],
        bake_seconds=0.3, max_rate=100, min_samples=5,
        on_step=lambda step, _: splits_seen.append((step["weight"], client.get_traffic_split("ramp"))),
    )
    assert report.outcome == "promoted" and report["resumed"] == 1
    assert report["started"] == before["started"] and report["offline"] == before["offline"]
    assert [(step["weight"], step["verdict"]) for step in report.steps] == [(20, "pass"), (60, "pass"), (100, "pass")]
    assert splits_seen == [
        (20, {"champion": 80.0, "better": 20.0}), (60, {"champion": 40.0, "better": 60.0}), (100, {"champion": 0.0, "better": 100.0})
    ]
    assert who_answers(client, "ramp") == {"challenger"}

    # A third run finds it finished and changes nothing.
    again = deployflow.promote(client, "ramp", "better", golden=str(golden), checks=CHECKS, steps=[20, 60, 100])
    assert again == report


def test_a_report_passed_back_in_resumes_without_the_file(client, home, tmp_path):
    uris = write_models(home)
    for name in ("champion", "better"):
        if name not in {d["name"] for d in client.list_deployments()}:
            client.create_deployment(name, uris[name])
    client.create_endpoint("handed", config={"routes": [{"deployment": "champion", "traffic": 100}]})
    arguments = dict(golden=golden_frame(), checks=CHECKS, steps=[40, 100], bake_seconds=0.3, max_rate=100, min_samples=5)
    first = deployflow.promote(client, "handed", "better", record_path=tmp_path / "a.json", approve=lambda *_: False, **arguments)
    assert first.outcome == "paused"
    # Another machine: a different record file, the report handed over (an XCom, a Prefect result).
    report = deployflow.promote(client, "handed", "better", record_path=tmp_path / "b.json", resume_from=dict(first), **arguments)
    assert report.outcome == "promoted" and report["resumed"] == 1
    assert [step["weight"] for step in report.steps] == [40, 100]
    assert load_record(tmp_path / "b.json") == report


def test_a_cancelled_promotion_stops_at_once_and_the_next_run_resumes(client, home):
    import threading

    from deployflow.promotion import PromotionInterruptedError

    uris = write_models(home)
    for name in ("champion", "better"):
        if name not in {d["name"] for d in client.list_deployments()}:
            client.create_deployment(name, uris[name])
    client.create_endpoint("stopped", config={"routes": [{"deployment": "champion", "traffic": 100}]})
    cancel = threading.Event()
    arguments = dict(golden=golden_frame(), checks=CHECKS, steps=[30, 100], max_rate=50, min_samples=5)
    # The first step's split is set and its 60 s bake begins; a second later it is cut short from outside.
    timer = threading.Timer(1.0, cancel.set)
    timer.start()
    try:
        with pytest.raises(PromotionInterruptedError) as caught:
            deployflow.promote(client, "stopped", "better", bake_seconds=60, cancel=cancel, **arguments)
    finally:
        timer.cancel()
    interrupted = caught.value.report
    assert caught.value.retryable and interrupted.outcome == "running"
    assert interrupted.steps == [] and interrupted["pending"]["weight"] == 30  # the step was never judged
    assert client.get_traffic_split("stopped") == {"champion": 70.0, "better": 30.0}
    report = deployflow.promote(client, "stopped", "better", bake_seconds=0.3, **arguments)
    assert report.outcome == "promoted" and [s["weight"] for s in report.steps] == [30, 100]


def test_a_second_promotion_of_the_same_endpoint_is_refused_while_one_runs(client, home, tmp_path):
    import threading

    from deployflow.errors import ConflictError
    from deployflow.promotion import PromotionInterruptedError

    uris = write_models(home)
    for name in ("champion", "better"):
        if name not in {d["name"] for d in client.list_deployments()}:
            client.create_deployment(name, uris[name])
    client.create_endpoint("contested", config={"routes": [{"deployment": "champion", "traffic": 100}]})
    arguments = dict(golden=golden_frame(), checks=CHECKS, steps=[30, 100], max_rate=50, min_samples=5)
    cancel = threading.Event()
    outcome: list[BaseException] = []

    def first() -> None:
        try:
            deployflow.promote(client, "contested", "better", bake_seconds=60, cancel=cancel, **arguments)
        except BaseException as exc:  # noqa: BLE001 - handed to the test thread
            outcome.append(exc)

    runner = threading.Thread(target=first)
    runner.start()
    try:
        wait_for(lambda: client.get_traffic_split("contested") == {"champion": 70.0, "better": 30.0}, "the first step")
        # Another run, even with its own record file, must not move the split the first one is baking.
        with pytest.raises(ConflictError, match="Another promotion of endpoint 'contested' is running"):
            deployflow.promote(client, "contested", "better", record_path=tmp_path / "other.json", bake_seconds=0.3,
                               **arguments)
        assert client.get_traffic_split("contested") == {"champion": 70.0, "better": 30.0}
    finally:
        cancel.set()
        runner.join(30)
    assert len(outcome) == 1 and isinstance(outcome[0], PromotionInterruptedError)
    # Once the first run ended, the lock is free: the next run resumes and finishes.
    report = deployflow.promote(client, "contested", "better", bake_seconds=0.3, **arguments)
    assert report.outcome == "promoted"
