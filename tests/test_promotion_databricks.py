"""Promotion on the databricks target, against the fake workspace (tests/fakes/databricks.py): the split
is ``traffic_config.routes`` over served entities, set through ``PUT .../config``; the fake answers each
row with its sum times the answering entity's model version and spreads endpoint requests by the routes."""

from __future__ import annotations

import pandas as pd
import pytest

import deployflow
from deployflow import InvalidInputError, get_deploy_client
from deployflow.promotion import PromotionRolledBackError
from fakes.base import scrub_environment
from fakes.databricks import DEFAULT_TOKEN, FakeDatabricks, scrub_sdk_environment

FAST = {"poll_interval": 0.01, "max_poll_interval": 0.05, "wait_timeout": 10, "max_retries": 0}
CONFIG = "/api/2.0/serving-endpoints/churn/config"


def entity(name: str, version: int) -> dict:
    return {"name": name, "entity_name": "main.default.churn", "entity_version": str(version),
            "workload_size": "Small", "scale_to_zero_enabled": True}


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch, tmp_path):
    scrub_environment(monkeypatch, tmp_path)
    scrub_sdk_environment(monkeypatch)


@pytest.fixture
def fake():
    with FakeDatabricks() as service:
        yield service


@pytest.fixture
def client(fake):
    with get_deploy_client("databricks", host=fake.url, token=DEFAULT_TOKEN, **FAST) as made:
        yield made


def golden() -> pd.DataFrame:
    """Labels are twice each row's sum: entity version 2 answers them exactly."""
    a = [float(i) for i in range(10)]
    return pd.DataFrame({"a": a, "b": [1.0] * 10, "label": [2 * (x + 1.0) for x in a]})


def test_the_split_is_read_and_set_through_the_routes(client, fake):
    fake.add_ready_endpoint("churn", [entity("champion", 1), entity("challenger", 2)], {"champion": 100, "challenger": 0})
    assert client.get_traffic_split("churn") == {"champion": 100.0, "challenger": 0.0}
    record = client.set_traffic_split("churn", {"champion": 66.7, "challenger": 33.3})
    assert record["state"] == {"ready": "READY", "config_update": "NOT_UPDATING"}
    sent = fake.requests_to("PUT", CONFIG)[-1].json()
    assert sent["traffic_config"] == {"routes": [
        {"served_model_name": "champion", "traffic_percentage": 67},
        {"served_model_name": "challenger", "traffic_percentage": 33},
    ]}
    assert [e["name"] for e in sent["served_entities"]] == ["champion", "challenger"]
    assert all("state" not in e for e in sent["served_entities"])
    assert client.get_traffic_split("churn") == {"champion": 67.0, "challenger": 33.0}
    # A member left out gets 0; whole percents still add up to 100.
    client.set_traffic_split("churn", {"challenger": 100})
    assert client.get_traffic_split("churn") == {"champion": 0.0, "challenger": 100.0}
    puts = len(fake.requests_to("PUT", CONFIG))
    for bad in ({"nobody": 100}, {"champion": 50}, {"champion": "lots", "challenger": 0}, {}, {"champion": 150, "challenger": -50}):
        with pytest.raises(InvalidInputError):
            client.set_traffic_split("churn", bad)
    assert len(fake.requests_to("PUT", CONFIG)) == puts  # refused before anything was sent


def test_a_better_entity_is_promoted_end_to_end(client, fake, tmp_path):
    fake.add_ready_endpoint("churn", [entity("champion", 1), entity("challenger", 2)], {"champion": 100, "challenger": 0})
    report = deployflow.promote(
        client, "churn", "challenger", golden=golden(), checks=["rmse<=champion", "offline:rmse<=0.001", "error_rate<=0"],
        steps=[25, 100], bake_seconds=0.3, max_rate=100, min_samples=5, record_path=tmp_path / "record.json",
    )
    assert report.outcome == "promoted" and report["champion"] == "champion"
    assert report["offline"]["challenger"]["rmse"] == 0.0 and report["offline"]["champion"]["rmse"] > 1
    # The gate scored each entity alone, through its own invocations path.
    assert fake.requests_to("POST", "/serving-endpoints/churn/served-models/challenger/invocations")
    assert fake.requests_to("POST", "/serving-endpoints/churn/served-models/champion/invocations")
    first, last = report.steps
    # At 25% a quarter of the endpoint's answers came from the challenger (the fake spreads them exactly).
    assert first["metrics"]["agreement"] == pytest.approx(0.75, abs=0.05)
    assert last["metrics"]["agreement"] == 0.0 and last["metrics"]["rmse"] == 0.0
    assert client.get_traffic_split("churn") == {"champion": 0.0, "challenger": 100.0}
    assert client.predict(endpoint="churn", inputs={"inputs": [[1, 1]]})["predictions"] == [4.0]
    # The token is in neither the report nor its record.
    assert DEFAULT_TOKEN not in report.to_json()
    assert DEFAULT_TOKEN not in (tmp_path / "record.json").read_text()


def test_a_worse_entity_is_rolled_back_to_the_champion(client, fake, tmp_path):
    fake.add_ready_endpoint("churn", [entity("champion", 2), entity("challenger", 3)], {"champion": 100, "challenger": 0})
    with pytest.raises(PromotionRolledBackError) as caught:
        deployflow.promote(
            client, "churn", "challenger", golden=golden(), checks=["online:rmse<=champion+0.5"],
            steps=[50, 100], bake_seconds=0.3, max_rate=100, min_samples=5, record_path=tmp_path / "record.json",
        )
    [step] = caught.value.report.steps
    assert step["verdict"] == "fail" and step["weight"] == 50
    assert client.get_traffic_split("churn") == {"champion": 100.0, "challenger": 0.0}
    assert {client.predict(endpoint="churn", inputs={"inputs": [[1, 1]]})["predictions"][0] for _ in range(10)} == {4.0}
