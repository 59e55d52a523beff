"""The first real path through real processes: clients register, follow, post
sealed bytes and read timelines through the gateway, backed by the timeline
service over gRPC, with every write leaving exactly one event in JetStream."""

from __future__ import annotations

import asyncio
import base64
import secrets
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import grpc
import httpx
import pytest
from nats.js import JetStreamContext

from murmur.events.v1 import events_pb2
from murmur.timeline.v1 import timeline_service_pb2 as rpc
from murmur.timeline.v1 import timeline_service_pb2_grpc as rpc_grpc
from murmur_core import nats as murmur_nats
from murmur_core.ids import new_uuid7
from murmur_core.subjects import EVENTS_STREAM
from murmur_devstack import Stack

SEALED = bytes(range(256)) * 3  # every byte value: nothing may be transcoded


async def stream_events(js: JetStreamContext) -> list[events_pb2.Event]:
    info = await js.stream_info(EVENTS_STREAM)
    events = []
    for seq in range(info.state.first_seq, info.state.last_seq + 1):
        msg = await js.get_msg(EVENTS_STREAM, seq)
        events.append(events_pb2.Event.FromString(msg.data or b""))
    return events


def mentions(event: events_pb2.Event, ids: set[str]) -> bool:
    payload = getattr(event, event.WhichOneof("payload") or "")
    return any(
        getattr(payload, field, None) in ids
        for field in ("user_id", "author_id", "follower_id", "post_id")
    )


@pytest.fixture
async def js(stack: Stack) -> AsyncIterator[JetStreamContext]:
    nc = await murmur_nats.connect(stack.nats_url, name="e2e-test")
    yield nc.jetstream()
    await nc.close()


async def test_register_follow_post_read_delete_through_the_gateway(
    stack: Stack, token_for: Callable[[str], str], js: JetStreamContext
) -> None:
    suffix = secrets.token_hex(4)
    alice, bob, carol = (f"{name}_{suffix}" for name in ("alice", "bob", "carol"))
    auth = {user: {"Authorization": f"Bearer {token_for(user)}"} for user in (alice, bob, carol)}
    async with httpx.AsyncClient(base_url=stack.gateway_url, timeout=10) as http:
        for user in (alice, bob, carol):
            reply = await http.post(
                "/v1/users",
                headers=auth[user],
                json={
                    "handle": user,
                    "public_key": base64.b64encode(b"pk-" + user.encode()).decode(),
                },
            )
            assert reply.status_code == 201, reply.text
        follow = await http.post(f"/v1/users/{alice}/follow", headers=auth[bob])
        assert follow.json() == {"following": True, "created": True}

        post_id = new_uuid7()
        body = {
            "id": post_id,
            "audience": "followers",
            "ciphertext": base64.b64encode(SEALED).decode(),
            "key_id": "alice-key-1",
        }
        created = await http.post("/v1/posts", headers=auth[alice], json=body)
        assert created.status_code == 201, created.text

        home = await http.get("/v1/timelines/home", headers=auth[bob])
        assert home.status_code == 200
        [item] = home.json()["items"]
        assert item["id"] == post_id
        assert base64.b64decode(item["ciphertext"]) == SEALED

        # carol follows nobody: the followers-only post is invisible to her.
        assert (await http.get(f"/v1/posts/{post_id}", headers=auth[carol])).status_code == 404
        carol_view = await http.get(f"/v1/users/{alice}/posts", headers=auth[carol])
        assert carol_view.json()["items"] == []
        assert (await http.get("/v1/timelines/home", headers=auth[carol])).json()["items"] == []

        deleted = await http.delete(f"/v1/posts/{post_id}", headers=auth[alice])
        assert deleted.status_code == 204
        assert (await http.get("/v1/timelines/home", headers=auth[bob])).json()["items"] == []
        assert (await http.get(f"/v1/posts/{post_id}", headers=auth[bob])).status_code == 404

    # Five writes: three registrations, one follow, one post, one delete = six events.
    ids = {alice, bob, carol, post_id}
    async with asyncio.timeout(10):
        while True:
            ours = [e for e in await stream_events(js) if mentions(e, ids)]
            if len(ours) >= 6:
                break
            await asyncio.sleep(0.05)
    await asyncio.sleep(0.3)  # anything extra would have arrived by now
    ours = [e for e in await stream_events(js) if mentions(e, ids)]
    kinds = sorted(e.WhichOneof("payload") or "" for e in ours)
    assert kinds == sorted(
        ["user_created"] * 3 + ["follow_created", "post_created", "post_deleted"]
    )
    assert len({e.event_id for e in ours}) == 6


async def test_one_event_per_write_when_the_timeline_is_killed_mid_way(
    run_dir: Path,
) -> None:
    """SIGKILL the timeline (and its relay) while writes stream in; retried writes
    are idempotent, and the stream ends with exactly one event per user."""
    users = [f"user{i:03d}" for i in range(150)]
    async with Stack(run_dir / f"kill-{secrets.token_hex(3)}", services=("timeline",)) as stack:
        timeline = stack.process("timeline")
        halfway = asyncio.Event()

        async def write_all() -> int:
            retries = 0
            async with grpc.aio.insecure_channel(stack.timeline_addr) as channel:
                stub = rpc_grpc.TimelineServiceStub(channel)
                for done, user in enumerate(users):
                    if done == len(users) // 3:
                        halfway.set()
                    request = rpc.CreateUserRequest(user_id=user, handle=user, public_key=b"k")
                    while True:
                        try:
                            await stub.CreateUser(request, timeout=2)
                            break
                        except grpc.aio.AioRpcError:
                            retries += 1
                            await asyncio.sleep(0.05)
            return retries

        writer = asyncio.create_task(write_all())
        await halfway.wait()
        await timeline.kill()
        await asyncio.sleep(0.3)
        await timeline.start()
        retries = await writer

        nc = await murmur_nats.connect(stack.nats_url, name="e2e-kill")
        try:
            js = nc.jetstream()
            async with asyncio.timeout(15):
                while (await js.stream_info(EVENTS_STREAM)).state.messages < len(users):
                    await asyncio.sleep(0.05)
            await asyncio.sleep(0.5)
            events = await stream_events(js)
        finally:
            await nc.close()
    created = [e.user_created.user_id for e in events]
    assert sorted(created) == users
    assert len({e.event_id for e in events}) == len(users)
    assert retries > 0, "the kill did not interrupt any write; the test proved nothing"
