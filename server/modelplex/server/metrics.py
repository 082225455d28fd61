"""Prometheus metrics: per model and RPC, served over HTTP on their own port.

Every server has its own registry (several servers in one process, as in tests, do
not mix their series). Calls are observed by the request interceptor; queue depth,
work in flight, batch sizes, outputs and device memory are read from the registry's
runtimes at scrape time.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.registry import Collector

log = logging.getLogger(__name__)

__all__ = ["Metrics"]

_LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)


class _RuntimeCollector(Collector):
    """Reads the loaded models' runtimes when scraped."""

    def __init__(self, models: Callable[[], Iterable[Any]]) -> None:
        self._models = models

    def collect(self) -> Iterable[Any]:
        active = GaugeMetricFamily("modelplex_model_active", "Requests or streams queued or running", labels=["model"])
        queued = GaugeMetricFamily("modelplex_model_queued", "Requests waiting for an instance", labels=["model"])
        memory = GaugeMetricFamily(
            "modelplex_instance_memory_bytes", "Parameters and buffers on the device", labels=["model", "device"]
        )
        outputs = CounterMetricFamily(
            "modelplex_model_outputs", "Output units produced (tokens, images, ...)", labels=["model", "unit"]
        )
        batches = HistogramMetricFamily("modelplex_batch_size", "Items per forward pass", labels=["model"])
        waits = HistogramMetricFamily(
            "modelplex_queue_wait_seconds", "Time a request waited in the queue", labels=["model"]
        )
        for model in self._models():
            runtime = model.runtime
            for inst in model.instances:
                memory.add_metric([model.name, inst.device], inst.memory_bytes())
            if runtime is None:
                continue
            active.add_metric([model.name], runtime.active())
            queued.add_metric([model.name], getattr(runtime, "queued", 0))
            stats = runtime.stats
            outputs.add_metric([model.name, stats.output_unit], stats.outputs)
            batches.add_metric([model.name], *stats.batch_sizes.buckets())
            waits.add_metric([model.name], *stats.queue_waits.buckets())
        yield from (active, queued, memory, outputs, batches, waits)


class Metrics:
    """The series of one server."""

    def __init__(self, models: Callable[[], Iterable[Any]]) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "modelplex_requests", "Calls by method, model and status code", ["method", "model", "code"], registry=r
        )
        self.latency = Histogram(
            "modelplex_request_seconds",
            "Call duration, to the last message",
            ["method", "model"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.first_message = Histogram(
            "modelplex_stream_first_message_seconds",
            "Time to a stream's first message",
            ["method", "model"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.between_messages = Histogram(
            "modelplex_stream_inter_message_seconds",
            "Time between a stream's messages",
            ["method", "model"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.cancellations = Counter(
            "modelplex_cancellations", "Calls the client cancelled or abandoned", ["method", "model"], registry=r
        )
        r.register(_RuntimeCollector(models))
        self._http: Any = None
        self._thread: threading.Thread | None = None
        self.port: int | None = None

    def serve(self, host: str, port: int) -> int:
        """Serve /metrics over HTTP; returns the port."""
        self._http, self._thread = start_http_server(port, addr=host, registry=self.registry)
        self.port = int(self._http.server_port)
        log.info("metrics on http://%s:%d/metrics", host, self.port)
        return self.port

    def close(self) -> None:
        if self._http is not None:
            self._http.shutdown()
            self._http.server_close()
            self._http = None
