"""Overload bounds shared by a deployment server and an endpoint's router.

Three pieces, each written once:

* :class:`Admission` counts the requests a process has accepted and not answered yet, and the body
  bytes they hold. A request that would pass ``max_queue`` requests or ``max_queued_bytes`` bytes is
  refused before its body is read, with 503 and ``Retry-After`` (:func:`.responses.overloaded`), so a
  client's retry policy spreads the load instead of the process queueing without end.
* :class:`ConnectionClock` closes a connection that opens and sends nothing, whose request headers do
  not arrive within ``header_timeout`` (slowloris), or whose body does not arrive within
  ``body_timeout`` (a stalled upload: Content-Length 1000, 9 bytes sent). The router's front-end
  (:mod:`.front`) also runs it between requests (``keepalive_timeout``).
* :class:`GuardedProtocol` wraps uvicorn's httptools protocol (selected through uvicorn's public
  ``Config(http=...)``, driven only through the ``asyncio.Protocol`` interface) for a deployment server,
  with a :class:`ConnectionClock` following request boundaries with its own httptools parser on the same
  bytes (a couple of microseconds per request). uvicorn's own ``timeout_keep_alive`` closes a connection
  idle between requests, and ``limit_concurrency`` answers 503 once that many connections or requests
  are open.

Memory: a request's body is read only once it is admitted. Until then a deployment server buffers at
most uvicorn's flow-control high-water mark (64 KiB) per connection, and the router at most what one
read of the socket brings (uvloop reads up to 256,000 bytes): it drops the rest of a refused body as it
comes, and stops reading a connection on which a second request starts before the first is answered.
Connections are bounded by ``limit_concurrency``, so the body bytes a process holds stay below
``max_queued_bytes + limit_concurrency`` times that buffer (``benchmarks/bench_overload.py`` floods a
server).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Any

__all__ = [
    "BODY_BYTES_REFUSAL", "Admission", "ConnectionClock", "GuardedProtocol", "Limits", "guarded_protocol",
    "when_client_leaves",
]

_logger = logging.getLogger("deployflow.targets.local.limits")


#: Why a body that grew past what ``max_queued_bytes`` leaves room for is refused (:meth:`Admission.grow`).
BODY_BYTES_REFUSAL = "body bytes queued, config key max_queued_bytes"


class Admission:
    """Requests accepted and not answered yet, and their body bytes, against two limits. One event loop."""

    __slots__ = ("bytes", "max_bytes", "max_queue", "requests")

    def __init__(self, max_queue: int, max_bytes: int) -> None:
        self.max_queue = max_queue
        self.max_bytes = max_bytes
        self.requests = 0
        self.bytes = 0

    def refusal(self, declared: int) -> str | None:
        """Why a request with a body of ``declared`` bytes cannot be admitted now, else ``None``."""
        if self.requests >= self.max_queue:
            return f"{self.requests} requests queued, config key max_queue"
        if self.bytes + declared > self.max_bytes:
            return f"{self.bytes} body bytes queued, config key max_queued_bytes"
        return None

    def admit(self, declared: int) -> None:
        self.requests += 1
        self.bytes += declared

    def grow(self, size: int, held: int) -> int | None:
        """A body read in chunks has reached ``size`` bytes, ``held`` of them counted already: count the
        rest and return the bytes now held, or ``None`` (nothing counted) past ``max_queued_bytes``
        (refuse it with :data:`BODY_BYTES_REFUSAL`)."""
        if size <= held:
            return held
        if self.bytes + size - held > self.max_bytes:
            return None
        self.bytes += size - held
        return size

    def release(self, size: int) -> None:
        self.requests -= 1
        self.bytes -= size


class Limits:
    """The connection timeouts of one process (seconds)."""

    __slots__ = ("body_timeout", "header_timeout", "idle_timeout")

    def __init__(self, header_timeout: float, body_timeout: float, idle_timeout: float) -> None:
        self.header_timeout = header_timeout
        self.body_timeout = body_timeout
        self.idle_timeout = idle_timeout


class ConnectionClock:
    """The one deadline a connection is under at a time, for :class:`GuardedProtocol` and the router's
    front-end (:mod:`.front`): idle (nothing sent yet, or nothing since the last answer), headers (from
    a request's first byte) or body (from the end of its headers). When it passes, the connection is
    closed and the reason logged at INFO.

    Setting a phase costs no timer operation when one is already armed for an earlier moment: that
    timer, when it fires, arms itself again for the deadline then in force. So a kept-alive connection
    moving through its phases request after request touches the event loop's timers about once per
    idle period, not several times per request.
    """

    __slots__ = (
        "_deadline",
        "_held",
        "_limits",
        "_loop",
        "_reason",
        "_seconds",
        "_timer",
        "_timer_at",
        "_transport",
    )

    def __init__(self, loop: asyncio.AbstractEventLoop, transport: Any, limits: Limits) -> None:
        self._loop = loop
        self._transport = transport
        self._limits = limits
        self._deadline: float | None = None
        self._seconds = 0.0
        self._reason = ""
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = 0.0
        self._held = False

    @property
    def phase(self) -> str:
        """The reason the connection would be closed for now (``""``: no deadline)."""
        return self._reason if self._deadline is not None else ""

    def idle(self) -> None:
        self._set(self._limits.idle_timeout, "sent nothing")

    def headers(self) -> None:
        self._set(self._limits.header_timeout, "did not send its headers")

    def body(self) -> None:
        self._set(self._limits.body_timeout, "did not send its body")

    def stop(self) -> None:
        """No deadline (a request is being answered, or the connection closed)."""
        self._deadline = None
        self._held = False

    def hold(self) -> None:
        """No deadline until :meth:`restart` (reading is paused: the client is not the one waiting)."""
        if self._deadline is not None:
            self._deadline = None
            self._held = True

    def restart(self) -> None:
        """The phase :meth:`hold` stopped, again in full from now."""
        if self._held:
            self._set(self._seconds, self._reason)

    def cancel(self) -> None:
        self._deadline = None
        self._held = False
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _set(self, seconds: float, reason: str) -> None:
        self._seconds, self._reason, self._held = seconds, reason, False
        self._deadline = deadline = self._loop.time() + seconds
        if self._timer is None or self._timer_at > deadline:
            self._arm(deadline)

    def _arm(self, when: float) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer_at = when
        self._timer = self._loop.call_at(when, self._fire)

    def _fire(self) -> None:
        self._timer = None
        deadline = self._deadline
        if deadline is None:
            return
        if self._loop.time() < deadline:
            self._arm(deadline)
            return
        self._deadline = None
        transport = self._transport
        if transport is not None and not transport.is_closing():
            peer = transport.get_extra_info("peername")
            _logger.info("closing the connection from %s: it %s within %g s", peer, self._reason, self._seconds)
            transport.close()


#: This process's open connections by their peer's (host, port): what an ASGI scope's ``client`` names.
_OPEN: dict[tuple[Any, ...], GuardedProtocol] = {}


def when_client_leaves(client: Any, callback: Callable[[], None]) -> Callable[[], None] | None:
    """Call ``callback`` (in the event loop) once the connection of ASGI ``client`` (a scope's
    ``client``) closes. Returns what stops that, or ``None`` when no open connection has that peer."""
    protocol = _OPEN.get(tuple(client[:2])) if client else None
    if protocol is None or protocol._leaving is None:
        return None
    leaving = protocol._leaving
    leaving.append(callback)

    def stop() -> None:
        with contextlib.suppress(ValueError):
            leaving.remove(callback)

    return stop


class GuardedProtocol(asyncio.Protocol):
    """uvicorn's httptools protocol, with connections closed when a request's parts come too slowly,
    and their requests told when the client leaves (:func:`when_client_leaves`).

    Made by :func:`guarded_protocol`; uvicorn instantiates it as it would its own protocol class.
    """

    limits: Limits = Limits(10.0, 30.0, 5.0)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        import httptools
        from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

        self._inner = HttpToolsProtocol(*args, **kwargs)
        self._loop = asyncio.get_event_loop() if kwargs.get("_loop") is None else kwargs["_loop"]
        self._watch: Any = httptools.HttpRequestParser(self)
        self._clock: ConnectionClock | None = None
        self._peer: tuple[Any, ...] | None = None
        self._leaving: list[Callable[[], None]] | None = []

    # asyncio.Protocol, passed on to uvicorn's protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        peer = transport.get_extra_info("peername")
        if isinstance(peer, tuple) and len(peer) >= 2:
            self._peer = peer[:2]
            _OPEN[self._peer] = self
        self._clock = ConnectionClock(self._loop, transport, self.limits)
        self._clock.idle()
        self._inner.connection_made(_CoalescingTransport(transport, self._loop))  # type: ignore[arg-type]

    def data_received(self, data: bytes) -> None:
        watch = self._watch
        if watch is not None:
            clock = self._clock
            if clock is not None and clock.phase == "sent nothing":
                clock.stop()  # uvicorn's own keep-alive timeout covers the time between requests
            try:
                watch.feed_data(data)
            except Exception:  # a parse error or an upgrade: uvicorn answers it; stop watching
                self._watch = None
                if clock is not None:
                    clock.cancel()
        self._inner.data_received(data)

    def eof_received(self) -> bool | None:
        return self._inner.eof_received()

    def connection_lost(self, exc: Exception | None) -> None:
        if self._clock is not None:
            self._clock.cancel()
        self._watch = None
        if self._peer is not None and _OPEN.get(self._peer) is self:
            del _OPEN[self._peer]
        leaving, self._leaving = self._leaving, None
        self._inner.connection_lost(exc)
        for callback in leaving or ():
            try:
                callback()
            except Exception:
                _logger.exception("a callback for a client that left failed")

    def pause_writing(self) -> None:
        self._inner.pause_writing()

    def resume_writing(self) -> None:
        self._inner.resume_writing()

    # httptools callbacks of the watching parser

    def on_message_begin(self) -> None:
        if self._clock is not None:
            self._clock.headers()

    def on_headers_complete(self) -> None:
        if self._clock is not None:
            self._clock.body()

    def on_message_complete(self) -> None:
        if self._clock is not None:
            self._clock.stop()


class _CoalescingTransport:
    """The connection's transport as uvicorn's protocol sees it: what is written in one turn of the
    event loop leaves in one ``write``. uvicorn writes an answer's headers and its body separately;
    with Nagle's algorithm off (as it must be, see :func:`.serving.bind_socket`) that is two segments,
    two system calls and two wake-ups of the reader. Joined, an answer costs one of each."""

    __slots__ = ("_loop", "_pending", "_transport")

    def __init__(self, transport: Any, loop: asyncio.AbstractEventLoop) -> None:
        self._transport = transport
        self._loop = loop
        self._pending: list[bytes] = []

    def write(self, data: bytes) -> None:
        pending = self._pending
        if not pending:
            self._loop.call_soon(self._flush)
        pending.append(data)

    def writelines(self, lines: Any) -> None:
        for data in lines:
            self.write(data)

    def _flush(self) -> None:
        pending = self._pending
        if pending:
            self._pending = []
            if not self._transport.is_closing():
                self._transport.write(pending[0] if len(pending) == 1 else b"".join(pending))

    def close(self) -> None:
        self._flush()
        self._transport.close()

    def write_eof(self) -> None:
        self._flush()
        self._transport.write_eof()

    def get_write_buffer_size(self) -> int:
        return self._transport.get_write_buffer_size() + sum(map(len, self._pending))

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


def guarded_protocol(limits: Limits) -> type[GuardedProtocol]:
    """A :class:`GuardedProtocol` class bound to ``limits``, for uvicorn's ``Config(http=...)``."""
    return type("GuardedHttpToolsProtocol", (GuardedProtocol,), {"limits": limits})
