"""The ``serving`` target: a model server that speaks MLflow's scoring protocol, somewhere on the network.

URIs: ``serving+http://host:port`` and ``serving+https://host[:port][/prefix]``. The server may be a model
container, ``mlflow models serve``, or a ``local``-target server on another machine. It serves one model,
so the deployment name in calls is only a label; creating, updating and deleting are the business of
whoever runs the server and raise :class:`~deployflow.errors.NotSupportedError` here.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from ..errors import DeploymentError, RequestTimeoutError, TargetError
from ..payloads import decode_response, encode_request
from ..predictions import PredictionsResponse
from ..status import State, Status
from ._hosted import HostedModelsClient, bearer_transport, refuse_run_local, split_target_options

__all__ = ["ServingDeploymentClient", "run_local", "target_help"]

_OPTIONS = frozenset({"auth_token", "headers"})


class ServingDeploymentClient(HostedModelsClient):
    """Predict against one remote MLflow-protocol scoring server; status from its ``/ping``.

    Options: ``auth_token`` (sent as ``Authorization: Bearer``), ``headers`` (extra headers), and the
    HTTP settings of :class:`~deployflow.transport.HttpSettings` (timeouts, retries). The token and
    credential headers are kept masked in :attr:`options`.
    """

    secret_options = frozenset({"auth_token", "headers"})

    def __init__(self, target_uri: str, **options: Any) -> None:
        super().__init__(target_uri, **options)
        scheme, _, rest = target_uri.partition("+")
        parts = urlsplit(rest)
        if scheme != "serving" or parts.scheme not in ("http", "https") or not parts.netloc:
            raise TargetError(
                f"{target_uri!r} is not a serving target URI: use serving+http://host:port or serving+https://host"
            )
        settings_options, own = split_target_options(options, _OPTIONS, "serving")
        self.url = rest.rstrip("/")
        self._transport = bearer_transport(self.url, settings_options, own)

    target_label = "serving"
    not_offered = (
        "it scores against a server someone else runs. Use the target that manages that server "
        "(for example 'local') to change it."
    )

    #: Most scoring servers run one worker per core; a few requests in flight keep it busy.
    default_batch_concurrency = 4

    def predict(self, deployment_name: str | None = None, inputs: Any = None, endpoint: str | None = None) -> PredictionsResponse:
        """POST ``inputs`` to ``/invocations`` (DataFrame, array, dict, list or a pre-encoded body)."""
        body, content_type = encode_request(inputs)
        # Scoring has no side effects: a dropped connection or a 5xx may be retried.
        response = self._transport.request(
            "POST", "/invocations", data=body, headers={"Content-Type": content_type}, kind="predict",
            idempotent=True,
        )
        return decode_response(response.content)

    def batch_http_route(self, deployment_name: str | None = None, endpoint: str | None = None) -> Any:
        """Where :func:`deployflow.batch_predict` posts chunks (``None``: through :meth:`predict`)."""
        from ..scoring_route import route_for_transport

        return route_for_transport(self._transport, "/invocations", idempotent=True)

    def deployment_status(self, name: str, endpoint: str | None = None) -> Status:
        try:
            self._transport.request("GET", "/ping", retry=False)
        except DeploymentError as exc:
            if exc.retryable or isinstance(exc, RequestTimeoutError):  # not up (yet): the wait keeps polling
                return Status(State.PENDING, reason=str(exc))
            return Status(State.FAILED, reason=str(exc))
        return Status(State.READY)

    def get_deployment(self, name: str, endpoint: str | None = None) -> dict[str, Any]:
        status = self.deployment_status(name)
        return {"name": name, "url": self.url, "state": status.state.value, "reason": status.reason}

    def list_deployments(self, endpoint: str | None = None) -> list[dict[str, Any]]:
        return [self.get_deployment(urlsplit(self.url).netloc)]

    def close(self) -> None:
        self._transport.close()


def run_local(name: str, model_uri: str, flavor: str | None = None, config: dict[str, Any] | None = None) -> None:
    refuse_run_local("serving")


def target_help() -> str:
    return """Target 'serving': a remote server speaking MLflow's scoring protocol (/ping, /invocations).

URIs
  serving+http://HOST:PORT           for example serving+http://10.0.0.5:5000
  serving+https://HOST[:PORT][/PATH]

What works
  predict (any deployment name; the server serves one model), get/list deployments and
  deployment_status (READY when /ping answers), wait_for_deployment.
  create/update/delete raise NotSupportedError: manage the server with the target that runs it.

Options (get_deploy_client(uri, **options))
  auth_token   sent as 'Authorization: Bearer <token>'
  headers      extra HTTP headers, a dict
  timeout, predict_timeout, total_timeout, predict_total_timeout, connect_timeout, max_retries,
  backoff_factor, backoff_max, retry_on_timeout, verify, pool_maxsize   HTTP settings
"""
