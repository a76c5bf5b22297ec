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
* at the deadline, :class:`~deployflow.errors.WaitTimeoutError` says the last state seen;
* a wait started inside a :func:`deployflow.retry.operation` scope with a deadline (a pipeline step's
  one deadline) ends by that deadline too, when it comes before ``timeout``.

The arguments are checked once, when the :class:`WaitPlan` is made, with the coercions of
:mod:`deployflow.retry` (so sync and async waits refuse the same things): ``timeout`` and
``not_found_grace`` are seconds >= 0, ``poll_interval`` and ``max_poll_interval`` seconds > 0, each a
number or a numeric string ("30", as the CLI and templates send them). ``nan``, infinities, booleans and
negative numbers are refused with :class:`~deployflow.errors.InvalidInputError`; there is no "wait
forever" value. A ``max_poll_interval`` below ``poll_interval`` is raised to it.

:class:`WaitPlan` holds the decisions; :func:`wait_until_ready` and :func:`wait_until_ready_async` only do
the sleeping and the polling.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable, Union

from .errors import (
    DeploymentError,
    DeploymentFailedError,
    InvalidInputError,
    NotFoundError,
    RequestTimeoutError,
    WaitTimeoutError,
)
from .redaction import get_logger
from .retry import as_number, current_budget, operation
from .status import State, Status

__all__ = ["WaitPlan", "check_wait_arguments", "wait_until_ready", "wait_until_ready_async", "DEFAULT_WAIT_TIMEOUT"]

logger = get_logger(__name__)

DEFAULT_WAIT_TIMEOUT = 900.0

StatusCallback = Callable[[Status], None]
# A poll still running this long after the deadline is cancelled (its HTTP calls end at the deadline).
_CANCEL_GRACE = 1.0
# Even the last poll before the deadline gets this long (a wait with timeout=0 still polls once).
_MIN_POLL_SECONDS = 0.5


def check_wait_arguments(**arguments: Any) -> dict[str, float]:
    """Check and convert the numeric arguments of a wait, by the rules in this module's docstring.

    Takes any of ``timeout``, ``poll_interval``, ``max_poll_interval``, ``not_found_grace``, ``backoff``
    and ``jitter``; returns them as floats. :class:`WaitPlan` checks its arguments with this; a step
    that waits later calls it first, so a bad argument fails before the step changes anything.

    >>> check_wait_arguments(timeout="30", poll_interval=2)
    {'timeout': 30.0, 'poll_interval': 2.0}
    """
    checked: dict[str, float] = {}
    for name, value in arguments.items():
        if name in ("timeout", "not_found_grace"):
            checked[name] = as_number(value, name, positive=False)
        elif name in ("poll_interval", "max_poll_interval"):
            checked[name] = as_number(value, name, positive=True)
        elif name == "backoff":
            checked[name] = as_number(value, name, positive=True)
            if checked[name] < 1:
                raise InvalidInputError(f"backoff must be a number >= 1, got {value!r}")
        elif name == "jitter":
            checked[name] = as_number(value, name, positive=False)
            if checked[name] > 1:
                raise InvalidInputError(f"jitter must be a number from 0 to 1, got {value!r}")
        else:
            raise InvalidInputError(f"{name!r} is not an argument of a wait")
    return checked


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
        if not isinstance(self.what, str) or not self.what.strip():
            raise InvalidInputError(f"what must be a non-empty description of what is waited for, got {self.what!r}")
        checked = check_wait_arguments(
            timeout=self.timeout,
            poll_interval=self.poll_interval,
            max_poll_interval=self.max_poll_interval,
            not_found_grace=self.not_found_grace,
            backoff=self.backoff,
            jitter=self.jitter,
        )
        self.timeout = checked["timeout"]
        self.poll_interval = checked["poll_interval"]
        self.max_poll_interval = max(checked["max_poll_interval"], self.poll_interval)
        self.not_found_grace = checked["not_found_grace"]
        self.backoff = checked["backoff"]
        self.jitter = checked["jitter"]
        if self.on_change is not None and not callable(self.on_change):
            raise InvalidInputError(f"on_change must be a callable or None, got {self.on_change!r}")
        self.started = self.clock()
        limit = self.timeout
        budget = current_budget()
        enclosing = budget.remaining_seconds() if budget is not None else None
        if enclosing is not None and enclosing < limit:
            limit = max(0.0, enclosing)  # the caller's deadline comes first
        self.deadline = self.started + limit
        self._interval = self.poll_interval

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
        waited = self.deadline - self.started
        why = "" if waited >= self.timeout else f" (the caller's deadline came first; timeout was {self.timeout:g} s)"
        return WaitTimeoutError(
            f"{self.what} was not ready after {waited:g} s{why}; last state: {seen}",
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
