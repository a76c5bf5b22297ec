"""The sagemaker target's client: MLflow models on SageMaker real-time endpoints, one endpoint per
deployment (the deployment's name is the endpoint's)."""

from __future__ import annotations

import contextlib
import contextvars
import os
import re
from collections.abc import Iterator, Mapping
from typing import Any

from ..._extras import install_command
from ...base import BaseDeploymentClient
from ...errors import (
    ConflictError,
    DeploymentFailedError,
    InvalidInputError,
    MissingExtraError,
    NotFoundError,
)
from ...payloads import decode_response, encode_request
from ...predictions import PredictionsResponse
from ...redaction import get_logger, redact
from ...retry import as_number, operation
from ...status import State, Status
from ...transport import HttpSettings
from ...waiting import WaitPlan, wait_until_ready
from . import records
from .config import (
    DeleteSettings,
    DeploymentSettings,
    IMAGE_URL_ENV,
    delete_settings,
    deployment_settings,
)
from .connection import AwsConnection, parse_target_uri
from .packaging import PYFUNC, local_model, normal_model_uri
from .records import DESIRED_CONFIG_TAG, PREVIOUS_CONFIG_TAG, status_of
from .resources import MadeModel, Resources, uri_from_tags

__all__ = ["SageMakerDeploymentClient", "OPTIONS", "POLL_INTERVAL_ENV"]

logger = get_logger(__name__)

POLL_INTERVAL_ENV = "DEPLOYFLOW_SAGEMAKER_POLL_INTERVAL"
#: The client's own options (the HTTP settings of :class:`~deployflow.transport.HttpSettings` come on top).
OPTIONS = frozenset(
    {
        "region_name",
        "aws_access_key_id",
        "aws_secret_access_key",
        "aws_session_token",
        "profile_name",
        "endpoint_url",
        "assume_role_arn",
        "poll_interval",
        "max_poll_interval",
    }
)
_ENDPOINT_NAME = re.compile(r"^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}$")
_OWN_TAG_PREFIXES = ("deployflow:", "aws:")
# The region of the call being made, when a config's region_name differs from the client's: (client id, region).
_CALL_REGION: contextvars.ContextVar[tuple[int, str] | None] = contextvars.ContextVar("deployflow_sagemaker_region", default=None)


def _require_boto3() -> None:
    import importlib.util

    try:
        found = importlib.util.find_spec("boto3") is not None
    except (ImportError, ValueError):
        found = False
    if not found:
        raise MissingExtraError(
            f"the 'sagemaker' target needs the 'sagemaker' extra: {install_command('sagemaker')} (missing module: boto3)",
            extra="sagemaker",
            module="boto3",
        )


