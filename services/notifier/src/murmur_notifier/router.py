"""Interest routing: one core NATS subscription per user with an open
connection here, on the live (republished) subjects of that user only, so
instances behind a load balancer share users with no coordination. A message
is decoded once and offered to each of the user's connections, from the NATS
client's read loop (``subscribe_direct``): no task or queue per message."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import replace
from typing import Protocol

from opentelemetry import trace
from opentelemetry.trace import SpanKind

from murmur_core import subjects
from murmur_core.nats import DirectHandler, extract_trace_context
from murmur_notifier import metrics
from murmur_notifier.events import Delivery, Undeliverable, decode

log = logging.getLogger(__name__)
tracer = trace.get_tracer(__name__)

SEQUENCE_HEADER = "Nats-Sequence"
# Events whose span this instance has started: a post reaches it as one copy
# per follower connected here, and one span per event is enough.
_TRACED_MAX = 4096


class LiveSubscription(Protocol):
    async def unsubscribe(self) -> None: ...


class LiveSource(Protocol):
    """What the router needs of NATS (``murmur_core.nats.Client``)."""

    async def subscribe_direct(self, subject: str, handler: DirectHandler) -> LiveSubscription: ...


class Listener(Protocol):
    def offer(self, delivery: Delivery) -> None: ...

    def go_away(self) -> None:
        """Events for it were lost here: it must resume (from JetStream)."""


class Router:
    def __init__(self, nc: LiveSource) -> None:
        self._nc = nc
        self._listeners: dict[str, set[Listener]] = {}
        self._subscriptions: dict[str, LiveSubscription] = {}
        # Told of each user who gets a first connection here (presence).
        self.on_join: Callable[[str], None] | None = None
        self._traced: dict[str, None] = {}

    async def join(self, user_id: str, listener: Listener) -> None:
        listeners = self._listeners.setdefault(user_id, set())
        listeners.add(listener)
        if user_id not in self._subscriptions:
            self._subscriptions[user_id] = await self._nc.subscribe_direct(
                subjects.user_live_filter(user_id), self._deliver
            )
            metrics.USERS.set(len(self._subscriptions))
            if self.on_join is not None:
                self.on_join(user_id)

    async def leave(self, user_id: str, listener: Listener) -> None:
        listeners = self._listeners.get(user_id)
        if listeners is None:
            return
        listeners.discard(listener)
        if listeners:
            return
        del self._listeners[user_id]
        subscription = self._subscriptions.pop(user_id, None)
        metrics.USERS.set(len(self._subscriptions))
        if subscription is not None:
            await subscription.unsubscribe()

    def users(self) -> list[str]:
        return list(self._subscriptions)

    def _deliver(self, subject: str, headers: dict[str, str] | None, data: bytes) -> None:
        # murmur.live.user.<user_id>.<kind...>
        user_id = subject.split(".", 4)[3]
        try:
            seq = int((headers or {})[SEQUENCE_HEADER])
            delivery = decode(seq, data)
        except (KeyError, ValueError, Undeliverable) as exc:
            metrics.UNDELIVERABLE.inc()
            log.warning("undeliverable user event", extra={"error": repr(exc)})
            return
        listeners = list(self._listeners.get(user_id, ()))
        if delivery.event_id in self._traced:
            for listener in listeners:
                listener.offer(delivery)
            return
        if len(self._traced) >= _TRACED_MAX:
            del self._traced[next(iter(self._traced))]
        self._traced[delivery.event_id] = None
        # The event continues the trace of the post that caused it (the
        # pipeline puts its context in the headers). An event without one
        # starts no trace: a root span per delivery would be noise.
        context = extract_trace_context(headers)
        if not trace.get_current_span(context).get_span_context().is_valid:
            for listener in listeners:
                listener.offer(delivery)
            return
        with tracer.start_as_current_span(
            f"process {subjects.USER_LIVE_PREFIX}",
            context=context,
            kind=SpanKind.CONSUMER,
            attributes={
                "messaging.system": "nats",
                # The template: a user id is not for traces.
                "messaging.destination.template": "murmur.live.user.{user_id}.{kind}",
                "murmur.event.kind": delivery.kind,
                "murmur.event.seq": delivery.seq,
                "murmur.notifier.connections": len(listeners),
            },
        ) as span:
            if span.get_span_context().trace_flags.sampled:
                delivery = replace(delivery, traced=span.get_span_context())
            for listener in listeners:
                listener.offer(delivery)
