"""MLflow model directories served without MLflow: the ``MLmodel`` file and the native flavors.

An MLflow model directory holds an ``MLmodel`` YAML file: its ``flavors`` (``python_function`` names
the ``loader_module`` MLflow would call, and each framework flavor says how its file was written), a
``signature`` (see :mod:`.signature`) and, when one was saved, ``saved_input_example_info`` naming the
example request. :func:`read_model_dir` reads it; :func:`load_native` loads the model itself for the
flavors whose format is public and simple, the way MLflow's own loader for that flavor does:

=====================  =================================================================================
python_function        native loading
loader_module
=====================  =================================================================================
``mlflow.sklearn``     ``sklearn.pickled_model`` read as ``serialization_format`` says: ``skops`` (with
                       the flavor's ``skops_trusted_types``; needs ``pip install skops``), ``pickle`` or
                       ``cloudpickle``; scored with the method named by ``predict_fn`` (``predict``,
                       ``predict_proba``, ...), params checked and then ignored, as MLflow's wrapper does.
``mlflow.xgboost``     ``model_class`` (``xgboost.core.Booster`` or a scikit-learn wrapper such as
                       ``xgboost.sklearn.XGBRegressor``) instantiated and its ``load_model(data)`` called;
                       scored with ``validate_features=True``, a Booster through a ``DMatrix``; params
                       that ``predict`` accepts are passed on.
``mlflow.lightgbm``    a ``lightgbm.basic.Booster`` from its text file, or a scikit-learn wrapper read like
                       the sklearn flavor (``serialization_format``, default ``cloudpickle``).
=====================  =================================================================================

Every request is first checked against the signature (:mod:`.enforcement`), and scikit-learn models
then take the array shortcut where it is the same computation (:mod:`.array_shortcut`). Code saved
with the model (the flavor's ``code`` directory) goes to the front of ``sys.path``, as MLflow does.

Any other flavor (a custom ``PythonModel``, ``mlflow.pytorch``...), a ``predict_fn`` these loaders do
not offer, or a signature with nested types is not loaded here: :func:`load_native` returns ``None``
with the reason, and the caller hands the directory to ``mlflow.pyfunc`` when MLflow is installed.

Unlike MLflow 3.17, which refuses to deserialize any model unless ``MLFLOW_ALLOW_PICKLE_DESERIALIZATION``
is ``true``, no switch is asked for: deploying a model is the decision to trust its files (as for the
``pickle`` flavor; see the warning in :mod:`.models`). skops' trusted-types check still applies.
"""

from __future__ import annotations

import importlib
import inspect
import pickle
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..._extras import require
from ...errors import InvalidInputError
from ...redaction import get_logger
from .array_shortcut import array_shortcut
from .enforcement import InputEnforcer, ParamsEnforcer
from .signature import Signature, UnsupportedSignatureError, parse_signature

__all__ = ["MLMODEL_FILE", "MLflowModelDir", "NativeModel", "load_native", "read_model_dir"]

_logger = get_logger(__name__)

MLMODEL_FILE = "MLmodel"
_PYFUNC = "python_function"
_SKLEARN_METHODS = ("predict", "predict_proba", "predict_log_proba", "predict_joint_log_proba")


@dataclass(frozen=True)
class MLflowModelDir:
    """What an ``MLmodel`` file says about a model directory."""

    path: Path
    flavors: dict[str, Any]
    signature: Signature | None = None
    #: Why the signature cannot be enforced here (a nested type), or None.
    signature_problem: str | None = None
    #: The saved example request (``serving_input_example.json``), as bytes, or None.
    serving_example: bytes | None = None
    mlflow_version: str | None = None

    @property
    def loader_module(self) -> str | None:
        pyfunc = self.flavors.get(_PYFUNC)
        return pyfunc.get("loader_module") if isinstance(pyfunc, dict) else None

    def describe_flavors(self) -> str:
        """For messages: "flavor 'pytorch', python_function loader 'mlflow.pytorch'"."""
        names = [name for name in self.flavors if name != _PYFUNC]
        listed = ", ".join(repr(name) for name in names) or "none"
        loader = self.loader_module
        tail = f"python_function loader {loader!r}" if loader else "no python_function flavor"
        return f"flavor{'s' if len(names) > 1 else ''} {listed}, {tail}"


