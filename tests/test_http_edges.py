"""The two I/O edges (sync: HttpTransport on requests; async: AsyncHttpTransport on aiohttp) against the
same scripted server on 127.0.0.1: the same requests reach the server, and the same errors come back.

Every test runs once per edge. The rules under test are deployflow.retry's: a request that may have
reached the service is sent again only when it is idempotent; 429/503 say the service did no work.
"""

from __future__ import annotations

import asyncio
import socket
import time

import pytest
from support.scripted_server import ScriptedServer

from deployflow.aio import AsyncHttpTransport
from deployflow.errors import OutcomeUnknownError, RemoteError, TransientError
from deployflow.retry import Failure, RetryPolicy
from deployflow.transport import HttpSettings, HttpTransport

EDGES = pytest.mark.parametrize("edge", ["sync", "async"])


def settings(max_retries: int = 3) -> HttpSettings:
    policy = RetryPolicy(max_retries=max_retries, backoff_factor=0.01, backoff_max=0.05, jitter=0.0)
    return HttpSettings(timeout=5, connect_timeout=2, predict_timeout=5, total_timeout=30,
                        predict_total_timeout=30, retry=policy)


def call(edge: str, base_url: str, method: str, path: str, *, max_retries: int = 3, **kwargs):
    """One request through ``edge``; returns (status, decoded JSON body)."""
    if edge == "sync":
        with HttpTransport(base_url, settings=settings(max_retries)) as transport:
            response = transport.request(method, path, **kwargs)
            return response.status_code, response.json() if response.content else None

    async def run():
        async with AsyncHttpTransport(base_url, settings=settings(max_retries)) as transport:
            answer = await transport.request(method, path, **kwargs)
            return answer.status, answer.json()

    return asyncio.run(run())


@pytest.fixture
def server():
    with ScriptedServer() as scripted:
        yield scripted


@EDGES
def test_a_post_dropped_after_sending_reaches_the_server_once(server, edge):
    server.add_reset(times=4)
    with pytest.raises(OutcomeUnknownError) as caught:
        call(edge, server.url, "POST", "/v1/chat/completions", json={"messages": [{"role": "user", "content": "hi"}]})
    assert len(server.requests) == 1
    error = caught.value
    assert error.retryable is False and error.failure is Failure.DROPPED
    assert "may have processed it" in str(error)


@EDGES
def test_an_idempotent_predict_dropped_after_sending_is_retried_up_to_the_policy(server, edge):
    server.add_reset(times=10)
    with pytest.raises(TransientError) as caught:
        call(edge, server.url, "POST", "/invocations", json={"inputs": [1]}, idempotent=True, max_retries=3)
    assert len(server.requests) == 4
    assert "gave up after 4 attempts" in str(caught.value)
    assert caught.value.failure is Failure.DROPPED


@EDGES
def test_an_idempotent_predict_dropped_once_succeeds_on_the_retry(server, edge):
    server.add_reset().add_json({"predictions": [1]})
    assert call(edge, server.url, "POST", "/invocations", json={"inputs": [1]}, idempotent=True) == (
        200, {"predictions": [1]})
    assert [r.body for r in server.requests] == [b'{"inputs":[1]}'] * 2


@EDGES
@pytest.mark.parametrize("status, idempotent, requests_seen", [
    (429, False, 2), (503, False, 2), (500, False, 1), (502, False, 1),
    (429, True, 2), (503, True, 2), (500, True, 2), (502, True, 2),
])
def test_statuses_by_idempotency(server, edge, status, idempotent, requests_seen):
    server.add(status, {"error_code": "X_ERROR", "message": "busy"}).add_json({"ok": True})
    if requests_seen == 2:
        assert call(edge, server.url, "POST", "/x", json={}, idempotent=idempotent) == (200, {"ok": True})
    else:
        with pytest.raises(TransientError) as caught:
            call(edge, server.url, "POST", "/x", json={}, idempotent=idempotent)
        assert caught.value.retryable is False and caught.value.status_code == status
        assert f"POST /x failed with HTTP {status}" in str(caught.value)
    assert len(server.requests) == requests_seen


@EDGES
def test_retry_after_is_waited(server, edge):
    server.add(503, headers={"Retry-After": "0.3"}).add_json({"ok": True})
    assert call(edge, server.url, "GET", "/status") == (200, {"ok": True})
    first, second = server.requests
    assert second.received_at - first.received_at >= 0.3


@EDGES
def test_the_same_error_for_the_same_answer(server, edge):
    server.add(404, {"error_code": "RESOURCE_DOES_NOT_EXIST", "message": "no endpoint e"})
    with pytest.raises(Exception) as caught:
        call(edge, server.url, "GET", "/api/2.0/endpoints/e")
    assert type(caught.value).__name__ == "NotFoundError"
    assert str(caught.value) == "GET /api/2.0/endpoints/e failed with HTTP 404 (RESOURCE_DOES_NOT_EXIST): no endpoint e"


@EDGES
@pytest.mark.parametrize("status, method_after", [(302, "GET"), (303, "GET"), (307, "POST"), (308, "POST")])
def test_redirects_are_followed_alike(server, edge, status, method_after):
    server.add(status, headers={"Location": "/moved"}).add_json({"here": True})
    assert call(edge, server.url, "POST", "/old", json={"a": 1}) == (200, {"here": True})
    first, second = server.requests
    assert (first.method, first.path) == ("POST", "/old")
    assert (second.method, second.path) == (method_after, "/moved")
    assert second.body == (b'{"a":1}' if method_after == "POST" else b"")


@EDGES
def test_a_redirect_loop_is_an_error(server, edge):
    server.add(302, headers={"Location": "/loop"}, times=30)
    with pytest.raises(RemoteError, match="redirects"):
        call(edge, server.url, "GET", "/loop")
    assert len(server.requests) == 11  # the first request and 10 redirects


@EDGES
def test_connect_refused_is_retried_for_any_request(edge):
    with socket.socket() as probe:  # a port with nothing listening
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    started = time.monotonic()
    with pytest.raises(TransientError) as caught:
        call(edge, f"http://127.0.0.1:{port}", "POST", "/v1/completions", json={}, max_retries=2)
    assert time.monotonic() - started < 5
    error = caught.value
    assert error.failure is Failure.CONNECT and error.retryable is True
    assert "gave up after 3 attempts" in str(error)
