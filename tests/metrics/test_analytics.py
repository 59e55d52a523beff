"""Analytics against real processes: the timeline writes, its outbox
publishes to a real NATS, the metrics service consumes into a real Redis,
and the counts it serves match the scripted activity exactly, through a
restart and through a full replay of the stream."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest

from murmur.timeline.v1 import resources_pb2 as res
from murmur.timeline.v1 import timeline_service_pb2 as rpc
from murmur.timeline.v1 import timeline_service_pb2_grpc as rpc_grpc
from murmur_core import nats as murmur_nats
from murmur_core.ids import new_uuid7
from murmur_core.subjects import EVENTS_STREAM
from murmur_devstack import DevKeys, Stack
from murmur_metrics.analytics.ingest import DURABLE

pytestmark = pytest.mark.timeout(180)


@pytest.fixture(scope="module")
async def analytics_stack(run_dir: Path, dev_keys: DevKeys) -> AsyncIterator[Stack]:
    """A stack of its own: nobody else's events in its stream."""
    async with Stack(
        run_dir / "metrics-analytics",
        services=("timeline", "metrics"),
        jwt_public_key_files=[dev_keys.public],
    ) as stack:
        yield stack


async def _overview(stack: Stack) -> dict[str, Any]:
    async with httpx.AsyncClient(base_url=stack.url("metrics"), timeout=10) as http:
        reply = await http.get("/api/v1/overview")
        assert reply.status_code == 200, reply.text
        body: dict[str, Any] = reply.json()
        return body


async def _eventually(
    check: Callable[[], Awaitable[dict[str, Any]]],
    matches: Callable[[dict[str, Any]], bool],
    seconds: float = 30.0,
) -> dict[str, Any]:
    deadline = asyncio.get_running_loop().time() + seconds
    while True:
        value = await check()
        if matches(value) or asyncio.get_running_loop().time() > deadline:
            return value
        await asyncio.sleep(0.3)


async def test_counts_match_the_scripted_activity_through_restart_and_replay(
    analytics_stack: Stack, dev_keys: DevKeys
) -> None:
    stack = analytics_stack
    tag = secrets.token_hex(3)
    u1, u2, u3, u4 = (f"u{i}_{tag}" for i in range(1, 5))
    async with grpc.aio.insecure_channel(stack.timeline_addr) as channel:
        timeline = rpc_grpc.TimelineServiceStub(channel)

        async def post(author: str) -> str:
            post_id = new_uuid7()
            await timeline.CreatePost(
                rpc.CreatePostRequest(
                    post_id=post_id,
                    author_id=author,
                    audience=res.AUDIENCE_FOLLOWERS,
                    ciphertext=b"sealed",
                    key_id="k1",
                )
            )
            return post_id

        for user in (u1, u2, u3, u4):
            await timeline.CreateUser(
                rpc.CreateUserRequest(user_id=user, handle=user, public_key=b"pk")
            )
        for follower, followee in ((u2, u1), (u3, u1), (u4, u1), (u3, u2)):
            await timeline.Follow(rpc.FollowRequest(follower_id=follower, followee_id=followee))
        first = await post(u1)  # u1 has 3 followers
        await timeline.Unfollow(rpc.UnfollowRequest(follower_id=u4, followee_id=u1))
        await post(u1)  # now 2
        await post(u2)  # 1
        await timeline.DeletePost(rpc.DeletePostRequest(post_id=first, viewer_id=u1))

        expected_today = {
            "user.created": 4,
            "follow.created": 4,
            "follow.deleted": 1,
            "post.created": 3,
            "post.deleted": 1,
        }

        def complete(o: dict[str, Any]) -> bool:
            return bool(o["analytics"]["today"] == expected_today)

        overview = await _eventually(lambda: _overview(stack), complete)
        analytics = overview["analytics"]
        assert analytics["today"] == expected_today
        assert analytics["active_users"] == {"daily": 4, "weekly": 4, "monthly": 4}
        assert sum(analytics["per_minute"]["series"]["post.created"]) == 3
        assert sum(analytics["per_minute"]["series"]["follow.created"]) == 4
        assert {b["bucket"]: b["posts"] for b in analytics["fanout_sizes"]}["1-10"] == 3
        assert analytics["retention"][0]["users"] == 4
        assert analytics["retention"][0]["retained"] == []

        operator = {"Authorization": f"Bearer {dev_keys.token('ops', roles=('operator',))}"}
        async with httpx.AsyncClient(base_url=stack.url("metrics"), timeout=10) as http:
            authors = (await http.get("/api/v1/analytics/top-authors", headers=operator)).json()
        assert authors["authors"][:2] == [
            {"user_id": u1, "reach": 5, "posts": 2},
            {"user_id": u2, "reach": 1, "posts": 1},
        ]

        # A restart resumes the durable consumer: nothing counted twice.
        await stack["metrics"].restart()
        await asyncio.sleep(2.0)
        assert (await _overview(stack))["analytics"]["today"] == expected_today

        # A consumer deleted while the service is down replays the whole
        # stream when it comes back: every event is seen again, none counted.
        await stack["metrics"].stop()
        nc = await murmur_nats.connect(stack.nats_url, name="analytics-test")
        try:
            await nc.jetstream().delete_consumer(EVENTS_STREAM, DURABLE)
        finally:
            await nc.close()
        await stack["metrics"].start()
        await post(u3)
        expected_today["post.created"] = 4

        overview = await _eventually(lambda: _overview(stack), complete)
        assert overview["analytics"]["today"] == expected_today
        assert overview["analytics"]["active_users"]["daily"] == 4
        # The replayed consumer has caught up: nothing left that could still count.
        consumers = overview["health"]["nats"]["consumers"]
        mine = [c for c in consumers if c["name"] == DURABLE]
        assert mine and mine[0]["pending"] == 0


async def test_operator_views_refuse_everyone_else(
    analytics_stack: Stack, dev_keys: DevKeys
) -> None:
    async with httpx.AsyncClient(base_url=analytics_stack.url("metrics"), timeout=10) as http:
        anonymous = await http.get("/api/v1/analytics/top-authors")
        assert anonymous.status_code == 401
        assert anonymous.headers["content-type"] == "application/problem+json"
        assert anonymous.headers["www-authenticate"] == "Bearer"
        user = {"Authorization": f"Bearer {dev_keys.token('mallory')}"}
        assert (await http.get("/api/v1/analytics/top-authors", headers=user)).status_code == 403
        forged = {"Authorization": "Bearer not.a.token"}
        assert (await http.get("/api/v1/profiles/targets", headers=forged)).status_code == 401
        operator = {"Authorization": f"Bearer {dev_keys.token('ops', roles=('operator',))}"}
        bad = await http.get("/api/v1/analytics/top-authors?days=0", headers=operator)
        assert bad.status_code == 400
        assert bad.json()["type"] == "/problems/invalid-parameter"
        missing = await http.get("/api/v1/profiles/nope", headers=operator)
        assert missing.status_code == 404
