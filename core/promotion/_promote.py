"""`promote`: the offline gate, the traffic steps, the outcome, and resuming an interrupted run."""

from __future__ import annotations

import contextlib
import datetime as _datetime
import os
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

from ..errors import ConflictError, DeploymentError, InvalidInputError, NotSupportedError
from ..orchestration import step_deadline
from ..redaction import get_logger, redact
from ..retry import as_bool, as_int, as_number
from . import split as splits
from .checks import metric_function, parse_checks
from .measure import Golden, Scored, load_golden, measure, quality_names, score_offline, send_traffic
from .report import (
    RECORD_VERSION,
    PromotionInconclusiveError,
    PromotionInterruptedError,
    PromotionRejectedError,
    PromotionReport,
    PromotionRolledBackError,
    default_record_path,
    load_record,
    safe_name,
    save_record,
)

__all__ = ["promote", "ON_INCONCLUSIVE", "DEFAULT_STEPS"]

logger = get_logger(__name__)

ON_INCONCLUSIVE = ("pause", "rollback", "fail")
DEFAULT_STEPS = (10, 50, 100)


def promote(
    client: Any,
    endpoint: str,
    challenger: str,
    *,
    golden: Any,
    checks: Iterable[Any] | str = (),
    champion: str | None = None,
    label: str = "label",
    metrics: Mapping[str, Callable[[Any, Any], float]] | None = None,
    steps: Iterable[Any] | str = DEFAULT_STEPS,
    bake_seconds: Any = 60.0,
    min_samples: Any = 20,
    max_rate: Any = 20.0,
    rows_per_request: Any = 1,
    on_inconclusive: str = "pause",
    remove_challenger: Any = False,
    mirror: Any = False,
    timeout: Any = None,
    record_path: str | os.PathLike[str] | None = None,
    resume_from: Mapping[str, Any] | None = None,
    restart: Any = False,
    approve: Callable[[dict[str, Any], PromotionReport], bool] | None = None,
    on_step: Callable[[dict[str, Any], PromotionReport], None] | None = None,
    cancel: threading.Event | None = None,
) -> PromotionReport:
    """Give ``challenger`` the traffic of ``endpoint`` step by step if it proves itself, else put the
    traffic back.

    1. **Offline gate**, before any traffic: the golden set is scored on the challenger and on the
       champion with :func:`deployflow.batch_predict`, one request per
       ``rows_per_request`` rows, and every check is judged on the challenger's metrics. A failed
       check ends the run with outcome ``rejected`` (:class:`PromotionRejectedError`): the split is
       never changed.
    2. **Traffic steps**: for each weight in ``steps`` the challenger gets that percent of the
       endpoint's requests (the other members share the rest in their old proportions), then golden
       rows are sent through the endpoint itself for ``bake_seconds``, one request after another and
       at most ``max_rate`` a second, and every check is judged on the answers: quality metrics against
       the labels of the answered rows, ``error_rate`` and latency of the requests, ``agreement`` with
       the champion's offline answer for the same row. The answers at a step come from both models in
       that step's proportions, so an absolute quality threshold the champion does not reach fails the
       first steps: give it as ``offline:`` or relative to the champion. A failed check puts the original split back at
       once and raises :class:`PromotionRolledBackError` (outcome ``rolled_back``; with
       ``remove_challenger`` the challenger is deleted too). Fewer than ``min_samples`` answers is
       *inconclusive*, never a pass, and so is a check without a value; then ``on_inconclusive``
       decides: ``"pause"`` puts back the split of the last step that passed (the original one before
       the first) and returns with outcome ``paused``; ``"fail"`` does the same and raises
       :class:`PromotionInconclusiveError` (outcome ``inconclusive``); ``"rollback"`` rolls back as a
       failure does.
    3. After the last step (which must be 100) the outcome is ``promoted``; the other members stay on
       the endpoint with 0 percent.

    The endpoint's split is read and set through the client's ``get_traffic_split`` /
    ``set_traffic_split`` (:mod:`deployflow.promotion.split`); a client without them raises
    :class:`~deployflow.errors.NotSupportedError` before anything is scored.

    **Resuming.** The report is saved after every change to ``record_path`` (default:
    :func:`~deployflow.promotion.report.default_record_path`, beside the ``local`` target's state), or
    can be handed back as ``resume_from``. A run that finds an unfinished report for the same endpoint
    and challenger continues it: steps that passed are not run again, a step whose split is already
    in force is baked without setting it again, and the gate is not run again. A split that is neither
    the one the report expects nor the one of its last passed step raises
    :class:`~deployflow.errors.ConflictError` (someone else changed it). A finished report is
    returned again (``promoted``) or raised again (``rejected``, ``rolled_back``) without touching the
    endpoint; ``restart=True`` starts over.

    **One at a time.** While a promotion of ``endpoint`` runs, another one on the same machine and
    target (whatever its challenger or ``record_path``) raises a retryable
    :class:`~deployflow.errors.ConflictError` before it changes anything. The lock file sits beside the
    default records, so promotions run from other machines are not seen.

    :param golden: a DataFrame, a CSV / Parquet / JSON-lines file, or an iterable of DataFrames, with
        a ``label`` column; the other columns are the model's input.
    :param checks: check strings (:mod:`deployflow.promotion.checks`) such as ``"accuracy>=0.9"``,
        ``"accuracy>=champion-0.01"``, ``"online:p99_ms<=250"``.
    :param champion: the member compared with; default: the member other than the challenger with the
        largest share of the endpoint's traffic. An endpoint whose only member is the challenger raises
        :class:`~deployflow.errors.InvalidInputError`.
    :param metrics: quality metrics by name, each ``(y_true, y_pred) -> float``.
    :param timeout: seconds the whole promotion may take; a step that would end after it is not
        started and counts as inconclusive. Putting traffic back is never cut short by it.
    :param approve: called before the step with weight 100 with that step's plan and the report; a
        false answer stops there as ``paused`` (a human gate).
    :param on_step: called after each judged step with the step and the report.
    :param mirror: shadow traffic; no target offers it, so ``True`` raises NotSupportedError.
    :param cancel: once set (from another thread), the run stops at its next request and raises
        :class:`PromotionInterruptedError`, leaving the split and the record as they are: the next run
        resumes.
    :returns: the :class:`PromotionReport` (outcome ``promoted`` or ``paused``).
    """
    settings = _Settings.read(
        endpoint=endpoint, challenger=challenger, checks=checks, champion=champion, label=label, metrics=metrics,
        steps=steps, bake_seconds=bake_seconds, min_samples=min_samples, max_rate=max_rate,
        rows_per_request=rows_per_request, on_inconclusive=on_inconclusive, remove_challenger=remove_challenger,
        timeout=timeout,
    )
    if as_bool(mirror, "mirror"):
        raise NotSupportedError(
            f"Target {redact(getattr(client, 'target_uri', type(client).__name__))!r} cannot mirror traffic to a "
            "challenger: no deployflow target offers shadow traffic through its API; use steps instead"
        )
    if isinstance(client, str):
        from ..api import get_deploy_client

        client = get_deploy_client(client)
    splits.check_split_support(client)
    splits.member_target(client, endpoint, challenger)  # a target that cannot score one member says so now
    golden_rows = load_golden(golden, settings.label)
    default_path = default_record_path(client, endpoint, challenger)
    path = Path(record_path) if record_path is not None else default_path
    restart = as_bool(restart, "restart")
    with _endpoint_lock(default_path, settings.endpoint):
        run = _Run(client, settings, golden_rows, path, cancel)
        return run.start(resume_from=resume_from, restart=restart, approve=approve, on_step=on_step)


