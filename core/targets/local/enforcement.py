"""Checking a request against an MLflow model signature, as MLflow's pyfunc does before predicting.

:class:`InputEnforcer` and :class:`ParamsEnforcer` are built once per model from a
:class:`~.signature.Signature` and called on every request. A request that does not fit raises
:class:`SignatureError`: HTTP 400 with error code ``INVALID_PARAMETER_VALUE`` (what MLflow's scoring
server answers for a schema failure), or ``BAD_REQUEST`` when a text value cannot be read as the declared
type (a date that does not parse, bytes that are not base64), as MLflow's request parser answers.

Column signatures (the rules of MLflow's ``_enforce_schema``):

* Named columns: every required column must be present (else the error names the missing ones);
  optional columns may be absent; columns the signature does not name are dropped; the model gets the
  columns in the signature's order. Unnamed columns: the request needs at least as many columns, and
  the first ones are taken by position.
* A column of another type is converted only where MLflow allows it and no value changes:

  ==================  =========================================================================
  declared type       accepted (converted to the declared dtype)
  ==================  =========================================================================
  ``double``          any integer or floating column (int -> double, float32 -> double), and numbers
                      written as text (``"1.5"``), which MLflow's request parser reads as numbers
  ``float``           integer and floating columns, read as float32 (JSON numbers have no width;
                      a finite number too large for float32 is refused)
  ``long``            integer columns (int32 -> int64); a floating column only when every value is
                      a whole number (JSON clients often write ``2.0``); never one with NaN
  ``integer``         integer columns whose values fit int32; whole-number floats likewise
  ``boolean``         boolean columns without missing values
  ``string``          text and object columns, unchanged (as MLflow passes them)
  ``binary``          bytes, or base64 text (how JSON carries bytes), decoded
  ``datetime``        timezone-naive datetimes of any unit, or text that parses as one
  ==================  =========================================================================

  Numbers written as text are read for the integer and float types too (an integer column then
  takes whole numbers only); text that is not a number is refused with ``BAD_REQUEST``, as MLflow's
  parser refuses it. Refused, as MLflow's pyfunc refuses them: a number to text, booleans to numbers
  and back, fractional values to integers, timezone-aware datetimes.

Tensor signatures (MLflow's ``_enforce_tensor_spec``): the array's number of dimensions and every
fixed size must match (``-1`` matches any size); its values are converted to the declared dtype under
the same rules as columns (integers to floats, whole-number floats to integers in range). Named
tensors come from a dict (``inputs: {"x": [...]}``) or from a frame's columns; a missing one is an
error, extra ones are dropped.

Params (MLflow's ``_enforce_params_schema``): params the signature does not declare are dropped (with
a warning), declared ones that are absent take their default, and each value must have the declared
type: ``long``/``integer`` take integers, ``double``/``float`` integers or numbers, ``boolean`` only
booleans, ``string`` only text, ``datetime`` ISO text; ``null`` passes; a ``[-1]`` shape takes a flat
list of such values. Every wrong param is reported in one error. A model whose signature declares no
params ignores any it is sent (with a warning), as MLflow does.

Where this differs from ``mlflow models serve``: MLflow's request parser casts each column with
pandas' ``astype`` before the checks above, which silently truncates ``1.5`` to ``1`` in a ``long``
column, wraps integers that overflow ``integer``, turns a missing boolean into ``False`` and booleans
into numbers. Those inputs are refused here with 400, since each changes or invents a value.
"""

from __future__ import annotations

import binascii
from collections.abc import Sequence
from typing import Any

from ...errors import InvalidInputError
from ...jsoncodec import _frame_dtypes
from ...redaction import get_logger
from .signature import COLUMN_TYPES, ParamSpec, Signature, TensorSpec

__all__ = ["InputEnforcer", "ParamsEnforcer", "SignatureError"]

_logger = get_logger(__name__)

_MISSING_VALUES_HINT = (
    " A column of whole numbers with missing values arrives as floats (JSON has no integer null);"
    " declare such a column as double in the signature."
)


class SignatureError(InvalidInputError):
    """A request that does not fit the model's signature (HTTP 400)."""

    default_error_code = "INVALID_PARAMETER_VALUE"

    def __init__(self, message: str, **kwargs: Any) -> None:
        kwargs.setdefault("status_code", 400)
        super().__init__(message, **kwargs)


class _Unreadable(SignatureError):
    """A text value that cannot be read as its declared type (MLflow's parser answers BAD_REQUEST)."""

    default_error_code = "BAD_REQUEST"


