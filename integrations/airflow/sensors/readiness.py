"""Sensors that wait until a deployment or an endpoint is READY.

One timeout model in every mode: ``timeout`` seconds from when the sensor first started (for
``mode="reschedule"``, its first run), as one deadline. ``poke`` and ``reschedule`` modes check it after
each poke (Airflow's own sensor loop); deferrable mode hands the same absolute deadline to the trigger.
Running out of time raises ``AirflowSensorTimeout`` in all three.

READY succeeds. FAILED fails at once with the target's reason (``AirflowFailException``: no retry),
as does a deployment still missing ``not_found_grace`` seconds after the sensor started. Unknown or
in-between states keep waiting: only READY is success. Errors worth retrying while polling (a dropped
connection, a 503) are logged and polled again; other errors fail the sensor.
"""

from __future__ import annotations

import datetime
from functools import cached_property
from typing import TYPE_CHECKING, Any, Sequence

from airflow.sdk import BaseSensorOperator, PokeReturnValue, timezone
from airflow.sdk.exceptions import (
    AirflowException,
    AirflowFailException,
    AirflowSensorTimeout,
    AirflowSkipException,
)

from deployflow import BaseDeploymentClient, DeploymentError, State, Status

from .._common import (
    DEFAULT_CONN_ID,
    DEFER_GRACE,
    check_arguments,
    deadline_after,
    default_deferrable,
    describe_deadline,
    error_from_event,
    raise_for,
    seconds,
    seconds_left,
    translate_errors,
)
from ..hooks.deployment import DeploymentHook
from ..triggers.readiness import DeploymentReadyTrigger, EndpointReadyTrigger

if TYPE_CHECKING:
    from airflow.sdk import Context

__all__ = ["WaitForDeploymentReadySensor", "WaitForEndpointReadySensor"]


