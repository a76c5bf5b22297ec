"""Batch scoring throughput and memory, against a real local-target server.

Prints, in one run, for a cheap model (2a + b - c over numeric columns) and the same chunk size:

* rows/s of ``batch_predict`` (a DataFrame in, a DataFrame out; default concurrency for the target);
* rows/s of a naive loop: ``requests.post`` of each chunk in turn (the peer);
* the server's own ceiling at that chunk size: ``wrk`` posting one fixed chunk, the most it gets with 4
  connections or with as many as batch_predict keeps in flight,
  times the chunk size (skipped with a note when wrk is not installed: ``apt-get install wrk``);
* peak RSS of a subprocess scoring a 500,000-row and a 5,000,000-row Parquet file to an output
  directory of parts, and their ratio (``--no-memory`` skips this part, which takes a few minutes).

Method: this machine's speed drifts by a third within seconds, so one ceiling measured at another
moment says little about a batch run. Each round therefore measures the ceiling with wrk right after
the batch run, and the batch run's ratio is taken against the mean of the ceilings measured just before
and just after it; the figures printed are medians over the rounds.

Run: ``.venv/bin/python benchmarks/bench_batch.py [--rows 1200000] [--chunk-size 2000] [--rounds 9]
[--concurrency N] [--no-memory]``.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import numpy as np
import pandas as pd
import requests

from deployflow import batch_predict, get_deploy_client
from deployflow.arrow_chunks import CONTENT_TYPE_ARROW, encode_frame
from deployflow.payloads import encode_request

MODEL = textwrap.dedent(
    """
    def linear(data):
        return (data["a"] * 2 + data["b"] - data["c"]).to_numpy()
    """
)


def make_frame(rows: int, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame({"a": rng.normal(size=rows), "b": rng.normal(size=rows), "c": rng.integers(0, 9, rows).astype("float64")})


def naive_loop(url: str, df: pd.DataFrame, chunk_size: int) -> float:
    started = time.perf_counter()
    session = requests.Session()
    out = []
    for start in range(0, len(df), chunk_size):
        chunk = df.iloc[start : start + chunk_size]
        body = {"dataframe_split": {"columns": list(chunk.columns), "data": chunk.to_numpy().tolist()}}
        answer = session.post(f"{url}/invocations", json=body, timeout=120)
        answer.raise_for_status()
        out.extend(answer.json()["predictions"])
    assert len(out) == len(df)
    return len(df) / (time.perf_counter() - started)


class Wrk:
    """The server's ceiling: wrk posting one fixed chunk (the first, as batch_predict sends it), as JSON
    or (``arrow=True``) as batch_predict sends it to a local server: an Arrow stream, with the Accept
    header that asks for an Arrow answer. Measured with each number of ``connections`` in turn (4, and
    as many as batch_predict keeps in flight), the ceiling being the most of those."""

    def __init__(self, url: str, df: pd.DataFrame, chunk_size: int, workdir: Path, *, arrow: bool = False,
                 connections: tuple[int, ...] = (4,)) -> None:
        self.url, self.chunk_size, self.connections = url, chunk_size, sorted(set(connections))
        first = df.iloc[:chunk_size]
        accept = ""
        if arrow:
            body, content_type, name = encode_frame(first), CONTENT_TYPE_ARROW, "body.arrow"
            accept = f'wrk.headers["Accept"] = "{CONTENT_TYPE_ARROW}, application/json"\n'
        else:
            (body, content_type), name = encode_request(first), "body.json"
        (workdir / name).write_bytes(body)
        self.script = workdir / f"post-{name}.lua"
        self.script.write_text(
            'wrk.method = "POST"\n'
            f'wrk.headers["Content-Type"] = "{content_type}"\n' + accept +
            f'local f = io.open("{workdir / name}", "rb")\nwrk.body = f:read("*all")\nf:close()\n'
        )

    def rows_per_second(self, seconds: int = 2) -> float:
        return max(self._rows_per_second(connections, seconds) for connections in self.connections)

    def _rows_per_second(self, connections: int, seconds: int) -> float:
        out = subprocess.run(
            ["wrk", "-t2", f"-c{connections}", f"-d{seconds}s", "-s", str(self.script), f"{self.url}/invocations"],
            capture_output=True, text=True, check=True,
        ).stdout
        if re.search(r"Non-2xx", out):
            raise RuntimeError(f"wrk saw errors:\n{out}")
        return float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)) * self.chunk_size


def json_client(client):
    """``client`` as batch_predict used it before Arrow bodies: the same route, chunks sent as JSON."""
    import copy
    import dataclasses

    twin = copy.copy(client)
    route_of = client.batch_http_route
    twin.batch_http_route = lambda **target: dataclasses.replace(route_of(**target), arrow=False)
    return twin


MEMORY_JOB = textwrap.dedent(
    """
    import resource, sys
    from deployflow import batch_predict, get_deploy_client
    client = get_deploy_client(sys.argv[1])
    summary = batch_predict(client, sys.argv[2], deployment_name="bench", output=sys.argv[3], output_format="parquet",
                            chunk_size=int(sys.argv[4]))
    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(summary.rows, peak_kib)
    """
)


def peak_rss(uri: str, rows: int, chunk_size: int, workdir: Path) -> tuple[int, float]:
    source = workdir / f"input-{rows}.parquet"
    import pyarrow as pa
    import pyarrow.parquet as pq

    with pq.ParquetWriter(source, pa.schema([("a", pa.float64()), ("b", pa.float64()), ("c", pa.float64())])) as writer:
        for start in range(0, rows, 500_000):
            part = make_frame(min(500_000, rows - start), seed=start)
            writer.write_table(pa.Table.from_pandas(part, preserve_index=False), row_group_size=100_000)
    script = workdir / "memory_job.py"
    script.write_text(MEMORY_JOB)
    out_dir = workdir / f"out-{rows}"  # no suffix: a directory of Parquet parts, what the memory bound is about
    started = time.perf_counter()
    line = subprocess.run(
        [sys.executable, str(script), uri, str(source), str(out_dir), str(chunk_size)], capture_output=True, text=True, check=True
    ).stdout.split()
    seconds = time.perf_counter() - started
    scored, peak_kib = int(line[0]), int(line[1])
    assert scored == rows, (scored, rows)
    shutil.rmtree(out_dir)
    source.unlink()
    print(f"  {rows:>9,} rows: peak RSS {peak_kib / 1024:7.1f} MiB, {seconds:6.1f} s ({rows / seconds:,.0f} rows/s)")
    return rows, peak_kib / 1024


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=1_200_000)
    parser.add_argument("--chunk-size", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--concurrency", type=int, default=None, help="default: the target's own default")
    parser.add_argument("--no-memory", action="store_true")
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="deployflow-bench-batch-"))
    (workdir / "bench_model.py").write_text(MODEL)
    uri = f"local://{workdir / 'state'}"
    client = get_deploy_client(uri)
    client.create_deployment("bench", f"python:{workdir / 'bench_model.py'}:linear")
    url = client.get_deployment("bench")["url"]
    try:
        df = make_frame(args.rows)
        batch_predict(client, df.iloc[:20_000], deployment_name="bench", chunk_size=args.chunk_size)  # warm up
        have_wrk = shutil.which("wrk") is not None
        concurrency = args.concurrency or client.default_batch_concurrency
        json_only = json_client(client)
        # Two ways of sending the same chunks: as Arrow streams (what batch_predict sends a local server)
        # and as JSON (what it sends other servers, and what it sent before); each against wrk posting
        # the same body.
        wrk_connections = (4, concurrency)
        ways = {"arrow": (client, Wrk(url, df, args.chunk_size, workdir, arrow=True, connections=wrk_connections)
                          if have_wrk else None),
                "json": (json_only, Wrk(url, df, args.chunk_size, workdir, connections=wrk_connections)
                         if have_wrk else None)}
        ours = {way: [] for way in ways}
        ratios = {way: [] for way in ways}
        ceilings = {way: [] for way in ways}
        naive = []
        before = {way: wrk.rows_per_second() for way, (_, wrk) in ways.items() if wrk is not None}
        for _ in range(args.rounds):
            naive.append(naive_loop(url, df.iloc[: max(args.rows // 4, args.chunk_size)], args.chunk_size))
            for way, (scoring_client, wrk) in ways.items():
                started = time.perf_counter()
                result = batch_predict(scoring_client, df, deployment_name="bench", chunk_size=args.chunk_size,
                                       concurrency=concurrency)
                ours[way].append(len(result) / (time.perf_counter() - started))
                if wrk is not None:
                    after = wrk.rows_per_second()
                    ceilings[way].append(after)
                    ratios[way].append(ours[way][-1] / ((before[way] + after) / 2))
                    before[way] = after
        median = statistics.median
        print(f"batch scoring, {args.rows:,} rows, chunk size {args.chunk_size}, cheap numpy model, 1 server worker, "
              f"concurrency {concurrency}, {args.rounds} rounds (medians)")
        print(f"  naive requests loop (JSON)      {median(naive):12,.0f} rows/s")
        for way in ways:
            print(f"  batch_predict, {way:5} bodies      {median(ours[way]):12,.0f} rows/s   "
                  f"/ naive = {median(ours[way]) / median(naive):.2f}x   by round: "
                  + ", ".join(f"{x:,.0f}" for x in ours[way]))
            if not have_wrk:
                continue
            print(f"  server ceiling, {way:5} (wrk)      {median(ceilings[way]):12,.0f} rows/s   "
                  f"batch_predict / ceiling = {median(ratios[way]):.0%}   by round: "
                  + ", ".join(f"{x:.0%}" for x in ratios[way]))
        print(f"  arrow / json batch_predict: {median(ours['arrow']) / median(ours['json']):.2f}x")
        if not have_wrk:
            print("  server ceiling        skipped (wrk not installed: apt-get install wrk)")
        if not args.no_memory:
            print("peak RSS of a batch job writing Parquet parts:")
            small = peak_rss(uri, 500_000, args.chunk_size, workdir)
            large = peak_rss(uri, 5_000_000, args.chunk_size, workdir)
            print(f"  5,000,000 / 500,000 rows peak RSS ratio: {large[1] / small[1]:.2f}x")
    finally:
        client.delete_deployment("bench")
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
