"""Throughput and latency of the local target's scoring server against MLServer and ``mlflow models serve``.

What it measures (one worker process each, 127.0.0.1, ``wrk -t2 -c8``, a 10-row request):

* deployflow serving MLflow model directories read without MLflow: an sklearn LogisticRegression, an
  sklearn Pipeline (StandardScaler + LogisticRegression) and an xgboost classifier, each saved by
  ``mlflow.<flavor>.save_model`` (skops format for sklearn, a column signature inferred from the input
  example) and scored with ``dataframe_split``; and a no-op ``python:`` model, the protocol's ceiling;
* MLServer's sklearn and xgboost runtimes on the same models (V2 protocol, one FP64 tensor);
* ``mlflow models serve`` on the LogisticRegression directory;
* create -> READY: ``create_deployment`` of the LogisticRegression directory with the local client,
  until it answers (median of 5), in this environment, where MLflow is not installed;
* where the time of one request goes inside our server (decode, signature, predict, encode).

The machine is shared and noisy, so every server runs at once and they are measured in interleaved
rounds (each round measures each server once, in a rotated order); the table shows medians over the
rounds, and each ratio is the median of the ratios measured in the same round.

Side environments: MLServer and MLflow are installed in their own virtualenvs, built on first use and
reused after: ``.venv-peers/bench-mlserver`` and ``.venv-peers/bench-mlflow`` (``--peers DIR`` moves
them). A peer that cannot be installed is skipped with a note; without the MLflow one, the model
directories are written by deployflow's test helper instead of MLflow (said in the output).

Run: ``.venv/bin/python benchmarks/bench_local_server.py [--rounds 3] [--duration 8]``. Needs ``wrk``
(``apt-get install -y wrk``).
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
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
SERVER_MODULE = "deployflow.targets.local.server"
ROWS = 10
SEED = 0


def _installed(*names: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    for name in names:
        try:
            return version(name)
        except PackageNotFoundError:
            continue
    raise RuntimeError(f"none of {names} is installed here")


def peer_requirements() -> dict[str, list[str]]:
    """Each side environment's packages, with our scikit-learn and xgboost versions (the same files)."""
    sklearn, xgboost = f"scikit-learn=={_installed('scikit-learn')}", f"xgboost-cpu=={_installed('xgboost-cpu', 'xgboost')}"
    return {
        "bench-mlserver": ["mlserver==1.7.1", "mlserver-sklearn==1.7.1", "mlserver-xgboost==1.7.1", sklearn, xgboost],
        "bench-mlflow": ["mlflow==3.17.2", sklearn, xgboost, "skops", "joblib"],
        # What a deployment installs: deployflow's local extra and the model's library, no test tools.
        "bench-deployflow": ["-e", f"{ROOT}[local]", sklearn],
    }


def side_python(peers: Path, name: str, packages: list[str], build: bool) -> str | None:
    """The python of a side venv with ``packages``, built when missing; None (with a note) if it cannot be."""
    venv = peers / name
    python = venv / "bin" / "python"
    stamp = venv / ".deployflow-bench"
    wanted = "\n".join(packages)
    if python.exists() and stamp.exists() and stamp.read_text() == wanted:
        return str(python)
    if python.exists():
        # Built by hand or by an older version of this script: use it if it has what we need.
        check = subprocess.run([str(python), "-m", "pip", "install", "--dry-run", "-q", *packages],
                               capture_output=True, text=True, check=False)
        if check.returncode == 0 and "Would install" not in check.stdout:
            stamp.write_text(wanted)
            return str(python)
    if not build:
        print(f"note: {venv} is missing and --no-build was given: {name} skipped")
        return None
    print(f"building {venv} ({', '.join(packages)}) ...", flush=True)
    try:
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, capture_output=True)
        subprocess.run([str(python), "-m", "pip", "install", "-q", *packages], check=True, capture_output=True,
                       text=True)
    except subprocess.CalledProcessError as exc:
        print(f"note: cannot install {name} ({(exc.stderr or '').strip().splitlines()[-1:]}): skipped")
        return None
    stamp.write_text(wanted)
    return str(python)


