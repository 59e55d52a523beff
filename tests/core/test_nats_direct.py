"""Direct subscriptions (``Client.subscribe_direct``) on a real NATS: their
messages reach the handler in order with the headers a queued subscription
would see, without a task per subscription; a failing handler loses its own
message only; an unsubscribed one hears nothing more; queued subscriptions
on the same connection work as before."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable

import pytest
from nats.aio.msg import Msg

from murmur_core import nats as murmur_nats
from murmur_core.nats import Client
from murmur_devstack import Stack

HEADERS = {"traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"}


@pytest.fixture
async def nc(infra: Stack) -> AsyncIterator[Client]:
    client = await murmur_nats.connect(infra.nats_url, name="direct-test")
    yield client
    await client.close()


async def _until(condition: Callable[[], bool], seconds: float = 5) -> None:
    async with asyncio.timeout(seconds):
        while not condition():
            await asyncio.sleep(0.01)


async def test_messages_reach_the_handler_as_a_queued_subscription_sees_them(
    nc: Client,
) -> None:
    direct: list[Msg] = []
    queued: list[Msg] = []

    async def collect(msg: Msg) -> None:
        queued.append(msg)

    await nc.subscribe_direct("direct.a.>", direct.append)
    await nc.subscribe("direct.a.>", cb=collect)
    await nc.flush()
    for i in range(50):
        await nc.publish(f"direct.a.{i}", str(i).encode(), headers={**HEADERS, "N": str(i)})
    await nc.publish("direct.a.plain", b"no headers")
    await _until(lambda: len(direct) == 51 and len(queued) == 51)

    def seen(msgs: list[Msg]) -> list[tuple[str, bytes, dict[str, str] | None]]:
        return [(m.subject, m.data, m.headers) for m in msgs]

    assert seen(direct) == seen(queued)
    assert direct[7].headers == {**HEADERS, "N": "7"}
    assert direct[50].headers is None


async def test_a_direct_subscription_has_no_task_of_its_own(nc: Client) -> None:
    before = len(asyncio.all_tasks())
    subscriptions = [
        await nc.subscribe_direct(f"direct.t.{i}", lambda msg: None) for i in range(100)
    ]
    assert len(asyncio.all_tasks()) == before
    queued = await nc.subscribe("direct.t.queued", cb=_ignore)
    assert len(asyncio.all_tasks()) == before + 1  # nats-py's task for a queued one
    for subscription in [*subscriptions, queued]:
        await subscription.unsubscribe()


async def _ignore(msg: Msg) -> None:
    return None


def _drop(msg: Msg) -> None:
    return None


async def test_a_failing_handler_loses_only_its_message(
    nc: Client, caplog: pytest.LogCaptureFixture
) -> None:
    got: list[bytes] = []

    def handle(msg: Msg) -> None:
        if msg.data == b"bad":
            raise ValueError("cannot read it")
        got.append(msg.data)

    await nc.subscribe_direct("direct.f", handle)
    await nc.flush()
    with caplog.at_level(logging.ERROR, logger="murmur_core.nats"):
        for data in (b"one", b"bad", b"two"):
            await nc.publish("direct.f", data)
        await _until(lambda: got == [b"one", b"two"])
    assert "handler failed" in caplog.text
    assert nc.is_connected


async def test_after_unsubscribing_the_handler_hears_nothing(nc: Client) -> None:
    got: list[bytes] = []
    subscription = await nc.subscribe_direct("direct.u", lambda msg: got.append(msg.data))
    await nc.flush()
    await nc.publish("direct.u", b"before")
    await _until(lambda: got == [b"before"])
    await subscription.unsubscribe()
    assert nc._direct == {}
    await nc.publish("direct.u", b"after")
    await nc.flush()
    await asyncio.sleep(0.1)
    assert got == [b"before"]
