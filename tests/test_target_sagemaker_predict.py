"""Scoring through the sagemaker target: MLflow's payloads over sagemaker-runtime InvokeEndpoint, answers
queued through moto's endpoint-results API, botocore errors translated, boto3's own retries, batch
scoring, and one whole lifecycle against moto as an HTTP server (the real HTTP path of boto3)."""

from __future__ import annotations

import json

import pandas as pd
import pytest

import deployflow
from deployflow import (
    InvalidInputError,
    NotFoundError,
    PredictionsResponse,
    RemoteError,
    RequestTimeoutError,
    TransientError,
    get_deploy_client,
)
from deployflow.retry import operation
from fakes import sagemaker as fakes
from fakes.sagemaker import BASE_CONFIG, FAST, write_model


@pytest.fixture
def fake():
    with fakes.in_process() as running:
        yield running


@pytest.fixture
def deployed(fake, tmp_path):
    """A client and the deployment 'churn' on it."""
    with get_deploy_client("sagemaker:/us-east-1", **FAST) as client:
        client.create_deployment("churn", str(write_model(tmp_path / "model")), config=BASE_CONFIG)
        yield client


def _sent(fake):
    return [json.loads(item["body"]) for item in fake.invocations]


def test_payloads_follow_mlflows_scoring_protocol(deployed, fake):
    fake.queue_answers({"predictions": [0, 1]}, {"predictions": [[0.5]]}, {"predictions": [7]}, {"predictions": [3]})
    frame = pd.DataFrame({"age": [31, 45], "plan": ["basic", "pro"]})

    answers = [
        deployed.predict("churn", frame),
        deployed.predict("churn", {"instances": [[1.0, 2.0]]}),
        deployed.predict(endpoint="churn", inputs=[[1.0, 2.0]], params={"threshold": 0.2}),
        deployed.predict(deployment_name="churn", inputs={"inputs": {"x": [1]}}),
    ]

    assert all(isinstance(answer, PredictionsResponse) for answer in answers)
    assert [answer["predictions"] for answer in answers] == [[0, 1], [[0.5]], [7], [3]]
    assert answers[0].get_predictions().shape == (2, 1)
    assert _sent(fake) == [
        {"dataframe_split": {"columns": ["age", "plan"], "data": [[31, "basic"], [45, "pro"]]}},
        {"instances": [[1.0, 2.0]]},
        {"inputs": [[1.0, 2.0]], "params": {"threshold": 0.2}},
        {"inputs": {"x": [1]}},
    ]


def test_predict_refusals(deployed):
    with pytest.raises(InvalidInputError, match="1-63 letters"):  # a variant name, checked as SageMaker names are
        deployed.predict("not a variant!", [[1]], endpoint="churn")
    with pytest.raises(InvalidInputError, match="needs the deployment"):
        deployed.predict(inputs=[[1]])
    with pytest.raises(InvalidInputError, match="params must be a dict"):
        deployed.predict("churn", [[1]], params=[1])


def test_a_missing_endpoint_is_not_found(deployed):
    with pytest.raises(NotFoundError, match="InvokeEndpoint.*Endpoint nothing-here of account 123456789012 not found"):
        deployed.predict("nothing-here", [[1]])


@pytest.mark.parametrize(
    "fault, error_class, retryable, status",
    [
        (("ThrottlingException", 400, "Rate exceeded"), TransientError, True, 429),
        (("ServiceUnavailable", 503, "busy"), TransientError, True, 503),
        (("InternalFailure", 500, "oops"), TransientError, True, 500),
        (("ValidationError", 400, "1 validation error detected: Value at 'body' failed"), InvalidInputError, False, 400),
        (("ModelError", 424, "Received client error (400)", {"OriginalStatusCode": 400,
          "OriginalMessage": '{"error_code": "BAD_REQUEST", "message": "column plan is missing"}'}),
         InvalidInputError, False, 400),
        (("ModelError", 424, "Received server error (500)", {"OriginalStatusCode": 500, "OriginalMessage": "Traceback"}),
         RemoteError, False, 500),
    ],
)
def test_runtime_errors_are_translated_once(deployed, fake, fault, error_class, retryable, status):
    fake.fail_invocations("churn", fault)

    with pytest.raises(error_class) as caught:
        deployed.predict("churn", [[1.0]])

    error = caught.value
    assert type(error) is error_class and error.retryable is retryable and error.status_code == status
    assert str(error).startswith("SageMaker Runtime InvokeEndpoint (us-east-1)")
    if fault[0] == "ModelError":
        assert fault[3]["OriginalMessage"] in str(error)
    assert fakes.SECRET_KEY not in str(error) + repr(error) and fakes.ACCESS_KEY not in str(error)


