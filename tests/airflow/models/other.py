"""A second model for the Airflow tests: doubles every input value."""

from __future__ import annotations

from typing import Any

import numpy as np


class Doubler:
    def predict(self, data: Any) -> Any:
        return np.asarray(data, dtype="float64") * 2.0


model = Doubler()
