"""Tasks for deployments: ``create_deployment`` (retry-safe), ``update_deployment``, ``delete_deployment``,
``get_deployment``."""

from __future__ import annotations

import time
from typing import Any, Literal

from prefect import task

from deployflow import ConflictError, DeploymentError, NotFoundError, ensure_deployment
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

__all__ = ["create_deployment", "update_deployment", "delete_deployment", "get_deployment"]

IfExists = Literal["adopt", "update", "fail"]

_STEP = step_options()


@task(name="create_deployment", **_STEP)
@scrub_errors
def create_deployment(
    target: TargetLike,
    name: str,
    model_uri: str,
    *,
    flavor: str | None = None,
    config: dict[str, Any] | None = None,
    endpoint: str | None = None,
    if_exists: IfExists = "adopt",
    wait: bool = True,
    timeout: float = DEFAULT_TIMEOUT,
    poll_interval: float = 1.0,
) -> dict[str, Any]:
    """Deploy ``model_uri`` as ``name`` and (by default) wait until it serves.

    Retry-safe: when ``name`` exists already (for example because an earlier attempt created it and its
    answer was lost), ``if_exists`` decides:

    * ``"adopt"`` (default): use it if its model URI, flavor and the given config keys match; otherwise
      fail with :class:`deployflow.ConflictError` (not retried) naming the differences;
    * ``"update"``: roll it forward to this spec with ``update_deployment``;
    * ``"fail"``: fail with :class:`deployflow.ConflictError`.

    A deployment that exists with this spec but FAILED is rolled forward (``"updated"``), not adopted.

    Trust boundary: on ``local``, loading a pickle, joblib or ``python:`` model runs the code it holds,
    with the rights of the process that serves it, so a ``model_uri`` taken from a flow parameter is code
    execution for whoever can start this flow or set its parameters; take it only from values you control.

    Inside a Prefect transaction (``with transaction():``), a later failure in the block undoes the
    step: a deployment it created is deleted, one it rolled forward goes back to its previous model and
    config, one it adopted is left alone (:mod:`deployflow.integrations.prefect.rollback`).

    ``config`` values may be ``SecretStr`` (for example ``block.auth_token``): they are passed in clear to
    the target only. ``timeout`` is one deadline in seconds from the start of the task for the whole
    step: the create, the target's own start-up of the deployment (on ``local``, the server loading
    the model) and the wait until it serves. ``wait=False`` returns as soon as the target has recorded
    the deployment and started it (the target is given config ``wait: false``); wait afterwards with
    :func:`~deployflow.integrations.prefect.wait_for_deployment_ready`, which fails with the target's
    reason if it could not start. Retried only on retryable errors (see
    :mod:`deployflow.integrations.prefect.retries`); never cached.

    Returns ``{"name", "action": "created"|"adopted"|"updated", "state", "url", "target", "model_uri"}``,
    plus ``"kind"`` and ``"seconds"`` (the time spent waiting) when it waited.

    Example::

        from prefect import flow
        from deployflow.integrations.prefect import create_deployment, delete_deployment

        @flow
        def deploy():
            deployment = create_deployment("local", "churn", "python:/srv/models/churn.py:model")
            print(deployment["url"])
            delete_deployment("local", "churn")

        deploy()
    """
    started = time.monotonic()
    check_wait_arguments(timeout=timeout, poll_interval=poll_interval)  # before anything is created
    logger = run_logger()
    label = target_label(target)
    # One deadline for the whole step.
    where = {"endpoint": endpoint} if endpoint is not None else {}
    with step_deadline(timeout), open_client(target) as client:
        before = rollback.snapshot_before(lambda: client.get_deployment(name, **where))
        try:
            ensured = ensure_deployment(
                client, name, model_uri, flavor=flavor, config=reveal(config) if config is not None else None,
                endpoint=endpoint, if_exists=if_exists, wait=wait,
            )
        except DeploymentError as error:
            report_failure("deployment", name, error, label, unless=(ConflictError,))
            raise
        action = ensured.action
        logger.info("Deployment %r %s on %s (model %s)", name, action, label, model_uri)
        result = _result(name, action, ensured.record, label, model_uri)
        if wait:
            result.update(
                wait_ready(client, "deployment", name, target=label, timeout=time_left(timeout, started),
                           poll_interval=poll_interval)
            )
            result["action"] = action
        else:
            link_artifact("deployment", name, result.get("url"), state=str(result.get("state")), target=label)
    rollback.stage_undo("deployment", name, target=target, before=before, action=action, config=config,
                        timeout=timeout, endpoint=endpoint)
    return safe(result)