class _WarnOnce:
    """Logs each distinct warning once per process: a client repeating a mistake must not flood the log."""

    def __init__(self) -> None:
        self._seen: set[str] = set()

    def __call__(self, message: str) -> None:
        if message not in self._seen and len(self._seen) < 64:
            self._seen.add(message)
            _logger.warning("%s", message)


_warn_once = _WarnOnce()


# ------------------------------------------------------------------------------------------------------
# Inputs


class InputEnforcer:
    """Checks and converts a model input against the signature's ``inputs`` (see the module docstring).

    Called with what the request decoded to (a DataFrame, an array, a dict of arrays, a list); returns
    what the model is given: a DataFrame for column signatures, an array or a dict of arrays for tensor
    signatures.
    """

    def __init__(self, signature: Signature) -> None:
        import numpy as np

        specs = signature.inputs or ()
        self._signature = signature
        self._specs = specs
        self._tensor = signature.is_tensor
        self._named = signature.has_names
        self._names = [spec.name for spec in specs]
        self._required = [spec.name for spec in specs if spec.required]
        if not self._tensor:
            self._dtypes = [np.dtype(COLUMN_TYPES[spec.type]) for spec in specs]  # type: ignore[union-attr]
        # The column Index of the last request and what to do with its columns (positions, specs,
        # dtypes, and whether the frame already has exactly those columns). The scoring server hands
        # out one cached Index per column list, and an Index is immutable, so `is` answers most requests.
        self._plan_columns: Any = None
        self._plan: Any = None

    def __call__(self, data: Any) -> Any:
        if self._tensor:
            return self._tensors(data)
        return self._columns(self._as_frame(data))

    # -- columns -------------------------------------------------------------------------------------

    def _as_frame(self, data: Any) -> Any:
        import numpy as np
        import pandas as pd

        if isinstance(data, pd.DataFrame):
            return data
        try:
            if isinstance(data, pd.Series):
                return data.to_frame()
            if isinstance(data, dict):
                if all(np.isscalar(value) or value is None for value in data.values()):
                    return pd.DataFrame([data])
                return pd.DataFrame(
                    {key: value.tolist() if isinstance(value, np.ndarray) and value.ndim > 1 else value
                     for key, value in data.items()}
                )
            if isinstance(data, (list, np.ndarray)):
                return pd.DataFrame(data)
            if np.isscalar(data):
                return pd.DataFrame([data])
        except Exception as exc:  # pandas raises several kinds for a shape it cannot use
            raise self._error(f"the input cannot be read as a table of columns: {exc}") from exc
        raise self._error(f"a column-based signature needs a table of columns, got {type(data).__name__}")

    def _columns(self, frame: Any) -> Any:
        columns = frame.columns
        if columns is self._plan_columns:
            plan = self._plan
        else:
            plan = self._named_plan(frame) if self._named else self._positional_plan(frame)
            self._plan_columns, self._plan = columns, plan
        positions, specs, dtypes, unchanged = plan
        if unchanged and _frame_dtypes(frame) == dtypes:
            return frame  # the common case: the right columns in the right order, already typed
        return self._convert(frame, positions, specs)

    def _named_plan(self, frame: Any) -> tuple[list[int], list[Any], list[Any], bool]:
        present: dict[Any, int] = {}
        names = frame.columns.tolist()
        for position, name in enumerate(names):
            present.setdefault(name, position)
        missing = [name for name in self._required if name not in present]
        known = set(self._names)
        extra = [name for name in present if name not in known]
        if missing:
            note = f"; it has columns the signature does not name: {extra}" if extra else ""
            raise self._error(f"the model is missing the required input column(s) {missing}{note}")
        if extra:
            _warn_once(f"request columns {extra} are not in the model signature and are ignored")
        positions, specs, dtypes = [], [], []
        for spec, dtype in zip(self._specs, self._dtypes):
            if spec.name in present:
                positions.append(present[spec.name])
                specs.append(spec)
                dtypes.append(dtype)
        return positions, specs, dtypes, positions == list(range(len(names)))

    def _positional_plan(self, frame: Any) -> tuple[list[int], list[Any], list[Any], bool]:
        count = len(self._specs)
        if frame.shape[1] < count:
            raise self._error(
                f"the signature declares {count} unnamed input columns but the input has "
                f"{frame.shape[1]}; unnamed columns are matched by position, so only their number "
                "can be checked"
            )
        return list(range(count)), list(self._specs), list(self._dtypes), frame.shape[1] == count

    def _convert(self, frame: Any, positions: list[int], specs: list[Any]) -> Any:
        import pandas as pd

        from ...jsoncodec import _column_arrays

        arrays = _column_arrays(frame)
        names = frame.columns.tolist()
        converted = {}
        for position, spec in zip(positions, specs):
            name = names[position]
            converted[name] = _column(name, arrays[position], spec.type, self)
        return pd.DataFrame(converted, index=frame.index, copy=False)

    # -- tensors -------------------------------------------------------------------------------------

    def _tensors(self, data: Any) -> Any:
        import numpy as np
        import pandas as pd

        if not self._named:
            spec = self._specs[0]
            if isinstance(data, pd.DataFrame):
                if data.empty:
                    raise self._error("the input DataFrame is empty")
                if data.shape[1] == 1:
                    return _tensor_from_column(None, data.iloc[:, 0], spec, self)
                if spec.shape != (-1, data.shape[1]):
                    raise self._error(
                        f"a frame of {data.shape[1]} columns scores an unnamed tensor only when its shape "
                        f"is (-1, {data.shape[1]}); the signature declares {spec.shape}"
                    )
                return _tensor(None, data.to_numpy(), spec, self)
            if isinstance(data, dict):
                raise self._error("the signature declares one unnamed tensor, but the input holds named ones")
            return _tensor(None, data, spec, self)

        if isinstance(data, (np.ndarray, list)) and len(self._required) == 1:
            data = {self._required[0]: data}  # one required tensor: a bare array is that tensor
        if isinstance(data, pd.DataFrame):
            present = set(data.columns)
        elif isinstance(data, dict):
            present = set(data)
        else:
            raise self._error(
                "the signature declares named tensors: send a dict of arrays (inputs: {name: [...]}) or "
                f"a frame with one column per tensor, not {type(data).__name__}"
            )
        missing = [name for name in self._required if name not in present]
        if missing:
            raise self._error(f"the model is missing the required input(s) {missing}")
        result = {}
        for spec in self._specs:
            if spec.name not in present:
                continue
            if isinstance(data, pd.DataFrame):
                result[spec.name] = _tensor_from_column(spec.name, data[spec.name], spec, self)
            else:
                result[spec.name] = _tensor(spec.name, data[spec.name], spec, self)
        return result

    def _error(self, detail: str, kind: type[SignatureError] = SignatureError) -> SignatureError:
        return kind(f"The input does not match the model signature {self._signature.describe_inputs()}: {detail}.")


