"""Batch scoring over one asyncio connection pool, for targets that score with a plain HTTP POST.

A client offers this path by having ``batch_http_route(deployment_name=None, endpoint=None)`` returning
a :class:`~deployflow.scoring_route.HttpRoute`, or ``None`` to use the general path (``client.predict``
from a thread pool, :func:`~deployflow.batch._runner.run_chunks`). The ``local`` and ``serving`` targets
have it (serving only over plain HTTP without a proxy: see
:func:`~deployflow.scoring_route.route_for_transport`).

Why a second path: with a thread per request in flight, every answer wakes a thread that must win the
GIL before it can read the answer and send the next chunk, and the model server waits meanwhile. Here the
calling thread encodes chunks and decodes answers, oldest first, and one event-loop thread (the async
edge, :class:`deployflow.aio.AsyncHttpTransport`) does all the network work. A route that says its
server reads Arrow (``HttpRoute.arrow``: the local target's) is sent the chunks Arrow carries exactly as
an Arrow IPC stream, the rest as JSON (:mod:`deployflow.arrow_chunks`); a 415 to an Arrow body turns the
job to JSON. ``benchmarks/bench_batch.py`` prints this path's rows/s against a local server in both
bodies, next to a naive sequential loop and to wrk posting the same bodies.

Failures follow the same rules as the general path, and one budget: a chunk is sent at most
``1 + max_chunk_retries`` times in all, within the client's predict total timeout from its first send;
what is retried is what the one retry decision allows for the route's declared idempotency
(:func:`deployflow.retry.should_retry`), and after a connection failure the route is looked up again
(once per move, not once per chunk). Then the job stops with the row range in the error. Bad-input
rejections with ``on_bad_rows="isolate"`` are bisected through ``client.predict``: they are rare and
the general path already knows how.
"""

from __future__ import annotations

import asyncio
import functools
import threading
from collections import deque
from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any, Callable

from ..errors import DeploymentError, InvalidInputError
from ..redaction import get_logger
from ..scoring_route import HttpRoute
from ._runner import ChunkResult, ChunkScorer, drive_in_order, parse_predictions

if TYPE_CHECKING:
    from ..aio import Answer
    from ._sources import Chunk

__all__ = ["http_route", "run_pipelined", "score_chunks"]

logger = get_logger(__name__)


class _Pending:
    """A chunk's request on the event loop, and its outcome once the loop has settled it.

    Lighter than :func:`asyncio.run_coroutine_threadsafe` (a concurrent future chained to the task,
    with a condition variable and callbacks both ways): one lock the loop releases and one slot for
    the outcome. Handing a request over and waiting for it cost 6-7 us of CPU that way against 11-16 us
    (measured with a trivial coroutine, 32 under way).
    """

    __slots__ = ("_answer", "_error", "_settled", "arrow", "chunk", "task")

    def __init__(self, chunk: Chunk, arrow: bool) -> None:
        self.chunk = chunk
        self.arrow = arrow
        self.task: asyncio.Task[Answer] | None = None  # set on the loop when the request starts
        self._settled = threading.Lock()
        self._settled.acquire()  # released by the loop thread when the request has ended
        self._answer: Answer | None = None
        self._error: BaseException | None = None

    def settle(self, task: asyncio.Task[Answer]) -> None:
        """Keep the ended ``task``'s outcome and wake whoever waits for it (on the loop)."""
        if task.cancelled():
            self._error = asyncio.CancelledError()
        else:
            self._error = task.exception()
            if self._error is None:
                self._answer = task.result()
        self._settled.release()

    def abandon(self) -> None:
        """Settle a request that was dropped before it started: waiting for it raises CancelledError."""
        self._error = asyncio.CancelledError()
        self._settled.release()

    def result(self) -> Answer:
        """The answer, once the loop has it (the error the request raised, if it failed)."""
        self._settled.acquire()
        self._settled.release()
        if self._error is not None:
            raise self._error
        assert self._answer is not None
        return self._answer


