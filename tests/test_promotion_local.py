"""Promotion on the ``local`` target: real model servers behind a real router on 127.0.0.1.

A better challenger is promoted through every step; a worse or slower one never gets traffic; one that
breaks under traffic is rolled back at the first step with every request back on the champion; too
few answers is inconclusive under each policy; a finished promotion is not run again.
"""

from __future__ import annotations

import json

import pytest

import deployflow
from deployflow import InvalidInputError, NotSupportedError
from deployflow.promotion import (
    PromotionInconclusiveError,
    PromotionRejectedError,
    PromotionRolledBackError,
    default_record_path,
    load_record,
)
from support.local_models import local_client, local_home
from test_promotion_support import golden_frame, who_answers, write_models

FAST = {"bake_seconds": 0.3, "max_rate": 100, "min_samples": 10}
CHECKS = ["accuracy>=0.85", "accuracy>=champion-0.01", "error_rate<=0", "agreement>=0.5"]


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    with local_home(tmp_path_factory.mktemp("promotion-local")) as directory:
        yield directory


@pytest.fixture(scope="module")
def client(home):
    with local_client(home) as local:
        yield local


@pytest.fixture(scope="module")
def models(client, home):
    uris = write_models(home)
    for name, uri in uris.items():
        client.create_deployment(name, uri, config={"wait": False})
    for name in uris:
        client.wait_for_deployment(name, timeout=90, poll_interval=0.05)
    return uris


def endpoint_with_champion(client, name: str) -> str:
    client.create_endpoint(name, config={"routes": [{"deployment": "champion", "traffic": 100}]})
    return name


def test_a_better_challenger_is_promoted_through_every_step(client, models):
    endpoint = endpoint_with_champion(client, "ep-better")
    seen_splits = []
    report = deployflow.promote(
        client, endpoint, "better", golden=golden_frame(), checks=CHECKS, steps=[10, 50, 100],
        on_step=lambda step, _: seen_splits.append(client.get_traffic_split(endpoint)), **FAST,
    )
    assert report.outcome == "promoted"
    assert report["champion"] == "champion"
    assert [step["weight"] for step in report.steps] == [10, 50, 100]
    assert seen_splits == [
        {"champion": 90.0, "better": 10.0}, {"champion": 50.0, "better": 50.0}, {"champion": 0.0, "better": 100.0}
    ]
    assert all(step["verdict"] == "pass" and step["samples"] >= 10 for step in report.steps)
    offline = report["offline"]
    assert offline["verdict"] == "pass"
    assert offline["challenger"]["accuracy"] == 1.0 and offline["champion"]["accuracy"] == 0.9
    assert {c["check"]: c["verdict"] for c in offline["checks"]} == {check: "pass" for check in CHECKS}
    # Every step judged every check on the answers that came back through the router.
    assert all(len(step["checks"]) == len(CHECKS) for step in report.steps)
    assert who_answers(client, endpoint) == {"challenger"}
    # The report is JSON as it is, and the same report is kept beside the local state.
    assert json.loads(json.dumps(report)) == dict(report)
    assert load_record(default_record_path(client, endpoint, "better")) == report
    # Running it again finds it finished: nothing is scored or moved again.
    again = deployflow.promote(client, endpoint, "better", golden=golden_frame(), checks=CHECKS, **FAST)
    assert again == report


def test_a_worse_challenger_never_gets_traffic(client, models):
    endpoint = endpoint_with_champion(client, "ep-worse")
    with pytest.raises(PromotionRejectedError) as caught:
        deployflow.promote(client, endpoint, "worse", golden=golden_frame(), checks=CHECKS, **FAST)
    report = caught.value.report
    assert report.outcome == "rejected" and report.steps == []
    failed = {c["check"] for c in report["offline"]["checks"] if c["verdict"] == "fail"}
    assert failed == {"accuracy>=0.85", "accuracy>=champion-0.01"}
    assert report["offline"]["challenger"]["accuracy"] == 0.7
    assert client.get_traffic_split(endpoint) == {"champion": 100.0}
    # A rejected challenger stays rejected when asked again, without being scored again.
    with pytest.raises(PromotionRejectedError):
        deployflow.promote(client, endpoint, "worse", golden=golden_frame(), checks=CHECKS, **FAST)


