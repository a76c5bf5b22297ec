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
import shutil
import threading
import time
import uuid
from collections import OrderedDict
from pathlib import Path
from typing import Any, Callable, Mapping
from urllib.parse import unquote, urlparse

from ...base import BaseDeploymentClient
from ...errors import (
    AuthenticationError,
    ConflictError,
    DeploymentError,
    DeploymentFailedError,
    InvalidInputError,
    NotFoundError,
    TransientError,
)
from ...redaction import get_logger, register_secret
from ...retry import Failure
from ...retry import operation as budget_scope
from ...status import State, Status
from .config import (
    check_name,
    deployment_config,
    endpoint_config,
    endpoint_update,
    masked_config,
)
from .process import (
    AUTH_TOKEN_ENV,
    clip_middle,
    exit_reason,
    is_running,
    stop,
    spawn,
    wait_until_serving,
)
from .state import StateStore, new_generation, now_iso, process_url, read_ready

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
SERVER_MODULE = "deployflow.targets.local.server"
ROUTER_MODULE = "deployflow.targets.local.router"
ROLLOVER_MODULE = "deployflow.targets.local.rollover"
SPEC_VERSION = 1

_DEPLOYMENTS = "deployments"
_ENDPOINTS = "endpoints"
_PING_TIMEOUT = 2.0
#: The longest failure text kept in a record (``last_error``); a longer one loses its middle.
_MAX_ERROR_CHARS = 2000
_MAX_TRANSPORTS = 32
#: How a scoring POST to this target's servers may be repeated. Scoring has no side effects
#: (idempotent), and the server answers 500 only when the model's output cannot be written as JSON,
#: which happens again on every try: 500 is not retried, 429/502/503 and connection failures are.
SCORING_REQUEST: dict[str, Any] = {"idempotent": True, "retry_statuses": frozenset({429, 502, 503})}
_CONNECTION_FAILURES = frozenset({Failure.CONNECT, Failure.CONNECT_TIMEOUT, Failure.DROPPED})


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


def _normalized_model_uri(model_uri: object) -> str:
    if not isinstance(model_uri, str) or not model_uri.strip():
        raise InvalidInputError(f"model_uri must be a non-empty string, got {model_uri!r}")
    model_uri = model_uri.strip()
    parsed = urlparse(model_uri)
    # A plain path becomes absolute, so the record means the same thing to every process.
    if not parsed.scheme or len(parsed.scheme) == 1:
        return os.path.abspath(os.path.expanduser(model_uri))
    return model_uri


def _check_model(model_uri: str, flavor: str | None) -> str | None:
    """Fail before starting anything when the flavor is unknown or a model file is plainly missing."""
    from .models import detect_flavor, normalize_flavor

    canonical = normalize_flavor(flavor)
    if canonical is None:
        detect_flavor(model_uri)
    return flavor


def server_spec(
    name: str, model_uri: str, flavor: str | None, config: Mapping[str, Any], ready_file: Path
) -> dict[str, Any]:
    """The spec file of one scoring-server process (the contract with :mod:`.server`)."""
    return {
        "version": SPEC_VERSION,
        "name": name,
        "model_uri": model_uri,
        "flavor": flavor,
        "host": config["host"],
        "port": config["port"],
        "workers": config["workers"],
        "max_request_bytes": config["max_request_bytes"],
        "request_timeout": config["request_timeout"],
        "ready_file": str(ready_file),
        "log_level": config["log_level"],
    }


def _self_create_time() -> float | None:
    import psutil

    try:
        return psutil.Process(os.getpid()).create_time()
    except psutil.Error:  # pragma: no cover - our own process is always there
        return None


def _operation(kind: str) -> dict[str, Any]:
    """A marker saying "this caller is in the middle of ``kind``" (create, update), with its owner."""
    return {
        "kind": kind,
        "id": uuid.uuid4().hex,
        "owner_pid": os.getpid(),
        "owner_create_time": _self_create_time(),
        "started_at": now_iso(),
    }


def _operation_live(operation: Mapping[str, Any] | None) -> bool:
    """Whether the caller that started ``operation`` is still running (else the marker is stale).

    An update handed over to a :mod:`.rollover` process (``helper``) is live while that process runs.
    """
    import psutil

    if not operation:
        return False
    if operation.get("helper"):
        return is_running(operation["helper"])
    try:
        owner = psutil.Process(int(operation["owner_pid"]))
        created = operation.get("owner_create_time")
        return owner.status() != psutil.STATUS_ZOMBIE and (
            created is None or abs(owner.create_time() - float(created)) < 0.5
        )
    except (psutil.Error, KeyError, TypeError, ValueError):
        return False


def _remaining(timeout: float, started: float) -> float:
    """Seconds left of ``timeout`` counted from ``started`` (a ``time.monotonic()`` reading)."""
    return max(0.0, timeout - (time.monotonic() - started))


def _error_summary(error: BaseException) -> str:
    """The first line of ``error`` (its cause; the log lines after it are in the log), for a record."""
    text = str(error).strip() or type(error).__name__
    return clip_middle(text.splitlines()[0], _MAX_ERROR_CHARS)


def _remove_dir(path: str | None) -> None:
    if not path:
        return
    shutil.rmtree(path, ignore_errors=True)
    try:
        Path(path).parent.rmdir()  # the name's directory, once its last generation is gone
    except OSError:
        pass


def _routing_endpoints(state: Mapping[str, Any], name: str, positive_only: bool = False) -> list[str]:
    found = []
    for endpoint_name, endpoint in state["endpoints"].items():
        for route in endpoint["config"]["routes"]:
            if route["deployment"] == name and (route["traffic"] > 0 or not positive_only):
                found.append(endpoint_name)
    return sorted(found)


