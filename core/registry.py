"""Finding the client for a target URI.

The target's name is the URI's scheme (``databricks://prod`` -> ``databricks``; ``serving+https://h`` ->
``serving``), or the whole URI when it has none (``local``). A name is looked up, in this order:

1. targets registered in this process with :func:`register_target`;
2. the built-in table below (dotted module paths, each with the extra that installs what it needs:
   a built-in whose extra is missing raises :class:`~deployflow.errors.MissingExtraError` naming
   ``pip install 'deployflow[<extra>]'``);
3. entry points in the group ``deployflow.targets``;
4. entry points in the group ``mlflow.deployments`` (MLflow plugins).

A URI with a scheme must say something after it: ``local:``, ``local://`` and ``local:///`` are refused,
because they are what ``local:$STATE_DIR`` becomes when the variable is empty, and quietly meaning the
target's default (or the root directory) would hide that mistake. The bare name (``local``) asks for
the default, for a target that has one.

An entry point never replaces a built-in of the same name. Nothing is imported until a target is used,
and each target is imported once per process (thread-safe). A target module provides exactly one
client class, ``run_local(name, model_uri, flavor=None, config=None)`` and ``target_help()``, as MLflow
plugins do; its client class may subclass MLflow's ``BaseDeploymentClient`` instead of ours.
"""

from __future__ import annotations

import importlib
import threading
import types
from dataclasses import dataclass, field
from typing import Any, Callable, Union
from urllib.parse import urlparse

from . import _extras
from .base import BaseDeploymentClient
from .errors import MissingExtraError, NotSupportedError, PluginError, TargetError, UnknownTargetError
from .redaction import get_logger, redact

__all__ = ["TargetURI", "TargetPlugin", "parse_target_uri", "register_target", "list_targets", "load_target"]

logger = get_logger(__name__)

ENTRY_POINT_GROUP = "deployflow.targets"
MLFLOW_ENTRY_POINT_GROUP = "mlflow.deployments"

#: Built-in targets: name -> (module, the deployflow extra it needs, or None when the core suffices).
#: Before a built-in with an extra is imported, the modules :data:`deployflow._extras.EXTRA_MODULES`
#: lists for that extra are checked (looked up, not imported). The second item may also be a whole
#: install command (for a module outside deployflow's extras); it is then only quoted when the module
#: cannot be imported.
BUILTIN_TARGETS: dict[str, tuple[str, str | None]] = {
    "serving": ("deployflow.targets.serving", None),
    "v2": ("deployflow.targets.v2", None),
    "local": ("deployflow.targets.local", "local"),
    "databricks": ("deployflow.targets.databricks", None),
    "http": ("deployflow.targets.gateway", None),
    "https": ("deployflow.targets.gateway", None),
    "openai": ("deployflow.targets.openai", None),
    "sagemaker": ("deployflow.targets.sagemaker", "sagemaker"),
}


@dataclass(frozen=True)
class TargetURI:
    """A parsed target URI. Its repr masks credentials that may sit in the URI."""

    uri: str
    name: str = field(init=False)

    def __post_init__(self) -> None:
        if not isinstance(self.uri, str) or not self.uri.strip():
            raise TargetError(_not_a_uri(self.uri))
        try:
            parsed = urlparse(self.uri)
        except ValueError as exc:
            raise TargetError(_not_a_uri(self.uri)) from exc
        name = parsed.scheme or parsed.path
        # "serving+https" selects the "serving" target, which talks https.
        name = name.split("+", 1)[0]
        if not name or "/" in name or ":" in name:
            raise TargetError(_not_a_uri(self.uri))
        if parsed.scheme and not self.uri.strip()[len(parsed.scheme) + 1 :].strip("/"):
            raise TargetError(
                f"{redact(repr(self.uri))} has nothing after '{parsed.scheme}:' (an empty variable?); "
                f"`deployflow help -t {name}` lists the URI forms of target '{name}'"
            )
        object.__setattr__(self, "name", name)

    def __repr__(self) -> str:
        return f"TargetURI({redact(self.uri)!r})"

    def __str__(self) -> str:
        return redact(self.uri)


def _not_a_uri(uri: object) -> str:
    return (
        f"{redact(repr(uri))} is not a proper deployment target URI; use 'target' or 'target:/suffix' "
        "(for example 'local', 'databricks://profile', 'https://host:5000')"
    )


def parse_target_uri(target_uri: str) -> TargetURI:
    """Parse ``target_uri``; raises :class:`~deployflow.errors.TargetError` when it names no target."""
    return TargetURI(target_uri)


