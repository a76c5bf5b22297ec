"""The ``sagemaker`` target: MLflow models on Amazon SageMaker real-time endpoints, through boto3.

URIs: ``sagemaker``, ``sagemaker:/<region>``, ``sagemaker:/<region>/<role-arn>``, as MLflow's SageMaker
client reads them. Everything that client does, with its config keys and defaults, and what it gets
wrong done right: booleans read from CLI strings, unknown config keys refused, botocore errors
translated into deployflow's error tree, an idempotent delete that waits and cleans up, a listing that
reads every page, traffic shifted for mode ``add``, update guardrails (canary, linear, rolling, alarms)
and an update SageMaker rolled back reported as FAILED, never as ready.

Modules: :mod:`.connection` (the URI, the boto3 session, the one call path), :mod:`.faults` (botocore's
errors translated), :mod:`.config` and :mod:`.rollout` (the config keys), :mod:`.packaging` (the MLflow
model directory and model.tar.gz), :mod:`.resources` (S3 artefacts, models, endpoint configs),
:mod:`.records` (states and records), :mod:`.client` (the client), :mod:`.help` (``run_local``,
``target_help``).

boto3 is imported when the client first talks to AWS, never when this package is imported.
"""

from __future__ import annotations

from .client import SageMakerDeploymentClient
from .connection import SageMakerURI, parse_target_uri
from .help import run_local, target_help
from .records import status_of

__all__ = ["SageMakerDeploymentClient", "SageMakerURI", "parse_target_uri", "status_of", "run_local", "target_help"]
