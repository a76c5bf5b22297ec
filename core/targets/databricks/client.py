"""The databricks target's client: serving endpoints, their served entities, scoring and streaming."""

from __future__ import annotations

import copy
import os
import re
import threading
import warnings
from collections.abc import Iterator, Mapping
from typing import Any
from urllib.parse import quote

from ...base import BaseDeploymentClient
from ...errors import ConflictError, DeploymentError, DeploymentFailedError, InvalidInputError, NotFoundError
from ...payloads import decode_response, encode_request
from ...predictions import PredictionsResponse
from ...redaction import get_logger, reveal
from ...retry import as_bool, as_number
from ...status import State, Status
from ...transport import HttpSettings, HttpTransport, encode_json
from .._sse import stream_json
from .._hosted import BearerAuth
from .credentials import DatabricksCredentials, normalise_host, profile_from_uri, resolve_credentials
from .sdk_auth import connect_with_sdk, sdk_installed
from .records import (
    DatabricksEndpoint,
    deployment_record,
    endpoint_status_of,
    served_entities_of,
    entity_status_of,
    model_uri_of,
    rebalance,
    routes_of,
    traffic_config,
    writable,
)

__all__ = [
    "DatabricksDeploymentClient",
    "DEPLOYMENT_CONFIG_KEYS",
    "OPTIONS",
    "CREDENTIAL_OPTIONS",
    "WAIT_TIMEOUT_ENV",
    "POLL_INTERVAL_ENV",
]

logger = get_logger(__name__)

_API = "/api/2.0/serving-endpoints"
_CLIENT_HEADER = {"X-Databricks-Endpoints-API-Client": "deployflow"}
WAIT_TIMEOUT_ENV = "DEPLOYFLOW_DATABRICKS_WAIT_TIMEOUT"
POLL_INTERVAL_ENV = "DEPLOYFLOW_DATABRICKS_POLL_INTERVAL"

#: The options that say where the workspace is and how to authenticate.
CREDENTIAL_OPTIONS = (
    "host", "token", "client_id", "client_secret", "azure_client_id", "azure_client_secret", "azure_tenant_id",
    "auth_type", "profile", "config_file",
)  # fmt: skip
#: The client's own options (the HTTP settings come on top).
OPTIONS = frozenset({*CREDENTIAL_OPTIONS, "headers", "wait", "wait_timeout", "poll_interval", "max_poll_interval"})
#: The config keys of create_deployment / update_deployment, with what they mean.
DEPLOYMENT_CONFIG_KEYS = {
    "workload_size": "Small, Medium or Large (default Small)",
    "workload_type": "CPU (default), GPU_SMALL, GPU_MEDIUM, GPU_LARGE, ...",
    "scale_to_zero_enabled": "scale to zero when idle (default true)",
    "traffic_percentage": "share of the endpoint's traffic, 0-100 (default 100); other entities share the rest",
    "environment_vars": "dict of environment variables for the model server",
    "entity": "dict of further served-entity fields, sent as they are",
    "wait": "false: return once the change is accepted, without waiting",
    "wait_timeout": "seconds to wait for the change to serve",
}
_MODEL_URI = re.compile(r"^models:/(?P<name>[^/@]+)(?:/(?P<version>[^/]+)|@(?P<alias>[^/]+))/?$")
_NAME = re.compile(r"^[A-Za-z0-9_-]+$")


