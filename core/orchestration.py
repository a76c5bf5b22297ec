"""Retry-safe steps shared by the CLI, the Prefect tasks and the Airflow operators.

A pipeline step may run twice for one intent: its first try created the deployment and then lost the
answer, and the orchestrator retried it. :func:`ensure_deployment` and :func:`ensure_endpoint` make that
harmless: with ``if_exists="adopt"`` (the default) an existing deployment with the same spec is taken
as this step's result and one with a different spec is refused; ``"update"`` rolls it forward to the
requested spec; ``"fail"`` refuses whatever exists. An existing deployment (or endpoint) with the same
spec that is FAILED is not taken over: a retried step would only fail the same way. It is rolled
forward with the requested spec (``update_deployment`` / ``update_endpoint``), so it starts again.

Waiting and the step's deadline
-------------------------------

A step says two things about waiting, the same for every target: ``wait=False`` ("do not wait": return
as soon as the target has recorded the change and started it; a later wait reports how it went) and
``timeout`` ("one deadline": the seconds the whole step may take, the target's own start-up included).
:func:`ensure_deployment` and :func:`ensure_endpoint` take both; :func:`step_config` and
:func:`step_deadline` are the two halves, for steps that call the client themselves (an update step):

* not waiting is asked of the target with the config key ``wait: false``, which the ``local`` and
  ``databricks`` targets read (a target that does not know the key may refuse it: only ``wait=False``
  adds it);
* the deadline is a :func:`deployflow.retry.operation` scope around the calls, which every HTTP
  request, every :meth:`~deployflow.BaseDeploymentClient.wait_for_deployment` and the ``local``
  target's server start end by.

Retries in pipeline steps
-------------------------

The one rule for retries inside orchestrated steps. The Prefect tasks
(:mod:`deployflow.integrations.prefect`) and the Airflow operators, sensors and triggers
(:mod:`deployflow.integrations.airflow`, through ``DeploymentHook``) follow it identically; their docs
point here.

Two levels could repeat a request: the HTTP transport (client option ``max_retries``, on 429/5xx and
failed connections) and the orchestrator (a Prefect task's ``retries``, an Airflow task's ``retries``).
Nested, they multiply: 2 step retries around 4 transport retries send up to 3 x 5 = 15 requests. So a
step has one level only:

* **The transport's retries are off inside a step.** The client a step builds gets ``max_retries=0``:
  each attempt of the step sends each HTTP request once. A ``max_retries`` in the Prefect block's
  ``client_options`` or in the Airflow connection's extra (or ``DEPLOYFLOW_MAX_RETRIES``) is overridden;
  when the block or connection sets one, the step logs one WARNING saying it is not used inside steps
  and why, without credentials (once per task run in Prefect, whose run log holds every attempt; once
  per try in Airflow, where each try has its own log). ``DeploymentHook.get_conn()`` builds the client its operators use, so
  it follows this rule too; outside steps, build a client with :func:`deployflow.get_deploy_client`
  (or ``DeploymentTarget.get_client()``) to keep the transport's retries.
* **The orchestrator's retries are the only level**, and they apply only to errors marked
  :attr:`deployflow.DeploymentError.retryable` (429/5xx, failed connections, "busy, try again"). Any
  other error fails the step at once: Prefect's ``retry_condition_fn`` refuses it, Airflow gets an
  ``AirflowFailException``. A :class:`deployflow.WaitTimeoutError` is never retried: a wait's timeout is
  its whole budget.
* Hence, for a step that makes one HTTP request (predict, get, delete, ...)::

      HTTP attempts of a one-request step = 1 + retries

  where ``retries`` is the step's orchestrator retries (Prefect's or Airflow's), all of them spent on
  retryable errors.

Exceptions:

* A plugin client that takes no ``max_retries`` option (building it with one raises
  :class:`deployflow.InvalidInputError`) is built without it and keeps its own retry policy; give such
  steps fewer retries if that policy already retries.
* Batch scoring steps (Prefect ``batch_predict``, Airflow ``BatchPredictOperator``) have no step-level
  retries: a deployflow error is not retried by the orchestrator, whatever the step's ``retries`` say,
  because each chunk has its own bounded budget (``max_chunk_retries``: at most
  ``1 + max_chunk_retries`` requests per chunk) and running the step again resumes from its checkpoint.
* Wait steps (waiting until READY, sensors, triggers) tolerate transient errors while polling until
  their deadline instead of failing and being retried.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from typing import Any, Callable, Iterator
from urllib.parse import urlparse

from .base import BaseDeploymentClient
from .errors import ConflictError, InvalidInputError, is_already_exists, is_not_found
from .redaction import get_logger
from .retry import as_bool, operation
from .status import State

__all__ = [
    "IF_EXISTS",
    "EnsureResult",
    "StepClient",
    "client_for_steps",
    "ensure_deployment",
    "ensure_endpoint",
    "step_config",
    "step_deadline",
    "deployment_differences",
    "config_differences",
]

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


def step_config(config: dict[str, Any] | None, *, wait: Any = True) -> dict[str, Any] | None:
    """The config a step passes to the target: ``config`` itself, or with ``wait: False`` added when
    the step does not wait (``wait`` is a bool or a word such as ``"false"``).

    >>> step_config({"workers": 2}, wait=False)
    {'workers': 2, 'wait': False}
    >>> step_config(None) is None
    True
    """
    if as_bool(wait, "wait"):
        return config
    return {**(config or {}), "wait": False}


@contextlib.contextmanager
def step_deadline(timeout: Any = None) -> Iterator[None]:
    """A scope in which every call ends within ``timeout`` seconds from now (``None``: no deadline):
    HTTP requests, waits for readiness, and a ``local`` server's start.

    ``timeout`` is seconds >= 0, a number or a numeric string; anything else (``nan``, infinities,
    negatives, booleans, words) raises :class:`~deployflow.errors.InvalidInputError` before any call.
    """
    with operation(timeout=timeout):
        yield


def _spec_keys(config: dict[str, Any] | None) -> dict[str, Any]:
    """The keys of ``config`` that describe the deployment (not how to make the call)."""
    return {key: value for key, value in (config or {}).items() if key not in _CALL_KEYS}


def _has_failed(status: Any, what: str) -> bool:
    """Whether ``status`` (of something that exists with the requested spec) is FAILED, logged if so."""
    if getattr(status, "state", None) is State.FAILED:
        logger.info("%s exists with the requested spec but FAILED (%s); rolling it forward", what, status.reason)
        return True
    return False


def ensure_deployment(
    client: BaseDeploymentClient,
    name: str,
    model_uri: str,
    *,
    flavor: str | None = None,
    config: dict[str, Any] | None = None,
    endpoint: str | None = None,
    if_exists: str = "adopt",
    wait: Any = True,
    timeout: Any = None,
) -> EnsureResult:
    """Create deployment ``name`` unless it exists; what happens when it does is ``if_exists``'s choice.

    A deployment that exists with the requested spec but is FAILED is rolled forward
    (``update_deployment`` with that spec) instead of being adopted or left as it is; ``action`` is
    then ``"updated"``. ``wait=False`` asks the target not to wait for the deployment to serve, and
    ``timeout`` bounds the whole call in seconds (see "Waiting and the step's deadline" above).

    Raises :class:`~deployflow.errors.ConflictError` (not retryable) when ``if_exists="fail"`` and it
    exists, or when ``"adopt"`` finds it with another model, flavor or config.
    """
    _check_if_exists(if_exists)
    call_config = step_config(config, wait=wait)
    with step_deadline(timeout):
        return _ensure_deployment(client, name, model_uri, flavor, config, call_config, endpoint, if_exists)


def _ensure_deployment(
    client: BaseDeploymentClient,
    name: str,
    model_uri: str,
    flavor: str | None,
    config: dict[str, Any] | None,
    call_config: dict[str, Any] | None,
    endpoint: str | None,
    if_exists: str,
) -> EnsureResult:
    where = _endpoint_kwargs(endpoint)
    existing = _get_deployment(client, name, where)
    if existing is None:
        try:
            record = client.create_deployment(name, model_uri, flavor=flavor, config=call_config, **where)
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
    if differences and if_exists == "adopt":
        raise ConflictError(
            f"Deployment {name!r} exists with a different spec ({'; '.join(differences)}); "
            "use if_exists='update' to roll it forward"
        )
    if if_exists == "update" and (differences or _spec_keys(config) or existing.get("model_uri") is None):
        roll_forward = True  # something to change, or no way to tell it is the same
    else:
        # The same spec: take it over, unless it FAILED (a retry of the step would fail the same way).
        roll_forward = _has_failed(client.deployment_status(name, **where), f"Deployment {name!r}")
    if roll_forward:
        client.update_deployment(name, model_uri=model_uri, flavor=flavor, config=call_config, **where)
        return EnsureResult("updated", dict(_get_deployment(client, name, where) or {"name": name}))
    logger.info("Deployment %r exists with the requested spec; adopting it", name)
    return EnsureResult("adopted", dict(existing))


def ensure_endpoint(
    client: BaseDeploymentClient,
    name: str,
    *,
    config: dict[str, Any] | None = None,
    if_exists: str = "adopt",
    wait: Any = True,
    timeout: Any = None,
) -> EnsureResult:
    """Create endpoint ``name`` unless it exists, with the same ``if_exists`` rules as deployments.

    An endpoint that exists with the requested config but is FAILED is rolled forward with
    ``update_endpoint`` (on ``local`` that starts its router again when it had stopped); ``wait`` and
    ``timeout`` as for :func:`ensure_deployment`.
    """
    _check_if_exists(if_exists)
    call_config = step_config(config, wait=wait)
    with step_deadline(timeout):
        existing = _get_endpoint(client, name)
        if existing is None:
            try:
                record = client.create_endpoint(name, config=call_config)
                return EnsureResult("created", dict(record or {"name": name}))
            except Exception as exc:
                if not is_already_exists(exc):
                    raise
                existing = _get_endpoint(client, name)
                if existing is None:
                    raise
        if if_exists == "fail":
            raise ConflictError(f"Endpoint {name!r} exists already (if_exists='fail')")
        if if_exists == "adopt":
            shown = existing.get("config") if isinstance(existing.get("config"), dict) else existing
            differences = config_differences(shown, config)
            if differences:
                raise ConflictError(
                    f"Endpoint {name!r} exists with a different config ({'; '.join(differences)}); "
                    "use if_exists='update' to change it"
                )
            if not _has_failed(client.endpoint_status(name), f"Endpoint {name!r}"):
                return EnsureResult("adopted", dict(existing))
        client.update_endpoint(name, config=call_config)
        return EnsureResult("updated", dict(_get_endpoint(client, name) or {"name": name}))


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


# --------------------------------------------------------------------------------------------------
# Retries in pipeline steps: the one client builder both integrations use
# --------------------------------------------------------------------------------------------------

#: The WARNING a step logs when its configuration sets ``max_retries`` (arguments: the value and where
#: it was set, both redacted).
IGNORED_MAX_RETRIES = (
    "max_retries=%s set in %s is not used inside deployflow steps: the client is built with the "
    "transport's retries off (max_retries=0), so the step's own retries are the only retry level and the "
    "two never multiply (HTTP attempts of a one-request step = 1 + retries; see deployflow.orchestration). "
    "Set the task's retries instead."
)
#: Logged when a target's client takes no ``max_retries`` option (argument: the target URI, redacted).
OWN_RETRY_POLICY = (
    "Target %s takes no 'max_retries' option: its client's own retry policy applies inside this step, "
    "on top of the step's retries"
)


def overrides_max_retries(value: Any) -> bool:
    """Whether a ``max_retries`` option with ``value`` is overridden (changed) by ``max_retries=0``:
    anything set except zero.

    >>> overrides_max_retries(None), overrides_max_retries("0"), overrides_max_retries(4)
    (False, False, True)
    """
    if value is None or value == "":
        return False
    try:
        return int(value) != 0
    except (TypeError, ValueError):
        return True


@dataclass(frozen=True)
class StepClient:
    """What :func:`client_for_steps` built: the client, and what the step should log about it.

    ``warning`` (log it at WARNING) says that a configured ``max_retries`` is not used; ``notice`` (log
    it at INFO) says that the target's client keeps its own retry policy. Both are redacted.
    """

    client: BaseDeploymentClient
    own_retry_policy: bool
    warning: str | None = None
    notice: str | None = None


def client_for_steps(
    build: Callable[..., BaseDeploymentClient],
    *,
    uri: str,
    configured_max_retries: Any = None,
    where: str = "the step's client options",
) -> StepClient:
    """Build a pipeline step's client with the transport's retries off (the rule above).

    ``build(**options)`` makes the client; it is called with ``max_retries=0``, and again without it
    when the target rejects that option with :class:`~deployflow.errors.InvalidInputError` (a plugin
    with its own transport: it keeps its own policy). When the second call fails too, the first error
    is raised. ``configured_max_retries`` is what the user's configuration (``where``) set, if anything:
    a value other than 0 gets a ``warning`` that it is not used.
    """
    from .redaction import redact

    try:
        client = build(max_retries=0)
    except InvalidInputError as first:
        try:
            client = build()
        except Exception:
            raise first from None
        return StepClient(client, own_retry_policy=True, notice=OWN_RETRY_POLICY % redact(uri))
    warning = None
    if overrides_max_retries(configured_max_retries):
        warning = IGNORED_MAX_RETRIES % (redact(str(configured_max_retries)), redact(where))
    return StepClient(client, own_retry_policy=False, warning=warning)
