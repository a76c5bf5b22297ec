"""``deployflow promote``: a table per stage, exit codes 0 promoted / 1 rolled back or rejected /
2 usage / 3 inconclusive, against real local servers; one run as a real subprocess."""

from __future__ import annotations

import inspect
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from deployflow import cli
from support.local_models import local_client, local_home
from test_promotion_support import golden_frame, write_models

FAST = ["--bake-seconds", "0.3", "--max-rate", "100", "--min-samples", "5"]


def invoke(*args: str):
    kwargs = {"mix_stderr": False} if "mix_stderr" in inspect.signature(CliRunner.__init__).parameters else {}
    return CliRunner(**kwargs).invoke(cli.cli, list(args))


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    with local_home(tmp_path_factory.mktemp("promotion-cli")) as directory:
        yield directory


@pytest.fixture(scope="module")
def client(home):
    with local_client(home) as local:
        uris = write_models(home)
        for name in ("champion", "better", "worse"):
            local.create_deployment(name, uris[name])
        yield local


@pytest.fixture(scope="module")
def golden(tmp_path_factory):
    path = tmp_path_factory.mktemp("golden") / "golden.csv"
    golden_frame().to_csv(path, index=False)
    return str(path)


def base(client, endpoint: str, challenger: str, golden: str) -> list[str]:
    client.create_endpoint(endpoint, config={"routes": [{"deployment": "champion", "traffic": 100}]})
    return ["promote", "-t", client.target_uri, "--endpoint", endpoint, "--challenger", challenger, "--golden", golden]


def test_promoted_prints_a_table_per_step_and_exits_0(client, golden, tmp_path):
    report_path = tmp_path / "report.json"
    result = invoke(
        *base(client, "cli-ok", "better", golden), "--check", "accuracy>=0.9", "--check", "accuracy>=champion-0.01",
        "--steps", "20,100", "--report-path", str(report_path), *FAST,
    )
    assert result.exit_code == 0, (result.stdout, result.stderr)
    lines = result.stdout.splitlines()
    assert lines[0] == "offline gate: pass (20 rows scored on better)"
    assert lines[1].split() == ["check", "value", "bound", "champion", "verdict"]
    assert lines[2].split() == ["accuracy>=0.9", "1", "0.9", "-", "pass"]
    assert lines[3].split() == ["accuracy>=champion-0.01", "1", "0.89", "0.9", "pass"]
    steps = [line for line in lines if line.startswith("step ")]
    assert [line.split(":")[0] for line in steps] == ["step 20%", "step 100%"]
    assert "split champion=80 better=20" in steps[0]
    assert lines[-1] == "outcome: promoted"
    report = json.loads(report_path.read_text())
    assert report["outcome"] == "promoted" and [s["weight"] for s in report["steps"]] == [20, 100]
    assert client.get_traffic_split("cli-ok") == {"champion": 0.0, "better": 100.0}


def test_rejected_exits_1_with_the_gate_table(client, golden):
    result = invoke(*base(client, "cli-worse", "worse", golden), "--check", "accuracy>=0.9", *FAST)
    assert result.exit_code == 1
    assert result.stdout.splitlines()[0].startswith("offline gate: fail")
    assert result.stdout.splitlines()[-1].startswith("outcome: rejected")
    [error] = result.stderr.splitlines()
    assert error.startswith("Error: 'worse' was not promoted on 'cli-worse'")
    assert client.get_traffic_split("cli-worse") == {"champion": 100.0}


def test_rolled_back_exits_1(client, golden):
    result = invoke(*base(client, "cli-back", "worse", golden), "--check", "online:accuracy>=0.99", "--steps", "50,100", *FAST)
    assert result.exit_code == 1
    assert any(line.startswith("step 50%: fail") for line in result.stdout.splitlines())
    assert result.stdout.splitlines()[-1].startswith("outcome: rolled_back")
    assert client.get_traffic_split("cli-back") == {"champion": 100.0}


def test_inconclusive_exits_3_then_the_same_command_continues(client, golden):
    args = [*base(client, "cli-few", "better", golden), "--check", "accuracy>=0.5", "--steps", "30,100",
            "--bake-seconds", "0.2", "--max-rate", "50"]
    result = invoke(*args, "--min-samples", "500")
    assert result.exit_code == 3
    assert any(line.startswith("step 30%: inconclusive") and "min_samples=500" in line for line in result.stdout.splitlines())
    assert result.stdout.splitlines()[-1].startswith("outcome: paused")
    result = invoke(*args, "--min-samples", "500", "--on-inconclusive", "fail")
    assert result.exit_code == 3 and result.stderr.startswith("Error: The promotion of 'better'")
    result = invoke(*args, "--min-samples", "3")
    assert result.exit_code == 0 and result.stdout.splitlines()[-1] == "outcome: promoted"


@pytest.mark.parametrize(
    "extra",
    [["--check", "accuracy=>0.9"], ["--steps", "50,10"], ["--min-samples", "zero"], ["--bake-seconds", "-1"],
     ["--on-inconclusive", "shrug"], ["--golden", "/nonexistent/golden.csv"]],
)
def test_usage_mistakes_exit_2_with_one_line(client, golden, extra):
    result = invoke("promote", "-t", client.target_uri, "--endpoint", "unused", "--challenger", "better",
                    "--golden", golden, *extra)
    assert result.exit_code == 2, (result.stdout, result.stderr)
    assert result.stdout == "" and len(result.stderr.splitlines()) == 1
    assert result.stderr.startswith("Error: ")


def test_a_real_subprocess(client, golden):
    """The installed console script, in its own process."""
    script = shutil.which("deployflow", path=str(Path(sys.executable).parent))
    assert script, f"the deployflow console script is not installed next to {sys.executable}"
    args = base(client, "cli-process", "better", golden)
    completed = subprocess.run(
        [script, *args, "--check", "accuracy>=0.9", "--steps", "100", *FAST],
        capture_output=True, text=True, timeout=120, env={**os.environ},
    )
    assert completed.returncode == 0, completed.stderr
    assert completed.stdout.splitlines()[-1] == "outcome: promoted"
    assert client.get_traffic_split("cli-process") == {"champion": 0.0, "better": 100.0}
