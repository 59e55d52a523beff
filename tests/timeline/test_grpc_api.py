"""The TimelineService contract over a real gRPC connection: status codes for
every kind of bad input, deadlines, health and reflection."""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.protobuf.timestamp_pb2 import Timestamp
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from murmur.timeline.v1 import resources_pb2 as res
from murmur.timeline.v1 import timeline_service_pb2 as rpc
from murmur.timeline.v1 import timeline_service_pb2_grpc as rpc_grpc
from murmur_core.ids import new_uuid7
from murmur_timeline.server import TimelineServer
from murmur_timeline.settings import TimelineSettings

INVALID = grpc.StatusCode.INVALID_ARGUMENT


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[TimelineServer]:
    settings = TimelineSettings(
        grpc_host="127.0.0.1",
        grpc_port=0,
        metrics_port=0,
        database_url=f"sqlite:///{tmp_path}/t.db",
        nats_url="",
        max_ciphertext_bytes=1024,
        shutdown_drain_seconds=0,
    )
    timeline = await TimelineServer.start(settings)
    yield timeline
    await timeline.stop()


@pytest.fixture
async def channel(server: TimelineServer) -> AsyncIterator[grpc.aio.Channel]:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as ch:
        yield ch


@pytest.fixture
async def stub(channel: grpc.aio.Channel) -> rpc_grpc.TimelineServiceAsyncStub:
    stub = rpc_grpc.TimelineServiceStub(channel)
    for name in ("alice", "bob"):
        await stub.CreateUser(
            rpc.CreateUserRequest(user_id=name, handle=name, public_key=b"pk"), timeout=5
        )
    return stub


def post_request(**fields: object) -> rpc.CreatePostRequest:
    values: dict[str, object] = {
        "post_id": new_uuid7(),
        "author_id": "alice",
        "audience": res.AUDIENCE_PUBLIC,
        "ciphertext": b"sealed",
        "key_id": "k1",
    }
    values.update(fields)
    return rpc.CreatePostRequest(**values)  # type: ignore[arg-type]


def uuid7_at(unix_seconds: float) -> str:
    ms = int(unix_seconds * 1000)
    tail = int.from_bytes(bytes.fromhex(new_uuid7().replace("-", "")[12:]), "big")
    hexed = f"{(ms << 80) | tail:032x}"
    return f"{hexed[:8]}-{hexed[8:12]}-{hexed[12:16]}-{hexed[16:20]}-{hexed[20:]}"


async def status_of(call: object) -> grpc.StatusCode:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call  # type: ignore[misc]
    return caught.value.code()


