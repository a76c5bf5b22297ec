"""Operators that score data: one request (:class:`PredictOperator`) or a batch job
(:class:`BatchPredictOperator`). Predictions go to files; XCom gets a small summary."""

from __future__ import annotations

import json
import os
import tempfile
import time
from typing import TYPE_CHECKING, Any, Sequence

from airflow.sdk.exceptions import AirflowFailException

from deployflow import InvalidInputError, Progress, batch_predict
from deployflow.redaction import redact

from .._common import count, flag, given, json_safe, translate_errors, whole_number_text
from ..assets import batch_output_asset, now_text, set_outlet_extra
from ._base import DeployflowOperator

if TYPE_CHECKING:
    from airflow.sdk import Context

__all__ = ["PredictOperator", "BatchPredictOperator"]

#: Predictions larger than this (as JSON) never go to XCom.
DEFAULT_MAX_XCOM_BYTES = 64 * 1024


def _one_target(deployment_name: str | None, endpoint: str | None, task: str) -> None:
    if (deployment_name is None) == (endpoint is None):
        raise ValueError(f"{task}: give exactly one of deployment_name and endpoint")


def _read_inputs(path: str) -> Any:
    """The inputs stored at ``path``: JSON (any shape the target accepts), CSV or Parquet (a frame)."""
    suffix = os.path.splitext(path)[1].lower()
    if suffix == ".json":
        with open(path, "rb") as handle:
            return json.load(handle)
    if suffix == ".csv":
        import pandas as pd

        return pd.read_csv(path)
    if suffix in (".parquet", ".pq"):
        import pandas as pd

        return pd.read_parquet(path)
    raise InvalidInputError(f"input_path {path!r}: use a .json, .csv or .parquet file")


def _write_atomically(path: str, text: str) -> int:
    """Write ``text`` to ``path`` whole or not at all (a retried task never sees half a file)."""
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    data = text.encode("utf-8")
    handle, temporary = tempfile.mkstemp(dir=directory, prefix=".deployflow-", suffix=".tmp")
    try:
        with os.fdopen(handle, "wb") as out:
            out.write(data)
        os.replace(temporary, path)
    except BaseException:
        if os.path.exists(temporary):
            os.unlink(temporary)
        raise
    return len(data)


def _count(predictions: Any) -> int | None:
    if isinstance(predictions, list):
        return len(predictions)
    if isinstance(predictions, dict) and predictions:
        first = next(iter(predictions.values()))
        return len(first) if isinstance(first, list) else 1
    return None


