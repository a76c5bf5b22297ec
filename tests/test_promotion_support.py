"""Models and golden data for the promotion tests (imported by them; it holds no tests).

The golden set is x = 0..19 with label x >= 10. The champion answers x >= 12 (accuracy 0.9); the
``better`` challenger is right on every row, ``worse`` answers x >= 16 (0.7). Row x = 10 tells which
model answered: the champion says 0, every challenger 1.
"""

from __future__ import annotations

from pathlib import Path

MODELS = '''
import time
import numpy as np

def _x(data):
    return np.asarray(data, dtype=float)[:, 0]

def champion(data):
    return (_x(data) >= 12).astype(int)

def better(data):
    return (_x(data) >= 10).astype(int)

def worse(data):
    return (_x(data) >= 16).astype(int)

_calls = [0]

def breaks_under_load(data):
    """Right on every row for its first 25 requests (the offline gate sends 20), then raises."""
    _calls[0] += 1
    if _calls[0] > 25:
        raise ValueError("the challenger broke under traffic")
    return (_x(data) >= 10).astype(int)

def slow(data):
    time.sleep(0.03)
    return (_x(data) >= 10).astype(int)
'''

TELLING_ROW = [[10.0]]
CHAMPION_SAYS, CHALLENGER_SAYS = 0, 1


def write_models(directory: Path) -> dict[str, str]:
    """Write the models module into ``directory``; returns name -> model URI."""
    path = Path(directory) / "promotion_models.py"
    path.write_text(MODELS, encoding="utf-8")
    return {name: f"python:{path}:{name}" for name in ("champion", "better", "worse", "breaks_under_load", "slow")}


def golden_frame():
    import pandas as pd

    xs = [float(x) for x in range(20)]
    return pd.DataFrame({"x": xs, "label": [int(x >= 10) for x in xs]})


def who_answers(client, endpoint: str, count: int = 20) -> set[str]:
    """Which models answered ``count`` requests for the telling row through ``endpoint``."""
    seen = set()
    for _ in range(count):
        answer = client.predict(endpoint=endpoint, inputs=TELLING_ROW)["predictions"]
        value = answer[0][0] if isinstance(answer[0], list) else answer[0]
        seen.add("champion" if value == CHAMPION_SAYS else "challenger" if value == CHALLENGER_SAYS else repr(value))
    return seen
