"""Side virtualenvs holding the real programs deployflow is compared with ("peers"), built by the tests.

The MLflow peer lives in ``.venv-peers/mlflow`` at the top of the repository: ``mlflow==3.17.2``, the
model libraries the comparison saves models with (scikit-learn, xgboost-cpu, lightgbm, at the versions
installed in the test environment itself, so a model saved over there loads the same way here), and
deployflow in editable mode with its ``local`` extra, so MLflow's CLI finds deployflow's
``mlflow.deployments`` entry points and the local target can start servers from that interpreter.

* Built once and reused: ``.stamp.json`` in the venv records the requirement set it was built from; a
  different set (a new pin, another version here) removes the venv and builds it again. The stamp is
  written last, so a build that was interrupted is never taken for a finished one.
* deployflow's own metadata (``pyproject.toml``: entry points, extras) is re-installed, not rebuilt,
  when it changes: its hash is kept in the stamp too.
* A lock file beside the venv makes parallel pytest processes wait for one build instead of racing.
* Progress goes to the pytest output (the first build downloads a few hundred MB and takes minutes); the
  whole pip log goes to ``.venv-peers/mlflow.build.log``.
* :class:`PeerUnavailable` (the caller skips) is raised only when pip could not reach the package index;
  any other failure raises :class:`PeerBuildError`, which fails the test.

The MLServer peer lives in ``.venv-peers/mlserver``: ``mlserver`` and ``mlserver-sklearn`` at
:data:`MLSERVER_VERSION`, with this environment's scikit-learn and numpy pinned, so a model trained and
saved with joblib here loads over there. It holds no deployflow (MLServer is the server the ``v2`` target
is tested against, not a client), so its stamp ignores ``pyproject.toml``. Built and reused by the same
rules as the MLflow peer. :func:`start_mlserver` runs ``mlserver start`` on 127.0.0.1 from it.

The tritonclient peer lives in ``.venv-peers/tritonclient``: ``tritonclient[http]`` at
:data:`TRITONCLIENT_VERSION`, a real V2 client for tests to run as a program (it brings gevent, which is
kept out of the test process).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

__all__ = [
    "MLFLOW_VERSION",
    "MLSERVER_VERSION",
    "PEERS_ROOT",
    "TRITONCLIENT_VERSION",
    "MLServerProcess",
    "Peer",
    "PeerBuildError",
    "PeerUnavailable",
    "mlflow_peer",
    "mlflow_requirements",
    "mlserver_peer",
    "mlserver_requirements",
    "progress_printer",
    "start_mlserver",
    "tritonclient_peer",
    "tritonclient_requirements",
]

REPO = Path(__file__).resolve().parents[2]
PEERS_ROOT = REPO / ".venv-peers"
MLFLOW_VERSION = "3.17.2"
MLSERVER_VERSION = "1.7.1"
TRITONCLIENT_VERSION = "2.73.0"

#: Words in pip's output that mean the package index could not be reached (not that a package is bad).
_UNREACHABLE_MARKERS = (
    "Failed to establish a new connection",
    "NewConnectionError",
    "Temporary failure in name resolution",
    "Name or service not known",
    "No route to host",
    "Network is unreachable",
    "Connection refused",
    "ConnectTimeoutError",
    "ReadTimeoutError",
    "Max retries exceeded",
    "ProxyError",
    "SSLError",
)

Report = Callable[[str], None]


class PeerUnavailable(RuntimeError):
    """The peer venv cannot be built here because the package index is unreachable (skip, not fail)."""


class PeerBuildError(RuntimeError):
    """Building the peer venv failed for a reason other than the network (a test failure)."""


@dataclass(frozen=True)
class Peer:
    """A built side venv."""

    root: Path

    @property
    def python(self) -> Path:
        return self.root / "bin" / "python"

    def bin(self, name: str) -> Path:
        """A console script of the venv (``mlflow``)."""
        return self.root / "bin" / name

    def environment(self, **extra: str) -> dict[str, str]:
        """An environment for the venv's programs: its bin first on PATH, nothing of this venv's
        interpreter leaking in (PYTHONPATH, PYTHONHOME), MLflow's telemetry off."""
        env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}
        env["PATH"] = f"{self.root / 'bin'}{os.pathsep}{env.get('PATH', '')}"
        env["VIRTUAL_ENV"] = str(self.root)
        env.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
        env.setdefault("DO_NOT_TRACK", "1")
        env.setdefault("GIT_PYTHON_REFRESH", "quiet")
        env.update(extra)
        return env

    def run(
        self, argv: Sequence[str | os.PathLike[str]], *, env: dict[str, str] | None = None, timeout: float = 300,
        cwd: str | os.PathLike[str] | None = None, check: bool = False,
    ) -> subprocess.CompletedProcess[str]:
        """Run ``argv`` (``["python", ...]`` or ``["mlflow", ...]`` name the venv's own) and capture its text."""
        first = str(argv[0])
        if first in ("python", "mlflow", "pip"):
            argv = [str(self.bin(first)), *map(str, argv[1:])]
        result = subprocess.run(
            list(map(str, argv)), env=env or self.environment(), cwd=cwd, timeout=timeout,
            capture_output=True, text=True, stdin=subprocess.DEVNULL, check=False,
        )
        if check and result.returncode != 0:
            raise AssertionError(
                f"{' '.join(map(str, argv))} exited with {result.returncode}\n"
                f"--- stdout ---\n{result.stdout}\n--- stderr ---\n{result.stderr}"
            )
        return result


