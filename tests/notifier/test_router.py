"""The router in process, with a fake NATS connection behind the one method
it uses: a delivered event continues the trace of the post that caused it
(an event without trace context starts none), and a handler failing on one
message does not end the NATS client's read loop."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from murmur.events.v1 import events_pb2
from murmur_core import subjects
from murmur_core.nats import DirectHandler, inject_trace_context
from murmur_core.service_info import ServiceInfo
from murmur_core.telemetry import setup_tracing
from murmur_notifier.events import Delivery
from murmur_notifier.router import SEQUENCE_HEADER, Router


class _Subscription:
    async def unsubscribe(self) -> None:
        return None


class _FakeNats:
    def __init__(self) -> None:
        self.callbacks: dict[str, DirectHandler] = {}

    async def subscribe_direct(self, subject: str, handler: DirectHandler) -> _Subscription:
        self.callbacks[subject] = handler
        return _Subscription()


class _Listener:
    def __init__(self) -> None:
        self.offered: list[Delivery] = []
        self.sent_away = 0

    def offer(self, delivery: Delivery) -> None:
        self.offered.append(delivery)

    def go_away(self) -> None:
        self.sent_away += 1


@pytest.fixture(scope="module")
def spans() -> Iterator[InMemorySpanExporter]:
    provider = setup_tracing(ServiceInfo(name="notifier-tests", version="test"))
    exporter = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    yield exporter
    exporter.shutdown()


Message = tuple[str, dict[str, str], bytes]


def _message(user: str, seq: int, headers: dict[str, str]) -> Message:
    event = events_pb2.UserEvent(event_id="e1", user_id=user)
    event.post_created.post_id = "p1"
    event.post_created.author_id = "alice"
    subject = subjects.user_subject(user, subjects.POST_CREATED).replace(
        "murmur.user.", f"{subjects.USER_LIVE_PREFIX}.", 1
    )
    return subject, {**headers, SEQUENCE_HEADER: str(seq)}, event.SerializeToString()


async def test_delivery_span_is_a_child_of_the_post_trace(spans: InMemorySpanExporter) -> None:
    nc = _FakeNats()
    router = Router(nc)
    listener = _Listener()
    await router.join("bob", listener)
    [deliver] = nc.callbacks.values()

    with trace.get_tracer("test").start_as_current_span("fan-out page") as parent:
        headers = inject_trace_context()
    spans.clear()
    deliver(*_message("bob", 7, headers))
    deliver(*_message("bob", 8, {}))

    assert [d.seq for d in listener.offered] == [7, 8]
    [span] = spans.get_finished_spans()
    assert span.name == "process murmur.live.user"
    assert span.context is not None and span.parent is not None
    assert span.context.trace_id == parent.get_span_context().trace_id
    assert span.parent.span_id == parent.get_span_context().span_id
    attributes = dict(span.attributes or {})
    assert attributes["murmur.event.seq"] == 7
    assert attributes["murmur.notifier.connections"] == 1
    assert "bob" not in str(attributes), "a user id in a span"
