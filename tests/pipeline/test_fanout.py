"""The feed pipeline through real processes: fan-out to active followers only,
per-user events, dead letters, redelivery after a crash, expiry."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import grpc
import pytest
from google.protobuf.timestamp_pb2 import Timestamp
from nats.js import JetStreamContext
from nats.js.errors import NotFoundError

from murmur.cache.v1 import cache_service_pb2 as cache_rpc
from murmur.cache.v1 import cache_service_pb2_grpc as cache_grpc
from murmur.events.v1 import events_pb2
from murmur.timeline.v1 import resources_pb2 as res
from murmur.timeline.v1 import timeline_service_pb2 as rpc
from murmur.timeline.v1 import timeline_service_pb2_grpc as rpc_grpc
from murmur_core import nats as murmur_nats
from murmur_core import subjects
from murmur_core.ids import new_uuid7
from murmur_devstack import Stack


@pytest.fixture(scope="module")
async def stack(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Stack]:
    async with Stack(
        tmp_path_factory.mktemp("pipeline"),
        services=("pipeline",),
        env={
            "pipeline": {"PIPELINE_EXPIRE_EVERY_SECONDS": "0.3", "PIPELINE_ACK_WAIT_SECONDS": "2"}
        },
    ) as running:
        yield running


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


@pytest.fixture
async def world(stack: Stack) -> AsyncIterator[World]:
    nc = await murmur_nats.connect(stack.nats_url, name="pipeline-test")
    async with (
        grpc.aio.insecure_channel(stack.timeline_addr) as timeline,
        grpc.aio.insecure_channel(stack.urls()["cache"]) as cache,
    ):
        yield World(stack, [timeline, cache], nc.jetstream())
    await nc.close()


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


async def test_a_post_reaches_active_followers_feeds_and_no_one_else(world: World) -> None:
    author, active, away, stranger = await world.users("author", "active", "away", "stranger")
    for follower in (active, away):
        await world.timeline.Follow(rpc.FollowRequest(follower_id=follower, followee_id=author))
    for reader in (active, stranger):  # reading records activity and caches the feed
        await world.read_home(reader)
    post_id = await world.post(author)

    async def in_active_feed() -> bool:
        page = await world.read_home(active)
        return post_id in [p.id for p in page.posts] and page.source != cache_rpc.SOURCE_TIMELINE

    await eventually(in_active_feed)
    [event] = [
        e for e in await events_for(world.js, active) if e.WhichOneof("payload") == "post_created"
    ]
    assert event.post_created.post_id == post_id
    assert event.user_id == active
    # The inactive follower had only their own follow event: no fan-out, no post event.
    assert [e.WhichOneof("payload") for e in await events_for(world.js, away)] == ["follow_created"]
    assert await events_for(world.js, stranger) == []
    assert post_id not in [p.id for p in (await world.read_home(stranger)).posts]
    # The inactive follower's feed is built from SQL when they come back.
    assert post_id in [p.id for p in (await world.read_home(away)).posts]


async def test_a_malformed_event_goes_to_the_dead_letter_subject(world: World) -> None:
    marker = secrets.token_hex(8).encode()
    await world.js.publish(
        "murmur.events.post.created",
        b"\xff\xfenot protobuf" + marker,
        headers={"Nats-Msg-Id": marker.decode()},
    )

    async def dead_lettered() -> bool:
        try:
            msg = await world.js.get_last_msg(subjects.DEAD_LETTER_STREAM, "murmur.dlq.pipeline")
        except Exception:
            return False
        return marker in (msg.data or b"")

    await eventually(dead_lettered)


async def test_a_crash_mid_batch_loses_and_duplicates_nothing(world: World) -> None:
    author, reader = await world.users("crashauthor", "crashreader")
    await world.timeline.Follow(rpc.FollowRequest(follower_id=reader, followee_id=author))
    await world.read_home(reader)
    pipeline = world.stack.process("pipeline")
    posts = []
    for i in range(40):
        posts.append(await world.post(author))
        if i == 10:
            await pipeline.kill()
    await pipeline.start()

    async def created_events() -> list[str]:
        found = await events_for(world.js, reader)
        return [e.post_created.post_id for e in found if e.WhichOneof("payload") == "post_created"]

    async def all_notified() -> bool:
        return len(await created_events()) >= len(posts)

    await eventually(all_notified, timeout=30)
    await asyncio.sleep(1.0)  # a duplicate, if any, would have arrived by now
    assert sorted(await created_events()) == sorted(posts)
    page = await world.read_home(reader)
    assert set(posts) <= {p.id for p in page.posts}


async def test_expired_posts_vanish_from_sql_and_feeds(world: World) -> None:
    author, reader = await world.users("ephemeral", "ephreader")
    await world.timeline.Follow(rpc.FollowRequest(follower_id=reader, followee_id=author))
    await world.read_home(reader)
    expires = Timestamp()
    expires.FromDatetime(datetime.now(UTC) + timedelta(seconds=1.5))
    post_id = await world.post(author, expires_at=expires)

    async def fanned_out() -> bool:
        return post_id in [p.id for p in (await world.read_home(reader)).posts]

    await eventually(fanned_out)

    async def gone() -> bool:
        page = await world.read_home(reader)
        return post_id not in [p.id for p in page.posts]

    await eventually(gone, timeout=10)
    with pytest.raises(grpc.aio.AioRpcError) as missing:
        await world.timeline.GetPost(rpc.GetPostRequest(post_id=post_id, viewer_id=author))
    assert missing.value.code() == grpc.StatusCode.NOT_FOUND


async def test_follow_merges_and_delete_and_unfollow_repair_feeds(world: World) -> None:
    author, reader = await world.users("repairauthor", "repairreader")
    posts = [await world.post(author) for _ in range(3)]
    await world.read_home(reader)  # cached (empty) and active
    await world.timeline.Follow(rpc.FollowRequest(follower_id=reader, followee_id=author))

    async def shows(expected: set[str]) -> bool:
        return {p.id for p in (await world.read_home(reader)).posts} == expected

    await eventually(lambda: shows(set(posts)))
    await world.timeline.DeletePost(rpc.DeletePostRequest(post_id=posts[0], viewer_id=author))
    await eventually(lambda: shows(set(posts[1:])))

    async def told_of_delete() -> bool:
        found = await events_for(world.js, reader)
        return any(e.WhichOneof("payload") == "post_deleted" for e in found)

    # The follower is told of the delete before the unfollow makes them a stranger.
    await eventually(told_of_delete)
    await world.timeline.Unfollow(rpc.UnfollowRequest(follower_id=reader, followee_id=author))
    await eventually(lambda: shows(set()))

    async def told_of_unfollow() -> bool:
        found = await events_for(world.js, reader)
        return any(e.WhichOneof("payload") == "follow_deleted" for e in found)

    await eventually(told_of_unfollow)
    kinds = [e.WhichOneof("payload") for e in await events_for(world.js, reader)]
    assert kinds.count("follow_created") == 1
    assert kinds.count("follow_deleted") == 1
