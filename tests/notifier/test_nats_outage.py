"""Losing NATS loses nothing: the moment the notifier's connection drops,
every client is sent to resume from where it is (live subjects keep nothing
for an absent subscriber), and resuming once NATS is back gives every event
in order. Its own module: it stops the stack's NATS."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable

from murmur_devstack import Stack

from .support import client, jetstream, publish_post, unique

Token = Callable[[str], str]


async def test_a_nats_outage_sends_clients_to_resume_and_they_lose_nothing(
    notifier_stack: Stack, token_for: Token
) -> None:
    users = [unique("outage") for _ in range(2)]
    async with jetstream(notifier_stack.nats_url) as js:
        sent = {u: [await publish_post(js, u, "author")] for u in users}  # before any client
        async with (
            client(notifier_stack, token_for(users[0])) as a,
            client(notifier_stack, token_for(users[1])) as b,
        ):
            for c in (a, b):
                await c.expect("ready")
                await c.send(type="subscribe")
                await c.expect("subscribed")
            for user in users:
                sent[user] += [await publish_post(js, user, "author") for _ in range(3)]
            await asyncio.gather(a.events_until(3), b.events_until(3))
            await notifier_stack.process("nats").stop()
            closes = await asyncio.gather(a.closed_with(timeout=10), b.closed_with(timeout=10))

    for c, user, (code, reason) in zip((a, b), users, closes, strict=True):
        assert code == 1001
        assert json.loads(reason)["resume_after"] == sent[user][-1]
        assert [e["seq"] for e in c.events] == sent[user][1:]

    await notifier_stack.process("nats").start()
    async with jetstream(notifier_stack.nats_url) as js:
        later = [await publish_post(js, users[0], "author") for _ in range(2)]
        async with client(notifier_stack, token_for(users[0])) as again:
            await again.expect("ready", timeout=15)
            await again.send(type="subscribe", after=sent[users[0]][-1])
            caught_up = await again.expect("caught_up", timeout=15)
            assert caught_up["replayed"] == 2
            live = await publish_post(js, users[0], "author")
            events = await again.events_until(3)
    assert [e["seq"] for e in events] == [*later, live]
