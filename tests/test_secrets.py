"""Credentials given as options stay out of reprs, of ``client.options`` and of copies and pickles.

Each HTTP target is built with real-looking credentials against its fake service on 127.0.0.1; the
tests check what a person could see (reprs, str, the options dict) and that the client still works:
directly, rebuilt from its own options, copied, pickled, and unpickled in a fresh process (as Dask
ships work to its workers), where the secret must still be masked.
"""

from __future__ import annotations

import copy
import pickle
import subprocess
import sys
import textwrap
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from typing import Any

import pytest

from deployflow import get_deploy_client
from deployflow.redaction import MASK
from fakes.base import FakeService, scrub_environment
from fakes.databricks import DEFAULT_TOKEN as DATABRICKS_TOKEN
from fakes.databricks import FakeDatabricks
from fakes.gateway import FakeGateway
from fakes.openai import DEFAULT_KEY as OPENAI_KEY
from fakes.openai import FakeOpenAI
from fakes.scoring import FakeScoringServer

GATEWAY_TOKEN = "gw-3f9a8b7c6d5e4f3a2b1c0d9e"
GATEWAY_PASSWORD = "Pa55-word-for-the-gateway"
SERVING_TOKEN = "serving-7d1e2f3a4b5c6d7e8f90"
CHAT = {"messages": [{"role": "user", "content": "Hello!"}]}


@dataclass
class Case:
    """One way of building a client with credentials, and one request that needs them."""

    id: str
    service: Callable[[], FakeService]
    uri: Callable[[Any], str]
    options: Callable[[Any], dict[str, Any]]
    secret: str
    call: str  # Python source of one request, with the client as `client`
    header: str  # the request header that carries the credential
    sent: str  # what that header must hold


CASES = [
    Case(
        "databricks",
        FakeDatabricks,
        lambda fake: "databricks",
        lambda fake: {"host": fake.url, "token": DATABRICKS_TOKEN, "headers": {"X-Team": "ml"}},
        DATABRICKS_TOKEN,
        "client.list_endpoints()",
        "Authorization",
        f"Bearer {DATABRICKS_TOKEN}",
    ),
    Case(
        "openai",
        FakeOpenAI,
        lambda fake: "openai",
        lambda fake: {"api_key": OPENAI_KEY, "base_url": f"{fake.url}/v1", "organization": "org-1"},
        OPENAI_KEY,
        "client.list_endpoints()",
        "Authorization",
        f"Bearer {OPENAI_KEY}",
    ),
    Case(
        "azure-openai",
        FakeOpenAI,
        lambda fake: "openai",
        lambda fake: {
            "api_key": OPENAI_KEY,
            "api_type": "azure",
            "api_base": fake.url,
            "api_version": fake.azure_api_version,
        },
        OPENAI_KEY,
        f"client.predict(endpoint='my-gpt4', inputs={CHAT!r})",
        "api-key",
        OPENAI_KEY,
    ),
    Case(
        "gateway-token",
        lambda: FakeGateway(token=GATEWAY_TOKEN),
        lambda fake: fake.url,
        lambda fake: {"token": GATEWAY_TOKEN},
        GATEWAY_TOKEN,
        "client.list_endpoints()",
        "Authorization",
        f"Bearer {GATEWAY_TOKEN}",
    ),
    Case(
        "gateway-basic",
        lambda: FakeGateway(basic=("ann", GATEWAY_PASSWORD)),
        lambda fake: fake.url,
        lambda fake: {"username": "ann", "password": GATEWAY_PASSWORD},
        GATEWAY_PASSWORD,
        "client.get_endpoint('chat')",
        "Authorization",
        "Basic YW5uOlBhNTUtd29yZC1mb3ItdGhlLWdhdGV3YXk=",
    ),
    Case(
        "serving-auth-token",
        lambda: FakeScoringServer(token=SERVING_TOKEN),
        lambda fake: f"serving+{fake.url}",
        lambda fake: {"auth_token": SERVING_TOKEN},
        SERVING_TOKEN,
        "client.predict(inputs={'inputs': [[1.0, 2.0]]})",
        "Authorization",
        f"Bearer {SERVING_TOKEN}",
    ),
    Case(
        "serving-header",
        lambda: FakeScoringServer(token=SERVING_TOKEN),
        lambda fake: f"serving+{fake.url}",
        lambda fake: {"headers": {"Authorization": f"Bearer {SERVING_TOKEN}", "X-Team": "ml"}},
        SERVING_TOKEN,
        "client.predict(inputs={'inputs': [[1.0, 2.0]]})",
        "Authorization",
        f"Bearer {SERVING_TOKEN}",
    ),
]


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch, tmp_path):
    scrub_environment(monkeypatch, tmp_path)


