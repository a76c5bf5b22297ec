"""The router's own HTTP/1.1 front-end (:mod:`deployflow.targets.local.front`), on raw sockets.

Real router processes on 127.0.0.1 in front of a :class:`~support.scripted_server.ScriptedServer`; each
test writes the bytes a client would (curl's ``Expect: 100-continue``, pipelined requests, HTTP/1.0,
garbage, slow or vanishing clients) and reads exactly what comes back.
"""

from __future__ import annotations

import json
import signal
import socket
import threading
import time

import pytest
from support.scripted_server import ScriptedServer
from test_local_router import DEPLOYMENT, Router, invoke

LIMIT = 1000  # max_request_bytes of the router under test
TIMEOUTS = {"header_timeout": 1.0, "body_timeout": 1.0, "keepalive_timeout": 1.0}


class Raw:
    """A client connection that writes bytes as given and reads answers one by one."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.buffer = b""

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def _fill(self) -> bool:
        data = self.sock.recv(65536)
        self.buffer += data
        return bool(data)

    def answer(self, *, head_only: bool = False) -> tuple[int, dict[str, str], bytes]:
        """The next answer: status, headers (lower-case names), body (none read with ``head_only``)."""
        while b"\r\n\r\n" not in self.buffer:
            assert self._fill(), f"closed before an answer: {self.buffer!r}"
        head, self.buffer = self.buffer.split(b"\r\n\r\n", 1)
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        length = int(headers.get("content-length", "0")) if status >= 200 and not head_only else 0
        while len(self.buffer) < length:
            assert self._fill(), "closed inside a body"
        body, self.buffer = self.buffer[:length], self.buffer[length:]
        return status, headers, body

    def closed_by_router(self) -> bool:
        """Whether the router closes this connection (EOF or reset) within 10 s; what it sent first is kept."""
        try:
            while self._fill():
                pass
        except ConnectionResetError:
            pass
        except TimeoutError:
            return False
        return True

    def close(self) -> None:
        self.sock.close()


def post(body: bytes = b'{"inputs": [[1.0]]}', *, extra: bytes = b"", path: bytes = b"/invocations") -> bytes:
    return (b"POST " + path + b" HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n" + extra
            + b"Content-Length: %d\r\n\r\n" % len(body) + body)


def served_again(router: Router, seconds: float = 10.0) -> None:
    """Wait until ``router`` answers a scoring request with 200 again (within ``seconds``)."""
    deadline = time.monotonic() + seconds
    while invoke(router)[0] != 200:
        assert time.monotonic() < deadline, f"the router did not serve again within {seconds:g} s"
        time.sleep(0.05)


@pytest.fixture(scope="module")
def upstream():
    with ScriptedServer() as server:
        yield server


@pytest.fixture(scope="module")
def router(tmp_path_factory, upstream):
    running = Router(tmp_path_factory.mktemp("router-http"))
    running.point_at(upstream.url)
    try:
        running.start(max_request_bytes=LIMIT, max_queue=2, max_queued_bytes=1500, **TIMEOUTS)
        yield running
    finally:
        running.stop()


@pytest.fixture()
def scripted(upstream):
    """The module's upstream, with an empty script and no requests recorded."""
    with upstream._lock:
        upstream._script.clear()
        upstream._requests.clear()
    yield upstream


