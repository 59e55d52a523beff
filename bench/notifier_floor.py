"""The transport's floor for ``make bench-notifier``: how late per-user events
reach a bare NATS subscriber, with no WebSocket server and no client, when
published exactly as in the benchmark's scenarios. Whatever a notifier adds
comes on top of this, so a latency target below it cannot be met by any
server behind NATS on this machine.

The subscriber is a process of its own (``python notifier_floor.py URL N``):
one direct subscription (``murmur_core.nats.Client.subscribe_direct``) to
every live per-user subject; per message it takes the arrival time and the
copy's ``occurred_at`` and nothing else. It prints ``ready``, then, after N
messages (or 60 s without the last), one JSON line of latency percentiles.
"""

from __future__ import annotations

import asyncio
import json
import math
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import benchlib

from murmur.events.v1 import events_pb2
from murmur_core import nats as murmur_nats
from murmur_core import subjects

WAIT_SECONDS = 60.0


@dataclass(frozen=True)
class Floor:
    received: int
    expected: int
    p50_ms: float
    p99_ms: float
    max_ms: float

    def line(self) -> str:
        return (
            f"{self.received:,}/{self.expected:,} at a bare NATS subscriber; latency"
            f" p50 {self.p50_ms:.1f} p99 {self.p99_ms:.1f} max {self.max_ms:.1f} ms"
        )


async def measure_floor(
    nats_url: str, expected: int, publish: Callable[[], Awaitable[None]]
) -> Floor:
    """Run the subscriber, ``publish``, and read what it measured."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        str(Path(__file__)),
        nats_url,
        str(expected),
        stdout=asyncio.subprocess.PIPE,
    )
    assert process.stdout is not None
    try:
        async with asyncio.timeout(30):
            assert (await process.stdout.readline()).strip() == b"ready"
        await publish()
        report = json.loads(await process.stdout.readline())
    finally:
        if process.returncode is None:
            process.kill()
        await process.wait()
    return Floor(expected=expected, **report)


async def _subscribe(nats_url: str, expected: int) -> dict[str, float | int]:
    nc = await murmur_nats.connect(nats_url, name="bench-notifier-floor")
    latencies: list[float] = []
    done = asyncio.Event()

    def arrived(subject: str, headers: dict[str, str] | None, data: bytes) -> None:
        now = time.time_ns()
        sent = events_pb2.UserEvent.FromString(data).occurred_at.ToNanoseconds()
        latencies.append((now - sent) / 1e6)
        if len(latencies) >= expected:
            done.set()

    await nc.subscribe_direct(f"{subjects.USER_LIVE_PREFIX}.>", arrived)
    await nc.flush()
    print("ready", flush=True)
    last = 0
    while not done.is_set():
        try:
            await asyncio.wait_for(done.wait(), WAIT_SECONDS)
        except TimeoutError:
            if len(latencies) == last:
                break  # nothing more is coming
            last = len(latencies)
    await nc.close()
    return {
        "received": len(latencies),
        "p50_ms": benchlib.percentile(latencies, 50),
        "p99_ms": benchlib.percentile(latencies, 99),
        "max_ms": max(latencies, default=math.nan),
    }


if __name__ == "__main__":
    url, count = sys.argv[1], int(sys.argv[2])
    print(json.dumps(asyncio.run(_subscribe(url, count))), flush=True)
