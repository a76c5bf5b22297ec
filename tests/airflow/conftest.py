"""Airflow integration tests: a real Airflow (``dag.test()`` on SQLite in a temporary ``AIRFLOW_HOME``)
against the real ``local`` target (scoring-server processes on 127.0.0.1).

:mod:`airflow_support` sets the environment before Airflow is imported; the database is migrated once
per session (``airflow db migrate``, a few seconds). Without Airflow installed the folder is skipped.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from typing import Iterator

import pytest

import airflow_support as support  # first: sets AIRFLOW_HOME and friends

try:
    import airflow  # noqa: F401
except ImportError:  # the plain `make test` environment: the integration is optional
    collect_ignore_glob = ["test_*.py"]


@pytest.fixture(scope="session", autouse=True)
def airflow_home() -> Iterator[None]:
    """Migrate the session's database and fill its DAGs folder; at the end, stop every deployment left
    in the session's state directory and remove the home."""
    support.link_dags()
    migrated = subprocess.run(
        [sys.executable, "-m", "airflow", "db", "migrate"], capture_output=True, text=True, timeout=300
    )
    assert migrated.returncode == 0, migrated.stdout[-3000:] + migrated.stderr[-3000:]
    yield
    from deployflow import get_deploy_client

    with get_deploy_client(support.TARGET_URI) as client:
        for endpoint in client.list_endpoints():
            client.delete_endpoint(endpoint["name"])
        for deployment in client.list_deployments():
            client.delete_deployment(deployment["name"])
    shutil.rmtree(support.HOME, ignore_errors=True)


@pytest.fixture
def client() -> Iterator[object]:
    """A client of the session's local target (the one the connections point at)."""
    from deployflow import get_deploy_client

    with get_deploy_client(support.TARGET_URI) as made:
        yield made
