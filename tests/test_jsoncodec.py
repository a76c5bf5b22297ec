"""The one JSON codec: NaN and the infinities in and out, and its two read and write paths agreeing.

MLflow's side of the protocol is Python's ``json`` module: its scoring server reads requests with it and
writes answers with it, so ``NaN``, ``Infinity`` and ``-Infinity`` appear as bare tokens. deployflow
reads with orjson where it can and must give the same values as Python's ``json`` everywhere.
"""

from __future__ import annotations

import json
import math

import numpy as np
import orjson
import pandas as pd
import pytest

from deployflow import jsoncodec
from deployflow.jsoncodec import dumps, dumps_text, loads

# Answers and requests as services write them: MLflow's scoring server (json.dumps spacing), orjson and
# pandas (compact), with unicode, escapes, exponents, negative zero and deep nesting.
REALISTIC = [
    '{"predictions": [0.1, 0.9, 1e-07, 1.5e+300, -0.0, 3, -12]}',
    '{"predictions":[[0.25,0.75],[0.5,0.5]]}',
    '{"predictions": [{"label": "caf\\u00e9", "score": 0.875, "ok": true, "note": null}]}',
    '{"predictions": {"mean": [1.0, 2.0], "std": [0.0, 0.1]}, "model_version": "3"}',
    '{"dataframe_split": {"columns": ["a", "b"], "data": [[1, "x\\n\\"q\\""], [2.5, "\\ud83d\\ude00"]]}}',
    '{"choices": [{"index": 0, "message": {"role": "assistant", "content": "h\\u00e9llo"}}], "usage": {}}',
    '  [1, 2, 3]  ',
    '"just text"',
    "12345678901234567890",
]


def same(left, right) -> bool:
    """Equality in which NaN equals NaN (Python's json writes both sides the same way then)."""
    return json.dumps(left, sort_keys=True) == json.dumps(right, sort_keys=True)


# -- reading -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("text", REALISTIC)
def test_the_fast_read_path_gives_what_pythons_json_gives(text):
    assert orjson.loads(text) == json.loads(text)  # orjson reads it: the common path
    assert loads(text) == json.loads(text)
    assert loads(text.encode("utf-8")) == json.loads(text)


# The first documents of REALISTIC with non-finite numbers in them: the fallback reads these.
WITH_TOKENS = [
    '{"predictions": [0.1, NaN, 1e-07, 1.5e+300, -0.0, 3, -Infinity]}',
    '{"predictions":[[0.25,Infinity],[0.5,0.5]]}',
    '{"predictions": [{"label": "caf\\u00e9", "score": NaN, "ok": true, "note": null}]}',
    '{"predictions": {"mean": [1.0, 2.0], "std": [NaN, 0.1]}, "model_version": "3"}',
    '{"dataframe_split": {"columns": ["a", "b"], "data": [[NaN, "x\\n\\"q\\""], [2.5, "\\ud83d\\ude00"]]}}',
]


@pytest.mark.parametrize("text", WITH_TOKENS)
def test_the_fallback_read_path_gives_the_same_values(text):
    # Every value other than the tokens comes out exactly as the fast path reads it.
    with pytest.raises(orjson.JSONDecodeError):
        orjson.loads(text)
    assert same(loads(text), json.loads(text))
    assert same(loads(text.encode("utf-8")), json.loads(text))
    assert same(loads(memoryview(text.encode("utf-8"))), json.loads(text))
    finite = text.replace("-Infinity", "-1.0").replace("Infinity", "1.0").replace("NaN", "2.0")
    expected = orjson.loads(finite)  # the fast path on the same document, tokens swapped for numbers
    assert json.dumps(swap_tokens(loads(text))) == json.dumps(expected)


def swap_tokens(value):
    """``value`` with NaN as 2.0, Infinity as 1.0 and -Infinity as -1.0 (undoing the test's swap)."""
    if isinstance(value, float) and not math.isfinite(value):
        return 2.0 if math.isnan(value) else math.copysign(1.0, value)
    if isinstance(value, list):
        return [swap_tokens(item) for item in value]
    if isinstance(value, dict):
        return {key: swap_tokens(item) for key, item in value.items()}
    return value


