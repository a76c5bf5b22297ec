"""``examples/promote.py`` runs as it is, in its own process, and prints what it says it does."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "promote.py"


def test_the_promotion_example_runs():
    completed = subprocess.run([sys.executable, str(EXAMPLE)], capture_output=True, text=True, timeout=180)
    assert completed.returncode == 0, completed.stderr[-3000:]
    lines = completed.stdout.splitlines()
    assert lines[0] == "offline gate: pass (accuracy 1 vs 0.9)"
    assert [line.split(":")[0] for line in lines[1:4]] == ["step 10%", "step 50%", "step 100%"]
    assert all(": pass (" in line for line in lines[1:4])
    assert lines[4] == "outcome: promoted; split now {'churn-v1': 0.0, 'churn-v2': 100.0}"
