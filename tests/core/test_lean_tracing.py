"""The lean tracer records what the SDK's would: the same spans, field for
field, through the same processors and sampler, with the SDK's rules for
attributes, statuses, exceptions and limits; and both encode to the same
OTLP request."""

from __future__ import annotations

import logging
import random

import pytest
from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.id_generator import IdGenerator
from opentelemetry.sdk.trace.sampling import (
    ALWAYS_OFF,
    ALWAYS_ON,
    DEFAULT_OFF,
    DEFAULT_ON,
    AlwaysRecordSampler,
    ParentBased,
    ParentBasedTraceIdRatio,
    Sampler,
    TraceIdRatioBased,
)
from opentelemetry.trace import Link, SpanContext, SpanKind, Status, StatusCode, TraceFlags
from opentelemetry.trace.span import TraceState

from murmur_core.lean_tracing import MAX_ATTRIBUTES, LeanSpan, LeanTracer, LeanTracerProvider
from murmur_core.otlp_encoding import encode_request

RESOURCE = Resource.create({"service.name": "gateway", "service.version": "1.2.3"})
REMOTE = SpanContext(
    trace_id=0x0AF7651916CD43DD8448EB211C80319C,
    span_id=0xB7AD6B7169203331,
    is_remote=True,
    trace_flags=TraceFlags(TraceFlags.SAMPLED),
    trace_state=TraceState([("vendor", "value")]),
)


class CountingIds(IdGenerator):
    """The same ids in the same order for both providers."""

    def __init__(self) -> None:
        self._next = 0x1000

    def generate_span_id(self) -> int:
        self._next += 1
        return self._next

    def generate_trace_id(self) -> int:
        self._next += 1
        return self._next << 64


def record(provider: TracerProvider) -> list[ReadableSpan]:
    """One scripted piece of work: server span with a remote parent, links,
    events, nested spans with statuses, an escaped exception."""
    memory = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(memory))
    http = provider.get_tracer("murmur.http", "0.1.0", schema_url="https://example/1.26.0")
    rpc = provider.get_tracer("murmur.grpc")
    with http.start_as_current_span(
        "GET",
        context=trace.set_span_in_context(trace.NonRecordingSpan(REMOTE)),
        kind=SpanKind.SERVER,
        attributes={"http.request.method": "GET", "names": ["a", "b"], "ratio": 0.25},
        links=[Link(REMOTE, {"messaging.message.id": "m-1"})],
        start_time=1_000,
        end_on_exit=False,
    ) as server:
        server.update_name("GET /v1/timelines/home")
        server.set_attribute("http.route", "/v1/timelines/home")
        server.set_attributes({"http.response.status_code": 200, "flag": False})
        server.add_event("retry", {"attempt": 2}, timestamp=1_500)
        with rpc.start_as_current_span(
            "CacheService/GetFeedPage", kind=SpanKind.CLIENT, start_time=2_000, end_on_exit=False
        ) as client:
            client.set_status(Status(StatusCode.ERROR, "deadline exceeded"))
            client.end(end_time=3_000)
        with (
            pytest.raises(ValueError, match="bad page"),
            rpc.start_as_current_span("decode", start_time=4_000),
        ):
            raise ValueError("bad page")
        server.end(end_time=9_000)
    return list(memory.get_finished_spans())


def providers() -> tuple[TracerProvider, LeanTracerProvider]:
    return (
        TracerProvider(resource=RESOURCE, id_generator=CountingIds()),
        LeanTracerProvider(resource=RESOURCE, id_generator=CountingIds()),
    )


def without_times(request: ExportTraceServiceRequest) -> ExportTraceServiceRequest:
    """Without what the script does not fix: the failed span's end, its
    exception event's time, and the tracer's own frame in the stacktrace."""
    for resource_spans in request.resource_spans:
        for scope_spans in resource_spans.scope_spans:
            for span in scope_spans.spans:
                if span.name == "decode":
                    span.end_time_unix_nano = 0
                    for event in span.events:
                        event.time_unix_nano = 0
                        for attribute in event.attributes:
                            if attribute.key == "exception.stacktrace":
                                assert "ValueError: bad page" in attribute.value.string_value
                                attribute.value.string_value = "ValueError: bad page"
    return request


