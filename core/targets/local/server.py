"""The scoring server of the ``local`` target: one process per deployment, speaking MLflow's protocol.

Run as ``python -m deployflow.targets.local.server --spec /abs/path/spec.json``. The spec file::

    {"version": 1, "name": "iris", "model_uri": "/models/iris.pkl", "flavor": null,
     "host": "127.0.0.1", "port": 0, "workers": 1, "max_request_bytes": 104857600,
     "request_timeout": 60.0, "ready_file": "/abs/path/ready.json", "log_level": "info"}

``version``, ``name`` and ``model_uri`` are required; the other keys take the defaults shown
(``ready_file`` defaults to none, ``request_timeout: null`` turns the time limit off). Unknown keys are
logged and ignored, so an older server tolerates a newer spec. The bearer token, when there is one,
arrives only in the environment variable ``DEPLOYFLOW_SERVER_AUTH_TOKEN`` (never in a file or argv);
the server removes it from its environment once read (single worker), so model code cannot see it.

Start-up order: validate the spec (exit 2 if invalid), load the model (exit 3 with the loader's message
if that fails), bind the socket itself, port 0 meaning "any free port" (exit 4 with
``cannot bind host:port: <reason>``), start serving, then write ``ready_file`` atomically with
``{"pid", "host", "port", "url", "flavor", "started_at"}``. The socket listens before the ready file
exists, so a client that connects early waits in the backlog instead of being refused. SIGTERM or
SIGINT stop accepting connections, let in-flight requests finish (up to ``_GRACEFUL_SECONDS``) and exit
with status 0. Logs go to stderr, which the parent redirects to the deployment's log file.

HTTP interface (as ``mlflow models serve``, see :mod:`deployflow.payloads` for the body rules):

================================  ============================================================
``GET /ping``, ``GET /health``    200, body ``"\\n"``: the model is loaded. Never needs the token,
                                  so readiness probes work without it.
``GET /version``                  the deployflow version, as plain text. Needs the token if set.
``POST /invocations``             JSON (four input forms and ``params``) or CSV; answers
                                  ``{"predictions": ...}``. Needs the token if set.
================================  ============================================================

As in MLflow, ``NaN``, ``Infinity`` and ``-Infinity`` are read in request bodies and written as those
tokens in answers.

Errors are JSON ``{"error_code": ..., "message": ...}`` except 415, which is plain text as in MLflow:
400 ``BAD_REQUEST`` for a malformed body, and for an exception raised by the model (as MLflow: the model
is told bad input; an exception carrying its own ``error_code`` and HTTP status keeps them; when the
input was a frame with text columns, the message adds that categoricals and datetimes arrive as their
values and ISO-8601 strings, see :mod:`deployflow.payloads`); 400 with the error's own code
(``INVALID_PARAMETER_VALUE``, or ``BAD_REQUEST`` for text that cannot be read as its type) and message
for an input or params that do not fit an MLflow model's signature (:mod:`.enforcement`), 401
``UNAUTHENTICATED``, 404 ``ENDPOINT_NOT_FOUND``, 405 for a wrong method, 413
``RESOURCE_LIMIT_EXCEEDED`` for a body over ``max_request_bytes`` (checked on Content-Length before
reading, and counted while reading chunked bodies), 415 for a Content-Type other than JSON or CSV in
UTF-8 (including none at all), 500 ``INTERNAL_ERROR`` when the predictions cannot be written as JSON,
504 ``DEADLINE_EXCEEDED`` when decoding, predicting and encoding take longer than ``request_timeout``.

Design: a bare ASGI callable (no framework) under uvicorn with httptools and uvloop, no access log.
The per-request job (decode, predict, encode) runs on a daemon model thread, so the event loop
stays free to answer ``/ping`` and to send the 504 when a call overruns. The handoff is a queue put and
one ``call_soon_threadsafe`` back, about 40 µs per request on this project's 2-core machine, against
about 100 µs for ``loop.run_in_executor`` wrapped in ``asyncio.wait_for``; the time limit is a
``loop.call_later`` timer rather than ``wait_for``, for the same reason. Inline calls (no thread) were
about 10 % faster for the sklearn benchmark, but a time limit cannot be enforced while the model holds
the loop, so inline is used only with ``request_timeout: null``. While model threads run, the GIL
switch interval is lowered to 1 ms, so the loop waits at most that long for the GIL to send an answer.
Two environment variables tune this for benchmarks: ``DEPLOYFLOW_SERVER_MODEL_THREADS`` (1) and
``DEPLOYFLOW_SERVER_SWITCH_INTERVAL`` (0.001). A call that overruns cannot be
interrupted: it finishes in its thread and its result is dropped, while a spare thread serves the
requests behind it; daemon threads never keep a stopping server alive.

``workers > 1``: this process binds the socket, checks that the model loads, then runs uvicorn's
process supervisor; each worker (a fresh ``spawn`` process) loads the model itself and serves on the
shared socket. The ready file is written once every worker answers uvicorn's readiness check.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hmac
import json
import logging
import math
import os
import queue
import signal
import socket
import sys
import threading
import time
import traceback
from collections.abc import Awaitable, Callable, Iterator, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from ... import __version__
from ...errors import ConflictError, InvalidInputError
from ...payloads import UnsupportedMediaTypeError, check_content_type, decode_request, encode_response
from ...redaction import RedactingFilter, get_logger, register_secret
from .enforcement import SignatureError
from .models import LoadedModel, load_model, normalize_flavor

__all__ = [
    "AUTH_TOKEN_ENV",
    "EXIT_SPEC",
    "EXIT_MODEL",
    "EXIT_BIND",
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

SPEC_VERSION = 1
#: The only way the bearer token reaches the server process.
AUTH_TOKEN_ENV = "DEPLOYFLOW_SERVER_AUTH_TOKEN"
# Where a multi-worker parent hands the validated spec to its spawned workers.
_WORKER_SPEC_ENV = "DEPLOYFLOW_SERVER_WORKER_SPEC"

EXIT_SPEC = 2
EXIT_MODEL = 3
EXIT_BIND = 4

SPEC_DEFAULTS: dict[str, Any] = {
    "flavor": None,
    "host": "127.0.0.1",
    "port": 0,
    "workers": 1,
    "max_request_bytes": 100 * 1024 * 1024,
    "request_timeout": 60.0,
    "ready_file": None,
    "log_level": "info",
}
_REQUIRED_KEYS = ("version", "name", "model_uri")
_LOG_LEVELS = {"critical": 50, "error": 40, "warning": 30, "info": 20, "debug": 10, "trace": 5}

# Seconds a stopping server gives in-flight requests before it cancels them.
_GRACEFUL_SECONDS = 10.0
# Threads that run request jobs (spares are added while a call overruns, see _ModelThreads). For the
# sklearn benchmark, one thread used about 6 % less CPU per request than two and had a better p99.
_MODEL_THREADS = 1
# The GIL switch interval while model threads run. The event loop needs the GIL briefly to read a
# request or send an answer while a model thread computes; CPython makes it wait up to the interval
# (5 ms by default), which lands directly on response latency. 1 ms keeps that wait small.
_SWITCH_INTERVAL = 0.001
# Seconds a multi-worker parent waits for each worker to load the model and serve.
_WORKER_START_SECONDS = 600.0


def _tuning(name: str, default: float, minimum: float) -> float:
    """A tuning knob from the environment; a missing or unusable value keeps the default."""
    try:
        value = float(os.environ.get(name, default))
    except ValueError:
        return default
    return value if math.isfinite(value) and value >= minimum else default


# Benchmarking knobs, not part of the spec: model threads and the GIL switch interval (seconds).
_MODEL_THREADS = int(_tuning("DEPLOYFLOW_SERVER_MODEL_THREADS", _MODEL_THREADS, 1))
_SWITCH_INTERVAL = _tuning("DEPLOYFLOW_SERVER_SWITCH_INTERVAL", _SWITCH_INTERVAL, 0.0001)


class SpecError(InvalidInputError):
    """The server spec is missing, unreadable or invalid (process exit status 2)."""

    exit_code = EXIT_SPEC


class ModelLoadError(InvalidInputError):
    """The model could not be loaded (process exit status 3)."""

    exit_code = EXIT_MODEL


class BindError(ConflictError):
    """The listening socket could not be bound (process exit status 4)."""

    exit_code = EXIT_BIND


# ------------------------------------------------------------------------------------------------------
# Spec


@dataclass(frozen=True)
class ServerSpec:
    """A validated server spec (see the module docstring for the keys)."""

    name: str
    model_uri: str
    flavor: str | None = None
    host: str = "127.0.0.1"
    port: int = 0
    workers: int = 1
    max_request_bytes: int = 100 * 1024 * 1024
    request_timeout: float | None = 60.0
    ready_file: str | None = None
    log_level: str = "info"
    version: int = SPEC_VERSION

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _spec_error(key: str, expected: str, value: Any) -> SpecError:
    return SpecError(f"invalid server spec: {key!r} must be {expected}, got {value!r}")


def _int_key(spec: Mapping[str, Any], key: str, minimum: int, maximum: int | None = None) -> int:
    value = spec[key]
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum or (
        maximum is not None and value > maximum
    ):
        bounds = f"an integer >= {minimum}" if maximum is None else f"an integer from {minimum} to {maximum}"
        raise _spec_error(key, bounds, value)
    return value


def parse_spec(raw: Any) -> ServerSpec:
    """Validate a spec dict (as read from spec.json) and return a :class:`ServerSpec`.

    Raises :class:`SpecError` naming the first key that is missing or wrong.
    """
    if not isinstance(raw, Mapping):
        raise SpecError(f"invalid server spec: expected a JSON object, got {type(raw).__name__}")
    missing = [key for key in _REQUIRED_KEYS if key not in raw]
    if missing:
        raise SpecError(f"invalid server spec: missing key(s) {', '.join(missing)}")
    unknown = sorted(set(raw) - set(_REQUIRED_KEYS) - set(SPEC_DEFAULTS))
    if unknown:
        _logger.warning("server spec: ignoring unknown key(s) %s", ", ".join(unknown))
    spec = {**SPEC_DEFAULTS, **{key: raw[key] for key in raw if key not in unknown}}

    if spec["version"] != SPEC_VERSION or isinstance(spec["version"], bool):
        raise SpecError(
            f"invalid server spec: version {spec['version']!r} is not supported (this server reads version "
            f"{SPEC_VERSION}); the server and the library that wrote the spec are out of step"
        )
    for key in ("name", "model_uri", "host"):
        if not isinstance(spec[key], str) or not spec[key].strip():
            raise _spec_error(key, "a non-empty string", spec[key])
    try:
        flavor = normalize_flavor(spec["flavor"])
    except InvalidInputError as exc:
        raise SpecError(f"invalid server spec: {exc}") from exc
    port = _int_key(spec, "port", 0, 65535)
    workers = _int_key(spec, "workers", 1, 64)
    max_request_bytes = _int_key(spec, "max_request_bytes", 1)
    timeout = spec["request_timeout"]
    if timeout is not None:
        if (
            isinstance(timeout, bool)
            or not isinstance(timeout, (int, float))
            or not math.isfinite(timeout)
            or timeout <= 0
        ):
            raise _spec_error("request_timeout", "a positive number of seconds or null", timeout)
        timeout = float(timeout)
    ready_file = spec["ready_file"]
    if ready_file is not None:
        if not isinstance(ready_file, str) or not os.path.isabs(ready_file):
            raise _spec_error("ready_file", "an absolute path or null", ready_file)
        if not os.path.isdir(os.path.dirname(ready_file)):
            raise _spec_error("ready_file", "a path in an existing directory", ready_file)
    log_level = spec["log_level"]
    if not isinstance(log_level, str) or log_level.lower() not in _LOG_LEVELS:
        raise _spec_error("log_level", "one of " + ", ".join(_LOG_LEVELS), log_level)
    return ServerSpec(
        name=spec["name"],
        model_uri=spec["model_uri"],
        flavor=flavor,
        host=spec["host"].strip(),
        port=port,
        workers=workers,
        max_request_bytes=max_request_bytes,
        request_timeout=timeout,
        ready_file=ready_file,
        log_level=log_level.lower(),
    )


def read_spec_file(path: str | os.PathLike[str]) -> ServerSpec:
    """Read and validate a spec file; raises :class:`SpecError`."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise SpecError(f"cannot read server spec {str(path)!r}: {exc.strerror or exc}") from exc
    try:
        raw = json.loads(text)
    except ValueError as exc:
        raise SpecError(f"server spec {str(path)!r} is not valid JSON: {exc}") from exc
    return parse_spec(raw)


