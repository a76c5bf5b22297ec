"""Prefect events for deployments and endpoints that become ready, fail or are rolled back, for
automations and deployment triggers to react to.

Events (``<kind>`` is ``deployment`` or ``endpoint``):

========================================  =====================================================
event                                     payload keys
========================================  =====================================================
``deployflow.<kind>.ready``               ``name``, ``kind``, ``state`` (``"READY"``), ``url``,
                                          ``target``, ``seconds`` (time spent waiting)
``deployflow.<kind>.failed``              ``state`` (``"FAILED"``), ``reason``, ``error_type``,
                                          ``error_code``
``deployflow.<kind>.rolled-back``         ``action`` (what the step had done), ``undo``
                                          (``"deleted"``, ``"restored"`` or ``"nothing"``)
``deployflow.<kind>.rollback-failed``     ``action``, ``reason``, ``error_type``
========================================  =====================================================

The resource of every event is ``deployflow.<kind>.<name>`` (``prefect.resource.id``, for example
``deployflow.deployment.churn``), with the labels ``prefect.resource.name`` (the name),
``deployflow.kind`` and ``deployflow.target`` (the target URI, credentials masked). Every string in a
payload is redacted. A ``ready`` event is sent by every task that waited until READY (the create and
update tasks and the wait tasks); a ``failed`` event once the task will not be retried; the rollback
events by a step's rollback hook (:mod:`.rollback`). A failure to send an event is logged and never
fails the task.

An automation (or a deployment's trigger) matches the event name and the resource id, and can pass
payload values to the flow it runs. "Run the scoring deployment when churn is ready"::

    from prefect.automations import Automation
    from prefect.events.actions import RunDeployment
    from prefect.events.schemas.automations import EventTrigger, Posture

    Automation(
        name="score churn once it serves",
        trigger=EventTrigger(
            expect={"deployflow.deployment.ready"},
            match={"prefect.resource.id": "deployflow.deployment.churn"},
            posture=Posture.Reactive,
            threshold=1,
        ),
        actions=[RunDeployment(source="selected", deployment_id=scoring_deployment_id,
                               parameters={"url": "{{ event.payload.url }}"})],
    ).create()

A deployment's own trigger works the same way: ``DeploymentEventTrigger(expect=..., match=...,
parameters=...)`` given to ``flow.serve(triggers=[...])`` or ``flow.deploy(triggers=[...])`` (which turn
it into such an automation for that deployment). One that pages someone expects
``deployflow.deployment.failed`` and passes ``{"reason": "{{ event.payload.reason }}"}``.
"""

from __future__ import annotations

from typing import Any, Literal

from deployflow.redaction import redact

from ._runtime import run_logger, safe

__all__ = ["READY", "FAILED", "ROLLED_BACK", "ROLLBACK_FAILED", "event_name", "resource_id", "emit_state_event"]

Kind = Literal["deployment", "endpoint"]

READY = "ready"
FAILED = "failed"
#: Sent by a step's rollback hook once it has undone the step (see :mod:`.rollback`).
ROLLED_BACK = "rolled-back"
#: Sent by a step's rollback hook that could not undo the step.
ROLLBACK_FAILED = "rollback-failed"


def event_name(kind: Kind, outcome: str) -> str:
    """``deployflow.<kind>.<outcome>``, for example ``deployflow.deployment.ready``."""
    return f"deployflow.{kind}.{outcome}"


def resource_id(kind: Kind, name: str) -> str:
    """The Prefect resource id of a deployment or endpoint, for example ``deployflow.deployment.churn``."""
    return f"deployflow.{kind}.{name}"


def emit_state_event(
    kind: Kind,
    name: str,
    outcome: str,
    *,
    target: str,
    payload: dict[str, Any] | None = None,
) -> None:
    """Send one event; a failure to send is logged and never fails the task."""
    from prefect.events import emit_event

    try:
        emit_event(
            event=event_name(kind, outcome),
            resource={
                "prefect.resource.id": resource_id(kind, name),
                "prefect.resource.name": name,
                "deployflow.kind": kind,
                "deployflow.target": redact(target),
            },
            payload=safe(payload or {}),
        )
    except Exception as exc:  # events are a notification: the step itself succeeded or failed already
        run_logger().warning("Could not send event %s for %s %r: %s", event_name(kind, outcome), kind, name,
                             redact(exc))
