"""The direct OTLP encoder writes what the SDK's encoder would send: the
same ExportTraceServiceRequest, field for field, for spans with every kind
of attribute, events, links, statuses, remote parents and trace state,
across resources and instrumentation scopes."""

from __future__ import annotations

from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import Link, SpanContext, SpanKind, Status, StatusCode, TraceFlags
from opentelemetry.trace.span import TraceState

from murmur_core.otlp_encoding import encode_request


def _spans() -> list[ReadableSpan]:
    spans: list[ReadableSpan] = []
    for service in ("gateway", "cache"):
        memory = InMemorySpanExporter()
        provider = TracerProvider(
            resource=Resource.create({"service.name": service, "service.version": "1.2.3"})
        )
        provider.add_span_processor(SimpleSpanProcessor(memory))
        remote = SpanContext(
            trace_id=0x0AF7651916CD43DD8448EB211C80319C,
            span_id=0xB7AD6B7169203331,
            is_remote=True,
            trace_flags=TraceFlags(TraceFlags.SAMPLED),
            trace_state=TraceState([("vendor", "value"), ("other", "x")]),
        )
        local_link = SpanContext(0x1, 0x2, is_remote=False)
        http = provider.get_tracer(
            "murmur.http", "0.1.0", schema_url="https://opentelemetry.io/schemas/1.26.0"
        )
        grpc = provider.get_tracer("murmur.grpc")
        with http.start_as_current_span(
            "GET /v1/timelines/home",
            context=trace.set_span_in_context(trace.NonRecordingSpan(remote)),
            kind=SpanKind.SERVER,
            attributes={
                "http.route": "/v1/timelines/home",
                "http.response.status_code": 200,
                "negative": -42,
                "big": 2**62,
                "ratio": 0.25,
                "flag": False,
                "names": ["a", "b"],
                "numbers": [1, 2, 3],
                "empty": "",
                "unicode": "päge ✓",
            },
            links=[Link(remote, {"messaging.message.id": "m-1"}), Link(local_link)],
        ) as server:
            server.add_event("retry", {"attempt": 2})
            server.add_event("plain")
            with grpc.start_as_current_span("CacheService/GetFeedPage", kind=SpanKind.CLIENT) as c:
                c.set_status(Status(StatusCode.ERROR, "deadline exceeded"))
            with grpc.start_as_current_span("publish murmur.user", kind=SpanKind.PRODUCER) as p:
                p.set_status(Status(StatusCode.OK))
        spans += memory.get_finished_spans()
    return spans


def test_direct_encoding_is_what_the_sdk_sends() -> None:
    spans = _spans()
    assert len(spans) == 6
    ours = ExportTraceServiceRequest.FromString(encode_request(spans))
    theirs = encode_spans(spans)
    assert ours == theirs
    # The same bytes count too, give or take field order: a proto3 message
    # with no default values written.
    assert len(encode_request(spans)) == theirs.ByteSize()


def test_an_empty_batch_is_an_empty_request() -> None:
    assert encode_request([]) == b""
    assert ExportTraceServiceRequest.FromString(b"") == encode_spans([])


async def test_the_exporter_delivers_to_a_real_otlp_receiver() -> None:
    """Over gRPC to the devstack's OTLP receiver, which decodes with the
    opentelemetry-proto messages: every span arrives, names and kinds intact."""
    import asyncio

    from murmur_core.otlp_encoding import DirectOtlpSpanExporter
    from murmur_devstack.otlp import otlp_receiver

    spans = _spans()
    async with otlp_receiver() as receiver:
        endpoint = receiver.env()["OTEL_EXPORTER_OTLP_ENDPOINT"]
        exporter = DirectOtlpSpanExporter(endpoint=endpoint, insecure=True)
        try:
            result = await asyncio.to_thread(exporter.export, spans)
        finally:
            exporter.shutdown()
        assert result.name == "SUCCESS"
        async with asyncio.timeout(5):
            while len(receiver.spans) < len(spans):
                await asyncio.sleep(0.05)
    got = sorted((s.service, s.name, s.kind) for s in receiver.spans)
    want = sorted((str(s.resource.attributes["service.name"]), s.name, s.kind.name) for s in spans)
    assert got == want
