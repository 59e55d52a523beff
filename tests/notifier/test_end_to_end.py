"""The whole real-time path through real processes: a follower who has never
read their feed connects to the notifier, which records them as present, so
the pipeline fans the next post out to them and the notifier delivers it;
a follower who is not connected gets no fan-out at all."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING

import grpc
import pytest
from nats.js import JetStreamContext

from murmur.timeline.v1 import resources_pb2 as res
from murmur.timeline.v1 import timeline_service_pb2 as rpc
from murmur_core import subjects
from murmur_core.ids import new_uuid7
from murmur_devstack import Stack

from .support import client

if TYPE_CHECKING:
    # The async stub exists for type checkers only (an aio channel makes it).
    from murmur.timeline.v1.timeline_service_pb2_grpc import (
        TimelineServiceAsyncStub as TimelineStub,
    )
else:
    from murmur.timeline.v1.timeline_service_pb2_grpc import TimelineServiceStub as TimelineStub

Token = Callable[[str], str]


@pytest.fixture(scope="module")
async def timeline(notifier_stack: Stack) -> AsyncIterator[TimelineStub]:
    async with grpc.aio.insecure_channel(notifier_stack.timeline_addr) as channel:
        yield TimelineStub(channel)


async def _stored_for(js: JetStreamContext, user: str) -> int:
    info = await js.stream_info(subjects.USER_STREAM, subjects_filter=f"murmur.user.{user}.>")
    return sum((info.state.subjects or {}).values())


async def test_a_connected_follower_gets_the_post_live_and_an_absent_one_nothing(
    notifier_stack: Stack,
    timeline: TimelineStub,
    js: JetStreamContext,
    token_for: Token,
) -> None:
    author, present, absent = (f"{n}{secrets.token_hex(3)}" for n in ("au", "here", "away"))
    for user in (author, present, absent):
        await timeline.CreateUser(rpc.CreateUserRequest(user_id=user, handle=user, public_key=b"k"))
    for follower in (present, absent):
        await timeline.Follow(rpc.FollowRequest(follower_id=follower, followee_id=author))

    async with client(notifier_stack, token_for(present)) as c:
        await c.expect("ready")
        await c.send(type="subscribe", kinds=["post.created"])
        await c.expect("subscribed")
        # Presence is recorded asynchronously on connect; posts made before
        # it lands are not fanned out to this reader, so post until one is.
        post_ids: list[str] = []
        async with asyncio.timeout(15):
            while not c.events:
                post_id = new_uuid7()
                post_ids.append(post_id)
                await timeline.CreatePost(
                    rpc.CreatePostRequest(
                        post_id=post_id,
                        author_id=author,
                        audience=res.AUDIENCE_FOLLOWERS,
                        ciphertext=b"sealed",
                        key_id="k",
                    )
                )
                try:
                    await c.events_until(1, timeout=1.0)
                except TimeoutError:
                    continue
    [event] = c.events[:1]
    assert event["kind"] == "post.created"
    assert event["data"]["post_id"] in post_ids
    assert event["data"]["author_id"] == author
    # Never connected, never read: no per-user event was even published.
    assert await _stored_for(js, absent) == 1  # only its own follow.created
