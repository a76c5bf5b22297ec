"""Client CPU per predict call: how much of this process's CPU one scoring POST costs, per edge.

A small asyncio HTTP server runs in a *separate process* on 127.0.0.1 (so its work is not counted) and
answers every POST with a fixed JSON body. The client sends a 112 KB body N times and the script prints
this process's CPU time (``time.process_time``) per call, median of R interleaved rounds, for:

* ``HttpTransport.request`` (the sync edge, as every target's ``predict`` uses it),
* ``AsyncHttpTransport.request`` with 8 requests in flight (the async edge, as batch scoring uses it),
  when this checkout has it,
* a bare ``requests.Session.post`` (the peer, same run).

Run: ``.venv/bin/python benchmarks/bench_predict_cpu.py [--calls 1000] [--rounds 5]``. To compare with
an earlier commit, run the same script with that commit's package on ``sys.path``
(``PYTHONPATH=<worktree>/core-parent``) in the same session.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import textwrap
import time

SERVER = textwrap.dedent(
    """
    import asyncio, sys
    ANSWER = b'{"predictions": [0.5, 0.25]}'
    HEAD = b"HTTP/1.1 200 OK\\r\\ncontent-type: application/json\\r\\ncontent-length: %d\\r\\n\\r\\n" % len(ANSWER)

    async def handle(reader, writer):
        try:
            while True:
                head = await reader.readuntil(b"\\r\\n\\r\\n")
                length = 0
                for line in head.split(b"\\r\\n"):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":", 1)[1])
                if length:
                    await reader.readexactly(length)
                writer.write(HEAD + ANSWER)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()

    async def main():
        server = await asyncio.start_server(handle, "127.0.0.1", 0)
        print(server.sockets[0].getsockname()[1], flush=True)
        async with server:
            await server.serve_forever()

    asyncio.run(main())
    """
)


def body_of(size: int) -> bytes:
    row = b"[0.123456789,1.23456789,12.3456789,123.456789,1234.56789],"
    rows = row * (size // len(row))
    return b'{"dataframe_split":{"columns":["a","b","c","d","e"],"data":[' + rows[:-1] + b"]}}"


def cpu_per_call(run, calls: int) -> float:
    run(10)  # warm the pool
    started = time.process_time()
    run(calls)
    return (time.process_time() - started) / calls * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--size", type=int, default=112 * 1024)
    args = parser.parse_args()

    import requests

    from deployflow.transport import HttpSettings, HttpTransport

    try:
        from deployflow.aio import AsyncHttpTransport, LoopThread
    except ImportError:  # an earlier checkout without the async edge
        AsyncHttpTransport = None

    server = subprocess.Popen([sys.executable, "-c", SERVER], stdout=subprocess.PIPE, text=True)
    try:
        port = int(server.stdout.readline())
        url = f"http://127.0.0.1:{port}"
        body = body_of(args.size)
        headers = {"Content-Type": "application/json"}
        settings = HttpSettings.from_options({}, environ={})
        transport = HttpTransport(url, settings=settings)
        session = requests.Session()

        def sync_edge(n: int) -> None:
            for _ in range(n):
                transport.request("POST", "/invocations", data=body, headers=headers, kind="predict")

        def peer(n: int) -> None:
            for _ in range(n):
                session.post(url + "/invocations", data=body, headers=headers).content

        runs = {"HttpTransport.request (sync edge)": sync_edge, "requests.Session.post (peer)": peer}
        if AsyncHttpTransport is not None:
            io = LoopThread()
            edge = AsyncHttpTransport(url, settings=settings, limit=8)

            async def many(n: int) -> None:
                gate = asyncio.Semaphore(8)

                async def one() -> None:
                    async with gate:
                        await edge.request("POST", "/invocations", data=body, headers=headers, kind="predict")

                await asyncio.gather(*(one() for _ in range(n)))

            runs["AsyncHttpTransport.request, 8 in flight"] = lambda n: io.submit(many(n)).result()

        samples: dict[str, list[float]] = {name: [] for name in runs}
        for _ in range(args.rounds):  # interleaved: this machine's speed drifts
            for name, run in runs.items():
                samples[name].append(cpu_per_call(run, args.calls))
        print(f"client CPU per call, {len(body) / 1024:.0f} KB body, {args.calls} calls x {args.rounds} rounds "
              f"(median; pid {os.getpid()})")
        peer_median = statistics.median(samples["requests.Session.post (peer)"])
        for name, values in samples.items():
            median = statistics.median(values)
            print(f"  {name:42} {median:8.0f} us   {median / peer_median:5.2f}x the peer")
        if AsyncHttpTransport is not None:
            io.submit(edge.close()).result()
            io.stop()
        transport.close()
    finally:
        server.kill()


if __name__ == "__main__":
    main()
