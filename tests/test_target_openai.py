"""The openai target against a fake OpenAI-compatible server (with Azure OpenAI's routes) on 127.0.0.1."""

from __future__ import annotations

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
from fakes.openai import DEFAULT_KEY, DEFAULT_MODELS, FakeOpenAI

FAST = {"max_retries": 3, "backoff_factor": 0.01, "backoff_max": 0.05}
CHAT = {"messages": [{"role": "user", "content": "Hello!"}]}


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch, tmp_path):
    scrub_environment(monkeypatch, tmp_path)


@pytest.fixture
def fake():
    with FakeOpenAI() as service:
        yield service


@pytest.fixture
def client(fake):
    with get_deploy_client("openai", api_key=DEFAULT_KEY, base_url=f"{fake.url}/v1", **FAST) as made:
        yield made


def test_chat_completions_and_embeddings(client, fake):
    chat = client.predict(endpoint="gpt-4", inputs={**CHAT, "temperature": 0})
    assert chat["object"] == "chat.completion" and chat["choices"][0]["message"]["content"] == "Hello! You said: Hello!"
    sent = fake.requests_to("POST", "/v1/chat/completions")[0]
    assert sent.json() == {**CHAT, "temperature": 0, "model": "gpt-4"}
    assert sent.header("Authorization") == f"Bearer {DEFAULT_KEY}"
    completion = client.predict(endpoint="gpt-3.5-turbo-instruct", inputs={"prompt": "Once"})
    assert completion["choices"][0]["text"] == "Once ... and so on"
    embeddings = client.predict(endpoint="text-embedding-3-small", inputs={"input": ["abc"]})
    assert embeddings["data"][0]["embedding"] == [3.0, 0.25, -0.5]
    # The model may also come from the request itself.
    assert client.predict(inputs={**CHAT, "model": "gpt-4o-mini"})["model"] == "gpt-4o-mini"


def test_requests_the_api_cannot_take(client):
    with pytest.raises(InvalidInputError, match="'messages' \\(chat completions\\)"):
        client.predict(endpoint="gpt-4", inputs={"question": "?"})
    with pytest.raises(InvalidInputError, match="Name the model"):
        client.predict(inputs=CHAT)
    with pytest.raises(InvalidInputError, match="as a dict"):
        client.predict(endpoint="gpt-4", inputs="Hello")
    with pytest.raises(NotFoundError, match="does not exist") as caught:
        client.predict(endpoint="gpt-5-unknown", inputs=CHAT)
    assert "model_not_found" in str(caught.value) and caught.value.status_code == 404
    with pytest.raises(InvalidInputError, match="messages") as caught:
        client.predict(endpoint="gpt-4", inputs={"messages": []})
    assert caught.value.status_code == 400


def test_streaming_chat_and_completions(client, fake):
    chunks = list(client.predict_stream(endpoint="gpt-4", inputs=CHAT))
    assert "".join(c["choices"][0]["delta"].get("content", "") for c in chunks) == "Hello! You said: Hello!"
    assert chunks[0]["object"] == "chat.completion.chunk" and chunks[-1]["choices"][0]["finish_reason"] == "stop"
    assert fake.requests_to("POST", "/v1/chat/completions")[-1].json()["stream"] is True
    texts = [c["choices"][0]["text"] for c in client.predict_stream(endpoint="gpt-3.5-turbo-instruct", inputs={"prompt": "Go"})]
    assert "".join(texts) == "Go ... and so on"
    with pytest.raises(InvalidInputError, match="does not stream embeddings"):
        client.predict_stream(endpoint="text-embedding-3-small", inputs={"input": "x"})


def test_a_stream_arrives_chunk_by_chunk_and_can_be_left_early(client, fake):
    fake.stream_gate = threading.Event()
    stream = client.predict_stream(endpoint="gpt-4", inputs=CHAT)
    assert next(stream)["choices"][0]["delta"] == {"content": "Hello!", "role": "assistant"}
    fake.stream_gate.set()
    stream.close()  # the caller stops early: the connection is released, the next call works
    assert client.predict(endpoint="gpt-4", inputs=CHAT)["object"] == "chat.completion"


def test_an_error_event_mid_stream_raises(client):
    stream = client.predict_stream(endpoint="gpt-4", inputs={"messages": [{"role": "user", "content": "explode"}]})
    assert next(stream)["choices"][0]["delta"]["content"] == "Hello!"
    with pytest.raises(RemoteError, match="server had an error while processing"):
        list(stream)


def test_models_are_the_endpoints_and_come_from_the_configured_server(client, fake):
    endpoints = client.list_endpoints()
    assert [e["name"] for e in endpoints] == DEFAULT_MODELS
    assert endpoints[0] == {"name": "gpt-4", "id": "gpt-4", "object": "model", "created": 1686935002, "owned_by": "openai"}
    assert fake.requests_to("GET", "/v1/models")  # not api.openai.com
    assert client.get_endpoint("gpt-4o-mini")["name"] == "gpt-4o-mini"
    with pytest.raises(NotFoundError):
        client.get_endpoint("nope")
    assert client.endpoint_status("gpt-4").state is State.READY
    assert client.endpoint_status("nope").state is State.NOT_FOUND
    assert client.wait_for_endpoint("gpt-4", timeout=5).state is State.READY


