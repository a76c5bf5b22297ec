"""Retries: a retried create adopts instead of duplicating; only retryable errors are retried; task
retries never multiply the transport's retries (requests counted at the server).

The budget is the one the Airflow provider is held to as well (``tests/support/retry_budget.py``), by
the rule "Retries in pipeline steps" in :mod:`deployflow.orchestration`.
"""

from __future__ import annotations

import logging

import pandas as pd
import pytest
from prefect import flow

from deployflow import ConflictError, InvalidInputError, TransientError, get_deploy_client
from deployflow.integrations.prefect import DeploymentTarget, batch_predict, create_deployment, predict
from deployflow.integrations.prefect._runtime import open_client
from prefect_support import (
    CountingServer,
    LostAnswerClient,
    flow_log_records,
    model_ref,
    registered_target,
    task_runs_of,
)
from support.retry_budget import (
    CLIENT_MAX_RETRIES_IN_OPTIONS,
    SECRET_TOKEN,
    STEP_RETRIES,
    AlwaysUnavailable,
    expected_attempts,
)

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


#: Words of the WARNING about a ``max_retries`` in the block's options.
IGNORED = f"max_retries={CLIENT_MAX_RETRIES_IN_OPTIONS} set in the block's client options"


def unavailable_block(server: AlwaysUnavailable) -> DeploymentTarget:
    """A block for ``server`` whose options ask for transport retries, with a token beside them."""
    return DeploymentTarget(
        target_uri=server.target_uri,
        auth_token=SECRET_TOKEN,
        client_options={"max_retries": CLIENT_MAX_RETRIES_IN_OPTIONS},
    )


@flow
def score_with_budget(target: DeploymentTarget, inputs: dict):
    return predict.with_options(retries=STEP_RETRIES, retry_delay_seconds=0)(target, "model", inputs)


@pytest.fixture(scope="module")
def budget_run():
    """The predict task run once with ``retries=STEP_RETRIES`` against an always-503 server, through a
    block whose ``client_options`` set ``max_retries``. Yields the server and the flow's final state."""
    with AlwaysUnavailable() as server:
        yield server, score_with_budget(unavailable_block(server), ONE_ROW, return_state=True)


def test_task_retries_do_not_multiply_transport_retries(budget_run):
    server, state = budget_run
    # Control: the same kind of server makes a client's transport retry on its own, outside a task.
    with AlwaysUnavailable() as control:
        with unavailable_block(control).get_client() as client, pytest.raises(TransientError):
            client.predict("model", ONE_ROW)
        assert control.posts == 1 + CLIENT_MAX_RETRIES_IN_OPTIONS

    assert state.is_failed()
    with pytest.raises(TransientError):
        state.result()
    assert _only_task_run(state).run_count == expected_attempts(STEP_RETRIES)  # Prefect did retry
    # One request per task attempt: 1 + retries, not (1 + retries) x (1 + max_retries).
    assert server.posts == expected_attempts(STEP_RETRIES)
    assert server.gets == 0


def test_the_ignored_max_retries_is_logged_once_per_task_run_without_the_token(budget_run):
    _, state = budget_run
    run = _only_task_run(state)
    records = flow_log_records(state.state_details.flow_run_id, run.id)
    warnings = [(level, message) for level, message in records if IGNORED in message]
    # The task run's log holds all its attempts: the warning is there once, at WARNING.
    assert [level for level, _ in warnings] == [logging.WARNING], records
    message = warnings[0][1]
    assert "deployflow.orchestration" in message and "1 + retries" in message
    everything = "\n".join(message for _, message in flow_log_records(state.state_details.flow_run_id))
    assert "503" in everything  # the attempts' logs were read
    assert SECRET_TOKEN not in everything  # the token sat beside max_retries in the same block


def test_no_warning_when_the_options_set_no_max_retries(caplog):
    with AlwaysUnavailable() as server:
        block = DeploymentTarget(target_uri=server.target_uri, client_options={"timeout": 5})
        with (
            caplog.at_level(logging.DEBUG, logger="deployflow.integrations.prefect"),
            open_client(block) as client,
            pytest.raises(TransientError),
        ):
            client.predict("model", ONE_ROW)
        assert server.posts == 1  # outside a run too: the tasks' client sends each request once
    assert "is not used inside deployflow steps" not in caplog.text


def test_a_plugin_without_a_max_retries_option_keeps_its_own_policy(caplog):
    # The test plugin's client takes ``timeout`` and ``token`` only: it is built without max_retries.
    with caplog.at_level(logging.INFO, logger="deployflow.integrations.prefect"):
        client = open_client(DeploymentTarget(target_uri="optionstarget", client_options={"timeout": 3}))
    assert type(client).__name__ == "OptionsClient" and client.timeout == 3
    assert "takes no 'max_retries' option" in caplog.text


@flow
def batch_with_retries(target: DeploymentTarget, source: str, output: str):
    return batch_predict.with_options(retries=STEP_RETRIES, retry_delay_seconds=0)(
        target, source, output, deployment_name="model", max_chunk_retries=1
    )


def test_batch_predict_is_not_retried_each_chunk_has_its_budget(tmp_path):
    source = tmp_path / "input.csv"
    pd.DataFrame({"x": [1.0, 2.0]}).to_csv(source, index=False)
    with AlwaysUnavailable() as server:
        state = batch_with_retries(
            unavailable_block(server), str(source), str(tmp_path / "out.parquet"), return_state=True
        )
        assert state.is_failed()
        with pytest.raises(TransientError):
            state.result()
        assert _only_task_run(state).run_count == 1  # retries=STEP_RETRIES, yet not retried
        assert server.posts == 1 + 1  # one chunk: one request, then its one retry


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
