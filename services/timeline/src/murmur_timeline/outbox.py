"""The outbox relay: publishes committed events to JetStream in outbox order,
then marks them sent.

At-least-once by construction: a crash between publish and mark re-publishes,
and JetStream drops the copy because ``Nats-Msg-Id`` is the event id. One relay
is active per database (a leader lock); others stand by.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from nats.js import JetStreamContext
from nats.js.api import PubAck
from opentelemetry import trace
from opentelemetry.trace import SpanKind
from prometheus_client import Counter, Gauge, Histogram

from murmur_core.metrics import LATENCY_BUCKETS
from murmur_core.nats import extract_trace_context, inject_trace_context
from murmur_core.subjects import EVENTS_STREAM
from murmur_timeline.storage import OutboxEvent, TimelineStore

log = logging.getLogger(__name__)
tracer = trace.get_tracer(__name__)

LEADER_LOCK = "murmur-timeline-outbox-relay"

PUBLISHED = Counter(
    "murmur_outbox_published_total", "Outbox events published to JetStream and marked sent."
)
PUBLISH_FAILURES = Counter(
    "murmur_outbox_publish_failures_total", "Outbox publish rounds that failed and will retry."
)
# USE for the outbox, a queue: how long the oldest waiting event has waited.
# Age rather than row count: it needs no extra query (the relay reads the
# oldest rows anyway) and is what a reader feels, the delay before a post
# reaches feeds. Only the active relay sets it; a standby reports 0.
OLDEST_UNSENT_AGE = Gauge(
    "murmur_outbox_oldest_unsent_age_seconds",
    "Age of the oldest outbox event not yet published, at the last relay round (0: caught up).",
)
BATCH_SECONDS = Histogram(
    "murmur_outbox_batch_duration_seconds",
    "Time to publish and mark one outbox batch.",
    buckets=LATENCY_BUCKETS,
)


class OutboxRelay:
    def __init__(
        self,
        store: TimelineStore,
        js: JetStreamContext,
        *,
        batch_size: int,
        poll_seconds: float,
        publish_timeout: float = 5.0,
    ) -> None:
        self._store = store
        self._js = js
        self._batch_size = batch_size
        self._poll_seconds = poll_seconds
        self._publish_timeout = publish_timeout
        self._wake = asyncio.Event()

    def notify(self) -> None:
        """Something was committed to the outbox: relay it now rather than at the next poll."""
        self._wake.set()

    async def run(self) -> None:
        while True:
            try:
                async with self._store.db.leader_lock(LEADER_LOCK) as leader:
                    if leader:
                        log.info("outbox relay active")
                        await self._relay_forever()
            except asyncio.CancelledError:
                raise
            except Exception:
                PUBLISH_FAILURES.inc()
                log.exception("outbox relay failed; retrying")
            await asyncio.sleep(self._poll_seconds)

    async def _relay_forever(self) -> None:
        while True:
            self._wake.clear()
            if await self.relay_once() < self._batch_size:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), self._poll_seconds)

    async def relay_once(self) -> int:
        """Publish one batch; returns how many events were published and marked."""
        pending = await self._store.unsent_outbox(self._batch_size)
        if not pending:
            OLDEST_UNSENT_AGE.set(0)
            return 0
        OLDEST_UNSENT_AGE.set(max(0, self._store.clock() - pending[0].created_at) / 1000)
        with BATCH_SECONDS.time():
            acks = [await self._publish(event) for event in pending]
            try:
                async with asyncio.timeout(self._publish_timeout):
                    results = await asyncio.gather(*acks, return_exceptions=True)
            except TimeoutError:
                for ack in acks:
                    ack.cancel()
                results = [
                    ack.result() if ack.done() and not ack.cancelled() else TimeoutError()
                    for ack in acks
                ]
            # Only the acknowledged prefix is marked, so order survives a partial failure.
            sent: list[int] = []
            for event, result in zip(pending, results, strict=True):
                if isinstance(result, BaseException):
                    PUBLISH_FAILURES.inc()
                    log.warning("outbox publish not acknowledged", extra={"seq": event.seq})
                    break
                sent.append(event.seq)
            await self._store.mark_outbox_sent(sent)
        PUBLISHED.inc(len(sent))
        return len(sent)

    async def _publish(self, event: OutboxEvent) -> asyncio.Future[PubAck]:
        parent = extract_trace_context(event.trace_headers)
        with tracer.start_as_current_span(
            f"publish {event.subject}",
            context=parent,
            kind=SpanKind.PRODUCER,
            attributes={
                "messaging.system": "nats",
                "messaging.operation.type": "publish",
                "messaging.operation.name": "publish",
                "messaging.destination.name": event.subject,
                "messaging.message.id": event.event_id,
            },
        ):
            headers = inject_trace_context({"Nats-Msg-Id": event.event_id})
            return await self._js.publish_async(
                event.subject, event.payload, headers=headers, stream=EVENTS_STREAM
            )
