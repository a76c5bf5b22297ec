"""The SageMaker and S3 resources behind a deployment: the S3 artefact, the model, the endpoint config, the
endpoint's tags; made and removed here, through the client's one :class:`AwsConnection`.

* The model artefact goes to ``s3://<bucket>/<model name>/model.tar.gz``, tagged ``SageMaker=true`` (what
  SageMaker's managed execution policies let the service read). The default bucket is MLflow's
  ``mlflow-sagemaker-<region>-<account>``, made in the deployment's region when it does not exist.
* A model's container environment is what MLflow's serving image reads (``MLFLOW_DEPLOYMENT_FLAVOR_NAME``,
  ``SERVING_ENVIRONMENT=SageMaker``, the proxy variables of this process) plus the config's ``env``; its
  tags are the config's ``tags``, ``model_uri`` (MLflow's tag, continued in ``deployflow:model_uri:<n>``
  tags past 256 characters) and ``deployflow:model-data`` (the artefact this client uploaded, the only
  one a clean-up deletes).
* Removing what does not exist is not an error.
"""

from __future__ import annotations

import os
import re
import tempfile
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ...errors import AuthenticationError, ConflictError, InvalidInputError, NotFoundError
from ...redaction import get_logger
from .connection import AwsConnection
from .packaging import ModelDirectory, make_archive, split_s3_url, unique_name
from .records import APP_NAME_TAG, MODEL_DATA_TAG, MODEL_URI_TAG, tag_map

__all__ = ["Resources", "MadeModel", "DEFAULT_BUCKET_PREFIX", "uri_tags", "uri_from_tags"]

logger = get_logger(__name__)

DEFAULT_BUCKET_PREFIX = "mlflow-sagemaker"
_URI_PIECE = 256
_URI_PIECES = 8
_ASSUMED_ROLE = re.compile(r"^arn:(aws[a-z-]*):sts::(\d{12}):assumed-role/([^/]+)/")
_PROXY_VARIABLES = ("http_proxy", "https_proxy", "no_proxy")


@dataclass(frozen=True)
class MadeModel:
    """A SageMaker model this client made, and the artefact it uploaded for it."""

    name: str
    data_url: str


def uri_tags(model_uri: str) -> list[dict[str, str]]:
    """The tags recording ``model_uri``: ``model_uri`` (MLflow's key) with the first 256 characters, then
    ``deployflow:model_uri:2`` ... for the rest (up to 2,048 characters; a longer URI is not recorded)."""
    if len(model_uri) > _URI_PIECE * _URI_PIECES:
        logger.warning("The model URI is longer than %d characters; it is not recorded on the model", _URI_PIECE * _URI_PIECES)
        return []
    pieces = [model_uri[start : start + _URI_PIECE] for start in range(0, len(model_uri), _URI_PIECE)]
    return [
        {"Key": MODEL_URI_TAG if number == 1 else f"deployflow:model_uri:{number}", "Value": piece}
        for number, piece in enumerate(pieces, start=1)
    ]


def uri_from_tags(tags: Mapping[str, str]) -> str | None:
    """The model URI recorded by :func:`uri_tags` (or by MLflow), or ``None``."""
    first = tags.get(MODEL_URI_TAG)
    if first is None:
        return None
    parts = [first]
    for number in range(2, _URI_PIECES + 1):
        piece = tags.get(f"deployflow:model_uri:{number}")
        if piece is None:
            break
        parts.append(piece)
    return "".join(parts)


