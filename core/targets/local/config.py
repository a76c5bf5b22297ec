"""Validation of the ``local`` target's names, deployment config and endpoint config.

Trust boundary. Loading a model runs code: a pickle or joblib file, a cloudpickle MLflow model and a
``python:module:attribute`` reference all execute what their author wrote, with the rights of the
process that serves them. Serve only models you would run as a program; a ``model_uri`` built from
input (a templated pipeline parameter) is code execution for whoever controls that input.

Who can reach what. Scoring is open on loopback (``host: 127.0.0.1``, the default), as with
``mlflow models serve``; a deployment's ``auth_token`` makes its server require
``Authorization: Bearer <token>``. A deployment or endpoint on any other address is refused unless it
has an ``auth_token`` or its config says ``allow_unauthenticated: true`` (then its process logs a
WARNING). An endpoint's router forwards the caller's ``Authorization`` header to the deployments,
which check it; its control paths (``/-/reload``, ``/-/routes``, ``/metrics``) always need its
per-endpoint control secret (:mod:`.control`).

Every value may arrive as a string (the CLI passes each ``-C key=value`` as text), so each key has a
coercion: ``"8080"`` becomes ``8080``, ``"false"`` becomes ``False``, ``"1.5"`` becomes ``1.5``. A key
nobody knows, or a value that does not fit, raises :class:`~deployflow.errors.InvalidInputError` naming
the key, what it expects and what it got.
"""

from __future__ import annotations

import ipaddress
import json
import re
from dataclasses import dataclass
from typing import Any, Callable, Mapping

from ...errors import InvalidInputError
from ...retry import as_bool, as_int, as_number

__all__ = [
    "NAME_PATTERN",
    "ConfigKey",
    "DEPLOYMENT_KEYS",
    "ENDPOINT_KEYS",
    "ENDPOINT_UPDATABLE_KEYS",
    "check_exposure",
    "check_name",
    "deployment_config",
    "endpoint_config",
    "routes_from",
    "masked_config",
]

#: Deployment and endpoint names: they become directory names, so a conservative alphabet.
NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")

_LOG_LEVELS = ("critical", "error", "warning", "info", "debug", "trace")


def check_name(name: object, what: str = "deployment") -> str:
    """Return ``name`` if it is a valid deployment or endpoint name, else raise InvalidInputError."""
    if not isinstance(name, str) or not NAME_PATTERN.match(name):
        raise InvalidInputError(
            f"Invalid {what} name {name!r}: use 1 to 63 characters from letters, digits, '_', '.' and '-', "
            "starting with a letter or a digit"
        )
    return name


# --------------------------------------------------------------------------------------------------
# Coercions: each takes (key, value) and returns the typed value or raises.
# --------------------------------------------------------------------------------------------------


def _bad(key: str, value: object, expected: str) -> InvalidInputError:
    return InvalidInputError(f"Config key {key!r} must be {expected}, got {value!r}")


def _integer(minimum: int, maximum: int | None = None) -> Callable[[str, object], int]:
    def coerce(key: str, value: object) -> int:
        return as_int(value, f"Config key {key!r}", minimum=minimum, maximum=maximum)

    return coerce


def _seconds(key: str, value: object) -> float:
    return as_number(value, f"Config key {key!r}", positive=True)


def _boolean(key: str, value: object) -> bool:
    return as_bool(value, f"Config key {key!r}")


def _optional(coerce: Callable[[str, object], Any]) -> Callable[[str, object], Any]:
    def optional(key: str, value: object) -> Any:
        if value is None or (isinstance(value, str) and value.strip().lower() in ("", "none", "null")):
            return None
        return coerce(key, value)

    return optional


def _host(key: str, value: object) -> str:
    if not isinstance(value, str) or not value.strip():
        raise _bad(key, value, "an IP address or a host name")
    host = value.strip()
    try:
        ipaddress.ip_address(host)
    except ValueError:
        if not re.fullmatch(r"[A-Za-z0-9]([A-Za-z0-9.-]{0,252})", host):
            raise _bad(key, value, "an IP address or a host name") from None
    return host


def _log_level(key: str, value: object) -> str:
    if isinstance(value, str) and value.strip().lower() in _LOG_LEVELS:
        return value.strip().lower()
    raise _bad(key, value, "one of " + ", ".join(_LOG_LEVELS))


def _token(key: str, value: object) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip() or any(c.isspace() for c in value.strip()):
        raise InvalidInputError(f"Config key {key!r} must be a non-empty string without spaces")
    return value.strip()


@dataclass(frozen=True)
class ConfigKey:
    """One config key: its default, its coercion and the line ``target_help()`` prints for it."""

    name: str
    default: Any
    coerce: Callable[[str, object], Any]
    help: str


