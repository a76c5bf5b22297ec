"""How a target URI becomes a client: the registry and the ``mlflow.deployments`` functions.

Targets come from the installed test plugin package (``tests/plugins/deployflow-test-plugins``) through
real entry points, as a user's plugins would. Tests that depend on a clean interpreter (what is imported,
racing threads, a stand-in for MLflow) run in a subprocess.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import types
from importlib import metadata
from importlib.util import find_spec
from pathlib import Path
from typing import Any

import pytest

import deployflow
from deployflow import api, registry
from deployflow.errors import (
    DeploymentError,
    InvalidInputError,
    NotSupportedError,
    PluginError,
    TargetError,
    UnknownTargetError,
)

PLUGINS_DIR = Path(__file__).resolve().parent / "plugins"
FAKE_MLFLOW = PLUGINS_DIR / "fake_mlflow"
INSTALL_HINT = f"{sys.executable} -m pip install -e {PLUGINS_DIR / 'deployflow-test-plugins'}"

try:
    metadata.distribution("deployflow-test-plugins")
except metadata.PackageNotFoundError as _missing:  # fail loudly: skipping would hide the whole suite
    raise RuntimeError(f"The test plugins are not installed; run: {INSTALL_HINT}") from _missing


@pytest.fixture(autouse=True)
def clean_registry(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test starts with nothing registered or cached in this process and no default target."""
    monkeypatch.setattr(registry, "_registered", {})
    monkeypatch.setattr(registry, "_loaded", {})
    monkeypatch.setattr(api, "_target", None)
    monkeypatch.delenv(api.TARGET_ENV, raising=False)
    monkeypatch.delenv(api.MLFLOW_TARGET_ENV, raising=False)


@pytest.fixture
def calls() -> list[tuple[str, str, dict[str, Any]]]:
    import deployflow_test_plugins

    deployflow_test_plugins.CALLS.clear()
    return deployflow_test_plugins.CALLS


def run_python(code: str, *, extra_path: Path | None = None) -> dict[str, Any]:
    """Run ``code`` in a fresh interpreter of this environment and return the JSON it prints last."""
    env = None
    if extra_path is not None:
        inherited = os.environ.get("PYTHONPATH")
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(extra_path), inherited])))
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, env=env, timeout=120
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


# --------------------------------------------------------------------------------------------------
# Target URIs
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("uri", ["recordtarget", "recordtarget:/somesuffix", "recordtarget://somesuffix"])
def test_every_uri_form_selects_the_target_and_the_client_gets_the_full_uri(uri: str) -> None:
    from deployflow_test_plugins.recording import RecordingClient

    client = deployflow.get_deploy_client(uri)

    assert type(client) is RecordingClient
    assert client.target_uri == uri
    assert registry.parse_target_uri(uri).name == "recordtarget"


def test_a_plus_suffixed_scheme_names_the_target_before_the_plus() -> None:
    assert registry.parse_target_uri("serving+https://host:5000").name == "serving"


@pytest.mark.parametrize("uri", ["", "   ", "/just/a/path", 42, None])
def test_something_that_is_not_a_uri_is_refused(uri: Any) -> None:
    with pytest.raises(TargetError, match="not a proper deployment target URI"):
        registry.parse_target_uri(uri)


@pytest.mark.parametrize("uri", ["local:", "local://", "local:///", "recordtarget:", "recordtarget:/", "recordtarget://"])
def test_a_scheme_with_nothing_after_it_is_refused(uri: str) -> None:
    # "local:$STATE_DIR" with the variable unset must not quietly mean the default state directory.
    with pytest.raises(TargetError) as caught:
        deployflow.get_deploy_client(uri)
    name = uri.split(":", 1)[0]
    assert str(caught.value).startswith(f"{uri!r} has nothing after")
    assert f"'{name}'" in str(caught.value)
    assert registry.parse_target_uri(name).name == name


