"""The hook's ``test_connection`` (the UI's *Test* button) against what each target really offers.

Hosted targets (an MLflow gateway, OpenAI) refuse ``list_deployments``; the test must use what they do
answer, and still report a wrong token or an unreachable host as a failure, without the token in the
message. The services are the fake HTTP servers of ``tests/fakes`` on 127.0.0.1, and the local target of
the session.
"""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from typing import Any

import pytest

import airflow_support as support
from deployflow import BaseDeploymentClient, NotSupportedError, register_target, unregister_target
from deployflow.integrations.airflow.hooks import DeploymentHook
from fakes.base import scrub_environment
from fakes.databricks import DEFAULT_TOKEN as DATABRICKS_TOKEN
from fakes.databricks import FakeDatabricks
from fakes.gateway import FakeGateway
from fakes.openai import DEFAULT_KEY as OPENAI_KEY
from fakes.openai import FakeOpenAI

GATEWAY_TOKEN = "gw-token-4b1f9d2e7a6c"
#: A wrong credential of no well-known shape: only the hook's own registration can mask it.
WRONG = "wrong-credential-8e3d5a1c9b7f"


@pytest.fixture(autouse=True)
def _no_ambient_credentials(monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> None:
    scrub_environment(monkeypatch, tmp_path)


def connect(monkeypatch: pytest.MonkeyPatch, conn_id: str, target: str, password: str | None, **extra: Any) -> str:
    """Define connection ``conn_id`` (Target URI ``target``, token ``password``, ``extra``) in the
    environment, as a deployment would; returns its id."""
    fields: dict[str, Any] = {"conn_type": "deployflow", "host": target, "extra": extra}
    if password is not None:
        fields["password"] = password
    monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", json.dumps(fields))
    return conn_id


def closed_port_url() -> str:
    """An http URL on 127.0.0.1 where nothing listens (connections are refused)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}"


def run_test(conn_id: str) -> tuple[bool, str]:
    ok, message = DeploymentHook(conn_id).test_connection()
    assert isinstance(message, str) and message
    return ok, message


@pytest.fixture
def gateway() -> Iterator[FakeGateway]:
    with FakeGateway(token=GATEWAY_TOKEN) as service:
        yield service


@pytest.fixture
def openai() -> Iterator[FakeOpenAI]:
    with FakeOpenAI() as service:
        yield service


@pytest.fixture
def databricks() -> Iterator[FakeDatabricks]:
    with FakeDatabricks() as service:
        service.add_ready_endpoint("churn", [{"name": "churn-1", "entity_name": "main.ml.churn", "entity_version": "1",
                                              "workload_size": "Small", "scale_to_zero_enabled": True}])
        yield service


def test_a_valid_gateway_connection_passes(monkeypatch, gateway):
    conn = connect(monkeypatch, "gw_ok", gateway.url, GATEWAY_TOKEN, token_option="token")
    ok, message = run_test(conn)
    assert ok is True, message
    assert message == "Connected: the target lists 3 endpoint(s)"
    assert gateway.requests_to("GET", "/api/2.0/endpoints/")  # it really asked the server


def test_a_gateway_connection_naming_an_endpoint_checks_that_endpoint(monkeypatch, gateway):
    conn = connect(monkeypatch, "gw_named", gateway.url, GATEWAY_TOKEN, token_option="token", test_endpoint="chat")
    ok, message = run_test(conn)
    assert (ok, message) == (True, "Connected: endpoint 'chat' is READY")
    assert [r.path for r in gateway.requests] == ["/api/2.0/endpoints/chat"]

    missing = connect(monkeypatch, "gw_missing", gateway.url, GATEWAY_TOKEN, token_option="token", test_endpoint="nope")
    ok, message = run_test(missing)
    assert ok is False
    assert message.startswith("Connected, but the target has no endpoint 'nope'")


def test_a_wrong_gateway_token_fails_without_showing_it(monkeypatch, gateway):
    conn = connect(monkeypatch, "gw_wrong", gateway.url, WRONG, token_option="token")
    ok, message = run_test(conn)
    assert ok is False
    assert "401" in message and WRONG not in message and GATEWAY_TOKEN not in message


def test_an_unreachable_gateway_fails(monkeypatch):
    url = closed_port_url()
    conn = connect(monkeypatch, "gw_down", url, GATEWAY_TOKEN, token_option="token")
    ok, message = run_test(conn)
    assert ok is False
    assert url in message and "refused" in message.lower(), message
    assert GATEWAY_TOKEN not in message


def test_a_valid_openai_connection_passes(monkeypatch, openai):
    conn = connect(monkeypatch, "oai_ok", "openai", OPENAI_KEY, token_option="api_key", base_url=f"{openai.url}/v1")
    ok, message = run_test(conn)
    assert (ok, message) == (True, "Connected: the target lists 4 endpoint(s)")

    named = connect(
        monkeypatch, "oai_named", "openai", OPENAI_KEY, token_option="api_key", base_url=f"{openai.url}/v1",
        test_endpoint="gpt-4o-mini",
    )
    assert run_test(named) == (True, "Connected: endpoint 'gpt-4o-mini' is READY")


def test_a_wrong_openai_key_fails_without_showing_it(monkeypatch, openai):
    # The fake quotes a wrong key back in its 401 message, as a careless service would.
    conn = connect(monkeypatch, "oai_wrong", "openai", WRONG, token_option="api_key", base_url=f"{openai.url}/v1")
    ok, message = run_test(conn)
    assert ok is False
    assert "401" in message and "Incorrect API key" in message
    assert WRONG not in message and OPENAI_KEY not in message


def test_a_valid_databricks_connection_passes(monkeypatch, databricks):
    conn = connect(monkeypatch, "dbx_ok", "databricks", DATABRICKS_TOKEN, token_option="token", host=databricks.url)
    assert run_test(conn) == (True, "Connected: the target lists 1 endpoint(s)")
    named = connect(
        monkeypatch, "dbx_named", "databricks", DATABRICKS_TOKEN, token_option="token", host=databricks.url,
        test_endpoint="churn",
    )
    assert run_test(named) == (True, "Connected: endpoint 'churn' is READY")


def test_a_wrong_databricks_token_fails_without_showing_it(monkeypatch, databricks):
    conn = connect(monkeypatch, "dbx_wrong", "databricks", WRONG, token_option="token", host=databricks.url)
    ok, message = run_test(conn)
    assert ok is False
    assert "403" in message and WRONG not in message and DATABRICKS_TOKEN not in message


def test_the_local_target_passes_and_a_missing_named_endpoint_fails(monkeypatch):
    ok, message = run_test("deployflow_test")
    assert ok is True and message.startswith("Connected: the target lists "), message
    conn = connect(monkeypatch, "local_named", support.TARGET_URI, support.TOKEN, test_endpoint="never-made")
    ok, message = run_test(conn)
    assert ok is False and "never-made" in message and support.TOKEN not in message


def test_test_endpoint_is_not_passed_to_the_client():
    from deployflow.integrations.airflow.hooks.deployment import client_arguments

    uri, options = client_arguments("c", "local", None, {"test_endpoint": "front", "timeout": 5})
    assert (uri, options) == ("local", {"timeout": 5})
    # The connection form's field arrives with Airflow's prefix.
    assert client_arguments("c", "local", None, {"extra__deployflow__test_endpoint": "front"}) == ("local", {})


def test_the_connection_form_has_a_test_endpoint_field():
    from airflow.providers_manager import ProvidersManager

    assert "extra__deployflow__test_endpoint" in ProvidersManager().connection_form_widgets


def test_a_target_without_endpoints_is_tested_by_listing_its_deployments(monkeypatch):
    # The test plugin's client has deployments only: its list_endpoints is the base class's refusal.
    conn = connect(monkeypatch, "plugin_ok", "optionstarget", None, timeout=3)
    assert run_test(conn) == (True, "Connected: the target lists 0 deployment(s)")


class _NoListings(BaseDeploymentClient):
    """A target that lists neither endpoints nor deployments (as a scoring-only plugin might)."""

    def list_deployments(self, endpoint=None):  # type: ignore[no-untyped-def]
        raise NotSupportedError("list_deployments is not offered by this target")

    def create_deployment(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        raise NotSupportedError("create_deployment is not offered by this target")

    update_deployment = delete_deployment = get_deployment = predict = create_deployment


def test_a_target_that_offers_nothing_to_test_with_fails(monkeypatch):
    register_target("nolistings", _NoListings)
    try:
        conn = connect(monkeypatch, "nothing", "nolistings", WRONG)
        ok, message = run_test(conn)
    finally:
        unregister_target("nolistings")
    assert ok is False and "list_deployments is not offered" in message and WRONG not in message


def test_aws_credentials_in_the_extra_count_as_secrets():
    """A sagemaker connection may hold its AWS keys in the extra: they are masked like the password."""
    from deployflow.integrations.airflow.hooks.deployment import _secret_extras

    extra = {"aws_access_key_id": "AKIAEXAMPLE", "aws_secret_access_key": "wJalr/secret", "aws_session_token": "FwoG-token",
             "region_name": "eu-west-1"}
    assert sorted(_secret_extras(extra)) == ["FwoG-token", "wJalr/secret"]
