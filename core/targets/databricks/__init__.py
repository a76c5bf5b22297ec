"""The ``databricks`` target: Databricks Model Serving endpoints, through the serving-endpoints REST API.

URIs: ``databricks`` (credentials from options, the environment or the default profile) and
``databricks://<profile>`` (a profile of ``~/.databrickscfg``).

Everything MLflow's Databricks client does, under the same names, plus what it cannot:

* endpoints: :meth:`~DatabricksDeploymentClient.create_endpoint`, ``get``/``list``/``delete_endpoint``,
  ``update_endpoint_config``, ``update_endpoint_tags``, ``update_endpoint_rate_limits``,
  ``update_endpoint_ai_gateway`` and the deprecated ``update_endpoint``; creating and changing the
  configuration wait until the endpoint serves (``wait=False`` to return at once);
* deployments are the *served entities* of an endpoint: ``create_deployment(name,
  "models:/catalog.schema.model/3", endpoint=E, config={...})`` creates endpoint ``E`` or adds the entity
  to it (workload size, scale to zero, traffic share) and waits until it serves; ``update_deployment``
  rolls a new version forward; ``delete_deployment`` removes the entity (and the endpoint with its last
  entity);
* :meth:`~DatabricksDeploymentClient.endpoint_status` / ``deployment_status`` read ``state.ready`` and
  ``state.config_update`` so waiting works: an update that failed is FAILED with Databricks' reason;
* ``predict`` (a whole endpoint, or one served entity) and ``predict_stream`` (server-sent events).

Credentials: with databricks-sdk installed (``pip install 'deployflow[databricks]'``), its unified
authentication (personal access tokens, OAuth for service principals, Azure service principals,
``auth_type``), with requests still sent by deployflow's transport; without it, personal access tokens.

Modules: :mod:`.credentials` (options, environment, ``~/.databrickscfg``; tokens without the SDK),
:mod:`.sdk_auth` (credentials through databricks-sdk), :mod:`.records` (reading endpoint records and
their states), :mod:`.client` (the client), :mod:`.help` (``run_local``, ``target_help``).
"""

from __future__ import annotations

from .client import DatabricksDeploymentClient
from .credentials import DatabricksCredentials, profile_from_uri, resolve_credentials
from .help import run_local, target_help
from .records import DatabricksEndpoint, endpoint_status_of, entity_status_of, rebalance

__all__ = [
    "DatabricksDeploymentClient",
    "DatabricksEndpoint",
    "DatabricksCredentials",
    "resolve_credentials",
    "profile_from_uri",
    "endpoint_status_of",
    "entity_status_of",
    "rebalance",
    "run_local",
    "target_help",
]