def _column(name: Any, values: Any, declared: str, enforcer: InputEnforcer) -> Any:
    """One column's values converted to ``declared`` (an MLflow column type), or SignatureError."""
    import numpy as np

    target = np.dtype(COLUMN_TYPES[declared])
    dtype = values.dtype
    if declared == "string":
        if dtype == object or getattr(dtype, "kind", "") in "OUS" or _is_string_dtype(dtype):
            return values
        raise _incompatible(name, dtype, declared, enforcer)
    if declared == "binary":
        return _binary(name, values, enforcer)
    if declared == "datetime":
        return _datetime(name, values, enforcer)

    if dtype == object:
        values = _infer_objects(values)
        dtype = values.dtype
    if (dtype == object or _is_string_dtype(dtype)) and declared != "boolean":
        values = _numbers_from_text(name, values, declared, enforcer)
        dtype = values.dtype
    if not isinstance(dtype, np.dtype):  # a pandas extension column (nullable ints, booleans)
        values = _numpy_from_extension(name, values, declared, enforcer)
        dtype = values.dtype
    if dtype == target:
        return values
    kind = dtype.kind
    if declared == "boolean" or kind == "b" or kind not in "iuf":
        raise _incompatible(name, dtype, declared, enforcer)
    if target.kind == "f":
        with np.errstate(over="ignore"):  # overflow is checked just below
            converted = values.astype(target)
        if target.itemsize < dtype.itemsize and kind == "f":
            overflow = np.isinf(converted) & np.isfinite(values)
            if overflow.any():
                raise enforcer._error(f"column {name!r} holds values too large for {declared} ({target})")
        return converted
    # integer targets: only whole numbers that fit
    if kind == "f":
        if np.isnan(values).any():
            raise _incompatible(name, dtype, declared, enforcer, hint=_MISSING_VALUES_HINT)
        if not (np.isfinite(values).all() and (np.floor(values) == values).all()):
            raise _incompatible(name, dtype, declared, enforcer)
    info = np.iinfo(target)
    if values.size and (values.min() < info.min or values.max() > info.max):
        raise enforcer._error(f"column {name!r} holds values outside the range of {declared} ({target})")
    return values.astype(target)


