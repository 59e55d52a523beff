"""graphql-transport-ws by hand, for what a stock client never does: every
close code of the protocol (4400, 4401, 4408, 4409, 4429), the token in a
subprotocol, ping payloads, and the codes for what the protocol leaves open:
flood (1008), too big (1009), token expiry (4403), too slow (1013)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import time
from collections.abc import Callable

import pytest
from nats.js import JetStreamContext
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed
from websockets.typing import Subprotocol

from murmur_devstack import DevKeys, Stack

from .graphql_support import SUBPROTOCOL, RawClient, raw_client
from .support import publish_follow, publish_post, unique, ws_url

Token = Callable[[str], str]

NOTIFIER_ENV = {
    # connection_init within a second, else 4408.
    "NOTIFIER_AUTH_TIMEOUT_SECONDS": "1.0",
    # Small buffers, so a few hundred events overflow a stalled client.
    "NOTIFIER_QUEUE_MAX_BYTES": "16384",
    "NOTIFIER_SEND_BUFFER_BYTES": "8192",
}


async def test_subscribe_before_ack_is_unauthorized(notifier_stack: Stack) -> None:
    async with raw_client(notifier_stack) as c:
        await c.send(id="1", type="subscribe", payload={"query": "subscription { events { seq } }"})
        assert await c.closed_with() == (4401, "Unauthorized")


async def test_no_connection_init_in_time_closes_4408_and_ping_is_answered_meanwhile(
    notifier_stack: Stack,
) -> None:
    async with raw_client(notifier_stack) as c:
        started = time.monotonic()
        await c.send(type="ping", payload={"n": 1})
        assert await c.receive() == {"type": "pong", "payload": {"n": 1}}
        assert await c.closed_with() == (4408, "Connection initialisation timeout")
    assert 0.8 < time.monotonic() - started < 3


async def test_second_connection_init_closes_4429(notifier_stack: Stack, token_for: Token) -> None:
    async with raw_client(notifier_stack) as c:
        await c.init(token_for(unique("twice")))
        await c.send(type="connection_init", payload={"token": token_for(unique("twice"))})
        assert await c.closed_with() == (4429, "Too many initialisation requests")


async def test_duplicate_subscription_id_closes_4409_but_a_completed_id_is_free(
    notifier_stack: Stack, js: JetStreamContext, token_for: Token
) -> None:
    user = unique("dup")
    start = await publish_follow(js, user, "someone")
    query = "subscription($a: Seq) { events(after: $a) { seq } }"
    subscribe = {"type": "subscribe", "payload": {"query": query, "variables": {"a": start}}}
    async with raw_client(notifier_stack) as c:
        await c.init(token_for(user))
        await c.send(id="a", **subscribe)
        await c.send(id="a", type="complete")
        await c.send(id="a", **subscribe)  # free again after complete
        await c.send(id="b", type="complete")  # unknown ids are ignored
        seq = await publish_post(js, user, "x")
        message = await c.receive()
        assert message == {"id": "a", "type": "next", "payload": {"data": {"events": {"seq": seq}}}}
        await c.send(id="a", **subscribe)
        assert await c.closed_with() == (4409, "Subscriber for a already exists")


async def test_token_in_subprotocol_and_pong_payload(
    notifier_stack: Stack, token_for: Token
) -> None:
    user = unique("gqlsub")
    async with raw_client(notifier_stack, f"bearer.{token_for(user)}") as c:
        assert c.ws.subprotocol == SUBPROTOCOL
        ack = await c.init(None)
        assert ack["payload"]["userId"] == user
        await c.send(type="ping", payload={"t": "x"})
        assert await c.receive() == {"type": "pong", "payload": {"t": "x"}}
        await c.send(type="pong")  # unsolicited pongs are fine
        await c.send(type="ping")
        assert await c.receive() == {"type": "pong"}


@pytest.mark.parametrize(
    ("frame", "code"),
    [
        ("{not json", 4400),
        (json.dumps({"type": "dance"}), 4400),
        (json.dumps({"type": "next", "id": "1", "payload": {}}), 4400),
        (json.dumps({"type": "subscribe", "id": "1"}), 4400),
        (json.dumps({"type": "subscribe", "id": "", "payload": {"query": "{ viewer }"}}), 4400),
        (json.dumps({"type": "complete"}), 4400),
        (json.dumps({"type": "ping", "payload": "x"}), 4400),
        (json.dumps({"type": "ping", "payload": {"x": "y" * 9000}}), 1009),
    ],
)
async def test_invalid_messages_close_4400(
    notifier_stack: Stack, token_for: Token, frame: str, code: int
) -> None:
    async with raw_client(notifier_stack) as c:
        await c.init(token_for(unique("gqlinvalid")))
        await c.ws.send(frame)
        assert (await c.closed_with())[0] == code


async def test_invalid_connection_init_closes_4400(notifier_stack: Stack) -> None:
    async with raw_client(notifier_stack) as c:
        await c.send(type="connection_init", payload="token")
        assert (await c.closed_with())[0] == 4400


async def test_a_flood_of_messages_is_a_policy_violation(
    notifier_stack: Stack, token_for: Token
) -> None:
    async with raw_client(notifier_stack) as c:
        await c.init(token_for(unique("gqlflood")))
        for _ in range(100):
            await c.send(type="ping")
        assert (await c.closed_with())[0] == 1008


async def test_expired_token_closes_4403(notifier_stack: Stack, dev_keys: DevKeys) -> None:
    async with raw_client(notifier_stack) as c:
        await c.init(dev_keys.token(unique("gqlexp"), ttl_seconds=2))
        started = time.monotonic()
        assert await c.closed_with(timeout=10) == (4403, "Forbidden: token expired")
    assert time.monotonic() - started > 1


async def test_slow_client_is_closed_1013_with_its_position_and_resumes_without_gap(
    notifier_stack: Stack, js: JetStreamContext, token_for: Token
) -> None:
    user = unique("gqlslow")
    host, port = ws_url(notifier_stack).removeprefix("ws://").split("/")[0].split(":")
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect((host, int(port)))
    async with connect(
        ws_url(notifier_stack), sock=sock, subprotocols=[Subprotocol(SUBPROTOCOL)], max_queue=1
    ) as ws:
        slow = RawClient(ws)
        await slow.init(token_for(user))
        start = await publish_follow(js, user, "someone")
        # Events of some size: the transport's own buffer (32 KiB) comes first.
        query = "subscription($a: Seq) { events(after: $a) { seq kind eventId postId } }"
        await slow.send(
            id="s", type="subscribe", payload={"query": query, "variables": {"a": start}}
        )
        # One event read makes the subscription live (past its replay) ...
        sent = [await publish_post(js, user, "x")]
        first = await slow.receive()
        assert first["payload"]["data"]["events"]["seq"] == sent[0]
        await asyncio.sleep(0.1)
        # ... then it stops reading; its events pile up.
        for _ in range(16):
            sent += [await publish_post(js, user, "x") for _ in range(50)]
            await asyncio.sleep(0.02)
        received = sent[:1]
        async with asyncio.timeout(20):
            with contextlib.suppress(ConnectionClosed):
                async for raw in ws:  # now read: what was sent, then the close
                    message = json.loads(raw)
                    if message["type"] == "next":
                        received.append(message["payload"]["data"]["events"]["seq"])
    assert ws.close_code == 1013
    resume_after = json.loads(ws.close_reason or "{}")["resume_after"]
    assert received == sent[: len(received)], "delivered out of order or with a gap"
    assert resume_after == received[-1]
    assert 1 < len(received) < len(sent)

    async with raw_client(notifier_stack) as again:
        await again.init(token_for(user))
        await again.send(
            id="s", type="subscribe", payload={"query": query, "variables": {"a": resume_after}}
        )
        rest = [(await again.receive(timeout=10))["payload"]["data"]["events"]["seq"]]
        while len(rest) < len(sent) - len(received):
            rest.append((await again.receive(timeout=10))["payload"]["data"]["events"]["seq"])
    assert received + rest == sent
