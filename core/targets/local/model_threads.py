"""The model threads of a deployment server: where each request's decode, predict and encode run.

The per-request job runs on a daemon model thread, so the event loop stays free to answer ``/ping``
and to send the 504 when a call overruns. The handoff is a queue put and one ``call_soon_threadsafe``
back, about 40 µs per request on this project's 2-core machine, against about 100 µs for
``loop.run_in_executor`` wrapped in ``asyncio.wait_for``. A call that overruns cannot be interrupted: it
finishes in its thread and its result is dropped, while a spare thread serves the requests behind it;
daemon threads never keep a stopping server alive. How many jobs may wait here is bounded before they
get here, by the server's admission (:class:`.limits.Admission`, config ``max_queue``). A job still
waiting when its client leaves is dropped (:meth:`ModelThreads.abandon`): no thread starts it, and its
place in the queue is free for a request someone waits for.
"""

from __future__ import annotations

import asyncio
import queue
import threading
from collections.abc import Callable
from typing import Any

from ...redaction import get_logger

__all__ = ["Abandoned", "Expired", "Job", "ModelThreads"]

_logger = get_logger("deployflow.targets.local.server")


class Expired(Exception):
    """Raised into a request's future when its time limit passes."""


class Abandoned(Exception):
    """Raised into a request's future when its client left before a thread started the job."""


def _resolve(future: asyncio.Future[Any], result: Any) -> None:
    if not future.done():
        future.set_result(result)


def _reject(future: asyncio.Future[Any], exc: BaseException) -> None:
    if not future.done():
        future.set_exception(exc)


class Job:
    """One request's work for a model thread."""

    __slots__ = ("future", "function", "args", "running", "overran")

    def __init__(self, future: asyncio.Future[Any], function: Callable[..., Any], args: tuple[Any, ...]) -> None:
        self.future = future
        self.function = function
        self.args = args
        self.running = False
        self.overran = False


class ModelThreads:
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

    def __init__(
        self, loop: asyncio.AbstractEventLoop, count: int, spare_limit: int = 8, on_dequeue: Callable[[], None] | None = None
    ) -> None:
        self._loop = loop
        self._on_dequeue = on_dequeue  # called in the thread as each job leaves the queue
        self._jobs: queue.SimpleQueue[Job] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._wanted = count
        self._limit = count + spare_limit
        self._alive = count
        self._stuck = 0
        self._busy = 0  # threads in a job, stuck ones included
        self._started = 0
        for _ in range(count):
            self._start_thread()

    def _start_thread(self) -> None:
        self._started += 1
        name = f"deployflow-model-{self._started}"
        threading.Thread(target=self._work, name=name, daemon=True).start()

    def submit(self, function: Callable[..., Any], *args: Any) -> Job:
        job = Job(self._loop.create_future(), function, args)
        self._jobs.put(job)
        return job

    def would_wait(self) -> bool:
        """Whether a job submitted now would wait for a thread (every thread is in a job, or has one
        queued for it). Read without the lock: a guess, right but for a job that starts or ends meanwhile."""
        return self._jobs.qsize() >= self._alive - self._busy

    def abandon(self, job: Job) -> None:
        """The job's client left (called in the event loop): drop the job if no thread started it."""
        with self._lock:
            if not job.future.done() and not job.running:
                job.future.set_exception(Abandoned())

    def expire(self, job: Job) -> None:
        """The job's time limit passed (called in the event loop): fail it, and cover for a stuck thread."""
        with self._lock:
            if job.future.done():
                return
            job.future.set_exception(Expired())
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
            if self._on_dequeue is not None:
                self._on_dequeue()
            with lock:
                if job.future.done():  # its time ran out, or its client left, while it queued: do not start it
                    continue
                job.running = True
                self._busy += 1
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
                self._busy -= 1
                if job.overran:
                    self._stuck -= 1
                if self._alive - self._stuck > self._wanted:  # a spare covered for this thread: retire
                    self._alive -= 1
                    return



# The names the server module had for them (tests and older imports).
_Expired, _Job, _ModelThreads = Expired, Job, ModelThreads
