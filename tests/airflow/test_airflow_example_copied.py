"""The example DAG does what its docstring says when copied alone into a DAGs folder.

The docstring's recipe, followed literally in a subprocess: a fresh ``AIRFLOW_HOME`` whose DAGs folder
holds only a copy of the file, the ``deployflow_local`` connection with Target URI ``local`` (state under
``~/.deployflow``, here a temporary home), ``airflow db migrate``, then ``airflow dags test`` with a run
conf that sets params.
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import airflow_support as support
from deployflow import get_deploy_client, read_output


def test_the_example_copied_alone_into_a_dags_folder_runs(tmp_path):
    home = tmp_path / "airflow-home"
    dags = home / "dags"
    dags.mkdir(parents=True)
    copy = dags / support.EXAMPLE_DAG_FILE.name
    shutil.copy(support.EXAMPLE_DAG_FILE, copy)
    user_home = tmp_path / "user"  # where "local" keeps its state: ~/.deployflow
    user_home.mkdir()
    output = tmp_path / "output"
    environment = {
        name: value for name, value in os.environ.items()
        if not name.startswith(("AIRFLOW", "DEPLOYFLOW"))  # nothing of this test session's set-up
    }
    environment.update(
        {
            "HOME": str(user_home),
            "AIRFLOW_HOME": str(home),
            "AIRFLOW__CORE__DAGS_FOLDER": str(dags),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home / 'airflow.db'}",
            "AIRFLOW_CONN_DEPLOYFLOW_LOCAL": json.dumps({"conn_type": "deployflow", "host": "local"}),
            "DEPLOYFLOW_EXAMPLE_OUTPUT": str(output),
        }
    )

    def airflow(*arguments: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "airflow", *arguments], env=environment, cwd=tmp_path,
            capture_output=True, text=True, timeout=600,
        )

    migrated = airflow("db", "migrate")
    assert migrated.returncode == 0, migrated.stderr[-3000:]
    conf = {"rows": 300, "timeout": 120, "deployment_name": "churn-copied"}
    ran = airflow("dags", "test", "deployflow_deploy_and_score", "-c", json.dumps(conf))
    shown = ran.stdout[-5000:] + ran.stderr[-3000:]
    assert ran.returncode == 0, shown

    with sqlite3.connect(home / "airflow.db") as database:
        states = dict(database.execute("SELECT task_id, state FROM task_instance"))
        values = {
            task_id: json.loads(value)
            for task_id, value in database.execute("SELECT task_id, value FROM xcom WHERE key = 'return_value'")
        }
    assert states == dict.fromkeys(["make_customers", "deploy", "score", "teardown"], "success"), shown
    # The copy serves the model defined in it: nothing outside the DAGs folder was needed.
    assert values["deploy"]["model_uri"] == f"python:{copy.resolve()}:model"
    assert values["deploy"]["deployment_name"] == "churn-copied" and values["deploy"]["state"] == "READY"
    summary = values["score"]
    assert summary["rows"] == 300 and summary["failed_rows"] == 0
    assert Path(summary["output_path"]).is_relative_to(output / "deployflow_deploy_and_score")
    scores = read_output(summary["output_path"])
    assert scores["customer_id"].tolist() == list(range(1, 301))
    assert scores["churn_probability"].between(0, 1).all()
    # Torn down, in the state directory the docstring names.
    assert (user_home / ".deployflow").is_dir()
    with get_deploy_client(f"local://{user_home / '.deployflow'}") as client:
        assert client.list_deployments() == []


def test_parsing_the_example_loads_neither_numpy_nor_pandas():
    # The model's libraries load in the scoring server; Airflow parses DAG files often.
    script = (
        "import runpy, sys; runpy.run_path(sys.argv[1]); "
        "print(sorted(name for name in ('numpy', 'pandas') if name in sys.modules))"
    )
    parsed = subprocess.run(
        [sys.executable, "-c", script, str(support.EXAMPLE_DAG_FILE)], capture_output=True, text=True, timeout=120
    )
    assert parsed.returncode == 0, parsed.stderr[-3000:]
    assert parsed.stdout.strip().splitlines()[-1] == "[]"
