"""The SSE fallback: the native protocol's messages as an event stream, with
the token in a header, the subscription in the query and resume by
Last-Event-ID, as EventSource reconnects."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import httpx
import pytest
from nats.js import JetStreamContext

from murmur_core import subjects
from murmur_devstack import DevKeys, Stack

from .sse_support import sse_url, stream
from .support import publish_follow, publish_post, unique

Token = Callable[[str], str]


async def test_events_stream_in_order_with_ids_and_filters(
    notifier_stack: Stack, js: JetStreamContext, token_for: Token
) -> None:
    user = unique("sse")
    params = {"kinds": "post.created", "authors": "alice,bob"}
    async with stream(notifier_stack, token_for(user), params=params) as s:
        assert (await s.expect("ready"))["user_id"] == user
        subscribed = await s.expect("subscribed")
        assert s.last_event_id == str(subscribed["seq"])
        wanted = [await publish_post(js, user, "alice")]
        await publish_post(js, user, "mallory")  # another author
        await publish_follow(js, user, "carol")  # another kind
        wanted.append(await publish_post(js, user, "bob"))
        events = await s.events_until(2)
        assert [e["seq"] for e in events] == wanted
        assert {e["data"]["author_id"] for e in events} == {"alice", "bob"}
        assert s.last_event_id == str(wanted[-1])


async def test_reconnect_with_last_event_id_resumes_without_gap_or_duplicate(
    notifier_stack: Stack, js: JetStreamContext, token_for: Token
) -> None:
    user = unique("sseresume")
    async with stream(notifier_stack, token_for(user)) as s:
        await s.expect("subscribed")
        first = [await publish_post(js, user, "a") for _ in range(3)]
        await s.events_until(3)
        last_id = s.last_event_id
    assert last_id == str(first[-1])
    missed = [await publish_post(js, user, "a") for _ in range(4)]
    # The query's after is older; Last-Event-ID, what EventSource sends, wins.
    params = {"after": str(first[0])}
    async with stream(notifier_stack, token_for(user), params=params, last_id=last_id) as again:
        caught_up = await again.expect("caught_up")
        assert caught_up["replayed"] == 4
        live = await publish_post(js, user, "a")
        events = await again.events_until(5)
    assert [e["seq"] for e in events] == [*missed, live]


@pytest.mark.parametrize(
    ("headers", "params", "status"),
    [
        ({}, {}, 401),
        ({"Authorization": "Bearer not-a-jwt"}, {}, 401),
        ({"Authorization": "Basic dXNlcjpwdw=="}, {}, 401),
        (None, {"kinds": "post.created,user.exploded"}, 400),
        (None, {"after": "-1"}, 400),
        (None, {"after": "soon"}, 400),
        (None, {"authors": "not a user id!"}, 400),
    ],
)
async def test_bad_requests_get_a_problem_and_no_stream(
    notifier_stack: Stack,
    token_for: Token,
    headers: dict[str, str] | None,
    params: dict[str, str],
    status: int,
) -> None:
    if headers is None:
        headers = {"Authorization": f"Bearer {token_for(unique('ssebad'))}"}
    async with httpx.AsyncClient(timeout=5) as http:
        response = await http.get(sse_url(notifier_stack), headers=headers, params=params)
    assert response.status_code == status
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["status"] == status
    if status == 401:
        assert response.headers["www-authenticate"] == "Bearer"


async def test_expiry_ends_the_stream_with_a_close_event(
    notifier_stack: Stack, dev_keys: DevKeys
) -> None:
    async with stream(notifier_stack, dev_keys.token(unique("sseexp"), ttl_seconds=2)) as s:
        await s.expect("subscribed")
        event, data = await s.record(timeout=10)
        while event != "close":
            event, data = await s.record(timeout=10)
        assert data == {"code": 4401, "reason": "token expired"}
        with pytest.raises(EOFError):
            await s.record()


async def test_a_client_that_leaves_is_forgotten(notifier_stack: Stack, token_for: Token) -> None:
    user = unique("sseleave")
    async with stream(notifier_stack, token_for(user)) as s:
        await s.expect("subscribed")
    live = subjects.user_live_filter(user)
    async with httpx.AsyncClient() as http, asyncio.timeout(5):
        while True:
            connz = await http.get(f"{notifier_stack.nats_monitor_url}/connz", params={"subs": "1"})
            subs = [s for c in connz.json()["connections"] for s in c.get("subscriptions_list", [])]
            if live not in subs:
                break
            await asyncio.sleep(0.05)
