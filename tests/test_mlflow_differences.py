"""The README's table of deliberate differences from MLflow, one test per row.

Every row of the table under "Differences from MLflow" in README.md must name a test here (``ROWS``), and
every test here a row: a difference that is not written down, or written down and not true, fails.
"""

from __future__ import annotations

import inspect
import re
from pathlib import Path

import pytest

import deployflow
from deployflow import (
    BaseDeploymentClient,
    DeploymentError,
    OutcomeUnknownError,
    State,
    TargetError,
    UnknownTargetError,
    get_deploy_client,
)
from fakes.base import scrub_environment
from fakes.databricks import DEFAULT_TOKEN, FakeDatabricks
from fakes.gateway import FakeGateway

README = Path(__file__).resolve().parents[1] / "README.md"
FAST = {"max_retries": 3, "backoff_factor": 0.01, "backoff_max": 0.05}
CHAT = {"messages": [{"role": "user", "content": "Hello"}]}
EXTERNAL_CHAT = {
    "name": "gpt",
    "external_model": {"name": "gpt-4", "provider": "openai", "task": "llm/v1/chat", "openai_config": {"openai_api_key": "{{secrets/s/k}}"}},
}

#: First cell of each README row -> the test that checks it.
ROWS = {
    "`get_deploy_client()` with no target set": "test_no_target_is_an_error_not_none",
    "the errors raised": "test_errors_are_deployment_errors_with_mlflow_codes",
    "`get_deploy_client(uri, **options)`": "test_options_reach_the_client",
    "a completion or query POST that got 500 or 502, or whose connection dropped after sending": "test_a_failed_completion_is_not_sent_again",
    "Databricks `create_endpoint` / `update_endpoint`": "test_databricks_create_endpoint_waits_unless_told_not_to",
    "Databricks `create_deployment`": "test_databricks_create_deployment_serves_a_model_version",
    "SageMaker config keys": "test_sagemaker_config_keys_are_checked_and_read_as_words",
    "NaN and infinities in a request body": "test_requests_write_nan_as_null_and_answers_are_read_with_tokens",
    "a request to an MLflow model with a signature: a fraction in a `long` column, an `integer` out of range, a missing boolean": "test_values_mlflow_converts_silently_are_refused",
    "serving an MLflow model saved as pickle, cloudpickle or skops": "test_mlflow_model_directories_load_without_mlflow_or_its_switch",
    "status and waiting": "test_every_client_has_status_and_waiting",
}


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch, tmp_path):
    scrub_environment(monkeypatch, tmp_path)
    for name in ("DEPLOYFLOW_TARGET", "MLFLOW_DEPLOYMENTS_TARGET"):
        monkeypatch.delenv(name, raising=False)


def readme_rows() -> list[str]:
    text = README.read_text(encoding="utf-8")
    section = text.split("## Differences from MLflow", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("| ") and not line.startswith("| ---")]
    return [re.split(r"\s\|\s", row.strip("| "))[0] for row in rows[1:]]  # rows[0] is the header


def test_every_readme_row_has_a_test_and_every_test_a_row():
    assert readme_rows() == list(ROWS)
    tests = {name for name, value in globals().items() if name.startswith("test_") and inspect.isfunction(value)}
    assert set(ROWS.values()) <= tests


def test_no_target_is_an_error_not_none():
    deployflow.set_deployments_target(None)
    with pytest.raises(TargetError, match="No deployment target is set"):
        get_deploy_client()


def test_errors_are_deployment_errors_with_mlflow_codes():
    with pytest.raises(UnknownTargetError) as caught:
        get_deploy_client("nosuchtarget")
    assert isinstance(caught.value, DeploymentError)
    assert caught.value.error_code == "RESOURCE_DOES_NOT_EXIST"  # MLflow's code for an unknown target
    assert not any(cls.__module__.startswith("mlflow") for cls in type(caught.value).__mro__)


def test_options_reach_the_client():
    with FakeGateway() as fake, get_deploy_client(fake.url, timeout=7, max_retries=2) as client:
        settings = client.options if isinstance(client.options, dict) else {}
        assert settings.get("timeout") == 7 and settings.get("max_retries") == 2


def test_a_failed_completion_is_not_sent_again():
    with FakeGateway() as fake, get_deploy_client(fake.url, **FAST) as client:
        endpoint = fake.endpoints[0]["name"]
        path = f"/endpoints/{endpoint}/invocations"
        for status in (500, 502):
            before = len(fake.requests_to("POST", path))
            fake.fail(status, {"error_code": "INTERNAL_ERROR", "message": "boom"}, method="POST", path=path)
            with pytest.raises(DeploymentError) as caught:
                client.predict(endpoint=endpoint, inputs=CHAT)
            assert caught.value.status_code == status and not caught.value.retryable
            assert len(fake.requests_to("POST", path)) - before == 1, status
        before = len(fake.requests_to("POST", path))
        fake.fail(503, {"error_code": "TEMPORARILY_UNAVAILABLE", "message": "busy"}, method="POST", path=path)
        client.predict(endpoint=endpoint, inputs=CHAT)  # 503: not processed, so asked again
        assert len(fake.requests_to("POST", path)) - before == 2
    with FakeGateway() as fake, get_deploy_client(fake.url, retry_non_idempotent=True, **FAST) as widened:
        endpoint = fake.endpoints[0]["name"]
        path = f"/endpoints/{endpoint}/invocations"
        fake.fail(500, {"error_code": "INTERNAL_ERROR", "message": "boom"}, method="POST", path=path)
        widened.predict(endpoint=endpoint, inputs=CHAT)
        assert len(fake.requests_to("POST", path)) == 2
    assert issubclass(OutcomeUnknownError, DeploymentError)  # the dropped connection: tests/test_http_edges.py


