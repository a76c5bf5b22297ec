"""The ``local`` target's state on disk: one versioned JSON document, shared by every process.

Layout of a state directory (``DEPLOYFLOW_HOME``, default ``~/.deployflow``, or ``local:///dir``)::

    state.json                   {"version": 1, "revision": n, "deployments": {...}, "endpoints": {...}}
    state.lock                   the file lock every writer takes
    deployments/<name>/<gen>/    spec.json, ready.json, server.log of one server process
    endpoints/<name>/<gen>/      spec.json, ready.json, router.log of one router process

Rules that make several processes safe:

* writers take the file lock, read, change, write a temporary file and ``os.replace`` it over
  ``state.json``, then release the lock; ``revision`` grows by one on every write;
* readers never take the lock: ``os.replace`` is atomic, so a reader sees the whole old document or the
  whole new one;
* the lock is never held while waiting for a process to become ready, only for short read-change-write
  steps, so one slow model does not stall every other caller;
* a document written by a newer format version is refused rather than misread.

A *process record* (stored under a deployment's ``process``, ``pending`` (an update's new server) or
``retiring`` (the server an update replaced, until it has stopped) key, an endpoint's ``process`` key,
or as ``helper`` in the operation marker of an update handed to a rollover process) says how to find
and verify one server, router or rollover process::

    {"pid", "create_time", "boot_start", "generation", "dir", "spec_path", "ready_file", "log_path", "url",
     "started_at"}

``boot_start`` is the process's start in seconds since boot (no clock adjustment moves it; records
written before it existed have only ``create_time``, psutil's wall-clock reading).
"""

from __future__ import annotations

import contextlib
import copy
import os
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any, Iterator, TypedDict

import orjson

from ...errors import DeploymentError, TransientError

__all__ = [
    "DeploymentRecord",
    "EndpointRecord",
    "OperationRecord",
    "ProcessRecord",
    "RouteRecord",
    "StateDocument",
    "STATE_VERSION",
    "StateStore",
    "empty_state",
    "new_generation",
    "read_json",
    "write_json_atomic",
    "read_ready",
    "process_url",
    "now_iso",
]

class ProcessRecord(TypedDict, total=False):
    """How to find and verify one server, router or rollover process (see the module docstring).

    ``url`` is ``None`` until the process wrote its ready file and a caller recorded it; ``ready`` (a
    server's) is that ready file: ``{"pid", "host", "port", "url", "flavor", "started_at"}``, with
    ``started_at`` in seconds since the epoch. ``started_at`` here is when it was spawned (ISO-8601)."""

    pid: int
    create_time: float | None
    boot_start: float | None
    generation: str
    dir: str
    spec_path: str
    ready_file: str
    log_path: str
    url: str | None
    started_at: str
    ready: dict[str, Any]


class OperationRecord(TypedDict, total=False):
    """A caller in the middle of a create or update: live while its owner (or ``helper``) runs."""

    kind: str  # "create" or "update"
    id: str
    owner_pid: int
    owner_create_time: float | None
    owner_boot_start: float | None
    started_at: str
    target: dict[str, Any]  # an update's outcome: model_uri, flavor, config, auth
    helper: ProcessRecord  # the rollover process an update that did not wait was handed to


class RouteRecord(TypedDict):
    """One route of an endpoint: a deployment and its percent of requests (the percents add up to 100)."""

    deployment: str
    traffic: float


class DeploymentRecord(TypedDict, total=False):
    """``state["deployments"][name]``. ``process`` serves; ``pending`` is an update's new server until
    it serves (then it becomes ``process``); ``retiring`` the server an update replaced, until it
    stopped. ``auth`` says whether the server needs a token (the token itself is never stored)."""

    name: str
    model_uri: str
    flavor: str | None
    config: dict[str, Any]
    auth: bool
    created_at: str
    updated_at: str
    process: ProcessRecord | None
    pending: ProcessRecord | None
    retiring: ProcessRecord | None
    operation: OperationRecord | None
    last_error: str | None


class EndpointRecord(TypedDict, total=False):
    """``state["endpoints"][name]``: ``config["routes"]`` is a list of :class:`RouteRecord`; ``process``
    is its router (whose control secret is the file ``control.secret`` in the process's ``dir``)."""

    name: str
    config: dict[str, Any]
    created_at: str
    updated_at: str
    process: ProcessRecord | None
    operation: OperationRecord | None


class StateDocument(TypedDict):
    """The whole of ``state.json``."""

    version: int
    revision: int
    deployments: dict[str, DeploymentRecord]
    endpoints: dict[str, EndpointRecord]


STATE_VERSION = 1
STATE_FILE = "state.json"
LOCK_FILE = "state.lock"
#: How long a writer waits for the lock before giving up with a retryable error.
LOCK_TIMEOUT = 60.0


