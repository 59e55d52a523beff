"""Graceful drain on SIGTERM: readiness fails first, open connections get
what was queued for them and then a close telling them to reconnect
elsewhere (with a jittered delay and their resume position); a client that
does so misses nothing."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable

import httpx
from nats.js import JetStreamContext

from murmur_devstack import Stack

from .sse_support import stream
from .support import Client, client, closed_with, http_base, publish_post, unique

Token = Callable[[str], str]


async def _read_until_closed(c: Client) -> tuple[int | None, str]:
    """Keep the events that arrive until the server closes; its code and reason."""

    def keep(raw: str | bytes) -> None:
        message = json.loads(raw)
        if message["type"] == "events":
            c.events.extend(message["events"])

    return await closed_with(c.ws, 10, on_message=keep)


# A drain window long enough to observe, and a known retry hint.
NOTIFIER_ENV = {
    "NOTIFIER_SHUTDOWN_DRAIN_SECONDS": "1.0",
    "NOTIFIER_RETRY_AFTER_SECONDS": "3",
}


async def test_sigterm_drains_connections_with_a_retry_hint_and_loses_nothing(
    notifier_stack: Stack, js: JetStreamContext, token_for: Token
) -> None:
    users = [unique("drain") for _ in range(3)]
    sse_user = unique("draine")
    process = notifier_stack.process("notifier")
    async with (
        client(notifier_stack, token_for(users[0])) as c0,
        client(notifier_stack, token_for(users[1])) as c1,
        client(notifier_stack, token_for(users[2])) as c2,
        stream(notifier_stack, token_for(sse_user)) as sse,
    ):
        clients = (c0, c1, c2)
        for c in clients:
            await c.expect("ready")
            await c.send(type="subscribe")
            await c.expect("subscribed")
        await sse.expect("subscribed")
        sent = {u: [await publish_post(js, u, "author") for _ in range(4)] for u in users}
        sse_sent = [await publish_post(js, sse_user, "author") for _ in range(2)]

        stopping = asyncio.create_task(process.stop(grace=15))
        async with httpx.AsyncClient() as http:
            async with asyncio.timeout(2):
                while (await http.get(f"{http_base(notifier_stack)}/readyz")).status_code != 503:
                    await asyncio.sleep(0.02)
            # Draining: new WebSocket upgrades are refused with a retry hint.
            refused = await http.get(
                f"{http_base(notifier_stack)}/v1/ws",
                headers={"Connection": "Upgrade", "Upgrade": "websocket"},
            )
        assert refused.status_code == 503
        assert int(refused.headers["Retry-After"]) >= 1

        closes = await asyncio.gather(*(_read_until_closed(c) for c in clients))
        await sse.events_until(2)
        event, sse_close = await sse.record(timeout=10)
        assert await stopping == 0, "the notifier did not exit cleanly"

    # The event stream says the same, and sets EventSource's reconnection delay.
    assert [e["seq"] for e in sse.events] == sse_sent
    assert event == "close"
    assert sse_close["code"] == 1001
    assert sse.retry_ms == json.loads(sse_close["reason"])["retry_after_ms"]
    assert sse.last_event_id == str(sse_sent[-1])

    for c, user, (code, reason) in zip(clients, users, closes, strict=True):
        assert code == 1001
        hint = json.loads(reason)
        assert 3000 <= hint["retry_after_ms"] <= 6000
        # Everything queued was flushed before the close, and the position says so.
        assert [e["seq"] for e in c.events] == sent[user]
        assert hint["resume_after"] == sent[user][-1]
    # Jittered, so clients do not all come back at once.
    assert len({json.loads(r)["retry_after_ms"] for _, r in closes}) > 1

    # Events published while it was down reach a client resuming elsewhere
    # (here: the same instance, started again).
    missed = await publish_post(js, users[0], "author")
    await process.start()
    async with client(notifier_stack, token_for(users[0])) as again:
        await again.expect("ready")
        await again.send(type="subscribe", after=sent[users[0]][-1])
        await again.expect("caught_up")
        assert [e["seq"] for e in await again.events_until(1)] == [missed]