def test_lean_spans_are_the_sdks_spans() -> None:
    sdk_provider, lean_provider = providers()
    sdk_spans = record(sdk_provider)
    lean_spans = record(lean_provider)
    assert all(isinstance(span, LeanSpan) for span in lean_spans)
    assert [s.name for s in lean_spans] == [
        "CacheService/GetFeedPage",
        "decode",
        "GET /v1/timelines/home",
    ]
    # The SDK's own OTLP encoder reads a lean span as it reads its own.
    assert without_times(encode_spans(lean_spans)) == without_times(encode_spans(sdk_spans))
    # And the direct encoder writes the same request for lean spans.
    assert ExportTraceServiceRequest.FromString(encode_request(lean_spans)) == encode_spans(
        lean_spans
    )


def test_parent_links_status_and_exception() -> None:
    _, provider = providers()
    client, failed, server = record(provider)
    assert server.parent == REMOTE
    assert server.context.trace_id == REMOTE.trace_id
    assert client.parent == server.context
    assert failed.parent == server.context
    assert client.status.status_code is StatusCode.ERROR
    assert failed.status.status_code is StatusCode.ERROR
    assert failed.status.description == "ValueError: bad page"
    (exception,) = failed.events
    assert exception.name == "exception"
    assert exception.attributes is not None
    assert exception.attributes["exception.type"] == "ValueError"
    assert exception.attributes["exception.message"] == "bad page"
    assert "bad page" in str(exception.attributes["exception.stacktrace"])
    assert server.attributes == {
        "http.request.method": "GET",
        "names": ("a", "b"),
        "ratio": 0.25,
        "http.route": "/v1/timelines/home",
        "http.response.status_code": 200,
        "flag": False,
    }
    (link,) = server.links
    assert link.context == REMOTE


def test_attribute_rules(caplog: pytest.LogCaptureFixture) -> None:
    _, provider = providers()
    span = provider.get_tracer("t").start_span("s")
    assert isinstance(span, LeanSpan)
    values = ["x", "y"]
    span.set_attribute("list", values)
    values.append("z")  # a caller's later change does not leak in
    with caplog.at_level(logging.WARNING, logger="murmur_core.lean_tracing"):
        span.set_attribute("mixed", [1, "a"])
        span.set_attribute("mapping", {"a": 1})
    assert span.attributes == {"list": ("x", "y")}
    assert "dropped" in caplog.text
    for index in range(MAX_ATTRIBUTES + 5):
        span.set_attribute(f"k{index}", index)
    assert len(span.attributes) == MAX_ATTRIBUTES
    assert span.dropped_attributes == 6
    span.set_attribute("list", "replaced")  # an existing key is still updated
    assert span.attributes["list"] == "replaced"
    span.set_status(StatusCode.OK)
    span.set_status(StatusCode.ERROR, "too late")  # OK is final
    assert span.status.status_code is StatusCode.OK
    span.end()
    assert not span.is_recording()
    span.set_attribute("after", 1)
    span.update_name("renamed")
    span.add_event("after")
    assert "after" not in span.attributes
    assert span.name == "s"
    assert span.events == []
    with caplog.at_level(logging.WARNING, logger="murmur_core.lean_tracing"):
        span.end()
    assert "ended twice" in caplog.text


def test_the_configured_sampler_decides() -> None:
    memory = InMemorySpanExporter()
    provider = LeanTracerProvider(resource=RESOURCE, sampler=ParentBased(TraceIdRatioBased(0.0)))
    provider.add_span_processor(SimpleSpanProcessor(memory))
    tracer = provider.get_tracer("t")
    dropped = tracer.start_span("root")
    assert not dropped.is_recording()
    assert not dropped.get_span_context().trace_flags.sampled
    assert dropped.get_span_context().is_valid  # still propagates its ids
    dropped.end()
    # A sampled remote parent wins over the ratio, as ParentBased says.
    with tracer.start_as_current_span(
        "child", context=trace.set_span_in_context(trace.NonRecordingSpan(REMOTE))
    ) as child:
        assert child.is_recording()
    assert [s.name for s in memory.get_finished_spans()] == ["child"]


def test_a_disabled_sdk_hands_out_no_op_tracers(monkeypatch: pytest.MonkeyPatch) -> None:
    # The SDK reads OTEL_SDK_DISABLED when the provider is built.
    monkeypatch.setenv("OTEL_SDK_DISABLED", "true")
    provider = LeanTracerProvider(resource=RESOURCE)
    span = provider.get_tracer("t").start_span("s")
    assert not span.is_recording()
    assert not span.get_span_context().is_valid


