"""A client implementing every abstract method, for the test targets that are about something else.

Modules that subclass it only import it, so the registry must not count it as one of their clients.
"""

from __future__ import annotations

from typing import Any

from deployflow import BaseDeploymentClient, PredictionsResponse


class CompleteClient(BaseDeploymentClient):
    """Minimal answers to every required method."""

    def create_deployment(self, name, model_uri, flavor=None, config=None, endpoint=None):  # type: ignore[no-untyped-def]
        return {"name": name, "flavor": flavor}

    def update_deployment(self, name, model_uri=None, flavor=None, config=None, endpoint=None):  # type: ignore[no-untyped-def]
        return {"name": name, "flavor": flavor}

    def delete_deployment(self, name, config=None, endpoint=None):  # type: ignore[no-untyped-def]
        return None

    def list_deployments(self, endpoint=None):  # type: ignore[no-untyped-def]
        return []

    def get_deployment(self, name, endpoint=None):  # type: ignore[no-untyped-def]
        return {"name": name}

    def predict(self, deployment_name=None, inputs=None, endpoint=None):  # type: ignore[no-untyped-def]
        return PredictionsResponse({"predictions": []})


def run_local(name: str, model_uri: str, flavor: str | None = None, config: Any = None) -> None:
    return None


def target_help() -> str:
    return "a test target"
