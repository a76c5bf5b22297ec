"""Scoring tasks: ``predict`` (one request) and ``batch_predict`` (a file or frame, chunk by chunk)."""

from __future__ import annotations

import json
import os
from typing import Any

from prefect import task
from prefect.cache_policies import NO_CACHE

import deployflow
from deployflow import BatchSummary, InvalidInputError

from ._runtime import TargetLike, open_client, plain, run_logger, safe, scrub_errors, target_label
from .artifacts import BatchProgressArtifact, batch_summary_artifact
from .retries import retry_never, step_options

__all__ = ["predict", "batch_predict"]


@task(name="predict", **step_options())
@scrub_errors
def predict(
    target: TargetLike,
    deployment_name: str | None = None,
    inputs: Any = None,
    *,
    endpoint: str | None = None,
) -> dict[str, Any]:
    """Score ``inputs`` with deployment ``deployment_name`` or through ``endpoint`` (exactly one).

    ``inputs`` is what the client's ``predict`` takes: a DataFrame, a list, or a dict in the scoring
    protocol's form (``{"inputs": [[...]]}``, ``{"dataframe_split": {...}}``). Returns the answer as a
    plain dict with a ``predictions`` key, exactly as the model gave it (credential masking applies to
    logs and errors, not to a model's output). Meant for small payloads; use :func:`batch_predict` for
    files and large frames. Retried on retryable errors, each attempt sending one request: at most
    ``1 + retries`` requests (see :mod:`deployflow.integrations.prefect.retries`).

    Example::

        from prefect import flow
        from deployflow.integrations.prefect import predict

        @flow
        def score():
            return predict("local", "churn", {"inputs": [[12, 70.5, 1, 0]]})["predictions"]

        score()
    """
    if (deployment_name is None) == (endpoint is None):
        raise InvalidInputError("predict needs exactly one of deployment_name and endpoint")
    with open_client(target) as client:
        if endpoint is not None:
            response = client.predict(inputs=inputs, endpoint=endpoint)
        else:
            response = client.predict(deployment_name, inputs)
    run_logger().info("Scored one request with %s", f"endpoint {endpoint!r}" if endpoint else repr(deployment_name))
    # The model's answer, as it answered: redaction is for messages and metadata, never for its data.
    return json.loads(response.to_json()) if hasattr(response, "to_json") else plain(response)


@task(name="batch_predict", retries=0, retry_condition_fn=retry_never, cache_policy=NO_CACHE)
@scrub_errors
def batch_predict(
    target: TargetLike,
    inputs: Any,
    output: str | os.PathLike[str],
    *,
    deployment_name: str | None = None,
    endpoint: str | None = None,
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
    resume: bool = True,
    overwrite: bool = False,
    max_chunk_retries: int = 3,
    progress_interval: float = 5.0,
) -> dict[str, Any]:
    """Score ``inputs`` (a Parquet/CSV/JSON-lines path or URL, or a DataFrame) chunk by chunk into
    ``output``, with ``deployflow.batch_predict``.

    The output directory is written as the job goes, with a checkpoint: running the flow again after a
    crash resumes without losing or duplicating rows (``resume=True``). While it runs, a progress
    artifact is updated and a progress line logged at most every ``progress_interval`` seconds; at the
    end a table artifact summarises the run. A chunk that fails with a retryable error is retried up to
    ``max_chunk_retries`` times (each time one request: the transport's retries are off inside tasks);
    the task itself is never retried, even ``with_options(retries=...)``, so the two never multiply
    (see "Retries in pipeline steps" in :mod:`deployflow.orchestration`).

    Returns the summary: ``{"rows", "chunks", "failed_rows", "resumed_chunks", "seconds",
    "rows_per_second", "output_path", "errors_path", "name", "target"}`` (never the predictions).

    Example::

        from prefect import flow
        from deployflow.integrations.prefect import batch_predict

        @flow
        def score_customers():
            return batch_predict("local", "/data/customers.parquet", "/data/scores.parquet",
                                 deployment_name="churn", keep_columns=["customer_id"])

        score_customers()
    """
    if output is None:
        raise InvalidInputError("batch_predict needs an output path: the task returns a summary, not the rows")
    name = str(deployment_name if deployment_name is not None else endpoint)
    label = target_label(target)
    progress = BatchProgressArtifact(name, interval=progress_interval)
    logger = run_logger()
    logger.info("Scoring %s with %s on %s into %s", _describe(inputs), name, label, os.fspath(output))
    with open_client(target) as client:
        summary = deployflow.batch_predict(
            client,
            inputs,
            deployment_name=deployment_name,
            endpoint=endpoint,
            output=output,
            output_format=output_format,
            input_format=input_format,
            chunk_size=chunk_size,
            concurrency=concurrency,
            part_rows=part_rows,
            feature_columns=feature_columns,
            keep_columns=keep_columns,
            prediction_column=prediction_column,
            params=params,
            on_bad_rows=on_bad_rows,
            resume=resume,
            overwrite=overwrite,
            max_chunk_retries=max_chunk_retries,
            progress=False,
            progress_callback=progress,
        )
    if not isinstance(summary, BatchSummary):  # pragma: no cover - output is always given here
        raise InvalidInputError("batch_predict returned rows instead of a summary; give an output path")
    progress.finish()
    batch_summary_artifact(summary, name=name, target=label)
    data = summary.to_dict()
    logger.info(
        "Scored %d rows in %d chunks (%d resumed) in %.1f s, %d rejected; output %s",
        data["rows"], data["chunks"], data["resumed_chunks"], data["seconds"], data["failed_rows"], data["output_path"],
    )
    return safe({**data, "name": name, "target": label})


def _describe(inputs: Any) -> str:
    if isinstance(inputs, (str, os.PathLike)):
        return os.fspath(inputs)
    rows = getattr(inputs, "shape", (None,))[0]
    return f"a {type(inputs).__name__}" + (f" of {rows} rows" if rows is not None else "")