def _is_string_dtype(dtype: Any) -> bool:
    import pandas as pd

    return isinstance(dtype, pd.StringDtype)


def _infer_objects(values: Any) -> Any:
    import pandas as pd

    return pd.Series(values, copy=False).infer_objects().array.to_numpy() if len(values) else values


def _numbers_from_text(name: Any, values: Any, declared: str, enforcer: InputEnforcer) -> Any:
    """Numbers written as text ("1.5"), read as MLflow's request parser reads them; other text refused."""
    import pandas as pd

    items = list(values)
    if any(isinstance(item, bool) for item in items):
        raise _incompatible(name, "boolean", declared, enforcer)
    try:
        numbers = pd.to_numeric(pd.Series(items, dtype=object), errors="raise")
    except (ValueError, TypeError) as exc:
        raise enforcer._error(f"column {name!r} holds text that is not a number ({exc})", _Unreadable) from exc
    return numbers.to_numpy()


def _numpy_from_extension(name: Any, values: Any, declared: str, enforcer: InputEnforcer) -> Any:
    import numpy as np

    kind = getattr(values.dtype, "kind", "O")
    missing = bool(values.isna().any()) if hasattr(values, "isna") else False
    if kind in "iu":
        if missing:
            if declared in ("double", "float"):
                return values.to_numpy(dtype="float64", na_value=np.nan)
            raise _incompatible(name, values.dtype, declared, enforcer, hint=_MISSING_VALUES_HINT)
        return values.to_numpy(dtype=values.dtype.numpy_dtype)
    if kind == "f":
        return values.to_numpy(dtype=values.dtype.numpy_dtype, na_value=np.nan)
    if kind == "b":
        if missing:
            raise enforcer._error(f"column {name!r} has missing values, which a {declared} column cannot hold")
        return values.to_numpy(dtype=bool)
    raise _incompatible(name, values.dtype, declared, enforcer)


def _binary(name: Any, values: Any, enforcer: InputEnforcer) -> Any:
    import base64

    import numpy as np

    items = values.tolist() if not isinstance(values, np.ndarray) or values.dtype == object else None
    if items is None:
        if values.dtype.kind == "S":
            return values
        raise _incompatible(name, values.dtype, "binary", enforcer)
    decoded = np.empty(len(items), dtype=object)
    for position, item in enumerate(items):
        if isinstance(item, str):
            try:
                decoded[position] = base64.b64decode(item.encode("ascii"), validate=True)
            except (binascii.Error, UnicodeEncodeError) as exc:
                raise enforcer._error(f"column {name!r} holds text that is not base64 bytes ({exc})",
                                      _Unreadable) from exc
        elif isinstance(item, (bytes, bytearray)):
            decoded[position] = item
        elif _is_missing(item):
            decoded[position] = None
        else:
            raise _incompatible(name, type(item).__name__, "binary", enforcer)
    return decoded


def _is_missing(item: Any) -> bool:
    import pandas as pd

    return item is None or (not isinstance(item, str) and bool(pd.isna(item)))


def _datetime(name: Any, values: Any, enforcer: InputEnforcer) -> Any:
    import numpy as np
    import pandas as pd

    dtype = values.dtype
    if isinstance(dtype, pd.DatetimeTZDtype):
        raise _timezone_aware(name, enforcer)
    if isinstance(dtype, np.dtype) and dtype.kind == "M":
        return values.astype("datetime64[ns]")
    if dtype == object or _is_string_dtype(dtype):
        try:
            parsed = pd.to_datetime(pd.Series(values, copy=False))
        except (ValueError, TypeError, OverflowError) as exc:
            raise enforcer._error(f"column {name!r} holds text that is not a datetime ({exc})", _Unreadable) from exc
        if isinstance(parsed.dtype, pd.DatetimeTZDtype):
            raise _timezone_aware(name, enforcer)
        return parsed.to_numpy().astype("datetime64[ns]")
    raise _incompatible(name, dtype, "datetime", enforcer)


def _timezone_aware(name: Any, enforcer: InputEnforcer) -> SignatureError:
    return enforcer._error(
        f"column {name!r} holds timezone-aware datetimes; a datetime column takes timezone-naive ones"
    )


