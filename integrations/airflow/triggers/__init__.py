"""Triggers of the deployflow Airflow provider (deferrable waits)."""

from __future__ import annotations

from .readiness import DeploymentReadyTrigger, EndpointReadyTrigger

__all__ = ["DeploymentReadyTrigger", "EndpointReadyTrigger"]
