"""The functions of ``mlflow.deployments``: pick a target, get its client, run a model locally."""

from __future__ import annotations

import os
import threading
from typing import Any

from .base import BaseDeploymentClient
from .errors import InvalidInputError, TargetError
from .redaction import redact
from .registry import load_target, parse_target_uri

__all__ = ["get_deploy_client", "set_deployments_target", "get_deployments_target", "run_local", "target_help"]

TARGET_ENV = "DEPLOYFLOW_TARGET"
MLFLOW_TARGET_ENV = "MLFLOW_DEPLOYMENTS_TARGET"

_target_lock = threading.Lock()
_target: str | None = None


def set_deployments_target(target: str | None) -> None:
    """Set the target :func:`get_deploy_client` uses when called without one (``None`` clears it)."""
    global _target
    if target is not None:
        parse_target_uri(target)  # refuse what can never name a target, now rather than later
    with _target_lock:
        _target = target


def get_deployments_target() -> str | None:
    """The default target: the one set, else ``DEPLOYFLOW_TARGET``, else ``MLFLOW_DEPLOYMENTS_TARGET``."""
    with _target_lock:
        if _target:
            return _target
    return os.environ.get(TARGET_ENV) or os.environ.get(MLFLOW_TARGET_ENV) or None


def get_deploy_client(target_uri: str | None = None, **options: Any) -> BaseDeploymentClient:
    """Return a client for ``target_uri`` (or the default target).

    ``options`` reach the client's constructor: credentials, timeouts and retry settings, so secrets need
    not go through ``os.environ``. See ``deployflow help -t <target>`` for what each target accepts.

    >>> client = get_deploy_client("local")            # doctest: +SKIP
    >>> client.create_deployment("iris", "model.pkl")  # doctest: +SKIP
    """
    if target_uri is None:
        target_uri = get_deployments_target()
        if not target_uri:
            raise TargetError(
                "No deployment target is set. Pass one, as in get_deploy_client('local'), call "
                f"deployflow.set_deployments_target('<target-uri>'), or set the {TARGET_ENV} environment "
                "variable."
            )
    plugin = load_target(target_uri)
    if options:
        _check_options(plugin.client_class, plugin.name, options, plugin.accepts_options)
    return plugin.client_class(target_uri, **options)


def _check_options(cls: type, name: str, options: dict[str, Any], accepts: bool) -> None:
    if not accepts:
        raise InvalidInputError(
            f"The client of target {name!r} takes no options; got {', '.join(sorted(options))}"
        )
    import inspect

    params = list(inspect.signature(cls.__init__).parameters.values())[1:]
    if any(p.kind is p.VAR_KEYWORD for p in params):
        return
    known = {p.name for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
    unknown = sorted(set(options) - known)
    if unknown:
        raise InvalidInputError(
            f"Unknown option(s) for target {name!r}: {', '.join(unknown)}. Known: {', '.join(sorted(known))}"
        )


def run_local(
    target: str, name: str, model_uri: str, flavor: str | None = None, config: dict[str, Any] | None = None
) -> None:
    """Serve ``model_uri`` in this process through ``target``'s ``run_local`` (blocks until interrupted
    for targets that serve in the foreground)."""
    plugin = load_target(target)
    plugin.run_local(name, model_uri, flavor, config)


def target_help(target: str) -> str:
    """The help text of ``target``: its URI forms, options and config keys."""
    text = load_target(target).target_help()
    return redact(text) if isinstance(text, str) else str(text)
