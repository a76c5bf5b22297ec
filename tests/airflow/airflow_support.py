"""The Airflow tests' environment and helpers.

Importing this module (the folder's conftest does it first) sets up, before Airflow is imported anywhere:
a temporary ``AIRFLOW_HOME`` with a SQLite database, a DAGs folder holding the example DAG and the test
DAGs, and two ``deployflow`` connections whose token is :data:`TOKEN`, pointing at a local-target state
directory of this session. :func:`run_dag` runs a DAG with ``dag.test()`` and returns what it logged.
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import json
import logging
import os
import secrets
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
EXAMPLE_DAG_FILE = REPO / "examples" / "airflow" / "deploy_and_score.py"
TEST_DAG_FILE = HERE / "dags" / "deployflow_test_dags.py"
TEMPLATED_DAG_FILE = HERE / "dags" / "deployflow_templated_dags.py"
REACTING_DAG_FILE = HERE / "dags" / "deployflow_reacting_dags.py"

HOME = Path(tempfile.mkdtemp(prefix="deployflow-airflow-"))
DAGS_FOLDER = HOME / "dags"
STATE_DIR = HOME / "local-target"
TARGET_URI = f"local://{STATE_DIR}"
EXAMPLE_OUTPUT = HOME / "example-output"

#: Planted in both connections: it must never show in a task log or an XCom value.
TOKEN = "dfl-" + secrets.token_hex(20)


def _connection() -> str:
    return json.dumps({"conn_type": "deployflow", "host": TARGET_URI, "password": TOKEN})


os.environ.update(
    {
        "AIRFLOW_HOME": str(HOME),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__DAGS_FOLDER": str(DAGS_FOLDER),
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{HOME / 'airflow.db'}",
        "AIRFLOW__OPERATORS__DEFAULT_DEFERRABLE": "False",
        # DAGs scheduled on assets are queued by asset events only when they are not paused.
        "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
        "AIRFLOW_CONN_DEPLOYFLOW_LOCAL": _connection(),
        "AIRFLOW_CONN_DEPLOYFLOW_TEST": _connection(),
        "DEPLOYFLOW_EXAMPLE_OUTPUT": str(EXAMPLE_OUTPUT),
    }
)


def link_dags() -> None:
    """Put the example DAG and the test DAGs into the session's DAGs folder (as symlinks, so each file
    still finds its models relative to where it really lives)."""
    DAGS_FOLDER.mkdir(parents=True, exist_ok=True)
    for source in (EXAMPLE_DAG_FILE, TEST_DAG_FILE, TEMPLATED_DAG_FILE, REACTING_DAG_FILE):
        link = DAGS_FOLDER / source.name
        if not link.exists():
            link.symlink_to(source)


_modules: dict[Path, ModuleType] = {}


def load_module(path: Path) -> ModuleType:
    """Import a DAG file by path (once per session)."""
    if path not in _modules:
        name = f"deployflow_airflow_tests_{path.stem}"
        spec = importlib.util.spec_from_file_location(name, path)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
        _modules[path] = module
    return _modules[path]


def example_dag() -> Any:
    return load_module(EXAMPLE_DAG_FILE).dag


def suite_dag(dag_id: str, path: Path = TEST_DAG_FILE) -> Any:
    """DAG ``dag_id`` of a test DAG file (by default ``dags/deployflow_test_dags.py``)."""
    return load_module(path).DAGS[dag_id]


def task_instances(run: Any) -> dict[str, Any]:
    """The task instances of a finished ``dag.test()`` run, by task id."""
    return {ti.task_id: ti for ti in run.get_task_instances()}


def xcoms(run: Any) -> dict[tuple[str, str], Any]:
    """Every XCom value of ``run``, by ``(task_id, key)``, as JSON-decoded Python values."""
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    found: dict[tuple[str, str], Any] = {}
    with create_session() as session:
        rows = session.query(XComModel).filter(XComModel.dag_id == run.dag_id, XComModel.run_id == run.run_id)
        for row in rows:
            value = row.value
            if isinstance(value, (str, bytes)):
                try:
                    value = json.loads(value)
                except ValueError:
                    pass
            found[(row.task_id, row.key)] = value
    return found


def return_value(run: Any, task_id: str) -> Any:
    return xcoms(run).get((task_id, "return_value"))


def rendered_fields(run: Any) -> dict[str, Any]:
    """What Airflow stored as each task's rendered template fields, by task id."""
    from airflow.models.renderedtifields import RenderedTaskInstanceFields
    from airflow.utils.session import create_session

    with create_session() as session:
        rows = session.query(RenderedTaskInstanceFields).filter(
            RenderedTaskInstanceFields.dag_id == run.dag_id, RenderedTaskInstanceFields.run_id == run.run_id
        )
        return {row.task_id: row.rendered_fields for row in rows}


MODELS = HERE / "models"
ADD_ONE = f"python:{MODELS / 'add_one.py'}:model"
DOUBLER = f"python:{MODELS / 'other.py'}:model"
BROKEN = f"python:{MODELS / 'broken.py'}:model"
#: Stays PENDING for a minute (its model sleeps while loading).
SLOW = f"python:{MODELS / 'slow.py'}:model"
#: Create without waiting; stop quickly when deleted.
NO_WAIT = {"wait": False, "stop_timeout": 2}


class _Collector(logging.Handler):
    """Keeps every log record, formatted with its traceback, as the task log would show it."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))


@contextlib.contextmanager
def captured_output() -> Iterator[list[str]]:
    """Everything logged (Airflow's task logs, under ``dag.test()`` in pytest, are log records) and
    written to file descriptors 1 and 2 inside the block; appended to the yielded list at the end."""
    text: list[str] = []
    collector = _Collector()
    root = logging.getLogger()
    saved_level = root.level
    root.addHandler(collector)
    root.setLevel(min(saved_level, logging.INFO) or logging.INFO)
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    streams = sys.stdout, sys.stderr
    with tempfile.TemporaryFile(mode="w+b") as sink:
        os.dup2(sink.fileno(), 1)
        os.dup2(sink.fileno(), 2)
        sys.stdout = sys.stderr = io.TextIOWrapper(os.fdopen(os.dup(1), "wb"), write_through=True)
        try:
            yield text
        finally:
            sys.stdout.flush()
            sys.stdout.close()
            sys.stdout, sys.stderr = streams
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            os.close(saved[0])
            os.close(saved[1])
            root.removeHandler(collector)
            root.setLevel(saved_level)
            sink.seek(0)
            text.append("\n".join(collector.lines) + "\n" + sink.read().decode("utf-8", errors="replace"))


def run_dag(dag: Any) -> tuple[Any, str]:
    """Run ``dag`` once with ``dag.test()``; returns the run and everything it printed."""
    with captured_output() as output:
        run = dag.test()
    return run, output[0]
