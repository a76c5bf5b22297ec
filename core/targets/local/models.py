"""Loading the model a local deployment serves.

:func:`load_model` turns a deployment's ``model_uri`` (and optional ``flavor``) into a
:class:`LoadedModel`, the one shape the scoring server calls. Four kinds of source are understood:

================  ==================================================================================
flavor            ``model_uri``
================  ==================================================================================
``"mlflow"``      an MLflow model directory (it holds an ``MLmodel`` file), or a ``models:/``,
                  ``runs:/`` or other MLflow URI. A local directory of the sklearn, xgboost or
                  lightgbm flavor is read without MLflow, its signature enforced as MLflow's pyfunc
                  does (:mod:`.mlflow_model`); other flavors, custom pyfunc models and tracking
                  URIs need MLflow: ``pip install 'deployflow[mlflow]'``.
                  Aliases: ``"python_function"``, ``"pyfunc"``.
``"pickle"``      a pickle file of an object with a ``predict`` method.
``"joblib"``      the same, written with ``joblib.dump`` (needs joblib).
``"python"``      ``python:package.module:attr`` or ``python:/path/to/file.py:attr``.
================  ==================================================================================

With ``flavor=None`` the kind is detected: a ``python:`` prefix means Python; an MLflow URI scheme or a
directory holding ``MLmodel`` means MLflow; a file ending in ``.joblib`` (or a joblib compression suffix
such as ``.z`` or ``.gz``) means joblib; any other file means pickle.

.. warning::
   Loading a pickle or joblib file runs code chosen by whoever wrote the file, with the server's
   rights. Serve only files you trust. The same holds for ``python:`` references, which import and run
   the named module.

Rules for ``python:`` references:

* ``attr`` may be dotted (``python:pkg.mod:Registry.iris``); the module part is imported with
  :func:`importlib.import_module`; a ``.py`` file is executed as a fresh module (its directory goes to
  the front of ``sys.path`` so its sibling modules import, as ``python file.py`` would allow).
* An object with a callable ``predict`` is served through that method.
* A class is instantiated once with no arguments and must then have ``predict``. A class with a
  ``predict`` instance method is useless uninstantiated, and calling a class per request (building a
  new object each time) is never what a model author means.
* Any other callable (a function, a ``functools.partial``, an object with ``__call__``) is called as
  the model.

The call convention follows MLflow's scoring server: ``predict(data)``, or
``predict(data, params=params)`` when the request carries ``params`` and the callable has a parameter
named ``params`` (checked once, at load time). Params sent to a model that does not take them are
ignored with a warning, as MLflow does. ``data`` is what the request decoded to: a pandas DataFrame for
``dataframe_split`` / ``dataframe_records`` / CSV, numpy arrays (or a dict of them) for ``instances`` /
``inputs``.

Every problem found while loading raises :class:`~deployflow.errors.InvalidInputError` with a message
that names the source and the cause.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import inspect
import os
import pickle
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

from ..._extras import install_command, require
from ...errors import InvalidInputError
from ...redaction import get_logger
from . import mlflow_model
from .array_shortcut import array_shortcut

__all__ = [
    "FLAVORS",
    "FLAVOR_ALIASES",
    "MLFLOW_INSTALL_HINT",
    "LoadedModel",
    "detect_flavor",
    "load_model",
    "normalize_flavor",
]

_logger = get_logger(__name__)

#: The flavors :func:`load_model` knows, by their canonical names.
FLAVORS = ("mlflow", "pickle", "joblib", "python")

#: Other names accepted for a flavor (MLflow's names for its generic Python flavor).
FLAVOR_ALIASES = {"python_function": "mlflow", "pyfunc": "mlflow"}

MLFLOW_INSTALL_HINT = install_command("mlflow")

PYTHON_PREFIX = "python:"

# URI schemes only MLflow can resolve; a plain path or file:// URI is handled here.
_MLFLOW_SCHEMES = frozenset(
    {"models", "runs", "mlflow-artifacts", "dbfs", "s3", "gs", "wasbs", "hdfs"}
)
_JOBLIB_SUFFIXES = frozenset({".joblib", ".jbl", ".z", ".gz", ".bz2", ".xz", ".lzma"})


@dataclass(frozen=True)
class LoadedModel:
    """A model ready to be called by the scoring server.

    ``predict_function`` is the callable itself (a bound ``predict`` method or a plain callable);
    ``accepts_params`` says whether it takes a ``params`` keyword; ``flavor`` is the resolved flavor
    (one of :data:`FLAVORS`); ``source`` describes where the model came from, for logs and messages.
    """

    predict_function: Callable[..., Any]
    flavor: str
    source: str
    accepts_params: bool = False
    raw: Any = field(default=None, repr=False, compare=False)

    def predict(self, data: Any, params: dict[str, Any] | None = None) -> Any:
        """Call the model with MLflow's convention (``params`` only when given and accepted)."""
        if params is not None:
            if self.accepts_params:
                return self.predict_function(data, params=params)
            _warn_ignored_params()
        return self.predict_function(data)