_COMMON_KEYS = [
    ConfigKey("host", "127.0.0.1", _host, "interface to listen on (default 127.0.0.1, this machine only)"),
    ConfigKey("port", 0, _integer(0, 65535), "TCP port; 0 (the default) lets the process pick a free one"),
    ConfigKey(
        "max_request_bytes", 100 * 1024 * 1024, _integer(1), "largest request body accepted (default 100 MiB)"
    ),
    ConfigKey("request_timeout", 60.0, _seconds, "seconds one request may take before a 504 (default 60)"),
    ConfigKey(
        "startup_timeout",
        120.0,
        _seconds,
        "seconds a create or update waits for what it started to serve, all of it together (default 120)",
    ),
    ConfigKey(
        "stop_timeout",
        30.0,
        _seconds,
        "seconds a stopping process gets to finish in-flight requests before it is killed (default 30)",
    ),
    ConfigKey("log_level", "info", _log_level, "log level of the process: " + ", ".join(_LOG_LEVELS)),
    ConfigKey(
        "max_queue",
        None,
        _optional(_integer(1)),
        "requests admitted and not answered yet, past which the process answers 503 with Retry-After "
        "(default 64 per worker)",
    ),
    ConfigKey(
        "max_queued_bytes",
        None,
        _optional(_integer(1)),
        "body bytes those requests may hold together (default 256 MiB, or max_request_bytes if larger)",
    ),
    ConfigKey("header_timeout", 10.0, _seconds, "seconds for a request's headers to arrive (default 10)"),
    ConfigKey("body_timeout", 30.0, _seconds, "seconds for a request's body to arrive after its headers (default 30)"),
    ConfigKey("keepalive_timeout", 5.0, _seconds, "seconds a connection may stay idle before it is closed (default 5)"),
    ConfigKey(
        "limit_concurrency", 1000, _integer(1), "open connections past which the process answers 503 (default 1000)"
    ),
    ConfigKey(
        "allow_unauthenticated",
        False,
        _boolean,
        "true: accept a host beyond loopback without an auth_token (logged at WARNING); otherwise refused",
    ),
    ConfigKey(
        "wait",
        True,
        _boolean,
        "false: create and update return once the process is starting, without waiting until it serves "
        "(wait_for_deployment / wait_for_endpoint tell how it went)",
    ),
]

#: Every key a deployment's config accepts, by name.
DEPLOYMENT_KEYS: dict[str, ConfigKey] = {
    key.name: key
    for key in [
        *_COMMON_KEYS[:2],
        ConfigKey("workers", 1, _integer(1, 64), "number of server worker processes (default 1)"),
        *_COMMON_KEYS[2:],
        ConfigKey(
            "auth_token",
            None,
            _token,
            "when set, the server requires 'Authorization: Bearer <token>' on /invocations; the token is "
            "handed to the server in its environment, never written to disk",
        ),
    ]
}

#: Every key an endpoint's config accepts, by name.
ENDPOINT_KEYS: dict[str, ConfigKey] = {
    key.name: key
    for key in [
        ConfigKey(
            "routes",
            None,
            lambda key, value: routes_from(value),
            "list of {'deployment': name, 'traffic': percent}; percents add up to 100 (JSON text, or "
            "'a:90,b:10' on the command line)",
        ),
        *_COMMON_KEYS,
    ]
}

#: What update_endpoint may change on a running endpoint (the rest needs a new router process).
ENDPOINT_UPDATABLE_KEYS = frozenset({"routes", "wait"})


def _validated(config: Mapping[str, Any] | None, keys: Mapping[str, ConfigKey], what: str) -> dict[str, Any]:
    if config is None:
        return {}
    if not isinstance(config, Mapping):
        raise InvalidInputError(f"The {what} config must be a dict, got {type(config).__name__}")
    unknown = sorted(str(name) for name in config if name not in keys)
    if unknown:
        raise InvalidInputError(
            f"Unknown {what} config key(s): {', '.join(unknown)}. Known keys: {', '.join(keys)}"
        )
    return {name: keys[name].coerce(name, value) for name, value in config.items()}


