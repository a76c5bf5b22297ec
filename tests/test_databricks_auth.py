"""Databricks authentication as production runs it: service principals (OAuth machine-to-machine), Azure
service principals, ``auth_type`` in profiles, through databricks-sdk's unified ``Config``; and, without
databricks-sdk, personal access tokens exactly as before.

The workspace is the fake of ``tests/fakes/databricks.py`` on 127.0.0.1, with its OIDC discovery
documents and token endpoint (``/oidc/v1/token``). Without the SDK means a fresh interpreter in which a
``sys.meta_path`` finder makes ``import databricks`` fail as if it were not installed; deployflow's own
code is not patched.
"""

from __future__ import annotations

import copy
import json
import logging
import pickle
import socket
import subprocess
import sys
import textwrap
import threading
import time
import traceback

import pytest

from deployflow import AuthenticationError, TargetError, TransientError, get_deploy_client
from fakes.base import scrub_environment
from fakes.databricks import CLIENT_ID, CLIENT_SECRET, DEFAULT_TOKEN, FakeDatabricks, scrub_sdk_environment

try:
    import databricks.sdk  # noqa: F401
except ImportError:
    HAVE_SDK = False
else:
    HAVE_SDK = True
#: The tests of the SDK path (the last test, of the path without it, runs either way).
needs_sdk = pytest.mark.skipif(not HAVE_SDK, reason="the SDK path needs the 'databricks' extra")

FAST = {"poll_interval": 0.01, "max_poll_interval": 0.05, "wait_timeout": 10, "max_retries": 0}
AZURE_SECRET = "az-Secret-7Hq2Wm9Xc4Lp"


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch, tmp_path):
    scrub_environment(monkeypatch, tmp_path)
    scrub_sdk_environment(monkeypatch)


@pytest.fixture
def fake():
    with FakeDatabricks() as service:
        service.add_ready_endpoint("churn", [{"name": "churn-1", "entity_name": "main.ml.churn", "entity_version": "2",
                                              "workload_size": "Small", "scale_to_zero_enabled": True}])
        yield service


def closed_port_url() -> str:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{probe.getsockname()[1]}"


def bearer(request) -> str:
    return (request.header("Authorization") or "").removeprefix("Bearer ")


def rest_requests(fake):
    return [r for r in fake.requests if r.path.startswith(("/api/", "/serving-endpoints/"))]


def chain(error: BaseException) -> list[BaseException]:
    found, current = [], error
    while current is not None and current not in found:
        found.append(current)
        current = current.__cause__ or current.__context__
    return found


def everything_shown(error: BaseException) -> str:
    """What a caller, a log or a traceback can get out of an error and whatever it chains."""
    return "\n".join([*(f"{link!s} {link!r} {link.args!r}" for link in chain(error)), "".join(traceback.format_exception(error))])


# --------------------------------------------------------------------------------------------------
# OAuth machine-to-machine against the fake's token endpoint
# --------------------------------------------------------------------------------------------------


@needs_sdk
def test_a_service_principal_reaches_the_workspace_with_an_oauth_token(fake, caplog):
    caplog.set_level(logging.DEBUG)
    with get_deploy_client("databricks", host=fake.url, client_id=CLIENT_ID, client_secret=CLIENT_SECRET, **FAST) as client:
        assert client.list_endpoints()[0]["name"] == "churn"
        assert client.predict(endpoint="churn", inputs={"inputs": [[1, 2]]}) == {"predictions": [6.0]}
        credentials = client.credentials
        shown = [repr(client), repr(client.options), str(client.options), repr(credentials), repr(vars(client))]

    assert credentials.auth_type == "oauth-m2m" and credentials.source == "options" and credentials.token == ""
    assert credentials.host == fake.url
    # The SDK found the token endpoint through the workspace's OIDC discovery document (recent SDKs
    # find that document through /.well-known/databricks-config first) and asked it once, with the
    # client's id and secret as basic auth and a client_credentials grant, before any REST request.
    paths = [r.path for r in fake.requests]
    first_rest = paths.index("/api/2.0/serving-endpoints")
    assert paths.index("/oidc/.well-known/oauth-authorization-server") < paths.index("/oidc/v1/token") < first_rest
    assert set(paths[:first_rest]) <= {"/.well-known/databricks-config", "/oidc/.well-known/oauth-authorization-server", "/oidc/v1/token"}
    (token_request,) = fake.token_requests
    assert token_request.header("Authorization").startswith("Basic ")
    assert b"grant_type=client_credentials" in token_request.body and b"scope=all-apis" in token_request.body
    # Every REST request went through deployflow's transport, with the issued token.
    issued = fake.issued[0][0]
    assert [bearer(r) for r in rest_requests(fake)] == [issued, issued]
    assert all(r.header("X-Databricks-Endpoints-API-Client") == "deployflow" for r in rest_requests(fake))
    for text in [*shown, caplog.text]:
        assert CLIENT_SECRET not in text and issued not in text
    assert "Secret('***')" in repr(client.options)


