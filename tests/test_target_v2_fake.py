"""The v2 target against a small V2 server on 127.0.0.1, for what the real MLServer here cannot show:
Seldon Core 2's header routing, a server without the repository extension, Triton's way of naming
that extension, a path prefix, other error and readiness answers, and outputs of several kinds.

The fake follows the protocol's REST routes and bodies; it records every request it receives.
"""

from __future__ import annotations

import json
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest
from deployflow import (
    AuthenticationError,
    InvalidInputError,
    NotFoundError,
    NotSupportedError,
    State,
    get_deploy_client,
)

FAST = {"max_retries": 1, "backoff_factor": 0.01, "backoff_max": 0.05}


class _QuietServer(ThreadingHTTPServer):
    """Without tracebacks for clients that leave before their answer (the timeout tests make them)."""

    daemon_threads = True

    def handle_error(self, request, client_address):
        if not isinstance(sys.exc_info()[1], (BrokenPipeError, ConnectionResetError)):
            super().handle_error(request, client_address)


class FakeV2:
    """A V2 server: ``prefix`` before every route, ``extensions`` in ``GET /v2``, ``repository`` (offer
    the index and load/unload), ``seldon`` (route by the ``Seldon-Model`` header, as Seldon's mesh
    does: a request without it gets 404), ``ready`` (model name -> status its ready route answers)."""

    def __init__(self, *, prefix="", extensions=(), repository=False, seldon=False, ready=None, token=None):
        self.prefix = prefix
        self.extensions = list(extensions)
        self.repository = repository
        self.seldon = seldon
        self.ready = dict(ready or {"m": 200})
        self.token = token
        self.requests: list[tuple[str, str, dict[str, str], bytes]] = []
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def _answer(self, status, body=None):
                data = b"" if body is None else json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _handle(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                headers = {k.lower(): v for k, v in self.headers.items()}
                fake.requests.append((self.command, self.path, headers, body))
                status, answer = fake.route(self.command, self.path, headers, body)
                self._answer(status, answer)

            do_GET = do_POST = _handle

        self.server = _QuietServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self):
        return f"http://127.0.0.1:{self.server.server_address[1]}{self.prefix}"

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()

    def route(self, method, path, headers, body):
        if self.token is not None and headers.get("authorization") != f"Bearer {self.token}":
            return 401, {"error": "unauthorized"}
        if not path.startswith(self.prefix + "/v2"):
            return 404, {"detail": "Not Found"}
        path = path[len(self.prefix):]
        if path == "/v2" and method == "GET":
            return 200, {"name": "fake", "version": "1", "extensions": self.extensions}
        if path.startswith("/v2/repository/"):
            if not self.repository:
                return 404, {"detail": "Not Found"}
            if path == "/v2/repository/index":
                return 200, [{"name": name, "state": "READY" if status == 200 else "UNAVAILABLE", "reason": ""}
                             for name, status in self.ready.items()]
            name, _, action = path[len("/v2/repository/models/"):].partition("/")
            self.ready[name] = 200 if action == "load" else 404
            return 200, None
        parts = path.split("/")  # ['', 'v2', 'models', name, ...]
        if len(parts) < 4 or parts[2] != "models":
            return 404, {"detail": "Not Found"}
        name = parts[3]
        if self.seldon and headers.get("seldon-model") not in (name, f"{name}.pipeline"):
            return 404, {"error": "no route for this request (Seldon-Model header missing)"}
        status = self.ready.get(name, 404)
        if status == 404:
            return 404, {"error": f"Model {name} not found"}
        if parts[-1] == "ready":
            return (status, None) if status != 503 else (503, {"error": "not ready"})
        if parts[-1] == "infer":
            if status == 400:  # MLServer's answer for a model that is still loading
                return 400, {"error": f"Model {name} is not ready yet."}
            request = json.loads(body)
            if request["inputs"][0]["datatype"] == "BYTES":
                return 400, {"error": "this model takes numbers"}
            values = request["inputs"][0]["data"]
            count = request["inputs"][0]["shape"][0]
            return 200, {
                "model_name": name, "id": request.get("id", "1"),
                "outputs": [
                    {"name": "label", "datatype": "BYTES", "shape": [count], "data": ["yes"] * count},
                    {"name": "flag", "datatype": "BOOL", "shape": [count, 1], "data": [True] * count},
                    {"name": "grid", "datatype": "FP32", "shape": [count, 2],
                     "data": [float(v) for v in values[: 2 * count]] if len(values) >= 2 * count else [0.0] * (2 * count)},
                ],
            }
        return 200, {"name": name, "versions": ["1"], "platform": "fake",
                     "inputs": [{"name": "x", "datatype": "FP32", "shape": [-1, 2]}], "outputs": []}


