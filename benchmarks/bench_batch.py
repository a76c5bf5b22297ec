"""Batch scoring throughput and memory, against a real local-target server.

Prints, in one run, for a cheap model (2a + b over numeric columns) and the same chunk size:

* rows/s of ``batch_predict`` (default concurrency for the target);
* rows/s of a naive loop: ``requests.post`` of each chunk in turn (the peer);
* the server's own ceiling at that chunk size: ``wrk`` posting one fixed chunk with 4 connections,
  times the chunk size (skipped with a note when wrk is not installed: ``apt-get install wrk``);
* peak RSS of a subprocess scoring a 500,000-row and a 5,000,000-row Parquet file to an output
  directory, and their ratio (``--no-memory`` skips this part, which takes a few minutes).

Run: ``.venv/bin/python benchmarks/bench_batch.py [--rows 200000] [--chunk-size 2000] [--no-memory]``.
"""

from __future__ import annotations

import argparse
import json
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
import orjson
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


def transport_only(url: str, df: pd.DataFrame, chunk_size: int, concurrency: int = 4, requests_total: int = 200) -> float:
    """rows/s of deployflow's transport alone: threads posting one pre-encoded chunk, nothing decoded.
    Between batch_predict and the wrk ceiling, it shows how much is the Python HTTP client's share."""
    from concurrent.futures import ThreadPoolExecutor

    from deployflow.transport import HttpTransport

    body, content_type = encode_request(df.iloc[:chunk_size])
    each = requests_total // concurrency
    with HttpTransport(url) as transport:

        def post(_: int) -> None:
            for _ in range(each):
                transport.request("POST", "/invocations", data=body, headers={"Content-Type": content_type}, kind="predict")

        started = time.perf_counter()
        with ThreadPoolExecutor(concurrency) as pool:
            list(pool.map(post, range(concurrency)))
        return each * concurrency * chunk_size / (time.perf_counter() - started)


def wrk_ceiling(url: str, df: pd.DataFrame, chunk_size: int, workdir: Path) -> float | None:
    if shutil.which("wrk") is None:
        return None
    body, content_type = encode_request(df.iloc[:chunk_size])
    (workdir / "body.json").write_bytes(body)
    script = workdir / "post.lua"
    script.write_text(
        'wrk.method = "POST"\n'
        f'wrk.headers["Content-Type"] = "{content_type}"\n'
        f'local f = io.open("{workdir / "body.json"}", "rb")\nwrk.body = f:read("*all")\nf:close()\n'
    )
    out = subprocess.run(
        ["wrk", "-t2", "-c4", "-d8s", "-s", str(script), f"{url}/invocations"], capture_output=True, text=True, check=True
    ).stdout
    requests_per_second = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    if re.search(r"Non-2xx", out):
        raise RuntimeError(f"wrk saw errors:\n{out}")
    return requests_per_second * chunk_size


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
    out_dir = workdir / f"out-{rows}.parquet"
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
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--chunk-size", type=int, default=2000)
    parser.add_argument("--no-memory", action="store_true")
    parser.add_argument("--repeat", type=int, default=3)
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
        # This machine's figures move by a third from one run to the next: interleave the three
        # measurements and report each one's median.
        naive_runs, our_runs, ceiling_runs, transport_runs = [], [], [], []
        for _ in range(args.repeat):
            naive_runs.append(naive_loop(url, df, args.chunk_size))
            transport_runs.append(transport_only(url, df, args.chunk_size))
            started = time.perf_counter()
            result = batch_predict(client, df, deployment_name="bench", chunk_size=args.chunk_size)
            our_runs.append(len(result) / (time.perf_counter() - started))
            ceiling_runs.append(wrk_ceiling(url, df, args.chunk_size, workdir))
        naive, ours = statistics.median(naive_runs), statistics.median(our_runs)
        transport = statistics.median(transport_runs)
        ceiling = None if None in ceiling_runs else statistics.median(ceiling_runs)
        print(f"batch scoring, {args.rows:,} rows, chunk size {args.chunk_size}, cheap numpy model, 1 server worker, "
              f"median of {args.repeat} interleaved runs")
        print("  runs (rows/s): batch_predict " + ", ".join(f"{x:,.0f}" for x in our_runs)
              + "; naive " + ", ".join(f"{x:,.0f}" for x in naive_runs)
              + ("" if ceiling is None else "; ceiling " + ", ".join(f"{x:,.0f}" for x in ceiling_runs)))
        print(f"  batch_predict         {ours:12,.0f} rows/s")
        print(f"  naive requests loop   {naive:12,.0f} rows/s   batch_predict / naive = {ours / naive:.2f}x")
        print(f"  transport only (4 threads, pre-encoded) {transport:,.0f} rows/s   batch_predict / transport = {ours / transport:.0%}")
        if ceiling is None:
            print("  server ceiling        skipped (wrk not installed: apt-get install wrk)")
        else:
            print(f"  server ceiling (wrk)  {ceiling:12,.0f} rows/s   batch_predict / ceiling = {ours / ceiling:.0%}")
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
