"""Reading Databricks' endpoint records: served entities, traffic routes, and the states waiting needs.

An endpoint record holds ``state`` (``ready``: READY / NOT_READY; ``config_update``: NOT_UPDATING /
IN_PROGRESS / UPDATE_FAILED / UPDATE_CANCELED), the active ``config`` and, while an update runs or after it
failed, ``pending_config``. Each served entity has its own ``state.deployment`` and
``deployment_state_message``, where Databricks says why an update failed.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

from ...status import State, Status

__all__ = [
    "DatabricksEndpoint",
    "served_entities_of",
    "routes_of",
    "entity_message",
    "model_uri_of",
    "writable",
    "rebalance",
    "traffic_config",
    "endpoint_status_of",
    "entity_status_of",
    "deployment_record",
]

# Fields Databricks reports on a served entity that a configuration update must not send back.
_READ_ONLY_ENTITY_FIELDS = frozenset({"state", "creator", "creation_timestamp", "foundation_model", "type", "served_entity_id"})
_FAILED_UPDATES = frozenset({"UPDATE_FAILED", "UPDATE_CANCELED"})
_FAILED_DEPLOYMENTS = frozenset({"DEPLOYMENT_FAILED", "DEPLOYMENT_ABORTED", "DEPLOYMENT_STOPPED"})


class DatabricksEndpoint(dict):
    """A serving endpoint (or another API answer) as a dict whose keys also read as attributes.

    >>> DatabricksEndpoint({"name": "chat", "state": {"ready": "READY"}}).state.ready
    'READY'
    """

    def __getattr__(self, key: str) -> Any:
        try:
            value = self[key]
        except KeyError:
            raise AttributeError(key) from None
        return DatabricksEndpoint(value) if isinstance(value, dict) and not isinstance(value, DatabricksEndpoint) else value


def served_entities_of(config: Any) -> dict[str, dict[str, Any]]:
    """The served entities (or, in older records, served models) of a config, by name."""
    if not isinstance(config, dict):
        return {}
    entities = config.get("served_entities") or config.get("served_models") or []
    return {str(entity.get("name")): entity for entity in entities if isinstance(entity, dict) and entity.get("name")}


def routes_of(config: Any) -> dict[str, int]:
    """The traffic percentage of each served entity of a config, by name."""
    if not isinstance(config, dict):
        return {}
    routes = (config.get("traffic_config") or {}).get("routes") or []
    found: dict[str, int] = {}
    for route in routes:
        name = route.get("served_entity_name") or route.get("served_model_name")
        if name:
            found[str(name)] = int(route.get("traffic_percentage") or 0)
    return found


def entity_message(entity: Mapping[str, Any] | None) -> str:
    """Databricks' ``deployment_state_message`` of a served entity (why it is not ready), or ''."""
    if not entity:
        return ""
    state = entity.get("state") or {}
    return str(state.get("deployment_state_message") or "").strip()


def model_uri_of(entity: Mapping[str, Any]) -> str | None:
    """``models:/<name>/<version>`` for a registered-model entity, else ``None``."""
    if entity.get("entity_name") and entity.get("entity_version"):
        return f"models:/{entity['entity_name']}/{entity['entity_version']}"
    return None


