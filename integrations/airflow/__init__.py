"""An Airflow provider for deployflow (``pip install 'deployflow[airflow]'``).

Deployment steps as Airflow operators: retry-safe, deferrable while they wait, templated, with small
XCom values. Everything here uses only the public API of :mod:`deployflow`. Retries have one level,
Airflow's task ``retries`` (the transport's are off inside steps), by the rule shared with the Prefect
tasks: "Retries in pipeline steps" in :mod:`deployflow.orchestration`.

* :class:`~.hooks.deployment.DeploymentHook`: a client from a ``deployflow`` connection (target URI in
  *Target URI*, token in *Token*, client options as JSON in *Extra*), without touching ``os.environ``.
* Operators: :class:`~.operators.deployment.CreateDeploymentOperator` (``if_exists`` adopt / update /
  fail), ``UpdateDeploymentOperator``, ``DeleteDeploymentOperator``, ``CreateEndpointOperator``,
  ``UpdateEndpointOperator``, ``DeleteEndpointOperator``, ``PredictOperator``, ``BatchPredictOperator``.
* Sensors: ``WaitForDeploymentReadySensor``, ``WaitForEndpointReadySensor``.
* Triggers for deferrable mode: ``DeploymentReadyTrigger``, ``EndpointReadyTrigger``.
* Assets (:mod:`~.assets`): ``emit_asset=True`` puts the deployment, endpoint or batch output among a
  task's outlets, so DAGs scheduled on it run once it changed; the asset event's extra says how.
* An extra link (:class:`~.links.DeploymentLink`, "Deployment") on the create and update operators:
  the target's console page or the served URL.

The provider registers itself through the ``apache_airflow_provider`` entry point
(:func:`~.get_provider_info.get_provider_info`), so ``airflow providers list`` shows it and the
``deployflow`` connection type appears in the UI.

The names above can be imported from this package directly; they load on first use, so importing the
package (which Airflow does to read the provider information) stays cheap.
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = [
    "DeploymentHook",
    "CreateDeploymentOperator",
    "UpdateDeploymentOperator",
    "DeleteDeploymentOperator",
    "CreateEndpointOperator",
    "UpdateEndpointOperator",
    "DeleteEndpointOperator",
    "PredictOperator",
    "BatchPredictOperator",
    "WaitForDeploymentReadySensor",
    "WaitForEndpointReadySensor",
    "DeploymentReadyTrigger",
    "EndpointReadyTrigger",
]

_WHERE = {
    "DeploymentHook": ".hooks.deployment",
    "CreateDeploymentOperator": ".operators.deployment",
    "UpdateDeploymentOperator": ".operators.deployment",
    "DeleteDeploymentOperator": ".operators.deployment",
    "CreateEndpointOperator": ".operators.endpoint",
    "UpdateEndpointOperator": ".operators.endpoint",
    "DeleteEndpointOperator": ".operators.endpoint",
    "PredictOperator": ".operators.scoring",
    "BatchPredictOperator": ".operators.scoring",
    "WaitForDeploymentReadySensor": ".sensors.readiness",
    "WaitForEndpointReadySensor": ".sensors.readiness",
    "DeploymentReadyTrigger": ".triggers.readiness",
    "EndpointReadyTrigger": ".triggers.readiness",
}


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
