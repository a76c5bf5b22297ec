"""``workers > 1``: a small supervisor of worker processes that share the server's listening socket.

The server process validates the spec, checks that the model loads, binds the socket, then starts
``workers`` fresh interpreters (``python -m deployflow.targets.local.workers``, never a fork of a
process holding a loaded model). Each worker inherits the listening socket as a file descriptor
(``pass_fds``), loads the model itself, serves on the shared socket with uvicorn's public
``Server.serve(sockets=...)``, and reports through a pipe once it serves. The ready file is written
once every worker has reported. Afterwards:

* a worker that dies is started again (after a short pause when it died quickly, so a model that
  crashes at once does not spin), and the others keep serving meanwhile;
* SIGTERM or SIGINT to the supervisor is passed on to every worker, which finishes its in-flight
  requests; the supervisor waits for them (up to the graceful period, then kills what is left) and
  exits with status 0;
* a worker that fails before the first ready file (its model does not load) stops the others, and the
  supervisor fails with that worker's exit status, as a single-worker server would.

Metrics (:mod:`.metrics`) run in prometheus_client's multiprocess mode: the supervisor gives every
worker the same new directory (beside the ready file) in ``PROMETHEUS_MULTIPROC_DIR``, marks the files
of a worker that died, and removes the directory when it stops.
"""

from __future__ import annotations

import json
import os
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from typing import Any

from ...redaction import get_logger
from .metrics import MULTIPROC_ENV

__all__ = ["Supervisor", "WORKER_SPEC_ENV", "LISTEN_FD_ENV", "READY_FD_ENV"]

_MODULE = "deployflow.targets.local.workers"
_logger = get_logger("deployflow.targets.local.server")

#: The validated spec, as JSON, for a worker.
WORKER_SPEC_ENV = "DEPLOYFLOW_SERVER_WORKER_SPEC"
#: The file descriptor of the shared listening socket, in a worker.
LISTEN_FD_ENV = "DEPLOYFLOW_SERVER_LISTEN_FD"
#: The file descriptor a worker writes one byte to once it serves.
READY_FD_ENV = "DEPLOYFLOW_SERVER_READY_FD"

#: Seconds each worker gets to load the model and serve.
WORKER_START_SECONDS = 600.0
#: A worker that dies sooner than this after its start waits this long before it is started again.
RESTART_PAUSE_SECONDS = 1.0


class WorkerStartError(Exception):
    """A worker exited (``code``) or hung before it served."""

    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.code = code


class _Worker:
    def __init__(self, popen: subprocess.Popen[bytes], ready: int) -> None:
        self.popen = popen
        self.ready_fd = ready
        self.started = time.monotonic()
        self.serving = False


