"""Shared test set-up: every test runs with its own deployflow state and no ambient target settings."""

from __future__ import annotations

import os

import pytest

_AMBIENT = (
    "DEPLOYFLOW_TARGET",
    "MLFLOW_DEPLOYMENTS_TARGET",
    "DEPLOYFLOW_HTTP_TIMEOUT",
    "DEPLOYFLOW_PREDICT_TIMEOUT",
    "DEPLOYFLOW_MAX_RETRIES",
    "DEPLOYFLOW_DEBUG",
)


@pytest.fixture(autouse=True, scope="session")
def _isolated_environment(tmp_path_factory):
    """Keep the developer's ~/.deployflow and target settings out of the tests."""
    saved = {name: os.environ.pop(name) for name in _AMBIENT if name in os.environ}
    previous_home = os.environ.get("DEPLOYFLOW_HOME")
    os.environ["DEPLOYFLOW_HOME"] = str(tmp_path_factory.mktemp("deployflow-home"))
    yield
    os.environ.update(saved)
    if previous_home is None:
        os.environ.pop("DEPLOYFLOW_HOME", None)
    else:
        os.environ["DEPLOYFLOW_HOME"] = previous_home
