"""The demo's model: a small logistic regression with fixed weights, in plain numpy.

Served by the local target as ``python:examples/models/churn.py:model``. It takes a frame with the
columns below and answers, per row, the probability that the customer leaves and a yes/no label.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

FEATURES = ["tenure_months", "monthly_charges", "support_calls", "has_contract"]
_WEIGHTS = np.array([-0.06, 0.025, 0.45, -1.3])
_BIAS = -0.8


class ChurnModel:
    def predict(self, data: pd.DataFrame) -> pd.DataFrame:
        missing = [c for c in FEATURES if c not in data.columns]
        if missing:
            raise ValueError(f"missing feature columns: {missing}")
        x = data[FEATURES].to_numpy(dtype="float64")
        probability = 1.0 / (1.0 + np.exp(-(x @ _WEIGHTS + _BIAS)))
        return pd.DataFrame({"churn_probability": probability.round(6), "will_churn": probability >= 0.5})


model = ChurnModel()