def normalize_flavor(flavor: str | None) -> str | None:
    """Return the canonical name of ``flavor`` (``None`` stays ``None``) or raise for an unknown one."""
    if flavor is None:
        return None
    if not isinstance(flavor, str):
        raise InvalidInputError(f"flavor must be a string or None, not {type(flavor).__name__}")
    name = flavor.strip().lower()
    name = FLAVOR_ALIASES.get(name, name)
    if name not in FLAVORS:
        known = ", ".join(repr(f) for f in (*FLAVORS, *FLAVOR_ALIASES))
        raise InvalidInputError(f"unknown model flavor {flavor!r}; known flavors: {known} (or None to detect)")
    return name


def detect_flavor(model_uri: str) -> str:
    """Pick the flavor for ``model_uri`` by its form (see the module docstring for the rules)."""
    if model_uri.startswith(PYTHON_PREFIX):
        return "python"
    scheme = urlparse(model_uri).scheme.lower()
    if scheme in _MLFLOW_SCHEMES:
        return "mlflow"
    path = _local_path(model_uri)
    if path.is_dir():
        if (path / "MLmodel").is_file():
            return "mlflow"
        raise InvalidInputError(
            f"model directory {str(path)!r} is not an MLflow model (it has no MLmodel file); "
            "give the path of a pickle or joblib file, an MLflow model directory, or a python: reference"
        )
    if not path.exists():
        raise InvalidInputError(f"model file not found: {str(path)!r}")
    if path.suffix.lower() in _JOBLIB_SUFFIXES:
        return "joblib"
    return "pickle"


def load_model(model_uri: str, flavor: str | None = None) -> LoadedModel:
    """Load ``model_uri`` with ``flavor`` (detected when ``None``).

    Raises :class:`~deployflow.errors.InvalidInputError` when the source is missing, cannot be loaded,
    or does not give something that can predict.
    """
    if not isinstance(model_uri, str) or not model_uri.strip():
        raise InvalidInputError("model_uri must be a non-empty string")
    model_uri = model_uri.strip()
    resolved = normalize_flavor(flavor) or detect_flavor(model_uri)
    if resolved == "python":
        return _load_python(model_uri)
    if resolved == "mlflow":
        return _load_mlflow(model_uri)
    if model_uri.startswith(PYTHON_PREFIX):
        raise InvalidInputError(
            f"flavor {resolved!r} cannot load a python: reference ({model_uri!r}); use flavor 'python'"
        )
    return _load_serialized(model_uri, resolved)


# -- pickle and joblib ---------------------------------------------------------------------------------


def _local_path(model_uri: str) -> Path:
    if model_uri.startswith("file:"):
        parsed = urlparse(model_uri)
        return Path(unquote(parsed.path)).expanduser()
    return Path(model_uri).expanduser()


def _load_serialized(model_uri: str, flavor: str) -> LoadedModel:
    path = _local_path(model_uri)
    if path.is_dir():
        raise InvalidInputError(f"{flavor} model must be a file, but {str(path)!r} is a directory")
    if not path.is_file():
        raise InvalidInputError(f"model file not found: {str(path)!r}")
    try:
        if flavor == "joblib":
            joblib = require("joblib", "local", f"loading {str(path)!r}", error=InvalidInputError)
            obj = joblib.load(path)
        else:
            with path.open("rb") as stream:
                obj = pickle.load(stream)
    except InvalidInputError:
        raise
    except Exception as exc:  # a broken or foreign file can raise almost anything
        raise InvalidInputError(
            f"cannot load {flavor} file {str(path)!r}: {type(exc).__name__}: {exc}"
        ) from exc
    predict = getattr(obj, "predict", None)
    if not callable(predict):
        raise InvalidInputError(
            f"the object in {str(path)!r} ({_describe(obj)}) has no predict method; "
            "a pickled model must be an object with predict(data)"
        )
    return LoadedModel(array_shortcut(obj, predict), flavor, str(path), _takes_params(predict), raw=obj)


