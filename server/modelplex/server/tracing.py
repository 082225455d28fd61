"""OpenTelemetry spans per RPC, off unless ``[server.tracing]`` enables them.

The span of a call continues the caller's trace when its metadata carries W3C trace
context (``traceparent``, ``tracestate``). Runtimes annotate the current span with what
only they know (batch size, queue wait) through :func:`annotate`, which costs nothing
when tracing is off. opentelemetry is imported only when tracing is on: install
``modelplex[tracing]``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from typing import Any

from modelplex.errors import ConfigError
from modelplex.server.config import TracingSettings

__all__ = ["Tracer", "annotate"]

_ENABLED = False


def annotate(**attributes: Any) -> None:
    """Set attributes on the current call's span (a no-op when tracing is off)."""
    if not _ENABLED:
        return
    from opentelemetry import trace

    span = trace.get_current_span()
    for key, value in attributes.items():
        span.set_attribute(f"modelplex.{key}", value)


class Tracer:
    """Starts one span per call, as a child of the caller's trace context."""

    def __init__(self, settings: TracingSettings) -> None:
        global _ENABLED
        try:
            from opentelemetry import trace
            from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
        except ImportError:
            raise ConfigError(
                "server.tracing is enabled but opentelemetry is not installed: pip install 'modelplex[tracing]'"
            ) from None
        if settings.exporter != "global":
            trace.set_tracer_provider(_provider(settings))
        self._trace = trace
        self._tracer = trace.get_tracer("modelplex")
        self._propagator = TraceContextTextMapPropagator()
        _ENABLED = True

    @contextlib.contextmanager
    def span(self, method: str, metadata: Sequence[tuple[str, Any]] | None) -> Iterator[Any]:
        carrier = {k: (v.decode() if isinstance(v, bytes) else v) for k, v in metadata or ()}
        parent = self._propagator.extract(carrier)
        service, _, name = method.strip("/").partition("/")
        attributes = {"rpc.system": "grpc", "rpc.service": service, "rpc.method": name}
        with self._tracer.start_as_current_span(
            method.strip("/"), context=parent, kind=self._trace.SpanKind.SERVER, attributes=attributes
        ) as span:
            yield span

    def start(self, method: str, metadata: Sequence[tuple[str, Any]] | None) -> Any:
        """A span for a streaming call, not made current; the caller ends it."""
        carrier = {k: (v.decode() if isinstance(v, bytes) else v) for k, v in metadata or ()}
        service, _, name = method.strip("/").partition("/")
        return self._tracer.start_span(
            method.strip("/"),
            context=self._propagator.extract(carrier),
            kind=self._trace.SpanKind.SERVER,
            attributes={"rpc.system": "grpc", "rpc.service": service, "rpc.method": name},
        )


def _provider(settings: TracingSettings) -> Any:
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter

    provider = TracerProvider(resource=Resource.create({"service.name": settings.service_name}))
    if settings.exporter == "console":
        exporter: Any = ConsoleSpanExporter()
    else:
        try:
            from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
        except ImportError:
            raise ConfigError("server.tracing.exporter = 'otlp' needs opentelemetry-exporter-otlp-proto-grpc") from None
        exporter = OTLPSpanExporter(endpoint=settings.endpoint) if settings.endpoint else OTLPSpanExporter()
    provider.add_span_processor(BatchSpanProcessor(exporter))
    return provider
