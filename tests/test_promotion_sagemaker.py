"""The sagemaker target's traffic split (production variant weights, set with
UpdateEndpointWeightsAndCapacities) against moto, and promotions run end to end there: the offline gate
scores each variant alone (InvokeEndpoint's TargetVariant), the steps send golden traffic through the
endpoint's weights (the fake spreads it by the variants' current weights, as SageMaker does)."""

from __future__ import annotations

import json

import pandas as pd
import pytest

import deployflow
from deployflow import InvalidInputError, PromotionRejectedError, get_deploy_client
from fakes import sagemaker as fakes
from fakes.sagemaker import BASE_CONFIG, FAST, write_model


@pytest.fixture
def fake():
    with fakes.in_process() as running:
        yield running


@pytest.fixture
def client(fake):
    with get_deploy_client("sagemaker:/us-east-1", **FAST) as made:
        yield made


@pytest.fixture
def two_variants(client, tmp_path):
    client.create_deployment("churn", str(write_model(tmp_path / "v1")), config={**BASE_CONFIG, "variant_name": "blue"})
    client.update_deployment(
        "churn", str(write_model(tmp_path / "v2", marker="v2")), config={**BASE_CONFIG, "mode": "add", "variant_name": "green"}
    )
    return "churn"


def test_the_split_is_the_variant_weights(client, fake, two_variants):
    assert client.get_traffic_split("churn") == {"blue": 100.0, "green": 0.0}
    record = client.set_traffic_split("churn", {"blue": 70, "green": 30})
    assert record["state"] == "READY"
    assert client.get_traffic_split("churn") == {"blue": 70.0, "green": 30.0}
    # A variant left out gets no traffic (update_traffic would keep its weight).
    client.set_traffic_split("churn", {"green": 100})
    assert client.get_traffic_split("churn") == {"blue": 0.0, "green": 100.0}
    for bad in ({"red": 100}, {"blue": 40}, {"blue": "most", "green": 0}, {}):
        with pytest.raises(InvalidInputError):
            client.set_traffic_split("churn", bad)
    assert client.get_traffic_split("churn") == {"blue": 0.0, "green": 100.0}


GOLDEN = pd.DataFrame({"x": [float(value) for value in range(-6, 6)], "label": [int(value > 0) for value in range(-6, 6)]})


def _variants_answer(good: set[str]):
    """Variants in ``good`` answer x > 0 (right on every golden row); the others always 0 (half right)."""

    def answer(endpoint: str, variant: str, body: bytes) -> dict:
        rows = json.loads(body)["dataframe_split"]["data"]
        return {"predictions": [int(row[0] > 0) if variant in good else 0 for row in rows]}

    return answer


PROMOTION = {"golden": GOLDEN, "steps": [50, 100], "bake_seconds": 0.3, "min_samples": 3, "max_rate": 200}


def test_a_better_variant_is_promoted(client, fake, two_variants, tmp_path):
    fake.answer_by_variant(_variants_answer({"green"}))
    report = deployflow.promote(client, "churn", "green", checks=["accuracy>=champion", "error_rate<=0"],
                                record_path=tmp_path / "r.json", **PROMOTION)
    assert report.outcome == "promoted"
    assert [step["verdict"] for step in report.steps] == ["pass", "pass"]
    assert client.get_traffic_split("churn") == {"blue": 0.0, "green": 100.0}
    targeted = [call["target_variant"] for call in fake.invocations if call["target_variant"]]
    assert set(targeted) == {"blue", "green"}  # the gate scored each variant alone
    assert any(call["target_variant"] is None for call in fake.invocations)  # the steps went through the weights


def test_a_worse_variant_is_rejected_before_its_weight_changes(client, fake, two_variants, tmp_path):
    fake.answer_by_variant(_variants_answer({"blue"}))
    with pytest.raises(PromotionRejectedError):
        deployflow.promote(client, "churn", "green", checks=["accuracy>=champion-0.01"], record_path=tmp_path / "r.json",
                           **PROMOTION)
    assert client.get_traffic_split("churn") == {"blue": 100.0, "green": 0.0}
    assert all(call["target_variant"] for call in fake.invocations)  # no golden row went through the weights


def test_predict_with_a_variant_name_scores_that_variant_alone(client, fake, two_variants):
    fake.answer_by_variant(_variants_answer({"green"}))
    frame = pd.DataFrame({"x": [3.0]})
    assert client.predict("green", frame, endpoint="churn")["predictions"] == [1]
    assert client.predict("blue", frame, endpoint="churn")["predictions"] == [0]
    assert [call["target_variant"] for call in fake.invocations] == ["green", "blue"]
    with pytest.raises(InvalidInputError, match="red"):
        client.predict("red", frame, endpoint="churn")
