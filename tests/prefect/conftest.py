"""Prefect integration tests: one Prefect test server for the session, a real local target.

Prefect keeps its home, database and settings in temporary directories; the test server listens on
127.0.0.1 and starts once (10-15 s). Every deployment is a real scoring-server process on 127.0.0.1,
deleted when the session ends. Without prefect installed the folder is skipped.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from typing import Callable, Iterator

import pytest

# Before any Prefect setting is read: a private home, no analytics, quiet server logs.
_PREFECT_HOME = tempfile.mkdtemp(prefix="deployflow-prefect-home-")
os.environ["PREFECT_HOME"] = _PREFECT_HOME
os.environ["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"
os.environ["DO_NOT_TRACK"] = "1"
os.environ["PREFECT_SERVER_LOGGING_LEVEL"] = "WARNING"

try:
    import prefect  # noqa: F401
except ImportError:  # the plain `make test` environment: the integration is optional
    collect_ignore_glob = ["test_*.py"]
    prefect = None


@pytest.fixture(scope="session", autouse=True)
def prefect_server() -> Iterator[str]:
    """The Prefect test server (API URL), started once for the whole folder."""
    from prefect.settings import PREFECT_API_URL
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=60):
        yield str(PREFECT_API_URL.value())
    shutil.rmtree(_PREFECT_HOME, ignore_errors=True)


@pytest.fixture(scope="session")
def target_uri(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A local target with its own state directory; whatever is left in it is deleted at the end."""
    from deployflow import get_deploy_client

    uri = f"local://{tmp_path_factory.mktemp('local-target')}"
    yield uri
    with get_deploy_client(uri) as client:
        for endpoint in client.list_endpoints():
            client.delete_endpoint(endpoint["name"])
        for deployment in client.list_deployments():
            client.delete_deployment(deployment["name"])


@pytest.fixture
def cleanup(target_uri: str) -> Iterator[Callable[[str], None]]:
    """``cleanup(name)`` deletes deployment ``name`` after the test, whatever happened."""
    from deployflow import get_deploy_client

    names: list[str] = []
    yield names.append
    with get_deploy_client(target_uri) as client:
        for name in names:
            client.delete_deployment(name)
