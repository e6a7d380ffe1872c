"""Prometheus metrics of one server (its own registry, so several apps can live in one process)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest

_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
_BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)


class _Batched(Protocol):
    texts: list[str]


class ServerMetrics:
    """Requests, latency, batch sizes, queue depth and texts embedded."""

    content_type = CONTENT_TYPE_LATEST

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter("inbedder_requests_total", "HTTP requests by route and status",
                                ["method", "route", "status"], registry=self.registry)
        self.latency = Histogram("inbedder_request_seconds", "HTTP request latency", ["method", "route"],
                                 buckets=_LATENCY_BUCKETS, registry=self.registry)
        self.batch_texts = Histogram("inbedder_batch_texts", "texts per merged model batch", ["model"],
                                     buckets=_BATCH_BUCKETS, registry=self.registry)
        self.batch_requests = Histogram("inbedder_batch_requests", "requests merged into one model batch",
                                        ["model"], buckets=_BATCH_BUCKETS, registry=self.registry)
        self.batch_seconds = Histogram("inbedder_batch_seconds", "model time per merged batch", ["model"],
                                       buckets=_LATENCY_BUCKETS, registry=self.registry)
        self.queue_depth = Gauge("inbedder_queue_depth", "requests waiting for the model worker", ["model"],
                                 registry=self.registry)
        self.texts_embedded = Counter("inbedder_texts_embedded_total", "texts embedded by the model", ["model"],
                                      registry=self.registry)

    def observe_batch(self, model: str, batch: Sequence[_Batched], seconds: float) -> None:
        texts = sum(len(work.texts) for work in batch)
        self.batch_texts.labels(model).observe(texts)
        self.batch_requests.labels(model).observe(len(batch))
        self.batch_seconds.labels(model).observe(seconds)
        self.texts_embedded.labels(model).inc(texts)

    def observe_request(self, method: str, route: str, status: int, seconds: float) -> None:
        self.requests.labels(method, route, str(status)).inc()
        self.latency.labels(method, route).observe(seconds)

    def render(self) -> bytes:
        """The Prometheus text exposition."""
        return generate_latest(self.registry)
