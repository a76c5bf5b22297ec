"""The local target's scoring server, over real HTTP on 127.0.0.1, checked against MLflow's protocol.

One server process (started once for the module) serves :func:`support.models.describe`, which answers
with what it received, so each row of the table below shows how a request was decoded or refused. The
server has a bearer token, a 4 KiB body limit and a 1 s time limit, so those rules are tested too.
"""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
from typing import Any

import pytest
import requests

import deployflow
from support.models import ServerProcess, fitted_logistic_regression, write_pickle

TOKEN = "protocol-test-token-0123456789"
LIMIT = 4096
TIME_LIMIT = 1.0
AUTH = {"Authorization": f"Bearer {TOKEN}"}

SPLIT = {"dataframe_split": {"columns": ["a", "b"], "data": [[1, 2], [3, 4]]}}
SPLIT_BODY = json.dumps(SPLIT)
CSV_BODY = "a,b\n1,2\n3,4\n"
FRAME = {"type": "DataFrame", "data": {"columns": ["a", "b"], "values": [[1, 2], [3, 4]]}, "params": None}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Any:
    directory = tmp_path_factory.mktemp("protocol")
    spec = {
        "model_uri": "python:support.models:describe",
        "max_request_bytes": LIMIT,
        "request_timeout": TIME_LIMIT,
    }
    with ServerProcess(directory, spec, token=TOKEN) as process:
        process.wait_ready()
        yield process


@pytest.fixture(scope="module")
def session() -> Any:
    with requests.Session() as http:
        http.headers.update(AUTH)
        yield http


def post(session: requests.Session, server: ServerProcess, body: Any, content_type: str | None) -> requests.Response:
    headers = {"Content-Type": content_type} if content_type is not None else {}
    data = body.encode("utf-8") if isinstance(body, str) else body
    return session.post(server.url + "/invocations", data=data, headers=headers, timeout=10)


# ---------------------------------------------------------------------------------------------------------
# Content types


@pytest.mark.parametrize(
    "content_type, body",
    [
        ("application/json", SPLIT_BODY),
        ("application/json; charset=utf-8", SPLIT_BODY),
        ("application/json; charset=UTF-8", SPLIT_BODY),
        ("application/json;charset=utf-8", SPLIT_BODY),
        ("text/csv", CSV_BODY),
        ("text/csv; charset=utf-8", CSV_BODY),
    ],
)
def test_accepted_content_types(session, server, content_type, body):
    response = post(session, server, body, content_type)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/json"
    assert response.json() == {"predictions": FRAME}


@pytest.mark.parametrize(
    "content_type, words",
    [
        ("application/json; charset=latin-1", "UTF-8"),
        ("text/csv; charset=utf-16", "UTF-8"),
        ("application/json; format=pandas-split", "format"),
        ("application/json; charset=utf-8; orient=records", "orient"),
        ("text/plain", "text/plain"),
        ("application/xml", "application/xml"),
        (None, "Content-Type"),
    ],
)
def test_refused_content_types_are_415_plain_text(session, server, content_type, words):
    response = post(session, server, SPLIT_BODY, content_type)
    assert response.status_code == 415
    assert response.headers["content-type"].startswith("text/plain")
    assert words in response.text


# ---------------------------------------------------------------------------------------------------------
# Input forms and params


