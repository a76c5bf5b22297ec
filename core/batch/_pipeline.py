"""Batch scoring over one asyncio connection pool, for targets that score with a plain HTTP POST.

A client offers this path by having ``batch_http_route(deployment_name=None, endpoint=None)`` returning
a :class:`~deployflow.scoring_route.HttpRoute`, or ``None`` to use the general path (``client.predict``
from a thread pool, :func:`~deployflow.batch._runner.run_chunks`). The ``local`` and ``serving`` targets
have it (serving only over plain HTTP without a proxy: see
:func:`~deployflow.scoring_route.route_for_transport`).

Why a second path: with a thread per request in flight, every answer wakes a thread that must win the
GIL before it can read the answer and send the next chunk, and the model server waits meanwhile. Here the
calling thread encodes chunks, runs the event loop of the async edge
(:class:`deployflow.aio.AsyncHttpTransport`) that does all the network work, and decodes answers,
oldest first (:func:`run_pipelined`). A route that says its server reads Arrow (``HttpRoute.arrow``:
the local target's) is sent the chunks Arrow carries exactly as an Arrow IPC stream, the rest as JSON
(:mod:`deployflow.arrow_chunks`); a 415 to an Arrow body turns the job to JSON. Such a route is also
asked for Arrow answers (``Accept``), and each answer is read as its Content-Type says (an Arrow
stream, or JSON). ``benchmarks/bench_batch.py`` prints this path's rows/s against a local server in
both bodies, next to a naive sequential loop and to wrk posting the same bodies.

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
from collections import deque
from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any, Callable

from ..arrow_chunks import CONTENT_TYPE_ARROW
from ..errors import DeploymentError, InvalidInputError, raise_as_read
from ..redaction import get_logger
from ..scoring_route import HttpRoute
from ._runner import (
    ChunkResult,
    ChunkScorer,
    counted,
    drive_in_order,
    parse_predictions,
)

if TYPE_CHECKING:
    from ..aio import Answer
    from ._sources import Chunk

__all__ = ["http_route", "run_pipelined", "score_chunks"]

logger = get_logger(__name__)

#: The Accept header of a route that reads Arrow: an Arrow answer preferred, JSON accepted.
_ACCEPT_ARROW = f"{CONTENT_TYPE_ARROW}, application/json"


class _Pending:
    """A chunk's request, and its outcome once the loop has settled it (``outcome``, a future of the
    loop: the answer, the error the request raised, or cancelled)."""

    __slots__ = ("arrow", "chunk", "outcome", "task")

    def __init__(self, chunk: Chunk, arrow: bool, loop: asyncio.AbstractEventLoop) -> None:
        self.chunk = chunk
        self.arrow = arrow
        self.task: asyncio.Task[Answer] | None = None  # set when the request starts
        self.outcome: asyncio.Future[Answer] = loop.create_future()


class _Launcher:
    """Runs the chunks' requests on the loop, at most ``limit`` at once, the others in turn as they end.

    The chunks encoded ahead wait here, not in aiohttp's connection pool: a request that waits there
    for a free connection goes through a timeout context, a waiter future and a release callback on
    top of its own (about a tenth of the loop thread's time per chunk in py-spy, with twice as many
    chunks encoded as connections). Called from the loop's own thread, between its runs or in them.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop, limit: int) -> None:
        self._loop = loop
        self._limit = limit
        self._running = 0
        self._waiting: deque[tuple[_Pending, Coroutine[Any, Any, Answer]]] = deque()

    def submit(self, pending: _Pending, request: Coroutine[Any, Any, Answer]) -> None:
        """Run ``request`` for ``pending`` when its turn comes (it starts when the loop next runs)."""
        if self._running < self._limit:
            self._start(pending, request)
        else:
            self._waiting.append((pending, request))

    def cancel(self, pending: _Pending) -> None:
        """Stop ``pending``'s request, or drop it if it has not started; its outcome is cancelled (or,
        if it had already failed, its error is dropped: the job stops for another one)."""
        outcome = pending.outcome
        if outcome.done() and not outcome.cancelled():
            outcome.exception()  # read, so that asyncio does not log it as never retrieved
        if pending.task is not None:
            pending.task.cancel()
            outcome.cancel()
            return
        for waiting in self._waiting:
            if waiting[0] is pending:
                self._waiting.remove(waiting)
                waiting[1].close()  # never started: nothing to cancel, and no "never awaited" warning
                outcome.cancel()
                return

    def _start(self, pending: _Pending, request: Coroutine[Any, Any, Answer]) -> None:
        self._running += 1
        pending.task = self._loop.create_task(request)
        pending.task.add_done_callback(functools.partial(self._ended, pending))

    def _ended(self, pending: _Pending, task: asyncio.Task[Answer]) -> None:
        self._running -= 1
        error = None if task.cancelled() else task.exception()  # read: never logged as lost
        outcome = pending.outcome
        if not outcome.done():  # else cancel() has cancelled it: the job has stopped
            if task.cancelled():
                outcome.cancel()
            elif error is not None:
                outcome.set_exception(error)
            else:
                outcome.set_result(task.result())
        while self._waiting and self._running < self._limit:
            self._start(*self._waiting.popleft())


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

    The job runs in the calling thread, which owns the event loop of the requests: it encodes chunks
    and hands them to the loop, then runs the loop until the oldest chunk is answered, reads that
    answer, and so on. While the loop runs, every request under way moves on (answers are read, the
    chunks encoded ahead are sent). One thread doing all the work costs less than a loop thread beside
    the caller's: no hand-over between them, and no waiting for the GIL while the other holds it (with
    the client and the server on 2 cores, that waiting left the server idle about a fifth of the time).
    A caller whose thread already runs an event loop (a notebook) gets the job run in a thread of its
    own, and waits for it.
    """
    if _loop_running():
        _in_own_thread(run_pipelined, chunks, scorer, route, concurrency=concurrency, skip=skip,
                       deliver=deliver, on_progress=on_progress)
        return
    import dataclasses

    from .._eventloop import new_event_loop
    from ..aio import AsyncHttpTransport
    from ..arrow_chunks import encode_frame
    from ..payloads import encode_request

    settings = dataclasses.replace(route.settings, retry=scorer.chunk_policy(route.settings.retry))
    loop = new_event_loop(left_between_runs=True)  # the calling thread leaves it for each result
    edge = AsyncHttpTransport(settings=settings, limit=concurrency)
    launcher = _Launcher(loop, concurrency)
    state = {"route": route, "arrow": route.arrow and not scorer.params}
    encode = route.encode or (lambda frame, params: encode_request(frame, params=params))
    decode = route.decode
    # A server that reads Arrow bodies may answer in Arrow too; others are not asked (they answer JSON).
    accept = {"Accept": _ACCEPT_ARROW} if route.arrow and decode is None else {}

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
                "POST", current.url, data=body, headers={"Content-Type": content_type, **current.headers, **accept},
                kind="predict", idempotent=current.idempotent, retry_statuses=current.retry_statuses,
                on_connection_failure=on_connection_failure if current.refresh is not None else None,
            )
        except DeploymentError as error:
            if current.reclassify is None:
                raise
            raise_as_read(error, current.reclassify)

    def start(chunk: Chunk) -> _Pending:
        body = None
        if state["arrow"]:
            # Rows are matched to answers by position and an Arrow body carries no index: no reset.
            body = encode_frame(scorer.selected(chunk.frame), ignore_index=True)
            content_type = CONTENT_TYPE_ARROW
        pending = _Pending(chunk, body is not None, loop)
        if body is None:
            body, content_type = encode(scorer.features(chunk.frame), scorer.params)
        launcher.submit(pending, post(body, content_type))
        return pending

    def finish(pending: _Pending) -> None:
        chunk = pending.chunk
        try:
            try:
                answer = loop.run_until_complete(pending.outcome)
            except DeploymentError as error:
                if not (pending.arrow and error.status_code == 415):
                    raise
                # The server does not read Arrow (it answered before reading the body): JSON from now on.
                logger.info("The scoring server does not read Arrow bodies; sending chunks as JSON")
                state["arrow"] = False
                body, content_type = encode(scorer.features(chunk.frame), scorer.params)
                answer = loop.run_until_complete(post(body, content_type))
        except DeploymentError as error:
            if isinstance(error, InvalidInputError) and scorer.isolate_bad_rows:
                answer = None
            else:
                raise scorer.failure(error, chunk.start, len(chunk.frame)) from error
        if answer is None:
            result = scorer.score(chunk)  # bisects through client.predict, as the general path does
        else:
            predictions = _predictions(answer, len(chunk.frame), scorer, chunk.start, decode)
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
            # What a failure left under way ends (cancelled) before the connections close.
            left = [task for task in asyncio.all_tasks(loop) if not task.done()]
            if left:
                loop.run_until_complete(asyncio.wait(left, timeout=10))
            loop.run_until_complete(edge.close())
        finally:
            loop.close()


def _loop_running() -> bool:
    """Whether the calling thread runs an event loop (which then cannot run another one)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


def _in_own_thread(function: Callable[..., None], *args: Any, **kwargs: Any) -> None:
    """``function(*args, **kwargs)`` in a new thread; the caller waits, and gets its exception."""
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="deployflow-batch") as pool:
        pool.submit(function, *args, **kwargs).result()


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


def _predictions(answer: Answer, rows: int, scorer: ChunkScorer, start: int, decode: Callable[[bytes], Any] | None = None) -> Any:
    """The chunk's predictions from ``answer``: an Arrow stream when its Content-Type says so (only a
    route that asked for one gets it), else the route's own decoding or the scoring protocol's JSON."""
    if decode is None and answer.headers.get("Content-Type", "").startswith(CONTENT_TYPE_ARROW):
        from ..arrow_chunks import decode_predictions

        return counted(decode_predictions(answer.content, scorer.prediction_column), rows, start)
    from ..payloads import decode_response

    return parse_predictions((decode or decode_response)(answer.content), rows, scorer.prediction_column, start)
