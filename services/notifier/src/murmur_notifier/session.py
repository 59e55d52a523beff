"""One client connection: authentication, its subscription and resume, and a
bounded outbound queue drained by its own sender, so a slow client only ever
delays itself. Events are coalesced into frames over a few milliseconds; a
client that falls further behind than the queue allows is closed with its
resume position."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections import deque
from dataclasses import dataclass

from nats.js import JetStreamContext
from nats.js.errors import NotFoundError
from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed

from murmur_core import subjects
from murmur_core.auth import InvalidToken, Principal, TokenVerifier
from murmur_notifier import metrics, protocol
from murmur_notifier.events import Delivery, Undeliverable, decode
from murmur_notifier.protocol import Auth, Close, Ping, ProtocolError, Subscribe
from murmur_notifier.router import Router
from murmur_notifier.settings import NotifierSettings

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Services:
    settings: NotifierSettings
    verifier: TokenVerifier
    router: Router
    js: JetStreamContext


@dataclass(frozen=True, slots=True)
class _CloseRequest:
    code: Close
    reason: str
    # Send what is queued first (going away), or not (too slow, expired).
    flush: bool


class Session:
    def __init__(self, ws: ServerConnection, services: Services) -> None:
        self._ws = ws
        self._s = services
        self._settings = services.settings
        self.user_id: str | None = None
        self._expires_at = 0.0
        self._subscription: Subscribe | None = None
        self._replaying = False
        self._held: list[Delivery] = []
        self._held_bytes = 0
        self._held_overflowed = False
        self._subscribing: asyncio.Task[None] | None = None
        self._room = asyncio.Event()
        self._queue: deque[Delivery | bytes] = deque()
        self._queued_bytes = 0
        self._wake = asyncio.Event()
        self._close: _CloseRequest | None = None
        # The last event sequence written to this connection.
        self._position = 0
        rate = self._settings.client_messages_per_second
        self._tokens = 2 * rate
        self._refilled = time.monotonic()

    # Lifecycle

    async def run(self) -> None:
        try:
            principal = await self._authenticate()
        except ProtocolError as err:
            await self._close_now(err.code, err.reason)
            return
        except ConnectionClosed:
            return
        user_id = self.user_id = principal.user_id
        self._expires_at = principal.expires_at
        await self._s.router.join(user_id, self)
        metrics.CONNECTIONS.inc()
        self._enqueue(
            protocol.ready(user_id, principal.expires_at, self._settings.heartbeat_seconds)
        )
        sender = asyncio.create_task(self._send_loop())
        timers = asyncio.create_task(self._timers())
        try:
            await self._receive_loop()
        except ProtocolError as err:
            await self._close_now(err.code, err.reason)
        except ConnectionClosed:
            pass
        finally:
            timers.cancel()
            if self._subscribing is not None:
                self._subscribing.cancel()
            # The sender ends by closing when asked to; otherwise it is cut short.
            if self._close is None:
                sender.cancel()
            with contextlib.suppress(asyncio.CancelledError, ConnectionClosed):
                await asyncio.wait_for(sender, timeout=self._settings.shutdown_grace_seconds)
            await self._s.router.leave(user_id, self)
            metrics.CONNECTIONS.dec()
            metrics.QUEUED_BYTES.dec(self._queued_bytes)

    def go_away(self) -> None:
        """Tell the client to reconnect elsewhere, after what is queued."""
        wait = self._settings.retry_after_seconds * (1 + random.random())  # noqa: S311
        self._request_close(
            Close.GOING_AWAY,
            protocol.close_reason(retry_after_ms=int(wait * 1000), resume_after=self._position),
            flush=True,
        )

    async def _close_now(self, code: Close, reason: str) -> None:
        metrics.CLOSES.labels(str(int(code))).inc()
        await self._ws.close(int(code), reason)

    def _request_close(self, code: Close, reason: str, *, flush: bool) -> None:
        if self._close is None:
            self._close = _CloseRequest(code, reason, flush)
            self._wake.set()

    # Authentication

    async def _authenticate(self) -> Principal:
        token = _bearer_subprotocol(self._ws)
        if token is None:
            try:
                async with asyncio.timeout(self._settings.auth_timeout_seconds):
                    raw = await self._ws.recv()
            except TimeoutError as exc:
                raise ProtocolError(Close.UNAUTHORIZED, "authenticate first") from exc
            message = protocol.parse(raw)
            if not isinstance(message, Auth):
                raise ProtocolError(Close.UNAUTHORIZED, "authenticate first")
            token = message.token
        return self._verify(token)

    def _verify(self, token: str) -> Principal:
        try:
            return self._s.verifier.verify(token)
        except InvalidToken as exc:
            raise ProtocolError(Close.UNAUTHORIZED, str(exc)) from exc

    def _refresh(self, token: str) -> None:
        principal = self._verify(token)
        if principal.user_id != self.user_id:
            raise ProtocolError(Close.FORBIDDEN, "a refreshed token must be for the same user")
        self._expires_at = principal.expires_at
        self._enqueue(protocol.auth_ok(principal.expires_at))

    # Client messages

    async def _receive_loop(self) -> None:
        async for raw in self._ws:
            self._spend_token()
            message = protocol.parse(raw)
            if isinstance(message, Auth):
                self._refresh(message.token)
            elif isinstance(message, Subscribe):
                self._subscribe(message)
            elif isinstance(message, Ping):
                self._enqueue(protocol.pong(message.id))

    def _spend_token(self) -> None:
        rate = self._settings.client_messages_per_second
        now = time.monotonic()
        self._tokens = min(2 * rate, self._tokens + (now - self._refilled) * rate)
        self._refilled = now
        if self._tokens < 1:
            raise ProtocolError(Close.FLOOD, "too many messages")
        self._tokens -= 1

    # Subscription and resume

    def _subscribe(self, subscription: Subscribe) -> None:
        if self._subscription is not None:
            raise ProtocolError(Close.INVALID_MESSAGE, "already subscribed")
        self._subscription = subscription
        # Live events are held from here until the stream has been read up to
        # a sequence they all follow: nothing is missed or repeated.
        self._replaying = True
        self._subscribing = asyncio.create_task(self._catch_up(subscription.after))

    async def _catch_up(self, after: int | None) -> None:
        try:
            first, last = await self._stream_bounds()
            if after is None:
                self._position = last
                self._go_live(protocol.subscribed(last), last)
                return
            if after + 1 < first:
                self._resync(last, "resync")
                return
            self._position = after
            replayed = await self._replay(after, last)
            if replayed is None:
                _, last = await self._stream_bounds()
                self._resync(last, "resync_too_many")
                return
            metrics.RESUMES.labels("replayed").inc()
            read_to, count = replayed
            self._go_live(protocol.caught_up(read_to, count), read_to)
        except Exception:
            # JetStream unreachable or failing: the client retries elsewhere.
            log.exception("catching up a subscription failed")
            self.go_away()

    def _resync(self, last: int, outcome: str) -> None:
        metrics.RESUMES.labels(outcome).inc()
        self._position = last
        self._go_live(protocol.resync(last), last)

    def _go_live(self, message: bytes, last: int) -> None:
        """Send ``message``, then the held live events after ``last``, then
        live events as they come; no await in here, so none slips between."""
        held, self._held, self._replaying = self._held, [], False
        self._held_bytes = 0
        self._enqueue(message)
        for delivery in held:
            if delivery.seq > last:
                self._enqueue_event(delivery)

    async def _stream_bounds(self) -> tuple[int, int]:
        """First and last sequence of the per-user stream (0, 0 before the
        pipeline, which owns it, has created it)."""
        try:
            info = await self._s.js.stream_info(subjects.USER_STREAM)
        except NotFoundError:
            return 0, 0
        return int(info.state.first_seq), int(info.state.last_seq)

    async def _replay(self, after: int, last: int) -> tuple[int, int] | None:
        """Queue the user's stored events after ``after``, as fast as the
        client takes them, until the stream's end; returns the sequence it
        read up to and how many events it queued, or None past
        ``replay_max_events`` (the client resyncs instead)."""
        assert self.user_id is not None
        wanted = subjects.user_events_filter(self.user_id)
        settings = self._settings
        count, seq = 0, after + 1
        while True:
            while seq <= last:
                # Paced by the client: read on only while its queue has room.
                while self._queued_bytes > settings.queue_max_bytes // 2:
                    self._room.clear()
                    await self._room.wait()
                if self._close is not None:
                    return last, count  # closing: nothing more is sent
                try:
                    msg = await self._s.js.get_msg(
                        subjects.USER_STREAM, seq=seq, subject=wanted, next=True
                    )
                except NotFoundError:
                    break
                if msg.seq is None or msg.seq > last:
                    break
                count += 1
                if count > settings.replay_max_events:
                    return None
                try:
                    self._enqueue_replayed(decode(msg.seq, msg.data or b""))
                except Undeliverable:
                    metrics.UNDELIVERABLE.inc()
                seq = msg.seq + 1
            if not self._held_overflowed:
                return last, count
            # Live events came faster than the held list may grow: they are
            # in the stream too, so read on to its new end instead.
            self._held, self._held_bytes, self._held_overflowed = [], 0, False
            _, last = await self._stream_bounds()

    # Outbound

    def offer(self, delivery: Delivery) -> None:
        """A live event for this connection's user (called by the router)."""
        if self._subscription is None:
            return
        if self._replaying:
            if self._held_bytes + len(delivery.encoded) > self._settings.queue_max_bytes:
                self._held_overflowed = True
            elif not self._held_overflowed:
                self._held.append(delivery)
                self._held_bytes += len(delivery.encoded)
            return
        self._enqueue_event(delivery)

    def _wanted(self, delivery: Delivery) -> bool:
        subscription = self._subscription
        assert subscription is not None
        if subscription.kinds is not None and delivery.kind not in subscription.kinds:
            return False
        return (
            subscription.authors is None
            or not delivery.author_id
            or delivery.author_id in subscription.authors
        )

    def _enqueue_replayed(self, delivery: Delivery) -> None:
        # Bounded by the pacing in _replay, not by the too-slow rule.
        if self._wanted(delivery):
            self._enqueue(delivery)

    def _enqueue_event(self, delivery: Delivery) -> None:
        if not self._wanted(delivery):
            return
        if self._queued_bytes + len(delivery.encoded) > self._settings.queue_max_bytes:
            self._request_close(
                Close.TOO_SLOW, protocol.close_reason(resume_after=self._position), flush=False
            )
            return
        self._enqueue(delivery)

    def _enqueue(self, item: Delivery | bytes) -> None:
        if self._close is not None:
            return
        size = len(item.encoded) if isinstance(item, Delivery) else len(item)
        self._queue.append(item)
        self._queued_bytes += size
        metrics.QUEUED_BYTES.inc(size)
        self._wake.set()

    async def _send_loop(self) -> None:
        settings = self._settings
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._queue and (self._close is None or self._close.flush):
                if (
                    settings.coalesce_seconds
                    and isinstance(self._queue[0], Delivery)
                    and len(self._queue) < settings.frame_max_events
                ):
                    await asyncio.sleep(settings.coalesce_seconds)
                await self._ws.send(self._next_frame(), text=True)
            if self._close is not None:
                await self._close_now(self._close.code, self._close.reason)
                return

    def _next_frame(self) -> bytes:
        head = self._queue.popleft()
        if not isinstance(head, Delivery):
            self._forget(len(head))
            return head
        batch = [head]
        limit = self._settings.frame_max_events
        while self._queue and len(batch) < limit and isinstance(self._queue[0], Delivery):
            batch.append(self._queue.popleft())  # type: ignore[arg-type]
        now = time.monotonic()
        for delivery in batch:
            metrics.DELIVERY_SECONDS.observe(now - delivery.received_at)
        self._forget(sum(len(d.encoded) for d in batch))
        self._position = batch[-1].seq
        metrics.DELIVERED.inc(len(batch))
        metrics.FRAMES.inc()
        metrics.LAG_EVENTS.observe(len(self._queue))
        return protocol.events_frame([d.encoded for d in batch])

    def _forget(self, size: int) -> None:
        self._queued_bytes -= size
        metrics.QUEUED_BYTES.dec(size)
        self._room.set()

    async def _timers(self) -> None:
        """Heartbeats, and the close when the token expires unrefreshed."""
        every = self._settings.heartbeat_seconds
        while True:
            left = self._expires_at - time.time()
            if left <= 0:
                self._request_close(Close.UNAUTHORIZED, "token expired", flush=False)
                return
            await asyncio.sleep(min(every, left))
            if self._expires_at - time.time() > 0:
                self._enqueue(protocol.heartbeat(self._position))


def _bearer_subprotocol(ws: ServerConnection) -> str | None:
    request = ws.request
    if request is None:
        return None
    for header in request.headers.get_all("Sec-WebSocket-Protocol"):
        for offered in header.split(","):
            offered = offered.strip()
            if offered.startswith(protocol.BEARER_PREFIX):
                return offered[len(protocol.BEARER_PREFIX) :]
    return None
