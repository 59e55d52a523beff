"""A client connection, whatever its protocol: authenticated once, then a
member of the router for its user, with its subscriptions (one in the native
protocol, any number in graphql-transport-ws), one outbound queue and
sender (outbox.py), a client message budget, heartbeats and the token's
expiry. Front-ends (session.py, graphql_ws/session.py) subclass it for what
their protocol says differently: messages, and the close codes of what the
two protocols share (too slow, going away, token expired, flooding)."""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import ClassVar, Protocol

from nats.js import JetStreamContext
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request

from murmur_core.auth import Principal, TokenVerifier
from murmur_notifier import metrics
from murmur_notifier.errors import ProtocolError
from murmur_notifier.events import Delivery
from murmur_notifier.outbox import FlushSchedule, Outbox, Outgoing
from murmur_notifier.router import Router
from murmur_notifier.settings import NotifierSettings
from murmur_notifier.subscriber import Subscriber

# A token offered as a subprotocol: ``bearer.<jwt>`` (never echoed back).
BEARER_PREFIX = "bearer."


class Channel(Protocol):
    """What a connection needs of its transport: a WebSocket
    (``ServerConnection``), or an event stream (sse.py). Sends and reads
    raise ``ConnectionClosed`` once the peer is gone."""

    @property
    def request(self) -> Request | None: ...

    def __aiter__(self) -> AsyncIterator[str | bytes]: ...

    async def recv(self) -> str | bytes: ...

    async def send(self, message: bytes, *, text: bool | None = None) -> None: ...

    def ready_to_write(self) -> bool:
        """Whether ``write_now`` may be called: the transport is open and
        takes more without waiting."""

    def write_now(self, message: bytes) -> None:
        """Write a text message at once (only when ``ready_to_write``)."""

    async def close(self, code: int = 1000, reason: str = "") -> None: ...


@dataclass(frozen=True)
class Services:
    settings: NotifierSettings
    verifier: TokenVerifier
    router: Router
    js: JetStreamContext
    # When every connection's queued frames are written.
    flushes: FlushSchedule
    # Catch-ups (stream reads for subscribe and resume) in flight at once: a
    # thousand clients resuming together must not time JetStream out.
    catching_up: asyncio.Semaphore


class Connection(ABC):
    # Close code for a client sending more messages than its budget.
    FLOOD_CODE: ClassVar[int]
    # The WebSocket subprotocol, for the metrics' protocol label.
    PROTOCOL: ClassVar[str]

    def __init__(self, ws: Channel, services: Services) -> None:
        self.ws = ws
        self.services = services
        self.settings = services.settings
        self.user_id = ""
        self.expires_at = 0.0
        # By subscription id ("" for the native protocol's only one).
        self.subscribers: dict[str, Subscriber] = {}
        self.outbox = Outbox(
            ws, self.settings, self.frames, self.too_slow, self.PROTOCOL, services.flushes
        )
        rate = self.settings.client_messages_per_second
        self._tokens = 2 * rate
        self._refilled = time.monotonic()

    # What each protocol implements

    @abstractmethod
    async def authenticate(self) -> Principal:
        """Read the client's credentials (raising ProtocolError to refuse)."""

    @abstractmethod
    def welcome(self) -> None:
        """Queue the first message after authentication."""

    @abstractmethod
    def handle(self, raw: str | bytes) -> None:
        """One client message after authentication."""

    @abstractmethod
    def frames(self, batch: list[Outgoing]) -> list[bytes]:
        """The frames that carry a run of queued events."""

    @abstractmethod
    def heartbeat(self) -> None:
        """Queue the protocol's keep-alive."""

    @abstractmethod
    def too_slow(self) -> None:
        """A live event did not fit the queue: close, telling where to resume."""

    @abstractmethod
    def go_away(self) -> None:
        """Tell the client to reconnect elsewhere, after what is queued."""

    @abstractmethod
    def expired(self) -> None:
        """The token expired (and was not refreshed where the protocol can)."""

    # Lifecycle

    async def run(self) -> None:
        try:
            await self._run()
        finally:
            self.release()

    async def _run(self) -> None:
        try:
            principal = await self.authenticate()
        except ProtocolError as err:
            await self.outbox.close_now(err.code, err.reason)
            return
        except ConnectionClosed:
            return
        user_id = self.user_id = principal.user_id
        self.expires_at = principal.expires_at
        await self.services.router.join(user_id, self)
        metrics.CONNECTIONS.labels(self.PROTOCOL).inc()
        metrics.SESSIONS.labels(self.PROTOCOL).inc()
        self.welcome()
        sender = asyncio.create_task(self.outbox.run())
        timers = asyncio.create_task(self._timers())
        try:
            async for raw in self.ws:
                self.spend_token()
                self.handle(raw)
        except ProtocolError as err:
            await self.outbox.close_now(err.code, err.reason)
        except ConnectionClosed:
            pass  # the client went away: clean up below, nothing to tell it
        finally:
            timers.cancel()
            for subscriber in self.subscribers.values():
                subscriber.stop()
            # The sender ends by closing when asked to; otherwise it is cut short.
            if not self.outbox.closing:
                sender.cancel()
            with contextlib.suppress(asyncio.CancelledError, ConnectionClosed):
                await asyncio.wait_for(sender, timeout=self.settings.shutdown_grace_seconds)
            await self.services.router.leave(user_id, self)
            metrics.CONNECTIONS.labels(self.PROTOCOL).dec()
            self.outbox.discard()

    def release(self) -> None:
        """Break the references that lead back to this connection (its
        subscribers and its outbox's callbacks), so that reference counting
        frees it with its socket and buffers as soon as it ends. Left to the
        cyclic collector, a thousand closed connections (about 60 objects
        each) made full collections that stopped the loop for over 100 ms
        (docs/notifier.md, Measured)."""
        for subscriber in self.subscribers.values():
            subscriber.stop()
        self.subscribers.clear()
        self.outbox.release()

    def offer(self, delivery: Delivery) -> None:
        """A live event for this connection's user (called by the router)."""
        for subscriber in self.subscribers.values():
            subscriber.offer(delivery)

    def retry_after_ms(self) -> int:
        """How long a client told to go away waits: jittered, so a draining
        instance's clients do not all come back at once."""
        wait = self.settings.retry_after_seconds * (1 + random.random())  # noqa: S311
        return int(wait * 1000)

    def offered_token(self) -> str | None:
        """A token offered as a ``bearer.<jwt>`` subprotocol, if any."""
        request = self.ws.request
        if request is None:
            return None
        for header in request.headers.get_all("Sec-WebSocket-Protocol"):
            for offered in header.split(","):
                offered = offered.strip()
                if offered.startswith(BEARER_PREFIX):
                    return offered[len(BEARER_PREFIX) :]
        return None

    def spend_token(self) -> None:
        """Count a client message against its budget (a bucket of twice the
        rate absorbs bursts)."""
        rate = self.settings.client_messages_per_second
        now = time.monotonic()
        self._tokens = min(2 * rate, self._tokens + (now - self._refilled) * rate)
        self._refilled = now
        if self._tokens < 1:
            raise ProtocolError(self.FLOOD_CODE, "too many messages")
        self._tokens -= 1

    async def _timers(self) -> None:
        """Heartbeats, and the close when the token expires."""
        every = self.settings.heartbeat_seconds
        while True:
            left = self.expires_at - time.time()
            if left <= 0:
                self.expired()
                return
            await asyncio.sleep(min(every, left))
            if self.expires_at - time.time() > 0:
                self.heartbeat()
