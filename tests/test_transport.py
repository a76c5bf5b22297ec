"""HttpTransport and its settings, against a real HTTP server on 127.0.0.1 (tests/support/scripted_server.py).

Timing assertions are lower bounds only (we waited at least what the server asked), plus generous upper
sanity bounds that catch a wait of the wrong order of magnitude (5 s instead of 0.2 s).
"""

from __future__ import annotations

import dataclasses
import email.utils
import logging
import math
import socket
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import requests
from support.scripted_server import ScriptedServer

from deployflow.errors import (
    AuthenticationError,
    ConflictError,
    DeploymentError,
    InvalidInputError,
    NotFoundError,
    OutcomeUnknownError,
    RemoteError,
    RequestTimeoutError,
    TransientError,
)
from deployflow.transport import (
    HttpSettings,
    HttpTransport,
    RetryPolicy,
    encode_json,
    parse_error_body,
    parse_retry_after,
)

# Backoff small enough that a test which waits longer must have obeyed Retry-After.
FAST_RETRY = RetryPolicy(max_retries=3, backoff_factor=0.01, backoff_max=0.05, jitter=0.0)


def fast_settings(**changes: object) -> HttpSettings:
    retry_changes = {k: changes.pop(k) for k in list(changes) if k in {f.name for f in dataclasses.fields(RetryPolicy)}}
    retry = dataclasses.replace(FAST_RETRY, **retry_changes)
    base = {"timeout": 5.0, "predict_timeout": 5.0, "connect_timeout": 2.0, "total_timeout": 30.0,
            "predict_total_timeout": 30.0, "retry": retry}
    base.update(changes)
    return HttpSettings(**base)


@pytest.fixture
def server():
    with ScriptedServer() as scripted:
        yield scripted


@pytest.fixture
def transport(server):
    with HttpTransport(server.url, settings=fast_settings()) as client:
        yield client


def make_transport(server: ScriptedServer, **changes: object) -> HttpTransport:
    return HttpTransport(server.url, settings=fast_settings(**changes))


# --------------------------------------------------------------------------------------------------
# Retries that end in success
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("status", [429, 503])
def test_retry_after_in_seconds_is_waited_then_the_call_succeeds(server, transport, status):
    server.add(status, {"message": "slow down"}, headers={"Retry-After": "0.2"})
    server.add_json({"predictions": [1, 2]})

    started = time.monotonic()
    result = transport.request_json("POST", "/invocations", json={"inputs": [[1, 2]]}, kind="predict")
    elapsed = time.monotonic() - started

    assert result == {"predictions": [1, 2]}
    first, second = server.requests
    assert second.received_at - first.received_at >= 0.2  # backoff alone would be 0.01 s
    assert elapsed < 5
    assert first.body == second.body == b'{"inputs":[[1,2]]}'
    assert server.unscripted == 0


def test_retry_after_is_capped_by_max_retry_after(server):
    server.add(503, headers={"Retry-After": "30"}).add_json({"ok": True})
    with make_transport(server, max_retry_after=0.1) as transport:
        started = time.monotonic()
        assert transport.request_json("GET", "/health") == {"ok": True}
    assert time.monotonic() - started < 5
    assert len(server.requests) == 2


def test_retry_after_is_ignored_when_the_policy_says_so(server):
    server.add(503, headers={"Retry-After": "30"}).add_json({"ok": True})
    with make_transport(server, respect_retry_after=False) as transport:
        started = time.monotonic()
        assert transport.request_json("GET", "/health") == {"ok": True}
    assert time.monotonic() - started < 5


@pytest.mark.parametrize("status", [500, 502])
def test_server_errors_are_retried_then_the_call_succeeds(server, transport, status):
    server.add(status, "upstream hiccup").add(status, "upstream hiccup").add_json({"name": "m"})
    assert transport.request_json("GET", "/api/2.0/endpoints/m") == {"name": "m"}
    assert [r.path for r in server.requests] == ["/api/2.0/endpoints/m"] * 3


