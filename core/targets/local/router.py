"""The endpoint router: one process per endpoint spreading ``/invocations`` over deployments by traffic weight.

Run as ``python -m deployflow.targets.local.router --spec /abs/spec.json``; the client starts it the way
it starts model servers (new process, own port, ready file written once it listens: :mod:`.serving`).
spec.json::

    {"version": 1, "name": str, "state_file": "/abs/state.json", "host": "127.0.0.1", "port": 0,
     "max_request_bytes": int, "request_timeout": float, "ready_file": "/abs/ready.json",
     "log_level": "info", "stop_timeout": float, ...the connection limits of .serving.LIMIT_DEFAULTS}

Exit codes: 2 for a spec it refuses, 4 when it cannot listen, 0 after a stop on SIGTERM or SIGINT.

How it stays correct while things change:

* **Routes come from the state file.** The router reads its endpoint's routes and each routed
  deployment's URL from ``state.json``. Before each request it compares the file's identity (inode,
  mtime, size, cheap ``stat``) with what it loaded and reloads on a change, so a change made by any
  process is seen by the next request. ``POST /-/reload`` forces a reload and answers the state revision
  loaded; the client calls it after each change so a change is in force before the call returns.
* **No dropped requests during a switch.** A deployment update starts the new server, switches the
  state, asks the router to reload, and only then stops the old server, which finishes its in-flight
  requests. Should a request still meet a server that just stopped (connection refused, or a pooled
  connection closed without an answer), the router reloads and sends it again to the current URL, for
  up to 5 s, then answers 503: nothing was answered, and scoring has no side effects.
* **The same rules as a deployment server** (:mod:`.responses`, :mod:`.limits`): a declared
  Content-Length over ``max_request_bytes`` is a 413 at once (a chunked body is counted as it comes),
  an answer later than ``request_timeout`` a 504 ``DEADLINE_EXCEEDED``, a full queue (``max_queue``,
  ``max_queued_bytes``) a 503 with ``Retry-After``; slow headers, bodies or idle connections are closed
  and ``limit_concurrency`` bounds what is open (:mod:`.front`, which serves the router's connections).
  A client that leaves while its request is at a deployment leaves it there too: the router closes that
  upstream connection, so a request still queued at the deployment is never run (the metrics count it
  as a 499 on both).
* **Credentials.** Scoring credentials are not held by the router: it forwards the caller's
  ``Authorization`` header to the deployment, which checks it. The paths that change or reveal the
  router's state (``/-/reload``, ``/-/routes``, ``/metrics``) need its control secret
  (:mod:`.control`); without one in its environment the router refuses them all.

Other paths: ``GET /ping`` and ``GET /health`` (200 while the router runs), ``GET /version`` (``HEAD``
as well); any other path is a 404. A known path asked with a method it does not take is a 405 naming
the one it takes (in ``Allow`` too), the answer a deployment server gives (:func:`.responses.wrong_method`).
Both are in :mod:`.responses`' JSON error shape.

Forwarding goes through :mod:`.relay` (pooled keep-alive connections to the deployments); a request and
its answer pass through plain callbacks (:mod:`.front`, :class:`_Forward`), no task per request.

Measured with ``benchmarks/bench_router.py --rounds 5`` on this project's 2-core machine, as a share of
the deployment's own req/s (the medians of several runs are in the notes of issue 15):

* with 500-row requests the router costs little: its capacity (the most req/s at any of 8-64
  connections) is 99-101 % of the deployment's, 88-89 % under 8 connections, 72-84 % one at a time;
* with 10-row requests to a model that does nothing it is the router's worst case: 73-83 % of the
  capacity, 63-70 % under 8 connections (where the routed path is not saturated: each request waits
  for two hops in turn while a core is idle), 72-81 % one at a time;
* the p50 it adds one at a time is 0.15-0.42 ms.

Served by uvicorn instead, the same router made 65 % and 55 % with 10-row requests. Under ``wrk`` the
router takes about 37-43 µs of CPU per request, half of it in the kernel (two reads and two writes),
where a Python proxy that only copies bytes (no parsing, limits, routes or metrics) takes about 21 µs
and makes 77 % under ``wrk``: 80 % for 10-row requests at every load is out of reach of a router in
Python on this machine. The ``stat`` of the state file costs about 2 µs.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import random
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ... import __version__
from ...jsoncodec import dumps, loads
from ...redaction import get_logger
from ...retry import as_int, as_number
from . import responses
from .control import take_secret
from .front import Exchange, Front, serve
from .limits import BODY_BYTES_REFUSAL, Admission, Limits
from .relay import (
    Relay,
    UpstreamBadAnswer,
    UpstreamRefused,
    UpstreamTimeout,
)
from .responses import Response
from .serving import (
    BindError,
    ServingLimits,
    SpecError,
    allow_unauthenticated,
    bind_socket,
    check_exposure,
    parse_limits,
    ready_record,
    run,
    write_ready_file,
)

__all__ = ["RouterApp", "RouterSpec", "main", "parse_router_spec"]

_MODULE = "deployflow.targets.local.router"
_logger = get_logger(_MODULE)

_FORWARDED_REQUEST_HEADERS = frozenset({b"content-type", b"authorization", b"accept"})
_INVOCATIONS = b"/invocations"
# How long a request may keep looking for a serving upstream before the router answers 503.
_RETRY_WINDOW_SECONDS = 5.0
_LOG_LEVELS = {"critical": 50, "error": 40, "warning": 30, "info": 20, "debug": 10, "trace": 5}
_CONTROL_PATHS = frozenset({"/-/reload", "/-/routes", "/metrics"})
_PLAIN_PATHS = frozenset({"/ping", "/health", "/version"})
_PONG: Response = (200, [responses.TEXT_TYPE, (b"content-length", b"1")], b"\n")
_READ_METHODS = frozenset({b"GET", b"HEAD"})


@dataclass(frozen=True)
class RouterSpec:
    """A validated router spec (see the module docstring)."""

    name: str
    state_file: str
    ready_file: str
    host: str = "127.0.0.1"
    port: int = 0
    max_request_bytes: int = 100 * 1024 * 1024
    request_timeout: float = 60.0
    log_level: str = "info"
    stop_timeout: float = 30.0
    limits: ServingLimits | None = None


def parse_router_spec(raw: Any) -> RouterSpec:
    """Validate a router spec dict; raises :class:`~.serving.SpecError` naming the key."""
    if not isinstance(raw, Mapping):
        raise SpecError(f"invalid router spec: expected a JSON object, got {type(raw).__name__}")
    for key in ("name", "state_file", "ready_file"):
        if not isinstance(raw.get(key), str) or not raw[key]:
            raise SpecError(f"invalid router spec: missing or non-string key {key!r}")
    try:
        host = raw.get("host", "127.0.0.1")
        if not isinstance(host, str) or not host.strip():
            raise SpecError(f"invalid router spec: key 'host' must be a non-empty string, got {host!r}")
        max_request_bytes = as_int(raw.get("max_request_bytes", 100 * 1024 * 1024), "key 'max_request_bytes'",
                                   minimum=1)
        level = str(raw.get("log_level", "info")).lower()
        if level not in _LOG_LEVELS:
            raise SpecError(f"invalid router spec: key 'log_level' must be one of {', '.join(_LOG_LEVELS)}")
        spec = RouterSpec(
            name=raw["name"],
            state_file=raw["state_file"],
            ready_file=raw["ready_file"],
            host=host.strip(),
            port=as_int(raw.get("port", 0), "key 'port'", minimum=0, maximum=65535),
            max_request_bytes=max_request_bytes,
            request_timeout=as_number(raw.get("request_timeout", 60.0), "key 'request_timeout'", positive=True),
            log_level=level,
            stop_timeout=as_number(raw.get("stop_timeout", 30.0), "key 'stop_timeout'", positive=True),
            limits=parse_limits(raw, workers=1, max_request_bytes=max_request_bytes),
        )
    except SpecError:
        raise
    except Exception as exc:  # InvalidInputError from the coercions
        raise SpecError(f"invalid router spec: {getattr(exc, 'message', exc)}") from exc
    check_exposure(spec.host, credential=False, allowed=allow_unauthenticated(raw),
                   what=f"The router of endpoint {spec.name!r}", logger=_logger)
    return spec


class RouterApp:
    """One endpoint's router: its routes, its admission, and the :class:`.front.Handler` serving requests."""

    def __init__(self, spec: Mapping[str, Any] | RouterSpec, *, control_secret: bytes | None = None) -> None:
        if not isinstance(spec, RouterSpec):
            spec = parse_router_spec(spec)
        limits = spec.limits or parse_limits({}, workers=1, max_request_bytes=spec.max_request_bytes)
        self.name = spec.name
        self.state_file = spec.state_file
        self.max_request_bytes = spec.max_request_bytes
        self.request_timeout = spec.request_timeout
        self.revision = -1
        self.routes: list[dict[str, Any]] = []
        self.admission = Admission(limits.max_queue, limits.max_queued_bytes)
        self.metrics: Any = None  # set by the process entry when prometheus_client is installed
        self._secret = control_secret
        self._file_identity: tuple[int, int, int] | None = None
        self._unresolved = True
        self._relay = Relay()
        self._too_large = responses.too_large(spec.max_request_bytes)
        self._timed_out = responses.timed_out(spec.request_timeout)
        self._unauthorized = responses.unauthorized(f"The control paths of endpoint {spec.name!r}")
        self._version = responses.text(200, __version__)
        self._deployment_headers: dict[str, bytes] = {}

    # -- routes ---------------------------------------------------------------------------------

    def reload(self, force: bool = False) -> None:
        """Re-read the routes when the state file changed (or always with ``force``)."""
        try:
            info = os.stat(self.state_file)
        except FileNotFoundError:
            self.routes, self._file_identity = [], None
            return
        identity = (info.st_ino, info.st_mtime_ns, info.st_size)
        if not force and identity == self._file_identity and not self._unresolved:
            return
        from .state import process_url, read_json

        try:
            state = read_json(self.state_file) or {}
        except (OSError, ValueError):
            return  # keep the routes we have; the next request tries again
        endpoint = (state.get("endpoints") or {}).get(self.name)
        deployments = state.get("deployments") or {}
        routes = []
        for route in (endpoint or {}).get("config", {}).get("routes", []):
            record = deployments.get(route["deployment"]) or {}
            url = process_url(record.get("process"))
            routes.append({"deployment": route["deployment"], "traffic": float(route["traffic"]), "url": url})
        self.routes = routes
        self.revision = int(state.get("revision", 0))
        self._file_identity = identity
        # A deployment still starting has no URL in the state yet; look again on the next request.
        self._unresolved = any(route["url"] is None and route["traffic"] > 0 for route in routes)

    def choose(self, avoid: set[str]) -> dict[str, Any] | None:
        """Pick a route by weight among those with a URL, preferring URLs that have not just failed."""
        usable = [r for r in self.routes if r["traffic"] > 0 and r["url"]]
        if len(usable) == 1 and not avoid:
            return usable[0]
        fresh = [r for r in usable if r["url"] not in avoid] or usable
        if not fresh:
            return None
        return random.choices(fresh, weights=[r["traffic"] for r in fresh])[0]

    # -- the front-end's handler (.front.Handler) -----------------------------------------------

    def begin(self, exchange: Exchange) -> Response | None:
        """Answer what needs no body; admit a scoring request (see :class:`.front.Handler`)."""
        path, method = exchange.path, exchange.method
        if path == "/invocations":
            if method != b"POST":
                return responses.wrong_method(method.decode("latin-1"), path, "POST")
            return self._admit(exchange)
        if path in _PLAIN_PATHS:
            if method not in _READ_METHODS:
                return responses.wrong_method(method.decode("latin-1"), path, "GET")
            return self._version if path == "/version" else _PONG
        if path in _CONTROL_PATHS:
            return self._control(method, path, exchange.headers)
        return responses.json_error(404, "ENDPOINT_NOT_FOUND", f"no such path: {path}")

    def grow(self, exchange: Exchange) -> Response | None:
        size = exchange.size
        if size > self.max_request_bytes:
            return self._too_large
        held = self.admission.grow(size, exchange.held)
        if held is None:
            return responses.overloaded(BODY_BYTES_REFUSAL)
        exchange.held = held
        return None

    def complete(self, exchange: Exchange) -> Response | None:
        forwarded = [(name, value) for name, value in exchange.headers if name in _FORWARDED_REQUEST_HEADERS]
        _Forward(self, exchange, forwarded, exchange.body()).attempt()
        return None

    def finished(self, exchange: Exchange, response: Response | None) -> None:
        if exchange.admitted:
            self.admission.release(exchange.held)
        if response is not None and self.metrics is not None:
            self.metrics.observe_router(exchange.path, response, time.perf_counter() - exchange.started)

    def _admit(self, exchange: Exchange) -> Response | None:
        declared = responses.declared_length(exchange.headers, self.max_request_bytes, self._too_large)
        if not isinstance(declared, int):
            return declared
        refusal = self.admission.refusal(declared)
        if refusal is not None:
            return responses.overloaded(refusal)
        self.admission.admit(declared)
        exchange.held = declared
        return None

    def _control(self, method: bytes, path: str, headers: list[tuple[bytes, bytes]]) -> Response:
        if not responses.bearer_matches(responses.header(headers, b"authorization"), self._secret):
            return self._unauthorized
        if path == "/-/reload":
            if method != b"POST":
                return responses.wrong_method(method.decode("latin-1"), path, "POST")
            self.reload(force=True)
            return responses.ok_json(dumps({"revision": self.revision, "routes": self.routes}))
        if method not in _READ_METHODS:
            return responses.wrong_method(method.decode("latin-1"), path, "GET")
        if path == "/metrics":
            if self.metrics is None:
                return responses.json_error(404, "ENDPOINT_NOT_FOUND", "metrics need prometheus_client installed")
            # Requests in flight are the admitted ones: read when asked, not counted twice per request.
            self.metrics.in_flight.set(self.admission.requests)
            return self.metrics.render()
        self.reload()
        return responses.ok_json(dumps({"endpoint": self.name, "revision": self.revision, "routes": self.routes}))

    def _deployment_header(self, route: Mapping[str, Any]) -> bytes:
        name = route["deployment"]
        value = self._deployment_headers.get(name)
        if value is None:
            if len(self._deployment_headers) > 1024:
                self._deployment_headers.clear()
            value = self._deployment_headers[name] = name.encode()
        return value

    def _upstream_error(self, route: Mapping[str, Any], kind: str) -> None:
        if self.metrics is not None:
            self.metrics.upstream_error(route["deployment"], kind)


