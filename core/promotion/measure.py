"""Scoring for promotion: the golden set, offline scoring through ``batch_predict``, golden traffic
through the endpoint, and the metrics of either."""

from __future__ import annotations

import math
import os
import tempfile
import time
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..errors import DeploymentError, InvalidInputError
from ..redaction import get_logger
from .checks import Check, metric_function

if TYPE_CHECKING:
    import pandas as pd

logger = get_logger(__name__)

__all__ = ["Golden", "Scored", "load_golden", "score_offline", "send_traffic", "measure"]


@dataclass
class Golden:
    """The golden rows: ``features`` (a DataFrame with a fresh 0..n-1 index) and their ``labels``."""

    features: pd.DataFrame
    labels: list[Any]


@dataclass
class Scored:
    """What scoring some rows gave: per answered request the row, the answer and the latency."""

    requests: int = 0
    errors: int = 0
    rows: list[int] = field(default_factory=list)
    answers: list[Any] = field(default_factory=list)
    latencies_ms: list[float] = field(default_factory=list)
    failure: str | None = None
    error_kinds: dict[str, int] = field(default_factory=dict)

    def by_row(self) -> dict[int, Any]:
        return dict(zip(self.rows, self.answers))


def load_golden(golden: Any, label: str) -> Golden:
    """Read the golden set (a DataFrame, a CSV / Parquet / JSON-lines file, or an iterable of
    DataFrames) and split off its ``label`` column."""
    from .._extras import require_extra

    require_extra("batch", "promotion (deployflow.promote)")
    import pandas as pd

    if isinstance(golden, pd.DataFrame):
        frame = golden
    elif isinstance(golden, (str, os.PathLike)):
        frame = _read_file(os.fspath(golden))
    elif hasattr(golden, "__iter__") and not isinstance(golden, (bytes, Mapping)):
        parts = list(golden)
        if not parts or not all(isinstance(part, pd.DataFrame) for part in parts):
            raise InvalidInputError("golden must be a DataFrame, a file path, or an iterable of DataFrames")
        frame = pd.concat(parts, ignore_index=True)
    else:
        raise InvalidInputError(f"golden must be a DataFrame, a file path, or an iterable of DataFrames, got {type(golden).__name__}")
    if not isinstance(label, str) or label not in frame.columns:
        raise InvalidInputError(f"The golden set has no label column {label!r} (columns: {', '.join(map(str, frame.columns))})")
    if len(frame) == 0:
        raise InvalidInputError("The golden set has no rows")
    frame = frame.reset_index(drop=True)
    return Golden(frame.drop(columns=[label]), frame[label].tolist())


def _read_file(path: str) -> pd.DataFrame:
    import pandas as pd

    lower = path.lower()
    try:
        if lower.endswith(".parquet"):
            return pd.read_parquet(path)
        if lower.endswith((".jsonl", ".ndjson", ".json")):
            return pd.read_json(path, lines=not lower.endswith(".json") or _looks_like_lines(path))
        if lower.endswith((".csv", ".txt")):
            return pd.read_csv(path)
    except (OSError, ValueError) as exc:
        raise InvalidInputError(f"Cannot read the golden set {path!r}: {exc}") from exc
    raise InvalidInputError(f"Cannot tell the format of the golden set {path!r}: use .csv, .parquet or .jsonl")


def _looks_like_lines(path: str) -> bool:
    with open(path, "rb") as file:
        return not file.read(64).lstrip().startswith(b"[")


def row_value(value: Any) -> Any:
    """One row's answer in a comparable form: a number or string, or a tuple of them."""
    import numpy as np

    if isinstance(value, Mapping):
        value = list(value.values())
    array = np.asarray(value, dtype=object).ravel()
    items = [item.item() if hasattr(item, "item") else item for item in array]
    return items[0] if len(items) == 1 else tuple(items)


def same_answer(first: Any, second: Any) -> bool:
    if isinstance(first, tuple) or isinstance(second, tuple):
        first = first if isinstance(first, tuple) else (first,)
        second = second if isinstance(second, tuple) else (second,)
        return len(first) == len(second) and all(same_answer(a, b) for a, b in zip(first, second))
    if isinstance(first, (int, float)) and isinstance(second, (int, float)) and not isinstance(first, bool):
        return math.isclose(float(first), float(second), rel_tol=1e-6, abs_tol=1e-9)
    return first == second


