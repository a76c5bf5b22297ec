"""Issue 15 item 1: connections accepted by a deployment server or an endpoint's router have Nagle's
algorithm off. With it on, a router answer written as headers then body waited for the client's delayed
ACK: about 44 ms per request on a kept-alive connection, against 0.6 ms direct (benchmarks/bench_router.py)."""

from __future__ import annotations

import socket

import pytest

from deployflow.targets.local import router, server


@pytest.mark.parametrize("bind", [router._bind, server.bind_socket], ids=["router", "server"])
def test_accepted_connections_have_nagle_off(bind):
    listener = bind("127.0.0.1", 0)
    try:
        listener.setblocking(True)
        client = socket.create_connection(listener.getsockname()[:2], timeout=5)
        accepted, _ = listener.accept()
        try:
            assert accepted.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0
        finally:
            accepted.close()
            client.close()
    finally:
        listener.close()