def _pin_as_here(distribution: str) -> str:
    """``name==version`` when ``distribution`` is installed in this interpreter, else the bare name."""
    try:
        return f"{distribution}=={metadata.version(distribution)}"
    except metadata.PackageNotFoundError:
        return distribution


def mlflow_requirements() -> tuple[str, ...]:
    """What the MLflow peer is built from (the stamp compares this tuple)."""
    boosters = ["xgboost-cpu" if sys.platform == "linux" else "xgboost", "lightgbm"]
    return (
        f"mlflow=={MLFLOW_VERSION}",
        _pin_as_here("scikit-learn"),
        *(_pin_as_here(name) for name in boosters),
        f"-e {REPO}[local]",
        f"python {sys.version_info.major}.{sys.version_info.minor}",
    )


def mlserver_requirements() -> tuple[str, ...]:
    """What the MLServer peer is built from (the stamp compares this tuple)."""
    return (
        f"mlserver=={MLSERVER_VERSION}",
        f"mlserver-sklearn=={MLSERVER_VERSION}",
        _pin_as_here("scikit-learn"),
        _pin_as_here("numpy"),
        f"python {sys.version_info.major}.{sys.version_info.minor}",
    )


def tritonclient_requirements() -> tuple[str, ...]:
    """What the tritonclient peer is built from."""
    return (
        f"tritonclient[http]=={TRITONCLIENT_VERSION}",
        _pin_as_here("numpy"),
        f"python {sys.version_info.major}.{sys.version_info.minor}",
    )


def _project_hash() -> str:
    return hashlib.sha256((REPO / "pyproject.toml").read_bytes()).hexdigest()


def progress_printer(pytestconfig: object | None) -> Report:
    """A ``report`` function that prints through pytest's output capture (progress shows at once)."""
    manager = getattr(pytestconfig, "pluginmanager", None)
    capture = manager.getplugin("capturemanager") if manager is not None else None

    def report(line: str) -> None:
        if capture is not None:
            with capture.global_and_fixture_disabled():
                sys.stderr.write(f"[peers] {line}\n")
                sys.stderr.flush()
        else:
            sys.stderr.write(f"[peers] {line}\n")

    return report


_build_lock = threading.Lock()


def mlflow_peer(report: Report = print) -> Peer:
    """The MLflow peer venv, built or refreshed first when needed (see the module docstring)."""
    return _ensure(
        PEERS_ROOT / "mlflow", mlflow_requirements(), report,
        check="import mlflow, sklearn, xgboost, lightgbm, deployflow; print(mlflow.__version__)",
        holds_deployflow=True,
    )


def mlserver_peer(report: Report = print) -> Peer:
    """The MLServer peer venv (``mlserver start`` is ``peer.bin("mlserver")``), built first when needed."""
    return _ensure(
        PEERS_ROOT / "mlserver", mlserver_requirements(), report,
        check="import mlserver, mlserver_sklearn, sklearn; print(mlserver.__version__)",
        holds_deployflow=False,
    )


