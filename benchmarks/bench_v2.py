"""The Open Inference Protocol (V2): deployflow's ``v2`` target against MLServer, and the local server's
V2 routes against MLServer's, for one sklearn LogisticRegression (4 features) saved with joblib.

Prints, in one run:

* **batch**: rows/s of ``batch_predict`` through ``v2+http://...`` against MLServer 1.7.1 (DataFrame in
  and out, the target's default concurrency), against MLServer's own ceiling at the same chunk size:
  ``wrk -t2 -c4`` posting the V2 body the target sends for the first chunk, times the chunk size. Each
  round measures the ceiling just before and just after the batch run, and the round's ratio is the batch
  rate over the mean of the two; the figures are medians over the rounds. The line says which path
  batch scoring took: the event loop (the target's ``batch_http_route``) or ``predict`` from threads
  (when deployflow's batch seam cannot carry V2 bodies yet).
* **requests**: req/s and p99 of ``wrk -t2 -c8`` posting one 10-row V2 request (one FP64 tensor
  ``[10, 4]``) to MLServer and to a local-target server of the same model file, and the local server's
  MLflow-protocol route (``/invocations``, the same rows as ``dataframe_split``) for reference; in
  interleaved rounds, each server once per round in a rotated order; ratios are medians of the ratios
  measured in the same round. Without the local server's V2 routes the line says "local V2 not wired".

MLServer comes from the side venv the tests build (``tests/support/peers.py``: ``.venv-peers/mlserver``).
Needs ``wrk`` (``apt-get install -y wrk``). Run: ``.venv/bin/python benchmarks/bench_v2.py [--rounds 5]
[--rows 200000] [--chunk-size 2000] [--duration 3]``.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

import joblib
import numpy as np
import pandas as pd
from sklearn.linear_model import LogisticRegression

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from deployflow import batch_predict, get_deploy_client
from deployflow.payloads import encode_request as mlflow_request
from deployflow.targets.v2.client import encode_chunk
from support.peers import mlserver_peer, start_mlserver

FEATURES = 4
COLUMNS = ["a", "b", "c", "d"]


def train(path: Path) -> LogisticRegression:
    rng = np.random.default_rng(0)
    features = rng.normal(size=(500, FEATURES))
    model = LogisticRegression().fit(features, (features[:, 0] - features[:, 2] > 0).astype(int))
    joblib.dump(model, path)
    return model


_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3}


def run_wrk(url: str, body: bytes, workdir: Path, name: str, *, connections: int, seconds: int) -> tuple[float, float]:
    """(requests/s, p99 ms) of wrk posting ``body`` to ``url``; raises on any non-2xx answer."""
    (workdir / f"{name}.body").write_bytes(body)
    script = workdir / f"{name}.lua"
    script.write_text(
        'wrk.method = "POST"\nwrk.headers["Content-Type"] = "application/json"\n'
        f'local f = io.open("{workdir / name}.body", "rb")\nwrk.body = f:read("*all")\nf:close()\n'
    )
    out = subprocess.run(
        ["wrk", "-t2", f"-c{connections}", f"-d{seconds}s", "--latency", "-s", str(script), url],
        capture_output=True, text=True, check=True,
    ).stdout
    if "Non-2xx" in out:
        raise RuntimeError(f"wrk saw error answers from {url}:\n{out}")
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    p99 = re.search(r"99%\s+([\d.]+)(us|ms|s)", out)
    return rate, float(p99.group(1)) * _UNITS[p99.group(2)] if p99 else float("nan")


def speaks_v2(url: str) -> bool:
    try:
        with urllib.request.urlopen(url + "/v2/health/ready", timeout=10) as answer:
            return answer.status == 200
    except urllib.error.HTTPError:
        return False


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--chunk-size", type=int, default=2000)
    parser.add_argument("--duration", type=int, default=3, help="seconds per wrk measurement")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        sys.exit("wrk is not installed: apt-get install -y wrk")

    workdir = Path(tempfile.mkdtemp(prefix="bench-v2-"))
    (workdir / "mlserver" / "iris").mkdir(parents=True)
    model = train(workdir / "mlserver" / "iris" / "model.joblib")
    (workdir / "mlserver" / "iris" / "model-settings.json").write_text(json.dumps(
        {"name": "iris", "implementation": "mlserver_sklearn.SKLearnModel", "parameters": {"uri": "./model.joblib"}}))
    mlserver = start_mlserver(mlserver_peer(), workdir / "mlserver", ready_models=["iris"])
    local = get_deploy_client(f"local://{workdir / 'home'}")
    try:
        local.create_deployment("iris", str(workdir / "mlserver" / "iris" / "model.joblib"), flavor="joblib")
        local_url = local.get_deployment("iris")["url"]
        rng = np.random.default_rng(1)
        frame = pd.DataFrame(rng.normal(size=(args.rows, FEATURES)), columns=COLUMNS)
        expected = model.predict(frame.to_numpy())
        client = get_deploy_client(f"v2+{mlserver.url}")
        path = "event loop (batch_http_route)" if client.batch_http_route("iris") is not None else "predict from threads"
        infer = f"{mlserver.url}/v2/models/iris/infer"
        chunk_body, _ = encode_chunk(frame.iloc[: args.chunk_size])
        concurrency = client.default_batch_concurrency

        ten = frame.iloc[:10].to_numpy()
        v2_body = json.dumps({"inputs": [{"name": "input-0", "shape": [10, FEATURES], "datatype": "FP64",
                                          "data": ten.ravel().tolist()}]}).encode()
        mlflow_body, _ = mlflow_request(frame.iloc[:10])
        wired = speaks_v2(local_url)
        servers = {"MLServer V2": (infer, v2_body), "local /invocations": (f"{local_url}/invocations", mlflow_body)}
        if wired:
            servers["local V2"] = (f"{local_url}/v2/models/iris/infer", v2_body)

        # Warm-up: one batch run (checked against the model itself) and one short wrk per server.
        scored = batch_predict(client, frame.iloc[: 10 * args.chunk_size], deployment_name="iris", chunk_size=args.chunk_size)
        assert (scored["prediction"].to_numpy() == expected[: 10 * args.chunk_size]).all()
        for name, (url, body) in servers.items():
            run_wrk(url, body, workdir, name.replace(" ", "_").replace("/", ""), connections=8, seconds=1)

        batch_rates, ceilings, ratios = [], [], []
        request_rates: dict[str, list[float]] = {name: [] for name in servers}
        request_p99: dict[str, list[float]] = {name: [] for name in servers}
        request_ratios: dict[str, list[float]] = {name: [] for name in servers}
        names = list(servers)
        for round_number in range(args.rounds):
            before = run_wrk(infer, chunk_body, workdir, "chunk", connections=concurrency, seconds=args.duration)[0]
            started = time.perf_counter()
            scored = batch_predict(client, frame, deployment_name="iris", chunk_size=args.chunk_size)
            batch_rate = args.rows / (time.perf_counter() - started)
            after = run_wrk(infer, chunk_body, workdir, "chunk", connections=concurrency, seconds=args.duration)[0]
            assert (scored["prediction"].to_numpy() == expected).all()
            ceiling = (before + after) / 2 * args.chunk_size
            batch_rates.append(batch_rate)
            ceilings.append(ceiling)
            ratios.append(batch_rate / ceiling)

            order = names[round_number % len(names):] + names[: round_number % len(names)]
            measured = {}
            for name in order:
                url, body = servers[name]
                measured[name] = run_wrk(url, body, workdir, name.replace(" ", "_").replace("/", ""), connections=8, seconds=args.duration)
                request_rates[name].append(measured[name][0])
                request_p99[name].append(measured[name][1])
            for name in names:
                request_ratios[name].append(measured[name][0] / measured["MLServer V2"][0])

        median = statistics.median
        load = subprocess.run(["uptime"], capture_output=True, text=True, check=False).stdout.strip()
        print(f"V2 benchmark: {args.rounds} rounds, {args.rows:,} rows, chunk {args.chunk_size}, wrk {args.duration} s; {load}")
        print(f"batch_predict via v2 -> MLServer ({path}, concurrency {concurrency}):")
        print(f"  batch_predict            {median(batch_rates):12,.0f} rows/s")
        print(f"  MLServer ceiling (wrk)   {median(ceilings):12,.0f} rows/s   (V2 body of one chunk, -t2 -c{concurrency})")
        print(f"  ratio                    {median(ratios):12.2f}   (per round: {', '.join(f'{r:.2f}' for r in ratios)})")
        print("10-row requests, wrk -t2 -c8:")
        for name in names:
            print(f"  {name:20} {median(request_rates[name]):9,.0f} req/s   p99 {median(request_p99[name]):7.2f} ms   "
                  f"vs MLServer {median(request_ratios[name]):5.2f}x")
        if not wired:
            print("  local V2             local V2 not wired (the local server does not route /v2 yet)")
    finally:
        try:
            local.delete_deployment("iris")
        finally:
            mlserver.stop()
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