def test_seldon_model_header_routes_requests():
    with FakeV2(seldon=True) as fake:
        with get_deploy_client(f"v2+{fake.url}", **FAST) as plain:
            with pytest.raises(NotFoundError, match="Seldon-Model"):
                plain.predict("m", np.ones((1, 2)))
        with get_deploy_client(f"v2+{fake.url}", seldon_model=True, **FAST) as routed:
            assert routed.predict("m", np.ones((1, 2)))["model_name"] == "m"
            assert routed.deployment_status("m").state is State.READY
            assert routed.get_deployment("m")["platform"] == "fake"
        assert fake.requests[-1][2]["seldon-model"] == "m"
        with get_deploy_client(f"v2+{fake.url}", seldon_model="pipeline", **FAST) as pipeline:
            pipeline.predict("m", np.ones((1, 2)))
        assert fake.requests[-1][2]["seldon-model"] == "m.pipeline"
    with pytest.raises(InvalidInputError, match="seldon_model"):
        get_deploy_client("v2+http://127.0.0.1:9", seldon_model="graph")


def test_without_the_repository_extension_lifecycle_is_not_supported():
    with FakeV2(prefix="/serving/v1") as fake, get_deploy_client(f"v2+{fake.url}", **FAST) as client:
        for call in (lambda: client.create_deployment("m", "m"), lambda: client.delete_deployment("m"),
                     lambda: client.update_deployment("m"), client.list_deployments):
            with pytest.raises(NotSupportedError):
                call()
        assert all(path.startswith("/serving/v1/v2") for _, path, _, _ in fake.requests)
    with FakeV2(ready={"m": 200, "n": 400}) as fake:
        with get_deploy_client(f"v2+{fake.url}", models=["m", "n", "gone"], **FAST) as client:
            assert [(r["name"], r["state"]) for r in client.list_deployments()] == [
                ("m", "READY"), ("n", "PENDING"), ("gone", "NOT_FOUND")]
    with pytest.raises(InvalidInputError, match="models"):
        get_deploy_client("v2+http://127.0.0.1:9", models="m")


def test_triton_names_the_repository_extension_in_its_metadata():
    with FakeV2(extensions=["model_repository", "statistics"], repository=True, ready={"m": 404}) as fake:
        with get_deploy_client(f"v2+{fake.url}", **FAST) as client:
            assert client.create_deployment("m", "")["state"] == "READY"
            assert ("POST", "/v2/repository/models/m/load") in [(m, p) for m, p, _, _ in fake.requests]
            # Found in GET /v2: the index was not probed to learn it.
            probes = [p for m, p, _, _ in fake.requests if p == "/v2/repository/index"]
            assert probes == []
            client.delete_deployment("m")
            assert client.deployment_status("m").state is State.NOT_FOUND


def test_readiness_answers_and_error_bodies():
    with FakeV2(ready={"loading": 400, "warming": 503, "m": 200}) as fake:
        with get_deploy_client(f"v2+{fake.url}", **FAST) as client:
            assert client.deployment_status("loading").state is State.PENDING
            assert client.deployment_status("warming").state is State.PENDING
            with pytest.raises(InvalidInputError, match="this model takes numbers") as caught:
                client.predict("m", np.array(["a", "b"]))
            assert caught.value.status_code == 400 and not caught.value.retryable
            with pytest.raises(InvalidInputError, match="'model' or 'model@version'"):
                client.predict("m@", np.ones((1, 2)))
    with FakeV2(token="t0ken-for-the-fake-v2") as fake:
        with get_deploy_client(f"v2+{fake.url}", **FAST) as client:
            with pytest.raises(AuthenticationError):
                client.deployment_status("m")
        with get_deploy_client(f"v2+{fake.url}", auth_token="t0ken-for-the-fake-v2", **FAST) as client:
            assert client.deployment_status("m").state is State.READY