def _incompatible(name: Any, actual: Any, declared: str, enforcer: InputEnforcer, hint: str = "") -> SignatureError:
    return enforcer._error(
        f"column {name!r} holds {actual} values, which cannot be converted to {declared} "
        f"({COLUMN_TYPES[declared]}) without changing them.{hint}".rstrip(".")
    )


def _tensor(name: str | None, value: Any, spec: TensorSpec, enforcer: InputEnforcer) -> Any:
    import numpy as np

    label = f"input {name!r}" if name is not None else "the input"
    target = np.dtype(spec.dtype)
    if isinstance(value, list) or not isinstance(value, np.ndarray):
        value = _array_from_values(label, value, target, enforcer)
    shape = spec.shape
    if target == object and shape == (-1,):
        return value  # a ragged tensor of anything: MLflow passes it as it is
    if len(shape) > 1 and -1 in shape[1:] and value.ndim == 1 and value.dtype == object:
        return value  # rows of different lengths, where the signature lets them vary
    value = _tensor_dtype(label, value, target, enforcer)
    if value.ndim != len(shape) or any(want not in (-1, got) for want, got in zip(shape, value.shape)):
        raise enforcer._error(f"{label} has shape {value.shape}, but the signature declares {shape} (-1: any size)")
    return value


def _array_from_values(label: str, value: Any, target: Any, enforcer: InputEnforcer) -> Any:
    """A numpy array for JSON values the request decoder left as Python lists (text, nulls, ragged)."""
    import numpy as np

    try:
        array = np.array(value, dtype=object)
    except ValueError as exc:
        raise enforcer._error(f"{label} is not a rectangular array ({exc})", _Unreadable) from exc
    if target == object:
        return array
    flat = array.reshape(-1).tolist()
    if target.kind in "fiu" and any(isinstance(item, (str, bytes)) for item in flat):
        raise enforcer._error(f"{label} holds text, but the signature declares {target} numbers")
    if target.kind == "f" and all(item is None or isinstance(item, (int, float)) and not isinstance(item, bool)
                                 for item in flat):
        return np.array(np.where(array == None, np.nan, array).tolist(), dtype="float64")
    if target.kind in "iub" and any(item is None for item in flat):
        raise enforcer._error(f"{label} holds missing values, which {target} cannot hold")
    try:
        return np.array(array.tolist())
    except (ValueError, TypeError) as exc:
        raise enforcer._error(f"{label} cannot be read as {target} ({exc})", _Unreadable) from exc


def _tensor_dtype(label: str, value: Any, target: Any, enforcer: InputEnforcer) -> Any:
    import numpy as np

    dtype = value.dtype
    if dtype == target or target == object:
        return value if dtype == target else value.astype(object)
    kind = dtype.kind
    if target.kind in "US":
        if kind in "US" or (kind == "O" and all(isinstance(item, str) for item in value.reshape(-1).tolist())):
            return value.astype(target)
    elif target.kind == "b" or kind == "b" or kind not in "iuf":
        pass
    elif target.kind == "f":
        with np.errstate(over="ignore"):  # overflow is checked just below
            converted = value.astype(target)
        if kind == "f" and target.itemsize < dtype.itemsize and (np.isinf(converted) & np.isfinite(value)).any():
            raise enforcer._error(f"{label} holds values too large for {target}")
        return converted
    else:  # integer target
        if kind == "f" and not (np.isfinite(value).all() and (np.floor(value) == value).all()):
            hint = " (it has missing values)" if np.isnan(value).any() else ""
            raise enforcer._error(f"{label} holds fractional or missing values{hint}, which {target} cannot hold")
        info = np.iinfo(target)
        if value.size and (value.min() < info.min or value.max() > info.max):
            raise enforcer._error(f"{label} holds values outside the range of {target}")
        return value.astype(target)
    raise enforcer._error(f"{label} has dtype {dtype}, which cannot be converted to {target} without changing it")


