"""The ``deployflow`` command line, command by command, against installed test plugins.

``recordtarget`` records each call it receives in ``deployflow_test_plugins.CALLS``, so each test checks
both what the user sees and what reached the plugin. ``legacytarget`` is a plugin written before
``endpoint`` existed. A few tests run the real console script in a subprocess.
"""

from __future__ import annotations

import inspect
import json
import os
import shutil
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

import deployflow
from deployflow import api, cli, registry

PLUGINS_DIR = Path(__file__).resolve().parent / "plugins"

try:
    metadata.distribution("deployflow-test-plugins")
except metadata.PackageNotFoundError as _missing:  # fail loudly: skipping would hide the whole suite
    raise RuntimeError(
        f"The test plugins are not installed; run: {sys.executable} -m pip install -e "
        f"{PLUGINS_DIR / 'deployflow-test-plugins'}"
    ) from _missing

import deployflow_test_plugins  # noqa: E402  (after the check above, for a clear message)
from deployflow_test_plugins.recording import LEAKY_SECRET  # noqa: E402

Call = tuple[str, str, dict[str, Any]]


@pytest.fixture(autouse=True)
def isolated(monkeypatch: pytest.MonkeyPatch) -> None:
    """No registrations, cached plugins, default target or debug setting leak between tests."""
    monkeypatch.setattr(registry, "_registered", {})
    monkeypatch.setattr(registry, "_loaded", {})
    monkeypatch.setattr(api, "_target", None)
    for name in (api.TARGET_ENV, api.MLFLOW_TARGET_ENV, cli.DEBUG_ENV):
        monkeypatch.delenv(name, raising=False)
    deployflow_test_plugins.CALLS.clear()


@pytest.fixture
def calls() -> list[Call]:
    return deployflow_test_plugins.CALLS


def runner() -> CliRunner:
    # click 8.1 mixes stderr into stdout unless told not to; 8.2+ always keeps both apart.
    if "mix_stderr" in inspect.signature(CliRunner.__init__).parameters:
        return CliRunner(mix_stderr=False)  # type: ignore[call-arg]
    return CliRunner()


def invoke(*args: str, env: dict[str, str] | None = None) -> Result:
    return runner().invoke(cli.cli, list(args), env=env)


def last_call(calls: list[Call], method: str) -> dict[str, Any]:
    matching = [arguments for _, name, arguments in calls if name == method]
    assert matching, f"{method} was never called; calls: {calls}"
    return matching[-1]


def assert_one_error_line(result: Result, exit_code: int) -> str:
    """The failure contract: the exit code, nothing on stdout, one ``Error:`` line on stderr."""
    assert result.exit_code == exit_code, (result.stdout, result.stderr)
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("Error: ")
    assert "Traceback" not in result.stderr and "Usage:" not in result.stderr
    return lines[0]


def write(tmp_path: Path, name: str, text: str) -> str:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return str(path)


# --------------------------------------------------------------------------------------------------
# Deployments
# --------------------------------------------------------------------------------------------------


def test_create_prints_what_mlflow_prints_and_passes_everything(calls: list[Call]) -> None:
    result = invoke(
        "create", "-t", "recordtarget:/ws", "--name", "iris", "-m", "models:/iris/1", "-f", "python_function",
        "-C", "instance_count=2", "-C", "env=a=b", "--endpoint", "ep",
    )

    assert result.exit_code == 0, result.stderr
    assert result.stdout == "\npython_function deployment iris is created\n"
    assert last_call(calls, "create_deployment") == {
        "target_uri": "recordtarget:/ws",
        "name": "iris",
        "model_uri": "models:/iris/1",
        "flavor": "python_function",
        "config": {"instance_count": "2", "env": "a=b"},
        "endpoint": "ep",
    }


def test_create_with_long_flags_and_without_config(calls: list[Call]) -> None:
    result = invoke("create", "--target", "recordtarget", "--name", "n", "--model-uri", "m", "--flavor", "f")

    assert result.exit_code == 0, result.stderr
    assert "f deployment n is created" in result.stdout
    arguments = last_call(calls, "create_deployment")
    assert arguments["config"] == {} and arguments["endpoint"] is None


def test_a_subcommand_works_when_invoked_on_its_own_as_mlflow_tests_do(calls: list[Call]) -> None:
    result = runner().invoke(cli.create_deployment, ["-f", "f", "-m", "m", "-t", "recordtarget", "--name", "n"])

    assert result.exit_code == 0, result.stderr
    assert "f deployment n is created" in result.stdout


