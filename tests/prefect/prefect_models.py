"""Small models the Prefect tests deploy on the local target (as python:/abs/path/prefect_models.py:<name>)."""

from __future__ import annotations

import numpy as np


def add_one(data):
    """Adds one to every value it is given."""
    return np.asarray(data, dtype="float64") + 1


def linear(data, params=None):
    """One output per row of a frame with columns a and b: 2a + b.

    With ``params={"raise": text}`` it fails with ``text``, as a service that quotes what it was sent in
    its error messages would.
    """
    if params and "raise" in params:
        raise ValueError(params["raise"])
    return (data["a"] * 2 + data["b"]).to_numpy()


#: What :func:`text_reply` answers for every row: text a credential-masking pattern would match.
REPLY = "Set password: hunter22 now"


def text_reply(data, params=None):
    """One line of text per input row, :data:`REPLY`, as a text model answers.

    With ``params={"raise": text}`` it fails with ``text``.
    """
    if params and "raise" in params:
        raise ValueError(params["raise"])
    return [REPLY] * len(data)