def test_a_uri_with_credentials_is_masked_in_its_repr() -> None:
    parsed = registry.parse_target_uri("recordtarget://user:s3cretpassword@host")
    assert "s3cretpassword" not in repr(parsed)
    assert "s3cretpassword" not in str(parsed)
    assert parsed.uri == "recordtarget://user:s3cretpassword@host"


# --------------------------------------------------------------------------------------------------
# Unknown and broken plugins
# --------------------------------------------------------------------------------------------------


def test_an_unknown_target_names_itself_the_installed_targets_and_how_to_install() -> None:
    with pytest.raises(UnknownTargetError) as caught:
        deployflow.get_deploy_client("wrong_target")

    error = caught.value
    message = str(error)
    assert isinstance(error, TargetError) and isinstance(error, DeploymentError)
    assert error.error_code == "RESOURCE_DOES_NOT_EXIST"
    assert "'wrong_target'" in message
    assert "Installed targets:" in message and "recordtarget" in message and "mlflowstyle" in message
    assert "deployflow.targets" in message and "register_target" in message


@pytest.mark.parametrize(
    ("target", "missing", "present"),
    [
        ("norunlocal", "run_local", "target_help"),
        ("notargethelp", "target_help", "run_local"),
    ],
)
def test_a_plugin_missing_a_module_function_says_which(target: str, missing: str, present: str) -> None:
    with pytest.raises(PluginError) as caught:
        deployflow.get_deploy_client(target)

    message = str(caught.value)
    assert f"no {missing}" in message
    assert present not in message
    assert repr(target) in message


def test_a_plugin_without_a_client_class_is_refused() -> None:
    with pytest.raises(PluginError, match="no subclass of BaseDeploymentClient"):
        deployflow.get_deploy_client("noclient")


def test_a_plugin_with_two_client_classes_is_refused_and_both_are_named() -> None:
    with pytest.raises(PluginError) as caught:
        deployflow.get_deploy_client("twoclients")

    message = str(caught.value)
    assert "2 client classes" in message
    assert "FirstClient" in message and "SecondClient" in message


def test_client_classes_a_module_only_imports_are_not_counted() -> None:
    from deployflow_test_plugins.imports_client import ImportingClient

    plugin = registry.load_target("importsclient")

    assert plugin.client_class is ImportingClient
    assert type(deployflow.get_deploy_client("importsclient")) is ImportingClient


def test_a_plugin_that_raises_on_import_is_a_plugin_error_chained_to_the_cause() -> None:
    with pytest.raises(PluginError) as caught:
        deployflow.get_deploy_client("brokenimport")

    assert isinstance(caught.value.__cause__, RuntimeError)
    assert "configuration file is missing" in str(caught.value)
    assert "'brokenimport'" in str(caught.value)


def test_a_registered_dotted_path_that_raises_on_import_is_a_plugin_error_too() -> None:
    deployflow.register_target("inproc", "deployflow_test_plugins.broken_import")

    with pytest.raises(PluginError) as caught:
        deployflow.get_deploy_client("inproc")

    assert isinstance(caught.value.__cause__, RuntimeError)
    assert "configuration file is missing" in str(caught.value)


def test_a_registered_dotted_path_that_does_not_exist_is_a_plugin_error() -> None:
    deployflow.register_target("inproc", "deployflow_test_plugins.no_such_module")

    with pytest.raises(PluginError) as caught:
        deployflow.get_deploy_client("inproc")

    assert isinstance(caught.value.__cause__, ImportError)
    assert "no_such_module" in str(caught.value)


def test_a_failed_load_is_not_cached() -> None:
    deployflow.register_target("inproc", "deployflow_test_plugins.no_such_module")
    with pytest.raises(PluginError):
        registry.load_target("inproc")

    deployflow.register_target("inproc", "deployflow_test_plugins.recording")

    assert registry.load_target("inproc").client_class.__name__ == "RecordingClient"


