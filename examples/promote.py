"""Promote a challenger on the ``local`` target: offline gate, traffic steps judged with golden traffic,
then all traffic on the challenger.

Run it with ``python examples/promote.py`` (needs ``pip install 'deployflow[local,batch]'`` and
scikit-learn for the accuracy metric). Everything stays on 127.0.0.1; the state lives in a temporary
directory that is removed at the end.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import pandas as pd

import deployflow

MODELS = '''
import numpy as np

def champion(data):          # right except for x = 10 and 11
    return (np.asarray(data, dtype=float)[:, 0] >= 12).astype(int)

def challenger(data):        # right on every row
    return (np.asarray(data, dtype=float)[:, 0] >= 10).astype(int)
'''


def main() -> deployflow.PromotionReport:
    home = Path(tempfile.mkdtemp(prefix="deployflow-promote-"))
    models = home / "models.py"
    models.write_text(MODELS, encoding="utf-8")
    golden = pd.DataFrame({"x": [float(x) for x in range(20)]})
    golden["label"] = (golden["x"] >= 10).astype(int)
    client = deployflow.get_deploy_client(f"local://{home}")
    try:
        client.create_deployment("churn-v1", f"python:{models}:champion")
        client.create_deployment("churn-v2", f"python:{models}:challenger")
        client.create_endpoint("churn", config={"routes": [{"deployment": "churn-v1", "traffic": 100}]})

        report = deployflow.promote(
            client, "churn", "churn-v2", golden=golden,
            checks=["offline:accuracy>=0.95", "accuracy>=champion-0.01", "error_rate<=0", "p99_ms<=500"],
            steps=[10, 50, 100], bake_seconds=1, max_rate=50, min_samples=20,
        )
        print(f"offline gate: {report['offline']['verdict']} "
              f"(accuracy {report['offline']['challenger']['accuracy']:g} vs {report['offline']['champion']['accuracy']:g})")
        for step in report.steps:
            print(f"step {step['weight']:g}%: {step['verdict']} ({step['samples']} answers)")
        print(f"outcome: {report.outcome}; split now {client.get_traffic_split('churn')}")
        return report
    finally:
        for endpoint in client.list_endpoints():
            client.delete_endpoint(endpoint["name"])
        for deployment in client.list_deployments():
            client.delete_deployment(deployment["name"])
        client.close()
        shutil.rmtree(home, ignore_errors=True)


if __name__ == "__main__":
    main()
