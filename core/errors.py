"""The errors deployflow raises.

Every error is a :class:`DeploymentError`, so one ``except`` catches them all, and each carries what a
caller needs to decide what to do next without matching on message text:

* ``error_code``: an MLflow-style code (``RESOURCE_DOES_NOT_EXIST``, ``INVALID_PARAMETER_VALUE``, ...);
* ``status_code``: the HTTP status when an HTTP answer caused the error, else ``None``;
* ``retryable``: ``True`` when asking again may succeed *and* is safe (orchestrators retry only these).
  For an HTTP failure the transport sets it from :func:`deployflow.retry.should_retry`: a POST that
  is not idempotent and may have reached the service is never ``retryable``;
* ``failure``: for an HTTP failure, how the attempt failed (a :class:`deployflow.retry.Failure`), else
  ``None``.

The tree::

    DeploymentError
     +-- TargetError                  the target URI or its plugin cannot be used
     |    +-- UnknownTargetError      no installed target has that name
     |    +-- PluginError             a plugin is installed but broken (what it lacks is in the message)
     +-- InvalidInputError            the request is wrong; asking again will not help (400)
     |    +-- BadRowsError            batch scoring: the service rejected these input rows (``row_range``)
     +-- NotFoundError                the deployment or endpoint does not exist (404)
     +-- ConflictError                it exists already, or clashes with what exists (409)
     +-- NotSupportedError            the target does not offer this operation (also a NotImplementedError)
     +-- TransientError               worth retrying: 429, 500, 502, 503, connection failures
     |    +-- RequestTimeoutError     no answer in time (not retried by the transport by default)
     +-- OutcomeUnknownError          a request was sent and its answer lost; not repeated (not idempotent)
     +-- RemoteError                  the service answered with an error that retrying will not fix
     |    +-- AuthenticationError     401 / 403: credentials missing, wrong or not allowed
     +-- DeploymentFailedError        the deployment reached a terminal failed state (``reason``)
     +-- WaitTimeoutError             waiting ran out of time (``last_status`` is the last state seen)
     +-- MissingExtraError            an optional dependency is not installed; the message names the
                                      pip command (``pip install 'deployflow[local]'``); also an ImportError

Messages pass through :func:`deployflow.redaction.redact`, so tokens never show in ``str(error)``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NoReturn

from .redaction import redact

__all__ = [
    "DeploymentError",
    "TargetError",
    "UnknownTargetError",
    "PluginError",
    "InvalidInputError",
    "BadRowsError",
    "NotFoundError",
    "ConflictError",
    "NotSupportedError",
    "TransientError",
    "RequestTimeoutError",
    "RemoteError",
    "OutcomeUnknownError",
    "AuthenticationError",
    "DeploymentFailedError",
    "WaitTimeoutError",
    "MissingExtraError",
    "error_for_status",
    "is_not_found",
    "is_already_exists",
    "raise_as_read",
]


class DeploymentError(Exception):
    """Root of every error deployflow raises."""

    default_error_code = "INTERNAL_ERROR"
    default_retryable = False
    #: How the HTTP attempt behind this error failed (:class:`deployflow.retry.Failure`), if one did.
    failure: Any = None

    def __init__(
        self,
        message: str,
        *,
        error_code: str | None = None,
        status_code: int | None = None,
        retryable: bool | None = None,
        body: str | None = None,
    ) -> None:
        self.message = redact(str(message))
        self.error_code = error_code or self.default_error_code
        self.status_code = status_code
        self.retryable = self.default_retryable if retryable is None else retryable
        #: A short, redacted excerpt of the HTTP body that caused the error, if any.
        self.body = redact(body) if body else None
        super().__init__(self.message)

    def __str__(self) -> str:
        return self.message

    def __repr__(self) -> str:
        parts = [repr(self.message), f"error_code={self.error_code!r}"]
        if self.status_code is not None:
            parts.append(f"status_code={self.status_code}")
        if self.retryable:
            parts.append("retryable=True")
        return f"{type(self).__name__}({', '.join(parts)})"

    def __reduce__(self) -> tuple[Any, ...]:
        # Keep the keyword attributes when the error crosses a process boundary (Dask, Airflow).
        return (
            _rebuild_error,
            (type(self), self.message, self.error_code, self.status_code, self.retryable, self.body),
            self.__dict__,
        )


def _rebuild_error(cls, message, error_code, status_code, retryable, body):  # type: ignore[no-untyped-def]
    error = cls.__new__(cls)
    DeploymentError.__init__(
        error, message, error_code=error_code, status_code=status_code, retryable=retryable, body=body
    )
    return error


class TargetError(DeploymentError):
    """The target URI cannot be turned into a client."""

    default_error_code = "INVALID_PARAMETER_VALUE"


class UnknownTargetError(TargetError):
    """No installed target (built in or plugin) has the requested name."""

    default_error_code = "RESOURCE_DOES_NOT_EXIST"


class PluginError(TargetError):
    """A plugin was found but cannot be used; the message says what it lacks."""

    default_error_code = "INTERNAL_ERROR"


class InvalidInputError(DeploymentError):
    """The request itself is wrong: bad arguments, bad config, bad payload."""

    default_error_code = "INVALID_PARAMETER_VALUE"


class BadRowsError(InvalidInputError):
    """Batch scoring stopped because the service rejected a range of input rows as bad input.

    ``row_range`` is ``(first, last)``, both inclusive, counted from 0 in input order.
    """

    def __init__(self, message: str, *, row_range: tuple[int, int] | None = None, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.row_range = row_range


class NotFoundError(DeploymentError):
    """The deployment or endpoint does not exist."""

    default_error_code = "RESOURCE_DOES_NOT_EXIST"


class ConflictError(DeploymentError):
    """The deployment or endpoint exists already, or the change clashes with the current state."""

    default_error_code = "RESOURCE_ALREADY_EXISTS"


class NotSupportedError(DeploymentError, NotImplementedError):
    """The target does not offer this operation."""

    default_error_code = "NOT_IMPLEMENTED"


class TransientError(DeploymentError):
    """A failure that may go away: rate limiting, an overloaded or restarting service, a dropped connection."""

    default_error_code = "TEMPORARILY_UNAVAILABLE"
    default_retryable = True

    def __init__(self, message: str, *, retry_after: float | None = None, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        #: Seconds the service asked us to wait (``Retry-After``), when it said.
        self.retry_after = retry_after


class RequestTimeoutError(TransientError):
    """The service did not answer within the request timeout.

    Retryable for a whole pipeline step, but the transport does not repeat the request by default:
    a slow model is not made faster by asking again, and a repeated POST may do the work twice.
    """

    default_error_code = "DEADLINE_EXCEEDED"


class RemoteError(DeploymentError):
    """The service answered with an error that asking again will not fix."""


class OutcomeUnknownError(DeploymentError):
    """A request that is not idempotent was sent, then the connection broke or timed out before the
    answer: the service may have done the work. It is not sent again (not retryable); check the
    service's state before repeating it."""

    default_error_code = "TEMPORARILY_UNAVAILABLE"


