"""Frames the notifier writes straight to the transport (``write_now``, its
fast path) are WebSocket frames a stock client reads back exactly, at every
length encoding, interleaved with what ``send`` writes; a connection that is
closing is never ready for them."""

from __future__ import annotations

import asyncio

from websockets.asyncio.client import connect
from websockets.asyncio.server import ServerConnection, serve

from murmur_notifier.server import _ServerConnection

# One of each header form: 7-bit, 16-bit and 64-bit lengths, at their edges.
SIZES = (0, 1, 125, 126, 127, 65535, 65536, 200_000)


def _message(size: int) -> bytes:
    return (b"0123456789abcdefghij" * (size // 20 + 1))[:size]


async def test_direct_frames_read_back_exactly_between_sent_ones() -> None:
    ready: list[bool] = []

    async def handler(connection: ServerConnection) -> None:
        assert isinstance(connection, _ServerConnection)
        for size in SIZES:
            ready.append(connection.ready_to_write())
            connection.write_now(_message(size))
            await connection.send(f"sent after {size}")
        await connection.close()
        ready.append(connection.ready_to_write())

    async with serve(handler, "127.0.0.1", 0, create_connection=_ServerConnection) as server:
        port = next(iter(server.sockets)).getsockname()[1]
        async with connect(f"ws://127.0.0.1:{port}", max_size=None) as client:
            received = [message async for message in client]
    expected: list[str] = []
    for size in SIZES:
        expected += [_message(size).decode(), f"sent after {size}"]
    assert received == expected
    # Open (and under the write limit) for each write; not once closing.
    assert ready == [True] * len(SIZES) + [False]


async def test_a_paused_transport_is_not_ready() -> None:
    """A client that stops reading fills the socket: writes must then wait
    (the sender task's job), not pile up in the transport's buffer."""
    states: list[bool] = []
    done = asyncio.Event()

    async def handler(connection: ServerConnection) -> None:
        assert isinstance(connection, _ServerConnection)
        chunk = _message(60_000)
        for _ in range(2_000):  # up to 120 MB: far past any socket buffer
            if not connection.ready_to_write():
                break
            connection.write_now(chunk)
            await asyncio.sleep(0)
        states.append(connection.ready_to_write())
        states.append(connection.paused)
        done.set()
        await connection.wait_closed()

    async with serve(handler, "127.0.0.1", 0, create_connection=_ServerConnection) as server:
        port = next(iter(server.sockets)).getsockname()[1]
        async with connect(f"ws://127.0.0.1:{port}", max_size=None, max_queue=1) as client:
            await asyncio.wait_for(done.wait(), timeout=30)
            client.transport.abort()
    assert states == [False, True]
