"""A fake Databricks workspace: the Model Serving REST API, as its public reference describes it.

What it does, as Databricks does:

* ``POST /api/2.0/serving-endpoints`` creates an endpoint that starts NOT_READY with ``config_update``
  IN_PROGRESS and its configuration in ``pending_config``; ``PUT .../{name}/config`` starts an update the
  same way (the old configuration keeps serving). Updates finish asynchronously: after
  ``polls_to_ready`` reads of the endpoint (``GET .../{name}``) the pending configuration becomes the
  active one (READY / NOT_UPDATING), or, for a model version registered with :meth:`fail_version`, the
  update ends UPDATE_FAILED with the served entity's ``deployment_state_message`` saying why;
* a second update while one is in progress is refused: 409 RESOURCE_CONFLICT;
* errors are ``{"error_code": ..., "message": ...}``: 400 INVALID_PARAMETER_VALUE (bad names, bad
  traffic), 400 RESOURCE_ALREADY_EXISTS, 404 RESOURCE_DOES_NOT_EXIST, 403 for a wrong token;
* tags (``PATCH .../tags``), rate limits (``PUT .../rate-limits``), AI gateway (``PUT .../ai-gateway``);
* ``POST /serving-endpoints/{name}/invocations`` and ``.../served-models/{entity}/invocations``: chat
  messages get a chat completion (streamed as server-sent events with ``"stream": true``); tabular input
  gets ``{"predictions": [...]}``, each row's sum times the serving entity's model version, so a test can
  tell which version answered; requests to the endpoint are spread over its served entities by
  ``traffic_config.routes`` (deterministically: smooth weighted round robin);
* model aliases: ``GET /api/2.1/unity-catalog/models/{name}/aliases/{alias}`` and
  ``GET /api/2.0/mlflow/registered-models/alias``;
* OAuth for service principals (machine-to-machine), as the workspace's OIDC server does it:
  ``GET /.well-known/databricks-config`` (the workspace's metadata, naming its OIDC root),
  ``GET /oidc/.well-known/oauth-authorization-server`` (the OIDC discovery document) and
  ``POST /oidc/v1/token``: a ``client_credentials`` grant whose client id and secret come as HTTP basic
  auth or as form fields, answered with ``access_token``, ``token_type`` (Bearer), ``expires_in`` and
  ``scope``; a wrong client is 401 ``invalid_client``. The REST routes accept the personal access token
  and every issued access token until it expires (``token_lifetime`` seconds after it was issued).

Faults (429 with ``Retry-After``, 503, ...) are queued with :meth:`FakeService.fail`.
"""

from __future__ import annotations

import base64
import binascii
import copy
import json
import os
import re
import secrets
import threading
import time
import uuid
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, unquote

from .base import FakeService, Request, Response, now_ms, sse

__all__ = ["FakeDatabricks", "DEFAULT_TOKEN", "CLIENT_ID", "CLIENT_SECRET", "scrub_sdk_environment"]

DEFAULT_TOKEN = "dapi0123456789abcdef0123456789abcdef"
#: The service principal the fake knows (OAuth machine-to-machine), unless told another.
CLIENT_ID = "6f1c1a3e-7b2d-4c55-9e0a-1d2b3c4d5e6f"
#: Of no well-known shape: only deployflow's own registration of the secret can mask it.
CLIENT_SECRET = "sp-Secret-5Kq9Vx2Lm7Rt4Wz8"
_NAME = re.compile(r"^[A-Za-z0-9_-]+$")
_API = "/api/2.0/serving-endpoints"


def scrub_sdk_environment(monkeypatch: Any) -> None:
    """Remove every variable databricks-sdk reads (``DATABRICKS_*``, ``ARM_*``, ``GOOGLE_CREDENTIALS``)
    but ``DATABRICKS_CONFIG_FILE``, so only what a test sets reaches the SDK."""
    for name in list(os.environ):
        if (name.startswith(("DATABRICKS_", "ARM_")) and name != "DATABRICKS_CONFIG_FILE") or name == "GOOGLE_CREDENTIALS":
            monkeypatch.delenv(name, raising=False)


