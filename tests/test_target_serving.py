"""The serving target (serving+http://host:port) scoring against real local-target servers on 127.0.0.1."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from deployflow import (
    AuthenticationError,
    InvalidInputError,
    NotSupportedError,
    State,
    TargetError,
    WaitTimeoutError,
    get_deploy_client,
    target_help,
)

MODELS = Path(__file__).resolve().parent / "support" / "batch_models.py"
TOKEN = "serving-test-token-0123456789"
FAST = {"max_retries": 1, "backoff_factor": 0.01, "backoff_max": 0.05}


@pytest.fixture(scope="module")
def local(tmp_path_factory):
    """A local target with two servers: an open one and one that wants a bearer token."""
    client = get_deploy_client(f"local://{tmp_path_factory.mktemp('serving-home')}")
    client.create_deployment("linear", f"python:{MODELS}:linear")
    client.create_deployment("guarded", f"python:{MODELS}:linear", config={"auth_token": TOKEN})
    yield client
    for deployment in client.list_deployments():
        client.delete_deployment(deployment["name"])


def url_of(local, name):
    return local.get_deployment(name)["url"]


def test_predict_against_a_real_server(local):
    with get_deploy_client(f"serving+{url_of(local, 'linear')}", **FAST) as remote:
        frame = pd.DataFrame({"a": [1.0, 2.0, 3.0], "b": [0.5, 0.0, -1.0]})
        answer = remote.predict("anything", frame)
        assert answer["predictions"] == [2.5, 4.0, 5.0]
        assert answer.get_predictions("ndarray").tolist() == [2.5, 4.0, 5.0]
        records = remote.predict(inputs={"dataframe_records": [{"a": 1.0, "b": 1.0}]})
        assert records["predictions"] == [3.0]
        # The local server's own client and the serving client agree.
        assert local.predict("linear", frame)["predictions"] == answer["predictions"]


def test_status_get_list_and_waiting(local):
    url = url_of(local, "linear")
    with get_deploy_client(f"serving+{url}/", **FAST) as remote:
        assert remote.deployment_status("x").state is State.READY
        assert remote.wait_for_deployment("x", timeout=5).state is State.READY
        record = remote.get_deployment("label")
        assert record == {"name": "label", "url": url, "state": "READY", "reason": None}
        assert [d["state"] for d in remote.list_deployments()] == ["READY"]


def test_a_bearer_token_reaches_a_server_that_wants_one(local):
    url = url_of(local, "guarded")
    with get_deploy_client(f"serving+{url}", auth_token=TOKEN, **FAST) as remote:
        assert remote.predict(inputs={"dataframe_split": {"columns": ["a", "b"], "data": [[1.0, 1.0]]}})["predictions"] == [3.0]
    with get_deploy_client(f"serving+{url}", **FAST) as remote:
        with pytest.raises(AuthenticationError) as caught:
            remote.predict(inputs={"dataframe_records": [{"a": 1.0, "b": 1.0}]})
    assert caught.value.status_code == 401
    wrong = "wrong-token-abcdefghijk"
    with get_deploy_client(f"serving+{url}", auth_token=wrong, **FAST) as remote:
        with pytest.raises(AuthenticationError) as caught:
            remote.predict(inputs={"dataframe_records": [{"a": 1.0, "b": 1.0}]})
        assert wrong not in repr(remote)
    assert wrong not in str(caught.value) and TOKEN not in str(caught.value)


def test_a_server_that_went_away_is_pending_and_waiting_times_out(local):
    local.create_deployment("short-lived", f"python:{MODELS}:linear")
    url = url_of(local, "short-lived")
    local.delete_deployment("short-lived")
    with get_deploy_client(f"serving+{url}", **FAST) as remote:
        status = remote.deployment_status("x")
        assert status.state is State.PENDING and "connect" in status.reason
        with pytest.raises(WaitTimeoutError, match="not ready after"):
            remote.wait_for_deployment("x", timeout=0.3, poll_interval=0.05)


def test_bad_input_is_a_clear_error(local):
    with get_deploy_client(f"serving+{url_of(local, 'linear')}", **FAST) as remote:
        with pytest.raises(InvalidInputError) as caught:
            remote.predict(inputs='{"dataframe_records": [{"a": 1.0}], "inputs": [1]}')
        assert caught.value.status_code == 400 and caught.value.error_code == "BAD_REQUEST"


@pytest.mark.parametrize("uri", ["serving+ftp://host:1", "serving+http://", "serving://host:5000", "serving+http:///path"])
def test_malformed_uris(uri):
    from deployflow.targets.serving import ServingDeploymentClient

    with pytest.raises(TargetError, match="not a serving target URI"):
        ServingDeploymentClient(uri)
    # Through the registry, a scheme with nothing after it is refused before the target sees it.
    with pytest.raises(TargetError, match="not a serving target URI" if uri != "serving+http://" else "has nothing after"):
        get_deploy_client(uri)


def test_unknown_options_and_what_the_target_does_not_do():
    with pytest.raises(InvalidInputError, match="Unknown option.*token"):
        get_deploy_client("serving+http://127.0.0.1:9", token="x")
    with get_deploy_client("serving+http://127.0.0.1:9") as remote:
        for call in (
            lambda: remote.create_deployment("x", "m"),
            lambda: remote.update_deployment("x"),
            lambda: remote.delete_deployment("x"),
            lambda: remote.create_endpoint("x"),
        ):
            with pytest.raises(NotSupportedError):
                call()
    from deployflow.targets import serving

    with pytest.raises(NotSupportedError, match="local"):
        serving.run_local("x", "m")
    assert "serving+https://HOST" in target_help("serving+http://h:1")
