"""``python -m murmur_gateway`` as a real process: uvicorn, uvloop, httptools,
settings from the environment, and a clean exit on SIGTERM."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import sys
from collections.abc import AsyncIterator

import httpx

from murmur_timeline.server import TimelineServer

from .support import Keys, assert_problem, post_body, register


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


async def _wait_until_up(client: httpx.AsyncClient, process: asyncio.subprocess.Process) -> None:
    for _ in range(200):
        if process.returncode is not None:
            raise AssertionError(f"gateway exited with {process.returncode}")
        with contextlib.suppress(httpx.TransportError):  # not listening yet
            if (await client.get("/healthz")).status_code == 200:
                return
        await asyncio.sleep(0.05)
    raise AssertionError("gateway did not come up")


async def test_python_m_serves_and_stops_on_sigterm(keys: Keys, timeline: TimelineServer) -> None:
    port = _free_port()
    env = {
        **os.environ,
        "GATEWAY_HOST": "127.0.0.1",
        "GATEWAY_PORT": str(port),
        "GATEWAY_TIMELINE_ADDR": f"127.0.0.1:{timeline.port}",
        "GATEWAY_JWT_PUBLIC_KEY_FILES": f" {keys.public} , ",
        "GATEWAY_SHUTDOWN_GRACE_SECONDS": "2",
    }
    env.pop("OTEL_EXPORTER_OTLP_ENDPOINT", None)
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "murmur_gateway",
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    token = keys.token("alice")
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=5) as client:
            await _wait_until_up(client, process)
            assert (await client.get("/readyz")).status_code == 200
            await register(client, keys, "alice")
            created = await client.post(
                "/v1/posts", json=post_body(), headers={"Authorization": f"Bearer {token}"}
            )
            assert created.status_code == 201

            async def chunks() -> AsyncIterator[bytes]:
                for _ in range(40):
                    yield b"x" * 8192

            headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
            streamed = await client.post("/v1/posts", content=chunks(), headers=headers)
            assert_problem(streamed, 413, "content-too-large")
            declared = await client.post("/v1/posts", content=b"x" * 300_000, headers=headers)
            assert_problem(declared, 413, "content-too-large")
            # The connection survives a refusal and serves the next request.
            assert (await client.get("/healthz")).status_code == 200
    finally:
        if process.returncode is None:
            process.send_signal(signal.SIGTERM)
        output, _ = await asyncio.wait_for(process.communicate(), timeout=10)
    text = output.decode(errors="replace")
    # uvicorn re-raises the signal once it has shut down, so supervisors see it.
    assert process.returncode in (0, -signal.SIGTERM), text
    lines = [json.loads(line) for line in text.splitlines() if line.strip()]
    assert all(line["service"] == "gateway" for line in lines)
    assert "Application shutdown complete." in [line["msg"] for line in lines]
    assert token not in text
