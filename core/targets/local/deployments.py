"""The ``local`` client's deployments: create, update (blue/green switch), delete, read and status."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Mapping

from ...errors import (
    ConflictError,
    DeploymentError,
    InvalidInputError,
    NotFoundError,
)
from ...redaction import get_logger
from ...retry import operation as budget_scope
from ...status import State, Status
from .config import (
    check_exposure,
    check_name,
    deployment_config,
    masked_config,
)
from .lifecycle import (
    _DEPLOYMENTS,
    _ENDPOINTS,
    ROLLOVER_MODULE,
    SERVER_MODULE,
    SPEC_VERSION,
    ProcessStarts,
    _check_model,
    _error_summary,
    _normalized_model_uri,
    _operation,
    _operation_live,
    _remaining,
    _remove_dir,
    _routing_endpoints,
    server_spec,
)
from .process import (
    AUTH_TOKEN_ENV,
    exit_reason,
    is_running,
    spawn,
    stop,
)
from .state import StateStore, new_generation, now_iso, process_url, read_ready

logger = get_logger("deployflow.targets.local.client")


class DeploymentsMixin(ProcessStarts):
    """Deployments of :class:`~.client.LocalDeploymentClient`: one scoring-server process each."""

    store: StateStore
    home: Path

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
        check_exposure(settings, "deployment", credential=token is not None)
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

        def undo(state: dict[str, Any], error: BaseException) -> tuple[bool, bool]:
            return self._forget_start(state, name, process, operation, kind, error), True

        def commit(state: dict[str, Any], ready: dict[str, Any]) -> bool:
            record = state[_DEPLOYMENTS].get(name)
            current = record.get("process") if record else None
            if current is None or current.get("generation") != process["generation"]:
                return False
            current["url"] = ready["url"]
            current["ready"] = ready
            if record.get("operation") and operation and record["operation"]["id"] == operation["id"]:
                record["operation"] = None
            return True

        self._wait_started(process, what=f"Deployment {name!r}", timeout=timeout,
                           ping=lambda url: self._ping(url, token), undo=undo, commit=commit)

    def _clear_operation(self, name: str, operation: dict[str, Any]) -> None:
        """Drop this caller's operation marker from deployment ``name`` (if it is still there)."""
        with self.store.transaction() as state:
            record = state[_DEPLOYMENTS].get(name)
            if record and (record.get("operation") or {}).get("id") == operation["id"]:
                record["operation"] = None

    @staticmethod
    def _forget_start(
        state: dict[str, Any],
        name: str,
        process: dict[str, Any],
        operation: dict[str, Any] | None,
        kind: str,
        error: BaseException,
    ) -> bool:
        """Undo, in ``state``, a start that failed. Returns True when another caller changed it meanwhile."""
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
        check_exposure(settings, "deployment", credential=token is not None)
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
        target = operation["target"]
        old: dict[str, Any] | None = None
        old_stop_timeout = 30.0
        routed_by: list[str] = []

        def undo(state: dict[str, Any], error: BaseException) -> tuple[bool, bool]:
            return self._forget_start(state, name, pending, operation, "update", error), True

        def commit(state: dict[str, Any], ready: dict[str, Any]) -> bool:
            nonlocal old, old_stop_timeout, routed_by
            record = state[_DEPLOYMENTS].get(name)
            if record is None or (record.get("pending") or {}).get("generation") != pending["generation"]:
                return False
            old = record.get("process")
            old_stop_timeout = float(record["config"].get("stop_timeout", 30.0))
            record.update(
                process={**record["pending"], "url": ready["url"], "ready": ready},
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
            return True

        self._wait_started(pending, what=what, timeout=timeout, ping=lambda url: self._ping(url, token),
                           undo=undo, commit=commit, lost="{what}: deleted or changed by another caller meanwhile")
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
                marker.update(owner_pid=helper["pid"], owner_create_time=helper["create_time"],
                              owner_boot_start=helper.get("boot_start"), helper=helper)

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
