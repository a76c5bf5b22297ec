"""The databricks target's module-level plugin functions: ``run_local`` and ``target_help``."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ...errors import NotSupportedError
from .client import DEPLOYMENT_CONFIG_KEYS, POLL_INTERVAL_ENV, WAIT_TIMEOUT_ENV
from .credentials import AUTH_TYPE_ENV, CONFIG_FILE_ENV, HOST_ENV, PROFILE_ENV, TOKEN_ENV

__all__ = ["run_local", "target_help"]


def run_local(name: str, model_uri: str, flavor: str | None = None, config: dict[str, Any] | None = None) -> None:
    raise NotSupportedError("run_local is not supported by the databricks target; use the 'local' target")


def target_help() -> str:
    return f"""Target 'databricks': Databricks Model Serving endpoints (the serving-endpoints REST API).

URIs
  databricks              credentials from options, else the environment, else the profile
                          {PROFILE_ENV} (default DEFAULT) of ~/.databrickscfg
  databricks://PROFILE    the profile PROFILE of ~/.databrickscfg

Credentials
  Options host= and token= win; host and token otherwise come together from one place: {HOST_ENV} and
  {TOKEN_ENV}, or a profile. The config file is ~/.databrickscfg unless {CONFIG_FILE_ENV} or the option
  config_file names another. The option profile names a profile as databricks://PROFILE does.
  With databricks-sdk installed (pip install 'deployflow[databricks]'), databricks-sdk's unified
  authentication reads the options, the environment and the profile, so every way it offers works
  (each with host= or {HOST_ENV}):
    personal access token     token=  ({TOKEN_ENV})
    OAuth, service principal  client_id=, client_secret=  (DATABRICKS_CLIENT_ID, DATABRICKS_CLIENT_SECRET)
    Azure service principal   azure_client_id=, azure_client_secret=, azure_tenant_id=
                              (ARM_CLIENT_ID, ARM_CLIENT_SECRET, ARM_TENANT_ID)
    another way               auth_type= as databricks-sdk names it ({AUTH_TYPE_ENV}, or auth_type in
                              the profile); a name the SDK does not offer is refused with its list
  The SDK fetches OAuth tokens from the workspace and refreshes them; requests still go through
  deployflow's HTTP client. A profile named by the URI or the option profile supplies the host and
  credentials with the options only: a host or credential variable in the environment beside it is
  refused. Without databricks-sdk, personal access tokens only: client_id, client_secret, azure_*
  and an auth_type other than pat raise MissingExtraError.
  Secrets (token, client_secret, azure_client_secret) never appear in messages or logs.
  They are looked up on the first request, once: a client can be made where none are configured yet,
  and its first request then says how to configure them.

Endpoints
  create_endpoint(name, config)           config = the request body ({{"name", "config": {{"served_entities",
                                          "traffic_config"}}, "tags", "rate_limits", "ai_gateway",
                                          "route_optimized"}}) or MLflow's older core config form
  update_endpoint_config(endpoint, config)   PUT .../config (served_entities, traffic_config)
  update_endpoint_tags(endpoint, {{"add_tags": [...], "delete_tags": [...]}})
  update_endpoint_rate_limits(endpoint, {{"rate_limits": [...]}})
  update_endpoint_ai_gateway(endpoint, {{...}})
  update_endpoint(endpoint, config)       deprecated; routes to one of the above
  get_endpoint, list_endpoints, delete_endpoint (idempotent), endpoint_status, wait_for_endpoint
  create_endpoint and update_endpoint_config wait until the endpoint serves; a config key "wait": false
  (or the option wait=False) returns at once. UPDATE_FAILED raises DeploymentFailedError with the reason.

Deployments (served entities of an endpoint)
  create_deployment(name, "models:/catalog.schema.model/3", endpoint=E, config={{...}})
      creates endpoint E (default: named after the deployment) or adds the entity to it, then waits
  update_deployment(name, model_uri=None, config={{...}}, endpoint=E)   rolls forward, then waits
  delete_deployment(name, endpoint=E)     removes the entity (the endpoint, with its last entity)
  get_deployment, list_deployments(endpoint=None), deployment_status, wait_for_deployment
  model_uri: models:/NAME/VERSION or models:/NAME@ALIAS (Unity Catalog or workspace registry)
  config keys:
{_format_keys(DEPLOYMENT_CONFIG_KEYS)}

Scoring
  predict(endpoint=E, inputs={{...}})                     the whole endpoint
  predict(deployment_name=D, endpoint=E, inputs={{...}})  one served entity
  predict_stream(endpoint=E, inputs={{"messages": [...]}})  yields chunks (server-sent events)

Options (get_deploy_client(uri, **options))
  host, token, client_id, client_secret, azure_client_id, azure_client_secret, azure_tenant_id,
  auth_type, profile, config_file, headers (extra HTTP headers)
  wait (default true), wait_timeout (seconds, default 1200, env {WAIT_TIMEOUT_ENV}),
  poll_interval (seconds, default 2, env {POLL_INTERVAL_ENV}), max_poll_interval (default 30)
  timeout, predict_timeout, total_timeout, predict_total_timeout, connect_timeout, max_retries,
  backoff_factor, backoff_max, max_retry_after, retry_on_timeout, verify, pool_maxsize   HTTP settings
"""


def _format_keys(keys: Mapping[str, str]) -> str:
    return "\n".join(f"    {key:<22} {text}" for key, text in keys.items())