@pytest.mark.parametrize(
    "payload, expected",
    [
        (SPLIT, FRAME),
        (
            {"dataframe_split": {"columns": ["a"], "data": [[1.5], [2.5]], "index": [7, 8]}},
            {"type": "DataFrame", "data": {"columns": ["a"], "values": [[1.5], [2.5]]}, "params": None},
        ),
        (
            {"dataframe_records": [{"a": 1, "b": 2}, {"a": 3, "b": 4}]},
            FRAME,
        ),
        ({"instances": [[1, 2], [3, 4]]}, {"type": "ndarray", "data": [[1, 2], [3, 4]], "params": None}),
        (
            {"instances": [{"x": 1, "y": "u"}, {"x": 2, "y": "v"}]},
            {"type": "dict", "data": {"x": [1, 2], "y": ["u", "v"]}, "params": None},
        ),
        ({"inputs": [[1.0, 2.0]]}, {"type": "ndarray", "data": [[1.0, 2.0]], "params": None}),
        (
            {"inputs": {"x": [1, 2], "y": [3, 4]}},
            {"type": "dict", "data": {"x": [1, 2], "y": [3, 4]}, "params": None},
        ),
        (
            {"inputs": [1, 2], "params": {"temperature": 0.5, "tags": ["a"]}},
            {"type": "ndarray", "data": [1, 2], "params": {"temperature": 0.5, "tags": ["a"]}},
        ),
        (
            {"params": {"k": 1}, "dataframe_split": {"columns": ["a", "b"], "data": [[1, 2], [3, 4]]}},
            {**FRAME, "params": {"k": 1}},
        ),
    ],
    ids=["split", "split-index", "records", "instances", "instances-named", "inputs", "inputs-named",
         "params", "params-first"],
)
def test_input_forms(session, server, payload, expected):
    response = post(session, server, json.dumps(payload), "application/json")
    assert response.status_code == 200, response.text
    assert response.json() == {"predictions": expected}


# NaN and the infinities, as MLflow's server (Python's json) reads and writes them
NON_FINITE_BODY = '{"dataframe_split": {"columns": ["a", "b"], "data": [[NaN, 1], [Infinity, -Infinity]]}}'
NON_FINITE_ANSWER = (
    b'{"predictions":{"type":"DataFrame","data":{"columns":["a","b"],'
    b'"values":[[NaN,1.0],[Infinity,-Infinity]]},"params":null}}'
)


@pytest.mark.parametrize(
    "body",
    [
        NON_FINITE_BODY,
        '{"dataframe_records": [{"a": NaN, "b": 1}, {"a": Infinity, "b": -Infinity}]}',
    ],
    ids=["split", "records"],
)
def test_non_finite_numbers_are_read_and_written_back_as_mlflow_does(session, server, body):
    response = post(session, server, body, "application/json")
    assert response.status_code == 200, response.text
    assert response.content == NON_FINITE_ANSWER


def test_both_http_edges_read_non_finite_answers(server):
    import math

    from deployflow.aio import AsyncHttpTransport
    from deployflow.transport import HttpTransport

    request = {"data": NON_FINITE_BODY.encode(), "headers": {"Content-Type": "application/json", **AUTH},
               "kind": "predict"}

    def check(answer: Any) -> None:
        [[nan, one], [inf, minus_inf]] = answer["predictions"]["data"]["values"]
        assert math.isnan(nan) and (one, inf, minus_inf) == (1.0, math.inf, -math.inf)

    with HttpTransport(server.url) as transport:
        check(transport.request_json("POST", "/invocations", **request))

    async def scenario() -> Any:
        async with AsyncHttpTransport(server.url) as transport:
            return await transport.request_json("POST", "/invocations", **request)

    check(asyncio.run(scenario()))


# ---------------------------------------------------------------------------------------------------------
# Malformed requests: 400 BAD_REQUEST as JSON


@pytest.mark.parametrize(
    "body, content_type",
    [
        ('{"inputs": [1, 2]', "application/json"),
        ("not json at all", "application/json"),
        ("", "application/json"),
        ("[1, 2, 3]", "application/json"),
        ("3", "application/json"),
        ('"text"', "application/json"),
        ("null", "application/json"),
        ("{}", "application/json"),
        ('{"params": {"k": 1}}', "application/json"),
        ('{"data": [[1, 2]]}', "application/json"),
        ('{"inputs": [1], "instances": [1]}', "application/json"),
        ('{"dataframe_split": {"data": [[1]]}, "dataframe_records": [{"a": 1}]}', "application/json"),
        ('{"dataframe_split": [[1, 2]]}', "application/json"),
        ('{"dataframe_split": "a,b"}', "application/json"),
        ('{"dataframe_records": {"a": 1}}', "application/json"),
        ('{"dataframe_records": 5}', "application/json"),
        ('{"inputs": [1], "params": [1, 2]}', "application/json"),
        ("", "text/csv"),
        (b"a,b\n\xff\xfe,1\n", "text/csv"),
    ],
    ids=["truncated", "garbage", "empty", "list", "number", "string", "null", "zero-keys", "params-only",
         "unknown-key", "two-keys", "two-frame-keys", "split-is-list", "split-is-string", "records-is-object",
         "records-is-number", "params-not-object", "empty-csv", "csv-not-utf8"],
)
def test_malformed_requests_are_400_bad_request(session, server, body, content_type):
    response = post(session, server, body, content_type)
    assert response.status_code == 400, response.text
    assert response.headers["content-type"] == "application/json"
    error = response.json()
    assert error["error_code"] == "BAD_REQUEST"
    assert error["message"]


