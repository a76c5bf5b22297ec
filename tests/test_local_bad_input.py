"""Bad input to the ``local`` target: each case is a clear deployflow error and leaves nothing running.

Missing or unloadable models, unknown ``python:`` attributes, a model that never finishes loading, a
server that dies on its own, bad names, unknown or ill-typed config keys (and the string coercion the
CLI relies on), a busy port.
"""

from __future__ import annotations

import socket

import pytest

from deployflow import (
    DeploymentFailedError,
    InvalidInputError,
    NotFoundError,
    TransientError,
    WaitTimeoutError,
)
from support.local_models import ADD_ONE, local_client, local_home, our_processes, write_module


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    with local_home(tmp_path_factory.mktemp("local-bad-input")) as directory:
        yield directory


@pytest.fixture(scope="module")
def client(home):
    with local_client(home) as local:
        yield local


@pytest.fixture
def nothing_left(client, home):
    """After the test: no deployment recorded, no process of ours running, no generation directory."""
    yield
    assert client.list_deployments() == []
    assert our_processes(home) == []
    deployments = home / "deployments"
    assert not deployments.exists() or list(deployments.iterdir()) == []


def test_missing_model_file(client, tmp_path, nothing_left):
    with pytest.raises(InvalidInputError, match="not found"):
        client.create_deployment("missing", str(tmp_path / "nope.pkl"))


def test_unloadable_pickle_reports_the_servers_own_error(client, tmp_path, nothing_left):
    broken = tmp_path / "broken.pkl"
    broken.write_bytes(b"this is not a pickle at all")
    with pytest.raises(InvalidInputError) as caught:
        client.create_deployment("broken", str(broken))
    message = str(caught.value)
    assert "could not load its model" in message and "broken.pkl" in message
    assert "UnpicklingError" in message  # the child's own words, from its log


def test_unknown_python_attribute(client, nothing_left):
    with pytest.raises(InvalidInputError, match="no_such_thing"):
        client.create_deployment("attr", "python:support.models:no_such_thing")
    with pytest.raises(InvalidInputError, match="no_such_module"):
        client.create_deployment("module", "python:no_such_module:model")


def test_unknown_flavor(client, nothing_left):
    with pytest.raises(InvalidInputError, match="flavor"):
        client.create_deployment("flavored", ADD_ONE, flavor="tensorflow-js")


def test_slow_start_times_out_and_is_stopped(client, tmp_path, nothing_left):
    slow = write_module(tmp_path, "slow.py", "import time\ntime.sleep(60)\nmodel = lambda data: data\n")
    with pytest.raises(WaitTimeoutError, match="startup_timeout"):
        client.create_deployment("slow", f"python:{slow}:model", config={"startup_timeout": "1.5"})


def test_a_server_that_dies_on_its_own(client, tmp_path, nothing_left):
    crash = write_module(tmp_path, "crash.py", "import os\nos._exit(7)\n")
    with pytest.raises(DeploymentFailedError, match="exit code 7"):
        client.create_deployment("crash", f"python:{crash}:model")


@pytest.mark.parametrize("name", ["", "-dash-first", "a/b", "a b", "x" * 64, "..", "ü", None, 42])
def test_bad_names(client, name, nothing_left):
    with pytest.raises(InvalidInputError, match="name"):
        client.create_deployment(name, ADD_ONE)
    with pytest.raises(InvalidInputError, match="name"):
        client.get_deployment(name)
    with pytest.raises(InvalidInputError, match="name"):
        client.delete_deployment(name)
    with pytest.raises(InvalidInputError, match="name"):
        client.create_endpoint(name, config={"routes": "a:100"})