@dataclass(frozen=True)
class TargetPlugin:
    """A loaded target: its client class and its module-level helpers."""

    name: str
    source: str
    client_class: type
    run_local: Callable[..., Any]
    target_help: Callable[[], str]
    accepts_options: bool


_lock = threading.RLock()
_registered: dict[str, Any] = {}
_loaded: dict[str, TargetPlugin] = {}


def register_target(name: str, target: Union[str, types.ModuleType, type]) -> None:
    """Register a target for this process; it wins over built-ins and installed plugins.

    ``target`` is a module, a dotted module path (imported on first use), or a client class. A module
    must provide one client class, ``run_local`` and ``target_help``; a class may come alone.
    """
    if not isinstance(name, str) or not name or any(c in name for c in ":/+ "):
        raise TargetError(f"Cannot register a target named {name!r}: use a plain word such as 'mytarget'")
    if not isinstance(target, (str, types.ModuleType, type)):
        raise TargetError(
            f"Cannot register target {name!r}: expected a module, a dotted module path or a client "
            f"class, got {type(target).__name__}"
        )
    with _lock:
        _registered[name] = target
        _loaded.pop(name, None)


def unregister_target(name: str) -> None:
    """Forget a target registered with :func:`register_target` (a no-op for others)."""
    with _lock:
        _registered.pop(name, None)
        _loaded.pop(name, None)


def _entry_points(group: str) -> list[Any]:
    # importlib.metadata is imported here, not at the top: it costs more than the rest of the package.
    from importlib import metadata

    # deployflow's own entries in MLflow's group (deployflow.mlflow_plugin) expose built-ins to MLflow
    # under MLflow's naming ("serving+http", "deployflow-sagemaker"); they are not targets here.
    return [ep for ep in metadata.entry_points(group=group) if not ep.value.startswith(_OWN_MLFLOW_PLUGIN)]


_OWN_MLFLOW_PLUGIN = "deployflow.mlflow_plugin"


def list_targets() -> list[str]:
    """Names of every target that can be used here, sorted. Imports no target."""
    names = set(_registered) | set(BUILTIN_TARGETS)
    for group in (ENTRY_POINT_GROUP, MLFLOW_ENTRY_POINT_GROUP):
        names.update(ep.name for ep in _entry_points(group))
    return sorted(names)


def load_target(target_uri: str) -> TargetPlugin:
    """Find and import the target that ``target_uri`` names (cached)."""
    name = parse_target_uri(target_uri).name
    with _lock:
        plugin = _loaded.get(name)
        if plugin is None:
            plugin = _find(name, target_uri)
            _loaded[name] = plugin
        return plugin


def _find(name: str, target_uri: str) -> TargetPlugin:
    if name in _registered:
        found = _registered[name]
        if isinstance(found, str):
            found = _import(name, found, hint=None, source="registered in this process")
        return _plugin_from(name, found, "registered in this process")
    if name in BUILTIN_TARGETS:
        module_path, extra = BUILTIN_TARGETS[name]
        hint = extra
        if extra is not None and " " not in extra:  # an extra's name, not a whole install command
            _extras.require_extra(extra, f"the {name!r} target")
            hint = _extras.install_command(extra)
        return _plugin_from(name, _import(name, module_path, hint, "built in"), "built in")
    for group in (ENTRY_POINT_GROUP, MLFLOW_ENTRY_POINT_GROUP):
        matches = [ep for ep in _entry_points(group) if ep.name == name]
        if matches:
            if len(matches) > 1:
                logger.warning(
                    "Several plugins register target %r in %r; using %s", name, group, matches[0].value
                )
            source = f"plugin {matches[0].value!r} (entry point group {group!r})"
            try:
                loaded = matches[0].load()
            except MissingExtraError:
                raise  # the plugin said what to install (deployflow._extras.require)
            except Exception as exc:
                raise PluginError(
                    f"The plugin for target {name!r} ({matches[0].value}) failed to import: "
                    f"{type(exc).__name__}: {exc}"
                ) from exc
            return _plugin_from(name, loaded, source)
    installed = ", ".join(list_targets()) or "none"
    raise UnknownTargetError(
        f"No deployment target named {name!r} is installed (target URI {redact(target_uri)!r}). "
        f"Installed targets: {installed}. To add one, install a plugin that registers {name!r} in the "
        f"{ENTRY_POINT_GROUP!r} (or MLflow's {MLFLOW_ENTRY_POINT_GROUP!r}) entry point group, or call "
        f"deployflow.register_target({name!r}, 'package.module')."
    )