def test_connection_reset_is_retried_then_the_call_succeeds(server, transport):
    server.add_reset().add_json({"predictions": [0]})
    answer = transport.request_json("POST", "/invocations", json={"inputs": [0]}, kind="predict", idempotent=True)
    assert answer == {"predictions": [0]}
    assert len(server.requests) == 2


def test_a_reset_after_a_post_that_is_not_idempotent_is_not_sent_again(server, transport):
    server.add_reset().add_json({"unused": True})
    with pytest.raises(OutcomeUnknownError) as caught:
        transport.request_json("POST", "/v1/chat/completions", json={"messages": []}, kind="predict")
    assert len(server.requests) == 1
    error = caught.value
    assert error.retryable is False
    assert "may have processed it" in str(error) and "retry_non_idempotent" in str(error)
    assert isinstance(error.__cause__, requests.ConnectionError)


def test_retry_non_idempotent_widens_the_rules(server):
    server.add_reset().add_json({"ok": True})
    with make_transport(server, retry_non_idempotent=True) as transport:
        assert transport.request_json("POST", "/v1/chat/completions", json={}) == {"ok": True}
    assert len(server.requests) == 2


@pytest.mark.parametrize("status, idempotent, sent", [
    (500, True, 2), (502, True, 2), (503, True, 2), (429, True, 2),
    (500, False, 1), (502, False, 1), (503, False, 2), (429, False, 2),
])
def test_statuses_are_retried_by_idempotency(server, transport, status, idempotent, sent):
    server.add(status, {"message": "x"}).add_json({"ok": True})
    call = lambda: transport.request_json("POST", "/x", json={}, idempotent=idempotent)  # noqa: E731
    if sent == 2:
        assert call() == {"ok": True}
    else:
        with pytest.raises(TransientError) as caught:
            call()
        assert caught.value.retryable is False
    assert len(server.requests) == sent


def test_a_narrowed_status_set_is_not_retried(server, transport):
    server.add(500, {"error_code": "INTERNAL_ERROR", "message": "cannot encode"}).add_json({"unused": True})
    with pytest.raises(TransientError) as caught:
        transport.request("POST", "/invocations", json={}, idempotent=True, retry_statuses={429, 502, 503})
    assert len(server.requests) == 1
    assert caught.value.retryable is False


def test_read_timeout_is_retried_only_when_enabled(server):
    server.add(200, delay=2.0).add_json({"ok": 1})
    with make_transport(server, predict_timeout=0.3, retry_on_timeout=True) as transport:
        assert transport.request_json("POST", "/invocations", json={}, kind="predict", idempotent=True) == {"ok": 1}
    assert len(server.requests) == 2


def test_options_reach_the_retry_behaviour(server):
    settings = HttpSettings.from_options({"max_retries": "1", "backoff_factor": "0.01"}, environ={})
    server.add(503, times=3)
    with HttpTransport(server.url, settings=settings) as transport, pytest.raises(TransientError) as caught:
        transport.request("GET", "/ping")
    assert len(server.requests) == 2
    assert "gave up after 2 attempts" in str(caught.value)


# --------------------------------------------------------------------------------------------------
# Giving up
# --------------------------------------------------------------------------------------------------


def test_max_retries_exhausted_raises_the_last_transient_error(server):
    server.add(503, {"message": "model is loading"}, times=3).add_json({"unused": True})
    with make_transport(server, max_retries=2) as transport, pytest.raises(TransientError) as caught:
        transport.request("POST", "/invocations", json={"inputs": [1]}, kind="predict")

    error = caught.value
    assert error.status_code == 503
    assert error.error_code == "TEMPORARILY_UNAVAILABLE"
    assert error.retryable is True
    assert "gave up after 3 attempts" in str(error)
    assert "POST /invocations failed with HTTP 503 (TEMPORARILY_UNAVAILABLE): model is loading" in str(error)
    assert len(server.requests) == 3
    assert server.pending == 1


def test_server_error_code_is_kept_for_a_rate_limit(server):
    body = {"error_code": "REQUEST_LIMIT_EXCEEDED", "message": "Exceeded 10 QPS"}
    server.add(429, body, times=2)
    with make_transport(server, max_retries=1) as transport, pytest.raises(TransientError) as caught:
        transport.request("POST", "/serving-endpoints/m/invocations", json={}, kind="predict")
    assert caught.value.error_code == "REQUEST_LIMIT_EXCEEDED"
    assert caught.value.status_code == 429


