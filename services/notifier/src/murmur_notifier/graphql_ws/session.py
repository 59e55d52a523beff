"""The graphql-transport-ws front-end: stock GraphQL clients (graphql-ws,
Apollo, urql) subscribe to the user's events on the same endpoint as the
native protocol, sharing its resume, queue, sender, too-slow rule and drain
(connection.py, subscriber.py, outbox.py). Any number of subscriptions per
connection (distinct ids), each with its own filters and position.

The token (the same Ed25519 JWT) comes in ``connection_init``'s payload as
``{"token": "<jwt>"}``, else from a ``bearer.<jwt>`` subprotocol offer.

Close codes. The protocol's own, with its meanings:

- 4400 an invalid message (not JSON, unknown type, bad fields)
- 4401 subscribe before connection_ack
- 4403 connection_init refused: no token, or a bad one
- 4408 no connection_init within NOTIFIER_AUTH_TIMEOUT_SECONDS
- 4409 ``Subscriber for <id> already exists``
- 4429 a second connection_init

What the protocol leaves open, in codes that cannot be read as one of its
own (its 44xx meanings are fixed, and the native protocol's 4408 "too slow"
and 4429 "flood" would collide with them):

- 1013 Try Again Later: the client fell too far behind (its queue overflowed).
  Reason ``{"resume_after": N}``: the lowest position of its subscriptions.
  Stock clients retry 1013.
- 1001 Going Away: the instance is draining. Reason ``{"retry_after_ms": M,
  "resume_after": N}``, sent after everything queued. Stock clients retry.
- 4403 Forbidden: token expired: the token ran out. The protocol
  has no way to refresh a token in place, and an expired token is exactly
  what 4403 means at init (credentials refused). Stock clients retry 4403,
  calling connectionParams again, which is where a fresh token comes from;
  4401 would be wrong (it means a client bug, and stock clients give up).
- 1008 Policy Violation: more messages than NOTIFIER_CLIENT_MESSAGES_PER_SECOND.
- 1009 Message Too Big: a message over NOTIFIER_MAX_CLIENT_MESSAGE_BYTES.

Exact positions: select ``seq`` and resume each subscription with ``after``
set to the last ``seq`` it received. A resume position no longer in the
stream ends that subscription with an ``error`` whose extensions say
``{"code": "RESYNC", "seq": N}``: reload, then subscribe with ``after: N``.
"""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime

from murmur_core.auth import InvalidToken, Principal
from murmur_notifier.connection import Connection
from murmur_notifier.errors import ProtocolError
from murmur_notifier.events import Delivery
from murmur_notifier.graphql_ws import messages, operations
from murmur_notifier.graphql_ws.messages import Close, Complete, ConnectionInit, Ping, Subscribe
from murmur_notifier.graphql_ws.operations import EventsOperation, QueryOperation
from murmur_notifier.outbox import Outgoing
from murmur_notifier.subscriber import Subscriber


class GraphqlSubscriber(Subscriber):
    def __init__(
        self, connection: GraphqlConnection, op_id: str, operation: EventsOperation
    ) -> None:
        super().__init__(connection, operation.kinds, operation.authors)
        self._graphql = connection
        self.id = op_id
        self._prefix = messages.id_prefix(op_id)
        self._projector = operation.projector

    def encode(self, delivery: Delivery) -> bytes:
        # The payload is shared by every subscription of the same selection.
        return messages.next_message(self._prefix, self._projector.encode(delivery))

    def resync(self, seq: int) -> None:
        # The protocol cannot say "resumed from elsewhere" inside a stream; an
        # error ends the operation and tells the client where to start again.
        error = {
            "message": "The resume position is no longer in the stream: reload, then "
            f"subscribe again with after: {seq}.",
            "extensions": {"code": "RESYNC", "seq": seq},
        }
        self._graphql.end(self.id, messages.error(self.id, [error]))