def deployment_config(config: Mapping[str, Any] | None, base: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The full, typed config of a deployment: ``base`` (an earlier full config) or the defaults, with
    the validated keys of ``config`` on top. The caller checks the host with :func:`check_exposure`
    once it knows the token."""
    given = _validated(config, DEPLOYMENT_KEYS, "deployment")
    merged = {name: key.default for name, key in DEPLOYMENT_KEYS.items()}
    if base:
        merged.update({name: value for name, value in base.items() if name in DEPLOYMENT_KEYS})
    merged.update(given)
    _check_queue(merged)
    return merged


def check_exposure(config: Mapping[str, Any], what: str, *, credential: bool) -> None:
    """Refuse a ``host`` beyond loopback without a credential unless ``allow_unauthenticated`` is true."""
    from .serving import is_loopback

    if is_loopback(config["host"]) or credential or config.get("allow_unauthenticated"):
        return
    hint = "set config key 'auth_token', or " if what == "deployment" else ""
    raise InvalidInputError(
        f"A {what} on host {config['host']!r} could be reached from beyond this machine without an auth token: "
        f"{hint}set 'allow_unauthenticated: true' to accept that"
    )


def _check_queue(config: Mapping[str, Any]) -> None:
    queued = config.get("max_queued_bytes")
    if queued is not None and queued < config["max_request_bytes"]:
        raise InvalidInputError(
            f"Config key 'max_queued_bytes' ({queued}) must be at least 'max_request_bytes' "
            f"({config['max_request_bytes']}): the largest request allowed could never be admitted"
        )


def endpoint_config(config: Mapping[str, Any] | None) -> dict[str, Any]:
    """The full, typed config of a new endpoint; ``routes`` is required."""
    given = _validated(config, ENDPOINT_KEYS, "endpoint")
    if not given.get("routes"):
        raise InvalidInputError(
            "An endpoint needs config key 'routes', e.g. {'routes': [{'deployment': 'a', 'traffic': 100}]}"
        )
    merged = {name: key.default for name, key in ENDPOINT_KEYS.items()}
    merged.update(given)
    check_exposure(merged, "endpoint", credential=False)
    _check_queue(merged)
    return merged


def endpoint_update(config: Mapping[str, Any] | None, current: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The validated keys of an endpoint update (only ``routes`` and ``wait`` may change).

    A fixed key given with the value it has in ``current`` (the endpoint's config) is no change and
    is dropped, so a step that repeats its whole create config as an update is accepted.
    """
    given = _validated(config, ENDPOINT_KEYS, "endpoint")
    fixed = sorted(
        name
        for name in set(given) - ENDPOINT_UPDATABLE_KEYS
        if current is None or name not in current or current[name] != given[name]
    )
    for name in set(given) - ENDPOINT_UPDATABLE_KEYS - set(fixed):
        del given[name]
    if fixed:
        raise InvalidInputError(
            f"update_endpoint cannot change {', '.join(fixed)} of a running endpoint; delete it and create "
            "it again with the new values"
        )
    return given


def routes_from(value: object) -> list[dict[str, Any]]:
    """Validate endpoint routes; returns ``[{"deployment": str, "traffic": float}, ...]``.

    Accepts a list of dicts, JSON text holding one, or the short form ``"a:90,b:10"``. Percents are
    numbers from 0 to 100 that add up to 100; a deployment appears once.
    """
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("["):
            try:
                value = json.loads(text)
            except ValueError as exc:
                raise InvalidInputError(f"Config key 'routes' is not valid JSON: {exc}") from exc
        else:
            value = [_short_route(part) for part in text.split(",") if part.strip()]
    if not isinstance(value, (list, tuple)) or not value:
        raise InvalidInputError(
            "Config key 'routes' must be a non-empty list of {'deployment': name, 'traffic': percent}, "
            f"got {value!r}"
        )
    routes: list[dict[str, Any]] = []
    seen: set[str] = set()
    for route in value:
        if not isinstance(route, Mapping):
            raise InvalidInputError(f"Each route must be a dict with 'deployment' and 'traffic', got {route!r}")
        unknown = sorted(set(route) - {"deployment", "traffic"})
        if unknown:
            raise InvalidInputError(f"Unknown route key(s) {', '.join(unknown)}: a route has 'deployment' and 'traffic'")
        name = check_name(route.get("deployment"), "deployment")
        if name in seen:
            raise InvalidInputError(f"Deployment {name!r} appears twice in the routes")
        seen.add(name)
        traffic = route.get("traffic", 100 if len(value) == 1 else None)
        traffic = _percent(traffic)
        routes.append({"deployment": name, "traffic": traffic})
    total = sum(route["traffic"] for route in routes)
    if abs(total - 100.0) > 1e-6:
        raise InvalidInputError(f"Route traffic must add up to 100, got {total:g}")
    return routes


def _short_route(part: str) -> dict[str, Any]:
    name, sep, traffic = part.strip().partition(":")
    if not sep:
        raise InvalidInputError(f"Route {part.strip()!r} must read 'deployment:percent', as in 'a:90,b:10'")
    return {"deployment": name.strip(), "traffic": traffic.strip()}


def _percent(value: object) -> float:
    refused = InvalidInputError(f"Route traffic must be a number from 0 to 100, got {value!r}")
    try:
        percent = as_number(value, "Route traffic", positive=False)
    except InvalidInputError:
        raise refused from None
    if percent > 100:
        raise refused
    return percent


def masked_config(config: Mapping[str, Any], auth: bool) -> dict[str, Any]:
    """A deployment config fit to show: the auth token, which is never stored, appears as ``***`` when
    auth is on and not at all when it is off."""
    shown = {name: value for name, value in config.items() if name != "auth_token"}
    if auth:
        shown["auth_token"] = "***"
    return shown
