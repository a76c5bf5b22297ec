"""Scoring a scikit-learn model with the array sklearn itself would build from the request's frame.

sklearn's own handling of a DataFrame (feature-name checks, per-column dtype inspection, conversion)
costs several times the prediction of a small model: about 340 µs against 80 µs for a 10-row logistic
regression here. :func:`array_shortcut` wraps ``predict`` so that, in the cases where sklearn would turn
the frame into exactly ``frame.to_numpy()`` before computing anything, it is handed that array instead.
Those cases, all checked (the model once at load time, the frame on every call):

* the model is a fitted scikit-learn estimator and every part of it is scikit-learn's own: its
  parameters walked with ``get_params(deep=True)`` and its fitted sub-estimators (``estimators_``,
  ``best_estimator_``, a pipeline's steps, internal preprocessors) walked too;
* no part selects or converts columns by name or dtype, or passes the input on as it came: no
  ``ColumnTransformer`` (nor ``make_column_selector``, only used inside one), no
  ``FunctionTransformer`` without ``validate=True`` (its function would see the frame), no part whose
  output is set to pandas or polars with ``set_output``, and sklearn's global ``transform_output``
  is ``"default"``;
* the frame's columns share one numpy number dtype (no booleans, text, nullable or categorical
  columns, whose conversion sklearn handles column by column);
* for a model fitted on a DataFrame, the frame's column names equal ``feature_names_in_`` in order
  (what sklearn checks before converting); for one fitted on an array, the frame has
  ``n_features_in_`` columns (sklearn ignores the names).

Anything else goes to ``predict`` unchanged. Given an array, a model fitted with feature names warns
"X does not have valid feature names"; in the shortcut that warning is about our array, not the caller's
input, so it is silenced for that call only (other warnings still show). ``warnings.catch_warnings`` acts
on the whole process: a call running at the same moment in another thread (the scoring server runs one
at a time, plus a spare thread while a call overruns its time limit) may have that one warning hidden
too.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

__all__ = ["array_shortcut", "takes_array_shortcut"]

_NO_NAMES_WARNING = "X does not have valid feature names"
_NAME_SELECTING_PARTS = frozenset({"ColumnTransformer", "make_column_selector"})


def array_shortcut(model: Any, predict: Callable[..., Any]) -> Callable[..., Any]:
    """``predict``, or a wrapper handing it ``frame.to_numpy()`` where that is the same input."""
    width = _shortcut_width(model)
    if width is None:
        return predict
    import numpy as np
    import pandas as pd

    from ...jsoncodec import (
        _frame_dtypes,  # the frame's dtypes without building a Series per column
    )

    names = getattr(model, "feature_names_in_", None)
    names = None if names is None else [str(name) for name in names]
    numeric_kinds = "iuf"
    known_columns: list[Any] = [None]  # the last Index found equal to the names (servers reuse one)

    def columns_match(columns: Any) -> bool:
        if names is None or columns is known_columns[0]:
            return True
        if columns.tolist() != names:
            return False
        known_columns[0] = columns
        return True

    def predict_with_array(data: Any, *args: Any, **kwargs: Any) -> Any:
        if isinstance(data, pd.DataFrame) and data.shape[1] == width and columns_match(data.columns):
            dtypes = _frame_dtypes(data)
            first = dtypes[0]
            if isinstance(first, np.dtype) and first.kind in numeric_kinds and all(d == first for d in dtypes):
                array = data.to_numpy()
                if names is None:
                    return predict(array, *args, **kwargs)
                with warnings.catch_warnings():
                    warnings.filterwarnings("ignore", message=_NO_NAMES_WARNING, category=UserWarning)
                    return predict(array, *args, **kwargs)
        return predict(data, *args, **kwargs)

    predict_with_array.__wrapped__ = predict  # type: ignore[attr-defined]
    return predict_with_array


def takes_array_shortcut(predict_function: Callable[..., Any]) -> bool:
    """Whether ``predict_function`` came from :func:`array_shortcut` wrapping a model (for tests)."""
    return getattr(predict_function, "__name__", "") == "predict_with_array"


def _shortcut_width(model: Any) -> int | None:
    """The number of input columns when the shortcut is safe for ``model`` (see the module docstring)."""
    width = getattr(model, "n_features_in_", None)
    if not isinstance(width, int) or width <= 0:
        return None
    names = getattr(model, "feature_names_in_", None)
    if names is not None and len(names) != width:
        return None
    try:
        import sklearn

        if sklearn.get_config().get("transform_output", "default") != "default":
            return None
    except Exception:  # noqa: BLE001 - no sklearn, or a config it does not know: no shortcut
        return None
    return width if _only_plain_sklearn_parts(model) else None


def _only_plain_sklearn_parts(model: Any) -> bool:
    seen: set[int] = set()
    pending = [model]
    while pending:
        part = pending.pop()
        if id(part) in seen:
            continue
        seen.add(id(part))
        kind = type(part)
        if kind.__name__ in _NAME_SELECTING_PARTS and kind.__module__.startswith("sklearn."):
            return False
        if not hasattr(part, "fit"):
            continue  # a parameter value (number, string, array, function used at fit time)
        if not kind.__module__.startswith("sklearn."):
            return False
        if kind.__name__ == "FunctionTransformer" and not getattr(part, "validate", False):
            return False
        output = getattr(part, "_sklearn_output_config", None) or {}
        if output.get("transform", "default") != "default":
            return False
        try:
            parameters = part.get_params(deep=False)
        except Exception:  # noqa: BLE001 - an estimator whose parameters cannot be listed is not trusted
            return False
        pending.extend(_nested(parameters.values()))
        # Fitted sub-estimators live in attributes, not parameters (estimators_, best_estimator_, the
        # ColumnTransformer a HistGradientBoosting model keeps in _preprocessor for categorical columns).
        pending.extend(_nested(vars(part).values()))
    return True


def _nested(values: Any) -> list[Any]:
    """The values, with lists, tuples and dicts opened (pipelines keep steps as (name, estimator))."""
    found = []
    stack = list(values)
    while stack:
        value = stack.pop()
        if isinstance(value, (list, tuple)):
            if len(value) < 10_000:  # not a huge array-like list of plain values
                stack.extend(value)
        elif isinstance(value, dict):
            stack.extend(value.values())
        elif hasattr(value, "fit") or type(value).__name__ in _NAME_SELECTING_PARTS:
            found.append(value)
    return found
