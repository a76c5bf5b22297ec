"""The router's HTTP front-end in this process: what a handler's leave hook sees, and what is left of an
exchange once it is answered."""

from __future__ import annotations

import asyncio
import gc
import weakref

from deployflow.targets.local.front import Front, HttpConnection
from deployflow.targets.local.limits import Limits

REQUEST = b"POST /invocations HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}"


class LaterHandler:
    """Answers each request in a later turn of the loop, with a leave hook that refers to its exchange
    (as the router's does); records what it saw."""

    def __init__(self) -> None:
        self.exchanges: list[weakref.ref] = []
        self.left = 0
        self.ended = []

    def begin(self, exchange):
        return None

    def grow(self, exchange):
        return None

    def complete(self, exchange):
        self.exchanges.append(weakref.ref(exchange))

        def leave():
            self.left += 1
            exchange.respond((499, [], b""))

        exchange.on_leave = leave
        if exchange.headers and (b"x-answer", b"later") in exchange.headers:
            asyncio.get_running_loop().call_later(0.05, exchange.respond, (200, [], b"ok"))
        return None

    def finished(self, exchange, response):
        self.ended.append(None if response is None else response[0])


async def _exchange(port: int, head: bytes, *, leave: bool) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(head)
    await writer.drain()
    if leave:
        await asyncio.sleep(0.02)
        writer.close()
        await asyncio.sleep(0.1)
        return b""
    answer = await reader.readuntil(b"ok")
    writer.close()
    return answer


def test_an_answered_exchange_is_freed_without_the_cyclic_collector_and_a_leaving_client_calls_the_hook():
    handler = LaterHandler()

    async def main() -> None:
        front = Front(handler, Limits(5.0, 5.0, 5.0), limit_concurrency=10)
        server = await asyncio.get_running_loop().create_server(lambda: HttpConnection(front), "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        answered = REQUEST.replace(b"Host: x\r\n", b"Host: x\r\nX-Answer: later\r\n")
        gc.disable()
        try:
            assert (await _exchange(port, answered, leave=False)).startswith(b"HTTP/1.1 200")
            await asyncio.sleep(0.05)
            assert handler.exchanges[0]() is None  # freed by reference counting: no cycle through on_leave
            await _exchange(port, REQUEST, leave=True)  # nobody answers it: the client leaves
            assert handler.left == 1 and handler.ended == [200, 499]
            assert handler.exchanges[1]() is None
        finally:
            gc.enable()
            server.close()
            await server.wait_closed()

    asyncio.run(main())
