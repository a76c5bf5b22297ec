"""The Open Inference Protocol (V2) tensor codec, shared by the ``v2`` target (client) and the local
target's V2 routes (server), so both sides read and write tensors by one set of rules.

A V2 tensor is ``{"name", "datatype", "shape", "data", "parameters"?}``: ``data`` is the values in
row-major order, flat (nested lists are read too), and holds exactly ``prod(shape)`` of them.

=========  ==========================  ==========================================================
datatype   numpy                       JSON values
=========  ==========================  ==========================================================
BOOL       ``bool``                    ``true`` / ``false``
UINT8-64   ``uint8`` ... ``uint64``    integers
INT8-64    ``int8`` ... ``int64``      integers
FP32, FP64 ``float32``, ``float64``    numbers (integers accepted); NaN and infinities as ``null``
BYTES      ``object`` (``str``)        strings; ``bytes`` values are sent as their UTF-8 text
=========  ==========================  ==========================================================

FP16 has no JSON form in the protocol (it needs the binary extension): encoding a float16 array or
reading an FP16 tensor raises :class:`~deployflow.errors.InvalidInputError`, as does every other value
that breaks these rules (a count of values that does not match the shape, a float in an INT tensor, an
unknown datatype), with a message naming the tensor.

Requests (:func:`encode_request`, :func:`decode_request`) follow MLServer's content types: a DataFrame
travels as one input per column, each of shape ``[N, 1]``, with the request parameter
``content_type: "pd"``; a text column's input also carries ``content_type: "str"``. Answers
(:func:`encode_response`, :func:`predictions_from_response`): an N-value prediction is sent as shape
``[N, 1]`` (what MLServer's numpy codec sends), and an output of shape ``[N, 1]`` is read back as its N
values, which is what ``mlflow models serve`` answers for the same model.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from .errors import InvalidInputError

if TYPE_CHECKING:  # pragma: no cover - typing only
    import numpy as np

__all__ = [
    "BINARY_SIZE_PARAMETER",
    "DATATYPES",
    "DEFAULT_INPUT_NAME",
    "DEFAULT_OUTPUT_NAME",
    "NUMPY_CONTENT_TYPE",
    "PANDAS_CONTENT_TYPE",
    "TEXT_CONTENT_TYPE",
    "datatype_of",
    "decode_binary_tensor",
    "decode_request",
    "decode_tensor",
    "dtype_of",
    "encode_request",
    "encode_response",
    "encode_tensor",
    "is_infer_request",
    "predictions_from_response",
]

#: V2 datatype -> numpy dtype name (``None``: no JSON form).
DATATYPES: dict[str, str | None] = {
    "BOOL": "bool",
    "UINT8": "uint8",
    "UINT16": "uint16",
    "UINT32": "uint32",
    "UINT64": "uint64",
    "INT8": "int8",
    "INT16": "int16",
    "INT32": "int32",
    "INT64": "int64",
    "FP16": None,
    "FP32": "float32",
    "FP64": "float64",
    "BYTES": "object",
}
_BY_DTYPE = {dtype: datatype for datatype, dtype in DATATYPES.items() if dtype not in (None, "object")}

PANDAS_CONTENT_TYPE = "pd"
NUMPY_CONTENT_TYPE = "np"
TEXT_CONTENT_TYPE = "str"
#: The name a lone array is sent under (MLServer's own default input name).
DEFAULT_INPUT_NAME = "input-0"
#: The output name of a model's lone answer (the method called, as MLServer's sklearn runtime names it).
DEFAULT_OUTPUT_NAME = "predict"


def _numpy() -> Any:
    from ._extras import require

    return require("numpy", None, "The V2 tensor codec (arrays and DataFrames)", package="numpy")


def _flatten(data: list[Any]) -> list[Any]:
    """Row-major values of nested lists (V2 allows ``data`` nested as well as flat)."""
    if not data or not isinstance(data[0], list):
        return data
    flat: list[Any] = []
    for item in data:
        flat.extend(_flatten(item) if isinstance(item, list) else [item])
    return flat


def _nest(flat: list[Any], shape: Sequence[int]) -> list[Any]:
    """``flat`` (row-major) as nested lists of ``shape``."""
    if len(shape) <= 1:
        return flat
    step = math.prod(shape[1:])
    return [_nest(flat[start : start + step], shape[1:]) for start in range(0, len(flat), step)] if step else [[] for _ in range(shape[0])]


def datatype_of(array: np.ndarray, name: str = "tensor") -> str:
    """The V2 datatype for ``array``'s dtype; raises InvalidInputError when it has none."""
    dtype = array.dtype
    if dtype.kind in "biuf":
        if dtype.kind == "f" and dtype.itemsize == 2:
            raise InvalidInputError(
                f"{name}: float16 (FP16) has no JSON form in the V2 protocol; cast it to float32"
            )
        found = _BY_DTYPE.get(dtype.name)
        if found is not None:
            return found
    if dtype.kind in "OUS":
        return "BYTES"
    raise InvalidInputError(
        f"{name}: values of dtype {dtype} have no V2 datatype; send numbers, booleans or text "
        "(convert datetimes to text or numbers first)"
    )