def test_a_wait_past_the_total_deadline_is_not_taken(server):
    server.add(503, {"message": "busy"}, headers={"Retry-After": "5"}).add_json({"unused": True})
    with make_transport(server, total_timeout=1.0) as transport:
        started = time.monotonic()
        with pytest.raises(TransientError) as caught:
            transport.request("GET", "/api/2.0/endpoints/")
        elapsed = time.monotonic() - started

    assert elapsed < 2.5  # did not sleep the 5 s the server asked for
    assert len(server.requests) == 1
    assert caught.value.status_code == 503
    assert "total deadline of 1 s" in str(caught.value)
    assert "gave up after 1 attempt" in str(caught.value)


def test_backoff_stops_at_the_total_deadline(server):
    server.add(503, times=50)
    with make_transport(server, total_timeout=0.6, max_retries=40, backoff_factor=0.1, backoff_max=0.2) as transport:
        started = time.monotonic()
        with pytest.raises(TransientError, match="total deadline"):
            transport.request("GET", "/ping")
    assert time.monotonic() - started < 3
    assert 2 <= len(server.requests) < 10


def test_connection_reset_every_time_gives_up_with_a_transient_error(server):
    server.add_reset(times=2)
    with make_transport(server, max_retries=1) as transport, pytest.raises(TransientError) as caught:
        transport.request("GET", "/ping")
    assert caught.value.status_code is None
    assert isinstance(caught.value.__cause__, requests.ConnectionError)
    assert "gave up after 2 attempts" in str(caught.value)
    assert len(server.requests) == 2


def test_connection_refused_is_a_transient_error():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    # Nobody listens on the port now.
    with HttpTransport(f"http://127.0.0.1:{port}", settings=fast_settings(max_retries=1)) as transport:
        with pytest.raises(TransientError) as caught:
            transport.request("GET", "/ping")
    assert "Connection refused" in str(caught.value)
    assert "gave up after 2 attempts" in str(caught.value)
    assert isinstance(caught.value.__cause__, requests.ConnectionError)


def test_retry_false_makes_a_single_attempt(server, transport):
    server.add(503, times=2)
    with pytest.raises(TransientError) as caught:
        transport.request("GET", "/ping", retry=False)
    assert len(server.requests) == 1
    assert "attempt" not in str(caught.value)  # nothing was given up: no retry was asked for


def test_a_body_that_cannot_be_replayed_is_sent_once(server, transport):
    server.add(503).add_json({"unused": True})
    with pytest.raises(TransientError):
        transport.request("POST", "/upload", data=iter([b"first,", b"second"]))
    assert len(server.requests) == 1
    assert server.requests[0].body == b"first,second"


def test_a_narrower_policy_does_not_retry_other_statuses(server):
    server.add(429, times=2)
    with make_transport(server, retry_statuses=frozenset({503})) as transport, pytest.raises(TransientError):
        transport.request("GET", "/ping")
    assert len(server.requests) == 1


# --------------------------------------------------------------------------------------------------
# Timeouts
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("idempotent, error_class", [(True, RequestTimeoutError), (False, OutcomeUnknownError)])
def test_a_post_that_stalls_past_the_read_timeout_is_sent_once(server, idempotent, error_class):
    server.add(200, {"late": True}, delay=3.0).add_json({"unused": True})
    with make_transport(server, predict_timeout=0.3) as transport:
        started = time.monotonic()
        with pytest.raises(error_class) as caught:
            transport.request("POST", "/invocations", json={"inputs": [1]}, kind="predict", idempotent=idempotent)
        elapsed = time.monotonic() - started

    assert len(server.requests) == 1
    assert elapsed < 2.5
    error = caught.value
    assert error.status_code is None
    assert error.error_code == "DEADLINE_EXCEEDED"
    assert "0.3 s" in str(error)
    assert isinstance(error.__cause__, requests.ReadTimeout)


