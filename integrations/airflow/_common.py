"""What the hooks, operators, sensors and triggers of this provider share.

* The timeout model: a wait is ``timeout`` seconds long, counted from when it starts. The start is turned
  into one absolute deadline (seconds since the epoch, UTC) that travels unchanged through a deferral,
  so a task that waits in its worker and a task that waits in the triggerer stop at the same moment.
* Error translation: a :class:`deployflow.DeploymentError` that retrying cannot fix becomes
  ``AirflowFailException`` (no retries); a retryable one becomes ``AirflowException`` so Airflow's own
  retries apply.
* One retry level: the rule is "Retries in pipeline steps" in :mod:`deployflow.orchestration`, the same
  as for the Prefect tasks. The hook builds every client with the transport's retries off
  (``max_retries=0``; a ``max_retries`` in the connection's extra is overridden, with a WARNING), so
  Airflow's task ``retries`` are the only level: a one-request step sends at most ``1 + retries`` HTTP
  requests. Exceptions: a plugin client that takes no ``max_retries`` keeps its own policy;
  ``BatchPredictOperator`` is not retried on deployflow errors (each chunk has ``max_chunk_retries``);
  sensors and waits poll through transient errors until their deadline.
* Templated settings: numbers, flags and choices (``timeout``, ``poll_interval``, ``if_exists``, ...)
  are template fields, so ``"{{ params.timeout }}"`` is a valid value. A literal value is checked and
  converted when the DAG is parsed; a template or an XCom reference is checked by the same rule once it
  has rendered, when the task runs (:func:`check_arguments`). A wrong value raises
  :class:`InvalidArgumentError` either way, with the same message; when the task runs it is not retried.
* Small JSON-safe XCom values.
"""

from __future__ import annotations

import contextlib
import datetime
import math
import time
from typing import Any, Callable, Iterator, Mapping, NoReturn

from airflow.sdk.exceptions import AirflowFailException

from deployflow import (
    IF_EXISTS,
    DeploymentError,
    DeploymentFailedError,
    InvalidInputError,
    NotFoundError,
    WaitTimeoutError,
)
from deployflow.redaction import redact
from deployflow.retry import as_bool, as_int, as_number

__all__ = [
    "DEFAULT_CONN_ID",
    "DEFER_GRACE",
    "default_deferrable",
    "InvalidArgumentError",
    "seconds",
    "flag",
    "count",
    "whole_number_text",
    "if_exists_choice",
    "is_literal",
    "check_arguments",
    "deadline_after",
    "seconds_left",
    "describe_deadline",
    "translate_errors",
    "raise_for",
    "error_from_event",
    "small_record",
    "json_safe",
    "given",
]

DEFAULT_CONN_ID = "deployflow_default"

#: Extra seconds Airflow's own deferral timeout gets beyond our deadline. The trigger reports the
#: deadline itself (with the last state seen); Airflow's timeout is only a backstop for a trigger that
#: never ran (no triggerer), so it must never fire first.
DEFER_GRACE = 60.0

#: Longest string kept in an XCom value (reasons can quote a log line).
_MAX_TEXT = 2000

def default_deferrable() -> bool:
    """Airflow's ``[operators] default_deferrable``, read when an operator is built (not at import)."""
    try:
        from airflow.sdk import conf
    except ImportError:  # pragma: no cover - task SDKs before the SDK had its own configuration
        from airflow.configuration import conf

    return conf.getboolean("operators", "default_deferrable", fallback=False)


class InvalidArgumentError(AirflowFailException, ValueError):
    """A task argument that is wrong: a ``ValueError`` when the DAG is parsed, and, when a template
    rendered to it, a failure of the task that no retry can fix (an ``AirflowFailException``)."""


def seconds(value: float | int | datetime.timedelta | str, what: str = "timeout") -> float:
    """``value`` as a finite number of seconds >= 0 (a ``timedelta`` or a number, or its text)."""
    if isinstance(value, datetime.timedelta):
        value = value.total_seconds()
    try:
        return as_number(value, what, positive=False, unit="seconds")
    except InvalidInputError as error:
        raise InvalidArgumentError(str(error)) from None


def flag(value: Any, what: str) -> bool:
    """``value`` as a bool: a bool, 0 or 1, or a word such as ``"true"``, ``"False"``, ``"no"`` (what a
    template renders a flag to)."""
    try:
        return as_bool(value, what)
    except InvalidInputError as error:
        raise InvalidArgumentError(str(error)) from None


def count(value: Any, what: str) -> int:
    """``value`` as an integer >= 0 (an int, or its text)."""
    try:
        return as_int(value, what, minimum=0)
    except InvalidInputError as error:
        raise InvalidArgumentError(str(error)) from None


def whole_number_text(value: Any, what: str) -> Any:
    """``value`` as an int when it is the text of one (``"2000"``, as a template renders a number),
    else unchanged, so that whoever takes it checks it with its own rule and message."""
    if isinstance(value, str):
        try:
            return int(value.strip())
        except ValueError:
            return value
    return value