# ---------------------------------------------------------------------------------------------------------
# The model misbehaving


def test_model_exception_is_400_bad_request_like_mlflow(session, server):
    response = post(session, server, json.dumps({"inputs": [1], "params": {"raise": "no such feature f9"}}),
                    "application/json")
    assert response.status_code == 400
    error = response.json()
    assert error["error_code"] == "BAD_REQUEST"
    assert "evaluating the model" in error["message"]
    assert "ValueError: no such feature f9" in error["message"]


def test_unencodable_predictions_are_500(session, server):
    response = post(session, server, json.dumps({"inputs": [1], "params": {"unencodable": True}}), "application/json")
    assert response.status_code == 500
    error = response.json()
    assert error["error_code"] == "INTERNAL_ERROR"
    assert "cannot be written as JSON" in error["message"]


def test_slow_model_is_504_and_the_server_keeps_serving(session, server):
    slow = json.dumps({"inputs": [1], "params": {"sleep": TIME_LIMIT + 0.5}})
    response = post(session, server, slow, "application/json")
    assert response.status_code == 504
    assert response.headers["content-type"] == "application/json"
    assert response.json()["error_code"] == "DEADLINE_EXCEEDED"
    # The overrunning call still occupies a thread; other requests are served meanwhile.
    assert session.get(server.url + "/ping", timeout=5).status_code == 200
    assert post(session, server, SPLIT_BODY, "application/json").status_code == 200


def test_ping_answers_while_a_model_call_runs(session, server, tmp_path):
    started = tmp_path / "started"
    slow = json.dumps({"inputs": [1], "params": {"touch": str(started), "sleep": 0.8}})
    result: dict[str, Any] = {}
    worker = threading.Thread(target=lambda: result.update(r=post(session, server, slow, "application/json")))
    worker.start()
    try:
        deadline = time.monotonic() + 10
        while not started.exists():
            assert time.monotonic() < deadline
            time.sleep(0.01)
        ping = requests.get(server.url + "/ping", timeout=5)
        # Answered while the model call still runs: the call does not hold the event loop.
        assert ping.status_code == 200
        assert worker.is_alive()
    finally:
        worker.join()
    assert result["r"].status_code == 200


# ---------------------------------------------------------------------------------------------------------
# Other paths


@pytest.mark.parametrize("path", ["/ping", "/health"])
def test_health_paths_answer_newline_without_token(server, path):
    response = requests.get(server.url + path, timeout=5)
    assert response.status_code == 200
    assert response.text == "\n"


def test_version_is_the_deployflow_version(session, server):
    response = session.get(server.url + "/version", timeout=5)
    assert response.status_code == 200
    assert response.text == deployflow.__version__


def test_unknown_path_is_404_json(session, server):
    response = session.get(server.url + "/nothing-here", timeout=5)
    assert response.status_code == 404
    assert response.json()["error_code"] == "ENDPOINT_NOT_FOUND"
    assert session.post(server.url + "/invocation", data=SPLIT_BODY, timeout=5).status_code == 404


@pytest.mark.parametrize("method, path, allowed", [("GET", "/invocations", "POST"), ("POST", "/ping", "GET"),
                                                   ("DELETE", "/version", "GET")])
def test_wrong_method_is_405(session, server, method, path, allowed):
    response = session.request(method, server.url + path, timeout=5)
    assert response.status_code == 405
    assert response.headers["allow"] == allowed
    assert response.json() == {"error_code": "BAD_REQUEST", "message": f"{path} does not accept {method}; use {allowed}"}


# ---------------------------------------------------------------------------------------------------------
# Bearer token


