"""A model's output reaches XCom unchanged, while the connection's token stays out of XCom and logs.

The model answers text that reads like a credential (``password: hunter22``): deployflow masks that
shape in messages, but a prediction is the model's data and must arrive as the model gave it.
"""

from __future__ import annotations

import json

import airflow_support as support
from airflow_support import run_dag


def test_predictions_in_xcom_are_the_models_answer():
    run, output = run_dag(support.suite_dag("deployflow_test_payloads"))
    states = {task_id: ti.state for task_id, ti in support.task_instances(run).items()}
    assert run.state == "success", (states, output[-5000:])

    reply = "Set password: hunter22 now"
    result = support.return_value(run, "predict")
    assert result["predictions"] == [reply, reply]
    assert result["num_predictions"] == 2

    assert support.TOKEN not in output
    assert support.TOKEN not in json.dumps(list(support.xcoms(run).items()), default=str)
