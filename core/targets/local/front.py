"""The router's HTTP/1.1 front-end: one ``asyncio.Protocol`` per client connection, driven by callbacks.

An endpoint's router does little per request (look up a route, relay the body, copy the answer back), so
what serves its connections is most of its cost. This front-end parses requests with ``httptools`` (the
parser uvicorn uses) and hands each to a :class:`Handler` through plain method calls: no ASGI messages, no
task per request. It keeps the rules of a deployment server's connections (:mod:`.limits`,
:mod:`.serving`):

* **Timeouts** (:class:`.limits.ConnectionClock`, shared with the server's :class:`.limits.GuardedProtocol`):
  a connection idle for ``keepalive_timeout`` (before its first request or between requests), a request
  whose headers take longer than ``header_timeout`` from its first byte, or whose body takes longer than
  ``body_timeout`` from the end of its headers, is closed. While a request is being answered no clock runs.
* **limit_concurrency**: a request arriving while that many connections, or that many requests, are open
  is answered 503 (``Retry-After``) and its connection closed.
* **Order and framing**: pipelined requests are answered in the order they came; while one is being
  answered, reading from that connection pauses. ``Connection: close`` and HTTP/1.0 requests are answered
  and the connection closed. A request that is not valid HTTP/1.1 is answered 400 (a request head over
  :data:`MAX_HEAD_BYTES`, 431) and the connection closed.
* **Bodies**: a request's body is passed on only once :meth:`Handler.begin` admitted the request; a
  request carrying ``Expect: 100-continue`` gets ``100 Continue`` at that moment, never before, and an
  answer given before its body came instead (a refusal) closes the connection afterwards. The rest of the
  body of any other request answered early is read and dropped, so the connection stays usable (unless
  the answer says ``Connection: close``, as a 413 does).
* **Leaving**: a client that disconnects before its request's body is complete ends the request
  (:meth:`Handler.finished` with no answer), so what it held is released at once.
* **Stopping** (:func:`serve`): on SIGTERM or SIGINT it stops accepting, closes idle connections, lets the
  requests being answered finish (each connection closes after its answer) for up to ``stop_timeout``
  seconds, closes what is left and returns. A second signal cuts the wait short.

Answers carry ``date``, ``content-length`` (the front-end's own count of the body) and the handler's
headers; a ``HEAD`` request gets the headers only.
"""

from __future__ import annotations

import asyncio
import http
import signal
import time
from collections import deque
from collections.abc import Callable
from email.utils import formatdate
from typing import Any, Protocol

from . import responses
from .limits import ConnectionClock, Limits
from .responses import Response

__all__ = ["MAX_HEAD_BYTES", "Exchange", "Front", "Handler", "HttpConnection", "serve"]

#: Bytes a request's line and headers may take together.
MAX_HEAD_BYTES = 64 * 1024



def _status_line(code: int) -> bytes:
    try:
        phrase = http.HTTPStatus(code).phrase.encode()
    except ValueError:
        phrase = b""
    return b"HTTP/1.1 %d %s\r\n" % (code, phrase)


_STATUS_LINES = {code: _status_line(code) for code in range(100, 600)}
_CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"


class Exchange:
    """One request on a connection, from its first byte to its answer."""

    # Class-level defaults: a request sets only what differs (most requests keep most of these).
    method = b""
    url = b""
    #: The decoded path without the query (set with the headers).
    path = ""
    #: Body bytes received so far.
    size = 0
    head_bytes = 0
    head_done = False
    complete = False
    keep_alive = True
    expect_continue = False
    begun = False
    #: Whether :meth:`Handler.begin` let the body in.
    admitted = False
    answered = False
    preset: Response | None = None
    #: Called if the client leaves while the handler works on the request's answer (its body is in).
    on_leave: Callable[[], None] | None = None
    #: ``time.perf_counter()`` when the handler first saw it.
    started = 0.0
    #: Body bytes the handler counts against its limits (the handler's to keep).
    held = 0

    def __init__(self, connection: HttpConnection) -> None:
        self.connection = connection
        #: ``(lower-case name, value)`` pairs, in the order received.
        self.headers: list[tuple[bytes, bytes]] = []
        self.chunks: list[bytes] = []

    def body(self) -> bytes:
        chunks = self.chunks
        return chunks[0] if len(chunks) == 1 else b"".join(chunks)

    def respond(self, response: Response) -> None:
        """Answer this request (once; later calls do nothing). Safe after the client left."""
        self.connection.respond(self, response)