@pytest.mark.parametrize(
    "config, fragment",
    [
        ({"colour": "blue"}, "colour"),
        ({"port": "eighty"}, "port"),
        ({"port": 70000}, "port"),
        ({"port": True}, "port"),
        ({"workers": 0}, "workers"),
        ({"workers": "1.5"}, "workers"),
        ({"wait": "perhaps"}, "wait"),
        ({"request_timeout": "-1"}, "request_timeout"),
        ({"request_timeout": "nan"}, "request_timeout"),
        ({"startup_timeout": []}, "startup_timeout"),
        ({"log_level": "loud"}, "log_level"),
        ({"host": ""}, "host"),
        ({"max_request_bytes": "lots"}, "max_request_bytes"),
        ({"auth_token": "has space"}, "auth_token"),
        ("port=8080", "dict"),
    ],
)
def test_unknown_or_ill_typed_config(client, config, fragment, nothing_left):
    with pytest.raises(InvalidInputError, match=fragment):
        client.create_deployment("configured", ADD_ONE, config=config)


def test_string_values_are_coerced_as_the_cli_sends_them(client):
    created = client.create_deployment(
        "coerced",
        ADD_ONE,
        config={
            "port": "0",
            "workers": "1",
            "wait": "false",
            "request_timeout": "1.5",
            "max_request_bytes": "2048",
            "startup_timeout": "30",
            "log_level": "WARNING",
        },
    )
    assert created["state"] == "PENDING"  # wait=false took effect
    config = created["config"]
    assert config["port"] == 0 and config["workers"] == 1 and config["max_request_bytes"] == 2048
    assert config["request_timeout"] == 1.5 and config["log_level"] == "warning"
    client.wait_for_deployment("coerced", timeout=30, poll_interval=0.05)
    with pytest.raises(InvalidInputError):  # the server enforces the 2 KiB limit it was given
        client.predict("coerced", {"inputs": [[1.0] * 2000]})
    client.delete_deployment("coerced")


def test_busy_port_is_a_clear_error(client, nothing_left):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(InvalidInputError, match=str(port)):
            client.create_deployment("clash", ADD_ONE, config={"port": port})


def test_busy_port_for_an_endpoint_router(client, home):
    client.create_deployment("behind", ADD_ONE, config={"wait": False})
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(InvalidInputError, match=str(port)):
            client.create_endpoint("clashing", config={"routes": "behind:100", "port": str(port)})
    assert client.list_endpoints() == []
    assert not (home / "endpoints" / "clashing").exists()
    client.delete_deployment("behind")
    assert our_processes(home) == []


def test_predict_and_lookups_of_what_does_not_exist(client, nothing_left):
    with pytest.raises(NotFoundError):
        client.get_deployment("ghost")
    with pytest.raises(NotFoundError):
        client.predict("ghost", [[1.0]])
    with pytest.raises(NotFoundError):
        client.predict(endpoint="ghost", inputs=[[1.0]])
    with pytest.raises(InvalidInputError, match="exactly one"):
        client.predict(inputs=[[1.0]])
    with pytest.raises(InvalidInputError):
        client.create_deployment("emptyuri", "  ")
    with pytest.raises(InvalidInputError, match="stop_timeout"):
        client.delete_deployment("ghost", config={"force": True})
    client.delete_deployment("ghost")  # idempotent, no error
    client.delete_endpoint("ghost")


def test_a_model_whose_output_cannot_be_encoded_runs_once_per_predict(client, tmp_path, nothing_left):
    # The server answers 500 for it, every time: the local target does not send the request again.
    calls = tmp_path / "calls.txt"
    source = (
        "import pathlib\n"
        f"CALLS = pathlib.Path({str(calls)!r})\n"
        "def model(data):\n"
        "    with CALLS.open('a') as handle:\n"
        "        handle.write('x')\n"
        "    return [object()]\n"
    )
    module = write_module(tmp_path, "unencodable.py", source)
    client.create_deployment("unencodable", f"python:{module}:model")
    try:
        for expected_calls in (1, 2):
            with pytest.raises(TransientError) as caught:
                client.predict("unencodable", {"inputs": [[1.0]]})
            assert caught.value.status_code == 500 and caught.value.retryable is False
            assert "cannot be written as JSON" in str(caught.value)
            assert calls.read_text() == "x" * expected_calls
    finally:
        client.delete_deployment("unencodable")
