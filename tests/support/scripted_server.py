"""A real HTTP/1.1 server on 127.0.0.1 that answers from a script, for transport and client tests.

Each test queues the answers it wants, in order, and afterwards reads what the server received::

    with ScriptedServer() as server:
        server.add(503, headers={"Retry-After": "0.2"})
        server.add_json({"predictions": [1]})
        ...  # call server.url
        assert len(server.requests) == 2

An answer may be delayed (to trigger client timeouts) or replaced by a connection reset (``reset=True``:
the socket is closed with SO_LINGER 0, so the client reads ECONNRESET). When the script runs out the
server answers 599 and counts the request in ``unscripted``, so a test can tell an unexpected extra
request from an expected one. Connections are kept alive, as a real service would.
"""

from __future__ import annotations

import json
import socket
import struct
import threading
import time
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

__all__ = ["ScriptedResponse", "RecordedRequest", "ScriptedServer"]


@dataclass(frozen=True)
class ScriptedResponse:
    """One scripted answer. ``body`` may be bytes, str, or anything JSON-encodable (sent as JSON)."""

    status: int = 200
    body: Any = b""
    headers: Mapping[str, str] = field(default_factory=dict)
    delay: float = 0.0
    reset: bool = False

    def encoded(self) -> tuple[bytes, dict[str, str]]:
        headers = dict(self.headers)
        body = self.body
        if isinstance(body, str):
            body = body.encode("utf-8")
            headers.setdefault("Content-Type", "text/plain; charset=utf-8")
        elif not isinstance(body, bytes):
            body = json.dumps(body).encode("utf-8")
            headers.setdefault("Content-Type", "application/json")
        return body, headers


@dataclass(frozen=True)
class RecordedRequest:
    """A request as the server received it. ``headers`` keys are lower-case."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    client: tuple[str, int]
    received_at: float  # time.monotonic()

    def json(self) -> Any:
        return json.loads(self.body)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, like the services the clients talk to
    # Headers and body go out in separate writes; with Nagle on, delayed ACKs add ~40 ms to each answer.
    disable_nagle_algorithm = True
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - quiet test output
        pass

    def setup(self) -> None:
        super().setup()
        with self.server.owner._lock:  # one handler per accepted connection
            self.server.owner.connections += 1

    def _read_body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _serve(self) -> None:
        body = self._read_body()
        scripted = self.server.owner._record_and_next(
            RecordedRequest(
                method=self.command,
                path=self.path,
                headers={key.lower(): value for key, value in self.headers.items()},
                body=body,
                client=self.client_address,
                received_at=time.monotonic(),
            )
        )
        if scripted.delay and self.server.owner._stopping.wait(scripted.delay):
            self.close_connection = True
            return
        if scripted.reset:
            self._reset = True
            self.close_connection = True
            return
        payload, headers = scripted.encoded()
        try:
            self.send_response(scripted.status)
            for name, value in headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(payload)
        except OSError:  # the client gave up (a timeout test): nothing to answer to
            self.close_connection = True

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = _serve

    def finish(self) -> None:
        if getattr(self, "_reset", False):
            # Linger 0 turns close() into a RST. The file objects hold references to the socket,
            # so they must go first for close() to really close it.
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.wfile.close()
            self.rfile.close()
            self.connection.close()
            return
        try:
            super().finish()
        except OSError:
            pass


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    owner: ScriptedServer

    def handle_error(self, request: Any, client_address: Any) -> None:
        # Clients that time out or reset are part of the tests; do not print tracebacks for them.
        pass


class ScriptedServer:
    """A threaded HTTP server on 127.0.0.1 (a free port) answering from a queue of scripted answers."""

    UNSCRIPTED_STATUS = 599

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._script: deque[ScriptedResponse] = deque()
        self._requests: list[RecordedRequest] = []
        self._stopping = threading.Event()
        self.unscripted = 0
        #: TCP connections accepted so far (client ports can repeat on loopback, so count here).
        self.connections = 0
        self._server = _Server(("127.0.0.1", 0), _Handler)
        self._server.owner = self
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return self._server.server_address[1]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    # -- script ---------------------------------------------------------------------------------

    def add(
        self,
        status: int = 200,
        body: Any = b"",
        *,
        headers: Mapping[str, str] | None = None,
        delay: float = 0.0,
        reset: bool = False,
        times: int = 1,
    ) -> ScriptedServer:
        """Queue an answer (``times`` copies of it). Returns the server so calls can be chained."""
        response = ScriptedResponse(status, body, dict(headers or {}), delay, reset)
        with self._lock:
            self._script.extend([response] * times)
        return self

    def add_json(self, payload: Any, status: int = 200, **kwargs: Any) -> ScriptedServer:
        """Queue a JSON answer."""
        return self.add(status, json.dumps(payload).encode(), headers={"Content-Type": "application/json",
                                                                         **kwargs.pop("headers", {})}, **kwargs)

    def add_reset(self, times: int = 1) -> ScriptedServer:
        """Queue a connection reset (the request is read, then the connection is aborted)."""
        return self.add(reset=True, times=times)

    @property
    def requests(self) -> list[RecordedRequest]:
        """Every request received so far, in arrival order (a copy)."""
        with self._lock:
            return list(self._requests)

    @property
    def pending(self) -> int:
        """Scripted answers not yet used."""
        with self._lock:
            return len(self._script)

    def _record_and_next(self, request: RecordedRequest) -> ScriptedResponse:
        with self._lock:
            self._requests.append(request)
            if self._script:
                return self._script.popleft()
            self.unscripted += 1
        return ScriptedResponse(self.UNSCRIPTED_STATUS, b"no scripted answer left")

    # -- lifecycle ------------------------------------------------------------------------------

    def start(self) -> ScriptedServer:
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, name="scripted-server", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()  # wakes delayed answers
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> ScriptedServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