class Handler(Protocol):
    """What the front-end asks of an application. Each method that returns a response answers with it;
    ``None`` means go on."""

    def begin(self, exchange: Exchange) -> Response | None:
        """The request's headers are in: refuse it, answer it, or ``None`` to let its body in."""

    def grow(self, exchange: Exchange) -> Response | None:
        """``exchange.size`` body bytes are in (of an admitted request): ``None`` to go on reading."""

    def complete(self, exchange: Exchange) -> Response | None:
        """The whole body is in: answer now, or ``None`` and call :meth:`Exchange.respond` later."""

    def finished(self, exchange: Exchange, response: Response | None) -> None:
        """A request :meth:`begin` saw has ended, with ``response``, or ``None`` when the client left first."""


class Front:
    """What the connections of one listening socket share."""

    def __init__(self, handler: Handler, limits: Limits, limit_concurrency: int) -> None:
        self.handler = handler
        self.limits = limits
        self.limit_concurrency = limit_concurrency
        self.connections: set[HttpConnection] = set()
        #: Requests whose headers are in and that are not answered yet.
        self.open_requests = 0
        self.stopping = False


class _HeadTooLarge(Exception):
    pass


class HttpConnection(asyncio.Protocol):
    """One client connection (see the module docstring)."""

    def __init__(self, front: Front) -> None:
        import httptools

        self.front = front
        self.handler = front.handler
        self.parser = httptools.HttpRequestParser(self)
        self.transport: asyncio.Transport = None  # type: ignore[assignment]
        self.clock: ConnectionClock = None  # type: ignore[assignment]
        self.queue: deque[Exchange] = deque()  # not answered yet, oldest first; queue[0] is active
        self.parsing: Exchange | None = None  # the request whose bytes the parser is reading
        self.closed = False
        self.broken = False  # no more requests are read (bad input, an upgrade, or closing)
        self.paused_pipeline = False
        self.paused_writing = False

    # asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.front.connections.add(self)
        self.clock = ConnectionClock(asyncio.get_event_loop(), transport, self.front.limits)
        self.clock.idle()

    def data_received(self, data: bytes) -> None:
        if self.broken:
            return
        import httptools

        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._upgraded()
        except httptools.HttpParserError as exc:
            self._malformed(exc)
        if self.paused_pipeline and not self.closed:
            self.clock.hold()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = self.broken = True
        self.front.connections.discard(self)
        self.clock.cancel()
        for exchange in self.queue:
            if exchange.answered:
                continue
            if not (exchange.admitted and exchange.complete):
                exchange.answered = True
                if exchange.begun:
                    self.front.open_requests -= 1
                    self.handler.finished(exchange, None)
            elif exchange.on_leave is not None:  # the handler answers it still; it may stop its work
                exchange.on_leave()
        self.queue.clear()

    def pause_writing(self) -> None:
        self.paused_writing = True
        self._reading()

    def resume_writing(self) -> None:
        self.paused_writing = False
        self._reading()

    # httptools callbacks

    def on_message_begin(self) -> None:
        exchange = Exchange(self)
        self.parsing = exchange
        self.queue.append(exchange)
        self.clock.headers()
        if len(self.queue) > 1 and not self.paused_pipeline:
            self.paused_pipeline = True
            self._reading()

    def on_url(self, url: bytes) -> None:
        exchange = self.parsing
        assert exchange is not None
        exchange.url += url
        exchange.head_bytes += len(url)
        if exchange.head_bytes > MAX_HEAD_BYTES:
            raise _HeadTooLarge

    def on_header(self, name: bytes, value: bytes) -> None:
        exchange = self.parsing
        name = name.lower()
        exchange.headers.append((name, value))  # type: ignore[union-attr]
        if name == b"expect" and value.lower() == b"100-continue":
            exchange.expect_continue = True  # type: ignore[union-attr]
        size = exchange.head_bytes = exchange.head_bytes + len(name) + len(value) + 4  # type: ignore[union-attr]
        if size > MAX_HEAD_BYTES:
            raise _HeadTooLarge

    def on_headers_complete(self) -> None:
        exchange = self.parsing
        assert exchange is not None
        parser = self.parser
        exchange.head_done = True
        exchange.method = parser.get_method()
        exchange.keep_alive = parser.should_keep_alive() and parser.get_http_version() == "1.1"
        url = exchange.url
        if url == b"/invocations":
            exchange.path = "/invocations"
        else:
            import httptools

            path = httptools.parse_url(url).path.decode("latin-1") if url else "/"
            if "%" in path:
                from urllib.parse import unquote

                path = unquote(path)
            exchange.path = path
        self.clock.body()
        if self.queue[0] is exchange:
            self._begin(exchange)

    def on_body(self, body: bytes) -> None:
        exchange = self.parsing
        assert exchange is not None
        if exchange.answered:
            return  # answered early: the rest of its body is read and dropped
        exchange.chunks.append(body)
        exchange.size += len(body)
        if exchange.admitted:
            answer = self.handler.grow(exchange)
            if answer is not None:
                self.respond(exchange, answer)

    def on_message_complete(self) -> None:
        exchange = self.parsing
        assert exchange is not None
        exchange.complete = True
        self.parsing = None
        if exchange.answered:
            if not self.queue and not self.broken:
                self.clock.idle()
            return
        self.clock.stop()
        if exchange.admitted:
            self._complete(exchange)

    # requests

    def _begin(self, exchange: Exchange) -> None:
        front = self.front
        exchange.begun = True
        exchange.started = time.perf_counter()
        limit = front.limit_concurrency
        open_requests = front.open_requests
        front.open_requests = open_requests + 1
        if len(front.connections) >= limit or open_requests >= limit:
            status, headers, body = responses.overloaded(
                f"{len(front.connections)} connections and {open_requests} requests open, config key "
                "limit_concurrency"
            )
            self.respond(exchange, (status, [*headers, responses.CLOSE], body))
            return
        answer = self.handler.begin(exchange)
        if answer is not None:
            self.respond(exchange, answer)
            return
        exchange.admitted = True
        if exchange.size:
            answer = self.handler.grow(exchange)
            if answer is not None:
                self.respond(exchange, answer)
                return
        if exchange.complete:
            self._complete(exchange)
        elif exchange.expect_continue and not self.closed:
            self.transport.write(_CONTINUE)

    def _complete(self, exchange: Exchange) -> None:
        answer = self.handler.complete(exchange)
        if answer is not None:
            self.respond(exchange, answer)

    def _activate(self, exchange: Exchange) -> None:
        if exchange.preset is not None:
            self.respond(exchange, exchange.preset)
        elif exchange.head_done:
            self._begin(exchange)

    def respond(self, exchange: Exchange, response: Response) -> None:
        """Answer ``exchange`` (see :meth:`Exchange.respond`)."""
        if exchange.answered:
            return
        exchange.answered = True
        exchange.on_leave = None  # a handler's hook usually refers back to the exchange: no cycle left
        if self.closed:
            self._finished(exchange, response)
            return
        status, headers, body = response
        close = (
            not exchange.keep_alive
            or self.front.stopping
            or (exchange.expect_continue and not exchange.complete)
            or responses.CLOSE in headers
        )
        self.transport.write(_encode(status, headers, body, close, exchange.method == b"HEAD"))
        self._finished(exchange, response)  # after the write: the client does not wait for the bookkeeping
        queue = self.queue
        if queue and queue[0] is exchange:
            queue.popleft()
        if close:
            self.broken = True
            self.clock.cancel()
            self.transport.close()
            return
        if queue:
            self._activate(queue[0])
            return
        if self.paused_pipeline:
            self.paused_pipeline = False
            self._reading()
            self.clock.restart()
        if self.parsing is None:
            self.clock.idle()

    def _finished(self, exchange: Exchange, response: Response) -> None:
        if exchange.begun:
            self.front.open_requests -= 1
            self.handler.finished(exchange, response)

    # connection states

    def _reading(self) -> None:
        if self.closed:
            return
        if self.paused_pipeline or self.paused_writing:
            self.transport.pause_reading()
        else:
            self.transport.resume_reading()

    def _malformed(self, error: Exception) -> None:
        self.broken = True
        if isinstance(error.__context__, _HeadTooLarge) or isinstance(error, _HeadTooLarge):
            response = responses.json_error(
                431, "BAD_REQUEST", f"The request's line and headers are over {MAX_HEAD_BYTES} bytes",
                responses.CLOSE)
        else:
            response = responses.json_error(400, "BAD_REQUEST", f"The request is not valid HTTP/1.1: {error}",
                                            responses.CLOSE)
        exchange = self.parsing
        if exchange is None or exchange.answered or exchange.complete:
            exchange = Exchange(self)
            self.queue.append(exchange)
        exchange.preset, exchange.keep_alive = response, False
        if self.queue and self.queue[0] is exchange:
            self.respond(exchange, response)

    def _upgraded(self) -> None:
        # Nothing here speaks another protocol: answer the request as it is, then close.
        self.broken = True
        exchange = self.parsing
        if exchange is None:
            return
        exchange.keep_alive = False
        if not exchange.complete and exchange.head_done:
            self.on_message_complete()

    def shutdown(self) -> None:
        """Close now if idle; else close once the requests being answered are."""
        if not self.queue and self.parsing is None:
            self.broken = True
            self.transport.close()

    def abort(self) -> None:
        self.transport.abort()