def test_non_finite_tokens_are_read_as_floats():
    value = loads(b'{"predictions": [NaN, Infinity, -Infinity, 1.5, null]}')["predictions"]
    assert math.isnan(value[0]) and value[1] == math.inf and value[2] == -math.inf
    assert value[3:] == [1.5, None]


def test_what_pythons_json_accepts_loads_accepts():
    for text in (b"[1e400]", b'["\\ud800"]'):
        assert same(loads(text), json.loads(text))


@pytest.mark.parametrize("text", [b"{not json", b"", b"[1, 2", b"nan", b"[NaN", b"{'a': 1}"])
def test_what_is_not_json_is_a_value_error(text):
    with pytest.raises(ValueError):
        loads(text)


# -- writing -------------------------------------------------------------------------------------------


def test_dumps_writes_non_finite_numbers_as_null_by_default():
    assert dumps([math.nan, math.inf, -math.inf, 1.0]) == b"[null,null,null,1.0]"


def test_dumps_with_allow_nan_writes_the_tokens_pythons_json_writes():
    value = {"predictions": [math.nan, math.inf, -math.inf, 0.5, None]}
    assert dumps(value, allow_nan=True) == b'{"predictions":[NaN,Infinity,-Infinity,0.5,null]}'
    assert same(loads(dumps(value, allow_nan=True)), json.loads(json.dumps(value)))


def realistic_predictions() -> list:
    frame = pd.DataFrame(
        {
            "label": ["a", "é", "c"],
            "score": [0.125, np.nan, 1e-07],
            "count": np.array([1, 2, 3], dtype=np.int64),
            "when": pd.to_datetime(["2024-01-01", "2024-01-02 03:04:05.5", "2024-01-03"], format="ISO8601"),
        }
    )
    return [
        np.array([[0.1, np.nan], [np.inf, -np.inf]]),
        np.array([0.5, np.nan], dtype=np.float32),
        np.array([1, 2, 3]),
        frame,
        frame["score"],
        {"probabilities": np.array([0.2, 0.8]), "raw": [np.float64("nan"), np.float32(0.25), np.int64(7)]},
        [1e300, -0.0, 2.5, "text", True],
        np.float64("inf"),
        np.array(np.nan),
        np.array([[1.0, np.nan]])[:, ::-1],  # not contiguous: orjson hands it to the default hook
        np.array([0.5, np.nan], dtype=np.float16),
    ]


@pytest.mark.parametrize("value", realistic_predictions(), ids=lambda value: type(value).__name__)
def test_both_write_paths_format_every_finite_value_alike(value):
    # With allow_nan, only the non-finite numbers differ from the fast path's output: every other
    # byte is the same (the token path is orjson too, with the tokens put where orjson put null).
    fast = dumps(value)
    tokens = dumps(value, allow_nan=True)
    assert b"null" not in tokens  # none of these values holds None, NaT or NA
    assert fast.count(b"null") == tokens.count(b"NaN") + tokens.count(b"Infinity")
    pieces = fast.split(b"null")
    rebuilt = pieces[0]
    remaining = tokens[len(pieces[0]) :]
    for piece in pieces[1:]:
        token = next(t for t in (b"NaN", b"-Infinity", b"Infinity") if remaining.startswith(t))
        rebuilt += token + piece
        remaining = remaining[len(token) + len(piece) :]
    assert rebuilt == tokens


def test_values_without_non_finite_numbers_are_written_once(monkeypatch):
    # The common path costs one orjson call: None alone (null in the output) does not start a rewrite.
    calls = []
    real = orjson.dumps
    monkeypatch.setattr(jsoncodec.orjson, "dumps", lambda *a, **k: calls.append(1) or real(*a, **k))
    assert dumps({"predictions": [1.5, None]}, allow_nan=True) == b'{"predictions":[1.5,null]}'
    assert dumps({"predictions": np.array([1.5, 2.5])}, allow_nan=True) == b'{"predictions":[1.5,2.5]}'
    assert len(calls) == 2


def test_dumps_text_is_pythons_json_dumps_text():
    value = {"predictions": [1, 2.5, None, True, "é", {"k": [math.nan, -math.inf]}], "id": "r1"}
    assert dumps_text(value) == json.dumps(value)
    assert dumps_text({"predictions": np.array([[0.5, np.nan]]), "n": np.int64(3)}) == (
        '{"predictions": [[0.5, NaN]], "n": 3}'
    )
