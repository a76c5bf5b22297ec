"""The provider information Airflow reads through the ``apache_airflow_provider`` entry point.

Registered in ``pyproject.toml``::

    [project.entry-points.apache_airflow_provider]
    provider_info = "deployflow.integrations.airflow.get_provider_info:get_provider_info"

Airflow validates the returned dict against its runtime provider schema; ``package-name`` must be the
distribution's name (``deployflow``). Connection-form metadata is declared here (``conn-fields``,
``ui-field-behaviour``), so the UI needs no hook import to draw the form.

The connection's extra holds client options. ``max_retries`` is not one to set there: the hook builds
its client with the transport's retries off, so that Airflow's task ``retries`` are the only retry level
("Retries in pipeline steps" in :mod:`deployflow.orchestration`).

For the ``databricks`` target the form also offers a service principal's fields: ``client_id`` and
``client_secret`` (OAuth; the secret is a password field, masked in the UI), ``azure_client_id``,
``azure_client_secret`` (a password field) and ``azure_tenant_id`` (an Azure service principal), and
``auth_type``; they are client options like the rest of the extra. Connections written as Airflow's
Databricks provider writes them (login and password with ``service_principal_oauth``, or with
``azure_tenant_id``) work too: see :mod:`deployflow.integrations.airflow.hooks.deployment`.
"""

from __future__ import annotations

from typing import Any

__all__ = ["get_provider_info"]

_PACKAGE = "deployflow.integrations.airflow"
_INTEGRATION = "deployflow"


def get_provider_info() -> dict[str, Any]:
    """Describe this provider: its hooks, operators, sensors, triggers, extra links and the
    ``deployflow`` connection type."""
    from deployflow import __version__

    def modules(*names: str) -> list[dict[str, Any]]:
        return [{"integration-name": _INTEGRATION, "python-modules": [f"{_PACKAGE}.{name}" for name in names]}]

    return {
        "package-name": "deployflow",
        "name": "deployflow",
        "description": (
            "Deploy models to any deployflow target (local, Databricks, SageMaker, MLflow-protocol servers, "
            "plugins), wait until they serve (blocking, sensor or deferrable), and score data in batch."
        ),
        "versions": [__version__],
        "integrations": [
            {
                "integration-name": _INTEGRATION,
                "tags": ["software"],
            }
        ],
        "hooks": modules("hooks.deployment"),
        "operators": modules("operators.deployment", "operators.endpoint", "operators.scoring", "operators.promotion"),
        "sensors": modules("sensors.readiness"),
        "triggers": modules("triggers.readiness", "triggers.promotion"),
        "extra-links": [f"{_PACKAGE}.links.DeploymentLink"],
        "connection-types": [
            {
                "connection-type": "deployflow",
                "hook-class-name": f"{_PACKAGE}.hooks.deployment.DeploymentHook",
                "hook-name": "deployflow",
                "conn-fields": {
                    "token_option": {
                        "label": "Token option",
                        "schema": {"type": ["string", "null"]},
                        "description": (
                            "The client option the token is passed as (default auth_token, which the local "
                            "and serving targets accept)."
                        ),
                    },
                    "test_endpoint": {
                        "label": "Endpoint to test",
                        "schema": {"type": ["string", "null"]},
                        "description": (
                            "An endpoint whose status the Test button checks (optional; without it the test "
                            "lists the target's endpoints, or its deployments)."
                        ),
                    },
                    **_databricks_fields(),
                },
                "ui-field-behaviour": {
                    "hidden-fields": ["schema", "port", "login"],
                    "relabeling": {"host": "Target URI", "password": "Token"},
                    "placeholders": {
                        "host": "local, local:///abs/state/dir, databricks://profile, serving+https://host",
                        "password": (
                            "bearer token or API key for the target (optional); a Databricks service "
                            "principal's client secret with service_principal_oauth or azure_tenant_id"
                        ),
                        "extra": (
                            '{"timeout": 30}  (client options; "target_uri" overrides the host; max_retries is '
                            "not used: Airflow's task retries are the only retry level, see deployflow.orchestration)"
                        ),
                    },
                },
            }
        ],
    }


def _databricks_fields() -> dict[str, Any]:
    """The form fields of a Databricks service principal (client options of the databricks target,
    which needs ``pip install 'deployflow[databricks]'`` for them)."""

    def field(label: str, description: str, *, secret: bool = False, kind: str = "string") -> dict[str, Any]:
        schema: dict[str, Any] = {"type": [kind, "null"]}
        if secret:
            schema["format"] = "password"  # Airflow masks the field and treats its value as sensitive
        return {"label": label, "schema": schema, "description": description}

    return {
        "client_id": field("Client ID", "Databricks: a service principal's OAuth client ID (option client_id)."),
        "client_secret": field(
            "Client secret", "Databricks: the service principal's OAuth secret (option client_secret).", secret=True
        ),
        "azure_client_id": field("Azure client ID", "Databricks on Azure: the Azure service principal's application ID."),
        "azure_client_secret": field(
            "Azure client secret", "Databricks on Azure: the Azure service principal's secret.", secret=True
        ),
        "azure_tenant_id": field("Azure tenant ID", "Databricks on Azure: the service principal's tenant."),
        "auth_type": field(
            "Databricks auth type",
            "Databricks: databricks-sdk's name for the way to authenticate (pat, oauth-m2m, azure-client-secret, ...).",
        ),
        "service_principal_oauth": field(
            "Service principal OAuth",
            "Databricks: the login is the client ID and the password the client secret, as in Airflow's "
            "Databricks provider.",
            kind="boolean",
        ),
    }
