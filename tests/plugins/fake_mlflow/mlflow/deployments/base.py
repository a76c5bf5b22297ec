"""Stand-in for ``mlflow.deployments.base`` (tests only): the base class MLflow plugins derive from."""

from __future__ import annotations

import abc
from typing import Any


class BaseDeploymentClient(abc.ABC):
    """The shape of MLflow's base client: the constructor keeps the URI; six methods are abstract."""

    def __init__(self, target_uri: str) -> None:
        self.target_uri = target_uri

    @abc.abstractmethod
    def create_deployment(self, name, model_uri, flavor=None, config=None, endpoint=None):  # type: ignore[no-untyped-def]
        """Deploy a model."""

    @abc.abstractmethod
    def update_deployment(self, name, model_uri=None, flavor=None, config=None, endpoint=None):  # type: ignore[no-untyped-def]
        """Update a deployment."""

    @abc.abstractmethod
    def delete_deployment(self, name, config=None, endpoint=None):  # type: ignore[no-untyped-def]
        """Delete a deployment."""

    @abc.abstractmethod
    def list_deployments(self, endpoint=None):  # type: ignore[no-untyped-def]
        """List deployments."""

    @abc.abstractmethod
    def get_deployment(self, name, endpoint=None):  # type: ignore[no-untyped-def]
        """Describe a deployment."""

    @abc.abstractmethod
    def predict(self, deployment_name=None, inputs=None, endpoint=None):  # type: ignore[no-untyped-def]
        """Score inputs."""

    def explain(self, deployment_name: Any = None, df: Any = None, endpoint: Any = None) -> Any:
        raise NotImplementedError("Computing model explanations is not yet supported for this deployment target")
