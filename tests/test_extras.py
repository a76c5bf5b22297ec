"""A core install (``pip install deployflow``, no extras) works for remote targets and the CLI, and a
feature whose extra is missing says which ``pip install`` fixes it.

Nothing is uninstalled: each check of a missing library runs in a subprocess whose first act is to put
a ``sys.meta_path`` finder in front that makes importing those libraries fail as if they were not
installed (once with the extras' libraries hidden, once with everything hidden but the standard library
and the core dependencies).
"""

from __future__ import annotations

import json
import pickle
import re
import subprocess
import sys
import textwrap
import tomllib
from importlib import metadata
from pathlib import Path

import pytest

import deployflow
from deployflow import _extras
from deployflow.errors import DeploymentError, MissingExtraError

ROOT = Path(__file__).resolve().parents[1]

#: What the extras install and the core must do without (top-level import names).
OPTIONAL = (
    "numpy", "pandas", "pyarrow", "uvicorn", "uvloop", "httptools", "psutil", "filelock", "joblib",
    "aiohttp", "tqdm", "dask", "distributed", "fsspec", "boto3", "httpx", "watchfiles", "websockets",
    "sklearn", "mlflow", "prefect", "airflow",
)  # fmt: skip

BLOCKER = """
import sys

class _NotInstalled:
    \"\"\"Makes `import <name>` (and its submodules) fail as when <name> is not installed: each name in
    BLOCKED, and when ALLOWED is given, each name not in it.\"\"\"

    def find_spec(self, fullname, path=None, target=None):
        top = fullname.split(".", 1)[0]
        if top in BLOCKED or (ALLOWED is not None and top not in ALLOWED):
            raise ModuleNotFoundError(f"No module named {fullname!r}", name=fullname)
        return None

sys.meta_path.insert(0, _NotInstalled())
"""


def run_without(blocked, code: str, tmp_path: Path, *, allowed=None) -> dict:
    """Run ``code`` in a fresh interpreter in which the modules ``blocked`` (and with ``allowed``, all
    modules but those) cannot be imported; ``code`` prints one JSON document as its last line, which
    is returned."""
    prelude = f"BLOCKED = frozenset({sorted(blocked)!r})\n"
    prelude += f"ALLOWED = {None if allowed is None else 'frozenset(' + repr(sorted(allowed)) + ')'}\n"
    script = prelude + BLOCKER + textwrap.dedent(code)
    result = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        cwd=tmp_path,  # not the repository: nothing importable from the working directory
        timeout=120,
        env={
            "PATH": "/usr/bin:/bin",
            "HOME": str(tmp_path),
            "DEPLOYFLOW_HOME": str(tmp_path / "state"),
            "PYTHONDONTWRITEBYTECODE": "1",
        },
    )
    assert result.returncode == 0, f"stdout:\n{result.stdout}\nstderr:\n{result.stderr}"
    return json.loads(result.stdout.strip().splitlines()[-1])


# Run in the subprocess: returns what each step did, as JSON.
CORE_SCENARIO = """
import contextlib, io, json, sys
import deployflow
from deployflow.errors import MissingExtraError

out = {"blocked_really": []}
for name in BLOCKED:
    try:
        __import__(name)
        out["blocked_really"].append(f"{name} imported")
    except ImportError:
        pass

out["clients"] = {}
for uri, options in [
    ("databricks", {"host": "https://example.cloud.databricks.com", "token": "dapi-not-a-token"}),
    ("openai", {"api_key": "sk-not-a-key"}),
    ("serving+http://127.0.0.1:1", {}),
    ("http://127.0.0.1:1", {}),
]:
    out["clients"][uri] = type(deployflow.get_deploy_client(uri, **options)).__name__

def cli(*args):
    from deployflow.cli import main

    stdout, stderr = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
        try:
            main(list(args))
        except SystemExit as exc:
            return exc.code, stdout.getvalue(), stderr.getvalue()
    return 0, stdout.getvalue(), stderr.getvalue()

out["help"] = cli("--help")
out["targets"] = cli("targets")

def failure(call):
    try:
        call()
    except Exception as exc:
        return {
            "type": type(exc).__name__,
            "message": str(exc),
            "is_missing_extra": isinstance(exc, MissingExtraError),
            "is_import_error": isinstance(exc, ImportError),
            "extra": getattr(exc, "extra", None),
        }
    return None

out["local"] = failure(lambda: deployflow.get_deploy_client("local"))
out["batch"] = failure(
    lambda: deployflow.batch_predict("http://127.0.0.1:1", "scores-in.parquet", endpoint="e")
)
out["read_output"] = failure(lambda: deployflow.read_output("somewhere"))
out["cli_missing"] = cli("create", "-t", "local", "--name", "m", "--model-uri", "python:x:y")
out["modules"] = sorted({name.split(".", 1)[0] for name in sys.modules})
print(json.dumps(out))
"""


