"""Prefect events for deployments and endpoints that become ready or fail, for automations to react to.

Event names: ``deployflow.deployment.ready``, ``deployflow.deployment.failed``,
``deployflow.endpoint.ready``, ``deployflow.endpoint.failed``. The resource is
``deployflow.deployment.<name>`` (or ``deployflow.endpoint.<name>``) with the labels
``prefect.resource.name`` (the name), ``deployflow.kind`` and ``deployflow.target`` (the target URI, with
credentials masked). The payload holds ``state``, ``reason``, ``url`` and, for failures, ``error_type``
and ``error_code``. A failure event is sent once the task will not be retried.

An automation that pages someone when a deployment fails matches ``deployflow.deployment.failed``;
one that starts a scoring flow matches ``deployflow.deployment.ready`` on ``deployflow.deployment.churn``.
"""

from __future__ import annotations

from typing import Any, Literal

from deployflow.redaction import redact

from ._runtime import run_logger, safe

__all__ = ["READY", "FAILED", "event_name", "resource_id", "emit_state_event"]

Kind = Literal["deployment", "endpoint"]

READY = "ready"
FAILED = "failed"


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
