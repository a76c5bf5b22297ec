"""The ``openai`` target: OpenAI's API, an OpenAI-compatible server, or Azure OpenAI.

URI: ``openai``. Models are the endpoints: ``list_endpoints`` / ``get_endpoint`` read ``/models`` from the
configured base URL (MLflow's client always asks api.openai.com, whatever the base URL); ``predict`` picks
the API from the request: ``messages`` -> chat completions, ``prompt`` -> completions, ``input`` ->
embeddings; ``predict_stream`` streams chat and completions. No openai package is needed.

Azure OpenAI (``api_type="azure"`` or ``OPENAI_API_TYPE=azure``): requests go to
``{api_base}/openai/deployments/{deployment}/...?api-version=...`` with the ``api-key`` header
(``azure_ad``: a bearer token instead). The deployment is ``deployment_name`` when configured (as in
MLflow), else the ``endpoint`` argument.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import requests.auth

from ..errors import AuthenticationError, InvalidInputError, NotFoundError, TargetError
from ..predictions import PredictionsResponse
from ..redaction import Secret, get_logger, register_secret, reveal
from ..status import State, Status
from ..transport import HttpSettings, HttpTransport
from ._hosted import HostedModelsClient, refuse_run_local, split_target_options
from ._sse import stream_json

__all__ = ["OpenAIDeploymentClient", "OpenAISettings", "run_local", "target_help"]

logger = get_logger(__name__)

DEFAULT_BASE_URL = "https://api.openai.com/v1"
_AZURE_TYPES = frozenset({"azure", "azure_ad", "azuread"})
_API_TYPES = frozenset({"openai", "open_ai", *_AZURE_TYPES})
_OPTIONS = frozenset(
    {"api_key", "base_url", "api_base", "api_type", "api_version", "deployment_name", "organization", "project", "headers"}
)
#: Request key -> the API that takes it, in the order they are looked for.
_TASKS = (("messages", "chat/completions"), ("prompt", "completions"), ("input", "embeddings"))
_STREAMING = frozenset({"chat/completions", "completions"})


@dataclass(frozen=True)
class OpenAISettings:
    """Where and how to call the API. The repr never shows the key; the key is registered for
    redaction when the settings are made, and again when they are unpickled in another process."""

    api_key: str = field(repr=False)
    base_url: str
    api_type: str = "openai"
    api_version: str | None = None
    deployment_name: str | None = None
    organization: str | None = None
    project: str | None = None

    def __post_init__(self) -> None:
        register_secret(self.api_key)

    def __reduce__(self) -> tuple[Any, ...]:
        # Through the constructor, so __post_init__ registers the key in the process that loads it.
        return (OpenAISettings, (self.api_key, self.base_url, self.api_type, self.api_version,
                                 self.deployment_name, self.organization, self.project))

    @property
    def is_azure(self) -> bool:
        return self.api_type in _AZURE_TYPES

    @classmethod
    def from_options(cls, options: Mapping[str, Any], environ: Mapping[str, str] | None = None) -> OpenAISettings:
        """Options win over environment variables (see :func:`target_help` for the names)."""
        environ = os.environ if environ is None else environ

        def pick(option: str, *variables: str) -> str | None:
            value = reveal(options.get(option))
            if value not in (None, ""):
                return str(value)
            for variable in variables:
                if environ.get(variable):
                    return environ[variable]
            return None

        api_type = (pick("api_type", "OPENAI_API_TYPE") or "openai").strip().lower()
        if api_type not in _API_TYPES:
            raise TargetError(f"Unknown OpenAI api_type {api_type!r}: use 'openai', 'azure' or 'azure_ad'")
        azure = api_type in _AZURE_TYPES
        key = pick("api_key", "OPENAI_API_KEY", *(("AZURE_OPENAI_API_KEY",) if azure else ()))
        if not key:
            raise AuthenticationError(
                "No OpenAI API key: pass api_key= to get_deploy_client or set OPENAI_API_KEY"
                + (" (or AZURE_OPENAI_API_KEY)" if azure else "")
            )
        if azure:
            base = pick("api_base", "OPENAI_API_BASE", "AZURE_OPENAI_ENDPOINT") or pick("base_url")
            if not base:
                raise TargetError("Azure OpenAI needs the resource URL: pass api_base= or set OPENAI_API_BASE")
            version = pick("api_version", "OPENAI_API_VERSION")
            if not version:
                raise TargetError("Azure OpenAI needs an API version: pass api_version= or set OPENAI_API_VERSION")
        else:
            base = pick("base_url", "OPENAI_BASE_URL") or pick("api_base", "OPENAI_API_BASE") or DEFAULT_BASE_URL
            version = pick("api_version")
        return cls(
            api_key=key.strip(),
            base_url=base.strip().rstrip("/"),
            api_type="openai" if api_type == "open_ai" else api_type,
            api_version=version,
            deployment_name=pick("deployment_name", "OPENAI_DEPLOYMENT_NAME") if azure else None,
            organization=pick("organization", "OPENAI_ORG_ID", "OPENAI_ORGANIZATION"),
            project=pick("project", "OPENAI_PROJECT_ID"),
        )


class _KeyAuth(requests.auth.AuthBase):
    """The key as ``Authorization: Bearer`` or Azure's ``api-key`` header; kept out of reprs."""

    def __init__(self, key: str, header: str) -> None:
        self.key = Secret(key)
        self.header = header

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        if self.header == "api-key":
            request.headers["api-key"] = self.key.reveal()
        else:
            request.headers["Authorization"] = f"Bearer {self.key.reveal()}"
        return request

    def __repr__(self) -> str:
        return f"_KeyAuth({self.header}: ***)"