def _import(name: str, module_path: str, hint: str | None, source: str) -> types.ModuleType:
    try:
        return importlib.import_module(module_path)
    except MissingExtraError:
        raise  # already names the extra to install
    except ImportError as exc:
        extra = f" Install it with: {hint}" if hint else ""
        raise PluginError(
            f"Target {name!r} ({source}, module {module_path!r}) cannot be imported: {exc}.{extra}"
        ) from exc
    except Exception as exc:
        # A module that fails while running its own code is broken, not missing: no install hint.
        raise PluginError(
            f"Target {name!r} ({source}, module {module_path!r}) failed to import: "
            f"{type(exc).__name__}: {exc}"
        ) from exc


def _is_mlflow_base(cls: type) -> bool:
    return cls.__name__ == "BaseDeploymentClient" and cls.__module__.startswith("mlflow.")


def _is_client_class(obj: object) -> bool:
    if not isinstance(obj, type):
        return False
    if obj is BaseDeploymentClient or _is_mlflow_base(obj):
        return False
    return issubclass(obj, BaseDeploymentClient) or any(_is_mlflow_base(base) for base in obj.__mro__)


def _client_classes(module: types.ModuleType) -> list[type]:
    """The client classes ``module`` defines (itself or in its submodules), not those it only imports."""
    prefix = module.__name__
    defined = [
        obj
        for obj in vars(module).values()
        if _is_client_class(obj) and (obj.__module__ == prefix or obj.__module__.startswith(prefix + "."))
    ]
    if not defined:
        # A plugin module may import its one client from a sibling module of the same package; classes
        # from other packages (a base class, another plugin's client) still never count.
        top = prefix.split(".", 1)[0]
        defined = [
            obj
            for obj in vars(module).values()
            if _is_client_class(obj) and obj.__module__.split(".", 1)[0] == top
        ]
    unique = list(dict.fromkeys(defined))
    # An intermediate base that the module's real client derives from is not a second client.
    return [cls for cls in unique if not any(other is not cls and issubclass(other, cls) for other in unique)]


def _plugin_from(name: str, found: Any, source: str) -> TargetPlugin:
    import inspect  # loading a target is rare; `import deployflow` should not pay for inspect

    if isinstance(found, type):
        if not _is_client_class(found):
            raise PluginError(
                f"Target {name!r} ({source}) names {found.__qualname__}, which is not a subclass of "
                "BaseDeploymentClient"
            )
        client_class = found
        module = inspect.getmodule(found)
        run_local = getattr(module, "run_local", None) or _no_run_local(name)
        target_help = getattr(module, "target_help", None) or (lambda: inspect.getdoc(client_class) or "")
    elif isinstance(found, types.ModuleType):
        classes = _client_classes(found)
        run_local = getattr(found, "run_local", None)
        target_help = getattr(found, "target_help", None)
        problems = []
        if len(classes) != 1:
            listed = ", ".join(c.__qualname__ for c in classes)
            problems.append(
                "no subclass of BaseDeploymentClient"
                if not classes
                else f"{len(classes)} client classes ({listed}) where exactly one is expected"
            )
        if not callable(run_local):
            problems.append("no run_local(name, model_uri, flavor=None, config=None) function")
        if not callable(target_help):
            problems.append("no target_help() function")
        if problems:
            raise PluginError(
                f"The plugin for target {name!r} ({source}, module {found.__name__!r}) is not usable: "
                f"it defines {'; '.join(problems)}"
            )
        client_class = classes[0]
    else:
        raise PluginError(
            f"Target {name!r} ({source}) points to a {type(found).__name__}; expected a module or a "
            "client class"
        )
    if not issubclass(client_class, BaseDeploymentClient):
        client_class = _adapt_mlflow_client(client_class)
    return TargetPlugin(
        name=name,
        source=source,
        client_class=client_class,
        run_local=run_local,  # type: ignore[arg-type]
        target_help=target_help,  # type: ignore[arg-type]
        accepts_options=_accepts_options(client_class),
    )


def _adapt_mlflow_client(cls: type) -> type:
    """Give an MLflow plugin's client deployflow's additions (status, waiting) without changing it."""
    return type(cls.__name__, (cls, BaseDeploymentClient), {"__module__": cls.__module__, "__doc__": cls.__doc__})


def _accepts_options(cls: type) -> bool:
    import inspect

    try:
        params = list(inspect.signature(cls.__init__).parameters.values())[1:]
    except (TypeError, ValueError):
        return False
    return any(p.kind is p.VAR_KEYWORD for p in params) or len(params) > 1


def _no_run_local(name: str) -> Callable[..., Any]:
    def run_local(name_: str, model_uri: str, flavor: str | None = None, config: dict | None = None) -> None:
        raise NotSupportedError(f"Target {name!r} does not support run_local")

    return run_local
