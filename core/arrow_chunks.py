"""DataFrame chunks as Arrow IPC streams: batch scoring's fast path to deployflow's own model servers.

JSON is what the MLflow scoring protocol speaks, and for a numeric chunk most of a server's time goes
into it: parsing 2,000 rows of three float columns and building the frame costs about 0.7 ms, the
Arrow stream of the same rows about 0.06 ms, and the client writes it in a quarter of the time
(``benchmarks/bench_batch.py`` prints the throughput both ways). So :func:`deployflow.batch_predict`
posts a chunk as ``application/vnd.apache.arrow.stream`` when the route says the server reads it (the
``local`` target's servers and routers do) and the chunk is one Arrow carries exactly as JSON would:

* column names are distinct strings and the index is the default range (batch chunks always are);
* every column is float64, an integer type that fits int64, bool, or text (``str`` values with
  missing ones, in an object column or one of pandas' string dtypes);
* the chunk has rows.

Anything else (float32, nullable ``Int64`` and ``boolean``, categoricals, datetimes, bytes, mixed
objects, ``params``)
goes as JSON, as it always did. What the model receives is the same frame either way: infinities
arrive as NaN as JSON's ``null`` makes them, integers as int64, and the server types columns that
are only missing values as JSON reading does (:func:`deployflow.payloads.decode_request`).
``tests/test_arrow_chunks.py`` holds both paths to that on random frames and on served models.

A server that does not read Arrow answers 415 before reading the body; batch scoring then sends that
chunk and the rest of the job as JSON.

Answers go the other way the same way: batch scoring asks a route that reads Arrow for an Arrow answer
(``Accept: application/vnd.apache.arrow.stream, application/json``), and the local target's server
answers with :func:`encode_predictions` when the model's output is one Arrow carries exactly as batch
scoring reads the JSON answer (numeric and bool arrays and DataFrames), and with JSON otherwise; the
answer's Content-Type says which. Reading the JSON answer of 2,000 floats and making the array of it
costs the client about 60 us, the Arrow answer about 10 us, and the server writes it in about 7 us
instead of 48. Other servers ignore the header and answer JSON. ``tests/test_arrow_answers.py`` holds both
answers to the same predictions over the outputs of served models.

pyarrow is imported only when a body is written or read.
"""

from __future__ import annotations

from functools import lru_cache
from typing import TYPE_CHECKING, Any

from .errors import InvalidInputError

if TYPE_CHECKING:  # pragma: no cover - typing only
    import pandas as pd

__all__ = [
    "CONTENT_TYPE_ARROW",
    "accepts_arrow",
    "arrow_readable",
    "decode_frame",
    "decode_predictions",
    "encode_frame",
    "encode_predictions",
]

#: The media type of an Arrow IPC stream (https://www.iana.org/assignments/media-types).
CONTENT_TYPE_ARROW = "application/vnd.apache.arrow.stream"

_INTEGER_KINDS = "iu"


@lru_cache(maxsize=1)
def arrow_readable() -> bool:
    """Whether this process can read and write Arrow bodies (pyarrow is installed)."""
    import importlib.util

    return importlib.util.find_spec("pyarrow") is not None


def encode_frame(frame: pd.DataFrame, *, ignore_index: bool = False) -> bytes | None:
    """``frame`` as an Arrow IPC stream, or ``None`` when it must go as JSON (see the module docstring).

    ``ignore_index=True`` encodes the columns whatever the index, for a caller that would otherwise
    reset it to the default range first (batch scoring, which matches answers to rows by position):
    the copy that makes cost about 8 us for 2,000 rows of three floats, the encoding itself 22 us.
    """
    if not len(frame) or not frame.shape[1] or not arrow_readable():
        return None
    import pandas as pd

    if not ignore_index:
        index = frame.index
        if not (isinstance(index, pd.RangeIndex) and index.start == 0 and index.step == 1):
            return None
    names = _column_names(frame.columns)
    if names is None:
        return None
    import numpy as np

    from .jsoncodec import _frame_dtypes  # the dtypes without building a Series of them

    dtypes = _frame_dtypes(frame)
    first = dtypes[0]
    if isinstance(first, np.dtype) and first.kind in "fiub" and all(dtype == first for dtype in dtypes[1:]):
        arrays = _uniform_arrays(frame.to_numpy(), first)  # one block: a view, its columns cost nothing
    else:
        arrays = []
        # Column by column (ruff's PERF102 takes frame.items() for a dict's: .values is the array)
        for _, series in frame.items():  # noqa: PERF102
            values = _values(series)
            # None: an extension dtype other than text (Int64, boolean, category, datetime with tz...)
            array = None if values is None else _arrow_array(values)
            if array is None:
                return None
            arrays.append(array)
    if arrays is None:
        return None
    return _stream(names, arrays)


