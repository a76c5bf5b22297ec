"""Batch scoring over one asyncio connection pool, for targets that score with a plain HTTP POST.

A client offers this path by having a method ``batch_http_route(deployment_name=None, endpoint=None)``
that returns an :class:`HttpRoute` (the URL to post chunks to, the headers, the HTTP settings and how to
look the route up again), or ``None`` to use the general path (``client.predict`` from a thread pool,
:func:`~deployflow.batch._runner.run_chunks`). The ``local`` and ``serving`` targets have it (serving
only over plain HTTP without a proxy: see :func:`route_for_transport`).

Why a second path: with a thread per request in flight, every answer wakes a thread that must win the
GIL before it can read the answer and send the next chunk, and the model server waits meanwhile. Here the
calling thread encodes chunks and decodes answers, oldest first, and one event-loop thread (aiohttp,
uvloop when installed) does all the network work. Against the local server the same job went from
74-86 % of the server's ceiling with the thread pool to 94-99 % (``benchmarks/bench_batch.py``, medians
of interleaved rounds on two cores, 16 requests in flight).

Failures follow the same rules as the general path: a request that fails with a status or connection
failure the transport's retry policy retries is sent again (``Retry-After`` respected, the route looked
up again after a connection failure, no wait past the predict total timeout), then the chunk-level
retries apply, each a new call with the transport's budget, then the job stops with the row range in the
error. Bad-input rejections with ``on_bad_rows="isolate"`` are bisected through
``client.predict``: they are rare and the general path already knows how.
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Mapping

from ..errors import DeploymentError, InvalidInputError, RequestTimeoutError, TransientError
from ..redaction import get_logger, redact
from ._runner import ChunkResult, ChunkScorer, drive_in_order, parse_predictions

if TYPE_CHECKING:
    from ..transport import HttpSettings
    from ._sources import Chunk

__all__ = ["HttpRoute", "route_for_transport", "run_pipelined", "score_chunks"]

logger = get_logger(__name__)


@dataclass(frozen=True)
class HttpRoute:
    """Where and how a client's chunks are posted.

    ``refresh`` (optional) returns the route again after a connection failure, for services whose
    address can change (a local deployment restarted by an update).
    """

    url: str
    headers: Mapping[str, str]
    settings: HttpSettings
    refresh: Callable[[], HttpRoute] | None = None

    def __repr__(self) -> str:  # the headers may hold a token
        return f"HttpRoute({redact(self.url)!r})"


@dataclass
class _Answer:
    status: int
    reason: str | None
    headers: Mapping[str, str]
    content: bytes


class _Poster:
    """An aiohttp session on an event loop in a daemon thread; ``post`` may be called from any thread."""

    def __init__(self, concurrency: int) -> None:
        import asyncio

        try:
            import uvloop

            self._loop = uvloop.new_event_loop()
        except ImportError:  # uvloop is not available everywhere (Windows)
            self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="deployflow-batch-io", daemon=True)
        self._thread.start()
        self._session = self._call(self._open(concurrency)).result()

    def _call(self, coroutine: Any) -> Future[Any]:
        import asyncio

        return asyncio.run_coroutine_threadsafe(coroutine, self._loop)

    @staticmethod
    async def _open(concurrency: int) -> Any:
        import aiohttp

        # No proxy from the environment (trust_env=False) and no cookie jar: routes are scoring
        # endpoints the client resolved itself.
        return aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=concurrency, limit_per_host=concurrency),
            cookie_jar=aiohttp.DummyCookieJar(),
            auto_decompress=True,
        )

    def post(self, route: HttpRoute, body: bytes, headers: Mapping[str, str]) -> Future[_Answer]:
        return self._call(self._post(route, body, headers))

    async def _post(self, route: HttpRoute, body: bytes, headers: Mapping[str, str]) -> _Answer:
        import asyncio

        import aiohttp

        settings = route.settings
        read_timeout, _total = settings.timeouts_for("predict")
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=settings.connect_timeout, sock_read=read_timeout)
        where = f"POST {_path_of(route.url)}"
        try:
            async with self._session.post(route.url, data=body, headers=headers, timeout=timeout) as answer:
                content = await answer.read()
                return _Answer(answer.status, answer.reason, answer.headers, content)
        except aiohttp.ConnectionTimeoutError as exc:  # before TimeoutError: it is both, and retryable
            raise TransientError(
                f"{where}: could not connect to {_origin_of(route.url)} within {settings.connect_timeout:g} s"
            ) from exc
        except asyncio.TimeoutError as exc:
            raise RequestTimeoutError(f"{where}: no answer within {read_timeout:g} s (read timeout)") from exc
        except (aiohttp.ClientConnectionError, aiohttp.ClientPayloadError, OSError) as exc:
            raise TransientError(f"{where}: connection to {_origin_of(route.url)} failed: {exc}") from exc
        except aiohttp.ClientError as exc:
            raise TransientError(f"{where}: {type(exc).__name__}: {exc}") from exc

    def close(self) -> None:
        async def shutdown() -> None:
            await self._session.close()

        try:
            self._call(shutdown()).result(timeout=10)
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=10)
            if not self._thread.is_alive():
                self._loop.close()


@dataclass
class _Pending:
    chunk: Chunk
    body: bytes
    content_type: str
    answer: Future[_Answer]
    sent_to: str
    attempts: int = 1
    transport_retries: int = 0
    chunk_retries: int = 0
    #: When the current call started: the transport's retries of one call stop at its total timeout.
    call_started: float = field(default_factory=time.monotonic)


def run_pipelined(
    chunks: Any,
    scorer: ChunkScorer,
    route: HttpRoute,
    *,
    concurrency: int,
    skip: Callable[[Chunk], bool],
    deliver: Callable[[ChunkResult], None],
    on_progress: Callable[[Chunk, int], None],
) -> None:
    """Score ``chunks`` with ``concurrency`` requests in flight; results reach ``deliver`` in input order.

    At most ``2 * concurrency`` chunks are encoded ahead of the oldest unanswered one, so memory stays
    bounded. The first failure that is not retried stops the job (what is in flight is dropped).
    """
    from ..payloads import encode_request

    poster = _Poster(concurrency)
    state = {"route": route}

    def send(body: bytes, content_type: str) -> tuple[Future[_Answer], str]:
        current: HttpRoute = state["route"]
        return poster.post(current, body, {"Content-Type": content_type, **current.headers}), current.url

    def start(chunk: Chunk) -> _Pending:
        body, content_type = encode_request(scorer.features(chunk.frame), params=scorer.params)
        return _Pending(chunk, body, content_type, *send(body, content_type))

    def answer_of(pending: _Pending) -> _Answer | None:
        """The chunk's successful answer, after the retries it is due; ``None`` when its rows must be
        bisected (``on_bad_rows="isolate"``). Raises when the chunk failed for good."""
        chunk = pending.chunk
        while True:
            try:
                answer = pending.answer.result()
                if answer.status < 400:
                    return answer
                from ..transport import error_from_answer

                raise error_from_answer(
                    "POST", _path_of(state["route"].url), answer.status, answer.reason, answer.headers, answer.content
                )
            except DeploymentError as error:
                delay = _retry(pending, error, scorer, state)
                if delay is None:
                    if isinstance(error, InvalidInputError) and scorer.isolate_bad_rows:
                        return None
                    raise scorer.failure(error, chunk.start, len(chunk.frame), pending.attempts) from error
                logger.warning(
                    "Rows %d-%d failed (%s); sending them again in %.1f s (attempt %d)",
                    chunk.start, chunk.stop - 1, error, delay, pending.attempts + 1,
                )
                time.sleep(delay)
                pending.attempts += 1
                pending.answer, pending.sent_to = send(pending.body, pending.content_type)

    def finish(pending: _Pending) -> None:
        chunk = pending.chunk
        answer = answer_of(pending)
        if answer is None:
            result = scorer.score(chunk)  # bisects through client.predict, as the general path does
        else:
            predictions = _predictions(answer.content, len(chunk.frame), scorer, chunk.start)
            result = ChunkResult(chunk, scorer.kept(chunk), predictions, scorer.prediction_column)
        deliver(result)
        on_progress(chunk, len(result.errors))

    try:
        drive_in_order(
            chunks,
            limit=max(1, 2 * concurrency),
            skip=skip,
            start=start,
            finish=finish,
            cancel=lambda pending: pending.answer.cancel(),
            on_progress=on_progress,
        )
    finally:
        poster.close()


def route_for_transport(transport: Any, path: str) -> HttpRoute | None:
    """The route for POSTs to ``path`` through ``transport`` (a :class:`~deployflow.transport.HttpTransport`),
    when the event-loop path can send them exactly as the transport would: plain HTTP, no proxy from
    the environment, no session-level auth object. ``None`` otherwise (the general path is used)."""
    import requests

    url = transport.url_for(path)
    session = transport.session
    if not url.startswith("http://") or session.auth is not None or requests.utils.get_environ_proxies(url):
        return None
    return HttpRoute(url, dict(session.headers), transport.settings)


def score_chunks(
    chunks: Any,
    scorer: ChunkScorer,
    *,
    concurrency: int,
    skip: Callable[[Chunk], bool],
    deliver: Callable[[ChunkResult], None],
    on_progress: Callable[[Chunk, int], None],
) -> None:
    """Score ``chunks`` through the client's HTTP route when it offers one, else through its
    ``predict`` from a thread pool. Results reach ``deliver`` in input order either way."""
    from ._runner import run_chunks

    route_of = getattr(scorer.client, "batch_http_route", None)
    route = route_of(**scorer.target) if callable(route_of) else None
    if route is None:
        run_chunks(chunks, scorer, concurrency=concurrency, skip=skip, deliver=deliver, on_progress=on_progress)
    else:
        run_pipelined(chunks, scorer, route, concurrency=concurrency, skip=skip, deliver=deliver, on_progress=on_progress)


def _predictions(content: bytes, rows: int, scorer: ChunkScorer, start: int) -> Any:
    from ..payloads import decode_response

    return parse_predictions(decode_response(content), rows, scorer.prediction_column, start)


def _retry(pending: _Pending, error: DeploymentError, scorer: ChunkScorer, state: dict[str, Any]) -> float | None:
    """Seconds to wait before sending ``pending`` again, or ``None`` to give up on it.

    First the transport's policy (its statuses, connection failures, ``Retry-After``, its number of
    retries); once that is spent, the chunk-level retries of any retryable error.
    """
    from ..transport import is_retryable

    route: HttpRoute = state["route"]
    policy = route.settings.retry
    if isinstance(error, TransientError) and error.status_code is None and not isinstance(error, RequestTimeoutError):
        # The connection failed: the service may have moved (a restarted local server).
        if route.refresh is not None and route.url == pending.sent_to:  # not looked up since it was sent
            try:
                state["route"] = route.refresh()
            except DeploymentError as lookup_error:
                if not lookup_error.retryable:
                    raise lookup_error from error
        if state["route"].url != pending.sent_to and pending.transport_retries < policy.max_retries:
            pending.transport_retries += 1
            return 0.0  # it moved (an update replaced the server): ask the new one at once
    if is_retryable(error, policy) and pending.transport_retries < policy.max_retries:
        retry_after = getattr(error, "retry_after", None)
        if retry_after is not None and policy.respect_retry_after:
            delay = min(retry_after, policy.max_retry_after)
        else:
            delay = policy.backoff(pending.transport_retries + 1)
        _read, total = route.settings.timeouts_for("predict")
        if time.monotonic() + delay < pending.call_started + total:
            pending.transport_retries += 1
            return delay
    delay = scorer.retry_delay(error, pending.chunk_retries)
    if delay is not None:
        # A chunk retry is a new call, as in the general path: the transport's budget starts again.
        pending.chunk_retries += 1
        pending.transport_retries = 0
        pending.call_started = time.monotonic() + delay
    return delay


def _path_of(url: str) -> str:
    from urllib.parse import urlsplit

    return urlsplit(url).path or "/"


def _origin_of(url: str) -> str:
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.hostname}:{parts.port}" if parts.port else f"{parts.scheme}://{parts.hostname}"