def test_kind_selects_the_timeout(server):
    # Control calls get 0.3 s, predictions 5 s: the same 0.6 s answer fails one and serves the other.
    server.add(200, {"ok": 1}, delay=0.6).add(200, {"ok": 2}, delay=0.6)
    with make_transport(server, timeout=0.3, predict_timeout=5.0) as transport:
        with pytest.raises(RequestTimeoutError):
            transport.request("GET", "/api/2.0/endpoints/m")
        assert transport.request_json("POST", "/invocations", json={}, kind="predict") == {"ok": 2}


def test_the_read_timeout_is_clipped_to_the_total_deadline(server):
    server.add(200, {"late": True}, delay=3.0)
    with make_transport(server, predict_timeout=10.0, predict_total_timeout=0.5) as transport:
        started = time.monotonic()
        with pytest.raises(RequestTimeoutError, match="total deadline of 0.5 s"):
            transport.request("POST", "/invocations", json={}, kind="predict", idempotent=True)
    assert time.monotonic() - started < 2.0


def test_a_gateway_timeout_is_not_retried(server, transport):
    server.add(504, {"error_code": "DEADLINE_EXCEEDED", "message": "model took too long"}).add_json({"unused": 1})
    with pytest.raises(RequestTimeoutError) as caught:
        transport.request("POST", "/invocations", json={}, kind="predict")
    assert caught.value.status_code == 504
    assert len(server.requests) == 1
    assert server.pending == 1


# --------------------------------------------------------------------------------------------------
# Error answers become deployflow errors
# --------------------------------------------------------------------------------------------------


def test_a_400_with_an_mlflow_body_is_invalid_input(server, transport):
    message = "Invalid input. One of dataframe_split, dataframe_records, instances, inputs is required."
    server.add(400, {"error_code": "BAD_REQUEST", "message": message})
    with pytest.raises(InvalidInputError) as caught:
        transport.request("POST", "/invocations", json={"rows": []}, kind="predict")

    error = caught.value
    assert error.error_code == "BAD_REQUEST"
    assert error.status_code == 400
    assert error.retryable is False
    assert str(error) == f"POST /invocations failed with HTTP 400 (BAD_REQUEST): {message}"
    assert error.body is not None and "dataframe_split" in error.body
    assert len(server.requests) == 1


@pytest.mark.parametrize(
    ("status", "body", "error_class", "error_code", "text"),
    [
        (404, {"error_code": "RESOURCE_DOES_NOT_EXIST", "message": "Endpoint 'm' does not exist."},
         NotFoundError, "RESOURCE_DOES_NOT_EXIST", "Endpoint 'm' does not exist."),
        (404, "", NotFoundError, "RESOURCE_DOES_NOT_EXIST", "Not Found"),
        (401, {"error": {"message": "Incorrect API key provided.", "type": "invalid_request_error",
                         "code": "invalid_api_key"}},
         AuthenticationError, "UNAUTHENTICATED", "Incorrect API key provided. [invalid_api_key]"),
        (403, "Forbidden for this workspace", AuthenticationError, "PERMISSION_DENIED",
         "Forbidden for this workspace"),
        (409, {"error_code": "RESOURCE_ALREADY_EXISTS", "message": "Endpoint m exists"},
         ConflictError, "RESOURCE_ALREADY_EXISTS", "Endpoint m exists"),
        (422, {"detail": [{"loc": ["body", "inputs"], "msg": "field required"}]},
         InvalidInputError, "INVALID_PARAMETER_VALUE", "field required"),
        (415, "Content type must be one of application/json, text/csv", InvalidInputError,
         "INVALID_PARAMETER_VALUE", "Content type must be one of"),
        (418, {"detail": "I am a teapot"}, RemoteError, "INTERNAL_ERROR", "I am a teapot"),
    ],
)
def test_error_answers_map_to_the_most_specific_error(server, transport, status, body, error_class, error_code, text):
    server.add(status, body)
    with pytest.raises(error_class) as caught:
        transport.request("GET", "/api/2.0/serving-endpoints/m")
    error = caught.value
    assert type(error) is error_class
    assert error.error_code == error_code
    assert error.status_code == status
    assert str(error).startswith(f"GET /api/2.0/serving-endpoints/m failed with HTTP {status} ({error_code}): ")
    assert text in str(error)
    assert len(server.requests) == 1


