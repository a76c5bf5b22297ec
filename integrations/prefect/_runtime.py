"""What every task needs: a client with one retry level, a run logger, JSON-safe values (metadata
redacted, a model's output as it came)."""

from __future__ import annotations

import functools
import json
import logging
import re
from typing import TYPE_CHECKING, Any, Callable, TypeVar, Union

from deployflow import BaseDeploymentClient, DeploymentError, InvalidInputError, client_for_steps, get_deploy_client
from deployflow.redaction import redact, register_secret

if TYPE_CHECKING:
    from .block import DeploymentTarget

__all__ = [
    "TargetLike",
    "open_client",
    "target_label",
    "run_logger",
    "RedactingLogger",
    "in_run",
    "last_attempt",
    "plain",
    "safe",
    "reveal",
    "slug",
    "scrub_errors",
    "ForeignError",
]

TargetLike = Union["DeploymentTarget", str]
F = TypeVar("F", bound=Callable[..., Any])

_fallback_logger = logging.getLogger("deployflow.integrations.prefect")


def open_client(target: TargetLike) -> BaseDeploymentClient:
    """A client for ``target`` (a block or a target URI) with the transport's retries off.

    The rule is :mod:`deployflow.orchestration`'s "Retries in pipeline steps" (see also :mod:`.retries`):
    inside a task the task's retries are the only retry level, so the client is built with
    ``max_retries=0`` and a ``max_retries`` in the block's options is overridden (one WARNING per task
    run says so). A target whose client takes no ``max_retries`` option (a plugin with its own transport)
    is built without it and keeps its own retry policy.
    """
    from .block import DeploymentTarget

    if isinstance(target, DeploymentTarget):
        build = target.get_client
        uri = target.target_uri
        configured = _configured_max_retries(target)
    elif isinstance(target, str) and target.strip():
        uri = target.strip()
        configured = None

        def build(**options: Any) -> BaseDeploymentClient:
            return get_deploy_client(uri, **options)

    else:
        raise InvalidInputError(
            f"target must be a DeploymentTarget block or a target URI string, got {type(target).__name__}"
        )
    built = client_for_steps(
        build, uri=uri, configured_max_retries=configured, where=f"the block's client options (target {uri})"
    )
    if built.warning and _first_attempt():
        run_logger().warning("%s", built.warning)
    if built.notice:
        run_logger().info("%s", built.notice)
    return built.client


def _configured_max_retries(block: DeploymentTarget) -> Any:
    """The ``max_retries`` the block's options set (``None`` if none). A value kept in
    ``secret_options`` is not shown, only that it is set."""
    plain = block.client_options.get("max_retries")
    if plain is not None:
        return plain
    hidden = block._secret_options().get("max_retries")
    return None if hidden is None else "(a value in secret_options)"


def _first_attempt() -> bool:
    """Whether this is the first attempt of the current task run (or no task run at all): the run's
    log holds every attempt, so a warning about the run's setup is logged once."""
    from prefect.context import TaskRunContext

    context = TaskRunContext.get()
    return context is None or (context.task_run.run_count or 0) <= 1


def target_label(target: TargetLike) -> str:
    """The target's URI, safe to show."""
    uri = target if isinstance(target, str) else getattr(target, "target_uri", "?")
    return redact(uri)


class RedactingLogger:
    """Formats each message, then masks credentials in it, before handing it to ``logger``: Prefect's
    handlers do not know deployflow's secrets."""

    def __init__(self, logger: Any) -> None:
        self.logger = logger

    def _log(self, level: int, message: str, *args: Any) -> None:
        if self.logger.isEnabledFor(level):
            text = message % args if args else message
            self.logger.log(level, "%s", redact(text), stacklevel=3)

    def debug(self, message: str, *args: Any) -> None:
        self._log(logging.DEBUG, message, *args)

    def info(self, message: str, *args: Any) -> None:
        self._log(logging.INFO, message, *args)

    def warning(self, message: str, *args: Any) -> None:
        self._log(logging.WARNING, message, *args)

    def error(self, message: str, *args: Any) -> None:
        self._log(logging.ERROR, message, *args)


