"""A burst published with ``publish_many`` arrives as nats-py's ``publish``
would send each message: same subjects, payloads and headers, in order, and
JetStream deduplicates it by ``Nats-Msg-Id`` the same way. What nats-py
refuses, it refuses."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable

import pytest
from nats import errors
from nats.aio.msg import Msg
from nats.js.errors import NotFoundError

from murmur_core import nats as murmur_nats
from murmur_core.nats import Client, header_lines, header_value
from murmur_devstack import Stack


@pytest.fixture
async def nc(infra: Stack) -> AsyncIterator[Client]:
    client = await murmur_nats.connect(infra.nats_url, name="publish-many-test")
    yield client
    await client.close()


async def received(nc: Client, subject: str, count: int, send: Awaitable[None]) -> list[Msg]:
    got: list[Msg] = []
    done = asyncio.Event()

    async def collect(msg: Msg) -> None:
        got.append(msg)
        if len(got) == count:
            done.set()

    sub = await nc.subscribe(subject, cb=collect)
    await nc.flush()
    await send
    async with asyncio.timeout(5):
        await done.wait()
    await sub.unsubscribe()
    return got


def as_seen(msgs: list[Msg]) -> list[tuple[str, bytes, dict[str, str] | None]]:
    return [(m.subject, m.data, m.headers) for m in msgs]


async def test_a_burst_arrives_as_single_publishes_would(nc: Client) -> None:
    shared = {"traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"}
    users = ["ann", "bo", "cy"]

    async def one_by_one() -> None:
        for user in users:
            headers = {**shared, "Nats-Msg-Id": f"evt-1.{user}", "Odd": " line\r\nbreak "}
            await nc.publish(f"burst.a.{user}", user.encode() * 3, headers=headers)
        await nc.publish("burst.a.plain", b"no headers")

    async def in_one_write() -> None:
        lines = header_lines(shared)
        burst = [
            (
                f"burst.b.{user}",
                user.encode() * 3,
                lines
                + b"Nats-Msg-Id: evt-1."
                + header_value(user)
                + b"\r\n"
                + header_lines({"Odd": " line\r\nbreak "}),
            )
            for user in users
        ]
        await nc.publish_many([*burst, ("burst.b.plain", b"no headers", b"")])

    singles = as_seen(await received(nc, "burst.a.>", 4, one_by_one()))
    many = as_seen(await received(nc, "burst.b.>", 4, in_one_write()))
    assert [(s.replace("burst.a.", ""), d, h) for s, d, h in singles] == [
        (s.replace("burst.b.", ""), d, h) for s, d, h in many
    ]
    assert many[0][2] == {**shared, "Nats-Msg-Id": "evt-1.ann", "Odd": "line  break"}
    assert many[3][2] is None


async def test_jetstream_deduplicates_a_burst_by_message_id(nc: Client) -> None:
    js = nc.jetstream()
    with contextlib.suppress(NotFoundError):
        await js.delete_stream("PUBLISH_MANY_TEST")
    await murmur_nats.ensure_stream(
        js, name="PUBLISH_MANY_TEST", subjects=["dedup.>"], max_age_seconds=600
    )
    try:
        burst = [
            (f"dedup.{i}", b"x", header_lines({"Nats-Msg-Id": f"evt-2.{i}"})) for i in range(50)
        ]
        await nc.publish_many(burst)
        await nc.publish_many(burst[10:20])  # a redelivered page, published again
        ack = await js.publish("dedup.last", b"y", headers={"Nats-Msg-Id": "evt-2.last"})
        assert ack.seq == 51  # the burst in order before it, each copy once
        info = await js.stream_info("PUBLISH_MANY_TEST")
        assert info.state.messages == 51
    finally:
        await js.delete_stream("PUBLISH_MANY_TEST")


async def test_what_nats_py_refuses_is_refused(nc: Client) -> None:
    with pytest.raises(errors.BadSubjectError):
        await nc.publish_many([("bad subject", b"x", b"")])
    with pytest.raises(errors.BadSubjectError):
        await nc.publish_many([("inject\r\nPUB x 1", b"x", b"")])
    with pytest.raises(errors.BadSubjectError):
        await nc.publish_many([("", b"x", b"")])
    with pytest.raises(errors.MaxPayloadError):
        await nc.publish_many([("big", b"x" * (nc.max_payload + 1), b"")])
    with pytest.raises(errors.BadHeaderError):
        header_lines({"bad name": "x"})
    # Nothing of a refused burst was sent: the connection is fine.
    got = await received(nc, "after.refusal", 1, nc.publish_many([("after.refusal", b"ok", b"")]))
    assert got[0].data == b"ok"
    await nc.close()
    with pytest.raises(errors.ConnectionClosedError):
        await nc.publish_many([("closed", b"x", b"")])


@pytest.mark.parametrize(
    "value",
    ["user-42_A", "", " padded ", "tab\tinside", "line\r\nbreak", "end\n", "\u2028sep", "é-ü"],
)
def test_header_values_are_written_as_nats_py_writes_them(value: str) -> None:
    # nats-py's own rule: trimmed, then CR and LF as spaces.
    expected = value.strip().replace("\r", " ").replace("\n", " ").encode()
    assert header_value(value) == expected