def dtype_of(datatype: Any, name: str = "tensor") -> str:
    """The numpy dtype name for V2 ``datatype``; raises InvalidInputError for FP16 or an unknown one."""
    if not isinstance(datatype, str) or datatype not in DATATYPES:
        raise InvalidInputError(f"{name}: unknown datatype {datatype!r}; V2 datatypes: {', '.join(DATATYPES)}")
    dtype = DATATYPES[datatype]
    if dtype is None:
        raise InvalidInputError(f"{name}: FP16 has no JSON form in the V2 protocol (it needs the binary extension)")
    return dtype


def _text_values(flat: np.ndarray, name: str) -> list[str]:
    values: list[str] = []
    for value in flat.tolist():
        if isinstance(value, str):
            values.append(value)
        elif isinstance(value, (bytes, bytearray)):
            try:
                values.append(bytes(value).decode("utf-8"))
            except UnicodeDecodeError as error:
                raise InvalidInputError(f"{name}: BYTES values must be UTF-8 text in JSON ({error})") from error
        else:
            raise InvalidInputError(
                f"{name}: a BYTES tensor holds text only, found a {type(value).__name__} ({value!r})"
            )
    return values


def encode_tensor(name: str, values: Any, parameters: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The V2 tensor for ``values`` (an array or anything ``numpy.asarray`` takes) under ``name``.

    ``data`` holds a flat numpy array (numbers, booleans) or a list of strings; the project's JSON codec
    (:func:`deployflow.jsoncodec.dumps`) writes both.
    """
    np = _numpy()
    array = np.asarray(values)
    datatype = datatype_of(array, name)
    flat = array.reshape(-1)
    data: Any = (
        _text_values(flat, name) if datatype == "BYTES"
        else np.ascontiguousarray(flat, dtype=flat.dtype.newbyteorder("="))
    )
    tensor: dict[str, Any] = {"name": name, "shape": list(array.shape), "datatype": datatype, "data": data}
    if parameters:
        tensor["parameters"] = dict(parameters)
    return tensor


def _shape_of(tensor: Mapping[str, Any], name: str) -> list[int]:
    shape = tensor.get("shape")
    if not isinstance(shape, list) or not all(
        isinstance(size, int) and not isinstance(size, bool) and size >= 0 for size in shape
    ):
        raise InvalidInputError(f"{name}: 'shape' must be a list of non-negative integers, got {shape!r}")
    return shape


def decode_tensor(tensor: Any, what: str = "input") -> np.ndarray:
    """The numpy array a V2 tensor holds, of its datatype and shape; raises InvalidInputError when the
    tensor breaks the protocol's rules (the message names it)."""
    np = _numpy()
    if not isinstance(tensor, Mapping):
        raise InvalidInputError(f"each {what} must be an object with name, shape, datatype and data, got {tensor!r}")
    name = tensor.get("name")
    if not isinstance(name, str) or not name:
        raise InvalidInputError(f"each {what} needs a 'name' (a non-empty string), got {name!r}")
    label = f"{what} {name!r}"
    dtype = dtype_of(tensor.get("datatype"), label)
    shape = _shape_of(tensor, label)
    if "data" not in tensor:
        raise InvalidInputError(f"{label} has no 'data'")
    data = tensor["data"]
    if not isinstance(data, list):
        data = [data]
    expected = math.prod(shape)
    try:
        raw = np.asarray(data, dtype=object if dtype == "object" else None)
    except ValueError as error:  # ragged nesting
        raise InvalidInputError(f"{label}: 'data' is not a regular array ({error})") from error
    if raw.size != expected:
        raise InvalidInputError(f"{label}: shape {shape} needs {expected} values, 'data' holds {raw.size}")
    flat = raw.reshape(-1)
    datatype = tensor["datatype"]
    if dtype == "object":
        for value in flat.tolist():
            if not isinstance(value, str):
                raise InvalidInputError(f"{label}: a BYTES tensor holds strings, found {value!r}")
        return flat.reshape(shape)
    kind = raw.dtype.kind
    if expected and datatype == "BOOL" and kind != "b":
        raise InvalidInputError(f"{label}: a BOOL tensor holds true/false, got values of type {raw.dtype}")
    if expected and datatype.startswith(("INT", "UINT")) and kind not in "iu":
        raise InvalidInputError(f"{label}: a {datatype} tensor holds integers, got values of type {raw.dtype}")
    if expected and datatype.startswith("FP") and kind not in "iuf":
        if kind == "O" and all(value is None or isinstance(value, (int, float)) and not isinstance(value, bool) for value in flat.tolist()):
            pass  # null stands for NaN
        else:
            raise InvalidInputError(f"{label}: a {datatype} tensor holds numbers, got values of type {raw.dtype}")
    try:
        converted = flat.astype(dtype) if kind != "O" else np.array(
            [math.nan if value is None else value for value in flat.tolist()], dtype=dtype
        )
    except (OverflowError, ValueError) as error:
        raise InvalidInputError(f"{label}: a value does not fit {datatype} ({error})") from error
    if kind in "iu" and converted.size and not np.array_equal(converted, flat):
        raise InvalidInputError(f"{label}: a value does not fit {datatype}")
    return converted.reshape(shape)


#: The tensor parameter of the binary tensor data extension (Triton, tritonclient's default): the
#: tensor's values are not in ``data`` but in this many bytes after the JSON header.
BINARY_SIZE_PARAMETER = "binary_data_size"


def decode_binary_tensor(tensor: Mapping[str, Any], raw: bytes | memoryview, what: str = "input") -> np.ndarray:
    """The array of a tensor sent with the binary tensor data extension: ``raw`` holds its values,
    little-endian, row-major; BYTES elements are each a 4-byte little-endian length and that many bytes
    (decoded as UTF-8 text when they are text, kept as bytes otherwise). FP16 is read here (the binary
    form has one)."""
    np = _numpy()
    name = tensor.get("name")
    if not isinstance(name, str) or not name:
        raise InvalidInputError(f"each {what} needs a 'name' (a non-empty string), got {name!r}")
    label = f"{what} {name!r}"
    shape = _shape_of(tensor, label)
    datatype = tensor.get("datatype")
    count = math.prod(shape)
    if datatype == "BYTES":
        values: list[Any] = []
        view = memoryview(raw)
        offset = 0
        while offset < len(view):
            if offset + 4 > len(view):
                raise InvalidInputError(f"{label}: a BYTES element's length is cut short")
            size = int.from_bytes(view[offset : offset + 4], "little")
            offset += 4
            if offset + size > len(view):
                raise InvalidInputError(f"{label}: a BYTES element is cut short")
            item = bytes(view[offset : offset + size])
            offset += size
            try:
                values.append(item.decode("utf-8"))
            except UnicodeDecodeError:
                values.append(item)
        if len(values) != count:
            raise InvalidInputError(f"{label}: shape {shape} needs {count} values, the binary data holds {len(values)}")
        array = np.empty(count, dtype=object)
        array[:] = values
        return array.reshape(shape)
    dtype = "float16" if datatype == "FP16" else dtype_of(datatype, label)
    little = np.dtype(dtype).newbyteorder("<")
    if len(raw) != count * little.itemsize:
        raise InvalidInputError(
            f"{label}: shape {shape} of {datatype} needs {count * little.itemsize} bytes, the binary data holds {len(raw)}"
        )
    return np.frombuffer(raw, dtype=little).astype(dtype).reshape(shape)


# ---------------------------------------------------------------------------------------------------
# Requests


def is_infer_request(value: Any) -> bool:
    """Whether ``value`` is already a V2 inference request (a dict whose ``inputs`` is a list of tensors)."""
    return (
        isinstance(value, Mapping)
        and isinstance(value.get("inputs"), list)
        and all(isinstance(item, Mapping) and "datatype" in item for item in value["inputs"])
    )


def _is_dataframe(value: Any) -> bool:
    import sys

    pandas = sys.modules.get("pandas")
    return pandas is not None and isinstance(value, pandas.DataFrame)


def _frame_inputs(frame: Any) -> list[dict[str, Any]]:
    np = _numpy()
    rows = len(frame)
    names = [str(column) for column in frame.columns]
    if len(set(names)) != len(names):
        raise InvalidInputError(f"a DataFrame sent over V2 needs distinct column names, got {names}")
    inputs = []
    for name, column in zip(names, frame.columns):
        values = frame[column].to_numpy()
        if values.dtype.kind == "O" and values.size and not all(isinstance(v, (str, bytes)) for v in values.tolist()):
            numeric = [v for v in values.tolist() if v is not None]
            if numeric and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in numeric):
                values = np.array([math.nan if v is None else v for v in values.tolist()], dtype="float64")
        tensor = encode_tensor(name, values.reshape(rows, 1), None)
        if tensor["datatype"] == "BYTES":
            tensor["parameters"] = {"content_type": TEXT_CONTENT_TYPE}
        inputs.append(tensor)
    return inputs


