"""Triggers that wait, in Airflow's triggerer, until a deployment or an endpoint is READY.

A trigger holds only JSON: the connection id, the names, the absolute deadline (epoch seconds) and the
polling settings, never a credential (the client is rebuilt from the connection where the trigger
runs). Polling goes through the client's ``wait_for_*_async`` methods, which run each status call in a
worker thread, so the triggerer's event loop never blocks.

Resuming is idempotent: a trigger restarted on another triggerer polls again from scratch until the
same deadline, and one restarted after the deadline still looks once (READY wins) before it reports
the timeout. It fires exactly one event, a small dict::

    {"status": "READY" | "FAILED" | "NOT_FOUND" | "TIMEOUT" | "ERROR", "kind": "deployment",
     "name": "churn", "endpoint": None, "reason": ..., "message": ..., "retryable": False,
     "deadline": 1767225600.0, "carry": {...}}

``carry`` is handed back unchanged: the small result the deferring task had before it deferred.
"""

from __future__ import annotations

import time
from typing import Any, AsyncIterator, ClassVar

from airflow.triggers.base import BaseTrigger, TriggerEvent

from deployflow import (
    BaseDeploymentClient,
    DeploymentError,
    DeploymentFailedError,
    NotFoundError,
    Status,
    WaitTimeoutError,
)
from deployflow.redaction import redact

from .._common import DEFAULT_CONN_ID, describe_deadline, seconds_left
from ..hooks.deployment import DeploymentHook

__all__ = ["DeploymentReadyTrigger", "EndpointReadyTrigger"]


class _ReadinessTrigger(BaseTrigger):
    """What both triggers share: the deadline, the polling, and the one event they fire."""

    kind: ClassVar[str]

    def __init__(
        self,
        *,
        deadline: float,
        deployflow_conn_id: str = DEFAULT_CONN_ID,
        not_found_deadline: float | None = None,
        poll_interval: float = 5.0,
        max_poll_interval: float = 30.0,
        carry: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        self.deployflow_conn_id = deployflow_conn_id
        self.deadline = float(deadline)
        self.not_found_deadline = None if not_found_deadline is None else float(not_found_deadline)
        self.poll_interval = float(poll_interval)
        self.max_poll_interval = max(float(max_poll_interval), self.poll_interval)
        self.carry = dict(carry) if carry else {}

    # Subclasses say what they wait for.
    def _names(self) -> dict[str, Any]:
        raise NotImplementedError

    def _what(self) -> str:
        raise NotImplementedError

    async def _wait(self, client: BaseDeploymentClient, **plan: Any) -> Status:
        raise NotImplementedError

    def serialize(self) -> tuple[str, dict[str, Any]]:
        """The class path and the JSON keyword arguments that rebuild this trigger."""
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {
                **self._names(),
                "deployflow_conn_id": self.deployflow_conn_id,
                "deadline": self.deadline,
                "not_found_deadline": self.not_found_deadline,
                "poll_interval": self.poll_interval,
                "max_poll_interval": self.max_poll_interval,
                "carry": self.carry,
            },
        )

    async def run(self) -> AsyncIterator[TriggerEvent]:
        """Poll until READY, FAILED, gone past the not-found grace, or the deadline; fire one event."""
        hook = DeploymentHook(self.deployflow_conn_id)
        self.log.info("Waiting for %s until %s", self._what(), describe_deadline(self.deadline))
        try:
            client = await hook.aget_conn()
            left = seconds_left(self.deadline)
            grace = left if self.not_found_deadline is None else max(0.0, self.not_found_deadline - time.time())
            status = await self._wait(
                client,
                timeout=left,
                poll_interval=self.poll_interval,
                max_poll_interval=self.max_poll_interval,
                not_found_grace=grace,
            )
            event = self._event("READY", reason=status.reason, message=f"{self._what()} is READY")
        except DeploymentFailedError as error:
            event = self._event("FAILED", reason=error.reason, message=str(error))
        except NotFoundError as error:
            event = self._event("NOT_FOUND", message=str(error))
        except WaitTimeoutError as error:
            last = error.last_status
            event = self._event(
                "TIMEOUT",
                reason=str(last) if last is not None else None,
                message=(
                    f"{self._what()} was not ready by its deadline {describe_deadline(self.deadline)}; "
                    f"last state: {last if last is not None else 'no status'}"
                ),
                retryable=True,
            )
        except DeploymentError as error:
            event = self._event("ERROR", message=str(error), retryable=error.retryable)
        finally:
            await hook.aclose()
        self.log.info("%s: %s", self._what(), event.payload["status"])
        yield event

    def _event(
        self, status: str, *, reason: str | None = None, message: str | None = None, retryable: bool = False
    ) -> TriggerEvent:
        return TriggerEvent(
            {
                "status": status,
                "kind": self.kind,
                **self._names(),
                "reason": redact(reason) if reason else None,
                "message": redact(message) if message else None,
                "retryable": retryable,
                "deadline": self.deadline,
                "carry": self.carry,
            }
        )


class DeploymentReadyTrigger(_ReadinessTrigger):
    """Fires when deployment ``deployment_name`` (of ``endpoint``, if given) is READY, has FAILED, stays
    missing past ``not_found_deadline``, or ``deadline`` passes (all deadlines in epoch seconds).

    :param deployment_name: the deployment to wait for.
    :param endpoint: the endpoint it belongs to, for targets that need it.
    :param deadline: when to stop waiting, in seconds since the epoch (UTC).
    :param deployflow_conn_id: the ``deployflow`` connection to build the client from.
    :param not_found_deadline: until when a missing deployment is tolerated (default: ``deadline``).
    :param poll_interval: seconds before the second look; grows with backoff up to ``max_poll_interval``.
    :param carry: a small JSON dict handed back unchanged in the event.
    """

    kind = "deployment"

    def __init__(self, *, deployment_name: str, endpoint: str | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.deployment_name = deployment_name
        self.endpoint = endpoint

    def _names(self) -> dict[str, Any]:
        return {"deployment_name": self.deployment_name, "endpoint": self.endpoint}

    def _what(self) -> str:
        return f"Deployment {self.deployment_name!r}"

    async def _wait(self, client: BaseDeploymentClient, **plan: Any) -> Status:
        return await client.wait_for_deployment_async(self.deployment_name, self.endpoint, **plan)


class EndpointReadyTrigger(_ReadinessTrigger):
    """Fires when endpoint ``endpoint`` is READY, has FAILED, stays missing past
    ``not_found_deadline``, or ``deadline`` passes. Parameters as :class:`DeploymentReadyTrigger`."""

    kind = "endpoint"

    def __init__(self, *, endpoint: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.endpoint = endpoint

    def _names(self) -> dict[str, Any]:
        return {"endpoint": self.endpoint}

    def _what(self) -> str:
        return f"Endpoint {self.endpoint!r}"

    async def _wait(self, client: BaseDeploymentClient, **plan: Any) -> Status:
        return await client.wait_for_endpoint_async(self.endpoint, **plan)
