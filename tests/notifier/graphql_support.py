"""Helpers for the graphql-transport-ws tests: the stock client (npm
graphql-ws, run by Node through graphql_client.mjs) and a raw client for
what a stock client never sends."""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.typing import Subprotocol

from murmur_devstack import Stack

from .support import closed_with, ws_url

SUBPROTOCOL = "graphql-transport-ws"
NODE_DRIVER = Path(__file__).with_name("graphql_client.mjs")
NODE_MODULES = Path(__file__).resolve().parents[2] / "tools" / "node" / "node_modules"


class StockClients:
    """The Node driver: commands in, what its clients see out (kept in order)."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self._process = process
        self.seen: list[dict[str, Any]] = []
        # Lines wait_for has returned, by index: each is returned once.
        self._taken: set[int] = set()

    async def send(self, **command: Any) -> None:
        assert self._process.stdin is not None
        self._process.stdin.write(json.dumps(command).encode() + b"\n")
        await self._process.stdin.drain()

    async def wait_for(self, timeout: float = 10.0, **fields: Any) -> dict[str, Any]:
        """The first output line not returned before that has these fields,
        waiting for it."""
        async with asyncio.timeout(timeout):
            checked = 0
            while True:
                for index in range(checked, len(self.seen)):
                    line = self.seen[index]
                    if index not in self._taken and _has(line, fields):
                        self._taken.add(index)
                        return line
                checked = len(self.seen)
                await self._read_line()

    async def nexts(self, sub: str, count: int, timeout: float = 10.0) -> list[dict[str, Any]]:
        """The first ``count`` next payloads of ``sub``, waiting for them."""
        async with asyncio.timeout(timeout):
            while len(self.results(sub)) < count:
                await self._read_line()
        return self.results(sub)[:count]

    def results(self, sub: str) -> list[dict[str, Any]]:
        """The next payloads of ``sub`` seen so far."""
        return [line["payload"] for line in self.seen if _has(line, {"event": "next", "sub": sub})]

    async def _read_line(self) -> None:
        assert self._process.stdout is not None
        raw = await self._process.stdout.readline()
        if not raw:
            raise AssertionError("the Node driver exited")
        self.seen.append(json.loads(raw))


def _has(line: dict[str, Any], fields: dict[str, Any]) -> bool:
    return all(line.get(key) == value for key, value in fields.items())


@asynccontextmanager
async def stock_clients(stack: Stack) -> AsyncIterator[StockClients]:
    node = shutil.which("node")
    if node is None:
        pytest.fail("node (20 or newer) is needed to run the stock graphql-ws client")
    if not NODE_MODULES.is_dir():
        pytest.fail(f"{NODE_MODULES} is missing: run `npm ci --prefix tools/node` (make install)")
    process = await asyncio.create_subprocess_exec(
        node,
        str(NODE_DRIVER),
        ws_url(stack),
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    clients = StockClients(process)
    try:
        yield clients
    finally:
        with contextlib.suppress(ConnectionError):
            await clients.send(op="exit")
        try:
            _, stderr = await asyncio.wait_for(process.communicate(), timeout=10)
        except TimeoutError:
            process.kill()
            _, stderr = await process.communicate()
        if stderr:
            print("node stderr:", stderr.decode(errors="replace"))


class RawClient:
    """graphql-transport-ws by hand, over one connection."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws

    async def send(self, **message: Any) -> None:
        await self.ws.send(json.dumps(message))

    async def receive(self, timeout: float = 5.0) -> dict[str, Any]:
        """The next message, server heartbeat pings skipped."""
        async with asyncio.timeout(timeout):
            while True:
                message: dict[str, Any] = json.loads(await self.ws.recv())
                if message != {"type": "ping"}:
                    return message

    async def init(self, token: str | None) -> dict[str, Any]:
        """connection_init; the connection_ack."""
        await self.send(type="connection_init", payload=None if token is None else {"token": token})
        ack = await self.receive()
        assert ack["type"] == "connection_ack", ack
        return ack

    async def closed_with(self, timeout: float = 5.0) -> tuple[int | None, str]:
        """Read until the server closes; its close code and reason."""
        return await closed_with(self.ws, timeout)


@asynccontextmanager
async def raw_client(stack: Stack, *offered: str, **options: Any) -> AsyncIterator[RawClient]:
    subprotocols = [Subprotocol(p) for p in (SUBPROTOCOL, *offered)]
    async with connect(ws_url(stack), subprotocols=subprotocols, **options) as ws:
        yield RawClient(ws)
