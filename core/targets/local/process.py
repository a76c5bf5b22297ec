"""Starting, checking and stopping the ``local`` target's server and router processes.

* Start: a fresh interpreter (``subprocess.Popen``, never a bare fork) running
  ``python -m <module> --spec <spec.json>`` in a new session, so Ctrl-C in the caller's terminal does not
  reach it and it outlives the caller. Output goes to a log file beside the spec. The process binds its
  own port and reports it in its ready file, so no port is chosen by one process and bound by another.
* Check: a pid is trusted only when the process with that pid was created at the recorded time and its
  command line names the recorded spec file; a pid reused by another program reads as "exited".
* Stop: SIGTERM (the server finishes in-flight requests), wait, then SIGKILL whatever of that process
  group is left, worker processes included, so nothing is left behind.
* Readiness: wait for the ready file and a ``/ping`` answer; when the process dies first, raise at once
  with the last lines of its log, classified by its exit code. The wait ends at ``startup_timeout`` or
  at the deadline of the :func:`deployflow.retry.operation` scope it runs in, whichever comes first.
* Reasons quote a line of the log. A line that is too long loses its middle, never its end: the end is
  where a server writes the exception that stopped it, and the paths before it can be long.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable

from ...errors import DeploymentFailedError, InvalidInputError, WaitTimeoutError
from ...redaction import get_logger, redact
from ...retry import current_budget
from .state import now_iso, read_ready, write_json_atomic

__all__ = [
    "AUTH_TOKEN_ENV",
    "MARKER_ENV",
    "EXIT_BAD_SPEC",
    "EXIT_MODEL_LOAD",
    "EXIT_CANNOT_BIND",
    "spawn",
    "is_running",
    "same_start",
    "start_times",
    "START_TIME_SLACK",
    "exit_reason",
    "stop",
    "wait_until_serving",
    "log_tail",
    "clip_middle",
]

logger = get_logger(__name__)

#: The environment variable through which a server receives its auth token (never argv, never disk).
AUTH_TOKEN_ENV = "DEPLOYFLOW_SERVER_AUTH_TOKEN"
#: Set in each process we start (and inherited by its workers): the path of its spec file.
MARKER_ENV = "DEPLOYFLOW_LOCAL_SPEC"

EXIT_BAD_SPEC = 2
EXIT_MODEL_LOAD = 3
EXIT_CANNOT_BIND = 4

_LOG_TAIL_LINES = 25
_LOG_TAIL_CHARS = 4000
#: The longest log line a reason quotes. Longer lines keep their start and, mostly, their end.
_LAST_LINE_CHARS = 1000
_CLIP_MARK = " [...] "

# Popen objects of the processes this interpreter started, so that dead children are reaped (a zombie
# would otherwise look alive to a pid check) and their exit codes are known.
_children: dict[int, subprocess.Popen[bytes]] = {}
_children_lock = threading.Lock()


def spawn(
    module: str,
    spec: dict[str, Any],
    directory: Path,
    *,
    log_name: str,
    generation: str,
    env_extra: dict[str, str] | None = None,
    reap_when_done: bool = False,
) -> dict[str, Any]:
    """Write ``spec`` to ``directory/spec.json`` and start ``python -m module --spec ...``.

    Returns the process record to store in the state. The auth token, if any, travels in
    ``env_extra`` only. ``reap_when_done`` collects the child's exit status as soon as it ends (for a
    short-lived helper nobody will check on), so it does not linger as a zombie of this process.
    """
    directory.mkdir(parents=True, exist_ok=True)
    spec_path = directory / "spec.json"
    log_path = directory / log_name
    write_json_atomic(spec_path, spec)
    env = dict(os.environ)
    env.pop(AUTH_TOKEN_ENV, None)  # never pass on a token the caller's own environment happens to hold
    env.update(env_extra or {})
    env[MARKER_ENV] = str(spec_path)
    env.setdefault("PYTHONUNBUFFERED", "1")
    argv = [sys.executable, "-m", module, "--spec", str(spec_path)]
    with open(log_path, "ab") as log:
        try:
            popen = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,
                close_fds=True,
            )
        except OSError as exc:
            raise DeploymentFailedError(f"Cannot start {module}: {exc}", reason=str(exc)) from exc
    with _children_lock:
        _children[popen.pid] = popen
    if reap_when_done:
        threading.Thread(target=popen.wait, name=f"reap-{popen.pid}", daemon=True).start()
    return {
        "pid": popen.pid,
        **start_times(popen.pid),
        "generation": generation,
        "dir": str(directory),
        "spec_path": str(spec_path),
        "ready_file": str(spec.get("ready_file", directory / "ready.json")),
        "log_path": str(log_path),
        "url": None,
        "started_at": now_iso(),
    }


#: How far a process's start time read now may be from the one recorded. Records keep it as seconds
#: since boot (``boot_start``), which no clock adjustment moves. Records from older versions have only
#: psutil's wall-clock ``create_time`` (the start since boot plus the boot time, which moves when the
#: clock is adjusted and is reported to the whole second), so those readings may differ by a second or
#: more. A pid reused by a newer process starts later than that, and a server's or router's record also
#: names its spec file, which no other process has on its command line.
START_TIME_SLACK = 2.0


def start_times(pid: int) -> dict[str, float | None]:
    """``{"create_time": ..., "boot_start": ...}`` of process ``pid`` (``None`` values when it is gone):
    what a record keeps to know the process again."""
    import psutil

    try:
        process = psutil.Process(pid)
        return {"create_time": process.create_time(), "boot_start": _since_boot(process)}
    except psutil.Error:
        return {"create_time": None, "boot_start": None}


def _since_boot(process: Any) -> float:
    import psutil

    # create_time() is the start since boot plus the boot time read with it; taking the boot time off
    # again leaves the start since boot (to a clock tick), whatever the wall clock did meanwhile.
    return round(process.create_time() - psutil.boot_time(), 3)


def same_start(process: Any, boot_start: float | None, create_time: float | None = None) -> bool:
    """Whether ``process`` (a ``psutil.Process``) started when a record says: ``boot_start`` (seconds
    since boot) when it has one, else its older wall-clock ``create_time``; ``True`` with neither."""
    if boot_start is not None:
        return abs(_since_boot(process) - float(boot_start)) <= 0.5
    return create_time is None or abs(process.create_time() - float(create_time)) <= START_TIME_SLACK




def _child_exit_code(pid: int, wait: float = 0.0) -> int | None:
    """The exit code of a child of this interpreter once it ended (reaping it), else ``None``.

    ``wait`` gives a child that is on its way out (its command line already gone, not yet a zombie)
    that many seconds to finish exiting.
    """
    with _children_lock:
        popen = _children.get(pid)
    if popen is None:
        return None
    if wait > 0:
        try:
            return popen.wait(timeout=wait)
        except subprocess.TimeoutExpired:
            return None
    return popen.poll()


def _verified(record: dict[str, Any] | None) -> Any:
    """The ``psutil.Process`` of ``record`` if it is still that very process and alive, else ``None``."""
    import psutil

    if not record or not isinstance(record.get("pid"), int):
        return None
    pid = record["pid"]
    with _children_lock:
        popen = _children.get(pid)
    if popen is not None:
        # A child of this interpreter keeps its pid until it is reaped here: it is that very process
        # while it runs, whatever /proc says of it at this instant (right after the start its command
        # line still reads empty, which once made a starting server look dead and get stopped).
        if popen.poll() is not None:
            return None
        try:
            return psutil.Process(pid)
        except psutil.Error:
            return None
    try:
        process = psutil.Process(pid)
        if process.status() == psutil.STATUS_ZOMBIE:
            return None
        if not same_start(process, record.get("boot_start"), record.get("create_time")):
            return None  # the pid now belongs to a newer process
        # The command line reads empty for a few milliseconds after the process was started (it is
        # still being exec'd): then the start time alone says whether it is ours.
        command_line = process.cmdline()
        if record.get("spec_path") and command_line and record["spec_path"] not in command_line:
            return None
        return process
    except psutil.Error:
        return None


def is_running(record: dict[str, Any] | None) -> bool:
    """Whether the process of ``record`` is alive and really is the one we started."""
    return _verified(record) is not None


def exit_reason(record: dict[str, Any], what: str = "server") -> str:
    """Why the process of ``record`` is not running, for a FAILED status."""
    pid = record.get("pid")
    code = _child_exit_code(pid) if isinstance(pid, int) else None
    reason = f"{what} process {pid} exited"
    if code is not None:
        reason += f" with code {code}" if code >= 0 else f" (killed by signal {-code})"
    last = _last_line(record.get("log_path"))
    if last:
        reason += f"; last log line: {last}"
    if record.get("log_path"):
        reason += f" (log: {record['log_path']})"
    return reason


def _group_members(record: dict[str, Any]) -> list[Any]:
    """Every live process we started for ``record``: the leader and its workers (same session and marker)."""
    import psutil

    pid = record.get("pid")
    spec_path = record.get("spec_path")
    if not isinstance(pid, int) or not spec_path:
        return []
    members = []
    leader = _verified(record)
    if leader is not None:
        members.append(leader)
    for process in psutil.process_iter():
        if process.pid == pid:
            continue
        try:
            if os.getpgid(process.pid) != pid:
                continue
            if process.environ().get(MARKER_ENV) != spec_path:
                continue
            if process.status() == psutil.STATUS_ZOMBIE:
                continue
            members.append(process)
        except (psutil.Error, OSError):
            continue
    return members


def stop(record: dict[str, Any] | None, timeout: float = 30.0) -> None:
    """Stop the process of ``record`` and its workers: SIGTERM, wait up to ``timeout`` s, then SIGKILL.

    A no-op for a process that already ended or whose pid now belongs to someone else.
    """
    if not record:
        return
    members = _group_members(record)
    if not members:
        _reap(record)
        return
    leader_alive = any(member.pid == record["pid"] for member in members)
    # The leader (uvicorn) shuts its workers down itself; only without it do the workers get the signal.
    for member in members:
        if member.pid == record["pid"] or not leader_alive:
            _signal(member, signal.SIGTERM)
    alive = _wait_gone(members, timeout)
    if alive:
        logger.warning("Process(es) %s did not stop within %g s; killing them", [p.pid for p in alive], timeout)
        for member in alive:
            _signal(member, signal.SIGKILL)
        _wait_gone(alive, 5.0)
    _reap(record)


def _wait_gone(processes: list[Any], timeout: float) -> list[Any]:
    """Wait until every process ended; returns those still running after ``timeout`` s.

    A zombie counts as ended: when another process started it, only that parent can reap it, and
    ``psutil.wait_procs`` would wait for it until the timeout.
    """
    import psutil

    deadline = time.monotonic() + timeout
    remaining = list(processes)
    delay = 0.01
    while True:
        still = []
        for process in remaining:
            if _child_exit_code(process.pid) is not None:
                continue
            try:
                if process.is_running() and process.status() != psutil.STATUS_ZOMBIE:
                    still.append(process)
            except psutil.Error:
                continue
        remaining = still
        if not remaining or time.monotonic() >= deadline:
            return remaining
        time.sleep(min(delay, max(0.0, deadline - time.monotonic())))
        delay = min(delay * 2, 0.1)


def _signal(process: Any, signum: int) -> None:
    import psutil

    try:
        process.send_signal(signum)
    except psutil.Error:
        pass


def _reap(record: dict[str, Any]) -> None:
    pid = record.get("pid")
    with _children_lock:
        popen = _children.get(pid) if isinstance(pid, int) else None
    if popen is not None:
        try:
            popen.wait(timeout=1.0)
        except subprocess.TimeoutExpired:
            return
        with _children_lock:
            _children.pop(pid, None)


def log_tail(path: str | None, lines: int = _LOG_TAIL_LINES) -> str:
    """The last ``lines`` lines of the log at ``path`` (redacted, at most a few KiB)."""
    if not path:
        return ""
    try:
        with open(path, "rb") as handle:
            handle.seek(0, os.SEEK_END)
            size = handle.tell()
            handle.seek(max(0, size - 64 * 1024))
            text = handle.read().decode("utf-8", "replace")
    except OSError:
        return ""
    tail = "\n".join(text.rstrip().splitlines()[-lines:])
    if len(tail) > _LOG_TAIL_CHARS:
        tail = "..." + tail[-_LOG_TAIL_CHARS:]
    return redact(tail)


def clip_middle(text: str, limit: int) -> str:
    """``text`` if it has at most ``limit`` characters, else its start and its end with ``[...]`` between.

    The end gets three quarters of the room: an error line ends with the exception, which is what a
    reader needs, while its start (which step failed, for which file) can be long with deep paths.
    """
    if len(text) <= limit:
        return text
    room = max(limit - len(_CLIP_MARK), 2)
    head = room // 4
    return text[:head] + _CLIP_MARK + text[len(text) - (room - head):]


def _last_line(path: str | None) -> str:
    tail = log_tail(path, lines=1)
    return clip_middle(tail.strip(), _LAST_LINE_CHARS)


def _error_lines(tail: str) -> str:
    """The child's own explanation: the last line, which is where a server prints its fatal error."""
    lines = [line for line in tail.splitlines() if line.strip()]
    if not lines:
        return "(the process printed nothing)"
    last = lines[-1].strip()
    for prefix in ("deployflow server: ", "deployflow router: "):
        last = last.removeprefix(prefix)
    return last


