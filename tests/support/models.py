"""Small models for the local target's tests, and helpers that write model files into a directory.

The server imports these through ``python:support.models:<name>`` references (tests put the tests
directory on the server's ``PYTHONPATH``) or through ``python:/abs/path/models.py:<name>``; pickles of the
classes below refer to the module ``support.models``, so the server process must be able to import it.

:func:`describe` is the protocol model: it answers with what it received (type, columns, values,
params), so a test can check how a request was decoded, and it obeys two params that tests use to make
it misbehave: ``{"touch": path}`` (create a file when the call starts), ``{"sleep": seconds}``,
``{"raise": "message"}`` and ``{"unencodable": true}`` (an
answer that has no JSON form).
"""

from __future__ import annotations

import pickle
import time
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "SUPPORT_DIR",
    "TESTS_DIR",
    "AddOne",
    "NeedsArguments",
    "NoPredict",
    "ParamsEcho",
    "Doubler",
    "add_one",
    "describe",
    "doubler",
    "no_predict",
    "not_callable",
    "fitted_logistic_regression",
    "write_joblib",
    "write_pickle",
    "write_model_file",
    "ServerProcess",
    "server_environment",
]

SUPPORT_DIR = Path(__file__).resolve().parent
TESTS_DIR = SUPPORT_DIR.parent


def _plain(data: Any) -> Any:
    """Turn decoded input into JSON-friendly Python values."""
    if hasattr(data, "to_dict") and hasattr(data, "columns"):  # a DataFrame
        return {"columns": [str(c) for c in data.columns], "values": data.to_numpy().tolist()}
    if isinstance(data, np.ndarray):
        return data.tolist()
    if isinstance(data, dict):
        return {str(k): _plain(v) for k, v in data.items()}
    if isinstance(data, (list, tuple)):
        return [_plain(v) for v in data]
    if isinstance(data, np.generic):
        return data.item()
    return data


def describe(data: Any, params: dict[str, Any] | None = None) -> dict[str, Any]:
    """Report what arrived; ``params`` may ask for a delay (``sleep``) or an error (``raise``)."""
    if params:
        if "touch" in params:  # tells a test that the call has started
            Path(params["touch"]).touch()
        if "sleep" in params:
            time.sleep(float(params["sleep"]))
        if "raise" in params:
            raise ValueError(str(params["raise"]))
        if params.get("unencodable"):
            return object()
    return {"type": type(data).__name__, "data": _plain(data), "params": params}


def add_one(data: Any) -> Any:
    """A plain function model without params: every number plus one."""
    return np.asarray(data, dtype=float) + 1


def doubler(data: Any, params: dict[str, Any] | None = None) -> Any:
    """A function model with params: ``factor`` (default 2) times the input."""
    factor = (params or {}).get("factor", 2)
    return np.asarray(data, dtype=float) * factor


class AddOne:
    """An object model without params (instantiated by the loader when named as a class)."""

    def predict(self, data: Any) -> Any:
        return np.asarray(data, dtype=float) + 1


class Doubler:
    """An object model whose predict takes params."""

    def __init__(self, factor: float = 2.0) -> None:
        self.factor = factor

    def predict(self, data: Any, params: dict[str, Any] | None = None) -> Any:
        factor = (params or {}).get("factor", self.factor)
        return np.asarray(data, dtype=float) * factor


class ParamsEcho:
    """Answers with the params it was given (to show whether they arrived)."""

    def predict(self, data: Any, params: dict[str, Any] | None = None) -> Any:
        return {"params": params}


class NeedsArguments:
    """A class the loader cannot instantiate without arguments."""

    def __init__(self, weights: list[float]) -> None:
        self.weights = weights

    def predict(self, data: Any) -> Any:  # pragma: no cover - never instantiated by the loader
        return data


class NoPredict:
    """An object without predict and without __call__."""

    value = 3


#: A prepared instance with params, as ``python:support.models:doubler_instance``.
doubler_instance = Doubler(3.0)
no_predict = NoPredict()
not_callable = 42