def test_outputs_by_name_with_their_shapes():
    with FakeV2() as fake, get_deploy_client(f"v2+{fake.url}", **FAST) as client:
        answer = client.predict("m", np.array([[1.0, 2.0], [3.0, 4.0]], dtype=np.float32))
        assert answer["predictions"] == {
            "label": ["yes", "yes"], "flag": [True, True], "grid": [[1.0, 2.0], [3.0, 4.0]],
        }
        assert [o["shape"] for o in answer["outputs"]] == [[2], [2, 1], [2, 2]]
        sent = json.loads(fake.requests[-1][3])
        assert sent == {
            "inputs": [{"name": "input-0", "shape": [2, 2], "datatype": "FP32", "data": [1.0, 2.0, 3.0, 4.0]}],
            "parameters": {"content_type": "np"},
        }


def test_load_parameters_wait_and_the_repository_lookup_happens_once():
    with FakeV2(extensions=["model_repository"], repository=True, ready={"m": 404}) as fake:
        with get_deploy_client(f"v2+{fake.url}", headers={"X-Team": "scoring"}, **FAST) as client:
            record = client.create_deployment("m", "m", config={"parameters": {"config": "{}"}, "wait": False})
            assert record["name"] == "m"
            loads = [json.loads(body) for method, path, _, body in fake.requests if path.endswith("/load")]
            assert loads == [{"parameters": {"config": "{}"}}]
            client.update_deployment("m", config={"timeout": 5})
            client.delete_deployment("m")
            assert [p for m, p, _, _ in fake.requests].count("/v2") == 1
            assert all(headers.get("x-team") == "scoring" for _, _, headers, _ in fake.requests)
            for config in ({"wait": "yes"}, {"parameters": [1]}):
                with pytest.raises(InvalidInputError):
                    client.update_deployment("m", config=config)
            with pytest.raises(InvalidInputError, match="names a version"):
                client.delete_deployment("m@1")


def test_a_server_that_does_not_answer_is_pending():
    with FakeV2() as fake:
        url = fake.url
    with get_deploy_client(f"v2+{url}", **FAST) as client:
        status = client.deployment_status("m")
    assert status.state is State.PENDING and status.reason


@pytest.mark.parametrize("on_bad_rows", ["raise", "isolate"])
def test_a_model_still_loading_is_a_retryable_error_on_both_edges(on_bad_rows, tmp_path):
    """MLServer answers 400 "Model ... is not ready yet." while a model loads: ``predict`` and batch
    scoring (posted by the async edge through the target's route) both call it a retryable error, and
    batch scoring never takes it for bad rows."""
    import pandas as pd

    from deployflow import TransientError, batch_predict

    frame = pd.DataFrame({"a": [1.0, 2.0, 3.0], "b": [4.0, 5.0, 6.0]})
    with FakeV2(ready={"loading": 400}) as fake, get_deploy_client(f"v2+{fake.url}", **FAST) as client:
        with pytest.raises(TransientError, match="is not ready yet") as sync:
            client.predict("loading", frame)
        assert sync.value.retryable and sync.value.status_code == 400
        assert client.batch_http_route("loading") is not None  # the async edge, not predict
        with pytest.raises(TransientError, match="is not ready yet") as batch:
            batch_predict(client, frame, deployment_name="loading", chunk_size=2, on_bad_rows=on_bad_rows,
                          errors_path=str(tmp_path / "errors.jsonl"), max_chunk_retries=0)
        assert batch.value.retryable
    assert not (tmp_path / "errors.jsonl").exists() or not (tmp_path / "errors.jsonl").read_text()