@dataclass(frozen=True)
class NativeModel:
    """A model loaded from its directory without MLflow, with signature enforcement built in."""

    #: ``predict(data, params=None)``: checks the input and params against the signature, then scores.
    predict: Callable[..., Any]
    #: The framework's model object (an sklearn estimator, an xgboost Booster...).
    raw: Any
    #: The flavor it was read with (``sklearn``, ``xgboost``, ``lightgbm``) and the file format.
    description: str
    #: The scoring call after enforcement (for tests: the array shortcut, or the model's own method).
    scorer: Callable[..., Any] = field(repr=False, default=None)  # type: ignore[assignment]


def read_model_dir(path: Path) -> MLflowModelDir:
    """Read ``path/MLmodel``; raises :class:`~deployflow.errors.InvalidInputError` when it is unusable."""
    yaml = require("yaml", "local", f"reading the MLflow model {str(path)!r}", error=InvalidInputError)
    mlmodel = path / MLMODEL_FILE
    try:
        document = yaml.safe_load(mlmodel.read_text(encoding="utf-8"))
    except OSError as exc:
        raise InvalidInputError(f"cannot read {str(mlmodel)!r}: {exc.strerror or exc}") from exc
    except yaml.YAMLError as exc:
        raise InvalidInputError(f"{str(mlmodel)!r} is not valid YAML: {exc}") from exc
    if not isinstance(document, dict):
        raise InvalidInputError(f"{str(mlmodel)!r} does not describe a model (it is not a mapping)")
    flavors = document.get("flavors") or {}
    if not isinstance(flavors, dict):
        raise InvalidInputError(f"{str(mlmodel)!r}: 'flavors' must be a mapping")
    signature, problem = None, None
    try:
        signature = parse_signature(document.get("signature"))
    except UnsupportedSignatureError as exc:
        problem = exc.message
    return MLflowModelDir(
        path=path,
        flavors=flavors,
        signature=signature,
        signature_problem=problem,
        serving_example=_serving_example(path, document.get("saved_input_example_info")),
        mlflow_version=document.get("mlflow_version"),
    )


def _serving_example(path: Path, info: Any) -> bytes | None:
    if not isinstance(info, dict) or not isinstance(info.get("serving_input_path"), str):
        return None
    try:
        return (path / info["serving_input_path"]).read_bytes()
    except OSError:
        return None


def load_native(model_dir: MLflowModelDir) -> tuple[NativeModel | None, str]:
    """Load the model natively, or return ``(None, reason)`` when only MLflow can (module docstring)."""
    loader = model_dir.loader_module
    native = _NATIVE_LOADERS.get(loader) if loader is not None else None
    if native is None:
        return None, model_dir.describe_flavors()
    if model_dir.signature_problem:
        return None, model_dir.signature_problem
    pyfunc = model_dir.flavors[_PYFUNC]
    _add_code_path(model_dir.path, pyfunc)
    loaded = native(model_dir, pyfunc)
    if loaded is None:
        return None, f"{model_dir.describe_flavors()}, predict_fn {pyfunc.get('predict_fn')!r}"
    raw, score, description, passes_params = loaded
    return _with_signature(raw, score, description, model_dir.signature, passes_params), ""


def _with_signature(raw: Any, score: Callable[..., Any], description: str, signature: Signature | None,
                    passes_params: bool) -> NativeModel:
    check_inputs = InputEnforcer(signature) if signature is not None and signature.inputs else None
    check_params = ParamsEnforcer(signature.params if signature is not None else None)

    def predict(data: Any, params: dict[str, Any] | None = None) -> Any:
        if check_inputs is not None:
            data = check_inputs(data)
        params = check_params(params)
        if passes_params and params:
            return score(data, params)
        return score(data)

    return NativeModel(predict=predict, raw=raw, description=description, scorer=score)