# ---------------------------------------------------------------------------------------------------------
# Models


MODEL_SCRIPT = textwrap.dedent(
    """
    import json, sys, warnings
    from pathlib import Path
    warnings.filterwarnings("ignore")
    import numpy as np, pandas as pd, joblib, xgboost
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    out, features, seed, with_mlflow = Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4] == "1"
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(500, features))
    y = (x @ np.linspace(1.0, -1.0, features) > 0).astype(int)
    frame = pd.DataFrame(x, columns=[f"f{i}" for i in range(features)])
    models = {
        "sklearn": (LogisticRegression(), "sklearn"),
        "pipeline": (make_pipeline(StandardScaler(), LogisticRegression()), "sklearn"),
        "xgboost": (xgboost.XGBClassifier(n_estimators=20, max_depth=3, n_jobs=1), "xgboost"),
    }
    for name, (model, flavor) in models.items():
        from sklearn.base import clone
        on_arrays = clone(model).fit(x, y)  # what MLServer is given: fitted on the arrays it is sent
        (out / "mlserver" / name).mkdir(parents=True)
        if flavor == "xgboost":
            on_arrays.save_model(str(out / "mlserver" / name / "model.json"))
        else:
            joblib.dump(on_arrays, out / "mlserver" / name / "model.joblib")
        fitted = model.fit(frame, y)
        if with_mlflow:
            import mlflow.sklearn, mlflow.xgboost
            save = mlflow.sklearn.save_model if flavor == "sklearn" else mlflow.xgboost.save_model
            save(fitted, str(out / "mlflow" / name), input_example=frame.iloc[:3])
        else:
            sys.path.insert(0, sys.argv[5])
            from support.model_zoo import ZooModel, write_mlflow_dir
            (out / "mlflow").mkdir(exist_ok=True)
            write_mlflow_dir(ZooModel(name, fitted, list(frame.columns)), frame, out / "mlflow" / name)
    """
)


def build_models(directory: Path, features: int, mlflow_python: str | None) -> bool:
    """MLflow model dirs (saved by MLflow when it is available) and MLServer's files; True if by MLflow."""
    python = mlflow_python or sys.executable
    arguments = [python, "-c", MODEL_SCRIPT, str(directory), str(features), str(SEED),
                 "1" if mlflow_python else "0", str(ROOT / "tests")]
    subprocess.run(arguments, check=True, capture_output=True, text=True)
    return mlflow_python is not None


def rows(features: int) -> list[list[float]]:
    import numpy as np

    x = np.random.default_rng(SEED).normal(size=(500, features))
    return x[:ROWS].round(6).tolist()


def split_payload(features: int) -> bytes:
    return json.dumps({"dataframe_split": {"columns": [f"f{i}" for i in range(features)], "data": rows(features)}}).encode()


def v2_payload(features: int) -> bytes:
    flat = [value for row in rows(features) for value in row]
    return json.dumps({"inputs": [{"name": "input-0", "shape": [ROWS, features], "datatype": "FP64", "data": flat}]}).encode()


# ---------------------------------------------------------------------------------------------------------
# Servers


def free_port() -> int:
    # Only for the third-party servers, which cannot report a port they picked themselves.
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_http(url: str, process: subprocess.Popen[bytes], timeout: float = 180.0) -> None:
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


class Server:
    """A running server: its process, the URL wrk loads, the body it sends."""

    def __init__(self, label: str, process: subprocess.Popen[bytes], url: str, body: bytes, log: Any = None):
        self.label, self.process, self.url, self.body, self.log = label, process, url, body, log

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self.log is not None:
            self.log.close()


