"""Operators that create, update and delete deployments."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Sequence

from airflow.sdk.exceptions import AirflowFailException

from deployflow import BaseDeploymentClient, ensure_deployment
from deployflow.orchestration import step_config

from .._common import given, if_exists_choice, small_record, translate_errors
from ._base import WAITING_TEMPLATE_FIELDS, DeployflowOperator, ReadinessWaitingOperator

if TYPE_CHECKING:
    from airflow.sdk import Context

__all__ = [
    "CreateDeploymentOperator",
    "UpdateDeploymentOperator",
    "DeleteDeploymentOperator",
]

class _DeploymentOperator(ReadinessWaitingOperator):
    def __init__(self, *, deployment_name: str, endpoint: str | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.deployment_name = deployment_name
        self.endpoint = endpoint
        self._add_own_asset()

    def _readiness_target(self) -> tuple[str, str | None, str | None]:
        return "deployment", self.deployment_name, self.endpoint

    def _result(self, action: str, record: Any) -> dict[str, Any]:
        return {
            "deployment_name": self.deployment_name,
            "endpoint": self.endpoint,
            "action": action,
            **small_record(record),
        }


class CreateDeploymentOperator(_DeploymentOperator):
    """Deploy ``model_uri`` as ``deployment_name``; safe to retry.

    :param deployment_name: the deployment's name (templated).
    :param model_uri: the model, in a form the target understands (templated), e.g.
        ``python:/abs/path/model.py:model`` for ``local``. Trust boundary: on ``local``, loading a
        pickle, joblib or ``python:`` model runs the code it holds, with the rights of the process that
        serves it, so a templated ``model_uri`` is code execution for whoever can trigger this DAG or set
        its parameters; template it only from values you control.
    :param flavor: the model flavor, or ``None`` to let the target decide (templated).
    :param config: target-specific settings (templated; rendered as JSON in the UI). For ``local``,
        ``{"wait": False}`` makes the create return at once, so the wait below can be deferred.
    :param endpoint: the endpoint to deploy into, for targets that have them (templated).
    :param if_exists: when ``deployment_name`` exists already: ``"adopt"`` (default) keeps it if it
        serves the same model (same ``model_uri`` and, when both are known, the same flavor) and fails if
        it serves another; ``"update"`` rolls it forward to this model and config (or adopts it when
        it serves this model already and no config is given); ``"fail"`` refuses. With ``"adopt"``, a
        task retried after its create succeeded takes over what it created. Templated; another value
        fails with ``ValueError`` when the DAG is parsed, or, rendered, when the task runs (no retry).
    :param deployflow_conn_id: the ``deployflow`` connection (templated).

    Waiting (``wait_for_completion``, ``timeout``, ``deferrable``, ...) is described in
    :class:`~deployflow.integrations.airflow.operators._base.ReadinessWaitingOperator`.

    XCom: ``{"deployment_name", "endpoint", "action": "created" | "adopted" | "updated", "state",
    "reason", "url", "model_uri", "flavor", ...}``; after a wait, the record's fields as read once the
    deployment is READY; ``"console_url"`` too on targets with a console page (``databricks``).
    """

    template_fields: Sequence[str] = (
        "deployment_name",
        "model_uri",
        "flavor",
        "config",
        "endpoint",
        "deployflow_conn_id",
        "if_exists",
        *WAITING_TEMPLATE_FIELDS,
    )
    template_fields_renderers = {"config": "json"}
    argument_checks = {**ReadinessWaitingOperator.argument_checks, "if_exists": if_exists_choice}

    def __init__(
        self,
        *,
        deployment_name: str,
        model_uri: str,
        flavor: str | None = None,
        config: dict[str, Any] | None = None,
        endpoint: str | None = None,
        if_exists: str = "adopt",
        **kwargs: Any,
    ) -> None:
        super().__init__(deployment_name=deployment_name, endpoint=endpoint, **kwargs)
        self.model_uri = model_uri
        self.flavor = flavor
        self.config = config
        self.if_exists = if_exists
        self.check_arguments(rendered=False)

    def execute(self, context: Context) -> dict[str, Any]:
        self.check_arguments(rendered=True)
        with self.step(), self.client() as client:
            with translate_errors(f"Creating deployment {self.deployment_name!r}"):
                record, action = self._create_or_take_over(client)
            self.log.info("Deployment %r: %s", self.deployment_name, action)
            return self.finish(context, client, self._wait_until_ready(client, self._result(action, record)))

    def _create_or_take_over(self, client: BaseDeploymentClient) -> tuple[Any, str]:
        result = ensure_deployment(
            client,
            self.deployment_name,
            self.model_uri,
            flavor=self.flavor,
            config=self.config,
            endpoint=self.endpoint,
            if_exists=self.if_exists,
            wait=self.target_waits(),
        )
        return result.record, result.action


class UpdateDeploymentOperator(_DeploymentOperator):
    """Roll deployment ``deployment_name`` forward to a new model, flavor and/or config.

    :param deployment_name: the deployment (templated).
    :param model_uri: the new model, or ``None`` to keep it (templated).
    :param flavor: the new flavor (needs ``model_uri``) (templated).
    :param config: target-specific settings to change (templated; JSON in the UI).
    :param endpoint: the endpoint it belongs to, for targets that need it (templated).
    :param deployflow_conn_id: the ``deployflow`` connection (templated).

    A missing deployment fails the task (no retry). Waiting as for :class:`CreateDeploymentOperator`.
    XCom: ``{"deployment_name", "endpoint", "action": "updated", "state", ...}``.
    """

    template_fields: Sequence[str] = (
        "deployment_name",
        "model_uri",
        "flavor",
        "config",
        "endpoint",
        "deployflow_conn_id",
        *WAITING_TEMPLATE_FIELDS,
    )
    template_fields_renderers = {"config": "json"}

    def __init__(
        self,
        *,
        deployment_name: str,
        model_uri: str | None = None,
        flavor: str | None = None,
        config: dict[str, Any] | None = None,
        endpoint: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(deployment_name=deployment_name, endpoint=endpoint, **kwargs)
        self.model_uri = model_uri
        self.flavor = flavor
        self.config = config
        self.check_arguments(rendered=False)

    def execute(self, context: Context) -> dict[str, Any]:
        self.check_arguments(rendered=True)
        if self.model_uri is None and self.flavor is None and not self.config:
            raise AirflowFailException(
                f"Updating deployment {self.deployment_name!r}: give model_uri, flavor or config to change"
            )
        config = step_config(self.config, wait=self.target_waits())
        with self.step(), self.client() as client:
            with translate_errors(f"Updating deployment {self.deployment_name!r}"):
                record = client.update_deployment(
                    self.deployment_name,
                    **given(model_uri=self.model_uri, flavor=self.flavor, config=config, endpoint=self.endpoint),
                )
                record = record or client.get_deployment(self.deployment_name)
            return self.finish(context, client, self._wait_until_ready(client, self._result("updated", record)))


class DeleteDeploymentOperator(DeployflowOperator):
    """Delete deployment ``deployment_name``. Idempotent: a deployment that is already gone is fine.

    :param deployment_name: the deployment (templated).
    :param config: target-specific settings for the delete (templated; JSON in the UI).
    :param endpoint: the endpoint it belongs to, for targets that need it (templated).
    :param deployflow_conn_id: the ``deployflow`` connection (templated).

    Use ``trigger_rule="all_done"`` to tear down whatever happened upstream.
    XCom: ``{"deployment_name", "endpoint", "action": "deleted"}``.
    """

    template_fields: Sequence[str] = ("deployment_name", "config", "endpoint", "deployflow_conn_id")
    template_fields_renderers = {"config": "json"}

    def __init__(
        self,
        *,
        deployment_name: str,
        config: dict[str, Any] | None = None,
        endpoint: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.deployment_name = deployment_name
        self.config = config
        self.endpoint = endpoint

    def execute(self, context: Context) -> dict[str, Any]:
        with self.client() as client, translate_errors(f"Deleting deployment {self.deployment_name!r}"):
            client.delete_deployment(self.deployment_name, **given(config=self.config, endpoint=self.endpoint))
        self.log.info("Deployment %r deleted", self.deployment_name)
        return {"deployment_name": self.deployment_name, "endpoint": self.endpoint, "action": "deleted"}