def encode_request(
    inputs: Any,
    *,
    parameters: Mapping[str, Any] | None = None,
    outputs: Sequence[str] | None = None,
    request_id: str | None = None,
) -> dict[str, Any]:
    """A V2 inference request for ``inputs``:

    * a pandas DataFrame: one input per column of shape ``[N, 1]``, request ``content_type: "pd"``;
    * a numpy array (or a list, or anything ``numpy.asarray`` takes): one input, ``"input-0"``, with
      the array's datatype and shape, request ``content_type: "np"``;
    * a dict of named arrays: one input per key, in the dict's order;
    * a V2 request (a dict with ``inputs`` holding tensors): returned as is, ``parameters``, ``outputs``
      and ``request_id`` added when given.

    ``parameters`` become the request's parameters (beside ``content_type``); ``outputs`` names the
    outputs to return; ``request_id`` is the request's ``id``.
    """
    if is_infer_request(inputs):
        request = dict(inputs)
        request_parameters = dict(request.get("parameters") or {})
    elif isinstance(inputs, Mapping):
        if not inputs:
            raise InvalidInputError("a dict of inputs sent over V2 needs at least one named array")
        request = {"inputs": [encode_tensor(str(name), value) for name, value in inputs.items()]}
        request_parameters = {}
    elif _is_dataframe(inputs):
        if len(inputs.columns) == 0:
            raise InvalidInputError("a DataFrame sent over V2 needs at least one column")
        request = {"inputs": _frame_inputs(inputs)}
        request_parameters = {"content_type": PANDAS_CONTENT_TYPE}
    elif inputs is None or isinstance(inputs, (str, bytes, bytearray)):
        raise InvalidInputError(
            "V2 inputs must be a DataFrame, an array, a dict of named arrays or a V2 request dict "
            f"({{'inputs': [...]}}), got {type(inputs).__name__}"
        )
    else:
        request = {"inputs": [encode_tensor(DEFAULT_INPUT_NAME, inputs)]}
        request_parameters = {"content_type": NUMPY_CONTENT_TYPE}
    if parameters:
        request_parameters.update(parameters)
    if request_parameters:
        request["parameters"] = request_parameters
    if outputs is not None:
        request["outputs"] = [{"name": str(name)} for name in outputs]
    if request_id is not None:
        request["id"] = str(request_id)
    return request