@pytest.fixture(scope="module", params=["extras-hidden", "only-core-installed"])
def core_only(request, tmp_path_factory) -> dict:
    """The scenario with the extras' libraries hidden; then with every module hidden but the standard
    library, deployflow and the core dependencies (and theirs): what `pip install deployflow` gives."""
    tmp_path = tmp_path_factory.mktemp(request.param)
    if request.param == "extras-hidden":
        return run_without(OPTIONAL, CORE_SCENARIO, tmp_path)
    return run_without(OPTIONAL, CORE_SCENARIO, tmp_path, allowed=_core_modules())


def test_the_blocker_really_hides_the_optional_libraries(core_only):
    assert core_only["blocked_really"] == []


def test_import_and_remote_targets_need_no_extra(core_only):
    assert core_only["clients"] == {
        "databricks": "DatabricksDeploymentClient",
        "openai": "OpenAIDeploymentClient",
        "serving+http://127.0.0.1:1": "ServingDeploymentClient",
        "http://127.0.0.1:1": "GatewayDeploymentClient",
    }


def test_cli_help_and_targets_need_no_extra(core_only):
    code, text, _ = core_only["help"]
    assert code == 0 and "Usage:" in text and "predict" in text
    code, text, _ = core_only["targets"]
    assert code == 0
    assert {"local", "databricks", "openai", "serving", "http", "https"} <= set(text.split())


def test_local_target_without_its_extra_names_the_pip_command(core_only):
    failure = core_only["local"]
    assert failure is not None, "get_deploy_client('local') worked without the local extra"
    assert failure["is_missing_extra"] and failure["is_import_error"] and failure["extra"] == "local"
    assert failure["message"] == (
        "the 'local' target needs the 'local' extra: pip install 'deployflow[local]' (missing module: uvicorn)"
    )


def test_batch_without_its_extra_names_the_pip_command(core_only):
    for key, function in (("batch", "batch_predict"), ("read_output", "read_output")):
        failure = core_only[key]
        assert failure is not None, f"{function} worked without the batch extra"
        assert failure["is_missing_extra"] and failure["extra"] == "batch"
        assert "pip install 'deployflow[batch]'" in failure["message"]
        assert f"deployflow.{function}" in failure["message"]
        assert "missing module: pandas" in failure["message"]


def test_the_cli_prints_the_missing_extra_as_an_error(core_only):
    code, _, stderr = core_only["cli_missing"]
    assert code == 1
    assert "pip install 'deployflow[local]'" in stderr and "Traceback" not in stderr


def test_fsspec_url_without_fsspec_names_pip_install_fsspec(tmp_path):
    code = """
    import json
    import deployflow

    try:
        deployflow.batch_predict("http://127.0.0.1:1", "s3://bucket/scores-in.parquet", endpoint="e")
    except Exception as exc:
        print(json.dumps({"type": type(exc).__name__, "message": str(exc)}))
    else:
        print(json.dumps(None))
    """
    failure = run_without(["fsspec"], code, tmp_path)
    assert failure["type"] == "MissingExtraError"
    assert failure["message"] == (
        "reading 's3://bucket/scores-in.parquet' (a URL) needs fsspec: pip install fsspec "
        "(missing module: fsspec)"
    )


def test_a_module_that_needs_a_missing_one_names_the_missing_one(tmp_path):
    # pandas is installed here but numpy is not: the message names numpy, the module to install.
    code = """
    import json
    from deployflow._extras import require

    try:
        require("pandas", "batch", "batch scoring")
    except ImportError as exc:
        print(json.dumps(str(exc)))
    """
    message = run_without(["numpy"], code, tmp_path)
    assert message.startswith("batch scoring needs the 'batch' extra: pip install 'deployflow[batch]' (")
    assert "numpy" in message