class DatabricksDeploymentClient(BaseDeploymentClient):
    """Databricks Model Serving: endpoints, their served entities (deployments), scoring and streaming.

    Options (``get_deploy_client("databricks", **options)``): ``host``, ``token``, ``profile``,
    ``config_file``, ``headers``; with databricks-sdk installed (the ``databricks`` extra) also
    ``client_id`` and ``client_secret`` (OAuth for a service principal), ``azure_client_id``,
    ``azure_client_secret`` and ``azure_tenant_id`` (an Azure service principal) and ``auth_type``
    (databricks-sdk's name for the way to authenticate: ``pat``, ``oauth-m2m``,
    ``azure-client-secret``, ...); waiting: ``wait`` (default true), ``wait_timeout`` (seconds, default
    1200), ``poll_interval`` (default 2), ``max_poll_interval`` (default 30); and the HTTP settings of
    :class:`~deployflow.transport.HttpSettings`. See :func:`target_help`.

    With databricks-sdk installed, one ``databricks.sdk.core.Config`` is built on the first request
    (:mod:`.sdk_auth`) and each request carries the headers it gives at that moment, so OAuth tokens
    are fetched and refreshed by the SDK while requests keep going through deployflow's transport.
    Without it, host and personal access token are found as :func:`.resolve_credentials` says, and the
    options only the SDK can use raise :class:`~deployflow.errors.MissingExtraError` on the first request.

    As MLflow's client, it can be built where no credentials are configured (a DAG file, a module
    body): they are looked up on the first request, once, and that request raises
    :class:`~deployflow.errors.AuthenticationError` saying how to configure them when there are none.
    The URI and the options are checked at once. ``token``, ``client_secret``, ``azure_client_secret``
    and credential headers are kept masked in :attr:`options`.
    """

    secret_options = frozenset({"token", "client_secret", "azure_client_secret", "headers"})

    def __init__(self, target_uri: str, **options: Any) -> None:
        super().__init__(target_uri, **options)
        http_options, own = HttpSettings.split_options(self.options)
        unknown = sorted(set(own) - OPTIONS)
        if unknown:
            raise InvalidInputError(
                f"Unknown option(s) for the databricks target: {', '.join(unknown)}; known: "
                f"{', '.join(sorted(OPTIONS | HttpSettings.OPTION_NAMES))}"
            )
        profile_from_uri(target_uri)  # a malformed URI fails now, whatever the environment holds
        if own.get("host"):
            normalise_host(str(own["host"]), "the option host")
        for name in ("client_id", "azure_client_id", "azure_tenant_id", "auth_type", "profile"):
            if own.get(name) is not None and not isinstance(own[name], str):
                raise InvalidInputError(f"The option {name} must be a string, got {type(own[name]).__name__}")
        self._wait = as_bool(own.get("wait", True), "wait")
        self._wait_timeout = as_number(own.get("wait_timeout") or os.environ.get(WAIT_TIMEOUT_ENV) or 1200.0,
                                       "wait_timeout", positive=True)
        self._poll_interval = as_number(own.get("poll_interval") or os.environ.get(POLL_INTERVAL_ENV) or 2.0,
                                        "poll_interval", positive=True)
        self._max_poll_interval = max(as_number(own.get("max_poll_interval") or 30.0, "max_poll_interval", positive=True), self._poll_interval)
        self._http_settings = HttpSettings.from_options(http_options)
        # Kept as given (secrets still wrapped) until the first request resolves them.
        self._credential_options = {key: own[key] for key in CREDENTIAL_OPTIONS if key in own}
        self._headers = {**_CLIENT_HEADER, **dict(own.get("headers") or {})}
        self._connection: tuple[DatabricksCredentials, HttpTransport] | None = None
        # A personal access token found before this client was pickled: the copy sends it without
        # looking again. (The SDK's configuration does not travel; a copy builds its own.)
        self._shipped: DatabricksCredentials | None = None
        self._closed = False
        self._connect_lock = threading.Lock()

    # -- credentials, resolved on first use -------------------------------------------------------

    def _connected(self) -> tuple[DatabricksCredentials, HttpTransport]:
        """The credentials and the transport made with them, found on first use (once, thread-safe).

        A failed lookup is not remembered: the next request looks again, so credentials configured
        after the client was made are found."""
        connection = self._connection
        if connection is not None:
            return connection
        with self._connect_lock:
            if self._connection is None:
                if self._closed:
                    raise DeploymentError(f"{self!r} is closed")
                credentials, auth = self._authenticate()
                transport = HttpTransport(
                    credentials.host,
                    settings=self._http_settings,
                    headers={key: reveal(value) for key, value in self._headers.items()},
                    auth=auth,
                    secrets=[credentials.token],
                )
                self._connection = (credentials, transport)
            return self._connection

    def _authenticate(self) -> tuple[DatabricksCredentials, Any]:
        """Where the workspace is and the requests auth for it: through databricks-sdk when it is
        installed, else deployflow's own lookup of a personal access token."""
        if self._shipped is not None:
            return self._shipped, BearerAuth(self._shipped.token)
        options = {key: reveal(value) for key, value in self._credential_options.items()}
        if sdk_installed():
            return connect_with_sdk(self.target_uri, options, self._http_settings)
        credentials = resolve_credentials(self.target_uri, options)
        return credentials, BearerAuth(credentials.token)

    @property
    def _transport(self) -> HttpTransport:
        return self._connected()[1]

    @property
    def credentials(self) -> DatabricksCredentials:
        """The workspace URL, the auth type (and the token, for ``pat``) in use, and where they were
        found (looked up on first use)."""
        return self._connected()[0]

    @property
    def host(self) -> str:
        """The workspace URL (looked up on first use)."""
        return self.credentials.host

    def __repr__(self) -> str:
        connection = self._connection
        host = f", host={connection[0].host!r}" if connection is not None else ""
        return f"DatabricksDeploymentClient(target_uri={self.target_uri!r}{host})"

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        del state["_connect_lock"]  # locks do not pickle; each copy gets its own
        # Each copy opens its own connections; the SDK's configuration holds locks and callbacks.
        connection = state.pop("_connection")
        state["_connection"] = None
        if connection is not None and connection[0].auth_type == "pat" and connection[0].token:
            state["_shipped"] = connection[0]
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._connect_lock = threading.Lock()

    def close(self) -> None:
        with self._connect_lock:
            self._closed = True
            connection = self._connection
        if connection is not None:
            connection[1].close()

    # -- HTTP -------------------------------------------------------------------------------------

    def _call(self, method: str, route: str = "", *, json: Any = None, params: Any = None) -> Any:
        path = _API + (f"/{route}" if route else "")
        return self._transport.request_json(method, path, json=json, params=params)

    def _endpoint_record(self, endpoint: str) -> DatabricksEndpoint:
        return DatabricksEndpoint(self._call("GET", _quoted(endpoint)) or {})

    # -- waiting ----------------------------------------------------------------------------------

    def _should_wait(self, config: dict[str, Any] | None) -> tuple[bool, float]:
        """Pop the per-call ``wait`` / ``wait_timeout`` keys from ``config``; fall back to the options."""
        wait, timeout = self._wait, self._wait_timeout
        if config is not None:
            if "wait" in config:
                wait = as_bool(config.pop("wait"), "config 'wait'")
            if "wait_timeout" in config:
                timeout = as_number(config.pop("wait_timeout"), "config 'wait_timeout'", positive=True)
        return wait, timeout

    def _wait_endpoint(self, endpoint: str, timeout: float) -> Status:
        return self.wait_for_endpoint(
            endpoint,
            timeout=timeout,
            poll_interval=self._poll_interval,
            max_poll_interval=self._max_poll_interval,
            not_found_grace=min(30.0, timeout),
        )

    def _wait_deployment(self, name: str, endpoint: str, timeout: float) -> Status:
        return self.wait_for_deployment(
            name,
            endpoint,
            timeout=timeout,
            poll_interval=self._poll_interval,
            max_poll_interval=self._max_poll_interval,
            not_found_grace=min(30.0, timeout),
        )

    def _settled(self, endpoint: str, timeout: float) -> DatabricksEndpoint:
        """The endpoint's record once no configuration update is in progress (Databricks refuses a
        second update while one runs)."""
        record = self._endpoint_record(endpoint)
        if (record.get("state") or {}).get("config_update") != "IN_PROGRESS":
            return record
        logger.info("Endpoint %r is being updated; waiting for that update to finish first", endpoint)
        try:
            self._wait_endpoint(endpoint, timeout)
        except DeploymentFailedError:
            pass  # the earlier update failed: the endpoint can take a new one now
        return self._endpoint_record(endpoint)

    # -- readiness --------------------------------------------------------------------------------

    def endpoint_status(self, endpoint: str) -> Status:
        """READY when ``state.ready`` is READY and no configuration update runs; an update in progress
        is PENDING; UPDATE_FAILED / UPDATE_CANCELED is FAILED with Databricks' reason."""
        try:
            record = self._endpoint_record(endpoint)
        except NotFoundError as exc:
            return Status(State.NOT_FOUND, reason=str(exc))
        return endpoint_status_of(record)

    def deployment_status(self, name: str, endpoint: str | None = None) -> Status:
        """The state of served entity ``name`` of endpoint ``endpoint`` (default: the endpoint named
        ``name``): its own deployment state, or the pending update's when it is part of one."""
        endpoint = endpoint or name
        try:
            record = self._endpoint_record(endpoint)
        except NotFoundError as exc:
            return Status(State.NOT_FOUND, reason=str(exc))
        return entity_status_of(record, name)

    # -- endpoints --------------------------------------------------------------------------------

    def create_endpoint(
        self, name: str | None = None, config: dict[str, Any] | None = None, route_optimized: bool = False
    ) -> DatabricksEndpoint:
        """Create a serving endpoint and wait until it serves.

        ``config`` is either the whole request body (``{"name": ..., "config": {"served_entities": ...},
        "tags": ..., "rate_limits": ..., "ai_gateway": ..., "route_optimized": ...}``) or, as in MLflow's
        older form, the endpoint's core config (``{"served_entities": ..., "traffic_config": ...}``, with
        ``tags`` and ``rate_limits`` lifted to the top level) with ``name`` given separately. A ``wait``
        key (false: do not wait) and ``wait_timeout`` are read and not sent.
        Returns the endpoint as Databricks describes it (after waiting, its latest record).
        Raises :class:`~deployflow.errors.ConflictError` when the endpoint exists.
        """
        given = dict(config or {})
        wait, timeout = self._should_wait(given)
        if "config" in given:
            payload = given
            if name is not None and payload.get("name") not in (None, name):
                raise InvalidInputError(
                    f"create_endpoint got the name {name!r} and a config naming {payload['name']!r}; give one"
                )
            payload.setdefault("name", name)
            if route_optimized and "route_optimized" not in payload:
                payload["route_optimized"] = True
        else:
            core = given
            payload = {"name": name, "config": core}
            for key in ("tags", "rate_limits", "ai_gateway", "route_optimized", "budget_policy_id"):
                if key in core:
                    payload[key] = core.pop(key)
            if route_optimized:
                payload["route_optimized"] = True
            if "task" in core:
                payload["task"] = core.pop("task")
        endpoint_name = payload.get("name")
        if not isinstance(endpoint_name, str) or not endpoint_name:
            raise InvalidInputError("create_endpoint needs a name: pass name= or put 'name' in the config")
        _check_endpoint_name(endpoint_name)
        created = DatabricksEndpoint(self._call("POST", json=payload) or {})
        if not wait:
            return created
        self._wait_endpoint(endpoint_name, timeout)
        return self._endpoint_record(endpoint_name)

    def update_endpoint_config(self, endpoint: str, config: dict[str, Any]) -> DatabricksEndpoint:
        """Replace the endpoint's served entities / traffic config (``PUT .../config``) and wait until the
        new configuration serves. An update that fails raises
        :class:`~deployflow.errors.DeploymentFailedError` with Databricks' reason."""
        body = dict(config or {})
        wait, timeout = self._should_wait(body)
        answer = DatabricksEndpoint(self._call("PUT", f"{_quoted(endpoint)}/config", json=body) or {})
        if not wait:
            return answer
        self._wait_endpoint(endpoint, timeout)
        return self._endpoint_record(endpoint)

    def update_endpoint_tags(self, endpoint: str, config: dict[str, Any]) -> DatabricksEndpoint:
        """Add and remove tags: ``{"add_tags": [{"key": k, "value": v}], "delete_tags": [k]}``. Returns
        the endpoint's tags."""
        return DatabricksEndpoint(self._call("PATCH", f"{_quoted(endpoint)}/tags", json=dict(config or {})) or {})

    def update_endpoint_rate_limits(self, endpoint: str, config: dict[str, Any]) -> DatabricksEndpoint:
        """Replace the rate limits: ``{"rate_limits": [{"calls": 10, "key": "user", "renewal_period":
        "minute"}]}``. Returns the rate limits now in force."""
        return DatabricksEndpoint(self._call("PUT", f"{_quoted(endpoint)}/rate-limits", json=dict(config or {})) or {})

    def update_endpoint_ai_gateway(self, endpoint: str, config: dict[str, Any]) -> DatabricksEndpoint:
        """Replace the AI gateway settings (usage tracking, inference tables, guardrails, rate limits,
        fallbacks). Returns the settings now in force."""
        return DatabricksEndpoint(self._call("PUT", f"{_quoted(endpoint)}/ai-gateway", json=dict(config or {})) or {})

    def update_endpoint(self, endpoint: str, config: dict[str, Any] | None = None) -> DatabricksEndpoint:
        """Deprecated (as in MLflow): use :meth:`update_endpoint_config`, :meth:`update_endpoint_tags`,
        :meth:`update_endpoint_rate_limits` or :meth:`update_endpoint_ai_gateway`.

        A config holding only ``rate_limits`` goes to the rate limits, one holding only ``add_tags`` /
        ``delete_tags`` to the tags, anything else to the endpoint's configuration.
        """
        warnings.warn(
            "update_endpoint is deprecated: use update_endpoint_config, update_endpoint_tags, "
            "update_endpoint_rate_limits or update_endpoint_ai_gateway",
            FutureWarning,
            stacklevel=2,
        )
        config = dict(config or {})
        keys = set(config) - {"wait", "wait_timeout"}
        if keys == {"rate_limits"}:
            return self.update_endpoint_rate_limits(endpoint, {"rate_limits": config["rate_limits"]})
        if keys and keys <= {"add_tags", "delete_tags"}:
            return self.update_endpoint_tags(endpoint, {key: config[key] for key in keys})
        return self.update_endpoint_config(endpoint, config)

    def delete_endpoint(self, endpoint: str) -> None:
        """Delete the endpoint. Idempotent: an endpoint that does not exist is not an error."""
        try:
            self._call("DELETE", _quoted(endpoint))
        except NotFoundError:
            logger.info("Endpoint %r does not exist; nothing to delete", endpoint)

    def list_endpoints(self) -> list[DatabricksEndpoint]:
        """Every serving endpoint of the workspace."""
        answer = self._call("GET") or {}
        return [DatabricksEndpoint(item) for item in answer.get("endpoints") or []]

    def get_endpoint(self, endpoint: str) -> DatabricksEndpoint:
        """The endpoint's record (state, config, pending_config, tags, ...); raises
        :class:`~deployflow.errors.NotFoundError` when there is none."""
        return self._endpoint_record(endpoint)

    # -- deployments: served entities -------------------------------------------------------------

    def create_deployment(
        self,
        name: str,
        model_uri: str,
        flavor: str | None = None,
        config: dict[str, Any] | None = None,
        endpoint: str | None = None,
    ) -> dict[str, Any]:
        """Serve a registered model version as entity ``name`` of endpoint ``endpoint`` (default: an
        endpoint named ``name``), creating the endpoint when it does not exist, and wait until it serves.

        ``model_uri`` is ``models:/<catalog.schema.model>/<version>`` (Unity Catalog),
        ``models:/<name>/<version>`` (workspace registry) or ``models:/<name>@<alias>``. Config keys:
        workload_size, workload_type, scale_to_zero_enabled, traffic_percentage, environment_vars,
        entity, wait, wait_timeout. Raises :class:`~deployflow.errors.ConflictError` when the endpoint
        already serves an entity called ``name``.
        """
        _check_flavor(flavor)
        settings = _deployment_config(config)
        wait, timeout = self._should_wait(settings)
        endpoint = endpoint or name
        _check_endpoint_name(endpoint)
        entity = self._entity_for(name, model_uri, settings, base=None)
        share = settings.get("traffic_percentage")
        try:
            record = self._settled(endpoint, timeout)
        except NotFoundError:
            record = None
        if record is None:
            if share is not None and share != 100:
                raise InvalidInputError(
                    f"traffic_percentage must be 100 for the only entity of the new endpoint {endpoint!r}, got {share}"
                )
            payload = {"name": endpoint, "config": {"served_entities": [entity], "traffic_config": traffic_config({name: 100})}}
            self._call("POST", json=payload)
        else:
            active = record.get("config") or {}
            entities = served_entities_of(active)
            if name in entities:
                raise ConflictError(
                    f"Endpoint {endpoint!r} already serves an entity named {name!r} "
                    f"({model_uri_of(entities[name]) or 'not a registered model'}); use update_deployment to change it"
                )
            served = [writable(item) for item in entities.values()] + [entity]
            routes = rebalance(routes_of(active), name, 100 if share is None else share)
            self._put_config(endpoint, active, served, routes)
        if wait:
            self._wait_deployment(name, endpoint, timeout)
        return self.get_deployment(name, endpoint)

    def update_deployment(
        self,
        name: str,
        model_uri: str | None = None,
        flavor: str | None = None,
        config: dict[str, Any] | None = None,
        endpoint: str | None = None,
    ) -> dict[str, Any]:
        """Change served entity ``name`` of ``endpoint`` (default: the endpoint named ``name``): a new
        model version, workload, scale to zero or traffic share; wait until the update serves.

        Settings not given keep their values. An update Databricks rejects while rolling out raises
        :class:`~deployflow.errors.DeploymentFailedError` with its reason (the old version keeps serving).
        """
        _check_flavor(flavor)
        settings = _deployment_config(config)
        wait, timeout = self._should_wait(settings)
        endpoint = endpoint or name
        record = self._settled(endpoint, timeout)
        active = record.get("config") or {}
        entities = served_entities_of(active)
        if name not in entities:
            raise NotFoundError(f"Endpoint {endpoint!r} serves no entity named {name!r}")
        updated = self._entity_for(name, model_uri, settings, base=entities[name])
        served = [updated if key == name else writable(item) for key, item in entities.items()]
        routes = routes_of(active) or {name: 100}
        if settings.get("traffic_percentage") is not None:
            routes = rebalance(routes, name, settings["traffic_percentage"])
        self._put_config(endpoint, active, served, routes)
        if wait:
            self._wait_deployment(name, endpoint, timeout)
        return self.get_deployment(name, endpoint)

    def delete_deployment(self, name: str, config: dict[str, Any] | None = None, endpoint: str | None = None) -> None:
        """Stop serving entity ``name`` of ``endpoint`` (default: the endpoint named ``name``); its traffic
        goes to the others in proportion. Deleting the last entity deletes the endpoint. Idempotent."""
        settings = dict(config or {})
        wait, timeout = self._should_wait(settings)
        endpoint = endpoint or name
        try:
            record = self._settled(endpoint, timeout)
        except NotFoundError:
            return
        active = record.get("config") or {}
        entities = served_entities_of(active)
        if name not in entities:
            pending = served_entities_of(record.get("pending_config"))
            if name in pending and len(pending) == 1 and not entities:
                self.delete_endpoint(endpoint)  # an endpoint whose creation failed
            return
        if len(entities) == 1:
            self.delete_endpoint(endpoint)
            return
        served = [writable(item) for key, item in entities.items() if key != name]
        routes = rebalance({key: value for key, value in routes_of(active).items() if key != name})
        self._put_config(endpoint, active, served, routes)
        if wait:
            self._wait_endpoint(endpoint, timeout)

    def list_deployments(self, endpoint: str | None = None) -> list[dict[str, Any]]:
        """The served entities of ``endpoint``, or of every endpoint, each a dict with ``name``,
        ``endpoint``, ``model_uri``, ``state`` and the entity's settings."""
        records = [self._endpoint_record(endpoint)] if endpoint else self.list_endpoints()
        found = []
        for record in records:
            entities = {**served_entities_of(record.get("pending_config")), **served_entities_of(record.get("config"))}
            for entity_name in entities:
                found.append(deployment_record(record, entity_name))
        return found

    def get_deployment(self, name: str, endpoint: str | None = None) -> dict[str, Any]:
        """Served entity ``name`` of ``endpoint`` (default: the endpoint named ``name``); raises
        :class:`~deployflow.errors.NotFoundError` when there is none."""
        endpoint = endpoint or name
        record = self._endpoint_record(endpoint)
        if name not in served_entities_of(record.get("config")) and name not in served_entities_of(record.get("pending_config")):
            raise NotFoundError(f"Endpoint {endpoint!r} serves no entity named {name!r}")
        return deployment_record(record, name)

    # -- traffic split (the interface deployflow.promotion uses) ----------------------------------

    def get_traffic_split(self, endpoint: str) -> dict[str, float]:
        """Endpoint ``endpoint``'s ``traffic_config.routes``: served entity name -> percent (adds up to
        100); a served entity without a route has 0."""
        active = self._endpoint_record(endpoint).get("config") or {}
        routes = routes_of(active)
        return {name: float(routes.get(name, 0)) for name in served_entities_of(active)}

    def set_traffic_split(self, endpoint: str, split: Mapping[str, float], *, wait: bool = True) -> DatabricksEndpoint:
        """Give each served entity in ``split`` its percent of ``endpoint``'s requests (an entity left
        out gets 0) through the endpoint's config update (``PUT .../config`` with the same served
        entities and new ``traffic_config.routes``). Databricks takes whole percents: shares are
        rounded by the largest remainder so they still add up to 100. Waits until the endpoint is READY
        unless ``wait`` is false; returns the endpoint's record. An entity the endpoint does not serve
        raises :class:`~deployflow.errors.InvalidInputError`."""
        _check_endpoint_name(endpoint)
        wait_now, timeout = self._should_wait({"wait": wait})
        record = self._settled(endpoint, timeout)
        active = record.get("config") or {}
        entities = served_entities_of(active)
        shares = _percent_split(split, list(entities), endpoint)
        self._put_config(endpoint, active, [writable(item) for item in entities.values()], shares)
        if wait_now:
            self._wait_endpoint(endpoint, timeout)
        return self._endpoint_record(endpoint)

    def traffic_member_target(self, endpoint: str, member: str) -> dict[str, str]:
        """Score served entity ``member`` alone: its own invocations path (``.../served-models/<member>/invocations``)."""
        return {"deployment_name": member, "endpoint": endpoint}

    def _put_config(self, endpoint: str, active: Mapping[str, Any], served: list[dict[str, Any]], routes: Mapping[str, int]) -> None:
        body: dict[str, Any] = {"served_entities": served, "traffic_config": traffic_config(routes)}
        if active.get("auto_capture_config"):
            body["auto_capture_config"] = copy.deepcopy(active["auto_capture_config"])
        self._call("PUT", f"{_quoted(endpoint)}/config", json=body)

    def _entity_for(
        self, name: str, model_uri: str | None, settings: Mapping[str, Any], base: Mapping[str, Any] | None
    ) -> dict[str, Any]:
        entity = writable(base) if base else {"name": name}
        if model_uri is not None:
            model_name, version = self._resolve_model_uri(model_uri)
            entity["entity_name"] = model_name
            entity["entity_version"] = version
        elif base is None:
            raise InvalidInputError("create_deployment needs a model_uri such as 'models:/catalog.schema.model/1'")
        if base is None:
            entity.setdefault("workload_size", "Small")
            entity.setdefault("scale_to_zero_enabled", True)
        for key in ("workload_size", "workload_type", "scale_to_zero_enabled", "environment_vars"):
            if settings.get(key) is not None:
                entity[key] = settings[key]
        entity.update(copy.deepcopy(settings.get("entity") or {}))
        entity["name"] = name
        return entity

    def _resolve_model_uri(self, model_uri: str) -> tuple[str, str]:
        match = _MODEL_URI.match(model_uri.strip()) if isinstance(model_uri, str) else None
        if not match:
            raise InvalidInputError(
                f"Databricks serves registered models: model_uri must be 'models:/<name>/<version>' or "
                f"'models:/<name>@<alias>' (for example 'models:/main.default.churn/3'), got {model_uri!r}"
            )
        model_name, version, alias = match["name"], match["version"], match["alias"]
        if version is not None:
            if not version.isdigit():
                raise InvalidInputError(
                    f"The model version in {model_uri!r} must be a number (stages such as 'latest' or "
                    "'Production' are not served by Databricks; use a version or an @alias)"
                )
            return model_name, version
        if model_name.count(".") == 2:
            answer = self._transport.request_json(
                "GET", f"/api/2.1/unity-catalog/models/{quote(model_name, safe='.')}/aliases/{quote(alias, safe='')}"
            ) or {}
            resolved = answer.get("version")
        else:
            answer = self._transport.request_json(
                "GET", "/api/2.0/mlflow/registered-models/alias", params={"name": model_name, "alias": alias}
            ) or {}
            resolved = (answer.get("model_version") or {}).get("version")
        if resolved in (None, ""):
            raise NotFoundError(f"The alias {alias!r} of model {model_name!r} points to no version")
        return model_name, str(resolved)

    # -- scoring ----------------------------------------------------------------------------------

    def _invocation_path(self, deployment_name: str | None, endpoint: str | None) -> str:
        if endpoint and deployment_name:
            return f"/serving-endpoints/{_quoted(endpoint)}/served-models/{_quoted(deployment_name)}/invocations"
        target = endpoint or deployment_name
        if not target:
            raise InvalidInputError("predict needs an endpoint (or a deployment name, which names its endpoint)")
        return f"/serving-endpoints/{_quoted(target)}/invocations"

    def predict(
        self, deployment_name: str | None = None, inputs: Any = None, endpoint: str | None = None
    ) -> PredictionsResponse:
        """Query an endpoint (``endpoint=``), or one served entity of it (``deployment_name=`` and
        ``endpoint=``). ``inputs`` is the request body as a dict (chat ``messages``, ``dataframe_split``,
        ``inputs``, ...); a DataFrame, array or list is encoded as MLflow's scoring protocol does."""
        path = self._invocation_path(deployment_name, endpoint)
        if isinstance(inputs, Mapping):
            body, content_type = encode_json(dict(inputs)), "application/json"
        else:
            body, content_type = encode_request(inputs)
        response = self._transport.request("POST", path, data=body, headers={"Content-Type": content_type}, kind="predict")
        return decode_response(response.content)

    def predict_stream(
        self, deployment_name: str | None = None, inputs: Any = None, endpoint: str | None = None
    ) -> Iterator[dict[str, Any]]:
        """Query with ``"stream": true`` and yield each chunk Databricks sends (chat/completion chunks).

        The request is sent now, so an HTTP error raises here; an error the model reports mid-stream
        raises :class:`~deployflow.errors.RemoteError` while iterating."""
        path = self._invocation_path(deployment_name, endpoint)
        if inputs is not None and not isinstance(inputs, Mapping):
            raise InvalidInputError(f"predict_stream takes the request body as a dict, got {type(inputs).__name__}")
        body = {**(inputs or {}), "stream": True}
        response = self._transport.request(
            "POST", path, json=body, headers={"Accept": "text/event-stream"}, kind="predict", stream=True
        )
        return stream_json(self._transport, response, what=f"POST {path}")


