"""Retry-safe steps shared by the CLI, the Prefect tasks and the Airflow operators.

A pipeline step may run twice for one intent: its first try created the deployment and then lost the
answer, and the orchestrator retried it. :func:`ensure_deployment` and :func:`ensure_endpoint` make that
harmless: with ``if_exists="adopt"`` (the default) an existing deployment with the same spec is taken
as this step's result and one with a different spec is refused; ``"update"`` rolls it forward to the
requested spec; ``"fail"`` refuses whatever exists.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlparse

from .base import BaseDeploymentClient
from .errors import ConflictError, InvalidInputError, is_already_exists, is_not_found
from .redaction import get_logger

__all__ = ["IF_EXISTS", "EnsureResult", "ensure_deployment", "ensure_endpoint", "deployment_differences", "config_differences"]

logger = get_logger(__name__)

IF_EXISTS = ("adopt", "update", "fail")

#: Config keys that steer the call (wait or not) rather than describe the deployment; never compared.
_CALL_KEYS = frozenset({"wait", "wait_timeout", "startup_timeout"})



@dataclass(frozen=True)
class EnsureResult:
    """What :func:`ensure_deployment` / :func:`ensure_endpoint` did: ``action`` is ``"created"``,
    ``"adopted"`` or ``"updated"``; ``record`` is the target's record afterwards."""

    action: str
    record: dict[str, Any]


def _check_if_exists(if_exists: str) -> None:
    if if_exists not in IF_EXISTS:
        raise InvalidInputError(f"if_exists must be one of {', '.join(IF_EXISTS)}; got {if_exists!r}")


def _endpoint_kwargs(endpoint: str | None) -> dict[str, Any]:
    # Old plugins do not take ``endpoint``; leave it out unless the caller set it.
    return {"endpoint": endpoint} if endpoint is not None else {}


def ensure_deployment(
    client: BaseDeploymentClient,
    name: str,
    model_uri: str,
    *,
    flavor: str | None = None,
    config: dict[str, Any] | None = None,
    endpoint: str | None = None,
    if_exists: str = "adopt",
) -> EnsureResult:
    """Create deployment ``name`` unless it exists; what happens when it does is ``if_exists``'s choice.

    Raises :class:`~deployflow.errors.ConflictError` (not retryable) when ``if_exists="fail"`` and it
    exists, or when ``"adopt"`` finds it with another model, flavor or config.
    """
    _check_if_exists(if_exists)
    where = _endpoint_kwargs(endpoint)
    existing = _get_deployment(client, name, where)
    if existing is None:
        try:
            record = client.create_deployment(name, model_uri, flavor=flavor, config=config, **where)
            return EnsureResult("created", dict(record or {"name": name}))
        except Exception as exc:
            # Someone else created it between our look and our create: decide as if we had seen it.
            if not is_already_exists(exc):
                raise
            existing = _get_deployment(client, name, where)
            if existing is None:
                raise
    if if_exists == "fail":
        raise ConflictError(f"Deployment {name!r} exists already (if_exists='fail')")
    differences = deployment_differences(existing, model_uri, flavor, config)
    if if_exists == "update":
        if not differences and not config and existing.get("model_uri") is not None:
            # Already serving this model and nothing else to change: rolling forward would only restart it.
            return EnsureResult("adopted", dict(existing))
        client.update_deployment(name, model_uri=model_uri, flavor=flavor, config=config, **where)
        return EnsureResult("updated", dict(_get_deployment(client, name, where) or {"name": name}))
    if differences:
        raise ConflictError(
            f"Deployment {name!r} exists with a different spec ({'; '.join(differences)}); "
            "use if_exists='update' to roll it forward"
        )
    logger.info("Deployment %r exists with the requested spec; adopting it", name)
    return EnsureResult("adopted", dict(existing))


