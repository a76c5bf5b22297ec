"""Cheap models for the batch-scoring tests, loaded by the local target as python:/path/batch_models.py:name."""

from __future__ import annotations

import os
import time

import numpy as np
import pandas as pd


def linear(data):
    """One output per row: 2a + b."""
    return (data["a"] * 2 + data["b"]).to_numpy()


def two_outputs(data):
    """Two outputs per row (a list per row on the wire)."""
    return np.stack([data["a"].to_numpy(), data["b"].to_numpy() * 10], axis=1)


def records(data):
    """Named outputs per row (records on the wire)."""
    return pd.DataFrame({"label": np.where(data["a"] > 0, "pos", "neg"), "score": data["b"] * 0.5})


def picky(data):
    """Rejects any row whose ``a`` is negative, like a model that validates its input."""
    bad = data.index[data["a"] < 0]
    if len(bad):
        raise ValueError(f"a must not be negative ({len(bad)} rows)")
    return linear(data)


def slow_linear(data):
    """linear, with a pause per request so a test can interrupt a job part way."""
    time.sleep(float(os.environ.get("BATCH_MODEL_SLEEP", "0.05")))
    return linear(data)


def short(data):
    """One prediction too few: a broken model, not bad input."""
    return linear(data)[:-1]


def uneven_records(data):
    """Records whose ``note`` key appears only for rows with ``b`` of 100 or more, so the chunks of one
    job can have different output columns."""
    records = [{"score": float(b) * 0.5} for b in data["b"]]
    for record, b in zip(records, data["b"]):
        if b >= 100:
            record["note"] = "high"
    return pd.DataFrame.from_records(records)