def test_a_long_text_body_is_cut_to_an_excerpt(server, transport):
    server.add(400, "x" * 5000)
    with pytest.raises(InvalidInputError) as caught:
        transport.request("GET", "/x")
    assert caught.value.body == "x" * 500
    assert len(str(caught.value)) < 700


def test_error_bodies_in_every_supported_style_are_parsed():
    assert parse_error_body('{"error_code": "BAD_REQUEST", "message": "no"}') == ("BAD_REQUEST", "no")
    assert parse_error_body('{"error": {"message": "slow", "type": "rate_limit"}}') == (None, "slow [rate_limit]")
    assert parse_error_body('{"error": "boom"}') == (None, "boom")
    assert parse_error_body('{"detail": "missing"}') == (None, "missing")
    assert parse_error_body("<html>oops</html>") == (None, None)
    assert parse_error_body('["not", "an", "object"]') == (None, None)


# --------------------------------------------------------------------------------------------------
# Credentials never leak
# --------------------------------------------------------------------------------------------------


def test_a_bearer_token_never_shows_in_errors_reprs_or_logs(server, caplog):
    token = "tok-3f9a7c1e5b2d4a6c8e0f"  # no well-known shape: only registration can mask it
    echo = {"message": f"the credential {token} is not valid"}
    server.add(503, echo).add(401, echo)
    caplog.set_level(logging.DEBUG, logger="deployflow.transport")

    with HttpTransport(server.url, settings=fast_settings(), headers={"Authorization": f"Bearer {token}"}) as transport:
        with pytest.raises(AuthenticationError) as caught:
            transport.request("POST", "/invocations", json={"inputs": [1]}, kind="predict")
        transport_repr = repr(transport)

    assert server.requests[0].headers["authorization"] == f"Bearer {token}"  # it was really sent
    error = caught.value
    assert "retrying" in caplog.text  # the retry was logged, with the echoed message
    assert "***" in str(error)
    for text in (str(error), repr(error), error.body or "", transport_repr, caplog.text):
        assert token not in text


def test_secrets_and_url_credentials_are_masked(server):
    api_code = "query-secret-91b2c3d4"
    password = "pw-7e6d5c4b3a"
    base = server.url.replace("http://", f"http://alice:{password}@")
    server.add(500, f"failed for code={api_code} (was {api_code})", times=2)
    with HttpTransport(base, settings=fast_settings(max_retries=1), secrets=[api_code]) as transport:
        assert password not in repr(transport)
        with pytest.raises(TransientError) as caught:
            transport.request("GET", "/x", params={"code": api_code})
    assert server.requests[0].headers["authorization"].startswith("Basic ")  # moved to basic auth
    assert api_code not in str(caught.value) and api_code not in (caught.value.body or "")


# --------------------------------------------------------------------------------------------------
# Bodies, streaming, concurrency, lifecycle
# --------------------------------------------------------------------------------------------------


def test_json_bodies_accept_numpy_and_send_nan_as_null(server, transport):
    server.add_json({"predictions": [0, 1]})
    payload = {"inputs": np.array([[1.5, np.nan], [3.0, 4.0]]), "n": np.int64(2)}
    transport.request("POST", "/invocations", json=payload, kind="predict")
    received = server.requests[0]
    assert received.headers["content-type"] == "application/json"
    assert received.json() == {"inputs": [[1.5, None], [3.0, 4.0]], "n": 2}


def test_unencodable_json_is_invalid_input():
    with pytest.raises(InvalidInputError, match="cannot be written as JSON"):
        encode_json({"x": object()})
    assert encode_json({"x": np.arange(6).reshape(2, 3)[:, ::2]}) == b'{"x":[[0,2],[3,5]]}'


