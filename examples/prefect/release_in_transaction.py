"""A Prefect flow that releases a new churn model inside a transaction: every step is undone if the last
check fails.

Inside ``with transaction():`` the flow rolls the serving deployment forward to the new model, creates a
second deployment of it for batch jobs, then scores a sample through the serving deployment and checks
the share of customers it predicts will churn. If that check fails, Prefect rolls the transaction back:
the batch deployment is deleted (its server stops) and the serving deployment goes back to the model it
served before. Nothing of the release is left behind.

Run it with ``python examples/prefect/release_in_transaction.py`` (``pip install 'deployflow[prefect]'``):
it first deploys the current model as ``churn``, then releases ``--model`` (``steady``, the default,
passes the check; ``alarmist``, which predicts that everyone churns, fails it and is rolled back),
prints what the target serves afterwards, and deletes the deployments. Everything stays on 127.0.0.1;
the target's state goes under ./prefect-release-output/.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any, Union

import numpy as np
import pandas as pd
from prefect import flow, task
from prefect.transactions import transaction

from deployflow import get_deploy_client
from deployflow.integrations.prefect import (
    DeploymentTarget,
    create_deployment,
    predict,
    update_deployment,
)

FEATURES = ["tenure_months", "monthly_charges", "support_calls", "has_contract"]


class ChurnModel:
    """The probability that a customer leaves (``churn_probability``): a logistic regression with fixed
    weights, in numpy. ``bias`` shifts every probability up or down."""

    weights = np.array([-0.06, 0.025, 0.45, -1.3])

    def __init__(self, bias: float) -> None:
        self.bias = bias

    def predict(self, data: pd.DataFrame) -> pd.DataFrame:
        x = data[FEATURES].to_numpy(dtype="float64")
        probability = 1.0 / (1.0 + np.exp(-(x @ self.weights + self.bias)))
        return pd.DataFrame({"churn_probability": probability.round(6)})


#: The model in production before the release.
current = ChurnModel(bias=-0.8)
#: A new version close to the current one: it passes the release check.
steady = ChurnModel(bias=-0.7)
#: A broken new version: it predicts that every customer churns, so the release check fails.
alarmist = ChurnModel(bias=40.0)


def model_uri(attribute: str) -> str:
    """The local-target reference to one of the models above, served from this very file."""
    return f"python:{Path(__file__).resolve()}:{attribute}"


def sample_customers(rows: int = 200) -> dict[str, Any]:
    """A small synthetic customer sample in the scoring protocol's ``dataframe_split`` form."""
    rng = np.random.default_rng(11)
    frame = pd.DataFrame(
        {
            "tenure_months": rng.integers(1, 72, rows),
            "monthly_charges": rng.normal(70, 20, rows).round(2),
            "support_calls": rng.poisson(1.5, rows),
            "has_contract": rng.integers(0, 2, rows),
        }
    )
    return {"dataframe_split": json.loads(frame.to_json(orient="split", index=False))}


@task
def check_churn_rate(answer: dict[str, Any], max_churn_rate: float) -> float:
    """The share of the sample predicted to churn (probability >= 0.5); fails above ``max_churn_rate``."""
    predictions = answer["predictions"]
    rows = predictions if isinstance(predictions, list) else pd.DataFrame(predictions).to_dict("records")
    probabilities = [row["churn_probability"] for row in rows]
    rate = sum(p >= 0.5 for p in probabilities) / len(probabilities)
    if rate > max_churn_rate:
        raise ValueError(f"the new model predicts that {rate:.0%} of the sample churns (at most {max_churn_rate:.0%})")
    return rate


@flow(name="release-in-transaction")
def release(
    target: Union[DeploymentTarget, str],
    new_model_uri: str,
    name: str = "churn",
    max_churn_rate: float = 0.5,
    timeout: float = 120.0,
) -> dict[str, Any]:
    """Roll deployment ``name`` forward to ``new_model_uri``, create ``<name>-batch`` serving it, and check
    the churn rate it predicts on a sample; all in one transaction, so a failed check undoes both."""
    with transaction():
        rolled = update_deployment(target, name, new_model_uri, timeout=timeout)
        batch = create_deployment(target, f"{name}-batch", new_model_uri, timeout=timeout)
        answer = predict(target, name, sample_customers())
        rate = check_churn_rate(answer, max_churn_rate)
    return {"serving": rolled, "batch": batch, "churn_rate": rate}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=["steady", "alarmist"], default="steady")
    args = parser.parse_args()
    out = Path.cwd() / "prefect-release-output"
    out.mkdir(exist_ok=True)
    target = f"local://{out / 'state'}"
    with get_deploy_client(target) as client:
        client.create_deployment("churn", model_uri("current"))
    try:
        state = release(target, model_uri(args.model), return_state=True)
        print("release:", "completed" if state.is_completed() else f"failed and rolled back ({state.message})")
        with get_deploy_client(target) as client:
            for deployment in client.list_deployments():
                print(f"  {deployment['name']}: {deployment['model_uri']} ({deployment['state']})")
    finally:
        with get_deploy_client(target) as client:
            for deployment in client.list_deployments():
                client.delete_deployment(deployment["name"])


if __name__ == "__main__":
    main()