class SageMakerDeploymentClient(BaseDeploymentClient):
    """MLflow models on Amazon SageMaker endpoints, with MLflow's config keys (see :func:`target_help`).

    Options (``get_deploy_client("sagemaker:/<region>", **options)``): ``region_name``,
    ``aws_access_key_id``, ``aws_secret_access_key``, ``aws_session_token``, ``profile_name``,
    ``endpoint_url`` (one URL, or a dict by service), ``assume_role_arn``; waiting: ``poll_interval``
    (seconds, default 5, env ``DEPLOYFLOW_SAGEMAKER_POLL_INTERVAL``), ``max_poll_interval`` (default
    30); and the HTTP settings: ``max_retries`` (boto3's retries), ``timeout`` / ``predict_timeout``
    (read timeouts), ``connect_timeout``, ``pool_maxsize``, ``verify``, ``predict_total_timeout`` (one
    deadline per predict). The other HTTP settings are accepted and have no effect here (boto3 has its
    own backoff).

    Nothing is imported from boto3 or asked of AWS until the first call (or the first read of
    :attr:`region_name` when neither the URI nor the options name a region), so a client can be made
    where no credentials are configured yet; a missing ``boto3`` is reported at once
    (:class:`~deployflow.errors.MissingExtraError`). The secret options are kept masked in
    :attr:`options`.
    """

    secret_options = frozenset({"aws_access_key_id", "aws_secret_access_key", "aws_session_token"})

    def __init__(self, target_uri: str, **options: Any) -> None:
        _require_boto3()
        super().__init__(target_uri, **options)
        http_options, own = HttpSettings.split_options(self.options)
        unknown = sorted(set(own) - OPTIONS)
        if unknown:
            raise InvalidInputError(
                f"Unknown option(s) for the sagemaker target: {', '.join(unknown)}; known: "
                f"{', '.join(sorted(OPTIONS | HttpSettings.OPTION_NAMES))}"
            )
        uri = parse_target_uri(target_uri)
        #: The timeouts and retry settings (read by batch scoring for its chunks).
        self.http_settings = HttpSettings.from_options(http_options)
        self._poll_interval = as_number(
            own.get("poll_interval") or os.environ.get(POLL_INTERVAL_ENV) or 5.0, "poll_interval", positive=True
        )
        self._max_poll_interval = max(
            as_number(own.get("max_poll_interval") or 30.0, "max_poll_interval", positive=True), self._poll_interval
        )
        self._aws = AwsConnection(
            uri,
            settings=self.http_settings,
            region_name=own.get("region_name"),
            aws_access_key_id=own.get("aws_access_key_id"),
            aws_secret_access_key=own.get("aws_secret_access_key"),
            aws_session_token=own.get("aws_session_token"),
            profile_name=own.get("profile_name"),
            endpoint_url=own.get("endpoint_url"),
            assume_role_arn=own.get("assume_role_arn"),
        )
        self._resources = Resources(self._aws)

    def __repr__(self) -> str:
        return f"SageMakerDeploymentClient(target_uri={redact(self.target_uri)!r})"

    @property
    def region_name(self) -> str:
        """The client's region (from the URI, the options or the AWS chain; else us-west-2)."""
        return self._aws.region

    @property
    def assume_role_arn(self) -> str | None:
        """The role every call runs as, when the URI or the options name one."""
        return self._aws.assume_role_arn

    def close(self) -> None:
        self._aws.close()

    # -- regions ----------------------------------------------------------------------------------

    def _region_of(self, settings: DeploymentSettings | DeleteSettings) -> str:
        if settings.assume_role_arn and settings.assume_role_arn != self._aws.assume_role_arn:
            raise InvalidInputError(
                f"config 'assume_role_arn' ({settings.assume_role_arn}) is not this client's role "
                f"({self._aws.assume_role_arn or 'none'}); make a client for it: "
                "get_deploy_client('sagemaker:/<region>/<role-arn>')"
            )
        return settings.region_name or self._current_region()

    def _current_region(self) -> str:
        found = _CALL_REGION.get()
        return found[1] if found is not None and found[0] == id(self) else self._aws.region

    @staticmethod
    def _deadline(settings: DeploymentSettings) -> Any:
        """One deadline for a call that waits: every AWS call and wait under it ends by ``timeout_seconds``."""
        return operation(timeout=settings.timeout_seconds if settings.synchronous else None)

    @contextlib.contextmanager
    def _in_region(self, region: str) -> Iterator[None]:
        token = _CALL_REGION.set((id(self), region))
        try:
            yield
        finally:
            _CALL_REGION.reset(token)

    # -- readiness --------------------------------------------------------------------------------

    def deployment_status(self, name: str, endpoint: str | None = None) -> Status:
        """The state of endpoint ``name`` by the table in :mod:`deployflow.targets.sagemaker.records`:
        an update SageMaker rolled back (the endpoint InService on the config it replaced) is FAILED."""
        _check_endpoint_argument(name, endpoint)
        region = self._current_region()
        described = self._resources.describe_endpoint(name, region)
        if described is None:
            return Status(State.NOT_FOUND, reason=f"Endpoint {name!r} does not exist in {region}")
        tags = self._resources.tags(str(described["EndpointArn"]), region) if described.get("EndpointStatus") == "InService" else {}
        return status_of(described, tags)

    def endpoint_status(self, endpoint: str) -> Status:
        """The same as :meth:`deployment_status`: on SageMaker a deployment is its endpoint."""
        return self.deployment_status(endpoint)

    def _wait_ready(self, name: str, timeout: float) -> Status:
        return self.wait_for_deployment(
            name,
            timeout=timeout,
            poll_interval=self._poll_interval,
            max_poll_interval=self._max_poll_interval,
            not_found_grace=min(30.0, timeout),
        )

    def _wait_until(self, what: str, timeout: float, poll: Any) -> Status:
        """The core's wait (deadline, backoff, tolerated transient errors) for a condition of our own."""
        plan = WaitPlan(
            what,
            timeout=timeout,
            poll_interval=self._poll_interval,
            max_poll_interval=self._max_poll_interval,
            not_found_grace=timeout,
        )
        return wait_until_ready(poll, plan)

    def _settled(self, name: str, described: dict[str, Any], timeout: float, region: str) -> dict[str, Any]:
        """The endpoint's description once no change of it is in progress (SageMaker refuses an update
        while one runs)."""
        if described.get("EndpointStatus") not in records.PENDING_STATUSES:
            return described
        logger.info("Endpoint %r is %s; waiting for that to finish first", name, described.get("EndpointStatus"))
        latest: dict[str, Any] = described

        def poll() -> Status:
            nonlocal latest
            found = self._resources.describe_endpoint(name, region)
            if found is None:
                return Status(State.NOT_FOUND, reason=f"Endpoint {name!r} does not exist in {region}")
            latest = found
            status = str(found.get("EndpointStatus"))
            if status in records.SETTLED_STATUSES or status == "Deleting":
                return Status(State.READY, reason=status)
            return Status(State.PENDING, reason=status)

        self._wait_until(f"Endpoint {name!r} (finishing its current change)", timeout, poll)
        return latest

    # -- create -----------------------------------------------------------------------------------

    def create_deployment(
        self,
        name: str,
        model_uri: str,
        flavor: str | None = None,
        config: dict[str, Any] | None = None,
        endpoint: str | None = None,
    ) -> dict[str, Any]:
        """Deploy the MLflow model ``model_uri`` as endpoint ``name`` and (unless ``synchronous`` /
        ``wait`` is false) wait until it is InService, within ``timeout_seconds`` (one deadline for the
        whole call). Returns :meth:`get_deployment`'s record.

        ``model_uri``: a local MLflow model directory, ``s3://...``, or (with the ``mlflow`` extra)
        ``runs:/`` / ``models:/``. Config keys: see :func:`target_help`. With mode ``create`` (the
        default), an existing endpoint ``name`` raises :class:`~deployflow.errors.ConflictError`; modes
        ``replace`` and ``add`` update it instead. A failed start raises
        :class:`~deployflow.errors.DeploymentFailedError` with SageMaker's ``FailureReason`` as soon as
        SageMaker reports it.
        """
        _check_name(name)
        _check_endpoint_argument(name, endpoint)
        settings = deployment_settings(config, operation="create")
        region = self._region_of(settings)
        with self._in_region(region), self._deadline(settings):
            existing = self._resources.describe_endpoint(name, region)
            if existing is not None:
                if settings.mode == "create":
                    raise ConflictError(
                        f"Deployment {name!r} exists already in {region}; change it with update_deployment "
                        "(or config mode 'replace' / 'add')"
                    )
                return self._update(name, existing, model_uri, flavor, settings, region)
            return self._create(name, model_uri, flavor, settings, region)

    def _create(self, name: str, model_uri: str, flavor: str | None, settings: DeploymentSettings, region: str) -> dict[str, Any]:
        image = _image_url(settings)
        recorded_uri = normal_model_uri(model_uri)
        made: MadeModel | None = None
        config_name: str | None = None
        with local_model(model_uri, flavor, download_s3=self._resources.download) as model:
            role = settings.execution_role_arn or self._resources.execution_role()
            bucket = settings.bucket or self._resources.default_bucket(region)
            try:
                made = self._resources.make_model(
                    name, model, model_uri=recorded_uri, image_url=image, role=role, bucket=bucket,
                    env=settings.env, tags=settings.tags, vpc_config=settings.vpc_config, region=region,
                )
                variant = _variant(made.name, settings.variant_name or made.name, settings, weight=1.0)
                config_name = self._resources.make_config(
                    name, [variant], async_inference_config=settings.async_inference_config,
                    data_capture_config=settings.data_capture_config, region=region,
                )
                tags = [{"Key": key, "Value": value} for key, value in settings.tags.items()]
                tags.append({"Key": records.APP_NAME_TAG, "Value": name})  # MLflow's tag
                tags.append({"Key": DESIRED_CONFIG_TAG, "Value": config_name})
                self._resources.sagemaker(
                    "create_endpoint", region, EndpointName=name, EndpointConfigName=config_name, Tags=tags
                )
            except Exception:
                self._resources.discard(made, config_name, region)
                raise
        logger.info("Creating endpoint %r in %s (config %s)", name, region, config_name)
        if settings.synchronous:
            self._wait_ready(name, settings.timeout_seconds)
        return self.get_deployment(name)

    # -- update -----------------------------------------------------------------------------------

    def update_deployment(
        self,
        name: str,
        model_uri: str | None = None,
        flavor: str | None = None,
        config: dict[str, Any] | None = None,
        endpoint: str | None = None,
    ) -> dict[str, Any]:
        """Deploy ``model_uri`` to the existing endpoint ``name`` as a new endpoint config, and wait
        until the endpoint is InService on that config. Returns :meth:`get_deployment`'s record.

        Mode ``replace`` (the default) serves only the new model; mode ``add`` adds it as a variant
        with ``traffic_percentage`` of the traffic (default 0, as MLflow). ``rollout`` sends SageMaker's
        deployment guardrails (canary, linear, rolling, alarms). An update SageMaker rolls back raises
        :class:`~deployflow.errors.DeploymentFailedError` saying "rolled back" with SageMaker's reason.
        Without ``archive``, the replaced endpoint config (and, in mode replace, the replaced models and
        their artefacts) are deleted once the endpoint is InService on the new config, and only then;
        after a rollback the old ones stay and the new ones are deleted.

        An endpoint whose creation failed (status Failed) cannot be updated by SageMaker: it is deleted
        and created again with the new model. A missing endpoint raises
        :class:`~deployflow.errors.NotFoundError`.
        """
        _check_name(name)
        _check_endpoint_argument(name, endpoint)
        settings = deployment_settings(config, operation="update")
        if model_uri is None:
            raise InvalidInputError("update_deployment on SageMaker needs a model_uri (the model to deploy)")
        region = self._region_of(settings)
        with self._in_region(region), self._deadline(settings):
            existing = self._resources.describe_endpoint(name, region)
            if existing is None:
                raise NotFoundError(f"Deployment {name!r} does not exist in {region}")
            return self._update(name, existing, model_uri, flavor, settings, region)

    def _update(
        self, name: str, described: dict[str, Any], model_uri: str, flavor: str | None, settings: DeploymentSettings, region: str
    ) -> dict[str, Any]:
        if not settings.synchronous and not settings.archive:
            raise InvalidInputError(
                "Updating without waiting needs config archive=true: the replaced endpoint config and model can "
                "only be deleted once the update settled, and nothing waits for it (as in MLflow)"
            )
        described = self._settled(name, described, settings.timeout_seconds, region)
        status = described.get("EndpointStatus")
        if status == "Deleting":
            raise ConflictError(f"Deployment {name!r} is being deleted; create it again once it is gone")
        if status == "Failed":
            logger.info("Endpoint %r failed to start (%s); deleting it to create it again", name, described.get("FailureReason"))
            self._delete(name, described, archive=settings.archive, wait=True, timeout=settings.timeout_seconds, region=region)
            return self._create(name, model_uri, flavor, settings, region)
        old_config_name = str(described["EndpointConfigName"])
        old_config = self._resources.describe_config(old_config_name, region) or {}
        old_variants = [dict(v) for v in old_config.get("ProductionVariants") or []]
        image = _image_url(settings)
        recorded_uri = normal_model_uri(model_uri)
        made: MadeModel | None = None
        config_name: str | None = None
        with local_model(model_uri, flavor, download_s3=self._resources.download) as model:
            variant_name = _new_variant_name(settings, old_variants)
            role = settings.execution_role_arn or self._resources.execution_role()
            bucket = settings.bucket or self._resources.default_bucket(region)
            try:
                made = self._resources.make_model(
                    name, model, model_uri=recorded_uri, image_url=image, role=role, bucket=bucket,
                    env=settings.env, tags=settings.tags, vpc_config=settings.vpc_config, region=region,
                )
                variants = _variants_after(settings, old_variants, described, made.name, variant_name or made.name)
                config_name = self._resources.make_config(
                    name, variants, async_inference_config=settings.async_inference_config,
                    data_capture_config=settings.data_capture_config, region=region,
                )
            except Exception:
                self._resources.discard(made, config_name, region)
                raise
        arn = str(described["EndpointArn"])
        before = self._resources.tags(arn, region)
        try:
            self._resources.set_tags(
                arn, {**settings.tags, DESIRED_CONFIG_TAG: config_name, PREVIOUS_CONFIG_TAG: old_config_name}, region
            )
            params: dict[str, Any] = {"EndpointName": name, "EndpointConfigName": config_name}
            if settings.rollout:
                params["DeploymentConfig"] = settings.rollout
            self._resources.sagemaker("update_endpoint", region, **params)
        except Exception:
            restore = {key: before[key] for key in (DESIRED_CONFIG_TAG, PREVIOUS_CONFIG_TAG) if key in before}
            restore.setdefault(DESIRED_CONFIG_TAG, old_config_name)
            with contextlib.suppress(Exception):
                self._resources.set_tags(arn, restore, region)
            self._resources.discard(made, config_name, region)
            raise
        logger.info("Updating endpoint %r from config %s to %s (mode %s)", name, old_config_name, config_name, settings.mode)
        if not settings.synchronous:
            return self.get_deployment(name)
        try:
            self._wait_ready(name, settings.timeout_seconds)
        except DeploymentFailedError:
            now = self._resources.describe_endpoint(name, region)
            rolled_back = (
                now is not None and now.get("EndpointStatus") == "InService" and now.get("EndpointConfigName") == old_config_name
            )
            if rolled_back and not settings.archive:
                # The old config and model serve again; the new ones serve nothing.
                self._resources.discard(made, config_name, region)
            raise
        if not settings.archive:
            kept = {v["ModelName"] for v in variants}
            self._resources.delete_config(old_config_name, region, models=False)
            for model_name in dict.fromkeys(str(v["ModelName"]) for v in old_variants):
                if model_name not in kept:
                    self._resources.delete_model(model_name, region)
        return self.get_deployment(name)

    def update_traffic(self, name: str, traffic: Mapping[str, float], *, wait: bool = True, timeout: float = 1200.0) -> dict[str, Any]:
        """Shift traffic between the production variants of endpoint ``name``: ``traffic`` maps variant
        names to percentages (``{"blue": 90, "green": 10}``; variants left out keep their weight), sent
        as ``UpdateEndpointWeightsAndCapacities``. Waits until the endpoint is InService again unless
        ``wait`` is false; returns :meth:`get_deployment`'s record."""
        _check_name(name)
        if not isinstance(traffic, Mapping) or not traffic:
            raise InvalidInputError("traffic must map variant names to percentages, e.g. {'blue': 90, 'green': 10}")
        weights = []
        for variant, share in traffic.items():
            value = as_number(share, f"traffic for variant {variant!r}", positive=False)
            if value > 100:
                raise InvalidInputError(f"traffic for variant {variant!r} must be from 0 to 100, got {share!r}")
            weights.append({"VariantName": str(variant), "DesiredWeight": value})
        region = self._current_region()
        with operation(timeout=timeout if wait else None):
            self._resources.sagemaker("update_endpoint_weights_and_capacities", region, EndpointName=name, DesiredWeightsAndCapacities=weights)
            if wait:
                self._wait_ready(name, timeout)
        return self.get_deployment(name)

    # -- traffic split (the interface deployflow.promotion uses) ----------------------------------

    def get_traffic_split(self, endpoint: str) -> dict[str, float]:
        """Endpoint ``endpoint``'s production variants: variant name -> percent of its traffic, from the
        variants' current weights (adds up to 100)."""
        return {row["name"]: float(row["traffic_percentage"]) for row in self.get_deployment(endpoint)["variants"]}

    def set_traffic_split(self, endpoint: str, split: Mapping[str, float], *, wait: bool = True) -> dict[str, Any]:
        """Give each variant in ``split`` its percent of ``endpoint``'s traffic and every other variant
        none, as one ``UpdateEndpointWeightsAndCapacities`` (the percents are the variants' desired
        weights). Waits until the endpoint is InService again unless ``wait`` is false; returns
        :meth:`get_deployment`'s record. A variant the endpoint does not have raises
        :class:`~deployflow.errors.InvalidInputError`, before anything is sent."""
        if not isinstance(split, Mapping) or not split:
            raise InvalidInputError("split must map variant names to percents, e.g. {'blue': 90, 'green': 10}")
        variants = list(self.get_traffic_split(endpoint))
        unknown = sorted(set(map(str, split)) - set(variants))
        if unknown:
            raise InvalidInputError(
                f"Endpoint {endpoint!r} has no variant named {', '.join(map(repr, unknown))} (it has {', '.join(variants)})"
            )
        shares = {name: 0.0 for name in variants}
        for name, share in split.items():
            shares[str(name)] = as_number(share, f"the share of variant {name!r}", positive=False)
        total = sum(shares.values())
        if abs(total - 100.0) > 0.5:
            raise InvalidInputError(f"A traffic split must add up to 100, got {total:g}: {dict(split)}")
        return self.update_traffic(endpoint, shares, wait=wait)

    def traffic_member_target(self, endpoint: str, member: str) -> dict[str, str]:
        """Score production variant ``member`` of ``endpoint`` alone: :meth:`predict` with both names
        sends it as ``TargetVariant``."""
        return {"deployment_name": member, "endpoint": endpoint}

    # -- delete -----------------------------------------------------------------------------------

    def delete_deployment(self, name: str, config: dict[str, Any] | None = None, endpoint: str | None = None) -> None:
        """Delete endpoint ``name``; idempotent (a missing endpoint is not an error).

        Waits until the endpoint is gone (unless ``synchronous`` / ``wait`` is false), within
        ``timeout_seconds`` (default 300), then, without ``archive``, deletes its endpoint configs (the
        one it served and the ones its last update named), their models and the S3 artefacts this
        client uploaded for them.
        """
        _check_name(name)
        _check_endpoint_argument(name, endpoint)
        settings = delete_settings(config)
        if not settings.synchronous and not settings.archive:
            raise InvalidInputError(
                "Deleting without waiting needs config archive=true: the endpoint's configs and models can only "
                "be deleted once it is gone (as in MLflow)"
            )
        region = self._region_of(settings)
        with self._in_region(region), operation(timeout=settings.timeout_seconds if settings.synchronous else None):
            described = self._resources.describe_endpoint(name, region)
            if described is None:
                logger.info("Deployment %r does not exist in %s; nothing to delete", name, region)
                return None
            self._delete(
                name, described, archive=settings.archive, wait=settings.synchronous, timeout=settings.timeout_seconds, region=region
            )
        return None

    def _delete(self, name: str, described: dict[str, Any], *, archive: bool, wait: bool, timeout: float, region: str) -> None:
        tags = self._resources.tags(str(described["EndpointArn"]), region)
        configs = list(dict.fromkeys(
            c for c in (described.get("EndpointConfigName"), tags.get(DESIRED_CONFIG_TAG), tags.get(PREVIOUS_CONFIG_TAG)) if c
        ))
        if described.get("EndpointStatus") != "Deleting":
            try:
                self._resources.sagemaker("delete_endpoint", region, EndpointName=name)
            except NotFoundError:
                return
        logger.info("Deleting endpoint %r in %s", name, region)
        if not wait:
            return

        def gone() -> Status:
            found = self._resources.describe_endpoint(name, region)
            if found is None:
                return Status(State.READY, reason="deleted")
            return Status(State.PENDING, reason=str(found.get("EndpointStatus")))

        self._wait_until(f"Deletion of endpoint {name!r}", timeout, gone)
        if not archive:
            for config_name in configs:
                self._resources.delete_config(str(config_name), region, models=True)

    # -- reading ----------------------------------------------------------------------------------

    def list_deployments(self, endpoint: str | None = None) -> list[dict[str, Any]]:
        """Every endpoint of the client's region (all pages of ``ListEndpoints``), each
        ``{"name", "status", "region", "created", "modified"}``; with ``endpoint``, that one (or none)."""
        region = self._current_region()
        if endpoint is not None:
            found = self._resources.describe_endpoint(endpoint, region)
            return [] if found is None else [_summary(found, region)]
        rows: list[dict[str, Any]] = []
        token = None
        while True:
            params: dict[str, Any] = {"MaxResults": 100}
            if token:
                params["NextToken"] = token
            answer = self._resources.sagemaker("list_endpoints", region, **params)
            rows.extend(_summary(item, region) for item in answer.get("Endpoints") or [])
            token = answer.get("NextToken")
            if not token:
                return rows

    def get_deployment(self, name: str, endpoint: str | None = None) -> dict[str, Any]:
        """A small JSON-safe record of endpoint ``name``: ``name``, ``region``, ``state`` and ``reason``
        (as :meth:`deployment_status` says), ``status`` and ``failure_reason`` (SageMaker's),
        ``endpoint_config_name``, ``url`` (the invocations URL), ``model_uri`` and ``flavor`` (of the
        last variant, the one deployed last), ``variants`` (name, model, weight, traffic percentage,
        instances), ``config`` (the settings it runs with, comparable to a requested config),
        ``created`` / ``modified`` (ISO-8601) and ``last_deployment_config`` (the guardrails of its
        last update). Raises :class:`~deployflow.errors.NotFoundError` when there is no such endpoint."""
        _check_endpoint_argument(name, endpoint)
        region = self._current_region()
        described = self._resources.describe_endpoint(name, region)
        if described is None:
            raise NotFoundError(f"Deployment {name!r} does not exist in {region}")
        endpoint_tags = self._resources.tags(str(described["EndpointArn"]), region)
        status = status_of(described, endpoint_tags)
        config_name = str(described.get("EndpointConfigName") or "")
        config = self._resources.describe_config(config_name, region) if config_name else None
        config_variants = list((config or {}).get("ProductionVariants") or [])
        models: dict[str, dict[str, Any]] = {}
        uris: dict[str, str | None] = {}
        for variant in config_variants:
            model_name = str(variant.get("ModelName"))
            if model_name in models:
                continue
            model = self._resources.describe_model(model_name, region) or {}
            models[model_name] = model
            uris[model_name] = uri_from_tags(self._resources.tags(str(model["ModelArn"]), region)) if model.get("ModelArn") else None
        rows = records.variant_records(config_variants, list(described.get("ProductionVariants") or []), uris)
        last = rows[-1] if rows else {}
        last_model = models.get(str(last.get("model_name")), {})
        container = last_model.get("PrimaryContainer") or {}
        environment = dict(container.get("Environment") or {})
        shown: dict[str, Any] = {"region_name": region}
        if last:
            shown["variant_name"] = last["name"]
            for key in ("instance_type", "instance_count", "serverless_config"):
                if last.get(key) is not None:
                    shown[key] = last[key]
        if container.get("Image"):
            shown["image_url"] = container["Image"]
        if last_model.get("ExecutionRoleArn"):
            shown["execution_role_arn"] = last_model["ExecutionRoleArn"]
        shown["env"] = environment
        shown["tags"] = {k: v for k, v in endpoint_tags.items() if k != records.APP_NAME_TAG and not k.startswith(_OWN_TAG_PREFIXES)}
        for key, field in (("async_inference_config", "AsyncInferenceConfig"), ("data_capture_config", "DataCaptureConfig")):
            if (config or {}).get(field):
                shown[key] = _json_safe((config or {})[field])
        record: dict[str, Any] = {
            "name": name,
            "region": region,
            "state": status.state.value,
            "reason": status.reason,
            "status": described.get("EndpointStatus"),
            "failure_reason": described.get("FailureReason"),
            "endpoint_config_name": config_name or None,
            "url": self._invocations_url(name, region),
            "model_uri": last.get("model_uri"),
            "flavor": environment.get("MLFLOW_DEPLOYMENT_FLAVOR_NAME") or (PYFUNC if last_model else None),
            "variants": rows,
            "config": shown,
            "created": records.iso(described.get("CreationTime")),
            "modified": records.iso(described.get("LastModifiedTime")),
        }
        if described.get("LastDeploymentConfig"):
            record["last_deployment_config"] = _json_safe(described["LastDeploymentConfig"])
        return record

    def _invocations_url(self, name: str, region: str) -> str:
        base = self._aws.endpoint_urls.get("sagemaker-runtime") or f"https://runtime.sagemaker.{region}.amazonaws.com"
        return f"{base.rstrip('/')}/endpoints/{name}/invocations"

    # -- scoring ----------------------------------------------------------------------------------

    def predict(
        self,
        deployment_name: str | None = None,
        inputs: Any = None,
        endpoint: str | None = None,
        params: dict[str, Any] | None = None,
    ) -> PredictionsResponse:
        """Score ``inputs`` with endpoint ``deployment_name`` (or ``endpoint``: the same thing here)
        through ``sagemaker-runtime`` ``InvokeEndpoint``; given both, ``deployment_name`` names one of
        ``endpoint``'s production variants, which alone answers (``TargetVariant``, bypassing the
        variant weights, as a promotion scores a challenger). In MLflow's scoring protocol: a DataFrame goes
        as ``dataframe_split``, a list or array as ``inputs``, a dict with ``instances`` / ``inputs`` /
        ``dataframe_split`` / ``dataframe_records`` as it is; ``params`` is sent as ``params``.

        boto3 may send it again (predict on a model server has no side effects); its read timeout is
        the smaller of ``predict_timeout`` and what is left of ``predict_total_timeout``. A model that rejects the input raises
        :class:`~deployflow.errors.InvalidInputError`, a missing endpoint
        :class:`~deployflow.errors.NotFoundError`, throttling and 5xx a retryable
        :class:`~deployflow.errors.TransientError`.
        """
        variant: dict[str, str] = {}
        if deployment_name and endpoint and deployment_name != endpoint:
            _check_name(deployment_name)
            variant = {"TargetVariant": deployment_name}
            deployment_name = endpoint
        name = deployment_name or endpoint
        if not name:
            raise InvalidInputError("predict needs the deployment (endpoint) name")
        _check_name(name)
        body, content_type = encode_request(inputs, params)
        region = self._current_region()
        with operation(timeout=self.http_settings.predict_total_timeout):
            answer = self._aws.call(
                "sagemaker-runtime",
                "invoke_endpoint",
                region=region,
                kind="predict",
                EndpointName=name,
                Body=body,
                ContentType=content_type,
                Accept="application/json",
                **variant,
            )
        stream = answer.get("Body")
        content = stream.read() if hasattr(stream, "read") else (stream or b"")
        return decode_response(content)