def score_offline(client: Any, target: Mapping[str, str], golden: Golden, *, rows_per_request: int) -> Scored:
    """Score every golden row with one model (``target``: the keyword arguments naming it) through
    :func:`deployflow.batch_predict`, one request at a time so that each request's latency is known;
    rows the model rejects are counted as errors."""
    from ..batch import batch_predict

    scored = Scored()
    stamps: list[float] = []
    with tempfile.TemporaryDirectory(prefix="deployflow-promote-") as directory:
        errors_path = os.path.join(directory, "errors.jsonl")
        started = time.perf_counter()
        try:
            frame = batch_predict(
                client,
                golden.features,
                **target,
                chunk_size=rows_per_request,
                concurrency=1,
                keep_columns=[],
                on_bad_rows="isolate",
                errors_path=errors_path,
                max_chunk_retries=0,
                progress=False,
                progress_callback=lambda progress: stamps.append(time.perf_counter()),
                switch_interval=None,
            )
        except DeploymentError as exc:
            scored.failure = f"{type(exc).__name__}: {exc}"
            scored.requests = max(len(stamps) + 1, 1)
            scored.errors = 1
            scored.error_kinds[type(exc).__name__] = 1
            return scored
    scored.latencies_ms = [1000.0 * (end - start) for start, end in zip([started, *stamps], stamps)]
    scored.requests = len(stamps)
    scored.rows = [int(index) for index in frame.index]
    scored.answers = [row_value(values) for values in frame.itertuples(index=False, name=None)]
    failed = len(golden.features) - len(scored.rows)
    # A rejected row's request is a failed request: count requests, not rows, when they differ.
    scored.errors = min(scored.requests, -(-failed // rows_per_request)) if failed else 0
    if failed:
        scored.error_kinds["rejected rows"] = failed
    return scored


def send_traffic(
    client: Any,
    endpoint: str,
    golden: Golden,
    *,
    seconds: float,
    rate: float,
    rows_per_request: int,
    deadline: float | None,
    cancel: Any = None,
) -> Scored:
    """Send golden rows through ``endpoint`` for ``seconds`` (at most ``rate`` requests a second, one
    after another, cycling over the rows) and record every answer and failure."""
    scored = Scored()
    rows = len(golden.features)
    started = time.monotonic()
    end = started + seconds
    if deadline is not None:
        end = min(end, deadline)
    position = 0
    while True:
        due = started + scored.requests / rate
        now = time.monotonic()
        if due >= end or now >= end or (cancel is not None and cancel.is_set()):
            break
        if due > now:
            if cancel is not None:
                cancel.wait(due - now)
                continue
            time.sleep(due - now)
        indexes = [(position + offset) % rows for offset in range(min(rows_per_request, rows))]
        position = (position + len(indexes)) % rows
        batch = golden.features.iloc[indexes]
        scored.requests += 1
        sent = time.perf_counter()
        try:
            answer = client.predict(endpoint=endpoint, inputs=batch)
        except DeploymentError as exc:
            scored.errors += 1
            kind = type(exc).__name__
            scored.error_kinds[kind] = scored.error_kinds.get(kind, 0) + 1
            if scored.failure is None:
                scored.failure = f"{kind}: {exc}"
            continue
        latency = 1000.0 * (time.perf_counter() - sent)
        predictions = answer.get("predictions") if isinstance(answer, Mapping) else answer
        values = _split_rows(predictions, len(indexes))
        if values is None:
            scored.errors += 1
            scored.error_kinds["unreadable answer"] = scored.error_kinds.get("unreadable answer", 0) + 1
            continue
        scored.latencies_ms.append(latency)
        scored.rows.extend(indexes)
        scored.answers.extend(values)
    return scored


def _split_rows(predictions: Any, count: int) -> list[Any] | None:
    """An answer for ``count`` rows as one comparable value per row, or ``None`` when it does not have
    ``count`` rows."""
    if isinstance(predictions, Mapping):  # column -> values
        columns = [list(values) if isinstance(values, (list, tuple)) else [values] for values in predictions.values()]
        if any(len(column) != count for column in columns):
            return None
        return [row_value([column[i] for column in columns]) for i in range(count)]
    if isinstance(predictions, (list, tuple)) and len(predictions) == count:
        return [row_value(item) for item in predictions]
    if count == 1 and not isinstance(predictions, (list, tuple)):
        return [row_value(predictions)]
    return None


def _percentile(values: list[float], percent: float) -> float | None:
    if not values:
        return None
    import numpy as np

    return float(np.percentile(np.asarray(values, dtype=float), percent))


def measure(
    scored: Scored,
    golden: Golden,
    quality: list[str],
    custom: Mapping[str, Callable[..., float]],
    reference: Mapping[int, Any] | None,
) -> dict[str, Any]:
    """The metrics of ``scored``: requests, samples (answered rows), errors, error_rate, p50_ms,
    p99_ms, agreement with ``reference`` (row -> the champion's answer; ``None`` without one) and each
    quality metric in ``quality`` over the answered rows."""
    metrics: dict[str, Any] = {
        "requests": scored.requests,
        "samples": len(scored.rows),
        "errors": scored.errors,
        "error_rate": scored.errors / scored.requests if scored.requests else None,
        "p50_ms": _percentile(scored.latencies_ms, 50),
        "p99_ms": _percentile(scored.latencies_ms, 99),
        "agreement": None,
    }
    if reference is not None and scored.rows:
        pairs = [(answer, reference[row]) for row, answer in zip(scored.rows, scored.answers) if row in reference]
        if pairs:
            metrics["agreement"] = sum(same_answer(a, b) for a, b in pairs) / len(pairs)
    for name in quality:
        metrics[name] = quality_metric(name, custom, [golden.labels[row] for row in scored.rows], scored.answers)
    return metrics


def quality_metric(name: str, custom: Mapping[str, Callable[..., float]], labels: list[Any], answers: list[Any]) -> float | None:
    """Quality metric ``name`` of ``answers`` against ``labels``; ``None`` for no rows, or when the
    metric cannot be computed on them (one class only for AUC, say: logged)."""
    if not labels:
        return None
    import numpy as np

    function = metric_function(name, custom)
    predicted = np.asarray([list(a) if isinstance(a, tuple) else a for a in answers])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            value = float(function(np.asarray(labels), predicted))
        except (ValueError, TypeError) as exc:
            logger.warning("Metric %r cannot be computed on these rows: %s", name, exc)
            return None
    if not math.isfinite(value):  # scikit-learn answers NaN, with a warning, for an undefined metric
        logger.warning("Metric %r has no value on these rows%s", name, f": {caught[0].message}" if caught else "")
        return None
    return value


def quality_names(checks: list[Check]) -> list[str]:
    from .checks import SERVICE_METRICS

    return list(dict.fromkeys(check.metric for check in checks if check.metric not in SERVICE_METRICS))
