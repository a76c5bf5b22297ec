"""Prefect tasks and a block for deployflow (``pip install 'deployflow[prefect]'``).

Deploy, wait until the endpoint serves, score, tear down, as steps of a Prefect flow::

    from prefect import flow
    from deployflow.integrations.prefect import (
        DeploymentTarget, batch_predict, create_deployment, delete_deployment,
    )

    @flow
    def nightly_scoring():
        target = DeploymentTarget.load("models-local")          # or a URI string such as "local"
        create_deployment(target, "churn", "python:/srv/models/churn.py:model")  # waits until it serves
        try:
            return batch_predict(target, "/data/customers.parquet", "/data/scores.parquet",
                                 deployment_name="churn")
        finally:
            delete_deployment(target, "churn")

Every task takes a :class:`DeploymentTarget` block or a target URI. The steps are retry-safe and
retried only on errors marked retryable, with the transport's own retries turned off so the two never
multiply (the rule, shared with the Airflow provider: "Retries in pipeline steps" in
:mod:`deployflow.orchestration`; see :mod:`deployflow.integrations.prefect.retries`); nothing is cached; logs go through
``get_run_logger()`` with credentials masked; results are small JSON-safe dicts. Ready and failed
deployments and endpoints send events (:mod:`deployflow.integrations.prefect.events`), which
automations and deployment triggers can react to, and artifacts link to what was deployed and
summarise batch runs.

Inside a Prefect transaction (``with transaction():``) the create and update tasks undo themselves when
a later task in the block fails: what they created is deleted, what they changed goes back to what it
was (:mod:`deployflow.integrations.prefect.rollback`).

Register the block type with ``prefect block register -m deployflow.integrations.prefect``.
"""

from __future__ import annotations

from .block import DeploymentTarget
from .deployments import create_deployment, delete_deployment, get_deployment, update_deployment
from .endpoints import create_endpoint, delete_endpoint, update_endpoint
from .events import event_name, resource_id
from .promotion import promote
from .retries import is_retryable, retry_if_retryable
from .scoring import batch_predict, predict
from .waiting import wait_for_deployment_ready, wait_for_endpoint_ready

__all__ = [
    "DeploymentTarget",
    "create_deployment",
    "update_deployment",
    "delete_deployment",
    "get_deployment",
    "create_endpoint",
    "update_endpoint",
    "delete_endpoint",
    "wait_for_deployment_ready",
    "wait_for_endpoint_ready",
    "predict",
    "batch_predict",
    "promote",
    "is_retryable",
    "retry_if_retryable",
    "event_name",
    "resource_id",
]
