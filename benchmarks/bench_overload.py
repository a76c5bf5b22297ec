"""A deployment under a flood: slow, large uploads and a burst past its queue, with normal traffic beside.

Starts one deployment of a model that takes ``--model-ms`` per request, then, for ``--seconds``:

* ``--uploads`` connections each declare a ``--upload-mib`` MiB body and send it a little at a time
  (the slow, large requests of issue 15 item 3);
* ``--burst`` threads post small requests back to back (more than the queue holds);
* one thread posts a normal request every 50 ms and records its status and latency.

Prints the server's RSS before and at its peak, how the burst was answered (200 / 503 with Retry-After
/ other) and the normal requests' outcomes and latency. What to look for: RSS stays near
``max_queued_bytes`` above the baseline, never the sum of the declared uploads; every request gets an
answer (none hangs); a full queue answers 503 with Retry-After.

Run: ``.venv/bin/python benchmarks/bench_overload.py [--seconds 10] [--uploads 100] [--upload-mib 32]``.
"""

from __future__ import annotations

import argparse
import collections
import os
import socket
import statistics
import tempfile
import threading
import time
from pathlib import Path

import psutil
import requests

from deployflow import get_deploy_client

MODEL = "import time\ndef model(data):\n    time.sleep({seconds})\n    return [1] * len(data)\n"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--uploads", type=int, default=100)
    parser.add_argument("--upload-mib", type=int, default=32)
    parser.add_argument("--burst", type=int, default=16)
    parser.add_argument("--model-ms", type=float, default=5.0)
    parser.add_argument("--max-queue", type=int, default=8)
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="deployflow-bench-overload-"))
    (workdir / "model.py").write_text(MODEL.format(seconds=args.model_ms / 1000))
    client = get_deploy_client(f"local://{workdir / 'state'}")
    upload = args.upload_mib * 1024 * 1024
    config = {"max_request_bytes": upload, "max_queued_bytes": upload + 4 * 1024 * 1024, "max_queue": args.max_queue,
              "body_timeout": 5.0}
    client.create_deployment("flooded", f"python:{workdir / 'model.py'}:model", config=config)
    try:
        deployment = client.get_deployment("flooded")
        url, process = deployment["url"], psutil.Process(deployment["pid"])
        host, port = url.removeprefix("http://").rsplit(":", 1)
        print(f"load average: {', '.join(f'{x:.2f}' for x in os.getloadavg())}")
        baseline = process.memory_info().rss
        stop = time.monotonic() + args.seconds
        burst: collections.Counter[str] = collections.Counter()
        normal: list[tuple[int, float]] = []
        lock = threading.Lock()

        def uploader() -> None:
            chunk = b"[" + b"1.0," * 16383 + b"1.0]"
            while time.monotonic() < stop:
                try:
                    with socket.create_connection((host, int(port)), timeout=10) as sock:
                        sock.sendall(b"POST /invocations HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                                     + f"Content-Length: {upload}\r\n\r\n".encode())
                        while time.monotonic() < stop:
                            sock.sendall(chunk)
                            time.sleep(0.2)
                except OSError:
                    time.sleep(0.1)  # closed by the server (refused, or too slow): open another

        def burster() -> None:
            with requests.Session() as session:
                while time.monotonic() < stop:
                    answer = session.post(url + "/invocations", json={"inputs": [[1.0]]}, timeout=60)
                    kind = str(answer.status_code)
                    if answer.status_code == 503:
                        kind += " + Retry-After" if "retry-after" in answer.headers else " without Retry-After"
                    with lock:
                        burst[kind] += 1

        def prober() -> None:
            with requests.Session() as session:
                while time.monotonic() < stop:
                    sent = time.perf_counter()
                    answer = session.post(url + "/invocations", json={"inputs": [[1.0]]}, timeout=60)
                    normal.append((answer.status_code, time.perf_counter() - sent))
                    time.sleep(0.05)

        threads = [threading.Thread(target=uploader, daemon=True) for _ in range(args.uploads)]
        threads += [threading.Thread(target=burster, daemon=True) for _ in range(args.burst)]
        threads.append(threading.Thread(target=prober, daemon=True))
        for thread in threads:
            thread.start()
        peak = baseline
        while time.monotonic() < stop:
            peak = max(peak, process.memory_info().rss)
            time.sleep(0.05)
        for thread in threads:
            thread.join(timeout=30)
        declared = args.uploads * upload
        print(f"{args.uploads} uploads declaring {args.upload_mib} MiB each ({declared / 2**20:,.0f} MiB in all), "
              f"{args.burst} burst threads, max_queue {args.max_queue}, {args.seconds:g} s")
        print(f"  server RSS: {baseline / 2**20:.0f} MiB before, {peak / 2**20:.0f} MiB at peak "
              f"(+{(peak - baseline) / 2**20:.0f} MiB; max_queued_bytes {config['max_queued_bytes'] / 2**20:.0f} MiB)")
        print(f"  burst answers: {dict(burst)}")
        statuses = collections.Counter(status for status, _ in normal)
        latencies = sorted(seconds for _, seconds in normal)
        if latencies:
            print(f"  normal requests: {dict(statuses)}; p50 {statistics.median(latencies) * 1e3:.1f} ms, "
                  f"max {latencies[-1] * 1e3:.1f} ms")
        print(f"load average after: {', '.join(f'{x:.2f}' for x in os.getloadavg())}")
    finally:
        client.delete_deployment("flooded")


if __name__ == "__main__":
    main()
