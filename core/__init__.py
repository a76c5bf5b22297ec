"""deployflow: deploy models, wait until they serve, and score data against them.

The ``mlflow.deployments`` interface without MLflow::

    from deployflow import get_deploy_client

    client = get_deploy_client("local")
    client.create_deployment("iris", "python:mypkg.models:iris")
    client.wait_for_deployment("iris", timeout=60)
    print(client.predict("iris", {"inputs": [[5.1, 3.5, 1.4, 0.2]]}))
    client.delete_deployment("iris")

Importing this package loads no heavy library (pandas, pyarrow, numpy, prefect, airflow): they load when
first used.
"""

from __future__ import annotations

import logging as _logging

from .api import get_deploy_client, get_deployments_target, run_local, set_deployments_target, target_help
from .base import BaseDeploymentClient
from .errors import (
    AuthenticationError,
    BadRowsError,
    ConflictError,
    DeploymentError,
    DeploymentFailedError,
    InvalidInputError,
    MissingExtraError,
    NotFoundError,
    NotSupportedError,
    PluginError,
    OutcomeUnknownError,
    RemoteError,
    RequestTimeoutError,
    TargetError,
    TransientError,
    UnknownTargetError,
    WaitTimeoutError,
)
from .orchestration import IF_EXISTS, EnsureResult, StepClient, client_for_steps, ensure_deployment, ensure_endpoint
from .predictions import PredictionsResponse
from .redaction import get_logger as _get_logger
from .registry import list_targets, register_target, unregister_target
from .status import State, Status

__version__ = "0.1.0"

__all__ = [
    "__version__",
    "get_deploy_client",
    "set_deployments_target",
    "get_deployments_target",
    "run_local",
    "target_help",
    "list_targets",
    "register_target",
    "unregister_target",
    "batch_predict",
    "read_output",
    "StepClient",
    "client_for_steps",
    "ensure_deployment",
    "ensure_endpoint",
    "EnsureResult",
    "IF_EXISTS",
    "BatchSummary",
    "Progress",
    "BaseDeploymentClient",
    "PredictionsResponse",
    "State",
    "Status",
    "DeploymentError",
    "TargetError",
    "UnknownTargetError",
    "PluginError",
    "InvalidInputError",
    "BadRowsError",
    "NotFoundError",
    "ConflictError",
    "NotSupportedError",
    "TransientError",
    "RequestTimeoutError",
    "OutcomeUnknownError",
    "RemoteError",
    "AuthenticationError",
    "DeploymentFailedError",
    "WaitTimeoutError",
    "MissingExtraError",
    "promote",
    "PromotionReport",
    "PromotionError",
    "PromotionRejectedError",
    "PromotionRolledBackError",
    "PromotionInconclusiveError",
    "PromotionInterruptedError",
]

_get_logger(__name__).addHandler(_logging.NullHandler())

# Batch scoring pulls in threads, temporary files and hashing; it loads on first use so that
# `import deployflow` stays quick for DAG files and CLIs.
_LAZY = {"batch_predict", "read_output", "BatchSummary", "Progress"}
# Promotion loads with it (it scores through batch_predict).
_LAZY_PROMOTION = {
    "promote",
    "PromotionReport",
    "PromotionError",
    "PromotionRejectedError",
    "PromotionRolledBackError",
    "PromotionInconclusiveError",
    "PromotionInterruptedError",
}


def __getattr__(name: str) -> object:
    if name in _LAZY or name in _LAZY_PROMOTION:
        from . import batch, promotion

        value = getattr(batch if name in _LAZY else promotion, name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'deployflow' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | _LAZY | _LAZY_PROMOTION)
