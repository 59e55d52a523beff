"""Per-user events for the notifier: one copy of a domain event per recipient
on ``murmur.user.<user_id>.<kind>`` (stream MURMUR_USER), acknowledged by
JetStream before the domain event is. ``Nats-Msg-Id`` is ``<event id>.<user
id>``, so a redelivered domain event notifies nobody twice; each copy carries
the trace of the post that caused it.

A burst of copies is published as plain messages to the stream's subjects,
all but the last without asking for an ack, in one write
(``murmur_core.nats.Client.publish_many``); the last asks, and JetStream
stores one connection's messages to a stream in the order they came, so its
ack says the burst is stored. A per-message ack would cost this process
several times the CPU of the publish itself (see docs/pipeline.md), once per
follower of every post."""

from __future__ import annotations

from collections.abc import Sequence

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import SpanKind
from prometheus_client import Counter

from murmur.events.v1 import events_pb2
from murmur_core import subjects
from murmur_core.nats import Client, header_lines, header_value, inject_trace_context

tracer = trace.get_tracer(__name__)

PUBLISHED = Counter(
    "murmur_pipeline_user_events_total", "Per-user events published for the notifier."
)


class UserEvents:
    def __init__(self, nc: Client, *, ack_timeout: float = 10.0) -> None:
        self._nc = nc
        self._js = nc.jetstream()
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
            # The trace headers and the start of the dedup id are the burst's;
            # only the user id differs from copy to copy.
            id_prefix = header_lines(trace_headers) + header_lines({"Nats-Msg-Id": event.event_id})
            id_prefix = id_prefix.removesuffix(b"\r\n") + b"."
            *rest, last = recipients
            burst = []
            for user_id in rest:
                copy.user_id = user_id
                burst.append(
                    (
                        subjects.user_subject(user_id, subject_kind),
                        copy.SerializeToString(),
                        id_prefix + header_value(user_id) + b"\r\n",
                    )
                )
            await self._nc.publish_many(burst)
            copy.user_id = last
            await self._js.publish(
                subjects.user_subject(last, subject_kind),
                copy.SerializeToString(),
                timeout=self._ack_timeout,
                stream=subjects.USER_STREAM,
                headers={**trace_headers, "Nats-Msg-Id": f"{event.event_id}.{last}"},
            )
        PUBLISHED.inc(len(recipients))