def fitted_logistic_regression(n_features: int = 4, n_rows: int = 200, seed: int = 0) -> Any:
    """An sklearn LogisticRegression fitted on synthetic data, with named features ``f0..fN``."""
    import pandas as pd
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(seed)
    features = rng.normal(size=(n_rows, n_features))
    target = (features @ np.linspace(1.0, -1.0, n_features) > 0).astype(int)
    frame = pd.DataFrame(features, columns=[f"f{i}" for i in range(n_features)])
    return LogisticRegression().fit(frame, target)


def write_pickle(obj: Any, path: Path | str) -> Path:
    """Pickle ``obj`` to ``path`` and return the path."""
    path = Path(path)
    with path.open("wb") as stream:
        pickle.dump(obj, stream, protocol=pickle.HIGHEST_PROTOCOL)
    return path


def write_joblib(obj: Any, path: Path | str, compress: int = 0) -> Path:
    """``joblib.dump`` ``obj`` to ``path`` and return the path."""
    import joblib

    path = Path(path)
    joblib.dump(obj, path, compress=compress)
    return path


def write_model_file(directory: Path | str, name: str = "user_model.py") -> Path:
    """Write a stand-alone Python file with models (``model``, ``predict``, ``Model``) and return its path."""
    path = Path(directory) / name
    path.write_text(
        '"""A model module outside any package, loaded by path."""\n'
        "\n"
        "class Model:\n"
        "    def predict(self, data, params=None):\n"
        "        return {'kind': 'file-class', 'params': params}\n"
        "\n"
        "model = Model()\n"
        "\n"
        "def predict(data):\n"
        "    return {'kind': 'file-function'}\n",
        encoding="utf-8",
    )
    return path


# -- running the real server process --------------------------------------------------------------------

SERVER_MODULE = "deployflow.targets.local.server"


def server_environment(token: str | None = None) -> dict[str, str]:
    """The environment for a server process: ours, the tests directory importable, and the token if any."""
    import os

    env = dict(os.environ)
    env.pop("DEPLOYFLOW_SERVER_AUTH_TOKEN", None)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(TESTS_DIR), env.get("PYTHONPATH")]))
    if token is not None:
        env["DEPLOYFLOW_SERVER_AUTH_TOKEN"] = token
    return env


class ServerProcess:
    """A scoring server started as the lifecycle code starts it: a fresh process with a spec file.

    Its stdout and stderr go to ``log_path``, as the parent redirects them to the deployment's log file.
    """

    def __init__(self, directory: Path, spec: dict[str, Any], token: str | None = None) -> None:
        import subprocess
        import sys

        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.ready_file = self.directory / "ready.json"
        self.spec_path = self.directory / "spec.json"
        self.log_path = self.directory / "server.log"
        spec = {"version": 1, "name": "test", "ready_file": str(self.ready_file), **spec}
        import json

        self.spec_path.write_text(json.dumps(spec), encoding="utf-8")
        self._log = self.log_path.open("wb")
        self.process = subprocess.Popen(
            [sys.executable, "-m", SERVER_MODULE, "--spec", str(self.spec_path)],
            stdout=self._log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=server_environment(token),
        )
        self.ready: dict[str, Any] | None = None

    def wait_ready(self, timeout: float = 30.0) -> dict[str, Any]:
        """Wait for the ready file; raise with the server's log when it exits or the time runs out."""
        import json

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.ready_file.exists():
                self.ready = json.loads(self.ready_file.read_text(encoding="utf-8"))
                return self.ready
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited with {self.process.returncode}:\n{self.log()}")
            time.sleep(0.02)
        raise RuntimeError(f"server not ready after {timeout} s:\n{self.log()}")

    @property
    def url(self) -> str:
        assert self.ready is not None, "wait_ready() first"
        return str(self.ready["url"])

    def log(self) -> str:
        self._log.flush()
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def wait_exit(self, timeout: float = 30.0) -> int:
        """Wait for the process to end by itself; return its exit status."""
        try:
            return self.process.wait(timeout)
        finally:
            self._log.close()

    def stop(self, timeout: float = 15.0) -> int | None:
        """SIGTERM, then wait (SIGKILL as a last resort); return the exit status."""
        import signal
        import subprocess

        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._log.close()
        return self.process.returncode

    def __enter__(self) -> ServerProcess:
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.stop()