class Resources:
    """Making and removing the resources of deployments, in one region per call."""

    def __init__(self, connection: AwsConnection) -> None:
        self.aws = connection
        self._lock = threading.Lock()
        self._buckets: dict[str, str] = {}
        self._role: str | None = None

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_lock"] = None
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()

    def sagemaker(self, operation: str, region: str, **params: Any) -> Any:
        return self.aws.call("sagemaker", operation, region=region, **params)

    # -- reading --------------------------------------------------------------------------------------

    def describe_endpoint(self, name: str, region: str) -> dict[str, Any] | None:
        """``DescribeEndpoint``, or ``None`` when there is no such endpoint."""
        try:
            return self.sagemaker("describe_endpoint", region, EndpointName=name)
        except NotFoundError:
            return None

    def describe_config(self, name: str, region: str) -> dict[str, Any] | None:
        try:
            return self.sagemaker("describe_endpoint_config", region, EndpointConfigName=name)
        except NotFoundError:
            return None

    def describe_model(self, name: str, region: str) -> dict[str, Any] | None:
        try:
            return self.sagemaker("describe_model", region, ModelName=name)
        except NotFoundError:
            return None

    def tags(self, arn: str, region: str) -> dict[str, str]:
        """Every tag of a SageMaker resource (all pages)."""
        found: list[Any] = []
        token = None
        while True:
            params: dict[str, Any] = {"ResourceArn": arn, "MaxResults": 100}
            if token:
                params["NextToken"] = token
            answer = self.sagemaker("list_tags", region, **params)
            found.extend(answer.get("Tags") or [])
            token = answer.get("NextToken")
            if not token:
                return tag_map(found)

    def set_tags(self, arn: str, tags: Mapping[str, str], region: str) -> None:
        if tags:
            self.sagemaker("add_tags", region, ResourceArn=arn, Tags=[{"Key": key, "Value": value} for key, value in tags.items()])

    # -- who runs the calls ------------------------------------------------------------------------------

    def execution_role(self) -> str:
        """The caller's own role, as the role SageMaker runs models as (MLflow's default).

        Raises :class:`InvalidInputError` when the caller is not an assumed role (an IAM user has no role
        to hand over): config ``execution_role_arn`` is needed then."""
        if self._role is not None:
            return self._role
        arn = self.aws.identity()["Arn"]
        match = _ASSUMED_ROLE.match(arn)
        if not match:
            raise InvalidInputError(
                f"config 'execution_role_arn' is needed: the caller ({arn}) is not an assumed IAM role, so there "
                "is no role to give SageMaker; pass the ARN of a role SageMaker may assume "
                "(arn:aws:iam::<account>:role/<name>)"
            )
        partition, account, role_name = match.groups()
        try:
            role = str(self.aws.call("iam", "get_role", RoleName=role_name)["Role"]["Arn"])
        except (AuthenticationError, NotFoundError):
            role = f"arn:{partition}:iam::{account}:role/{role_name}"  # a role with a path needs the config key
        logger.info("SageMaker will run models as the caller's role %s", role)
        self._role = role
        return role

    # -- S3 ----------------------------------------------------------------------------------------------

    def default_bucket(self, region: str) -> str:
        """``mlflow-sagemaker-<region>-<account>``, made in ``region`` when missing."""
        with self._lock:
            if region in self._buckets:
                return self._buckets[region]
        account = self.aws.identity()["Account"]
        bucket = f"{DEFAULT_BUCKET_PREFIX}-{region}-{account}"
        try:
            self.aws.call("s3", "head_bucket", region=region, Bucket=bucket)
        except NotFoundError:
            logger.info("Making the S3 bucket %s for model artefacts", bucket)
            params: dict[str, Any] = {"Bucket": bucket}
            if region != "us-east-1":  # S3 refuses the constraint in us-east-1, and needs it elsewhere
                params["CreateBucketConfiguration"] = {"LocationConstraint": region}
            try:
                self.aws.call("s3", "create_bucket", region=region, **params)
            except ConflictError as error:
                if getattr(error, "aws_code", "") != "BucketAlreadyOwnedByYou":
                    raise
        except AuthenticationError as error:
            raise AuthenticationError(
                f"The default S3 bucket {bucket} cannot be used with these credentials ({error}); name a bucket "
                "with config 'bucket'"
            ) from error
        with self._lock:
            self._buckets[region] = bucket
        return bucket

    def upload(self, model: ModelDirectory, bucket: str, key: str, region: str) -> str:
        """Pack ``model`` as model.tar.gz and put it at ``s3://bucket/key``; returns that URL."""
        with tempfile.TemporaryDirectory(prefix="deployflow-sagemaker-") as scratch:
            archive = make_archive(model.path, Path(scratch) / "model.tar.gz")
            logger.info("Uploading %s (%d bytes) to s3://%s/%s", model.path, archive.stat().st_size, bucket, key)
            self.aws.call(
                "s3", "upload_file", region=region, Filename=str(archive), Bucket=bucket, Key=key,
                ExtraArgs={"Tagging": "SageMaker=true"},
            )
        return f"s3://{bucket}/{key}"

    def download(self, url: str, target: Path) -> None:
        """Copy every object under ``s3://bucket/prefix`` into ``target`` (the prefix's directory)."""
        bucket, prefix = split_s3_url(url)
        prefix = prefix.rstrip("/") + "/" if prefix else ""
        region = self.aws.region
        token = None
        count = 0
        while True:
            params: dict[str, Any] = {"Bucket": bucket, "Prefix": prefix}
            if token:
                params["ContinuationToken"] = token
            answer = self.aws.call("s3", "list_objects_v2", region=region, **params)
            for item in answer.get("Contents") or []:
                key = str(item["Key"])
                relative = key[len(prefix):]
                if not relative or relative.endswith("/"):
                    continue
                destination = (target / relative).resolve()
                if target.resolve() not in destination.parents:
                    raise InvalidInputError(f"The S3 key {key!r} would be written outside the model directory")
                destination.parent.mkdir(parents=True, exist_ok=True)
                self.aws.call("s3", "download_file", region=region, Bucket=bucket, Key=key, Filename=str(destination))
                count += 1
            token = answer.get("NextContinuationToken")
            if not answer.get("IsTruncated") or not token:
                break
        if count == 0:
            raise NotFoundError(f"Nothing is stored under {url}: model_uri must name an MLflow model directory")

    def delete_object(self, url: str, region: str) -> None:
        bucket, key = split_s3_url(url)
        try:
            self.aws.call("s3", "delete_object", region=region, Bucket=bucket, Key=key)
        except NotFoundError:
            pass

    # -- models and endpoint configs ---------------------------------------------------------------------

    def make_model(
        self,
        deployment: str,
        model: ModelDirectory,
        *,
        model_uri: str,
        image_url: str,
        role: str,
        bucket: str,
        env: Mapping[str, str],
        tags: Mapping[str, str],
        vpc_config: Mapping[str, Any] | None,
        region: str,
    ) -> MadeModel:
        """Upload ``model`` and make a SageMaker model for it (the artefact is removed again if that fails)."""
        name = unique_name(deployment, "model")
        data_url = self.upload(model, bucket, f"{name}/model.tar.gz", region)
        environment = {"MLFLOW_DEPLOYMENT_FLAVOR_NAME": model.flavor, "SERVING_ENVIRONMENT": "SageMaker"}
        environment.update({key: os.environ[key] for key in _PROXY_VARIABLES if os.environ.get(key)})
        environment.update(env)
        params: dict[str, Any] = {
            "ModelName": name,
            "PrimaryContainer": {"Image": image_url, "ModelDataUrl": data_url, "Environment": environment},
            "ExecutionRoleArn": role,
            "Tags": [{"Key": key, "Value": value} for key, value in tags.items()]
            + uri_tags(model_uri)
            + [{"Key": MODEL_DATA_TAG, "Value": data_url}],
        }
        if vpc_config:
            params["VpcConfig"] = dict(vpc_config)
        try:
            self.sagemaker("create_model", region, **params)
        except Exception:
            self.delete_object(data_url, region)
            raise
        logger.info("Made SageMaker model %s from %s", name, model_uri)
        return MadeModel(name=name, data_url=data_url)

    def make_config(
        self,
        deployment: str,
        variants: list[dict[str, Any]],
        *,
        async_inference_config: Mapping[str, Any] | None,
        data_capture_config: Mapping[str, Any] | None,
        region: str,
    ) -> str:
        """Make an endpoint config with ``variants``; returns its name."""
        name = unique_name(deployment, "config")
        params: dict[str, Any] = {
            "EndpointConfigName": name,
            "ProductionVariants": variants,
            "Tags": [{"Key": APP_NAME_TAG, "Value": deployment}],
        }
        if async_inference_config:
            params["AsyncInferenceConfig"] = dict(async_inference_config)
        if data_capture_config:
            params["DataCaptureConfig"] = dict(data_capture_config)
        self.sagemaker("create_endpoint_config", region, **params)
        logger.info("Made endpoint config %s", name)
        return name

    def delete_model(self, name: str, region: str) -> None:
        """Delete SageMaker model ``name`` and, when this client uploaded it, its artefact."""
        described = self.describe_model(name, region)
        if described is None:
            return
        uploaded = self.tags(str(described["ModelArn"]), region).get(MODEL_DATA_TAG)
        try:
            self.sagemaker("delete_model", region, ModelName=name)
        except NotFoundError:
            pass
        data_url = (described.get("PrimaryContainer") or {}).get("ModelDataUrl")
        if uploaded and uploaded == data_url:
            self.delete_object(uploaded, region)
        logger.info("Deleted SageMaker model %s", name)

    def discard(self, made: MadeModel | None, config: str | None, region: str) -> None:
        """Best-effort removal of what a failed create or update made (failures are logged, not raised)."""
        try:
            if config:
                self.delete_config(config, region, models=False)
            if made is not None:
                self.delete_model(made.name, region)
        except Exception as error:  # the original failure matters more
            logger.warning("Could not remove what the failed change made (%s): %s", made.name if made else config, error)

    def delete_config(self, name: str, region: str, *, models: bool) -> None:
        """Delete endpoint config ``name`` and, with ``models``, the models its variants use."""
        described = self.describe_config(name, region)
        if described is None:
            return
        try:
            self.sagemaker("delete_endpoint_config", region, EndpointConfigName=name)
        except NotFoundError:
            pass
        logger.info("Deleted endpoint config %s", name)
        if models:
            for model_name in dict.fromkeys(str(v["ModelName"]) for v in described.get("ProductionVariants") or []):
                self.delete_model(model_name, region)
