"""Reading batch input as a stream of equal-sized chunks, whatever the input is.

Every source is cut into chunks of exactly ``chunk_size`` rows (the last may be shorter), however the
underlying reader happens to batch: the same input and chunk size always give the same chunks, which is
what lets a killed job resume part by part. Files are read incrementally (Parquet batch by batch, CSV
block by block, JSON lines chunk by chunk), so memory depends on the chunk size, not the file size.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Iterable, Iterator

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

    def chunks(self, chunk_size: int) -> Iterator[Chunk]:
        return _rechunk(self.frames, chunk_size)


def format_of(path: str, explicit: str | None) -> str:
    if explicit:
        if explicit not in set(FORMATS.values()):
            raise InvalidInputError(f"Unknown file format {explicit!r}: use 'parquet', 'csv' or 'jsonl'")
        return explicit
    name = path.rstrip("/")
    for suffix in (".gz", ".bz2", ".zst", ".xz"):
        if name.endswith(suffix):
            name = name[: -len(suffix)]
    ext = os.path.splitext(name)[1].lower()
    if ext not in FORMATS:
        raise InvalidInputError(
            f"Cannot tell the format of {path!r} from its name: pass input_format='parquet', 'csv' or 'jsonl'"
        )
    return FORMATS[ext]


def open_source(inputs: Any, *, chunk_size: int, input_format: str | None = None, columns: list[str] | None = None) -> InputSource:
    """Wrap ``inputs`` (DataFrame, path or URL, or an iterable of DataFrames) as an :class:`InputSource`."""
    import pandas as pd

    if isinstance(inputs, pd.DataFrame):
        frame = inputs if columns is None else inputs[columns]
        return InputSource("DataFrame", len(frame), None, [frame])
    if isinstance(inputs, (str, os.PathLike)):
        return _file_source(os.fspath(inputs), chunk_size, input_format, columns)
    if isinstance(inputs, (list, tuple)) or hasattr(inputs, "__iter__") or hasattr(inputs, "__next__"):
        if isinstance(inputs, (dict, bytes)):
            raise InvalidInputError(f"Cannot batch-score a {type(inputs).__name__}: pass a DataFrame, a path or an iterator of DataFrames")
        return InputSource("iterator of DataFrames", None, None, _checked_frames(inputs, columns))
    raise InvalidInputError(
        f"Cannot batch-score a {type(inputs).__name__}: pass a pandas DataFrame, a file path (Parquet, CSV, "
        "JSON lines), an iterator of DataFrames, or a Dask DataFrame"
    )


def _checked_frames(frames: Iterable[Any], columns: list[str] | None) -> Iterator[pd.DataFrame]:
    import pandas as pd

    for number, frame in enumerate(frames):
        if not isinstance(frame, pd.DataFrame):
            raise InvalidInputError(f"Item {number} of the input iterator is a {type(frame).__name__}, not a DataFrame")
        yield frame if columns is None else frame[columns]


def _is_url(path: str) -> bool:
    return "://" in path and not path.startswith("file://")


def _file_source(path: str, chunk_size: int, input_format: str | None, columns: list[str] | None) -> InputSource:
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
    readers = {"parquet": _read_parquet, "csv": _read_csv, "jsonl": _read_jsonl}
    total = _parquet_rows(opener) if fmt == "parquet" else None
    return InputSource(f"{fmt} file {path}", total, size, readers[fmt](opener, chunk_size, columns))


def _parquet_rows(opener: Any) -> int:
    import pyarrow.parquet as pq

    with opener() as handle:
        return pq.ParquetFile(handle).metadata.num_rows


def _read_parquet(opener: Any, chunk_size: int, columns: list[str] | None) -> Iterator[pd.DataFrame]:
    import pyarrow.parquet as pq

    with opener() as handle:
        parquet = pq.ParquetFile(handle, pre_buffer=False)
        # One row group at a time, released before the next is read: memory follows the file's row
        # group size, not its length.
        for group in range(parquet.num_row_groups):
            table = parquet.read_row_group(group, columns=columns)
            for batch in table.to_batches(max_chunksize=chunk_size):
                yield batch.to_pandas()
            del table


def _read_csv(opener: Any, chunk_size: int, columns: list[str] | None) -> Iterator[pd.DataFrame]:
    import pyarrow as pa
    import pyarrow.csv as pacsv

    convert = pacsv.ConvertOptions(include_columns=columns) if columns else None
    with opener() as handle:
        try:
            reader = pacsv.open_csv(handle, convert_options=convert)
            for batch in reader:
                yield batch.to_pandas()
        except pa.ArrowInvalid as exc:
            raise InvalidInputError(f"Cannot read the CSV input: {exc}") from exc


def _read_jsonl(opener: Any, chunk_size: int, columns: list[str] | None) -> Iterator[pd.DataFrame]:
    import pandas as pd

    with opener() as handle:
        try:
            for frame in pd.read_json(handle, lines=True, chunksize=chunk_size):
                yield frame if columns is None else frame[columns]
        except ValueError as exc:
            raise InvalidInputError(f"Cannot read the JSON lines input: {exc}") from exc


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
