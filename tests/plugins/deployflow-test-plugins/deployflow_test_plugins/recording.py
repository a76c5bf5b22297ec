"""``recordtarget``: a complete, modern target whose client records every call it receives.

The target URI chooses a failure mode, so one installed plugin covers the error paths too:

* ``recordtarget:/fail-deployment`` makes every method raise a deployflow ``NotFoundError``;
* ``recordtarget:/fail-runtime`` makes every method raise a plain ``RuntimeError``.

Both messages carry a credential-looking value, so tests can check it never reaches the terminal.
"""

from __future__ import annotations

from typing import Any

from deployflow import BaseDeploymentClient, NotFoundError, PredictionsResponse

from . import note_import, record

note_import(__name__)

TARGET = "recordtarget"
#: A value shaped like a credential, present in the failure messages below.
LEAKY_SECRET = "hunter2hunter2"


class RecordingClient(BaseDeploymentClient):
    """Answers every call with a small, predictable record and remembers the call."""

    def _enter(self, method: str, **arguments: Any) -> None:
        record(TARGET, method, target_uri=self.target_uri, **arguments)
        if self.target_uri.endswith("/fail-deployment"):
            raise NotFoundError(f"Deployment is gone (sent with password={LEAKY_SECRET})")
        if self.target_uri.endswith("/fail-runtime"):
            raise RuntimeError(f"plugin exploded (password={LEAKY_SECRET})")

    def create_deployment(
        self,
        name: str,
        model_uri: str,
        flavor: str | None = None,
        config: dict[str, Any] | None = None,
        endpoint: str | None = None,
    ) -> dict[str, Any]:
        self._enter("create_deployment", name=name, model_uri=model_uri, flavor=flavor, config=config, endpoint=endpoint)
        return {"name": name, "flavor": flavor, "model_uri": model_uri}

    def update_deployment(
        self,
        name: str,
        model_uri: str | None = None,
        flavor: str | None = None,
        config: dict[str, Any] | None = None,
        endpoint: str | None = None,
    ) -> dict[str, Any]:
        self._enter("update_deployment", name=name, model_uri=model_uri, flavor=flavor, config=config, endpoint=endpoint)
        return {"name": name, "flavor": flavor}

    def delete_deployment(
        self, name: str, config: dict[str, Any] | None = None, endpoint: str | None = None
    ) -> None:
        self._enter("delete_deployment", name=name, config=config, endpoint=endpoint)

    def list_deployments(self, endpoint: str | None = None) -> list[dict[str, Any]]:
        self._enter("list_deployments", endpoint=endpoint)
        return [{"name": "alpha"}, {"name": "beta"}]

    def get_deployment(self, name: str, endpoint: str | None = None) -> dict[str, Any]:
        self._enter("get_deployment", name=name, endpoint=endpoint)
        return {"name": name, "state": "READY", "endpoint": endpoint}

    def predict(
        self, deployment_name: str | None = None, inputs: Any = None, endpoint: str | None = None
    ) -> PredictionsResponse:
        self._enter("predict", deployment_name=deployment_name, inputs=inputs, endpoint=endpoint)
        if hasattr(inputs, "to_dict"):  # a DataFrame: echo its rows
            return PredictionsResponse({"predictions": inputs.to_dict(orient="records")})
        return PredictionsResponse({"predictions": inputs})

    def explain(self, deployment_name: str | None = None, df: Any = None, endpoint: str | None = None) -> Any:
        self._enter("explain", deployment_name=deployment_name, df=df, endpoint=endpoint)
        import pandas as pd

        columns = list(df.columns) if hasattr(df, "columns") else ["input"]
        return pd.DataFrame({"feature": columns, "importance": [1.0 / len(columns)] * len(columns)})

    def create_endpoint(self, name: str, config: dict[str, Any] | None = None) -> dict[str, Any]:
        self._enter("create_endpoint", name=name, config=config)
        return {"name": name, "config": config}

    def update_endpoint(self, endpoint: str, config: dict[str, Any] | None = None) -> dict[str, Any]:
        self._enter("update_endpoint", endpoint=endpoint, config=config)
        return {"name": endpoint, "config": config}

    def delete_endpoint(self, endpoint: str) -> None:
        self._enter("delete_endpoint", endpoint=endpoint)

    def list_endpoints(self) -> list[dict[str, Any]]:
        self._enter("list_endpoints")
        return [{"name": "chat"}, {"name": "embeddings"}]

    def get_endpoint(self, endpoint: str) -> dict[str, Any]:
        self._enter("get_endpoint", endpoint=endpoint)
        return {"name": endpoint, "endpoint_type": "llm/v1/chat"}


def run_local(name: str, model_uri: str, flavor: str | None = None, config: dict[str, Any] | None = None) -> None:
    """Pretend to serve locally: record the call and say so."""
    record(TARGET, "run_local", name=name, model_uri=model_uri, flavor=flavor, config=config)
    print(f"Serving {name} from {model_uri} locally (flavor {flavor}, config {config})")


def target_help() -> str:
    """The help text; it holds a credential-shaped example so tests can check it is masked."""
    return (
        "recordtarget: a test target that records calls.\n"
        "URI forms: recordtarget, recordtarget:/fail-deployment, recordtarget:/fail-runtime\n"
        f"Example: -C token={LEAKY_SECRET}"
    )
