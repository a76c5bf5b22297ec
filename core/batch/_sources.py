"""Reading batch input as a stream of equal-sized chunks, whatever the input is.

Every source is cut into chunks of exactly ``chunk_size`` rows (the last may be shorter), however the
underlying reader happens to batch: the same input and chunk size always give the same chunks, which is
what lets a killed job resume part by part. Files are read incrementally (Parquet batch by batch, CSV
block by block, JSON lines chunk by chunk), so memory depends on the chunk size, not the file size.

:func:`open_source` reads the first frame at once, so a file that cannot be read, or a column the job
needs that the input lacks, is an :class:`~deployflow.errors.InvalidInputError` naming the file or the
column before any request is sent or any output written. A Parquet or CSV file's columns are checked
once, from its footer or header; each later frame of an iterator and each later chunk of a JSON-lines
file is checked as it is read (a set comparison per frame, not per row).
"""

from __future__ import annotations

import itertools
import os
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Iterable, Iterator

from ..errors import InvalidInputError

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["Chunk", "InputSource", "open_source", "FORMATS"]

FORMATS = {".parquet": "parquet", ".pq": "parquet", ".csv": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "jsonl"}


@dataclass
class Chunk:
    """``frame`` holds rows ``start`` to ``start + len(frame) - 1`` of the input, in order."""

    index: int
    start: int
    frame: pd.DataFrame

    @property
    def stop(self) -> int:
        return self.start + len(self.frame)


@dataclass
class InputSource:
    """A description of the input (for the manifest) and a way to read it in chunks."""

    description: str
    total_rows: int | None
    size_bytes: int | None
    frames: Iterable[pd.DataFrame]
    close: Callable[[], None] = field(default=lambda: None, repr=False)

    def chunks(self, chunk_size: int) -> Iterator[Chunk]:
        return _rechunk(self.frames, chunk_size)


def format_of(path: str, explicit: str | None, argument: str = "input_format") -> str:
    """The format of file ``path``: ``explicit`` when given, else from the name's suffix. ``argument``
    names the parameter the user can pass when the name does not say."""
    if explicit:
        if explicit not in set(FORMATS.values()):
            raise InvalidInputError(f"Unknown file format {explicit!r} ({argument}): use 'parquet', 'csv' or 'jsonl'")
        return explicit
    name = path.rstrip("/")
    for suffix in (".gz", ".bz2", ".zst", ".xz"):
        if name.endswith(suffix):
            name = name[: -len(suffix)]
    ext = os.path.splitext(name)[1].lower()
    if ext not in FORMATS:
        raise InvalidInputError(
            f"Cannot tell the format of {path!r} from its name: pass {argument}='parquet', 'csv' or 'jsonl'"
        )
    return FORMATS[ext]


def open_source(
    inputs: Any,
    *,
    chunk_size: int,
    input_format: str | None = None,
    columns: list[Any] | None = None,
    required: list[Any] | None = None,
) -> InputSource:
    """Wrap ``inputs`` (DataFrame, path or URL, or an iterable of DataFrames) as an :class:`InputSource`.

    ``columns``: read only these. ``required``: the columns every frame must have (an
    :class:`~deployflow.errors.InvalidInputError` naming the missing ones otherwise). The first frame is
    read now, so an unreadable file fails here.
    """
    import pandas as pd

    required = list(required or ())
    if isinstance(inputs, pd.DataFrame):
        require_columns(inputs.columns, required, "The input DataFrame")
        frame = inputs if columns is None else inputs[columns]
        return InputSource("DataFrame", len(frame), None, [frame])
    if isinstance(inputs, (str, os.PathLike)):
        source = _file_source(os.fspath(inputs), chunk_size, input_format, columns, required)
    elif isinstance(inputs, (list, tuple)) or hasattr(inputs, "__iter__") or hasattr(inputs, "__next__"):
        if isinstance(inputs, (dict, bytes)):
            raise InvalidInputError(f"Cannot batch-score a {type(inputs).__name__}: pass a DataFrame, a path or an iterator of DataFrames")
        source = InputSource("iterator of DataFrames", None, None, _checked_frames(inputs, columns, required))
    else:
        raise InvalidInputError(
            f"Cannot batch-score a {type(inputs).__name__}: pass a pandas DataFrame, a file path (Parquet, CSV, "
            "JSON lines), an iterator of DataFrames, or a Dask DataFrame"
        )
    return _primed(source)


def _primed(source: InputSource) -> InputSource:
    """``source`` with its first frame already read (so reading errors surface now)."""
    frames = iter(source.frames)
    close = getattr(frames, "close", lambda: None)
    try:
        first = next(frames)
    except StopIteration:
        return InputSource(source.description, source.total_rows, source.size_bytes, [], close)
    except BaseException:
        close()
        raise
    return InputSource(source.description, source.total_rows, source.size_bytes, itertools.chain([first], frames), close)


def require_columns(present: Iterable[Any], required: list[Any], where: str) -> None:
    """Raise :class:`~deployflow.errors.InvalidInputError` naming the ``required`` columns not ``present``."""
    if not required:
        return
    have = set(present)
    missing = [c for c in required if c not in have]
    if missing:
        raise InvalidInputError(f"{where} has no column(s) {', '.join(map(repr, missing))}")