# ------------------------------------------------------------------------------------------------------
# Responses

Send = Callable[[dict[str, Any]], Awaitable[None]]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Response = tuple[int, list[tuple[bytes, bytes]], bytes]

_JSON_TYPE = (b"content-type", b"application/json")
_TEXT_TYPE = (b"content-type", b"text/plain; charset=utf-8")
_CLOSE = (b"connection", b"close")


def _json_error(status: int, error_code: str, message: str, *extra: tuple[bytes, bytes]) -> Response:
    body = json.dumps({"error_code": error_code, "message": message}).encode("utf-8")
    return status, [_JSON_TYPE, (b"content-length", str(len(body)).encode()), *extra], body


def _text(status: int, text: str) -> Response:
    body = text.encode("utf-8")
    return status, [_TEXT_TYPE, (b"content-length", str(len(body)).encode())], body


def _ok_json(body: bytes) -> Response:
    return 200, [_JSON_TYPE, (b"content-length", str(len(body)).encode())], body


async def _send(send: Send, response: Response) -> None:
    status, headers, body = response
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


_PING: Response = (200, [_JSON_TYPE, (b"content-length", b"1")], b"\n")
_ROUTES_HINT = "this server answers GET /ping, GET /health, GET /version and POST /invocations"


# Added to the 400 for a model that failed on a frame with text columns: the likely cause is a dtype
# that JSON cannot carry (the table in deployflow.payloads).
_DTYPES_NOTE = (
    " Note: JSON carries no dtypes, so categorical columns arrive as their values and datetimes as "
    "ISO-8601 strings; a model that needs category or datetime64 columns must convert them itself."
)