def _stream(names: tuple[str, ...], arrays: list[Any], shape: bytes | None = None) -> bytes:
    """An IPC stream of one batch of ``arrays`` named ``names`` (an answer's ``shape`` in its schema).

    What an IPC stream writer writes: the schema's message, the batch's, the end-of-stream marker;
    without building a writer per chunk, and with the schema's bytes made once for all the chunks.
    """
    import pyarrow as pa

    schema, schema_message = _schema(names, tuple(array.type for array in arrays), shape)
    batch = pa.RecordBatch.from_arrays(arrays, schema=schema)
    return b"".join((schema_message, batch.serialize().to_pybytes(), _END_OF_STREAM))


#: The last column index seen by :func:`_column_names`, and its names (``None``: not Arrow's).
_last_columns: tuple[Any, tuple[str, ...] | None] = (None, None)


def _column_names(columns: Any) -> tuple[str, ...] | None:
    """The names of a column index when they are distinct strings, else ``None``.

    The chunks of one input share the values of their column index (each slice has an ``Index`` of
    its own over the same array, which pandas never changes), and listing a pandas 3 string index
    costs about 4 us, a fifth of the encoding: the names of the last array seen are remembered.
    """
    global _last_columns
    values = getattr(columns, "_data", columns)  # pandas' own array under the Index
    seen, names = _last_columns
    if seen is values:
        return names
    listed = tuple(columns.tolist())
    names = listed if all(type(name) is str for name in listed) and len(set(listed)) == len(listed) else None
    _last_columns = (values, names)
    return names


#: An IPC stream's end: the continuation marker and a zero length (the Arrow columnar format spec).
_END_OF_STREAM = b"\xff\xff\xff\xff\x00\x00\x00\x00"


def _uniform_arrays(matrix: Any, dtype: Any) -> list[Any] | None:
    """The Arrow columns of a frame whose columns all have numpy ``dtype``, from its ``to_numpy()``: the
    checks and conversions of :func:`_arrow_array`, made once for the whole matrix."""
    import numpy as np
    import pyarrow as pa

    kind = dtype.kind
    if kind == "f":
        if dtype.itemsize != 8:
            return None
        infinite = np.isinf(matrix)
        if infinite.any():
            matrix = np.where(infinite, np.nan, matrix)
        arrow_type = pa.float64()
    elif kind in _INTEGER_KINDS:
        if kind == "u" and dtype.itemsize == 8 and matrix.size and matrix.max() > np.iinfo(np.int64).max:
            return None
        matrix, arrow_type = matrix.astype(np.int64, copy=False), pa.int64()
    else:
        arrow_type = pa.bool_()
    return [pa.array(matrix[:, position], type=arrow_type) for position in range(matrix.shape[1])]


def _arrow_array(values: Any) -> Any:
    """One column's numpy values as the Arrow array that reads back as JSON's reading would, or ``None``."""
    import numpy as np
    import pyarrow as pa

    kind = values.dtype.kind
    if kind == "f":
        if values.dtype.itemsize != 8:
            return None  # JSON writes a float32's shortest text, which reads back as another float64
        infinite = np.isinf(values)
        if infinite.any():
            values = np.where(infinite, np.nan, values)  # JSON's null: the server reads NaN
        return pa.array(values, type=pa.float64())
    if kind in _INTEGER_KINDS:
        if kind == "u" and values.dtype.itemsize == 8 and values.size and values.max() > np.iinfo(np.int64).max:
            return None
        return pa.array(values.astype(np.int64, copy=False), type=pa.int64())
    if kind == "b":
        return pa.array(values, type=pa.bool_())
    if kind == "O" and _text_with_missing(values):
        return pa.array(values, type=pa.string(), from_pandas=True)
    return None


