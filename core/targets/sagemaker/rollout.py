"""The ``rollout`` config key: how an update shifts traffic, as SageMaker's deployment guardrails do it.

An update with a rollout sends ``UpdateEndpoint(DeploymentConfig=...)``. The key takes either
SageMaker's own ``DeploymentConfig`` (a dict with ``BlueGreenUpdatePolicy`` or ``RollingUpdatePolicy``,
and optionally ``AutoRollbackConfiguration``), or these shorter words (a dict, or its JSON text):

=============================  ===================================================================
key                            meaning
=============================  ===================================================================
``strategy``                   ``all_at_once``, ``canary`` or ``linear`` (blue/green), or ``rolling``
``canary_size``                canary: the first share of capacity, ``"10%"`` or a number of instances
``step_size``                  linear: each step's share, ``"20%"`` or a number of instances
``batch_size``                 rolling: each batch, ``"25%"`` or a number of instances
``rollback_batch_size``        rolling: each batch when rolling back (optional)
``wait_seconds``               seconds between steps, 0-3600 (required for canary, linear, rolling)
``max_execution_seconds``      ``MaximumExecutionTimeoutInSeconds``, 600-28800 (optional)
``termination_wait_seconds``   blue/green: seconds the old fleet is kept after the shift, 0-3600
``alarms``                     CloudWatch alarm names (1-10; a list or comma-separated text) that roll
                               the update back when they fire
=============================  ===================================================================

A size given as ``"10%"`` is ``{"Type": "CAPACITY_PERCENT", "Value": 10}``; a whole number is
``{"Type": "INSTANCE_COUNT", "Value": n}``; ``{"type": ..., "value": ...}`` is also read. Unknown keys,
a missing size or wait, and values outside SageMaker's ranges are refused with
:class:`~deployflow.errors.InvalidInputError`.

>>> deployment_config({"strategy": "linear", "step_size": 1, "wait_seconds": 60})
{'BlueGreenUpdatePolicy': {'TrafficRoutingConfiguration': {'Type': 'LINEAR', 'WaitIntervalInSeconds': 60, \
'LinearStepSize': {'Type': 'INSTANCE_COUNT', 'Value': 1}}}}
"""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping
from typing import Any

from ...errors import InvalidInputError
from ...retry import as_int

__all__ = ["ROLLOUT_KEYS", "STRATEGIES", "deployment_config", "uses_rolling_policy"]

STRATEGIES = ("all_at_once", "canary", "linear", "rolling")
ROLLOUT_KEYS = {
    "strategy": "all_at_once, canary, linear (blue/green) or rolling",
    "canary_size": 'canary: the first share, "10%" or a number of instances',
    "step_size": 'linear: each step, "20%" or a number of instances',
    "batch_size": 'rolling: each batch, "25%" or a number of instances',
    "rollback_batch_size": "rolling: each batch when rolling back",
    "wait_seconds": "seconds between steps, 0-3600 (canary, linear, rolling)",
    "max_execution_seconds": "MaximumExecutionTimeoutInSeconds, 600-28800",
    "termination_wait_seconds": "blue/green: seconds the old fleet is kept, 0-3600",
    "alarms": "CloudWatch alarms (1-10) that roll the update back",
}
_SAGEMAKER_KEYS = frozenset({"BlueGreenUpdatePolicy", "RollingUpdatePolicy", "AutoRollbackConfiguration"})
_SIZE_TYPES = ("INSTANCE_COUNT", "CAPACITY_PERCENT")