def writable(entity: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of a served entity without the output-only fields, fit for a configuration update."""
    return {key: copy.deepcopy(value) for key, value in entity.items() if key not in _READ_ONLY_ENTITY_FIELDS}


def rebalance(routes: Mapping[str, int], name: str | None = None, share: int | None = None) -> dict[str, int]:
    """Traffic percentages summing to 100: ``name`` gets ``share``, the others keep their proportions.

    Whole percentages by the largest-remainder rule; when the others had no traffic they share evenly.

    >>> rebalance({"a": 60, "b": 40}, "c", 50)
    {'a': 30, 'b': 20, 'c': 50}
    """
    others = {key: max(int(value), 0) for key, value in routes.items() if key != name}
    fixed = share if name is not None and share is not None else 0
    left = 100 - fixed
    result: dict[str, int] = {}
    if others:
        total = sum(others.values())
        weights = others if total > 0 else {key: 1 for key in others}
        total = sum(weights.values())
        exact = {key: left * weight / total for key, weight in weights.items()}
        result = {key: int(value) for key, value in exact.items()}
        short = left - sum(result.values())
        for key in sorted(exact, key=lambda k: (exact[k] - result[k]), reverse=True)[:short]:
            result[key] += 1
    if name is not None:
        result[name] = fixed if others else 100
    return result


def traffic_config(routes: Mapping[str, int]) -> dict[str, Any]:
    """The ``traffic_config`` of a config update for these percentages."""
    return {"routes": [{"served_model_name": key, "traffic_percentage": value} for key, value in routes.items()]}


# --------------------------------------------------------------------------------------------------



def _messages(config: Any) -> str:
    parts = []
    for entity_name, entity in served_entities_of(config).items():
        message = entity_message(entity)
        deployment = (entity.get("state") or {}).get("deployment")
        if message or deployment:
            parts.append(f"{entity_name}: {message or deployment}")
    return "; ".join(parts)


def endpoint_status_of(record: Mapping[str, Any]) -> Status:
    """The :class:`~deployflow.Status` of an endpoint record (see ``endpoint_status``)."""
    state = record.get("state") or {}
    ready = str(state.get("ready") or "").upper()
    update = str(state.get("config_update") or "NOT_UPDATING").upper()
    if update in _FAILED_UPDATES:
        detail = _messages(record.get("pending_config")) or "no reason given"
        return Status(State.FAILED, reason=f"configuration update {update}: {detail}", raw=record)
    if update == "IN_PROGRESS":
        detail = _messages(record.get("pending_config"))
        return Status(State.PENDING, reason="configuration update in progress" + (f" ({detail})" if detail else ""), raw=record)
    if ready == "READY":
        return Status(State.READY, raw=record)
    failed = [
        f"{entity_name}: {entity_message(entity) or (entity.get('state') or {}).get('deployment')}"
        for entity_name, entity in served_entities_of(record.get("config")).items()
        if (entity.get("state") or {}).get("deployment") in _FAILED_DEPLOYMENTS
    ]
    if failed:
        return Status(State.FAILED, reason="; ".join(failed), raw=record)
    detail = _messages(record.get("config"))
    reason = f"endpoint {ready or 'state unknown'}" + (f" ({detail})" if detail else "")
    return Status(State.PENDING, reason=reason, raw=record)


def entity_status_of(record: Mapping[str, Any], name: str) -> Status:
    """The :class:`~deployflow.Status` of served entity ``name`` in an endpoint record."""
    state = record.get("state") or {}
    update = str(state.get("config_update") or "NOT_UPDATING").upper()
    active = served_entities_of(record.get("config"))
    pending = served_entities_of(record.get("pending_config"))
    if name in pending and update == "IN_PROGRESS":
        message = entity_message(pending[name])
        return Status(State.PENDING, reason="update in progress" + (f": {message}" if message else ""), raw=record)
    if name in pending and update in _FAILED_UPDATES:
        message = entity_message(pending[name]) or _messages(record.get("pending_config")) or "no reason given"
        return Status(State.FAILED, reason=f"configuration update {update}: {message}", raw=record)
    if name in active:
        entity_state = active[name].get("state") or {}
        deployment = str(entity_state.get("deployment") or "").upper()
        message = entity_message(active[name])
        if deployment == "DEPLOYMENT_READY":
            return Status(State.READY, raw=record)
        if deployment in _FAILED_DEPLOYMENTS:
            return Status(State.FAILED, reason=message or deployment, raw=record)
        if not deployment and str(state.get("ready") or "").upper() == "READY" and update != "IN_PROGRESS":
            return Status(State.READY, raw=record)
        return Status(State.PENDING, reason=message or deployment or "not ready", raw=record)
    if update == "IN_PROGRESS" and not pending:
        return Status(State.PENDING, reason="configuration update in progress", raw=record)
    return Status(State.NOT_FOUND, reason=f"endpoint {record.get('name')!r} serves no entity named {name!r}", raw=record)


def deployment_record(record: Mapping[str, Any], name: str) -> dict[str, Any]:
    """What ``get_deployment`` returns for served entity ``name`` of an endpoint record."""
    active = served_entities_of(record.get("config"))
    entity = active.get(name) or served_entities_of(record.get("pending_config")).get(name) or {}
    status = entity_status_of(record, name)
    routes = routes_of(record.get("config")) if name in active else routes_of(record.get("pending_config"))
    found = {
        "name": name,
        "endpoint": record.get("name"),
        "model_uri": model_uri_of(entity),
        "state": status.state.value,
        "reason": status.reason,
        "traffic_percentage": routes.get(name),
    }
    for key in ("entity_name", "entity_version", "workload_size", "workload_type", "scale_to_zero_enabled", "external_model"):
        if key in entity:
            found[key] = copy.deepcopy(entity[key])
    return found


# --------------------------------------------------------------------------------------------------
