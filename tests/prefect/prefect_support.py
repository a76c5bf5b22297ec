"""Helpers for the Prefect tests: model references, task runs, events and logs read back from the API."""

from __future__ import annotations

import contextlib
import time
from pathlib import Path
from typing import Any, Iterator

from deployflow import BaseDeploymentClient, TransientError, get_deploy_client, register_target

HERE = Path(__file__).resolve().parent
MODELS = HERE / "prefect_models.py"
BROKEN_MODEL = HERE / "prefect_broken_model.py"


def model_ref(attribute: str, path: Path = MODELS) -> str:
    """A local-target model reference to ``attribute`` of a file in this folder."""
    return f"python:{path}:{attribute}"



def task_runs_of(flow_run_id: Any, task_name: str | None = None) -> list[Any]:
    """The task runs of a flow run (optionally those of one task), oldest first."""
    from prefect import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    with get_client(sync_client=True) as client:
        runs = client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id])))
    runs = [run for run in runs if task_name is None or run.task_key.startswith(task_name) or run.name.startswith(task_name)]
    return sorted(runs, key=lambda run: run.expected_start_time or run.start_time)


def read_events(prefix: str, *, resource_id: str | None = None, at_least: int = 1, timeout: float = 20.0) -> list[Any]:
    """Events whose name starts with ``prefix`` (and about ``resource_id``), polled until ``at_least``
    arrived: the server stores events in the background."""
    from prefect import get_client
    from prefect.events.filters import EventFilter, EventNameFilter, EventResourceFilter

    from prefect.events.worker import EventsWorker

    EventsWorker.drain_all()
    event_filter = EventFilter(
        event=EventNameFilter(prefix=[prefix]),
        resource=EventResourceFilter(id=[resource_id]) if resource_id else None,
    )
    deadline = time.monotonic() + timeout
    while True:
        with get_client(sync_client=True) as client:
            found = list(client.read_events(filter=event_filter, limit=50).events)
        if len(found) >= at_least or time.monotonic() > deadline:
            return found
        time.sleep(0.25)


def flow_logs(flow_run_id: Any, task_run_id: Any = None) -> list[str]:
    """Every log line the Prefect API holds for a flow run and its task runs (or one task run)."""
    from prefect import get_client
    from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId
    from prefect.logging.handlers import APILogHandler

    APILogHandler().flush()
    with get_client(sync_client=True) as client:
        logs = client.read_logs(log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[flow_run_id])), limit=200)
    return [log.message for log in logs if task_run_id is None or log.task_run_id == task_run_id]


def flow_log_records(flow_run_id: Any, task_run_id: Any = None) -> list[tuple[int, str]]:
    """``(level, message)`` of every log line the Prefect API holds for a flow run and its task runs (or
    one task run), oldest first."""
    from prefect import get_client
    from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId
    from prefect.client.schemas.sorting import LogSort
    from prefect.logging.handlers import APILogHandler

    APILogHandler().flush()
    with get_client(sync_client=True) as client:
        logs = client.read_logs(
            log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[flow_run_id])), limit=200,
            sort=LogSort.TIMESTAMP_ASC,
        )
    return [(log.level, log.message) for log in logs if task_run_id is None or log.task_run_id == task_run_id]


def flow_artifacts(flow_run_id: Any) -> list[Any]:
    """Every artifact a flow run (or one of its task runs) created, as stored by the API."""
    from prefect import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

    with get_client(sync_client=True) as client:
        return client.read_artifacts(
            artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id]))
        )


def load_example(path: Path) -> Any:
    """Import an example file as a module."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(f"example_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


EXAMPLES = HERE.parent.parent / "examples" / "prefect"


class CountingServer:
    """A scoring server on 127.0.0.1 that answers ``/invocations`` from a script and counts requests.

    ``answers`` is a list of HTTP statuses, one per request in order; when it runs out, every further
    request gets ``then``. 200 answers ``{"predictions": [1]}``; errors carry ``Retry-After: 0`` so a
    retrying client would retry at once (which is what the tests must be able to see).
    """

    def __init__(self, answers: list[int], then: int = 200) -> None:
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        self.answers = list(answers)
        self.then = then
        self.requests = 0
        lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                self._send(200, b"\n")

            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with lock:
                    server.requests += 1
                    status = server.answers.pop(0) if server.answers else server.then
                if status == 200:
                    self._send(200, b'{"predictions": [1]}')
                else:
                    body = b'{"error_code": "TEMPORARILY_UNAVAILABLE", "message": "overloaded"}'
                    if status == 400:
                        body = b'{"error_code": "BAD_REQUEST", "message": "column x is missing"}'
                    self._send(status, body, {"Retry-After": "0"})

            def _send(self, status: int, body: bytes, headers: dict[str, str] | None = None) -> None:
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                for name, value in (headers or {}).items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(body)

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self) -> "CountingServer":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()


class LostAnswerClient(BaseDeploymentClient):
    """The ``lostanswer`` test target: the local target, except that the answer to the first create of a
    name in ``lose_first_answer`` is lost after the deployment was created (a connection reset).

    Its URIs are ``lostanswer:///state/dir`` (the local target's ``local:///state/dir``). ``creates``
    counts the creates that reached the local target, by name.
    """

    lose_first_answer: set[str] = set()
    creates: dict[str, int] = {}

    def __init__(self, target_uri: str, **options: Any) -> None:
        super().__init__(target_uri, **options)
        self.local = get_deploy_client("local:" + target_uri.split(":", 1)[1], **options)

    def create_deployment(self, name, model_uri, flavor=None, config=None, endpoint=None):
        record = self.local.create_deployment(name, model_uri, flavor=flavor, config=config)
        self.creates[name] = self.creates.get(name, 0) + 1
        if name in self.lose_first_answer:
            self.lose_first_answer.discard(name)
            raise TransientError("Connection reset by peer while reading the answer to create")
        return record

    def update_deployment(self, name, model_uri=None, flavor=None, config=None, endpoint=None):
        return self.local.update_deployment(name, model_uri, flavor=flavor, config=config)

    def delete_deployment(self, name, config=None, endpoint=None):
        return self.local.delete_deployment(name, config=config)

    def list_deployments(self, endpoint=None):
        return self.local.list_deployments()

    def get_deployment(self, name, endpoint=None):
        return self.local.get_deployment(name)

    def deployment_status(self, name, endpoint=None):
        return self.local.deployment_status(name)

    def predict(self, deployment_name=None, inputs=None, endpoint=None):
        return self.local.predict(deployment_name, inputs)

    def close(self) -> None:
        self.local.close()


@contextlib.contextmanager
def registered_target(name: str, client_class: type) -> Iterator[None]:
    """Register a test target for this block only, so it does not show in other tests' target lists."""
    # deployflow exports register_target but not its inverse; the registry module has it.
    from deployflow.registry import unregister_target

    register_target(name, client_class)
    try:
        yield
    finally:
        unregister_target(name)
