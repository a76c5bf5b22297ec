"""The one JSON codec: how Python, numpy and pandas values become JSON bytes, and JSON bytes values.

Everything deployflow sends or writes as JSON goes through this module (request bodies of every
target, scoring answers, CLI output, :class:`~deployflow.PredictionsResponse`), and everything it
reads through :func:`loads`, so a value is encoded the same way wherever it travels.

* numpy arrays and scalars, pandas frames, series, timestamps and missing values, datetimes, decimals
  and bytes are converted as MLflow's scoring server does (arrays to lists, datetimes to ISO-8601
  strings, bytes to base64).
* NaN, Infinity and -Infinity: MLflow's side of the protocol is Python's ``json`` module, which reads
  and writes them as the bare tokens ``NaN``, ``Infinity`` and ``-Infinity``. :func:`loads` reads them.
  :func:`dumps` writes them as ``null`` (what every JSON parser reads: request bodies go to services
  that may be strict), or as the tokens with ``allow_nan=True`` (scoring answers, as MLflow's server
  writes them). :func:`dumps_text` writes what ``json.dumps`` writes, spacing and tokens included.
* orjson does the work on the common path; Python's ``json`` module only reads what orjson refuses,
  and the tokens are written by orjson too, so every other value comes out the same on both paths.

pandas and numpy are looked up in ``sys.modules`` and imported inside the functions that need them: a
value of theirs can only exist once they are loaded.
"""

from __future__ import annotations

import base64
import datetime as _datetime
import decimal
import json as _stdlib_json
import math
import sys
from typing import TYPE_CHECKING, Any

import orjson

from .errors import InvalidInputError

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

__all__ = ["dumps", "dumps_text", "loads", "JSONDecodeError"]

JSON_OPTIONS = orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS
# numpy dtypes orjson writes natively from an array, exactly and fast.
_NATIVE_NUMERIC_KINDS = "biuf"
_NATIVE_FLOAT_SIZES = (4, 8)

#: What :func:`loads` raises for a body that is not JSON (a ValueError).
JSONDecodeError = ValueError


def _loaded(name: str) -> Any:
    # Cheap test for "is this a numpy / pandas object" that never imports the library itself.
    return sys.modules.get(name)


def _is_dataframe(value: Any) -> bool:
    pd = _loaded("pandas")
    return pd is not None and isinstance(value, pd.DataFrame)


def _is_series(value: Any) -> bool:
    pd = _loaded("pandas")
    return pd is not None and isinstance(value, pd.Series)


def _is_ndarray(value: Any) -> bool:
    np = _loaded("numpy")
    return np is not None and isinstance(value, np.ndarray)


def _json_default(value: Any) -> Any:
    """Turn what orjson cannot write natively into something it can (its ``default`` hook)."""
    np = _loaded("numpy")
    if np is not None:
        if isinstance(value, np.ndarray):
            return _array_to_list(value)
        if isinstance(value, np.datetime64):
            return _array_to_list(np.asarray(value).reshape(1))[0]
        if isinstance(value, np.timedelta64):
            return None if np.isnat(value) else _timedelta_iso(value)
        if isinstance(value, np.generic):
            return value.item()
    pd = _loaded("pandas")
    if pd is not None:
        if value is pd.NaT or value is pd.NA:
            return None
        if isinstance(value, pd.DataFrame):
            return _frame_to_records(value)
        if isinstance(value, (pd.Series, pd.Index)):
            return _values_to_list(_array_of(value))
        if isinstance(value, (pd.Timestamp, pd.Timedelta)):
            return value.isoformat()
        if isinstance(value, (pd.Period, pd.Interval)):
            return str(value)
    if isinstance(value, (_datetime.datetime, _datetime.date, _datetime.time)):
        return value.isoformat()
    if isinstance(value, _datetime.timedelta):
        return _timedelta_iso(value)  # the same ISO-8601 duration as a timedelta column
    if isinstance(value, decimal.Decimal):
        return float(value)
    if isinstance(value, (bytes, bytearray, memoryview)):
        return base64.b64encode(bytes(value)).decode("ascii")
    if isinstance(value, (set, frozenset)):
        return list(value)
    if hasattr(value, "tolist"):  # other array-likes (pyarrow arrays, torch tensors on CPU)
        return value.tolist()
    raise TypeError(f"Type is not JSON serializable: {type(value).__name__}")


