"""A model for the Airflow tests: adds one to every input value (served as ``python:<this file>:model``)."""

from __future__ import annotations

from typing import Any

import numpy as np


class AddOne:
    def predict(self, data: Any) -> Any:
        return np.asarray(data, dtype="float64") + 1.0


model = AddOne()
