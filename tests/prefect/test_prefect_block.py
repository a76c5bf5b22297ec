"""The DeploymentTarget block: save, load, build a client; registration through the collections entry point."""

from __future__ import annotations

import os
import subprocess
import sys
import traceback
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


def _everything_an_error_shows(error: BaseException) -> str:
    """Every text a caller, a log or a traceback can get out of ``error`` and the errors it chains."""
    parts: list[str] = []
    seen: set[int] = set()
    pending: list[BaseException | None] = [error]
    while pending:
        link = pending.pop()
        if link is None or id(link) in seen:
            continue
        seen.add(id(link))
        parts += [str(link), repr(link), repr(link.args)]
        if isinstance(link, ValidationError):
            parts += [repr(link.errors()), link.json()]
        pending += [link.__cause__, link.__context__]
    parts.append("".join(traceback.format_exception(error)))
    return "\n".join(parts)


def test_a_refused_credential_is_not_echoed_by_the_validation_error():
    secret = "sk-live-7Qd2mX9pLr4Tz8Wc1Nb6Hy3Kf5Jg0V"  # 38 characters, the shape of a real key
    assert len(secret) == 38
    with pytest.raises(ValidationError) as raised:
        DeploymentTarget(target_uri="local", client_options={"api_key": secret, "timeout": 30})
    error = raised.value

    shown = _everything_an_error_shows(error)
    # Not the secret, nor any 6 characters of it in a row (pydantic abbreviates long values).
    pieces = {secret[i:i + 6] for i in range(len(secret) - 5)}
    assert not [piece for piece in pieces if piece in shown], shown
    # Still a useful refusal: which option, where it belongs, on which field.
    assert "client_options ['api_key'] look like credentials" in str(error)
    assert "put them in auth_token or secret_options" in str(error)
    assert [e["loc"] for e in error.errors()] == [("client_options",)]


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