def _result(name: str, action: str, record: Any, target: str, model_uri: str) -> dict[str, Any]:
    record = record if isinstance(record, dict) else {}
    state = record.get("state")
    return {
        "name": name,
        "action": action,
        "state": str(state) if state is not None else None,
        "url": record.get("url") or record.get("endpoint_url"),
        "target": target,
        "model_uri": record.get("model_uri") or model_uri,
    }


@task(name="update_deployment", **_STEP)
@scrub_errors
def update_deployment(
    target: TargetLike,
    name: str,
    model_uri: str | None = None,
    *,
    flavor: str | None = None,
    config: dict[str, Any] | None = None,
    endpoint: str | None = None,
    wait: bool = True,
    timeout: float = DEFAULT_TIMEOUT,
    poll_interval: float = 1.0,
) -> dict[str, Any]:
    """Roll deployment ``name`` forward to a new model, flavor and/or config, then (by default) wait.

    Repeating an update with the same arguments converges on the same deployment, so retryable errors
    are retried. ``timeout`` and ``wait`` as for :func:`create_deployment`: one deadline for the whole
    step, the new server's start included; ``wait=False`` returns once the target has started the
    update. Returns ``{"name", "action": "updated", "state", "url", "target", "model_uri"}`` (plus
    ``"kind"`` and ``"seconds"`` when it waited). Inside a Prefect transaction, a later failure in the
    block puts the deployment back on the model, flavor and config values it had before this step (see
    :func:`create_deployment`).

    Example::

        from prefect import flow
        from deployflow.integrations.prefect import update_deployment

        @flow
        def roll_forward():
            return update_deployment("local", "churn", "python:/srv/models/churn_v2.py:model")

        roll_forward()
    """
    started = time.monotonic()
    check_wait_arguments(timeout=timeout, poll_interval=poll_interval)  # before anything is changed
    label = target_label(target)
    logger = run_logger()
    extra = {"endpoint": endpoint} if endpoint is not None else {}
    call_config = step_config(reveal(config) if config is not None else None, wait=wait)
    # One deadline for the whole step.
    with step_deadline(timeout), open_client(target) as client:
        before = rollback.snapshot_before(lambda: client.get_deployment(name, **extra))
        try:
            record = client.update_deployment(name, model_uri, flavor=flavor, config=call_config, **extra)
        except DeploymentError as error:
            report_failure("deployment", name, error, label, unless=(ConflictError, NotFoundError))
            raise
        if not isinstance(record, dict):
            record = client.get_deployment(name)
        logger.info("Deployment %r updated on %s", name, label)
        result = _result(name, "updated", record, label, model_uri or "")
        if wait:
            result.update(wait_ready(client, "deployment", name, target=label, timeout=time_left(timeout, started),
                                     poll_interval=poll_interval))
            result["action"] = "updated"
    rollback.stage_undo("deployment", name, target=target, before=before, action="updated", config=config,
                        timeout=timeout, endpoint=endpoint)
    return safe(result)


@task(name="delete_deployment", **_STEP)
@scrub_errors
def delete_deployment(
    target: TargetLike, name: str, *, config: dict[str, Any] | None = None, endpoint: str | None = None
) -> dict[str, Any]:
    """Delete deployment ``name``. Idempotent: deleting what does not exist succeeds.

    Returns ``{"name", "deleted": True, "target"}``.

    Example::

        from prefect import flow
        from deployflow.integrations.prefect import delete_deployment

        @flow
        def tear_down():
            return delete_deployment("local", "churn")

        tear_down()
    """
    extra = {"endpoint": endpoint} if endpoint is not None else {}
    label = target_label(target)
    with open_client(target) as client:
        try:
            client.delete_deployment(name, config=reveal(config) if config is not None else None, **extra)
        except NotFoundError:
            pass  # an MLflow plugin that is not idempotent: gone is what we wanted
    run_logger().info("Deployment %r deleted from %s", name, label)
    return safe({"name": name, "deleted": True, "target": label})


@task(name="get_deployment", **_STEP)
@scrub_errors
def get_deployment(target: TargetLike, name: str, *, endpoint: str | None = None) -> dict[str, Any]:
    """The record of deployment ``name`` (JSON-safe, credentials masked), with its current ``state`` and
    ``reason``. Raises :class:`deployflow.NotFoundError` (not retried) when it does not exist.

    Example::

        from prefect import flow
        from deployflow.integrations.prefect import get_deployment

        @flow
        def show():
            return get_deployment("local", "churn")["state"]

        show()
    """
    with open_client(target) as client:
        record = client.get_deployment(name, endpoint) if endpoint is not None else client.get_deployment(name)
        status = client.deployment_status(name, endpoint)
    result = dict(record) if isinstance(record, dict) else {"record": record}
    result.update(name=name, state=status.state.value, reason=status.reason)
    return safe(result)