class _Forward:
    """One scoring request on its way to a deployment: sent, and sent again after a refusal or a drop
    (with a growing pause, within :data:`_RETRY_WINDOW_SECONDS`), by callbacks."""

    __slots__ = (
        "app", "body", "deadline", "delay", "exchange", "failed", "headers", "last_problem", "left", "route", "upstream",
    )

    def __init__(self, app: RouterApp, exchange: Exchange, headers: list[tuple[bytes, bytes]], body: bytes) -> None:
        self.app = app
        self.exchange = exchange
        self.headers = headers
        self.body = body
        self.deadline = time.monotonic() + _RETRY_WINDOW_SECONDS
        self.failed: set[str] = set()
        self.last_problem = "no routed deployment has a URL yet"
        self.delay = 0.02
        self.route: dict[str, Any] | None = None
        self.upstream: Any = None  # the relay's connection while its answer is awaited
        self.left = False
        exchange.on_leave = self.leave

    def attempt(self) -> None:
        if self.left:
            self.exchange.respond(responses.CLIENT_LEFT)
            return
        app = self.app
        app.reload()
        route = self.route = app.choose(self.failed)
        if route is None:
            self._later()
            return
        self.upstream = app._relay.send(
            route["url"], _INVOCATIONS, self.headers, self.body, app.request_timeout, self.answered)

    def leave(self) -> None:
        """The client left: give the answer up, so that the deployment sees its client leave too (a
        request still queued there is then never run)."""
        self.left = True
        upstream, self.upstream = self.upstream, None
        if upstream is not None:
            upstream.abort()  # answered() follows, with UpstreamDropped

    def answered(self, status: int, headers: list[tuple[bytes, bytes]], content: bytes, error: Exception | None) -> None:
        app, route = self.app, self.route
        assert route is not None
        self.upstream = None
        if self.left:
            self.exchange.respond(responses.CLIENT_LEFT)
            return
        if error is None:
            content_type = b"application/json"
            out = []
            for name, value in headers:
                if name == b"content-type":
                    content_type = value
                elif name == b"retry-after":
                    out.append((name, value))
            out += [(b"content-type", content_type), (b"x-deployflow-deployment", app._deployment_header(route))]
            if app.metrics is not None:
                app.metrics.routed(route["deployment"], status)
            self.exchange.respond((status, out, content))
        elif isinstance(error, UpstreamTimeout):
            app._upstream_error(route, "timeout")
            self.exchange.respond(app._timed_out)
        elif isinstance(error, UpstreamBadAnswer):
            app._upstream_error(route, "bad_answer")
            self.exchange.respond(responses.json_error(
                502, "INTERNAL_ERROR", f"deployment {route['deployment']!r} gave an unreadable answer: {error}"
            ))
        else:
            # Refused, or a pooled connection closed by a server that is stopping: send the request
            # again once the routes are fresh (nothing was answered).
            app._upstream_error(route, "refused" if isinstance(error, UpstreamRefused) else "dropped")
            self.failed.add(route["url"])
            self.last_problem = f"deployment {route['deployment']!r} at {route['url']}: {error}"
            app.reload(force=True)
            self._later()

    def _later(self) -> None:
        if time.monotonic() >= self.deadline:
            self.exchange.respond(responses.json_error(
                503, "TEMPORARILY_UNAVAILABLE",
                f"endpoint {self.app.name!r} has no serving deployment: {self.last_problem}",
            ))
            return
        asyncio.get_running_loop().call_later(self.delay, self.attempt)
        self.delay = min(self.delay * 2, 0.25)


