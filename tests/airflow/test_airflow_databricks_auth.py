"""A ``deployflow`` connection for a Databricks service principal, as Airflow's Databricks provider users
write one (login = client id, password = client secret, extra ``service_principal_oauth``), or with the
form's extra fields: the hook's client reaches the fake workspace (tests/fakes/databricks.py, with its
OAuth token endpoint) with an OAuth token, and the secret reaches no log, XCom or rendered field.
"""

from __future__ import annotations

import json
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import airflow_support as support
from deployflow import InvalidInputError
from deployflow.integrations.airflow.hooks import DeploymentHook
from deployflow.integrations.airflow.hooks.deployment import client_arguments
from fakes.base import scrub_environment
from fakes.databricks import CLIENT_ID, CLIENT_SECRET, FakeDatabricks, scrub_sdk_environment

pytest.importorskip("databricks.sdk", reason="OAuth for the databricks target needs the 'databricks' extra")

CONN_ID = "dbx_service_principal"
ENTITY = {"name": "churn-1", "entity_name": "main.ml.churn", "entity_version": "3", "workload_size": "Small",
          "scale_to_zero_enabled": True}


@pytest.fixture(autouse=True)
def _no_ambient_credentials(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    scrub_environment(monkeypatch, tmp_path)
    scrub_sdk_environment(monkeypatch)


@pytest.fixture
def workspace() -> Iterator[FakeDatabricks]:
    with FakeDatabricks() as service:
        service.add_ready_endpoint("churn", [ENTITY])
        yield service


def connect(monkeypatch: pytest.MonkeyPatch, conn_id: str, **fields: Any) -> str:
    monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", json.dumps({"conn_type": "deployflow", "host": "databricks", **fields}))
    return conn_id


def oauth_connection(monkeypatch: pytest.MonkeyPatch, workspace: FakeDatabricks, conn_id: str = CONN_ID) -> str:
    """As Airflow's Databricks provider holds a service principal: login, password, a flag."""
    return connect(monkeypatch, conn_id, login=CLIENT_ID, password=CLIENT_SECRET,
                   extra={"host": workspace.url, "service_principal_oauth": True})


def test_login_and_password_become_the_service_principal_options():
    extra = {"host": "https://adb-1.azuredatabricks.net", "service_principal_oauth": True}
    assert client_arguments("c", "databricks", "s3cret-value", extra, login="id-1") == (
        "databricks", {"host": "https://adb-1.azuredatabricks.net", "client_id": "id-1", "client_secret": "s3cret-value"}
    )
    azure = {"host": "https://adb-1.azuredatabricks.net", "azure_tenant_id": "tenant-1"}
    assert client_arguments("c", "databricks", "az-s3cret", azure, login="app-1")[1] == {
        **azure, "azure_client_id": "app-1", "azure_client_secret": "az-s3cret",
    }
    # The form's fields (with their prefix) are client options like any other; the login is unused.
    form = {"extra__deployflow__client_id": "id-2", "extra__deployflow__client_secret": "s3cret-2", "host": "https://h"}
    assert client_arguments("c", "databricks", None, form, login="ignored") == (
        "databricks", {"client_id": "id-2", "client_secret": "s3cret-2", "host": "https://h"}
    )
    # Without the flag or a tenant, login and password keep their old meaning.
    assert client_arguments("c", "databricks", "dapi-123456", {"token_option": "token"}, login="token") == (
        "databricks", {"token": "dapi-123456"}
    )
    assert client_arguments("c", "databricks", None, {"service_principal_oauth": "false"}, login="x") == ("databricks", {})
    with pytest.raises(InvalidInputError, match="gives client_secret in its login or password and again in its extra"):
        client_arguments("c", "databricks", "s3cret-value", {"service_principal_oauth": True, "client_secret": "other"}, login="id")
    with pytest.raises(InvalidInputError, match="must not set token_option"):
        client_arguments("c", "databricks", "s3cret-value", {"service_principal_oauth": True, "token_option": "token"}, login="id")
    with pytest.raises(InvalidInputError, match="service_principal_oauth must be true or false"):
        client_arguments("c", "databricks", "s3cret-value", {"service_principal_oauth": "maybe"}, login="id")


def test_a_service_principal_connection_reaches_the_workspace_with_an_oauth_token(monkeypatch, workspace):
    conn = oauth_connection(monkeypatch, workspace)
    hook = DeploymentHook(conn)
    client = hook.get_conn()
    try:
        assert [e["name"] for e in client.list_endpoints()] == ["churn"]
        assert client.credentials.auth_type == "oauth-m2m"
        assert CLIENT_SECRET not in repr(client.options) and CLIENT_SECRET not in repr(hook)
    finally:
        hook.close()
    assert len(workspace.token_requests) == 1
    (listed,) = workspace.requests_to("GET", "/api/2.0/serving-endpoints")
    assert listed.header("Authorization") == f"Bearer {workspace.issued[0][0]}"
    assert DeploymentHook(conn).test_connection() == (True, "Connected: the target lists 1 endpoint(s)")


def test_the_form_fields_work_as_well(monkeypatch, workspace):
    conn = connect(monkeypatch, "dbx_form", extra={
        "extra__deployflow__host": workspace.url,
        "extra__deployflow__client_id": CLIENT_ID,
        "extra__deployflow__client_secret": CLIENT_SECRET,
        "extra__deployflow__test_endpoint": "churn",
    })
    assert DeploymentHook(conn).test_connection() == (True, "Connected: endpoint 'churn' is READY")
    assert len(workspace.token_requests) == 1


def test_a_wrong_client_secret_fails_the_test_without_showing_it(monkeypatch, workspace):
    wrong = "sp-Wrong-8Lk3Vb6Nq1Xz"
    conn = connect(monkeypatch, "dbx_wrong_sp", login=CLIENT_ID, password=wrong,
                   extra={"host": workspace.url, "service_principal_oauth": True})
    ok, message = DeploymentHook(conn).test_connection()
    assert ok is False
    assert message == "Databricks oauth-m2m authentication got no access token (invalid_client: Client authentication failed)"
    assert wrong not in message


_DAGS = '''
"""Written by tests/airflow/test_airflow_databricks_auth.py: a service principal's connection in use."""
import datetime

from airflow.sdk import DAG

from deployflow.integrations.airflow.operators import PredictOperator
from deployflow.integrations.airflow.sensors import WaitForEndpointReadySensor

DAGS = {{}}
for deferrable in (False, True):
    with DAG(f"deployflow_test_databricks_oauth_{{'deferrable' if deferrable else 'poke'}}", schedule=None,
             start_date=datetime.datetime(2025, 1, 1), catchup=False) as dag:
        ready = WaitForEndpointReadySensor(task_id="ready", deployflow_conn_id={conn!r}, endpoint="churn",
                                           poke_interval=0.2, timeout=60, deferrable=deferrable)
        score = PredictOperator(task_id="score", deployflow_conn_id={conn!r}, endpoint="churn",
                                inputs={{"inputs": [[1.0, 2.0]]}}, return_predictions=True)
        ready >> score
    DAGS[dag.dag_id] = dag
'''


@pytest.fixture(scope="module")
def oauth_dags() -> Iterator[Path]:
    dag_file = support.DAGS_FOLDER / "deployflow_databricks_oauth_dags.py"
    dag_file.write_text(textwrap.dedent(_DAGS.format(conn=CONN_ID)), encoding="utf-8")
    yield dag_file
    dag_file.unlink()


@pytest.mark.parametrize("mode", ["poke", "deferrable"])
def test_a_dag_run_uses_the_service_principal_and_shows_its_secret_nowhere(monkeypatch, workspace, oauth_dags, mode):
    oauth_connection(monkeypatch, workspace)
    workspace.polls_to_ready = 3  # the sensor finds the endpoint updating, and waits (or defers)
    workspace.begin_update("churn", [{**ENTITY, "entity_version": "4"}])
    run, output = support.run_dag(support.suite_dag(f"deployflow_test_databricks_oauth_{mode}", oauth_dags))
    states = {task_id: ti.state for task_id, ti in support.task_instances(run).items()}
    assert run.state == "success", (states, output[-5000:])
    assert ("running trigger in line" in output) is (mode == "deferrable")
    assert support.return_value(run, "score")["predictions"] == [12.0]  # (1 + 2) * version 4
    assert support.return_value(run, "ready")["state"] == "READY"

    # Each task's client fetched its own token (the trigger's too) and sent nothing without one.
    issued = [token for token, _ in workspace.issued]
    assert issued and len(workspace.token_requests) == len(issued)
    rest = [r for r in workspace.requests if r.path.startswith(("/api/", "/serving-endpoints/"))]
    assert rest and all(r.header("Authorization").removeprefix("Bearer ") in issued for r in rest)

    # The hook's own log line is in what was captured (by option names: client_id, client_secret, host).
    assert f"from connection {CONN_ID!r} (options: client_id, client_secret, host)" in output
    places = {
        "task logs": output,
        "xcom": json.dumps({f"{task}:{key}": value for (task, key), value in support.xcoms(run).items()}, default=str),
        "rendered fields": json.dumps(support.rendered_fields(run), default=str),
    }
    for place, text in places.items():
        assert CLIENT_SECRET not in text, f"the client secret shows in the {place}"
        for token in issued:
            assert token not in text, f"an access token shows in the {place}"
