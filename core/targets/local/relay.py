"""The router's upstream side: one scoring request relayed to a deployment server on a pooled connection.

A router forwards every request it gets to a deployment server on this machine, so the cost of that hop
is the cost of an endpoint. Measured on this project's 2-core machine (``wrk`` with 8 connections,
CPU time from ``/proc``): aiohttp's client session (the project's async edge, :mod:`deployflow.aio`)
alone took about 60 µs of CPU per request, about as much as the deployment's own work on a small request, and
the router as a whole about 130 µs; with this relay, uvloop and one write per answer
(:class:`.limits.GuardedProtocol`) the router takes about 60 µs. The relay needs little of what a
general client does: the upstream is one of our own servers on a known address, speaking HTTP/1.1 with
a Content-Length (or chunks); no TLS, proxies, cookies, redirects or retry policy beyond "sent again
when nothing was answered", which :mod:`.router` decides. So it writes the request as one buffer on a
kept-alive connection and reads the answer with the same parser as uvicorn (``httptools``).
``tests/test_local_relay_equivalence.py`` holds it to the async edge: the same requests, sent directly
and through a router, get byte-identical answers (every input form, NaN, CSV, Arrow, large bodies, and
each kind of refusal).

What it promises the router:

* :meth:`Relay.post` returns ``(status, headers, body)`` for any answer, with the body decoded when the
  upstream compressed it (``gzip``/``deflate``: the caller gets it as its own client would have read it).
* :class:`UpstreamRefused`: nothing listens there (or the connection could not be made in time):
  the request was not sent.
* :class:`UpstreamDropped`: the connection closed before a whole answer arrived (a server that is
  stopping closes its idle kept-alive connections): scoring has no side effects, so the router may send
  it again.
* :class:`UpstreamTimeout`: no whole answer within the time limit; the connection is closed.
* :class:`UpstreamBadAnswer`: the answer cannot be parsed or decoded: sending again would not help.

Connections are kept per address and reused; one idle longer than :data:`IDLE_SECONDS` (below the
servers' keep-alive timeout) is closed instead of reused, so a request rarely meets a connection the
server is closing.
"""

from __future__ import annotations

import asyncio
import time
import zlib
from urllib.parse import urlsplit

__all__ = [
    "IDLE_SECONDS",
    "Relay",
    "UpstreamBadAnswer",
    "UpstreamDropped",
    "UpstreamError",
    "UpstreamRefused",
    "UpstreamTimeout",
]

#: Seconds a pooled connection may sit idle and still be reused (servers close theirs after 5 s).
IDLE_SECONDS = 4.0
#: Seconds to open a connection to a deployment server on this machine.
CONNECT_SECONDS = 5.0
#: Idle connections kept per upstream address; more are closed when released.
MAX_IDLE_PER_UPSTREAM = 256


class UpstreamError(Exception):
    """The relay got no usable answer."""


class UpstreamRefused(UpstreamError):
    """The connection could not be made: the request was not sent."""


class UpstreamDropped(UpstreamError):
    """The connection closed before the whole answer arrived."""


class UpstreamTimeout(UpstreamError):
    """No whole answer within the time limit."""


class UpstreamBadAnswer(UpstreamError):
    """The answer could not be read (malformed, or compressed in a way that does not decode)."""


class _Connection(asyncio.Protocol):
    """One kept-alive connection to an upstream, reading one answer at a time with httptools."""

    __slots__ = (
        "transport", "parser", "waiter", "status", "headers", "chunks", "headers_done", "reusable",
        "closed", "idle_since",
    )

    def __init__(self) -> None:
        import httptools

        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.waiter: asyncio.Future[None] | None = None
        self.status = 0
        self.headers: list[tuple[bytes, bytes]] = []
        self.chunks: list[bytes] = []
        self.headers_done = False
        self.reusable = False
        self.closed = False
        self.idle_since = 0.0

    # asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        if self.waiter is None:  # bytes nobody asked for: the connection is out of step, drop it
            self._close()
            return
        try:
            self.parser.feed_data(data)
        except Exception as exc:  # httptools.HttpParserError and its subclasses
            self._finish(UpstreamBadAnswer(f"the answer could not be parsed: {exc}"))
            self._close()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self.waiter is not None and not self.waiter.done():
            if self.headers_done and not self._declares_length():
                self._finish(None)  # an answer without a length ends when the connection does
            else:
                self._finish(UpstreamDropped("the connection closed before the whole answer arrived"))

    # httptools callbacks

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name.lower(), value))

    def on_headers_complete(self) -> None:
        self.status = self.parser.get_status_code()
        self.headers_done = True

    def on_body(self, body: bytes) -> None:
        self.chunks.append(body)

    def on_message_complete(self) -> None:
        if 100 <= self.status < 200:  # an interim answer: the real one follows
            self.headers, self.chunks, self.headers_done = [], [], False
            return
        self.reusable = self.parser.should_keep_alive()
        self._finish(None)

    # internals

    def _declares_length(self) -> bool:
        return any(name in (b"content-length", b"transfer-encoding") for name, _ in self.headers)

    def _finish(self, error: BaseException | None) -> None:
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            if error is None:
                waiter.set_result(None)
            else:
                waiter.set_exception(error)

    def _close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()

    def start(self, loop: asyncio.AbstractEventLoop, request: bytes) -> asyncio.Future[None]:
        self.waiter = loop.create_future()
        self.status, self.headers, self.chunks, self.headers_done, self.reusable = 0, [], [], False, False
        assert self.transport is not None
        self.transport.write(request)
        return self.waiter