@pytest.mark.skipif(find_spec("mlflow") is not None, reason="a real mlflow is installed here")
def test_an_mlflow_plugin_without_mlflow_installed_is_a_plugin_error() -> None:
    with pytest.raises(PluginError) as caught:
        deployflow.get_deploy_client("mlflowstyle")

    assert isinstance(caught.value.__cause__, ImportError)
    assert "mlflow" in str(caught.value)


# --------------------------------------------------------------------------------------------------
# MLflow plugins
# --------------------------------------------------------------------------------------------------


def test_an_mlflow_plugin_is_accepted_and_gains_deployflow_waiting() -> None:
    result = run_python(
        """
        import json
        import deployflow
        import mlflow.deployments
        from deployflow_test_plugins.mlflow_style import MlflowStyleClient

        client = deployflow.get_deploy_client("mlflowstyle:/workspace")
        status = client.wait_for_deployment("m1", timeout=5)
        print(json.dumps({
            "fake_mlflow": mlflow.__file__,
            "is_deployflow_client": isinstance(client, deployflow.BaseDeploymentClient),
            "is_plugin_client": isinstance(client, MlflowStyleClient),
            "is_mlflow_client": isinstance(client, mlflow.deployments.BaseDeploymentClient),
            "target_uri": client.target_uri,
            "state": str(status.state),
            "listed": client.list_deployments(),
            "help": deployflow.target_help("mlflowstyle"),
        }))
        """,
        extra_path=FAKE_MLFLOW,
    )

    assert result["fake_mlflow"].startswith(str(FAKE_MLFLOW))
    assert result["is_deployflow_client"] and result["is_plugin_client"] and result["is_mlflow_client"]
    assert result["target_uri"] == "mlflowstyle:/workspace"
    assert result["state"] == "READY"
    assert result["listed"] == [{"name": "m1"}]
    assert result["help"] == "mlflowstyle: an MLflow plugin"


# --------------------------------------------------------------------------------------------------
# register_target and resolution order
# --------------------------------------------------------------------------------------------------


def test_register_a_module() -> None:
    import deployflow_test_plugins.legacy as legacy

    deployflow.register_target("inproc", legacy)
    client = deployflow.get_deploy_client("inproc:/x")

    assert type(client) is legacy.LegacyClient
    assert client.target_uri == "inproc:/x"
    assert "inproc" in deployflow.list_targets()


def test_register_a_dotted_path_imports_it_only_when_used() -> None:
    result = run_python(
        """
        import json, sys
        import deployflow
        import deployflow_test_plugins as plugins

        name = "deployflow_test_plugins.lazy_registered"
        deployflow.register_target("lazy", name)
        after_register = name in sys.modules
        client = deployflow.get_deploy_client("lazy")
        deployflow.get_deploy_client("lazy")
        print(json.dumps({
            "after_register": after_register,
            "after_use": name in sys.modules,
            "class": type(client).__name__,
            "imports": plugins.IMPORT_COUNTS.get(name, 0),
        }))
        """
    )

    assert result == {"after_register": False, "after_use": True, "class": "LazyRegisteredClient", "imports": 1}


def test_register_a_class_takes_run_local_and_help_from_its_module(calls: list) -> None:
    from deployflow_test_plugins import recording

    deployflow.register_target("inproc", recording.RecordingClient)
    client = deployflow.get_deploy_client("inproc://host")
    deployflow.run_local("inproc", "n", "m", "f", {"k": "v"})

    assert type(client) is recording.RecordingClient
    assert client.target_uri == "inproc://host"
    assert calls[-1] == ("recordtarget", "run_local", {"name": "n", "model_uri": "m", "flavor": "f", "config": {"k": "v"}})
    assert "records calls" in deployflow.target_help("inproc")


def test_a_registered_class_whose_module_has_no_run_local_cannot_run_locally() -> None:
    from deployflow_test_plugins._complete import CompleteClient

    class InlineClient(CompleteClient):
        """Help for the inline client."""

    deployflow.register_target("inline", InlineClient)

    assert type(deployflow.get_deploy_client("inline")) is InlineClient
    assert deployflow.target_help("inline") == "Help for the inline client."
    with pytest.raises(NotSupportedError, match="does not support run_local"):
        deployflow.run_local("inline", "n", "m")


