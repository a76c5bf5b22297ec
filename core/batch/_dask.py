"""Batch scoring on a Dask cluster.

Each partition is scored on the worker that holds it. The client is never shipped: workers rebuild it
from the target URI and the client's options, leaving out every option whose name says it is a secret
(tokens, keys, passwords). Workers read credentials from their own environment or config files, as the
target would on the driver (``DATABRICKS_TOKEN``, ``~/.databrickscfg``, ...). Clients are cached per
worker process, so their connection pools are reused across partitions.
"""

from __future__ import annotations

import glob
import os
import re
import threading
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..errors import InvalidInputError
from ._pipeline import score_chunks
from ._runner import BatchSummary, ChunkResult, ChunkScorer, join_results
from ._sources import Chunk, _rechunk

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["ClientSpec", "batch_predict_dask"]

_SECRET_NAME = re.compile(r"(?i)(token|secret|password|passwd|api_?key|credential|private)")


@dataclass(frozen=True)
class ClientSpec:
    """What a worker needs to build its own client: a URI and the options that are not secrets."""

    target_uri: str
    options: tuple[tuple[str, Any], ...] = ()
    withheld: tuple[str, ...] = field(default=())

    @classmethod
    def from_client(cls, client: Any) -> ClientSpec:
        options = dict(getattr(client, "options", {}) or {})
        kept = tuple(sorted((k, v) for k, v in options.items() if not _SECRET_NAME.search(k)))
        withheld = tuple(sorted(k for k in options if _SECRET_NAME.search(k)))
        return cls(client.target_uri, kept, withheld)

    def build(self) -> Any:
        with _cache_lock:
            client = _clients.get(self)
            if client is None:
                from ..api import get_deploy_client

                client = get_deploy_client(self.target_uri, **dict(self.options))
                _clients[self] = client
            return client


_cache_lock = threading.Lock()
_clients: dict[ClientSpec, Any] = {}


@dataclass(frozen=True)
class _ScorerSettings:
    target: tuple[tuple[str, Any], ...]
    feature_columns: list[str] | None
    keep_columns: list[str] | None
    prediction_column: str
    max_chunk_retries: int
    retry_backoff: float
    params: dict[str, Any] | None
    chunk_size: int
    concurrency: int

    def scorer(self, client: Any) -> ChunkScorer:
        return ChunkScorer(
            client,
            dict(self.target),
            feature_columns=self.feature_columns,
            keep_columns=self.keep_columns,
            prediction_column=self.prediction_column,
            isolate_bad_rows=False,
            max_chunk_retries=self.max_chunk_retries,
            retry_backoff=self.retry_backoff,
            params=self.params,
        )


def _score_partition(partition: pd.DataFrame, spec: ClientSpec, settings: _ScorerSettings) -> pd.DataFrame:
    from .._extras import require_extra

    # Runs on a worker, whose environment may lack what the driver has (checked once per process).
    require_extra("batch", "batch scoring on a Dask worker")
    scorer = settings.scorer(spec.build())
    results: list[ChunkResult] = []
    score_chunks(
        _rechunk([partition], settings.chunk_size),
        scorer,
        concurrency=settings.concurrency,
        skip=lambda chunk: False,
        deliver=results.append,
        on_progress=lambda chunk, failed: None,
    )
    scored = join_results(results, settings.prediction_column)
    return _empty_like(partition, settings) if scored is None else scored


def _empty_like(partition: pd.DataFrame, settings: _ScorerSettings) -> pd.DataFrame:
    import pandas as pd

    kept = partition if settings.keep_columns is None else partition[settings.keep_columns]
    return kept.assign(**{settings.prediction_column: pd.Series(dtype="float64")})


def batch_predict_dask(
    client: Any,
    ddf: Any,
    scorer: ChunkScorer,
    *,
    output: Any,
    output_format: str | None,
    chunk_size: int,
) -> Any:
    """Score a Dask DataFrame partition by partition on the cluster."""
    from .._extras import require

    require("dask.dataframe", "dask", "batch scoring a Dask DataFrame")
    if scorer.isolate_bad_rows:
        raise InvalidInputError("on_bad_rows='isolate' is not available for Dask inputs yet; use 'raise'")
    spec = ClientSpec.from_client(client)
    settings = _ScorerSettings(
        target=tuple(scorer.target.items()),
        feature_columns=scorer.feature_columns,
        keep_columns=scorer.keep_columns,
        prediction_column=scorer.prediction_column,
        max_chunk_retries=scorer.max_chunk_retries,
        retry_backoff=scorer.retry_backoff,
        params=scorer.params,
        chunk_size=chunk_size,
        # Partitions already run in parallel across workers; a little overlap inside each is enough.
        concurrency=2,
    )
    # The output schema, from scoring a couple of real rows on the driver.
    sample = ddf.head(2, npartitions=-1)
    meta = scorer.score(Chunk(0, 0, sample)).frame.iloc[0:0] if len(sample) else None
    if meta is None:
        raise InvalidInputError("The Dask DataFrame has no rows to score")
    scored = ddf.map_partitions(_score_partition, spec, settings, meta=meta)
    if output is None:
        return scored
    from ._output import format_of_output

    path = os.fspath(output)
    fmt = format_of_output(path, output_format)
    started = time.monotonic()
    if fmt == "parquet":
        scored.to_parquet(path, write_index=False, overwrite=True)
        import pyarrow.parquet as pq

        files = sorted(glob.glob(os.path.join(path, "*.parquet")))
        rows = sum(pq.ParquetFile(f).metadata.num_rows for f in files)
    elif fmt == "csv":
        os.makedirs(path, exist_ok=True)
        files = scored.to_csv(os.path.join(path, "part-*.csv"), index=False)
        rows = sum(max(0, _count_lines(f) - 1) for f in files)
    else:
        raise InvalidInputError("Dask output can be written as Parquet or CSV; pass a .parquet or .csv path")
    return BatchSummary(
        rows=rows,
        chunks=ddf.npartitions,
        seconds=time.monotonic() - started,
        output_path=path,
    )


def _count_lines(path: str) -> int:
    with open(path, "rb") as handle:
        return sum(chunk.count(b"\n") for chunk in iter(lambda: handle.read(1 << 20), b""))