@lru_cache(maxsize=128)
def _schema(names: tuple[str, ...], types: tuple[Any, ...], shape: bytes | None = None) -> tuple[Any, bytes]:
    """The Arrow schema of these columns, and its IPC message. An answer's (``shape`` given, see
    :data:`_ANSWER_SHAPE`) says its shape in the metadata and has no nullable columns."""
    import pyarrow as pa

    if shape is None:
        schema = pa.schema([pa.field(name, kind) for name, kind in zip(names, types)])
    else:
        schema = pa.schema([pa.field(name, kind, nullable=False) for name, kind in zip(names, types)],
                           metadata={_ANSWER_SHAPE: shape})
    return schema, schema.serialize().to_pybytes()


def _values(series: pd.Series) -> Any:
    """The column's numpy values; text columns of pandas' string dtypes as objects (missing: None)."""
    import numpy as np
    import pandas as pd

    if isinstance(series.dtype, np.dtype):
        return series.to_numpy()
    if isinstance(series.dtype, pd.StringDtype):
        return series.to_numpy(dtype=object, na_value=None)
    return None


def _text_with_missing(values: Any) -> bool:
    """Every value a ``str``, ``None`` or a float NaN (what pandas uses for a missing text value)."""
    for value in values:
        if type(value) is str or value is None:
            continue
        if type(value) is float and value != value:
            continue
        return False
    return True


def decode_frame(body: bytes) -> pd.DataFrame:
    """The DataFrame in an Arrow IPC stream body, typed as JSON reading would type the same values.

    Raises :class:`~deployflow.errors.InvalidInputError` (``BAD_REQUEST``) for a body that is not an
    Arrow stream, or that holds names or types batch scoring never sends.
    """
    import pandas as pd
    import pyarrow as pa

    try:
        table = pa.ipc.open_stream(body).read_all()
    except (pa.ArrowException, OSError, ValueError) as error:
        raise _bad_request(f"The request body is not an Arrow IPC stream: {error}") from error
    names = table.column_names
    if len(set(names)) != len(names):
        raise _bad_request("The Arrow stream has repeated column names")
    columns = {}
    for name, column in zip(names, table.columns):
        kind = column.type
        if pa.types.is_float64(kind) or pa.types.is_int64(kind) or pa.types.is_boolean(kind):
            columns[name] = column.to_numpy()  # nulls: NaN in float and int64 (as JSON), None in bool
        elif pa.types.is_string(kind) or pa.types.is_large_string(kind) or pa.types.is_null(kind):
            columns[name] = column.to_numpy(zero_copy_only=False)
        else:
            raise _bad_request(
                f"Column {name!r} of the Arrow stream has type {kind}; Arrow bodies carry float64, int64, "
                "bool and string columns (send anything else as JSON)"
            )
    from .payloads import _column_index, _type_null_columns

    frame = pd.DataFrame(columns)  # copied: Arrow's buffers are read-only, and a model may write to its input
    frame.columns = _column_index(list(names))
    return _type_null_columns(frame)


def _bad_request(message: str) -> InvalidInputError:
    return InvalidInputError(message, error_code="BAD_REQUEST", status_code=400)


# --------------------------------------------------------------------------------------------------
# Answers: the predictions of a chunk as an Arrow IPC stream, for a caller that asks for one

#: The schema metadata key that says how an Arrow answer's columns make the predictions: ``array``
#: (one column: a 1-D array), ``matrix`` (a 2-D array, column by column) or ``records`` (a DataFrame).
_ANSWER_SHAPE = b"deployflow.predictions"


def accepts_arrow(accept: bytes | str | None) -> bool:
    """Whether an ``Accept`` header lists :data:`CONTENT_TYPE_ARROW` (in any case, with any parameters
    but ``q=0``, which refuses it), so a server may answer with :func:`encode_predictions`."""
    if not accept:
        return False
    return _accepts_arrow(accept if isinstance(accept, str) else accept.decode("latin-1"))


@lru_cache(maxsize=64)
def _accepts_arrow(accept: str) -> bool:
    for media_range in accept.split(","):
        media_type, *parameters = media_range.split(";")
        if media_type.strip().lower() != CONTENT_TYPE_ARROW:
            continue
        for parameter in parameters:
            name, _, value = parameter.partition("=")
            if name.strip().lower() == "q":
                try:
                    if float(value.strip()) == 0:
                        return False
                except ValueError:
                    return False
        return True
    return False


