"""The spec file of a deployment server: what the client writes and the server process reads.

::

    {"version": 1, "name": "iris", "model_uri": "/models/iris.pkl", "flavor": null,
     "host": "127.0.0.1", "port": 0, "workers": 1, "max_request_bytes": 104857600,
     "request_timeout": 60.0, "ready_file": "/abs/path/ready.json", "log_level": "info",
     "max_queue": null, "max_queued_bytes": null, "header_timeout": 10.0, "body_timeout": 30.0,
     "keepalive_timeout": 5.0, "limit_concurrency": 1000, "allow_unauthenticated": false}

``version``, ``name`` and ``model_uri`` are required; the other keys take the defaults shown
(``ready_file`` defaults to none, ``request_timeout: null`` turns the time limit off; the connection
limits are described in :class:`.serving.ServingLimits`). Unknown keys are logged and ignored, so an
older server tolerates a newer spec. Values are read with the project's coercions
(:func:`deployflow.retry.as_int`, :func:`~deployflow.retry.as_number`); a bad one raises
:class:`SpecError` naming the key.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ...errors import InvalidInputError
from ...redaction import get_logger
from ...retry import as_int, as_number
from .models import normalize_flavor
from .serving import (
    LIMIT_DEFAULTS,
    ServingLimits,
    SpecError,
    allow_unauthenticated,
    parse_limits,
)

__all__ = ["SPEC_VERSION", "SPEC_DEFAULTS", "LOG_LEVELS", "ServerSpec", "SpecError", "parse_spec", "read_spec_file"]

_logger = get_logger("deployflow.targets.local.server")

SPEC_VERSION = 1
SPEC_DEFAULTS: dict[str, Any] = {
    "flavor": None,
    "host": "127.0.0.1",
    "port": 0,
    "workers": 1,
    "max_request_bytes": 100 * 1024 * 1024,
    "request_timeout": 60.0,
    "ready_file": None,
    "log_level": "info",
    **LIMIT_DEFAULTS,
}
_REQUIRED_KEYS = ("version", "name", "model_uri")
LOG_LEVELS = {"critical": 50, "error": 40, "warning": 30, "info": 20, "debug": 10, "trace": 5}


@dataclass(frozen=True)
class ServerSpec:
    """A validated server spec (see the module docstring for the keys)."""

    name: str
    model_uri: str
    flavor: str | None = None
    host: str = "127.0.0.1"
    port: int = 0
    workers: int = 1
    max_request_bytes: int = 100 * 1024 * 1024
    request_timeout: float | None = 60.0
    ready_file: str | None = None
    log_level: str = "info"
    version: int = SPEC_VERSION
    allow_unauthenticated: bool = False
    limits: ServingLimits = field(
        default_factory=lambda: parse_limits({}, workers=1, max_request_bytes=100 * 1024 * 1024)
    )

    def to_dict(self) -> dict[str, Any]:
        """The spec as a spec file holds it (the limits as the keys they came from)."""
        values = asdict(self)
        limits = values.pop("limits")
        limits["max_queue"] *= self.workers  # the spec's figure is the deployment's, split per worker
        return {**values, **limits}


def _key(spec: Mapping[str, Any], key: str, coerce: Any) -> Any:
    try:
        return coerce(spec[key], f"key {key!r}")
    except InvalidInputError as exc:
        raise SpecError(f"invalid server spec: {exc.message}") from exc


def parse_spec(raw: Any) -> ServerSpec:
    """Validate a spec dict (as read from spec.json) and return a :class:`ServerSpec`.

    Raises :class:`SpecError` naming the first key that is missing or wrong.
    """
    if not isinstance(raw, Mapping):
        raise SpecError(f"invalid server spec: expected a JSON object, got {type(raw).__name__}")
    missing = [key for key in _REQUIRED_KEYS if key not in raw]
    if missing:
        raise SpecError(f"invalid server spec: missing key(s) {', '.join(missing)}")
    unknown = sorted(set(raw) - set(_REQUIRED_KEYS) - set(SPEC_DEFAULTS))
    if unknown:
        _logger.warning("server spec: ignoring unknown key(s) %s", ", ".join(unknown))
    spec = {**SPEC_DEFAULTS, **{key: raw[key] for key in raw if key not in unknown}}

    if spec["version"] != SPEC_VERSION or isinstance(spec["version"], bool):
        raise SpecError(
            f"invalid server spec: version {spec['version']!r} is not supported (this server reads version "
            f"{SPEC_VERSION}); the server and the library that wrote the spec are out of step"
        )
    for key in ("name", "model_uri", "host"):
        if not isinstance(spec[key], str) or not spec[key].strip():
            raise SpecError(f"invalid server spec: {key!r} must be a non-empty string, got {spec[key]!r}")
    try:
        flavor = normalize_flavor(spec["flavor"])
    except InvalidInputError as exc:
        raise SpecError(f"invalid server spec: {exc}") from exc
    port = _key(spec, "port", lambda value, source: as_int(value, source, minimum=0, maximum=65535))
    workers = _key(spec, "workers", lambda value, source: as_int(value, source, minimum=1, maximum=64))
    max_request_bytes = _key(spec, "max_request_bytes", lambda value, source: as_int(value, source, minimum=1))
    timeout = spec["request_timeout"]
    if timeout is not None:
        timeout = _key(spec, "request_timeout", lambda value, source: as_number(value, source, positive=True))
    ready_file = spec["ready_file"]
    if ready_file is not None:
        if not isinstance(ready_file, str) or not os.path.isabs(ready_file):
            raise SpecError(f"invalid server spec: 'ready_file' must be an absolute path or null, got {ready_file!r}")
        if not os.path.isdir(os.path.dirname(ready_file)):
            raise SpecError(f"invalid server spec: 'ready_file' must be a path in an existing directory, "
                            f"got {ready_file!r}")
    log_level = spec["log_level"]
    if not isinstance(log_level, str) or log_level.lower() not in LOG_LEVELS:
        raise SpecError(f"invalid server spec: 'log_level' must be one of {', '.join(LOG_LEVELS)}, got {log_level!r}")
    return ServerSpec(
        name=spec["name"],
        model_uri=spec["model_uri"],
        flavor=flavor,
        host=spec["host"].strip(),
        port=port,
        workers=workers,
        max_request_bytes=max_request_bytes,
        request_timeout=timeout,
        ready_file=ready_file,
        log_level=log_level.lower(),
        allow_unauthenticated=allow_unauthenticated(spec),
        limits=parse_limits(spec, workers=workers, max_request_bytes=max_request_bytes),
    )


def read_spec_file(path: str | os.PathLike[str]) -> ServerSpec:
    """Read and validate a spec file; raises :class:`SpecError`."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise SpecError(f"cannot read server spec {str(path)!r}: {exc.strerror or exc}") from exc
    try:
        raw = json.loads(text)
    except ValueError as exc:
        raise SpecError(f"server spec {str(path)!r} is not valid JSON: {exc}") from exc
    return parse_spec(raw)
