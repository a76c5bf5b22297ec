"""Extra links of the deployflow operators: a button on the task in the Airflow UI that opens what the
task deployed.

:class:`DeploymentLink` ("Deployment") is on the create and update operators of deployments and
endpoints. It opens, from the task's XCom:

* ``console_url`` when the target has a console page for it: for ``databricks``, the serving endpoint's
  page in the workspace, ``<workspace URL>/ml/endpoints/<endpoint>``;
* else ``url``, where it serves (``local``, ``serving``, a gateway, SageMaker's invocation URL).

A task with neither (it failed before the target answered) shows the button without a link. Airflow 3
works links out when the task finishes, in the worker: the link is read from the task's return value
then, and stored for the UI.

The provider registers the class under ``extra-links`` (:mod:`.get_provider_info`).
"""

from __future__ import annotations

from typing import Any, Mapping
from urllib.parse import quote, urlsplit

from airflow.sdk import BaseOperatorLink

from deployflow import BaseDeploymentClient
from deployflow.redaction import redact

__all__ = ["DeploymentLink", "link_of", "console_url"]


def link_of(result: Any) -> str:
    """The URL a task's XCom value points at: ``console_url``, else ``url`` (``""`` when neither is an
    http(s) URL)."""
    if not isinstance(result, Mapping):
        return ""
    for key in ("console_url", "url"):
        value = result.get(key)
        if isinstance(value, str) and urlsplit(value).scheme in ("http", "https"):
            return redact(value)
    return ""


def console_url(client: BaseDeploymentClient, endpoint: str | None) -> str | None:
    """The page of ``endpoint`` in the target's own console, for targets that have one (``databricks``:
    ``<workspace URL>/ml/endpoints/<endpoint>``); ``None`` otherwise."""
    uri = str(getattr(client, "target_uri", "") or "")
    if not endpoint or (urlsplit(uri).scheme or uri) != "databricks":
        return None
    host = getattr(client, "host", None)  # the databricks client's workspace URL
    if not isinstance(host, str) or not host:
        return None
    return f"{host.rstrip('/')}/ml/endpoints/{quote(endpoint, safe='')}"


class DeploymentLink(BaseOperatorLink):
    """"Deployment": the console page or the served URL of what the task deployed."""

    name = "Deployment"

    def get_link(self, operator: Any, *, ti_key: Any) -> str:
        from airflow.sdk.execution_time.xcom import XCom

        return link_of(XCom.get_value(ti_key=ti_key, key="return_value"))
