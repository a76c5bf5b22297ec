"""moto's SageMaker, S3 and STS, with what moto leaves out of SageMaker added the way SageMaker does it.

moto 5 marks an endpoint InService the moment it is created, has no ``UpdateEndpoint``, answers
``InvokeEndpoint`` for endpoints that do not exist, and appends tags where AWS overwrites them. This
module wraps moto's backends (never deployflow) so tests can follow SageMaker's real behaviour:

* :meth:`SageMakerFake.script`: the statuses ``DescribeEndpoint`` reports on successive calls
  (``"Creating"``, then ``("Failed", "reason")``...); the last one stays;
* ``UpdateEndpoint``: the endpoint moves to the new config (InService at once, as moto does for a
  create), or follows :meth:`SageMakerFake.plan_update` (``Updating`` -> ``RollingBack`` -> InService on
  the OLD config with a ``FailureReason``, or -> ``UpdateRollbackFailed``); while it is not done, the old
  config stays ``EndpointConfigName`` and the new one is in ``PendingDeploymentSummary``. The request's
  ``DeploymentConfig`` is kept (``LastDeploymentConfig``) and every update is recorded in
  :attr:`SageMakerFake.updates`. An update of an endpoint that is not InService (or
  UpdateRollbackFailed) is refused with SageMaker's ValidationException;
* :meth:`SageMakerFake.linger_on_delete`: ``DeleteEndpoint`` leaves the endpoint ``Deleting`` for some
  polls;
* ``InvokeEndpoint`` of a missing endpoint answers ValidationError "Endpoint ... not found", and
  :meth:`SageMakerFake.fail_invocations` queues error answers (ThrottlingException, 5xx, ModelError);
  answers are queued through moto's own ``/moto-api/static/sagemaker/endpoint-results`` API
  (:meth:`SageMakerFake.queue_answers`), or computed from the request (:meth:`SageMakerFake.answer_with`).

Use :func:`in_process` (``moto.mock_aws``) or :func:`server` (a ``ThreadedMotoServer`` on 127.0.0.1 with a
free port, for clients given ``endpoint_url``). :func:`write_model` writes a small MLflow model
directory (an MLmodel file with a python_function flavor and a pickled model file).
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import secrets
import threading
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import requests

ACCOUNT = "123456789012"
REGION = "us-east-1"
IMAGE = f"{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com/mlflow-pyfunc:2.19.0"
ROLE = f"arn:aws:iam::{ACCOUNT}:role/sagemaker-execution"
#: Planted in every test client: no message, log line or repr may show them.
ACCESS_KEY = "AKIA" + secrets.token_hex(8).upper()
SECRET_KEY = "fake-secret-" + secrets.token_hex(16)
CREDENTIALS = {"aws_access_key_id": ACCESS_KEY, "aws_secret_access_key": SECRET_KEY}
#: Client options for quick tests: fake credentials, tiny polls, no retries by boto3.
FAST = {**CREDENTIALS, "poll_interval": 0.01, "max_poll_interval": 0.02, "max_retries": 0}
#: A config every create needs here (no caller role, no image from the environment).
BASE_CONFIG = {"execution_role_arn": ROLE, "image_url": IMAGE}

#: Environment variables that could reach real AWS or a developer's credentials.
AWS_VARIABLES = (
    "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN", "AWS_PROFILE",
    "AWS_DEFAULT_PROFILE", "AWS_REGION", "AWS_DEFAULT_REGION", "AWS_CONFIG_FILE", "AWS_SHARED_CREDENTIALS_FILE",
    "AWS_ROLE_ARN", "AWS_WEB_IDENTITY_TOKEN_FILE", "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
    "AWS_CONTAINER_CREDENTIALS_FULL_URI", "AWS_ENDPOINT_URL", "MLFLOW_SAGEMAKER_DEPLOY_IMG_URL",
)  # fmt: skip


def write_model(directory: Path, *, flavors: tuple[str, ...] = ("python_function",), marker: str = "v1") -> Path:
    """An MLflow model directory: ``MLmodel`` with ``flavors``, a python_env.yaml and a model file whose
    content is ``marker`` (so two models differ)."""
    directory.mkdir(parents=True, exist_ok=True)
    blocks = []
    for flavor in flavors:
        if flavor == "python_function":
            blocks.append(
                "  python_function:\n"
                "    env:\n"
                "      virtualenv: python_env.yaml\n"
                "    loader_module: mlflow.pyfunc.model\n"
                "    python_model: python_model.pkl\n"
                "    python_version: 3.11.7\n"
            )
        else:
            blocks.append(f"  {flavor}:\n    pickled_model: model.pkl\n")
    (directory / "MLmodel").write_text(
        "artifact_path: model\nflavors:\n" + "".join(blocks) + "mlflow_version: 2.19.0\nmodel_uuid: 0123456789abcdef\n",
        encoding="utf-8",
    )
    (directory / "python_env.yaml").write_text("python: 3.11.7\ndependencies:\n- mlflow==2.19.0\n", encoding="utf-8")
    (directory / "python_model.pkl").write_bytes(b"tiny model " + marker.encode())
    return directory


@dataclass
class Step:
    """One status ``DescribeEndpoint`` reports; ``config`` is ``"old"``/``"new"`` during an update."""

    status: str
    reason: str | None = None
    config: str | None = None


def _steps(raw: tuple[Any, ...]) -> deque[Step]:
    found: deque[Step] = deque()
    for item in raw:
        if isinstance(item, Step):
            found.append(item)
        elif isinstance(item, str):
            found.append(Step(item))
        else:
            found.append(Step(*item))
    return found


def _rest_error(code: str, status: int, message: str, **fields: Any) -> Exception:
    from moto.core.exceptions import JsonRESTError

    error = JsonRESTError(code, message)
    error.code = status
    error.description = json.dumps({"__type": code, "message": message, "Message": message, **fields})
    return error


class SageMakerFake:
    """The scripted behaviour on top of moto (see the module docstring)."""

    def __init__(self, url: str | None = None) -> None:
        #: The server's URL (``None`` in process).
        self.url = url
        self._lock = threading.Lock()
        self._scripts: dict[tuple[str, str], deque[Step]] = {}
        self._update_plans: dict[tuple[str, str], deque[Step]] = {}
        self._updating: dict[tuple[str, str], dict[str, Any]] = {}
        self._lingering: dict[tuple[str, str], int] = {}
        self._faults: dict[tuple[str, str], deque[tuple[str, int, str, dict[str, Any]]]] = {}
        self._answer: Callable[[str, bytes], Any] | None = None
        self._variant_answer: Callable[[str, str, bytes], Any] | None = None
        self._served: dict[tuple[str, str], dict[str, float]] = {}  # smooth weighted round robin credit
        #: Every UpdateEndpoint request: ``{"name", "config", "deployment_config", "region"}``.
        self.updates: list[dict[str, Any]] = []
        #: Every InvokeEndpoint request: ``{"name", "body", "region"}``.
        self.invocations: list[dict[str, Any]] = []
        self._saved: list[tuple[Any, str, Any]] = []

    # -- what tests ask for ---------------------------------------------------------------------------

    def script(self, name: str, *steps: Any, region: str = REGION) -> None:
        """Statuses of endpoint ``name`` on successive ``DescribeEndpoint`` calls (strings or
        ``(status, reason)``); the last one stays."""
        with self._lock:
            self._scripts[(region, name)] = _steps(steps)

    def plan_update(self, name: str, *steps: Any, rollback: str | None = None, final: Any = None, region: str = REGION) -> None:
        """What the next update of ``name`` goes through: ``steps`` (default ``"Updating"``), then, with
        ``rollback`` (SageMaker's reason), ``RollingBack`` and InService on the old config with that
        ``FailureReason``; or ``final`` (e.g. ``("UpdateRollbackFailed", "reason")``); else InService on
        the new config."""
        plan = _steps(steps or ("Updating",))
        for step in plan:
            step.config = step.config or "pending"
        if rollback is not None:
            plan.append(Step("RollingBack", rollback, "pending"))
            plan.append(Step("InService", rollback, "old"))
        elif final is not None:
            plan.extend(_steps((final,)))
            plan[-1].config = plan[-1].config or "pending"
        else:
            plan.append(Step("InService", None, "new"))
        with self._lock:
            self._update_plans[(region, name)] = plan

    def linger_on_delete(self, name: str, polls: int, region: str = REGION) -> None:
        """``DeleteEndpoint`` of ``name`` leaves it ``Deleting`` for ``polls`` ``DescribeEndpoint`` calls."""
        with self._lock:
            self._lingering[(region, name)] = polls

    def fail_invocations(self, name: str, *errors: tuple[Any, ...], region: str = REGION) -> None:
        """The next invocations of ``name`` answer these errors: ``(code, http status, message[, fields])``."""
        with self._lock:
            queue = self._faults.setdefault((region, name), deque())
            for error in errors:
                code, status, message, *rest = error
                queue.append((code, status, message, rest[0] if rest else {}))

    def queue_answers(self, *bodies: Any, region: str = REGION) -> None:
        """Queue ``InvokeEndpoint`` answers (JSON-encoded unless bytes/str) through moto's API."""
        results = [
            {"Body": body if isinstance(body, str) else json.dumps(body), "ContentType": "application/json",
             "InvokedProductionVariant": "", "CustomAttributes": ""}
            for body in bodies
        ]  # fmt: skip
        base = self.url or "http://motoapi.amazonaws.com"
        answer = requests.post(
            f"{base}/moto-api/static/sagemaker/endpoint-results",
            json={"account_id": ACCOUNT, "region": region, "results": results},
            timeout=10,
        )
        answer.raise_for_status()

    def answer_with(self, compute: Callable[[str, bytes], Any] | None) -> None:
        """Answer every invocation with ``compute(endpoint_name, body)`` (JSON-encoded), instead of moto's
        queue; ``None`` goes back to the queue."""
        self._answer = compute

    def answer_by_variant(self, compute: Callable[[str, str, bytes], Any] | None) -> None:
        """Answer every invocation with ``compute(endpoint_name, variant, body)`` (JSON-encoded): the
        variant is ``TargetVariant`` when the request names one (it must be one of the endpoint's), else
        one picked by the variants' current weights, as SageMaker spreads traffic (deterministically:
        smooth weighted round robin). The answer names the variant (``InvokedProductionVariant``)."""
        self._variant_answer = compute

    def _pick_variant(self, endpoint: Any, region: str, wanted: str | None) -> str:
        names = [variant["VariantName"] for variant in endpoint.production_variants]
        if wanted is not None:
            if wanted not in names:
                raise _rest_error("ValidationError", 400, f"The variant {wanted!r} is not part of endpoint {endpoint.endpoint_name!r}.")
            return wanted
        weights = {v["VariantName"]: float(v.get("CurrentWeight", v.get("InitialVariantWeight", 1.0)) or 0.0)
                   for v in endpoint.production_variants}
        total = sum(weights.values())
        if total <= 0:
            raise _rest_error("ValidationError", 400, f"Endpoint {endpoint.endpoint_name!r} has no variant with traffic.")
        with self._lock:
            credit = self._served.setdefault((region, endpoint.endpoint_name), {})
            for name, weight in weights.items():
                credit[name] = credit.get(name, 0.0) + weight
            chosen = max(weights, key=lambda name: (credit[name], -names.index(name)))
            credit[chosen] -= total
        return chosen

    def backend(self, region: str = REGION) -> Any:
        from moto.sagemaker.models import sagemaker_backends

        return sagemaker_backends[ACCOUNT][region]

    def s3_keys(self, bucket: str) -> list[str]:
        from moto.s3.models import s3_backends

        store = s3_backends[ACCOUNT]["aws"]
        found = store.buckets.get(bucket)
        return sorted(found.keys.keys()) if found is not None else []

    def buckets(self) -> list[str]:
        from moto.s3.models import s3_backends

        return sorted(s3_backends[ACCOUNT]["aws"].buckets)

    # -- patching moto -----------------------------------------------------------------------------------

    def _patch(self, owner: Any, name: str, value: Any) -> None:
        self._saved.append((owner, name, owner.__dict__.get(name, _MISSING)))
        setattr(owner, name, value)

    def start(self) -> SageMakerFake:
        from moto.sagemaker.models import FakeEndpoint, SageMakerModelBackend
        from moto.sagemaker.responses import SageMakerResponse
        from moto.sagemakerruntime.models import SageMakerRuntimeBackend
        from moto.sagemakerruntime.responses import SageMakerRuntimeResponse

        fake = self
        describe = SageMakerModelBackend.describe_endpoint
        delete = SageMakerModelBackend.delete_endpoint
        invoke = SageMakerRuntimeBackend.invoke_endpoint

        def describe_endpoint(backend: Any, endpoint_name: str) -> dict[str, Any]:
            fake._advance(backend, endpoint_name)
            return describe(backend, endpoint_name)

        def delete_endpoint(backend: Any, endpoint_name: str) -> None:
            key = (backend.region_name, endpoint_name)
            with fake._lock:
                polls = fake._lingering.pop(key, 0)
                fake._scripts.pop(key, None)
                fake._update_plans.pop(key, None)
            if polls and endpoint_name in backend.endpoints:
                backend.endpoints[endpoint_name].endpoint_status = "Deleting"
                with fake._lock:
                    fake._scripts[key] = deque([Step("Deleting")] * polls + [Step("gone")])
                return None
            return delete(backend, endpoint_name)

        def update_endpoint(backend: Any, endpoint_name: str, config_name: str, deployment_config: Any) -> str:
            from moto.sagemaker.exceptions import ValidationError

            endpoint = backend.endpoints.get(endpoint_name)
            if endpoint is None:
                raise ValidationError(message=f"Could not find endpoint \"{FakeEndpoint.arn_formatter(endpoint_name, backend.account_id, backend.region_name)}\".")
            if config_name not in backend.endpoint_configs:
                raise ValidationError(message=f"Could not find endpoint configuration \"{config_name}\".")
            if endpoint.endpoint_status not in ("InService", "UpdateRollbackFailed"):
                raise ValidationError(message=f"Cannot update in-progress endpoint \"{endpoint.arn}\".")
            key = (backend.region_name, endpoint_name)
            with fake._lock:
                fake.updates.append({"name": endpoint_name, "config": config_name, "deployment_config": deployment_config, "region": backend.region_name})
                plan = fake._update_plans.pop(key, None)
                fake._updating[key] = {"old": endpoint.endpoint_config_name, "new": config_name}
            endpoint.last_deployment_config = deployment_config
            endpoint.failure_reason = None
            if plan is None:
                fake._move(backend, endpoint, Step("InService", None, "new"), key)
            else:
                with fake._lock:
                    fake._scripts[key] = plan
                fake._move(backend, endpoint, Step("Updating", None, "pending"), key)
            return endpoint.arn

        def respond_update_endpoint(response: Any) -> Any:
            from moto.core.responses import ActionResult

            arn = response.sagemaker_backend.update_endpoint(
                response._get_param("EndpointName"), response._get_param("EndpointConfigName"), response._get_param("DeploymentConfig")
            )
            return ActionResult({"EndpointArn": arn})

        def add_tags(backend: Any, arn: str, tags: list[dict[str, str]]) -> list[dict[str, str]]:
            resource = backend._get_resource_from_arn(arn)
            keys = {tag["Key"] for tag in tags}
            resource.tags = [tag for tag in resource.tags if tag["Key"] not in keys] + list(tags)  # AWS overwrites
            return resource.tags

        def invoke_endpoint(runtime: Any, endpoint_name: str, unique_repr: bytes) -> Any:
            from moto.sagemaker.models import sagemaker_backends

            endpoints = sagemaker_backends[runtime.account_id][runtime.region_name].endpoints
            if endpoint_name not in endpoints:
                raise _rest_error("ValidationError", 400, f"Endpoint {endpoint_name} of account {runtime.account_id} not found.")
            unique = json.loads(base64.b64decode(unique_repr))
            body = unique["Body"]
            body = body.encode() if isinstance(body, str) else body
            wanted = next((value for key, value in unique.items() if key.lower() == "x-amzn-sagemaker-target-variant"), None)
            with fake._lock:
                fake.invocations.append({"name": endpoint_name, "body": body, "region": runtime.region_name,
                                         "target_variant": wanted})
                queue = fake._faults.get((runtime.region_name, endpoint_name))
                fault = queue.popleft() if queue else None
            if fault is not None:
                code, status, message, fields = fault
                raise _rest_error(code, status, message, **fields)
            if fake._variant_answer is not None:
                variant = fake._pick_variant(endpoints[endpoint_name], runtime.region_name, wanted)
                answer = fake._variant_answer(endpoint_name, variant, body)
                return (answer if isinstance(answer, str) else json.dumps(answer), "application/json", variant, "")
            if fake._answer is not None:
                answer = fake._answer(endpoint_name, body)
                return (answer if isinstance(answer, str) else json.dumps(answer), "application/json", "", "")
            return invoke(runtime, endpoint_name, unique_repr)

        self._patch(SageMakerModelBackend, "describe_endpoint", describe_endpoint)
        self._patch(SageMakerModelBackend, "delete_endpoint", delete_endpoint)
        self._patch(SageMakerModelBackend, "update_endpoint", update_endpoint)
        self._patch(SageMakerModelBackend, "add_tags", add_tags)
        self._patch(SageMakerResponse, "update_endpoint", respond_update_endpoint)
        def respond_invoke_endpoint(response: Any) -> Any:
            # moto reads the endpoint's name from the parameters, where a request made through boto3 in
            # process does not carry it; the path always does (/endpoints/<name>/invocations).
            name = unquote(response.path.split("/")[2])
            unique = {key: value for key, value in response.headers.items() if key.lower().startswith("x-amzn-sagemaker")}
            unique["Accept"] = response.headers.get("Accept")
            raw = response.body if isinstance(response.body, str) else response.body.decode("utf-8", "replace")
            unique["Body"] = raw
            body, content_type, variant, attributes = response.sagemakerruntime_backend.invoke_endpoint(
                endpoint_name=name, unique_repr=base64.b64encode(json.dumps(unique).encode("utf-8"))
            )
            headers = {"Content-Type": content_type}
            if variant:
                headers["x-Amzn-Invoked-Production-Variant"] = variant
            return 200, headers, body

        self._patch(SageMakerRuntimeBackend, "invoke_endpoint", invoke_endpoint)
        self._patch(SageMakerRuntimeResponse, "invoke_endpoint", respond_invoke_endpoint)
        return self

    def stop(self) -> None:
        while self._saved:
            owner, name, value = self._saved.pop()
            if value is _MISSING:
                delattr(owner, name)
            else:
                setattr(owner, name, value)

    # -- moving endpoints along ---------------------------------------------------------------------------

    def _advance(self, backend: Any, name: str) -> None:
        key = (backend.region_name, name)
        endpoint = backend.endpoints.get(name)
        if endpoint is None:
            return
        with self._lock:
            script = self._scripts.get(key)
            step = script.popleft() if script else None
            if script is not None and not script:
                self._scripts.pop(key, None)
        if step is None:
            return
        if step.status == "gone":
            backend.endpoints.pop(name, None)
            return
        self._move(backend, endpoint, step, key)

    def _move(self, backend: Any, endpoint: Any, step: Step, key: tuple[str, str]) -> None:
        from moto.core.utils import utcnow

        endpoint.endpoint_status = step.status
        if step.reason is not None or step.status in ("InService", "Creating", "Updating"):
            endpoint.failure_reason = step.reason
        update = self._updating.get(key)
        if update is not None and step.config is not None:
            config = {"old": update["old"], "new": update["new"], "pending": update["old"]}[step.config]
            endpoint.endpoint_config_name = config
            variants = backend.endpoint_configs[config].production_variants
            endpoint.production_variants = endpoint._process_production_variants(variants)
            endpoint.pending_deployment_summary = (
                {"EndpointConfigName": update["new"]} if step.config == "pending" else None
            )
            if step.config != "pending":
                with self._lock:
                    self._updating.pop(key, None)
        endpoint.last_modified_time = utcnow()


_MISSING = object()


@contextlib.contextmanager
def clean_aws_environment() -> Iterator[None]:
    """No AWS variable of the developer's shell, no instance metadata lookups, no real config files."""
    saved = {name: os.environ.pop(name) for name in AWS_VARIABLES if name in os.environ}
    extra = {
        "AWS_EC2_METADATA_DISABLED": "true",
        "AWS_CONFIG_FILE": os.devnull,
        "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
    }
    previous = {name: os.environ.get(name) for name in extra}
    os.environ.update(extra)
    try:
        yield
    finally:
        for name, value in previous.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        for name in AWS_VARIABLES:
            os.environ.pop(name, None)
        os.environ.update(saved)


@contextlib.contextmanager
def in_process() -> Iterator[SageMakerFake]:
    """moto in this process (``mock_aws``) with the fake's additions."""
    from moto import mock_aws

    with clean_aws_environment(), mock_aws():
        fake = SageMakerFake().start()
        try:
            yield fake
        finally:
            fake.stop()


@contextlib.contextmanager
def server() -> Iterator[SageMakerFake]:
    """moto as an HTTP server on 127.0.0.1 (a free port), with the fake's additions; clients need
    ``endpoint_url=fake.url``."""
    from moto.server import ThreadedMotoServer

    with clean_aws_environment():
        moto_server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        moto_server.start()
        host, port = moto_server.get_host_and_port()
        fake = SageMakerFake(url=f"http://{host}:{port}").start()
        try:
            yield fake
        finally:
            fake.stop()
            requests.post(f"{fake.url}/moto-api/reset", timeout=10)  # the backends live in this process
            moto_server.stop()
