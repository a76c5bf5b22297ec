"""What the fake services share: a threaded HTTP server on 127.0.0.1, routing, faults and streaming.

A service subclasses :class:`FakeService` and implements :meth:`FakeService.route`, which gets a
:class:`Request` and returns a :class:`Response` (JSON, bytes, or a stream of chunks sent with chunked
transfer encoding, one flush per chunk). Tests can queue faults (:meth:`FakeService.fail`) that answer
matching requests before the service sees them, and read every request received in
:attr:`FakeService.requests`.

The server also accepts absolute-form request targets (``GET http://localhost:5000/path``), so it can act
as the HTTP proxy of a client whose URL names another host: that is how the MLflow page examples, which
hard-code ``http://localhost:5000``, reach a fake on a free port.
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

__all__ = ["Request", "Response", "Fault", "FakeService", "sse", "scrub_environment", "CREDENTIAL_VARIABLES"]

#: Variables a developer's shell may hold that must never reach the tests' clients.
CREDENTIAL_VARIABLES = (
    "DATABRICKS_HOST",
    "DATABRICKS_TOKEN",
    "DATABRICKS_CONFIG_PROFILE",
    "DATABRICKS_CONFIG_FILE",
    "DATABRICKS_CLIENT_ID",
    "DATABRICKS_CLIENT_SECRET",
    "DATABRICKS_AUTH_TYPE",
    "ARM_CLIENT_ID",
    "ARM_CLIENT_SECRET",
    "ARM_TENANT_ID",
    "ARM_USE_MSI",
    "DEPLOYFLOW_DATABRICKS_WAIT_TIMEOUT",
    "DEPLOYFLOW_DATABRICKS_POLL_INTERVAL",
    "OPENAI_API_KEY",
    "OPENAI_BASE_URL",
    "OPENAI_API_BASE",
    "OPENAI_API_TYPE",
    "OPENAI_API_VERSION",
    "OPENAI_DEPLOYMENT_NAME",
    "OPENAI_ORG_ID",
    "OPENAI_ORGANIZATION",
    "OPENAI_PROJECT_ID",
    "AZURE_OPENAI_API_KEY",
    "AZURE_OPENAI_ENDPOINT",
    "MLFLOW_TRACKING_TOKEN",
    "MLFLOW_TRACKING_USERNAME",
    "MLFLOW_TRACKING_PASSWORD",
    "MLFLOW_TRACKING_INSECURE_TLS",
    "MLFLOW_TRACKING_SERVER_CERT_PATH",
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "ALL_PROXY",
    "http_proxy",
    "https_proxy",
    "all_proxy",
    "NO_PROXY",
    "no_proxy",
)


def scrub_environment(monkeypatch: Any, home: os.PathLike[str] | str) -> None:
    """Remove every credential and proxy variable, and point HOME (so ``~/.databrickscfg`` and
    ``~/.netrc``) at ``home``: tests never read the developer's real configuration."""
    for name in CREDENTIAL_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("DATABRICKS_CONFIG_FILE", os.path.join(str(home), "no-such-databrickscfg"))


@dataclass
class Request:
    """One request as the service saw it."""

    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body) if self.body.strip() else None

    def header(self, name: str) -> str | None:
        lowered = name.lower()
        return next((value for key, value in self.headers.items() if key.lower() == lowered), None)

    def param(self, name: str) -> str | None:
        values = self.query.get(name)
        return values[0] if values else None


