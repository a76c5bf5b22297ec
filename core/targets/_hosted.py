"""A base for targets whose models someone else deploys: they score, they do not create or delete.

The MLflow deployments server, OpenAI and a remote scoring server answer requests for models that are
configured or run elsewhere. Their clients derive from :class:`HostedModelsClient`, which refuses the
lifecycle methods with one :class:`~deployflow.errors.NotSupportedError` wording; a subclass sets
:attr:`~HostedModelsClient.not_offered` to say why, and overrides what its service does offer.

:class:`BearerAuth` and :class:`BasicAuth` are the requests auth these clients send their credentials
with: each holds its credential as a :class:`~deployflow.redaction.Secret`, so neither a repr nor a
pickled client sent to another process shows it unmasked.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NoReturn

import requests.auth

from ..base import BaseDeploymentClient
from ..errors import InvalidInputError, NotSupportedError
from ..redaction import Secret

__all__ = ["HostedModelsClient", "BearerAuth", "BasicAuth", "refuse_run_local"]


class BearerAuth(requests.auth.AuthBase):
    """``Authorization: Bearer <token>`` on every request (set as auth, so ~/.netrc cannot replace it)."""

    def __init__(self, token: object) -> None:
        self.token = Secret(token)

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        request.headers["Authorization"] = f"Bearer {self.token.reveal()}"
        return request

    def __repr__(self) -> str:
        return "BearerAuth(***)"


class BasicAuth(requests.auth.AuthBase):
    """HTTP basic auth, encoded as requests encodes a ``(username, password)`` tuple."""

    def __init__(self, username: str, password: object) -> None:
        self.username = username
        self.password = Secret(password)

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        request.headers["Authorization"] = requests.auth._basic_auth_str(self.username, self.password.reveal())
        return request

    def __repr__(self) -> str:
        return f"BasicAuth({self.username!r}, ***)"


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


def split_target_options(options: Mapping[str, Any], known: frozenset[str], label: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """``options`` as (HTTP settings, the target's own options); a name that is neither raises
    :class:`~deployflow.errors.InvalidInputError` listing the known ones."""
    from ..transport import HttpSettings

    settings_options, own = HttpSettings.split_options(options)
    unknown = sorted(set(own) - known)
    if unknown:
        raise InvalidInputError(
            f"Unknown option(s) for the {label} target: {', '.join(unknown)}; known: "
            f"{', '.join(sorted(known | HttpSettings.OPTION_NAMES))}"
        )
    return settings_options, own


def bearer_transport(url: str, settings_options: Mapping[str, Any], own: Mapping[str, Any]) -> Any:
    """The sync transport of a target that takes ``auth_token`` (sent as ``Authorization: Bearer``)
    and extra ``headers`` options, whose values may be held masked."""
    from ..redaction import reveal
    from ..transport import HttpSettings, HttpTransport

    headers = {name: reveal(value) for name, value in dict(own.get("headers") or {}).items()}
    token = reveal(own.get("auth_token"))
    return HttpTransport(url, settings=HttpSettings.from_options(dict(settings_options)), headers=headers,
                         auth=BearerAuth(token) if token else None)


def refuse_run_local(target: str) -> NoReturn:
    """``run_local`` of a hosted target: serving a model on this machine is the local target's job."""
    raise NotSupportedError(f"run_local is not supported by the {target} target; use the 'local' target")
