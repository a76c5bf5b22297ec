"""The main job, end to end on this machine: deploy a model, wait, score a file in batch, tear down.

Run it with `make demo` (which creates .venv and installs deployflow), or `python examples/demo.py`.
Everything stays on 127.0.0.1; the state and the output go under ./demo-output/.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

from deployflow import DeploymentError, batch_predict, get_deploy_client, read_output

HERE = Path(__file__).resolve().parent
OUT = Path.cwd() / "demo-output"
ROWS = 5000


def make_customers(path: Path, rows: int) -> None:
    """A synthetic customer table: the file the demo scores."""
    rng = np.random.default_rng(7)
    pd.DataFrame(
        {
            "customer_id": np.arange(1, rows + 1),
            "tenure_months": rng.integers(1, 72, rows),
            "monthly_charges": rng.normal(70, 20, rows).round(2),
            "support_calls": rng.poisson(1.5, rows),
            "has_contract": rng.integers(0, 2, rows),
        }
    ).to_parquet(path, index=False)


def main() -> int:
    OUT.mkdir(exist_ok=True)
    customers = OUT / "customers.parquet"
    make_customers(customers, ROWS)
    client = get_deploy_client(f"local://{OUT / 'state'}")
    name = "churn"
    started = time.monotonic()
    try:
        client.delete_deployment(name)  # a rerun after an interrupted demo starts clean
        deployment = client.create_deployment(name, f"python:{HERE / 'models' / 'churn.py'}:model")
        status = client.wait_for_deployment(name, timeout=120)
        print(f"deployed {name!r} at {deployment.get('url')} in {time.monotonic() - started:.1f} s: {status}")

        summary = batch_predict(
            client,
            customers,
            deployment_name=name,
            output=OUT / "scores.parquet",
            overwrite=True,
            chunk_size=1000,
            keep_columns=["customer_id"],
        )
        scores = read_output(OUT / "scores.parquet")
        print(
            f"scored {summary.rows} rows in {summary.chunks} chunks, {summary.seconds:.2f} s "
            f"({summary.rows_per_second:,.0f} rows/s), {summary.failed_rows} rejected"
        )
        print(f"{int(scores['will_churn'].sum())} of {len(scores)} customers are likely to leave")
        print(f"output: {summary.output_path}")
        return 0
    except DeploymentError as exc:
        print(f"demo failed: {exc}", file=sys.stderr)
        return 1
    finally:
        client.delete_deployment(name)
        print(f"torn down {name!r}; deployments left: {len(client.list_deployments())}")


if __name__ == "__main__":
    sys.exit(main())
