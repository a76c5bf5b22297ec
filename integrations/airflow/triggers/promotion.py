"""``PromotionTrigger``: a whole promotion run in the triggerer, for ``PromoteOperator(deferrable=True)``."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any, AsyncIterator

from airflow.triggers.base import BaseTrigger, TriggerEvent

from deployflow import DeploymentError, PromotionError
from deployflow.redaction import redact

from ..hooks.deployment import DeploymentHook

__all__ = ["PromotionTrigger", "run_promotion"]


def run_promotion(client: Any, arguments: dict[str, Any], *, stop_before_full_traffic: bool, deadline: float | None,
                  cancel: threading.Event | None = None) -> dict[str, Any]:
    """Run :func:`deployflow.promote` with ``arguments`` (JSON values) and describe how it ended as a
    small dict: ``outcome``, ``reason``, ``report_path``, ``approval_pending`` and, for an error,
    ``error`` (its class name), ``message`` and ``retryable``."""
    from deployflow import promote
    from deployflow.promotion import default_record_path

    asked = []

    def stop_before_last(plan: dict[str, Any], report: Any) -> bool:
        asked.append(plan["weight"])
        return False

    given = dict(arguments)
    path = given.pop("record_path", None) or str(default_record_path(client, given["endpoint"], given["challenger"]))
    timeout = None if deadline is None else max(deadline - time.time(), 0.001)
    result: dict[str, Any] = {"report_path": path, "approval_pending": False, "error": None}
    try:
        report = promote(
            client, **given, record_path=path, timeout=timeout, cancel=cancel,
            approve=stop_before_last if stop_before_full_traffic else None,
        )
    except PromotionError as error:
        report = error.report
        result.update(error=type(error).__name__, message=redact(str(error)), retryable=error.retryable)
    except DeploymentError as error:
        return {**result, "outcome": "error", "reason": None, "error": type(error).__name__,
                "message": redact(str(error)), "retryable": error.retryable}
    result.update(outcome=report.outcome, reason=report.get("reason"), approval_pending=bool(asked) and report.outcome == "paused")
    return result


class PromotionTrigger(BaseTrigger):
    """Runs a promotion in the triggerer (in a worker thread) and fires one event: the dict
    :func:`run_promotion` returns. It holds only JSON: the connection id, the promotion's arguments,
    the gate flag and the absolute deadline (epoch seconds)."""

    def __init__(self, *, deployflow_conn_id: str, arguments: dict[str, Any], stop_before_full_traffic: bool,
                 deadline: float | None) -> None:
        super().__init__()
        self.deployflow_conn_id = deployflow_conn_id
        self.arguments = arguments
        self.stop_before_full_traffic = stop_before_full_traffic
        self.deadline = deadline

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {"deployflow_conn_id": self.deployflow_conn_id, "arguments": self.arguments,
             "stop_before_full_traffic": self.stop_before_full_traffic, "deadline": self.deadline},
        )

    async def run(self) -> AsyncIterator[TriggerEvent]:
        hook = DeploymentHook(self.deployflow_conn_id)
        cancel = threading.Event()
        try:
            client = await hook.aget_conn()
            event = await asyncio.to_thread(
                run_promotion, client, self.arguments, stop_before_full_traffic=self.stop_before_full_traffic,
                deadline=self.deadline, cancel=cancel,
            )
        except DeploymentError as error:
            event = {"outcome": "error", "error": type(error).__name__, "message": redact(str(error)),
                     "retryable": error.retryable, "report_path": None, "approval_pending": False, "reason": None}
        except asyncio.CancelledError:
            cancel.set()  # the thread stops at its next request; the record stays resumable
            raise
        finally:
            await hook.aclose()
        yield TriggerEvent(event)
