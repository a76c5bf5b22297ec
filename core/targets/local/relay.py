"""The router's upstream side: one scoring request relayed to a deployment server on a pooled connection.

A router forwards every request it gets to a deployment server on this machine, so the cost of that hop
is the cost of an endpoint. aiohttp's client session (the project's async edge, :mod:`deployflow.aio`)
took about 60 µs of CPU per request on this project's 2-core machine, about as much as the deployment's
own work on a small request. The relay needs little of what a general client does: the upstream is one
of our own servers on a known address, speaking HTTP/1.1 with a Content-Length (or chunks); no TLS,
proxies, cookies, redirects or retry policy beyond "sent again when nothing was answered", which
:mod:`.router` decides. So it writes the request as one buffer on a kept-alive connection, reads the
answer with the same parser as uvicorn (``httptools``), and hands it over by calling back
(:meth:`Relay.send`): no future or task per request, and one timer per connection, re-armed only when
it fires early. ``tests/test_local_relay_equivalence.py`` holds
it to the async edge: the same requests, sent directly and through a router, get byte-identical answers
(every input form, NaN, CSV, Arrow, large bodies, and each kind of refusal).

What it promises the router:

* an answer is ``(status, headers, body)``, with the body decoded when the upstream compressed it
  (``gzip``/``deflate``: the caller gets it as its own client would have read it);
* :class:`UpstreamRefused`: nothing listens there (or the connection could not be made in time):
  the request was not sent;
* :class:`UpstreamDropped`: the connection closed before a whole answer arrived (a server that is
  stopping closes its idle kept-alive connections): scoring has no side effects, so the router may send
  it again;
* :class:`UpstreamTimeout`: no whole answer within the time limit; the connection is closed;
* :class:`UpstreamBadAnswer`: the answer cannot be parsed or decoded: sending again would not help.

Connections are kept per address and reused; one idle longer than :data:`IDLE_SECONDS` (below the
servers' keep-alive timeout) is closed instead of reused, so a request rarely meets a connection the
server is closing.
"""

from __future__ import annotations

import asyncio
import logging
import time
import zlib
from collections.abc import Callable
from urllib.parse import urlsplit

