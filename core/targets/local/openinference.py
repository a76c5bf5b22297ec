"""The Open Inference Protocol (V2) for the local target's servers, as pure functions the server calls.

The tensor rules are :mod:`deployflow.openinference`, the same module the ``v2`` target encodes with,
so a deployflow client and a deployflow server read each other's tensors by one mechanism. This
module adds the server's side: which route a request is for (:func:`match`), the metadata bodies
(:func:`describe_server`, :func:`describe_model`), reading an inference request into what the model
is called with (:func:`decode_infer`), writing its answer (:func:`encode_infer`), and the whole job
of one request (:func:`infer`). Every error answer is ``(status, {"error": message})``, the body as
JSON bytes.

================================================  ==================================================
``GET /v2/health/live``, ``/v2/health/ready``     200, empty body (the server listens only once the
                                                  model is loaded)
``GET /v2``                                       server metadata: name ``deployflow``, version,
                                                  extensions ``[]``
``GET /v2/models/{name}[/versions/{v}]``          model metadata: name, versions, platform
                                                  (``deployflow/<flavor>``), inputs from the MLflow
                                                  signature when there is one, outputs ``[]``
``GET /v2/models/{name}[/versions/{v}]/ready``    200, empty body
``POST /v2/models/{name}[/versions/{v}]/infer``   the model's answer as V2 outputs
================================================  ==================================================

``HEAD`` is answered like ``GET``. Another model name, or a version other than the server's (a server
without a version has none), is 404 ``Model <name> not found`` (with ``with version <v>``); another
method is 405 with ``allow``; another path under ``/v2`` is 404. Paths outside ``/v2`` are not V2's
(:func:`match` returns ``None``).

What the model is called with: a DataFrame for a request with ``content_type: "pd"``, the array of a
lone input, or a dict of arrays by input name; the request's other ``parameters`` are the model's
``params``. Inputs may come in the binary tensor data extension (tritonclient's default: the
``Inference-Header-Content-Length`` header gives the JSON part's length). Answers are always JSON.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ... import __version__
from ... import openinference as codec
from ...errors import InvalidInputError
from ...jsoncodec import dumps, loads
from ...redaction import get_logger
from .models import LoadedModel
from .signature import ColumnSpec, Signature

__all__ = [
    "SERVER_NAME",
    "InferContext",
    "V2Error",
    "V2Route",
    "decode_infer",
    "describe_model",
    "describe_server",
    "encode_infer",
    "error_body",
    "infer",
    "match",
    "signature_of",
]

_logger = get_logger(__name__)

SERVER_NAME = "deployflow"
_READ = ("GET", "HEAD")
#: MLflow column types as V2 datatypes (datetimes travel as ISO-8601 text).
_COLUMN_DATATYPES = {
    "boolean": "BOOL",
    "integer": "INT32",
    "long": "INT64",
    "float": "FP32",
    "double": "FP64",
    "string": "BYTES",
    "binary": "BYTES",
    "datetime": "BYTES",
}


class V2Error(InvalidInputError):
    """A V2 request the server answers with an error: ``status_code`` and :meth:`to_json` (the ``{"error": ...}`` body)."""

    def __init__(self, message: str, status_code: int = 400) -> None:
        super().__init__(message, status_code=status_code)

    def to_json(self) -> bytes:
        return error_body(self.message)


def error_body(message: str) -> bytes:
    """``{"error": message}`` as JSON bytes."""
    return dumps({"error": message})


@dataclass(frozen=True)
class V2Route:
    """What a V2 request asks for.

    ``kind``: ``"live"``, ``"ready"``, ``"server"``, ``"model"``, ``"model_ready"``, ``"infer"``, or
    ``"error"`` (then ``status`` and ``body`` are the answer to send, and ``allow`` the methods for a 405).
    ``version`` is the version named in the path, if any.
    """

    kind: str
    version: str | None = None
    status: int = 200
    body: bytes = b""
    allow: str | None = None


def _error(status: int, message: str, allow: str | None = None) -> V2Route:
    return V2Route("error", status=status, body=error_body(message), allow=allow)


def _method(method: str, wanted: tuple[str, ...], kind: str, path: str, version: str | None = None) -> V2Route:
    if method in wanted:
        return V2Route(kind, version=version)
    allow = ", ".join(wanted)
    return _error(405, f"{path} does not accept {method}; use {allow}", allow)


def match(method: str, path: str, model_name: str, model_version: str | None = None) -> V2Route | None:
    """The V2 route of ``method path`` on a server of model ``model_name`` (version ``model_version``),
    or ``None`` for a path outside ``/v2``."""
    if path != "/v2" and not path.startswith("/v2/"):
        return None
    if path == "/v2":
        return _method(method, _READ, "server", path)
    if path == "/v2/health/live":
        return _method(method, _READ, "live", path)
    if path == "/v2/health/ready":
        return _method(method, _READ, "ready", path)
    parts = path.split("/")[3:] if path.startswith("/v2/models/") else None
    if not parts or not parts[0]:
        return _error(404, f"No V2 route for {method} {path}")
    name, rest = parts[0], parts[1:]
    version = None
    if len(rest) >= 2 and rest[0] == "versions" and rest[1]:
        version, rest = rest[1], rest[2:]
    if rest not in ([], ["ready"], ["infer"]):
        return _error(404, f"No V2 route for {method} {path}")
    if name != model_name:
        return _error(404, f"Model {name} not found")
    if version is not None and version != model_version:
        return _error(404, f"Model {name} with version {version} not found")
    if not rest:
        return _method(method, _READ, "model", path, version)
    if rest == ["ready"]:
        return _method(method, _READ, "model_ready", path, version)
    return _method(method, ("POST",), "infer", path, version)


def describe_server() -> bytes:
    """The body of ``GET /v2``."""
    return dumps({"name": SERVER_NAME, "version": __version__, "extensions": []})


def _input_metadata(signature: Signature | None) -> list[dict[str, Any]]:
    if signature is None or not signature.inputs:
        return []
    described = []
    for position, spec in enumerate(signature.inputs):
        if isinstance(spec, ColumnSpec):
            name = spec.name if spec.name is not None else str(position)
            described.append({"name": name, "datatype": _COLUMN_DATATYPES.get(spec.type, "BYTES"), "shape": [-1, 1]})
        else:
            import numpy as np

            name = spec.name if spec.name is not None else codec.DEFAULT_INPUT_NAME
            described.append({"name": name, "datatype": codec.datatype_of(np.empty(0, dtype=spec.dtype), name), "shape": list(spec.shape)})
    return described


def describe_model(
    model_name: str, model: LoadedModel, signature: Signature | None = None, model_version: str | None = None,
) -> bytes:
    """The body of ``GET /v2/models/{name}``: inputs are the signature's (a column of a column-based
    signature is an input of shape ``[-1, 1]``, to be sent with ``content_type: "pd"``; a tensor spec
    keeps its dtype and shape), outputs ``[]`` (a signature's outputs are not read here)."""
    metadata: dict[str, Any] = {
        "name": model_name,
        "versions": [model_version] if model_version is not None else [],
        "platform": f"deployflow/{model.flavor}",
        "inputs": _input_metadata(signature),
        "outputs": [],
    }
    if signature is not None and signature.inputs and isinstance(signature.inputs[0], ColumnSpec):
        metadata["parameters"] = {"content_type": codec.PANDAS_CONTENT_TYPE}
    return dumps(metadata)


def signature_of(model_uri: str, flavor: str | None) -> Signature | None:
    """The signature of a local MLflow model directory (``None`` for other models, or none saved)."""
    from pathlib import Path

    from .mlflow_model import MLMODEL_FILE, read_model_dir

    if flavor not in (None, "mlflow"):
        return None
    path = Path(model_uri.removeprefix("file://"))
    if not (path / MLMODEL_FILE).is_file():
        return None
    return read_model_dir(path.resolve()).signature


@dataclass(frozen=True)
class InferContext:
    """What an inference request asks of the answer: its ``id``, the ``outputs`` named (``None``: all),
    and the request's ``params`` (its parameters other than ``content_type``; ``None`` when empty)."""

    request_id: str | None = None
    outputs: tuple[str, ...] | None = None
    params: dict[str, Any] | None = None


def decode_infer(body: bytes, header_length: int | str | bytes | None = None) -> tuple[Any, InferContext]:
    """``(model input, context)`` for an inference request body. ``header_length`` is the
    ``Inference-Header-Content-Length`` header's value when the request has one (binary tensor data
    follows the JSON header). Raises :class:`V2Error` (400) for a body that breaks the protocol."""
    binary: bytes | memoryview = b""
    if header_length is not None:
        try:
            length = int(header_length)
        except ValueError:
            raise V2Error(f"Inference-Header-Content-Length is not a number: {header_length!r}") from None
        if length < 0 or length > len(body):
            raise V2Error(f"Inference-Header-Content-Length {length} does not fit the {len(body)}-byte body")
        binary = memoryview(body)[length:]
        body = body[:length]
    try:
        request = loads(body)
    except ValueError as error:
        raise V2Error(f"The request body is not valid JSON: {error}") from error
    try:
        data, parameters = codec.decode_request(request, binary)
    except InvalidInputError as error:
        raise V2Error(error.message) from error
    outputs = request.get("outputs")
    names: tuple[str, ...] | None = None
    if outputs is not None:
        if not isinstance(outputs, list) or not all(isinstance(o, dict) and isinstance(o.get("name"), str) for o in outputs):
            raise V2Error(f"'outputs' must be a list of objects with a name, got {outputs!r}"[:500])
        names = tuple(o["name"] for o in outputs)
    for reserved in ("binary_data_output",):
        parameters.pop(reserved, None)
    request_id = request.get("id")
    context = InferContext(
        request_id=str(request_id) if request_id is not None else None, outputs=names, params=parameters or None,
    )
    return data, context


def encode_infer(prediction: Any, context: InferContext, model_name: str, model_version: str | None = None) -> bytes:
    """The answer body for a model's ``prediction`` (see :func:`deployflow.openinference.encode_response`).
    Raises :class:`V2Error`: 400 when the request named an output the prediction lacks, 500 when the
    prediction has no V2 form."""
    try:
        answer = codec.encode_response(
            prediction, model_name=model_name, model_version=model_version, request_id=context.request_id,
            outputs=context.outputs,
        )
    except InvalidInputError as error:
        if context.outputs is not None and "has no output" in error.message:
            raise V2Error(error.message, 400) from error
        raise V2Error(f"The model's output ({type(prediction).__name__}) has no V2 form: {error.message}", 500) from error
    try:
        return dumps(answer)
    except InvalidInputError as error:
        raise V2Error(f"The model's output ({type(prediction).__name__}) cannot be written as JSON: {error.message}", 500) from error


def infer(
    model: LoadedModel, body: bytes, model_name: str, model_version: str | None = None,
    header_length: int | str | bytes | None = None, on_prediction: Any = None,
) -> tuple[int, bytes]:
    """The whole job of one inference request: decode, call the model, encode. Returns
    ``(status, JSON body)``: 200 with the outputs; 400 for a request that breaks the protocol, that the
    model's signature refuses, or that the model raised on (``"<ExceptionType>: <message>"``); 500 for
    an answer that has no V2 form. ``on_prediction`` (optional) is called with what the model
    returned, before it is encoded (the server counts the rows it predicted)."""
    try:
        data, context = decode_infer(body, header_length)
    except V2Error as error:
        return error.status_code or 400, error.to_json()
    try:
        prediction = model.predict(data, context.params)
    except InvalidInputError as error:  # the signature's enforcement (SignatureError) and friends
        return error.status_code or 400, error_body(error.message)
    except Exception as error:
        _logger.error("the model raised %s: %s", type(error).__name__, error)
        return 400, error_body(f"{type(error).__name__}: {error}")
    if on_prediction is not None:
        on_prediction(prediction)
    try:
        return 200, encode_infer(prediction, context, model_name, model_version)
    except V2Error as error:
        return error.status_code or 500, error.to_json()