@contextlib.contextmanager
def _endpoint_lock(default_record: Path, endpoint: str) -> Iterator[None]:
    """Hold an exclusive lock on ``endpoint`` in the directory of the default records (beside the local
    target's state, else ``$DEPLOYFLOW_HOME/promotions``), whatever ``record_path`` a run was given; a
    second run raises ConflictError at once instead of moving the same split. The lock is the operating
    system's (``filelock``): a promotion that dies releases it."""
    from .._extras import require

    filelock = require("filelock", "batch", "promotion (deployflow.promote)")
    lock_path = default_record.parent / f"{safe_name(endpoint)}.lock"
    try:
        lock_path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InvalidInputError(f"Cannot create the promotion record directory {str(lock_path.parent)!r}: {exc}") from exc
    lock = filelock.FileLock(str(lock_path), timeout=0)
    try:
        lock.acquire()
    except filelock.Timeout:
        raise ConflictError(
            f"Another promotion of endpoint {endpoint!r} is running (it holds {str(lock_path)!r}); run this one "
            "again once it has finished", retryable=True,
        ) from None
    try:
        yield
    finally:
        lock.release()


class _Settings:
    """The arguments of one promotion, checked before anything is sent."""

    @classmethod
    def read(cls, **given: Any) -> _Settings:
        self = cls()
        for key in ("endpoint", "challenger"):
            value = given[key]
            if not isinstance(value, str) or not value:
                raise InvalidInputError(f"{key} must be a non-empty name, got {value!r}")
        self.endpoint, self.challenger = given["endpoint"], given["challenger"]
        self.champion = given["champion"]
        if self.champion is not None and (not isinstance(self.champion, str) or not self.champion):
            raise InvalidInputError(f"champion must be a name or None, got {self.champion!r}")
        if self.champion == self.challenger:
            raise InvalidInputError(f"The champion and the challenger are the same ({self.champion!r})")
        self.checks = parse_checks(given["checks"])
        if not isinstance(given["metrics"] or {}, Mapping):
            raise InvalidInputError("metrics must map names to callables (y_true, y_pred) -> float")
        self.metrics = dict(given["metrics"] or {})
        for name in quality_names(self.checks):
            metric_function(name, self.metrics)  # an unknown name, or no scikit-learn: say so now
        self.label = given["label"]
        self.steps = parse_steps(given["steps"])
        self.bake_seconds = as_number(given["bake_seconds"], "bake_seconds", positive=False)
        self.min_samples = as_int(given["min_samples"], "min_samples", minimum=1)
        self.max_rate = as_number(given["max_rate"], "max_rate", positive=True)
        self.rows_per_request = as_int(given["rows_per_request"], "rows_per_request", minimum=1)
        if given["on_inconclusive"] not in ON_INCONCLUSIVE:
            raise InvalidInputError(f"on_inconclusive must be one of {', '.join(ON_INCONCLUSIVE)}, got {given['on_inconclusive']!r}")
        self.on_inconclusive = given["on_inconclusive"]
        self.remove_challenger = as_bool(given["remove_challenger"], "remove_challenger")
        timeout = given["timeout"]
        self.timeout = None if timeout is None else as_number(timeout, "timeout", positive=True)
        return self


