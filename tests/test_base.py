"""The base client: MLflow's defaults, and the status deployflow derives for plugins that give none."""

from __future__ import annotations

import inspect

import pytest

from deployflow import (
    BaseDeploymentClient,
    DeploymentError,
    NotFoundError,
    NotSupportedError,
    State,
    Status,
)
from deployflow.status import status_from_record


class RecordClient(BaseDeploymentClient):
    """Answers get_deployment/get_endpoint from a dict, like a minimal MLflow plugin."""

    def __init__(self, target_uri="records", records=None, **options):
        super().__init__(target_uri, **options)
        self.records = records or {}

    def create_deployment(self, name, model_uri, flavor=None, config=None, endpoint=None):
        self.records[name] = {"name": name}
        return self.records[name]

    def update_deployment(self, name, model_uri=None, flavor=None, config=None, endpoint=None):
        return None

    def delete_deployment(self, name, config=None, endpoint=None):
        self.records.pop(name, None)

    def list_deployments(self, endpoint=None):
        return list(self.records.values())

    def get_deployment(self, name, endpoint=None):
        if name not in self.records:
            raise NotFoundError(f"no deployment {name}")
        return self.records[name]

    def predict(self, deployment_name=None, inputs=None, endpoint=None):
        return {"predictions": []}


def test_signatures_match_mlflow():
    expected = {
        "create_deployment": "(self, name, model_uri, flavor=None, config=None, endpoint=None)",
        "update_deployment": "(self, name, model_uri=None, flavor=None, config=None, endpoint=None)",
        "delete_deployment": "(self, name, config=None, endpoint=None)",
        "list_deployments": "(self, endpoint=None)",
        "get_deployment": "(self, name, endpoint=None)",
        "predict": "(self, deployment_name=None, inputs=None, endpoint=None)",
        "predict_stream": "(self, deployment_name=None, inputs=None, endpoint=None)",
        "explain": "(self, deployment_name=None, df=None, endpoint=None)",
        "create_endpoint": "(self, name, config=None)",
        "update_endpoint": "(self, endpoint, config=None)",
        "delete_endpoint": "(self, endpoint)",
        "list_endpoints": "(self)",
        "get_endpoint": "(self, endpoint)",
    }
    for method, text in expected.items():
        sig = inspect.signature(getattr(BaseDeploymentClient, method))
        plain = sig.replace(
            parameters=[p.replace(annotation=inspect.Parameter.empty) for p in sig.parameters.values()],
            return_annotation=inspect.Signature.empty,
        )
        assert str(plain) == text, method
    assert BaseDeploymentClient.__abstractmethods__ == {
        "create_deployment",
        "update_deployment",
        "delete_deployment",
        "list_deployments",
        "get_deployment",
        "predict",
    }


def test_defaults_raise_not_supported_with_mlflow_wording():
    client = RecordClient()
    with pytest.raises(NotSupportedError, match="not yet supported for this deployment target"):
        client.explain("d", None)
    with pytest.raises(NotImplementedError):  # MLflow raises NotImplementedError here
        client.predict_stream("d", {})
    for call in (
        lambda: client.create_endpoint("e"),
        lambda: client.update_endpoint("e"),
        lambda: client.delete_endpoint("e"),
        lambda: client.list_endpoints(),
        lambda: client.get_endpoint("e"),
    ):
        with pytest.raises(NotSupportedError, match="unimplemented in base client"):
            call()


def test_default_status_reads_the_record():
    client = RecordClient(
        records={
            "plain": {"name": "plain"},
            "creating": {"name": "creating", "state": "Creating"},
            "serving": {"name": "serving", "status": "InService"},
            "broken": {"name": "broken", "state": "Failed", "reason": "image pull failed"},
            "databricks": {"name": "databricks", "state": {"ready": "NOT_READY"}},
        }
    )
    assert client.deployment_status("plain").state is State.READY
    assert client.deployment_status("creating") == Status(State.PENDING, reason="Creating")
    assert client.deployment_status("serving").state is State.READY
    assert client.deployment_status("broken") == Status(State.FAILED, reason="image pull failed")
    assert client.deployment_status("databricks").state is State.PENDING
    missing = client.deployment_status("missing")
    assert missing.state is State.NOT_FOUND and "no deployment missing" in missing.reason


def test_default_status_understands_mlflow_style_not_found():
    class MlflowStyleError(Exception):
        error_code = "RESOURCE_DOES_NOT_EXIST"

    class Client(RecordClient):
        def get_deployment(self, name, endpoint=None):
            raise MlflowStyleError("nope")

    assert Client().deployment_status("x").state is State.NOT_FOUND


def test_default_status_propagates_other_errors():
    class Client(RecordClient):
        def get_deployment(self, name, endpoint=None):
            raise DeploymentError("boom")

    with pytest.raises(DeploymentError, match="boom"):
        Client().deployment_status("x")


def test_wait_with_default_status_after_create():
    client = RecordClient()
    client.create_deployment("m", "model")
    assert client.wait_for_deployment("m", timeout=1).is_ready


def test_endpoint_status_without_endpoints_is_not_supported():
    with pytest.raises(NotSupportedError):
        RecordClient().endpoint_status("e")


def test_status_value_object():
    status = Status("ready")
    assert status.state is State.READY and status.is_ready and status.is_terminal
    assert Status(State.PENDING).is_terminal is False
    assert Status(State.FAILED, "x").to_dict() == {"state": "FAILED", "reason": "x"}
    assert Status(State.READY, raw={"big": 1}) == Status(State.READY)
    assert "big" not in repr(Status(State.READY, raw={"big": 1}))
    assert State.READY == "READY"
    with pytest.raises(ValueError):
        Status("sideways")


def test_status_from_record_unknown_words_are_pending_not_success():
    # A state outside the known-good set is never success (the SageMaker operator bug).
    assert status_from_record({"state": "RollingBack"}).state is State.PENDING
    assert status_from_record({"state": "UpdateRollbackFailed"}).state is State.FAILED
    assert status_from_record({"state": "OutOfService"}).state is State.FAILED


def test_context_manager_and_repr_hide_credentials():
    with RecordClient("records://user:hunter2secret@host") as client:
        assert "hunter2secret" not in repr(client)