def dumps(value: Any, *, allow_nan: bool = False) -> bytes:
    """``value`` as compact JSON bytes (numpy and pandas aware).

    NaN and the infinities become ``null``; with ``allow_nan=True`` they become the tokens ``NaN``,
    ``Infinity`` and ``-Infinity``, as Python's ``json`` module writes them, and every other byte is
    what the default gives. Raises :class:`~deployflow.errors.InvalidInputError` for a value that has
    no JSON form.
    """
    try:
        encoded = orjson.dumps(value, default=_json_default, option=JSON_OPTIONS)
        # orjson writes every non-finite number as null: no null, nothing to rewrite (the common case).
        if allow_nan and b"null" in encoded:
            marked, found = _mark_non_finite(value)
            if found:
                encoded = orjson.dumps(marked, default=_json_default_marked, option=JSON_OPTIONS)
    except orjson.JSONEncodeError as error:
        raise InvalidInputError(f"The value cannot be written as JSON: {error}") from error
    return encoded


def dumps_text(value: Any) -> str:
    """``value`` as the text ``json.dumps(value)`` gives: ``", "`` and ``": "`` between items, non-ASCII
    characters escaped, ``NaN`` / ``Infinity`` / ``-Infinity`` tokens.

    numpy and pandas values are converted as :func:`dumps` converts them. Raises
    :class:`~deployflow.errors.InvalidInputError` for a value that has no JSON form.
    """
    try:
        return _stdlib_json.dumps(value, default=_json_default)
    except (TypeError, ValueError) as error:
        raise InvalidInputError(f"The value cannot be written as JSON: {error}") from error


def loads(content: bytes | bytearray | memoryview | str) -> Any:
    """The value of a JSON document, for whatever Python's ``json.loads`` reads (MLflow's parser).

    orjson reads standard JSON; what it refuses goes to Python's ``json`` module, which also reads the
    ``NaN``, ``Infinity`` and ``-Infinity`` tokens, numbers too large for a double (as infinity) and
    unpaired surrogate escapes. Raises ``ValueError`` (:data:`JSONDecodeError`) for what is not JSON.
    """
    try:
        return orjson.loads(content)
    except orjson.JSONDecodeError:
        if isinstance(content, memoryview):
            content = bytes(content)
        return _stdlib_json.loads(content)


# --------------------------------------------------------------------------------------------------
# NaN and infinity tokens for dumps(..., allow_nan=True)

_NAN = orjson.Fragment(b"NaN")
_POSITIVE_INFINITY = orjson.Fragment(b"Infinity")
_NEGATIVE_INFINITY = orjson.Fragment(b"-Infinity")
# Values that hold no float (datetimes and pandas timestamps go to the default hook on both passes).
_PLAIN_TYPES = (str, int, type(None), _datetime.date, _datetime.time)


def _token(number: float) -> Any:
    if number != number:
        return _NAN
    return _POSITIVE_INFINITY if number > 0 else _NEGATIVE_INFINITY


def _mark_non_finite(value: Any) -> tuple[Any, bool]:
    """``value`` with each non-finite number replaced by a pre-written token, and whether writing it
    may differ from writing ``value`` (a token was put in, or an object is left to the default hook,
    which marks what it converts).

    Containers are rebuilt only along the way to a token; numbers keep their types (a float32 keeps
    orjson's float32 form), so the output differs from the plain one only where the tokens are.
    """
    if isinstance(value, float):  # numpy float64 too
        return (value, False) if math.isfinite(value) else (_token(value), True)
    if isinstance(value, _PLAIN_TYPES):
        return value, False
    if isinstance(value, dict):
        found = False
        marked_items = {}
        for key, item in value.items():
            marked_items[key], hit = _mark_non_finite(item)
            found = found or hit
        return (marked_items, True) if found else (value, False)
    if isinstance(value, (list, tuple)):
        marked_list, found = _mark_items(value)
        return (marked_list, True) if found else (value, False)
    np = _loaded("numpy")
    if np is not None:
        if isinstance(value, np.ndarray):
            kind = value.dtype.kind
            if kind == "f":
                if value.size == 0 or bool(np.isfinite(value).all()):
                    return value, False
                if value.ndim == 0:
                    return _mark_non_finite(value[()])
                return _mark_items(list(value))  # rows, or numpy scalars of the array's own type
            if kind == "O":
                return _mark_non_finite(value.tolist())
            return value, False  # integers, booleans, datetimes: no NaN to mark
        if isinstance(value, np.floating):
            return (_token(float(value)), True) if not np.isfinite(value) else (value, False)
        if isinstance(value, np.generic):
            return value, False
    if isinstance(value, (decimal.Decimal, set, frozenset)) or type(value).__module__.startswith("pandas"):
        return _mark_non_finite(_json_default(value))
    # Anything else orjson writes itself (no float inside) or hands to _json_default_marked.
    return value, True


