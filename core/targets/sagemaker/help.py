"""The sagemaker target's module-level plugin functions: ``run_local`` and ``target_help``."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NoReturn

from ...errors import NotSupportedError
from .config import DELETE_CONFIG_KEYS, DEPLOYMENT_CONFIG_KEYS, IMAGE_URL_ENV
from .rollout import ROLLOUT_KEYS

__all__ = ["run_local", "target_help"]


def run_local(name: str, model_uri: str, flavor: str | None = None, config: dict[str, Any] | None = None) -> NoReturn:
    """Not offered: MLflow runs its SageMaker serving image in Docker for this, and deployflow does not
    drive Docker. The ``local`` target serves the same MLflow model on this machine."""
    raise NotSupportedError(
        "run_local is not supported by the sagemaker target: running MLflow's SageMaker serving image locally "
        "needs Docker. Serve the model on this machine with the 'local' target instead: "
        f"deployflow create -t local --name {name} --model-uri <model>"
    )


def target_help() -> str:
    return f"""Target 'sagemaker': MLflow models on Amazon SageMaker real-time endpoints (needs the 'sagemaker' extra:
pip install 'deployflow[sagemaker]'). A deployment is an endpoint of the same name.

URIs
  sagemaker                              region from the option region_name or the AWS chain, else us-west-2
  sagemaker:/REGION                      e.g. sagemaker:/eu-west-1
  sagemaker:/REGION/ROLE_ARN             every call runs as that role (credentials from STS, refreshed)

Options (get_deploy_client(uri, **options), or the Airflow connection's extra / the Prefect block)
  region_name, aws_access_key_id, aws_secret_access_key, aws_session_token, profile_name,
  assume_role_arn, endpoint_url (one URL, or {{"sagemaker": ..., "sagemaker-runtime": ..., "s3": ...,
  "sts": ..., "iam": ...}}); without keys or a profile, boto3's standard chain (AWS_* variables,
  ~/.aws, instance or container roles). Secrets never appear in messages, logs or repr(client.options).
  poll_interval (seconds, default 5, env DEPLOYFLOW_SAGEMAKER_POLL_INTERVAL), max_poll_interval (30)
  max_retries (boto3's standard retry mode: throttling, 5xx, dropped connections), timeout and
  predict_timeout (read timeouts), connect_timeout, pool_maxsize, verify, predict_total_timeout

create_deployment(name, model_uri, flavor=None, config={{...}})
  model_uri: an MLflow model directory (path or file://), s3://bucket/prefix, or with the 'mlflow'
  extra runs:/, models:/ ...; flavor: python_function (the one MLflow's serving image serves).
  Packs the directory as model.tar.gz to s3://BUCKET/<model name>/model.tar.gz, makes a SageMaker
  model, an endpoint config and the endpoint, and waits until InService (Failed: at once, with
  SageMaker's FailureReason). Exists already: ConflictError with mode create (the default); modes
  replace / add update it. Retried pipeline steps adopt (deployflow.ensure_deployment).
update_deployment(name, model_uri, config={{...}})
  A new model and endpoint config; mode replace (default) or add (traffic_percentage for the new
  variant). Waits until the endpoint is InService on the NEW config: back on the old one means
  SageMaker rolled the update back: DeploymentFailedError "... rolled back", with its reason.
  The replaced config and models are deleted only after the update settled (kept after a rollback,
  or with archive=true). An endpoint that failed to start is deleted and created again.
update_traffic(name, {{"variant-a": 90, "variant-b": 10}})   shift traffic between variants
delete_deployment(name, config={{...}})    idempotent; waits until gone; then (archive=false) deletes
  its configs, models and the S3 artefacts this client uploaded
get_deployment(name)                     name, state, reason, status, endpoint_config_name, variants
                                         (weights, traffic_percentage), model_uri, url, config, times
list_deployments()                       every endpoint of the region (every page)
deployment_status(name)                  Creating/Updating/SystemUpdating/RollingBack: PENDING;
                                         InService: READY (FAILED when back on the replaced config);
                                         Failed, OutOfService, UpdateRollbackFailed, Deleting: FAILED
predict(name, inputs, params=None)       sagemaker-runtime InvokeEndpoint with MLflow's scoring payloads
                                         (DataFrame -> dataframe_split, list -> inputs, dicts as given)
run_local                                not offered (needs Docker): use the 'local' target

Config keys of create_deployment / update_deployment (values may be CLI strings: -C archive=true)
{_format_keys(DEPLOYMENT_CONFIG_KEYS)}
  Unknown keys are refused with the list of known ones. image_url: when neither the key nor
  {IMAGE_URL_ENV} is set, run `mlflow sagemaker build-and-push-container` and use the image it pushes.

rollout (update_deployment; SageMaker's deployment guardrails; or SageMaker's own DeploymentConfig)
{_format_keys(ROLLOUT_KEYS)}
  e.g. -C rollout='{{"strategy": "canary", "canary_size": "10%", "wait_seconds": 600, "alarms": ["errors"]}}'

Config keys of delete_deployment
{_format_keys(DELETE_CONFIG_KEYS)}
"""


def _format_keys(keys: Mapping[str, str]) -> str:
    return "\n".join(f"    {key:<26} {text}" for key, text in keys.items())
