"""Helpers for the ``local`` target's lifecycle tests: process accounting, model files, a worker.

Servers started by the tests import models as ``python:support.models:<name>``, so the tests directory
must be on their ``PYTHONPATH``: :func:`pythonpath_with_tests` puts it there for the test process, whose
environment every server inherits.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import json
import os
import socket
import sys
import traceback
from pathlib import Path
from typing import Any, Iterator

from .models import TESTS_DIR

__all__ = [
    "ADD_ONE",
    "DOUBLER",
    "DESCRIBE",
    "pythonpath_with_tests",
    "our_processes",
    "kill_all",
    "free_port",
    "write_module",
    "concurrency_worker",
]

ADD_ONE = "python:support.models:add_one"
DOUBLER = "python:support.models:doubler"
DESCRIBE = "python:support.models:describe"

_MARKER_ENV = "DEPLOYFLOW_LOCAL_SPEC"


@contextlib.contextmanager
def pythonpath_with_tests() -> Iterator[None]:
    """Put the tests directory on ``PYTHONPATH`` for this block (servers started inside inherit it)."""
    previous = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(TESTS_DIR), previous]))
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop("PYTHONPATH", None)
        else:
            os.environ["PYTHONPATH"] = previous


def our_processes(home: Path | str) -> list[Any]:
    """Every live process started for state directory ``home``: servers, routers and their workers."""
    import psutil

    prefix = str(home).rstrip("/") + "/"
    found = []
    for process in psutil.process_iter():
        try:
            if process.status() == psutil.STATUS_ZOMBIE:
                continue
            if any(part.startswith(prefix) for part in process.cmdline()):
                found.append(process)
                continue
            if process.environ().get(_MARKER_ENV, "").startswith(prefix):
                found.append(process)
        except (psutil.Error, OSError):
            continue
    return found


def kill_all(home: Path | str) -> list[int]:
    """SIGKILL whatever :func:`our_processes` finds (a test finaliser's last resort); returns the pids."""
    import psutil

    processes = our_processes(home)
    for process in processes:
        with contextlib.suppress(psutil.Error):
            process.kill()
    psutil.wait_procs(processes, timeout=5)
    return [process.pid for process in processes]


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def write_module(directory: Path, name: str, source: str) -> Path:
    """Write a Python file for ``python:/abs/path.py:attr`` references and return its path."""
    path = Path(directory) / name
    path.write_text(source, encoding="utf-8")
    return path


def concurrency_worker(target_uri: str, index: int, result_path: str) -> None:
    """One of the processes of the concurrency test: works on its own name, a name shared with one other
    worker and a name shared by all, leaving its own deployment (and maybe "shared") behind.

    Records, for each call, ``"ok"``, the class name of a deployflow error, or ``"OTHER: ..."`` for any
    other exception (which the test treats as a failure), in JSON at ``result_path``.
    """
    import deployflow

    own, pair = f"own{index}", f"pair{index // 2}"
    operations: list[tuple[str, str]] = [
        ("create", own),
        ("create", "shared"),
        ("update", "shared"),
        ("create", pair),
        ("update", own),
        ("delete", "shared"),
        ("update", pair),
        ("list", ""),
        ("delete", pair),
        ("create", "shared"),
    ]
    outcomes: list[dict[str, str]] = []
    client = deployflow.get_deploy_client(target_uri)
    for operation, name in operations:
        detail = ""
        try:
            if operation == "create":
                client.create_deployment(name, ADD_ONE, config={"startup_timeout": 90})
            elif operation == "update":
                client.update_deployment(name, DOUBLER, config={"startup_timeout": 90})
            elif operation == "delete":
                client.delete_deployment(name)
            else:
                client.list_deployments()
            outcome = "ok"
        except deployflow.DeploymentError as error:
            outcome = type(error).__name__
            detail = str(error)[:300]
        except Exception:  # noqa: BLE001 - the test wants to see anything that is not ours
            outcome = "OTHER: " + traceback.format_exc()
        outcomes.append({"operation": operation, "name": name, "outcome": outcome, "detail": detail})
    client.close()
    Path(result_path).write_text(json.dumps(outcomes), encoding="utf-8")


if __name__ == "__main__":
    concurrency_worker(sys.argv[1], int(sys.argv[2]), sys.argv[3])


@contextlib.contextmanager
def local_home(directory: Path) -> Iterator[Path]:
    """A state directory for a test module: servers can import the test models, and at the end no
    process of ours may still run there."""
    with pythonpath_with_tests():
        yield directory
    leftovers = kill_all(directory)
    assert leftovers == [], f"processes left running: {leftovers}"


@contextlib.contextmanager
def local_client(home: Path) -> Iterator[Any]:
    """A client of the local target in ``home`` that deletes every endpoint and deployment afterwards."""
    import deployflow

    with deployflow.get_deploy_client(f"local://{home}") as local:
        yield local
        for endpoint in local.list_endpoints():
            local.delete_endpoint(endpoint["name"])
        # Side by side: each delete waits for its server's graceful stop, and a module may leave dozens.
        names = [deployment["name"] for deployment in local.list_deployments()]
        with concurrent.futures.ThreadPoolExecutor(max_workers=8) as pool:
            list(pool.map(lambda name: local.delete_deployment(name, config={"stop_timeout": 5}), names))
