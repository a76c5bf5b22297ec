"""Airflow assets for what the deployflow operators change, so that DAGs can be scheduled on them.

A DAG that deploys a model names the deployment as an outlet; a DAG scheduled on that asset runs once
the deploy task succeeded::

    from airflow.sdk import DAG
    from deployflow.integrations.airflow.assets import deployment_asset
    from deployflow.integrations.airflow.operators import CreateDeploymentOperator

    churn = deployment_asset("churn", conn_id="deployflow_local")

    with DAG("deploy_churn", schedule=None):
        CreateDeploymentOperator(task_id="deploy", deployflow_conn_id="deployflow_local",
                                 deployment_name="churn", model_uri=MODEL_URI, emit_asset=True)

    with DAG("score_churn", schedule=[churn]):

        @task(inlets=[churn])
        def score(*, inlet_events):
            url = inlet_events[churn][-1].extra["url"]   # where the deployment serves now
            ...

URIs (the connection id names the target, as the DAG author wrote it):

* ``deployflow://<conn_id>/deployment/<deployment_name>`` (:func:`deployment_asset`);
* ``deployflow://<conn_id>/endpoint/<endpoint>`` (:func:`endpoint_asset`);
* a batch job's output: the output path as a URI, ``file://`` + the absolute path for a local path
  (:func:`batch_output_asset`).

Names are percent-quoted in the URI. Every operator of this provider that has outlets sets the same extra
on each ``Asset`` among them when it succeeds (:func:`set_outlet_extra`): for the create/update
operators ``target`` (the connection's target URI, credentials masked), ``deployment_name`` or
``endpoint``, ``action``, ``state``, ``model_uri``, ``url``, ``flavor`` (what the target's record
shows) and ``time`` (when the task finished, ISO 8601 UTC); for ``BatchPredictOperator`` ``target``,
``deployment_name``, ``endpoint``, ``output_path``, ``errors_path``, ``rows``, ``failed_rows``,
``chunks`` and ``time``.

``emit_asset=True`` on an operator adds its asset to its outlets when the DAG is parsed, which needs a
literal (not templated) connection id and name (or output path); with templated ones, pass
``outlets=[deployment_asset(...)]`` yourself.
"""

from __future__ import annotations

import datetime
import os
from typing import Any, Mapping
from urllib.parse import quote, urlsplit

from airflow.sdk import Asset

from ._common import DEFAULT_CONN_ID, InvalidArgumentError, is_literal, json_safe

__all__ = [
    "SCHEME",
    "deployment_asset",
    "endpoint_asset",
    "batch_output_asset",
    "set_outlet_extra",
    "now_text",
]

SCHEME = "deployflow"


def _literal(value: Any, what: str, helper: str) -> str:
    if not isinstance(value, str) or not value.strip() or not is_literal(value):
        raise InvalidArgumentError(
            f"emit_asset needs a literal {what} (got {value!r}) to name the asset when the DAG is parsed; "
            f"with a templated one, pass outlets=[{helper}(...)] yourself"
        )
    return value.strip()


def _asset(conn_id: str, kind: str, name: str) -> Asset:
    conn_id = _literal(conn_id, "deployflow_conn_id", f"{kind}_asset")
    name = _literal(name, "deployment_name" if kind == "deployment" else "endpoint", f"{kind}_asset")
    return Asset(uri=f"{SCHEME}://{quote(conn_id, safe='')}/{kind}/{quote(name, safe='')}")


def deployment_asset(deployment_name: str, *, conn_id: str = DEFAULT_CONN_ID) -> Asset:
    """The asset of deployment ``deployment_name`` on the target of connection ``conn_id``.

    >>> deployment_asset("churn", conn_id="deployflow_local").uri
    'deployflow://deployflow_local/deployment/churn'
    """
    return _asset(conn_id, "deployment", deployment_name)


def endpoint_asset(endpoint: str, *, conn_id: str = DEFAULT_CONN_ID) -> Asset:
    """The asset of endpoint ``endpoint`` on the target of connection ``conn_id``.

    >>> endpoint_asset("front", conn_id="deployflow_local").uri
    'deployflow://deployflow_local/endpoint/front'
    """
    return _asset(conn_id, "endpoint", endpoint)


def batch_output_asset(output_path: str) -> Asset:
    """The asset of a batch job's output: ``output_path`` itself when it is a URL (``s3://...``), else
    ``file://`` and its absolute path.

    >>> batch_output_asset("/data/scores.parquet").uri
    'file:///data/scores.parquet'
    """
    path = _literal(output_path, "output_path", "batch_output_asset")
    if len(urlsplit(path).scheme) > 1:  # a URL; one letter would be a Windows drive
        return Asset(uri=path)
    return Asset(uri="file://" + quote(os.path.abspath(os.path.expanduser(path))))


def now_text() -> str:
    """The current time, ISO 8601 UTC to the second: the ``time`` of an asset event's extra."""
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


def set_outlet_extra(task: Any, context: Mapping[str, Any], extra: Mapping[str, Any]) -> None:
    """Give the asset event of each ``Asset`` among ``task``'s outlets ``extra`` (JSON-safe, redacted).
    Does nothing without outlets or outside a task run (no ``outlet_events`` in ``context``)."""
    events = context.get("outlet_events") if isinstance(context, Mapping) else None
    assets = [outlet for outlet in getattr(task, "outlets", None) or [] if isinstance(outlet, Asset)]
    if events is None or not assets:
        return
    safe = json_safe(dict(extra))
    for asset in assets:
        events[asset].extra.update(safe)
