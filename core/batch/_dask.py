"""Batch scoring on a Dask cluster.

Each partition is scored on the worker that holds it. The client is never shipped: workers rebuild it
from the target URI and the client's options, leaving out every option whose name says it is a secret
(tokens, keys, passwords) or whose value the client keeps wrapped as one, and every such entry of an
option that is a dict (``headers={"Authorization": ...}``). Workers read credentials from their own
environment or config files, as the target would on the driver (``DATABRICKS_TOKEN``,
``~/.databrickscfg``, ...). Options may be of any type the target takes (dicts, lists, objects):
clients are cached per worker process under a Dask token of the URI and options, not under the options
themselves, so their connection pools are reused across partitions.

Output is written by Dask itself (no resume): a directory of parts, or, for a single-file output, parts
staged in the hidden directory beside the file and joined into it at the end, as the one-machine path
does.
"""

from __future__ import annotations

import dataclasses
import glob
import os
import re
import shutil
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..errors import InvalidInputError
from ..redaction import redact
from ._pipeline import http_route, score_chunks
from ._runner import BatchSummary, ChunkResult, ChunkScorer, join_results
from ._sources import Chunk, _rechunk, require_columns

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["ClientSpec", "batch_predict_dask"]

_SECRET_NAME = re.compile(r"(?i)(token|secret|password|passwd|api[-_]?key|credential|private|authorization|cookie)")


def _is_secret(name: str, value: Any) -> bool:
    """A secret by its name, or by its type (a value the client keeps wrapped, as a ``Secret`` or a
    pydantic ``SecretStr``, which both offer ``get_secret_value``)."""
    return bool(_SECRET_NAME.search(name)) or callable(getattr(value, "get_secret_value", None))


@dataclass(frozen=True, eq=False)
class ClientSpec:
    """What a worker needs to build its own client: a URI and the options that are not secrets.

    Equal specs have equal ``key`` (a Dask token of the URI and options), which is what clients are
    cached under: the options themselves may be unhashable.
    """

    target_uri: str
    options: tuple[tuple[str, Any], ...] = ()
    withheld: tuple[str, ...] = field(default=())
    key: str = ""

    @classmethod
    def from_client(cls, client: Any) -> ClientSpec:
        from dask.base import tokenize

        kept: list[tuple[str, Any]] = []
        withheld: list[str] = []
        for name, value in sorted(dict(getattr(client, "options", {}) or {}).items()):
            if _is_secret(name, value):
                withheld.append(name)
                continue
            if isinstance(value, Mapping):
                secret = [k for k, v in value.items() if _is_secret(str(k), v)]
                withheld.extend(f"{name}.{k}" for k in sorted(map(str, secret)))
                value = {k: v for k, v in value.items() if k not in secret}
            kept.append((name, value))
        options = tuple(kept)
        return cls(client.target_uri, options, tuple(withheld), tokenize(client.target_uri, options))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ClientSpec) and other.key == self.key

    def __hash__(self) -> int:
        return hash(self.key)

    def __repr__(self) -> str:  # Dask logs a failed task's arguments
        names = ", ".join(name for name, _ in self.options)
        return f"ClientSpec({redact(self.target_uri)!r}, options=[{names}], withheld={list(self.withheld)})"

    def build(self) -> Any:
        with _cache_lock:
            client = _clients.get(self.key)
            if client is None:
                from ..api import get_deploy_client

                client = get_deploy_client(self.target_uri, **dict(self.options))
                _clients[self.key] = client
            return client


_cache_lock = threading.Lock()
_clients: dict[str, Any] = {}


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
    #: The output's columns as Dask was told them (from scoring the first rows on the driver).
    columns: tuple[Any, ...] = ()

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
        route=http_route(scorer),
        concurrency=settings.concurrency,
        skip=lambda chunk: False,
        deliver=results.append,
        on_progress=lambda chunk, failed: None,
    )
    scored = join_results(results, settings.prediction_column)
    return _empty_like(partition, settings) if scored is None else _in_columns(scored, settings.columns)


def _in_columns(scored: pd.DataFrame, columns: tuple[Any, ...]) -> pd.DataFrame:
    """A partition's output with the columns Dask was told: a column it lacks (a list output that is
    shorter in this partition) comes empty; one beyond them is an error, where Dask would stop with a
    ValueError of its own, and dropping it would lose predictions."""
    if not columns or tuple(scored.columns) == columns:
        return scored
    extra = [column for column in scored.columns if column not in columns]
    if extra:
        raise InvalidInputError(
            f"The predictions of a Dask partition of {len(scored)} rows have columns {extra} that those of "
            f"the first rows, which set the output's columns, do not have ({list(columns)}); every partition "
            "must give the columns of the first rows. A pandas DataFrame or a file input has no such need: "
            "the columns of its output are those of all chunks"
        )
    return scored.reindex(columns=list(columns))


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
    required: list[Any],
) -> Any:
    """Score a Dask DataFrame partition by partition on the cluster."""
    from .._extras import require

    require("dask.dataframe", "dask", "batch scoring a Dask DataFrame")
    from ._output import check_can_create, merge_parts, part_number, plan_output

    if scorer.isolate_bad_rows:
        raise InvalidInputError("on_bad_rows='isolate' is not available for Dask inputs yet; use 'raise'")
    require_columns(ddf.columns, required, "The Dask DataFrame")
    plan = plan_output(output, output_format) if output is not None else None
    if plan is not None:
        if plan.fmt not in ("parquet", "csv"):
            raise InvalidInputError("Dask output can be written as Parquet or CSV; pass a .parquet or .csv path")
        check_can_create(plan.parts_dir, "output")
        check_can_create(plan.path, "output")
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
    settings = dataclasses.replace(settings, columns=tuple(meta.columns))
    scored = ddf.map_partitions(_score_partition, spec, settings, meta=meta)
    if plan is None:
        return scored
    started = time.monotonic()
    folder = plan.parts_dir
    if plan.single_file and os.path.isdir(folder):
        shutil.rmtree(folder)  # what a killed earlier run staged: Dask outputs are written whole each time
    try:
        if plan.fmt == "parquet":
            scored.to_parquet(folder, write_index=False, overwrite=True)
            import pyarrow.parquet as pq

            files = sorted(glob.glob(os.path.join(folder, "*.parquet")), key=part_number)
            rows = sum(pq.ParquetFile(f).metadata.num_rows for f in files)
        else:
            os.makedirs(folder, exist_ok=True)
            files = scored.to_csv(os.path.join(folder, "part-*.csv"), index=False)
            rows = sum(max(0, _count_lines(f) - 1) for f in files)
    except OSError as exc:
        raise InvalidInputError(f"Cannot write the output {plan.path!r}: {exc}") from exc
    if plan.single_file:
        merge_parts(files, plan.fmt, plan.path, scratch=folder)
        shutil.rmtree(folder)
    return BatchSummary(
        rows=rows,
        chunks=ddf.npartitions,
        seconds=time.monotonic() - started,
        output_path=plan.path,
    )


def _count_lines(path: str) -> int:
    with open(path, "rb") as handle:
        return sum(chunk.count(b"\n") for chunk in iter(lambda: handle.read(1 << 20), b""))
