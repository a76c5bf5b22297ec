"""Finishing an update that did not wait: ``python -m deployflow.targets.local.rollover --spec FILE``.

``update_deployment(..., config={"wait": False})`` returns as soon as the new server is starting. The
switch to it still has to happen once it serves (or, when it fails, the failure has to be recorded and
the half-started server stopped). The updating caller may be gone by then (a CLI call, a pipeline step),
so :meth:`LocalDeploymentClient.update_deployment` starts this small process for that one update, in its
own session like the servers. It does exactly what a waiting update does after starting the server
(``LocalDeploymentClient._finish_handed_over_update``), then exits.

The spec file::

    {"version": 1, "home": "/abs/state/dir", "name": "churn", "operation": "<id of the update>"}

The update's marker in the state names this process as its owner, so the deployment reads PENDING
exactly while it runs; deleting the deployment stops it. It never holds the deployment's auth token:
``/ping`` needs none. Its log (``rollover.log``) sits beside the new server's.

Exit status: 0 when the update was finished or there was nothing left to finish, 1 when the update
failed (the reason is in the state, as ``last_error``), 2 for a bad spec.
"""

from __future__ import annotations

import argparse
import logging
import sys

from ...errors import DeploymentError
from ...redaction import get_logger
from .state import read_json

__all__ = ["main"]

_MODULE = "deployflow.targets.local.rollover"
_logger = get_logger(_MODULE)
_SPEC_VERSION = 1


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the exit status."""
    parser = argparse.ArgumentParser(prog=f"python -m {_MODULE}", description=__doc__.splitlines()[0])
    parser.add_argument("--spec", required=True, help="absolute path of the spec JSON file")
    arguments = parser.parse_args(argv)
    logging.basicConfig(stream=sys.stderr, level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    try:
        spec = read_json(arguments.spec)
        if not isinstance(spec, dict) or spec.get("version") != _SPEC_VERSION:
            raise ValueError(f"unsupported spec {spec!r}")
        home, name, operation = str(spec["home"]), str(spec["name"]), str(spec["operation"])
    except (OSError, ValueError, KeyError) as exc:
        print(f"deployflow rollover: cannot read the spec {arguments.spec}: {exc}", file=sys.stderr)
        return 2

    from .client import LocalDeploymentClient

    with LocalDeploymentClient("local", home=home) as client:
        try:
            finished = client._finish_handed_over_update(name, operation)
        except DeploymentError as exc:
            _logger.error("Deployment %r: the update failed: %s", name, exc)
            return 1
    if finished:
        _logger.info("Deployment %r: the update is finished", name)
    else:
        _logger.info("Deployment %r: nothing to finish (the update was finished, replaced or deleted)", name)
    return 0


if __name__ == "__main__":
    sys.exit(main())
