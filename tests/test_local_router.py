"""The endpoint router's forwarding path, against scripted upstreams on 127.0.0.1.

A real router process (``python -m deployflow.targets.local.router``) reads a state file that routes its
endpoint to a :class:`~support.scripted_server.ScriptedServer`, so each test chooses exactly what the
"deployment" answers and then checks what the caller gets and what the upstream received: redirects and
errors are forwarded as they are, bodies decoded, a connection refused or reset is sent again, a slow
upstream becomes 504.
"""

from __future__ import annotations

import gzip
import http.client
import json
import subprocess
import sys
import threading
import time

import pytest
from deployflow.targets.local.state import read_json, write_json_atomic
from support.local_models import free_port
from support.scripted_server import ScriptedServer

ENDPOINT, DEPLOYMENT = "routed", "scripted"
REQUEST_TIMEOUT = 1.0


class Router:
    """A running router process for endpoint ``routed``, whose only route :meth:`point_at` moves."""

    def __init__(self, directory) -> None:
        self.state_file, self.ready_file = directory / "state.json", directory / "ready.json"
        self.spec_file = directory / "spec.json"
        self.revision = 0
        self.port = 0
        self.process: subprocess.Popen | None = None

    def point_at(self, url: str) -> None:
        """Route all traffic to ``url``, as a deployment update switching the state file would."""
        self.revision += 1
        write_json_atomic(self.state_file, {
            "revision": self.revision,
            "endpoints": {ENDPOINT: {"config": {"routes": [{"deployment": DEPLOYMENT, "traffic": 100.0}]}}},
            "deployments": {DEPLOYMENT: {"process": {"url": url}}},
        })

    def start(self, **settings) -> None:
        """Start the router; ``settings`` add to or replace keys of its spec."""
        spec = {"version": 1, "name": ENDPOINT, "state_file": str(self.state_file), "host": "127.0.0.1",
                "port": 0, "request_timeout": REQUEST_TIMEOUT, "ready_file": str(self.ready_file),
                "log_level": "warning", "stop_timeout": 5.0, **settings}
        self.spec_file.write_text(json.dumps(spec))
        self.process = subprocess.Popen(
            [sys.executable, "-m", "deployflow.targets.local.router", "--spec", str(self.spec_file)]
        )
        deadline = time.monotonic() + 30
        while not self.ready_file.exists():
            assert self.process.poll() is None, f"the router exited with {self.process.returncode}"
            assert time.monotonic() < deadline, "the router did not start within 30 s"
            time.sleep(0.02)
        self.port = read_json(self.ready_file)["port"]

    def stop(self) -> None:
        if self.process is None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)


@pytest.fixture(scope="module")
def router(tmp_path_factory):
    running = Router(tmp_path_factory.mktemp("router"))
    running.point_at(f"http://127.0.0.1:{free_port()}")  # each test points it at its own upstream
    try:
        running.start()
        yield running
    finally:
        running.stop()


@pytest.fixture()
def scripted(router):
    """A fresh scripted upstream, with the router's route pointing at it."""
    with ScriptedServer() as server:
        router.point_at(server.url)
        yield server


def invoke(router, body: bytes = b'{"inputs": [[1.0]]}', headers: dict[str, str] | None = None):
    """POST /invocations to the router; returns (status, headers with lower-case names, body)."""
    connection = http.client.HTTPConnection("127.0.0.1", router.port, timeout=30)
    try:
        connection.request("POST", "/invocations", body=body,
                           headers={"Content-Type": "application/json"} if headers is None else headers)
        answer = connection.getresponse()
        return answer.status, {k.lower(): v for k, v in answer.getheaders()}, answer.read()
    finally:
        connection.close()


def test_a_redirect_is_forwarded_not_followed(router, scripted):
    scripted.add(302, "moved", headers={"Location": f"{scripted.url}/elsewhere"})
    status, headers, body = invoke(router)
    assert (status, body) == (302, b"moved")
    assert headers["content-type"] == "text/plain; charset=utf-8"
    assert headers["x-deployflow-deployment"] == DEPLOYMENT
    assert [(r.method, r.path) for r in scripted.requests] == [("POST", "/invocations")]
    assert scripted.unscripted == 0


def test_an_error_is_forwarded_with_its_retry_after(router, scripted):
    error = {"error_code": "TEMPORARILY_UNAVAILABLE", "message": "warming up"}
    scripted.add_json(error, status=503, headers={"Retry-After": "7"})
    status, headers, body = invoke(router)
    assert status == 503 and json.loads(body) == error
    assert headers["retry-after"] == "7" and headers["content-type"] == "application/json"
    assert headers["x-deployflow-deployment"] == DEPLOYMENT
    assert len(scripted.requests) == 1  # a 503 is the deployment's answer: the router does not retry it


