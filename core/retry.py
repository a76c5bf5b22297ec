"""When a request is sent again: the one retry policy, the one decision, and one budget per operation.

Every place that may repeat an HTTP request (the sync transport, the async edge, batch chunks, and the
pipeline steps through ``error.retryable``) asks :func:`should_retry` the same question, with three facts:

* **is the request idempotent?** GET, HEAD, OPTIONS, PUT and DELETE are; a POST or PATCH is only when
  the target declares it (predict on a model server has no side effects: the ``local`` and
  ``serving`` targets declare it; OpenAI and gateway completions, Databricks creates are not). A policy
  with ``retry_non_idempotent=True`` treats every request as idempotent: an opt-in for services the
  caller knows to be safe.
* **may the request have been sent?** A refused connection or a connect timeout: it was not.
  A read timeout or a connection dropped after the request went out: it may have been processed.
* **what failed?** One of :class:`Failure`, and the HTTP status for an error answer.

The rules:

=====================================  ===================  =====================================
failure                                idempotent request   other request
=====================================  ===================  =====================================
connect refused, connect timeout       retried              retried (nothing was sent)
HTTP 429, 503 (policy statuses)        retried              retried (the service did no work)
HTTP 500, 502 (policy statuses)        retried              not retried
connection dropped after sending       retried              not retried: the outcome is unknown
read timeout                           retried only with    not retried
                                       ``retry_on_timeout``
anything else (4xx, 504, TLS, ...)     not retried          not retried
=====================================  ===================  =====================================

The wait before a retry (:func:`retry_wait`) is the service's ``Retry-After`` capped to
``max_retry_after``, else exponential backoff with jitter. An error the library raises has its
``retryable`` set by the same decision, so an outer level (a batch chunk, a Prefect or Airflow retry)
never repeats what the transport would not.

**One budget per operation.** :func:`operation` opens a scope (a context variable) holding a number of
attempts and a deadline. Every HTTP attempt made under it, at any level, draws from the same counter,
and every request's total timeout is clipped to the scope's deadline: levels never multiply, and a
caller's deadline reaches every call under it. Scopes nest; an inner scope never outlives or outspends
the outer one.
"""

from __future__ import annotations

import contextlib
import contextvars
import enum
import math
import random
import time
from collections.abc import Iterator
from dataclasses import dataclass

from .errors import DeploymentError, InvalidInputError

__all__ = [
    "Failure",
    "RetryPolicy",
    "Budget",
    "IDEMPOTENT_METHODS",
    "UNPROCESSED_STATUSES",
    "is_idempotent_method",
    "should_retry",
    "retry_wait",
    "settle_retryable",
    "operation",
    "current_budget",
]

#: Methods that may be repeated without changing the result (RFC 9110, section 9.2.2).
IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE", "TRACE"})
#: Answers that say the service did not do the work, so even a non-idempotent request may be repeated.
UNPROCESSED_STATUSES = frozenset({429, 503})
#: Statuses a policy may retry. 504 is allowed but not a default: the gateway already waited.
RETRYABLE_STATUS_CHOICES = frozenset({429, 500, 502, 503, 504})
DEFAULT_RETRY_STATUSES = frozenset({429, 500, 502, 503})


class Failure(enum.Enum):
    """How one HTTP attempt failed."""

    #: The connection could not be opened (refused, unreachable, name not found): nothing was sent.
    CONNECT = "connect"
    #: Opening the connection took too long: nothing was sent.
    CONNECT_TIMEOUT = "connect timeout"
    #: The request was sent and no answer came in time: it may have been processed.
    READ_TIMEOUT = "read timeout"
    #: The connection broke after the request was (perhaps partly) sent: it may have been processed.
    DROPPED = "dropped"
    #: The service answered with an error status.
    STATUS = "status"

    @property
    def sent(self) -> bool:
        """Whether the request may have reached the service."""
        return self not in (Failure.CONNECT, Failure.CONNECT_TIMEOUT)


def _invalid(source: str, value: object, expected: str) -> InvalidInputError:
    return InvalidInputError(f"{source} must be {expected}, got {value!r}")


def as_number(value: object, source: str, *, positive: bool, unit: str | None = None) -> float:
    """``value`` (a number or a numeric string) as a float >= 0 (> 0 with ``positive``); ``unit``
    (``"seconds"``) names what the number counts in the error message."""
    of = f" of {unit}" if unit else ""
    expected = f"a positive number{of}" if positive else f"a number{of} >= 0"
    if isinstance(value, bool):
        raise _invalid(source, value, expected)
    if isinstance(value, str):
        try:
            value = float(value.strip())
        except ValueError:
            raise _invalid(source, value, expected) from None
    if not isinstance(value, (int, float)):
        raise _invalid(source, value, expected)
    number = float(value)
    if not math.isfinite(number) or number < 0 or (positive and number == 0):
        raise _invalid(source, value, expected)
    return number


