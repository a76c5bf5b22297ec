"""``optionstarget``: a client whose constructor takes named keyword options only."""

from __future__ import annotations

from typing import Any

from deployflow import BaseDeploymentClient

from . import note_import

note_import(__name__)


class OptionsClient(BaseDeploymentClient):
    """Accepts ``timeout`` and ``token`` and nothing else."""

    def __init__(self, target_uri: str, *, timeout: float = 10.0, token: str | None = None) -> None:
        super().__init__(target_uri)
        self.timeout = timeout
        self.token = token

    def create_deployment(self, name, model_uri, flavor=None, config=None, endpoint=None):  # type: ignore[no-untyped-def]
        return {"name": name}

    def update_deployment(self, name, model_uri=None, flavor=None, config=None, endpoint=None):  # type: ignore[no-untyped-def]
        return None

    def delete_deployment(self, name, config=None, endpoint=None):  # type: ignore[no-untyped-def]
        return None

    def list_deployments(self, endpoint=None):  # type: ignore[no-untyped-def]
        return []

    def get_deployment(self, name, endpoint=None):  # type: ignore[no-untyped-def]
        return {"name": name}

    def predict(self, deployment_name=None, inputs=None, endpoint=None):  # type: ignore[no-untyped-def]
        return None


def run_local(name: str, model_uri: str, flavor: str | None = None, config: Any = None) -> None:
    return None


def target_help() -> str:
    return "optionstarget: takes timeout= and token="
