"""Through an endpoint's router, a request gets the answer the deployment gives it directly.

The router relays scoring requests with its own small HTTP relay (:mod:`deployflow.targets.local.relay`)
instead of the project's async edge (:mod:`deployflow.aio`), for speed. This is what allows that: the
same requests, sent with the async edge once to the deployment and once through the router, get the same
status, Content-Type and body, byte for byte, for the bodies callers send (every JSON input form, NaN
and infinities, params, CSV, Arrow chunks, large frames) and for the failures they meet (a malformed
body, an unsupported type, a body over the limit, a model that raises, an answer that cannot be encoded).
"""

from __future__ import annotations

import asyncio

import numpy as np
import pandas as pd
import pytest
from deployflow.aio import AsyncHttpTransport
from deployflow.arrow_chunks import CONTENT_TYPE_ARROW, encode_frame
from deployflow.payloads import encode_request
from support.local_models import local_client, local_home

MODEL = '''
import numpy as np


def score(data, params=None):
    if hasattr(data, "columns") and "boom" in data.columns:
        raise ValueError("the model refuses column boom")
    if hasattr(data, "columns") and "unencodable" in data.columns:
        return [object()]
    values = np.asarray(data, dtype="float64")
    scale = (params or {}).get("scale", 1)
    return {"sum": (values.reshape(len(values), -1).sum(axis=1) * scale).tolist(), "echo": values.tolist()}
'''

LIMIT = 2_000_000


def _cases() -> list[tuple[str, bytes, str]]:
    rng = np.random.default_rng(7)
    frame = pd.DataFrame({"a": rng.normal(size=50), "b": rng.integers(0, 9, 50).astype("float64")})
    frame.loc[[3, 9], "a"] = np.nan
    large = pd.DataFrame(rng.normal(size=(20_000, 4)), columns=list("wxyz"))
    cases = [
        ("split", *encode_request(frame)),
        ("split with NaN and Infinity tokens",
         b'{"dataframe_split": {"columns": ["a"], "data": [[NaN], [Infinity], [-Infinity], [1.5]]}}', "application/json"),
        ("records", *encode_request({"dataframe_records": frame.head(5).astype(object).where(frame.head(5).notna(), None).to_dict("records")})),
        ("tensor", *encode_request(np.arange(12.0).reshape(4, 3))),
        ("instances", b'{"instances": [[1, 2], [3, 4]]}', "application/json"),
        ("params", *encode_request(frame.head(4), params={"scale": 3})),
        ("csv", frame.head(6).to_csv(index=False).encode(), "text/csv"),
        ("arrow", encode_frame(frame), CONTENT_TYPE_ARROW),
        ("large split", *encode_request(large)),
        ("charset", *encode_request(frame.head(2))[:1], "application/json; charset=utf-8"),
        ("malformed JSON", b'{"dataframe_split": ', "application/json"),
        ("two input keys", b'{"inputs": [1], "instances": [1]}', "application/json"),
        ("unsupported type", b"a,b\n1,2\n", "application/xml"),
        ("no rows for arrow", b"not arrow", CONTENT_TYPE_ARROW),
        ("model raises", *encode_request(pd.DataFrame({"boom": [1.0]}))),
        ("cannot be encoded", *encode_request(pd.DataFrame({"unencodable": [1.0]}))),
        ("over the limit", b'{"inputs": [' + b"1," * (LIMIT // 2) + b"1]}", "application/json"),
    ]
    return cases


CASES = _cases()


@pytest.fixture(scope="module")
def endpoint(tmp_path_factory):
    directory = tmp_path_factory.mktemp("relay-equivalence")
    (directory / "model.py").write_text(MODEL)
    with local_home(directory / "state") as home, local_client(home) as client:
        client.create_deployment("direct", f"python:{directory / 'model.py'}:score",
                                 config={"max_request_bytes": LIMIT})
        client.create_endpoint("routed", {"routes": [{"deployment": "direct", "traffic": 100}],
                                          "max_request_bytes": LIMIT})
        yield client.get_deployment("direct")["url"], client.get_endpoint("routed")["url"]


def _answers(urls: tuple[str, ...], body: bytes, content_type: str) -> list[tuple[int, str, bytes]]:
    async def ask() -> list[tuple[int, str, bytes]]:
        async with AsyncHttpTransport() as edge:
            answers = []
            for url in urls:
                answer = await edge.send("POST", f"{url}/invocations", data=body,
                                         headers={"Content-Type": content_type}, idempotent=True)
                answers.append((answer.status, answer.headers.get("Content-Type", ""), answer.content))
            return answers

    return asyncio.run(ask())


@pytest.mark.parametrize(("name", "body", "content_type"), CASES, ids=[case[0] for case in CASES])
def test_the_router_answers_as_the_deployment_does(endpoint, name, body, content_type):
    direct, routed = _answers(endpoint, body, content_type)
    assert routed == direct, name


def test_the_cases_cover_successes_and_every_kind_of_refusal(endpoint):
    statuses = {name: _answers(endpoint[:1], body, content_type)[0][0] for name, body, content_type in CASES}
    assert statuses["split"] == statuses["arrow"] == statuses["large split"] == 200
    assert statuses["split with NaN and Infinity tokens"] == 200
    assert b"NaN" in _answers(endpoint[:1], *CASES[1][1:])[0][2]  # written back as MLflow's tokens
    assert {statuses["malformed JSON"], statuses["model raises"]} == {400}
    assert statuses["unsupported type"] == 415 and statuses["over the limit"] == 413
    assert statuses["cannot be encoded"] == 500
