"""Tasks that wait until a deployment or endpoint serves: ``wait_for_deployment_ready``,
``wait_for_endpoint_ready``, and the waiting the create and update tasks share.

One deadline (``timeout`` seconds on the monotonic clock), a log line per state change (not per poll),
failure at once with the target's reason when the deployment reaches a failed state, an event when it
becomes ready or fails, and a link artifact to its URL. The wait arguments are checked first, by the
rule every wait follows (:func:`deployflow.waiting.check_wait_arguments`): a ``timeout`` of ``"soon"``,
``nan`` or a negative number fails the task at once with :class:`deployflow.InvalidInputError`, not
retried, before the target is called.
"""

from __future__ import annotations

import time
from typing import Any, Literal

from prefect import task
from prefect.cache_policies import NO_CACHE

from deployflow import BaseDeploymentClient, DeploymentError, InvalidInputError, Status
from deployflow.waiting import check_wait_arguments

from . import events
from ._runtime import TargetLike, last_attempt, open_client, run_logger, safe, scrub_errors, target_label
from .artifacts import link_artifact
from .retries import retry_if_retryable

__all__ = ["wait_for_deployment_ready", "wait_for_endpoint_ready", "DEFAULT_TIMEOUT"]

#: Seconds a task waits for readiness unless told otherwise (as the client's own default).
DEFAULT_TIMEOUT = 900.0

Kind = Literal["deployment", "endpoint"]


def time_left(timeout: Any, started: float) -> float:
    """Seconds left of a step's ``timeout`` (checked with :func:`check_wait_arguments` first) that
    began at ``started`` (a ``time.monotonic()`` reading); never negative."""
    return max(0.0, float(timeout) - (time.monotonic() - started))


def _not_negative(timeout: Any) -> Any:
    # A negative number here is what is left of a deadline that has passed: no time, not a mistake.
    # Anything else goes to the wait unchanged, whose own check refuses what is not seconds.
    if isinstance(timeout, (int, float)) and not isinstance(timeout, bool) and timeout < 0:
        return 0.0
    return timeout


def wait_ready(
    client: BaseDeploymentClient,
    kind: Kind,
    name: str,
    *,
    target: str,
    timeout: Any,
    poll_interval: Any = 1.0,
    max_poll_interval: Any = 15.0,
    not_found_grace: Any = 30.0,
    endpoint: str | None = None,
) -> dict[str, Any]:
    """Wait with ``client``; log each change, send the ready/failed event, link the URL. Returns the
    small result dict of a ready deployment or endpoint.

    ``timeout`` is the seconds left for the wait: a negative number (a step whose deadline has passed)
    counts as none left; a value that is not seconds is refused by the wait.
    """
    logger = run_logger()
    label = f"{kind.capitalize()} {name!r}"
    started = time.monotonic()

    def on_change(status: Status) -> None:
        logger.info("%s: %s", label, status)

    options: dict[str, Any] = dict(
        timeout=_not_negative(timeout),
        poll_interval=poll_interval,
        max_poll_interval=max_poll_interval,
        not_found_grace=not_found_grace,
        on_change=on_change,
    )
    try:
        if kind == "deployment":
            status = client.wait_for_deployment(name, endpoint, **options)
        else:
            status = client.wait_for_endpoint(name, **options)
    except DeploymentError as error:
        # Wrong wait arguments say nothing about the deployment's health: no "failed" event for them.
        report_failure(kind, name, error, target, unless=(InvalidInputError,))
        raise
    seconds = round(time.monotonic() - started, 3)
    url = _url_of(client, kind, name)
    logger.info("%s is READY%s after %.1f s", label, f" at {url}" if url else "", seconds)
    result = {"name": name, "kind": kind, "state": status.state.value, "url": url, "target": target,
              "seconds": seconds}
    events.emit_state_event(kind, name, events.READY, target=target, payload=result)
    link_artifact(kind, name, url, state=status.state.value, target=target)
    return safe(result)