class Relay:
    """Pooled connections to upstream servers; :meth:`post` sends one request. One event loop only."""

    def __init__(self) -> None:
        self._idle: dict[tuple[str, int], list[_Connection]] = {}
        self._addresses: dict[str, tuple[str, int, bytes]] = {}

    def _address(self, url: str) -> tuple[str, int, bytes]:
        found = self._addresses.get(url)
        if found is None:
            parts = urlsplit(url)
            if parts.scheme != "http" or not parts.hostname or not parts.port:
                raise UpstreamRefused(f"not an http://host:port URL: {url!r}")
            found = (parts.hostname, parts.port, parts.netloc.encode("ascii"))
            if len(self._addresses) > 1024:
                self._addresses.clear()
            self._addresses[url] = found
        return found

    async def _connection(self, host: str, port: int) -> _Connection:
        idle = self._idle.get((host, port))
        now = time.monotonic()
        while idle:
            connection = idle.pop()
            if not connection.closed and now - connection.idle_since < IDLE_SECONDS:
                return connection
            connection._close()
        loop = asyncio.get_running_loop()
        try:
            _, protocol = await asyncio.wait_for(loop.create_connection(_Connection, host, port), CONNECT_SECONDS)
        except (OSError, asyncio.TimeoutError) as exc:
            raise UpstreamRefused(f"cannot connect: {getattr(exc, 'strerror', None) or type(exc).__name__}") from exc
        return protocol

    def _release(self, host: str, port: int, connection: _Connection) -> None:
        connection.waiter = None
        if connection.closed or not connection.reusable:
            connection._close()
            return
        idle = self._idle.setdefault((host, port), [])
        if len(idle) >= MAX_IDLE_PER_UPSTREAM:
            connection._close()
            return
        connection.idle_since = time.monotonic()
        idle.append(connection)

    async def post(
        self, url: str, path: bytes, headers: list[tuple[bytes, bytes]], body: bytes, timeout: float | None
    ) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
        """POST ``body`` to ``url`` + ``path`` with ``headers`` (lower-case names, no Host or
        Content-Length: the relay sets those); wait up to ``timeout`` s for the whole answer."""
        host, port, netloc = self._address(url)
        connection = await self._connection(host, port)
        head = [b"POST ", path, b" HTTP/1.1\r\nhost: ", netloc, b"\r\ncontent-length: ", str(len(body)).encode()]
        for name, value in headers:
            head += (b"\r\n", name, b": ", value)
        head.append(b"\r\n\r\n")
        request = b"".join(head) + body if len(body) < 65536 else b"".join((*head, body))
        loop = asyncio.get_running_loop()
        waiter = connection.start(loop, request)
        timer = loop.call_later(timeout, _expire, waiter) if timeout is not None else None
        try:
            await waiter
        except UpstreamError:
            connection._close()
            raise
        except BaseException:  # cancelled (the router stops): this connection is out of step
            connection._close()
            raise
        finally:
            if timer is not None:
                timer.cancel()
        status, answer_headers, chunks = connection.status, connection.headers, connection.chunks
        self._release(host, port, connection)
        content = chunks[0] if len(chunks) == 1 else b"".join(chunks)
        return status, answer_headers, _decoded(answer_headers, content)

    def close(self) -> None:
        """Close every pooled connection."""
        for idle in self._idle.values():
            for connection in idle:
                connection._close()
        self._idle.clear()


def _expire(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_exception(UpstreamTimeout("no whole answer in time"))


def _decoded(headers: list[tuple[bytes, bytes]], content: bytes) -> bytes:
    encoding = next((value.strip().lower() for name, value in headers if name == b"content-encoding"), None)
    if encoding in (None, b"", b"identity"):
        return content
    try:
        if encoding in (b"gzip", b"x-gzip"):
            return zlib.decompress(content, 16 + zlib.MAX_WBITS)
        if encoding == b"deflate":
            try:
                return zlib.decompress(content)
            except zlib.error:  # raw deflate, as some servers send it
                return zlib.decompress(content, -zlib.MAX_WBITS)
    except zlib.error as exc:
        raise UpstreamBadAnswer(f"the answer's body does not decode as {encoding.decode('latin-1')}: {exc}") from exc
    raise UpstreamBadAnswer(f"the answer uses Content-Encoding {encoding.decode('latin-1')!r}, which the router cannot decode")
