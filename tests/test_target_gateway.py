"""The http/https targets (MLflow deployments server / AI gateway) against a fake server on 127.0.0.1."""

from __future__ import annotations

import copy
import json
import pickle
import threading

import pytest

from deployflow import (
    AuthenticationError,
    InvalidInputError,
    NotFoundError,
    NotSupportedError,
    RemoteError,
    State,
    TargetError,
    get_deploy_client,
    target_help,
)
from fakes.base import scrub_environment
from fakes.gateway import DEFAULT_ENDPOINTS, FakeGateway

FAST = {"max_retries": 3, "backoff_factor": 0.01, "backoff_max": 0.05}
CHAT = {"messages": [{"role": "user", "content": "Hello"}]}


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch, tmp_path):
    scrub_environment(monkeypatch, tmp_path)


@pytest.fixture
def fake():
    with FakeGateway() as service:
        yield service


@pytest.fixture
def client(fake):
    with get_deploy_client(fake.url, **FAST) as made:
        yield made


def many_endpoints(count):
    return [{"name": f"ep{i}", "endpoint_type": "llm/v1/chat", "model": {"name": f"m{i}", "provider": "openai"}} for i in range(count)]


def test_list_endpoints_follows_every_page(fake):
    fake.endpoints = many_endpoints(5)
    with get_deploy_client(fake.url) as client:
        endpoints = client.list_endpoints()
    assert [e["name"] for e in endpoints] == [f"ep{i}" for i in range(5)]
    pages = fake.requests_to("GET", "/api/2.0/endpoints/")
    assert len(pages) == 3 and pages[0].param("page_token") is None and pages[2].param("page_token")
    first = endpoints[0]
    assert first.dict() == {
        "name": "ep0",
        "endpoint_type": "llm/v1/chat",
        "model": {"name": "m0", "provider": "openai"},
        "endpoint_url": f"{fake.url}/gateway/ep0/invocations",
    }
    assert first.name == "ep0" and first.model_dump() == first.dict()
    first.dict()["model"]["name"] = "changed"
    assert first["model"]["name"] == "m0"  # .dict() is a copy, as pydantic's is


LIMITED = {
    "name": "limited",
    "endpoint_type": "llm/v1/chat",
    "model": {"name": "gpt-4o-mini", "provider": "openai"},
    "limit": {"calls": 10, "key": None, "renewal_period": "minute"},
}
NAMELESS_MODEL = {"name": "routed", "endpoint_type": "llm/v1/embeddings", "model": {"provider": "databricks"}}


def test_nested_records_read_as_attributes_as_mlflows_endpoint_does(fake, client):
    # MLflow's Endpoint has model: EndpointModelInfo(name=None default, provider) and limit: Limit | None.
    fake.endpoints = [*DEFAULT_ENDPOINTS, LIMITED, NAMELESS_MODEL]
    chat = client.get_endpoint("chat")
    assert chat.model.name == "gpt-3.5-turbo" and chat.model.provider == "openai"
    assert chat["model"].name == "gpt-3.5-turbo" and chat.model["provider"] == "openai"
    assert chat.limit is None  # not configured: None, as MLflow's optional field
    limited = client.get_endpoint("limited")
    assert limited.limit.calls == 10 and limited.limit.renewal_period == "minute" and limited.limit.key is None
    assert client.get_endpoint("routed").model.name is None
    listed = {endpoint.name: endpoint for endpoint in client.list_endpoints()}
    assert listed["chat"].model.name == "gpt-3.5-turbo" and listed["limited"].limit.calls == 10
    assert [e.model.provider for e in client.list_endpoints()] == ["openai", "openai", "openai", "openai", "databricks"]
    # Still plain dicts for everything that expects one.
    assert isinstance(chat, dict) and isinstance(chat.model, dict)
    assert chat == {**DEFAULT_ENDPOINTS[0], "endpoint_url": f"{fake.url}/gateway/chat/invocations"}
    assert json.loads(json.dumps(chat))["model"] == {"name": "gpt-3.5-turbo", "provider": "openai"}
    plain = chat.dict()
    assert type(plain) is dict and type(plain["model"]) is dict and plain == chat
    assert pickle.loads(pickle.dumps(chat)).model.name == "gpt-3.5-turbo"
    assert copy.deepcopy(limited).limit.calls == 10
    with pytest.raises(AttributeError, match="no_such_field"):
        chat.no_such_field  # noqa: B018
    with pytest.raises(AttributeError):
        chat.model.no_such_field  # noqa: B018


