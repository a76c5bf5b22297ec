"""Checks: what a challenger must reach, written as short strings, and the metrics they name.

A check is ``[stage:]metric OP bound``:

* ``metric``: a quality metric computed from the labels and the predictions (``accuracy``,
  ``precision``, ``recall``, ``f1``, ``auc``, ``rmse``, ``mse``, ``mae``, ``r2``, ``log_loss``: with
  scikit-learn, or a callable ``(y_true, y_pred) -> float`` given in ``metrics=``), or a service metric
  deployflow measures itself: ``error_rate`` (failed requests / requests), ``p50_ms`` and ``p99_ms``
  (latency in milliseconds) and ``agreement`` (the share of rows on which the answer equals the
  champion's answer for the same row).
* ``OP``: ``>=``, ``>``, ``<=`` or ``<``. ``>`` and ``>=`` mean higher is better, ``<`` and ``<=`` lower
  is better.
* ``bound``: a number (an absolute threshold), or a bound relative to the champion's value of the same
  metric: ``champion``, ``champion-0.01`` / ``champion+5`` (an absolute change), ``champion*1.1``
  (a factor), ``champion-1%`` / ``champion+10%`` (a relative change: ``champion +/- |champion| * 1%``).
* ``stage``: ``offline:`` (only the gate before any traffic), ``online:`` (only the traffic steps), or
  none (both).

>>> parse_check("accuracy>=champion-0.01")
Check(metric='accuracy', op='>=', value=-0.01, relative_to='champion', kind='add', stage=None)
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from ..errors import InvalidInputError

__all__ = ["Check", "parse_check", "parse_checks", "SERVICE_METRICS", "QUALITY_METRICS", "metric_function"]

#: Metrics measured from the requests themselves, not from the labels.
SERVICE_METRICS = ("error_rate", "p50_ms", "p99_ms", "agreement")
#: Quality metrics known by name: the scikit-learn function each is computed with.
QUALITY_METRICS = {
    "accuracy": "accuracy_score",
    "precision": "precision_score",
    "recall": "recall_score",
    "f1": "f1_score",
    "auc": "roc_auc_score",
    "roc_auc": "roc_auc_score",
    "rmse": "mean_squared_error",
    "mse": "mean_squared_error",
    "mae": "mean_absolute_error",
    "r2": "r2_score",
    "log_loss": "log_loss",
}
STAGES = ("offline", "online")
_OPERATORS = {
    ">=": lambda a, b: a >= b,
    ">": lambda a, b: a > b,
    "<=": lambda a, b: a <= b,
    "<": lambda a, b: a < b,
}
_NUMBER = r"[0-9]+(?:\.[0-9]*)?(?:[eE][-+]?[0-9]+)?|\.[0-9]+(?:[eE][-+]?[0-9]+)?"
_PATTERN = re.compile(
    r"^\s*(?:(?P<stage>[a-z]+)\s*:)?\s*(?P<metric>[A-Za-z_][A-Za-z0-9_]*)\s*(?P<op>>=|<=|>|<)\s*"
    r"(?:(?P<absolute>[-+]?(?:" + _NUMBER + r"))"
    r"|(?P<champion>champion)\s*(?:(?P<sign>[-+*])\s*(?P<amount>" + _NUMBER + r")\s*(?P<percent>%)?)?)\s*$"
)


@dataclass(frozen=True)
class Check:
    """One parsed check. ``relative_to`` is ``None`` for an absolute threshold (``value``), else
    ``"champion"`` with ``kind`` ``"add"`` (champion + value), ``"times"`` (champion * value) or
    ``"percent"`` (champion + |champion| * value / 100)."""

    metric: str
    op: str
    value: float
    relative_to: str | None = None
    kind: str = "absolute"
    stage: str | None = None
    text: str = ""

    def __repr__(self) -> str:
        return (
            f"Check(metric={self.metric!r}, op={self.op!r}, value={self.value!r}, "
            f"relative_to={self.relative_to!r}, kind={self.kind!r}, stage={self.stage!r})"
        )

    def __str__(self) -> str:
        return self.text or self.metric

    @property
    def higher_is_better(self) -> bool:
        return self.op in (">=", ">")

    def applies_to(self, stage: str) -> bool:
        return self.stage is None or self.stage == stage

    def bound(self, champion_value: float | None) -> float | None:
        """The threshold this check compares against, or ``None`` when it needs a champion value that
        is missing."""
        if self.relative_to is None:
            return self.value
        if champion_value is None or not math.isfinite(champion_value):
            return None
        if self.kind == "times":
            return champion_value * self.value
        if self.kind == "percent":
            return champion_value + abs(champion_value) * self.value / 100.0
        return champion_value + self.value

    def judge(self, value: float | None, champion_value: float | None = None) -> dict[str, Any]:
        """``{"check", "metric", "value", "bound", "verdict"}``: the verdict is ``"pass"``, ``"fail"``,
        or ``"inconclusive"`` when the value (or the champion's, for a relative check) is missing."""
        bound = self.bound(champion_value)
        if value is None or not math.isfinite(value) or bound is None:
            verdict = "inconclusive"
        else:
            verdict = "pass" if _OPERATORS[self.op](value, bound) else "fail"
        return {
            "check": str(self),
            "metric": self.metric,
            "value": _rounded(value),
            "bound": _rounded(bound),
            "champion": _rounded(champion_value) if self.relative_to else None,
            "verdict": verdict,
        }


def _rounded(value: float | None) -> float | None:
    if value is None or not math.isfinite(value):
        return None
    return round(float(value), 6)


def parse_check(text: Any) -> Check:
    """Parse one check such as ``"accuracy>=0.9"`` or ``"online:p99_ms<=champion*1.5"``; a
    :class:`Check` is returned as it is. Anything else raises
    :class:`~deployflow.errors.InvalidInputError` naming the check."""
    if isinstance(text, Check):
        return text
    if not isinstance(text, str):
        raise InvalidInputError(f"A check must be a string such as 'accuracy>=0.9', got {text!r}")
    match = _PATTERN.match(text)
    if match is None:
        raise InvalidInputError(
            f"Cannot read the check {text!r}: write metric, operator (>=, >, <=, <) and a number or a bound "
            f"on the champion, e.g. 'accuracy>=0.9', 'rmse<=champion*1.05', 'online:p99_ms<=200'"
        )
    stage = match["stage"]
    if stage is not None and stage not in STAGES:
        raise InvalidInputError(f"The check {text!r} names stage {stage!r}; use 'offline:' or 'online:'")
    metric, op = match["metric"], match["op"]
    compact = re.sub(r"\s+", "", text)
    if match["absolute"] is not None:
        return Check(metric, op, float(match["absolute"]), stage=stage, text=compact)
    sign, amount = match["sign"], match["amount"]
    if sign is None:
        return Check(metric, op, 0.0, "champion", "add", stage, compact)
    number = float(amount)
    if sign == "*":
        if match["percent"]:
            raise InvalidInputError(f"The check {text!r} multiplies by a percentage; write champion*1.1 or champion+10%")
        return Check(metric, op, number, "champion", "times", stage, compact)
    signed = number if sign == "+" else -number
    return Check(metric, op, signed, "champion", "percent" if match["percent"] else "add", stage, compact)


def parse_checks(checks: Iterable[Any] | str | None) -> list[Check]:
    """Parse a list of checks (a single string is one check)."""
    if checks is None:
        return []
    if isinstance(checks, (str, Check)):
        checks = [checks]
    if not isinstance(checks, Iterable):
        raise InvalidInputError(f"checks must be a list of strings such as 'accuracy>=0.9', got {checks!r}")
    return [parse_check(check) for check in checks]


def metric_function(name: str, custom: Mapping[str, Callable[..., float]]) -> Callable[[Any, Any], float]:
    """The function computing quality metric ``name``: a callable from ``custom``, else scikit-learn's
    (imported now; without scikit-learn a :class:`~deployflow.errors.MissingExtraError` names the pip
    command). An unknown name raises :class:`~deployflow.errors.InvalidInputError`."""
    if name in custom:
        function = custom[name]
        if not callable(function):
            raise InvalidInputError(f"metrics[{name!r}] must be a callable (y_true, y_pred) -> float")
        return function
    if name not in QUALITY_METRICS:
        known = ", ".join([*QUALITY_METRICS, *SERVICE_METRICS])
        raise InvalidInputError(f"Unknown metric {name!r}: use one of {known}, or pass metrics={{{name!r}: callable}}")
    from .._extras import require

    sklearn_metrics = require(
        "sklearn.metrics", None, f"the metric {name!r}", package="scikit-learn"
    )
    function = getattr(sklearn_metrics, QUALITY_METRICS[name])
    if name == "rmse":
        return lambda y_true, y_pred: math.sqrt(function(y_true, y_pred))
    if name in ("precision", "recall", "f1"):
        return lambda y_true, y_pred: function(y_true, y_pred, average="macro", zero_division=0)
    return function
