"""Issue 15 item 3, bounded under overload, against real server and router processes on 127.0.0.1: a
full queue answers 503 with Retry-After at once; slow headers, a stalled body and an idle connection
are closed; queued bodies are bounded in bytes; the router applies the server's size rule up front;
a flood of slow, large uploads leaves memory bounded and normal requests answered."""

from __future__ import annotations

import json
import socket
import threading
import time

import psutil
import pytest
import requests

from support.metrics import scrape, value
from support.models import ServerProcess

SLOW_MODEL = (
    "import time\n"
    "def predict(data, params=None):\n"
    "    time.sleep(float((params or {}).get('sleep', 0)))\n"
    "    return [1] * len(data)\n"
)
SHORT = {"header_timeout": 0.5, "body_timeout": 0.5, "keepalive_timeout": 0.5}


@pytest.fixture()
def model_uri(tmp_path):
    path = tmp_path / "slow_model.py"
    path.write_text(SLOW_MODEL)
    return f"python:{path}:predict"


def post(url: str, sleep: float = 0.0, **kwargs):
    return requests.post(url + "/invocations", json={"inputs": [[1.0]], "params": {"sleep": sleep}}, timeout=30,
                         **kwargs)


def connect(url: str) -> socket.socket:
    host, port = url.removeprefix("http://").rsplit(":", 1)
    return socket.create_connection((host, int(port)), timeout=10)


def closed_by_server(sock: socket.socket, within: float) -> bool:
    """Whether the server closes ``sock`` (read returns EOF or a reset) within ``within`` seconds."""
    sock.settimeout(within)
    try:
        while True:
            data = sock.recv(65536)
            if not data:
                return True
    except ConnectionResetError:
        return True
    except socket.timeout:
        return False
    finally:
        sock.close()


def test_a_full_queue_answers_503_with_retry_after_and_never_hangs(tmp_path, model_uri):
    with ServerProcess(tmp_path / "s", {"model_uri": model_uri, "max_queue": 2}) as server:
        server.wait_ready(timeout=60)
        busy = [threading.Thread(target=post, args=(server.url, 2.0)) for _ in range(2)]
        for thread in busy:
            thread.start()
        time.sleep(0.5)  # both admitted: one in the model, one queued behind it
        refused = post(server.url)
        assert refused.status_code == 503
        assert refused.headers["retry-after"] == "1"
        assert refused.json()["error_code"] == "TEMPORARILY_UNAVAILABLE"
        assert "max_queue" in refused.json()["message"]
        for thread in busy:
            thread.join()
        assert post(server.url).status_code == 200  # the queue drained: admitted again


LOGGING_MODEL = (
    "import time\n"
    "def predict(data, params):\n"
    "    with open(params['log'], 'a') as log:\n"
    "        log.write(params['tag'] + '\\n')\n"
    "    time.sleep(float(params['sleep']))\n"
    "    return [1] * len(data)\n"
)


def _until_in_flight(server_url: str, count: int) -> None:
    deadline = time.monotonic() + 20
    while value(scrape(server_url)["deployflow_requests_in_flight"]) != count:
        assert time.monotonic() < deadline, f"the server never had {count} requests in flight"
        time.sleep(0.05)