# -- python: references --------------------------------------------------------------------------------


def _split_reference(model_uri: str) -> tuple[str, str]:
    reference = model_uri[len(PYTHON_PREFIX) :] if model_uri.startswith(PYTHON_PREFIX) else model_uri
    target, sep, attribute = reference.rpartition(":")
    if not sep or not target or not attribute:
        raise InvalidInputError(
            f"python model reference {model_uri!r} must look like python:package.module:attr "
            "or python:/path/to/file.py:attr"
        )
    return target, attribute


def _import_target(target: str, model_uri: str) -> Any:
    if target.endswith(".py") or os.sep in target or target.startswith("."):
        return _import_file(Path(target).expanduser(), model_uri)
    try:
        return importlib.import_module(target)
    except ImportError as exc:
        raise InvalidInputError(
            f"cannot import module {target!r} for model {model_uri!r}: {exc}. "
            "Check that the module is installed or on PYTHONPATH of the server process"
        ) from exc
    except Exception as exc:
        raise InvalidInputError(
            f"importing module {target!r} for model {model_uri!r} failed: {type(exc).__name__}: {exc}"
        ) from exc


def _import_file(path: Path, model_uri: str) -> Any:
    path = path.resolve()
    if not path.is_file():
        raise InvalidInputError(f"model file not found: {str(path)!r} (from {model_uri!r})")
    # A unique name keeps two files called model.py apart; registering it in sys.modules before running
    # the code lets dataclasses, pickle and typing find the module by name.
    digest = hashlib.sha1(str(path).encode("utf-8")).hexdigest()[:10]
    module_name = f"_deployflow_model_{path.stem}_{digest}"
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:
        raise InvalidInputError(f"cannot import {str(path)!r} as a Python module (from {model_uri!r})")
    module = importlib.util.module_from_spec(spec)
    directory = str(path.parent)
    if directory not in sys.path:
        sys.path.insert(0, directory)
    sys.modules[module_name] = module
    try:
        spec.loader.exec_module(module)
    except Exception as exc:
        sys.modules.pop(module_name, None)
        raise InvalidInputError(
            f"running {str(path)!r} for model {model_uri!r} failed: {type(exc).__name__}: {exc}"
        ) from exc
    return module


def _load_python(model_uri: str) -> LoadedModel:
    target, attribute = _split_reference(model_uri)
    obj = _import_target(target, model_uri)
    for part in attribute.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError as exc:
            raise InvalidInputError(
                f"{target!r} has no attribute {attribute!r} (looked for {part!r}; model {model_uri!r})"
            ) from exc
    if inspect.isclass(obj):
        cls = obj
        if not callable(getattr(cls, "predict", None)):
            raise InvalidInputError(f"class {attribute!r} in {target!r} has no predict method (model {model_uri!r})")
        try:
            obj = cls()
        except Exception as exc:
            raise InvalidInputError(
                f"cannot instantiate class {attribute!r} from {target!r} without arguments "
                f"({type(exc).__name__}: {exc}); name an instance or a function instead"
            ) from exc
    predict = getattr(obj, "predict", None)
    if callable(predict):
        function = predict
    elif callable(obj):
        function = obj
    else:
        raise InvalidInputError(
            f"{attribute!r} in {target!r} is {_describe(obj)}, which is neither callable nor has a "
            f"predict method (model {model_uri!r})"
        )
    return LoadedModel(function, "python", model_uri, _takes_params(function), raw=obj)


# -- MLflow ------------------------------------------------------------------------------------------------


def _load_mlflow(model_uri: str) -> LoadedModel:
    """A local MLflow model directory natively when its flavor allows (see :mod:`.mlflow_model`), through
    ``mlflow.pyfunc`` otherwise; ``models:/``, ``runs:/`` and remote URIs always need MLflow."""
    scheme = urlparse(model_uri).scheme.lower()
    if scheme not in _MLFLOW_SCHEMES:
        path = _local_path(model_uri)
        if not (path / mlflow_model.MLMODEL_FILE).is_file():
            raise InvalidInputError(f"{str(path)!r} is not an MLflow model directory (it has no MLmodel file)")
        return _load_mlflow_dir(path.resolve())
    return _load_with_mlflow(model_uri, "")


