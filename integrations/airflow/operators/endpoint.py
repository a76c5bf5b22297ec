"""Operators that create, update and delete endpoints (for targets that have them)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Mapping, Sequence

from deployflow import BaseDeploymentClient, ensure_endpoint
from deployflow.orchestration import step_config

from .._common import given, if_exists_choice, small_record, translate_errors
from ._base import WAITING_TEMPLATE_FIELDS, DeployflowOperator, ReadinessWaitingOperator

if TYPE_CHECKING:
    from airflow.sdk import Context

__all__ = ["CreateEndpointOperator", "UpdateEndpointOperator", "DeleteEndpointOperator"]

class _EndpointOperator(ReadinessWaitingOperator):
    def __init__(self, *, endpoint: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.endpoint = endpoint
        self._add_own_asset()

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
        ``"update"`` applies ``config`` to it; ``"fail"`` refuses. Templated; another value fails with
        ``ValueError`` when the DAG is parsed, or, rendered, when the task runs (no retry).
    :param deployflow_conn_id: the ``deployflow`` connection (templated).

    Waiting as for :class:`~deployflow.integrations.airflow.operators.deployment.CreateDeploymentOperator`.
    XCom: ``{"endpoint", "action": "created" | "adopted" | "updated", "state", "reason", "url", "routes"}``
    (after a wait, as the record reads once READY), plus ``"console_url"`` on ``databricks``.
    """

    template_fields: Sequence[str] = ("endpoint", "config", "deployflow_conn_id", "if_exists", *WAITING_TEMPLATE_FIELDS)
    template_fields_renderers = {"config": "json"}
    argument_checks = {**ReadinessWaitingOperator.argument_checks, "if_exists": if_exists_choice}

    def __init__(
        self, *, endpoint: str, config: dict[str, Any] | None = None, if_exists: str = "adopt", **kwargs: Any
    ) -> None:
        super().__init__(endpoint=endpoint, **kwargs)
        self.config = config
        self.if_exists = if_exists
        self.check_arguments(rendered=False)

    def execute(self, context: Context) -> dict[str, Any]:
        self.check_arguments(rendered=True)
        with self.step(), self.client() as client:
            with translate_errors(f"Creating endpoint {self.endpoint!r}"):
                record, action = self._create_or_take_over(client)
            self.log.info("Endpoint %r: %s", self.endpoint, action)
            return self.finish(context, client, self._wait_until_ready(client, self._result(action, record)))

    def _create_or_take_over(self, client: BaseDeploymentClient) -> tuple[Any, str]:
        result = ensure_endpoint(
            client, self.endpoint, config=self.config, if_exists=self.if_exists, wait=self.target_waits()
        )
        return result.record, result.action


class UpdateEndpointOperator(_EndpointOperator):
    """Change endpoint ``endpoint``'s config (for ``local``: its routes, i.e. the traffic split).

    :param endpoint: the endpoint (templated).
    :param config: the settings to change (templated; JSON in the UI).
    :param deployflow_conn_id: the ``deployflow`` connection (templated).

    A missing endpoint fails the task (no retry). XCom: ``{"endpoint", "action": "updated", "state", ...}``.
    """

    template_fields: Sequence[str] = ("endpoint", "config", "deployflow_conn_id", *WAITING_TEMPLATE_FIELDS)
    template_fields_renderers = {"config": "json"}

    def __init__(self, *, endpoint: str, config: dict[str, Any] | None = None, **kwargs: Any) -> None:
        super().__init__(endpoint=endpoint, **kwargs)
        self.config = config
        self.check_arguments(rendered=False)

    def execute(self, context: Context) -> dict[str, Any]:
        self.check_arguments(rendered=True)
        config = step_config(self.config, wait=self.target_waits())
        with self.step(), self.client() as client:
            with translate_errors(f"Updating endpoint {self.endpoint!r}"):
                record = client.update_endpoint(self.endpoint, **given(config=config))
                record = record if isinstance(record, Mapping) else client.get_endpoint(self.endpoint)
            return self.finish(context, client, self._wait_until_ready(client, self._result("updated", record)))


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