def _has_text_columns(data: Any) -> bool:
    dtypes = getattr(data, "dtypes", None)
    if dtypes is None or not hasattr(data, "columns"):
        return False
    return any(getattr(dtype, "kind", "") == "O" for dtype in dtypes)


def _model_error(exc: BaseException, data: Any = None) -> Response:
    """The answer for an exception raised by the model (MLflow's rules, see the module docstring)."""
    code = getattr(exc, "error_code", None)
    status: Any = None
    get_status = getattr(exc, "get_http_status_code", None)  # MlflowException
    if callable(get_status):
        with contextlib.suppress(Exception):
            status = get_status()
    if status is None:
        status = getattr(exc, "status_code", None)  # DeploymentError
    detail = f"{type(exc).__name__}: {exc}"
    if isinstance(code, str) and code and isinstance(status, int) and 400 <= status <= 599:
        return _json_error(status, code, f"The model rejected the input: {detail}")
    return _json_error(
        400,
        "BAD_REQUEST",
        "Encountered an unexpected error while evaluating the model. Verify that the input is compatible "
        f"with the model for inference. Error: {detail}" + (_DTYPES_NOTE if _has_text_columns(data) else ""),
    )


class _Expired(Exception):
    """Raised into a request's future when its time limit passes."""


def _resolve(future: asyncio.Future[Any], result: Any) -> None:
    if not future.done():
        future.set_result(result)


