"""The ``http`` / ``https`` targets: the MLflow deployments server (the AI gateway).

URIs: ``http://host:port[/prefix]`` and ``https://host[:port][/prefix]``, the server's address. The server's
endpoints are configured in its YAML file, so this client reads them and queries them; it cannot create,
change or delete them (those raise :class:`~deployflow.errors.NotSupportedError`, as in MLflow).

Beyond MLflow's client: ``predict_stream`` (server-sent events), ``endpoint_status`` for waiting, credentials
as options, and listing that follows every page.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from typing import Any, ClassVar
from urllib.parse import quote, urlsplit

from ..errors import InvalidInputError, NotFoundError, RemoteError, TargetError
from ..predictions import PredictionsResponse
from ..redaction import get_logger, redact, reveal
from ..status import State, Status
from ..transport import HttpSettings, HttpTransport
from ._hosted import BasicAuth, BearerAuth, HostedModelsClient, refuse_run_local, split_target_options
from ._sse import stream_json

__all__ = ["GatewayDeploymentClient", "GatewayRecord", "GatewayEndpoint", "GatewayEndpointModel", "run_local", "target_help"]

logger = get_logger(__name__)

_LIST_PATH = "/api/2.0/endpoints/"
_QUERY_PATH = "/endpoints/{name}/invocations"
_MAX_PAGES = 10_000  # a server that keeps handing out the same token must not loop us forever

TOKEN_ENV = "MLFLOW_TRACKING_TOKEN"
USERNAME_ENV = "MLFLOW_TRACKING_USERNAME"
PASSWORD_ENV = "MLFLOW_TRACKING_PASSWORD"
INSECURE_TLS_ENV = "MLFLOW_TRACKING_INSECURE_TLS"
CA_BUNDLE_ENV = "MLFLOW_TRACKING_SERVER_CERT_PATH"

_OPTIONS = frozenset({"token", "username", "password", "headers"})


class GatewayRecord(dict):
    """A record of the deployments server: a dict whose keys also read as attributes, at every level.

    MLflow's client answers with pydantic models (``endpoint.model.name``); code written for it keeps
    working, and so does code that treats the answer as the JSON it is (``endpoint["model"]["name"]``,
    ``json.dumps(endpoint)``). Nested objects, in lists too, are records themselves. An optional field
    of MLflow's model that the server left out (``limit``, ``model.name``) reads as ``None``, as the
    pydantic field does. ``.dict()`` / ``.model_dump()`` return plain dicts and lists, as pydantic's do.

    >>> GatewayEndpoint({"name": "chat", "model": {"name": "gpt-4o", "provider": "openai"}}).model.provider
    'openai'
    """

    #: Fields that read as a default when absent (the model's optional fields).
    _optional: ClassVar[dict[str, Any]] = {}
    #: Record classes for nested fields that have one.
    _nested: ClassVar[dict[str, type[GatewayRecord]]] = {}

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        for key, value in self.items():
            super().__setitem__(key, self._wrap(key, value))

    def __setitem__(self, key: str, value: Any) -> None:
        super().__setitem__(key, self._wrap(key, value))

    def _wrap(self, key: str, value: Any) -> Any:
        kind = self._nested.get(key, GatewayRecord)
        return _as_record(value, kind)

    def __getattr__(self, key: str) -> Any:
        if key.startswith("__"):  # copy and pickle look up hooks such as __setstate__
            raise AttributeError(key)
        try:
            return self[key]
        except KeyError:
            if key in self._optional:
                return self._optional[key]
            raise AttributeError(f"{type(self).__name__} has no field {key!r}") from None

    def dict(self) -> dict[str, Any]:  # noqa: A003 - MLflow's name
        """A plain deep copy (dicts and lists), as pydantic's ``.dict()`` returns."""
        return _plain(self)

    def model_dump(self) -> dict[str, Any]:
        """The same as :meth:`dict` (pydantic 2's name)."""
        return self.dict()


class GatewayEndpointModel(GatewayRecord):
    """An endpoint's ``model``: ``name`` (``None`` when the server has none) and ``provider``."""

    _optional: ClassVar[dict[str, Any]] = {"name": None}


class GatewayLimit(GatewayRecord):
    """An endpoint's rate ``limit``: ``calls``, ``renewal_period`` and ``key`` (``None`` when absent)."""

    _optional: ClassVar[dict[str, Any]] = {"key": None}


class GatewayEndpoint(GatewayRecord):
    """An endpoint of the deployments server: ``name``, ``endpoint_type``, ``model`` (``.name``,
    ``.provider``), ``endpoint_url`` and ``limit`` (``None`` when the endpoint has none).

    >>> GatewayEndpoint({"name": "chat", "endpoint_type": "llm/v1/chat"}).dict()["name"]
    'chat'
    """

    _optional: ClassVar[dict[str, Any]] = {"limit": None}
    _nested: ClassVar[dict[str, type[GatewayRecord]]] = {"model": GatewayEndpointModel, "limit": GatewayLimit}


