"""How long `import deployflow` takes in a fresh interpreter.

Prints the median, min and max over N runs (default 15) of the wall time of
`python -c "import deployflow"` minus a bare `python -c "pass"`, and the same for `import requests`
as a peer measured in the same run. Run: `.venv/bin/python benchmarks/bench_import.py [N]`.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import time


def _time(code: str, runs: int) -> list[float]:
    samples = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run([sys.executable, "-c", code], check=True)
        samples.append(time.perf_counter() - start)
    return samples


def main() -> None:
    runs = int(sys.argv[1]) if len(sys.argv) > 1 else 15
    bare = statistics.median(_time("pass", runs))
    rows = []
    for label, code in [("import deployflow", "import deployflow"), ("import requests (peer)", "import requests")]:
        samples = [s - bare for s in _time(code, runs)]
        rows.append((label, statistics.median(samples), min(samples), max(samples)))
    print(f"python start-up (subtracted): {bare * 1000:.1f} ms, {runs} runs each")
    print(f"{'what':28} {'median ms':>10} {'min ms':>8} {'max ms':>8}")
    for label, med, lo, hi in rows:
        print(f"{label:28} {med * 1000:10.1f} {lo * 1000:8.1f} {hi * 1000:8.1f}")
    print(f"deployflow / requests: {rows[0][1] / rows[1][1]:.2f}x")


if __name__ == "__main__":
    main()
