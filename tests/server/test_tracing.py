"""OpenTelemetry spans per RPC, continuing the caller's W3C trace context."""

from __future__ import annotations

import grpc
import pytest

from modelplex.testing import running_server
from modelplex_client.pb import image_classification_pb2, image_classification_pb2_grpc
from probe_plugin import PLUGINS, probe_model

trace = pytest.importorskip("opentelemetry.trace")
sdk_trace = pytest.importorskip("opentelemetry.sdk.trace")
from opentelemetry.sdk.trace.export import SimpleSpanProcessor  # noqa: E402
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter  # noqa: E402

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT_ID = "00f067aa0ba902b7"


@pytest.fixture(scope="module")
def spans():
    exporter = InMemorySpanExporter()
    provider = sdk_trace.TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    trace.set_tracer_provider(provider)  # the "global" exporter: the embedding program's provider
    return exporter


def test_a_call_gets_a_span_in_the_callers_trace_with_model_and_batch(spans):
    config = {"models": [probe_model()], "server": {"tracing": {"enabled": True, "exporter": "global"}}}
    with running_server(config, extra_plugins=PLUGINS) as server, grpc.insecure_channel(server.address) as channel:
        request = image_classification_pb2.ClassifyRequest(model="probe", request_id="r-42")
        request.images.add().encoded = b"\x01"
        request.images.add().encoded = b"\x02"
        stub = image_classification_pb2_grpc.ImageClassificationStub(channel)
        stub.Classify(request, timeout=20, metadata=(("traceparent", f"00-{TRACE_ID}-{PARENT_ID}-01"),))
        with pytest.raises(grpc.RpcError):
            stub.Classify(image_classification_pb2.ClassifyRequest(model="probe"), timeout=20)
    finished = [s for s in spans.get_finished_spans() if s.name == "modelplex.v1.ImageClassification/Classify"]
    ok, failed = finished
    assert format(ok.context.trace_id, "032x") == TRACE_ID and format(ok.parent.span_id, "016x") == PARENT_ID
    assert ok.attributes["modelplex.model"] == "probe" and ok.attributes["modelplex.request_id"] == "r-42"
    assert ok.attributes["modelplex.batch_size"] == 2 and ok.attributes["modelplex.queue_wait_ms"] >= 0
    assert ok.attributes["rpc.grpc.status_code"] == 0
    assert (
        failed.parent is None and failed.attributes["rpc.grpc.status_code"] == grpc.StatusCode.INVALID_ARGUMENT.value[0]
    )
