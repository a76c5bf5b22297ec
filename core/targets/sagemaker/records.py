"""Reading SageMaker's endpoint descriptions: the state of a deployment, and the small record
``get_deployment`` returns.

Every ``EndpointStatus`` has a :class:`~deployflow.Status`:

==========================  ==========  ==============================================================
EndpointStatus              state       reason
==========================  ==========  ==============================================================
Creating, Updating,         PENDING     the status
SystemUpdating
RollingBack                 PENDING     "rolling back a failed update", with SageMaker's FailureReason
InService                   READY       (on the endpoint config the client last asked for)
InService on the config     FAILED      "the update ... was rolled back", with SageMaker's reason
it replaced
Failed                      FAILED      SageMaker's FailureReason
OutOfService                FAILED      "out of service", with the FailureReason
UpdateRollbackFailed        FAILED      "the update failed and rolling it back failed too", ...
Deleting                    FAILED      "being deleted" (it will not serve again)
anything else               PENDING     the status: never READY
==========================  ==========  ==============================================================

The client tags each endpoint it creates or updates with the endpoint config it asked for
(:data:`DESIRED_CONFIG_TAG`) and, on an update, the config it replaced (:data:`PREVIOUS_CONFIG_TAG`):
an endpoint ``InService`` on the replaced config is an update SageMaker rolled back, whatever the
status word says. An endpoint ``InService`` on a third config was changed by someone else since, and
is READY (the reason says so).
"""

from __future__ import annotations

import datetime
from collections.abc import Mapping
from typing import Any

from ...status import State, Status

__all__ = [
    "DESIRED_CONFIG_TAG",
    "PREVIOUS_CONFIG_TAG",
    "MODEL_URI_TAG",
    "MODEL_DATA_TAG",
    "APP_NAME_TAG",
    "PENDING_STATUSES",
    "SETTLED_STATUSES",
    "status_of",
    "tag_map",
    "iso",
    "variant_records",
]

DESIRED_CONFIG_TAG = "deployflow:endpoint-config"
PREVIOUS_CONFIG_TAG = "deployflow:previous-endpoint-config"
#: MLflow's tag on the SageMaker model: the MLflow model URI it was made from.
MODEL_URI_TAG = "model_uri"
#: On a SageMaker model the client made: the ``s3://`` URL of the model.tar.gz it uploaded.
MODEL_DATA_TAG = "deployflow:model-data"
#: MLflow's tag on endpoint configs: the deployment (application) name.
APP_NAME_TAG = "app_name"

PENDING_STATUSES = frozenset({"Creating", "Updating", "SystemUpdating", "RollingBack"})
#: Statuses in which SageMaker takes a new update (or a delete).
SETTLED_STATUSES = frozenset({"InService", "Failed", "OutOfService", "UpdateRollbackFailed"})


def tag_map(tags: Any) -> dict[str, str]:
    """``[{"Key": k, "Value": v}, ...]`` as a dict (a later duplicate key wins)."""
    found: dict[str, str] = {}
    for tag in tags or []:
        if isinstance(tag, Mapping) and "Key" in tag:
            found[str(tag["Key"])] = str(tag.get("Value", ""))
    return found


def status_of(description: Mapping[str, Any], tags: Mapping[str, str] | None = None) -> Status:
    """The :class:`~deployflow.Status` of a ``DescribeEndpoint`` answer (the table in this module)."""
    status = str(description.get("EndpointStatus") or "")
    reason = str(description.get("FailureReason") or "").strip()
    config = str(description.get("EndpointConfigName") or "")
    tags = tags or {}
    desired = tags.get(DESIRED_CONFIG_TAG)
    previous = tags.get(PREVIOUS_CONFIG_TAG)
    because = f": {reason}" if reason else ""
    if status in ("Creating", "Updating", "SystemUpdating"):
        return Status(State.PENDING, reason=status, raw=description)
    if status == "RollingBack":
        return Status(State.PENDING, reason=f"RollingBack: rolling back a failed update{because}", raw=description)
    if status == "InService":
        if desired and config != desired:
            if config == previous or (previous is None and reason):
                return Status(
                    State.FAILED,
                    reason=(
                        f"the update to endpoint config {desired!r} was rolled back; the endpoint serves "
                        f"{config!r} again{because or ': SageMaker gave no reason'}"
                    ),
                    raw=description,
                )
            return Status(
                State.READY,
                reason=f"serving endpoint config {config!r}, not {desired!r} (changed since, outside this client)",
                raw=description,
            )
        return Status(State.READY, raw=description)
    if status == "Failed":
        return Status(State.FAILED, reason=reason or "Failed (SageMaker gave no reason)", raw=description)
    if status == "OutOfService":
        return Status(State.FAILED, reason=f"OutOfService: the endpoint is out of service{because}", raw=description)
    if status == "UpdateRollbackFailed":
        return Status(
            State.FAILED,
            reason=(
                "UpdateRollbackFailed: the update failed and rolling it back failed too; the endpoint may serve "
                f"a mix of the old and new configs{because}"
            ),
            raw=description,
        )
    if status == "Deleting":
        return Status(State.FAILED, reason="Deleting: the endpoint is being deleted", raw=description)
    return Status(State.PENDING, reason=f"{status or 'no status'} (not a status deployflow knows)", raw=description)


def iso(value: Any) -> str | None:
    """A time from boto3 (a ``datetime``) as ISO-8601 text."""
    if isinstance(value, datetime.datetime):
        return value.isoformat()
    return None if value is None else str(value)


def variant_records(
    config_variants: list[Mapping[str, Any]], live_variants: list[Mapping[str, Any]], model_uris: Mapping[str, str | None]
) -> list[dict[str, Any]]:
    """The production variants of an endpoint: the config's settings, the endpoint's live weights and
    instance counts, and each variant's share of traffic in percent."""
    live = {str(item.get("VariantName")): item for item in live_variants or []}
    rows: list[dict[str, Any]] = []
    for variant in config_variants or []:
        name = str(variant.get("VariantName"))
        now = live.get(name, {})
        weight = now.get("CurrentWeight", variant.get("InitialVariantWeight", 1.0))
        row: dict[str, Any] = {
            "name": name,
            "model_name": variant.get("ModelName"),
            "model_uri": model_uris.get(str(variant.get("ModelName"))),
            "weight": float(weight or 0.0),
            "desired_weight": float(now.get("DesiredWeight", weight) or 0.0),
        }
        if variant.get("ServerlessConfig"):
            row["serverless_config"] = dict(variant["ServerlessConfig"])
        else:
            row["instance_type"] = variant.get("InstanceType")
            row["instance_count"] = now.get("CurrentInstanceCount", variant.get("InitialInstanceCount"))
        rows.append(row)
    total = sum(row["weight"] for row in rows)
    for row in rows:
        row["traffic_percentage"] = round(100.0 * row["weight"] / total, 3) if total > 0 else 0.0
    return rows
