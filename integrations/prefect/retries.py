"""When a deployflow task is retried: one retry level, so retries never multiply.

The rule is written once, in :mod:`deployflow.orchestration` ("Retries in pipeline steps"); the Airflow
provider follows the same one. In short, for these tasks:

* the client a task builds has the transport's retries off (``max_retries=0``): each attempt of a task
  sends each request once. A ``max_retries`` in the block's ``client_options`` is overridden inside
  tasks, and the task run logs one WARNING saying so;
* the task's own ``retries`` (Prefect's, with exponential backoff and jitter) are the only retry level,
  and repeat the step only when :func:`retry_if_retryable` agrees: the error is a deployflow error marked
  ``retryable`` (429/5xx, connection failures, "busy, try again" conflicts). So a task that makes one
  HTTP request (``predict``, ``get_deployment``, ``delete_deployment``...) sends at most
  ``1 + retries`` requests.

Everything else fails at once with the target's reason: invalid input, a conflict with what exists, a
deployment that reached a failed state, a missing resource, and a wait whose deadline passed (the
``timeout`` is the whole budget for waiting; retrying would silently extend it). Steps are retry-safe:
``create_deployment`` adopts what an earlier attempt created, deletes are idempotent.

Exceptions (the same as in :mod:`deployflow.orchestration`):

* a plugin whose client takes no ``max_retries`` option is built without it and keeps its own retry
  policy; give such tasks fewer retries (``with_options(retries=...)``) if its policy already retries;
* ``batch_predict`` has no task retries, whatever ``with_options`` says (:func:`retry_never`): each
  chunk has its own bounded budget (``max_chunk_retries``) and the job resumes from its checkpoint when
  the flow is run again;
* the wait tasks have no retries: their polling tolerates transient errors until the deadline.

Change the number of retries per call with Prefect's ``with_options``::

    create_deployment.with_options(retries=5, retry_delay_seconds=10)(target, "churn", model_uri)
"""

from __future__ import annotations

from typing import Any

from deployflow import DeploymentError, WaitTimeoutError

__all__ = [
    "DEFAULT_RETRIES",
    "DEFAULT_RETRY_DELAYS",
    "RETRY_JITTER",
    "is_retryable",
    "retry_if_retryable",
    "retry_never",
]

#: Task retries of the steps that may be retried (each one is retry-safe).
DEFAULT_RETRIES = 3
#: Seconds before each task retry: exponential backoff (then Prefect's jitter below).
DEFAULT_RETRY_DELAYS = [2.0, 4.0, 8.0]
#: Prefect's ``retry_jitter_factor``: each delay may grow by up to this fraction, to spread retries.
RETRY_JITTER = 0.5

def is_retryable(error: BaseException | None) -> bool:
    """Whether repeating a whole step may succeed after ``error``.

    True only for a :class:`deployflow.DeploymentError` marked ``retryable``, and never for a
    :class:`deployflow.WaitTimeoutError` (the wait's deadline is its whole budget).

    >>> from deployflow import TransientError, InvalidInputError
    >>> is_retryable(TransientError("503")), is_retryable(InvalidInputError("bad name"))
    (True, False)
    """
    if isinstance(error, WaitTimeoutError):
        return False
    return isinstance(error, DeploymentError) and bool(error.retryable)


def retry_if_retryable(task: Any, task_run: Any, state: Any) -> bool:
    """Prefect ``retry_condition_fn``: retry the task only when its error :func:`is_retryable`.

    Prefect calls it with the failed state of an attempt, whose data is the exception raised.
    """
    error = getattr(state, "data", None)
    if not isinstance(error, BaseException):  # a returned failed state: look at what it holds
        error = getattr(error, "data", None)
    retry = is_retryable(error if isinstance(error, BaseException) else None)
    if not retry and isinstance(error, BaseException):
        _log_no_retry(error)
    return retry


def retry_never(task: Any, task_run: Any, state: Any) -> bool:
    """Prefect ``retry_condition_fn`` of ``batch_predict``: never retry the whole job, whatever its
    ``retries`` say. Each chunk already had its own retries (``max_chunk_retries``), and running the
    flow again resumes from the output's checkpoint."""
    from ._runtime import run_logger

    run_logger().info(
        "Not retrying %s: each chunk had its own retries (max_chunk_retries); run the flow again to resume "
        "from the checkpoint",
        getattr(task, "name", "the batch job"),
    )
    return False


def _log_no_retry(error: BaseException) -> None:
    from ._runtime import run_logger

    code = getattr(error, "error_code", None)
    what = f"{type(error).__name__}" + (f" ({code})" if code else "")
    run_logger().info("Not retrying: %s is not a failure that asking again can fix", what)


def step_options() -> dict[str, Any]:
    """The ``@task`` options of a side-effecting step: retried only on retryable errors, never cached."""
    from prefect.cache_policies import NO_CACHE

    return dict(
        retries=DEFAULT_RETRIES,
        retry_delay_seconds=DEFAULT_RETRY_DELAYS,
        retry_jitter_factor=RETRY_JITTER,
        retry_condition_fn=retry_if_retryable,
        cache_policy=NO_CACHE,
    )