def _tensor_from_column(name: str | None, column: Any, spec: TensorSpec, enforcer: InputEnforcer) -> Any:
    """A tensor from one frame column: scalars for shape (-1,) or (-1, 1), or one list/array per row."""
    import numpy as np

    label = f"column {name!r}" if name is not None else "the input column"
    shape = spec.shape
    if shape[0] != -1 or -1 in shape[1:]:
        raise enforcer._error(
            f"a frame scores a tensor only when its first dimension is free and the others fixed; the "
            f"signature declares {shape} for {label}"
        )
    values = column.tolist()
    if not values:
        raise enforcer._error(f"{label} is empty")
    first = values[0]
    if np.isscalar(first) or first is None:
        if shape not in ((-1,), (-1, 1)):
            raise enforcer._error(f"{label} holds single values, which need the shape (-1,) or (-1, 1), not {shape}")
        array = _tensor(name, values, TensorSpec(spec.dtype, (-1,), name), enforcer)
        return array.reshape(shape)
    if isinstance(first, (list, np.ndarray)):
        try:
            stacked = np.vstack([np.asarray(item) for item in values])
            array = stacked.reshape(shape)
        except ValueError as exc:
            raise enforcer._error(
                f"the values of {label} cannot be arranged in the shape {shape}: every row must hold the "
                f"same number of values ({exc})"
            ) from exc
        if len(array) != len(values):
            raise enforcer._error(f"the values of {label} cannot be arranged in the shape {shape}")
        return _tensor(name, array, spec, enforcer)
    raise enforcer._error(f"{label} holds {type(first).__name__} values; a tensor column holds numbers or lists")


# ------------------------------------------------------------------------------------------------------
# Params


class ParamsEnforcer:
    """Checks a request's ``params`` against the signature's params (see the module docstring)."""

    def __init__(self, specs: Sequence[ParamSpec] | None) -> None:
        self._specs = tuple(specs) if specs else None
        self._defaults: dict[str, Any] = {}
        for spec in self._specs or ():
            try:
                self._defaults[spec.name] = _param_value(spec, spec.default)
            except ValueError:
                self._defaults[spec.name] = spec.default

    @property
    def declared(self) -> bool:
        return self._specs is not None

    def __call__(self, params: dict[str, Any] | None) -> dict[str, Any] | None:
        if self._specs is None:
            if params:
                _warn_once(
                    f"params {sorted(map(str, params))} are ignored: the model's signature declares no params"
                )
            return None
        params = params or {}
        known = {spec.name for spec in self._specs}
        unknown = sorted(str(name) for name in params if name not in known)
        if unknown:
            _warn_once(f"params {unknown} are not in the model signature and are ignored (it declares {sorted(known)})")
        result: dict[str, Any] = {}
        problems = []
        for spec in self._specs:
            if spec.name not in params:
                result[spec.name] = self._defaults[spec.name]
                continue
            try:
                result[spec.name] = _param_value(spec, params[spec.name])
            except ValueError as exc:
                problems.append(f"{spec.describe()}: {exc}")
        if problems:
            raise SignatureError("Invalid params for this model: " + "; ".join(problems) + ".")
        return result


def _param_value(spec: ParamSpec, value: Any) -> Any:
    """``value`` as ``spec`` declares it, or ValueError saying why not."""
    if value is None:
        return None
    if spec.shape is not None:
        if not isinstance(value, (list, tuple)) or any(isinstance(item, (list, tuple, dict)) for item in value):
            raise ValueError(f"expected a flat list, got {_json_kind(value)}")
        return [None if item is None else _scalar_param(spec.type, item) for item in value]
    if isinstance(value, (list, tuple, dict)):
        raise ValueError(f"expected a single value, got {_json_kind(value)}")
    return _scalar_param(spec.type, value)


def _scalar_param(declared: str, value: Any) -> Any:
    if declared == "datetime":
        import numpy as np

        if isinstance(value, (bool, int, float)):
            raise ValueError(f"{value!r} is not a date or datetime")
        try:
            converted = np.datetime64(value).item()
        except (ValueError, TypeError) as exc:
            raise ValueError(f"{value!r} is not a date or datetime") from exc
        if isinstance(converted, int):  # nanosecond values come back as bare integers
            raise ValueError(f"{value!r} is not a date or datetime that Python can hold")
        return converted
    if declared in ("long", "integer"):
        if isinstance(value, int) and not isinstance(value, bool):
            return int(value)
    elif declared in ("double", "float"):
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
    elif declared == "boolean":
        if isinstance(value, bool):
            return value
    elif declared == "string":
        if isinstance(value, str):
            return value
    elif declared == "binary":
        if isinstance(value, (bytes, bytearray)):
            return bytes(value)
    raise ValueError(f"{value!r} ({_json_kind(value)}) is not a {declared}")


def _json_kind(value: Any) -> str:
    return {bool: "a boolean", int: "an integer", float: "a number", str: "text", list: "a list",
            tuple: "a list", dict: "an object"}.get(type(value), type(value).__name__)