@pytest.mark.parametrize(
    ("request_", "message"),
    [
        (rpc.CreateUserRequest(user_id="", handle="x", public_key=b"k"), "user_id"),
        (rpc.CreateUserRequest(user_id="a b", handle="x", public_key=b"k"), "user_id"),
        # "$" alone would let a trailing newline into NATS subjects and keys.
        (rpc.CreateUserRequest(user_id="alice\n", handle="x", public_key=b"k"), "user_id"),
        (rpc.CreateUserRequest(user_id="x" * 65, handle="x", public_key=b"k"), "user_id"),
        (rpc.CreateUserRequest(user_id="carol", handle="Carol!", public_key=b"k"), "handle"),
        (rpc.CreateUserRequest(user_id="carol", handle="carol", public_key=b""), "public_key"),
        (
            rpc.CreateUserRequest(user_id="carol", handle="carol", public_key=b"k" * 2000),
            "public_key",
        ),
    ],
)
async def test_create_user_rejects_bad_input(
    stub: rpc_grpc.TimelineServiceAsyncStub, request_: rpc.CreateUserRequest, message: str
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.CreateUser(request_, timeout=5)
    assert caught.value.code() == INVALID
    assert message in (caught.value.details() or "")


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"post_id": "not-a-uuid"}, "UUIDv7"),
        ({"post_id": "0190a8e2-7c4e-4b8a-9d1e-0a1b2c3d4e5f"}, "UUIDv7"),  # version 4
        ({"post_id": new_uuid7().upper()}, "UUIDv7"),
        ({"post_id": uuid7_at(time.time() + 3600)}, "ahead"),
        ({"post_id": uuid7_at(time.time() - 30 * 86400)}, "behind"),
        ({"author_id": ""}, "author_id"),
        ({"audience": res.AUDIENCE_UNSPECIFIED}, "audience"),
        ({"audience": 7}, "audience"),
        ({"ciphertext": b""}, "ciphertext"),
        ({"ciphertext": b"x" * 1025}, "limit is 1024"),
        ({"key_id": ""}, "key_id"),
        ({"key_id": "k" * 129}, "key_id"),
        ({"reply_to": "nope"}, "reply_to"),
        ({"expires_at": Timestamp(seconds=1)}, "expires_at"),
    ],
)
async def test_create_post_rejects_bad_input(
    stub: rpc_grpc.TimelineServiceAsyncStub, fields: dict[str, object], message: str
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.CreatePost(post_request(**fields), timeout=5)
    assert caught.value.code() == INVALID
    assert message in (caught.value.details() or "")
    page = await stub.GetUserTimeline(
        rpc.GetUserTimelineRequest(author_id="alice", viewer_id="alice"), timeout=5
    )
    assert list(page.posts) == []


async def test_status_codes_for_missing_forbidden_and_conflicting(
    stub: rpc_grpc.TimelineServiceAsyncStub,
) -> None:
    created = await stub.CreatePost(post_request(ciphertext=b"\x00one"), timeout=5)
    post_id = created.post.id
    assert created.created
    retry = await stub.CreatePost(post_request(post_id=post_id, ciphertext=b"\x00one"), timeout=5)
    assert not retry.created
    assert retry.post == created.post
    conflict = stub.CreatePost(post_request(post_id=post_id, ciphertext=b"\x00two"), timeout=5)
    assert await status_of(conflict) == grpc.StatusCode.ALREADY_EXISTS
    delete = stub.DeletePost(rpc.DeletePostRequest(post_id=post_id, viewer_id="bob"), timeout=5)
    assert await status_of(delete) == grpc.StatusCode.PERMISSION_DENIED
    missing = stub.GetUser(rpc.GetUserRequest(user_id="nobody"), timeout=5)
    assert await status_of(missing) == grpc.StatusCode.NOT_FOUND
    self_follow = stub.Follow(rpc.FollowRequest(follower_id="bob", followee_id="bob"), timeout=5)
    assert await status_of(self_follow) == INVALID
    stored = await stub.GetPost(rpc.GetPostRequest(post_id=post_id, viewer_id="bob"), timeout=5)
    assert stored.post.ciphertext == b"\x00one"


@pytest.mark.parametrize("token", ["zzz", "!!!", "a" * 300, "azE6"])
async def test_bad_page_tokens_and_limits_are_invalid(
    stub: rpc_grpc.TimelineServiceAsyncStub, token: str
) -> None:
    call = stub.GetHomeTimeline(
        rpc.GetHomeTimelineRequest(viewer_id="bob", page_token=token), timeout=5
    )
    assert await status_of(call) == INVALID
    for limit in (-1, 101):
        call = stub.GetHomeTimeline(rpc.GetHomeTimelineRequest(viewer_id="bob", limit=limit))
        assert await status_of(call) == INVALID


async def test_pages_carry_tokens_until_the_end(stub: rpc_grpc.TimelineServiceAsyncStub) -> None:
    ids = []
    for _ in range(5):
        ids.append((await stub.CreatePost(post_request(), timeout=5)).post.id)
        await asyncio.sleep(0.002)
    seen: list[str] = []
    token = ""
    while True:
        page = await stub.GetUserTimeline(
            rpc.GetUserTimelineRequest(
                author_id="alice", viewer_id="bob", limit=2, page_token=token
            ),
            timeout=5,
        )
        seen += [p.id for p in page.posts]
        token = page.next_page_token
        if not token:
            break
    assert seen == sorted(ids, reverse=True)


async def test_an_expired_deadline_is_deadline_exceeded(
    stub: rpc_grpc.TimelineServiceAsyncStub,
) -> None:
    call = stub.GetHomeTimeline(rpc.GetHomeTimelineRequest(viewer_id="bob"), timeout=0.000001)
    assert await status_of(call) == grpc.StatusCode.DEADLINE_EXCEEDED


async def test_health_and_reflection(channel: grpc.aio.Channel, server: TimelineServer) -> None:
    health: Any = health_pb2_grpc.HealthStub(channel)  # stubs know only sync channels
    for service in ("", "murmur.timeline.v1.TimelineService"):
        reply = await health.Check(health_pb2.HealthCheckRequest(service=service), timeout=5)
        assert reply.status == health_pb2.HealthCheckResponse.SERVING
    reflection: Any = reflection_pb2_grpc.ServerReflectionStub(channel)  # type: ignore[arg-type]
    responses = reflection.ServerReflectionInfo(
        iter([reflection_pb2.ServerReflectionRequest(list_services="")])
    )
    names = [s.name async for r in responses for s in r.list_services_response.service]
    assert "murmur.timeline.v1.TimelineService" in names
    assert "grpc.health.v1.Health" in names


async def test_stop_flips_health_to_not_serving_first(tmp_path: Path) -> None:
    settings = TimelineSettings(
        grpc_host="127.0.0.1",
        grpc_port=0,
        metrics_port=0,
        database_url=f"sqlite:///{tmp_path}/t.db",
        nats_url="",
        shutdown_drain_seconds=0.5,
    )
    timeline = await TimelineServer.start(settings)
    async with grpc.aio.insecure_channel(f"127.0.0.1:{timeline.port}") as ch:
        health: Any = health_pb2_grpc.HealthStub(ch)
        stopping = asyncio.create_task(timeline.stop())
        await asyncio.sleep(0.2)
        reply = await health.Check(health_pb2.HealthCheckRequest(service=""), timeout=2)
        assert reply.status == health_pb2.HealthCheckResponse.NOT_SERVING
        await stopping


async def test_batch_get_posts_validates_and_enforces_audience(
    stub: rpc_grpc.TimelineServiceAsyncStub,
) -> None:
    private = await stub.CreatePost(post_request(audience=res.AUDIENCE_FOLLOWERS), timeout=5)
    public = await stub.CreatePost(post_request(), timeout=5)
    ids = [private.post.id, public.post.id]
    seen_by_bob = await stub.BatchGetPosts(
        rpc.BatchGetPostsRequest(post_ids=ids, viewer_id="bob"), timeout=5
    )
    assert [p.id for p in seen_by_bob.posts] == [public.post.id]
    await stub.Follow(rpc.FollowRequest(follower_id="bob", followee_id="alice"), timeout=5)
    seen_by_follower = await stub.BatchGetPosts(
        rpc.BatchGetPostsRequest(post_ids=[*ids, *ids], viewer_id="bob"), timeout=5
    )
    assert sorted(p.id for p in seen_by_follower.posts) == sorted(ids)
    for bad in (["nope"], [new_uuid7()] * 1001):
        call = stub.BatchGetPosts(rpc.BatchGetPostsRequest(post_ids=bad, viewer_id="bob"))
        assert await status_of(call) == INVALID
    page = await stub.GetUserTimeline(
        rpc.GetUserTimelineRequest(author_id="alice", viewer_id="bob"), timeout=5
    )
    assert page.full_view is True


async def test_before_id_pages_like_a_page_token(stub: rpc_grpc.TimelineServiceAsyncStub) -> None:
    ids = []
    for _ in range(3):
        ids.append((await stub.CreatePost(post_request(), timeout=5)).post.id)
        await asyncio.sleep(0.002)
    page = await stub.GetUserTimeline(
        rpc.GetUserTimelineRequest(author_id="alice", viewer_id="bob", before_id=ids[2]), timeout=5
    )
    assert [p.id for p in page.posts] == [ids[1], ids[0]]
    both = stub.GetHomeTimeline(
        rpc.GetHomeTimelineRequest(viewer_id="alice", before_id=ids[2], page_token="azE6eA"),
        timeout=5,
    )
    assert await status_of(both) == INVALID
    bad = stub.GetHomeTimeline(rpc.GetHomeTimelineRequest(viewer_id="alice", before_id="x"))
    assert await status_of(bad) == INVALID


async def test_first_home_pages_list_the_viewers_followees(
    stub: rpc_grpc.TimelineServiceAsyncStub,
) -> None:
    await stub.Follow(rpc.FollowRequest(follower_id="bob", followee_id="alice"), timeout=5)
    first = await stub.GetHomeTimeline(rpc.GetHomeTimelineRequest(viewer_id="bob"), timeout=5)
    assert list(first.followee_ids) == ["alice"]
    assert first.followees_complete is True
    later = await stub.GetHomeTimeline(
        rpc.GetHomeTimelineRequest(viewer_id="bob", before_id=new_uuid7()), timeout=5
    )
    assert list(later.followee_ids) == []
    assert later.followees_complete is False


async def test_ciphertext_by_content_address(stub: rpc_grpc.TimelineServiceAsyncStub) -> None:
    request = post_request(audience=res.AUDIENCE_FOLLOWERS, ciphertext=b"sealed-bytes")
    await stub.CreatePost(request)
    address = hashlib.sha256(b"sealed-bytes").digest()
    found = await stub.GetCiphertext(rpc.GetCiphertextRequest(sha256=address))
    assert (found.ciphertext, found.post_id) == (b"sealed-bytes", request.post_id)

    assert await status_of(stub.GetCiphertext(rpc.GetCiphertextRequest(sha256=b"short"))) == INVALID
    missing = rpc.GetCiphertextRequest(sha256=hashlib.sha256(b"other").digest())
    assert await status_of(stub.GetCiphertext(missing)) == grpc.StatusCode.NOT_FOUND
    # Deleted posts take their bytes with them.
    await stub.DeletePost(rpc.DeletePostRequest(post_id=request.post_id, viewer_id="alice"))
    gone = rpc.GetCiphertextRequest(sha256=address)
    assert await status_of(stub.GetCiphertext(gone)) == grpc.StatusCode.NOT_FOUND