def test_databricks_create_endpoint_waits_unless_told_not_to():
    fast = {"poll_interval": 0.01, "max_poll_interval": 0.05, "wait_timeout": 10, **FAST}
    with FakeDatabricks() as fake, get_deploy_client("databricks", host=fake.url, token=DEFAULT_TOKEN, **fast) as client:
        created = client.create_endpoint("waited", {"served_entities": [EXTERNAL_CHAT]})
        assert created["state"]["ready"] == "READY"
        at_once = client.create_endpoint("at-once", {"served_entities": [EXTERNAL_CHAT], "wait": False})
        assert at_once["state"]["ready"] == "NOT_READY"
    with FakeDatabricks() as fake, get_deploy_client("databricks", host=fake.url, token=DEFAULT_TOKEN, wait=False, **fast) as client:
        assert client.create_endpoint("option", {"served_entities": [EXTERNAL_CHAT]})["state"]["ready"] == "NOT_READY"


def test_databricks_create_deployment_serves_a_model_version():
    fast = {"poll_interval": 0.01, "max_poll_interval": 0.05, "wait_timeout": 10, **FAST}
    with FakeDatabricks() as fake, get_deploy_client("databricks", host=fake.url, token=DEFAULT_TOKEN, **fast) as client:
        deployment = client.create_deployment("churn", "models:/main.default.churn/3")
        assert deployment["state"] == "READY" and deployment["endpoint"] == "churn"


def test_sagemaker_config_keys_are_checked_and_read_as_words():
    from deployflow import InvalidInputError
    from deployflow.targets.sagemaker.config import deployment_settings

    with pytest.raises(InvalidInputError, match="Known keys: archive"):
        deployment_settings({"bucket_name": "models"}, operation="create")  # MLflow's docs' own key
    assert deployment_settings({"synchronous": "true", "archive": "yes"}, operation="create").archive is True


def test_requests_write_nan_as_null_and_answers_are_read_with_tokens():
    import math

    import pandas as pd

    from deployflow import PredictionsResponse
    from deployflow.payloads import encode_request

    body, _ = encode_request(pd.DataFrame({"a": [1.0, float("nan"), float("inf")]}))
    assert b"null" in body and b"NaN" not in body and b"Infinity" not in body
    answer = PredictionsResponse.from_json('{"predictions": [NaN, Infinity, -Infinity, 1.5]}')
    assert math.isnan(answer["predictions"][0]) and answer["predictions"][1:] == [math.inf, -math.inf, 1.5]
    assert answer.to_json() == '{"predictions": [NaN, Infinity, -Infinity, 1.5]}'


def test_values_mlflow_converts_silently_are_refused():
    import json as _json

    from deployflow.payloads import decode_request
    from deployflow.targets.local.enforcement import InputEnforcer, SignatureError
    from deployflow.targets.local.signature import parse_signature

    def refused(kind: str, value: object) -> str:
        schema = parse_signature({"inputs": _json.dumps([{"type": kind, "name": "v", "required": True}])})
        body = _json.dumps({"dataframe_split": {"columns": ["v"], "data": [[value], [value]]}}).encode()
        data, _, _ = decode_request(body, "application/json")
        with pytest.raises(SignatureError) as caught:
            InputEnforcer(schema)(data)
        assert caught.value.status_code == 400 and "'v'" in caught.value.message
        return caught.value.message

    refused("long", 1.5)
    refused("integer", 3_000_000_000)
    refused("boolean", None)


def test_mlflow_model_directories_load_without_mlflow_or_its_switch(monkeypatch):
    import subprocess
    import sys

    fixtures = Path(__file__).parent / "fixtures" / "mlflow_models"
    monkeypatch.delenv("MLFLOW_ALLOW_PICKLE_DESERIALIZATION", raising=False)
    script = (
        "import sys; from deployflow.targets.local.models import load_model\n"
        "for path in sys.argv[1:]: load_model(path)\n"
        "assert 'mlflow' not in sys.modules\n"
        "print('ok')\n"
    )
    dirs = [str(fixtures / name) for name in ("sklearn_logistic_pickle", "sklearn_logistic_cloudpickle", "sklearn_logistic_skops")]
    done = subprocess.run([sys.executable, "-c", script, *dirs], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr


def test_every_client_has_status_and_waiting():
    class MlflowShapedClient(BaseDeploymentClient):
        """Only MLflow's methods: what a plugin written for mlflow.deployments defines."""

        def create_deployment(self, name, model_uri, flavor=None, config=None, endpoint=None):
            return {"name": name}

        def update_deployment(self, name, model_uri=None, flavor=None, config=None, endpoint=None):
            return {"name": name}

        def delete_deployment(self, name, config=None, endpoint=None):
            return None

        def list_deployments(self, endpoint=None):
            return [{"name": "m1"}]

        def get_deployment(self, name, endpoint=None):
            return {"name": name}

        def predict(self, deployment_name=None, inputs=None, endpoint=None):
            return {"predictions": []}

    client = MlflowShapedClient("shaped")
    assert client.deployment_status("m1").state is State.READY
    assert client.wait_for_deployment("m1", timeout=5).state is State.READY
    for name in ("endpoint_status", "wait_for_endpoint", "wait_for_deployment_async", "wait_for_endpoint_async"):
        assert callable(getattr(client, name))
