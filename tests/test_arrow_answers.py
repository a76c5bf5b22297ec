"""Arrow answers (the local server's, when batch scoring asks) give batch scoring the predictions JSON gives it.

:mod:`deployflow.arrow_chunks` promises that whatever model output :func:`encode_predictions` agrees to
carry, :func:`decode_predictions` reads the predictions batch scoring reads from the JSON answer of the
same output (values, NaN and infinities, dtypes, column names, index), and that every other output is
left to JSON. Checked here on model outputs of each shape and dtype, in-process and from a real server
(which answers JSON to a request that does not ask for Arrow, and when Arrow cannot carry the output),
and end to end through ``batch_predict``, through an endpoint's router too. The models of the model zoo
are compared in ``tests/test_model_zoo.py`` (its Arrow answer tests).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import pandas as pd
import pytest
import requests
from deployflow import batch_predict
from deployflow.arrow_chunks import (
    CONTENT_TYPE_ARROW,
    accepts_arrow,
    decode_predictions,
    encode_predictions,
)
from deployflow.batch._runner import parse_predictions
from deployflow.errors import RemoteError
from deployflow.payloads import decode_response, encode_response
from support.answer_shapes import ROWS, outputs
from support.json_only_server import JsonOnlyServer
from support.local_models import local_client, local_home

pa = pytest.importorskip("pyarrow")

ACCEPT = f"{CONTENT_TYPE_ARROW}, application/json"


#: The outputs Arrow carries (the rest are JSON's: encode_predictions' docstring lists why).
ARROW_OUTPUTS = {
    "float64", "float64-all-nan", "float64-strided", "int64", "int32", "int8", "uint8", "uint64", "bool",
    "matrix-float64", "matrix-int64", "matrix-bool", "frame-numbers", "frame-one-column",
}


def through_json(output: Any, rows: int = ROWS) -> Any:
    """What batch scoring makes of the JSON answer for ``output``."""
    return parse_predictions(decode_response(encode_response(output)), rows, "prediction")


def assert_same_predictions(left: Any, right: Any) -> None:
    assert type(left) is type(right)
    if isinstance(left, np.ndarray):
        assert left.dtype == right.dtype and left.shape == right.shape
        np.testing.assert_array_equal(left, right)  # NaN equals NaN here, positions included
        assert np.array_equal(np.signbit(left), np.signbit(right)) if left.dtype.kind == "f" else True
    else:
        pd.testing.assert_frame_equal(left, right, check_dtype=True, check_column_type=True, check_index_type=True,
                                      check_exact=True)


@pytest.mark.parametrize("name", sorted(outputs()))
def test_an_arrow_answer_holds_what_the_json_answer_holds(name):
    output = outputs()[name]
    body = encode_predictions(output)
    assert (body is not None) == (name in ARROW_OUTPUTS)
    if body is None:
        return
    decoded = decode_predictions(body, "prediction")
    assert_same_predictions(decoded, through_json(output))
    if isinstance(decoded, np.ndarray):
        decoded[0] = decoded[-1]  # the caller's to change (Arrow's own buffers are read-only)
    else:
        decoded.iloc[0, 0] = decoded.iloc[-1, 0]


def test_random_numeric_outputs_agree_to_the_last_bit():
    rng = np.random.default_rng(11)
    for _ in range(200):
        rows = int(rng.integers(1, 40))
        values = rng.normal(size=rows) * 10.0 ** rng.integers(-300, 300, rows)
        values[rng.random(rows) < 0.2] = np.nan
        values[rng.random(rows) < 0.1] = rng.choice([np.inf, -np.inf, -0.0])
        shaped: Any = [values, np.stack([values, values[::-1]], axis=1),
                       pd.DataFrame({"p": values, "k": rng.integers(-5, 5, rows), "b": values > 0})]
        for output in shaped:
            assert_same_predictions(decode_predictions(encode_predictions(output), "prediction"), through_json(output, rows))


@pytest.mark.parametrize(
    ("accept", "arrow"),
    [
        (ACCEPT, True),
        (CONTENT_TYPE_ARROW, True),
        ("Application/Vnd.Apache.Arrow.Stream; q=0.5", True),
        ("application/json, application/vnd.apache.arrow.stream", True),
        (f"{CONTENT_TYPE_ARROW};q=0", False),
        (f"{CONTENT_TYPE_ARROW};q=zero", False),
        ("application/json", False),
        ("*/*", False),
        ("", False),
        (None, False),
    ],
)
def test_which_accept_headers_ask_for_arrow(accept, arrow):
    assert accepts_arrow(accept) is arrow
    if accept is not None:
        assert accepts_arrow(accept.encode("latin-1")) is arrow


def test_a_body_that_is_not_an_arrow_answer_is_a_remote_error():
    with pytest.raises(RemoteError, match="cannot be read"):
        decode_predictions(b'{"predictions": [1.0]}', "prediction")
    # An Arrow stream of another kind (a request body, say) has no predictions shape
    table = pa.table({"a": [1.0]})
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    with pytest.raises(RemoteError, match="known shape"):
        decode_predictions(sink.getvalue().to_pybytes(), "prediction")


# -- from a real server ----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def served(tmp_path_factory):
    home = tmp_path_factory.mktemp("arrow-answers")
    with local_home(home), local_client(home) as client:
        client.create_deployment("shaped", "python:support.answer_shapes:shaped")
        client.create_endpoint("front", config={"routes": [{"deployment": "shaped", "traffic": 100}]})
        yield client


def case_frame(name: str, rows: int = ROWS) -> pd.DataFrame:
    return pd.DataFrame({"case": [name] * rows, "x": np.arange(rows, dtype="float64")})


def post(url: str, name: str, accept: str | None) -> requests.Response:
    from deployflow.arrow_chunks import encode_frame

    headers = {"Content-Type": CONTENT_TYPE_ARROW, **({"Accept": accept} if accept else {})}
    answer = requests.post(f"{url}/invocations", data=encode_frame(case_frame(name)), headers=headers, timeout=30)
    answer.raise_for_status()
    return answer


@pytest.mark.parametrize("name", sorted(outputs()))
def test_the_server_answers_arrow_only_when_asked_and_when_arrow_carries_the_output(served, name):
    url = served.get_deployment("shaped")["url"]
    plain = post(url, name, None)
    assert plain.headers["Content-Type"] == "application/json"
    asked = post(url, name, ACCEPT)
    if name not in ARROW_OUTPUTS:  # JSON, byte for byte the answer of a request that did not ask
        assert asked.headers["Content-Type"] == "application/json"
        assert asked.content == plain.content
        return
    assert asked.headers["Content-Type"] == CONTENT_TYPE_ARROW
    assert_same_predictions(decode_predictions(asked.content, "prediction"),
                            parse_predictions(decode_response(plain.content), ROWS, "prediction"))


def test_the_router_passes_the_arrow_answer_through(served):
    url = served.get_endpoint("front")["url"]
    asked = post(url, "matrix-float64", ACCEPT)
    assert asked.headers["Content-Type"] == CONTENT_TYPE_ARROW
    plain = post(url, "matrix-float64", None)
    assert plain.headers["Content-Type"] == "application/json"
    assert_same_predictions(decode_predictions(asked.content, "prediction"),
                            parse_predictions(decode_response(plain.content), ROWS, "prediction"))


def json_answers(client: Any) -> Any:
    """``client`` as batch scoring sees a server that does not read Arrow: JSON bodies, no Accept."""
    import copy

    twin = copy.copy(client)
    route_of = client.batch_http_route
    twin.batch_http_route = lambda **target: dataclasses.replace(route_of(**target), arrow=False)
    return twin


#: Outputs batch scoring reads one per row (the others fail the job the same way either way).
BATCH_OUTPUTS = sorted(
    name for name in outputs() if name not in {"none", "scalar", "empty-array", "empty-frame", "tensor-3d"}
)


@pytest.mark.parametrize("target", [{"deployment_name": "shaped"}, {"endpoint": "front"}], ids=["server", "router"])
@pytest.mark.parametrize("name", BATCH_OUTPUTS)
def test_batch_scoring_gets_the_same_rows_from_arrow_and_json_answers(served, name, target):
    rows = 45
    inputs = case_frame(name, rows)
    inputs.index = inputs.index + 100
    with_arrow = batch_predict(served, inputs, chunk_size=ROWS, concurrency=3, feature_columns=["case", "x"], **target)
    with_json = batch_predict(json_answers(served), inputs, chunk_size=ROWS, concurrency=3,
                              feature_columns=["case", "x"], **target)
    pd.testing.assert_frame_equal(with_arrow, with_json, check_dtype=True, check_column_type=True, check_exact=True)
    assert list(with_arrow.index) == list(inputs.index)


# -- who is asked for Arrow ------------------------------------------------------------------------


@pytest.fixture
def json_only_server():
    with JsonOnlyServer() as server:
        yield server


@pytest.mark.parametrize(
    ("route_change", "asked"),
    [({}, False), ({"arrow": True}, True), ({"arrow": True, "decode": decode_response}, False)],
    ids=["json-route", "arrow-route", "arrow-route-with-its-own-decoding"],
)
def test_only_a_route_that_reads_arrow_without_its_own_decoding_is_asked_for_arrow(json_only_server, route_change, asked):
    from deployflow import get_deploy_client

    client = get_deploy_client(f"serving+http://127.0.0.1:{json_only_server.server_address[1]}")
    plain = client.batch_http_route()
    assert plain is not None and plain.arrow is False  # a remote MLflow server: JSON, and not asked
    client.batch_http_route = lambda **target: dataclasses.replace(plain, **route_change)
    frame = pd.DataFrame({"a": np.arange(60.0)})
    scored = batch_predict(client, frame, chunk_size=10, concurrency=2)
    assert scored["prediction"].tolist() == frame["a"].tolist()  # a JSON answer to the Accept header: read
    accepts = {accept for _, accept in json_only_server.requests}
    assert accepts == ({ACCEPT} if asked else {plain.headers.get("Accept")}), accepts  # else: the route's own
