"""CPU profiles of a running process's event loop, on demand (pyinstrument).

The profiler is started on the loop's own thread with its async tracking off:
it then samples whatever that thread runs (every task, every callback, the
selector's idle wait), not only the coroutine that asked for the profile,
which would show nothing but a sleep.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Literal

from pyinstrument import Profiler
from pyinstrument.renderers import HTMLRenderer, SpeedscopeRenderer
from pyinstrument.session import Session

# "session" is pyinstrument's own JSON (Session.from_json reads it back), for
# a caller that renders both views from one run.
ProfileFormat = Literal["html", "speedscope", "session"]
PROFILE_FORMATS: tuple[ProfileFormat, ...] = ("html", "speedscope", "session")
MAX_PROFILE_SECONDS = 60.0
# pyinstrument's default: fine enough for millisecond handlers, and at most
# 60,000 samples in the longest profile, well under what its HTML viewer takes.
SAMPLE_INTERVAL_SECONDS = 0.001

log = logging.getLogger(__name__)

# A process-wide lock rather than one per loop: two profiles at once would
# each pay the other's sampling cost and blur both results.
_running = threading.Lock()


@functools.cache
def _render_thread() -> ThreadPoolExecutor:
    """Renders run on a thread of their own, not the loop's default
    executor: an operator profiles a process in trouble, whose default
    executor may be full of stuck work (DNS lookups, blocking calls). One
    thread, as one profile runs at a time; started at the first profile."""
    return ThreadPoolExecutor(max_workers=1, thread_name_prefix="profile-render")


class ProfileBusy(Exception):
    """Another profile of this process is running."""


def profile_running() -> bool:
    return _running.locked()


async def profile_event_loop(seconds: float, fmt: ProfileFormat) -> bytes:
    """Sample the running loop's thread for ``seconds``; the rendered profile.

    Must be awaited on the loop to be profiled. Raises ProfileBusy at once when
    a profile is already running in this process.
    """
    if not _running.acquire(blocking=False):
        raise ProfileBusy
    try:
        log.info("profiling the event loop", extra={"seconds": seconds, "format": fmt})
        profiler = Profiler(interval=SAMPLE_INTERVAL_SECONDS, async_mode="disabled")
        profiler.start(target_description=f"event loop, {seconds:g} s")
        try:
            await asyncio.sleep(seconds)
        finally:
            session = profiler.stop()
        # Rendering a long session takes a while: off the loop, so the
        # service keeps answering meanwhile.
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(_render_thread(), _render, session, fmt)
    finally:
        _running.release()


def _render(session: Session, fmt: ProfileFormat) -> bytes:
    if fmt == "speedscope":
        rendered: str = SpeedscopeRenderer().render(session)
    elif fmt == "session":
        rendered = json.dumps(session.to_json())
    else:
        # Self-contained: pyinstrument inlines its viewer's JS and CSS.
        rendered = HTMLRenderer().render(session)
    return rendered.encode()