def _add_code_path(path: Path, pyfunc: dict[str, Any]) -> None:
    code = pyfunc.get("code")
    if isinstance(code, str) and code:
        directory = str(path / code)
        if directory not in sys.path:
            sys.path.insert(0, directory)


def _flavor_conf(model_dir: MLflowModelDir, name: str) -> dict[str, Any]:
    conf = model_dir.flavors.get(name)
    if not isinstance(conf, dict):
        raise InvalidInputError(
            f"the MLflow model {str(model_dir.path)!r} names the loader mlflow.{name} but has no {name!r} flavor"
        )
    return conf


def _model_file(model_dir: MLflowModelDir, relative: Any, flavor: str) -> Path:
    if not isinstance(relative, str) or not relative:
        raise InvalidInputError(f"the {flavor} flavor of {str(model_dir.path)!r} does not name its model file")
    path = model_dir.path / relative
    if not path.exists():
        raise InvalidInputError(f"the {flavor} model file {str(path)!r} named in MLmodel does not exist")
    return path


# -- scikit-learn ---------------------------------------------------------------------------------------

_Loaded = tuple[Any, Callable[..., Any], str, bool]


def _load_sklearn(model_dir: MLflowModelDir, pyfunc: dict[str, Any]) -> _Loaded | None:
    conf = _flavor_conf(model_dir, "sklearn")
    method = pyfunc.get("predict_fn") or "predict"
    if method not in _SKLEARN_METHODS:
        return None
    path = _model_file(model_dir, pyfunc.get("model_path") or conf.get("pickled_model"), "sklearn")
    serialization = conf.get("serialization_format") or "pickle"
    model = _read_serialized(path, serialization, conf.get("skops_trusted_types"))
    _check_version("scikit-learn", "sklearn", conf.get("sklearn_version"))
    scorer = getattr(model, method, None)
    if not callable(scorer):
        raise InvalidInputError(f"the sklearn model in {str(path)!r} has no {method} method (MLmodel predict_fn)")
    return model, array_shortcut(model, scorer), f"sklearn flavor, {serialization} file, {method}", False


def _read_serialized(path: Path, serialization: str, trusted: Any) -> Any:
    where = f"loading the MLflow model file {str(path)!r}"
    try:
        if serialization == "skops":
            skops_io = require("skops.io", None, where, package="skops", error=InvalidInputError)
            return skops_io.load(path, trusted=list(trusted) if trusted else None)
        if serialization == "cloudpickle":
            cloudpickle = require("cloudpickle", "local", where, error=InvalidInputError)
            with path.open("rb") as stream:
                return cloudpickle.load(stream)
        if serialization == "pickle":
            with path.open("rb") as stream:
                return pickle.load(stream)
    except InvalidInputError:
        raise
    except Exception as exc:  # a broken file, an untrusted skops type, a missing class
        raise InvalidInputError(f"cannot load {str(path)!r} ({serialization}): {type(exc).__name__}: {exc}") from exc
    raise InvalidInputError(
        f"{str(path)!r} has the serialization format {serialization!r}; MLflow writes skops, pickle or cloudpickle"
    )


def _check_version(package: str, module: str, saved: Any) -> None:
    if not saved:
        return
    installed = getattr(sys.modules.get(module), "__version__", None)
    if installed and str(saved) != installed:
        _logger.warning("the model was saved with %s %s; this server has %s %s", package, saved, package, installed)


# -- xgboost --------------------------------------------------------------------------------------------