@needs_sdk
def test_an_expired_token_is_refreshed_by_the_sdk(fake):
    # Databricks' tokens live an hour; the SDK treats one as expired 40 s before it says it expires,
    # so a 42 s token is used for 2 s and then replaced.
    fake.token_lifetime = 42
    with get_deploy_client("databricks", host=fake.url, client_id=CLIENT_ID, client_secret=CLIENT_SECRET, **FAST) as client:
        client.list_endpoints()
        client.get_endpoint("churn")
        assert len(fake.token_requests) == 1
        time.sleep(2.2)
        client.list_endpoints()
        assert len(fake.token_requests) == 2
        client.endpoint_status("churn")
        assert len(fake.token_requests) == 2
    first, second = (token for token, _ in fake.issued)
    assert [bearer(r) for r in rest_requests(fake)] == [first, first, second, second]


@needs_sdk
def test_service_principal_credentials_from_the_environment(fake, monkeypatch):
    monkeypatch.setenv("DATABRICKS_HOST", fake.url)
    monkeypatch.setenv("DATABRICKS_CLIENT_ID", CLIENT_ID)
    monkeypatch.setenv("DATABRICKS_CLIENT_SECRET", CLIENT_SECRET)
    with get_deploy_client("databricks", **FAST) as client:
        assert [e["name"] for e in client.list_endpoints()] == ["churn"]
        assert client.credentials.auth_type == "oauth-m2m"
        assert client.credentials.source == "the environment (DATABRICKS_HOST, DATABRICKS_CLIENT_ID, DATABRICKS_CLIENT_SECRET)"
    assert len(fake.token_requests) == 1


@needs_sdk
def test_a_profile_with_auth_type(fake, tmp_path, monkeypatch):
    config = tmp_path / "databrickscfg"
    config.write_text(
        f"[sp]\nhost = {fake.url}\nauth_type = oauth-m2m\nclient_id = {CLIENT_ID}\nclient_secret = {CLIENT_SECRET}\n\n"
        f"[pat]\nhost = {fake.url}\ntoken = {DEFAULT_TOKEN}\nauth_type = pat\n",
        encoding="utf-8",
    )
    monkeypatch.setenv("DATABRICKS_CONFIG_FILE", str(config))
    with get_deploy_client("databricks://sp", **FAST) as client:
        assert client.get_endpoint("churn")["name"] == "churn"
        assert client.credentials.auth_type == "oauth-m2m"
        assert client.credentials.source == f"profile 'sp' of {config}"
    with get_deploy_client("databricks", profile="pat", **FAST) as client:
        assert client.get_endpoint("churn")["name"] == "churn"
        assert (client.credentials.auth_type, client.credentials.token) == ("pat", DEFAULT_TOKEN)
    assert [bearer(r) for r in rest_requests(fake)] == [fake.issued[0][0], DEFAULT_TOKEN]


@needs_sdk
def test_a_named_profile_refuses_credentials_from_the_environment(fake, tmp_path, monkeypatch):
    config = tmp_path / "databrickscfg"
    config.write_text(f"[hostonly]\nhost = {fake.url}\n", encoding="utf-8")
    monkeypatch.setenv("DATABRICKS_CONFIG_FILE", str(config))
    monkeypatch.setenv("DATABRICKS_TOKEN", DEFAULT_TOKEN)
    client = get_deploy_client("databricks://hostonly", **FAST)
    with pytest.raises(TargetError) as caught:
        client.list_endpoints()
    assert str(caught.value).startswith(
        "Databricks profile 'hostonly' was asked for, but the environment also sets DATABRICKS_TOKEN, which would be "
        "used with the profile's settings"
    )
    assert DEFAULT_TOKEN not in everything_shown(caught.value)
    assert fake.requests == []  # the environment's token was not sent to the profile's host


