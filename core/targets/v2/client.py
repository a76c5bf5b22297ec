"""The client of the ``v2`` target (see the package docstring for what it does)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import quote, urlsplit

from ... import openinference
from ...errors import (
    AuthenticationError,
    ConflictError,
    DeploymentError,
    InvalidInputError,
    NotFoundError,
    NotSupportedError,
    RemoteError,
    RequestTimeoutError,
    TargetError,
    TransientError,
    raise_as_read,
)
from ...jsoncodec import dumps, loads
from ...predictions import PredictionsResponse
from ...status import State, Status
from .._hosted import HostedModelsClient, bearer_transport, refuse_run_local, split_target_options

__all__ = ["V2DeploymentClient", "run_local", "target_help"]

_OPTIONS = frozenset({"auth_token", "headers", "models", "seldon_model"})
_SELDON_KINDS = {True: "model", "model": "model", "pipeline": "pipeline"}
_CREATE_KEYS = frozenset({"parameters", "wait", "timeout"})
_JSON = {"Content-Type": "application/json"}
#: Statuses an inference POST is retried on. MLServer answers an exception raised by the model with 500
#: (the traceback as text with its default ``debug: true``, else "Internal Server Error"): asking again
#: gives the same answer, so 500 is not retried.
INFER_RETRY_STATUSES = frozenset({429, 502, 503})
#: Repository index states, as Triton and MLServer write them, and the deployment state of each.
_REPOSITORY_STATES = {
    "READY": State.READY,
    "LOADING": State.PENDING,
    "UNLOADING": State.PENDING,
    "UNAVAILABLE": State.NOT_FOUND,
    "FAILED": State.FAILED,
}
_NOT_READY_WORDS = "is not ready"


def _not_ready(error: DeploymentError) -> bool:
    """MLServer's answer for a model still loading: 400 ``Model <m> is not ready yet.``"""
    return error.status_code == 400 and _NOT_READY_WORDS in (error.message or "")


def reclassify(error: DeploymentError) -> DeploymentError:
    """The error a V2 server's answer means: MLServer's "not ready" 400 becomes a retryable
    TransientError (the model is loading), any other error stays as it is. Applied by :meth:`predict`
    and the other calls, and by batch scoring's route (:meth:`V2DeploymentClient.batch_http_route`)."""
    if not (isinstance(error, InvalidInputError) and _not_ready(error)):
        return error
    transient = TransientError(error.message, status_code=error.status_code, body=error.body, retryable=True)
    transient.failure = error.failure
    return transient


