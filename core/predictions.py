"""The answer to a scoring request: :class:`PredictionsResponse`.

It behaves like ``mlflow.deployments.PredictionsResponse``: a plain ``dict`` holding at least a
``predictions`` key (services may add their own keys beside it), with helpers to view the predictions
as a pandas DataFrame or a numpy array and to move the whole answer to and from JSON.

Because it is a ``dict`` subclass with no extra state, it pickles, copies and serialises to JSON exactly
like the dict it wraps, which matters when an orchestrator (Airflow XCom, Prefect results, Dask) moves it
between processes. pandas and numpy are imported only when a conversion asks for them.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from .errors import InvalidInputError
from .jsoncodec import dumps_text, loads

if TYPE_CHECKING:  # pragma: no cover - typing only
    import numpy as np
    import pandas as pd

__all__ = ["PredictionsResponse", "PREDICTIONS_FORMATS"]

#: The formats :meth:`PredictionsResponse.get_predictions` knows.
PREDICTIONS_FORMATS = ("dataframe", "ndarray")

# How much of an offending input an error message quotes.
_EXCERPT_CHARS = 200


def _excerpt(value: Any) -> str:
    text = value.decode("utf-8", "replace") if isinstance(value, (bytes, bytearray)) else repr(value)
    if len(text) > _EXCERPT_CHARS:
        return text[:_EXCERPT_CHARS] + f"... ({len(text)} characters in all)"
    return text


def _is_scalar(value: Any) -> bool:
    # Containers would make a one-row frame ambiguous; everything else fills a single cell.
    if isinstance(value, (list, tuple, dict, set)):
        return False
    return not hasattr(value, "__len__") or isinstance(value, (str, bytes))


class PredictionsResponse(dict):
    """Predictions and any metadata returned for a scoring request.

    Example::

        >>> response = PredictionsResponse({"predictions": [0, 1, 1]})
        >>> response.get_predictions("ndarray").tolist()
        [0, 1, 1]
        >>> PredictionsResponse.from_json(response.to_json()) == response
        True
    """

    def get_predictions(
        self, predictions_format: str = "dataframe", dtype: Any = None
    ) -> pd.DataFrame | np.ndarray:
        """Return the predictions as a DataFrame (the default) or as a numpy array.

        ``"dataframe"`` follows MLflow's rules: a string becomes a one-row, one-column frame; a dict
        whose values are all scalars becomes a one-row frame with those columns; anything else is
        handed to ``pandas.DataFrame``. ``"ndarray"`` returns ``numpy.array(predictions, dtype)``.

        Raises :class:`~deployflow.errors.InvalidInputError` for another format, or when the response
        holds no ``predictions`` key (some services answer with other keys).
        """
        if predictions_format not in PREDICTIONS_FORMATS:
            raise InvalidInputError(
                f"Unknown predictions format {predictions_format!r}: use one of "
                + ", ".join(repr(name) for name in PREDICTIONS_FORMATS)
            )
        if "predictions" not in self:
            raise InvalidInputError(
                "This response has no 'predictions' key, so it cannot be converted; it holds the keys "
                f"{sorted(map(str, self))}. Read the response as a dict instead."
            )
        predictions = self["predictions"]
        if predictions_format == "ndarray":
            import numpy as np

            return np.array(predictions, dtype)

        import pandas as pd

        if isinstance(predictions, str):
            return pd.DataFrame(data=[predictions])
        if isinstance(predictions, dict) and all(_is_scalar(value) for value in predictions.values()):
            return pd.DataFrame(data=predictions, index=[0])
        return pd.DataFrame(data=predictions)

    def to_json(self, path: str | os.PathLike[str] | None = None) -> str | None:
        """Return the response as JSON text, or write that text to ``path`` and return ``None``.

        The text is what MLflow's ``PredictionsResponse.to_json`` writes, ``json.dumps`` of the dict:
        ``{"predictions": [1, 2, 3]}``, non-ASCII characters escaped, non-finite numbers as ``NaN``,
        ``Infinity`` and ``-Infinity``. numpy and pandas values held in the response (which MLflow's
        cannot write) are converted as the scoring server converts them: arrays to lists, timestamps
        to ISO-8601 strings.
        """
        text = dumps_text(dict(self))
        if path is None:
            return text
        with open(path, "w", encoding="utf-8") as handle:
            handle.write(text)
        return None

    @classmethod
    def from_json(cls, json_str: str | bytes) -> PredictionsResponse:
        """Build a response from JSON text that holds an object with a ``predictions`` key.

        Raises :class:`~deployflow.errors.InvalidInputError` for invalid JSON, for JSON that is not an
        object, and for an object without ``predictions``; the message quotes what was received.
        """
        try:
            parsed = loads(json_str)
        except (ValueError, TypeError) as error:
            raise InvalidInputError(
                f"The predictions response is not valid JSON ({error}). Received: {_excerpt(json_str)}"
            ) from error
        if not isinstance(parsed, dict) or "predictions" not in parsed:
            kind = (
                "an object without a 'predictions' key" if isinstance(parsed, dict) else type(parsed).__name__
            )
            raise InvalidInputError(
                "A predictions response must be a JSON object with a 'predictions' key; received "
                f"{kind}: {_excerpt(parsed)}"
            )
        return cls(parsed)