def test_update_prints_the_flavor_and_passes_the_options(calls: list[Call]) -> None:
    result = invoke("update", "-t", "recordtarget", "--name", "n", "-m", "m2", "-f", "f2", "-C", "k=v", "--endpoint", "e")

    assert result.exit_code == 0, result.stderr
    assert result.stdout == "Deployment n is updated (with flavor f2)\n"
    assert last_call(calls, "update_deployment") == {
        "target_uri": "recordtarget",
        "name": "n",
        "model_uri": "m2",
        "flavor": "f2",
        "config": {"k": "v"},
        "endpoint": "e",
    }


def test_update_without_model_or_flavor(calls: list[Call]) -> None:
    result = invoke("update", "-t", "recordtarget", "--name", "n", "-C", "replicas=3")

    assert result.exit_code == 0, result.stderr
    assert "Deployment n is updated (with flavor None)" in result.stdout
    arguments = last_call(calls, "update_deployment")
    assert arguments["model_uri"] is None and arguments["flavor"] is None
    assert arguments["config"] == {"replicas": "3"}


def test_delete(calls: list[Call]) -> None:
    result = invoke("delete", "-t", "recordtarget", "--name", "n", "-C", "force=true", "--endpoint", "e")

    assert result.exit_code == 0, result.stderr
    assert result.stdout == "Deployment n is deleted\n"
    assert last_call(calls, "delete_deployment") == {
        "target_uri": "recordtarget", "name": "n", "config": {"force": "true"}, "endpoint": "e"
    }


def test_list(calls: list[Call]) -> None:
    result = invoke("list", "-t", "recordtarget", "--endpoint", "e")

    assert result.exit_code == 0, result.stderr
    assert result.stdout == "List of all deployments:\n[{'name': 'alpha'}, {'name': 'beta'}]\n"
    assert last_call(calls, "list_deployments")["endpoint"] == "e"


def test_get_prints_key_value_lines(calls: list[Call]) -> None:
    result = invoke("get", "-t", "recordtarget", "--name", "n")

    assert result.exit_code == 0, result.stderr
    assert result.stdout == "name: n\nstate: READY\nendpoint: None\n\n\n"
    assert last_call(calls, "get_deployment") == {"target_uri": "recordtarget", "name": "n", "endpoint": None}


def test_help_prints_the_target_help_with_credentials_masked() -> None:
    result = invoke("help", "-t", "recordtarget")

    assert result.exit_code == 0, result.stderr
    assert result.stdout.startswith("recordtarget: a test target that records calls.\n")
    assert "token=***" in result.stdout
    assert LEAKY_SECRET not in result.stdout


def test_run_local_calls_the_plugin_through_deployflow_run_local(
    calls: list[Call], monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[tuple[Any, ...]] = []
    real_run_local = deployflow.run_local

    def spy(*args: Any) -> None:
        seen.append(args)
        real_run_local(*args)

    monkeypatch.setattr(cli, "_run_local", spy)
    result = invoke("run-local", "-t", "recordtarget", "--name", "n", "-m", "m", "-f", "f", "-C", "port=5001")

    assert result.exit_code == 0, result.stderr
    assert "Serving n from m locally (flavor f, config {'port': '5001'})" in result.stdout
    assert seen == [("recordtarget", "n", "m", "f", {"port": "5001"})]
    assert last_call(calls, "run_local") == {"name": "n", "model_uri": "m", "flavor": "f", "config": {"port": "5001"}}


def test_run_local_is_wired_to_the_public_run_local() -> None:
    assert cli._run_local is deployflow.run_local


# --------------------------------------------------------------------------------------------------
# predict and explain
# --------------------------------------------------------------------------------------------------


def test_predict_json_records_become_a_dataframe(calls: list[Call], tmp_path: Path) -> None:
    path = write(tmp_path, "rows.json", json.dumps([{"a": 1, "b": 2.5}, {"a": 3, "b": 4.5}]))

    result = invoke("predict", "-t", "recordtarget", "--name", "n", "--input-path", path)

    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout) == {"predictions": [{"a": 1, "b": 2.5}, {"a": 3, "b": 4.5}]}
    arguments = last_call(calls, "predict")
    assert arguments["deployment_name"] == "n" and arguments["endpoint"] is None
    assert type(arguments["inputs"]).__name__ == "DataFrame"
    assert list(arguments["inputs"].columns) == ["a", "b"]


def test_predict_reads_json_like_mlflow(calls: list[Call], tmp_path: Path) -> None:
    # MLflow's own CLI test file: {"data": [5000]} becomes a one-column frame.
    path = write(tmp_path, "input.json", '{"data": [5000]}')

    result = invoke("predict", "-t", "recordtarget", "--name", "n", "-I", path)

    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout) == {"predictions": [{"data": 5000}]}
    assert last_call(calls, "predict")["inputs"].to_dict(orient="list") == {"data": [5000]}