@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Bearer wrong-token"}, {"Authorization": TOKEN}, {"Authorization": f"Basic {TOKEN}"},
     {"Authorization": f"Bearer {TOKEN}x"}, {"Authorization": f"Bearer {TOKEN[:-1]}"}, {"Authorization": "Bearer "}],
    ids=["missing", "wrong", "no-scheme", "basic", "longer", "shorter", "empty"],
)
@pytest.mark.parametrize("method, path", [("POST", "/invocations"), ("GET", "/version")])
def test_token_is_required(server, headers, method, path):
    response = requests.request(
        method, server.url + path, data=SPLIT_BODY, timeout=5,
        headers={"Content-Type": "application/json", **headers},
    )
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"
    error = response.json()
    assert error["error_code"] == "UNAUTHENTICATED"
    assert TOKEN not in response.text


@pytest.mark.parametrize("scheme", ["Bearer", "bearer", "BEARER"])
def test_right_token_is_accepted(server, scheme):
    response = requests.post(server.url + "/invocations", data=SPLIT_BODY, timeout=5,
                             headers={"Content-Type": "application/json", "Authorization": f"{scheme} {TOKEN}"})
    assert response.status_code == 200
    assert TOKEN not in server.log()


# ---------------------------------------------------------------------------------------------------------
# Body size limit


def padded(size: int) -> bytes:
    """A valid JSON request of exactly ``size`` bytes."""
    core = b'{"inputs": [1]}'
    return core[:-1] + b" " * (size - len(core)) + b"}"


def test_body_at_the_limit_is_accepted(session, server):
    assert post(session, server, padded(LIMIT), "application/json").status_code == 200


def test_body_over_the_limit_with_content_length_is_413(session, server):
    response = post(session, server, padded(LIMIT + 1), "application/json")
    assert response.status_code == 413
    assert response.json()["error_code"] == "RESOURCE_LIMIT_EXCEEDED"


def test_huge_declared_length_is_refused_before_reading(server):
    # Declare 1 GiB and send nothing: the answer must come from the header alone.
    host, port = server.ready["host"], server.ready["port"]
    with socket.create_connection((host, port), timeout=5) as connection:
        connection.sendall(
            b"POST /invocations HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            + f"Authorization: Bearer {TOKEN}\r\nContent-Length: {2**30}\r\n\r\n".encode()
        )
        answer = read_response(connection)
    assert answer.startswith(b"HTTP/1.1 413 ")
    assert b"RESOURCE_LIMIT_EXCEEDED" in answer


def chunked_request(body: bytes, chunk: int = 500, finish: bool = True) -> bytes:
    head = (
        "POST /invocations HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        f"Authorization: Bearer {TOKEN}\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
    ).encode()
    pieces = [head]
    for start in range(0, len(body), chunk):
        part = body[start : start + chunk]
        pieces.append(b"%x\r\n" % len(part) + part + b"\r\n")
    if finish:
        pieces.append(b"0\r\n\r\n")
    return b"".join(pieces)


def read_response(connection: socket.socket) -> bytes:
    received = b""
    while True:
        try:
            data = connection.recv(65536)
        except ConnectionResetError:
            break
        if not data:
            break
        received += data
    return received


@pytest.mark.parametrize("size, status", [(LIMIT - 10, b"200"), (LIMIT + 1, b"413"), (LIMIT * 3, b"413")])
def test_chunked_bodies_are_counted(server, size, status):
    host, port = server.ready["host"], server.ready["port"]
    with socket.create_connection((host, port), timeout=5) as connection:
        connection.sendall(chunked_request(padded(size)))
        answer = read_response(connection)
    assert answer.startswith(b"HTTP/1.1 " + status), answer[:200]


def test_chunked_body_is_refused_while_it_streams(server):
    # The body never ends: only counting while reading can answer before the client finishes.
    host, port = server.ready["host"], server.ready["port"]
    with socket.create_connection((host, port), timeout=5) as connection:
        connection.sendall(chunked_request(padded(LIMIT * 2), finish=False))
        answer = read_response(connection)
    assert answer.startswith(b"HTTP/1.1 413 "), answer[:200]
    assert b"connection: close" in answer.lower()


# ---------------------------------------------------------------------------------------------------------
# A real sklearn model behind a pickle, without a token or a time limit


