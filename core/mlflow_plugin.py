"""deployflow's targets as MLflow deployment plugins: ``mlflow deployments ... -t local`` and friends.

MLflow finds deployment plugins through the ``mlflow.deployments`` entry-point group. deployflow's
``pyproject.toml`` lists some of its targets there, under names MLflow does not use itself: MLflow
3.17.2 has ``databricks``, ``http``, ``https`` and ``openai`` as entry points and registers
``sagemaker`` in code. An entry point of one of those names would clash with MLflow's own client
(which of the two MLflow keeps depends on the order it reads entry points in; ``sagemaker``, set in
code, always wins). The entries::

    local          -> deployflow.mlflow_plugin:local
    serving        -> deployflow.mlflow_plugin:serving
    serving+http   -> deployflow.mlflow_plugin:serving    (MLflow names a target by the whole scheme)
    serving+https  -> deployflow.mlflow_plugin:serving
    v2, v2+http, v2+https -> deployflow.mlflow_plugin:v2 (Open Inference Protocol servers)

Then MLflow's own CLI and API drive deployflow's targets::

    mlflow deployments create -t local --name iris -m ./model -C port=5001
    mlflow deployments predict -t local --name iris --input-path rows.json --output-path out.json
    python -c "import mlflow.deployments as d; print(d.get_deploy_client('local').list_deployments())"

What MLflow loads for an entry point is a plugin object: a module-like namespace holding
``run_local``, ``target_help`` and exactly one subclass of MLflow's ``BaseDeploymentClient``, the
three things MLflow's plugin manager looks for. It is built the first time MLflow asks for it (the
module's ``__getattr__``), so ``import deployflow.mlflow_plugin`` imports no part of MLflow: only MLflow
loading the plugin, in a process where MLflow is running anyway, does.

The client of a plugin object delegates every method to deployflow's own client for the same target
URI, and adapts at the edges:

* ``predict`` returns ``mlflow.deployments.PredictionsResponse`` (MLflow's CLI calls its ``to_json``);
* a :class:`~deployflow.DeploymentError` becomes an ``MlflowException`` with the same message and the
  matching ``error_code`` (chained, so ``__cause__`` is deployflow's error, with ``retryable``);
* ``create_deployment`` and ``update_deployment`` always return a dict with ``name`` and ``flavor``,
  which MLflow's CLI prints;
* ``-C key=value`` values reach the target as MLflow's CLI gives them, text, exactly as ``deployflow``'s
  own CLI hands them over: each target converts its config keys itself (``"5001"`` -> 5001,
  ``"false"`` -> False, JSON text for structured keys), with the same checks and error messages.

deployflow's own registry also reads the ``mlflow.deployments`` group, but a built-in target wins over
any entry point of the same name, so ``deployflow.get_deploy_client("local")`` never goes through this
module.
"""

from __future__ import annotations

import functools
import threading
import types
from collections.abc import Callable
from typing import Any

from .errors import DeploymentError, TargetError

__all__ = ["PLUGINS", "plugin"]

#: The deployflow built-in targets offered to MLflow -> the class name of their MLflow client. The
#: entry points in pyproject.toml say under which MLflow names (``name = "deployflow.mlflow_plugin:<target>"``).
#: A target whose own name MLflow uses (MLflow has ``sagemaker``) gets an entry point with another name;
#: a URI written with that name reaches deployflow with the target's own name in its place.
PLUGINS: dict[str, str] = {
    "local": "LocalMlflowDeploymentClient",
    "serving": "ServingMlflowDeploymentClient",
    "v2": "V2MlflowDeploymentClient",
    "sagemaker": "SagemakerMlflowDeploymentClient",
}

_lock = threading.Lock()
_plugins: dict[str, types.ModuleType] = {}


def plugin(name: str) -> types.ModuleType:
    """The plugin object MLflow loads for deployflow target ``name`` (built once; imports MLflow)."""
    if name not in PLUGINS:
        raise KeyError(f"deployflow offers no MLflow plugin for target {name!r}; known: {', '.join(PLUGINS)}")
    with _lock:
        found = _plugins.get(name)
        if found is None:
            found = _plugins[name] = _build(name)
        return found


def __getattr__(attribute: str) -> Any:
    # Entry points name "deployflow.mlflow_plugin:local": MLflow's loader asks for the attribute.
    if attribute in PLUGINS:
        return plugin(attribute)
    raise AttributeError(f"module {__name__!r} has no attribute {attribute!r}")


