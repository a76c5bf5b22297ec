"""Several processes working on one ``local`` state directory at once.

Eight Python processes create, update and delete the same name and pairwise-shared names. Afterwards the
state file must still parse and agree with the running processes, every call must have either
succeeded or raised a deployflow error, and once everything is deleted no process of ours may be left.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter

import pytest
import requests

import deployflow
from deployflow.targets.local.process import is_running
from deployflow.targets.local.state import StateStore
from support.local_models import kill_all, our_processes, pythonpath_with_tests

WORKERS = 8


@pytest.fixture
def home(tmp_path):
    directory = tmp_path / "state"
    with pythonpath_with_tests():
        yield directory
    kill_all(directory)


def test_eight_processes_create_update_and_delete(home, tmp_path):
    uri = f"local://{home}"
    workers = []
    with pythonpath_with_tests():
        for index in range(WORKERS):
            result = tmp_path / f"result-{index}.json"
            command = [sys.executable, "-m", "support.local_models", uri, str(index), str(result)]
            workers.append((subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT), result))
    outcomes: Counter = Counter()
    for process, result in workers:
        output, _ = process.communicate(timeout=240)
        assert process.returncode == 0, output.decode(errors="replace")
        for call in json.loads(result.read_text()):
            assert not call["outcome"].startswith("OTHER"), call
            assert issubclass(getattr(deployflow, call["outcome"], type(None)), deployflow.DeploymentError) or (
                call["outcome"] == "ok"
            ), call
            outcomes[(call["operation"], call["outcome"])] += 1
    # Everyone raced for "shared": some creates won and some lost with a conflict.
    assert outcomes[("create", "ok")] >= 1 and outcomes[("create", "ConflictError")] >= 1, outcomes
    assert outcomes[("update", "ok")] >= 1, outcomes

    # The state parses and agrees with reality: no half-done operation, every recorded server alive.
    state = json.loads((home / "state.json").read_text())
    assert state["version"] == 1 and state["endpoints"] == {}
    with deployflow.get_deploy_client(uri) as client:
        for name, record in state["deployments"].items():
            assert record["pending"] is None and record["operation"] is None, record
            assert is_running(record["process"]), name
            url = client.get_deployment(name)["url"]
            assert requests.get(url + "/ping", timeout=5).status_code == 200
        recorded = {record["process"]["pid"] for record in state["deployments"].values()}
        running = {process.pid for process in our_processes(home)}
        assert running == recorded, f"running {running} but the state records {recorded}"

        for name in list(state["deployments"]):
            client.delete_deployment(name)
    assert StateStore(home).read()["deployments"] == {}
    assert our_processes(home) == []
    assert [path for path in (home / "deployments").rglob("*") if path.is_file()] == []