COMPILED_SAMPLERS: list[Sampler] = [
    ALWAYS_ON,
    ALWAYS_OFF,
    DEFAULT_ON,
    DEFAULT_OFF,
    TraceIdRatioBased(0.5),
    ParentBasedTraceIdRatio(0.3),
    ParentBased(
        TraceIdRatioBased(0.6),
        remote_parent_sampled=TraceIdRatioBased(0.5),
        remote_parent_not_sampled=ALWAYS_ON,
        local_parent_sampled=ALWAYS_OFF,
        local_parent_not_sampled=TraceIdRatioBased(0.2),
    ),
]


def _parents() -> list[SpanContext | None]:
    def parent(*, remote: bool, flags: int) -> SpanContext:
        return SpanContext(
            trace_id=random.getrandbits(128) | 1,
            span_id=random.getrandbits(64) | 1,
            is_remote=remote,
            trace_flags=TraceFlags(flags),
            trace_state=TraceState([("k", "v")]),
        )

    sampled_random = TraceFlags.SAMPLED | TraceFlags.RANDOM_TRACE_ID
    return [
        None,
        parent(remote=True, flags=TraceFlags.SAMPLED),
        parent(remote=True, flags=TraceFlags.DEFAULT),
        parent(remote=False, flags=sampled_random),
        parent(remote=False, flags=TraceFlags.RANDOM_TRACE_ID),
        trace.INVALID_SPAN_CONTEXT,
    ]


@pytest.mark.parametrize("sampler", COMPILED_SAMPLERS, ids=lambda s: s.get_description())
def test_a_compiled_sampler_decides_every_span_as_the_sdk(sampler: Sampler) -> None:
    """The inline decision and ids match the SDK's span for span: same
    seed, same trace and span ids, flags, trace state and recording."""
    sdk = TracerProvider(resource=RESOURCE, sampler=sampler).get_tracer("t")
    lean = LeanTracerProvider(resource=RESOURCE, sampler=sampler).get_tracer("t")
    assert isinstance(lean, LeanTracer) and lean._rule is not None
    attributes = {"http.request.method": "GET"}
    decisions = set()
    for seed in range(300):
        random.seed(seed)
        for parent in _parents():
            context = (
                None
                if parent is None
                else trace.set_span_in_context(trace.NonRecordingSpan(parent))
            )
            spans = []
            for tracer in (sdk, lean):
                random.seed(seed * 7919)
                spans.append(tracer.start_span("s", context, SpanKind.SERVER, attributes))
            expected, got = spans
            assert tuple(got.get_span_context()) == tuple(expected.get_span_context())
            assert got.is_recording() == expected.is_recording()
            if got.is_recording():
                assert dict(got.attributes) == dict(expected.attributes)  # type: ignore[attr-defined]
                assert got.parent == expected.parent  # type: ignore[attr-defined]
            decisions.add(got.is_recording())
            for span in spans:
                span.end()
    if sampler not in (ALWAYS_ON, ALWAYS_OFF):
        assert decisions == {True, False}


@pytest.mark.parametrize(
    "name",
    [
        "always_on",
        "always_off",
        "traceidratio",
        "parentbased_always_on",
        "parentbased_always_off",
        "parentbased_traceidratio",
    ],
)
def test_every_sampler_otel_traces_sampler_names_is_compiled(
    name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OTEL_TRACES_SAMPLER", name)
    monkeypatch.setenv("OTEL_TRACES_SAMPLER_ARG", "0.25")
    tracer = LeanTracerProvider(resource=RESOURCE).get_tracer("t")
    assert isinstance(tracer, LeanTracer) and tracer._rule is not None


def test_other_samplers_are_asked_as_the_sdk_asks_them() -> None:
    # AlwaysRecordSampler records without sampling: not a plain trace-id rule.
    sampler = AlwaysRecordSampler(TraceIdRatioBased(0.0))
    tracer = LeanTracerProvider(resource=RESOURCE, sampler=sampler).get_tracer("t")
    assert isinstance(tracer, LeanTracer) and tracer._rule is None
    span = tracer.start_span("s")
    assert span.is_recording()
    assert not span.get_span_context().trace_flags.sampled
