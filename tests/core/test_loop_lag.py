"""The event-loop lag gauge sees a loop blocked by synchronous work."""

from __future__ import annotations

import asyncio
import contextlib
import time

from murmur_core.metrics import EVENT_LOOP_LAG, watch_event_loop_lag


async def test_a_blocked_loop_shows_as_lag() -> None:
    watcher = asyncio.create_task(watch_event_loop_lag(interval_seconds=0.05))
    try:
        await asyncio.sleep(0.12)
        assert EVENT_LOOP_LAG._value.get() < 0.1  # an idle loop is on time
        time.sleep(0.3)  # what a CPU-bound handler does to every other request
        await asyncio.sleep(0.01)
        assert EVENT_LOOP_LAG._value.get() >= 0.2
        await asyncio.sleep(0.15)
        assert EVENT_LOOP_LAG._value.get() < 0.1  # and it recovers
    finally:
        watcher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watcher
