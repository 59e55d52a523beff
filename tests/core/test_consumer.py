"""The shared JetStream consumer on a real NATS: a batch's messages with one
order key are handled in stream order, messages with different keys at the
same time, and a failure to settle one message does not stop the others."""

from __future__ import annotations

import asyncio
import secrets
from collections import defaultdict
from collections.abc import Awaitable, Callable

from nats.aio.msg import Msg

from murmur_core import nats as murmur_nats
from murmur_core.consumer import ConsumerSpec, EventConsumer
from murmur_devstack import Stack

KEYS = ("a", "b", "c", "d")
PER_KEY = 6
BATCH = 4


def key_of(msg: Msg) -> str:
    return msg.data.decode().split(":")[0]


async def consume(
    infra: Stack,
    payloads: list[bytes],
    handle: Callable[[Msg], Awaitable[None]],
    done: asyncio.Event,
    *,
    batch: int,
    concurrency: int,
    batches_in_flight: int = 1,
) -> None:
    """Publish the payloads to a stream of their own, in order, then run a
    consumer until ``done`` is set."""
    nc = await murmur_nats.connect(infra.nats_url, name="consumer-test")
    js = nc.jetstream()
    stream = f"TEST_{secrets.token_hex(4).upper()}"
    subject = f"test.{stream.lower()}"
    await murmur_nats.ensure_stream(js, name=stream, subjects=[f"{subject}.>"], max_age_seconds=600)
    for payload in payloads:
        await js.publish(f"{subject}.x", payload)
    consumer = EventConsumer(
        nc,
        ConsumerSpec(
            stream=stream,
            subject=f"{subject}.>",
            durable="ordered",
            batch=batch,
            concurrency=concurrency,
            batches_in_flight=batches_in_flight,
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


async def test_one_order_per_key_and_keys_at_once(infra: Stack) -> None:
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

    payloads = [f"{key}:{i}".encode() for i in range(PER_KEY) for key in KEYS]
    await consume(infra, payloads, handle, done, batch=PER_KEY * len(KEYS), concurrency=len(KEYS))

    assert dict(seen) == {k: list(range(PER_KEY)) for k in KEYS}
    assert most_at_once > 1, "lanes of different keys never ran at the same time"
    assert most_at_once <= len(KEYS)


async def test_batches_overlap_and_each_key_keeps_its_order_across_them(infra: Stack) -> None:
    seen: dict[str, list[int]] = defaultdict(list)
    running: list[int] = []  # the batch of each message being handled
    overlapped = False
    done = asyncio.Event()

    async def handle(msg: Msg) -> None:
        nonlocal overlapped
        key, index = msg.data.decode().split(":")
        batch = (msg.metadata.sequence.stream - 1) // BATCH
        running.append(batch)
        overlapped = overlapped or len(set(running)) > 1
        # Earlier messages take longest: a later batch would overtake them
        # unless each key waits for its lane in the batch before.
        await asyncio.sleep(0.01 * (PER_KEY - int(index)))
        running.remove(batch)
        seen[key].append(int(index))
        if sum(len(v) for v in seen.values()) == PER_KEY * len(KEYS):
            done.set()

    # Key after key, so that a key's messages span two batches of four and a
    # batch holds the end of one key and the start of the next.
    payloads = [f"{key}:{i}".encode() for key in KEYS for i in range(PER_KEY)]
    await consume(
        infra, payloads, handle, done, batch=BATCH, concurrency=len(KEYS), batches_in_flight=3
    )

    assert dict(seen) == {k: list(range(PER_KEY)) for k in KEYS}
    assert overlapped, "no two batches were ever handled at the same time"
