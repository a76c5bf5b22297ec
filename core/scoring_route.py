"""Where batch scoring posts a chunk: the seam between targets and :mod:`deployflow.batch`.

A client may offer ``batch_http_route(deployment_name=None, endpoint=None)`` returning an
:class:`HttpRoute` (the URL chunks are posted to, the headers, the HTTP settings, whether the POST is
idempotent, and how to look the route up again), or ``None``: batch scoring then calls the client's
``predict``. Targets build routes with this module only; they never import batch internals, and batch
never imports a target.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Mapping

from .redaction import redact

if TYPE_CHECKING:
    from .errors import DeploymentError
    from .transport import HttpSettings

__all__ = ["HttpRoute", "route_for_transport"]


@dataclass(frozen=True)
class HttpRoute:
    """Where and how a client's chunks are posted.

    ``idempotent`` and ``retry_statuses`` are what the target declares about its scoring POST (see
    :func:`deployflow.retry.should_retry`). ``refresh`` (optional) returns the route again after a
    connection failure, for services whose address can change (a local deployment restarted by an
    update). ``arrow``: the service also reads chunks as Arrow IPC streams (deployflow's own servers:
    see :mod:`deployflow.arrow_chunks`); batch scoring then sends the chunks Arrow carries exactly that way,
    and, when the route has no ``decode`` of its own, asks for Arrow answers (its ``Accept`` header
    replaces one in ``headers``) and reads each answer as its Content-Type says.
    ``encode`` and ``decode`` (optional) are the target's own protocol for a chunk: ``encode(frame,
    params) -> (body, content_type)`` and ``decode(body) -> PredictionsResponse``; without them chunks
    travel in MLflow's scoring protocol (:func:`deployflow.payloads.encode_request` /
    :func:`~deployflow.payloads.decode_response`). ``reclassify`` (optional) is the target's own reading
    of an error its service answered, the one its ``predict`` applies too: ``reclassify(error) -> error``
    (the ``v2`` target makes MLServer's "model is not ready" 400 a retryable error).
    """

    url: str
    headers: Mapping[str, str]
    settings: HttpSettings
    refresh: Callable[[], HttpRoute] | None = None
    idempotent: bool = False
    retry_statuses: frozenset[int] | None = None
    arrow: bool = False
    encode: Callable[[Any, Mapping[str, Any] | None], tuple[bytes, str]] | None = None
    decode: Callable[[bytes], Any] | None = None
    reclassify: Callable[[DeploymentError], DeploymentError] | None = None

    def __repr__(self) -> str:  # the headers may hold a token
        return f"HttpRoute({redact(self.url)!r})"


def route_for_transport(transport: Any, path: str, *, idempotent: bool = False) -> HttpRoute | None:
    """The route for POSTs to ``path`` through ``transport`` (a :class:`~deployflow.transport.HttpTransport`),
    when the async edge can send them exactly as the transport would: plain HTTP, no proxy from the
    environment, no session-level auth object. ``None`` otherwise (batch scoring calls ``predict``)."""
    import requests

    url = transport.url_for(path)
    session = transport.session
    if not url.startswith("http://") or session.auth is not None or requests.utils.get_environ_proxies(url):
        return None
    return HttpRoute(url, dict(session.headers), transport.settings, idempotent=idempotent)
