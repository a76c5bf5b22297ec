"""Latency and throughput through a local endpoint's router against the same deployment directly.

One deployment of a trivial model and one endpoint routing 100 % to it. Two measurements, each in
rounds that alternate direct and routed, so both see the same machine load:

* one at a time: requests of ``--rows`` rows (default 10) on a kept-alive ``requests`` session; req/s
  and p50/p99;
* under load (when ``wrk`` is installed): ``wrk`` with ``--connections`` kept-alive connections posting
  the same body; req/s and its latency percentiles.

Prints medians over rounds, the machine's load average (the figures move with it on a shared machine),
and the ratios issue 15 asks about: routed req/s as a share of direct, and the p50 the router adds.

The router's cost per request hardly depends on the body, the model's does: with few rows the ratio is
the router's worst case, with more it approaches what a real model sees.

Run: ``.venv/bin/python benchmarks/bench_router.py [--rounds 5] [--requests 500] [--connections 8] [--rows 10]``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

import requests

from deployflow import get_deploy_client

MODEL = "def model(data):\n    return [1] * len(data)\n"
BODY = {"dataframe_split": {"columns": ["a"], "data": [[1.0]] * 10}}  # --rows replaces it


def one_round(session: requests.Session, url: str, count: int) -> tuple[float, float, float]:
    latencies = []
    started = time.perf_counter()
    for _ in range(count):
        sent = time.perf_counter()
        answer = session.post(f"{url}/invocations", json=BODY, timeout=30)
        latencies.append(time.perf_counter() - sent)
        answer.raise_for_status()
    rate = count / (time.perf_counter() - started)
    latencies.sort()
    return rate, latencies[len(latencies) // 2], latencies[int(len(latencies) * 0.99)]


def wrk_round(url: str, connections: int, seconds: float, script: Path) -> tuple[float, float, float]:
    """req/s, p50 and p99 (seconds) of one wrk run posting BODY over ``connections`` connections."""
    done = subprocess.run(
        ["wrk", "-t2", f"-c{connections}", f"-d{seconds:g}s", "--latency", "-s", str(script), f"{url}/invocations"],
        capture_output=True, text=True, check=True,
    )
    out = done.stdout
    if "Non-2xx" in out or "Socket errors" in out:
        raise RuntimeError(f"wrk saw errors:\n{out}")
    rate = float(out.split("Requests/sec:")[1].split()[0])

    def percentile(label: str) -> float:
        text = out.split(f" {label}")[1].split()[0]
        for unit, scale in (("us", 1e-6), ("ms", 1e-3), ("s", 1.0)):
            if text.endswith(unit):
                return float(text[: -len(unit)]) * scale
        raise ValueError(text)

    return rate, percentile("50%"), percentile("99%")


def report(title: str, figures: dict[str, list[tuple[float, float, float]]]) -> None:
    median = statistics.median
    summary = {name: tuple(median(round_[i] for round_ in rounds) for i in range(3)) for name, rounds in figures.items()}
    print(title)
    for name, (rate, p50, p99) in summary.items():
        print(f"  {name:7s} {rate:8,.0f} req/s   p50 {p50 * 1e3:6.2f} ms   p99 {p99 * 1e3:6.2f} ms")
    direct, routed = summary["direct"], summary["router"]
    ratios = [r[0] / d[0] for d, r in zip(figures["direct"], figures["router"])]
    print(f"  router / direct req/s: {routed[0] / direct[0]:.0%} (per round: {', '.join(f'{x:.0%}' for x in ratios)})"
          f"   p50 added by the router: {(routed[1] - direct[1]) * 1e3:.2f} ms")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--requests", type=int, default=500)
    parser.add_argument("--connections", type=int, default=8, help="wrk connections (0: skip the wrk part)")
    parser.add_argument("--seconds", type=float, default=3.0, help="seconds of each wrk round")
    parser.add_argument("--rows", type=int, default=10, help="rows per request (one float column)")
    args = parser.parse_args()
    global BODY
    BODY = {"dataframe_split": {"columns": ["a"], "data": [[1.0]] * args.rows}}
    workdir = Path(tempfile.mkdtemp(prefix="deployflow-bench-router-"))
    (workdir / "model.py").write_text(MODEL)
    client = get_deploy_client(f"local://{workdir / 'state'}")
    client.create_deployment("direct", f"python:{workdir / 'model.py'}:model")
    client.create_endpoint("routed", {"routes": [{"deployment": "direct", "traffic": 100}]})
    try:
        urls = {"direct": client.get_deployment("direct")["url"], "router": client.get_endpoint("routed")["url"]}
        session = requests.Session()
        for url in urls.values():
            one_round(session, url, 50)  # warm up both paths and their connections
        print(f"rows per request: {args.rows}")
        print(f"load average before: {', '.join(f'{x:.2f}' for x in os.getloadavg())}")
        figures: dict[str, list[tuple[float, float, float]]] = {name: [] for name in urls}
        for _ in range(args.rounds):
            for name, url in urls.items():
                figures[name].append(one_round(session, url, args.requests))
        report(f"{args.rows}-row requests one at a time on a kept-alive connection, {args.rounds} interleaved rounds of "
               f"{args.requests}", figures)
        if args.connections and shutil.which("wrk"):
            script = workdir / "post.lua"
            script.write_text('wrk.method = "POST"\nwrk.headers["Content-Type"] = "application/json"\n'
                              f"wrk.body = {json.dumps(json.dumps(BODY))}\n")
            figures = {name: [] for name in urls}
            for _ in range(args.rounds):
                for name, url in urls.items():
                    figures[name].append(wrk_round(url, args.connections, args.seconds, script))
            report(f"wrk, {args.connections} kept-alive connections, {args.rounds} interleaved rounds of "
                   f"{args.seconds:g} s", figures)
        elif args.connections:
            print("wrk is not installed (apt-get install wrk): the under-load part is skipped")
        print(f"load average after: {', '.join(f'{x:.2f}' for x in os.getloadavg())}")
    finally:
        client.delete_endpoint("routed")
        client.delete_deployment("direct")


if __name__ == "__main__":
    main()
