"""The one translator from what happened to an HTTP request into a deployflow error.

Both I/O edges (the sync transport on requests, the async edge on aiohttp) call these functions and
nothing else to make their errors, so the same answer or failure raises the same error, with the same
class, message shape, ``retryable`` and ``failure``, whichever edge met it:

* :func:`error_from_answer`: an error status with its headers and body. The class comes from the status
  and the service's ``error_code`` (:func:`deployflow.errors.error_for_status`); the message quotes the
  service's own (redacted, clipped); ``Retry-After`` is kept.
* :func:`error_from_failure`: a request that got no (complete) answer, described by a
  :class:`~deployflow.retry.Failure`. A failure after the request was sent, for a request that is not
  idempotent, becomes :class:`~deployflow.errors.OutcomeUnknownError`: the service may have done the
  work, and nobody may repeat it blindly.
* :func:`settle`: sets ``retryable`` from the one decision, :func:`deployflow.retry.should_retry`.
"""

from __future__ import annotations

import email.utils
import math
import re
import time
from collections.abc import Mapping

from .errors import (
    DeploymentError,
    OutcomeUnknownError,
    RemoteError,
    RequestTimeoutError,
    TransientError,
    error_for_status,
)
from .jsoncodec import dumps, loads
from .redaction import redact
from .retry import Failure, RetryPolicy, settle_retryable

__all__ = ["error_from_answer", "error_from_failure", "settle", "parse_retry_after", "parse_error_body"]

# Bounds on what is read and kept from an error answer.
MAX_ERROR_READ_BYTES = 64 * 1024
MAX_EXCERPT_CHARS = 500
_MLFLOW_STYLE_CODE = re.compile(r"^[A-Z][A-Z0-9_]*$")


def set_message(error: DeploymentError, message: str) -> None:
    """Replace ``error``'s message (redacted)."""
    error.message = redact(message)
    error.args = (error.message,)


def error_from_answer(
    method: str, path: str, status: int, reason: str | None, headers: Mapping[str, str], raw: bytes
) -> DeploymentError:
    """The domain error for an HTTP error answer. ``headers`` must look names up case-insensitively
    (requests' and aiohttp's headers both do)."""
    text = raw[:MAX_ERROR_READ_BYTES].decode("utf-8", "replace")
    code, server_message = parse_error_body(text)
    excerpt = text.strip()[:MAX_EXCERPT_CHARS] or None
    if server_message is None:
        server_message = excerpt or reason or ""
    retry_after = parse_retry_after(headers.get("Retry-After"))
    error = error_for_status(status, "", error_code=code, body=excerpt, retry_after=retry_after)
    message = f"{method} {path} failed with HTTP {status} ({error.error_code})"
    if server_message:
        message += f": {server_message.strip()[:MAX_EXCERPT_CHARS]}"
    set_message(error, message)
    error.failure = Failure.STATUS
    return error


def error_from_failure(
    failure: Failure,
    method: str,
    path: str,
    detail: str,
    *,
    idempotent: bool,
    policy: RetryPolicy | None = None,
) -> DeploymentError:
    """The domain error for a request that got no answer; ``detail`` says what happened, e.g.
    ``"could not connect to http://host:5000 within 10 s"``."""
    where = f"{method} {path}"
    safe = idempotent or (policy is not None and policy.retry_non_idempotent)
    if failure.sent and not safe:
        error: DeploymentError = OutcomeUnknownError(
            f"{where}: {detail}. The request had been sent, so the service may have processed it; it was "
            f"not sent again because {method} {path} is not declared idempotent "
            "(the client option retry_non_idempotent=True allows it)",
            error_code="DEADLINE_EXCEEDED" if failure is Failure.READ_TIMEOUT else None,
        )
    elif failure is Failure.READ_TIMEOUT:
        error = RequestTimeoutError(f"{where}: {detail}")
    else:
        error = TransientError(f"{where}: {detail}")
    error.failure = failure
    if policy is not None:
        settle(error, policy, idempotent=idempotent)
    return error


def settle(
    error: DeploymentError, policy: RetryPolicy, *, idempotent: bool, statuses: frozenset[int] | None = None
) -> DeploymentError:
    """Set ``error.retryable`` from the one retry decision; returns ``error``."""
    settle_retryable(error, policy, idempotent=idempotent, statuses=statuses)
    return error


def tls_error(method: str, path: str, origin: str, reason: str) -> RemoteError:
    """A certificate or handshake problem: retrying does not fix it."""
    return RemoteError(f"{method} {path}: TLS with {origin} failed: {reason}")


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """Seconds asked for by a ``Retry-After`` header (delta seconds or HTTP date), ``None`` if unusable."""
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:  # HTTP dates are GMT
            return None
        seconds = when.timestamp() - (time.time() if now is None else now)
    if not math.isfinite(seconds):
        return None
    return max(seconds, 0.0)


def parse_error_body(text: str) -> tuple[str | None, str | None]:
    """``(error_code, message)`` from an error answer's body, for the body styles services use.

    Understood: MLflow and Databricks ``{"error_code": ..., "message": ...}``; OpenAI
    ``{"error": {"message": ..., "code"/"type": ...}}`` and ``{"error": "..."}``; FastAPI
    ``{"detail": ...}``. ``error_code`` is returned only when it is MLflow-style (``UPPER_SNAKE``);
    another service's code is appended to the message instead. Returns ``(None, None)`` for other
    bodies.
    """
    stripped = text.strip()
    if not stripped.startswith("{"):
        return None, None
    try:
        data = loads(stripped)
    except ValueError:
        return None, None
    if not isinstance(data, dict):
        return None, None
    code = data.get("error_code")
    message = data.get("message")
    nested = data.get("error")
    if isinstance(nested, dict):
        message = message if message is not None else nested.get("message")
        code = code if code is not None else (nested.get("code") or nested.get("type"))
    elif isinstance(nested, str) and message is None:
        message = nested
    detail = data.get("detail")
    if message is None and detail is not None:
        message = detail if isinstance(detail, str) else dumps(detail).decode()
    mlflow_code: str | None = None
    if isinstance(code, str) and _MLFLOW_STYLE_CODE.match(code):
        mlflow_code = code
    elif code is not None and code != "":
        message = f"{message} [{code}]" if message is not None else f"[{code}]"
    if message is not None and not isinstance(message, str):
        message = dumps(message).decode()
    return mlflow_code, message
