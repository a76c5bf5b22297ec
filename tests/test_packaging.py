"""Packaging facts a user relies on: a light import, a complete wheel layout, the console script."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_import_stays_light():
    code = (
        "import sys, deployflow\n"
        "heavy = [m for m in ('pandas', 'numpy', 'pyarrow', 'prefect', 'airflow', 'dask', 'boto3', 'mlflow',"
        " 'sklearn', 'uvicorn') if m in sys.modules]\n"
        "print(','.join(heavy))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_every_package_directory_is_in_the_wheel():
    """Each folder with an __init__.py under core/ and integrations/ must be listed in pyproject.toml,
    or an installed (non-editable) deployflow would miss it."""
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    listed = set(config["packages"])
    mapping = config["package-dir"]
    found = set()
    for package, folder in mapping.items():
        base = ROOT / folder
        for init in base.rglob("__init__.py"):
            relative = init.parent.relative_to(base).parts
            found.add(".".join((package, *relative)))
    assert found - listed == set()
    assert "deployflow" in listed and (ROOT / "core" / "py.typed").exists()


def test_public_api_is_exported_once():
    import deployflow

    for name in deployflow.__all__:
        assert hasattr(deployflow, name), name
    expected = {
        "get_deploy_client",
        "set_deployments_target",
        "get_deployments_target",
        "run_local",
        "target_help",
        "list_targets",
        "register_target",
        "BaseDeploymentClient",
        "PredictionsResponse",
        "Status",
        "DeploymentError",
    }
    assert expected <= set(deployflow.__all__)
