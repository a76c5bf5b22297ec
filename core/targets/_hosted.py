"""A base for targets whose models someone else deploys: they score, they do not create or delete.

The MLflow deployments server, OpenAI and a remote scoring server answer requests for models that are
configured or run elsewhere. Their clients derive from :class:`HostedModelsClient`, which refuses the
lifecycle methods with one :class:`~deployflow.errors.NotSupportedError` wording; a subclass sets
:attr:`~HostedModelsClient.not_offered` to say why, and overrides what its service does offer.
"""

from __future__ import annotations

from typing import Any, NoReturn

from ..base import BaseDeploymentClient
from ..errors import NotSupportedError

__all__ = ["HostedModelsClient", "refuse_run_local"]


class HostedModelsClient(BaseDeploymentClient):
    """Lifecycle methods that raise :class:`~deployflow.errors.NotSupportedError` with the target's reason."""

    #: The target's name in messages ("the <label> target").
    target_label = "this"
    #: Why this target does not offer a method, shown after "<method> is not supported by ...: ".
    not_offered = "its models are deployed elsewhere."
    #: What to call instead of the deployment read methods, when the target lists endpoints instead.
    deployments_hint = " Use list_endpoints / get_endpoint."

    def _refuse(self, method: str, hint: str = "") -> NoReturn:
        raise NotSupportedError(f"{method} is not supported by the {self.target_label} target: {self.not_offered}{hint}")

    def create_deployment(self, name: str, model_uri: str, flavor: str | None = None, config: dict[str, Any] | None = None, endpoint: str | None = None) -> dict[str, Any]:
        self._refuse("create_deployment")

    def update_deployment(self, name: str, model_uri: str | None = None, flavor: str | None = None, config: dict[str, Any] | None = None, endpoint: str | None = None) -> dict[str, Any]:
        self._refuse("update_deployment")

    def delete_deployment(self, name: str, config: dict[str, Any] | None = None, endpoint: str | None = None) -> None:
        self._refuse("delete_deployment")

    def list_deployments(self, endpoint: str | None = None) -> list[dict[str, Any]]:
        self._refuse("list_deployments", self.deployments_hint)

    def get_deployment(self, name: str, endpoint: str | None = None) -> dict[str, Any]:
        self._refuse("get_deployment", self.deployments_hint)

    def create_endpoint(self, name: str, config: dict[str, Any] | None = None) -> dict[str, Any]:
        self._refuse("create_endpoint")

    def update_endpoint(self, endpoint: str, config: dict[str, Any] | None = None) -> Any:
        self._refuse("update_endpoint")

    def delete_endpoint(self, endpoint: str) -> None:
        self._refuse("delete_endpoint")


def refuse_run_local(target: str) -> NoReturn:
    """``run_local`` of a hosted target: serving a model on this machine is the local target's job."""
    raise NotSupportedError(f"run_local is not supported by the {target} target; use the 'local' target")