def test_request_headers_and_a_compressed_answer(router, scripted):
    scripted.add(200, gzip.compress(b'{"predictions": [2.0]}'),
                 headers={"Content-Type": "application/json", "Content-Encoding": "gzip"})
    scripted.add(200, b'{"predictions": []}')  # no Content-Type: the router says JSON
    status, headers, body = invoke(router, headers={"Content-Type": "application/json", "Authorization": "Bearer t0k",
                                                    "Accept": "application/json", "X-Other": "kept back"})
    # Decoded as the caller's own client would have decoded it; the router's answer is not compressed.
    assert (status, body) == (200, b'{"predictions": [2.0]}') and "content-encoding" not in headers
    received = scripted.requests[0]
    assert received.body == b'{"inputs": [[1.0]]}'
    assert received.headers["authorization"] == "Bearer t0k" and received.headers["accept"] == "application/json"
    assert received.headers["content-type"] == "application/json" and "x-other" not in received.headers
    assert "cookie" not in received.headers and "proxy-authorization" not in received.headers

    status, headers, body = invoke(router, body=b"", headers={})
    assert (status, headers["content-type"], body) == (200, "application/json", b'{"predictions": []}')
    # Nothing the caller did not send: no Content-Type made up for the body.
    assert "content-type" not in scripted.requests[1].headers
    assert scripted.requests[1].headers["content-length"] == "0"


def test_a_reset_connection_is_sent_again(router, scripted):
    scripted.add_reset()
    scripted.add_json({"predictions": [3.0]})
    status, _, body = invoke(router)
    assert (status, json.loads(body)) == (200, {"predictions": [3.0]})
    assert len(scripted.requests) == 2 and scripted.requests[0].body == scripted.requests[1].body


def test_a_refused_connection_waits_for_the_routes_to_change(router, scripted):
    router.point_at(f"http://127.0.0.1:{free_port()}")  # nothing listens there
    scripted.add_json({"predictions": [4.0]})
    switch = threading.Timer(0.5, router.point_at, args=(scripted.url,))
    switch.start()
    try:
        started = time.monotonic()
        status, _, body = invoke(router)
    finally:
        switch.join()
    assert (status, json.loads(body)) == (200, {"predictions": [4.0]})
    assert 0.4 < time.monotonic() - started < 4.0 and len(scripted.requests) == 1


def test_a_slow_upstream_is_a_deadline_exceeded(router, scripted):
    scripted.add_json({"predictions": [5.0]}, delay=REQUEST_TIMEOUT + 3.0)
    started = time.monotonic()
    status, headers, body = invoke(router)
    assert status == 504 and json.loads(body)["error_code"] == "DEADLINE_EXCEEDED"
    assert "x-deployflow-deployment" not in headers
    assert time.monotonic() - started < REQUEST_TIMEOUT + 2.0 and len(scripted.requests) == 1


def test_a_declared_body_over_the_limit_is_a_413_at_once(router, scripted):
    """The server's rule, in the router: the Content-Length is checked before any of the body is read."""
    import socket

    with socket.create_connection(("127.0.0.1", router.port), timeout=10) as sock:
        sock.sendall(b"POST /invocations HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     b"Content-Length: 209715200\r\n\r\n")  # 200 MiB declared, nothing sent
        answer = b""
        while b"\r\n\r\n" not in answer or not answer.rstrip().endswith(b"}"):
            data = sock.recv(65536)
            if not data:
                break
            answer += data
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 413")
    assert json.loads(body)["error_code"] == "RESOURCE_LIMIT_EXCEEDED"
    assert scripted.requests == []


def test_a_bad_content_length_is_a_400(router, scripted):
    import socket

    with socket.create_connection(("127.0.0.1", router.port), timeout=10) as sock:
        sock.sendall(b"POST /invocations HTTP/1.1\r\nHost: x\r\nContent-Length: -5\r\n\r\n")
        answer = sock.recv(65536)
    assert answer.startswith(b"HTTP/1.1 400")
    assert scripted.requests == []


def test_the_ready_file_has_the_servers_format(router):
    """One ready-file format for servers and routers (.serving.ready_record): started_at in epoch seconds."""
    ready = read_json(router.ready_file)
    assert set(ready) == {"pid", "host", "port", "url", "flavor", "started_at"}
    assert isinstance(ready["started_at"], float) and abs(ready["started_at"] - time.time()) < 3600
    assert ready["url"] == f"http://127.0.0.1:{router.port}" and ready["flavor"] is None