def parse_steps(steps: Iterable[Any] | str) -> list[float]:
    """Traffic weights in percent, increasing, each above 0, the last 100 (``"10,50,100"`` or a list)."""
    if isinstance(steps, str):
        steps = [part for part in steps.split(",") if part.strip()]
    if not isinstance(steps, Iterable):
        raise InvalidInputError(f"steps must be a list of percents such as [10, 50, 100], got {steps!r}")
    weights = [as_number(step, "each step", positive=True) for step in steps]
    if not weights or weights[-1] != 100 or any(w > 100 for w in weights):
        raise InvalidInputError(f"steps must be percents above 0 ending with 100, got {list(steps)!r}")
    if any(later <= earlier for earlier, later in zip(weights, weights[1:])):
        raise InvalidInputError(f"steps must increase, got {list(steps)!r}")
    return weights


def _now() -> str:
    return _datetime.datetime.now(_datetime.timezone.utc).isoformat(timespec="milliseconds")


class _Run:
    def __init__(self, client: Any, settings: _Settings, golden: Golden, path: Path, cancel: threading.Event | None) -> None:
        self.client = client
        self.cancel = cancel
        self.settings = settings
        self.golden = golden
        self.path = path
        self.deadline = None if settings.timeout is None else time.monotonic() + settings.timeout
        self.quality = quality_names(settings.checks)
        self.champion_answers: dict[int, Any] | None = None
        self.champion_offline: dict[str, Any] = {}
        self.report = PromotionReport()

    # -- bookkeeping --------------------------------------------------------------------------------

    def save(self) -> None:
        self.report["updated"] = _now()
        save_record(self.path, self.report)

    def remaining(self) -> float | None:
        return None if self.deadline is None else max(0.0, self.deadline - time.monotonic())

    def _fresh(self) -> None:
        s = self.settings
        original = splits.read_split(self.client, s.endpoint)
        champion = s.champion
        if champion is None:
            others = {name: share for name, share in original.items() if name != s.challenger}
            champion = max(others, key=lambda name: others[name]) if others else None
        if not any(name != s.challenger for name in original):
            raise InvalidInputError(
                f"Endpoint {s.endpoint!r} has no member but the challenger {s.challenger!r}: there is no traffic to shift to it"
            )
        if champion is not None and champion not in original:
            raise InvalidInputError(f"The champion {champion!r} is not a member of endpoint {s.endpoint!r} ({', '.join(original) or 'no members'})")
        self.report = PromotionReport({
            "version": RECORD_VERSION,
            "target": redact(getattr(self.client, "target_uri", "") or ""),
            "endpoint": s.endpoint,
            "challenger": s.challenger,
            "champion": champion,
            "checks": [str(check) for check in s.checks],
            "plan": s.steps,
            "outcome": "running",
            "reason": None,
            "original_split": original,
            "split": original,
            "offline": None,
            "steps": [],
            "pending": None,
            "resumed": 0,
            "started": _now(),
        })

    def _same_run(self, found: Mapping[str, Any]) -> bool:
        return found.get("endpoint") == self.settings.endpoint and found.get("challenger") == self.settings.challenger

    # -- the run ------------------------------------------------------------------------------------

    def start(self, *, resume_from: Mapping[str, Any] | None, restart: bool, approve: Any, on_step: Any) -> PromotionReport:
        s = self.settings
        found = None if restart else (PromotionReport(resume_from) if resume_from is not None else load_record(self.path))
        if found is not None and self._same_run(found) and found.get("version") == RECORD_VERSION:
            self.report = PromotionReport(found)
            outcome = self.report.outcome
            if outcome == "promoted":
                logger.info("Promotion of %r on %r already finished: promoted", s.challenger, s.endpoint)
                return self.report
            if outcome in ("rejected", "rolled_back"):
                self._raise_final()
            self._check_same_plan()
            self.report["resumed"] = int(self.report.get("resumed") or 0) + 1
            self.report["outcome"] = "running"
            self.report["reason"] = None
            logger.info("Resuming the promotion of %r on %r (%d step(s) passed)", s.challenger, s.endpoint, len(self._passed()))
        else:
            self._fresh()
        self.save()
        champion = self.report.get("champion")
        offline = self.report.get("offline")
        failed = [step for step in self.report.get("steps") or [] if step.get("verdict") == "fail"]
        if failed:  # a run killed while rolling back: finish the rollback, never judge the step again
            self._rollback(_failed_checks(f"step {failed[-1]['weight']:g}%", failed[-1]["checks"]))
        if offline is not None and offline.get("verdict") == "fail":
            self._finish("rejected", _failed_checks("offline gate", offline.get("checks") or []))
            self._raise_final()
        if offline is None or offline.get("verdict") != "pass":
            if not self._offline_gate():
                return self.report
        elif champion is not None and self._needs_champion_online():
            self._score_champion()
        return self._ramp(approve, on_step)

    def _check_same_plan(self) -> None:
        s, found = self.settings, self.report
        differences = []
        if s.champion is not None and s.champion != found.get("champion"):
            differences.append(f"champion {found.get('champion')!r}, not {s.champion!r}")
        if list(found.get("plan") or []) != s.steps:
            differences.append(f"steps {found.get('plan')}, not {s.steps}")
        if differences:
            raise ConflictError(
                f"An unfinished promotion of {s.challenger!r} on {s.endpoint!r} has {' and '.join(differences)}; "
                "run it with the same settings to continue it, or with restart=True to start over"
            )

    def _needs_champion_online(self) -> bool:
        return any(c.applies_to("online") and (c.relative_to or c.metric == "agreement") for c in self.settings.checks)

    def _score_champion(self) -> None:
        champion = self.report["champion"]
        target = splits.member_target(self.client, self.settings.endpoint, champion)
        with step_deadline(self.remaining()):
            scored = score_offline(self.client, target, self.golden, rows_per_request=self.settings.rows_per_request)
        if scored.failure:
            raise DeploymentError(f"Scoring the golden set on the champion {champion!r} failed: {scored.failure}")
        self.champion_answers = scored.by_row()
        self.champion_offline = measure(scored, self.golden, self.quality, self.settings.metrics, None)
        self.champion_offline["agreement"] = 1.0

    def _offline_gate(self) -> bool:
        """Judge the challenger offline: ``True`` when it passed; ``False`` (paused) or an error otherwise."""
        s = self.settings
        champion = self.report.get("champion")
        if champion is not None:
            self._score_champion()
        target = splits.member_target(self.client, s.endpoint, s.challenger)
        with step_deadline(self.remaining()):
            scored = score_offline(self.client, target, self.golden, rows_per_request=s.rows_per_request)
        values = measure(scored, self.golden, self.quality, s.metrics, self.champion_answers)
        judged = [
            check.judge(values.get(check.metric), self.champion_offline.get(check.metric))
            for check in s.checks
            if check.applies_to("offline") and not (check.metric == "agreement" and champion is None)
        ]
        # min_samples is about live traffic; the golden set's size is the caller's choice.
        verdict = _verdict(judged, values["samples"], 1)
        reason = None
        if scored.failure:
            verdict, reason = "fail", f"scoring the challenger failed: {scored.failure}"
        gate = {
            "verdict": verdict,
            "challenger": _rounded_metrics(values),
            "champion": _rounded_metrics(self.champion_offline) if champion is not None else None,
            "checks": judged,
            "errors": scored.error_kinds,
            "finished": _now(),
        }
        self.report["offline"] = gate
        if verdict == "pass":
            self.save()
            return True
        if verdict == "fail":
            self._finish("rejected", reason or _failed_checks("offline gate", judged))
            self._raise_final()
        # Inconclusive offline: too few rows or a metric without a value. No traffic was moved.
        self._inconclusive(f"offline gate: {_inconclusive_reason(judged, values['samples'], 1)}")
        return False

    def _passed(self) -> list[dict[str, Any]]:
        return [step for step in self.report.get("steps") or [] if step.get("verdict") == "pass"]

    def _split_for(self, weight: float | None) -> dict[str, float]:
        original = self.report["original_split"]
        if weight is None:
            return dict(original)
        return splits.step_split(original, self.settings.challenger, weight)

    def _ramp(self, approve: Any, on_step: Any) -> PromotionReport:
        s = self.settings
        plan = s.steps
        passed = self._passed()
        current = splits.read_split(self.client, s.endpoint)
        first = True
        for index in range(len(passed), len(plan)):
            weight = plan[index]
            wanted = self._split_for(weight)
            last_good = self._split_for(plan[index - 1] if index else None)
            if first:
                first = False
                if not (splits.same_split(current, wanted) or splits.same_split(current, last_good)):
                    raise ConflictError(
                        f"The traffic split of endpoint {s.endpoint!r} is {current}, which this promotion did not set "
                        f"(it expects {last_good} or {wanted}); someone else changed it. Run again with restart=True "
                        "to start over from the current split"
                    )
            if weight == 100 and approve is not None:
                step_plan = {"weight": weight, "split": wanted}
                if not approve(step_plan, self.report):
                    self._pause_or_fail("pause", f"the step to {weight:g}% was not approved", weight)
                    return self.report
            self._stop_if_cancelled()
            remaining = self.remaining()
            if remaining is not None and remaining < s.bake_seconds:
                self._settle_inconclusive(f"no time left for the step to {weight:g}% (timeout {s.timeout:g} s)", weight)
                return self.report
            step = {"weight": weight, "split": wanted, "started": _now()}
            if not splits.same_split(splits.read_split(self.client, s.endpoint), wanted):
                self.report["pending"] = {"weight": weight, "split": wanted}
                self.save()
                self._set_split(wanted)
            self.report["split"] = wanted
            scored = send_traffic(
                self.client, s.endpoint, self.golden, seconds=s.bake_seconds, rate=s.max_rate,
                rows_per_request=s.rows_per_request, deadline=self.deadline, cancel=self.cancel,
            )
            self._stop_if_cancelled()
            step.update(self._judge_step(scored))
            step["finished"] = _now()
            self.report["steps"].append(step)
            self.report["pending"] = None
            self.save()
            logger.info("Step %g%%: %s (%d samples)", weight, step["verdict"], step["samples"])
            if on_step is not None:
                on_step(step, self.report)
            if step["verdict"] == "fail":
                self._rollback(_failed_checks(f"step {weight:g}%", step["checks"]) if not step.get("reason") else step["reason"])
            if step["verdict"] == "inconclusive":
                self._settle_inconclusive(f"step {weight:g}%: {step['reason']}", weight)
                return self.report
        self._finish("promoted", None)
        return self.report

    def _stop_if_cancelled(self) -> None:
        if self.cancel is not None and self.cancel.is_set():
            s = self.settings
            raise PromotionInterruptedError(
                f"The promotion of {s.challenger!r} on {s.endpoint!r} was interrupted; run it again to resume",
                report=self.report,
            )

    def _judge_step(self, scored: Scored) -> dict[str, Any]:
        s = self.settings
        values = measure(scored, self.golden, self.quality, s.metrics, self.champion_answers)
        champion_values = dict(self.champion_offline)
        if self.champion_answers is not None and scored.rows:
            # The champion's quality on exactly the rows that were answered: a fair comparison.
            from .measure import quality_metric

            rows = [row for row in scored.rows if row in self.champion_answers]
            for name in self.quality:
                champion_values[name] = quality_metric(
                    name, s.metrics, [self.golden.labels[row] for row in rows], [self.champion_answers[row] for row in rows]
                )
        judged = [
            check.judge(values.get(check.metric), champion_values.get(check.metric))
            for check in s.checks
            if check.applies_to("online") and not (check.metric == "agreement" and self.champion_answers is None)
        ]
        verdict = _verdict(judged, values["samples"], s.min_samples)
        result = {
            "samples": values["samples"],
            "metrics": _rounded_metrics(values),
            "checks": judged,
            "errors": scored.error_kinds,
            "verdict": verdict,
        }
        if verdict == "inconclusive":
            result["reason"] = _inconclusive_reason(judged, values["samples"], s.min_samples)
        return result

    # -- outcomes -----------------------------------------------------------------------------------

    def _set_split(self, split: Mapping[str, float]) -> None:
        splits.write_split(self.client, self.settings.endpoint, split)

    def _finish(self, outcome: str, reason: str | None) -> None:
        self.report["outcome"] = outcome
        self.report["reason"] = reason
        self.report["finished"] = _now()
        self.save()

    def _rollback(self, reason: str) -> None:
        s = self.settings
        original = self.report["original_split"]
        logger.warning("Rolling back the promotion of %r on %r: %s", s.challenger, s.endpoint, reason)
        self._set_split(original)
        self.report["split"] = original
        if s.remove_challenger:
            self.client.delete_deployment(s.challenger, endpoint=s.endpoint)
            self.report["challenger_removed"] = True
        self._finish("rolled_back", reason)
        self._raise_final()

    def _settle_inconclusive(self, reason: str, weight: float) -> None:
        if self.settings.on_inconclusive == "rollback":
            self._rollback(f"inconclusive: {reason}")
        self._pause_or_fail(self.settings.on_inconclusive, reason, weight)

    def _pause_or_fail(self, policy: str, reason: str, weight: float) -> None:
        index = self.settings.steps.index(weight)
        back = self._split_for(self.settings.steps[index - 1] if index else None)
        if not splits.same_split(splits.read_split(self.client, self.settings.endpoint), back):
            self._set_split(back)
        self.report["split"] = back
        self._finish("paused" if policy == "pause" else "inconclusive", reason)
        if policy == "fail":
            self._raise_final()

    def _inconclusive(self, reason: str) -> None:
        policy = self.settings.on_inconclusive
        if policy == "rollback":  # nothing was moved: rejecting is the rollback
            self._finish("rejected", f"inconclusive: {reason}")
        else:
            self._finish("paused" if policy == "pause" else "inconclusive", reason)
        if policy != "pause":
            self._raise_final()

    def _raise_final(self) -> None:
        report = self.report
        outcome, reason = report.outcome, report.get("reason")
        s = self.settings
        if outcome == "rejected":
            raise PromotionRejectedError(f"{s.challenger!r} was not promoted on {s.endpoint!r}: {reason}", report=report)
        if outcome == "rolled_back":
            raise PromotionRolledBackError(
                f"{s.challenger!r} was rolled back on {s.endpoint!r} (traffic is back on {report.get('original_split')}): {reason}",
                report=report,
            )
        raise PromotionInconclusiveError(f"The promotion of {s.challenger!r} on {s.endpoint!r} is inconclusive: {reason}", report=report)


def _verdict(judged: list[dict[str, Any]], samples: int, min_samples: int) -> str:
    if any(item["verdict"] == "fail" for item in judged):
        return "fail"
    if samples < min_samples or any(item["verdict"] == "inconclusive" for item in judged):
        return "inconclusive"
    return "pass"


def _failed_checks(where: str, judged: list[dict[str, Any]]) -> str:
    failed = [f"{item['check']} (value {item['value']}, bound {item['bound']})" for item in judged if item["verdict"] == "fail"]
    return f"{where} failed {', '.join(failed)}"


def _inconclusive_reason(judged: list[dict[str, Any]], samples: int, min_samples: int) -> str:
    if samples < min_samples:
        return f"{samples} answer(s), fewer than min_samples={min_samples}"
    missing = [item["check"] for item in judged if item["verdict"] == "inconclusive"]
    return f"no value for {', '.join(missing)}"


def _rounded_metrics(values: Mapping[str, Any]) -> dict[str, Any]:
    result = {}
    for key, value in values.items():
        result[key] = round(float(value), 6) if isinstance(value, float) else value
    return result