def report_failure(kind: Kind, name: str, error: BaseException, target: str, *, unless: tuple[type, ...] = ()) -> None:
    """Emit the "failed" event for ``name`` when this was the task's last attempt, except for the error
    types in ``unless`` (a conflict or a missing resource says nothing about the deployment's health)."""
    if last_attempt(error) and not isinstance(error, unless):
        events.emit_state_event(kind, name, events.FAILED, target=target, payload=failure_payload(error))


def failure_payload(error: BaseException) -> dict[str, Any]:
    """What a failed event carries about ``error``."""
    return {
        "state": "FAILED",
        "reason": getattr(error, "reason", None) or str(error),
        "error_type": type(error).__name__,
        "error_code": getattr(error, "error_code", None),
    }


def _url_of(client: BaseDeploymentClient, kind: Kind, name: str) -> str | None:
    try:
        record = client.get_deployment(name) if kind == "deployment" else client.get_endpoint(name)
    except Exception:  # the URL is a convenience; the state decided readiness already
        return None
    if not isinstance(record, dict):
        return None
    url = record.get("url") or record.get("endpoint_url")
    return str(url) if url else None


@task(name="wait_for_deployment_ready", retries=0, retry_condition_fn=retry_if_retryable, cache_policy=NO_CACHE)
@scrub_errors
def wait_for_deployment_ready(
    target: TargetLike,
    name: str,
    *,
    endpoint: str | None = None,
    timeout: float = DEFAULT_TIMEOUT,
    poll_interval: float = 1.0,
    max_poll_interval: float = 15.0,
    not_found_grace: float = 30.0,
) -> dict[str, Any]:
    """Wait until deployment ``name`` serves; fail at once if it reached a failed state.

    ``timeout`` is the one deadline in seconds. Transient errors while polling are tolerated; a missing
    deployment is tolerated for ``not_found_grace`` seconds. Not retried: the deadline is the budget.

    Returns ``{"name", "kind", "state", "url", "target", "seconds"}``.

    Example::

        from prefect import flow
        from deployflow.integrations.prefect import wait_for_deployment_ready

        @flow
        def check():
            return wait_for_deployment_ready("local", "churn", timeout=120)

        check()
    """
    check_wait_arguments(timeout=timeout, poll_interval=poll_interval, max_poll_interval=max_poll_interval,
                         not_found_grace=not_found_grace)
    with open_client(target) as client:
        return wait_ready(
            client, "deployment", name, target=target_label(target), timeout=timeout, poll_interval=poll_interval,
            max_poll_interval=max_poll_interval, not_found_grace=not_found_grace, endpoint=endpoint,
        )


@task(name="wait_for_endpoint_ready", retries=0, retry_condition_fn=retry_if_retryable, cache_policy=NO_CACHE)
@scrub_errors
def wait_for_endpoint_ready(
    target: TargetLike,
    name: str,
    *,
    timeout: float = DEFAULT_TIMEOUT,
    poll_interval: float = 1.0,
    max_poll_interval: float = 15.0,
    not_found_grace: float = 30.0,
) -> dict[str, Any]:
    """Wait until endpoint ``name`` serves; the same rules as :func:`wait_for_deployment_ready`.

    Example::

        from prefect import flow
        from deployflow.integrations.prefect import wait_for_endpoint_ready

        @flow
        def check():
            return wait_for_endpoint_ready("local", "churn-endpoint", timeout=120)

        check()
    """
    check_wait_arguments(timeout=timeout, poll_interval=poll_interval, max_poll_interval=max_poll_interval,
                         not_found_grace=not_found_grace)
    with open_client(target) as client:
        return wait_ready(
            client, "endpoint", name, target=target_label(target), timeout=timeout, poll_interval=poll_interval,
            max_poll_interval=max_poll_interval, not_found_grace=not_found_grace,
        )
