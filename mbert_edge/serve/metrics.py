"""Prometheus metrics (prometheus-client): requests by route and status, the queue, batches, timings."""

from __future__ import annotations

import os

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)
from starlette.types import ASGIApp, Message, Receive, Scope, Send

SECONDS = (0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0)


class ServerMetrics:
    """The server's metrics, in a registry of their own. With several workers (`PROMETHEUS_MULTIPROC_DIR`
    set) every worker writes its values there and `/metrics` adds up all workers'."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "mbert_edge_requests", "HTTP requests by route and status.", ["route", "status"], registry=r
        )
        self.queue_depth = Gauge(
            "mbert_edge_queue_depth", "Texts waiting for a batch.", registry=r, multiprocess_mode="livesum"
        )
        self.batch_size = Histogram(
            "mbert_edge_batch_size",
            "Texts per model batch.",
            registry=r,
            buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512),
        )
        self.batch_tokens = Histogram(
            "mbert_edge_batch_tokens",
            "Tokens per model batch (each window's bucketed length).",
            registry=r,
            buckets=tuple(2**i for i in range(4, 16)),
        )
        self.inference_seconds = Histogram(
            "mbert_edge_inference_seconds", "Time of one batch's model call.", registry=r, buckets=SECONDS
        )
        self.queue_seconds = Histogram(
            "mbert_edge_queue_seconds",
            "Time from a request's arrival in the queue to the start of a batch with its text.",
            registry=r,
            buckets=SECONDS,
        )
        self.cancelled_texts = Counter(
            "mbert_edge_cancelled_texts", "Texts dropped unrun because their client disconnected.", registry=r
        )

    def exposition(self) -> tuple[bytes, str]:
        """The Prometheus text format and its content type."""
        if "PROMETHEUS_MULTIPROC_DIR" in os.environ:
            registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]  # unannotated upstream
            return generate_latest(registry), CONTENT_TYPE_LATEST
        return generate_latest(self.registry), CONTENT_TYPE_LATEST


class RequestCounter:
    """ASGI middleware counting HTTP requests by route (the path of a known route, else "other") and status."""

    def __init__(self, app: ASGIApp, metrics: ServerMetrics, routes: set[str]) -> None:
        self.app, self.metrics, self.routes = app, metrics, routes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        status = 500  # an exception before any response

        async def send_recording(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_recording)
        finally:
            route = scope["path"] if scope["path"] in self.routes else "other"
            self.metrics.requests.labels(route, str(status)).inc()
