"""The base of every deployflow operator: the connection, and waiting (blocking or deferred) for READY."""

from __future__ import annotations

import contextlib
import datetime
from functools import cached_property
from typing import TYPE_CHECKING, Any, ClassVar, Iterator, Mapping

from airflow.sdk import BaseOperator
from airflow.sdk.exceptions import AirflowException

from deployflow import BaseDeploymentClient, DeploymentError, DeploymentFailedError, State, Status
from deployflow.orchestration import step_deadline
from deployflow.redaction import redact

from .._common import (
    DEFAULT_CONN_ID,
    DEFER_GRACE,
    ArgumentCheck,
    check_arguments,
    deadline_after,
    default_deferrable,
    describe_deadline,
    error_from_event,
    flag,
    given,
    raise_for,
    seconds,
    seconds_left,
    small_record,
    translate_errors,
)
from ..assets import deployment_asset, endpoint_asset, now_text, set_outlet_extra
from ..hooks.deployment import DeploymentHook
from ..links import DeploymentLink, console_url
from ..triggers.readiness import DeploymentReadyTrigger, EndpointReadyTrigger

if TYPE_CHECKING:
    from airflow.sdk import Context

__all__ = ["DeployflowOperator", "ReadinessWaitingOperator", "WAITING_TEMPLATE_FIELDS"]

#: The waiting settings, templated in every operator that waits (beside the operator's own fields).
WAITING_TEMPLATE_FIELDS = ("wait_for_completion", "timeout", "poll_interval", "max_poll_interval", "not_found_grace")