__all__ = [
    "IDLE_SECONDS",
    "Done",
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

_logger = logging.getLogger("deployflow.targets.local.relay")


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


#: What :meth:`Relay.send` calls with the outcome: ``(status, headers, body, None)`` for an answer,
#: ``(0, [], b"", error)`` when there is none.
Done = Callable[[int, "list[tuple[bytes, bytes]]", bytes, "UpstreamError | None"], None]


class _Connection(asyncio.Protocol):
    """One kept-alive connection to an upstream, reading one answer at a time with httptools."""

    __slots__ = (
        "chunks",
        "closed",
        "deadline",
        "done",
        "encoding",
        "headers",
        "headers_done",
        "idle_since",
        "key",
        "parser",
        "relay",
        "reusable",
        "status",
        "timer",
        "timer_at",
        "transport",
    )

    def __init__(self, relay: Relay, key: tuple[str, int]) -> None:
        import httptools

        self.relay = relay
        self.key = key
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.done: Done | None = None
        self.deadline: float | None = None  # of the answer awaited, on the event loop's clock
        self.timer: asyncio.TimerHandle | None = None
        self.timer_at = 0.0
        self.status = 0
        self.headers: list[tuple[bytes, bytes]] = []
        self.chunks: list[bytes] = []
        self.encoding: bytes | None = None  # the answer's Content-Encoding
        self.headers_done = False
        self.reusable = False
        self.closed = False
        self.idle_since = 0.0

    # asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        if self.done is None:  # bytes nobody asked for: the connection is out of step, drop it
            self._close()
            return
        try:
            self.parser.feed_data(data)
        except Exception as exc:  # httptools.HttpParserError and its subclasses
            if self.done is not None:
                self._fail(UpstreamBadAnswer(f"the answer could not be parsed: {exc}"))
            self._close()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self.done is not None:
            if self.headers_done and not self._declares_length():
                self._complete()  # an answer without a length ends when the connection does
            else:
                self._fail(UpstreamDropped("the connection closed before the whole answer arrived"))

    # httptools callbacks

    def on_header(self, name: bytes, value: bytes) -> None:
        name = name.lower()
        self.headers.append((name, value))
        if name == b"content-encoding":
            self.encoding = value

    def on_headers_complete(self) -> None:
        self.status = self.parser.get_status_code()
        self.headers_done = True

    def on_body(self, body: bytes) -> None:
        self.chunks.append(body)

    def on_message_complete(self) -> None:
        if 100 <= self.status < 200:  # an interim answer: the real one follows
            self.headers, self.chunks, self.headers_done, self.encoding = [], [], False, None
            return
        self.reusable = self.parser.should_keep_alive()
        self._complete()

    # internals

    def _declares_length(self) -> bool:
        return any(name in (b"content-length", b"transfer-encoding") for name, _ in self.headers)

    def _take_done(self) -> Done:
        done, self.done, self.deadline = self.done, None, None
        assert done is not None
        return done

    def _complete(self) -> None:
        done = self._take_done()
        status, headers, chunks = self.status, self.headers, self.chunks
        self.relay._release(self)  # back in the pool before the caller hears of the answer
        content = chunks[0] if len(chunks) == 1 else b"".join(chunks)
        if self.encoding is not None:
            try:
                content = _decoded(self.encoding, content)
            except UpstreamBadAnswer as exc:
                _deliver(done, 0, [], b"", exc)
                return
        _deliver(done, status, headers, content, None)

    def _fail(self, error: UpstreamError) -> None:
        done = self._take_done()
        self._close()
        _deliver(done, 0, [], b"", error)

    def _expire(self) -> None:
        # Armed for the deadline of an earlier request, it may find a later one in force: wait for that.
        self.timer = None
        deadline = self.deadline
        if self.done is None or deadline is None or self.closed:
            return
        loop = self.relay._loop
        if loop.time() < deadline:
            self.timer_at, self.timer = deadline, loop.call_at(deadline, self._expire)
            return
        self._fail(UpstreamTimeout("no whole answer in time"))

    def _close(self) -> None:
        self.closed = True
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        if self.transport is not None:
            self.transport.close()

    def abort(self) -> None:
        """Give up the answer awaited: the connection closes (the server sees its client leave), and
        ``done`` gets :class:`UpstreamDropped`."""
        self._close()

    def start(self, request: bytes, timeout: float | None, done: Done) -> None:
        self.done = done
        self.status, self.headers, self.chunks, self.encoding = 0, [], [], None
        self.headers_done = self.reusable = False
        if timeout is not None:
            # One timer per connection, not per request: it is armed again only when none is armed
            # for a moment at or before this deadline (see _expire).
            loop = self.relay._loop
            self.deadline = deadline = loop.time() + timeout
            if self.timer is None or self.timer_at > deadline:
                if self.timer is not None:
                    self.timer.cancel()
                self.timer_at, self.timer = deadline, loop.call_at(deadline, self._expire)
        assert self.transport is not None
        self.transport.write(request)


class Relay:
    """Pooled connections to upstream servers; :meth:`send` sends one request. One event loop only."""

    def __init__(self) -> None:
        self._loop: asyncio.AbstractEventLoop = None  # type: ignore[assignment]  # the first send's
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

    def _pooled(self, key: tuple[str, int]) -> _Connection | None:
        idle = self._idle.get(key)
        if not idle:
            return None
        now = time.monotonic()
        while idle:
            connection = idle.pop()
            if not connection.closed and now - connection.idle_since < IDLE_SECONDS:
                return connection
            connection._close()
        return None

    async def _connect_and_start(self, connection: _Connection, request: bytes, timeout: float | None,
                                 done: Done) -> None:
        try:
            await asyncio.wait_for(self._loop.create_connection(lambda: connection, *connection.key), CONNECT_SECONDS)
        except (OSError, asyncio.TimeoutError) as exc:
            reason = getattr(exc, "strerror", None) or type(exc).__name__
            _deliver(done, 0, [], b"", UpstreamRefused(f"cannot connect: {reason}"))
            return
        if connection.closed:  # aborted while it connected: nothing was sent
            connection._close()
            _deliver(done, 0, [], b"", UpstreamDropped("given up before the request was sent"))
            return
        connection.start(request, timeout, done)

    def _release(self, connection: _Connection) -> None:
        if connection.closed or not connection.reusable:
            connection._close()
            return
        idle = self._idle.setdefault(connection.key, [])
        if len(idle) >= MAX_IDLE_PER_UPSTREAM:
            connection._close()
            return
        connection.idle_since = time.monotonic()
        idle.append(connection)

    def send(
        self, url: str, path: bytes, headers: list[tuple[bytes, bytes]], body: bytes, timeout: float | None,
        done: Done,
    ) -> _Connection | None:
        """POST ``body`` to ``url`` + ``path`` with ``headers`` (lower-case names, no Host or
        Content-Length: the relay sets those), and call ``done`` once with the outcome (see :data:`Done`),
        at most ``timeout`` s after the request is written. ``done`` runs in a callback of the event
        loop, or at once when ``url`` is not an ``http://host:port`` URL.

        Returns the connection the request goes on, whose :meth:`~_Connection.abort` gives the answer up
        until ``done`` is called (before the connection is made, the request is not sent at all)."""
        try:
            host, port, netloc = self._address(url)
        except UpstreamRefused as exc:
            _deliver(done, 0, [], b"", exc)
            return None
        head = [b"POST ", path, b" HTTP/1.1\r\nhost: ", netloc, b"\r\ncontent-length: ", str(len(body)).encode()]
        for name, value in headers:
            head += (b"\r\n", name, b": ", value)
        head.append(b"\r\n\r\n")
        request = b"".join(head) + body if len(body) < 65536 else b"".join((*head, body))
        if self._loop is None:
            self._loop = asyncio.get_running_loop()
        key = (host, port)
        connection = self._pooled(key)
        if connection is not None:
            connection.start(request, timeout, done)
            return connection
        connection = _Connection(self, key)
        asyncio.ensure_future(self._connect_and_start(connection, request, timeout, done))
        return connection

    def close(self) -> None:
        """Close every pooled connection."""
        for idle in self._idle.values():
            for connection in idle:
                connection._close()
        self._idle.clear()


def _deliver(done: Done, status: int, headers: list[tuple[bytes, bytes]], content: bytes,
             error: UpstreamError | None) -> None:
    """Call ``done``; what it raises is logged, never let into the connection's protocol callbacks."""
    try:
        done(status, headers, content, error)
    except Exception:
        _logger.exception("the relay's caller failed on an answer")


def _decoded(encoding: bytes, content: bytes) -> bytes:
    encoding = encoding.strip().lower()
    if encoding in (b"", b"identity"):
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
