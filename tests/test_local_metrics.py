"""Issue 15 item 4: ``GET /metrics`` in Prometheus text on deployment servers (one worker and several,
prometheus_client's multiprocess mode) and routers, protected like control paths when auth is on; each
scrape is parsed with ``prometheus_client.parser``. Item 5: a worker that dies is started again."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import psutil
import pytest
import requests

from deployflow.targets.local.control import SECRET_FILE
from support.local_models import ADD_ONE, local_client, local_home
from support.metrics import scrape, value
from support.models import ServerProcess


def score(url: str, count: int, rows: int = 3, token: str | None = None) -> None:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    with requests.Session() as session:
        for _ in range(count):
            answer = session.post(url + "/invocations", json={"inputs": [[1.0]] * rows}, headers=headers, timeout=10)
            assert answer.status_code == 200


def test_a_server_exports_requests_latency_queue_load_time_and_rows(tmp_path):
    with ServerProcess(tmp_path, {"model_uri": ADD_ONE, "name": "metered"}) as server:
        server.wait_ready(timeout=60)
        score(server.url, 5, rows=3)
        requests.post(server.url + "/invocations", data=b"{", headers={"Content-Type": "application/json"}, timeout=10)
        v2 = requests.post(server.url + "/v2/models/metered/infer", timeout=10, json={
            "inputs": [{"name": "x", "datatype": "FP64", "shape": [4, 1], "data": [1, 2, 3, 4]}]})
        assert v2.status_code == 200, v2.text
        families = scrape(server.url)
    assert value(families["deployflow_requests"], name="metered", path="/invocations", status="200") == 5
    assert value(families["deployflow_requests"], path="/invocations", status="400") == 1
    assert value(families["deployflow_request_duration_seconds"], path="/invocations") > 0
    count = [s for s in families["deployflow_request_duration_seconds"] if s.name.endswith("_count")]
    assert value(count, path="/invocations") == 6
    assert value(families["deployflow_predictions"], name="metered") == 15 + 4  # V2 rows counted too
    assert value(families["deployflow_requests"], name="metered", path="/v2", status="200") == 1
    assert value(families["deployflow_model_load_seconds"], name="metered") > 0
    assert "deployflow_requests_in_flight" in families and "deployflow_requests_queued" in families
    assert value(families["deployflow_requests_in_flight"]) == 0


def test_with_a_token_metrics_need_it(tmp_path):
    token = "metrics-token-0123456789"
    with ServerProcess(tmp_path, {"model_uri": ADD_ONE}, token=token) as server:
        server.wait_ready(timeout=60)
        refused = requests.get(server.url + "/metrics", timeout=10)
        assert refused.status_code == 401
        score(server.url, 2, token=token)
        families = scrape(server.url, token)
    assert value(families["deployflow_requests"], path="/invocations", status="200") == 2


def test_several_workers_are_counted_together(tmp_path):
    with ServerProcess(tmp_path, {"model_uri": ADD_ONE, "workers": 2}) as server:
        server.wait_ready(timeout=90)
        for _ in range(4):  # new connections, so both workers get some
            score(server.url, 5)
        totals = set()
        for _ in range(6):  # whichever worker answers the scrape, the figure is the deployment's
            families = scrape(server.url)
            totals.add(value(families["deployflow_requests"], path="/invocations", status="200"))
        assert totals == {20.0}
        assert value(families["deployflow_predictions"]) == 60


def test_a_dead_worker_is_replaced(tmp_path):
    with ServerProcess(tmp_path, {"model_uri": ADD_ONE, "workers": 2}) as server:
        server.wait_ready(timeout=90)
        supervisor = psutil.Process(server.process.pid)
        workers = [child for child in supervisor.children() if "deployflow.targets.local.workers" in child.cmdline()]
        assert len(workers) == 2
        os.kill(workers[0].pid, signal.SIGKILL)
        deadline = time.monotonic() + 60
        while True:
            alive = []
            for child in supervisor.children():
                try:
                    if "deployflow.targets.local.workers" in child.cmdline():
                        alive.append(child)
                except psutil.Error:  # the dead one, until the supervisor reaps it
                    continue
            if len(alive) == 2 and workers[0].pid not in {child.pid for child in alive}:
                break
            assert time.monotonic() < deadline, "no new worker"
            time.sleep(0.1)
        score(server.url, 10)  # served throughout by the other worker, then by both
        assert server.stop() == 0
        assert "starting another" in server.log_path.read_text()


@pytest.fixture()
def home(tmp_path):
    with local_home(tmp_path) as directory:
        yield directory


def test_a_router_exports_routes_and_upstream_errors(home):
    with local_client(home) as client:
        client.create_deployment("counted", ADD_ONE)
        client.create_endpoint("meter", {"routes": [{"deployment": "counted", "traffic": 100}]})
        url = client.get_endpoint("meter")["url"]
        process = client.store.read()["endpoints"]["meter"]["process"]
        secret = (Path(process["dir"]) / SECRET_FILE).read_text().strip()
        assert requests.get(url + "/metrics", timeout=10).status_code == 401
        score(url, 4)
        families = scrape(url, secret)
    assert value(families["deployflow_router_requests"], name="meter", path="/invocations", status="200") == 4
    assert value(families["deployflow_router_routed"], deployment="counted", status="200") == 4
    assert "deployflow_router_upstream_errors" in families
    assert "deployflow_router_request_duration_seconds" in families
    assert value(families["deployflow_router_requests_in_flight"]) == 0


def test_without_prometheus_client_metrics_say_so():
    """A server built without metrics (prometheus_client missing) answers /metrics 404, saying why."""
    import asyncio

    from deployflow.targets.local.app import ScoringApp
    from deployflow.targets.local.models import load_model

    app = ScoringApp(load_model(ADD_ONE, None), metrics=None)
    sent: list[dict] = []

    async def receive() -> dict:
        return {"type": "http.request", "body": b""}

    async def send(message: dict) -> None:
        sent.append(message)

    scope = {"type": "http", "method": "GET", "path": "/metrics", "headers": []}
    asyncio.run(app(scope, receive, send))
    assert sent[0]["status"] == 404 and b"prometheus_client" in sent[1]["body"]
