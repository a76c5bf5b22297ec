"""Arrow bodies (batch scoring's fast path to deployflow's servers) give the model the frame JSON gives it.

:mod:`deployflow.arrow_chunks` promises that for every chunk it agrees to carry, the server rebuilds the
same frame (values, dtypes, column index) as from the JSON body of that chunk, and that it refuses the
chunks it cannot carry that way. Random frames over the dtypes batch jobs hold check the first promise;
the second is checked dtype by dtype. Served models are compared in ``tests/test_model_zoo.py``.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import pandas as pd
import pytest
from deployflow import batch_predict, get_deploy_client
from deployflow.arrow_chunks import CONTENT_TYPE_ARROW, decode_frame, encode_frame
from deployflow.errors import InvalidInputError
from deployflow.payloads import (
    UnsupportedMediaTypeError,
    check_content_type,
    decode_request,
    encode_request,
)
from support.json_only_server import JsonOnlyServer
from support.local_models import local_client, local_home

pa = pytest.importorskip("pyarrow")


def through_json(frame: pd.DataFrame) -> pd.DataFrame:
    body, content_type = encode_request(frame)
    return decode_request(body, content_type).data


def through_arrow(frame: pd.DataFrame) -> pd.DataFrame:
    body = encode_frame(frame)
    assert body is not None, frame.dtypes
    decoded = decode_request(body, CONTENT_TYPE_ARROW)
    assert decoded.params is None
    return decoded.data


def assert_same_frame(left: pd.DataFrame, right: pd.DataFrame) -> None:
    pd.testing.assert_frame_equal(left, right, check_dtype=True, check_column_type=True, check_index_type=True)


def random_column(rng: np.random.Generator, kind: str, rows: int) -> Any:
    if kind == "float":
        values = rng.normal(size=rows) * 10.0 ** rng.integers(-300, 300)
        values[rng.random(rows) < 0.2] = np.nan
        values[rng.random(rows) < 0.1] = np.inf
        values[rng.random(rows) < 0.1] = -np.inf
        values[rng.random(rows) < 0.1] = -0.0
        return values
    if kind == "whole-float":  # integral values in a float column stay floats
        return rng.integers(-5, 5, rows).astype("float64")
    if kind == "all-nan":
        return np.full(rows, np.nan)
    if kind == "int64":
        values = rng.integers(-(2**62), 2**62, rows)
        values[0] = np.iinfo(np.int64).max if rows else 0
        return values
    if kind == "int32":
        return rng.integers(-1000, 1000, rows).astype("int32")
    if kind == "uint16":
        return rng.integers(0, 60000, rows).astype("uint16")
    if kind == "bool":
        return rng.random(rows) < 0.5
    if kind == "text":
        values = np.array([rng.choice(["a", "", "naïve", "x y", "0", "null", "1.5"]) for _ in range(rows)], dtype=object)
        values[rng.random(rows) < 0.2] = None
        values[rng.random(rows) < 0.1] = np.nan
        return values
    if kind == "all-missing-text":
        return np.array([None] * rows, dtype=object)
    if kind == "string-dtype":  # pandas' nullable string dtype: pd.NA for missing values
        return pd.array(random_column(rng, "text", rows), dtype="string")
    raise AssertionError(kind)


KINDS = ["float", "whole-float", "all-nan", "int64", "int32", "uint16", "bool", "text", "all-missing-text", "string-dtype"]


@pytest.mark.parametrize("seed", range(60))
def test_random_frames_arrive_as_json_would_build_them(seed):
    rng = np.random.default_rng(seed)
    rows = int(rng.choice([1, 2, 7, 64, 513]))
    width = int(rng.integers(1, 6))
    kinds = [str(rng.choice(KINDS)) for _ in range(width)]
    if seed < len(KINDS):  # each kind alone (a uniform frame, which JSON reads as one array) at least once
        kinds = [KINDS[seed]] * width
    frame = pd.DataFrame({f"c{i}_{kind}": random_column(rng, kind, rows) for i, kind in enumerate(kinds)})
    assert_same_frame(through_arrow(frame), through_json(frame))


def test_a_frame_of_one_float_column_per_value_kind():
    frame = pd.DataFrame({"x": [1.5, np.nan, np.inf, -np.inf, -0.0, 5.0, 1e308, 5e-324]})
    arrived = through_arrow(frame)
    assert_same_frame(arrived, through_json(frame))
    assert arrived["x"].isna().tolist() == [False, True, True, True, False, False, False, False]  # infinities: null


@pytest.mark.parametrize(
    "column",
    [
        pytest.param(np.arange(3, dtype="float32"), id="float32"),
        pytest.param(pd.array([1, None, 3], dtype="Int64"), id="nullable-int"),
        pytest.param(pd.array([True, None, False], dtype="boolean"), id="nullable-bool"),
        pytest.param(pd.Categorical(["a", "b", "a"]), id="category"),
        pytest.param(pd.date_range("2024-01-01", periods=3), id="datetime"),
        pytest.param(np.array([b"a", b"b", b"c"], dtype=object), id="bytes"),
        pytest.param(np.array(["a", 1, 2.5], dtype=object), id="mixed-objects"),
        pytest.param(np.array([True, None, False], dtype=object), id="booleans-with-missing"),
        pytest.param(np.array([2**64 - 1, 0, 1], dtype="uint64"), id="uint64-beyond-int64"),
        pytest.param(np.array([1 + 2j, 0, 1]), id="complex"),
    ],
)
def test_chunks_arrow_cannot_carry_as_json_would_go_as_json(column):
    assert encode_frame(pd.DataFrame({"x": column})) is None


@pytest.mark.parametrize(
    "frame",
    [
        pytest.param(pd.DataFrame({"x": []}, dtype="float64"), id="no-rows"),
        pytest.param(pd.DataFrame(index=range(3)), id="no-columns"),
        pytest.param(pd.DataFrame({0: [1.0], 1: [2.0]}), id="number-names"),
        pytest.param(pd.DataFrame([[1.0, 2.0]], columns=["x", "x"]), id="repeated-names"),
        pytest.param(pd.DataFrame({"x": [1.0, 2.0]}, index=[5, 6]), id="index-with-information"),
    ],
)
def test_frames_arrow_cannot_carry_as_json_would_go_as_json(frame):
    assert encode_frame(frame) is None


def test_a_server_reads_arrow_only_as_its_own_type_and_refuses_what_batch_never_sends():
    assert check_content_type("application/vnd.apache.arrow.stream") == CONTENT_TYPE_ARROW
    with pytest.raises(UnsupportedMediaTypeError):
        check_content_type("application/vnd.apache.arrow.stream; charset=latin-1")
    with pytest.raises(InvalidInputError, match="not an Arrow IPC stream") as caught:
        decode_frame(b'{"dataframe_split": {}}')
    assert caught.value.status_code == 400 and caught.value.error_code == "BAD_REQUEST"
    table = pa.table({"when": pa.array([0, 1], type=pa.timestamp("s"))})
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    with pytest.raises(InvalidInputError, match="'when'.*timestamp.*as JSON"):
        decode_frame(sink.getvalue().to_pybytes())


def test_a_model_may_write_to_the_frame_it_receives():
    arrived = through_arrow(pd.DataFrame({"x": [1.0, 2.0], "n": [1, 2]}))
    arrived["x"] *= 2  # Arrow's own buffers are read-only: the frame must not be built on them
    arrived.iloc[0, 1] = 7
    assert arrived["x"].tolist() == [2.0, 4.0] and arrived["n"].tolist() == [7, 2]


# --------------------------------------------------------------------------------------------------
# Batch scoring chooses the body


@pytest.fixture
def server_without_arrow():
    with JsonOnlyServer() as server:
        yield server


def test_a_route_to_a_server_that_answers_415_to_arrow_goes_on_in_json(server_without_arrow):
    client = get_deploy_client(f"serving+http://127.0.0.1:{server_without_arrow.server_address[1]}")
    plain = client.batch_http_route()
    assert plain is not None and plain.arrow is False  # a remote MLflow server is sent JSON
    client.batch_http_route = lambda **target: dataclasses.replace(plain, arrow=True)  # a route that claims Arrow
    frame = pd.DataFrame({"a": np.arange(100.0), "b": np.ones(100)})
    scored = batch_predict(client, frame, chunk_size=10, concurrency=1)
    assert scored["prediction"].tolist() == (frame["a"] + 1).tolist()
    seen = [content_type for content_type, _ in server_without_arrow.requests]
    # The chunks already under way when the first 415 came back (at most 2 * concurrency) went as
    # Arrow; every chunk was then answered once, as JSON, and nothing after them was sent as Arrow.
    assert seen[0] == CONTENT_TYPE_ARROW and 1 <= seen.count(CONTENT_TYPE_ARROW) <= 2
    assert seen.count("application/json") == 10 and len(seen) == 10 + seen.count(CONTENT_TYPE_ARROW)


def test_batch_scoring_sends_a_local_server_arrow_and_gets_the_json_answers(tmp_path):
    (tmp_path / "model.py").write_text(
        "def score(frame):\n"
        "    assert frame.dtypes.astype(str).tolist()[:3] == ['float64', 'int64', 'bool'], frame.dtypes\n"
        "    return (frame['x'].fillna(-1) * frame['n'] + frame['flag'] + frame['name'].str.len().fillna(0)).to_numpy()\n"
    )
    frame = pd.DataFrame(
        {
            "x": np.where(np.arange(500) % 7 == 0, np.nan, np.arange(500) / 3),
            "n": np.arange(500) % 5,
            "flag": np.arange(500) % 2 == 0,
            "name": np.array([None if i % 11 == 0 else "ab"[: i % 3] for i in range(500)], dtype=object),
        }
    )
    with local_home(tmp_path / "state") as home, local_client(home) as client:
        client.create_deployment("arrow", f"python:{tmp_path / 'model.py'}:score")
        route = client.batch_http_route("arrow")
        assert route.arrow is True
        assert encode_frame(frame.iloc[:100]) is not None  # these chunks go as Arrow
        scored = batch_predict(client, frame, deployment_name="arrow", chunk_size=100)
        answered = client.predict("arrow", frame)["predictions"]  # one JSON request
        np.testing.assert_array_equal(scored["prediction"].to_numpy(), np.asarray(answered))
        client.delete_deployment("arrow")


@pytest.mark.parametrize("seed", range(20))
def test_a_slice_with_its_own_index_is_encoded_as_the_same_rows_with_a_fresh_one(seed):
    # Batch scoring encodes a chunk of the input as it is (ignore_index=True), not a copy reset to 0..n-1.
    rng = np.random.default_rng(1000 + seed)
    kinds = [str(rng.choice(KINDS)) for _ in range(int(rng.integers(1, 5)))]
    if seed < 4:  # uniform frames (one block, encoded from one matrix) of each numpy kind
        kinds = [["float", "int64", "bool", "uint16"][seed]] * 3
    frame = pd.DataFrame({f"c{i}_{kind}": random_column(rng, kind, 300) for i, kind in enumerate(kinds)})
    frame.index = rng.permutation(300) * 7 + 11
    part = frame.iloc[40:257]
    body = encode_frame(part, ignore_index=True)
    assert body is not None and body == encode_frame(part.reset_index(drop=True))
    assert encode_frame(part) is None  # an index with information is refused unless told to leave it out
    assert_same_frame(decode_request(body, CONTENT_TYPE_ARROW).data, through_json(part.reset_index(drop=True)))


@pytest.mark.parametrize("seed", range(10))
def test_the_stream_is_what_pyarrows_stream_writer_writes(seed):
    # encode_frame joins the schema's message (made once per schema), the batch's and the end marker.
    rng = np.random.default_rng(2000 + seed)
    kinds = [str(rng.choice(KINDS)) for _ in range(int(rng.integers(1, 5)))]
    frame = pd.DataFrame({f"c{i}_{kind}": random_column(rng, kind, 97) for i, kind in enumerate(kinds)})
    body = encode_frame(frame)
    assert body is not None
    batch = pa.ipc.open_stream(body).read_next_batch()
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, batch.schema) as writer:
        writer.write_batch(batch)
    assert sink.getvalue().to_pybytes() == body


def test_frames_that_share_or_change_a_column_index_are_encoded_by_their_own_names():
    # encode_frame remembers the last column index it listed: a new index (renamed columns) is listed again.
    first = pd.DataFrame({"a": [1.0, 2.0], "b": [3.0, 4.0]})
    shared = first.iloc[1:]  # a chunk of it, as batch scoring cuts them: the same names
    assert_same_frame(through_arrow(first), through_json(first))
    body = encode_frame(shared, ignore_index=True)
    assert_same_frame(decode_request(body, CONTENT_TYPE_ARROW).data, through_json(shared.reset_index(drop=True)))
    renamed = first.rename(columns={"a": "z"})
    assert_same_frame(through_arrow(renamed), through_json(renamed))
    assert list(through_arrow(renamed).columns) == ["z", "b"]
    numbered = first.set_axis([0, 1], axis=1)
    assert encode_frame(numbered) is None  # not string names: JSON's
    repeated = first.set_axis(["a", "a"], axis=1)
    assert encode_frame(repeated) is None
    assert_same_frame(through_arrow(first), through_json(first))
