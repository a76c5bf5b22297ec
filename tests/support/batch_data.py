"""Inputs, model URIs and clients shared by the batch-scoring tests (the models are in batch_models.py)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from deployflow.targets.serving import ServingDeploymentClient

MODELS = Path(__file__).resolve().parent / "batch_models.py"


def model(name: str) -> str:
    """The local target's URI of model ``name`` in batch_models.py."""
    return f"python:{MODELS}:{name}"


def frame(rows: int, seed: int = 0) -> pd.DataFrame:
    """``rows`` rows of an int64 ``id`` (0..rows-1) and two float64 features ``a`` and ``b``."""
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "id": np.arange(rows, dtype="int64"),
            "a": rng.normal(size=rows).round(6) + 5,
            "b": rng.integers(0, 100, size=rows).astype("float64"),
        }
    )


def expected_linear(df: pd.DataFrame) -> np.ndarray:
    """What the ``linear`` model answers for ``df``."""
    return (df["a"] * 2 + df["b"]).to_numpy()


class PredictOnlyServingClient(ServingDeploymentClient):
    """A client as a third-party plugin would write it: ``predict`` only, no ``batch_http_route``, so
    batch scoring takes the general path (``predict`` from a thread pool)."""

    batch_http_route = None
