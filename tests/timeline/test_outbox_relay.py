"""The outbox relay against a real NATS JetStream: one stream message per write,
in order, deduplicated across re-publishes, with trace context in headers,
and the age of its backlog reported."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest
from nats.aio.client import Client as NatsClient
from nats.js import JetStreamContext
from nats.js.errors import NotFoundError
from opentelemetry import trace
from prometheus_client import REGISTRY

from murmur.events.v1 import events_pb2
from murmur.timeline.v1 import timeline_service_pb2 as rpc
from murmur.timeline.v1 import timeline_service_pb2_grpc as rpc_grpc
from murmur_core import nats as murmur_nats
from murmur_core.subjects import EVENTS_STREAM
from murmur_devstack import Stack
from murmur_timeline.outbox import OutboxRelay
from murmur_timeline.server import TimelineServer
from murmur_timeline.settings import TimelineSettings
from murmur_timeline.storage import TimelineStore, open_database


@pytest.fixture
async def js(infra: Stack) -> AsyncIterator[JetStreamContext]:
    nc: NatsClient = await murmur_nats.connect(infra.nats_url, name="test")
    context = nc.jetstream()
    with contextlib.suppress(NotFoundError):  # absent before the first test
        await context.delete_stream(EVENTS_STREAM)
    yield context
    await nc.close()


async def stream_events(js: JetStreamContext) -> list[tuple[events_pb2.Event, dict[str, str]]]:
    info = await js.stream_info(EVENTS_STREAM)
    found = []
    for seq in range(info.state.first_seq, info.state.last_seq + 1):
        msg = await js.get_msg(EVENTS_STREAM, seq)
        found.append((events_pb2.Event.FromString(msg.data or b""), dict(msg.headers or {})))
    return found


async def wait_for_count(js: JetStreamContext, count: int, timeout: float = 5.0) -> None:
    async with asyncio.timeout(timeout):
        while (await js.stream_info(EVENTS_STREAM)).state.messages < count:
            await asyncio.sleep(0.02)


def settings_for(database_url: str, nats_url: str) -> TimelineSettings:
    return TimelineSettings(
        grpc_host="127.0.0.1",
        grpc_port=0,
        metrics_port=0,
        database_url=database_url,
        nats_url=nats_url,
        outbox_poll_seconds=0.2,
        shutdown_drain_seconds=0,
    )


async def test_each_write_becomes_one_event_in_order_with_trace_headers(
    infra: Stack, js: JetStreamContext, database_url: str
) -> None:
    server = await TimelineServer.start(settings_for(database_url, infra.nats_url))
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
            stub = rpc_grpc.TimelineServiceStub(channel)
            for name in ("alice", "bob"):
                request = rpc.CreateUserRequest(user_id=name, handle=name, public_key=b"k")
                await stub.CreateUser(request, timeout=5)
                await stub.CreateUser(request, timeout=5)  # a retry: no second event
            await stub.Follow(rpc.FollowRequest(follower_id="bob", followee_id="alice"), timeout=5)
            await stub.Unfollow(
                rpc.UnfollowRequest(follower_id="bob", followee_id="alice"), timeout=5
            )
            await wait_for_count(js, 4)
    finally:
        await server.stop()
    events = await stream_events(js)
    kinds = [event.WhichOneof("payload") for event, _ in events]
    assert kinds == ["user_created", "user_created", "follow_created", "follow_deleted"]
    for event, headers in events:
        assert headers["Nats-Msg-Id"] == event.event_id
        assert headers["traceparent"].startswith("00-")
    db = await open_database(database_url)
    try:
        assert await TimelineStore(db).unsent_outbox(10) == []
    finally:
        await db.close()


async def test_republished_events_are_dropped_by_jetstream(
    infra: Stack, js: JetStreamContext, tmp_path: Path
) -> None:
    """A relay that published and died before marking: its successor re-publishes
    the same event ids, and the stream keeps one copy of each."""
    url = f"sqlite:///{tmp_path}/t.db"
    db = await open_database(url)
    store = TimelineStore(db)
    await store.migrate()
    for name in ("alice", "bob", "carol"):
        await store.create_user(name, name, b"k")
    pending = await store.unsent_outbox(10)
    await murmur_nats.ensure_stream(
        js, name=EVENTS_STREAM, subjects=["murmur.events.>"], max_age_seconds=3600
    )
    for event in pending:  # what the dead relay got out
        await js.publish(event.subject, event.payload, headers={"Nats-Msg-Id": event.event_id})
    await db.close()
    server = await TimelineServer.start(settings_for(url, infra.nats_url))
    try:
        async with asyncio.timeout(5):
            while await server.store.unsent_outbox(10):
                await asyncio.sleep(0.05)
    finally:
        await server.stop()
    assert [e.event_id for e, _ in await stream_events(js)] == [e.event_id for e in pending]


async def test_trace_context_of_the_write_reaches_the_event(
    infra: Stack, js: JetStreamContext, tmp_path: Path
) -> None:
    server = await TimelineServer.start(settings_for(f"sqlite:///{tmp_path}/t.db", infra.nats_url))
    tracer = trace.get_tracer("test")
    try:
        with tracer.start_as_current_span("client write") as span:
            await server.store.create_user("alice", "alice", b"k")
            trace_id = format(span.get_span_context().trace_id, "032x")
        await wait_for_count(js, 1)
    finally:
        await server.stop()
    [(_, headers)] = await stream_events(js)
    assert headers["traceparent"].split("-")[1] == trace_id


async def test_only_one_relay_is_active_per_postgres_database(
    infra: Stack, js: JetStreamContext, postgres_schema_url: str
) -> None:
    first = await TimelineServer.start(settings_for(postgres_schema_url, infra.nats_url))
    second = await TimelineServer.start(settings_for(postgres_schema_url, infra.nats_url))
    try:
        for i in range(20):
            server = (first, second)[i % 2]
            await server.store.create_user(f"u{i}", f"u{i}", b"k")
        await wait_for_count(js, 20)
        await asyncio.sleep(0.5)  # a second relay, if active, would add duplicates by now
        events = await stream_events(js)
        assert len(events) == 20
        assert len({e.event_id for e, _ in events}) == 20
        # The standby takes over when the leader goes away.
        await first.stop()
        await second.store.create_user("late", "late", b"k")
        await wait_for_count(js, 21, timeout=10)
    finally:
        await second.stop()


async def test_the_relay_reports_how_long_its_oldest_event_has_waited(
    infra: Stack, js: JetStreamContext, tmp_path: Path
) -> None:
    def age() -> float | None:
        return REGISTRY.get_sample_value("murmur_outbox_oldest_unsent_age_seconds")

    now = [1_000_000]
    db = await open_database(f"sqlite:///{tmp_path}/t.db")
    store = TimelineStore(db, clock=lambda: now[0])
    await store.migrate()
    await murmur_nats.ensure_stream(
        js, name=EVENTS_STREAM, subjects=["murmur.events.>"], max_age_seconds=3600
    )
    relay = OutboxRelay(store, js, batch_size=1, poll_seconds=0.1)
    try:
        await store.create_user("alice", "alice", b"k")
        now[0] += 2_000
        await store.create_user("bob", "bob", b"k")
        now[0] += 5_000
        # Seven seconds after alice's event was written, it is the oldest.
        assert await relay.relay_once() == 1
        assert age() == 7.0
        # Bob's is next, two seconds younger.
        assert await relay.relay_once() == 1
        assert age() == 5.0
        # Caught up.
        assert await relay.relay_once() == 0
        assert age() == 0.0
    finally:
        await db.close()