class AuthenticationError(RemoteError):
    """The service refused the credentials (401) or the action (403)."""

    default_error_code = "UNAUTHENTICATED"


class DeploymentFailedError(DeploymentError):
    """The deployment or endpoint reached a terminal failed state."""

    default_error_code = "INVALID_STATE"

    def __init__(self, message: str, *, reason: str | None = None, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.reason = redact(reason) if reason else None


class WaitTimeoutError(DeploymentError):
    """Waiting for a deployment or endpoint to become ready ran out of time.

    Not retryable: the timeout is the caller's whole budget for the wait (one deadline), and a retried
    step would quietly wait longer than asked.
    """

    default_error_code = "DEADLINE_EXCEEDED"

    def __init__(self, message: str, *, last_status: Any = None, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        #: The last :class:`~deployflow.Status` seen before the deadline, or ``None``.
        self.last_status = last_status


class MissingExtraError(DeploymentError, ImportError):
    """A feature needs an optional dependency that is not installed.

    The message names the extra and the command that installs it, and the module found missing:
    "the 'local' target needs the 'local' extra: pip install 'deployflow[local]' (missing module:
    uvicorn)". ``extra`` and ``module`` hold those two. Also an :class:`ImportError`, so code that
    treats a missing optional dependency as ``ImportError`` keeps working. Not retryable: installing
    is the fix. Raised by :func:`deployflow._extras.require`.
    """

    default_error_code = "FEATURE_DISABLED"

    def __init__(
        self, message: str, *, extra: str | None = None, module: str | None = None, **kwargs: Any
    ) -> None:
        super().__init__(message, **kwargs)
        #: The deployflow extra that installs what is missing (``None`` for a package outside them).
        self.extra = extra
        #: The module that could not be found.
        self.module = module


# MLflow's server-side codes that mean "asking again will not help" or "this does not exist".
_CODE_TO_CLASS: dict[str, type[DeploymentError]] = {
    "RESOURCE_DOES_NOT_EXIST": NotFoundError,
    "ENDPOINT_NOT_FOUND": NotFoundError,
    "NOT_FOUND": NotFoundError,
    "RESOURCE_ALREADY_EXISTS": ConflictError,
    "ALREADY_EXISTS": ConflictError,
    "RESOURCE_CONFLICT": ConflictError,
    "INVALID_PARAMETER_VALUE": InvalidInputError,
    "BAD_REQUEST": InvalidInputError,
    "MALFORMED_REQUEST": InvalidInputError,
    "INVALID_STATE": ConflictError,
    "UNAUTHENTICATED": AuthenticationError,
    "PERMISSION_DENIED": AuthenticationError,
    "NOT_IMPLEMENTED": NotSupportedError,
}

_STATUS_TO_CLASS: dict[int, type[DeploymentError]] = {
    400: InvalidInputError,
    401: AuthenticationError,
    403: AuthenticationError,
    404: NotFoundError,
    409: ConflictError,
    413: InvalidInputError,
    415: InvalidInputError,
    422: InvalidInputError,
    429: TransientError,
    500: TransientError,
    502: TransientError,
    503: TransientError,
    504: RequestTimeoutError,
}

_STATUS_TO_CODE: dict[int, str] = {
    400: "BAD_REQUEST",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "RESOURCE_DOES_NOT_EXIST",
    409: "RESOURCE_ALREADY_EXISTS",
    413: "INVALID_PARAMETER_VALUE",
    415: "INVALID_PARAMETER_VALUE",
    422: "INVALID_PARAMETER_VALUE",
    429: "REQUEST_LIMIT_EXCEEDED",
    500: "INTERNAL_ERROR",
    502: "TEMPORARILY_UNAVAILABLE",
    503: "TEMPORARILY_UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}

RETRYABLE_STATUSES = frozenset({429, 500, 502, 503})


def error_for_status(
    status_code: int,
    message: str,
    *,
    error_code: str | None = None,
    body: str | None = None,
    retry_after: float | None = None,
) -> DeploymentError:
    """Build the most specific error for an HTTP error answer.

    The HTTP status decides retryability (429, 500, 502 and 503 are retryable, as in MLflow); for the
    other statuses the service's own ``error_code``, when it is one we know, picks the class.
    """
    code = error_code or _STATUS_TO_CODE.get(status_code, "INTERNAL_ERROR")
    if status_code in RETRYABLE_STATUSES:
        return TransientError(
            message, error_code=code, status_code=status_code, body=body, retry_after=retry_after
        )
    # The service's own code is more precise than the status (Databricks answers an existing endpoint
    # with 400 RESOURCE_ALREADY_EXISTS); the status decides when the code is absent or unknown.
    cls = _CODE_TO_CLASS.get(error_code or "") or _STATUS_TO_CLASS.get(status_code) or RemoteError
    if cls is TransientError:
        cls = RemoteError
    return cls(message, error_code=code, status_code=status_code, body=body)


_NOT_FOUND_CODES = frozenset({"RESOURCE_DOES_NOT_EXIST", "ENDPOINT_NOT_FOUND", "NOT_FOUND"})
_EXISTS_CODES = frozenset({"RESOURCE_ALREADY_EXISTS", "ALREADY_EXISTS", "RESOURCE_CONFLICT"})


def is_not_found(exc: BaseException) -> bool:
    """True for "it does not exist", from deployflow (NotFoundError) or an MLflow plugin (its error_code)."""
    return isinstance(exc, NotFoundError) or getattr(exc, "error_code", None) in _NOT_FOUND_CODES


def is_already_exists(exc: BaseException) -> bool:
    """True for "it exists already", from deployflow (ConflictError) or an MLflow plugin (its error_code)."""
    return isinstance(exc, ConflictError) or getattr(exc, "error_code", None) in _EXISTS_CODES


def raise_as_read(error: DeploymentError, read: Callable[[DeploymentError], DeploymentError]) -> NoReturn:
    """Raise what ``read`` (a target's reading of its service's errors) makes of ``error``: a new error
    chained to it, or ``error`` itself when the reading leaves it as it is."""
    reading = read(error)
    if reading is error:
        raise error
    raise reading from error