def tritonclient_peer(report: Report = print) -> Peer:
    """The tritonclient peer venv (``peer.run(["python", script, ...])``), built first when needed."""
    return _ensure(
        PEERS_ROOT / "tritonclient", tritonclient_requirements(), report,
        check="import tritonclient.http, numpy; print('ok')",
        holds_deployflow=False,
    )


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@dataclass
class MLServerProcess:
    """A running ``mlserver start DIR`` (see :func:`start_mlserver`)."""

    process: subprocess.Popen[bytes]
    url: str
    log: Path

    def log_text(self) -> str:
        try:
            return self.log.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return ""

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)


def start_mlserver(
    peer: Peer, directory: Path, *, ready_models: Sequence[str] = (), timeout: float = 180, attempts: int = 3,
) -> MLServerProcess:
    """Start MLServer on 127.0.0.1 serving the model folders under ``directory`` (each with its
    ``model-settings.json``), and wait until it is live and every model in ``ready_models`` is ready.

    ``settings.json`` is written here: host 127.0.0.1, free HTTP and gRPC ports, no metrics server, no
    parallel workers (models load in the server process). A port taken between choosing it and MLServer
    binding it is retried with new ports (up to ``attempts`` starts). The server's output goes to
    ``directory/mlserver.log``; a server that exits or is not ready in ``timeout`` seconds raises with
    that log's tail.
    """
    import urllib.error
    import urllib.request

    log = directory / "mlserver.log"
    for attempt in range(1, attempts + 1):
        port = free_port()
        settings = {
            "host": "127.0.0.1", "http_port": port, "grpc_port": free_port(), "metrics_endpoint": None,
            "parallel_workers": 0, "debug": False,
        }
        (directory / "settings.json").write_text(json.dumps(settings), encoding="utf-8")
        with log.open("wb") as sink:
            process = subprocess.Popen(
                [str(peer.bin("mlserver")), "start", str(directory)], stdout=sink, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL, env=peer.environment(), cwd=str(directory),
            )
        server = MLServerProcess(process, f"http://127.0.0.1:{port}", log)
        deadline = time.monotonic() + timeout
        waiting = ["/v2/health/live", *(f"/v2/models/{name}/ready" for name in ready_models)]
        while waiting and process.poll() is None and time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(server.url + waiting[0], timeout=5) as answer:
                    if answer.status == 200:
                        waiting.pop(0)
                        continue
            except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
                pass
            time.sleep(0.2)
        if not waiting:
            return server
        server.stop()
        text = server.log_text()
        if "address already in use" in text.lower() and attempt < attempts:
            continue
        state = f"exited with {process.returncode}" if process.returncode is not None else f"not ready in {timeout} s"
        raise PeerBuildError(f"MLServer in {directory} {state}; waiting for {waiting[0]}. Log tail:\n{text[-4000:]}")
    raise AssertionError("unreachable")


