"""The one way a service consumes JetStream: a durable pull consumer shared by
all its instances, fetched in batches bounded by count and wait, each message
acknowledged after its effect is done, retried with back-off on failure, and
sent to a dead-letter subject after a bounded number of attempts (or at once
when it can never be processed)."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from nats.errors import TimeoutError as NatsTimeout
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from nats.js.errors import NotFoundError
from opentelemetry import trace
from opentelemetry.trace import Link, SpanKind
from prometheus_client import Counter, Gauge, Histogram

from murmur_core.metrics import LATENCY_BUCKETS, observe_duration
from murmur_core.nats import extract_trace_context, inject_trace_context

log = logging.getLogger(__name__)
tracer = trace.get_tracer(__name__)

CONSUMED = Counter(
    "murmur_consumer_messages_total",
    "JetStream messages handled, by consumer and outcome (done, retry, dead_letter).",
    ["consumer", "outcome"],
)
PENDING = Gauge(
    "murmur_consumer_pending_messages",
    "Messages in the stream this consumer has yet to fetch, as of its last fetch (lag).",
    ["consumer"],
)
OUTCOMES = ("done", "retry", "dead_letter")
BATCH_SECONDS = Histogram(
    "murmur_consumer_batch_duration_seconds",
    "Time to handle one fetched batch, by consumer.",
    ["consumer"],
    buckets=LATENCY_BUCKETS,
)


class Poison(Exception):
    """This message can never be handled (undecodable, invalid): dead-letter it now."""


Handler = Callable[[Msg], Awaitable[None]]
# Messages of a batch with equal keys are handled one after another, in stream
# order; messages with different keys at the same time.
OrderKey = Callable[[Msg], str]


@dataclass(frozen=True)
class ConsumerSpec:
    stream: str
    subject: str
    durable: str
    batch: int = 256
    wait_seconds: float = 0.5
    max_attempts: int = 5
    ack_wait_seconds: float = 30.0
    dead_letter_subject: str = ""
    deliver_new_only: bool = False
    # Messages of one batch handled at once (needs an order key).
    concurrency: int = 1
    # Fetched batches handled at once (needs an order key): the next batch is
    # fetched and started while the last waits on its I/O. A key's messages
    # still run in stream order, across batches too.
    batches_in_flight: int = 1


class EventConsumer:
    def __init__(
        self,
        nc: NatsClient,
        spec: ConsumerSpec,
        handle: Handler,
        *,
        order_key: OrderKey | None = None,
    ) -> None:
        self._nc = nc
        self._js: JetStreamContext = nc.jetstream()
        self._spec = spec
        self._handle = handle
        self._order_key = order_key
        self._task: asyncio.Task[None] | None = None
        self._subscription: JetStreamContext.PullSubscription | None = None
        # The last lane started for each order key, which the next lane of
        # that key (in a later batch) waits for.
        self._tails: dict[str, asyncio.Task[None]] = {}

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def _subscribe(self) -> JetStreamContext.PullSubscription:
        spec = self._spec
        while True:
            try:
                return await self._js.pull_subscribe(
                    spec.subject,
                    durable=spec.durable,
                    stream=spec.stream,
                    config=ConsumerConfig(
                        ack_policy=AckPolicy.EXPLICIT,
                        deliver_policy=DeliverPolicy.NEW
                        if spec.deliver_new_only
                        else DeliverPolicy.ALL,
                        ack_wait=spec.ack_wait_seconds,
                        # Counted here rather than by the server, so that the
                        # last attempt can dead-letter instead of vanishing.
                        max_deliver=-1,
                    ),
                )
            except NotFoundError:
                # The stream's owner has not created it yet.
                await asyncio.sleep(1.0)

    async def _run(self) -> None:
        self._subscription = await self._subscribe()
        # Every outcome exists from the start, at 0, so that rate() and
        # increase() see the first retry or dead letter.
        for outcome in OUTCOMES:
            CONSUMED.labels(self._spec.durable, outcome)
        # The lag from the start, not from the first message fetched: a
        # consumer that never gets any (another instance does) still has one.
        with contextlib.suppress(Exception):
            info = await self._subscription.consumer_info()
            PENDING.labels(self._spec.durable).set(info.num_pending or 0)
        # Without an order key nothing keeps a key's messages in order across
        # batches: one batch at a time.
        overlap = self._spec.batches_in_flight if self._order_key is not None else 1
        in_flight = asyncio.Semaphore(overlap)
        async with asyncio.TaskGroup() as batches:
            while True:
                await in_flight.acquire()
                messages = await self._fetch(self._subscription)
                if not messages:
                    in_flight.release()
                    continue
                batch = batches.create_task(self.handle_batch(messages))
                batch.add_done_callback(lambda _: in_flight.release())

    async def _fetch(self, subscription: JetStreamContext.PullSubscription) -> list[Msg]:
        """The next batch; empty when there was none within the wait."""
        try:
            messages = await subscription.fetch(self._spec.batch, timeout=self._spec.wait_seconds)
        except NatsTimeout:
            return []
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.warning(
                "fetch failed",
                extra={"consumer": self._spec.durable, "error": type(exc).__name__},
            )
            await asyncio.sleep(0.5)
            return []
        # nats-py can end a fetch's wait with an empty batch instead of a
        # timeout: nothing to handle, time or trace.
        if messages:
            last = messages[-1].metadata
            if last.num_pending is not None:
                PENDING.labels(self._spec.durable).set(last.num_pending)
        return messages

    async def handle_batch(self, messages: list[Msg]) -> None:
        spec = self._spec
        links = [
            Link(trace.get_current_span(extract_trace_context(m.headers)).get_span_context())
            for m in messages
        ]
        with tracer.start_as_current_span(
            f"process {spec.subject}",
            kind=SpanKind.CONSUMER,
            links=links,
            attributes={
                "messaging.system": "nats",
                "messaging.operation.type": "process",
                "messaging.destination.name": spec.subject,
                "messaging.consumer.group.name": spec.durable,
                "messaging.batch.message_count": len(messages),
            },
        ):
            started = time.perf_counter()
            try:
                await self._handle_lanes(messages)
            finally:
                # Inside the span, so the observation carries its trace.
                observe_duration(BATCH_SECONDS.labels(spec.durable), time.perf_counter() - started)

    async def _handle_lanes(self, messages: list[Msg]) -> None:
        spec = self._spec
        if spec.concurrency <= 1 or self._order_key is None:
            for msg in messages:
                await self._one(msg)
            return
        lanes: dict[str, list[Msg]] = {}
        for msg in messages:
            lanes.setdefault(self._order_key(msg), []).append(msg)
        limit = asyncio.Semaphore(spec.concurrency)

        async def lane(ordered: list[Msg], after: asyncio.Task[None] | None) -> None:
            if after is not None:
                # The key's lane in an earlier batch, still running.
                await asyncio.wait([after])
            async with limit:
                for msg in ordered:
                    await self._one(msg)

        async with asyncio.TaskGroup() as group:
            for key, ordered in lanes.items():
                task = group.create_task(lane(ordered, self._tails.get(key)))
                self._tails[key] = task
                task.add_done_callback(functools.partial(self._forget_tail, key))

    def _forget_tail(self, key: str, lane: asyncio.Task[None]) -> None:
        if self._tails.get(key) is lane:
            del self._tails[key]

    async def _one(self, msg: Msg) -> None:
        try:
            await self._handle_and_settle(msg)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            # Acknowledging or dead-lettering failed (the connection dropped):
            # the message comes back after the ack wait; effects are idempotent.
            log.warning(
                "could not settle message",
                extra={"consumer": self._spec.durable, "error": type(exc).__name__},
            )

    async def _handle_and_settle(self, msg: Msg) -> None:
        spec = self._spec
        try:
            # One span a message, continuing the trace of what published it,
            # so a write's trace runs through every consumer's work on it;
            # the batch span, a trace of its own, links to them all.
            with tracer.start_as_current_span(
                f"process {msg.subject}",
                context=extract_trace_context(msg.headers),
                kind=SpanKind.CONSUMER,
                attributes={
                    "messaging.system": "nats",
                    "messaging.operation.type": "process",
                    "messaging.destination.name": msg.subject,
                    "messaging.consumer.group.name": spec.durable,
                    "messaging.message.id": (msg.headers or {}).get("Nats-Msg-Id", ""),
                },
            ):
                await self._handle(msg)
        except Poison as exc:
            await self._dead_letter(msg, f"poison: {exc}")
            return
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            attempts = msg.metadata.num_delivered if msg.metadata else 1
            if attempts >= spec.max_attempts:
                await self._dead_letter(msg, f"failed {attempts} times: {type(exc).__name__}")
                return
            log.warning(
                "handler failed; will retry",
                extra={"consumer": spec.durable, "attempt": attempts, "error": type(exc).__name__},
            )
            CONSUMED.labels(spec.durable, "retry").inc()
            await msg.nak(delay=min(30.0, 0.5 * 2 ** (attempts - 1)))
            return
        CONSUMED.labels(spec.durable, "done").inc()
        await msg.ack()

    async def _dead_letter(self, msg: Msg, reason: str) -> None:
        spec = self._spec
        log.error(
            "message dead-lettered",
            extra={"consumer": spec.durable, "subject": msg.subject, "reason": reason},
        )
        CONSUMED.labels(spec.durable, "dead_letter").inc()
        if spec.dead_letter_subject:
            headers = inject_trace_context(
                {
                    "Murmur-Original-Subject": msg.subject,
                    "Murmur-Dead-Letter-Reason": reason[:200],
                    "Murmur-Consumer": spec.durable,
                }
            )
            await self._js.publish(spec.dead_letter_subject, msg.data, headers=headers)
        await msg.term()

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._subscription is not None:
            # A pull answered after its fetch was cancelled would sit unread
            # and hold up the connection's drain.
            with contextlib.suppress(Exception):
                await self._subscription.unsubscribe()