class V2DeploymentClient(HostedModelsClient):
    """Score against the models of one Open Inference Protocol (V2) server; load and unload them
    through its repository extension when it offers one.

    Options: ``auth_token`` (sent as ``Authorization: Bearer``), ``headers`` (extra headers),
    ``models`` (the model names :meth:`list_deployments` returns when the server has no repository
    index), ``seldon_model`` (``True`` or ``"model"``: send ``Seldon-Model: <name>`` with every model
    request, as Seldon Core 2 routes; ``"pipeline"``: ``Seldon-Model: <name>.pipeline``), and the HTTP
    settings of :class:`~deployflow.transport.HttpSettings`.
    """

    secret_options = frozenset({"auth_token", "headers"})
    target_label = "v2"
    not_offered = "the server does not offer V2's model repository extension."
    deployments_hint = ""
    #: MLServer and Triton run models on a worker pool; a few requests in flight keep them busy.
    default_batch_concurrency = 4

    def __init__(self, target_uri: str, **options: Any) -> None:
        super().__init__(target_uri, **options)
        scheme, _, rest = target_uri.partition("+")
        parts = urlsplit(rest)
        if scheme != "v2" or parts.scheme not in ("http", "https") or not parts.netloc:
            raise TargetError(f"{target_uri!r} is not a v2 target URI: use v2+http://host:port or v2+https://host[/prefix]")
        settings_options, own = split_target_options(options, _OPTIONS, "v2")
        seldon = own.get("seldon_model")
        if seldon not in (None, False) and not (seldon is True or seldon in ("model", "pipeline")):
            raise InvalidInputError(f"option seldon_model must be True, False, 'model' or 'pipeline', got {seldon!r}")
        self._seldon = None if seldon in (None, False) else _SELDON_KINDS[seldon]
        models = own.get("models")
        if models is not None and (
            isinstance(models, (str, bytes)) or not all(isinstance(name, str) and name for name in models)
        ):
            raise InvalidInputError(f"option models must be a list of model names, got {models!r}")
        self._models = list(models) if models is not None else None
        self.url = rest.rstrip("/")
        self._transport = bearer_transport(self.url, settings_options, own)
        self._repository: bool | None = None

    # -- addressing -----------------------------------------------------------------------------

    @staticmethod
    def _split(name: Any) -> tuple[str, str | None]:
        """``"iris"`` -> ``("iris", None)``; ``"iris@3"`` -> ``("iris", "3")``."""
        if not isinstance(name, str) or not name.strip():
            raise InvalidInputError(
                f"the v2 target needs a model name (deployment_name='model' or 'model@version'), got {name!r}"
            )
        model, at, version = name.partition("@")
        if not model or (at and not version):
            raise InvalidInputError(f"{name!r} is not 'model' or 'model@version'")
        return model, version or None

    def _model_path(self, name: str, suffix: str = "") -> str:
        model, version = self._split(name)
        path = f"/v2/models/{quote(model, safe='')}"
        if version is not None:
            path += f"/versions/{quote(version, safe='')}"
        return path + suffix

    def _model_headers(self, name: str, extra: Mapping[str, str] | None = None) -> dict[str, str]:
        headers = dict(extra or {})
        if self._seldon is not None:
            model, _ = self._split(name)
            headers["Seldon-Model"] = model if self._seldon == "model" else f"{model}.pipeline"
        return headers

    @staticmethod
    def _no_endpoint(endpoint: str | None) -> None:
        if endpoint is not None:
            raise InvalidInputError(
                "the v2 target has no endpoints: address a model by deployment_name ('model' or 'model@version')"
            )

    def _request(self, method: str, path: str, **kwargs: Any) -> Any:
        """A call through the transport, MLServer's "not ready" 400 turned into a retryable error."""
        try:
            return self._transport.request(method, path, **kwargs)
        except DeploymentError as error:
            raise_as_read(error, reclassify)

    @staticmethod
    def _json(response: Any) -> Any:
        try:
            return loads(response.content)
        except ValueError as error:
            excerpt = response.content[:300].decode("utf-8", "replace")
            raise RemoteError(
                f"{urlsplit(response.url).path} answered with a body that is not JSON: {excerpt}",
                status_code=response.status_code, body=excerpt,
            ) from error

    # -- scoring --------------------------------------------------------------------------------

    def predict(self, deployment_name: str | None = None, inputs: Any = None, endpoint: str | None = None) -> PredictionsResponse:
        """POST ``inputs`` to ``/v2/models/{model}/infer`` and decode the answer.

        ``inputs``: a DataFrame, an array, a dict of named arrays or a V2 request dict (see
        :func:`deployflow.openinference.encode_request`). The answer's ``predictions`` are the outputs'
        values (see :func:`deployflow.openinference.predictions_from_response`).
        """
        self._no_endpoint(endpoint)
        path = self._model_path(deployment_name, "/infer")  # type: ignore[arg-type]
        body = dumps(openinference.encode_request(inputs))
        # Scoring has no side effects: a dropped connection or a 502/503 may be retried.
        response = self._request(
            "POST", path, data=body, headers=self._model_headers(deployment_name, _JSON), kind="predict",  # type: ignore[arg-type]
            idempotent=True, retry_statuses=INFER_RETRY_STATUSES,
        )
        return PredictionsResponse(openinference.predictions_from_response(self._json(response)))

    def batch_http_route(self, deployment_name: str | None = None, endpoint: str | None = None) -> Any:
        """Where :func:`deployflow.batch_predict` posts chunks: the model's infer URL, with V2 bodies.

        ``None`` (batch scoring then calls :meth:`predict`) when the route cannot be sent by the async
        edge as the transport would (see :func:`deployflow.scoring_route.route_for_transport`).
        """
        import dataclasses

        from ...scoring_route import route_for_transport

        self._no_endpoint(endpoint)
        path = self._model_path(deployment_name, "/infer")  # type: ignore[arg-type]
        route = route_for_transport(self._transport, path, idempotent=True)
        if route is None:
            return None
        return dataclasses.replace(
            route,
            headers={**route.headers, **self._model_headers(deployment_name)},  # type: ignore[arg-type]
            retry_statuses=INFER_RETRY_STATUSES,
            encode=encode_chunk,
            decode=decode_answer,
            reclassify=reclassify,
        )

    # -- reading --------------------------------------------------------------------------------

    def deployment_status(self, name: str, endpoint: str | None = None) -> Status:
        """From ``/v2/models/{model}[/versions/{v}]/ready``: 200 READY, 404 NOT_FOUND; another answer
        (MLServer and Triton answer 400 while a model loads), a connection failure or a 5xx PENDING.
        A server that is ready with no such model is NOT_FOUND."""
        self._no_endpoint(endpoint)
        path = self._model_path(name, "/ready")
        try:
            self._transport.request("GET", path, headers=self._model_headers(name), retry=False)
        except NotFoundError as error:
            return Status(State.NOT_FOUND, reason=str(error))
        except AuthenticationError:
            raise
        except DeploymentError as error:
            if error.status_code is not None or error.retryable or isinstance(error, RequestTimeoutError):
                return Status(State.PENDING, reason=str(error))
            raise
        return Status(State.READY)

    def get_deployment(self, name: str, endpoint: str | None = None) -> dict[str, Any]:
        """The model's metadata (``name``, ``versions``, ``platform``, ``inputs``, ``outputs`` with
        datatypes and shapes), with ``state`` and ``url``. Raises NotFoundError for an unknown model."""
        self._no_endpoint(endpoint)
        response = self._request("GET", self._model_path(name), headers=self._model_headers(name))
        metadata = self._json(response)
        if not isinstance(metadata, dict):
            raise RemoteError(f"the metadata of model {name!r} is not a JSON object: {metadata!r}"[:500])
        status = self.deployment_status(name)
        return {
            **metadata,
            "name": metadata.get("name", self._split(name)[0]),
            "state": status.state.value,
            "reason": status.reason,
            "url": self._transport.url_for(self._model_path(name)),
        }

    def list_deployments(self, endpoint: str | None = None) -> list[dict[str, Any]]:
        """The server's models from its repository index (``name``, ``version``, ``state``, ``reason``,
        ``repository_state`` as the server wrote it); without an index, the ``models`` option's names
        with their status. Neither: NotSupportedError."""
        self._no_endpoint(endpoint)
        if self._repository_offered():
            response = self._request("POST", "/v2/repository/index", data=b"{}", headers=_JSON, idempotent=True)
            index = self._json(response)
            if not isinstance(index, list):
                raise RemoteError(f"the repository index is not a JSON list: {index!r}"[:500])
            return [self._index_record(entry) for entry in index if isinstance(entry, dict)]
        if self._models is None:
            raise NotSupportedError(
                "list_deployments is not supported by the v2 target here: the server has no repository index; "
                "pass the model names as the client option models=[...]"
            )
        records = []
        for name in self._models:
            status = self.deployment_status(name)
            records.append({"name": name, "state": status.state.value, "reason": status.reason})
        return records

    @staticmethod
    def _index_record(entry: dict[str, Any]) -> dict[str, Any]:
        raw_state = str(entry.get("state") or "")
        state = _REPOSITORY_STATES.get(raw_state.upper(), State.PENDING if raw_state else State.READY)
        record = {
            "name": entry.get("name"),
            "version": entry.get("version") or None,
            "state": state.value,
            "reason": entry.get("reason") or None,
            "repository_state": raw_state or None,
        }
        return record

    def _repository_offered(self) -> bool:
        """Whether the server has the model repository extension: named in ``GET /v2`` (Triton), or its
        index answers (MLServer has the routes without naming the extension). Looked up once."""
        if self._repository is None:
            offered = False
            try:
                metadata = self._json(self._transport.request("GET", "/v2"))
                extensions = metadata.get("extensions") if isinstance(metadata, dict) else None
                offered = isinstance(extensions, list) and "model_repository" in extensions
            except AuthenticationError:
                raise
            except DeploymentError as error:
                if error.status_code is None:  # no answer at all: nothing learnt
                    raise
            if not offered:
                try:
                    self._transport.request("POST", "/v2/repository/index", data=b"{}", headers=_JSON, idempotent=True)
                    offered = True
                except DeploymentError as error:
                    if isinstance(error, AuthenticationError) or error.status_code not in (404, 405, 501):
                        raise
            self._repository = offered
        return self._repository

    # -- lifecycle (the repository extension) ---------------------------------------------------

    def _require_repository(self, method: str) -> None:
        if not self._repository_offered():
            self._refuse(method)

    def _load(self, method: str, name: str, model_uri: str | None, config: dict[str, Any] | None) -> dict[str, Any]:
        model, version = self._split(name)
        if version is not None:
            raise InvalidInputError(f"{method} loads a model by name; {name!r} names a version")
        if model_uri not in (None, "", model):
            raise InvalidInputError(
                f"the v2 target loads models by name from the server's own repository: model_uri must be "
                f"{model!r} or empty, got {model_uri!r}"
            )
        config = dict(config or {})
        unknown = sorted(set(config) - _CREATE_KEYS)
        if unknown:
            raise InvalidInputError(f"Unknown config key(s) for {method}: {', '.join(unknown)}; known: {', '.join(sorted(_CREATE_KEYS))}")
        parameters = config.get("parameters")
        if parameters is not None and not isinstance(parameters, Mapping):
            raise InvalidInputError(f"config 'parameters' must be a dict, got {parameters!r}")
        wait = config.get("wait", True)
        if not isinstance(wait, bool):
            raise InvalidInputError(f"config 'wait' must be true or false, got {wait!r}")
        timeout = config.get("timeout")
        self._require_repository(method)
        body = dumps({"parameters": dict(parameters)}) if parameters else b"{}"
        self._request(
            "POST", f"/v2/repository/models/{quote(model, safe='')}/load", data=body, headers=_JSON, idempotent=True,
        )
        if wait:
            self.wait_for_deployment(model, **({"timeout": float(timeout)} if timeout is not None else {}))
        status = self.deployment_status(model)
        return {"name": model, "state": status.state.value, "reason": status.reason}

    def create_deployment(self, name: str, model_uri: str | None = None, flavor: str | None = None, config: dict[str, Any] | None = None, endpoint: str | None = None) -> dict[str, Any]:
        """Load model ``name`` from the server's repository (``POST /v2/repository/models/{name}/load``)
        and wait until it is ready (config ``wait=False`` returns at once; ``timeout`` seconds bound the
        wait; ``parameters`` go in the load request). ConflictError when it is loaded already."""
        self._no_endpoint(endpoint)
        self._require_repository("create_deployment")
        model, _ = self._split(name)
        if self.deployment_status(model).state is State.READY:
            raise ConflictError(f"model {model!r} is loaded already on {self.url}; update_deployment reloads it")
        return self._load("create_deployment", name, model_uri, config)

    def update_deployment(self, name: str, model_uri: str | None = None, flavor: str | None = None, config: dict[str, Any] | None = None, endpoint: str | None = None) -> dict[str, Any]:
        """Load model ``name`` again (the server reloads it from its repository) and wait until ready."""
        self._no_endpoint(endpoint)
        return self._load("update_deployment", name, model_uri, config)

    def delete_deployment(self, name: str, config: dict[str, Any] | None = None, endpoint: str | None = None) -> None:
        """Unload model ``name`` (``POST /v2/repository/models/{name}/unload``); a model that is not
        loaded is not an error."""
        self._no_endpoint(endpoint)
        model, version = self._split(name)
        if version is not None:
            raise InvalidInputError(f"delete_deployment unloads a model by name; {name!r} names a version")
        self._require_repository("delete_deployment")
        try:
            self._request("POST", f"/v2/repository/models/{quote(model, safe='')}/unload", data=b"{}", headers=_JSON, idempotent=True)
        except NotFoundError:
            return

    def close(self) -> None:
        self._transport.close()