def _read_stamp(root: Path) -> dict | None:
    try:
        return json.loads((root / ".stamp.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _ensure(root: Path, requirements: tuple[str, ...], report: Report, *, check: str, holds_deployflow: bool) -> Peer:
    from filelock import FileLock

    PEERS_ROOT.mkdir(parents=True, exist_ok=True)
    peer = Peer(root)
    with _build_lock, FileLock(str(root) + ".lock"):
        stamp = _read_stamp(root)
        if stamp is not None and stamp.get("requirements") == list(requirements) and peer.python.exists():
            if holds_deployflow and stamp.get("project") != _project_hash():
                report(f"{root.name}: pyproject.toml changed; re-installing deployflow in {root}")
                _pip(peer, ["install", "-e", f"{REPO}[local]"], report, root)
                _write_stamp(root, requirements)
            return peer
        reason = "no finished build" if stamp is None else "the requirement set changed"
        report(f"{root.name}: building {root} ({reason}); the first build takes a few minutes")
        started = time.monotonic()
        if root.exists():
            shutil.rmtree(root)
        _run_step(report, root, [sys.executable, "-m", "venv", str(root)], "create the venv")
        args = ["install"]
        for requirement in requirements:
            if requirement.startswith("python "):
                continue
            args.extend(requirement.split(" ", 1) if requirement.startswith("-e ") else [requirement])
        _pip(peer, args, report, root)
        _run_step(
            report, root,
            [str(peer.python), "-c", check],
            "import the installed packages",
        )
        _write_stamp(root, requirements)
        report(f"{root.name}: built in {time.monotonic() - started:.0f} s")
        return peer


def _write_stamp(root: Path, requirements: tuple[str, ...]) -> None:
    text = json.dumps({"requirements": list(requirements), "project": _project_hash()}, indent=2)
    temporary = root / ".stamp.json.tmp"
    temporary.write_text(text, encoding="utf-8")
    os.replace(temporary, root / ".stamp.json")


def _log_path(root: Path) -> Path:
    return root.with_name(root.name + ".build.log")


def _run_step(report: Report, root: Path, argv: list[str], what: str) -> None:
    report(f"{root.name}: {what}")
    result = subprocess.run(argv, capture_output=True, text=True, stdin=subprocess.DEVNULL, check=False)
    with _log_path(root).open("a", encoding="utf-8") as log:
        log.write(f"$ {' '.join(argv)}\n{result.stdout}{result.stderr}\n")
    if result.returncode != 0:
        raise PeerBuildError(f"Building {root}: could not {what} (exit {result.returncode}):\n{result.stderr[-3000:]}")


def _pip(peer: Peer, args: list[str], report: Report, root: Path) -> None:
    """Run pip in the peer, streaming its log to a file and a short progress line every 15 s."""
    argv = [str(peer.python), "-m", "pip", "--disable-pip-version-check", "--no-input", *args]
    report(f"{root.name}: pip {' '.join(args)}  (log: {_log_path(root)})")
    started = time.monotonic()
    lines: list[str] = []
    collected = 0
    last_report = started
    with _log_path(root).open("a", encoding="utf-8") as log:
        log.write(f"$ {' '.join(argv)}\n")
        process = subprocess.Popen(
            argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, stdin=subprocess.DEVNULL,
            env=peer.environment(),
        )
        assert process.stdout is not None
        for line in process.stdout:
            log.write(line)
            lines.append(line)
            stripped = line.strip()
            if stripped.startswith("Collecting "):
                collected += 1
            if stripped.startswith(("Installing collected packages", "Successfully installed")):
                report(f"{root.name}: {stripped[:160]}{'...' if len(stripped) > 160 else ''}")
            elif time.monotonic() - last_report > 15:
                last_report = time.monotonic()
                report(f"{root.name}: {time.monotonic() - started:.0f} s, {collected} packages collected; {stripped[:100]}")
        code = process.wait()
    if code != 0:
        text = "".join(lines)
        tail = "".join(lines[-40:])
        gave_up = "Could not find a version" in text or "No matching distribution" in text or "ERROR: " not in text
        if gave_up and any(marker in text for marker in _UNREACHABLE_MARKERS):
            raise PeerUnavailable(
                f"the package index is unreachable, so the side venv {root} cannot be "
                f"built (pip said: {_first_marker_line(lines)}); see {_log_path(root)}"
            )
        raise PeerBuildError(f"pip {' '.join(args)} failed with exit {code} (log: {_log_path(root)}):\n{tail}")


def _first_marker_line(lines: list[str]) -> str:
    for line in lines:
        if any(marker in line for marker in _UNREACHABLE_MARKERS):
            return line.strip()[:300]
    return "?"


def main() -> int:
    """Build (or check) every peer venv: ``make test`` runs this in the background while the first tests
    run, so a fresh clone does not wait for the builds inside a test. A failure here is only printed:
    the test that needs the peer builds it again and reports the error itself."""
    failed = 0
    for build in (mlflow_peer, mlserver_peer, tritonclient_peer):
        try:
            build(lambda line: print(f"[peers] {line}", flush=True))
        except Exception as exc:  # PeerBuildError, PeerUnavailable: the test reports it
            failed += 1
            print(f"[peers] {build.__name__}: {type(exc).__name__}: {exc}", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