# --------------------------------------------------------------------------------------------------
# The process
# --------------------------------------------------------------------------------------------------


def _bind(host: str, port: int) -> Any:
    """The router's listening socket (see :func:`.serving.bind_socket`)."""
    return bind_socket(host, port)


async def _serve(spec: RouterSpec, sock: Any, secret: bytes | None) -> None:
    from .metrics import router_metrics

    limits = spec.limits
    assert limits is not None
    app = RouterApp(spec, control_secret=secret)
    app.metrics = router_metrics(spec.name)
    app.reload(force=True)
    front = Front(app, Limits(limits.header_timeout, limits.body_timeout, limits.keepalive_timeout),
                  limits.limit_concurrency)
    gc.freeze()  # what start-up made lives as long as the process: keep it out of every collection
    try:
        await serve(front, sock, stop_timeout=spec.stop_timeout,
                    listening=lambda: write_ready_file(spec.ready_file, ready_record(spec.host, sock, None)))
    finally:
        app._relay.close()


def main(argv: list[str] | None = None) -> int:
    """Entry point of the router process. Exit codes: 2 bad spec, 4 cannot bind."""
    import logging

    parser = argparse.ArgumentParser(prog=f"python -m {_MODULE}")
    parser.add_argument("--spec", required=True, help="absolute path of the router's spec.json")
    args = parser.parse_args(argv)
    secret = take_secret()
    logging.basicConfig(stream=sys.stderr, level=logging.INFO, format="%(asctime)s %(levelname)s [%(name)s] %(message)s")
    try:
        with open(args.spec, "rb") as handle:
            raw = loads(handle.read())
        spec = parse_router_spec(raw)
    except SpecError as exc:
        print(f"deployflow router: {exc.message}", file=sys.stderr)
        return 2
    except (OSError, ValueError) as exc:
        print(f"deployflow router: bad spec {args.spec}: {exc}", file=sys.stderr)
        return 2
    logging.getLogger().setLevel(_LOG_LEVELS[spec.log_level])
    try:
        sock = _bind(spec.host, spec.port)
    except BindError as exc:
        print(f"deployflow router: cannot listen on {spec.host}:{spec.port}: {exc.message}", file=sys.stderr)
        return 4
    run(_serve(spec, sock, secret))
    return 0


if __name__ == "__main__":
    from deployflow.targets.local.router import main as _main

    sys.exit(_main())
