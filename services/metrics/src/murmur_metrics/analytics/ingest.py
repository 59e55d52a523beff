"""The analytics consumer: a durable JetStream consumer of every domain
event, recording each once (replays and redeliveries are no-ops)."""

from __future__ import annotations

from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from prometheus_client import Counter

from murmur.events.v1 import events_pb2
from murmur_core import subjects
from murmur_core.consumer import ConsumerSpec, EventConsumer, Poison
from murmur_metrics.analytics.recorder import AnalyticsRecorder, InvalidEvent

DURABLE = "metrics-analytics"

RECORDED = Counter(
    "murmur_metrics_events_recorded_total",
    "Domain events taken into the analytics, by outcome (recorded, duplicate).",
    ["outcome"],
)


class AnalyticsIngest:
    def __init__(self, recorder: AnalyticsRecorder) -> None:
        self._recorder = recorder
        for outcome in ("recorded", "duplicate"):
            RECORDED.labels(outcome)

    async def handle(self, msg: Msg) -> None:
        try:
            event = events_pb2.Event.FromString(msg.data)
        except Exception as exc:
            raise Poison("not an Event message") from exc
        try:
            recorded = await self._recorder.record(event)
        except InvalidEvent as exc:
            raise Poison(str(exc)) from exc
        RECORDED.labels("recorded" if recorded else "duplicate").inc()

    def consumer(self, nc: NatsClient, durable: str = DURABLE) -> EventConsumer:
        return EventConsumer(
            nc,
            ConsumerSpec(
                stream=subjects.EVENTS_STREAM,
                subject=f"{subjects.EVENTS_PREFIX}.>",
                durable=durable,
                dead_letter_subject=subjects.dead_letter_subject(durable),
            ),
            self.handle,
        )
