"""Retries: a retried create adopts instead of duplicating; only retryable errors are retried; task
retries never multiply the transport's retries (requests counted at the server)."""

from __future__ import annotations

import pytest
from prefect import flow

from deployflow import ConflictError, InvalidInputError, TransientError, get_deploy_client
from deployflow.integrations.prefect import create_deployment, predict
from prefect_support import CountingServer, LostAnswerClient, model_ref, registered_target, task_runs_of

ONE_ROW = {"inputs": [[1.0, 2.0]]}


@pytest.fixture
def lost_answer_target():
    with registered_target("lostanswer", LostAnswerClient):
        yield


def _only_task_run(state):
    runs = task_runs_of(state.state_details.flow_run_id)
    assert len(runs) == 1
    return runs[0]


@flow
def deploy(target: str, name: str, model_uri: str, if_exists: str = "adopt"):
    return create_deployment.with_options(retry_delay_seconds=0)(target, name, model_uri, if_exists=if_exists)


@flow
def score(target: str, inputs: dict, retries: int):
    return predict.with_options(retries=retries, retry_delay_seconds=0)(target, "model", inputs)


def test_create_retried_after_a_lost_answer_adopts_the_deployment(target_uri, cleanup, lost_answer_target):
    uri = target_uri.replace("local:", "lostanswer:", 1)
    name = "lost-answer"
    cleanup(name)
    LostAnswerClient.lose_first_answer.add(name)

    state = deploy(uri, name, model_ref("add_one"), return_state=True)

    assert state.is_completed(), state.message
    result = state.result()
    assert result["action"] == "adopted" and result["state"] == "READY"
    assert LostAnswerClient.creates[name] == 1  # the retry did not create a second one
    run = _only_task_run(state)
    assert run.run_count == 2  # the first attempt failed (transient), the retry adopted
    with get_deploy_client(target_uri) as client:
        assert [d["name"] for d in client.list_deployments()].count(name) == 1
        assert client.predict(name, ONE_ROW)["predictions"] == [[2.0, 3.0]]


def test_adopt_refuses_a_different_spec_at_once_and_update_rolls_forward(target_uri, cleanup):
    name = "spec-check"
    cleanup(name)
    with get_deploy_client(target_uri) as client:
        client.create_deployment(name, model_ref("add_one"))

    refused = deploy(target_uri, name, model_ref("linear"), return_state=True)

    assert refused.is_failed()
    with pytest.raises(ConflictError, match="if_exists='update'") as caught:
        refused.result()
    assert "model_uri" in str(caught.value)
    assert _only_task_run(refused).run_count == 1  # a conflict is not retried

    same = deploy(target_uri, name, model_ref("add_one"), return_state=True)
    assert same.result()["action"] == "adopted"

    updated = deploy(target_uri, name, model_ref("linear"), if_exists="update", return_state=True)
    assert updated.result()["action"] == "updated"
    with get_deploy_client(target_uri) as client:
        assert client.get_deployment(name)["model_uri"] == model_ref("linear")

    refused_again = deploy(target_uri, name, model_ref("linear"), if_exists="fail", return_state=True)
    with pytest.raises(ConflictError, match="if_exists=.fail."):
        refused_again.result()


def test_task_retries_do_not_multiply_transport_retries():
    with CountingServer(answers=[503] * 50) as server:
        uri = f"serving+{server.url}"
        # Control: the same server makes a client's transport retry on its own, outside a task.
        with get_deploy_client(uri) as client, pytest.raises(TransientError):
            client.predict("model", ONE_ROW)
        transport_attempts = server.requests
        assert transport_attempts > 1
        server.requests = 0

        state = score(uri, ONE_ROW, retries=2, return_state=True)

        assert state.is_failed()
        with pytest.raises(TransientError):
            state.result()
        assert _only_task_run(state).run_count == 3
        assert server.requests == 3  # one request per task attempt, not 3 x transport_attempts


def test_a_task_retry_recovers_from_transient_errors_with_one_request_per_attempt():
    with CountingServer(answers=[503, 429]) as server:
        state = score(f"serving+{server.url}", ONE_ROW, retries=3, return_state=True)

        assert state.result() == {"predictions": [1]}
        assert server.requests == 3
        assert _only_task_run(state).run_count == 3


def test_invalid_input_fails_at_once_without_retries():
    with CountingServer(answers=[400]) as server:
        state = score(f"serving+{server.url}", ONE_ROW, retries=3, return_state=True)

        with pytest.raises(InvalidInputError, match="column x is missing"):
            state.result()
        assert server.requests == 1
        assert _only_task_run(state).run_count == 1
