"""Helpers for the notifier tests: per-user events published the way the
pipeline publishes them, and a small client of the native protocol."""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import nats
from nats.js import JetStreamContext
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from murmur.events.v1 import events_pb2
from murmur_core import subjects
from murmur_devstack import Stack

SUBPROTOCOL = "murmur.v1"


def unique(prefix: str) -> str:
    return f"{prefix}{secrets.token_hex(4)}"


@asynccontextmanager
async def jetstream(url: str) -> AsyncIterator[JetStreamContext]:
    nc = await nats.connect(url)
    try:
        yield nc.jetstream()
    finally:
        await nc.close()


async def publish_post(js: JetStreamContext, user: str, author: str, post_id: str = "") -> int:
    """One ``post.created`` copy for ``user``, as the pipeline publishes it;
    returns its stream sequence."""
    event = events_pb2.UserEvent(event_id=secrets.token_hex(8), user_id=user)
    event.post_created.post_id = post_id or secrets.token_hex(8)
    event.post_created.author_id = author
    subject = subjects.user_subject(user, subjects.POST_CREATED)
    ack = await js.publish(
        subject, event.SerializeToString(), headers={"Nats-Msg-Id": f"{event.event_id}.{user}"}
    )
    return int(ack.seq)


async def publish_follow(js: JetStreamContext, user: str, followee: str) -> int:
    event = events_pb2.UserEvent(event_id=secrets.token_hex(8), user_id=user)
    event.follow_created.follower_id = user
    event.follow_created.followee_id = followee
    subject = subjects.user_subject(user, subjects.FOLLOW_CREATED)
    ack = await js.publish(subject, event.SerializeToString())
    return int(ack.seq)


def ws_url(stack: Stack) -> str:
    return stack.urls()["notifier"]


def http_base(stack: Stack) -> str:
    """The notifier's port over plain HTTP (health)."""
    return ws_url(stack).replace("ws://", "http://").removesuffix("/v1/ws")


async def closed_with(
    ws: ClientConnection,
    timeout: float = 5.0,
    *,
    on_message: Callable[[str | bytes], None] | None = None,
) -> tuple[int | None, str]:
    """Read until the server closes (each message to ``on_message``); its
    close code and reason."""
    async with asyncio.timeout(timeout):
        with contextlib.suppress(ConnectionClosed):
            async for raw in ws:
                if on_message is not None:
                    on_message(raw)
    return ws.close_code, ws.close_reason or ""


class Client:
    """A native-protocol client over one connection."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self.events: list[dict[str, Any]] = []

    async def send(self, **message: Any) -> None:
        await self.ws.send(json.dumps(message))

    async def receive(self, timeout: float = 5.0) -> dict[str, Any]:
        async with asyncio.timeout(timeout):
            message: dict[str, Any] = json.loads(await self.ws.recv())
        return message

    async def expect(self, kind: str, timeout: float = 5.0) -> dict[str, Any]:
        """The next message of type ``kind``; events met on the way are kept."""
        async with asyncio.timeout(timeout):
            while True:
                message = await self.receive(timeout)
                if message["type"] == "events":
                    self.events.extend(message["events"])
                if message["type"] == kind:
                    return message

    async def events_until(self, count: int, timeout: float = 5.0) -> list[dict[str, Any]]:
        async with asyncio.timeout(timeout):
            while len(self.events) < count:
                message = await self.receive(timeout)
                if message["type"] == "events":
                    self.events.extend(message["events"])
        return self.events

    async def closed_with(self, timeout: float = 5.0) -> tuple[int | None, str]:
        """Read until the server closes; its close code and reason."""
        return await closed_with(self.ws, timeout)


@asynccontextmanager
async def client(
    stack: Stack, token: str | None, *, in_subprotocol: bool = False
) -> AsyncIterator[Client]:
    """Connected, and authenticated when ``token`` is given (as the first
    message, or offered as a ``bearer.`` subprotocol)."""
    offered = [SUBPROTOCOL]
    if token and in_subprotocol:
        offered.append(f"bearer.{token}")
    async with connect(ws_url(stack), subprotocols=offered) as ws:  # type: ignore[arg-type]
        c = Client(ws)
        if token and not in_subprotocol:
            await c.send(type="auth", token=token)
        yield c