class DeployflowOperator(BaseOperator):
    """Base of the deployflow operators: holds the connection id and builds the client.

    :param deployflow_conn_id: the ``deployflow`` connection (target URI, token, client options).
    """

    ui_color = "#e8f0fe"

    #: The arguments checked (and converted) by :meth:`check_arguments`, with their checks.
    argument_checks: ClassVar[Mapping[str, ArgumentCheck]] = {}

    def __init__(self, *, deployflow_conn_id: str = DEFAULT_CONN_ID, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.deployflow_conn_id = deployflow_conn_id

    def check_arguments(self, *, rendered: bool) -> None:
        """Check and convert :attr:`argument_checks`: the literal ones when the DAG is parsed (a
        subclass's ``__init__`` calls this last), all of them, rendered, when ``execute`` starts."""
        check_arguments(self, self.argument_checks, rendered=rendered)

    @cached_property
    def hook(self) -> DeploymentHook:
        """The hook for :attr:`deployflow_conn_id` (built after templates are rendered)."""
        return DeploymentHook(self.deployflow_conn_id)

    @contextlib.contextmanager
    def client(self) -> Iterator[BaseDeploymentClient]:
        """The client for this task, closed when the block ends."""
        with translate_errors(f"Connection {self.deployflow_conn_id!r}"):
            client = self.hook.get_conn()
        try:
            yield client
        finally:
            self.hook.close()


class ReadinessWaitingOperator(DeployflowOperator):
    """An operator that can wait, after its change, until the deployment or endpoint is READY.

    :param wait_for_completion: wait until READY before the task succeeds (default ``True``; templated,
        a rendered ``"true"``/``"false"`` is read as a flag).
    :param timeout: seconds the whole task may take, counted from when it starts: the change (the
        target's own start-up of the deployment included) and the wait for READY (default 900;
        templated). The same single deadline applies whether the task waits in its worker or deferred
        in the triggerer.
    :param poll_interval: seconds before the second status check; later checks back off up to
        ``max_poll_interval`` (templated; 0 means 1 s).
    :param max_poll_interval: the longest pause between two status checks (templated; never shorter
        than ``poll_interval``).
    :param not_found_grace: seconds a missing deployment or endpoint is tolerated (a change that has not
        propagated yet) before the task fails (templated).
    :param deferrable: wait in the triggerer instead of holding a worker slot. Defaults to Airflow's
        ``[operators] default_deferrable``, read when the operator is built (when the DAG is parsed).
    :param emit_asset: add the deployment's (or endpoint's) asset to the task's outlets, so that DAGs
        scheduled on it run once the task succeeded (:mod:`deployflow.integrations.airflow.assets`; needs
        a literal name and connection id). Default ``False``.

    Every ``Asset`` in the task's outlets gets, on success, an event whose extra says what the task did
    (target, name, action, state, model URI, URL, flavor, time). The task's "Deployment" button in the
    UI (:class:`~deployflow.integrations.airflow.links.DeploymentLink`) opens the target's console page
    (``console_url`` in the XCom, for ``databricks``) or the served ``url``.

    The durations are numbers of seconds, their text, or ``timedelta``. A literal value is checked
    when the DAG is parsed; a templated one when the task runs, by the same rule, failing the task
    without a retry (:class:`~deployflow.integrations.airflow._common.InvalidArgumentError`, a
    ``ValueError``).

    Only a task that waits in its worker lets the target wait inside the create or update call (on
    ``local``, for the server to load the model); with ``wait_for_completion=False`` or deferrable,
    the target is asked not to wait (config ``wait: false``), so the task returns, or defers, as soon
    as the change is recorded and started.

    Once READY, the task reads the target's record again and its XCom holds what that record says
    (``url``, ``flavor``, ``model_uri``, ...: fields a target may fill in only once the server is up),
    with ``state`` ``"READY"`` and the wait's ``reason``; the same in the worker and after a deferral.

    Outcomes are the same in both modes: READY succeeds; FAILED or still missing fails at once
    (``AirflowFailException``, with the target's reason, no retry); running out of time fails too:
    the timeout is the whole budget of the wait, so a retry would only wait longer than asked.
    """

    operator_extra_links = (DeploymentLink(),)

    argument_checks: ClassVar[Mapping[str, ArgumentCheck]] = {
        "wait_for_completion": flag,
        "timeout": seconds,
        "poll_interval": seconds,
        "max_poll_interval": seconds,
        "not_found_grace": seconds,
    }

    def __init__(
        self,
        *,
        wait_for_completion: bool | str = True,
        timeout: float | datetime.timedelta | str = 900.0,
        poll_interval: float | datetime.timedelta | str = 5.0,
        max_poll_interval: float | datetime.timedelta | str = 30.0,
        not_found_grace: float | datetime.timedelta | str = 30.0,
        deferrable: bool | None = None,
        emit_asset: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.emit_asset = bool(emit_asset)
        self.wait_for_completion = wait_for_completion
        self.timeout = timeout
        self.poll_interval = poll_interval
        self.max_poll_interval = max_poll_interval
        self.not_found_grace = not_found_grace
        self.deferrable = default_deferrable() if deferrable is None else bool(deferrable)

    @contextlib.contextmanager
    def step(self) -> Iterator[None]:
        """The task's one deadline: every call in the block, and the wait after the change, ends by
        ``timeout`` seconds from now (after :meth:`check_arguments`)."""
        self._deadline = deadline_after(self.timeout)
        try:
            with step_deadline(seconds_left(self._deadline)):
                yield
        finally:
            self._deadline = None

    def target_waits(self) -> bool:
        """Whether the target itself should wait in the create/update call: only when this task
        waits in its worker."""
        return bool(self.wait_for_completion) and not self.deferrable

    def _polling(self) -> tuple[float, float]:
        """``(poll_interval, max_poll_interval)`` as the wait uses them (after :meth:`check_arguments`)."""
        first = self.poll_interval or 1.0
        return first, max(self.max_poll_interval, first)

    # Subclasses say what they wait for.
    def _readiness_target(self) -> tuple[str, str | None, str | None]:
        """``(kind, deployment_name, endpoint)`` of what this task waits for."""
        raise NotImplementedError

    def _add_own_asset(self) -> None:
        """With ``emit_asset``, put the asset of what this task changes among its outlets (subclasses
        call this once their names are set)."""
        if not self.emit_asset:
            return
        kind, name, endpoint = self._readiness_target()
        if kind == "deployment":
            asset = deployment_asset(name, conn_id=self.deployflow_conn_id)  # type: ignore[arg-type]
        else:
            asset = endpoint_asset(endpoint, conn_id=self.deployflow_conn_id)  # type: ignore[arg-type]
        if asset not in self.outlets:
            self.outlets = [*self.outlets, asset]

    def finish(self, context: Context, client: BaseDeploymentClient, result: dict[str, Any]) -> dict[str, Any]:
        """The task's XCom: ``result`` with the target's console page (``console_url``) where it has
        one; and the extra of the task's asset events."""
        kind, name, endpoint = self._readiness_target()
        page = console_url(client, endpoint if kind == "endpoint" else (endpoint or name))
        if page:
            result = {**result, "console_url": page}
        keys = ("deployment_name", "endpoint", "action", "state", "model_uri", "url", "flavor")
        set_outlet_extra(self, context, {
            "target": redact(str(getattr(client, "target_uri", ""))),
            **{key: result.get(key) for key in keys if key in result},
            "time": now_text(),
        })
        return result

    def _what(self) -> str:
        kind, name, endpoint = self._readiness_target()
        return f"Deployment {name!r}" if kind == "deployment" else f"Endpoint {endpoint!r}"

    def _status(self, client: BaseDeploymentClient) -> Status:
        kind, name, endpoint = self._readiness_target()
        if kind == "deployment":
            return client.deployment_status(name, endpoint)  # type: ignore[arg-type]
        return client.endpoint_status(endpoint)  # type: ignore[arg-type]

    def _wait_until_ready(self, client: BaseDeploymentClient, result: dict[str, Any]) -> dict[str, Any]:
        """Return ``result`` with the READY state once ready, or defer (raises ``TaskDeferred``)."""
        if not self.wait_for_completion:
            return result
        deadline = getattr(self, "_deadline", None) or deadline_after(self.timeout)
        not_found_deadline = min(deadline, deadline_after(self.not_found_grace))
        if self.deferrable:
            # One look first: a target whose create already waited is READY, and deferring would only
            # cost a round trip through the triggerer.
            try:
                status: Status | None = self._status(client)
            except DeploymentError as error:
                if not error.retryable:
                    raise_for(error, f"Checking {self._what()}")
                status = None
            if status is not None and status.state is State.READY:
                return self._ready(client, result, status.reason)
            if status is not None and status.state is State.FAILED:
                reason = status.reason or "the target reported FAILED"
                raise_for(DeploymentFailedError(f"{self._what()} failed: {reason}", reason=status.reason))
            self.log.info("%s is %s; deferring until %s", self._what(), status, describe_deadline(deadline))
            self.defer(
                trigger=self._trigger(deadline, not_found_deadline, result),
                method_name="execute_complete",
                timeout=datetime.timedelta(seconds=seconds_left(deadline) + DEFER_GRACE),
            )
        self.log.info("Waiting for %s until %s", self._what(), describe_deadline(deadline))
        kind, name, endpoint = self._readiness_target()
        poll_interval, max_poll_interval = self._polling()
        plan = {
            "timeout": seconds_left(deadline),
            "poll_interval": poll_interval,
            "max_poll_interval": max_poll_interval,
            "not_found_grace": seconds_left(not_found_deadline),
        }
        with translate_errors():
            if kind == "deployment":
                status = client.wait_for_deployment(name, endpoint, **plan)  # type: ignore[arg-type]
            else:
                status = client.wait_for_endpoint(endpoint, **plan)  # type: ignore[arg-type]
        return self._ready(client, result, status.reason)

    def _trigger(self, deadline: float, not_found_deadline: float, carry: dict[str, Any]) -> Any:
        kind, name, endpoint = self._readiness_target()
        poll_interval, max_poll_interval = self._polling()
        common = {
            "deployflow_conn_id": self.deployflow_conn_id,
            "deadline": deadline,
            "not_found_deadline": not_found_deadline,
            "poll_interval": poll_interval,
            "max_poll_interval": max_poll_interval,
            "carry": carry,
        }
        if kind == "deployment":
            return DeploymentReadyTrigger(deployment_name=name, endpoint=endpoint, **common)  # type: ignore[arg-type]
        return EndpointReadyTrigger(endpoint=endpoint, **common)  # type: ignore[arg-type]

    def execute_complete(self, context: Context, event: dict[str, Any] | None = None, **_: Any) -> dict[str, Any]:
        """Resume after the trigger fired: READY returns the result, anything else raises."""
        if not event:
            raise AirflowException(f"{self._what()}: the task resumed without a trigger event")
        carry = dict(event.get("carry") or {})
        if event.get("status") == "READY":
            self.log.info("%s is READY", self._what())
            with self.client() as client:
                return self.finish(context, client, self._ready(client, carry, event.get("reason")))
        raise_for(error_from_event(event))

    def read_record(self, client: BaseDeploymentClient) -> Any:
        """The target's record of what this task waits for, as it reads now."""
        kind, name, endpoint = self._readiness_target()
        if kind == "deployment":
            return client.get_deployment(name, **given(endpoint=endpoint))  # type: ignore[arg-type]
        return client.get_endpoint(endpoint)  # type: ignore[arg-type]

    def _ready(self, client: BaseDeploymentClient, result: dict[str, Any], reason: str | None) -> dict[str, Any]:
        """``result`` with the record read once READY (a URL or flavor known only once the server is up),
        then state READY and the wait's reason."""
        with translate_errors(f"Reading {self._what()} once READY"):
            record = self.read_record(client)
        return {**result, **small_record(record), "state": State.READY.value, "reason": reason}
