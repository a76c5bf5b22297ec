"""The ``local`` target's client: deployments are scoring-server processes on this machine.

See :func:`deployflow.targets.local.target_help` for the user-facing summary, :mod:`.state` for the
on-disk layout and locking, :mod:`.process` for how processes are started, verified and stopped,
:mod:`.router` for endpoints and :mod:`.rollover` for updates that finish after the caller returned.

Waiting. Every create and update blocks until what it started serves, unless config ``wait`` is false:
then it returns as soon as the change is recorded and its process is starting, and
:meth:`~LocalDeploymentClient.wait_for_deployment` (or ``wait_for_endpoint``) tells later how it went,
FAILED with the process's own error if it could not start. A blocking call ends by ``startup_timeout``
(one deadline for everything the call starts) or by the deadline of the
:func:`deployflow.retry.operation` scope it runs in, whichever comes first: that is how a pipeline
step's ``timeout`` bounds a create, server start included.
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

from ...base import BaseDeploymentClient
from ...errors import (
    InvalidInputError,
)
from ...redaction import get_logger, register_secret
from .deployments import DeploymentsMixin
from .endpoints import EndpointsMixin
from .lifecycle import (  # noqa: F401 - names other modules import from here
    ROLLOVER_MODULE,
    ROUTER_MODULE,
    SERVER_MODULE,
    SPEC_VERSION,
    _check_model,
    _normalized_model_uri,
    server_spec,
)
from .scoring import _MAX_TRANSPORTS, SCORING_REQUEST, ScoringMixin, _Pooled  # noqa: F401
from .state import StateStore

__all__ = [
    "LocalDeploymentClient",
    "HOME_ENV",
    "SERVER_MODULE",
    "ROUTER_MODULE",
    "ROLLOVER_MODULE",
    "resolve_home",
    "server_spec",
]

logger = get_logger(__name__)

HOME_ENV = "DEPLOYFLOW_HOME"
DEFAULT_HOME = "~/.deployflow"


def resolve_home(target_uri: str, home: str | os.PathLike[str] | None = None) -> Path:
    """The state directory for ``target_uri``: ``local:///dir`` names it; plain ``local`` uses the
    ``home`` option, else ``$DEPLOYFLOW_HOME``, else ``~/.deployflow``."""
    from_uri: str | None = None
    parsed = urlparse(target_uri)
    if parsed.scheme:
        if parsed.scheme != "local" or parsed.netloc or parsed.query or parsed.fragment:
            raise InvalidInputError(
                f"Bad local target URI {target_uri!r}: use 'local' or 'local:///absolute/state/dir'"
            )
        if parsed.path:
            from_uri = unquote(parsed.path)
            if not os.path.isabs(from_uri):
                raise InvalidInputError(f"The state directory in {target_uri!r} must be an absolute path")
    elif target_uri != "local":
        raise InvalidInputError(f"Bad local target URI {target_uri!r}: use 'local' or 'local:///absolute/dir'")
    if home is not None:
        if not isinstance(home, (str, os.PathLike)) or not str(home).strip():
            raise InvalidInputError(f"Option 'home' must be a directory path, got {home!r}")
        chosen = Path(os.path.expanduser(str(home))).resolve()
        if from_uri is not None and Path(from_uri).resolve() != chosen:
            raise InvalidInputError(
                f"The target URI names state directory {from_uri!r} and option 'home' names {str(home)!r}; "
                "give one of them"
            )
        return chosen
    if from_uri is not None:
        return Path(from_uri).resolve()
    return Path(os.path.expanduser(os.environ.get(HOME_ENV) or DEFAULT_HOME)).resolve()


class LocalDeploymentClient(ScoringMixin, DeploymentsMixin, EndpointsMixin, BaseDeploymentClient):
    """Deploys models as scoring-server processes on this machine, with endpoints that split traffic.

    ``target_uri`` is ``local`` (state in ``$DEPLOYFLOW_HOME`` or ``~/.deployflow``) or
    ``local:///absolute/dir``. Options: ``home`` (the state directory), ``auth_token`` (sent as a bearer
    token to servers that require one) and the HTTP settings of
    :class:`~deployflow.transport.HttpSettings` (``timeout``, ``predict_timeout``, ``max_retries``, ...).

    Several clients, in one process or many, may work on the same state directory at once.
    """

    #: Requests batch scoring keeps in flight. The servers here answer one request at a time per
    #: worker; a queue keeps a worker busy while this process encodes and decodes. On two cores
    #: (benchmarks/bench_batch.py, 2,000-row Arrow chunks, one interleaved sweep) 8, 16 and 32 in flight
    #: gave 72-76, 71-75 and 63-75 % of the server's wrk ceiling: the limit there is this process's own
    #: CPU beside the server's, not the depth. 16 leaves room for a server with several workers. A queued request's read timeout runs
    #: while it waits, so a model that takes more than predict_timeout / 16 per chunk wants a lower
    #: ``concurrency``.
    default_batch_concurrency = 16

    def __init__(
        self,
        target_uri: str = "local",
        *,
        home: str | os.PathLike[str] | None = None,
        auth_token: str | None = None,
        **http_options: Any,
    ) -> None:
        from ...transport import HttpSettings

        http, unknown = HttpSettings.split_options(http_options)
        if unknown:
            known = sorted({"home", "auth_token", *HttpSettings.OPTION_NAMES})
            raise InvalidInputError(
                f"Unknown option(s) for target 'local': {', '.join(sorted(unknown))}. Known: {', '.join(known)}"
            )
        if auth_token is not None and (not isinstance(auth_token, str) or not auth_token.strip()):
            raise InvalidInputError("Option 'auth_token' must be a non-empty string")
        super().__init__(target_uri, **({"home": home} if home is not None else {}), **http)
        self.http_settings = HttpSettings.from_options(http)
        self.home = resolve_home(target_uri, home)
        self.store = StateStore(self.home)
        register_secret(auth_token)
        self._auth_token = auth_token.strip() if auth_token else None
        # Tokens given in the config of deployments this client created: it may call them.
        self._tokens: dict[str, str] = {}
        self._transports: OrderedDict[str, _Pooled] = OrderedDict()
        self._transports_lock = threading.Lock()
        # (deployment, endpoint) -> (state file stamp, url, token); see _route.
        self._routes: dict[tuple[str | None, str | None], tuple[Any, str, str | None]] = {}