def as_int(value: object, source: str, *, minimum: int, maximum: int | None = None) -> int:
    """``value`` (an integer, an integral float or a numeric string) as an int >= ``minimum`` (and
    <= ``maximum`` when given)."""
    expected = f"an integer >= {minimum}" if maximum is None else f"an integer from {minimum} to {maximum}"
    if isinstance(value, bool):
        raise _invalid(source, value, expected)
    if isinstance(value, str):
        try:
            value = int(value.strip())
        except ValueError:
            raise _invalid(source, value, expected) from None
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if not isinstance(value, int) or value < minimum or (maximum is not None and value > maximum):
        raise _invalid(source, value, expected)
    return value


TRUE_WORDS = frozenset({"1", "true", "yes", "on"})
FALSE_WORDS = frozenset({"0", "false", "no", "off"})


def as_bool(value: object, source: str) -> bool:
    """``value`` (a bool, 0/1, or a word such as "true", "off") as a bool."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str):
        word = value.strip().lower()
        if word in TRUE_WORDS:
            return True
        if word in FALSE_WORDS:
            return False
    raise _invalid(source, value, "true or false")


@dataclass(frozen=True)
class RetryPolicy:
    """How a request is retried. Immutable; the rules are in this module's docstring.

    ``RetryPolicy(max_retries=0)`` disables retries. ``retry_statuses`` may only name statuses from
    {429, 500, 502, 503, 504}: a policy can be made stricter, but cannot make a 400 "transient".
    ``retry_non_idempotent=True`` widens the rules: every request is treated as idempotent.
    """

    max_retries: int = 5
    backoff_factor: float = 1.0
    backoff_max: float = 30.0
    jitter: float = 0.5
    retry_statuses: frozenset[int] = DEFAULT_RETRY_STATUSES
    respect_retry_after: bool = True
    max_retry_after: float = 60.0
    retry_on_timeout: bool = False
    retry_non_idempotent: bool = False

    def __post_init__(self) -> None:
        set_ = object.__setattr__
        set_(self, "max_retries", as_int(self.max_retries, "max_retries", minimum=0))
        for name in ("backoff_factor", "backoff_max", "max_retry_after"):
            set_(self, name, as_number(getattr(self, name), name, positive=False))
        jitter = as_number(self.jitter, "jitter", positive=False)
        if jitter > 1:
            raise _invalid("jitter", self.jitter, "between 0 and 1")
        set_(self, "jitter", jitter)
        statuses = frozenset(self.retry_statuses)
        if not statuses <= RETRYABLE_STATUS_CHOICES:
            raise _invalid("retry_statuses", sorted(statuses), f"a subset of {sorted(RETRYABLE_STATUS_CHOICES)}")
        set_(self, "retry_statuses", statuses)
        for name in ("respect_retry_after", "retry_on_timeout", "retry_non_idempotent"):
            set_(self, name, as_bool(getattr(self, name), name))

    def __repr__(self) -> str:
        # The default repr would list retry_statuses in hash order; sorted reads better.
        fields = ", ".join(
            f"{name}={getattr(self, name)!r}" for name in ("max_retries", "backoff_factor", "backoff_max", "jitter")
        )
        statuses = ", ".join(str(status) for status in sorted(self.retry_statuses))
        return (
            f"RetryPolicy({fields}, retry_statuses=frozenset({{{statuses}}}), "
            f"respect_retry_after={self.respect_retry_after!r}, max_retry_after={self.max_retry_after!r}, "
            f"retry_on_timeout={self.retry_on_timeout!r}, retry_non_idempotent={self.retry_non_idempotent!r})"
        )

    @property
    def max_attempts(self) -> int:
        """Attempts including the first one."""
        return self.max_retries + 1

    def backoff(self, retry_number: int) -> float:
        """Seconds to wait before retry number ``retry_number`` (1 for the first retry), with jitter."""
        exponent = min(max(retry_number - 1, 0), 60)  # 2**60 seconds is far past any cap
        base = min(self.backoff_max, self.backoff_factor * (2.0**exponent))
        return base * (1.0 - self.jitter * random.random())


def is_idempotent_method(method: str) -> bool:
    return method.upper() in IDEMPOTENT_METHODS


def should_retry(
    policy: RetryPolicy,
    *,
    idempotent: bool,
    failure: Failure,
    status: int | None = None,
    statuses: frozenset[int] | None = None,
) -> bool:
    """Whether a request that failed this way may be sent again (the table in the module docstring).

    ``statuses`` narrows the policy's retry statuses for one request (a target that knows some of its
    server's 5xx answers are deterministic). Attempts and deadlines are not looked at here.
    """
    safe = idempotent or policy.retry_non_idempotent
    if not failure.sent:
        return True
    if failure is Failure.STATUS:
        allowed = policy.retry_statuses if statuses is None else policy.retry_statuses & statuses
        return status in allowed and (safe or status in UNPROCESSED_STATUSES)
    if failure is Failure.READ_TIMEOUT:
        return safe and policy.retry_on_timeout
    return safe  # dropped after sending


def retry_wait(policy: RetryPolicy, error: BaseException | None, retry_number: int) -> float:
    """Seconds to wait before retry number ``retry_number``: ``Retry-After`` (capped) or backoff."""
    retry_after = getattr(error, "retry_after", None) if policy.respect_retry_after else None
    if retry_after is not None:
        return min(float(retry_after), policy.max_retry_after)
    return policy.backoff(retry_number)


def settle_retryable(
    error: DeploymentError,
    policy: RetryPolicy,
    *,
    idempotent: bool,
    statuses: frozenset[int] | None = None,
) -> bool:
    """Set ``error.retryable`` from :func:`should_retry` (for errors that carry a ``failure``) and return it."""
    failure = getattr(error, "failure", None)
    if isinstance(failure, Failure):
        error.retryable = should_retry(
            policy, idempotent=idempotent, failure=failure, status=error.status_code, statuses=statuses
        )
    return error.retryable


# --------------------------------------------------------------------------------------------------
# One budget per operation
# --------------------------------------------------------------------------------------------------


class Budget:
    """Attempts and a deadline shared by every HTTP attempt made inside one :func:`operation` scope."""

    __slots__ = ("attempts_left", "deadline", "parent")

    def __init__(self, attempts: int | None, deadline: float | None, parent: Budget | None) -> None:
        self.attempts_left = attempts
        self.deadline = deadline
        self.parent = parent

    def remaining_attempts(self) -> int | None:
        """Attempts still allowed here and in every enclosing scope (``None``: no limit)."""
        left: int | None = None
        scope: Budget | None = self
        while scope is not None:
            if scope.attempts_left is not None:
                left = scope.attempts_left if left is None else min(left, scope.attempts_left)
            scope = scope.parent
        return left

    def remaining_seconds(self, now: float | None = None) -> float | None:
        """Seconds to the nearest deadline of this and the enclosing scopes (``None``: no deadline)."""
        deadline = self.nearest_deadline()
        if deadline is None:
            return None
        return deadline - (time.monotonic() if now is None else now)

    def nearest_deadline(self) -> float | None:
        nearest: float | None = None
        scope: Budget | None = self
        while scope is not None:
            if scope.deadline is not None:
                nearest = scope.deadline if nearest is None else min(nearest, scope.deadline)
            scope = scope.parent
        return nearest

    def spend(self) -> None:
        """Count one attempt here and in every enclosing scope."""
        scope: Budget | None = self
        while scope is not None:
            if scope.attempts_left is not None:
                scope.attempts_left -= 1
            scope = scope.parent

    def __repr__(self) -> str:
        seconds = self.remaining_seconds()
        when = "no deadline" if seconds is None else f"{seconds:.3g} s left"
        return f"Budget(attempts_left={self.remaining_attempts()!r}, {when})"


_current: contextvars.ContextVar[Budget | None] = contextvars.ContextVar("deployflow_budget", default=None)


def current_budget() -> Budget | None:
    """The budget of the innermost :func:`operation` scope, or ``None`` outside any."""
    return _current.get()


@contextlib.contextmanager
def operation(*, attempts: int | None = None, timeout: float | None = None) -> Iterator[Budget]:
    """A scope in which every HTTP attempt shares ``attempts`` and every call ends by ``timeout`` seconds.

    >>> with operation(attempts=3, timeout=30):  # doctest: +SKIP
    ...     client.predict("churn", frame)  # the transport makes at most 3 attempts within 30 s

    Threads started inside the scope do not see it (a context variable); ``asyncio.to_thread`` and
    tasks created inside it do.
    """
    if attempts is not None:
        attempts = as_int(attempts, "attempts", minimum=1)
    deadline = None
    if timeout is not None:
        deadline = time.monotonic() + as_number(timeout, "timeout", positive=False)
    budget = Budget(attempts, deadline, _current.get())
    token = _current.set(budget)
    try:
        yield budget
    finally:
        _current.reset(token)
