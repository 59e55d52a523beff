"""One connection's outbound queue and how it is written, whatever the
protocol: bounded in bytes so a slow client only ever delays itself, events
coalesced over a few milliseconds, and a close that either flushes what is
queued first (going away) or cuts it short (too slow, token expired).

Frames are written without a task switch while the socket takes them: one
timer per coalescing window (``FlushSchedule``, shared by every connection)
writes every queue that filled during it straight to its transport. A
connection's own sender task only runs when its socket pushes back, or to
close: a post to a thousand followers is then a thousand writes from one
callback, not a thousand task wake-ups and sleeps (docs/notifier.md,
Measured)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import TYPE_CHECKING

from opentelemetry import trace
from opentelemetry.trace import Link, NonRecordingSpan, SpanContext, SpanKind

from murmur_notifier import metrics
from murmur_notifier.errors import fit_reason
from murmur_notifier.events import Delivery
from murmur_notifier.settings import NotifierSettings

_tracer = trace.get_tracer("murmur_notifier")
log = logging.getLogger(__name__)

# Standard WebSocket close code (both protocols): the server failed.
INTERNAL_ERROR = 1011

if TYPE_CHECKING:
    from murmur_notifier.connection import Channel
    from murmur_notifier.subscriber import Subscriber


class Outgoing:
    """An event on its way to one subscription, encoded for it (the bytes
    are shared with every other subscription that encodes it alike)."""

    __slots__ = ("delivery", "encoded", "subscriber")

    def __init__(self, subscriber: Subscriber, delivery: Delivery, encoded: bytes) -> None:
        self.subscriber = subscriber
        self.delivery = delivery
        self.encoded = encoded


def _send_span(
    traced: list[SpanContext], frames: int, protocol: str
) -> AbstractContextManager[trace.Span | None]:
    """The end of a post's trace: the frame carrying it written to the socket.
    A child of the first sampled event's delivery span, linked to the others
    coalesced into the same frames; no span for frames with no sampled event."""
    if not traced:
        return contextlib.nullcontext()
    first, *others = traced
    return _tracer.start_as_current_span(
        "send murmur.live.user",
        context=trace.set_span_in_context(NonRecordingSpan(first)),
        kind=SpanKind.PRODUCER,
        links=[Link(context) for context in others],
        attributes={
            "messaging.operation.type": "send",
            "network.protocol.name": "websocket",
            "messaging.batch.message_count": len(traced),
            "murmur.notifier.frames": frames,
            "murmur.notifier.protocol": protocol,
        },
    )


# Turns a run of queued events into the frames the protocol sends for them.
Framer = Callable[[list[Outgoing]], list[bytes]]


class FlushSchedule:
    """When queued frames are written: events after a coalescing window (so
    the events of a few milliseconds share a frame), protocol messages at
    the next turn of the loop. One timer for every connection's window."""

    def __init__(self, coalesce_seconds: float) -> None:
        self._coalesce_seconds = coalesce_seconds
        self._later: list[Outbox] = []
        self._soon: list[Outbox] = []
        self._later_handle: asyncio.TimerHandle | None = None
        self._soon_handle: asyncio.Handle | None = None

    def soon(self, outbox: Outbox) -> None:
        self._soon.append(outbox)
        if self._soon_handle is None:
            self._soon_handle = asyncio.get_running_loop().call_soon(self._flush_soon)

    def later(self, outbox: Outbox) -> None:
        if not self._coalesce_seconds:
            self.soon(outbox)
            return
        self._later.append(outbox)
        if self._later_handle is None:
            self._later_handle = asyncio.get_running_loop().call_later(
                self._coalesce_seconds, self._flush_later
            )

    def _flush_soon(self) -> None:
        due, self._soon, self._soon_handle = self._soon, [], None
        _flush_each(due)

    def _flush_later(self) -> None:
        due, self._later, self._later_handle = self._later, [], None
        _flush_each(due)


def _flush_each(due: list[Outbox]) -> None:
    for outbox in due:
        try:
            outbox.flush()
        except Exception:
            # One connection's failure must not leave the others unwritten.
            log.exception("writing a connection's frames failed")
            outbox.request_close(INTERNAL_ERROR, "internal error", flush=False)


# A close reason, or how to word it when the close is sent: a flushing close
# reports the position reached after what it flushed.
Reason = str | Callable[[], str]


@dataclass(frozen=True, slots=True)
class CloseRequest:
    code: int
    reason: Reason
    # Send what is queued first (going away), or not (too slow, expired).
    flush: bool


def _no_frames(batch: list[Outgoing]) -> list[bytes]:
    return []


def _ignore() -> None:
    return None