def test_an_empty_server_and_a_page_token_handed_out_twice(fake, client):
    fake.endpoints = []
    assert client.list_endpoints() == []
    fake.fail(200, {"endpoints": many_endpoints(1), "next_page_token": "again"}, path="/api/2.0/endpoints/", times=2)
    with pytest.raises(RemoteError, match="page token 'again' twice"):
        client.list_endpoints()


def test_endpoint_urls_keep_the_servers_path_prefix():
    with FakeGateway(prefix="/mlflow-gateway") as fake:
        with get_deploy_client(f"{fake.url}/mlflow-gateway/") as client:
            endpoint = client.get_endpoint("chat")
            assert endpoint["endpoint_url"] == f"{fake.url}/mlflow-gateway/gateway/chat/invocations"
            assert client.predict(endpoint="chat", inputs=CHAT)["choices"][0]["message"]["content"] == "Echo: Hello"


def test_get_endpoint_and_status(client, fake):
    endpoint = client.get_endpoint("completions")
    assert endpoint.dict() == {**DEFAULT_ENDPOINTS[1], "endpoint_url": f"{fake.url}/gateway/completions/invocations"}
    with pytest.raises(NotFoundError, match="'nope' is not present or active") as caught:
        client.get_endpoint("nope")
    assert caught.value.status_code == 404
    assert client.endpoint_status("chat").state is State.READY
    assert client.endpoint_status("nope").state is State.NOT_FOUND
    assert client.wait_for_endpoint("chat", timeout=5).state is State.READY
    with pytest.raises(NotFoundError):
        client.wait_for_endpoint("nope", timeout=5, poll_interval=0.01, not_found_grace=0.05)


def test_predict_each_endpoint_type(client, fake):
    chat = client.predict(endpoint="chat", inputs={**CHAT, "temperature": 0.1})
    assert chat["object"] == "chat.completion" and chat["choices"][0]["message"]["content"] == "Echo: Hello"
    assert fake.requests_to("POST", "/endpoints/chat/invocations")[0].json() == {**CHAT, "temperature": 0.1}
    completion = client.predict(endpoint="completions", inputs={"prompt": "Hi", "max_tokens": 5})
    assert completion["choices"][0]["text"] == "Completed: Hi"
    embeddings = client.predict(endpoint="embeddings", inputs={"input": ["ab", "abcd"]})
    assert [item["embedding"][0] for item in embeddings["data"]] == [2.0, 4.0]
    with pytest.raises(InvalidInputError, match="messages: field required") as caught:
        client.predict(endpoint="chat", inputs={"prompt": "wrong type"})
    assert caught.value.status_code == 422
    with pytest.raises(NotFoundError):
        client.predict(endpoint="nope", inputs=CHAT)
    with pytest.raises(InvalidInputError, match="as a dict"):
        client.predict(endpoint="chat", inputs=["not", "a", "dict"])
    with pytest.raises(InvalidInputError, match="endpoint name"):
        client.predict(inputs=CHAT)


def test_predict_stream_chat_and_completions(client, fake):
    chunks = list(client.predict_stream(endpoint="chat", inputs=CHAT))
    assert "".join(c["choices"][0]["delta"].get("content", "") for c in chunks) == "Echo: Hello"
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop"
    assert fake.requests_to("POST", "/endpoints/chat/invocations")[-1].json() == {**CHAT, "stream": True}
    texts = [c["choices"][0]["text"] for c in client.predict_stream(endpoint="completions", inputs={"prompt": "a b"})]
    assert "".join(texts) == "Completed: a b"
    with pytest.raises(InvalidInputError, match="not supported for embeddings"):
        client.predict_stream(endpoint="embeddings", inputs={"input": "x"})


def test_a_stream_arrives_chunk_by_chunk(client, fake):
    fake.stream_gate = threading.Event()
    stream = client.predict_stream(endpoint="chat", inputs=CHAT)
    assert next(stream)["choices"][0]["delta"]["content"] == "Echo:"
    fake.stream_gate.set()
    assert len(list(stream)) == 2


def test_an_error_event_mid_stream_raises(client):
    stream = client.predict_stream(endpoint="chat", inputs={"messages": [{"role": "user", "content": "explode now"}]})
    assert next(stream)["object"] == "chat.completion.chunk"
    with pytest.raises(RemoteError, match="provider failed mid-stream"):
        next(stream)


def test_a_server_that_answers_a_stream_request_with_plain_json(client, fake):
    fake.fail(200, {"choices": [{"message": {"content": "all at once"}}]}, method="POST", path="/endpoints/chat/")
    assert list(client.predict_stream(endpoint="chat", inputs=CHAT)) == [{"choices": [{"message": {"content": "all at once"}}]}]


