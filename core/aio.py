"""The async HTTP edge, on aiohttp: the twin of :class:`deployflow.transport.HttpTransport` for event loops.

Batch scoring (many requests in flight from one thread), the local endpoint router and async callers use
it. It reads the same :class:`~deployflow.transport.HttpSettings`, decides retries with the same
function (:func:`deployflow.retry.should_retry`, through the ``retryable`` the translator sets), waits
with the same :func:`deployflow.retry.retry_wait`, and makes its errors with the same translator
(:mod:`deployflow.http_errors`): a request that fails one way on the sync edge fails the same way here.

Differences from the sync edge, on purpose: no proxy or ``.netrc`` from the environment (callers that
need them use the sync edge; batch scoring falls back to it, see
:func:`deployflow.scoring_route.route_for_transport`), and the retry loop can be told to look the URL up
again after a connection failure (``on_connection_failure``), for a service that moved.

aiohttp is imported when a session is opened, so importing this module costs nothing.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable, Collection, Coroutine, Mapping
from concurrent.futures import Future
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, TypeVar
from urllib.parse import urlsplit

from ._eventloop import new_event_loop
from .errors import DeploymentError, InvalidInputError, RemoteError, RequestTimeoutError
from .http_errors import MAX_ERROR_READ_BYTES, MAX_EXCERPT_CHARS, error_from_answer, error_from_failure, set_message, settle, tls_error
from .jsoncodec import dumps, loads
from .redaction import RedactingFilter, redact
from .retry import Failure, is_idempotent_method, retry_wait
from .transport import MAX_REDIRECTS, HttpSettings, RequestKind, _plural, default_headers

__all__ = ["Answer", "AsyncHttpTransport", "LoopThread", "CONNECTION_FAILURES"]

logger = logging.getLogger(__name__)
logger.addFilter(RedactingFilter())

T = TypeVar("T")

#: Failures after which a service may have moved (a restarted server): worth looking its URL up again.
CONNECTION_FAILURES = frozenset({Failure.CONNECT, Failure.CONNECT_TIMEOUT, Failure.DROPPED})
_MIN_ATTEMPT_SECONDS = 0.05


@dataclass
class Answer:
    """A whole HTTP answer: status, reason, headers (case-insensitive) and body."""

    status: int
    reason: str | None
    headers: Mapping[str, str]
    content: bytes

    def json(self) -> Any:
        return loads(self.content) if self.content.strip() else None


class AsyncHttpTransport:
    """HTTP calls from an event loop with pooled connections, the project's retry policy and errors.

    ``base_url`` (optional) is joined to relative paths; absolute URLs are used as they are. ``limit``
    bounds the connections kept open. Create it, use it and close it on one event loop.

    >>> async with AsyncHttpTransport("http://127.0.0.1:5000") as transport:  # doctest: +SKIP
    ...     answer = await transport.request("GET", "/ping")
    """

    def __init__(
        self,
        base_url: str | None = None,
        *,
        settings: HttpSettings | None = None,
        headers: Mapping[str, str] | None = None,
        limit: int | None = None,
    ) -> None:
        self.settings = settings if settings is not None else HttpSettings.from_options()
        self.base_url = base_url.rstrip("/") if base_url else None
        self._headers = {**default_headers(), **(headers or {})}
        self._limit = limit or self.settings.pool_maxsize
        self._session: Any = None
        self._timeouts: dict[float, Any] = {}  # aiohttp.ClientTimeout by read timeout: built once each

    def __repr__(self) -> str:
        return f"{type(self).__name__}({redact(self.base_url or '')!r}, limit={self._limit})"

    async def __aenter__(self) -> AsyncHttpTransport:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    def _open(self) -> Any:
        if self._session is None:
            import aiohttp

            verify = self.settings.verify
            ssl: Any = None
            if verify is False:
                ssl = False
            elif isinstance(verify, str):
                import ssl as ssl_module

                ssl = ssl_module.create_default_context(
                    cafile=verify if not _is_dir(verify) else None, capath=verify if _is_dir(verify) else None
                )
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=self._limit, limit_per_host=self._limit, ssl=ssl),
                cookie_jar=aiohttp.DummyCookieJar(),
                headers=self._headers,
                trust_env=False,
            )
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    def url_for(self, path: str) -> str:
        if path.startswith(("http://", "https://")) or self.base_url is None:
            return path
        return f"{self.base_url}/{path.lstrip('/')}"

    async def request(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        data: bytes | str | None = None,
        headers: Mapping[str, str] | None = None,
        kind: RequestKind = "control",
        idempotent: bool | None = None,
        retry_statuses: Collection[int] | None = None,
        attempts: int | None = None,
        deadline: float | None = None,
        on_connection_failure: Callable[[], str | None] | None = None,
    ) -> Answer:
        """Send a request, retrying per the policy, and return the successful :class:`Answer`.

        The same arguments and rules as :meth:`deployflow.transport.HttpTransport.request`, plus:
        ``attempts`` (at most this many attempts, whatever the policy's ``max_retries``), ``deadline``
        (a ``time.monotonic()`` instant no attempt or wait may pass), and ``on_connection_failure``,
        called after a failed connection: it returns the URL to use from then on (``None``: the same).
        Raises a :class:`~deployflow.errors.DeploymentError`.
        """
        method = method.upper()
        url = self.url_for(path)
        if idempotent is None:
            idempotent = is_idempotent_method(method)
        statuses = frozenset(retry_statuses) if retry_statuses is not None else None
        if json is not None:
            if data is not None:
                raise InvalidInputError("pass either json or data, not both")
            data = dumps(json)
            headers = {"Content-Type": "application/json", **(headers or {})}
        policy = self.settings.retry
        read_timeout, total = self.settings.timeouts_for(kind)
        max_attempts = attempts if attempts is not None else policy.max_attempts
        end = time.monotonic() + total
        if deadline is not None:
            end = min(end, deadline)
        attempt = 0
        while True:
            attempt += 1
            where_path = _where(url)[0]
            try:
                remaining = end - time.monotonic()
                if remaining < _MIN_ATTEMPT_SECONDS:
                    raise RequestTimeoutError(f"{method} {where_path}: no time left before the total deadline")
                answer = await self.send(
                    method, url, data=data, headers=headers, idempotent=idempotent,
                    read_timeout=min(read_timeout, remaining), clipped=read_timeout > remaining,
                    total_timeout=total,
                )
                if answer.status < 400:
                    return answer
                raise settle(
                    error_from_answer(method, where_path, answer.status, answer.reason, answer.headers, answer.content),
                    policy, idempotent=idempotent, statuses=statuses,
                )
            except DeploymentError as error:
                if not error.retryable:
                    if attempt > 1:
                        set_message(error, f"{error.message} (after {attempt} attempts)")
                    raise
                if attempt >= max_attempts:
                    set_message(error, f"{error.message}; gave up after {_plural(attempt, 'attempt')}")
                    raise
                wait = retry_wait(policy, error, attempt)
                if on_connection_failure is not None and error.failure in CONNECTION_FAILURES:
                    moved = on_connection_failure()
                    if moved is not None and moved != url:
                        url, wait = moved, 0.0  # it moved (an update replaced the server): ask the new one now
                if time.monotonic() + wait + _MIN_ATTEMPT_SECONDS > end:
                    set_message(
                        error,
                        f"{error.message}; gave up after {_plural(attempt, 'attempt')}: waiting {wait:.3g} s for "
                        f"the next one would pass the total deadline of {total:g} s",
                    )
                    raise
                logger.warning("%s; retrying in %.2f s (attempt %d of %d)",
                               redact(error), wait, attempt + 1, max_attempts)
                await asyncio.sleep(wait)

    async def request_json(self, method: str, path: str, **kwargs: Any) -> Any:
        """Like :meth:`request`, and decode the JSON answer (``None`` for an empty body)."""
        answer = await self.request(method, path, **kwargs)
        try:
            return answer.json()
        except ValueError as exc:
            excerpt = answer.content[:MAX_EXCERPT_CHARS].decode("utf-8", "replace")
            raise RemoteError(
                f"{method.upper()} {urlsplit(self.url_for(path)).path} answered HTTP {answer.status} with a body "
                f"that is not JSON: {excerpt}",
                status_code=answer.status, body=excerpt,
            ) from exc

    async def send(
        self,
        method: str,
        url: str,
        *,
        data: bytes | str | None = None,
        headers: Mapping[str, str] | None = None,
        idempotent: bool = False,
        read_timeout: float | None = None,
        clipped: bool = False,
        total_timeout: float | None = None,
        follow_redirects: bool = True,
    ) -> Answer:
        """One attempt: the whole answer, whatever its status. A failure to get one raises the
        translated error (its ``retryable`` decided for ``idempotent``)."""
        import aiohttp

        session = self._open()
        settings = self.settings
        read = settings.timeout if read_timeout is None else read_timeout
        timeout = self._timeouts.get(read)
        if timeout is None:
            if len(self._timeouts) >= 64:  # clipped deadlines make new values: do not grow without end
                self._timeouts.clear()
            timeout = self._timeouts[read] = aiohttp.ClientTimeout(
                total=None, sock_connect=settings.connect_timeout, sock_read=read)
        path, origin = _where(url)
        failure: Failure
        try:
            async with session.request(
                method, url, data=data, headers=headers, timeout=timeout,
                allow_redirects=follow_redirects,
                # aiohttp counts the redirect answer that trips the limit; requests does not
                max_redirects=MAX_REDIRECTS + 1,
            ) as response:
                content = await response.read()
                if response.status >= 400:
                    content = content[:MAX_ERROR_READ_BYTES]  # what the translator keeps of an error body
                return Answer(response.status, response.reason, response.headers, content)
        except aiohttp.ConnectionTimeoutError as exc:  # before TimeoutError: it is both
            failure, detail, cause = Failure.CONNECT_TIMEOUT, (
                f"could not connect to {origin} within {settings.connect_timeout:g} s"), exc
        except (aiohttp.ClientConnectorCertificateError, aiohttp.ClientSSLError) as exc:
            raise tls_error(method, path, origin, str(exc)) from exc
        except aiohttp.ClientConnectorError as exc:
            failure, detail, cause = Failure.CONNECT, f"connection to {origin} failed: {_reason(exc)}", exc
        except asyncio.TimeoutError as exc:
            if clipped and total_timeout is not None:
                detail = f"no answer before the total deadline of {total_timeout:g} s"
            else:
                detail = f"no answer within {read:g} s (read timeout)"
            failure, cause = Failure.READ_TIMEOUT, exc
        except aiohttp.TooManyRedirects as exc:
            raise RemoteError(f"{method} {path}: more than {MAX_REDIRECTS} redirects") from exc
        except aiohttp.InvalidURL as exc:
            raise InvalidInputError(f"{method} {path}: invalid request: {exc}") from exc
        except (aiohttp.ClientConnectionError, aiohttp.ClientPayloadError, OSError) as exc:
            failure, detail, cause = Failure.DROPPED, f"connection to {origin} failed: {_reason(exc)}", exc
        except aiohttp.ClientError as exc:
            raise RemoteError(f"{method} {path}: {type(exc).__name__}: {redact(str(exc))}") from exc
        error = error_from_failure(failure, method, path, detail, idempotent=idempotent, policy=settings.retry)
        raise error from cause


class LoopThread:
    """An event loop (:func:`deployflow._eventloop.new_event_loop`) in a daemon thread, for sync code that drives async I/O."""

    def __init__(self, name: str = "deployflow-io") -> None:
        self.loop = new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name=name, daemon=True)
        self._thread.start()

    def submit(self, coroutine: Coroutine[Any, Any, T]) -> Future[T]:
        """Run ``coroutine`` on the loop; the returned future may be waited on from any thread."""
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop)

    def stop(self, timeout: float = 10.0) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout=timeout)
        if not self._thread.is_alive():
            self.loop.close()


@lru_cache(maxsize=256)
def _where(url: str) -> tuple[str, str]:
    """``(path, origin)`` of ``url``, for messages: parsed once per URL, not once per request."""
    parts = urlsplit(url)
    return parts.path or "/", f"{parts.scheme}://{parts.netloc}"


def _reason(exc: BaseException) -> str:
    os_error = getattr(exc, "os_error", None)
    if isinstance(os_error, OSError) and os_error.strerror:
        return f"[Errno {os_error.errno}] {os_error.strerror}"
    if isinstance(exc, OSError) and exc.strerror:
        return f"[Errno {exc.errno}] {exc.strerror}"
    return redact(f"{type(exc).__name__}: {exc}")[:MAX_EXCERPT_CHARS]


def _is_dir(path: str) -> bool:
    import os

    return os.path.isdir(path)