class OpenAIDeploymentClient(HostedModelsClient):
    """OpenAI (or a compatible server, or Azure OpenAI): chat, completions and embeddings, streaming, and
    models as endpoints.

    Options: ``api_key``, ``base_url``, ``api_type``, ``api_base``, ``api_version``, ``deployment_name``,
    ``organization``, ``project``, ``headers`` and the HTTP settings of
    :class:`~deployflow.transport.HttpSettings`; each falls back to the environment variable MLflow and
    the openai package read. The key and credential headers are kept masked in :attr:`options`. See
    :func:`target_help`.
    """

    secret_options = frozenset({"api_key", "headers"})
    target_label = "openai"
    not_offered = "OpenAI's models are used, not deployed."
    deployments_hint = " Use list_endpoints / get_endpoint for the models."

    def __init__(self, target_uri: str, **options: Any) -> None:
        super().__init__(target_uri, **options)
        if target_uri.strip() != "openai":
            raise TargetError(f"{target_uri!r} is not an OpenAI target URI: use 'openai' (and base_url= for another server)")
        http_options, own = split_target_options(options, _OPTIONS, "openai")
        self.settings = OpenAISettings.from_options(own)
        headers = {name: reveal(value) for name, value in dict(own.get("headers") or {}).items()}
        if self.settings.organization:
            headers["OpenAI-Organization"] = self.settings.organization
        if self.settings.project:
            headers["OpenAI-Project"] = self.settings.project
        header = "api-key" if self.settings.api_type == "azure" else "Authorization"
        self._transport = HttpTransport(
            self.settings.base_url,
            settings=HttpSettings.from_options(http_options),
            headers=headers,
            auth=_KeyAuth(self.settings.api_key, header),
            secrets=[self.settings.api_key],
        )

    def __repr__(self) -> str:
        return f"OpenAIDeploymentClient(base_url={self.settings.base_url!r}, api_type={self.settings.api_type!r})"

    def close(self) -> None:
        self._transport.close()

    # -- routing ----------------------------------------------------------------------------------

    def _params(self) -> dict[str, str] | None:
        return {"api-version": self.settings.api_version} if self.settings.is_azure and self.settings.api_version else None

    def _task_path(self, task: str, model: str | None) -> str:
        if not self.settings.is_azure:
            return task
        deployment = self.settings.deployment_name or model
        if not deployment:
            raise InvalidInputError("Azure OpenAI needs a deployment: pass endpoint= or set OPENAI_DEPLOYMENT_NAME")
        return f"openai/deployments/{quote(deployment, safe='')}/{task}"

    def _models_path(self, model: str | None = None) -> str:
        base = "openai/models" if self.settings.is_azure else "models"
        return f"{base}/{quote(model, safe='')}" if model else base

    def _request(self, deployment_name: str | None, inputs: Any, endpoint: str | None) -> tuple[str, str, dict[str, Any]]:
        if not isinstance(inputs, Mapping):
            raise InvalidInputError(
                f"The openai target takes the request as a dict (for example {{'messages': [...]}}), got "
                f"{type(inputs).__name__}"
            )
        task = next((api for key, api in _TASKS if key in inputs), None)
        if task is None:
            raise InvalidInputError(
                "Cannot tell which OpenAI API to call: the request needs 'messages' (chat completions), "
                f"'prompt' (completions) or 'input' (embeddings); it has {sorted(map(str, inputs))}"
            )
        body = dict(inputs)
        model = endpoint or deployment_name or body.get("model")
        if model:
            body["model"] = model
        elif not self.settings.is_azure:
            raise InvalidInputError("Name the model: predict(endpoint='gpt-4o-mini', inputs=...)")
        return task, self._task_path(task, model), body

    # -- scoring ----------------------------------------------------------------------------------

    def predict(
        self, deployment_name: str | None = None, inputs: Any = None, endpoint: str | None = None
    ) -> PredictionsResponse:
        """Call chat completions, completions or embeddings (chosen from ``inputs``) with model
        ``endpoint`` and return the answer as a dict."""
        _, path, body = self._request(deployment_name, inputs, endpoint)
        answer = self._transport.request_json("POST", path, json=body, params=self._params(), kind="predict")
        return PredictionsResponse(answer) if isinstance(answer, dict) else PredictionsResponse(predictions=answer)

    def predict_stream(
        self, deployment_name: str | None = None, inputs: Any = None, endpoint: str | None = None
    ) -> Iterator[dict[str, Any]]:
        """Stream chat completions or completions: yields each chunk (``chat.completion.chunk`` ...). The
        request is sent now (HTTP errors raise here); an error event mid-stream raises
        :class:`~deployflow.errors.RemoteError` while iterating."""
        task, path, body = self._request(deployment_name, inputs, endpoint)
        if task not in _STREAMING:
            raise InvalidInputError(f"OpenAI does not stream {task}; use predict")
        body["stream"] = True
        response = self._transport.request(
            "POST", path, json=body, params=self._params(), headers={"Accept": "text/event-stream"},
            kind="predict", stream=True,
        )
        return stream_json(self._transport, response, what=f"POST /{path}")

    # -- models as endpoints ----------------------------------------------------------------------

    def list_endpoints(self) -> list[dict[str, Any]]:
        """The models the API key can use, each a dict with ``name`` (the model id) and OpenAI's fields."""
        answer = self._transport.request_json("GET", self._models_path(), params=self._params()) or {}
        items = answer.get("data") if isinstance(answer, dict) else answer
        return [{"name": item.get("id"), **item} for item in items or [] if isinstance(item, dict)]

    def get_endpoint(self, endpoint: str) -> dict[str, Any]:
        """One model's record with ``name``; raises :class:`~deployflow.errors.NotFoundError` for an
        unknown model."""
        if not isinstance(endpoint, str) or not endpoint:
            raise InvalidInputError(f"A model name must be a non-empty string, got {endpoint!r}")
        answer = self._transport.request_json("GET", self._models_path(endpoint), params=self._params()) or {}
        return {"name": answer.get("id", endpoint), **answer}

    def endpoint_status(self, endpoint: str) -> Status:
        """READY when the model is available to this key, NOT_FOUND when it is not."""
        try:
            record = self.get_endpoint(endpoint)
        except NotFoundError as exc:
            return Status(State.NOT_FOUND, reason=str(exc))
        return Status(State.READY, raw=record)


