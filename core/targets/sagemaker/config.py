"""The ``config`` of create_deployment, update_deployment and delete_deployment, read as MLflow's SageMaker
client reads it, without its mistakes.

The keys and defaults are MLflow's (:data:`DEPLOYMENT_CONFIG_KEYS`, :data:`DELETE_CONFIG_KEYS`), plus
deployflow's ``wait`` / ``wait_timeout`` (the step keys every target shares, the same as ``synchronous``
/ ``timeout_seconds``), ``traffic_percentage`` (mode ``add``) and ``rollout`` (update guardrails, see
:mod:`.rollout`). Values may be the strings the CLI sends (``-C archive=true``, ``-C instance_count=2``,
``-C env='{"A": "1"}'``):

* booleans are read with :func:`deployflow.retry.as_bool` ("true", "True", "1", "yes" are true;
  "false", "0", "no" are false; anything else is refused), where MLflow takes only "True" as true;
* whole numbers and seconds are read as numbers or their text; dicts as dicts or JSON objects;
* a key that is not known is refused with the list of known keys (MLflow ignores it, so its own
  documented ``bucket_name`` does nothing); an empty string or ``None`` means "not given".

Combinations that cannot work are refused before anything is created: ``mode=create`` in an update,
``traffic_percentage`` outside mode ``add``, ``serverless_config`` with ``instance_type`` or
``instance_count``, a rollout with mode ``add`` or a serverless endpoint, conflicting values of a key
and its alias (``wait`` and ``synchronous``).
"""

from __future__ import annotations

import difflib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ...errors import InvalidInputError
from ...retry import as_bool, as_int, as_number
from . import rollout as rollouts

__all__ = [
    "DEPLOYMENT_CONFIG_KEYS",
    "DELETE_CONFIG_KEYS",
    "DEFAULT_INSTANCE_TYPE",
    "DEFAULT_TIMEOUT_SECONDS",
    "DEFAULT_DELETE_TIMEOUT_SECONDS",
    "IMAGE_URL_ENV",
    "DeploymentSettings",
    "DeleteSettings",
    "deployment_settings",
    "delete_settings",
]

DEFAULT_INSTANCE_TYPE = "ml.m4.xlarge"
#: What MLflow's code waits (its docs say 300).
DEFAULT_TIMEOUT_SECONDS = 1200.0
DEFAULT_DELETE_TIMEOUT_SECONDS = 300.0
#: The environment variable MLflow reads the serving image's URL from.
IMAGE_URL_ENV = "MLFLOW_SAGEMAKER_DEPLOY_IMG_URL"
#: Tag keys the client sets itself (``app_name`` is MLflow's).
RESERVED_TAG = "app_name"

#: create_deployment / update_deployment config keys, with what they mean.
DEPLOYMENT_CONFIG_KEYS: dict[str, str] = {
    "execution_role_arn": "IAM role SageMaker runs the model as (default: the caller's role)",
    "bucket": "S3 bucket for model.tar.gz (default mlflow-sagemaker-<region>-<account>, made if missing)",
    "image_url": f"ECR URL of MLflow's serving image (default ${IMAGE_URL_ENV})",
    "region_name": "region of this deployment (default: the client's)",
    "assume_role_arn": "must be the client's role, if given (another role needs another client)",
    "archive": "keep replaced endpoint configs and models (default false: deleted once the update settled)",
    "instance_type": f"instance type (default {DEFAULT_INSTANCE_TYPE})",
    "instance_count": "number of instances (default 1)",
    "vpc_config": "the model's VpcConfig (SecurityGroupIds, Subnets)",
    "data_capture_config": "the endpoint config's DataCaptureConfig",
    "variant_name": "the new production variant's name (default: the new model's name)",
    "env": "environment variables of the model server (dict)",
    "tags": "tags of the endpoint and the model (dict)",
    "synchronous": "wait until the deployment serves (default true)",
    "wait": "the same as synchronous",
    "timeout_seconds": f"seconds to wait, one deadline (default {DEFAULT_TIMEOUT_SECONDS:g})",
    "wait_timeout": "the same as timeout_seconds",
    "async_inference_config": "the endpoint config's AsyncInferenceConfig",
    "serverless_config": "the variant's ServerlessConfig (MemorySizeInMB, MaxConcurrency) instead of instances",
    "mode": "create (create_deployment's default), replace (update_deployment's default) or add",
    "traffic_percentage": "mode add: the new variant's share of traffic, 0-100 (default 0)",
    "rollout": "update_deployment: how traffic moves (deployment guardrails; see below)",
}
#: delete_deployment config keys.
DELETE_CONFIG_KEYS: dict[str, str] = {
    "region_name": "region of the deployment (default: the client's)",
    "assume_role_arn": "must be the client's role, if given",
    "archive": "keep the endpoint configs, models and S3 artefacts (default false)",
    "synchronous": "wait until the endpoint is gone (default true)",
    "wait": "the same as synchronous",
    "timeout_seconds": f"seconds to wait (default {DEFAULT_DELETE_TIMEOUT_SECONDS:g})",
    "wait_timeout": "the same as timeout_seconds",
}
MODES = ("create", "add", "replace")
_ALIASES = {"wait": "synchronous", "wait_timeout": "timeout_seconds"}
_DICT_KEYS = ("vpc_config", "data_capture_config", "async_inference_config", "serverless_config")
_NAME = re.compile(r"^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}$")
_INSTANCE_TYPE = re.compile(r"^ml\.[a-z0-9-]+\.[a-z0-9]+$")


