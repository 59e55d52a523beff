"""Several notifier instances share users with no coordination: each
subscribes to the subjects of its own connected users only, and a user
connected to two instances gets every event on both."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import httpx
import pytest
from nats.js import JetStreamContext

from murmur_core import subjects
from murmur_devstack import Stack
from murmur_devstack.services import NOTIFIER

from .support import client, publish_post, unique

Token = Callable[[str], str]


@pytest.fixture(scope="module")
async def second_notifier(notifier_stack: Stack, run_dir: Path) -> AsyncIterator[Stack]:
    """One more notifier process, wired to the first one's NATS and cache.

    A stack runs one process per service, so the second instance is a
    one-process stack whose spec takes its wiring from the first."""
    spec = dataclasses.replace(
        NOTIFIER, depends_on=(), env=lambda _own: NOTIFIER.env(notifier_stack.wiring)
    )
    async with Stack(
        run_dir / f"{notifier_stack.run_dir.name}-second",
        services=("notifier",),
        registry={"notifier": spec},
    ) as stack:
        yield stack


async def _notifier_subscriptions(stack: Stack) -> list[list[str]]:
    """The subjects each notifier connection to NATS subscribes to."""
    async with httpx.AsyncClient() as http:
        response = await http.get(
            f"{stack.nats_monitor_url}/connz", params={"subs": "1", "limit": "1024"}
        )
    connections = response.json()["connections"]
    return [
        sorted(c.get("subscriptions_list", [])) for c in connections if c.get("name") == "notifier"
    ]


async def test_instances_subscribe_only_to_their_users_and_share_nothing(
    notifier_stack: Stack, second_notifier: Stack, js: JetStreamContext, token_for: Token
) -> None:
    only_first, only_second, both = unique("ifirst"), unique("isecond"), unique("iboth")
    async with (
        client(notifier_stack, token_for(only_first)) as a,
        client(second_notifier, token_for(only_second)) as b,
        client(notifier_stack, token_for(both)) as both_on_first,
        client(second_notifier, token_for(both)) as both_on_second,
    ):
        clients = (a, b, both_on_first, both_on_second)
        for c in clients:
            await c.expect("ready")
            await c.send(type="subscribe")
            await c.expect("subscribed")

        expected_filters = {
            frozenset({subjects.user_live_filter(only_first), subjects.user_live_filter(both)}),
            frozenset({subjects.user_live_filter(only_second), subjects.user_live_filter(both)}),
        }
        ours = {
            frozenset(s for s in subs if s.startswith(subjects.USER_LIVE_PREFIX))
            for subs in await _notifier_subscriptions(notifier_stack)
        }
        assert ours == expected_filters

        sent = {
            user: [await publish_post(js, user, "author") for _ in range(3)]
            for user in (only_first, only_second, both)
        }
        await asyncio.gather(*(c.events_until(3) for c in clients))
        # A moment for anything misrouted to arrive too.
        await asyncio.sleep(0.2)
        for c in clients:
            await c.send(type="ping", id="p")
            await c.expect("pong")

    assert [e["seq"] for e in a.events] == sent[only_first]
    assert [e["seq"] for e in b.events] == sent[only_second]
    assert [e["seq"] for e in both_on_first.events] == sent[both]
    assert [e["seq"] for e in both_on_second.events] == sent[both]


async def test_a_user_who_leaves_an_instance_is_unsubscribed_there(
    notifier_stack: Stack, second_notifier: Stack, token_for: Token
) -> None:
    user = unique("ileave")
    live = subjects.user_live_filter(user)
    async with client(second_notifier, token_for(user)) as c:
        await c.expect("ready")
        assert any(live in subs for subs in await _notifier_subscriptions(notifier_stack))
    async with asyncio.timeout(5):
        while any(live in subs for subs in await _notifier_subscriptions(notifier_stack)):
            await asyncio.sleep(0.05)
    response = httpx.get(second_notifier.urls()["notifier_metrics"])
    assert 'murmur_notifier_connections{protocol="murmur.v1"} 0.0' in response.text