def _mark_items(items: Any) -> tuple[list[Any], bool]:
    found = False
    marked = []
    for item in items:
        result, hit = _mark_non_finite(item)
        marked.append(result)
        found = found or hit
    return marked, found


def _json_default_marked(value: Any) -> Any:
    return _mark_non_finite(_json_default(value))[0]


def _timedelta_iso(value: Any) -> str:
    import pandas as pd

    return pd.Timedelta(value).isoformat()


# --------------------------------------------------------------------------------------------------
# Column and array conversion (vectorised where it matters)

# Ticks per second for the datetime64 units that have sub-second parts, coarsest first.
_TICKS_PER_SECOND = {"s": 1, "ms": 10**3, "us": 10**6, "ns": 10**9}


def _datetime64_to_iso(values: np.ndarray) -> list[Any]:
    """ISO-8601 strings for a datetime64 array, as short as exactness allows; NaT becomes None."""
    import numpy as np

    unit = np.datetime_data(values.dtype)[0]
    nat = np.isnat(values)
    native_ticks = _TICKS_PER_SECOND.get(unit)
    out_unit = "s"
    if native_ticks is not None and native_ticks > 1:
        ticks = values.view("i8")
        if nat.any():
            ticks = ticks[~nat]
        for candidate, candidate_ticks in _TICKS_PER_SECOND.items():
            step = native_ticks // candidate_ticks
            if step <= 1 or not (ticks % step).any():
                out_unit = candidate
                break
    strings = np.datetime_as_string(values, unit=out_unit).tolist()
    if nat.any():
        for position in np.flatnonzero(nat).tolist():
            strings[position] = None
    return strings


# datetime64 units whose values fit Python datetimes (microsecond resolution) without loss.
_MICROSECOND_SAFE_UNITS = frozenset({"Y", "M", "W", "D", "h", "m", "s", "ms", "us"})
_NAT_TICKS = -(2**63)


def _datetime64_to_json(values: np.ndarray) -> list[Any]:
    """A datetime64 array as values orjson writes in ISO-8601; NaT becomes None.

    Python datetimes are the fast route (numpy makes them in C and orjson formats them in C), and
    they hold microseconds; nanosecond values, and dates outside years 1-9999, go the exact route
    through :func:`_datetime64_to_iso`.
    """
    unit = _datetime_unit(values)
    if unit == "ns":
        ticks = values.view("i8")
        if ((ticks % 1000 != 0) & (ticks != _NAT_TICKS)).any():
            return _datetime64_to_iso(values)
    elif unit not in _MICROSECOND_SAFE_UNITS:
        return _datetime64_to_iso(values)
    converted = values.astype("datetime64[us]").tolist()
    # Outside datetime's range numpy hands back bare integers instead.
    if unit != "ns" and int in set(map(type, converted)):
        return _datetime64_to_iso(values)
    return converted


def _datetime_unit(values: np.ndarray) -> str:
    import numpy as np

    return np.datetime_data(values.dtype)[0]


def _array_to_list(values: np.ndarray) -> Any:
    """Nested Python lists for any numpy array, with datetimes as ISO strings."""
    kind = values.dtype.kind
    if kind == "M":
        flat = _datetime64_to_json(values.reshape(-1))
        return _reshape(flat, values.shape)
    if kind == "m":
        flat = [None if item is None else _timedelta_iso(item) for item in _nat_to_none(values.reshape(-1))]
        return _reshape(flat, values.shape)
    return values.tolist()


def _nat_to_none(values: np.ndarray) -> list[Any]:
    import numpy as np

    nat = np.isnat(values)
    # Iterate numpy scalars, not tolist(): tolist() turns timedelta64[ns] into bare integers.
    return [None if missing else item for item, missing in zip(values, nat.tolist())]


