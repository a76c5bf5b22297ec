"""Operators that create, update and delete endpoints (for targets that have them)."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any, Mapping, Sequence

from deployflow import BaseDeploymentClient, ConflictError, NotFoundError

from .._common import given, small_record, translate_errors
from ._base import DeployflowOperator, ReadinessWaitingOperator
from .deployment import IF_EXISTS

if TYPE_CHECKING:
    from airflow.sdk import Context

__all__ = ["CreateEndpointOperator", "UpdateEndpointOperator", "DeleteEndpointOperator"]

#: Config keys that steer the call rather than describe the endpoint; never compared.
_CALL_KEYS = frozenset({"wait"})


def _normalized(value: Any) -> Any:
    """A comparable form of a config value: numbers as floats, lists of dicts in a stable order."""
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, Mapping):
        return {str(key): _normalized(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        items = [_normalized(item) for item in value]
        if all(isinstance(item, dict) for item in items):
            items.sort(key=lambda item: json.dumps(item, sort_keys=True, default=str))
        return items
    return str(value)


def same_endpoint_config(wanted: Mapping[str, Any] | None, existing: Mapping[str, Any]) -> bool | None:
    """Whether the existing endpoint has the wanted config: True/False, or None when the record does not
    say (no ``config`` in it) or a value cannot be compared (text on one side, structure on the other)."""
    recorded = existing.get("config")
    if not wanted:
        return True
    if not isinstance(recorded, Mapping):
        return None
    unknown = False
    for key, value in wanted.items():
        if key in _CALL_KEYS:
            continue
        if key not in recorded:
            unknown = True
            continue
        mine, theirs = _normalized(value), _normalized(recorded[key])
        if isinstance(mine, str) != isinstance(theirs, str):
            unknown = True  # e.g. routes given as "a:90,b:10" text: the target parses it, we do not
            continue
        if mine != theirs:
            return False
    return None if unknown else True


def _get_or_none(client: BaseDeploymentClient, endpoint: str) -> dict[str, Any] | None:
    try:
        return client.get_endpoint(endpoint)
    except NotFoundError:
        return None


class _EndpointOperator(ReadinessWaitingOperator):
    def __init__(self, *, endpoint: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.endpoint = endpoint

    def _readiness_target(self) -> tuple[str, str | None, str | None]:
        return "endpoint", None, self.endpoint

    def _result(self, action: str, record: Any) -> dict[str, Any]:
        return {"endpoint": self.endpoint, "action": action, **small_record(record)}


class CreateEndpointOperator(_EndpointOperator):
    """Create endpoint ``endpoint``; safe to retry.

    :param endpoint: the endpoint's name (templated).
    :param config: target-specific settings (templated; JSON in the UI). For ``local``:
        ``{"routes": [{"deployment": "a", "traffic": 100}]}``.
    :param if_exists: when the endpoint exists: ``"adopt"`` (default) keeps it when its recorded config
        matches ``config`` (keys the record does not show are not compared) and fails when it differs;
        ``"update"`` applies ``config`` to it; ``"fail"`` refuses.
    :param deployflow_conn_id: the ``deployflow`` connection (templated).

    Waiting as for :class:`~deployflow.integrations.airflow.operators.deployment.CreateDeploymentOperator`.
    XCom: ``{"endpoint", "action": "created" | "adopted" | "updated", "state", "reason", "url", "routes"}``.
    """

    template_fields: Sequence[str] = ("endpoint", "config", "deployflow_conn_id")
    template_fields_renderers = {"config": "json"}

    def __init__(
        self, *, endpoint: str, config: dict[str, Any] | None = None, if_exists: str = "adopt", **kwargs: Any
    ) -> None:
        super().__init__(endpoint=endpoint, **kwargs)
        if if_exists not in IF_EXISTS:
            raise ValueError(f"if_exists must be one of {', '.join(IF_EXISTS)}; got {if_exists!r}")
        self.config = config
        self.if_exists = if_exists

    def execute(self, context: Context) -> dict[str, Any]:
        with self.client() as client:
            with translate_errors(f"Creating endpoint {self.endpoint!r}"):
                record, action = self._create_or_take_over(client)
            self.log.info("Endpoint %r: %s", self.endpoint, action)
            return self._wait_until_ready(client, self._result(action, record))

    def _create_or_take_over(self, client: BaseDeploymentClient) -> tuple[Any, str]:
        existing = _get_or_none(client, self.endpoint)
        if existing is None:
            try:
                return client.create_endpoint(self.endpoint, **given(config=self.config)), "created"
            except ConflictError:
                existing = _get_or_none(client, self.endpoint)
                if existing is None:
                    raise
        if self.if_exists == "fail":
            raise ConflictError(f"Endpoint {self.endpoint!r} exists already and if_exists='fail'")
        same = same_endpoint_config(self.config, existing)
        if self.if_exists == "adopt":
            if same is False:
                raise ConflictError(
                    f"Endpoint {self.endpoint!r} exists with another config; pass if_exists='update' to apply "
                    "this one"
                )
            return existing, "adopted"
        if same is True:
            return existing, "adopted"
        record = client.update_endpoint(self.endpoint, **given(config=self.config))
        return record or client.get_endpoint(self.endpoint), "updated"


class UpdateEndpointOperator(_EndpointOperator):
    """Change endpoint ``endpoint``'s config (for ``local``: its routes, i.e. the traffic split).

    :param endpoint: the endpoint (templated).
    :param config: the settings to change (templated; JSON in the UI).
    :param deployflow_conn_id: the ``deployflow`` connection (templated).

    A missing endpoint fails the task (no retry). XCom: ``{"endpoint", "action": "updated", "state", ...}``.
    """

    template_fields: Sequence[str] = ("endpoint", "config", "deployflow_conn_id")
    template_fields_renderers = {"config": "json"}

    def __init__(self, *, endpoint: str, config: dict[str, Any] | None = None, **kwargs: Any) -> None:
        super().__init__(endpoint=endpoint, **kwargs)
        self.config = config

    def execute(self, context: Context) -> dict[str, Any]:
        with self.client() as client:
            with translate_errors(f"Updating endpoint {self.endpoint!r}"):
                record = client.update_endpoint(self.endpoint, **given(config=self.config))
                record = record if isinstance(record, Mapping) else client.get_endpoint(self.endpoint)
            return self._wait_until_ready(client, self._result("updated", record))


class DeleteEndpointOperator(DeployflowOperator):
    """Delete endpoint ``endpoint``. Idempotent.

    :param endpoint: the endpoint (templated).
    :param deployflow_conn_id: the ``deployflow`` connection (templated).

    XCom: ``{"endpoint", "action": "deleted"}``.
    """

    template_fields: Sequence[str] = ("endpoint", "deployflow_conn_id")

    def __init__(self, *, endpoint: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.endpoint = endpoint

    def execute(self, context: Context) -> dict[str, Any]:
        with self.client() as client, translate_errors(f"Deleting endpoint {self.endpoint!r}"):
            client.delete_endpoint(self.endpoint)
        self.log.info("Endpoint %r deleted", self.endpoint)
        return {"endpoint": self.endpoint, "action": "deleted"}