class LocalDeploymentClient(BaseDeploymentClient):
    """Deploys models as scoring-server processes on this machine, with endpoints that split traffic.

    ``target_uri`` is ``local`` (state in ``$DEPLOYFLOW_HOME`` or ``~/.deployflow``) or
    ``local:///absolute/dir``. Options: ``home`` (the state directory), ``auth_token`` (sent as a bearer
    token to servers that require one) and the HTTP settings of
    :class:`~deployflow.transport.HttpSettings` (``timeout``, ``predict_timeout``, ``max_retries``, ...).

    Several clients, in one process or many, may work on the same state directory at once.
    """

    #: Requests batch scoring keeps in flight. The servers here answer one request at a time per
    #: worker; a queue keeps a worker busy while this process encodes and decodes. On two cores
    #: (benchmarks/bench_batch.py, 2,000-row chunks) 4 to 16 in flight all reached 80-83 % of the
    #: server's wrk ceiling: the limit there is this process's own CPU beside the server's, not the
    #: depth. 16 leaves room for a server with several workers. A queued request's read timeout runs
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
        self._transports: OrderedDict[str, Any] = OrderedDict()
        self._transports_lock = threading.Lock()
        # (deployment, endpoint) -> (state file stamp, url, token); see _route.
        self._routes: dict[tuple[str | None, str | None], tuple[Any, str, str | None]] = {}

    # ----------------------------------------------------------------------------------------------
    # HTTP
    # ----------------------------------------------------------------------------------------------

    def _transport(self, base_url: str) -> Any:
        from ...transport import HttpTransport

        with self._transports_lock:
            transport = self._transports.get(base_url)
            if transport is None:
                transport = HttpTransport(base_url, settings=self.http_settings)
                self._transports[base_url] = transport
                while len(self._transports) > _MAX_TRANSPORTS:
                    _url, oldest = self._transports.popitem(last=False)
                    oldest.close()
            else:
                self._transports.move_to_end(base_url)
            return transport

    def close(self) -> None:
        """Close pooled connections. Deployments keep running."""
        with self._transports_lock:
            for transport in self._transports.values():
                transport.close()
            self._transports.clear()

    def _headers(self, token: str | None) -> dict[str, str]:
        return {"Authorization": f"Bearer {token}"} if token else {}

    def _remember_token(self, deployment: str, token: str) -> None:
        self._tokens[deployment] = token
        self._routes.clear()  # remembered routes hold the old token

    def _token_for(self, deployment: str | None) -> str | None:
        if self._auth_token:
            return self._auth_token
        return self._tokens.get(deployment) if deployment else None

    def _ping(self, url: str, token: str | None = None) -> bool:
        """Whether the process at ``url`` answers ``/ping`` (a refusal of our credentials counts: it runs)."""
        try:
            self._transport(url).request(
                "GET", "/ping", headers=self._headers(token), timeout=_PING_TIMEOUT,
                total_timeout=_PING_TIMEOUT, retry=False,
            )
            return True
        except AuthenticationError:
            return True
        except DeploymentError:
            return False

    def _reload_routers(self, endpoint_names: list[str]) -> None:
        """Ask the routers of ``endpoint_names`` to re-read the state now (each also notices by itself)."""
        if not endpoint_names:
            return
        state = self.store.read()
        for endpoint_name in endpoint_names:
            record = state["endpoints"].get(endpoint_name)
            process = record.get("process") if record else None
            url = process_url(process)
            if not url or not is_running(process):
                continue
            try:
                self._transport(url).request("POST", "/-/reload", timeout=5.0, total_timeout=5.0, retry=False)
            except DeploymentError as exc:
                logger.warning("Endpoint %r: the router did not confirm the new routes: %s", endpoint_name, exc)

    # ----------------------------------------------------------------------------------------------
    # Deployments
    # ----------------------------------------------------------------------------------------------

    def create_deployment(
        self,
        name: str,
        model_uri: str,
        flavor: str | None = None,
        config: dict[str, Any] | None = None,
        endpoint: str | None = None,
    ) -> dict[str, Any]:
        """Start a scoring server for ``model_uri`` named ``name``.

        Blocks until the server answers ``/ping`` (and, with ``endpoint``, until the endpoint serves),
        within one ``startup_timeout`` for all of it. Fails fast, with the server's own error, when it
        cannot load the model or bind its address (and leaves nothing running). With config ``wait``
        false it returns as soon as the deployment is recorded and its server (and router) are
        starting; a server that then fails leaves the deployment FAILED with its error, which
        :meth:`wait_for_deployment` reports. With ``endpoint``, the deployment joins that endpoint: an
        existing endpoint gets a route to it with 0% traffic (shift traffic with
        :meth:`update_endpoint`); a missing one is created, routing 100% to it. Raises
        :class:`~deployflow.errors.ConflictError` if ``name`` exists.
        """
        started = time.monotonic()
        check_name(name)
        if endpoint is not None:
            check_name(endpoint, "endpoint")
        model_uri = _normalized_model_uri(model_uri)
        flavor = _check_model(model_uri, flavor)
        settings = deployment_config(config)
        token = settings.pop("auth_token")
        wait = settings.pop("wait")
        generation = new_generation()
        directory = self.store.generation_dir(_DEPLOYMENTS, name, generation)
        spec = server_spec(name, model_uri, flavor, settings, directory / "ready.json")
        operation = _operation("create") if wait else None
        process: dict[str, Any] | None = None
        try:
            with self.store.transaction() as state:
                if name in state[_DEPLOYMENTS]:
                    raise ConflictError(f"Deployment {name!r} already exists in {self.home}")
                process = self._spawn_server(spec, directory, generation, token)
                state[_DEPLOYMENTS][name] = {
                    "name": name,
                    "model_uri": model_uri,
                    "flavor": flavor,
                    "config": settings,
                    "auth": token is not None,
                    "created_at": now_iso(),
                    "updated_at": now_iso(),
                    "process": process,
                    "pending": None,
                    "operation": operation,
                    "last_error": None,
                }
        except BaseException:
            self._discard_unrecorded(_DEPLOYMENTS, name, generation, process, directory)
            raise
        if token:
            self._remember_token(name, token)
        if wait:
            self._finish_start(name, process, operation, token, settings["startup_timeout"], kind="create")
        if endpoint is not None:
            # The endpoint's router gets what is left of this create's startup_timeout.
            with budget_scope(timeout=_remaining(settings["startup_timeout"], started) if wait else None):
                self._attach(name, endpoint, wait)
        return self.get_deployment(name)

    def _discard_unrecorded(
        self, kind: str, name: str, generation: str, process: dict[str, Any] | None, directory: Path
    ) -> None:
        """After a failed state write: stop a process that was started but never recorded."""
        try:
            record = self.store.read()[kind].get(name) or {}
        except DeploymentError:
            record = {}
        recorded = {(record.get(key) or {}).get("generation") for key in ("process", "pending")}
        if generation in recorded:
            return
        if process is not None:
            stop(process, timeout=5.0)
        _remove_dir(str(directory))

    def _spawn_server(
        self, spec: dict[str, Any], directory: Path, generation: str, token: str | None
    ) -> dict[str, Any]:
        env = {AUTH_TOKEN_ENV: token} if token else {}
        return spawn(SERVER_MODULE, spec, directory, log_name="server.log", generation=generation, env_extra=env)

    def _finish_start(
        self,
        name: str,
        process: dict[str, Any],
        operation: dict[str, Any] | None,
        token: str | None,
        timeout: float,
        *,
        kind: str,
    ) -> None:
        """Wait for a new server, then record its URL (create) or report the failure and clean up."""
        what = f"Deployment {name!r}"
        try:
            ready = wait_until_serving(process, what=what, timeout=timeout, ping=lambda url: self._ping(url, token))
        except BaseException as error:  # Ctrl-C included: a half-started server must not stay behind
            stop(process, timeout=5.0)
            lost = self._forget_start(name, process, operation, kind, error)
            _remove_dir(process["dir"])
            if lost and isinstance(error, DeploymentError):
                raise ConflictError(
                    f"{what} was deleted or replaced by another caller while it was starting"
                ) from error
            raise
        with self.store.transaction() as state:
            record = state[_DEPLOYMENTS].get(name)
            current = record.get("process") if record else None
            ours = current is not None and current.get("generation") == process["generation"]
            if ours:
                current["url"] = ready["url"]
                current["ready"] = ready
                if record.get("operation") and operation and record["operation"]["id"] == operation["id"]:
                    record["operation"] = None
        if not ours:
            stop(process, timeout=5.0)
            _remove_dir(process["dir"])
            raise ConflictError(f"{what} was deleted or replaced by another caller while it was starting")

    def _clear_operation(self, name: str, operation: dict[str, Any]) -> None:
        """Drop this caller's operation marker from deployment ``name`` (if it is still there)."""
        with self.store.transaction() as state:
            record = state[_DEPLOYMENTS].get(name)
            if record and (record.get("operation") or {}).get("id") == operation["id"]:
                record["operation"] = None

    def _forget_start(
        self,
        name: str,
        process: dict[str, Any],
        operation: dict[str, Any] | None,
        kind: str,
        error: BaseException,
    ) -> bool:
        """Undo the state of a start that failed. Returns True when another caller changed it meanwhile."""
        with self.store.transaction() as state:
            record = state[_DEPLOYMENTS].get(name)
            if record is None:
                return True
            if kind == "create":
                if (record.get("process") or {}).get("generation") != process["generation"]:
                    return True
                del state[_DEPLOYMENTS][name]
                return False
            if (record.get("pending") or {}).get("generation") != process["generation"]:
                return True
            record["pending"] = None
            record["last_error"] = _error_summary(error)
            if record.get("operation") and operation and record["operation"]["id"] == operation["id"]:
                record["operation"] = None
            return False

    def update_deployment(
        self,
        name: str,
        model_uri: str | None = None,
        flavor: str | None = None,
        config: dict[str, Any] | None = None,
        endpoint: str | None = None,
    ) -> dict[str, Any]:
        """Roll deployment ``name`` forward to a new model, flavor and/or config without downtime.

        A new server starts beside the old one; once it answers ``/ping`` the state (and every endpoint
        routing to ``name``) switches to it, and the old server is stopped after its in-flight requests
        finish. If the new server fails, the old one keeps serving, the error is raised, and the
        deployment reads FAILED with that error (its last update failed) until an update succeeds.
        Config keys not given keep their values. With a fixed ``port`` equal to the current one, the
        old server must stop first, so that update has a gap.

        Blocks until the new server serves, within ``startup_timeout``, unless config ``wait`` is false:
        then it returns once the new server is starting, and a :mod:`.rollover` process started for
        this update does the switch (or records the failure) when the server is ready; the deployment
        reads PENDING until then, and :meth:`wait_for_deployment` waits for the outcome.
        """
        check_name(name)
        if endpoint is not None:
            check_name(endpoint, "endpoint")
        current = self.store.read()[_DEPLOYMENTS].get(name)
        if current is None:
            raise NotFoundError(f"Deployment {name!r} does not exist in {self.home}")
        new_uri = _normalized_model_uri(model_uri) if model_uri is not None else current["model_uri"]
        if flavor is None and model_uri is None:
            flavor = current.get("flavor")
        flavor = _check_model(new_uri, flavor)
        given = dict(config or {})
        settings = deployment_config(given, base=current["config"])
        wait = settings.pop("wait")
        token = settings.pop("auth_token")
        if token is None and current.get("auth") and "auth_token" not in given:
            token = self._token_for(name)
            if token is None:
                raise InvalidInputError(
                    f"Deployment {name!r} requires an auth token, which is never stored: pass config "
                    "'auth_token' (or the client option auth_token) to update it"
                )
        generation = new_generation()
        directory = self.store.generation_dir(_DEPLOYMENTS, name, generation)
        spec = server_spec(name, new_uri, flavor, settings, directory / "ready.json")
        operation = _operation("update")
        # What the deployment becomes once the new server serves (read back by a rollover process).
        operation["target"] = {"model_uri": new_uri, "flavor": flavor, "config": settings, "auth": token is not None}
        old_for_port: dict[str, Any] | None = None
        pending: dict[str, Any] | None = None
        try:
            with self.store.transaction() as state:
                record = self._updatable(state, name)
                old = record.get("process")
                old_port = ((old or {}).get("ready") or read_ready(old) or {}).get("port")
                same_port = settings["port"] != 0 and old_port == settings["port"] and is_running(old)
                record["operation"] = operation
                if same_port:
                    old_for_port = old
                else:
                    pending = record["pending"] = self._spawn_server(spec, directory, generation, token)
            if old_for_port is not None:
                logger.warning(
                    "Deployment %r keeps fixed port %s: the old server stops before the new one starts",
                    name, settings["port"],
                )
                stop(old_for_port, timeout=float(current["config"].get("stop_timeout", 30.0)))
                with self.store.transaction() as state:
                    record = state[_DEPLOYMENTS].get(name)
                    if record is None or (record.get("operation") or {}).get("id") != operation["id"]:
                        raise ConflictError(
                            f"Deployment {name!r} was deleted or changed by another caller meanwhile"
                        )
                    pending = record["pending"] = self._spawn_server(spec, directory, generation, token)
        except BaseException:
            self._discard_unrecorded(_DEPLOYMENTS, name, generation, pending, directory)
            self._clear_operation(name, operation)
            raise
        if pending is None:  # pragma: no cover - one of the two branches above always sets it
            raise DeploymentError(f"Deployment {name!r}: no new server was started")
        if token:
            self._remember_token(name, token)
        if wait:
            self._complete_update(name, pending, operation, settings["startup_timeout"], token)
        else:
            self._hand_over_update(name, pending, operation)
        if endpoint is not None:
            self._attach(name, endpoint, wait)
        return self.get_deployment(name)

    def _complete_update(
        self,
        name: str,
        pending: dict[str, Any],
        operation: dict[str, Any],
        timeout: float,
        token: str | None,
    ) -> None:
        """Wait for the new server of an update, then switch the deployment (and its routers) to it and
        stop the old one; or, when it fails, stop it, record why and raise. Run by the updating caller,
        or by a :mod:`.rollover` process for an update that did not wait.

        The update's marker stays until the old server is stopped, and the old server is recorded as
        ``retiring`` meanwhile: a delete in between stops it (and the rollover process), so nothing is
        left running."""
        what = f"Deployment {name!r} (update)"
        try:
            ready = wait_until_serving(pending, what=what, timeout=timeout, ping=lambda url: self._ping(url, token))
        except BaseException as error:  # Ctrl-C included: a half-started server must not stay behind
            stop(pending, timeout=5.0)
            lost = self._forget_start(name, pending, operation, "update", error)
            _remove_dir(pending["dir"])
            if lost and isinstance(error, DeploymentError):
                raise ConflictError(f"{what}: deleted or changed by another caller meanwhile") from error
            raise
        target = operation["target"]
        old: dict[str, Any] | None = None
        old_stop_timeout = 30.0
        routed_by: list[str] = []
        with self.store.transaction() as state:
            record = state[_DEPLOYMENTS].get(name)
            ours = record is not None and (record.get("pending") or {}).get("generation") == pending["generation"]
            if ours:
                old = record.get("process")
                old_stop_timeout = float(record["config"].get("stop_timeout", 30.0))
                pending = {**record["pending"], "url": ready["url"], "ready": ready}
                record.update(
                    process=pending,
                    pending=None,
                    retiring=old,
                    model_uri=target["model_uri"],
                    flavor=target["flavor"],
                    config=target["config"],
                    auth=bool(target["auth"]),
                    updated_at=now_iso(),
                    last_error=None,
                )
                routed_by = _routing_endpoints(state, name)
        if not ours:
            stop(pending, timeout=5.0)
            _remove_dir(pending["dir"])
            raise ConflictError(f"{what}: deleted or changed by another caller meanwhile")
        try:
            # Routers first, so no new request goes to the old server; it then finishes what it has.
            self._reload_routers(routed_by)
            if old is not None:
                stop(old, timeout=old_stop_timeout)
                _remove_dir(old.get("dir"))
        finally:
            with self.store.transaction() as state:
                record = state[_DEPLOYMENTS].get(name)
                if record is not None and (record.get("operation") or {}).get("id") == operation["id"]:
                    record["operation"] = None
                    record["retiring"] = None

    def _hand_over_update(self, name: str, pending: dict[str, Any], operation: dict[str, Any]) -> None:
        """Start the :mod:`.rollover` process that finishes this update, and make it the owner of the
        update's marker (so the deployment stays PENDING exactly as long as someone will finish it)."""
        spec = {"version": SPEC_VERSION, "home": str(self.home), "name": name, "operation": operation["id"]}
        try:
            helper = spawn(ROLLOVER_MODULE, spec, Path(pending["dir"]) / "rollover", log_name="rollover.log",
                           generation=pending["generation"], reap_when_done=True)
        except BaseException as error:
            stop(pending, timeout=5.0)
            self._forget_start(name, pending, operation, "update", error)
            _remove_dir(pending["dir"])
            raise
        with self.store.transaction() as state:
            record = state[_DEPLOYMENTS].get(name)
            marker = record.get("operation") if record else None
            if marker and marker.get("id") == operation["id"]:
                marker.update(owner_pid=helper["pid"], owner_create_time=helper["create_time"], helper=helper)

    def _finish_handed_over_update(self, name: str, operation_id: str) -> bool:
        """Finish the update of ``name`` whose marker has ``operation_id`` (what a :mod:`.rollover`
        process runs). Returns False when there is nothing to finish (done, replaced or deleted)."""
        check_name(name)
        record = self.store.read()[_DEPLOYMENTS].get(name)
        operation = (record or {}).get("operation")
        pending = (record or {}).get("pending")
        if not operation or operation.get("id") != operation_id or not pending:
            return False
        timeout = float(operation["target"]["config"].get("startup_timeout", 120.0))
        # /ping needs no token, so this process never holds one.
        self._complete_update(name, pending, operation, timeout, None)
        return True

    def _updatable(self, state: dict[str, Any], name: str) -> dict[str, Any]:
        record = state[_DEPLOYMENTS].get(name)
        if record is None:
            raise NotFoundError(f"Deployment {name!r} does not exist in {self.home}")
        operation = record.get("operation")
        if _operation_live(operation):
            raise ConflictError(
                f"Deployment {name!r} is being {operation['kind']}d by another caller (pid "
                f"{operation['owner_pid']}); try again once it is ready",
                retryable=True,
            )
        stale = record.get("pending")
        if stale:
            # Left by a caller that died mid-update: its server is of no use to anyone.
            stop(stale, timeout=5.0)
            _remove_dir(stale.get("dir"))
            record["pending"] = None
        retiring = record.get("retiring")
        if retiring:
            # The server an update replaced, left running by a caller that died before stopping it.
            stop(retiring, timeout=5.0)
            _remove_dir(retiring.get("dir"))
            record["retiring"] = None
        return record

    def delete_deployment(
        self, name: str, config: dict[str, Any] | None = None, endpoint: str | None = None
    ) -> None:
        """Stop deployment ``name``'s server (SIGTERM, then SIGKILL after ``stop_timeout``) and forget it.

        Idempotent. A deployment that an endpoint sends traffic to cannot be deleted
        (:class:`~deployflow.errors.ConflictError`): shift its traffic away first. A 0% route to it is
        removed with it. ``config`` may hold ``stop_timeout``; ``endpoint`` is accepted and ignored.
        """
        check_name(name)
        unknown = sorted(set(config or {}) - {"stop_timeout"})
        if unknown:
            raise InvalidInputError(f"delete_deployment takes only config key 'stop_timeout', got {', '.join(unknown)}")
        override = deployment_config({"stop_timeout": config["stop_timeout"]})["stop_timeout"] if (
            config and "stop_timeout" in config
        ) else None
        with self.store.transaction() as state:
            record = state[_DEPLOYMENTS].get(name)
            if record is None:
                return
            busy = _routing_endpoints(state, name, positive_only=True)
            if busy:
                raise ConflictError(
                    f"Deployment {name!r} receives traffic from endpoint(s) {', '.join(busy)}; move its "
                    "traffic elsewhere with update_endpoint (or delete the endpoint) first"
                )
            touched = _routing_endpoints(state, name)
            for endpoint_name in touched:
                routes = state[_ENDPOINTS][endpoint_name]["config"]["routes"]
                state[_ENDPOINTS][endpoint_name]["config"]["routes"] = [r for r in routes if r["deployment"] != name]
            del state[_DEPLOYMENTS][name]
        self._reload_routers(touched)
        helper = (record.get("operation") or {}).get("helper")
        if helper:
            stop(helper, timeout=5.0)  # a rollover process: nothing is left for it to finish
        timeout = override if override is not None else float(record["config"].get("stop_timeout", 30.0))
        for key in ("pending", "retiring", "process"):
            stop(record.get(key), timeout=timeout)
            _remove_dir((record.get(key) or {}).get("dir"))
        self._tokens.pop(name, None)

    def get_deployment(self, name: str, endpoint: str | None = None) -> dict[str, Any]:
        """The record of deployment ``name``: url, pid, model_uri, flavor, config (token masked), state,
        reason, endpoints routing to it. Raises :class:`~deployflow.errors.NotFoundError` if none (or,
        with ``endpoint``, if that endpoint does not route to it)."""
        check_name(name)
        state = self.store.read()
        record = state[_DEPLOYMENTS].get(name)
        if record is None:
            raise NotFoundError(f"Deployment {name!r} does not exist in {self.home}")
        if endpoint is not None and endpoint not in _routing_endpoints(state, name):
            raise NotFoundError(f"Endpoint {endpoint!r} has no route to deployment {name!r}")
        return self._deployment_view(state, record)

    def list_deployments(self, endpoint: str | None = None) -> list[dict[str, Any]]:
        """Every deployment (those ``endpoint`` routes to, when given), sorted by name."""
        state = self.store.read()
        names = sorted(state[_DEPLOYMENTS])
        if endpoint is not None:
            check_name(endpoint, "endpoint")
            record = state[_ENDPOINTS].get(endpoint)
            if record is None:
                raise NotFoundError(f"Endpoint {endpoint!r} does not exist in {self.home}")
            routed = {route["deployment"] for route in record["config"]["routes"]}
            names = [name for name in names if name in routed]
        return [self._deployment_view(state, state[_DEPLOYMENTS][name]) for name in names]

    def _deployment_view(self, state: Mapping[str, Any], record: Mapping[str, Any]) -> dict[str, Any]:
        status = self._deployment_state(record, ping=False)
        process = record.get("process") or {}
        ready = process.get("ready") or read_ready(process) or {}
        view = {
            "name": record["name"],
            "state": status.state.value,
            "reason": status.reason,
            "url": process_url(process),
            "pid": process.get("pid"),
            "model_uri": record["model_uri"],
            "flavor": ready.get("flavor") or record.get("flavor"),
            "config": masked_config(record["config"], bool(record.get("auth"))),
            "endpoints": _routing_endpoints(state, record["name"]),
            "created_at": record.get("created_at"),
            "updated_at": record.get("updated_at"),
            "log_path": process.get("log_path"),
        }
        if record.get("pending"):
            view["pending"] = {"pid": record["pending"].get("pid"), "started_at": record["pending"].get("started_at")}
        if record.get("last_error"):
            view["last_error"] = record["last_error"]
        return view

    def _deployment_state(self, record: Mapping[str, Any], *, ping: bool) -> Status:
        """READY / PENDING / FAILED of one deployment record, from its process and ready file.

        The state answers "is what was last asked for serving?": while an update is starting it is
        PENDING, and after an update failed (or was left unfinished by a caller that ended) it is
        FAILED with that reason, although the previous server keeps serving requests, until an update
        succeeds.
        """
        process = record.get("process")
        operation = record.get("operation")
        busy = _operation_live(operation)
        if not process:
            if busy:
                return Status(State.PENDING, reason=f"being {operation['kind']}d", raw=record)
            return Status(State.FAILED, reason="no server process is recorded", raw=record)
        if not is_running(process):
            if busy and operation["kind"] == "update":
                return Status(State.PENDING, reason="being updated (the old server has stopped)", raw=record)
            reason = exit_reason(process)
            if record.get("last_error"):
                reason += f"; its last update failed too: {record['last_error']}"
            return Status(State.FAILED, reason=reason, raw=record)
        url = process_url(process)
        if url is None:
            return Status(State.PENDING, reason=f"server process {process['pid']} is starting", raw=record)
        if ping and not self._ping(url, self._token_for(record["name"])):
            return Status(State.PENDING, reason=f"server process {process['pid']} does not answer {url}/ping",
                          raw=record)
        if record.get("pending"):
            if busy:
                return Status(State.PENDING, reason="an update is starting; the previous server keeps serving",
                              raw=record)
            return Status(
                State.FAILED,
                reason="an update was left unfinished by a caller that ended; the previous server keeps serving "
                "(update it again)",
                raw=record,
            )
        if record.get("last_error"):
            return Status(
                State.FAILED,
                reason=f"its last update failed; the previous server keeps serving: {record['last_error']}",
                raw=record,
            )
        return Status(State.READY, raw=record)

    def deployment_status(self, name: str, endpoint: str | None = None) -> Status:
        """Where deployment ``name`` stands: the state record, the process's liveness and ``/ping``."""
        check_name(name)
        state = self.store.read()
        record = state[_DEPLOYMENTS].get(name)
        if record is None:
            return Status(State.NOT_FOUND, reason=f"deployment {name!r} does not exist")
        if endpoint is not None and endpoint not in _routing_endpoints(state, name):
            return Status(State.NOT_FOUND, reason=f"endpoint {endpoint!r} has no route to deployment {name!r}")
        return self._deployment_state(record, ping=True)

    # ----------------------------------------------------------------------------------------------
    # Scoring
    # ----------------------------------------------------------------------------------------------

    def predict(
        self, deployment_name: str | None = None, inputs: Any = None, endpoint: str | None = None
    ) -> Any:
        """Score ``inputs`` with a deployment (``deployment_name``) or through an endpoint's router.

        ``inputs`` is anything :func:`deployflow.payloads.encode_request` takes: a DataFrame, an array,
        a list, or a dict in the scoring protocol's form. To pass model params, send that form:
        ``{"inputs": [[1, 2]], "params": {"k": 3}}``. Returns a
        :class:`~deployflow.PredictionsResponse`.
        """
        from ...payloads import decode_response, encode_request

        resolve = self._resolver(deployment_name, endpoint, "predict")
        body, content_type = encode_request(inputs)
        url, token = self._route(deployment_name, endpoint, resolve)
        headers = {"Content-Type": content_type, **self._headers(token)}
        options = {"data": body, "headers": headers, "kind": "predict", **SCORING_REQUEST}
        # One budget for the call: the attempt to the remembered URL and the retries after a new lookup.
        with budget_scope(attempts=self.http_settings.retry.max_attempts):
            try:
                response = self._transport(url).request("POST", "/invocations", retry=False, **options)
            except TransientError as error:
                if error.failure not in _CONNECTION_FAILURES:
                    raise
                # The connection failed. Either the process died (say so at once) or it is a server
                # that just stopped after an update: look the URL up again, then follow the policy.
                response = self._transport(resolve(True)).request("POST", "/invocations", **options)
        return decode_response(response.content)

    def batch_http_route(self, deployment_name: str | None = None, endpoint: str | None = None) -> Any:
        """Where :func:`deployflow.batch_predict` posts its chunks (see :mod:`deployflow.scoring_route`):
        the server's or router's ``/invocations``, this client's token and HTTP settings, and a lookup
        of the URL again after a connection failure (a server replaced by an update)."""
        from ...scoring_route import HttpRoute

        resolve = self._resolver(deployment_name, endpoint, "batch scoring")

        def route(check_alive: bool) -> HttpRoute:
            if check_alive:
                url, token = resolve(True), self._route(deployment_name, endpoint, resolve)[1]
            else:
                url, token = self._route(deployment_name, endpoint, resolve)
            return HttpRoute(f"{url}/invocations", self._headers(token), self.http_settings, lambda: route(True),
                             arrow=True, **SCORING_REQUEST)

        return route(False)

    def _resolver(self, deployment_name: str | None, endpoint: str | None, what: str) -> Callable[[bool], str]:
        """How to find the URL that scores for ``deployment_name`` or ``endpoint`` (exactly one)."""
        if (deployment_name is None) == (endpoint is None):
            raise InvalidInputError(f"{what} needs exactly one of deployment_name and endpoint")
        if endpoint is not None:
            check_name(endpoint, "endpoint")
            return lambda check: self._endpoint_url(endpoint, check)
        check_name(deployment_name)
        return lambda check: self._deployment_url(deployment_name, check)

    def _route(
        self, deployment_name: str | None, endpoint: str | None, resolve: Callable[[bool], str]
    ) -> tuple[str, str | None]:
        """The URL and token to score with, remembered for as long as the state file is unchanged:
        reading the state and the ready file for every request cost about 90 us of a batch job's
        per-chunk time (measured). A server that dies without a state change is caught by the
        caller, which looks the URL up again when the connection fails."""
        key = (deployment_name, endpoint)
        stamp = self.store.stamp()
        cached = self._routes.get(key)
        if cached is not None and stamp is not None and cached[0] == stamp:
            return cached[1], cached[2]
        url = resolve(False)
        if endpoint is not None:
            token = self._auth_token or self._endpoint_token(endpoint)
        else:
            token = self._token_for(deployment_name)
        if stamp is not None:
            self._routes[key] = (stamp, url, token)
        return url, token

    def _deployment_url(self, name: str, check_alive: bool = False) -> str:
        """The URL of deployment ``name`` from the state; with ``check_alive``, only if its server runs."""
        record = self.store.read()[_DEPLOYMENTS].get(name)
        if record is None:
            raise NotFoundError(f"Deployment {name!r} does not exist in {self.home}")
        url = process_url(record.get("process"))
        if url is None or (check_alive and not is_running(record.get("process"))):
            status = self._deployment_state(record, ping=False)
            if status.state is State.FAILED:
                raise DeploymentFailedError(f"Deployment {name!r} has failed: {status.reason}", reason=status.reason)
            if url is None or status.state is not State.READY:
                raise TransientError(f"Deployment {name!r} is not serving yet: {status.reason}")
        return url

    def _endpoint_url(self, endpoint: str, check_alive: bool = False) -> str:
        """The URL of endpoint ``endpoint``'s router; with ``check_alive``, only if the router runs."""
        record = self.store.read()[_ENDPOINTS].get(endpoint)
        if record is None:
            raise NotFoundError(f"Endpoint {endpoint!r} does not exist in {self.home}")
        process = record.get("process")
        url = process_url(process)
        if url is None or check_alive:
            if not is_running(process):
                if _operation_live(record.get("operation")):
                    raise TransientError(f"Endpoint {endpoint!r} is not serving yet: its router is starting")
                reason = exit_reason(process or {}, "router")
                raise DeploymentFailedError(f"Endpoint {endpoint!r} has failed: {reason}", reason=reason)
            if url is None:
                raise TransientError(f"Endpoint {endpoint!r} is not serving yet: its router is starting")
        return url

    def _endpoint_token(self, endpoint: str) -> str | None:
        record = self.store.read()[_ENDPOINTS].get(endpoint)
        for route in (record or {}).get("config", {}).get("routes", []):
            if route["deployment"] in self._tokens:
                return self._tokens[route["deployment"]]
        return None

    # ----------------------------------------------------------------------------------------------
    # Endpoints
    # ----------------------------------------------------------------------------------------------

    def create_endpoint(self, name: str, config: dict[str, Any] | None = None) -> dict[str, Any]:
        """Start a router for endpoint ``name`` that splits ``/invocations`` over config ``routes``
        (``[{"deployment": "a", "traffic": 90}, {"deployment": "b", "traffic": 10}]``).

        Blocks until the router answers and every deployment it sends traffic to is READY, within one
        ``startup_timeout`` for both, unless config ``wait`` is false: then it returns as soon as the
        endpoint is recorded and its router is starting (a router that then dies leaves the endpoint
        FAILED with its error). Raises :class:`~deployflow.errors.ConflictError` if ``name`` exists and
        :class:`~deployflow.errors.InvalidInputError` if a route names a missing deployment.
        """
        started = time.monotonic()
        check_name(name, "endpoint")
        settings = endpoint_config(config)
        wait = settings.pop("wait")
        generation = new_generation()
        directory = self.store.generation_dir(_ENDPOINTS, name, generation)
        spec = self._router_spec(name, settings, directory)
        operation = _operation("create") if wait else None
        process: dict[str, Any] | None = None
        try:
            with self.store.transaction() as state:
                if name in state[_ENDPOINTS]:
                    raise ConflictError(f"Endpoint {name!r} already exists in {self.home}")
                self._check_routes(state, settings["routes"])
                process = spawn(ROUTER_MODULE, spec, directory, log_name="router.log", generation=generation)
                state[_ENDPOINTS][name] = {
                    "name": name,
                    "config": settings,
                    "created_at": now_iso(),
                    "updated_at": now_iso(),
                    "process": process,
                    "operation": operation,
                }
        except BaseException:
            self._discard_unrecorded(_ENDPOINTS, name, generation, process, directory)
            raise
        if wait:
            self._await_router(name, process, directory, settings["startup_timeout"], created=True)
            self.wait_for_endpoint(name, timeout=_remaining(settings["startup_timeout"], started), poll_interval=0.05,
                                   max_poll_interval=0.5, not_found_grace=0.0)
        return self.get_endpoint(name)

    def _router_spec(self, name: str, settings: Mapping[str, Any], directory: Path) -> dict[str, Any]:
        """The spec file of one router process (the contract with :mod:`.router`)."""
        return {
            "version": SPEC_VERSION,
            "name": name,
            "state_file": str(self.store.state_file),
            "host": settings["host"],
            "port": settings["port"],
            "max_request_bytes": settings["max_request_bytes"],
            "request_timeout": settings["request_timeout"],
            "ready_file": str(directory / "ready.json"),
            "log_level": settings["log_level"],
            "stop_timeout": settings["stop_timeout"],
        }

    def _await_router(
        self, name: str, process: dict[str, Any], directory: Path, timeout: float, *, created: bool
    ) -> None:
        """Wait for a new router, then record its URL. When it fails: stop it and, for a create, forget
        the endpoint; a restarted router's record stays, FAILED with its log, for the caller to see."""
        what = f"Endpoint {name!r}"
        generation = process["generation"]
        try:
            ready = wait_until_serving(process, what=f"{what} (router)", timeout=timeout, ping=self._ping)
        except BaseException:  # Ctrl-C included: a half-started router must not stay behind
            stop(process, timeout=5.0)
            with self.store.transaction() as state:
                record = state[_ENDPOINTS].get(name)
                if record and (record.get("process") or {}).get("generation") == generation:
                    if created:
                        del state[_ENDPOINTS][name]
                    else:
                        record["operation"] = None
            if created:
                _remove_dir(str(directory))
            raise
        with self.store.transaction() as state:
            record = state[_ENDPOINTS].get(name)
            ours = record is not None and (record.get("process") or {}).get("generation") == generation
            if ours:
                record["process"]["url"] = ready["url"]
                record["operation"] = None
        if not ours:
            stop(process, timeout=5.0)
            _remove_dir(str(directory))
            raise ConflictError(f"{what} was deleted or replaced by another caller while it was starting")

    def _check_routes(self, state: Mapping[str, Any], routes: list[dict[str, Any]]) -> None:
        missing = [route["deployment"] for route in routes if route["deployment"] not in state[_DEPLOYMENTS]]
        if missing:
            raise InvalidInputError(
                f"The routes name deployment(s) that do not exist in {self.home}: {', '.join(missing)}"
            )

    def update_endpoint(self, endpoint: str, config: dict[str, Any] | None = None) -> dict[str, Any]:
        """Change endpoint ``endpoint``'s ``routes`` (traffic split) without dropping a request.

        The router switches to the new routes before this returns; requests it is forwarding finish
        where they started. A router that is not running any more (it crashed or was killed) is started
        again, with the endpoint's settings and the new routes. The other settings cannot change on an
        endpoint (delete it and create it again); they may be given with the values they have, so a
        retried step can repeat its whole config. Waits until the endpoint is READY, within its
        ``startup_timeout``, unless config ``wait`` is false.
        """
        started = time.monotonic()
        check_name(endpoint, "endpoint")
        current = self.store.read()[_ENDPOINTS].get(endpoint)
        if current is None:
            raise NotFoundError(f"Endpoint {endpoint!r} does not exist in {self.home}")
        changes = endpoint_update(config, current["config"])
        wait = changes.pop("wait", True)
        restarted: dict[str, Any] | None = None
        generation = new_generation()
        directory = self.store.generation_dir(_ENDPOINTS, endpoint, generation)
        old_dir: str | None = None
        try:
            with self.store.transaction() as state:
                record = state[_ENDPOINTS].get(endpoint)
                if record is None:
                    raise NotFoundError(f"Endpoint {endpoint!r} does not exist in {self.home}")
                if "routes" in changes:
                    self._check_routes(state, changes["routes"])
                    record["config"]["routes"] = changes["routes"]
                    record["updated_at"] = now_iso()
                startup_timeout = float(record["config"].get("startup_timeout", 120.0))
                process = record.get("process")
                if not is_running(process) and not _operation_live(record.get("operation")):
                    spec = self._router_spec(endpoint, record["config"], directory)
                    restarted = spawn(ROUTER_MODULE, spec, directory, log_name="router.log", generation=generation)
                    old_dir = (process or {}).get("dir")
                    record.update(process=restarted, operation=_operation("update") if wait else None,
                                  updated_at=now_iso())
        except BaseException:
            self._discard_unrecorded(_ENDPOINTS, endpoint, generation, restarted, directory)
            raise
        if restarted is None:
            self._reload_routers([endpoint])
        else:
            logger.info("Endpoint %r: its router was not running; started a new one (pid %s)", endpoint,
                        restarted["pid"])
            _remove_dir(old_dir)
            if wait:
                self._await_router(endpoint, restarted, directory, startup_timeout, created=False)
        if wait:
            self.wait_for_endpoint(endpoint, timeout=_remaining(startup_timeout, started), poll_interval=0.05,
                                   max_poll_interval=0.5, not_found_grace=0.0)
        return self.get_endpoint(endpoint)

    def _attach(self, name: str, endpoint: str, wait: bool) -> None:
        """Put deployment ``name`` behind ``endpoint``: a 0% route on an existing one, else a new
        endpoint routing 100% to it."""
        for _attempt in range(3):
            with self.store.transaction() as state:
                record = state[_ENDPOINTS].get(endpoint)
                if record is not None:
                    routes = record["config"]["routes"]
                    if all(route["deployment"] != name for route in routes):
                        routes.append({"deployment": name, "traffic": 0.0})
                        record["updated_at"] = now_iso()
            if record is not None:
                self._reload_routers([endpoint])
                return
            try:
                self.create_endpoint(endpoint, {"routes": [{"deployment": name, "traffic": 100}], "wait": wait})
                return
            except ConflictError:
                continue  # created by someone else in the meantime: join it
        raise ConflictError(f"Endpoint {endpoint!r} kept changing while deployment {name!r} tried to join it")

    def delete_endpoint(self, endpoint: str) -> None:
        """Stop endpoint ``endpoint``'s router and forget it. Idempotent; its deployments keep running."""
        check_name(endpoint, "endpoint")
        with self.store.transaction() as state:
            record = state[_ENDPOINTS].pop(endpoint, None)
        if record is None:
            return
        stop(record.get("process"), timeout=float(record["config"].get("stop_timeout", 30.0)))
        _remove_dir((record.get("process") or {}).get("dir"))

    def list_endpoints(self) -> list[dict[str, Any]]:
        """Every endpoint, sorted by name."""
        state = self.store.read()
        return [self._endpoint_view(state, state[_ENDPOINTS][name]) for name in sorted(state[_ENDPOINTS])]

    def get_endpoint(self, endpoint: str) -> dict[str, Any]:
        """The record of endpoint ``endpoint``: url, pid, routes, config, state and reason."""
        check_name(endpoint, "endpoint")
        state = self.store.read()
        record = state[_ENDPOINTS].get(endpoint)
        if record is None:
            raise NotFoundError(f"Endpoint {endpoint!r} does not exist in {self.home}")
        return self._endpoint_view(state, record)

    def _endpoint_view(self, state: Mapping[str, Any], record: Mapping[str, Any]) -> dict[str, Any]:
        status = self._endpoint_state(state, record, ping=False)
        process = record.get("process") or {}
        return {
            "name": record["name"],
            "state": status.state.value,
            "reason": status.reason,
            "url": process_url(process),
            "pid": process.get("pid"),
            "routes": [dict(route) for route in record["config"]["routes"]],
            "config": dict(record["config"]),
            "created_at": record.get("created_at"),
            "updated_at": record.get("updated_at"),
            "log_path": process.get("log_path"),
        }

    def _endpoint_state(self, state: Mapping[str, Any], record: Mapping[str, Any], *, ping: bool) -> Status:
        process = record.get("process")
        busy = _operation_live(record.get("operation"))
        if not is_running(process):
            if busy:
                return Status(State.PENDING, reason="the router is starting", raw=record)
            return Status(State.FAILED, reason=exit_reason(process or {}, "router"), raw=record)
        url = process_url(process)
        if url is None:
            return Status(State.PENDING, reason=f"router process {process['pid']} is starting", raw=record)
        if ping and not self._ping(url):
            return Status(State.PENDING, reason=f"router process {process['pid']} does not answer /ping", raw=record)
        for route in record["config"]["routes"]:
            if route["traffic"] <= 0:
                continue
            deployment = state[_DEPLOYMENTS].get(route["deployment"])
            if deployment is None:
                return Status(State.FAILED, reason=f"deployment {route['deployment']!r} does not exist", raw=record)
            status = self._deployment_state(deployment, ping=ping)
            if status.state is not State.READY:
                return Status(status.state, reason=f"deployment {route['deployment']!r}: {status.reason}", raw=record)
        return Status(State.READY, raw=record)

    def get_traffic_split(self, endpoint: str) -> dict[str, float]:
        """Endpoint ``endpoint``'s traffic split: deployment name -> percent of requests (adds up to 100).

        With :meth:`set_traffic_split`, the interface :mod:`deployflow.promotion` uses to shift traffic.
        """
        return {route["deployment"]: float(route["traffic"]) for route in self.get_endpoint(endpoint)["routes"]}

    def set_traffic_split(self, endpoint: str, split: Mapping[str, float], *, wait: bool = True) -> dict[str, Any]:
        """Give each deployment in ``split`` its percent of ``endpoint``'s requests (percents add up to 100;
        a deployment left out gets none). The router switches before this returns; see
        :meth:`update_endpoint`, which this calls."""
        routes = [{"deployment": name, "traffic": weight} for name, weight in split.items()]
        return self.update_endpoint(endpoint, {"routes": routes, "wait": wait})

    def endpoint_status(self, endpoint: str) -> Status:
        """READY when the router answers and every deployment it sends traffic to is READY."""
        check_name(endpoint, "endpoint")
        state = self.store.read()
        record = state[_ENDPOINTS].get(endpoint)
        if record is None:
            return Status(State.NOT_FOUND, reason=f"endpoint {endpoint!r} does not exist")
        return self._endpoint_state(state, record, ping=True)
