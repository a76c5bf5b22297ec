"""The sagemaker target's traffic split (production variant weights, set with
UpdateEndpointWeightsAndCapacities) against moto, and why a promotion stops before moving traffic there:
scoring one variant alone needs TargetVariant, which the target's predict does not send."""

from __future__ import annotations

import pandas as pd
import pytest

import deployflow
from deployflow import InvalidInputError, NotSupportedError, get_deploy_client
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


def test_a_promotion_stops_before_any_traffic_moves(client, fake, two_variants, tmp_path):
    golden = pd.DataFrame({"x": [1.0, 2.0], "label": [0, 1]})
    with pytest.raises(NotSupportedError, match="TargetVariant"):
        deployflow.promote(client, "churn", "green", golden=golden, checks=["accuracy>=0.5"], record_path=tmp_path / "r.json")
    assert client.get_traffic_split("churn") == {"blue": 100.0, "green": 0.0}
    assert fake.invocations == []
