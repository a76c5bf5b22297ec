"""The ``local`` client's endpoints: a router process each, splitting traffic over deployments."""

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
from ...status import State, Status
from .config import (
    check_name,
    endpoint_config,
    endpoint_update,
)
from .control import CONTROL_SECRET_ENV, make_secret
from .lifecycle import (
    _DEPLOYMENTS,
    _ENDPOINTS,
    ROUTER_MODULE,
    SPEC_VERSION,
    ProcessStarts,
    _limits,
    _operation,
    _operation_live,
    _remaining,
    _remove_dir,
)
from .process import (
    exit_reason,
    is_running,
    spawn,
    stop,
)
from .state import StateStore, new_generation, now_iso, process_url

logger = get_logger("deployflow.targets.local.client")


class EndpointsMixin(ProcessStarts):
    """Endpoints of :class:`~.client.LocalDeploymentClient`."""

    store: StateStore
    home: Path

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
                process = self._spawn_router(spec, directory, generation)
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
            try:
                self.wait_for_endpoint(name, timeout=_remaining(settings["startup_timeout"], started),
                                       poll_interval=0.05, max_poll_interval=0.5, not_found_grace=0.0)
            except DeploymentError as error:
                record = self.store.read()[_ENDPOINTS].get(name)
                if record is None or (record.get("process") or {}).get("generation") != generation:
                    raise ConflictError(
                        f"Endpoint {name!r} was deleted or replaced by another caller while it was starting"
                    ) from error
                raise
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
            **_limits(settings),
        }

    def _spawn_router(self, spec: dict[str, Any], directory: Path, generation: str) -> dict[str, Any]:
        """Start a router process with a new control secret (kept in its directory, mode 0600)."""
        secret = make_secret(directory)
        return spawn(ROUTER_MODULE, spec, directory, log_name="router.log", generation=generation,
                     env_extra={CONTROL_SECRET_ENV: secret})

    def _await_router(
        self, name: str, process: dict[str, Any], directory: Path, timeout: float, *, created: bool
    ) -> None:
        """Wait for a new router, then record its URL. When it fails: stop it and, for a create, forget
        the endpoint; a restarted router's record stays, FAILED with its log, for the caller to see."""
        generation = process["generation"]

        def ours(state: dict[str, Any]) -> dict[str, Any] | None:
            record = state[_ENDPOINTS].get(name)
            if record is not None and (record.get("process") or {}).get("generation") == generation:
                return record
            return None

        def undo(state: dict[str, Any], error: BaseException) -> tuple[bool, bool]:
            record = ours(state)
            if record is not None:
                if created:
                    del state[_ENDPOINTS][name]
                else:
                    record["operation"] = None
            return record is None, created or record is None

        def commit(state: dict[str, Any], ready: dict[str, Any]) -> bool:
            record = ours(state)
            if record is not None:
                record["process"]["url"] = ready["url"]
                record["operation"] = None
            return record is not None

        self._wait_started(process, what=f"Endpoint {name!r} (router)", timeout=timeout, ping=self._ping, undo=undo,
                           commit=commit, lost=f"Endpoint {name!r} was deleted or replaced by another caller while it "
                           "was starting")

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
                    restarted = self._spawn_router(spec, directory, generation)
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
