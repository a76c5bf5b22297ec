"""The redactor masks credential values, never the words around them.

Two kinds of text go through :func:`deployflow.redaction.redact`: prose (help texts, error messages)
that must come out exactly as written, and text that may hold a credential (echoed headers, config
lines, URLs, dict reprs) whose value must be masked. Both are tested here with realistic examples.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from deployflow import AuthenticationError, InvalidInputError, cli, get_deploy_client, target_help
from deployflow.redaction import MASK, redact, register_secret
from deployflow.registry import load_target
from fakes.base import scrub_environment

BUILTIN_TARGETS = ["databricks", "openai", "https://gateway.example.com", "serving+http://127.0.0.1:5000", "local"]


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch, tmp_path):
    scrub_environment(monkeypatch, tmp_path)


# --------------------------------------------------------------------------------------------------
# Prose comes out unchanged
# --------------------------------------------------------------------------------------------------

PROSE = [
    # the Databricks target's own error and help wording
    (
        "No Databricks host and token found. Pass host= and token= to get_deploy_client, set DATABRICKS_HOST "
        "and DATABRICKS_TOKEN, or add a profile with host and token to ~/.databrickscfg"
    ),
    "Options host= and token= win; host and token otherwise come together from one place.",
    "No OpenAI API key: pass api_key= to get_deploy_client or set OPENAI_API_KEY",
    # placeholders in help texts
    "token                 sent as 'Authorization: Bearer <token>' (env MLFLOW_TRACKING_TOKEN)",
    "credentials in the URL (https://user:password@host) are used as basic auth",
    "use -C token=TOKEN or -C token=$DATABRICKS_TOKEN, or token=<your token>",
    "azure_ad (a bearer token instead); bearer tokens expire",
    # sentences where a credential word is followed by a separator and a word
    "Set the token: run `databricks configure --token` first.",
    "password: see the team vault",
    "Missing token = no access.",
    # data that merely mentions tokens
    "usage: {'prompt_tokens': 12, 'completion_tokens': 18, 'total_tokens': 30}",
    "next_page_token: None",
    "DatabricksCredentials(host='https://adb-1.azuredatabricks.net', source='options')",
    "token=*** and password: ***",
]


@pytest.mark.parametrize("text", PROSE)
def test_prose_comes_out_unchanged(text):
    assert redact(text) == text


def raw_help(uri: str) -> str:
    """The help text as the target module writes it (deployflow.target_help returns it redacted)."""
    return load_target(uri).target_help()


@pytest.mark.parametrize("uri", BUILTIN_TARGETS)
def test_every_builtin_help_text_comes_out_unchanged(uri):
    text = raw_help(uri)
    assert redact(text) == text
    assert target_help(uri) == text


def test_every_command_help_comes_out_unchanged():
    runner = CliRunner()
    for name in [None, *cli.cli.commands]:
        result = runner.invoke(cli.cli, [name, "--help"] if name else ["--help"])
        assert result.exit_code == 0, result.output
        assert redact(result.output) == result.output, name


def test_deployflow_help_prints_the_databricks_help_as_written():
    expected = raw_help("databricks")
    result = CliRunner().invoke(cli.cli, ["help", "-t", "databricks"])
    assert result.exit_code == 0
    assert result.output == expected + "\n"
    assert "Options host= and token= win;" in result.output
    script = Path(sys.executable).with_name("deployflow")
    done = subprocess.run([str(script), "help", "-t", "databricks"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and done.stdout == expected + "\n"


def test_error_messages_of_the_targets_come_out_unchanged(tmp_path):
    with get_deploy_client("databricks", config_file=str(tmp_path / "none")) as client:
        with pytest.raises(AuthenticationError) as caught:
            client.list_endpoints()
    assert "Pass host= and token= to get_deploy_client, set DATABRICKS_HOST and DATABRICKS_TOKEN" in str(caught.value)
    with pytest.raises(AuthenticationError) as caught:
        get_deploy_client("openai")
    assert "pass api_key= to get_deploy_client or set OPENAI_API_KEY" in str(caught.value)
    with pytest.raises(InvalidInputError) as caught:
        get_deploy_client("https://gateway.example.com", username="ann")
    assert str(caught.value) == "Basic credentials need both options username and password"


# --------------------------------------------------------------------------------------------------
# Credential values are masked
# --------------------------------------------------------------------------------------------------

DATABRICKS_PAT = "dapi" + "0123456789abcdef" * 2
JWT = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0In0.c2lnbmF0dXJl"
GITHUB_TOKEN = "ghp_16C7e42F292c6912E7710c838347Ae178B4a"

SECRETS_IN_TEXT = [
    (f"Authorization: Bearer {JWT}", JWT),
    (f"{{'Authorization': 'Bearer {GITHUB_TOKEN}'}}", GITHUB_TOKEN),
    ("headers={'Authorization': 'Basic dXNlcjpwYXNzd29yZA=='}", "dXNlcjpwYXNzd29yZA=="),
    (f"GET /api/2.0/endpoints/?token={GITHUB_TOKEN}&page=2", GITHUB_TOKEN),
    (f"token = {DATABRICKS_PAT}-2", DATABRICKS_PAT),
    (f"'token {GITHUB_TOKEN}\\n'", GITHUB_TOKEN),  # a config line without '=' as configparser quotes it
    (f"token {GITHUB_TOKEN}", GITHUB_TOKEN),
    ("password: hunter22", "hunter22"),
    ("{'password': 'correct-horse-battery'}", "correct-horse-battery"),
    ('{"api_key": "k-123456789"}', "k-123456789"),
    ("api-key: 0123456789abcdef0123456789abcdef", "0123456789abcdef0123456789abcdef"),
    ("X-API-Key: live_4f3a9b2c8d7e6f5a", "live_4f3a9b2c8d7e6f5a"),
    (f"DATABRICKS_TOKEN={DATABRICKS_PAT}", DATABRICKS_PAT),
    ("aws_secret_access_key=wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"),
    ("https://ann:pa55word@gateway.example.com/api", "pa55word"),
    ("https://ann:hunter@gateway.example.com/api", "hunter"),
    ("sk-proj-ABCDEFGHIJKLMNOPQRSTUV0123", "sk-proj-ABCDEFGHIJKLMNOPQRSTUV0123"),
    ('{"echo": "Bearer abcdefghijkl"}', "abcdefghijkl"),
]


@pytest.mark.parametrize(("text", "secret"), SECRETS_IN_TEXT)
def test_credential_values_are_masked(text, secret):
    cleaned = redact(text)
    assert secret not in cleaned and MASK in cleaned
    assert redact(cleaned) == cleaned  # masking twice changes nothing


def test_registered_secrets_are_masked_wherever_they_appear():
    # A letters-only secret in a position the shapes leave alone (a word after "password: ")
    secret = "correcthorsebatterystaple"
    register_secret(secret)
    for text in (
        f"password: {secret}",
        f"the service said: unknown user {secret}.",
        f"prefix{secret}suffix",
        f"['{secret}']",
    ):
        cleaned = redact(text)
        assert secret not in cleaned and MASK in cleaned, text
    assert redact("password: see the team vault") == "password: see the team vault"
