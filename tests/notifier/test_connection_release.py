"""A closed connection is freed by reference counting alone, whatever ended
it: nothing of it (session, subscriber, outbox, websockets' connection and
protocol) waits for the cyclic collector, whose full collections of a
thousand closed connections stopped the notifier's loop for over 100 ms.

The notifier runs in this process (against a real NATS) so that the test can
see its heap; the collector is off while connections close."""

from __future__ import annotations

import asyncio
import gc
import json
import weakref
from collections.abc import AsyncIterator, Iterator

import httpx
import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed
from websockets.typing import Subprotocol

from murmur_devstack import DevKeys, Stack
from murmur_notifier.server import NotifierServer
from murmur_notifier.settings import NotifierSettings

NATIVE_CLIENTS = 20
# Types of which no instance may be left to the cyclic collector.
NOTIFIER_TYPES = (
    "websockets.asyncio.server.ServerConnection",
    "websockets.server.ServerProtocol",
    "websockets.asyncio.messages.Assembler",
    "murmur_notifier.session.Session",
    "murmur_notifier.session.NativeSubscriber",
    "murmur_notifier.graphql_ws.session.GraphqlConnection",
    "murmur_notifier.outbox.Outbox",
)


@pytest.fixture
async def notifier(infra: Stack, dev_keys: DevKeys) -> AsyncIterator[NotifierServer]:
    settings = NotifierSettings(
        nats_url=infra.nats_url,
        host="127.0.0.1",
        port=0,
        sse_port=0,
        metrics_port=0,
        cache_addr="",
        jwt_public_key_files=str(dev_keys.public),
        shutdown_drain_seconds=0,
    )
    server = await NotifierServer.start(settings)
    try:
        yield server
    finally:
        await server.stop()


@pytest.fixture
def collector_off() -> Iterator[None]:
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        gc.set_debug(0)
        gc.garbage.clear()
        gc.enable()


async def _native(port: int, token: str) -> ClientConnection:
    client = await connect(f"ws://127.0.0.1:{port}/v1/ws", subprotocols=[Subprotocol("murmur.v1")])
    await client.send(json.dumps({"type": "auth", "token": token}))
    assert json.loads(await client.recv())["type"] == "ready"
    await client.send(json.dumps({"type": "subscribe"}))
    return client


async def _ended(server: NotifierServer) -> None:
    async with asyncio.timeout(10):
        while server._sessions:
            await asyncio.sleep(0.02)
    # The server side's connection_lost runs once the TCP close completes.
    await asyncio.sleep(0.2)


def _cyclic_garbage() -> list[str]:
    """Names of the notifier's and websockets' server objects that only the
    cyclic collector could free."""
    gc.set_debug(gc.DEBUG_SAVEALL)
    gc.collect()
    names = [f"{type(o).__module__}.{type(o).__qualname__}" for o in gc.garbage]
    gc.set_debug(0)
    gc.garbage.clear()
    return [name for name in names if name in NOTIFIER_TYPES]


async def test_closed_sessions_are_freed_without_the_cyclic_collector(
    notifier: NotifierServer, dev_keys: DevKeys, collector_off: None
) -> None:
    clients = [
        await _native(notifier.port, dev_keys.token(f"release{i:03d}"))
        for i in range(NATIVE_CLIENTS)
    ]
    graphql = await connect(
        f"ws://127.0.0.1:{notifier.port}/v1/ws", subprotocols=[Subprotocol("graphql-transport-ws")]
    )
    await graphql.send(
        json.dumps({"type": "connection_init", "payload": {"token": dev_keys.token("release_gql")}})
    )
    assert json.loads(await graphql.recv())["type"] == "connection_ack"
    sessions = list(notifier._sessions)
    assert len(sessions) == NATIVE_CLIENTS + 1
    alive = [weakref.ref(s) for s in sessions] + [weakref.ref(s.ws) for s in sessions]
    del sessions

    # Ended every way a session ends: the client closes, the server refuses.
    for client in clients[: NATIVE_CLIENTS // 2]:
        await client.close()
    for client in clients[NATIVE_CLIENTS // 2 :]:
        client.transport.abort()
    await graphql.close()
    del clients, graphql, client
    refused = await connect(
        f"ws://127.0.0.1:{notifier.port}/v1/ws", subprotocols=[Subprotocol("murmur.v1")]
    )
    await refused.send(json.dumps({"type": "auth", "token": "not-a-token"}))
    with pytest.raises(ConnectionClosed) as closed:
        await refused.recv()
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 4401
    del refused, closed
    # Probes and unknown paths are answered during the handshake.
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{notifier.port}") as http:
        assert (await http.get("/healthz")).status_code == 200
        assert (await http.get("/nowhere")).status_code == 404
    await _ended(notifier)

    assert [ref for ref in alive if ref() is not None] == []
    assert _cyclic_garbage() == []


def test_the_probe_sees_a_cycle_left_to_the_collector(collector_off: None) -> None:
    """The check above can fail: an object in a reference cycle is found."""

    class Node:
        """Named below as one of the notifier's types."""

    Node.__module__, Node.__qualname__ = "murmur_notifier.outbox", "Outbox"
    node = Node()
    node.self = node  # type: ignore[attr-defined]
    del node
    assert _cyclic_garbage() == ["murmur_notifier.outbox.Outbox"]
