"""A scoring server on 127.0.0.1 that reads only JSON, as a remote MLflow scoring server does.

It answers ``{"predictions": [sum of each row]}`` to a ``dataframe_split`` JSON body and 415 to any
other Content-Type, and records each request's Content-Type and Accept headers (:attr:`requests`), so
a test sees what batch scoring sent and what it asked for.
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class JsonOnlyServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        #: ``(Content-Type, Accept)`` of each request, in the order they came.
        self.requests: list[tuple[str, str | None]] = []
        self.lock = threading.Lock()
        self._thread = threading.Thread(target=self.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def __enter__(self) -> JsonOnlyServer:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.shutdown()
        self.server_close()


class _Handler(BaseHTTPRequestHandler):
    server: JsonOnlyServer

    def log_message(self, *args: Any) -> None:
        pass

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        content_type = self.headers.get("Content-Type", "")
        with self.server.lock:
            self.server.requests.append((content_type, self.headers.get("Accept")))
        if content_type != "application/json":
            answer, status, kind = b"Content type must be application/json or text/csv", 415, "text/plain"
        else:
            rows = json.loads(body)["dataframe_split"]["data"]
            answer, status, kind = json.dumps({"predictions": [sum(row) for row in rows]}).encode(), 200, "application/json"
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)
