"""Per-user events for the notifier: one copy of a domain event per recipient
on ``murmur.user.<user_id>.<kind>`` (stream MURMUR_USER), published in one
pipelined burst and acknowledged by JetStream before the domain event is.
``Nats-Msg-Id`` is ``<event id>.<user id>``, so a redelivered domain event
notifies nobody twice; each copy carries the trace of the post that caused it."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from nats.js import JetStreamContext
from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import SpanKind
from prometheus_client import Counter

from murmur.events.v1 import events_pb2
from murmur_core import subjects
from murmur_core.nats import inject_trace_context

tracer = trace.get_tracer(__name__)

PUBLISHED = Counter(
    "murmur_pipeline_user_events_total", "Per-user events published for the notifier."
)


class UserEvents:
    def __init__(self, js: JetStreamContext, *, ack_timeout: float = 10.0) -> None:
        self._js = js
        self._ack_timeout = ack_timeout

    async def publish(
        self,
        event: events_pb2.Event,
        recipients: Sequence[str],
        parent: otel_context.Context,
    ) -> None:
        kind = event.WhichOneof("payload")
        if not recipients or kind is None:
            return
        subject_kind = subjects.kind_of_payload_field(kind)
        copy = events_pb2.UserEvent(event_id=event.event_id, occurred_at=event.occurred_at)
        getattr(copy, kind).CopyFrom(getattr(event, kind))
        with tracer.start_as_current_span(
            f"publish {subjects.USER_PREFIX}",
            context=parent,
            kind=SpanKind.PRODUCER,
            attributes={
                "messaging.system": "nats",
                "messaging.operation.type": "publish",
                "messaging.destination.name": f"{subjects.USER_PREFIX}.*.{subject_kind}",
                "messaging.batch.message_count": len(recipients),
            },
        ):
            trace_headers = inject_trace_context()
            acks = []
            for user_id in recipients:
                copy.user_id = user_id
                headers = {**trace_headers, "Nats-Msg-Id": f"{event.event_id}.{user_id}"}
                acks.append(
                    await self._js.publish_async(
                        subjects.user_subject(user_id, subject_kind),
                        copy.SerializeToString(),
                        headers=headers,
                    )
                )
            async with asyncio.timeout(self._ack_timeout):
                await asyncio.gather(*acks)
        PUBLISHED.inc(len(recipients))