def _as_record(value: Any, kind: type[GatewayRecord] = GatewayRecord) -> Any:
    if isinstance(value, GatewayRecord):
        return value
    if isinstance(value, Mapping):
        return kind(value)
    if isinstance(value, list):
        return [_as_record(item) for item in value]
    return value


def _plain(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_plain(item) for item in value]
    return value


def _auth_from(own: Mapping[str, Any], environ: Mapping[str, str]) -> Any:
    """Token beats basic credentials, options beat the environment (MLflow's variables)."""
    token = reveal(own.get("token"))
    username, password = own.get("username"), reveal(own.get("password"))
    if username is not None or password is not None:
        if not username or not password:
            raise InvalidInputError("Basic credentials need both options username and password")
    if token:
        return BearerAuth(str(token))
    if username:
        return BasicAuth(str(username), str(password))
    token = environ.get(TOKEN_ENV)
    if token:
        return BearerAuth(token)
    username, password = environ.get(USERNAME_ENV), environ.get(PASSWORD_ENV)
    if username and password:
        return BasicAuth(username, password)
    if username or password:
        raise InvalidInputError(f"Basic credentials need both {USERNAME_ENV} and {PASSWORD_ENV}")
    return None


def _check_uri(target_uri: str) -> str:
    try:
        parts = urlsplit(target_uri)
        parts.port  # noqa: B018 - raises ValueError for a bad port
    except ValueError:
        raise TargetError(f"{redact(target_uri)!r} is not a valid deployments server URL") from None
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.query or parts.fragment:
        raise TargetError(
            f"{redact(target_uri)!r} is not a deployments server URL: use http://host:port or "
            "https://host[:port][/prefix], without a query or fragment"
        )
    return target_uri.rstrip("/")


class GatewayDeploymentClient(HostedModelsClient):
    """Client of an MLflow deployments server (AI gateway): list, get, predict and stream its endpoints.

    Options: ``token`` (bearer) or ``username`` + ``password`` (basic), else ``MLFLOW_TRACKING_TOKEN`` or
    ``MLFLOW_TRACKING_USERNAME`` + ``MLFLOW_TRACKING_PASSWORD``; ``headers``; and the HTTP settings of
    :class:`~deployflow.transport.HttpSettings`. ``MLFLOW_TRACKING_INSECURE_TLS=true`` turns off
    certificate checks and ``MLFLOW_TRACKING_SERVER_CERT_PATH`` names a CA bundle, unless ``verify`` is
    given. The token, password and credential headers are kept masked in :attr:`options`.
    """

    secret_options = frozenset({"token", "password", "headers"})
    target_label = "MLflow deployments server"
    not_offered = "its endpoints come from the server's configuration file."
    deployments_hint = " Use list_endpoints / get_endpoint."

    def __init__(self, target_uri: str, **options: Any) -> None:
        super().__init__(target_uri, **options)
        self.url = _check_uri(target_uri)
        http_options, own = split_target_options(options, _OPTIONS, "deployments server")
        if http_options.get("verify") is None:
            if os.environ.get(INSECURE_TLS_ENV, "").strip().lower() in ("1", "true", "yes"):
                http_options["verify"] = False
            elif os.environ.get(CA_BUNDLE_ENV):
                http_options["verify"] = os.environ[CA_BUNDLE_ENV]
        auth = _auth_from(own, os.environ)
        headers = {name: reveal(value) for name, value in dict(own.get("headers") or {}).items()}
        self._transport = HttpTransport(
            self.url, settings=HttpSettings.from_options(http_options), headers=headers, auth=auth
        )

    def close(self) -> None:
        self._transport.close()

    # -- endpoints --------------------------------------------------------------------------------

    def _endpoint(self, record: Mapping[str, Any]) -> GatewayEndpoint:
        found = GatewayEndpoint(record)
        url = found.get("endpoint_url")
        if isinstance(url, str) and url and "://" not in url:
            # The server answers with a path; MLflow's client makes it a full URL on the target.
            found["endpoint_url"] = self._absolute(url)
        return found

    def _absolute(self, path: str) -> str:
        parts = urlsplit(self.url)
        prefix = parts.path.rstrip("/")
        path = "/" + path.lstrip("/")
        if prefix and path.startswith(prefix + "/"):
            prefix = ""  # the server already included the prefix it is mounted under
        host = parts.hostname or ""
        host = f"[{host}]" if ":" in host else host
        netloc = host if parts.port is None else f"{host}:{parts.port}"  # never the URL's credentials
        return f"{parts.scheme}://{netloc}{prefix}{path}"

    def list_endpoints(self) -> list[GatewayEndpoint]:
        """Every endpoint the server offers, all pages followed."""
        endpoints: list[GatewayEndpoint] = []
        token: str | None = None
        seen: set[str] = set()
        for _ in range(_MAX_PAGES):
            params = {"page_token": token} if token else None
            page = self._transport.request_json("GET", _LIST_PATH, params=params) or {}
            if not isinstance(page, dict):
                raise RemoteError(f"GET {_LIST_PATH} answered with a {type(page).__name__}, not an object")
            endpoints.extend(self._endpoint(item) for item in page.get("endpoints") or [])
            token = page.get("next_page_token") or None
            if token is None:
                return endpoints
            if token in seen:
                raise RemoteError(f"GET {_LIST_PATH} handed out the page token {token!r} twice; stopping")
            seen.add(token)
        raise RemoteError(f"GET {_LIST_PATH} still had more pages after {_MAX_PAGES}")

    def get_endpoint(self, endpoint: str) -> GatewayEndpoint:
        """The endpoint's record (name, endpoint_type, model, endpoint_url); raises
        :class:`~deployflow.errors.NotFoundError` when the server has none by that name."""
        record = self._transport.request_json("GET", _LIST_PATH + _quoted(endpoint)) or {}
        return self._endpoint(record)

    def endpoint_status(self, endpoint: str) -> Status:
        """READY when the server lists the endpoint (the server serves what its config names)."""
        try:
            record = self.get_endpoint(endpoint)
        except NotFoundError as exc:
            return Status(State.NOT_FOUND, reason=str(exc))
        return Status(State.READY, raw=record)

    # -- scoring ----------------------------------------------------------------------------------

    def _query_path(self, deployment_name: str | None, endpoint: str | None) -> str:
        name = endpoint or deployment_name
        if not name:
            raise InvalidInputError("predict needs an endpoint name (endpoint=...)")
        return _QUERY_PATH.format(name=_quoted(name))

    def predict(
        self, deployment_name: str | None = None, inputs: Any = None, endpoint: str | None = None
    ) -> PredictionsResponse:
        """Query an endpoint: ``inputs`` is the request for its type (``messages`` for llm/v1/chat,
        ``prompt`` for llm/v1/completions, ``input`` for llm/v1/embeddings) plus any provider
        parameters. Returns the answer as a dict."""
        path = self._query_path(deployment_name, endpoint)
        body = _body(inputs)
        answer = self._transport.request_json("POST", path, json=body, kind="predict")
        return PredictionsResponse(answer) if isinstance(answer, dict) else PredictionsResponse(predictions=answer)

    def predict_stream(
        self, deployment_name: str | None = None, inputs: Any = None, endpoint: str | None = None
    ) -> Iterator[dict[str, Any]]:
        """Query with ``"stream": true`` and yield each chunk. The request is sent now (HTTP errors raise
        here); an error event mid-stream raises :class:`~deployflow.errors.RemoteError` while iterating."""
        path = self._query_path(deployment_name, endpoint)
        body = {**_body(inputs), "stream": True}
        response = self._transport.request(
            "POST", path, json=body, headers={"Accept": "text/event-stream"}, kind="predict", stream=True
        )
        return stream_json(self._transport, response, what=f"POST {path}")