# --------------------------------------------------------------------------------------------------


def _quoted(name: str) -> str:
    if not isinstance(name, str) or not name:
        raise InvalidInputError(f"An endpoint or entity name must be a non-empty string, got {name!r}")
    return quote(name, safe="")


def _percent_split(split: Mapping[str, float], entities: list[str], endpoint: str) -> dict[str, int]:
    """``split`` as whole percents over every entity of the endpoint, adding up to 100."""
    if not isinstance(split, Mapping) or not split:
        raise InvalidInputError("split must map served entity names to percents, e.g. {'a': 90, 'b': 10}")
    unknown = sorted(set(map(str, split)) - set(entities))
    if unknown:
        raise InvalidInputError(f"Endpoint {endpoint!r} serves no entity named {', '.join(map(repr, unknown))} (it serves {', '.join(entities)})")
    exact = {name: 0.0 for name in entities}
    for name, share in split.items():
        value = as_number(share, f"the share of {name!r}", positive=False)
        if value > 100:
            raise InvalidInputError(f"the share of {name!r} must be from 0 to 100, got {share!r}")
        exact[str(name)] = value
    total = sum(exact.values())
    if abs(total - 100.0) > 0.5:
        raise InvalidInputError(f"A traffic split must add up to 100, got {total:g}: {dict(split)}")
    whole = {name: int(value * 100.0 / total) for name, value in exact.items()}
    order = sorted(exact, key=lambda name: exact[name] * 100.0 / total - whole[name], reverse=True)
    for name in order[: 100 - sum(whole.values())]:
        whole[name] += 1
    return whole