class _ReadinessSensor(BaseSensorOperator):
    """What both sensors share. Subclasses say what they look at."""

    ui_color = "#e6f1f2"

    #: Checked when the DAG is parsed (literal values) and when the sensor runs (rendered values).
    argument_checks = {"not_found_grace": seconds}

    def __init__(
        self,
        *,
        deployflow_conn_id: str = DEFAULT_CONN_ID,
        not_found_grace: float | datetime.timedelta | str = 60.0,
        deferrable: bool | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.deployflow_conn_id = deployflow_conn_id
        self.not_found_grace = not_found_grace
        self.deferrable = default_deferrable() if deferrable is None else bool(deferrable)
        self._not_found_deadline: float | None = None
        check_arguments(self, self.argument_checks, rendered=False)

    # -- what to look at -----------------------------------------------------------------------------

    def _what(self) -> str:
        raise NotImplementedError

    def _status(self, client: BaseDeploymentClient) -> Status:
        raise NotImplementedError

    def _trigger(self, **common: Any) -> Any:
        raise NotImplementedError

    def _result(self, status: State, reason: str | None) -> dict[str, Any]:
        raise NotImplementedError

    # -- running ---------------------------------------------------------------------------------------

    @cached_property
    def hook(self) -> DeploymentHook:
        return DeploymentHook(self.deployflow_conn_id)

    def _started_at(self, context: Context) -> float:
        """When this wait began, in epoch seconds: the first run of a rescheduled sensor, else now."""
        if self.reschedule:
            first = context["ti"].get_first_reschedule_date(context)
            if first is not None:
                return first.timestamp()
        return timezone.utcnow().timestamp()

    def execute(self, context: Context) -> Any:
        check_arguments(self, self.argument_checks, rendered=True)
        started = self._started_at(context)
        deadline = deadline_after(self.timeout, started)
        self._not_found_deadline = deadline_after(self.not_found_grace, started)
        try:
            if not self.deferrable:
                return super().execute(context)
            try:
                first = self.poke(context)  # READY now needs no deferral; FAILED raises here
            except AirflowFailException as error:
                if self.soft_fail or self.never_fail:
                    flag = "soft_fail" if self.soft_fail else "never_fail"
                    raise AirflowSkipException(f"Skipping ({flag} is set): {error}") from error
                raise
            if first:
                return first.xcom_value if isinstance(first, PokeReturnValue) else None
        finally:
            self.hook.close()
        self.log.info("Deferring until %s", describe_deadline(deadline))
        self.defer(
            trigger=self._trigger(
                deployflow_conn_id=self.deployflow_conn_id,
                deadline=deadline,
                not_found_deadline=self._not_found_deadline,
                poll_interval=self.poke_interval or 1.0,
                max_poll_interval=self._max_poll_interval(),
            ),
            method_name="execute_complete",
            timeout=datetime.timedelta(seconds=seconds_left(deadline) + DEFER_GRACE),
        )

    def _max_poll_interval(self) -> float:
        interval = self.poke_interval or 1.0
        if not self.exponential_backoff:
            return interval
        return self.max_wait.total_seconds() if self.max_wait else max(interval, 60.0)

    def poke(self, context: Context) -> bool | PokeReturnValue:
        """One look: READY -> done; FAILED or missing past the grace -> fail; otherwise not yet."""
        try:
            with translate_errors(f"Connection {self.deployflow_conn_id!r}"):
                client = self.hook.get_conn()
            status = self._status(client)
        except DeploymentError as error:
            if error.retryable:
                self.log.warning("%s: status check failed, will look again: %s", self._what(), error)
                return False
            raise_for(error, f"Checking {self._what()}")
        if status.state is State.READY:
            self.log.info("%s is READY", self._what())
            return PokeReturnValue(True, self._result(status.state, status.reason))
        if status.state is State.FAILED:
            raise AirflowFailException(f"{self._what()} failed: {status.reason or 'the target reported FAILED'}")
        if status.state is State.NOT_FOUND:
            if self._not_found_deadline is not None and seconds_left(self._not_found_deadline) <= 0:
                raise AirflowFailException(
                    f"{self._what()} does not exist (still not found {self.not_found_grace:g} s after the sensor "
                    "started)"
                )
        self.log.info("%s is %s", self._what(), status)
        return False

    def execute_complete(self, context: Context, event: dict[str, Any] | None = None, **_: Any) -> Any:
        """Resume after the trigger fired: the same outcomes as poking."""
        if not event:
            raise AirflowException(f"{self._what()}: the sensor resumed without a trigger event")
        status = event.get("status")
        if status == "READY":
            self.log.info("%s is READY", self._what())
            return self._result(State.READY, event.get("reason"))
        if status == "TIMEOUT":
            raise AirflowSensorTimeout(f"Sensor has timed out: {event.get('message')}")
        raise_for(error_from_event(event))


class WaitForDeploymentReadySensor(_ReadinessSensor):
    """Wait until deployment ``deployment_name`` is READY.

    :param deployment_name: the deployment (templated).
    :param endpoint: the endpoint it belongs to, for targets that need it (templated).
    :param deployflow_conn_id: the ``deployflow`` connection (templated).
    :param not_found_grace: seconds a missing deployment is tolerated after the sensor starts (default 60;
        templated, checked when the sensor runs).
    :param deferrable: wait in the triggerer; defaults to Airflow's ``[operators] default_deferrable``.
    :param timeout: seconds to wait in total, in every mode (Airflow's sensor ``timeout``).
    :param poke_interval: seconds between looks (in deferrable mode, the trigger's polling interval).

    XCom: ``{"deployment_name", "endpoint", "state": "READY", "reason"}``.
    """

    template_fields: Sequence[str] = ("deployment_name", "endpoint", "deployflow_conn_id", "not_found_grace")

    def __init__(self, *, deployment_name: str, endpoint: str | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.deployment_name = deployment_name
        self.endpoint = endpoint

    def _what(self) -> str:
        return f"Deployment {self.deployment_name!r}"

    def _status(self, client: BaseDeploymentClient) -> Status:
        return client.deployment_status(self.deployment_name, self.endpoint)

    def _trigger(self, **common: Any) -> Any:
        return DeploymentReadyTrigger(deployment_name=self.deployment_name, endpoint=self.endpoint, **common)

    def _result(self, status: State, reason: str | None) -> dict[str, Any]:
        return {
            "deployment_name": self.deployment_name,
            "endpoint": self.endpoint,
            "state": State(status).value,
            "reason": reason,
        }


class WaitForEndpointReadySensor(_ReadinessSensor):
    """Wait until endpoint ``endpoint`` is READY (for ``local``: its router answers and every deployment
    it sends traffic to is READY).

    :param endpoint: the endpoint (templated).
    :param deployflow_conn_id: the ``deployflow`` connection (templated).
    Other parameters as :class:`WaitForDeploymentReadySensor`.

    XCom: ``{"endpoint", "state": "READY", "reason"}``.
    """

    template_fields: Sequence[str] = ("endpoint", "deployflow_conn_id", "not_found_grace")

    def __init__(self, *, endpoint: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.endpoint = endpoint

    def _what(self) -> str:
        return f"Endpoint {self.endpoint!r}"

    def _status(self, client: BaseDeploymentClient) -> Status:
        return client.endpoint_status(self.endpoint)

    def _trigger(self, **common: Any) -> Any:
        return EndpointReadyTrigger(endpoint=self.endpoint, **common)

    def _result(self, status: State, reason: str | None) -> dict[str, Any]:
        return {"endpoint": self.endpoint, "state": State(status).value, "reason": reason}