# --------------------------------------------------------------------------------------------------
# In this process (everything installed)
# --------------------------------------------------------------------------------------------------


def test_require_returns_the_module_and_raises_the_library_error():
    import json as stdlib_json

    assert _extras.require("json", "batch", "x") is stdlib_json
    with pytest.raises(MissingExtraError) as caught:
        _extras.require("deployflow_no_such_module", "dask", "batch scoring a Dask DataFrame")
    assert str(caught.value) == (
        "batch scoring a Dask DataFrame needs the 'dask' extra: pip install 'deployflow[dask]' "
        "(missing module: deployflow_no_such_module)"
    )
    assert caught.value.module == "deployflow_no_such_module" and not caught.value.retryable


def test_missing_extra_error_is_a_deployment_error_and_an_import_error():
    error = MissingExtraError("x needs the 'local' extra", extra="local", module="uvicorn")
    assert isinstance(error, DeploymentError) and isinstance(error, ImportError)
    assert deployflow.MissingExtraError is MissingExtraError
    copy = pickle.loads(pickle.dumps(error))
    assert type(copy) is MissingExtraError and (copy.extra, copy.module) == ("local", "uvicorn")


def test_the_local_target_loads_when_its_extra_is_installed():
    assert "local" in deployflow.list_targets()
    _extras.require_extra("local", "the 'local' target")  # the test environment has every extra


def _core_modules() -> set[str]:
    """Top-level modules a core install has: the standard library, deployflow, and the modules of the
    core dependencies and of what they require."""
    closure = _core_distribution_closure()
    owned = {
        module
        for module, dists in metadata.packages_distributions().items()
        if any(_normalize(d) in closure for d in dists)
    }
    return set(sys.stdlib_module_names) | {"deployflow"} | owned


def _pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def _name(requirement: str) -> str:
    match = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", requirement)
    assert match, requirement
    return _normalize(match.group(1))


def _normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _core_distribution_closure() -> set[str]:
    """The core dependencies and, recursively, what they require (extras left out)."""
    todo = [_name(r) for r in _pyproject()["dependencies"]]
    seen: set[str] = set()
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        try:
            requires = metadata.requires(name) or []
        except metadata.PackageNotFoundError:
            continue
        todo.extend(_name(r) for r in requires if not re.search(r"\bextra\s*==", r))
    return seen


def test_core_dependencies_are_the_small_pure_libraries():
    core = {_name(r) for r in _pyproject()["dependencies"]}
    heavy = {
        "numpy", "pandas", "pyarrow", "uvicorn", "aiohttp", "httpx", "psutil", "filelock", "tqdm",
        "joblib", "urllib3", "certifi",
    }  # fmt: skip
    assert core & heavy == set()
    assert core == {"requests", "tenacity", "click", "orjson"}


def test_extras_install_what_the_library_checks_for():
    extras = _pyproject()["optional-dependencies"]

    def names(extra: str) -> set[str]:
        found = set()
        for requirement in extras[extra]:
            found.add(_name(requirement))
            inner = re.match(r"deployflow\[(.*)\]", requirement.strip())
            if inner:
                for other in inner.group(1).split(","):
                    found |= names(other.strip())
        return found

    for extra, modules in _extras.EXTRA_MODULES.items():
        assert {_normalize(m.split(".")[0]) for m in modules} <= names(extra), extra
    assert not any("uvicorn[" in r for r in extras["local"])  # uvicorn[standard] drags watchfiles in
    assert {"uvloop", "httptools", "joblib"} <= names("local")
    assert {"tqdm"} <= names("batch")
    assert {"dask", "distributed", "pandas", "pyarrow"} <= names("dask")
    assert names("databricks") == {"databricks-sdk"}  # OAuth / Azure auth; a token needs nothing more
    assert "mlflow" not in names("all")
    for extra in ("local", "batch", "dask", "sagemaker", "databricks", "prefect", "airflow"):
        assert names(extra) <= names("all"), extra
    assert names("local") | names("batch") | {"pytest", "scikit-learn", "fsspec"} <= names("dev")