# --------------------------------------------------------------------------------------------------


def _check_name(name: Any) -> None:
    if not isinstance(name, str) or not _ENDPOINT_NAME.match(name):
        raise InvalidInputError(
            f"A SageMaker endpoint name is 1-63 letters, digits and '-' (starting with a letter or digit); got {name!r}"
        )


def _check_endpoint_argument(name: str, endpoint: str | None) -> None:
    if endpoint is not None and endpoint != name:
        raise InvalidInputError(
            f"On SageMaker a deployment is the endpoint of the same name; endpoint={endpoint!r} is not {name!r}"
        )


def _image_url(settings: DeploymentSettings) -> str:
    image = settings.image_url or os.environ.get(IMAGE_URL_ENV, "").strip()
    if not image:
        raise InvalidInputError(
            f"No serving image: set config 'image_url' or the environment variable {IMAGE_URL_ENV} to the ECR URL "
            "of MLflow's SageMaker image (<account>.dkr.ecr.<region>.amazonaws.com/mlflow-pyfunc:<mlflow version>), "
            "which `mlflow sagemaker build-and-push-container` builds and pushes"
        )
    return image


def _variant(model_name: str, variant_name: str, settings: DeploymentSettings, *, weight: float) -> dict[str, Any]:
    variant: dict[str, Any] = {"VariantName": variant_name, "ModelName": model_name, "InitialVariantWeight": weight}
    if settings.serverless_config:
        variant["ServerlessConfig"] = dict(settings.serverless_config)
    else:
        variant["InstanceType"] = settings.instance_type
        variant["InitialInstanceCount"] = settings.instance_count
    return variant


