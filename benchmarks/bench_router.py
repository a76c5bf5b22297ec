"""Latency and throughput through a local endpoint's router against the same deployment directly.

One deployment of a trivial model and one endpoint routing 100 % to it. Two measurements, each in
rounds that alternate direct and routed, so both see the same machine load:

* one at a time: requests of ``--rows`` rows (default 10) on a kept-alive ``requests`` session; req/s
  and p50/p99. This is the latency the router adds (its p50);
* under load (when ``wrk`` is installed): ``wrk`` posting the same body over each of ``--connections``
  counts of kept-alive connections (default 8, 16, 32 and 64; 64 is what a server admits per worker
  before it answers 503); req/s and its latency percentiles at each count.

Prints medians over rounds, the machine's load average (the figures move with it on a shared machine),
and the ratios issue 15 asks about: routed req/s as a share of direct, and the p50 the router adds.
Under load it prints the ratio at each count and the ratio of capacities: in each round, the most
req/s the routed path made at any count against the most the direct path made at any count. A path's
capacity is what it serves once it is saturated; with few connections the routed path is not (each
request waits for two hops in turn while a core is idle), so its ratio at 8 connections measures
latency more than throughput.

The router's cost per request hardly depends on the body, the model's does: with few rows the ratio is
the router's worst case, with more it approaches what a real model sees.

Run: ``.venv/bin/python benchmarks/bench_router.py [--rounds 5] [--requests 500] [--connections 8,16,32,64]
[--rows 10]`` (``--connections 0`` skips the part under load).
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
    # wrk stops with its last requests unanswered and leaves; the server still works through them, and
    # they count against its max_queue: the next round, which may go to the same server through the
    # router, waits until they are done instead of meeting a full queue (503).
    time.sleep(0.5)
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


def medians(rounds: list[tuple[float, float, float]]) -> tuple[float, float, float]:
    return tuple(statistics.median(round_[i] for round_ in rounds) for i in range(3))  # type: ignore[return-value]


def print_paths(summary: dict[str, tuple[float, float, float]]) -> None:
    for name, (rate, p50, p99) in summary.items():
        print(f"  {name:7s} {rate:8,.0f} req/s   p50 {p50 * 1e3:6.2f} ms   p99 {p99 * 1e3:6.2f} ms")


def ratio_line(label: str, direct: list[float], routed: list[float]) -> str:
    ratios = [r / d for d, r in zip(direct, routed)]
    return (f"{label}: {statistics.median(ratios):.0%} (per round: {', '.join(f'{x:.0%}' for x in ratios)})")


def report(title: str, figures: dict[str, list[tuple[float, float, float]]]) -> None:
    summary = {name: medians(rounds) for name, rounds in figures.items()}
    print(title)
    print_paths(summary)
    direct, routed = summary["direct"], summary["router"]
    rates = [[round_[0] for round_ in figures[name]] for name in ("direct", "router")]
    print(f"  {ratio_line('router / direct req/s', *rates)}"
          f"   p50 added by the router: {(routed[1] - direct[1]) * 1e3:.2f} ms")


def report_load(title: str, figures: dict[int, dict[str, list[tuple[float, float, float]]]]) -> None:
    print(title)
    for connections, by_path in figures.items():
        report(f" {connections} connections", by_path)
    rounds = len(next(iter(figures.values()))["direct"])
    most = {name: [max(by_path[name][i][0] for by_path in figures.values()) for i in range(rounds)]
            for name in ("direct", "router")}
    print(f" capacity (the most req/s at any connection count, per round): direct "
          f"{statistics.median(most['direct']):,.0f}, router {statistics.median(most['router']):,.0f}")
    print(f"  {ratio_line('router / direct capacity', most['direct'], most['router'])}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--requests", type=int, default=500)
    parser.add_argument("--connections", default="8,16,32,64",
                        help="comma-separated wrk connection counts (0: skip the wrk part)")
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
        counts = [int(count) for count in args.connections.split(",") if int(count) > 0]
        if counts and shutil.which("wrk"):
            script = workdir / "post.lua"
            script.write_text('wrk.method = "POST"\nwrk.headers["Content-Type"] = "application/json"\n'
                              f"wrk.body = {json.dumps(json.dumps(BODY))}\n")
            load: dict[int, dict[str, list[tuple[float, float, float]]]] = {
                count: {name: [] for name in urls} for count in counts
            }
            for _ in range(args.rounds):
                for count in counts:
                    for name, url in urls.items():
                        load[count][name].append(wrk_round(url, count, args.seconds, script))
            report_load(f"wrk, kept-alive connections, {args.rounds} interleaved rounds of {args.seconds:g} s",
                        load)
        elif counts:
            print("wrk is not installed (apt-get install wrk): the under-load part is skipped")
        print(f"load average after: {', '.join(f'{x:.2f}' for x in os.getloadavg())}")
    finally:
        client.delete_endpoint("routed")
        client.delete_deployment("direct")


if __name__ == "__main__":
    main()