# --------------------------------------------------------------------------------------------------
# Errors
# --------------------------------------------------------------------------------------------------


def _mlflow_error(exc: BaseException) -> Exception:
    """The ``MlflowException`` for a deployflow error: same message, matching error code."""
    from mlflow.exceptions import MlflowException
    from mlflow.protos.databricks_pb2 import INTERNAL_ERROR, ErrorCode

    try:
        code = ErrorCode.Value(getattr(exc, "error_code", None))
    except (ValueError, TypeError):  # a code MLflow does not know: MLflow's code for the HTTP status
        code = INTERNAL_ERROR
        status = getattr(exc, "status_code", None)
        if status:
            try:
                from mlflow.exceptions import get_error_code
            except ImportError:  # older MLflow
                pass
            else:
                code = get_error_code(status)
    return MlflowException(str(exc), error_code=code)


def _translating(method: Callable[..., Any]) -> Callable[..., Any]:
    """Run ``method``, turning a :class:`~deployflow.DeploymentError` into an ``MlflowException``."""

    @functools.wraps(method)
    def call(*args: Any, **kwargs: Any) -> Any:
        try:
            return method(*args, **kwargs)
        except DeploymentError as exc:
            raise _mlflow_error(exc) from exc

    return call


# --------------------------------------------------------------------------------------------------
# The client
# --------------------------------------------------------------------------------------------------


class _Delegating:
    """The methods of every plugin client: each calls deployflow's client for the same target URI.

    Not itself a subclass of MLflow's ``BaseDeploymentClient``: the plugin's one client class is
    ``type(name, (_Delegating, BaseDeploymentClient), ...)``, so MLflow counts exactly one.
    """

    target_uri: str
    _deployflow_name: str

    def __init__(self, target_uri: str) -> None:
        super().__init__(target_uri)  # MLflow's base keeps target_uri
        self._delegate: Any = None
        self._delegate_lock = threading.Lock()

    @property
    def deployflow_client(self) -> Any:
        """deployflow's client behind this one (for ``deployment_status``, ``wait_for_deployment``...).

        Built on first use, so constructing the MLflow client stays cheap and a bad target URI is
        reported, as an ``MlflowException``, by the first call that needs the target."""
        with self._delegate_lock:
            if self._delegate is None:
                self._delegate = _translating(self._make_delegate)()
            return self._delegate

    def _deployflow_uri(self) -> str:
        """The target URI with deployflow's target name in front (``local`` stays ``local``; a name
        that is MLflow's alone, before any ``+`` or ``:``, becomes the target's own)."""
        uri = self.target_uri
        if not isinstance(uri, str):
            return uri
        end = min((i for i in (uri.find(":"), uri.find("+")) if i >= 0), default=len(uri))
        return self._deployflow_name + uri[end:]

    def _make_delegate(self) -> Any:
        from .registry import load_target

        uri = self._deployflow_uri()
        target = load_target(uri)
        if target.source != "built in":
            # Only deployflow's own built-in may stand behind this plugin: anything else (a target
            # registered in this process under the same name) could be this very plugin again.
            raise TargetError(
                f"MLflow's plugin for deployflow's built-in {self._deployflow_name!r} target cannot use "
                f"{uri!r}: deployflow resolves it to {target.source}"
            )
        return target.client_class(uri)

    def _call(self, method: str, *args: Any, **kwargs: Any) -> Any:
        return _translating(getattr(self.deployflow_client, method))(*args, **kwargs)

    # MLflow's interface -----------------------------------------------------------------------------

    def create_deployment(
        self, name: str, model_uri: str, flavor: str | None = None, config: dict[str, Any] | None = None,
        endpoint: str | None = None,
    ) -> dict[str, Any]:
        record = self._call("create_deployment", name, model_uri, flavor=flavor, config=config, endpoint=endpoint)
        return _with_name_and_flavor(record, name, flavor)

    def update_deployment(
        self, name: str, model_uri: str | None = None, flavor: str | None = None,
        config: dict[str, Any] | None = None, endpoint: str | None = None,
    ) -> dict[str, Any]:
        record = self._call(
            "update_deployment", name, model_uri=model_uri, flavor=flavor, config=config, endpoint=endpoint
        )
        return _with_name_and_flavor(record, name, flavor)

    def delete_deployment(self, name: str, config: dict[str, Any] | None = None, endpoint: str | None = None) -> None:
        self._call("delete_deployment", name, config=config, endpoint=endpoint)

    def list_deployments(self, endpoint: str | None = None) -> list[dict[str, Any]]:
        return self._call("list_deployments", endpoint=endpoint)

    def get_deployment(self, name: str, endpoint: str | None = None) -> dict[str, Any]:
        return self._call("get_deployment", name, endpoint=endpoint)

    def predict(self, deployment_name: str | None = None, inputs: Any = None, endpoint: str | None = None) -> Any:
        from mlflow.deployments import PredictionsResponse

        answer = self._call("predict", deployment_name, inputs, endpoint=endpoint)
        return PredictionsResponse(answer) if isinstance(answer, dict) else answer

    def predict_stream(self, deployment_name: str | None = None, inputs: Any = None, endpoint: str | None = None) -> Any:
        stream = self._call("predict_stream", deployment_name, inputs, endpoint=endpoint)
        return _translating_iterator(stream)

    def explain(self, deployment_name: str | None = None, df: Any = None, endpoint: str | None = None) -> Any:
        return self._call("explain", deployment_name, df, endpoint=endpoint)

    def create_endpoint(self, name: str, config: dict[str, Any] | None = None) -> dict[str, Any]:
        return self._call("create_endpoint", name, config=config)

    def update_endpoint(self, endpoint: str, config: dict[str, Any] | None = None) -> Any:
        return self._call("update_endpoint", endpoint, config=config)

    def delete_endpoint(self, endpoint: str) -> None:
        self._call("delete_endpoint", endpoint)

    def list_endpoints(self) -> list[dict[str, Any]]:
        return self._call("list_endpoints")

    def get_endpoint(self, endpoint: str) -> dict[str, Any]:
        return self._call("get_endpoint", endpoint)

    # Resources --------------------------------------------------------------------------------------

    def close(self) -> None:
        """Close deployflow's client (its pooled connections), if one was made."""
        with self._delegate_lock:
            delegate, self._delegate = self._delegate, None
        if delegate is not None:
            delegate.close()

    def __enter__(self) -> Any:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        from .redaction import redact

        return f"{type(self).__name__}(target_uri={redact(self.target_uri)!r})"


