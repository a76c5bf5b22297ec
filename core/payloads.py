"""Codecs between Python objects and the MLflow scoring protocol.

The protocol (what ``mlflow models serve`` speaks on ``POST /invocations``) carries either CSV
(``text/csv``) or a JSON object (``application/json``) with exactly one input key:

* ``dataframe_split``: ``{"columns": [...], "data": [[...], ...], "index": [...]}`` (pandas split orient);
* ``dataframe_records``: ``[{"column": value, ...}, ...]``;
* ``instances`` / ``inputs``: tensors (nested lists), or a dict of named tensors;

plus an optional ``params`` object handed to the model. The answer is ``{"predictions": ...}``.

Client side: :func:`encode_request` and :func:`decode_response`. Server side: :func:`check_content_type`,
:func:`decode_request` and :func:`encode_response`. :func:`dataframe_to_split` and
:func:`split_to_dataframe` convert a DataFrame to the split object and back with dtypes intact.

Choices made here, beyond what MLflow specifies:

* A DataFrame is sent as ``dataframe_split``. Its index is sent only when it carries information, that
  is when it is not the default ``0..n-1`` range; the server rebuilds that default range anyway.
* A Series is sent as a one-column DataFrame named after the Series (``0`` when unnamed), so its dtype
  handling (datetimes, categories, nulls) is the DataFrame's.
* Datetimes become ISO-8601 strings without losing precision (``2024-01-01T00:00:00``,
  ``...T00:00:00.000000001``); tz-aware values keep their offset. NaN, NaT and pandas NA become ``null``.
  Categoricals are sent as their values; bytes as base64 text (as MLflow expects for binary columns).
* Tensors decoded from ``instances``/``inputs`` become numpy arrays when they are (nested) lists of
  numbers or booleans; lists holding strings, nulls, objects or ragged rows stay Python lists.
* ``NaN``, ``Infinity`` and ``-Infinity`` tokens are read in requests and written in answers, as
  MLflow's server (Python's ``json``) reads and writes them; requests are sent with ``null`` instead.
* A ``str``/``bytes`` request is a pre-encoded body: a JSON object is sent as JSON, JSON that is not an
  object (a bare list, for instance) is refused because no server accepts it, and anything else is CSV.

What the server hands the model for ``dataframe_split``, ``dataframe_records`` and CSV is the frame
pandas builds from the values (as MLflow's server does for a model without a signature), with one
change: an object column that pandas leaves untyped only because of nulls gets a type, the nullable
``boolean`` dtype for booleans and nulls, float64 NaN for nulls alone (a one-row request with a missing
number). JSON carries no dtypes, so from a caller's DataFrame:

==========================================  =============================================================
caller's column                             what the model receives
==========================================  =============================================================
int, float (NaN included), bool             the same dtype
nullable ``Int64`` / ``boolean``            int64 / bool, or float64 NaN / ``boolean`` with a missing value
strings                                     pandas' string dtype (object on pandas 2)
categorical                                 its values, as strings or numbers: not ``category``
datetime                                    ISO-8601 strings: not ``datetime64``
==========================================  =============================================================

A model that needs ``category`` or ``datetime64`` columns must convert them itself, and the server's
400 for a frame with text columns says so.

pandas and numpy are imported inside the functions that need them, never when this module loads.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import lru_cache
from typing import TYPE_CHECKING, Any, NamedTuple


from .arrow_chunks import CONTENT_TYPE_ARROW, arrow_readable, decode_frame
from .errors import InvalidInputError, RemoteError
from .jsoncodec import (
    _NATIVE_FLOAT_SIZES,
    _NATIVE_NUMERIC_KINDS,
    _array_to_list,
    _frame_dtypes,
    _frame_to_records,
    _is_dataframe,
    _is_ndarray,
    _is_series,
    _split_parts,
    dumps,
    loads,
)
from .predictions import PredictionsResponse

#: The project's one JSON encoder (:func:`deployflow.jsoncodec.dumps`), under its older name.
dumps_json = dumps

if TYPE_CHECKING:  # pragma: no cover - typing only
    import numpy as np
    import pandas as pd

__all__ = [
    "CONTENT_TYPE_JSON",
    "CONTENT_TYPE_CSV",
    "INPUT_KEYS",
    "PARAMS_KEY",
    "DecodedRequest",
    "UnsupportedMediaTypeError",
    "encode_request",
    "decode_request",
    "check_content_type",
    "encode_response",
    "decode_response",
    "dataframe_to_split",
    "split_to_dataframe",
    "dumps_json",
]

CONTENT_TYPE_JSON = "application/json"
CONTENT_TYPE_CSV = "text/csv"
CONTENT_TYPES = (CONTENT_TYPE_JSON, CONTENT_TYPE_CSV)

DATAFRAME_SPLIT = "dataframe_split"
DATAFRAME_RECORDS = "dataframe_records"
INSTANCES = "instances"
INPUTS = "inputs"
#: The keys of which a JSON request must hold exactly one.
INPUT_KEYS = (DATAFRAME_SPLIT, DATAFRAME_RECORDS, INSTANCES, INPUTS)
_INPUT_KEY_SET = frozenset(INPUT_KEYS)
PARAMS_KEY = "params"

_EXCERPT_CHARS = 200
_REQUIRED_SHAPE = (
    "The request body must be a JSON object with exactly one of the keys "
    + ", ".join(repr(key) for key in INPUT_KEYS)
    + " (and optionally 'params')"
)


class UnsupportedMediaTypeError(InvalidInputError):
    """The request's Content-Type is not one the scoring protocol accepts (HTTP 415).

    MLflow's server answers these with a plain-text body rather than a JSON error object.
    """

    default_error_code = "UNSUPPORTED_MEDIA_TYPE"

    def __init__(self, message: str, **kwargs: Any) -> None:
        kwargs.setdefault("status_code", 415)
        super().__init__(message, **kwargs)


class DecodedRequest(NamedTuple):
    """What :func:`decode_request` found in a scoring request."""

    #: A DataFrame (``dataframe_split``, ``dataframe_records``, CSV), or for ``instances``/``inputs`` a
    #: numpy array, a dict of arrays, or plain Python values when they are not numeric tensors.
    data: Any
    #: The ``params`` object, or ``None`` when the request has none.
    params: dict[str, Any] | None
    #: Which input form the request used: one of :data:`INPUT_KEYS`, or ``"csv"``.
    input_key: str


# --------------------------------------------------------------------------------------------------
# Helpers


def _excerpt(body: bytes | str | bytearray | memoryview) -> str:
    if isinstance(body, (bytes, bytearray, memoryview)):
        text = bytes(body[: _EXCERPT_CHARS * 4]).decode("utf-8", "replace")
        total = len(body)
    else:
        text, total = body, len(body)
    if total > _EXCERPT_CHARS or len(text) > _EXCERPT_CHARS:
        return text[:_EXCERPT_CHARS] + f"... ({total} in all)"
    return text


def _bad_request(message: str, body: Any = None) -> InvalidInputError:
    return InvalidInputError(
        message,
        error_code="BAD_REQUEST",
        status_code=400,
        body=_excerpt(body) if body is not None else None,
    )


# --------------------------------------------------------------------------------------------------
# DataFrame <-> split object


def dataframe_to_split(frame: pd.DataFrame) -> dict[str, Any]:
    """Return ``frame`` as a pandas split-orient object holding plain JSON values only.

    The result has ``columns`` and ``data`` (and ``index`` when the index is not the default range),
    with datetimes as ISO-8601 strings and NaN/NaT/NA as ``None``: exactly what :func:`encode_request`
    puts on the wire, so ``json.dumps`` accepts it. :func:`split_to_dataframe` reverses it.
    """
    if not _is_dataframe(frame):
        raise InvalidInputError(f"dataframe_to_split expects a pandas DataFrame, got {type(frame).__name__}")
    return loads(dumps(_split_parts(frame)))


def split_to_dataframe(obj: Mapping[str, Any], dtypes: Mapping[Any, Any] | None = None) -> pd.DataFrame:
    """Build a DataFrame from a split-orient object (``columns``, ``data``, optional ``index``).

    ``dtypes`` (for example ``original.dtypes`` or a ``{column: dtype}`` dict) casts the named columns
    back to their original types: ISO strings to datetimes (tz-aware too), ``int64``, ``bool``,
    categoricals, nullable ``Int64``, and so on. Columns it does not name keep the dtype the scoring
    server gives them (see the module docstring).
    Raises :class:`~deployflow.errors.InvalidInputError` (``BAD_REQUEST``) for a malformed object or a
    column that cannot take its dtype.
    """
    frame = _split_to_frame(obj)
    if dtypes is not None:
        frame = _apply_dtypes(frame, dtypes)
    return frame


def _split_to_frame(obj: Any) -> pd.DataFrame:
    if not isinstance(obj, dict):
        received = "a list" if isinstance(obj, list) else f"type {type(obj).__name__}"
        raise _bad_request(
            f"'{DATAFRAME_SPLIT}' must be a JSON object (pandas split orient); got {received}."
        )
    if "data" not in obj or not obj.keys() <= {"columns", "data", "index"}:
        raise _bad_request(
            f"'{DATAFRAME_SPLIT}' must have a 'data' field and may have 'columns' and 'index'; "
            f"got the fields {sorted(map(str, obj))}."
        )
    import pandas as pd

    data, columns, index = obj["data"], obj.get("columns"), obj.get("index")
    try:
        columns = _column_index(columns)
        array = _uniform_numeric_rows(data)
        if array is not None and (columns is None or len(columns) == array.shape[1]):
            return pd.DataFrame(array, columns=columns, index=index, copy=False)
        frame = pd.DataFrame(data=data, columns=columns, index=index)
    except Exception as error:  # pandas raises several types for a shape it cannot use
        raise _bad_request(
            f"'{DATAFRAME_SPLIT}' is not a valid DataFrame in split orient: {error}"
        ) from error
    return _type_null_columns(frame)


def _column_index(columns: Any) -> Any:
    """A shared ``pandas.Index`` for a list of column names.

    Building an Index from strings costs more than building the numeric frame itself (pandas infers
    the string dtype each time), and a server sees the same columns in request after request. An Index
    is immutable, so handing the same one to many frames is safe.
    """
    if not isinstance(columns, list):
        return columns
    try:
        return _cached_column_index(tuple(columns))
    except TypeError:  # unhashable names: let pandas judge them
        return columns


@lru_cache(maxsize=256)
def _cached_column_index(columns: tuple[Any, ...]) -> pd.Index:
    import pandas as pd

    return pd.Index(list(columns))


def _uniform_numeric_rows(data: Any) -> np.ndarray | None:
    """A 2-D array when ``data`` is a rectangular list of rows whose values are all ints, all floats or
    all booleans; None otherwise.

    In those cases pandas would infer that same dtype for every column, so building the frame from one
    array gives the same result several times faster. Any other mix is left to pandas, which infers
    per column (an int column beside a float column stays int).
    """
    if not isinstance(data, list) or not data or not isinstance(data[0], list) or not data[0]:
        return None
    from itertools import chain

    try:
        types = set(map(type, chain.from_iterable(data)))
    except TypeError:  # a row that is not iterable
        return None
    if len(types) != 1:
        return None
    kind = types.pop()
    if kind is float:
        dtype = "float64"
    elif kind is int:
        dtype = "int64"
    elif kind is bool:
        dtype = "bool"
    else:
        return None
    import numpy as np

    try:
        array = np.array(data, dtype=dtype)
    except (ValueError, OverflowError, TypeError):  # ragged rows, ints beyond int64
        return None
    return array if array.ndim == 2 else None


def _type_null_columns(frame: pd.DataFrame) -> pd.DataFrame:
    """Give a type to the object columns pandas infers only because of nulls (see the module docstring):
    booleans and nulls become the nullable ``boolean`` dtype, nulls alone become float64 NaN."""
    if not len(frame):
        return frame
    from pandas.api.types import infer_dtype

    for position, dtype in enumerate(_frame_dtypes(frame)):
        if dtype != object:
            continue
        column = frame.iloc[:, position]
        kind = infer_dtype(column, skipna=True)
        if kind == "boolean":
            frame.isetitem(position, column.astype("boolean"))
        elif kind == "empty":
            frame.isetitem(position, column.astype("float64"))
    return frame


def _apply_dtypes(frame: pd.DataFrame, dtypes: Mapping[Any, Any]) -> pd.DataFrame:
    import numpy as np
    import pandas as pd

    for name, wanted in dict(dtypes).items():
        if name not in frame.columns:
            continue
        column = frame[name]
        try:
            target = pd.api.types.pandas_dtype(wanted)
            if column.dtype == target:
                continue
            if isinstance(target, pd.DatetimeTZDtype):
                converted = pd.to_datetime(column, format="ISO8601", utc=True).dt.tz_convert(target.tz)
                converted = converted.astype(target)
            elif isinstance(target, np.dtype) and target.kind == "M":
                parsed = pd.to_datetime(column, format="ISO8601")
                if isinstance(parsed.dtype, pd.DatetimeTZDtype):
                    parsed = parsed.dt.tz_convert(None)
                converted = parsed.astype(target)
            elif isinstance(target, np.dtype) and target.kind == "m":
                converted = pd.to_timedelta(column).astype(target)
            else:
                if isinstance(target, np.dtype) and target.kind == "b" and column.isna().any():
                    # astype(bool) would quietly turn nulls into False
                    raise ValueError("it holds nulls; use the nullable 'boolean' dtype")
                converted = column.astype(target)
        except Exception as error:
            raise _bad_request(f"Column {name!r} cannot be converted to {wanted}: {error}") from error
        frame[name] = converted
    return frame


# --------------------------------------------------------------------------------------------------
# Client side: request encoding, response decoding


def encode_request(inputs: Any, params: Mapping[str, Any] | None = None) -> tuple[bytes, str]:
    """Encode model inputs as an ``/invocations`` request body; return ``(body, content_type)``.

    ==============================================  =================================================
    ``inputs``                                      body
    ==============================================  =================================================
    pandas DataFrame                                ``{"dataframe_split": {"columns", "data"[, "index"]}}``
    pandas Series                                   as a one-column DataFrame named after the Series
    numpy array, list, tuple                        ``{"inputs": [...]}``
    dict holding one of the four input keys         the dict as it is (``params`` merged in)
    any other dict (named tensors)                  ``{"inputs": {...}}``
    ``str`` / ``bytes`` holding a JSON object       that JSON (``params`` merged in)
    other ``str`` / ``bytes``                       CSV, ``text/csv`` (``params`` not allowed)
    ==============================================  =================================================

    ``params`` becomes the top-level ``params`` object. Anything else raises
    :class:`~deployflow.errors.InvalidInputError`.

    Example::

        >>> encode_request([[1, 2]], params={"k": 3})
        (b'{"inputs":[[1,2]],"params":{"k":3}}', 'application/json')
    """
    if params is not None and not isinstance(params, Mapping):
        raise InvalidInputError(f"params must be a dict, got {type(params).__name__}")

    if isinstance(inputs, (str, bytes, bytearray, memoryview)):
        return _encode_preencoded(inputs, params)

    if _is_dataframe(inputs):
        payload: dict[str, Any] = {DATAFRAME_SPLIT: _split_parts(inputs)}
    elif _is_series(inputs):
        payload = {DATAFRAME_SPLIT: _split_parts(inputs.to_frame())}
    elif _is_ndarray(inputs):
        payload = {INPUTS: _native_or_list(inputs)}
    elif isinstance(inputs, (list, tuple)):
        payload = {INPUTS: inputs}
    elif isinstance(inputs, Mapping):
        payload = _encode_mapping(inputs)
    elif type(inputs).__module__.startswith("scipy.sparse"):
        payload = {INPUTS: inputs.toarray()}
    else:
        raise InvalidInputError(
            f"Cannot send inputs of type {type(inputs).__name__}: pass a pandas DataFrame or Series, a "
            "numpy array, a list, a dict of named tensors, a dict with one of the keys "
            + ", ".join(repr(key) for key in INPUT_KEYS)
            + ", or a pre-encoded JSON/CSV string"
        )
    if params is not None:
        payload[PARAMS_KEY] = _merged_params(payload.get(PARAMS_KEY), params)
    return dumps_json(payload), CONTENT_TYPE_JSON


def _native_or_list(array: np.ndarray) -> Any:
    # orjson writes C-contiguous numeric arrays itself; anything else goes through Python lists.
    if array.dtype.kind in _NATIVE_NUMERIC_KINDS and not (
        array.dtype.kind == "f" and array.dtype.itemsize not in _NATIVE_FLOAT_SIZES
    ):
        import numpy as np

        return np.ascontiguousarray(array)
    return _array_to_list(array)


def _encode_mapping(inputs: Mapping[Any, Any]) -> dict[str, Any]:
    present = [key for key in INPUT_KEYS if key in inputs]
    if len(present) > 1:
        raise InvalidInputError(
            f"The inputs dict holds several of the protocol's input keys ({', '.join(present)}); "
            "a request carries exactly one"
        )
    if present:
        payload = dict(inputs)
        if payload.get(PARAMS_KEY) is not None and not isinstance(payload[PARAMS_KEY], Mapping):
            raise InvalidInputError(f"params must be a dict, got {type(payload[PARAMS_KEY]).__name__}")
        return payload
    named = {}
    for name, value in inputs.items():
        named[name] = _native_or_list(value) if _is_ndarray(value) else value
    return {INPUTS: named}


def _merged_params(existing: Any, params: Mapping[str, Any]) -> dict[str, Any]:
    if existing is None:
        return dict(params)
    return {**existing, **params}


def _encode_preencoded(
    body: str | bytes | bytearray | memoryview, params: Mapping[str, Any] | None
) -> tuple[bytes, str]:
    raw = body.encode("utf-8") if isinstance(body, str) else bytes(body)
    try:
        parsed = loads(raw)
    except ValueError:
        if raw.lstrip()[:1] == b"{":
            raise InvalidInputError(
                f"The inputs look like a JSON object but do not parse as JSON: {_excerpt(raw)}"
            ) from None
        parsed = None
    else:
        if isinstance(parsed, list):
            raise InvalidInputError(
                "A pre-encoded JSON body must be an object with one of the keys "
                + ", ".join(repr(key) for key in INPUT_KEYS)
                + '; wrap a list as {"inputs": [...]} or pass the list itself'
            )
    if isinstance(parsed, dict):
        if params is None:
            return raw, CONTENT_TYPE_JSON
        parsed[PARAMS_KEY] = _merged_params(parsed.get(PARAMS_KEY), params)
        return dumps_json(parsed), CONTENT_TYPE_JSON
    if params:
        raise InvalidInputError("params cannot be sent with CSV inputs; send the inputs as JSON instead")
    return raw, CONTENT_TYPE_CSV


def decode_response(body: bytes | str) -> PredictionsResponse:
    """Read a scoring service's JSON answer as a :class:`~deployflow.PredictionsResponse`.

    An object is kept as it is (even without a ``predictions`` key: some services answer with other
    keys); a list or a bare value is wrapped as ``{"predictions": value}``. Raises
    :class:`~deployflow.errors.RemoteError` quoting the start of the body when it is not JSON.
    """
    try:
        parsed = loads(body)
    except ValueError as error:
        excerpt = _excerpt(body)
        raise RemoteError(
            f"The scoring service answered with a body that is not JSON ({error}): {excerpt!r}",
            body=excerpt,
        ) from error
    if isinstance(parsed, dict):
        return PredictionsResponse(parsed)
    return PredictionsResponse(predictions=parsed)


# --------------------------------------------------------------------------------------------------
# Server side: content type, request decoding, response encoding


@lru_cache(maxsize=64)
def check_content_type(content_type: str | None) -> str:
    """Return ``"application/json"`` or ``"text/csv"`` for an acceptable Content-Type header (or
    ``application/vnd.apache.arrow.stream``, deployflow's own batch chunks: :mod:`deployflow.arrow_chunks`).

    The type and parameter names are case-insensitive; ``charset=utf-8`` is the only parameter
    allowed. Raises :class:`UnsupportedMediaTypeError` (answer 415) for another charset, another
    parameter or another type, checked in that order as MLflow does. Empty ``;`` segments are ignored.
    """
    if not content_type:
        raise UnsupportedMediaTypeError(
            f"The request has no Content-Type; use one of {', '.join(CONTENT_TYPES)}"
        )
    mime, *segments = content_type.split(";")
    parameters: dict[str, str] = {}
    for segment in segments:
        if not segment.strip():
            continue
        name, _, value = segment.partition("=")
        parameters[name.strip().lower()] = value.strip().strip('"').lower()
    charset = parameters.pop("charset", "utf-8")
    if charset != "utf-8":
        raise UnsupportedMediaTypeError(f"The scoring server only accepts UTF-8, got charset {charset!r}")
    if parameters:
        raise UnsupportedMediaTypeError(
            f"Unrecognised Content-Type parameters: {', '.join(sorted(parameters))}; only charset=utf-8 "
            "is accepted"
        )
    mime = mime.strip().lower()
    if mime == CONTENT_TYPE_ARROW:
        if not arrow_readable():
            raise UnsupportedMediaTypeError(
                "This server cannot read Arrow bodies: pyarrow is not installed (pip install 'deployflow[batch]')"
            )
        return mime
    if mime not in CONTENT_TYPES:
        raise UnsupportedMediaTypeError(
            f"Unsupported Content-Type {content_type!r}: use one of {', '.join(CONTENT_TYPES)}"
        )
    return mime


def decode_request(body: bytes | str, content_type: str | None) -> DecodedRequest:
    """Parse an ``/invocations`` request as MLflow's scoring server does.

    Raises :class:`UnsupportedMediaTypeError` for a Content-Type the protocol does not accept (answer
    415), and :class:`~deployflow.errors.InvalidInputError` with ``error_code="BAD_REQUEST"`` for a
    malformed body (answer 400): invalid JSON, a body that is not an object, zero or several input keys,
    ``dataframe_split`` not an object, ``dataframe_records`` not a list, ``params`` not an object.
    """
    mime = check_content_type(content_type)
    if mime == CONTENT_TYPE_CSV:
        return DecodedRequest(_read_csv(body), None, "csv")
    if mime == CONTENT_TYPE_ARROW:  # batch scoring's chunks to deployflow's own servers: see arrow_chunks
        return DecodedRequest(decode_frame(body if isinstance(body, bytes) else body.encode()), None, DATAFRAME_SPLIT)

    try:
        request = loads(body)
    except ValueError as error:
        raise _bad_request(f"The request body is not valid JSON: {error}", body) from error
    if not isinstance(request, dict):
        received = "a list" if isinstance(request, list) else f"a JSON {type(request).__name__}"
        raise _bad_request(f"{_REQUIRED_SHAPE}. Received {received}.", body)

    present = [key for key in request if key in _INPUT_KEY_SET]
    if len(present) != 1:
        raise _bad_request(f"{_REQUIRED_SHAPE}. Received an object with the keys {list(request)}.", body)
    key = present[0]
    params = request.get(PARAMS_KEY)
    if params is not None and not isinstance(params, dict):
        raise _bad_request(f"'params' must be a JSON object, got {_json_type(params)}.", body)

    value = request[key]
    if key == DATAFRAME_SPLIT:
        data = _split_to_frame(value)
    elif key == DATAFRAME_RECORDS:
        data = _records_to_frame(value)
    elif key == INSTANCES:
        data = _decode_instances(value)
    else:
        data = _decode_inputs(value)
    return DecodedRequest(data, params, key)


def _json_type(value: Any) -> str:
    return {dict: "an object", list: "a list", str: "a string", bool: "a boolean"}.get(
        type(value), f"a {type(value).__name__}"
    )


def _read_csv(body: bytes | str) -> pd.DataFrame:
    import io

    import pandas as pd

    source = io.StringIO(body) if isinstance(body, str) else io.BytesIO(body)
    try:
        frame = pd.read_csv(source)
    except Exception as error:  # EmptyDataError, ParserError, UnicodeDecodeError, ...
        raise _bad_request(
            f"The request body is not a valid CSV table (as written by DataFrame.to_csv): {error}", body
        ) from error
    return _type_null_columns(frame)


def _records_to_frame(records: Any) -> pd.DataFrame:
    if not isinstance(records, list):
        raise _bad_request(
            f"'{DATAFRAME_RECORDS}' must be a list of records (row objects); got {_json_type(records)}."
        )
    import pandas as pd

    try:
        frame = pd.DataFrame(data=records)
    except Exception as error:
        raise _bad_request(f"'{DATAFRAME_RECORDS}' is not a valid list of records: {error}") from error
    return _type_null_columns(frame)


def _to_tensor(value: Any) -> Any:
    """A numpy array for a (nested, rectangular) list of numbers or booleans; the value otherwise."""
    if not isinstance(value, list):
        return value
    import numpy as np

    try:
        array = np.array(value)
    except (ValueError, OverflowError, TypeError):  # ragged
        return value
    return array if array.dtype.kind in _NATIVE_NUMERIC_KINDS else value


def _decode_inputs(value: Any) -> Any:
    if isinstance(value, dict):
        return {name: _to_tensor(item) for name, item in value.items()}
    return _to_tensor(value)


def _decode_instances(value: Any) -> Any:
    if isinstance(value, list) and value and isinstance(value[0], dict):
        # Rows of named values become one tensor per name, as MLflow does.
        columns: dict[Any, list[Any]] = {}
        for row in value:
            if not isinstance(row, dict):
                raise _bad_request(f"'{INSTANCES}' mixes objects with other values; got {_json_type(row)}.")
            for name, item in row.items():
                columns.setdefault(name, []).append(item)
        data: Any = {name: _to_tensor(items) for name, items in columns.items()}
    else:
        data = _decode_inputs(value)
    if isinstance(data, dict):
        lengths = {len(item) for item in data.values() if isinstance(item, list) or _is_ndarray(item)}
        if len(lengths) > 1:
            raise _bad_request(f"Every input in '{INSTANCES}' must have the same number of values.")
    return data


def encode_response(predictions: Any) -> bytes:
    """Encode a model's output as the body ``{"predictions": ...}``.

    numpy arrays go out as nested lists (numeric ones written by orjson directly), a DataFrame and a
    Series as a list of records (as MLflow's server does, ``orient="records"``), and dicts, lists and
    scalars as they are, numpy scalars and timestamps included. Non-finite numbers are written as
    ``NaN``, ``Infinity`` and ``-Infinity``, as MLflow's server writes them; NaT and NA as ``null``.
    """
    if _is_ndarray(predictions):
        value = _native_or_list(predictions)
    elif _is_dataframe(predictions):
        value = _frame_to_records(predictions)
    elif _is_series(predictions):
        value = _frame_to_records(predictions.to_frame())
    elif isinstance(predictions, dict):
        value = {
            name: _native_or_list(item) if _is_ndarray(item) else item for name, item in predictions.items()
        }
    else:
        value = predictions
    return dumps_json({"predictions": value}, allow_nan=True)
