"""Reading one user's stored events from the per-user stream (``MURMUR_USER``):
what the notifier replays on resume and the gateway's offline sync returns.

Positions are the stream's sequence numbers, shared by every user, so one
user's events are read with subject-filtered "next message" lookups.
"""

from __future__ import annotations

from dataclasses import dataclass

from nats.js.client import JetStreamContext
from nats.js.errors import NotFoundError

from murmur_core import subjects


@dataclass(frozen=True, slots=True)
class StoredEvent:
    seq: int
    data: bytes


async def stream_bounds(js: JetStreamContext) -> tuple[int, int]:
    """First and last sequence of the per-user stream (0, 0 before the
    pipeline, which owns it, has created it)."""
    try:
        info = await js.stream_info(subjects.USER_STREAM)
    except NotFoundError:
        return 0, 0
    return int(info.state.first_seq), int(info.state.last_seq)


async def next_event(
    js: JetStreamContext, user_id: str, after: int, last: int
) -> StoredEvent | None:
    """The user's first event with ``after < seq <= last``, if any."""
    try:
        msg = await js.get_msg(
            subjects.USER_STREAM,
            seq=after + 1,
            subject=subjects.user_events_filter(user_id),
            next=True,
        )
    except NotFoundError:
        return None
    if msg.seq is None or msg.seq > last:
        return None
    return StoredEvent(msg.seq, msg.data or b"")


async def read_after(
    js: JetStreamContext, user_id: str, after: int, last: int, limit: int
) -> list[StoredEvent]:
    """The user's events with ``after < seq <= last``, oldest first, at most
    ``limit`` of them."""
    found: list[StoredEvent] = []
    while after < last and len(found) < limit:
        event = await next_event(js, user_id, after, last)
        if event is None:
            break
        found.append(event)
        after = event.seq
    return found
