"""The endpoint router: a small ASGI app that spreads ``/invocations`` over deployments by traffic weight.

Run as ``python -m deployflow.targets.local.router --spec /abs/spec.json``; the client starts it the way
it starts model servers (new process, own port, ready file). spec.json::

    {"version": 1, "name": str, "state_file": "/abs/state.json", "host": "127.0.0.1", "port": 0,
     "max_request_bytes": int, "request_timeout": float, "ready_file": "/abs/ready.json",
     "log_level": "info", "stop_timeout": float}

How it stays correct while things change:

* **Routes come from the state file.** The router reads its endpoint's routes and each routed
  deployment's URL from ``state.json``. Before each request it compares the file's identity (inode,
  mtime, size, cheap ``stat``) with what it loaded and reloads on a change, so a change made by any
  process is seen by the next request. ``POST /-/reload`` forces a reload and answers the state revision
  loaded; the client calls it after each change so a change is in force before the call returns.
* **No dropped requests during a switch.** A deployment update starts the new server, switches the
  state, asks the router to reload, and only then stops the old server, which finishes its in-flight
  requests. Should a request still meet a server that just stopped (connection refused, or a pooled
  connection closed without an answer), the router reloads and sends it again to the current URL:
  nothing was answered, and scoring has no side effects.
* **Credentials** are not held by the router: it forwards the caller's ``Authorization`` header to the
  deployment, which checks it.

Other paths: ``GET /ping`` (200 while the router runs), ``GET /health`` (JSON: routes and their URLs),
``GET /version``, ``GET /-/routes``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import socket
import sys
import time
from typing import Any

import orjson

__all__ = ["RouterApp", "main"]

_FORWARDED_REQUEST_HEADERS = (b"content-type", b"authorization", b"accept")
_FORWARDED_RESPONSE_HEADERS = ("content-type", "retry-after")
# How long a request may keep looking for a serving upstream before the router answers 503.
_RETRY_WINDOW_SECONDS = 5.0


class _TooLarge:
    """Marks a request body past ``max_request_bytes``."""


_TOO_LARGE = _TooLarge()


def _json(status: int, body: Any) -> tuple[int, bytes, bytes]:
    return status, orjson.dumps(body), b"application/json"


def _error(status: int, code: str, message: str) -> tuple[int, bytes, bytes]:
    return _json(status, {"error_code": code, "message": message})


def _response_headers(raw_headers: Any) -> dict[bytes, bytes]:
    """The first value of each of ``_FORWARDED_RESPONSE_HEADERS`` in an upstream answer, as sent."""
    wanted = {name.encode("ascii") for name in _FORWARDED_RESPONSE_HEADERS}
    found: dict[bytes, bytes] = {}
    for name, value in raw_headers:
        name = name.lower()
        if name in wanted and name not in found:
            found[name] = value
    return found


def _undecodable(exc: BaseException) -> bool:
    """Whether aiohttp failed on an answer's Content-Encoding rather than on the connection."""
    from aiohttp.http_exceptions import ContentEncodingError

    return isinstance(exc.__cause__, ContentEncodingError)


