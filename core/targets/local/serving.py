"""What a deployment server and an endpoint's router do the same way as processes.

Both are started by the client as ``python -m <module> --spec spec.json`` (:mod:`.process`), and both:

* read their spec with the project's coercions (:func:`deployflow.retry.as_int` and friends), the
  connection limits with :func:`parse_limits`;
* refuse to listen on anything but loopback without a credential, unless the spec says
  ``allow_unauthenticated: true`` (then they log a WARNING): :func:`check_exposure`;
* bind the socket themselves (:func:`bind_socket`), then serve on uvloop (:func:`run`): a deployment
  server with uvicorn (:func:`uvicorn_config`), a router with its own HTTP/1.1 front-end
  (:mod:`.front`), both under the same limits; then write the ready file atomically
  (:func:`write_ready_file`) with ``{"pid", "host", "port", "url", "flavor", "started_at"}``,
  ``started_at`` being seconds since the epoch.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import os
import socket
import time
from collections.abc import Coroutine, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from ..._eventloop import new_event_loop
from ...errors import ConflictError, InvalidInputError
from ...retry import as_bool, as_int, as_number
from .limits import Limits, guarded_protocol
from .state import write_json_atomic

__all__ = [
    "EXIT_SPEC",
    "EXIT_MODEL",
    "EXIT_BIND",
    "LIMIT_DEFAULTS",
    "BindError",
    "ServingLimits",
    "SpecError",
    "bind_socket",
    "check_exposure",
    "client_host",
    "is_loopback",
    "parse_limits",
    "ready_record",
    "run",
    "uvicorn_config",
    "write_ready_file",
]

T = TypeVar("T")

EXIT_SPEC = 2
EXIT_MODEL = 3
EXIT_BIND = 4

#: Connection limits of a server or router process, and their defaults (see :class:`ServingLimits`).
LIMIT_DEFAULTS: dict[str, Any] = {
    "max_queue": None,
    "max_queued_bytes": None,
    "header_timeout": 10.0,
    "body_timeout": 30.0,
    "keepalive_timeout": 5.0,
    "limit_concurrency": 1000,
    "allow_unauthenticated": False,
}
#: Requests a process admits per worker when the spec does not say (``max_queue: null``).
QUEUE_PER_WORKER = 64
#: Body bytes a process holds when the spec does not say: this, or one largest request if more.
DEFAULT_QUEUED_BYTES = 256 * 1024 * 1024


class SpecError(InvalidInputError):
    """The spec is missing, unreadable or invalid (process exit status 2)."""

    exit_code = EXIT_SPEC


class BindError(ConflictError):
    """The listening socket could not be bound (process exit status 4)."""

    exit_code = EXIT_BIND


@dataclass(frozen=True)
class ServingLimits:
    """How much one process takes on before it refuses (see :mod:`.limits`)."""

    #: Requests admitted and not answered yet, per process (a full queue answers 503 + Retry-After).
    max_queue: int
    #: Body bytes those requests may hold together.
    max_queued_bytes: int
    #: Seconds for a request's headers to arrive, from its first byte.
    header_timeout: float
    #: Seconds for a request's body to arrive, from the end of its headers.
    body_timeout: float
    #: Seconds a connection may stay idle (before its first request, or between requests).
    keepalive_timeout: float
    #: Open connections (and requests) past which the process answers 503 at once.
    limit_concurrency: int


def _spec_value(coerce: Any) -> Any:
    try:
        return coerce()
    except InvalidInputError as exc:
        raise SpecError(f"invalid spec: {exc.message}") from exc


def parse_limits(raw: Mapping[str, Any], *, workers: int, max_request_bytes: int) -> ServingLimits:
    """The connection limits of a spec (keys of :data:`LIMIT_DEFAULTS`); raises :class:`SpecError`."""
    spec = {**LIMIT_DEFAULTS, **{key: raw[key] for key in LIMIT_DEFAULTS if key in raw}}

    def key(name: str) -> str:
        return f"key {name!r}"

    queue = spec["max_queue"]
    if queue is None:
        queue = QUEUE_PER_WORKER * workers
    queue = _spec_value(lambda: as_int(queue, key("max_queue"), minimum=1))
    queued_bytes = spec["max_queued_bytes"]
    if queued_bytes is None:
        queued_bytes = max(DEFAULT_QUEUED_BYTES, max_request_bytes)
    queued_bytes = _spec_value(lambda: as_int(queued_bytes, key("max_queued_bytes"), minimum=1))
    if queued_bytes < max_request_bytes:
        raise SpecError(
            f"invalid spec: max_queued_bytes ({queued_bytes}) is smaller than max_request_bytes "
            f"({max_request_bytes}): the largest request allowed could never be admitted"
        )
    seconds = {
        name: _spec_value(lambda name=name: as_number(spec[name], key(name), positive=True))
        for name in ("header_timeout", "body_timeout", "keepalive_timeout")
    }
    concurrency = _spec_value(lambda: as_int(spec["limit_concurrency"], key("limit_concurrency"), minimum=1))
    return ServingLimits(
        max_queue=-(-queue // workers),  # each worker process admits its share, rounded up
        max_queued_bytes=queued_bytes,
        limit_concurrency=concurrency,
        **seconds,
    )


def allow_unauthenticated(raw: Mapping[str, Any]) -> bool:
    return bool(_spec_value(lambda: as_bool(
        raw.get("allow_unauthenticated", False), "key 'allow_unauthenticated'")))


def is_loopback(host: str) -> bool:
    """Whether ``host`` names this machine only (``localhost``, 127.0.0.0/8, ``::1``)."""
    host = host.strip().strip("[]")
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a host name may resolve to any interface


def check_exposure(
    host: str, *, credential: bool, allowed: bool, what: str, logger: logging.Logger
) -> None:
    """Refuse (:class:`SpecError`) to listen on ``host`` beyond loopback without a credential, unless
    ``allowed`` (config ``allow_unauthenticated: true``), which is logged at WARNING."""
    if is_loopback(host) or credential:
        return
    if not allowed:
        raise SpecError(
            f"{what} would listen on {host}, beyond this machine, without an auth token: anyone who can "
            "reach it could use it. Set config key 'auth_token', or 'allow_unauthenticated: true' to accept that"
        )
    logger.warning(
        "%s listens on %s without an auth token (allow_unauthenticated is true): anyone who can reach this "
        "address can score with it",
        what,
        host,
    )


def bind_socket(host: str, port: int) -> socket.socket:
    """Bind and listen on ``host:port`` (0: a free port chosen by the kernel); raises :class:`BindError`."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise BindError(f"cannot bind {host}:{port}: {exc.strerror or exc}") from exc
    family, kind, proto, _, address = infos[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        # Accepted sockets inherit it (Linux): an answer written in two parts never waits for a delayed ACK.
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.bind(address)
        sock.listen(2048)
    except OSError as exc:
        sock.close()
        raise BindError(f"cannot bind {host}:{port}: {exc.strerror or exc}") from exc
    sock.set_inheritable(True)  # worker processes serve on it (see .workers)
    return sock


def client_host(host: str) -> str:
    """The address a client connects to for a process bound to ``host`` (a wildcard: loopback)."""
    if host in ("0.0.0.0", ""):
        return "127.0.0.1"
    if host == "::":
        return "::1"
    return host


def ready_record(host: str, sock: socket.socket, flavor: str | None) -> dict[str, Any]:
    port = sock.getsockname()[1]
    reachable = client_host(host)
    url_host = f"[{reachable}]" if ":" in reachable else reachable
    return {
        "pid": os.getpid(),
        "host": host,
        "port": port,
        "url": f"http://{url_host}:{port}",
        "flavor": flavor,
        "started_at": time.time(),
    }


def write_ready_file(path: str, record: Mapping[str, Any]) -> None:
    """Write ``record`` as JSON to ``path`` atomically (a reader sees all of it or nothing)."""
    write_json_atomic(path, dict(record))


def uvicorn_config(app: Any, limits: ServingLimits, *, log_level: int, graceful_seconds: float, **extra: Any) -> Any:
    """uvicorn's config for a server or router: httptools behind :class:`.limits.GuardedProtocol`, no
    access log, no Server header, no proxy headers, and the limits."""
    import uvicorn

    guard = guarded_protocol(Limits(limits.header_timeout, limits.body_timeout, limits.keepalive_timeout))
    return uvicorn.Config(
        app,
        http=guard,
        log_config=None,
        log_level=log_level,
        access_log=False,
        server_header=False,
        proxy_headers=False,
        limit_concurrency=limits.limit_concurrency,
        timeout_keep_alive=limits.keepalive_timeout,
        timeout_graceful_shutdown=graceful_seconds,
        **extra,
    )


def run(coroutine: Coroutine[Any, Any, T]) -> T:
    """Run ``coroutine`` on a fresh uvloop event loop (asyncio's own where uvloop is missing)."""
    loop = new_event_loop()
    asyncio.set_event_loop(loop)
    try:
        return loop.run_until_complete(coroutine)
    finally:
        try:
            left = asyncio.all_tasks(loop)
            for task in left:
                task.cancel()
            if left:
                loop.run_until_complete(asyncio.gather(*left, return_exceptions=True))
            loop.run_until_complete(loop.shutdown_asyncgens())
        finally:
            asyncio.set_event_loop(None)
            loop.close()