@pytest.fixture(params=CASES, ids=[case.id for case in CASES])
def case(request) -> Case:
    return request.param


@pytest.fixture
def fake(case) -> Iterator[FakeService]:
    with case.service() as service:
        yield service


def build(case: Case, fake: FakeService) -> Any:
    return get_deploy_client(case.uri(fake), **case.options(fake))


def call(case: Case, client: Any) -> Any:
    return eval(case.call, {"client": client})  # the source is one of the cases above


def assert_masked(case: Case, client: Any) -> None:
    for text in (repr(client), str(client), repr(client.options), str(client.options), repr(vars(client))):
        assert case.secret not in text, text
    assert MASK in repr(client.options)


def assert_sent(case: Case, fake: FakeService) -> None:
    assert fake.requests, "no request reached the fake"
    assert fake.requests[-1].header(case.header) == case.sent


def test_options_and_reprs_never_show_the_secret(case, fake):
    with build(case, fake) as client:
        assert_masked(case, client)
        call(case, client)
        assert_sent(case, fake)
        assert_masked(case, client)
        assert set(client.options) == set(case.options(fake))  # every option is still there, by name


def test_a_client_rebuilt_from_its_options_sends_the_same_credentials(case, fake):
    with build(case, fake) as client, get_deploy_client(client.target_uri, **client.options) as twin:
        assert_masked(case, twin)
        call(case, twin)
        assert_sent(case, fake)


@pytest.mark.parametrize(
    "duplicate",
    [copy.copy, copy.deepcopy, lambda client: pickle.loads(pickle.dumps(client))],
    ids=["copy", "deepcopy", "pickle"],
)
def test_copies_and_pickles_work_and_still_mask(case, fake, duplicate):
    with build(case, fake) as client:
        fresh = duplicate(client)  # before the first request (credentials not yet used)
        call(case, client)
        used = duplicate(client)  # after it
        for other in (fresh, used):
            assert_masked(case, other)
            call(case, other)
            assert_sent(case, fake)


WORKER = textwrap.dedent(
    """
    import pickle, sys
    from deployflow.redaction import redact

    with open(sys.argv[1], "rb") as handle:
        shipped = pickle.load(handle)
    for name, (client, source) in shipped.items():
        eval(source, {"client": client})
        print(name, "options", repr(client.options))
        print(name, "client", repr(client))
    with open(sys.argv[2], encoding="utf-8") as handle:
        for line in handle.read().splitlines():
            print("said:", redact(f"the worker was given {line}"))
    """
)


def test_a_client_unpickled_in_a_fresh_process_works_and_masks(tmp_path):
    with ExitStack() as stack:
        shipped = {}
        for case in CASES:
            fake = stack.enter_context(case.service())
            client = stack.enter_context(build(case, fake))
            call(case, client)
            shipped[case.id] = (client, case.call)
        (tmp_path / "clients.pickle").write_bytes(pickle.dumps(shipped))
        (tmp_path / "secrets.txt").write_text("\n".join(case.secret for case in CASES), encoding="utf-8")
        done = subprocess.run(
            [sys.executable, "-c", WORKER, str(tmp_path / "clients.pickle"), str(tmp_path / "secrets.txt")],
            capture_output=True,
            text=True,
            timeout=120,
        )
    assert done.returncode == 0, done.stderr
    for case in CASES:
        assert case.secret not in done.stdout and case.secret not in done.stderr
        assert f"{case.id} options" in done.stdout
    assert done.stdout.count(f"said: the worker was given {MASK}") == len(CASES)


def test_a_secret_can_be_given_wrapped(case, fake):
    from deployflow.redaction import Secret

    options = case.options(fake)
    name = next(key for key in ("token", "api_key", "password", "auth_token") if key in options) if case.id != "serving-header" else None
    if name is None:
        options["headers"] = {**options["headers"], "Authorization": Secret(options["headers"]["Authorization"])}
    else:
        options[name] = Secret(options[name])
    assert case.secret not in repr(options)
    with get_deploy_client(case.uri(fake), **options) as client:
        assert_masked(case, client)
        call(case, client)
        assert_sent(case, fake)
