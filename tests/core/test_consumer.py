"""The shared JetStream consumer on a real NATS: a batch's messages with one
order key are handled in stream order, messages with different keys at the
same time, and a failure to settle one message does not stop the others."""

from __future__ import annotations

import asyncio
import secrets
from collections import defaultdict

from nats.aio.msg import Msg

from murmur_core import nats as murmur_nats
from murmur_core.consumer import ConsumerSpec, EventConsumer
from murmur_devstack import Stack

KEYS = ("a", "b", "c", "d")
PER_KEY = 6


def key_of(msg: Msg) -> str:
    return msg.data.decode().split(":")[0]


async def test_one_order_per_key_and_keys_at_once(infra: Stack) -> None:
    nc = await murmur_nats.connect(infra.nats_url, name="consumer-test")
    js = nc.jetstream()
    stream = f"TEST_{secrets.token_hex(4).upper()}"
    subject = f"test.{stream.lower()}"
    await murmur_nats.ensure_stream(js, name=stream, subjects=[f"{subject}.>"], max_age_seconds=600)
    for i in range(PER_KEY):
        for key in KEYS:
            await js.publish(f"{subject}.x", f"{key}:{i}".encode())

    seen: dict[str, list[int]] = defaultdict(list)
    running = 0
    most_at_once = 0
    done = asyncio.Event()

    async def handle(msg: Msg) -> None:
        nonlocal running, most_at_once
        running += 1
        most_at_once = max(most_at_once, running)
        # Later messages of a key finish sooner: only the lane keeps the order.
        key, index = msg.data.decode().split(":")
        await asyncio.sleep(0.02 * (PER_KEY - int(index)) / PER_KEY)
        seen[key].append(int(index))
        running -= 1
        if sum(len(v) for v in seen.values()) == PER_KEY * len(KEYS):
            done.set()

    consumer = EventConsumer(
        nc,
        ConsumerSpec(
            stream=stream,
            subject=f"{subject}.>",
            durable="ordered",
            batch=PER_KEY * len(KEYS),
            concurrency=len(KEYS),
        ),
        handle,
        order_key=key_of,
    )
    consumer.start()
    try:
        async with asyncio.timeout(20):
            await done.wait()
    finally:
        await consumer.stop()
        await js.delete_stream(stream)
        await nc.close()

    assert dict(seen) == {k: list(range(PER_KEY)) for k in KEYS}
    assert most_at_once > 1, "lanes of different keys never ran at the same time"
    assert most_at_once <= len(KEYS)