def deployment_config(value: Any) -> dict[str, Any]:
    """The ``DeploymentConfig`` of ``UpdateEndpoint`` for a ``rollout`` config value (see the module)."""
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            raise InvalidInputError(f"config 'rollout' must be a JSON object, got {value!r}") from None
    if not isinstance(value, Mapping):
        raise InvalidInputError(f"config 'rollout' must be a dict, got {type(value).__name__}")
    if set(value) & _SAGEMAKER_KEYS:
        return _as_given(value)
    unknown = sorted(set(value) - set(ROLLOUT_KEYS))
    if unknown:
        raise InvalidInputError(
            f"Unknown rollout key(s): {', '.join(map(str, unknown))}; known: {', '.join(ROLLOUT_KEYS)} "
            "(or SageMaker's own BlueGreenUpdatePolicy / RollingUpdatePolicy / AutoRollbackConfiguration)"
        )
    strategy = str(value.get("strategy") or "").strip().lower()
    if strategy not in STRATEGIES:
        raise InvalidInputError(f"rollout 'strategy' must be one of {', '.join(STRATEGIES)}, got {value.get('strategy')!r}")
    config: dict[str, Any] = {}
    if strategy == "rolling":
        for key in ("canary_size", "step_size", "termination_wait_seconds"):
            if key in value:
                raise InvalidInputError(f"rollout key {key!r} is for blue/green strategies, not 'rolling'")
        policy: dict[str, Any] = {
            "MaximumBatchSize": _size(_required(value, "batch_size", strategy), "batch_size"),
            "WaitIntervalInSeconds": _seconds(_required(value, "wait_seconds", strategy), "wait_seconds", 0, 3600),
        }
        if value.get("max_execution_seconds") is not None:
            policy["MaximumExecutionTimeoutInSeconds"] = _seconds(value["max_execution_seconds"], "max_execution_seconds", 600, 28800)
        if value.get("rollback_batch_size") is not None:
            policy["RollbackMaximumBatchSize"] = _size(value["rollback_batch_size"], "rollback_batch_size")
        config["RollingUpdatePolicy"] = policy
    else:
        for key in ("batch_size", "rollback_batch_size"):
            if key in value:
                raise InvalidInputError(f"rollout key {key!r} is for the 'rolling' strategy")
        routing: dict[str, Any] = {"Type": strategy.upper()}
        if strategy == "all_at_once":
            for key in ("canary_size", "step_size"):
                if key in value:
                    raise InvalidInputError(f"rollout key {key!r} does not apply to 'all_at_once'")
            routing["WaitIntervalInSeconds"] = _seconds(value.get("wait_seconds", 0), "wait_seconds", 0, 3600)
        else:
            size_key, other = ("canary_size", "step_size") if strategy == "canary" else ("step_size", "canary_size")
            if other in value:
                raise InvalidInputError(f"rollout key {other!r} does not apply to {strategy!r}")
            routing["WaitIntervalInSeconds"] = _seconds(_required(value, "wait_seconds", strategy), "wait_seconds", 0, 3600)
            routing["CanarySize" if strategy == "canary" else "LinearStepSize"] = _size(_required(value, size_key, strategy), size_key)
        policy = {"TrafficRoutingConfiguration": routing}
        if value.get("termination_wait_seconds") is not None:
            policy["TerminationWaitInSeconds"] = _seconds(value["termination_wait_seconds"], "termination_wait_seconds", 0, 3600)
        if value.get("max_execution_seconds") is not None:
            policy["MaximumExecutionTimeoutInSeconds"] = _seconds(value["max_execution_seconds"], "max_execution_seconds", 600, 28800)
        config["BlueGreenUpdatePolicy"] = policy
    alarms = _alarms(value.get("alarms"))
    if alarms:
        config["AutoRollbackConfiguration"] = {"Alarms": [{"AlarmName": name} for name in alarms]}
    return config


def uses_rolling_policy(config: Mapping[str, Any] | None) -> bool:
    """Whether a ``DeploymentConfig`` updates instances in batches (``RollingUpdatePolicy``)."""
    return bool(config) and "RollingUpdatePolicy" in config  # type: ignore[operator]


def _as_given(value: Mapping[str, Any]) -> dict[str, Any]:
    unknown = sorted(set(value) - _SAGEMAKER_KEYS)
    if unknown:
        raise InvalidInputError(
            f"A rollout in SageMaker's DeploymentConfig form takes only {', '.join(sorted(_SAGEMAKER_KEYS))}; "
            f"got {', '.join(map(str, unknown))}"
        )
    policies = [key for key in ("BlueGreenUpdatePolicy", "RollingUpdatePolicy") if key in value]
    if len(policies) != 1:
        raise InvalidInputError("A rollout's DeploymentConfig needs exactly one of BlueGreenUpdatePolicy, RollingUpdatePolicy")
    for key in _SAGEMAKER_KEYS & set(value):
        if not isinstance(value[key], Mapping):
            raise InvalidInputError(f"rollout {key} must be a dict, got {type(value[key]).__name__}")
    return copy.deepcopy(dict(value))


def _required(value: Mapping[str, Any], key: str, strategy: str) -> Any:
    if value.get(key) is None:
        raise InvalidInputError(f"rollout strategy {strategy!r} needs {key!r}")
    return value[key]


def _seconds(value: Any, key: str, low: int, high: int) -> int:
    seconds = as_int(value, f"rollout {key!r}", minimum=low)
    if seconds > high:
        raise InvalidInputError(f"rollout {key!r} must be from {low} to {high} seconds, got {value!r}")
    return seconds


def _size(value: Any, key: str) -> dict[str, Any]:
    source = f"rollout {key!r}"
    if isinstance(value, Mapping):
        kind = str(value.get("type") or value.get("Type") or "").upper()
        amount = value.get("value", value.get("Value"))
        if kind not in _SIZE_TYPES:
            raise InvalidInputError(f"{source} type must be INSTANCE_COUNT or CAPACITY_PERCENT, got {kind or None!r}")
    elif isinstance(value, str) and value.strip().endswith("%"):
        kind, amount = "CAPACITY_PERCENT", value.strip()[:-1]
    else:
        kind, amount = "INSTANCE_COUNT", value
    number = as_int(amount, source, minimum=1)
    if kind == "CAPACITY_PERCENT" and number > 100:
        raise InvalidInputError(f"{source} must be at most 100%, got {value!r}")
    return {"Type": kind, "Value": number}


def _alarms(value: Any) -> list[str]:
    if value is None or value == "" or value == []:
        return []
    names = [part.strip() for part in value.split(",")] if isinstance(value, str) else value
    if not isinstance(names, (list, tuple)) or not all(isinstance(name, str) and name.strip() for name in names):
        raise InvalidInputError(f"rollout 'alarms' must be alarm names (a list or comma-separated text), got {value!r}")
    names = [name.strip() for name in names]
    if not 1 <= len(names) <= 10:
        raise InvalidInputError(f"rollout 'alarms' takes 1 to 10 alarms, got {len(names)}")
    return names