def _reject(future: asyncio.Future[Any], exc: BaseException) -> None:
    if not future.done():
        future.set_exception(exc)


class _Job:
    """One request's work for a model thread."""

    __slots__ = ("future", "function", "args", "running", "overran")

    def __init__(self, future: asyncio.Future[Any], function: Callable[..., Any], args: tuple[Any, ...]) -> None:
        self.future = future
        self.function = function
        self.args = args
        self.running = False
        self.overran = False


class _ModelThreads:
    """Daemon threads that run request jobs and hand results back to the event loop.

    Cheaper than ``loop.run_in_executor`` (no concurrent.futures bookkeeping, one wake-up each way), and
    daemon threads never hold up the exit of a server whose model call hangs.

    One thread by default: for models that hold the GIL, more threads only fight over it (measured: more
    CPU per request and a worse p99). A thread whose call passes its time limit is stuck until the call
    returns, so the pool keeps ``count`` threads that are not stuck: a spare starts when a running call
    overruns, and a thread retires when a stuck call ends and the pool is larger than needed. At most
    ``spare_limit`` spares exist, so a model that always hangs cannot make the server start threads
    without end. The counters change under one lock, taken twice per job (well under a microsecond).
    """

    def __init__(self, loop: asyncio.AbstractEventLoop, count: int, spare_limit: int = 8) -> None:
        self._loop = loop
        self._jobs: queue.SimpleQueue[_Job] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._wanted = count
        self._limit = count + spare_limit
        self._alive = count
        self._stuck = 0
        self._started = 0
        for _ in range(count):
            self._start_thread()

    def _start_thread(self) -> None:
        self._started += 1
        name = f"deployflow-model-{self._started}"
        threading.Thread(target=self._work, name=name, daemon=True).start()

    def submit(self, function: Callable[..., Any], *args: Any) -> _Job:
        job = _Job(self._loop.create_future(), function, args)
        self._jobs.put(job)
        return job

    def expire(self, job: _Job) -> None:
        """The job's time limit passed (called in the event loop): fail it, and cover for a stuck thread."""
        with self._lock:
            if job.future.done():
                return
            job.future.set_exception(_Expired())
            if not job.running:
                return  # still queued: no thread will start it
            job.overran = True
            self._stuck += 1
            if self._alive - self._stuck >= self._wanted:
                return
            if self._alive >= self._limit:
                _logger.warning("every model thread is stuck in a call past its time limit; requests will queue")
                return
            self._alive += 1
            self._start_thread()

    def _work(self) -> None:
        loop = self._loop
        jobs = self._jobs
        lock = self._lock
        while True:
            job = jobs.get()
            with lock:
                if job.future.done():  # its time ran out while it queued: do not start it at all
                    continue
                job.running = True
            try:
                result = job.function(*job.args)
            except BaseException as exc:  # handed to the request, which decides the answer
                callback, value = _reject, exc
            else:
                callback, value = _resolve, result
            try:
                loop.call_soon_threadsafe(callback, job.future, value)
            except RuntimeError:  # the loop closed while the job ran: nobody is waiting any more
                return
            with lock:
                job.running = False
                if job.overran:
                    self._stuck -= 1
                if self._alive - self._stuck > self._wanted:  # a spare covered for this thread: retire
                    self._alive -= 1
                    return