@dataclass(frozen=True)
class DeploymentSettings:
    """A create or update config, checked and converted. ``given`` holds the keys the caller set."""

    mode: str
    execution_role_arn: str | None = None
    bucket: str | None = None
    image_url: str | None = None
    region_name: str | None = None
    assume_role_arn: str | None = None
    archive: bool = False
    instance_type: str = DEFAULT_INSTANCE_TYPE
    instance_count: int = 1
    vpc_config: dict[str, Any] | None = None
    data_capture_config: dict[str, Any] | None = None
    variant_name: str | None = None
    env: dict[str, str] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)
    synchronous: bool = True
    timeout_seconds: float = DEFAULT_TIMEOUT_SECONDS
    async_inference_config: dict[str, Any] | None = None
    serverless_config: dict[str, Any] | None = None
    traffic_percentage: float | None = None
    rollout: dict[str, Any] | None = None
    given: frozenset[str] = frozenset()


@dataclass(frozen=True)
class DeleteSettings:
    """A delete config, checked and converted."""

    region_name: str | None = None
    assume_role_arn: str | None = None
    archive: bool = False
    synchronous: bool = True
    timeout_seconds: float = DEFAULT_DELETE_TIMEOUT_SECONDS


def deployment_settings(config: Mapping[str, Any] | None, *, operation: str) -> DeploymentSettings:
    """Check and convert the config of ``operation`` (``"create"`` or ``"update"``)."""
    values = _merged(config, DEPLOYMENT_CONFIG_KEYS, f"a SageMaker {operation}")
    mode = str(values.pop("mode", "create" if operation == "create" else "replace")).strip().lower()
    if mode not in MODES:
        raise InvalidInputError(f"config 'mode' must be one of {', '.join(MODES)}, got {mode!r}")
    if operation == "update" and mode == "create":
        raise InvalidInputError(
            "mode 'create' cannot update an existing deployment; use 'replace' (the default) or 'add'"
        )
    out: dict[str, Any] = {"mode": mode, "given": frozenset(values)}
    for key in ("execution_role_arn", "bucket", "image_url", "instance_type", "variant_name"):
        if key in values:
            out[key] = _text(values[key], key)
    out.update(_common(values))
    if "instance_type" in out and not _INSTANCE_TYPE.match(out["instance_type"]):
        raise InvalidInputError(f"config 'instance_type' must be a SageMaker instance type such as 'ml.m5.large', got {out['instance_type']!r}")
    if "variant_name" in out and not _NAME.match(out["variant_name"]):
        raise InvalidInputError(
            f"config 'variant_name' must be 1-63 letters, digits and '-' (starting with a letter or digit), "
            f"got {out['variant_name']!r}"
        )
    if "instance_count" in values:
        out["instance_count"] = as_int(values["instance_count"], "config 'instance_count'", minimum=1)
    for key in _DICT_KEYS:
        if key in values:
            out[key] = _json_object(values[key], key) or None
    if "env" in values:
        out["env"] = _string_map(values["env"], "env")
    if "tags" in values:
        out["tags"] = _tags(values["tags"])
    if "traffic_percentage" in values:
        share = as_number(values["traffic_percentage"], "config 'traffic_percentage'", positive=False)
        if share > 100:
            raise InvalidInputError(f"config 'traffic_percentage' must be from 0 to 100, got {values['traffic_percentage']!r}")
        if mode != "add":
            raise InvalidInputError("config 'traffic_percentage' applies to mode 'add' (mode 'replace' sends all traffic to the new model)")
        out["traffic_percentage"] = share
    if out.get("serverless_config") and ({"instance_type", "instance_count"} & set(values)):
        raise InvalidInputError("config 'serverless_config' replaces instances: leave out instance_type and instance_count")
    if "rollout" in values:
        out["rollout"] = rollouts.deployment_config(values["rollout"])
        if mode == "add":
            raise InvalidInputError(
                "config 'rollout' replaces the endpoint's variant in place; mode 'add' adds a variant (use 'replace')"
            )
        if out.get("serverless_config"):
            raise InvalidInputError("SageMaker's deployment guardrails (config 'rollout') do not apply to serverless endpoints")
    return DeploymentSettings(**out)


