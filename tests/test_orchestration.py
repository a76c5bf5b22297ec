"""ensure_deployment / ensure_endpoint: retry-safe creates, against the real local target."""

from __future__ import annotations

from pathlib import Path

import pytest

from deployflow import ConflictError, InvalidInputError, ensure_deployment, ensure_endpoint, get_deploy_client

MODELS = Path(__file__).resolve().parent / "support" / "batch_models.py"
LINEAR = f"python:{MODELS}:linear"
RECORDS = f"python:{MODELS}:records"


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    client = get_deploy_client(f"local://{tmp_path_factory.mktemp('ensure')}")
    yield client
    for endpoint in client.list_endpoints():
        client.delete_endpoint(endpoint["name"])
    for deployment in client.list_deployments():
        client.delete_deployment(deployment["name"])


def test_create_then_adopt_the_same_spec(client):
    first = ensure_deployment(client, "same", LINEAR)
    assert first.action == "created"
    again = ensure_deployment(client, "same", LINEAR)
    assert again.action == "adopted"
    assert again.record["pid"] == first.record["pid"]  # the same server, not a second one
    assert len([d for d in client.list_deployments() if d["name"] == "same"]) == 1


def test_adopt_refuses_a_different_spec(client):
    ensure_deployment(client, "differs", LINEAR)
    with pytest.raises(ConflictError, match="model_uri") as info:
        ensure_deployment(client, "differs", RECORDS)
    assert not info.value.retryable
    with pytest.raises(ConflictError, match="request_timeout"):
        ensure_deployment(client, "differs", LINEAR, config={"request_timeout": 5})


def test_update_rolls_forward_and_fail_refuses(client):
    ensure_deployment(client, "rolled", LINEAR)
    result = ensure_deployment(client, "rolled", RECORDS, if_exists="update")
    assert result.action == "updated" and result.record["model_uri"] == RECORDS
    assert "label" in client.predict("rolled", {"dataframe_records": [{"a": 1.0, "b": 2.0}]})["predictions"][0]
    with pytest.raises(ConflictError, match="if_exists='fail'"):
        ensure_deployment(client, "rolled", RECORDS, if_exists="fail")


def test_a_create_that_lost_the_race_adopts(client):
    """get says missing, create says exists (another worker won): decided as if it had been seen."""

    class RacingClient(type(client)):
        raced = False

        def get_deployment(self, name, endpoint=None):
            if not self.raced:
                self.raced = True
                super().create_deployment(name, LINEAR)  # the other worker, just before our create
                from deployflow import NotFoundError

                raise NotFoundError(f"Deployment {name!r} does not exist")
            return super().get_deployment(name, endpoint)

    racer = RacingClient(client.target_uri)
    assert ensure_deployment(racer, "raced", LINEAR).action == "adopted"


def test_endpoints(client):
    ensure_deployment(client, "routed", LINEAR)
    routes = {"routes": [{"deployment": "routed", "traffic": 100}]}
    assert ensure_endpoint(client, "front", config=routes).action == "created"
    assert ensure_endpoint(client, "front", config=routes).action == "adopted"
    ensure_deployment(client, "other", LINEAR)
    with pytest.raises(ConflictError, match="routes"):
        ensure_endpoint(client, "front", config={"routes": [{"deployment": "other", "traffic": 100}]})
    updated = ensure_endpoint(client, "front", config={"routes": [{"deployment": "other", "traffic": 100}]}, if_exists="update")
    assert updated.action == "updated"


def test_bad_if_exists(client):
    with pytest.raises(InvalidInputError, match="if_exists"):
        ensure_deployment(client, "x", LINEAR, if_exists="replace")
