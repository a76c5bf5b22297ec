"""``legacytarget``: a plugin written before ``endpoint`` and delete's ``config`` existed.

Its methods have the narrow signatures of MLflow's early deployment plugins, its constructor takes no
options, and ``predict``/``explain`` return plain values instead of a ``PredictionsResponse``.
"""

from __future__ import annotations

from deployflow import BaseDeploymentClient

from . import note_import, record

note_import(__name__)

TARGET = "legacytarget"


class LegacyClient(BaseDeploymentClient):
    """An old-style client: no ``endpoint`` anywhere, no ``config`` on delete or endpoint methods."""

    def __init__(self, target_uri: str) -> None:
        super().__init__(target_uri)

    def create_deployment(self, name, model_uri, flavor=None, config=None):  # type: ignore[no-untyped-def]
        record(TARGET, "create_deployment", name=name, model_uri=model_uri, flavor=flavor, config=config)
        return {"name": name, "flavor": flavor}

    def update_deployment(self, name, model_uri=None, flavor=None, config=None):  # type: ignore[no-untyped-def]
        record(TARGET, "update_deployment", name=name, model_uri=model_uri, flavor=flavor, config=config)
        return {"flavor": flavor}

    def delete_deployment(self, name):  # type: ignore[no-untyped-def,override]
        record(TARGET, "delete_deployment", name=name)

    def list_deployments(self):  # type: ignore[no-untyped-def,override]
        record(TARGET, "list_deployments")
        return ["old-deployment"]

    def get_deployment(self, name):  # type: ignore[no-untyped-def,override]
        record(TARGET, "get_deployment", name=name)
        return {"key1": "val1", "key2": "val2"}

    def predict(self, deployment_name, df):  # type: ignore[no-untyped-def,override]
        record(TARGET, "predict", deployment_name=deployment_name, df=df)
        return [1]

    def explain(self, deployment_name, df):  # type: ignore[no-untyped-def,override]
        record(TARGET, "explain", deployment_name=deployment_name, df=df)
        return "explained"

    def create_endpoint(self, name):  # type: ignore[no-untyped-def,override]
        record(TARGET, "create_endpoint", name=name)
        return {"name": name}

    def update_endpoint(self, endpoint):  # type: ignore[no-untyped-def,override]
        record(TARGET, "update_endpoint", endpoint=endpoint)


def run_local(name, model_uri, flavor=None, config=None):  # type: ignore[no-untyped-def]
    record(TARGET, "run_local", name=name, model_uri=model_uri, flavor=flavor, config=config)


def target_help():  # type: ignore[no-untyped-def]
    return "legacytarget: an old plugin"
