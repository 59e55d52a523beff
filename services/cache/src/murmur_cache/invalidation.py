"""Keeping the cache true: a durable JetStream consumer applies the timeline's
domain events (one instance handles each), and a core-NATS broadcast tells
every instance (and the gateways) what to drop from their in-process copies."""

from __future__ import annotations

import asyncio
import contextlib
import logging

from google.protobuf.message import DecodeError
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from nats.errors import TimeoutError as NatsTimeout
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from nats.js.errors import NotFoundError
from opentelemetry import trace
from opentelemetry.trace import Link, SpanKind

from murmur.events.v1 import events_pb2
from murmur_cache.engine import CacheEngine, Invalidation
from murmur_core.nats import extract_trace_context
from murmur_core.subjects import CACHE_INVALIDATE, EVENTS_PREFIX, EVENTS_STREAM

log = logging.getLogger(__name__)
tracer = trace.get_tracer(__name__)
FLUSH_TIMEOUT_SECONDS = 1


class Invalidator:
    def __init__(self, engine: CacheEngine, nc: NatsClient, *, durable: str, batch: int) -> None:
        self._engine = engine
        self._nc = nc
        self._durable = durable
        self._batch = batch
        self._tasks: list[asyncio.Task[None]] = []
        self._subscription: JetStreamContext.PullSubscription | None = None

    async def start(self) -> None:
        async def on_broadcast(msg: Msg) -> None:
            try:
                self._engine.apply_broadcast(Invalidation.decode(msg.data))
            except ValueError:
                log.warning("ignored a malformed invalidation broadcast")

        await self._nc.subscribe(CACHE_INVALIDATE, cb=on_broadcast)
        self._engine.broadcast = self.publish
        self._tasks.append(asyncio.create_task(self._consume()))

    async def publish(self, invalidation: Invalidation) -> None:
        await self._nc.publish(CACHE_INVALIDATE, invalidation.encode())
        if self._nc.is_connected:
            # Handed to the server (which then passes it on to every instance)
            # before the caller hears the invalidation is done; not flushed,
            # it would wait in this process's buffer while other instances
            # still serve what was invalidated. While NATS is away every L1
            # is flushed and closed anyway.
            with contextlib.suppress(Exception):
                await self._nc.flush(timeout=FLUSH_TIMEOUT_SECONDS)

    async def _consume(self) -> None:
        js = self._nc.jetstream()
        subscription = None
        while subscription is None:
            try:
                subscription = await js.pull_subscribe(
                    f"{EVENTS_PREFIX}.>",
                    durable=self._durable,
                    stream=EVENTS_STREAM,
                    config=ConsumerConfig(
                        ack_policy=AckPolicy.EXPLICIT,
                        deliver_policy=DeliverPolicy.NEW,
                        ack_wait=30,
                        max_deliver=10,
                    ),
                )
                self._subscription = subscription
            except NotFoundError:
                # The timeline service owns the stream; wait until it made it.
                await asyncio.sleep(1.0)
        while True:
            try:
                messages = await subscription.fetch(self._batch, timeout=1.0)
            except NatsTimeout:
                continue
            except Exception as exc:
                log.warning("event fetch failed", extra={"error": type(exc).__name__})
                await asyncio.sleep(0.5)
                continue
            await self._apply(messages)

    async def _apply(self, messages: list[Msg]) -> None:
        links = [
            Link(trace.get_current_span(extract_trace_context(m.headers)).get_span_context())
            for m in messages
        ]
        with tracer.start_as_current_span(
            f"process {EVENTS_PREFIX}",
            kind=SpanKind.CONSUMER,
            links=links,
            attributes={
                "messaging.system": "nats",
                "messaging.operation.type": "process",
                "messaging.destination.name": f"{EVENTS_PREFIX}.>",
                "messaging.consumer.group.name": self._durable,
                "messaging.batch.message_count": len(messages),
            },
        ):
            for msg in messages:
                try:
                    event = events_pb2.Event.FromString(msg.data)
                except DecodeError:
                    log.warning("dropped an undecodable event", extra={"subject": msg.subject})
                    await msg.term()
                    continue
                try:
                    await self._engine.apply_event(event)
                except Exception:
                    log.exception("invalidation failed; the event will be redelivered")
                    await msg.nak(delay=1.0)
                    continue
                await msg.ack()

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._subscription is not None:
            # A pull answered after the fetch was cancelled (a message, or the
            # request's timeout status) would sit in the inbox unread, and the
            # connection's drain would wait for it until it is killed.
            with contextlib.suppress(Exception):
                await self._subscription.unsubscribe()