def _load_xgboost(model_dir: MLflowModelDir, pyfunc: dict[str, Any]) -> _Loaded | None:
    if (pyfunc.get("predict_fn") or "predict") != "predict":
        return None
    conf = _flavor_conf(model_dir, "xgboost")
    path = _model_file(model_dir, conf.get("data"), "xgboost")
    xgboost = require("xgboost", None, f"loading the xgboost model {str(path)!r}", package="xgboost",
                      error=InvalidInputError)
    cls = _class_in(conf.get("model_class") or "xgboost.core.Booster", "xgboost")
    try:
        model = cls()
        model.load_model(str(path))
    except Exception as exc:
        raise InvalidInputError(f"cannot load the xgboost model {str(path)!r}: {type(exc).__name__}: {exc}") from exc
    _check_version("xgboost", "xgboost", conf.get("xgb_version"))
    if isinstance(model, xgboost.Booster):
        accepted = _keyword_names(model.predict)

        def score_booster(data: Any, params: dict[str, Any] | None = None) -> Any:
            extra = _accepted(params, accepted)
            return model.predict(xgboost.DMatrix(data), validate_features=True, **extra)

        return model, score_booster, f"xgboost flavor, {cls.__name__} from {path.name}", True
    accepted = _keyword_names(model.predict)

    def score(data: Any, params: dict[str, Any] | None = None) -> Any:
        return model.predict(data, validate_features=True, **_accepted(params, accepted))

    return model, score, f"xgboost flavor, {cls.__name__} from {path.name}", True


def _keyword_names(function: Callable[..., Any]) -> frozenset[str] | None:
    """The keyword names ``function`` accepts, or None when it takes ``**kwargs`` (anything)."""
    try:
        parameters = inspect.signature(function).parameters.values()
    except (TypeError, ValueError):
        return frozenset()
    if any(parameter.kind is inspect.Parameter.VAR_KEYWORD for parameter in parameters):
        return None
    return frozenset(parameter.name for parameter in parameters) - {"data", "X", "validate_features"}


def _accepted(params: dict[str, Any] | None, accepted: frozenset[str] | None) -> dict[str, Any]:
    # As MLflow's xgboost wrapper: params the model's predict does not take are dropped.
    if not params:
        return {}
    if accepted is None:
        return dict(params)
    return {name: value for name, value in params.items() if name in accepted}


# -- lightgbm -------------------------------------------------------------------------------------------


def _load_lightgbm(model_dir: MLflowModelDir, pyfunc: dict[str, Any]) -> _Loaded | None:
    if (pyfunc.get("predict_fn") or "predict") != "predict":
        return None
    conf = _flavor_conf(model_dir, "lightgbm")
    path = _model_file(model_dir, conf.get("data"), "lightgbm")
    lightgbm = require("lightgbm", None, f"loading the lightgbm model {str(path)!r}", package="lightgbm",
                       error=InvalidInputError)
    model_class = conf.get("model_class") or "lightgbm.basic.Booster"
    if model_class == "lightgbm.basic.Booster":
        try:
            model = lightgbm.Booster(model_file=str(path))
        except Exception as exc:
            raise InvalidInputError(f"cannot load the lightgbm model {str(path)!r}: {exc}") from exc
        description = f"lightgbm flavor, Booster from {path.name}"
    else:
        serialization = conf.get("serialization_format") or "cloudpickle"
        model = _read_serialized(path, serialization, conf.get("skops_trusted_types"))
        description = f"lightgbm flavor, {type(model).__name__}, {serialization} file"
    _check_version("lightgbm", "lightgbm", conf.get("lgb_version"))
    return model, model.predict, description, False


def _class_in(dotted: str, package: str) -> type:
    """The class named ``dotted``, which must live in ``package`` (the MLmodel file names it)."""
    module_name, _, name = dotted.rpartition(".")
    if not module_name or not (module_name == package or module_name.startswith(package + ".")):
        raise InvalidInputError(f"MLmodel names the model class {dotted!r}, which is not a {package} class")
    try:
        cls = getattr(importlib.import_module(module_name), name)
    except (ImportError, AttributeError) as exc:
        raise InvalidInputError(f"MLmodel names the model class {dotted!r}, which cannot be imported: {exc}") from exc
    if not isinstance(cls, type):
        raise InvalidInputError(f"MLmodel names {dotted!r} as the model class, but it is not a class")
    return cls


_NATIVE_LOADERS: dict[str, Callable[[MLflowModelDir, dict[str, Any]], _Loaded | None]] = {
    "mlflow.sklearn": _load_sklearn,
    "mlflow.xgboost": _load_xgboost,
    "mlflow.lightgbm": _load_lightgbm,
}