class PredictOperator(DeployflowOperator):
    """Score one request against a deployment or an endpoint.

    :param deployment_name: the deployment to score with (templated); or give ``endpoint``.
    :param endpoint: the endpoint to score through (templated).
    :param inputs: the request: anything the target accepts (a list of rows, ``{"inputs": ...}``,
        ``{"dataframe_split": ...}``) (templated; JSON in the UI). Or give ``input_path``.
    :param input_path: a ``.json``, ``.csv`` or ``.parquet`` file holding the request (templated).
    :param output_path: where to write the answer as JSON (templated). Written whole or not at all.
    :param return_predictions: also put the predictions in XCom, if they are at most
        ``max_xcom_bytes`` as JSON; larger predictions fail the task rather than bloat the metadata
        database (write them to ``output_path`` instead). Templated: a rendered ``"true"``/``"false"``
        is read as a flag.
    :param max_xcom_bytes: the largest predictions, in bytes of JSON, put in XCom (templated).
    :param deployflow_conn_id: the ``deployflow`` connection (templated).

    XCom: ``{"deployment_name", "endpoint", "num_predictions", "output_path", "bytes"}`` plus
    ``"predictions"`` when asked for, exactly as the model answered them (deployflow masks credentials
    in messages, never in a model's output).
    """

    template_fields: Sequence[str] = (
        "deployment_name",
        "endpoint",
        "inputs",
        "input_path",
        "output_path",
        "deployflow_conn_id",
        "return_predictions",
        "max_xcom_bytes",
    )
    template_fields_renderers = {"inputs": "json"}
    argument_checks = {"return_predictions": flag, "max_xcom_bytes": count}

    def __init__(
        self,
        *,
        deployment_name: str | None = None,
        endpoint: str | None = None,
        inputs: Any = None,
        input_path: str | None = None,
        output_path: str | None = None,
        return_predictions: bool = False,
        max_xcom_bytes: int = DEFAULT_MAX_XCOM_BYTES,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        _one_target(deployment_name, endpoint, "PredictOperator")
        if (inputs is None) == (input_path is None):
            raise ValueError("PredictOperator: give exactly one of inputs and input_path")
        self.deployment_name = deployment_name
        self.endpoint = endpoint
        self.inputs = inputs
        self.input_path = input_path
        self.output_path = output_path
        self.return_predictions = return_predictions
        self.max_xcom_bytes = max_xcom_bytes
        self.check_arguments(rendered=False)

    def execute(self, context: Context) -> dict[str, Any]:
        self.check_arguments(rendered=True)
        target = self.deployment_name or self.endpoint
        with self.client() as client, translate_errors(f"Scoring with {target!r}"):
            inputs = _read_inputs(self.input_path) if self.input_path is not None else self.inputs
            response = client.predict(
                self.deployment_name, inputs, **given(endpoint=self.endpoint)
            )
            text = response.to_json()
        predictions = response.get("predictions")
        result: dict[str, Any] = {
            "deployment_name": self.deployment_name,
            "endpoint": self.endpoint,
            "num_predictions": _count(predictions),
            "output_path": None,
            "bytes": len(text.encode("utf-8")),
        }
        if self.output_path:
            _write_atomically(self.output_path, text)
            result["output_path"] = self.output_path
            self.log.info("Wrote %s prediction(s) to %s", result["num_predictions"], self.output_path)
        if self.return_predictions:
            if result["bytes"] > self.max_xcom_bytes:
                raise AirflowFailException(
                    f"Scoring with {target!r}: the predictions take {result['bytes']} bytes as JSON, more than "
                    f"max_xcom_bytes={self.max_xcom_bytes}; write them to output_path instead"
                )
            result["predictions"] = json.loads(text)["predictions"]
        return result


class BatchPredictOperator(DeployflowOperator):
    """Score a file in chunks with :func:`deployflow.batch_predict`, writing the output as it goes.

    A task run again resumes from the output's checkpoint: no row is lost or scored twice.

    Retries: each chunk that fails with a retryable error is retried up to ``max_chunk_retries`` times,
    one request each (the hook's client has the transport's retries off). The task itself is not
    retried by Airflow on a deployflow error, whatever its ``retries`` say (``AirflowFailException``):
    the chunks spent their budget already, and retrying the task would multiply it. Clear the task to
    resume. See "Retries in pipeline steps" in :mod:`deployflow.orchestration`.

    :param input_path: a Parquet, CSV or JSON-lines file or URL (templated).
    :param output_path: the output directory, e.g. ``/data/scores.parquet`` (templated); its suffix or
        ``output_format`` picks the format.
    :param deployment_name: the deployment to score with (templated); or give ``endpoint``.
    :param endpoint: the endpoint to score through (templated).
    :param input_format: ``"parquet"``, ``"csv"`` or ``"jsonl"`` when the path's suffix does not say
        (templated).
    :param output_format: the output's format, when ``output_path``'s suffix does not say (templated).
    :param chunk_size: rows per request (default 2000; templated).
    :param concurrency: requests in flight (default: the target's own default; templated).
    :param feature_columns: the columns sent to the model (templated).
    :param keep_columns: the input columns copied beside the predictions (templated).
    :param prediction_column: the name of a single-output prediction column (templated).
    :param model_params: model params (MLflow's ``params``) sent with every request (templated; JSON
        in the UI).
    :param on_bad_rows: ``"raise"`` (stop at rejected rows; no retry) or ``"isolate"`` (score the rest,
        write the rejected rows to the errors file) (templated).
    :param max_chunk_retries: retries of a chunk that fails with a retryable error (default 3; templated).
    :param resume: continue an interrupted job found in ``output_path`` (default ``True``; templated).
    :param overwrite: start over, discarding what ``output_path`` holds (templated).
    :param deployflow_conn_id: the ``deployflow`` connection (templated).
    :param emit_asset: add the output's asset (:func:`~deployflow.integrations.airflow.assets.batch_output_asset`)
        to the task's outlets; needs a literal ``output_path``. Default ``False``. Every ``Asset`` in
        the task's outlets gets, on success, an event whose extra holds the target, the deployment or
        endpoint, the output and errors paths, the rows, rejected rows and chunks, and the time.

    A template that renders to the text of a whole number (``chunk_size``, ``concurrency``,
    ``max_chunk_retries``) or of a flag (``resume``, ``overwrite``: ``"true"``, ``"False"``, ...) is
    read as that number or flag; other values are checked by :func:`deployflow.batch_predict`.

    XCom: the job's summary, ``{"rows", "chunks", "failed_rows", "resumed_chunks", "seconds",
    "rows_per_second", "output_path", "errors_path", "deployment_name", "endpoint"}``.
    """

    template_fields: Sequence[str] = (
        "input_path",
        "output_path",
        "deployment_name",
        "endpoint",
        "feature_columns",
        "keep_columns",
        "model_params",
        "deployflow_conn_id",
        "input_format",
        "output_format",
        "chunk_size",
        "concurrency",
        "prediction_column",
        "on_bad_rows",
        "max_chunk_retries",
        "resume",
        "overwrite",
    )
    template_fields_renderers = {"model_params": "json"}
    argument_checks = {
        "chunk_size": whole_number_text,
        "concurrency": whole_number_text,
        "max_chunk_retries": whole_number_text,
        "resume": flag,
        "overwrite": flag,
    }

    #: Seconds between two progress lines in the task log.
    progress_log_interval = 15.0

    def __init__(
        self,
        *,
        input_path: str,
        output_path: str,
        deployment_name: str | None = None,
        endpoint: str | None = None,
        input_format: str | None = None,
        output_format: str | None = None,
        chunk_size: int | None = None,
        concurrency: int | None = None,
        feature_columns: list[str] | None = None,
        keep_columns: list[str] | None = None,
        prediction_column: str = "prediction",
        model_params: dict[str, Any] | None = None,
        on_bad_rows: str = "raise",
        max_chunk_retries: int = 3,
        resume: bool = True,
        overwrite: bool = False,
        emit_asset: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        _one_target(deployment_name, endpoint, "BatchPredictOperator")
        self.emit_asset = bool(emit_asset)
        if self.emit_asset:
            asset = batch_output_asset(output_path)
            if asset not in self.outlets:
                self.outlets = [*self.outlets, asset]
        self.input_path = input_path
        self.output_path = output_path
        self.deployment_name = deployment_name
        self.endpoint = endpoint
        self.input_format = input_format
        self.output_format = output_format
        self.chunk_size = chunk_size
        self.concurrency = concurrency
        self.feature_columns = feature_columns
        self.keep_columns = keep_columns
        self.prediction_column = prediction_column
        self.model_params = model_params
        self.on_bad_rows = on_bad_rows
        self.max_chunk_retries = max_chunk_retries
        self.resume = resume
        self.overwrite = overwrite
        self.check_arguments(rendered=False)

    def execute(self, context: Context) -> dict[str, Any]:
        self.check_arguments(rendered=True)
        target = self.deployment_name or self.endpoint
        last_log = [time.monotonic()]

        def log_progress(progress: Progress) -> None:
            now = time.monotonic()
            if now - last_log[0] >= self.progress_log_interval:
                last_log[0] = now
                total = progress.rows_total if progress.rows_total is not None else "?"
                self.log.info(
                    "Scored %s of %s rows (%s chunks, %s rejected, %.0f rows/s)",
                    progress.rows_done, total, progress.chunks_done, progress.failed_rows, progress.rows_per_second,
                )

        what = f"Batch scoring {self.input_path!r} with {target!r}"
        no_retry = (
            f"each chunk had up to max_chunk_retries={self.max_chunk_retries} retries; clear the task to resume "
            "from the checkpoint"
        )
        with self.client() as client, translate_errors(what, no_retry=no_retry):
            summary = batch_predict(
                client,
                self.input_path,
                deployment_name=self.deployment_name,
                endpoint=self.endpoint,
                output=self.output_path,
                output_format=self.output_format,
                input_format=self.input_format,
                chunk_size=self.chunk_size,
                concurrency=self.concurrency,
                feature_columns=self.feature_columns,
                keep_columns=self.keep_columns,
                prediction_column=self.prediction_column,
                params=self.model_params,
                on_bad_rows=self.on_bad_rows,
                max_chunk_retries=self.max_chunk_retries,
                resume=self.resume,
                overwrite=self.overwrite,
                progress=False,
                progress_callback=log_progress,
            )
            target = redact(str(getattr(client, "target_uri", "")))
        result = {**json_safe(summary.to_dict()), "deployment_name": self.deployment_name, "endpoint": self.endpoint}
        keys = ("deployment_name", "endpoint", "output_path", "errors_path", "rows", "failed_rows", "chunks")
        set_outlet_extra(self, context, {"target": target, **{key: result.get(key) for key in keys}, "time": now_text()})
        self.log.info(
            "Scored %s rows in %s chunks (%s resumed, %s rejected) into %s",
            result["rows"], result["chunks"], result["resumed_chunks"], result["failed_rows"], result["output_path"],
        )
        return result
