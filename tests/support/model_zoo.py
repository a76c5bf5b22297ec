"""Small real models and the frame they score, for the model zoo test (tests/test_model_zoo.py).

Every model is fitted here, in the test process, on :func:`zoo_frame` (or on its numbers as a plain
array), pickled, and served by the local target; the test compares the server's answer with
``model.predict`` run here. Everything is tiny so that fitting all of them takes well under a second.

Functions used inside the models (:func:`hour_of_day`) live in this module so that the pickles refer to
``support.model_zoo`` and the servers, which have the tests directory on ``PYTHONPATH``, can load them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import pandas as pd

__all__ = ["Doubling", "ZooModel", "zoo_frame", "zoo_target", "zoo_models", "hour_of_day"]

ROWS = 48


def zoo_frame(rows: int = ROWS, seed: int = 0) -> pd.DataFrame:
    """A frame with the dtypes callers send: floats with NaN, nullable Int64 and boolean with missing
    values, strings, a categorical and datetimes."""
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(
        {
            "num_a": rng.normal(size=rows),
            "num_b": rng.normal(size=rows).round(3),
            "num_c": rng.uniform(-2.0, 2.0, size=rows),
            "count": pd.array(rng.integers(0, 6, rows), dtype="Int64"),
            "small": pd.array(rng.integers(0, 3, rows), dtype="Int64"),  # nullable dtype, no value missing
            "flag": pd.array(rng.integers(0, 2, rows).astype(bool), dtype="boolean"),
            "city": pd.array(rng.choice(["paris", "lima", "oslo"], rows), dtype="string"),
            "color": pd.Categorical(rng.choice(["red", "green", "blue"], rows)),
            "when": pd.date_range("2024-03-01", periods=rows, freq="37min"),
        }
    )
    frame.loc[[2, 11, 30], "num_a"] = np.nan
    frame.loc[[5, 19], "count"] = pd.NA
    frame.loc[[7, 23, 40], "flag"] = pd.NA
    return frame


def zoo_target(frame: pd.DataFrame) -> np.ndarray:
    """A binary target that depends on several columns, so every model has something to learn."""
    score = frame["num_a"].fillna(0.0) + frame["count"].astype("float64").fillna(2.0) / 3
    score = score + frame["flag"].astype("float64").fillna(0.5) - (frame["color"] == "red").astype(float)
    return (score > score.median()).to_numpy().astype(int)


def hour_of_day(columns: pd.DataFrame) -> pd.DataFrame:
    """The hour of each timestamp; accepts datetimes or ISO-8601 strings (what a server receives)."""
    return columns.apply(lambda column: pd.to_datetime(column, format="ISO8601").dt.hour.astype("float64"))


class Doubling:
    """A transformer written outside scikit-learn (it sees its input as given): doubles the values."""

    def fit(self, features: Any, target: Any = None) -> "Doubling":
        self.n_features_in_ = np.shape(features)[1]  # as sklearn's own transformers record it
        return self

    def transform(self, features: Any) -> Any:
        return np.asarray(features, dtype=float) * 2

    def get_params(self, deep: bool = True) -> dict[str, Any]:
        return {}

    def set_params(self, **params: Any) -> "Doubling":
        return self


@dataclass
class ZooModel:
    """One fitted model: its name, the object, and the columns of :func:`zoo_frame` it scores."""

    name: str
    model: Any
    columns: list[str]
    #: Outputs are float32 (compare with a float32 tolerance), else exact.
    float32: bool = False


def _logistic_named(frame: pd.DataFrame, target: np.ndarray) -> ZooModel:
    from sklearn.linear_model import LogisticRegression

    columns = ["num_b", "small"]
    return ZooModel("logistic-named", LogisticRegression().fit(frame[columns], target), columns)


def _logistic_array(frame: pd.DataFrame, target: np.ndarray) -> ZooModel:
    # Fitted on a plain array: no feature names, the one case the server may score as an array (for
    # frames whose columns share one number dtype, as these two float columns do).
    from sklearn.linear_model import LogisticRegression

    columns = ["num_b", "num_c"]
    features = frame[columns].to_numpy(dtype="float64")
    return ZooModel("logistic-array", LogisticRegression().fit(features, target), columns)


def _forest(frame: pd.DataFrame, target: np.ndarray) -> ZooModel:
    from sklearn.ensemble import RandomForestClassifier

    columns = ["num_a", "num_b", "count", "flag"]  # NaN, nullable Int64 and boolean with missing values
    model = RandomForestClassifier(n_estimators=8, max_depth=4, random_state=0).fit(frame[columns], target)
    return ZooModel("forest", model, columns)


def _hist_gradient_boosting(frame: pd.DataFrame, target: np.ndarray) -> ZooModel:
    from sklearn.ensemble import HistGradientBoostingRegressor

    columns = ["num_a", "count", "color"]  # the categorical column is used as one (from its dtype)
    model = HistGradientBoostingRegressor(max_iter=15, categorical_features="from_dtype", random_state=0)
    return ZooModel("hist-gradient-boosting", model.fit(frame[columns], target.astype(float)), columns)


def _pipeline(frame: pd.DataFrame, target: np.ndarray) -> ZooModel:
    from sklearn.compose import ColumnTransformer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import FunctionTransformer, OneHotEncoder, StandardScaler

    columns = ["city", "color", "num_b", "small", "when"]
    by_name = ColumnTransformer(
        [
            ("categories", OneHotEncoder(handle_unknown="ignore"), ["city", "color"]),
            ("numbers", StandardScaler(), ["num_b", "small"]),
            ("hour", FunctionTransformer(hour_of_day), ["when"]),
        ]
    )
    model = make_pipeline(by_name, LogisticRegression()).fit(frame[columns], target)
    return ZooModel("pipeline", model, columns)


def _xgboost(frame: pd.DataFrame, target: np.ndarray) -> ZooModel:
    import xgboost

    columns = ["num_a", "count", "flag", "num_b"]
    model = xgboost.XGBRegressor(n_estimators=6, max_depth=3, tree_method="hist", n_jobs=1)
    return ZooModel("xgboost", model.fit(frame[columns], target.astype(float)), columns, float32=True)


def _lightgbm(frame: pd.DataFrame, target: np.ndarray) -> ZooModel:
    import lightgbm

    columns = ["num_a", "count", "flag", "num_b"]
    model = lightgbm.LGBMClassifier(n_estimators=6, min_child_samples=3, verbose=-1, n_jobs=1)
    return ZooModel("lightgbm", model.fit(frame[columns], target), columns)


def xgboost_with_categories(frame: pd.DataFrame, target: np.ndarray) -> ZooModel:
    """An xgboost model that needs the category dtype itself: the documented limit of JSON input."""
    import xgboost

    columns = ["num_a", "color"]
    model = xgboost.XGBClassifier(n_estimators=4, max_depth=2, tree_method="hist", enable_categorical=True, n_jobs=1)
    return ZooModel("xgboost-categories", model.fit(frame[columns], target), columns)


_BUILDERS: dict[str, tuple[Callable[[pd.DataFrame, np.ndarray], ZooModel], str | None]] = {
    "logistic-named": (_logistic_named, None),
    "logistic-array": (_logistic_array, None),
    "forest": (_forest, None),
    "hist-gradient-boosting": (_hist_gradient_boosting, None),
    "pipeline": (_pipeline, None),
    "xgboost": (_xgboost, "xgboost"),
    "lightgbm": (_lightgbm, "lightgbm"),
}

#: The names of the zoo, in a stable order.
ZOO = tuple(_BUILDERS)


def required_module(name: str) -> str | None:
    """The library a zoo model needs beyond scikit-learn (``None`` for sklearn-only models)."""
    return _BUILDERS[name][1]


def zoo_models(frame: pd.DataFrame, names: list[str] | tuple[str, ...] = ZOO) -> dict[str, ZooModel]:
    """Fit the named zoo models on ``frame``."""
    target = zoo_target(frame)
    return {name: _BUILDERS[name][0](frame, target) for name in names}
