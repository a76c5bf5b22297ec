"""``PromoteOperator``: :func:`deployflow.promote` as an Airflow task (its trigger:
:class:`~deployflow.integrations.airflow.triggers.promotion.PromotionTrigger`).

The promotion keeps its progress in its record (beside the ``local`` target's state, or
``record_path``), so the task is retry-safe: a retried or re-run task continues the ramp it finds
there, and a finished one is not run again. With ``deferrable=True`` the whole promotion (nearly all of
it is baking: golden traffic at each step) runs in the triggerer, in a worker thread, and the worker
slot is free meanwhile; a trigger that is cancelled (a triggerer restarting) stops the promotion at its
next request, and the trigger started again resumes it.

A human gate before full traffic takes two tasks with the same settings around Airflow's
``ApprovalOperator``: the first with ``stop_before_full_traffic=True`` (it ends, successfully, once
every step below 100% has passed), the approval, then the second, which gives the challenger the rest
(see ``examples/airflow/promote_with_approval.py``).
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any, Sequence

from airflow.sdk import BaseOperator
from airflow.sdk.exceptions import AirflowException, AirflowFailException, AirflowSkipException

from deployflow import DeploymentError, PromotionInconclusiveError

from .._common import default_deferrable
from ..hooks.deployment import DeploymentHook
from ..triggers.promotion import PromotionTrigger, run_promotion

if TYPE_CHECKING:
    from airflow.sdk import Context

__all__ = ["PromoteOperator"]

_ARGUMENTS = (
    "endpoint", "challenger", "golden", "checks", "champion", "label_column", "steps", "bake_seconds", "min_samples",
    "max_rate", "on_inconclusive", "remove_challenger", "record_path",
)
#: Operator attributes whose promote() argument has another name (BaseOperator has a ``label``).
_RENAMED = {"label_column": "label"}


class PromoteOperator(BaseOperator):
    """Promote ``challenger`` on ``endpoint`` (see :func:`deployflow.promote`; the arguments are the same
    and templated, numbers included).

    :param golden: the golden set's path (CSV, Parquet or JSON lines) with a label column.
    :param label_column: that column's name (``label`` in :func:`deployflow.promote`).
    :param promotion_timeout: seconds the promotion may take from the task's start (its own deadline,
        passed to :func:`deployflow.promote` as ``timeout``), or ``None``.
    :param stop_before_full_traffic: end, successfully, once every step below 100% has passed, with
        ``approval_pending`` true in the XCom; the same task without it (after an approval) continues.
    :param deferrable: run the promotion in the triggerer (default: ``[operators] default_deferrable``).
    :param deployflow_conn_id: the ``deployflow`` connection (templated).

    XCom (``return_value``): ``{"outcome", "reason", "report_path", "approval_pending", "endpoint",
    "challenger"}``; the whole report is the JSON file at ``report_path``. Promoted, or stopped for the
    gate: the task succeeds. Paused as inconclusive: the task is skipped (so are the tasks after it).
    Rejected, rolled back or inconclusive with ``on_inconclusive="fail"``: the task fails without
    retries. Another retryable error: Airflow's retries apply, and each resumes the ramp.
    """

    template_fields: Sequence[str] = (*_ARGUMENTS, "promotion_timeout", "deployflow_conn_id")
    template_fields_renderers = {"checks": "json", "steps": "json"}
    ui_color = "#e8f4ea"

    def __init__(
        self,
        *,
        endpoint: str,
        challenger: str,
        golden: str,
        checks: Sequence[str] = (),
        champion: str | None = None,
        label_column: str = "label",
        steps: Sequence[float] | str = (10, 50, 100),
        bake_seconds: float | str = 60.0,
        min_samples: int | str = 20,
        max_rate: float | str = 20.0,
        on_inconclusive: str = "pause",
        remove_challenger: bool | str = False,
        record_path: str | None = None,
        promotion_timeout: float | str | None = None,
        stop_before_full_traffic: bool = False,
        deferrable: bool | None = None,
        deployflow_conn_id: str = DeploymentHook.default_conn_name,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.endpoint = endpoint
        self.challenger = challenger
        self.golden = golden
        self.checks = list(checks) if not isinstance(checks, str) else checks
        self.champion = champion
        self.label_column = label_column
        self.steps = list(steps) if not isinstance(steps, str) else steps
        self.bake_seconds = bake_seconds
        self.min_samples = min_samples
        self.max_rate = max_rate
        self.on_inconclusive = on_inconclusive
        self.remove_challenger = remove_challenger
        self.record_path = record_path
        self.promotion_timeout = promotion_timeout
        self.stop_before_full_traffic = stop_before_full_traffic
        self.deferrable = default_deferrable() if deferrable is None else deferrable
        self.deployflow_conn_id = deployflow_conn_id

    def _arguments(self) -> dict[str, Any]:
        arguments = {_RENAMED.get(name, name): getattr(self, name) for name in _ARGUMENTS}
        if isinstance(arguments["checks"], str):
            arguments["checks"] = [arguments["checks"]]
        return arguments

    def _deadline(self) -> float | None:
        if self.promotion_timeout in (None, ""):
            return None
        from deployflow.retry import as_number

        try:
            return time.time() + as_number(self.promotion_timeout, "promotion_timeout", positive=True)
        except DeploymentError as error:
            raise AirflowFailException(str(error)) from error

    def execute(self, context: Context) -> dict[str, Any]:
        deadline = self._deadline()
        if self.deferrable:
            self.defer(
                trigger=PromotionTrigger(deployflow_conn_id=self.deployflow_conn_id, arguments=self._arguments(),
                                         stop_before_full_traffic=self.stop_before_full_traffic, deadline=deadline),
                method_name="execute_complete",
            )
        hook = DeploymentHook(self.deployflow_conn_id)
        try:
            event = run_promotion(hook.get_conn(), self._arguments(),
                                  stop_before_full_traffic=self.stop_before_full_traffic, deadline=deadline)
        finally:
            hook.close()
        return self._finish(context, event)

    def execute_complete(self, context: Context, event: dict[str, Any]) -> dict[str, Any]:
        return self._finish(context, event)

    def _finish(self, context: Context, event: dict[str, Any]) -> dict[str, Any]:
        result = {
            "outcome": event.get("outcome"),
            "reason": event.get("reason"),
            "report_path": event.get("report_path"),
            "approval_pending": bool(event.get("approval_pending")),
            "endpoint": self.endpoint,
            "challenger": self.challenger,
        }
        outcome, error = result["outcome"], event.get("error")
        self.log.info("Promotion of %r on %r: %s%s", self.challenger, self.endpoint, outcome,
                      f" ({result['reason']})" if result["reason"] else "")
        if error is None and (outcome == "promoted" or result["approval_pending"]):
            return result
        context["ti"].xcom_push(key="return_value", value=result)
        if error is None:  # paused: too few answers to judge a step
            raise AirflowSkipException(f"Promotion paused: {result['reason']}")
        message = event.get("message") or error
        if event.get("retryable") and error != PromotionInconclusiveError.__name__:
            raise AirflowException(message)
        raise AirflowFailException(message)