@needs_sdk
def test_clients_for_many_threads_build_one_configuration_and_fetch_one_token(fake):
    client = get_deploy_client("databricks", host=fake.url, client_id=CLIENT_ID, client_secret=CLIENT_SECRET, **FAST)
    start = threading.Barrier(8)
    failures = []

    def first_request():
        start.wait()
        try:
            client.list_endpoints()
        except Exception as exc:  # noqa: BLE001 - reported below
            failures.append(exc)

    threads = [threading.Thread(target=first_request) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(20)
    client.close()
    assert failures == []
    assert len(fake.requests_to("GET", "/oidc/.well-known/oauth-authorization-server")) == 1
    assert len(fake.token_requests) == 1 and len(rest_requests(fake)) == 8


@needs_sdk
def test_copies_and_pickles_of_an_oauth_client_authenticate_on_their_own(fake):
    with get_deploy_client("databricks", host=fake.url, client_id=CLIENT_ID, client_secret=CLIENT_SECRET, **FAST) as client:
        client.list_endpoints()
        for duplicate in (copy.copy(client), copy.deepcopy(client), pickle.loads(pickle.dumps(client))):
            assert duplicate.get_endpoint("churn")["name"] == "churn"
            assert CLIENT_SECRET not in repr(vars(duplicate))
            duplicate.close()
    assert len(fake.token_requests) == 4  # one per client: a copy builds its own SDK configuration


# --------------------------------------------------------------------------------------------------
# Failures: clear errors, raised on the first request, never with a secret
# --------------------------------------------------------------------------------------------------


@needs_sdk
def test_a_wrong_client_secret_is_an_authentication_error_without_the_secret(fake, caplog):
    caplog.set_level(logging.DEBUG)
    wrong = "sp-Wrong-3Nf8Ty1Qa6Zs"
    client = get_deploy_client("databricks", host=fake.url, client_id=CLIENT_ID, client_secret=wrong, **FAST)
    with pytest.raises(AuthenticationError) as caught:
        client.list_endpoints()
    error = caught.value
    assert str(error) == "Databricks oauth-m2m authentication got no access token (invalid_client: Client authentication failed)"
    assert not error.retryable and chain(error) == [error]
    assert wrong not in everything_shown(error) and wrong not in caplog.text
    assert rest_requests(fake) == []  # nothing was sent without a token


@needs_sdk
def test_an_unreachable_token_endpoint_is_transient(fake):
    fake.token_url = f"{closed_port_url()}/oidc/v1/token"
    client = get_deploy_client("databricks", host=fake.url, client_id=CLIENT_ID, client_secret=CLIENT_SECRET, **FAST)
    with pytest.raises(TransientError) as caught:
        client.list_endpoints()
    error = caught.value
    assert error.retryable and chain(error) == [error]
    assert str(error).startswith("Databricks oauth-m2m authentication could not reach the token endpoint: ConnectionError")
    assert CLIENT_SECRET not in everything_shown(error)
    assert rest_requests(fake) == []


CASES = {
    "nothing": ({}, "No Databricks host and token found. Pass host= and token= to get_deploy_client, set DATABRICKS_HOST and DATABRICKS_TOKEN"),
    "client id only": ({"client_id": CLIENT_ID}, "No Databricks client_secret found (options has no client_secret)."),
    "secret without host": ({"client_id": CLIENT_ID, "client_secret": CLIENT_SECRET, "host": None}, "No Databricks host found (options has no host)."),
    "an auth type the SDK does not offer": (
        {"auth_type": "azure-msi"}, "databricks-sdk cannot authenticate with auth_type 'azure-msi' and the settings of options (this databricks-sdk offers: pat, "
    ),
    "token and service principal": (
        {"token": DEFAULT_TOKEN, "client_id": CLIENT_ID, "client_secret": CLIENT_SECRET},
        "The Databricks settings of options name more than one way to authenticate (validate: more than one authorization method configured: oauth and pat.",
    ),
    # Azure's token service is not on loopback, and SDK versions differ in how they refuse a host that
    # is not Azure's: either way the Azure options reach the SDK and nothing leaves the machine.
    "azure service principal on a non-Azure host": (
        {"azure_client_id": "9a8b7c6d-aaaa-bbbb-cccc-0123456789ab", "azure_client_secret": AZURE_SECRET, "azure_tenant_id": "tenant-1"},
        ("Databricks authentication through databricks-sdk failed (options): default auth: azure-client-secret: ",
         "databricks-sdk found no way to authenticate with the settings of options (this databricks-sdk offers: "),
    ),
}


@needs_sdk
@pytest.mark.parametrize("case", list(CASES), ids=list(CASES))
def test_a_client_is_built_whatever_its_credentials_and_its_first_request_says_what_is_wrong(fake, case):
    given, expected = CASES[case]
    options = {"host": fake.url, **given} if "host" in given or given else {}
    options = {key: value for key, value in options.items() if value is not None}
    client = get_deploy_client("databricks", **options, **FAST)  # never raises, as MLflow's client
    assert repr(client) == "DatabricksDeploymentClient(target_uri='databricks')"
    with pytest.raises(AuthenticationError) as caught:
        client.list_endpoints()
    error = caught.value
    assert str(error).startswith(expected if isinstance(expected, tuple) else (expected,)), str(error)
    assert not error.retryable and chain(error) == [error]
    shown = everything_shown(error)
    for secret in (CLIENT_SECRET, AZURE_SECRET, DEFAULT_TOKEN):
        assert secret not in shown
    assert rest_requests(fake) == []
    if case == "azure service principal on a non-Azure host":
        # The Azure options reached the SDK (its summary of the settings names them, the secret masked).
        assert "azure_client_secret=***" in shown and "azure_client_id=9a8b7c6d-aaaa-bbbb-cccc-0123456789ab" in shown
        assert "azure_tenant_id=tenant-1" in shown


@needs_sdk
def test_azure_and_auth_type_settings_are_read_from_the_environment_as_the_sdk_names_them(fake, monkeypatch):
    monkeypatch.setenv("DATABRICKS_HOST", fake.url)
    monkeypatch.setenv("ARM_CLIENT_ID", "9a8b7c6d-aaaa-bbbb-cccc-0123456789ab")
    monkeypatch.setenv("ARM_CLIENT_SECRET", AZURE_SECRET)
    monkeypatch.setenv("ARM_TENANT_ID", "tenant-1")
    with pytest.raises(AuthenticationError) as caught:
        get_deploy_client("databricks", **FAST).list_endpoints()
    shown = everything_shown(caught.value)
    assert "the environment (DATABRICKS_HOST, " in str(caught.value)
    assert "azure_client_id=9a8b7c6d-aaaa-bbbb-cccc-0123456789ab" in shown and "azure_client_secret=***" in shown
    assert AZURE_SECRET not in shown and rest_requests(fake) == []

    for name in ("ARM_CLIENT_ID", "ARM_CLIENT_SECRET", "ARM_TENANT_ID"):
        monkeypatch.delenv(name)
    monkeypatch.setenv("DATABRICKS_AUTH_TYPE", "azure-msi")
    with pytest.raises(AuthenticationError, match=r"^databricks-sdk cannot authenticate with auth_type 'azure-msi' and the settings of options and the environment \(DATABRICKS_HOST\) \(this databricks-sdk offers: "):
        get_deploy_client("databricks", token=DEFAULT_TOKEN, **FAST).list_endpoints()


@needs_sdk
def test_the_missing_credentials_message_names_every_way(tmp_path):
    client = get_deploy_client("databricks", config_file=str(tmp_path / "none"))
    with pytest.raises(AuthenticationError) as caught:
        client.list_endpoints()
    message = str(caught.value)
    for needle in (
        "Pass host= and token= to get_deploy_client", "client_id= and client_secret=", "DATABRICKS_CLIENT_ID and DATABRICKS_CLIENT_SECRET",
        "azure_client_id=, azure_client_secret= and azure_tenant_id=", "ARM_CLIENT_ID, ARM_CLIENT_SECRET and ARM_TENANT_ID",
        "auth_type= (DATABRICKS_AUTH_TYPE)", "'databricks://<profile>'",
    ):
        assert needle in message, needle


@needs_sdk
def test_a_malformed_config_file_read_for_the_sdk_names_the_line_only(tmp_path, monkeypatch):
    hidden = "sp-Hidden-9Xw2Kc5Rt8"
    config = tmp_path / "databrickscfg"
    config.write_text(f"[sp]\nhost = {closed_port_url()}\nclient_secret {hidden}\n", encoding="utf-8")
    monkeypatch.setenv("DATABRICKS_CONFIG_FILE", str(config))
    for uri in ("databricks://sp", "databricks"):
        if uri == "databricks":
            monkeypatch.setenv("DATABRICKS_CONFIG_PROFILE", "sp")
        with pytest.raises(TargetError) as caught:
            get_deploy_client(uri).list_endpoints()
        assert f"The Databricks config file {config} cannot be read: line 3" in str(caught.value)
        assert chain(caught.value) == [caught.value] and "Hidden" not in everything_shown(caught.value)


# --------------------------------------------------------------------------------------------------
# Without databricks-sdk
# --------------------------------------------------------------------------------------------------

WITHOUT_SDK = textwrap.dedent(
    """
    import json, sys

    class _NotInstalled:
        def find_spec(self, fullname, path=None, target=None):
            if fullname.split(".", 1)[0] == "databricks":
                raise ModuleNotFoundError(f"No module named {fullname!r}", name=fullname)
            return None

    sys.meta_path.insert(0, _NotInstalled())

    from deployflow import get_deploy_client
    from deployflow.errors import MissingExtraError

    url, token, client_id, client_secret = sys.argv[1:5]
    out = {}

    def attempt(name, uri="databricks", **options):
        client = get_deploy_client(uri, max_retries=0, **options)  # building never raises
        try:
            out[name] = {"ok": [e["name"] for e in client.list_endpoints()], "source": client.credentials.source}
        except Exception as exc:
            out[name] = {"type": type(exc).__name__, "message": str(exc), "extra": getattr(exc, "extra", None),
                         "import_error": isinstance(exc, ImportError)}

    attempt("pat", host=url, token=token)
    attempt("oauth options", host=url, client_id=client_id, client_secret=client_secret)
    attempt("azure options", host=url, azure_client_id="a", azure_client_secret="az-secret-0000", azure_tenant_id="t")
    attempt("auth_type option", host=url, token=token, auth_type="oauth-m2m")
    attempt("pat auth_type", host=url, token=token, auth_type="pat")
    attempt("nothing")
    attempt("profile", "databricks://sp")
    import os
    os.environ.update({"DATABRICKS_HOST": url, "DATABRICKS_CLIENT_ID": client_id, "DATABRICKS_CLIENT_SECRET": client_secret})
    attempt("oauth environment")
    out["sdk imported"] = any(name.split(".")[0] == "databricks" for name in sys.modules)
    print(json.dumps(out))
    """
)


def test_without_the_sdk_tokens_work_as_before_and_oauth_names_the_extra(fake, tmp_path):
    config = tmp_path / "databrickscfg"
    config.write_text(f"[sp]\nhost = {fake.url}\nclient_id = {CLIENT_ID}\nclient_secret = {CLIENT_SECRET}\n", encoding="utf-8")
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "DATABRICKS_CONFIG_FILE": str(config), "DEPLOYFLOW_HOME": str(tmp_path / "state")}
    done = subprocess.run(
        [sys.executable, "-c", WITHOUT_SDK, fake.url, DEFAULT_TOKEN, CLIENT_ID, CLIENT_SECRET],
        capture_output=True, text=True, timeout=120, cwd=tmp_path, env=env,
    )
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert CLIENT_SECRET not in done.stdout + done.stderr and DEFAULT_TOKEN not in done.stdout + done.stderr
    assert out["sdk imported"] is False

    # A personal access token: the same requests as before, no discovery, no token endpoint.
    assert out["pat"] == {"ok": ["churn"], "source": "options"}
    assert out["pat auth_type"]["ok"] == ["churn"]
    assert {r.path for r in fake.requests} == {"/api/2.0/serving-endpoints"}
    assert all(bearer(r) == DEFAULT_TOKEN for r in fake.requests)

    install = "needs the 'databricks' extra: pip install 'deployflow[databricks]' (missing module: databricks.sdk)"
    expected = {
        "oauth options": "Databricks authentication with the options client_id, client_secret " + install,
        "azure options": "Databricks authentication with the options azure_client_id, azure_client_secret, azure_tenant_id " + install,
        "auth_type option": "Databricks authentication with auth_type 'oauth-m2m' (the option auth_type) " + install,
        "profile": f"Databricks authentication with client_id, client_secret from profile 'sp' of {config} " + install,
        "oauth environment": "Databricks authentication with the environment (DATABRICKS_CLIENT_ID, DATABRICKS_CLIENT_SECRET) " + install,
    }
    for name, start in expected.items():
        failure = out[name]
        assert failure["type"] == "MissingExtraError" and failure["extra"] == "databricks" and failure["import_error"], failure
        assert failure["message"].startswith(start), failure["message"]
    assert out["nothing"]["type"] == "AuthenticationError"
    assert out["nothing"]["message"].startswith("No Databricks host and token found. Pass host= and token= to get_deploy_client")
    assert "need the 'databricks' extra: pip install 'deployflow[databricks]'" in out["nothing"]["message"]
    assert fake.token_requests == []
