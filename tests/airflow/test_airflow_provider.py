"""Provider registration, the ``deployflow`` connection type, and the hook."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

import airflow_support as support
from deployflow import BaseDeploymentClient, InvalidInputError
from deployflow.integrations.airflow.hooks import DeploymentHook
from deployflow.integrations.airflow.hooks.deployment import client_arguments

HOOK_CLASS = "deployflow.integrations.airflow.hooks.deployment.DeploymentHook"


def test_airflow_providers_list_shows_the_provider():
    listed = subprocess.run(
        [sys.executable, "-m", "airflow", "providers", "list", "--output", "json"],
        capture_output=True, text=True, timeout=120,
    )
    assert listed.returncode == 0, listed.stderr[-3000:]
    providers = {entry["package_name"]: entry for entry in json.loads(listed.stdout)}
    assert "deployflow" in providers, sorted(providers)
    assert providers["deployflow"]["version"] == __import__("deployflow").__version__


def test_providers_manager_knows_the_connection_type_and_its_form():
    from airflow.providers_manager import ProvidersManager
    from airflow.sdk.providers_manager_runtime import ProvidersManagerTaskRuntime

    hook = ProvidersManagerTaskRuntime().hooks["deployflow"]  # what workers use to find the hook
    assert hook is not None
    assert hook.hook_class_name == HOOK_CLASS
    assert hook.connection_id_attribute_name == "deployflow_conn_id"
    assert hook.package_name == "deployflow" and hook.connection_testable

    manager = ProvidersManager()  # what the API server uses to draw the connection form
    assert "deployflow" in manager.providers
    behaviour = manager.field_behaviours["deployflow"]
    assert behaviour["relabeling"] == {"host": "Target URI", "password": "Token"}
    assert {"schema", "port", "login"} <= set(behaviour["hidden_fields"])
    assert "extra__deployflow__token_option" in manager.connection_form_widgets
    ours = [info for info in manager.trigger if info.package_name == "deployflow"]
    assert sorted(info.trigger_class_name for info in ours) == [
        "deployflow.integrations.airflow.triggers.promotion", "deployflow.integrations.airflow.triggers.readiness"]


def test_connection_fields_become_target_and_options():
    assert client_arguments("c", "local", None, {}) == ("local", {})
    uri, options = client_arguments(
        "c",
        "ignored-when-extra-says",
        "tok-123456",
        {"target_uri": "serving+https://models", "timeout": 30, "max_retries": "", "extra__deployflow__verify": False},
    )
    assert uri == "serving+https://models"
    assert options == {"timeout": 30, "verify": False, "auth_token": "tok-123456"}
    assert client_arguments("c", "local", "tok-123456", {"token_option": "api_key"}) == (
        "local", {"api_key": "tok-123456"}
    )
    with pytest.raises(InvalidInputError, match="names no deployflow target"):
        client_arguments("c", None, None, {})
    with pytest.raises(InvalidInputError, match="keep the token in the password"):
        client_arguments("c", "local", "tok-123456", {"auth_token": "other-secret"})


def test_hook_builds_a_client_without_touching_the_environment():
    before = dict(os.environ)
    hook = DeploymentHook("deployflow_test")
    client = hook.get_conn()
    try:
        assert isinstance(client, BaseDeploymentClient)
        assert client.target_uri == support.TARGET_URI
        assert hook.get_conn() is client  # one client per hook
        assert isinstance(client.list_deployments(), list)  # it reaches the session's state directory
        assert support.TOKEN not in repr(client) and support.TOKEN not in repr(hook)
    finally:
        hook.close()
    assert dict(os.environ) == before


async def test_hook_builds_a_client_in_an_event_loop():
    hook = DeploymentHook("deployflow_test")
    client = await hook.aget_conn()
    assert client.target_uri == support.TARGET_URI
    await hook.aclose()


def test_hook_test_connection_reports_success_and_failure(monkeypatch):
    assert DeploymentHook("deployflow_test").test_connection()[0] is True
    monkeypatch.setenv(
        "AIRFLOW_CONN_DEPLOYFLOW_BROKEN",
        json.dumps({"conn_type": "deployflow", "host": "no-such-target", "password": support.TOKEN}),
    )
    ok, message = DeploymentHook("deployflow_broken").test_connection()
    assert ok is False and "no-such-target" in message and support.TOKEN not in message


def test_the_deployment_link_is_registered_and_on_the_operators_that_deploy():
    from airflow.providers_manager import ProvidersManager

    from deployflow.integrations.airflow.get_provider_info import get_provider_info
    from deployflow.integrations.airflow.links import DeploymentLink
    from deployflow.integrations.airflow.operators import (
        CreateDeploymentOperator,
        CreateEndpointOperator,
        UpdateDeploymentOperator,
        UpdateEndpointOperator,
    )

    link_class = "deployflow.integrations.airflow.links.DeploymentLink"
    assert get_provider_info()["extra-links"] == [link_class]
    assert link_class in ProvidersManager().extra_links_class_names  # Airflow loaded and accepted it
    for operator in (CreateDeploymentOperator, UpdateDeploymentOperator, CreateEndpointOperator, UpdateEndpointOperator):
        assert [type(link) for link in operator.operator_extra_links] == [DeploymentLink], operator
        assert [link.name for link in operator.operator_extra_links] == ["Deployment"]
