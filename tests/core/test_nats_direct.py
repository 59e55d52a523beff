"""Direct subscriptions (``Client.subscribe_direct``), on a real NATS: the
handler gets each message's subject, headers and payload in order, as a
queued subscription would; a handler that raises fails only its message;
after unsubscribing nothing more arrives; other subscriptions on the same
connection are untouched."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from nats.aio.msg import Msg

from murmur_core import nats as murmur_nats
from murmur_core.nats import Client
from murmur_devstack import Stack


@pytest.fixture
async def nc(infra: Stack) -> AsyncIterator[Client]:
    client = await murmur_nats.connect(infra.nats_url, name="direct-test")
    yield client
    await client.close()


Seen = tuple[str, dict[str, str] | None, bytes]


async def test_direct_and_queued_subscriptions_see_the_same_messages(nc: Client) -> None:
    direct: list[Seen] = []
    queued: list[Seen] = []
    done = asyncio.Event()

    def on_direct(subject: str, headers: dict[str, str] | None, data: bytes) -> None:
        if data == b"boom":
            raise ValueError("a handler bug")
        direct.append((subject, headers, data))

    async def on_queued(msg: Msg) -> None:
        queued.append((msg.subject, msg.headers, msg.data))
        if len(queued) == 5:
            done.set()

    sub = await nc.subscribe_direct("direct.test.>", on_direct)
    await nc.subscribe("direct.test.>", cb=on_queued)
    await nc.flush()
    await nc.publish("direct.test.a", b"1", headers={"Nats-Sequence": "7", "x": "y"})
    await nc.publish("direct.test.b", b"2")
    await nc.publish("direct.test.a", b"boom")
    await nc.publish("direct.test.c.d", b"3", headers={"k": "v"})
    await nc.publish("direct.test.a", b"")
    async with asyncio.timeout(5):
        await done.wait()

    expected = [q for q in queued if q[2] != b"boom"]
    assert direct == expected
    assert direct[0] == ("direct.test.a", {"Nats-Sequence": "7", "x": "y"}, b"1")
    assert direct[1] == ("direct.test.b", None, b"2")

    await sub.unsubscribe()
    await nc.publish("direct.test.a", b"after")
    await nc.flush()
    # The queued subscription sees it (so it has arrived); the direct one not.
    async with asyncio.timeout(5):
        while len(queued) < 6:
            await asyncio.sleep(0.01)
    assert queued[-1][2] == b"after"
    assert len(direct) == 4
    assert nc._direct == {}
