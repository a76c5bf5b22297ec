"""Throughput and latency of the local target's scoring server, measured with wrk.

What it measures (one worker process, 127.0.0.1, ``wrk -t2 -c8``):

* an sklearn LogisticRegression served from a pickle, scored with a 10-row ``dataframe_split`` payload,
  once with the default time limit (model calls on a thread, 504 enforceable) and once with
  ``request_timeout: null`` (model called inline in the event loop);
* the same server with a no-op model: the ceiling of protocol handling alone;
* the time from spawning the server process to its ready file (median of 5);
* ``mlflow models serve`` and MLServer on the same model, when side environments for them are named
  by ``DEPLOYFLOW_BENCH_MLFLOW_PY`` / ``DEPLOYFLOW_BENCH_MLSERVER_PY`` (each the python executable of a
  venv where that server is installed); otherwise they are skipped and the figures measured for
  REFERENCE.md on this kind of machine are shown for comparison.

Run: ``.venv/bin/python benchmarks/bench_local_server.py [--duration 10] [--features 4]``.
Needs ``wrk`` (``apt-get install -y wrk``). Other work on the machine skews the figures; the load
average is printed before and after so a noisy run can be recognised, and the server's CPU time per
request is shown beside the rates, as it moves much less with other load than req/s does.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
import urllib.request
from pathlib import Path
from typing import Any

SERVER_MODULE = "deployflow.targets.local.server"
ROWS = 10
SEED = 0
# Measured on this 2-core machine for REFERENCE.md (same model kind, 10 rows, wrk -t2 -c8).
REFERENCE_FIGURES = {"mlflow models serve": (281.0, 110.0), "MLServer (V2 protocol)": (1640.0, 8.0)}


# ---------------------------------------------------------------------------------------------------------
# Models and payloads


def synthetic_data(features: int) -> tuple[Any, Any]:
    import numpy as np

    rng = np.random.default_rng(SEED)
    x = rng.normal(size=(500, features))
    y = (x @ np.linspace(1.0, -1.0, features) > 0).astype(int)
    return x, y


def write_sklearn_pickle(directory: Path, features: int) -> Path:
    import pickle

    import pandas as pd
    from sklearn.linear_model import LogisticRegression

    x, y = synthetic_data(features)
    model = LogisticRegression().fit(pd.DataFrame(x, columns=[f"f{i}" for i in range(features)]), y)
    path = directory / "model.pkl"
    path.write_bytes(pickle.dumps(model))
    return path


def write_noop_model(directory: Path) -> str:
    path = directory / "noop_model.py"
    path.write_text("def predict(data):\n    return [0]\n", encoding="utf-8")
    return f"python:{path}:predict"


def split_payload(features: int) -> bytes:
    x, _ = synthetic_data(features)
    rows = x[:ROWS].round(6).tolist()
    return json.dumps({"dataframe_split": {"columns": [f"f{i}" for i in range(features)], "data": rows}}).encode()


def v2_payload(features: int) -> bytes:
    x, _ = synthetic_data(features)
    rows = x[:ROWS].round(6)
    return json.dumps(
        {"inputs": [{"name": "input-0", "shape": [ROWS, features], "datatype": "FP64", "data": rows.ravel().tolist()}]}
    ).encode()


# ---------------------------------------------------------------------------------------------------------
# Servers


def wait_http(url: str, process: subprocess.Popen[bytes], timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=1) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"{url} not ready after {timeout} s")


class DeployflowServer:
    """One server process of ours, started from a spec file as the local target starts it."""

    def __init__(self, directory: Path, model_uri: str, **spec: Any) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.ready_file = directory / "ready.json"
        self.ready_file.unlink(missing_ok=True)
        spec_path = directory / "spec.json"
        spec_path.write_text(
            json.dumps({"version": 1, "name": "bench", "model_uri": model_uri,
                        "ready_file": str(self.ready_file), "log_level": "warning", **spec}),
            encoding="utf-8",
        )
        self.log = (directory / "server.log").open("wb")
        self.started = time.perf_counter()
        self.process = subprocess.Popen(
            [sys.executable, "-m", SERVER_MODULE, "--spec", str(spec_path)],
            stdout=self.log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        )

    def wait_ready(self, timeout: float = 60.0) -> float:
        """Seconds from spawn to the ready file."""
        deadline = time.monotonic() + timeout
        while not self.ready_file.exists():
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"server did not start; see {self.log.name}")
            time.sleep(0.005)
        elapsed = time.perf_counter() - self.started
        self.url = json.loads(self.ready_file.read_text())["url"]
        return elapsed

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.log.close()


def side_env(python: str) -> dict[str, str]:
    """The environment for a server from a side venv: its bin/ first on PATH, where its own tools
    (mlflow starts ``uvicorn`` by name) are found."""
    return {**os.environ, "PATH": f"{os.path.dirname(python)}{os.pathsep}{os.environ.get('PATH', '')}"}


def free_port() -> int:
    # Only for the third-party servers, which cannot report a port they picked themselves.
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start_mlflow(python: str, directory: Path, features: int) -> tuple[subprocess.Popen[bytes], str]:
    model_dir = directory / "mlflow_model"
    script = textwrap.dedent(
        f"""
        import numpy as np, pandas as pd, mlflow.sklearn
        from sklearn.linear_model import LogisticRegression
        rng = np.random.default_rng({SEED}); x = rng.normal(size=(500, {features}))
        y = (x @ np.linspace(1.0, -1.0, {features}) > 0).astype(int)
        frame = pd.DataFrame(x, columns=[f"f{{i}}" for i in range({features})])
        mlflow.sklearn.save_model(LogisticRegression().fit(frame, y), {str(model_dir)!r})
        """
    )
    subprocess.run([python, "-c", script], check=True, capture_output=True)
    port = free_port()
    process = subprocess.Popen(
        [python, "-m", "mlflow", "models", "serve", "-m", str(model_dir), "-h", "127.0.0.1", "-p", str(port),
         "--env-manager", "local"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL, env=side_env(python),
    )
    url = f"http://127.0.0.1:{port}"
    wait_http(url + "/ping", process)
    return process, url


def start_mlserver(python: str, directory: Path, features: int) -> tuple[subprocess.Popen[bytes], str]:
    model_dir = directory / "mlserver"
    (model_dir / "lr").mkdir(parents=True)
    script = textwrap.dedent(
        f"""
        import numpy as np, joblib
        from sklearn.linear_model import LogisticRegression
        rng = np.random.default_rng({SEED}); x = rng.normal(size=(500, {features}))
        y = (x @ np.linspace(1.0, -1.0, {features}) > 0).astype(int)
        joblib.dump(LogisticRegression().fit(x, y), {str(model_dir / 'lr' / 'model.joblib')!r})
        """
    )
    subprocess.run([python, "-c", script], check=True, capture_output=True)
    port, grpc_port = free_port(), free_port()
    (model_dir / "settings.json").write_text(json.dumps(
        {"host": "127.0.0.1", "http_port": port, "grpc_port": grpc_port, "metrics_port": free_port(),
         "parallel_workers": 0}))
    (model_dir / "lr" / "model-settings.json").write_text(json.dumps(
        {"name": "lr", "implementation": "mlserver_sklearn.SKLearnModel", "parameters": {"uri": "./model.joblib"}}))
    process = subprocess.Popen(
        [os.path.join(os.path.dirname(python), "mlserver"), "start", str(model_dir)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL, env=side_env(python),
    )
    url = f"http://127.0.0.1:{port}"
    wait_http(url + "/v2/models/lr/ready", process)
    return process, url


def stop_process(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


# ---------------------------------------------------------------------------------------------------------
# Load


def lua_script(directory: Path, body: bytes, name: str) -> Path:
    path = directory / f"{name}.lua"
    path.write_text(
        'wrk.method = "POST"\n'
        f"wrk.body = {json.dumps(body.decode())}\n"
        'wrk.headers["Content-Type"] = "application/json"\n',
        encoding="utf-8",
    )
    return path


_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3}


def _milliseconds(text: str) -> float:
    match = re.fullmatch(r"([\d.]+)(us|ms|s)", text)
    if not match:
        raise ValueError(text)
    return float(match.group(1)) * _UNITS[match.group(2)]


def run_wrk(url: str, script: Path, duration: int) -> dict[str, float]:
    output = subprocess.run(
        ["wrk", "-t2", "-c8", f"-d{duration}s", "--latency", "-s", str(script), url],
        capture_output=True, text=True, check=True,
    ).stdout
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1))
    count = int(re.search(r"(\d+) requests in", output).group(1))
    p50 = _milliseconds(re.search(r"\s50%\s+(\S+)", output).group(1))
    p99 = _milliseconds(re.search(r"\s99%\s+(\S+)", output).group(1))
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    if errors:
        raise RuntimeError(f"{errors.group(1)} error answers from {url}:\n{output}")
    return {"rps": rate, "p50": p50, "p99": p99, "requests": count}


def run_wrk_measuring_cpu(url: str, script: Path, duration: int, pid: int) -> dict[str, float]:
    """:func:`run_wrk`, plus the server's CPU time per request (less sensitive to other load)."""
    import psutil

    process = psutil.Process(pid)
    before = process.cpu_times()
    figures = run_wrk(url, script, duration)
    after = process.cpu_times()
    used = (after.user - before.user) + (after.system - before.system)
    figures["cpu_us"] = used / max(figures["requests"], 1) * 1e6
    return figures


