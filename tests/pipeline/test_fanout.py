"""The feed pipeline through real processes: fan-out to active followers only,
per-user events, dead letters, redelivery after a crash, expiry."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import grpc
import httpx
import pytest
from google.protobuf.timestamp_pb2 import Timestamp
from prometheus_client.parser import text_string_to_metric_families

from murmur.cache.v1 import cache_service_pb2 as cache_rpc
from murmur.events.v1 import events_pb2
from murmur.timeline.v1 import timeline_service_pb2 as rpc
from murmur_core import nats as murmur_nats
from murmur_core import subjects
from murmur_core.ids import new_uuid7
from murmur_devstack import Stack

from .support import World, events_for, eventually


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


@pytest.fixture
async def world(stack: Stack) -> AsyncIterator[World]:
    nc = await murmur_nats.connect(stack.nats_url, name="pipeline-test")
    async with (
        grpc.aio.insecure_channel(stack.timeline_addr) as timeline,
        grpc.aio.insecure_channel(stack.urls()["cache"]) as cache,
    ):
        yield World(stack, [timeline, cache], nc.jetstream())
    await nc.close()


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


async def test_each_active_follower_of_a_page_gets_one_event(world: World) -> None:
    # All copies but the last of a page go out without their own ack: every
    # one must still be stored, and once.
    author, *readers = await world.users("pageauthor", *(f"pagereader{i}" for i in range(30)))
    for reader in readers:
        await world.timeline.Follow(rpc.FollowRequest(follower_id=reader, followee_id=author))
        await world.read_home(reader)
    post_id = await world.post(author)

    async def created(reader: str) -> list[str]:
        found = await events_for(world.js, reader)
        return [e.post_created.post_id for e in found if e.WhichOneof("payload") == "post_created"]

    async def everyone_notified() -> bool:
        return all([await created(r) for r in readers])

    await eventually(everyone_notified, timeout=20)
    for reader in readers:
        assert await created(reader) == [post_id]


async def round_sizes(world: World) -> tuple[float, float]:
    """(rounds, posts) the pipeline process has fanned out, from its /metrics."""
    async with httpx.AsyncClient(trust_env=False, timeout=5) as http:
        text = (await http.get(world.stack.url("pipeline_metrics"))).text
    found = {"count": 0.0, "sum": 0.0}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            for part in found:
                if sample.name == f"murmur_pipeline_fanout_round_posts_{part}":
                    found[part] += sample.value
    return found["count"], found["sum"]


async def test_posts_fetched_together_fan_out_together_each_to_its_own_readers(
    world: World,
) -> None:
    authors = await world.users(*(f"roundauthor{i}" for i in range(6)))
    readers = await world.users(*(f"roundreader{i}" for i in range(8)))
    # Overlapping audiences: reader i follows authors i % 6 and (i + 1) % 6,
    # and reader 0 follows everyone; a reader gets each post of a round once.
    follows = {r: {authors[i % 6], authors[(i + 1) % 6]} for i, r in enumerate(readers)}
    follows[readers[0]] = set(authors)
    for reader, followed in follows.items():
        for author in followed:
            await world.timeline.Follow(rpc.FollowRequest(follower_id=reader, followee_id=author))

    async def follows_applied_by_the_cache() -> bool:
        info = await world.js.consumer_info(subjects.EVENTS_STREAM, "cache-invalidation")
        return not info.num_pending and not info.num_ack_pending

    # Each follow drops the follower's cached feed; only a feed cached after
    # the last one shows the fan-out below.
    await eventually(follows_applied_by_the_cache)
    for reader in readers:
        await world.read_home(reader)
    pipeline = world.stack.process("pipeline")
    await pipeline.stop()
    # Written while the pipeline is away, so that it fetches them in one batch.
    posts = {author: await world.post(author) for author in authors}
    ghost = events_pb2.Event(
        event_id=new_uuid7(),
        post_created=events_pb2.PostCreated(post_id=new_uuid7(), author_id="ghost-author"),
    )
    await world.js.publish(
        "murmur.events.post.created",
        ghost.SerializeToString(),
        headers={"Nats-Msg-Id": ghost.event_id},
    )
    await pipeline.start()

    def expected(reader: str) -> set[str]:
        return {posts[a] for a in follows[reader]}

    async def created(reader: str) -> list[str]:
        found = await events_for(world.js, reader)
        return [e.post_created.post_id for e in found if e.WhichOneof("payload") == "post_created"]

    async def everyone_notified() -> bool:
        return all([set(await created(r)) >= expected(r) for r in readers])

    await eventually(everyone_notified, timeout=20)
    await asyncio.sleep(0.5)  # a duplicate or a stray post, if any, would be stored by now
    for reader in readers:
        assert sorted(await created(reader)) == sorted(expected(reader))
        page = await world.read_home(reader)
        assert page.source != cache_rpc.SOURCE_TIMELINE
        assert {p.id for p in page.posts} & set(posts.values()) == expected(reader)
    for author in authors:  # each author is told of their own post
        assert posts[author] in await created(author)

    # The unknown author's event went to the dead letters alone.
    dead = await world.js.get_last_msg(subjects.DEAD_LETTER_STREAM, "murmur.dlq.pipeline")
    assert events_pb2.Event.FromString(dead.data or b"").event_id == ghost.event_id
    # Fewer rounds than posts: they were fanned out together.
    rounds, fanned = await round_sizes(world)
    assert fanned >= len(authors) + 1
    assert rounds < fanned
