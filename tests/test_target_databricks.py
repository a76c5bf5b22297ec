"""The databricks target against a fake Databricks workspace on 127.0.0.1 (tests/fakes/databricks.py).

Every method of the client is exercised, waiting included: the fake's updates finish after a couple of
reads of the endpoint, or end UPDATE_FAILED for model versions it was told to fail.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import threading
import time
import traceback
from pathlib import Path

import pandas as pd
import pytest

from deployflow import (
    AuthenticationError,
    ConflictError,
    DeploymentFailedError,
    InvalidInputError,
    NotFoundError,
    NotSupportedError,
    RemoteError,
    State,
    TargetError,
    TransientError,
    WaitTimeoutError,
    get_deploy_client,
    target_help,
)
from deployflow.targets.databricks import DatabricksCredentials, rebalance, resolve_credentials
from fakes.base import scrub_environment
from fakes.databricks import DEFAULT_TOKEN, FakeDatabricks, scrub_sdk_environment

FAST = {"poll_interval": 0.01, "max_poll_interval": 0.05, "wait_timeout": 10, "max_retries": 3, "backoff_factor": 0.01, "backoff_max": 0.05}
EXTERNAL_CHAT = {
    "name": "gpt",
    "external_model": {"name": "gpt-4", "provider": "openai", "task": "llm/v1/chat", "openai_config": {"openai_api_key": "{{secrets/scope/key}}"}},
}


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch, tmp_path):
    scrub_environment(monkeypatch, tmp_path)
    scrub_sdk_environment(monkeypatch)


@pytest.fixture
def fake():
    with FakeDatabricks() as service:
        yield service


@pytest.fixture
def client(fake):
    with get_deploy_client("databricks", host=fake.url, token=DEFAULT_TOKEN, **FAST) as made:
        yield made


def gets(fake, name):
    return len(fake.requests_to("GET", f"/api/2.0/serving-endpoints/{name}"))


def frame(rows):
    return pd.DataFrame({"a": [float(i) for i in range(rows)], "b": [1.0] * rows})


# --------------------------------------------------------------------------------------------------
# Endpoints
# --------------------------------------------------------------------------------------------------


def test_create_endpoint_waits_until_the_endpoint_is_ready(client, fake):
    endpoint = client.create_endpoint(name="chat", config={"served_entities": [EXTERNAL_CHAT]})
    assert endpoint["name"] == "chat" and endpoint.name == "chat"
    assert endpoint.state == {"ready": "READY", "config_update": "NOT_UPDATING"}
    assert endpoint.config.served_entities[0]["state"]["deployment"] == "DEPLOYMENT_READY"
    assert gets(fake, "chat") >= 2  # it polled until the fake's update finished
    sent = fake.requests_to("POST", "/api/2.0/serving-endpoints")[0].json()
    assert sent == {"name": "chat", "config": {"served_entities": [EXTERNAL_CHAT]}}
    assert client.endpoint_status("chat").state is State.READY


def test_create_endpoint_takes_the_whole_request_body(client, fake):
    payload = {
        "name": "full",
        "config": {"served_entities": [EXTERNAL_CHAT]},
        "tags": [{"key": "team", "value": "ml"}],
        "rate_limits": [{"calls": 10, "key": "user", "renewal_period": "minute"}],
        "route_optimized": True,
    }
    endpoint = client.create_endpoint(config=payload)
    assert endpoint["tags"] == [{"key": "team", "value": "ml"}] and endpoint["route_optimized"] is True
    assert fake.requests_to("POST", "/api/2.0/serving-endpoints")[0].json() == payload
    with pytest.raises(InvalidInputError, match="give one"):
        client.create_endpoint(name="other", config=payload)
    with pytest.raises(InvalidInputError, match="needs a name"):
        client.create_endpoint(config={"served_entities": [EXTERNAL_CHAT]})


def test_older_config_form_lifts_tags_and_rate_limits(client, fake):
    client.create_endpoint("legacy", {"served_entities": [EXTERNAL_CHAT], "tags": [{"key": "k", "value": "v"}], "rate_limits": [{"calls": 5, "renewal_period": "minute"}]})
    sent = fake.requests_to("POST", "/api/2.0/serving-endpoints")[0].json()
    assert sent["config"] == {"served_entities": [EXTERNAL_CHAT]}
    assert sent["tags"] == [{"key": "k", "value": "v"}] and sent["rate_limits"][0]["calls"] == 5


def test_without_waiting_the_states_move_from_pending_to_ready(client, fake):
    created = client.create_endpoint("later", {"served_entities": [EXTERNAL_CHAT], "wait": False})
    assert created["state"] == {"ready": "NOT_READY", "config_update": "IN_PROGRESS"}
    assert "wait" not in fake.requests_to("POST", "/api/2.0/serving-endpoints")[0].json()["config"]
    fake.polls_to_ready = 3
    seen = []
    status = client.wait_for_endpoint("later", poll_interval=0.01, on_change=lambda s: seen.append(s.state))
    assert status.state is State.READY
    assert seen == [State.PENDING, State.READY]


def test_an_existing_endpoint_is_a_conflict(client):
    client.create_endpoint("twice", {"served_entities": [EXTERNAL_CHAT]})
    with pytest.raises(ConflictError, match="already exists") as caught:
        client.create_endpoint("twice", {"served_entities": [EXTERNAL_CHAT]})
    assert caught.value.status_code == 400 and caught.value.error_code == "RESOURCE_ALREADY_EXISTS"


def test_update_endpoint_config_waits_and_a_second_update_in_flight_is_a_409(client, fake):
    client.create_endpoint("cfg", {"served_entities": [EXTERNAL_CHAT]})
    other = {**EXTERNAL_CHAT, "name": "gpt-mini", "external_model": {**EXTERNAL_CHAT["external_model"], "name": "gpt-4o-mini"}}
    updated = client.update_endpoint_config("cfg", {"served_entities": [other]})
    assert updated.state.config_update == "NOT_UPDATING" and updated.config["config_version"] == 2
    assert [e["name"] for e in updated.config.served_entities] == ["gpt-mini"]
    client.update_endpoint_config("cfg", {"served_entities": [EXTERNAL_CHAT], "wait": False})
    with pytest.raises(ConflictError, match="currently updating") as caught:
        client.update_endpoint_config("cfg", {"served_entities": [other]})
    assert caught.value.status_code == 409 and caught.value.error_code == "RESOURCE_CONFLICT"


def test_a_failed_update_raises_with_the_reason_and_the_old_config_keeps_serving(client, fake):
    client.create_deployment("scorer", "models:/main.default.scorer/1", config={"scale_to_zero_enabled": False})
    fake.fail_version("main.default.scorer", 2, "Container build failed: package 'nope' not found")
    broken = {"name": "scorer", "entity_name": "main.default.scorer", "entity_version": "2", "workload_size": "Small", "scale_to_zero_enabled": False}
    with pytest.raises(DeploymentFailedError, match="package 'nope' not found") as caught:
        client.update_endpoint_config("scorer", {"served_entities": [broken]})
    assert "UPDATE_FAILED" in caught.value.reason
    status = client.endpoint_status("scorer")
    assert status.state is State.FAILED and "package 'nope' not found" in status.reason
    assert client.predict(endpoint="scorer", inputs={"inputs": [[1, 2]]}) == {"predictions": [3.0]}  # version 1 still answers


def test_tags_rate_limits_and_ai_gateway(client, fake):
    client.create_endpoint("gw", {"served_entities": [EXTERNAL_CHAT]})
    assert client.update_endpoint_tags("gw", {"add_tags": [{"key": "project", "value": "test"}]}) == {"tags": [{"key": "project", "value": "test"}]}
    assert client.update_endpoint_tags("gw", {"add_tags": [{"key": "b", "value": "1"}], "delete_tags": ["project"]}).tags == [{"key": "b", "value": "1"}]
    limits = {"rate_limits": [{"calls": 10, "key": "endpoint", "renewal_period": "minute"}]}
    assert client.update_endpoint_rate_limits("gw", limits) == limits
    gateway = {"usage_tracking_config": {"enabled": True}, "inference_table_config": {"enabled": True, "catalog_name": "c", "schema_name": "s"}}
    answer = client.update_endpoint_ai_gateway("gw", gateway)
    assert answer["inference_table_config"]["table_name_prefix"] == "gw" and answer.usage_tracking_config == {"enabled": True}
    assert client.get_endpoint("gw")["tags"] == [{"key": "b", "value": "1"}]
    with pytest.raises(InvalidInputError, match="renewal_period"):
        client.update_endpoint_rate_limits("gw", {"rate_limits": [{"calls": 1, "renewal_period": "hour"}]})


def test_update_endpoint_is_deprecated_and_routes_by_what_it_is_given(client, fake):
    client.create_endpoint("old", {"served_entities": [EXTERNAL_CHAT]})
    with pytest.warns(FutureWarning, match="update_endpoint_config"):
        limits = client.update_endpoint("old", {"rate_limits": [{"calls": 3, "key": "user", "renewal_period": "minute"}]})
    assert limits == {"rate_limits": [{"calls": 3, "key": "user", "renewal_period": "minute"}]}
    with pytest.warns(FutureWarning):
        assert client.update_endpoint("old", {"add_tags": [{"key": "x", "value": "y"}]}) == {"tags": [{"key": "x", "value": "y"}]}
    with pytest.warns(FutureWarning):
        updated = client.update_endpoint("old", {"served_entities": [{**EXTERNAL_CHAT, "name": "renamed"}]})
    assert updated.config.served_entities[0]["name"] == "renamed" and updated.state.ready == "READY"
    assert [r.method for r in fake.requests if r.path.startswith("/api/2.0/serving-endpoints/old/")] == ["PUT", "PATCH", "PUT"]


def test_list_get_and_delete_endpoints(client, fake):
    assert client.list_endpoints() == []
    client.create_endpoint("one", {"served_entities": [EXTERNAL_CHAT]})
    client.create_endpoint("two", {"served_entities": [EXTERNAL_CHAT], "wait": False})
    listed = client.list_endpoints()
    assert sorted(e.name for e in listed) == ["one", "two"]
    assert client.get_endpoint("one")["config"]["served_entities"][0]["name"] == "gpt"
    assert client.delete_endpoint("one") is None
    assert client.delete_endpoint("one") is None  # idempotent
    with pytest.raises(NotFoundError, match="does not exist") as caught:
        client.get_endpoint("one")
    assert caught.value.status_code == 404 and caught.value.error_code == "RESOURCE_DOES_NOT_EXIST"
    assert client.endpoint_status("one").state is State.NOT_FOUND


async def test_the_async_wait_sees_the_same_transitions(client, fake):
    fake.polls_to_ready = 3
    client.create_deployment("async-model", "models:/m.s.async_model/2", config={"wait": False})
    seen = []
    status = await client.wait_for_deployment_async("async-model", poll_interval=0.01, on_change=lambda s: seen.append(s.state))
    assert status.state is State.READY and seen[-1] is State.READY and State.PENDING in seen
    fake.fail_version("m.s.async_model", 3, "out of GPU capacity")
    client.update_deployment("async-model", "models:/m.s.async_model/3", config={"wait": False})
    with pytest.raises(DeploymentFailedError, match="out of GPU capacity"):
        await client.wait_for_endpoint_async("async-model", poll_interval=0.01)


def test_waiting_gives_up_at_the_deadline_with_the_last_state(fake):
    fake.polls_to_ready = 10_000
    with get_deploy_client("databricks", host=fake.url, token=DEFAULT_TOKEN, poll_interval=0.02, wait_timeout=0.3) as client:
        started = time.monotonic()
        with pytest.raises(WaitTimeoutError, match="in progress") as caught:
            client.create_endpoint("slow", {"served_entities": [EXTERNAL_CHAT]})
        assert time.monotonic() - started < 3
    assert caught.value.last_status.state is State.PENDING


# --------------------------------------------------------------------------------------------------
# Deployments: served entities
# --------------------------------------------------------------------------------------------------


def test_create_deployment_creates_the_endpoint_and_waits(client, fake):
    deployment = client.create_deployment("churn", "models:/main.default.churn/3", config={"workload_size": "Small", "scale_to_zero_enabled": True})
    assert deployment["name"] == "churn" and deployment["endpoint"] == "churn"
    assert deployment["state"] == "READY" and deployment["model_uri"] == "models:/main.default.churn/3"
    assert deployment["traffic_percentage"] == 100
    sent = fake.requests_to("POST", "/api/2.0/serving-endpoints")[0].json()
    assert sent["config"]["served_entities"] == [
        {"name": "churn", "entity_name": "main.default.churn", "entity_version": "3", "workload_size": "Small", "scale_to_zero_enabled": True}
    ]
    assert sent["config"]["traffic_config"] == {"routes": [{"served_model_name": "churn", "traffic_percentage": 100}]}
    answer = client.predict(endpoint="churn", inputs=frame(3))
    assert answer["predictions"] == [3.0, 6.0, 9.0]  # (a + b) * version 3
    assert answer.get_predictions("ndarray").tolist() == [3.0, 6.0, 9.0]
    assert client.deployment_status("churn").state is State.READY


def test_a_second_entity_shares_the_traffic_and_can_be_queried_alone(client, fake):
    client.create_deployment("champion", "models:/main.default.churn/1", endpoint="churn")
    challenger = client.create_deployment("challenger", "models:/main.default.churn/2", endpoint="churn", config={"traffic_percentage": 20, "workload_size": "Medium"})
    assert challenger["traffic_percentage"] == 20 and challenger["workload_size"] == "Medium"
    put = fake.requests_to("PUT", "/api/2.0/serving-endpoints/churn/config")[-1].json()
    assert put["traffic_config"]["routes"] == [
        {"served_model_name": "champion", "traffic_percentage": 80},
        {"served_model_name": "challenger", "traffic_percentage": 20},
    ]
    assert all("state" not in entity for entity in put["served_entities"])  # output-only fields are not sent back
    listed = {d["name"]: d for d in client.list_deployments(endpoint="churn")}
    assert set(listed) == {"champion", "challenger"} and listed["champion"]["traffic_percentage"] == 80
    assert {d["name"] for d in client.list_deployments()} == {"champion", "challenger"}
    assert client.predict("challenger", {"inputs": [[1, 1]]}, endpoint="churn")["predictions"] == [4.0]  # version 2
    assert client.predict("champion", {"inputs": [[1, 1]]}, endpoint="churn")["predictions"] == [2.0]
    with pytest.raises(ConflictError, match="already serves an entity named 'challenger'"):
        client.create_deployment("challenger", "models:/main.default.churn/5", endpoint="churn")


def test_update_deployment_rolls_a_new_version_forward(client, fake):
    client.create_deployment("model", "models:/main.default.model/1", config={"scale_to_zero_enabled": False})
    updated = client.update_deployment("model", "models:/main.default.model/4")
    assert updated["entity_version"] == "4" and updated["state"] == "READY"
    assert updated["scale_to_zero_enabled"] is False  # settings not given keep their values
    assert client.predict(endpoint="model", inputs={"inputs": [[1.0]]})["predictions"] == [4.0]
    resized = client.update_deployment("model", config={"workload_size": "Large"})
    assert resized["workload_size"] == "Large" and resized["entity_version"] == "4"
    with pytest.raises(NotFoundError, match="no entity named 'ghost'"):
        client.update_deployment("ghost", "models:/main.default.model/2", endpoint="model")


def test_update_to_a_failing_version_is_failed_with_the_reason(client, fake):
    client.create_deployment("model", "models:/main.default.model/1")
    fake.fail_version("main.default.model", 2, "Model server failed to start: ImportError: torch")
    with pytest.raises(DeploymentFailedError, match="ImportError: torch"):
        client.update_deployment("model", "models:/main.default.model/2")
    status = client.deployment_status("model")
    assert status.state is State.FAILED and "ImportError: torch" in status.reason
    assert client.predict(endpoint="model", inputs={"inputs": [[2.0]]})["predictions"] == [2.0]  # version 1 serves on
    # The endpoint takes a new update after a failed one.
    assert client.update_deployment("model", "models:/main.default.model/3")["state"] == "READY"


def test_create_deployment_waits_for_an_update_already_running(client, fake):
    client.create_deployment("first", "models:/m.s.first/1", endpoint="shared")
    client.update_deployment("first", "models:/m.s.first/2", endpoint="shared", config={"wait": False})
    second = client.create_deployment("second", "models:/m.s.second/1", endpoint="shared", config={"traffic_percentage": 50})
    assert second["state"] == "READY"
    puts = fake.requests_to("PUT", "/api/2.0/serving-endpoints/shared/config")
    assert len(puts) == 2  # no 409 and no retry: it waited for the running update, then read the result
    assert {e["name"]: e["entity_version"] for e in puts[1].json()["served_entities"]} == {"first": "2", "second": "1"}
    assert client.get_deployment("first", endpoint="shared")["entity_version"] == "2"


def test_deployment_states_while_the_update_runs(client, fake):
    fake.polls_to_ready = 5  # create's own read of the record counts as one
    client.create_deployment("ent", "models:/m.s.ent/1", config={"wait": False})
    first = client.deployment_status("ent")
    assert first.state is State.PENDING and "in progress" in first.reason
    assert client.get_deployment("ent")["state"] == "PENDING"
    assert client.wait_for_deployment("ent", poll_interval=0.01).state is State.READY
    assert client.deployment_status("nobody", endpoint="ent").state is State.NOT_FOUND
    assert client.deployment_status("ent", endpoint="no-endpoint").state is State.NOT_FOUND
    with pytest.raises(NotFoundError):
        client.get_deployment("nobody", endpoint="ent")


def test_delete_deployment_rebalances_then_deletes_the_endpoint_with_its_last_entity(client, fake):
    client.create_deployment("a", "models:/m.s.a/1", endpoint="pair")
    client.create_deployment("b", "models:/m.s.b/1", endpoint="pair", config={"traffic_percentage": 30})
    client.delete_deployment("a", endpoint="pair")
    remaining = client.list_deployments(endpoint="pair")
    assert [(d["name"], d["traffic_percentage"]) for d in remaining] == [("b", 100)]
    client.delete_deployment("a", endpoint="pair")  # idempotent
    client.delete_deployment("b", endpoint="pair")
    assert client.endpoint_status("pair").state is State.NOT_FOUND
    client.delete_deployment("b", endpoint="pair")  # idempotent when the endpoint is gone too


def test_model_aliases_are_resolved_to_versions(client, fake):
    fake.set_alias("main.default.churn", "champion", 7)
    fake.set_alias("workspace_model", "prod", 2)
    assert client.create_deployment("uc", "models:/main.default.churn@champion")["entity_version"] == "7"
    assert client.create_deployment("ws", "models:/workspace_model@prod")["entity_version"] == "2"
    with pytest.raises(NotFoundError, match="not found"):
        client.create_deployment("none", "models:/main.default.churn@nobody")


@pytest.mark.parametrize(
    "model_uri, config, flavor, message",
    [
        ("runs:/abc/model", None, None, "registered models"),
        ("models:/main.default.m/latest", None, None, "must be a number"),
        ("models:/main.default.m/1", {"replicas": 3}, None, "Unknown config key"),
        ("models:/main.default.m/1", {"traffic_percentage": 150}, None, "0 to 100"),
        ("models:/main.default.m/1", {"traffic_percentage": 50}, None, "must be 100"),
        ("models:/main.default.m/1", {"scale_to_zero_enabled": "maybe"}, None, "true or false"),
        ("models:/main.default.m/1", None, "sklearn", "python_function"),
    ],
)
def test_bad_deployment_requests_are_refused_before_anything_is_created(client, fake, model_uri, config, flavor, message):
    with pytest.raises(InvalidInputError, match=message):
        client.create_deployment("bad", model_uri, flavor=flavor, config=config)
    assert not fake.requests_to("POST", "/api/2.0/serving-endpoints")


# --------------------------------------------------------------------------------------------------
# Scoring
# --------------------------------------------------------------------------------------------------


def test_predict_chat_and_its_stream(client, fake):
    client.create_endpoint("chat", {"served_entities": [EXTERNAL_CHAT]})
    answer = client.predict(endpoint="chat", inputs={"messages": [{"role": "user", "content": "Hello there"}]})
    assert answer["object"] == "chat.completion" and answer["choices"][0]["message"]["content"] == "You said: Hello there"
    chunks = list(client.predict_stream(endpoint="chat", inputs={"messages": [{"role": "user", "content": "Hello there"}], "temperature": 0}))
    text = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks)
    assert text == "You said: Hello there" and chunks[-1]["choices"][0]["finish_reason"] == "stop"
    sent = fake.requests_to("POST", "/serving-endpoints/chat/invocations")[-1]
    assert sent.json()["stream"] is True and sent.json()["temperature"] == 0
    assert sent.header("Accept") == "text/event-stream"


def test_a_stream_arrives_chunk_by_chunk(client, fake):
    client.create_endpoint("chat", {"served_entities": [EXTERNAL_CHAT]})
    fake.stream_gate = threading.Event()
    stream = client.predict_stream(endpoint="chat", inputs={"messages": [{"role": "user", "content": "a b"}]})
    first = next(stream)  # the server holds the rest until the gate opens: a buffering client would hang
    assert first["choices"][0]["delta"]["content"] == "You"
    fake.stream_gate.set()
    assert len(list(stream)) == 4


def test_an_error_mid_stream_raises_after_the_first_chunk(client, fake):
    client.create_endpoint("chat", {"served_entities": [EXTERNAL_CHAT]})
    stream = client.predict_stream(endpoint="chat", inputs={"messages": [{"role": "user", "content": "please explode"}]})
    assert next(stream)["object"] == "chat.completion.chunk"
    with pytest.raises(RemoteError, match="crashed while generating") as caught:
        next(stream)
    assert caught.value.error_code == "INTERNAL_ERROR"


def test_predict_errors(client, fake):
    with pytest.raises(InvalidInputError, match="needs an endpoint"):
        client.predict(inputs={"inputs": [1]})
    with pytest.raises(NotFoundError):
        client.predict(endpoint="missing", inputs={"inputs": [[1]]})
    with pytest.raises(NotFoundError):
        client.predict_stream(endpoint="missing", inputs={"messages": [{"role": "user", "content": "x"}]})
    with pytest.raises(InvalidInputError, match="dict"):
        client.predict_stream(endpoint="missing", inputs=[1, 2])


# --------------------------------------------------------------------------------------------------
# HTTP errors, retries, secrets
# --------------------------------------------------------------------------------------------------


def test_a_400_with_a_databricks_error_body_is_a_clear_error_without_the_token(client, fake):
    client.create_endpoint("cfg", {"served_entities": [EXTERNAL_CHAT]})
    bad = {"served_entities": [EXTERNAL_CHAT], "traffic_config": {"routes": [{"served_model_name": "gpt", "traffic_percentage": 50}]}}
    with pytest.raises(InvalidInputError) as caught:
        client.update_endpoint_config("cfg", bad)
    error = caught.value
    assert error.status_code == 400 and error.error_code == "INVALID_PARAMETER_VALUE"
    assert "PUT /api/2.0/serving-endpoints/cfg/config" in str(error) and "must add up to 100" in str(error)
    for text in (str(error), repr(error), error.body or "", repr(client), repr(client.credentials)):
        assert DEFAULT_TOKEN not in text


def test_429_with_retry_after_is_retried(client, fake):
    fake.fail(429, {"error_code": "REQUEST_LIMIT_EXCEEDED", "message": "Too many requests"}, method="GET", path="/api/", headers={"Retry-After": "0.2"})
    started = time.monotonic()
    assert client.list_endpoints() == []
    assert time.monotonic() - started >= 0.2
    assert len(fake.requests_to("GET", "/api/2.0/serving-endpoints")) == 2


def test_429_without_retries_is_a_retryable_error_with_retry_after(fake):
    fake.fail(429, {"error_code": "REQUEST_LIMIT_EXCEEDED", "message": "Too many requests"}, path="/api/", headers={"Retry-After": "7"})
    with get_deploy_client("databricks", host=fake.url, token=DEFAULT_TOKEN, max_retries=0) as client:
        with pytest.raises(TransientError, match="Too many requests") as caught:
            client.list_endpoints()
    assert caught.value.retryable and caught.value.retry_after == 7.0 and caught.value.status_code == 429


def test_a_503_while_waiting_is_tolerated(client, fake):
    client.create_endpoint("flaky", {"served_entities": [EXTERNAL_CHAT], "wait": False})
    fake.fail(503, {"error_code": "TEMPORARILY_UNAVAILABLE", "message": "busy"}, method="GET", times=2)
    assert client.wait_for_endpoint("flaky", poll_interval=0.01).state is State.READY


def test_a_wrong_token_is_an_authentication_error_without_the_token(fake):
    wrong = "dapi" + "f" * 32
    with get_deploy_client("databricks", host=fake.url, token=wrong, max_retries=0) as client:
        with pytest.raises(AuthenticationError, match="Invalid access token") as caught:
            client.list_endpoints()
    assert caught.value.status_code == 403
    assert wrong not in str(caught.value) and wrong not in repr(caught.value)


# --------------------------------------------------------------------------------------------------
# Credentials and URIs
# --------------------------------------------------------------------------------------------------


def write_config(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_credentials_from_the_environment(fake, monkeypatch):
    monkeypatch.setenv("DATABRICKS_HOST", fake.url)
    monkeypatch.setenv("DATABRICKS_TOKEN", DEFAULT_TOKEN)
    with get_deploy_client("databricks") as client:
        assert client.credentials.source.startswith("the environment")
        assert client.list_endpoints() == []


def closed_port_url() -> str:
    """An http URL on 127.0.0.1 where nothing listens: a host the tests may name without any request
    (databricks-sdk's discovery of the workspace included) leaving the machine."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{probe.getsockname()[1]}"


def test_credentials_from_profiles(fake, monkeypatch, tmp_path):
    config = write_config(
        tmp_path / "cfg",
        f"[DEFAULT]\nhost = {fake.url}\ntoken = {DEFAULT_TOKEN}\n\n[prod]\nhost = {fake.url}/\ntoken = {DEFAULT_TOKEN}\n\n[hostonly]\nhost = {closed_port_url()}\n",
    )
    monkeypatch.setenv("DATABRICKS_CONFIG_FILE", str(config))
    with get_deploy_client("databricks") as client:
        assert client.credentials.source == f"profile 'DEFAULT' of {config}"
        assert client.list_endpoints() == []
    with get_deploy_client("databricks://prod") as client:
        assert client.host == fake.url and "'prod'" in client.credentials.source
        assert client.list_endpoints() == []
    monkeypatch.setenv("DATABRICKS_CONFIG_PROFILE", "prod")
    assert resolve_credentials("databricks").source == f"profile 'prod' of {config}"
    # A profile without a token does not borrow DEFAULT's: that token would go to another host.
    with pytest.raises(AuthenticationError, match="has no token") as caught:
        get_deploy_client("databricks://hostonly").list_endpoints()
    assert DEFAULT_TOKEN not in str(caught.value)


def test_the_default_config_file_is_in_the_home_directory(fake, monkeypatch, tmp_path):
    monkeypatch.delenv("DATABRICKS_CONFIG_FILE")
    write_config(tmp_path / ".databrickscfg", f"[dev]\nhost = {fake.url}\ntoken = {DEFAULT_TOKEN}\n")
    with get_deploy_client("databricks://dev") as client:
        assert client.list_endpoints() == []


def test_the_config_file_option_takes_a_path_object(fake, tmp_path):
    config = write_config(tmp_path / "cfg", f"[dev]\nhost = {fake.url}\ntoken = {DEFAULT_TOKEN}\n")
    with get_deploy_client("databricks://dev", config_file=config) as client:
        assert client.list_endpoints() == [] and client.credentials.source == f"profile 'dev' of {config}"


def test_options_beat_the_environment(fake, monkeypatch):
    monkeypatch.setenv("DATABRICKS_HOST", "https://not-this-one.example.com")
    monkeypatch.setenv("DATABRICKS_TOKEN", "dapi" + "0" * 32)
    with get_deploy_client("databricks", host=fake.url, token=DEFAULT_TOKEN) as client:
        assert client.credentials.source == "options" and client.list_endpoints() == []


def test_hosts_without_a_scheme_are_https():
    found = resolve_credentials("databricks", {"host": "adb-123.azuredatabricks.net/", "token": "dapi-abcdefgh"}, environ={})
    assert found == DatabricksCredentials("https://adb-123.azuredatabricks.net", "dapi-abcdefgh", "options")
    assert "dapi-abcdefgh" not in repr(found)


def test_missing_credentials(monkeypatch):
    with pytest.raises(AuthenticationError, match="No Databricks host and token found") as caught:
        get_deploy_client("databricks").list_endpoints()
    assert "DATABRICKS_HOST" in str(caught.value) and "databrickscfg" in str(caught.value)
    monkeypatch.setenv("DATABRICKS_HOST", closed_port_url())
    with pytest.raises(AuthenticationError, match="has no token"):
        get_deploy_client("databricks").list_endpoints()
    monkeypatch.delenv("DATABRICKS_HOST")
    secret = "dapi" + "9" * 32
    with pytest.raises(AuthenticationError, match="No Databricks host") as caught:
        get_deploy_client("databricks", token=secret, config_file="/nonexistent/cfg").get_endpoint("e")
    assert secret not in str(caught.value)


def test_a_client_without_credentials_is_built_and_its_first_request_says_how_to_configure(fake, monkeypatch):
    # As MLflow's client: building it in a module body (a DAG file, a notebook cell) never fails.
    code = "from deployflow import get_deploy_client\nclient = get_deploy_client('databricks')\nprint(repr(client))\n"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "DatabricksDeploymentClient(target_uri='databricks')"

    client = get_deploy_client("databricks", **FAST)
    assert repr(client) == "DatabricksDeploymentClient(target_uri='databricks')"
    with pytest.raises(AuthenticationError) as caught:
        client.list_endpoints()
    message = str(caught.value)
    assert message.startswith("No Databricks host and token found. Pass host= and token= to get_deploy_client, ")
    assert "set DATABRICKS_HOST and DATABRICKS_TOKEN" in message and "'databricks://<profile>'" in message
    assert not caught.value.retryable and not fake.requests
    with pytest.raises(AuthenticationError, match="No Databricks host and token found"):
        client.endpoint_status("chat")

    # A failure is not remembered: once credentials exist, the same client works ...
    monkeypatch.setenv("DATABRICKS_HOST", fake.url)
    monkeypatch.setenv("DATABRICKS_TOKEN", DEFAULT_TOKEN)
    assert client.list_endpoints() == []
    assert repr(client) == f"DatabricksDeploymentClient(target_uri='databricks', host={fake.url!r})"
    # ... and what it found is kept: they are resolved once, not on every request.
    monkeypatch.setenv("DATABRICKS_HOST", "https://elsewhere.invalid")
    monkeypatch.setenv("DATABRICKS_TOKEN", "dapi" + "1" * 32)
    assert client.list_endpoints() == [] and client.host == fake.url
    client.close()


def test_the_cli_reports_missing_credentials_in_one_line():
    script = Path(sys.executable).with_name("deployflow")
    done = subprocess.run([str(script), "list", "-t", "databricks"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 1 and done.stdout == ""
    assert len(done.stderr.splitlines()) == 1
    assert done.stderr.startswith("Error: No Databricks host and token found. Pass host= and token= to get_deploy_client")


def test_credentials_are_resolved_once_when_many_threads_start_at_once(fake, monkeypatch, tmp_path):
    config = write_config(tmp_path / "cfg", f"[DEFAULT]\nhost = {fake.url}\ntoken = {DEFAULT_TOKEN}\n")
    monkeypatch.setenv("DATABRICKS_CONFIG_FILE", str(config))
    client = get_deploy_client("databricks", **FAST)
    start = threading.Barrier(12)
    seen, failures = [], []

    def first_request():
        start.wait()
        try:
            client.list_endpoints()
            seen.append(client.credentials)
        except Exception as exc:  # noqa: BLE001 - reported below
            failures.append(exc)

    threads = [threading.Thread(target=first_request) for _ in range(12)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert failures == [] and len(seen) == 12
    assert len({id(found) for found in seen}) == 1
    config.write_text("[DEFAULT]\nhost = https://elsewhere.invalid\ntoken = dapi-other-token-0000\n", encoding="utf-8")
    assert client.list_endpoints() == [] and client.credentials is seen[0]
    assert len(fake.requests_to("GET", "/api/2.0/serving-endpoints")) == 13
    client.close()


HIDDEN = "Zq8x-hidden-Token-4471-kept-out"


def _chain(error: BaseException) -> list[BaseException]:
    found, current = [], error
    while current is not None and current not in found:
        found.append(current)
        current = current.__cause__ or current.__context__
    return found


@pytest.mark.parametrize(
    ("content", "line"),
    [
        (f"[prod]\nhost = https://h.example.com\ntoken {HIDDEN}\n".encode(), 3),
        (f"token = {HIDDEN}\n[prod]\nhost = https://h.example.com\n".encode(), 1),
        (f"[prod]\nhost = https://h.example.com\n\n  {HIDDEN}\n[other\n".encode(), 5),
        (f"[prod]\nhost = https://h.example.com\ntoken = {HIDDEN}\xff\n".encode("latin-1"), 3),
    ],
    ids=["line-without-equals", "no-section-header", "bad-lines", "not-utf-8"],
)
def test_a_malformed_config_file_names_the_line_but_never_shows_it(tmp_path, monkeypatch, content, line):
    config = tmp_path / "databrickscfg"
    config.write_bytes(content)
    monkeypatch.setenv("DATABRICKS_CONFIG_FILE", str(config))
    client = get_deploy_client("databricks://prod")
    with pytest.raises(TargetError) as caught:
        client.list_endpoints()
    error = caught.value
    assert str(config) in str(error) and f"line {line}" in str(error)
    assert _chain(error) == [error]  # no cause or context that holds the raw line
    shown = [str(error), repr(error), repr(error.args), "".join(traceback.format_exception(error))]
    for text in shown:
        assert HIDDEN not in text and "Zq8x" not in text

    script = Path(sys.executable).with_name("deployflow")
    done = subprocess.run([str(script), "--debug", "list", "-t", "databricks://prod"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 1
    assert "Zq8x" not in done.stderr and "Zq8x" not in done.stdout
    last = done.stderr.splitlines()[-1]
    assert last.startswith(f"Error: The Databricks config file {config} cannot be read") and f"line {line}" in last


def test_unknown_profile_and_missing_file(tmp_path, monkeypatch):
    config = write_config(tmp_path / "cfg", "[one]\nhost = https://h.example.com\ntoken = dapi-secret-value-123\n\n[two]\nhost = https://h2.example.com\ntoken = dapi-secret-value-456\n")
    monkeypatch.setenv("DATABRICKS_CONFIG_FILE", str(config))
    with pytest.raises(TargetError, match=r"profile 'three' is not in .*cfg \(profiles there: one, two\)") as caught:
        get_deploy_client("databricks://three").list_endpoints()
    assert "dapi-secret" not in str(caught.value)
    monkeypatch.setenv("DATABRICKS_CONFIG_PROFILE", "four")
    with pytest.raises(TargetError, match="'four' is not in"):
        get_deploy_client("databricks").list_endpoints()
    with pytest.raises(TargetError, match="does not exist"):
        get_deploy_client("databricks://one", config_file=str(tmp_path / "missing")).list_endpoints()
    write_config(config, "this is not an ini file")
    with pytest.raises(TargetError, match="cannot be read"):
        get_deploy_client("databricks://one").list_endpoints()


@pytest.mark.parametrize(
    "uri",
    ["databricks:/prod", "databricks://", "databricks://a:b", "databricks://p/extra", "databricks://p?x=1", "databricks://u@p", "databricks:prod"],
)
def test_malformed_uris(uri):
    from deployflow.targets.databricks import DatabricksDeploymentClient

    with pytest.raises(TargetError, match="not a Databricks target URI"):
        DatabricksDeploymentClient(uri, host="https://h.example.com", token="dapi-abcdefghij")
    # Through the registry, a scheme with nothing after it is refused before the target sees it.
    with pytest.raises(TargetError, match="not a Databricks target URI" if uri != "databricks://" else "has nothing after"):
        get_deploy_client(uri, host="https://h.example.com", token="dapi-abcdefghij")


def test_bad_options_and_hosts():
    with pytest.raises(InvalidInputError, match="Unknown option.*tokn"):
        get_deploy_client("databricks", host="https://h.example.com", tokn="x")
    with pytest.raises(TargetError, match="not a workspace URL"):
        get_deploy_client("databricks", host="ftp://h.example.com", token="dapi-abcdefghij")
    with pytest.raises(InvalidInputError, match="poll_interval"):
        get_deploy_client("databricks", host="https://h.example.com", token="dapi-abcdefghij", poll_interval=-1)


def test_rebalance_keeps_proportions_in_whole_percentages():
    assert rebalance({"a": 50, "b": 50}, "c", 10) == {"a": 45, "b": 45, "c": 10}
    assert rebalance({"a": 1, "b": 1, "c": 1}) == {"a": 34, "b": 33, "c": 33}
    assert rebalance({"a": 0, "b": 0}, "c", 40) == {"a": 30, "b": 30, "c": 40}
    assert rebalance({}, "only", 30) == {"only": 100}
    assert sum(rebalance({"a": 33, "b": 67}, "c", 7).values()) == 100


def test_help_run_local_and_registry():
    text = target_help("databricks")
    for needle in ("databricks://PROFILE", "DATABRICKS_CONFIG_FILE", "traffic_percentage", "workload_size", "poll_interval", "predict_stream"):
        assert needle in text
    from deployflow.targets import databricks

    with pytest.raises(NotSupportedError):
        databricks.run_local("x", "models:/m/1")
