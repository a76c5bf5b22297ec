"""Check strings, their bounds and verdicts, metrics by name or callable, and the split arithmetic."""

from __future__ import annotations

import sys

import pytest

from deployflow import InvalidInputError, MissingExtraError
from deployflow.promotion import parse_check, parse_checks, parse_steps
from deployflow.promotion.checks import metric_function
from deployflow.promotion.measure import quality_metric, row_value, same_answer
from deployflow.promotion.split import same_split, step_split


@pytest.mark.parametrize(
    ("text", "champion", "bound"),
    [
        ("accuracy>=0.9", None, 0.9),
        ("accuracy >= champion - 0.01", 0.8, 0.79),
        ("rmse<=champion*1.05", 2.0, 2.1),
        ("rmse<=champion+10%", -2.0, -1.8),
        ("auc>champion", 0.7, 0.7),
        ("online:p99_ms<250", None, 250.0),
        ("error_rate<=1e-3", None, 0.001),
    ],
)
def test_bounds(text, champion, bound):
    check = parse_check(text)
    assert check.bound(champion) == pytest.approx(bound)
    assert str(check) == text.replace(" ", "")


def test_verdicts_follow_the_direction_of_the_operator():
    higher, lower = parse_check("accuracy>=champion-0.01"), parse_check("rmse<=champion*1.1")
    assert higher.higher_is_better and not lower.higher_is_better
    assert higher.judge(0.795, 0.8)["verdict"] == "pass"
    assert higher.judge(0.78, 0.8)["verdict"] == "fail"
    assert lower.judge(1.09, 1.0)["verdict"] == "pass"
    assert lower.judge(1.2, 1.0)["verdict"] == "fail"
    # No value, or no champion value for a relative check: never a pass.
    assert higher.judge(None, 0.8)["verdict"] == "inconclusive"
    assert higher.judge(0.9, None)["verdict"] == "inconclusive"
    assert parse_check("accuracy>0.5").judge(float("nan"))["verdict"] == "inconclusive"
    judged = higher.judge(0.81, 0.8)
    assert judged == {"check": "accuracy>=champion-0.01", "metric": "accuracy", "value": 0.81, "bound": 0.79,
                      "champion": 0.8, "verdict": "pass"}


def test_stages():
    assert parse_check("offline:accuracy>=1").applies_to("offline")
    assert not parse_check("offline:accuracy>=1").applies_to("online")
    assert parse_check("accuracy>=1").applies_to("online")
    assert [str(c) for c in parse_checks("f1>=0.5")] == ["f1>=0.5"]


@pytest.mark.parametrize(
    "text", ["accuracy", "accuracy=0.9", "accuracy>=", ">=0.9", "accuracy>=champion*5%", "accuracy>=best", "soon:f1>0", 7]
)
def test_unreadable_checks_are_refused(text):
    with pytest.raises(InvalidInputError):
        parse_check(text)


def test_metrics_by_name_and_by_callable():
    labels, answers = [0, 1, 1, 0], [0, 1, 0, 0]
    assert quality_metric("accuracy", {}, labels, answers) == 0.75
    assert quality_metric("rmse", {}, [1.0, 2.0], [1.0, 4.0]) == pytest.approx(2**0.5)
    assert quality_metric("hits", {"hits": lambda y, p: float(sum(a == b for a, b in zip(y, p)))}, labels, answers) == 3.0
    assert quality_metric("accuracy", {}, [], []) is None
    # AUC on one class cannot be computed: no value (so inconclusive), not an exception.
    assert quality_metric("auc", {}, [1, 1], [0.2, 0.9]) is None
    with pytest.raises(InvalidInputError, match="Unknown metric 'nonsense'"):
        metric_function("nonsense", {})
    with pytest.raises(InvalidInputError, match="callable"):
        metric_function("mine", {"mine": 3})


def test_named_metrics_without_scikit_learn_name_the_package(monkeypatch):
    monkeypatch.setitem(sys.modules, "sklearn.metrics", None)
    with pytest.raises(MissingExtraError, match="scikit-learn"):
        metric_function("accuracy", {})
    # A callable needs no scikit-learn.
    assert metric_function("mine", {"mine": len}) is len


def test_steps():
    assert parse_steps("10, 50,100") == [10.0, 50.0, 100.0]
    assert parse_steps([100]) == [100.0]
    for bad in ([], [10, 10, 100], [50, 120], [0, 100], "x", [10, 90]):
        with pytest.raises(InvalidInputError):
            parse_steps(bad)


def test_step_splits_share_the_rest_in_the_old_proportions():
    assert step_split({"a": 100.0}, "b", 10) == {"a": 90.0, "b": 10.0}
    assert step_split({"a": 75.0, "c": 25.0, "b": 0.0}, "b", 20) == {"a": 60.0, "c": 20.0, "b": 20.0}
    assert step_split({"a": 0.0, "c": 0.0, "b": 100.0}, "b", 50) == {"a": 25.0, "c": 25.0, "b": 50.0}
    assert step_split({}, "b", 100) == {"b": 100.0}
    assert same_split({"a": 90.0, "b": 10.0}, {"a": 90.4, "b": 9.6, "c": 0.0})
    assert not same_split({"a": 90.0, "b": 10.0}, {"a": 100.0})


def test_answers_compare_as_rows():
    assert row_value([[1.0]]) == 1.0 and row_value({"p": 0.5, "q": 1}) == (0.5, 1)
    assert same_answer(1, 1.0000000001) and not same_answer(1, 2)
    assert same_answer((1.0, "a"), (1, "a")) and not same_answer((1,), (1, 2))


def test_records_live_beside_the_local_state_or_in_deployflow_home(tmp_path, monkeypatch):
    from deployflow.promotion import default_record_path

    class Local:
        home = tmp_path / "state"

    class Remote:
        target_uri = "databricks"

    Local.home.mkdir()
    assert default_record_path(Local(), "churn", "v2") == tmp_path / "state" / "promotions" / "churn--v2.json"
    monkeypatch.setenv("DEPLOYFLOW_HOME", str(tmp_path / "home"))
    assert default_record_path(Remote(), "a/b", "c d") == tmp_path / "home" / "promotions" / "a_b--c_d.json"