def test_predict_passes_a_scoring_request_as_it_is(calls: list[Call], tmp_path: Path) -> None:
    request = {"dataframe_split": {"columns": ["x"], "data": [[1], [2]]}, "params": {"k": 1}}
    path = write(tmp_path, "request.json", json.dumps(request))

    result = invoke("predict", "-t", "recordtarget", "--name", "n", "-I", path)

    assert result.exit_code == 0, result.stderr
    assert last_call(calls, "predict")["inputs"] == request


def test_predict_csv_input(calls: list[Call], tmp_path: Path) -> None:
    path = write(tmp_path, "rows.csv", "x,y\n1,a\n2,b\n")

    result = invoke("predict", "-t", "recordtarget", "--name", "n", "-I", path)

    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout) == {"predictions": [{"x": 1, "y": "a"}, {"x": 2, "y": "b"}]}
    frame = last_call(calls, "predict")["inputs"]
    assert frame.to_dict(orient="list") == {"x": [1, 2], "y": ["a", "b"]}


def test_predict_content_type_overrides_the_file_name(calls: list[Call], tmp_path: Path) -> None:
    path = write(tmp_path, "rows.txt", "x\n7\n")

    result = invoke("predict", "-t", "recordtarget", "--name", "n", "-I", path, "--content-type", "csv")

    assert result.exit_code == 0, result.stderr
    assert last_call(calls, "predict")["inputs"].to_dict(orient="list") == {"x": [7]}


def test_predict_against_an_endpoint_sends_the_json_as_it_is(calls: list[Call], tmp_path: Path) -> None:
    body = {"messages": [{"role": "user", "content": "Hello!"}], "temperature": 0.1}
    path = write(tmp_path, "chat.json", json.dumps(body))

    result = invoke("predict", "-t", "recordtarget", "--endpoint", "chat", "-I", path)

    assert result.exit_code == 0, result.stderr
    arguments = last_call(calls, "predict")
    assert arguments == {"target_uri": "recordtarget", "deployment_name": None, "inputs": body, "endpoint": "chat"}
    assert json.loads(result.stdout) == {"predictions": body}


def test_predict_output_path_writes_json_and_prints_nothing(tmp_path: Path) -> None:
    path = write(tmp_path, "rows.json", json.dumps([{"a": 1}]))
    output = tmp_path / "out" / "predictions.json"
    output.parent.mkdir()

    result = invoke("predict", "-t", "recordtarget", "--name", "n", "-I", path, "--output-path", str(output))

    assert result.exit_code == 0, result.stderr
    assert result.stdout == ""
    assert json.loads(output.read_text()) == {"predictions": [{"a": 1}]}


@pytest.mark.parametrize("names", [[], ["--name", "n", "--endpoint", "e"]], ids=["neither", "both"])
@pytest.mark.parametrize("command", ["predict", "explain"])
def test_predict_needs_exactly_one_of_name_or_endpoint(
    command: str, names: list[str], calls: list[Call], tmp_path: Path
) -> None:
    path = write(tmp_path, "rows.json", "[]")

    result = invoke(command, "-t", "recordtarget", "-I", path, *names)

    line = assert_one_error_line(result, 2)
    assert "exactly one of --name or --endpoint" in line
    assert calls == []


def test_predict_with_a_missing_input_file_is_a_usage_error(tmp_path: Path) -> None:
    result = invoke("predict", "-t", "recordtarget", "--name", "n", "-I", str(tmp_path / "nope.json"))

    line = assert_one_error_line(result, 2)
    assert "nope.json" in line and "does not exist" in line


def test_predict_with_invalid_json_is_an_input_error(calls: list[Call], tmp_path: Path) -> None:
    path = write(tmp_path, "bad.json", "{not json")

    result = invoke("predict", "-t", "recordtarget", "--name", "n", "-I", path)

    line = assert_one_error_line(result, 1)
    assert "bad.json is not valid JSON" in line
    assert calls == []