def test_a_challenger_behind_a_slow_model_fails_the_latency_check(client, models):
    endpoint = endpoint_with_champion(client, "ep-slow")
    with pytest.raises(PromotionRejectedError, match="p99_ms") as caught:
        deployflow.promote(client, endpoint, "slow", golden=golden_frame(), checks=["accuracy>=0.9", "p99_ms<=20"], **FAST)
    report = caught.value.report
    verdicts = {c["check"]: c["verdict"] for c in report["offline"]["checks"]}
    assert verdicts == {"accuracy>=0.9": "pass", "p99_ms<=20": "fail"}
    assert report["offline"]["challenger"]["p50_ms"] >= 30
    assert client.get_traffic_split(endpoint) == {"champion": 100.0}


def test_a_challenger_that_breaks_under_traffic_is_rolled_back_at_the_first_step(client, models):
    endpoint = endpoint_with_champion(client, "ep-breaks")
    with pytest.raises(PromotionRolledBackError) as caught:
        deployflow.promote(
            client, endpoint, "breaks_under_load", golden=golden_frame(), checks=CHECKS, steps=[50, 100],
            bake_seconds=0.4, max_rate=100, min_samples=10,
        )
    report = caught.value.report
    assert report.outcome == "rolled_back"
    assert report["offline"]["verdict"] == "pass"
    [step] = report.steps
    assert step["weight"] == 50 and step["verdict"] == "fail"
    assert step["metrics"]["error_rate"] > 0 and step["errors"]
    assert {c["check"]: c["verdict"] for c in step["checks"]}["error_rate<=0"] == "fail"
    assert report["split"] == report["original_split"] == {"champion": 100.0}
    assert client.get_traffic_split(endpoint) == {"champion": 100.0}
    assert who_answers(client, endpoint, 30) == {"champion"}
    # The challenger was kept for inspection (remove_challenger=False).
    assert client.get_deployment("breaks_under_load")["name"] == "breaks_under_load"


@pytest.mark.parametrize(
    ("policy", "error", "outcome"),
    [("pause", None, "paused"), ("fail", PromotionInconclusiveError, "inconclusive"), ("rollback", PromotionRolledBackError, "rolled_back")],
)
def test_too_few_answers_is_inconclusive_under_each_policy(client, models, policy, error, outcome):
    endpoint = endpoint_with_champion(client, f"ep-few-{policy}")
    arguments = dict(golden=golden_frame(), checks=CHECKS, steps=[25, 100], bake_seconds=0.2, max_rate=50,
                     min_samples=1000, on_inconclusive=policy)
    if error is None:
        report = deployflow.promote(client, endpoint, "better", **arguments)
    else:
        with pytest.raises(error) as caught:
            deployflow.promote(client, endpoint, "better", **arguments)
        report = caught.value.report
    assert report.outcome == outcome
    [step] = report.steps
    assert step["verdict"] == "inconclusive" and 0 < step["samples"] < 1000
    assert "min_samples=1000" in step["reason"]
    # Every check passed on the answers there were: still not a pass.
    assert {c["verdict"] for c in step["checks"]} == {"pass"}
    assert client.get_traffic_split(endpoint) == {"champion": 100.0}
    if policy == "rollback":
        return
    # Paused or failed: the next run continues with the same step and, with enough answers, promotes.
    resumed = deployflow.promote(client, endpoint, "better", **{**arguments, "min_samples": 5})
    assert resumed.outcome == "promoted" and resumed["resumed"] == 1
    assert [(s["weight"], s["verdict"]) for s in resumed.steps] == [(25, "inconclusive"), (25, "pass"), (100, "pass")]


def test_a_human_gate_before_full_traffic(client, models):
    endpoint = endpoint_with_champion(client, "ep-gate")
    asked = []
    report = deployflow.promote(
        client, endpoint, "better", golden=golden_frame(), checks=CHECKS, steps=[30, 100],
        approve=lambda plan, _: asked.append(plan) or False, **FAST,
    )
    assert report.outcome == "paused" and "not approved" in report["reason"]
    assert asked == [{"weight": 100, "split": {"champion": 0.0, "better": 100.0}}]
    assert client.get_traffic_split(endpoint) == {"champion": 70.0, "better": 30.0}
    report = deployflow.promote(
        client, endpoint, "better", golden=golden_frame(), checks=CHECKS, steps=[30, 100], approve=lambda *_: True, **FAST
    )
    assert report.outcome == "promoted" and [s["weight"] for s in report.steps] == [30, 100]