def test_503_with_retry_after_is_retried(client, fake):
    fake.fail(503, {"detail": "busy"}, method="GET", headers={"Retry-After": "0"})
    assert len(client.list_endpoints()) == 3
    assert len(fake.requests_to("GET", "/api/2.0/endpoints/")) == 3  # one refused, two pages


# --------------------------------------------------------------------------------------------------
# Credentials
# --------------------------------------------------------------------------------------------------

TOKEN = "gateway-token-0123456789"
PASSWORD = "s3cret-password-value"


@pytest.fixture
def guarded():
    with FakeGateway(token=TOKEN, basic=("alice", PASSWORD)) as service:
        yield service


def test_token_and_basic_credentials_from_options(guarded):
    with get_deploy_client(guarded.url, token=TOKEN) as client:
        assert client.get_endpoint("chat")["name"] == "chat"
    assert guarded.requests[-1].header("Authorization") == f"Bearer {TOKEN}"
    with get_deploy_client(guarded.url, username="alice", password=PASSWORD) as client:
        assert len(client.list_endpoints()) == 3
    assert guarded.requests[-1].header("Authorization").startswith("Basic ")


def test_credentials_from_mlflows_environment_variables(guarded, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", "alice")
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", PASSWORD)
    with get_deploy_client(guarded.url) as client:
        assert client.endpoint_status("chat").state is State.READY
    monkeypatch.setenv("MLFLOW_TRACKING_TOKEN", TOKEN)
    with get_deploy_client(guarded.url) as client:
        client.get_endpoint("chat")
    assert guarded.requests[-1].header("Authorization") == f"Bearer {TOKEN}"  # a token wins over basic


def test_credentials_in_the_url_are_basic_auth_and_never_shown(guarded):
    with get_deploy_client(f"http://alice:{PASSWORD}@127.0.0.1:{guarded.port}") as client:
        endpoint = client.get_endpoint("chat")
        assert endpoint["endpoint_url"] == f"http://127.0.0.1:{guarded.port}/gateway/chat/invocations"
        assert PASSWORD not in repr(client)


def test_missing_or_wrong_credentials(guarded, monkeypatch):
    with get_deploy_client(guarded.url) as client:
        with pytest.raises(AuthenticationError) as caught:
            client.list_endpoints()
    assert caught.value.status_code == 401
    wrong = "wrong-token-abcdefghijkl"
    with get_deploy_client(guarded.url, token=wrong) as client:
        with pytest.raises(AuthenticationError) as caught:
            client.predict(endpoint="chat", inputs=CHAT)
    assert wrong not in str(caught.value) and wrong not in repr(caught.value)
    with pytest.raises(InvalidInputError, match="both options username and password"):
        get_deploy_client(guarded.url, username="alice")
    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", "alice")
    with pytest.raises(InvalidInputError, match="MLFLOW_TRACKING_PASSWORD"):
        get_deploy_client(guarded.url)


def test_tls_settings_from_mlflows_environment_variables(monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_INSECURE_TLS", "true")
    with get_deploy_client("https://gateway.example.com") as client:
        assert client._transport.settings.verify is False
    with get_deploy_client("https://gateway.example.com", verify=True) as client:
        assert client._transport.settings.verify is True


# --------------------------------------------------------------------------------------------------
# Bad input and what the server does not offer
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("uri", ["http://", "https:///path", "http://host:notaport", "http://host:5000?x=1", "https://host#frag"])
def test_malformed_uris(uri):
    with pytest.raises(TargetError):
        get_deploy_client(uri)


def test_unknown_options():
    with pytest.raises(InvalidInputError, match="Unknown option.*api_key"):
        get_deploy_client("http://localhost:5000", api_key="x")


@pytest.mark.parametrize(
    "call",
    [
        lambda c: c.create_endpoint("x", {}),
        lambda c: c.update_endpoint("x", {}),
        lambda c: c.delete_endpoint("x"),
        lambda c: c.create_deployment("x", "models:/m/1"),
        lambda c: c.update_deployment("x"),
        lambda c: c.delete_deployment("x"),
        lambda c: c.list_deployments(),
        lambda c: c.get_deployment("x"),
    ],
)
def test_what_the_server_does_not_offer(client, call):
    with pytest.raises(NotSupportedError, match="configuration file"):
        call(client)


def test_help_and_run_local():
    text = target_help("https://gateway:5000")
    for needle in ("http://HOST:PORT", "MLFLOW_TRACKING_TOKEN", "predict_stream", "list_endpoints"):
        assert needle in text
    from deployflow.targets import gateway

    with pytest.raises(NotSupportedError):
        gateway.run_local("x", "y")