class Supervisor:
    """Runs ``spec.workers`` worker processes on ``sock`` until told to stop (see the module docstring)."""

    def __init__(self, spec: dict[str, Any], sock: socket.socket, token: str | None, graceful_seconds: float) -> None:
        self.spec = spec
        self.sock = sock
        self.token = token
        self.graceful_seconds = graceful_seconds
        self.count = int(spec["workers"])
        self.workers: list[_Worker] = []
        self._stopping = False
        # Beside the ready file (in the deployment's own directory, removed with it) when there is one.
        ready_dir = os.path.dirname(spec["ready_file"]) if spec.get("ready_file") else None
        self._metrics_dir = tempfile.mkdtemp(prefix="metrics-", dir=ready_dir)

    def _environment(self) -> dict[str, str]:
        from .server import AUTH_TOKEN_ENV

        env = dict(os.environ)
        env[WORKER_SPEC_ENV] = json.dumps(self.spec)
        env[LISTEN_FD_ENV] = str(self.sock.fileno())
        env[MULTIPROC_ENV] = self._metrics_dir
        env.pop(AUTH_TOKEN_ENV, None)
        if self.token:
            env[AUTH_TOKEN_ENV] = self.token
        return env

    def _start_worker(self) -> _Worker:
        read_end, write_end = os.pipe()
        env = self._environment()
        env[READY_FD_ENV] = str(write_end)
        try:
            popen = subprocess.Popen(
                [sys.executable, "-m", _MODULE],
                env=env,
                stdin=subprocess.DEVNULL,
                pass_fds=(self.sock.fileno(), write_end),
            )
        finally:
            os.close(write_end)
        return _Worker(popen, read_end)

    def _on_signal(self, signum: int, _frame: Any) -> None:
        self._stopping = True

    def run(self, on_ready: Any) -> None:
        """Start the workers, call ``on_ready()`` once all serve, supervise until SIGTERM/SIGINT.

        Raises :class:`WorkerStartError` when a worker fails before they all served.
        """
        previous = {sig: signal.signal(sig, self._on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
        try:
            self.workers = [self._start_worker() for _ in range(self.count)]
            self._wait_all_serving()
            if self._stopping:
                return
            on_ready()
            self._supervise()
        finally:
            self._stop_all()
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            shutil.rmtree(self._metrics_dir, ignore_errors=True)

    def _wait_all_serving(self) -> None:
        deadline = time.monotonic() + WORKER_START_SECONDS
        while not self._stopping and not all(worker.serving for worker in self.workers):
            for worker in self.workers:
                code = worker.popen.poll()
                if code is not None and not worker.serving:
                    raise WorkerStartError(f"worker process {worker.popen.pid} did not start: it exited with code "
                                           f"{code} (see the log above)", code if code > 0 else 1)
            if time.monotonic() > deadline:
                raise WorkerStartError(f"a worker process did not serve within {WORKER_START_SECONDS:g} s", 1)
            self._read_ready(0.05)

    def _read_ready(self, timeout: float) -> None:
        waiting = {worker.ready_fd: worker for worker in self.workers if not worker.serving and worker.ready_fd >= 0}
        if not waiting:
            time.sleep(timeout)
            return
        try:
            readable, _, _ = select.select(list(waiting), [], [], timeout)
        except InterruptedError:  # pragma: no cover - PEP 475 retries, a handler may still interrupt
            return
        for descriptor in readable:
            worker = waiting[descriptor]
            if os.read(descriptor, 1):
                worker.serving = True
            os.close(descriptor)
            worker.ready_fd = -1

    def _supervise(self) -> None:
        while not self._stopping:
            for index, worker in enumerate(self.workers):
                code = worker.popen.poll()
                if code is None or self._stopping:
                    continue
                self._mark_dead(worker.popen.pid)
                lived = time.monotonic() - worker.started
                _logger.warning("worker process %d exited with code %s after %.1f s; starting another",
                                worker.popen.pid, code, lived)
                if lived < RESTART_PAUSE_SECONDS:
                    time.sleep(RESTART_PAUSE_SECONDS)
                if self._stopping:
                    break
                self.workers[index] = self._start_worker()
            self._read_ready(0.2)

    def _mark_dead(self, pid: int) -> None:
        try:
            from prometheus_client import multiprocess
        except ImportError:
            return
        multiprocess.mark_process_dead(pid, self._metrics_dir)

    def _stop_all(self) -> None:
        for worker in self.workers:
            if worker.popen.poll() is None:
                worker.popen.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + self.graceful_seconds + 5.0
        for worker in self.workers:
            try:
                worker.popen.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                _logger.warning("worker process %d did not stop in time; killing it", worker.popen.pid)
                worker.popen.kill()
                worker.popen.wait()
            if worker.ready_fd >= 0:
                os.close(worker.ready_fd)
                worker.ready_fd = -1


def worker_main() -> int:
    """Entry point of one worker process (started by :class:`Supervisor`)."""
    from .server import (
        EXIT_MODEL,
        ModelLoadError,
        build_app,
        configure_logging,
        serve_app,
        take_auth_token,
    )
    from .serving import run
    from .spec import parse_spec

    spec = parse_spec(json.loads(os.environ[WORKER_SPEC_ENV]))  # kept: model code may ask whether it is a worker
    configure_logging(spec.log_level)
    sock = socket.socket(fileno=int(os.environ.pop(LISTEN_FD_ENV)))
    ready_fd = int(os.environ.pop(READY_FD_ENV))
    token = take_auth_token(None)
    try:
        app = build_app(spec, token)
    except ModelLoadError as exc:
        print(f"deployflow server worker: {exc.message}", file=sys.stderr)
        return EXIT_MODEL

    def report() -> None:
        os.write(ready_fd, b"1")
        os.close(ready_fd)

    run(serve_app(app, spec, sock, on_started=report))
    return 0


if __name__ == "__main__":
    from deployflow.targets.local.workers import worker_main as _worker_main

    sys.exit(_worker_main())
