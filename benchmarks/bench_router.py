"""Latency and throughput through a local endpoint's router against the same deployment directly.

One deployment of a trivial model and one endpoint routing 100 % to it; requests of 10 rows sent one at
a time on a kept-alive ``requests`` session, alternating direct and routed rounds. Prints, per path,
req/s and p50/p99 (medians over rounds), and the ratios issue 15 asks about: routed req/s as a share of
direct, and the p50 the router adds.

Run: ``.venv/bin/python benchmarks/bench_router.py [--rounds 5] [--requests 500]``.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import requests

from deployflow import get_deploy_client

MODEL = "def model(data):\n    return [1] * len(data)\n"
BODY = {"dataframe_split": {"columns": ["a"], "data": [[1.0]] * 10}}


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


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--requests", type=int, default=500)
    args = parser.parse_args()
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
        figures: dict[str, list[tuple[float, float, float]]] = {name: [] for name in urls}
        for _ in range(args.rounds):
            for name, url in urls.items():
                figures[name].append(one_round(session, url, args.requests))
        median = statistics.median
        summary = {name: tuple(median(round_[i] for round_ in rounds) for i in range(3)) for name, rounds in figures.items()}
        print(f"10-row requests one at a time on a kept-alive connection, {args.rounds} interleaved rounds of {args.requests}")
        for name, (rate, p50, p99) in summary.items():
            print(f"  {name:7s} {rate:8,.0f} req/s   p50 {p50 * 1e3:6.2f} ms   p99 {p99 * 1e3:6.2f} ms")
        direct, routed = summary["direct"], summary["router"]
        print(f"  router / direct req/s: {routed[0] / direct[0]:.0%}   p50 added by the router: {(routed[1] - direct[1]) * 1e3:.2f} ms")
    finally:
        client.delete_endpoint("routed")
        client.delete_deployment("direct")


if __name__ == "__main__":
    main()
