"""Artifacts a person wants to look at: a link to what was deployed, a batch summary, batch progress.

Artifacts are made only inside a flow or task run, their text is redacted, and a failure to write one is
logged without failing the task.
"""

from __future__ import annotations

import threading
import time
from typing import Any

from deployflow import BatchSummary, Progress
from deployflow.redaction import redact

from ._runtime import in_run, run_logger, safe, slug

__all__ = ["link_artifact", "batch_summary_artifact", "BatchProgressArtifact"]


def link_artifact(kind: str, name: str, url: str | None, *, state: str, target: str, details: str = "") -> None:
    """A link to the deployment's or endpoint's URL (when it has an http(s) one)."""
    if not url or not str(url).startswith(("http://", "https://")) or not in_run():
        return
    from prefect.artifacts import create_link_artifact

    description = f"{kind.capitalize()} `{name}` on `{target}`: {state}. {details}".strip()
    _guarded(
        "link",
        lambda: create_link_artifact(
            link=redact(url),
            link_text=f"{name} ({state})",
            key=slug("deployflow", kind, name),
            description=redact(description),
        ),
    )


def batch_summary_artifact(summary: BatchSummary, *, name: str, target: str) -> None:
    """A one-row table: rows, chunks, rejected rows, resumed chunks, time, throughput, output."""
    if not in_run():
        return
    from prefect.artifacts import create_table_artifact

    data = summary.to_dict()
    row = {
        "rows": data["rows"],
        "chunks": data["chunks"],
        "rejected rows": data["failed_rows"],
        "resumed chunks": data["resumed_chunks"],
        "seconds": data["seconds"],
        "rows per second": data["rows_per_second"],
        "output": data["output_path"],
        "rejected rows file": data["errors_path"],
    }
    _guarded(
        "table",
        lambda: create_table_artifact(
            table=[safe(row)],
            key=slug("deployflow", "batch", name),
            description=redact(f"Batch scoring of `{name}` on `{target}`"),
        ),
    )


class BatchProgressArtifact:
    """A progress artifact (percent of rows) kept up to date while a batch runs.

    Updates are throttled to one per ``interval`` seconds (the last one always goes through), and a
    log line goes with each update. Safe to call from the batch's worker threads.
    """

    def __init__(self, name: str, *, interval: float = 5.0) -> None:
        self.name = name
        self.interval = interval
        # Taken now, in the task's thread: the batch may call back from its worker threads.
        self._logger = run_logger()
        self._artifact_id: Any = None
        self._last = float("-inf")
        self._lock = threading.Lock()
        self._enabled = in_run()
        if self._enabled:
            from prefect.artifacts import create_progress_artifact

            self._artifact_id = _guarded(
                "progress",
                lambda: create_progress_artifact(
                    progress=0.0,
                    key=slug("deployflow", "batch-progress", name),
                    description=redact(f"Rows of `{name}` scored so far"),
                ),
            )

    def __call__(self, progress: Progress) -> None:
        now = time.monotonic()
        with self._lock:
            if now - self._last < self.interval:
                return
            self._last = now
        percent = _percent(progress)
        shown = f"{percent:.0f}%" if percent is not None else "total unknown"
        self._logger.info(
            "Scored %d rows (%s) in %d chunks, %d rejected, %.0f rows/s",
            progress.rows_done, shown, progress.chunks_done, progress.failed_rows, progress.rows_per_second,
        )
        if percent is not None:
            self._update(percent)

    def finish(self) -> None:
        """Mark the job complete (100%)."""
        self._update(100.0)

    def _update(self, percent: float) -> None:
        if not self._enabled or self._artifact_id is None:
            return
        from prefect.artifacts import update_progress_artifact

        _guarded("progress", lambda: update_progress_artifact(artifact_id=self._artifact_id, progress=percent))


def _percent(progress: Progress) -> float | None:
    if not progress.rows_total:
        return None
    return min(100.0, 100.0 * progress.rows_done / progress.rows_total)


def _guarded(what: str, make: Any) -> Any:
    try:
        return make()
    except Exception as exc:  # an artifact is a view for people: never fail the step over it
        run_logger().warning("Could not write the %s artifact: %s", what, redact(exc))
        return None
