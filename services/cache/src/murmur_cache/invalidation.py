"""Keeping the cache true: a durable JetStream consumer (the shared one of
murmur_core) applies the timeline's domain events, one instance handling
each, and a core-NATS broadcast tells every instance (and the gateways) what
to drop from their in-process copies."""

from __future__ import annotations

import contextlib
import logging

from google.protobuf.message import DecodeError
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg

from murmur.events.v1 import events_pb2
from murmur_cache.engine import CacheEngine, Invalidation
from murmur_core.consumer import ConsumerSpec, EventConsumer, Poison
from murmur_core.subjects import (
    CACHE_FEEDS_CHANGED,
    CACHE_INVALIDATE,
    EVENTS_PREFIX,
    EVENTS_STREAM,
)

log = logging.getLogger(__name__)
FLUSH_TIMEOUT_SECONDS = 1


class Invalidator:
    def __init__(self, engine: CacheEngine, nc: NatsClient, *, durable: str, batch: int) -> None:
        self._engine = engine
        self._nc = nc
        self._consumer = EventConsumer(
            nc,
            ConsumerSpec(
                stream=EVENTS_STREAM,
                subject=f"{EVENTS_PREFIX}.>",
                durable=durable,
                batch=batch,
                wait_seconds=1.0,
                max_attempts=10,
                # Only what happens from now on outdates what a new cache holds.
                deliver_new_only=True,
            ),
            self._apply,
        )

    async def start(self) -> None:
        async def on_broadcast(msg: Msg) -> None:
            try:
                self._engine.apply_broadcast(Invalidation.decode(msg.data))
            except ValueError:
                log.warning("ignored a malformed invalidation broadcast")

        async def on_feeds_changed(msg: Msg) -> None:
            names = msg.data.decode().split("\n")
            self._engine.apply_broadcast(Invalidation(names), origin="fan_out")

        await self._nc.subscribe(CACHE_INVALIDATE, cb=on_broadcast)
        await self._nc.subscribe(CACHE_FEEDS_CHANGED, cb=on_feeds_changed)
        self._engine.broadcast = self.publish
        self._engine.feeds_changed = self.publish_feeds_changed
        self._consumer.start()

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

    async def publish_feeds_changed(self, names: list[str]) -> None:
        # Not flushed, unlike publish(): a fan-out page would wait a round
        # trip to NATS for it, and what it races is a reader hearing of the
        # post through the notifier, milliseconds later. The flusher writes
        # it out as soon as this call's reply is on its way.
        await self._nc.publish(CACHE_FEEDS_CHANGED, "\n".join(names).encode())

    async def _apply(self, msg: Msg) -> None:
        try:
            event = events_pb2.Event.FromString(msg.data)
        except DecodeError as exc:
            raise Poison("not an Event message") from exc
        await self._engine.apply_event(event)

    async def stop(self) -> None:
        await self._consumer.stop()
