"""The router's relay (:mod:`deployflow.targets.local.relay`) against raw upstreams on 127.0.0.1: each
scenario's upstream writes exactly the bytes under test, so framing, pooling and failures are seen as
the relay sees them."""

from __future__ import annotations

import asyncio
import gzip

import pytest

from deployflow.targets.local import relay as relay_module
from deployflow.targets.local.relay import Relay, UpstreamBadAnswer, UpstreamDropped, UpstreamRefused, UpstreamTimeout
from support.local_models import free_port

OK = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}"


async def upstream(answers: list[bytes | None], *, delay: float = 0.0):
    """A server answering each request with the next of ``answers`` (``None``: close without answering);
    returns (url, connections accepted, requests seen, server)."""
    accepted: list[int] = []
    seen: list[bytes] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        accepted.append(1)
        try:
            while answers:
                head = await reader.readuntil(b"\r\n\r\n")
                length = next(int(line.split(b":")[1]) for line in head.split(b"\r\n")
                              if line.lower().startswith(b"content-length"))
                seen.append(head + await reader.readexactly(length))
                answer = answers.pop(0)
                await asyncio.sleep(delay)
                if answer is None:
                    break
                writer.write(answer)
                await writer.drain()
                if b"connection: close" in answer.lower():
                    break
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    return f"http://127.0.0.1:{port}", accepted, seen, server


def run(coroutine):
    return asyncio.run(coroutine)


async def post(relay: Relay, url: str, path: bytes, headers: list, body: bytes, timeout: float | None):
    """``relay.send`` awaited: the answer as ``(status, headers, body)``, or the UpstreamError it gave."""
    future = asyncio.get_running_loop().create_future()

    def done(status, answer_headers, content, error):
        if not future.done():
            if error is not None:
                future.set_exception(error)
            else:
                future.set_result((status, answer_headers, content))

    relay.send(url, path, headers, body, timeout, done)
    return await future


def test_requests_share_a_kept_alive_connection_and_carry_the_headers():
    async def scenario():
        url, accepted, seen, server = await upstream([OK, OK, OK])
        relay = Relay()
        for _ in range(3):
            status, headers, body = await post(relay, url, b"/invocations", [(b"content-type", b"application/json")],
                                                     b'{"inputs": [[1]]}', 5.0)
            assert (status, body) == (200, b"{}") and (b"content-type", b"application/json") in headers
        relay.close()
        server.close()
        assert len(accepted) == 1
        assert seen[0].startswith(b"POST /invocations HTTP/1.1\r\n")
        assert b"content-length: 17\r\n" in seen[0] and seen[0].endswith(b'{"inputs": [[1]]}')

    run(scenario())


def test_a_connection_idle_too_long_is_not_reused(monkeypatch):
    monkeypatch.setattr(relay_module, "IDLE_SECONDS", 0.05)

    async def scenario():
        url, accepted, _, server = await upstream([OK, OK])
        relay = Relay()
        await post(relay, url, b"/invocations", [], b"", 5.0)
        await asyncio.sleep(0.2)
        await post(relay, url, b"/invocations", [], b"", 5.0)
        relay.close()
        server.close()
        assert len(accepted) == 2

    run(scenario())


@pytest.mark.parametrize("answer, body", [
    (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n", b"abcde"),
    (b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nuntil the end", b"until the end"),
    (b"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nContent-Length: %d\r\n\r\n" % len(gzip.compress(b"zipped"))
     + gzip.compress(b"zipped"), b"zipped"),
    (b"HTTP/1.1 100 Continue\r\n\r\n" + OK, b"{}"),
], ids=["chunked", "until-close", "gzip", "interim-100"])
def test_answer_framings(answer, body):
    async def scenario():
        url, _, _, server = await upstream([answer])
        relay = Relay()
        status, _, content = await post(relay, url, b"/invocations", [], b"", 5.0)
        relay.close()
        server.close()
        assert (status, content) == (200, body)

    run(scenario())


@pytest.mark.parametrize("answer, error", [
    (None, UpstreamDropped),
    (b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 10\r\n\r\nshort", UpstreamDropped),
    (b"not http at all\r\n\r\n", UpstreamBadAnswer),
    (b"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nContent-Length: 3\r\n\r\nbad", UpstreamBadAnswer),
], ids=["closed", "cut-short", "garbage", "bad-gzip"])
def test_failures(answer, error):
    async def scenario():
        url, _, _, server = await upstream([answer])
        relay = Relay()
        with pytest.raises(error):
            await post(relay, url, b"/invocations", [], b"", 5.0)
        relay.close()
        server.close()

    run(scenario())


def test_refused_and_timeout():
    async def scenario():
        relay = Relay()
        with pytest.raises(UpstreamRefused):
            await post(relay, f"http://127.0.0.1:{free_port()}", b"/invocations", [], b"", 5.0)
        url, _, _, server = await upstream([OK], delay=2.0)
        with pytest.raises(UpstreamTimeout):
            await post(relay, url, b"/invocations", [], b"", 0.2)
        relay.close()
        server.close()

    run(scenario())


def test_send_calls_back_with_the_answer_or_the_failure():
    """The callback form the router uses: one call per request, an answer or an error, never both."""
    async def scenario():
        url, _, _, server = await upstream([OK])
        relay = Relay()
        calls = []
        done = asyncio.get_running_loop().create_future()

        def record(status, headers, body, error):
            calls.append((status, body, error))
            if not done.done():
                done.set_result(None)

        relay.send(url, b"/invocations", [], b"", 5.0, record)
        await done
        relay.send("ftp://nowhere", b"/invocations", [], b"", 5.0, record)  # refused before anything is sent
        relay.close()
        server.close()
        assert calls[0] == (200, b"{}", None)
        assert calls[1][:2] == (0, b"") and isinstance(calls[1][2], UpstreamRefused) and len(calls) == 2

    run(scenario())