def wait_until_serving(
    record: dict[str, Any],
    *,
    what: str,
    timeout: float,
    ping: Callable[[str], bool],
) -> dict[str, Any]:
    """Block until the process of ``record`` wrote its ready file and answers ``ping(url)``.

    Returns the ready file's content. Fails fast when the process dies: exit code 2 (spec refused),
    3 (model cannot be loaded) and 4 (cannot bind the address) raise
    :class:`~deployflow.errors.InvalidInputError` with the child's own message; any other death raises
    :class:`~deployflow.errors.DeploymentFailedError` with the end of its log. After ``timeout`` s, or
    at the deadline of the enclosing :func:`deployflow.retry.operation` scope when that comes first
    (the one deadline of a pipeline step), the process is stopped and
    :class:`~deployflow.errors.WaitTimeoutError` raised. In every failure case the process is gone when
    this returns.
    """
    limit, by_caller = timeout, False
    budget = current_budget()
    left = budget.remaining_seconds() if budget is not None else None
    if left is not None and left < timeout:
        limit, by_caller = max(0.0, left), True
    deadline = time.monotonic() + limit
    interval = 0.02
    while True:
        ready = read_ready(record)
        if ready is not None and ping(str(ready["url"])):
            return ready
        if not is_running(record):
            raise _death_error(record, what)
        if time.monotonic() >= deadline:
            tail = log_tail(record.get("log_path"))
            stop(record, timeout=5.0)
            if by_caller:
                why = (
                    f"did not serve by the caller's deadline ({limit:.3g} s were left of it; give the step "
                    "or call a longer timeout if the model is slow to load)"
                )
            else:
                why = (
                    f"did not serve within {timeout:g} s (raise config key 'startup_timeout' if the model is "
                    "slow to load)"
                )
            raise WaitTimeoutError(f"{what} {why}; it was stopped. Last lines of its log:\n{tail or '(empty)'}")
        time.sleep(min(interval, max(0.0, deadline - time.monotonic())))
        interval = min(interval * 1.5, 0.2)


def _death_error(record: dict[str, Any], what: str) -> Exception:
    pid = record.get("pid")
    code = _child_exit_code(pid, wait=2.0) if isinstance(pid, int) else None
    stop(record, timeout=5.0)  # workers of a dead leader, if any
    tail = log_tail(record.get("log_path"))
    cause = _error_lines(tail)
    # The log file goes away with the failed process's directory, so its end travels in the message.
    more_than_cause = len([line for line in tail.splitlines() if line.strip()]) > 1
    details = f"\nLast lines of its log:\n{tail}" if more_than_cause else ""
    if code == EXIT_MODEL_LOAD:
        return InvalidInputError(f"{what} could not load its model: {cause}{details}")
    if code == EXIT_CANNOT_BIND:
        return InvalidInputError(f"{what} could not listen on its address: {cause}{details}")
    if code == EXIT_BAD_SPEC:
        return InvalidInputError(f"{what} refused its settings: {cause}{details}")
    how = f"exit code {code}" if code is not None and code >= 0 else (
        f"signal {-code}" if code is not None else "unknown exit status"
    )
    reason = f"process {pid} exited ({how}) before it was ready: {cause}"
    return DeploymentFailedError(f"{what} failed: {reason}{details}", reason=reason)