def if_exists_choice(value: Any, what: str = "if_exists") -> str:
    """``value`` if it is one of :data:`deployflow.IF_EXISTS` (``adopt``, ``update``, ``fail``)."""
    if value not in IF_EXISTS:
        raise InvalidArgumentError(f"{what} must be one of {', '.join(IF_EXISTS)}; got {value!r}")
    return value


def is_literal(value: Any) -> bool:
    """Whether ``value`` is known when the DAG is parsed: ``None``, a number, a bool, a ``timedelta`` or
    text without Jinja. Templates and XCom references are only known once the task runs."""
    if isinstance(value, str):
        return "{{" not in value and "{%" not in value
    return value is None or isinstance(value, (bool, int, float, datetime.timedelta))


#: How :func:`check_arguments` checks one argument: ``(value, its name) -> the value to use``.
ArgumentCheck = Callable[[Any, str], Any]


def check_arguments(task: Any, checks: Mapping[str, ArgumentCheck], *, rendered: bool) -> None:
    """Replace each attribute of ``task`` named in ``checks`` by what its check returns; ``None`` (the
    argument's default meaning "not set") is left alone.

    ``rendered=False`` (in ``__init__``, when the DAG is parsed) checks literal values only and leaves
    templates and XCom references as they are; ``rendered=True`` (first thing in ``execute``, after
    Airflow rendered the templates) checks every value.
    """
    for name, check in checks.items():
        value = getattr(task, name)
        if value is not None and (rendered or is_literal(value)):
            setattr(task, name, check(value, name))


def deadline_after(timeout: float, start: float | None = None) -> float:
    """The absolute deadline (epoch seconds) ``timeout`` seconds after ``start`` (default: now)."""
    return (time.time() if start is None else start) + timeout


def seconds_left(deadline: float) -> float:
    """Seconds until ``deadline``, never negative."""
    return max(0.0, deadline - time.time())


def describe_deadline(deadline: float) -> str:
    """``deadline`` as an ISO-8601 UTC time, for logs and messages."""
    return datetime.datetime.fromtimestamp(deadline, tz=datetime.timezone.utc).isoformat(timespec="seconds")


def raise_for(error: DeploymentError, what: str | None = None, *, no_retry: str | None = None) -> NoReturn:
    """Raise the Airflow exception that matches ``error``: retryable -> ``AirflowException`` (Airflow
    retries the task if it has retries left), otherwise ``AirflowFailException`` (no retry). ``what``
    (the step that failed) prefixes the message when given.

    ``no_retry`` (why) makes even a retryable error an ``AirflowFailException``, for a step whose
    retries happen inside it (batch chunks); the reason is appended to the message."""
    from airflow.sdk.exceptions import AirflowException, AirflowFailException

    message = redact(f"{what}: {error}" if what else str(error))
    if error.retryable and no_retry is None:
        raise AirflowException(message) from error
    if error.retryable:
        message = f"{message} (not retried: {no_retry})"
    raise AirflowFailException(message) from error


@contextlib.contextmanager
def translate_errors(what: str | None = None, *, no_retry: str | None = None) -> Iterator[None]:
    """Turn a :class:`deployflow.DeploymentError` raised inside the block into an Airflow exception
    (see :func:`raise_for`)."""
    try:
        yield
    except DeploymentError as error:
        raise_for(error, what, no_retry=no_retry)


def error_from_event(event: Mapping[str, Any]) -> DeploymentError:
    """The deployflow error a trigger event stands for, as the blocking path would have raised it.

    Rebuilding the same error types here keeps one behaviour whichever way the task waited.
    """
    status = event.get("status")
    reason = event.get("reason")
    message = str(event.get("message") or reason or status)
    if status == "FAILED":
        return DeploymentFailedError(message, reason=reason)
    if status == "NOT_FOUND":
        return NotFoundError(message)
    if status == "TIMEOUT":
        return WaitTimeoutError(message)
    return DeploymentError(message, retryable=bool(event.get("retryable")))


def json_safe(value: Any, depth: int = 0) -> Any:
    """A JSON-safe copy of ``value``: scalars as they are, strings redacted and clipped, containers
    copied (three levels deep at most), anything else as its redacted ``str``."""
    if value is None or isinstance(value, (bool, int)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, str):
        text = redact(value)
        return text if len(text) <= _MAX_TEXT else text[: _MAX_TEXT - 3] + "..."
    if depth >= 3:
        return json_safe(str(value), depth)
    if isinstance(value, Mapping):
        return {str(key): json_safe(item, depth + 1) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(item, depth + 1) for item in value]
    return json_safe(str(value), depth)


#: Record fields worth handing downstream; the rest of a target's record stays out of XCom.
_RECORD_KEYS = ("state", "reason", "url", "model_uri", "flavor", "endpoints", "routes")


def small_record(record: Any) -> dict[str, Any]:
    """The few fields of a target's deployment or endpoint record that fit in XCom."""
    if not isinstance(record, Mapping):
        return {}
    return {key: json_safe(record[key]) for key in _RECORD_KEYS if record.get(key) is not None}


def given(**kwargs: Any) -> dict[str, Any]:
    """The keyword arguments that were given (not ``None``): older plugins lack some parameters
    (``endpoint``, ``config``), and MLflow's contract is to leave out what the caller did not set."""
    return {key: value for key, value in kwargs.items() if value is not None}