class _Date:
    """The ``date`` header's value, formatted once a second."""

    second = 0
    value = b""

    @classmethod
    def now(cls) -> bytes:
        second = int(time.time())
        if second != cls.second:
            cls.second, cls.value = second, formatdate(second, usegmt=True).encode()
        return cls.value


def _encode(status: int, headers: list[tuple[bytes, bytes]], body: bytes, close: bool, head_only: bool) -> bytes:
    parts = [_STATUS_LINES.get(status) or _status_line(status), b"date: ", _Date.now(),
             b"\r\ncontent-length: ", str(len(body)).encode()]
    for name, value in headers:
        if name != b"content-length" and name != b"connection":
            parts += (b"\r\n", name, b": ", value)
    parts.append(b"\r\nconnection: close\r\n\r\n" if close else b"\r\n\r\n")
    if not head_only:
        parts.append(body)
    return b"".join(parts)


async def serve(front: Front, sock: Any, *, stop_timeout: float, listening: Callable[[], None]) -> None:
    """Serve ``sock`` until SIGTERM or SIGINT, then stop as the module docstring says."""
    loop = asyncio.get_running_loop()
    signals = [0]
    stop, forced = asyncio.Event(), asyncio.Event()

    def on_signal() -> None:
        signals[0] += 1
        (stop if signals[0] == 1 else forced).set()

    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, on_signal)
    server = await loop.create_server(lambda: HttpConnection(front), sock=sock, backlog=2048)
    listening()
    await stop.wait()
    server.close()
    sock.close()  # the listening socket is ours too: new connections are refused from here on
    front.stopping = True
    for connection in list(front.connections):
        connection.shutdown()
    deadline = loop.time() + stop_timeout
    while front.connections and loop.time() < deadline and not forced.is_set():
        try:
            await asyncio.wait_for(forced.wait(), min(0.05, max(0.0, deadline - loop.time())))
        except asyncio.TimeoutError:
            pass
    for connection in list(front.connections):
        connection.abort()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.remove_signal_handler(signum)