class GraphqlConnection(Connection):
    FLOOD_CODE = Close.POLICY_VIOLATION
    PROTOCOL = messages.SUBPROTOCOL

    # Connection initialisation

    async def authenticate(self) -> Principal:
        try:
            async with asyncio.timeout(self.settings.auth_timeout_seconds):
                init = await self._wait_for_init()
        except TimeoutError as exc:
            raise ProtocolError(Close.INIT_TIMEOUT, "Connection initialisation timeout") from exc
        token = (init.payload or {}).get("token")
        if token is None:
            token = self.offered_token()
        if not isinstance(token, str) or not token:
            raise ProtocolError(Close.FORBIDDEN, 'Forbidden: connection_init needs {"token": ...}')
        try:
            return self.services.verifier.verify(token)
        except InvalidToken as exc:
            raise ProtocolError(Close.FORBIDDEN, f"Forbidden: {exc}") from exc

    async def _wait_for_init(self) -> ConnectionInit:
        while True:
            raw = await self.ws.recv()
            self.spend_token()
            message = messages.parse(raw)
            if isinstance(message, ConnectionInit):
                return message
            if isinstance(message, Subscribe):
                raise ProtocolError(Close.UNAUTHORIZED, "Unauthorized")
            if isinstance(message, Ping):
                # Ping may come at any time; the sender does not run yet.
                await self.ws.send(messages.pong(message.payload), text=True)
            # Pong and complete: nothing to answer before the ack.

    def welcome(self) -> None:
        self.outbox.send(
            messages.connection_ack(
                {
                    "userId": self.user_id,
                    "expiresAt": int(self.expires_at),
                    "heartbeatMs": int(self.settings.heartbeat_seconds * 1000),
                }
            )
        )

    # Client messages

    def handle(self, raw: str | bytes) -> None:
        message = messages.parse(raw)
        if isinstance(message, Subscribe):
            self._subscribe(message)
        elif isinstance(message, Complete):
            self._complete(message.id)
        elif isinstance(message, Ping):
            self.outbox.send(messages.pong(message.payload))
        elif isinstance(message, ConnectionInit):
            raise ProtocolError(Close.TOO_MANY_INITS, "Too many initialisation requests")
        # Pong answers our heartbeat ping; dead peers are the WebSocket pings' job.

    def _subscribe(self, message: Subscribe) -> None:
        op_id = message.id
        if op_id in self.subscribers:
            raise ProtocolError(Close.SUBSCRIBER_EXISTS, f"Subscriber for {op_id} already exists")
        prepared = operations.prepare(message.query, message.operation_name, message.variables)
        if isinstance(prepared, list):
            self.outbox.send(messages.error(op_id, [dict(e.formatted) for e in prepared]))
        elif isinstance(prepared, QueryOperation):
            expires = datetime.fromtimestamp(self.expires_at, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
            result = operations.execute_query(prepared, self.user_id, expires)
            payload = json.dumps(result, separators=(",", ":")).encode()
            self.outbox.send(messages.next_message(messages.id_prefix(op_id), payload))
            self.outbox.send(messages.complete(op_id))
        elif len(self.subscribers) >= self.settings.graphql_max_subscriptions:
            limit = self.settings.graphql_max_subscriptions
            error = {"message": f"At most {limit} subscriptions per connection."}
            self.outbox.send(messages.error(op_id, [error]))
        else:
            subscriber = GraphqlSubscriber(self, op_id, prepared)
            self.subscribers[op_id] = subscriber
            subscriber.start(prepared.after)

    def _complete(self, op_id: str) -> None:
        # Unknown ids are ignored: the operation may have ended already.
        subscriber = self.subscribers.pop(op_id, None)
        if subscriber is not None:
            subscriber.stop()

    def end(self, op_id: str, message: bytes) -> None:
        """The server ends an operation with ``message`` (error or complete)."""
        self._complete(op_id)
        self.outbox.send(message)

    # Outbound

    def frames(self, batch: list[Outgoing]) -> list[bytes]:
        # One next message per event: the protocol has no batches.
        return [item.encoded for item in batch]

    def heartbeat(self) -> None:
        self.outbox.send(messages.PING)

    def _resume_after(self) -> int | None:
        """A position safe for every subscription: the lowest."""
        return min((s.position for s in self.subscribers.values()), default=None)

    def too_slow(self) -> None:
        self.outbox.request_close(
            Close.TRY_AGAIN_LATER,
            messages.close_reason(resume_after=self._resume_after()),
            flush=False,
        )

    def go_away(self) -> None:
        retry_after_ms = self.retry_after_ms()
        self.outbox.request_close(
            Close.GOING_AWAY,
            lambda: messages.close_reason(
                retry_after_ms=retry_after_ms, resume_after=self._resume_after()
            ),
            flush=True,
        )

    def expired(self) -> None:
        self.outbox.request_close(Close.FORBIDDEN, "Forbidden: token expired", flush=False)
