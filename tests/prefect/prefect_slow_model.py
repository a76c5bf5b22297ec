"""A model that takes a few seconds to load, as a real one whose weights are fetched first would.

Served as ``python:<this file>:model``; adds one to every value once it is up.
"""

from __future__ import annotations

import time

import numpy as np

#: How long loading takes; the tests' "at once" and "by the deadline" bounds sit well below it.
LOAD_SECONDS = 8.0

time.sleep(LOAD_SECONDS)


def model(data):
    return np.asarray(data, dtype="float64") + 1
