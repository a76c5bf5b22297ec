"""Hooks of the deployflow Airflow provider."""

from __future__ import annotations

from .deployment import DeploymentHook

__all__ = ["DeploymentHook"]
