"""Model outputs of every shape and dtype a model gives, for tests/test_arrow_answers.py.

:func:`shaped` is a model (``python:support.answer_shapes:shaped``) that answers with the output named
by its input's ``case`` column, so one server gives every shape.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

__all__ = ["ROWS", "outputs", "shaped"]

ROWS = 7


def _cycle(values: list[Any], rows: int) -> list[Any]:
    return (values * (rows // len(values) + 1))[:rows]


def outputs(rows: int = ROWS) -> dict[str, Any]:
    """Model outputs of every shape a model gives, by name; each has ``rows`` predictions where it can."""
    rng = np.random.default_rng(7)
    floats = rng.normal(size=max(rows, 5)) * 10.0 ** rng.integers(-300, 300, max(rows, 5))
    floats[[0, 3]] = np.nan
    floats[1], floats[2], floats[4] = np.inf, -np.inf, -0.0
    floats = floats[:rows]
    numbers = pd.DataFrame(
        {
            "score": floats,
            "label": rng.integers(0, 3, rows),
            "small": rng.integers(-100, 100, rows).astype("int8"),
            "flag": rng.random(rows) < 0.5,
            "": np.arange(rows, dtype="uint32"),
        },
        index=np.arange(rows) * 10,  # a model's own index: records carry none
    )
    return {
        "float64": floats,
        "float64-all-nan": np.full(rows, np.nan),
        "float64-strided": np.stack([floats, floats], axis=1)[:, 1],
        "int64": rng.integers(-(2**62), 2**62, rows),
        "int32": rng.integers(-1000, 1000, rows).astype("int32"),
        "int8": rng.integers(-100, 100, rows).astype("int8"),
        "uint8": rng.integers(0, 255, rows).astype("uint8"),
        "uint64": rng.integers(0, 2**62, rows).astype("uint64"),
        "uint64-above-int64": np.full(rows, 2**63 + 5, dtype="uint64"),
        "bool": rng.random(rows) < 0.5,
        "float32": np.where(np.isfinite(floats), floats / 10.0**300, floats).astype("float32"),
        "float16": rng.normal(size=rows).astype("float16"),
        "text-array": np.array(_cycle(["a", "b", "é", "", "d"], rows)),
        "object-array": np.array(_cycle([1, "a", None, 2.5, True], rows), dtype=object),
        "matrix-float64": np.stack([floats, -floats, floats * 2], axis=1),
        "matrix-int64": rng.integers(0, 9, (rows, 2)),
        "matrix-bool": rng.random((rows, 4)) < 0.5,
        "matrix-float32": rng.normal(size=(rows, 2)).astype("float32"),
        "matrix-no-columns": np.empty((rows, 0)),
        "tensor-3d": rng.normal(size=(rows, 2, 2)),
        "frame-numbers": numbers,
        "frame-one-column": numbers[["score"]],
        "frame-text": numbers.assign(name=_cycle(["x", "y", None, "z", "é", ""], rows)),
        "frame-string-dtype": numbers.assign(name=pd.array(["x"] * rows, dtype="string")),
        "frame-nullable-int": numbers.assign(count=pd.array([1, None] * rows, dtype="Int64")[:rows]),
        "frame-category": numbers.assign(color=pd.Categorical(["red", "blue"] * rows)[:rows]),
        "frame-datetime": numbers.assign(when=pd.date_range("2024-01-01", periods=rows, freq="h")),
        "frame-float32": numbers.assign(score=rng.normal(size=rows).astype("float32")),
        "frame-int-names": pd.DataFrame(rng.normal(size=(rows, 2))),
        "frame-repeated-names": pd.DataFrame(rng.normal(size=(rows, 2)), columns=["a", "a"]),
        "series": pd.Series(floats, name="score"),
        "dict-of-arrays": {"probability": floats, "label": rng.integers(0, 2, rows)},
        "list-of-numbers": floats.tolist(),
        "list-of-lists": rng.normal(size=(rows, 2)).tolist(),
        "ragged-lists": [[1.0] * (position % 3 + 1) for position in range(rows)],
        "records-list": [{"score": float(value), "rank": position} for position, value in enumerate(floats)],
        "nested-dicts": [{"scores": {"a": 1.0, "b": [2.0, {"c": None}]}} for _ in range(rows)],
        "none": None,
        "scalar": 3.5,
        "empty-array": np.array([], dtype="float64"),
        "empty-frame": numbers.iloc[:0],
    }


def shaped(data: pd.DataFrame) -> Any:
    """The output named by ``data["case"]`` (its first row's), with one prediction per row of ``data``."""
    return outputs(len(data))[data["case"].iloc[0]]