class RouterApp:
    """The ASGI application of one endpoint's router."""

    def __init__(self, spec: dict[str, Any]) -> None:
        self.name: str = spec["name"]
        self.state_file: str = spec["state_file"]
        self.max_request_bytes: int = int(spec.get("max_request_bytes", 100 * 1024 * 1024))
        self.request_timeout: float = float(spec.get("request_timeout", 60.0))
        self.revision: int = -1
        self.routes: list[dict[str, Any]] = []
        self._file_identity: tuple[int, int, int] | None = None
        self._unresolved = True
        self._session: Any = None  # aiohttp.ClientSession, made at startup inside the event loop

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
        fresh = [r for r in usable if r["url"] not in avoid] or usable
        if not fresh:
            return None
        return random.choices(fresh, weights=[r["traffic"] for r in fresh])[0]

    # -- ASGI -----------------------------------------------------------------------------------

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        method, path = scope["method"], scope["path"]
        extra_headers: list[tuple[bytes, bytes]] = []
        if path == "/invocations":
            if method != "POST":
                status, body, content_type = _error(405, "BAD_REQUEST", "use POST for /invocations")
            else:
                status, body, content_type, extra_headers = await self._invocations(scope, receive)
        elif path in ("/ping", "/health", "/version", "/-/routes", "/-/reload"):
            status, body, content_type = self._control(method, path)
        else:
            status, body, content_type = _error(404, "ENDPOINT_NOT_FOUND", f"no such path: {path}")
        headers = [(b"content-type", content_type), (b"content-length", str(len(body)).encode())]
        await send({"type": "http.response.start", "status": status, "headers": headers + extra_headers})
        await send({"type": "http.response.body", "body": body})

    async def _lifespan(self, receive: Any, send: Any) -> None:
        import aiohttp

        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                self._session = aiohttp.ClientSession(
                    # 200 connections in all, as many as needed to one deployment. Idle connections go
                    # before the model servers' own keep-alive (uvicorn: 5 s) would close them.
                    connector=aiohttp.TCPConnector(limit=200, limit_per_host=0, keepalive_timeout=4.0),
                    # Connect within 5 s (waiting for a free connection first: up to request_timeout);
                    # each wait for the answer, its headers then each part of its body, within
                    # request_timeout. No bound on the whole exchange, as before.
                    timeout=aiohttp.ClientTimeout(
                        total=None,
                        connect=self.request_timeout + 5.0,
                        sock_connect=5.0,
                        sock_read=self.request_timeout,
                    ),
                    trust_env=False,  # upstreams are local: never through a proxy from the environment
                    cookie_jar=aiohttp.DummyCookieJar(),  # nothing an upstream sets may reach other callers
                    # Bodies are read decoded, and forwarded (below) without their Content-Encoding.
                    auto_decompress=True,
                )
                self.reload(force=True)
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                if self._session is not None:
                    await self._session.close()
                await send({"type": "lifespan.shutdown.complete"})
                return

    def _control(self, method: str, path: str) -> tuple[int, bytes, bytes]:
        if path == "/-/reload":
            if method != "POST":
                return _error(405, "BAD_REQUEST", "use POST for /-/reload")
            self.reload(force=True)
            return _json(200, {"revision": self.revision, "routes": self.routes})
        if method != "GET":
            return _error(405, "BAD_REQUEST", f"use GET for {path}")
        if path == "/ping":
            return 200, b"\n", b"text/plain; charset=utf-8"
        if path == "/version":
            from ... import __version__

            return 200, __version__.encode(), b"text/plain; charset=utf-8"
        self.reload()
        return _json(200, {"endpoint": self.name, "revision": self.revision, "routes": self.routes})

    async def _read_body(self, receive: Any) -> bytes | None | _TooLarge:
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return None
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_request_bytes:
                return _TOO_LARGE
            chunks.append(chunk)
            if not message.get("more_body"):
                return b"".join(chunks)

    async def _invocations(
        self, scope: dict[str, Any], receive: Any
    ) -> tuple[int, bytes, bytes, list[tuple[bytes, bytes]]]:
        import aiohttp

        body = await self._read_body(receive)
        if body is None:
            return (*_error(400, "BAD_REQUEST", "the client went away"), [])
        if isinstance(body, _TooLarge):
            return (*_error(413, "INVALID_PARAMETER_VALUE",
                            f"request body larger than {self.max_request_bytes} bytes"), [])
        headers = {
            name.decode("latin-1"): value.decode("latin-1")
            for name, value in scope["headers"]
            if name.lower() in _FORWARDED_REQUEST_HEADERS
        }
        deadline = time.monotonic() + _RETRY_WINDOW_SECONDS
        failed: set[str] = set()
        last_problem = "no routed deployment has a URL yet"
        delay = 0.02
        while True:
            self.reload()
            route = self.choose(failed)
            if route is not None:
                try:
                    async with self._session.post(
                        route["url"] + "/invocations",
                        data=body,
                        headers=headers,
                        allow_redirects=False,  # an upstream's redirect goes back to the caller as it is
                        skip_auto_headers=("Content-Type",),  # none unless the caller sent one
                    ) as response:
                        status, content = response.status, await response.read()
                        answer_headers = _response_headers(response.raw_headers)
                except asyncio.TimeoutError:
                    # Connecting, or waiting for the answer (aiohttp's timeouts are TimeoutErrors, and
                    # must be caught before the connection errors some of them also are).
                    return (*_error(504, "DEADLINE_EXCEEDED",
                                    f"deployment {route['deployment']!r} did not answer within "
                                    f"{self.request_timeout:g} s"), [])
                except (aiohttp.ClientConnectionError, aiohttp.ClientPayloadError) as exc:
                    if _undecodable(exc):
                        raise  # not a broken connection: sending again would not help (the caller gets 500)
                    # Refused (ClientConnectorError), or a pooled connection closed by a server that is
                    # stopping (ServerDisconnectedError, ClientOSError, ClientConnectionResetError, or a
                    # ClientPayloadError for an answer cut short): send the request again once the
                    # routes are fresh.
                    failed.add(route["url"])
                    last_problem = f"deployment {route['deployment']!r} at {route['url']}: {type(exc).__name__}"
                    self.reload(force=True)
                else:
                    content_type = answer_headers.get(b"content-type", b"application/json")
                    extra = [(b"x-deployflow-deployment", route["deployment"].encode())]
                    if b"retry-after" in answer_headers:
                        extra.append((b"retry-after", answer_headers[b"retry-after"]))
                    return status, content, content_type, extra
            if time.monotonic() >= deadline:
                return (*_error(503, "TEMPORARILY_UNAVAILABLE",
                                f"endpoint {self.name!r} has no serving deployment: {last_problem}"), [])
            await asyncio.sleep(delay)
            delay = min(delay * 2, 0.25)


