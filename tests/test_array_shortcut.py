"""The array shortcut gives the answers sklearn gives the frame (deployflow.targets.local.array_shortcut).

Realistic frames (as the scoring server decodes them: floats with NaN, integer columns, one row, a
different column order, an extra column) are scored through the shortcut and by the model itself; the
answers must be equal, bit for bit. Models with a part that selects columns by name, sees the frame
as given, or returns pandas must not take the shortcut at all.
"""

from __future__ import annotations

import functools
import json
import warnings

import numpy as np
import pandas as pd
import pytest
from deployflow.payloads import decode_request
from deployflow.targets.local.array_shortcut import array_shortcut, takes_array_shortcut
from support.model_zoo import Doubling

COLUMNS = ["a", "b", "c"]


def training_frame(rows: int = 60) -> tuple[pd.DataFrame, np.ndarray]:
    rng = np.random.default_rng(11)
    frame = pd.DataFrame(rng.normal(size=(rows, 3)).round(3), columns=COLUMNS)
    target = (frame["a"] - frame["b"] > 0).astype(int).to_numpy()
    return frame, target


def decoded(rows: list[list[object]], columns: list[str] = COLUMNS) -> pd.DataFrame:
    body = json.dumps({"dataframe_split": {"columns": columns, "data": rows}}).encode()
    return decode_request(body, "application/json").data


REQUESTS = {
    "floats": [[0.5, -1.25, 2.0], [1.5, 0.25, -0.75], [-2.0, 3.5, 0.0]],
    "floats with NaN": [[None, -1.25, 2.0], [1.5, None, -0.75], [-2.0, 3.5, 0.0]],
    "integers": [[1, -2, 3], [0, 4, -1]],
    "one row": [[0.1, 0.2, 0.3]],
}


@functools.lru_cache(maxsize=1)
def models() -> dict[str, object]:
    from sklearn.ensemble import HistGradientBoostingClassifier, RandomForestClassifier
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression
    from sklearn.neighbors import KNeighborsClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import FunctionTransformer, StandardScaler

    frame, target = training_frame()
    return {
        "logistic (names)": LogisticRegression().fit(frame, target),
        "logistic (array)": LogisticRegression().fit(frame.to_numpy(), target),
        "forest": RandomForestClassifier(n_estimators=5, random_state=0).fit(frame, target),
        "hist gradient boosting": HistGradientBoostingClassifier(max_iter=5).fit(frame, target),
        "imputed pipeline": make_pipeline(SimpleImputer(), StandardScaler(), LogisticRegression()).fit(frame, target),
        "validated function": make_pipeline(SimpleImputer(), FunctionTransformer(np.abs, validate=True),
                                            KNeighborsClassifier(3)).fit(frame, target),
    }


@pytest.mark.parametrize("name", list(models()))
@pytest.mark.parametrize("request_name", list(REQUESTS))
def test_the_shortcut_answers_as_sklearn_does(name, request_name):
    model = models()[name]
    predict = array_shortcut(model, model.predict)
    assert takes_array_shortcut(predict)
    rows = REQUESTS[request_name]
    frame = decoded(rows)
    if "NaN" in request_name and name in ("logistic (names)", "logistic (array)"):
        # Logistic regression refuses NaN: the shortcut must refuse it the same way sklearn does.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with pytest.raises(ValueError, match="NaN") as by_sklearn:
                model.predict(frame)
            with pytest.raises(ValueError, match="NaN") as by_shortcut:
                predict(frame)
        assert str(by_shortcut.value) == str(by_sklearn.value)
        return
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the array-fitted model warns about the frame's names in-process
        expected = model.predict(frame)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # and the shortcut shows no "feature names" warning of its own
        np.testing.assert_array_equal(predict(frame), expected)
    if hasattr(model, "predict_proba"):
        proba = array_shortcut(model, model.predict_proba)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            np.testing.assert_array_equal(proba(frame), model.predict_proba(frame))


def test_frames_that_do_not_qualify_go_to_sklearn_unchanged():
    model = models()["logistic (names)"]
    predict = array_shortcut(model, model.predict)
    reordered = decoded(REQUESTS["floats"], ["b", "a", "c"])
    with pytest.raises(ValueError, match="same order"):
        predict(reordered)  # sklearn's own refusal, not an array scored in the wrong order
    extra = decoded([[0.5, -1.25, 2.0, 9.0]], COLUMNS + ["d"])
    with pytest.raises(ValueError, match="unseen at fit time"):
        predict(extra)
    mixed = decoded([[0.5, 1, 2.0]])  # int and float columns: sklearn converts them itself
    assert mixed.dtypes.tolist() == [np.float64, np.int64, np.float64]
    np.testing.assert_array_equal(predict(mixed), model.predict(mixed))
    nullable = decoded(REQUESTS["floats"]).assign(b=pd.array([1, 2, None], dtype="Int64"))
    with pytest.raises(ValueError):
        model.predict(nullable)  # NaN after conversion: logistic regression refuses, both ways
    with pytest.raises(ValueError):
        predict(nullable)


@functools.lru_cache(maxsize=1)
def refusals() -> dict[str, object]:
    from sklearn.compose import ColumnTransformer, make_column_selector
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import GridSearchCV
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import FunctionTransformer, StandardScaler

    frame, target = training_frame()
    by_name = ColumnTransformer([("scaled", StandardScaler(), ["c", "a"])])
    by_dtype = ColumnTransformer([("scaled", StandardScaler(), make_column_selector(dtype_include="number"))])
    pandas_out = make_pipeline(StandardScaler(), LogisticRegression()).set_output(transform="pandas")
    categories = frame.assign(c=pd.Categorical(np.where(frame["c"] > 0, "up", "down")))
    searched = GridSearchCV(make_pipeline(by_name, LogisticRegression()), {"logisticregression__C": [1.0]}, cv=2)
    return {
        "column transformer": make_pipeline(by_name, LogisticRegression()).fit(frame, target),
        "column selector": make_pipeline(by_dtype, LogisticRegression()).fit(frame, target),
        "function without validation": make_pipeline(FunctionTransformer(np.abs), LogisticRegression()).fit(frame, target),
        "outside sklearn": make_pipeline(Doubling(), LogisticRegression()).fit(frame.to_numpy(), target),
        "pandas output": pandas_out.fit(frame, target),
        "categorical from dtype": HistGradientBoostingClassifier(max_iter=3, categorical_features="from_dtype")
        .fit(categories, target),
        "fitted search over names": searched.fit(frame, target),
    }


@pytest.mark.parametrize("name", list(refusals()))
def test_models_that_see_names_dtypes_or_the_frame_keep_the_frame(name):
    model = refusals()[name]
    predict = array_shortcut(model, model.predict)
    assert predict == model.predict and not takes_array_shortcut(predict)  # bound methods compare equal
