"""The client interface every deployment target implements.

:class:`BaseDeploymentClient` has MLflow's method set, names, arguments and defaults, so plugins and
code written for ``mlflow.deployments`` work unchanged. On top of it every target gets:

* :meth:`~BaseDeploymentClient.deployment_status` / :meth:`~BaseDeploymentClient.endpoint_status`,
  which a target overrides to report a :class:`~deployflow.Status`;
* :meth:`~BaseDeploymentClient.wait_for_deployment` / :meth:`~BaseDeploymentClient.wait_for_endpoint`
  and their ``_async`` twins, written once in :mod:`deployflow.waiting`.
"""

from __future__ import annotations

import abc
from typing import TYPE_CHECKING, Any, ClassVar

from .errors import NotSupportedError, is_not_found
from .redaction import protect_options, redact
from .status import State, Status, status_from_record
from .waiting import DEFAULT_WAIT_TIMEOUT, StatusCallback, WaitPlan, wait_until_ready, wait_until_ready_async

if TYPE_CHECKING:
    from .predictions import PredictionsResponse

__all__ = ["BaseDeploymentClient"]

class BaseDeploymentClient(abc.ABC):
    """Base class of every deployment client.

    A target subclasses it, implements the abstract methods (and the endpoint methods when the target
    has endpoints), and overrides :meth:`deployment_status` / :meth:`endpoint_status` when it can say
    more than "exists". Construct clients with :func:`deployflow.get_deploy_client`, which passes the
    full target URI and any keyword options (credentials, timeouts, retry settings).

    The options are kept in :attr:`options`. Those a target names in :attr:`secret_options` are kept
    wrapped in :class:`~deployflow.redaction.Secret`, so printing or logging the options, or the
    client, never shows a credential; ``get_deploy_client(client.target_uri, **client.options)``
    still builds an equal client.
    """

    #: Names of the constructor options that hold credentials (``"token"``, ``"api_key"``, ...). When
    #: ``"headers"`` is listed, the values of its credential headers (``Authorization``, ``api-key``,
    #: ...) are wrapped instead of the whole dict. Empty here: a plugin opts in.
    secret_options: ClassVar[frozenset[str]] = frozenset()

    def __init__(self, target_uri: str, **options: Any) -> None:
        self.target_uri = target_uri
        self.options = protect_options(options, self.secret_options)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(target_uri={redact(getattr(self, 'target_uri', '?'))!r})"

    # ----------------------------------------------------------------------------------------------
    # MLflow's interface
    # ----------------------------------------------------------------------------------------------

    @abc.abstractmethod
    def create_deployment(
        self,
        name: str,
        model_uri: str,
        flavor: str | None = None,
        config: dict[str, Any] | None = None,
        endpoint: str | None = None,
    ) -> dict[str, Any]:
        """Deploy ``model_uri`` as ``name``; blocks until it can serve unless the target's config says not
        to. Raises :class:`~deployflow.errors.ConflictError` when ``name`` exists. Returns a dict with at
        least a ``name`` key."""

    @abc.abstractmethod
    def update_deployment(
        self,
        name: str,
        model_uri: str | None = None,
        flavor: str | None = None,
        config: dict[str, Any] | None = None,
        endpoint: str | None = None,
    ) -> dict[str, Any] | None:
        """Update the model, flavor (needs ``model_uri``) and/or config of deployment ``name``; blocks
        until the updated deployment can serve."""

    @abc.abstractmethod
    def delete_deployment(
        self, name: str, config: dict[str, Any] | None = None, endpoint: str | None = None
    ) -> None:
        """Delete deployment ``name``. Idempotent: deleting what does not exist is not an error."""

    @abc.abstractmethod
    def list_deployments(self, endpoint: str | None = None) -> list[dict[str, Any]]:
        """All deployments (of ``endpoint`` when given), each a dict with a ``name`` key."""

    @abc.abstractmethod
    def get_deployment(self, name: str, endpoint: str | None = None) -> dict[str, Any]:
        """The record of deployment ``name``; raises :class:`~deployflow.errors.NotFoundError` if none."""

    @abc.abstractmethod
    def predict(
        self, deployment_name: str | None = None, inputs: Any = None, endpoint: str | None = None
    ) -> PredictionsResponse:
        """Score ``inputs`` against a deployment or an endpoint."""

    def predict_stream(
        self, deployment_name: str | None = None, inputs: Any = None, endpoint: str | None = None
    ) -> Any:
        """Score ``inputs`` and yield the answer in pieces, for targets that stream."""
        raise NotSupportedError(f"predict_stream is not supported by the {type(self).__name__} target")

    def explain(self, deployment_name: str | None = None, df: Any = None, endpoint: str | None = None) -> Any:
        """Explain the predictions for ``df``, for targets that can."""
        raise NotSupportedError("Computing model explanations is not yet supported for this deployment target")

    def create_endpoint(self, name: str, config: dict[str, Any] | None = None) -> dict[str, Any]:
        """Create endpoint ``name``; raises :class:`~deployflow.errors.ConflictError` when it exists."""
        raise NotSupportedError(self._no_endpoints("create_endpoint"))

    def update_endpoint(self, endpoint: str, config: dict[str, Any] | None = None) -> Any:
        """Change endpoint ``endpoint``'s configuration."""
        raise NotSupportedError(self._no_endpoints("update_endpoint"))

    def delete_endpoint(self, endpoint: str) -> None:
        """Delete endpoint ``endpoint``. Idempotent."""
        raise NotSupportedError(self._no_endpoints("delete_endpoint"))

    def list_endpoints(self) -> list[dict[str, Any]]:
        """All endpoints, each a dict with a ``name`` key."""
        raise NotSupportedError(self._no_endpoints("list_endpoints"))

    def get_endpoint(self, endpoint: str) -> dict[str, Any]:
        """The record of endpoint ``endpoint``; raises :class:`~deployflow.errors.NotFoundError` if none."""
        raise NotSupportedError(self._no_endpoints("get_endpoint"))

    def _no_endpoints(self, method: str) -> str:
        return (
            f"{method} is unimplemented in base client: the {type(self).__name__} target does not "
            "provide endpoints"
        )

    # ----------------------------------------------------------------------------------------------
    # Readiness, added by deployflow
    # ----------------------------------------------------------------------------------------------

    def deployment_status(self, name: str, endpoint: str | None = None) -> Status:
        """Where deployment ``name`` stands now. Targets override this; the default reads
        :meth:`get_deployment` and treats a record without a recognisable state as READY (MLflow's
        create returns only once the deployment serves)."""
        kwargs = {"endpoint": endpoint} if endpoint is not None else {}
        try:
            record = self.get_deployment(name, **kwargs)
        except Exception as exc:
            if is_not_found(exc):
                return Status(State.NOT_FOUND, reason=str(exc))
            raise
        return status_from_record(record)

    def endpoint_status(self, endpoint: str) -> Status:
        """Where endpoint ``endpoint`` stands now. Targets override this; the default reads
        :meth:`get_endpoint`."""
        try:
            record = self.get_endpoint(endpoint)
        except Exception as exc:
            if is_not_found(exc):
                return Status(State.NOT_FOUND, reason=str(exc))
            raise
        return status_from_record(record)

    async def deployment_status_async(self, name: str, endpoint: str | None = None) -> Status:
        """:meth:`deployment_status` without blocking the event loop (runs it in a worker thread)."""
        import asyncio

        return await asyncio.to_thread(self.deployment_status, name, endpoint)

    async def endpoint_status_async(self, endpoint: str) -> Status:
        """:meth:`endpoint_status` without blocking the event loop (runs it in a worker thread)."""
        import asyncio

        return await asyncio.to_thread(self.endpoint_status, endpoint)

    def wait_for_deployment(
        self,
        name: str,
        endpoint: str | None = None,
        *,
        timeout: float = DEFAULT_WAIT_TIMEOUT,
        poll_interval: float = 1.0,
        max_poll_interval: float = 15.0,
        not_found_grace: float = 30.0,
        on_change: StatusCallback | None = None,
    ) -> Status:
        """Block until deployment ``name`` is READY and return its status.

        Raises :class:`~deployflow.errors.DeploymentFailedError` as soon as it FAILED (with the
        target's reason), :class:`~deployflow.errors.NotFoundError` when it stays missing past
        ``not_found_grace`` seconds, and :class:`~deployflow.errors.WaitTimeoutError` after ``timeout``
        seconds with the last state seen. Transient errors while polling are tolerated.
        ``on_change`` is called with each new state (not each poll).
        """
        plan = self._plan(f"Deployment {name!r}", timeout, poll_interval, max_poll_interval, not_found_grace, on_change)
        return wait_until_ready(lambda: self.deployment_status(name, endpoint), plan)

    def wait_for_endpoint(
        self,
        endpoint: str,
        *,
        timeout: float = DEFAULT_WAIT_TIMEOUT,
        poll_interval: float = 1.0,
        max_poll_interval: float = 15.0,
        not_found_grace: float = 30.0,
        on_change: StatusCallback | None = None,
    ) -> Status:
        """Block until endpoint ``endpoint`` is READY; the same rules as :meth:`wait_for_deployment`."""
        plan = self._plan(f"Endpoint {endpoint!r}", timeout, poll_interval, max_poll_interval, not_found_grace, on_change)
        return wait_until_ready(lambda: self.endpoint_status(endpoint), plan)

    async def wait_for_deployment_async(
        self,
        name: str,
        endpoint: str | None = None,
        *,
        timeout: float = DEFAULT_WAIT_TIMEOUT,
        poll_interval: float = 1.0,
        max_poll_interval: float = 15.0,
        not_found_grace: float = 30.0,
        on_change: StatusCallback | None = None,
    ) -> Status:
        """The async twin of :meth:`wait_for_deployment`: the event loop is never blocked."""
        plan = self._plan(f"Deployment {name!r}", timeout, poll_interval, max_poll_interval, not_found_grace, on_change)
        return await wait_until_ready_async(lambda: self.deployment_status_async(name, endpoint), plan)

    async def wait_for_endpoint_async(
        self,
        endpoint: str,
        *,
        timeout: float = DEFAULT_WAIT_TIMEOUT,
        poll_interval: float = 1.0,
        max_poll_interval: float = 15.0,
        not_found_grace: float = 30.0,
        on_change: StatusCallback | None = None,
    ) -> Status:
        """The async twin of :meth:`wait_for_endpoint`: the event loop is never blocked."""
        plan = self._plan(f"Endpoint {endpoint!r}", timeout, poll_interval, max_poll_interval, not_found_grace, on_change)
        return await wait_until_ready_async(lambda: self.endpoint_status_async(endpoint), plan)

    @staticmethod
    def _plan(
        what: str,
        timeout: float,
        poll_interval: float,
        max_poll_interval: float,
        not_found_grace: float,
        on_change: StatusCallback | None,
    ) -> WaitPlan:
        return WaitPlan(
            what,
            timeout=timeout,
            poll_interval=poll_interval,
            max_poll_interval=max_poll_interval,
            not_found_grace=not_found_grace,
            on_change=on_change,
        )

    # ----------------------------------------------------------------------------------------------
    # Resources
    # ----------------------------------------------------------------------------------------------

    def close(self) -> None:
        """Release pooled connections and other resources. The client is unusable afterwards."""

    def __enter__(self) -> BaseDeploymentClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
