"""``noclient``: ``run_local`` and ``target_help`` but no client class (it only imports the base)."""

from __future__ import annotations

from typing import Any

from deployflow import BaseDeploymentClient  # noqa: F401  (the base is never a client)


def run_local(name: str, model_uri: str, flavor: str | None = None, config: Any = None) -> None:
    return None


def target_help() -> str:
    return "noclient: a plugin without a client"