def ensure_endpoint(
    client: BaseDeploymentClient, name: str, *, config: dict[str, Any] | None = None, if_exists: str = "adopt"
) -> EnsureResult:
    """Create endpoint ``name`` unless it exists, with the same ``if_exists`` rules as deployments."""
    _check_if_exists(if_exists)
    existing = _get_endpoint(client, name)
    if existing is None:
        try:
            record = client.create_endpoint(name, config=config)
            return EnsureResult("created", dict(record or {"name": name}))
        except Exception as exc:
            if not is_already_exists(exc):
                raise
            existing = _get_endpoint(client, name)
            if existing is None:
                raise
    if if_exists == "fail":
        raise ConflictError(f"Endpoint {name!r} exists already (if_exists='fail')")
    if if_exists == "update":
        client.update_endpoint(name, config=config)
        return EnsureResult("updated", dict(_get_endpoint(client, name) or {"name": name}))
    shown = existing.get("config") if isinstance(existing.get("config"), dict) else existing
    differences = config_differences(shown, config)
    if differences:
        raise ConflictError(
            f"Endpoint {name!r} exists with a different config ({'; '.join(differences)}); "
            "use if_exists='update' to change it"
        )
    return EnsureResult("adopted", dict(existing))


def _get_deployment(client: BaseDeploymentClient, name: str, where: dict[str, Any]) -> dict[str, Any] | None:
    try:
        return dict(client.get_deployment(name, **where))
    except Exception as exc:
        if is_not_found(exc):
            return None
        raise


def _get_endpoint(client: BaseDeploymentClient, name: str) -> dict[str, Any] | None:
    try:
        return dict(client.get_endpoint(name))
    except Exception as exc:
        if is_not_found(exc):
            return None
        raise


def deployment_differences(
    record: dict[str, Any], model_uri: str, flavor: str | None, config: dict[str, Any] | None
) -> list[str]:
    """How an existing deployment's record differs from a requested spec (an empty list: the same).

    Compared: the model URI (plain paths as absolute paths), the flavor when both name one, and the
    requested config keys that the record shows. What the record does not show cannot be compared.
    """
    found: list[str] = []
    have_uri = record.get("model_uri")
    if have_uri is not None and _normal_uri(str(have_uri)) != _normal_uri(model_uri):
        found.append(f"model_uri is {have_uri!r}, requested {model_uri!r}")
    have_flavor = record.get("flavor")
    if flavor and have_flavor and str(have_flavor).lower() != flavor.lower():
        found.append(f"flavor is {have_flavor!r}, requested {flavor!r}")
    shown = record.get("config")
    return found + config_differences(shown if isinstance(shown, dict) else {}, config)


def config_differences(shown: dict[str, Any], requested: dict[str, Any] | None) -> list[str]:
    """The requested config keys whose value differs from the value the target's record shows.

    Keys the record does not show are skipped, and so are secrets (a ``SecretStr`` requested, a masked
    ``***`` shown), which no record repeats.
    """
    found = []
    for key, wanted in (requested or {}).items():
        if key in _CALL_KEYS or key not in shown or callable(getattr(wanted, "get_secret_value", None)):
            continue
        have = shown[key]
        if isinstance(have, str) and "***" in have:
            continue
        if not _same_value(have, wanted):
            found.append(f"config {key!r} is {have!r}, requested {wanted!r}")
    return found


def _same_value(have: Any, wanted: Any) -> bool:
    """Equal, allowing for targets that normalise values ("2" -> 2, 100 -> 100.0, "true" -> True) and
    add keys of their own inside dicts."""
    if isinstance(have, list) and isinstance(wanted, (list, tuple)):
        if len(have) != len(wanted):
            return False
        if all(isinstance(item, dict) for item in (*have, *wanted)):
            # Lists of records (routes, served entities): the order carries no meaning.
            unmatched = list(have)
            for item in wanted:
                match = next((h for h in unmatched if _same_value(h, item)), None)
                if match is None:
                    return False
                unmatched.remove(match)
            return True
        return all(_same_value(h, w) for h, w in zip(have, wanted))
    if isinstance(have, dict) and isinstance(wanted, dict):
        return all(key in have and _same_value(have[key], value) for key, value in wanted.items())
    if have == wanted or str(have).strip().lower() == str(wanted).strip().lower():
        return True
    try:
        return float(have) == float(wanted)
    except (TypeError, ValueError):
        return False


def _normal_uri(uri: str) -> str:
    uri = uri.strip()
    scheme = urlparse(uri).scheme
    if not scheme or len(scheme) == 1:  # a plain (or Windows drive) path
        return os.path.abspath(os.path.expanduser(uri))
    return uri