# ------------------------------------------------------------------------------------------------------
# The ASGI application


class ScoringApp:
    """The ASGI callable serving one loaded model with MLflow's scoring protocol."""

    def __init__(
        self,
        model: LoadedModel,
        *,
        max_request_bytes: int = SPEC_DEFAULTS["max_request_bytes"],
        request_timeout: float | None = SPEC_DEFAULTS["request_timeout"],
        auth_token: str | None = None,
        model_threads: int = _MODEL_THREADS,
    ) -> None:
        self.model = model
        self.max_request_bytes = max_request_bytes
        self.request_timeout = request_timeout
        self._token = auth_token.encode("utf-8") if auth_token else None
        self._model_threads = model_threads
        self._threads: _ModelThreads | None = None
        self._version: Response = _text(200, __version__)
        self._too_large = _json_error(
            413,
            "RESOURCE_LIMIT_EXCEEDED",
            f"The request body is larger than the server's limit of {max_request_bytes} bytes "
            "(config key max_request_bytes)",
            _CLOSE,
        )
        self._timed_out = _json_error(
            504,
            "DEADLINE_EXCEEDED",
            f"Request processing time exceeded the server's limit of {request_timeout} seconds "
            "(config key request_timeout)",
        )
        self._unauthorized = _json_error(
            401,
            "UNAUTHENTICATED",
            "This deployment requires the header 'Authorization: Bearer <token>' with its token",
            (b"www-authenticate", b"Bearer"),
        )

    async def __call__(self, scope: dict[str, Any], receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind != "http":
            if kind == "lifespan":
                await self._lifespan(receive, send)
            return
        path = scope["path"]
        method = scope["method"]
        if path == "/invocations":
            if method == "POST":
                await _send(send, await self._invocations(scope, receive))
            else:
                await _send(send, self._wrong_method(method, path, "POST"))
        elif path == "/ping" or path == "/health":
            if method == "GET" or method == "HEAD":
                await _send(send, _PING)
            else:
                await _send(send, self._wrong_method(method, path, "GET"))
        elif path == "/version":
            if method != "GET" and method != "HEAD":
                await _send(send, self._wrong_method(method, path, "GET"))
            elif self._authorized(scope):
                await _send(send, self._version)
            else:
                await _send(send, self._unauthorized)
        else:
            message = f"No route for {method} {path}: {_ROUTES_HINT}"
            await _send(send, _json_error(404, "ENDPOINT_NOT_FOUND", message))

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return

    @staticmethod
    def _wrong_method(method: str, path: str, allowed: str) -> Response:
        status, headers, body = _json_error(405, "BAD_REQUEST", f"{path} does not accept {method}; use {allowed}")
        headers.append((b"allow", allowed.encode("ascii")))
        return status, headers, body

    def _authorized(self, scope: dict[str, Any]) -> bool:
        if self._token is None:
            return True
        for name, value in scope["headers"]:
            if name == b"authorization":
                return self._token_matches(value)
        return False

    def _token_matches(self, authorization: bytes | None) -> bool:
        # "Bearer <token>", the scheme in any case (RFC 7235); a constant-time comparison of the token.
        if authorization is None or authorization[:7].lower() != b"bearer ":
            return False
        return hmac.compare_digest(authorization[7:].strip(), self._token or b"")

    async def _invocations(self, scope: dict[str, Any], receive: Receive) -> Response:
        content_type: bytes | None = None
        content_length: bytes | None = None
        authorization: bytes | None = None
        for name, value in scope["headers"]:
            if name == b"content-type":
                content_type = value
            elif name == b"content-length":
                content_length = value
            elif name == b"authorization":
                authorization = value
        if self._token is not None and not self._token_matches(authorization):
            return self._unauthorized
        limit = self.max_request_bytes
        if content_length is not None:
            try:
                declared = int(content_length)
            except ValueError:
                return _json_error(400, "BAD_REQUEST", "The Content-Length header is not a number")
            if declared > limit:
                return self._too_large
        content_type_text = content_type.decode("latin-1") if content_type is not None else None
        try:
            check_content_type(content_type_text)
        except UnsupportedMediaTypeError as exc:
            return _text(415, exc.message)

        # Read the body, counting as it comes: a chunked body has no Content-Length to check up front.
        message = await receive()
        if message["type"] == "http.disconnect":
            return self._too_large  # the client left; nobody reads this answer
        body = message.get("body", b"")
        if message.get("more_body", False):
            chunks = [body]
            size = len(body)
            while size <= limit:
                message = await receive()
                if message["type"] == "http.disconnect":
                    return self._too_large  # the client left; nobody reads this answer
                chunk = message.get("body", b"")
                size += len(chunk)
                chunks.append(chunk)
                if not message.get("more_body", False):
                    break
            if size > limit:
                return self._too_large
            body = b"".join(chunks)
        if len(body) > limit:
            return self._too_large

        timeout = self.request_timeout
        if timeout is None:
            return self._score(body, content_type_text)
        threads = self._threads
        if threads is None:
            threads = self._threads = _ModelThreads(asyncio.get_running_loop(), self._model_threads)
        job = threads.submit(self._score, body, content_type_text)
        timer = asyncio.get_running_loop().call_later(timeout, threads.expire, job)
        try:
            return await job.future
        except _Expired:
            _logger.warning("a request ran past the time limit of %s s and was answered with 504", timeout)
            return self._timed_out
        finally:
            timer.cancel()

    def _score(self, body: bytes, content_type: str | None) -> Response:
        """Decode, predict, encode: the whole job of one request, run in a model thread."""
        try:
            data, params, _ = decode_request(body, content_type)
        except UnsupportedMediaTypeError as exc:
            return _text(415, exc.message)
        except InvalidInputError as exc:
            return _json_error(400, "BAD_REQUEST", exc.message)
        try:
            predictions = self.model.predict(data, params)
        except SignatureError as exc:
            # The input does not fit the MLflow model's signature: MLflow answers with the schema error
            # itself (400, INVALID_PARAMETER_VALUE or BAD_REQUEST), not as a failure of the model.
            return _json_error(exc.status_code or 400, exc.error_code, exc.message)
        except Exception as exc:
            # One line per failure; the traceback too at debug level (a bad client could flood the log).
            _logger.error(
                "the model raised %s: %s", type(exc).__name__, exc, exc_info=_logger.isEnabledFor(logging.DEBUG)
            )
            return _model_error(exc, data)
        try:
            return _ok_json(encode_response(predictions))
        except Exception as exc:
            _logger.error("cannot encode predictions of type %s: %s", type(predictions).__name__, exc)
            return _json_error(
                500,
                "INTERNAL_ERROR",
                f"The model's output ({type(predictions).__name__}) cannot be written as JSON: {exc}",
            )


# ------------------------------------------------------------------------------------------------------
# Process: logging, socket, ready file, uvicorn


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
    root.setLevel(_LOG_LEVELS[level])


def bind_socket(host: str, port: int) -> socket.socket:
    """Bind and listen on ``host:port`` (0: a free port chosen by the kernel); raises :class:`BindError`."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise BindError(f"cannot bind {host}:{port}: {exc.strerror or exc}") from exc
    family, kind, proto, _, address = infos[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        # Accepted sockets inherit it (Linux): an answer written in two parts never waits for a delayed ACK.
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.bind(address)
        sock.listen(2048)
    except OSError as exc:
        sock.close()
        raise BindError(f"cannot bind {host}:{port}: {exc.strerror or exc}") from exc
    return sock


def _client_host(host: str) -> str:
    # A wildcard address is fine to bind but not to connect to: hand clients the loopback instead.
    if host in ("0.0.0.0", ""):
        return "127.0.0.1"
    if host == "::":
        return "::1"
    return host


def _ready_record(spec: ServerSpec, sock: socket.socket, flavor: str) -> dict[str, Any]:
    port = sock.getsockname()[1]
    host = _client_host(spec.host)
    url_host = f"[{host}]" if ":" in host else host
    return {
        "pid": os.getpid(),
        "host": spec.host,
        "port": port,
        "url": f"http://{url_host}:{port}",
        "flavor": flavor,
        "started_at": time.time(),
    }


def write_ready_file(path: str, record: Mapping[str, Any]) -> None:
    """Write ``record`` as JSON to ``path`` atomically (a reader sees all of it or nothing)."""
    temporary = f"{path}.{os.getpid()}.tmp"
    with open(temporary, "w", encoding="utf-8") as stream:
        json.dump(record, stream)
        stream.flush()
        os.fsync(stream.fileno())
    os.replace(temporary, path)


def _warm_up() -> None:
    # payloads imports pandas on first use; pay that (about a second) before the ready file, not on the
    # first request, which a caller may be timing.
    with contextlib.suppress(Exception):
        decode_request(b'{"dataframe_split": {"columns": ["a"], "data": [[1.0]]}}', "application/json")
        decode_request(b'{"inputs": [[1.0]]}', "application/json")


def _load(spec: ServerSpec) -> LoadedModel:
    try:
        return load_model(spec.model_uri, spec.flavor)
    except InvalidInputError as exc:
        raise ModelLoadError(f"cannot load the model of deployment {spec.name!r}: {exc.message}") from exc
    except Exception as exc:  # an import error, a crash inside user code: still the model's fault
        raise ModelLoadError(
            f"cannot load the model of deployment {spec.name!r}: {type(exc).__name__}: {exc}"
        ) from exc


def _uvicorn_config(app: Any, spec: ServerSpec, **extra: Any) -> Any:
    import uvicorn

    return uvicorn.Config(
        app,
        log_config=None,
        log_level=_LOG_LEVELS[spec.log_level],
        access_log=False,
        lifespan="off",
        server_header=False,
        timeout_graceful_shutdown=int(_GRACEFUL_SECONDS),
        **extra,
    )


def _make_server_class() -> type:
    import uvicorn

    class _Server(uvicorn.Server):
        """uvicorn's server with a start-up hook and no re-raised signal after a graceful stop."""

        on_started: Callable[[], None] | None = None

        async def startup(self, sockets: list[socket.socket] | None = None) -> None:
            await super().startup(sockets=sockets)
            if self.started and self.on_started is not None:
                self.on_started()

        @contextlib.contextmanager
        def capture_signals(self) -> Iterator[None]:
            # uvicorn re-raises the signal after shutting down, which would end the process with
            # "killed by SIGTERM"; a graceful stop should exit with status 0 instead.
            if threading.current_thread() is not threading.main_thread():
                yield
                return
            handled = (signal.SIGINT, signal.SIGTERM)
            previous = {sig: signal.signal(sig, self.handle_exit) for sig in handled}
            try:
                yield
            finally:
                for sig, handler in previous.items():
                    signal.signal(sig, handler)

    return _Server


def _take_auth_token(explicit: str | None, *, keep_in_environment: bool) -> str | None:
    token = explicit if explicit is not None else os.environ.get(AUTH_TOKEN_ENV)
    if not keep_in_environment:
        os.environ.pop(AUTH_TOKEN_ENV, None)
    if token is not None:
        token = token.strip()
        if not token:
            return None
        register_secret(token)
    return token


def serve(spec: Mapping[str, Any] | ServerSpec, *, auth_token: str | None = None) -> None:
    """Serve a model in the foreground until SIGINT or SIGTERM (used by ``run_local`` and by :func:`main`).

    ``spec`` has the keys of the spec file; ``auth_token`` defaults to ``$DEPLOYFLOW_SERVER_AUTH_TOKEN``.
    Raises :class:`SpecError`, :class:`ModelLoadError` or :class:`BindError` when the server cannot start.
    Configures logging to stderr unless the application already did.
    """
    server_spec = spec if isinstance(spec, ServerSpec) else parse_spec(spec)
    configure_logging(server_spec.log_level, force=False)
    token = _take_auth_token(auth_token, keep_in_environment=server_spec.workers > 1)
    model = _load(server_spec)
    _warm_up()
    sock = bind_socket(server_spec.host, server_spec.port)
    try:
        if server_spec.workers == 1:
            _serve_one(server_spec, model, sock, token)
        else:
            flavor = model.flavor
            del model  # each worker loads its own copy; this one only proved that loading works
            _serve_many(server_spec, flavor, sock, token)
    finally:
        sock.close()


def _announce(spec: ServerSpec, sock: socket.socket, flavor: str, source: str) -> None:
    record = _ready_record(spec, sock, flavor)
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


def _serve_one(spec: ServerSpec, model: LoadedModel, sock: socket.socket, token: str | None) -> None:
    app = ScoringApp(
        model,
        max_request_bytes=spec.max_request_bytes,
        request_timeout=spec.request_timeout,
        auth_token=token,
    )
    server = _make_server_class()(_uvicorn_config(app, spec))
    server.on_started = lambda: _announce(spec, sock, model.flavor, model.source)
    previous_interval = sys.getswitchinterval()
    if spec.request_timeout is not None:
        sys.setswitchinterval(_SWITCH_INTERVAL)
    try:
        server.run(sockets=[sock])
    finally:
        sys.setswitchinterval(previous_interval)


def _serve_many(spec: ServerSpec, flavor: str, sock: socket.socket, token: str | None) -> None:
    from uvicorn.supervisors.multiprocess import Multiprocess

    os.environ[_WORKER_SPEC_ENV] = json.dumps(spec.to_dict())
    if token:
        os.environ[AUTH_TOKEN_ENV] = token
    config = _uvicorn_config(f"{_MODULE}:_worker_app", spec, factory=True, workers=spec.workers)
    failed: list[str] = []

    class _Supervisor(Multiprocess):
        def init_processes(self) -> None:
            super().init_processes()
            for process in self.processes:
                if not process.wait_until_ready(_WORKER_START_SECONDS, self.should_exit):
                    if not self.should_exit.is_set():
                        failed.append(f"worker process {process.pid} did not start (see the log above)")
                    self.should_exit.set()
                    return
            _announce(spec, sock, flavor, spec.model_uri)

    _Supervisor(config, sockets=[sock]).run()
    if failed:
        raise ModelLoadError(f"deployment {spec.name!r}: {failed[0]}")


def _worker_app() -> ScoringApp:
    """App factory for a worker process of a multi-worker server (reads the spec its parent left)."""
    spec = parse_spec(json.loads(os.environ[_WORKER_SPEC_ENV]))
    configure_logging(spec.log_level)
    if spec.request_timeout is not None:
        sys.setswitchinterval(_SWITCH_INTERVAL)  # a worker process serves and does nothing else
    token = _take_auth_token(None, keep_in_environment=False)
    model = _load(spec)
    _warm_up()
    return ScoringApp(
        model,
        max_request_bytes=spec.max_request_bytes,
        request_timeout=spec.request_timeout,
        auth_token=token,
    )


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