def encode_chunk(frame: Any, params: Mapping[str, Any] | None = None) -> tuple[bytes, str]:
    """A batch chunk (a DataFrame) as a V2 request body: one input per column, ``content_type: "pd"``."""
    return dumps(openinference.encode_request(frame, parameters=params)), "application/json"


def decode_answer(content: bytes) -> PredictionsResponse:
    """A V2 answer body as a :class:`~deployflow.PredictionsResponse`."""
    try:
        answer = loads(content)
    except ValueError as error:
        raise RemoteError(f"a V2 answer is not JSON: {content[:300].decode('utf-8', 'replace')}") from error
    return PredictionsResponse(openinference.predictions_from_response(answer))


def run_local(name: str, model_uri: str, flavor: str | None = None, config: dict[str, Any] | None = None) -> None:
    refuse_run_local("v2")


def target_help() -> str:
    return """Target 'v2': a server speaking the Open Inference Protocol (V2): KServe, Triton, MLServer, Seldon Core 2.

URIs
  v2+http://HOST:PORT                for example v2+http://10.0.0.5:8080
  v2+https://HOST[:PORT][/PREFIX]

Deployments are the server's models: deployment_name 'model' or 'model@version'.
  predict            POST /v2/models/{model}[/versions/{v}]/infer; inputs: DataFrame (one input per column,
                     MLServer's 'pd' content type), array, dict of named arrays, or a V2 request dict
  get_deployment     the model's metadata (inputs/outputs with datatypes and shapes, versions)
  deployment_status  /v2/models/{model}[/versions/{v}]/ready (200 READY, 404 NOT_FOUND, else PENDING)
  list_deployments   the repository index, else the names in the option 'models'
  create/update/delete_deployment  load / reload / unload through the repository extension
                     (config keys: wait, timeout, parameters); NotSupportedError without it

Options (get_deploy_client(uri, **options))
  auth_token    sent as 'Authorization: Bearer <token>'
  headers       extra HTTP headers, a dict
  models        model names for list_deployments when the server has no repository index
  seldon_model  True / 'model': header 'Seldon-Model: <model>'; 'pipeline': 'Seldon-Model: <model>.pipeline'
  timeout, predict_timeout, total_timeout, predict_total_timeout, connect_timeout, max_retries,
  backoff_factor, backoff_max, retry_on_timeout, verify, pool_maxsize   HTTP settings
"""

