"""The scoring server of the ``local`` target: one process per deployment, speaking MLflow's protocol.

Run as ``python -m deployflow.targets.local.server --spec /abs/path/spec.json``. The spec file is
described in :mod:`.spec`, the HTTP interface in :mod:`.app`, the overload bounds in :mod:`.limits`,
the metrics in :mod:`.metrics`. The bearer token, when there is one, arrives only in the environment
variable ``DEPLOYFLOW_SERVER_AUTH_TOKEN`` (never in a file or argv); the server removes it from its
environment once read, before it loads the model, so model code cannot see it.

Who may reach it: the server refuses (exit 2) to listen on an address beyond loopback without a token
unless the spec says ``allow_unauthenticated: true``, which it logs at WARNING (:mod:`.serving`).

Start-up order: validate the spec (exit 2 if invalid), load the model (exit 3 with the loader's message
if that fails), bind the socket itself, port 0 meaning "any free port" (exit 4 with
``cannot bind host:port: <reason>``), start serving, then write ``ready_file`` atomically with
``{"pid", "host", "port", "url", "flavor", "started_at"}`` (``started_at``: seconds since the epoch).
The socket listens before the ready file exists, so a client that connects early waits in the backlog
instead of being refused. SIGTERM or SIGINT stop accepting connections, let in-flight requests finish
(up to ``_GRACEFUL_SECONDS``) and exit with status 0. Logs go to stderr, which the parent redirects to
the deployment's log file.

While model threads run, the GIL switch interval is lowered to 1 ms, so the loop waits at most that long
for the GIL to send an answer. Two environment variables tune this for benchmarks:
``DEPLOYFLOW_SERVER_MODEL_THREADS`` (1) and ``DEPLOYFLOW_SERVER_SWITCH_INTERVAL`` (0.001).

``workers > 1``: this process binds the socket, checks that the model loads, then supervises worker
processes that share the socket (:mod:`.workers`); the ready file is written once every worker serves.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import socket
import sys
import time
import traceback
from collections.abc import Callable, Mapping
from typing import Any

from ...errors import InvalidInputError
from ...payloads import decode_request
from ...redaction import RedactingFilter, get_logger, register_secret
from ...retry import as_int, as_number
from .app import ScoringApp
from .model_threads import _Expired, _ModelThreads  # noqa: F401  (the names tests and older code import)
from .models import LoadedModel, load_model
from .openinference import signature_of
from .serving import (
    EXIT_BIND,
    EXIT_MODEL,
    EXIT_SPEC,
    BindError,
    SpecError,
    bind_socket,
    check_exposure,
    ready_record,
    run,
    uvicorn_config,
    write_ready_file,
)
from .spec import (
    LOG_LEVELS,
    SPEC_DEFAULTS,
    SPEC_VERSION,
    ServerSpec,
    parse_spec,
    read_spec_file,
)

__all__ = [
    "AUTH_TOKEN_ENV",
    "EXIT_BIND",
    "EXIT_MODEL",
    "EXIT_SPEC",
    "SPEC_DEFAULTS",
    "SPEC_VERSION",
    "BindError",
    "ModelLoadError",
    "ScoringApp",
    "ServerSpec",
    "SpecError",
    "bind_socket",
    "main",
    "parse_spec",
    "serve",
]

# Named explicitly: under "python -m" this file also runs as __main__ (see the end of the module).
_MODULE = "deployflow.targets.local.server"
_logger = get_logger(_MODULE)

#: The only way the bearer token reaches the server process.
AUTH_TOKEN_ENV = "DEPLOYFLOW_SERVER_AUTH_TOKEN"

# Seconds a stopping server gives in-flight requests before it cancels them.
_GRACEFUL_SECONDS = 10.0


def _tuning(name: str, default: float, coerce: Callable[[object, str], float]) -> float:
    """A benchmarking knob from the environment; a missing or unusable value keeps the default."""
    value = os.environ.get(name)
    if value is None:
        return default
    try:
        return coerce(value, f"environment variable {name}")
    except InvalidInputError:
        _logger.warning("ignoring %s=%r: not a usable value", name, value)
        return default


# Threads that run request jobs (spares are added while a call overruns, see .model_threads). For the
# sklearn benchmark, one thread used about 6 % less CPU per request than two and had a better p99.
_MODEL_THREADS = int(_tuning("DEPLOYFLOW_SERVER_MODEL_THREADS", 1,
                             lambda value, source: as_int(value, source, minimum=1, maximum=64)))
# The GIL switch interval while model threads run. The event loop needs the GIL briefly to read a
# request or send an answer while a model thread computes; CPython makes it wait up to the interval
# (5 ms by default), which lands directly on response latency. 1 ms keeps that wait small.
_SWITCH_INTERVAL = max(0.0001, _tuning("DEPLOYFLOW_SERVER_SWITCH_INTERVAL", 0.001,
                                       lambda value, source: as_number(value, source, positive=True)))


class ModelLoadError(InvalidInputError):
    """The model could not be loaded (process exit status 3)."""

    exit_code = EXIT_MODEL


# ------------------------------------------------------------------------------------------------------
# Process: logging, token, model, uvicorn


def configure_logging(level: str, *, force: bool = True) -> None:
    """Send log records to stderr, with secrets masked. With ``force=False``, only if nothing else did."""
    root = logging.getLogger()
    if not force and root.handlers:
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s [%(name)s] %(message)s"))
    handler.addFilter(RedactingFilter())
    for existing in list(root.handlers):
        root.removeHandler(existing)
    root.addHandler(handler)
    root.setLevel(LOG_LEVELS[level])


def take_auth_token(explicit: str | None) -> str | None:
    """The token (``explicit``, else the environment's), removed from the environment either way."""
    token = explicit if explicit is not None else os.environ.get(AUTH_TOKEN_ENV)
    os.environ.pop(AUTH_TOKEN_ENV, None)
    if token is not None:
        token = token.strip()
        if not token:
            return None
        register_secret(token)
    return token


def _warm_up() -> None:
    # payloads imports pandas on first use; pay that (about a second) before the ready file, not on the
    # first request, which a caller may be timing.
    try:
        decode_request(b'{"dataframe_split": {"columns": ["a"], "data": [[1.0]]}}', "application/json")
        decode_request(b'{"inputs": [[1.0]]}', "application/json")
    except Exception:  # noqa: BLE001 - warming up is best effort
        pass


def _load(spec: ServerSpec) -> LoadedModel:
    try:
        return load_model(spec.model_uri, spec.flavor)
    except InvalidInputError as exc:
        raise ModelLoadError(f"cannot load the model of deployment {spec.name!r}: {exc.message}") from exc
    except Exception as exc:  # an import error, a crash inside user code: still the model's fault
        raise ModelLoadError(
            f"cannot load the model of deployment {spec.name!r}: {type(exc).__name__}: {exc}"
        ) from exc


def build_app(spec: ServerSpec, token: str | None, model: LoadedModel | None = None) -> ScoringApp:
    """Load the model (unless given) and make the ASGI app with its limits and metrics."""
    from .metrics import server_metrics

    metrics = server_metrics(spec.name)
    started = time.perf_counter()
    if model is None:
        model = _load(spec)
    if metrics is not None:
        metrics.model_load.set(time.perf_counter() - started)
    _warm_up()
    return ScoringApp(
        model,
        max_request_bytes=spec.max_request_bytes,
        request_timeout=spec.request_timeout,
        auth_token=token,
        model_threads=_MODEL_THREADS,
        max_queue=spec.limits.max_queue,
        max_queued_bytes=spec.limits.max_queued_bytes,
        metrics=metrics,
        name=spec.name,
        signature=signature_of(spec.model_uri, model.flavor),
    )


async def serve_app(
    app: ScoringApp, spec: ServerSpec, sock: socket.socket, *, on_started: Callable[[], None] | None = None
) -> None:
    """Serve ``app`` on ``sock`` with uvicorn until SIGTERM or SIGINT; ``on_started`` once it listens."""
    import uvicorn

    config = uvicorn_config(app, spec.limits, log_level=LOG_LEVELS[spec.log_level],
                            graceful_seconds=_GRACEFUL_SECONDS, lifespan="off")
    server = uvicorn.Server(config)
    # uvicorn handles SIGTERM and SIGINT while it serves, then raises the signal again for the handler
    # that was there before: this one, which ignores it, so a graceful stop exits with status 0.
    handlers = {sig: signal.signal(sig, lambda *_: None) for sig in (signal.SIGTERM, signal.SIGINT)}
    previous_interval = sys.getswitchinterval()
    if spec.request_timeout is not None:
        sys.setswitchinterval(_SWITCH_INTERVAL)
    try:
        serving = asyncio.ensure_future(server.serve(sockets=[sock]))
        while not server.started:
            if serving.done():
                await serving
                raise SystemExit(1)
            await asyncio.sleep(0.005)
        if on_started is not None:
            on_started()
        await serving
    finally:
        sys.setswitchinterval(previous_interval)
        for sig, handler in handlers.items():
            signal.signal(sig, handler)


def serve(spec: Mapping[str, Any] | ServerSpec, *, auth_token: str | None = None) -> None:
    """Serve a model in the foreground until SIGINT or SIGTERM (used by ``run_local`` and by :func:`main`).

    ``spec`` has the keys of the spec file; ``auth_token`` defaults to ``$DEPLOYFLOW_SERVER_AUTH_TOKEN``.
    Raises :class:`SpecError`, :class:`ModelLoadError` or :class:`BindError` when the server cannot start.
    Configures logging to stderr unless the application already did.
    """
    server_spec = spec if isinstance(spec, ServerSpec) else parse_spec(spec)
    configure_logging(server_spec.log_level, force=False)
    token = take_auth_token(auth_token)
    check_exposure(server_spec.host, credential=token is not None, allowed=server_spec.allow_unauthenticated,
                   what=f"Deployment {server_spec.name!r}", logger=_logger)
    model = _load(server_spec)
    sock = bind_socket(server_spec.host, server_spec.port)
    try:
        if server_spec.workers == 1:
            app = build_app(server_spec, token, model)
            run(serve_app(app, server_spec, sock,
                          on_started=lambda: _announce(server_spec, sock, model.flavor, model.source)))
        else:
            flavor = model.flavor
            del model  # each worker loads its own copy; this one only proved that loading works
            _serve_many(server_spec, flavor, sock, token)
    finally:
        sock.close()


def _announce(spec: ServerSpec, sock: socket.socket, flavor: str, source: str) -> None:
    record = ready_record(spec.host, sock, flavor)
    if spec.ready_file:
        write_ready_file(spec.ready_file, record)
    _logger.info(
        "deployment %r serves %s (flavor %s) at %s, pid %d, %d worker(s)",
        spec.name,
        source,
        flavor,
        record["url"],
        record["pid"],
        spec.workers,
    )


def _serve_many(spec: ServerSpec, flavor: str, sock: socket.socket, token: str | None) -> None:
    from .workers import Supervisor, WorkerStartError

    supervisor = Supervisor(spec.to_dict(), sock, token, _GRACEFUL_SECONDS)
    try:
        supervisor.run(on_ready=lambda: _announce(spec, sock, flavor, spec.model_uri))
    except WorkerStartError as exc:
        raise ModelLoadError(f"deployment {spec.name!r}: {exc}") from exc


# ------------------------------------------------------------------------------------------------------
# Command line


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``python -m deployflow.targets.local.server --spec FILE``; returns the exit status."""
    parser = argparse.ArgumentParser(
        prog="python -m deployflow.targets.local.server",
        description="Serve one model with the MLflow scoring protocol (the local target's server process).",
    )
    parser.add_argument("--spec", required=True, help="absolute path of the spec JSON file")
    arguments = parser.parse_args(argv)
    log_level = "info"
    try:
        spec = read_spec_file(arguments.spec)
        log_level = spec.log_level
        configure_logging(spec.log_level)
        serve(spec)
    except (SpecError, ModelLoadError, BindError) as exc:
        print(f"deployflow server: {exc.message}", file=sys.stderr)
        if log_level in ("debug", "trace") and exc.__cause__ is not None:
            traceback.print_exception(exc.__cause__, file=sys.stderr)
        sys.stderr.flush()
        return exc.exit_code
    return 0


if __name__ == "__main__":
    # Run the copy imported under the package name, so a single set of classes and module state exists
    # (pickled objects, multi-worker factories and tests all refer to deployflow.targets.local.server).
    from deployflow.targets.local.server import main as _main

    sys.exit(_main())