def test_a_split_changed_by_someone_else_is_not_overwritten(client, models):
    endpoint = endpoint_with_champion(client, "ep-changed")
    arguments = dict(golden=golden_frame(), checks=CHECKS, steps=[30, 100], approve=lambda *_: False, **FAST)
    assert deployflow.promote(client, endpoint, "better", **arguments).outcome == "paused"
    client.set_traffic_split(endpoint, {"champion": 20, "better": 80})
    with pytest.raises(deployflow.ConflictError, match="restart=True"):
        deployflow.promote(client, endpoint, "better", **arguments)
    assert client.get_traffic_split(endpoint) == {"champion": 20.0, "better": 80.0}
    client.set_traffic_split(endpoint, {"champion": 100})
    report = deployflow.promote(client, endpoint, "better", **{**arguments, "approve": None, "restart": True})
    assert report.outcome == "promoted" and report["resumed"] == 0


def test_removing_the_challenger_after_a_rollback(client, models, home):
    uri = write_models(home)["worse"]
    client.create_deployment("worse-doomed", uri)
    endpoint = endpoint_with_champion(client, "ep-remove")
    with pytest.raises(PromotionRolledBackError):
        deployflow.promote(
            client, endpoint, "worse-doomed", golden=golden_frame(), checks=["online:accuracy>=0.95"],
            steps=[50, 100], remove_challenger=True, **FAST,
        )
    assert client.get_traffic_split(endpoint) == {"champion": 100.0}
    assert "worse-doomed" not in {d["name"] for d in client.list_deployments()}


def test_bad_arguments_are_refused_before_anything_moves(client, models):
    endpoint = endpoint_with_champion(client, "ep-args")
    golden = golden_frame()
    cases = [
        dict(checks=["accuracy=>0.9"]),
        dict(checks=["offline:nonsense>=1"]),
        dict(checks=["later:accuracy>=1"]),
        dict(steps=[50, 10, 100]),
        dict(steps=[10, 50]),
        dict(steps="10,abc,100"),
        dict(bake_seconds=-1),
        dict(min_samples=0),
        dict(max_rate="fast"),
        dict(on_inconclusive="shrug"),
        dict(label="missing"),
        dict(champion="better"),
        dict(champion="nobody"),
    ]
    for case in cases:
        with pytest.raises(InvalidInputError, match="."):
            print(case)
            deployflow.promote(client, endpoint, "better", golden=golden, **{"checks": CHECKS, **FAST, **case})
    client.create_endpoint("ep-alone", config={"routes": [{"deployment": "better", "traffic": 100}]})
    with pytest.raises(InvalidInputError, match="no member but the challenger"):
        deployflow.promote(client, "ep-alone", "better", golden=golden, checks=CHECKS, **FAST)
    with pytest.raises(NotSupportedError, match="mirror"):
        deployflow.promote(client, endpoint, "better", golden=golden, checks=CHECKS, mirror=True)
    assert client.get_traffic_split(endpoint) == {"champion": 100.0}


def test_a_target_without_split_methods_says_which_methods_it_lacks(client):
    class NoSplit(type(client)):
        get_traffic_split = None

    with NoSplit(client.target_uri) as plain, pytest.raises(NotSupportedError, match="get_traffic_split") as caught:
        deployflow.promote(plain, "ep", "better", golden=golden_frame())
    assert "set_traffic_split" not in str(caught.value).split("lacks")[1].split(".")[0]


def test_a_step_that_would_end_after_the_timeout_is_not_started(client, models):
    endpoint = endpoint_with_champion(client, "ep-timeout")
    report = deployflow.promote(
        client, endpoint, "better", golden=golden_frame(), checks=CHECKS, steps=[30, 100],
        bake_seconds=30, timeout=2, max_rate=100, min_samples=5,
    )
    assert report.outcome == "paused" and "no time left for the step to 30%" in report["reason"]
    assert report.steps == [] and report["offline"]["verdict"] == "pass"
    assert client.get_traffic_split(endpoint) == {"champion": 100.0}


def test_an_offline_gate_without_a_value_pauses_before_any_traffic(client, models):
    endpoint = endpoint_with_champion(client, "ep-no-value")
    # Only rows labelled 0: AUC has no value on them, so the gate can neither pass nor fail.
    golden = golden_frame().iloc[:10]
    report = deployflow.promote(client, endpoint, "better", golden=golden, checks=["auc>=0.5"], **FAST)
    assert report.outcome == "paused" and "no value for auc>=0.5" in report["reason"]
    assert report["offline"]["verdict"] == "inconclusive" and report.steps == []
    assert client.get_traffic_split(endpoint) == {"champion": 100.0}