@dataclass
class Response:
    """An answer: ``body`` (bytes, or anything JSON-encodable) or ``chunks`` (streamed)."""

    status: int = 200
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    chunks: Iterable[bytes] | None = None
    content_type: str = "application/json"

    @classmethod
    def json(cls, payload: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
        return cls(status, payload, dict(headers or {}))

    @classmethod
    def stream(cls, chunks: Iterable[bytes], content_type: str = "text/event-stream") -> Response:
        return cls(200, None, {"Cache-Control": "no-cache"}, chunks, content_type)


@dataclass
class Fault:
    """An answer given instead of the service's to the next ``times`` matching requests."""

    status: int
    body: Any
    headers: dict[str, str]
    method: str | None
    path_prefix: str | None
    times: int

    def matches(self, request: Request) -> bool:
        if self.method and request.method != self.method:
            return False
        return not self.path_prefix or request.path.startswith(self.path_prefix)


def sse(*events: Any, done: bool = True) -> Iterator[bytes]:
    """Server-sent events for ``events`` (dicts become ``data: {json}``; bytes are sent as they are)."""
    for event in events:
        if isinstance(event, (bytes, bytearray)):
            yield bytes(event)
        else:
            yield b"data: " + json.dumps(event).encode() + b"\n\n"
    if done:
        yield b"data: [DONE]\n\n"


class FakeService:
    """Base of the fake services: start/stop, routing hook, faults, request log. A context manager."""

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.requests: list[Request] = []
        self._faults: list[Fault] = []
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle ----------------------------------------------------------------------------

    def start(self) -> FakeService:
        service = self

        class Handler(_Handler):
            owner = service

        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        server.daemon_threads = True
        server.block_on_close = False  # pooled keep-alive connections must not hold up stop()
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self):  # type: ignore[no-untyped-def]
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        assert self._server is not None, "start() first"
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    # -- test controls ------------------------------------------------------------------------

    def fail(
        self,
        status: int,
        body: Any = None,
        *,
        method: str | None = None,
        path: str | None = None,
        times: int = 1,
        headers: dict[str, str] | None = None,
    ) -> None:
        """Answer the next ``times`` requests matching ``method`` and the ``path`` prefix with ``status``."""
        with self.lock:
            self._faults.append(Fault(status, body, dict(headers or {}), method, path, times))

    def requests_to(self, method: str, path_prefix: str) -> list[Request]:
        with self.lock:
            return [r for r in self.requests if r.method == method and r.path.startswith(path_prefix)]

    # -- the hook -----------------------------------------------------------------------------

    def route(self, request: Request) -> Response:  # pragma: no cover - subclasses answer
        raise NotImplementedError

    def _answer(self, request: Request) -> Response:
        with self.lock:
            self.requests.append(request)
            for fault in self._faults:
                if fault.matches(request):
                    fault.times -= 1
                    if fault.times <= 0:
                        self._faults.remove(fault)
                    return Response(fault.status, fault.body, dict(fault.headers))
        return self.route(request)


class _Handler(BaseHTTPRequestHandler):
    owner: FakeService
    protocol_version = "HTTP/1.1"
    # Headers and body leave in one write, with Nagle off: otherwise every answer waits ~40 ms for the
    # client's delayed ACK, which makes polling tests slow.
    wbufsize = 64 * 1024
    disable_nagle_algorithm = True

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's name
        pass

    def _serve(self) -> None:
        target = self.path
        if "://" in target.split("?", 1)[0]:  # absolute form: we are someone's proxy
            parts = urlsplit(target)
            target = parts.path + (f"?{parts.query}" if parts.query else "")
        parts = urlsplit(target)
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        request = Request(self.command, parts.path, parse_qs(parts.query), dict(self.headers.items()), body)
        try:
            response = self.owner._answer(request)
        except Exception as exc:  # a bug in a fake must show, not hang the client
            response = Response.json({"error_code": "INTERNAL_ERROR", "message": f"fake crashed: {exc!r}"}, 500)
        if response.chunks is not None:
            self._stream(response)
        else:
            self._send(response)

    def _send(self, response: Response) -> None:
        body = response.body
        if body is None:
            payload = b""
        elif isinstance(body, (bytes, bytearray)):
            payload = bytes(body)
        elif isinstance(body, str):
            payload = body.encode()
        else:
            payload = json.dumps(body).encode()
        self.send_response(response.status)
        headers = {"Content-Type": response.content_type, **response.headers}
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def _stream(self, response: Response) -> None:
        self.send_response(response.status)
        self.send_header("Content-Type", response.content_type)
        for name, value in response.headers.items():
            self.send_header(name, value)
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        try:
            for chunk in response.chunks or ():
                if not chunk:
                    continue
                self.wfile.write(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
                self.wfile.flush()
            self.wfile.write(b"0\r\n\r\n")
            self.wfile.flush()
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True  # the client stopped reading: fine

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _serve


def now_ms() -> int:
    return int(time.time() * 1000)


@contextlib.contextmanager
def running(service: FakeService) -> Iterator[FakeService]:
    """``with running(FakeX()) as fake:`` starts and always stops a fake."""
    service.start()
    try:
        yield service
    finally:
        service.stop()