def run_logger() -> RedactingLogger:
    """Prefect's run logger inside a flow or task run, else this package's logger (tests, ``.fn()``),
    with every message redacted."""
    from prefect import get_run_logger
    from prefect.exceptions import MissingContextError

    try:
        return RedactingLogger(get_run_logger())
    except MissingContextError:
        return RedactingLogger(_fallback_logger)


def in_run() -> bool:
    """Whether code runs inside a Prefect flow or task run (artifacts need one)."""
    from prefect.context import FlowRunContext, TaskRunContext

    return TaskRunContext.get() is not None or FlowRunContext.get() is not None


def last_attempt(error: BaseException) -> bool:
    """Whether the task will not be tried again after ``error`` (so a "failed" event is final)."""
    from prefect.context import TaskRunContext

    from .retries import is_retryable

    if not is_retryable(error):
        return True
    context = TaskRunContext.get()
    if context is None:
        return True
    retries = context.task.retries or 0
    return context.task_run.run_count > retries


def plain(value: Any) -> Any:
    """``value`` as plain JSON (str, numbers, lists, dicts), its strings unchanged: the form a model's
    output takes in a task result."""
    return json.loads(json.dumps(value, default=str))


def safe(value: Any) -> Any:
    """Metadata (names, URLs, states, reasons, counts) as plain JSON with every string redacted.

    Only for what deployflow says about a step, never for what a model returned: a prediction that
    reads like a credential (``"password: hunter22"``) is data, and masking it would change it. Task
    results that carry a model's output use :func:`plain`.
    """
    return _redact_strings(plain(value))


def _redact_strings(value: Any) -> Any:
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, list):
        return [_redact_strings(item) for item in value]
    if isinstance(value, dict):
        return {redact(str(key)): _redact_strings(item) for key, item in value.items()}
    return value


def reveal(value: Any) -> Any:
    """Replace ``SecretStr`` values (at any depth of dicts and lists) by their text, registering each for
    redaction: a config may carry a secret from a block without writing it in clear."""
    get = getattr(value, "get_secret_value", None)
    if callable(get):
        register_secret(value)
        return get()
    if isinstance(value, dict):
        return {key: reveal(item) for key, item in value.items()}
    if isinstance(value, list):
        return [reveal(item) for item in value]
    return value


def slug(*parts: str) -> str:
    """An artifact key: lowercase letters, digits and dashes only."""
    text = "-".join(parts).lower()
    return re.sub(r"-{2,}", "-", re.sub(r"[^a-z0-9]+", "-", text)).strip("-") or "deployflow"


class ForeignError(Exception):
    """Stands in for a non-deployflow exception in an error's cause chain, with its text redacted."""


def scrub_errors(function: F) -> F:
    """Run ``function``; before a deployflow error leaves it, replace the foreign exceptions it was
    chained from by :class:`ForeignError` copies whose text is redacted.

    deployflow's own messages are redacted already, but a chained ``requests`` or plugin exception may
    quote a header or a URL with a credential, and Prefect logs and stores the whole chain.
    """

    @functools.wraps(function)
    def run(*args: Any, **kwargs: Any) -> Any:
        try:
            return function(*args, **kwargs)
        except DeploymentError as error:
            _scrub_chain(error)
            raise

    return run  # type: ignore[return-value]


def _scrub_chain(error: BaseException) -> None:
    seen: set[int] = set()
    link: BaseException | None = error
    while link is not None and id(link) not in seen:
        seen.add(id(link))
        for attribute in ("__cause__", "__context__"):
            linked = getattr(link, attribute)
            if linked is not None and not isinstance(linked, (DeploymentError, ForeignError)):
                stand_in = ForeignError(f"{type(linked).__module__}.{type(linked).__name__}: {redact(linked)}")
                stand_in.__traceback__ = linked.__traceback__
                stand_in.__cause__ = linked.__cause__
                stand_in.__context__ = linked.__context__
                stand_in.__suppress_context__ = linked.__suppress_context__
                setattr(link, attribute, stand_in)
        link = link.__cause__ or link.__context__
