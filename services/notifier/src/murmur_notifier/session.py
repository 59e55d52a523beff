"""The native protocol's front-end (``murmur.v1``, protocol.py): a token by
first message or ``bearer.`` subprotocol, refreshable in place; one
subscription per connection; events coalesced into ``events`` frames. What
it shares with graphql-transport-ws (resume, queue, sender, too-slow, drain)
lives in connection.py, subscriber.py and outbox.py."""

from __future__ import annotations

import asyncio

from murmur_core.auth import InvalidToken, Principal
from murmur_notifier import protocol
from murmur_notifier.connection import Connection
from murmur_notifier.errors import ProtocolError
from murmur_notifier.outbox import Outgoing
from murmur_notifier.protocol import Auth, Close, Ping, Subscribe
from murmur_notifier.subscriber import Subscriber

# The key of the one subscription a native connection has.
ONLY = ""


class NativeSubscriber(Subscriber):
    def live_message(self, seq: int) -> bytes:
        return protocol.subscribed(seq)

    def caught_up_message(self, seq: int, replayed: int) -> bytes:
        return protocol.caught_up(seq, replayed)

    def resync_message(self, seq: int) -> bytes:
        return protocol.resync(seq)


class Session(Connection):
    FLOOD_CODE = Close.FLOOD
    PROTOCOL = protocol.SUBPROTOCOL

    @property
    def position(self) -> int:
        """The last event sequence written to this connection."""
        subscriber = self.subscribers.get(ONLY)
        return 0 if subscriber is None else subscriber.position

    # Authentication

    async def authenticate(self) -> Principal:
        token = self.offered_token()
        if token is None:
            try:
                async with asyncio.timeout(self.settings.auth_timeout_seconds):
                    raw = await self.ws.recv()
            except TimeoutError as exc:
                raise ProtocolError(Close.UNAUTHORIZED, "authenticate first") from exc
            message = protocol.parse(raw)
            if not isinstance(message, Auth):
                raise ProtocolError(Close.UNAUTHORIZED, "authenticate first")
            token = message.token
        return self._verify(token)

    def _verify(self, token: str) -> Principal:
        try:
            return self.services.verifier.verify(token)
        except InvalidToken as exc:
            raise ProtocolError(Close.UNAUTHORIZED, str(exc)) from exc

    def welcome(self) -> None:
        self.outbox.send(
            protocol.ready(self.user_id, self.expires_at, self.settings.heartbeat_seconds)
        )

    # Client messages

    def handle(self, raw: str | bytes) -> None:
        message = protocol.parse(raw)
        if isinstance(message, Auth):
            self._refresh(message.token)
        elif isinstance(message, Subscribe):
            self._subscribe(message)
        elif isinstance(message, Ping):
            self.outbox.send(protocol.pong(message.id))

    def _refresh(self, token: str) -> None:
        principal = self._verify(token)
        if principal.user_id != self.user_id:
            raise ProtocolError(Close.FORBIDDEN, "a refreshed token must be for the same user")
        self.expires_at = principal.expires_at
        self.outbox.send(protocol.auth_ok(principal.expires_at))

    def _subscribe(self, subscription: Subscribe) -> None:
        if ONLY in self.subscribers:
            raise ProtocolError(Close.INVALID_MESSAGE, "already subscribed")
        subscriber = NativeSubscriber(self, subscription.kinds, subscription.authors)
        self.subscribers[ONLY] = subscriber
        subscriber.start(subscription.after)

    # Outbound

    def frames(self, batch: list[Outgoing]) -> list[bytes]:
        # One frame for the run: a join of shared bytes, not a re-encode.
        return [protocol.events_frame([item.encoded for item in batch])]

    def heartbeat(self) -> None:
        self.outbox.send(protocol.heartbeat(self.position))

    def too_slow(self) -> None:
        self.outbox.request_close(
            Close.TOO_SLOW, protocol.close_reason(resume_after=self.position), flush=False
        )

    def go_away(self) -> None:
        retry_after_ms = self.retry_after_ms()
        self.outbox.request_close(
            Close.GOING_AWAY,
            lambda: protocol.close_reason(
                retry_after_ms=retry_after_ms, resume_after=self.position
            ),
            flush=True,
        )

    def expired(self) -> None:
        self.outbox.request_close(Close.UNAUTHORIZED, "token expired", flush=False)