def test_boto3s_standard_retries_come_from_max_retries(fake, tmp_path):
    with get_deploy_client("sagemaker:/us-east-1", **{**FAST, "max_retries": 2}) as client:
        client.create_deployment("churn", str(write_model(tmp_path / "m")), config=BASE_CONFIG)
        fake.fail_invocations("churn", ("ThrottlingException", 400, "Rate exceeded"))
        fake.queue_answers({"predictions": [1]})

        assert client.predict("churn", [[1]])["predictions"] == [1]
        assert len(fake.invocations) == 2  # boto3 sent it again: no second loop of deployflow's

        # Inside an operation whose budget has one attempt left, boto3 gets one attempt.
        fake.fail_invocations("churn", ("ThrottlingException", 400, "Rate exceeded"))
        with operation(attempts=1) as budget:
            with pytest.raises(TransientError):
                client.predict("churn", [[2]])
            assert budget.remaining_attempts() == 0
        assert len(fake.invocations) == 3
        config = client._aws.client("sagemaker-runtime", kind="predict").meta.config
        assert config.retries == {"mode": "standard", "total_max_attempts": 3}
        assert config.read_timeout == client.http_settings.predict_timeout


def test_calls_end_by_the_callers_deadline(deployed, fake):
    fake.queue_answers({"predictions": [1]})
    with operation(timeout=2.5):
        assert deployed.predict("churn", [[1]])["predictions"] == [1]
    # 2.5 s were left: the call's read timeout was the next power of two seconds, not predict_timeout.
    assert 4.0 in {key[3] for key in deployed._aws._clients if key[0] == "sagemaker-runtime"}
    sent = len(fake.invocations)
    with operation(timeout=0):
        with pytest.raises(RequestTimeoutError, match="the deadline passed before the call was made"):
            deployed.predict("churn", [[2]])
    assert len(fake.invocations) == sent


def test_timeouts_come_from_the_http_settings(fake):
    client = get_deploy_client("sagemaker:/us-east-1", **FAST, timeout=42, predict_timeout=7, connect_timeout=3)

    control = client._aws.client("sagemaker").meta.config
    scoring = client._aws.client("sagemaker-runtime", kind="predict").meta.config

    assert (control.read_timeout, control.connect_timeout) == (42, 3)
    assert (scoring.read_timeout, scoring.connect_timeout) == (7, 3)
    # Settings boto3 has no use for (it has its own backoff) are accepted, so shared connection extras work.
    assert get_deploy_client("sagemaker:/us-east-1", backoff_factor=0.5, retry_on_timeout=True, **FAST)


def test_batch_predict_scores_every_row_in_order(deployed, fake):
    def score(endpoint, body):
        split = json.loads(body)["dataframe_split"]
        return {"predictions": [sum(row) for row in split["data"]]}

    fake.answer_with(score)
    frame = pd.DataFrame({"a": range(50), "b": range(100, 150)})

    scored = deployflow.batch_predict(deployed, frame, deployment_name="churn", chunk_size=7, concurrency=3, progress=False)

    assert list(scored["prediction"]) == [a + b for a, b in zip(frame["a"], frame["b"])]
    assert len(fake.invocations) == 8


def test_a_whole_lifecycle_over_http_against_a_moto_server(tmp_path):
    with fakes.server() as fake:
        options = {**FAST, "endpoint_url": fake.url}
        with get_deploy_client("sagemaker:/us-east-1", **options) as client:
            fake.script("churn", "Creating", "InService")
            record = client.create_deployment("churn", str(write_model(tmp_path / "v1")), config=BASE_CONFIG)
            assert record["state"] == "READY" and record["url"] == f"{fake.url}/endpoints/churn/invocations"

            fake.plan_update("churn", "Updating", rollback="alarm errors-5xx fired")
            with pytest.raises(deployflow.DeploymentFailedError, match="rolled back.*alarm errors-5xx fired"):
                client.update_deployment("churn", str(write_model(tmp_path / "v2", marker="v2")), config={
                    **BASE_CONFIG, "rollout": {"strategy": "linear", "step_size": "20%", "wait_seconds": 30}})

            fake.queue_answers({"predictions": [0.25]})
            assert client.predict("churn", {"inputs": [[1.0, 2.0]]}) == {"predictions": [0.25]}
            with pytest.raises(NotFoundError):
                client.predict("missing", [[1]])
            assert [row["name"] for row in client.list_deployments()] == ["churn"]
            client.delete_deployment("churn")
            client.delete_deployment("churn")
            assert client.list_deployments() == []