@pytest.fixture(scope="module")
def sklearn_server(tmp_path_factory: pytest.TempPathFactory) -> Any:
    directory = tmp_path_factory.mktemp("sklearn")
    model = fitted_logistic_regression(n_features=4)
    path = write_pickle(model, directory / "model.pkl")
    with ServerProcess(directory, {"model_uri": str(path), "request_timeout": None}) as process:
        process.wait_ready()
        yield process, model


def test_sklearn_pickle_gets_a_dataframe_with_feature_names(sklearn_server):
    import numpy as np
    import pandas as pd

    process, model = sklearn_server
    rows = np.random.default_rng(1).normal(size=(10, 4)).round(6).tolist()
    columns = [f"f{i}" for i in range(4)]
    response = requests.post(
        process.url + "/invocations",
        json={"dataframe_split": {"columns": columns, "data": rows}},
        timeout=5,
    )
    assert response.status_code == 200, response.text
    expected = model.predict(pd.DataFrame(rows, columns=columns)).tolist()
    assert response.json() == {"predictions": expected}
    assert process.ready["flavor"] == "pickle"
    # A DataFrame with the fitted feature names: sklearn has nothing to warn about.
    assert "feature names" not in process.log()
    # No token configured: /version is open.
    assert requests.get(process.url + "/version", timeout=5).status_code == 200


def test_sklearn_csv_and_wrong_columns(sklearn_server):
    process, _ = sklearn_server
    csv = "f0,f1,f2,f3\n0.1,0.2,0.3,0.4\n"
    response = requests.post(process.url + "/invocations", data=csv, headers={"Content-Type": "text/csv"}, timeout=5)
    assert response.status_code == 200
    assert len(response.json()["predictions"]) == 1
    # Missing features: sklearn raises, the server answers 400 like MLflow.
    response = requests.post(process.url + "/invocations", json={"dataframe_split": {"columns": ["x"], "data": [[1]]}},
                             timeout=5)
    assert response.status_code == 400
    assert response.json()["error_code"] == "BAD_REQUEST"


# ---------------------------------------------------------------------------------------------------------
# The model threads behind the time limit (in-process: the pool's bookkeeping is not visible over HTTP)


def model_threads_alive() -> int:
    return sum(1 for thread in threading.enumerate() if thread.name.startswith("deployflow-model-"))


def test_a_stuck_call_gets_a_spare_thread_that_retires_afterwards():
    from deployflow.targets.local.server import _Expired, _ModelThreads

    release = threading.Event()

    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        before = model_threads_alive()
        pool = _ModelThreads(loop, 1, spare_limit=1)
        stuck = pool.submit(release.wait, 10)
        while not stuck.running:
            await asyncio.sleep(0.005)
        pool.expire(stuck)
        with pytest.raises(_Expired):
            await stuck.future
        # The queue keeps moving on the spare while the first thread is stuck.
        assert await asyncio.wait_for(pool.submit(lambda: 42).future, 2) == 42
        assert model_threads_alive() == before + 2
        # A second stuck call finds no spare left (limit 1): the next job waits for a thread to free up.
        second = pool.submit(release.wait, 10)
        while not second.running:
            await asyncio.sleep(0.005)
        pool.expire(second)
        with pytest.raises(_Expired):
            await second.future
        queued = pool.submit(lambda: "late")
        await asyncio.sleep(0.1)
        assert not queued.future.done()
        release.set()
        assert await asyncio.wait_for(queued.future, 2) == "late"
        deadline = loop.time() + 2
        while model_threads_alive() > before + 1 and loop.time() < deadline:
            await asyncio.sleep(0.01)
        assert model_threads_alive() == before + 1  # back to the pool's size

    asyncio.run(scenario())


def test_a_job_expired_while_queued_never_runs():
    from deployflow.targets.local.server import _Expired, _ModelThreads

    release = threading.Event()
    ran: list[str] = []

    async def scenario() -> None:
        pool = _ModelThreads(asyncio.get_running_loop(), 1)
        busy = pool.submit(release.wait, 10)
        queued = pool.submit(ran.append, "ran")
        pool.expire(queued)
        with pytest.raises(_Expired):
            await queued.future
        release.set()
        await busy.future
        assert await pool.submit(lambda: "next").future == "next"

    asyncio.run(scenario())
    assert ran == []