class Outbox:
    def __init__(
        self,
        ws: Channel,
        settings: NotifierSettings,
        framer: Framer,
        too_slow: Callable[[], None],
        protocol: str,
        schedule: FlushSchedule,
    ) -> None:
        self._ws = ws
        self._schedule = schedule
        self._delivered = metrics.DELIVERED.labels(protocol)
        self._latency = metrics.DELIVERY_SECONDS.labels(protocol)
        self.protocol = protocol
        self._settings = settings
        self._framer = framer
        self._too_slow = too_slow
        self._queue: deque[Outgoing | bytes] = deque()
        self.queued_bytes = 0
        self._wake = asyncio.Event()
        # Set whenever the queue shrinks: paced replays wait on it.
        self._room = asyncio.Event()
        self.close_request: CloseRequest | None = None
        # A flush is scheduled; the sender task is writing (it then writes
        # whatever is queued, and flushes leave the queue to it).
        self._flush_due = False
        self._sending = False

    @property
    def closing(self) -> bool:
        return self.close_request is not None

    # Producers

    def send(self, message: bytes) -> None:
        """A protocol message, sent after what is queued (dropped once closing)."""
        self._push(message, len(message))

    def send_event(self, item: Outgoing) -> None:
        """A live event: a client whose queue cannot take it is too slow."""
        size = len(item.encoded)
        if self.queued_bytes + size > self._settings.queue_max_bytes:
            self._too_slow()
            return
        self._push(item, size)

    def send_replayed(self, item: Outgoing) -> None:
        # Bounded by the pacing of replays (wait_for_room), not by the too-slow rule.
        self._push(item, len(item.encoded))

    async def wait_for_room(self) -> None:
        """Return once the queue is at most half full, or closing: replays read
        the stream only as fast as the client takes what they queue."""
        while self.queued_bytes > self._settings.queue_max_bytes // 2 and not self.closing:
            self._room.clear()
            await self._room.wait()

    def _push(self, item: Outgoing | bytes, size: int) -> None:
        if self.close_request is not None:
            return
        self._queue.append(item)
        self.queued_bytes += size
        metrics.QueuedBytes.total += size
        # While the sender task writes, it takes whatever is queued.
        if not self._sending and not self._flush_due:
            self._flush_due = True
            if isinstance(item, Outgoing):
                self._schedule.later(self)
            else:
                self._schedule.soon(self)

    # Closing

    def request_close(self, code: int, reason: Reason, *, flush: bool) -> None:
        """Close from the sender (the first request wins)."""
        if self.close_request is None:
            self.close_request = CloseRequest(code, reason, flush)
            self._start_sending()
            # A replay waiting for room stops at once.
            self._room.set()

    async def close_now(self, code: int, reason: str) -> None:
        metrics.CLOSES.labels(self.protocol, str(int(code))).inc()
        await self._ws.close(int(code), fit_reason(reason))

    def discard(self) -> None:
        """The connection is over: what is still queued is no longer counted."""
        metrics.QueuedBytes.total -= self.queued_bytes
        self.queued_bytes = 0
        self._queue.clear()

    def release(self) -> None:
        """Drop the connection's callbacks (bound to it: a reference cycle),
        once it has ended and nothing is sent any more."""
        self.discard()
        self._framer = _no_frames
        self._too_slow = _ignore

    # Writing

    def flush(self) -> None:
        """Write what is queued while the socket takes it without waiting;
        past that, the sender task waits for it (called by FlushSchedule)."""
        self._flush_due = False
        if self._sending:
            return
        while self._queue:
            if not self._ws.ready_to_write():
                self._start_sending()
                return
            frames, traced = self._next_frames()
            with _send_span(traced, len(frames), self.protocol):
                for frame in frames:
                    self._ws.write_now(frame)

    def _start_sending(self) -> None:
        self._sending = True
        self._wake.set()

    async def run(self) -> None:
        """The sender task: writes when the socket pushes back, and closes."""
        while True:
            await self._wake.wait()
            self._wake.clear()
            self._sending = True
            while self._queue and (self.close_request is None or self.close_request.flush):
                frames, traced = self._next_frames()
                with _send_span(traced, len(frames), self.protocol):
                    for frame in frames:
                        await self._ws.send(frame, text=True)
            if (request := self.close_request) is not None:
                reason = request.reason if isinstance(request.reason, str) else request.reason()
                await self.close_now(request.code, reason)
                return
            self._sending = False

    def _next_frames(self) -> tuple[list[bytes], list[SpanContext]]:
        """The next frames to write, and the sampled traces of their events."""
        head = self._queue.popleft()
        if not isinstance(head, Outgoing):
            self._forget(len(head))
            return [head], []
        batch = [head]
        limit = self._settings.frame_max_events
        while self._queue and len(batch) < limit and isinstance(self._queue[0], Outgoing):
            batch.append(self._queue.popleft())  # type: ignore[arg-type]
        self._forget(sum(len(item.encoded) for item in batch))
        # A subscription the client completed gets nothing more, even if queued.
        batch = [item for item in batch if item.subscriber.active]
        if not batch:
            return [], []
        now = time.monotonic()
        traced = []
        for item in batch:
            context = item.delivery.traced
            exemplar = None
            if context is not None:
                traced.append(context)
                exemplar = {"trace_id": format(context.trace_id, "032x")}
            self._latency.observe(now - item.delivery.received_at, exemplar)
            # Written from here on: where this subscription resumes from.
            item.subscriber.position = item.delivery.seq
        frames = self._framer(batch)
        self._delivered.inc(len(batch))
        metrics.FRAMES.inc(len(frames))
        metrics.LAG_EVENTS.observe(len(self._queue))
        return frames, traced

    def _forget(self, size: int) -> None:
        self.queued_bytes -= size
        metrics.QueuedBytes.total -= size
        self._room.set()