def test_request_json_reads_nan_literals_and_rejects_non_json(server, transport):
    server.add(200, b'{"predictions": [NaN, 1.0]}', headers={"Content-Type": "application/json"})
    server.add(200, "<html>proxy login</html>")
    server.add(204)
    predictions = transport.request_json("POST", "/invocations", json={}, kind="predict")["predictions"]
    assert math.isnan(predictions[0]) and predictions[1] == 1.0
    with pytest.raises(RemoteError, match="not JSON"):
        transport.request_json("GET", "/version")
    assert transport.request_json("DELETE", "/x") is None


def test_streamed_lines_are_read_and_errors_still_parsed(server, transport):
    server.add(200, b'data: {"a": 1}\n\ndata: [DONE]\n', headers={"Content-Type": "text/event-stream"})
    server.add(400, {"error_code": "BAD_REQUEST", "message": "stream not supported"})
    response = transport.request("POST", "/invocations", json={"stream": True}, kind="predict", stream=True)
    assert [line for line in transport.iter_lines(response) if line] == [b'data: {"a": 1}', b"data: [DONE]"]
    with pytest.raises(InvalidInputError, match="stream not supported"):
        transport.request("POST", "/invocations", json={"stream": True}, kind="predict", stream=True)


@pytest.mark.parametrize("pool_maxsize", [12, 1])
def test_concurrent_requests_share_pooled_connections(server, pool_maxsize, caplog):
    threads, per_thread = 12, 10
    # Each answer takes 20 ms, so all threads have a request in flight at the same time.
    server.add(200, {"predictions": [1]}, delay=0.02, times=threads * per_thread)
    with make_transport(server, pool_maxsize=pool_maxsize) as transport:

        def work(_: int) -> list[object]:
            return [transport.request_json("POST", "/invocations", json={}, kind="predict") for _ in range(per_thread)]

        with ThreadPoolExecutor(threads) as pool:
            results = [item for batch in pool.map(work, range(threads)) for item in batch]

    assert results == [{"predictions": [1]}] * (threads * per_thread)
    received = server.requests
    assert len(received) == threads * per_thread and server.unscripted == 0
    connections = server.connections
    if pool_maxsize >= threads:
        assert connections <= threads  # kept alive and reused: one per thread, not one per request
    else:
        # A pool too small for the callers drops the connections it cannot keep: the setting applies.
        assert "Connection pool is full, discarding connection" in caplog.text


def test_concurrent_calls_retry_independently(server):
    # One transport (one tenacity controller) shared by threads that are all retrying at once.
    threads = 8
    server.add(503, headers={"Retry-After": "0.05"}, times=threads)
    server.add_json({"ok": True}, times=threads)
    with make_transport(server, max_retries=threads + 1) as transport, ThreadPoolExecutor(threads) as pool:
        results = list(pool.map(lambda _: transport.request_json("GET", "/ping"), range(threads)))
    assert results == [{"ok": True}] * threads
    assert len(server.requests) == 2 * threads and server.unscripted == 0


def test_a_closed_transport_refuses_requests(server):
    transport = make_transport(server)
    with transport:
        pass
    with pytest.raises(DeploymentError, match="closed"):
        transport.request("GET", "/ping")
    assert server.requests == []


def test_an_absolute_url_on_another_origin_is_refused(server, transport):
    with pytest.raises(InvalidInputError, match="another origin"):
        transport.request("GET", "http://example.invalid/steal")
    server.add_json({"ok": 1})
    assert transport.request_json("GET", f"{server.url}/ok") == {"ok": 1}


@pytest.mark.parametrize(
    "base_url", ["ftp://host/x", "not a url", "http://", "http://host:99999", "http://host/?token=1", "", None]
)
def test_an_invalid_base_url_is_invalid_input(base_url):
    with pytest.raises(InvalidInputError):
        HttpTransport(base_url, settings=fast_settings())


def test_repr_shows_the_base_url(server, transport):
    assert repr(transport) == f"HttpTransport('{server.url}', pool_maxsize=16)"


# --------------------------------------------------------------------------------------------------
# Settings
# --------------------------------------------------------------------------------------------------