def _reshape(flat: list[Any], shape: tuple[int, ...]) -> Any:
    if len(shape) <= 1:
        return flat
    size = len(flat) // shape[0] if shape[0] else 0
    return [_reshape(flat[i * size : (i + 1) * size], shape[1:]) for i in range(shape[0])]


def _values_to_list(values: Any) -> list[Any]:
    """One column's values (a numpy array or a pandas ExtensionArray) as a list orjson writes right.

    Float NaN may remain in the list: :func:`dumps` writes it as null, or as NaN with ``allow_nan``.
    """
    import numpy as np
    import pandas as pd

    if isinstance(values.dtype, np.dtype):
        values = np.asarray(values)  # DatetimeArray and friends hold a numpy array underneath
        kind = values.dtype.kind
        if kind == "M":
            return _datetime64_to_json(values)
        if kind == "m":
            return _array_to_list(values)
        # numbers and booleans become Python scalars; object values go through _json_default as needed
        return values.tolist()
    dtype = values.dtype
    if isinstance(dtype, pd.CategoricalDtype):
        categories = _values_to_list(_array_of(pd.Index(dtype.categories)))
        categories.append(None)  # code -1 (missing) picks this last entry
        return [categories[code] for code in values.codes.tolist()]
    if isinstance(dtype, pd.DatetimeTZDtype):
        return [None if stamp is pd.NaT else stamp.isoformat() for stamp in values]
    return values.to_numpy(dtype=object, na_value=None).tolist()


def _array_of(column: pd.Series | pd.Index) -> Any:
    import numpy as np

    return column.to_numpy() if isinstance(column.dtype, np.dtype) else column.array


# Reading columns through the frame's block manager skips building a Series per column, which costs
# more than converting a 10-row column (about 10 us against 1 us on pandas 3.1). It is internal pandas
# API, so any failure falls back to the public route, and the tests run both routes.
_USE_BLOCK_MANAGER = True


def _column_arrays(frame: pd.DataFrame) -> list[Any]:
    if _USE_BLOCK_MANAGER:
        try:
            get_values = frame._mgr.iget_values
            return [get_values(position) for position in range(frame.shape[1])]
        except Exception:  # pragma: no cover - a pandas version without it
            pass
    return [_array_of(column) for _, column in frame.items()]


def _frame_dtypes(frame: pd.DataFrame) -> list[Any]:
    if _USE_BLOCK_MANAGER:
        try:
            return list(frame._mgr.get_dtypes())
        except Exception:  # pragma: no cover - a pandas version without it
            pass
    return frame.dtypes.tolist()


def _column_lists(frame: pd.DataFrame) -> list[list[Any]]:
    return [_values_to_list(values) for values in _column_arrays(frame)]


def _default_range_index(index: pd.Index) -> bool:
    import pandas as pd

    return isinstance(index, pd.RangeIndex) and index.start == 0 and index.step == 1


def _single_native_dtype(frame: pd.DataFrame) -> np.dtype | None:
    """The frame's one numeric numpy dtype when every column shares it, else None."""
    import numpy as np

    dtypes = _frame_dtypes(frame)
    if not dtypes:
        return None
    first = dtypes[0]
    if not isinstance(first, np.dtype) or first.kind not in _NATIVE_NUMERIC_KINDS:
        return None
    if first.kind == "f" and first.itemsize not in _NATIVE_FLOAT_SIZES:
        return None
    for other in dtypes[1:]:
        if other != first:
            return None
    return first


def _split_parts(frame: pd.DataFrame) -> dict[str, Any]:
    """The split object for ``frame``, with ``data`` as a C-contiguous 2-D array when the frame is
    uniformly numeric (orjson writes that in C) or as a list of row tuples built column by column."""
    import numpy as np

    parts: dict[str, Any] = {"columns": frame.columns.tolist()}
    if _single_native_dtype(frame) is not None:
        parts["data"] = np.ascontiguousarray(frame.to_numpy())
    else:
        columns = _column_lists(frame)
        parts["data"] = list(zip(*columns)) if columns else [()] * len(frame)
    if not _default_range_index(frame.index):
        parts["index"] = _values_to_list(_array_of(frame.index))
    return parts


def _frame_to_records(frame: pd.DataFrame) -> list[dict[Any, Any]]:
    names = frame.columns.tolist()
    columns = _column_lists(frame)
    return [dict(zip(names, row)) for row in zip(*columns)] if columns else [{} for _ in range(len(frame))]
