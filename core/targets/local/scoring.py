"""The ``local`` client's HTTP side: the pool of transports, tokens, and scoring (``predict``, batch routes).

Transports are kept per base URL (at most :data:`MAX_TRANSPORTS`); each call leases one, so a transport
pushed out of the pool, or a client closed, while another thread's call uses it is closed by the last
call that used it, never under a running one.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from pathlib import Path
from typing import Any, Callable

from ...errors import (
    AuthenticationError,
    DeploymentError,
    DeploymentFailedError,
    InvalidInputError,
    NotFoundError,
    TransientError,
)
from ...redaction import get_logger
from ...retry import Failure
from ...retry import operation as budget_scope
from ...status import State
from .config import (
    check_name,
)
from .control import read_secret
from .lifecycle import _DEPLOYMENTS, _ENDPOINTS, _PING_TIMEOUT, _operation_live
from .process import (
    exit_reason,
    is_running,
)
from .state import StateStore, process_url

logger = get_logger("deployflow.targets.local.client")

_MAX_TRANSPORTS = 32
MAX_TRANSPORTS = _MAX_TRANSPORTS
#: How a scoring POST to this target's servers may be repeated. Scoring has no side effects
#: (idempotent), and the server answers 500 only when the model's output cannot be written as JSON,
#: which happens again on every try: 500 is not retried, 429/502/503 and connection failures are.
SCORING_REQUEST: dict[str, Any] = {"idempotent": True, "retry_statuses": frozenset({429, 502, 503})}
_CONNECTION_FAILURES = frozenset({Failure.CONNECT, Failure.CONNECT_TIMEOUT, Failure.DROPPED})


class _Pooled:
    """A transport of the client's pool and how many calls use it right now. A transport evicted (or
    the client closed) while calls use it is closed by the last of them, never under a running call."""

    __slots__ = ("transport", "users", "retired")

    def __init__(self, transport: Any) -> None:
        self.transport = transport
        self.users = 0
        self.retired = False


class ScoringMixin:
    """HTTP calls, tokens and scoring of :class:`~.client.LocalDeploymentClient`."""

    _transports: OrderedDict[str, _Pooled]
    _transports_lock: threading.Lock
    _tokens: dict[str, str]
    _routes: dict[tuple[str | None, str | None], tuple[Any, str, str | None]]
    _auth_token: str | None
    http_settings: Any
    store: StateStore
    home: Path

    def _call(self, base_url: str, method: str, path: str, **options: Any) -> Any:
        """One request through the pooled transport of ``base_url`` (see :class:`_Pooled`)."""
        pooled = self._lease(base_url)
        try:
            return pooled.transport.request(method, path, **options)
        finally:
            self._give_back(pooled)

    def _lease(self, base_url: str) -> _Pooled:
        from ...transport import HttpTransport

        retired: list[_Pooled] = []
        with self._transports_lock:
            pooled = self._transports.get(base_url)
            if pooled is None:
                pooled = self._transports[base_url] = _Pooled(HttpTransport(base_url, settings=self.http_settings))
                while len(self._transports) > _MAX_TRANSPORTS:
                    _url, oldest = self._transports.popitem(last=False)
                    oldest.retired = True
                    if oldest.users == 0:
                        retired.append(oldest)
            else:
                self._transports.move_to_end(base_url)
            pooled.users += 1
        for oldest in retired:
            oldest.transport.close()
        return pooled

    def _give_back(self, pooled: _Pooled) -> None:
        with self._transports_lock:
            pooled.users -= 1
            last = pooled.retired and pooled.users == 0
        if last:
            pooled.transport.close()

    def close(self) -> None:
        """Close pooled connections (a transport in use by another thread closes when that call ends).
        Deployments keep running."""
        with self._transports_lock:
            idle = []
            for pooled in self._transports.values():
                pooled.retired = True
                if pooled.users == 0:
                    idle.append(pooled)
            self._transports.clear()
        for pooled in idle:
            pooled.transport.close()

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
            self._call(
                url, "GET", "/ping", headers=self._headers(token), timeout=_PING_TIMEOUT,
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
                self._call(url, "POST", "/-/reload", headers=self._headers(read_secret(process.get("dir"))),
                                             timeout=5.0, total_timeout=5.0, retry=False)
            except DeploymentError as exc:
                logger.warning("Endpoint %r: the router did not confirm the new routes: %s", endpoint_name, exc)

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
                response = self._call(url, "POST", "/invocations", retry=False, **options)
            except TransientError as error:
                if error.failure not in _CONNECTION_FAILURES:
                    raise
                # The connection failed. Either the process died (say so at once) or it is a server
                # that just stopped after an update: look the URL up again, then follow the policy.
                response = self._call(resolve(True), "POST", "/invocations", **options)
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
