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

from nats.js import JetStreamContext
from nats.js.api import RePublish, StorageType
from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import SpanKind, Status, StatusCode
from prometheus_client import Counter

from murmur.events.v1 import events_pb2
from murmur_core import nats as murmur_nats
from murmur_core import subjects
from murmur_core.nats import Client, header_lines, header_value, inject_trace_context

tracer = trace.get_tracer(__name__)

PUBLISHED = Counter(
    "murmur_pipeline_user_events_total", "Per-user events published for the notifier."
)


async def ensure_user_stream(
    js: JetStreamContext,
    *,
    retention_seconds: float,
    storage: StorageType = StorageType.FILE,
    live: bool = True,
) -> None:
    """Declare MURMUR_USER. With ``live`` (always, but in a benchmark that
    weighs it), the stream republishes each stored event with its sequence on
    the notifier's live subjects."""
    await murmur_nats.ensure_stream(
        js,
        name=subjects.USER_STREAM,
        subjects=[f"{subjects.USER_PREFIX}.>"],
        max_age_seconds=retention_seconds,
        storage=storage,
        republish=RePublish(src=f"{subjects.USER_PREFIX}.>", dest=f"{subjects.USER_LIVE_PREFIX}.>")
        if live
        else None,
    )


# A domain event, whom to send it to, and the trace its copies continue.
Copies = tuple[events_pb2.Event, Sequence[str], otel_context.Context]


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
        await self.publish_each([(event, recipients, parent)])

    async def publish_each(self, events: Sequence[Copies]) -> None:
        """Every event's copies, in one burst and one ack. Each event gets a
        producer span in its own trace, which its copies carry."""
        burst: list[tuple[str, bytes, bytes]] = []
        spans: list[trace.Span] = []
        last: tuple[str, bytes, dict[str, str]] | None = None
        copies = 0
        try:
            for event, recipients, parent in events:
                kind = event.WhichOneof("payload")
                if not recipients or kind is None:
                    continue
                subject_kind = subjects.kind_of_payload_field(kind)
                span = tracer.start_span(
                    f"publish {subjects.USER_PREFIX}",
                    context=parent,
                    kind=SpanKind.PRODUCER,
                    attributes={
                        "messaging.system": "nats",
                        "messaging.operation.type": "publish",
                        "messaging.destination.name": f"{subjects.USER_PREFIX}.*.{subject_kind}",
                        "messaging.batch.message_count": len(recipients),
                    },
                )
                spans.append(span)
                copies += len(recipients)
                trace_headers = inject_trace_context(context=trace.set_span_in_context(span))
                copy = events_pb2.UserEvent(event_id=event.event_id, occurred_at=event.occurred_at)
                getattr(copy, kind).CopyFrom(getattr(event, kind))
                # The trace headers and the start of the dedup id are the
                # event's; only the user id differs from copy to copy.
                id_prefix = header_lines(trace_headers) + header_lines(
                    {"Nats-Msg-Id": event.event_id}
                )
                id_prefix = id_prefix.removesuffix(b"\r\n") + b"."
                if last is not None:
                    burst.append(_plain(*last))
                *rest, final = recipients
                for user_id in rest:
                    copy.user_id = user_id
                    burst.append(
                        (
                            subjects.user_subject(user_id, subject_kind),
                            copy.SerializeToString(),
                            id_prefix + header_value(user_id) + b"\r\n",
                        )
                    )
                copy.user_id = final
                last = (
                    subjects.user_subject(final, subject_kind),
                    copy.SerializeToString(),
                    {**trace_headers, "Nats-Msg-Id": f"{event.event_id}.{final}"},
                )
            if last is None:
                return
            await self._nc.publish_many(burst)
            # JetStream stores one connection's messages to a stream in the
            # order they came: this ack says the whole burst is stored.
            subject, payload, headers = last
            await self._js.publish(
                subject,
                payload,
                timeout=self._ack_timeout,
                stream=subjects.USER_STREAM,
                headers=headers,
            )
        except BaseException as exc:
            for span in spans:
                span.record_exception(exc)
                span.set_status(Status(StatusCode.ERROR, type(exc).__name__))
            raise
        finally:
            for span in spans:
                span.end()
        PUBLISHED.inc(copies)


def _plain(subject: str, payload: bytes, headers: dict[str, str]) -> tuple[str, bytes, bytes]:
    """An event's last copy, not the burst's: published without its own ack."""
    return subject, payload, header_lines(headers)