def test_expect_100_continue_is_answered_before_the_body_is_sent(router, scripted):
    scripted.add_json({"predictions": [1]}, times=2)
    client = Raw(router.port)
    try:
        body = b'{"inputs": [[2.0]]}'
        client.send(b"POST /invocations HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                    b"Expect: 100-continue\r\nContent-Length: %d\r\n\r\n" % len(body))
        status, _, _ = client.answer()
        assert status == 100 and scripted.requests == []
        client.send(body)
        status, headers, answer = client.answer()
        assert (status, json.loads(answer)) == (200, {"predictions": [1]})
        assert headers["x-deployflow-deployment"] == DEPLOYMENT
        assert scripted.requests[0].body == body and "expect" not in scripted.requests[0].headers
        client.send(post())  # the connection is still in step
        assert client.answer()[0] == 200
    finally:
        client.close()


@pytest.mark.parametrize("request_head, status", [
    (b"POST /nowhere HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 10\r\n\r\n", 404),
    (b"POST /invocations HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 5000\r\n\r\n", 413),
], ids=["not-found", "too-large"])
def test_a_refused_expect_gets_the_refusal_instead_of_100(router, scripted, request_head, status):
    client = Raw(router.port)
    try:
        client.send(request_head)
        answered, headers, body = client.answer()
        assert answered == status and "error_code" in json.loads(body)
        assert headers["connection"] == "close" and client.closed_by_router()
        assert b"100 Continue" not in client.buffer and scripted.requests == []
    finally:
        client.close()


def test_pipelined_requests_are_answered_in_order(router, scripted):
    scripted.add(200, b"first", delay=0.5)
    scripted.add(200, b"second")
    client = Raw(router.port)
    try:
        client.send(post(b'{"n": 1}') + post(b'{"n": 2}') + b"GET /ping HTTP/1.1\r\nHost: x\r\n\r\n"
                    + b"GET /version HTTP/1.1\r\nHost: x\r\n\r\n")
        answers = [client.answer() for _ in range(4)]
        assert [(status, body) for status, _, body in answers[:3]] == [(200, b"first"), (200, b"second"), (200, b"\n")]
        assert answers[3][0] == 200 and answers[3][2]
        assert [request.body for request in scripted.requests] == [b'{"n": 1}', b'{"n": 2}']
    finally:
        client.close()


@pytest.mark.parametrize("request_bytes", [
    post(extra=b"Connection: close\r\n"),
    b"GET /ping HTTP/1.0\r\n\r\n",
], ids=["connection-close", "http-1.0"])
def test_close_and_http_1_0_close_after_the_answer(router, scripted, request_bytes):
    scripted.add_json({"predictions": [1]})
    client = Raw(router.port)
    try:
        client.send(request_bytes)
        status, headers, _ = client.answer()
        assert status == 200 and headers["connection"] == "close"
        assert client.closed_by_router()
    finally:
        client.close()


@pytest.mark.parametrize("garbage", [
    b"NOT HTTP AT ALL\r\n\r\n",
    b"POST /invocations HTTP/1.1\r\nHost: x\r\nContent-Length: 12abc\r\n\r\n",
    b"POST /invocations HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
], ids=["request-line", "content-length", "chunk-size"])
def test_a_malformed_request_gets_400_and_the_connection_closes(router, scripted, garbage):
    scripted.add_json({"predictions": [1]})
    client = Raw(router.port)
    try:
        client.send(post() + garbage)  # a good request first: answered first
        assert client.answer()[0] == 200
        status, headers, body = client.answer()
        assert status == 400 and json.loads(body)["error_code"] == "BAD_REQUEST"
        assert headers["connection"] == "close" and client.closed_by_router()
    finally:
        client.close()
    assert invoke(router)[0] != 400  # and the router still serves (599: nothing scripted)


def test_a_request_head_over_the_limit_is_a_431(router, scripted):
    client = Raw(router.port)
    try:
        client.send(b"GET /ping HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 70_000 + b"\r\n\r\n")
        status, headers, _ = client.answer()
        assert status == 431 and headers["connection"] == "close" and client.closed_by_router()
    finally:
        client.close()


def test_a_chunked_body_is_counted_as_it_comes(router, scripted):
    scripted.add_json({"predictions": [1]})
    client = Raw(router.port)
    try:
        client.send(b"POST /invocations HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                    b"5\r\n{\"a\":\r\n3\r\n 1}\r\n0\r\n\r\n")
        assert client.answer()[0] == 200
        assert scripted.requests[0].body == b'{"a": 1}' and scripted.requests[0].headers["content-length"] == "8"
        chunk = b"x" * 400
        client.send(b"POST /invocations HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n")
        for _ in range(3):  # 1200 bytes: over the limit of 1000 on the third chunk
            client.send(b"%x\r\n%s\r\n" % (len(chunk), chunk))
        status, _, body = client.answer()
        assert status == 413 and json.loads(body)["error_code"] == "RESOURCE_LIMIT_EXCEEDED"
        assert client.closed_by_router() and len(scripted.requests) == 1
    finally:
        client.close()


@pytest.mark.parametrize("method, path, allowed", [(b"GET", b"/invocations", "POST"), (b"HEAD", b"/invocations", "POST"),
                                                   (b"POST", b"/ping", "GET"), (b"PUT", b"/health", "GET"),
                                                   (b"DELETE", b"/version", "GET")])
def test_a_wrong_method_gets_the_405_a_deployment_server_gives(router, scripted, method, path, allowed):
    client = Raw(router.port)
    try:
        client.send(method + b" " + path + b" HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n")
        status, headers, body = client.answer(head_only=method == b"HEAD")
    finally:
        client.close()
    assert status == 405 and headers["allow"] == allowed
    if method != b"HEAD":  # the text test_local_protocol.py's test_wrong_method_is_405 holds the server to
        assert json.loads(body) == {"error_code": "BAD_REQUEST",
                                    "message": f"{path.decode()} does not accept {method.decode()}; use {allowed}"}
    assert not scripted.requests


def test_head_and_the_plain_paths(router, scripted):
    client = Raw(router.port)
    try:
        client.send(b"HEAD /ping HTTP/1.1\r\nHost: x\r\n\r\n")
        status, headers, _ = client.answer(head_only=True)
        assert status == 200 and headers["content-length"] == "1"
        client.send(b"GET /invocations HTTP/1.1\r\nHost: x\r\n\r\n")  # the HEAD answer had no body
        status, _, body = client.answer()
        assert status == 405 and json.loads(body)["error_code"] == "BAD_REQUEST"
        client.send(b"GET /nowhere?x=1 HTTP/1.1\r\nHost: x\r\n\r\n")
        status, _, body = client.answer()
        assert status == 404 and json.loads(body) == {"error_code": "ENDPOINT_NOT_FOUND",
                                                      "message": "no such path: /nowhere"}
        client.send(b"GET /-/routes HTTP/1.1\r\nHost: x\r\n\r\n")  # no control secret given to this router
        assert client.answer()[0] == 401
    finally:
        client.close()


def test_a_full_queue_is_a_503_and_a_client_that_leaves_releases_its_place(router, scripted):
    holders = [Raw(router.port) for _ in range(2)]
    try:
        for holder in holders:  # admitted (max_queue 2), bodies never finished
            holder.send(b"POST /invocations HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{\"in")
        client = Raw(router.port)
        try:
            deadline = time.monotonic() + 10
            while True:  # until the router has read both heads
                client.send(b"POST /invocations HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}")
                status, headers, body = client.answer()
                if status == 503 or time.monotonic() > deadline:
                    break
            assert status == 503 and headers["retry-after"] == "1" and "max_queue" in json.loads(body)["message"]
        finally:
            client.close()
    finally:
        for holder in holders:
            holder.close()
    scripted.add_json({"predictions": [1]}, times=50)
    served_again(router)  # the two places are given back once their clients are gone


def test_queued_body_bytes_are_bounded(router, scripted):
    holder = Raw(router.port)
    try:
        holder.send(b"POST /invocations HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n{")
        deadline = time.monotonic() + 10
        while True:
            status, _, body = invoke(router, body=b"[" + b"1," * 300 + b"1]")  # 603 more bytes: over 1500
            if status == 503 or time.monotonic() > deadline:
                break
        assert status == 503 and "max_queued_bytes" in json.loads(body)["message"]
    finally:
        holder.close()


@pytest.mark.parametrize("partial", [
    b"",
    b"POST /invocations HTTP/1.1\r\nHost: x\r\nContent-",
    b"POST /invocations HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{\"inputs\"",
    None,
], ids=["idle", "slow-headers", "stalled-body", "idle-after-an-answer"])
def test_slow_clients_are_disconnected(router, scripted, partial):
    client = Raw(router.port)
    try:
        if partial is None:
            client.send(b"GET /ping HTTP/1.1\r\nHost: x\r\n\r\n")
            assert client.answer()[0] == 200
        else:
            client.send(partial)
        assert client.closed_by_router()
    finally:
        client.close()
    scripted.add_json({"predictions": [1]})
    assert invoke(router)[0] == 200


def test_past_limit_concurrency_requests_get_503(tmp_path, upstream, scripted):
    running = Router(tmp_path)
    running.point_at(upstream.url)
    running.start(limit_concurrency=2)
    try:
        held = [Raw(running.port) for _ in range(2)]
        try:
            client = Raw(running.port)
            try:
                client.send(b"GET /ping HTTP/1.1\r\nHost: x\r\n\r\n")
                status, headers, body = client.answer()
                assert status == 503 and "limit_concurrency" in json.loads(body)["message"]
                assert headers["retry-after"] == "1" and client.closed_by_router()
            finally:
                client.close()
        finally:
            for sock in held:
                sock.close()
        scripted.add_json({"predictions": [1]}, times=50)
        served_again(running)
    finally:
        running.stop()


def test_sigterm_finishes_the_requests_in_flight_and_exits_0(tmp_path, upstream, scripted):
    running = Router(tmp_path)
    running.point_at(upstream.url)
    running.start(stop_timeout=20.0, request_timeout=30.0)
    scripted.add_json({"predictions": ["late"]}, delay=4.0)
    answers = []
    try:
        idle = Raw(running.port)
        idle.send(b"GET /ping HTTP/1.1\r\nHost: x\r\n\r\n")
        assert idle.answer()[0] == 200
        caller = threading.Thread(target=lambda: answers.append(invoke(running)))
        caller.start()
        deadline = time.monotonic() + 10
        while not scripted.requests:  # the request reached the deployment
            assert time.monotonic() < deadline
            time.sleep(0.02)
        running.process.send_signal(signal.SIGTERM)
        assert idle.closed_by_router()  # idle connections are closed at once
        refused = False
        while not refused and time.monotonic() < deadline:  # and no new one is accepted
            try:
                socket.create_connection(("127.0.0.1", running.port), timeout=1).close()
                time.sleep(0.02)
            except ConnectionRefusedError:
                refused = True
        assert refused
        caller.join(timeout=30)
        status, headers, body = answers[0]
        assert (status, json.loads(body)) == (200, {"predictions": ["late"]}) and headers["connection"] == "close"
        assert running.process.wait(timeout=30) == 0
    finally:
        running.stop()