def run_local(name: str, model_uri: str, flavor: str | None = None, config: dict[str, Any] | None = None) -> None:
    refuse_run_local("openai")


def target_help() -> str:
    return f"""Target 'openai': OpenAI, an OpenAI-compatible server, or Azure OpenAI.

URI
  openai

What works
  predict(endpoint=MODEL, inputs={{"messages": [...]}})   chat completions
  predict(endpoint=MODEL, inputs={{"prompt": "..."}})     completions
  predict(endpoint=MODEL, inputs={{"input": [...]}})      embeddings
  predict_stream(endpoint=MODEL, inputs={{...}})          chat or completions, chunk by chunk
  list_endpoints() / get_endpoint(MODEL)                 the models at the base URL (GET /models)
  endpoint_status / wait_for_endpoint                    READY when the model is available
  Other keys of inputs (temperature, max_tokens, ...) are sent as they are. Creating, updating and
  deleting raise NotSupportedError.

Options (get_deploy_client("openai", **options)), then environment variables
  api_key           OPENAI_API_KEY (Azure also AZURE_OPENAI_API_KEY)
  base_url          OPENAI_BASE_URL, else OPENAI_API_BASE, else {DEFAULT_BASE_URL}
  api_type          OPENAI_API_TYPE: openai (default), azure (api-key header), azure_ad (bearer token)
  api_base          Azure resource URL: OPENAI_API_BASE, else AZURE_OPENAI_ENDPOINT
  api_version       Azure API version: OPENAI_API_VERSION (required for Azure)
  deployment_name   Azure deployment: OPENAI_DEPLOYMENT_NAME; when set it is used for every request,
                    otherwise the endpoint argument names the deployment
  organization      OPENAI_ORG_ID or OPENAI_ORGANIZATION (OpenAI-Organization header)
  project           OPENAI_PROJECT_ID (OpenAI-Project header)
  headers           extra HTTP headers, a dict
  timeout, predict_timeout, total_timeout, predict_total_timeout, connect_timeout, max_retries,
  backoff_factor, backoff_max, max_retry_after, retry_on_timeout, verify, pool_maxsize   HTTP settings
"""
