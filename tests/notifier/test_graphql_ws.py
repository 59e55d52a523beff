"""graphql-transport-ws on the notifier's endpoint, driven by the stock client
(npm graphql-ws under Node): selected fields only, several subscriptions per
connection, client complete, queries, server pings, errors for bad
documents, a refused token, resume and resync, and drain. The close codes a
stock client never provokes are in test_graphql_ws_closes.py."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable

import pytest
from nats.js import JetStreamContext

from murmur_devstack import Stack

from .graphql_support import stock_clients
from .support import publish_follow, publish_post, unique

Token = Callable[[str], str]

NOTIFIER_ENV = {
    # Server pings often enough to see one.
    "NOTIFIER_HEARTBEAT_SECONDS": "2.0",
    "NOTIFIER_RETRY_AFTER_SECONDS": "3",
}

EVENTS = """
subscription Events($after: Seq, $kinds: [EventKind!], $authors: [ID!]) {
  events(after: $after, kinds: $kinds, authors: $authors) { seq kind authorId }
}
"""


def _has(line: dict[str, object], **fields: object) -> bool:
    return all(line.get(key) == value for key, value in fields.items())


def _seqs(payloads: list[dict[str, object]]) -> list[int]:
    return [p["data"]["events"]["seq"] for p in payloads]  # type: ignore[index]


async def test_stock_client_gets_selected_fields_on_several_subscriptions(
    notifier_stack: Stack, js: JetStreamContext, token_for: Token
) -> None:
    user = unique("gql")
    start = await publish_follow(js, user, "someone")
    before = [
        await publish_post(js, user, "carol", post_id="p1"),
        await publish_post(js, user, "dave", post_id="p2"),
        await publish_follow(js, user, "carol"),
    ]
    async with stock_clients(notifier_stack) as node:
        await node.send(op="connect", client="c", token=token_for(user))
        connected = await node.wait_for(event="connected", client="c")
        assert connected["payload"]["userId"] == user
        # Aliases, a fragment and __typename, resumed after `start`.
        await node.send(
            op="subscribe",
            client="c",
            sub="all",
            query="subscription($after: Seq) { events(after: $after) { __typename seq "
            "k: kind ...post } } fragment post on Event { authorId postId }",
            variables={"after": start},
        )
        await node.send(
            op="subscribe",
            client="c",
            sub="carol",
            query=EVENTS,
            variables={"after": start, "kinds": ["POST_CREATED"], "authors": ["carol"]},
        )
        replayed = await node.nexts("all", 3)
        live = await publish_post(js, user, "carol", post_id="p3")
        everything = await node.nexts("all", 4)
        carol = await node.nexts("carol", 2)

        assert replayed == everything[:3]
        assert _seqs(everything) == [*before, live]
        first = everything[0]["data"]["events"]
        assert list(first) == ["__typename", "seq", "k", "authorId", "postId"]
        assert first == {
            "__typename": "Event",
            "seq": before[0],
            "k": "POST_CREATED",
            "authorId": "carol",
            "postId": "p1",
        }
        follow = everything[2]["data"]["events"]
        assert (follow["k"], follow["authorId"], follow["postId"]) == ("FOLLOW_CREATED", None, None)
        assert carol == [
            {"data": {"events": {"seq": s, "kind": "POST_CREATED", "authorId": "carol"}}}
            for s in (before[0], live)
        ]

        # The client completes "carol": nothing more reaches it, while "all"
        # (same connection, same queue) goes on.
        await node.send(op="unsubscribe", sub="carol")
        await node.wait_for(event="unsubscribed", sub="carol")
        after_complete = [await publish_post(js, user, "carol") for _ in range(2)]
        assert _seqs(await node.nexts("all", 6)) == [*before, live, *after_complete]

        # A query: one next, then the server completes it.
        await node.send(op="subscribe", client="c", sub="me", query="{ viewer { userId } }")
        assert (await node.wait_for(event="next", sub="me"))["payload"] == {
            "data": {"viewer": {"userId": user}}
        }
        await node.wait_for(event="wire", type="complete", id="me")
        await node.wait_for(event="complete", sub="me")
        # Checked on the wire (the client itself ignores a completed id), and
        # after the query's answer, which the server queued after those events.
        carol_on_wire = [m for m in node.seen if _has(m, event="wire", type="next", id="carol")]
        assert len(carol_on_wire) == 2
        assert len(node.results("carol")) == 2

        # The server pings; the client pongs and the connection carries on.
        await node.wait_for(event="ping", client="c", timeout=5)
        later = await publish_post(js, user, "erin")
        assert _seqs(await node.nexts("all", 7))[-1] == later

        await node.send(op="dispose", client="c")
        closed = await node.wait_for(event="closed", client="c")
    assert closed["code"] == 1000


@pytest.mark.parametrize(
    ("query", "variables", "message"),
    [
        ("subscription { events { seq }", None, "Syntax Error"),
        ("subscription { events { nope } }", None, "Cannot query field 'nope' on type 'Event'."),
        ("subscription($a: Seq) { events(after: $a) { seq } }", {"a": -1}, "after must be"),
        ("subscription { events(kinds: [USER_CREATED]) { seq } }", None, "USER_CREATED"),
        ("mutation { x }", None, "mutation"),
    ],
)
async def test_a_bad_document_gets_an_error_not_a_close(
    notifier_stack: Stack,
    js: JetStreamContext,
    token_for: Token,
    query: str,
    variables: dict[str, int] | None,
    message: str,
) -> None:
    user = unique("gqlbad")
    start = await publish_follow(js, user, "someone")
    async with stock_clients(notifier_stack) as node:
        await node.send(op="connect", client="c", token=token_for(user))
        await node.wait_for(event="connected", client="c")
        await node.send(op="subscribe", client="c", sub="bad", query=query, variables=variables)
        error = await node.wait_for(event="error", sub="bad")
        assert message in error["errors"][0]["message"]
        # The connection is still good.
        await node.send(
            op="subscribe", client="c", sub="ok", query=EVENTS, variables={"after": start}
        )
        seq = await publish_post(js, user, "x")
        assert _seqs(await node.nexts("ok", 1)) == [seq]
    assert not [line for line in node.seen if line["event"] == "closed"]


@pytest.mark.parametrize(
    ("token", "reason"),
    [("not-a-jwt", "Forbidden: malformed token"), (None, "Forbidden: connection_init needs")],
)
async def test_stock_client_with_a_bad_or_no_token_is_forbidden(
    notifier_stack: Stack, token: str | None, reason: str
) -> None:
    async with stock_clients(notifier_stack) as node:
        await node.send(op="connect", client="c", token=token)
        closed = await node.wait_for(event="closed", client="c")
    assert closed["code"] == 4403
    assert closed["reason"].startswith(reason)
    assert not [line for line in node.seen if line["event"] == "connected"]


async def test_stock_client_resumes_with_after_without_gap_or_duplicate(
    notifier_stack: Stack, js: JetStreamContext, token_for: Token
) -> None:
    user = unique("gqlresume")
    start = await publish_follow(js, user, "someone")
    first = [await publish_post(js, user, "x") for _ in range(3)]
    async with stock_clients(notifier_stack) as node:
        await node.send(op="connect", client="a", token=token_for(user))
        await node.send(
            op="subscribe", client="a", sub="s", query=EVENTS, variables={"after": start}
        )
        seen = _seqs(await node.nexts("s", 3))
        await node.send(op="dispose", client="a")
        await node.wait_for(event="closed", client="a")
        assert seen == first

        missed = [await publish_post(js, user, "y") for _ in range(4)]
        for _ in range(3):  # other users' events must not show up
            await publish_post(js, unique("other"), "y")
        await node.send(op="connect", client="b", token=token_for(user))
        await node.send(
            op="subscribe", client="b", sub="again", query=EVENTS, variables={"after": seen[-1]}
        )
        await node.nexts("again", 1)
        live = await publish_post(js, user, "z")
        resumed = _seqs(await node.nexts("again", 5))
        await asyncio.sleep(0.2)  # a duplicate would be here by now
        assert _seqs(node.results("again")) == [*missed, live]
    assert resumed == [*missed, live]


async def test_resume_from_before_retention_ends_with_a_resync_error(
    notifier_stack: Stack, js: JetStreamContext, token_for: Token
) -> None:
    user = unique("gqlgone")
    lost = await publish_post(js, user, "x")
    kept = await publish_post(js, user, "x")
    await js.purge_stream("MURMUR_USER", seq=kept)
    async with stock_clients(notifier_stack) as node:
        await node.send(op="connect", client="c", token=token_for(user))
        await node.send(
            op="subscribe", client="c", sub="s", query=EVENTS, variables={"after": lost - 1}
        )
        error = await node.wait_for(event="error", sub="s")
    extensions = error["errors"][0]["extensions"]
    assert extensions["code"] == "RESYNC"
    assert extensions["seq"] >= kept
    assert node.results("s") == []


# Last: it stops the notifier (and starts it again).
async def test_drain_flushes_then_closes_1001_with_retry_and_position(
    notifier_stack: Stack, js: JetStreamContext, token_for: Token
) -> None:
    user = unique("gqldrain")
    start = await publish_follow(js, user, "someone")
    process = notifier_stack.process("notifier")
    async with stock_clients(notifier_stack) as node:
        await node.send(op="connect", client="c", token=token_for(user))
        await node.send(
            op="subscribe", client="c", sub="s", query=EVENTS, variables={"after": start}
        )
        sent = [await publish_post(js, user, "x") for _ in range(4)]
        assert _seqs(await node.nexts("s", 4)) == sent
        assert await process.stop(grace=15) == 0
        closed = await node.wait_for(event="closed", client="c")
    await process.start()
    assert closed["code"] == 1001
    hint = json.loads(closed["reason"])
    assert 3000 <= hint["retry_after_ms"] <= 6000
    assert hint["resume_after"] == sent[-1]