def _checked_frames(frames: Iterable[Any], columns: list[Any] | None, required: list[Any]) -> Iterator[pd.DataFrame]:
    import pandas as pd

    for number, frame in enumerate(frames):
        if not isinstance(frame, pd.DataFrame):
            raise InvalidInputError(f"Item {number} of the input iterator is a {type(frame).__name__}, not a DataFrame")
        require_columns(frame.columns, required, f"Item {number} of the input iterator")
        yield frame if columns is None else frame[columns]


def _is_url(path: str) -> bool:
    return "://" in path and not path.startswith("file://")


def _file_source(
    path: str, chunk_size: int, input_format: str | None, columns: list[Any] | None, required: list[Any]
) -> InputSource:
    fmt = format_of(path, input_format)
    size: int | None = None
    if _is_url(path):
        from .._extras import require

        fsspec = require("fsspec", None, f"reading {path!r} (a URL)", package="fsspec")
        fs, _, (resolved,) = fsspec.get_fs_token_paths(path)
        if not fs.exists(resolved):
            raise InvalidInputError(f"Input {path!r} does not exist")
        size = fs.size(resolved)
        opener = lambda: fs.open(resolved, "rb")  # noqa: E731
    else:
        local = path[len("file://"):] if path.startswith("file://") else path
        if not os.path.isfile(local):
            raise InvalidInputError(f"Input file {path!r} does not exist")
        size = os.path.getsize(local)
        opener = lambda: open(local, "rb")  # noqa: E731
    description = f"{fmt} file {path}"
    if fmt == "parquet":
        total, names = _parquet_shape(opener, path)
        require_columns(names, required, f"The Parquet input {path!r}")
        return InputSource(description, total, size, _read_parquet(opener, path, chunk_size, columns))
    reader = _read_csv if fmt == "csv" else _read_jsonl
    return InputSource(description, None, size, reader(opener, path, chunk_size, columns, required))


def _unreadable(kind: str, path: str, error: BaseException) -> InvalidInputError:
    return InvalidInputError(f"Cannot read the {kind} input {path!r}: {error}")


def _parquet_shape(opener: Any, path: str) -> tuple[int, list[str]]:
    """The row count and column names of a Parquet file, from its footer."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        with opener() as handle:
            parquet = pq.ParquetFile(handle)
            return parquet.metadata.num_rows, parquet.schema_arrow.names
    except (pa.ArrowException, OSError) as exc:
        raise _unreadable("Parquet", path, exc) from exc


def _read_parquet(opener: Any, path: str, chunk_size: int, columns: list[Any] | None) -> Iterator[pd.DataFrame]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    with opener() as handle:
        try:
            parquet = pq.ParquetFile(handle, pre_buffer=False)
            # One row group at a time, released before the next is read: memory follows the file's row
            # group size, not its length.
            for group in range(parquet.num_row_groups):
                table = parquet.read_row_group(group, columns=columns)
                for batch in table.to_batches(max_chunksize=chunk_size):
                    yield batch.to_pandas()
                del table
        except (pa.ArrowException, OSError) as exc:  # a footer that reads but data pages that do not
            raise _unreadable("Parquet", path, exc) from exc


def _read_csv(
    opener: Any, path: str, chunk_size: int, columns: list[Any] | None, required: list[Any]
) -> Iterator[pd.DataFrame]:
    import pyarrow as pa
    import pyarrow.csv as pacsv

    convert = pacsv.ConvertOptions(include_columns=columns) if columns else None
    with opener() as handle:
        try:
            reader = pacsv.open_csv(handle, convert_options=convert)
            require_columns(reader.schema.names, required, f"The CSV input {path!r}")
            for batch in reader:
                yield batch.to_pandas()
        except (pa.ArrowException, OSError) as exc:  # ArrowKeyError: a column named in include_columns is absent
            raise _unreadable("CSV", path, exc) from exc


def _read_jsonl(
    opener: Any, path: str, chunk_size: int, columns: list[Any] | None, required: list[Any]
) -> Iterator[pd.DataFrame]:
    import pandas as pd

    with opener() as handle:
        try:
            for frame in pd.read_json(handle, lines=True, chunksize=chunk_size):
                # JSON lines may omit keys: every chunk is checked, not only the first.
                require_columns(frame.columns, required, f"The JSON lines input {path!r}")
                yield frame if columns is None else frame[columns]
        except (ValueError, OSError) as exc:
            raise _unreadable("JSON lines", path, exc) from exc


def _rechunk(frames: Iterable[pd.DataFrame], chunk_size: int) -> Iterator[Chunk]:
    """Cut a stream of frames of any sizes into chunks of exactly ``chunk_size`` rows."""
    import pandas as pd

    pending: list[pd.DataFrame] = []
    pending_rows = 0
    start = 0
    index = 0
    for frame in frames:
        offset = 0
        while offset < len(frame):
            take = min(chunk_size - pending_rows, len(frame) - offset)
            pending.append(frame.iloc[offset : offset + take])
            pending_rows += take
            offset += take
            if pending_rows == chunk_size:
                chunk = pending[0] if len(pending) == 1 else pd.concat(pending)
                yield Chunk(index, start, chunk)
                index += 1
                start += chunk_size
                pending, pending_rows = [], 0
    if pending_rows:
        yield Chunk(index, start, pending[0] if len(pending) == 1 else pd.concat(pending))