def delete_settings(config: Mapping[str, Any] | None) -> DeleteSettings:
    """Check and convert a delete_deployment config."""
    values = _merged(config, DELETE_CONFIG_KEYS, "a SageMaker delete")
    return DeleteSettings(**_common(values))


def _common(values: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key in ("region_name", "assume_role_arn"):
        if key in values:
            out[key] = _text(values[key], key)
    for key in ("archive", "synchronous"):
        if key in values:
            out[key] = as_bool(values[key], f"config {key!r}")
    if "timeout_seconds" in values:
        out["timeout_seconds"] = as_number(values["timeout_seconds"], "config 'timeout_seconds'", positive=False)
    return out


def _merged(config: Mapping[str, Any] | None, known: Mapping[str, str], what: str) -> dict[str, Any]:
    """The given keys (empty values dropped), aliases folded into MLflow's names, unknown keys refused."""
    if config is None:
        return {}
    if not isinstance(config, Mapping):
        raise InvalidInputError(f"config must be a dict, got {type(config).__name__}")
    unknown = sorted(str(key) for key in config if key not in known)
    if unknown:
        hints = []
        for key in unknown:
            close = difflib.get_close_matches(key, list(known), n=1)
            if close:
                hints.append(f"{key!r}: did you mean {close[0]!r}?")
        hint = f" ({'; '.join(hints)})" if hints else ""
        raise InvalidInputError(
            f"Unknown config key(s) for {what}: {', '.join(unknown)}{hint}. Known keys: {', '.join(sorted(known))}"
        )
    values = {key: value for key, value in config.items() if value is not None and value != ""}
    for alias, name in _ALIASES.items():
        if alias in values:
            value = values.pop(alias)
            if name in values and not _same(name, values[name], value):
                raise InvalidInputError(f"config {alias!r} and {name!r} say different things ({value!r}, {values[name]!r}); give one")
            values.setdefault(name, value)
    return values


def _same(name: str, one: Any, other: Any) -> bool:
    if name == "synchronous":
        return as_bool(one, f"config {name!r}") == as_bool(other, f"config {name!r}")
    return as_number(one, f"config {name!r}", positive=False) == as_number(other, f"config {name!r}", positive=False)


def _text(value: Any, key: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise InvalidInputError(f"config {key!r} must be a non-empty string, got {value!r}")
    return value.strip()


def _json_object(value: Any, key: str) -> dict[str, Any]:
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError as error:
            raise InvalidInputError(f"config {key!r} must be a dict or a JSON object, got {value!r} ({error})") from None
    if not isinstance(value, Mapping):
        raise InvalidInputError(f"config {key!r} must be a dict or a JSON object, got {type(value).__name__}")
    return dict(value)


def _string_map(value: Any, key: str) -> dict[str, str]:
    """A dict whose values SageMaker takes as strings: booleans become "true"/"false", numbers their text."""
    found = {}
    for name, item in _json_object(value, key).items():
        if isinstance(item, bool):
            item = "true" if item else "false"
        elif isinstance(item, (int, float)):
            item = str(item)
        if not isinstance(item, str):
            raise InvalidInputError(f"config {key!r}: the value of {name!r} must be a string, number or boolean, got {item!r}")
        found[str(name)] = item
    return found


def _tags(value: Any) -> dict[str, str]:
    tags = _string_map(value, "tags")
    for name, item in tags.items():
        if name == RESERVED_TAG or name.startswith(("aws:", "deployflow:")):
            raise InvalidInputError(f"config 'tags': the tag {name!r} is set by the client itself; choose another key")
        if not 1 <= len(name) <= 128 or len(item) > 256:
            raise InvalidInputError(f"config 'tags': keys are 1-128 characters and values at most 256 ({name!r})")
    return tags
