"""Small real models and the frame they score, for the model zoo test (tests/test_model_zoo.py).

Every model is fitted here, in the test process, on :func:`zoo_frame` (or on its numbers as a plain
array), written twice, as a pickle and as an MLflow model directory (:func:`write_mlflow_dir`, laid out
as ``mlflow.<flavor>.save_model`` lays it out, written without MLflow), and served by the local target;
the test compares the server's answers with ``model.predict`` run here. Everything is tiny so that
fitting all of them takes well under a second.

Functions used inside the models (:func:`hour_of_day`) live in this module so that the pickles refer to
``support.model_zoo`` and the servers, which have the tests directory on ``PYTHONPATH``, can load them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import pandas as pd

__all__ = [
    "Doubling",
    "ZooModel",
    "hour_of_day",
    "mlflow_signature",
    "write_mlflow_dir",
    "zoo_frame",
    "zoo_models",
    "zoo_target",
]

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


def _logistic_frame(frame: pd.DataFrame, target: np.ndarray) -> ZooModel:
    # Fitted on a DataFrame of floats: the array shortcut applies when a request's columns are these
    # names in this order.
    from sklearn.linear_model import LogisticRegression

    columns = ["num_c", "num_b"]
    return ZooModel("logistic-frame", LogisticRegression().fit(frame[columns], target), columns)


def _forest_frame(frame: pd.DataFrame, target: np.ndarray) -> ZooModel:
    from sklearn.ensemble import RandomForestClassifier

    columns = ["num_a", "num_b", "num_c"]  # floats, NaN included (trees route missing values)
    model = RandomForestClassifier(n_estimators=6, max_depth=4, random_state=0).fit(frame[columns], target)
    return ZooModel("forest-frame", model, columns)


def _scaled_pipeline(frame: pd.DataFrame, target: np.ndarray) -> ZooModel:
    # Every step is scikit-learn's and none selects by name: the shortcut walks the steps and applies.
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    columns = ["num_a", "num_b", "num_c"]
    model = make_pipeline(SimpleImputer(), StandardScaler(), LogisticRegression()).fit(frame[columns], target)
    return ZooModel("scaled-pipeline", model, columns)


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
    "logistic-frame": (_logistic_frame, None),
    "forest": (_forest, None),
    "forest-frame": (_forest_frame, None),
    "scaled-pipeline": (_scaled_pipeline, None),
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


# -- MLflow model directories, written as MLflow writes them ----------------------------------------------

#: The MLflow column type for each dtype of :func:`zoo_frame` a signature can declare so that the zoo's
#: values pass unchanged: floats, and nullable integers with missing values, as double (MLflow's advice
#: for integers with gaps); integers as long; text; datetimes. A nullable boolean with missing values and
#: a category have no such type: a model using them is written without a signature.
def _column_type(column: pd.Series) -> str | None:
    dtype = column.dtype
    if isinstance(dtype, pd.CategoricalDtype):
        return None
    if isinstance(dtype, pd.BooleanDtype):
        return None if column.isna().any() else "boolean"
    if pd.api.types.is_integer_dtype(dtype):
        return "double" if column.isna().any() else "long"
    if pd.api.types.is_float_dtype(dtype):
        return "double"
    if pd.api.types.is_bool_dtype(dtype):
        return "boolean"
    if pd.api.types.is_datetime64_any_dtype(dtype):
        return "datetime"
    if pd.api.types.is_string_dtype(dtype):
        return "string"
    return None


def mlflow_signature(frame: pd.DataFrame) -> dict[str, Any] | None:
    """The ``signature`` mapping of an ``MLmodel`` file for ``frame``'s columns (inputs only, as JSON
    text, the way MLflow writes it), or None when some column has no faithful type."""
    import json

    specs = []
    for name, column in frame.items():
        kind = _column_type(column)
        if kind is None:
            return None
        specs.append({"type": kind, "name": str(name), "required": True})
    return {"inputs": json.dumps(specs), "outputs": None, "params": None}


def write_mlflow_dir(entry: ZooModel, frame: pd.DataFrame, path: Any) -> Any:
    """Write ``entry.model`` as an MLflow model directory at ``path`` (created) and return the path.

    The layout is what ``mlflow.sklearn`` / ``mlflow.xgboost`` / ``mlflow.lightgbm`` ``save_model``
    write (MLmodel, the model file, an input example), with a signature from
    :func:`mlflow_signature`. scikit-learn models are saved with skops, trusting the model's own
    non-sklearn types as a user passes them to MLflow's ``skops_trusted_types``.
    """
    import json
    from pathlib import Path

    import yaml

    path = Path(path)
    path.mkdir(parents=True)
    model = entry.model
    module = type(model).__module__.split(".")[0]
    example = frame[entry.columns].iloc[:2]
    if module == "xgboost":
        model.save_model(str(path / "model.ubj"))
        flavor = {"xgboost": {"code": None, "data": "model.ubj", "model_class": _qualified_name(model),
                              "model_format": "ubj", "xgb_version": __import__("xgboost").__version__}}
        pyfunc = {"loader_module": "mlflow.xgboost", "data": "model.ubj"}
    elif module == "lightgbm":
        import cloudpickle

        (path / "model.pkl").write_bytes(cloudpickle.dumps(model))
        flavor = {"lightgbm": {"code": None, "data": "model.pkl", "model_class": _qualified_name(model),
                               "serialization_format": "cloudpickle", "skops_trusted_types": None,
                               "lgb_version": __import__("lightgbm").__version__}}
        pyfunc = {"loader_module": "mlflow.lightgbm", "data": "model.pkl"}
    else:
        import sklearn
        import skops.io

        skops.io.dump(model, path / "model.skops")
        trusted = skops.io.get_untrusted_types(file=path / "model.skops") or None
        flavor = {"sklearn": {"code": None, "pickled_model": "model.skops", "serialization_format": "skops",
                              "sklearn_version": sklearn.__version__, "skops_trusted_types": trusted}}
        pyfunc = {"loader_module": "mlflow.sklearn", "model_path": "model.skops", "predict_fn": "predict"}
    pyfunc.update({"env": {"conda": "conda.yaml", "virtualenv": "python_env.yaml"}, "python_version": "3.11"})
    document: dict[str, Any] = {"flavors": {"python_function": pyfunc, **flavor}, "mlflow_version": "3.17.2"}
    signature = mlflow_signature(frame[entry.columns])
    if signature is not None:
        document["signature"] = signature
        from deployflow.payloads import encode_request

        body, _ = encode_request(example)
        (path / "serving_input_example.json").write_bytes(body)
        document["saved_input_example_info"] = {"artifact_path": "input_example.json", "pandas_orient": "split",
                                                "serving_input_path": "serving_input_example.json",
                                                "type": "dataframe"}
        (path / "input_example.json").write_text(json.dumps(json.loads(body)["dataframe_split"]), encoding="utf-8")
    (path / "MLmodel").write_text(yaml.safe_dump(document, sort_keys=True), encoding="utf-8")
    return path


def _qualified_name(obj: Any) -> str:
    kind = type(obj)
    return f"{kind.__module__}.{kind.__qualname__}"