def test_defaults_when_nothing_is_set():
    settings = HttpSettings.from_options({}, environ={})
    assert settings == HttpSettings()
    assert (settings.timeout, settings.predict_timeout, settings.total_timeout) == (300.0, 120.0, 600.0)
    assert (settings.predict_total_timeout, settings.connect_timeout) == (600.0, 10.0)
    assert settings.retry.max_retries == 5
    assert settings.retry.retry_statuses == frozenset({429, 500, 502, 503})
    assert settings.retry.retry_on_timeout is False


def test_environment_variables_are_read_with_mlflow_fallbacks():
    environ = {
        "MLFLOW_DEPLOYMENT_CLIENT_HTTP_REQUEST_TIMEOUT": "11",
        "MLFLOW_DEPLOYMENT_PREDICT_TIMEOUT": "12",
        "DEPLOYFLOW_PREDICT_TIMEOUT": "13",  # ours beats MLflow's
        "MLFLOW_DEPLOYMENT_PREDICT_TOTAL_TIMEOUT": "14",
        "DEPLOYFLOW_HTTP_TOTAL_TIMEOUT": "15",
        "DEPLOYFLOW_CONNECT_TIMEOUT": "1.5",
        "DEPLOYFLOW_MAX_RETRIES": "2",
        "DEPLOYFLOW_BACKOFF_FACTOR": "0.25",
        "DEPLOYFLOW_BACKOFF_MAX": "4",
        "DEPLOYFLOW_RETRY_ON_TIMEOUT": "true",
        "DEPLOYFLOW_HTTP_POOL_MAXSIZE": "32",
    }
    settings = HttpSettings.from_options({}, environ=environ)
    assert settings.timeout == 11.0
    assert settings.predict_timeout == 13.0
    assert settings.predict_total_timeout == 14.0
    assert settings.total_timeout == 15.0
    assert settings.connect_timeout == 1.5
    assert settings.pool_maxsize == 32
    assert settings.retry == RetryPolicy(max_retries=2, backoff_factor=0.25, backoff_max=4.0, retry_on_timeout=True)


def test_options_beat_environment_variables():
    environ = {"DEPLOYFLOW_HTTP_TIMEOUT": "50", "DEPLOYFLOW_MAX_RETRIES": "9", "DEPLOYFLOW_RETRY_ON_TIMEOUT": "1"}
    options = {"timeout": 7, "max_retries": "0", "retry_on_timeout": False, "predict_timeout": None, "verify": "false"}
    settings = HttpSettings.from_options(options, environ=environ)
    assert settings.timeout == 7.0
    assert settings.retry.max_retries == 0
    assert settings.retry.retry_on_timeout is False
    assert settings.predict_timeout == 120.0  # None counts as not given
    assert settings.verify is False


def test_the_process_environment_is_the_default(monkeypatch):
    monkeypatch.setenv("DEPLOYFLOW_CONNECT_TIMEOUT", "3")
    assert HttpSettings.from_options({}).connect_timeout == 3.0


@pytest.mark.parametrize(
    ("options", "environ", "named"),
    [
        ({"timeout": "-1"}, {}, "option 'timeout'"),
        ({"timeout": "soon"}, {}, "option 'timeout'"),
        ({"timeout": True}, {}, "option 'timeout'"),
        ({"predict_timeout": 0}, {}, "option 'predict_timeout'"),
        ({"max_retries": 1.5}, {}, "option 'max_retries'"),
        ({"max_retries": -1}, {}, "option 'max_retries'"),
        ({"backoff_factor": "nan"}, {}, "option 'backoff_factor'"),
        ({"retry_on_timeout": "maybe"}, {}, "option 'retry_on_timeout'"),
        ({"pool_maxsize": 0}, {}, "option 'pool_maxsize'"),
        ({"verify": "/no/such/ca-bundle.pem"}, {}, "option 'verify'"),
        ({}, {"DEPLOYFLOW_HTTP_TIMEOUT": "soon"}, "DEPLOYFLOW_HTTP_TIMEOUT"),
        ({}, {"MLFLOW_DEPLOYMENT_PREDICT_TIMEOUT": "-5"}, "MLFLOW_DEPLOYMENT_PREDICT_TIMEOUT"),
        ({}, {"DEPLOYFLOW_MAX_RETRIES": "many"}, "DEPLOYFLOW_MAX_RETRIES"),
        ({}, {"DEPLOYFLOW_BACKOFF_MAX": "-2"}, "DEPLOYFLOW_BACKOFF_MAX"),
    ],
)
def test_bad_values_are_invalid_input_naming_their_source(options, environ, named):
    with pytest.raises(InvalidInputError) as caught:
        HttpSettings.from_options(options, environ=environ)
    assert named in str(caught.value)


