"""Issue 12, item 23: a failure reason keeps the model's own exception, however long the paths are.

The reason of a server that could not start quotes its last log line, which names the model file (twice)
before the exception. A checkout or a state directory deep in the file system made that line long, and
cutting it at a fixed length cut the exception off: the one part a reader needs. Here the model file
and the state directory both live more than 200 characters deep.
"""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path

import pytest

from deployflow import DeploymentFailedError, InvalidInputError, State
from support.local_models import ADD_ONE, local_client, local_home

BROKEN_SOURCE = Path(__file__).resolve().parent / "airflow" / "models" / "broken.py"
#: The last line broken.py's server writes ends with this; all of it must reach the reason.
EXCEPTION = "RuntimeError: model weights missing: churn-v7.bin was never uploaded"
WAIT = {"timeout": 60, "poll_interval": 0.05, "max_poll_interval": 0.2}


def _deep(root: Path, length: int) -> Path:
    """A directory under ``root`` whose path is longer than ``length`` characters."""
    path = root
    while len(str(path)) <= length:
        path = path / "a-rather-long-directory-name-of-a-checkout"
    path.mkdir(parents=True)
    return path


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    with local_home(_deep(tmp_path_factory.mktemp("long-state"), 200)) as directory:
        yield directory


@pytest.fixture(scope="module")
def client(home):
    with local_client(home) as local:
        yield local


@pytest.fixture(scope="module")
def broken(tmp_path_factory):
    model = _deep(tmp_path_factory.mktemp("long-checkout"), 220) / "tests" / "airflow" / "models" / "broken.py"
    model.parent.mkdir(parents=True)
    shutil.copy(BROKEN_SOURCE, model)
    assert len(str(model)) > 200
    return f"python:{model}:model"


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_the_reason_of_a_start_that_failed_keeps_the_whole_exception(client, broken, mode):
    name = f"deep-{mode}"
    client.create_deployment(name, broken, config={"wait": False})
    with pytest.raises(DeploymentFailedError) as caught:
        if mode == "sync":
            client.wait_for_deployment(name, **WAIT)
        else:
            asyncio.run(client.wait_for_deployment_async(name, **WAIT))
    assert EXCEPTION in caught.value.reason, caught.value.reason
    assert EXCEPTION in str(caught.value)
    status = client.deployment_status(name)
    assert status.state is State.FAILED and EXCEPTION in status.reason
    assert EXCEPTION in client.get_deployment(name)["reason"]
    client.delete_deployment(name)


def test_a_blocking_create_says_the_whole_exception(client, broken):
    with pytest.raises(InvalidInputError) as caught:
        client.create_deployment("deep-blocking", broken)
    assert EXCEPTION in str(caught.value)


def test_a_failed_update_records_the_whole_exception(client, broken):
    client.create_deployment("deep-update", ADD_ONE)
    with pytest.raises(InvalidInputError):
        client.update_deployment("deep-update", broken)
    record = client.get_deployment("deep-update")
    assert EXCEPTION in record["last_error"], record["last_error"]
    assert EXCEPTION in record["reason"]
    client.delete_deployment("deep-update")


def test_a_very_long_line_loses_its_middle_not_its_end():
    from deployflow.targets.local.process import clip_middle

    line = "running '" + "/deep" * 400 + "/broken.py' failed: " + EXCEPTION
    clipped = clip_middle(line, 1000)
    assert len(clipped) <= 1000
    assert clipped.startswith("running '/deep") and clipped.endswith(EXCEPTION)
    assert clip_middle("short", 1000) == "short"
