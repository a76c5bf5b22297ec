"""Waiting until a deployment or endpoint is ready: written once, driven sync or async.

The rules, the same for every target and every caller (CLI, Prefect task, Airflow sensor or trigger):

* one monotonic deadline: ``timeout`` seconds from the start, whatever happens in between. Each poll
  runs inside a :func:`deployflow.retry.operation` scope ending at that deadline, so every HTTP call a
  status check makes has the time left as its total timeout: a hung status call cannot hold the wait
  past its deadline (the wait ends within about a second of ``timeout``). The async
  twin also cancels a poll that is still running at the deadline;
* polls are spaced by exponential backoff with jitter, from ``poll_interval`` up to ``max_poll_interval``;
  the last sleep is clipped so the deadline is checked on time;
* an error marked ``retryable`` while polling (a dropped connection, a 503), and a poll that timed
  out, are tolerated and counted; any other error propagates at once;
* NOT_FOUND is tolerated for ``not_found_grace`` seconds (a create that has not propagated yet), then
  raises :class:`~deployflow.errors.NotFoundError`;
* FAILED raises :class:`~deployflow.errors.DeploymentFailedError` at once with the target's reason;
* at the deadline, :class:`~deployflow.errors.WaitTimeoutError` says the last state seen.

:class:`WaitPlan` holds the decisions; :func:`wait_until_ready` and :func:`wait_until_ready_async` only do
the sleeping and the polling.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass, field
from typing import Awaitable, Callable, Union

from .errors import (
    DeploymentError,
    DeploymentFailedError,
    InvalidInputError,
    NotFoundError,
    RequestTimeoutError,
    WaitTimeoutError,
)
from .redaction import get_logger
from .retry import operation
from .status import State, Status

__all__ = ["WaitPlan", "wait_until_ready", "wait_until_ready_async", "DEFAULT_WAIT_TIMEOUT"]

logger = get_logger(__name__)

DEFAULT_WAIT_TIMEOUT = 900.0

StatusCallback = Callable[[Status], None]
# A poll still running this long after the deadline is cancelled (its HTTP calls end at the deadline).
_CANCEL_GRACE = 1.0
# Even the last poll before the deadline gets this long (a wait with timeout=0 still polls once).
_MIN_POLL_SECONDS = 0.5


@dataclass
class WaitPlan:
    """The bookkeeping of one wait. ``observe`` takes each poll's outcome and says how long to sleep."""

    what: str
    timeout: float = DEFAULT_WAIT_TIMEOUT
    poll_interval: float = 1.0
    max_poll_interval: float = 15.0
    backoff: float = 1.5
    jitter: float = 0.2
    not_found_grace: float = 30.0
    on_change: StatusCallback | None = None
    clock: Callable[[], float] = time.monotonic
    started: float = field(init=False)
    deadline: float = field(init=False)
    last_status: Status | None = field(init=False, default=None)
    last_error: BaseException | None = field(init=False, default=None)
    polls: int = field(init=False, default=0)
    _interval: float = field(init=False)
    _not_found_since: float | None = field(init=False, default=None)

    def __post_init__(self) -> None:
        if self.timeout is None or self.timeout < 0:
            raise InvalidInputError(f"timeout must be a number of seconds >= 0, got {self.timeout!r}")
        if self.poll_interval <= 0:
            raise InvalidInputError(f"poll_interval must be > 0, got {self.poll_interval!r}")
        self.started = self.clock()
        self.deadline = self.started + float(self.timeout)
        self._interval = float(self.poll_interval)

    def remaining(self) -> float:
        return self.deadline - self.clock()

    def observe(self, outcome: Union[Status, BaseException]) -> float | None:
        """Record one poll. Returns ``None`` when ready, else the seconds to sleep; raises when done."""
        self.polls += 1
        now = self.clock()
        if isinstance(outcome, BaseException):
            tolerated = isinstance(outcome, RequestTimeoutError) or (
                isinstance(outcome, DeploymentError) and outcome.retryable
            )
            if not tolerated:
                raise outcome
            self.last_error = outcome
            logger.info("%s: poll failed, will retry: %s", self.what, outcome)
        else:
            self._record(outcome)
            if outcome.state is State.READY:
                return None
            if outcome.state is State.FAILED:
                raise DeploymentFailedError(
                    f"{self.what} failed: {outcome.reason or 'the target reported FAILED'}",
                    reason=outcome.reason,
                )
            if outcome.state is State.NOT_FOUND:
                if self._not_found_since is None:
                    self._not_found_since = now
                if now - self._not_found_since >= self.not_found_grace:
                    raise NotFoundError(
                        f"{self.what} does not exist (still not found after {self.not_found_grace:g} s)"
                    )
            else:
                self._not_found_since = None
        remaining = self.deadline - now
        if remaining <= 0:
            raise self.timeout_error()
        sleep = self._interval * (1 + random.uniform(-self.jitter, self.jitter))
        self._interval = min(self._interval * self.backoff, self.max_poll_interval)
        return max(0.0, min(sleep, remaining))

    def timeout_error(self) -> WaitTimeoutError:
        seen = str(self.last_status) if self.last_status else "no status"
        if self.last_error is not None and self.last_status is None:
            seen = f"no status; last error: {self.last_error}"
        return WaitTimeoutError(
            f"{self.what} was not ready after {self.timeout:g} s; last state: {seen}",
            last_status=self.last_status,
        )

    def _record(self, status: Status) -> None:
        changed = self.last_status is None or (self.last_status.state, self.last_status.reason) != (
            status.state,
            status.reason,
        )
        self.last_status = status
        if changed:
            logger.info("%s: %s", self.what, status)
            if self.on_change is not None:
                self.on_change(status)


def wait_until_ready(
    poll: Callable[[], Status], plan: WaitPlan, *, sleep: Callable[[float], None] = time.sleep
) -> Status:
    """Call ``poll`` until it reports READY, following ``plan``. Returns the READY status."""
    while True:
        try:
            with operation(timeout=max(plan.remaining(), _MIN_POLL_SECONDS)):
                outcome: Status | BaseException = poll()
        except DeploymentError as exc:
            outcome = exc
        delay = plan.observe(outcome)
        if delay is None:
            return plan.last_status  # type: ignore[return-value]  # observe() saw READY
        sleep(delay)


async def wait_until_ready_async(poll: Callable[[], Awaitable[Status]], plan: WaitPlan) -> Status:
    """The same as :func:`wait_until_ready`, for an event loop: never blocks it."""
    import asyncio  # here, not at the top: it is the costliest import of the package

    while True:
        remaining = max(plan.remaining(), _MIN_POLL_SECONDS)
        try:
            with operation(timeout=remaining):  # asyncio.to_thread and tasks inherit the scope
                outcome: Status | BaseException = await asyncio.wait_for(poll(), remaining + _CANCEL_GRACE)
        except asyncio.TimeoutError:
            outcome = RequestTimeoutError(f"{plan.what}: the status check did not finish before the deadline")
        except DeploymentError as exc:
            outcome = exc
        delay = plan.observe(outcome)
        if delay is None:
            return plan.last_status  # type: ignore[return-value]  # observe() saw READY
        await asyncio.sleep(delay)
