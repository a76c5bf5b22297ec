"""What a model returns comes back from the tasks as the model returned it; only messages and metadata
(errors, logs, artifacts' text, options) are masked.

The model answers text that looks like a credential (``password: hunter22``), the shape deployflow's
redaction masks in messages. Masking it in a prediction would change the model's data.
"""

from __future__ import annotations

import pandas as pd
from prefect import flow

from deployflow import read_output
from deployflow.integrations.prefect import batch_predict, create_deployment, delete_deployment, predict
from prefect_models import REPLY
from prefect_support import flow_artifacts, flow_logs, model_ref

NAME = "text-reply"
CREDENTIAL_TEXT = "password: hunter22"


@flow
def score_text(target: str, data: str, output: str) -> dict:
    create_deployment(target, NAME, model_ref("text_reply"))
    try:
        scored = predict(target, NAME, {"inputs": [[1.0], [2.0]]})
        summary = batch_predict(target, data, output, deployment_name=NAME, chunk_size=2, progress_interval=0)
        refused = predict.with_options(retries=0)(
            target, NAME, {"inputs": [[1.0]], "params": {"raise": f"bad request, {CREDENTIAL_TEXT} was refused"}},
            return_state=True,
        )
    finally:
        delete_deployment(target, NAME)
    return {"scored": scored, "summary": summary, "refused": refused.message}


def test_predictions_come_back_unmasked_while_messages_stay_masked(target_uri, tmp_path):
    data = tmp_path / "rows.csv"
    pd.DataFrame({"a": [1.0, 2.0, 3.0]}).to_csv(data, index=False)
    output = tmp_path / "scores.csv"

    state = score_text(target_uri, str(data), str(output), return_state=True)

    assert state.is_completed(), state.message
    result = state.result()
    # The model's data, exactly.
    assert result["scored"] == {"predictions": [REPLY, REPLY]}
    assert read_output(output)["prediction"].tolist() == [REPLY] * 3
    assert result["summary"]["rows"] == 3
    # Messages about the run are still masked: the failed task's state and the run's logs.
    assert "bad request, password: *** was refused" in result["refused"]
    logs = "\n".join(flow_logs(state.state_details.flow_run_id))
    assert "password: ***" in logs and CREDENTIAL_TEXT not in logs
    artifacts = "\n".join(f"{a.data} {a.description}" for a in flow_artifacts(state.state_details.flow_run_id))
    assert CREDENTIAL_TEXT not in artifacts


def test_predict_returns_the_models_answer_outside_a_flow_too(target_uri, cleanup):
    cleanup(NAME + "-fn")
    create_deployment.fn(target_uri, NAME + "-fn", model_ref("text_reply"))
    assert predict.fn(target_uri, NAME + "-fn", {"inputs": [[1.0]]}) == {"predictions": [REPLY]}