def _with_name_and_flavor(record: Any, name: str, flavor: str | None) -> dict[str, Any]:
    # MLflow's CLI prints record["flavor"] and record["name"] after create and update.
    result = dict(record) if isinstance(record, dict) else {}
    result.setdefault("name", name)
    result.setdefault("flavor", flavor)
    return result


def _translating_iterator(stream: Any) -> Any:
    try:
        yield from stream
    except DeploymentError as exc:
        raise _mlflow_error(exc) from exc


# --------------------------------------------------------------------------------------------------
# Building a plugin object
# --------------------------------------------------------------------------------------------------


def _build(deployflow_name: str) -> types.ModuleType:
    from mlflow.deployments import BaseDeploymentClient as MlflowBaseDeploymentClient

    class_name = PLUGINS[deployflow_name]
    client_class = type(
        class_name,
        (_Delegating, MlflowBaseDeploymentClient),
        {
            "__module__": __name__,
            "__qualname__": class_name,
            "__doc__": f"MLflow's client for deployflow's {deployflow_name!r} target (see deployflow.mlflow_plugin).",
            "_deployflow_name": deployflow_name,
        },
    )

    def run_local(name_: str, model_uri: str, flavor: str | None = None, config: dict[str, Any] | None = None) -> None:
        from .api import run_local as deployflow_run_local

        _translating(deployflow_run_local)(deployflow_name, name_, model_uri, flavor, config)

    def target_help() -> str:
        from .api import target_help as deployflow_target_help

        text = _translating(deployflow_target_help)(deployflow_name)
        return (
            f"deployflow's {deployflow_name!r} target, driven by MLflow through deployflow's plugin "
            "(deployflow.mlflow_plugin). -C values are given to the target as text and converted by it, as "
            f"`deployflow` does; errors are MlflowExceptions.\n\n{text}"
        )

    namespace = types.ModuleType(f"{__name__}.{deployflow_name}", f"MLflow deployment plugin for deployflow's {deployflow_name!r} target.")
    namespace.run_local = run_local  # type: ignore[attr-defined]
    namespace.target_help = target_help  # type: ignore[attr-defined]
    setattr(namespace, class_name, client_class)
    return namespace
