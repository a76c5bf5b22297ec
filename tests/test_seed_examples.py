"""The examples of the MLflow API pages this project started from run unchanged, apart from the import.

The code blocks are read from ``shared/seeds/mlflow-deployment-clients.rst`` (beside the repository), the
line ``from mlflow.deployments import get_deploy_client`` becomes ``from deployflow import
get_deploy_client``, and each block runs against a fake service on 127.0.0.1:

* Databricks blocks get ``DATABRICKS_HOST`` / ``DATABRICKS_TOKEN`` pointing at the fake workspace;
* the OpenAI block sets its own ``OPENAI_API_KEY``; ``OPENAI_BASE_URL`` points at the fake server;
* the deployments-server block hard-codes ``http://localhost:5000``: ``HTTP_PROXY`` sends its requests to
  the fake gateway (which accepts proxy-style request lines), so nothing listens on port 5000.

The other page (``mlflow-deployments-api.txt``) has one example, for a ``redisai`` plugin, calling
``predict_deployment``, a method MLflow's interface does not have: it cannot run anywhere and is left out.

The second half runs the usage shown in the docstrings of MLflow's Databricks and deployments-server
clients (create/update/delete/list endpoints, tags, rate limits, AI gateway, predict, predict_stream),
with the checks their documented answers allow.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from deployflow import get_deploy_client
from fakes.base import scrub_environment
from fakes.databricks import DEFAULT_TOKEN, FakeDatabricks
from fakes.gateway import FakeGateway
from fakes.openai import FakeOpenAI

SEEDS = Path(os.environ.get("DEPLOYFLOW_SEEDS_DIR") or Path(__file__).resolve().parents[2] / "shared" / "seeds")
PAGE = SEEDS / "mlflow-deployment-clients.rst"
MLFLOW_IMPORT = "from mlflow.deployments import get_deploy_client"
OUR_IMPORT = "from deployflow import get_deploy_client"

pytestmark = pytest.mark.skipif(not PAGE.is_file(), reason=f"the MLflow seed pages are not at {SEEDS}")


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch, tmp_path):
    scrub_environment(monkeypatch, tmp_path)


def page_examples() -> list[str]:
    """The python code blocks of the page, dedented, in page order."""
    text = PAGE.read_text(encoding="utf-8")
    blocks = re.findall(r"\.\. code-block:: python\n\n((?:    .*\n|[ \t]*\n)+)", text)
    return [re.sub(r"(?m)^    ", "", block).strip() + "\n" for block in blocks]


def run_example(code: str) -> dict:
    assert MLFLOW_IMPORT in code
    ours = code.replace(MLFLOW_IMPORT, OUR_IMPORT)
    assert "mlflow" not in ours.replace("mlflow.org", ""), "only the import may change"
    namespace: dict = {"__name__": "seed_example"}
    exec(compile(ours, str(PAGE), "exec"), namespace)  # noqa: S102 - the page's own example
    return namespace


def example(containing: str, *, last_line: bool = False) -> str:
    """The one example holding ``containing`` (as its last line, with ``last_line``)."""
    found = [code for code in page_examples() if (code.strip().endswith(containing) if last_line else containing in code)]
    assert len(found) == 1, f"expected one example containing {containing!r}, found {len(found)}"
    return found[0]


@pytest.fixture
def databricks(monkeypatch):
    with FakeDatabricks() as fake:
        monkeypatch.setenv("DATABRICKS_HOST", fake.url)
        monkeypatch.setenv("DATABRICKS_TOKEN", DEFAULT_TOKEN)
        monkeypatch.setenv("DEPLOYFLOW_DATABRICKS_POLL_INTERVAL", "0.01")
        yield fake


@pytest.fixture
def gateway_at_localhost_5000(monkeypatch):
    chat = {"name": "chat", "endpoint_type": "llm/v1/chat", "model": {"name": "gpt-3.5-turbo", "provider": "openai"}}
    completions = {"name": "completions", "endpoint_type": "llm/v1/completions", "model": {"name": "gpt-4o-mini", "provider": "openai"}}
    with FakeGateway([chat, completions]) as fake:
        monkeypatch.setenv("HTTP_PROXY", fake.url)
        yield fake


def test_the_page_has_the_examples_this_file_runs():
    examples = page_examples()
    assert len(examples) == 4
    assert all(MLFLOW_IMPORT in code for code in examples)


def test_example_databricks_client(databricks):
    namespace = run_example(example('client = get_deploy_client("databricks")', last_line=True))
    assert type(namespace["client"]).__name__ == "DatabricksDeploymentClient"
    assert namespace["client"].host == databricks.url


def test_example_openai_predict(monkeypatch):
    with FakeOpenAI(key="YOUR_API_KEY") as fake:
        monkeypatch.setenv("OPENAI_API_KEY", "restored-after-the-test")  # the example overwrites it
        monkeypatch.setenv("OPENAI_BASE_URL", f"{fake.url}/v1")
        namespace = run_example(example('get_deploy_client("openai")'))
        sent = fake.requests_to("POST", "/v1/chat/completions")
    assert len(sent) == 1 and sent[0].json() == {"messages": [{"role": "user", "content": "Hello!"}], "model": "gpt-4"}
    assert type(namespace["client"]).__name__ == "OpenAIDeploymentClient"


def test_example_deployments_server_list_endpoints(gateway_at_localhost_5000):
    gateway_at_localhost_5000.endpoints = gateway_at_localhost_5000.endpoints[:1]
    namespace = run_example(example("client.list_endpoints()"))  # its assert is the check
    assert len(namespace["endpoints"]) == 1
    assert gateway_at_localhost_5000.requests_to("GET", "/api/2.0/endpoints/")


def test_example_databricks_create_endpoint(databricks):
    namespace = run_example(example("client.create_endpoint("))
    endpoint = namespace["endpoint"]
    assert endpoint["name"] == "chat" and endpoint["state"] == {"ready": "READY", "config_update": "NOT_UPDATING"}
    assert databricks.endpoints["chat"]["config"]["served_entities"][0]["name"] == "test"


# --------------------------------------------------------------------------------------------------
# The usage in the docstrings of MLflow's clients
# --------------------------------------------------------------------------------------------------


def test_databricks_client_documented_usage(databricks):
    client = get_deploy_client("databricks")
    endpoint = client.create_endpoint(
        config={
            "name": "test",
            "config": {
                "served_entities": [
                    {
                        "external_model": {
                            "name": "gpt-4",
                            "provider": "openai",
                            "task": "llm/v1/chat",
                            "openai_config": {"openai_api_key": "{{secrets/scope/key}}"},
                        },
                    }
                ],
                "route_optimized": True,
            },
        },
    )
    assert endpoint["name"] == "test" and endpoint["task"] == "llm/v1/chat" and endpoint["endpoint_type"] == "EXTERNAL_MODEL"

    updated_endpoint = client.update_endpoint_config(
        endpoint="test",
        config={
            "served_entities": [
                {
                    "name": "gpt-4o-mini",
                    "external_model": {
                        "name": "gpt-4o-mini",
                        "provider": "openai",
                        "task": "llm/v1/chat",
                        "openai_config": {"openai_api_key": "{{secrets/scope/key}}"},
                    },
                }
            ]
        },
    )
    assert updated_endpoint["state"] == {"ready": "READY", "config_update": "NOT_UPDATING"}

    updated_tags = client.update_endpoint_tags(endpoint="test", config={"add_tags": [{"key": "project", "value": "test"}]})
    assert updated_tags == {"tags": [{"key": "project", "value": "test"}]}

    rate_limits = {"rate_limits": [{"calls": 10, "key": "endpoint", "renewal_period": "minute"}]}
    assert client.update_endpoint_rate_limits(endpoint="test", config=rate_limits) == rate_limits

    gateway_config = {
        "usage_tracking_config": {"enabled": True},
        "inference_table_config": {"enabled": True, "catalog_name": "my_catalog", "schema_name": "my_schema"},
    }
    assert client.update_endpoint_ai_gateway(endpoint="test", config=gateway_config) == {
        "usage_tracking_config": {"enabled": True},
        "inference_table_config": {"catalog_name": "my_catalog", "schema_name": "my_schema", "table_name_prefix": "test", "enabled": True},
    }

    with pytest.warns(FutureWarning):
        assert client.update_endpoint(endpoint="test", config={"rate_limits": [{"key": "user", "renewal_period": "minute", "calls": 10}]}) == {
            "rate_limits": [{"key": "user", "renewal_period": "minute", "calls": 10}]
        }

    response = client.predict(endpoint="test", inputs={"messages": [{"role": "user", "content": "Hello!"}]})
    assert response["object"] == "chat.completion" and response["choices"][0]["message"]["role"] == "assistant"

    chunk_iter = client.predict_stream(
        endpoint="test",
        inputs={"messages": [{"role": "user", "content": "Hello!"}], "temperature": 0.0, "n": 1, "max_tokens": 500},
    )
    chunks = list(chunk_iter)
    assert chunks and all(chunk["object"] == "chat.completion.chunk" for chunk in chunks)

    assert client.get_endpoint(endpoint="test")["name"] == "test"
    assert [e["name"] for e in client.list_endpoints()] == ["test"]
    client.delete_endpoint(endpoint="test")
    assert client.list_endpoints() == []


def test_deployments_server_client_documented_usage(gateway_at_localhost_5000):
    client = get_deploy_client("http://localhost:5000")
    endpoint = client.get_endpoint(endpoint="chat")
    assert endpoint.dict() == {
        "name": "chat",
        "endpoint_type": "llm/v1/chat",
        "model": {"name": "gpt-3.5-turbo", "provider": "openai"},
        "endpoint_url": "http://localhost:5000/gateway/chat/invocations",
    }
    response = client.predict(endpoint="chat", inputs={"messages": [{"role": "user", "content": "Hello"}]})
    assert response["object"] == "chat.completion" and response["choices"][0]["finish_reason"] == "stop"
    completion = client.predict(endpoint="completions", inputs={"prompt": "Hello!", "temperature": 0.3, "max_tokens": 500})
    assert completion["choices"][0]["text"] == "Completed: Hello!"
    chunks = list(client.predict_stream(endpoint="chat", inputs={"messages": [{"role": "user", "content": "Hello"}]}))
    assert "".join(chunk["choices"][0]["delta"].get("content", "") for chunk in chunks) == "Echo: Hello"
