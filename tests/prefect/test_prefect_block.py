"""The DeploymentTarget block: save, load, build a client; registration through the collections entry point."""

from __future__ import annotations

import os
import subprocess
import sys
from importlib import metadata

import pytest
from pydantic import SecretStr, ValidationError

from deployflow import BaseDeploymentClient
from deployflow.integrations.prefect import DeploymentTarget


def test_block_round_trip_builds_a_working_client(target_uri, monkeypatch):
    token = "rt-token-5f2c9a71d3"
    DeploymentTarget(
        target_uri=target_uri, auth_token=token, client_options={"timeout": 42, "max_retries": 2}
    ).save("round-trip", overwrite=True)
    # The client must come from the block's fields alone, and leave the environment as it was.
    monkeypatch.delenv("DEPLOYFLOW_HOME", raising=False)
    environment_before = dict(os.environ)

    loaded = DeploymentTarget.load("round-trip")

    assert loaded.target_uri == target_uri
    assert isinstance(loaded.auth_token, SecretStr)
    assert loaded.auth_token.get_secret_value() == token
    assert loaded.client_options == {"timeout": 42, "max_retries": 2}
    assert token not in repr(loaded)
    with loaded.get_client() as client:
        assert isinstance(client, BaseDeploymentClient)
        assert client.target_uri == target_uri
        assert client.options["timeout"] == 42 and client.options["max_retries"] == 2
        assert isinstance(client.list_deployments(), list)  # the state directory named by the URI
    assert dict(os.environ) == environment_before


def test_stored_block_keeps_secrets_out_of_the_plain_fields():
    DeploymentTarget(
        target_uri="local", auth_token="stored-secret-77aa31", secret_options={"password": "stored-pw-90fe12"}
    ).save("stored", overwrite=True)
    from prefect import get_client

    with get_client(sync_client=True) as client:
        document = client.read_block_document_by_name("stored", "deployflow-deployment-target", include_secrets=False)
    shown = str(document.data)
    assert "stored-secret-77aa31" not in shown and "stored-pw-90fe12" not in shown
    assert {"auth_token", "secret_options.*"} <= set(document.block_schema.fields["secret_fields"])
    loaded = DeploymentTarget.load("stored")
    assert loaded.secret_options.get_secret_value() == {"password": "stored-pw-90fe12"}
    assert loaded.client_kwargs()["password"] == "stored-pw-90fe12"


def test_credentials_in_plain_options_are_refused():
    with pytest.raises(ValidationError, match="auth_token or secret_options"):
        DeploymentTarget(target_uri="local", client_options={"password": "hunter2-hunter2"})


def test_collections_entry_point_points_at_the_package():
    points = [ep for ep in metadata.entry_points(group="prefect.collections") if ep.value == "deployflow.integrations.prefect"]
    assert points, "deployflow is not registered in the prefect.collections entry-point group (reinstall it)"
    assert points[0].load().DeploymentTarget is DeploymentTarget


def test_prefect_block_register_finds_the_block(prefect_server):
    prefect_cli = os.path.join(os.path.dirname(sys.executable), "prefect")
    result = subprocess.run(
        [prefect_cli, "block", "register", "-m", "deployflow.integrations.prefect"],
        env={**os.environ, "PREFECT_API_URL": prefect_server},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "deployflow Deployment Target" in result.stdout
