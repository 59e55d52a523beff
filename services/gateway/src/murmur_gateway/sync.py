"""Offline sync: what changed in a user's home view since a token.

The changes are the user's own per-user events in JetStream (``MURMUR_USER``,
written by the fan-out pipeline): posts that reached their home feed, posts
deleted from it, follows they made or undid. A token is a position in that
stream, signed for the user, so a phone that was offline for an hour asks
for exactly what it missed, and one offline longer than the stream keeps
events (24 h) is told to start over (410) instead of silently missing some.

With ``wait``, an empty answer is held until something arrives or the wait
ends (long-poll): the user's live subject is subscribed before the stream is
read, so an event between the read and the wait is not missed.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Any

import grpc
from google.protobuf.message import DecodeError
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg

from murmur.cache.v1 import cache_service_pb2 as cache_rpc
from murmur.events.v1 import events_pb2
from murmur.timeline.v1 import resources_pb2 as res
from murmur.timeline.v1 import timeline_service_pb2 as rpc
from murmur_core import subjects
from murmur_core.problems import ProblemError
from murmur_core.user_events import StoredEvent, read_after, stream_bounds
from murmur_gateway.backend import Backend
from murmur_gateway.cursors import CursorSigner, InvalidCursor
from murmur_gateway.documents import Moment, post_doc
from murmur_gateway.reads import FALL_BACK_ON

log = logging.getLogger(__name__)

SCOPE = "sync"


def _expired(detail: str) -> ProblemError:
    return ProblemError(
        410,
        "sync-token-expired",
        "Sync token expired",
        f"{detail}; read the home timeline again and start over with GET /v1/sync",
    )


@dataclass(slots=True)
class _Changes:
    post_ids: list[str]
    deleted: list[dict[str, Any]]
    follows: list[dict[str, Any]]


def _collect(stored: list[StoredEvent]) -> _Changes:
    changes = _Changes([], [], [])
    for item in stored:
        try:
            event = events_pb2.UserEvent.FromString(item.data)
        except DecodeError:
            log.warning("skipped an undecodable per-user event", extra={"seq": item.seq})
            continue
        which = event.WhichOneof("payload")
        if which == "post_created":
            changes.post_ids.append(event.post_created.post_id)
        elif which == "post_deleted":
            deleted = event.post_deleted
            if deleted.post_id in changes.post_ids:
                changes.post_ids.remove(deleted.post_id)
            changes.deleted.append(
                {"id": deleted.post_id, "deleted_at": Moment.of(deleted.deleted_at)}
            )
        elif which in ("follow_created", "follow_deleted"):
            follow = getattr(event, which)
            changes.follows.append(
                {
                    "user_id": follow.followee_id,
                    "following": which == "follow_created",
                    "changed_at": Moment.of(event.occurred_at),
                }
            )
    return changes


async def _set_within(event: asyncio.Event, seconds: float) -> bool:
    """Whether ``event`` is set before ``seconds`` have passed."""
    try:
        await asyncio.wait_for(event.wait(), timeout=seconds)
    except TimeoutError:
        return False
    return True


class Sync:
    def __init__(
        self,
        nats: NatsClient,
        backend: Backend,
        tokens: CursorSigner,
        *,
        inline_limit: int,
    ) -> None:
        self._nats = nats
        self._js = nats.jetstream()
        self._backend = backend
        self._tokens = tokens
        self._inline_limit = inline_limit

    def _open(self, viewer: str, token: str) -> int:
        try:
            position = self._tokens.open(SCOPE, viewer, token)
        except InvalidCursor as exc:
            raise ProblemError(400, "invalid-sync-token", "Invalid sync token", str(exc)) from None
        if position is None or len(position) != 8:
            raise ProblemError(
                400, "invalid-sync-token", "Invalid sync token", "not a token this service issued"
            )
        return int.from_bytes(position, "big")

    def _seal(self, viewer: str, seq: int) -> str:
        return self._tokens.seal(SCOPE, viewer, seq.to_bytes(8, "big"))

    async def changes(self, viewer: str, since: str | None, wait: float, limit: int) -> Any:
        """The SyncPage document for ``viewer`` after token ``since``."""
        if since is None:
            # A starting point: everything from now on. The client has just
            # read its home timeline.
            _, last = await stream_bounds(self._js)
            return self._doc(viewer, [], _Changes([], [], []), last, has_more=False)
        after = self._open(viewer, since)
        arrived = asyncio.Event()
        subscription = None
        if wait > 0:

            async def on_live(_: Msg) -> None:
                arrived.set()

            subscription = await self._nats.subscribe(subjects.user_live_filter(viewer), cb=on_live)
        try:
            stored, last = await self._read(viewer, after, limit)
            if not stored and subscription is not None and await _set_within(arrived, wait):
                stored, last = await self._read(viewer, after, limit)
        finally:
            if subscription is not None:
                await subscription.unsubscribe()
        has_more = len(stored) >= limit
        # Read to the stream's end without finding more: the next read may
        # start there. Otherwise it starts after the last event returned.
        position = stored[-1].seq if has_more else max(last, after)
        changes = _collect(stored)
        posts = await self._posts(viewer, changes.post_ids)
        return self._doc(viewer, posts, changes, position, has_more=has_more)

    async def _read(self, viewer: str, after: int, limit: int) -> tuple[list[StoredEvent], int]:
        first, last = await stream_bounds(self._js)
        if after > last:
            raise _expired("the event stream was reset")
        if after + 1 < first:
            raise _expired("the changes since this token are no longer kept")
        return await read_after(self._js, viewer, after, last, limit), last

    async def _posts(self, viewer: str, post_ids: list[str]) -> list[res.Post]:
        """The posts still visible to ``viewer``; one deleted since is left
        out, and its tombstone comes with a later sync."""
        if not post_ids:
            return []
        cache = self._backend.cache
        if cache is not None:
            try:
                reply = await cache.GetPosts(
                    cache_rpc.GetPostsRequest(post_ids=post_ids, viewer_id=viewer)
                )
                return list(reply.posts)
            except grpc.aio.AioRpcError as exc:
                if exc.code() not in FALL_BACK_ON:
                    raise
        found = await self._backend.timeline.BatchGetPosts(
            rpc.BatchGetPostsRequest(post_ids=post_ids, viewer_id=viewer)
        )
        return list(found.posts)

    def _doc(
        self,
        viewer: str,
        posts: list[res.Post],
        changes: _Changes,
        position: int,
        *,
        has_more: bool,
    ) -> dict[str, Any]:
        by_id = {p.id: p for p in posts}
        ordered = [by_id[i] for i in dict.fromkeys(changes.post_ids) if i in by_id]
        return {
            "posts": [post_doc(p, inline_limit=self._inline_limit) for p in ordered],
            "deleted": changes.deleted,
            "follows": changes.follows,
            "next_token": self._seal(viewer, position),
            "has_more": has_more,
        }
