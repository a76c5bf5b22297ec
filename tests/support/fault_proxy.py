"""An HTTP proxy on 127.0.0.1 that injects faults between a client and a real model server.

Each request to the proxy takes the next fault from a script (then passes requests through once the
script is exhausted, or follows ``every``): ``"503"`` answers 503 with ``Retry-After: 0``, ``"reset"``
reads the request and drops the connection without an answer, ``"slow"`` waits ``slow_seconds`` before
forwarding, ``"pass"`` forwards. The upstream can be switched (or set to ``None``, which answers 502, as
a gateway in front of a restarting server would) while the proxy runs. Every forwarded request is
counted, so tests can prove nothing was lost or duplicated.
"""

from __future__ import annotations

import http.client
import socket
import struct
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit


class FaultProxy:
    def __init__(
        self, upstream: str | None, *, every: dict[int, str] | None = None, slow_seconds: float = 0.3,
        down_answers: int = 2,
    ) -> None:
        """``upstream`` may be set to ``None`` while the server behind it restarts: the first
        ``down_answers`` POSTs meanwhile get a 502, later ones wait until it is back. A restart takes
        as long as the machine makes it; a client's retry budget counts attempts, so bounding the 502s
        keeps a test about surviving a restart from depending on the machine's speed."""
        self.upstream = upstream
        self.down_answers = down_answers
        self.every = every or {}
        self.slow_seconds = slow_seconds
        self.script: list[str] = []
        self.lock = threading.Lock()
        self.requests = 0
        self.forwarded = 0
        self.faults: dict[str, int] = {}
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                proxy._handle(self, b"")

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                proxy._handle(self, self.rfile.read(length))

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> FaultProxy:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()

    def _next_fault(self) -> str:
        with self.lock:
            self.requests += 1
            number = self.requests
            if self.script:
                fault = self.script.pop(0)
            else:
                fault = next((f for n, f in sorted(self.every.items()) if number % n == 0), "pass")
            self.faults[fault] = self.faults.get(fault, 0) + 1
            return fault

    def _handle(self, handler: BaseHTTPRequestHandler, body: bytes) -> None:
        fault = self._next_fault() if handler.command == "POST" else "pass"
        if fault == "503":
            self._answer(handler, 503, b'{"error_code": "TEMPORARILY_UNAVAILABLE", "message": "injected"}', {"Retry-After": "0"})
            return
        if fault == "reset":
            # An RST instead of an answer: the client sees "connection reset by peer".
            handler.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            handler.close_connection = True
            handler.connection.close()
            return
        if fault == "slow":
            time.sleep(self.slow_seconds)
        upstream = self.upstream
        if upstream is None:
            with self.lock:
                refuse = self.down_answers > 0
                self.down_answers -= refuse
            if refuse:
                self._answer(handler, 502, b'{"error_code": "TEMPORARILY_UNAVAILABLE", "message": "upstream restarting"}', {})
                return
            deadline = time.monotonic() + 60
            while upstream is None:
                if time.monotonic() > deadline:
                    self._answer(handler, 502, b'{"error_code": "TEMPORARILY_UNAVAILABLE", "message": "never back"}', {})
                    return
                time.sleep(0.01)
                upstream = self.upstream
        parts = urlsplit(upstream)
        try:
            conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
            headers = {k: v for k, v in handler.headers.items() if k.lower() not in ("host", "connection")}
            conn.request(handler.command, handler.path, body=body or None, headers=headers)
            answer = conn.getresponse()
            data = answer.read()
            conn.close()
        except OSError:
            self._answer(handler, 502, b'{"error_code": "TEMPORARILY_UNAVAILABLE", "message": "upstream unreachable"}', {})
            return
        if handler.command == "POST" and answer.status == 200:
            with self.lock:
                self.forwarded += 1
        self._answer(handler, answer.status, data, {"Content-Type": answer.getheader("Content-Type", "application/json")})

    @staticmethod
    def _answer(handler: BaseHTTPRequestHandler, status: int, body: bytes, headers: dict[str, str]) -> None:
        handler.send_response(status)
        headers.setdefault("Content-Type", "application/json")
        for key, value in headers.items():
            handler.send_header(key, value)
        handler.send_header("Content-Length", str(len(body)))
        handler.end_headers()
        handler.wfile.write(body)