#: Every server gets one thread per numeric library: 2 cores are shared with wrk, and xgboost's OpenMP
#: threads spinning against each other would otherwise measure the machine, not the server.
THREADS_ENV = {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def start_deployflow(label: str, directory: Path, model_uri: str, body: bytes) -> Server:
    directory.mkdir(parents=True, exist_ok=True)
    ready = directory / "ready.json"
    spec = directory / "spec.json"
    spec.write_text(json.dumps({"version": 1, "name": "bench", "model_uri": model_uri, "ready_file": str(ready),
                                "log_level": "warning"}))
    log = (directory / "server.log").open("wb")
    process = subprocess.Popen([sys.executable, "-m", SERVER_MODULE, "--spec", str(spec)], stdout=log,
                               stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env={**os.environ, **THREADS_ENV})
    deadline = time.monotonic() + 60
    while not ready.exists():
        if process.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"{label} did not start; see {log.name}")
        time.sleep(0.01)
    url = json.loads(ready.read_text())["url"] + "/invocations"
    return Server(label, process, url, body, log)


def side_env(python: str, **extra: str) -> dict[str, str]:
    # The side venv's bin/ first on PATH: mlflow starts uvicorn by name.
    path = f"{os.path.dirname(python)}{os.pathsep}{os.environ.get('PATH', '')}"
    return {**os.environ, "PATH": path, **THREADS_ENV, **extra}


def start_mlflow(python: str, model_dir: Path, body: bytes) -> Server:
    port = free_port()
    process = subprocess.Popen(
        [python, "-m", "mlflow", "models", "serve", "-m", str(model_dir), "-h", "127.0.0.1", "-p", str(port),
         "--env-manager", "local", "-w", "1"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL,
        env=side_env(python, MLFLOW_ALLOW_PICKLE_DESERIALIZATION="true"),
    )
    url = f"http://127.0.0.1:{port}"
    wait_http(url + "/ping", process)
    return Server("mlflow models serve, sklearn", process, url + "/invocations", body)


def start_mlserver(python: str, directory: Path, body: bytes) -> list[Server]:
    """One MLServer process serving the three models (each its own runtime), as a deployment would."""
    port = free_port()
    (directory / "settings.json").write_text(json.dumps(
        {"host": "127.0.0.1", "http_port": port, "grpc_port": free_port(), "metrics_port": free_port(),
         "parallel_workers": 0}))
    runtimes = {"sklearn": ("mlserver_sklearn.SKLearnModel", "model.joblib"),
                "pipeline": ("mlserver_sklearn.SKLearnModel", "model.joblib"),
                "xgboost": ("mlserver_xgboost.XGBoostModel", "model.json")}
    for name, (implementation, file) in runtimes.items():
        (directory / name / "model-settings.json").write_text(json.dumps(
            {"name": name, "implementation": implementation, "parameters": {"uri": f"./{file}"}}))
    process = subprocess.Popen([os.path.join(os.path.dirname(python), "mlserver"), "start", str(directory)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL,
                               env=side_env(python))
    url = f"http://127.0.0.1:{port}"
    for name in runtimes:
        wait_http(f"{url}/v2/models/{name}/ready", process)
    servers = [Server(f"MLServer, {name}", process, f"{url}/v2/models/{name}/infer", body) for name in runtimes]
    return servers


# ---------------------------------------------------------------------------------------------------------
# Load


_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3}


def _milliseconds(text: str) -> float:
    match = re.fullmatch(r"([\d.]+)(us|ms|s)", text)
    if not match:
        raise ValueError(text)
    return float(match.group(1)) * _UNITS[match.group(2)]


def lua_script(directory: Path, body: bytes, name: str) -> Path:
    path = directory / f"{name}.lua"
    path.write_text('wrk.method = "POST"\n' f"wrk.body = {json.dumps(body.decode())}\n"
                    'wrk.headers["Content-Type"] = "application/json"\n', encoding="utf-8")
    return path


def run_wrk(url: str, script: Path, duration: float) -> dict[str, float]:
    output = subprocess.run(["wrk", "-t2", "-c8", f"-d{duration:g}s", "--latency", "-s", str(script), url],
                            capture_output=True, text=True, check=True).stdout
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    if errors:
        raise RuntimeError(f"{errors.group(1)} error answers from {url}:\n{output}")
    return {"rps": float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1)),
            "p50": _milliseconds(re.search(r"\s50%\s+(\S+)", output).group(1)),
            "p99": _milliseconds(re.search(r"\s99%\s+(\S+)", output).group(1))}