def decode_request(request: Any, binary: bytes | memoryview = b"") -> tuple[Any, dict[str, Any]]:
    """``(model input, parameters)`` for a V2 inference request (a parsed JSON object).

    The model input is a DataFrame (columns named after the inputs, each ``[N]`` or ``[N, 1]``) when the
    request's ``content_type`` is ``"pd"``; the array of a lone input otherwise; a dict of arrays by
    name for several inputs. ``parameters`` are the request's own, ``content_type`` removed.
    ``binary`` is what followed the JSON header with the binary tensor data extension: each input with
    a ``binary_data_size`` parameter takes that many bytes of it, in order, and every byte must be used.
    """
    if not isinstance(request, Mapping):
        raise InvalidInputError(f"a V2 inference request is a JSON object, got {type(request).__name__}")
    tensors = request.get("inputs")
    if not isinstance(tensors, list) or not tensors:
        raise InvalidInputError("a V2 inference request needs 'inputs', a non-empty list of tensors")
    parameters = request.get("parameters") or {}
    if not isinstance(parameters, Mapping):
        raise InvalidInputError(f"'parameters' must be an object, got {parameters!r}")
    parameters = dict(parameters)
    content_type = parameters.pop("content_type", None)
    arrays: dict[str, Any] = {}
    view = memoryview(binary)
    offset = 0
    for tensor in tensors:
        size = (tensor.get("parameters") or {}).get(BINARY_SIZE_PARAMETER) if isinstance(tensor, Mapping) else None
        if size is not None:
            if isinstance(size, bool) or not isinstance(size, int) or size < 0 or offset + size > len(view):
                raise InvalidInputError(
                    f"input {tensor.get('name')!r}: binary_data_size {size!r} does not fit the {len(view) - offset} "
                    "bytes of binary data left"
                )
            array = decode_binary_tensor(tensor, view[offset : offset + size])
            offset += size
        else:
            array = decode_tensor(tensor)
        if tensor["name"] in arrays:
            raise InvalidInputError(f"input {tensor['name']!r} appears twice")
        arrays[tensor["name"]] = array
    if offset != len(view):
        raise InvalidInputError(f"{len(view) - offset} bytes of binary data follow the inputs that no input claims")
    if content_type == PANDAS_CONTENT_TYPE:
        return _frame_from(arrays), parameters
    if content_type not in (None, NUMPY_CONTENT_TYPE):
        raise InvalidInputError(f"unknown request content_type {content_type!r}; this server reads 'pd' and 'np'")
    if len(arrays) == 1:
        return next(iter(arrays.values())), parameters
    return arrays, parameters


