"""An OTLP/gRPC trace receiver for tests and benchmarks: the real protocol
(``opentelemetry.proto.collector.trace.v1.TraceService``), decoded with the
``opentelemetry-proto`` messages, keeping every span it is sent (or none,
for a benchmark that only needs somewhere to export to).

Point a service at it with ``OTEL_EXPORTER_OTLP_ENDPOINT=http://<address>``
and ``OTEL_EXPORTER_OTLP_INSECURE=true``.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import grpc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2 as otlp
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2_grpc as otlp_grpc
from opentelemetry.proto.trace.v1 import trace_pb2

from murmur_devstack.ports import LOOPBACK

SPAN_KINDS = {
    trace_pb2.Span.SPAN_KIND_INTERNAL: "INTERNAL",
    trace_pb2.Span.SPAN_KIND_SERVER: "SERVER",
    trace_pb2.Span.SPAN_KIND_CLIENT: "CLIENT",
    trace_pb2.Span.SPAN_KIND_PRODUCER: "PRODUCER",
    trace_pb2.Span.SPAN_KIND_CONSUMER: "CONSUMER",
}


def _value(any_value: Any) -> Any:
    which = any_value.WhichOneof("value")
    return getattr(any_value, which) if which is not None else None


@dataclass(frozen=True)
class ReceivedSpan:
    """One span as it arrived, with its service's name."""

    service: str
    name: str
    kind: str
    trace_id: str
    span_id: str
    parent_span_id: str
    links: tuple[tuple[str, str], ...]  # (trace_id, span_id)
    attributes: dict[str, Any] = field(hash=False)
    error: bool = False

    @classmethod
    def of(cls, service: str, span: trace_pb2.Span) -> ReceivedSpan:
        return cls(
            service=service,
            name=span.name,
            kind=SPAN_KINDS.get(span.kind, "UNSPECIFIED"),
            trace_id=span.trace_id.hex(),
            span_id=span.span_id.hex(),
            parent_span_id=span.parent_span_id.hex(),
            links=tuple((link.trace_id.hex(), link.span_id.hex()) for link in span.links),
            attributes={a.key: _value(a.value) for a in span.attributes},
            error=span.status.code == trace_pb2.Status.STATUS_CODE_ERROR,
        )


class _Receiver(otlp_grpc.TraceServiceServicer):
    def __init__(self, keep: bool) -> None:
        self.spans: list[ReceivedSpan] = []
        self.exports = 0
        self.span_count = 0
        self._keep = keep
        self.arrived = asyncio.Condition()

    async def Export(
        self, request: otlp.ExportTraceServiceRequest, context: Any
    ) -> otlp.ExportTraceServiceResponse:
        self.exports += 1
        received = []
        for resource_spans in request.resource_spans:
            service = next(
                (
                    _value(a.value)
                    for a in resource_spans.resource.attributes
                    if a.key == "service.name"
                ),
                "unknown",
            )
            for scope_spans in resource_spans.scope_spans:
                self.span_count += len(scope_spans.spans)
                if self._keep:
                    received += [ReceivedSpan.of(service, s) for s in scope_spans.spans]
        if received:
            async with self.arrived:
                self.spans += received
                self.arrived.notify_all()
        return otlp.ExportTraceServiceResponse()


@dataclass
class OtlpReceiver:
    address: str
    _receiver: _Receiver

    @property
    def endpoint(self) -> str:
        return f"http://{self.address}"

    @property
    def spans(self) -> list[ReceivedSpan]:
        return self._receiver.spans

    @property
    def span_count(self) -> int:
        return self._receiver.span_count

    def env(self) -> dict[str, str]:
        """What a service needs to export to this receiver, every span kept."""
        return {
            "OTEL_EXPORTER_OTLP_ENDPOINT": self.endpoint,
            "OTEL_EXPORTER_OTLP_INSECURE": "true",
            "OTEL_TRACES_SAMPLER": "parentbased_traceidratio",
            "OTEL_TRACES_SAMPLER_ARG": "1.0",
            # Short batches, so a test does not wait for the 5 s default.
            "OTEL_BSP_SCHEDULE_DELAY": "200",
        }

    async def wait_for(
        self, done: Callable[[list[ReceivedSpan]], bool], within: float = 15.0
    ) -> list[ReceivedSpan]:
        """Spans so far, once ``done(spans)`` holds; TimeoutError otherwise."""
        condition = self._receiver.arrived
        async with asyncio.timeout(within), condition:
            await condition.wait_for(lambda: done(self._receiver.spans))
        return list(self._receiver.spans)


@asynccontextmanager
async def otlp_receiver(*, keep: bool = True) -> AsyncIterator[OtlpReceiver]:
    receiver = _Receiver(keep)
    server = grpc.aio.server(options=[("grpc.max_receive_message_length", 64 * 1024 * 1024)])
    otlp_grpc.add_TraceServiceServicer_to_server(receiver, server)  # type: ignore[no-untyped-call]
    port = server.add_insecure_port(f"{LOOPBACK}:0")
    await server.start()
    try:
        yield OtlpReceiver(f"{LOOPBACK}:{port}", receiver)
    finally:
        await server.stop(0)