def _new_variant_name(settings: DeploymentSettings, old_variants: list[dict[str, Any]]) -> str | None:
    """The new variant's name: a rollout keeps the old variant's (SageMaker's guardrails need it)."""
    old_names = [str(v.get("VariantName")) for v in old_variants]
    if settings.rollout:
        if len(old_names) != 1:
            raise InvalidInputError(
                f"A rollout replaces the endpoint's one variant in place; this endpoint has {len(old_names)} "
                f"({', '.join(old_names)}): shift traffic with update_traffic, or update without a rollout"
            )
        if settings.variant_name and settings.variant_name != old_names[0]:
            raise InvalidInputError(
                f"A rollout keeps the variant's name ({old_names[0]!r}), as SageMaker's deployment guardrails "
                f"need; config variant_name {settings.variant_name!r} differs"
            )
        return old_names[0]
    if settings.mode == "add" and settings.variant_name in old_names:
        raise ConflictError(f"The endpoint has a variant named {settings.variant_name!r} already; choose another variant_name")
    return settings.variant_name


_READ_ONLY_VARIANT_FIELDS = frozenset({"CurrentWeight", "DesiredWeight", "CurrentInstanceCount", "DesiredInstanceCount", "VariantStatus", "DeployedImages"})


def _variants_after(
    settings: DeploymentSettings, old_variants: list[dict[str, Any]], described: Mapping[str, Any], model_name: str, variant_name: str
) -> list[dict[str, Any]]:
    """The production variants of the new endpoint config: the new one alone (replace), or the old ones
    and the new one with ``traffic_percentage`` of the traffic (add)."""
    if settings.mode != "add":
        return [_variant(model_name, variant_name, settings, weight=1.0)]
    share = settings.traffic_percentage or 0.0
    live = {str(v.get("VariantName")): v for v in described.get("ProductionVariants") or []}
    kept = []
    for variant in old_variants:
        copy_ = {key: value for key, value in variant.items() if key not in _READ_ONLY_VARIANT_FIELDS}
        now = live.get(str(variant.get("VariantName")), {})
        copy_["InitialVariantWeight"] = float(now.get("CurrentWeight", variant.get("InitialVariantWeight", 1.0)) or 0.0)
        kept.append(copy_)
    if share > 0:
        total = sum(v["InitialVariantWeight"] for v in kept)
        for variant in kept:
            part = variant["InitialVariantWeight"] / total if total > 0 else 1.0 / len(kept)
            variant["InitialVariantWeight"] = round((100.0 - share) * part, 6)
    return kept + [_variant(model_name, variant_name, settings, weight=share)]


def _summary(item: Mapping[str, Any], region: str) -> dict[str, Any]:
    return {
        "name": item.get("EndpointName"),
        "status": item.get("EndpointStatus"),
        "region": region,
        "created": records.iso(item.get("CreationTime")),
        "modified": records.iso(item.get("LastModifiedTime")),
    }


def _json_safe(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(key): _json_safe(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(item) for item in value]
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return records.iso(value) if hasattr(value, "isoformat") else str(value)