def _frame_from(arrays: Mapping[str, Any]) -> Any:
    import pandas as pd

    columns = {}
    rows = None
    for name, array in arrays.items():
        if array.ndim == 2 and array.shape[1] == 1:
            array = array[:, 0]
        if array.ndim != 1:
            raise InvalidInputError(
                f"input {name!r}: a 'pd' request holds one column per input, shape [N] or [N, 1], "
                f"got {list(array.shape)}"
            )
        if rows is not None and len(array) != rows:
            raise InvalidInputError(f"input {name!r} has {len(array)} rows where the others have {rows}")
        rows = len(array)
        columns[name] = array
    return pd.DataFrame(columns)


# ---------------------------------------------------------------------------------------------------
# Answers


def _named_outputs(prediction: Any) -> list[tuple[str, Any]]:
    np = _numpy()
    if _is_dataframe(prediction):
        return [(str(column), prediction[column].to_numpy()) for column in prediction.columns]
    if isinstance(prediction, Mapping):
        return [(str(name), np.asarray(value)) for name, value in prediction.items()]
    import sys

    pandas = sys.modules.get("pandas")
    if pandas is not None and isinstance(prediction, pandas.Series):
        prediction = prediction.to_numpy()
    return [(DEFAULT_OUTPUT_NAME, np.asarray(prediction))]