@pytest.mark.parametrize("command", ["predict", "explain"])
def test_paths_may_be_given_as_path_objects_as_mlflows_tests_do(command: str, calls: list[Call], tmp_path: Path) -> None:
    # MLflow's ported CLI tests invoke the command with pathlib.Path arguments; click passes them on.
    rows = tmp_path / "rows.json"
    rows.write_text(json.dumps([{"a": 1}]), encoding="utf-8")
    table = tmp_path / "rows.csv"
    table.write_text("a\n1\n", encoding="utf-8")
    output = tmp_path / "out.json"

    for source in (rows, table):
        result = runner().invoke(cli.cli, [command, "-t", "recordtarget", "--name", "n", "--input-path", source])
        assert result.exit_code == 0, result.stderr
        result = runner().invoke(cli.cli, [command, "-t", "recordtarget", "--name", "n", "-I", source, "-O", output])
        assert result.exit_code == 0, result.stderr
        assert json.loads(output.read_text(encoding="utf-8"))
    assert len([name for _, name, _ in calls if name == command]) == 4


def test_read_input_takes_a_path_object(tmp_path: Path) -> None:
    rows = tmp_path / "rows.json"
    rows.write_text(json.dumps([{"a": 1}]), encoding="utf-8")
    assert cli.read_input(rows).to_dict(orient="list") == {"a": [1]}
    assert cli.read_input(rows, for_endpoint=True) == [{"a": 1}]
    table = tmp_path / "ROWS.CSV"
    table.write_text("a\n2\n", encoding="utf-8")
    assert cli.read_input(table).to_dict(orient="list") == {"a": [2]}


@pytest.mark.parametrize("command", ["predict", "explain"])
@pytest.mark.parametrize("where", ["nodir/out.json", "afile.txt/out.json"], ids=["missing-directory", "under-a-file"])
def test_an_output_path_that_cannot_be_written_is_a_usage_error_before_scoring(
    command: str, where: str, calls: list[Call], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "afile.txt").write_text("not a directory", encoding="utf-8")
    path = write(tmp_path, "rows.json", json.dumps([{"a": 1}]))

    result = invoke(command, "-t", "recordtarget", "--name", "n", "-I", path, "-O", where)

    line = assert_one_error_line(result, 2)
    assert where in line and "--output-path" in line
    assert "FileNotFoundError" not in line and "NotADirectoryError" not in line and "Errno" not in line
    assert calls == []  # nothing was scored for an answer that could not be kept


def test_console_script_reports_an_unwritable_output_path_with_exit_2(tmp_path: Path) -> None:
    path = write(tmp_path, "rows.json", json.dumps([{"a": 1}]))
    missing = tmp_path / "nodir" / "out.json"

    done = run_script("predict", "-t", "recordtarget", "--name", "n", "-I", path, "-O", str(missing))

    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.splitlines() == [done.stderr.strip()]
    assert done.stderr.startswith("Error: Invalid value for '--output-path' / '-O': ")
    assert str(missing) in done.stderr and "Traceback" not in done.stderr


def test_an_input_file_that_is_not_utf8_is_an_input_error(calls: list[Call], tmp_path: Path) -> None:
    path = tmp_path / "latin1.json"
    path.write_bytes('[{"name": "Zoë"}]'.encode("latin-1"))

    result = invoke("predict", "-t", "recordtarget", "--name", "n", "-I", str(path))

    line = assert_one_error_line(result, 1)
    assert str(path) in line and "UTF-8" in line and "UnicodeDecodeError" not in line
    assert calls == []


def test_an_input_file_that_cannot_be_read_is_a_usage_error(calls: list[Call]) -> None:
    # /proc/self/mem exists and passes the permission check, but reading it fails with EIO.
    unreadable = "/proc/self/mem"
    if not os.path.exists(unreadable):
        pytest.skip("needs Linux's /proc")

    for content_type in ("json", "csv"):
        result = invoke("predict", "-t", "recordtarget", "--name", "n", "-I", unreadable, "--content-type", content_type)
        line = assert_one_error_line(result, 2)
        assert line.startswith("Error: Invalid value for '--input-path' / '-I': ")
        assert unreadable in line and "OSError" not in line
    assert calls == []


def test_a_failure_to_write_the_results_is_one_line_with_exit_1(tmp_path: Path) -> None:
    # /dev/full passes every check (it exists and is writable) and then refuses the write: ENOSPC.
    if not os.path.exists("/dev/full"):
        pytest.skip("needs Linux's /dev/full")
    path = write(tmp_path, "rows.json", json.dumps([{"a": 1}]))

    result = invoke("predict", "-t", "recordtarget", "--name", "n", "-I", path, "-O", "/dev/full")

    line = assert_one_error_line(result, 1)
    assert line == "Error: Cannot write the results to '/dev/full': No space left on device"