def check_answer(url: str, body: bytes) -> None:
    request = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as response:
        answer = json.loads(response.read())
    if not answer:
        raise RuntimeError(f"empty answer from {url}")


# ---------------------------------------------------------------------------------------------------------


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=int, default=10, help="seconds of load per measurement (default 10)")
    parser.add_argument("--features", type=int, default=4, help="model features, 4 to 10 (default 4)")
    parser.add_argument("--warmup", type=int, default=2, help="seconds of load before each measurement")
    parser.add_argument("--only", choices=["sklearn"], help="measure the sklearn server only (a quick rerun)")
    options = parser.parse_args()

    if shutil.which("wrk") is None:
        print("wrk is not installed; install it with: apt-get install -y wrk  (the benchmark needs it)")
        return 2

    print(f"load average before: {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs")
    results: list[tuple[str, dict[str, float] | None, str]] = []
    with tempfile.TemporaryDirectory(prefix="bench-local-") as temporary:
        directory = Path(temporary)
        model_path = write_sklearn_pickle(directory, options.features)
        body = split_payload(options.features)
        script = lua_script(directory, body, "split")

        cases = [("deployflow, sklearn (thread, 504 on)", str(model_path), {})]
        if options.only is None:
            cases += [
                ("deployflow, sklearn (inline, no limit)", str(model_path), {"request_timeout": None}),
                ("deployflow, no-op model (ceiling)", write_noop_model(directory), {}),
            ]
        for number, (label, uri, spec) in enumerate(cases):
            server = DeployflowServer(directory / f"server{number}", uri, **spec)
            try:
                server.wait_ready()
                target = server.url + "/invocations"
                check_answer(target, body)
                run_wrk(target, script, options.warmup)
                results.append((label, run_wrk_measuring_cpu(target, script, options.duration, server.process.pid), ""))
            finally:
                server.stop()

        startup: list[float] = []
        if options.only is None:
            for attempt in range(5):
                server = DeployflowServer(directory / f"startup{attempt}", str(model_path))
                try:
                    startup.append(server.wait_ready())
                finally:
                    server.stop()

        others = [
            ("mlflow models serve", "DEPLOYFLOW_BENCH_MLFLOW_PY", start_mlflow, "/invocations", body),
            ("MLServer (V2 protocol)", "DEPLOYFLOW_BENCH_MLSERVER_PY", start_mlserver, "/v2/models/lr/infer",
             v2_payload(options.features)),
        ]
        for label, variable, start, path, payload in others if options.only is None else []:
            python = os.environ.get(variable)
            if not python:
                reference = REFERENCE_FIGURES[label]
                results.append((label, None, f"skipped (set {variable}); measured earlier: "
                                             f"{reference[0]:.0f} req/s, p99 {reference[1]:.0f} ms"))
                continue
            process, url = start(python, directory, options.features)
            try:
                other_script = lua_script(directory, payload, label.split()[0].lower())
                run_wrk(url + path, other_script, options.warmup)
                results.append((label, run_wrk(url + path, other_script, options.duration), ""))
            finally:
                stop_process(process)

    baseline = results[0][1]
    print(f"\n{ROWS}-row dataframe_split, {options.features} features, wrk -t2 -c8 -d{options.duration}s, one worker\n")
    print(f"{'server':42} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'vs first':>9} {'CPU us/req':>11}")
    for label, figures, note in results:
        if figures is None:
            print(f"{label:42} {note}")
            continue
        ratio = figures["rps"] / baseline["rps"] if baseline else float("nan")
        cpu = f"{figures['cpu_us']:11.0f}" if "cpu_us" in figures else f"{'-':>11}"
        print(f"{label:42} {figures['rps']:9.0f} {figures['p50']:8.2f} {figures['p99']:8.2f} {ratio:8.2f}x {cpu}")
    if baseline:
        for label, (rate, _) in REFERENCE_FIGURES.items():
            print(f"first row vs {label} (reference {rate:.0f} req/s): {baseline['rps'] / rate:.1f}x")
    if startup:
        print(f"\nspawn to ready (sklearn pickle): median {statistics.median(startup) * 1000:.0f} ms "
              f"(min {min(startup) * 1000:.0f}, max {max(startup) * 1000:.0f}, 5 runs)")
    print(f"load average after: {os.getloadavg()[0]:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
