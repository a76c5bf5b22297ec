"""Stand-in for ``mlflow.deployments`` (tests only)."""

from .base import BaseDeploymentClient

__all__ = ["BaseDeploymentClient"]
