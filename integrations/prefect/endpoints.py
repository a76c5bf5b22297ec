"""Tasks for endpoints: ``create_endpoint`` (retry-safe), ``update_endpoint``, ``delete_endpoint``."""

from __future__ import annotations

import time
from typing import Any, Literal

from prefect import task

from deployflow import ConflictError, DeploymentError, NotFoundError, ensure_endpoint
from deployflow.orchestration import step_config, step_deadline
from deployflow.waiting import check_wait_arguments

from ._runtime import (
    TargetLike,
    open_client,
    reveal,
    run_logger,
    safe,
    scrub_errors,
    target_label,
)
from . import rollback
from .artifacts import link_artifact
from .retries import step_options
from .waiting import DEFAULT_TIMEOUT, report_failure, time_left, wait_ready

__all__ = ["create_endpoint", "update_endpoint", "delete_endpoint"]

_STEP = step_options()


@task(name="create_endpoint", **_STEP)
@scrub_errors
def create_endpoint(
    target: TargetLike,
    name: str,
    config: dict[str, Any] | None = None,
    *,
    if_exists: Literal["adopt", "update", "fail"] = "adopt",
    wait: bool = True,
    timeout: float = DEFAULT_TIMEOUT,
    poll_interval: float = 1.0,
) -> dict[str, Any]:
    """Create endpoint ``name`` and (by default) wait until it serves.

    Retry-safe like ``create_deployment``: an existing endpoint is adopted when every config key it
    shows matches the requested one (``"adopt"``), changed with ``update_endpoint`` (``"update"``), or
    refused (``"fail"``); a mismatch under ``"adopt"`` fails with :class:`deployflow.ConflictError`.

    An endpoint that exists with this config but FAILED is rolled forward (``"updated"``), not adopted.
    ``timeout`` is one deadline in seconds for the whole step (the create, the target's start of the
    endpoint, the wait); ``wait=False`` returns once the target has recorded the endpoint and started it.
    Inside a Prefect transaction, a later failure in the block deletes an endpoint this step created and
    puts back the config values of one it changed (:mod:`deployflow.integrations.prefect.rollback`).

    Returns ``{"name", "action", "state", "url", "target"}``.

    Example::

        from prefect import flow
        from deployflow.integrations.prefect import create_endpoint

        @flow
        def expose():
            routes = [{"deployment": "churn-v1", "traffic": 90}, {"deployment": "churn-v2", "traffic": 10}]
            return create_endpoint("local", "churn", {"routes": routes})

        expose()
    """
    started = time.monotonic()
    check_wait_arguments(timeout=timeout, poll_interval=poll_interval)  # before anything is created
    label = target_label(target)
    logger = run_logger()
    with step_deadline(timeout), open_client(target) as client:
        before = rollback.snapshot_before(lambda: client.get_endpoint(name))
        try:
            ensured = ensure_endpoint(
                client, name, config=reveal(config) if config is not None else None, if_exists=if_exists,
                wait=wait,
            )
        except DeploymentError as error:
            report_failure("endpoint", name, error, label, unless=(ConflictError,))
            raise
        action = ensured.action
        logger.info("Endpoint %r %s on %s", name, action, label)
        result = _result(name, action, ensured.record, label)
        if wait:
            result.update(wait_ready(client, "endpoint", name, target=label, timeout=time_left(timeout, started),
                                     poll_interval=poll_interval))
            result["action"] = action
        else:
            link_artifact("endpoint", name, result.get("url"), state=str(result.get("state")), target=label)
    rollback.stage_undo("endpoint", name, target=target, before=before, action=action, config=config, timeout=timeout)
    return safe(result)


def _result(name: str, action: str, record: Any, target: str) -> dict[str, Any]:
    record = record if isinstance(record, dict) else {}
    state = record.get("state")
    return {
        "name": name,
        "action": action,
        "state": str(state) if state is not None else None,
        "url": record.get("url") or record.get("endpoint_url"),
        "target": target,
    }


@task(name="update_endpoint", **_STEP)
@scrub_errors
def update_endpoint(
    target: TargetLike,
    name: str,
    config: dict[str, Any] | None = None,
    *,
    wait: bool = True,
    timeout: float = DEFAULT_TIMEOUT,
    poll_interval: float = 1.0,
) -> dict[str, Any]:
    """Change endpoint ``name``'s configuration (for example its traffic split), then (by default) wait.

    ``timeout`` and ``wait`` as for :func:`create_endpoint`; inside a Prefect transaction, a later failure
    in the block puts back the values this step changed. Returns ``{"name", "action": "updated",
    "state", "url", "target"}``.

    Example::

        from prefect import flow
        from deployflow.integrations.prefect import update_endpoint

        @flow
        def promote():
            return update_endpoint("local", "churn", {"routes": [{"deployment": "churn-v2", "traffic": 100}]})

        promote()
    """
    started = time.monotonic()
    check_wait_arguments(timeout=timeout, poll_interval=poll_interval)  # before anything is changed
    label = target_label(target)
    logger = run_logger()
    call_config = step_config(reveal(config) if config is not None else None, wait=wait)
    with step_deadline(timeout), open_client(target) as client:
        before = rollback.snapshot_before(lambda: client.get_endpoint(name))
        try:
            record = client.update_endpoint(name, config=call_config)
        except DeploymentError as error:
            report_failure("endpoint", name, error, label, unless=(ConflictError, NotFoundError))
            raise
        if not isinstance(record, dict):
            record = client.get_endpoint(name)
        logger.info("Endpoint %r updated on %s", name, label)
        result = _result(name, "updated", record, label)
        if wait:
            result.update(wait_ready(client, "endpoint", name, target=label, timeout=time_left(timeout, started),
                                     poll_interval=poll_interval))
            result["action"] = "updated"
    rollback.stage_undo("endpoint", name, target=target, before=before, action="updated", config=config,
                        timeout=timeout)
    return safe(result)


@task(name="delete_endpoint", **_STEP)
@scrub_errors
def delete_endpoint(target: TargetLike, name: str) -> dict[str, Any]:
    """Delete endpoint ``name``. Idempotent. Returns ``{"name", "deleted": True, "target"}``.

    Example::

        from prefect import flow
        from deployflow.integrations.prefect import delete_endpoint

        @flow
        def tear_down():
            return delete_endpoint("local", "churn")

        tear_down()
    """
    label = target_label(target)
    with open_client(target) as client:
        try:
            client.delete_endpoint(name)
        except NotFoundError:
            pass
    run_logger().info("Endpoint %r deleted from %s", name, label)
    return safe({"name": name, "deleted": True, "target": label})