def check_answer(server: Server) -> None:
    request = urllib.request.Request(server.url, data=server.body, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as response:
        if not json.loads(response.read()):
            raise RuntimeError(f"empty answer from {server.label}")


# ---------------------------------------------------------------------------------------------------------
# Start-up and the in-process breakdown


CREATE_SCRIPT = textwrap.dedent(
    """
    import json, sys, time
    import deployflow
    model_uri, home, runs = sys.argv[1], sys.argv[2], int(sys.argv[3])
    times = []
    with deployflow.get_deploy_client(f"local://{home}") as client:
        for attempt in range(runs):
            started = time.perf_counter()
            client.create_deployment(f"startup{attempt}", model_uri, config={"startup_timeout": 60})
            times.append(time.perf_counter() - started)
            client.delete_deployment(f"startup{attempt}")
    import importlib.util
    print(json.dumps({"times": times, "mlflow_installed": importlib.util.find_spec("mlflow") is not None}))
    """
)


def create_to_ready(python: str, model_uri: str, home: Path, runs: int = 5) -> dict[str, Any]:
    """Seconds from ``create_deployment`` (which waits until the server answers) to its return, run with
    ``python`` (its environment is the one the server process gets)."""
    output = subprocess.run([python, "-c", CREATE_SCRIPT, model_uri, str(home), str(runs)], check=True,
                            capture_output=True, text=True, env={**os.environ, **THREADS_ENV}).stdout
    return json.loads(output.strip().splitlines()[-1])


def breakdown(model_uri: str, body: bytes, repeat: int = 2000) -> dict[str, float]:
    """Microseconds per step of one request in-process, as ScoringApp._score runs them."""
    from deployflow.payloads import decode_request, encode_response
    from deployflow.targets.local import mlflow_model
    from deployflow.targets.local.enforcement import InputEnforcer

    model_dir = mlflow_model.read_model_dir(Path(model_uri))
    native, _ = mlflow_model.load_native(model_dir)
    enforce = InputEnforcer(model_dir.signature)
    data = decode_request(body, "application/json").data
    checked = enforce(data)
    predictions = native.scorer(checked)
    steps: dict[str, Callable[[], Any]] = {
        "decode (JSON + frame)": lambda: decode_request(body, "application/json"),
        "signature": lambda: enforce(data),
        "predict (array shortcut)": lambda: native.scorer(checked),
        "sklearn predict(frame)": lambda: native.raw.predict(checked),
        "encode": lambda: encode_response(predictions),
    }
    result = {}
    for label, step in steps.items():
        best = float("inf")
        for _ in range(5):
            started = time.perf_counter()
            for _ in range(repeat // 5):
                step()
            best = min(best, (time.perf_counter() - started) / (repeat // 5))
        result[label] = best * 1e6
    return result


# ---------------------------------------------------------------------------------------------------------


PAIRS = [  # (ours, peer): ratios reported
    ("deployflow, sklearn", "MLServer, sklearn"),
    ("deployflow, sklearn", "mlflow models serve, sklearn"),
    ("deployflow, pipeline", "MLServer, pipeline"),
    ("deployflow, xgboost", "MLServer, xgboost"),
]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=8, help="seconds of load per measurement (default 8)")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds (default 3)")
    parser.add_argument("--warmup", type=float, default=2, help="seconds of load before the first round")
    parser.add_argument("--features", type=int, default=4, help="model features (default 4)")
    parser.add_argument("--peers", type=Path, default=ROOT / ".venv-peers", help="where the side venvs live")
    parser.add_argument("--no-build", action="store_true", help="use existing side venvs only")
    options = parser.parse_args()
    if shutil.which("wrk") is None:
        print("wrk is not installed; install it with: apt-get install -y wrk  (the benchmark needs it)")
        return 2

    requirements = peer_requirements()
    options.peers.mkdir(parents=True, exist_ok=True)
    mlserver_python = side_python(options.peers, "bench-mlserver", requirements["bench-mlserver"], not options.no_build)
    mlflow_python = side_python(options.peers, "bench-mlflow", requirements["bench-mlflow"], not options.no_build)
    deployment_python = side_python(options.peers, "bench-deployflow", requirements["bench-deployflow"],
                                    not options.no_build)
    print(f"load average before: {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs")

    servers: list[Server] = []
    with tempfile.TemporaryDirectory(prefix="bench-local-") as temporary:
        directory = Path(temporary)
        by_mlflow = build_models(directory, options.features, mlflow_python)
        print("model directories saved by", "mlflow 3.17.2" if by_mlflow else "deployflow's test helper (no MLflow)")
        split, v2 = split_payload(options.features), v2_payload(options.features)
        noop = directory / "noop_model.py"
        noop.write_text("def predict(data):\n    return [0]\n", encoding="utf-8")
        try:
            for name in ("sklearn", "pipeline", "xgboost"):
                servers.append(start_deployflow(f"deployflow, {name}", directory / f"ours-{name}",
                                                str(directory / "mlflow" / name), split))
            servers.append(start_deployflow("deployflow, no-op (ceiling)", directory / "ours-noop",
                                            f"python:{noop}:predict", split))
            if mlserver_python:
                servers.extend(start_mlserver(mlserver_python, directory / "mlserver", v2))
            if mlflow_python:
                servers.append(start_mlflow(mlflow_python, directory / "mlflow" / "sklearn", split))
            scripts = {}
            for server in servers:
                check_answer(server)
                scripts[server.label] = lua_script(directory, server.body, re.sub(r"\W+", "_", server.label))
                run_wrk(server.url, scripts[server.label], options.warmup)

            results: dict[str, list[dict[str, float]]] = {server.label: [] for server in servers}
            for round_number in range(options.rounds):
                shift = round_number % len(servers)
                for server in servers[shift:] + servers[:shift]:
                    results[server.label].append(run_wrk(server.url, scripts[server.label], options.duration))
                print(f"round {round_number + 1}/{options.rounds} done (load {os.getloadavg()[0]:.2f})", flush=True)
        finally:
            for server in servers:
                server.stop()

        startup = {"this environment (.venv, with the test tools)":
                   create_to_ready(sys.executable, str(directory / "mlflow" / "sklearn"), directory / "home")}
        if deployment_python:
            startup["a deployment environment (deployflow[local] + scikit-learn)"] = create_to_ready(
                deployment_python, str(directory / "mlflow" / "sklearn"), directory / "home2")
        steps = breakdown(str(directory / "mlflow" / "sklearn"), split)

    print(f"\n{ROWS}-row requests, {options.features} features, wrk -t2 -c8 -d{options.duration:g}s, one worker each, "
          f"medians of {options.rounds} interleaved rounds\n")
    print(f"{'server':34} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8}")
    for label, runs in results.items():
        print(f"{label:34} {statistics.median(r['rps'] for r in runs):9.0f} "
              f"{statistics.median(r['p50'] for r in runs):8.2f} {statistics.median(r['p99'] for r in runs):8.2f}")
    print()
    for ours, peer in PAIRS:
        if ours in results and peer in results:
            rate = statistics.median(a["rps"] / b["rps"] for a, b in zip(results[ours], results[peer]))
            tail = statistics.median(a["p99"] / b["p99"] for a, b in zip(results[ours], results[peer]))
            print(f"{ours} / {peer}: {rate:.2f}x req/s, p99 {tail:.2f}x theirs")
        elif ours in results:
            print(f"{ours} / {peer}: peer skipped")
    print()
    for where, measured in startup.items():
        times = measured["times"]
        print(f"create -> READY, MLflow sklearn dir, {where}, MLflow installed: {measured['mlflow_installed']}: "
              f"median {statistics.median(times) * 1000:.0f} ms (min {min(times) * 1000:.0f}, "
              f"max {max(times) * 1000:.0f}, {len(times)} runs)")
    print("\none request in-process (µs):", ", ".join(f"{label} {value:.0f}" for label, value in steps.items()))
    print(f"load average after: {os.getloadavg()[0]:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