class _Launcher:
    """Runs the chunks' requests on the loop, at most ``limit`` at once, the others in turn as they end.

    The chunks encoded ahead wait here, not in aiohttp's connection pool: a request that waits there
    for a free connection goes through a timeout context, a waiter future and a release callback on
    top of its own (about a tenth of the loop thread's time per chunk in py-spy, with twice as many
    chunks encoded as connections). Methods other than :meth:`submit` and :meth:`cancel` run on the loop.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop, limit: int) -> None:
        self._loop = loop
        self._limit = limit
        self._running = 0
        self._waiting: deque[tuple[_Pending, Coroutine[Any, Any, Answer]]] = deque()

    def submit(self, pending: _Pending, request: Coroutine[Any, Any, Answer]) -> None:
        """Run ``request`` for ``pending`` when its turn comes (call from any thread)."""
        self._loop.call_soon_threadsafe(self._queue, pending, request)

    def cancel(self, pending: _Pending) -> None:
        """Stop ``pending``'s request, or drop it if it has not started (call from any thread)."""
        self._loop.call_soon_threadsafe(self._cancel, pending)

    def _queue(self, pending: _Pending, request: Coroutine[Any, Any, Answer]) -> None:
        if self._running < self._limit:
            self._start(pending, request)
        else:
            self._waiting.append((pending, request))

    def _start(self, pending: _Pending, request: Coroutine[Any, Any, Answer]) -> None:
        self._running += 1
        pending.task = self._loop.create_task(request)
        pending.task.add_done_callback(functools.partial(self._ended, pending))

    def _ended(self, pending: _Pending, task: asyncio.Task[Answer]) -> None:
        self._running -= 1
        pending.settle(task)
        while self._waiting and self._running < self._limit:
            self._start(*self._waiting.popleft())

    def _cancel(self, pending: _Pending) -> None:
        if pending.task is not None:
            pending.task.cancel()
            return
        for waiting in self._waiting:
            if waiting[0] is pending:
                self._waiting.remove(waiting)
                waiting[1].close()  # never started: nothing to cancel, and no "never awaited" warning
                pending.abandon()
                return


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
    import dataclasses

    from ..aio import AsyncHttpTransport, LoopThread
    from ..arrow_chunks import CONTENT_TYPE_ARROW, encode_frame
    from ..payloads import encode_request

    settings = dataclasses.replace(route.settings, retry=scorer.chunk_policy(route.settings.retry))
    io = LoopThread("deployflow-batch-io")
    edge = AsyncHttpTransport(settings=settings, limit=concurrency)
    launcher = _Launcher(io.loop, concurrency)
    state = {"route": route, "arrow": route.arrow and not scorer.params}
    encode = route.encode or (lambda frame, params: encode_request(frame, params=params))
    decode = route.decode

    def moved(sent_to: str) -> str | None:
        """After a connection failure: the route's URL now, looked up once per move (runs on the loop)."""
        current: HttpRoute = state["route"]
        if current.refresh is not None and current.url == sent_to:  # not looked up since it was sent
            try:
                state["route"] = current = current.refresh()
            except DeploymentError as lookup_error:
                if not lookup_error.retryable:
                    raise
        return current.url

    async def post(body: bytes, content_type: str) -> Answer:
        current: HttpRoute = state["route"]
        sent_to = [current.url]

        def on_connection_failure() -> str | None:
            sent_to[0] = moved(sent_to[0]) or sent_to[0]
            return sent_to[0]

        try:
            return await edge.request(
                "POST", current.url, data=body, headers={"Content-Type": content_type, **current.headers},
                kind="predict", idempotent=current.idempotent, retry_statuses=current.retry_statuses,
                on_connection_failure=on_connection_failure if current.refresh is not None else None,
            )
        except DeploymentError as error:
            if current.reclassify is None:
                raise
            read = current.reclassify(error)
            if read is error:
                raise
            raise read from error

    def start(chunk: Chunk) -> _Pending:
        body = None
        if state["arrow"]:
            # Rows are matched to answers by position and an Arrow body carries no index: no reset.
            body = encode_frame(scorer.selected(chunk.frame), ignore_index=True)
            content_type = CONTENT_TYPE_ARROW
        pending = _Pending(chunk, arrow=body is not None)
        if body is None:
            body, content_type = encode(scorer.features(chunk.frame), scorer.params)
        launcher.submit(pending, post(body, content_type))
        return pending

    def finish(pending: _Pending) -> None:
        chunk = pending.chunk
        try:
            try:
                answer = pending.result()
            except DeploymentError as error:
                if not (pending.arrow and error.status_code == 415):
                    raise
                # The server does not read Arrow (it answered before reading the body): JSON from now on.
                logger.info("The scoring server does not read Arrow bodies; sending chunks as JSON")
                state["arrow"] = False
                body, content_type = encode(scorer.features(chunk.frame), scorer.params)
                answer = io.submit(post(body, content_type)).result()
        except DeploymentError as error:
            if isinstance(error, InvalidInputError) and scorer.isolate_bad_rows:
                answer = None
            else:
                raise scorer.failure(error, chunk.start, len(chunk.frame)) from error
        if answer is None:
            result = scorer.score(chunk)  # bisects through client.predict, as the general path does
        else:
            predictions = _predictions(answer.content, len(chunk.frame), scorer, chunk.start, decode)
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
            cancel=launcher.cancel,
            on_progress=on_progress,
        )
    finally:
        try:
            io.submit(edge.close()).result(timeout=10)
        finally:
            io.stop()


def http_route(scorer: ChunkScorer) -> HttpRoute | None:
    """The client's HTTP route for the scorer's target, or ``None`` when it offers none. Looked up before
    anything is sent or written, so a target that refuses the name (or its absence) says so first."""
    route_of = getattr(scorer.client, "batch_http_route", None)
    return route_of(**scorer.target) if callable(route_of) else None


def score_chunks(
    chunks: Any,
    scorer: ChunkScorer,
    *,
    route: HttpRoute | None,
    concurrency: int,
    skip: Callable[[Chunk], bool],
    deliver: Callable[[ChunkResult], None],
    on_progress: Callable[[Chunk, int], None],
) -> None:
    """Score ``chunks`` through ``route`` (from :func:`http_route`) when there is one, else through the
    client's ``predict`` from a thread pool. Results reach ``deliver`` in input order either way."""
    from ._runner import run_chunks

    if route is None:
        run_chunks(chunks, scorer, concurrency=concurrency, skip=skip, deliver=deliver, on_progress=on_progress)
    else:
        run_pipelined(chunks, scorer, route, concurrency=concurrency, skip=skip, deliver=deliver, on_progress=on_progress)


def _predictions(content: bytes, rows: int, scorer: ChunkScorer, start: int, decode: Callable[[bytes], Any] | None = None) -> Any:
    from ..payloads import decode_response

    return parse_predictions((decode or decode_response)(content), rows, scorer.prediction_column, start)
