"""What the ``local`` client's deployments and endpoints share: names of things on disk, the spec of a
server process, operation markers, and the one sequence that starts a new server or router process.

A process is started in four places (a deployment's create and update, an endpoint's create and the
restart of its router); each follows :class:`ProcessStarts`.
"""

from __future__ import annotations

import os
import shutil
import time
import uuid
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from ...errors import ConflictError, DeploymentError, InvalidInputError
from ...redaction import get_logger
from .process import clip_middle, is_running, same_start, start_times, stop, wait_until_serving
from .serving import LIMIT_DEFAULTS
from .state import StateStore, now_iso

logger = get_logger("deployflow.targets.local.client")

SERVER_MODULE = "deployflow.targets.local.server"
ROUTER_MODULE = "deployflow.targets.local.router"
ROLLOVER_MODULE = "deployflow.targets.local.rollover"
SPEC_VERSION = 1

DEPLOYMENTS = "deployments"
ENDPOINTS = "endpoints"
_DEPLOYMENTS = DEPLOYMENTS
_ENDPOINTS = ENDPOINTS
PING_TIMEOUT = 2.0
_PING_TIMEOUT = PING_TIMEOUT
#: The longest failure text kept in a record (``last_error``); a longer one loses its middle.
_MAX_ERROR_CHARS = 2000


def _normalized_model_uri(model_uri: object) -> str:
    if not isinstance(model_uri, str) or not model_uri.strip():
        raise InvalidInputError(f"model_uri must be a non-empty string, got {model_uri!r}")
    model_uri = model_uri.strip()
    parsed = urlparse(model_uri)
    # A plain path becomes absolute, so the record means the same thing to every process.
    if not parsed.scheme or len(parsed.scheme) == 1:
        return os.path.abspath(os.path.expanduser(model_uri))
    return model_uri


def _check_model(model_uri: str, flavor: str | None) -> str | None:
    """Fail before starting anything when the flavor is unknown or a model file is plainly missing."""
    from .models import detect_flavor, normalize_flavor

    canonical = normalize_flavor(flavor)
    if canonical is None:
        detect_flavor(model_uri)
    return flavor


def server_spec(
    name: str, model_uri: str, flavor: str | None, config: Mapping[str, Any], ready_file: Path
) -> dict[str, Any]:
    """The spec file of one scoring-server process (the contract with :mod:`.server`)."""
    return {
        "version": SPEC_VERSION,
        "name": name,
        "model_uri": model_uri,
        "flavor": flavor,
        "host": config["host"],
        "port": config["port"],
        "workers": config["workers"],
        "max_request_bytes": config["max_request_bytes"],
        "request_timeout": config["request_timeout"],
        "ready_file": str(ready_file),
        "log_level": config["log_level"],
        **_limits(config),
    }


def _limits(config: Mapping[str, Any]) -> dict[str, Any]:
    """The connection limits of a config, for a spec (a record from an older version has none: defaults)."""
    return {key: config.get(key, default) for key, default in LIMIT_DEFAULTS.items()}


def _owner_times(pid: int) -> dict[str, float | None]:
    times = start_times(pid)
    return {"owner_create_time": times["create_time"], "owner_boot_start": times["boot_start"]}


def _operation(kind: str) -> dict[str, Any]:
    """A marker saying "this caller is in the middle of ``kind``" (create, update), with its owner."""
    return {
        "kind": kind,
        "id": uuid.uuid4().hex,
        "owner_pid": os.getpid(),
        **_owner_times(os.getpid()),
        "started_at": now_iso(),
    }


def _operation_live(operation: Mapping[str, Any] | None) -> bool:
    """Whether the caller that started ``operation`` is still running (else the marker is stale).

    An update handed over to a :mod:`.rollover` process (``helper``) is live while that process runs.
    """
    import psutil

    if not operation:
        return False
    if operation.get("helper"):
        return is_running(operation["helper"])
    try:
        owner = psutil.Process(int(operation["owner_pid"]))
        return owner.status() != psutil.STATUS_ZOMBIE and same_start(
            owner, operation.get("owner_boot_start"), operation.get("owner_create_time")
        )
    except (psutil.Error, KeyError, TypeError, ValueError):
        return False


