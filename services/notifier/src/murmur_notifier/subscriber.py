"""One subscription, whatever the protocol: which of the user's events it
wants, where it stands in the user's stream, and how it gets there. A resume
replays the stream from JetStream, paced by the connection's queue, while
live events are held back until the replay has read past them: nothing is
missed or repeated. The protocol front-ends subclass it to encode events and
to word the milestones (live, caught up, resync)."""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

from murmur_core.user_events import next_event, stream_bounds
from murmur_notifier import metrics
from murmur_notifier.events import Delivery, Undeliverable, decode
from murmur_notifier.outbox import Outgoing

if TYPE_CHECKING:
    from murmur_notifier.connection import Connection

log = logging.getLogger(__name__)


class Subscriber:
    def __init__(
        self,
        connection: Connection,
        kinds: frozenset[str] | None,
        authors: frozenset[str] | None,
    ) -> None:
        self._connection = connection
        self._outbox = connection.outbox
        # None: every kind / every author.
        self._kinds = kinds
        self._authors = authors
        # The last sequence written for this subscription: where it resumes.
        self.position = 0
        # False once stopped: what is still queued for it is dropped.
        self.active = True
        # Live events wait in _held until the stream has been read up to a
        # sequence they all follow.
        self._replaying = True
        self._held: list[Delivery] = []
        self._held_bytes = 0
        self._held_overflowed = False
        self._task: asyncio.Task[None] | None = None

    def start(self, after: int | None) -> None:
        """Go live from the stream's end, or resume after ``after``."""
        self._task = asyncio.create_task(self._catch_up(after))

    def stop(self) -> None:
        self.active = False
        self._held = []
        # Not itself: a catch-up may end its own subscription (resync).
        if self._task is not None and self._task is not asyncio.current_task():
            self._task.cancel()

    # What the protocols word differently

    def encode(self, delivery: Delivery) -> bytes:
        return delivery.encoded

    def live_message(self, seq: int) -> bytes | None:
        """Sent when a subscription without ``after`` goes live after ``seq``."""
        return None

    def caught_up_message(self, seq: int, replayed: int) -> bytes | None:
        """Sent when a resume has replayed ``replayed`` events up to ``seq``."""
        return None

    def resync(self, seq: int) -> None:
        """The resume position is gone from the stream (or too far back): by
        default say so (resync_message) and go live after ``seq``."""
        self.position = seq
        self._go_live(self.resync_message(seq), seq)

    def resync_message(self, seq: int) -> bytes | None:
        return None

    # Live events

    def wants(self, delivery: Delivery) -> bool:
        if self._kinds is not None and delivery.kind not in self._kinds:
            return False
        return (
            self._authors is None or not delivery.author_id or delivery.author_id in self._authors
        )

    def offer(self, delivery: Delivery) -> None:
        """A live event of the user (from the connection, from the router)."""
        if not self.wants(delivery):
            return
        if not self._replaying:
            self._outbox.send_event(Outgoing(self, delivery, self.encode(delivery)))
            return
        size = len(delivery.encoded)
        if self._held_bytes + size > self._connection.settings.queue_max_bytes:
            self._held_overflowed = True
        elif not self._held_overflowed:
            self._held.append(delivery)
            self._held_bytes += size

    # Catching up

    async def _catch_up(self, after: int | None) -> None:
        try:
            async with self._connection.services.catching_up:
                await self._catch_up_now(after)
        except Exception:
            # JetStream unreachable or failing: the client retries elsewhere.
            log.exception("catching up a subscription failed")
            self._connection.go_away()

    async def _catch_up_now(self, after: int | None) -> None:
        first, last = await self._stream_bounds()
        if after is None:
            self.position = last
            self._go_live(self.live_message(last), last)
            return
        if after + 1 < first:
            self._resync(last, "resync")
            return
        self.position = after
        replayed = await self._replay(after, last)
        if replayed is None:
            _, last = await self._stream_bounds()
            self._resync(last, "resync_too_many")
            return
        metrics.RESUMES.labels("replayed").inc()
        read_to, count = replayed
        self._go_live(self.caught_up_message(read_to, count), read_to)

    def _resync(self, last: int, outcome: str) -> None:
        metrics.RESUMES.labels(outcome).inc()
        self.resync(last)

    def _go_live(self, message: bytes | None, last: int) -> None:
        """Send ``message``, then the held live events after ``last``, then
        live events as they come; no await in here, so none slips between."""
        held, self._held, self._replaying = self._held, [], False
        self._held_bytes = 0
        if message is not None:
            self._outbox.send(message)
        for delivery in held:
            if delivery.seq > last:
                self.offer(delivery)

    async def _stream_bounds(self) -> tuple[int, int]:
        return await stream_bounds(self._connection.services.js)

    async def _replay(self, after: int, last: int) -> tuple[int, int] | None:
        """Queue the user's stored events after ``after``, as fast as the
        client takes them, until the stream's end; returns the sequence it
        read up to and how many events it read, or None past
        ``replay_max_events`` (the client resyncs instead)."""
        js = self._connection.services.js
        user_id = self._connection.user_id
        limit = self._connection.settings.replay_max_events
        count, seq = 0, after + 1
        while True:
            while seq <= last:
                try:
                    async with asyncio.timeout(self._connection.settings.replay_stall_seconds):
                        await self._outbox.wait_for_room()
                except TimeoutError:
                    # A client that takes nothing must not hold a catch-up slot.
                    self._connection.too_slow()
                    return last, count
                if self._outbox.closing:
                    return last, count  # closing: nothing more is sent
                stored = await next_event(js, user_id, seq - 1, last)
                if stored is None:
                    break
                count += 1
                if count > limit:
                    return None
                try:
                    delivery = decode(stored.seq, stored.data)
                except Undeliverable:
                    metrics.UNDELIVERABLE.inc()
                else:
                    if self.wants(delivery):
                        self._outbox.send_replayed(Outgoing(self, delivery, self.encode(delivery)))
                seq = stored.seq + 1
            if not self._held_overflowed:
                return last, count
            # Live events came faster than the held list may grow: they are
            # in the stream too, so read on to its new end instead.
            self._held, self._held_bytes, self._held_overflowed = [], 0, False
            _, last = await self._stream_bounds()