def _leave_while_queued(url: str, server_url: str, log) -> None:
    """A slow request takes the one model thread of the server at ``server_url``; two more are sent to
    ``url`` on raw sockets, queue behind it (the queue of 3 is full: a fourth gets 503), and their
    clients leave. They must never run, and their places must be free at once."""

    def body(tag: str, sleep: float) -> bytes:
        return json.dumps({"inputs": [[1.0]], "params": {"tag": tag, "sleep": sleep, "log": str(log)}}).encode()

    def post_json(data: bytes):
        return requests.post(url + "/invocations", data=data, headers={"Content-Type": "application/json"}, timeout=30)

    first = threading.Thread(target=post_json, args=(body("first", 3.0),))
    first.start()
    _until_in_flight(server_url, 1)
    leaving = []
    for tag in ("left-1", "left-2"):
        sock = connect(url)
        payload = body(tag, 0)
        sock.sendall(b"POST /invocations HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     + f"Content-Length: {len(payload)}\r\n\r\n".encode() + payload)
        leaving.append(sock)
    _until_in_flight(server_url, 3)
    assert post_json(body("refused", 0)).status_code == 503
    for sock in leaving:
        sock.close()
    _until_in_flight(server_url, 1)  # their places are free again, long before the first request ends
    assert post_json(body("after", 0)).status_code == 200
    first.join()
    assert log.read_text().split() == ["first", "after"]  # the two that left never ran
    answered = scrape(server_url)["deployflow_requests"]
    assert {s.labels["status"]: s.value for s in answered if s.labels["path"] == "/invocations"} == {
        "200": 2.0, "499": 2.0, "503": 1.0}


def test_a_queued_request_whose_client_left_is_never_run_and_frees_its_place(tmp_path):
    (tmp_path / "logging_model.py").write_text(LOGGING_MODEL)
    config = {"model_uri": f"python:{tmp_path / 'logging_model.py'}:predict", "max_queue": 3}
    with ServerProcess(tmp_path / "s", config) as server:
        server.wait_ready(timeout=60)
        _leave_while_queued(server.url, server.url, tmp_path / "calls.log")


def test_a_client_that_leaves_the_router_leaves_the_deployment_too(tmp_path):
    from deployflow import get_deploy_client

    (tmp_path / "logging_model.py").write_text(LOGGING_MODEL)
    client = get_deploy_client(f"local://{tmp_path / 'home'}")
    client.create_deployment("logged", f"python:{tmp_path / 'logging_model.py'}:predict", config={"max_queue": 3})
    try:
        client.create_endpoint("front", {"routes": [{"deployment": "logged", "traffic": 100}]})
        try:
            _leave_while_queued(client.get_endpoint("front")["url"], client.get_deployment("logged")["url"],
                                tmp_path / "calls.log")
        finally:
            client.delete_endpoint("front")
    finally:
        client.delete_deployment("logged")


def test_queued_body_bytes_are_bounded(tmp_path, model_uri):
    spec = {"model_uri": model_uri, "max_request_bytes": 4000, "max_queued_bytes": 4000}
    with ServerProcess(tmp_path / "s", spec) as server:
        server.wait_ready(timeout=60)
        big = json.dumps({"inputs": [[1.0]] * 300, "params": {"sleep": 2.0}})  # ~2.5 KB
        holder = threading.Thread(target=requests.post, args=(server.url + "/invocations",),
                                  kwargs={"data": big, "headers": {"Content-Type": "application/json"}, "timeout": 30})
        holder.start()
        time.sleep(0.5)
        refused = requests.post(server.url + "/invocations", data=big, headers={"Content-Type": "application/json"},
                                timeout=30)
        assert refused.status_code == 503 and "max_queued_bytes" in refused.json()["message"]
        assert refused.headers["retry-after"] == "1"
        holder.join()
        assert post(server.url).status_code == 200


@pytest.mark.parametrize("partial", [b"", b"POST /invocations HTTP/1.1\r\nHost: x\r\nContent-", None],
                         ids=["idle", "slow-headers", "stalled-body"])
def test_slow_clients_are_disconnected(tmp_path, model_uri, partial):
    with ServerProcess(tmp_path / "s", {"model_uri": model_uri, **SHORT}) as server:
        server.wait_ready(timeout=60)
        sock = connect(server.url)
        if partial is None:  # Content-Length 1000, 9 bytes sent
            sock.sendall(b"POST /invocations HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                         b"Content-Length: 1000\r\n\r\n{\"inputs\"")
        else:
            sock.sendall(partial)
        assert closed_by_server(sock, within=10.0)
        assert post(server.url).status_code == 200  # and the server still serves


def test_a_kept_alive_connection_still_serves_many_requests(tmp_path, model_uri):
    with ServerProcess(tmp_path / "s", {"model_uri": model_uri, **SHORT}) as server:
        server.wait_ready(timeout=60)
        with requests.Session() as session:
            for _ in range(20):
                answer = session.post(server.url + "/invocations", json={"inputs": [[1.0]]}, timeout=30)
                assert answer.status_code == 200


def test_a_flood_of_slow_large_uploads_leaves_memory_bounded(tmp_path, model_uri):
    limit = 8 * 1024 * 1024
    # Room for one large body and small requests beside it.
    spec = {"model_uri": model_uri, "max_request_bytes": limit, "max_queued_bytes": limit + 1024 * 1024, "max_queue": 4,
            "body_timeout": 5.0, "limit_concurrency": 100}
    with ServerProcess(tmp_path / "s", spec) as server:
        server.wait_ready(timeout=60)
        process = psutil.Process(server.process.pid)
        baseline = process.memory_info().rss
        chunk = b"[" + b"1.0," * 16383 + b"1.0]"  # 64 KiB of a JSON array
        floods = []
        for _ in range(40):  # each declares 8 MiB and sends it slowly
            sock = connect(server.url)
            sock.sendall(b"POST /invocations HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                         + f"Content-Length: {limit}\r\n\r\n".encode())
            floods.append(sock)
        peak = 0
        for _ in range(8):
            for sock in floods:
                try:
                    sock.send(chunk)
                except OSError:
                    pass
            peak = max(peak, process.memory_info().rss)
            assert post(server.url).status_code == 200  # a normal request is still served
            time.sleep(0.1)
        # 40 uploads of 8 MiB would be 320 MiB held; the bounds keep it to one queued body plus
        # uvicorn's 64 KiB per connection (and the socket buffers, which are the kernel's).
        assert peak - baseline < 64 * 1024 * 1024, (baseline, peak)
        for sock in floods:
            sock.close()
        deadline = time.monotonic() + 30
        while post(server.url).status_code != 200:
            assert time.monotonic() < deadline
            time.sleep(0.2)


def test_past_limit_concurrency_connections_get_503(tmp_path, model_uri):
    with ServerProcess(tmp_path / "s", {"model_uri": model_uri, "limit_concurrency": 2}) as server:
        server.wait_ready(timeout=60)
        held = [connect(server.url) for _ in range(2)]  # two open connections fill the limit
        try:
            time.sleep(0.2)
            assert post(server.url).status_code == 503
        finally:
            for sock in held:
                sock.close()
        deadline = time.monotonic() + 10
        while post(server.url).status_code != 200:  # the connections closed: served again
            assert time.monotonic() < deadline
            time.sleep(0.05)