def test_a_file_error_raised_by_a_target_is_one_plain_line(tmp_path: Path) -> None:
    missing = tmp_path / "catalog.json"

    class FileBackedClient(deployflow.BaseDeploymentClient):
        def list_deployments(self, endpoint: Any = None) -> Any:
            return json.loads(missing.read_text())

        create_deployment = update_deployment = delete_deployment = get_deployment = predict = None  # type: ignore[assignment]

    deployflow.register_target("filetarget", FileBackedClient)
    result = invoke("list", "-t", "filetarget")

    line = assert_one_error_line(result, 1)
    assert line == f"Error: No such file or directory: {str(missing)!r}"


def test_a_local_uri_with_nothing_after_the_scheme_is_refused() -> None:
    for uri in ("local:", "local://", "local:///"):
        result = invoke("list", "-t", uri)
        line = assert_one_error_line(result, 1)
        assert repr(uri) in line and "'local'" in line
    done = run_script("list", "-t", "local:")
    assert done.returncode == 1 and done.stdout == ""
    assert done.stderr.startswith("Error: 'local:' has nothing after 'local:'") and len(done.stderr.splitlines()) == 1


def test_explain_writes_the_explanation_as_json_records(calls: list[Call], tmp_path: Path) -> None:
    path = write(tmp_path, "rows.json", json.dumps([{"a": 1, "b": 2}]))

    result = invoke("explain", "-t", "recordtarget", "--name", "n", "-I", path)

    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout) == [{"feature": "a", "importance": 0.5}, {"feature": "b", "importance": 0.5}]
    assert last_call(calls, "explain")["deployment_name"] == "n"


def test_explain_to_an_output_file(tmp_path: Path) -> None:
    path = write(tmp_path, "rows.csv", "a\n1\n")
    output = tmp_path / "explanation.json"

    result = invoke("explain", "-t", "recordtarget", "--name", "n", "-I", path, "-O", str(output))

    assert result.exit_code == 0, result.stderr
    assert result.stdout == ""
    assert json.loads(output.read_text()) == [{"feature": "a", "importance": 1.0}]


def test_explain_on_a_target_without_it_is_a_deployment_error(tmp_path: Path) -> None:
    path = write(tmp_path, "rows.json", json.dumps([{"a": 1}]))

    result = invoke("explain", "-t", "optionstarget", "--name", "n", "-I", path)

    line = assert_one_error_line(result, 1)
    assert line == "Error: Computing model explanations is not yet supported for this deployment target"


# --------------------------------------------------------------------------------------------------
# Endpoints
# --------------------------------------------------------------------------------------------------


def test_create_endpoint(calls: list[Call]) -> None:
    result = invoke("create-endpoint", "-t", "recordtarget", "--endpoint", "chat", "-C", "route=gpt")

    assert result.exit_code == 0, result.stderr
    assert result.stdout == "\nEndpoint chat is created\n"
    assert last_call(calls, "create_endpoint") == {"target_uri": "recordtarget", "name": "chat", "config": {"route": "gpt"}}


def test_update_endpoint(calls: list[Call]) -> None:
    result = invoke("update-endpoint", "-t", "recordtarget", "--endpoint", "chat", "-C", "rate=10")

    assert result.exit_code == 0, result.stderr
    assert result.stdout == "\nEndpoint chat is updated\n"
    assert last_call(calls, "update_endpoint") == {"target_uri": "recordtarget", "endpoint": "chat", "config": {"rate": "10"}}


def test_delete_endpoint(calls: list[Call]) -> None:
    result = invoke("delete-endpoint", "-t", "recordtarget", "--endpoint", "chat")

    assert result.exit_code == 0, result.stderr
    assert result.stdout == "\nEndpoint chat is deleted\n"
    assert last_call(calls, "delete_endpoint") == {"target_uri": "recordtarget", "endpoint": "chat"}


def test_list_endpoints(calls: list[Call]) -> None:
    result = invoke("list-endpoints", "-t", "recordtarget")

    assert result.exit_code == 0, result.stderr
    assert result.stdout == "List of all endpoints:\n[{'name': 'chat'}, {'name': 'embeddings'}]\n"
    assert last_call(calls, "list_endpoints") == {"target_uri": "recordtarget"}


def test_get_endpoint(calls: list[Call]) -> None:
    result = invoke("get-endpoint", "-t", "recordtarget", "--endpoint", "chat")

    assert result.exit_code == 0, result.stderr
    assert result.stdout == "name: chat\nendpoint_type: llm/v1/chat\n\n\n"
    assert last_call(calls, "get_endpoint") == {"target_uri": "recordtarget", "endpoint": "chat"}


def test_endpoint_commands_on_a_target_without_endpoints_fail_cleanly() -> None:
    result = invoke("list-endpoints", "-t", "optionstarget")

    line = assert_one_error_line(result, 1)
    assert "list_endpoints is unimplemented in base client" in line


