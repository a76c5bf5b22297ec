"""The other tasks on the local target: get and update a deployment; create, adopt, wait for, score
through, re-route and delete an endpoint."""

from __future__ import annotations

import pytest
from prefect import flow

from deployflow import NotFoundError, get_deploy_client
from deployflow.integrations.prefect import (
    DeploymentTarget,
    create_deployment,
    create_endpoint,
    delete_deployment,
    delete_endpoint,
    get_deployment,
    predict,
    update_deployment,
    update_endpoint,
    wait_for_endpoint_ready,
)
from prefect_support import flow_artifacts, model_ref, read_events

ONE_ROW = {"inputs": [[1.0, 2.0]]}


@flow
def blue_green(target: DeploymentTarget) -> dict:
    create_deployment(target, "blue", model_ref("add_one"))
    create_deployment(target, "green", model_ref("add_one"))
    routes = [{"deployment": "blue", "traffic": 100}, {"deployment": "green", "traffic": 0}]
    created = create_endpoint(target, "front", {"routes": routes}, wait=False)
    ready = wait_for_endpoint_ready(target, "front", timeout=120, poll_interval=0.2)
    adopted = create_endpoint(target, "front", {"routes": routes})  # a retried create: same config
    through_front = predict(target, inputs=ONE_ROW, endpoint="front")
    updated = update_deployment(target, "green", model_ref("add_one"), config={"workers": 1})
    switched = update_endpoint(target, "front", {"routes": [{"deployment": "green", "traffic": 100}]})
    shown = get_deployment(target, "green")
    deleted = delete_endpoint(target, "front")
    again = delete_endpoint(target, "front")  # idempotent
    for name in ("blue", "green"):
        delete_deployment(target, name)
    return {"created": created, "ready": ready, "adopted": adopted, "through_front": through_front,
            "updated": updated, "switched": switched, "shown": shown, "deleted": deleted, "again": again}


def test_endpoint_and_update_tasks(target_uri):
    target = DeploymentTarget(target_uri=target_uri)

    state = blue_green(target, return_state=True)

    result = state.result()
    assert result["created"]["action"] == "created"
    assert result["ready"]["state"] == "READY" and result["ready"]["url"].startswith("http://127.0.0.1:")
    assert result["adopted"]["action"] == "adopted"
    assert result["through_front"] == {"predictions": [[2.0, 3.0]]}
    assert result["updated"]["action"] == "updated" and result["updated"]["state"] == "READY"
    assert result["switched"]["state"] == "READY"
    assert result["shown"]["state"] == "READY" and result["shown"]["config"]["workers"] == 1
    assert result["deleted"] == {"name": "front", "deleted": True, "target": target_uri}
    assert result["again"]["deleted"] is True
    with get_deploy_client(target_uri) as client:
        assert client.list_endpoints() == []
        assert {"blue", "green"}.isdisjoint(d["name"] for d in client.list_deployments())

    flow_run_id = state.state_details.flow_run_id
    keys = {artifact.key for artifact in flow_artifacts(flow_run_id)}
    assert {"deployflow-endpoint-front", "deployflow-deployment-blue", "deployflow-deployment-green"} <= keys
    assert read_events("deployflow.endpoint.ready", resource_id="deployflow.endpoint.front")


def test_an_endpoint_with_a_different_config_is_not_adopted(target_uri, cleanup):
    cleanup("solo")
    with get_deploy_client(target_uri) as client:
        client.create_deployment("solo", model_ref("add_one"))
        client.create_endpoint("solo-front", {"routes": [{"deployment": "solo", "traffic": 100}]})

    @flow
    def recreate():
        try:
            return create_endpoint.with_options(retry_delay_seconds=0)(
                target_uri, "solo-front", {"routes": [{"deployment": "solo", "traffic": 50},
                                                      {"deployment": "solo", "traffic": 50}]}
            )
        finally:
            delete_endpoint(target_uri, "solo-front")

    state = recreate(return_state=True)

    with pytest.raises(Exception, match="different config"):
        state.result()


def test_get_deployment_of_a_missing_deployment_fails_at_once(target_uri):
    @flow
    def look():
        return get_deployment.with_options(retry_delay_seconds=0)(target_uri, "nobody-home")

    with pytest.raises(NotFoundError):
        look()
