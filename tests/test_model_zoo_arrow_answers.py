"""The model zoo's served models give batch scoring the same rows through Arrow answers as through JSON.

``batch_predict`` asks a local server for Arrow answers (:mod:`deployflow.arrow_chunks`); the servers of
:mod:`support.model_zoo` (scikit-learn, xgboost, lightgbm; pickles and MLflow model directories) answer
in Arrow where it carries their output exactly and in JSON otherwise (xgboost's float32). Each model's
rows are scored twice, once by a client that asks for Arrow and once by one that does not, and the two
outputs must be equal to the last bit; the ``zoo`` fixture is the model zoo test's own.
"""

from __future__ import annotations

import copy
import dataclasses
from typing import Any

import numpy as np
import pandas as pd
import pytest
import requests
from deployflow import batch_predict
from deployflow.arrow_chunks import CONTENT_TYPE_ARROW, encode_frame
from test_model_zoo import AVAILABLE, CASES, deployment, numpy_typed, zoo  # noqa: F401  (zoo: the fixture)

pytest.importorskip("pyarrow")
pytestmark = pytest.mark.filterwarnings("ignore:X has feature names:UserWarning")


def json_answers(client: Any) -> Any:
    """``client`` as batch scoring sees a server that does not read Arrow: JSON bodies, no Accept."""
    twin = copy.copy(client)
    route_of = client.batch_http_route
    twin.batch_http_route = lambda **target: dataclasses.replace(route_of(**target), arrow=False)
    return twin


@pytest.mark.parametrize(("name", "kind"), CASES)
def test_batch_scoring_reads_the_same_rows_from_arrow_and_json_answers(zoo, name, kind):  # noqa: F811
    client, frame, models, _ = zoo
    inputs = numpy_typed(frame[models[name].columns])
    target = deployment(name, kind)
    with_arrow = batch_predict(client, inputs, deployment_name=target, chunk_size=16, concurrency=2)
    with_json = batch_predict(json_answers(client), inputs, deployment_name=target, chunk_size=16, concurrency=2)
    pd.testing.assert_frame_equal(with_arrow, with_json, check_dtype=True, check_column_type=True, check_exact=True)


def answer_type(client: Any, name: str, inputs: pd.DataFrame) -> str:
    body = encode_frame(inputs.reset_index(drop=True))
    headers = {"Content-Type": CONTENT_TYPE_ARROW, "Accept": f"{CONTENT_TYPE_ARROW}, application/json"}
    answer = requests.post(f"{client.get_deployment(name)['url']}/invocations", data=body, headers=headers, timeout=30)
    answer.raise_for_status()
    return answer.headers["Content-Type"]


def test_the_zoo_answers_in_arrow_but_for_float32_outputs(zoo):  # noqa: F811
    client, frame, models, _ = zoo
    arrow = set()
    for name in AVAILABLE:
        inputs = numpy_typed(frame[models[name].columns])
        if encode_frame(inputs.reset_index(drop=True)) is None:
            continue  # a datetime column goes as JSON; its answer is checked above
        if answer_type(client, name, inputs) == CONTENT_TYPE_ARROW:
            arrow.add(name)
        out = np.asarray(models[name].model.predict(inputs))
        assert (name in arrow) == (out.dtype != np.float32), (name, out.dtype)
    assert len(arrow) >= 3, arrow