# --------------------------------------------------------------------------------------------------
# targets, --help, --version
# --------------------------------------------------------------------------------------------------


def test_targets_lists_installed_targets_one_per_line() -> None:
    result = invoke("targets")

    assert result.exit_code == 0, result.stderr
    assert result.stdout.splitlines() == deployflow.list_targets()
    assert {"recordtarget", "legacytarget", "mlflowstyle"} <= set(result.stdout.splitlines())


def test_targets_includes_targets_registered_in_process() -> None:
    deployflow.register_target("inprocess", "deployflow_test_plugins.recording")

    assert "inprocess" in invoke("targets").stdout.splitlines()


def test_help_lists_all_fourteen_mlflow_commands_and_installed_targets() -> None:
    result = invoke("--help")

    assert result.exit_code == 0, result.stderr
    for command in (
        "create", "update", "delete", "list", "get", "help", "run-local", "predict", "explain",
        "create-endpoint", "update-endpoint", "delete-endpoint", "list-endpoints", "get-endpoint", "targets",
    ):
        assert f"  {command} " in result.stdout, command
    assert "Installed targets" in result.stdout and "recordtarget" in result.stdout


def test_no_arguments_shows_the_help() -> None:
    result = invoke()

    assert result.exit_code == 0
    assert result.stdout.startswith("Usage: deployflow")


def test_version() -> None:
    result = invoke("--version")

    assert result.exit_code == 0
    assert result.stdout.strip() == f"deployflow, version {deployflow.__version__}"


# --------------------------------------------------------------------------------------------------
# -C parsing
# --------------------------------------------------------------------------------------------------


def test_config_splits_at_the_first_equals_sign_and_keeps_empty_values(calls: list[Call]) -> None:
    result = invoke(
        "create", "-t", "recordtarget", "--name", "n", "-m", "m",
        "-C", "a=b=c", "-C", "url=http://h/?x=1&y=2", "-C", "empty=", "--config", "long=form",
    )

    assert result.exit_code == 0, result.stderr
    assert last_call(calls, "create_deployment")["config"] == {
        "a": "b=c", "url": "http://h/?x=1&y=2", "empty": "", "long": "form"
    }


@pytest.mark.parametrize(
    ("items", "expected"),
    [
        (["novalue"], "'novalue' is not of the form NAME=VALUE"),
        (["=value"], "'=value' is not of the form NAME=VALUE"),
        (["a=1", "a=2"], "config name 'a' is given more than once"),
    ],
    ids=["missing-equals", "empty-name", "repeated-name"],
)
@pytest.mark.parametrize(
    "command",
    [
        ["create", "--name", "n", "-m", "m"],
        ["update", "--name", "n"],
        ["delete", "--name", "n"],
        ["run-local", "--name", "n", "-m", "m"],
        ["create-endpoint", "--endpoint", "e"],
        ["update-endpoint", "--endpoint", "e"],
    ],
    ids=lambda command: command[0] if isinstance(command, list) else None,
)
def test_bad_config_is_a_one_line_usage_error(
    command: list[str], items: list[str], expected: str, calls: list[Call]
) -> None:
    config_args = [part for item in items for part in ("-C", item)]

    result = invoke(*command, "-t", "recordtarget", *config_args)

    line = assert_one_error_line(result, 2)
    assert expected in line
    assert "'--config' / '-C'" in line
    assert calls == []


# --------------------------------------------------------------------------------------------------
# Old plugins: arguments they do not declare are not passed
# --------------------------------------------------------------------------------------------------


def test_an_old_plugin_works_for_every_command_it_implements(calls: list[Call], tmp_path: Path) -> None:
    rows = write(tmp_path, "rows.json", json.dumps([{"a": 1}]))

    outputs = {
        "create": invoke("create", "-t", "legacytarget", "--name", "n", "-m", "m", "-f", "f"),
        "update": invoke("update", "-t", "legacytarget", "--name", "n", "-m", "m"),
        "delete": invoke("delete", "-t", "legacytarget", "--name", "n"),
        "list": invoke("list", "-t", "legacytarget"),
        "get": invoke("get", "-t", "legacytarget", "--name", "n"),
        "predict": invoke("predict", "-t", "legacytarget", "--name", "n", "-I", rows),
        "explain": invoke("explain", "-t", "legacytarget", "--name", "n", "-I", rows),
        "create-endpoint": invoke("create-endpoint", "-t", "legacytarget", "--endpoint", "e"),
        "update-endpoint": invoke("update-endpoint", "-t", "legacytarget", "--endpoint", "e"),
    }

    for command, result in outputs.items():
        assert result.exit_code == 0, (command, result.stderr)
    assert "f deployment n is created" in outputs["create"].stdout
    assert "Deployment n is updated (with flavor None)" in outputs["update"].stdout
    assert outputs["delete"].stdout == "Deployment n is deleted\n"
    assert outputs["list"].stdout == "List of all deployments:\n['old-deployment']\n"
    assert "key1: val1\nkey2: val2\n" in outputs["get"].stdout
    assert json.loads(outputs["predict"].stdout) == [1]
    assert json.loads(outputs["explain"].stdout) == "explained"
    assert "Endpoint e is created" in outputs["create-endpoint"].stdout
    assert "Endpoint e is updated" in outputs["update-endpoint"].stdout
    assert last_call(calls, "delete_deployment") == {"name": "n"}
    assert last_call(calls, "create_endpoint") == {"name": "e"}
    assert last_call(calls, "update_endpoint") == {"endpoint": "e"}
    assert set(last_call(calls, "predict")) == {"deployment_name", "df"}