def test_options_split_into_http_settings_and_the_rest():
    http, rest = HttpSettings.split_options({"timeout": 1, "max_retries": 2, "token": "x", "region": "eu"})
    assert http == {"timeout": 1, "max_retries": 2}
    assert rest == {"token": "x", "region": "eu"}
    assert {"timeout", "predict_timeout", "total_timeout", "predict_total_timeout", "connect_timeout", "max_retries",
            "backoff_factor", "backoff_max", "retry_on_timeout", "verify", "pool_maxsize"} <= HttpSettings.OPTION_NAMES


def test_settings_are_immutable_with_a_readable_repr():
    settings = HttpSettings()
    with pytest.raises(dataclasses.FrozenInstanceError):
        settings.timeout = 1  # type: ignore[misc]
    text = repr(settings)
    assert text.startswith("HttpSettings(timeout=300.0, connect_timeout=10.0,")
    assert "RetryPolicy(max_retries=5," in text
    assert "retry_statuses=frozenset({429, 500, 502, 503})" in text
    assert dataclasses.replace(settings, timeout=5).timeout == 5.0


def test_a_policy_cannot_call_client_errors_transient():
    with pytest.raises(InvalidInputError, match="retry_statuses"):
        RetryPolicy(retry_statuses=frozenset({400, 503}))
    with pytest.raises(InvalidInputError, match="jitter"):
        RetryPolicy(jitter=1.5)


def test_backoff_grows_exponentially_up_to_its_cap():
    policy = RetryPolicy(backoff_factor=1.0, backoff_max=5.0, jitter=0.0)
    assert [policy.backoff(n) for n in (1, 2, 3, 4, 500)] == [1.0, 2.0, 4.0, 5.0, 5.0]
    jittered = RetryPolicy(backoff_factor=1.0, backoff_max=5.0, jitter=0.5)
    samples = [jittered.backoff(2) for _ in range(200)]
    assert all(1.0 <= sample <= 2.0 for sample in samples)
    assert len(set(samples)) > 1


def test_retry_after_accepts_seconds_and_http_dates():
    now = 1_700_000_000.0
    assert parse_retry_after("2", now=now) == 2.0
    assert parse_retry_after(" 0.5 ", now=now) == 0.5
    assert parse_retry_after(email.utils.formatdate(now + 30, usegmt=True), now=now) == pytest.approx(30.0)
    assert parse_retry_after(email.utils.formatdate(now - 30, usegmt=True), now=now) == 0.0
    for unusable in (None, "", "soon", "nan", "inf"):
        assert parse_retry_after(unusable, now=now) is None


def test_the_request_kind_is_checked(transport):
    with pytest.raises(InvalidInputError, match="kind"):
        transport.request("GET", "/ping", kind="bulk")  # type: ignore[arg-type]


def test_the_scripted_server_counts_unscripted_requests(server, transport):
    # The helper itself: an unexpected extra request must be visible to tests.
    with pytest.raises(RemoteError):
        transport.request("GET", "/nothing-queued")
    assert server.unscripted == 1


def test_retry_non_idempotent_comes_from_options_and_environment():
    assert HttpSettings.from_options({"retry_non_idempotent": "true"}, environ={}).retry.retry_non_idempotent
    environ = {"DEPLOYFLOW_RETRY_NON_IDEMPOTENT": "1"}
    assert HttpSettings.from_options({}, environ=environ).retry.retry_non_idempotent
    assert not HttpSettings.from_options({}, environ={}).retry.retry_non_idempotent