@pytest.mark.parametrize("name", ["", "a:b", "a/b", "a+b", "two words", 5])
def test_register_refuses_names_that_are_not_plain_words(name: Any) -> None:
    with pytest.raises(TargetError, match="Cannot register a target named"):
        deployflow.register_target(name, "deployflow_test_plugins.recording")


def test_register_refuses_something_that_is_not_a_module_path_or_class() -> None:
    with pytest.raises(TargetError, match="expected a module, a dotted module path or a client class"):
        deployflow.register_target("inproc", 42)  # type: ignore[arg-type]


def test_register_a_class_that_is_not_a_client_is_refused_on_use() -> None:
    deployflow.register_target("inproc", dict)

    with pytest.raises(PluginError, match="not a subclass of BaseDeploymentClient"):
        deployflow.get_deploy_client("inproc")


def test_registration_in_process_wins_over_entry_points_and_can_be_undone() -> None:
    from deployflow_test_plugins.legacy import LegacyClient
    from deployflow_test_plugins.recording import RecordingClient

    assert type(deployflow.get_deploy_client("recordtarget")) is RecordingClient

    deployflow.register_target("recordtarget", "deployflow_test_plugins.legacy")
    assert type(deployflow.get_deploy_client("recordtarget")) is LegacyClient
    assert registry.load_target("recordtarget").source == "registered in this process"

    registry.unregister_target("recordtarget")
    assert type(deployflow.get_deploy_client("recordtarget")) is RecordingClient


def test_an_entry_point_never_replaces_a_builtin(monkeypatch: pytest.MonkeyPatch) -> None:
    from deployflow_test_plugins.builtin_stand_in import BuiltinStandInClient
    from deployflow_test_plugins.shadow import ShadowPluginClient

    # Without a built-in of that name the plugin is used: the entry point really is installed.
    assert registry.load_target("shadowtarget").client_class is ShadowPluginClient

    monkeypatch.setattr(registry, "_loaded", {})
    monkeypatch.setitem(
        registry.BUILTIN_TARGETS, "shadowtarget", ("deployflow_test_plugins.builtin_stand_in", "pip install x")
    )
    plugin = registry.load_target("shadowtarget")

    assert plugin.client_class is BuiltinStandInClient
    assert plugin.source == "built in"
    assert deployflow.list_targets().count("shadowtarget") == 1