def _load_mlflow_dir(path: Path) -> LoadedModel:
    model_dir = mlflow_model.read_model_dir(path)
    native, reason = mlflow_model.load_native(model_dir)
    if native is None:
        through_mlflow = _load_with_mlflow(str(path), f" ({reason}, which deployflow leaves to MLflow)")
        return _read_as_mlflows_server_reads(through_mlflow, model_dir)
    loaded = LoadedModel(
        native.predict, "mlflow", f"{path} (MLflow model: {native.description})", accepts_params=True,
        raw=native.raw,
    )
    if model_dir.serving_example is not None:
        _score_example(loaded, model_dir.serving_example)
    return loaded


def _read_as_mlflows_server_reads(loaded: LoadedModel, model_dir: mlflow_model.MLflowModelDir) -> LoadedModel:
    """``loaded`` (a pyfunc model) behind the signature enforcement native models have.

    MLflow's scoring server reads a request's columns as the signature's types before pyfunc checks
    them (an integer column declared double arrives as floats, numbers written as text as numbers); the
    same enforcement in front of pyfunc gives the same answers. Params are left to pyfunc's own check.
    """
    signature = model_dir.signature
    if signature is None or not signature.inputs or model_dir.signature_problem:
        return loaded
    from .enforcement import InputEnforcer

    check = InputEnforcer(signature)
    pyfunc_predict = loaded.predict_function

    def predict(data: Any, *args: Any, **kwargs: Any) -> Any:
        return pyfunc_predict(check(data), *args, **kwargs)

    return LoadedModel(predict, loaded.flavor, loaded.source, loaded.accepts_params, raw=loaded.raw)


def _score_example(loaded: LoadedModel, example: bytes) -> None:
    # The saved example request, scored once before serving: the first caller does not pay for lazy
    # imports and caches, and a model that cannot score its own example is visible in the log.
    from ...payloads import decode_request

    try:
        data, params, _ = decode_request(example, "application/json")
        loaded.predict(data, params)
    except Exception as exc:  # noqa: BLE001 - a warning only: the example is not part of the contract
        _logger.warning("the model's saved input example does not score: %s: %s", type(exc).__name__, exc)


def _load_with_mlflow(model_uri: str, why: str) -> LoadedModel:
    # InvalidInputError, not MissingExtraError: for this install the model URI is unusable input.
    feature = f"serving the MLflow model {model_uri!r}{why}"
    pyfunc = require("mlflow.pyfunc", "mlflow", feature, error=InvalidInputError)
    try:
        model = pyfunc.load_model(model_uri)
    except Exception as exc:
        raise InvalidInputError(
            f"MLflow cannot load model {model_uri!r}: {type(exc).__name__}: {exc}"
        ) from exc
    return LoadedModel(model.predict, "mlflow", model_uri, _takes_params(model.predict), raw=model)


# -- helpers ----------------------------------------------------------------------------------------------


def _takes_params(function: Callable[..., Any]) -> bool:
    # Like MLflow: only a parameter literally named "params" counts. A **kwargs catch-all does not, since
    # sklearn's Pipeline.predict(X, **params) would take params={...} as one routed parameter.
    try:
        parameters = inspect.signature(function).parameters
    except (TypeError, ValueError):  # some builtins and C extensions have no signature
        return False
    parameter = parameters.get("params")
    return parameter is not None and parameter.kind in (
        inspect.Parameter.POSITIONAL_OR_KEYWORD,
        inspect.Parameter.KEYWORD_ONLY,
    )


def _describe(obj: Any) -> str:
    kind = type(obj)
    return f"a {kind.__module__}.{kind.__qualname__}" if kind.__module__ != "builtins" else f"a {kind.__name__}"


_warned_about_params = False


def _warn_ignored_params() -> None:
    # Once per process: a client sending params with every request would otherwise flood the log.
    global _warned_about_params
    if not _warned_about_params:
        _warned_about_params = True
        _logger.warning(
            "a request carried params but the model's predict has no 'params' argument: params are ignored"
        )
