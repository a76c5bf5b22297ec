"""Batch scoring: :func:`batch_predict`.

Score a DataFrame, a file (Parquet, CSV, JSON lines; fsspec URLs when fsspec is installed), an iterator of
DataFrames or a Dask DataFrame against a deployment or endpoint, in chunks, several at a time, with
bounded memory, rows kept in input order, and output written part by part so a killed job resumes
where it stopped.

Needs the ``batch`` extra (``pip install 'deployflow[batch]'``: pandas, numpy, pyarrow, aiohttp, tqdm),
checked when a function is called, not when this module is imported; Dask inputs need ``dask`` too.
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Callable, Iterator

from ..errors import InvalidInputError
from ..redaction import get_logger
from ..retry import as_bool, as_int, as_number
from ._output import (
    PartWriter,
    check_can_create,
    chunk_fingerprint,
    plan_output,
    secret_free,
)
from ._pipeline import http_route, score_chunks
from ._runner import BatchSummary, ChunkResult, ChunkScorer, Progress, join_results
from ._sources import open_source

if TYPE_CHECKING:
    import pandas as pd

    from ..base import BaseDeploymentClient

__all__ = ["batch_predict", "read_output", "BatchSummary", "Progress"]

logger = get_logger(__name__)

DEFAULT_CHUNK_SIZE = 2000
DEFAULT_CONCURRENCY = 4
DEFAULT_PART_ROWS = 100_000
DEFAULT_SWITCH_INTERVAL = 0.0002
ON_BAD_ROWS = ("raise", "isolate")


def batch_predict(
    client: BaseDeploymentClient | str,
    inputs: Any,
    *,
    deployment_name: str | None = None,
    endpoint: str | None = None,
    output: str | os.PathLike[str] | None = None,
    output_format: str | None = None,
    input_format: str | None = None,
    chunk_size: int | None = None,
    concurrency: int | None = None,
    part_rows: int | None = None,
    feature_columns: list[str] | None = None,
    keep_columns: list[str] | None = None,
    prediction_column: str = "prediction",
    params: dict[str, Any] | None = None,
    on_bad_rows: str = "raise",
    errors_path: str | os.PathLike[str] | None = None,
    resume: bool = True,
    overwrite: bool = False,
    max_chunk_retries: int = 3,
    retry_backoff: float = 1.0,
    progress: bool | None = None,
    progress_callback: Callable[[Progress], None] | None = None,
    switch_interval: float | None = DEFAULT_SWITCH_INTERVAL,
) -> Any:
    """Score ``inputs`` against ``deployment_name`` or ``endpoint`` of ``client``, chunk by chunk.

    While a job scores in this process (any input but a Dask DataFrame), the garbage collector makes
    no full collection of its own: its third threshold (:func:`gc.set_threshold`) is raised, then
    restored when the job ends. A full collection walks every object of the process and stops the job
    meanwhile; young objects are still collected.

    A Dask DataFrame is scored on its cluster, partition by partition: each worker rebuilds the client
    from the target URI and the client's options without their secrets, and scores its partition in
    chunks. The output's columns come from scoring the first two rows on the driver. A partition whose
    predictions lack one of those columns gets it empty (a list output shorter there); one with a
    column beyond them fails the job with :class:`~deployflow.errors.InvalidInputError`. With
    ``output``, the partitions are written as Parquet or CSV parts and joined as for other inputs, but
    written whole each time: a Dask job does not resume.

    A job through an HTTP route (the ``local``, ``v2`` and ``serving`` targets) runs the event loop of
    its requests in the calling thread, which leaves the loop while it writes a result or calls
    ``progress_callback``: answers that arrive meanwhile wait in their sockets and are read when the
    thread comes back, however long it was away (the read timeout does not strike them first).

    :param client: a deployment client, or a target URI to build one.
    :param inputs: a pandas DataFrame; a path or URL of a Parquet, CSV or JSON-lines file; an iterable of
        DataFrames; or a Dask DataFrame (scored on the cluster, see above).
    :param deployment_name: passed to the client as its ``predict`` takes it. Pass the names the target
        needs: a target that serves one model (``serving+http://...``) needs none; the ``local``
        target needs exactly one of ``deployment_name`` and ``endpoint``.
    :param endpoint: as ``deployment_name``.
    :param output: ``None`` returns the scored rows as a DataFrame (its ``attrs["deployflow_summary"]``
        holds the summary). Otherwise the summary is returned and the rows are written:

        * a path whose name has a suffix (``scores.parquet``, ``scores.csv``, ``scores.jsonl``) is
          **one file**, readable by pandas or pyarrow as it is. Parts are written as the job goes to a
          hidden directory beside it (``.scores.csv.parts/``, which also holds the resume records);
          when the job ends they are joined into the file, which appears by an atomic rename, and
          deleted. Until then the file does not exist (or an earlier one is left untouched). An
          existing file not written by a job staged beside it is replaced only with ``overwrite=True``.
        * a path that ends with ``/``, has no suffix, or is an existing directory is a **directory of
          parts**: numbered parts plus ``_manifest.json``, written as the job goes, which are the output.

        The format comes from ``output_format``, else the suffix (of the file, or of the directory's
        name). :func:`read_output` reads either form back.
    :param chunk_size: rows per request (default 2000).
    :param part_rows: rows per output part (default 100,000), rounded down to whole chunks (at least
        one). A part is the unit a killed job resumes from; bigger parts mean fewer files and commits.
    :param concurrency: requests in flight at once (default, when ``None``: the client's
        ``default_batch_concurrency``, else 4). At most twice as many chunks are held in memory.
    :param feature_columns: the input columns sent to the model (default: all).
    :param keep_columns: the input columns copied to the output beside the predictions (default: all;
        ``[]`` keeps none).
    :param prediction_column: the name of a single-output prediction column; multi-output predictions
        become ``<name>_0``, ``<name>_1``..., and record-style predictions keep their own names.
    :param params: passed to the model with every request (MLflow's ``params``).
    :param on_bad_rows: ``"raise"`` (default) stops at the first chunk the service rejects as bad input,
        with the row range in the :class:`~deployflow.errors.BadRowsError`; ``"isolate"`` splits that
        chunk until the bad rows are alone, scores the rest, and writes each bad row with the service's
        message to the errors file.
    :param errors_path: the JSON-lines file of rejected rows with ``"isolate"``. Without it:
        ``<output>.errors.jsonl`` beside a single-file output, ``<output>/_errors/`` (one file per part)
        in a directory of parts; with ``output=None`` it is required.
    :param resume: continue an interrupted job found in ``output`` (its input must be unchanged). The
        job's settings are compared without their secrets: a password in the target URI or the input
        URL is masked before it is stored, so a job resumes after a password change.
    :param overwrite: discard what ``output`` holds and start over.
    :param max_chunk_retries: the chunk's whole retry budget: a chunk is sent at most
        ``1 + max_chunk_retries`` times, the client transport's own retries included (they draw from
        the same counter; the client's ``max_retries`` does not add to it), within the client's
        predict total timeout. Only failures the retry rules allow for the target's declared
        idempotency are retried (:mod:`deployflow.retry`). A plugin client with its own retry loop
        makes its retries inside each of these attempts.
    :param retry_backoff: the backoff factor of the waits between a chunk's attempts (seconds; the
        service's ``Retry-After`` wins when it sends one).
    :param progress: show a progress bar (default: only when stderr is a terminal).
    :param progress_callback: called with a :class:`Progress` after each chunk.
    :param switch_interval: while a job scored through ``client.predict`` from a thread pool runs
        (a target without an HTTP route for batch scoring, see :mod:`deployflow.batch._pipeline`),
        the interpreter's thread switch interval (:func:`sys.setswitchinterval`) is lowered to this
        many seconds, then restored. A pool thread that sends a request otherwise waits up to 5 ms for
        the GIL while another thread encodes or decodes, and the server waits with it: that left the
        server idle a third of the time in measurements. It is process-wide for the job's duration
        (other threads switch more often too); ``None`` leaves the interpreter alone. A job through an
        HTTP route (the ``local``, ``v2`` and ``serving`` targets) runs in the calling thread and leaves it
        alone.
    :returns: a DataFrame (``output=None``), a :class:`BatchSummary` (``output`` given), or for a Dask
        input a Dask DataFrame / a summary.
    :raises InvalidInputError: before any request is sent and before anything is written, for an
        argument out of range (numbers and flags are read as :mod:`deployflow.retry` reads them:
        ``"100"`` is 100, ``"no"`` is false, ``concurrency=0`` is refused), an input file that cannot be
        read (named in the message), a ``feature_columns`` / ``keep_columns`` entry the input lacks
        (named), or an output or errors path that cannot be created (named). A later frame of an
        iterator or a later chunk of a JSON-lines file that lacks a column fails when it is read.
    """
    from .._extras import require_extra
    from ..api import get_deploy_client

    require_extra("batch", "batch scoring (deployflow.batch_predict)")
    if isinstance(client, str):
        client = get_deploy_client(client)
    # The names go to the client as given: the target says which it needs, as its predict does.
    names = (("deployment_name", deployment_name), ("endpoint", endpoint))
    target = {key: value for key, value in names if value is not None}
    if on_bad_rows not in ON_BAD_ROWS:
        raise InvalidInputError(f"on_bad_rows must be one of {ON_BAD_ROWS}, got {on_bad_rows!r}")
    chunk_size = DEFAULT_CHUNK_SIZE if chunk_size is None else as_int(chunk_size, "chunk_size", minimum=1)
    if concurrency is None:
        concurrency = getattr(client, "default_batch_concurrency", None) or DEFAULT_CONCURRENCY
    concurrency = as_int(concurrency, "concurrency", minimum=1)
    part_rows = DEFAULT_PART_ROWS if part_rows is None else as_int(part_rows, "part_rows", minimum=1)
    max_chunk_retries = as_int(max_chunk_retries, "max_chunk_retries", minimum=0)
    retry_backoff = as_number(retry_backoff, "retry_backoff", positive=False)
    if switch_interval is not None:
        switch_interval = as_number(switch_interval, "switch_interval", positive=True)
    resume = as_bool(resume, "resume")
    overwrite = as_bool(overwrite, "overwrite")
    if progress is not None:
        progress = as_bool(progress, "progress")
    if params is not None and not isinstance(params, Mapping):
        raise InvalidInputError(f"params must be a dict, got {type(params).__name__}")
    params = dict(params) if params is not None else None
    if not isinstance(prediction_column, str) or not prediction_column:
        raise InvalidInputError(f"prediction_column must be a non-empty string, got {prediction_column!r}")
    feature_columns = _column_list(feature_columns, "feature_columns")
    keep_columns = _column_list(keep_columns, "keep_columns")
    required = list(dict.fromkeys([*(keep_columns or []), *(feature_columns or [])]))
    scorer = ChunkScorer(
        client,
        target,
        feature_columns=feature_columns,
        keep_columns=keep_columns,
        prediction_column=prediction_column,
        isolate_bad_rows=on_bad_rows == "isolate",
        max_chunk_retries=max_chunk_retries,
        retry_backoff=retry_backoff,
        params=params,
    )
    if _is_dask(inputs):
        from ._dask import batch_predict_dask

        return batch_predict_dask(
            client, inputs, scorer,
            output=output, output_format=output_format, chunk_size=chunk_size, required=required,
        )

    plan = plan_output(output, output_format) if output is not None else None
    isolate = on_bad_rows == "isolate"
    if isolate and plan is None and errors_path is None:
        raise InvalidInputError("on_bad_rows='isolate' without output needs errors_path= for the rejected rows")
    if errors_path is not None and not isinstance(errors_path, (str, os.PathLike)):
        raise InvalidInputError(f"errors_path must be a file path, got {errors_path!r}")
    errors_file = os.fspath(errors_path) if errors_path is not None and isolate else None
    if errors_file is not None:
        check_can_create(errors_file, "errors file")
    if plan is not None:
        check_can_create(plan.parts_dir, "output")
        if plan.single_file:
            check_can_create(plan.path, "output")
        if isolate and errors_file is None and plan.single_file:
            errors_file = plan.default_errors_path()
    columns = None
    if feature_columns is not None and keep_columns is not None:
        columns = required
    source = open_source(inputs, chunk_size=chunk_size, input_format=input_format, columns=columns, required=required)
    summary = BatchSummary(output_path=plan.path if plan is not None else None)
    started = time.monotonic()
    writer: PartWriter | None = None
    part_chunks = max(1, part_rows // chunk_size)
    try:
        route = http_route(scorer)
        if plan is not None:
            job = {
                "input": source.description,
                "input_bytes": source.size_bytes,
                "chunk_size": chunk_size,
                "part_chunks": part_chunks,
                "format": plan.fmt,
                "target": getattr(client, "target_uri", None),
                **target,
                "feature_columns": feature_columns,
                "keep_columns": keep_columns,
                "prediction_column": prediction_column,
                "params": params,
                "on_bad_rows": on_bad_rows,
            }
            writer = PartWriter(plan, job=secret_free(job), resume=resume, overwrite=overwrite, errors_file=errors_file)
    except BaseException:
        source.close()
        raise
    summary.errors_path = (writer.errors_path() if writer is not None else errors_file) if isolate else None
    collected: list[ChunkResult] = []
    errors: list[dict[str, Any]] = []
    bar = _progress_bar(progress, source.total_rows)
    fingerprints: dict[int, str] = {}  # of chunks read but not yet committed (reading runs ahead)
    part: list[ChunkResult] = []

    def skip(chunk: Any) -> bool:
        if writer is None:
            return False
        fingerprint = chunk_fingerprint(chunk.frame)
        number, offset = divmod(chunk.index, part_chunks)
        entry = writer.finished(number)
        if entry is not None:
            writer.check_unchanged(number, offset, fingerprint)
            summary.resumed_chunks += 1
            if offset == 0:
                summary.failed_rows += entry["failed_rows"]
            return True
        fingerprints[chunk.index] = fingerprint
        return False

    def commit_part() -> None:
        assert writer is not None
        first = part[0].chunk
        frame = join_results(part, prediction_column)
        rejected = [e for r in part for e in r.errors]
        rows = sum(len(r.chunk.frame) for r in part)
        hashes = [fingerprints.pop(r.chunk.index) for r in part]
        writer.commit(first.index // part_chunks, first.start, rows, hashes, frame, rejected)
        part.clear()

    def deliver(result: Any) -> None:
        if writer is not None:
            part.append(result)
            if (result.chunk.index + 1) % part_chunks == 0:
                commit_part()
        else:
            collected.append(result)
            errors.extend(result.errors)
        summary.failed_rows += len(result.errors)

    def on_progress(chunk: Any, failed: int) -> None:
        summary.rows += len(chunk.frame)
        summary.chunks += 1
        summary.seconds = time.monotonic() - started
        if bar is not None:
            bar.update(len(chunk.frame))
        if progress_callback is not None:
            progress_callback(Progress(summary.rows, source.total_rows, summary.chunks, summary.failed_rows, summary.seconds))

    try:
        # One thread does a routed job's work: nothing to switch between (lowering it cost throughput).
        with _switch_interval(switch_interval if concurrency > 1 and route is None else None), _no_full_collections():
            score_chunks(
                source.chunks(chunk_size),
                scorer,
                route=route,
                concurrency=concurrency,
                skip=skip,
                deliver=deliver,
                on_progress=on_progress,
            )
    finally:
        source.close()
        if bar is not None:
            bar.close()
    if part:
        commit_part()  # the last, shorter part
    summary.seconds = time.monotonic() - started
    if writer is not None:
        writer.complete(summary.rows, -(-summary.chunks // part_chunks))
    elif errors and summary.errors_path:
        _write_errors(summary.errors_path, errors)
    logger.info(
        "Scored %d rows in %d chunks in %.1f s (%.0f rows/s); %d rejected",
        summary.rows, summary.chunks, summary.seconds, summary.rows_per_second, summary.failed_rows,
    )
    if writer is not None:
        return summary
    return _result_frame(collected, inputs, summary, prediction_column, keep_columns)


def read_output(path: str | os.PathLike[str], output_format: str | None = None) -> pd.DataFrame:
    """Read a batch output back as one DataFrame: a single output file, or a directory of parts read in
    order (errors and manifest left out). The format comes from ``output_format``, else the file's or
    the parts' suffix. A file or part that cannot be read is an
    :class:`~deployflow.errors.InvalidInputError` naming it."""
    import glob

    from .._extras import require_extra

    require_extra("batch", "reading batch output (deployflow.read_output)")
    import pandas as pd

    from ._output import format_of_output, part_number, staging_dir

    path = os.fspath(path)
    if os.path.isdir(path):
        files = sorted(glob.glob(os.path.join(path, "part[-.]*")), key=part_number)
        if not files:
            raise InvalidInputError(f"{path!r} holds no output parts")
        fmt = format_of_output(files[0], output_format)
    elif os.path.isfile(path):
        files = [path]
        fmt = format_of_output(path, output_format)
    else:
        staging = staging_dir(path.rstrip("/" + os.sep))
        unfinished = os.path.isdir(staging)
        raise InvalidInputError(
            f"Output {path!r} does not exist"
            + (f" (its job has not finished; parts so far are in {staging!r}: rerun it to resume)" if unfinished else "")
        )
    frames = [_read_frame(f, fmt) for f in files]
    return frames[0] if len(frames) == 1 else pd.concat(frames, ignore_index=True)


def _read_frame(path: str, fmt: str) -> pd.DataFrame:
    import pandas as pd
    import pyarrow as pa

    try:
        if os.path.getsize(path) == 0:  # a job with no rows writes an empty CSV or JSON-lines file
            return pd.DataFrame()
        if fmt == "parquet":
            return pd.read_parquet(path)
        if fmt == "csv":
            return pd.read_csv(path)
        return pd.read_json(path, lines=True)
    except (pa.ArrowException, OSError, ValueError) as exc:
        raise InvalidInputError(f"Cannot read the batch output {path!r} as {fmt}: {exc}") from exc


def _column_list(value: Any, name: str) -> list[Any] | None:
    if value is None:
        return None
    if not isinstance(value, (list, tuple)):
        raise InvalidInputError(f"{name} must be a list of column names, got {value!r}")
    return list(value)


def _result_frame(
    results: list[ChunkResult], inputs: Any, summary: BatchSummary, column: str, keep: list[str] | None
) -> pd.DataFrame:
    import pandas as pd

    kept = None
    if isinstance(inputs, pd.DataFrame) and sum(len(r.kept) for r in results) == len(inputs):
        kept = inputs if keep is None else inputs[keep]  # every row scored: no need to reassemble them
    frame = join_results(results, column, kept)
    if frame is None:
        frame = pd.DataFrame({column: pd.Series(dtype="float64")})
    if not isinstance(inputs, pd.DataFrame):
        frame = frame.reset_index(drop=True)
    frame.attrs["deployflow_summary"] = summary.to_dict()
    return frame


def _write_errors(path: str, errors: list[dict[str, Any]]) -> None:
    import orjson

    from ._output import atomic_write

    atomic_write(path, b"".join(orjson.dumps(e, default=str) + b"\n" for e in errors))


_switch_lock = threading.Lock()
_switch_users = 0
_switch_saved = 0.0


@contextlib.contextmanager
def _switch_interval(seconds: float | None) -> Iterator[None]:
    """Lower the thread switch interval while at least one batch job runs; restore it after the last."""
    global _switch_users, _switch_saved
    if seconds is None:
        yield
        return
    with _switch_lock:
        if _switch_users == 0:
            _switch_saved = sys.getswitchinterval()
        _switch_users += 1
        sys.setswitchinterval(min(seconds, _switch_saved))
    try:
        yield
    finally:
        with _switch_lock:
            _switch_users -= 1
            if _switch_users == 0:
                sys.setswitchinterval(_switch_saved)


_collections_lock = threading.Lock()
_collections_users = 0
_collections_saved: tuple[int, ...] = ()
#: The garbage collector's third threshold while a job runs: no full collection starts on its own.
_QUIET_THRESHOLD = 1 << 30


@contextlib.contextmanager
def _no_full_collections() -> Iterator[None]:
    """Keep the garbage collector to young collections while at least one batch job runs.

    A full collection walks every object of the process (pandas and pyarrow hold many): 45-60 ms here,
    in about a third of 1,200,000-row jobs, during which no request is sent or answer read. The young
    generations are still collected, and the thresholds are restored after the last job.
    """
    import gc

    global _collections_users, _collections_saved
    with _collections_lock:
        if _collections_users == 0:
            _collections_saved = gc.get_threshold()
        _collections_users += 1
        gc.set_threshold(*_collections_saved[:2], _QUIET_THRESHOLD)
    try:
        yield
    finally:
        with _collections_lock:
            _collections_users -= 1
            if _collections_users == 0:
                gc.set_threshold(*_collections_saved)


def _is_dask(inputs: Any) -> bool:
    return type(inputs).__module__.split(".")[0] in ("dask", "dask_expr") and hasattr(inputs, "map_partitions")


def _progress_bar(progress: bool | None, total: int | None) -> Any:
    if progress is None:
        progress = sys.stderr.isatty()
    if not progress:
        return None
    from .._extras import require

    tqdm = require("tqdm.auto", "batch", "the batch progress bar (progress=True)").tqdm
    return tqdm(total=total, unit="rows", unit_scale=True, desc="batch_predict", file=sys.stderr)