def test_a_builtin_that_cannot_be_imported_gives_its_install_hint(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(
        registry.BUILTIN_TARGETS, "fakebuiltin", ("deployflow_test_plugins.not_there", "pip install 'deployflow[fake]'")
    )

    with pytest.raises(PluginError) as caught:
        deployflow.get_deploy_client("fakebuiltin")

    assert "pip install 'deployflow[fake]'" in str(caught.value)
    assert "fakebuiltin" in deployflow.list_targets()


def test_the_deployflow_group_wins_over_the_mlflow_group() -> None:
    from deployflow_test_plugins.recording import RecordingClient

    plugin = registry.load_target("dualtarget")

    assert plugin.client_class is RecordingClient  # the mlflow.deployments entry names the legacy plugin
    assert "deployflow.targets" in plugin.source


# --------------------------------------------------------------------------------------------------
# Listing, laziness, caching, threads
# --------------------------------------------------------------------------------------------------


def test_list_targets_names_every_group_and_imports_no_plugin() -> None:
    result = run_python(
        """
        import json, sys
        import deployflow

        names = deployflow.list_targets()
        print(json.dumps({
            "names": names,
            "imported": sorted(m for m in sys.modules
                               if m.startswith("deployflow_test_plugins") or m.startswith("deployflow.targets.")),
        }))
        """
    )

    assert {"recordtarget", "legacytarget", "brokenimport", "mlflowstyle", "dualtarget"} <= set(result["names"])
    assert result["names"] == sorted(set(result["names"]))
    assert result["imported"] == []


def test_a_target_is_imported_on_first_use_and_loaded_once() -> None:
    result = run_python(
        """
        import json, sys
        import deployflow
        from deployflow import registry
        import deployflow_test_plugins as plugins

        name = "deployflow_test_plugins.recording"
        before = name in sys.modules
        first = registry.load_target("recordtarget")
        second = registry.load_target("recordtarget://another/uri")
        client = deployflow.get_deploy_client("recordtarget:/x")
        print(json.dumps({
            "before": before,
            "after": name in sys.modules,
            "same_plugin": first is second,
            "same_class": type(client) is first.client_class,
            "imports": plugins.IMPORT_COUNTS.get(name, 0),
        }))
        """
    )

    assert result == {"before": False, "after": True, "same_plugin": True, "same_class": True, "imports": 1}


def test_threads_loading_one_target_at_once_all_get_the_same_plugin() -> None:
    result = run_python(
        """
        import json, threading
        from deployflow import registry
        import deployflow_test_plugins as plugins

        count = 16
        barrier = threading.Barrier(count)
        found = [None] * count

        def load(i):
            barrier.wait()
            found[i] = registry.load_target("slowtarget")

        threads = [threading.Thread(target=load, args=(i,)) for i in range(count)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        print(json.dumps({
            "all_loaded": all(p is not None for p in found),
            "one_plugin": len({id(p) for p in found}) == 1,
            "one_class": len({id(p.client_class) for p in found}) == 1,
            "imports": plugins.IMPORT_COUNTS.get("deployflow_test_plugins.slow_import", 0),
        }))
        """
    )

    assert result == {"all_loaded": True, "one_plugin": True, "one_class": True, "imports": 1}


# --------------------------------------------------------------------------------------------------
# get_deploy_client options
# --------------------------------------------------------------------------------------------------


def test_options_reach_a_client_that_takes_keyword_options() -> None:
    client = deployflow.get_deploy_client("recordtarget", timeout=3, retries=2)

    assert client.options == {"timeout": 3, "retries": 2}


def test_options_reach_a_client_with_named_options() -> None:
    client = deployflow.get_deploy_client("optionstarget", timeout=2.5, token="abcdefgh")

    assert (client.timeout, client.token) == (2.5, "abcdefgh")


def test_an_unknown_option_is_refused_with_the_known_ones() -> None:
    with pytest.raises(InvalidInputError) as caught:
        deployflow.get_deploy_client("optionstarget", bogus=1)

    assert "bogus" in str(caught.value)
    assert "timeout" in str(caught.value) and "token" in str(caught.value)


def test_options_to_a_client_that_takes_none_are_refused() -> None:
    with pytest.raises(InvalidInputError, match="takes no options; got timeout"):
        deployflow.get_deploy_client("legacytarget", timeout=1)


def test_a_client_that_takes_no_options_works_without_them() -> None:
    from deployflow_test_plugins.legacy import LegacyClient

    assert type(deployflow.get_deploy_client("legacytarget")) is LegacyClient


# --------------------------------------------------------------------------------------------------
# The default target
# --------------------------------------------------------------------------------------------------


def test_without_any_target_get_deploy_client_says_how_to_set_one() -> None:
    with pytest.raises(TargetError) as caught:
        deployflow.get_deploy_client()

    message = str(caught.value)
    assert "No deployment target is set" in message
    assert "set_deployments_target" in message and "DEPLOYFLOW_TARGET" in message


def test_get_deploy_client_uses_the_default_target(monkeypatch: pytest.MonkeyPatch) -> None:
    from deployflow_test_plugins.recording import RecordingClient

    monkeypatch.setenv("MLFLOW_DEPLOYMENTS_TARGET", "recordtarget:/from-env")
    client = deployflow.get_deploy_client()

    assert type(client) is RecordingClient
    assert client.target_uri == "recordtarget:/from-env"


def test_default_target_precedence(monkeypatch: pytest.MonkeyPatch) -> None:
    assert deployflow.get_deployments_target() is None

    monkeypatch.setenv("MLFLOW_DEPLOYMENTS_TARGET", "databricks://mlflow-env")
    assert deployflow.get_deployments_target() == "databricks://mlflow-env"

    monkeypatch.setenv("DEPLOYFLOW_TARGET", "databricks://deployflow-env")
    assert deployflow.get_deployments_target() == "databricks://deployflow-env"

    deployflow.set_deployments_target("recordtarget:/set")
    assert deployflow.get_deployments_target() == "recordtarget:/set"

    deployflow.set_deployments_target(None)
    assert deployflow.get_deployments_target() == "databricks://deployflow-env"


@pytest.mark.parametrize("bad", ["", "   ", "/no/scheme/here", 42])
def test_set_deployments_target_refuses_what_names_no_target(bad: Any) -> None:
    deployflow.set_deployments_target("databricks")

    with pytest.raises(TargetError):
        deployflow.set_deployments_target(bad)

    assert deployflow.get_deployments_target() == "databricks"


@pytest.mark.parametrize("good", ["databricks", "https://gateway:5000", "sagemaker:/us-east-1"])
def test_set_deployments_target_accepts_target_uris(good: str) -> None:
    deployflow.set_deployments_target(good)

    assert deployflow.get_deployments_target() == good


# --------------------------------------------------------------------------------------------------
# run_local and target_help through the public API
# --------------------------------------------------------------------------------------------------


def test_run_local_calls_the_plugin_module(calls: list) -> None:
    deployflow.run_local("recordtarget:/x", "iris", "models:/iris/1", config={"port": "5001"})

    assert calls[-1] == (
        "recordtarget",
        "run_local",
        {"name": "iris", "model_uri": "models:/iris/1", "flavor": None, "config": {"port": "5001"}},
    )


def test_target_help_is_the_plugin_text_with_credentials_masked() -> None:
    from deployflow_test_plugins.recording import LEAKY_SECRET

    text = deployflow.target_help("recordtarget")

    assert text.startswith("recordtarget: a test target that records calls.")
    assert LEAKY_SECRET not in text


def test_register_a_module_built_at_run_time() -> None:
    # The client class defined in the module counts; CompleteClient, only imported into it, does not.
    module = types.ModuleType("runtime_target")
    exec(  # noqa: S102 - test data: a module defined from source at run time
        textwrap.dedent(
            """
            from deployflow_test_plugins._complete import CompleteClient

            class RuntimeClient(CompleteClient):
                pass

            def run_local(name, model_uri, flavor=None, config=None):
                return None

            def target_help():
                return "runtime"
            """
        ),
        module.__dict__,
    )
    deployflow.register_target("runtime", module)

    assert type(deployflow.get_deploy_client("runtime")).__name__ == "RuntimeClient"
    assert deployflow.target_help("runtime") == "runtime"


def test_deployflows_own_entries_in_mlflows_group_are_not_listed_as_targets() -> None:
    """deployflow.mlflow_plugin exposes built-ins to MLflow under MLflow's names ("serving+http"):
    deployflow itself lists each built-in once and never a name it cannot resolve."""
    own = [ep for ep in metadata.entry_points(group="mlflow.deployments") if ep.value.startswith("deployflow.mlflow_plugin")]
    assert {ep.name for ep in own} >= {"local", "serving", "serving+http"}  # installed with the project
    listed = deployflow.list_targets()
    assert "serving+http" not in listed and "deployflow-sagemaker" not in listed
    assert listed.count("local") == 1 and "serving" in listed
    with pytest.raises(UnknownTargetError):  # not loaded as an MLflow plugin of deployflow itself
        deployflow.get_deploy_client("deployflow-sagemaker")
