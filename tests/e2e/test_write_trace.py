"""One trace per write, across every hop, as an SRE would follow it.

Every service runs as a real process and exports its spans over OTLP to a
receiver this test runs (the real protocol, decoded with the
``opentelemetry-proto`` messages). One post is written through the gateway
and delivered to a follower's WebSocket; the test then walks the spans. The
pipeline's batch span (``process murmur.events.>``) is a trace of its own,
linked to the context of each message it fetched; the work on each message
continues the message's trace, except the fan-out round, which serves several
posts and is a trace of its own linked to each post's processing span:

  gateway  SERVER   POST /v1/posts                      (the trace's root)
  gateway  CLIENT   .../CreatePost
  timeline SERVER   .../CreatePost
  timeline CLIENT   INSERT posts                         (SQL)
  timeline PRODUCER publish murmur.events.post.created   (outbox relay)
  pipeline CONSUMER process murmur.events.post.created   (this message)
      (linked from: pipeline INTERNAL fan out posts
                     -> CLIENT .../AppendPostsToFeeds -> cache SERVER)
  pipeline PRODUCER publish murmur.user
  notifier CONSUMER process murmur.live.user
  notifier PRODUCER send murmur.live.user                (the WebSocket write)
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import secrets
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from websockets.asyncio.client import connect

from murmur_core.ids import new_uuid7
from murmur_devstack import DevKeys, Stack
from murmur_devstack.otlp import OtlpReceiver, ReceivedSpan, otlp_receiver

TRACED = ("timeline", "cache", "pipeline", "gateway", "notifier")
CREATE = "/murmur.timeline.v1.TimelineService/CreatePost"
APPEND = "/murmur.cache.v1.CacheService/AppendToFeeds"
FAN_OUT = "/murmur.cache.v1.CacheService/AppendPostsToFeeds"


@pytest.fixture(scope="module")
async def receiver() -> AsyncIterator[OtlpReceiver]:
    async with otlp_receiver() as running:
        yield running


@pytest.fixture(scope="module")
async def traced_stack(
    run_dir: Path, dev_keys: DevKeys, receiver: OtlpReceiver
) -> AsyncIterator[Stack]:
    env = {name: receiver.env() for name in TRACED}
    async with Stack(
        run_dir / f"traced-{secrets.token_hex(3)}",
        services=("pipeline", "gateway", "notifier"),
        env=env,
        jwt_public_key_files=[dev_keys.public],
    ) as stack:
        yield stack


def _one(spans: list[ReceivedSpan], **match: str) -> ReceivedSpan:
    found = [s for s in spans if all(getattr(s, k) == v for k, v in match.items())]
    assert len(found) == 1, (match, [(s.service, s.kind, s.name) for s in spans])
    return found[0]


def _ancestors(span: ReceivedSpan, by_id: dict[str, ReceivedSpan]) -> list[ReceivedSpan]:
    chain = []
    while span.parent_span_id and span.parent_span_id in by_id:
        span = by_id[span.parent_span_id]
        chain.append(span)
    return chain


async def test_a_post_is_one_trace_from_http_to_the_websocket_frame(
    traced_stack: Stack, dev_keys: DevKeys, receiver: OtlpReceiver
) -> None:
    author, reader = f"a{secrets.token_hex(3)}", f"r{secrets.token_hex(3)}"
    auth = {u: {"Authorization": f"Bearer {dev_keys.token(u)}"} for u in (author, reader)}
    async with httpx.AsyncClient(base_url=traced_stack.gateway_url, timeout=10) as http:
        for user in (author, reader):
            body = {"handle": user, "public_key": base64.b64encode(b"pk").decode()}
            assert (await http.post("/v1/users", json=body, headers=auth[user])).is_success
        assert (await http.post(f"/v1/users/{author}/follow", headers=auth[reader])).is_success
        # Reading makes the reader active, so the pipeline fans out to them.
        assert (await http.get("/v1/timelines/home", headers=auth[reader])).is_success

        async with connect(traced_stack.url("notifier"), subprotocols=["murmur.v1"]) as ws:  # type: ignore[list-item]
            await ws.send(json.dumps({"type": "auth", "token": dev_keys.token(reader)}))
            assert json.loads(await ws.recv())["type"] == "ready"
            await ws.send(json.dumps({"type": "subscribe", "kinds": ["post.created"]}))
            assert json.loads(await ws.recv())["type"] == "subscribed"

            post_id = new_uuid7()
            post = {
                "id": post_id,
                "audience": "public",
                "ciphertext": base64.b64encode(os.urandom(64)).decode(),
                "key_id": "k1",
            }
            created = await http.post("/v1/posts", json=post, headers=auth[author])
            assert created.status_code == 201
            trace_id = created.headers["traceparent"].split("-")[1]

            async with asyncio.timeout(15):
                while True:
                    frame = json.loads(await ws.recv())
                    if frame["type"] == "events" and any(
                        e["data"].get("post_id") == post_id for e in frame["events"]
                    ):
                        break

    # Every span asserted below: each service exports in its own batches, so
    # a later hop's spans can arrive before an earlier hop's.
    needed = {
        ("gateway", "SERVER", "POST /v1/posts"),
        ("gateway", "CLIENT", CREATE),
        ("timeline", "SERVER", CREATE),
        ("timeline", "CLIENT", "INSERT posts"),
        ("timeline", "PRODUCER", "publish murmur.events.post.created"),
        ("pipeline", "CONSUMER", "process murmur.events.post.created"),
        ("pipeline", "PRODUCER", "publish murmur.user"),
        ("notifier", "CONSUMER", "process murmur.live.user"),
        ("notifier", "PRODUCER", "send murmur.live.user"),
    }

    def fan_out_round(spans: list[ReceivedSpan]) -> ReceivedSpan | None:
        processed = [
            s
            for s in spans
            if s.trace_id == trace_id
            and s.service == "pipeline"
            and s.name == "process murmur.events.post.created"
        ]
        rounds = [
            s
            for s in spans
            if s.service == "pipeline"
            and s.name == "fan out posts"
            and any((trace_id, p.span_id) in s.links for p in processed)
        ]
        return rounds[0] if rounds else None

    def complete(spans: list[ReceivedSpan]) -> bool:
        mine = [s for s in spans if s.trace_id == trace_id]
        sent = needed <= {(s.service, s.kind, s.name) for s in mine}
        # The gateway's own AppendToFeeds (the author reads their write at
        # once), with its server side.
        calls = {s.span_id for s in mine if s.kind == "CLIENT" and s.name == APPEND}
        served = {s.parent_span_id for s in mine if s.kind == "SERVER" and s.name == APPEND}
        appended = len(calls) == 1 and calls <= served
        batched = any(
            s.service == "pipeline"
            and s.kind == "CONSUMER"
            and any(t == trace_id for t, _ in s.links)
            for s in spans
        )
        round_ = fan_out_round(spans)
        # The round's cache call, with its server side.
        fanned = round_ is not None and any(
            s.kind == "SERVER" and s.name == FAN_OUT and s.trace_id == round_.trace_id
            for s in spans
        )
        return sent and appended and batched and fanned

    spans = await receiver.wait_for(complete, within=20)
    in_trace = [s for s in spans if s.trace_id == trace_id]
    by_id = {s.span_id: s for s in spans}

    # The HTTP span is the root, and its trace is the one the client was told.
    root = _one(in_trace, service="gateway", kind="SERVER")
    assert root.name == "POST /v1/posts"
    assert root.parent_span_id == ""
    assert root.attributes["http.route"] == "/v1/posts"
    assert root.attributes["http.response.status_code"] == 201

    call = _one(in_trace, service="gateway", kind="CLIENT", name=CREATE)
    assert call.parent_span_id == root.span_id
    served = _one(in_trace, service="timeline", kind="SERVER", name=CREATE)
    assert served.parent_span_id == call.span_id

    insert = _one(in_trace, service="timeline", kind="CLIENT", name="INSERT posts")
    assert served in _ancestors(insert, by_id)
    assert insert.attributes["db.system.name"] in ("sqlite", "postgresql")
    # Statements travel with placeholders: no ciphertext, no ids.
    assert post_id not in str(insert.attributes)

    published = _one(
        in_trace, service="timeline", kind="PRODUCER", name="publish murmur.events.post.created"
    )
    assert served in _ancestors(published, by_id)
    assert published.attributes["messaging.system"] == "nats"
    assert published.attributes["messaging.destination.name"] == "murmur.events.post.created"

    # The pipeline's batch is a trace of its own, linked to each message...
    batches = [
        s
        for s in spans
        if s.service == "pipeline"
        and s.kind == "CONSUMER"
        and (trace_id, published.span_id) in s.links
    ]
    assert len(batches) == 1, [s.links for s in spans if s.service == "pipeline"]
    assert batches[0].name == "process murmur.events.>"
    assert batches[0].trace_id != trace_id
    # ...and its work on this message continues the post's trace.
    processed = _one(in_trace, service="pipeline", kind="CONSUMER")
    assert processed.name == "process murmur.events.post.created"
    assert processed.parent_span_id == published.span_id
    assert processed.attributes["messaging.operation.type"] == "process"
    assert processed.attributes["messaging.consumer.group.name"] == "pipeline"
    assert not [s for s in in_trace if s.service == "pipeline" and s.kind == "CLIENT"]
    # The fan-out round serves several posts: a trace of its own, linked to
    # each post's processing span, holding the cache call.
    round_ = fan_out_round(spans)
    assert round_ is not None
    assert round_.trace_id != trace_id and round_.parent_span_id == ""
    assert (trace_id, processed.span_id) in round_.links
    assert round_.attributes["murmur.fanout.posts"] >= 1
    fan_out_call = _one(spans, service="pipeline", kind="CLIENT", name=FAN_OUT)
    assert round_ in _ancestors(fan_out_call, by_id)
    served_fan_out = _one(spans, service="cache", kind="SERVER", name=FAN_OUT)
    assert served_fan_out.parent_span_id == fan_out_call.span_id

    fanned = _one(in_trace, service="pipeline", kind="PRODUCER")
    assert fanned.name == "publish murmur.user"
    assert processed in _ancestors(fanned, by_id)

    delivered = _one(in_trace, service="notifier", kind="CONSUMER")
    assert delivered.name == "process murmur.live.user"
    assert delivered.parent_span_id == fanned.span_id
    sent = _one(in_trace, service="notifier", kind="PRODUCER")
    assert sent.name == "send murmur.live.user"
    assert sent.parent_span_id == delivered.span_id
    assert sent.attributes["network.protocol.name"] == "websocket"

    # Nothing a client sent in the clear or any user id is in an attribute.
    for span in in_trace:
        text = str(span.attributes)
        assert post["ciphertext"] not in text
        assert reader not in text and author not in text, (span.name, text)
