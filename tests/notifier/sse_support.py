"""A client of the notifier's SSE fallback, parsing the stream as
EventSource does."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx

from murmur_devstack import Stack


def sse_url(stack: Stack) -> str:
    return stack.urls()["notifier_sse"]


class Stream:
    """An open event stream, parsed into records as EventSource would."""

    def __init__(self, response: httpx.Response) -> None:
        self.response = response
        self._lines = response.aiter_lines()
        self.last_event_id: str | None = None
        self.retry_ms: int | None = None
        self.events: list[dict[str, Any]] = []

    async def record(self, timeout: float = 5.0) -> tuple[str, dict[str, Any]]:
        """The next record: its event name and its data."""
        event, data = "message", list[str]()
        async with asyncio.timeout(timeout):
            async for line in self._lines:
                if not line:
                    if data:
                        return event, json.loads("\n".join(data))
                    continue
                field, _, value = line.partition(": ")
                if field == "id":
                    self.last_event_id = value
                elif field == "event":
                    event = value
                elif field == "data":
                    data.append(value)
                elif field == "retry":
                    self.retry_ms = int(value)
        raise EOFError("the stream ended")

    async def expect(self, kind: str, timeout: float = 5.0) -> dict[str, Any]:
        while True:
            event, data = await self.record(timeout)
            if event == "close":
                raise AssertionError(f"closed while waiting for {kind}: {data}")
            if data["type"] == "events":
                self.events.extend(data["events"])
            if data["type"] == kind:
                return data

    async def events_until(self, count: int, timeout: float = 5.0) -> list[dict[str, Any]]:
        while len(self.events) < count:
            await self.expect("events", timeout)
        return self.events


@asynccontextmanager
async def stream(
    stack: Stack, token: str, *, params: dict[str, str] | None = None, last_id: str | None = None
) -> AsyncIterator[Stream]:
    headers = {"Authorization": f"Bearer {token}", "Accept": "text/event-stream"}
    if last_id is not None:
        headers["Last-Event-ID"] = last_id
    async with (
        httpx.AsyncClient(timeout=10) as http,
        http.stream("GET", sse_url(stack), params=params, headers=headers) as response,
    ):
        assert response.status_code == 200, await response.aread()
        assert response.headers["content-type"].startswith("text/event-stream")
        yield Stream(response)
