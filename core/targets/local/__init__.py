"""The built-in ``local`` target: models served by processes on this machine.

Each deployment is a scoring-server process (MLflow's protocol on ``/invocations``); each endpoint is a
small router process that splits traffic over deployments. State lives in a directory on disk, so any
process on the machine can list, score, update and delete what another created::

    from deployflow import get_deploy_client

    client = get_deploy_client("local")                # or "local:///abs/state/dir"
    client.create_deployment("iris", "python:mypkg.models:iris")
    client.predict("iris", {"inputs": [[5.1, 3.5, 1.4, 0.2]]})
    client.delete_deployment("iris")

Importing this package starts nothing and imports neither uvicorn nor aiohttp.
"""

from __future__ import annotations

import os
import tempfile
from typing import Any

from .client import HOME_ENV, LocalDeploymentClient, server_spec
from .config import DEPLOYMENT_KEYS, ENDPOINT_KEYS, check_name, deployment_config

__all__ = ["LocalDeploymentClient", "run_local", "target_help"]


def run_local(name: str, model_uri: str, flavor: str | None = None, config: dict[str, Any] | None = None) -> None:
    """Serve ``model_uri`` in this process, in the foreground, until Ctrl-C or SIGTERM.

    Takes the same config keys as ``create_deployment`` (``wait`` and ``startup_timeout`` do not apply).
    Nothing is recorded in the state directory: this is for trying a model out, not for deploying it.
    """
    from .client import _check_model, _normalized_model_uri
    from .server import serve

    check_name(name)
    model_uri = _normalized_model_uri(model_uri)
    flavor = _check_model(model_uri, flavor)
    settings = deployment_config(config)
    token = settings.pop("auth_token")
    with tempfile.TemporaryDirectory(prefix="deployflow-run-local-") as directory:
        spec = server_spec(name, model_uri, flavor, settings, os.path.join(directory, "ready.json"))
        serve(spec, auth_token=token)


def _keys_help(keys: dict[str, Any]) -> str:
    return "\n".join(f"    {name:<18} {key.help}" for name, key in keys.items())


def target_help() -> str:
    """What the ``local`` target accepts: URI forms, client options, config keys, endpoints."""
    return f"""\
Target 'local': each deployment is a scoring-server process on this machine (MLflow scoring protocol:
GET /ping, /health, /version; POST /invocations), each endpoint a router process that splits traffic.

Target URIs:
    local                       state directory from option 'home', else ${HOME_ENV}, else ~/.deployflow
    local:///absolute/dir       state directory /absolute/dir

Client options (get_deploy_client("local", **options)):
    home                        the state directory (same as the URI form)
    auth_token                  bearer token sent to servers that require one
    timeout, connect_timeout, predict_timeout, total_timeout, predict_total_timeout, pool_maxsize,
    max_retries, backoff_factor, backoff_max, max_retry_after, retry_on_timeout, verify
                                HTTP settings (seconds / counts), see deployflow.transport.HttpSettings
Unknown options are an error.

Deployment config keys (create_deployment / update_deployment; "-C key=value" text is converted):
{_keys_help(DEPLOYMENT_KEYS)}
  update_deployment keeps the keys it is not given and switches without downtime: the new server
  starts beside the old one, then the state and every endpoint move to it, then the old one stops
  after finishing its requests (with a fixed port equal to the current one there is a gap). It waits
  for the switch unless given wait=false, which returns once the new server is starting.
  delete_deployment takes only stop_timeout; it refuses (conflict) while an endpoint sends traffic to
  the deployment.

Endpoint config keys (create_endpoint; update_endpoint changes only routes and wait):
{_keys_help(ENDPOINT_KEYS)}
  create_deployment(..., endpoint=E) adds a 0% route to an existing endpoint E (shift traffic with
  update_endpoint), or creates E routing 100% to the new deployment. Deleting an endpoint stops its
  router; its deployments keep running. update_endpoint starts a router that had stopped again. An endpoint is READY when its router answers and every
  deployment it sends traffic to is READY.

predict(name | endpoint=E, inputs): inputs as deployflow.payloads.encode_request takes them (DataFrame,
array, list, or a dict in protocol form). To pass model params use the protocol form:
    {{"inputs": [[1, 2]], "params": {{"k": 3}}}}

Who can reach what: scoring is open on loopback (the default host), as with `mlflow models serve`;
another host needs auth_token (deployments) or allow_unauthenticated=true (logged at WARNING).
A router's /-/routes, /-/reload and /metrics need its control secret: the file control.secret (mode
0600) in the router's directory under the state directory. GET /metrics (Prometheus text) on servers
needs the deployment's token when it has one. Loading a pickle, joblib or python: model runs its code:
serve only models you trust, and treat a templated model_uri as code execution.

Overload: past max_queue requests (or max_queued_bytes of bodies) a process answers 503 with
Retry-After; slow headers, bodies and idle connections are closed (header_timeout, body_timeout,
keepalive_timeout); past limit_concurrency connections uvicorn answers 503.

States: PENDING (starting or being updated), READY (serving), FAILED (the process exited or was
killed; the reason names the pid and the log file; or its last update failed, while the previous
server keeps serving, until an update succeeds). run_local(name, model_uri) serves in the
foreground without recording anything.
"""