def _error(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> Response:
    return Response.json({"error_code": code, "message": message}, status, headers)


class _BadRequest(Exception):
    def __init__(self, message: str, code: str = "INVALID_PARAMETER_VALUE") -> None:
        super().__init__(message)
        self.code = code


@dataclass
class _Rollout:
    polls_left: int
    failure: str | None  # the reason the update will fail, or None when it succeeds
    failing_entity: str | None


class FakeDatabricks(FakeService):
    """The fake workspace. ``polls_to_ready``: reads of an endpoint before an update finishes;
    ``client_id`` / ``client_secret``: the service principal its token endpoint accepts;
    ``token_lifetime``: the ``expires_in`` of the access tokens it issues (seconds)."""

    def __init__(
        self,
        token: str = DEFAULT_TOKEN,
        polls_to_ready: int = 2,
        *,
        client_id: str = CLIENT_ID,
        client_secret: str = CLIENT_SECRET,
        token_lifetime: int = 3600,
    ) -> None:
        super().__init__()
        self.token = token
        self.polls_to_ready = polls_to_ready
        self.client_id = client_id
        self.client_secret = client_secret
        self.token_lifetime = token_lifetime
        #: The token endpoint the discovery document names (default: this fake's ``/oidc/v1/token``).
        self.token_url: str | None = None
        #: Every access token issued, with the monotonic time it expires at, oldest first.
        self.issued: list[tuple[str, float]] = []
        self.endpoints: dict[str, dict[str, Any]] = {}
        self.rollouts: dict[str, _Rollout] = {}
        self.failing_versions: dict[tuple[str, str], str] = {}
        self.aliases: dict[tuple[str, str], str] = {}
        self.stream_gate: threading.Event | None = None
        #: The smooth weighted round robin's state per endpoint and routes (see ``_pick_route``).
        self.route_turns: dict[tuple[str, tuple[tuple[str, int], ...]], dict[str, int]] = {}

    # -- test controls --------------------------------------------------------------------------

    def fail_version(self, entity_name: str, version: str | int, message: str) -> None:
        """Updates that serve this model version end UPDATE_FAILED with ``message``."""
        with self.lock:
            self.failing_versions[(entity_name, str(version))] = message

    def set_alias(self, model_name: str, alias: str, version: str | int) -> None:
        with self.lock:
            self.aliases[(model_name, alias)] = str(version)

    def add_ready_endpoint(self, name: str, entities: list[dict[str, Any]], routes: dict[str, int] | None = None) -> dict[str, Any]:
        """An endpoint that is already READY (as if created long ago)."""
        with self.lock:
            config = self._config({"served_entities": entities, "traffic_config": _traffic(routes)} if routes else {"served_entities": entities}, 1)
            for entity in config["served_entities"]:
                entity["state"] = {"deployment": "DEPLOYMENT_READY", "deployment_state_message": ""}
            self.endpoints[name] = self._new_record(name, {})
            self.endpoints[name].update({"state": {"ready": "READY", "config_update": "NOT_UPDATING"}, "config": config})
            self.endpoints[name].pop("pending_config", None)
            return copy.deepcopy(self.endpoints[name])

    def begin_update(self, name: str, entities: list[dict[str, Any]]) -> None:
        """Start an update of endpoint ``name`` to serve ``entities``, as ``PUT .../config`` does (it
        finishes after ``polls_to_ready`` reads of the endpoint)."""
        with self.lock:
            self._update_config(name, {"served_entities": entities})

    @property
    def token_requests(self) -> list[Request]:
        """The requests made to the token endpoint."""
        return self.requests_to("POST", "/oidc/v1/token")

    # -- routing --------------------------------------------------------------------------------

    def route(self, request: Request) -> Response:
        if request.path in ("/.well-known/databricks-config", "/oidc/.well-known/oauth-authorization-server"):
            return self._discovery(request)
        if request.path == "/oidc/v1/token":
            return self._issue_token(request)
        auth = request.header("Authorization") or ""
        if not auth.startswith("Bearer "):
            return _error(401, "UNAUTHENTICATED", "Credential was not sent or was of an unsupported type for this API.")
        if not self._accepts(auth[len("Bearer "):]):
            return _error(403, "PERMISSION_DENIED", "Invalid access token.")
        path = request.path.rstrip("/")
        try:
            with self.lock:
                if path.startswith("/api/2.1/unity-catalog/models/") or path == "/api/2.0/mlflow/registered-models/alias":
                    return self._alias(request, path)
                if path == _API:
                    if request.method == "GET":
                        return Response.json({"endpoints": [self._summary(r) for r in self.endpoints.values()]})
                    if request.method == "POST":
                        return self._create(request.json() or {})
                    return _error(405, "BAD_REQUEST", "Method not allowed")
                if path.startswith(_API + "/"):
                    return self._endpoint_route(request, path[len(_API) + 1:].split("/"))
            if path.startswith("/serving-endpoints/"):
                return self._invoke(request, path[len("/serving-endpoints/"):].split("/"))
        except _BadRequest as exc:
            return _error(400, exc.code, str(exc))
        return _error(404, "ENDPOINT_NOT_FOUND", f"No API found for '{request.method} {request.path}'")

    # -- OAuth --------------------------------------------------------------------------------

    def _accepts(self, credential: str) -> bool:
        if credential == self.token:
            return True
        now = time.monotonic()
        with self.lock:
            return any(issued == credential and now < expires for issued, expires in self.issued)

    def _discovery(self, request: Request) -> Response:
        if request.method != "GET":
            return _error(405, "BAD_REQUEST", "Method not allowed")
        root = f"http://{request.header('Host')}"
        if request.path == "/.well-known/databricks-config":
            return Response.json({"oidc_endpoint": f"{root}/oidc", "workspace_id": "1234567890123456"})
        return Response.json({
            "issuer": f"{root}/oidc",
            "authorization_endpoint": f"{root}/oidc/v1/authorize",
            "token_endpoint": self.token_url or f"{root}/oidc/v1/token",
            "jwks_uri": f"{root}/oidc/jwks.json",
            "grant_types_supported": ["client_credentials", "authorization_code", "refresh_token"],
            "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
            "scopes_supported": ["all-apis", "offline_access", "sql"],
        })

    def _issue_token(self, request: Request) -> Response:
        if request.method != "POST":
            return _error(405, "BAD_REQUEST", "Method not allowed")
        form = {key: values[0] for key, values in parse_qs(request.body.decode("utf-8", "replace")).items()}
        client_id, client_secret = form.get("client_id"), form.get("client_secret")
        basic = request.header("Authorization") or ""
        if basic.startswith("Basic "):
            try:
                client_id, _, client_secret = base64.b64decode(basic[len("Basic "):]).decode().partition(":")
            except (binascii.Error, UnicodeDecodeError):
                client_id = client_secret = None
        if form.get("grant_type") != "client_credentials":
            return Response.json({"error": "unsupported_grant_type", "error_description": "Only client_credentials is supported here."}, 400)
        if client_id != self.client_id or client_secret != self.client_secret:
            return Response.json({"error": "invalid_client", "error_description": "Client authentication failed"}, 401)
        access_token = "eyJ" + secrets.token_urlsafe(32)
        with self.lock:
            lifetime = self.token_lifetime
            self.issued.append((access_token, time.monotonic() + lifetime))
        return Response.json({
            "access_token": access_token, "token_type": "Bearer", "expires_in": lifetime, "scope": form.get("scope") or "all-apis",
        })

    def _endpoint_route(self, request: Request, parts: list[str]) -> Response:
        name = unquote(parts[0])
        record = self.endpoints.get(name)
        if record is None:
            return _error(404, "RESOURCE_DOES_NOT_EXIST", f"Endpoint with name '{name}' does not exist.")
        rest = parts[1:]
        if not rest:
            if request.method == "GET":
                self._advance(name)
                return Response.json(copy.deepcopy(self.endpoints[name]))
            if request.method == "DELETE":
                del self.endpoints[name]
                self.rollouts.pop(name, None)
                return Response.json({})
        elif rest == ["config"] and request.method == "PUT":
            return self._update_config(name, request.json() or {})
        elif rest == ["tags"] and request.method == "PATCH":
            body = request.json() or {}
            tags = {tag["key"]: tag.get("value") for tag in record.get("tags", [])}
            for key in body.get("delete_tags") or []:
                tags.pop(key, None)
            for tag in body.get("add_tags") or []:
                if not tag.get("key"):
                    raise _BadRequest("Tag keys must be non-empty.")
                tags[tag["key"]] = tag.get("value")
            record["tags"] = [{"key": key, "value": value} if value is not None else {"key": key} for key, value in tags.items()]
            return Response.json({"tags": copy.deepcopy(record["tags"])})
        elif rest == ["rate-limits"] and request.method == "PUT":
            limits = (request.json() or {}).get("rate_limits") or []
            for limit in limits:
                if limit.get("renewal_period") != "minute" or not isinstance(limit.get("calls"), int):
                    raise _BadRequest("Each rate limit needs an integer 'calls' and renewal_period 'minute'.")
                limit.setdefault("key", "user")
            record["rate_limits"] = limits
            return Response.json({"rate_limits": copy.deepcopy(limits)})
        elif rest == ["ai-gateway"] and request.method == "PUT":
            body = copy.deepcopy(request.json() or {})
            table = body.get("inference_table_config")
            if isinstance(table, dict) and table.get("enabled"):
                table.setdefault("table_name_prefix", name)
            record["ai_gateway"] = body
            return Response.json(copy.deepcopy(body))
        return _error(404, "ENDPOINT_NOT_FOUND", f"No API found for '{request.method} {request.path}'")

    # -- creating and updating ------------------------------------------------------------------

    def _new_record(self, name: str, body: dict[str, Any]) -> dict[str, Any]:
        stamp = now_ms()
        return {
            "name": name,
            "id": uuid.uuid4().hex,
            "creator": "someone@example.com",
            "creation_timestamp": stamp,
            "last_updated_timestamp": stamp,
            "state": {"ready": "NOT_READY", "config_update": "IN_PROGRESS"},
            "tags": copy.deepcopy(body.get("tags") or []),
            "permission_level": "CAN_MANAGE",
            "route_optimized": bool(body.get("route_optimized", False)),
        }

    def _create(self, body: dict[str, Any]) -> Response:
        name = body.get("name")
        if not isinstance(name, str) or not _NAME.match(name):
            raise _BadRequest(f"Invalid endpoint name '{name}': use alphanumeric characters, dashes and underscores.")
        if name in self.endpoints:
            raise _BadRequest(f"Endpoint with name '{name}' already exists.", "RESOURCE_ALREADY_EXISTS")
        core = body.get("config")
        if not isinstance(core, dict):
            raise _BadRequest("Missing required field: config")
        config = self._config(core, 1)
        record = self._new_record(name, body)
        record["pending_config"] = config
        if body.get("rate_limits"):
            record["rate_limits"] = copy.deepcopy(body["rate_limits"])
        if body.get("ai_gateway"):
            record["ai_gateway"] = copy.deepcopy(body["ai_gateway"])
        external = [e for e in config["served_entities"] if "external_model" in e]
        if external:
            record["endpoint_type"] = "EXTERNAL_MODEL"
            record["task"] = external[0]["external_model"].get("task")
        self.endpoints[name] = record
        self._start_rollout(name, config)
        return Response.json(copy.deepcopy(record))

    def _update_config(self, name: str, body: dict[str, Any]) -> Response:
        record = self.endpoints[name]
        if record["state"].get("config_update") == "IN_PROGRESS":
            return _error(
                409, "RESOURCE_CONFLICT",
                f"Endpoint '{name}' is currently updating; wait until the update completes before updating again.",
            )
        version = int((record.get("config") or record.get("pending_config") or {}).get("config_version", 0)) + 1
        config = self._config(body, version)
        record["pending_config"] = config
        record["state"]["config_update"] = "IN_PROGRESS"
        record["last_updated_timestamp"] = now_ms()
        self._start_rollout(name, config)
        return Response.json(copy.deepcopy(record))

    def _config(self, core: dict[str, Any], version: int) -> dict[str, Any]:
        entities = copy.deepcopy(core.get("served_entities") or core.get("served_models") or [])
        if not entities:
            raise _BadRequest("The endpoint config must have at least one served entity.")
        for entity in entities:
            if "external_model" in entity:
                external = entity["external_model"]
                for required in ("name", "provider", "task"):
                    if not external.get(required):
                        raise _BadRequest(f"external_model.{required} is required.")
                entity.setdefault("name", re.sub(r"[.:]", "-", external["name"]))
            elif entity.get("entity_name"):
                if not entity.get("entity_version"):
                    raise _BadRequest("entity_version is required for a registered model.")
                if entity.get("workload_size") not in (None, "Small", "Medium", "Large"):
                    raise _BadRequest(f"Invalid workload_size '{entity.get('workload_size')}'.")
                if "scale_to_zero_enabled" not in entity:
                    raise _BadRequest("Missing required field: scale_to_zero_enabled")
                entity.setdefault("name", f"{entity['entity_name'].replace('.', '-')}-{entity['entity_version']}")
            else:
                raise _BadRequest("A served entity needs entity_name or external_model.")
            if "state" in entity:
                raise _BadRequest("Unknown field 'state' in served entity: it is output only.")
            entity["state"] = {"deployment": "DEPLOYMENT_CREATING", "deployment_state_message": "Creating the model server."}
        names = [entity["name"] for entity in entities]
        if len(set(names)) != len(names):
            raise _BadRequest("Served entity names must be unique.")
        traffic = copy.deepcopy(core.get("traffic_config"))
        if traffic is None:
            if len(entities) > 1:
                raise _BadRequest("traffic_config is required when serving more than one entity.")
            traffic = _traffic({names[0]: 100})
        routes = traffic.get("routes") or []
        if sum(int(route.get("traffic_percentage", 0)) for route in routes) != 100:
            raise _BadRequest("The traffic percentages of the routes must add up to 100.")
        for route in routes:
            if route.get("served_model_name") not in names:
                raise _BadRequest(f"Route to unknown served entity '{route.get('served_model_name')}'.")
        config = {"served_entities": entities, "traffic_config": traffic, "config_version": version, "start_time": now_ms()}
        if core.get("auto_capture_config"):
            config["auto_capture_config"] = copy.deepcopy(core["auto_capture_config"])
        return config

    def _start_rollout(self, name: str, config: dict[str, Any]) -> None:
        failure = failing = None
        for entity in config["served_entities"]:
            key = (entity.get("entity_name"), str(entity.get("entity_version")))
            if key in self.failing_versions:
                failure, failing = self.failing_versions[key], entity["name"]
                break
        self.rollouts[name] = _Rollout(self.polls_to_ready, failure, failing)

    def _advance(self, name: str) -> None:
        """One read of the endpoint: a running update moves one step closer to its end."""
        rollout = self.rollouts.get(name)
        if rollout is None:
            return
        rollout.polls_left -= 1
        if rollout.polls_left > 0:
            return
        del self.rollouts[name]
        record = self.endpoints[name]
        pending = record["pending_config"]
        if rollout.failure is None:
            for entity in pending["served_entities"]:
                entity["state"] = {"deployment": "DEPLOYMENT_READY", "deployment_state_message": ""}
            pending.pop("start_time", None)
            record["config"] = record.pop("pending_config")
            record["state"] = {"ready": "READY", "config_update": "NOT_UPDATING"}
        else:
            for entity in pending["served_entities"]:
                if entity["name"] == rollout.failing_entity:
                    entity["state"] = {"deployment": "DEPLOYMENT_FAILED", "deployment_state_message": rollout.failure}
                else:
                    entity["state"] = {"deployment": "DEPLOYMENT_ABORTED", "deployment_state_message": "Update aborted."}
            record["state"]["config_update"] = "UPDATE_FAILED"
        record["last_updated_timestamp"] = now_ms()

    def _summary(self, record: dict[str, Any]) -> dict[str, Any]:
        """An endpoint as the list call shows it: no pending config, served entities in brief."""
        found = {key: copy.deepcopy(value) for key, value in record.items() if key not in ("pending_config", "ai_gateway", "rate_limits")}
        config = found.get("config")
        if config:
            found["config"] = {
                "served_entities": [
                    {key: entity[key] for key in ("name", "entity_name", "entity_version", "external_model", "state") if key in entity}
                    for entity in config["served_entities"]
                ],
                "config_version": config.get("config_version"),
            }
        return found

    # -- aliases --------------------------------------------------------------------------------

    def _alias(self, request: Request, path: str) -> Response:
        if path.startswith("/api/2.1/"):
            match = re.match(r"^/api/2\.1/unity-catalog/models/([^/]+)/aliases/([^/]+)$", path)
            if not match:
                return _error(404, "ENDPOINT_NOT_FOUND", "No API found")
            model, alias = unquote(match[1]), unquote(match[2])
            version = self.aliases.get((model, alias))
            if version is None:
                return _error(404, "RESOURCE_DOES_NOT_EXIST", f"Alias {alias} not found for model {model}.")
            return Response.json({"model_name": model, "version": int(version), "aliases": [{"alias_name": alias, "version_num": int(version)}]})
        model, alias = request.param("name") or "", request.param("alias") or ""
        version = self.aliases.get((model, alias))
        if version is None:
            return _error(404, "RESOURCE_DOES_NOT_EXIST", f"Registered model alias {alias} not found.")
        return Response.json({"model_version": {"name": model, "version": version, "aliases": [alias]}})

    # -- scoring --------------------------------------------------------------------------------

    def _invoke(self, request: Request, parts: list[str]) -> Response:
        with self.lock:
            name = unquote(parts[0])
            record = copy.deepcopy(self.endpoints.get(name))
        if record is None:
            return _error(404, "RESOURCE_DOES_NOT_EXIST", f"Endpoint with name '{name}' does not exist.")
        config = record.get("config")
        if record["state"]["ready"] != "READY" or not config:
            return _error(400, "INVALID_STATE", f"Endpoint '{name}' is not ready.")
        entities = {entity["name"]: entity for entity in config["served_entities"]}
        if len(parts) == 4 and parts[1] == "served-models" and parts[3] == "invocations":
            entity = entities.get(unquote(parts[2]))
            if entity is None:
                return _error(404, "RESOURCE_DOES_NOT_EXIST", f"Served model '{unquote(parts[2])}' does not exist.")
        elif parts[1:] == ["invocations"]:
            entity = entities[self._pick_route(name, config["traffic_config"]["routes"])]
        else:
            return _error(404, "ENDPOINT_NOT_FOUND", "No API found")
        try:
            body = request.json()
        except ValueError:
            return _error(400, "BAD_REQUEST", "Malformed JSON in the request body.")
        if not isinstance(body, dict):
            return _error(400, "BAD_REQUEST", "The request body must be a JSON object.")
        if "messages" in body:
            return self._chat(entity, body)
        for key in ("dataframe_split", "dataframe_records", "inputs", "instances"):
            if key in body:
                return Response.json({"predictions": _score(body[key], key, entity)})
        return _error(400, "BAD_REQUEST", "Invalid input: expected one of dataframe_split, dataframe_records, inputs, instances or messages.")

    def _pick_route(self, endpoint: str, routes: list[dict[str, Any]]) -> str:
        """The served entity that answers the next request to the endpoint, spread over the routes by
        their ``traffic_percentage`` (smooth weighted round robin: deterministic, and over any 100
        requests each entity answers its percentage of them; a 0% route never answers)."""
        weights = {route["served_model_name"]: int(route["traffic_percentage"]) for route in routes}
        with self.lock:
            key = (endpoint, tuple(sorted(weights.items())))
            current = self.route_turns.setdefault(key, {name: 0 for name in weights})
            for name, weight in weights.items():
                current[name] += weight
            chosen = max((name for name in weights if weights[name] > 0), key=lambda name: current[name])
            current[chosen] -= sum(weights.values())
            return chosen

    def _chat(self, entity: dict[str, Any], body: dict[str, Any]) -> Response:
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            return _error(400, "BAD_REQUEST", "'messages' must be a non-empty list.")
        text = str(messages[-1].get("content", ""))
        model = (entity.get("external_model") or {}).get("name") or entity["name"]
        words = ["You", "said:", *text.split()]
        if not body.get("stream"):
            return Response.json({
                "id": "chatcmpl-fake", "object": "chat.completion", "created": 1700000000, "model": model,
                "choices": [{"index": 0, "message": {"role": "assistant", "content": " ".join(words)}, "finish_reason": "stop"}],
                "usage": {"prompt_tokens": len(text.split()), "completion_tokens": len(words), "total_tokens": len(text.split()) + len(words)},
            })
        gate = self.stream_gate

        def chunks():
            for index, word in enumerate(words):
                chunk = {
                    "id": "chatcmpl-fake", "object": "chat.completion.chunk", "created": 1700000000, "model": model,
                    "choices": [{"index": 0, "delta": {"role": "assistant", "content": word if index == 0 else " " + word}, "finish_reason": None}],
                }
                # Databricks' own spacing varies; send both "data: " and "data:" and keep-alive lines.
                prefix = b"data: " if index % 2 == 0 else b"data:"
                yield prefix + json.dumps(chunk).encode() + b"\n\n"
                if index == 0:
                    yield b"\n"  # a blank keep-alive
                    if gate is not None:
                        gate.wait(10)
                    if "explode" in text:
                        yield b'data: {"error_code": "INTERNAL_ERROR", "message": "The model server crashed while generating."}\n\n'
                        return
            yield from sse({
                "id": "chatcmpl-fake", "object": "chat.completion.chunk", "created": 1700000000, "model": model,
                "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}],
            })

        return Response.stream(chunks())


def _traffic(routes: dict[str, int] | None) -> dict[str, Any]:
    return {"routes": [{"served_model_name": key, "traffic_percentage": value} for key, value in (routes or {}).items()]}


def _score(data: Any, key: str, entity: dict[str, Any]) -> list[float]:
    """Each row's sum times the entity's model version: which version answered shows in the numbers."""
    factor = int(entity.get("entity_version") or 1)
    if key == "dataframe_split":
        rows = data.get("data") or []
    elif key == "dataframe_records":
        rows = [list(record.values()) for record in data]
    else:
        rows = data
    if isinstance(rows, dict):
        rows = list(zip(*rows.values()))
    result = []
    for row in rows:
        values = row if isinstance(row, (list, tuple)) else [row]
        result.append(float(sum(values)) * factor)
    return result