def test_settings_from_the_environment_and_options_winning(fake, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", DEFAULT_KEY)
    monkeypatch.setenv("OPENAI_BASE_URL", f"{fake.url}/v1")
    monkeypatch.setenv("OPENAI_ORG_ID", "org-123")
    with get_deploy_client("openai") as client:
        assert client.predict(endpoint="gpt-4", inputs=CHAT)["model"] == "gpt-4"
    assert fake.requests[-1].header("OpenAI-Organization") == "org-123"
    monkeypatch.setenv("OPENAI_API_KEY", "sk-wrongwrongwrongwrongwrong")
    with get_deploy_client("openai", api_key=DEFAULT_KEY, project="proj-9") as client:
        assert client.list_endpoints()
    assert fake.requests[-1].header("OpenAI-Project") == "proj-9"
    monkeypatch.delenv("OPENAI_BASE_URL")
    monkeypatch.setenv("OPENAI_API_BASE", f"{fake.url}/v1")  # MLflow's older variable also names the base URL
    with get_deploy_client("openai", api_key=DEFAULT_KEY) as client:
        assert client.settings.base_url == f"{fake.url}/v1"


def test_missing_and_wrong_keys(fake):
    with pytest.raises(AuthenticationError, match="OPENAI_API_KEY"):
        get_deploy_client("openai")
    wrong = "sk-wrong0123456789abcdefghijkl"
    with get_deploy_client("openai", api_key=wrong, base_url=f"{fake.url}/v1") as client:
        with pytest.raises(AuthenticationError, match="Incorrect API key provided") as caught:
            client.predict(endpoint="gpt-4", inputs=CHAT)
        assert wrong not in repr(client) and wrong not in repr(client.settings)
    # The fake quotes the key back in full; deployflow's error must not.
    assert caught.value.status_code == 401 and "invalid_api_key" in str(caught.value)
    assert wrong not in str(caught.value) and wrong not in repr(caught.value) and wrong not in (caught.value.body or "")


# --------------------------------------------------------------------------------------------------
# Azure OpenAI
# --------------------------------------------------------------------------------------------------


def azure_env(monkeypatch, fake, **extra):
    monkeypatch.setenv("OPENAI_API_TYPE", "azure")
    monkeypatch.setenv("OPENAI_API_KEY", DEFAULT_KEY)
    monkeypatch.setenv("OPENAI_API_BASE", fake.url)
    monkeypatch.setenv("OPENAI_API_VERSION", fake.azure_api_version)
    for name, value in extra.items():
        monkeypatch.setenv(name, value)


def test_azure_deployment_from_the_environment(fake, monkeypatch):
    azure_env(monkeypatch, fake, OPENAI_DEPLOYMENT_NAME="my-gpt4")
    with get_deploy_client("openai") as client:
        answer = client.predict(endpoint="gpt-4", inputs=CHAT)
        assert answer["model"] == "gpt-4"
        chunks = list(client.predict_stream(endpoint="gpt-4", inputs=CHAT))
        assert chunks and chunks[0]["object"] == "chat.completion.chunk"
        assert [e["name"] for e in client.list_endpoints()] == DEFAULT_MODELS
        assert client.endpoint_status("gpt-4").state is State.READY
    sent = fake.requests_to("POST", "/openai/deployments/my-gpt4/chat/completions")[0]
    assert sent.param("api-version") == fake.azure_api_version
    assert sent.header("api-key") == DEFAULT_KEY and sent.header("Authorization") is None


def test_azure_deployment_from_the_endpoint_argument_and_azure_ad_tokens(fake, monkeypatch):
    azure_env(monkeypatch, fake, OPENAI_API_TYPE="azure_ad")
    with get_deploy_client("openai") as client:
        assert client.predict(endpoint="my-gpt4", inputs={"input": "abc"})["data"][0]["embedding"][0] == 3.0
        with pytest.raises(NotFoundError, match="deployment for this resource does not exist"):
            client.predict(endpoint="other", inputs=CHAT)
        with pytest.raises(InvalidInputError, match="needs a deployment"):
            client.predict(inputs=CHAT)
    assert fake.requests_to("POST", "/openai/deployments/my-gpt4/embeddings")[0].header("Authorization") == f"Bearer {DEFAULT_KEY}"


def test_azure_needs_a_resource_url_and_a_version(monkeypatch):
    with pytest.raises(TargetError, match="api_base"):
        get_deploy_client("openai", api_type="azure", api_key=DEFAULT_KEY, api_version="2024-06-01")
    with pytest.raises(TargetError, match="API version"):
        get_deploy_client("openai", api_type="azure", api_key=DEFAULT_KEY, api_base="https://r.openai.azure.com")
    monkeypatch.setenv("AZURE_OPENAI_API_KEY", DEFAULT_KEY)
    monkeypatch.setenv("AZURE_OPENAI_ENDPOINT", "https://r.openai.azure.com")
    with get_deploy_client("openai", api_type="azure", api_version="2024-06-01") as client:
        assert client.settings.base_url == "https://r.openai.azure.com"
    with pytest.raises(TargetError, match="Unknown OpenAI api_type"):
        get_deploy_client("openai", api_type="bedrock", api_key=DEFAULT_KEY)


# --------------------------------------------------------------------------------------------------
# Bad input and what OpenAI does not offer
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("uri", ["openai:/v1", "openai://azure"])
def test_other_uri_forms_are_refused(uri):
    with pytest.raises(TargetError, match="use 'openai'"):
        get_deploy_client(uri, api_key=DEFAULT_KEY)


def test_unknown_options():
    with pytest.raises(InvalidInputError, match="Unknown option.*apikey"):
        get_deploy_client("openai", apikey=DEFAULT_KEY)


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
def test_what_openai_does_not_offer(client, call):
    with pytest.raises(NotSupportedError, match="openai target"):
        call(client)


def test_help_and_run_local():
    text = target_help("openai")
    for needle in ("OPENAI_API_KEY", "OPENAI_BASE_URL", "OPENAI_API_TYPE", "OPENAI_DEPLOYMENT_NAME", "embeddings", "predict_stream"):
        assert needle in text
    from deployflow.targets import openai

    with pytest.raises(NotSupportedError):
        openai.run_local("x", "y")