@pytest.mark.parametrize(
    ("args", "flag"),
    [
        (["delete", "--name", "n", "--endpoint", "e"], "--endpoint"),
        (["delete", "--name", "n", "-C", "force=1"], "-C/--config"),
        (["list", "--endpoint", "e"], "--endpoint"),
        (["create-endpoint", "--endpoint", "e", "-C", "k=v"], "-C/--config"),
    ],
    ids=["delete-endpoint-flag", "delete-config", "list-endpoint-flag", "create-endpoint-config"],
)
def test_an_old_plugin_refuses_an_option_it_cannot_take_instead_of_ignoring_it(
    args: list[str], flag: str, calls: list[Call]
) -> None:
    result = invoke(*args, "-t", "legacytarget")

    line = assert_one_error_line(result, 1)
    assert "LegacyClient." in line and "the plugin predates it" in line and flag in line
    assert calls == []


def test_predict_at_an_endpoint_of_an_old_plugin_is_refused(calls: list[Call], tmp_path: Path) -> None:
    rows = write(tmp_path, "rows.json", "{}")

    result = invoke("predict", "-t", "legacytarget", "--endpoint", "e", "-I", rows)

    line = assert_one_error_line(result, 1)
    assert "LegacyClient.predict takes no 'endpoint' argument" in line
    assert calls == []


# --------------------------------------------------------------------------------------------------
# Failures
# --------------------------------------------------------------------------------------------------


def test_a_deployment_error_is_one_line_with_exit_1() -> None:
    result = invoke("get", "-t", "recordtarget:/fail-deployment", "--name", "n")

    line = assert_one_error_line(result, 1)
    assert line.startswith("Error: Deployment is gone")
    assert "NotFoundError" not in line
    assert LEAKY_SECRET not in result.stderr


def test_another_exception_shows_its_type_and_is_redacted() -> None:
    result = invoke("list", "-t", "recordtarget:/fail-runtime")

    line = assert_one_error_line(result, 1)
    assert line.startswith("Error: RuntimeError: plugin exploded")
    assert LEAKY_SECRET not in result.stderr


def test_an_unknown_target_is_one_line_with_exit_1() -> None:
    result = invoke("list", "-t", "nosuchtarget")

    line = assert_one_error_line(result, 1)
    assert "No deployment target named 'nosuchtarget'" in line and "recordtarget" in line


def test_a_broken_plugin_is_one_line_with_exit_1() -> None:
    result = invoke("list", "-t", "twoclients")

    line = assert_one_error_line(result, 1)
    assert "2 client classes" in line


def test_a_multi_line_message_is_printed_on_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    def fail(*args: Any) -> None:
        raise deployflow.DeploymentError("first line\n  second line\n")

    monkeypatch.setattr(cli, "_run_local", fail)
    result = invoke("run-local", "-t", "recordtarget", "--name", "n", "-m", "m")

    assert assert_one_error_line(result, 1) == "Error: first line second line"


def test_ctrl_c_stops_with_exit_130_and_no_traceback(monkeypatch: pytest.MonkeyPatch) -> None:
    def interrupted(*args: Any) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, "_run_local", interrupted)
    result = invoke("run-local", "-t", "recordtarget", "--name", "n", "-m", "m")

    assert result.exit_code == 130
    assert result.stderr.strip() == "Aborted."


def test_debug_flag_prints_the_traceback_then_the_error_line() -> None:
    result = invoke("--debug", "list", "-t", "recordtarget:/fail-runtime")

    assert result.exit_code == 1
    assert result.stderr.startswith("Traceback (most recent call last):")
    assert "deployflow_test_plugins/recording.py" in result.stderr
    assert result.stderr.splitlines()[-1].startswith("Error: RuntimeError: plugin exploded")
    assert LEAKY_SECRET not in result.stderr


