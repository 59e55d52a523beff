"""The notifier over real NATS/JetStream and real WebSocket clients: auth,
ordered live delivery, filters, resume without gap or duplicate, resync past
retention, token refresh and expiry, bad frames, and two instances sharing
users."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable

import httpx
import pytest
from nats.js import JetStreamContext
from websockets.asyncio.client import connect

from murmur_devstack import DevKeys, Stack

from .support import SUBPROTOCOL, client, http_base, publish_follow, publish_post, unique

Token = Callable[[str], str]


async def test_auth_by_first_message_then_live_events_in_order(
    notifier_stack: Stack, js: JetStreamContext, token_for: Token
) -> None:
    user = unique("alice")
    async with client(notifier_stack, token_for(user)) as c:
        ready = await c.expect("ready")
        assert ready["user_id"] == user
        await c.send(type="subscribe")
        start = (await c.expect("subscribed"))["seq"]
        seqs = [await publish_post(js, user, "bob") for _ in range(20)]
        events = await c.events_until(20)
    assert [e["seq"] for e in events] == seqs
    assert all(e["seq"] > start for e in events)
    assert events[0]["kind"] == "post.created"
    assert events[0]["data"]["author_id"] == "bob"


async def test_token_in_subprotocol_is_not_echoed(notifier_stack: Stack, token_for: Token) -> None:
    user = unique("sub")
    async with client(notifier_stack, token_for(user), in_subprotocol=True) as c:
        assert (await c.expect("ready"))["user_id"] == user
        assert c.ws.subprotocol == SUBPROTOCOL


@pytest.mark.parametrize(
    ("first", "reason"),
    [
        ({"type": "auth", "token": "not-a-jwt"}, "malformed token"),
        ({"type": "subscribe"}, "authenticate first"),
    ],
)
async def test_no_valid_token_closes_unauthorized(
    notifier_stack: Stack, first: dict[str, str], reason: str
) -> None:
    async with client(notifier_stack, None) as c:
        await c.send(**first)
        assert await c.closed_with() == (4401, reason)


async def test_expired_token_is_refused(notifier_stack: Stack, dev_keys: DevKeys) -> None:
    token = dev_keys.token(unique("old"), ttl_seconds=-60)
    async with client(notifier_stack, token) as c:
        assert await c.closed_with() == (4401, "token expired")


async def test_filters_by_kind_and_author(
    notifier_stack: Stack, js: JetStreamContext, token_for: Token
) -> None:
    user = unique("filter")
    async with client(notifier_stack, token_for(user)) as c:
        await c.expect("ready")
        await c.send(type="subscribe", kinds=["post.created"], authors=["carol"])
        await c.expect("subscribed")
        await publish_post(js, user, "dave")
        await publish_follow(js, user, "carol")
        wanted = await publish_post(js, user, "carol")
        events = await c.events_until(1)
        await asyncio.sleep(0.2)  # anything filtered wrongly would be here by now
    assert [e["seq"] for e in c.events] == [wanted]
    assert events[0]["data"]["author_id"] == "carol"


async def test_resume_gets_every_missed_event_once_then_live(
    notifier_stack: Stack, js: JetStreamContext, token_for: Token
) -> None:
    user = unique("resume")
    token = token_for(user)
    async with client(notifier_stack, token) as c:
        await c.expect("ready")
        await c.send(type="subscribe")
        await c.expect("subscribed")
        first = [await publish_post(js, user, "x") for _ in range(5)]
        seen = await c.events_until(5)
    last = seen[-1]["seq"]
    assert last == first[-1]

    missed = [await publish_post(js, user, "y") for _ in range(7)]
    for _ in range(3):  # other users' traffic must not show up
        await publish_post(js, unique("other"), "y")
    async with client(notifier_stack, token) as c:
        await c.expect("ready")
        await c.send(type="subscribe", after=last)
        caught_up = await c.expect("caught_up")
        live = await publish_post(js, user, "z")
        events = await c.events_until(8)
    assert caught_up["replayed"] == 7
    assert [e["seq"] for e in events] == [*missed, live]


async def test_resume_from_before_retention_is_told_to_resync(
    notifier_stack: Stack, js: JetStreamContext, token_for: Token
) -> None:
    user = unique("gone")
    lost = await publish_post(js, user, "x")
    kept = await publish_post(js, user, "x")
    # Retention drops the oldest messages first; purging does the same now.
    await js.purge_stream("MURMUR_USER", seq=kept)
    async with client(notifier_stack, token_for(user)) as c:
        await c.expect("ready")
        await c.send(type="subscribe", after=lost - 1)
        resync = await c.expect("resync")
        live = await publish_post(js, user, "x")
        events = await c.events_until(1)
    assert resync["seq"] >= kept
    assert [e["seq"] for e in events] == [live]


async def test_token_refresh_extends_and_expiry_closes(
    notifier_stack: Stack, dev_keys: DevKeys
) -> None:
    user = unique("refresh")
    async with client(notifier_stack, dev_keys.token(user, ttl_seconds=2)) as c:
        await c.expect("ready")
        await c.send(type="auth", token=dev_keys.token(user, ttl_seconds=3))
        ok = await c.expect("auth_ok")
        assert ok["expires_at"] >= int(time.time()) + 2
        started = time.monotonic()
        assert await c.closed_with(timeout=10) == (4401, "token expired")
        assert time.monotonic() - started > 1.5  # the refreshed expiry, not the first


async def test_refresh_for_another_user_is_forbidden(
    notifier_stack: Stack, token_for: Token
) -> None:
    async with client(notifier_stack, token_for(unique("me"))) as c:
        await c.expect("ready")
        await c.send(type="auth", token=token_for(unique("someone")))
        assert await c.closed_with() == (4403, "a refreshed token must be for the same user")


@pytest.mark.parametrize(
    ("frame", "code"),
    [
        ("{not json", 4400),
        (json.dumps({"type": "dance"}), 4400),
        (json.dumps({"type": "subscribe", "kinds": ["user.created"]}), 4400),
        (json.dumps({"type": "subscribe", "after": -1}), 4400),
        (json.dumps({"type": "ping", "id": "x" * 9000}), 1009),
    ],
)
async def test_bad_frames_get_their_close_code(
    notifier_stack: Stack, token_for: Token, frame: str, code: int
) -> None:
    async with client(notifier_stack, token_for(unique("bad"))) as c:
        await c.expect("ready")
        await c.ws.send(frame)
        assert (await c.closed_with())[0] == code
    # The process is still healthy.
    async with httpx.AsyncClient() as http:
        ready = await http.get(http_base(notifier_stack) + "/readyz")
    assert ready.status_code == 200


async def test_a_flood_of_messages_closes_the_connection(
    notifier_stack: Stack, token_for: Token
) -> None:
    async with client(notifier_stack, token_for(unique("flood"))) as c:
        await c.expect("ready")
        for i in range(100):
            await c.send(type="ping", id=str(i))
        assert (await c.closed_with())[0] == 4429


async def test_ping_gets_pong(notifier_stack: Stack, token_for: Token) -> None:
    async with client(notifier_stack, token_for(unique("ping"))) as c:
        await c.expect("ready")
        await c.send(type="ping", id="p1")
        assert await c.expect("pong") == {"type": "pong", "id": "p1"}


async def test_unknown_path_is_404_and_health_answers(notifier_stack: Stack) -> None:
    base = http_base(notifier_stack)
    async with httpx.AsyncClient() as http:
        assert (await http.get(f"{base}/healthz")).status_code == 200
        assert (await http.get(f"{base}/nope")).status_code == 404
    with pytest.raises(Exception, match="404"):
        async with connect(base.replace("http://", "ws://") + "/elsewhere"):
            pass