def _check_endpoint_name(name: str) -> None:
    if not isinstance(name, str) or not _NAME.match(name):
        raise InvalidInputError(
            f"Databricks endpoint names use letters, digits, '-' and '_' only; got {name!r}"
        )


def _check_flavor(flavor: str | None) -> None:
    if flavor not in (None, "python_function", "pyfunc"):
        raise InvalidInputError(f"Databricks serves models as python_function; flavor {flavor!r} is not supported")


def _deployment_config(config: Mapping[str, Any] | None) -> dict[str, Any]:
    settings = dict(config or {})
    unknown = sorted(set(settings) - set(DEPLOYMENT_CONFIG_KEYS))
    if unknown:
        raise InvalidInputError(
            f"Unknown config key(s) for a Databricks deployment: {', '.join(unknown)}; known: "
            f"{', '.join(sorted(DEPLOYMENT_CONFIG_KEYS))}"
        )
    share = settings.get("traffic_percentage")
    if share is not None:
        if isinstance(share, bool) or not isinstance(share, (int, float)) or not 0 <= share <= 100 or int(share) != share:
            raise InvalidInputError(f"traffic_percentage must be a whole number from 0 to 100, got {share!r}")
        settings["traffic_percentage"] = int(share)
    if settings.get("scale_to_zero_enabled") is not None:
        settings["scale_to_zero_enabled"] = as_bool(settings["scale_to_zero_enabled"], "scale_to_zero_enabled")
    if settings.get("entity") is not None and not isinstance(settings["entity"], Mapping):
        raise InvalidInputError("config 'entity' must be a dict of served-entity fields")
    if settings.get("environment_vars") is not None and not isinstance(settings["environment_vars"], Mapping):
        raise InvalidInputError("config 'environment_vars' must be a dict")
    return settings


# --------------------------------------------------------------------------------------------------