def _body(inputs: Any) -> dict[str, Any]:
    if inputs is None:
        return {}
    if not isinstance(inputs, Mapping):
        raise InvalidInputError(
            f"The deployments server takes the request as a dict (for example {{'messages': [...]}}), "
            f"got {type(inputs).__name__}"
        )
    return dict(inputs)


def _quoted(name: str) -> str:
    if not isinstance(name, str) or not name:
        raise InvalidInputError(f"An endpoint name must be a non-empty string, got {name!r}")
    return quote(name, safe="")


def run_local(name: str, model_uri: str, flavor: str | None = None, config: dict[str, Any] | None = None) -> None:
    refuse_run_local("deployments server")


def target_help() -> str:
    return f"""Targets 'http' and 'https': an MLflow deployments server (AI gateway).

URIs
  http://HOST:PORT[/PREFIX]      for example http://localhost:5000
  https://HOST[:PORT][/PREFIX]   credentials in the URL (https://user:password@host) are used as basic auth

What works
  list_endpoints()                 every endpoint, all pages; each a dict with .dict() and attributes
  get_endpoint(endpoint)           name, endpoint_type, model {{name, provider}}, endpoint_url, limit
                                   (records read as attributes at every level: endpoint.model.name)
  predict(endpoint=E, inputs={{...}})          POST /endpoints/E/invocations
  predict_stream(endpoint=E, inputs={{...}})   the same with "stream": true; yields chunks
  endpoint_status / wait_for_endpoint       READY when the server lists the endpoint
  Creating, updating and deleting endpoints or deployments raise NotSupportedError: the server's
  configuration file defines its endpoints.

Options (get_deploy_client(uri, **options))
  token                 sent as 'Authorization: Bearer <token>' (env {TOKEN_ENV})
  username, password    basic auth (env {USERNAME_ENV}, {PASSWORD_ENV}); a token wins
  headers               extra HTTP headers, a dict
  timeout, predict_timeout, total_timeout, predict_total_timeout, connect_timeout, max_retries,
  backoff_factor, backoff_max, max_retry_after, retry_on_timeout, verify, pool_maxsize   HTTP settings
  (verify defaults from {INSECURE_TLS_ENV} and {CA_BUNDLE_ENV})
"""
