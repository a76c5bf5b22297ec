"""Operators of the deployflow Airflow provider."""

from __future__ import annotations

from .deployment import CreateDeploymentOperator, DeleteDeploymentOperator, UpdateDeploymentOperator
from .endpoint import CreateEndpointOperator, DeleteEndpointOperator, UpdateEndpointOperator
from .promotion import PromoteOperator
from .scoring import BatchPredictOperator, PredictOperator

__all__ = [
    "CreateDeploymentOperator",
    "UpdateDeploymentOperator",
    "DeleteDeploymentOperator",
    "CreateEndpointOperator",
    "UpdateEndpointOperator",
    "DeleteEndpointOperator",
    "PredictOperator",
    "BatchPredictOperator",
    "PromoteOperator",
]