def _remaining(timeout: float, started: float) -> float:
    """Seconds left of ``timeout`` counted from ``started`` (a ``time.monotonic()`` reading)."""
    return max(0.0, timeout - (time.monotonic() - started))


def _error_summary(error: BaseException) -> str:
    """The first line of ``error`` (its cause; the log lines after it are in the log), for a record."""
    text = str(error).strip() or type(error).__name__
    return clip_middle(text.splitlines()[0], _MAX_ERROR_CHARS)


def _remove_dir(path: str | None) -> None:
    if not path:
        return
    shutil.rmtree(path, ignore_errors=True)
    try:
        Path(path).parent.rmdir()  # the name's directory, once its last generation is gone
    except OSError:
        pass


def _routing_endpoints(state: Mapping[str, Any], name: str, positive_only: bool = False) -> list[str]:
    found = []
    for endpoint_name, endpoint in state["endpoints"].items():
        for route in endpoint["config"]["routes"]:
            if route["deployment"] == name and (route["traffic"] > 0 or not positive_only):
                found.append(endpoint_name)
    return sorted(found)




#: What a start that lost its record to another caller says (a delete, or a newer update, meanwhile).
LOST = "{what} was deleted or replaced by another caller while it was starting"


class ProcessStarts:
    """The one sequence that starts a server or router process, shared by deployments and endpoints:

    1. spawn it inside the state transaction that records it; when that transaction fails, the caller
       hands the process to :meth:`_discard_unrecorded`, which stops a process that was started but
       never recorded;
    2. wait until it serves (:meth:`_wait_started`): when it fails, stop it and undo its record; when
       it serves, record that; when another caller deleted or replaced the record meanwhile, stop it and
       raise :class:`~deployflow.errors.ConflictError` ("deleted or replaced by another caller").
    """

    store: StateStore

    def _discard_unrecorded(
        self, kind: str, name: str, generation: str, process: dict[str, Any] | None, directory: Path
    ) -> None:
        """After a failed state write: stop a process that was started but never recorded."""
        try:
            record = self.store.read()[kind].get(name) or {}
        except DeploymentError:
            record = {}
        recorded = {(record.get(key) or {}).get("generation") for key in ("process", "pending")}
        if generation in recorded:
            return
        if process is not None:
            stop(process, timeout=5.0)
        _remove_dir(str(directory))

    def _wait_started(
        self,
        process: dict[str, Any],
        *,
        what: str,
        timeout: float,
        ping: Callable[[str], bool],
        undo: Callable[[dict[str, Any], BaseException], tuple[bool, bool]],
        commit: Callable[[dict[str, Any], dict[str, Any]], bool],
        lost: str = LOST,
    ) -> dict[str, Any]:
        """Wait until ``process`` serves and return its ready file.

        ``undo(state, error)`` removes the record of a start that failed, in a transaction, and returns
        ``(lost, remove_dir)``: whether another caller had changed the record, and whether the
        process's directory goes too. ``commit(state, ready)`` records the start and returns whether the
        record was still this start's.
        """
        message = lost.format(what=what)
        try:
            ready = wait_until_serving(process, what=what, timeout=timeout, ping=ping)
        except BaseException as error:  # Ctrl-C included: a half-started process must not stay behind
            stop(process, timeout=5.0)
            with self.store.transaction() as state:
                was_lost, remove_dir = undo(state, error)
            if remove_dir:
                _remove_dir(process["dir"])
            if was_lost and isinstance(error, DeploymentError):
                raise ConflictError(message) from error
            raise
        with self.store.transaction() as state:
            ours = commit(state, ready)
        if not ours:
            stop(process, timeout=5.0)
            _remove_dir(process["dir"])
            raise ConflictError(message)
        return ready
