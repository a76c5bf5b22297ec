"""A pytest plugin that runs tests as if databricks-sdk were not installed (the databricks target's
personal-access-token path)::

    PYTHONPATH=tests python -m pytest -p support.without_databricks_sdk tests/test_target_databricks.py

Loaded with ``-p``, before any test module imports anything, it puts a ``sys.meta_path`` finder in front
that makes ``import databricks`` (and its submodules) fail as for a package that is not installed.
Nothing of deployflow is patched. Subprocesses that tests start do not inherit it.
"""

from __future__ import annotations

import sys


class _NotInstalled:
    def find_spec(self, fullname: str, path: object = None, target: object = None) -> None:
        if fullname.split(".", 1)[0] == "databricks":
            raise ModuleNotFoundError(f"No module named {fullname!r}", name=fullname)
        return None


if not any(isinstance(finder, _NotInstalled) for finder in sys.meta_path):
    sys.meta_path.insert(0, _NotInstalled())