# --------------------------------------------------------------------------------------------------
# The process
# --------------------------------------------------------------------------------------------------


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    # Accepted sockets inherit this (Linux): without it, an answer written as headers then body waits
    # for the client's delayed ACK, about 40 ms per request on a kept-alive connection.
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.bind((host, port))
    sock.listen(2048)
    sock.setblocking(False)
    return sock


async def _serve(spec: dict[str, Any], sock: socket.socket) -> None:
    import uvicorn

    from .state import write_json_atomic

    config = uvicorn.Config(
        RouterApp(spec),
        log_level=spec.get("log_level", "info"),
        lifespan="on",
        timeout_graceful_shutdown=float(spec.get("stop_timeout", 30.0)),
        access_log=False,
    )
    server = uvicorn.Server(config)
    serving = asyncio.create_task(server.serve(sockets=[sock]))
    while not server.started:
        if serving.done():
            await serving
            raise SystemExit(1)
        await asyncio.sleep(0.01)
    host, port = sock.getsockname()[:2]
    url_host = f"[{host}]" if ":" in host else host
    write_json_atomic(
        spec["ready_file"],
        {
            "pid": os.getpid(),
            "host": host,
            "port": port,
            "url": f"http://{url_host}:{port}",
            "flavor": None,
            "started_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        },
    )
    await serving


def main(argv: list[str] | None = None) -> int:
    """Entry point of the router process. Exit codes: 2 bad spec, 4 cannot bind."""
    parser = argparse.ArgumentParser(prog="python -m deployflow.targets.local.router")
    parser.add_argument("--spec", required=True, help="absolute path of the router's spec.json")
    args = parser.parse_args(argv)
    try:
        with open(args.spec, "rb") as handle:
            spec = orjson.loads(handle.read())
        for key in ("name", "state_file", "ready_file"):
            if not isinstance(spec.get(key), str):
                raise ValueError(f"missing or non-string key {key!r}")
    except (OSError, ValueError) as exc:
        print(f"deployflow router: bad spec {args.spec}: {exc}", file=sys.stderr)
        return 2
    host, port = spec.get("host", "127.0.0.1"), int(spec.get("port", 0))
    try:
        sock = _bind(host, port)
    except OSError as exc:
        print(f"deployflow router: cannot listen on {host}:{port}: {exc.strerror or exc}", file=sys.stderr)
        return 4
    asyncio.run(_serve(spec, sock))
    return 0


if __name__ == "__main__":
    sys.exit(main())
