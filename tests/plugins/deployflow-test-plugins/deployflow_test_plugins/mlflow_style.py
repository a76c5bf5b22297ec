"""``mlflowstyle``: a plugin written for MLflow, registered in MLflow's ``mlflow.deployments`` group.

It subclasses ``mlflow.deployments.BaseDeploymentClient`` and knows nothing of deployflow. The tests
load it with a small stand-in for MLflow on ``PYTHONPATH`` (``tests/plugins/fake_mlflow``).
"""

from __future__ import annotations

from typing import Any

from mlflow.deployments import BaseDeploymentClient


class MlflowStyleClient(BaseDeploymentClient):
    """An MLflow plugin client: every deployment it knows is ready."""

    def create_deployment(self, name, model_uri, flavor=None, config=None, endpoint=None):  # type: ignore[no-untyped-def]
        return {"name": name, "flavor": flavor}

    def update_deployment(self, name, model_uri=None, flavor=None, config=None, endpoint=None):  # type: ignore[no-untyped-def]
        return {"name": name, "flavor": flavor}

    def delete_deployment(self, name, config=None, endpoint=None):  # type: ignore[no-untyped-def]
        return None

    def list_deployments(self, endpoint=None):  # type: ignore[no-untyped-def]
        return [{"name": "m1"}]

    def get_deployment(self, name, endpoint=None):  # type: ignore[no-untyped-def]
        return {"name": name, "state": "READY"}

    def predict(self, deployment_name=None, inputs=None, endpoint=None):  # type: ignore[no-untyped-def]
        return {"predictions": [0]}


def run_local(name: str, model_uri: str, flavor: str | None = None, config: Any = None) -> None:
    return None


def target_help() -> str:
    return "mlflowstyle: an MLflow plugin"