def test_debug_environment_variable_prints_the_traceback() -> None:
    result = invoke("get", "-t", "recordtarget:/fail-deployment", "--name", "n", env={cli.DEBUG_ENV: "1"})

    assert result.exit_code == 1
    assert "Traceback (most recent call last):" in result.stderr
    assert "deployflow.errors.NotFoundError" in result.stderr
    assert LEAKY_SECRET not in result.stderr


def test_debug_environment_variable_set_to_false_prints_no_traceback() -> None:
    result = invoke("get", "-t", "recordtarget:/fail-deployment", "--name", "n", env={cli.DEBUG_ENV: "0"})

    assert_one_error_line(result, 1)


COMMANDS_WITHOUT_ARGUMENTS = [
    "create", "update", "delete", "list", "get", "help", "run-local", "predict", "explain",
    "create-endpoint", "update-endpoint", "delete-endpoint", "list-endpoints", "get-endpoint",
]


@pytest.mark.parametrize("command", COMMANDS_WITHOUT_ARGUMENTS)
def test_every_command_requires_a_target(command: str) -> None:
    result = invoke(command)

    line = assert_one_error_line(result, 2)
    assert line.startswith("Error: Missing option")
    assert f"deployflow {command} --help" in line


@pytest.mark.parametrize(
    ("args", "option"),
    [
        (["create", "-t", "recordtarget", "-m", "m"], "'--name'"),
        (["create", "-t", "recordtarget", "--name", "n"], "'--model-uri' / '-m'"),
        (["run-local", "-t", "recordtarget", "--name", "n"], "'--model-uri' / '-m'"),
        (["get", "-t", "recordtarget"], "'--name'"),
        (["predict", "-t", "recordtarget", "--name", "n"], "'--input-path' / '-I'"),
        (["get-endpoint", "-t", "recordtarget"], "'--endpoint'"),
        (["create-endpoint", "-t", "recordtarget"], "'--endpoint'"),
    ],
)
def test_a_missing_required_option_is_exactly_one_line_with_exit_2(
    args: list[str], option: str, calls: list[Call]
) -> None:
    result = invoke(*args)

    line = assert_one_error_line(result, 2)
    assert f"Missing option {option}." in line
    assert calls == []


def test_an_unknown_command_or_option_is_a_one_line_usage_error() -> None:
    assert "No such command 'deploy'" in assert_one_error_line(invoke("deploy"), 2)
    line = assert_one_error_line(invoke("get", "-t", "x", "--nmae", "n"), 2)
    assert "No such option" in line and "--nmae" in line


# --------------------------------------------------------------------------------------------------
# The installed console script
# --------------------------------------------------------------------------------------------------


def console_script() -> str:
    found = shutil.which("deployflow", path=str(Path(sys.executable).parent))
    assert found, f"the deployflow console script is not installed next to {sys.executable}"
    return found


def run_script(*args: str) -> subprocess.CompletedProcess[str]:
    env = {key: value for key, value in os.environ.items() if key != cli.DEBUG_ENV}
    return subprocess.run([console_script(), *args], capture_output=True, text=True, env=env, timeout=60)


def test_console_script_help() -> None:
    done = run_script("--help")

    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("Usage: deployflow")
    assert "create-endpoint" in done.stdout and "recordtarget" in done.stdout


def test_console_script_targets() -> None:
    done = run_script("targets")

    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == deployflow.list_targets()


def test_console_script_failures_keep_the_exit_codes() -> None:
    usage = run_script("create", "-t", "recordtarget")
    failure = run_script("list", "-t", "recordtarget:/fail-runtime")

    assert usage.returncode == 2 and usage.stdout == ""
    assert usage.stderr.splitlines() == [usage.stderr.strip()]
    assert usage.stderr.startswith("Error: Missing option '--name'.")
    assert failure.returncode == 1
    assert failure.stderr.startswith("Error: RuntimeError: plugin exploded")
    assert LEAKY_SECRET not in failure.stderr


def test_help_does_not_import_pandas() -> None:
    code = (
        "import sys\n"
        "from deployflow import cli\n"
        "try:\n"
        "    cli.main(['--help'])\n"
        "except SystemExit:\n"
        "    pass\n"
        "print('HEAVY:' + ','.join(m for m in ('pandas', 'numpy', 'pyarrow') if m in sys.modules))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)

    assert done.returncode == 0, done.stderr
    assert "Usage: deployflow" in done.stdout
    assert done.stdout.strip().splitlines()[-1] == "HEAVY:"
