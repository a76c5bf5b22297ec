"""The ASGI application of a deployment server: MLflow's scoring protocol over one loaded model.

HTTP interface (as ``mlflow models serve``, see :mod:`deployflow.payloads` for the body rules):

================================  ============================================================
``GET /ping``, ``GET /health``    200, body ``"\\n"``: the model is loaded. Never needs the token,
                                  so readiness probes work without it.
``GET /version``                  the deployflow version, as plain text. Needs the token if set.
``GET /metrics``                  Prometheus text (:mod:`.metrics`). Needs the token if set.
``POST /invocations``             JSON (four input forms and ``params``), CSV, or an Arrow
                                  stream (:mod:`deployflow.arrow_chunks`); answers
                                  ``{"predictions": ...}``, or an Arrow stream when ``Accept``
                                  lists ``application/vnd.apache.arrow.stream`` and Arrow carries
                                  the model's output (see ``encode_predictions`` there). Needs
                                  the token if set.
``/v2/...``                       the Open Inference Protocol (:mod:`.openinference`): health
                                  without the token, metadata and ``infer`` with it; ``infer``
                                  has the size limit, queue and time limit of ``/invocations``.
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
503 ``TEMPORARILY_UNAVAILABLE`` with ``Retry-After`` when the server's queue is full (``max_queue``
requests, or ``max_queued_bytes`` of bodies, admitted and not answered yet: refused before the body is
read), 504 ``DEADLINE_EXCEEDED`` when decoding, predicting and encoding take longer than
``request_timeout``. A request still waiting for a model thread when its client disconnects is never
run, and its place in the queue is free at once; the metrics count it with status 499.

Paths are dispatched by :meth:`ScoringApp.route`: exact paths in a table, then path prefixes
(:attr:`ScoringApp.prefix_routes`), so a protocol family under one prefix (``/v2/``) plugs in with one
entry.

Design: a bare ASGI callable (no framework). The per-request job (decode, predict, encode) runs on a
model thread (:mod:`.model_threads`); the time limit is a ``loop.call_later`` timer rather than
``wait_for``, which costs less per request. Inline calls (no thread) were about 10 % faster for the
sklearn benchmark, but a time limit cannot be enforced while the model holds the loop, so inline is
used only with ``request_timeout: null``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from ... import __version__
from ...arrow_chunks import accepts_arrow, encode_predictions
from ...errors import InvalidInputError
from ...payloads import (
    UnsupportedMediaTypeError,
    check_content_type,
    decode_request,
    encode_response,
)
from ...redaction import get_logger
from . import openinference as v2
from . import responses
from .enforcement import SignatureError
from .limits import BODY_BYTES_REFUSAL, Admission, when_client_leaves
from .model_threads import Abandoned, Expired, ModelThreads
from .models import LoadedModel
from .responses import Response
from .spec import SPEC_DEFAULTS

__all__ = ["Handler", "ScoringApp"]

_logger = get_logger("deployflow.targets.local.server")

Send = Callable[[dict[str, Any]], Awaitable[None]]
Receive = Callable[[], Awaitable[dict[str, Any]]]
#: A path's handler: ``(scope, receive) -> answer``.
Handler = Callable[[dict[str, Any], Receive], Awaitable[Response]]

_PING: Response = (200, [responses.JSON_TYPE, (b"content-length", b"1")], b"\n")
_ROUTES_HINT = "this server answers GET /ping, GET /health, GET /version, GET /metrics and POST /invocations"

# Added to the 400 for a model that failed on a frame with text columns: the likely cause is a dtype
# that JSON cannot carry (the table in deployflow.payloads).
_DTYPES_NOTE = (
    " Note: JSON carries no dtypes, so categorical columns arrive as their values and datetimes as "
    "ISO-8601 strings; a model that needs category or datetime64 columns must convert them itself."
)


_V2_EMPTY: Response = (200, [(b"content-length", b"0")], b"")


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
        return responses.json_error(status, code, f"The model rejected the input: {detail}")
    return responses.json_error(
        400,
        "BAD_REQUEST",
        "Encountered an unexpected error while evaluating the model. Verify that the input is compatible "
        f"with the model for inference. Error: {detail}" + (_DTYPES_NOTE if _has_text_columns(data) else ""),
    )


def _row_count(predictions: Any) -> int:
    """How many rows (or items) ``predictions`` holds, for the predictions counter."""
    if isinstance(predictions, dict):
        first = next(iter(predictions.values()), None)
        return len(first) if hasattr(first, "__len__") and not isinstance(first, (str, bytes)) else 1
    if hasattr(predictions, "__len__") and not isinstance(predictions, (str, bytes)):
        try:
            return len(predictions)
        except TypeError:  # a 0-d array
            return 1
    return 1


class ScoringApp:
    """The ASGI callable serving one loaded model with MLflow's scoring protocol."""

    def __init__(
        self,
        model: LoadedModel,
        *,
        max_request_bytes: int = SPEC_DEFAULTS["max_request_bytes"],
        request_timeout: float | None = SPEC_DEFAULTS["request_timeout"],
        auth_token: str | None = None,
        model_threads: int = 1,
        max_queue: int = 64,
        max_queued_bytes: int | None = None,
        metrics: Any = None,
        name: str | None = None,
        signature: Any = None,
    ) -> None:
        self.model = model
        self.name = name
        self.max_request_bytes = max_request_bytes
        self.request_timeout = request_timeout
        self.metrics = metrics
        self.admission = Admission(max_queue, max_queued_bytes or max(max_request_bytes, 256 * 1024 * 1024))
        self._token = auth_token.encode("utf-8") if auth_token else None
        self._model_threads = model_threads
        self._threads: ModelThreads | None = None
        self._version: Response = responses.text(200, __version__)
        self._too_large = responses.too_large(max_request_bytes)
        self._timed_out = responses.timed_out(request_timeout)
        self._unauthorized = responses.unauthorized("This deployment")
        #: Exact paths: path -> (allowed methods, needs the token, handler).
        self.routes: dict[str, tuple[frozenset[str], bool, Handler]] = {
            "/invocations": (frozenset({"POST"}), True, self._invocations),
            "/ping": (frozenset({"GET", "HEAD"}), False, self._ping),
            "/health": (frozenset({"GET", "HEAD"}), False, self._ping),
            "/version": (frozenset({"GET", "HEAD"}), True, self._version_answer),
            "/metrics": (frozenset({"GET"}), True, self._metrics),
        }
        #: Path prefixes, tried in order after the exact paths: (prefix, handler). The handler checks
        #: methods and the token itself (see :meth:`authorized`).
        self.prefix_routes: list[tuple[str, Handler]] = []
        if name is not None:  # the Open Inference Protocol for this model, on the same port
            self._v2_server = responses.ok_json(v2.describe_server())
            self._v2_model = responses.ok_json(v2.describe_model(name, model, signature))
            self._v2_timed_out = responses.ok_json(v2.error_body(
                f"The request took longer than the server's limit of {request_timeout} s (config key request_timeout)"), 504)
            self.prefix_routes.append(("/v2", self._v2))

    async def __call__(self, scope: dict[str, Any], receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind != "http":
            if kind == "lifespan":
                await self._lifespan(receive, send)
            return
        started = time.perf_counter()
        response = await self.route(scope, receive)
        await responses.send(send, response)
        if self.metrics is not None:
            self.metrics.request(scope["path"], response[0], time.perf_counter() - started)

    async def route(self, scope: dict[str, Any], receive: Receive) -> Response:
        """The answer to one request: dispatched by path, method and token."""
        path = scope["path"]
        entry = self.routes.get(path)
        if entry is not None:
            methods, protected, handler = entry
            method = scope["method"]
            if method not in methods:
                return responses.wrong_method(method, path, "POST" if "POST" in methods else "GET")
            if protected and not self.authorized(scope):
                return self._unauthorized
            return await handler(scope, receive)
        for prefix, handler in self.prefix_routes:
            if path.startswith(prefix):
                return await handler(scope, receive)
        message = f"No route for {scope['method']} {path}: {_ROUTES_HINT}"
        return responses.json_error(404, "ENDPOINT_NOT_FOUND", message)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return

    def authorized(self, scope: dict[str, Any]) -> bool:
        """Whether the request may use a protected path (always, when the server has no token)."""
        if self._token is None:
            return True
        return responses.bearer_matches(responses.header(scope["headers"], b"authorization"), self._token)

    async def _ping(self, scope: dict[str, Any], receive: Receive) -> Response:
        return _PING

    async def _version_answer(self, scope: dict[str, Any], receive: Receive) -> Response:
        return self._version

    async def _metrics(self, scope: dict[str, Any], receive: Receive) -> Response:
        if self.metrics is None:
            return responses.json_error(404, "ENDPOINT_NOT_FOUND", "metrics need prometheus_client installed")
        return self.metrics.render()

    def declared_length(self, scope: dict[str, Any]) -> int | Response:
        """The body length the request declares (0 without Content-Length), or the answer refusing it."""
        return responses.declared_length(scope["headers"], self.max_request_bytes, self._too_large)

    async def read_body(self, receive: Receive, held: int) -> tuple[bytes | Response, int]:
        """The body of an admitted request that declared ``held`` bytes, counted as it comes (a chunked
        body has no Content-Length to check up front); or the answer refusing it. Returns it with the
        bytes now counted in the admission, which the caller releases once it answered."""
        limit = self.max_request_bytes
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return self._too_large, held  # the client left; nobody reads this answer
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                return self._too_large, held
            grown = self.admission.grow(size, held)
            if grown is None:
                return responses.overloaded(BODY_BYTES_REFUSAL), held
            held = grown
            chunks.append(chunk)
            if not message.get("more_body", False):
                return (chunks[0] if len(chunks) == 1 else b"".join(chunks)), held

    async def _invocations(self, scope: dict[str, Any], receive: Receive) -> Response:
        declared = self.declared_length(scope)
        if not isinstance(declared, int):
            return declared
        content_type = responses.header(scope["headers"], b"content-type")
        content_type_text = content_type.decode("latin-1") if content_type is not None else None
        try:
            check_content_type(content_type_text)
        except UnsupportedMediaTypeError as exc:
            return responses.text(415, exc.message)
        arrow_answer = accepts_arrow(responses.header(scope["headers"], b"accept"))
        return await self.admitted(
            declared, receive,
            lambda body: self._run(self._timed_out, scope, self._score, body, content_type_text, arrow_answer))

    async def admitted(self, declared: int, receive: Receive, work: Callable[[bytes], Awaitable[Response]]) -> Response:
        """Admit a request that declared ``declared`` body bytes into the queue (or refuse it: 503), read
        its body, and answer with ``work(body)``; its place and bytes are released once answered."""
        admission = self.admission
        refusal = admission.refusal(declared)
        if refusal is not None:
            return responses.overloaded(refusal)
        admission.admit(declared)
        held = declared
        metrics = self.metrics
        if metrics is not None:
            metrics.in_flight.inc()
        try:
            body, held = await self.read_body(receive, held)
            if isinstance(body, tuple):
                return body
            return await work(body)
        finally:
            admission.release(held)
            if metrics is not None:
                metrics.in_flight.dec()

    async def _v2(self, scope: dict[str, Any], receive: Receive) -> Response:
        """A request under ``/v2`` (:mod:`.openinference`): health needs no token, the rest does; an
        inference request has the limits, queue and time limit of ``/invocations``."""
        route = v2.match(scope["method"], scope["path"], self.name or "")
        if route is None:  # "/v2x...": not a V2 path
            return responses.json_error(404, "ENDPOINT_NOT_FOUND", f"No route for {scope['method']} {scope['path']}: {_ROUTES_HINT}")
        if route.kind == "error":
            answer = responses.ok_json(route.body, route.status)
            if route.allow:
                answer[1].append((b"allow", route.allow.encode("ascii")))
            return answer
        if route.kind in ("live", "ready"):
            return _V2_EMPTY
        if not self.authorized(scope):
            return responses.ok_json(v2.error_body("This deployment needs 'Authorization: Bearer <token>'"), 401)
        if route.kind == "model_ready":
            return _V2_EMPTY
        if route.kind == "server":
            return self._v2_server
        if route.kind == "model":
            return self._v2_model
        declared = self.declared_length(scope)
        if not isinstance(declared, int):
            return declared
        header_length = responses.header(scope["headers"], b"inference-header-content-length")
        return await self.admitted(
            declared, receive, lambda body: self._run(self._v2_timed_out, scope, self._v2_infer, body, header_length))

    def _v2_infer(self, body: bytes, header_length: bytes | None) -> Response:
        metrics = self.metrics
        counted = (lambda prediction: metrics.predictions.inc(_row_count(prediction))) if metrics is not None else None
        status, payload = v2.infer(self.model, body, self.name or "", None, header_length, counted)
        return responses.ok_json(payload, status)

    async def _run(self, timed_out: Response, scope: dict[str, Any], job: Callable[..., Response], *args: Any) -> Response:
        """``job(*args)`` on a model thread within ``request_timeout`` (``timed_out`` after it). A job that
        has to wait for a thread is dropped if its client leaves first (:meth:`ModelThreads.abandon`; the
        answer, never sent, is a 499 in the metrics), and its place in the queue is free at once."""
        timeout = self.request_timeout
        if timeout is None:
            return job(*args)
        threads = self._threads
        if threads is None:
            metrics = self.metrics
            threads = self._threads = ModelThreads(
                asyncio.get_running_loop(), self._model_threads,
                on_dequeue=metrics.queued.dec if metrics is not None else None,
            )
        if self.metrics is not None:
            self.metrics.queued.inc()
        waits = threads.would_wait()
        submitted = threads.submit(job, *args)
        timer = asyncio.get_running_loop().call_later(timeout, threads.expire, submitted)
        unwatch = when_client_leaves(scope.get("client"), lambda: threads.abandon(submitted)) if waits else None
        try:
            return await submitted.future
        except Expired:
            _logger.warning("a request ran past the time limit of %s s and was answered with 504", timeout)
            return timed_out
        except Abandoned:
            return responses.CLIENT_LEFT
        finally:
            timer.cancel()
            if unwatch is not None:
                unwatch()

    def _score(self, body: bytes, content_type: str | None, arrow_answer: bool = False) -> Response:
        """Decode, predict, encode: the whole job of one request, run in a model thread. With
        ``arrow_answer`` the predictions go as an Arrow stream when Arrow carries them."""
        try:
            data, params, _ = decode_request(body, content_type)
        except UnsupportedMediaTypeError as exc:
            return responses.text(415, exc.message)
        except InvalidInputError as exc:
            return responses.json_error(400, "BAD_REQUEST", exc.message)
        try:
            predictions = self.model.predict(data, params)
        except SignatureError as exc:
            # The input does not fit the MLflow model's signature: MLflow answers with the schema error
            # itself (400, INVALID_PARAMETER_VALUE or BAD_REQUEST), not as a failure of the model.
            return responses.json_error(exc.status_code or 400, exc.error_code, exc.message)
        except Exception as exc:
            # One line per failure; the traceback too at debug level (a bad client could flood the log).
            _logger.error(
                "the model raised %s: %s", type(exc).__name__, exc, exc_info=_logger.isEnabledFor(logging.DEBUG)
            )
            return _model_error(exc, data)
        if self.metrics is not None:
            self.metrics.predictions.inc(_row_count(predictions))
        if arrow_answer:
            arrow_body = encode_predictions(predictions)
            if arrow_body is not None:
                return responses.ok_arrow(arrow_body)
        try:
            return responses.ok_json(encode_response(predictions))
        except Exception as exc:
            _logger.error("cannot encode predictions of type %s: %s", type(predictions).__name__, exc)
            return responses.json_error(
                500,
                "INTERNAL_ERROR",
                f"The model's output ({type(predictions).__name__}) cannot be written as JSON: {exc}",
            )