def empty_state() -> dict[str, Any]:
    """The document of a state directory nobody has written to yet."""
    return {"version": STATE_VERSION, "revision": 0, "deployments": {}, "endpoints": {}}


def now_iso() -> str:
    """The current UTC time as ISO-8601 text, as stored in records."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def new_generation() -> str:
    """A fresh, unique, sortable id for one process of a deployment or endpoint."""
    return f"{time.time_ns():x}-{uuid.uuid4().hex[:8]}"


def read_json(path: str | os.PathLike[str]) -> Any:
    """Parse the JSON file at ``path``; ``None`` when it does not exist."""
    try:
        with open(path, "rb") as handle:
            return orjson.loads(handle.read())
    except FileNotFoundError:
        return None


def write_json_atomic(path: str | os.PathLike[str], value: Any) -> None:
    """Write ``value`` as JSON to ``path`` so that readers see either the old file or the whole new one."""
    target = Path(path)
    handle, temporary = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "wb") as stream:
            stream.write(orjson.dumps(value, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS))
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(temporary, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise


def read_ready(process: dict[str, Any] | None) -> dict[str, Any] | None:
    """The ready file a server or router wrote for ``process``, or ``None`` before it is ready."""
    if not process or not process.get("ready_file"):
        return None
    try:
        ready = read_json(process["ready_file"])
    except (OSError, ValueError):
        return None
    return ready if isinstance(ready, dict) and ready.get("url") else None


def process_url(process: dict[str, Any] | None) -> str | None:
    """The URL ``process`` serves on: recorded once known, else read from its ready file."""
    if not process:
        return None
    if process.get("url"):
        return str(process["url"])
    ready = read_ready(process)
    return str(ready["url"]) if ready else None


class StateStore:
    """Reads and writes one state directory. Cheap to create; safe across threads and processes."""

    def __init__(self, home: str | os.PathLike[str]) -> None:
        self.home = Path(home)
        self.state_file = self.home / STATE_FILE
        self.lock_file = self.home / LOCK_FILE

    def __repr__(self) -> str:
        return f"StateStore({str(self.home)!r})"

    def ensure(self) -> None:
        """Create the state directory if needed."""
        try:
            self.home.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise DeploymentError(f"Cannot create the local state directory {self.home}: {exc}") from exc

    def stamp(self) -> tuple[int, int, int] | None:
        """What identifies the current document: every write replaces the file, which changes its
        inode, modification time or size. ``None`` when there is no state file."""
        try:
            info = os.stat(self.state_file)
        except OSError:
            return None
        return (info.st_ino, info.st_mtime_ns, info.st_size)

    def read(self) -> dict[str, Any]:
        """The current document, without taking the lock (``os.replace`` makes that safe)."""
        try:
            state = read_json(self.state_file)
        except OSError as exc:
            raise DeploymentError(f"Cannot read the local state file {self.state_file}: {exc}") from exc
        except ValueError as exc:
            raise DeploymentError(
                f"The local state file {self.state_file} is not valid JSON ({exc}); move it away to start "
                "afresh (running servers must then be stopped by hand)"
            ) from exc
        if state is None:
            return empty_state()
        return self._checked(state)

    def _checked(self, state: Any) -> dict[str, Any]:
        if not isinstance(state, dict) or not isinstance(state.get("version"), int):
            raise DeploymentError(f"The local state file {self.state_file} has no format version; it was not "
                                  "written by deployflow")
        if state["version"] > STATE_VERSION:
            raise DeploymentError(
                f"The local state file {self.state_file} has format version {state['version']}, newer than "
                f"this deployflow understands ({STATE_VERSION}); upgrade deployflow"
            )
        # Version 1 is the only one so far; an older version would be migrated here.
        state.setdefault("revision", 0)
        state.setdefault("deployments", {})
        state.setdefault("endpoints", {})
        return state

    @contextlib.contextmanager
    def transaction(self) -> Iterator[dict[str, Any]]:
        """Hold the lock and yield the document; what the block changes is written when it exits
        without an exception (and only if something changed)."""
        from filelock import FileLock, Timeout

        self.ensure()
        lock = FileLock(str(self.lock_file), timeout=LOCK_TIMEOUT)
        try:
            lock.acquire()
        except Timeout as exc:
            raise TransientError(
                f"Another process has held the lock {self.lock_file} for over {LOCK_TIMEOUT:g} s"
            ) from exc
        try:
            state = self.read()
            before = copy.deepcopy(state)
            yield state
            if state != before:
                state["revision"] = int(before.get("revision", 0)) + 1
                self.ensure()
                write_json_atomic(self.state_file, state)
        finally:
            lock.release()

    def generation_dir(self, kind: str, name: str, generation: str) -> Path:
        """The directory of one process: ``<home>/<kind>/<name>/<generation>``."""
        return self.home / kind / name / generation
