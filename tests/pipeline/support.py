"""Helpers shared by the pipeline tests: clients on a running stack, the
per-user events stored for a user, and waiting for an eventual condition."""

from __future__ import annotations

import asyncio
import secrets

import grpc
from nats.js import JetStreamContext
from nats.js.errors import NotFoundError

from murmur.cache.v1 import cache_service_pb2 as cache_rpc
from murmur.cache.v1 import cache_service_pb2_grpc as cache_grpc
from murmur.events.v1 import events_pb2
from murmur.timeline.v1 import resources_pb2 as res
from murmur.timeline.v1 import timeline_service_pb2 as rpc
from murmur.timeline.v1 import timeline_service_pb2_grpc as rpc_grpc
from murmur_core import subjects
from murmur_core.ids import new_uuid7
from murmur_devstack import Stack


class World:
    def __init__(self, stack: Stack, channels: list[grpc.aio.Channel], js: JetStreamContext):
        self.stack = stack
        self.timeline = rpc_grpc.TimelineServiceStub(channels[0])
        self.cache = cache_grpc.CacheServiceStub(channels[1])
        self.js = js

    async def users(self, *names: str) -> list[str]:
        ids = [f"{n}{secrets.token_hex(3)}" for n in names]
        for user in ids:
            await self.timeline.CreateUser(
                rpc.CreateUserRequest(user_id=user, handle=user.lower(), public_key=b"k")
            )
        return ids

    async def read_home(self, user: str) -> cache_rpc.GetFeedPageResponse:
        return await self.cache.GetFeedPage(
            cache_rpc.GetFeedPageRequest(
                feed=cache_rpc.FeedRef(kind=cache_rpc.FEED_KIND_HOME, owner_id=user),
                viewer_id=user,
                limit=50,
            )
        )

    async def post(self, author: str, **fields: object) -> str:
        post_id = new_uuid7()
        await self.timeline.CreatePost(
            rpc.CreatePostRequest(
                post_id=post_id,
                author_id=author,
                audience=res.AUDIENCE_FOLLOWERS,
                ciphertext=b"sealed",
                key_id="k",
                **fields,  # type: ignore[arg-type]
            )
        )
        return post_id


async def events_for(js: JetStreamContext, user: str) -> list[events_pb2.UserEvent]:
    """Every per-user event stored on the user's subjects, oldest first (read
    message by message from the stream, so nothing is skipped or repeated)."""
    subject = f"murmur.user.{user}.>"
    found: list[events_pb2.UserEvent] = []
    seq = 1
    while True:
        try:
            msg = await js.get_msg(subjects.USER_STREAM, seq=seq, subject=subject, next=True)
        except NotFoundError:
            return found
        found.append(events_pb2.UserEvent.FromString(msg.data or b""))
        seq = (msg.seq or seq) + 1


async def eventually(check: object, timeout: float = 10.0) -> None:
    async with asyncio.timeout(timeout):
        while not await check():  # type: ignore[operator]
            await asyncio.sleep(0.05)
