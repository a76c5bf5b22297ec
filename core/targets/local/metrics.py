"""Prometheus metrics of deployment servers and routers (``GET /metrics``, with ``prometheus_client``).

A deployment server exports:

==========================================  =========  ==================================================
``deployflow_requests_total``               counter    requests answered, by ``path`` and ``status``
``deployflow_request_duration_seconds``     histogram  time from the request's headers to its answer
``deployflow_requests_in_flight``           gauge      requests admitted and not answered yet
``deployflow_requests_queued``              gauge      of those, the ones waiting for a model thread
``deployflow_model_load_seconds``           gauge      how long loading the model took
``deployflow_predictions_total``            counter    rows (or items) predicted
==========================================  =========  ==================================================

A router exports ``deployflow_router_requests_total`` (by ``path`` and ``status``),
``deployflow_router_request_duration_seconds``, ``deployflow_router_requests_in_flight``,
``deployflow_router_routed_total`` (by ``deployment`` and ``status``) and
``deployflow_router_upstream_errors_total`` (by ``deployment`` and ``kind``: refused, dropped,
timeout, bad_answer). Every metric carries the deployment or endpoint name as label ``name``.

With ``workers > 1`` every worker process writes its figures to files in the directory named by
``PROMETHEUS_MULTIPROC_DIR`` (set by the server's supervisor before the workers start) and
``/metrics`` merges them (prometheus_client's multiprocess mode): whichever worker answers, the figures
are those of the whole deployment. When ``prometheus_client`` is not installed, ``/metrics`` answers
404 saying so, and nothing else changes.
"""

from __future__ import annotations

import os
from typing import Any

from .responses import Response

__all__ = ["ServerMetrics", "RouterMetrics", "server_metrics", "router_metrics", "MULTIPROC_ENV"]

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


def _available() -> bool:
    try:
        import prometheus_client  # noqa: F401
    except ImportError:
        return False
    return True


class _Metrics:
    def __init__(self, prefix: str, name: str) -> None:
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

        self.multiprocess = bool(os.environ.get(MULTIPROC_ENV))
        # Our own registry, so nothing else a model imports shows up here; in multiprocess mode the
        # figures live in files and are collected when rendered.
        self.registry = CollectorRegistry(auto_describe=True) if not self.multiprocess else None
        registry = self.registry
        self.name = name
        self.requests = Counter(f"{prefix}requests", "Requests answered", ["name", "path", "status"],
                                registry=registry)
        self.duration = Histogram(f"{prefix}request_duration_seconds", "Seconds from a request's headers to its answer",
                                  ["name", "path"], buckets=_BUCKETS, registry=registry)
        gauge_mode: dict[str, Any] = {"multiprocess_mode": "livesum"} if self.multiprocess else {}
        self.in_flight = Gauge(f"{prefix}requests_in_flight", "Requests admitted and not answered yet", ["name"],
                               registry=registry, **gauge_mode).labels(name)
        self._children: dict[tuple[str, int], tuple[Any, Any]] = {}
        self._gauge_mode = gauge_mode
        self._Counter, self._Gauge = Counter, Gauge

    def observe(self, path: str, status: int, seconds: float) -> None:
        key = (path, status)
        children = self._children.get(key)
        if children is None:
            if len(self._children) > 256:  # unknown paths are many: keep the label set small
                path, key = "other", ("other", status)
            children = self._children.get(key)
            if children is None:
                children = self._children[key] = (
                    self.requests.labels(self.name, path, str(status)), self.duration.labels(self.name, path)
                )
        children[0].inc()
        children[1].observe(seconds)

    def render(self) -> Response:
        from prometheus_client import (
            CONTENT_TYPE_LATEST,
            CollectorRegistry,
            generate_latest,
        )

        if self.multiprocess:
            from prometheus_client import multiprocess

            registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(registry)
        else:
            registry = self.registry
        body = generate_latest(registry)
        return 200, [(b"content-type", CONTENT_TYPE_LATEST.encode()), (b"content-length", str(len(body)).encode())], body


_KNOWN_PATHS = frozenset({"/invocations", "/ping", "/health", "/version", "/metrics", "/-/reload", "/-/routes"})


def _path_label(path: str) -> str:
    if path in _KNOWN_PATHS:
        return path
    if path.startswith("/v2/"):
        return "/v2"
    return "other"


class ServerMetrics(_Metrics):
    """The metrics of one deployment server process (or worker)."""

    def __init__(self, name: str) -> None:
        super().__init__("deployflow_", name)
        registry = self.registry
        self.queued = self._Gauge("deployflow_requests_queued", "Requests waiting for a model thread", ["name"],
                                  registry=registry, **self._gauge_mode).labels(name)
        load_mode = {"multiprocess_mode": "max"} if self.multiprocess else {}
        self.model_load = self._Gauge("deployflow_model_load_seconds", "Seconds loading the model took", ["name"],
                                      registry=registry, **load_mode).labels(name)
        self.predictions = self._Counter("deployflow_predictions", "Rows (or items) predicted", ["name"],
                                         registry=registry).labels(name)

    def request(self, path: str, status: int, seconds: float) -> None:
        self.observe(_path_label(path), status, seconds)


class RouterMetrics(_Metrics):
    """The metrics of one endpoint's router."""

    def __init__(self, name: str) -> None:
        super().__init__("deployflow_router_", name)
        registry = self.registry
        self.routed_total = self._Counter("deployflow_router_routed", "Requests answered by a deployment",
                                          ["name", "deployment", "status"], registry=registry)
        self.upstream_errors = self._Counter("deployflow_router_upstream_errors",
                                             "Requests a deployment did not answer", ["name", "deployment", "kind"],
                                             registry=registry)
        self._routed: dict[tuple[str, int], Any] = {}

    def observe_router(self, path: str, response: Response, seconds: float) -> None:
        self.observe(_path_label(path), response[0], seconds)

    def routed(self, deployment: str, status: int) -> None:
        key = (deployment, status)
        child = self._routed.get(key)
        if child is None:
            if len(self._routed) > 1024:
                self._routed.clear()
            child = self._routed[key] = self.routed_total.labels(self.name, deployment, str(status))
        child.inc()

    def upstream_error(self, deployment: str, kind: str) -> None:
        self.upstream_errors.labels(self.name, deployment, kind).inc()


def server_metrics(name: str) -> ServerMetrics | None:
    """The metrics of a server process, or ``None`` without prometheus_client."""
    return ServerMetrics(name) if _available() else None


def router_metrics(name: str) -> RouterMetrics | None:
    """The metrics of a router process, or ``None`` without prometheus_client."""
    return RouterMetrics(name) if _available() else None
