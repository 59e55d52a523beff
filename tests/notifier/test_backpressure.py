"""A client that stops reading is closed as too slow with its resume
position, loses nothing when it resumes from there, and delays no one else."""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import time
from collections.abc import Callable

import httpx
from nats.js import JetStreamContext
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed
from websockets.typing import Subprotocol

from murmur_devstack import Stack

from .support import SUBPROTOCOL, Client, client, publish_post, unique, ws_url

# Small buffers, so a few hundred events fill what a stalled client can hold.
NOTIFIER_ENV = {"NOTIFIER_QUEUE_MAX_BYTES": "16384", "NOTIFIER_SEND_BUFFER_BYTES": "8192"}

Token = Callable[[str], str]


async def test_slow_client_is_closed_with_its_position_and_resumes_without_gap(
    notifier_stack: Stack, js: JetStreamContext, token_for: Token
) -> None:
    slow_user, other = unique("slow"), unique("fast")
    host, port = ws_url(notifier_stack).removeprefix("ws://").split("/")[0].split(":")
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect((host, int(port)))
    async with (
        connect(
            ws_url(notifier_stack),
            sock=sock,
            subprotocols=[Subprotocol(SUBPROTOCOL)],
            max_queue=1,
        ) as slow_ws,
        client(notifier_stack, token_for(other)) as fast,
    ):
        slow = Client(slow_ws)
        await slow.send(type="auth", token=token_for(slow_user))
        await slow.expect("ready")
        await slow.send(type="subscribe")
        start = (await slow.expect("subscribed"))["seq"]
        await fast.expect("ready")
        await fast.send(type="subscribe")
        await fast.expect("subscribed")

        # The slow client stops reading; its events pile up (published in
        # bursts the queue holds, so the close comes from the stall).
        sent = []
        for _ in range(12):
            sent += [await publish_post(js, slow_user, "x") for _ in range(50)]
            await asyncio.sleep(0.02)
        started = time.monotonic()
        quick = await publish_post(js, other, "y")
        assert [e["seq"] for e in await fast.events_until(1, timeout=2)] == [quick]
        assert time.monotonic() - started < 1.0, "the slow client delayed another"

        received: list[int] = []
        with contextlib.suppress(ConnectionClosed):
            async for raw in slow_ws:  # now read: what was sent, then the close
                message = json.loads(raw)
                if message["type"] == "events":
                    received += [e["seq"] for e in message["events"]]
    assert slow_ws.close_code == 4408
    resume_after = json.loads(slow_ws.close_reason or "{}")["resume_after"]
    assert received == sent[: len(received)], "delivered out of order or with a gap"
    assert resume_after == (received[-1] if received else start)
    assert 0 < len(received) < len(sent)

    async with client(notifier_stack, token_for(slow_user)) as again:
        await again.expect("ready")
        await again.send(type="subscribe", after=resume_after)
        await again.expect("caught_up")
        rest = await again.events_until(len(sent) - len(received), timeout=10)
    assert received + [e["seq"] for e in rest] == sent
    # What the closed connection had queued is no longer counted.
    metrics_url = notifier_stack.urls()["notifier_metrics"]
    async with httpx.AsyncClient() as http:
        scraped = (await http.get(metrics_url)).text
    assert "\nmurmur_notifier_queued_bytes 0.0\n" in scraped


async def test_other_connections_of_the_user_are_not_closed(
    notifier_stack: Stack, js: JetStreamContext, token_for: Token
) -> None:
    # Two devices of one user; both get every event when both keep up.
    user = unique("twodev")
    async with (
        client(notifier_stack, token_for(user)) as phone,
        client(notifier_stack, token_for(user)) as laptop,
    ):
        for device in (phone, laptop):
            await device.expect("ready")
            await device.send(type="subscribe")
            await device.expect("subscribed")
        seqs = [await publish_post(js, user, "z") for _ in range(5)]
        await asyncio.gather(phone.events_until(5), laptop.events_until(5))
    assert [e["seq"] for e in phone.events] == seqs
    assert [e["seq"] for e in laptop.events] == seqs