def encode_predictions(predictions: Any) -> bytes | None:
    """A model's output as an Arrow IPC stream that :func:`decode_predictions` reads as the predictions
    batch scoring reads from the JSON answer ``{"predictions": ...}`` of the same output
    (:func:`deployflow.batch._runner.parse_predictions`), or ``None`` when the answer must be JSON.

    Arrow carries, with at least one row: a 1-D or 2-D numpy array, or a DataFrame with distinct
    ``str`` column names, whose values (every column's, for a DataFrame) are float64, integers that
    fit int64, or bools. Integers arrive as int64, as JSON's reading makes them; NaN and the
    infinities stay as they are. Anything else (float32, whose JSON text reads back as another
    float64; text; Series, dicts, lists, scalars, ``None``; empty outputs) is JSON's.
    """
    if not arrow_readable():
        return None
    import numpy as np
    import pandas as pd

    if isinstance(predictions, np.ndarray):
        if predictions.ndim == 1:
            shape, names, columns = b"array", ("predictions",), [predictions]
        elif predictions.ndim == 2 and predictions.shape[1]:
            shape = b"matrix"
            names = tuple(str(position) for position in range(predictions.shape[1]))
            columns = [predictions[:, position] for position in range(predictions.shape[1])]
        else:
            return None
        rows = predictions.shape[0]
    elif type(predictions) is pd.DataFrame:
        names = _column_names(predictions.columns)
        if not names:
            return None
        from .jsoncodec import _column_arrays

        shape, columns, rows = b"records", _column_arrays(predictions), len(predictions)
    else:
        return None
    if not rows:
        return None
    arrays = []
    for values in columns:
        array = _answer_array(values)
        if array is None:
            return None
        arrays.append(array)
    return _stream(names, arrays, shape)


def _answer_array(values: Any) -> Any:
    """One column of an answer as an Arrow array (int64 for every integer type), or ``None``: a
    request's column (:func:`_arrow_array`) but that infinities stay and text is JSON's."""
    import numpy as np
    import pyarrow as pa

    dtype = getattr(values, "dtype", None)
    if not isinstance(dtype, np.dtype) or dtype.kind not in "fiub":
        return None  # an extension array (nullable Int64, string, category...), text, objects: JSON's
    if dtype.kind == "f":
        return pa.array(values, type=pa.float64()) if dtype.itemsize == 8 else None
    return _arrow_array(values)


def decode_predictions(body: bytes, column: str) -> Any:
    """The predictions in an answer written by :func:`encode_predictions`: a 1-D numpy array, or a
    DataFrame whose columns are named as batch scoring names them (``<column>_0``, ``<column>_1``...
    for a 2-D array; the model's own names for a DataFrame). The arrays are the caller's to change.

    Raises :class:`~deployflow.errors.RemoteError` for a body that is not such an answer.
    """
    import pandas as pd
    import pyarrow as pa

    from .errors import RemoteError

    try:
        table = pa.ipc.open_stream(body).read_all()
    except (pa.ArrowException, OSError, ValueError) as error:
        raise RemoteError(f"The scoring service answered with an Arrow body that cannot be read: {error}") from error
    shape = (table.schema.metadata or {}).get(_ANSWER_SHAPE)
    arrays = []
    for name, values in zip(table.column_names, table.columns):
        if values.null_count or not (
            pa.types.is_float64(values.type) or pa.types.is_int64(values.type) or pa.types.is_boolean(values.type)
        ):
            raise RemoteError(f"The Arrow answer's column {name!r} has type {values.type} or missing values")
        arrays.append(values.to_numpy().copy())  # Arrow's buffers are read-only
    if shape == b"array" and len(arrays) == 1:
        return arrays[0]
    if shape == b"matrix" and arrays:
        names = [f"{column}_{position}" for position in range(len(arrays))]
    elif shape == b"records" and arrays:
        names = table.column_names
    else:
        raise RemoteError(f"The Arrow answer has no predictions of a known shape ({shape!r}, {len(arrays)} columns)")
    return pd.DataFrame(dict(zip(names, arrays)), copy=False)
