"""Batch scoring throughput and memory, against a real local-target server.

Prints, in one run, for a cheap model (2a + b - c over numeric columns) and the same chunk size:

* rows/s of ``batch_predict`` (a DataFrame in, a DataFrame out; default concurrency for the target);
* rows/s of a naive loop: ``requests.post`` of each chunk in turn (the peer);
* the server's own ceiling at that chunk size: ``wrk`` posting one fixed chunk with 4 connections,
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
    """The server's ceiling: wrk posting one fixed chunk (the first, as batch_predict sends it)."""

    def __init__(self, url: str, df: pd.DataFrame, chunk_size: int, workdir: Path) -> None:
        self.url, self.chunk_size = url, chunk_size
        body, content_type = encode_request(df.iloc[:chunk_size])
        (workdir / "body.json").write_bytes(body)
        self.script = workdir / "post.lua"
        self.script.write_text(
            'wrk.method = "POST"\n'
            f'wrk.headers["Content-Type"] = "{content_type}"\n'
            f'local f = io.open("{workdir / "body.json"}", "rb")\nwrk.body = f:read("*all")\nf:close()\n'
        )

    def rows_per_second(self, seconds: int = 2) -> float:
        out = subprocess.run(
            ["wrk", "-t2", "-c4", f"-d{seconds}s", "-s", str(self.script), f"{self.url}/invocations"],
            capture_output=True, text=True, check=True,
        ).stdout
        if re.search(r"Non-2xx", out):
            raise RuntimeError(f"wrk saw errors:\n{out}")
        return float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)) * self.chunk_size


MEMORY_JOB = textwrap.dedent(
    """
    import resource, sys
    from deployflow import batch_predict, get_deploy_client
    client = get_deploy_client(sys.argv[1])
    summary = batch_predict(client, sys.argv[2], deployment_name="bench", output=sys.argv[3], chunk_size=int(sys.argv[4]))
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
        wrk = Wrk(url, df, args.chunk_size, workdir) if shutil.which("wrk") else None
        concurrency = args.concurrency or client.default_batch_concurrency
        ours, naive, ratios, ceilings = [], [], [], []
        before = wrk.rows_per_second() if wrk else None
        for _ in range(args.rounds):
            naive.append(naive_loop(url, df.iloc[: max(args.rows // 4, args.chunk_size)], args.chunk_size))
            started = time.perf_counter()
            result = batch_predict(client, df, deployment_name="bench", chunk_size=args.chunk_size, concurrency=concurrency)
            ours.append(len(result) / (time.perf_counter() - started))
            if wrk is not None:
                after = wrk.rows_per_second()
                ceilings.append(after)
                ratios.append(ours[-1] / ((before + after) / 2))
                before = after
        median = statistics.median
        print(f"batch scoring, {args.rows:,} rows, chunk size {args.chunk_size}, cheap numpy model, 1 server worker, "
              f"concurrency {concurrency}, {args.rounds} rounds (medians)")
        print("  batch_predict rows/s by round: " + ", ".join(f"{x:,.0f}" for x in ours))
        print(f"  batch_predict         {median(ours):12,.0f} rows/s")
        print(f"  naive requests loop   {median(naive):12,.0f} rows/s   batch_predict / naive = {median(ours) / median(naive):.2f}x")
        if wrk is None:
            print("  server ceiling        skipped (wrk not installed: apt-get install wrk)")
        else:
            print("  batch_predict / ceiling by round: " + ", ".join(f"{x:.0%}" for x in ratios))
            print(f"  server ceiling (wrk)  {median(ceilings):12,.0f} rows/s   batch_predict / ceiling = {median(ratios):.0%}")
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
