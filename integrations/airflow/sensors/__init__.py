"""Sensors of the deployflow Airflow provider."""

from __future__ import annotations

from .readiness import WaitForDeploymentReadySensor, WaitForEndpointReadySensor

__all__ = ["WaitForDeploymentReadySensor", "WaitForEndpointReadySensor"]