def encode_response(
    prediction: Any,
    *,
    model_name: str,
    model_version: str | None = None,
    request_id: str | None = None,
    outputs: Sequence[str] | None = None,
) -> dict[str, Any]:
    """The V2 inference answer for a model's ``prediction``.

    An array (or list, or Series) is one output, ``"predict"``; a DataFrame or a dict gives one output
    per column or key. A 1-D output of N values has shape ``[N, 1]``; a scalar has shape ``[1]``.
    ``outputs`` keeps only the outputs named (in that order); naming one the prediction lacks raises
    InvalidInputError.
    """
    named = _named_outputs(prediction)
    if outputs is not None:
        available = dict(named)
        missing = [name for name in outputs if name not in available]
        if missing:
            raise InvalidInputError(
                f"the model has no output {', '.join(map(repr, missing))}; its outputs: {', '.join(available)}"
            )
        named = [(name, available[name]) for name in outputs]
    tensors = []
    for name, array in named:
        if array.ndim == 0:
            array = array.reshape(1)
        elif array.ndim == 1:
            array = array.reshape(len(array), 1)
        if array.dtype.kind == "O" and array.size and all(
            isinstance(value, (int, float)) and not isinstance(value, bool) for value in array.reshape(-1).tolist()
        ):
            array = array.astype("float64")
        tensors.append(encode_tensor(name, array))
    answer: dict[str, Any] = {"model_name": model_name, "outputs": tensors}
    if model_version is not None:
        answer["model_version"] = model_version
    if request_id is not None:
        answer["id"] = request_id
    return answer


def _output_values(tensor: Any) -> tuple[str, Any, dict[str, Any]]:
    """``(name, values, description)`` of one output: values as JSON-native lists, reshaped."""
    if not isinstance(tensor, Mapping) or not isinstance(tensor.get("name"), str):
        raise InvalidInputError(f"each V2 output must be an object with a name, got {tensor!r}")
    name = tensor["name"]
    label = f"output {name!r}"
    shape = _shape_of(tensor, label)
    data = tensor.get("data")
    if data is None:
        raise InvalidInputError(f"{label} has no 'data' (binary outputs are not read by this client)")
    description = {"name": name, "datatype": tensor.get("datatype"), "shape": shape}
    if tensor.get("parameters"):
        description["parameters"] = tensor["parameters"]
    flat = _flatten(data if isinstance(data, list) else [data])
    if len(flat) != math.prod(shape):
        raise InvalidInputError(f"{label}: shape {shape} needs {math.prod(shape)} values, 'data' holds {len(flat)}")
    if len(shape) <= 1 or (len(shape) == 2 and shape[1] == 1):
        return name, flat, description
    return name, _nest(flat, shape), description


def predictions_from_response(answer: Any) -> dict[str, Any]:
    """The fields of a :class:`~deployflow.PredictionsResponse` for a V2 inference answer.

    ``predictions`` is the lone output's values, or ``{name: values}`` for several outputs; values
    are reshaped to the output's shape, except that ``[N]`` and ``[N, 1]`` both give N values.
    ``outputs`` describes each output (name, datatype, shape, parameters); ``model_name``,
    ``model_version``, ``id`` and ``parameters`` are copied when the answer has them.
    """
    if not isinstance(answer, Mapping) or not isinstance(answer.get("outputs"), list):
        raise InvalidInputError(f"a V2 inference answer is an object with 'outputs' (a list), got {answer!r}"[:500])
    values: dict[str, Any] = {}
    described = []
    for tensor in answer["outputs"]:
        name, output, description = _output_values(tensor)
        values[name] = output
        described.append(description)
    fields: dict[str, Any] = {
        "predictions": next(iter(values.values())) if len(values) == 1 else values,
        "outputs": described,
    }
    for key in ("model_name", "model_version", "id", "parameters"):
        if answer.get(key) not in (None, "", {}):
            fields[key] = answer[key]
    return fields
