"""A Prefect flow that deploys a model on the local target, waits until it serves, scores a file in batch,
and tears the deployment down, whatever happens.

Run it with `python examples/prefect/deploy_and_score.py` (with `pip install 'deployflow[prefect]'`): Prefect
starts a temporary API server if none is configured. Everything stays on 127.0.0.1; the state and the
output go under ./prefect-demo-output/. The file is self-contained: the model the flow deploys by default
(:class:`ChurnModel`) is defined below and served from this file, so a copy of the file runs on its own,
wherever it lies. To keep the target's settings in Prefect instead of in code, save a block once and
pass its name::

    DeploymentTarget(target_uri="local:///srv/deployflow").save("models-local")
    python examples/prefect/deploy_and_score.py --block models-local
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any, Union

import numpy as np
import pandas as pd
from prefect import flow, get_run_logger

from deployflow.integrations.prefect import (
    DeploymentTarget,
    batch_predict,
    create_deployment,
    delete_deployment,
    wait_for_deployment_ready,
)

class ChurnModel:
    """Per customer row, the probability of leaving (``churn_probability``) and a yes/no label
    (``will_churn``, probability >= 0.5): a logistic regression with fixed weights, in numpy."""

    features = ["tenure_months", "monthly_charges", "support_calls", "has_contract"]
    weights = np.array([-0.06, 0.025, 0.45, -1.3])
    bias = -0.8

    def predict(self, data: pd.DataFrame) -> pd.DataFrame:
        missing = [column for column in self.features if column not in data.columns]
        if missing:
            raise ValueError(f"missing feature columns: {missing}")
        x = data[self.features].to_numpy(dtype="float64")
        probability = 1.0 / (1.0 + np.exp(-(x @ self.weights + self.bias)))
        return pd.DataFrame({"churn_probability": probability.round(6), "will_churn": probability >= 0.5})


#: What the flow deploys by default: the model above, loaded by the scoring server from this very file.
model = ChurnModel()
MODEL = f"python:{Path(__file__).resolve()}:model"


def make_customers(path: Path, rows: int) -> Path:
    """A synthetic customer table: the file the flow scores."""
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
    return path


@flow(name="deploy-and-score")
def deploy_and_score(
    target: Union[DeploymentTarget, str],
    input_path: str,
    output_path: str,
    name: str = "churn",
    model_uri: str = MODEL,
    timeout: float = 120.0,
    chunk_size: int = 1000,
) -> dict[str, Any]:
    """Deploy ``model_uri`` as ``name``, wait until it serves, score ``input_path`` into ``output_path``,
    then delete the deployment (also when a step failed). Returns the deployment and the batch summary."""
    logger = get_run_logger()
    deployment = create_deployment(target, name, model_uri, wait=False)
    try:
        ready = wait_for_deployment_ready(target, name, timeout=timeout)
        logger.info("Serving at %s", ready["url"])
        summary = batch_predict(
            target,
            input_path,
            output_path,
            deployment_name=name,
            chunk_size=chunk_size,
            keep_columns=["customer_id"],
            overwrite=True,
        )
    finally:
        delete_deployment(target, name)
    return {"deployment": {**deployment, **ready}, "summary": summary}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--block", help="name of a saved DeploymentTarget block (default: a local target "
                        "with its state under ./prefect-demo-output/state)")
    parser.add_argument("--rows", type=int, default=5000)
    args = parser.parse_args()
    out = Path.cwd() / "prefect-demo-output"
    out.mkdir(exist_ok=True)
    target: Union[DeploymentTarget, str] = (
        DeploymentTarget.load(args.block) if args.block else f"local://{out / 'state'}"
    )
    customers = make_customers(out / "customers.parquet", args.rows)
    result = deploy_and_score(target, str(customers), str(out / "scores.parquet"))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
