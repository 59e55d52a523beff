"""The dashboard in a real browser against the running stack: headless
Chromium (Debian's /usr/bin/chromium, driven by playwright-core from
tools/node, see tools/node/dashboard_check.mjs) opens the page, waits for
its charts to draw with data, and then, while this test creates posts
through the gateway, sees the posts-per-minute figure move without a
reload. Screenshots (desktop and phone widths) are saved under the test's
output folder; docs/metrics.md shows a copy."""

from __future__ import annotations

import asyncio
import base64
import json
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from murmur_core.ids import new_uuid7
from murmur_devstack import Stack

REPO_ROOT = Path(__file__).resolve().parents[2]
SCRIPT = REPO_ROOT / "tools" / "node" / "dashboard_check.mjs"
CHROMIUM = Path("/usr/bin/chromium")
POSTS = 3
# Launch, first snapshot and two scrapes take seconds; the margin is for a
# loaded CI machine. The script gives up on its own before this.
BROWSER_TIMEOUT_SECONDS = 150.0


async def _line(process: asyncio.subprocess.Process) -> dict[str, Any]:
    assert process.stdout is not None
    raw = await process.stdout.readline()
    if not raw:
        stderr = await process.stderr.read() if process.stderr else b""
        pytest.fail(f"the browser script ended early: {stderr.decode()[-2000:]}")
    record: dict[str, Any] = json.loads(raw)
    if record.get("stage") == "error":
        pytest.fail(f"the browser script failed: {record}")
    return record


async def _wait_away_from_a_minute_boundary() -> None:
    # The figure is the current minute's count: posts made as the minute
    # turns would land in a new, smaller bucket.
    second = time.time() % 60
    if second > 40:
        await asyncio.sleep(61 - second)


async def test_dashboard_draws_and_updates_live_in_chromium(
    stack: Stack, token_for: Callable[[str], str], tmp_path: Path
) -> None:
    node = shutil.which("node")
    if node is None or not CHROMIUM.exists():
        pytest.fail("node and /usr/bin/chromium are needed: run `make install`")
    author = f"dash_{new_uuid7()[-8:]}"
    auth = {"Authorization": f"Bearer {token_for(author)}"}
    async with httpx.AsyncClient(base_url=stack.gateway_url, timeout=10) as http:
        created = await http.post(
            "/v1/users",
            headers=auth,
            json={"handle": author, "public_key": base64.b64encode(b"pk").decode()},
        )
        assert created.status_code == 201, created.text
        await _wait_away_from_a_minute_boundary()

        screenshot = tmp_path / "dashboard.png"
        process = await asyncio.create_subprocess_exec(
            node,
            str(SCRIPT),
            f"{stack.url('metrics')}/",
            str(screenshot),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env={"PATH": "/usr/bin:/bin", "CHROMIUM": str(CHROMIUM), "HOME": str(tmp_path)},
        )
        try:
            async with asyncio.timeout(BROWSER_TIMEOUT_SECONDS):
                ready = await _line(process)
                assert ready["stage"] == "ready"
                before = ready["posts_per_minute"]
                assert isinstance(before, int | float)
                for _ in range(POSTS):
                    reply = await http.post(
                        "/v1/posts",
                        headers=auth,
                        json={
                            "id": new_uuid7(),
                            "audience": "public",
                            "ciphertext": base64.b64encode(b"sealed").decode(),
                            "key_id": "k1",
                        },
                    )
                    assert reply.status_code == 201, reply.text
                assert process.stdin is not None
                process.stdin.write(json.dumps({"at_least": before + POSTS}).encode() + b"\n")
                await process.stdin.drain()
                done = await _line(process)
                assert await process.wait() == 0
        finally:
            if process.returncode is None:
                # SIGTERM first: playwright closes its Chromium; a SIGKILL
                # would leave the browser running.
                process.terminate()
                try:
                    await asyncio.wait_for(process.wait(), 10)
                except TimeoutError:
                    process.kill()
                    await process.wait()
    assert done["stage"] == "done"
    assert done["posts_per_minute"] >= before + POSTS
    assert done["reloaded"] is False
    assert screenshot.stat().st_size > 10_000
    assert (tmp_path / "dashboard-phone.png").stat().st_size > 10_000
